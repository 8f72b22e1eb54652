/*
 * ringcast-bench's main thread: reads the host's limits and sizes the run to them (saying
 * which one lowered it), prepares the handshake keys and source addresses, starts one worker
 * per --threads, sequences the phases (ramp, subscribe, warmup, measure, drain, close) with
 * every wait bounded, samples the server process, then joins the workers and reports.
 * Workers only read what is prepared here, except the progress atomics they publish.
 */
#include <errno.h>
#include <openssl/base64.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"
#include "base/rc_assert.h"
#include "handshake.h"

#define POLL_NS 10000000ull /* the main thread looks at progress every 10 ms */
#define SUBSCRIBE_WAIT_NS 5000000000ull
#define SENT_NS_BYTES_LIMIT (1ull << 30)

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};

	nanosleep(&ts, NULL);
}

static uint64_t s_to_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* Sums one progress field over the workers. */
#define SUM(run, field)                                                                            \
	({                                                                                         \
		uint64_t s_ = 0;                                                                   \
		for (uint32_t i_ = 0; i_ < (run)->cfg->threads; i_++)                              \
			s_ += atomic_load_explicit(&(run)->threads[i_].field,                      \
						   memory_order_relaxed);                          \
		s_;                                                                                \
	})

static const char *const phase_names[] = {
	[RCB_PH_RAMP] = "ramp",	      [RCB_PH_SUBSCRIBE] = "subscribe", [RCB_PH_WARMUP] = "warmup",
	[RCB_PH_MEASURE] = "measure", [RCB_PH_DRAIN] = "drain",		[RCB_PH_CLOSE] = "close",
	[RCB_PH_DONE] = "done",
};

static void set_phase(struct rcb_run *run, enum rcb_phase p)
{
	uint64_t now = rcb_now_ns();

	/* --progress: scripts sample the server exactly when a phase starts. */
	if (run->cfg->progress && run->threads)
		fprintf(stderr, "ringcast-bench: phase %s open=%llu t=%.3f\n", phase_names[p],
			(unsigned long long)SUM(run, open_now),
			(double)(now - run->start_ns) / 1e9);
	/* Pairs with rcb_phase()'s acquire load: measure_start_ns and the like are visible. */
	atomic_store_explicit(&run->phase, (int)p, memory_order_release);
}

static uint32_t read_port_range(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	unsigned lo = 32768, hi = 60999;

	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768, hi = 60999;
		fclose(f);
	}
	return hi >= lo ? hi - lo + 1 : 1;
}

/* Slots each thread needs beyond its held connections: churn, burst, publisher. */
static uint32_t extra_slots(const struct rcb_config *cfg, uint32_t i)
{
	uint32_t extra = 0;

	if (cfg->churn_rate > 0) {
		double per = cfg->churn_rate / cfg->threads * 2;

		extra += (uint32_t)(per < 64 ? 64 : per > 20000 ? 20000 : per);
	}
	extra += cfg->burst / cfg->threads + (i < cfg->burst % cfg->threads);
	extra += (i == 0 && cfg->scenario == RCB_SC_BROADCAST);
	return extra;
}

/* Sizes the run to RLIMIT_NOFILE (per ring for direct descriptors, per process otherwise) and
 * to the ephemeral ports of the source addresses; lowers N and says why when it must. */
static int plan_limits(struct rcb_run *run, struct rcb_config *cfg)
{
	struct rlimit rl;
	uint64_t ports = (uint64_t)read_port_range() * RC_MAX(cfg->src_count, 1u);
	uint64_t cap, extra = 0;
	static char why[256];

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	for (uint32_t i = 0; i < cfg->threads; i++)
		extra += extra_slots(cfg, i);
	if (run->use_direct) {
		run->slots_limit = (uint32_t)RC_MIN(rl.rlim_cur, 1u << 20);
		cap = (uint64_t)run->slots_limit * cfg->threads;
		snprintf(why, sizeof(why), "RLIMIT_NOFILE %u per ring x %u threads",
			 run->slots_limit, cfg->threads);
	} else {
		run->slots_limit = (uint32_t)(rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 1);
		cap = run->slots_limit;
		snprintf(why, sizeof(why), "RLIMIT_NOFILE %u per process (fds)", run->slots_limit);
	}
	run->connections_asked = cfg->connections;
	if (cfg->connections + extra > cap) {
		cfg->connections =
			cap > extra + cfg->threads ? (uint32_t)(cap - extra - cfg->threads) : 0;
		run->capped_by = why;
	}
	if (cfg->connections + extra > ports) {
		cfg->connections = ports > extra ? (uint32_t)(ports - extra) : 0;
		snprintf(why, sizeof(why), "ephemeral ports: %u source addresses x %u ports",
			 RC_MAX(cfg->src_count, 1u), read_port_range());
		run->capped_by = why;
	}
	if (run->capped_by) {
		bool by_rings = run->use_direct && cfg->connections + extra <= ports;

		fprintf(stderr, "ringcast-bench: %u connections asked, %u possible: bounded by %s",
			run->connections_asked, cfg->connections, run->capped_by);
		if (by_rings)
			fprintf(stderr, " (--threads %llu would hold them)",
				(unsigned long long)((run->connections_asked + extra) /
							     run->slots_limit +
						     1));
		fputc('\n', stderr);
	}
	return cfg->connections || cfg->burst || cfg->churn_rate > 0 ? 0 : -ENOSPC;
}

static int make_keys(struct rcb_run *run)
{
	uint8_t raw[16];

	for (int i = 0; i < RCB_KEYS; i++) {
		if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
			return -EIO;
		EVP_EncodeBlock((uint8_t *)run->keys[i], raw, sizeof(raw));
		rc_handshake_accept_key(run->keys[i], strlen(run->keys[i]), run->accepts[i]);
	}
	return 0;
}

static int make_sources(struct rcb_run *run)
{
	uint32_t n = run->cfg->src_count;

	run->src = calloc(RC_MAX(n, 1u), sizeof(*run->src));
	if (!run->src)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		run->src[i].sin_family = AF_INET;
		run->src[i].sin_addr.s_addr = htonl(0x7f000000u | ((i / 253) << 8) | (i % 253 + 2));
	}
	return 0;
}

static int make_thread(struct rcb_run *run, uint32_t i)
{
	const struct rcb_config *cfg = run->cfg;
	struct rcb_thread *t = &run->threads[i];
	uint32_t hold = cfg->connections / cfg->threads + (i < cfg->connections % cfg->threads);
	uint64_t slots = (uint64_t)hold + extra_slots(cfg, i);

	t->run = run;
	t->index = i;
	t->publisher = -1;
	t->hold_target = hold;
	t->burst_target = cfg->burst / cfg->threads + (i < cfg->burst % cfg->threads);
	t->conns_count = (uint32_t)RC_MAX(slots, 1u);
	t->seen_phase = RCB_PH_RAMP;
	t->rng = cfg->seed * 0x9E3779B97F4A7C15ull + i + 1;
	rcb_stats_init(&t->stats);
	if ((uint64_t)t->conns_count * cfg->inflight * 8 > SENT_NS_BYTES_LIMIT) {
		fprintf(stderr, "ringcast-bench: connections x --inflight too large\n");
		return -EINVAL;
	}
	t->conns = calloc(t->conns_count, sizeof(*t->conns));
	t->free_slots = calloc(t->conns_count, sizeof(uint32_t));
	t->dirty = calloc(t->conns_count, sizeof(uint32_t));
	t->rearm = calloc(t->conns_count, sizeof(uint32_t));
	t->sent_ns = calloc((size_t)t->conns_count * cfg->inflight, sizeof(uint64_t));
	t->series = calloc(RCB_SERIES_LIMIT, sizeof(uint32_t));
	if (i == 0)
		t->topic_published = calloc(cfg->topics, sizeof(uint64_t));
	if (!t->conns || !t->free_slots || !t->dirty || !t->rearm || !t->sent_ns || !t->series ||
	    (i == 0 && !t->topic_published))
		return -ENOMEM;
	for (uint32_t s = 0; s < t->conns_count; s++) {
		t->conns[s].fd = -1;
		t->conns[s].id = s * cfg->threads + i;
		/* Popped from the top: slot 0 goes first. */
		t->free_slots[s] = t->conns_count - 1 - s;
	}
	t->free_count = t->conns_count;
	return 0;
}

/* Subscribers per topic: held connection ids are spread by id % topics. */
static int count_subscribers(struct rcb_run *run)
{
	const struct rcb_config *cfg = run->cfg;

	run->subs_per_topic = calloc(cfg->topics, sizeof(uint32_t));
	if (!run->subs_per_topic)
		return -ENOMEM;
	for (uint32_t i = 0; i < cfg->threads; i++) {
		const struct rcb_thread *t = &run->threads[i];

		/* Held connections take the first slots (see make_thread's free stack). */
		for (uint32_t s = 0; s < t->hold_target; s++)
			run->subs_per_topic[t->conns[s].id % cfg->topics]++;
	}
	return 0;
}

/* Waits (bounded by limit_ns from now) until done() holds, sampling as it goes. */
static void wait_until(struct rcb_run *run, struct rcb_result *res, uint64_t limit_ns,
		       bool (*done)(struct rcb_run *run))
{
	uint64_t end = rcb_now_ns() + limit_ns;

	while (rcb_now_ns() < end && !done(run)) {
		sleep_ns(POLL_NS);
		rcb_sample_tick(run, res);
	}
}

static bool ramp_done(struct rcb_run *run)
{
	uint64_t target = run->cfg->connections + (run->cfg->scenario == RCB_SC_BROADCAST);

	return SUM(run, settled) >= target;
}

static bool subscribe_done(struct rcb_run *run)
{
	uint64_t done = run->cfg->sub_ack ? SUM(run, answered) : SUM(run, subscribed);

	return done + (run->cfg->scenario == RCB_SC_BROADCAST) >= SUM(run, open_now);
}

static bool drain_done(struct rcb_run *run)
{
	if (run->cfg->scenario == RCB_SC_BROADCAST)
		return SUM(run, received) >= rcb_pubsub_expected(run);
	return SUM(run, outstanding) == 0;
}

static bool all_closed(struct rcb_run *run)
{
	return SUM(run, alive) == 0;
}

static bool never(struct rcb_run *run)
{
	(void)run;
	return false;
}

static bool has_echo(const struct rcb_config *cfg)
{
	return cfg->scenario == RCB_SC_ECHO || cfg->scenario == RCB_SC_ENDURANCE ||
	       (cfg->scenario == RCB_SC_CHURN && cfg->msg_rate > 0);
}

static void orchestrate(struct rcb_run *run, struct rcb_result *res)
{
	const struct rcb_config *cfg = run->cfg;

	res->srv_before = rcb_proc_sample(cfg->server_pid);
	wait_until(run, res, s_to_ns(cfg->ramp_timeout_s), ramp_done);
	res->ramp_s = (double)(rcb_now_ns() - run->start_ns) / 1e9;
	res->srv_ramped = rcb_proc_sample(cfg->server_pid);
	if (cfg->scenario == RCB_SC_BROADCAST) {
		set_phase(run, RCB_PH_SUBSCRIBE);
		wait_until(run, res, SUBSCRIBE_WAIT_NS, subscribe_done);
		wait_until(run, res, s_to_ns(cfg->settle_s), never);
	}
	if (cfg->warmup_s > 0 && has_echo(cfg)) {
		set_phase(run, RCB_PH_WARMUP);
		wait_until(run, res, s_to_ns(cfg->warmup_s), never);
	}
	res->srv_start = rcb_proc_sample(cfg->server_pid);
	run->measure_start_ns = rcb_now_ns();
	set_phase(run, RCB_PH_MEASURE);
	wait_until(run, res, s_to_ns(cfg->duration_s), never);
	run->measure_end_ns = rcb_now_ns();
	res->srv_end = rcb_proc_sample(cfg->server_pid);
	res->measure_s = (double)(run->measure_end_ns - run->measure_start_ns) / 1e9;
	res->open_at_end = (uint32_t)SUM(run, open_now);
	set_phase(run, RCB_PH_DRAIN);
	if (has_echo(cfg) || cfg->scenario == RCB_SC_BROADCAST)
		wait_until(run, res, s_to_ns(cfg->drain_s), drain_done);
	if (has_echo(cfg))
		res->missing_after_drain = SUM(run, outstanding);
	if (cfg->scenario == RCB_SC_BROADCAST)
		res->drained = SUM(run, received) >= rcb_pubsub_expected(run);
	set_phase(run, RCB_PH_CLOSE);
	wait_until(run, res, s_to_ns(cfg->close_timeout_s) + 1000000000ull, all_closed);
	set_phase(run, RCB_PH_DONE);
}

static int start_threads(struct rcb_run *run)
{
	const struct rcb_config *cfg = run->cfg;
	uint64_t end = rcb_now_ns() + 10000000000ull;

	for (uint32_t i = 0; i < cfg->threads; i++) {
		if (pthread_create(&run->threads[i].tid, NULL, rcb_loop_main, &run->threads[i])) {
			fprintf(stderr, "ringcast-bench: pthread_create failed\n");
			exit(2);
		}
	}
	for (uint32_t i = 0; i < cfg->threads; i++) {
		struct rcb_thread *t = &run->threads[i];
		int r;

		while ((r = atomic_load_explicit(&t->ready, memory_order_acquire)) == 0 &&
		       rcb_now_ns() < end)
			sleep_ns(1000000);
		if (r != 1) {
			fprintf(stderr, "ringcast-bench: thread %u: ring setup failed: %s%s\n", i,
				strerror(r ? -r : ETIMEDOUT),
				r == -EMFILE ? " (fixed-file table above RLIMIT_NOFILE)" : "");
			return r ? r : -ETIMEDOUT;
		}
	}
	return 0;
}

static int prepare(struct rcb_run *run, struct rcb_config *cfg)
{
	int ret;

	if (!rcb_hist_selftest()) {
		fprintf(stderr, "ringcast-bench: histogram self-test failed\n");
		return -EINVAL;
	}
	if (!cfg->seed)
		cfg->seed = (uint64_t)time(NULL);
	run->cfg = cfg;
	ret = rcb_loop_probe(run);
	if (ret == 0 && cfg->tls)
		ret = rcb_tls_init();
	if (ret)
		return ret;
	run->use_direct = cfg->direct;
	run->whole_messages = cfg->scenario == RCB_SC_BROADCAST;
	ret = plan_limits(run, cfg);
	if (ret) {
		fprintf(stderr, "ringcast-bench: no connection fits the limits\n");
		return ret;
	}
	ret = make_keys(run);
	if (!ret)
		ret = make_sources(run);
	run->threads = calloc(cfg->threads, sizeof(*run->threads));
	if (!run->threads)
		return -ENOMEM;
	for (uint32_t i = 0; i < cfg->threads && !ret; i++)
		ret = make_thread(run, i);
	if (!ret)
		ret = count_subscribers(run);
	return ret;
}

int main(int argc, char **argv)
{
	static struct rcb_config cfg;
	static struct rcb_run run;
	static struct rcb_result res;
	int ret;

	signal(SIGPIPE, SIG_IGN);
	ret = rcb_opts_parse(argc, argv, &cfg);
	if (ret)
		return ret > 0 ? 0 : 2;
	ret = prepare(&run, &cfg);
	if (ret) {
		if (ret != -EINVAL && ret != -ENOSPC)
			fprintf(stderr, "ringcast-bench: setup failed: %s\n", strerror(-ret));
		return 2;
	}
	run.start_ns = rcb_now_ns();
	run.deadline_ns = run.start_ns +
			  s_to_ns(cfg.ramp_timeout_s + cfg.settle_s + cfg.warmup_s +
				  cfg.duration_s + cfg.drain_s + cfg.close_timeout_s) +
			  30000000000ull;
	set_phase(&run, RCB_PH_RAMP);
	ret = start_threads(&run);
	if (ret)
		set_phase(&run, RCB_PH_DONE);
	else
		orchestrate(&run, &res);
	for (uint32_t i = 0; i < cfg.threads; i++)
		if (run.threads[i].tid)
			pthread_join(run.threads[i].tid, NULL);
	if (ret)
		return 2;
	res.wall_s = (double)(rcb_now_ns() - run.start_ns) / 1e9;
	ret = rcb_report(&run, &res);
	for (uint32_t i = 0; i < cfg.threads; i++)
		rcb_loop_teardown(&run.threads[i]);
	return ret;
}
