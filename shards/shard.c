/*
 * A shard: one thread pinned to one CPU, owning one io_uring, one SO_REUSEPORT listener, a
 * connection table, a provided-buffer ring and a timing wheel. The loop turn is: poll the
 * inbox, flush the turn's sends, submit everything and wait for completions or the next
 * tick, dispatch a bounded batch of completions to the layer that owns each operation,
 * advance the wheel, sweep once a second; and the drain. The top of the runtime's layers
 * with app.c. Shard thread, except rc_shard_start (main thread).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libdeflate.h>

#include "arena.h"
#include "bufring.h"
#include "conn_rt.h"
#include "memory.h"
#include "outbox.h"
#include "pubsub.h"
#include "presence_redis.h"
#include "redis_conn.h"
#include "sendq.h"
#include "session.h"
#include "shard.h"
#include "tls_ctx.h"
#include "tls_rt.h"

/* Cancels the multishot accept of one listener (RC_ACCEPT_PUBLIC, _ADMIN or _TLS). */
static void accept_cancel(struct rc_shard *s, uint32_t which)
{
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_cancel64(sqe, rc_ud(RC_OP_ACCEPT, 0, which), 0);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_NONE, 0, 0));
}

/* Stops accepting and starts closing every connection (close 1001 to WebSockets). */
static void drain_begin(struct rc_shard *s)
{
	if (s->draining)
		return;
	s->draining = true;
	s->drain_deadline_ms = s->clock.now_ms + s->app->cfg.drain_timeout_ms;
	/* Stop accepting. rc_app_stop() already shut every listener down (no new SYN lands on
	 * any shard); the descriptor itself closes in rc_app_destroy(). */
	if (s->accept_armed)
		accept_cancel(s, RC_ACCEPT_PUBLIC);
	if (s->admin_accept_armed)
		accept_cancel(s, RC_ACCEPT_ADMIN);
	if (s->tls_accept_armed)
		accept_cancel(s, RC_ACCEPT_TLS);
	for (uint32_t i = 0; i < s->conns_cap; i++) {
		struct rc_conn *c = &s->conns[i];
		if (c->state == RC_CONN_OPEN)
			rc_conn_ws_close(c, RC_WS_CLOSE_GOING_AWAY, "server shutting down",
					 RC_CLOSE_drain);
		else if (c->state == RC_CONN_HTTP)
			rc_conn_terminate(c, RC_CLOSE_drain);
	}
	/* The other nodes stop listing this one's users now, not when their entries expire. */
	if (s->redis_links)
		rc_xnode_drain(s);
}

/* After the drain deadline every remaining connection is closed without waiting. */
static void drain_force(struct rc_shard *s)
{
	for (uint32_t i = 0; i < s->conns_cap; i++) {
		struct rc_conn *c = &s->conns[i];
		if (c->state != RC_CONN_FREE && c->state != RC_CONN_DOOMED)
			rc_conn_terminate(c, RC_CLOSE_drain);
	}
}

/*
 * The doorbell of foreign threads: a first rc_app_stop() begins the drain, a second stop
 * (drain_forced) ends it now. It stays armed until then so that second stop is heard.
 */
static void wake_complete(struct rc_shard *s)
{
	s->wake_armed = false;
	/* Both pair with the release stores in rc_app_stop() and drain_now() (app.c). */
	if (atomic_load_explicit(&s->app->stopping, memory_order_acquire))
		drain_begin(s);
	if (s->draining && atomic_load_explicit(&s->app->drain_forced, memory_order_acquire))
		s->drain_deadline_ms = s->clock.now_ms;
	else
		rc_uring_wake_arm(s);
}

static void dispatch(struct rc_shard *s, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum rc_op op = rc_ud_op(ud);
	struct rc_conn *c;

	switch (op) {
	case RC_OP_ACCEPT:
		c = rc_conn_accept_complete(s, cqe);
		if (c)
			rc_conn_accepted(c);
		return;
	case RC_OP_WAKE: wake_complete(s); return;
	case RC_OP_NONE:
	case RC_OP_MSG: return; /* the loop polls the inbox every turn */
	case RC_OP_RECV:
		c = rc_conn_lookup(s, ud);
		if (c)
			rc_conn_recv_complete(c, cqe);
		else if (cqe->flags & IORING_CQE_F_BUFFER)
			rc_bufring_return(s, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		return;
	case RC_OP_SEND_ZC:
		c = rc_conn_lookup(s, ud);
		if (c && (cqe->flags & IORING_CQE_F_NOTIF))
			rc_send_zc_notified(c);
		else if (c)
			rc_send_complete(c, cqe->res);
		return;
	case RC_OP_SEND:
		c = rc_conn_lookup(s, ud);
		if (c)
			rc_send_complete(c, cqe->res);
		return;
	case RC_OP_REDIS_CONNECT:
	case RC_OP_REDIS_SEND:
	case RC_OP_REDIS_RECV: rc_redis_complete(s, cqe); return;
	case RC_OP_CANCEL:
	case RC_OP_CLOSE:
	case RC_OP_SHUTDOWN:
		c = rc_conn_lookup(s, ud);
		if (c)
			rc_conn_op_complete(c, op, cqe->res);
		return;
	default: RC_ASSERT(!"unknown op in user_data");
	}
}

/* Counts a loop turn of us microseconds (from one clock read to the next: its work, its
 * submit and its wait) in the turn-length histogram. */
static void turn_count(struct rc_shard *s, uint64_t us)
{
	static const uint64_t bounds[] = RC_TURN_BOUNDS_US;
	uint32_t b = 0;
	while (b < RC_ARRAY_LEN(bounds) && us > bounds[b])
		b++;
	s->stats.loop_turns++;
	s->stats.turn_us[b]++;
	s->stats.turn_us_sum += us;
}

/* A send's completion (either kind): the one kind a loop turn takes without bound. */
static bool is_send(uint64_t ud)
{
	return rc_ud_op(ud) == RC_OP_SEND || rc_ud_op(ud) == RC_OP_SEND_ZC;
}

static bool loop_done(const struct rc_shard *s)
{
	return s->draining && s->conns_live == 0 && !s->accept_armed && !s->admin_accept_armed &&
	       !s->tls_accept_armed && (!s->redis_links || rc_redis_links_idle(s));
}

/* Submits the turn's SQEs and waits for a completion, the next tick, or a doorbell. */
static int submit_and_wait(struct rc_shard *s, unsigned wait_nr)
{
	const struct rc_config *cfg = &s->app->cfg;
	struct __kernel_timespec ts = {0, (long long)cfg->timer_tick_ms * 1000000ll};
	struct io_uring_cqe *cqe;
	s->stats.submits++;
	/* Not waiting still reaps: with DEFER_TASKRUN only an enter that gets events runs the
	 * ring's task work, so a plain submit would post no completion while cross-shard work
	 * keeps coming, and a shard whose outbox waits for one that has stopped would spin
	 * without ever closing its connections (a drain that never ends, issue 14). */
	if (wait_nr == 0)
		return io_uring_submit_and_get_events(&s->ring);
	/* Producers ring the doorbell only while we sleep; re-check after announcing it. */
	rc_mpsc_sleep_prepare(&s->inbox);
	if (rc_mpsc_sleep_cancel(&s->inbox))
		return io_uring_submit_and_get_events(&s->ring);
	int rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, wait_nr, &ts, NULL);
	rc_mpsc_sleep_end(&s->inbox);
	return rc;
}

static void loop(struct rc_shard *s)
{
	const struct rc_config *cfg = &s->app->cfg;
	uint32_t batch_max = (uint32_t)cfg->cqe_batch_max;
	unsigned cq_max = s->ring.cq.ring_entries;
	struct io_uring_cqe *cqe;

	while (!loop_done(s)) {
		rc_pubsub_poll(s);
		if (s->redis_links) {
			rc_xnode_turn(s);
			rc_redis_links_turn(s);
		}
		rc_tls_turn(s);
		rc_shard_flush(s);
		rc_bufring_commit(s);
		/* Work waiting in outboxes, put-off receives or put-off handshakes: poll, do not
		 * sleep. */
		int rc = submit_and_wait(s, rc_outbox_waiting(s) || s->rx_fifo_count ||
						    s->dirty_count || rc_tls_waiting(s) ? 0 : 1);
		RC_ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EBUSY || rc == -EAGAIN);
		uint64_t turn_start_us = s->clock.now_us;
		rc_clock_update(&s->clock);
		turn_count(s, s->clock.now_us - turn_start_us);
		rc_conn_rx_turn(s);
		unsigned head, n = 0, work = 0;
		io_uring_for_each_cqe (&s->ring, head, cqe) {
			/* A send's completion is bounded work that only marks the socket for its
			 * next send: all of them are taken each turn (a turn issues at most
			 * sends_per_turn_max), so a publish's receive does not wait in the CQ
			 * behind a round of them (issue 14). Other completions are bounded by
			 * batch_max, and the walk by the CQ's size (a full SQ submits and may post
			 * more meanwhile). */
			if (!is_send(io_uring_cqe_get_data64(cqe)))
				work++;
			dispatch(s, cqe);
			if (++n == cq_max || work == batch_max)
				break;
		}
		io_uring_cq_advance(&s->ring, n);
		rc_wheel_advance(&s->wheel, rc_clock_tick(&s->clock), rc_conn_timer_fire, s);
		rc_memory_tick(s);
		if (s->draining && s->clock.now_ms >= s->drain_deadline_ms)
			drain_force(s);
		if (s->clock.now_ms >= s->next_sweep_ms) {
			rc_pubsub_sweep(s);
			rc_sendq_trim(s);
			s->next_sweep_ms = s->clock.now_ms + 1000;
			if (s->index == 0) {
				rc_memory_sample_kernel(s->app);
				rc_tls_app_tick(s->app, s->clock.now_ms);
			}
			/* Debug builds check the shard's tables once a second. */
			RC_DASSERT(rc_conn_table_validate(s));
			RC_DASSERT(rc_pubsub_validate(s));
			RC_DASSERT(rc_wheel_validate(&s->wheel));
		}
	}
	/* The loop exits only while draining, with every record back in the table. */
	RC_ASSERT(s->draining);
	RC_ASSERT(s->conns_live == 0);
}

static int shard_setup(struct rc_shard *s)
{
	int rc = rc_uring_setup(s, s->start_err, sizeof(s->start_err));
	if (rc)
		return rc;
	rc = rc_bufring_setup(s, s->start_err, sizeof(s->start_err));
	if (rc)
		goto out_ring;
	rc = rc_arena_attach(s, s->start_err, sizeof(s->start_err));
	if (rc) {
		rc_bufring_free(s);
		goto out_ring;
	}
	s->deflater = libdeflate_alloc_compressor((int)s->app->cfg.deflate_level);
	s->inflater = libdeflate_alloc_decompressor();
	s->echo_deflater = libdeflate_alloc_compressor((int)s->app->cfg.deflate_echo_level);
	if (!s->deflater || !s->inflater || !s->echo_deflater) {
		snprintf(s->start_err, sizeof(s->start_err), "shard %d: libdeflate: no memory",
			 s->index);
		rc = -ENOMEM;
		goto out_codec;
	}
	rc_clock_start(&s->clock, (uint32_t)s->app->cfg.timer_tick_ms);
	rc = rc_wheel_init(&s->wheel, 4096, 0);
	if (rc) {
		snprintf(s->start_err, sizeof(s->start_err), "shard %d: timing wheel: no memory",
			 s->index);
		goto out_bufring;
	}
	return 0;
out_codec:
	libdeflate_free_compressor(s->deflater);
	libdeflate_free_decompressor(s->inflater);
	libdeflate_free_compressor(s->echo_deflater);
	s->deflater = NULL;
	s->inflater = NULL;
	s->echo_deflater = NULL;
out_bufring:
	rc_bufring_free(s);
out_ring:
	io_uring_queue_exit(&s->ring);
	return rc;
}

static void pin(struct rc_shard *s)
{
	cpu_set_t allowed, one;
	if (!s->app->cfg.pin_shards || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return;
	int nth = s->index % CPU_COUNT(&allowed), seen = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || seen++ != nth)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0)
			s->cpu = cpu;
		return;
	}
}

/* Startup handshake with rc_app_run: shards_ready counts it once start_rc (and start_err) say
 * whether the setup succeeded. */
static void *shard_main(void *arg)
{
	struct rc_shard *s = arg;
	rc_runtime_enter(s);
	pin(s);
	s->start_rc = shard_setup(s);
	s->running = s->start_rc == 0;
	/* Pairs with the acquire load in wait_ready(), which then reads start_rc. */
	atomic_fetch_add_explicit(&s->app->shards_ready, 1, memory_order_release);
	if (s->start_rc == 0) {
		rc_conn_accept_arm(s);
		rc_uring_wake_arm(s);
		if (atomic_load_explicit(&s->app->stopping, memory_order_acquire))
			drain_begin(s);
		loop(s);
		rc_redis_links_stop(s);
		RC_DASSERT(rc_conn_table_validate(s));
		RC_DASSERT(rc_pubsub_validate(s));
		/* The ring outlives the thread: other shards may still ring its doorbell until
		 * they stop too, so rc_app_destroy closes it after every thread has joined. */
		rc_wheel_free(&s->wheel);
		rc_bufring_free(s);
		rc_pools_free(s);
		libdeflate_free_compressor(s->deflater);
		libdeflate_free_decompressor(s->inflater);
		libdeflate_free_compressor(s->echo_deflater);
		rc_grow_free(s, (void **)&s->zbuf, &s->zbuf_cap);
		rc_grow_free(s, (void **)&s->ibuf, &s->ibuf_cap);
	}
	/* Pairs with the acquire load in rc_app_run's wait loop. */
	atomic_fetch_add_explicit(&s->app->shards_exited, 1, memory_order_release);
	return NULL;
}

int rc_shard_start(struct rc_shard *s)
{
	s->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (s->wake_fd < 0)
		return -errno;
	int rc = rc_mpsc_init(&s->inbox, (uint32_t)s->app->cfg.mpsc_ring_entries);
	if (rc == 0)
		rc = rc_pubsub_init(s);
	if (rc != 0)
		return rc;
	s->conns = calloc(s->conns_cap, sizeof(*s->conns));
	s->dirty = calloc(s->conns_cap, sizeof(*s->dirty));
	if (!s->conns || !s->dirty || rc_conn_rx_setup(s) != 0)
		return -ENOMEM;
	if (s->app->tls && rc_tls_shard_init(s) != 0)
		return -ENOMEM;
	if (s->app->auth) {
		s->tokens = calloc(s->conns_cap, sizeof(*s->tokens));
		if (!s->tokens)
			return -ENOMEM;
	}
	rc = pthread_create(&s->thread, NULL, shard_main, s);
	return -rc;
}
