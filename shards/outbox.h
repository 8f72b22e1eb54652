/*
 * Cross-shard posting from a shard thread (outbox.c): an item goes into the target shard's
 * MPSC inbox, ringing its doorbell if it sleeps; when that ring is full the item waits in
 * this shard's outbox for the target (FIFO per target) and is retried every turn, so a post
 * never blocks and never drops. The outboxes' slots are charged to the memory budget
 * (category outbox) and their items counted in stats.outbox_items, which publishers read to
 * refuse work past outbox_items_max (rc_pubsub_busy). Items are pointers whose low bits
 * say what they carry (rc_item_*); the consumer (pubsub.c) decodes them. Shard thread only.
 */
#ifndef RC_OUTBOX_H
#define RC_OUTBOX_H

#include "runtime.h"

/* Items posted to a shard whose inbox was full, kept in order for the next turn. */
struct rc_outbox {
	void **items;
	uint32_t head;
	uint32_t count;
	uint32_t cap;
};

/* What an inbox item points to, in its two low bits (the pointees are 8-byte aligned). */
enum rc_item_kind {
	RC_ITEM_FRAME = 0,  /* a broadcast frame reference for local subscribers */
	RC_ITEM_XMSG = 1,   /* a struct rc_xmsg (pubsub.h) */
	RC_ITEM_RETURN = 2, /* an arena frame going home to its owner */
};

#define RC_ITEM_KIND_MASK 3ul

static inline void *rc_item(void *p, enum rc_item_kind kind)
{
	RC_DASSERT(((uintptr_t)p & RC_ITEM_KIND_MASK) == 0);
	return (void *)((uintptr_t)p | kind);
}
static inline enum rc_item_kind rc_item_kind(const void *item)
{
	return (enum rc_item_kind)((uintptr_t)item & RC_ITEM_KIND_MASK);
}
static inline void *rc_item_ptr(void *item)
{
	return (void *)((uintptr_t)item & ~RC_ITEM_KIND_MASK);
}

/* Allocates s's outboxes, one per shard. 0 or -ENOMEM. Main thread, before s starts. */
int rc_outbox_init(struct rc_shard *s);

/* Hands every item still waiting to discard (which takes ownership), then frees the
 * outboxes. After s's thread stopped. */
void rc_outbox_free(struct rc_shard *s, void (*discard)(void *item));

/*
 * Posts item (ownership passes to the target) from s to shard to (not s). 0, or -ENOMEM
 * when it had to wait and there was no memory to wait in: counted and logged, the item is
 * still the caller's. Shard s's thread.
 */
int rc_outbox_post(struct rc_shard *s, struct rc_shard *to, void *item);

/* Pushes what waits in s's outboxes into the target inboxes, in order. Once per turn. */
void rc_outbox_retry(struct rc_shard *s);

/* Items waiting in s's outbox towards shard to. Shard s's thread. */
static inline uint32_t rc_outbox_count(const struct rc_shard *s, const struct rc_shard *to)
{
	return s->outbox[to->index].count;
}

/* True if an item still waits for a full inbox (the loop must not sleep on it). */
bool rc_outbox_waiting(const struct rc_shard *s);

#endif
