/*
 * What a connection does with received bytes: the HTTP request (upgrade or plain HTTP
 * endpoint) while in RC_CONN_HTTP, then WebSocket frames. Bytes are parsed in place in the
 * provided buffer; only an incomplete request or frame is copied into c->pend, and only the
 * fragments of an unfinished message into c->msg, both freed as soon as they complete.
 * Shard thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handshake.h"
#include "http.h"
#include "runtime.h"
#include "utf8.h"

#define RC_HTTP_OUT_LIMIT (256u * 1024u)

/* Grows *bp to hold at least need bytes (geometrically, never past max). */
static int buf_reserve(struct rc_buf **bp, size_t need, size_t max)
{
	struct rc_buf *b = *bp;
	size_t cap = b ? b->cap : 0;
	if (b && need + RC_PMD_TAIL_ROOM <= cap)
		return 0;
	if (need > max)
		return -EMSGSIZE;
	/* Tail room lets rc_pmd_inflate() append the stripped 00 00 ff ff in place. */
	size_t ncap = RC_MAX(need, RC_MIN(RC_MAX(cap * 2, (size_t)256), max)) + RC_PMD_TAIL_ROOM;
	struct rc_buf *nb = realloc(b, sizeof(*nb) + ncap);
	if (!nb)
		return -ENOMEM;
	if (!b) {
		nb->len = 0;
		nb->flags = 0;
	}
	nb->cap = (uint32_t)ncap;
	*bp = nb;
	return 0;
}

static int buf_append(struct rc_buf **bp, const uint8_t *p, size_t n, size_t max)
{
	size_t len = *bp ? (*bp)->len : 0;
	int rc = buf_reserve(bp, len + n, max);
	if (rc)
		return rc;
	memcpy((*bp)->data + len, p, n);
	(*bp)->len = (uint32_t)(len + n);
	return 0;
}

/* ---- HTTP --------------------------------------------------------------------------------- */
/*
 * Queues an HTTP response. With keep_alive the connection waits for its next request (up to
 * handshake_timeout_ms); otherwise it closes once the response is sent.
 */
void rc_conn_http_reply(struct rc_conn *c, const char *resp, size_t len, enum rc_close_reason why,
			bool keep_alive)
{
	c->close_reason = (uint8_t)why;
	if (!keep_alive)
		c->flags |= RC_CF_FLUSH_CLOSE;
	if (len == 0 || rc_conn_send_raw(c, resp, len) != 0) {
		rc_conn_terminate(c, why);
		return;
	}
	rc_conn_mark_dirty(c);
	if (keep_alive)
		rc_conn_http_idle(c);
}

static void http_reply(struct rc_conn *c, const char *resp, size_t len, enum rc_close_reason why)
{
	rc_conn_http_reply(c, resp, len, why, false);
}

static void http_error(struct rc_conn *c, int status, const char *reason)
{
	char out[512];
	size_t len = rc_handshake_write_error(out, sizeof(out), status, reason);
	http_reply(c, out, len, RC_CLOSE_handshake_rejected);
}

static int find_ws(const struct rc_app *app, struct rc_slice path)
{
	for (int i = 0; i < app->ws_count; i++)
		if (rc_slice_eq(path, app->ws[i].path))
			return i;
	return -1;
}

static const char *method_name(uint8_t m)
{
	static const char *names[] = {"OTHER", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"};
	return m < RC_ARRAY_LEN(names) ? names[m] : "OTHER";
}

static void serve_http(struct rc_conn *c, const struct rc_http_request *req)
{
	struct rc_app *app = c->shard->app;
	char hdrs[96];
	if (find_ws(app, req->path) >= 0) {
		snprintf(hdrs, sizeof(hdrs), "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
		static const char body[] = "this endpoint speaks WebSocket only\n";
		char out[512];
		size_t len = rc_http_write_response(out, sizeof(out), 426, "text/plain", hdrs, body,
						    sizeof(body) - 1, false);
		http_reply(c, out, len, RC_CLOSE_http_done);
		return;
	}
	if (app->publish_path[0] && rc_slice_eq(req->path, app->publish_path)) {
		if (req->method != RC_HTTP_POST) {
			http_error(c, 405, "use POST");
			return;
		}
		bool may_publish;
		const char *reason = NULL;
		int status = rc_conn_authorize(c, req, &may_publish, &reason);
		if (status == 0 && !may_publish) {
			status = 403;
			reason = "the access token does not allow publishing";
		}
		if (status != 0) {
			http_error(c, status, reason);
			return;
		}
		rc_proto_http_publish(c, req->body.p, req->body.len, req->keep_alive);
		return;
	}
	const struct rc_http_endpoint *ep = NULL;
	for (int i = 0; i < app->http_count; i++)
		if (rc_slice_eq(req->path, app->http[i].path))
			ep = &app->http[i];
	if (!ep) {
		http_error(c, 404, "no such endpoint");
		c->close_reason = RC_CLOSE_http_done;
		return;
	}
	char *body = malloc(RC_HTTP_OUT_LIMIT), *resp = malloc(RC_HTTP_OUT_LIMIT + 1024);
	char path[256], query[256];
	snprintf(path, sizeof(path), "%.*s", (int)req->path.len, req->path.p);
	snprintf(query, sizeof(query), "%.*s", (int)req->query.len, req->query.p);
	size_t body_len = RC_HTTP_OUT_LIMIT, len = 0;
	if (body && resp) {
		struct rc_http_call call = {
			method_name(req->method), path, query, req->body.p, req->body.len,
			c->shard->index};
		const char *ctype = "text/plain; charset=utf-8";
		int status = ep->fn(&call, body, &body_len, &ctype, ep->ctx);
		len = rc_http_write_response(resp, RC_HTTP_OUT_LIMIT + 1024, (uint16_t)status,
					     ctype, NULL, body, body_len, req->keep_alive);
	}
	rc_conn_http_reply(c, resp, len, RC_CLOSE_http_done, req->keep_alive && len);
	free(body);
	free(resp);
}

/* The token of a request: ?token=... (browsers cannot set headers) or Authorization: Bearer. */
static struct rc_slice token_of(const struct rc_http_request *req)
{
	struct rc_slice q = req->query, none = {NULL, 0};
	for (uint32_t i = 0; i < q.len;) {
		uint32_t end = i;
		while (end < q.len && q.p[end] != '&')
			end++;
		if (end - i > 6 && memcmp(q.p + i, "token=", 6) == 0)
			return (struct rc_slice){q.p + i + 6, end - i - 6};
		i = end + 1;
	}
	struct rc_slice a = req->authorization;
	if (a.len > 7 && strncasecmp(a.p, "Bearer ", 7) == 0)
		return (struct rc_slice){a.p + 7, a.len - 7};
	return none;
}

int rc_conn_authorize(struct rc_conn *c, const struct rc_http_request *req, bool *may_publish,
		      const char **reason)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	struct rc_auth_claims claims;
	*may_publish = true;
	if (!cfg->auth_secret[0])
		return 0;
	struct rc_slice t = token_of(req);
	if (!t.len) {
		*reason = "access token required (?token= or Authorization: Bearer)";
		return 401;
	}
	if (rc_auth_verify(t.p, t.len, (const uint8_t *)cfg->auth_secret, strlen(cfg->auth_secret),
			   rc_clock_unix_s(), &claims, reason) != 0)
		return 401;
	*may_publish = claims.may_publish;
	return 0;
}

static void ws_input(struct rc_conn *c, uint8_t *p, size_t n);

static void upgrade(struct rc_conn *c, const struct rc_http_request *req, uint8_t *rest,
		    size_t rest_len)
{
	struct rc_shard *s = c->shard;
	struct rc_app *app = s->app;
	int ep = find_ws(app, req->path);
	if (ep < 0) {
		http_error(c, 404, "no such endpoint");
		return;
	}
	struct rc_ws_policy pol = {app->origins, app->origins_count, app->subprotocols,
				   app->subprotocols_count, false};
	struct rc_ws_accept acc;
	const char *reason = NULL;
	bool may_publish = true;
	int status = rc_handshake_check(req, &pol, &acc, &reason);
	if (status == 0 && ep == app->pubsub_ws)
		status = rc_conn_authorize(c, req, &may_publish, &reason);
	if (status != 0) {
		http_error(c, status, reason);
		return;
	}
	if (may_publish)
		c->flags |= RC_CF_MAY_PUBLISH;
	char out[512], ext[RC_PMD_RESPONSE_LIMIT] = "";
	struct rc_pmd_params pmd;
	bool deflate = rc_pmd_negotiate(&req->ws_extensions, &app->pmd, &pmd, ext, sizeof(ext));
	size_t len = rc_handshake_write_101(out, sizeof(out), &acc, deflate ? ext : NULL);
	if (len == 0 || rc_conn_send_raw(c, out, len) != 0) {
		rc_conn_terminate(c, RC_CLOSE_handshake_rejected);
		return;
	}
	c->state = RC_CONN_OPEN;
	c->endpoint = (uint8_t)ep;
	c->flags |= RC_CF_APP_OPEN;
	if (deflate)
		c->flags |= RC_CF_DEFLATE;
	s->stats.websockets_open++;
	memset(&c->rx, 0, sizeof(c->rx));
	c->rate_tokens = (uint32_t)RC_MIN(app->cfg.messages_burst_max * 1000, UINT32_MAX);
	c->rate_tick = rc_shard_tick(s);
	rc_conn_opened(c);
	const struct rc_ws_handler *h = &app->ws[ep].h;
	if (h->on_open)
		h->on_open(c, h->ctx);
	if (rest_len && c->state == RC_CONN_OPEN)
		ws_input(c, rest, rest_len);
}

/*
 * Parses one request from p and answers it; returns the bytes it took (all of them after an
 * error or an upgrade, whose remaining bytes are frames), 0 if the request is incomplete.
 */
static size_t http_try(struct rc_conn *c, uint8_t *p, size_t n, bool *partial)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	struct rc_http_limits lim = {(uint32_t)cfg->header_bytes_max,
				     (uint32_t)cfg->body_bytes_max};
	struct rc_http_request req;
	size_t consumed = 0;
	uint16_t status = 0;
	const char *reason = NULL;

	enum rc_parse r =
		rc_http_parse((const char *)p, n, &lim, &req, &consumed, &status, &reason);
	*partial = r == RC_PARSE_PARTIAL;
	if (r == RC_PARSE_PARTIAL)
		return 0;
	c->shard->stats.http_requests++;
	if (r == RC_PARSE_FAIL) {
		http_error(c, status, reason);
		return n;
	}
	RC_ASSERT(consumed > 0 && consumed <= n);
	if (rc_handshake_is_upgrade(&req)) {
		upgrade(c, &req, p + consumed, n - consumed);
		return n;
	}
	serve_http(c, &req);
	return consumed;
}

/* A keep-alive connection may not start its next request before the last one is answered
 * (a publish being sequenced), nor after it asked to close. */
static bool http_ready(const struct rc_conn *c)
{
	return c->state == RC_CONN_HTTP && !c->msg && !(c->flags & RC_CF_FLUSH_CLOSE);
}

/* Answers every complete request in p, in order; returns the bytes left unparsed. */
static size_t http_serve_all(struct rc_conn *c, uint8_t *p, size_t n, bool *partial)
{
	*partial = false;
	/* Bounded by n: each answered request consumes at least one byte. */
	while (n > 0 && http_ready(c)) {
		size_t used = http_try(c, p, n, partial);
		if (used == 0)
			break;
		p += used;
		n -= used;
	}
	return n;
}

/* Keeps unparsed request bytes for later (bounded: one request's limits). */
static void http_stash(struct rc_conn *c, const uint8_t *p, size_t n)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	size_t max = cfg->header_bytes_max + cfg->body_bytes_max + 1;
	if (n && buf_append(&c->pend, p, n, max) != 0)
		http_error(c, 431, "request too large");
}

/* Parses what c->pend holds (a partial request, or requests that waited for an answer). */
void rc_conn_http_resume(struct rc_conn *c)
{
	bool partial;
	struct rc_buf *b = c->pend;
	if (!b || !http_ready(c))
		return;
	/* Detached while parsing: bytes after an upgrade may start a frame of their own. */
	c->pend = NULL;
	c->shard->rx_end = NULL; /* those bytes no longer sit in the receive buffer */
	size_t left = http_serve_all(c, b->data, b->len, &partial);
	if (c->state == RC_CONN_HTTP && !(c->flags & RC_CF_FLUSH_CLOSE))
		http_stash(c, b->data + b->len - left, left);
	free(b);
}

static void http_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	bool partial;
	if (!c->pend && http_ready(c)) {
		/* The common case: whole requests in one read, parsed in place. */
		size_t left = http_serve_all(c, p, n, &partial);
		if (c->state == RC_CONN_HTTP && !(c->flags & RC_CF_FLUSH_CLOSE))
			http_stash(c, p + n - left, left);
		return;
	}
	if (c->flags & RC_CF_FLUSH_CLOSE)
		return; /* the connection is closing after its response */
	http_stash(c, p, n);
	rc_conn_http_resume(c);
}

/* ---- WebSocket frames --------------------------------------------------------------------- */
static enum rc_close_reason reason_of(uint16_t code)
{
	switch (code) {
	case RC_WS_CLOSE_INVALID_DATA: return RC_CLOSE_invalid_data;
	case RC_WS_CLOSE_TOO_BIG: return RC_CLOSE_too_big;
	case RC_WS_CLOSE_POLICY: return RC_CLOSE_rate_limited;
	default: return RC_CLOSE_protocol_error;
	}
}

/* Fails the connection: close frame with code, then input is dropped and TCP half-closed. */
static void fail(struct rc_conn *c, uint16_t code, const char *reason)
{
	enum rc_close_reason why = reason_of(code);
	if (c->state != RC_CONN_OPEN) {
		rc_conn_terminate(c, why);
		return;
	}
	rc_conn_ws_close(c, code, reason, why);
	c->flags |= RC_CF_DISCARD;
	free(c->pend);
	c->pend = NULL;
	free(c->msg);
	c->msg = NULL;
}

static const struct rc_ws_limits *limits_of(const struct rc_conn *c)
{
	return &c->shard->app->ws[c->endpoint].limits;
}

/*
 * Takes one message from c's token bucket (refilled at messages_per_second_max, holding at
 * most messages_burst_max). False when the client sends faster than allowed.
 */
static bool rate_ok(struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	if (!cfg->messages_per_second_max)
		return true;
	uint32_t now = rc_shard_tick(c->shard);
	/* Thousandths of a message per ms equal messages per second. */
	uint64_t add = (uint64_t)(now - c->rate_tick) * cfg->timer_tick_ms *
		       cfg->messages_per_second_max;
	uint64_t cap = cfg->messages_burst_max * 1000;
	c->rate_tokens = (uint32_t)RC_MIN((uint64_t)c->rate_tokens + add, RC_MIN(cap, UINT32_MAX));
	c->rate_tick = now;
	if (c->rate_tokens < 1000)
		return false;
	c->rate_tokens -= 1000;
	return true;
}

static void deliver(struct rc_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
	const struct rc_ws_handler *h = &c->shard->app->ws[c->endpoint].h;
	if (!rate_ok(c)) {
		fail(c, RC_WS_CLOSE_POLICY, "message rate limit exceeded");
		return;
	}
	c->shard->stats.messages_in++;
	if (h->on_message)
		h->on_message(c, p, len, opcode == RC_WS_OP_BINARY, h->ctx);
}

static void control(struct rc_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
	uint16_t code, ccode;
	const char *reason;
	struct rc_slice text;
	uint8_t reply[RC_WS_CONTROL_PAYLOAD_LIMIT];

	if (opcode == RC_WS_OP_PING) {
		if (c->state == RC_CONN_OPEN)
			(void)rc_conn_send_frame(c, RC_WS_OP_PONG, p, len);
		return;
	}
	if (opcode != RC_WS_OP_CLOSE)
		return; /* a pong: its arrival already reset the idle clock */
	if (rc_ws_close_parse(p, len, &code, &text, &ccode, &reason) == RC_PARSE_FAIL) {
		fail(c, ccode, reason);
		return;
	}
	c->close_code = code;
	c->flags |= RC_CF_FLUSH_CLOSE;
	if (c->state == RC_CONN_OPEN) {
		/* Echo the peer's code (RFC 6455 §5.5.1); a bare close gets a bare close. */
		size_t rlen = rc_ws_close_write(reply, code, NULL);
		c->state = RC_CONN_CLOSING;
		c->close_reason = RC_CLOSE_normal; /* the peer started it; ours keeps its reason */
		if (rc_conn_send_frame(c, RC_WS_OP_CLOSE, reply, rlen) != 0)
			rc_conn_terminate(c, RC_CLOSE_normal);
		return;
	}
	rc_conn_mark_dirty(c); /* our close went out already: end once the queue is flushed */
}

/*
 * Delivers a permessage-deflate message: p[0..len) is the compressed payload with tail room
 * after it when room is true (otherwise it is copied first). Inflation is bounded by the
 * endpoint's message limit (a bomb gets 1009, corrupt data 1007) and text is validated as
 * UTF-8 once inflated.
 */
static void deliver_deflated(struct rc_conn *c, uint8_t opcode, uint8_t *p, size_t len,
			     bool room)
{
	struct rc_shard *s = c->shard;
	size_t max = (size_t)limits_of(c)->message_bytes_max, out_len = 0;
	struct rc_buf *copy = NULL;
	if (!room) {
		if (buf_append(&copy, p, len, len + 1) != 0) {
			fail(c, RC_WS_CLOSE_INTERNAL, "out of memory");
			return;
		}
		p = copy->data;
	}
	uint8_t *out = rc_shard_ibuf(s, max);
	int rc = out ? rc_pmd_inflate(s->inflater, p, len, out, max, &out_len) : -ENOMEM;
	free(copy);
	s->stats.inflated_messages++;
	if (rc == RC_PMD_ERR_TOO_BIG)
		fail(c, RC_WS_CLOSE_TOO_BIG, "message too big once inflated");
	else if (rc != 0)
		fail(c, rc == -ENOMEM ? RC_WS_CLOSE_INTERNAL : RC_WS_CLOSE_INVALID_DATA,
		     rc == -ENOMEM ? "out of memory" : "invalid compressed data");
	else if (opcode == RC_WS_OP_TEXT && !rc_utf8_valid(out, out_len))
		fail(c, RC_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
	else
		deliver(c, opcode, out, out_len);
}

/*
 * A whole frame is in memory. If prepared, its payload was unmasked and validated as it
 * arrived (pend_progress) and sits in a buffer of ours with tail room after it; otherwise
 * payload is still masked and sits in the receive buffer.
 */
static void frame_done(struct rc_conn *c, const struct rc_ws_frame *f, uint8_t *payload,
		       bool prepared)
{
	uint16_t code;
	const char *reason;
	size_t len = (size_t)f->payload_len;

	if (!prepared)
		rc_ws_mask(payload, len, f->mask, 0);
	c->shard->stats.frames_in++;
	if (f->opcode >= RC_WS_OP_CLOSE) {
		control(c, f->opcode, payload, len);
		return;
	}
	if (c->state != RC_CONN_OPEN) {
		/* Data after our close frame is ignored (RFC 6455 §5.5.1), but its framing is
		 * still followed so the peer's close reply can be found. */
		if (f->fin)
			memset(&c->rx, 0, sizeof(c->rx));
		return;
	}
	if (!prepared && rc_ws_rx_payload(&c->rx, payload, len, &code, &reason) == RC_PARSE_FAIL) {
		fail(c, code, reason);
		return;
	}
	uint8_t opcode = c->rx.message_opcode;
	bool compressed = c->rx.message_rsv1;
	if (f->fin && !c->msg) {
		/* The receive buffer may hold the tail room after the payload (the next frame's
		 * bytes are borrowed and restored); a pending buffer always does. */
		const uint8_t *end = c->shard->rx_end;
		bool room = prepared || (end && payload + len + RC_PMD_TAIL_ROOM <= end);
		if (rc_ws_rx_end_frame(&c->rx, true, &code, &reason) == RC_PARSE_FAIL)
			fail(c, code, reason);
		else if (compressed)
			deliver_deflated(c, opcode, payload, len, room);
		else
			deliver(c, opcode, payload, len);
		return;
	}
	if (buf_append(&c->msg, payload, len, limits_of(c)->message_bytes_max) != 0) {
		fail(c, RC_WS_CLOSE_TOO_BIG, "message too big");
		return;
	}
	if (rc_ws_rx_end_frame(&c->rx, f->fin, &code, &reason) == RC_PARSE_FAIL) {
		fail(c, code, reason);
		return;
	}
	if (f->fin) {
		struct rc_buf *m = c->msg;
		c->msg = NULL;
		if (compressed)
			deliver_deflated(c, opcode, m->data, m->len, true);
		else
			deliver(c, opcode, m->data, m->len);
		free(m);
	}
}

/* Parses a header at p; on DONE also checks it against the message in progress. */
static enum rc_parse header(struct rc_conn *c, const uint8_t *p, size_t n, struct rc_ws_frame *f,
			    bool check)
{
	uint16_t code = 0;
	const char *reason = NULL;
	struct rc_ws_limits lim = *limits_of(c);
	lim.rsv1_allowed = c->flags & RC_CF_DEFLATE;
	enum rc_parse r = rc_ws_frame_parse(p, n, &lim, f, &code, &reason);
	if (r == RC_PARSE_DONE && check && f->opcode < RC_WS_OP_CLOSE)
		r = rc_ws_rx_frame(&c->rx, f, &lim, &code, &reason);
	if (r == RC_PARSE_FAIL)
		fail(c, code, reason);
	return r;
}

/*
 * Unmasks and validates the payload bytes of the pending frame that arrived since the last
 * call, so invalid UTF-8 fails the connection at once rather than when the frame completes
 * (fail fast, RFC 6455 §8.1). Returns false if the connection failed.
 */
static bool pend_progress(struct rc_conn *c, struct rc_buf *b, const struct rc_ws_frame *f)
{
	uint16_t code;
	const char *reason;
	uint32_t have = b->len - f->header_len;

	RC_ASSERT(b->len >= f->header_len);
	if (have <= b->done)
		return true;
	uint8_t *p = b->data + f->header_len + b->done;
	rc_ws_mask(p, have - b->done, f->mask, b->done);
	if (f->opcode < RC_WS_OP_CLOSE && c->state == RC_CONN_OPEN &&
	    rc_ws_rx_payload(&c->rx, p, have - b->done, &code, &reason) == RC_PARSE_FAIL) {
		fail(c, code, reason);
		return false;
	}
	b->done = have;
	return true;
}

/* Continues the frame in c->pend with p; returns the bytes of p it took. */
static size_t pend_feed(struct rc_conn *c, uint8_t *p, size_t n)
{
	struct rc_ws_frame f;
	struct rc_buf *b = c->pend;
	size_t took = 0;
	uint64_t max = limits_of(c)->frame_bytes_max + RC_WS_HEADER_LIMIT;

	if (!(b->flags & RC_BUF_HDR_CHECKED)) {
		size_t want = RC_MIN(n, (size_t)RC_WS_HEADER_LIMIT - RC_MIN(b->len, 14u));
		if (buf_append(&c->pend, p, want, max) != 0)
			return fail(c, RC_WS_CLOSE_INTERNAL, "out of memory"), n;
		b = c->pend;
		took = want;
		enum rc_parse r = header(c, b->data, b->len, &f, true);
		if (r != RC_PARSE_DONE)
			return r == RC_PARSE_FAIL ? n : took;
		b->flags |= RC_BUF_HDR_CHECKED;
		b->done = 0;
		uint64_t total = f.header_len + f.payload_len;
		if (b->len > total) { /* we took bytes of the next frame: give them back */
			took -= b->len - (size_t)total;
			b->len = (uint32_t)total;
		}
	} else {
		enum rc_parse r = header(c, b->data, b->len, &f, false);
		RC_ASSERT(r == RC_PARSE_DONE);
	}
	uint64_t total = f.header_len + f.payload_len;
	size_t take = (size_t)RC_MIN((uint64_t)(n - took), total - b->len);
	if (take && buf_append(&c->pend, p + took, take, max) != 0)
		return fail(c, RC_WS_CLOSE_INTERNAL, "out of memory"), n;
	took += take;
	b = c->pend;
	if (!pend_progress(c, b, &f))
		return n;
	if (b->len == total) {
		c->pend = NULL;
		frame_done(c, &f, b->data + f.header_len, true);
		free(b);
	}
	return took;
}

/* Handles the frame starting at p; returns the bytes it took (all of them if incomplete). */
static size_t frame_at(struct rc_conn *c, uint8_t *p, size_t n)
{
	struct rc_ws_frame f;
	uint64_t max = limits_of(c)->frame_bytes_max + RC_WS_HEADER_LIMIT;
	enum rc_parse r = header(c, p, n, &f, true);

	if (r == RC_PARSE_FAIL)
		return n;
	uint64_t total = r == RC_PARSE_DONE ? f.header_len + f.payload_len : 0;
	if (r == RC_PARSE_DONE && total <= n) {
		frame_done(c, &f, p + f.header_len, false);
		return (size_t)total;
	}
	/* Incomplete: keep what arrived; the buffer grows as the rest does, not up front. */
	if (buf_append(&c->pend, p, n, max) != 0)
		return fail(c, RC_WS_CLOSE_INTERNAL, "out of memory"), n;
	if (r == RC_PARSE_DONE) {
		c->pend->flags |= RC_BUF_HDR_CHECKED;
		c->pend->done = 0;
		(void)pend_progress(c, c->pend, &f);
	}
	return n;
}

static void ws_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	/* Each step consumes at least one byte or stops, so the loop is bounded by n. */
	while (n > 0 && (c->state == RC_CONN_OPEN || c->state == RC_CONN_CLOSING)) {
		if (c->flags & RC_CF_DISCARD)
			return;
		size_t used = c->pend ? pend_feed(c, p, n) : frame_at(c, p, n);
		RC_ASSERT(used > 0 && used <= n);
		p += used;
		n -= used;
	}
}

void rc_conn_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	if (c->state == RC_CONN_HTTP)
		http_input(c, p, n);
	else
		ws_input(c, p, n);
}
