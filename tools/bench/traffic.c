/*
 * What the scenarios do with their connections, per worker thread: opening the held ones at
 * --rate, the churn and spike connects, echo traffic (closed loop: K in flight; open loop:
 * --msg-rate per connection), reconnecting with exponential backoff and jitter, connect and
 * close timeouts, and the reaction to the phases the main thread announces. Counting of
 * losses and failures lives here too, because whether a loss is an error depends on the
 * scenario. The owning worker thread.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "bench.h"
#include "base/rc_assert.h"
#include "ws_frame.h"

#define OPEN_PER_TURN 512	 /* rate-limited opens issued in one loop turn at most */
#define BURST_PER_TURN 65536	 /* spike: everything at once, within reason */
#define SCAN_BASE_NS 10000000ull /* timeout/backoff scan period ... */
#define SCAN_PER_SLOT_NS 1000ull /* ... plus 1 us per slot, so big tables scan less often */
#define ECHO_PER_TURN 65536	 /* open-loop sends in one loop turn at most */
#define WAIT_BUSY_NS 1000000ull	 /* wake-up period while rates drive work */
#define WAIT_IDLE_NS 10000000ull /* otherwise: phase changes are seen within 10 ms */

int rcb_phase(const struct rcb_thread *t)
{
	/* Pairs with the main thread's release store in set_phase(). */
	return atomic_load_explicit(&t->run->phase, memory_order_acquire);
}

bool rcb_measuring(const struct rcb_thread *t)
{
	return t->seen_phase == RCB_PH_MEASURE;
}

static bool echo_traffic(const struct rcb_config *cfg)
{
	return cfg->scenario == RCB_SC_ECHO || cfg->scenario == RCB_SC_ENDURANCE ||
	       (cfg->scenario == RCB_SC_CHURN && cfg->msg_rate > 0);
}

static bool traffic_phase(int phase)
{
	return phase == RCB_PH_WARMUP || phase == RCB_PH_MEASURE;
}

static bool reconnecting(const struct rcb_thread *t, const struct rcb_conn *c)
{
	return t->run->cfg->scenario == RCB_SC_RECONNECT && c->role == RCB_ROLE_HOLD &&
	       t->seen_phase < RCB_PH_CLOSE;
}

bool rcb_traffic_keeps_tx(const struct rcb_thread *t, const struct rcb_conn *c)
{
	return c->role == RCB_ROLE_PUBLISHER ||
	       (c->role == RCB_ROLE_HOLD && echo_traffic(t->run->cfg));
}

uint64_t rcb_traffic_wait_ns(const struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t wait = WAIT_IDLE_NS;

	if ((t->hold_started < t->hold_target && cfg->rate > 0) ||
	    (traffic_phase(t->seen_phase) && cfg->msg_rate > 0) ||
	    (t->seen_phase == RCB_PH_MEASURE && cfg->churn_rate > 0))
		wait = WAIT_BUSY_NS;
	/* The publisher wakes when its next message is due: broadcast latency counts from
	 * the scheduled time, so a coarser wake-up would be measured as server latency. */
	if (t->publisher >= 0 && t->seen_phase == RCB_PH_MEASURE) {
		uint64_t due = t->run->measure_start_ns +
			       (uint64_t)((double)t->published * 1e9 / cfg->pub_rate);

		wait = RC_MIN(wait, due > t->now_ns ? due - t->now_ns : 0);
	}
	return wait;
}

/* Delay before the next attempt: base * factor^attempt, capped, times 1 +- jitter. */
static uint64_t backoff_ns(struct rcb_thread *t, unsigned attempt)
{
	const struct rcb_config *cfg = t->run->cfg;
	double d = cfg->backoff_base_s * pow(cfg->backoff_factor, attempt);
	double u = (double)(rcb_rng_next(t) >> 11) / 9007199254740992.0; /* [0, 1) */

	if (d > cfg->backoff_cap_s)
		d = cfg->backoff_cap_s;
	d *= 1 + cfg->jitter * (2 * u - 1);
	RC_ASSERT(d >= 0);
	return (uint64_t)(d * 1e9);
}

static void settle(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->role == RCB_ROLE_CHURN || (c->life & RCB_LF_SETTLED))
		return;
	c->life |= RCB_LF_SETTLED;
	t->settled_local++;
}

static void kick_echo(struct rcb_thread *t, struct rcb_conn *c)
{
	const struct rcb_config *cfg = t->run->cfg;

	if (c->role != RCB_ROLE_HOLD || cfg->msg_rate > 0 || c->tx_seq != c->rx_seq)
		return;
	for (uint32_t i = 0; i < cfg->inflight; i++)
		rcb_ws_queue_echo(t, c);
}

void rcb_traffic_on_open(struct rcb_thread *t, struct rcb_conn *c)
{
	const struct rcb_config *cfg = t->run->cfg;

	t->stats.counters[RCB_C_OPENED]++;
	c->flags |= RCB_CF_WAS_OPEN;
	c->life |= RCB_LF_OPENED;
	c->attempt = 0;
	settle(t, c);
	if (t->open_count > t->peak_open)
		t->peak_open = t->open_count;
	if (c->flags & RCB_CF_RETRY) {
		t->stats.counters[RCB_C_RECONNECTED]++;
		t->last_back_ns = t->now_ns;
	}
	if (c->role == RCB_ROLE_CHURN || t->seen_phase >= RCB_PH_CLOSE) {
		rcb_ws_close(t, c, RC_WS_CLOSE_NORMAL);
		return;
	}
	if (c->role != RCB_ROLE_HOLD)
		return;
	if (cfg->scenario == RCB_SC_BROADCAST && t->seen_phase >= RCB_PH_SUBSCRIBE)
		rcb_pubsub_subscribe(t, c);
	if (echo_traffic(cfg) && traffic_phase(t->seen_phase))
		kick_echo(t, c);
}

void rcb_traffic_on_echo(struct rcb_thread *t, struct rcb_conn *c, bool payload_ok)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t seq = c->rx_seq, sent;

	if (seq >= c->tx_seq) {
		/* Nothing of ours is outstanding: the server sent something we never did. */
		t->stats.counters[RCB_C_WRONG_PAYLOAD]++;
		return;
	}
	sent = t->sent_ns[(size_t)(c - t->conns) * cfg->inflight + seq % cfg->inflight];
	if (!payload_ok)
		t->stats.counters[RCB_C_WRONG_PAYLOAD]++;
	if (t->run->measure_start_ns && sent >= t->run->measure_start_ns)
		rcb_hist_record(&t->stats.latency, t->now_ns - sent);
	if (rcb_measuring(t))
		t->stats.counters[RCB_C_MSGS_RECV]++;
	t->stats.counters[RCB_C_MSGS_RECV_TOTAL]++;
	c->rx_seq++;
	RC_ASSERT(t->outstanding_local > 0);
	t->outstanding_local--;
	if (cfg->msg_rate == 0 && traffic_phase(t->seen_phase) && c->state == RCB_CS_OPEN &&
	    c->role == RCB_ROLE_HOLD)
		rcb_ws_queue_echo(t, c);
}

void rcb_traffic_on_lost(struct rcb_thread *t, struct rcb_conn *c, int err)
{
	RC_ASSERT(err > 0);
	if (c->flags & RCB_CF_WAS_OPEN) {
		/* Echoes in flight die with the connection, counted by how it ended: a close
		 * the server chose (its code is in close_codes) or a cut, which is an error. */
		RC_ASSERT(c->rx_seq <= c->tx_seq);
		RC_ASSERT(t->outstanding_local >= c->tx_seq - c->rx_seq);
		t->outstanding_local -= c->tx_seq - c->rx_seq;
		c->rx_seq = c->tx_seq;
		c->life |= RCB_LF_LOST;
		if (reconnecting(t, c)) {
			t->stats.counters[RCB_C_DISCONNECTS]++;
			if (!t->first_loss_ns)
				t->first_loss_ns = t->now_ns;
		} else if (!(c->flags & RCB_CF_SERVER_CLOSE)) {
			t->stats.counters[RCB_C_UNEXPECTED_CLOSES]++;
		}
		return;
	}
	settle(t, c);
	/* Retries while the server is down fail by design; first attempts count. */
	if (reconnecting(t, c) && (c->flags & RCB_CF_RETRY))
		return;
	if (c->flags & RCB_CF_CONNECTED)
		t->stats.counters[RCB_C_HANDSHAKE_FAILED]++;
	else
		t->stats.counters[RCB_C_CONNECT_FAILED]++;
	rcb_stats_limit_hit(&t->stats, err);
}

bool rcb_traffic_on_released(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->flags & RCB_CF_WE_CLOSE)
		t->stats.counters[RCB_C_CLOSED]++;
	if (c->role == RCB_ROLE_CHURN && (c->flags & RCB_CF_WAS_OPEN) &&
	    (c->flags & RCB_CF_WE_CLOSE))
		t->stats.counters[RCB_C_CHURN_CYCLES]++;
	if (c->role == RCB_ROLE_PUBLISHER)
		t->publisher = -1;
	if (!reconnecting(t, c) || (c->flags & RCB_CF_WE_CLOSE))
		return false;
	rcb_conn_free_buffers(c);
	rcb_conn_set_state(t, c, RCB_CS_BACKOFF);
	c->t0_ns = t->now_ns + backoff_ns(t, c->attempt);
	if (c->attempt < UINT8_MAX)
		c->attempt++;
	c->flags = RCB_CF_RETRY;
	return true;
}

static void retry(struct rcb_thread *t, struct rcb_conn *c)
{
	uint64_t bin = (t->now_ns - t->run->start_ns) / RCB_SERIES_BIN_NS;

	t->stats.counters[RCB_C_RECONNECT_ATTEMPTS]++;
	if (t->series && bin < RCB_SERIES_LIMIT)
		t->series[bin]++;
	rcb_conn_start(t, c);
}

/* Timeouts and due reconnects. A scan walks every slot, so it runs only while something is
 * pending, and less often for big tables. */
static void scan(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t connect_ns = (uint64_t)(cfg->connect_timeout_s * 1e9);
	uint64_t close_ns = (uint64_t)(cfg->close_timeout_s * 1e9);

	if (t->pending == 0 || t->now_ns < t->scan_ns)
		return;
	t->scan_ns = t->now_ns + SCAN_BASE_NS + SCAN_PER_SLOT_NS * t->conns_count;
	for (uint32_t i = 0; i < t->conns_count; i++) {
		struct rcb_conn *c = &t->conns[i];

		switch (c->state) {
		case RCB_CS_CONNECTING:
		case RCB_CS_HANDSHAKE:
			if (t->now_ns - c->t0_ns > connect_ns)
				rcb_conn_lose(t, c, ETIMEDOUT);
			break;
		case RCB_CS_CLOSING:
			if (t->now_ns - c->t0_ns > close_ns)
				rcb_conn_shutdown(t, c);
			break;
		case RCB_CS_BACKOFF:
			if (t->now_ns >= c->t0_ns && t->seen_phase < RCB_PH_CLOSE)
				retry(t, c);
			break;
		default: break;
		}
	}
}

static void open_some(struct rcb_thread *t, enum rcb_role role, uint64_t due, uint64_t *started,
		      uint32_t budget)
{
	/* Bounded by budget; a full slot table stops it until slots come back. */
	while (*started < due && budget--) {
		struct rcb_conn *c = rcb_conn_alloc(t, role);

		if (!c)
			return;
		rcb_conn_start(t, c);
		(*started)++;
	}
}

static void open_held(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t due = t->hold_target, started = t->hold_started;

	if (t->seen_phase >= RCB_PH_CLOSE)
		return;
	if (t->index == 0 && cfg->scenario == RCB_SC_BROADCAST && !t->publisher_started) {
		struct rcb_conn *c = rcb_conn_alloc(t, RCB_ROLE_PUBLISHER);

		RC_ASSERT(c);
		t->publisher = (int)(c - t->conns);
		t->publisher_started = true;
		rcb_conn_start(t, c);
	}
	if (started >= due)
		return;
	if (cfg->rate > 0) {
		double per_thread = cfg->rate / cfg->threads;
		uint64_t by_now =
			(uint64_t)((double)(t->now_ns - t->run->start_ns) / 1e9 * per_thread);

		due = RC_MIN(due, by_now + 1);
	}
	open_some(t, RCB_ROLE_HOLD, due, &started, cfg->rate > 0 ? OPEN_PER_TURN : BURST_PER_TURN);
	t->hold_started = (uint32_t)started;
}

static void open_churn(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	double per_thread = cfg->churn_rate / cfg->threads;
	uint64_t due;

	if (!rcb_measuring(t) || cfg->churn_rate <= 0)
		return;
	due = (uint64_t)((double)(t->now_ns - t->run->measure_start_ns) / 1e9 * per_thread);
	open_some(t, RCB_ROLE_CHURN, due, &t->churn_started, OPEN_PER_TURN);
}

/* Open loop: --msg-rate per open connection, spread round robin over the slots. */
static void open_loop_echo(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	uint64_t n;

	if (cfg->msg_rate <= 0 || !echo_traffic(cfg) || !traffic_phase(t->seen_phase))
		return;
	t->open_loop_credit +=
		(double)(t->now_ns - t->credit_ns) / 1e9 * cfg->msg_rate * t->open_count;
	t->credit_ns = t->now_ns;
	if (t->open_loop_credit > ECHO_PER_TURN)
		t->open_loop_credit = ECHO_PER_TURN;
	n = (uint64_t)t->open_loop_credit;
	t->open_loop_credit -= (double)n;
	for (uint32_t step = 0; n > 0 && step < t->conns_count; step++) {
		struct rcb_conn *c = &t->conns[t->rr_next];

		t->rr_next = (t->rr_next + 1) % t->conns_count;
		if (c->state != RCB_CS_OPEN || c->role != RCB_ROLE_HOLD)
			continue;
		n--;
		if (c->tx_seq - c->rx_seq >= cfg->inflight)
			t->stats.counters[RCB_C_SKIPPED_SENDS]++;
		else
			rcb_ws_queue_echo(t, c);
	}
}

static void close_all(struct rcb_thread *t)
{
	for (uint32_t i = 0; i < t->conns_count; i++) {
		struct rcb_conn *c = &t->conns[i];

		switch (c->state) {
		case RCB_CS_OPEN: rcb_ws_close(t, c, RC_WS_CLOSE_NORMAL); break;
		case RCB_CS_CONNECTING:
		case RCB_CS_HANDSHAKE:
			c->flags |= RCB_CF_WE_CLOSE;
			rcb_conn_shutdown(t, c);
			break;
		case RCB_CS_BACKOFF:
			/* Nothing in the kernel: the slot is simply given back. */
			rcb_conn_free(t, c);
			break;
		default: break;
		}
	}
}

static void phase_changed(struct rcb_thread *t, int phase)
{
	const struct rcb_config *cfg = t->run->cfg;

	t->seen_phase = phase;
	if (phase == RCB_PH_SUBSCRIBE || (traffic_phase(phase) && echo_traffic(cfg))) {
		t->credit_ns = t->now_ns;
		for (uint32_t i = 0; i < t->conns_count; i++) {
			struct rcb_conn *c = &t->conns[i];

			if (c->state != RCB_CS_OPEN || c->role != RCB_ROLE_HOLD)
				continue;
			if (phase == RCB_PH_SUBSCRIBE)
				rcb_pubsub_subscribe(t, c);
			else
				kick_echo(t, c);
		}
	}
	if (phase == RCB_PH_MEASURE && cfg->scenario == RCB_SC_SPIKE)
		open_some(t, RCB_ROLE_BURST, t->burst_target, &t->burst_started, BURST_PER_TURN);
	if (phase >= RCB_PH_CLOSE)
		close_all(t);
}

void rcb_traffic_tick(struct rcb_thread *t)
{
	int phase = rcb_phase(t);

	if (phase != t->seen_phase)
		phase_changed(t, phase);
	open_held(t);
	open_churn(t);
	open_loop_echo(t);
	rcb_pubsub_publish_tick(t);
	scan(t);
}
