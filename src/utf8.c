/*
 * Incremental UTF-8 validation for text messages and close reasons. Owns the byte-class table
 * and the transition table of a small DFA whose states mean "how many continuation bytes are
 * still due, and which range the next one must fall in"; it decodes no code points. Does not
 * own any buffer: callers pass borrowed bytes. Pure; any thread.
 *
 * The DFA accepts exactly the well-formed sequences of Unicode Table 3-7 (RFC 3629): a lead
 * byte that could only start an overlong (C0, C1) or a value above U+10FFFF (F5..FF) is
 * rejected at once, and the three-byte and four-byte leads whose second byte range is narrowed
 * (E0, ED, F0, F4) get their own states, so the first byte that makes the input invalid is the
 * byte that fails, even when a sequence is split across calls.
 */
#include "utf8.h"

#include <string.h>

#include "base/rc_assert.h"

/* Byte classes: which input bytes the DFA treats alike. */
enum {
	CL_ASCII = 0, /* 00..7F */
	CL_CONT_LO,   /* 80..8F */
	CL_CONT_MID,  /* 90..9F */
	CL_CONT_HI,   /* A0..BF */
	CL_BAD,       /* C0, C1, F5..FF: never valid anywhere */
	CL_LEAD2,     /* C2..DF */
	CL_E0,        /* E0: second byte A0..BF, else overlong */
	CL_LEAD3,     /* E1..EC, EE, EF */
	CL_ED,        /* ED: second byte 80..9F, else surrogate */
	CL_F0,        /* F0: second byte 90..BF, else overlong */
	CL_LEAD4,     /* F1..F3 */
	CL_F4,        /* F4: second byte 80..8F, else above U+10FFFF */
	CL_COUNT,
};

/* DFA states. ACCEPT and REJECT are fixed by utf8.h; the rest are internal. */
enum {
	ST_ACCEPT = RC_UTF8_ACCEPT,
	ST_REJECT = RC_UTF8_REJECT,
	ST_NEED1,  /* one continuation byte due, any of 80..BF */
	ST_NEED2,  /* two due, any */
	ST_E0,     /* after E0: A0..BF, then one more */
	ST_ED,     /* after ED: 80..9F, then one more */
	ST_NEED3,  /* three due, any */
	ST_F0,     /* after F0: 90..BF, then two more */
	ST_F4,     /* after F4: 80..8F, then two more */
	ST_COUNT,
};

RC_STATIC_ASSERT(RC_UTF8_ACCEPT == 0 && RC_UTF8_REJECT == 1, "utf8.h state values moved");

static const uint8_t byte_class[256] = {
	[0x00 ... 0x7F] = CL_ASCII,
	[0x80 ... 0x8F] = CL_CONT_LO,
	[0x90 ... 0x9F] = CL_CONT_MID,
	[0xA0 ... 0xBF] = CL_CONT_HI,
	[0xC0 ... 0xC1] = CL_BAD,
	[0xC2 ... 0xDF] = CL_LEAD2,
	[0xE0] = CL_E0,
	[0xE1 ... 0xEC] = CL_LEAD3,
	[0xED] = CL_ED,
	[0xEE ... 0xEF] = CL_LEAD3,
	[0xF0] = CL_F0,
	[0xF1 ... 0xF3] = CL_LEAD4,
	[0xF4] = CL_F4,
	[0xF5 ... 0xFF] = CL_BAD,
};

/*
 * The transition table, written out in full so that every cell can be checked against Table
 * 3-7 by eye: columns follow the class enum, cells are state numbers (0 ACCEPT, 1 REJECT,
 * 2 NEED1, 3 NEED2, 4 E0, 5 ED, 6 NEED3, 7 F0, 8 F4). ROW stores each cell pre-multiplied by
 * the row width, so a step is one load at (state + class): no index arithmetic sits on the
 * byte-to-byte dependency chain. Callers still see plain state numbers.
 */
#define PREMUL(s) ((s)*CL_COUNT)
#define ROW(a, b, c, d, e, f, g, h, i, j, k, l)                                                    \
	PREMUL(a), PREMUL(b), PREMUL(c), PREMUL(d), PREMUL(e), PREMUL(f), PREMUL(g), PREMUL(h),    \
	PREMUL(i), PREMUL(j), PREMUL(k), PREMUL(l)

static const uint8_t next_state[ST_COUNT * CL_COUNT] = {
	/*   asc lo mid hi bad l2 e0 l3 ed f0 l4 f4 */
	ROW(0, 1, 1, 1, 1, 2, 4, 3, 5, 7, 6, 8), /* ACCEPT */
	ROW(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), /* REJECT */
	ROW(1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), /* NEED1 */
	ROW(1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), /* NEED2 */
	ROW(1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1), /* E0 */
	ROW(1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1), /* ED */
	ROW(1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), /* NEED3 */
	ROW(1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), /* F0 */
	ROW(1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), /* F4 */
};

RC_STATIC_ASSERT(ST_NEED1 == 2 && ST_NEED2 == 3 && ST_E0 == 4 && ST_ED == 5, "table legend");
RC_STATIC_ASSERT(ST_NEED3 == 6 && ST_F0 == 7 && ST_F4 == 8, "table legend");
RC_STATIC_ASSERT(PREMUL(ST_COUNT - 1) <= UINT8_MAX, "pre-multiplied states fit a byte");

#define HIGH_BITS 0x8080808080808080ull

/* Index (0..7) of the first byte in memory order whose high bit is set in w (w != 0). */
static inline size_t first_high_byte(uint64_t w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (size_t)__builtin_ctzll(w) / 8;
#else
	return (size_t)__builtin_clzll(w) / 8;
#endif
}

/*
 * Returns the index of the first non-ASCII byte of p[i..len), or len. Text messages are mostly
 * ASCII, so eight bytes are tested per load; the DFA then runs only where it has work to do.
 */
static size_t skip_ascii(const uint8_t *p, size_t i, size_t len)
{
	RC_DASSERT(i <= len);
	while (len - i >= 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		w &= HIGH_BITS;
		if (w)
			return i + first_high_byte(w);
		i += 8;
	}
	while (i < len && p[i] < 0x80)
		i++;
	RC_DASSERT(i == len || p[i] >= 0x80);
	return i;
}

bool rc_utf8_feed(uint32_t *state, const uint8_t *p, size_t len)
{
	uint32_t s;
	size_t i = 0;

	RC_ASSERT(state != NULL);
	RC_ASSERT(p != NULL || len == 0);
	RC_ASSERT(*state < ST_COUNT); /* a garbage state would index past the table */
	s = PREMUL(*state);
	while (i < len && s != PREMUL(ST_REJECT)) {
		if (s == PREMUL(ST_ACCEPT) && p[i] < 0x80) {
			i = skip_ascii(p, i, len);
			if (i == len)
				break;
		}
		s = next_state[s + byte_class[p[i]]];
		i++;
	}
	*state = s / CL_COUNT;
	RC_DASSERT(*state < ST_COUNT);
	return s != PREMUL(ST_REJECT);
}

bool rc_utf8_valid(const uint8_t *p, size_t len)
{
	uint32_t state = RC_UTF8_ACCEPT;

	RC_ASSERT(p != NULL || len == 0);
	return rc_utf8_feed(&state, p, len) && state == RC_UTF8_ACCEPT;
}
