/*
 * Unit tests for src/handshake.c: RFC 6455 §4.2.1 checks on parsed requests, Origin and
 * subprotocol policy, Sec-WebSocket-Accept (the RFC's own example), and the 101 and error
 * writers.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <string.h>

#include "handshake.h"

static const struct rc_http_limits limits = {
	.header_bytes_max = 8192,
	.body_bytes_max = 1024,
};

static const struct rc_ws_policy open_policy = {0};

#define S(lit) ((struct rc_slice){.p = (lit), .len = sizeof(lit) - 1})

/* A valid upgrade; tests replace one line of it to make it invalid. */
#define REQ_LINE "GET /chat HTTP/1.1\r\n"
#define HOST "Host: server.example.com\r\n"
#define UPGRADE "Upgrade: websocket\r\n"
#define CONNECTION "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define ORIGIN "Origin: http://example.com\r\n"
#define END "\r\n"

static void parse(const char *text, struct rc_http_request *req)
{
	size_t consumed;
	uint16_t status = 0;
	const char *reason = NULL;
	enum rc_parse r =
		rc_http_parse(text, strlen(text), &limits, req, &consumed, &status, &reason);

	cr_assert(eq(int, r, RC_PARSE_DONE), "parse: %u %s", status, reason ? reason : "");
	cr_assert(eq(sz, consumed, strlen(text)));
}

/* Parses text and runs the check; returns its status, leaving *acc and *reason filled. */
static int check(const char *text, const struct rc_ws_policy *pol, struct rc_ws_accept *acc,
		 const char **reason)
{
	struct rc_http_request req;

	parse(text, &req);
	*reason = NULL;
	int status = rc_handshake_check(&req, pol, acc, reason);

	if (status != 0)
		cr_assert(ne(ptr, (void *)*reason, NULL));
	return status;
}

static void expect_status(const char *text, const struct rc_ws_policy *pol, int want)
{
	struct rc_ws_accept acc;
	const char *reason;
	int status = check(text, pol, &acc, &reason);

	cr_assert(eq(int, status, want), "got %d (%s)", status, reason ? reason : "");
}

/* ---- accept key and valid requests ----------------------------------------------------------- */

Test(handshake, accept_key_matches_rfc6455_example)
{
	static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
	char out[29];

	rc_handshake_accept_key(key, sizeof(key) - 1, out);
	cr_assert(eq(str, out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

Test(handshake, accepts_rfc_request)
{
	struct rc_ws_accept acc;
	const char *reason;

	cr_assert(eq(int,
		     check(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION ORIGIN END, &open_policy,
			   &acc, &reason),
		     0));
	cr_assert(eq(str, acc.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
	cr_assert(eq(u32, acc.subprotocol.len, 0));
}

Test(handshake, accepts_token_lists_and_any_case)
{
	expect_status(REQ_LINE HOST "Upgrade: WebSocket\r\n"
				    "Connection: keep-alive\r\nConnection: foo, UPGRADE\r\n" KEY
				    "Sec-WebSocket-Version:  13 \r\n" END,
		      &open_policy, 0);
	expect_status(REQ_LINE HOST "Upgrade: websocket, h2c\r\n"
				    "Connection: keep-alive, Upgrade\r\n" KEY VERSION END,
		      &open_policy, 0);
}

/* RFC 6455 §4.1 asks for "at least" 1.1; llhttp knows no 1.x beyond 1.1. */
Test(handshake, later_http_version_is_fine)
{
	expect_status("GET / HTTP/2.0\r\n" HOST UPGRADE CONNECTION KEY VERSION END, &open_policy,
		      0);
}

Test(handshake, is_upgrade_looks_at_upgrade_header_only)
{
	struct rc_http_request req;

	parse(REQ_LINE HOST "Upgrade: WEBSOCKET\r\n" END, &req);
	cr_assert(rc_handshake_is_upgrade(&req));
	parse(REQ_LINE HOST "Upgrade: h2c\r\n" CONNECTION END, &req);
	cr_assert(not(rc_handshake_is_upgrade(&req)));
	parse(REQ_LINE HOST CONNECTION END, &req);
	cr_assert(not(rc_handshake_is_upgrade(&req)));
}

Test(handshake, origin_allowlist_matches_ignoring_case)
{
	static const struct rc_slice origins[] = {S("https://app.example"),
						  S("http://example.com")};
	struct rc_ws_policy pol = {.origins = origins, .origins_count = 2};

	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION ORIGIN END, &pol, 0);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
		      "Origin: HTTPS://App.Example\r\n" END,
		      &pol, 0);
}

Test(handshake, subprotocol_follows_server_preference)
{
	static const struct rc_slice protos[] = {S("v2.json"), S("v1.json")};
	struct rc_ws_policy pol = {.subprotocols = protos, .subprotocols_count = 2};
	struct rc_ws_accept acc;
	const char *reason;

	cr_assert(eq(int,
		     check(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
			   "Sec-WebSocket-Protocol: chat, v1.json\r\n"
			   "Sec-WebSocket-Protocol: v2.json\r\n" END,
			   &pol, &acc, &reason),
		     0));
	cr_assert(rc_slice_eq(acc.subprotocol, "v2.json"));
	cr_assert(eq(ptr, (void *)acc.subprotocol.p, (void *)protos[0].p));
	cr_assert(eq(int,
		     check(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
			   "Sec-WebSocket-Protocol: chat,v1.json\r\n" END,
			   &pol, &acc, &reason),
		     0));
	cr_assert(rc_slice_eq(acc.subprotocol, "v1.json"));
	/* Names are compared exactly: no match means no header, not a refusal. */
	cr_assert(eq(int,
		     check(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
			   "Sec-WebSocket-Protocol: V1.JSON, v1.jso, v1.json2\r\n" END,
			   &pol, &acc, &reason),
		     0));
	cr_assert(eq(u32, acc.subprotocol.len, 0));
}

/* ---- refused requests ------------------------------------------------------------------------ */

Test(handshake, refuses_other_methods_with_405)
{
	expect_status("POST /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
		      &open_policy, 405);
	expect_status("HEAD /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
		      &open_policy, 405);
}

Test(handshake, refuses_http_1_0)
{
	expect_status("GET /chat HTTP/1.0\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
		      &open_policy, 400);
}

Test(handshake, refuses_missing_or_empty_host)
{
	/* Without Host the HTTP/1.1 request itself is refused, before the handshake check. */
	static const char no_host[] = REQ_LINE UPGRADE CONNECTION KEY VERSION END;
	struct rc_http_request req;
	size_t consumed;
	uint16_t status = 0;
	const char *reason = NULL;
	cr_assert(eq(int, rc_http_parse(no_host, sizeof(no_host) - 1, &limits, &req, &consumed,
					&status, &reason),
		     RC_PARSE_FAIL));
	cr_assert(eq(u16, status, 400));
	expect_status(REQ_LINE "Host:\r\n" UPGRADE CONNECTION KEY VERSION END, &open_policy, 400);
}

Test(handshake, refuses_without_upgrade_tokens)
{
	expect_status(REQ_LINE HOST CONNECTION KEY VERSION END, &open_policy, 400);
	expect_status(REQ_LINE HOST "Upgrade: websockets\r\n" CONNECTION KEY VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE KEY VERSION END, &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE "Connection: keep-alive\r\n" KEY VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE "Connection: upgraded\r\n" KEY VERSION END,
		      &open_policy, 400);
}

Test(handshake, refuses_missing_key)
{
	expect_status(REQ_LINE HOST UPGRADE CONNECTION VERSION END, &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION "Sec-WebSocket-Key:\r\n" VERSION END,
		      &open_policy, 400);
}

Test(handshake, refuses_keys_not_of_16_bytes)
{
	/* 15 bytes, 17 bytes, 16 bytes unpadded, not base64, base64 with a space inside. */
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n" VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA\r\n" VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAA==\r\n" VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n" VERSION END,
		      &open_policy, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION
		      "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VERSION END,
		      &open_policy, 400);
}

Test(handshake, refuses_other_versions_with_426)
{
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 8\r\n" END,
		      &open_policy, 426);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 13, 8\r\n" END,
		      &open_policy, 426);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY END, &open_policy, 426);
}

Test(handshake, refuses_origin_outside_allowlist_with_403)
{
	static const struct rc_slice origins[] = {S("https://app.example")};
	struct rc_ws_policy pol = {.origins = origins, .origins_count = 1};

	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION ORIGIN END, &pol, 403);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION END, &pol, 403);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
		      "Origin: https://app.example.evil\r\n" END,
		      &pol, 403);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION "Origin: null\r\n" END, &pol,
		      403);
}

Test(handshake, refuses_when_required_subprotocol_missing)
{
	static const struct rc_slice protos[] = {S("v1.json")};
	struct rc_ws_policy pol = {
		.subprotocols = protos, .subprotocols_count = 1, .subprotocol_required = true};

	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION END, &pol, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
		      "Sec-WebSocket-Protocol: chat\r\n" END,
		      &pol, 400);
	expect_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION
		      "Sec-WebSocket-Protocol: chat, v1.json\r\n" END,
		      &pol, 0);
}

/* ---- writers --------------------------------------------------------------------------------- */

/* The 101 for the RFC's example key, up to its optional headers. */
#define HEAD_101                                                                                   \
	"HTTP/1.1 101 Switching Protocols\r\n"                                                     \
	"Upgrade: websocket\r\n"                                                                   \
	"Connection: Upgrade\r\n"                                                                  \
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

/* The writer produced exactly want. */
static void expect_written(const char *out, size_t n, const char *want)
{
	cr_assert(eq(sz, n, strlen(want)));
	cr_assert(eq(int, memcmp(out, want, n), 0));
}

static struct rc_ws_accept rfc_accept(const char *subprotocol)
{
	struct rc_ws_accept acc = {0};

	rc_handshake_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, acc.accept_key);
	if (subprotocol != NULL)
		acc.subprotocol = (struct rc_slice){subprotocol, (uint32_t)strlen(subprotocol)};
	return acc;
}

Test(handshake, writes_101_without_subprotocol)
{
	static const char want[] = HEAD_101 "\r\n";
	struct rc_ws_accept acc = rfc_accept(NULL);
	char out[512];
	size_t n = rc_handshake_write_101(out, sizeof(out), &acc, NULL);

	expect_written(out, n, want);
}

Test(handshake, writes_101_with_subprotocol_and_extra_headers)
{
	static const char want[] = HEAD_101 "Sec-WebSocket-Protocol: chat\r\n"
					    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
					    "\r\n";
	struct rc_ws_accept acc = rfc_accept("chat");
	char out[512];
	size_t n = rc_handshake_write_101(out, sizeof(out), &acc,
					  "Sec-WebSocket-Extensions: permessage-deflate\r\n");

	expect_written(out, n, want);
}

Test(handshake, writes_426_with_version_header)
{
	static const char want[] = "HTTP/1.1 426 Upgrade Required\r\n"
				   "Content-Type: text/plain\r\n"
				   "Content-Length: 34\r\n"
				   "Connection: close\r\n"
				   "Sec-WebSocket-Version: 13\r\n"
				   "\r\n"
				   "unsupported Sec-WebSocket-Version\n";
	char out[512];
	size_t n = rc_handshake_write_error(out, sizeof(out), 426,
					    "unsupported Sec-WebSocket-Version");

	expect_written(out, n, want);
}

Test(handshake, writes_errors_with_their_reason)
{
	char out[512];
	size_t n =
		rc_handshake_write_error(out, sizeof(out), 405, "WebSocket upgrade requires GET");

	out[n] = '\0';
	cr_assert(eq(int, strncmp(out, "HTTP/1.1 405 Method Not Allowed\r\n", 33), 0));
	cr_assert(ne(ptr, strstr(out, "\r\nAllow: GET\r\n"), NULL));
	cr_assert(ne(ptr, strstr(out, "\r\n\r\nWebSocket upgrade requires GET\n"), NULL));
	n = rc_handshake_write_error(out, sizeof(out), 403, NULL);
	out[n] = '\0';
	cr_assert(ne(ptr, strstr(out, "\r\nConnection: close\r\n"), NULL));
	cr_assert(ne(ptr, strstr(out, "\r\n\r\nForbidden\n"), NULL));
	cr_assert(eq(ptr, strstr(out, "Sec-WebSocket-Version"), NULL));
}

/* Every capacity short of the full answer yields 0 and writes nothing past cap. */
static void expect_short_caps_refused(size_t (*write)(char *, size_t, const void *),
				      const void *arg)
{
	char out[512];
	size_t want = write(out, sizeof(out), arg);

	cr_assert(gt(sz, want, 0));
	for (size_t cap = 0; cap < want; cap++) {
		memset(out, 0x55, sizeof(out));
		cr_assert(eq(sz, write(out, cap, arg), 0), "cap %zu", cap);
		for (size_t i = cap; i < sizeof(out); i++)
			cr_assert(eq(u8, (uint8_t)out[i], 0x55));
	}
	cr_assert(eq(sz, write(out, want, arg), want));
}

static size_t write_101(char *out, size_t cap, const void *arg)
{
	return rc_handshake_write_101(out, cap, arg, "X-A: 1\r\n");
}

static size_t write_426(char *out, size_t cap, const void *arg)
{
	return rc_handshake_write_error(out, cap, 426, arg);
}

Test(handshake, writers_refuse_short_capacity)
{
	struct rc_ws_accept acc = rfc_accept("chat");

	expect_short_caps_refused(write_101, &acc);
	expect_short_caps_refused(write_426, "unsupported Sec-WebSocket-Version");
}
