/*
 * Who is subscribed, on top of pubsub.c: presence sets kept by topic owners and the join and
 * leave frames they fan out (namespaces with presence and join_leave), the owners' and shards'
 * answers to queries (presence, history, topics) sent back to the asking connection, and the
 * server API's actions on a user's connections (found through its personal topic #<sub>)
 * on every shard. Shard threads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "frame.h"
#include "mem.h"
#include "namespace.h"
#include "presence.h"
#include "pubsub_int.h"
#include "session.h"
#include "token.h"

/* ---- owner side: presence and join/leave ---------------------------------------------------- */
/* Drops t's presence set (an emptied one, or the topic's end), releasing its charge. */
void rc_pubsub_presence_drop(struct rc_shard *s, struct rc_otopic *t)
{
	struct rc_presence *p = t->presence;
	if (!p)
		return;
	s->stats.presence_entries -= p->count;
	rc_mem_release(s->app, RC_BUDGET_presence, rc_presence_bytes(p) + sizeof(*p));
	rc_presence_free(p);
	free(p);
	t->presence = NULL;
}


/*
 * Adds or removes m's subscriber in t's presence set, charged to the budget (presence): past
 * the soft mark, past presence_entries_max or without memory a subscriber is not listed
 * (counted); an emptied set is freed.
 */
static void presence_keep(struct rc_shard *s, struct rc_otopic *t, const struct rc_xmsg *m,
			  bool add)
{
	const uint32_t max = (uint32_t)s->app->cfg.presence_entries_max;
	if (add && !t->presence && s->mem_level < RC_BUDGET_SOFT) {
		t->presence = calloc(1, sizeof(*t->presence));
		if (t->presence)
			rc_mem_charge(s->app, RC_BUDGET_presence, sizeof(*t->presence));
	}
	struct rc_presence *p = t->presence;
	if (!p) {
		s->stats.presence_refused += add;
		return;
	}
	size_t before = rc_presence_bytes(p);
	uint32_t count = p->count;
	int rc = -ENOBUFS;
	if (!add)
		rc = rc_presence_remove(p, m->conn);
	else if (s->mem_level < RC_BUDGET_SOFT)
		rc = rc_presence_add(p, m->conn, m->data, m->user_len, m->data + m->user_len,
				     m->data_len - m->user_len, max);
	if (add && rc != 0)
		s->stats.presence_refused++;
	size_t after = rc_presence_bytes(p);
	if (after > before)
		rc_mem_charge(s->app, RC_BUDGET_presence, after - before);
	else
		rc_mem_release(s->app, RC_BUDGET_presence, before - after);
	s->stats.presence_entries = s->stats.presence_entries + p->count - count;
	if (p->count == 0)
		rc_pubsub_presence_drop(s, t);
	RC_DASSERT(!t->presence || rc_presence_validate(t->presence));
}


/* Sends join (or leave) of m's subscriber to t's subscribers on every shard: a frame outside
 * the topic's numbering (seq 0), neither kept in history nor replayed. */
static void presence_event(struct rc_shard *s, struct rc_otopic *t, const struct rc_xmsg *m,
			   bool join)
{
	size_t len = 0, ilen = join ? m->data_len - m->user_len : 0;
	char *env, *json = rc_presence_write_event(join, m->topic, m->topic_len, m->data,
						   m->user_len, m->conn, m->data + m->user_len,
						   ilen, &len);
	struct rc_frame *f = json ? rc_pubsub_frame_shared(s, m->topic, m->topic_len, t->node.hash,
							   len, &env)
				  : NULL;
	if (!f) {
		free(json);
		s->stats.alloc_failures++;
		return;
	}
	memcpy(env, json, len);
	const struct rc_engine_ops *e = rc_pubsub_engine_of(s, m->topic, m->topic_len);
	if (e)
		e->event(s, t, join, json, len);
	free(json);
	s->stats.presence_events++;
	if (!e || !e->defer_event(s, t, f))
		rc_pubsub_fan_out_event(s, t, f);
}


/*
 * Counts m's subscriber in (add) or out of t and says whether its join or leave goes out:
 * while the topic has at most its namespace's join_leave_subscribers_max subscribers, the
 * one coming or going included. Past it one event is a frame to every subscriber and N
 * clients joining N^2 frames, so the events are skipped (counted); the list stays whole.
 */
static bool events_wanted(struct rc_shard *s, struct rc_otopic *t, const struct rc_xmsg *m,
			  bool add)
{
	const struct rc_namespace *ns = rc_namespace_of(s->app->namespaces, m->topic,
							m->topic_len);
	/* A leave whose join the owner missed (no memory on the way) finds it uncounted. */
	uint32_t n = add ? ++t->subscribers : t->subscribers ? t->subscribers-- : 0;
	RC_ASSERT(ns != NULL); /* only a namespace's topic has presence flags */
	if (!(t->presence_flags & RC_PRESENCE_EVENTS))
		return false;
	if (n > ns->join_leave_subscribers_max) {
		s->stats.presence_events_skipped++;
		return false;
	}
	return true;
}


/* A subscriber of m's topic came (add) or went: its presence entry and its join/leave, as
 * the topic's namespace asks. Consumes m. */
static void owner_presence(struct rc_shard *s, struct rc_xmsg *m, bool add)
{
	struct rc_otopic *t = rc_pubsub_owned(s, m->topic, m->topic_len);
	const struct rc_engine_ops *e = rc_pubsub_engine_of(s, m->topic, m->topic_len);
	if (t && (t->presence_flags & RC_PRESENCE_LIST)) {
		presence_keep(s, t, m, add);
		if (e)
			e->presence(s, t, m->conn, add);
	}
	if (t && t->presence_flags && events_wanted(s, t, m, add))
		presence_event(s, t, m, add);
	rc_pubsub_xmsg_free(s->app, m);
}

/* ---- queries: the owner's (or every shard's) answer ---------------------------------------- */
void rc_pubsub_answer_query(struct rc_shard *s, struct rc_xmsg *m, const char *text, size_t len)
{
	struct rc_xmsg *a = text ? rc_pubsub_xmsg_new(s->app, s, RC_X_ANSWER, m->topic,
						      m->topic_len, len)
				 : NULL;
	if (a) {
		memcpy(a->data, text, len);
		a->reply = m->reply;
		a->tag = m->tag;
		a->slot = m->slot;
		a->gen = m->gen;
		a->from = m->from;
		rc_pubsub_xmsg_free(s->app, m);
		m = a; /* the answer goes where the query came from */
	} else {
		s->stats.alloc_failures++; /* the query itself goes back, empty */
		RC_ASSERT(m->data_len == 0); /* queries carry no data */
	}
	m->kind = RC_X_ANSWER;
	rc_pubsub_send(s, &s->app->shards[m->from], m);
}


void rc_pubsub_presence_answer(struct rc_shard *s, struct rc_xmsg *m, bool partial)
{
	static const struct rc_presence nobody;
	static const char flag[] = ",\"partial\":true}";
	struct rc_otopic *t = rc_pubsub_owned(s, m->topic, m->topic_len);
	const struct rc_presence *p = t && t->presence ? t->presence : &nobody;
	bool list = !m->stats_only && p->count <= s->app->cfg.presence_list_max;
	size_t len = 0;
	char *json = rc_presence_write(p, m->stats_only ? "presence_stats" : "presence", m->topic,
				       m->topic_len, list, !m->stats_only && !list, &len);
	if (json && partial) {
		/* The object's closing brace becomes the flag's. */
		char *more = realloc(json, len + sizeof(flag));
		if (more) {
			memcpy(more + len - 1, flag, sizeof(flag));
			len += sizeof(flag) - 2;
		} else {
			free(json);
		}
		json = more;
	}
	s->stats.presence_queries++;
	rc_pubsub_answer_query(s, m, json, len);
	free(json);
}

/* Answers a presence query with the list (up to presence_list_max entries, the counts only
 * beyond) or the counts: this owner's, or with the Redis engine every node's. Without memory
 * the answer comes back empty. Consumes m. */
static void owner_presence_get(struct rc_shard *s, struct rc_xmsg *m)
{
	const struct rc_engine_ops *e = rc_pubsub_engine_of(s, m->topic, m->topic_len);
	if (e)
		e->presence_get(s, m);
	else
		rc_pubsub_presence_answer(s, m, false);
}


void rc_pubsub_history_answer(struct rc_shard *s, struct rc_xmsg *m, bool has_epoch,
			      uint64_t epoch, uint64_t seq, const char *msgs, size_t len)
{
	size_t cap = 128 + m->topic_len + len, n = 0;
	char *out = malloc(cap);
	if (out) {
		n = (size_t)snprintf(out, cap, "{\"topic\":\"%s\"", m->topic);
		if (has_epoch)
			n += (size_t)snprintf(out + n, cap - n, ",\"epoch\":\"%016llx\"",
					      (unsigned long long)epoch);
		n += (size_t)snprintf(out + n, cap - n, ",\"seq\":%llu,\"messages\":[",
				      (unsigned long long)seq);
		memcpy(out + n, msgs, len);
		n += len;
		memcpy(out + n, "]}", 2);
		n += 2;
		RC_ASSERT(n <= cap);
	}
	rc_pubsub_answer_query(s, m, out, n);
	free(out);
}

/* The messages after m->seq that t's history holds (at most m->limit, oldest first) as
 * their msg envelopes, with the topic's epoch and current seq. */
void rc_pubsub_history_local(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_otopic *t = rc_pubsub_owned(s, m->topic, m->topic_len);
	uint32_t first = 0, n = 0;
	bool gap;
	if (t && m->seq < t->seq)
		n = RC_MIN(rc_history_since(&t->hist, m->seq, &first, &gap), m->limit);
	size_t cap = 1, len = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *env;
		cap += rc_pubsub_frame_envelope(rc_history_at(&t->hist, first + i)->ref, &env) + 1;
	}
	char *msgs = malloc(cap);
	for (uint32_t i = 0; msgs && i < n; i++) {
		const uint8_t *env;
		size_t elen = rc_pubsub_frame_envelope(rc_history_at(&t->hist, first + i)->ref, &env);
		if (i)
			msgs[len++] = ',';
		memcpy(msgs + len, env, elen);
		len += elen;
	}
	if (!msgs) { /* the query itself goes back, empty */
		rc_pubsub_answer_query(s, m, NULL, 0);
		return;
	}
	rc_pubsub_history_answer(s, m, t != NULL, t ? t->epoch : 0, t ? t->seq : 0, msgs, len);
	free(msgs);
}

/* A history query: from the engine's shared store, or from what this owner holds. */
static void owner_history(struct rc_shard *s, struct rc_xmsg *m)
{
	const struct rc_engine_ops *e = rc_pubsub_engine_of(s, m->topic, m->topic_len);
	if (e && e->history)
		e->history(s, m);
	else
		rc_pubsub_history_local(s, m);
}


/* Answers a topics query with this shard's topics that have subscribers, personal ones left
 * out: "NAME COUNT\n" lines, at least "\n". Consumes m. */
static void local_topics(struct rc_shard *s, struct rc_xmsg *m)
{
	size_t cap = 2, len = 0;
	for (uint32_t b = 0; b <= s->ltopics.mask; b++)
		for (struct rc_topic_node *n = s->ltopics.buckets[b]; n; n = n->next)
			cap += n->name_len + 12;
	char *out = malloc(cap);
	for (uint32_t b = 0; out && b <= s->ltopics.mask; b++) {
		for (struct rc_topic_node *n = s->ltopics.buckets[b]; n; n = n->next) {
			const struct rc_ltopic *t = rc_container_of(n, struct rc_ltopic, node);
			if (!rc_topic_personal(n->name, n->name_len))
				len += (size_t)snprintf(out + len, cap - len, "%s %u\n", n->name,
							t->count);
		}
	}
	if (out && len == 0)
		out[len++] = '\n';
	RC_ASSERT(len < cap || !out);
	rc_pubsub_answer_query(s, m, out, len);
	free(out);
}


static void answered(struct rc_shard *s, struct rc_xmsg *m)
{
	struct rc_conn *c = rc_pubsub_reply_conn(s, m);
	if (c)
		s->app->pubsub_hooks->answer(c, (enum rc_reply)m->reply, m->tag, m->data,
					     m->data_len);
	rc_pubsub_xmsg_free(s->app, m);
}


/* Closes (no topic) or unsubscribes from m's topic every connection of m's user here: those
 * on its personal topic. Consumes m. */
static void user_action(struct rc_shard *s, struct rc_xmsg *m)
{
	char name[RC_TOPIC_BYTES_LIMIT + 1];
	int n = snprintf(name, sizeof(name), "#%.*s", (int)m->user_len, m->data);
	struct rc_topic_node *node = n > 1 && (size_t)n < sizeof(name)
					     ? rc_topic_find(&s->ltopics, name, (size_t)n)
					     : NULL;
	struct rc_ltopic *t = node ? rc_container_of(node, struct rc_ltopic, node) : NULL;
	/* Closing or unsubscribing may free t: its connections are listed first. */
	uint32_t count = t ? t->count : 0;
	struct rc_conn **cs = count ? malloc(count * sizeof(*cs)) : NULL;
	if (count && !cs)
		s->stats.alloc_failures++;
	uint32_t i;
	for (i = 0; cs && i < count; i++)
		cs[i] = t->subv[i]->conn;
	for (i = 0; cs && i < count; i++) {
		if (!m->topic_len)
			rc_conn_close(cs[i], m->code, "disconnected by the server");
		else if (rc_pubsub_unsubscribe(cs[i], m->topic, m->topic_len) == 0)
			s->app->pubsub_hooks->unsubscribed(cs[i], m->topic, m->topic_len);
	}
	free(cs);
	rc_pubsub_xmsg_free(s->app, m);
}


/* ---- subscriber side and the API ------------------------------------------------------------ */
/*
 * Tells t's owner that c subscribed to t (add) or left it: c's id and user, and on add the
 * client info of its token. Without memory the owner misses it (counted): c goes unlisted,
 * or a leave goes unsaid.
 */
void rc_pubsub_presence_notify(struct rc_shard *s, struct rc_conn *c, const struct rc_ltopic *t,
			       bool add)
{
	const char *user = rc_conn_subject(c);
	size_t ulen = strlen(user), ilen = 0;
	const char *info = add ? rc_jwt_rights_info(rc_token_rights(c), &ilen) : NULL;
	enum rc_xkind kind = add ? RC_X_PRESENCE_ADD : RC_X_PRESENCE_DEL;
	struct rc_xmsg *m =
		rc_pubsub_xmsg_new(s->app, s, kind, t->node.name, t->node.name_len, ulen + ilen);
	if (!m) {
		s->stats.alloc_failures++;
		return;
	}
	memcpy(m->data, user, ulen);
	if (ilen)
		memcpy(m->data + ulen, info, ilen);
	m->user_len = (uint16_t)ulen;
	m->conn = rc_pubsub_conn_id(c);
	rc_pubsub_send(s, rc_pubsub_owner_of(s->app, t->node.hash), m);
}


uint64_t rc_pubsub_conn_id(const struct rc_conn *c)
{
	const struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
	RC_ASSERT(slot < s->conns_cap);
	/* The salt (engine = redis) keeps ids apart across nodes and the top bit set. */
	return (1ull << 63 | (uint64_t)s->index << 55 | (uint64_t)(c->gen & 0x7fffff) << 32 |
		slot) ^ s->app->conn_id_salt;
}


/* Sends a query of kind about topic (with since, limit or stats_only as the kind reads
 * them) to its owner, answered to c with reply and tag. 0, -EINVAL or -ENOMEM (counted). */
static int query(struct rc_conn *c, enum rc_xkind kind, const char *topic, size_t len,
		 enum rc_reply reply, uint32_t tag, const struct rc_xmsg *args)
{
	struct rc_shard *s = c->shard;
	if (!rc_topic_name_valid(topic, len))
		return -EINVAL;
	struct rc_xmsg *m = rc_pubsub_xmsg_new(s->app, s, kind, topic, len, 0);
	if (!m) {
		s->stats.alloc_failures++;
		return -ENOMEM;
	}
	m->reply = (uint8_t)reply;
	m->tag = tag;
	m->slot = (uint32_t)(c - s->conns);
	m->gen = c->gen;
	m->seq = args->seq;
	m->limit = args->limit;
	m->stats_only = args->stats_only;
	rc_pubsub_send(s, rc_pubsub_owner_of(s->app, rc_topic_hash(topic, len)), m);
	return 0;
}


int rc_pubsub_presence(struct rc_conn *c, const char *topic, size_t len, bool stats_only,
		       enum rc_reply reply, uint32_t tag)
{
	struct rc_xmsg args = {.stats_only = stats_only};
	return query(c, RC_X_PRESENCE_GET, topic, len, reply, tag, &args);
}


int rc_pubsub_history(struct rc_conn *c, const char *topic, size_t len, uint64_t since,
		      uint32_t limit, enum rc_reply reply, uint32_t tag)
{
	struct rc_xmsg args = {.seq = since, .limit = limit};
	return query(c, RC_X_HISTORY_GET, topic, len, reply, tag, &args);
}


int rc_pubsub_topics(struct rc_conn *c, enum rc_reply reply, uint32_t tag)
{
	struct rc_shard *s = c->shard;
	struct rc_xmsg *m[RC_SHARDS_LIMIT] = {NULL};
	int shards = s->app->shards_count, i;
	for (i = 0; i < shards; i++) {
		m[i] = rc_pubsub_xmsg_new(s->app, s, RC_X_TOPICS_GET, "", 0, 0);
		if (!m[i])
			break;
		m[i]->reply = (uint8_t)reply;
		m[i]->tag = tag;
		m[i]->slot = (uint32_t)(c - s->conns);
		m[i]->gen = c->gen;
	}
	if (i < shards) {
		s->stats.alloc_failures++;
		while (i-- > 0)
			rc_pubsub_xmsg_free(s->app, m[i]);
		return -ENOMEM;
	}
	for (i = 0; i < shards; i++)
		rc_pubsub_send(s, &s->app->shards[i], m[i]);
	return 0;
}


int rc_pubsub_user_action(struct rc_shard *s, const char *user, size_t ulen, const char *topic,
			  size_t tlen, uint16_t code)
{
	int rc = 0;
	if (!ulen || ulen >= RC_TOPIC_BYTES_LIMIT || (tlen && !rc_topic_name_valid(topic, tlen)))
		return -EINVAL;
	for (int i = 0; i < s->app->shards_count; i++) {
		struct rc_xmsg *m = rc_pubsub_xmsg_new(s->app, s, RC_X_USER, topic, tlen, ulen);
		if (!m) {
			s->stats.alloc_failures++;
			rc = -ENOMEM;
			continue;
		}
		memcpy(m->data, user, ulen);
		m->user_len = (uint16_t)ulen;
		m->code = code;
		rc_pubsub_send(s, &s->app->shards[i], m);
	}
	return rc;
}

void rc_pubsub_users_handle(struct rc_shard *s, struct rc_xmsg *m)
{
	switch ((enum rc_xkind)m->kind) {
	case RC_X_PRESENCE_ADD: owner_presence(s, m, true); break;
	case RC_X_PRESENCE_DEL: owner_presence(s, m, false); break;
	case RC_X_PRESENCE_GET: owner_presence_get(s, m); break;
	case RC_X_HISTORY_GET: owner_history(s, m); break;
	case RC_X_TOPICS_GET: local_topics(s, m); break;
	case RC_X_ANSWER: answered(s, m); break;
	case RC_X_USER: user_action(s, m); break;
	default: RC_ASSERT(!"not a message of pubsub_users.c");
	}
}
