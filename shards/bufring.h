/*
 * The shard's provided-buffer ring (bufring.c): receive buffers of recv_buffer_bytes, buffer
 * group 0 of the shard's ring, taken by multishot recv only when bytes arrive. Starts with a
 * few buffers and doubles on ENOBUFS up to recv_buffers. Shard thread only.
 */
#ifndef RC_BUFRING_H
#define RC_BUFRING_H

#include "runtime.h"

/* Maps and registers the ring and provides the first buffers. 0, or -errno with one line in
 * err. Shard thread, at setup (after rc_uring_setup). */
int rc_bufring_setup(struct rc_shard *s, char *err, size_t err_len);

/* Unregisters and unmaps the ring and its buffers; harmless if never set up. */
void rc_bufring_free(struct rc_shard *s);

/* The address of buffer bid (a reference into s's mapping, valid until rc_bufring_free). */
uint8_t *rc_bufring_addr(struct rc_shard *s, uint16_t bid);

/* Gives buffer bid back to the kernel; published at the next rc_bufring_commit(). */
void rc_bufring_return(struct rc_shard *s, uint16_t bid);

/* Publishes the returned buffers to the kernel; once per loop turn. */
void rc_bufring_commit(struct rc_shard *s);

/* The kernel ran out of buffers: provide more (doubling, up to recv_buffers). */
void rc_bufring_grow(struct rc_shard *s);

#endif
