/*
 * A connection's life above its socket: one embedded timer serves the handshake timeout
 * (HTTP), the heartbeat (ping after ping_interval_ms of silence, close 1001 after
 * idle_timeout_ms) and the close timeout (CLOSING); the close handshake we start; the slow
 * consumer's close; the 503 that a connection over connections_max or past the memory
 * budget's soft mark hears before it closes; and the public rc_conn_send/rc_conn_close.
 * Shard thread only.
 */
#include <errno.h>

#include <stdio.h>

#include "conn_rt.h"
#include "sendq.h"
#include "session.h"
#include "sse_rt.h"

static void timer_in(struct rc_conn *c, uint64_t ms)
{
	struct rc_shard *s = c->shard;
	rc_wheel_arm(&s->wheel, &c->timer,
		     rc_clock_tick(&s->clock) + rc_clock_ticks(&s->clock, ms));
}

/*
 * Over connections_max, or past the memory budget's soft mark: answer 503 and close. Input is
 * discarded and TCP half-closed after the answer (as after a protocol failure), so no reset
 * can destroy the answer in flight.
 */
static void refuse(struct rc_conn *c, enum rc_close_reason why)
{
	static const char full[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
				   "Content-Type: text/plain\r\nContent-Length: 32\r\n"
				   "Connection: close\r\n\r\nconnection limit reached, retry\n";
	static const char budget[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
				     "Content-Type: text/plain\r\nContent-Length: 29\r\n"
				     "Connection: close\r\n\r\nmemory budget reached, retry\n";
	RC_STATIC_ASSERT(sizeof("connection limit reached, retry\n") - 1 == 32,
			 "Content-Length of the 503 body");
	RC_STATIC_ASSERT(sizeof("memory budget reached, retry\n") - 1 == 29,
			 "Content-Length of the 503 body");
	bool over_budget = why == RC_CLOSE_over_budget;
	c->shard->stats.connections_refused++;
	c->shard->conns_refusing++;
	c->flags |= RC_CF_REFUSED;
	c->state = RC_CONN_CLOSING;
	c->close_reason = (uint8_t)why;
	c->flags |= RC_CF_DISCARD;
	if (rc_conn_send_raw(c, over_budget ? budget : full,
			     over_budget ? sizeof(budget) - 1 : sizeof(full) - 1) != 0) {
		rc_conn_terminate(c, why);
		return;
	}
	timer_in(c, c->shard->app->cfg.close_timeout_ms);
}

void rc_conn_accepted(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(c->state == RC_CONN_HTTP);
	if (c->flags & RC_CF_ADMIN) {
		/* Its own small allowance: probes and scrapes, never a crowd to answer. */
		if (s->conns_admin > s->app->cfg.admin_connections_max) {
			rc_conn_terminate(c, RC_CLOSE_over_capacity);
			return;
		}
	} else if (s->conns_live - s->conns_refusing - s->conns_admin > s->conns_limit) {
		refuse(c, RC_CLOSE_over_capacity);
		return;
	} else if (s->mem_level >= RC_BUDGET_SOFT) {
		/* Past the soft mark a new connection would only add to what must be shed later
		 * (the admin listener's stay served). The level is the shard's once-per-tick
		 * reading (memory.c): no shared counters here. */
		refuse(c, RC_CLOSE_over_budget);
		return;
	}
	timer_in(c, s->app->cfg.handshake_timeout_ms);
}

/*
 * Ends an SSE stream: a last event {"op":"close","code":C,"reason":R} says why (1012/1013
 * ask the client library to come back later), then TCP closes once it is sent (or after
 * close_timeout_ms).
 */
static void sse_end(struct rc_conn *c, uint16_t code, const char *reason)
{
	char out[256];
	int n = snprintf(out, sizeof(out), "{\"op\":\"close\",\"code\":%u,\"reason\":\"%s\"}",
			 code, reason ? reason : "");
	RC_ASSERT(n > 0 && (size_t)n < sizeof(out)); /* reasons are our own short literals */
	c->flags |= RC_CF_FLUSH_CLOSE;
	if (rc_sse_send(c, out, (size_t)n, false) != 0) {
		rc_conn_terminate(c, (enum rc_close_reason)c->close_reason);
		return;
	}
	timer_in(c, c->shard->app->cfg.close_timeout_ms);
}

void rc_conn_ws_close(struct rc_conn *c, uint16_t code, const char *reason,
		      enum rc_close_reason why)
{
	uint8_t payload[RC_WS_CONTROL_PAYLOAD_LIMIT];

	if (c->state != RC_CONN_OPEN)
		return;
	if (c->flags & RC_CF_SSE) {
		c->state = RC_CONN_CLOSING;
		c->close_reason = (uint8_t)why;
		sse_end(c, code, reason);
		return;
	}
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

/* When c's access token expires on the shard clock; 0 without one. */
static uint64_t token_expiry_ms(const struct rc_conn *c)
{
	const struct rc_shard *s = c->shard;
	return s->tokens ? s->tokens[c - s->conns].expires_ms : 0;
}

/* The tick at which c's token has expired, at most 2^30 ticks ahead: the wheel compares
 * ticks within 2^31, so a far expiry is looked at again on the way. */
static uint32_t token_expiry_tick(const struct rc_conn *c, uint64_t expires_ms)
{
	const struct rc_clock *clk = &c->shard->clock;
	uint64_t left = expires_ms > clk->now_ms ? expires_ms - clk->now_ms : 0;
	RC_ASSERT(expires_ms != 0);
	return rc_clock_tick(clk) + rc_clock_ticks(clk, RC_MIN(left, (uint64_t)clk->tick_ms << 30));
}

/* True if tick a comes before tick b (ticks wrap). */
static bool tick_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* The earlier of deadline ticks at and d, where 0 means none. */
static uint32_t earlier(uint32_t at, uint32_t d)
{
	return d && (!at || tick_before(d, at)) ? d : at;
}

/*
 * Re-arms c's one timer for its next check: the heartbeat, counted from its last received
 * bytes, its token's expiry, or its incomplete message's deadline, whichever comes first
 * (none: the timer stays off).
 */
static void heartbeat_arm(struct rc_conn *c)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	uint64_t wait = 0, expires_ms = token_expiry_ms(c);
	uint32_t at = c->msg_deadline_tick;
	/* A stream's client never talks: its timer paces heartbeats from the last one. */
	if (c->flags & RC_CF_SSE)
		wait = cfg->sse_heartbeat_ms;
	else if (cfg->ping_interval_ms && !(c->flags & RC_CF_PING))
		wait = cfg->ping_interval_ms;
	else if (cfg->idle_timeout_ms)
		wait = cfg->idle_timeout_ms;
	if (wait)
		at = earlier(at, c->last_rx_tick + rc_clock_ticks(&c->shard->clock, wait));
	if (expires_ms)
		at = earlier(at, token_expiry_tick(c, expires_ms));
	if (at)
		rc_wheel_arm(&c->shard->wheel, &c->timer, at);
}

void rc_conn_message_watch(struct rc_conn *c, bool incomplete)
{
	struct rc_shard *s = c->shard;
	uint64_t ms = s->app->cfg.message_timeout_ms;

	if (!incomplete || !ms || c->state != RC_CONN_OPEN) {
		c->msg_deadline_tick = 0; /* an early timer finds nothing due and re-arms */
		return;
	}
	if (c->msg_deadline_tick)
		return; /* a trickle of bytes does not extend it */
	uint32_t at = rc_clock_tick(&s->clock) + rc_clock_ticks(&s->clock, ms);
	c->msg_deadline_tick = at ? at : 1; /* 0 means none */
	if (!c->timer.linked || tick_before(c->msg_deadline_tick, c->timer.expiry_tick))
		rc_wheel_arm(&s->wheel, &c->timer, c->msg_deadline_tick);
	RC_DASSERT(c->timer.linked);
}

void rc_conn_token_renewed(struct rc_conn *c)
{
	/* A closing connection's timer is its close timeout: left alone. */
	if (c->state == RC_CONN_OPEN)
		heartbeat_arm(c);
}

static void heartbeat_fire(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	const struct rc_config *cfg = &s->app->cfg;
	uint32_t now = rc_clock_tick(&s->clock);
	uint64_t idle_ms = (uint64_t)(now - c->last_rx_tick) * cfg->timer_tick_ms;
	uint64_t expires_ms = token_expiry_ms(c);

	if (expires_ms && s->clock.now_ms >= expires_ms) {
		rc_conn_ws_close(c, RC_WS_CLOSE_POLICY, "token expired",
				 RC_CLOSE_token_expired);
		return;
	}
	if (c->msg_deadline_tick && !tick_before(now, c->msg_deadline_tick)) {
		/* What it holds of the message is freed when the connection ends (the close
		 * timer bounds that); nothing more is read. */
		c->msg_deadline_tick = 0;
		rc_conn_ws_close(c, RC_WS_CLOSE_POLICY, "message timeout",
				 RC_CLOSE_message_timeout);
		c->flags |= RC_CF_DISCARD;
		return;
	}
	if (c->flags & RC_CF_SSE) {
		if (cfg->sse_heartbeat_ms && idle_ms >= cfg->sse_heartbeat_ms) {
			if (rc_sse_heartbeat(c) == -ENOBUFS) {
				rc_conn_slow_close(c);
				return;
			}
			c->last_rx_tick = now;
		}
		heartbeat_arm(c);
		return;
	}
	if (cfg->idle_timeout_ms && idle_ms >= cfg->idle_timeout_ms) {
		rc_conn_ws_close(c, RC_WS_CLOSE_GOING_AWAY, "idle timeout", RC_CLOSE_idle_timeout);
		return;
	}
	if (cfg->ping_interval_ms && idle_ms >= cfg->ping_interval_ms && !(c->flags & RC_CF_PING)) {
		int rc = rc_conn_send_frame(c, RC_WS_OP_PING, NULL, 0);
		if (rc == -ENOBUFS) {
			rc_conn_slow_close(c);
			return;
		}
		if (rc == 0) {
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
	c->last_rx_tick = rc_clock_tick(&c->shard->clock);
	rc_wheel_disarm(&c->timer);
	heartbeat_arm(c);
}

void rc_conn_slow_close(struct rc_conn *c)
{
	if (c->state == RC_CONN_HTTP) {
		/* Pipelined requests whose answers are not read: no close frame to send. */
		rc_conn_terminate(c, RC_CLOSE_slow_consumer);
		return;
	}
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
	if (rc_sendq_slow(c, len)) {
		rc_conn_slow_close(c);
		return -ENOBUFS;
	}
	if ((c->flags & RC_CF_SSE) && binary)
		return -EINVAL; /* events carry text */
	int rc = c->flags & RC_CF_SSE
			 ? rc_sse_send(c, data, len, true)
			 : rc_conn_send_data(c, binary ? RC_WS_OP_BINARY : RC_WS_OP_TEXT, data, len);
	if (rc == -ENOBUFS)
		rc_conn_slow_close(c); /* the compressed frame's bytes, or the memory budget */
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
