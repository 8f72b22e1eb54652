/*
 * The shard clock (clock.c): monotonic milliseconds read once per loop turn, and the timer
 * ticks the wheel and the send queues count in (timer_tick_ms each, tick 0 at the shard's
 * start). Also the wall clock for token expiry. A leaf; each shard embeds one rc_clock and
 * only its thread touches it. The reads (rc_clock_ms, rc_clock_unix_ms): any thread.
 */
#ifndef RC_CLOCK_H
#define RC_CLOCK_H

#include <stdint.h>

struct rc_clock {
	uint64_t now_ms;   /* monotonic, updated each loop turn by rc_clock_update() */
	uint64_t now_us;   /* the same read in microseconds (the turn-length histogram) */
	uint64_t epoch_ms; /* monotonic time of tick 0 */
	uint32_t tick_ms;  /* timer_tick_ms, > 0 */
	uint32_t tick;     /* the tick of now_ms, computed with it: read per message */
};

/* Monotonic milliseconds (CLOCK_MONOTONIC). Any thread. */
uint64_t rc_clock_ms(void);

/* Wall-clock Unix milliseconds (CLOCK_REALTIME), for token expiry. Any thread. */
uint64_t rc_clock_unix_ms(void);

/* Starts clk at the current time: tick 0 is now. tick_ms > 0. Shard thread, at setup. */
void rc_clock_start(struct rc_clock *clk, uint32_t tick_ms);

/* Reads the clock into clk->now_ms; once per loop turn. Shard thread. */
void rc_clock_update(struct rc_clock *clk);

/* The current tick (as of the last update). Shard thread. Inline: the receive and send
 * paths read it for every message, and the division is done once per turn instead. */
static inline uint32_t rc_clock_tick(const struct rc_clock *clk)
{
	return clk->tick;
}

/* ms as ticks, rounded up and at least 1, for arming a timer ms from now. Shard thread. */
uint32_t rc_clock_ticks(const struct rc_clock *clk, uint64_t ms);

#endif
