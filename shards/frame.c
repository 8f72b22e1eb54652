/*
 * Frames: allocation on the heap or in the shard's arena slice, references, and the way
 * home of an arena frame whose last reference dropped on another shard (through the owner's
 * inbox: only the owner frees in its slice). Shard threads; unref also at shutdown.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "frame.h"
#include "outbox.h"

struct rc_frame *rc_frame_alloc(uint32_t len)
{
	struct rc_frame *f = malloc(sizeof(*f) + len);
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->refs = 1;
	f->len = len;
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
	} else if (!(f = rc_frame_alloc(len))) {
		return NULL;
	}
	f->shared = 1;
	f->owner = (uint8_t)s->index;
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
	if (f->deflated) {
		rc_frame_unref(f->deflated);
		f->deflated = NULL;
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
	if (--f->refs == 0)
		free(f);
}
