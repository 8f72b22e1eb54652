/*
 * Test support shared by the WebSocket unit tests (ws_frame_test.c, ws_assembler_test.c): a
 * writable room that ends at a PROT_NONE guard page, the connection limits the vectors use,
 * client byte streams, event logs, and the driver that feeds a stream whole, byte by byte and
 * split in two at every boundary. Header only, for test files; criterion's runner thread.
 */
#ifndef RC_TEST_WS_STREAM_H
#define RC_TEST_WS_STREAM_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ws_frame.h"

/* ---- guard page ------------------------------------------------------------------------- */

/* Room before the guard page: the largest test stream fits, so whole streams end there too. */
#define GUARDED_BYTES (256u << 10)

static uint8_t *guard_room;
static size_t room_size;

static inline void guard_init(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	room_size = (GUARDED_BYTES + page - 1) / page * page;
	guard_room = mmap(NULL, room_size + page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(guard_room != MAP_FAILED);
	cr_assert(eq(int, mprotect(guard_room + room_size, page, PROT_NONE), 0));
}

static inline void guard_fini(void)
{
	munmap(guard_room, room_size + (size_t)sysconf(_SC_PAGESIZE));
}

/* Copies len bytes, followed by spare bytes of 0xee, so that they end where the guard page
 * starts; the copy is writable. */
static inline uint8_t *at_guard_spare(const void *src, size_t len, size_t spare)
{
	uint8_t *dst = guard_room + room_size - len - spare;

	cr_assert(len + spare <= room_size);
	if (len)
		memcpy(dst, src, len);
	memset(dst + len, 0xee, spare);
	return dst;
}

static inline uint8_t *at_guard(const void *src, size_t len)
{
	return at_guard_spare(src, len, 0);
}

/* ---- limits ----------------------------------------------------------------------------- */

#define RC_TEST_UNUSED __attribute__((unused))

static const struct rc_ws_limits server RC_TEST_UNUSED = {
	.frame_bytes_max = 1u << 20,
	.message_bytes_max = 1u << 20,
	.require_mask = true,
};
static const struct rc_ws_limits deflate RC_TEST_UNUSED = {
	.frame_bytes_max = 1u << 20,
	.message_bytes_max = 1u << 20,
	.rsv1_allowed = true,
	.require_mask = true,
};
static const struct rc_ws_limits small RC_TEST_UNUSED = {
	.frame_bytes_max = 100,
	.message_bytes_max = 300,
	.require_mask = true,
};
static const struct rc_ws_limits unbounded RC_TEST_UNUSED = {
	.frame_bytes_max = UINT64_MAX,
	.message_bytes_max = UINT64_MAX,
	.rsv1_allowed = true,
	.require_mask = true,
};
static const struct rc_ws_limits client RC_TEST_UNUSED = {
	.frame_bytes_max = UINT64_MAX,
	.message_bytes_max = UINT64_MAX,
	.rsv1_allowed = true,
};

/* ---- streams ---------------------------------------------------------------------------- */

struct stream {
	uint8_t b[200000];
	size_t len;
	unsigned frames;
	bool unmasked; /* frames the test appends carry no mask */
};

static inline void put_raw(struct stream *s, const void *bytes, size_t n)
{
	cr_assert(s->len + n <= sizeof(s->b));
	memcpy(s->b + s->len, bytes, n);
	s->len += n;
}

/* Appends an event to a space-separated log of the given size. */
__attribute__((format(printf, 3, 4))) static inline void log_add(char *log, size_t size,
								 const char *fmt, ...)
{
	size_t n = strlen(log);
	va_list ap;

	if (n && n + 1 < size)
		log[n++] = ' ';
	va_start(ap, fmt);
	vsnprintf(log + n, size - n, fmt, ap);
	va_end(ap);
}

/* Runs s with a chunk boundary after each offset in cuts[0..ncuts); returns the event log. */
typedef const char *(*stream_run_fn)(const struct stream *s, const struct rc_ws_limits *lim,
				     const size_t *cuts, size_t ncuts);

/* Whole, byte by byte and split in two at every boundary (every 97th past 4 KiB): the same
 * log each time. */
static inline void check_splits(const struct stream *s, const struct rc_ws_limits *lim,
				const char *want, stream_run_fn run)
{
	static size_t cuts[sizeof(((struct stream *)0)->b)];
	size_t step = s->len > 4096 ? 97 : 1;

	cr_assert(eq(str, (char *)run(s, lim, NULL, 0), (char *)want), "whole");
	for (size_t i = 0; i < s->len; i++)
		cuts[i] = i;
	cr_assert(eq(str, (char *)run(s, lim, cuts, s->len), (char *)want), "bytes");
	for (size_t k = 0; k <= s->len; k += step)
		cr_assert(eq(str, (char *)run(s, lim, &k, 1), (char *)want), "split %zu", k);
}

#endif
