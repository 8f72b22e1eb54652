/*
 * RFC 6455 framing, sans I/O. Owns the wire format of frame headers (parse and write), payload
 * masking, the receive-side message sequencing rules of one connection (struct rc_ws_rx) and
 * the close-frame payload format, including which close codes may appear on the wire. Does not
 * own buffers, sockets, timers or the decision to send anything: every function works on bytes
 * the caller borrows to it and reports what it found. Pure; the caller's thread.
 */
#include "ws_frame.h"

#include <string.h>

#include "base/rc_assert.h"
#include "utf8.h"

#define B0_FIN 0x80u
#define B0_RSV1 0x40u
#define B0_RSV23 0x30u /* RSV2 | RSV3: no extension we negotiate defines them */
#define B0_OPCODE 0x0Fu
#define B1_MASK 0x80u
#define B1_LEN 0x7Fu
#define LEN_16 126u /* the 7-bit length field announcing a 16-bit length */
#define LEN_64 127u /* ... and a 64-bit one */
#define OP_CONTROL 0x8u
#define CLOSE_REASON_LIMIT (RC_WS_CONTROL_PAYLOAD_LIMIT - 2)

/* Bit n set: opcode n is defined by RFC 6455 (0-2 data, 8-A control); all others are reserved. */
#define OPCODES_DEFINED 0x0707u

RC_STATIC_ASSERT(RC_WS_HEADER_LIMIT == 2 + 8 + 4, "largest masked header");
RC_STATIC_ASSERT(RC_WS_SERVER_HEADER_LIMIT == 2 + 8, "largest unmasked header");
RC_STATIC_ASSERT(RC_WS_CONTROL_PAYLOAD_LIMIT < LEN_16, "control payloads use the 7-bit form");
RC_STATIC_ASSERT(sizeof(struct rc_ws_rx) == 16, "rc_ws_rx is documented as 16 bytes");

static bool opcode_defined(unsigned opcode)
{
	return opcode < 16 && ((OPCODES_DEFINED >> opcode) & 1u);
}

static enum rc_parse fail(uint16_t *close_code, const char **reason, uint16_t code,
			  const char *why)
{
	RC_DASSERT(code == RC_WS_CLOSE_PROTOCOL || code == RC_WS_CLOSE_INVALID_DATA ||
		   code == RC_WS_CLOSE_TOO_BIG);
	*close_code = code;
	*reason = why;
	return RC_PARSE_FAIL;
}

/*
 * The rules decided by the first two header bytes, all answered with 1002. Returns NULL if the
 * bits are acceptable, else the reason.
 */
static const char *check_bits(uint8_t b0, uint8_t b1, const struct rc_ws_limits *lim)
{
	unsigned opcode = b0 & B0_OPCODE;

	if (!opcode_defined(opcode))
		return "reserved opcode";
	if (b0 & B0_RSV23)
		return "RSV2/RSV3 set";
	if ((b0 & B0_RSV1) && !lim->rsv1_allowed)
		return "RSV1 set without permessage-deflate";
	if (opcode & OP_CONTROL) {
		if (b0 & B0_RSV1)
			return "RSV1 set on a control frame";
		if (!(b0 & B0_FIN))
			return "fragmented control frame";
		if ((b1 & B1_LEN) > RC_WS_CONTROL_PAYLOAD_LIMIT)
			return "control frame payload over 125 bytes";
	}
	if (lim->require_mask && !(b1 & B1_MASK))
		return "unmasked client frame";
	return NULL;
}

/* Header length announced by the second header byte: 2..14. */
static size_t header_len_of(uint8_t b1)
{
	unsigned len7 = b1 & B1_LEN;
	size_t n = 2;

	if (len7 == LEN_16)
		n += 2;
	else if (len7 == LEN_64)
		n += 8;
	if (b1 & B1_MASK)
		n += 4;
	RC_DASSERT(n <= RC_WS_HEADER_LIMIT);
	return n;
}

/*
 * Reads the payload length of a header whose bytes are all present. The 16-bit and 64-bit forms
 * are accepted even when a shorter form would have done: RFC 6455 says "minimal number of bytes
 * MUST be used", but rejecting a peer for it buys nothing and Autobahn does not test it.
 */
static uint64_t payload_len_of(const uint8_t *buf)
{
	unsigned len7 = buf[1] & B1_LEN;
	uint64_t n = 0;

	if (len7 < LEN_16)
		return len7;
	if (len7 == LEN_16)
		return (uint64_t)buf[2] << 8 | buf[3];
	for (size_t i = 0; i < 8; i++)
		n = n << 8 | buf[2 + i];
	return n;
}

enum rc_parse rc_ws_frame_parse(const uint8_t *buf, size_t len, const struct rc_ws_limits *lim,
				struct rc_ws_frame *out, uint16_t *close_code, const char **reason)
{
	const char *why;
	size_t hlen;
	uint64_t plen;

	RC_ASSERT(buf != NULL || len == 0);
	RC_ASSERT(lim != NULL && out != NULL);
	RC_ASSERT(close_code != NULL && reason != NULL);
	if (len < 2)
		return RC_PARSE_PARTIAL;
	hlen = header_len_of(buf[1]);
	if (len < hlen)
		return RC_PARSE_PARTIAL;
	why = check_bits(buf[0], buf[1], lim);
	if (why)
		return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL, why);
	plen = payload_len_of(buf);
	if (plen >> 63)
		return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL,
			    "64-bit length with top bit set");
	if (plen > lim->frame_bytes_max)
		return fail(close_code, reason, RC_WS_CLOSE_TOO_BIG, "frame over frame_bytes_max");

	out->payload_len = plen;
	out->header_len = (uint8_t)hlen;
	out->opcode = buf[0] & B0_OPCODE;
	out->fin = buf[0] & B0_FIN;
	out->rsv1 = buf[0] & B0_RSV1;
	out->masked = buf[1] & B1_MASK;
	memset(out->mask, 0, sizeof(out->mask));
	if (out->masked)
		memcpy(out->mask, buf + hlen - 4, sizeof(out->mask));
	if (out->opcode & OP_CONTROL)
		RC_DASSERT(out->payload_len <= RC_WS_CONTROL_PAYLOAD_LIMIT);
	return RC_PARSE_DONE;
}

/*
 * Writes the first byte, the mask bit and the shortest length form; returns the bytes written
 * (2, 4 or 10). Arguments are the caller's own values, so bad ones are programmer errors.
 */
static size_t put_header(uint8_t *out, uint8_t opcode, bool fin, bool rsv1, uint64_t payload_len,
			 uint8_t mask_bit)
{
	RC_ASSERT(opcode_defined(opcode));
	RC_ASSERT(payload_len >> 63 == 0);
	if (opcode & OP_CONTROL) {
		RC_ASSERT(fin && !rsv1);
		RC_ASSERT(payload_len <= RC_WS_CONTROL_PAYLOAD_LIMIT);
	}
	out[0] = (uint8_t)((fin ? B0_FIN : 0) | (rsv1 ? B0_RSV1 : 0) | opcode);
	if (payload_len < LEN_16) {
		out[1] = (uint8_t)(mask_bit | payload_len);
		return 2;
	}
	if (payload_len <= UINT16_MAX) {
		out[1] = (uint8_t)(mask_bit | LEN_16);
		out[2] = (uint8_t)(payload_len >> 8);
		out[3] = (uint8_t)payload_len;
		return 4;
	}
	out[1] = (uint8_t)(mask_bit | LEN_64);
	for (size_t i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
	return 10;
}

size_t rc_ws_frame_write_header(uint8_t out[RC_WS_SERVER_HEADER_LIMIT], uint8_t opcode, bool fin,
				bool rsv1, uint64_t payload_len)
{
	RC_ASSERT(out != NULL);
	return put_header(out, opcode, fin, rsv1, payload_len, 0);
}

size_t rc_ws_frame_write_client_header(uint8_t out[RC_WS_HEADER_LIMIT], uint8_t opcode, bool fin,
				       bool rsv1, uint64_t payload_len, const uint8_t mask[4])
{
	size_t n;

	RC_ASSERT(out != NULL && mask != NULL);
	n = put_header(out, opcode, fin, rsv1, payload_len, B1_MASK);
	memcpy(out + n, mask, 4);
	RC_DASSERT(n + 4 <= RC_WS_HEADER_LIMIT);
	return n + 4;
}

/*
 * The mask is rotated to start at offset % 4 (four bytes in memory order) and doubled into a
 * 64-bit word whose two halves are equal, so the word lines up with the payload on any
 * endianness and the loop does one load, XOR and store per eight bytes; memcpy makes the
 * unaligned accesses legal and compiles to plain moves.
 */
void rc_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
	uint8_t rot[4];
	uint32_t half;
	uint64_t m, w;
	size_t i = 0;

	RC_ASSERT(p != NULL || len == 0);
	RC_ASSERT(mask != NULL);
	if (offset & 3) {
		for (size_t k = 0; k < sizeof(rot); k++)
			rot[k] = mask[(offset + k) & 3];
	} else {
		memcpy(rot, mask, sizeof(rot)); /* a whole frame: no rotation */
	}
	memcpy(&half, rot, sizeof(half));
	m = (uint64_t)half << 32 | half;
	for (; len - i >= 32; i += 32) {
		for (size_t k = 0; k < 32; k += 8) {
			memcpy(&w, p + i + k, sizeof(w));
			w ^= m;
			memcpy(p + i + k, &w, sizeof(w));
		}
	}
	for (; len - i >= 8; i += 8) {
		memcpy(&w, p + i, sizeof(w));
		w ^= m;
		memcpy(p + i, &w, sizeof(w));
	}
	/* i is a multiple of 8 here and rot has period 4, so rot[i & 3] is the right mask byte. */
	for (; i < len; i++)
		p[i] ^= rot[i & 3];
}

enum rc_parse rc_ws_rx_frame(struct rc_ws_rx *rx, const struct rc_ws_frame *f,
			     const struct rc_ws_limits *lim, uint16_t *close_code,
			     const char **reason)
{
	uint64_t so_far;

	RC_ASSERT(rx != NULL && f != NULL && lim != NULL);
	RC_ASSERT(close_code != NULL && reason != NULL);
	RC_DASSERT(opcode_defined(f->opcode));
	if (f->opcode & OP_CONTROL)
		return RC_PARSE_DONE;
	if (f->opcode == RC_WS_OP_CONT) {
		if (rx->message_opcode == 0)
			return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL,
				    "continuation frame without a message in progress");
		if (f->rsv1)
			return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL,
				    "RSV1 set on a continuation frame");
		so_far = rx->message_len;
	} else {
		if (rx->message_opcode != 0)
			return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL,
				    "new message before the previous one finished");
		so_far = 0;
	}
	RC_DASSERT(so_far <= lim->message_bytes_max);
	if (f->payload_len > lim->message_bytes_max - so_far)
		return fail(close_code, reason, RC_WS_CLOSE_TOO_BIG,
			    "message over message_bytes_max");
	if (f->opcode != RC_WS_OP_CONT) {
		rx->message_opcode = f->opcode;
		rx->message_rsv1 = f->rsv1;
		rx->utf8_state = RC_UTF8_ACCEPT;
	}
	rx->message_len = so_far + f->payload_len;
	return RC_PARSE_DONE;
}

/* Only uncompressed text is validated here; compressed text is validated after inflation. */
static bool validates_utf8(const struct rc_ws_rx *rx)
{
	return rx->message_opcode == RC_WS_OP_TEXT && !rx->message_rsv1;
}

enum rc_parse rc_ws_rx_payload(struct rc_ws_rx *rx, const uint8_t *p, size_t len,
			       uint16_t *close_code, const char **reason)
{
	RC_ASSERT(rx != NULL && (p != NULL || len == 0));
	RC_ASSERT(close_code != NULL && reason != NULL);
	RC_ASSERT(rx->message_opcode == RC_WS_OP_TEXT || rx->message_opcode == RC_WS_OP_BINARY);
	if (!validates_utf8(rx))
		return RC_PARSE_DONE;
	if (!rc_utf8_feed(&rx->utf8_state, p, len))
		return fail(close_code, reason, RC_WS_CLOSE_INVALID_DATA,
			    "invalid UTF-8 in a text message");
	return RC_PARSE_DONE;
}

enum rc_parse rc_ws_rx_end_frame(struct rc_ws_rx *rx, bool fin, uint16_t *close_code,
				 const char **reason)
{
	RC_ASSERT(rx != NULL);
	RC_ASSERT(close_code != NULL && reason != NULL);
	RC_ASSERT(rx->message_opcode == RC_WS_OP_TEXT || rx->message_opcode == RC_WS_OP_BINARY);
	if (!fin)
		return RC_PARSE_DONE;
	if (validates_utf8(rx) && rx->utf8_state != RC_UTF8_ACCEPT)
		return fail(close_code, reason, RC_WS_CLOSE_INVALID_DATA,
			    "text message ends inside a UTF-8 sequence");
	memset(rx, 0, sizeof(*rx));
	return RC_PARSE_DONE;
}

/*
 * Which close codes may appear on the wire, checked against the Autobahn|Testsuite case
 * definitions (crossbario/autobahn-testsuite, autobahntestsuite/case/case7_7_X.py and
 * case7_9_X.py) and RFC 6455 §7.4 with the IANA registry:
 *   valid:   1000-1003 and 1007-1011 (RFC 6455; Autobahn 7.7.x sends 1000-1003, 1007-1011),
 *            1012-1014 (registered with IANA after RFC 6455: service restart, try again later,
 *            bad gateway; the current case7_9_X.py no longer lists them as invalid, only an
 *            old autobahn-python copy did), 3000-4999 (registered and private use; 7.7.x sends
 *            3000, 3999, 4000, 4999);
 *   invalid: 0-999, 1004 (reserved), 1005 and 1006 (never sent), 1015 (TLS failure, never
 *            sent), 1016-2999 (unassigned, reserved for the protocol), 5000+ (Autobahn 7.9.x
 *            sends 0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999 and expects 1002).
 */
bool rc_ws_close_code_valid(uint16_t code)
{
	if (code >= 1000 && code <= 1003)
		return true;
	if (code >= 1007 && code <= 1014)
		return true;
	return code >= 3000 && code <= 4999;
}

enum rc_parse rc_ws_close_parse(const uint8_t *p, size_t len, uint16_t *code,
				struct rc_slice *text, uint16_t *close_code, const char **reason)
{
	uint16_t c;

	RC_ASSERT(p != NULL || len == 0);
	RC_ASSERT(code != NULL && text != NULL);
	RC_ASSERT(close_code != NULL && reason != NULL);
	if (len == 0) {
		*code = RC_WS_CLOSE_NO_STATUS;
		text->p = (const char *)p;
		text->len = 0;
		return RC_PARSE_DONE;
	}
	/* The frame parser already caps control payloads; this keeps the function safe alone. */
	if (len > RC_WS_CONTROL_PAYLOAD_LIMIT)
		return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL,
			    "close payload over 125 bytes");
	if (len == 1)
		return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL, "close payload of one byte");
	c = (uint16_t)(p[0] << 8 | p[1]);
	if (!rc_ws_close_code_valid(c))
		return fail(close_code, reason, RC_WS_CLOSE_PROTOCOL, "invalid close code");
	if (!rc_utf8_valid(p + 2, len - 2))
		return fail(close_code, reason, RC_WS_CLOSE_INVALID_DATA,
			    "close reason is not UTF-8");
	*code = c;
	text->p = (const char *)p + 2;
	text->len = (uint32_t)(len - 2);
	return RC_PARSE_DONE;
}

/*
 * Length of the longest prefix of s[0..n) that ends at a code point boundary and is valid
 * UTF-8. Cutting there never splits a sequence, and a caller's malformed reason can never put
 * invalid UTF-8 on the wire (the peer would have to fail us with 1007).
 */
static size_t utf8_prefix(const uint8_t *s, size_t n)
{
	uint32_t state = RC_UTF8_ACCEPT;
	size_t good = 0;

	RC_DASSERT(n <= CLOSE_REASON_LIMIT);
	for (size_t i = 0; i < n; i++) {
		if (!rc_utf8_feed(&state, s + i, 1))
			break;
		if (state == RC_UTF8_ACCEPT)
			good = i + 1;
	}
	RC_DASSERT(good <= n);
	return good;
}

size_t rc_ws_close_write(uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT], uint16_t code,
			 const char *reason)
{
	size_t n;

	RC_ASSERT(out != NULL);
	if (code == RC_WS_CLOSE_NO_STATUS)
		return 0;
	RC_ASSERT(rc_ws_close_code_valid(code));
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (!reason)
		return 2;
	n = utf8_prefix((const uint8_t *)reason, strnlen(reason, CLOSE_REASON_LIMIT));
	memcpy(out + 2, reason, n);
	RC_DASSERT(2 + n <= RC_WS_CONTROL_PAYLOAD_LIMIT);
	return 2 + n;
}
