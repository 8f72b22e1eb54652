/*
 * libFuzzer target for src/ws_frame.c. The input after the first byte is a client's byte
 * stream; the first byte picks the connection limits and how the stream is cut into receive
 * chunks (like uWS fuzzing/helpers.h). The stream is served twice, once whole and once in
 * chunks, by a small model of a receiver built on ws_frame.c's functions: header (in place or
 * from an assembly buffer), piecewise unmasking, rx sequencing, UTF-8 of text, close parsing.
 * Both runs must end identically, and every step is checked against a plain reference (naive
 * unmask, header rewrite and reparse, whole-message UTF-8, close echo). The receiver the
 * shards run, src/ws_assembler.c, has its own target (ws_assembler_fuzz.c). Also linked
 * without libFuzzer into the corpus replay.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "utf8.h"
#include "ws_frame.h"
#include "ws_fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_CAPTURE_MAX 8192 /* text messages up to this size are re-validated whole */

/* How one served stream ended; compared between the whole and the chunked run. */
struct outcome {
	uint32_t frames;     /* frames whose payload was fully read */
	uint32_t messages;   /* data messages completed */
	uint64_t digest;     /* over the unmasked payloads of completed frames */
	uint16_t fail_code;  /* our close code when we failed the peer, else 0 */
	uint16_t peer_code;  /* the peer's close code when it closed cleanly, else 0 */
};

enum phase {
	PH_HEADER = 0,
	PH_PAYLOAD,
	PH_CLOSED,
};

struct server {
	struct rc_ws_limits lim;
	struct rc_ws_rx rx;
	enum phase phase;
	uint8_t asm_buf[RC_WS_HEADER_LIMIT]; /* a header split across chunks */
	size_t asm_len;
	struct rc_ws_frame f;
	uint64_t read;                       /* payload bytes of f read so far */
	uint64_t frame_digest;               /* FNV-1a of those bytes */
	uint8_t ctl[RC_WS_CONTROL_PAYLOAD_LIMIT];
	uint8_t text[TEXT_CAPTURE_MAX];      /* the current text message, if it fits */
	size_t text_len;
	struct outcome out;
};

static void fail_peer(struct server *s, uint16_t code)
{
	RC_ASSERT(code == RC_WS_CLOSE_PROTOCOL || code == RC_WS_CLOSE_INVALID_DATA ||
		  code == RC_WS_CLOSE_TOO_BIG);
	s->out.fail_code = code;
	s->phase = PH_CLOSED;
}

/* Writes the parsed header back out and parses that again: every field must survive. */
static void check_header_round_trip(const struct server *s)
{
	const struct rc_ws_frame *f = &s->f;
	uint8_t buf[RC_WS_HEADER_LIMIT];
	struct rc_ws_frame g;
	uint16_t code;
	const char *why;
	size_t n;

	RC_ASSERT(f->header_len >= 2 && f->header_len <= RC_WS_HEADER_LIMIT);
	RC_ASSERT(f->payload_len <= s->lim.frame_bytes_max);
	if (s->lim.require_mask)
		RC_ASSERT(f->masked);
	if (f->masked)
		n = rc_ws_frame_write_client_header(buf, f->opcode, f->fin, f->rsv1,
						    f->payload_len, f->mask);
	else
		n = rc_ws_frame_write_header(buf, f->opcode, f->fin, f->rsv1, f->payload_len);
	RC_ASSERT(n <= f->header_len); /* the writer uses the shortest form; peers may not */
	RC_ASSERT(rc_ws_frame_parse(buf, n, &s->lim, &g, &code, &why) == RC_PARSE_DONE);
	RC_ASSERT(g.header_len == n && g.payload_len == f->payload_len);
	RC_ASSERT(g.opcode == f->opcode && g.fin == f->fin && g.rsv1 == f->rsv1);
	RC_ASSERT(g.masked == f->masked && memcmp(g.mask, f->mask, 4) == 0);
}

/*
 * A parsed header: sequence it and move on to the payload. Every frame goes through
 * rc_ws_rx_frame(), as a server may do; control frames must leave the message state alone.
 */
static void start_frame(struct server *s)
{
	struct rc_ws_rx before = s->rx;
	uint16_t code = 0;
	const char *why = NULL;

	check_header_round_trip(s);
	if (rc_ws_rx_frame(&s->rx, &s->f, &s->lim, &code, &why) != RC_PARSE_DONE) {
		RC_ASSERT(why != NULL && !(s->f.opcode & 0x8));
		fail_peer(s, code);
		return;
	}
	RC_ASSERT(s->rx.message_len <= s->lim.message_bytes_max);
	if (s->f.opcode & 0x8) {
		RC_ASSERT(before.message_len == s->rx.message_len);
		RC_ASSERT(before.utf8_state == s->rx.utf8_state);
		RC_ASSERT(before.message_opcode == s->rx.message_opcode);
		RC_ASSERT(before.message_rsv1 == s->rx.message_rsv1);
	} else if (s->f.opcode != RC_WS_OP_CONT)
		s->text_len = 0;
	s->phase = PH_PAYLOAD;
	s->read = 0;
	s->frame_digest = 0xcbf29ce484222325ull;
}

/*
 * Header bytes: parsed in place when the chunk holds the whole header (the common case in a
 * shard), else gathered in the assembly buffer. Returns the bytes that belonged to the header.
 */
static size_t on_header(struct server *s, const uint8_t *p, size_t n)
{
	size_t before = s->asm_len, copy;
	uint16_t code = 0;
	const char *why = NULL;
	enum rc_parse r = RC_PARSE_PARTIAL;

	if (before == 0)
		r = rc_ws_frame_parse(p, n, &s->lim, &s->f, &code, &why);
	if (r == RC_PARSE_PARTIAL) {
		copy = RC_MIN(n, sizeof(s->asm_buf) - before);
		memcpy(s->asm_buf + before, p, copy);
		s->asm_len += copy;
		r = rc_ws_frame_parse(s->asm_buf, s->asm_len, &s->lim, &s->f, &code, &why);
		if (r == RC_PARSE_PARTIAL) {
			RC_ASSERT(s->asm_len < RC_WS_HEADER_LIMIT);
			return copy;
		}
	}
	s->asm_len = 0;
	if (r == RC_PARSE_FAIL) {
		fail_peer(s, code);
		return n;
	}
	RC_ASSERT(s->f.header_len > before);
	start_frame(s);
	return s->f.header_len - before;
}

/*
 * Unmasks payload bytes in place, checks them against a naive XOR of the original bytes
 * (orig) and validates them.
 */
static size_t on_payload(struct server *s, uint8_t *p, const uint8_t *orig, size_t n)
{
	size_t take = (size_t)RC_MIN((uint64_t)n, s->f.payload_len - s->read);
	uint16_t code = 0;
	const char *why = NULL;

	rc_ws_mask(p, take, s->f.mask, s->read);
	for (size_t i = 0; i < take; i++)
		RC_ASSERT(p[i] == (orig[i] ^ s->f.mask[(s->read + i) % 4]));
	if (s->f.opcode & 0x8) {
		memcpy(s->ctl + s->read, p, take);
	} else {
		if (s->rx.message_opcode == RC_WS_OP_TEXT && s->text_len + take <= TEXT_CAPTURE_MAX)
			memcpy(s->text + s->text_len, p, take);
		s->text_len += take;
		if (rc_ws_rx_payload(&s->rx, p, take, &code, &why) != RC_PARSE_DONE) {
			if (s->text_len <= TEXT_CAPTURE_MAX)
				RC_ASSERT(!rc_utf8_valid(s->text, s->text_len));
			fail_peer(s, code);
			return n;
		}
	}
	for (size_t i = 0; i < take; i++)
		s->frame_digest = (s->frame_digest ^ p[i]) * 0x100000001b3ull;
	s->read += take;
	return take;
}

/* A close: parse it, and echo it the way a server answers, which must parse back the same. */
static void on_close(struct server *s)
{
	uint8_t echo[RC_WS_CONTROL_PAYLOAD_LIMIT];
	uint16_t code = 0, echo_code = 0, cc = 0;
	struct rc_slice text, echo_text;
	const char *why = NULL;
	char reason[RC_WS_CONTROL_PAYLOAD_LIMIT];
	size_t n = (size_t)s->f.payload_len;

	if (rc_ws_close_parse(s->ctl, n, &code, &text, &cc, &why) != RC_PARSE_DONE) {
		fail_peer(s, cc);
		return;
	}
	RC_ASSERT(n == 0 ? code == RC_WS_CLOSE_NO_STATUS : rc_ws_close_code_valid(code));
	RC_ASSERT(rc_utf8_valid((const uint8_t *)text.p, text.len));
	memcpy(reason, text.p, text.len);
	reason[text.len] = '\0';
	n = rc_ws_close_write(echo, code, reason);
	RC_ASSERT(rc_ws_close_parse(echo, n, &echo_code, &echo_text, &cc, &why) == RC_PARSE_DONE);
	RC_ASSERT(echo_code == code);
	RC_ASSERT(echo_text.len <= text.len && memcmp(echo_text.p, text.p, echo_text.len) == 0);
	s->out.peer_code = code;
	s->phase = PH_CLOSED;
}

static void end_data_frame(struct server *s)
{
	uint16_t code = 0;
	const char *why = NULL;
	bool check = s->rx.message_opcode == RC_WS_OP_TEXT && !s->rx.message_rsv1 &&
		     s->f.fin && s->text_len <= TEXT_CAPTURE_MAX;

	if (rc_ws_rx_end_frame(&s->rx, s->f.fin, &code, &why) != RC_PARSE_DONE) {
		RC_ASSERT(code == RC_WS_CLOSE_INVALID_DATA);
		if (check)
			RC_ASSERT(!rc_utf8_valid(s->text, s->text_len));
		fail_peer(s, code);
		return;
	}
	if (check)
		RC_ASSERT(rc_utf8_valid(s->text, s->text_len));
	if (s->f.fin) {
		RC_ASSERT(s->rx.message_opcode == 0 && s->rx.message_len == 0);
		s->out.messages++;
	}
}

static void end_frame(struct server *s)
{
	s->out.frames++;
	s->out.digest = s->out.digest * 31 + s->frame_digest;
	s->phase = PH_HEADER;
	if (s->f.opcode == RC_WS_OP_CLOSE)
		on_close(s);
	else if (!(s->f.opcode & 0x8))
		end_data_frame(s);
}

/* One received chunk: p is a private, writable copy of the n bytes at orig. */
static void on_recv(struct server *s, uint8_t *p, const uint8_t *orig, size_t n)
{
	while (n > 0 && s->phase != PH_CLOSED) {
		size_t used = s->phase == PH_HEADER ? on_header(s, p, n)
						    : on_payload(s, p, orig, n);

		RC_ASSERT(used > 0 && used <= n);
		p += used;
		orig += used;
		n -= used;
		if (s->phase == PH_PAYLOAD && s->read == s->f.payload_len)
			end_frame(s);
	}
}

/* Serves the stream in chunks of 1..max bytes from a generator seeded by seed; max 0: whole. */
static void serve(struct server *s, const uint8_t *p, size_t n, size_t max, uint32_t seed)
{
	while (n > 0 && s->phase != PH_CLOSED) {
		size_t len = ws_fuzz_chunk_len(&seed, n, max);
		uint8_t *chunk;

		/* An exact-size heap copy, so ASan sees any read past the chunk. */
		chunk = malloc(len);
		RC_ASSERT(chunk != NULL);
		memcpy(chunk, p, len);
		on_recv(s, chunk, p, len);
		free(chunk);
		p += len;
		n -= len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct server whole, chunked;

	if (size < 1)
		return 0;
	memset(&whole, 0, sizeof(whole));
	whole.lim = ws_fuzz_limits(data[0]);
	chunked = whole;
	serve(&whole, data + 1, size - 1, 0, 0);
	serve(&chunked, data + 1, size - 1, ws_fuzz_chunk_max(data[0]), data[0]);
	RC_ASSERT(whole.out.frames == chunked.out.frames);
	RC_ASSERT(whole.out.messages == chunked.out.messages);
	RC_ASSERT(whole.out.digest == chunked.out.digest);
	RC_ASSERT(whole.out.fail_code == chunked.out.fail_code);
	RC_ASSERT(whole.out.peer_code == chunked.out.peer_code);
	return 0;
}
