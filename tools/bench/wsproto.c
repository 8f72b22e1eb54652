/*
 * The client side of RFC 6455 for ringcast-bench: the upgrade request and the check of the
 * 101 (Sec-WebSocket-Accept from src/handshake), server frames parsed with src/ws_frame (no
 * mask required), masked client frames, control frames (ping -> pong, close), and the echo
 * payloads: deterministic bytes derived from (connection, sequence), so an echo is verified
 * piece by piece as it arrives, without keeping a copy of what was sent. Raw (--raw) streams
 * are cut into S-byte units and verified the same way.
 *
 * Buffers: tx_pend grows by realloc (never while the kernel holds it: that is tx_out);
 * asm_buf exists only while a handshake answer, a split message (broadcast) or a control
 * payload is being assembled. The owning worker thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"
#include "base/rc_assert.h"
#include "handshake.h"
#include "ws_frame.h"

#define HANDSHAKE_ANSWER_LIMIT 8192
#define PAYLOAD_HEAD 24 /* 16 hex digits of the sequence, 8 of the connection id */

static const char hex[] = "0123456789abcdef";

uint64_t rcb_rng_next(struct rcb_thread *t)
{
	/* xorshift64*: masks only need to vary, not to be secret. */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 0x2545F4914F6CDD1Dull;
}

static void free_tx(struct rcb_conn *c)
{
	RC_ASSERT(!(c->flags & RCB_CF_SENDING));
	free(c->tx_out);
	c->tx_out = NULL;
	c->tx_out_len = c->tx_out_cap = 0;
	free(c->tx_pend);
	c->tx_pend = NULL;
	c->tx_pend_len = c->tx_pend_cap = 0;
}

void rcb_conn_free_buffers(struct rcb_conn *c)
{
	free_tx(c);
	free(c->asm_buf);
	c->asm_buf = NULL;
	c->asm_len = c->asm_cap = 0;
}

void rcb_conn_trim_buffers(struct rcb_conn *c)
{
	RC_ASSERT(c->tx_pend_len == 0);
	/* A message, control payload or handshake answer may be half assembled: the bytes
	 * still to come continue it, so its first part must stay (issue 14). */
	if (c->asm_len)
		free_tx(c);
	else
		rcb_conn_free_buffers(c);
}

bool rcb_buf_grow(uint8_t **buf, uint32_t *cap, size_t need, size_t limit)
{
	size_t n = *cap ? *cap : 256;
	uint8_t *p;

	if (need <= *cap)
		return true;
	if (need > limit)
		return false;
	while (n < need)
		n *= 2;
	if (n > limit)
		n = limit;
	p = realloc(*buf, n);
	if (!p)
		return false;
	*buf = p;
	*cap = (uint32_t)n;
	return true;
}

uint8_t *rcb_tx_reserve(struct rcb_thread *t, struct rcb_conn *c, size_t n)
{
	uint8_t *p;

	if (!rcb_buf_grow(&c->tx_pend, &c->tx_pend_cap, (size_t)c->tx_pend_len + n, RCB_TX_LIMIT))
		return NULL;
	p = c->tx_pend + c->tx_pend_len;
	c->tx_pend_len += (uint32_t)n;
	rcb_conn_mark_dirty(t, c);
	return p;
}

/* Writes c's upgrade request into buf[0..cap); returns its length. */
static uint32_t request(const struct rcb_thread *t, const struct rcb_conn *c, uint8_t *buf,
			size_t cap)
{
	const struct rcb_config *cfg = t->run->cfg;
	int n = snprintf((char *)buf, cap,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n\r\n",
			 cfg->path, cfg->host, t->run->keys[c->id % RCB_KEYS]);
	RC_ASSERT(n > 0 && (size_t)n < cap);
	return (uint32_t)n;
}

#define REQUEST_BYTES(cfg) (512 + strlen((cfg)->path))

void rcb_ws_build_request(struct rcb_thread *t, struct rcb_conn *c)
{
	RC_ASSERT(!(c->flags & RCB_CF_SENDING));
	RC_ASSERT(c->tx_pend_len == 0);
	if (!rcb_buf_grow(&c->tx_out, &c->tx_out_cap, REQUEST_BYTES(t->run->cfg), RCB_TX_LIMIT))
		RC_ASSERT(!"out of memory for an upgrade request");
	c->tx_out_len = request(t, c, c->tx_out, c->tx_out_cap);
}

void rcb_ws_queue_request(struct rcb_thread *t, struct rcb_conn *c)
{
	uint8_t buf[1024];
	RC_ASSERT(REQUEST_BYTES(t->run->cfg) <= sizeof(buf));
	uint32_t n = request(t, c, buf, sizeof(buf));
	uint8_t *p = rcb_tx_reserve(t, c, n);
	RC_ASSERT(p != NULL);
	memcpy(p, buf, n);
}

static size_t client_header_len(size_t len)
{
	return len < 126 ? 6 : len < 65536 ? 8 : 14;
}

/* Reserves a masked frame of len payload bytes; returns the payload's place, NULL if full. */
static uint8_t *frame_reserve(struct rcb_thread *t, struct rcb_conn *c, uint8_t opcode, size_t len,
			      uint8_t mask[4])
{
	size_t hl = client_header_len(len);
	uint8_t *p = rcb_tx_reserve(t, c, hl + len);
	uint64_t r = rcb_rng_next(t);

	if (!p)
		return NULL;
	memcpy(mask, &r, 4);
	RC_ASSERT(rc_ws_frame_write_client_header(p, opcode, true, false, len, mask) == hl);
	return p + hl;
}

void rcb_ws_queue_frame(struct rcb_thread *t, struct rcb_conn *c, uint8_t opcode,
			const uint8_t *payload, size_t len)
{
	uint8_t mask[4];
	uint8_t *p = frame_reserve(t, c, opcode, len, mask);

	if (!p) {
		t->stats.counters[RCB_C_SKIPPED_SENDS]++;
		return;
	}
	if (len) /* an empty payload may be NULL (a ping without data, nothing assembled) */
		memcpy(p, payload, len);
	rc_ws_mask(p, len, mask, 0);
}

void rcb_payload_fill(uint8_t *p, size_t size, uint32_t id, uint64_t seq)
{
	size_t head = size < PAYLOAD_HEAD ? size : PAYLOAD_HEAD;

	for (size_t j = 0; j < head; j++)
		p[j] = (uint8_t)(j < 16 ? hex[(seq >> (4 * j)) & 15]
					: hex[(id >> (4 * (j - 16))) & 15]);
	if (size > PAYLOAD_HEAD)
		memset(p + PAYLOAD_HEAD, 'a' + (int)(seq % 26), size - PAYLOAD_HEAD);
}

bool rcb_payload_check(const uint8_t *p, size_t n, size_t off, uint32_t id, uint64_t seq)
{
	uint8_t fill = (uint8_t)('a' + seq % 26), diff = 0;
	size_t j = 0;

	for (; j < n && off + j < PAYLOAD_HEAD; j++) {
		size_t k = off + j;
		uint8_t want = (uint8_t)(k < 16 ? hex[(seq >> (4 * k)) & 15]
						: hex[(id >> (4 * (k - 16))) & 15]);

		diff |= (uint8_t)(p[j] ^ want);
	}
	for (; j < n; j++)
		diff |= (uint8_t)(p[j] ^ fill);
	return diff == 0;
}

void rcb_ws_queue_echo(struct rcb_thread *t, struct rcb_conn *c)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t seq = c->tx_seq;
	uint8_t mask[4];
	uint8_t *p;

	if (cfg->raw)
		p = rcb_tx_reserve(t, c, cfg->size);
	else
		p = frame_reserve(t, c, cfg->text ? RC_WS_OP_TEXT : RC_WS_OP_BINARY, cfg->size,
				  mask);
	if (!p) {
		t->stats.counters[RCB_C_SKIPPED_SENDS]++;
		return;
	}
	rcb_payload_fill(p, cfg->size, c->id, seq);
	if (!cfg->raw)
		rc_ws_mask(p, cfg->size, mask, 0);
	t->sent_ns[(size_t)(c - t->conns) * cfg->inflight + seq % cfg->inflight] = t->now_ns;
	c->tx_seq++;
	t->outstanding_local++;
	t->stats.counters[RCB_C_MSGS_SENT]++;
}

void rcb_ws_close(struct rcb_thread *t, struct rcb_conn *c, uint16_t code)
{
	uint8_t payload[RC_WS_CONTROL_PAYLOAD_LIMIT];
	size_t n;

	c->flags |= RCB_CF_WE_CLOSE;
	if (c->state != RCB_CS_OPEN || t->run->cfg->raw || c->role == RCB_ROLE_PUBLISHER) {
		rcb_conn_shutdown(t, c);
		return;
	}
	n = rc_ws_close_write(payload, code, "bench done");
	rcb_ws_queue_frame(t, c, RC_WS_OP_CLOSE, payload, n);
	c->t0_ns = t->now_ns;
	rcb_conn_set_state(t, c, RCB_CS_CLOSING);
}

size_t rcb_http_head_end(const uint8_t *p, size_t n)
{
	for (size_t i = 3; i < n; i++)
		if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
			return i + 1;
	return 0;
}

/* True if the answer is a 101 whose Sec-WebSocket-Accept matches the key we sent. */
static bool answer_valid(const struct rcb_thread *t, const struct rcb_conn *c, const char *h,
			 size_t n)
{
	const char *want = t->run->accepts[c->id % RCB_KEYS];
	static const char name[] = "\r\nsec-websocket-accept:";
	size_t wl = strlen(want);

	if (n < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0)
		return false;
	for (size_t i = 0; i + sizeof(name) - 1 < n; i++) {
		const char *v;

		if (strncasecmp(h + i, name, sizeof(name) - 1) != 0)
			continue;
		v = h + i + sizeof(name) - 1;
		while (v < h + n && (*v == ' ' || *v == '\t'))
			v++;
		return (size_t)(h + n - v) >= wl && memcmp(v, want, wl) == 0 &&
		       (v[wl] == '\r' || v[wl] == ' ');
	}
	return false;
}

/* Collects the 101; returns bytes of p consumed (the rest are frames), or -1 on failure. */
static long handshake_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	size_t old = c->asm_len, end;

	if (!rcb_buf_grow(&c->asm_buf, &c->asm_cap, old + n, HANDSHAKE_ANSWER_LIMIT)) {
		rcb_conn_lose(t, c, EPROTO);
		return -1;
	}
	memcpy(c->asm_buf + old, p, n);
	c->asm_len += (uint32_t)n;
	end = rcb_http_head_end(c->asm_buf, c->asm_len);
	if (!end)
		return (long)n;
	if (!answer_valid(t, c, (const char *)c->asm_buf, end)) {
		rcb_conn_lose(t, c, EPROTO);
		return -1;
	}
	free(c->asm_buf);
	c->asm_buf = NULL;
	c->asm_len = c->asm_cap = 0;
	rcb_hist_record(&t->stats.handshake, t->now_ns - c->t0_ns);
	rcb_conn_set_state(t, c, RCB_CS_OPEN);
	rcb_traffic_on_open(t, c);
	return (long)(end - old);
}

static void protocol_error(struct rcb_thread *t, struct rcb_conn *c)
{
	t->stats.counters[RCB_C_PROTOCOL_ERRORS]++;
	rcb_conn_lose(t, c, EPROTO);
}

/* Appends bytes to the assembly buffer (broadcast messages, control payloads). */
static bool assemble(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	if (!rcb_buf_grow(&c->asm_buf, &c->asm_cap, (size_t)c->asm_len + n, RCB_ASM_LIMIT)) {
		protocol_error(t, c);
		return false;
	}
	memcpy(c->asm_buf + c->asm_len, p, n);
	c->asm_len += (uint32_t)n;
	return true;
}

static void control_done(struct rcb_thread *t, struct rcb_conn *c)
{
	const uint8_t *pl = c->asm_buf ? c->asm_buf + c->ctl_at : NULL;
	uint32_t n = c->asm_len - c->ctl_at;
	uint16_t code = RC_WS_CLOSE_NO_STATUS, ccode;
	struct rc_slice text;
	const char *reason;
	uint8_t reply[2];

	if (c->ctl_op == RC_WS_OP_PING) {
		t->stats.counters[RCB_C_PINGS]++;
		rcb_ws_queue_frame(t, c, RC_WS_OP_PONG, pl, n);
	} else if (c->ctl_op == RC_WS_OP_CLOSE) {
		if (n && rc_ws_close_parse(pl, n, &code, &text, &ccode, &reason) != RC_PARSE_DONE)
			t->stats.counters[RCB_C_PROTOCOL_ERRORS]++;
		if (c->state == RCB_CS_CLOSING) {
			rcb_conn_shutdown(t, c);
		} else {
			/* The server closed first (slow consumer, drain, ...): a loss counted
			 * under its code, answered with the same code, then the descriptor is
			 * closed once the answer is out (RCB_CF_PEER_CLOSED). */
			c->flags |= RCB_CF_SERVER_CLOSE;
			t->stats.counters[RCB_C_CLOSED_BY_SERVER]++;
			rcb_stats_close_code(&t->stats, code);
			rcb_conn_note_loss(t, c, ECONNRESET);
			reply[0] = (uint8_t)(code >> 8);
			reply[1] = (uint8_t)code;
			rcb_ws_queue_frame(t, c, RC_WS_OP_CLOSE, reply,
					   code == RC_WS_CLOSE_NO_STATUS ? 0 : 2);
			c->flags |= RCB_CF_PEER_CLOSED;
			c->t0_ns = t->now_ns;
			rcb_conn_set_state(t, c, RCB_CS_CLOSING);
		}
	}
	c->ctl_op = 0;
	c->asm_len = c->ctl_at;
}

/* The end of a data message: echo accounting, or a whole message for broadcast. */
static void message_done(struct rcb_thread *t, struct rcb_conn *c)
{
	if (t->run->whole_messages) {
		rcb_pubsub_on_message(t, c, c->asm_buf, c->asm_len);
		c->asm_len = 0;
	} else {
		bool ok = !(c->flags & RCB_CF_BAD) && c->rx_off == t->run->cfg->size;

		rcb_traffic_on_echo(t, c, ok);
	}
	c->flags &= (uint16_t)~RCB_CF_BAD;
	c->rx_off = 0;
	c->msg_op = 0;
}

/* Echo payload bytes are checked as they come; nothing is kept. */
static void echo_bytes(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	if (c->tx_seq == c->rx_seq || (size_t)c->rx_off + n > t->run->cfg->size ||
	    !rcb_payload_check(p, n, c->rx_off, c->id, c->rx_seq))
		c->flags |= RCB_CF_BAD;
	c->rx_off += (uint32_t)n;
}

static void payload_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	if (c->ctl_op || t->run->whole_messages)
		assemble(t, c, p, n);
	else
		echo_bytes(t, c, p, n);
}

static void frame_end(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->ctl_op)
		control_done(t, c);
	else if (c->flags & RCB_CF_FIN)
		message_done(t, c);
}

/* Starts a frame: sequencing checks, then where its payload goes. False: protocol error. */
static bool frame_begin(struct rcb_conn *c, const struct rc_ws_frame *f)
{
	if (f->masked)
		return false; /* servers never mask (RFC 6455 5.1) */
	if (f->opcode >= RC_WS_OP_CLOSE) {
		c->ctl_op = f->opcode;
		c->ctl_at = c->asm_len;
	} else if (f->opcode == RC_WS_OP_CONT) {
		if (!c->msg_op)
			return false;
	} else {
		if (c->msg_op)
			return false;
		c->msg_op = f->opcode;
		c->rx_off = 0;
	}
	if (f->fin)
		c->flags |= RCB_CF_FIN;
	else
		c->flags &= (uint16_t)~RCB_CF_FIN;
	c->frame_left = f->payload_len;
	return true;
}

/* Parses a frame header from the held bytes plus p. Returns bytes of p used (all of them,
 * held in c->hdr, while the header is incomplete), or -1 on a malformed header. */
static long header_rx(struct rcb_conn *c, const uint8_t *p, size_t n, struct rc_ws_frame *f)
{
	static const struct rc_ws_limits lim = {.frame_bytes_max = UINT64_MAX >> 1,
						.message_bytes_max = UINT64_MAX >> 1};
	size_t held = c->hdr_len, take = RC_MIN(n, (size_t)RCB_HDR_LIMIT - held);
	const uint8_t *h = p;
	size_t hn = n;
	uint16_t code;
	const char *reason;
	enum rc_parse r;

	if (held) {
		memcpy(c->hdr + held, p, take);
		h = c->hdr;
		hn = held + take;
	}
	r = rc_ws_frame_parse(h, hn, &lim, f, &code, &reason);
	if (r == RC_PARSE_FAIL)
		return -1;
	if (r == RC_PARSE_PARTIAL) {
		/* Partial means fewer bytes than a header, so all of p fit in hdr. */
		RC_ASSERT(hn < RCB_HDR_LIMIT);
		if (!held)
			memcpy(c->hdr, p, n);
		c->hdr_len = (uint8_t)hn;
		return (long)n;
	}
	RC_ASSERT(f->header_len > held);
	c->hdr_len = 0;
	return (long)(f->header_len - held);
}

static void frames_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	/* Bounded by n: every iteration consumes at least one byte or returns. */
	while (n > 0 && (c->state == RCB_CS_OPEN || c->state == RCB_CS_CLOSING)) {
		struct rc_ws_frame f;
		size_t take;

		if (c->frame_left == 0) {
			long used = header_rx(c, p, n, &f);

			if (used < 0) {
				protocol_error(t, c);
				return;
			}
			p += used;
			n -= (size_t)used;
			if (c->hdr_len)
				return;
			if (!frame_begin(c, &f)) {
				protocol_error(t, c);
				return;
			}
			/* A whole single-frame message inside this buffer needs no copy. */
			if (t->run->whole_messages && !c->ctl_op && f.fin && c->asm_len == 0 &&
			    f.payload_len <= n) {
				rcb_pubsub_on_message(t, c, p, (size_t)f.payload_len);
				p += f.payload_len;
				n -= (size_t)f.payload_len;
				c->frame_left = 0;
				c->msg_op = 0;
				continue;
			}
			if (c->frame_left == 0) {
				frame_end(t, c);
				continue;
			}
		}
		take = (size_t)RC_MIN((uint64_t)n, c->frame_left);
		payload_rx(t, c, p, take);
		p += take;
		n -= take;
		c->frame_left -= take;
		if (c->frame_left == 0)
			frame_end(t, c);
	}
}

/* --raw: the stream is cut into S-byte units, each checked as it arrives. */
static void raw_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	uint32_t size = t->run->cfg->size;

	while (n > 0 && c->state == RCB_CS_OPEN) {
		size_t take = RC_MIN(n, (size_t)(size - c->rx_off));

		echo_bytes(t, c, p, take);
		p += take;
		n -= take;
		if (c->rx_off == size)
			message_done(t, c);
	}
}

void rcb_ws_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	const struct rcb_config *cfg = t->run->cfg;

	if (cfg->raw) {
		raw_rx(t, c, p, n);
		return;
	}
	if (c->role == RCB_ROLE_PUBLISHER && cfg->pub_via == RCB_PUB_HTTP) {
		rcb_pubsub_http_rx(t, c, p, n);
		return;
	}
	if (c->state == RCB_CS_HANDSHAKE) {
		long used = handshake_rx(t, c, p, n);

		if (used < 0)
			return;
		p += used;
		n -= (size_t)used;
	}
	frames_rx(t, c, p, n);
}
