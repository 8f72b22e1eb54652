/*
 * HTTP serving (http_serve.c): the bytes of a connection before it upgrades. Requests are
 * routed to the WebSocket upgrade, a plain HTTP endpoint (rc_app_http) or POST /publish;
 * keep-alive and pipelining answer them in order. Also the entry point of every received
 * byte (rc_conn_input, the connection table's input hook). Shard thread only.
 */
#ifndef RC_HTTP_SERVE_H
#define RC_HTTP_SERVE_H

#include "runtime.h"

/* Bytes arrived for c (borrowed for the call): HTTP until the upgrade, then frames
 * (input.c). The input hook. */
void rc_conn_input(struct rc_conn *c, uint8_t *p, size_t n);

/*
 * Queues an HTTP response resp[0..len) (copied; len 0 ends c). With keep_alive the
 * connection waits for its next request (up to handshake_timeout_ms); otherwise it closes
 * once the response is sent, counted under why.
 */
void rc_conn_http_reply(struct rc_conn *c, const char *resp, size_t len, enum rc_close_reason why,
			bool keep_alive);

/* Writes the CORS headers of c's current request (Access-Control-Allow-Origin, Vary) into
 * out (cap bytes, NUL terminated): their length, 0 (and "") when the request gets none or
 * they do not fit. RC_CORS_HEADERS_MAX holds the longest origin the configuration takes
 * (RC_ORIGIN_BYTES_MAX) and the header names around it. */
#define RC_CORS_HEADERS_MAX (RC_ORIGIN_BYTES_MAX + 64)
size_t rc_conn_cors_headers(const struct rc_conn *c, char *out, size_t cap);

/* Frees what input keeps for a terminated c: its HTTP request state (a partial request, a
 * POST /publish answer being sequenced) when http, else its frame assembler. Part of the
 * closed hook (app.c). */
void rc_conn_input_release(struct rc_conn *c, bool http);

/* Parses requests that waited in c->pend (after a deferred answer went out). The resume
 * hook, run from the flush, never from inside an answer. */
void rc_conn_http_resume(struct rc_conn *c);

#endif
