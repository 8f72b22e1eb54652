/*
 * The WebSocket opening handshake (RFC 6455 §4.2), sans I/O: validates a parsed upgrade
 * request against the endpoint's policy, derives Sec-WebSocket-Accept (BoringSSL SHA-1 +
 * base64), chooses the subprotocol, and writes the 101 or error response. Pure; the caller's
 * thread.
 */
#ifndef RC_HANDSHAKE_H
#define RC_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"
#include "http.h"

/* What an endpoint accepts. Borrowed; outlives every call. */
struct rc_ws_policy {
	const struct rc_slice *origins; /* allowlist; count 0 = any Origin (or none) is fine */
	size_t origins_count;
	const struct rc_slice *subprotocols; /* server preference order; count 0 = none offered */
	size_t subprotocols_count;
	bool subprotocol_required; /* refuse (400) clients that offer none of ours */
};

/* The outcome of a valid upgrade. */
struct rc_ws_accept {
	char accept_key[29];      /* base64(SHA-1(key + GUID)), NUL-terminated */
	struct rc_slice subprotocol; /* chosen (points into the policy), len 0 = none */
};

/* True if the request asks for a WebSocket upgrade at all (an Upgrade header naming
 * "websocket"); such requests are answered by rc_handshake_check(), others are plain HTTP. */
bool rc_handshake_is_upgrade(const struct rc_http_request *req);

/*
 * Validates an upgrade request: GET, HTTP/1.1 or later, Host present, Upgrade: websocket,
 * Connection token list holding "Upgrade", Sec-WebSocket-Key that base64-decodes to exactly
 * 16 bytes, Sec-WebSocket-Version 13 (otherwise 426), Origin in the allowlist (otherwise 403),
 * subprotocol negotiation. Returns 0 and fills *acc on success; otherwise returns the HTTP
 * status (400, 403, 405, 426) and sets *reason (string literal).
 */
int rc_handshake_check(const struct rc_http_request *req, const struct rc_ws_policy *pol,
		       struct rc_ws_accept *acc, const char **reason);

/* Where origin (a serialized origin, RFC 6454 §6.2, compared case-insensitively) stands in an
 * allowlist of count entries: its index, RC_ORIGIN_ANY when the list is empty (any origin is
 * allowed), or -1 (not listed, or no origin with a list). */
#define RC_ORIGIN_ANY (-2)
int rc_handshake_origin_find(struct rc_slice origin, const struct rc_slice *origins, size_t count);

/*
 * Writes the 101 Switching Protocols response (Upgrade, Connection, Sec-WebSocket-Accept,
 * Sec-WebSocket-Protocol when chosen, then extra_headers, e.g. a negotiated
 * Sec-WebSocket-Extensions line ending in CRLF, may be NULL). Returns its length, 0 if cap is
 * too small.
 */
size_t rc_handshake_write_101(char *out, size_t cap, const struct rc_ws_accept *acc,
			      const char *extra_headers);

/*
 * Writes an error answer to a failed upgrade: status line, "Connection: close", a text body
 * naming the reason, and for 426 the "Sec-WebSocket-Version: 13" header. Returns its length,
 * 0 if cap is too small.
 */
size_t rc_handshake_write_error(char *out, size_t cap, int status, const char *reason);

/* Computes Sec-WebSocket-Accept for a key (exposed for tests and the bench client). */
void rc_handshake_accept_key(const char *key, size_t key_len, char out[29]);

#endif
