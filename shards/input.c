/*
 * What an open connection does with received bytes: WebSocket frames, once http_serve.c has
 * upgraded it. They go through the connection's assembler (src/ws_assembler.c, which keeps
 * partial frames and fragments); this file acts on what it reports: delivers messages,
 * answers pings and closes, fails the connection. Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn_rt.h"
#include "input.h"
#include "mem.h"
#include "sendq.h"
#include "session.h"
#include "utf8.h"
#include "ws_assembler.h"

/* ---- WebSocket frames --------------------------------------------------------------------- */
static enum rc_close_reason reason_of(uint16_t code)
{
	switch (code) {
	case RC_WS_CLOSE_INVALID_DATA: return RC_CLOSE_invalid_data;
	case RC_WS_CLOSE_TOO_BIG: return RC_CLOSE_too_big;
	case RC_WS_CLOSE_POLICY: return RC_CLOSE_rate_limited;
	case RC_WS_CLOSE_TRY_AGAIN: return RC_CLOSE_memory_shed;
	default: return RC_CLOSE_protocol_error;
	}
}

/* Fails the connection: close frame with code, then input is dropped and TCP half-closed;
 * counted under why. */
static void fail_why(struct rc_conn *c, uint16_t code, const char *reason,
		     enum rc_close_reason why)
{
	if (c->state != RC_CONN_OPEN) {
		rc_conn_terminate(c, why);
		return;
	}
	rc_conn_ws_close(c, code, reason, why);
	c->flags |= RC_CF_DISCARD;
	rc_conn_ws_reset(c);
}

static void fail(struct rc_conn *c, uint16_t code, const char *reason)
{
	fail_why(c, code, reason, reason_of(code));
}

void rc_conn_shed(struct rc_conn *c)
{
	RC_ASSERT(c->state == RC_CONN_OPEN);
	/* Its backlog and partial message go now; only the close frame is left to send. */
	rc_sendq_drop_unsent(c);
	fail(c, RC_WS_CLOSE_TRY_AGAIN, "memory budget");
	RC_ASSERT(c->state != RC_CONN_OPEN);
}

static const struct rc_ws_limits *limits_of(const struct rc_conn *c)
{
	return &c->shard->app->ws[c->endpoint].limits;
}

/* The inflate bucket's size: a second's worth, and at least one message of the endpoint. */
static uint64_t inflate_cap(const struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	return RC_MIN(RC_MAX(cfg->inflate_bytes_per_second_max, limits_of(c)->message_bytes_max),
		      UINT32_MAX);
}

/*
 * Refills c's two token buckets for the ticks since the last refill: messages (at
 * messages_per_second_max, holding at most messages_burst_max) and inflated bytes (at
 * inflate_bytes_per_second_max). One tick stamp serves both, so both refill together.
 */
static void refill(struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	uint32_t now = rc_clock_tick(&c->shard->clock);
	uint64_t ms = (uint64_t)(now - c->rate_tick) * cfg->timer_tick_ms;
	/* Thousandths of a message per ms equal messages per second. */
	uint64_t add = ms * cfg->messages_per_second_max;
	uint64_t cap = cfg->messages_burst_max * 1000;
	c->rate_tokens = (uint32_t)RC_MIN((uint64_t)c->rate_tokens + add, RC_MIN(cap, UINT32_MAX));
	add = ms * cfg->inflate_bytes_per_second_max / 1000;
	c->inflate_tokens = (uint32_t)RC_MIN((uint64_t)c->inflate_tokens + add, inflate_cap(c));
	c->rate_tick = now;
}

/* Takes one message from c's message bucket. False when the client sends faster than
 * allowed. */
static bool rate_ok(struct rc_conn *c)
{
	if (!c->shard->app->cfg.messages_per_second_max)
		return true;
	refill(c);
	if (c->rate_tokens < 1000)
		return false;
	c->rate_tokens -= 1000;
	return true;
}

/* Takes n inflated bytes from c's inflate bucket. False when the client's compressed
 * messages inflate faster than allowed. */
static bool inflate_ok(struct rc_conn *c, size_t n)
{
	if (!c->shard->app->cfg.inflate_bytes_per_second_max)
		return true;
	refill(c);
	if (n > c->inflate_tokens)
		return false;
	c->inflate_tokens -= (uint32_t)n;
	return true;
}

static void deliver(struct rc_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
	const struct rc_ws_handler *h = &c->shard->app->ws[c->endpoint].h;
	if (!rate_ok(c)) {
		fail(c, RC_WS_CLOSE_POLICY, "message rate limit exceeded");
		return;
	}
	c->shard->stats.messages_in++;
	if (h->on_message)
		h->on_message(c, p, len, opcode == RC_WS_OP_BINARY, h->ctx);
}

/* A ping is answered while open, a pong only resets the idle clock, a close (whose payload
 * the assembler checked) is echoed or completes the close we started. */
static void control(struct rc_conn *c, const struct rc_ws_asm_control *f)
{
	uint8_t reply[RC_WS_CONTROL_PAYLOAD_LIMIT];

	if (f->opcode == RC_WS_OP_PING) {
		/* A pong still queued is replaced by this one (sendq.c): a ping flood from a
		 * client that never reads holds one pong, and its stuck queue ages into 1013. */
		if (c->state == RC_CONN_OPEN &&
		    rc_conn_send_frame(c, RC_WS_OP_PONG, f->payload, f->len) == -ENOBUFS)
			rc_conn_slow_close(c);
		return;
	}
	if (f->opcode != RC_WS_OP_CLOSE)
		return; /* a pong: its arrival already reset the idle clock */
	c->close_code = f->close_code;
	c->flags |= RC_CF_FLUSH_CLOSE;
	if (c->state == RC_CONN_OPEN) {
		/* Echo the peer's code (RFC 6455 §5.5.1); a bare close gets a bare close. */
		size_t rlen = rc_ws_close_write(reply, f->close_code, NULL);
		c->state = RC_CONN_CLOSING;
		c->close_reason = RC_CLOSE_normal; /* the peer started it; ours keeps its reason */
		if (rc_conn_send_frame(c, RC_WS_OP_CLOSE, reply, rlen) != 0)
			rc_conn_terminate(c, RC_CLOSE_normal);
		return;
	}
	rc_conn_mark_dirty(c); /* our close went out already: end once the queue is flushed */
}

/* Delivers an inflated message; what the handler sends meanwhile uses deflate_echo_level. */
static void deliver_inflated(struct rc_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(!s->in_deflated);
	s->in_deflated = true;
	deliver(c, opcode, p, len);
	s->in_deflated = false;
}

/*
 * Delivers a permessage-deflate message: p[0..len) is the compressed payload with tail room
 * after it when room is true (otherwise it is copied first). Inflation is bounded by the
 * endpoint's message limit (a bomb gets 1009, corrupt data 1007) and text is validated as
 * UTF-8 once inflated.
 */
static void deliver_deflated(struct rc_conn *c, uint8_t opcode, uint8_t *p, size_t len,
			     bool room)
{
	struct rc_shard *s = c->shard;
	size_t max = (size_t)limits_of(c)->message_bytes_max, out_len = 0;
	uint8_t *copy = NULL;
	if (!room) {
		copy = malloc(len + RC_PMD_TAIL_ROOM);
		if (!copy) {
			fail(c, RC_WS_CLOSE_INTERNAL, "out of memory");
			return;
		}
		p = memcpy(copy, p, len);
	}
	/* The shard's inflation output grows with what clients send: charged, and refused past
	 * the budget. */
	uint8_t *out = rc_shard_ibuf(s, max);
	int rc = out ? rc_pmd_inflate(s->inflater, p, len, out, max, &out_len) : -ENOMEM;
	free(copy);
	s->stats.inflated_messages++;
	if (!out)
		fail(c, RC_WS_CLOSE_TRY_AGAIN, "memory budget");
	else if (rc == RC_PMD_ERR_TOO_BIG)
		fail(c, RC_WS_CLOSE_TOO_BIG, "message too big once inflated");
	else if (rc != 0)
		fail(c, rc == -ENOMEM ? RC_WS_CLOSE_INTERNAL : RC_WS_CLOSE_INVALID_DATA,
		     rc == -ENOMEM ? "out of memory" : "invalid compressed data");
	else if (!inflate_ok(c, out_len))
		fail_why(c, RC_WS_CLOSE_POLICY, "inflate rate limit exceeded",
			 RC_CLOSE_inflate_rate);
	else if (opcode == RC_WS_OP_TEXT && !rc_utf8_valid(out, out_len))
		fail(c, RC_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
	else
		deliver_inflated(c, opcode, out, out_len);
}

/* What c wants from the frames that follow: data while open, only the close reply once
 * closing, nothing after a failure. */
static enum rc_ws_asm_next next_of(const struct rc_conn *c)
{
	if (c->flags & RC_CF_DISCARD)
		return RC_WS_ASM_STOP;
	if (c->state == RC_CONN_OPEN)
		return RC_WS_ASM_DATA;
	return c->state == RC_CONN_CLOSING ? RC_WS_ASM_CONTROL : RC_WS_ASM_STOP;
}

/* ---- the frame assembler's hooks (src/ws_assembler.h); ctx is the connection ---------------- */
static enum rc_ws_asm_next on_message(struct rc_ws_asm_message *m, void *ctx)
{
	struct rc_conn *c = ctx;
	if (m->compressed)
		deliver_deflated(c, m->opcode, m->payload, m->len, m->tail_room);
	else
		deliver(c, m->opcode, m->payload, m->len);
	return next_of(c);
}

static enum rc_ws_asm_next on_control(const struct rc_ws_asm_control *f, void *ctx)
{
	struct rc_conn *c = ctx;
	control(c, f);
	return next_of(c);
}

/* The assembler fails with 1011 only when its alloc hook refused: the budget (or memory) is
 * short, which the client hears as 1013, try again later. */
static void on_fail(uint16_t code, const char *reason, void *ctx)
{
	if (code == RC_WS_CLOSE_INTERNAL)
		fail(ctx, RC_WS_CLOSE_TRY_AGAIN, "memory budget");
	else
		fail(ctx, code, reason);
}

/* The assembler's buffers are what a client makes us hold: charged to the budget, and a
 * growth the budget cannot take fails the connection like an allocation failure. */
static void *asm_alloc(void *old, size_t old_size, size_t new_size, void *ctx)
{
	struct rc_conn *c = ctx;
	struct rc_app *app = c->shard->app;

	RC_ASSERT(new_size > old_size);
	if (!rc_mem_try_charge(app, RC_BUDGET_frame_assembly, new_size - old_size))
		return NULL;
	void *p = realloc(old, new_size);
	if (!p)
		rc_mem_release(app, RC_BUDGET_frame_assembly, new_size - old_size);
	return p;
}

static void asm_release(void *p, size_t size, void *ctx)
{
	struct rc_conn *c = ctx;

	rc_mem_release(c->shard->app, RC_BUDGET_frame_assembly, size);
	free(p);
}

static const struct rc_ws_asm_ops asm_ops = {
	.alloc = asm_alloc,
	.release = asm_release,
	.on_message = on_message,
	.on_control = on_control,
	.on_fail = on_fail,
};

void rc_conn_ws_reset(struct rc_conn *c)
{
	struct rc_ws_asm_env env = {NULL, &asm_ops, c};
	rc_ws_asm_reset(&c->ws, &env);
}

void rc_conn_ws_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	struct rc_shard *s = c->shard;
	struct rc_ws_limits lim = *limits_of(c);
	struct rc_ws_asm_env env = {&lim, &asm_ops, c};
	/* In the receive buffer, the room after the bytes may lend inflation its tail room. */
	size_t cap = s->rx_end ? (size_t)(s->rx_end - p) : n;

	RC_ASSERT(cap >= n);
	lim.rsv1_allowed = c->flags & RC_CF_DEFLATE;
	s->stats.frames_in += rc_ws_asm_feed(&c->ws, p, n, cap, next_of(c), &env);
	bool incomplete = rc_ws_asm_incomplete(&c->ws);
	/* The common receive ends on a message boundary with no deadline running: nothing to
	 * start or stop. */
	if (incomplete || c->msg_deadline_tick)
		rc_conn_message_watch(c, incomplete);
}
