/*
 * The client protocol's envelopes: JSON text frames, sans I/O. Parses what clients send
 *   {"op":"sub","topic":T[,"since":N[,"epoch":E]][,"token":K]}   {"op":"unsub","topic":T}
 *   {"op":"pub","topic":T,"data":D[,"id":I]}   {"op":"ping"}   {"op":"refresh","token":K}
 *   {"op":"presence","topic":T}   {"op":"presence_stats","topic":T}
 * and the body of HTTP POST /publish ({"topic":T,"data":D[,"id":I]} or an array of those),
 * and writes what the server sends into caller buffers:
 *   {"op":"msg","topic":T,"seq":N,"data":D}   (built once per publish, same bytes for all)
 *   {"op":"ack","of":OP[,"topic":T][,"seq":N][,"epoch":E][,"id":I]}
 *   {"op":"error","code":C,"reason":R}
 *   {"op":"gap","topic":T,"from":A,"to":B,"epoch":E}   (history lost what the client missed)
 *   {"op":"reset","topic":T,"epoch":E,"seq":N}   (the client's since means nothing here)
 * E, a topic's epoch, is 16 lowercase hex digits naming one run of its numbering.
 * and the answer to POST /publish: {"seq":N} or {"results":[{"seq":N},...]}.
 * Parsing uses cJSON and frees its tree before returning; the writers never allocate. Keys
 * other than op/topic/since/epoch/data/id/token are ignored; a known key that does not belong to
 * the op, or any repeated key, is an error. D is passed through as the client wrote it (minus
 * whitespace), never re-encoded: numbers keep every digit. Pure; any thread.
 */
#ifndef RC_ENVELOPE_H
#define RC_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topic.h" /* RC_TOPIC_BYTES_LIMIT */

#define RC_ENVELOPE_ID_BYTES_LIMIT 64             /* idempotency key, bytes */
#define RC_ENVELOPE_KEYS_LIMIT 16                 /* keys in one message object */
#define RC_ENVELOPE_SEQ_LIMIT ((UINT64_C(1) << 53) - 1) /* exact in every JSON client */
#define RC_ENVELOPE_EPOCH_CHARS 16                /* hex digits of an epoch */
#define RC_ENVELOPE_TOKEN_BYTES_LIMIT 65536       /* a JWT (token_bytes_max is smaller) */

enum rc_envelope_op {
	RC_ENVELOPE_OP_SUB = 0,
	RC_ENVELOPE_OP_UNSUB,
	RC_ENVELOPE_OP_PUB,
	RC_ENVELOPE_OP_PING,
	RC_ENVELOPE_OP_REFRESH, /* a new access token for the connection */
	RC_ENVELOPE_OP_PRESENCE,       /* who is subscribed to a topic */
	RC_ENVELOPE_OP_PRESENCE_STATS, /* how many: connections and distinct users */
	RC_ENVELOPE_OP_COUNT,
};

/*
 * Why a message was refused. The values are the `code` of the error envelope: documented
 * in the README, never renumbered. The parser returns codes 1..11; the runtime reports the
 * others.
 */
enum rc_envelope_err {
	RC_ENVELOPE_OK = 0,
	RC_ENVELOPE_ERR_JSON = 1,            /* not UTF-8, not strict JSON, or trailing bytes */
	RC_ENVELOPE_ERR_NOT_OBJECT = 2,      /* the message or a batch item is not an object */
	RC_ENVELOPE_ERR_OP = 3,              /* "op" missing or not a string */
	RC_ENVELOPE_ERR_UNKNOWN_OP = 4,      /* "op" is not sub, unsub, pub or ping */
	RC_ENVELOPE_ERR_TOPIC = 5,           /* "topic" missing, not a string, or invalid */
	RC_ENVELOPE_ERR_DATA = 6,            /* "data" missing */
	RC_ENVELOPE_ERR_DATA_TOO_LARGE = 7,  /* "data" does not fit the caller's limit */
	RC_ENVELOPE_ERR_SINCE = 8,           /* "since" not an integer 0..RC_ENVELOPE_SEQ_LIMIT */
	RC_ENVELOPE_ERR_ID = 9,              /* "id" not a string of 1..64 bytes */
	RC_ENVELOPE_ERR_FIELD = 10,          /* repeated key, too many keys, key not for this op */
	RC_ENVELOPE_ERR_BATCH = 11,          /* publish body empty or over the item limit */
	RC_ENVELOPE_ERR_NOT_SUBSCRIBED = 12, /* runtime: unsub of a topic not subscribed */
	RC_ENVELOPE_ERR_ALREADY_SUBSCRIBED = 13, /* runtime */
	RC_ENVELOPE_ERR_SUBSCRIPTION_LIMIT = 14, /* runtime: per-connection limit reached */
	RC_ENVELOPE_ERR_FORBIDDEN = 15,      /* runtime: not allowed to publish or subscribe */
	RC_ENVELOPE_ERR_BUSY = 16,           /* runtime: try again later */
	RC_ENVELOPE_ERR_INTERNAL = 17,       /* runtime: out of memory and the like */
	RC_ENVELOPE_ERR_TOKEN = 18,          /* runtime: a refresh or channel token refused */
	RC_ENVELOPE_ERR_COUNT,
};

/*
 * One parsed client message or POST /publish item. Strings are copies, NUL-terminated;
 * data points into the caller's data buffer.
 */
struct rc_envelope {
	enum rc_envelope_op op;                 /* always PUB for a POST /publish item */
	uint32_t topic_len;                     /* 1..RC_TOPIC_BYTES_LIMIT; 0 for ping */
	char topic[RC_TOPIC_BYTES_LIMIT + 1];   /* valid per rc_topic_name_valid() */
	bool has_since;                         /* sub carried "since" */
	uint64_t since;                         /* last seq the client saw, <= SEQ_LIMIT */
	bool has_epoch;                         /* sub carried "epoch" */
	uint64_t epoch;                         /* its value; 0 if not 16 hex digits (never
						 * an epoch the gateway gives out) */
	uint32_t id_len;                        /* 0: no id */
	char id[RC_ENVELOPE_ID_BYTES_LIMIT + 1];/* idempotency key, any UTF-8 but NUL */
	const char *data;                       /* pub: compact JSON text; NULL otherwise */
	uint32_t data_len;                      /* bytes at data, NUL not counted */
	const char *token;                      /* sub, refresh: a JWT in the data buffer; or
						 * NULL */
	uint32_t token_len;                     /* bytes at token, NUL not counted */
};

/*
 * True if name[0..len) is a topic name: 1..RC_TOPIC_BYTES_LIMIT bytes of A-Z a-z 0-9 and
 * _ . : / - (so it never needs escaping in JSON or in a metric label), or '#' followed by at
 * least one of those (a user's personal topic). Borrows name.
 */
bool rc_topic_name_valid(const char *name, size_t len);

/* True if name[0..len) is a personal topic, "#" and a user id: only that user's connections
 * subscribe to it (each of them from the start). Borrows name. */
bool rc_topic_personal(const char *name, size_t len);

/*
 * True if name[0..len) is reserved for the gateway's own feeds ("ringcast." and below):
 * clients may subscribe to such topics but never publish to them. Borrows name.
 */
bool rc_topic_reserved(const char *name, size_t len);

/*
 * Parses one client message in[0..len) (need not be NUL-terminated; borrowed) into *out.
 * A pub's data is written to data_buf as compact JSON, NUL-terminated; it may take at most
 * data_cap - 1 bytes (else RC_ENVELOPE_ERR_DATA_TOO_LARGE). out->data points into data_buf,
 * which the caller owns and must keep while it uses out. Returns RC_ENVELOPE_OK, or an
 * error with *reason set to a string literal fit for the error envelope (out is then
 * unspecified). Allocates only inside cJSON, freed before returning.
 */
enum rc_envelope_err rc_envelope_parse(const char *in, size_t len, struct rc_envelope *out,
				       char *data_buf, size_t data_cap, const char **reason);

/*
 * Parses a POST /publish body: one {"topic","data"[,"id"]} object or an array of 1..items_max
 * of them, into items[0..*count) (op PUB). The data of all items is packed into data_buf
 * (each NUL-terminated, data_cap bytes in all); each items[i].data points there. Returns
 * RC_ENVELOPE_OK, or an error with *reason (a literal) and *count set to the index of the
 * offending item (0 for errors of the body as a whole). Borrows in; the caller owns items
 * and data_buf.
 */
enum rc_envelope_err rc_envelope_parse_publish(const char *in, size_t len,
					       struct rc_envelope *items, uint32_t items_max,
					       uint32_t *count, char *data_buf, size_t data_cap,
					       const char **reason);

/*
 * Parses a server API broadcast body, {"topics":[T,...],"data":D[,"id":I]} (1..items_max
 * topics, no other key), into items[0..*count), one per topic, each with the same data (in
 * data_buf once) and id. Returns and borrows as rc_envelope_parse_publish.
 */
enum rc_envelope_err rc_envelope_parse_broadcast(const char *in, size_t len,
						 struct rc_envelope *items, uint32_t items_max,
						 uint32_t *count, char *data_buf, size_t data_cap,
						 const char **reason);

/*
 * A cheap scan, before any tree is built, that in[0..len) (borrowed) nests at most depth_max
 * arrays and objects and holds at most elements_max values (an upper bound: one per
 * container, one per comma, plus one), so a client cannot make the parser allocate a node
 * per byte of a large message. True if within; false with *reason (a literal) otherwise.
 * Malformed JSON passes: the parser refuses it.
 */
bool rc_envelope_json_within(const char *in, size_t len, uint32_t depth_max,
			     uint32_t elements_max, const char **reason);

/* "sub", "unsub", "pub", "ping", "refresh", "presence", "presence_stats". */
const char *rc_envelope_op_name(enum rc_envelope_op op);

/* A short snake_case name for metric labels ("json", "topic", ...); "ok" for RC_ENVELOPE_OK. */
const char *rc_envelope_err_name(enum rc_envelope_err err);

/* A default human-readable reason for err, for the runtime's own errors. */
const char *rc_envelope_err_reason(enum rc_envelope_err err);

/*
 * Exact length of the msg envelope rc_envelope_write_msg() would write, so the caller can
 * size a frame and its WebSocket header before building it.
 */
size_t rc_envelope_msg_len(size_t topic_len, uint64_t seq, size_t data_len);

/*
 * Writes {"op":"msg","topic":T,"seq":N,"data":D} to out (no NUL). topic must be a valid
 * topic name; data compact JSON from the parser. Returns the length, or 0 if cap is too
 * small (out is then garbage). Borrows everything; allocates nothing.
 */
size_t rc_envelope_write_msg(char *out, size_t cap, const char *topic, size_t topic_len,
			     uint64_t seq, const char *data, size_t data_len);

/*
 * Writes {"op":"ack","of":OP[,"topic":T][,"seq":N][,"epoch":E][,"id":I]} to out (no NUL):
 * topic is left out when topic_len is 0, seq when 0, epoch when 0, id when id_len is 0 (id
 * is JSON-escaped). Returns the length, or 0 if cap is too small.
 */
size_t rc_envelope_write_ack(char *out, size_t cap, enum rc_envelope_op of, const char *topic,
			     size_t topic_len, uint64_t seq, uint64_t epoch, const char *id,
			     size_t id_len);

/*
 * Writes {"op":"error","code":C,"reason":R} to out (no NUL); reason is a NUL-terminated
 * UTF-8 string, JSON-escaped here. Returns the length, or 0 if cap is too small.
 */
size_t rc_envelope_write_error(char *out, size_t cap, enum rc_envelope_err code,
			       const char *reason);

/*
 * Writes {"op":"gap","topic":T,"from":A,"to":B,"epoch":E} to out (no NUL): the messages A..B
 * (A <= B) of topic's epoch E (not 0) are gone from history. Returns the length, or 0 if cap
 * is too small.
 */
size_t rc_envelope_write_gap(char *out, size_t cap, const char *topic, size_t topic_len,
			     uint64_t from, uint64_t to, uint64_t epoch);

/*
 * Writes {"op":"reset","topic":T,"epoch":E,"seq":N} to out (no NUL): the client resumed
 * from a seq of another epoch, or beyond the current seq N of epoch E (not 0), so its last
 * seq means nothing; it is subscribed from N on. Returns the length, or 0 if cap is too small.
 */
size_t rc_envelope_write_reset(char *out, size_t cap, const char *topic, size_t topic_len,
			       uint64_t epoch, uint64_t seq);

/* A length rc_envelope_write_published() never exceeds for count items. */
size_t rc_envelope_published_max(uint32_t count);

/*
 * Writes the answer to POST /publish, with a final "\n": {"seq":N} for a single object, or
 * {"results":[{"seq":N},...]} for an array (batch), one element per item in order. An item
 * whose duplicate[i] is set (a repeated id, or not sequenced) reads {"seq":0,"duplicate":true}
 * whatever seq[i] holds. count >= 1, and 1 unless batch. Returns the length, or 0 if cap is
 * too small. Borrows everything; allocates nothing.
 */
size_t rc_envelope_write_published(char *out, size_t cap, bool batch, const uint64_t *seq,
				   const bool *duplicate, uint32_t count);

#endif
