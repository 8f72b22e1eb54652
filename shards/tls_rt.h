/*
 * TLS on the ring (tls_rt.c): the records of connections from the TLS listener, kept in a side
 * table indexed by slot so that plain connections keep their 152-byte record. Ciphertext
 * arrives through the connection's multishot receive like any bytes and is decrypted in
 * place of the plain input hook; what the queue holds (frames built once, shared by every
 * subscriber) is encrypted at send time into a buffer that lives only until the kernel has
 * it. Handshake work per loop turn is bounded (tls_handshakes_per_turn_max): the rest waits
 * for the next turn. In the send queue's layer: sendq.c calls it to send and tls_rt.c uses the
 * queue. Shard thread only, except rc_tls_shard_init/free (main thread).
 */
#ifndef RC_TLS_RT_H
#define RC_TLS_RT_H

#include "runtime.h"

/* Allocates s's side table and plaintext buffer (tls_port set). 0 or -ENOMEM. Main thread,
 * before the shard starts. */
int rc_tls_shard_init(struct rc_shard *s);

/* Frees what rc_tls_shard_init made; every connection is gone. Main thread, after join. */
void rc_tls_shard_free(struct rc_shard *s);

/* Ciphertext p[0..n) arrived for TLS connection c (borrowed for the call): the handshake
 * advances or plaintext goes up through the input hook. The conn hook tls_input. */
void rc_tls_input(struct rc_conn *c, uint8_t *p, size_t n);

/*
 * Issues c's next send: ciphertext pending, or the queue's frames encrypted now. Returns true
 * if a send went out or the queue waits for the handshake, false if c has nothing to send
 * (the caller then applies FLUSH_CLOSE and DISCARD as for a plain connection).
 */
bool rc_tls_issue_send(struct rc_conn *c);

/* Before c's TCP stream is half-closed (DISCARD): sends our close_notify, once, so the peer
 * sees a clean end rather than a truncation. Returns whether a send went out (the
 * half-close then waits for its completion). */
bool rc_tls_close_notify(struct rc_conn *c);

/* Whether c has ciphertext not yet handed to a send. */
bool rc_tls_out_pending(const struct rc_conn *c);

/* res bytes of c's ciphertext were sent (a send completion, res > 0). */
void rc_tls_sent(struct rc_conn *c, uint32_t res);

/* Frees c's TLS record: c is terminated and no send reads its buffers any more. */
void rc_tls_release(struct rc_conn *c);

/* Start of a loop turn: the handshake budget refills and put-off handshakes run first. */
void rc_tls_turn(struct rc_shard *s);

/* Whether handshakes wait for the next turn (the loop must not sleep). */
bool rc_tls_waiting(const struct rc_shard *s);

#endif
