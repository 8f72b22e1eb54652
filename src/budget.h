/*
 * The process-wide memory budget, sans I/O: what clients make the gateway hold, charged by
 * category, and the admission level that follows from it (ok → soft → hard).
 *
 * Accounting is per shard: each shard owns one `struct rc_budget_shard` and is its only
 * writer, so charging is a plain add on the shard's own cache line (relaxed atomic loads and
 * stores, never a read-modify-write shared with another thread). Anyone may read the sum.
 * Memory charged on one shard may be released on another (a broadcast frame freed by the
 * shard that drops its last reference): a shard's counter can go negative, the sum stays
 * exact. Kernel socket memory is not charged here; it comes in as a number
 * (`rc_budget_set_kernel`, measured by the runtime) and counts against the same budget.
 *
 * Threads: rc_budget_init/free on one thread at startup/shutdown; rc_budget_charge and
 * rc_budget_release on the owning shard's thread only; the readers on any thread.
 */
#ifndef RC_BUDGET_H
#define RC_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"

/* X(name, help): every kind of memory a client can make us hold. */
#define RC_BUDGET_CATEGORIES(X)                                                                    \
	X(frame_assembly, "partial frames and fragmented messages being reassembled")            \
	X(http, "HTTP requests and bodies being read")                                             \
	X(inflate, "permessage-deflate output buffers")                                            \
	X(send_queue, "queue rings and unicast frames waiting to be sent")                         \
	X(broadcast, "broadcast frames alive (history and send queues share them)")                \
	X(history, "history rings and dedup windows")                                              \
	X(topics, "topic and subscription records")                                                \
	X(outbox, "cross-shard messages in flight and the outbox arrays of full rings")            \
	X(tls, "TLS state of connections and their records waiting to be sent")                    \
	X(engine, "the Redis engine's link buffers, held live messages and syncs in flight")       \
	X(presence, "presence entries kept by topic owners (user, connection, client info)")

enum rc_budget_category {
#define RC_X(name, help) RC_BUDGET_##name,
	RC_BUDGET_CATEGORIES(RC_X)
#undef RC_X
		RC_BUDGET_CATEGORY_COUNT,
};

/* Where the total stands against the budget. */
enum rc_budget_level {
	RC_BUDGET_OK = 0, /* below the soft mark: admit everything */
	RC_BUDGET_SOFT,   /* past the soft mark: refuse new connections and topics, trim history */
	RC_BUDGET_HARD,   /* at the budget: shed the biggest consumers */
};

/* One shard's counters, alone on their cache lines. Written by that shard only. */
struct rc_budget_shard {
	_Alignas(RC_CACHELINE) _Atomic int64_t bytes[RC_BUDGET_CATEGORY_COUNT];
	_Atomic int64_t total;
	_Atomic uint64_t refusals; /* charges refused by rc_budget_try_charge */
};

struct rc_budget {
	uint64_t limit_bytes;         /* the hard mark: memory_budget_bytes */
	uint64_t soft_bytes;          /* memory_soft_percent of it */
	uint32_t shards_count;        /* shards[] has one more: the shared slot of other threads */
	_Atomic uint64_t kernel_bytes; /* socket memory, set by the runtime */
	struct rc_budget_shard *shards;
};

/* Sets up accounting for shards_count shards. 0, -EINVAL (limit 0, soft over 100 %) or
 * -ENOMEM. soft_percent is the soft mark as a percentage of limit_bytes. */
int rc_budget_init(struct rc_budget *b, uint32_t shards_count, uint64_t limit_bytes,
		   uint32_t soft_percent);
void rc_budget_free(struct rc_budget *b);

/* Charges n bytes of category cat to shard; always succeeds (memory already held).
 * Shard thread only. */
static inline void rc_budget_charge(struct rc_budget *b, uint32_t shard,
				    enum rc_budget_category cat, size_t n)
{
	struct rc_budget_shard *s = &b->shards[shard];
	/* Single writer: a relaxed load and store, no locked instruction. Readers on other
	 * threads pair with these through relaxed loads and may see a slightly old sum. */
	int64_t v = atomic_load_explicit(&s->bytes[cat], memory_order_relaxed);
	atomic_store_explicit(&s->bytes[cat], v + (int64_t)n, memory_order_relaxed);
	v = atomic_load_explicit(&s->total, memory_order_relaxed);
	atomic_store_explicit(&s->total, v + (int64_t)n, memory_order_relaxed);
}

/* Releases n bytes of category cat on shard (which need not be the shard that charged them).
 * Shard thread only. */
static inline void rc_budget_release(struct rc_budget *b, uint32_t shard,
				     enum rc_budget_category cat, size_t n)
{
	struct rc_budget_shard *s = &b->shards[shard];
	int64_t v = atomic_load_explicit(&s->bytes[cat], memory_order_relaxed);
	atomic_store_explicit(&s->bytes[cat], v - (int64_t)n, memory_order_relaxed);
	v = atomic_load_explicit(&s->total, memory_order_relaxed);
	atomic_store_explicit(&s->total, v - (int64_t)n, memory_order_relaxed);
}

/* The same for threads that are not shards (embedders' threads publishing, shutdown): the
 * shared slot, with atomic read-modify-writes since several threads may use it. */
static inline void rc_budget_charge_shared(struct rc_budget *b, enum rc_budget_category cat,
					   size_t n)
{
	struct rc_budget_shard *s = &b->shards[b->shards_count];
	atomic_fetch_add_explicit(&s->bytes[cat], (int64_t)n, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->total, (int64_t)n, memory_order_relaxed);
}

static inline void rc_budget_release_shared(struct rc_budget *b, enum rc_budget_category cat,
					    size_t n)
{
	struct rc_budget_shard *s = &b->shards[b->shards_count];
	atomic_fetch_sub_explicit(&s->bytes[cat], (int64_t)n, memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->total, (int64_t)n, memory_order_relaxed);
}

/* Charges n bytes only if the total stays within the hard mark; false (nothing charged,
 * refusal counted) otherwise. For growth a client asks for: partial frames, bodies, queues.
 * Shard thread only. */
bool rc_budget_try_charge(struct rc_budget *b, uint32_t shard, enum rc_budget_category cat,
			  size_t n);

/* Bytes charged in all shards plus kernel socket memory. Any thread. */
uint64_t rc_budget_total(const struct rc_budget *b);
/* Bytes of one category over all shards (never negative). Any thread. */
uint64_t rc_budget_category_bytes(const struct rc_budget *b, enum rc_budget_category cat);
/* The level of total against the marks. Any thread. */
enum rc_budget_level rc_budget_level_of(const struct rc_budget *b, uint64_t total);
/* Kernel socket memory in bytes, measured by the runtime. Any thread. */
void rc_budget_set_kernel(struct rc_budget *b, uint64_t bytes);
/* Metric-label name and help of a category. */
const char *rc_budget_category_name(enum rc_budget_category cat);
const char *rc_budget_category_help(enum rc_budget_category cat);

/*
 * The default budget for a host: three quarters of the memory this process may use (the
 * smaller of the host's MemTotal and the cgroup's memory.max, both given by the caller;
 * 0 = unknown, which gives 1 GiB), never below 64 MiB.
 */
uint64_t rc_budget_default(uint64_t mem_total_bytes, uint64_t cgroup_max_bytes);

#endif
