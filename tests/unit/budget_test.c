/* The memory budget: per-shard charging, exact sums across shards, marks and refusals. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <pthread.h>

#include "budget.h"

Test(budget, rejects_bad_settings)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 0, 1000, 80), -EINVAL));
	cr_assert(eq(int, rc_budget_init(&b, 2, 0, 80), -EINVAL));
	cr_assert(eq(int, rc_budget_init(&b, 2, 1000, 0), -EINVAL));
	cr_assert(eq(int, rc_budget_init(&b, 2, 1000, 101), -EINVAL));
}

Test(budget, sums_every_shard_and_category_exactly)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 4, 1 << 20, 80), 0));
	for (uint32_t s = 0; s < 4; s++)
		for (int c = 0; c < RC_BUDGET_CATEGORY_COUNT; c++)
			rc_budget_charge(&b, s, (enum rc_budget_category)c, 100 * (s + 1));
	cr_assert(eq(u64, rc_budget_total(&b), 1000ull * RC_BUDGET_CATEGORY_COUNT));
	cr_assert(eq(u64, rc_budget_category_bytes(&b, RC_BUDGET_http), 1000));
	rc_budget_set_kernel(&b, 5000);
	cr_assert(eq(u64, rc_budget_total(&b), 1000ull * RC_BUDGET_CATEGORY_COUNT + 5000));
	rc_budget_free(&b);
}

Test(budget, memory_released_on_another_shard_keeps_the_sum_exact)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 2, 1 << 20, 80), 0));
	rc_budget_charge(&b, 0, RC_BUDGET_broadcast, 4096);
	rc_budget_release(&b, 1, RC_BUDGET_broadcast, 4096); /* the last reference died there */
	cr_assert(eq(u64, rc_budget_total(&b), 0));
	cr_assert(eq(u64, rc_budget_category_bytes(&b, RC_BUDGET_broadcast), 0));
	rc_budget_charge(&b, 0, RC_BUDGET_broadcast, 10);
	cr_assert(eq(u64, rc_budget_category_bytes(&b, RC_BUDGET_broadcast), 10));
	rc_budget_free(&b);
}

Test(budget, other_threads_share_one_slot)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 2, 1 << 20, 80), 0));
	rc_budget_charge_shared(&b, RC_BUDGET_outbox, 300);
	rc_budget_charge(&b, 1, RC_BUDGET_outbox, 200);
	cr_assert(eq(u64, rc_budget_category_bytes(&b, RC_BUDGET_outbox), 500));
	rc_budget_release_shared(&b, RC_BUDGET_outbox, 300);
	cr_assert(eq(u64, rc_budget_total(&b), 200));
	rc_budget_free(&b);
}

Test(budget, levels_follow_the_marks)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 1, 1000, 80), 0));
	cr_assert(eq(u64, b.soft_bytes, 800));
	cr_assert(eq(int, rc_budget_level_of(&b, 0), RC_BUDGET_OK));
	cr_assert(eq(int, rc_budget_level_of(&b, 799), RC_BUDGET_OK));
	cr_assert(eq(int, rc_budget_level_of(&b, 800), RC_BUDGET_SOFT));
	cr_assert(eq(int, rc_budget_level_of(&b, 999), RC_BUDGET_SOFT));
	cr_assert(eq(int, rc_budget_level_of(&b, 1000), RC_BUDGET_HARD));
	cr_assert(eq(int, rc_budget_level_of(&b, UINT64_MAX), RC_BUDGET_HARD));
	rc_budget_free(&b);
}

Test(budget, soft_mark_does_not_overflow_on_huge_budgets)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 1, UINT64_MAX, 100), 0));
	cr_assert(eq(u64, b.soft_bytes, UINT64_MAX));
	rc_budget_free(&b);
}

Test(budget, try_charge_refuses_past_the_budget_and_counts_it)
{
	struct rc_budget b;
	cr_assert(eq(int, rc_budget_init(&b, 2, 1000, 80), 0));
	cr_assert(rc_budget_try_charge(&b, 0, RC_BUDGET_frame_assembly, 600));
	cr_assert(rc_budget_try_charge(&b, 1, RC_BUDGET_http, 400)); /* exactly the budget */
	cr_assert(not(rc_budget_try_charge(&b, 1, RC_BUDGET_http, 1)));
	cr_assert(eq(u64, rc_budget_total(&b), 1000));
	cr_assert(eq(u64, atomic_load(&b.shards[1].refusals), 1));
	rc_budget_release(&b, 0, RC_BUDGET_frame_assembly, 600);
	rc_budget_set_kernel(&b, 500); /* the kernel's share counts against the same budget */
	cr_assert(not(rc_budget_try_charge(&b, 0, RC_BUDGET_frame_assembly, 101)));
	cr_assert(rc_budget_try_charge(&b, 0, RC_BUDGET_frame_assembly, 100));
	/* A huge request never wraps around into an admission. */
	cr_assert(not(rc_budget_try_charge(&b, 0, RC_BUDGET_http, SIZE_MAX)));
	rc_budget_free(&b);
}

Test(budget, every_category_has_a_name_and_help)
{
	for (int c = 0; c < RC_BUDGET_CATEGORY_COUNT; c++) {
		cr_assert(rc_budget_category_name((enum rc_budget_category)c)[0] != '\0');
		cr_assert(rc_budget_category_help((enum rc_budget_category)c)[0] != '\0');
	}
	cr_assert(eq(str, (char *)rc_budget_category_name(RC_BUDGET_send_queue), "send_queue"));
}

Test(budget, default_is_three_quarters_of_the_tighter_limit)
{
	cr_assert(eq(u64, rc_budget_default(16ull << 30, 0), 12ull << 30));
	cr_assert(eq(u64, rc_budget_default(16ull << 30, 4ull << 30), 3ull << 30));
	cr_assert(eq(u64, rc_budget_default(0, 8ull << 30), 6ull << 30));
	cr_assert(eq(u64, rc_budget_default(0, 0), 1ull << 30));
	cr_assert(eq(u64, rc_budget_default(32ull << 20, 0), 64ull << 20)); /* the floor */
}

struct worker {
	struct rc_budget *b;
	uint32_t shard;
};

static void *churn(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200000; i++) {
		rc_budget_charge(w->b, w->shard, RC_BUDGET_send_queue, 64);
		rc_budget_release(w->b, w->shard, RC_BUDGET_send_queue, 64);
	}
	rc_budget_charge(w->b, w->shard, RC_BUDGET_send_queue, 7);
	return NULL;
}

Test(budget, shards_charging_in_parallel_add_up)
{
	struct rc_budget b;
	pthread_t t[4];
	struct worker w[4];
	cr_assert(eq(int, rc_budget_init(&b, 4, 1 << 30, 80), 0));
	for (uint32_t i = 0; i < 4; i++) {
		w[i] = (struct worker){&b, i};
		cr_assert(eq(int, pthread_create(&t[i], NULL, churn, &w[i]), 0));
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert(eq(u64, rc_budget_total(&b), 28));
	rc_budget_free(&b);
}
