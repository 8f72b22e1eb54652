/*
 * A shard's counters (stats.c names the close reasons). A leaf: every layer counts into
 * struct rc_shard_stats, embedded in its shard. Written only by the shard's thread; read
 * racily (relaxed, aligned 64-bit loads) by metrics.c on any thread.
 */
#ifndef RC_STATS_H
#define RC_STATS_H

#include <stdint.h>

#include "jwt.h" /* RC_JWT_RESULT_COUNT */

/* Why a connection ended; the metric label of ringcast_connections_closed_total. */
#define RC_CLOSE_REASONS(X)                                                                        \
	X(normal, "client or server close handshake completed")                                    \
	X(protocol_error, "1002 sent")                                                             \
	X(invalid_data, "1007 sent")                                                               \
	X(too_big, "1009 sent")                                                                    \
	X(handshake_rejected, "the upgrade got a 4xx")                                             \
	X(handshake_timeout, "no complete request in handshake_timeout_ms")                        \
	X(idle_timeout, "no traffic in idle_timeout_ms")                                           \
	X(close_timeout, "no close reply in close_timeout_ms")                                     \
	X(peer_gone, "EOF or reset without a close handshake")                                     \
	X(slow_consumer, "send queue over send_queue_bytes_max")                                   \
	X(drain, "server shutdown")                                                                \
	X(http_done, "plain HTTP request answered")                                                \
	X(app, "closed by the application")                                                       \
	X(rate_limited, "1008: over messages_per_second_max")                                      \
	X(over_capacity, "503: connections_max reached")                                           \
	X(token_expired, "1008: the access token's exp passed")                                    \
	X(inflate_rate, "1008: over inflate_bytes_per_second_max")                                 \
	X(over_budget, "503: memory past the budget's soft mark (memory_soft_percent)")            \
	X(memory_shed, "1013: growth refused or shed to keep memory within memory_budget_bytes")  \
	X(message_timeout, "1008: a frame or message incomplete after message_timeout_ms")  \
	X(tls_error, "TLS failed (handshake or record): ringcast_tls_failures_total says why")

enum rc_close_reason {
#define RC_X(name, help) RC_CLOSE_##name,
	RC_CLOSE_REASONS(RC_X)
#undef RC_X
		RC_CLOSE_REASON_COUNT,
};

/* Counters of TLS failures; src/tls.h's RC_TLS_FAILURE_COUNT fits (tls.c checks). */
#define RC_TLS_FAILURE_SLOTS 12

/* Why a message left a topic's history early; the label of ringcast_history_evictions_total. */
#define RC_EVICT_CAUSES(X)                                                                         \
	X(count, "history_messages_max reached")                                                   \
	X(age, "older than history_age_max_ms")                                                    \
	X(topic_bytes, "history_bytes_max reached")                                                \
	X(total_bytes, "the shard's share of history_total_bytes_max reached")                     \
	X(budget, "the memory budget refused a bigger history ring")                              \
	X(memory_soft, "past the memory budget's soft mark: histories halved once per tick")

enum rc_evict_cause {
#define RC_X(name, help) RC_EVICT_##name,
	RC_EVICT_CAUSES(RC_X)
#undef RC_X
		RC_EVICT_CAUSE_COUNT,
};

/* Upper bounds (ms) of the Redis reply latency histogram; the last bucket is +Inf. */
#define RC_REDIS_LATENCY_BOUNDS_MS {1, 2, 5, 10, 25, 50, 100, 250, 1000}
#define RC_REDIS_LATENCY_BUCKETS 10
/* Upper bounds (us) of the loop-turn length histogram; the last bucket is +Inf. */
#define RC_TURN_BOUNDS_US {100, 1000, 5000, 10000, 25000, 50000, 100000, 250000, 1000000}
#define RC_TURN_BUCKETS 10

/* One shard's counters. Written only by the shard; read racily (relaxed) by /metrics. */
struct rc_shard_stats {
	uint64_t connections_accepted;
	uint64_t connections_refused; /* accept failed: table full or out of memory */
	uint64_t connections_open;    /* gauge: records in use */
	uint64_t websockets_open;     /* gauge: upgraded connections */
	uint64_t connections_closed[RC_CLOSE_REASON_COUNT];
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t messages_in;
	uint64_t messages_out;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t http_requests;
	uint64_t pings_sent;
	uint64_t recv_rearms; /* multishot recv re-armed (ENOBUFS or kernel ended it) */
	uint64_t flushes_bounded;   /* turns whose sends stopped at sends_per_turn_max */
	uint64_t receives_deferred; /* receives put off a turn: over receives_per_turn_max */
	uint64_t recv_buffers; /* gauge: provided receive buffers (grows under bursts) */
	uint64_t stale_cqes;  /* completions for a recycled slot, dropped */
	uint64_t sends;	      /* send/sendmsg SQEs issued */
	uint64_t loop_turns;
	uint64_t submits;
	uint64_t publishes;          /* messages sequenced by this shard as owner */
	uint64_t publish_duplicates; /* dropped by the dedup window */
	uint64_t publishes_forbidden; /* client publishes to reserved ringcast.* topics refused */
	uint64_t resets;             /* resumes answered with a reset (another epoch, or ahead) */
	uint64_t deliveries;         /* broadcast frames queued to local subscribers */
	uint64_t slow_drops;         /* frames skipped for slow subscribers (policy drop) */
	uint64_t subscriptions;      /* gauge */
	uint64_t topics_owned;       /* gauge */
	uint64_t mpsc_full;          /* posts that waited in an outbox: target ring full */
	uint64_t doorbells;          /* MSG_RING wake-ups sent */
	uint64_t limit_mpsc_drain;   /* turns that hit mpsc_drain_max */
	uint64_t protocol_rejects;   /* client pub/sub messages answered with an error */
	uint64_t arena_frames;       /* gauge: frames alive in this shard's arena slice */
	uint64_t arena_exhausted;    /* broadcast frames that fell back to the heap */
	uint64_t sends_zc;           /* send_zc_fixed operations issued */
	uint64_t deflate_in_bytes;   /* bytes given to the compressor */
	uint64_t deflate_out_bytes;  /* bytes it produced (sent with RSV1) */
	uint64_t deflate_window_skips; /* messages sent plain: longer than the client's window */
	uint64_t inflated_messages;  /* compressed messages received */
	uint64_t alloc_failures;     /* runtime allocations that failed and were degraded */
	uint64_t history_bytes;      /* gauge: bytes held by this shard's topic histories */
	uint64_t history_evictions[RC_EVICT_CAUSE_COUNT]; /* messages evicted early, by cause */
	uint64_t topics_refused;      /* new topics refused: topics_max reached */
	uint64_t topics_rate_limited; /* new topics refused: topics_per_second_max reached */
	uint64_t outbox_items;        /* gauge: items waiting in this shard's outboxes */
	uint64_t outbox_refusals;     /* publishes refused: the owner's outboxes were full */
	uint64_t conflations;         /* queued messages replaced by a newer one (policy latest) */
	uint64_t http_budget_refusals; /* HTTP requests answered 503: their bytes over the budget */
	uint64_t json_limit_rejects;   /* messages over json_depth_max or json_elements_max */
	uint64_t topics_over_budget; /* new topics refused past the memory budget's soft mark */
	uint64_t publishes_refused;  /* POST /publish answered 503 past the soft mark */
	uint64_t memory_shed;        /* connections closed at the hard mark to free memory */
	uint64_t pongs_replaced;     /* pongs that replaced one still waiting to be sent */
	uint64_t auth_failures[RC_JWT_RESULT_COUNT]; /* tokens refused, by enum rc_jwt_result */
	uint64_t token_refreshes;      /* refresh ops that replaced a connection's token */
	uint64_t subscribes_forbidden; /* subscriptions refused: no right in the token */
	/* engine = redis (redis_conn.c, pubsub_redis.c) */
	uint64_t redis_commands;       /* commands queued to Redis */
	uint64_t redis_writes;         /* sends to Redis: commands per write is the pipelining */
	uint64_t redis_pipeline_depth; /* gauge: commands awaiting their reply */
	uint64_t redis_errors;         /* error replies, failed connections, protocol errors */
	uint64_t redis_reconnects;     /* connections established after a failure */
	uint64_t redis_refusals;       /* publishes refused: Redis down or its backlog full */
	uint64_t redis_gaps;           /* messages lost to local subscribers, announced as gaps */
	uint64_t redis_held_drops;     /* live messages dropped while their topic synced */
	uint64_t redis_down_mask;      /* gauge: bit i set while instance i has a link not up */
	uint64_t redis_latency[RC_REDIS_LATENCY_BUCKETS]; /* replies by latency (not cumulative) */
	uint64_t redis_latency_ms_sum; /* of every reply counted in redis_latency */
	uint64_t redis_publish_batches; /* script calls carrying publishes */
	uint64_t redis_publish_batched; /* publishes in them: per call is the batching */
	uint64_t redis_reply_oversize;  /* links failed on a reply past redis_reply_bytes_max */
	/* engine = redis, across nodes (presence_redis.c) */
	uint64_t redis_presence_writes;   /* commands writing this node's presence entries */
	uint64_t redis_presence_queries;  /* presence queries answered from every node's entries */
	uint64_t redis_presence_partial;  /* ... answered from this node's alone: Redis unreachable */
	uint64_t redis_events_sent;       /* join/leave events published for the other nodes */
	uint64_t redis_events_received;   /* join/leave events of other nodes fanned out here */
	uint64_t redis_control_sent;      /* disconnect/unsubscribe actions told to the other nodes */
	uint64_t redis_control_received;  /* ... heard from another node and acted on */
	uint64_t redis_control_unsent;    /* ... that could not be told (Redis unreachable) */
	uint64_t redis_heartbeats;        /* node registry refreshes sent */
	uint64_t redis_node_errors;       /* malformed events, control messages, replies or entries */
	uint64_t sse_open;           /* gauge: GET /sse streams */
	uint64_t sse_streams;        /* GET /sse streams started */
	uint64_t sse_refused;        /* GET /sse requests refused (bad topics or since: 400) */
	uint64_t sse_variants;       /* SSE variants of broadcast frames built (one per publish) */
	uint64_t sse_heartbeats;     /* heartbeat comments sent to streams */
	uint64_t cors_preflights;    /* CORS preflights (OPTIONS) answered */
	uint64_t cors_refused;       /* CORS requests refused: Origin not in origins (403) */
	uint64_t tls_handshakes;     /* TLS handshakes completed */
	uint64_t tls_resumed;        /* of which resumed a session (a ticket) */
	uint64_t tls_deferred;       /* handshake steps put off: tls_handshakes_per_turn_max */
	uint64_t tls_open;           /* gauge: connections holding TLS state */
	uint64_t tls_failures[RC_TLS_FAILURE_SLOTS]; /* by enum rc_tls_failure (src/tls.h) */
	uint64_t presence_entries;     /* gauge: presence entries of the topics this shard owns */
	uint64_t presence_refused;     /* subscribers not listed: presence_entries_max, budget */
	uint64_t presence_queries;     /* presence and presence_stats answered by this owner */
	uint64_t presence_events;      /* join and leave messages built by this owner */
	uint64_t presence_events_skipped; /* ... not sent: join_leave_subscribers_max */
	uint64_t personal_topic_failures; /* connections left without their personal topic */
	uint64_t turn_us[RC_TURN_BUCKETS]; /* loop turns by length, wait included (not cumul.) */
	uint64_t turn_us_sum;              /* of every turn counted in turn_us */
};

/* The metric label of why ("normal", "slow_consumer", ...); "unknown" out of range. Any
 * thread; returns a string literal. */
const char *rc_close_reason_name(enum rc_close_reason why);
/* The metric label of an eviction cause ("count", "age", ...); "unknown" out of range. */
const char *rc_evict_cause_name(enum rc_evict_cause cause);

#endif
