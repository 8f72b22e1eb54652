/*
 * A bounded lock-free multi-producer single-consumer ring of pointers: the inbox of a shard,
 * carrying cross-shard work (broadcast frames, control messages, frames going home to their
 * owner). Any thread may push; only the owning shard pops. A push never blocks and never
 * waits for another producer: a full ring is reported to the caller (false), who decides
 * what to do with the item (keep it in an outbox, answer -EAGAIN), so nothing is dropped
 * silently.
 *
 * Each slot carries a sequence number saying whose turn it is (D. Vyukov's bounded queue):
 * `pos` when the slot is free for the producer of position `pos`, `pos + 1` once that
 * producer has published its item, `pos + capacity` once the consumer has taken it. Producers
 * claim positions with a CAS on `tail`; the consumer reads `head` alone. A producer preempted
 * between its claim and its publish delays only the consumer's view of that one position
 * (rc_mpsc_pop() stops there and resumes on a later call), never the other producers.
 *
 * The doorbell protocol lets the consumer sleep (io_uring_submit_and_wait) without losing a
 * wake-up, and lets producers skip the IORING_OP_MSG_RING doorbell while it is awake:
 *
 *   consumer                                   producer
 *   n = rc_mpsc_pop(q, ...);  (0: idle)        if (rc_mpsc_push(q, item) &&
 *   rc_mpsc_sleep_prepare(q);                      rc_mpsc_wake_needed(q))
 *   if (rc_mpsc_sleep_cancel(q))                       ring the consumer's doorbell;
 *           continue;        (items arrived)
 *   wait for completions (the doorbell is one);
 *   rc_mpsc_sleep_end(q);
 *
 * This header owns the ring and its protocol; the doorbell itself (MSG_RING or an eventfd)
 * belongs to the shard runtime.
 */
#ifndef RC_MPSC_H
#define RC_MPSC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/rc_util.h"

#define RC_MPSC_CAPACITY_LIMIT (1u << 24) /* slots; 16 bytes each, so 256 MiB at most */

/* One slot. seq says whose turn it is (see above); item is valid while seq == pos + 1. */
struct rc_mpsc_slot {
	_Atomic uint64_t seq;
	void *item;
};

/*
 * The ring. Four groups of fields, each written by a different party, are kept on distinct
 * cache lines by full-line pads rather than alignas(), so the struct may be embedded in any
 * allocation (malloc'd shard records included): two fields with at least RC_CACHELINE bytes
 * between them can never share a line, whatever the base address.
 */
struct rc_mpsc {
	char pad_front[RC_CACHELINE];
	/* Read-only after rc_mpsc_init(); read by every thread. */
	struct rc_mpsc_slot *slots; /* capacity slots */
	uint32_t mask;              /* capacity - 1 */
	uint32_t capacity;          /* power of two, 2..RC_MPSC_CAPACITY_LIMIT */
	char pad_ro[RC_CACHELINE];
	/* Producers: the next position to claim. Only grows; tail - head <= capacity. */
	_Atomic uint64_t tail;
	char pad_tail[RC_CACHELINE];
	/* Consumer only: the next position to take. head <= tail. */
	uint64_t head;
	char pad_head[RC_CACHELINE];
	/* 1 while the consumer has announced it may sleep; producers clear it to wake it. */
	_Atomic uint32_t sleeping;
	char pad_back[RC_CACHELINE];
};

/*
 * Prepares an empty ring of `capacity` slots (a power of two, 2..RC_MPSC_CAPACITY_LIMIT).
 * Allocates the slot array. Returns 0, -EINVAL for a bad capacity, or -ENOMEM. Call before
 * any other thread can see q (thread creation then publishes it).
 */
int rc_mpsc_init(struct rc_mpsc *q, uint32_t capacity);

/*
 * Frees the slot array. No other thread may use q any more; items still queued are not
 * touched (pop them first if they own anything).
 */
void rc_mpsc_free(struct rc_mpsc *q);

/*
 * Appends item (never NULL). Any thread. Returns false, without waiting, if the ring holds
 * `capacity` items (or positions claimed by producers still writing them); the caller keeps
 * ownership of item then. On true the item belongs to the consumer, and the caller must
 * next ask rc_mpsc_wake_needed().
 */
bool rc_mpsc_push(struct rc_mpsc *q, void *item);

/*
 * Takes up to max items, oldest first, into out[0..max). Consumer thread only. Returns how
 * many; 0 if nothing is published at the head yet. Items pushed by one producer come out
 * in the order it pushed them.
 */
uint32_t rc_mpsc_pop(struct rc_mpsc *q, void **out, uint32_t max);

/*
 * Checks the ring's invariants: geometry, head <= tail <= head + capacity, every slot's
 * sequence number consistent with its position (stricter when no producer moved meanwhile).
 * O(capacity). Consumer thread, or any thread once producers are quiet. For tests and
 * RC_DASSERT.
 */
bool rc_mpsc_validate(const struct rc_mpsc *q);

/*
 * Consumer, when a pop found nothing: announces that it is about to sleep (sleeping = 1)
 * followed by a full fence. Must be followed by rc_mpsc_sleep_cancel().
 */
void rc_mpsc_sleep_prepare(struct rc_mpsc *q);

/*
 * Consumer, right after rc_mpsc_sleep_prepare(): looks again for a published item. If one
 * arrived, clears the announcement and returns true: do not sleep, pop. Returns false if the
 * ring is still empty: the consumer may sleep now, and the next producer to push will see
 * rc_mpsc_wake_needed() == true and ring. (A producer that already cleared the flag before
 * the cancel still rings: the consumer then sees one spare doorbell, which is harmless.)
 */
bool rc_mpsc_sleep_cancel(struct rc_mpsc *q);

/*
 * Consumer, after waking for any reason: withdraws the announcement, so that producers do
 * not ring a consumer that is awake. Optional for correctness; saves doorbells.
 */
void rc_mpsc_sleep_end(struct rc_mpsc *q);

/*
 * Producer, after every successful rc_mpsc_push(): true if the consumer announced it may
 * sleep and this producer is the one that must wake it. True at most once per announcement
 * (an exchange takes the flag), so among racing producers exactly one rings.
 */
bool rc_mpsc_wake_needed(struct rc_mpsc *q);

#endif
