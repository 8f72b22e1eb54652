/*
 * A connection's bytes until it upgrades: HTTP requests parsed statelessly (a fresh parse of
 * the head each time more of it arrives; once the head announced its length, the body is
 * appended in place to c->pend, charged to the budget as http, and the request is parsed
 * again only when it is complete), routed to the upgrade (with the token check on
 * the pub/sub endpoint), to a plain HTTP endpoint, or to POST /publish (the publish hook);
 * keep-alive and pipelined requests answered in order, also when an answer waits for
 * sequencing. After the upgrade the bytes go to input.c. Shard thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_rt.h"
#include "handshake.h"
#include "http_serve.h"
#include "input.h"
#include "mem.h"
#include "namespace.h"
#include "sendq.h"
#include "session.h"
#include "token.h"

/* The bytes a buffer of cap bytes holds against the budget. */
static size_t buf_size(uint32_t cap)
{
	return sizeof(struct rc_buf) + cap;
}

static void buf_free(struct rc_conn *c, struct rc_buf *b)
{
	if (!b)
		return;
	rc_mem_release(c->shard->app, RC_BUDGET_http, buf_size(b->cap));
	free(b);
}

/*
 * Grows c->pend to hold at least need bytes: geometrically, but never past the size its
 * request announced (b->need) unless pipelined bytes need more, nor past max. The growth is
 * charged to the budget first: -ENOBUFS when it does not fit, -EMSGSIZE past max.
 */
static int buf_reserve(struct rc_conn *c, size_t need, size_t max)
{
	struct rc_buf *b = c->pend;
	size_t cap = b ? b->cap : 0;
	if (b && need + RC_PMD_TAIL_ROOM <= cap)
		return 0;
	if (need > max)
		return -EMSGSIZE;
	size_t grow_max = b && b->need ? RC_MIN((size_t)b->need, max) : max;
	/* Tail room lets rc_pmd_inflate() append the stripped 00 00 ff ff in place. */
	size_t ncap = RC_MAX(need, RC_MIN(RC_MAX(cap * 2, (size_t)256), grow_max)) +
		      RC_PMD_TAIL_ROOM;
	RC_ASSERT(ncap > cap);
	size_t delta = buf_size((uint32_t)ncap) - (b ? buf_size(b->cap) : 0);
	struct rc_app *app = c->shard->app;
	/* Unfinished requests cost their senders nothing but a socket: together they get a share
	 * of the budget, so they cannot take it to the soft mark and shut everyone else out. */
	uint64_t share = app->budget.limit_bytes / 100 * app->cfg.http_memory_percent;
	if (rc_budget_category_bytes(&app->budget, RC_BUDGET_http) + delta > share ||
	    !rc_mem_try_charge(app, RC_BUDGET_http, delta))
		return -ENOBUFS;
	struct rc_buf *nb = realloc(b, buf_size((uint32_t)ncap));
	if (!nb) {
		rc_mem_release(app, RC_BUDGET_http, delta);
		return -ENOMEM;
	}
	if (!b) {
		nb->len = 0;
		nb->need = 0;
	}
	nb->cap = (uint32_t)ncap;
	c->pend = nb;
	return 0;
}

static int buf_append(struct rc_conn *c, const uint8_t *p, size_t n, size_t max)
{
	size_t len = c->pend ? c->pend->len : 0;
	int rc = buf_reserve(c, len + n, max);
	if (rc)
		return rc;
	memcpy(c->pend->data + len, p, n);
	c->pend->len = (uint32_t)(len + n);
	RC_ASSERT(c->pend->len + RC_PMD_TAIL_ROOM <= c->pend->cap);
	return 0;
}

/*
 * Queues an HTTP response. With keep_alive the connection waits for its next request (up to
 * handshake_timeout_ms); otherwise it closes once the response is sent.
 */
size_t rc_conn_cors_headers(const struct rc_conn *c, char *out, size_t cap)
{
	const struct rc_app *app = c->shard->app;
	int n = 0;
	RC_ASSERT(c->state == RC_CONN_HTTP);
	if (c->cors == RC_CORS_ANY)
		n = snprintf(out, cap, "Access-Control-Allow-Origin: *\r\n");
	else if (c->cors)
		n = snprintf(out, cap, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
			     (int)app->origins[c->cors - 1].len, app->origins[c->cors - 1].p);
	if (n > 0 && (size_t)n < cap)
		return (size_t)n;
	if (cap)
		out[0] = '\0';
	return 0;
}

/* resp[0..*len) with c's CORS headers after its status line, in a buffer the caller frees;
 * NULL (resp goes as it is) when the request gets none or memory is short. */
static char *with_cors(const struct rc_conn *c, const char *resp, size_t *len)
{
	char h[RC_CORS_HEADERS_MAX];
	size_t hlen = c->cors && *len ? rc_conn_cors_headers(c, h, sizeof(h)) : 0;
	const char *eol = hlen ? memmem(resp, *len, "\r\n", 2) : NULL;
	char *out = eol ? malloc(*len + hlen) : NULL;
	if (!out)
		return NULL;
	size_t at = (size_t)(eol + 2 - resp);
	memcpy(out, resp, at);
	memcpy(out + at, h, hlen);
	memcpy(out + at + hlen, resp + at, *len - at);
	*len += hlen;
	return out;
}

void rc_conn_http_reply(struct rc_conn *c, const char *resp, size_t len, enum rc_close_reason why,
			bool keep_alive)
{
	c->close_reason = (uint8_t)why;
	if (!keep_alive)
		c->flags |= RC_CF_FLUSH_CLOSE;
	char *cors = with_cors(c, resp, &len);
	int rc = len ? rc_conn_send_raw(c, cors ? cors : resp, len) : -EINVAL;
	free(cors);
	if (rc != 0) {
		/* -ENOBUFS: pipelined answers the client does not read passed the queue's limit. */
		rc_conn_terminate(c, rc == -ENOBUFS ? RC_CLOSE_slow_consumer : why);
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

/*
 * Checks a request's access token when token keys are configured: 0, or the HTTP status to
 * answer (401) with *reason. A valid token's rights, subject and (for a WebSocket, ws) expiry
 * go to c's slot, replacing an earlier request's (token.c). A WebSocket without a token opens
 * anonymous (no rights in its slot) when a namespace allows anonymous clients.
 */
static int authorize(struct rc_conn *c, const struct rc_http_request *req, bool ws,
		     const char **reason)
{
	struct rc_shard *s = c->shard;
	struct rc_jwt_claims claims;
	if (!s->app->auth)
		return 0;
	struct rc_slice t = token_of(req);
	if (!t.len && ws && s->app->namespaces->any_anonymous) {
		rc_token_conn_clear(c); /* no rights left from an earlier request */
		return 0;
	}
	if (!t.len) {
		rc_token_count_failure(s, RC_JWT_missing);
		*reason = "access token required (?token= or Authorization: Bearer)";
		return 401;
	}
	enum rc_jwt_result r = rc_token_verify(s, t.p, t.len, &claims);
	if (r == RC_JWT_ok && claims.channel[0]) {
		/* A channel token grants one subscription, never a connection. */
		r = RC_JWT_channel;
		rc_token_count_failure(s, r);
		rc_jwt_rights_free(claims.rights);
	}
	if (r != RC_JWT_ok) {
		*reason = rc_jwt_result_reason(r);
		return 401;
	}
	rc_token_conn_set(c, &claims, ws);
	return 0;
}

/* The paths of the admin listener: probes, scrapes and the dashboard page. */
static bool admin_path(struct rc_slice path)
{
	return rc_slice_eq(path, "/health") || rc_slice_eq(path, "/metrics") ||
	       rc_slice_eq(path, "/");
}

/* The server API's paths: /api/NAME. */
static bool api_path(struct rc_slice path)
{
	return path.len > 5 && memcmp(path.p, "/api/", 5) == 0;
}

/* Whether c may call the server API: on the admin listener, or with api_key given as
 * "Authorization: apikey <key>" (compared in constant time). */
static bool api_authorized(const struct rc_conn *c, const struct rc_http_request *req)
{
	const char *key = c->shard->app->cfg.api_key;
	size_t klen = strlen(key);
	struct rc_slice a = req->authorization;
	if (c->flags & RC_CF_ADMIN)
		return true;
	if (!klen || a.len != klen + 7 || strncasecmp(a.p, "apikey ", 7) != 0)
		return false;
	unsigned char diff = 0;
	for (size_t i = 0; i < klen; i++)
		diff |= (unsigned char)(a.p[7 + i] ^ key[i]);
	return diff == 0;
}

/* Whether c may reach path: the admin listener serves only the admin paths and the server
 * API, the public one serves them unless public_admin_endpoints is off. */
static bool path_allowed(const struct rc_conn *c, struct rc_slice path)
{
	if (c->flags & RC_CF_ADMIN)
		return admin_path(path) || api_path(path);
	return c->shard->app->cfg.public_admin_endpoints || !admin_path(path);
}

/*
 * A static asset (rc_app_asset): its bytes, or 304 when If-None-Match names its ETag. A 304
 * and a HEAD send the head the full answer would have (its Content-Length included).
 */
static void serve_asset(struct rc_conn *c, const struct rc_http_request *req,
			const struct rc_http_endpoint *ep)
{
	char hdrs[192];
	if (req->method != RC_HTTP_GET && req->method != RC_HTTP_HEAD) {
		http_error(c, 405, "use GET");
		return;
	}
	bool fresh = rc_slice_eq(req->if_none_match, ep->etag) ||
		     rc_slice_eq(req->if_none_match, "*");
	snprintf(hdrs, sizeof(hdrs), "ETag: %s\r\nCache-Control: public, max-age=300\r\n",
		 ep->etag);
	size_t cap = ep->asset_len + sizeof(hdrs) + 256;
	char *resp = malloc(cap);
	size_t len = resp ? rc_http_write_response(resp, cap, fresh ? 304 : 200, ep->asset_type,
						   hdrs, ep->asset, ep->asset_len,
						   req->keep_alive)
			  : 0;
	if (len && (fresh || req->method == RC_HTTP_HEAD)) {
		RC_ASSERT(len >= ep->asset_len);
		len -= ep->asset_len;
	}
	rc_conn_http_reply(c, resp, len, RC_CLOSE_http_done, req->keep_alive && len);
	free(resp);
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
	if (api_path(req->path)) {
		app->conn_hooks->api(c, req->path.p + 5, req->path.len - 5, api_authorized(c, req),
				     req->method == RC_HTTP_POST, req->body.p, req->body.len,
				     req->keep_alive);
		return;
	}
	if (app->publish_path[0] && rc_slice_eq(req->path, app->publish_path)) {
		if (req->method != RC_HTTP_POST) {
			http_error(c, 405, "use POST");
			return;
		}
		const char *reason = NULL;
		int status = authorize(c, req, false, &reason);
		if (status != 0) {
			http_error(c, status, reason);
			return;
		}
		app->conn_hooks->publish(c, req->body.p, req->body.len, req->keep_alive);
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
	if (!ep->fn) {
		serve_asset(c, req, ep);
		return;
	}
	size_t body_len = app->http_out_bytes, len = 0;
	char *body = malloc(body_len), *resp = malloc(body_len + 1024);
	char path[256], query[256];
	snprintf(path, sizeof(path), "%.*s", (int)req->path.len, req->path.p);
	snprintf(query, sizeof(query), "%.*s", (int)req->query.len, req->query.p);
	if (body && resp) {
		struct rc_http_call call = {
			method_name(req->method), path, query, req->body.p, req->body.len,
			c->shard->index};
		const char *ctype = "text/plain; charset=utf-8";
		int status = ep->fn(&call, body, &body_len, &ctype, ep->ctx);
		len = rc_http_write_response(resp, app->http_out_bytes + 1024, (uint16_t)status,
					     ctype, NULL, body, body_len, req->keep_alive);
	}
	rc_conn_http_reply(c, resp, len, RC_CLOSE_http_done, req->keep_alive && len);
	free(body);
	free(resp);
}

/* GET sse_path: the token checked like an upgrade's (its rights are the stream's, its expiry
 * ends it), then the stream starts (the sse hook). */
static void serve_sse(struct rc_conn *c, const struct rc_http_request *req)
{
	const char *reason = NULL;
	if (req->method != RC_HTTP_GET) {
		http_error(c, 405, "use GET");
		return;
	}
	int status = authorize(c, req, true, &reason);
	if (status != 0) {
		http_error(c, status, reason);
		return;
	}
	c->shard->app->conn_hooks->sse(c, req->query, req->last_event_id);
}

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
	int status = rc_handshake_check(req, &pol, &acc, &reason);
	/* The token's expiry is in place before rc_conn_opened arms it. */
	if (status == 0 && ep == app->pubsub_ws)
		status = authorize(c, req, true, &reason);
	if (status != 0) {
		http_error(c, status, reason);
		return;
	}
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
	if (deflate) {
		c->flags |= RC_CF_DEFLATE;
		c->deflate_window_bits = pmd.server_max_window_bits;
	}
	s->stats.websockets_open++;
	/* They share storage with c->ws; http_ready() saw no answer pending. */
	RC_ASSERT(c->pend == NULL && c->http_pub == NULL);
	rc_ws_asm_init(&c->ws);
	c->rate_tokens = (uint32_t)RC_MIN(app->cfg.messages_burst_max * 1000, UINT32_MAX);
	c->rate_tick = rc_clock_tick(&s->clock);
	c->topic_tokens = (uint16_t)RC_MIN(app->cfg.topics_per_second_max, UINT16_MAX);
	c->topic_second = (uint8_t)(s->clock.now_ms / 1000);
	c->inflate_tokens = UINT32_MAX; /* full: the first refill clamps it to its size */
	rc_conn_opened(c);
	const struct rc_ws_handler *h = &app->ws[ep].h;
	if (h->on_open)
		h->on_open(c, h->ctx);
	if (rest_len && c->state == RC_CONN_OPEN)
		rc_conn_ws_input(c, rest, rest_len);
}

/*
 * CORS (the Fetch standard), for what a page on another origin may call: the SSE stream, the
 * publish path and the assets (an ES module import of /ringcast.js). The methods a path
 * takes, or NULL when it is not one of them.
 */
static const char *cors_methods(const struct rc_app *app, struct rc_slice path)
{
	if (app->sse_path[0] && rc_slice_eq(path, app->sse_path))
		return "GET";
	if (app->publish_path[0] && rc_slice_eq(path, app->publish_path))
		return "POST";
	for (int i = 0; i < app->http_count; i++)
		if (!app->http[i].fn && rc_slice_eq(path, app->http[i].path))
			return "GET, HEAD";
	return NULL;
}

/* Whether a browser's Origin names the host it is asking (a page the gateway served). */
static bool same_origin(struct rc_slice origin, struct rc_slice host)
{
	const char *sep = origin.len ? memmem(origin.p, origin.len, "://", 3) : NULL;
	size_t at = sep ? (size_t)(sep + 3 - origin.p) : origin.len;
	return sep && host.len && origin.len - at == host.len &&
	       strncasecmp(origin.p + at, host.p, host.len) == 0;
}

/* Sets c->cors for req: none without an Origin header (not a browser's cross-origin call)
 * or from the gateway's own origin, "*" with an empty origins list, the listed origin
 * otherwise; 403 for one not listed. */
static int cors_check(struct rc_conn *c, const struct rc_http_request *req)
{
	const struct rc_app *app = c->shard->app;
	c->cors = 0;
	if (!req->origin.p || same_origin(req->origin, req->host))
		return 0;
	int i = rc_handshake_origin_find(req->origin, app->origins, (size_t)app->origins_count);
	if (i == -1) {
		c->shard->stats.cors_refused++;
		return 403;
	}
	c->cors = i == RC_ORIGIN_ANY ? RC_CORS_ANY : (uint8_t)(i + 1);
	return 0;
}

/* Answers a preflight (OPTIONS) for a CORS path: 204 with what the real request may use
 * (methods, the headers our clients set), cached by the browser for 10 minutes. */
static void preflight(struct rc_conn *c, const struct rc_http_request *req, const char *methods)
{
	char hdrs[256], out[512];
	snprintf(hdrs, sizeof(hdrs),
		 "Allow: OPTIONS, %s\r\nAccess-Control-Allow-Methods: %s\r\n"
		 "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n"
		 "Access-Control-Max-Age: 600\r\n",
		 methods, methods);
	size_t len = rc_http_write_response(out, sizeof(out), 204, NULL, hdrs, NULL, 0,
					    req->keep_alive);
	c->shard->stats.cors_preflights++;
	rc_conn_http_reply(c, out, len, RC_CLOSE_http_done, req->keep_alive && len);
}

/*
 * Parses one request from p and answers it; returns the bytes it took (all of them after an
 * error or an upgrade, whose remaining bytes are frames), 0 if the request is incomplete:
 * then *need is the length the whole request announced once its head is complete, else 0.
 */
static size_t http_try(struct rc_conn *c, uint8_t *p, size_t n, uint32_t *need)
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
	*need = 0;
	if (r == RC_PARSE_PARTIAL) {
		/* Head and body are bounded by the limits above, so the sum fits. */
		if (req.head_len)
			*need = (uint32_t)(req.head_len + req.content_length);
		RC_ASSERT(*need == 0 || *need > n);
		return 0;
	}
	c->shard->stats.http_requests++;
	if (r == RC_PARSE_FAIL) {
		http_error(c, status, reason);
		return n;
	}
	RC_ASSERT(consumed > 0 && consumed <= n);
	if (!path_allowed(c, req.path)) {
		http_error(c, 404, "no such endpoint on this listener");
		return n;
	}
	if (rc_handshake_is_upgrade(&req)) {
		upgrade(c, &req, p + consumed, n - consumed);
		return n;
	}
	const char *methods = cors_methods(c->shard->app, req.path);
	if (methods && cors_check(c, &req) != 0) {
		http_error(c, 403, "Origin not allowed");
		return n;
	}
	if (methods && req.method == RC_HTTP_OPTIONS) {
		preflight(c, &req, methods);
		return consumed;
	}
	const char *sse = c->shard->app->sse_path;
	if (sse[0] && rc_slice_eq(req.path, sse)) {
		serve_sse(c, &req);
		return n; /* a stream: what the client sends after its request is not read */
	}
	serve_http(c, &req);
	return consumed;
}

/* A keep-alive connection may not start its next request before the last one is answered
 * (a publish being sequenced), nor after it asked to close. */
static bool http_ready(const struct rc_conn *c)
{
	return c->state == RC_CONN_HTTP && !c->http_pub && !(c->flags & RC_CF_FLUSH_CLOSE);
}

/* Still reading requests: neither upgraded nor closing after a response. */
static bool http_reading(const struct rc_conn *c)
{
	return c->state == RC_CONN_HTTP && !(c->flags & RC_CF_FLUSH_CLOSE);
}

/* Answers every complete request in p, in order; returns the bytes left unparsed and in
 * *need what an incomplete request among them announced (0 if unknown). */
static size_t http_serve_all(struct rc_conn *c, uint8_t *p, size_t n, uint32_t *need)
{
	*need = 0;
	/* Bounded by n: each answered request consumes at least one byte. */
	while (n > 0 && http_ready(c)) {
		size_t used = http_try(c, p, n, need);
		if (used == 0)
			break;
		p += used;
		n -= used;
	}
	return n;
}

/*
 * Keeps unparsed request bytes for later, appended to c->pend (bounded by one request's
 * limits and by the budget: past the budget the request is refused with 503).
 */
static void http_stash(struct rc_conn *c, const uint8_t *p, size_t n)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	size_t max = cfg->header_bytes_max + cfg->body_bytes_max + 1;
	if (!n)
		return;
	int rc = buf_append(c, p, n, max);
	if (rc == -ENOBUFS || rc == -ENOMEM) {
		c->shard->stats.http_budget_refusals++;
		http_error(c, 503, "memory budget exhausted");
	} else if (rc) {
		http_error(c, 431, "request too large");
	}
}

/*
 * Parses what c->pend holds (a partial request, or requests that waited for an answer). A
 * request whose head announced more bytes than have arrived is not parsed again: its body
 * is appended in place until it is complete.
 */
void rc_conn_http_resume(struct rc_conn *c)
{
	uint32_t need;
	struct rc_buf *b = c->pend;
	if (!b || !http_ready(c) || b->need > b->len)
		return;
	/* Detached while parsing: bytes after an upgrade may start a frame of their own. */
	c->pend = NULL;
	c->shard->rx_end = NULL; /* those bytes no longer sit in the receive buffer */
	size_t left = http_serve_all(c, b->data, b->len, &need);
	if (!http_reading(c) || left == 0) {
		buf_free(c, b);
		return;
	}
	/* Still reading: the unparsed tail moves to the front of the same buffer. */
	RC_ASSERT(c->pend == NULL);
	memmove(b->data, b->data + b->len - left, left);
	b->len = (uint32_t)left;
	b->need = need;
	c->pend = b;
}

static void http_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	uint32_t need;
	if (!c->pend && http_ready(c)) {
		/* The common case: whole requests in one read, parsed in place. */
		size_t left = http_serve_all(c, p, n, &need);
		if (http_reading(c)) {
			http_stash(c, p + n - left, left);
			if (c->pend)
				c->pend->need = need;
		}
		return;
	}
	if (c->flags & RC_CF_FLUSH_CLOSE)
		return; /* the connection is closing after its response */
	http_stash(c, p, n);
	rc_conn_http_resume(c);
}

void rc_conn_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	if (c->state == RC_CONN_HTTP)
		http_input(c, p, n);
	else if (!(c->flags & RC_CF_SSE)) /* a stream's client has nothing to say */
		rc_conn_ws_input(c, p, n);
}

void rc_conn_input_release(struct rc_conn *c, bool http)
{
	if (!http) {
		rc_conn_ws_reset(c);
		return;
	}
	RC_ASSERT(c->http_pub == NULL); /* released first, by pubsub_proto.c */
	buf_free(c, c->pend);
	c->pend = NULL;
}
