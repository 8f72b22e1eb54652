/*
 * libFuzzer target for the RESP glue of the Redis engine (src/redis_proto.c on replies decoded
 * by hiredis' redisReader, bounded by rc_redis_reader_create). The first input byte picks how
 * the rest is split into redisReaderFeed() calls (1 byte, up to 7, 64 or 512) and the bound
 * per reply (64 bytes to 2 MiB): no reply may take more, however large the counts it
 * declares. Every decoded reply goes through the script-result, stream-entry and
 * channel-message parsers, which must refuse or accept it without reading out of bounds, and
 * what they accept must be self-consistent (a payload's messages consecutive, their data
 * inside it and adding up to its end). The raw bytes are also parsed as a channel payload and
 * an address. Also linked without libFuzzer into the corpus replay
 * (tests/fuzz/replay/replay_main.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "redis_proto.h"
#include "resp_fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A channel payload: its messages, if it parses, are consecutive and tile its end. */
static void check_payload(const char *p, size_t n)
{
	struct rc_redis_msgs ms;
	struct rc_redis_msg m;
	if (rc_redis_parse_msgs(p, n, &ms) != 0)
		return;
	uint64_t seq = ms.seq, count = ms.count, read = 0;
	const char *at = NULL;
	RC_ASSERT(count >= 1 && count <= RC_REDIS_MSGS_LIMIT);
	while (rc_redis_msgs_next(&ms, &m)) {
		RC_ASSERT(m.seq == seq + read && m.epoch && m.seq);
		RC_ASSERT(m.data >= p && m.data + m.data_len <= p + n && (!at || m.data == at));
		at = m.data + m.data_len;
		read++;
	}
	RC_ASSERT(read == count && at == p + n);
}

static void check_entries(const redisReply *entries)
{
	for (size_t i = 0; i < entries->elements; i++) {
		struct rc_redis_msgs ms;
		struct rc_redis_msg m;
		if (rc_redis_parse_entry(entries->element[i], &ms) != 0)
			continue;
		uint32_t count = ms.count;
		while (rc_redis_msgs_next(&ms, &m)) {
			RC_ASSERT(m.data != NULL && m.seq != 0);
			count--;
		}
		RC_ASSERT(count == 0);
	}
}

/* Every parser on one decoded reply. */
static void check_reply(const redisReply *r)
{
	struct rc_redis_result res;
	if (rc_redis_parse_result(r, &res) == 0) {
		RC_ASSERT(res.epoch != 0);
		if (res.entries)
			check_entries(res.entries);
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements % 3 == 0) {
		size_t count = r->elements / 3; /* a batch of publishes' answer */
		for (size_t i = 0; i < count; i++)
			if (rc_redis_parse_item(r, count, i, &res) == 0)
				RC_ASSERT(res.epoch != 0 && !res.entries && !(res.duplicate && res.refused));
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	    r->element[2]->type == REDIS_REPLY_STRING)
		check_payload(r->element[2]->str, r->element[2]->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	resp_fuzz_replies(data, size, check_reply);
	check_payload((const char *)data, size);
	char *s = malloc(size + 1), host[64];
	uint16_t port;
	RC_ASSERT(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (rc_redis_parse_address(s, host, sizeof(host), &port) == 0)
		RC_ASSERT(port != 0 && strlen(host) < sizeof(host));
	free(s);
	return 0;
}
