/*
 * What the nodes sharing Redis tell each other (engine = redis; presence_redis.c): each
 * topic owner mirrors its presence set into one Redis hash per topic and node, refreshed
 * with an expiry (presence_ttl_ms), so a node that dies takes its entries with it; presence
 * queries answer the union of every live node's entries; join and leave events go out on the
 * topic's channel to the other nodes' subscribers; the server API's disconnect and
 * unsubscribe reach every node through a control channel; and each node keeps its entry in a
 * registry of live nodes (/api/info). Everything travels on the shards' existing Redis links
 * (redis_conn.c), pipelined, never waiting. Shard threads (each function says which).
 */
#ifndef RC_PRESENCE_REDIS_H
#define RC_PRESENCE_REDIS_H

#include "pubsub.h"
#include "redis_conn.h"

/* The command tags of this module's replies: pubsub_redis.c hands every reply tagged at or
 * above this one to rc_xnode_reply. */
#define RC_XNODE_WHAT_BASE 64u

/* ---- the engine's owner side (rc_engine_ops, pubsub_users.c); the topic's owner thread ---- */
/* t's entry of connection conn changed (add: added, else removed): this node's hash of t
 * follows at the turn's end, one script call per topic for the turn's changes (the entry as
 * the owner keeps it then, or deleted). */
void rc_xnode_presence(struct rc_shard *s, struct rc_otopic *t, uint64_t conn, bool add);

/* Frees s's changes waiting for the turn's flush. After its thread joined. */
void rc_xnode_free(struct rc_shard *s);

/* Answers presence query m (taken) with every live node's entries; when Redis cannot be
 * asked, with this node's own and "partial":true. */
void rc_xnode_presence_get(struct rc_shard *s, struct rc_xmsg *m);

/* Publishes join (or leave) envelope env[0..len) (borrowed) of t for the other nodes. */
void rc_xnode_event_out(struct rc_shard *s, const struct rc_otopic *t, bool join,
			const char *env, size_t len);

/* ---- from pubsub_redis.c: the links' side; the link's shard thread ---------------------- */
/* An event payload p[0..n) (borrowed) heard on t's channel: fanned out to t's subscribers
 * here unless this node sent it (it delivered its own already). */
void rc_xnode_event_in(struct rc_shard *s, struct rc_otopic *t, const char *p, size_t n);

/* A subscriber link's push r (borrowed): true if it was the control channel's (consumed). */
bool rc_xnode_push(struct rc_redis_link *l, const redisReply *r);

/* l came up: the script is loaded, the control channel subscribed (shard 0, first
 * instance), and this shard's entries on l's instance are rewritten whole at once. */
void rc_xnode_link_up(struct rc_redis_link *l);

/* The reply r (NULL: the link failed) to a command of this module, tagged what, with ctx. */
void rc_xnode_reply(struct rc_redis_link *l, void *ctx, uint32_t what, redisReply *r);

/* ---- from shard.c: shard s's thread --------------------------------------------------------- */
/* Once per loop turn: refreshes this shard's presence entries (every third of
 * presence_ttl_ms) and, on shard 0, the node's registry entry (node_heartbeat_ms). */
void rc_xnode_turn(struct rc_shard *s);

/* The drain began: this shard's entries and (shard 0) the node's registry entry are deleted
 * now, so the other nodes stop listing them at once. */
void rc_xnode_drain(struct rc_shard *s);

/* ---- from api_serve.c: the API connection's shard thread ------------------------------------ */
/* Tells the other nodes to disconnect (tlen 0, with code) or unsubscribe from
 * topic[0..tlen) the connections of user[0..ulen) (all borrowed). 0, or -ENOTCONN when they
 * could not be told (counted). */
int rc_xnode_user_action(struct rc_shard *s, const char *user, size_t ulen, const char *topic,
			 size_t tlen, uint16_t code);

/* Answers c's /api/info (it waits: rc_proto_http_wait) with this node's JSON object
 * local[0..len) (borrowed) plus "nodes": every live node's registry entry, or
 * "partial":true when Redis cannot be asked. */
void rc_xnode_info(struct rc_conn *c, const char *local, size_t len);

/* Answers /api/topics on c with this node's topic lines local[0..len) (borrowed; "topic
 * count" per shard's topic, see rc_api_write_topics) and every other live node's shards'
 * topics from Redis, summed; this node's with "partial":true when Redis cannot be asked. */
void rc_xnode_topics(struct rc_conn *c, const char *local, size_t len);

#endif
