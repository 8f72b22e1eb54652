/*
 * ringcast embedding API: a WebSocket connection. Every function here must be called on the
 * thread of the shard that owns the connection (inside its callbacks). A connection pointer
 * is valid from on_open until on_close returns.
 */
#ifndef RINGCAST_CONN_H
#define RINGCAST_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_conn;

/*
 * Queues one message (copied). Returns 0, -EPIPE if the connection is closing, or -ENOBUFS
 * if the send queue is over send_queue_bytes_max (the connection is then closed with 1013).
 */
int rc_conn_send(struct rc_conn *c, const void *data, size_t len, bool binary);

/* Starts the close handshake with code and reason (reason may be NULL). */
void rc_conn_close(struct rc_conn *c, uint16_t code, const char *reason);

/* Per-connection user data, NULL until set. */
void rc_conn_set_user(struct rc_conn *c, void *user);
void *rc_conn_user(const struct rc_conn *c);

/* The owning shard's index. */
int rc_conn_shard(const struct rc_conn *c);

/* Bytes queued for sending and not yet acknowledged by the kernel. */
size_t rc_conn_queued_bytes(const struct rc_conn *c);

/* The user id (the "sub" claim) of c's access token; "" without one. The string belongs to
 * the connection and changes only with a refresh. The connection's shard thread. */
const char *rc_conn_subject(const struct rc_conn *c);

#endif
