/*
 * The memory budget in force: each shard's once-per-tick step (the admission level, history
 * trims past the soft mark, shedding at the hard mark) and shard 0's sample of the kernel's
 * socket memory. What is charged, and where, is in mem.h's callers. Shard threads.
 */
#include <stdio.h>
#include <unistd.h>

#include "input.h"
#include "memory.h"
#include "pubsub.h"

/* A connection holding less than this is not what fills memory: shedding it frees nothing. */
#define RC_SHED_BYTES_MIN (16u * 1024u)
/* Nor is one holding less than 1/RC_SHED_SHARE_DIV of what must be freed: closing many small
 * consumers would disconnect clients for little, while the history trims free more. */
#define RC_SHED_SHARE_DIV (2u * RC_SHED_PER_TICK_LIMIT)

/* What an open connection makes us hold, read without walking its queue. */
static uint64_t footprint(const struct rc_conn *c)
{
	return (uint64_t)c->q.bytes + rc_ws_asm_bytes(&c->ws);
}

/* Fills top[] with s's biggest open connections holding at least min bytes, biggest first;
 * returns how many. One pass over the table, only while at the hard mark. */
static size_t biggest(struct rc_shard *s, uint64_t min, struct rc_conn **top)
{
	uint64_t held[RC_SHED_PER_TICK_LIMIT];
	size_t n = 0;

	for (uint32_t i = 0; i < s->conns_cap; i++) {
		struct rc_conn *c = &s->conns[i];
		if (c->state != RC_CONN_OPEN)
			continue;
		uint64_t f = footprint(c);
		if (f < min || (n == RC_SHED_PER_TICK_LIMIT && f <= held[n - 1]))
			continue;
		size_t k = n < RC_SHED_PER_TICK_LIMIT ? n++ : n - 1;
		for (; k > 0 && held[k - 1] < f; k--) {
			held[k] = held[k - 1];
			top[k] = top[k - 1];
		}
		held[k] = f;
		top[k] = c;
	}
	for (size_t k = 1; k < n; k++)
		RC_DASSERT(held[k - 1] >= held[k]);
	return n;
}

/* At the hard mark (total >= the budget, so above the soft mark): closes s's biggest
 * consumers, biggest first, until what they held brings the total under the soft mark or the
 * tick's share is used up. */
static void shed(struct rc_shard *s, uint64_t total)
{
	struct rc_conn *top[RC_SHED_PER_TICK_LIMIT];
	uint64_t soft = s->app->budget.soft_bytes;
	uint64_t min = RC_MAX((uint64_t)RC_SHED_BYTES_MIN, (total - soft) / RC_SHED_SHARE_DIV);
	size_t n = biggest(s, min, top);

	for (size_t i = 0; i < n && total >= soft; i++) {
		uint64_t f = footprint(top[i]);
		rc_conn_shed(top[i]);
		s->stats.memory_shed++;
		total -= RC_MIN(total, f);
	}
	RC_ASSERT(n <= RC_SHED_PER_TICK_LIMIT);
}

void rc_memory_tick(struct rc_shard *s)
{
	struct rc_budget *b = &s->app->budget;
	uint32_t tick = rc_clock_tick(&s->clock);

	if (tick == s->mem_tick)
		return;
	s->mem_tick = tick;
	uint64_t total = rc_budget_total(b);
	enum rc_budget_level level = rc_budget_level_of(b, total);
	s->mem_level = (uint8_t)level;
	if (level >= RC_BUDGET_SOFT)
		rc_pubsub_trim(s);
	if (level == RC_BUDGET_HARD && !s->draining)
		shed(s, total);
	RC_ASSERT(s->mem_level <= RC_BUDGET_HARD);
}

void rc_memory_sample_kernel(struct rc_app *app)
{
	char line[256];
	unsigned long long pages = 0;
	bool found = false;

	if (!app->cfg.memory_count_kernel)
		return;
	FILE *f = fopen("/proc/net/sockstat", "r");
	if (!f)
		return;
	/* "TCP: inuse 4 orphan 0 tw 5 alloc 4 mem 84": mem counts pages. */
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "TCP: inuse %*u orphan %*u tw %*u alloc %*u mem %llu",
			       &pages) == 1;
	fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	if (found && page > 0)
		rc_budget_set_kernel(&app->budget, (uint64_t)pages * (uint64_t)page);
}
