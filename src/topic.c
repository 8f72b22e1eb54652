/*
 * Topic tables and per-topic history. The table is chained with embedded nodes so a topic
 * record lives in one allocation with its name; the history is a ring of references the
 * caller owns. Pure; the owning shard's thread.
 */
#include "topic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/siphash.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

/* Written once at startup before any shard runs, read-only afterwards. */
static uint64_t hash_key[2];

void rc_topic_hash_key(const uint64_t key[2])
{
	hash_key[0] = key[0];
	hash_key[1] = key[1];
}

uint64_t rc_topic_hash(const char *name, size_t len)
{
	/* SipHash keyed per process: names chosen by clients cannot be made to collide into one
	 * bucket (hash flooding) without knowing the key. */
	return SIPHASH_24(hash_key, (const uint8_t *)name, len);
}

uint64_t rc_topic_epoch(uint64_t key, uint32_t shard, uint64_t counter)
{
	/* splitmix64's finalizer is a bijection: distinct inputs under one key stay distinct. */
	uint64_t z = key + ((uint64_t)shard << 48 ^ counter) * 0x9e3779b97f4a7c15ull;

	RC_ASSERT(shard < (1u << 16));
	RC_ASSERT(counter < (1ull << 48));
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z ? z : 1;
}

int rc_topic_table_init(struct rc_topic_table *t, uint32_t initial_buckets)
{
	RC_ASSERT(rc_is_pow2(initial_buckets));
	t->buckets = calloc(initial_buckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	t->mask = initial_buckets - 1;
	t->count = 0;
	return 0;
}

void rc_topic_table_free(struct rc_topic_table *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->count = 0;
}

struct rc_topic_node *rc_topic_find(const struct rc_topic_table *t, const char *name, size_t len)
{
	if (len > RC_TOPIC_BYTES_LIMIT)
		return NULL;
	uint64_t h = rc_topic_hash(name, len);
	for (struct rc_topic_node *n = t->buckets[h & t->mask]; n; n = n->next)
		if (n->hash == h && n->name_len == len && memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

static int grow(struct rc_topic_table *t)
{
	uint32_t nb = (t->mask + 1) * 2;
	struct rc_topic_node **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct rc_topic_node *n = t->buckets[i];
		while (n) {
			struct rc_topic_node *next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
			n = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->mask = nb - 1;
	return 0;
}

int rc_topic_insert(struct rc_topic_table *t, struct rc_topic_node *n, const char *name,
		    size_t len)
{
	RC_ASSERT(len > 0 && len <= RC_TOPIC_BYTES_LIMIT);
	RC_DASSERT(rc_topic_find(t, name, len) == NULL);
	/* Load factor 1: chains stay short; a failed grow only makes them longer. */
	if (t->count > t->mask && t->mask < (1u << 30))
		(void)grow(t);
	memcpy(n->name, name, len);
	n->name[len] = '\0';
	n->name_len = (uint16_t)len;
	n->hash = rc_topic_hash(name, len);
	n->next = t->buckets[n->hash & t->mask];
	t->buckets[n->hash & t->mask] = n;
	t->count++;
	return 0;
}

void rc_topic_remove(struct rc_topic_table *t, struct rc_topic_node *n)
{
	struct rc_topic_node **pp = &t->buckets[n->hash & t->mask];
	while (*pp && *pp != n)
		pp = &(*pp)->next;
	RC_ASSERT(*pp == n);
	*pp = n->next;
	n->next = NULL;
	RC_ASSERT(t->count > 0);
	t->count--;
}

bool rc_topic_table_validate(const struct rc_topic_table *t)
{
	uint32_t seen = 0;
	for (uint32_t i = 0; i <= t->mask; i++)
		for (const struct rc_topic_node *n = t->buckets[i]; n; n = n->next) {
			if ((n->hash & t->mask) != i || n->hash != rc_topic_hash(n->name, n->name_len))
				return false;
			seen++;
		}
	return seen == t->count;
}

/* ---- history ------------------------------------------------------------------------------ */
void rc_history_init(struct rc_history *h, uint32_t max)
{
	memset(h, 0, sizeof(*h));
	h->max = max;
}

const struct rc_history_item *rc_history_at(const struct rc_history *h, uint32_t i)
{
	RC_ASSERT(i < h->count);
	return &h->items[(h->head + i) % h->cap];
}

/* The ring's next size: RC_HISTORY_SLOTS_MIN, then doubling, never past max. */
static uint32_t next_cap(const struct rc_history *h)
{
	if (h->count < h->cap || h->cap >= h->max)
		return h->cap;
	uint64_t n = h->cap ? (uint64_t)h->cap * 2 : RC_HISTORY_SLOTS_MIN;
	return (uint32_t)RC_MIN(n, (uint64_t)h->max);
}

size_t rc_history_growth_bytes(const struct rc_history *h)
{
	return (size_t)(next_cap(h) - h->cap) * sizeof(struct rc_history_item);
}

/* Grows a full ring to ncap slots, the oldest item moving to index 0. 0 or -ENOMEM. */
static int grow_ring(struct rc_history *h, uint32_t ncap)
{
	RC_ASSERT(ncap > h->cap);
	RC_ASSERT(h->count == h->cap);
	struct rc_history_item *items = malloc((size_t)ncap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (uint32_t i = 0; i < h->count; i++)
		items[i] = h->items[(h->head + i) % h->cap];
	free(h->items);
	h->items = items;
	h->head = 0;
	h->cap = ncap;
	return 0;
}

bool rc_history_pop(struct rc_history *h, struct rc_history_item *out)
{
	if (h->count == 0)
		return false;
	*out = h->items[h->head];
	h->head = (h->head + 1) % h->cap;
	h->count--;
	RC_ASSERT(h->bytes >= out->bytes);
	h->bytes -= out->bytes;
	return true;
}

int rc_history_push(struct rc_history *h, uint64_t seq, uint64_t now_ms, void *ref,
		    uint32_t bytes, void **evicted)
{
	struct rc_history_item old;
	*evicted = NULL;
	if (h->max == 0) {
		*evicted = ref; /* no history kept: the caller releases it at once */
		return 0;
	}
	uint32_t ncap = next_cap(h);
	if (ncap != h->cap && grow_ring(h, ncap) != 0)
		return -ENOMEM;
	if (h->count)
		RC_ASSERT(seq > rc_history_at(h, h->count - 1)->seq);
	if (h->count == h->cap && rc_history_pop(h, &old))
		*evicted = old.ref;
	struct rc_history_item *it = &h->items[(h->head + h->count) % h->cap];
	it->seq = seq;
	it->at_ms = now_ms;
	it->ref = ref;
	it->bytes = bytes;
	h->count++;
	h->bytes += bytes;
	RC_DASSERT(h->count <= h->cap);
	return 0;
}

uint32_t rc_history_trim(struct rc_history *h, uint64_t bytes_max,
			 void (*release)(void *ref, void *ctx), void *ctx)
{
	struct rc_history_item old;
	uint32_t n = 0;
	while (h->bytes > bytes_max && rc_history_pop(h, &old)) {
		release(old.ref, ctx);
		n++;
	}
	return n;
}

uint32_t rc_history_expire(struct rc_history *h, uint64_t now_ms, uint64_t max_age_ms,
			   void (*release)(void *ref, void *ctx), void *ctx)
{
	struct rc_history_item old;
	uint32_t n = 0;
	if (!max_age_ms)
		return 0;
	while (h->count && now_ms - h->items[h->head].at_ms > max_age_ms) {
		(void)rc_history_pop(h, &old);
		release(old.ref, ctx);
		n++;
	}
	return n;
}

uint32_t rc_history_since(const struct rc_history *h, uint64_t since, uint32_t *first, bool *gap)
{
	*first = 0;
	*gap = false;
	if (h->count == 0)
		return 0;
	uint64_t oldest = rc_history_at(h, 0)->seq;
	uint64_t newest = rc_history_at(h, h->count - 1)->seq;
	if (since >= newest)
		return 0;
	if (since + 1 < oldest) {
		*gap = true;
		return h->count;
	}
	/* Sequence numbers are consecutive within a topic's history. */
	*first = (uint32_t)(since + 1 - oldest);
	RC_DASSERT(rc_history_at(h, *first)->seq == since + 1);
	return h->count - *first;
}

void rc_history_free(struct rc_history *h, void (*release)(void *ref, void *ctx), void *ctx)
{
	for (uint32_t i = 0; i < h->count; i++)
		release(h->items[(h->head + i) % h->cap].ref, ctx);
	free(h->items);
	uint32_t max = h->max;
	memset(h, 0, sizeof(*h));
	h->max = max;
}
