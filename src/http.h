/*
 * HTTP/1.1 request parsing (through llhttp) and response writing, sans I/O. The same request
 * handling serves the WebSocket upgrade and the plain HTTP endpoints. The parser is
 * stateless between calls: the caller accumulates a request's bytes and calls
 * rc_http_parse() on the whole buffer each time more arrive, so no parser state is kept per
 * connection. Pure; the caller's thread.
 */
#ifndef RC_HTTP_H
#define RC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"

enum rc_http_method {
	RC_HTTP_OTHER = 0,
	RC_HTTP_GET,
	RC_HTTP_HEAD,
	RC_HTTP_POST,
	RC_HTTP_PUT,
	RC_HTTP_DELETE,
	RC_HTTP_OPTIONS,
};

/* Header fields that may legally repeat keep up to this many occurrences. */
#define RC_HTTP_REPEAT_LIMIT 8

struct rc_http_multi {
	struct rc_slice v[RC_HTTP_REPEAT_LIMIT];
	uint8_t count;
};

/* One parsed request. Every slice borrows the caller's buffer. */
struct rc_http_request {
	uint8_t method; /* enum rc_http_method */
	uint8_t version_major;
	uint8_t version_minor;
	bool keep_alive;          /* llhttp_should_keep_alive() */
	struct rc_slice target;   /* request-target as sent */
	struct rc_slice path;     /* target up to '?' */
	struct rc_slice query;    /* after '?', may be empty */
	struct rc_slice host;
	struct rc_slice upgrade;
	struct rc_slice ws_key;
	struct rc_slice ws_version;
	struct rc_slice origin;
	struct rc_slice content_type;
	struct rc_slice authorization;
	struct rc_slice if_none_match; /* a cached asset's ETag (GET /ringcast.js) */
	struct rc_slice last_event_id; /* an EventSource's resume point (GET /sse) */
	struct rc_http_multi connection;    /* every Connection header */
	struct rc_http_multi ws_protocol;   /* every Sec-WebSocket-Protocol header */
	struct rc_http_multi ws_extensions; /* every Sec-WebSocket-Extensions header */
	struct rc_slice body;               /* Content-Length body, empty if none */
	uint32_t head_len;                  /* bytes up to and including the blank line */
	uint64_t content_length;            /* Content-Length, 0 if none; set once the head is */
};

struct rc_http_limits {
	uint32_t header_bytes_max; /* request line + headers; larger → 431 */
	uint32_t body_bytes_max;   /* Content-Length above this → 413 */
};

/*
 * Parses one request from buf[0..len). DONE: *req is filled and *consumed is the request's
 * length (head + body); bytes after it (pipelining) are left alone. PARTIAL: the request is
 * not complete yet (if the head alone already exceeds header_bytes_max that is FAIL 431
 * instead); when its head is complete, req->head_len and req->content_length tell how many
 * bytes the whole request needs, so the caller may append the body without parsing again.
 * FAIL: *status (400 malformed or duplicate singleton header such as Host or
 * Sec-WebSocket-Key, 413 body too large, 431 head too large, 501 chunked request bodies or
 * unknown transfer codings) and *reason (string literal).
 */
enum rc_parse rc_http_parse(const char *buf, size_t len, const struct rc_http_limits *lim,
			    struct rc_http_request *req, size_t *consumed, uint16_t *status,
			    const char **reason);

/* True if a comma-separated header list (any of its occurrences) holds token, ignoring case
 * and optional whitespace; e.g. Connection: keep-alive, Upgrade. */
bool rc_http_has_token(const struct rc_http_multi *m, const char *token);

/*
 * Iterates the comma-separated elements of one header value: start with *pos = 0; each call
 * sets *token to the next non-empty element with surrounding whitespace trimmed (borrowing
 * list) and returns true, or returns false at the end. For lists compared other than by
 * ASCII case, e.g. Sec-WebSocket-Protocol offers or Sec-WebSocket-Extensions.
 */
bool rc_http_next_token(struct rc_slice list, uint32_t *pos, struct rc_slice *token);

/* The reason phrase of a status code ("Not Found"), "Unknown" if unknown. */
const char *rc_http_status_text(uint16_t status);

/*
 * Writes a complete response: status line, Content-Type (omitted if NULL), Content-Length,
 * "Connection: close" unless keep_alive, the extra header lines (each ending in CRLF, may be
 * NULL), a blank line and the body. Returns the length written, or 0 if cap is too small.
 */
size_t rc_http_write_response(char *out, size_t cap, uint16_t status, const char *content_type,
			      const char *extra_headers, const void *body, size_t body_len,
			      bool keep_alive);

#endif
