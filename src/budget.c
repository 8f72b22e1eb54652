/*
 * The process-wide memory budget: per-shard counters by category, their sum, and the
 * admission level. See budget.h for the threading rules.
 */
#include "budget.h"

#include <errno.h>
#include <stdlib.h>

#include "base/rc_assert.h"

static const char *const category_names[] = {
#define RC_X(name, help) #name,
	RC_BUDGET_CATEGORIES(RC_X)
#undef RC_X
};

static const char *const category_helps[] = {
#define RC_X(name, help) help,
	RC_BUDGET_CATEGORIES(RC_X)
#undef RC_X
};

RC_STATIC_ASSERT(RC_ARRAY_LEN(category_names) == RC_BUDGET_CATEGORY_COUNT, "one name each");
RC_STATIC_ASSERT(sizeof(struct rc_budget_shard) % RC_CACHELINE == 0, "shards share no line");

int rc_budget_init(struct rc_budget *b, uint32_t shards_count, uint64_t limit_bytes,
		   uint32_t soft_percent)
{
	RC_ASSERT(b != NULL);
	if (shards_count == 0 || limit_bytes == 0 || soft_percent == 0 || soft_percent > 100)
		return -EINVAL;
	*b = (struct rc_budget){0};
	/* One slot per shard and a shared one for every other thread. */
	b->shards = aligned_alloc(RC_CACHELINE, sizeof(*b->shards) * (shards_count + 1));
	if (b->shards == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i <= shards_count; i++)
		b->shards[i] = (struct rc_budget_shard){0};
	b->shards_count = shards_count;
	b->limit_bytes = limit_bytes;
	b->soft_bytes = limit_bytes / 100 * soft_percent + limit_bytes % 100 * soft_percent / 100;
	RC_ASSERT(b->soft_bytes <= b->limit_bytes);
	return 0;
}

void rc_budget_free(struct rc_budget *b)
{
	free(b->shards);
	b->shards = NULL;
	b->shards_count = 0;
}

uint64_t rc_budget_total(const struct rc_budget *b)
{
	int64_t sum = 0;

	for (uint32_t i = 0; i <= b->shards_count; i++)
		sum += atomic_load_explicit(&b->shards[i].total, memory_order_relaxed);
	/* Racy reads of counters charged on one shard and released on another may briefly
	 * add up below zero. */
	uint64_t user = sum > 0 ? (uint64_t)sum : 0;
	return user + atomic_load_explicit(&b->kernel_bytes, memory_order_relaxed);
}

uint64_t rc_budget_category_bytes(const struct rc_budget *b, enum rc_budget_category cat)
{
	int64_t sum = 0;

	RC_ASSERT(cat < RC_BUDGET_CATEGORY_COUNT);
	for (uint32_t i = 0; i <= b->shards_count; i++)
		sum += atomic_load_explicit(&b->shards[i].bytes[cat], memory_order_relaxed);
	return sum > 0 ? (uint64_t)sum : 0;
}

enum rc_budget_level rc_budget_level_of(const struct rc_budget *b, uint64_t total)
{
	if (total >= b->limit_bytes)
		return RC_BUDGET_HARD;
	if (total >= b->soft_bytes)
		return RC_BUDGET_SOFT;
	return RC_BUDGET_OK;
}

bool rc_budget_try_charge(struct rc_budget *b, uint32_t shard, enum rc_budget_category cat,
			  size_t n)
{
	RC_ASSERT(shard < b->shards_count);
	uint64_t total = rc_budget_total(b);
	if (total > b->limit_bytes || n > b->limit_bytes - total) {
		struct rc_budget_shard *s = &b->shards[shard];
		uint64_t r = atomic_load_explicit(&s->refusals, memory_order_relaxed);
		atomic_store_explicit(&s->refusals, r + 1, memory_order_relaxed);
		return false;
	}
	rc_budget_charge(b, shard, cat, n);
	return true;
}

void rc_budget_set_kernel(struct rc_budget *b, uint64_t bytes)
{
	atomic_store_explicit(&b->kernel_bytes, bytes, memory_order_relaxed);
}

const char *rc_budget_category_name(enum rc_budget_category cat)
{
	RC_ASSERT(cat < RC_BUDGET_CATEGORY_COUNT);
	return category_names[cat];
}

const char *rc_budget_category_help(enum rc_budget_category cat)
{
	RC_ASSERT(cat < RC_BUDGET_CATEGORY_COUNT);
	return category_helps[cat];
}

uint64_t rc_budget_default(uint64_t mem_total_bytes, uint64_t cgroup_max_bytes)
{
	uint64_t avail = mem_total_bytes;
	const uint64_t floor = 64ull << 20;

	if (cgroup_max_bytes != 0 && (avail == 0 || cgroup_max_bytes < avail))
		avail = cgroup_max_bytes;
	if (avail == 0)
		return 1ull << 30; /* unknown host: 1 GiB */
	/* Three quarters for the gateway: what clients make it hold in user space plus its
	 * sockets' kernel memory (which the budget also counts); a quarter stays for the rest
	 * of the host. */
	uint64_t b = avail / 4 * 3;
	return b < floor ? floor : b;
}
