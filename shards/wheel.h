/*
 * The hashed timing wheel (wheel.c): one bucket per tick modulo the wheel size, timers
 * embedded in their owners, O(1) arm and disarm. A leaf: it knows nothing of shards or
 * connections, and time comes in as ticks. Each shard owns one; shard thread only.
 */
#ifndef RC_WHEEL_H
#define RC_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

/* Embedded in its owner (a connection), recovered with rc_container_of. */
struct rc_timer {
	struct rc_timer *next;
	struct rc_timer *prev;
	uint32_t expiry_tick; /* absolute tick; valid while linked */
	uint32_t linked;      /* 1 while in a bucket */
};

struct rc_wheel {
	struct rc_timer *buckets; /* sentinels, one per slot; circular lists */
	uint32_t slots;		  /* power of two */
	uint32_t now_tick;	  /* last tick processed */
};

/* Allocates slots (a power of two) empty buckets starting at now_tick. 0 or -ENOMEM. */
int rc_wheel_init(struct rc_wheel *w, uint32_t slots, uint32_t now_tick);

/* Frees the buckets; the timers belong to their owners and must be disarmed or abandoned. */
void rc_wheel_free(struct rc_wheel *w);

/* (Re)arms t (borrowed, linked until it fires or is disarmed) to fire at absolute tick
 * expiry, clamped to now + 1. */
void rc_wheel_arm(struct rc_wheel *w, struct rc_timer *t, uint32_t expiry);

/* Unlinks t if armed; harmless otherwise. */
void rc_wheel_disarm(struct rc_timer *t);

/* Advances to tick now, calling fire(t, ctx) for every expired timer (already disarmed; fire
 * may re-arm it). After a long stall at most one revolution of buckets is visited. */
void rc_wheel_advance(struct rc_wheel *w, uint32_t now, void (*fire)(struct rc_timer *, void *),
		      void *ctx);

/* Checks the wheel's invariants: links, and each timer in its expiry's bucket (tests,
 * RC_DASSERT). */
bool rc_wheel_validate(const struct rc_wheel *w);

#endif
