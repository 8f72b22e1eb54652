/*
 * A hashed timing wheel: one bucket per tick modulo the wheel size, timers embedded in their
 * owners, O(1) arm and disarm. A timer further out than one revolution stays in its bucket
 * until its absolute tick comes round. One per shard, driven by the loop's clock reads
 * (no timer syscalls). Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "wheel.h"

int rc_wheel_init(struct rc_wheel *w, uint32_t slots, uint32_t now_tick)
{
	RC_ASSERT(rc_is_pow2(slots));
	w->buckets = calloc(slots, sizeof(*w->buckets));
	if (!w->buckets)
		return -ENOMEM;
	for (uint32_t i = 0; i < slots; i++) {
		w->buckets[i].next = &w->buckets[i];
		w->buckets[i].prev = &w->buckets[i];
	}
	w->slots = slots;
	w->now_tick = now_tick;
	return 0;
}

void rc_wheel_free(struct rc_wheel *w)
{
	free(w->buckets);
	w->buckets = NULL;
}

void rc_wheel_disarm(struct rc_timer *t)
{
	if (!t->linked)
		return;
	RC_DASSERT(t->next->prev == t && t->prev->next == t);
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
	t->linked = 0;
}

void rc_wheel_arm(struct rc_wheel *w, struct rc_timer *t, uint32_t expiry)
{
	rc_wheel_disarm(t);
	/* Never in the past: the bucket being processed must not receive new entries. */
	if ((int32_t)(expiry - w->now_tick) <= 0)
		expiry = w->now_tick + 1;
	struct rc_timer *b = &w->buckets[expiry & (w->slots - 1)];
	t->expiry_tick = expiry;
	t->next = b->next;
	t->prev = b;
	b->next->prev = t;
	b->next = t;
	t->linked = 1;
	RC_DASSERT(t->next->prev == t);
}

void rc_wheel_advance(struct rc_wheel *w, uint32_t now, void (*fire)(struct rc_timer *, void *),
		      void *ctx)
{
	/* Bound the work after a long stall: one revolution visits every bucket once. */
	uint32_t steps = now - w->now_tick;
	if ((int32_t)steps <= 0)
		return;
	if (steps > w->slots)
		w->now_tick = now - w->slots;
	while (w->now_tick != now) {
		w->now_tick++;
		struct rc_timer *b = &w->buckets[w->now_tick & (w->slots - 1)];
		struct rc_timer *t = b->next;
		while (t != b) {
			struct rc_timer *next = t->next;
			if ((int32_t)(t->expiry_tick - w->now_tick) <= 0) {
				rc_wheel_disarm(t);
				/* fire may re-arm t (always into a later bucket) or disarm next's
				 * owner; restart from the head if next was unlinked. */
				fire(t, ctx);
				if (!next->linked && next != b)
					next = b->next;
			}
			t = next;
		}
	}
}

bool rc_wheel_validate(const struct rc_wheel *w)
{
	for (uint32_t i = 0; i < w->slots; i++) {
		const struct rc_timer *b = &w->buckets[i];
		for (const struct rc_timer *t = b->next; t != b; t = t->next) {
			if (t->next->prev != t || t->prev->next != t || !t->linked)
				return false;
			if ((t->expiry_tick & (w->slots - 1)) != i)
				return false;
		}
	}
	return true;
}
