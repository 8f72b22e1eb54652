/*
 * Unit tests for src/utf8.c: every vector is fed whole, byte by byte and split at every
 * boundary, each piece ending at a PROT_NONE guard page so an over-read faults; the DFA is
 * also checked exhaustively against an oracle built from Unicode Table 3-7 (ranges of
 * well-formed byte sequences), which shares nothing with the DFA's tables.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "utf8.h"

#define VALID (-1) /* the vector is complete, valid UTF-8 */
#define OPEN (-2)  /* valid so far, but ends inside a sequence */

struct vec {
	const char *name;
	const uint8_t *s;
	size_t len;
	int bad; /* index of the first invalid byte, or VALID / OPEN */
};

#define V(name, str, bad) { name, (const uint8_t *)(str), sizeof(str) - 1, bad }

static const struct vec vecs[] = {
	V("empty", "", VALID),
	V("ascii", "Hello, world! 0123456789 ~\x7f", VALID),
	V("nul", "a\0b", VALID),
	V("u+0080", "\xc2\x80", VALID),
	V("u+07ff", "\xdf\xbf", VALID),
	V("u+0800", "\xe0\xa0\x80", VALID),
	V("u+0fff", "\xe0\xbf\xbf", VALID),
	V("u+1000", "\xe1\x80\x80", VALID),
	V("u+d7ff", "\xed\x9f\xbf", VALID),
	V("u+e000", "\xee\x80\x80", VALID),
	V("u+fffd", "\xef\xbf\xbd", VALID),
	V("u+fffe noncharacter", "\xef\xbf\xbe", VALID),
	V("u+ffff noncharacter", "\xef\xbf\xbf", VALID),
	V("u+10000", "\xf0\x90\x80\x80", VALID),
	V("u+3ffff", "\xf0\xbf\xbf\xbf", VALID),
	V("u+40000", "\xf1\x80\x80\x80", VALID),
	V("u+fffff", "\xf3\xbf\xbf\xbf", VALID),
	V("u+100000", "\xf4\x80\x80\x80", VALID),
	V("u+10ffff", "\xf4\x8f\xbf\xbf", VALID),
	V("greek kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", VALID),
	V("mixed scripts", "ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80xyz\xd0\x96", VALID),
	V("long ascii then emoji", "0123456789abcdefghijklmnop\xf0\x9f\x8e\x89", VALID),
	V("truncated 2-byte", "\xc2", OPEN),
	V("truncated 3-byte", "a\xe1\x80", OPEN),
	V("truncated e0", "\xe0\xa0", OPEN),
	V("truncated 4-byte", "\xf1\x80\x80", OPEN),
	V("truncated f4", "\xf4\x8f", OPEN),
	V("stray continuation 80", "\x80", 0),
	V("stray continuation bf after ascii", "abc\xbf", 3),
	V("continuation after complete 2-byte", "\xc2\x80\x80", 2),
	V("overlong c0 80", "\xc0\x80", 0),
	V("overlong c1 bf", "\xc1\xbf", 0),
	V("overlong e0 80 80", "\xe0\x80\x80", 1),
	V("overlong e0 9f bf", "\xe0\x9f\xbf", 1),
	V("overlong f0 80 80 80", "\xf0\x80\x80\x80", 1),
	V("overlong f0 8f bf bf", "\xf0\x8f\xbf\xbf", 1),
	V("surrogate d800", "\xed\xa0\x80", 1),
	V("surrogate dfff", "\xed\xbf\xbf", 1),
	V("paired surrogates", "\xed\xa0\x80\xed\xb0\x80", 1),
	V("above u+10ffff f4 90", "\xf4\x90\x80\x80", 1),
	V("f5 lead", "\xf5\x80\x80\x80", 0),
	V("f8 lead", "\xf8\x88\x80\x80\x80", 0),
	V("fe", "\xfe", 0),
	V("ff", "ab\xff", 2),
	V("lead then ascii", "\xc2\x41", 1),
	V("3-byte lead, cont, ascii", "\xe1\x80\x41", 2),
	V("4-byte lead, two cont, ascii", "\xf1\x80\x80\x41", 3),
	V("lead then lead", "\xe2\xe2\x82\xac", 1),
	V("invalid after long ascii run", "0123456789abcdefghij\x80", 20),
	V("kosme with surrogate", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 12),
};

static uint8_t *guard;
static size_t page_size;

static void guard_init(void)
{
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	guard = mmap(NULL, 2 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	cr_assert(guard != MAP_FAILED);
	cr_assert(eq(int, mprotect(guard + page_size, page_size, PROT_NONE), 0));
}

static void guard_fini(void)
{
	munmap(guard, 2 * page_size);
}

TestSuite(utf8, .init = guard_init, .fini = guard_fini);

/* Feeds p[0..len) from a copy that ends exactly where the guard page starts. */
static bool feed_guarded(uint32_t *state, const uint8_t *p, size_t len)
{
	uint8_t *dst = guard + page_size - len;

	cr_assert(len <= page_size);
	memcpy(dst, p, len);
	return rc_utf8_feed(state, dst, len);
}

/* Unicode Table 3-7: each row is one shape of well-formed sequence, by byte ranges. */
struct row {
	uint8_t lo[4];
	uint8_t hi[4];
	uint8_t len;
};

static const struct row table_3_7[] = {
	{ { 0x00 }, { 0x7f }, 1 },
	{ { 0xc2, 0x80 }, { 0xdf, 0xbf }, 2 },
	{ { 0xe0, 0xa0, 0x80 }, { 0xe0, 0xbf, 0xbf }, 3 },
	{ { 0xe1, 0x80, 0x80 }, { 0xec, 0xbf, 0xbf }, 3 },
	{ { 0xed, 0x80, 0x80 }, { 0xed, 0x9f, 0xbf }, 3 },
	{ { 0xee, 0x80, 0x80 }, { 0xef, 0xbf, 0xbf }, 3 },
	{ { 0xf0, 0x90, 0x80, 0x80 }, { 0xf0, 0xbf, 0xbf, 0xbf }, 4 },
	{ { 0xf1, 0x80, 0x80, 0x80 }, { 0xf3, 0xbf, 0xbf, 0xbf }, 4 },
	{ { 0xf4, 0x80, 0x80, 0x80 }, { 0xf4, 0x8f, 0xbf, 0xbf }, 4 },
};

/* The oracle: the same answer as struct vec's `bad` field, computed from Table 3-7. */
static int oracle(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const struct row *r = NULL;

		for (size_t k = 0; k < sizeof(table_3_7) / sizeof(table_3_7[0]); k++)
			if (p[i] >= table_3_7[k].lo[0] && p[i] <= table_3_7[k].hi[0])
				r = &table_3_7[k];
		if (!r)
			return (int)i;
		for (size_t k = 1; k < r->len; k++) {
			if (i + k == n)
				return OPEN;
			if (p[i + k] < r->lo[k] || p[i + k] > r->hi[k])
				return (int)(i + k);
		}
		i += r->len;
	}
	return VALID;
}

/* Checks the result of one whole-buffer feed against the expected `bad`. */
static void check_whole(const char *name, const uint8_t *p, size_t n, int bad)
{
	uint32_t st = RC_UTF8_ACCEPT;
	bool ok = feed_guarded(&st, p, n);

	cr_assert(eq(int, ok, bad < 0), "%s: whole feed", name);
	if (bad == VALID)
		cr_assert(eq(u32, st, RC_UTF8_ACCEPT), "%s: state", name);
	else if (bad == OPEN)
		cr_assert(st != RC_UTF8_ACCEPT && st != RC_UTF8_REJECT, "%s: state open", name);
	else
		cr_assert(eq(u32, st, RC_UTF8_REJECT), "%s: state reject", name);
	cr_assert(eq(int, rc_utf8_valid(guard + page_size - n, n), bad == VALID), "%s", name);
}

/* Byte by byte: true up to the first invalid byte, false from it on (sticky). */
static void check_bytewise(const struct vec *v)
{
	uint32_t st = RC_UTF8_ACCEPT;

	for (size_t i = 0; i < v->len; i++) {
		bool ok = feed_guarded(&st, v->s + i, 1);

		cr_assert(eq(int, ok, v->bad < 0 || (int)i < v->bad), "%s: byte %zu", v->name, i);
	}
	cr_assert(eq(int, st == RC_UTF8_ACCEPT, v->bad == VALID), "%s: final state", v->name);
}

/* Two calls split at k: the first fails iff the bad byte is in it, the second iff bad. */
static void check_splits(const struct vec *v)
{
	for (size_t k = 0; k <= v->len; k++) {
		uint32_t st = RC_UTF8_ACCEPT;
		bool first = feed_guarded(&st, v->s, k);
		bool second = feed_guarded(&st, v->s + k, v->len - k);

		cr_assert(eq(int, first, v->bad < 0 || (int)k <= v->bad), "%s: split %zu", v->name,
			  k);
		cr_assert(eq(int, second, v->bad < 0), "%s: split %zu second", v->name, k);
		cr_assert(eq(int, st == RC_UTF8_ACCEPT, v->bad == VALID), "%s: %zu", v->name, k);
	}
}

static void check_vector(const struct vec *v)
{
	cr_assert(eq(int, oracle(v->s, v->len), v->bad), "%s: oracle disagrees", v->name);
	check_whole(v->name, v->s, v->len, v->bad);
	check_bytewise(v);
	check_splits(v);
}

static size_t count_vectors(int kind)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
		n += (kind == VALID) ? vecs[i].bad == VALID : vecs[i].bad != VALID;
	return n;
}

/* Valid vectors: accepted whole, byte by byte and at every split. */
Test(utf8, accepts_valid_vectors)
{
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
		if (vecs[i].bad == VALID)
			check_vector(&vecs[i]);
}

/* Invalid and truncated vectors: rejected at exactly the first bad byte however split. */
Test(utf8, rejects_invalid_vectors)
{
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
		if (vecs[i].bad != VALID)
			check_vector(&vecs[i]);
}

/* The negative space is about as large as the positive one. */
Test(utf8, invalid_cases_match_valid_ones_in_number)
{
	size_t good = count_vectors(VALID), bad = count_vectors(0);

	cr_assert(bad >= good && bad <= good + good / 2, "valid %zu, invalid %zu", good, bad);
}

/* A four-byte lead above U+10FFFF is caught by its second byte in a second call. */
Test(utf8, split_f4_90_fails_on_second_call)
{
	uint32_t st = RC_UTF8_ACCEPT;

	cr_assert(feed_guarded(&st, (const uint8_t *)"\xf4", 1));
	cr_assert(not(feed_guarded(&st, (const uint8_t *)"\x90", 1)));
	cr_assert(eq(u32, st, RC_UTF8_REJECT));
}

/* A surrogate is caught by its second byte in a second call. */
Test(utf8, split_ed_a0_fails_on_second_call)
{
	uint32_t st = RC_UTF8_ACCEPT;

	cr_assert(feed_guarded(&st, (const uint8_t *)"\xed", 1));
	cr_assert(not(feed_guarded(&st, (const uint8_t *)"\xa0\x80", 2)));
	cr_assert(eq(u32, st, RC_UTF8_REJECT));
}

/* A split code point is accepted once its last byte arrives. */
Test(utf8, split_code_point_completes_in_third_call)
{
	uint32_t st = RC_UTF8_ACCEPT;

	cr_assert(feed_guarded(&st, (const uint8_t *)"ok\xf0", 3));
	cr_assert(feed_guarded(&st, (const uint8_t *)"\x9f\x98", 2));
	cr_assert(st != RC_UTF8_ACCEPT);
	cr_assert(feed_guarded(&st, (const uint8_t *)"\x80", 1));
	cr_assert(eq(u32, st, RC_UTF8_ACCEPT));
}

/* Once rejected, valid input never revives the state. */
Test(utf8, reject_is_sticky)
{
	uint32_t st = RC_UTF8_ACCEPT;

	cr_assert(not(feed_guarded(&st, (const uint8_t *)"\xc0", 1)));
	cr_assert(not(feed_guarded(&st, (const uint8_t *)"plain ascii text", 16)));
	cr_assert(not(feed_guarded(&st, (const uint8_t *)"", 0)));
	cr_assert(eq(u32, st, RC_UTF8_REJECT));
}

/* Empty input changes nothing, in any state. */
Test(utf8, empty_input_keeps_state)
{
	uint32_t st = RC_UTF8_ACCEPT;

	cr_assert(rc_utf8_feed(&st, NULL, 0));
	cr_assert(eq(u32, st, RC_UTF8_ACCEPT));
	cr_assert(feed_guarded(&st, (const uint8_t *)"\xe2", 1));
	cr_assert(feed_guarded(&st, (const uint8_t *)"", 0));
	cr_assert(feed_guarded(&st, (const uint8_t *)"\x82\xac", 2));
	cr_assert(eq(u32, st, RC_UTF8_ACCEPT));
	cr_assert(rc_utf8_valid(NULL, 0));
}

/* Each vector inside ASCII padding at every alignment, so the 8-byte path meets it anywhere. */
Test(utf8, fast_path_every_alignment)
{
	uint8_t buf[128];

	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		const struct vec *v = &vecs[i];

		for (size_t pre = 0; pre < 18; pre++) {
			for (size_t post = 0; post < 10; post++) {
				int bad = v->bad < 0 ? v->bad : v->bad + (int)pre;

				memset(buf, 'a', pre);
				memcpy(buf + pre, v->s, v->len);
				memset(buf + pre + v->len, 'z', post);
				if (v->bad == OPEN && post > 0)
					bad = (int)(pre + v->len);
				check_whole(v->name, buf, pre + v->len + post, bad);
			}
		}
	}
}

/* Every input of one, two and three bytes, whole, against the oracle. */
Test(utf8, matches_oracle_on_all_short_inputs)
{
	uint8_t b[3];

	for (size_t n = 1; n <= 3; n++) {
		for (uint32_t x = 0; x < (1u << (8 * n)); x++) {
			uint32_t st = RC_UTF8_ACCEPT;

			for (size_t i = 0; i < n; i++)
				b[i] = (uint8_t)(x >> (8 * (n - 1 - i)));
			int want = oracle(b, n);
			bool ok = rc_utf8_feed(&st, b, n);

			if (ok != (want < 0) || (st == RC_UTF8_ACCEPT) != (want == VALID))
				cr_fatal("input %06x (%zu bytes): ok %d state %u", x, n, ok, st);
		}
	}
}

/* Four-byte inputs: every lead byte with the boundary values of every continuation range. */
Test(utf8, matches_oracle_on_four_byte_boundaries)
{
	static const uint8_t edge[] = { 0x00, 0x41, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x9f,
					0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xf4, 0xff };
	uint8_t b[4];

	for (unsigned lead = 0; lead < 256; lead++) {
		b[0] = (uint8_t)lead;
		for (unsigned x = 0; x < 16 * 16 * 16; x++) {
			uint32_t st = RC_UTF8_ACCEPT;

			b[1] = edge[x >> 8];
			b[2] = edge[(x >> 4) & 15];
			b[3] = edge[x & 15];
			int want = oracle(b, 4);

			bool ok = feed_guarded(&st, b, 4);

			if (ok != (want < 0) || (st == RC_UTF8_ACCEPT) != (want == VALID))
				cr_fatal("%02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
		}
	}
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Pseudo-random byte soup biased toward interesting bytes, split three ways. */
Test(utf8, matches_oracle_on_random_splits)
{
	static const uint8_t pick[] = { 'a', 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf, 0xc2,
					0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5 };
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	uint8_t b[40];

	for (int iter = 0; iter < 200000; iter++) {
		uint32_t st = RC_UTF8_ACCEPT;
		size_t n = xorshift(&rng) % sizeof(b);
		size_t a = xorshift(&rng) % (n + 1);
		size_t c = a + xorshift(&rng) % (n - a + 1);

		for (size_t i = 0; i < n; i++) {
			uint64_t r = xorshift(&rng);

			b[i] = (r & 3) ? pick[(r >> 2) & 15] : (uint8_t)(r >> 8);
		}
		int want = oracle(b, n);
		bool ok = feed_guarded(&st, b, a);

		ok = feed_guarded(&st, b + a, c - a) && ok;
		ok = feed_guarded(&st, b + c, n - c) && ok;
		if (ok != (want < 0) || (st == RC_UTF8_ACCEPT) != (want == VALID))
			cr_fatal("iteration %d: ok %d state %u want %d", iter, ok, st, want);
	}
}
