/*
 * Small helpers shared by every module: container_of, min/max, array length, slices and the
 * parser result type. Header only. Any thread.
 */
#ifndef RC_UTIL_H
#define RC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define rc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define RC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RC_CACHELINE 64

/*
 * Result of every incremental parser. DONE: one unit parsed, bytes consumed reported through
 * an out-parameter. PARTIAL: more input is needed, nothing consumed. FAIL: the input is
 * invalid; the parser sets a close code or HTTP status and a string-literal reason.
 */
enum rc_parse {
	RC_PARSE_DONE = 0,
	RC_PARSE_PARTIAL,
	RC_PARSE_FAIL,
};

/* A borrowed, not NUL-terminated byte range. */
struct rc_slice {
	const char *p;
	uint32_t len;
};

static inline bool rc_slice_eq(struct rc_slice s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* ASCII case-insensitive comparison, as HTTP header tokens need. */
static inline bool rc_slice_caseeq(struct rc_slice s, const char *lit)
{
	size_t n = strlen(lit);
	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b + 32);
		if (a != b)
			return false;
	}
	return true;
}

/* Decimal digits p[0..n) as a uint64: false if empty, not all digits, or overflowing. */
static inline bool rc_parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		uint64_t d = (uint64_t)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static inline bool rc_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

#endif
