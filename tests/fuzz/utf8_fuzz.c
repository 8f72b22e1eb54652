/*
 * libFuzzer target for src/utf8.c. The first input byte picks how the rest is split into
 * rc_utf8_feed() calls (like uWS fuzzing/helpers.h); the result must match rc_utf8_valid() on
 * the whole input and a plain code-point decoder written here, and byte-by-byte feeding must
 * fail at exactly the first byte after which no completion of the input can be valid. Also
 * linked without libFuzzer into the corpus replay (tests/fuzz/replay/replay_main.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/rc_assert.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REF_BAD 0              /* ref_decode(): malformed */
#define REF_SHORT ((size_t)-1) /* ref_decode(): the sequence runs past the end of the input */

/*
 * Decodes the code point at p[0..n) the textbook way: length from the lead byte's high bits,
 * six payload bits per continuation, then overlong, surrogate and range checks on the value.
 * Returns the sequence length, or REF_BAD / REF_SHORT.
 */
static size_t ref_decode(const uint8_t *p, size_t n)
{
	static const uint32_t min_for_len[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t need;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		need = 2, cp = p[0] & 0x1fu;
	else if ((p[0] & 0xf0) == 0xe0)
		need = 3, cp = p[0] & 0x0fu;
	else if ((p[0] & 0xf8) == 0xf0)
		need = 4, cp = p[0] & 0x07u;
	else
		return REF_BAD;
	for (size_t i = 1; i < need; i++) {
		if (i == n)
			return REF_SHORT;
		if ((p[i] & 0xc0) != 0x80)
			return REF_BAD;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min_for_len[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return REF_BAD;
	return need;
}

/* Whole-buffer verdict of the reference: true if p[0..n) is complete, valid UTF-8. */
static bool ref_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = ref_decode(p + i, n - i);

		if (len == REF_BAD || len == REF_SHORT)
			return false;
		i += len;
	}
	return true;
}

/*
 * True if some bytes appended to p[0..n) make it valid. Only the last, unfinished sequence
 * matters, and continuations 80, 90 or A0 followed by 80s reach every second-byte range.
 */
static bool ref_completable(const uint8_t *p, size_t n)
{
	static const uint8_t firsts[] = { 0x80, 0x90, 0xa0 };
	uint8_t buf[16];
	size_t start = n;

	if (ref_valid(p, n))
		return true;
	/* Back over at most three continuation bytes to the lead of the unfinished sequence. */
	while (start > 0 && n - start < 3 && (p[start - 1] & 0xc0) == 0x80)
		start--;
	if (start == 0 || (p[start - 1] & 0xc0) == 0x80)
		return false;
	start--;
	if (n - start > 4 || !ref_valid(p, start))
		return false;
	for (size_t add = 1; add <= 3; add++) {
		for (size_t f = 0; f < sizeof(firsts); f++) {
			memcpy(buf, p + start, n - start);
			buf[n - start] = firsts[f];
			memset(buf + n - start + 1, 0x80, add - 1);
			if (ref_valid(buf, n - start + add))
				return true;
		}
	}
	return false;
}

/* Feeds data in chunks whose lengths come from a small generator seeded by `pick`. */
static bool feed_chunked(uint32_t *state, const uint8_t *p, size_t n, uint8_t pick)
{
	uint32_t rng = pick * 2654435761u + 1;
	size_t max = (pick & 15) ? (size_t)(pick & 15) : n + 1;
	bool ok = true;

	while (n > 0) {
		size_t len;

		rng = rng * 1103515245u + 12345u;
		len = 1 + (rng >> 16) % max;
		len = len < n ? len : n;
		ok = rc_utf8_feed(state, p, len);
		p += len;
		n -= len;
		if (!ok)
			RC_ASSERT(*state == RC_UTF8_REJECT);
	}
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t chunked = RC_UTF8_ACCEPT, bytewise = RC_UTF8_ACCEPT;
	const uint8_t *p = data + 1;
	size_t n, first_bad;
	bool valid, ok;

	if (size < 1)
		return 0;
	n = size - 1;
	valid = rc_utf8_valid(p, n);
	RC_ASSERT(valid == ref_valid(p, n));
	ok = feed_chunked(&chunked, p, n, data[0]);
	RC_ASSERT((ok && chunked == RC_UTF8_ACCEPT) == valid);

	for (first_bad = 0; first_bad < n; first_bad++)
		if (!rc_utf8_feed(&bytewise, p + first_bad, 1))
			break;
	RC_ASSERT(ok == (first_bad == n));
	RC_ASSERT(bytewise == chunked);
	RC_ASSERT(ref_completable(p, first_bad));
	if (first_bad < n)
		RC_ASSERT(!ref_completable(p, first_bad + 1));
	return 0;
}
