/*
 * The WebSocket opening handshake (RFC 6455 §4.2), sans I/O. Owns the server's side of the
 * upgrade: which requests are upgrades, the checks of §4.2.1 plus the endpoint's Origin and
 * subprotocol policy, Sec-WebSocket-Accept, and the 101 or error answer. Does not own HTTP
 * parsing (http.c), extensions (pmd.c) or authentication (auth.c). Writes only into the
 * caller's buffers. Pure; the caller's thread.
 */
#include "handshake.h"

#include <string.h>
#include <strings.h>

#include <openssl/base64.h>
#include <openssl/sha.h>

#include "base/rc_assert.h"

/* RFC 6455 §1.3: appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* The raw nonce is 16 bytes (§4.1), so its base64 form is always 24 characters. */
#define KEY_RAW_BYTES 16
#define KEY_B64_LEN 24
#define ACCEPT_LEN 28

RC_STATIC_ASSERT(sizeof(((struct rc_ws_accept *)0)->accept_key) == ACCEPT_LEN + 1,
		 "accept_key holds base64 of a SHA-1 digest and a NUL");

/* The reason line of an error body is cut here; reasons are short literals anyway. */
#define REASON_BYTES_MAX 160

static bool upgrade_names_websocket(const struct rc_slice *upgrade)
{
	struct rc_http_multi one = {.v = {*upgrade}, .count = upgrade->p != NULL ? 1 : 0};

	return rc_http_has_token(&one, "websocket");
}

bool rc_handshake_is_upgrade(const struct rc_http_request *req)
{
	RC_ASSERT(req != NULL);
	return upgrade_names_websocket(&req->upgrade);
}

static bool key_is_valid(struct rc_slice key)
{
	uint8_t raw[KEY_RAW_BYTES + 2];
	size_t raw_len = 0;

	if (key.len != KEY_B64_LEN)
		return false;
	if (!EVP_DecodeBase64(raw, &raw_len, sizeof(raw), (const uint8_t *)key.p, key.len))
		return false;
	return raw_len == KEY_RAW_BYTES;
}

int rc_handshake_origin_find(struct rc_slice origin, const struct rc_slice *origins, size_t count)
{
	if (count == 0)
		return RC_ORIGIN_ANY;
	if (origin.p == NULL)
		return -1;
	for (size_t i = 0; i < count; i++)
		if (origins[i].len == origin.len &&
		    strncasecmp(origins[i].p, origin.p, origin.len) == 0)
			return (int)i;
	return -1;
}

static bool client_offers(const struct rc_http_multi *offers, struct rc_slice proto)
{
	for (uint8_t i = 0; i < offers->count; i++) {
		struct rc_slice t;
		uint32_t pos = 0;

		/* Subprotocol names are compared exactly, as browsers compare our answer. */
		while (rc_http_next_token(offers->v[i], &pos, &t)) {
			if (t.len == proto.len && memcmp(t.p, proto.p, t.len) == 0)
				return true;
		}
	}
	return false;
}

/* The first of the server's subprotocols, in its order of preference, the client offers. */
static struct rc_slice choose_subprotocol(const struct rc_http_multi *offers,
					  const struct rc_ws_policy *pol)
{
	RC_ASSERT(offers->count <= RC_HTTP_REPEAT_LIMIT);
	for (size_t i = 0; i < pol->subprotocols_count; i++) {
		RC_ASSERT(pol->subprotocols[i].len > 0);
		if (client_offers(offers, pol->subprotocols[i]))
			return pol->subprotocols[i];
	}
	return (struct rc_slice){0};
}

/* The request-level checks of RFC 6455 §4.2.1, in the order a client most likely fails them. */
static int check_request(const struct rc_http_request *req, const char **reason)
{
	if (req->method != RC_HTTP_GET) {
		*reason = "WebSocket upgrade requires GET";
		return 405;
	}
	if (req->version_major < 1 || (req->version_major == 1 && req->version_minor < 1)) {
		*reason = "WebSocket upgrade requires HTTP/1.1";
		return 400;
	}
	if (req->host.len == 0) {
		*reason = "missing Host header";
		return 400;
	}
	if (!upgrade_names_websocket(&req->upgrade)) {
		*reason = "Upgrade header must name websocket";
		return 400;
	}
	if (!rc_http_has_token(&req->connection, "upgrade")) {
		*reason = "Connection header must include Upgrade";
		return 400;
	}
	if (req->ws_key.p == NULL) {
		*reason = "missing Sec-WebSocket-Key header";
		return 400;
	}
	if (!key_is_valid(req->ws_key)) {
		*reason = "Sec-WebSocket-Key must be base64 of 16 bytes";
		return 400;
	}
	if (!rc_slice_eq(req->ws_version, "13")) {
		*reason = "unsupported Sec-WebSocket-Version";
		return 426;
	}
	return 0;
}

int rc_handshake_check(const struct rc_http_request *req, const struct rc_ws_policy *pol,
		       struct rc_ws_accept *acc, const char **reason)
{
	int status;

	RC_ASSERT(req != NULL);
	RC_ASSERT(pol != NULL);
	RC_ASSERT(acc != NULL);
	RC_ASSERT(reason != NULL);
	memset(acc, 0, sizeof(*acc));
	status = check_request(req, reason);
	if (status != 0)
		return status;
	if (rc_handshake_origin_find(req->origin, pol->origins, pol->origins_count) == -1) {
		*reason = "Origin not allowed";
		return 403;
	}
	acc->subprotocol = choose_subprotocol(&req->ws_protocol, pol);
	if (acc->subprotocol.len == 0 && pol->subprotocol_required) {
		*reason = "no supported subprotocol offered";
		return 400;
	}
	rc_handshake_accept_key(req->ws_key.p, req->ws_key.len, acc->accept_key);
	return 0;
}

#define LIT(s) ((struct rc_slice){.p = (s), .len = sizeof(s) - 1})

size_t rc_handshake_write_101(char *out, size_t cap, const struct rc_ws_accept *acc,
			      const char *extra_headers)
{
	bool proto = acc->subprotocol.len > 0;
	struct rc_slice none = {.p = "", .len = 0};
	const struct rc_slice parts[] = {
		LIT("HTTP/1.1 101 Switching Protocols\r\n"
		    "Upgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Accept: "),
		{.p = acc->accept_key, .len = ACCEPT_LEN},
		LIT("\r\n"),
		proto ? LIT("Sec-WebSocket-Protocol: ") : none,
		proto ? acc->subprotocol : none,
		proto ? LIT("\r\n") : none,
		extra_headers != NULL
			? (struct rc_slice){extra_headers, (uint32_t)strlen(extra_headers)}
			: none,
		LIT("\r\n"),
	};
	size_t len = 0;

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(strlen(acc->accept_key) == ACCEPT_LEN);
	for (size_t i = 0; i < RC_ARRAY_LEN(parts); i++) {
		if (parts[i].len > cap - len)
			return 0;
		memcpy(out + len, parts[i].p, parts[i].len);
		len += parts[i].len;
	}
	return len;
}

size_t rc_handshake_write_error(char *out, size_t cap, int status, const char *reason)
{
	char body[REASON_BYTES_MAX + 1];
	size_t n;
	const char *extra = NULL;

	RC_ASSERT(status >= 400);
	RC_ASSERT(status <= 599);
	if (reason == NULL)
		reason = rc_http_status_text((uint16_t)status);
	n = RC_MIN(strlen(reason), (size_t)REASON_BYTES_MAX);
	memcpy(body, reason, n);
	body[n++] = '\n';
	/* §4.2.2: a 426 names the versions we speak; RFC 7231 §6.5.5: a 405 lists methods. */
	if (status == 426)
		extra = "Sec-WebSocket-Version: 13\r\n";
	else if (status == 405)
		extra = "Allow: GET\r\n";
	else if (status == 401) /* RFC 6750 §3: the scheme a token must use */
		extra = "WWW-Authenticate: Bearer realm=\"ringcast\"\r\n";
	else if (status == 503) /* RFC 7231 §7.1.3: when to come back */
		extra = "Retry-After: 1\r\n";
	return rc_http_write_response(out, cap, (uint16_t)status, "text/plain", extra, body, n,
				      false);
}

void rc_handshake_accept_key(const char *key, size_t key_len, char out[29])
{
	uint8_t digest[SHA_DIGEST_LENGTH];
	SHA_CTX sha;
	size_t n;

	RC_ASSERT(key != NULL || key_len == 0);
	RC_ASSERT(out != NULL);
	SHA1_Init(&sha);
	SHA1_Update(&sha, key, key_len);
	SHA1_Update(&sha, ws_guid, sizeof(ws_guid) - 1);
	SHA1_Final(digest, &sha);
	n = EVP_EncodeBlock((uint8_t *)out, digest, sizeof(digest));
	RC_ASSERT(n == ACCEPT_LEN);
	RC_ASSERT(out[ACCEPT_LEN] == '\0');
}
