/*
 * The Redis engine's wire contract, sans I/O: which Redis instance a topic lives on (a
 * rendezvous hash every node computes alike), the names of a topic's keys and channel, the
 * Lua script that publishes and replays atomically, and the parsers of what Redis sends back
 * (script replies, stream entries, channel messages) on replies decoded by hiredis'
 * redisReader, which it builds bounded per reply. The runtime (shards/redis_conn.c, shards/pubsub_redis.c) does the I/O. Pure;
 * any thread.
 */
#ifndef RC_REDIS_PROTO_H
#define RC_REDIS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h> /* redisReply; only the reader and formatter are used */

/*
 * The index (0..count-1) of the Redis instance that holds topic[0..len): rendezvous
 * (highest random weight) hashing, each (address, topic) pair scored by SipHash-2-4 under a
 * fixed key, so every node agrees and removing one address moves only its own topics.
 * addrs are the redis_addresses entries as written. count > 0.
 */
uint32_t rc_redis_pick(const char *const *addrs, uint32_t count, const char *topic, size_t len);

/*
 * Splits "host:port" (the last colon; "[v6]:port" loses its brackets) into host (NUL
 * terminated, at most host_cap - 1 bytes) and port. 0 or -EINVAL.
 */
int rc_redis_parse_address(const char *s, char *host, size_t host_cap, uint16_t *port);

/* What a topic's keys are called: the key's suffix after prefix{topic}. */
enum rc_redis_key {
	RC_REDIS_KEY_META = 0, /* a hash: e the epoch of the current numbering, s the last seq */
	RC_REDIS_KEY_STREAM,   /* the history: entries {s: seq, d: data} */
	RC_REDIS_KEY_DEDUP,     /* prefix of the dedup keys: + publisher and id */
	RC_REDIS_KEY_COUNT,
};

/* Writes prefix{topic}.<suffix of which> into out (cap bytes, NUL terminated); returns its
 * length, or 0 if it does not fit. The braces are a hash tag: a topic's keys stay together
 * on a Redis Cluster slot. */
size_t rc_redis_key(char *out, size_t cap, const char *prefix, const char *topic, size_t tlen,
		    enum rc_redis_key which);

/* The Lua script (its text and length) run by EVALSHA: see redis_proto.c for its contract. */
const char *rc_redis_script(size_t *len);

/* The script's SHA-1 as 40 lowercase hex digits and a NUL (what SCRIPT LOAD answers). */
void rc_redis_script_sha(char out[41]);

/* A script's answer (a replay's, or one item's of a batch of publishes): the topic's seq and
 * epoch, and then either how the publish went or the stream entries (newest first) a replay
 * asked for. */
struct rc_redis_result {
	uint64_t seq;
	uint64_t epoch;
	bool duplicate;                /* publish: seq is the topic's last */
	bool refused;                  /* publish: Redis did not take it */
	const redisReply *entries;     /* replay: an array (borrowed from the reply), or NULL */
};

/* Parses the script's reply r to a replay. 0 or -EPROTO (not what the script returns). */
int rc_redis_parse_result(const redisReply *r, struct rc_redis_result *out);

/* Parses item i (< count) of the reply r to a batch of count publishes. 0 or -EPROTO. */
int rc_redis_parse_item(const redisReply *r, size_t count, size_t i, struct rc_redis_result *out);

/* What one reply of a reader made by rc_redis_reader_create may take. */
struct rc_redis_bound {
	size_t bytes_max; /* per reply: its objects, arrays of pointers and strings */
	size_t bytes;     /* taken so far by the reply being decoded */
	bool exceeded;    /* the reader failed on this bound (not on memory) */
	const redisReplyObjectFunctions *base; /* hiredis's own, which do the work */
};

/*
 * A redisReader whose replies may each take at most bytes_max (so a reply declaring a huge
 * array or string allocates nothing past it): beyond, redisReaderGetReply fails with
 * b->exceeded set. b (borrowed) must outlive the reader; call rc_redis_bound_next after
 * each reply taken. NULL: out of memory.
 */
redisReader *rc_redis_reader_create(struct rc_redis_bound *b, size_t bytes_max);

/* A reply was taken from b's reader: the next one starts from nothing. */
static inline void rc_redis_bound_next(struct rc_redis_bound *b)
{
	b->bytes = 0;
}

/* Whether the bytes r buffers unread (a reply still arriving) exceed b: then it sets
 * b->exceeded. */
bool rc_redis_reader_over(const redisReader *r, struct rc_redis_bound *b);

/* One sequenced message of a topic's channel payload. */
struct rc_redis_msg {
	uint64_t seq;
	uint64_t epoch;
	const char *data; /* borrowed from the payload */
	size_t data_len;
};

#define RC_REDIS_MSGS_LIMIT 1024u /* messages in one payload (redis_publish_batch_max's top) */

/*
 * A digit-first channel payload of a topic: count (1..RC_REDIS_MSGS_LIMIT) messages of
 * consecutive seqs from seq, "<seq> <epoch> <data>" for one, "<seq>:<count> <epoch> <len 1>
 * .. <len count> <data 1>..<data count>" for several (the data concatenated, the lengths
 * adding up to exactly what follows). A payload whose first byte is a letter is an
 * unsequenced event, not for this parser. Read with rc_redis_msgs_next.
 */
struct rc_redis_msgs {
	uint64_t seq; /* of the next message */
	uint64_t epoch;
	uint32_t count; /* messages not yet read */
	const char *lens; /* the next length's text (several messages), else NULL */
	const char *data; /* the next message's data */
	const char *end;  /* of the payload */
};

/* Parses (and checks whole) the channel payload p[0..n) into out. 0 or -EPROTO. */
int rc_redis_parse_msgs(const char *p, size_t n, struct rc_redis_msgs *out);

/* Parses one stream entry [id, [field, value, ...]] of a topic's history: {d: payload} (its
 * messages, as published) or {s: seq, d: data} (one message, epoch 0: as stored by earlier
 * versions) into out, data borrowed from e. 0 or -EPROTO. */
int rc_redis_parse_entry(const redisReply *e, struct rc_redis_msgs *out);

/* The next message of a parsed payload into out (data borrowed from the payload); false once
 * every message was read. */
bool rc_redis_msgs_next(struct rc_redis_msgs *m, struct rc_redis_msg *out);

#endif
