/*
 * Per-connection send queues (sendq.c): frames queued in order, at most one send in flight
 * per socket, whatever queued meanwhile gathered into one sendmsg, and every send of a loop
 * turn issued at its end (rc_shard_flush) from the shard's dirty list. Also the shard's
 * codec buffers the senders compress into. Sits on the connection table: a failed send or a
 * flushed close ends the connection there. Connections and shards passed in are borrowed;
 * what happens to frames is said per function. Shard thread only.
 */
#ifndef RC_SENDQ_H
#define RC_SENDQ_H

#include <sys/socket.h>

#include "runtime.h"

struct rc_frame;

/* A frame sent zero-copy whose notification is owed: its reference, kept until then. */
struct rc_zcwait {
	struct rc_zcwait *next;
	struct rc_frame *frame;
};

/* Entry i (0: the oldest) of a non-empty queue. */
static inline struct rc_qent *rc_sendq_at(const struct rc_sendq *q, uint32_t i)
{
	return &q->ring->e[(q->head + i) & (q->ring->cap - 1)];
}

#define RC_SEND_IOV_LIMIT 64
/* A gathered send of at most this many frames takes a small operation (136 bytes). */
#define RC_SEND_IOV_SMALL 4
/* The smallest queue ring, and the bytes of empty rings a shard keeps for reuse: at least
 * this many, and up to RC_QRING_POOL_PER_CONN per live connection (what a broadcast to every
 * connection takes turn after turn); past it they are freed, so a burst's memory goes back.
 * Send operations: at most RC_SENDOP_POOL_LIMIT large ones (70 KiB). */
#define RC_QRING_MIN 4
#define RC_QRING_POOL_BYTES (256u * 1024u)
#define RC_QRING_POOL_PER_CONN 256u
#define RC_SENDOP_POOL_LIMIT 64
/* A codec buffer larger than this is freed by the once-a-second sweep (rc_sendq_trim): a
 * big message's buffer is a one-off. */
#define RC_CODEC_BUF_KEEP_BYTES (256u * 1024u)

/* The msghdr and iovecs of one gathered send, alive until its completion. Pooled per shard
 * in two sizes: RC_SEND_IOV_SMALL and RC_SEND_IOV_LIMIT iovecs. */
struct rc_sendop {
	struct msghdr mh;
	struct rc_sendop *next_free;
	uint32_t iov_cap; /* iovecs allocated: RC_SEND_IOV_SMALL or RC_SEND_IOV_LIMIT */
	struct iovec iov[];
};

/*
 * True if queuing add more bytes on c makes it a slow consumer: its queue is not empty and
 * would pass send_queue_bytes_max, or its oldest frame is older than send_queue_age_max_ms.
 * Anything, even a single message over the limit, goes into an empty queue. Borrows c.
 */
bool rc_sendq_slow(const struct rc_conn *c, size_t add);

/*
 * Queues f on c, taking ownership of the caller's reference (released on failure). 0,
 * -EPIPE (c was terminated), -ENOBUFS (c is a slow consumer, rc_sendq_slow, or the memory
 * budget refused the bytes: nothing queued, the caller applies the policy) or -ENOMEM.
 * The bytes are charged to the budget (send_queue: the node, and the frame if unicast).
 */
int rc_conn_enqueue(struct rc_conn *c, struct rc_frame *f);

/* rc_conn_enqueue, or, unchecked, past the queue's limit: for frames bounded otherwise (the
 * latest policy's one message per topic), or whose caller has just made the slow-consumer
 * test (a broadcast's offer). */
int rc_sendq_push(struct rc_conn *c, struct rc_frame *f, bool checked);

/*
 * Queues one unfragmented frame of opcode carrying p[0..len) (copied). 0 or -errno as
 * rc_conn_enqueue. A pong replaces a pong still last in the queue and not handed to the
 * kernel (RC_CF_PONG: RFC 6455 §5.5.3 lets us answer only the latest ping), so a ping flood
 * holds one pong. A close frame is never refused for the queue's size (one per connection;
 * it replaces a waiting pong).
 */
int rc_conn_send_frame(struct rc_conn *c, uint8_t opcode, const void *p, size_t len);

/* Sends a data message, compressed when c negotiated deflate and it is worth it (copied). */
int rc_conn_send_data(struct rc_conn *c, uint8_t opcode, const void *p, size_t len);

/* Queues p[0..len) as they are (an HTTP response; copied). 0 or -errno. */
int rc_conn_send_raw(struct rc_conn *c, const void *p, size_t len);

/* Puts c on the shard's flush list for this turn (once). */
void rc_conn_mark_dirty(struct rc_conn *c);

/*
 * The end of a turn's work: for every connection on the dirty list, parse what waited for an
 * answer (the resume hook), issue its send, or finish it (terminate after a flushed close,
 * half-close after a failure's close frame). Clears the list.
 */
void rc_shard_flush(struct rc_shard *s);

/* A send or send_zc result for c (res is the CQE's): drops what the kernel took, issues the
 * rest next flush, owes on_drain; a failed send ends c. Counts the operation done. */
void rc_send_complete(struct rc_conn *c, int res);

/* A send_zc notification for c: the kernel no longer reads the oldest zero-copy frame.
 * Counts the operation done. */
void rc_send_zc_notified(struct rc_conn *c);

/* c was terminated: its queue goes now, or, if a send still reads it, at that send's
 * completion. Part of the closed hook (app.c). */
void rc_sendq_conn_closed(struct rc_conn *c);

/* A unicast frame of opcode carrying p[0..len) (copied), one reference (the caller's); NULL
 * without memory. */
struct rc_frame *rc_frame_build(uint8_t opcode, bool rsv1, const void *p, size_t len);

/* The index of the first frame of c's queue not handed to the kernel (neither in the send
 * in flight nor half sent); c->q.count if none. */
uint32_t rc_sendq_unsent(const struct rc_conn *c);

/* Puts f (the caller's reference, taken) in place of unsent entry i of c's queue, releasing
 * the frame it held; the queue's bytes follow. */
void rc_sendq_swap(struct rc_conn *c, uint32_t i, struct rc_frame *f);

/* Queues f (the caller's reference, taken) at index i of c's queue (i <= count, at or after
 * rc_sendq_unsent), the frames from i on moving back one. 0 or -ENOMEM (f released). */
int rc_sendq_insert(struct rc_conn *c, uint32_t i, struct rc_frame *f);

/* Drops every queued frame not yet handed to the kernel (slow consumer being closed). */
void rc_sendq_drop_unsent(struct rc_conn *c);

/* Drops the first n bytes of c's queue (frames whose bytes left by other means: TLS
 * encrypted them). Not while a plain send reads the queue. */
void rc_sendq_consume(struct rc_conn *c, uint32_t n);

/* Frees the shard's pools of queue rings and send operations. Shard thread, at exit. */
void rc_pools_free(struct rc_shard *s);

/* Grows s's scratch buffer *buf (capacity *cap) to at least n bytes, charging the growth to
 * the budget (inflate): returns it, or NULL (unchanged) when the budget or memory refuses.
 * Shard s's thread. */
void *rc_grow(struct rc_shard *s, void **buf, size_t *cap, size_t n);

/* Frees a buffer of rc_grow and releases its charge. Shard s's thread, or its teardown. */
void rc_grow_free(struct rc_shard *s, void **buf, size_t *cap);

/* Frees the shard's codec buffers if a big message grew them past RC_CODEC_BUF_KEEP_BYTES
 * (they grow again on demand). Shard thread, from the once-a-second sweep. */
void rc_sendq_trim(struct rc_shard *s);

/* Grows the shard's codec buffer to at least n bytes (a reference, valid until the next
 * call); NULL on allocation failure. */
uint8_t *rc_shard_zbuf(struct rc_shard *s, size_t n);

/* The same for the inflation output (a message being delivered may be echoed compressed). */
uint8_t *rc_shard_ibuf(struct rc_shard *s, size_t n);

#endif
