/*
 * RFC 6455 framing, sans I/O: frame header parsing and writing, unmasking, the per-connection
 * message sequencing rules (fragmentation, interleaved control frames, size limits, UTF-8 of
 * text messages) and close-frame payloads. Knows nothing of sockets or buffers' owners.
 * Pure; the caller's thread.
 */
#ifndef RC_WS_FRAME_H
#define RC_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"

enum rc_ws_opcode {
	RC_WS_OP_CONT = 0x0,
	RC_WS_OP_TEXT = 0x1,
	RC_WS_OP_BINARY = 0x2,
	RC_WS_OP_CLOSE = 0x8,
	RC_WS_OP_PING = 0x9,
	RC_WS_OP_PONG = 0xA,
};

/* Close codes the server sends (RFC 6455 §7.4.1). */
enum rc_ws_close_code {
	RC_WS_CLOSE_NORMAL = 1000,
	RC_WS_CLOSE_GOING_AWAY = 1001,
	RC_WS_CLOSE_PROTOCOL = 1002,
	RC_WS_CLOSE_UNSUPPORTED = 1003,
	RC_WS_CLOSE_NO_STATUS = 1005, /* never on the wire */
	RC_WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
	RC_WS_CLOSE_INVALID_DATA = 1007,
	RC_WS_CLOSE_POLICY = 1008,
	RC_WS_CLOSE_TOO_BIG = 1009,
	RC_WS_CLOSE_INTERNAL = 1011,
	RC_WS_CLOSE_TRY_AGAIN = 1013,
};

#define RC_WS_CONTROL_PAYLOAD_LIMIT 125
#define RC_WS_HEADER_LIMIT 14 /* 2 + 8 (64-bit length) + 4 (mask) */
#define RC_WS_SERVER_HEADER_LIMIT 10

/* One parsed frame header. */
struct rc_ws_frame {
	uint64_t payload_len;
	uint8_t header_len; /* 2..14 bytes, mask included */
	uint8_t opcode;     /* enum rc_ws_opcode */
	bool fin;
	bool rsv1; /* permessage-deflate "compressed" bit */
	bool masked;
	uint8_t mask[4];
};

/* Limits and negotiated options that govern one connection's frames. */
struct rc_ws_limits {
	uint64_t frame_bytes_max;   /* payload of one frame; larger → 1009 */
	uint64_t message_bytes_max; /* sum of a message's fragments; larger → 1009 */
	bool rsv1_allowed;          /* permessage-deflate negotiated */
	bool require_mask;          /* true on the server side (client frames) */
};

/*
 * Parses one frame header at buf. DONE: *out is filled (consumed bytes = out->header_len).
 * PARTIAL: fewer bytes than the header needs. FAIL: *close_code (1002 or 1009) and *reason (a
 * string literal) say why: reserved opcode, RSV2/RSV3 or unnegotiated RSV1, RSV1 on a control
 * frame, unmasked client frame, control frame longer than 125 bytes or fragmented, 64-bit
 * length with the top bit set, payload above frame_bytes_max. Borrows buf.
 */
enum rc_parse rc_ws_frame_parse(const uint8_t *buf, size_t len, const struct rc_ws_limits *lim,
				struct rc_ws_frame *out, uint16_t *close_code, const char **reason);

/*
 * Writes an unmasked (server) frame header into out and returns its length (2, 4 or 10).
 */
size_t rc_ws_frame_write_header(uint8_t out[RC_WS_SERVER_HEADER_LIMIT], uint8_t opcode, bool fin,
				bool rsv1, uint64_t payload_len);

/*
 * Writes a masked (client) frame header into out and returns its length (6, 8 or 14). Used by
 * ringcast-bench and tests; the caller masks the payload with rc_ws_mask().
 */
size_t rc_ws_frame_write_client_header(uint8_t out[RC_WS_HEADER_LIMIT], uint8_t opcode, bool fin,
				       bool rsv1, uint64_t payload_len, const uint8_t mask[4]);

/*
 * XORs p[0..len) with the 4-byte mask, starting at mask position offset % 4 (so a payload
 * that arrives in pieces is unmasked piece by piece). Masking and unmasking are the same
 * operation.
 */
void rc_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset);

/*
 * Per-connection receive sequencing state: which message is in progress and how far it got.
 * Zero-initialised means "no message in progress". 16 bytes.
 */
struct rc_ws_rx {
	uint64_t message_len;  /* payload bytes of the current message so far */
	uint32_t utf8_state;   /* rc_utf8_feed() state of the current text message */
	uint8_t message_opcode; /* RC_WS_OP_TEXT/BINARY while a message is in progress, else 0 */
	bool message_rsv1;      /* the current message is compressed */
};

/*
 * Checks a parsed frame against the message in progress, before its payload is read.
 * Control frames are always accepted here (they may interleave). Data frames: a continuation
 * without a message in progress, or a new TEXT/BINARY while one is in progress → 1002; RSV1 on
 * a continuation frame → 1002; a message growing past message_bytes_max → 1009. On DONE the
 * message state is updated (opcode, length). Returns DONE or FAIL (with code and reason).
 */
enum rc_parse rc_ws_rx_frame(struct rc_ws_rx *rx, const struct rc_ws_frame *f,
			     const struct rc_ws_limits *lim, uint16_t *close_code,
			     const char **reason);

/*
 * Feeds unmasked payload bytes of the current data frame for validation: for an uncompressed
 * text message it advances the UTF-8 state and returns FAIL (1007) on the first invalid byte.
 * Binary and compressed messages always pass (compressed text is validated after inflation).
 */
enum rc_parse rc_ws_rx_payload(struct rc_ws_rx *rx, const uint8_t *p, size_t len,
			       uint16_t *close_code, const char **reason);

/*
 * Ends the current data frame. If fin, the message is complete: an uncompressed text message
 * must end at a code point boundary (else FAIL 1007) and the state resets for the next message.
 * Returns DONE or FAIL.
 */
enum rc_parse rc_ws_rx_end_frame(struct rc_ws_rx *rx, bool fin, uint16_t *close_code,
				 const char **reason);

/*
 * Parses a received close frame's (unmasked) payload. Empty → *code = 1005, DONE. One byte,
 * a code that may not be sent on the wire (below 1000, 1004-1006, 1015, undefined 1016-2999,
 * 5000+), or a reason that is not UTF-8 → FAIL with *close_code 1002 (or 1007 for the
 * reason) and *reason. On DONE *code and *text (borrowed, into p) are set.
 */
enum rc_parse rc_ws_close_parse(const uint8_t *p, size_t len, uint16_t *code,
				struct rc_slice *text, uint16_t *close_code, const char **reason);

/* True if code may be sent in a close frame (RFC 6455 §7.4, IANA registry). */
bool rc_ws_close_code_valid(uint16_t code);

/*
 * Writes a close payload (2-byte code + reason, reason truncated to fit 125 bytes at a UTF-8
 * boundary) into out and returns its length. code 1005 writes an empty payload.
 */
size_t rc_ws_close_write(uint8_t out[RC_WS_CONTROL_PAYLOAD_LIMIT], uint16_t code,
			 const char *reason);

#endif
