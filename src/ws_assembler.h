/*
 * The WebSocket frame assembler, sans I/O: turns the bytes of successive receives into
 * complete messages and control frames. It parses frames in place when a receive holds them
 * whole, copies only an incomplete frame (into a buffer that grows with the bytes that arrive,
 * never sized from a length field) and the fragments of an unfinished message, unmasks and
 * UTF-8-checks the payload of a pending frame as it arrives (fail fast), and applies
 * struct rc_ws_limits. Every byte it holds is allocated through the caller's hooks, so the
 * caller can charge it to a budget; an idle assembler holds nothing. It decides nothing about
 * sending: completed events go to the caller's callbacks. Pure; the caller's thread.
 */
#ifndef RC_WS_ASSEMBLER_H
#define RC_WS_ASSEMBLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_frame.h"

struct rc_ws_asm_buf;

/*
 * One connection's receive state. Zero-initialised (rc_ws_asm_init) means idle: no partial
 * frame, no message in progress, nothing allocated. 32 bytes.
 */
struct rc_ws_asm {
	struct rc_ws_asm_buf *pend; /* the incomplete frame, header included; NULL when none */
	struct rc_ws_asm_buf *msg;  /* fragments of the message in progress; NULL when none */
	struct rc_ws_rx rx;	    /* message sequencing (ws_frame.h) */
};

/* What the caller wants done with the frames that follow (callbacks return it). */
enum rc_ws_asm_next {
	RC_WS_ASM_DATA = 0, /* open: deliver messages and control frames */
	RC_WS_ASM_CONTROL,  /* closing: follow and check the framing, report only control frames */
	RC_WS_ASM_STOP,	    /* failed or gone: parse nothing more of this receive */
};

/* A complete data message, unmasked, lent to the callback for its duration. */
struct rc_ws_asm_message {
	uint8_t *payload;
	size_t len;
	uint8_t opcode;	 /* RC_WS_OP_TEXT or RC_WS_OP_BINARY */
	bool compressed; /* RSV1 on its first frame: a permessage-deflate payload */
	/* payload[len .. len + RC_PMD_TAIL_ROOM) may be borrowed (written, then restored before
	 * the callback returns), as rc_pmd_inflate() does. True for a payload in the assembler's
	 * buffers; for one in the caller's receive buffer when that buffer's cap allows. */
	bool tail_room;
};

/* A complete control frame, unmasked, lent to the callback for its duration. */
struct rc_ws_asm_control {
	const uint8_t *payload;
	size_t len;
	uint8_t opcode;	     /* RC_WS_OP_CLOSE, RC_WS_OP_PING or RC_WS_OP_PONG */
	uint16_t close_code; /* RC_WS_OP_CLOSE: the peer's valid code, 1005 for none; else 0 */
};

/* Grows old (old_size bytes, NULL with 0) to new_size bytes, like realloc; NULL on failure,
 * leaving old intact. */
typedef void *(*rc_ws_asm_alloc_fn)(void *old, size_t old_size, size_t new_size, void *ctx);
/* Frees p, which the alloc hook returned with size bytes. */
typedef void (*rc_ws_asm_release_fn)(void *p, size_t size, void *ctx);
typedef enum rc_ws_asm_next (*rc_ws_asm_message_fn)(struct rc_ws_asm_message *m, void *ctx);
typedef enum rc_ws_asm_next (*rc_ws_asm_control_fn)(const struct rc_ws_asm_control *f, void *ctx);
/* The peer broke the protocol or memory ran out: the caller closes with code (1002, 1007,
 * 1009, or 1011 "out of memory") and reason (a string literal). The assembler is already
 * reset and parses nothing more of this receive. */
typedef void (*rc_ws_asm_fail_fn)(uint16_t code, const char *reason, void *ctx);

/* The caller's hooks, all required. */
struct rc_ws_asm_ops {
	rc_ws_asm_alloc_fn alloc;
	rc_ws_asm_release_fn release;
	rc_ws_asm_message_fn on_message;
	rc_ws_asm_control_fn on_control;
	rc_ws_asm_fail_fn on_fail;
};

/* What one call works with: borrowed for the call's duration. */
struct rc_ws_asm_env {
	const struct rc_ws_limits *lim; /* rc_ws_asm_feed only; rsv1_allowed = deflate agreed */
	const struct rc_ws_asm_ops *ops;
	void *ctx; /* given to every hook */
};

/* Makes a idle: nothing held. Frees nothing (use rc_ws_asm_reset on one in use). */
void rc_ws_asm_init(struct rc_ws_asm *a);

/*
 * Feeds the bytes of one receive, p[0..n), in order after every earlier receive. The bytes
 * are borrowed and written (unmasked in place); p[n..cap) is more of the same buffer that a
 * message callback may borrow as tail room (cap == n: none). mode says what the caller wants
 * from the first frame on; each callback's return value says it for the frames after.
 * Parsing stops after a callback returns RC_WS_ASM_STOP or after on_fail. A callback may
 * reset a (rc_ws_asm_reset) only if it returns RC_WS_ASM_STOP; the payload it was lent is
 * not a's to free then. Returns the number of frames completed. Caller's thread.
 */
uint32_t rc_ws_asm_feed(struct rc_ws_asm *a, uint8_t *p, size_t n, size_t cap,
			enum rc_ws_asm_next mode, const struct rc_ws_asm_env *env);

/* Frees everything a holds (through env's release hook) and makes it idle. */
void rc_ws_asm_reset(struct rc_ws_asm *a, const struct rc_ws_asm_env *env);

/* True while a holds an incomplete frame or a message whose last fragment has not come. */
static inline bool rc_ws_asm_incomplete(const struct rc_ws_asm *a)
{
	return a->pend != NULL || a->rx.message_opcode != 0;
}

/*
 * Bytes a holds between calls: the sum of the sizes its live allocations were made with, so
 * exactly what the alloc hook handed out minus what the release hook took back. 0 when idle.
 * During a callback the buffer holding the payload being delivered is no longer counted.
 */
size_t rc_ws_asm_bytes(const struct rc_ws_asm *a);

#endif
