/*
 * libFuzzer target for rc_pmd_inflate() and rc_pmd_deflate(). The first byte picks the output
 * limit (bits 0-2) and a compression level (bits 3-6); the rest is a compressed message as a
 * client would send it, placed in an exact-size heap buffer with only RC_PMD_TAIL_ROOM bytes
 * after it, so ASan sees any access beyond what the inflater may borrow. Checks: the result is
 * one of the three outcomes, the output stays within the limit, message and tail room come
 * back unchanged, and the limit is monotone (what inflates under a small limit inflates the
 * same under a large one; what is corrupt stays corrupt). Then the rest is compressed at the
 * picked level and must inflate back exactly, or be a bomb under a limit one byte short. Also
 * linked without libFuzzer into the corpus replay.
 */
#include <libdeflate.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LARGE_LIMIT (4u << 20)

static const size_t limits[8] = { 0, 1, 5, 64, 1000, 4096, 65536, LARGE_LIMIT };

static struct libdeflate_decompressor *dec;
static struct libdeflate_compressor *comp[RC_PMD_LEVEL_MAX + 1];
static uint8_t small_out[LARGE_LIMIT], large_out[LARGE_LIMIT];

static void setup(void)
{
	if (dec)
		return;
	dec = libdeflate_alloc_decompressor();
	RC_ASSERT(dec != NULL);
	for (int l = RC_PMD_LEVEL_MIN; l <= RC_PMD_LEVEL_MAX; l++) {
		comp[l] = libdeflate_alloc_compressor(l);
		RC_ASSERT(comp[l] != NULL);
	}
}

/*
 * libdeflate is not instrumented, so libFuzzer sees few edges inside the inflater. Each
 * outcome gets its own branches instead: which result, and the log2 bucket of the output
 * size under it, so inputs that inflate further (toward bombs) or fail differently count as
 * new coverage. The macro unrolls into one distinct branch per bucket.
 */
static volatile unsigned outcome_hits;

#define BUCKET(x, k)                                                                               \
	do {                                                                                       \
		if ((x) >> (k))                                                                    \
			outcome_hits += (k);                                                       \
	} while (0)
#define BUCKETS(x)                                                                                 \
	do {                                                                                       \
		BUCKET(x, 0); BUCKET(x, 1); BUCKET(x, 2); BUCKET(x, 3); BUCKET(x, 4);              \
		BUCKET(x, 5); BUCKET(x, 6); BUCKET(x, 7); BUCKET(x, 8); BUCKET(x, 9);              \
		BUCKET(x, 10); BUCKET(x, 11); BUCKET(x, 12); BUCKET(x, 13); BUCKET(x, 14);         \
		BUCKET(x, 15); BUCKET(x, 16); BUCKET(x, 17); BUCKET(x, 18); BUCKET(x, 19);         \
		BUCKET(x, 20); BUCKET(x, 21); BUCKET(x, 22);                                       \
	} while (0)

static void note_outcome(int r, size_t len)
{
	if (r == 0)
		BUCKETS(len);
	else if (r == RC_PMD_ERR_TOO_BIG)
		outcome_hits += 1000;
	else
		outcome_hits += 2000;
}

/* Inflates msg[0..n) from a heap copy with exactly the tail room after it, room pattern
 * filled; checks what every call must guarantee. */
static int inflate_checked(const uint8_t *msg, size_t n, uint8_t *out, size_t out_max,
			   size_t *len)
{
	uint8_t *buf = malloc(n + RC_PMD_TAIL_ROOM);
	int r;

	RC_ASSERT(buf != NULL);
	memcpy(buf, msg, n);
	memset(buf + n, 0x5a, RC_PMD_TAIL_ROOM);
	*len = 12345;
	r = rc_pmd_inflate(dec, buf, n, out, out_max, len);
	RC_ASSERT(r == 0 || r == RC_PMD_ERR_TOO_BIG || r == RC_PMD_ERR_CORRUPT);
	RC_ASSERT(*len <= out_max);
	note_outcome(r, *len);
	if (r != 0)
		RC_ASSERT(*len == 0);
	RC_ASSERT(memcmp(buf, msg, n) == 0);
	for (size_t i = 0; i < RC_PMD_TAIL_ROOM; i++)
		RC_ASSERT(buf[n + i] == 0x5a);
	free(buf);
	return r;
}

static void check_client_message(const uint8_t *msg, size_t n, size_t limit)
{
	size_t small_len, large_len;
	int small = inflate_checked(msg, n, small_out, limit, &small_len);
	int large;

	if (limit == LARGE_LIMIT)
		return;
	large = inflate_checked(msg, n, large_out, LARGE_LIMIT, &large_len);
	if (small == 0) {
		RC_ASSERT(large == 0 && large_len == small_len);
		RC_ASSERT(memcmp(small_out, large_out, small_len) == 0);
	} else if (small == RC_PMD_ERR_CORRUPT) {
		RC_ASSERT(large == RC_PMD_ERR_CORRUPT);
	} else if (large == 0) {
		RC_ASSERT(large_len > limit);
	}
}

static void check_round_trip(const uint8_t *in, size_t n, int level)
{
	size_t cap = rc_pmd_deflate_bound(n), zlen, len;
	uint8_t *z;

	if (n > LARGE_LIMIT)
		return;
	z = malloc(cap);
	RC_ASSERT(z != NULL);
	zlen = rc_pmd_deflate(comp[level], in, n, z, cap);
	RC_ASSERT(zlen > 0 && zlen <= cap && z[zlen - 1] == 0x00);
	RC_ASSERT(inflate_checked(z, zlen, large_out, n, &len) == 0);
	RC_ASSERT(len == n && memcmp(large_out, in, n) == 0);
	if (n > 0)
		RC_ASSERT(inflate_checked(z, zlen, large_out, n - 1, &len) == RC_PMD_ERR_TOO_BIG);
	/* A cap below the input size either fails or still round-trips. */
	if (n > 0 && (zlen = rc_pmd_deflate(comp[level], in, n, z, n - 1)) > 0) {
		RC_ASSERT(zlen < n);
		RC_ASSERT(inflate_checked(z, zlen, large_out, n, &len) == 0);
		RC_ASSERT(len == n && memcmp(large_out, in, n) == 0);
	}
	free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t limit;
	int level;

	if (size < 1)
		return 0;
	setup();
	limit = limits[data[0] & 7];
	level = RC_PMD_LEVEL_MIN + ((data[0] >> 3) & 15) % RC_PMD_LEVEL_MAX;
	check_client_message(data + 1, size - 1, limit);
	check_round_trip(data + 1, size - 1, level);
	return 0;
}
