/*
 * The connection table and the lifecycle of its records: multishot accept into the
 * fixed-file table (slot = descriptor index), multishot recv from the provided-buffer ring,
 * and teardown. A record returns to the table only after every operation it started has
 * completed and its descriptor's close has completed, so a late completion can never reach
 * a reused slot (the generation check catches the rest). What bytes mean, what is sent and
 * when a connection should end are the layers above's (session.c, sendq.c, http_serve.c):
 * this file reaches them only through app->conn_hooks. Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bufring.h"
#include "conn_rt.h"
#include "log.h"

static uint32_t slot_of(const struct rc_conn *c)
{
	return (uint32_t)(c - c->shard->conns);
}

struct rc_conn *rc_conn_lookup(struct rc_shard *s, uint64_t ud)
{
	uint32_t slot = rc_ud_slot(ud);
	if (slot >= s->conns_cap)
		return NULL;
	struct rc_conn *c = &s->conns[slot];
	if (c->state == RC_CONN_FREE || (c->gen & RC_GEN_MASK) != rc_ud_gen(ud)) {
		s->stats.stale_cqes++;
		return NULL;
	}
	return c;
}

static void accept_arm(struct rc_shard *s, int fd, uint32_t which, bool *armed)
{
	/* Once the app stops, its listeners are shut down: a new accept would only fail. */
	if (*armed || s->draining || fd < 0 ||
	    atomic_load_explicit(&s->app->stopping, memory_order_relaxed))
		return;
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_multishot_accept_direct(sqe, fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_ACCEPT, 0, which));
	*armed = true;
}

void rc_conn_accept_arm(struct rc_shard *s)
{
	accept_arm(s, s->listen_fd, RC_ACCEPT_PUBLIC, &s->accept_armed);
	accept_arm(s, s->admin_fd, RC_ACCEPT_ADMIN, &s->admin_accept_armed);
	accept_arm(s, s->tls_fd, RC_ACCEPT_TLS, &s->tls_accept_armed);
}

static void recv_arm(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = slot_of(c);
	RC_ASSERT(!(c->flags & RC_CF_RECV));
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_RECV, c->gen, slot));
	c->flags |= RC_CF_RECV;
	c->inflight++;
}

/* Closes a descriptor the kernel allocated that we cannot take (table bookkeeping lost). */
static void close_orphan(struct rc_shard *s, uint32_t slot)
{
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_NONE, 0, 0));
}

struct rc_conn *rc_conn_accept_complete(struct rc_shard *s, struct io_uring_cqe *cqe)
{
	uint32_t which = rc_ud_slot(io_uring_cqe_get_data64(cqe));
	bool admin = which == RC_ACCEPT_ADMIN;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		*(admin ? &s->admin_accept_armed
			: which == RC_ACCEPT_TLS ? &s->tls_accept_armed : &s->accept_armed) = false;
	if (cqe->res < 0) {
		/* -ENFILE: table full (re-armed when a slot frees). -ECANCELED: drain. */
		if (cqe->res != -ECANCELED)
			s->stats.connections_refused++;
		return NULL;
	}
	uint32_t slot = (uint32_t)cqe->res;
	if (slot >= s->conns_cap || s->conns[slot].state != RC_CONN_FREE || s->draining) {
		RC_ASSERT(slot < s->conns_cap);
		close_orphan(s, slot);
		return NULL;
	}
	struct rc_conn *c = &s->conns[slot];
	uint32_t gen = c->gen;
	/* A slot freed while on the dirty list is still there (a flush stops at
	 * sends_per_turn_max): the new connection keeps the mark, so that entry serves it and
	 * the list holds at most one entry per slot. */
	uint16_t dirty = c->flags & RC_CF_DIRTY;
	RC_ASSERT(c->inflight == 0);
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->flags = dirty;
	c->shard = s;
	c->state = RC_CONN_HTTP;
	c->last_rx_tick = rc_clock_tick(&s->clock);
	if (admin) {
		c->flags |= RC_CF_ADMIN;
		s->conns_admin++;
	}
	if (which == RC_ACCEPT_TLS)
		c->tls = true;
	s->conns_live++;
	s->stats.connections_accepted++;
	s->stats.connections_open++;
	recv_arm(c);
	return c;
}

/* Cancels everything in flight on c's descriptor; the close follows when none remains. */
static void cancel_all(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = slot_of(c);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_cancel_fd(sqe, (int)slot,
				IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_CANCEL, c->gen, slot));
	c->inflight++;
}

static void close_desc(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = slot_of(c);
	RC_ASSERT(c->inflight == 0);
	RC_ASSERT(!(c->flags & RC_CF_DESC_CLOSING));
	/* The send queue let go at the closed hook or at its last send's completion. */
	RC_ASSERT(c->q.count == 0 && c->q.ring == NULL);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_CLOSE, c->gen, slot));
	c->flags |= RC_CF_DESC_CLOSING;
	c->inflight++;
}

static void release_slot(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(c->inflight == 0);
	/* pend and http_pub share storage with c->ws: the assembler holds nothing either. */
	RC_ASSERT(c->q.count == 0 && c->q.ring == NULL && c->pend == NULL && c->http_pub == NULL);
	RC_ASSERT(c->zc_wait == NULL && c->subs == NULL);
	c->state = RC_CONN_FREE;
	c->gen = (c->gen + 1) & RC_GEN_MASK;
	s->conns_live--;
	if (c->flags & RC_CF_REFUSED)
		s->conns_refusing--;
	if (c->flags & RC_CF_ADMIN)
		s->conns_admin--;
	s->stats.connections_open--;
	rc_conn_accept_arm(s);
}

void rc_conn_terminate(struct rc_conn *c, enum rc_close_reason why)
{
	struct rc_shard *s = c->shard;
	if (c->state == RC_CONN_DOOMED || c->state == RC_CONN_FREE)
		return;
	bool http = c->state == RC_CONN_HTTP;
	c->state = RC_CONN_DOOMED;
	s->stats.connections_closed[why]++;
	rc_log(s->app, RC_LOG_DEBUG, "connection %u closed: %s", slot_of(c),
	       rc_close_reason_name(why));
	rc_wheel_disarm(&c->timer);
	s->app->conn_hooks->closed(c, http);
	if (c->flags & RC_CF_APP_OPEN) {
		c->flags &= (uint16_t)~RC_CF_APP_OPEN;
		s->stats.websockets_open--;
		const struct rc_ws_handler *h = &s->app->ws[c->endpoint].h;
		if (h->on_close)
			h->on_close(c, c->close_code ? c->close_code : RC_WS_CLOSE_ABNORMAL,
				    h->ctx);
	}
	if (c->inflight > 0)
		cancel_all(c);
	else
		close_desc(c);
}

/* Bytes arrived for c in buffer bid: the input hook parses them in place. */
static void received(struct rc_conn *c, uint16_t bid, size_t n)
{
	struct rc_shard *s = c->shard;
	c->last_rx_tick = rc_clock_tick(&s->clock);
	c->flags &= (uint16_t)~RC_CF_PING;
	s->rx_end = rc_bufring_addr(s, bid) + s->buf_size;
	if (c->tls)
		s->app->conn_hooks->tls_input(c, rc_bufring_addr(s, bid), n);
	else
		s->app->conn_hooks->input(c, rc_bufring_addr(s, bid), n);
	s->rx_end = NULL;
}

/* A receive's result for live c: res bytes in buffer bid (given back), or the stream's end. */
static void rx_handle(struct rc_conn *c, int32_t res, uint16_t bid)
{
	struct rc_shard *s = c->shard;
	if (res > 0) {
		received(c, bid, (size_t)res);
		rc_bufring_return(s, bid);
		return;
	}
	/* After our close frame, the end of the stream completes the close we started, for
	 * the reason we started it. */
	rc_conn_terminate(c, c->state == RC_CONN_CLOSING ? (enum rc_close_reason)c->close_reason
							 : RC_CLOSE_peer_gone);
}

/* rx_turn[slot]: the receives handled this turn, and two marks. */
#define RX_COUNT 0x3fu	 /* receives handled this turn (receives_per_turn_max <= 63) */
#define RX_WAITING 0x40u /* receives of it still wait (set only inside rc_conn_rx_turn) */
#define RX_PAUSED 0x80u	 /* its receive is cancelled until its waiting receives are handled */

/*
 * Whether slot may handle one more receive this turn, counting it. Each turn handles the
 * receives put off before any new one, up to receives_per_turn_max per connection: a
 * connection with receives still waiting has used its turn's share, so what arrives behind
 * them waits too and a connection's bytes keep their order.
 */
static bool rx_admit(struct rc_shard *s, uint32_t slot)
{
	uint8_t *t = &s->rx_turn[slot];
	if ((*t & RX_COUNT) >= s->app->cfg.receives_per_turn_max)
		return false;
	if ((*t & RX_COUNT) == 0) {
		RC_ASSERT(s->rx_touched_count < s->rx_fifo_cap);
		s->rx_touched[s->rx_touched_count++] = slot;
	}
	(*t)++;
	return true;
}

/*
 * Puts a receive of c off to a later turn, behind any of c's already waiting, and pauses c's
 * receiving: its multishot receive is cancelled, so further bytes wait in the kernel's socket
 * buffer (TCP pushes back on the sender) instead of taking provided buffers.
 */
static void rx_defer(struct rc_conn *c, int32_t res, uint16_t bid)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = slot_of(c);
	/* Each waiting item holds a provided buffer or is a connection's one end. */
	RC_ASSERT(s->rx_fifo_count < s->rx_fifo_cap);
	s->rx_fifo[s->rx_fifo_count++] =
		(struct rc_rx_item){ .slot = slot, .gen = c->gen, .res = res, .bid = bid };
	s->stats.receives_deferred++;
	if (s->rx_turn[slot] & RX_PAUSED)
		return;
	s->rx_turn[slot] |= RX_PAUSED;
	RC_ASSERT(s->rx_paused_count < s->rx_fifo_cap);
	s->rx_paused[s->rx_paused_count++] = slot;
	if (c->flags & RC_CF_RECV) {
		struct io_uring_sqe *sqe = rc_uring_sqe(s);
		io_uring_prep_cancel64(sqe, rc_ud(RC_OP_RECV, c->gen, slot), 0);
		io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_NONE, 0, 0));
	}
}

/* Resumes the paused connections none of whose receives wait any more. */
static void rx_resume(struct rc_shard *s)
{
	uint32_t keep = 0;
	for (uint32_t i = 0; i < s->rx_fifo_count; i++)
		s->rx_turn[s->rx_fifo[i].slot] |= RX_WAITING;
	for (uint32_t i = 0; i < s->rx_paused_count; i++) {
		uint32_t slot = s->rx_paused[i];
		uint8_t *t = &s->rx_turn[slot];
		if (*t & RX_WAITING) {
			s->rx_paused[keep++] = slot;
			continue;
		}
		*t &= (uint8_t)~RX_PAUSED;
		struct rc_conn *c = &s->conns[slot];
		if (c->state != RC_CONN_FREE && c->state != RC_CONN_DOOMED &&
		    !(c->flags & RC_CF_RECV)) {
			s->stats.recv_rearms++;
			recv_arm(c);
		}
	}
	s->rx_paused_count = keep;
	for (uint32_t i = 0; i < s->rx_fifo_count; i++)
		s->rx_turn[s->rx_fifo[i].slot] &= (uint8_t)~RX_WAITING;
}

/* c ended (now or before): close its descriptor once nothing is owed. */
static void rx_settle(struct rc_conn *c)
{
	if (c->state == RC_CONN_DOOMED && c->inflight == 0 && !(c->flags & RC_CF_DESC_CLOSING))
		close_desc(c);
}

void rc_conn_rx_turn(struct rc_shard *s)
{
	for (uint32_t i = 0; i < s->rx_touched_count; i++)
		s->rx_turn[s->rx_touched[i]] &= (uint8_t)~RX_COUNT;
	s->rx_touched_count = 0;
	uint32_t n = s->rx_fifo_count, keep = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct rc_rx_item it = s->rx_fifo[i];
		struct rc_conn *c = &s->conns[it.slot];
		if (c->gen != it.gen || c->state == RC_CONN_FREE || c->state == RC_CONN_DOOMED) {
			if (it.res > 0)
				rc_bufring_return(s, it.bid);
		} else if (!rx_admit(s, it.slot)) {
			s->rx_fifo[keep++] = it;
		} else {
			rx_handle(c, it.res, it.bid);
			rx_settle(c);
		}
	}
	s->rx_fifo_count = keep;
	if (s->rx_paused_count)
		rx_resume(s);
}

void rc_conn_recv_complete(struct rc_conn *c, struct io_uring_cqe *cqe)
{
	struct rc_shard *s = c->shard;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int32_t res = cqe->res;
	uint16_t bid = 0;

	if (!more) {
		c->flags &= (uint16_t)~RC_CF_RECV;
		c->inflight--;
	}
	if (res > 0) {
		RC_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
		bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		s->stats.bytes_in += (uint64_t)res;
	} else if ((res == -ENOBUFS || res == -ECANCELED) && c->state != RC_CONN_DOOMED) {
		/* Buffers ran out this turn (provide more, up to recv_buffers), or rx_defer paused
		 * c: the kernel ended the multishot. Re-armed unless c is (still) paused. */
		if (res == -ENOBUFS)
			rc_bufring_grow(s);
		if (!more && !(c->flags & RC_CF_RECV) && !(s->rx_turn[slot_of(c)] & RX_PAUSED)) {
			s->stats.recv_rearms++;
			recv_arm(c);
		}
		return;
	}
	if (c->state == RC_CONN_DOOMED) {
		if (res > 0)
			rc_bufring_return(s, bid);
		rx_settle(c);
		return;
	}
	if (rx_admit(s, slot_of(c)))
		rx_handle(c, res, bid);
	else
		rx_defer(c, res, bid);
	if (c->state == RC_CONN_DOOMED) {
		rx_settle(c);
		return;
	}
	/* A stream that ended (its end waiting its turn) is not received from again; a paused
	 * connection is re-armed when its waiting receives have been handled. */
	if (!more && !(c->flags & RC_CF_RECV) && res > 0 &&
	    !(s->rx_turn[slot_of(c)] & RX_PAUSED)) {
		s->stats.recv_rearms++;
		recv_arm(c);
	}
}

int rc_conn_rx_setup(struct rc_shard *s)
{
	const struct rc_config *cfg = &s->app->cfg;
	s->rx_fifo_cap = (uint32_t)(cfg->recv_buffers + cfg->cqe_batch_max);
	s->rx_turn = calloc(s->conns_cap, sizeof(*s->rx_turn));
	s->rx_touched = calloc(s->rx_fifo_cap, sizeof(*s->rx_touched));
	s->rx_fifo = calloc(s->rx_fifo_cap, sizeof(*s->rx_fifo));
	s->rx_paused = calloc(s->rx_fifo_cap, sizeof(*s->rx_paused));
	return s->rx_turn && s->rx_touched && s->rx_fifo && s->rx_paused ? 0 : -ENOMEM;
}

void rc_conn_rx_free(struct rc_shard *s)
{
	free(s->rx_turn);
	free(s->rx_touched);
	free(s->rx_fifo);
	free(s->rx_paused);
	s->rx_paused = NULL;
	s->rx_paused_count = 0;
	s->rx_turn = NULL;
	s->rx_touched = NULL;
	s->rx_fifo = NULL;
	s->rx_fifo_count = 0;
}

void rc_conn_shutdown_wr(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = slot_of(c);
	RC_ASSERT(!(c->flags & RC_CF_SHUT_WR));
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_shutdown(sqe, (int)slot, SHUT_WR);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SHUTDOWN, c->gen, slot));
	c->flags |= RC_CF_SHUT_WR;
	c->inflight++;
}

void rc_conn_op_done(struct rc_conn *c)
{
	RC_ASSERT(c->inflight > 0);
	c->inflight--;
	if (c->state == RC_CONN_DOOMED && c->inflight == 0 && !(c->flags & RC_CF_DESC_CLOSING))
		close_desc(c);
}

void rc_conn_op_complete(struct rc_conn *c, enum rc_op op, int res)
{
	(void)res;
	switch (op) {
	case RC_OP_CANCEL:
	case RC_OP_SHUTDOWN: rc_conn_op_done(c); break;
	case RC_OP_CLOSE:
		RC_ASSERT(c->state == RC_CONN_DOOMED);
		RC_ASSERT(c->inflight == 1);
		c->inflight = 0;
		release_slot(c);
		break;
	default: RC_ASSERT(!"unexpected op for a connection");
	}
}

/* ---- invariants ------------------------------------------------------------------------- */
/* What a record in its state holds, and which flags it may carry. */
static bool record_ok(const struct rc_shard *s, const struct rc_conn *c)
{
	uint32_t owed = !!(c->flags & RC_CF_RECV) + !!(c->flags & RC_CF_SEND) +
			!!(c->flags & RC_CF_DESC_CLOSING);
	if (c->gen > RC_GEN_MASK)
		return false;
	if (c->state == RC_CONN_FREE)
		return c->inflight == 0 && !c->q.ring && !c->pend && !c->http_pub && !c->subs &&
		       !c->zc_wait;
	if (c->shard != s || c->state > RC_CONN_DOOMED || c->inflight < owed)
		return false;
	if ((c->q.count && !c->q.ring) || (c->q.ring && c->q.count > c->q.ring->cap) ||
	    (!c->q.count && c->q.bytes))
		return false;
	if (c->zc_wait && !c->inflight)
		return false;
	if (c->flags & RC_CF_APP_OPEN) {
		if (c->state != RC_CONN_OPEN && c->state != RC_CONN_CLOSING)
			return false;
		if (c->endpoint >= s->app->ws_count)
			return false;
	}
	switch (c->state) {
	case RC_CONN_HTTP:
		return !(c->flags & (RC_CF_DESC_CLOSING | RC_CF_DEFLATE)) && !c->subs;
	case RC_CONN_DOOMED:
		/* Terminated: input freed, subscriptions dropped, the send queue released
		 * unless a send still reads it, and the descriptor's close under way. */
		if (c->pend || c->http_pub || c->subs || (c->flags & RC_CF_APP_OPEN))
			return false;
		return c->inflight > 0 && (c->q.count == 0 || (c->flags & RC_CF_SEND));
	default: return !(c->flags & RC_CF_DESC_CLOSING);
	}
}

bool rc_conn_table_validate(const struct rc_shard *s)
{
	uint32_t live = 0, refusing = 0, admin = 0, websockets = 0, dirty = 0;
	if (s->dirty_count > s->conns_cap)
		return false;
	for (uint32_t i = 0; i < s->conns_cap; i++) {
		const struct rc_conn *c = &s->conns[i];
		if (!record_ok(s, c))
			return false;
		dirty += !!(c->flags & RC_CF_DIRTY);
		if (c->state == RC_CONN_FREE)
			continue;
		live++;
		refusing += !!(c->flags & RC_CF_REFUSED);
		admin += !!(c->flags & RC_CF_ADMIN);
		websockets += !!(c->flags & RC_CF_APP_OPEN);
	}
	/* Every flagged record (freed ones too: a slot freed while listed keeps its mark for its
	 * next connection) has exactly one entry on the list. */
	if (s->dirty_head >= s->conns_cap)
		return false;
	for (uint32_t i = 0, at = s->dirty_head; i < s->dirty_count; i++) {
		if (s->dirty[at] >= s->conns_cap)
			return false;
		if (++at == s->conns_cap)
			at = 0;
	}
	return live == s->conns_live && refusing == s->conns_refusing &&
	       admin == s->conns_admin && dirty == s->dirty_count &&
	       s->stats.connections_open == live && s->stats.websockets_open == websockets;
}

/* ---- the public connection API (include/ringcast/conn.h) --------------------------------- */
void rc_conn_set_user(struct rc_conn *c, void *user)
{
	c->user = user;
}

void *rc_conn_user(const struct rc_conn *c)
{
	return c->user;
}

int rc_conn_shard(const struct rc_conn *c)
{
	return c->shard->index;
}

size_t rc_conn_queued_bytes(const struct rc_conn *c)
{
	return c->q.bytes;
}
