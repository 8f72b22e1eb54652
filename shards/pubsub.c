/*
 * Pub/sub across shards. Every topic has an owner shard (topic hash mod shards) that assigns
 * its sequence numbers, keeps its history and dedup window, and builds each published
 * message once: a WebSocket text frame holding the {"op":"msg",...} envelope. The owner then
 * posts one pointer to that frame to each shard that has subscribers (a per-topic shard
 * mask) through the shards' MPSC rings, and each shard queues the same frame to every local
 * subscriber; the sends of a loop turn leave in one submission. Subscribe, unsubscribe and
 * replay requests travel to the owner the same way, so per (producer, consumer) pair
 * everything stays in FIFO order. Shard threads; rc_pubsub_publish also from foreign threads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "frame.h"
#include "mem.h"
#include "namespace.h"
#include "outbox.h"
#include "presence.h"
#include "pubsub.h"
#include "pubsub_int.h"
#include "sendq.h"
#include "session.h"
#include "sse_rt.h"
#include "uring.h"

static struct rc_shard *owner_of(const struct rc_app *app, uint64_t hash)
{
	return &app->shards[hash % (uint64_t)app->shards_count];
}

/* Who sequences topic name: the engine (Redis), or NULL for this process's memory. The
 * gateway's own feeds (ringcast.*) describe this node: they stay in its memory. */
static const struct rc_engine_ops *engine_of(const struct rc_shard *s, const char *name,
					     size_t len)
{
	const struct rc_engine_ops *e = s->app->engine;
	return e && !rc_topic_reserved(name, len) ? e : NULL;
}

/* ---- frames ---------------------------------------------------------------------------- */
static void release_ref(void *ref, void *ctx)
{
	(void)ctx;
	rc_frame_unref(ref);
}

/*
 * A broadcast frame of topic (hash) for an envelope of elen bytes, which the caller writes at
 * the returned *env: header written, topic copied behind. seq 0: not sequenced (join and
 * leave). NULL without memory.
 */
static struct rc_frame *shared_frame(struct rc_shard *s, const char *topic, size_t tlen,
				     uint64_t hash, uint64_t seq, size_t elen, char **env)
{
	uint8_t hdr[RC_WS_SERVER_HEADER_LIMIT];
	size_t hlen = rc_ws_frame_write_header(hdr, RC_WS_OP_TEXT, true, false, elen);
	uint32_t len = (uint32_t)(hlen + elen + tlen + 1);
	struct rc_frame *f = rc_frame_alloc_shared(s, len);
	if (!f)
		return NULL;
	memcpy(f->data, hdr, hlen);
	*env = (char *)f->data + hlen;
	f->len = (uint32_t)(hlen + elen);
	char *t = (char *)f->data + f->len;
	memcpy(t, topic, tlen);
	t[tlen] = '\0';
	f->topic = t;
	f->topic_len = (uint16_t)tlen;
	f->topic_hash = hash;
	f->seq = seq;
	return f;
}

/* Builds the broadcast frame of one publish: header + envelope, topic copied behind. */
static struct rc_frame *build_msg(struct rc_shard *s, const char *topic, size_t tlen,
				  uint64_t hash, uint64_t seq, const char *data, size_t dlen)
{
	size_t elen = rc_envelope_msg_len(tlen, seq, dlen);
	char *env;
	struct rc_frame *f = shared_frame(s, topic, tlen, hash, seq, elen, &env);
	if (!f)
		return NULL;
	size_t n = rc_envelope_write_msg(env, elen, topic, tlen, seq, data, dlen);
	RC_ASSERT(n == elen);
	return f;
}

/* Bytes of a broadcast frame's header (unmasked server frame): the envelope follows them. */
static size_t header_len(const struct rc_frame *f)
{
	RC_DASSERT(f->len >= 2);
	return f->data[1] == 127 ? 10 : f->data[1] == 126 ? 4 : 2;
}

/*
 * Compresses a broadcast frame's envelope once for every subscriber that negotiated
 * permessage-deflate; NULL when not worth it (below the threshold or incompressible). One
 * variant serves every window: subscribers whose window the envelope exceeds get f itself.
 */
static struct rc_frame *build_deflated(struct rc_shard *s, const struct rc_frame *f)
{
	size_t hlen = header_len(f);
	size_t elen = f->len - hlen;
	if (!rc_pmd_should_compress(&s->app->pmd, elen) || elen < 8)
		return NULL;
	uint8_t *z = rc_shard_zbuf(s, elen);
	size_t zlen = z ? rc_pmd_deflate(s->deflater, f->data + hlen, elen, z, elen - 1) : 0;
	if (!zlen)
		return NULL;
	uint8_t hdr[RC_WS_SERVER_HEADER_LIMIT];
	size_t zh = rc_ws_frame_write_header(hdr, RC_WS_OP_TEXT, true, true, zlen);
	struct rc_frame *d = rc_frame_alloc_shared(s, (uint32_t)(zh + zlen));
	if (!d)
		return NULL;
	memcpy(d->data, hdr, zh);
	memcpy(d->data + zh, z, zlen);
	d->len = (uint32_t)(zh + zlen);
	d->seq = f->seq;
	d->topic_hash = f->topic_hash; /* the latest policy finds a topic's frames by it */
	s->stats.deflate_in_bytes += elen;
	s->stats.deflate_out_bytes += zlen;
	return d;
}

/* ---- cross-shard posting ----------------------------------------------------------------- */
/* A message's charge (outbox): it, the data it carries and its replay array, from creation to
 * its last reader. */
static size_t xmsg_bytes(const struct rc_xmsg *m)
{
	return sizeof(*m) + m->data_len + 1 + (size_t)m->nframes * sizeof(*m->frames);
}

/* Frees m (NULL: nothing) and its frame array, and releases its charge. */
static void xmsg_free(struct rc_app *app, struct rc_xmsg *m)
{
	if (!m)
		return;
	rc_mem_release(app, RC_BUDGET_outbox, xmsg_bytes(m));
	free(m->frames);
	free(m);
}

/* Releases what an undelivered cross-shard item owns (shutdown, or a failed post). */
static void discard_item(void *item)
{
	struct rc_xmsg *m = rc_item_ptr(item);
	switch (rc_item_kind(item)) {
	case RC_ITEM_RETURN: return; /* the arena goes away whole */
	case RC_ITEM_XMSG:
		for (uint32_t k = 0; k < m->nframes; k++)
			rc_frame_unref(m->frames[k]);
		RC_ASSERT(rc_current_app != NULL);
		xmsg_free(rc_current_app, m);
		return;
	default: rc_frame_unref(rc_item_ptr(item));
	}
}

/* Posts item to shard `to`; without memory to wait in, the item is released (counted). */
static void post(struct rc_shard *s, struct rc_shard *to, void *item)
{
	if (rc_outbox_post(s, to, item) != 0)
		discard_item(item);
}

/* A message of app from shard s (NULL: a foreign thread) about topic, with room for dlen
 * bytes of data; charged to the budget until xmsg_free. */
static struct rc_xmsg *xmsg_new(struct rc_app *app, const struct rc_shard *s, enum rc_xkind kind,
				const char *topic, size_t tlen, size_t dlen)
{
	struct rc_xmsg *m = calloc(1, sizeof(*m) + dlen + 1);
	if (!m)
		return NULL;
	m->data_len = (uint32_t)dlen;
	rc_mem_charge(app, RC_BUDGET_outbox, xmsg_bytes(m));
	m->kind = (uint8_t)kind;
	m->topic_len = (uint16_t)tlen;
	memcpy(m->topic, topic, tlen);
	m->from = (uint16_t)(s ? s->index : RC_SHARDS_LIMIT);
	return m;
}

static void handle_xmsg(struct rc_shard *s, struct rc_xmsg *m);

/* Sends m to shard `to`, or handles it at once when `to` is this shard. Takes ownership. */
static void send_xmsg(struct rc_shard *s, struct rc_shard *to, struct rc_xmsg *m)
{
	if (to == s) {
		handle_xmsg(s, m);
		return;
	}
	post(s, to, rc_item(m, RC_ITEM_XMSG));
}

/* ---- local subscribers ------------------------------------------------------------------- */
/*
 * The frame subscriber c gets for broadcast f (both borrowed): subscribers that negotiated
 * permessage-deflate share the owner's one deflated copy if the envelope fits their window
 * (rc_pmd_fits_window); everyone else, and a window too small, gets f plain.
 */
static struct rc_frame *variant_for(struct rc_conn *c, struct rc_frame *f)
{
	if (!f->deflated || !(c->flags & RC_CF_DEFLATE))
		return f;
	if (rc_pmd_fits_window(c->deflate_window_bits, f->len - header_len(f)))
		return f->deflated;
	c->shard->stats.deflate_window_skips++;
	return f;
}

/* True if queued frame q is a message of the topic with hash h (either variant). */
static bool message_of(const struct rc_frame *q, uint64_t h)
{
	return q->shared && q->seq && q->topic_hash == h;
}

/* A gap announcement from..to of sub's topic as a frame to queue, or NULL. */
static struct rc_frame *gap_frame(struct rc_sub *sub, uint64_t from, uint64_t to)
{
	char out[512];
	const struct rc_topic_node *t = &sub->topic->node;
	size_t n = rc_envelope_write_gap(out, sizeof(out), t->name, t->name_len, from, to,
					 sub->epoch);
	struct rc_frame *g = !n				   ? NULL
			     : sub->conn->flags & RC_CF_SSE ? rc_sse_frame(NULL, 0, out, n)
							    : rc_frame_build(RC_WS_OP_TEXT, false, out, n);
	if (g) {
		/* Marks a unicast frame as this topic's gap from seq `from` (conflate). */
		g->topic_hash = t->hash;
		g->seq = from;
	}
	return g;
}

/*
 * Policy latest, c over its queue limit: f (the caller's reference, taken on success)
 * replaces the newest message of its topic still waiting in c's queue, not yet handed to
 * the kernel, and the gap announced just before it grows to cover every seq skipped. False
 * (nothing changed) if no such message waits or memory is short: f is then queued, so the
 * queue holds at most one message per topic beyond the send in flight.
 */
static bool conflate(struct rc_sub *sub, struct rc_frame *f)
{
	struct rc_conn *c = sub->conn;
	uint32_t unsent = rc_sendq_unsent(c), n = c->q.count;
	/* The newest message of the topic waiting: older ones queued before c fell behind
	 * stay ahead of it, so seqs keep their order. */
	while (n > unsent && !message_of(rc_sendq_at(&c->q, n - 1)->frame, f->topic_hash))
		n--;
	if (n == unsent)
		return false;
	n--;
	/* The gap that announces what this message already replaced sits just before it. */
	const struct rc_frame *prev = n > unsent ? rc_sendq_at(&c->q, n - 1)->frame : NULL;
	bool gap = prev && !prev->shared && prev->topic_hash == f->topic_hash && prev->seq;
	uint64_t from = gap ? prev->seq : rc_sendq_at(&c->q, n)->frame->seq;
	struct rc_frame *g = gap_frame(sub, from, f->seq - 1);
	if (!g)
		return false;
	if (gap)
		rc_sendq_swap(c, n - 1, g);
	else if (rc_sendq_insert(c, n++, g) != 0)
		return false;
	rc_sendq_swap(c, n, f);
	c->shard->stats.conflations++;
	return true;
}

/* The slow-consumer policy of sub's topic: its namespace's, else the app's. */
static enum rc_ns_slow slow_policy(const struct rc_sub *sub)
{
	enum rc_ns_slow policy = (enum rc_ns_slow)sub->topic->slow;
	if (policy != RC_NS_SLOW_INHERIT)
		return policy;
	const struct rc_app *app = sub->conn->shard->app;
	return app->drop_slow ? RC_NS_SLOW_DROP
	       : app->latest_slow ? RC_NS_SLOW_LATEST : RC_NS_SLOW_CLOSE;
}

/* Queues f to one subscriber, taking one of the caller's references. False if not taken. */
static bool offer(struct rc_sub *sub, struct rc_frame *f)
{
	struct rc_conn *c = sub->conn;
	struct rc_shard *s = c->shard;
	/* seq 0: a join or leave, outside the topic's numbering (never replayed). */
	bool event = f->seq == 0;
	if (sub->pending || (!event && f->seq <= sub->last_seq) || c->state != RC_CONN_OPEN)
		return false;
	/* An empty queue takes anything (rc_sendq_slow's first test, without the call). */
	bool over = c->q.count && rc_sendq_slow(c, f->len);
	if (over) {
		enum rc_ns_slow policy = slow_policy(sub);
		/* Policy latest keeps the newest message: an event has none to replace, so it
		 * goes. */
		if (policy == RC_NS_SLOW_DROP || (event && policy == RC_NS_SLOW_LATEST)) {
			s->stats.slow_drops++;
			return false;
		}
		if (policy == RC_NS_SLOW_CLOSE) {
			rc_conn_slow_close(c);
			return false;
		}
	}
	struct rc_frame *use = c->flags & RC_CF_SSE
				       ? rc_sse_variant(s, f, header_len(f), sub->epoch)
				       : variant_for(c, f);
	if (!use) {
		s->stats.alloc_failures++;
		return false;
	}
	if (use != f)
		rc_frame_ref_n(use, 1);
	/* Either takes the reference; rc_sendq_push releases it on failure. The slow-consumer
	 * test above decided: the push does not repeat it. */
	int rc = over && conflate(sub, use) ? 0 : rc_sendq_push(c, use, false);
	if (rc == 0) {
		sub->last_seq = event ? sub->last_seq : f->seq;
		s->stats.deliveries++;
	} else if (rc == -ENOBUFS && slow_policy(sub) != RC_NS_SLOW_DROP) {
		rc_conn_slow_close(c); /* the memory budget refused its queue's growth */
	}
	if (use != f)
		return false; /* f's reference was not used */
	return true;
}

/* How many subscribers ahead a fan-out asks for the ring entries a delivery touches (twice
 * as many for the ring's header, three times for the connection record that points at it,
 * four times for the subscription record that points at that) before it reads them. */
#define RC_SUBV_AHEAD 4

/* Asks for the lines of c's record a delivery reads (its queue, then its state and flags). */
static inline void rc_conn_prefetch(const struct rc_conn *c)
{
	__builtin_prefetch(&c->q);
	__builtin_prefetch(&c->flags);
}

/* Asks for the ring entries a delivery to c reads and writes when its queue is not empty:
 * the oldest (the slow-consumer test reads its age) and the next free one (the frame goes
 * there). While a round of sends is under way, publishes meet queues not yet sent (issue 14).
 * The ring's header (its size) was asked for a step earlier. */
static inline void rc_queue_prefetch(const struct rc_conn *c)
{
	const struct rc_sendq *q = &c->q;
	if (q->count) {
		__builtin_prefetch(rc_sendq_at(q, 0));
		__builtin_prefetch(&q->ring->e[(q->head + q->count) & (q->ring->cap - 1)], 1);
	}
}

/* Delivers a broadcast frame to this shard's subscribers. Consumes one reference. */
static void deliver_local(struct rc_shard *s, struct rc_frame *f)
{
	struct rc_topic_node *n = rc_topic_find(&s->ltopics, f->topic, f->topic_len);
	if (!n) {
		rc_frame_unref(f);
		return;
	}
	struct rc_ltopic *t = rc_container_of(n, struct rc_ltopic, node);
	/* One atomic add for the whole fan-out instead of one per subscriber. */
	uint32_t given = t->count;
	rc_frame_ref_n(f, given);
	uint32_t used = 0;
	/* offer() may close a slow subscriber, which never unlinks it here. The walk asks for
	 * the records it needs a few subscribers ahead: the array lets the loads overlap that a
	 * list would chain (issue 14). */
	for (uint32_t i = 0; i < given; i++) {
		if (i + 4 * RC_SUBV_AHEAD < given)
			__builtin_prefetch(t->subv[i + 4 * RC_SUBV_AHEAD]);
		if (i + 3 * RC_SUBV_AHEAD < given)
			rc_conn_prefetch(t->subv[i + 3 * RC_SUBV_AHEAD]->conn);
		if (i + 2 * RC_SUBV_AHEAD < given && t->subv[i + 2 * RC_SUBV_AHEAD]->conn->q.ring)
			__builtin_prefetch(t->subv[i + 2 * RC_SUBV_AHEAD]->conn->q.ring);
		if (i + RC_SUBV_AHEAD < given)
			rc_queue_prefetch(t->subv[i + RC_SUBV_AHEAD]->conn);
		if (offer(t->subv[i], f))
			used++;
	}
	RC_ASSERT(used <= given);
	for (uint32_t i = used; i < given + 1; i++)
		rc_frame_unref(f);
}

/* ---- owner side: history within its bounds ---------------------------------------------- */
/* What a broadcast frame in history counts as: both variants, headers included. */
static uint32_t frame_bytes(const struct rc_frame *f)
{
	size_t n = sizeof(*f) + f->len + f->topic_len + 1;
	if (f->deflated)
		n += sizeof(*f) + f->deflated->len;
	return (uint32_t)RC_MIN(n, (size_t)UINT32_MAX);
}

static bool hist_linked(const struct rc_shard *s, const struct rc_otopic *t)
{
	return t->hist_prev || s->hist_oldest == t;
}

static void hist_unlink(struct rc_shard *s, struct rc_otopic *t)
{
	if (!hist_linked(s, t))
		return;
	if (t->hist_prev)
		t->hist_prev->hist_next = t->hist_next;
	else
		s->hist_oldest = t->hist_next;
	if (t->hist_next)
		t->hist_next->hist_prev = t->hist_prev;
	else
		s->hist_newest = t->hist_prev;
	t->hist_prev = t->hist_next = NULL;
	RC_DASSERT(!hist_linked(s, t));
}

/* t was just published: it goes last in the order the shard's history bound evicts in. */
static void hist_touch(struct rc_shard *s, struct rc_otopic *t)
{
	hist_unlink(s, t);
	t->hist_prev = s->hist_newest;
	if (s->hist_newest)
		s->hist_newest->hist_next = t;
	else
		s->hist_oldest = t;
	s->hist_newest = t;
	RC_DASSERT(hist_linked(s, t));
}

/* After t's history changed from bytes_before: the shard's total follows, counted evictions
 * are added under cause, and an emptied history leaves the eviction order. */
static void hist_account(struct rc_shard *s, struct rc_otopic *t, uint64_t bytes_before,
			 enum rc_evict_cause cause, uint32_t evicted)
{
	RC_ASSERT(s->stats.history_bytes + t->hist.bytes >= bytes_before);
	s->stats.history_bytes = s->stats.history_bytes + t->hist.bytes - bytes_before;
	s->stats.history_evictions[cause] += evicted;
	if (t->hist.count == 0)
		hist_unlink(s, t);
}

/* Evicts the oldest messages of the least recently published topics while the shard holds
 * more than its share of history_total_bytes_max. */
static void hist_trim_shard(struct rc_shard *s)
{
	const struct rc_app *app = s->app;
	uint64_t max = app->cfg.history_total_bytes_max / (uint64_t)app->shards_count;
	struct rc_history_item old;
	while (s->stats.history_bytes > max && s->hist_oldest) {
		struct rc_otopic *t = s->hist_oldest;
		uint64_t before = t->hist.bytes;
		bool popped = rc_history_pop(&t->hist, &old);
		RC_ASSERT(popped); /* linked topics hold history */
		rc_frame_unref(old.ref);
		hist_account(s, t, before, RC_EVICT_total_bytes, 1);
	}
}

/*
 * Keeps a reference to f in t's history within its bounds: the count (a ring that grows
 * with use, charged to the budget; when the budget refuses, the oldest message makes room),
 * history_bytes_max for the topic and the shard's share of history_total_bytes_max.
 */
static void hist_keep(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f)
{
	struct rc_history *h = &t->hist;
	uint64_t before = h->bytes;
	size_t grow = rc_history_growth_bytes(h);
	struct rc_history_item old;
	void *evicted = NULL;
	if (grow && !rc_mem_try_charge(s->app, RC_BUDGET_history, grow)) {
		grow = 0;
		bool popped = rc_history_pop(h, &old);
		hist_account(s, t, before, RC_EVICT_budget, 1);
		if (!popped)
			return; /* an empty ring the budget cannot hold: not kept */
		rc_frame_unref(old.ref);
		before = h->bytes;
	}
	rc_frame_ref_n(f, 1);
	if (rc_history_push(h, f->seq, s->clock.now_ms, f, frame_bytes(f), &evicted) != 0) {
		rc_frame_unref(f);
		rc_mem_release(s->app, RC_BUDGET_history, grow);
		s->stats.alloc_failures++;
		return;
	}
	if (evicted)
		rc_frame_unref(evicted);
	/* With history_messages_max 0 nothing is kept, and nothing is evicted early. */
	hist_account(s, t, before, RC_EVICT_count, evicted != NULL && h->max > 0);
	before = h->bytes;
	uint32_t n = rc_history_trim(h, s->app->cfg.history_bytes_max, release_ref, NULL);
	hist_account(s, t, before, RC_EVICT_topic_bytes, n);
	if (h->count)
		hist_touch(s, t);
	hist_trim_shard(s);
}

void rc_pubsub_trim(struct rc_shard *s)
{
	struct rc_otopic *next;
	for (struct rc_otopic *t = s->hist_oldest; t; t = next) {
		next = t->hist_next; /* an emptied history leaves the list */
		uint64_t before = t->hist.bytes;
		uint32_t n = rc_history_trim(&t->hist, before / 2, release_ref, NULL);
		hist_account(s, t, before, RC_EVICT_memory_soft, n);
	}
}

/* ---- owner side: topics ------------------------------------------------------------------- */
/* True if this shard may own one more topic (its share of topics_max). */
static bool topic_room(const struct rc_shard *owner)
{
	const struct rc_app *app = owner->app;
	uint64_t share = RC_MAX(app->cfg.topics_max / (uint64_t)app->shards_count, 1);
	/* Read racily when owner is another shard, as /metrics does. */
	return __atomic_load_n(&owner->stats.topics_owned, __ATOMIC_RELAXED) < share;
}

/* What a topic of namespace ns (NULL: none) tracks: RC_PRESENCE_* bits. */
static uint8_t presence_flags(const struct rc_namespace *ns)
{
	if (!ns)
		return 0;
	return (uint8_t)((ns->presence ? RC_PRESENCE_LIST : 0) |
			 (ns->join_leave ? RC_PRESENCE_EVENTS : 0));
}

static struct rc_otopic *otopic_get(struct rc_shard *s, const char *name, size_t len, bool create)
{
	struct rc_topic_node *n = rc_topic_find(&s->otopics, name, len);
	if (n || !create)
		return n ? rc_container_of(n, struct rc_otopic, node) : NULL;
	struct rc_otopic *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	rc_mem_charge(s->app, RC_BUDGET_topics, sizeof(*t));
	/* A namespace's history options replace the gateway's for its topics. */
	const struct rc_config *cfg = &s->app->cfg;
	const struct rc_namespace *ns = rc_namespace_of(s->app->namespaces, name, len);
	rc_history_init(&t->hist, ns && ns->has_history_size ? ns->history_size
							       : (uint32_t)cfg->history_messages_max);
	t->hist_age_ms = ns && ns->has_history_age ? ns->history_age_ms
						     : (uint32_t)cfg->history_age_max_ms;
	t->presence_flags = presence_flags(ns);
	/* A new record restarts the numbering (first use, or forgotten): a new epoch says so. */
	t->epoch = rc_topic_epoch(s->app->epoch_key, (uint32_t)s->index, s->topics_created++);
	rc_topic_insert(&s->otopics, &t->node, name, len);
	s->stats.topics_owned++;
	return t;
}

/* The dedup key of id from publisher: one publisher's ids never match another's. */
static uint64_t dedup_key(uint64_t publisher, const char *id, size_t len)
{
	char buf[sizeof(publisher) + RC_ENVELOPE_ID_BYTES_LIMIT];
	RC_ASSERT(len > 0 && len <= RC_ENVELOPE_ID_BYTES_LIMIT);
	memcpy(buf, &publisher, sizeof(publisher));
	memcpy(buf + sizeof(publisher), id, len);
	return rc_topic_hash(buf, sizeof(publisher) + len) | 1; /* never 0: an empty slot */
}

/* Forgets owned topic t: its history, ids, presence and record go, charges released. */
static void otopic_free(struct rc_shard *s, struct rc_otopic *t)
{
	rc_pubsub_presence_drop(s, t);
	uint64_t before = t->hist.bytes;
	rc_mem_release(s->app, RC_BUDGET_history,
		       rc_history_slots_bytes(&t->hist) + t->dedup_cap * sizeof(*t->dedup));
	rc_history_free(&t->hist, release_ref, NULL);
	hist_account(s, t, before, RC_EVICT_age, 0);
	free(t->dedup);
	for (uint32_t i = 0; i < t->held_count; i++)
		rc_frame_unref(t->held[i]);
	rc_mem_release(s->app, RC_BUDGET_engine, t->held_cap * sizeof(*t->held));
	free(t->held);
	for (uint32_t i = 0; i < t->events_count; i++)
		rc_frame_unref(t->events[i]);
	rc_mem_release(s->app, RC_BUDGET_engine, t->events_cap * sizeof(*t->events));
	free(t->events);
	while (t->waiting) {
		struct rc_xmsg *m = t->waiting;
		t->waiting = m->next;
		xmsg_free(s->app, m);
	}
	rc_mem_release(s->app, RC_BUDGET_topics, sizeof(*t));
	free(t);
}

struct rc_otopic *rc_pubsub_owned(struct rc_shard *s, const char *name, size_t len)
{
	return otopic_get(s, name, len, false);
}

void rc_pubsub_hist_clear(struct rc_shard *s, struct rc_otopic *t)
{
	uint64_t before = t->hist.bytes;
	rc_mem_release(s->app, RC_BUDGET_history, rc_history_slots_bytes(&t->hist));
	rc_history_free(&t->hist, release_ref, NULL); /* keeps its count limit */
	hist_account(s, t, before, RC_EVICT_age, 0);
}


/* Grows t's id window (doubling from 8 up to dedup_ids_max), charged to the budget. */
static bool dedup_grow(struct rc_shard *s, struct rc_otopic *t)
{
	uint32_t max = (uint32_t)s->app->cfg.dedup_ids_max;
	uint32_t ncap = (uint32_t)RC_MIN(t->dedup_cap ? t->dedup_cap * 2ull : 8ull, (uint64_t)max);
	size_t add = (ncap - t->dedup_cap) * sizeof(*t->dedup);
	if (ncap <= t->dedup_cap || !rc_mem_try_charge(s->app, RC_BUDGET_history, add))
		return false;
	struct rc_dedup_id *d = realloc(t->dedup, ncap * sizeof(*d));
	if (!d) {
		rc_mem_release(s->app, RC_BUDGET_history, add);
		s->stats.alloc_failures++;
		return false;
	}
	t->dedup = d;
	t->dedup_cap = ncap;
	return true;
}

/* True if publisher published id on t within the dedup window; otherwise remembers it. */
static bool duplicate(struct rc_shard *s, struct rc_otopic *t, uint64_t publisher,
		      const char *id, size_t len)
{
	const struct rc_config *cfg = &s->app->cfg;
	if (!len || !cfg->dedup_window_ms)
		return false;
	uint64_t h = dedup_key(publisher, id, len);
	uint64_t now = s->clock.now_ms;
	for (uint32_t i = 0; i < t->dedup_count; i++)
		if (t->dedup[i].hash == h && now - t->dedup[i].at_ms <= cfg->dedup_window_ms)
			return true;
	uint32_t slot;
	if (t->dedup_count < t->dedup_cap || dedup_grow(s, t)) {
		slot = t->dedup_count++;
	} else if (t->dedup_cap) {
		/* Full at its size: the oldest id is forgotten. */
		slot = t->dedup_next;
		t->dedup_next = (t->dedup_next + 1) % t->dedup_cap;
	} else {
		return false; /* no window could be held: the id is not remembered */
	}
	t->dedup[slot].hash = h;
	t->dedup[slot].at_ms = now;
	return false;
}

void rc_pubsub_published(struct rc_shard *s, struct rc_xmsg *m, uint64_t seq, uint64_t epoch,
			 bool dup, bool refused)
{
	if (m->reply == RC_REPLY_NONE || m->from >= s->app->shards_count) {
		xmsg_free(s->app, m);
		return;
	}
	m->kind = RC_X_PUB_DONE;
	m->seq = seq;
	m->epoch = epoch;
	m->duplicate = dup;
	m->refused = refused;
	send_xmsg(s, &s->app->shards[m->from], m);
}

/* The owned topic a publish goes to; NULL (counted) when creating it is refused. */
static struct rc_otopic *publish_topic(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_otopic *t = otopic_get(s, m->topic, m->topic_len, false);
	if (t)
		return t;
	if (!m->may_create) {
		s->stats.topics_rate_limited++;
		return NULL;
	}
	if (!topic_room(s)) {
		s->stats.topics_refused++;
		return NULL;
	}
	/* Past the memory budget's soft mark a publish creates no topic: nobody follows it. */
	if (s->mem_level >= RC_BUDGET_SOFT) {
		s->stats.topics_over_budget++;
		return NULL;
	}
	t = otopic_get(s, m->topic, m->topic_len, true);
	m->created = t != NULL;
	if (!t)
		s->stats.alloc_failures++;
	return t;
}

/* Posts broadcast f to every shard subscribed to t (delivered here when s is one of them).
 * Consumes the caller's reference. */
static void fan_out(struct rc_shard *s, const struct rc_otopic *t, struct rc_frame *f)
{
	for (int i = 0; i < s->app->shards_count; i++) {
		if (!(t->shard_mask[i / 64] & (1ull << (i % 64))))
			continue;
		rc_frame_ref_n(f, 1);
		if (i == s->index)
			deliver_local(s, f);
		else
			post(s, &s->app->shards[i], rc_item(f, RC_ITEM_FRAME));
	}
	rc_frame_unref(f);
}

struct rc_frame *rc_pubsub_frame(struct rc_shard *s, struct rc_otopic *t, uint64_t seq,
				 const char *data, size_t dlen)
{
	struct rc_frame *f = build_msg(s, t->node.name, t->node.name_len, t->node.hash, seq, data,
				       dlen);
	if (!f) {
		s->stats.alloc_failures++;
		return NULL;
	}
	if (t->deflate_shards)
		f->deflated = build_deflated(s, f);
	return f;
}

void rc_pubsub_fan_out(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f)
{
	hist_keep(s, t, f);
	fan_out(s, t, f);
}

static void owner_publish(struct rc_shard *s, struct rc_xmsg *m)
{
	const struct rc_engine_ops *engine = engine_of(s, m->topic, m->topic_len);
	if (engine) {
		engine->publish(s, m);
		return;
	}
	struct rc_otopic *t = publish_topic(s, m);
	if (!t) {
		rc_pubsub_published(s, m, 0, 0, false, true);
		return;
	}
	if (duplicate(s, t, m->publisher, m->id, m->id_len)) {
		s->stats.publish_duplicates++;
		rc_pubsub_published(s, m, t->seq, t->epoch, true, false);
		return;
	}
	uint64_t seq = t->seq + 1;
	struct rc_frame *f = rc_pubsub_frame(s, t, seq, m->data, m->data_len);
	if (!f) {
		rc_pubsub_published(s, m, 0, t->epoch, true, false);
		return;
	}
	t->seq = seq;
	s->stats.publishes++;
	rc_pubsub_fan_out(s, t, f);
	rc_pubsub_published(s, m, seq, t->epoch, false, false);
}

/*
 * Sets or clears shard m->from in one of t's shard sets (subscribers, or subscribers taking
 * the deflated variant), keeping its population count. Consumes m.
 */
static void owner_shard_set(struct rc_shard *s, struct rc_xmsg *m, bool deflate, bool on)
{
	struct rc_otopic *t = otopic_get(s, m->topic, m->topic_len, on);
	if (t) {
		uint64_t *mask = deflate ? t->deflate_mask : t->shard_mask;
		uint32_t *count = deflate ? &t->deflate_shards : &t->shards_subscribed;
		uint64_t bit = 1ull << (m->from % 64);
		bool had = mask[m->from / 64] & bit;
		if (on && !had) {
			mask[m->from / 64] |= bit;
			(*count)++;
		} else if (!on && had) {
			mask[m->from / 64] &= ~bit;
			(*count)--;
		}
		/* The engine follows the topic while any shard has subscribers. */
		const struct rc_engine_ops *engine = engine_of(s, m->topic, m->topic_len);
		if (engine && !deflate && on != had && *count == (on ? 1u : 0u))
			engine->watch(s, t, on);
	}
	xmsg_free(s->app, m);
}

/*
 * Answers a subscriber: the topic's current seq and epoch, and for a resume what came after
 * since (frames, or a gap), or a reset when since belongs to another epoch or lies beyond
 * the current seq (the numbering restarted: nothing after since can be told).
 */
static void owner_replay(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_otopic *t = otopic_get(s, m->topic, m->topic_len, true);
	const struct rc_engine_ops *engine = engine_of(s, m->topic, m->topic_len);
	if (t && engine)
		engine->replay(s, t, m);
	else
		rc_pubsub_replay_local(s, t, m);
}

void rc_pubsub_replay_local(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m)
{
	uint64_t since = m->seq;
	bool foreign = m->has_epoch && (!t || m->epoch != t->epoch);
	m->kind = RC_X_REPLAYED;
	m->seq = t ? t->seq : 0;
	m->epoch = t ? t->epoch : 0;
	if (!t)
		s->stats.alloc_failures++;
	if (m->has_since && (foreign || since > m->seq)) {
		m->reset = 1;
		s->stats.resets++;
	} else if (t && m->has_since && since < t->seq) {
		uint32_t first;
		bool gap;
		uint32_t n = rc_history_since(&t->hist, since, &first, &gap);
		m->gap = gap || n == 0;
		m->gap_from = since + 1;
		m->gap_to = n ? rc_history_at(&t->hist, first)->seq - 1 : t->seq;
		m->frames = n ? malloc(n * sizeof(*m->frames)) : NULL;
		for (uint32_t i = 0; m->frames && i < n; i++) {
			m->frames[i] = rc_history_at(&t->hist, first + i)->ref;
			rc_frame_ref_n(m->frames[i], 1);
		}
		m->nframes = m->frames ? n : 0;
		rc_mem_charge(s->app, RC_BUDGET_outbox, (size_t)m->nframes * sizeof(*m->frames));
	}
	rc_pubsub_answer(s, m);
}

void rc_pubsub_answer(struct rc_shard *s, struct rc_xmsg *m)
{
	RC_ASSERT(m->kind == RC_X_REPLAYED);
	send_xmsg(s, &s->app->shards[m->from], m);
}

/* ---- subscriber side --------------------------------------------------------------------- */
static struct rc_conn *reply_conn(struct rc_shard *s, const struct rc_xmsg *m)
{
	if (m->slot >= s->conns_cap)
		return NULL;
	struct rc_conn *c = &s->conns[m->slot];
	if (c->state != RC_CONN_OPEN && c->state != RC_CONN_HTTP)
		return NULL;
	return c->gen == m->gen ? c : NULL;
}

static struct rc_sub *find_sub(struct rc_conn *c, const char *topic, size_t len)
{
	for (struct rc_sub *sub = c->subs; sub; sub = sub->conn_next)
		if (sub->topic->node.name_len == len && memcmp(sub->topic->node.name, topic, len) == 0)
			return sub;
	return NULL;
}

static void replayed(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_conn *c = reply_conn(s, m);
	struct rc_sub *sub = c ? find_sub(c, m->topic, m->topic_len) : NULL;
	if (sub && sub->pending) {
		sub->pending = false;
		sub->epoch = m->epoch; /* the gaps of policy latest name it */
		if (m->gap)
			s->app->pubsub_hooks->gap(c, m->topic, m->topic_len, m->gap_from,
						  m->gap_to, m->epoch);
		for (uint32_t i = 0; i < m->nframes; i++) {
			if (offer(sub, m->frames[i]))
				m->frames[i] = NULL;
		}
		/* Everything up to the owner's current seq was replayed or reported as a gap or
		 * a reset; a since of another run must not hide new messages. */
		sub->last_seq = m->seq;
		s->app->pubsub_hooks->subscribed(c, m->topic, m->topic_len, m->seq, m->epoch,
						 m->reset);
	}
	for (uint32_t i = 0; i < m->nframes; i++)
		if (m->frames[i])
			rc_frame_unref(m->frames[i]);
	xmsg_free(s->app, m);
}

/* The owner's RESET or GAP of a topic: told to every live subscriber here, in order with
 * the frames around it. */
static void told(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_topic_node *n = rc_topic_find(&s->ltopics, m->topic, m->topic_len);
	const struct rc_pubsub_hooks *h = s->app->pubsub_hooks;
	struct rc_ltopic *t = n ? rc_container_of(n, struct rc_ltopic, node) : NULL;
	for (uint32_t i = 0; t && i < t->count; i++) {
		struct rc_sub *sub = t->subv[i];
		struct rc_conn *c = sub->conn;
		if (sub->pending || c->state != RC_CONN_OPEN)
			continue;
		if (m->kind == RC_X_RESET) {
			sub->epoch = m->epoch;
			sub->last_seq = m->seq;
			h->subscribed(c, m->topic, m->topic_len, m->seq, m->epoch, true);
		} else if (sub->last_seq < m->gap_to) {
			h->gap(c, m->topic, m->topic_len, RC_MAX(m->gap_from, sub->last_seq + 1),
			       m->gap_to, m->epoch);
			sub->last_seq = m->gap_to;
		}
	}
	xmsg_free(s->app, m);
}

void rc_pubsub_tell_shards(struct rc_shard *s, struct rc_otopic *t, enum rc_xkind kind,
			   uint64_t seq, uint64_t from, uint64_t to)
{
	RC_ASSERT(kind == RC_X_RESET || kind == RC_X_GAP);
	RC_ASSERT(t->epoch != 0);
	for (int i = 0; i < s->app->shards_count; i++) {
		if (!(t->shard_mask[i / 64] & (1ull << (i % 64))))
			continue;
		struct rc_xmsg *m = xmsg_new(s->app, s, kind, t->node.name, t->node.name_len, 0);
		if (!m) {
			s->stats.alloc_failures++;
			continue;
		}
		m->seq = seq;
		m->epoch = t->epoch;
		m->gap_from = from;
		m->gap_to = to;
		send_xmsg(s, &s->app->shards[i], m);
	}
}

static void pub_done(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_conn *c = reply_conn(s, m);
	/* A WebSocket publisher's token comes back unless its publish created the topic. */
	uint64_t cap = RC_MIN(s->app->cfg.topics_per_second_max, (uint64_t)UINT16_MAX);
	if (c && m->reply == RC_REPLY_WS && m->may_create && !m->created && c->topic_tokens < cap)
		c->topic_tokens++;
	if (c)
		s->app->pubsub_hooks->published(c, (enum rc_reply)m->reply, m->tag, m->topic,
						m->topic_len, m->seq, m->epoch, m->duplicate,
						m->refused, m->id, m->id_len);
	xmsg_free(s->app, m);
}

static void handle_xmsg(struct rc_shard *s, struct rc_xmsg *m)
{
	switch ((enum rc_xkind)m->kind) {
	case RC_X_PUBLISH: owner_publish(s, m); break;
	case RC_X_SHARD_SUB: owner_shard_set(s, m, false, true); break;
	case RC_X_SHARD_UNSUB: owner_shard_set(s, m, false, false); break;
	case RC_X_DEFLATE_ON: owner_shard_set(s, m, true, true); break;
	case RC_X_DEFLATE_OFF: owner_shard_set(s, m, true, false); break;
	case RC_X_REPLAY: owner_replay(s, m); break;
	case RC_X_REPLAYED: replayed(s, m); break;
	case RC_X_PUB_DONE: pub_done(s, m); break;
	case RC_X_RESET:
	case RC_X_GAP: told(s, m); break;
	case RC_X_PRESENCE_ADD:
	case RC_X_PRESENCE_DEL:
	case RC_X_PRESENCE_GET:
	case RC_X_HISTORY_GET:
	case RC_X_TOPICS_GET:
	case RC_X_ANSWER:
	case RC_X_USER: rc_pubsub_users_handle(s, m); break;
	default: RC_ASSERT(!"unknown cross-shard message");
	}
}

/* ---- the API used by the protocol layer and embedders ------------------------------------ */
/*
 * Tells t's owner that this shard's subscribers of t went away (FIFO with everything else we
 * post). Without memory the owner keeps a stale bit, which only costs it frames this shard
 * drops (no local topic) or an unneeded deflated variant: counted, never fatal.
 */
static void notify_owner(struct rc_shard *s, struct rc_ltopic *t, enum rc_xkind kind)
{
	struct rc_xmsg *m = xmsg_new(s->app, s, kind, t->node.name, t->node.name_len, 0);
	if (!m) {
		s->stats.alloc_failures++;
		return;
	}
	send_xmsg(s, owner_of(s->app, t->node.hash), m);
}

/* Refills c's bucket of topic creations (topics_per_second_max, at most one second's worth,
 * once per whole second) and says whether it holds one. The second is kept in 8 bits: a
 * bucket idle for a multiple of 256 s may refill less, never more. */
static bool may_create(struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	if (!cfg->topics_per_second_max)
		return true;
	uint8_t now = (uint8_t)(c->shard->clock.now_ms / 1000);
	uint64_t add = (uint64_t)(uint8_t)(now - c->topic_second) * cfg->topics_per_second_max;
	if (add) {
		uint64_t cap = RC_MIN(cfg->topics_per_second_max, (uint64_t)UINT16_MAX);
		c->topic_tokens = (uint16_t)RC_MIN((uint64_t)c->topic_tokens + add, cap);
		c->topic_second = now;
	}
	return c->topic_tokens > 0;
}

/* Takes one token of c's bucket; false if empty. */
static bool take_token(struct rc_conn *c)
{
	if (!may_create(c))
		return false;
	if (c->shard->app->cfg.topics_per_second_max)
		c->topic_tokens--;
	return true;
}

/* Makes room in t's array for one more subscriber, doubling it (charged as topics). False
 * when memory or the budget refuses. */
static bool subv_reserve(struct rc_shard *s, struct rc_ltopic *t)
{
	if (t->count < t->cap)
		return true;
	uint32_t cap = t->cap ? t->cap * 2 : 4;
	size_t add = (size_t)(cap - t->cap) * sizeof(*t->subv);
	if (!rc_mem_try_charge(s->app, RC_BUDGET_topics, add))
		return false;
	struct rc_sub **v = realloc(t->subv, cap * sizeof(*v));
	if (!v) {
		rc_mem_release(s->app, RC_BUDGET_topics, add);
		return false;
	}
	memset(v + t->cap, 0, add); /* slots past count stay NULL (rc_pubsub_validate) */
	t->subv = v;
	t->cap = cap;
	return true;
}

/* Halves t's array once a quarter of it is used, so a topic that lost most of its
 * subscribers gives the memory back (kept as is if realloc fails). */
static void subv_shrink(struct rc_shard *s, struct rc_ltopic *t)
{
	if (t->cap <= 4 || t->count > t->cap / 4)
		return;
	struct rc_sub **v = realloc(t->subv, (t->cap / 2) * sizeof(*v));
	if (!v)
		return;
	rc_mem_release(s->app, RC_BUDGET_topics, (t->cap - t->cap / 2) * sizeof(*v));
	t->subv = v;
	t->cap /= 2;
}

/* May c create local topic[0..len) (a new topic for this shard)? 0, -EAGAIN (c's rate),
 * -EBUSY (the owner's share of topics_max) or -ENOBUFS (past the memory budget's soft
 * mark), counted. */
static int new_topic_check(struct rc_conn *c, const char *topic, size_t len)
{
	struct rc_shard *s = c->shard;
	struct rc_shard *owner = owner_of(s->app, rc_topic_hash(topic, len));
	if (s->mem_level >= RC_BUDGET_SOFT) {
		s->stats.topics_over_budget++;
		return -ENOBUFS;
	}
	if (!may_create(c)) {
		s->stats.topics_rate_limited++;
		return -EAGAIN;
	}
	/* A topic its owner already sequences costs it nothing more; only the owner's own
	 * table can say so, other owners are judged by their count alone. */
	if (owner == s && rc_topic_find(&s->otopics, topic, len))
		return 0;
	if (!topic_room(owner)) {
		s->stats.topics_refused++;
		return -EBUSY;
	}
	return take_token(c) ? 0 : -EAGAIN;
}

int rc_pubsub_subscribe(struct rc_conn *c, const char *topic, size_t len,
			const struct rc_resume *r)
{
	struct rc_shard *s = c->shard;
	if (!rc_topic_name_valid(topic, len))
		return -EINVAL;
	if (find_sub(c, topic, len))
		return -EEXIST;
	if (c->subs_count >= s->app->cfg.subscriptions_per_connection_max)
		return -E2BIG;
	struct rc_topic_node *n = rc_topic_find(&s->ltopics, topic, len);
	struct rc_ltopic *t = n ? rc_container_of(n, struct rc_ltopic, node) : NULL;
	bool deflate_on = (c->flags & RC_CF_DEFLATE) && (!t || t->deflate_count == 0);
	size_t charge = sizeof(struct rc_sub) + (t ? 0 : sizeof(struct rc_ltopic));
	int rc = t ? 0 : new_topic_check(c, topic, len);
	if (rc != 0)
		return rc;
	if (!rc_mem_try_charge(s->app, RC_BUDGET_topics, charge))
		return -EBUSY;
	/* Everything this subscription needs is allocated before anything changes, so running
	 * out of memory refuses the subscription instead of leaving it deaf. */
	struct rc_sub *sub = calloc(1, sizeof(*sub));
	struct rc_ltopic *nt = t ? NULL : calloc(1, sizeof(*nt));
	struct rc_xmsg *m_sub = t ? NULL : xmsg_new(s->app, s, RC_X_SHARD_SUB, topic, len, 0);
	struct rc_xmsg *m_z = deflate_on ? xmsg_new(s->app, s, RC_X_DEFLATE_ON, topic, len, 0) : NULL;
	struct rc_xmsg *m_rp = r ? xmsg_new(s->app, s, RC_X_REPLAY, topic, len, 0) : NULL;
	if (!sub || (!t && (!nt || !m_sub)) || (deflate_on && !m_z) || (r && !m_rp) ||
	    !subv_reserve(s, t ? t : nt)) {
		free(sub);
		free(nt);
		xmsg_free(s->app, m_sub);
		xmsg_free(s->app, m_z);
		xmsg_free(s->app, m_rp);
		rc_mem_release(s->app, RC_BUDGET_topics, charge);
		s->stats.alloc_failures++;
		return -ENOMEM;
	}
	struct rc_shard *owner = owner_of(s->app, rc_topic_hash(topic, len));
	if (!t) {
		const struct rc_namespace *ns = rc_namespace_of(s->app->namespaces, topic, len);
		t = nt;
		t->slow = ns ? (uint8_t)ns->slow : RC_NS_SLOW_INHERIT;
		t->presence = presence_flags(ns);
		rc_topic_insert(&s->ltopics, &t->node, topic, len);
		send_xmsg(s, owner, m_sub);
	}
	sub->topic = t;
	sub->conn = c;
	sub->index = t->count;
	t->subv[t->count++] = sub;
	sub->conn_next = c->subs;
	c->subs = sub;
	c->subs_count++;
	s->stats.subscriptions++;
	if (c->flags & RC_CF_DEFLATE)
		t->deflate_count++;
	if (m_z)
		send_xmsg(s, owner, m_z);
	if (r) {
		/* Hold live frames until the owner's answer arrives (FIFO after SHARD_SUB): it
		 * says from which seq of which epoch this subscription runs. */
		sub->pending = true;
		sub->last_seq = r->has_since ? r->since : 0;
		m_rp->has_since = r->has_since;
		m_rp->seq = r->since;
		m_rp->has_epoch = r->has_since && r->has_epoch;
		m_rp->epoch = r->epoch;
		m_rp->slot = (uint32_t)(c - s->conns);
		m_rp->gen = c->gen;
		send_xmsg(s, owner, m_rp);
	}
	/* After the replay request: the subscriber's ack comes before its own join. */
	if (t->presence)
		rc_pubsub_presence_notify(s, c, t, true);
	return r ? 1 : 0; /* 1: the answer comes through the subscribed hook */
}

static void unlink_sub(struct rc_shard *s, struct rc_sub *sub)
{
	struct rc_ltopic *t = sub->topic;
	if (t->presence)
		rc_pubsub_presence_notify(s, sub->conn, t, false);
	RC_ASSERT(t->count > 0 && t->subv[sub->index] == sub);
	/* The last subscriber takes its place: the array stays dense. */
	struct rc_sub *last = t->subv[--t->count];
	t->subv[sub->index] = last;
	last->index = sub->index;
	t->subv[t->count] = NULL;
	subv_shrink(s, t);
	s->stats.subscriptions--;
	if ((sub->conn->flags & RC_CF_DEFLATE) && --t->deflate_count == 0)
		notify_owner(s, t, RC_X_DEFLATE_OFF);
	free(sub);
	rc_mem_release(s->app, RC_BUDGET_topics, sizeof(*sub));
	if (t->count)
		return;
	RC_ASSERT(t->deflate_count == 0);
	notify_owner(s, t, RC_X_SHARD_UNSUB);
	rc_topic_remove(&s->ltopics, &t->node);
	rc_mem_release(s->app, RC_BUDGET_topics, t->cap * sizeof(*t->subv));
	free(t->subv);
	free(t);
	rc_mem_release(s->app, RC_BUDGET_topics, sizeof(*t));
}

int rc_pubsub_unsubscribe(struct rc_conn *c, const char *topic, size_t len)
{
	struct rc_sub **pp = &c->subs;
	while (*pp && !(len == (*pp)->topic->node.name_len &&
			memcmp((*pp)->topic->node.name, topic, len) == 0))
		pp = &(*pp)->conn_next;
	if (!*pp)
		return -ENOENT;
	struct rc_sub *sub = *pp;
	*pp = sub->conn_next;
	c->subs_count--;
	unlink_sub(c->shard, sub);
	return 0;
}

void rc_pubsub_conn_closed(struct rc_conn *c)
{
	while (c->subs) {
		struct rc_sub *sub = c->subs;
		c->subs = sub->conn_next;
		unlink_sub(c->shard, sub);
	}
	c->subs_count = 0;
}

uint64_t rc_pubsub_publisher(const struct rc_conn *c)
{
	const struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
	if (s->tokens && s->tokens[slot].publisher)
		return s->tokens[slot].publisher;
	/* The connection's id: its top bit set, unlike a token's. A slot reused 2^23 times
	 * within one dedup window is beyond any churn a shard sustains. */
	return rc_pubsub_conn_id(c);
}

int rc_pubsub_publish(struct rc_app *app, const char *topic, size_t tlen, const char *data,
		      size_t dlen, const char *id, size_t idlen, enum rc_reply reply,
		      struct rc_conn *c, uint32_t tag)
{
	/* From a shard thread of this application, or from a foreign thread. */
	struct rc_shard *self = rc_current_shard && rc_current_shard->app == app ? rc_current_shard
										 : NULL;
	if (!rc_topic_name_valid(topic, tlen) || idlen > RC_ENVELOPE_ID_BYTES_LIMIT)
		return -EINVAL;
	uint64_t hash = rc_topic_hash(topic, tlen);
	if (rc_pubsub_busy(self, app, hash))
		return -EBUSY;
	struct rc_xmsg *m = xmsg_new(app, self, RC_X_PUBLISH, topic, tlen, dlen);
	if (!m)
		return -ENOMEM;
	if (dlen)
		memcpy(m->data, data, dlen);
	if (idlen)
		memcpy(m->id, id, idlen);
	m->id_len = (uint16_t)idlen;
	m->reply = (uint8_t)reply;
	m->tag = tag;
	m->publisher = reply == RC_REPLY_WS ? rc_pubsub_publisher(c) : 0;
	/* Only a WebSocket client's bucket limits the topics its publishes create. Its token
	 * is taken now, so publishes in flight cannot create more than the bucket holds, and
	 * given back when the answer says no topic was created (pub_done). */
	m->may_create = reply != RC_REPLY_WS || take_token(c);
	if (c) {
		m->slot = (uint32_t)(c - c->shard->conns);
		m->gen = c->gen;
	}
	struct rc_shard *to = owner_of(app, hash);
	if (self) {
		send_xmsg(self, to, m);
		return 0;
	}
	/* A foreign thread: no outbox of its own, so a full ring is reported to the caller. */
	if (!rc_mpsc_push(&to->inbox, rc_item(m, RC_ITEM_XMSG))) {
		xmsg_free(app, m);
		return -EAGAIN;
	}
	if (rc_mpsc_wake_needed(&to->inbox))
		rc_uring_wake(to);
	return 0;
}

bool rc_pubsub_busy(struct rc_shard *s, struct rc_app *app, uint64_t hash)
{
	struct rc_shard *to = owner_of(app, hash);
	uint64_t max = app->cfg.outbox_items_max;
	/* The owner's outboxes hold what it fans out to stalled shards: read racily. */
	bool busy = __atomic_load_n(&to->stats.outbox_items, __ATOMIC_RELAXED) >= max;
	if (s && to != s && rc_outbox_count(s, to) >= max)
		busy = true;
	if (busy && s)
		s->stats.outbox_refusals++;
	return busy;
}

/* ---- for pubsub_users.c (pubsub_int.h) ----------------------------------------------------- */
const struct rc_engine_ops *rc_pubsub_engine_of(const struct rc_shard *s, const char *name,
						size_t len)
{
	return engine_of(s, name, len);
}

struct rc_shard *rc_pubsub_owner_of(const struct rc_app *app, uint64_t hash)
{
	return owner_of(app, hash);
}

struct rc_xmsg *rc_pubsub_xmsg_new(struct rc_app *app, const struct rc_shard *s,
				   enum rc_xkind kind, const char *topic, size_t tlen, size_t dlen)
{
	return xmsg_new(app, s, kind, topic, tlen, dlen);
}

void rc_pubsub_xmsg_free(struct rc_app *app, struct rc_xmsg *m)
{
	xmsg_free(app, m);
}

void rc_pubsub_send(struct rc_shard *s, struct rc_shard *to, struct rc_xmsg *m)
{
	send_xmsg(s, to, m);
}

struct rc_conn *rc_pubsub_reply_conn(struct rc_shard *s, const struct rc_xmsg *m)
{
	return reply_conn(s, m);
}

struct rc_frame *rc_pubsub_frame_shared(struct rc_shard *s, const char *topic, size_t tlen,
					uint64_t hash, size_t elen, char **env)
{
	return shared_frame(s, topic, tlen, hash, 0, elen, env);
}

size_t rc_pubsub_frame_envelope(const struct rc_frame *f, const uint8_t **env)
{
	size_t h = header_len(f);
	*env = f->data + h;
	return f->len - h;
}

void rc_pubsub_fan_out_event(struct rc_shard *s, const struct rc_otopic *t, struct rc_frame *f)
{
	fan_out(s, t, f);
}

/* ---- per-turn work and lifetime ---------------------------------------------------------- */
void rc_pubsub_poll(struct rc_shard *s)
{
	void *items[256];
	uint32_t budget = (uint32_t)s->app->cfg.mpsc_drain_max;
	rc_outbox_retry(s);
	while (budget > 0) {
		uint32_t n = rc_mpsc_pop(&s->inbox, items, RC_MIN(budget, 256u));
		if (n == 0)
			break;
		budget -= n;
		for (uint32_t i = 0; i < n; i++) {
			void *p = rc_item_ptr(items[i]);
			switch (rc_item_kind(items[i])) {
			case RC_ITEM_XMSG: handle_xmsg(s, p); break;
			case RC_ITEM_RETURN: rc_frame_returned(s, p); break;
			default: deliver_local(s, p); break;
			}
		}
	}
	if (budget == 0)
		s->stats.limit_mpsc_drain++;
}

/* Ages t's history out; an emptied ring is freed (the next publish allocates again), so an
 * idle topic holds no slots. */
static void hist_age(struct rc_shard *s, struct rc_otopic *t, uint64_t now)
{
	uint64_t before = t->hist.bytes;
	uint32_t aged = rc_history_expire(&t->hist, now, t->hist_age_ms, release_ref, NULL);
	hist_account(s, t, before, RC_EVICT_age, aged);
	if (t->hist.count == 0 && t->hist.cap) {
		rc_mem_release(s->app, RC_BUDGET_history, rc_history_slots_bytes(&t->hist));
		rc_history_free(&t->hist, release_ref, NULL);
	}
	RC_DASSERT(t->hist.count || !t->hist.items);
}

/* Ages owned topics' history out and forgets topics nobody follows and nothing remembers. */
void rc_pubsub_sweep(struct rc_shard *s)
{
	const struct rc_config *cfg = &s->app->cfg;
	uint64_t now = s->clock.now_ms;
	for (uint32_t b = 0; b <= s->otopics.mask; b++) {
		struct rc_topic_node *n = s->otopics.buckets[b];
		while (n) {
			struct rc_topic_node *next = n->next;
			struct rc_otopic *t = rc_container_of(n, struct rc_otopic, node);
			hist_age(s, t, now);
			/* A topic keeps its numbering while anyone may resume it: it is forgotten
			 * (and would restart at seq 1) only after topic_forget_ms unused. */
			bool unused = t->shards_subscribed == 0 && t->hist.count == 0 &&
				      t->rsub == RC_RSUB_NONE && !t->waiting && !t->syncing;
			if (!unused || !t->unused_since_ms)
				t->unused_since_ms = unused ? now : 0;
			if (unused && cfg->topic_forget_ms &&
			    now - t->unused_since_ms >= cfg->topic_forget_ms) {
				rc_topic_remove(&s->otopics, n);
				otopic_free(s, t);
				s->stats.topics_owned--;
			}
			n = next;
		}
	}
}

int rc_pubsub_init(struct rc_shard *s)
{
	int rc = rc_outbox_init(s);
	if (rc == 0)
		rc = rc_topic_table_init(&s->ltopics, 1024);
	if (rc == 0)
		rc = rc_topic_table_init(&s->otopics, 1024);
	return rc;
}

void rc_pubsub_free(struct rc_shard *s)
{
	/* Drain what other shards posted before they stopped (their frames, our messages). */
	void *items[64];
	uint32_t n;
	while ((n = rc_mpsc_pop(&s->inbox, items, 64)) > 0)
		for (uint32_t i = 0; i < n; i++)
			discard_item(items[i]);
	rc_outbox_free(s, discard_item);
	for (uint32_t b = 0; s->otopics.buckets && b <= s->otopics.mask; b++) {
		struct rc_topic_node *n2 = s->otopics.buckets[b];
		while (n2) {
			struct rc_topic_node *next = n2->next;
			otopic_free(s, rc_container_of(n2, struct rc_otopic, node));
			n2 = next;
		}
	}
	rc_topic_table_free(&s->otopics);
	rc_topic_table_free(&s->ltopics);
	rc_grow_free(s, (void **)&s->scratch, &s->scratch_cap);
}

/* ---- invariants ------------------------------------------------------------------------- */
static bool conn_holds(const struct rc_conn *c, const struct rc_sub *sub)
{
	for (const struct rc_sub *x = c->subs; x; x = x->conn_next)
		if (x == sub)
			return true;
	return false;
}

/* Local topic t: its subscribers dense in its array, each at its index and in its live
 * connection's list, and its two counts. Adds its subscriptions to *subs. */
static bool ltopic_ok(const struct rc_shard *s, const struct rc_ltopic *t, uint64_t *subs)
{
	uint32_t n = 0, deflate = 0;
	if (t->count > t->cap || (t->count < t->cap && t->subv[t->count]))
		return false;
	for (uint32_t i = 0; i < t->count; i++) {
		const struct rc_sub *sub = t->subv[i];
		if (!sub)
			return false;
		const struct rc_conn *c = sub->conn;
		if (sub->topic != t || sub->index != i || c->shard != s)
			return false;
		if (c->state == RC_CONN_FREE || c->state == RC_CONN_DOOMED || !conn_holds(c, sub))
			return false;
		n++;
		deflate += !!(c->flags & RC_CF_DEFLATE);
	}
	*subs += n;
	return n > 0 && n == t->count && deflate == t->deflate_count;
}

/* The bits of shard-mask word w that stand for no shard (indexes >= shards). */
static uint64_t beyond(int w, int shards)
{
	int in_word = shards - w * 64;
	if (in_word <= 0)
		return ~0ull;
	return in_word >= 64 ? 0 : ~0ull << in_word;
}

/* Owned topic t: owned by s, and its shard sets within the shards, counted right. */
static bool otopic_ok(const struct rc_shard *s, const struct rc_otopic *t)
{
	int shards = s->app->shards_count;
	uint32_t subscribed = 0, deflate = 0;
	if (t->node.hash % (uint64_t)shards != (uint64_t)s->index)
		return false;
	for (int w = 0; w < RC_SHARD_MASK_WORDS; w++) {
		if ((t->shard_mask[w] | t->deflate_mask[w]) & beyond(w, shards))
			return false;
		subscribed += (uint32_t)__builtin_popcountll(t->shard_mask[w]);
		deflate += (uint32_t)__builtin_popcountll(t->deflate_mask[w]);
	}
	if (hist_linked(s, t) != (t->hist.count > 0) || t->dedup_count > t->dedup_cap)
		return false;
	/* The engine's state: messages are held only while a sync runs, subscribers wait only
	 * for the first one; none of it without an engine. */
	if (t->held_count > t->held_cap || (t->held_count && !t->syncing) ||
	    (t->waiting && t->synced))
		return false;
	if (!s->app->engine && (t->rsub != RC_RSUB_NONE || t->synced || t->waiting))
		return false;
	if (t->presence && (!t->presence->count || !rc_presence_validate(t->presence)))
		return false;
	return subscribed == t->shards_subscribed && deflate == t->deflate_shards &&
	       t->hist.count <= t->hist.cap && t->hist.cap <= t->hist.max;
}

/* The history order: linked both ways, and the bytes its topics hold are the shard's. */
static bool hist_order_ok(const struct rc_shard *s)
{
	uint64_t bytes = 0;
	const struct rc_otopic *prev = NULL;
	for (const struct rc_otopic *t = s->hist_oldest; t; prev = t, t = t->hist_next) {
		if (t->hist_prev != prev || t->hist.count == 0)
			return false;
		bytes += t->hist.bytes;
	}
	return prev == s->hist_newest && bytes == s->stats.history_bytes;
}

bool rc_pubsub_validate(const struct rc_shard *s)
{
	uint64_t subs = 0, conn_subs = 0;
	if (!rc_topic_table_validate(&s->ltopics) || !rc_topic_table_validate(&s->otopics))
		return false;
	for (uint32_t b = 0; b <= s->ltopics.mask; b++)
		for (const struct rc_topic_node *n = s->ltopics.buckets[b]; n; n = n->next)
			if (!ltopic_ok(s, rc_container_of(n, struct rc_ltopic, node), &subs))
				return false;
	for (uint32_t b = 0; b <= s->otopics.mask; b++)
		for (const struct rc_topic_node *n = s->otopics.buckets[b]; n; n = n->next)
			if (!otopic_ok(s, rc_container_of(n, struct rc_otopic, node)))
				return false;
	for (uint32_t i = 0; i < s->conns_cap; i++) {
		const struct rc_conn *c = &s->conns[i];
		uint32_t n = 0;
		for (const struct rc_sub *sub = c->subs; sub; sub = sub->conn_next, n++)
			if (sub->conn != c)
				return false;
		if (n != c->subs_count)
			return false;
		conn_subs += n;
	}
	return subs == conn_subs && subs == s->stats.subscriptions &&
	       s->otopics.count == s->stats.topics_owned && hist_order_ok(s);
}
