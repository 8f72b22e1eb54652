/*
 * The shard's io_uring (uring.c): the start-up feature probe, ring creation, the SQE helper
 * every layer uses, the user_data codec that tags each operation with its connection's slot
 * and generation, and the two doorbells (MSG_RING between shards, an eventfd from any
 * thread). Ring functions: the owning shard thread; the probe: main thread, before any
 * shard starts; rc_uring_wake: any thread.
 */
#ifndef RC_URING_H
#define RC_URING_H

#include "runtime.h"

/* ---- user_data: {op:8, gen:24, slot:32} --------------------------------------------------- */
enum rc_op {
	RC_OP_NONE = 0,
	RC_OP_ACCEPT,
	RC_OP_RECV,
	RC_OP_SEND,
	RC_OP_SEND_ZC, /* result, then a notification (IORING_CQE_F_NOTIF) */
	RC_OP_CANCEL,
	RC_OP_CLOSE,
	RC_OP_SHUTDOWN,
	RC_OP_WAKE, /* eventfd doorbell read */
	RC_OP_MSG,  /* MSG_RING doorbell from another shard */
	RC_OP_REDIS_CONNECT, /* a Redis link's (redis_conn.c): slot = link index */
	RC_OP_REDIS_SEND,
	RC_OP_REDIS_RECV,
	RC_OP_COUNT,
};

#define RC_GEN_MASK 0xffffffu

static inline uint64_t rc_ud(enum rc_op op, uint32_t gen, uint32_t slot)
{
	return ((uint64_t)op << 56) | ((uint64_t)(gen & RC_GEN_MASK) << 32) | slot;
}
static inline enum rc_op rc_ud_op(uint64_t ud)
{
	return (enum rc_op)(ud >> 56);
}
static inline uint32_t rc_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & RC_GEN_MASK;
}
static inline uint32_t rc_ud_slot(uint64_t ud)
{
	return (uint32_t)ud;
}

/* ---- the ring ------------------------------------------------------------------------------ */
/*
 * Checks that the kernel has every io_uring feature the runtime uses. 0, or -errno with one
 * line in err naming the missing feature and the minimum kernel. Main thread.
 */
int rc_uring_probe(char *err, size_t err_len);

/*
 * Creates s's ring (ring_entries, CQ four times that) with a sparse table of s->conns_cap
 * direct descriptors. 0, or -errno with one line in err. Shard thread, at setup.
 */
int rc_uring_setup(struct rc_shard *s, char *err, size_t err_len);

/*
 * A fresh SQE of s's ring, never NULL: a full SQ is submitted first. The SQE is s's until the
 * next submit. Shard thread.
 */
struct io_uring_sqe *rc_uring_sqe(struct rc_shard *s);

/* ---- doorbells ----------------------------------------------------------------------------- */
/* Rings to's doorbell from s's ring (IORING_OP_MSG_RING; a completion on to's ring). Borrows
 * both. s's shard thread. */
void rc_uring_msg_ring(struct rc_shard *s, struct rc_shard *to);

/* Arms the read of s's eventfd doorbell if it is not armed. s's shard thread. */
void rc_uring_wake_arm(struct rc_shard *s);

/* Rings s's eventfd doorbell, waking its thread. Any thread (rc_publish from foreign
 * threads, rc_app_stop). */
void rc_uring_wake(struct rc_shard *s);

#endif
