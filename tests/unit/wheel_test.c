/* The hashed timing wheel: firing order, re-arming, far timers and stalls. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdlib.h>

#include "base/rc_util.h"

#include "../../shards/wheel.h"

struct item {
	struct rc_timer t;
	uint32_t fired_at;
	int fired;
};

static uint32_t now;

static void fire(struct rc_timer *t, void *ctx)
{
	struct item *it = rc_container_of(t, struct item, t);
	(void)ctx;
	it->fired++;
	it->fired_at = now;
}

Test(wheel, fires_each_timer_once_at_its_tick)
{
	struct rc_wheel w;
	struct item items[100] = { 0 };
	cr_assert(eq(int, rc_wheel_init(&w, 64, 0), 0));
	for (int i = 0; i < 100; i++)
		rc_wheel_arm(&w, &items[i].t, (uint32_t)(i * 3 + 1)); /* many beyond one turn */
	cr_assert(rc_wheel_validate(&w));
	for (now = 1; now <= 400; now++)
		rc_wheel_advance(&w, now, fire, NULL);
	for (int i = 0; i < 100; i++) {
		cr_assert(eq(int, items[i].fired, 1), "timer %d fired %d times", i, items[i].fired);
		cr_assert(eq(u32, items[i].fired_at, (uint32_t)(i * 3 + 1)));
	}
	rc_wheel_free(&w);
}

Test(wheel, disarm_and_rearm)
{
	struct rc_wheel w;
	struct item a = { 0 }, b = { 0 };
	rc_wheel_init(&w, 16, 0);
	rc_wheel_arm(&w, &a.t, 5);
	rc_wheel_arm(&w, &b.t, 5);
	rc_wheel_disarm(&a.t);
	rc_wheel_arm(&w, &b.t, 9); /* re-arming moves it */
	for (now = 1; now <= 8; now++)
		rc_wheel_advance(&w, now, fire, NULL);
	cr_assert(eq(int, a.fired, 0));
	cr_assert(eq(int, b.fired, 0));
	now = 9;
	rc_wheel_advance(&w, 9, fire, NULL);
	cr_assert(eq(int, b.fired, 1));
	cr_assert(rc_wheel_validate(&w));
	rc_wheel_free(&w);
}

Test(wheel, past_expiry_fires_next_tick)
{
	struct rc_wheel w;
	struct item a = { 0 };
	rc_wheel_init(&w, 16, 100);
	rc_wheel_arm(&w, &a.t, 50);
	now = 101;
	rc_wheel_advance(&w, 101, fire, NULL);
	cr_assert(eq(int, a.fired, 1));
	rc_wheel_free(&w);
}

Test(wheel, long_stall_fires_everything_due)
{
	struct rc_wheel w;
	struct item items[10] = { 0 };
	rc_wheel_init(&w, 8, 0);
	for (int i = 0; i < 10; i++)
		rc_wheel_arm(&w, &items[i].t, (uint32_t)(i + 1));
	now = 1000; /* one advance across many revolutions */
	rc_wheel_advance(&w, now, fire, NULL);
	for (int i = 0; i < 10; i++)
		cr_assert(eq(int, items[i].fired, 1));
	rc_wheel_free(&w);
}

static struct rc_wheel *rearm_wheel;

static void fire_rearm(struct rc_timer *t, void *ctx)
{
	struct item *it = rc_container_of(t, struct item, t);
	(void)ctx;
	if (++it->fired < 5)
		rc_wheel_arm(rearm_wheel, t, now + 16); /* lands in the bucket being walked */
}

Test(wheel, rearm_from_callback_into_same_bucket)
{
	struct rc_wheel w;
	struct item a = { 0 };
	rc_wheel_init(&w, 16, 0);
	rearm_wheel = &w;
	rc_wheel_arm(&w, &a.t, 3);
	for (now = 1; now <= 200; now++)
		rc_wheel_advance(&w, now, fire_rearm, NULL);
	cr_assert(eq(int, a.fired, 5));
	cr_assert(rc_wheel_validate(&w));
	rc_wheel_free(&w);
}
