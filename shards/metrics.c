/*
 * Prometheus text exposition of the shards' counters (GET /metrics). Each shard writes only
 * its own counters; this reader, on whichever shard serves the request, loads them relaxed:
 * a scrape may see one shard a few events older than another, never a torn value (aligned
 * 64-bit loads). Any shard thread; the sizing pass, rc_metrics_bytes_max(), runs on the main
 * thread when the application is created.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "tls_ctx.h"

/* The text being written; len counts every byte asked for, also those past cap. */
struct out {
	char *p;
	size_t cap;
	size_t len;
	bool worst; /* sizing pass: nothing is read or written, every value is UINT64_MAX */
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	size_t room = o->len < o->cap ? o->cap - o->len : 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
	va_end(ap);
	RC_ASSERT(n >= 0);
	o->len += (size_t)n;
}

static uint64_t load(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* The counter at offset in shard i's stats, or the widest value when only sizing. */
static uint64_t value(const struct out *o, const struct rc_app *app, int i, size_t offset)
{
	if (o->worst)
		return UINT64_MAX;
	RC_ASSERT(i < app->shards_count);
	return load((const uint64_t *)((const char *)&app->shards[i].stats + offset));
}

/* One metric family with a value per shard. */
static void family(struct out *o, const struct rc_app *app, const char *name, const char *type,
		   const char *help, size_t offset)
{
	/* Prometheus naming: counters end in _total. */
	const char *sfx = strcmp(type, "counter") == 0 ? "_total" : "";
	put(o, "# HELP ringcast_%s%s %s\n# TYPE ringcast_%s%s %s\n", name, sfx, help, name, sfx,
	    type);
	for (int i = 0; i < app->shards_count; i++)
		put(o, "ringcast_%s%s{shard=\"%d\"} %llu\n", name, sfx, i,
		    (unsigned long long)value(o, app, i, offset));
}

#define RC_FAMILY(o, app, field, type, help)                                                       \
	family(o, app, #field, type, help, offsetof(struct rc_shard_stats, field))

/* One counter family with a value per shard and label value: count counters in a row from
 * offset in the stats, label_of naming each. */
static void labeled(struct out *o, const struct rc_app *app, const char *name, const char *help,
		    const char *label, size_t offset, int count, const char *(*label_of)(int))
{
	put(o, "# HELP ringcast_%s_total %s\n# TYPE ringcast_%s_total counter\n", name, help,
	    name);
	for (int i = 0; i < app->shards_count; i++)
		for (int k = 0; k < count; k++)
			put(o, "ringcast_%s_total{shard=\"%d\",%s=\"%s\"} %llu\n", name, i, label,
			    label_of(k),
			    (unsigned long long)value(o, app, i, offset + (size_t)k * sizeof(uint64_t)));
}

static const char *close_label(int k)
{
	return rc_close_reason_name((enum rc_close_reason)k);
}

static const char *evict_label(int k)
{
	return rc_evict_cause_name((enum rc_evict_cause)k);
}


void rc_app_stats(struct rc_app *app, struct rc_app_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->shards = app->shards_count;
	for (int i = 0; app->shards && i < app->shards_count; i++) {
		const struct rc_shard_stats *st = &app->shards[i].stats;
		out->connections_open += load(&st->connections_open);
		out->websockets_open += load(&st->websockets_open);
		out->connections_accepted += load(&st->connections_accepted);
		out->messages_in += load(&st->messages_in);
		out->messages_out += load(&st->messages_out);
		out->bytes_in += load(&st->bytes_in);
		out->bytes_out += load(&st->bytes_out);
		out->publishes += load(&st->publishes);
		out->deliveries += load(&st->deliveries);
		out->subscriptions += load(&st->subscriptions);
		out->topics += load(&st->topics_owned);
		out->slow_consumer_closes += load(&st->connections_closed[RC_CLOSE_slow_consumer]);
		out->redis_down_mask |= load(&st->redis_down_mask);
	}
	out->memory_bytes = rc_budget_total(&app->budget);
	out->memory_budget_bytes = app->budget.limit_bytes;
	out->memory_level = (int)rc_budget_level_of(&app->budget, out->memory_bytes);
}

/* A process-wide gauge (no shard label). */
static void gauge(struct out *o, const char *name, const char *help, uint64_t v)
{
	put(o, "# HELP ringcast_%s %s\n# TYPE ringcast_%s gauge\nringcast_%s %llu\n", name, help,
	    name, name, (unsigned long long)(o->worst ? UINT64_MAX : v));
}

/* What each shard refused because of the budget: growth (a charge), connections, topics. */
static void refusals(struct out *o, const struct rc_app *app)
{
	const size_t over_budget = offsetof(struct rc_shard_stats, connections_closed) +
				   RC_CLOSE_over_budget * sizeof(uint64_t);

	put(o, "# HELP ringcast_memory_refusals_total Requests refused by the memory budget: "
	       "growth past it; connections, topics and POST /publish past its soft mark.\n"
	       "# TYPE ringcast_memory_refusals_total counter\n");
	for (int i = 0; i < app->shards_count; i++) {
		uint64_t growth = o->worst ? UINT64_MAX
					   : atomic_load_explicit(&app->budget.shards[i].refusals,
								  memory_order_relaxed);
		put(o, "ringcast_memory_refusals_total{shard=\"%d\",what=\"growth\"} %llu\n", i,
		    (unsigned long long)growth);
		put(o, "ringcast_memory_refusals_total{shard=\"%d\",what=\"connection\"} %llu\n",
		    i, (unsigned long long)value(o, app, i, over_budget));
		put(o, "ringcast_memory_refusals_total{shard=\"%d\",what=\"topic\"} %llu\n", i,
		    (unsigned long long)value(o, app, i,
					      offsetof(struct rc_shard_stats, topics_over_budget)));
		put(o, "ringcast_memory_refusals_total{shard=\"%d\",what=\"publish\"} %llu\n", i,
		    (unsigned long long)value(o, app, i,
					      offsetof(struct rc_shard_stats, publishes_refused)));
	}
}

/* The memory budget: the marks, what is charged by category, the level, refusals, sheds. */
static void memory(struct out *o, const struct rc_app *app)
{
	const struct rc_budget *b = &app->budget;
	uint64_t total = o->worst ? 0 : rc_budget_total(b);

	gauge(o, "memory_budget_bytes", "memory_budget_bytes in force.", b->limit_bytes);
	gauge(o, "memory_soft_bytes", "The soft mark (memory_soft_percent of the budget).",
	      b->soft_bytes);
	put(o, "# HELP ringcast_memory_bytes Bytes charged to the memory budget, by category.\n"
	       "# TYPE ringcast_memory_bytes gauge\n");
	for (int cat = 0; cat < RC_BUDGET_CATEGORY_COUNT; cat++) {
		uint64_t v = o->worst ? UINT64_MAX
				      : rc_budget_category_bytes(b, (enum rc_budget_category)cat);
		put(o, "ringcast_memory_bytes{category=\"%s\"} %llu\n",
		    rc_budget_category_name((enum rc_budget_category)cat), (unsigned long long)v);
	}
	gauge(o, "memory_kernel_bytes",
	      "The host's TCP socket memory (/proc/net/sockstat, all processes), counted against "
	      "the budget.",
	      atomic_load_explicit(&b->kernel_bytes, memory_order_relaxed));
	gauge(o, "memory_total_bytes", "Everything counted against the budget.", total);
	gauge(o, "memory_level", "0 ok, 1 past the soft mark, 2 at the budget.",
	      (uint64_t)rc_budget_level_of(b, total));
	refusals(o, app);
	RC_FAMILY(o, app, memory_shed, "counter",
		  "Connections closed (1013) at the budget's hard mark to free memory.");
}

static const char *auth_label(int k)
{
	return rc_jwt_result_name((enum rc_jwt_result)(k + 1)); /* "ok" is not a failure */
}

/* Access tokens: refusals by reason, refreshes, rights. */
static void auth(struct out *o, const struct rc_app *app)
{
	labeled(o, app, "auth_failures", "Access tokens refused, by reason.", "reason",
		offsetof(struct rc_shard_stats, auth_failures) + sizeof(uint64_t),
		RC_JWT_RESULT_COUNT - 1, auth_label);
	RC_FAMILY(o, app, token_refreshes, "counter",
		  "Refresh ops that replaced a connection's token.");
	RC_FAMILY(o, app, subscribes_forbidden, "counter",
		  "Subscriptions refused: the token's subs (or a channel token) do not allow them.");
}

/* One cumulative histogram summed over shards: name (without the ringcast_ prefix), its
 * bucket counters from offset first (nb bounds, then +Inf) and its sum at offset sum_at. */
static void histogram(struct out *o, const struct rc_app *app, const char *name, const char *help,
		      const uint64_t *bounds, int nb, size_t first, size_t sum_at)
{
	uint64_t sum = 0, count = 0;
	put(o, "# HELP ringcast_%s %s\n# TYPE ringcast_%s histogram\n", name, help, name);
	for (int b = 0; b <= nb; b++) {
		for (int i = 0; i < app->shards_count; i++)
			count += value(o, app, i, first + (size_t)b * sizeof(uint64_t));
		if (b < nb)
			put(o, "ringcast_%s_bucket{le=\"%llu\"} %llu\n", name,
			    (unsigned long long)bounds[b], (unsigned long long)count);
	}
	for (int i = 0; i < app->shards_count; i++)
		sum += value(o, app, i, sum_at);
	put(o, "ringcast_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
	put(o, "ringcast_%s_sum %llu\nringcast_%s_count %llu\n", name, (unsigned long long)sum,
	    name, (unsigned long long)count);
}

/* Reply latency of every shard's Redis commands (ms). */
static void redis_latency(struct out *o, const struct rc_app *app)
{
	static const uint64_t bounds[] = RC_REDIS_LATENCY_BOUNDS_MS;
	RC_STATIC_ASSERT(RC_ARRAY_LEN(bounds) + 1 == RC_REDIS_LATENCY_BUCKETS, "buckets");
	histogram(o, app, "redis_latency_ms", "Time from queuing a Redis command to its reply.",
		  bounds, (int)RC_ARRAY_LEN(bounds), offsetof(struct rc_shard_stats, redis_latency),
		  offsetof(struct rc_shard_stats, redis_latency_ms_sum));
}

/* engine = redis: the links' counters per shard, latency, and whether each instance is up. */
static void redis(struct out *o, const struct rc_app *app)
{
	RC_FAMILY(o, app, redis_commands, "counter", "Commands queued to Redis.");
	RC_FAMILY(o, app, redis_writes, "counter",
		  "Sends to Redis; commands per write is the pipelining.");
	RC_FAMILY(o, app, redis_pipeline_depth, "gauge", "Redis commands awaiting their reply.");
	RC_FAMILY(o, app, redis_errors, "counter",
		  "Redis error replies, failed connections and protocol errors.");
	RC_FAMILY(o, app, redis_reconnects, "counter", "Redis connections made after a failure.");
	RC_FAMILY(o, app, redis_refusals, "counter",
		  "Publishes refused (busy/503): Redis unreachable or its backlog full.");
	RC_FAMILY(o, app, redis_gaps, "counter",
		  "Messages local subscribers missed (announced as gaps) after a Redis outage.");
	RC_FAMILY(o, app, redis_held_drops, "counter",
		  "Live messages dropped while their topic caught up after an outage.");
	RC_FAMILY(o, app, redis_publish_batches, "counter",
		  "Script calls (EVALSHA) carrying publishes to Redis.");
	RC_FAMILY(o, app, redis_publish_batched, "counter",
		  "Publishes sent in those calls; per call is the batching.");
	RC_FAMILY(o, app, redis_reply_oversize, "counter",
		  "Redis connections failed on a reply past redis_reply_bytes_max.");
	RC_FAMILY(o, app, redis_presence_writes, "counter",
		  "Commands writing this node's presence entries to Redis (add, remove, refresh).");
	RC_FAMILY(o, app, redis_presence_queries, "counter",
		  "Presence queries answered with every node's entries.");
	RC_FAMILY(o, app, redis_presence_partial, "counter",
		  "Presence queries answered with this node's entries only: Redis unreachable.");
	RC_FAMILY(o, app, redis_events_sent, "counter",
		  "Join and leave events published for the other nodes.");
	RC_FAMILY(o, app, redis_events_received, "counter",
		  "Join and leave events of other nodes fanned out here.");
	RC_FAMILY(o, app, redis_control_sent, "counter",
		  "Server API disconnects and unsubscribes told to the other nodes.");
	RC_FAMILY(o, app, redis_control_received, "counter",
		  "Disconnects and unsubscribes heard from another node and acted on.");
	RC_FAMILY(o, app, redis_control_unsent, "counter",
		  "Disconnects and unsubscribes the other nodes could not be told (Redis down).");
	RC_FAMILY(o, app, redis_heartbeats, "counter", "Node registry refreshes sent to Redis.");
	RC_FAMILY(o, app, redis_node_errors, "counter",
		  "Malformed events, control messages, presence replies or entries from Redis.");
	redis_latency(o, app);
	put(o, "# HELP ringcast_redis_up 1 while every shard is connected to the instance.\n"
	       "# TYPE ringcast_redis_up gauge\n");
	for (uint32_t r = 0; r < app->redis_count; r++) {
		uint64_t down = 0;
		for (int i = 0; i < app->shards_count; i++)
			down |= value(o, app, i, offsetof(struct rc_shard_stats, redis_down_mask));
		put(o, "ringcast_redis_up{instance=\"%s\"} %d\n", app->redis_names[r],
		    !((down >> r) & 1));
	}
}

static const char *tls_failure_label(int k)
{
	return rc_tls_failure_name((enum rc_tls_failure)k);
}

/* TLS termination (tls_port): handshakes, failures by reason, reloads, kTLS. */
static void tls(struct out *o, const struct rc_app *app)
{
	if (!app->cfg.tls_port)
		return;
	RC_FAMILY(o, app, tls_handshakes, "counter", "TLS handshakes completed.");
	RC_FAMILY(o, app, tls_resumed, "counter",
		  "TLS handshakes that resumed a session with a ticket.");
	RC_FAMILY(o, app, tls_deferred, "counter",
		  "TLS handshake steps put off to a later turn (tls_handshakes_per_turn_max).");
	RC_FAMILY(o, app, tls_open, "gauge", "Connections holding TLS state.");
	labeled(o, app, "tls_failures", "TLS connections that failed, by reason.", "reason",
		offsetof(struct rc_shard_stats, tls_failures), RC_TLS_FAILURE_COUNT,
		tls_failure_label);
	const struct rc_tls_app *t = app->tls;
	gauge(o, "tls_reloads", "SIGHUPs that installed new certificates.",
	      t ? atomic_load_explicit(&t->reloads, memory_order_relaxed) : 0);
	gauge(o, "tls_reload_failures", "SIGHUPs whose certificate files did not load.",
	      t ? atomic_load_explicit(&t->reload_failures, memory_order_relaxed) : 0);
	gauge(o, "tls_ktls_available", "1 if the kernel has the tls ULP (probed at start).",
	      t && t->ktls);
}

/* Presence and join/leave, counted by the topics' owners; personal topics. */
static void presence(struct out *o, const struct rc_app *app)
{
	RC_FAMILY(o, app, presence_entries, "gauge", "Presence entries of the topics owned.");
	RC_FAMILY(o, app, presence_refused, "counter",
		  "Subscribers not listed in presence: presence_entries_max or the memory budget.");
	RC_FAMILY(o, app, presence_queries, "counter", "Presence queries answered.");
	RC_FAMILY(o, app, presence_events, "counter", "Join and leave messages built.");
	RC_FAMILY(o, app, presence_events_skipped, "counter",
		  "Join and leave messages not sent: the topic had more subscribers than its "
		  "namespace's join_leave_subscribers_max.");
	RC_FAMILY(o, app, personal_topic_failures, "counter",
		  "Connections with a user id left without its personal topic #<sub>: the id is "
		  "not a topic name, or a limit or memory refused it.");
}

static void write_all(struct out *o, const struct rc_app *app)
{
	RC_FAMILY(o, app, connections_open, "gauge", "Connection records in use.");
	RC_FAMILY(o, app, websockets_open, "gauge", "Upgraded WebSocket connections.");
	RC_FAMILY(o, app, connections_accepted, "counter", "Connections accepted.");
	RC_FAMILY(o, app, connections_refused, "counter",
		  "Accepts that failed (connection table full, out of memory).");
	labeled(o, app, "connections_closed", "Connections ended, by reason.", "reason",
		offsetof(struct rc_shard_stats, connections_closed), RC_CLOSE_REASON_COUNT,
		close_label);
	RC_FAMILY(o, app, frames_in, "counter", "WebSocket frames received.");
	RC_FAMILY(o, app, frames_out, "counter", "WebSocket frames queued for sending.");
	RC_FAMILY(o, app, messages_in, "counter", "WebSocket messages received.");
	RC_FAMILY(o, app, messages_out, "counter", "WebSocket messages queued for sending.");
	RC_FAMILY(o, app, bytes_in, "counter", "Bytes received.");
	RC_FAMILY(o, app, bytes_out, "counter", "Bytes sent.");
	RC_FAMILY(o, app, http_requests, "counter", "HTTP requests parsed (upgrades included).");
	RC_FAMILY(o, app, pings_sent, "counter", "Heartbeat pings sent.");
	RC_FAMILY(o, app, sends, "counter", "send/sendmsg operations issued.");
	RC_FAMILY(o, app, recv_rearms, "counter", "Multishot receives re-armed.");
	RC_FAMILY(o, app, flushes_bounded, "counter",
		  "Loop turns whose sends stopped at sends_per_turn_max (the rest went next turn).");
	RC_FAMILY(o, app, receives_deferred, "counter",
		  "Receives put off to a later loop turn: over receives_per_turn_max.");
	RC_FAMILY(o, app, recv_buffers, "gauge",
		  "Provided receive buffers (start small, double on ENOBUFS).");
	RC_FAMILY(o, app, stale_cqes, "counter", "Completions for recycled slots, dropped.");
	RC_FAMILY(o, app, loop_turns, "counter", "Event-loop turns.");
	static const uint64_t turn_bounds[] = RC_TURN_BOUNDS_US;
	RC_STATIC_ASSERT(RC_ARRAY_LEN(turn_bounds) + 1 == RC_TURN_BUCKETS, "buckets");
	histogram(o, app, "turn_us",
		  "Event-loop turns by length, one clock read to the next (work, submit, wait).",
		  turn_bounds, (int)RC_ARRAY_LEN(turn_bounds),
		  offsetof(struct rc_shard_stats, turn_us),
		  offsetof(struct rc_shard_stats, turn_us_sum));
	RC_FAMILY(o, app, submits, "counter", "io_uring_submit calls.");
	RC_FAMILY(o, app, publishes, "counter", "Messages sequenced by this shard as topic owner.");
	RC_FAMILY(o, app, publish_duplicates, "counter", "Publishes dropped by the dedup window.");
	RC_FAMILY(o, app, publishes_forbidden, "counter",
		  "Client publishes refused: reserved ringcast.* topics, or no right in the token.");
	RC_FAMILY(o, app, resets, "counter",
		  "Resumes answered with a reset: since of another epoch, or beyond the seq.");
	RC_FAMILY(o, app, deliveries, "counter", "Broadcast frames queued to local subscribers.");
	RC_FAMILY(o, app, slow_drops, "counter",
		  "Frames skipped for slow subscribers (slow_consumer_policy=drop).");
	RC_FAMILY(o, app, subscriptions, "gauge", "Subscriptions held by local connections.");
	RC_FAMILY(o, app, topics_owned, "gauge", "Topics this shard sequences.");
	RC_FAMILY(o, app, mpsc_full, "counter",
		  "Cross-shard posts that waited because the target ring was full.");
	RC_FAMILY(o, app, doorbells, "counter", "MSG_RING wake-ups sent to sleeping shards.");
	RC_FAMILY(o, app, limit_mpsc_drain, "counter", "Loop turns that hit mpsc_drain_max.");
	RC_FAMILY(o, app, protocol_rejects, "counter",
		  "Pub/sub client messages answered with an error.");
	RC_FAMILY(o, app, sends_zc, "counter", "send_zc_fixed operations issued.");
	RC_FAMILY(o, app, arena_frames, "gauge", "Frames alive in the shard's arena slice.");
	RC_FAMILY(o, app, arena_exhausted, "counter",
		  "Broadcast frames built on the heap because the arena slice was full.");
	RC_FAMILY(o, app, deflate_in_bytes, "counter", "Bytes given to the deflate compressor.");
	RC_FAMILY(o, app, deflate_out_bytes, "counter",
		  "Compressed bytes produced (sent with RSV1; a broadcast counts once).");
	RC_FAMILY(o, app, deflate_window_skips, "counter",
		  "Messages sent uncompressed: longer than the client's deflate window.");
	RC_FAMILY(o, app, inflated_messages, "counter", "Compressed messages received.");
	RC_FAMILY(o, app, alloc_failures, "counter",
		  "Runtime allocations that failed (the request was refused or degraded).");
	RC_FAMILY(o, app, history_bytes, "gauge", "Bytes held by the shard's topic histories.");
	labeled(o, app, "history_evictions", "Messages that left a topic's history early, by cause.",
		"cause", offsetof(struct rc_shard_stats, history_evictions), RC_EVICT_CAUSE_COUNT,
		evict_label);
	RC_FAMILY(o, app, topics_refused, "counter", "New topics refused: topics_max reached.");
	RC_FAMILY(o, app, topics_rate_limited, "counter",
		  "New topics refused: the connection's topics_per_second_max reached.");
	RC_FAMILY(o, app, outbox_items, "gauge", "Cross-shard items waiting for a full ring.");
	RC_FAMILY(o, app, outbox_refusals, "counter",
		  "Publishes refused with busy/503: outboxes at outbox_items_max.");
	RC_FAMILY(o, app, conflations, "counter",
		  "Queued messages replaced by a newer one of their topic (policy latest).");
	RC_FAMILY(o, app, http_budget_refusals, "counter",
		  "HTTP requests answered 503: holding their bytes would pass memory_budget_bytes.");
	RC_FAMILY(o, app, json_limit_rejects, "counter",
		  "JSON messages refused unparsed: over json_depth_max or json_elements_max.");
	RC_FAMILY(o, app, pongs_replaced, "counter",
		  "Pongs that replaced one still queued (at most one waits per connection).");
	RC_FAMILY(o, app, sse_open, "gauge", "Server-Sent Events streams (GET /sse).");
	RC_FAMILY(o, app, sse_streams, "counter", "GET /sse streams started.");
	RC_FAMILY(o, app, sse_refused, "counter",
		  "GET /sse requests refused: bad topics or since (400).");
	RC_FAMILY(o, app, sse_variants, "counter",
		  "SSE variants of broadcast messages built (at most one per publish).");
	RC_FAMILY(o, app, sse_heartbeats, "counter", "Heartbeat comments sent to SSE streams.");
	RC_FAMILY(o, app, cors_preflights, "counter",
		  "CORS preflights (OPTIONS) answered on /sse, the publish path and assets.");
	RC_FAMILY(o, app, cors_refused, "counter",
		  "Cross-origin HTTP requests refused: Origin not in origins (403).");
	tls(o, app);
	memory(o, app);
	auth(o, app);
	if (app->engine)
		redis(o, app);
	presence(o, app);
}

size_t rc_app_metrics(struct rc_app *app, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0, false};
	RC_ASSERT(buf != NULL || cap == 0);
	write_all(&o, app);
	if (o.len >= cap)
		return 0;
	return o.len;
}

size_t rc_metrics_bytes_max(const struct rc_app *app)
{
	struct out o = {NULL, 0, 0, true};
	RC_ASSERT(app->shards_count > 0);
	write_all(&o, app);
	/* The terminating NUL that vsnprintf needs room for. */
	return o.len + 1;
}
