/*
 * ringcast's pub/sub client protocol on top of pubsub.c: JSON text frames from clients
 * (sub, unsub, pub, ping) and the server's answers (ack, error, gap, pong), plus the
 * backend API POST /publish whose answer waits until the owner shards have sequenced every
 * publish of the request. JSON is parsed here, once per client request; broadcast messages
 * are built by the owner shard and never touch JSON per recipient. Its functions are the
 * /ws endpoint's on_message and the hooks pub/sub and HTTP serving answer through (wired by
 * app.c). Shard threads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "handshake.h"
#include "http.h"
#include "conn_rt.h"
#include "http_serve.h"
#include "mem.h"
#include "namespace.h"
#include "pubsub.h"
#include "presence_redis.h"
#include "pubsub_proto.h"
#include "api.h"
#include "sendq.h"
#include "session.h"
#include "token.h"
#include "sse.h"

#define RC_PROTO_OUT_LIMIT 512
#define RC_PUBLISH_BATCH_LIMIT 256
#define RESERVED_REASON "topics ringcast.* are the gateway's own: clients may not publish there"

static void send_text(struct rc_conn *c, const char *p, size_t len)
{
	if (len)
		(void)rc_conn_send(c, p, len, false);
}

static void send_error(struct rc_conn *c, enum rc_envelope_err code, const char *reason)
{
	char out[RC_PROTO_OUT_LIMIT];
	if (!reason)
		reason = rc_envelope_err_reason(code);
	send_text(c, out, rc_envelope_write_error(out, sizeof(out), code, reason));
}

static void send_ack(struct rc_conn *c, enum rc_envelope_op of, const char *topic, size_t len,
		     uint64_t seq, uint64_t epoch, const char *id, size_t id_len)
{
	char out[RC_PROTO_OUT_LIMIT];
	send_text(c, out,
		  rc_envelope_write_ack(out, sizeof(out), of, topic, len, seq, epoch, id, id_len));
}

void rc_proto_subscribed(struct rc_conn *c, const char *topic, size_t len, uint64_t seq,
			 uint64_t epoch, bool reset)
{
	char out[RC_PROTO_OUT_LIMIT];
	if (!reset) {
		send_ack(c, RC_ENVELOPE_OP_SUB, topic, len, seq, epoch, NULL, 0);
		return;
	}
	/* Without an epoch (the owner ran out of memory) a reset could not be acted on. */
	if (!epoch) {
		send_error(c, RC_ENVELOPE_ERR_INTERNAL, NULL);
		return;
	}
	send_text(c, out, rc_envelope_write_reset(out, sizeof(out), topic, len, epoch, seq));
}

void rc_proto_gap(struct rc_conn *c, const char *topic, size_t len, uint64_t from, uint64_t to,
		  uint64_t epoch)
{
	char out[RC_PROTO_OUT_LIMIT];
	RC_ASSERT(epoch != 0); /* a gap comes from a topic's history, which has its epoch */
	send_text(c, out, rc_envelope_write_gap(out, sizeof(out), topic, len, from, to, epoch));
}

/* A per-shard buffer for parsed publish data, grown to the largest message seen. */
static char *data_buf(struct rc_shard *s, size_t need)
{
	return rc_grow(s, (void **)&s->scratch, &s->scratch_cap, need);
}

/* ---- WebSocket clients -------------------------------------------------------------------- */
static bool subscribed(const struct rc_conn *c, const struct rc_envelope *e)
{
	for (struct rc_sub *sub = c->subs; sub; sub = sub->conn_next)
		if (sub->topic->node.name_len == e->topic_len &&
		    memcmp(sub->topic->node.name, e->topic, e->topic_len) == 0)
			return true;
	return false;
}

/* Subscribes c to topic[0..len) resuming per r; a refusal is answered with an error. The
 * owner answers the rest (subscribed hook): only it knows the topic's seq and epoch. */
static void subscribe(struct rc_conn *c, const char *topic, size_t len, const struct rc_resume *r)
{
	int rc = rc_pubsub_subscribe(c, topic, len, r);
	RC_ASSERT(rc != 0);
	if (rc > 0)
		return;
	if (rc == -EEXIST)
		send_error(c, RC_ENVELOPE_ERR_ALREADY_SUBSCRIBED, NULL);
	else if (rc == -E2BIG)
		send_error(c, RC_ENVELOPE_ERR_SUBSCRIPTION_LIMIT, NULL);
	else if (rc == -EINVAL)
		send_error(c, RC_ENVELOPE_ERR_TOPIC, NULL);
	else if (rc == -EBUSY)
		send_error(c, RC_ENVELOPE_ERR_BUSY, "topic limit reached");
	else if (rc == -EAGAIN)
		send_error(c, RC_ENVELOPE_ERR_BUSY, "new topics too fast");
	else if (rc == -ENOBUFS)
		send_error(c, RC_ENVELOPE_ERR_BUSY, "memory budget");
	else if (rc < 0)
		send_error(c, RC_ENVELOPE_ERR_INTERNAL, NULL);
}

/* True if c opened without a token where tokens are required (an anonymous namespace). */
static bool anonymous(const struct rc_conn *c)
{
	return c->shard->app->auth && !rc_token_rights(c);
}

/*
 * Who may publish over WebSocket: the topic's namespace if it says (nobody, subscribers,
 * any), else client_publish and the token's pubs. Anonymous clients only where their
 * namespace lets them in.
 */
static bool may_publish(struct rc_conn *c, const struct rc_envelope *e)
{
	const struct rc_app *app = c->shard->app;
	const struct rc_namespace *ns = rc_namespace_of(app->namespaces, e->topic, e->topic_len);
	if (anonymous(c) && !(ns && ns->anonymous))
		return false;
	switch (ns ? ns->publish : RC_NS_PUBLISH_INHERIT) {
	case RC_NS_PUBLISH_NOBODY: return false;
	case RC_NS_PUBLISH_SUBSCRIBERS: return subscribed(c, e);
	case RC_NS_PUBLISH_ANY: return true;
	case RC_NS_PUBLISH_INHERIT: break;
	}
	if (app->client_publish == RC_CLIENT_PUBLISH_NONE)
		return false;
	if (app->auth && !rc_jwt_rights_allow(rc_token_rights(c), true, e->topic, e->topic_len))
		return false;
	return app->client_publish == RC_CLIENT_PUBLISH_ANY || subscribed(c, e);
}

/* Whether c's token (none: anonymous) lets it subscribe to topic[0..len) in namespace ns. */
static bool rights_allow_sub(const struct rc_conn *c, const struct rc_namespace *ns,
			     const char *topic, size_t len)
{
	const struct rc_jwt_rights *r = rc_token_rights(c);
	if (!r)
		return ns && ns->anonymous;
	/* A private namespace needs a right the token states, not one it leaves open. */
	if (ns && ns->is_private && !r->has_subs)
		return false;
	return rc_jwt_rights_allow(r, false, topic, len);
}

/*
 * Whether c may subscribe to e's topic: by its token's subs (and its topic's namespace), or
 * by the channel token e carries (for this topic and c's subject). RC_JWT_ok,
 * RC_JWT_RESULT_COUNT when it has no right to it, or why the channel token was refused
 * (counted).
 */
static enum rc_jwt_result may_subscribe(struct rc_conn *c, const struct rc_envelope *e)
{
	struct rc_shard *s = c->shard;
	struct rc_jwt_claims cl;
	if (!s->app->auth)
		return RC_JWT_ok;
	if (!e->token) {
		const struct rc_namespace *ns =
			rc_namespace_of(s->app->namespaces, e->topic, e->topic_len);
		return rights_allow_sub(c, ns, e->topic, e->topic_len) ? RC_JWT_ok : RC_JWT_RESULT_COUNT;
	}
	enum rc_jwt_result r = rc_token_verify(s, e->token, e->token_len, &cl);
	if (r != RC_JWT_ok)
		return r;
	if (strcmp(cl.channel, e->topic) != 0)
		r = RC_JWT_channel;
	else if (strcmp(cl.rights->sub, rc_conn_subject(c)) != 0)
		r = RC_JWT_subject;
	if (r != RC_JWT_ok)
		rc_token_count_failure(s, r);
	rc_jwt_rights_free(cl.rights);
	return r;
}

/* A personal topic "#<sub>" is its user's alone: no right or channel token opens another's. */
static bool own_personal(const struct rc_conn *c, const struct rc_envelope *e)
{
	const char *sub = rc_conn_subject(c);
	return sub[0] && strlen(sub) == e->topic_len - 1 &&
	       memcmp(sub, e->topic + 1, e->topic_len - 1) == 0;
}

static void on_sub(struct rc_conn *c, const struct rc_envelope *e)
{
	enum rc_jwt_result allowed = RC_JWT_RESULT_COUNT;
	if (!rc_topic_personal(e->topic, e->topic_len))
		allowed = may_subscribe(c, e);
	else if (own_personal(c, e))
		allowed = RC_JWT_ok;
	if (allowed == RC_JWT_RESULT_COUNT) {
		c->shard->stats.subscribes_forbidden++;
		send_error(c, RC_ENVELOPE_ERR_FORBIDDEN, "the access token does not allow this topic");
		return;
	}
	if (allowed != RC_JWT_ok) {
		c->shard->stats.subscribes_forbidden++;
		send_error(c, RC_ENVELOPE_ERR_TOKEN, rc_jwt_result_reason(allowed));
		return;
	}
	struct rc_resume r = {e->has_since, e->since, e->has_epoch, e->epoch};
	subscribe(c, e->topic, e->topic_len, &r);
}
static void on_pub(struct rc_conn *c, const struct rc_envelope *e)
{
	if (rc_topic_reserved(e->topic, e->topic_len)) {
		c->shard->stats.publishes_forbidden++;
		send_error(c, RC_ENVELOPE_ERR_FORBIDDEN, RESERVED_REASON);
		return;
	}
	if (!may_publish(c, e)) {
		c->shard->stats.publishes_forbidden++;
		send_error(c, RC_ENVELOPE_ERR_FORBIDDEN, "publishing to this topic is not allowed");
		return;
	}
	int rc = rc_pubsub_publish(c->shard->app, e->topic, e->topic_len, e->data, e->data_len,
				   e->id, e->id_len, RC_REPLY_WS, c, 0);
	if (rc == -EINVAL)
		send_error(c, RC_ENVELOPE_ERR_TOPIC, NULL);
	else if (rc == -EBUSY)
		send_error(c, RC_ENVELOPE_ERR_BUSY, "cross-shard queues full");
	else if (rc < 0)
		send_error(c, RC_ENVELOPE_ERR_BUSY, NULL);
}

/* A presence query: only a subscriber of a topic whose namespace keeps presence may ask. The
 * owner answers through the presence hook. */
static void on_presence(struct rc_conn *c, const struct rc_envelope *e, bool stats_only)
{
	const struct rc_namespace *ns =
		rc_namespace_of(c->shard->app->namespaces, e->topic, e->topic_len);
	if (!ns || !ns->presence) {
		send_error(c, RC_ENVELOPE_ERR_FORBIDDEN, "presence is off for this topic");
		return;
	}
	if (!subscribed(c, e)) {
		send_error(c, RC_ENVELOPE_ERR_FORBIDDEN, "presence is for the topic's subscribers");
		return;
	}
	if (rc_pubsub_presence(c, e->topic, e->topic_len, stats_only, RC_REPLY_WS, 0) != 0)
		send_error(c, RC_ENVELOPE_ERR_INTERNAL, NULL);
}

/* A new token for c: same subject, no channel; its rights and expiry replace the old. */
static void on_refresh(struct rc_conn *c, const struct rc_envelope *e)
{
	struct rc_shard *s = c->shard;
	struct rc_jwt_claims cl;
	if (!s->app->auth) {
		send_error(c, RC_ENVELOPE_ERR_TOKEN, "authentication is off: nothing to refresh");
		return;
	}
	enum rc_jwt_result r = rc_token_verify(s, e->token, e->token_len, &cl);
	if (r == RC_JWT_ok && (cl.channel[0] || strcmp(cl.rights->sub, rc_conn_subject(c)) != 0)) {
		r = cl.channel[0] ? RC_JWT_channel : RC_JWT_subject;
		rc_token_count_failure(s, r);
		rc_jwt_rights_free(cl.rights);
	}
	if (r != RC_JWT_ok) {
		send_error(c, RC_ENVELOPE_ERR_TOKEN, rc_jwt_result_reason(r));
		return;
	}
	rc_token_conn_set(c, &cl, true);
	rc_conn_token_renewed(c);
	s->stats.token_refreshes++;
	send_ack(c, RC_ENVELOPE_OP_REFRESH, NULL, 0, 0, 0, NULL, 0);
}

/* json_depth_max and json_elements_max, checked before cJSON builds a tree; a refusal is
 * counted. */
static bool json_within(struct rc_conn *c, const void *data, size_t len, const char **reason)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	if (rc_envelope_json_within(data, len, (uint32_t)cfg->json_depth_max,
				    (uint32_t)cfg->json_elements_max, reason))
		return true;
	c->shard->stats.json_limit_rejects++;
	c->shard->stats.protocol_rejects++;
	return false;
}

void rc_proto_on_open(struct rc_conn *c, void *ctx)
{
	char topic[RC_TOPIC_BYTES_LIMIT + 1];
	const char *sub = rc_conn_subject(c);
	(void)ctx;
	if (!sub[0])
		return; /* anonymous, or authentication off */
	int n = snprintf(topic, sizeof(topic), "#%s", sub);
	/* Silently: the client knows its user id, and messages name the topic. */
	if (n < 0 || (size_t)n >= sizeof(topic) ||
	    rc_pubsub_subscribe(c, topic, (size_t)n, NULL) != 0)
		c->shard->stats.personal_topic_failures++;
}

void rc_proto_on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	struct rc_envelope e;
	const char *reason = NULL;

	(void)ctx;
	if (binary) {
		send_error(c, RC_ENVELOPE_ERR_JSON, "the protocol uses text frames");
		return;
	}
	if (!json_within(c, data, len, &reason)) {
		send_error(c, RC_ENVELOPE_ERR_JSON, reason);
		return;
	}
	char *buf = data_buf(c->shard, len + 1);
	if (!buf) {
		send_error(c, RC_ENVELOPE_ERR_INTERNAL, NULL);
		return;
	}
	enum rc_envelope_err err = rc_envelope_parse(data, len, &e, buf, len + 1, &reason);
	if (err != RC_ENVELOPE_OK) {
		c->shard->stats.protocol_rejects++;
		send_error(c, err, reason);
		return;
	}
	switch (e.op) {
	case RC_ENVELOPE_OP_SUB: on_sub(c, &e); break;
	case RC_ENVELOPE_OP_UNSUB:
		if (rc_pubsub_unsubscribe(c, e.topic, e.topic_len) == 0)
			send_ack(c, RC_ENVELOPE_OP_UNSUB, e.topic, e.topic_len, 0, 0, NULL, 0);
		else
			send_error(c, RC_ENVELOPE_ERR_NOT_SUBSCRIBED, NULL);
		break;
	case RC_ENVELOPE_OP_PUB: on_pub(c, &e); break;
	case RC_ENVELOPE_OP_PING: send_text(c, "{\"op\":\"pong\"}", 13); break;
	case RC_ENVELOPE_OP_REFRESH: on_refresh(c, &e); break;
	case RC_ENVELOPE_OP_PRESENCE: on_presence(c, &e, false); break;
	case RC_ENVELOPE_OP_PRESENCE_STATS: on_presence(c, &e, true); break;
	default: send_error(c, RC_ENVELOPE_ERR_UNKNOWN_OP, NULL); break;
	}
}

/* ---- GET /sse ----------------------------------------------------------------------------- */
/* Answers a GET /sse that cannot stream: 400 with reason, counted. */
static void sse_refuse(struct rc_conn *c, const char *reason)
{
	char out[512];
	c->shard->stats.sse_refused++;
	size_t n = rc_handshake_write_error(out, sizeof(out), 400, reason);
	rc_conn_http_reply(c, out, n, RC_CLOSE_handshake_rejected, false);
}

void rc_proto_sse_open(struct rc_conn *c, struct rc_slice query, struct rc_slice last_event_id)
{
	char head[512], cors[RC_CORS_HEADERS_MAX];
	struct rc_shard *s = c->shard;
	struct rc_sse_request req;
	const char *reason = NULL;
	char *buf = data_buf(s, query.len + 1);
	RC_ASSERT(c->state == RC_CONN_HTTP && c->pend == NULL && c->http_pub == NULL);
	if (!buf || rc_sse_parse(query, last_event_id, buf, query.len + 1, &req, &reason) != 0) {
		sse_refuse(c, buf ? reason : "out of memory");
		return;
	}
	if (req.count > s->app->cfg.subscriptions_per_connection_max) {
		sse_refuse(c, "more topics than subscriptions_per_connection_max");
		return;
	}
	rc_conn_cors_headers(c, cors, sizeof(cors)); /* "" without */
	int hlen = snprintf(head, sizeof(head),
			    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			    "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n%s\r\n",
			    cors);
	RC_ASSERT(hlen > 0 && (size_t)hlen < sizeof(head));
	if (rc_conn_send_raw(c, head, (size_t)hlen) != 0) {
		rc_conn_terminate(c, RC_CLOSE_handshake_rejected);
		return;
	}
	c->state = RC_CONN_OPEN;
	c->flags |= RC_CF_SSE;
	c->endpoint = (uint8_t)s->app->pubsub_ws;
	rc_ws_asm_init(&c->ws); /* holds nothing: a stream reads no frames */
	s->stats.sse_open++;
	s->stats.sse_streams++;
	rc_conn_opened(c);
	for (uint32_t i = 0; i < req.count && c->state == RC_CONN_OPEN; i++) {
		const struct rc_sse_topic *t = &req.topics[i];
		const struct rc_namespace *ns =
			rc_namespace_of(s->app->namespaces, t->name.p, t->name.len);
		struct rc_resume r = {t->has_since, t->since, t->has_epoch, t->epoch};
		/* The stream's token, as for a sub over /ws (no channel tokens in a URL). */
		if (s->app->auth && !rights_allow_sub(c, ns, t->name.p, t->name.len)) {
			s->stats.subscribes_forbidden++;
			send_error(c, RC_ENVELOPE_ERR_FORBIDDEN,
				   "the access token does not allow this topic");
			continue;
		}
		subscribe(c, t->name.p, t->name.len, &r);
	}
}

/* ---- POST /publish ------------------------------------------------------------------------ */
/* What a connection waits for while its publish request is being sequenced (c->http_pub). */
/* ---- POST /publish and the server API's waiting answers ---------------------------------- */
/* What a connection waits for while its publish request is being sequenced, or its query
 * answered by a topic's owner (c->http_pub). */
struct rc_http_pub {
	uint32_t count;
	uint32_t pending;
	bool batch;
	bool keep_alive;
	bool api;  /* the server API's: errors as {"error":{...}} */
	bool busy; /* an item was refused (topics_max), or a shard's answer was lost: 503 */
	char *acc; /* answers gathered from several shards (topics), charged as http */
	size_t acc_len;
	uint64_t seq[RC_PUBLISH_BATCH_LIMIT];
	bool duplicate[RC_PUBLISH_BATCH_LIMIT];
};

/* A waiting publish request's record, charged to the budget (http) from its request to its
 * answer or its connection's end: NULL when the budget or memory refuses. */
static struct rc_http_pub *http_pub_new(struct rc_shard *s)
{
	if (!rc_mem_try_charge(s->app, RC_BUDGET_http, sizeof(struct rc_http_pub)))
		return NULL;
	struct rc_http_pub *hp = calloc(1, sizeof(*hp));
	if (!hp)
		rc_mem_release(s->app, RC_BUDGET_http, sizeof(*hp));
	return hp;
}

static void http_pub_free(struct rc_shard *s, struct rc_http_pub *hp)
{
	if (!hp)
		return;
	rc_mem_release(s->app, RC_BUDGET_http, sizeof(*hp) + hp->acc_len);
	free(hp->acc);
	free(hp);
}

/* Appends text[0..len) to hp's gathered answers within the budget; false if refused. */
static bool gather(struct rc_shard *s, struct rc_http_pub *hp, const char *text, size_t len)
{
	if (!len || !rc_mem_try_charge(s->app, RC_BUDGET_http, len))
		return false;
	char *acc = realloc(hp->acc, hp->acc_len + len);
	if (!acc) {
		rc_mem_release(s->app, RC_BUDGET_http, len);
		return false;
	}
	memcpy(acc + hp->acc_len, text, len);
	hp->acc = acc;
	hp->acc_len += len;
	return true;
}

void rc_proto_conn_closed(struct rc_conn *c, bool http)
{
	if (!http)
		return;
	http_pub_free(c->shard, c->http_pub);
	c->http_pub = NULL;
}

void rc_proto_http_answer(struct rc_conn *c, int status, const char *body, size_t len,
			  bool keep_alive)
{
	char *resp = malloc(len + 256);
	size_t n = resp ? rc_http_write_response(resp, len + 256, (uint16_t)status,
						 "application/json", NULL, body, len, keep_alive)
			: 0;
	rc_conn_http_reply(c, resp, n, RC_CLOSE_http_done, keep_alive);
	free(resp);
}

/* An error answer, which closes the connection: the envelope's error, or for the server API
 * (api) {"error":{"code":status,"reason":...}}. */
static void http_fail(struct rc_conn *c, int status, enum rc_envelope_err code,
		      const char *reason, bool api)
{
	char out[RC_PROTO_OUT_LIMIT];
	if (!reason)
		reason = rc_envelope_err_reason(code);
	size_t len = api ? rc_api_write_error(out, sizeof(out), status, reason)
			 : rc_envelope_write_error(out, sizeof(out), code, reason);
	rc_proto_http_answer(c, status, out, len, false);
}

/* Why an owner refused a publish: the engine (Redis) did not take it, or topics_max. */
static const char *refusal(const struct rc_conn *c)
{
	return c->shard->app->engine ? "not stored (Redis unavailable or busy, or topic limit)"
				     : "topic limit reached";
}

static void http_done(struct rc_conn *c, struct rc_http_pub *hp)
{
	char reason[96];
	if (hp->busy) {
		/* The others were sequenced: a retry with the same ids is deduplicated. */
		snprintf(reason, sizeof(reason), "%s: retry with ids", refusal(c));
		http_fail(c, 503, RC_ENVELOPE_ERR_BUSY, reason, hp->api);
		return;
	}
	size_t cap = rc_envelope_published_max(hp->count);
	char *out = malloc(cap);
	if (!out) {
		rc_conn_terminate(c, RC_CLOSE_http_done);
		return;
	}
	size_t len = rc_envelope_write_published(out, cap, hp->batch, hp->seq, hp->duplicate,
						 hp->count);
	RC_ASSERT(len > 0);
	rc_proto_http_answer(c, 200, out, len, hp->keep_alive);
	free(out);
}

/* c's waiting request hp was answered: requests that arrived meanwhile are parsed at the next
 * flush, not from inside the publish or query that may still be on the stack. */
static void http_release(struct rc_conn *c, struct rc_http_pub *hp)
{
	c->http_pub = NULL;
	http_pub_free(c->shard, hp);
	if (c->pend && c->state == RC_CONN_HTTP) {
		c->flags |= RC_CF_HTTP_RESUME;
		rc_conn_mark_dirty(c);
	}
}

int rc_proto_http_wait(struct rc_conn *c, bool keep_alive, uint32_t answers)
{
	struct rc_http_pub *hp = http_pub_new(c->shard);
	if (!hp)
		return -ENOMEM;
	RC_ASSERT(c->http_pub == NULL && answers > 0);
	hp->count = hp->pending = answers;
	hp->keep_alive = keep_alive;
	hp->api = true;
	c->http_pub = hp;
	return 0;
}

void rc_proto_answer(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *text,
		     size_t len)
{
	(void)tag;
	if (reply == RC_REPLY_WS && c->state == RC_CONN_OPEN) {
		if (len)
			send_text(c, text, len);
		else
			send_error(c, RC_ENVELOPE_ERR_INTERNAL, NULL);
		return;
	}
	struct rc_http_pub *hp = c->http_pub;
	if (reply != RC_REPLY_HTTP || c->state != RC_CONN_HTTP || !hp || !hp->api)
		return;
	if (hp->count > 1) {
		/* One of several shards' answers (topics): merged once the last one came. */
		hp->busy |= !gather(c->shard, hp, text, len);
		if (--hp->pending)
			return;
		if (!hp->busy && c->shard->app->engine) {
			/* With Redis, the other nodes' topics join them: one answer more. */
			hp->count = hp->pending = 1;
			rc_xnode_topics(c, hp->acc, hp->acc_len);
			return;
		}
		text = hp->busy ? NULL : rc_api_write_topics(hp->acc, hp->acc_len, &len);
	}
	if (text && len)
		rc_proto_http_answer(c, 200, text, len, hp->keep_alive);
	else
		http_fail(c, 503, RC_ENVELOPE_ERR_INTERNAL, NULL, true);
	if (hp->count > 1)
		free((char *)text);
	http_release(c, hp);
}

void rc_proto_unsubscribed(struct rc_conn *c, const char *topic, size_t len)
{
	char out[RC_PROTO_OUT_LIMIT];
	int n = snprintf(out, sizeof(out), "{\"op\":\"unsubscribed\",\"topic\":\"%.*s\"}",
			 (int)len, topic);
	if (c->state == RC_CONN_OPEN && n > 0 && (size_t)n < sizeof(out))
		send_text(c, out, (size_t)n);
}

void rc_proto_published(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *topic,
			size_t len, uint64_t seq, uint64_t epoch, bool duplicate, bool busy,
			const char *id, size_t id_len)
{
	if (reply == RC_REPLY_WS) {
		/* A duplicate is acknowledged without a seq: it was sequenced before. */
		if (c->state == RC_CONN_OPEN && busy)
			send_error(c, RC_ENVELOPE_ERR_BUSY, refusal(c));
		else if (c->state == RC_CONN_OPEN)
			send_ack(c, RC_ENVELOPE_OP_PUB, topic, len, duplicate ? 0 : seq, epoch, id,
				 id_len);
		return;
	}
	if (c->state != RC_CONN_HTTP)
		return;
	struct rc_http_pub *hp = c->http_pub;
	if (!hp || tag >= hp->count || hp->pending == 0)
		return;
	hp->seq[tag] = duplicate ? 0 : seq;
	hp->duplicate[tag] = duplicate;
	hp->busy |= busy;
	if (--hp->pending == 0) {
		c->http_pub = NULL;
		http_done(c, hp);
		http_release(c, hp);
	}
}

/*
 * Why c may not publish one of items[0..n): a reserved topic (the gateway's own feeds are
 * published through rc_publish, never over HTTP) or, but for the server API (api), one its
 * token's pubs do not allow. The
 * refusal is counted; NULL if every item may go.
 */
static const char *item_refused(struct rc_conn *c, const struct rc_envelope *items, uint32_t n,
				bool api)
{
	const struct rc_app *app = c->shard->app;
	for (uint32_t i = 0; i < n; i++) {
		const char *why = NULL;
		if (rc_topic_reserved(items[i].topic, items[i].topic_len))
			why = RESERVED_REASON;
		else if (!api && app->auth &&
			 !rc_jwt_rights_allow(rc_token_rights(c), true, items[i].topic,
					      items[i].topic_len))
			why = "the access token's pubs do not allow this topic";
		if (why) {
			c->shard->stats.publishes_forbidden++;
			return why;
		}
	}
	return NULL;
}

/* A publish body's items: one object or a batch, or a broadcast (one message, many topics). */
static enum rc_envelope_err parse_items(const char *body, size_t len, bool broadcast,
					struct rc_envelope *items, uint32_t *n, char *buf,
					const char **reason)
{
	size_t cap = len + RC_PUBLISH_BATCH_LIMIT + 1;
	if (broadcast)
		return rc_envelope_parse_broadcast(body, len, items, RC_PUBLISH_BATCH_LIMIT, n, buf,
						   cap, reason);
	return rc_envelope_parse_publish(body, len, items, RC_PUBLISH_BATCH_LIMIT, n, buf, cap,
					 reason);
}

/* True if body[0..len) is a JSON array (a batch, answered with results). */
static bool is_batch(const char *body, size_t len)
{
	size_t lead = 0;
	while (lead < len && (body[lead] == ' ' || body[lead] == '\t' || body[lead] == '\r' ||
			      body[lead] == '\n'))
		lead++;
	return lead < len && body[lead] == '[';
}

/*
 * Publishes what body[0..len) holds for c's HTTP request; the answer waits until every item
 * is sequenced. api: the server API (no token rights; errors as {"error":...}); broadcast:
 * its body is one message for many topics.
 */
static void http_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive,
			 bool api, bool broadcast)
{
	const char *reason = NULL;
	uint32_t n = 0;
	/* Past the memory budget's soft mark a publish request is new work like a new
	 * connection: refused, so the backend retries elsewhere or later (Retry-After). */
	if (c->shard->mem_level >= RC_BUDGET_SOFT) {
		c->shard->stats.publishes_refused++;
		http_fail(c, 503, RC_ENVELOPE_ERR_BUSY, "memory budget", api);
		return;
	}
	struct rc_envelope *items = calloc(RC_PUBLISH_BATCH_LIMIT, sizeof(*items));
	struct rc_http_pub *hp = http_pub_new(c->shard);
	char *buf = data_buf(c->shard, len + RC_PUBLISH_BATCH_LIMIT + 1);
	enum rc_envelope_err err = RC_ENVELOPE_ERR_INTERNAL;
	int status = 503;
	if (!items || !hp || !buf)
		goto fail;
	err = RC_ENVELOPE_ERR_JSON;
	status = 400;
	if (!json_within(c, body, len, &reason))
		goto fail;
	err = parse_items(body, len, broadcast, items, &n, buf, &reason);
	status = err == RC_ENVELOPE_ERR_DATA_TOO_LARGE ? 413 : 400;
	if (err != RC_ENVELOPE_OK)
		goto fail;
	err = RC_ENVELOPE_ERR_FORBIDDEN;
	status = 403;
	if ((reason = item_refused(c, items, n, api)) != NULL)
		goto fail;
	*hp = (struct rc_http_pub){.count = n, .pending = n, .keep_alive = keep_alive, .api = api,
				   .batch = broadcast || is_batch(body, len)};
	/* Outboxes full towards an owner: refused whole, before anything is sequenced. */
	err = RC_ENVELOPE_ERR_BUSY;
	status = 503;
	reason = "cross-shard queues full";
	for (uint32_t i = 0; i < n; i++)
		if (rc_pubsub_busy(c->shard, c->shard->app,
				   rc_topic_hash(items[i].topic, items[i].topic_len)))
			goto fail;
	RC_ASSERT(c->http_pub == NULL);
	c->http_pub = hp;
	hp = NULL;
	for (uint32_t i = 0; i < n; i++) {
		/* Topic names were validated by the parser: only allocation can fail here, and
		 * such an item is answered as not sequenced (seq 0). */
		if (rc_pubsub_publish(c->shard->app, items[i].topic, items[i].topic_len,
				      items[i].data, items[i].data_len, items[i].id, items[i].id_len,
				      RC_REPLY_HTTP, c, i) != 0)
			rc_proto_published(c, RC_REPLY_HTTP, i, items[i].topic, items[i].topic_len, 0,
					   0, true, false, NULL, 0);
	}
	goto out;
fail:
	http_fail(c, status, err, reason, api);
out:
	free(items);
	http_pub_free(c->shard, hp);
}

void rc_proto_http_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive)
{
	http_publish(c, body, len, keep_alive, false, false);
}

void rc_proto_api_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive,
			  bool broadcast)
{
	http_publish(c, body, len, keep_alive, true, broadcast);
}

/* ---- the public topic API ---------------------------------------------------------------- */
int rc_publish(struct rc_app *app, const char *topic, size_t topic_len, const char *data,
	       size_t data_len, const char *id)
{
	return rc_pubsub_publish(app, topic, topic_len, data, data_len, id, id ? strlen(id) : 0,
				 RC_REPLY_NONE, NULL, 0);
}

int rc_conn_subscribe(struct rc_conn *c, const char *topic, size_t topic_len)
{
	return rc_pubsub_subscribe(c, topic, topic_len, NULL);
}

int rc_conn_unsubscribe(struct rc_conn *c, const char *topic, size_t topic_len)
{
	return rc_pubsub_unsubscribe(c, topic, topic_len);
}
