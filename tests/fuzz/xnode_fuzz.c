/*
 * libFuzzer target for what the nodes sharing Redis tell each other (src/redis_xnode.c): the
 * first input byte picks how the rest is split into redisReaderFeed() calls (1 byte, up to 7,
 * 64 or 512); every decoded reply goes through the presence and registry reply parsers and
 * the JSON answers built from them, which must be JSON objects again; the raw bytes are also
 * parsed as an event and a control payload, and what those accept must lie inside the input
 * and write back to the same bytes. Also linked without libFuzzer into the corpus replay
 * (tests/fuzz/replay/replay_main.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/rc_assert.h"
#include "redis_xnode.h"
#include "resp_fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* text (taken) must be a JSON object. */
static void check_object(char *text, const size_t *len)
{
	if (!text)
		return;
	cJSON *root = cJSON_ParseWithLength(text, *len);
	RC_ASSERT(cJSON_IsObject(root));
	cJSON_Delete(root);
	free(text);
}

static void check_reply(const redisReply *r)
{
	struct rc_xnode_presence p;
	size_t skipped = 0, len = 0;
	if (rc_xnode_parse_presence(r, &p) == 0) {
		RC_ASSERT(p.users <= p.connections && p.clients);
		check_object(rc_xnode_write_presence(&p, "presence", "t", 1, true, &skipped, &len),
			     &len);
		RC_ASSERT(skipped <= p.clients->elements);
	}
	check_object(rc_xnode_write_info("{}", 2, r, &len), &len);
	check_object(rc_xnode_write_topics("a 1\n", 4, r, "n", &len), &len);
}

static void check_payloads(const char *p, size_t n)
{
	struct rc_xnode_event e;
	struct rc_xnode_ctl c;
	char out[512];
	if (rc_xnode_parse_event(p, n, &e) == 0) {
		RC_ASSERT(rc_xnode_is_event(p, n));
		RC_ASSERT(e.data >= p && e.data + e.data_len == p + n && e.node_len <= 64);
	}
	if (rc_xnode_parse_ctl(p, n, &c) == 0) {
		RC_ASSERT(c.user + c.user_len == p + n && c.user_len >= 1 && c.user_len <= 127);
		/* What a control message says writes back to the same bytes. */
		size_t w = rc_xnode_write_ctl(out, sizeof(out), &c);
		RC_ASSERT(w == n && memcmp(out, p, n) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	resp_fuzz_replies(data, size, check_reply);
	check_payloads((const char *)data, size);
	return 0;
}
