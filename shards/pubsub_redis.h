/*
 * The Redis engine (pubsub_redis.c): owner shards sequence through Redis instead of their
 * memory. A publish is one EVALSHA of the engine's script on the command link of the topic's
 * instance, answered when Redis answered; the node subscribes a topic's channel once, on its
 * owner shard's subscriber link, while any shard has subscribers, and fans what arrives out
 * over the existing cross-shard path; resumes are served from the owner's history or the
 * Redis stream; after an outage every channel is subscribed again and what subscribers
 * missed is fetched (or announced as a gap, or a reset when the numbering restarted).
 * Owner shard threads.
 */
#ifndef RC_PUBSUB_REDIS_H
#define RC_PUBSUB_REDIS_H

#include "pubsub.h"
#include "redis_conn.h"

/* What owners call (app->engine) and what the links call (app->redis_hooks), engine = redis. */
extern const struct rc_engine_ops rc_redis_engine;
extern const struct rc_redis_hooks rc_redis_link_hooks;

/* s's link of kind to the Redis instance that holds topic[0..len). Shard s's thread. */
struct rc_redis_link *rc_pubsub_redis_link(struct rc_shard *s, const char *topic, size_t len,
					   enum rc_redis_kind kind);

#endif
