/*
 * Presence, join/leave and user actions across the nodes sharing Redis (see
 * presence_redis.h). A topic's owner shard writes this node's entries of the topic into the
 * hash prefix{topic}.p.<node_id> on the topic's instance, in the order the owner changed its
 * own set (the same command link: a query sent after a change sees it); the owner's set
 * stays the truth, Redis a mirror that expires unless refreshed, rewritten whole whenever its
 * link comes back. The control channel and the node registry live on the first instance.
 * Shard threads: the owner's for topics, shard 0's for the control channel and the registry,
 * the API connection's for its calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envelope.h"
#include "frame.h"
#include "mem.h"
#include "namespace.h"
#include "presence.h"
#include "presence_redis.h"
#include "pubsub_int.h"
#include "pubsub_redis.h"
#include "redis_xnode.h"

#define KEY_BYTES 1024 /* redis_prefix is at most 256 bytes, a topic 128, a node id 64 */

/* What a reply of this module answers. */
enum what {
	W_DONE = RC_XNODE_WHAT_BASE, /* a write or a PUBLISH: only a NOSCRIPT matters */
	W_LOAD,                      /* SCRIPT LOAD of the nodes' script */
	W_QUERY,                     /* ctx: a PRESENCE_GET xmsg */
	W_INFO,                      /* ctx: an ANSWER xmsg holding this node's /api/info */
	W_TOPICS,                    /* ctx: an ANSWER xmsg holding this node's topic lines */
};

/* A command being built: argv and lens grow up to cap arguments. */
struct cmd {
	const char **argv;
	size_t *lens;
	int argc;
	int cap;
	char nkeys[4];
};

static void arg(struct cmd *c, const char *p, size_t n)
{
	RC_ASSERT(c->argc < c->cap);
	c->argv[c->argc] = p;
	c->lens[c->argc++] = n;
}

/* Starts an EVALSHA of the nodes' script with nkeys keys and room for more arguments (keys
 * included). False without memory (counted). */
static bool script_start(struct cmd *c, struct rc_shard *s, int nkeys, int more)
{
	c->cap = 3 + more;
	c->argc = 0;
	c->argv = malloc((size_t)c->cap * (sizeof(*c->argv) + sizeof(*c->lens)));
	if (!c->argv) {
		s->stats.alloc_failures++;
		return false;
	}
	c->lens = (size_t *)(c->argv + c->cap);
	snprintf(c->nkeys, sizeof(c->nkeys), "%d", nkeys);
	arg(c, "EVALSHA", 7);
	arg(c, s->app->xnode_sha, 40);
	arg(c, c->nkeys, strlen(c->nkeys));
	return true;
}

/* Queues c on l (ctx and what come back with the reply) and frees its arrays. 0 or -errno
 * (rc_redis_command). */
static int script_send(struct cmd *c, struct rc_redis_link *l, void *ctx, enum what what)
{
	int rc = rc_redis_command(l, c->argc, c->argv, c->lens, ctx, what);
	free(c->argv);
	c->argv = NULL;
	return rc;
}

static const char *node_id(const struct rc_shard *s)
{
	return s->app->cfg.node_id;
}

static bool own_node(const struct rc_shard *s, const char *node, size_t len)
{
	const char *me = node_id(s);
	return strlen(me) == len && memcmp(me, node, len) == 0;
}

static size_t key(const struct rc_shard *s, char out[KEY_BYTES], const char *topic, size_t tlen,
		  enum rc_xnode_key which)
{
	return rc_xnode_key(out, KEY_BYTES, s->app->cfg.redis_prefix, topic, tlen, node_id(s),
			    which);
}

static void load_script(struct rc_redis_link *l)
{
	size_t len;
	const char *text = rc_xnode_script(&len);
	const char *argv[] = {"SCRIPT", "LOAD", text};
	size_t lens[] = {6, 4, len};
	(void)rc_redis_command(l, 3, argv, lens, NULL, W_LOAD);
}

/* The script cache was flushed: load again, and rewrite what the lost writes would have. */
static void noscript(struct rc_redis_link *l)
{
	struct rc_shard *s = l->shard;
	load_script(l);
	s->xnode_rewrite |= 1ull << (l->index / 2);
	s->xnode_refresh_ms = 0;
}

static bool is_noscript(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* ---- this node's entries ---------------------------------------------------------------- */
/* One entry's field (connection id) and value (its JSON), as the script takes them. */
struct field {
	char id[RC_PRESENCE_CONN_CHARS];
	char *json;
	size_t len;
};

/* One script call on this node's hash of a topic: fields to delete, entries to set. */
struct change {
	const char *topic; /* borrowed, as its length */
	size_t tlen;
	char mode;         /* 'a' (change or refresh) or 'w' (replace whole) */
	const uint64_t *dels; /* connection ids */
	uint32_t ndel;
	const struct rc_presence_entry *const *set;
	uint32_t nset;
};

/* Encodes the ids and entries of ch into f (ndel + nset slots). False without memory. */
static bool fields_of(const struct change *ch, struct field *f)
{
	for (uint32_t i = 0; i < ch->ndel; i++)
		rc_presence_conn_text(ch->dels[i], f[i].id);
	for (uint32_t i = 0; i < ch->nset; i++) {
		struct field *x = &f[ch->ndel + i];
		rc_presence_conn_text(ch->set[i]->conn, x->id);
		x->json = rc_presence_write_client(ch->set[i], &x->len);
		if (!x->json)
			return false;
	}
	return true;
}

/* Sends ch as one script call on its topic's command link. Not sent when the link is down:
 * the topic is rewritten whole when it comes back. */
static void write_change(struct rc_shard *s, const struct change *ch)
{
	struct rc_redis_link *l = rc_pubsub_redis_link(s, ch->topic, ch->tlen, RC_REDIS_CMD);
	uint32_t n = ch->ndel + ch->nset;
	char k[2][KEY_BYTES], num[2][24];
	size_t kl[2] = {key(s, k[0], ch->topic, ch->tlen, RC_XNODE_KEY_PRESENCE),
			key(s, k[1], ch->topic, ch->tlen, RC_XNODE_KEY_TOPIC_NODES)};
	struct field *f = calloc(n + 1, sizeof(*f));
	struct cmd c = {0};
	bool ok = f && kl[0] && kl[1] && l->state == RC_REDIS_UP && fields_of(ch, f) &&
		  script_start(&c, s, 2, 6 + (int)ch->ndel + 2 * (int)ch->nset);
	if (ok) {
		arg(&c, k[0], kl[0]);
		arg(&c, k[1], kl[1]);
		arg(&c, ch->mode == 'w' ? "w" : "a", 1);
		arg(&c, num[0], (size_t)snprintf(num[0], sizeof(num[0]), "%llu",
						 (unsigned long long)s->app->cfg.presence_ttl_ms));
		arg(&c, node_id(s), strlen(node_id(s)));
		arg(&c, num[1], (size_t)snprintf(num[1], sizeof(num[1]), "%u", ch->ndel));
		for (uint32_t i = 0; i < n; i++) {
			arg(&c, f[i].id, sizeof(f[i].id));
			if (i >= ch->ndel)
				arg(&c, f[i].json, f[i].len);
		}
		if (script_send(&c, l, NULL, W_DONE) == 0)
			s->stats.redis_presence_writes++;
	}
	free(c.argv);
	for (uint32_t i = 0; f && i < n; i++)
		free(f[i].json);
	free(f);
}

/* A change of one entry waiting for the turn's flush: the topic by name (its record may go
 * before), the connection; whether it is added or removed is read from the set then. */
struct rc_xnode_op {
	uint64_t conn;
	uint16_t tlen;
	char topic[RC_TOPIC_BYTES_LIMIT + 1];
};

static int op_order(const void *a, const void *b)
{
	const struct rc_xnode_op *x = a, *y = b;
	if (x->tlen != y->tlen)
		return x->tlen < y->tlen ? -1 : 1;
	int d = memcmp(x->topic, y->topic, x->tlen);
	if (d)
		return d;
	return (x->conn > y->conn) - (x->conn < y->conn);
}

/* Writes the changes of ops[0..n) (one topic, sorted by connection) in one script call:
 * each connection set as the owner keeps it now, or deleted. */
static void flush_topic(struct rc_shard *s, const struct rc_xnode_op *ops, uint32_t n)
{
	const struct rc_otopic *t = rc_pubsub_owned(s, ops[0].topic, ops[0].tlen);
	const struct rc_presence *p = t ? t->presence : NULL;
	uint64_t *dels = malloc(n * sizeof(*dels));
	const struct rc_presence_entry **set = malloc(n * sizeof(*set));
	struct change ch = {ops[0].topic, ops[0].tlen, 'a', dels, 0, set, 0};
	for (uint32_t i = 0; dels && set && i < n; i++) {
		if (i && ops[i].conn == ops[i - 1].conn)
			continue;
		const struct rc_presence_entry *e = p ? rc_presence_find(p, ops[i].conn) : NULL;
		if (e)
			set[ch.nset++] = e;
		else
			dels[ch.ndel++] = ops[i].conn;
	}
	if (dels && set)
		write_change(s, &ch);
	else
		s->stats.alloc_failures++;
	free(dels);
	free(set);
}

/* Sends the turn's changes: one script call per topic, in the order of the owner's set (a
 * query sent after this sees them). */
static void flush(struct rc_shard *s)
{
	struct rc_xnode_op *ops = s->xnode_ops;
	uint32_t n = s->xnode_ops_count, first = 0;
	if (!n)
		return;
	s->xnode_ops_count = 0;
	if (s->draining)
		return; /* dropped whole (rc_xnode_drain) */
	qsort(ops, n, sizeof(*ops), op_order);
	for (uint32_t i = 1; i <= n; i++) {
		if (i < n && ops[i].tlen == ops[first].tlen &&
		    memcmp(ops[i].topic, ops[first].topic, ops[i].tlen) == 0)
			continue;
		flush_topic(s, ops + first, i - first);
		first = i;
	}
}

void rc_xnode_presence(struct rc_shard *s, struct rc_otopic *t, uint64_t conn, bool add)
{
	(void)add; /* read from the set at the flush: the last change of a turn wins */
	RC_ASSERT(s->app->engine != NULL);
	if (s->draining)
		return;
	if (s->xnode_ops_count == s->xnode_ops_cap) {
		uint32_t cap = s->xnode_ops_cap ? s->xnode_ops_cap * 2 : 64;
		size_t grow = (cap - s->xnode_ops_cap) * sizeof(*s->xnode_ops);
		struct rc_xnode_op *ops = NULL;
		if (rc_mem_try_charge(s->app, RC_BUDGET_engine, grow)) {
			ops = realloc(s->xnode_ops, cap * sizeof(*ops));
			if (!ops)
				rc_mem_release(s->app, RC_BUDGET_engine, grow);
		}
		if (!ops) {
			/* Not mirrored now: the next refresh rewrites this instance whole. */
			s->stats.alloc_failures++;
			struct rc_redis_link *l = rc_pubsub_redis_link(s, t->node.name,
								       t->node.name_len,
								       RC_REDIS_CMD);
			s->xnode_rewrite |= 1ull << (l->index / 2);
			return;
		}
		s->xnode_ops = ops;
		s->xnode_ops_cap = cap;
	}
	struct rc_xnode_op *op = &s->xnode_ops[s->xnode_ops_count++];
	op->conn = conn;
	op->tlen = t->node.name_len;
	memcpy(op->topic, t->node.name, op->tlen);
}

void rc_xnode_free(struct rc_shard *s)
{
	rc_mem_release(s->app, RC_BUDGET_engine, s->xnode_ops_cap * sizeof(*s->xnode_ops));
	free(s->xnode_ops);
	s->xnode_ops = NULL;
	s->xnode_ops_cap = s->xnode_ops_count = 0;
}

/* Deletes this node's hash (key which of topic[0..tlen)) and its place in the set beside it
 * (key set) on l: mode 'x'. 0 or -errno. */
static int remove_node(struct rc_shard *s, struct rc_redis_link *l, const char *topic,
		       size_t tlen, enum rc_xnode_key which, enum rc_xnode_key set)
{
	char k[2][KEY_BYTES];
	size_t kl[2] = {key(s, k[0], topic, tlen, which), key(s, k[1], topic, tlen, set)};
	struct cmd c = {0};
	if (!kl[0] || !kl[1] || l->state != RC_REDIS_UP || !script_start(&c, s, 2, 4))
		return -ENOTCONN;
	arg(&c, k[0], kl[0]);
	arg(&c, k[1], kl[1]);
	arg(&c, "x", 1);
	arg(&c, node_id(s), strlen(node_id(s)));
	return script_send(&c, l, NULL, W_DONE);
}

/* Deletes this node's hash of t and its place in t's node set. */
static void drop_entries(struct rc_shard *s, const struct rc_otopic *t)
{
	struct rc_redis_link *l =
		rc_pubsub_redis_link(s, t->node.name, t->node.name_len, RC_REDIS_CMD);
	if (remove_node(s, l, t->node.name, t->node.name_len, RC_XNODE_KEY_PRESENCE,
			RC_XNODE_KEY_TOPIC_NODES) == 0)
		s->stats.redis_presence_writes++;
}

/* Calls fn on every topic s owns that keeps presence entries here. */
static void each_listed(struct rc_shard *s, void (*fn)(struct rc_shard *s,
						       const struct rc_otopic *t))
{
	for (uint32_t b = 0; b <= s->otopics.mask; b++) {
		for (struct rc_topic_node *n = s->otopics.buckets[b]; n; n = n->next) {
			const struct rc_otopic *t = rc_container_of(n, struct rc_otopic, node);
			if (t->presence && t->presence->count && !rc_topic_reserved(n->name,
										     n->name_len))
				fn(s, t);
		}
	}
}

static void refresh_one(struct rc_shard *s, const struct rc_otopic *t)
{
	struct rc_redis_link *l =
		rc_pubsub_redis_link(s, t->node.name, t->node.name_len, RC_REDIS_CMD);
	struct change ch = {t->node.name, t->node.name_len, 'a', NULL, 0, NULL, 0};
	const struct rc_presence *p = t->presence;
	if (!(s->xnode_rewrite >> (l->index / 2) & 1)) {
		write_change(s, &ch); /* the expiry only */
		return;
	}
	const struct rc_presence_entry **set = malloc(p->count * sizeof(*set));
	if (!set) {
		s->stats.alloc_failures++;
		return;
	}
	for (uint32_t i = 0; i < p->count; i++)
		set[i] = &p->v[i];
	ch.mode = 'w';
	ch.set = set;
	ch.nset = p->count;
	write_change(s, &ch);
	free(set);
}

/* Renews the expiry of this shard's entries (one command per topic), or rewrites them whole
 * on an instance whose link came back. */
static void refresh(struct rc_shard *s)
{
	each_listed(s, refresh_one);
	for (uint32_t i = 0; i < s->app->redis_count; i++)
		if (rc_redis_link(s, i, RC_REDIS_CMD)->state == RC_REDIS_UP)
			s->xnode_rewrite &= ~(1ull << i);
}

/* ---- the node registry (shard 0, first instance) ----------------------------------------- */
/* Sums a counter of every shard, read racily as /metrics reads them. */
static uint64_t total(const struct rc_app *app, size_t offset)
{
	uint64_t sum = 0;
	for (int i = 0; i < app->shards_count; i++) {
		const uint64_t *v = (const uint64_t *)((const char *)&app->shards[i].stats + offset);
		sum += __atomic_load_n(v, __ATOMIC_RELAXED);
	}
	return sum;
}

/* Writes the node's registry entry (name, shards, connections, subscriptions, presence
 * entries) with the expiry presence_ttl_ms. */
static void heartbeat(struct rc_shard *s)
{
	static const char *const names[] = {"shards", "connections", "subscriptions",
					    "presence_entries"};
	const struct rc_app *app = s->app;
	struct rc_redis_link *l = rc_redis_link(s, 0, RC_REDIS_CMD);
	char k[2][KEY_BYTES], host[256] = "", v[5][24];
	size_t kl[2] = {key(s, k[0], "", 0, RC_XNODE_KEY_NODE),
			key(s, k[1], "", 0, RC_XNODE_KEY_NODES)};
	uint64_t vals[] = {(uint64_t)app->shards_count,
			   total(app, offsetof(struct rc_shard_stats, websockets_open)),
			   total(app, offsetof(struct rc_shard_stats, subscriptions)),
			   total(app, offsetof(struct rc_shard_stats, presence_entries))};
	struct cmd c = {0};
	if (!kl[0] || !kl[1] || l->state != RC_REDIS_UP || !script_start(&c, s, 2, 18))
		return;
	(void)gethostname(host, sizeof(host) - 1);
	arg(&c, k[0], kl[0]);
	arg(&c, k[1], kl[1]);
	arg(&c, "w", 1);
	arg(&c, v[4], (size_t)snprintf(v[4], sizeof(v[4]), "%llu",
				       (unsigned long long)app->cfg.presence_ttl_ms));
	arg(&c, node_id(s), strlen(node_id(s)));
	arg(&c, "0", 1); /* no field to delete */
	arg(&c, "name", 4);
	arg(&c, host, strlen(host));
	for (size_t i = 0; i < RC_ARRAY_LEN(names); i++) {
		arg(&c, names[i], strlen(names[i]));
		arg(&c, v[i], (size_t)snprintf(v[i], sizeof(v[i]), "%llu",
					       (unsigned long long)vals[i]));
	}
	if (script_send(&c, l, NULL, W_DONE) == 0)
		s->stats.redis_heartbeats++;
}

/* Removes the node's registry entry (a graceful stop). */
static void unregister(struct rc_shard *s)
{
	(void)remove_node(s, rc_redis_link(s, 0, RC_REDIS_CMD), "", 0, RC_XNODE_KEY_NODE,
			  RC_XNODE_KEY_NODES);
}

/* ---- topics: each shard's, for /api/topics on any node --------------------------------- */
/* This shard's member name among the topic hashes: "<node>/<shard>". */
static void topics_member(const struct rc_shard *s, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%d", node_id(s), s->index);
}

/* The keys of this shard's topic hash and of the set naming the live ones; false if they do
 * not fit. */
static bool topics_keys(const struct rc_shard *s, const char *member, char k[2][KEY_BYTES],
			size_t kl[2])
{
	const char *prefix = s->app->cfg.redis_prefix;
	kl[0] = rc_xnode_key(k[0], KEY_BYTES, prefix, "", 0, member, RC_XNODE_KEY_TOPICS);
	kl[1] = rc_xnode_key(k[1], KEY_BYTES, prefix, "", 0, member, RC_XNODE_KEY_TOPIC_SETS);
	return kl[0] && kl[1];
}

/*
 * Replaces this shard's topic hash on the first instance with the topics subscribed here
 * (personal ones left out) and their subscribers, expiring after presence_ttl_ms unless
 * written again (every third of it): /api/topics on another node sums every live shard's.
 */
static void topics_write(struct rc_shard *s)
{
	struct rc_redis_link *l = rc_redis_link(s, 0, RC_REDIS_CMD);
	char member[RC_NODE_ID_BYTES_LIMIT + 16], k[2][KEY_BYTES], ttl[24];
	size_t kl[2];
	uint32_t n = 0, i = 0;
	struct cmd c = {0};
	topics_member(s, member, sizeof(member));
	for (uint32_t b = 0; b <= s->ltopics.mask; b++)
		for (struct rc_topic_node *t = s->ltopics.buckets[b]; t; t = t->next)
			n++;
	char (*counts)[12] = malloc((size_t)RC_MAX(n, 1) * sizeof(*counts));
	if (!counts || !topics_keys(s, member, k, kl) || l->state != RC_REDIS_UP ||
	    !script_start(&c, s, 2, 6 + 2 * (int)n)) {
		free(counts);
		return;
	}
	arg(&c, k[0], kl[0]);
	arg(&c, k[1], kl[1]);
	arg(&c, "w", 1);
	arg(&c, ttl, (size_t)snprintf(ttl, sizeof(ttl), "%llu",
				      (unsigned long long)s->app->cfg.presence_ttl_ms));
	arg(&c, member, strlen(member));
	arg(&c, "0", 1); /* no field to delete: the hash is replaced */
	for (uint32_t b = 0; b <= s->ltopics.mask; b++) {
		for (struct rc_topic_node *t = s->ltopics.buckets[b]; t; t = t->next) {
			const struct rc_ltopic *lt = rc_container_of(t, struct rc_ltopic, node);
			if (rc_topic_personal(t->name, t->name_len))
				continue;
			arg(&c, t->name, t->name_len);
			arg(&c, counts[i], (size_t)snprintf(counts[i], sizeof(counts[i]), "%u",
							    lt->count));
			i++;
		}
	}
	(void)script_send(&c, l, NULL, W_DONE);
	free(counts);
}

/* Removes this shard's topic hash (the drain). */
static void topics_remove(struct rc_shard *s)
{
	struct rc_redis_link *l = rc_redis_link(s, 0, RC_REDIS_CMD);
	char member[RC_NODE_ID_BYTES_LIMIT + 16], k[2][KEY_BYTES];
	size_t kl[2];
	struct cmd c = {0};
	topics_member(s, member, sizeof(member));
	if (!topics_keys(s, member, k, kl) || l->state != RC_REDIS_UP ||
	    !script_start(&c, s, 2, 4))
		return;
	arg(&c, k[0], kl[0]);
	arg(&c, k[1], kl[1]);
	arg(&c, "x", 1);
	arg(&c, member, strlen(member));
	(void)script_send(&c, l, NULL, W_DONE);
}

void rc_xnode_turn(struct rc_shard *s)
{
	const struct rc_config *cfg = &s->app->cfg;
	uint64_t now = s->clock.now_ms;
	flush(s);
	if (s->draining)
		return;
	if (now >= s->xnode_refresh_ms) {
		refresh(s);
		topics_write(s);
		s->xnode_refresh_ms = now + cfg->presence_ttl_ms / 3;
	}
	if (s->index == 0 && now >= s->xnode_beat_ms) {
		heartbeat(s);
		s->xnode_beat_ms = now + cfg->node_heartbeat_ms;
	}
}

void rc_xnode_drain(struct rc_shard *s)
{
	RC_ASSERT(s->draining);
	each_listed(s, drop_entries);
	topics_remove(s);
	if (s->index == 0)
		unregister(s);
}

/* ---- queries ------------------------------------------------------------------------------ */
void rc_xnode_presence_get(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_redis_link *l = rc_pubsub_redis_link(s, m->topic, m->topic_len, RC_REDIS_CMD);
	char k[2][KEY_BYTES], max[24];
	size_t kl[2] = {key(s, k[0], m->topic, m->topic_len, RC_XNODE_KEY_TOPIC_NODES),
			key(s, k[1], m->topic, m->topic_len, RC_XNODE_KEY_PRESENCE_BASE)};
	uint64_t list_max = m->stats_only ? 0 : s->app->cfg.presence_list_max;
	struct cmd c = {0};
	flush(s); /* the query sees every change the owner made before it */
	if (kl[0] && kl[1] && l->state == RC_REDIS_UP && script_start(&c, s, 1, 4)) {
		arg(&c, k[0], kl[0]);
		arg(&c, "q", 1);
		arg(&c, k[1], kl[1]);
		arg(&c, max, (size_t)snprintf(max, sizeof(max), "%llu",
					      (unsigned long long)list_max));
		if (script_send(&c, l, m, W_QUERY) == 0)
			return;
	}
	s->stats.redis_presence_partial++;
	rc_pubsub_presence_answer(s, m, true);
}

/* Redis's answer r (NULL: none) to presence query m (taken). */
static void query_reply(struct rc_redis_link *l, struct rc_xmsg *m, const redisReply *r)
{
	struct rc_shard *s = l->shard;
	struct rc_xnode_presence p;
	size_t skipped = 0, len = 0;
	if (is_noscript(r))
		noscript(l);
	if (!r || r->type == REDIS_REPLY_ERROR || rc_xnode_parse_presence(r, &p) != 0) {
		s->stats.redis_node_errors += r && r->type != REDIS_REPLY_ERROR;
		s->stats.redis_presence_partial++;
		rc_pubsub_presence_answer(s, m, true);
		return;
	}
	char *json = rc_xnode_write_presence(&p, m->stats_only ? "presence_stats" : "presence",
					     m->topic, m->topic_len, !m->stats_only, &skipped,
					     &len);
	s->stats.redis_node_errors += skipped;
	s->stats.redis_presence_queries++;
	s->stats.presence_queries++;
	rc_pubsub_answer_query(s, m, json, len);
	free(json);
}

/* Answers info request m (taken) from its local object and the registry's reply r (NULL:
 * Redis could not be asked: "partial"). */
/* Answers m (taken), which holds this node's own JSON (W_INFO) or topic lines (W_TOPICS),
 * with what r says of the live nodes; NULL: Redis could not be asked ("partial"). */
static void registry_answer(struct rc_shard *s, struct rc_xmsg *m, enum what what,
			    const redisReply *r)
{
	size_t len = 0;
	char *json = what == W_INFO
			     ? rc_xnode_write_info(m->data, m->data_len, r, &len)
			     : rc_xnode_write_topics(m->data, m->data_len, r, node_id(s), &len);
	struct rc_conn *c = rc_pubsub_reply_conn(s, m);
	if (!json)
		s->stats.alloc_failures++;
	if (c)
		s->app->pubsub_hooks->answer(c, RC_REPLY_HTTP, 0, json, len);
	free(json);
	rc_pubsub_xmsg_free(s->app, m);
}

/* Asks the registry-shaped set and hashes (set, base) of the live nodes for c's answer,
 * which local[0..len) (borrowed) begins. */
static void ask_registry(struct rc_conn *c, const char *local, size_t len,
			 enum rc_xnode_key set, enum rc_xnode_key base, enum what what)
{
	struct rc_shard *s = c->shard;
	struct rc_redis_link *l = rc_redis_link(s, 0, RC_REDIS_CMD);
	struct rc_xmsg *m = rc_pubsub_xmsg_new(s->app, s, RC_X_ANSWER, "", 0, len);
	char k[2][KEY_BYTES];
	size_t kl[2] = {key(s, k[0], "", 0, set), key(s, k[1], "", 0, base)};
	struct cmd cmd = {0};
	if (!m) {
		s->stats.alloc_failures++;
		s->app->pubsub_hooks->answer(c, RC_REPLY_HTTP, 0, NULL, 0); /* the 503 */
		return;
	}
	memcpy(m->data, local, len);
	m->reply = RC_REPLY_HTTP;
	m->slot = (uint32_t)(c - s->conns);
	m->gen = c->gen;
	if (kl[0] && kl[1] && l->state == RC_REDIS_UP && script_start(&cmd, s, 1, 3)) {
		arg(&cmd, k[0], kl[0]);
		arg(&cmd, "i", 1);
		arg(&cmd, k[1], kl[1]);
		if (script_send(&cmd, l, m, what) == 0)
			return;
	}
	registry_answer(s, m, what, NULL);
}

void rc_xnode_info(struct rc_conn *c, const char *local, size_t len)
{
	ask_registry(c, local, len, RC_XNODE_KEY_NODES, RC_XNODE_KEY_NODE_BASE, W_INFO);
}

void rc_xnode_topics(struct rc_conn *c, const char *local, size_t len)
{
	ask_registry(c, local, len, RC_XNODE_KEY_TOPIC_SETS, RC_XNODE_KEY_TOPICS_BASE, W_TOPICS);
}

/* ---- join/leave events ------------------------------------------------------------------- */
void rc_xnode_event_out(struct rc_shard *s, const struct rc_otopic *t, bool join,
			const char *env, size_t len)
{
	struct rc_redis_link *l =
		rc_pubsub_redis_link(s, t->node.name, t->node.name_len, RC_REDIS_CMD);
	char ch[KEY_BYTES];
	int cl = snprintf(ch, sizeof(ch), "%s%s", s->app->cfg.redis_prefix, t->node.name);
	size_t plen = 0;
	char *payload = rc_xnode_write_event(join ? 'j' : 'l', node_id(s), env, len, &plen);
	const char *argv[] = {"PUBLISH", ch, payload};
	size_t lens[] = {7, (size_t)cl, plen};
	if (!payload)
		s->stats.alloc_failures++;
	else if (rc_redis_command(l, 3, argv, lens, NULL, W_DONE) == 0)
		s->stats.redis_events_sent++;
	free(payload);
}

void rc_xnode_event_in(struct rc_shard *s, struct rc_otopic *t, const char *p, size_t n)
{
	struct rc_xnode_event e;
	char *env;
	if (rc_xnode_parse_event(p, n, &e) != 0) {
		s->stats.redis_node_errors++;
		return;
	}
	/* This node fanned its own out when it happened. */
	if (own_node(s, e.node, e.node_len) || !(t->presence_flags & RC_PRESENCE_EVENTS))
		return;
	/* The bound of join storms holds for what other nodes send too: this node's count. */
	const struct rc_namespace *ns = rc_namespace_of(s->app->namespaces, t->node.name,
							t->node.name_len);
	if (ns && t->subscribers > ns->join_leave_subscribers_max) {
		s->stats.presence_events_skipped++;
		return;
	}
	struct rc_frame *f = rc_pubsub_frame_shared(s, t->node.name, t->node.name_len,
						    t->node.hash, e.data_len, &env);
	if (!f) {
		s->stats.alloc_failures++;
		return;
	}
	memcpy(env, e.data, e.data_len);
	s->stats.redis_events_received++;
	if (!s->app->engine->defer_event(s, t, f))
		rc_pubsub_fan_out_event(s, t, f);
}

/* ---- the control channel ------------------------------------------------------------------ */
int rc_xnode_user_action(struct rc_shard *s, const char *user, size_t ulen, const char *topic,
			 size_t tlen, uint16_t code)
{
	struct rc_redis_link *l = rc_redis_link(s, 0, RC_REDIS_CMD);
	struct rc_xnode_ctl m = {.kind = tlen ? 'u' : 'd', .node = node_id(s),
				 .node_len = strlen(node_id(s)), .code = code, .topic = topic,
				 .topic_len = tlen, .user = user, .user_len = ulen};
	char ch[KEY_BYTES], payload[512];
	size_t cl = key(s, ch, "", 0, RC_XNODE_KEY_CONTROL);
	size_t plen = rc_xnode_write_ctl(payload, sizeof(payload), &m);
	const char *argv[] = {"PUBLISH", ch, payload};
	size_t lens[] = {7, cl, plen};
	if (!cl || !plen || rc_redis_command(l, 3, argv, lens, NULL, W_DONE) != 0) {
		s->stats.redis_control_unsent++;
		return -ENOTCONN;
	}
	s->stats.redis_control_sent++;
	return 0;
}

bool rc_xnode_push(struct rc_redis_link *l, const redisReply *r)
{
	struct rc_shard *s = l->shard;
	const redisReply *ch = r->element[1], *p = r->element[2];
	size_t plen = strlen(s->app->cfg.redis_prefix);
	char want[KEY_BYTES];
	struct rc_xnode_ctl m;
	RC_ASSERT(ch->len > plen);
	if (ch->str[plen] != '!') /* in no topic's channel: cheap for every message */
		return false;
	size_t wl = key(s, want, "", 0, RC_XNODE_KEY_CONTROL);
	if (wl != ch->len || memcmp(want, ch->str, wl) != 0)
		return false;
	if (strcmp(r->element[0]->str, "message") != 0)
		return true; /* the subscription's confirmation */
	if (p->type != REDIS_REPLY_STRING || rc_xnode_parse_ctl(p->str, p->len, &m) != 0) {
		s->stats.redis_node_errors++;
		return true;
	}
	if (own_node(s, m.node, m.node_len))
		return true; /* acted on where it was called */
	s->stats.redis_control_received++;
	(void)rc_pubsub_user_action(s, m.user, m.user_len, m.topic_len ? m.topic : "",
				    m.topic_len, m.code);
	return true;
}

void rc_xnode_link_up(struct rc_redis_link *l)
{
	struct rc_shard *s = l->shard;
	if (l->kind == RC_REDIS_CMD) {
		load_script(l);
		s->xnode_rewrite |= 1ull << (l->index / 2);
		s->xnode_refresh_ms = 0;
		if (l->index == 0)
			s->xnode_beat_ms = 0;
		return;
	}
	char ch[KEY_BYTES];
	size_t cl = key(s, ch, "", 0, RC_XNODE_KEY_CONTROL);
	const char *argv[] = {"SUBSCRIBE", ch};
	size_t lens[] = {9, cl};
	/* One subscription per node: shard 0's, on the first instance. A link that cannot take
	 * it is failed, so its reconnect tries again. */
	if (s->index == 0 && l->index == 1 && cl &&
	    rc_redis_command(l, 2, argv, lens, NULL, 0) != 0)
		rc_redis_link_fail(l);
}

void rc_xnode_reply(struct rc_redis_link *l, void *ctx, uint32_t what, redisReply *r)
{
	switch ((enum what)what) {
	case W_DONE:
		if (is_noscript(r))
			noscript(l);
		return;
	case W_LOAD:
		if (r && r->type == REDIS_REPLY_STRING &&
		    (r->len != 40 || memcmp(r->str, l->shard->app->xnode_sha, 40) != 0))
			rc_redis_link_fail(l); /* another script answered to our name */
		return;
	case W_QUERY: query_reply(l, ctx, r); return;
	case W_INFO:
	case W_TOPICS:
		if (is_noscript(r))
			noscript(l);
		registry_answer(l->shard, ctx, (enum what)what,
				r && r->type == REDIS_REPLY_ARRAY ? r : NULL);
		return;
	default: RC_ASSERT(!"unknown Redis command tag of presence_redis.c");
	}
}
