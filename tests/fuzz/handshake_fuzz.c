/*
 * Fuzz target for the HTTP request parser (src/http.c) and the WebSocket handshake
 * (src/handshake.c). The first byte picks the limits, the policy and the chunking; the rest
 * is fed the way a server accumulates a request: as a buffer growing chunk by chunk, parsed
 * whole each time. Each prefix is copied to end exactly at the end of its allocation so that
 * ASan catches any read past it. Checks that consumed stays within the input, slices stay
 * within the request, DONE and FAIL never change once reached, and that the handshake and
 * the writers behave on every complete request. Plain C: also linked into the gcc replay.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "handshake.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds the quadratic prefix replay: at most this many parses per input. */
#define PARSES_MAX 4096

static const uint32_t header_limits[] = {64, 256, 1024, 8192};
static const uint32_t body_limits[] = {0, 16, 256, 65536};
static const size_t steps[] = {1, 2, 3, 7, 16, 64, 256, SIZE_MAX};

static const struct rc_slice origins[] = {
	{.p = "http://example.com", .len = 18},
	{.p = "https://app.example", .len = 19},
};
static const struct rc_slice subprotocols[] = {
	{.p = "chat", .len = 4},
	{.p = "v2.json", .len = 7},
};

/* What a prefix parsed to, with slices kept as offsets so prefixes can be compared. */
struct result {
	enum rc_parse r;
	size_t consumed;
	uint16_t status;
	uint32_t head_len;
	size_t body_offset;
	uint32_t body_len;
};

static void check_slice(struct rc_slice s, const char *base, size_t end)
{
	if (s.p == NULL) {
		RC_ASSERT(s.len == 0);
		return;
	}
	RC_ASSERT(s.p >= base);
	RC_ASSERT((size_t)(s.p - base) + s.len <= end);
}

static void check_request(const struct rc_http_request *req, const char *base, size_t consumed,
			  const struct rc_http_limits *lim)
{
	const struct rc_slice *head[] = {&req->target,	     &req->path,    &req->query,
					 &req->host,	     &req->upgrade, &req->ws_key,
					 &req->ws_version,   &req->origin,  &req->content_type,
					 &req->authorization};
	const struct rc_http_multi *lists[] = {&req->connection, &req->ws_protocol,
					       &req->ws_extensions};

	RC_ASSERT(req->head_len > 0);
	RC_ASSERT(req->head_len <= lim->header_bytes_max);
	RC_ASSERT(req->head_len <= consumed);
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		check_slice(*head[i], base, req->head_len);
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		RC_ASSERT(lists[i]->count <= RC_HTTP_REPEAT_LIMIT);
		for (uint8_t j = 0; j < lists[i]->count; j++)
			check_slice(lists[i]->v[j], base, req->head_len);
	}
	RC_ASSERT(req->body.p == base + req->head_len);
	RC_ASSERT(req->head_len + req->body.len == consumed);
	RC_ASSERT(req->body.len <= lim->body_bytes_max);
}

/* Writes with a roomy buffer, then proves one byte less is refused and exact room suffices. */
static void check_writer_caps(size_t (*write)(char *, size_t, const void *), const void *arg)
{
	char roomy[4096];
	size_t n = write(roomy, sizeof(roomy), arg);
	char *exact;

	RC_ASSERT(n > 4);
	RC_ASSERT(memcmp(roomy, "HTTP/1.1 ", 9) == 0);
	exact = malloc(n);
	RC_ASSERT(exact != NULL);
	RC_ASSERT(write(exact, n - 1, arg) == 0);
	RC_ASSERT(write(exact, n, arg) == n);
	RC_ASSERT(memcmp(exact, roomy, n) == 0);
	free(exact);
}

static size_t write_101(char *out, size_t cap, const void *acc)
{
	return rc_handshake_write_101(out, cap, acc, "Sec-WebSocket-Extensions: x\r\n");
}

struct failure {
	int status;
	const char *reason;
};

static size_t write_error(char *out, size_t cap, const void *arg)
{
	const struct failure *f = arg;

	return rc_handshake_write_error(out, cap, f->status, f->reason);
}

static void run_handshake(const struct rc_http_request *req, const struct rc_ws_policy *pol)
{
	struct rc_ws_accept acc;
	struct failure f = {0};

	(void)rc_handshake_is_upgrade(req);
	f.status = rc_handshake_check(req, pol, &acc, &f.reason);
	if (f.status == 0) {
		RC_ASSERT(strlen(acc.accept_key) == 28);
		if (acc.subprotocol.len > 0)
			RC_ASSERT(acc.subprotocol.p == subprotocols[0].p ||
				  acc.subprotocol.p == subprotocols[1].p);
		check_writer_caps(write_101, &acc);
		return;
	}
	RC_ASSERT(f.status == 400 || f.status == 403 || f.status == 405 || f.status == 426);
	RC_ASSERT(f.reason != NULL);
	check_writer_caps(write_error, &f);
}

static struct result parse_prefix(char *buf, size_t cap, const uint8_t *data, size_t len,
				  const struct rc_http_limits *lim, struct rc_http_request *req)
{
	char *start = buf + cap - len;
	struct result res = {0};
	const char *reason = NULL;

	memcpy(start, data, len);
	res.r = rc_http_parse(start, len, lim, req, &res.consumed, &res.status, &reason);
	RC_ASSERT(res.consumed <= len);
	if (res.r == RC_PARSE_DONE) {
		check_request(req, start, res.consumed, lim);
		res.head_len = req->head_len;
		res.body_offset = (size_t)(req->body.p - start);
		res.body_len = req->body.len;
	} else if (res.r == RC_PARSE_FAIL) {
		RC_ASSERT(reason != NULL);
		RC_ASSERT(res.status == 400 || res.status == 413 || res.status == 431 ||
			  res.status == 501);
	} else {
		RC_ASSERT(res.r == RC_PARSE_PARTIAL);
		RC_ASSERT(res.consumed == 0);
	}
	return res;
}

/* Once a prefix is DONE or FAIL, a longer one must say exactly the same. */
static void check_stable(const struct result *first, const struct result *now)
{
	RC_ASSERT(now->r == first->r);
	RC_ASSERT(now->consumed == first->consumed);
	RC_ASSERT(now->status == first->status);
	RC_ASSERT(now->head_len == first->head_len);
	RC_ASSERT(now->body_offset == first->body_offset);
	RC_ASSERT(now->body_len == first->body_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_http_limits lim;
	struct rc_ws_policy pol = {0};
	struct rc_http_request req;
	struct result settled = {.r = RC_PARSE_PARTIAL};
	size_t step;
	char *buf;

	if (size == 0)
		return 0;
	lim.header_bytes_max = header_limits[data[0] & 3];
	lim.body_bytes_max = body_limits[(data[0] >> 2) & 3];
	step = steps[(data[0] >> 4) & 7];
	if (data[0] & 0x80) {
		pol = (struct rc_ws_policy){.origins = origins,
					    .origins_count = 2,
					    .subprotocols = subprotocols,
					    .subprotocols_count = 2,
					    .subprotocol_required = (data[0] & 0x40) != 0};
	}
	data++;
	size--;
	step = RC_MAX(step, size / PARSES_MAX + 1);
	buf = malloc(size > 0 ? size : 1);
	RC_ASSERT(buf != NULL);
	for (size_t len = 0;; len = step >= size - len ? size : len + step) {
		struct result now = parse_prefix(buf, size, data, len, &lim, &req);

		if (settled.r != RC_PARSE_PARTIAL)
			check_stable(&settled, &now);
		else if (now.r != RC_PARSE_PARTIAL)
			settled = now;
		if (len == size && now.r == RC_PARSE_DONE)
			run_handshake(&req, &pol);
		if (len == size)
			break;
	}
	free(buf);
	return 0;
}
