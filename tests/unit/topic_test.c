/*
 * src/topic: the chained topic table (insert, find, remove, growth, validate) and the bounded
 * per-topic history (push and evict by count, grow by doubling, trim by bytes, expire by age,
 * since() with and without a gap, exact indices across the ring's wrap). Invalid uses that
 * are programmer errors abort (RC_ASSERT); corrupted tables fail validate().
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* An owner record as the runtime embeds it: something before the node, something after. */
struct owner {
	uint64_t before;
	struct rc_topic_node node;
	int id;
};

static struct owner *owners(size_t n)
{
	struct owner *o = calloc(n, sizeof(*o));
	cr_assert(o != NULL);
	for (size_t i = 0; i < n; i++)
		o[i].id = (int)i;
	return o;
}

static size_t name_of(char *buf, size_t cap, size_t i)
{
	int n = snprintf(buf, cap, "room/%zu", i);
	cr_assert(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

static struct owner *owner_of_node(struct rc_topic_node *n)
{
	return n ? (struct owner *)((char *)n - offsetof(struct owner, node)) : NULL;
}

/* A release callback that records which refs were released, in order. */
struct released {
	uintptr_t refs[4096];
	size_t count;
};

static void release(void *ref, void *ctx)
{
	struct released *r = ctx;
	cr_assert(r->count < sizeof(r->refs) / sizeof(r->refs[0]));
	r->refs[r->count++] = (uintptr_t)ref;
}

#define REF(seq) ((void *)(uintptr_t)(0x1000 + (seq)))

/* Pushes seq first..last at now_ms = at(seq); returns how many evictions happened. */
static size_t push_range(struct rc_history *h, uint64_t first, uint64_t last,
			 uint64_t (*at)(uint64_t))
{
	size_t evictions = 0;
	for (uint64_t s = first; s <= last; s++) {
		void *ev = (void *)1;
		cr_assert(eq(int, rc_history_push(h, s, at ? at(s) : s, REF(s), 1, &ev), 0));
		if (ev) {
			evictions++;
			cr_assert(eq(ptr, ev, REF(s - h->max)), "push %llu evicted %p",
				  (unsigned long long)s, ev);
		}
	}
	return evictions;
}

static uint64_t ten_ms_apart(uint64_t seq)
{
	return seq * 10;
}

/* ---- table: normal cases --------------------------------------------------------------------- */

Test(topic_table, empty_table_finds_nothing_and_validates)
{
	struct rc_topic_table t;
	cr_assert(eq(int, rc_topic_table_init(&t, 16), 0));
	cr_assert(eq(u32, t.count, 0));
	cr_assert(eq(u32, t.mask, 15));
	cr_assert(eq(ptr, rc_topic_find(&t, "a", 1), NULL));
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	cr_assert(eq(ptr, t.buckets, NULL));
}

Test(topic_table, insert_fills_the_node_and_find_returns_it)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	rc_topic_table_init(&t, 4);
	cr_assert(eq(int, rc_topic_insert(&t, &o->node, "chat:lobby", 10), 0));
	cr_assert(eq(u32, t.count, 1));
	cr_assert(eq(u16, o->node.name_len, 10));
	cr_assert(eq(str, o->node.name, "chat:lobby"));
	cr_assert(eq(u64, o->node.hash, rc_topic_hash("chat:lobby", 10)));
	struct rc_topic_node *n = rc_topic_find(&t, "chat:lobby", 10);
	cr_assert(eq(ptr, n, &o->node));
	cr_assert(eq(int, owner_of_node(n)->id, 0));
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, name_is_copied_not_borrowed)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	char name[] = "orders/42";
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o->node, name, strlen(name));
	memset(name, 'x', strlen(name));
	cr_assert(eq(ptr, rc_topic_find(&t, "orders/42", 9), &o->node));
	cr_assert(eq(str, o->node.name, "orders/42"));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, ten_thousand_inserts_grow_and_stay_findable)
{
	enum { N = 10000 };
	struct rc_topic_table t;
	struct owner *o = owners(N);
	char name[64];
	rc_topic_table_init(&t, 2);
	uint32_t grows = 0, last_mask = t.mask;
	for (size_t i = 0; i < N; i++) {
		size_t len = name_of(name, sizeof(name), i);
		cr_assert(eq(int, rc_topic_insert(&t, &o[i].node, name, len), 0));
		if (t.mask != last_mask) {
			cr_assert(eq(u32, t.mask, last_mask * 2 + 1), "growth doubles");
			grows++;
			last_mask = t.mask;
			cr_assert(rc_topic_table_validate(&t), "after growth to %u", t.mask + 1);
		}
	}
	cr_assert(eq(u32, t.count, N));
	cr_assert(ge(u32, t.mask + 1, N / 2), "load factor kept near 1: %u buckets", t.mask + 1);
	cr_assert(ge(u32, grows, 12));
	cr_assert(rc_topic_table_validate(&t));
	for (size_t i = 0; i < N; i++) {
		size_t len = name_of(name, sizeof(name), i);
		struct rc_topic_node *n = rc_topic_find(&t, name, len);
		cr_assert(eq(ptr, n, &o[i].node), "topic %zu", i);
		cr_assert(eq(int, owner_of_node(n)->id, (int)i));
	}
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, remove_half_then_all_then_reinsert)
{
	enum { N = 3000 };
	struct rc_topic_table t;
	struct owner *o = owners(N);
	char name[64];
	rc_topic_table_init(&t, 8);
	for (size_t i = 0; i < N; i++)
		rc_topic_insert(&t, &o[i].node, name, name_of(name, sizeof(name), i));
	for (size_t i = 0; i < N; i += 2)
		rc_topic_remove(&t, &o[i].node);
	cr_assert(eq(u32, t.count, N / 2));
	cr_assert(rc_topic_table_validate(&t));
	for (size_t i = 0; i < N; i++) {
		size_t len = name_of(name, sizeof(name), i);
		cr_assert(eq(ptr, rc_topic_find(&t, name, len), i % 2 ? &o[i].node : NULL),
			  "topic %zu", i);
	}
	for (size_t i = 1; i < N; i += 2)
		rc_topic_remove(&t, &o[i].node);
	cr_assert(eq(u32, t.count, 0));
	cr_assert(rc_topic_table_validate(&t));
	for (size_t i = 0; i < N; i++) /* nodes are reusable after removal */
		rc_topic_insert(&t, &o[i].node, name, name_of(name, sizeof(name), i));
	cr_assert(eq(u32, t.count, N));
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, remove_from_the_middle_of_a_chain)
{
	/* One bucket and no growth until count > mask: every node shares a chain at first. */
	struct rc_topic_table t;
	struct owner *o = owners(3);
	rc_topic_table_init(&t, 1);
	rc_topic_insert(&t, &o[0].node, "a", 1);
	rc_topic_insert(&t, &o[1].node, "b", 1);
	rc_topic_insert(&t, &o[2].node, "c", 1);
	rc_topic_remove(&t, &o[1].node);
	cr_assert(eq(ptr, rc_topic_find(&t, "a", 1), &o[0].node));
	cr_assert(eq(ptr, rc_topic_find(&t, "b", 1), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, "c", 1), &o[2].node));
	cr_assert(eq(ptr, o[1].node.next, NULL), "a removed node is unlinked");
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, longest_name_works)
{
	struct rc_topic_table t;
	struct owner *o = owners(2);
	char a[RC_TOPIC_BYTES_LIMIT], b[RC_TOPIC_BYTES_LIMIT];
	memset(a, 'a', sizeof(a));
	memcpy(b, a, sizeof(b));
	b[RC_TOPIC_BYTES_LIMIT - 1] = 'b'; /* differs only in its last byte */
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o[0].node, a, sizeof(a));
	rc_topic_insert(&t, &o[1].node, b, sizeof(b));
	cr_assert(eq(ptr, rc_topic_find(&t, a, sizeof(a)), &o[0].node));
	cr_assert(eq(ptr, rc_topic_find(&t, b, sizeof(b)), &o[1].node));
	cr_assert(eq(u16, o[0].node.name_len, RC_TOPIC_BYTES_LIMIT));
	cr_assert(eq(int, o[0].node.name[RC_TOPIC_BYTES_LIMIT], '\0'));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, hash_is_deterministic_and_spreads_over_shards)
{
	/* The owner shard is hash % shards: similar names must not all land on one shard. */
	char name[64];
	size_t per_shard[2] = {0}, per_4[4] = {0};
	for (size_t i = 0; i < 1000; i++) {
		size_t len = name_of(name, sizeof(name), i);
		uint64_t h = rc_topic_hash(name, len);
		cr_assert(eq(u64, h, rc_topic_hash(name, len)));
		per_shard[h % 2]++;
		per_4[h % 4]++;
	}
	cr_assert(gt(sz, per_shard[0], 400));
	cr_assert(gt(sz, per_shard[1], 400));
	for (int i = 0; i < 4; i++)
		cr_assert(gt(sz, per_4[i], 180), "shard %d of 4 got %zu of 1000", i, per_4[i]);
	cr_assert(ne(u64, rc_topic_hash("a", 1), rc_topic_hash("b", 1)));
	cr_assert(ne(u64, rc_topic_hash("ab", 2), rc_topic_hash("ba", 2)));
}

/* ---- table: edge and invalid cases ----------------------------------------------------------- */

Test(topic_table, prefix_or_extension_is_another_topic)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o->node, "news", 4);
	cr_assert(eq(ptr, rc_topic_find(&t, "new", 3), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, "newsy", 5), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, "News", 4), NULL), "names are case-sensitive");
	cr_assert(eq(ptr, rc_topic_find(&t, "newsy", 4), &o->node), "only len bytes count");
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, embedded_nul_is_part_of_the_name)
{
	/* The table is byte-keyed (validation is the envelope's job): "a\0b" is not "a". */
	struct rc_topic_table t;
	struct owner *o = owners(2);
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o[0].node, "a\0b", 3);
	rc_topic_insert(&t, &o[1].node, "a", 1);
	cr_assert(eq(ptr, rc_topic_find(&t, "a\0b", 3), &o[0].node));
	cr_assert(eq(ptr, rc_topic_find(&t, "a", 1), &o[1].node));
	cr_assert(eq(ptr, rc_topic_find(&t, "a\0c", 3), NULL));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, find_over_the_limit_or_empty_is_null)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	char longer[RC_TOPIC_BYTES_LIMIT + 8];
	memset(longer, 'x', sizeof(longer));
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o->node, longer, RC_TOPIC_BYTES_LIMIT);
	cr_assert(eq(ptr, rc_topic_find(&t, longer, RC_TOPIC_BYTES_LIMIT + 1), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, longer, sizeof(longer)), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, longer, SIZE_MAX), NULL));
	cr_assert(eq(ptr, rc_topic_find(&t, "", 0), NULL));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, find_after_remove_of_last_node_in_bucket)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o->node, "solo", 4);
	rc_topic_remove(&t, &o->node);
	cr_assert(eq(ptr, rc_topic_find(&t, "solo", 4), NULL));
	cr_assert(eq(ptr, t.buckets[o->node.hash & t.mask], NULL));
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, one_bucket_table_grows)
{
	struct rc_topic_table t;
	struct owner *o = owners(64);
	char name[32];
	rc_topic_table_init(&t, 1);
	cr_assert(eq(u32, t.mask, 0));
	for (size_t i = 0; i < 64; i++) {
		rc_topic_insert(&t, &o[i].node, name, name_of(name, sizeof(name), i));
		cr_assert(rc_topic_table_validate(&t), "after insert %zu", i);
	}
	cr_assert(ge(u32, t.mask, 31));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, validate_detects_a_node_in_the_wrong_bucket)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	rc_topic_table_init(&t, 8);
	rc_topic_insert(&t, &o->node, "x", 1);
	uint32_t b = (uint32_t)(o->node.hash & t.mask);
	t.buckets[b] = NULL;
	t.buckets[(b + 1) & t.mask] = &o->node;
	cr_assert(not(rc_topic_table_validate(&t)));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, validate_detects_a_wrong_count)
{
	struct rc_topic_table t;
	struct owner *o = owners(2);
	rc_topic_table_init(&t, 8);
	rc_topic_insert(&t, &o[0].node, "x", 1);
	rc_topic_insert(&t, &o[1].node, "y", 1);
	t.count = 3;
	cr_assert(not(rc_topic_table_validate(&t)));
	t.count = 1;
	cr_assert(not(rc_topic_table_validate(&t)));
	t.count = 2;
	cr_assert(rc_topic_table_validate(&t));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, validate_detects_a_stale_hash)
{
	struct rc_topic_table t;
	struct owner *o = owners(1);
	rc_topic_table_init(&t, 1);
	rc_topic_insert(&t, &o->node, "x", 1);
	o->node.name[0] = 'y'; /* the stored hash no longer matches the name */
	cr_assert(not(rc_topic_table_validate(&t)));
	rc_topic_table_free(&t);
	free(o);
}

Test(topic_table, init_with_non_power_of_two_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	rc_topic_table_init(&t, 12);
}

Test(topic_table, init_with_zero_buckets_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	rc_topic_table_init(&t, 0);
}

Test(topic_table, insert_of_empty_name_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	static struct owner o;
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o.node, "", 0);
}

Test(topic_table, insert_over_the_limit_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	static struct owner o;
	static char name[RC_TOPIC_BYTES_LIMIT + 1];
	memset(name, 'n', sizeof(name));
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &o.node, name, sizeof(name));
}

Test(topic_table, remove_of_a_node_never_inserted_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	static struct owner a, b;
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &a.node, "a", 1);
	b.node.hash = a.node.hash; /* even in the same bucket */
	rc_topic_remove(&t, &b.node);
}

Test(topic_table, double_remove_aborts, .signal = SIGABRT)
{
	struct rc_topic_table t;
	static struct owner a;
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &a.node, "a", 1);
	rc_topic_remove(&t, &a.node);
	rc_topic_remove(&t, &a.node);
}

#if defined(RC_DEBUG) && RC_DEBUG
Test(topic_table, duplicate_insert_aborts_in_debug_builds, .signal = SIGABRT)
{
	struct rc_topic_table t;
	static struct owner a, b;
	rc_topic_table_init(&t, 4);
	rc_topic_insert(&t, &a.node, "dup", 3);
	rc_topic_insert(&t, &b.node, "dup", 3);
}
#endif

/* ---- history: normal cases ------------------------------------------------------------------ */

Test(history, init_allocates_nothing_and_holds_nothing)
{
	struct rc_history h;
	uint32_t first = 99;
	bool gap = true;
	rc_history_init(&h, 8);
	cr_assert(eq(ptr, h.items, NULL));
	cr_assert(eq(u32, h.count, 0));
	cr_assert(eq(u32, h.cap, 0));
	cr_assert(eq(u32, h.max, 8));
	cr_assert(eq(sz, rc_history_slots_bytes(&h), 0));
	cr_assert(eq(u32, rc_history_since(&h, 0, &first, &gap), 0));
	cr_assert(eq(u32, first, 0));
	cr_assert(not(gap));
	rc_history_free(&h, release, NULL);
}

Test(history, push_keeps_order_seq_time_and_ref)
{
	struct rc_history h;
	rc_history_init(&h, 8);
	cr_assert(eq(sz, push_range(&h, 1, 5, ten_ms_apart), 0));
	cr_assert(ne(ptr, h.items, NULL));
	cr_assert(eq(u32, h.count, 5));
	for (uint32_t i = 0; i < 5; i++) {
		const struct rc_history_item *it = rc_history_at(&h, i);
		cr_assert(eq(u64, it->seq, i + 1));
		cr_assert(eq(u64, it->at_ms, (i + 1) * 10));
		cr_assert(eq(ptr, it->ref, REF(i + 1)));
	}
	struct released r = {.count = 0};
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 5));
}

Test(history, full_ring_evicts_the_oldest_in_order_across_wraps)
{
	struct rc_history h;
	rc_history_init(&h, 7);
	cr_assert(eq(sz, push_range(&h, 1, 1000, NULL), 1000 - 7)); /* checks each evicted ref */
	cr_assert(eq(u32, h.count, 7));
	for (uint32_t i = 0; i < 7; i++)
		cr_assert(eq(u64, rc_history_at(&h, i)->seq, 994 + i));
	struct released r = {.count = 0};
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 7));
	for (size_t i = 0; i < 7; i++)
		cr_assert(eq(ptr, (void *)r.refs[i], REF(994 + i)), "free releases oldest first");
	cr_assert(eq(ptr, h.items, NULL));
	cr_assert(eq(u32, h.count, 0));
}

Test(history, since_inside_the_window_gives_exact_indices)
{
	struct rc_history h;
	rc_history_init(&h, 10);
	push_range(&h, 1, 25, NULL); /* holds 16..25, head has wrapped */
	for (uint64_t since = 15; since < 25; since++) {
		uint32_t first = 99;
		bool gap = true;
		uint32_t n = rc_history_since(&h, since, &first, &gap);
		cr_assert(not(gap), "since %llu", (unsigned long long)since);
		cr_assert(eq(u32, n, (uint32_t)(25 - since)));
		cr_assert(eq(u32, first, (uint32_t)(since - 15)));
		cr_assert(eq(u64, rc_history_at(&h, first)->seq, since + 1));
		cr_assert(eq(u64, rc_history_at(&h, first + n - 1)->seq, 25));
	}
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, since_just_before_the_oldest_is_not_a_gap)
{
	struct rc_history h;
	uint32_t first = 99;
	bool gap = true;
	rc_history_init(&h, 4);
	push_range(&h, 1, 10, NULL); /* holds 7..10 */
	cr_assert(eq(u32, rc_history_since(&h, 6, &first, &gap), 4));
	cr_assert(eq(u32, first, 0));
	cr_assert(not(gap));
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, since_zero_with_everything_held_is_not_a_gap)
{
	struct rc_history h;
	uint32_t first = 99;
	bool gap = true;
	rc_history_init(&h, 16);
	push_range(&h, 1, 10, NULL);
	cr_assert(eq(u32, rc_history_since(&h, 0, &first, &gap), 10));
	cr_assert(eq(u32, first, 0));
	cr_assert(not(gap));
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, since_before_the_window_is_a_gap)
{
	struct rc_history h;
	uint32_t first = 99;
	bool gap = false;
	rc_history_init(&h, 4);
	push_range(&h, 1, 10, NULL); /* holds 7..10: since 5 lost 6 */
	cr_assert(eq(u32, rc_history_since(&h, 5, &first, &gap), 4));
	cr_assert(gap);
	cr_assert(eq(u32, first, 0));
	gap = false;
	cr_assert(eq(u32, rc_history_since(&h, 0, &first, &gap), 4));
	cr_assert(gap);
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, expire_releases_what_is_older_than_the_age)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 32);
	push_range(&h, 1, 10, ten_ms_apart);	     /* at 10, 20, ... 100 */
	rc_history_expire(&h, 100, 35, release, &r); /* keeps now - at <= 35: at >= 65 */
	cr_assert(eq(sz, r.count, 6));
	for (size_t i = 0; i < 6; i++)
		cr_assert(eq(ptr, (void *)r.refs[i], REF(i + 1)));
	cr_assert(eq(u32, h.count, 4));
	cr_assert(eq(u64, rc_history_at(&h, 0)->seq, 7));
	rc_history_free(&h, release, &r);
}

Test(history, expire_keeps_an_item_exactly_at_the_age)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 8);
	push_range(&h, 1, 3, ten_ms_apart);	    /* at 10, 20, 30 */
	rc_history_expire(&h, 50, 40, release, &r); /* 50 - 10 == 40: kept */
	cr_assert(eq(sz, r.count, 0));
	rc_history_expire(&h, 51, 40, release, &r);
	cr_assert(eq(sz, r.count, 1));
	cr_assert(eq(u64, rc_history_at(&h, 0)->seq, 2));
	rc_history_free(&h, release, &r);
}

Test(history, expire_then_since_reports_the_gap)
{
	struct rc_history h;
	struct released r = {.count = 0};
	uint32_t first;
	bool gap;
	rc_history_init(&h, 8);
	push_range(&h, 1, 6, ten_ms_apart);
	rc_history_expire(&h, 60, 25, release, &r); /* drops 1..3 (at 10..30) */
	cr_assert(eq(u32, rc_history_since(&h, 1, &first, &gap), 3));
	cr_assert(gap);
	cr_assert(eq(u32, rc_history_since(&h, 3, &first, &gap), 3));
	cr_assert(not(gap));
	cr_assert(eq(u32, first, 0));
	rc_history_free(&h, release, &r);
}

Test(history, expire_everything_then_push_again)
{
	struct rc_history h;
	struct released r = {.count = 0};
	uint32_t first;
	bool gap;
	rc_history_init(&h, 4);
	push_range(&h, 1, 6, ten_ms_apart); /* head has moved */
	rc_history_expire(&h, 1000, 1, release, &r);
	cr_assert(eq(u32, h.count, 0));
	cr_assert(eq(sz, r.count, 4));
	cr_assert(eq(u32, rc_history_since(&h, 2, &first, &gap), 0), "empty: nothing to send");
	push_range(&h, 7, 9, ten_ms_apart);
	cr_assert(eq(u32, h.count, 3));
	cr_assert(eq(u64, rc_history_at(&h, 0)->seq, 7));
	cr_assert(eq(u32, rc_history_since(&h, 6, &first, &gap), 3));
	cr_assert(not(gap));
	rc_history_free(&h, release, &r);
}

/* ---- history: edge and invalid cases -------------------------------------------------------- */

Test(history, since_at_or_after_the_newest_is_nothing)
{
	struct rc_history h;
	uint32_t first = 99;
	bool gap = true;
	rc_history_init(&h, 4);
	push_range(&h, 1, 10, NULL);
	cr_assert(eq(u32, rc_history_since(&h, 10, &first, &gap), 0));
	cr_assert(not(gap));
	cr_assert(eq(u32, first, 0));
	cr_assert(eq(u32, rc_history_since(&h, 11, &first, &gap), 0));
	cr_assert(not(gap));
	cr_assert(eq(u32, rc_history_since(&h, UINT64_MAX, &first, &gap), 0), "no overflow");
	cr_assert(not(gap));
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, zero_capacity_keeps_nothing_and_hands_the_ref_back)
{
	struct rc_history h;
	void *ev = NULL;
	uint32_t first;
	bool gap = true;
	rc_history_init(&h, 0);
	cr_assert(eq(int, rc_history_push(&h, 1, 5, REF(1), 1, &ev), 0));
	cr_assert(eq(ptr, ev, REF(1)));
	cr_assert(eq(u32, h.count, 0));
	cr_assert(eq(ptr, h.items, NULL));
	cr_assert(eq(u32, rc_history_since(&h, 0, &first, &gap), 0));
	cr_assert(not(gap));
	rc_history_expire(&h, 1000, 1, release, NULL); /* nothing to release: no call */
	rc_history_free(&h, release, NULL);
}

Test(history, capacity_one_holds_only_the_newest)
{
	struct rc_history h;
	uint32_t first;
	bool gap;
	rc_history_init(&h, 1);
	cr_assert(eq(sz, push_range(&h, 1, 50, NULL), 49));
	cr_assert(eq(u32, h.count, 1));
	cr_assert(eq(u64, rc_history_at(&h, 0)->seq, 50));
	cr_assert(eq(u32, rc_history_since(&h, 49, &first, &gap), 1));
	cr_assert(not(gap));
	cr_assert(eq(u32, rc_history_since(&h, 48, &first, &gap), 1));
	cr_assert(gap);
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, history_may_start_at_any_seq)
{
	/* A topic whose history began after earlier publishes (e.g. the first push failed). */
	struct rc_history h;
	uint32_t first;
	bool gap;
	rc_history_init(&h, 8);
	push_range(&h, 1000, 1003, NULL);
	cr_assert(eq(u32, rc_history_since(&h, 999, &first, &gap), 4));
	cr_assert(not(gap));
	cr_assert(eq(u32, rc_history_since(&h, 1001, &first, &gap), 2));
	cr_assert(eq(u32, first, 2));
	cr_assert(eq(u32, rc_history_since(&h, 0, &first, &gap), 4));
	cr_assert(gap);
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, expire_without_age_limit_does_nothing)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 4);
	push_range(&h, 1, 3, ten_ms_apart);
	rc_history_expire(&h, UINT64_MAX, 0, release, &r);
	cr_assert(eq(sz, r.count, 0));
	cr_assert(eq(u32, h.count, 3));
	rc_history_free(&h, release, &r);
}

Test(history, expire_on_an_empty_history_is_harmless)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 4);
	rc_history_expire(&h, 1000, 1, release, &r);
	cr_assert(eq(sz, r.count, 0));
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 0));
}

Test(history, ring_grows_by_doubling_up_to_max_keeping_order)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 20);
	cr_assert(eq(sz, rc_history_growth_bytes(&h),
		     RC_HISTORY_SLOTS_MIN * sizeof(struct rc_history_item)));
	push_range(&h, 1, 1, NULL);
	cr_assert(eq(u32, h.cap, RC_HISTORY_SLOTS_MIN), "the first push allocates the minimum");
	push_range(&h, 2, 8, NULL);
	cr_assert(eq(u32, h.cap, 8));
	cr_assert(eq(sz, rc_history_growth_bytes(&h), 8 * sizeof(struct rc_history_item)));
	push_range(&h, 9, 9, NULL);
	cr_assert(eq(u32, h.cap, 16), "a full ring doubles");
	cr_assert(eq(sz, push_range(&h, 10, 20, NULL), 0), "no eviction below max");
	cr_assert(eq(u32, h.cap, 20), "the last doubling stops at max");
	cr_assert(eq(sz, rc_history_growth_bytes(&h), 0), "at max the ring never grows");
	cr_assert(eq(sz, push_range(&h, 21, 25, NULL), 5), "at max the oldest go");
	for (uint32_t i = 0; i < h.count; i++)
		cr_assert(eq(u64, rc_history_at(&h, i)->seq, 6 + i));
	cr_assert(eq(u64, h.bytes, 20));
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 20));
	cr_assert(eq(u32, h.cap, 0), "free returns the ring");
	cr_assert(eq(u32, h.max, 20), "and keeps the limit for reuse");
}

Test(history, growth_across_a_wrapped_ring_keeps_order)
{
	struct rc_history h;
	struct rc_history_item it;
	rc_history_init(&h, 32);
	push_range(&h, 1, 8, NULL);
	cr_assert(rc_history_pop(&h, &it));
	cr_assert(rc_history_pop(&h, &it));
	push_range(&h, 9, 10, NULL); /* wraps: the oldest sits at index 2 */
	push_range(&h, 11, 11, NULL); /* full at 8: grows */
	cr_assert(eq(u32, h.cap, 16));
	for (uint32_t i = 0; i < h.count; i++)
		cr_assert(eq(u64, rc_history_at(&h, i)->seq, 3 + i));
	rc_history_free(&h, release, &(struct released){.count = 0});
}

Test(history, trim_evicts_the_oldest_until_under_the_bytes)
{
	struct rc_history h;
	struct released r = {.count = 0};
	void *ev;
	rc_history_init(&h, 16);
	for (uint64_t s = 1; s <= 5; s++)
		cr_assert(eq(int, rc_history_push(&h, s, s, REF(s), (uint32_t)(100 * s), &ev), 0));
	cr_assert(eq(u64, h.bytes, 1500));
	cr_assert(eq(u32, rc_history_trim(&h, 1500, release, &r), 0), "at the bound: kept");
	cr_assert(eq(u32, rc_history_trim(&h, 1200, release, &r), 2));
	cr_assert(eq(u64, h.bytes, 1200));
	cr_assert(eq(ptr, (void *)r.refs[0], REF(1)));
	cr_assert(eq(ptr, (void *)r.refs[1], REF(2)));
	cr_assert(eq(u32, rc_history_trim(&h, 0, release, &r), 3), "0 bytes empties it");
	cr_assert(eq(u64, h.bytes, 0));
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 5));
}

Test(history, expire_and_pop_keep_the_byte_count)
{
	struct rc_history h;
	struct rc_history_item it;
	void *ev;
	rc_history_init(&h, 4);
	for (uint64_t s = 1; s <= 6; s++)
		cr_assert(eq(int, rc_history_push(&h, s, 10 * s, REF(s), (uint32_t)s, &ev), 0));
	cr_assert(eq(u64, h.bytes, 3 + 4 + 5 + 6), "evicted by count: bytes follow");
	cr_assert(eq(u32, rc_history_expire(&h, 50, 5, release, &(struct released){.count = 0}),
		     2));
	cr_assert(eq(u64, h.bytes, 11));
	cr_assert(rc_history_pop(&h, &it));
	cr_assert(eq(u64, it.seq, 5));
	cr_assert(eq(u32, it.bytes, 5));
	cr_assert(eq(u64, h.bytes, 6));
	cr_assert(rc_history_pop(&h, &it));
	cr_assert(not(rc_history_pop(&h, &it)), "empty: nothing to pop");
	rc_history_free(&h, release, NULL);
}

Test(history, free_twice_is_harmless)
{
	struct rc_history h;
	struct released r = {.count = 0};
	rc_history_init(&h, 4);
	push_range(&h, 1, 6, NULL);
	rc_history_free(&h, release, &r);
	rc_history_free(&h, release, &r);
	cr_assert(eq(sz, r.count, 4), "each ref released exactly once");
}

Test(history, push_of_a_seq_not_above_the_newest_aborts, .signal = SIGABRT)
{
	struct rc_history h;
	void *ev;
	rc_history_init(&h, 4);
	rc_history_push(&h, 5, 0, REF(5), 1, &ev);
	rc_history_push(&h, 5, 0, REF(5), 1, &ev);
}

Test(history, push_of_an_older_seq_aborts, .signal = SIGABRT)
{
	struct rc_history h;
	void *ev;
	rc_history_init(&h, 4);
	rc_history_push(&h, 5, 0, REF(5), 1, &ev);
	rc_history_push(&h, 4, 0, REF(4), 1, &ev);
}

Test(history, at_past_the_count_aborts, .signal = SIGABRT)
{
	struct rc_history h;
	rc_history_init(&h, 4);
	push_range(&h, 1, 2, NULL);
	(void)rc_history_at(&h, 2);
}

Test(history, at_on_an_empty_history_aborts, .signal = SIGABRT)
{
	struct rc_history h;
	rc_history_init(&h, 4);
	(void)rc_history_at(&h, 0);
}

Test(topic_table, hash_depends_on_the_process_key)
{
	/* Another key moves every name: a client cannot precompute colliding names. */
	static const uint64_t zero[2] = {0, 0}, other[2] = {0x0123456789abcdefull, 42};
	uint64_t a = rc_topic_hash("orders", 6), b = rc_topic_hash("chat:lobby", 10);
	rc_topic_hash_key(other);
	cr_assert(ne(u64, rc_topic_hash("orders", 6), a));
	cr_assert(ne(u64, rc_topic_hash("chat:lobby", 10), b));
	rc_topic_hash_key(zero);
	cr_assert(eq(u64, rc_topic_hash("orders", 6), a));
}
