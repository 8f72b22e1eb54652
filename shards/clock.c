/*
 * The shard clock: one clock read per loop turn (rc_clock_update) gives every decision of
 * the turn the same now_ms, and the timing wheel counts in ticks of timer_tick_ms from the
 * shard's start. Owns the runtime's only clock reads. Shard thread, except the two reads.
 */
#include <time.h>

#include "base/rc_assert.h"
#include "clock.h"

static uint64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t rc_clock_ms(void)
{
	return monotonic_us() / 1000u;
}

uint64_t rc_clock_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void rc_clock_start(struct rc_clock *clk, uint32_t tick_ms)
{
	RC_ASSERT(tick_ms > 0);
	clk->tick_ms = tick_ms;
	clk->now_us = monotonic_us();
	clk->now_ms = clk->now_us / 1000u;
	clk->epoch_ms = clk->now_ms;
	clk->tick = 0;
}

void rc_clock_update(struct rc_clock *clk)
{
	clk->now_us = monotonic_us();
	uint64_t now = clk->now_us / 1000u;
	RC_DASSERT(clk->tick_ms > 0);
	/* CLOCK_MONOTONIC never goes back, so ticks never do either. */
	RC_DASSERT(now >= clk->now_ms);
	clk->now_ms = now;
	clk->tick = (uint32_t)((now - clk->epoch_ms) / clk->tick_ms);
}

uint32_t rc_clock_ticks(const struct rc_clock *clk, uint64_t ms)
{
	uint64_t t = (ms + clk->tick_ms - 1) / clk->tick_ms;
	return t ? (uint32_t)t : 1;
}
