/*
 * HTTP/1.1 request parsing and response writing, sans I/O. Owns the llhttp glue: a fresh
 * parser runs over the caller's whole buffer on each call and its callbacks collect slices
 * into a struct rc_http_request, so no parser state outlives a call and nothing is allocated.
 * Does not own WebSocket semantics (handshake.c) nor any socket or buffer lifetime. Pure; the
 * caller's thread.
 */
#include "http.h"

#include <string.h>

#include "base/rc_assert.h"
#include "llhttp.h"

/* What the llhttp callbacks share during one rc_http_parse() call. Lives on its stack. */
struct parse_ctx {
	struct rc_http_request *req;
	const struct rc_http_limits *lim;
	struct rc_slice field; /* the header name being read; p NULL between headers */
	struct rc_slice value; /* its value so far; p NULL until the first piece */
	uint16_t status;       /* set by a callback that refuses the request, 0 otherwise */
	const char *reason;
	bool head_done;
	bool message_done;
};

enum header_kind {
	HEADER_ONE = 0, /* a singleton: a second occurrence is refused */
	HEADER_LIST,	/* may repeat up to RC_HTTP_REPEAT_LIMIT times */
};

/* The header fields the request keeps, by lower-case name. */
static const struct {
	const char *name;
	uint8_t kind; /* enum header_kind */
	uint16_t offset;
	const char *duplicate; /* the reason given when a singleton repeats or a list overflows */
} kept_headers[] = {
	{"host", HEADER_ONE, offsetof(struct rc_http_request, host), "duplicate Host header"},
	{"upgrade", HEADER_ONE, offsetof(struct rc_http_request, upgrade),
	 "duplicate Upgrade header"},
	{"sec-websocket-key", HEADER_ONE, offsetof(struct rc_http_request, ws_key),
	 "duplicate Sec-WebSocket-Key header"},
	{"sec-websocket-version", HEADER_ONE, offsetof(struct rc_http_request, ws_version),
	 "duplicate Sec-WebSocket-Version header"},
	{"origin", HEADER_ONE, offsetof(struct rc_http_request, origin), "duplicate Origin header"},
	{"content-type", HEADER_ONE, offsetof(struct rc_http_request, content_type),
	 "duplicate Content-Type header"},
	{"authorization", HEADER_ONE, offsetof(struct rc_http_request, authorization),
	 "duplicate Authorization header"},
	{"if-none-match", HEADER_ONE, offsetof(struct rc_http_request, if_none_match),
	 "duplicate If-None-Match header"},
	{"last-event-id", HEADER_ONE, offsetof(struct rc_http_request, last_event_id),
	 "duplicate Last-Event-ID header"},
	{"connection", HEADER_LIST, offsetof(struct rc_http_request, connection),
	 "too many Connection headers"},
	{"sec-websocket-protocol", HEADER_LIST, offsetof(struct rc_http_request, ws_protocol),
	 "too many Sec-WebSocket-Protocol headers"},
	{"sec-websocket-extensions", HEADER_LIST, offsetof(struct rc_http_request, ws_extensions),
	 "too many Sec-WebSocket-Extensions headers"},
};

static int refuse(struct parse_ctx *c, uint16_t status, const char *reason)
{
	RC_ASSERT(status >= 400);
	RC_ASSERT(reason != NULL);
	c->status = status;
	c->reason = reason;
	return -1;
}

static struct parse_ctx *ctx_of(llhttp_t *p)
{
	struct parse_ctx *c = p->data;

	RC_ASSERT(c != NULL);
	return c;
}

/*
 * llhttp hands a span over in several pieces only when its input is split, which never
 * happens here, or when a header value is folded over lines (obs-fold). Pieces that follow
 * each other extend the slice; a gap means obs-fold, which RFC 7230 §3.2.4 lets a server
 * refuse with 400 and which a slice into the buffer could not represent anyway.
 */
static int extend(llhttp_t *p, struct rc_slice *s, const char *at, size_t n, const char *gap)
{
	if (s->p == NULL) {
		s->p = at;
		s->len = (uint32_t)n;
		return 0;
	}
	if (s->p + s->len != at)
		return refuse(ctx_of(p), 400, gap);
	s->len += (uint32_t)n;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	return extend(p, &ctx_of(p)->req->target, at, n, "malformed request-target");
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	return extend(p, &ctx_of(p)->field, at, n, "malformed header name");
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	return extend(p, &ctx_of(p)->value, at, n, "obsolete header line folding");
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * llhttp accepts an empty name and whitespace before the colon; RFC 7230 §3.2 and §3.2.4
 * require a token there and a 400 for the whitespace (it is a request-smuggling vector).
 */
static int on_header_field_complete(llhttp_t *p)
{
	struct parse_ctx *c = ctx_of(p);

	if (c->field.p == NULL || c->field.len == 0)
		return refuse(c, 400, "empty header name");
	for (uint32_t i = 0; i < c->field.len; i++) {
		if (is_ows(c->field.p[i]))
			return refuse(c, 400, "whitespace in header name");
	}
	return 0;
}

static struct rc_slice trim_ows(struct rc_slice s)
{
	while (s.len > 0 && is_ows(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && is_ows(s.p[s.len - 1]))
		s.len--;
	return s;
}

static int keep_header(struct parse_ctx *c, size_t index, struct rc_slice value)
{
	char *base = (char *)c->req + kept_headers[index].offset;

	if (kept_headers[index].kind == HEADER_ONE) {
		struct rc_slice *one = (struct rc_slice *)base;

		if (one->p != NULL)
			return refuse(c, 400, kept_headers[index].duplicate);
		*one = value;
		return 0;
	}
	struct rc_http_multi *m = (struct rc_http_multi *)base;

	if (m->count == RC_HTTP_REPEAT_LIMIT)
		return refuse(c, 400, kept_headers[index].duplicate);
	m->v[m->count++] = value;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct parse_ctx *c = ctx_of(p);
	struct rc_slice name = c->field;
	struct rc_slice value = c->value;

	RC_ASSERT(name.p != NULL);
	/* An empty value may come with no piece at all: anchor it right after the name. */
	if (value.p == NULL)
		value = (struct rc_slice){.p = name.p + name.len, .len = 0};
	value = trim_ows(value);
	c->field = (struct rc_slice){0};
	c->value = (struct rc_slice){0};
	for (size_t i = 0; i < RC_ARRAY_LEN(kept_headers); i++) {
		if (rc_slice_caseeq(name, kept_headers[i].name))
			return keep_header(c, i, value);
	}
	return 0;
}

static uint8_t method_of(uint8_t llhttp_method)
{
	switch (llhttp_method) {
	case HTTP_GET: return RC_HTTP_GET;
	case HTTP_HEAD: return RC_HTTP_HEAD;
	case HTTP_POST: return RC_HTTP_POST;
	case HTTP_PUT: return RC_HTTP_PUT;
	case HTTP_DELETE: return RC_HTTP_DELETE;
	case HTTP_OPTIONS: return RC_HTTP_OPTIONS;
	default: return RC_HTTP_OTHER;
	}
}

/* Pauses so rc_http_parse() learns where the head ends (llhttp's error position). */
static int on_headers_complete(llhttp_t *p)
{
	struct parse_ctx *c = ctx_of(p);
	struct rc_http_request *req = c->req;

	/* Any transfer coding, chunked or not, is refused: POST bodies use Content-Length. */
	if (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING))
		return refuse(c, 501, "Transfer-Encoding not supported");
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->lim->body_bytes_max)
		return refuse(c, 413, "body too large");
	req->method = method_of(llhttp_get_method(p));
	req->version_major = llhttp_get_http_major(p);
	req->version_minor = llhttp_get_http_minor(p);
	/* RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host. */
	if (req->version_major == 1 && req->version_minor >= 1 && req->host.p == NULL)
		return refuse(c, 400, "missing Host header");
	req->keep_alive = llhttp_should_keep_alive(p) != 0;
	if (p->flags & F_CONTENT_LENGTH)
		req->content_length = p->content_length;
	c->head_done = true;
	return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	return extend(p, &ctx_of(p)->req->body, at, n, "malformed body");
}

/* Pauses so that pipelined bytes after this request stay unconsumed. */
static int on_message_complete(llhttp_t *p)
{
	struct parse_ctx *c = ctx_of(p);

	RC_ASSERT(c->head_done);
	c->message_done = true;
	return HPE_PAUSED;
}

static const llhttp_settings_t parse_settings = {
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/*
 * Splits the request-target (RFC 7230 §5.3): origin-form "/p?q" directly; absolute-form
 * "http://h/p?q" after its authority; asterisk- and authority-form are all path. A fragment
 * is not part of a request-target, but llhttp lets it through: drop it.
 */
static void split_target(struct rc_http_request *req)
{
	const char *t = req->target.p;
	uint32_t n = req->target.len;
	uint32_t start = 0;
	uint32_t end = 0;

	if (n > 0 && t[0] != '/') {
		const char *scheme_end = memmem(t, n, "://", 3);

		if (scheme_end != NULL) {
			start = (uint32_t)(scheme_end - t) + 3;
			while (start < n && t[start] != '/' && t[start] != '?' && t[start] != '#')
				start++;
		}
	}
	end = start;
	while (end < n && t[end] != '?' && t[end] != '#')
		end++;
	req->path = (struct rc_slice){.p = t + start, .len = end - start};
	req->query = (struct rc_slice){.p = t + end, .len = 0};
	if (end < n && t[end] == '?') {
		uint32_t q = end + 1;

		while (q < n && t[q] != '#')
			q++;
		req->query = (struct rc_slice){.p = t + end + 1, .len = q - end - 1};
	}
	RC_ASSERT(req->path.p + req->path.len <= t + n);
	RC_ASSERT(req->query.p + req->query.len <= t + n);
}

/* Turns an llhttp error into our status and reason. */
static enum rc_parse fail(const struct parse_ctx *c, llhttp_t *p, llhttp_errno_t err,
			  uint16_t *status, const char **reason)
{
	if (c->status != 0) {
		*status = c->status;
		*reason = c->reason;
	} else if (err == HPE_PAUSED_H2_UPGRADE) {
		*status = 400;
		*reason = "HTTP/2 connection preface not supported";
	} else {
		/* llhttp's reasons are string literals too, and name the fault precisely. */
		const char *why = llhttp_get_error_reason(p);

		*status = 400;
		*reason = why != NULL ? why : "malformed request";
	}
	return RC_PARSE_FAIL;
}

/* Runs llhttp up to the end of the head, which must lie within header_bytes_max bytes. */
static enum rc_parse parse_head(llhttp_t *p, struct parse_ctx *c, const char *buf, size_t len,
				uint16_t *status, const char **reason)
{
	size_t window = RC_MIN(len, (size_t)c->lim->header_bytes_max);
	llhttp_errno_t err = llhttp_execute(p, buf, window);

	if (err == HPE_OK) {
		RC_ASSERT(!c->head_done);
		if (len > window) {
			*status = 431;
			*reason = "request header too large";
			return RC_PARSE_FAIL;
		}
		return RC_PARSE_PARTIAL;
	}
	if (err != HPE_PAUSED || !c->head_done)
		return fail(c, p, err, status, reason);
	RC_ASSERT(llhttp_get_error_pos(p) >= buf);
	RC_ASSERT(llhttp_get_error_pos(p) <= buf + window);
	c->req->head_len = (uint32_t)(llhttp_get_error_pos(p) - buf);
	return RC_PARSE_DONE;
}

enum rc_parse rc_http_parse(const char *buf, size_t len, const struct rc_http_limits *lim,
			    struct rc_http_request *req, size_t *consumed, uint16_t *status,
			    const char **reason)
{
	struct parse_ctx c = {.req = req, .lim = lim};
	llhttp_t p;
	enum rc_parse r;

	RC_ASSERT(buf != NULL || len == 0);
	RC_ASSERT(lim != NULL);
	RC_ASSERT(req != NULL);
	RC_ASSERT(consumed != NULL);
	memset(req, 0, sizeof(*req));
	*consumed = 0;
	/*
	 * No lenient flag is set: each accepts framing RFC 7230 tells a server to refuse or
	 * leaves ambiguous (Transfer-Encoding beside Content-Length, odd versions, bad header
	 * bytes), the raw material of request smuggling.
	 */
	llhttp_init(&p, HTTP_REQUEST, &parse_settings);
	p.data = &c;
	r = parse_head(&p, &c, buf, len, status, reason);
	if (r != RC_PARSE_DONE)
		return r;

	const char *body = buf + req->head_len;
	llhttp_errno_t err;

	llhttp_resume(&p);
	err = llhttp_execute(&p, body, len - req->head_len);
	if (err == HPE_OK)
		return RC_PARSE_PARTIAL;
	if (err != HPE_PAUSED || !c.message_done)
		return fail(&c, &p, err, status, reason);
	*consumed = (size_t)(llhttp_get_error_pos(&p) - buf);
	RC_ASSERT(*consumed >= req->head_len);
	RC_ASSERT(*consumed <= len);
	if (req->body.p == NULL)
		req->body = (struct rc_slice){.p = body, .len = 0};
	split_target(req);
	return RC_PARSE_DONE;
}

/* Yields the comma-separated elements of one header value, trimmed, skipping empty ones. */
bool rc_http_next_token(struct rc_slice list, uint32_t *pos, struct rc_slice *token)
{
	RC_ASSERT(*pos <= list.len);
	while (*pos < list.len) {
		uint32_t start = *pos;

		while (*pos < list.len && list.p[*pos] != ',')
			(*pos)++;
		*token = trim_ows((struct rc_slice){.p = list.p + start, .len = *pos - start});
		if (*pos < list.len)
			(*pos)++;
		if (token->len > 0)
			return true;
	}
	return false;
}

bool rc_http_has_token(const struct rc_http_multi *m, const char *token)
{
	RC_ASSERT(m->count <= RC_HTTP_REPEAT_LIMIT);
	for (uint8_t i = 0; i < m->count; i++) {
		struct rc_slice t;
		uint32_t pos = 0;

		while (rc_http_next_token(m->v[i], &pos, &t)) {
			if (rc_slice_caseeq(t, token))
				return true;
		}
	}
	return false;
}

static const struct {
	uint16_t status;
	const char *text;
} status_texts[] = {
	{101, "Switching Protocols"},
	{200, "OK"},
	{201, "Created"},
	{202, "Accepted"},
	{204, "No Content"},
	{301, "Moved Permanently"},
	{302, "Found"},
	{304, "Not Modified"},
	{400, "Bad Request"},
	{401, "Unauthorized"},
	{403, "Forbidden"},
	{404, "Not Found"},
	{405, "Method Not Allowed"},
	{408, "Request Timeout"},
	{409, "Conflict"},
	{411, "Length Required"},
	{413, "Content Too Large"},
	{414, "URI Too Long"},
	{415, "Unsupported Media Type"},
	{426, "Upgrade Required"},
	{429, "Too Many Requests"},
	{431, "Request Header Fields Too Large"},
	{500, "Internal Server Error"},
	{501, "Not Implemented"},
	{502, "Bad Gateway"},
	{503, "Service Unavailable"},
	{505, "HTTP Version Not Supported"},
};

const char *rc_http_status_text(uint16_t status)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(status_texts); i++) {
		if (status_texts[i].status == status)
			return status_texts[i].text;
	}
	return "Unknown";
}

/* A bounded writer: once something does not fit, every later write is dropped too. */
struct out_buf {
	char *p;
	size_t cap;
	size_t len;
	bool overflow;
};

static void put(struct out_buf *o, const void *s, size_t n)
{
	if (o->overflow || n > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_str(struct out_buf *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u64(struct out_buf *o, uint64_t v)
{
	char digits[20];
	size_t n = 0;

	do {
		digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	put(o, digits + sizeof(digits) - n, n);
}

size_t rc_http_write_response(char *out, size_t cap, uint16_t status, const char *content_type,
			      const char *extra_headers, const void *body, size_t body_len,
			      bool keep_alive)
{
	struct out_buf o = {.p = out, .cap = cap};
	/* RFC 7230 §3.3.2: no Content-Length on 1xx and 204; those carry no body either. */
	bool has_length = status >= 200 && status != 204;

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(status >= 100);
	RC_ASSERT(status <= 999);
	RC_ASSERT(body != NULL || body_len == 0);
	if (!has_length)
		RC_ASSERT(body_len == 0);
	put_str(&o, "HTTP/1.1 ");
	put_u64(&o, status);
	put_str(&o, " ");
	put_str(&o, rc_http_status_text(status));
	put_str(&o, "\r\n");
	if (content_type != NULL) {
		put_str(&o, "Content-Type: ");
		put_str(&o, content_type);
		put_str(&o, "\r\n");
	}
	if (has_length) {
		put_str(&o, "Content-Length: ");
		put_u64(&o, body_len);
		put_str(&o, "\r\n");
	}
	if (!keep_alive)
		put_str(&o, "Connection: close\r\n");
	if (extra_headers != NULL)
		put_str(&o, extra_headers);
	put_str(&o, "\r\n");
	if (body_len > 0)
		put(&o, body, body_len);
	if (o.overflow)
		return 0;
	RC_ASSERT(o.len <= cap);
	return o.len;
}
