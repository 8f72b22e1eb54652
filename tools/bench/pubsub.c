/*
 * Broadcast for ringcast-bench: subscribe messages, the publisher, what subscribers receive,
 * and the completeness check at the end.
 *
 * Message texts come from the --sub-msg/--pub-msg templates (%t topic, %d data), so any text
 * pub/sub protocol can be driven; ringcast's {"op":"sub"}/{"op":"pub"} are the defaults. The
 * data carries "ts=<scheduled send time, ns>;i=<publish index within the topic>;" padded to
 * --size: the scheduled (not actual) send time keeps a lagging publisher from hiding latency
 * (coordinated omission), and the index lets completeness be checked against any server. When
 * the server adds "seq":N, it must also grow by exactly one per message.
 *
 * Thread 0 publishes (over its WebSocket or with HTTP POST on a keep-alive connection); every
 * worker receives; rcb_pubsub_finish runs on the main thread after the workers are joined.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"
#include "base/rc_assert.h"
#include "ws_frame.h"

#define PUBLISH_PER_TURN 4096
#define HTTP_HEAD_LIMIT 256

static void topic_name(const struct rcb_config *cfg, uint32_t k, char *out, size_t cap)
{
	if (cfg->topics == 1)
		snprintf(out, cap, "%s", cfg->topic);
	else
		snprintf(out, cap, "%s-%u", cfg->topic, k);
}

/* Expands %t and %d (and %%) of tmpl into out; returns the length, or cap when it does not
 * fit. */
static size_t expand(char *out, size_t cap, const char *tmpl, const char *topic, const char *data)
{
	size_t n = 0;

	for (const char *p = tmpl; *p; p++) {
		const char *s = NULL;
		char one[2] = {*p, 0};
		size_t l;

		if (*p == '%' && (p[1] == 't' || p[1] == 'd' || p[1] == '%')) {
			s = p[1] == 't' ? topic : p[1] == 'd' ? data : "%";
			p++;
		} else {
			s = one;
		}
		l = strlen(s);
		if (n + l >= cap)
			return cap;
		memcpy(out + n, s, l);
		n += l;
	}
	out[n] = '\0';
	return n;
}

/* Bytes tmpl can expand to (with its NUL) when each %t stands for at most topic_max bytes
 * and each %d for at most data_max: expand() then always fits, however many there are. */
static size_t expand_cap(const char *tmpl, size_t topic_max, size_t data_max)
{
	size_t n = strlen(tmpl) + 1;

	for (const char *p = strchr(tmpl, '%'); p && p[1]; p = strchr(p + 2, '%'))
		n += p[1] == 't' ? topic_max : p[1] == 'd' ? data_max : 0;
	return n;
}

/* Per-thread scratch text, grown on demand; NULL when memory runs out. */
static char *scratch(struct rcb_thread *t, size_t need)
{
	uint8_t *p = (uint8_t *)t->scratch;

	if (!rcb_buf_grow(&p, &t->scratch_cap, need, RCB_TX_LIMIT))
		return NULL;
	t->scratch = (char *)p;
	return t->scratch;
}

void rcb_pubsub_subscribe(struct rcb_thread *t, struct rcb_conn *c)
{
	const struct rcb_config *cfg = t->run->cfg;
	char topic[256];
	size_t cap = expand_cap(cfg->sub_msg, sizeof(topic), 0);
	char *msg = scratch(t, cap);
	size_t n;

	if ((c->flags & RCB_CF_SUBSCRIBED) || !msg)
		return;
	topic_name(cfg, c->id % cfg->topics, topic, sizeof(topic));
	n = expand(msg, cap, cfg->sub_msg, topic, "");
	RC_ASSERT(n < cap);
	rcb_ws_queue_frame(t, c, RC_WS_OP_TEXT, (const uint8_t *)msg, n);
	c->flags |= RCB_CF_SUBSCRIBED;
	t->subscribed_local++;
}

/* Queues one publish of message number n (all topics), scheduled at sched_ns. */
static bool publish_one(struct rcb_thread *t, struct rcb_conn *c, uint64_t n, uint64_t sched_ns)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint32_t k = (uint32_t)(n % cfg->topics);
	char topic[256], head[HTTP_HEAD_LIMIT], *data, *msg;
	size_t dcap = cfg->size + 64, mcap = expand_cap(cfg->pub_msg, sizeof(topic), dcap);
	size_t dl, ml;

	if (!scratch(t, dcap + mcap))
		return false;
	data = t->scratch;
	msg = t->scratch + dcap;
	topic_name(cfg, k, topic, sizeof(topic));
	dl = (size_t)snprintf(data, dcap, "ts=%" PRIu64 ";i=%" PRIu64 ";", sched_ns,
			      t->topic_published[k]);
	if (dl < cfg->size) {
		memset(data + dl, 'x', cfg->size - dl);
		dl = cfg->size;
	}
	data[dl] = '\0';
	ml = expand(msg, mcap, cfg->pub_msg, topic, data);
	RC_ASSERT(ml < mcap);
	if (cfg->pub_via == RCB_PUB_WS) {
		rcb_ws_queue_frame(t, c, RC_WS_OP_TEXT, (const uint8_t *)msg, ml);
	} else {
		int hl = snprintf(
			head, sizeof(head),
			"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n\r\n",
			cfg->pub_path, cfg->host, ml);
		uint8_t *p = rcb_tx_reserve(t, c, (size_t)hl + ml);

		RC_ASSERT(hl > 0 && hl < (int)sizeof(head));
		if (!p)
			return false;
		memcpy(p, head, (size_t)hl);
		memcpy(p + hl, msg, ml);
	}
	t->topic_published[k]++;
	t->stats.counters[RCB_C_PUBLISHED]++;
	/* Read by the main thread to know when delivery is complete; relaxed is enough, it only
	 * compares totals after the workers' own relaxed stores of what they received. */
	atomic_fetch_add_explicit(&t->run->expected_deliveries, t->run->subs_per_topic[k],
				  memory_order_relaxed);
	return true;
}

void rcb_pubsub_publish_tick(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t elapsed, due, limit, budget = PUBLISH_PER_TURN;
	double interval_ns = 1e9 / cfg->pub_rate;
	struct rcb_conn *c;

	if (t->publisher < 0 || !rcb_measuring(t))
		return;
	c = &t->conns[t->publisher];
	if (c->state != RCB_CS_OPEN)
		return;
	elapsed = t->now_ns - t->run->measure_start_ns;
	due = (uint64_t)((double)elapsed / interval_ns) + 1;
	limit = (uint64_t)(cfg->duration_s * cfg->pub_rate);
	if (due > limit)
		due = limit;
	/* Bounded by the budget; a lagging publisher catches up over several turns. */
	while (t->published < due && budget--) {
		uint64_t sched =
			t->run->measure_start_ns + (uint64_t)((double)t->published * interval_ns);

		if (!publish_one(t, c, t->published, sched)) {
			t->stats.counters[RCB_C_PUB_ERRORS]++;
		}
		t->published++;
	}
}

/* Finds key in msg and parses the decimal number after it (spaces allowed before it). */
static bool find_u64(const uint8_t *msg, size_t len, const char *key, uint64_t *out,
		     const uint8_t **after)
{
	size_t kl = strlen(key);
	const uint8_t *p = memmem(msg, len, key, kl), *end = msg + len;
	uint64_t v = 0;
	int digits = 0;

	if (!p)
		return false;
	p += kl;
	while (p < end && *p == ' ')
		p++;
	for (; p < end && *p >= '0' && *p <= '9' && digits < 20; p++, digits++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (!digits)
		return false;
	*out = v;
	if (after)
		*after = p;
	return true;
}

/* Sequence checks of one delivery against what this subscriber saw before. */
static void check_order(struct rcb_thread *t, struct rcb_conn *c, uint64_t index, bool has_seq,
			uint64_t seq)
{
	uint64_t *ctr = t->stats.counters;
	bool in_order = index == c->next_index;

	if (index < c->next_index) {
		ctr[RCB_C_DUPLICATES]++;
		return;
	}
	if (index > c->next_index) {
		ctr[RCB_C_GAPS]++;
		ctr[RCB_C_MISSING] += index - c->next_index;
	}
	c->next_index = index + 1;
	/* The server's numbering must follow the publishes one for one (last_seq holds the
	 * previous seq + 1, 0 before the first). */
	if (has_seq) {
		if (c->last_seq && in_order && seq != c->last_seq)
			ctr[RCB_C_OUT_OF_ORDER]++;
		c->last_seq = seq + 1;
	}
}

/* --dump-other: one unexpected message on stderr, escaped; of a long one the first 200 and
 * the last 64 bytes (at most 4 characters each, so out never fills). */
static void dump_other(struct rcb_thread *t, const struct rcb_conn *c, const uint8_t *msg,
		       size_t len)
{
	static const char ack[] = "{\"op\":\"ack\"";
	char out[2048];
	size_t n = 0;

	if (t->dumped >= t->run->cfg->dump_other || !msg ||
	    (len >= sizeof(ack) - 1 && memcmp(msg, ack, sizeof(ack) - 1) == 0))
		return;
	t->dumped++;
	for (size_t i = 0; i < len; i++) {
		if (len > 264 && i == 200) {
			n += (size_t)snprintf(out + n, sizeof(out) - n, "[%zu bytes]", len - 264);
			i = len - 64;
		}
		if (msg[i] >= 0x20 && msg[i] < 0x7f && msg[i] != '\\')
			out[n++] = (char)msg[i];
		else
			n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02x", msg[i]);
	}
	RC_ASSERT(n < sizeof(out));
	out[n] = '\0';
	fprintf(stderr,
		"ringcast-bench: other message on conn %u (next index %llu), %zu bytes: %s\n",
		c->id, (unsigned long long)c->next_index, len, out);
}

void rcb_pubsub_on_message(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *msg, size_t len)
{
	const uint8_t *after;
	uint64_t ts, index, seq = 0;
	bool has_seq;

	if ((c->flags & (RCB_CF_SUBSCRIBED | RCB_CF_SUB_ANSWERED)) == RCB_CF_SUBSCRIBED) {
		c->flags |= RCB_CF_SUB_ANSWERED;
		t->answered_local++;
	}
	if (c->role != RCB_ROLE_HOLD || !msg || !find_u64(msg, len, "ts=", &ts, &after) ||
	    !find_u64(after, (size_t)(msg + len - after), ";i=", &index, NULL)) {
		t->stats.counters[RCB_C_OTHER_MSGS]++;
		dump_other(t, c, msg, len);
		return;
	}
	has_seq = find_u64(msg, len, "\"seq\":", &seq, NULL);
	check_order(t, c, index, has_seq, seq);
	if (t->now_ns >= ts)
		rcb_hist_record(&t->stats.latency, t->now_ns - ts);
	if (rcb_measuring(t))
		t->stats.counters[RCB_C_MSGS_RECV]++;
	t->stats.counters[RCB_C_MSGS_RECV_TOTAL]++;
	t->received_local++;
}

/* Reads one HTTP answer's status and Content-Length; false when malformed. */
static bool http_head(const char *h, size_t n, int *status, size_t *body)
{
	static const char cl[] = "\r\ncontent-length:";

	if (n < 12 || memcmp(h, "HTTP/1.", 7) != 0)
		return false;
	*status = atoi(h + 9);
	*body = 0;
	for (size_t i = 0; i + sizeof(cl) - 1 < n; i++) {
		if (strncasecmp(h + i, cl, sizeof(cl) - 1) == 0) {
			*body = (size_t)strtoul(h + i + sizeof(cl) - 1, NULL, 10);
			break;
		}
	}
	return *status >= 100 && *status < 600;
}

void rcb_pubsub_http_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	if (!rcb_buf_grow(&c->asm_buf, &c->asm_cap, (size_t)c->asm_len + n, RCB_ASM_LIMIT)) {
		t->stats.counters[RCB_C_PROTOCOL_ERRORS]++;
		rcb_conn_lose(t, c, EPROTO);
		return;
	}
	memcpy(c->asm_buf + c->asm_len, p, n);
	c->asm_len += (uint32_t)n;
	/* Bounded: every iteration removes one whole answer from the buffer. */
	while (c->asm_len > 0) {
		size_t end = rcb_http_head_end(c->asm_buf, c->asm_len), body;
		int status;

		if (!end)
			return;
		if (!http_head((const char *)c->asm_buf, end, &status, &body)) {
			t->stats.counters[RCB_C_PROTOCOL_ERRORS]++;
			rcb_conn_lose(t, c, EPROTO);
			return;
		}
		if (end + body > c->asm_len)
			return;
		t->pub_acked++;
		if (status < 200 || status > 299)
			t->stats.counters[RCB_C_PUB_ERRORS]++;
		memmove(c->asm_buf, c->asm_buf + end + body, c->asm_len - end - body);
		c->asm_len -= (uint32_t)(end + body);
	}
}

uint64_t rcb_pubsub_expected(const struct rcb_run *run)
{
	return atomic_load_explicit(&((struct rcb_run *)run)->expected_deliveries,
				    memory_order_relaxed);
}

void rcb_pubsub_finish(struct rcb_run *run, struct rcb_stats *total, bool drained)
{
	const struct rcb_config *cfg = run->cfg;
	const uint64_t *published = run->threads[0].topic_published;

	if (cfg->scenario != RCB_SC_BROADCAST)
		return;
	RC_ASSERT(published);
	for (uint32_t i = 0; i < cfg->threads; i++) {
		const struct rcb_thread *t = &run->threads[i];

		for (uint32_t s = 0; s < t->conns_count; s++) {
			const struct rcb_conn *c = &t->conns[s];
			uint64_t want = published[c->id % cfg->topics];
			enum rcb_counter k = RCB_C_MISSING;

			if (c->role != RCB_ROLE_HOLD || !(c->life & RCB_LF_OPENED) ||
			    want <= c->next_index)
				continue;
			/* A loss inside the stream was already counted as a gap. What is short at
			 * its end was cut by the connection's end, when it came first. */
			if ((c->life & RCB_LF_LOST) || !drained)
				k = RCB_C_UNDELIVERED;
			total->counters[k] += want - c->next_index;
		}
	}
}
