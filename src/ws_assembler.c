/*
 * The WebSocket frame assembler, sans I/O. Owns one connection's partial frame, the fragments
 * of its unfinished message and its sequencing state (struct rc_ws_asm), and the order of the
 * work on received bytes: header checks, unmasking, fail-fast UTF-8, limits, reassembly,
 * close-payload checks. Does not own the received bytes (borrowed per call), the memory it
 * allocates (every allocation goes through the caller's hooks, in buf_reserve and buf_release
 * only) or any decision to send: events go to the caller. Pure; the caller's thread.
 */
#include "ws_assembler.h"

#include <errno.h>
#include <string.h>

#include "base/rc_assert.h"
#include "pmd.h"

/* Unit of the assembler's allocations: a byte buffer with RC_PMD_TAIL_ROOM spare after len. */
struct rc_ws_asm_buf {
	size_t len;	     /* bytes held */
	size_t cap;	     /* bytes of data[]; len + RC_PMD_TAIL_ROOM <= cap */
	size_t done;	     /* pend: payload bytes already unmasked and validated */
	bool header_checked; /* pend: the header passed rc_ws_rx_frame() */
	uint8_t data[];
};

RC_STATIC_ASSERT(sizeof(struct rc_ws_asm) == 32, "rc_ws_asm is documented as 32 bytes");

/* One rc_ws_asm_feed call. */
struct run {
	struct rc_ws_asm *a;
	const struct rc_ws_asm_env *env;
	const uint8_t *end;	  /* end of the caller's buffer (cap): tail room for in place */
	enum rc_ws_asm_next mode; /* what the caller wants now; STOP ends the call */
	uint32_t frames;	  /* frames completed */
};

/* The most a pending frame may hold: its header and frame_bytes_max (saturating). */
static size_t pend_max(const struct run *r)
{
	uint64_t max = r->env->lim->frame_bytes_max;

	return (size_t)RC_MIN(max, (uint64_t)SIZE_MAX - RC_WS_HEADER_LIMIT) + RC_WS_HEADER_LIMIT;
}

static size_t buf_size(size_t cap)
{
	return sizeof(struct rc_ws_asm_buf) + cap;
}

/*
 * Grows *bp to hold need bytes plus the tail room, geometrically but never past max. The one
 * place the assembler allocates. 0, -EMSGSIZE (need > max) or -ENOMEM (*bp unchanged).
 */
static int buf_reserve(const struct rc_ws_asm_env *env, struct rc_ws_asm_buf **bp, size_t need,
		       size_t max)
{
	struct rc_ws_asm_buf *b = *bp, *nb;
	size_t cap = b ? b->cap : 0, ncap;

	if (b && need + RC_PMD_TAIL_ROOM <= cap)
		return 0;
	if (need > max)
		return -EMSGSIZE;
	ncap = RC_MAX(need, RC_MIN(RC_MAX(cap * 2, (size_t)256), max)) + RC_PMD_TAIL_ROOM;
	nb = env->ops->alloc(b, b ? buf_size(cap) : 0, buf_size(ncap), env->ctx);
	if (!nb)
		return -ENOMEM;
	if (!b) {
		nb->len = 0;
		nb->done = 0;
		nb->header_checked = false;
	}
	nb->cap = ncap;
	*bp = nb;
	RC_DASSERT(nb->len + RC_PMD_TAIL_ROOM <= nb->cap);
	return 0;
}

/* Frees *bp, if any, through the release hook. */
static void buf_release(const struct rc_ws_asm_env *env, struct rc_ws_asm_buf **bp)
{
	struct rc_ws_asm_buf *b = *bp;

	if (!b)
		return;
	RC_DASSERT(b->len + RC_PMD_TAIL_ROOM <= b->cap);
	*bp = NULL;
	env->ops->release(b, buf_size(b->cap), env->ctx);
}

static int buf_append(const struct rc_ws_asm_env *env, struct rc_ws_asm_buf **bp, const uint8_t *p,
		      size_t n, size_t max)
{
	size_t len = *bp ? (*bp)->len : 0;
	int rc = buf_reserve(env, bp, len + n, max);

	if (rc)
		return rc;
	memcpy((*bp)->data + len, p, n);
	(*bp)->len = len + n;
	return 0;
}

void rc_ws_asm_init(struct rc_ws_asm *a)
{
	RC_ASSERT(a != NULL);
	memset(a, 0, sizeof(*a));
}

void rc_ws_asm_reset(struct rc_ws_asm *a, const struct rc_ws_asm_env *env)
{
	RC_ASSERT(a != NULL && env != NULL);
	buf_release(env, &a->pend);
	buf_release(env, &a->msg);
	rc_ws_asm_init(a);
	RC_DASSERT(rc_ws_asm_bytes(a) == 0);
}

size_t rc_ws_asm_bytes(const struct rc_ws_asm *a)
{
	size_t n = 0;

	RC_ASSERT(a != NULL);
	if (a->pend)
		n += buf_size(a->pend->cap);
	if (a->msg)
		n += buf_size(a->msg->cap);
	return n;
}

/* The peer failed (or memory ran out): drop everything, stop, and tell the caller. */
static void fail(struct run *r, uint16_t code, const char *reason)
{
	RC_ASSERT(r->mode != RC_WS_ASM_STOP);
	RC_ASSERT(reason != NULL);
	rc_ws_asm_reset(r->a, r->env);
	r->mode = RC_WS_ASM_STOP;
	r->env->ops->on_fail(code, reason, r->env->ctx);
}

static void fail_alloc(struct run *r, int rc)
{
	RC_DASSERT(rc == -ENOMEM || rc == -EMSGSIZE);
	if (rc == -ENOMEM)
		fail(r, RC_WS_CLOSE_INTERNAL, "out of memory");
	else
		fail(r, RC_WS_CLOSE_TOO_BIG, "message too big");
}

static void deliver(struct run *r, uint8_t *payload, size_t len, bool tail_room)
{
	struct rc_ws_rx *rx = &r->a->rx;
	struct rc_ws_asm_message m = {payload, len, rx->message_opcode, rx->message_rsv1,
				      tail_room};
	uint16_t code;
	const char *reason;

	RC_ASSERT(m.opcode == RC_WS_OP_TEXT || m.opcode == RC_WS_OP_BINARY);
	if (rc_ws_rx_end_frame(rx, true, &code, &reason) == RC_PARSE_FAIL) {
		fail(r, code, reason);
		return;
	}
	RC_DASSERT(rx->message_opcode == 0);
	r->mode = r->env->ops->on_message(&m, r->env->ctx);
}

/* A whole control frame, unmasked. A close's payload must hold a valid code and UTF-8. */
static void control(struct run *r, const struct rc_ws_frame *f, const uint8_t *payload)
{
	struct rc_ws_asm_control ctl = {payload, (size_t)f->payload_len, f->opcode, 0};
	struct rc_slice text;
	uint16_t code;
	const char *reason;

	RC_ASSERT(f->opcode >= RC_WS_OP_CLOSE);
	RC_ASSERT(f->payload_len <= RC_WS_CONTROL_PAYLOAD_LIMIT);
	if (f->opcode == RC_WS_OP_CLOSE &&
	    rc_ws_close_parse(payload, ctl.len, &ctl.close_code, &text, &code, &reason) ==
		    RC_PARSE_FAIL) {
		fail(r, code, reason);
		return;
	}
	r->mode = r->env->ops->on_control(&ctl, r->env->ctx);
}

/*
 * A whole data frame, unmasked and (when validated) checked. The last frame of an unfragmented
 * message is delivered where it lies; others are appended to a->msg, which is handed over
 * (detached, so a callback resetting a cannot free it) when the message ends.
 */
static void data_frame(struct run *r, const struct rc_ws_frame *f, uint8_t *payload, bool tail_room)
{
	struct rc_ws_asm *a = r->a;
	size_t len = (size_t)f->payload_len;
	uint16_t code;
	const char *reason;
	int rc;

	if (f->fin && !a->msg) {
		deliver(r, payload, len, tail_room);
		return;
	}
	rc = buf_append(r->env, &a->msg, payload, len, (size_t)r->env->lim->message_bytes_max);
	if (rc) {
		fail_alloc(r, rc);
		return;
	}
	if (!f->fin) {
		if (rc_ws_rx_end_frame(&a->rx, false, &code, &reason) == RC_PARSE_FAIL)
			fail(r, code, reason);
		return;
	}
	struct rc_ws_asm_buf *m = a->msg;
	a->msg = NULL;
	deliver(r, m->data, m->len, true);
	buf_release(r->env, &m);
}

/*
 * A whole frame is in memory. If prepared, its payload was unmasked and validated as it
 * arrived (pend_progress) and sits in a buffer of ours; otherwise it is still masked and sits
 * in the caller's buffer.
 */
static void frame_done(struct run *r, const struct rc_ws_frame *f, uint8_t *payload, bool prepared,
		       bool tail_room)
{
	struct rc_ws_asm *a = r->a;
	size_t len = (size_t)f->payload_len;
	uint16_t code;
	const char *reason;

	if (!prepared)
		rc_ws_mask(payload, len, f->mask, 0);
	r->frames++;
	if (f->opcode >= RC_WS_OP_CLOSE) {
		control(r, f, payload);
		return;
	}
	if (r->mode != RC_WS_ASM_DATA) {
		/* Data after a close is dropped, but its framing is still followed so that the
		 * peer's close reply can be found. */
		if (f->fin) {
			buf_release(r->env, &a->msg);
			memset(&a->rx, 0, sizeof(a->rx));
		}
		return;
	}
	if (!prepared && rc_ws_rx_payload(&a->rx, payload, len, &code, &reason) == RC_PARSE_FAIL) {
		fail(r, code, reason);
		return;
	}
	data_frame(r, f, payload, tail_room);
}

/* Parses a header at p; on DONE with check, also sequences it against the message. */
static enum rc_parse header(struct run *r, const uint8_t *p, size_t n, struct rc_ws_frame *f,
			    bool check)
{
	uint16_t code = 0;
	const char *reason = NULL;
	enum rc_parse res = rc_ws_frame_parse(p, n, r->env->lim, f, &code, &reason);

	if (res == RC_PARSE_DONE && check && f->opcode < RC_WS_OP_CLOSE)
		res = rc_ws_rx_frame(&r->a->rx, f, r->env->lim, &code, &reason);
	if (res == RC_PARSE_FAIL)
		fail(r, code, reason);
	return res;
}

/*
 * Unmasks and validates the payload bytes of the pending frame that arrived since the last
 * call, so invalid UTF-8 fails at once rather than when the frame completes (fail fast,
 * RFC 6455 §8.1). Returns false if it failed.
 */
static bool pend_progress(struct run *r, struct rc_ws_asm_buf *b, const struct rc_ws_frame *f)
{
	uint16_t code;
	const char *reason;
	size_t have = b->len - f->header_len;

	RC_ASSERT(b->len >= f->header_len);
	RC_ASSERT(b->header_checked);
	if (have <= b->done)
		return true;
	uint8_t *p = b->data + f->header_len + b->done;
	rc_ws_mask(p, have - b->done, f->mask, b->done);
	if (f->opcode < RC_WS_OP_CLOSE && r->mode == RC_WS_ASM_DATA &&
	    rc_ws_rx_payload(&r->a->rx, p, have - b->done, &code, &reason) == RC_PARSE_FAIL) {
		fail(r, code, reason);
		return false;
	}
	b->done = have;
	return true;
}

/*
 * Completes the header of the pending frame with bytes of p (at most the 14-byte header
 * limit) and checks it. Returns the bytes of p it took, with any bytes that belong to the
 * next frame given back; *res says whether the header is DONE, still PARTIAL or FAILed.
 */
static size_t pend_header(struct run *r, const uint8_t *p, size_t n, struct rc_ws_frame *f,
			  enum rc_parse *res)
{
	size_t max = pend_max(r);
	struct rc_ws_asm_buf *b = r->a->pend;
	size_t want;
	int rc;

	/* An unchecked pending header is shorter than the header it announces. */
	RC_ASSERT(b->len < RC_WS_HEADER_LIMIT);
	want = RC_MIN(n, RC_WS_HEADER_LIMIT - b->len);
	rc = buf_append(r->env, &r->a->pend, p, want, max);
	if (rc) {
		fail_alloc(r, rc);
		*res = RC_PARSE_FAIL;
		return n;
	}
	b = r->a->pend;
	*res = header(r, b->data, b->len, f, true);
	if (*res != RC_PARSE_DONE)
		return *res == RC_PARSE_FAIL ? n : want;
	b->header_checked = true;
	b->done = 0;
	uint64_t total = f->header_len + f->payload_len;
	if (b->len <= total)
		return want;
	want -= b->len - (size_t)total;
	b->len = (size_t)total;
	return want;
}

/* Continues the frame in a->pend with p; returns the bytes of p it took. */
static size_t pend_feed(struct run *r, uint8_t *p, size_t n)
{
	struct rc_ws_asm *a = r->a;
	size_t max = pend_max(r), took = 0;
	struct rc_ws_frame f;
	enum rc_parse res;
	int rc;

	if (!a->pend->header_checked) {
		took = pend_header(r, p, n, &f, &res);
		if (res != RC_PARSE_DONE)
			return took;
	} else {
		res = header(r, a->pend->data, a->pend->len, &f, false);
		RC_ASSERT(res == RC_PARSE_DONE);
	}
	uint64_t total = f.header_len + f.payload_len;
	size_t take = (size_t)RC_MIN((uint64_t)(n - took), total - a->pend->len);
	rc = take ? buf_append(r->env, &a->pend, p + took, take, max) : 0;
	if (rc) {
		fail_alloc(r, rc);
		return n;
	}
	took += take;
	if (!pend_progress(r, a->pend, &f))
		return n;
	if (a->pend->len == total) {
		struct rc_ws_asm_buf *b = a->pend;
		a->pend = NULL;
		frame_done(r, &f, b->data + f.header_len, true, true);
		buf_release(r->env, &b);
	}
	return took;
}

/* Handles the frame starting at p; returns the bytes it took (all of them if incomplete). */
static size_t frame_at(struct run *r, uint8_t *p, size_t n)
{
	size_t max = pend_max(r);
	struct rc_ws_frame f;
	enum rc_parse res = header(r, p, n, &f, true);
	int rc;

	if (res == RC_PARSE_FAIL)
		return n;
	uint64_t total = res == RC_PARSE_DONE ? f.header_len + f.payload_len : 0;
	if (res == RC_PARSE_DONE && total <= n) {
		/* The bytes after the payload (the next frame's, or the buffer's spare room) may
		 * serve as tail room: the borrower restores them. */
		bool room = (size_t)(r->end - (p + total)) >= RC_PMD_TAIL_ROOM;
		frame_done(r, &f, p + f.header_len, false, room);
		return (size_t)total;
	}
	/* Incomplete: keep what arrived; the buffer grows as the rest does, not up front. */
	rc = buf_append(r->env, &r->a->pend, p, n, max);
	if (rc) {
		fail_alloc(r, rc);
		return n;
	}
	if (res == RC_PARSE_DONE) {
		r->a->pend->header_checked = true;
		(void)pend_progress(r, r->a->pend, &f);
	}
	return n;
}

uint32_t rc_ws_asm_feed(struct rc_ws_asm *a, uint8_t *p, size_t n, size_t cap,
			enum rc_ws_asm_next mode, const struct rc_ws_asm_env *env)
{
	struct run r = {a, env, p ? p + cap : NULL, mode, 0};

	RC_ASSERT(a != NULL && env != NULL && env->lim != NULL && env->ops != NULL);
	RC_ASSERT(p != NULL || n == 0);
	RC_ASSERT(cap >= n);
	/* Each step consumes at least one byte or stops, so the loop is bounded by n. */
	while (n > 0 && r.mode != RC_WS_ASM_STOP) {
		size_t used = a->pend ? pend_feed(&r, p, n) : frame_at(&r, p, n);

		RC_ASSERT(used > 0 && used <= n);
		p += used;
		n -= used;
	}
	return r.frames;
}
