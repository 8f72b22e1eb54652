/*
 * Frames: allocation on the heap or in the shard's arena slice, references, and the way
 * home of an arena frame whose last reference dropped on another shard (through the owner's
 * inbox: only the owner frees in its slice). Every frame is charged to the memory budget
 * while it lives (send_queue for unicast frames, broadcast for shared ones), released where
 * its last reference drops. Shard threads; unref also at shutdown (rc_current_app set).
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "frame.h"
#include "mem.h"
#include "outbox.h"

/* What f costs the budget: its header, its bytes and the topic name stored behind them. The
 * same before and after a builder shortens len to put the topic behind the frame. */
static size_t footprint(const struct rc_frame *f)
{
	return sizeof(*f) + f->len + (f->topic ? f->topic_len + 1u : 0u);
}

static enum rc_budget_category category(const struct rc_frame *f)
{
	return f->shared ? RC_BUDGET_broadcast : RC_BUDGET_send_queue;
}

static struct rc_frame *heap_alloc(uint32_t len)
{
	struct rc_frame *f = malloc(sizeof(*f) + len);
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->refs = 1;
	f->len = len;
	return f;
}

/* Frames are charged unconditionally: a close or a pong must get through; what the budget
 * cannot hold is refused upstream (messages in, new topics) or shed at the hard mark. Inline:
 * every unicast frame is booked and unbooked once, on this thread's books. */
static inline void book(const struct rc_frame *f)
{
	rc_mem_charge(rc_mem_app_here(), category(f), footprint(f));
}

static inline void unbook(const struct rc_frame *f)
{
	rc_mem_release(rc_mem_app_here(), category(f), footprint(f));
}

struct rc_frame *rc_frame_alloc(uint32_t len)
{
	struct rc_frame *f = heap_alloc(len);
	if (f)
		book(f);
	return f;
}

struct rc_frame *rc_frame_alloc_shared(struct rc_shard *s, uint32_t len)
{
	uint8_t cls = 0;
	struct rc_frame *f = rc_arena_alloc(s, sizeof(*f) + len, &cls);
	if (f) {
		memset(f, 0, sizeof(*f));
		f->refs = 1;
		f->len = len;
		f->arena_class = (uint8_t)(cls + 1);
	} else if (!(f = heap_alloc(len))) {
		return NULL;
	}
	f->shared = 1;
	f->owner = (uint8_t)s->index;
	book(f);
	return f;
}

void rc_frame_ref_n(struct rc_frame *f, uint32_t n)
{
	if (f->shared)
		__atomic_fetch_add(&f->refs, n, __ATOMIC_RELAXED);
	else
		f->refs += n;
}

void rc_frame_returned(struct rc_shard *s, struct rc_frame *f)
{
	RC_ASSERT(f->arena_class > 0);
	RC_ASSERT(f->owner == s->index);
	rc_arena_release(s, f, (uint8_t)(f->arena_class - 1));
}

/* The last reference of f dropped: free it, or give an arena frame back to its owner. */
static void dispose(struct rc_frame *f)
{
	struct rc_shard *s = rc_current_shard;
	unbook(f);
	if (f->deflated) {
		rc_frame_unref(f->deflated);
		f->deflated = NULL;
	}
	/* The last reference: the acq_rel drop ordered the variant's publication before us. */
	if (f->sse) {
		rc_frame_unref(f->sse);
		f->sse = NULL;
	}
	if (!f->arena_class) {
		free(f);
		return;
	}
	if (!s)
		return; /* outside shard threads (shutdown) the arena is unmapped whole */
	if (s->index == f->owner) {
		rc_frame_returned(s, f);
		return;
	}
	/* Without memory to wait in, the chunk stays lost until the arena is unmapped. */
	(void)rc_outbox_post(s, &s->app->shards[f->owner], rc_item(f, RC_ITEM_RETURN));
}

void rc_frame_unref(struct rc_frame *f)
{
	if (f->shared) {
		/* acq_rel: the last holder must see every other holder's reads finished. */
		uint32_t old = __atomic_fetch_sub(&f->refs, 1, __ATOMIC_ACQ_REL);
		RC_ASSERT(old > 0);
		if (old == 1)
			dispose(f);
		return;
	}
	RC_ASSERT(f->refs > 0);
	if (--f->refs == 0) {
		unbook(f);
		free(f);
	}
}
