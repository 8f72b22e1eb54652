/*
 * Cross-shard posting: the MPSC inbox push, the doorbell, and the per-target outboxes that
 * hold items while a target's inbox is full, so nothing blocks and nothing is dropped
 * silently. Per (producer, consumer) pair items arrive in the order they were posted: once
 * one item waits, the later ones wait behind it. Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "mem.h"
#include "outbox.h"
#include "uring.h"

int rc_outbox_init(struct rc_shard *s)
{
	RC_ASSERT(s->outbox == NULL);
	s->outbox = calloc((size_t)s->app->shards_count, sizeof(*s->outbox));
	return s->outbox ? 0 : -ENOMEM;
}

void rc_outbox_free(struct rc_shard *s, void (*discard)(void *item))
{
	for (int i = 0; s->outbox && i < s->app->shards_count; i++) {
		struct rc_outbox *ob = &s->outbox[i];
		for (uint32_t k = 0; k < ob->count; k++)
			discard(ob->items[(ob->head + k) % ob->cap]);
		rc_mem_release(s->app, RC_BUDGET_outbox, ob->cap * sizeof(*ob->items));
		free(ob->items);
	}
	free(s->outbox);
	s->outbox = NULL;
}

/* Doubles ob's ring, keeping its items in order, charged to the budget (always: the items
 * are already accepted and must not be lost). 0 or -ENOMEM (ob unchanged). */
static int grow(struct rc_app *app, struct rc_outbox *ob)
{
	uint32_t ncap = ob->cap ? ob->cap * 2 : 64;
	void **items = malloc(ncap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	rc_mem_charge(app, RC_BUDGET_outbox, (ncap - ob->cap) * sizeof(*items));
	for (uint32_t i = 0; i < ob->count; i++)
		items[i] = ob->items[(ob->head + i) % ob->cap];
	free(ob->items);
	ob->items = items;
	ob->head = 0;
	ob->cap = ncap;
	return 0;
}

int rc_outbox_post(struct rc_shard *s, struct rc_shard *to, void *item)
{
	struct rc_outbox *ob = &s->outbox[to->index];
	RC_ASSERT(to != s);
	if (ob->count == 0 && rc_mpsc_push(&to->inbox, item)) {
		if (rc_mpsc_wake_needed(&to->inbox))
			rc_uring_msg_ring(s, to);
		return 0;
	}
	if (ob->count == ob->cap && grow(s->app, ob) != 0) {
		/* The only loss path: no memory to wait in. Counted and logged. */
		s->stats.alloc_failures++;
		rc_log(s->app, RC_LOG_ERROR, "out of memory: cross-shard item dropped");
		return -ENOMEM;
	}
	ob->items[(ob->head + ob->count) % ob->cap] = item;
	ob->count++;
	s->stats.outbox_items++;
	s->stats.mpsc_full++;
	return 0;
}

void rc_outbox_retry(struct rc_shard *s)
{
	for (int i = 0; i < s->app->shards_count; i++) {
		struct rc_outbox *ob = &s->outbox[i];
		struct rc_shard *to = &s->app->shards[i];
		bool pushed = false;
		while (ob->count && rc_mpsc_push(&to->inbox, ob->items[ob->head])) {
			ob->head = (ob->head + 1) % ob->cap;
			ob->count--;
			s->stats.outbox_items--;
			pushed = true;
		}
		if (pushed && rc_mpsc_wake_needed(&to->inbox))
			rc_uring_msg_ring(s, to);
	}
}

bool rc_outbox_waiting(const struct rc_shard *s)
{
	for (int i = 0; i < s->app->shards_count; i++)
		if (s->outbox[i].count)
			return true;
	return false;
}
