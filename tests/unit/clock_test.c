/* The shard clock: the tick read on the hot path is the one of the last update. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <time.h>

#include "../../shards/clock.h"

static void sleep_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* The cached tick always equals (now_ms - epoch_ms) / tick_ms of the last update, and only an
 * update moves it. */
Test(clock, tick_is_the_last_updates)
{
	struct rc_clock clk;

	rc_clock_start(&clk, 2);
	cr_assert(eq(u32, rc_clock_tick(&clk), 0));
	for (int i = 0; i < 4; i++) {
		sleep_ms(3);
		uint32_t before = rc_clock_tick(&clk);
		cr_assert(eq(u32, rc_clock_tick(&clk), before), "no update, no change");
		rc_clock_update(&clk);
		cr_assert(eq(u64, (uint64_t)rc_clock_tick(&clk),
			     (clk.now_ms - clk.epoch_ms) / clk.tick_ms));
		cr_assert(ge(u32, rc_clock_tick(&clk), before));
	}
	cr_assert(gt(u32, rc_clock_tick(&clk), 0), "12 ms or more passed in 2 ms ticks");
}

/* rc_clock_ticks rounds up and never returns 0: a timer armed for 0 ms still waits a tick. */
Test(clock, ticks_round_up)
{
	struct rc_clock clk;

	rc_clock_start(&clk, 10);
	cr_assert(eq(u32, rc_clock_ticks(&clk, 0), 1));
	cr_assert(eq(u32, rc_clock_ticks(&clk, 1), 1));
	cr_assert(eq(u32, rc_clock_ticks(&clk, 10), 1));
	cr_assert(eq(u32, rc_clock_ticks(&clk, 11), 2));
}
