/*
 * The Redis engine: publishes, channel subscriptions, syncs and resumes of the topics a shard
 * owns, over that shard's Redis links (redis_conn.c). The owner keeps t->seq as the newest
 * seq it fanned out and t->epoch as Redis's; a sync (the script in replay mode, sent once the
 * channel subscription is confirmed, so nothing published after it can be missed) sets them
 * or, after an outage, fetches what was missed. Live messages arriving while a sync runs are
 * held and fanned out after it, so seqs stay in order; a seq that skips ahead is announced as
 * a gap, a new epoch as a reset. Owner shard threads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "frame.h"
#include "mem.h"
#include "namespace.h"
#include "presence_redis.h"
#include "pubsub_int.h"
#include "pubsub_redis.h"
#include "redis_proto.h"
#include "redis_xnode.h"

#define RC_REDIS_HELD_LIMIT 4096u /* live messages held per topic while it syncs */
#define KEY_BYTES 1024            /* redis_prefix is at most 256 bytes, a topic 128 */

/* What a command link's reply answers. */
enum what {
	W_LOAD = 0, /* SCRIPT LOAD */
	W_PUBLISH,  /* ctx: the first PUBLISH xmsg of a batch, chained by next */
	W_REPLAY,   /* ctx: a subscriber's REPLAY xmsg (seq = since) */
	W_SYNC,     /* ctx: struct sync */
	W_RELOAD,   /* SCRIPT LOAD after a NOSCRIPT batch: the link's resend goes after it */
	W_HISTORY,  /* ctx: a history query's xmsg (seq = since, limit) */
};

/* A sync in flight: the topic by name (the record may be forgotten meanwhile). */
struct sync {
	uint16_t len;
	char topic[RC_TOPIC_BYTES_LIMIT + 1];
};

static uint32_t instance_of(const struct rc_shard *s, const char *topic, size_t len)
{
	const struct rc_app *app = s->app;
	return rc_redis_pick(app->redis_names, app->redis_count, topic, len);
}

static struct rc_redis_link *link_of(struct rc_shard *s, const char *topic, size_t len,
				     enum rc_redis_kind kind)
{
	return rc_redis_link(s, instance_of(s, topic, len), kind);
}

struct rc_redis_link *rc_pubsub_redis_link(struct rc_shard *s, const char *topic, size_t len,
					   enum rc_redis_kind kind)
{
	return link_of(s, topic, len, kind);
}

/* A decimal number into buf (24 bytes): the argument and its length. */
static size_t num(char *buf, uint64_t v)
{
	return (size_t)snprintf(buf, 24, "%llu", (unsigned long long)v);
}

/* ---- commands ---------------------------------------------------------------------------- */
static int load_script(struct rc_redis_link *l, enum what what)
{
	size_t len;
	const char *text = rc_redis_script(&len);
	const char *argv[] = {"SCRIPT", "LOAD", text};
	size_t lens[] = {6, 4, len};
	return rc_redis_command(l, 3, argv, lens, NULL, what);
}

/* The topic's keys 1..2 of the script (its hash and stream) into k (KEY_BYTES each). False
 * if one does not fit. */
static bool topic_keys(const struct rc_shard *s, const char *topic, size_t len,
		       char k[2][KEY_BYTES], size_t klen[2])
{
	for (int i = 0; i < 2; i++) {
		klen[i] = rc_redis_key(k[i], KEY_BYTES, s->app->cfg.redis_prefix, topic, len,
				       (enum rc_redis_key)i);
		if (!klen[i])
			return false;
	}
	return true;
}

/* The dedup key of m into out (cap bytes): the publisher's scope (a connection's is qualified
 * by this process, whose slots mean nothing elsewhere) and its id. 0 if it does not fit. */
static size_t dedup_key(const struct rc_shard *s, const struct rc_xmsg *m, char *out, size_t cap)
{
	size_t n = rc_redis_key(out, cap, s->app->cfg.redis_prefix, m->topic, m->topic_len,
				RC_REDIS_KEY_DEDUP);
	char scope[40];
	if (m->publisher >> 63)
		snprintf(scope, sizeof(scope), "%016llx@%016llx", (unsigned long long)m->publisher,
			 (unsigned long long)s->app->epoch_key);
	else
		snprintf(scope, sizeof(scope), "%016llx", (unsigned long long)m->publisher);
	int k = n ? snprintf(out + n, cap - n, "%s.%.*s", scope, (int)m->id_len, m->id) : 0;
	return n && k > 0 && n + (size_t)k < cap ? n + (size_t)k : 0;
}

/* The topic's history bounds (its namespace's history_size and history_age_ms, else the
 * gateway's): the stream's length and the age of what a replay may return. */
static void history_bounds(const struct rc_shard *s, const char *topic, size_t len,
			   uint64_t *count, uint64_t *age_ms)
{
	const struct rc_config *cfg = &s->app->cfg;
	const struct rc_namespace *ns = rc_namespace_of(s->app->namespaces, topic, len);
	*count = ns && ns->has_history_size ? ns->history_size : cfg->history_messages_max;
	*age_ms = ns && ns->has_history_age ? ns->history_age_ms : cfg->history_age_max_ms;
}

/* A new epoch to propose in case the topic's numbering restarts with this call. */
static uint64_t proposed_epoch(struct rc_shard *s)
{
	return rc_topic_epoch(s->app->epoch_key, (uint32_t)s->index, s->topics_created++);
}

/* The arguments of a batch of publishes being encoded: argv and lens grow item by item, their
 * text is written into buf (sized for the whole batch up front: pointers into it stay). */
struct batch_args {
	const char **argv;
	size_t *lens;
	int argc;
	char *buf;
	size_t used;
	size_t cap;
};

/* Appends the argument text[0..len) (borrowed). */
static void arg(struct batch_args *b, const char *text, size_t len)
{
	b->argv[b->argc] = text;
	b->lens[b->argc++] = len;
}

/* Appends the n bytes just written at the end of buf (and a NUL) as an argument. */
static void text_arg(struct batch_args *b, size_t n)
{
	RC_ASSERT(n && b->used + n < b->cap); /* sized by item_bytes */
	arg(b, b->buf + b->used, n);
	b->used += n + 1;
}

static void key_arg(struct batch_args *b, const struct rc_shard *s, const struct rc_xmsg *m,
		    enum rc_redis_key which)
{
	text_arg(b, rc_redis_key(b->buf + b->used, b->cap - b->used, s->app->cfg.redis_prefix,
				 m->topic, m->topic_len, which));
}

static void num_arg(struct batch_args *b, uint64_t v)
{
	RC_ASSERT(b->cap - b->used > 24);
	text_arg(b, num(b->buf + b->used, v));
}

/* Upper bound of the text one item's arguments take in buf, were it its topic's only one:
 * the topic's keys and channel, its dedup key, numbers. */
static size_t item_bytes(const struct rc_shard *s, const struct rc_xmsg *m)
{
	return 4 * (strlen(s->app->cfg.redis_prefix) + m->topic_len + 8) + 48 + m->id_len +
	       6 * 25 + 1;
}

/* A batch's publishes grouped by topic, as the script takes them: topics in the order they
 * first appear, each one's items in their order. */
struct grouping {
	struct rc_xmsg **item; /* the batch in that order */
	uint32_t *size;        /* items per topic */
	uint32_t topics;
	void *mem;
};

/* Groups the count publishes chained from head into g (its mem freed by the caller); each
 * item's m->seq becomes its place in g->item, which is its place in the script's answer.
 * 0 or -ENOMEM. */
static int group(struct rc_xmsg *head, uint32_t count, struct grouping *g)
{
	uint32_t cap = 16;
	while (cap < 2 * count)
		cap *= 2;
	g->mem = malloc(count * (2 * sizeof(*g->item) + 3 * sizeof(uint32_t)) +
			cap * sizeof(uint32_t));
	if (!g->mem)
		return -ENOMEM;
	g->item = g->mem;
	struct rc_xmsg **first = g->item + count;
	g->size = (uint32_t *)(first + count);
	uint32_t *of = g->size + count, *start = of + count, *slot = start + count, i = 0;
	memset(slot, 0xff, cap * sizeof(*slot));
	g->topics = 0;
	for (struct rc_xmsg *m = head; m; m = m->next, i++) {
		uint32_t h = (uint32_t)rc_topic_hash(m->topic, m->topic_len) & (cap - 1);
		while (slot[h] != UINT32_MAX && (first[slot[h]]->topic_len != m->topic_len ||
			memcmp(first[slot[h]]->topic, m->topic, m->topic_len) != 0))
			h = (h + 1) & (cap - 1);
		if (slot[h] == UINT32_MAX) {
			slot[h] = g->topics;
			first[g->topics] = m;
			g->size[g->topics++] = 0;
		}
		of[i] = slot[h];
		g->size[slot[h]]++;
	}
	RC_ASSERT(i == count);
	for (uint32_t t = 0, at = 0; t < g->topics; at += g->size[t++])
		start[t] = at;
	i = 0;
	for (struct rc_xmsg *m = head; m; m = m->next, i++) {
		m->seq = start[of[i]]++;
		g->item[m->seq] = m;
	}
	return 0;
}

/* The arguments of the topic of the n items from m on (see the script): proposed epoch,
 * count, age, key TTL, channel, n; then per item its dedup window (0: no id) and data. */
static void topic_argv(struct batch_args *b, struct rc_shard *s, struct rc_xmsg *const *m,
		       uint32_t n)
{
	const struct rc_config *cfg = &s->app->cfg;
	uint64_t count, age;
	history_bounds(s, m[0]->topic, m[0]->topic_len, &count, &age);
	num_arg(b, proposed_epoch(s));
	num_arg(b, count);
	num_arg(b, age);
	num_arg(b, cfg->topic_forget_ms ? cfg->topic_forget_ms + age : 0);
	int cl = snprintf(b->buf + b->used, b->cap - b->used, "%s%.*s", cfg->redis_prefix,
			  (int)m[0]->topic_len, m[0]->topic);
	text_arg(b, (size_t)cl);
	num_arg(b, n);
	for (uint32_t i = 0; i < n; i++) {
		num_arg(b, m[i]->id_len && cfg->dedup_window_ms ? cfg->dedup_window_ms : 0);
		arg(b, m[i]->data, m[i]->data_len);
	}
}

/* The KEYS of the topic of the n items from m on: its hash and stream, then the dedup key of
 * each item that has an id. */
static void topic_keys_args(struct batch_args *b, const struct rc_shard *s,
			    struct rc_xmsg *const *m, uint32_t n)
{
	key_arg(b, s, m[0], RC_REDIS_KEY_META);
	key_arg(b, s, m[0], RC_REDIS_KEY_STREAM);
	for (uint32_t i = 0; i < n; i++)
		if (m[i]->id_len && s->app->cfg.dedup_window_ms)
			text_arg(b, dedup_key(s, m[i], b->buf + b->used, b->cap - b->used));
}

/* EVALSHA in publish mode for the count publishes chained from head (by next; the reply's
 * ctx), grouped by topic: one script call. 0 or -errno (rc_redis_command). */
static int issue_batch(struct rc_redis_link *l, struct rc_xmsg *head, uint32_t count)
{
	struct rc_shard *s = l->shard;
	struct batch_args b = {0};
	struct grouping g;
	size_t slots = 5 + 11 * (size_t)count;
	for (const struct rc_xmsg *m = head; m; m = m->next)
		b.cap += item_bytes(s, m);
	b.cap += 3 * 25;
	b.argv = malloc(slots * (sizeof(*b.argv) + sizeof(*b.lens)) + b.cap);
	if (!b.argv || group(head, count, &g) != 0) {
		free(b.argv);
		s->stats.alloc_failures++;
		return -ENOMEM;
	}
	b.lens = (size_t *)(b.argv + slots);
	b.buf = (char *)(b.lens + slots);
	arg(&b, "EVALSHA", 7);
	arg(&b, s->app->redis_sha, 40);
	arg(&b, NULL, 0); /* the key count, known once the keys are in */
	for (uint32_t t = 0, at = 0; t < g.topics; at += g.size[t++])
		topic_keys_args(&b, s, g.item + at, g.size[t]);
	b.argv[2] = b.buf + b.used;
	b.lens[2] = num(b.buf + b.used, (uint64_t)b.argc - 3);
	b.used += b.lens[2] + 1;
	arg(&b, "p", 1);
	num_arg(&b, g.topics);
	for (uint32_t t = 0, at = 0; t < g.topics; at += g.size[t++])
		topic_argv(&b, s, g.item + at, g.size[t]);
	RC_ASSERT((size_t)b.argc <= slots && b.used <= b.cap);
	int rc = rc_redis_command(l, b.argc, b.argv, b.lens, head, W_PUBLISH);
	free(b.argv);
	free(g.mem);
	if (rc == 0) {
		s->stats.redis_publish_batches++;
		s->stats.redis_publish_batched += count;
	}
	return rc;
}

/* EVALSHA in replay mode: topic's seq, epoch and (has_since) the entries after since, as
 * many of the newest as half of redis_reply_bytes_max holds (the reply stays under it). */
static int issue_replay(struct rc_redis_link *l, const char *topic, size_t len, bool has_since,
			uint64_t since, void *ctx, enum what what)
{
	struct rc_shard *s = l->shard;
	char k[2][KEY_BYTES], n[5][24];
	size_t kl[2];
	uint64_t count, age;
	if (!topic_keys(s, topic, len, k, kl))
		return -EINVAL;
	history_bounds(s, topic, len, &count, &age);
	const char *argv[] = {"EVALSHA", s->app->redis_sha, "2", k[0], k[1], "r",
			      n[0], n[1], n[2], n[3], n[4]};
	size_t lens[] = {7, 40, 1, kl[0], kl[1], 1, num(n[0], proposed_epoch(s)),
			 has_since ? num(n[1], since) : 0, num(n[2], count), num(n[3], age),
			 num(n[4], s->app->cfg.redis_reply_bytes_max / 2)};
	RC_STATIC_ASSERT(RC_ARRAY_LEN(argv) == RC_ARRAY_LEN(lens), "one length per argument");
	return rc_redis_command(l, (int)RC_ARRAY_LEN(argv), argv, lens, ctx, what);
}

/* SUBSCRIBE or UNSUBSCRIBE the topic's channel on its subscriber link. A link that is up
 * but cannot take it (backlog full, no memory) is failed: its reconnect subscribes every
 * channel again, so no topic stays deaf. */
static int channel_command(struct rc_shard *s, struct rc_otopic *t, const char *verb)
{
	char ch[KEY_BYTES];
	struct rc_redis_link *l = link_of(s, t->node.name, t->node.name_len, RC_REDIS_SUB);
	int cl = snprintf(ch, sizeof(ch), "%s%s", s->app->cfg.redis_prefix, t->node.name);
	const char *argv[] = {verb, ch};
	size_t lens[] = {strlen(verb), (size_t)cl};
	int rc = rc_redis_command(l, 2, argv, lens, NULL, 0);
	if (rc == -EBUSY || rc == -ENOMEM)
		rc_redis_link_fail(l);
	return rc;
}

static bool is_noscript(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* ---- answers to subscribers -------------------------------------------------------------- */
/* Answers REPLAY m (taken) before t (NULL: forgotten) was ever synced (Redis unreachable):
 * live from t->seq, epoch unknown; the first sync then resets these subscribers. */
static void answer_blind(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m)
{
	if (t)
		t->answered_blind = true;
	m->kind = RC_X_REPLAYED;
	m->seq = t ? t->seq : 0;
	m->epoch = 0;
	rc_pubsub_answer(s, m);
}

/* Fans the join/leave frames held while subscribers waited out, once none waits. */
static void release_events(struct rc_shard *s, struct rc_otopic *t)
{
	if (t->waiting)
		return;
	for (uint32_t i = 0; i < t->events_count; i++)
		rc_pubsub_fan_out_event(s, t, t->events[i]);
	t->events_count = 0;
}

static void answer_waiting_blind(struct rc_shard *s, struct rc_otopic *t)
{
	while (t->waiting) {
		struct rc_xmsg *m = t->waiting;
		t->waiting = m->next;
		m->next = NULL;
		answer_blind(s, t, m);
	}
	release_events(s, t);
}

/* Answers REPLAY m (taken) of synced t: locally when the owner's history holds everything
 * after since (or nothing is asked), else from the Redis stream. */
static void replay_synced(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m)
{
	uint32_t first;
	bool gap = true;
	bool local = !m->has_since || (m->has_epoch && m->epoch != t->epoch) || m->seq >= t->seq;
	if (!local)
		local = rc_history_since(&t->hist, m->seq, &first, &gap) > 0 && !gap;
	if (local || issue_replay(link_of(s, m->topic, m->topic_len, RC_REDIS_CMD), m->topic,
				  m->topic_len, true, m->seq, m, W_REPLAY) != 0)
		rc_pubsub_replay_local(s, t, m);
}

/* Collects frames of seq expect.. into m, restarting after a hole (the gap before them). */
static void collect(struct rc_xmsg *m, struct rc_frame *f, uint64_t *expect)
{
	if (f->seq > *expect) {
		for (uint32_t i = 0; i < m->nframes; i++)
			rc_frame_unref(m->frames[i]);
		m->nframes = 0;
		m->gap = 1;
		m->gap_to = f->seq - 1;
	}
	m->frames[m->nframes++] = f;
	*expect = f->seq + 1;
}

/* Calls fn on each message of res's stream entries, oldest first (an entry that does not
 * parse is counted and skipped). */
static void each_entry_msg(struct rc_shard *s, struct rc_otopic *t,
			   const struct rc_redis_result *res,
			   void (*fn)(struct rc_shard *s, struct rc_otopic *t,
				      const struct rc_redis_msg *msg, void *ctx),
			   void *ctx)
{
	size_t ne = res->entries ? res->entries->elements : 0;
	for (size_t k = ne; k-- > 0;) {
		struct rc_redis_msgs msgs;
		struct rc_redis_msg msg;
		if (rc_redis_parse_entry(res->entries->element[k], &msgs) != 0) {
			s->stats.redis_errors++;
			continue;
		}
		while (rc_redis_msgs_next(&msgs, &msg))
			fn(s, t, &msg, ctx);
	}
}

/* A stream replay being collected: into m, from expect, the history's newest count at most. */
struct replaying {
	struct rc_xmsg *m;
	uint64_t expect;
	uint64_t oldest; /* the oldest seq the history bound lets a replay return */
};

static void replay_msg(struct rc_shard *s, struct rc_otopic *t, const struct rc_redis_msg *msg,
		       void *ctx)
{
	struct replaying *r = ctx;
	if (msg->seq < r->expect || msg->seq < r->oldest || msg->seq > t->seq)
		return;
	struct rc_frame *f = rc_pubsub_frame(s, t, msg->seq, msg->data, msg->data_len);
	if (f)
		collect(r->m, f, &r->expect);
}

/* A stream replay for m (since = m->seq) answered by res: the stream's entries up to t->seq
 * (the newest history_messages_max of them), then the owner's history for what arrived live
 * meanwhile; one gap before them at most. */
static void replay_answer(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m,
			  const struct rc_redis_result *res)
{
	uint64_t count, age, since = m->seq;
	history_bounds(s, t->node.name, t->node.name_len, &count, &age);
	count = RC_MIN(count, t->seq - RC_MIN(since, t->seq));
	struct replaying r = {m, since + 1, t->seq >= count ? t->seq - count + 1 : 1};
	m->frames = malloc((count + t->hist.count + 1) * sizeof(*m->frames));
	m->gap_from = since + 1;
	if (m->frames)
		each_entry_msg(s, t, res, replay_msg, &r);
	uint64_t expect = r.expect;
	for (uint32_t i = 0; m->frames && i < t->hist.count; i++) {
		const struct rc_history_item *it = rc_history_at(&t->hist, i);
		if (it->seq < expect)
			continue;
		rc_frame_ref_n(it->ref, 1);
		collect(m, it->ref, &expect);
	}
	if (!m->frames || expect <= t->seq) { /* the newest are missing: all of it is a gap */
		for (uint32_t i = 0; i < m->nframes; i++)
			rc_frame_unref(m->frames[i]);
		m->nframes = 0;
		m->gap = 1;
		m->gap_to = t->seq;
	}
	/* The message's charge covers its frame array from here (xmsg_bytes, pubsub.c). */
	rc_mem_charge(s->app, RC_BUDGET_outbox, (size_t)m->nframes * sizeof(*m->frames));
	m->kind = RC_X_REPLAYED;
	m->seq = t->seq;
	m->epoch = t->epoch;
	rc_pubsub_answer(s, m);
}

/* ---- the owner's view of a topic --------------------------------------------------------- */
/* Fans f (taken) out after t->seq; a seq that skips ahead is announced as a gap first. */
static void advance(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f)
{
	if (f->seq <= t->seq) {
		rc_frame_unref(f);
		return;
	}
	if (f->seq > t->seq + 1) {
		s->stats.redis_gaps += f->seq - t->seq - 1;
		rc_pubsub_tell_shards(s, t, RC_X_GAP, 0, t->seq + 1, f->seq - 1);
	}
	t->seq = f->seq;
	rc_pubsub_fan_out(s, t, f);
}

/* The numbering of t is now epoch, from seq: subscribers told (reset) if they knew another. */
static void renumber(struct rc_shard *s, struct rc_otopic *t, uint64_t epoch, uint64_t seq)
{
	bool told = t->synced || t->answered_blind;
	if (t->synced)
		rc_pubsub_hist_clear(s, t);
	t->epoch = epoch;
	t->seq = seq;
	t->synced = true;
	t->answered_blind = false;
	if (told)
		rc_pubsub_tell_shards(s, t, RC_X_RESET, seq, 0, 0);
}

static void drop_held(struct rc_otopic *t)
{
	for (uint32_t i = 0; i < t->held_count; i++)
		rc_frame_unref(t->held[i]);
	t->held_count = 0;
}

static void flush_held(struct rc_shard *s, struct rc_otopic *t)
{
	for (uint32_t i = 0; i < t->held_count; i++)
		advance(s, t, t->held[i]);
	t->held_count = 0;
}

/* After a sync (or without one): held messages go out, waiting subscribers are answered. */
static void settle(struct rc_shard *s, struct rc_otopic *t)
{
	flush_held(s, t);
	while (t->synced && t->waiting) {
		struct rc_xmsg *m = t->waiting;
		t->waiting = m->next;
		m->next = NULL;
		replay_synced(s, t, m);
	}
	release_events(s, t);
}

/* Appends f (taken) to the frame array *v (*count of *cap), which doubles from 8 up to
 * RC_REDIS_HELD_LIMIT, charged to the engine; past it or without memory f is dropped
 * (counted in redis_held_drops). */
static void frames_push(struct rc_shard *s, struct rc_frame ***v, uint32_t *count,
			uint32_t *cap, struct rc_frame *f)
{
	if (*count == *cap) {
		uint32_t want = *cap ? *cap * 2 : 8;
		struct rc_frame **grown = NULL;
		size_t grow = (want - *cap) * sizeof(*grown);
		if (want <= RC_REDIS_HELD_LIMIT && rc_mem_try_charge(s->app, RC_BUDGET_engine, grow)) {
			grown = realloc(*v, want * sizeof(*grown));
			if (!grown)
				rc_mem_release(s->app, RC_BUDGET_engine, grow);
		}
		if (!grown) {
			rc_frame_unref(f);
			s->stats.redis_held_drops++;
			return;
		}
		*v = grown;
		*cap = want;
	}
	RC_ASSERT(*count < *cap);
	(*v)[(*count)++] = f;
}

/* Holds join/leave frame f (taken) while t's subscribers wait for the first sync, so they see
 * it after their answer (events are at most once: past the bound it is dropped). */
static bool engine_defer_event(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f)
{
	if (!t->waiting)
		return false;
	frames_push(s, &t->events, &t->events_count, &t->events_cap, f);
	return true;
}

/* A sync context, charged to the engine's memory. NULL: out of memory or budget. */
static struct sync *sync_new(struct rc_shard *s)
{
	if (!rc_mem_try_charge(s->app, RC_BUDGET_engine, sizeof(struct sync)))
		return NULL;
	struct sync *y = malloc(sizeof(*y));
	if (!y)
		rc_mem_release(s->app, RC_BUDGET_engine, sizeof(*y));
	return y;
}

static void sync_free(struct rc_shard *s, struct sync *y)
{
	if (y)
		rc_mem_release(s->app, RC_BUDGET_engine, sizeof(*y));
	free(y);
}

static void start_sync(struct rc_shard *s, struct rc_otopic *t)
{
	if (t->syncing) {
		/* The one in flight may have run before what this one must cover: again after. */
		t->need_sync = true;
		return;
	}
	struct sync *y = sync_new(s);
	struct rc_redis_link *l = link_of(s, t->node.name, t->node.name_len, RC_REDIS_CMD);
	if (y) {
		y->len = t->node.name_len;
		memcpy(y->topic, t->node.name, y->len + 1u);
	}
	if (!y || issue_replay(l, t->node.name, t->node.name_len, t->synced, t->seq, y, W_SYNC)) {
		sync_free(s, y);
		t->need_sync = true;
		settle(s, t);
		if (!t->synced)
			answer_waiting_blind(s, t);
		return;
	}
	t->syncing = true;
	t->need_sync = false;
}

/* A message t missed, from the stream: fanned out unless it was already. */
static void catch_up(struct rc_shard *s, struct rc_otopic *t, const struct rc_redis_msg *msg,
		     void *ctx)
{
	(void)ctx;
	if (msg->seq <= t->seq)
		return;
	struct rc_frame *f = rc_pubsub_frame(s, t, msg->seq, msg->data, msg->data_len);
	if (f)
		advance(s, t, f);
}

static void sync_done(struct rc_shard *s, struct rc_otopic *t, const struct rc_redis_result *res)
{
	if (!t->synced || res->epoch != t->epoch) {
		renumber(s, t, res->epoch, res->seq);
	} else {
		each_entry_msg(s, t, res, catch_up, NULL);
		if (t->seq < res->seq) {
			s->stats.redis_gaps += res->seq - t->seq;
			rc_pubsub_tell_shards(s, t, RC_X_GAP, 0, t->seq + 1, res->seq);
			t->seq = res->seq;
		}
	}
	settle(s, t);
}

/* Holds f (taken) while t syncs; past RC_REDIS_HELD_LIMIT it is dropped (counted; the gap
 * is announced when a later seq goes out). */
static void hold(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f)
{
	frames_push(s, &t->held, &t->held_count, &t->held_cap, f);
}

/* A message published on t's channel. */
static void live(struct rc_shard *s, struct rc_otopic *t, const struct rc_redis_msg *msg)
{
	/* Learnt from a message when no sync could run: live from it. A new epoch under
	 * subscribers: a reset, then what of it came before this message is a gap. */
	if (!t->syncing && (!t->synced || msg->epoch != t->epoch)) {
		renumber(s, t, msg->epoch, t->synced ? 0 : msg->seq - 1);
		settle(s, t);
	}
	struct rc_frame *f = rc_pubsub_frame(s, t, msg->seq, msg->data, msg->data_len);
	if (!f)
		return;
	if (t->syncing)
		hold(s, t, f);
	else
		advance(s, t, f);
}

/* ---- replies ------------------------------------------------------------------------------ */
/* A script's reply r for ctx: parsed into res, or false (failed link, error, malformed:
 * counted). A NOSCRIPT error (the script cache was flushed) loads the script again and
 * reissues the command with reissue, which then owns ctx: *again is set. */
static bool script_result(struct rc_redis_link *l, const redisReply *r,
			  struct rc_redis_result *res, bool *again)
{
	*again = false;
	if (is_noscript(r)) {
		(void)load_script(l, W_LOAD);
		*again = true;
		return false;
	}
	if (!r || r->type == REDIS_REPLY_ERROR)
		return false;
	if (rc_redis_parse_result(r, res) != 0) {
		l->shard->stats.redis_errors++;
		return false;
	}
	return true;
}

/* Answers the publishes chained from head (taken) in order: each by its item of the reply r
 * to their batch of count (its place there in m->seq, see group), or refused once r does not
 * answer one. */
static void answer_batch(struct rc_shard *s, struct rc_xmsg *head, uint32_t count,
			 const redisReply *r)
{
	bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 * (size_t)count;
	if (r && !ok && r->type != REDIS_REPLY_ERROR)
		s->stats.redis_errors++; /* not what the script returns */
	while (head) {
		struct rc_xmsg *m = head;
		struct rc_redis_result res;
		head = m->next;
		m->next = NULL;
		ok = ok && m->seq < count && rc_redis_parse_item(r, count, m->seq, &res) == 0;
		if (ok && !res.refused) {
			s->stats.publishes += !res.duplicate;
			s->stats.publish_duplicates += res.duplicate;
			rc_pubsub_published(s, m, res.seq, res.epoch, res.duplicate, false);
		} else {
			/* Not taken, or not known to be: refused, never acked. */
			s->stats.redis_refusals++;
			rc_pubsub_published(s, m, 0, 0, false, true);
		}
	}
}

/* Answers the publishes chained from head (taken) refused: never sent, or not known taken. */
static void refuse(struct rc_shard *s, struct rc_xmsg *head)
{
	answer_batch(s, head, 0, NULL);
}

static uint32_t chain_length(const struct rc_xmsg *m)
{
	uint32_t n = 0;
	for (; m; m = m->next)
		n++;
	return n;
}

/* Appends the chain from head to l's resend. */
static void resend_later(struct rc_redis_link *l, struct rc_xmsg *head)
{
	if (l->resend_tail)
		l->resend_tail->next = head;
	else
		l->resend = head;
	while (head->next)
		head = head->next;
	l->resend_tail = head;
}

static struct rc_xmsg *take_resend(struct rc_redis_link *l)
{
	struct rc_xmsg *head = l->resend;
	l->resend = l->resend_tail = NULL;
	l->reloading = false;
	return head;
}

/* Sends the publishes chained from head in script calls of redis_publish_batch_max at most,
 * in their order (those that cannot go are answered refused). */
static void send_chain(struct rc_redis_link *l, struct rc_xmsg *head)
{
	uint32_t max = l->shard->app->cfg.redis_publish_batch_max;
	while (head) {
		struct rc_xmsg *last = head;
		uint32_t n = 1;
		for (; n < max && last->next; n++)
			last = last->next;
		struct rc_xmsg *rest = last->next;
		last->next = NULL;
		if (issue_batch(l, head, n) != 0)
			refuse(l->shard, head);
		head = rest;
	}
}

/* The answer to a batch. NOSCRIPT (the script cache was flushed): the batch, and those
 * behind it that were sent before the script is loaded again, go again in their order once
 * it is, and no newer batch leaves before them (a topic's seqs follow its publishes). */
static void publish_reply(struct rc_redis_link *l, struct rc_xmsg *head, const redisReply *r)
{
	if (!is_noscript(r)) {
		answer_batch(l->shard, head, chain_length(head), r);
		return;
	}
	resend_later(l, head);
	if (!l->reloading && load_script(l, W_RELOAD) != 0) {
		refuse(l->shard, take_resend(l));
		return;
	}
	l->reloading = true;
}

/* The reload's answer r (NULL: the link failed): the resend goes, or is refused. */
static void reloaded(struct rc_redis_link *l, const redisReply *r)
{
	struct rc_xmsg *head = take_resend(l);
	if (r && r->type == REDIS_REPLY_STRING)
		send_chain(l, head);
	else
		refuse(l->shard, head);
}

/* Takes l's batch of publishes (NULL: none) and its length. */
static struct rc_xmsg *take_batch(struct rc_redis_link *l, uint32_t *count)
{
	struct rc_xmsg *head = l->batch;
	*count = l->batch_count;
	l->batch = l->batch_tail = NULL;
	l->batch_count = 0;
	l->batch_bytes = 0;
	return head;
}

/* Sends l's batch of publishes (its items answered refused if they cannot go), unless a
 * resend waits for the script to be loaded again. */
static void send_batch(struct rc_redis_link *l)
{
	uint32_t count;
	if (!l->reloading)
		send_chain(l, take_batch(l, &count));
}

static void replay_reply(struct rc_redis_link *l, struct rc_xmsg *m, const redisReply *r)
{
	struct rc_shard *s = l->shard;
	struct rc_otopic *t = rc_pubsub_owned(s, m->topic, m->topic_len);
	struct rc_redis_result res;
	bool again;
	bool ok = script_result(l, r, &res, &again);
	if (again && issue_replay(l, m->topic, m->topic_len, true, m->seq, m, W_REPLAY) == 0)
		return;
	if (!t || !t->synced)
		answer_blind(s, t, m);
	else if (ok && res.epoch == t->epoch)
		replay_answer(s, t, m, &res);
	else
		rc_pubsub_replay_local(s, t, m); /* a gap from what the owner holds, or a reset */
}

static void sync_reply(struct rc_redis_link *l, struct sync *y, const redisReply *r)
{
	struct rc_shard *s = l->shard;
	struct rc_otopic *t = rc_pubsub_owned(s, y->topic, y->len);
	struct rc_redis_result res;
	bool again;
	bool ok = script_result(l, r, &res, &again);
	if (t && again && issue_replay(l, y->topic, y->len, t->synced, t->seq, y, W_SYNC) == 0)
		return;
	sync_free(s, y);
	if (!t)
		return;
	bool more = t->need_sync; /* asked for while this one ran */
	t->syncing = false;
	t->need_sync = false;
	if (t->shards_subscribed == 0) {
		drop_held(t); /* nobody follows it here any more: the next one syncs afresh */
		return;
	}
	if (ok) {
		sync_done(s, t, &res);
		if (more && t->rsub == RC_RSUB_SUBSCRIBED)
			start_sync(s, t);
		return;
	}
	/* Without a sync what is held goes out as it is, gaps announced; retried when the
	 * command link is up again. */
	t->need_sync = true;
	settle(s, t);
	if (!t->synced)
		answer_waiting_blind(s, t);
}

/* ---- history queries: from the stream every node shares --------------------------------- */
/* A history answer being written: the msg envelopes after since (and from oldest, the
 * history bound's first seq), up to seq, at most limit of them, joined by commas. */
struct history_text {
	const struct rc_xmsg *m;
	uint64_t oldest;
	uint64_t seq;
	uint32_t count;
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

static void history_msg(struct rc_shard *s, struct rc_otopic *t, const struct rc_redis_msg *msg,
			void *ctx)
{
	struct history_text *h = ctx;
	const struct rc_xmsg *m = h->m;
	(void)s;
	(void)t;
	if (h->failed || msg->seq <= m->seq || msg->seq < h->oldest || msg->seq > h->seq ||
	    h->count >= m->limit)
		return;
	size_t need = h->len + 1 + rc_envelope_msg_len(m->topic_len, msg->seq, msg->data_len);
	if (need > h->cap) {
		size_t cap = RC_MAX(need, 2 * h->cap);
		char *p = realloc(h->buf, cap);
		if (!p) {
			h->failed = true;
			return;
		}
		h->buf = p;
		h->cap = cap;
	}
	if (h->count++)
		h->buf[h->len++] = ',';
	h->len += rc_envelope_write_msg(h->buf + h->len, h->cap - h->len, m->topic, m->topic_len,
					msg->seq, msg->data, msg->data_len);
}

/* The stream's answer r to history query m (taken): its messages after since, oldest first,
 * within the topic's history bound; what this owner holds when Redis did not answer. */
static void history_reply(struct rc_redis_link *l, struct rc_xmsg *m, const redisReply *r)
{
	struct rc_shard *s = l->shard;
	struct rc_redis_result res;
	bool again;
	bool ok = script_result(l, r, &res, &again);
	if (again && issue_replay(l, m->topic, m->topic_len, true, m->seq, m, W_HISTORY) == 0)
		return;
	if (!ok) {
		rc_pubsub_history_local(s, m);
		return;
	}
	uint64_t count, age;
	history_bounds(s, m->topic, m->topic_len, &count, &age);
	struct history_text h = {m, res.seq >= count ? res.seq - count + 1 : 1, res.seq, 0,
				 NULL, 0, 0, false};
	each_entry_msg(s, NULL, &res, history_msg, &h);
	if (h.failed) {
		s->stats.alloc_failures++;
		h.len = 0;
	}
	rc_pubsub_history_answer(s, m, true, res.epoch, res.seq, h.buf ? h.buf : "", h.len);
	free(h.buf);
}

/* A history query (taken) on the topic's owner: asked of the stream, so any node answers
 * for a topic it never had; what this owner holds while Redis cannot be asked. */
static void engine_history(struct rc_shard *s, struct rc_xmsg *m)
{
	if (issue_replay(link_of(s, m->topic, m->topic_len, RC_REDIS_CMD), m->topic,
			 m->topic_len, true, m->seq, m, W_HISTORY) != 0)
		rc_pubsub_history_local(s, m);
}

static void on_reply(struct rc_redis_link *l, void *ctx, uint32_t what, redisReply *r)
{
	switch ((enum what)what) {
	case W_LOAD:
	case W_RELOAD:
		if (r && r->type == REDIS_REPLY_STRING &&
		    (r->len != 40 || memcmp(r->str, l->shard->app->redis_sha, 40) != 0)) {
			rc_redis_link_fail(l); /* another script answered to our name */
			r = NULL;
		}
		if (what == W_RELOAD)
			reloaded(l, r);
		return;
	case W_PUBLISH: publish_reply(l, ctx, r); return;
	case W_REPLAY: replay_reply(l, ctx, r); return;
	case W_SYNC: sync_reply(l, ctx, r); return;
	case W_HISTORY: history_reply(l, ctx, r); return;
	default:
		RC_ASSERT(what >= RC_XNODE_WHAT_BASE); /* presence_redis.c's */
		rc_xnode_reply(l, ctx, what, r);
		return;
	}
}

/* A subscriber link's confirmation or message. */
static void on_push(struct rc_redis_link *l, redisReply *r)
{
	struct rc_shard *s = l->shard;
	size_t plen = strlen(s->app->cfg.redis_prefix);
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
		return; /* a pong, or an error already counted */
	const char *kind = r->element[0]->str;
	const redisReply *ch = r->element[1];
	if (ch->len <= plen || memcmp(ch->str, s->app->cfg.redis_prefix, plen) != 0 ||
	    rc_xnode_push(l, r))
		return;
	struct rc_otopic *t = rc_pubsub_owned(s, ch->str + plen, ch->len - plen);
	if (!t)
		return;
	if (strcmp(kind, "subscribe") == 0 && t->rsub == RC_RSUB_SUBSCRIBING) {
		t->rsub = RC_RSUB_SUBSCRIBED;
		start_sync(s, t);
	} else if (strcmp(kind, "unsubscribe") == 0 && t->rsub == RC_RSUB_UNSUBSCRIBING) {
		t->rsub = RC_RSUB_NONE;
	} else if (strcmp(kind, "message") == 0 && t->rsub == RC_RSUB_SUBSCRIBED) {
		struct rc_redis_msgs msgs;
		struct rc_redis_msg msg;
		const redisReply *p = r->element[2];
		/* The payload's first byte tells: a digit sequenced messages, a letter an event
		 * of another node (presence_redis.c). */
		if (p->type == REDIS_REPLY_STRING && rc_xnode_is_event(p->str, p->len)) {
			rc_xnode_event_in(s, t, p->str, p->len);
			return;
		}
		if (p->type != REDIS_REPLY_STRING || rc_redis_parse_msgs(p->str, p->len, &msgs)) {
			s->stats.redis_errors++;
			return;
		}
		while (rc_redis_msgs_next(&msgs, &msg))
			live(s, t, &msg);
	}
}

/* Calls fn on every topic s owns on l's instance (the node's own ringcast.* feeds stay in
 * memory). */
static void each_topic(struct rc_redis_link *l, void (*fn)(struct rc_redis_link *l,
							  struct rc_otopic *t))
{
	struct rc_shard *s = l->shard;
	for (uint32_t b = 0; b <= s->otopics.mask; b++) {
		struct rc_topic_node *n = s->otopics.buckets[b], *next;
		for (; n; n = next) {
			next = n->next;
			if (!rc_topic_reserved(n->name, n->name_len) &&
			    instance_of(s, n->name, n->name_len) == l->index / 2)
				fn(l, rc_container_of(n, struct rc_otopic, node));
		}
	}
}

static void topic_up(struct rc_redis_link *l, struct rc_otopic *t)
{
	struct rc_shard *s = l->shard;
	if (l->kind == RC_REDIS_SUB && t->shards_subscribed > 0 && t->rsub == RC_RSUB_NONE &&
	    channel_command(s, t, "SUBSCRIBE") == 0)
		t->rsub = RC_RSUB_SUBSCRIBING;
	if (l->kind == RC_REDIS_CMD && t->need_sync && t->rsub == RC_RSUB_SUBSCRIBED)
		start_sync(s, t);
}

static void topic_down(struct rc_redis_link *l, struct rc_otopic *t)
{
	if (l->kind == RC_REDIS_SUB)
		t->rsub = RC_RSUB_NONE;
	if (!t->synced && !t->syncing)
		answer_waiting_blind(l->shard, t);
}

static void on_up(struct rc_redis_link *l)
{
	if (l->kind == RC_REDIS_CMD)
		(void)load_script(l, W_LOAD);
	rc_xnode_link_up(l);
	each_topic(l, topic_up);
}

static void on_down(struct rc_redis_link *l)
{
	uint32_t count;
	struct rc_xmsg *head = take_batch(l, &count);
	answer_batch(l->shard, head, count, NULL); /* never sent */
	refuse(l->shard, take_resend(l));
	each_topic(l, topic_down);
}

static void on_turn(struct rc_redis_link *l)
{
	if (l->batch_count)
		send_batch(l);
}

/* ---- what owners call --------------------------------------------------------------------- */
/* Queues m in its link's batch, which leaves with the loop turn (on_turn) or once it holds
 * redis_publish_batch_max publishes. */
static void engine_publish(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_redis_link *l = link_of(s, m->topic, m->topic_len, RC_REDIS_CMD);
	size_t bytes = m->data_len + item_bytes(s, m);
	if (l->state != RC_REDIS_UP || !rc_redis_backlog_room(l, l->batch_bytes + bytes)) {
		s->stats.redis_refusals++;
		rc_pubsub_published(s, m, 0, 0, false, true);
		return;
	}
	m->next = NULL;
	if (l->batch_tail)
		l->batch_tail->next = m;
	else
		l->batch = m;
	l->batch_tail = m;
	l->batch_count++;
	l->batch_bytes += bytes;
	if (l->batch_count >= s->app->cfg.redis_publish_batch_max)
		send_batch(l);
}

static void engine_watch(struct rc_shard *s, struct rc_otopic *t, bool on)
{
	bool subscribed = t->rsub == RC_RSUB_SUBSCRIBING || t->rsub == RC_RSUB_SUBSCRIBED;
	if (on && !subscribed && channel_command(s, t, "SUBSCRIBE") == 0)
		t->rsub = RC_RSUB_SUBSCRIBING;
	if (on)
		return;
	if (subscribed && channel_command(s, t, "UNSUBSCRIBE") == 0)
		t->rsub = RC_RSUB_UNSUBSCRIBING;
	/* Nobody follows it here any more: the next subscriber syncs afresh. */
	answer_waiting_blind(s, t);
	drop_held(t);
	t->synced = false;
	t->need_sync = false;
	t->answered_blind = false;
	rc_pubsub_hist_clear(s, t);
}

static void engine_replay(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m)
{
	if (t->synced) {
		replay_synced(s, t, m);
		return;
	}
	struct rc_redis_link *cmd = link_of(s, m->topic, m->topic_len, RC_REDIS_CMD);
	struct rc_redis_link *sub = rc_redis_link(s, cmd->index / 2, RC_REDIS_SUB);
	/* The first sync comes once the channel subscription is confirmed: wait for it while
	 * both links are up, else answer now (and reset when the numbering is known). */
	if (cmd->state == RC_REDIS_UP && sub->state == RC_REDIS_UP && t->rsub != RC_RSUB_NONE) {
		m->next = t->waiting;
		t->waiting = m;
		return;
	}
	answer_blind(s, t, m);
}

const struct rc_engine_ops rc_redis_engine = {
	.publish = engine_publish,
	.watch = engine_watch,
	.replay = engine_replay,
	.presence = rc_xnode_presence,
	.presence_get = rc_xnode_presence_get,
	.history = engine_history,
	.event = rc_xnode_event_out,
	.defer_event = engine_defer_event,
};

const struct rc_redis_hooks rc_redis_link_hooks = {
	.up = on_up,
	.reply = on_reply,
	.push = on_push,
	.down = on_down,
	.turn = on_turn,
};
