/*
 * Connection records and their lifecycle on a shard: multishot accept into the fixed-file
 * table (slot = descriptor index), multishot recv from the provided-buffer ring, the close
 * handshake, timers (handshake, ping, idle, close) and teardown. A record returns to the
 * table only after every operation it started has completed and its descriptor's close has
 * completed, so a late completion can never reach a reused slot (the generation check
 * catches the rest). Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "runtime.h"

const char *rc_close_reason_name(enum rc_close_reason why)
{
	static const char *names[] = {
#define RC_X(name, help) #name,
		RC_CLOSE_REASONS(RC_X)
#undef RC_X
	};
	return (unsigned)why < RC_CLOSE_REASON_COUNT ? names[why] : "unknown";
}

uint32_t rc_shard_tick(const struct rc_shard *s)
{
	return (uint32_t)((s->now_ms - s->epoch_ms) / s->app->cfg.timer_tick_ms);
}

static uint32_t ms_to_ticks(const struct rc_shard *s, uint64_t ms)
{
	uint64_t t = (ms + s->app->cfg.timer_tick_ms - 1) / s->app->cfg.timer_tick_ms;
	return t ? (uint32_t)t : 1;
}

static void timer_in(struct rc_conn *c, uint64_t ms)
{
	struct rc_shard *s = c->shard;
	rc_wheel_arm(&s->wheel, &c->timer, rc_shard_tick(s) + ms_to_ticks(s, ms));
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

void rc_accept_arm(struct rc_shard *s)
{
	if (s->accept_armed || s->draining || s->listen_fd < 0)
		return;
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_multishot_accept_direct(sqe, s->listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_ACCEPT, 0, 0));
	s->accept_armed = true;
}

static void recv_arm(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
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

/*
 * Over connections_max: answer 503 and close. Input is discarded and TCP half-closed after
 * the answer (as after a protocol failure), so no reset can destroy the answer in flight.
 */
static void refuse(struct rc_conn *c)
{
	static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
				   "Content-Type: text/plain\r\nContent-Length: 32\r\n"
				   "Connection: close\r\n\r\nconnection limit reached, retry\n";
	RC_STATIC_ASSERT(sizeof("connection limit reached, retry\n") - 1 == 32,
			 "Content-Length of the 503 body");
	c->shard->stats.connections_refused++;
	c->shard->conns_refusing++;
	c->flags |= RC_CF_REFUSED;
	c->state = RC_CONN_CLOSING;
	c->close_reason = RC_CLOSE_over_capacity;
	c->flags |= RC_CF_DISCARD;
	if (rc_conn_send_raw(c, resp, sizeof(resp) - 1) != 0) {
		rc_conn_terminate(c, RC_CLOSE_over_capacity);
		return;
	}
	timer_in(c, c->shard->app->cfg.close_timeout_ms);
}

void rc_accept_complete(struct rc_shard *s, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		s->accept_armed = false;
	if (cqe->res < 0) {
		/* -ENFILE: table full (re-armed when a slot frees). -ECANCELED: drain. */
		if (cqe->res != -ECANCELED)
			s->stats.connections_refused++;
		return;
	}
	uint32_t slot = (uint32_t)cqe->res;
	if (slot >= s->conns_cap || s->conns[slot].state != RC_CONN_FREE || s->draining) {
		RC_ASSERT(slot < s->conns_cap);
		close_orphan(s, slot);
		return;
	}
	struct rc_conn *c = &s->conns[slot];
	uint32_t gen = c->gen;
	RC_ASSERT(c->inflight == 0);
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->shard = s;
	c->state = RC_CONN_HTTP;
	c->last_rx_tick = rc_shard_tick(s);
	s->conns_live++;
	s->stats.connections_accepted++;
	s->stats.connections_open++;
	recv_arm(c);
	if (s->conns_live - s->conns_refusing > s->conns_limit) {
		refuse(c);
		return;
	}
	timer_in(c, s->app->cfg.handshake_timeout_ms);
}

/* Cancels everything in flight on c's descriptor; the close follows when none remains. */
static void cancel_all(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_cancel_fd(sqe, (int)slot,
				IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_CANCEL, c->gen, slot));
	c->inflight++;
}

static void close_desc(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
	RC_ASSERT(c->inflight == 0);
	RC_ASSERT(!(c->flags & RC_CF_DESC_CLOSING));
	rc_sendq_release(s, &c->q);
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
	RC_ASSERT(c->q.head == NULL && c->pend == NULL && c->msg == NULL);
	RC_ASSERT(c->zc_wait == NULL);
	c->state = RC_CONN_FREE;
	c->gen = (c->gen + 1) & RC_GEN_MASK;
	s->conns_live--;
	if (c->flags & RC_CF_REFUSED)
		s->conns_refusing--;
	s->stats.connections_open--;
	rc_accept_arm(s);
}

void rc_conn_terminate(struct rc_conn *c, enum rc_close_reason why)
{
	struct rc_shard *s = c->shard;
	if (c->state == RC_CONN_DOOMED || c->state == RC_CONN_FREE)
		return;
	bool http = c->state == RC_CONN_HTTP;
	c->state = RC_CONN_DOOMED;
	s->stats.connections_closed[why]++;
	rc_log(s->app, RC_LOG_DEBUG, "connection %u closed: %s", (unsigned)(c - s->conns),
	       rc_close_reason_name(why));
	rc_wheel_disarm(&c->timer);
	if (http) {
		free(c->pend);
		c->pend = NULL;
		free(c->msg);
		c->msg = NULL;
	} else {
		rc_conn_ws_reset(c);
	}
	rc_pubsub_conn_closed(c);
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

void rc_conn_ws_close(struct rc_conn *c, uint16_t code, const char *reason,
		      enum rc_close_reason why)
{
	uint8_t payload[RC_WS_CONTROL_PAYLOAD_LIMIT];

	if (c->state != RC_CONN_OPEN)
		return;
	size_t len = rc_ws_close_write(payload, code, reason);
	c->state = RC_CONN_CLOSING;
	c->close_reason = (uint8_t)why;
	if (!c->close_code)
		c->close_code = code;
	if (rc_conn_send_frame(c, RC_WS_OP_CLOSE, payload, len) != 0) {
		rc_conn_terminate(c, why);
		return;
	}
	timer_in(c, c->shard->app->cfg.close_timeout_ms);
}

/* Re-arms c's heartbeat timer for its next check, counted from its last received bytes. */
static void heartbeat_arm(struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	uint64_t wait = 0;
	if (cfg->ping_interval_ms && !(c->flags & RC_CF_PING))
		wait = cfg->ping_interval_ms;
	else if (cfg->idle_timeout_ms)
		wait = cfg->idle_timeout_ms;
	if (!wait)
		return;
	rc_wheel_arm(&c->shard->wheel, &c->timer, c->last_rx_tick + ms_to_ticks(c->shard, wait));
}

static void heartbeat_fire(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	const struct rc_config *cfg = &s->app->cfg;
	uint64_t idle_ms = (uint64_t)(rc_shard_tick(s) - c->last_rx_tick) * cfg->timer_tick_ms;

	if (cfg->idle_timeout_ms && idle_ms >= cfg->idle_timeout_ms) {
		rc_conn_ws_close(c, RC_WS_CLOSE_GOING_AWAY, "idle timeout", RC_CLOSE_idle_timeout);
		return;
	}
	if (cfg->ping_interval_ms && idle_ms >= cfg->ping_interval_ms && !(c->flags & RC_CF_PING)) {
		if (rc_conn_send_frame(c, RC_WS_OP_PING, NULL, 0) == 0) {
			c->flags |= RC_CF_PING;
			s->stats.pings_sent++;
		}
	}
	heartbeat_arm(c);
}

void rc_conn_timer_fire(struct rc_timer *t, void *ctx)
{
	struct rc_conn *c = rc_container_of(t, struct rc_conn, timer);
	(void)ctx;
	switch (c->state) {
	case RC_CONN_HTTP: rc_conn_terminate(c, RC_CLOSE_handshake_timeout); break;
	case RC_CONN_CLOSING:
		/* A close we started for a reason is counted under it, reply or not. */
		rc_conn_terminate(c, c->close_reason != RC_CLOSE_normal
					     ? (enum rc_close_reason)c->close_reason
					     : RC_CLOSE_close_timeout);
		break;
	case RC_CONN_OPEN: heartbeat_fire(c); break;
	default: RC_ASSERT(!"timer on a free or doomed connection");
	}
}

void rc_conn_http_idle(struct rc_conn *c)
{
	timer_in(c, c->shard->app->cfg.handshake_timeout_ms);
}

void rc_conn_opened(struct rc_conn *c)
{
	c->last_rx_tick = rc_shard_tick(c->shard);
	rc_wheel_disarm(&c->timer);
	heartbeat_arm(c);
}

void rc_recv_complete(struct rc_conn *c, struct io_uring_cqe *cqe)
{
	struct rc_shard *s = c->shard;
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more) {
		c->flags &= (uint16_t)~RC_CF_RECV;
		c->inflight--;
	}
	if (cqe->res > 0) {
		RC_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		s->stats.bytes_in += (uint64_t)cqe->res;
		if (c->state != RC_CONN_DOOMED) {
			c->last_rx_tick = rc_shard_tick(s);
			c->flags &= (uint16_t)~RC_CF_PING;
			s->rx_end = rc_bufring_addr(s, bid) + s->buf_size;
			rc_conn_input(c, rc_bufring_addr(s, bid), (size_t)cqe->res);
			s->rx_end = NULL;
		}
		rc_bufring_return(s, bid);
	} else if (c->state != RC_CONN_DOOMED) {
		if (cqe->res == -ENOBUFS) {
			/* Buffers ran out this turn; the kernel ended the multishot. Provide more
			 * (up to recv_buffers) and re-arm. */
			rc_bufring_grow(s);
			if (!more && c->state != RC_CONN_DOOMED) {
				s->stats.recv_rearms++;
				recv_arm(c);
			}
			return;
		}
		/* After our close frame, the end of the stream completes the close we
		 * started, for the reason we started it. */
		rc_conn_terminate(c, c->state == RC_CONN_CLOSING
					     ? (enum rc_close_reason)c->close_reason
					     : RC_CLOSE_peer_gone);
	}
	if (c->state == RC_CONN_DOOMED) {
		if (c->inflight == 0 && !(c->flags & RC_CF_DESC_CLOSING))
			close_desc(c);
		return;
	}
	if (!more && !(c->flags & RC_CF_RECV)) {
		s->stats.recv_rearms++;
		recv_arm(c);
	}
}

void rc_conn_shutdown_wr(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	uint32_t slot = (uint32_t)(c - s->conns);
	RC_ASSERT(!(c->flags & RC_CF_SHUT_WR));
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_shutdown(sqe, (int)slot, SHUT_WR);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SHUTDOWN, c->gen, slot));
	c->flags |= RC_CF_SHUT_WR;
	c->inflight++;
}

void rc_conn_op_complete(struct rc_conn *c, enum rc_op op, int res)
{
	RC_ASSERT(c->inflight > 0);
	c->inflight--;
	switch (op) {
	case RC_OP_SEND:
	case RC_OP_SEND_ZC: rc_send_complete(c, res); break;
	case RC_OP_CANCEL:
	case RC_OP_SHUTDOWN: break;
	case RC_OP_CLOSE:
		RC_ASSERT(c->state == RC_CONN_DOOMED);
		release_slot(c);
		return;
	default: RC_ASSERT(!"unexpected op for a connection");
	}
	if (c->state == RC_CONN_DOOMED && c->inflight == 0 && !(c->flags & RC_CF_DESC_CLOSING))
		close_desc(c);
}

void rc_conn_slow_close(struct rc_conn *c)
{
	/* The backlog would only delay the close frame behind data the reader cannot take. */
	rc_sendq_drop_unsent(c);
	rc_conn_ws_close(c, RC_WS_CLOSE_TRY_AGAIN, "slow consumer: send queue over limit",
			 RC_CLOSE_slow_consumer);
}

/* ---- the public connection API (include/ringcast/conn.h) --------------------------------- */
int rc_conn_send(struct rc_conn *c, const void *data, size_t len, bool binary)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	if (c->state != RC_CONN_OPEN)
		return -EPIPE;
	/* A message larger than the limit still goes out alone; a backlog never grows past it. */
	if (c->q.bytes > 0 && c->q.bytes + len > cfg->send_queue_bytes_max) {
		rc_conn_slow_close(c);
		return -ENOBUFS;
	}
	int rc = rc_conn_send_data(c, binary ? RC_WS_OP_BINARY : RC_WS_OP_TEXT, data, len);
	if (rc == 0) {
		c->shard->stats.messages_out++;
		if (c->q.bytes > cfg->send_queue_bytes_max / 2)
			c->flags |= RC_CF_WANT_DRAIN;
	}
	return rc;
}

void rc_conn_close(struct rc_conn *c, uint16_t code, const char *reason)
{
	rc_conn_ws_close(c, code, reason, RC_CLOSE_app);
}

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
