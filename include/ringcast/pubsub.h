/*
 * ringcast embedding API: topics. Every topic has an owner shard that numbers its messages
 * (per-topic sequence numbers, one order for every subscriber), keeps a bounded history for
 * subscribers that resume, and builds each message's frame once for all subscribers on all
 * shards. Messages reach subscribers as text frames holding
 * {"op":"msg","topic":T,"seq":N,"data":D}.
 */
#ifndef RINGCAST_PUBSUB_H
#define RINGCAST_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_app;
struct rc_conn;

/*
 * Serves ringcast's JSON pub/sub protocol (see README) on WebSocket path ws_path and the
 * backend publish API (POST publish_path, JSON body) on publish_path. Before rc_app_run().
 */
int rc_app_pubsub(struct rc_app *app, const char *ws_path, const char *publish_path);

/*
 * Publishes data (a JSON value, copied) to topic, which may be one of the gateway's reserved
 * ringcast.* topics (clients may not publish there). id (may be NULL) is an idempotency key:
 * a repeat within dedup_window_ms is dropped; rc_publish and POST /publish are one publisher,
 * whose ids never collide with a client's. Callable from any thread. Returns 0, -EINVAL
 * (topic name or id), -ENOMEM, or -EAGAIN from a non-shard thread when the owner's inbound
 * ring is full (retry later).
 */
int rc_publish(struct rc_app *app, const char *topic, size_t topic_len, const char *data,
	       size_t data_len, const char *id);

/*
 * Subscribes c to topic (on c's shard thread). Returns 0, -EEXIST if already subscribed,
 * -E2BIG over subscriptions_per_connection_max, -EINVAL for a bad topic name.
 */
int rc_conn_subscribe(struct rc_conn *c, const char *topic, size_t topic_len);

/* Unsubscribes c from topic; 0 or -ENOENT. */
int rc_conn_unsubscribe(struct rc_conn *c, const char *topic, size_t topic_len);

#endif
