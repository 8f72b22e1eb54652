/*
 * Unit tests for shards/mpsc.c: FIFO order and full-ring behaviour on one thread, wrap-around
 * over many laps, four producer threads against one consumer (no loss, no duplicate, FIFO per
 * producer), and the sleep/wake protocol with a consumer that really sleeps on an eventfd,
 * both under bursts from four producers and in a one-item ping-pong where every push races
 * the consumer's fall into sleep: a lost wake-up would hang a test, which criterion's timeout
 * turns into a failure.
 * Items are encoded as (producer + 1) << 32 | (counter + 1), never NULL.
 * Throughput figures are printed, never asserted (numbers live in perf/).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../../shards/mpsc.h"

#define PRODUCERS 4
#define ITEMS_PER_PRODUCER 1000000u
#define WAKE_ITEMS_PER_PRODUCER 200000u
#define PING_PONG_ROUNDS 100000u

static void *item_of(uint32_t producer, uint32_t counter)
{
	return (void *)(uintptr_t)(((uint64_t)(producer + 1) << 32) | (counter + 1u));
}

static uint32_t producer_of(void *item)
{
	return (uint32_t)((uintptr_t)item >> 32) - 1;
}

static uint32_t counter_of(void *item)
{
	return (uint32_t)(uintptr_t)item - 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A ring inside a malloc'd record, as a shard embeds it (no alignment promised). */
static struct rc_mpsc *ring_new(uint32_t capacity)
{
	struct rc_mpsc *q = malloc(sizeof(*q));

	cr_assert(q != NULL);
	cr_assert(eq(int, rc_mpsc_init(q, capacity), 0));
	cr_assert(rc_mpsc_validate(q));
	return q;
}

static void ring_delete(struct rc_mpsc *q)
{
	cr_assert(rc_mpsc_validate(q));
	rc_mpsc_free(q);
	free(q);
}

Test(mpsc, init_rejects_bad_capacities)
{
	static const uint32_t bad[] = { 0, 1, 3, 6, 100, RC_MPSC_CAPACITY_LIMIT * 2u, UINT32_MAX };
	struct rc_mpsc *q = malloc(sizeof(*q));

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, rc_mpsc_init(q, bad[i]), -EINVAL), "capacity %u", bad[i]);
	cr_assert(eq(int, rc_mpsc_init(q, 2), 0));
	cr_assert(rc_mpsc_validate(q));
	rc_mpsc_free(q);
	free(q);
}

/* Items come out in push order; an empty ring pops nothing; max bounds the batch. */
Test(mpsc, fifo_on_one_thread)
{
	struct rc_mpsc *q = ring_new(64);
	void *out[64];

	cr_assert(eq(u32, rc_mpsc_pop(q, out, 64), 0));
	for (uint32_t i = 0; i < 40; i++)
		cr_assert(rc_mpsc_push(q, item_of(0, i)));
	cr_assert(rc_mpsc_validate(q));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 0), 0));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 15), 15));
	for (uint32_t i = 0; i < 15; i++)
		cr_assert(eq(u32, counter_of(out[i]), i));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 64), 25));
	for (uint32_t i = 0; i < 25; i++)
		cr_assert(eq(u32, counter_of(out[i]), 15 + i));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 64), 0));
	ring_delete(q);
}

/* Push fails exactly at capacity, without side effects, and each pop frees one slot. */
Test(mpsc, full_exactly_at_capacity)
{
	static const uint32_t caps[] = { 2, 8, 1024 };

	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		uint32_t cap = caps[c];
		struct rc_mpsc *q = ring_new(cap);
		void *out[2];

		for (uint32_t i = 0; i < cap; i++)
			cr_assert(rc_mpsc_push(q, item_of(1, i)), "cap %u push %u", cap, i);
		cr_assert(not(rc_mpsc_push(q, item_of(1, cap))), "cap %u accepted one more", cap);
		cr_assert(not(rc_mpsc_push(q, item_of(1, cap))));
		cr_assert(rc_mpsc_validate(q));
		cr_assert(eq(u32, rc_mpsc_pop(q, out, 1), 1));
		cr_assert(eq(u32, counter_of(out[0]), 0));
		cr_assert(rc_mpsc_push(q, item_of(1, cap)));
		cr_assert(not(rc_mpsc_push(q, item_of(1, cap + 1))));
		for (uint32_t i = 1; i <= cap; i++) {
			cr_assert(eq(u32, rc_mpsc_pop(q, out, 1), 1));
			cr_assert(eq(u32, counter_of(out[0]), i));
		}
		cr_assert(eq(u32, rc_mpsc_pop(q, out, 2), 0));
		ring_delete(q);
	}
}

/* Many laps with varying fill levels and batch sizes keep order and invariants. */
Test(mpsc, wraps_around_many_times)
{
	struct rc_mpsc *q = ring_new(16);
	uint32_t next_in = 0, next_out = 0, bad = 0;
	void *out[16];

	for (uint32_t round = 0; round < 200000; round++) {
		uint32_t k = 1 + (round * 7u) % 16, take = 1 + (round * 5u) % 16, n;

		for (uint32_t i = 0; i < k; i++)
			if (rc_mpsc_push(q, item_of(0, next_in)))
				next_in++;
		n = rc_mpsc_pop(q, out, take);
		for (uint32_t i = 0; i < n; i++)
			bad += counter_of(out[i]) != next_out++;
		if (round % 4096 == 0)
			cr_assert(rc_mpsc_validate(q), "round %u", round);
	}
	while ((uint32_t)(next_in - next_out) > 0) {
		uint32_t n = rc_mpsc_pop(q, out, 16);

		cr_assert(gt(u32, n, 0));
		for (uint32_t i = 0; i < n; i++)
			bad += counter_of(out[i]) != next_out++;
	}
	cr_assert(eq(u32, bad, 0));
	cr_assert(gt(u32, next_in, 100u * 16u), "only %u items: too few laps", next_in);
	ring_delete(q);
}

/* validate() notices a slot whose sequence number does not fit its position. */
Test(mpsc, validate_detects_a_corrupt_slot)
{
	struct rc_mpsc *q = ring_new(8);

	cr_assert(rc_mpsc_push(q, item_of(0, 0)));
	cr_assert(rc_mpsc_validate(q));
	atomic_store(&q->slots[5].seq, 99);
	cr_assert(not(rc_mpsc_validate(q)));
	atomic_store(&q->slots[5].seq, 5);
	cr_assert(rc_mpsc_validate(q));
	atomic_store(&q->slots[3].seq, 4); /* published past tail with tail unchanged */
	cr_assert(not(rc_mpsc_validate(q)));
	atomic_store(&q->slots[3].seq, 3);
	ring_delete(q);
}

/* NULL is not an item: pushing it is a programmer error. */
Test(mpsc, push_null_aborts, .signal = SIGABRT)
{
	struct rc_mpsc *q = ring_new(8);

	rc_mpsc_push(q, NULL);
}

/* The doorbell protocol's decisions, step by step on one thread. */
Test(mpsc, sleep_protocol_on_one_thread)
{
	struct rc_mpsc *q = ring_new(8);
	void *out[8];

	/* Awake consumer: pushes never ask for a doorbell. */
	cr_assert(rc_mpsc_push(q, item_of(0, 0)));
	cr_assert(not(rc_mpsc_wake_needed(q)));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 8), 1));

	/* Empty: the consumer may sleep; the first push rings, the second does not. */
	rc_mpsc_sleep_prepare(q);
	cr_assert(not(rc_mpsc_sleep_cancel(q)));
	cr_assert(rc_mpsc_push(q, item_of(0, 1)));
	cr_assert(rc_mpsc_wake_needed(q));
	cr_assert(rc_mpsc_push(q, item_of(0, 2)));
	cr_assert(not(rc_mpsc_wake_needed(q)));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 8), 2));

	/* An item arrived between the last pop and the announcement: do not sleep, no ring. */
	cr_assert(rc_mpsc_push(q, item_of(0, 3)));
	rc_mpsc_sleep_prepare(q);
	cr_assert(rc_mpsc_sleep_cancel(q));
	cr_assert(not(rc_mpsc_wake_needed(q)));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 8), 1));

	/* A producer took the flag before the cancel: it rings; the consumer does not sleep. */
	rc_mpsc_sleep_prepare(q);
	cr_assert(rc_mpsc_push(q, item_of(0, 4)));
	cr_assert(rc_mpsc_wake_needed(q));
	cr_assert(rc_mpsc_sleep_cancel(q));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 8), 1));

	/* Woken by something else: sleep_end withdraws the announcement. */
	rc_mpsc_sleep_prepare(q);
	cr_assert(not(rc_mpsc_sleep_cancel(q)));
	rc_mpsc_sleep_end(q);
	cr_assert(rc_mpsc_push(q, item_of(0, 5)));
	cr_assert(not(rc_mpsc_wake_needed(q)));
	cr_assert(eq(u32, rc_mpsc_pop(q, out, 8), 1));
	ring_delete(q);
}

/* One thread pushes and pops in batches of 64: the uncontended cost per item. */
Test(mpsc, throughput_one_thread)
{
	const uint32_t batches = 200000;
	struct rc_mpsc *q = ring_new(1024);
	uint32_t next = 0, bad = 0;
	void *out[64];
	double t0 = now_s(), dt;

	for (uint32_t b = 0; b < batches; b++) {
		for (uint32_t i = 0; i < 64; i++)
			rc_mpsc_push(q, item_of(0, b * 64 + i));
		cr_assert(eq(u32, rc_mpsc_pop(q, out, 64), 64));
		for (uint32_t i = 0; i < 64; i++)
			bad += counter_of(out[i]) != next++;
	}
	dt = now_s() - t0;
	cr_assert(eq(u32, bad, 0));
	fprintf(stderr, "mpsc one thread: %u push+pop in %.3f s = %.1f M items/s (%.1f ns each)\n",
		batches * 64, dt, batches * 64 / dt / 1e6, dt * 1e9 / (batches * 64.0));
	ring_delete(q);
}

/* ---- threads ----------------------------------------------------------------------------- */
struct hammer {
	struct rc_mpsc *q;
	uint32_t per_producer;
	int efd;                 /* doorbell for the sleep test; -1: consumer never sleeps */
	uint32_t pause_mask;     /* producers pause after pushes whose counter & mask == mask */
	atomic_uint full_retries; /* pushes refused because the ring was full */
	atomic_uint rings;        /* doorbells rung (wake_needed() said true) */
	atomic_uint write_errors; /* eventfd writes that failed */
};

struct producer_arg {
	struct hammer *h;
	uint32_t id;
};

static void pause_briefly(uint32_t seed)
{
	struct timespec ts = { 0, (long)(seed % 20) * 1000 };

	nanosleep(&ts, NULL);
}

static void *producer(void *arg)
{
	struct producer_arg *pa = arg;
	struct hammer *h = pa->h;

	for (uint32_t i = 0; i < h->per_producer; i++) {
		while (!rc_mpsc_push(h->q, item_of(pa->id, i))) {
			atomic_fetch_add_explicit(&h->full_retries, 1, memory_order_relaxed);
			sched_yield();
		}
		if (h->efd >= 0 && rc_mpsc_wake_needed(h->q)) {
			uint64_t one = 1;

			/* No cr_assert off the test's main thread: count, check later. */
			atomic_fetch_add_explicit(&h->rings, 1, memory_order_relaxed);
			if (write(h->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
				atomic_fetch_add_explicit(&h->write_errors, 1,
							  memory_order_relaxed);
		}
		if (h->pause_mask && (i & h->pause_mask) == h->pause_mask)
			pause_briefly(i * 2654435761u + pa->id);
	}
	return NULL;
}

/* What the consumer saw: per-producer order, losses and duplicates, sleeps. */
struct tally {
	uint32_t next[PRODUCERS];
	uint64_t received;
	uint64_t out_of_order;
	uint64_t prepares;
	uint64_t cancels;
	uint64_t sleeps;
	uint64_t woken;   /* sum of eventfd counts read */
	uint64_t invalid; /* validate() failures while producers ran */
};

static void take(struct tally *t, void **items, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = producer_of(items[i]);

		if (p >= PRODUCERS || counter_of(items[i]) != t->next[p])
			t->out_of_order++;
		else
			t->next[p]++;
	}
	t->received += n;
}

/* Pops until every item arrived; sleeps on the eventfd when the protocol allows it. */
static void consume(struct hammer *h, struct tally *t)
{
	uint64_t total = (uint64_t)PRODUCERS * h->per_producer;
	void *items[256];

	while (t->received < total) {
		uint32_t n = rc_mpsc_pop(h->q, items, 256);
		uint64_t v;

		if (n) {
			/* validate() holds for the consumer even while producers push. */
			if ((t->received & 0xffff) + n > 0xffff)
				t->invalid += !rc_mpsc_validate(h->q);
			take(t, items, n);
			continue;
		}
		if (h->efd < 0) {
			sched_yield();
			continue;
		}
		rc_mpsc_sleep_prepare(h->q);
		t->prepares++;
		if (rc_mpsc_sleep_cancel(h->q)) {
			t->cancels++;
			continue;
		}
		cr_assert(eq(long, (long)read(h->efd, &v, sizeof(v)), 8));
		t->sleeps++;
		t->woken += v;
		rc_mpsc_sleep_end(h->q);
	}
}

static double run_hammer(struct hammer *h, struct tally *t)
{
	pthread_t th[PRODUCERS];
	struct producer_arg args[PRODUCERS];
	double t0 = now_s();

	for (uint32_t i = 0; i < PRODUCERS; i++) {
		args[i] = (struct producer_arg){ h, i };
		cr_assert(eq(int, pthread_create(&th[i], NULL, producer, &args[i]), 0));
	}
	consume(h, t);
	for (uint32_t i = 0; i < PRODUCERS; i++)
		pthread_join(th[i], NULL);
	return now_s() - t0;
}

/* 4 producers x 1,000,000 items, one consumer: nothing lost, duplicated or reordered. */
Test(mpsc, four_producers_one_consumer, .timeout = 120)
{
	struct hammer h = { .q = ring_new(1024), .per_producer = ITEMS_PER_PRODUCER, .efd = -1 };
	struct tally t = { 0 };
	void *extra[1];
	double dt = run_hammer(&h, &t);

	cr_assert(eq(u64, t.out_of_order, 0));
	cr_assert(eq(u64, t.invalid, 0));
	cr_assert(eq(u64, t.received, (uint64_t)PRODUCERS * ITEMS_PER_PRODUCER));
	for (uint32_t p = 0; p < PRODUCERS; p++)
		cr_assert(eq(u32, t.next[p], ITEMS_PER_PRODUCER), "producer %u", p);
	cr_assert(eq(u32, rc_mpsc_pop(h.q, extra, 1), 0));
	fprintf(stderr,
		"mpsc 4 producers x %u: %.3f s = %.1f M items/s, %u full-ring retries\n",
		ITEMS_PER_PRODUCER, dt, (double)t.received / dt / 1e6,
		atomic_load(&h.full_retries));
	ring_delete(h.q);
}

/*
 * The sleep/wake protocol under threads: producers push in bursts with short pauses so the
 * consumer keeps falling asleep on an eventfd; they ring only when wake_needed() says so.
 * Finishing proves no wake-up was lost; each doorbell answers one announcement at most.
 */
Test(mpsc, sleep_wake_under_threads, .timeout = 120)
{
	struct hammer h = { .q = ring_new(256), .per_producer = WAKE_ITEMS_PER_PRODUCER,
			    .pause_mask = 255 };
	struct tally t = { 0 };
	uint64_t leftover = 0, rings;
	double dt;

	h.efd = eventfd(0, EFD_CLOEXEC);
	cr_assert(ge(int, h.efd, 0));
	dt = run_hammer(&h, &t);
	rings = atomic_load(&h.rings);

	cr_assert(eq(u64, t.out_of_order, 0));
	cr_assert(eq(u64, t.invalid, 0));
	cr_assert(eq(u64, t.received, (uint64_t)PRODUCERS * WAKE_ITEMS_PER_PRODUCER));
	cr_assert(le(u64, rings, t.prepares), "more doorbells than announcements");
	cr_assert(le(u64, t.sleeps, rings), "woke without a doorbell");
	cr_assert(gt(u64, t.sleeps, 0), "the consumer never slept: the test proved nothing");
	cr_assert(eq(u32, atomic_load(&h.write_errors), 0));
	/* Doorbells rung after the consumer had cancelled its sleep are still in the count. */
	if (t.woken < rings)
		cr_assert(eq(long, (long)read(h.efd, &leftover, sizeof(leftover)), 8));
	cr_assert(eq(u64, t.woken + leftover, rings));
	fprintf(stderr,
		"mpsc sleep/wake: %llu pushes in %.3f s, %llu announcements, %llu cancelled, "
		"%llu sleeps, %llu doorbells\n",
		(unsigned long long)t.received, dt, (unsigned long long)t.prepares,
		(unsigned long long)t.cancels, (unsigned long long)t.sleeps,
		(unsigned long long)rings);
	close(h.efd);
	ring_delete(h.q);
}

/* ---- ping-pong: every push races the consumer's fall into sleep ------------------------- */
struct ping_pong {
	struct rc_mpsc *q;
	int efd;
	atomic_uint consumed; /* items the consumer took, published with release */
	atomic_uint rings;
	atomic_uint write_errors;
};

static void *ping_producer(void *arg)
{
	struct ping_pong *pp = arg;

	for (uint32_t i = 0; i < PING_PONG_ROUNDS; i++) {
		uint64_t one = 1;

		if (!rc_mpsc_push(pp->q, item_of(0, i)))
			atomic_fetch_add(&pp->write_errors, 1); /* cannot be full: one in flight */
		if (rc_mpsc_wake_needed(pp->q)) {
			atomic_fetch_add(&pp->rings, 1);
			if (write(pp->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
				atomic_fetch_add(&pp->write_errors, 1);
		}
		/* Wait until it is taken, so the next push lands as the consumer falls asleep. */
		for (uint32_t spin = 0; atomic_load_explicit(&pp->consumed, memory_order_acquire) <= i;
		     spin++)
			if (spin % 64 == 63)
				sched_yield();
	}
	return NULL;
}

/*
 * One item in flight at a time: the consumer takes it and at once announces sleep while the
 * producer pushes the next one, so the fence pairing is exercised on every round. A lost
 * wake-up leaves both waiting for each other, and the timeout fails the test.
 */
Test(mpsc, ping_pong_wakes, .timeout = 120)
{
	struct ping_pong pp = { .q = ring_new(8), .efd = eventfd(0, EFD_CLOEXEC) };
	uint32_t received = 0, bad = 0, sleeps = 0;
	pthread_t th;
	void *items[8];
	uint64_t v;

	cr_assert(ge(int, pp.efd, 0));
	cr_assert(eq(int, pthread_create(&th, NULL, ping_producer, &pp), 0));
	while (received < PING_PONG_ROUNDS) {
		uint32_t n = rc_mpsc_pop(pp.q, items, 8);

		for (uint32_t i = 0; i < n; i++)
			bad += counter_of(items[i]) != received++;
		if (n) {
			atomic_store_explicit(&pp.consumed, received, memory_order_release);
			continue;
		}
		rc_mpsc_sleep_prepare(pp.q);
		if (rc_mpsc_sleep_cancel(pp.q))
			continue;
		cr_assert(eq(long, (long)read(pp.efd, &v, sizeof(v)), 8));
		sleeps++;
		rc_mpsc_sleep_end(pp.q);
	}
	pthread_join(th, NULL);
	cr_assert(eq(u32, bad, 0));
	cr_assert(eq(u32, atomic_load(&pp.write_errors), 0));
	cr_assert(le(u32, sleeps, atomic_load(&pp.rings)));
	fprintf(stderr, "mpsc ping-pong: %u rounds, %u sleeps, %u doorbells\n", PING_PONG_ROUNDS,
		sleeps, atomic_load(&pp.rings));
	close(pp.efd);
	ring_delete(pp.q);
}
