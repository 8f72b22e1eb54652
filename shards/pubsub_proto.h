/*
 * ringcast's pub/sub client protocol (pubsub_proto.c): the JSON messages of /ws clients and
 * the POST /publish API on top of pubsub.c. The top of the pub/sub stack: what it exports
 * here are the handlers app.c registers (the /ws endpoint's on_message) and wires as hooks
 * (rc_pubsub_hooks, rc_conn_hooks.publish). Shard threads.
 */
#ifndef RC_PUBSUB_PROTO_H
#define RC_PUBSUB_PROTO_H

#include "pubsub.h"

/* The /ws endpoint's on_message: one client message (data borrowed for the call), answered
 * with an ack, an error or a pong. ctx is unused. */
void rc_proto_on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx);

/* The /ws endpoint's on_open: a connection with a user id (its token's sub) is subscribed to
 * its personal topic "#<sub>" (per-user delivery); counted when it cannot be. ctx is unused. */
void rc_proto_on_open(struct rc_conn *c, void *ctx);

/* A subscription is live: the ack with the topic's current seq and epoch, or, with reset, the
 * reset message (subscribed hook). */
void rc_proto_subscribed(struct rc_conn *c, const char *topic, size_t len, uint64_t seq,
			 uint64_t epoch, bool reset);

/* The gap message for messages from..to of topic's epoch (gap hook). */
void rc_proto_gap(struct rc_conn *c, const char *topic, size_t len, uint64_t from, uint64_t to,
		  uint64_t epoch);

/* A publish got its seq: the client's ack, or one answer of a POST /publish batch, sent
 * when the last one arrives (published hook). */
void rc_proto_published(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *topic,
			size_t len, uint64_t seq, uint64_t epoch, bool duplicate, bool busy,
			const char *id, size_t id_len);

/* The owner's answer to a query (text[0..len) borrowed; len 0: it had no memory): sent to a
 * WebSocket client, or as the 200 (503) of c's waiting server API request (answer hook). */
void rc_proto_answer(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *text,
		     size_t len);

/* c was unsubscribed from topic by the server API: {"op":"unsubscribed","topic":T} tells it
 * (unsubscribed hook). */
void rc_proto_unsubscribed(struct rc_conn *c, const char *topic, size_t len);

/* Sends an HTTP response with a JSON body (borrowed) and status; with keep_alive the
 * connection waits for its next request. */
void rc_proto_http_answer(struct rc_conn *c, int status, const char *body, size_t len,
			  bool keep_alive);

/* c's server API request waits for answers (rc_proto_answer): one owner's, or every shard's
 * topics, merged; later requests on c wait for it. Charged as http. 0 or -ENOMEM. */
int rc_proto_http_wait(struct rc_conn *c, bool keep_alive, uint32_t answers);

/* Serves the server API's publish (or, broadcast, broadcast) body (borrowed): as POST
 * /publish but without token rights and with errors as {"error":...}. */
void rc_proto_api_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive,
			  bool broadcast);

/* Serves POST /publish (body borrowed for the call); the answer is sent when every publish
 * of the batch is sequenced (publish hook). */
void rc_proto_http_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive);

/* c was terminated (http: while it was still an HTTP connection): a publish request waiting
 * for its answer is released with its budget charge. Shard thread, from the closed hook. */
void rc_proto_conn_closed(struct rc_conn *c, bool http);

/* GET /sse?topics=... (query and last_event_id borrowed for the call): a 400 for a bad
 * request, else the stream's head, then its subscriptions, each answered and resumed like a
 * /ws sub (sse hook). */
void rc_proto_sse_open(struct rc_conn *c, struct rc_slice query, struct rc_slice last_event_id);

#endif
