/*
 * Unit tests for src/http.c: the llhttp glue (whole input, every prefix, inputs ending at a
 * PROT_NONE guard page, limits, malformed and ambiguous requests) and the response writer.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/rc_assert.h"
#include "http.h"

/* Inputs are copied to end exactly where a PROT_NONE page begins: any over-read faults. */
#define GUARD_AREA_BYTES (64 * 1024)

static char *guard_area;
static size_t page_bytes;

static void guard_setup(void)
{
	page_bytes = (size_t)sysconf(_SC_PAGESIZE);
	guard_area = mmap(NULL, GUARD_AREA_BYTES + page_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(ne(ptr, guard_area, MAP_FAILED));
	cr_assert(eq(int, mprotect(guard_area + GUARD_AREA_BYTES, page_bytes, PROT_NONE), 0));
}

static void guard_teardown(void)
{
	munmap(guard_area, GUARD_AREA_BYTES + page_bytes);
	guard_area = NULL;
}

static const char *at_guard(const char *data, size_t len)
{
	cr_assert(le(sz, len, GUARD_AREA_BYTES));
	char *p = guard_area + GUARD_AREA_BYTES - len;

	memcpy(p, data, len);
	return p;
}

static const struct rc_http_limits limits = {
	.header_bytes_max = 8192,
	.body_bytes_max = 65536,
};

struct outcome {
	enum rc_parse r;
	size_t consumed;
	uint16_t status;
	const char *reason;
};

static struct outcome parse_at_guard(const char *data, size_t len, const struct rc_http_limits *lim,
				     struct rc_http_request *req)
{
	struct outcome o = {0};
	const char *buf = at_guard(data, len);

	o.r = rc_http_parse(buf, len, lim, req, &o.consumed, &o.status, &o.reason);
	return o;
}

/*
 * Feeds data[0..len) as a server accumulates it: every prefix must be PARTIAL, the whole
 * must be DONE having consumed exactly `expect` bytes. Leaves the whole parse in *req, with
 * its slices pointing into the guard area.
 */
static void expect_done(const char *data, size_t len, size_t expect,
			const struct rc_http_limits *lim, struct rc_http_request *req)
{
	for (size_t k = 0; k < expect; k++) {
		struct outcome o = parse_at_guard(data, k, lim, req);

		cr_assert(eq(int, o.r, RC_PARSE_PARTIAL), "prefix %zu of %zu: %d (%s)", k, len, o.r,
			  o.reason ? o.reason : "");
	}
	/* Whatever follows a complete request changes nothing about it. */
	for (size_t k = expect; k <= len; k++) {
		struct outcome o = parse_at_guard(data, k, lim, req);

		cr_assert(eq(int, o.r, RC_PARSE_DONE), "length %zu: %d (%s)", k, o.r,
			  o.reason ? o.reason : "");
		cr_assert(eq(sz, o.consumed, expect));
	}
	parse_at_guard(data, len, lim, req);
}

#define EXPECT_DONE(lit, req) expect_done(lit, sizeof(lit) - 1, sizeof(lit) - 1, &limits, req)

/*
 * Every prefix is PARTIAL or FAIL, a FAIL never turns back into PARTIAL, and the whole input
 * fails with `status`.
 */
static void expect_fail(const char *data, size_t len, const struct rc_http_limits *lim,
			uint16_t status)
{
	struct rc_http_request req;
	bool failed = false;

	for (size_t k = 0; k <= len; k++) {
		struct outcome o = parse_at_guard(data, k, lim, &req);

		if (failed || k == len)
			cr_assert(eq(int, o.r, RC_PARSE_FAIL), "length %zu of %zu: %d", k, len,
				  o.r);
		cr_assert(ne(int, o.r, RC_PARSE_DONE), "length %zu of %zu", k, len);
		if (o.r == RC_PARSE_FAIL) {
			failed = true;
			cr_assert(eq(u16, o.status, status), "length %zu: %u (%s)", k, o.status,
				  o.reason);
			cr_assert(ne(ptr, (void *)o.reason, NULL));
		}
	}
}

#define EXPECT_FAIL(lit, status) expect_fail(lit, sizeof(lit) - 1, &limits, status)

static bool slice_is(struct rc_slice s, const char *lit)
{
	return s.p != NULL && rc_slice_eq(s, lit);
}

TestSuite(http, .init = guard_setup, .fini = guard_teardown);

/* ---- valid requests -------------------------------------------------------------------------- */

Test(http, minimal_request)
{
	struct rc_http_request req;

	EXPECT_DONE("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_GET));
	cr_assert(eq(u8, req.version_major, 1));
	cr_assert(eq(u8, req.version_minor, 1));
	cr_assert(req.keep_alive);
	cr_assert(slice_is(req.target, "/"));
	cr_assert(slice_is(req.path, "/"));
	cr_assert(eq(u32, req.query.len, 0));
	cr_assert(slice_is(req.host, "a"));
	cr_assert(eq(ptr, (void *)req.upgrade.p, NULL));
	cr_assert(eq(u8, req.connection.count, 0));
	cr_assert(eq(u32, req.body.len, 0));
	cr_assert(eq(u32, req.head_len, 27));
}

Test(http, upgrade_with_every_kept_header)
{
	static const char r[] = "GET /ws/room?id=7&x=%20 HTTP/1.1\r\n"
				"Host: example.com:8080\r\n"
				"Upgrade: websocket\r\n"
				"Connection: keep-alive, Upgrade\r\n"
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				"Sec-WebSocket-Version: 13\r\n"
				"Origin: https://example.com\r\n"
				"Content-Type: text/plain\r\n"
				"Authorization: Bearer abc.def\r\n"
				"Sec-WebSocket-Protocol: chat, superchat\r\n"
				"Sec-WebSocket-Protocol: v2.json\r\n"
				"Sec-WebSocket-Extensions: permessage-deflate\r\n"
				"X-Ignored: yes\r\n"
				"\r\n";
	struct rc_http_request req;

	EXPECT_DONE(r, &req);
	cr_assert(slice_is(req.path, "/ws/room"));
	cr_assert(slice_is(req.query, "id=7&x=%20"));
	cr_assert(slice_is(req.host, "example.com:8080"));
	cr_assert(slice_is(req.upgrade, "websocket"));
	cr_assert(slice_is(req.ws_key, "dGhlIHNhbXBsZSBub25jZQ=="));
	cr_assert(slice_is(req.ws_version, "13"));
	cr_assert(slice_is(req.origin, "https://example.com"));
	cr_assert(slice_is(req.content_type, "text/plain"));
	cr_assert(slice_is(req.authorization, "Bearer abc.def"));
	cr_assert(eq(u8, req.connection.count, 1));
	cr_assert(eq(u8, req.ws_protocol.count, 2));
	cr_assert(slice_is(req.ws_protocol.v[1], "v2.json"));
	cr_assert(eq(u8, req.ws_extensions.count, 1));
	cr_assert(rc_http_has_token(&req.connection, "upgrade"));
	cr_assert(rc_http_has_token(&req.connection, "KEEP-ALIVE"));
	cr_assert(not(rc_http_has_token(&req.connection, "close")));
	cr_assert(eq(u32, req.head_len, sizeof(r) - 1));
}

/* The caching and resume headers of GET /ringcast.js and GET /sse; each may appear once. */
Test(http, if_none_match_and_last_event_id)
{
	struct rc_http_request req;
	uint16_t status = 0;
	const char *reason = NULL;
	size_t consumed = 0;
	struct rc_http_limits lim = {8192, 1 << 20};
	static const char dup[] = "GET /sse HTTP/1.1\r\nHost: a\r\nLast-Event-ID: a~1~f\r\n"
				  "Last-Event-ID: a~2~f\r\n\r\n";

	EXPECT_DONE("GET /sse HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"e1\"\r\n"
		    "last-event-id:  orders.eu~58~9f3c0a61d2b47e85 \r\n\r\n",
		    &req);
	cr_assert(slice_is(req.if_none_match, "\"e1\""));
	cr_assert(slice_is(req.last_event_id, "orders.eu~58~9f3c0a61d2b47e85"));
	cr_assert(eq(int, rc_http_parse(dup, sizeof(dup) - 1, &lim, &req, &consumed, &status, &reason),
		     RC_PARSE_FAIL));
	cr_assert(eq(u16, status, 400));
}

Test(http, multiple_connection_headers)
{
	struct rc_http_request req;

	EXPECT_DONE("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
		    "Connection:  ,, Upgrade ,\r\n\r\n",
		    &req);
	cr_assert(eq(u8, req.connection.count, 2));
	cr_assert(slice_is(req.connection.v[1], ",, Upgrade ,"));
	cr_assert(rc_http_has_token(&req.connection, "upgrade"));
	cr_assert(rc_http_has_token(&req.connection, "keep-alive"));
	cr_assert(not(rc_http_has_token(&req.connection, "upgrad")));
}

Test(http, pipelined_request_is_left_alone)
{
	static const char first[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
	static const char both[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
				   "GET /b HTTP/1.1\r\nHost: b\r\n\r\n";
	struct rc_http_request req;
	struct outcome o;

	expect_done(both, sizeof(both) - 1, sizeof(first) - 1, &limits, &req);
	cr_assert(slice_is(req.path, "/a"));
	/* The caller resumes right after the first request and finds the second one whole. */
	o = parse_at_guard(both + sizeof(first) - 1, sizeof(both) - sizeof(first), &limits, &req);
	cr_assert(eq(int, o.r, RC_PARSE_DONE));
	cr_assert(eq(sz, o.consumed, sizeof(both) - sizeof(first)));
	cr_assert(slice_is(req.path, "/b"));
	cr_assert(slice_is(req.host, "b"));
}

Test(http, header_names_in_odd_case)
{
	struct rc_http_request req;

	EXPECT_DONE("GET / HTTP/1.1\r\nhOsT: h\r\nUPGRADE: WebSocket\r\ncOnNeCtIoN: uPgRaDe\r\n"
		    "sec-websocket-key: k\r\nSEC-WEBSOCKET-VERSION: 13\r\noRiGiN: o\r\n\r\n",
		    &req);
	cr_assert(slice_is(req.host, "h"));
	cr_assert(slice_is(req.upgrade, "WebSocket"));
	cr_assert(rc_http_has_token(&req.connection, "Upgrade"));
	cr_assert(slice_is(req.ws_key, "k"));
	cr_assert(slice_is(req.ws_version, "13"));
	cr_assert(slice_is(req.origin, "o"));
}

/* Chrome 120's upgrade request, verbatim but for the host. */
Test(http, chromium_request)
{
	static const char r[] =
		"GET /chat HTTP/1.1\r\n"
		"Host: localhost:8080\r\n"
		"Connection: Upgrade\r\n"
		"Pragma: no-cache\r\n"
		"Cache-Control: no-cache\r\n"
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
		"(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
		"Upgrade: websocket\r\n"
		"Origin: http://localhost:8080\r\n"
		"Sec-WebSocket-Version: 13\r\n"
		"Accept-Encoding: gzip, deflate, br\r\n"
		"Accept-Language: en-US,en;q=0.9\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
		"\r\n";
	struct rc_http_request req;

	EXPECT_DONE(r, &req);
	cr_assert(slice_is(req.path, "/chat"));
	cr_assert(slice_is(req.origin, "http://localhost:8080"));
	cr_assert(slice_is(req.ws_extensions.v[0], "permessage-deflate; client_max_window_bits"));
}

/* python3-websockets 10.4's request, captured from the wire. */
Test(http, python_websockets_request)
{
	static const char r[] =
		"GET /chat?room=1 HTTP/1.1\r\n"
		"Host: 127.0.0.1:45913\r\n"
		"Upgrade: websocket\r\n"
		"Connection: Upgrade\r\n"
		"Sec-WebSocket-Key: T0OLTGE6ct6esiSi8GfjcQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n"
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
		"User-Agent: Python/3.11 websockets/10.4\r\n"
		"\r\n";
	struct rc_http_request req;

	EXPECT_DONE(r, &req);
	cr_assert(slice_is(req.path, "/chat"));
	cr_assert(slice_is(req.query, "room=1"));
	cr_assert(slice_is(req.ws_key, "T0OLTGE6ct6esiSi8GfjcQ=="));
}

Test(http, post_with_content_length_body)
{
	static const char r[] = "POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
				"Content-Type: application/json\r\n\r\n{\"t\":\"x\"}\r\n";
	static const char head_then_next[] = "POST /publish HTTP/1.1\r\nHost: a\r\n"
					     "Content-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n";
	struct rc_http_request req;

	EXPECT_DONE(r, &req);
	cr_assert(eq(u8, req.method, RC_HTTP_POST));
	cr_assert(slice_is(req.body, "{\"t\":\"x\"}\r\n"));
	cr_assert(eq(u32, req.head_len, sizeof(r) - 1 - 11));
	cr_assert(eq(ptr, (void *)req.body.p, (void *)(req.target.p - 5 + req.head_len)));
	expect_done(head_then_next, sizeof(head_then_next) - 1, sizeof(head_then_next) - 1 - 16,
		    &limits, &req);
	cr_assert(slice_is(req.body, "abc"));
}

/* Once the head is complete, a PARTIAL parse tells the whole request's length, at every
 * prefix of the body; before that it tells nothing. */
Test(http, partial_body_reports_announced_length)
{
	static const char r[] = "POST /publish HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
				"\r\n{\"t\":\"x\"}\r\n";
	size_t head = sizeof(r) - 1 - 11;
	struct rc_http_request req;

	for (size_t k = 0; k < sizeof(r) - 1; k++) {
		struct outcome o = parse_at_guard(r, k, &limits, &req);

		cr_assert(eq(int, o.r, RC_PARSE_PARTIAL));
		if (k < head) {
			cr_assert(eq(u32, req.head_len, 0));
			continue;
		}
		cr_assert(eq(u32, req.head_len, head));
		cr_assert(eq(u64, req.content_length, 11));
	}
}

Test(http, methods_versions_and_keep_alive)
{
	struct rc_http_request req;

	EXPECT_DONE("HEAD / HTTP/1.0\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_HEAD));
	cr_assert(eq(u8, req.version_minor, 0));
	cr_assert(not(req.keep_alive));
	EXPECT_DONE("DELETE /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_DELETE));
	cr_assert(not(req.keep_alive));
	EXPECT_DONE("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_OPTIONS));
	cr_assert(slice_is(req.path, "*"));
	EXPECT_DONE("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_PUT));
	EXPECT_DONE("PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n", &req);
	cr_assert(eq(u8, req.method, RC_HTTP_OTHER));
}

Test(http, target_forms_split_into_path_and_query)
{
	struct rc_http_request req;

	EXPECT_DONE("GET http://h:1/p/q?a=b HTTP/1.1\r\nHost: h:1\r\n\r\n", &req);
	cr_assert(slice_is(req.path, "/p/q"));
	cr_assert(slice_is(req.query, "a=b"));
	EXPECT_DONE("GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", &req);
	cr_assert(slice_is(req.path, "/p"));
	cr_assert(eq(u32, req.query.len, 0));
	EXPECT_DONE("GET /p?q#frag HTTP/1.1\r\nHost: a\r\n\r\n", &req);
	cr_assert(slice_is(req.path, "/p"));
	cr_assert(slice_is(req.query, "q"));
}

Test(http, values_are_trimmed_and_empty_values_present)
{
	struct rc_http_request req;

	EXPECT_DONE("GET / HTTP/1.1\r\nHost: \t a b \t \r\nOrigin:\r\n\r\n", &req);
	cr_assert(slice_is(req.host, "a b"));
	cr_assert(ne(ptr, (void *)req.origin.p, NULL));
	cr_assert(eq(u32, req.origin.len, 0));
}

Test(http, head_exactly_at_limit_is_accepted)
{
	static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct rc_http_limits lim = {.header_bytes_max = sizeof(r) - 1, .body_bytes_max = 0};
	struct rc_http_request req;

	expect_done(r, sizeof(r) - 1, sizeof(r) - 1, &lim, &req);
}

Test(http, body_exactly_at_limit_is_accepted)
{
	static const char r[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd";
	struct rc_http_limits lim = {.header_bytes_max = 100, .body_bytes_max = 4};
	struct rc_http_request req;

	expect_done(r, sizeof(r) - 1, sizeof(r) - 1, &lim, &req);
	cr_assert(slice_is(req.body, "abcd"));
}

/* ---- invalid requests ------------------------------------------------------------------------ */

Test(http, rejects_unknown_method)
{
	EXPECT_FAIL("FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(http, rejects_garbage)
{
	EXPECT_FAIL("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
	EXPECT_FAIL("GET / HTTP/1.1 extra\r\n\r\n", 400);
	EXPECT_FAIL("GET /a b HTTP/1.1\r\n\r\n", 400);
	EXPECT_FAIL("GET / HTTQ/1.1\r\n\r\n", 400);
}

Test(http, rejects_nul_bytes_in_headers)
{
	static const char in_value[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
	static const char in_name[] = "GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n";
	static const char in_target[] = "GET /\0 HTTP/1.1\r\n\r\n";

	expect_fail(in_value, sizeof(in_value) - 1, &limits, 400);
	expect_fail(in_name, sizeof(in_name) - 1, &limits, 400);
	expect_fail(in_target, sizeof(in_target) - 1, &limits, 400);
}

Test(http, rejects_duplicate_singletons)
{
	EXPECT_FAIL("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	EXPECT_FAIL("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
	EXPECT_FAIL("GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n", 400);
	EXPECT_FAIL("GET / HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n",
		    400);
	EXPECT_FAIL("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400);
	EXPECT_FAIL("GET / HTTP/1.1\r\nOrigin: a\r\nOrigin: b\r\n\r\n", 400);
}

Test(http, rejects_too_many_list_headers)
{
	static const char r[] = "GET / HTTP/1.1\r\n"
				"Connection: a\r\nConnection: a\r\nConnection: a\r\n"
				"Connection: a\r\nConnection: a\r\nConnection: a\r\n"
				"Connection: a\r\nConnection: a\r\nConnection: a\r\n\r\n";

	RC_STATIC_ASSERT(RC_HTTP_REPEAT_LIMIT == 8, "the vector repeats the header 9 times");
	EXPECT_FAIL(r, 400);
}

Test(http, rejects_head_over_limit_complete_or_not)
{
	static char big[GUARD_AREA_BYTES];
	static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
	size_t n = limits.header_bytes_max + 1;
	struct rc_http_request req;
	struct outcome o;

	memset(big, 'a', sizeof(big));
	memcpy(big, start, sizeof(start) - 1);
	/* Complete, one byte over the limit. */
	memcpy(big + n - 4, "\r\n\r\n", 4);
	expect_fail(big, n, &limits, 431);
	/* Never completed: the limit alone decides, however much arrives. */
	memset(big + n - 4, 'a', 4);
	o = parse_at_guard(big, limits.header_bytes_max, &limits, &req);
	cr_assert(eq(int, o.r, RC_PARSE_PARTIAL));
	o = parse_at_guard(big, limits.header_bytes_max + 1, &limits, &req);
	cr_assert(eq(int, o.r, RC_PARSE_FAIL));
	cr_assert(eq(u16, o.status, 431));
	o = parse_at_guard(big, sizeof(big), &limits, &req);
	cr_assert(eq(u16, o.status, 431));
}

Test(http, rejects_body_over_limit_before_it_arrives)
{
	struct rc_http_limits lim = {.header_bytes_max = 100, .body_bytes_max = 4};
	static const char r[] = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";

	expect_fail(r, sizeof(r) - 1, &lim, 413);
}

Test(http, rejects_transfer_codings)
{
	EXPECT_FAIL("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		    501);
	EXPECT_FAIL("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
	/* Both framings at once is a smuggling attempt, not an unsupported feature. */
	EXPECT_FAIL("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		    400);
}

Test(http, rejects_bad_content_length)
{
	EXPECT_FAIL("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	EXPECT_FAIL("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
	EXPECT_FAIL("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
}

Test(http, rejects_header_syntax_rfc7230_forbids)
{
	EXPECT_FAIL("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);	  /* space before colon */
	EXPECT_FAIL("GET / HTTP/1.1\r\n: a\r\n\r\n", 400);	  /* empty name */
	EXPECT_FAIL("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400); /* obs-fold */
	EXPECT_FAIL("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);	  /* leading space */
	EXPECT_FAIL("GET / HTTP/1.1\r\nHost: a\n\n", 400);	  /* bare LF */
	EXPECT_FAIL("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400);  /* bare CR */
	EXPECT_FAIL("GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", 400);	  /* control char */
	EXPECT_FAIL("GET / HTTP/1.1\r\nX(y): 1\r\n\r\n", 400);	  /* separator in name */
}

Test(http, rejects_http2_preface)
{
	EXPECT_FAIL("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400);
}

Test(http, missing_limits_abort, .signal = SIGABRT)
{
	struct rc_http_request req;
	size_t consumed;
	uint16_t status;
	const char *reason;

	rc_http_parse("GET", 3, NULL, &req, &consumed, &status, &reason);
}

/* ---- token lists ----------------------------------------------------------------------------- */

Test(http, next_token_walks_a_list)
{
	static const char v[] = " a ,, b\t,c ,";
	struct rc_slice list = {.p = v, .len = sizeof(v) - 1};
	struct rc_slice t;
	uint32_t pos = 0;

	cr_assert(rc_http_next_token(list, &pos, &t));
	cr_assert(rc_slice_eq(t, "a"));
	cr_assert(rc_http_next_token(list, &pos, &t));
	cr_assert(rc_slice_eq(t, "b"));
	cr_assert(rc_http_next_token(list, &pos, &t));
	cr_assert(rc_slice_eq(t, "c"));
	cr_assert(not(rc_http_next_token(list, &pos, &t)));
	cr_assert(not(rc_http_next_token(list, &pos, &t)));
}

/* ---- response writer ------------------------------------------------------------------------- */

/* The writer produced exactly want. */
static void expect_written(const char *out, size_t n, const char *want)
{
	cr_assert(eq(sz, n, strlen(want)));
	cr_assert(eq(int, memcmp(out, want, n), 0));
}

Test(http, status_texts)
{
	cr_assert(eq(str, (char *)rc_http_status_text(404), "Not Found"));
	cr_assert(eq(str, (char *)rc_http_status_text(431), "Request Header Fields Too Large"));
	cr_assert(eq(str, (char *)rc_http_status_text(799), "Unknown"));
}

Test(http, writes_a_complete_response)
{
	static const char want[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/plain\r\n"
				   "Content-Length: 3\r\n"
				   "Connection: close\r\n"
				   "X-A: 1\r\n"
				   "\r\n"
				   "ok\n";
	char out[256];
	size_t n = rc_http_write_response(out, sizeof(out), 200, "text/plain", "X-A: 1\r\n", "ok\n",
					  3, false);

	expect_written(out, n, want);
}

Test(http, writes_keep_alive_response_without_type_or_body)
{
	static const char want[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
	static const char no_content[] = "HTTP/1.1 204 No Content\r\n\r\n";
	char out[256];
	size_t n = rc_http_write_response(out, sizeof(out), 404, NULL, NULL, NULL, 0, true);

	expect_written(out, n, want);
	n = rc_http_write_response(out, sizeof(out), 204, NULL, NULL, NULL, 0, true);
	expect_written(out, n, no_content);
}

Test(http, response_writer_refuses_every_short_capacity)
{
	char out[256];
	char ref[256];
	size_t want = rc_http_write_response(ref, sizeof(ref), 503, "text/plain",
					     "Retry-After: 1\r\n", "busy\n", 5, false);

	cr_assert(gt(sz, want, 0));
	for (size_t cap = 0; cap < want; cap++) {
		memset(out, 0x55, sizeof(out));
		cr_assert(eq(sz,
			     rc_http_write_response(out, cap, 503, "text/plain",
						    "Retry-After: 1\r\n", "busy\n", 5, false),
			     0));
		/* Nothing past cap is touched. */
		for (size_t i = cap; i < sizeof(out); i++)
			cr_assert(eq(u8, (uint8_t)out[i], 0x55));
	}
	cr_assert(eq(sz,
		     rc_http_write_response(out, want, 503, "text/plain", "Retry-After: 1\r\n",
					    "busy\n", 5, false),
		     want));
	cr_assert(eq(int, memcmp(out, ref, want), 0));
}

Test(http, http11_without_host_is_refused)
{
	/* RFC 9112 §3.2; HTTP/1.0 has no such rule, an empty Host value is allowed. */
	EXPECT_FAIL("GET / HTTP/1.1\r\n\r\n", 400);
	EXPECT_FAIL("POST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400);
	struct rc_http_request req;
	EXPECT_DONE("GET / HTTP/1.0\r\n\r\n", &req);
	EXPECT_DONE("GET / HTTP/1.1\r\nHost:\r\n\r\n", &req);
}
