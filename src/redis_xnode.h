/*
 * What the nodes sharing Redis tell each other, sans I/O (engine = redis): the Lua script
 * that keeps each node's presence entries per topic and the node registry (hashes with an
 * expiry per node, so a dead node's entries disappear), the names of those keys and of the
 * control channel, the unsequenced events on a topic's channel (join/leave, payloads that
 * start with a letter; sequenced messages start with a digit, redis_proto.h), the control
 * messages (disconnect and unsubscribe of a user on every node), and the parsers and JSON
 * writers of the script's answers. The runtime (shards/presence_redis.c) does the I/O.
 * Pure; any thread.
 */
#ifndef RC_REDIS_XNODE_H
#define RC_REDIS_XNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h> /* redisReply; only the reader and formatter are used */

/* The Lua script (its text and length) run by EVALSHA: see redis_xnode.c for its modes. */
const char *rc_xnode_script(size_t *len);

/* The script's SHA-1 as 40 lowercase hex digits and a NUL (what SCRIPT LOAD answers). */
void rc_xnode_script_sha(char out[41]);

/* The keys and channel the nodes share. */
enum rc_xnode_key {
	RC_XNODE_KEY_PRESENCE = 0, /* prefix{topic}.p.<node>: a node's entries of a topic */
	RC_XNODE_KEY_PRESENCE_BASE, /* prefix{topic}.p.: the above without the node */
	RC_XNODE_KEY_TOPIC_NODES,  /* prefix{topic}.pn: nodes with entries, scored by expiry */
	RC_XNODE_KEY_NODES,        /* prefixnodes: live nodes, scored by expiry */
	RC_XNODE_KEY_NODE,         /* prefixnode.<node>: what a node says of itself */
	RC_XNODE_KEY_NODE_BASE,    /* prefixnode. */
	RC_XNODE_KEY_CONTROL,      /* prefix!ctl: the control channel ('!' is in no topic) */
	RC_XNODE_KEY_TOPIC_SETS,   /* prefixtopics: shards with topics, "<node>/<shard>", by expiry */
	RC_XNODE_KEY_TOPICS,       /* prefixtopics.<node>/<shard>: a shard's topics and subscribers */
	RC_XNODE_KEY_TOPICS_BASE,  /* prefixtopics. */
	RC_XNODE_KEY_COUNT,
};

/* Writes key `which` into out (cap bytes, NUL terminated) from prefix, topic[0..tlen) and
 * node (each used only where the key has it); its length, or 0 if it does not fit. */
size_t rc_xnode_key(char *out, size_t cap, const char *prefix, const char *topic, size_t tlen,
		    const char *node, enum rc_xnode_key which);

/* An unsequenced event on a topic's channel: "<kind> <node> <envelope>". */
struct rc_xnode_event {
	char kind;        /* 'j' join, 'l' leave */
	const char *node; /* borrowed from the payload: the node that sent it */
	size_t node_len;
	const char *data; /* the envelope to deliver as is, borrowed */
	size_t data_len;
};

/* Whether a channel payload p[0..n) is an event (its first byte a letter) rather than a
 * sequenced message (a digit: rc_redis_parse_msg). */
bool rc_xnode_is_event(const char *p, size_t n);

/* Parses an event payload p[0..n). 0 or -EPROTO. */
int rc_xnode_parse_event(const char *p, size_t n, struct rc_xnode_event *out);

/* Writes the event payload of kind ('j'/'l') from node with envelope env[0..elen) into a
 * fresh allocation (the caller frees it), *len its length; NULL without memory. */
char *rc_xnode_write_event(char kind, const char *node, const char *env, size_t elen,
			   size_t *len);

/* A control message: "d <node> <code> <user>" (disconnect) or "u <node> <topic> <user>"
 * (unsubscribe). */
struct rc_xnode_ctl {
	char kind;        /* 'd' or 'u' */
	const char *node; /* borrowed: the node that sent it (and acted on its own) */
	size_t node_len;
	uint16_t code;     /* d: the close code */
	const char *topic; /* u: a valid topic name, borrowed */
	size_t topic_len;
	const char *user; /* 1..127 bytes, borrowed */
	size_t user_len;
};

/* Parses a control payload p[0..n). 0 or -EPROTO. */
int rc_xnode_parse_ctl(const char *p, size_t n, struct rc_xnode_ctl *out);

/* Writes control message m (its node, user and topic or code) into out[0..cap); its length,
 * or 0 if it does not fit. */
size_t rc_xnode_write_ctl(char *out, size_t cap, const struct rc_xnode_ctl *m);

/* The script's answer to a presence query. */
struct rc_xnode_presence {
	uint64_t connections;    /* entries of every live node */
	uint64_t users;          /* distinct users among them */
	bool listed;             /* connections <= the list bound: clients holds them all */
	const redisReply *clients; /* an array of entries' JSON text (borrowed), or NULL */
};

/* Parses the reply r to a presence query. 0 or -EPROTO. */
int rc_xnode_parse_presence(const redisReply *r, struct rc_xnode_presence *out);

/*
 * The answer to a presence query on topic[0..tlen) from p, as rc_presence_write writes it
 * (op "presence" or "presence_stats"; the list only with list and p->listed, else
 * "clients_omitted" when list was asked). An entry that is not a JSON object is skipped
 * (*skipped counts them). Allocated (the caller frees it), *len its length; NULL without
 * memory.
 */
char *rc_xnode_write_presence(const struct rc_xnode_presence *p, const char *op,
			      const char *topic, size_t tlen, bool list, size_t *skipped,
			      size_t *len);

/*
 * Adds the live nodes of the reply r to a registry query ([[id, [field, value, ...]], ...])
 * to the JSON object text local[0..llen) as "nodes":[{"node":id, field: value, ...}] (values
 * of digits only as numbers), or, with r NULL, "partial":true. Allocated (the caller frees
 * it), *len its length; NULL without memory or when local is not an object. -EPROTO-like
 * malformed entries of r are skipped.
 */
char *rc_xnode_write_info(const char *local, size_t llen, const redisReply *r, size_t *len);

/*
 * /api/topics across nodes: the "topic count" lines of this node's shards (local[0..llen),
 * see rc_api_write_topics) with the topics of r, a registry answer over the shards' topic
 * hashes ({{"<node>/<shard>", {topic, count, ...}}, ...}) leaving out node own's shards
 * (their counts came live), summed per topic. r NULL (Redis not asked): the local topics
 * and "partial":true. Returns the JSON (malloc, *len) or NULL (bad input, no memory).
 */
char *rc_xnode_write_topics(const char *local, size_t llen, const redisReply *r,
			    const char *own, size_t *len);

#endif
