/*
 * Unit tests for src/ws_assembler.c. Every stream is fed whole, byte by byte and split in two
 * at every boundary, each chunk copied to end at a PROT_NONE guard page, and must give the same
 * event log each time. The allocation hooks keep a table of what they handed out, so the tests
 * check that rc_ws_asm_bytes() equals it after every call, that it drops to 0 when a message
 * completes or the assembler resets, and that an allocation failure leaks nothing.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pmd.h"
#include "ws_assembler.h"
#include "ws_stream.h"

TestSuite(ws_assembler, .init = guard_init, .fini = guard_fini);

/* ---- a caller: allocation table, event log ----------------------------------------------- */

#define LIVE_LIMIT 4 /* the assembler never holds more than two buffers */

struct tconn {
	struct rc_ws_asm a;
	struct rc_ws_asm_env env;
	enum rc_ws_asm_next mode; /* what the caller wants next (a server's view) */
	uint32_t frames;
	/* allocation hooks */
	void *live_p[LIVE_LIMIT];
	size_t live_size[LIVE_LIMIT];
	size_t live_bytes;
	unsigned allocs;  /* alloc hook calls so far */
	unsigned fail_at; /* the alloc call (1-based) that returns NULL; 0: none */
	/* behaviour of the message callback */
	bool borrow_tail;  /* scribble over granted tail room, then restore it */
	bool stop_on_stop; /* a message "stop" resets the assembler and stops */
	bool note_tail;    /* log a message that got tail room with a trailing + */
	char log[1024];
};

#define note(t, ...) log_add((t)->log, sizeof((t)->log), __VA_ARGS__)

static int live_find(const struct tconn *t, const void *p)
{
	for (int i = 0; i < LIVE_LIMIT; i++)
		if (t->live_p[i] == p)
			return i;
	return -1;
}

static void *t_alloc(void *old, size_t old_size, size_t new_size, void *ctx)
{
	struct tconn *t = ctx;
	int i = live_find(t, old);
	void *p;

	cr_assert(i >= 0, "alloc hook: unknown old pointer");
	cr_assert(eq(sz, t->live_size[i], old_size));
	cr_assert(new_size > old_size);
	if (++t->allocs == t->fail_at)
		return NULL;
	p = realloc(old, new_size);
	cr_assert(p != NULL);
	t->live_p[i] = p;
	t->live_size[i] = new_size;
	t->live_bytes += new_size - old_size;
	return p;
}

static void t_release(void *p, size_t size, void *ctx)
{
	struct tconn *t = ctx;
	int i = live_find(t, p);

	cr_assert(p != NULL && i >= 0, "release hook: unknown pointer");
	cr_assert(eq(sz, t->live_size[i], size));
	t->live_p[i] = NULL;
	t->live_size[i] = 0;
	t->live_bytes -= size;
	free(p);
}

/* Lends the granted tail room to a scribbler, the way rc_pmd_inflate() borrows it. */
static void borrow_tail(uint8_t *end)
{
	uint8_t saved[RC_PMD_TAIL_ROOM];

	memcpy(saved, end, sizeof(saved));
	memset(end, 0xa5, sizeof(saved));
	memcpy(end, saved, sizeof(saved));
}

static enum rc_ws_asm_next t_message(struct rc_ws_asm_message *m, void *ctx)
{
	struct tconn *t = ctx;
	bool printable = m->len <= 40;
	char kind = m->opcode == RC_WS_OP_TEXT ? 'T' : 'B';
	const char *z = m->compressed ? "z" : "";

	cr_assert(m->opcode == RC_WS_OP_TEXT || m->opcode == RC_WS_OP_BINARY);
	for (size_t i = 0; printable && i < m->len; i++)
		printable = m->payload[i] >= 0x20 && m->payload[i] < 0x7f;
	if (printable)
		note(t, "%c%s'%.*s'", kind, z, (int)m->len, (const char *)m->payload);
	else
		note(t, "%c%s#%zu", kind, z, m->len);
	if (t->note_tail && m->tail_room)
		strcat(t->log, "+");
	if (t->borrow_tail && m->tail_room)
		borrow_tail(m->payload + m->len);
	if (t->stop_on_stop && m->len == 4 && memcmp(m->payload, "stop", 4) == 0) {
		rc_ws_asm_reset(&t->a, &t->env);
		t->mode = RC_WS_ASM_STOP;
	}
	return t->mode;
}

static enum rc_ws_asm_next t_control(const struct rc_ws_asm_control *f, void *ctx)
{
	struct tconn *t = ctx;

	if (f->opcode == RC_WS_OP_CLOSE) {
		note(t, "C%u", f->close_code);
		t->mode = RC_WS_ASM_CONTROL; /* a server answers and only waits for the end */
	} else {
		cr_assert(eq(u16, f->close_code, 0));
		note(t, "%c'%.*s'", f->opcode == RC_WS_OP_PING ? 'P' : 'O', (int)f->len,
		     (const char *)f->payload);
	}
	return t->mode;
}

static void t_fail(uint16_t code, const char *reason, void *ctx)
{
	struct tconn *t = ctx;

	cr_assert(reason != NULL && reason[0] != '\0');
	cr_assert(eq(sz, rc_ws_asm_bytes(&t->a), 0), "reset before on_fail");
	note(t, "F%u", code);
	t->mode = RC_WS_ASM_STOP;
}

static const struct rc_ws_asm_ops t_ops = {
	.alloc = t_alloc,
	.release = t_release,
	.on_message = t_message,
	.on_control = t_control,
	.on_fail = t_fail,
};

static void tconn_init(struct tconn *t, const struct rc_ws_limits *lim)
{
	memset(t, 0, sizeof(*t));
	rc_ws_asm_init(&t->a);
	t->env = (struct rc_ws_asm_env){lim, &t_ops, t};
}

/* One receive: the chunk ends at the guard page unless spare bytes of room follow it. */
static void feed(struct tconn *t, const uint8_t *p, size_t n, size_t spare)
{
	if (t->mode == RC_WS_ASM_STOP)
		return; /* a server discards input after failing */
	t->frames += rc_ws_asm_feed(&t->a, at_guard_spare(p, n, spare), n, n + spare, t->mode,
				   &t->env);
	cr_assert(eq(sz, rc_ws_asm_bytes(&t->a), t->live_bytes), "bytes held are exact");
}

/* Resets and checks that nothing is left allocated. */
static void tconn_end(struct tconn *t)
{
	rc_ws_asm_reset(&t->a, &t->env);
	cr_assert(eq(sz, rc_ws_asm_bytes(&t->a), 0));
	cr_assert(eq(sz, t->live_bytes, 0), "leak");
}

/* ---- streams --------------------------------------------------------------------------- */

#define FIN 0x80u
#define RSV1 0x40u
#define TEXT (FIN | RC_WS_OP_TEXT)
#define BINARY (FIN | RC_WS_OP_BINARY)
#define CONT RC_WS_OP_CONT
#define LAST (FIN | RC_WS_OP_CONT)
#define PING (FIN | RC_WS_OP_PING)
#define PONG (FIN | RC_WS_OP_PONG)
#define CLOSE (FIN | RC_WS_OP_CLOSE)

static struct stream st;
static uint8_t big[140000];

static void stream_reset(void)
{
	memset(&st, 0, sizeof(st));
	memset(big, 'x', sizeof(big));
}

/* Appends one frame with first header byte b0 and the shortest length form; masked (with a
 * mask that changes per frame) unless the stream is unmasked. */
static void put(struct stream *s, uint8_t b0, const void *payload, size_t n)
{
	uint8_t h[RC_WS_HEADER_LIMIT], mask[4] = {0x37, (uint8_t)(0x11 * s->frames), 0x21, 0x3d};
	uint8_t mbit = s->unmasked ? 0 : 0x80;
	size_t hl = 2;

	h[0] = b0;
	if (n < 126) {
		h[1] = (uint8_t)(mbit | n);
	} else if (n <= UINT16_MAX) {
		h[1] = mbit | 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = mbit | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	if (mbit) {
		memcpy(h + hl, mask, 4);
		hl += 4;
	}
	put_raw(s, h, hl);
	put_raw(s, payload, n);
	if (mbit)
		rc_ws_mask(s->b + s->len - n, n, mask, 0);
	s->frames++;
}

#define PUT(s, b0, str) put(s, b0, str, sizeof(str) - 1)

/* Runs s cut after each offset in cuts[0..ncuts) and returns the log. */
static const char *run(const struct stream *s, const struct rc_ws_limits *lim,
		       const size_t *cuts, size_t ncuts)
{
	static struct tconn t;
	size_t at = 0;

	tconn_init(&t, lim);
	t.borrow_tail = true;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : s->len;

		feed(&t, s->b + at, end - at, 0);
		at = end;
	}
	/* Every stream here ends at a frame and message boundary, or failed. */
	cr_assert(eq(sz, rc_ws_asm_bytes(&t.a), 0), "held after the stream: %s", t.log);
	tconn_end(&t);
	return t.log;
}

static void check(const struct stream *s, const struct rc_ws_limits *lim, const char *want)
{
	check_splits(s, lim, want, run);
}

/* ---- streams it accepts ----------------------------------------------------------------- */

/* One masked text frame becomes one message. */
Test(ws_assembler, single_text_message)
{
	stream_reset();
	PUT(&st, TEXT, "Hello");
	check(&st, &server, "T'Hello'");
}

/* Unmasked frames where the limits do not require a mask (the client side). */
Test(ws_assembler, unmasked_frames_on_the_client_side)
{
	stream_reset();
	st.unmasked = true;
	PUT(&st, TEXT, "abc");
	put(&st, BINARY, big, 300);
	check(&st, &client, "T'abc' B#300");
}

/* 7-bit, 16-bit and 64-bit lengths, at each form's edges. */
Test(ws_assembler, seven_sixteen_and_sixty_four_bit_lengths)
{
	stream_reset();
	put(&st, BINARY, big, 125);
	put(&st, BINARY, big, 126);
	put(&st, TEXT, big, 65535);
	put(&st, BINARY, big, 65536);
	PUT(&st, TEXT, "end");
	check(&st, &server, "B#125 B#126 T#65535 B#65536 T'end'");
}

/* TEXT + CONT + CONT is one message; pings and pongs may come between the fragments. */
Test(ws_assembler, fragments_with_interleaved_pings)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "ab");
	PUT(&st, PING, "ping");
	PUT(&st, CONT, "");
	PUT(&st, CONT, "cd");
	PUT(&st, PONG, "");
	PUT(&st, PING, "");
	PUT(&st, LAST, "ef");
	PUT(&st, BINARY, "next");
	check(&st, &server, "P'ping' O'' P'' T'abcdef' B'next'");
}

/* A code point split across fragments (and, split feeding, across receives) is accepted. */
Test(ws_assembler, utf8_split_across_fragments)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "\xce\xba\xe1");
	PUT(&st, CONT, "\xbd");
	PUT(&st, LAST, "\xb9\xcf\x83\xce\xbc\xce\xb5");
	PUT(&st, TEXT, "\xf0\x9f\x98\x80");
	check(&st, &server, "T#11 T#4");
}

/* Empty messages, a close with code and reason, then only control frames are reported. */
Test(ws_assembler, close_then_only_control_frames)
{
	stream_reset();
	PUT(&st, TEXT, "");
	PUT(&st, RC_WS_OP_BINARY, "");
	PUT(&st, LAST, "");
	PUT(&st, CLOSE, "\x03\xe8" "bye");
	PUT(&st, TEXT, "ignored after close");
	PUT(&st, RC_WS_OP_TEXT, "\xff not checked");
	PUT(&st, PING, "late");
	PUT(&st, LAST, "ignored too");
	PUT(&st, CLOSE, "");
	check(&st, &server, "T'' B'' C1000 P'late' C1005");
}

/* A close inside a fragmented message; the rest of the message is dropped. */
Test(ws_assembler, close_inside_fragmented_message)
{
	stream_reset();
	PUT(&st, RC_WS_OP_BINARY, "part");
	PUT(&st, CLOSE, "\x0f\xa0" "private");
	PUT(&st, LAST, "rest");
	check(&st, &server, "C4000");
}

/* RSV1 with deflate agreed: reported compressed, and its text is not UTF-8-checked here. */
Test(ws_assembler, compressed_messages_are_flagged)
{
	stream_reset();
	PUT(&st, TEXT | RSV1, "\xc0\xaf");
	PUT(&st, RC_WS_OP_TEXT | RSV1, "\xed");
	PUT(&st, LAST, "\xa0");
	PUT(&st, TEXT, "plain");
	check(&st, &deflate, "Tz#2 Tz#2 T'plain'");
}

/* A frame of exactly frame_bytes_max and a message of exactly message_bytes_max. */
Test(ws_assembler, frame_and_message_exactly_at_limits)
{
	stream_reset();
	put(&st, BINARY, big, 100);
	put(&st, RC_WS_OP_TEXT, big, 100);
	put(&st, CONT, big, 100);
	put(&st, LAST, big, 100);
	check(&st, &small, "B#100 T#300");
}

/* Control payloads of 125 bytes, the largest allowed. */
Test(ws_assembler, largest_control_frames)
{
	char want[300];

	stream_reset();
	put(&st, PING, big, 125);
	put(&st, RC_WS_OP_TEXT, "a", 1);
	put(&st, PONG, big, 125);
	put(&st, LAST, "b", 1);
	snprintf(want, sizeof(want), "P'%.125s' O'%.125s' T'ab'", (char *)big, (char *)big);
	check(&st, &server, want);
}

/* The 16-bit and 64-bit forms are accepted when a shorter form would do. */
Test(ws_assembler, non_minimal_lengths)
{
	stream_reset();
	put_raw(&st, "\x81\xfe\x00\x02" "\0\0\0\0" "hi", 10);
	put_raw(&st, "\x82\xff\0\0\0\0\0\0\0\x03" "\0\0\0\0" "abc", 17);
	check(&st, &server, "T'hi' B'abc'");
}

/* ---- streams it fails ------------------------------------------------------------------- */

/* A client frame without the mask bit. */
Test(ws_assembler, rejects_unmasked_frame)
{
	stream_reset();
	PUT(&st, TEXT, "ok");
	st.unmasked = true;
	PUT(&st, TEXT, "bare");
	check(&st, &server, "T'ok' F1002");
}

/* RSV1 when permessage-deflate was not agreed, and RSV1 on a continuation when it was. */
Test(ws_assembler, rejects_rsv1_when_not_allowed)
{
	stream_reset();
	PUT(&st, TEXT | RSV1, "z");
	check(&st, &server, "F1002");
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT | RSV1, "a");
	PUT(&st, LAST | RSV1, "b");
	check(&st, &deflate, "F1002");
}

/* A continuation with no message in progress. */
Test(ws_assembler, rejects_continuation_without_start)
{
	stream_reset();
	PUT(&st, TEXT, "ok");
	PUT(&st, LAST, "orphan");
	PUT(&st, TEXT, "never seen");
	check(&st, &server, "T'ok' F1002");
}

/* A new data frame inside a fragmented message, also after an interleaved ping. */
Test(ws_assembler, rejects_new_message_inside_fragmented_one)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "first");
	PUT(&st, PING, "p");
	PUT(&st, BINARY, "second");
	check(&st, &server, "P'p' F1002");
}

/* A frame over frame_bytes_max, in each length form. */
Test(ws_assembler, rejects_oversize_frame)
{
	stream_reset();
	put(&st, BINARY, big, 101);
	check(&st, &small, "F1009");
	stream_reset();
	put_raw(&st, "\x82\xff\0\0\0\0\0\x10\0\x01" "\0\0\0\0" "never read", 24);
	check(&st, &server, "F1009");
}

/* message_bytes_max counts every fragment. */
Test(ws_assembler, rejects_oversize_message)
{
	stream_reset();
	put(&st, RC_WS_OP_TEXT, big, 100);
	put(&st, CONT, big, 100);
	put(&st, CONT, big, 100);
	put(&st, LAST, big, 1);
	check(&st, &small, "F1009");
}

/* Invalid UTF-8 across fragments, and a text message ending inside a code point. */
Test(ws_assembler, rejects_invalid_utf8)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "ok\xf4");
	PUT(&st, LAST, "\x90\x80\x80");
	check(&st, &server, "F1007");
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "ab");
	PUT(&st, LAST, "\xe2\x82");
	check(&st, &server, "F1007");
}

/* Close payloads: one byte, a code that may not be sent, a reason that is not UTF-8. */
Test(ws_assembler, rejects_bad_close_frames)
{
	stream_reset();
	PUT(&st, CLOSE, "\x03");
	check(&st, &server, "F1002");
	stream_reset();
	PUT(&st, CLOSE, "\x03\xed");
	check(&st, &server, "F1002");
	stream_reset();
	PUT(&st, CLOSE, "\x03\xe8" "\xc3\x28");
	check(&st, &server, "F1007");
}

/* Reserved opcodes, RSV2, fragmented and long control frames, a 64-bit length's top bit. */
Test(ws_assembler, rejects_bad_headers)
{
	stream_reset();
	PUT(&st, FIN | 0x3, "");
	check(&st, &server, "F1002");
	stream_reset();
	PUT(&st, TEXT | 0x20, "");
	check(&st, &deflate, "F1002");
	stream_reset();
	PUT(&st, RC_WS_OP_PING, "");
	check(&st, &server, "F1002");
	stream_reset();
	put(&st, PING, big, 126);
	check(&st, &server, "F1002");
	stream_reset();
	put_raw(&st, "\x82\xff\x80\0\0\0\0\0\0\0" "\0\0\0\0", 14);
	check(&st, &server, "F1002");
}

/* ---- fail fast -------------------------------------------------------------------------- */

/* Feeds s byte by byte; the failure must come with byte `at` (0-based), not before or after. */
static void check_fails_at(const struct stream *s, size_t at, const char *want)
{
	static struct tconn t;

	tconn_init(&t, &server);
	for (size_t i = 0; i < s->len; i++) {
		feed(&t, s->b + i, 1, 0);
		cr_assert(eq(int, t.mode == RC_WS_ASM_STOP, i >= at), "byte %zu: %s", i, t.log);
	}
	cr_assert(eq(str, t.log, (char *)want));
	tconn_end(&t);
	/* Any prefix that ends before the bad byte is quiet, as one receive too. */
	for (size_t k = 0; k <= s->len; k++) {
		tconn_init(&t, &server);
		feed(&t, s->b, k, 0);
		cr_assert(eq(int, t.mode == RC_WS_ASM_STOP, k > at), "prefix %zu", k);
		tconn_end(&t);
	}
}

/* Invalid UTF-8 fails at its first bad byte, long before the frame would complete. */
Test(ws_assembler, invalid_utf8_fails_at_first_bad_byte_mid_frame)
{
	stream_reset();
	big[150] = 0xff;
	put(&st, TEXT, big, 1000);
	check_fails_at(&st, 8 + 150, "F1007");
}

/* The same inside the second fragment, and for a sequence cut short by a bad continuation. */
Test(ws_assembler, invalid_utf8_fails_fast_in_a_later_fragment)
{
	stream_reset();
	put(&st, RC_WS_OP_TEXT, "\xe2\x82\xac", 3);
	big[40] = 0xe2;
	big[41] = 0x28;
	put(&st, LAST, big, 500);
	check_fails_at(&st, 9 + 8 + 41, "F1007");
}

/* ---- memory ----------------------------------------------------------------------------- */

/* A pending frame's buffer grows with the bytes that arrive, not with its length field. */
Test(ws_assembler, pending_frame_grows_with_arrivals)
{
	static struct tconn t;

	stream_reset();
	put(&st, BINARY, big, 100000);
	tconn_init(&t, &server);
	feed(&t, st.b, 14 + 100, 0);
	cr_assert(t.live_bytes > 0 && t.live_bytes < 1024, "%zu", t.live_bytes);
	feed(&t, st.b + 114, 5000, 0);
	cr_assert(t.live_bytes >= 5114 && t.live_bytes < 16384, "%zu", t.live_bytes);
	feed(&t, st.b + 5114, st.len - 5114, 0);
	cr_assert(eq(str, t.log, "B#100000"));
	cr_assert(eq(sz, rc_ws_asm_bytes(&t.a), 0));
	cr_assert(eq(u32, t.frames, 1));
	tconn_end(&t);
}

/* Fragments are held until the message completes; a reset mid-frame frees everything. */
Test(ws_assembler, bytes_held_drop_to_zero)
{
	static struct tconn t;

	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "frag");
	PUT(&st, PING, "");
	PUT(&st, LAST, "ment");
	tconn_init(&t, &server);
	feed(&t, st.b, 10, 0);
	cr_assert(rc_ws_asm_bytes(&t.a) > 0);
	feed(&t, st.b + 10, st.len - 10, 0);
	cr_assert(eq(str, t.log, "P'' T'fragment'"));
	cr_assert(eq(sz, rc_ws_asm_bytes(&t.a), 0));
	cr_assert(eq(u32, t.frames, 3));
	feed(&t, st.b, 12, 0); /* the first fragment and half the ping */
	cr_assert(rc_ws_asm_bytes(&t.a) > 0);
	tconn_end(&t);
}

/* Whatever allocation fails, the result is 1011 "out of memory" and nothing leaks. */
static void check_alloc_failures(const struct stream *s, const char *want_ok)
{
	static size_t cuts[sizeof(((struct stream *)0)->b)];
	static struct tconn t;
	unsigned k = 1;

	for (size_t i = 0; i < s->len; i++)
		cuts[i] = i;
	for (;; k++) {
		size_t at = 0;

		tconn_init(&t, &server);
		t.fail_at = k;
		for (size_t i = 0; i <= s->len; i++) {
			size_t end = i < s->len ? cuts[i] : s->len;

			feed(&t, s->b + at, end - at, 0);
			at = end;
		}
		if (t.allocs < k)
			break;
		size_t n = strlen(t.log);
		cr_assert(n >= 5 && strcmp(t.log + n - 5, "F1011") == 0, "alloc %u: %s", k, t.log);
		cr_assert(eq(sz, t.live_bytes, 0), "alloc %u leaked", k);
		tconn_end(&t);
	}
	cr_assert(eq(str, t.log, (char *)want_ok));
	cr_assert(k > 2, "the stream needs allocations");
	tconn_end(&t);
}

/* Pending frames (first allocation and growth) and fragments under allocation failure. */
Test(ws_assembler, allocation_failure_is_1011_without_leak)
{
	stream_reset();
	put(&st, BINARY, big, 1000);
	PUT(&st, RC_WS_OP_TEXT, "ab");
	PUT(&st, PING, "x");
	put(&st, LAST, big, 600);
	check_alloc_failures(&st, "B#1000 P'x' T#602");
}

/* A message whose fragments all arrive in one receive still allocates, and fails cleanly. */
Test(ws_assembler, fragment_allocation_failure_in_one_receive)
{
	static struct tconn t;

	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "ab");
	PUT(&st, LAST, "cd");
	tconn_init(&t, &server);
	t.fail_at = 1;
	feed(&t, st.b, st.len, 0);
	cr_assert(eq(str, t.log, "F1011"));
	tconn_end(&t);
}

/* ---- tail room and callbacks ------------------------------------------------------------ */

/* Tail room is granted in place only if the caller's buffer has it; always in our buffers. */
Test(ws_assembler, tail_room_reported_where_it_exists)
{
	static struct tconn t;

	stream_reset();
	PUT(&st, TEXT, "Hi");
	tconn_init(&t, &server);
	t.borrow_tail = true;
	t.note_tail = true;
	feed(&t, st.b, st.len, RC_PMD_TAIL_ROOM);     /* spare room after the frame */
	feed(&t, st.b, st.len, RC_PMD_TAIL_ROOM - 1); /* too little */
	feed(&t, st.b, st.len, 0);                    /* the frame ends at the guard page */
	feed(&t, st.b, 3, 0);                         /* completed in the pending buffer */
	feed(&t, st.b + 3, st.len - 3, 0);
	PUT(&st, TEXT, "the next frame lends its bytes");
	feed(&t, st.b, st.len, 0);
	cr_assert(eq(str, t.log,
		     "T'Hi'+ T'Hi' T'Hi' T'Hi'+ T'Hi'+ T'the next frame lends its bytes'"));
	stream_reset();
	PUT(&st, RC_WS_OP_BINARY, "frag");
	PUT(&st, LAST, "ments");
	feed(&t, st.b, st.len, 0);
	cr_assert(eq(str, t.log + strlen(t.log) - 13, "B'fragments'+"), "fragments: our buffer");
	tconn_end(&t);
}

/* A callback may reset the assembler when it stops it, even while its payload is lent. */
Test(ws_assembler, callback_may_reset_and_stop)
{
	static struct tconn t;

	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, "st");
	PUT(&st, LAST, "op");
	PUT(&st, TEXT, "after");
	tconn_init(&t, &server);
	t.stop_on_stop = true;
	feed(&t, st.b, st.len, 0);
	cr_assert(eq(str, t.log, "T'stop'"));
	cr_assert(eq(sz, t.live_bytes, 0));
	cr_assert(eq(u32, t.frames, 2));
	tconn_end(&t);
}

/* From the start in CONTROL mode: data is dropped unchecked, sequencing is still enforced. */
Test(ws_assembler, control_mode_checks_framing_only)
{
	static struct tconn t;

	stream_reset();
	PUT(&st, TEXT, "\xff dropped");
	PUT(&st, PING, "seen");
	PUT(&st, LAST, "orphan");
	tconn_init(&t, &server);
	t.mode = RC_WS_ASM_CONTROL;
	feed(&t, st.b, st.len, 0);
	cr_assert(eq(str, t.log, "P'seen' F1002"));
	tconn_end(&t);
}
