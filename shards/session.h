/*
 * A connection's life above its socket (session.c): the timers (handshake, heartbeat, close),
 * the WebSocket close handshake, the slow-consumer close, the 503 answer over
 * connections_max, and the public send/close of include/ringcast/conn.h. Sits on the send
 * queue (it sends pings, close frames and the 503) and the connection table (it ends
 * connections); input, HTTP and pub/sub build on it. The connection passed in is borrowed.
 * Shard thread only.
 */
#ifndef RC_SESSION_H
#define RC_SESSION_H

#include "runtime.h"

/* A new connection (rc_conn_accept_complete): arms its handshake timer, or, over the
 * shard's connections_max share or past the memory budget's soft mark, answers 503 and
 * closes (counted as over_capacity or over_budget). */
void rc_conn_accepted(struct rc_conn *c);

/* The upgrade succeeded: the heartbeat timer replaces the handshake timer. */
void rc_conn_opened(struct rc_conn *c);

/* c's token was replaced (a refresh): its timer is armed again for the new expiry. */
void rc_conn_token_renewed(struct rc_conn *c);

/* A keep-alive HTTP connection waits for its next request: re-arms handshake_timeout_ms. */
void rc_conn_http_idle(struct rc_conn *c);

/*
 * Starts the close handshake on an open connection: a close frame with code and reason
 * (borrowed; may be NULL), state CLOSING, close_timeout_ms to hear the reply; the close is
 * counted under why. Does nothing unless c is open.
 */
void rc_conn_ws_close(struct rc_conn *c, uint16_t code, const char *reason,
		      enum rc_close_reason why);

/* Applies the close policy to a slow consumer: its unsent backlog dropped, 1013 sent. */
void rc_conn_slow_close(struct rc_conn *c);

/*
 * After a receive on c: incomplete says whether it now holds an incomplete frame or message.
 * The first receive that leaves one starts message_timeout_ms (the connection's one timer
 * fires at the earlier of it and the heartbeat); more bytes do not extend it.
 */
void rc_conn_message_watch(struct rc_conn *c, bool incomplete);

/* The wheel's callback for a connection's timer (t is embedded in its rc_conn; ctx is
 * unused): handshake timeout, close timeout, message timeout, or a heartbeat check. */
void rc_conn_timer_fire(struct rc_timer *t, void *ctx);

#endif
