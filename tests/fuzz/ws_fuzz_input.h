/*
 * How the WebSocket fuzz targets (ws_frame_fuzz.c, ws_assembler_fuzz.c) read their input: the
 * first byte picks the connection limits and the chunking, the rest is the client's byte
 * stream. Shared so that one corpus seed means the same thing to both. Header only.
 */
#ifndef RC_FUZZ_WS_FUZZ_INPUT_H
#define RC_FUZZ_WS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"
#include "ws_frame.h"

/*
 * First byte: bit 0 RSV1 negotiated, bit 1 client side (no mask required), bits 2-3
 * frame_bytes_max, bits 4-5 message_bytes_max, bits 6-7 chunking (1 byte, up to 7, up to 64,
 * up to 512).
 */
static inline struct rc_ws_limits ws_fuzz_limits(uint8_t b)
{
	static const uint64_t frame_max[4] = {125, 1000, 65536, UINT64_MAX};
	static const uint64_t message_max[4] = {200, 4096, 1u << 20, UINT64_MAX};

	return (struct rc_ws_limits){
		.frame_bytes_max = frame_max[(b >> 2) & 3],
		.message_bytes_max = message_max[(b >> 4) & 3],
		.rsv1_allowed = b & 1,
		.require_mask = !(b & 2),
	};
}

/* The largest chunk the first byte asks for. */
static inline size_t ws_fuzz_chunk_max(uint8_t b)
{
	static const size_t chunk_max[4] = {1, 7, 64, 512};

	return chunk_max[b >> 6];
}

/* Length of the next receive out of n bytes left: all of them when max is 0, else 1..max
 * from a generator whose state is *seed. */
static inline size_t ws_fuzz_chunk_len(uint32_t *seed, size_t n, size_t max)
{
	if (!max)
		return n;
	*seed = *seed * 1103515245u + 12345u;
	return RC_MIN(n, 1 + (*seed >> 16) % max);
}

#endif
