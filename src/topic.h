/*
 * Topic bookkeeping, sans I/O: a string-keyed hash table of topics (chained, growing by
 * doubling, entries embedded in their owners) and a bounded per-topic history of published
 * frames (by count, bytes and age; its ring grows with use) answering "what came after
 * seq N" or "gap". Each shard owns its own tables; nothing here is thread-safe. Time comes
 * in as now_ms.
 */
#ifndef RC_TOPIC_H
#define RC_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_TOPIC_BYTES_LIMIT 128

/* Embedded in the owner's topic record; the table links it and never allocates it. */
struct rc_topic_node {
	struct rc_topic_node *next; /* chain */
	uint64_t hash;
	uint16_t name_len;
	char name[RC_TOPIC_BYTES_LIMIT + 1]; /* NUL-terminated */
};

struct rc_topic_table {
	struct rc_topic_node **buckets;
	uint32_t mask;  /* buckets - 1, power of two minus one */
	uint32_t count; /* nodes linked */
};

/* The topic-name hash (also picks the owner shard: hash % shards): SipHash-2-4 under the
 * process's key. Any thread. */
uint64_t rc_topic_hash(const char *name, size_t len);
/* Sets the process's hash key (random at startup; all zero until then). Call before any
 * shard starts: the key must not change while a table holds hashes. */
void rc_topic_hash_key(const uint64_t key[2]);

/*
 * The epoch of the counter-th topic created by shard `shard` in a process whose random value
 * is key: distinct for every (shard, counter) under one key (a bijective mix), unrelated
 * across processes, never 0. A topic's numbering restarts only with a new epoch. Any thread.
 */
uint64_t rc_topic_epoch(uint64_t key, uint32_t shard, uint64_t counter);

/* Empty table with initial_buckets (power of two). 0 or -ENOMEM. */
int rc_topic_table_init(struct rc_topic_table *t, uint32_t initial_buckets);
/* Frees the bucket array; the nodes belong to their owners. */
void rc_topic_table_free(struct rc_topic_table *t);
/* Finds a topic; NULL if absent. */
struct rc_topic_node *rc_topic_find(const struct rc_topic_table *t, const char *name, size_t len);
/* Fills n's name and hash and links it (the name must be absent and ≤ the limit).
 * Grows the table when it gets full; returns 0 or -ENOMEM (n is then not linked). */
int rc_topic_insert(struct rc_topic_table *t, struct rc_topic_node *n, const char *name,
		    size_t len);
/* Unlinks n (it must be linked). */
void rc_topic_remove(struct rc_topic_table *t, struct rc_topic_node *n);
/* Checks chains and counts (tests, RC_DASSERT). */
bool rc_topic_table_validate(const struct rc_topic_table *t);

/* One remembered publish: its sequence number, when, its size and an opaque reference (a
 * frame). */
struct rc_history_item {
	uint64_t seq;
	uint64_t at_ms;
	void *ref;
	uint32_t bytes; /* what the caller counts it as (its frame's memory) */
};

#define RC_HISTORY_SLOTS_MIN 8 /* the ring's first allocation; it doubles up to max */

/*
 * A ring of the most recent publishes of one topic, oldest first, bounded by count (max) and,
 * through rc_history_trim, by bytes. The ring grows with use: no slots until the first push,
 * then RC_HISTORY_SLOTS_MIN, doubling while full up to max.
 */
struct rc_history {
	struct rc_history_item *items; /* cap slots; NULL until the first push */
	uint32_t cap;                  /* slots allocated, <= max */
	uint32_t max;                  /* count limit */
	uint32_t head;                 /* index of the oldest */
	uint32_t count;
	uint64_t bytes; /* sum of the held items' bytes */
};

/* Empty history keeping at most max items. No allocation until the first push. */
void rc_history_init(struct rc_history *h, uint32_t max);

/* Bytes the ring's slots take: what the caller charges for the ring itself. */
static inline size_t rc_history_slots_bytes(const struct rc_history *h)
{
	return (size_t)h->cap * sizeof(struct rc_history_item);
}

/* Bytes of slots the next rc_history_push would add by growing the ring (0 if it has room or
 * is at max), so a caller can charge them first or make room with rc_history_pop. */
size_t rc_history_growth_bytes(const struct rc_history *h);

/*
 * Appends (seq, now_ms, ref, bytes); seq must exceed the newest's. A full ring below max
 * grows (doubling); at max the oldest item is evicted and returned through *evicted (its ref
 * for the caller to release), else *evicted is NULL. With max 0 nothing is kept: *evicted is
 * ref. Returns 0 or -ENOMEM (the ring could not grow: nothing changed, the caller keeps ref).
 */
int rc_history_push(struct rc_history *h, uint64_t seq, uint64_t now_ms, void *ref,
		    uint32_t bytes, void **evicted);

/* Removes the oldest item into *out; false if empty. */
bool rc_history_pop(struct rc_history *h, struct rc_history_item *out);

/* Evicts oldest items while the history holds more than bytes_max bytes, calling
 * release(ref, ctx) for each; returns how many. */
uint32_t rc_history_trim(struct rc_history *h, uint64_t bytes_max,
			 void (*release)(void *ref, void *ctx), void *ctx);

/* Evicts items older than max_age_ms (0 = no age limit), calling release(ref, ctx) for each;
 * returns how many. */
uint32_t rc_history_expire(struct rc_history *h, uint64_t now_ms, uint64_t max_age_ms,
			   void (*release)(void *ref, void *ctx), void *ctx);

/*
 * What a client that last saw `since` missed. Returns the number of items with seq > since
 * and sets *first to the index (0 = oldest) of the first of them. Sets *gap when the history
 * no longer holds seq since+1 (some of what was missed is gone): the caller then reports
 * a gap from since+1 to the oldest held seq - 1.
 */
uint32_t rc_history_since(const struct rc_history *h, uint64_t since, uint32_t *first, bool *gap);

/* The i-th item, 0 = oldest; i < count. */
const struct rc_history_item *rc_history_at(const struct rc_history *h, uint32_t i);

/* Releases every item and frees the ring (the history is empty and unallocated after). */
void rc_history_free(struct rc_history *h, void (*release)(void *ref, void *ctx), void *ctx);

#endif
