/*
 * Unit tests for src/ws_frame.c. Header vectors are parsed at every prefix (so whole, byte by
 * byte and every split) from copies that end at a PROT_NONE guard page; frame streams go
 * through a small server loop (header, unmask, sequencing, close) fed whole, byte by byte and
 * split at every boundary, and must produce the same event log every time.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <signal.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"
#include "ws_stream.h"

TestSuite(ws_frame, .init = guard_init, .fini = guard_fini);

/* ---- header vectors --------------------------------------------------------------------- */

#define M "\x37\xfa\x21\x3d" /* the mask of RFC 6455 §5.7's examples */

struct hvec {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	const struct rc_ws_limits *lim;
	uint16_t code; /* 0: valid; else the close code of the FAIL */
	uint8_t opcode;
	bool fin;
	bool rsv1;
	uint64_t payload_len;
};

#define H(name, str, lim, code, op, fin, rsv1, plen)                                              \
	{ name, (const uint8_t *)(str), sizeof(str) - 1, &(lim), code, op, fin, rsv1, plen }
#define OK(name, str, lim, op, fin, rsv1, plen) H(name, str, lim, 0, op, fin, rsv1, plen)
#define BAD(name, str, lim, code) H(name, str, lim, code, 0, 0, 0, 0)

static const struct hvec hvecs[] = {
	OK("text 5", "\x81\x85" M, server, 1, true, false, 5),
	OK("binary 0", "\x82\x80" M, server, 2, true, false, 0),
	OK("text 125, largest 7-bit", "\x81\xfd" M, server, 1, true, false, 125),
	OK("16-bit 126", "\x82\xfe\x00\x7e" M, server, 2, true, false, 126),
	OK("16-bit 65535", "\x82\xfe\xff\xff" M, server, 2, true, false, 65535),
	OK("64-bit 65536", "\x82\xff\0\0\0\0\0\x01\0\0" M, server, 2, true, false, 65536),
	OK("64-bit 2^62", "\x82\xff\x40\0\0\0\0\0\0\0" M, unbounded, 2, true, false, 1ull << 62),
	OK("64-bit 2^63-1", "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" M, unbounded, 2, true,
	   false, INT64_MAX),
	OK("non-minimal 16-bit 5", "\x81\xfe\x00\x05" M, server, 1, true, false, 5),
	OK("non-minimal 64-bit 5", "\x81\xff\0\0\0\0\0\0\0\x05" M, server, 1, true, false, 5),
	OK("continuation, not fin", "\x00\x83" M, server, 0, false, false, 3),
	OK("text, not fin", "\x01\x81" M, server, 1, false, false, 1),
	OK("ping 125", "\x89\xfd" M, server, 9, true, false, 125),
	OK("pong 0", "\x8a\x80" M, server, 10, true, false, 0),
	OK("close 2", "\x88\x82" M, server, 8, true, false, 2),
	OK("close 125", "\x88\xfd" M, server, 8, true, false, 125),
	OK("rsv1 text with deflate", "\xc1\x85" M, deflate, 1, true, true, 5),
	OK("payload exactly frame_bytes_max", "\x82\xe4" M, small, 2, true, false, 100),
	OK("16-bit exactly frame_bytes_max", "\x82\xfe\x00\x64" M, small, 2, true, false, 100),
	OK("unmasked on the client side", "\x81\x05", client, 1, true, false, 5),
	OK("unmasked 64-bit on the client side", "\x82\x7f\0\0\0\x01\0\0\0\0", client, 2, true,
	   false, 1ull << 32),
	BAD("opcode 3", "\x83\x80" M, server, 1002),
	BAD("opcode 4", "\x84\x80" M, server, 1002),
	BAD("opcode 5", "\x85\x80" M, server, 1002),
	BAD("opcode 6", "\x86\x80" M, server, 1002),
	BAD("opcode 7", "\x87\x80" M, server, 1002),
	BAD("opcode B", "\x8b\x80" M, server, 1002),
	BAD("opcode C", "\x8c\x80" M, server, 1002),
	BAD("opcode D", "\x8d\x80" M, server, 1002),
	BAD("opcode E", "\x8e\x80" M, server, 1002),
	BAD("opcode F", "\x8f\x80" M, server, 1002),
	BAD("RSV2", "\xa1\x80" M, deflate, 1002),
	BAD("RSV3", "\x91\x80" M, deflate, 1002),
	BAD("RSV1 without deflate", "\xc1\x80" M, server, 1002),
	BAD("RSV1 on ping", "\xc9\x80" M, deflate, 1002),
	BAD("unmasked client frame", "\x81\x05", server, 1002),
	BAD("ping not fin", "\x09\x80" M, server, 1002),
	BAD("close not fin", "\x08\x80" M, server, 1002),
	BAD("ping with 16-bit length", "\x89\xfe\x00\x7e" M, server, 1002),
	BAD("close with 64-bit length", "\x88\xff\0\0\0\0\0\0\x01\0" M, server, 1002),
	BAD("64-bit length top bit", "\x82\xff\x80\0\0\0\0\0\0\0" M, unbounded, 1002),
	BAD("7-bit over frame_bytes_max", "\x82\xe5" M, small, 1009),
	BAD("16-bit over frame_bytes_max", "\x82\xfe\x00\x65" M, small, 1009),
	BAD("64-bit over frame_bytes_max", "\x82\xff\0\0\0\0\0\x10\0\x01" M, server, 1009),
};

static void check_header_done(const struct hvec *v, const struct rc_ws_frame *f)
{
	cr_assert(eq(u8, f->header_len, v->len), "%s", v->name);
	cr_assert(eq(u8, f->opcode, v->opcode), "%s", v->name);
	cr_assert(eq(int, f->fin, v->fin), "%s", v->name);
	cr_assert(eq(int, f->rsv1, v->rsv1), "%s", v->name);
	cr_assert(eq(u64, f->payload_len, v->payload_len), "%s", v->name);
	cr_assert(eq(int, f->masked, v->lim->require_mask), "%s", v->name);
	if (f->masked)
		cr_assert(eq(int, memcmp(f->mask, M, 4), 0), "%s", v->name);
}

/* Parses the first n bytes of v, followed by `extra` bytes of payload, at the guard page. */
static void check_header_prefix(const struct hvec *v, size_t n, size_t extra)
{
	uint8_t buf[RC_WS_HEADER_LIMIT + 8] = { 0 };
	struct rc_ws_frame f;
	uint16_t code = 0;
	const char *why = NULL;
	enum rc_parse r;

	memcpy(buf, v->bytes, n);
	r = rc_ws_frame_parse(at_guard(buf, n + extra), n + extra, v->lim, &f, &code, &why);
	if (n < v->len) {
		cr_assert(eq(int, r, RC_PARSE_PARTIAL), "%s: prefix %zu", v->name, n);
	} else if (v->code) {
		cr_assert(eq(int, r, RC_PARSE_FAIL), "%s", v->name);
		cr_assert(eq(u16, code, v->code), "%s", v->name);
		cr_assert(why != NULL && why[0] != '\0', "%s", v->name);
	} else {
		cr_assert(eq(int, r, RC_PARSE_DONE), "%s: %s", v->name, why ? why : "");
		check_header_done(v, &f);
	}
}

/* Every prefix is what a byte-by-byte or split delivery shows the parser. */
static void check_hvec(const struct hvec *v)
{
	cr_assert(v->len <= RC_WS_HEADER_LIMIT);
	for (size_t n = 0; n <= v->len; n++)
		check_header_prefix(v, n, 0);
	check_header_prefix(v, v->len, 8);
}

/* Valid headers: PARTIAL until the last header byte, then DONE with every field right. */
Test(ws_frame, parses_valid_headers)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(hvecs); i++)
		if (!hvecs[i].code)
			check_hvec(&hvecs[i]);
}

/* Invalid headers: PARTIAL until the whole header is present, then FAIL with the right code. */
Test(ws_frame, rejects_invalid_headers)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(hvecs); i++)
		if (hvecs[i].code)
			check_hvec(&hvecs[i]);
}

/* The negative space is about as large as the positive one. */
Test(ws_frame, invalid_headers_match_valid_ones_in_number)
{
	size_t bad = 0;

	for (size_t i = 0; i < RC_ARRAY_LEN(hvecs); i++)
		bad += hvecs[i].code != 0;
	cr_assert(bad * 2 >= RC_ARRAY_LEN(hvecs) - 4 && bad * 2 <= RC_ARRAY_LEN(hvecs) + 8);
}

/* A client frame without the mask bit is a protocol error on the server. */
Test(ws_frame, rejects_unmasked_frame)
{
	struct rc_ws_frame f;
	uint16_t code = 0;
	const char *why = NULL;
	const uint8_t *p = at_guard("\x82\x03" "abc", 5);

	cr_assert(eq(int, rc_ws_frame_parse(p, 5, &server, &f, &code, &why), RC_PARSE_FAIL));
	cr_assert(eq(u16, code, RC_WS_CLOSE_PROTOCOL));
	cr_assert(eq(str, (char *)why, "unmasked client frame"));
}

/* ---- writing headers -------------------------------------------------------------------- */

/* Server headers are byte-exact and use the shortest length form. */
Test(ws_frame, writes_server_headers_exactly)
{
	uint8_t out[RC_WS_SERVER_HEADER_LIMIT];

	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_TEXT, true, false, 5), 2));
	cr_assert(eq(int, memcmp(out, "\x81\x05", 2), 0));
	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_BINARY, false, true, 125), 2));
	cr_assert(eq(int, memcmp(out, "\x42\x7d", 2), 0));
	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_BINARY, true, false, 126), 4));
	cr_assert(eq(int, memcmp(out, "\x82\x7e\x00\x7e", 4), 0));
	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_CONT, true, false, 65535), 4));
	cr_assert(eq(int, memcmp(out, "\x80\x7e\xff\xff", 4), 0));
	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_TEXT, true, false, 65536), 10));
	cr_assert(eq(int, memcmp(out, "\x81\x7f\0\0\0\0\0\x01\0\0", 10), 0));
	cr_assert(eq(sz, rc_ws_frame_write_header(out, RC_WS_OP_CLOSE, true, false, 0), 2));
	cr_assert(eq(int, memcmp(out, "\x88\x00", 2), 0));
}

static const uint64_t lengths[] = { 0,	   1,	  125,	   126,	       127,	  65535,
				    65536, 70000, 1u << 31, 1ull << 32, 1ull << 62, INT64_MAX };
static const uint8_t opcodes[] = { RC_WS_OP_CONT,  RC_WS_OP_TEXT, RC_WS_OP_BINARY,
				   RC_WS_OP_CLOSE, RC_WS_OP_PING, RC_WS_OP_PONG };

/* Writes one header (client or server form), parses it back and compares every field. */
static void round_trip(uint8_t op, bool fin, bool rsv1, uint64_t len, bool masked)
{
	static const uint8_t mask[4] = { 0xa5, 0x00, 0xff, 0x5a };
	uint8_t out[RC_WS_HEADER_LIMIT];
	struct rc_ws_frame f;
	uint16_t code = 0;
	const char *why = NULL;
	size_t n = masked ? rc_ws_frame_write_client_header(out, op, fin, rsv1, len, mask)
			  : rc_ws_frame_write_header(out, op, fin, rsv1, len);
	size_t want = (len < 126 ? 2 : len < 65536 ? 4 : 10) + (masked ? 4 : 0);
	const struct rc_ws_limits *lim = masked ? &unbounded : &client;

	cr_assert(eq(sz, n, want), "op %u len %llu", op, (unsigned long long)len);
	for (size_t k = 0; k < n; k++)
		cr_assert(eq(int, rc_ws_frame_parse(at_guard(out, k), k, lim, &f, &code, &why),
			     RC_PARSE_PARTIAL));
	cr_assert(eq(int, rc_ws_frame_parse(at_guard(out, n), n, lim, &f, &code, &why),
		     RC_PARSE_DONE), "%s", why ? why : "");
	cr_assert(eq(u8, f.header_len, n));
	cr_assert(eq(u8, f.opcode, op));
	cr_assert(eq(int, f.fin, fin));
	cr_assert(eq(int, f.rsv1, rsv1));
	cr_assert(eq(int, f.masked, masked));
	cr_assert(eq(u64, f.payload_len, len));
	if (masked)
		cr_assert(eq(int, memcmp(f.mask, mask, 4), 0));
}

/* Every opcode, flag and length form written by both writers parses back to itself. */
Test(ws_frame, write_header_round_trips_through_parse)
{
	for (size_t o = 0; o < RC_ARRAY_LEN(opcodes); o++) {
		for (size_t l = 0; l < RC_ARRAY_LEN(lengths); l++) {
			for (unsigned bits = 0; bits < 8; bits++) {
				bool fin = bits & 1, rsv1 = bits & 2, masked = bits & 4;

				if ((opcodes[o] & 8) && (!fin || rsv1 || lengths[l] > 125))
					continue;
				round_trip(opcodes[o], fin, rsv1, lengths[l], masked);
			}
		}
	}
}

/* A control frame longer than 125 bytes is the caller's bug, not a wire condition. */
Test(ws_frame, write_header_aborts_on_long_control_frame, .signal = SIGABRT)
{
	uint8_t out[RC_WS_SERVER_HEADER_LIMIT];

	rc_ws_frame_write_header(out, RC_WS_OP_PING, true, false, 126);
}

/* ---- masking ---------------------------------------------------------------------------- */

static void naive_mask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		p[i] ^= mask[(offset + i) % 4];
}

static const uint64_t offsets[] = { 0, 1, 2, 3, 4, 5, 6, 7, 4097, (1ull << 32) + 3, UINT64_MAX };

/* rc_ws_mask equals the byte-at-a-time definition at every offset, length and alignment. */
Test(ws_frame, mask_matches_naive_reference)
{
	static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	uint8_t src[64], want[64], buf[96];

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 37 + 11);
	for (size_t o = 0; o < RC_ARRAY_LEN(offsets); o++) {
		for (size_t len = 0; len <= 40; len++) {
			memcpy(want, src, len);
			naive_mask(want, len, mask, offsets[o]);
			uint8_t *p = at_guard(src, len);

			rc_ws_mask(p, len, mask, offsets[o]);
			cr_assert(eq(int, memcmp(p, want, len), 0), "len %zu", len);
			for (size_t align = 0; align < 8; align++) {
				memset(buf, 0xee, sizeof(buf));
				memcpy(buf + 8 + align, src, len);
				rc_ws_mask(buf + 8 + align, len, mask, offsets[o]);
				cr_assert(eq(int, memcmp(buf + 8 + align, want, len), 0));
				cr_assert(eq(u8, buf[8 + align - 1], 0xee));
				cr_assert(eq(u8, buf[8 + align + len], 0xee));
			}
		}
	}
}

/* Unmasking a payload in two pieces, the second at its offset, equals unmasking it whole. */
Test(ws_frame, mask_in_pieces_equals_whole)
{
	static const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
	uint8_t whole[300], pieces[300];

	for (size_t i = 0; i < sizeof(whole); i++)
		whole[i] = (uint8_t)(i ^ 0x5c);
	memcpy(pieces, whole, sizeof(whole));
	rc_ws_mask(whole, sizeof(whole), mask, 0);
	for (size_t k = 0; k <= sizeof(pieces); k++) {
		uint8_t tmp[300];

		memcpy(tmp, pieces, sizeof(tmp));
		rc_ws_mask(tmp, k, mask, 0);
		rc_ws_mask(tmp + k, sizeof(tmp) - k, mask, k);
		cr_assert(eq(int, memcmp(tmp, whole, sizeof(tmp)), 0), "split %zu", k);
	}
}

/* Masking twice restores the payload. */
Test(ws_frame, mask_twice_is_identity)
{
	static const uint8_t mask[4] = { 1, 2, 3, 4 };
	uint8_t buf[1000], orig[1000];

	for (size_t i = 0; i < sizeof(buf); i++)
		orig[i] = buf[i] = (uint8_t)(i * 7);
	rc_ws_mask(buf, sizeof(buf), mask, 3);
	cr_assert(memcmp(buf, orig, sizeof(buf)) != 0);
	rc_ws_mask(buf, sizeof(buf), mask, 3);
	cr_assert(eq(int, memcmp(buf, orig, sizeof(buf)), 0));
}

/* ---- a server loop over a byte stream --------------------------------------------------- */

/*
 * What a shard does with received bytes, minus the socket: gather a header (parsing in place
 * when it is whole in one chunk), unmask and check the payload as it arrives, and act at the
 * end of each frame. Events go to a log so that every chunking of a stream can be compared.
 */
struct conn {
	const struct rc_ws_limits *lim;
	struct rc_ws_rx rx;
	struct rc_ws_frame f;
	uint8_t hdr[RC_WS_HEADER_LIMIT];
	size_t hdr_len;    /* header bytes gathered while the header is split */
	bool in_payload;   /* f is parsed; its payload is being read */
	uint64_t got;      /* payload bytes of f read so far */
	uint8_t ctl[RC_WS_CONTROL_PAYLOAD_LIMIT];
	uint8_t msg[32];   /* first bytes of the current data message */
	uint64_t msg_len;  /* its length so far */
	bool closed;
	char log[256];
};

#define log_event(c, ...) log_add((c)->log, sizeof((c)->log), __VA_ARGS__)

static void conn_fail(struct conn *c, uint16_t code)
{
	log_event(c, "F%u", code);
	c->closed = true;
}

/* Consumes header bytes from p; returns how many belonged to the header. */
static size_t take_header(struct conn *c, const uint8_t *p, size_t n)
{
	size_t old = c->hdr_len, take = RC_MIN(n, sizeof(c->hdr) - old);
	uint16_t code = 0;
	const char *why = NULL;
	enum rc_parse r;

	if (old == 0)
		r = rc_ws_frame_parse(p, n, c->lim, &c->f, &code, &why);
	else
		r = RC_PARSE_PARTIAL;
	if (r == RC_PARSE_PARTIAL) {
		memcpy(c->hdr + old, p, take);
		c->hdr_len += take;
		r = rc_ws_frame_parse(c->hdr, c->hdr_len, c->lim, &c->f, &code, &why);
	}
	if (r == RC_PARSE_PARTIAL)
		return take;
	if (r == RC_PARSE_DONE && !(c->f.opcode & 8))
		r = rc_ws_rx_frame(&c->rx, &c->f, c->lim, &code, &why);
	if (r == RC_PARSE_FAIL) {
		conn_fail(c, code);
		return n;
	}
	if (c->f.opcode == RC_WS_OP_TEXT || c->f.opcode == RC_WS_OP_BINARY)
		c->msg_len = 0;
	c->in_payload = true;
	c->got = 0;
	c->hdr_len = 0;
	return c->f.header_len - old;
}

/* Unmasks and checks payload bytes in place; returns how many belonged to this frame. */
static size_t take_payload(struct conn *c, uint8_t *p, size_t n)
{
	size_t take = (size_t)RC_MIN((uint64_t)n, c->f.payload_len - c->got);
	uint16_t code = 0;
	const char *why = NULL;

	rc_ws_mask(p, take, c->f.mask, c->got);
	if (c->f.opcode & 8) {
		memcpy(c->ctl + c->got, p, take);
	} else {
		if (rc_ws_rx_payload(&c->rx, p, take, &code, &why) != RC_PARSE_DONE) {
			conn_fail(c, code);
			return n;
		}
		for (size_t i = 0; i < take; i++, c->msg_len++)
			if (c->msg_len < sizeof(c->msg))
				c->msg[c->msg_len] = p[i];
	}
	c->got += take;
	return take;
}

static void end_control(struct conn *c)
{
	uint16_t code = 0, close_code = 0;
	const char *why = NULL;
	struct rc_slice text;
	size_t n = (size_t)c->f.payload_len;

	if (c->f.opcode == RC_WS_OP_PING) {
		log_event(c, "P%zu", n);
	} else if (c->f.opcode == RC_WS_OP_PONG) {
		log_event(c, "O%zu", n);
	} else if (rc_ws_close_parse(c->ctl, n, &code, &text, &close_code, &why) ==
		   RC_PARSE_DONE) {
		log_event(c, "C%u'%.*s'", code, (int)text.len, text.p);
		c->closed = true;
	} else {
		conn_fail(c, close_code);
	}
}

static void end_frame(struct conn *c)
{
	uint16_t code = 0;
	const char *why = NULL;
	bool text = c->rx.message_opcode == RC_WS_OP_TEXT;
	bool short_ascii = c->msg_len <= sizeof(c->msg);

	c->in_payload = false;
	if (c->f.opcode & 8) {
		end_control(c);
		return;
	}
	if (rc_ws_rx_end_frame(&c->rx, c->f.fin, &code, &why) != RC_PARSE_DONE) {
		conn_fail(c, code);
		return;
	}
	if (!c->f.fin)
		return;
	for (size_t i = 0; short_ascii && i < c->msg_len; i++)
		short_ascii = c->msg[i] >= 0x20 && c->msg[i] < 0x7f;
	if (short_ascii)
		log_event(c, "%c'%.*s'", text ? 'T' : 'B', (int)c->msg_len, c->msg);
	else
		log_event(c, "%c#%llu", text ? 'T' : 'B', (unsigned long long)c->msg_len);
}

/* Feeds one received chunk, copied to end at the guard page. */
static void conn_feed(struct conn *c, const uint8_t *data, size_t n)
{
	uint8_t *p = at_guard(data, n);

	while (n > 0 && !c->closed) {
		size_t used = c->in_payload ? take_payload(c, p, n) : take_header(c, p, n);

		p += used;
		n -= used;
		if (c->in_payload && c->got == c->f.payload_len)
			end_frame(c);
	}
}

/* ---- building streams ------------------------------------------------------------------- */

/* Appends one masked frame; the mask changes from frame to frame. */
static void put_frame(struct stream *s, uint8_t op, bool fin, bool rsv1, const void *payload,
		      size_t n)
{
	uint8_t mask[4] = { (uint8_t)(0x11 * s->frames), 0xa5, (uint8_t)~s->frames, 0x3c };
	size_t h = rc_ws_frame_write_client_header(s->b + s->len, op, fin, rsv1, n, mask);

	cr_assert(s->len + h + n <= sizeof(s->b));
	memcpy(s->b + s->len + h, payload, n);
	rc_ws_mask(s->b + s->len + h, n, mask, 0);
	s->len += h + n;
	s->frames++;
}

#define PUT(s, op, fin, str) put_frame(s, op, fin, false, str, sizeof(str) - 1)

/* Runs the stream with a chunk boundary after each offset in cuts[0..ncuts). */
static const char *run_cuts(const struct stream *s, const struct rc_ws_limits *lim,
			    const size_t *cuts, size_t ncuts)
{
	static struct conn c;
	size_t at = 0;

	memset(&c, 0, sizeof(c));
	c.lim = lim;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : s->len;

		conn_feed(&c, s->b + at, end - at);
		at = end;
	}
	return c.log;
}

static void check_stream(const struct stream *s, const struct rc_ws_limits *lim,
			 const char *want)
{
	check_splits(s, lim, want, run_cuts);
}

/* ---- streams that a server accepts ------------------------------------------------------ */

static struct stream st;

static void stream_reset(void)
{
	memset(&st, 0, sizeof(st));
}

/* One masked text frame. */
Test(ws_frame, stream_single_text_message)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, true, "Hello");
	check_stream(&st, &server, "T'Hello'");
}

/* TEXT + CONT + CONT is one message. */
Test(ws_frame, stream_fragmented_message)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "Hel");
	PUT(&st, RC_WS_OP_CONT, false, "");
	PUT(&st, RC_WS_OP_CONT, false, "lo");
	PUT(&st, RC_WS_OP_CONT, true, "!");
	PUT(&st, RC_WS_OP_BINARY, true, "next");
	check_stream(&st, &server, "T'Hello!' B'next'");
}

/* Control frames may come between the fragments of a message. */
Test(ws_frame, stream_accepts_ping_inside_fragmented_message)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "ab");
	PUT(&st, RC_WS_OP_PING, true, "ping");
	PUT(&st, RC_WS_OP_CONT, false, "cd");
	PUT(&st, RC_WS_OP_PONG, true, "");
	PUT(&st, RC_WS_OP_CONT, true, "ef");
	check_stream(&st, &server, "P4 O0 T'abcdef'");
}

/* A code point split across two fragments is accepted once complete. */
Test(ws_frame, stream_utf8_split_across_fragments)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "\xce\xba\xe1");
	PUT(&st, RC_WS_OP_CONT, false, "\xbd");
	PUT(&st, RC_WS_OP_CONT, true, "\xb9\xcf\x83\xce\xbc\xce\xb5");
	PUT(&st, RC_WS_OP_TEXT, false, "\xf0\x9f");
	PUT(&st, RC_WS_OP_CONT, true, "\x98\x80");
	check_stream(&st, &server, "T#11 T#4");
}

/* 16-bit and 64-bit lengths carry their payloads through unmasking intact. */
Test(ws_frame, stream_16_and_64_bit_lengths)
{
	static uint8_t big[70000];

	stream_reset();
	memset(big, 'x', sizeof(big));
	put_frame(&st, RC_WS_OP_BINARY, true, false, big, 300);
	put_frame(&st, RC_WS_OP_TEXT, true, false, big, sizeof(big));
	PUT(&st, RC_WS_OP_TEXT, true, "end");
	check_stream(&st, &server, "B#300 T#70000 T'end'");
}

/* Empty messages, and a close with code and reason. */
Test(ws_frame, stream_empty_messages_then_close)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, true, "");
	PUT(&st, RC_WS_OP_BINARY, false, "");
	PUT(&st, RC_WS_OP_CONT, true, "");
	PUT(&st, RC_WS_OP_CLOSE, true, "\x03\xe8" "bye");
	PUT(&st, RC_WS_OP_TEXT, true, "ignored after close");
	check_stream(&st, &server, "T'' B'' C1000'bye'");
}

/* An empty close payload means "no status" (1005). */
Test(ws_frame, stream_empty_close)
{
	stream_reset();
	PUT(&st, RC_WS_OP_CLOSE, true, "");
	check_stream(&st, &server, "C1005''");
}

/* Binary and compressed text are not UTF-8 checked by the frame layer. */
Test(ws_frame, stream_binary_and_compressed_text_skip_utf8)
{
	stream_reset();
	PUT(&st, RC_WS_OP_BINARY, true, "\xff\xfe");
	put_frame(&st, RC_WS_OP_TEXT, false, true, "\xc0\xaf", 2);
	PUT(&st, RC_WS_OP_CONT, true, "\xed\xa0");
	check_stream(&st, &deflate, "B#2 T#4");
}

/* A message of exactly message_bytes_max across fragments is accepted. */
Test(ws_frame, stream_message_exactly_at_limit)
{
	static uint8_t chunk[100];

	stream_reset();
	memset(chunk, 'm', sizeof(chunk));
	put_frame(&st, RC_WS_OP_BINARY, false, false, chunk, 100);
	put_frame(&st, RC_WS_OP_CONT, false, false, chunk, 100);
	put_frame(&st, RC_WS_OP_CONT, true, false, chunk, 100);
	check_stream(&st, &small, "B#300");
}

/* ---- streams that a server fails -------------------------------------------------------- */

/* A continuation with no message in progress is a protocol error. */
Test(ws_frame, stream_rejects_continuation_without_start)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, true, "ok");
	PUT(&st, RC_WS_OP_CONT, true, "orphan");
	check_stream(&st, &server, "T'ok' F1002");
}

/* A new message before the previous one finished is a protocol error. */
Test(ws_frame, stream_rejects_new_message_mid_message)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "first");
	PUT(&st, RC_WS_OP_BINARY, true, "second");
	check_stream(&st, &server, "F1002");
}

/* message_bytes_max counts every fragment. */
Test(ws_frame, stream_rejects_message_over_limit_across_fragments)
{
	static uint8_t chunk[100];

	stream_reset();
	memset(chunk, 'm', sizeof(chunk));
	put_frame(&st, RC_WS_OP_TEXT, false, false, chunk, 100);
	put_frame(&st, RC_WS_OP_CONT, false, false, chunk, 100);
	put_frame(&st, RC_WS_OP_CONT, false, false, chunk, 100);
	put_frame(&st, RC_WS_OP_CONT, true, false, chunk, 1);
	check_stream(&st, &small, "F1009");
}

/* frame_bytes_max applies to one frame. */
Test(ws_frame, stream_rejects_frame_over_limit)
{
	static uint8_t chunk[101];

	stream_reset();
	put_frame(&st, RC_WS_OP_BINARY, true, false, chunk, sizeof(chunk));
	check_stream(&st, &small, "F1009");
}

/* Invalid UTF-8 whose bad byte starts the next fragment fails the message. */
Test(ws_frame, stream_rejects_invalid_utf8_across_fragments)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "ok\xf4");
	PUT(&st, RC_WS_OP_CONT, true, "\x90\x80\x80");
	check_stream(&st, &server, "F1007");
}

/* A text message may not end inside a code point. */
Test(ws_frame, stream_rejects_text_ending_mid_code_point)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, false, "ab");
	PUT(&st, RC_WS_OP_CONT, true, "\xe2\x82");
	check_stream(&st, &server, "F1007");
}

/* RSV1 is only allowed on the first frame of a compressed message. */
Test(ws_frame, stream_rejects_rsv1_on_continuation)
{
	stream_reset();
	put_frame(&st, RC_WS_OP_TEXT, false, true, "ab", 2);
	put_frame(&st, RC_WS_OP_CONT, true, true, "cd", 2);
	check_stream(&st, &deflate, "F1002");
}

/* Close payloads: one byte, a code that may not be sent, a reason that is not UTF-8. */
Test(ws_frame, stream_rejects_bad_close_payloads)
{
	stream_reset();
	PUT(&st, RC_WS_OP_CLOSE, true, "\x03");
	check_stream(&st, &server, "F1002");
	stream_reset();
	PUT(&st, RC_WS_OP_CLOSE, true, "\x03\xec");
	check_stream(&st, &server, "F1002");
	stream_reset();
	PUT(&st, RC_WS_OP_CLOSE, true, "\x03\xe8" "a\xed\xa0\x80");
	check_stream(&st, &server, "F1007");
}

/* Raw headers a client library would never write: unmasked, fragmented ping, reserved bits. */
Test(ws_frame, stream_rejects_malformed_headers)
{
	stream_reset();
	PUT(&st, RC_WS_OP_TEXT, true, "ok");
	put_raw(&st, "\x81\x02hi", 4);
	check_stream(&st, &server, "T'ok' F1002");
	stream_reset();
	put_raw(&st, "\x09\x80" M, 6);
	check_stream(&st, &server, "F1002");
	stream_reset();
	PUT(&st, RC_WS_OP_PING, true, "x");
	put_raw(&st, "\xa2\x80" M, 6);
	check_stream(&st, &server, "P1 F1002");
}

/* ---- the rx sequencing API directly ----------------------------------------------------- */

static struct rc_ws_frame data_frame(uint8_t op, bool fin, uint64_t len)
{
	return (struct rc_ws_frame){
		.payload_len = len, .header_len = 6, .opcode = op, .fin = fin, .masked = true,
	};
}

/* Invalid UTF-8 fails on the first bad byte, not at the end of the frame or message. */
Test(ws_frame, rx_fails_utf8_at_first_bad_byte)
{
	struct rc_ws_rx rx = { 0 };
	struct rc_ws_frame f = data_frame(RC_WS_OP_TEXT, true, 8);
	const uint8_t *p = (const uint8_t *)"ab\xf4\x90zzzz";
	uint16_t code = 0;
	const char *why = NULL;

	cr_assert(eq(int, rc_ws_rx_frame(&rx, &f, &server, &code, &why), RC_PARSE_DONE));
	for (size_t i = 0; i < 3; i++)
		cr_assert(eq(int, rc_ws_rx_payload(&rx, at_guard(p + i, 1), 1, &code, &why),
			     RC_PARSE_DONE));
	cr_assert(eq(int, rc_ws_rx_payload(&rx, at_guard(p + 3, 1), 1, &code, &why),
		     RC_PARSE_FAIL));
	cr_assert(eq(u16, code, RC_WS_CLOSE_INVALID_DATA));
}

/* Control frames leave the message in progress untouched. */
Test(ws_frame, rx_control_frames_do_not_touch_message_state)
{
	struct rc_ws_rx rx = { 0 }, before;
	struct rc_ws_frame f = data_frame(RC_WS_OP_TEXT, false, 3);
	struct rc_ws_frame ping = data_frame(RC_WS_OP_PING, true, 125);
	uint16_t code = 0;
	const char *why = NULL;

	cr_assert(eq(int, rc_ws_rx_frame(&rx, &f, &server, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(int, rc_ws_rx_payload(&rx, (const uint8_t *)"a\xc3", 2, &code, &why),
		     RC_PARSE_DONE));
	before = rx;
	cr_assert(eq(int, rc_ws_rx_frame(&rx, &ping, &server, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(u64, rx.message_len, 3));
	cr_assert(eq(u8, rx.message_opcode, RC_WS_OP_TEXT));
	cr_assert(eq(u32, rx.utf8_state, before.utf8_state));
	cr_assert(rx.utf8_state != RC_UTF8_ACCEPT);
	cr_assert(not(rx.message_rsv1));
}

/* The state resets after a final frame, so the next message may start. */
Test(ws_frame, rx_resets_after_final_frame)
{
	struct rc_ws_rx rx = { 0 };
	struct rc_ws_frame t = data_frame(RC_WS_OP_TEXT, true, 1);
	struct rc_ws_frame c = data_frame(RC_WS_OP_CONT, true, 1);
	uint16_t code = 0;
	const char *why = NULL;

	cr_assert(eq(int, rc_ws_rx_frame(&rx, &t, &server, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(int, rc_ws_rx_end_frame(&rx, true, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(u8, rx.message_opcode, 0));
	cr_assert(eq(u64, rx.message_len, 0));
	cr_assert(eq(int, rc_ws_rx_frame(&rx, &c, &server, &code, &why), RC_PARSE_FAIL));
	cr_assert(eq(u16, code, RC_WS_CLOSE_PROTOCOL));
	rx = (struct rc_ws_rx){ 0 };
	cr_assert(eq(int, rc_ws_rx_frame(&rx, &t, &server, &code, &why), RC_PARSE_DONE));
}

/* A huge continuation cannot wrap the message length around the limit. */
Test(ws_frame, rx_message_limit_does_not_overflow)
{
	struct rc_ws_rx rx = { 0 };
	struct rc_ws_frame f = data_frame(RC_WS_OP_BINARY, false, 10);
	struct rc_ws_frame huge = data_frame(RC_WS_OP_CONT, true, INT64_MAX);
	struct rc_ws_limits lim = { .frame_bytes_max = UINT64_MAX, .message_bytes_max = 20 };
	uint16_t code = 0;
	const char *why = NULL;

	cr_assert(eq(int, rc_ws_rx_frame(&rx, &f, &lim, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(int, rc_ws_rx_frame(&rx, &huge, &lim, &code, &why), RC_PARSE_FAIL));
	cr_assert(eq(u16, code, RC_WS_CLOSE_TOO_BIG));
	huge.payload_len = 10;
	cr_assert(eq(int, rc_ws_rx_frame(&rx, &huge, &lim, &code, &why), RC_PARSE_DONE));
	cr_assert(eq(u64, rx.message_len, 20));
}

/* ---- close payloads --------------------------------------------------------------------- */

/* Autobahn 7.7.x sends these and expects a clean close (crossbario/autobahn-testsuite). */
static const uint16_t autobahn_valid[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009,
					   1010, 1011, 3000, 3999, 4000, 4999 };
/* Autobahn 7.9.x sends these and expects 1002. */
static const uint16_t autobahn_invalid[] = { 0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999 };

/* The code table: Autobahn's lists, the IANA additions and every range boundary. */
Test(ws_frame, close_code_valid_follows_autobahn_and_iana)
{
	static const uint16_t valid[] = { 1012, 1013, 1014 };
	static const uint16_t invalid[] = { 1015, 5000, 65535, 1 };

	for (size_t i = 0; i < RC_ARRAY_LEN(autobahn_valid); i++)
		cr_assert(rc_ws_close_code_valid(autobahn_valid[i]), "%u", autobahn_valid[i]);
	for (size_t i = 0; i < RC_ARRAY_LEN(valid); i++)
		cr_assert(rc_ws_close_code_valid(valid[i]), "%u", valid[i]);
	for (size_t i = 0; i < RC_ARRAY_LEN(autobahn_invalid); i++)
		cr_assert(not(rc_ws_close_code_valid(autobahn_invalid[i])), "%u",
			  autobahn_invalid[i]);
	for (size_t i = 0; i < RC_ARRAY_LEN(invalid); i++)
		cr_assert(not(rc_ws_close_code_valid(invalid[i])), "%u", invalid[i]);
}

/* Counts the valid codes over the whole 16-bit space: 4 + 8 + 2000. */
Test(ws_frame, close_code_valid_count)
{
	unsigned n = 0;

	for (uint32_t c = 0; c <= UINT16_MAX; c++)
		n += rc_ws_close_code_valid((uint16_t)c);
	cr_assert(eq(u32, n, 4 + 8 + 2000));
}

static enum rc_parse parse_close(const void *payload, size_t len, uint16_t *code,
				 struct rc_slice *text, uint16_t *close_code)
{
	const char *why = NULL;

	return rc_ws_close_parse(at_guard(payload, len), len, code, text, close_code, &why);
}

/* Every Autobahn-valid code, alone and with a reason, is accepted. */
Test(ws_frame, close_parse_accepts_valid_codes)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(autobahn_valid); i++) {
		uint8_t p[8] = { (uint8_t)(autobahn_valid[i] >> 8), (uint8_t)autobahn_valid[i],
				 'r', 'e', 0xc3, 0xa9, 'x', '!' };
		uint16_t code = 0, cc = 0;
		struct rc_slice text;

		cr_assert(eq(int, parse_close(p, 2, &code, &text, &cc), RC_PARSE_DONE));
		cr_assert(eq(u16, code, autobahn_valid[i]));
		cr_assert(eq(u32, text.len, 0));
		cr_assert(eq(int, parse_close(p, 8, &code, &text, &cc), RC_PARSE_DONE));
		cr_assert(eq(u32, text.len, 6));
		cr_assert(eq(int, memcmp(text.p, "re\xc3\xa9x!", 6), 0));
	}
}

/* Every Autobahn-invalid code is a protocol error. */
Test(ws_frame, close_parse_rejects_invalid_codes)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(autobahn_invalid); i++) {
		uint16_t bad = autobahn_invalid[i];
		uint8_t p[2] = { (uint8_t)(bad >> 8), (uint8_t)bad };
		uint16_t code = 0, cc = 0;
		struct rc_slice text;

		cr_assert(eq(int, parse_close(p, 2, &code, &text, &cc), RC_PARSE_FAIL));
		cr_assert(eq(u16, cc, RC_WS_CLOSE_PROTOCOL), "%u", bad);
	}
}

/* Empty means 1005; one byte is a protocol error; a bad reason is invalid data. */
Test(ws_frame, close_parse_lengths_and_reasons)
{
	static const char *bad_reasons[] = { "\x03\xe8\xff", "\x03\xe8" "ab\xc0\xaf",
					     "\x03\xe8\xed\xa0\x80", "\x03\xe8\xf4\x90\x80\x80",
					     "\x03\xe8" "abc\xe2\x82" };
	uint16_t code = 0, cc = 0;
	struct rc_slice text;
	uint8_t big[126] = { 0x03, 0xe8 };

	cr_assert(eq(int, parse_close("", 0, &code, &text, &cc), RC_PARSE_DONE));
	cr_assert(eq(u16, code, RC_WS_CLOSE_NO_STATUS));
	cr_assert(eq(u32, text.len, 0));
	cr_assert(eq(int, parse_close("\x03", 1, &code, &text, &cc), RC_PARSE_FAIL));
	cr_assert(eq(u16, cc, RC_WS_CLOSE_PROTOCOL));
	for (size_t i = 0; i < RC_ARRAY_LEN(bad_reasons); i++) {
		cc = 0;
		cr_assert(eq(int, parse_close(bad_reasons[i], strlen(bad_reasons[i]), &code, &text,
					      &cc), RC_PARSE_FAIL));
		cr_assert(eq(u16, cc, RC_WS_CLOSE_INVALID_DATA), "reason %zu", i);
	}
	memset(big + 2, 'a', sizeof(big) - 2);
	cr_assert(eq(int, parse_close(big, 125, &code, &text, &cc), RC_PARSE_DONE));
	cr_assert(eq(u32, text.len, 123));
	cr_assert(eq(int, parse_close(big, 126, &code, &text, &cc), RC_PARSE_FAIL));
	cr_assert(eq(u16, cc, RC_WS_CLOSE_PROTOCOL));
}

/* Writes a close payload, checks its length and that it parses back to the same code. */
static size_t write_close(uint8_t *out, uint16_t code, const char *reason, size_t want)
{
	size_t n = rc_ws_close_write(out, code, reason);
	uint16_t back = 0, cc = 0;
	struct rc_slice text;

	cr_assert(eq(sz, n, want), "reason of %zu bytes", reason ? strlen(reason) : 0);
	cr_assert(eq(int, parse_close(out, n, &back, &text, &cc), RC_PARSE_DONE));
	cr_assert(eq(u16, back, code));
	if (reason && n)
		cr_assert(eq(int, memcmp(text.p, reason, text.len), 0));
	return n;
}

/* Reasons that fit are written whole; 1005 writes nothing; no reason writes the code. */
Test(ws_frame, close_write_fits)
{
	uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT];
	char reason[124];

	write_close(out, 1000, "bye", 5);
	cr_assert(eq(int, memcmp(out, "\x03\xe8" "bye", 5), 0));
	write_close(out, 1005, "ignored", 0);
	write_close(out, 1011, NULL, 2);
	write_close(out, 4999, "", 2);
	memset(reason, 'a', 123);
	reason[123] = '\0';
	write_close(out, 1001, reason, 125);
}

/* Long reasons are cut to 123 bytes, never inside a code point. */
Test(ws_frame, close_write_truncates_at_code_point_boundary)
{
	static const char *tails[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
	uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT];
	char reason[200];

	memset(reason, 'a', 124);
	reason[124] = '\0';
	write_close(out, 1000, reason, 125);
	for (size_t t = 0; t < RC_ARRAY_LEN(tails); t++) {
		size_t tl = strlen(tails[t]);

		/* Every position of the multi-byte tail around the 123-byte cut. */
		for (size_t pre = 123 - tl; pre <= 123; pre++) {
			memset(reason, 'b', pre);
			strcpy(reason + pre, tails[t]);
			strcat(reason, "zz");
			write_close(out, 1000, reason, 2 + (pre + tl <= 123 ? pre + tl : pre));
		}
	}
}

/* A malformed reason is cut before its first bad byte rather than sent. */
Test(ws_frame, close_write_never_sends_invalid_utf8)
{
	uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT];

	write_close(out, 1000, "ok\xff" "tail", 4);
	write_close(out, 1000, "ok\xe2\x82", 4);
	write_close(out, 1000, "\xed\xa0\x80", 2);
}

/* Sending a code that may not be on the wire is the caller's bug. */
Test(ws_frame, close_write_aborts_on_invalid_code, .signal = SIGABRT)
{
	uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT];

	rc_ws_close_write(out, 1006, "abnormal");
}
