/*
 * How the RESP fuzz targets (redis_fuzz.c, xnode_fuzz.c) read their input: the first byte
 * picks how the rest is split into redisReaderFeed() calls (ws_fuzz_chunk_max), and every
 * reply hiredis' redisReader decodes from it is handed to a check. Header only.
 */
#ifndef RC_FUZZ_RESP_FUZZ_INPUT_H
#define RC_FUZZ_RESP_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "base/rc_assert.h"
#include "redis_proto.h" /* the bounded reader */
#include "ws_fuzz_input.h"

/* Feeds data[1..size) to a fresh reader bounded as the links' are (rc_redis_reader_create;
 * the bound, 64 bytes shifted by data[0] % 16, varies with the first byte too) in the chunks
 * data[0] asks for, and calls check on each decoded reply (borrowed for the call), until the
 * input ends or the reader fails. */
static inline void resp_fuzz_replies(const uint8_t *data, size_t size,
				     void (*check)(const redisReply *r))
{
	if (size < 1)
		return;
	const char *p = (const char *)data + 1;
	size_t n = size - 1, max = ws_fuzz_chunk_max(data[0]);
	uint32_t seed = data[0];
	struct rc_redis_bound bound;
	redisReader *reader = rc_redis_reader_create(&bound, (size_t)64 << (data[0] % 16));
	RC_ASSERT(reader != NULL);
	bool ok = true;
	while (ok && n > 0) {
		size_t len = ws_fuzz_chunk_len(&seed, n, max);
		ok = redisReaderFeed(reader, p, len) == REDIS_OK;
		p += len;
		n -= len;
		void *reply = NULL;
		while (ok && (ok = redisReaderGetReply(reader, &reply) == REDIS_OK) && reply) {
			RC_ASSERT(bound.bytes <= bound.bytes_max);
			rc_redis_bound_next(&bound);
			check(reply);
			freeReplyObject(reply);
			reply = NULL;
		}
		ok = ok && !rc_redis_reader_over(reader, &bound);
	}
	redisReaderFree(reader);
}

#endif
