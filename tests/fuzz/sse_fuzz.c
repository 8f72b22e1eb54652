/*
 * libFuzzer target for src/sse.c. The first input byte splits the rest into a GET /sse query
 * and a Last-Event-ID; whatever rc_sse_parse accepts must name valid, distinct topics that lie
 * inside the decode buffer (sized exactly, so a write past it is caught). The whole input is
 * also framed as an event: reading the event back (data lines joined by LF) gives the input
 * with its line breaks as LF, and ids written for the parsed positions parse back to them.
 * Also linked without libFuzzer into the corpus replay (tests/fuzz/replay/replay_main.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "envelope.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads an event back as a client does: the id line, then data lines joined by LF. */
static void check_event(const char *p, size_t n)
{
	size_t len = rc_sse_write_event(NULL, 0, "x~1", 3, p, n);
	char *ev = malloc(len), *back = malloc(n + 1);
	RC_ASSERT(ev && back);
	RC_ASSERT(rc_sse_write_event(ev, len, "x~1", 3, p, n) == len);
	RC_ASSERT(len >= 12 && memcmp(ev, "id: x~1\n", 8) == 0);
	RC_ASSERT(ev[len - 1] == '\n' && ev[len - 2] == '\n');
	size_t o = 0;
	for (size_t i = 8; i < len - 1;) {
		const char *nl = memchr(ev + i, '\n', len - 1 - i);
		RC_ASSERT(nl && memcmp(ev + i, "data: ", 6) == 0);
		if (i > 8)
			back[o++] = '\n';
		memcpy(back + o, ev + i + 6, (size_t)(nl - ev) - i - 6);
		o += (size_t)(nl - ev) - i - 6;
		i = (size_t)(nl - ev) + 1;
	}
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		bool crlf = p[i] == '\r' && i + 1 < n && p[i + 1] == '\n';
		RC_ASSERT(w < o && back[w] == (p[i] == '\r' ? '\n' : p[i]));
		w++;
		i += crlf;
	}
	RC_ASSERT(w == o);
	free(ev);
	free(back);
}

static void check_request(const struct rc_sse_request *req, const char *buf, size_t cap)
{
	char id[RC_SSE_ID_LIMIT];
	struct rc_sse_topic back;
	RC_ASSERT(req->count >= 1 && req->count <= RC_SSE_TOPICS_LIMIT);
	for (uint32_t i = 0; i < req->count; i++) {
		const struct rc_sse_topic *t = &req->topics[i];
		RC_ASSERT(t->name.p >= buf && t->name.p + t->name.len <= buf + cap);
		RC_ASSERT(rc_topic_name_valid(t->name.p, t->name.len));
		for (uint32_t j = 0; j < i; j++)
			RC_ASSERT(req->topics[j].name.len != t->name.len ||
				  memcmp(req->topics[j].name.p, t->name.p, t->name.len) != 0);
		if (!t->has_since)
			continue;
		size_t n = rc_sse_write_id(id, t->name.p, t->name.len, t->since, t->epoch);
		RC_ASSERT(rc_sse_parse_position(id, n, &back));
		RC_ASSERT(back.since == t->since && back.epoch == t->epoch && back.has_epoch);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1, split = n ? data[0] % (n + 1) : 0;
	struct rc_slice query = {p, (uint32_t)split}, leid = {p + split, (uint32_t)(n - split)};
	struct rc_sse_request req;
	const char *reason = NULL;
	char *buf = malloc(split + 1);
	RC_ASSERT(buf);
	if (rc_sse_parse(query, leid, buf, split + 1, &req, &reason) == 0)
		check_request(&req, buf, split + 1);
	else
		RC_ASSERT(reason != NULL);
	free(buf);
	check_event(p, n);
	return 0;
}
