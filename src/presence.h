/*
 * Presence of one topic, sans I/O: who is subscribed (connection id, user id, optional client
 * info from the token, raw JSON), kept by the topic's owner shard. Entries are found by
 * connection id in O(1) (an open-addressing index beside a dense array, so listing walks the
 * array) and distinct users are counted in a second index (user hash -> connections). Its
 * footprint (rc_presence_bytes) is what the owner charges to the memory budget. Also writes the
 * JSON answers (presence, presence_stats) and the join/leave events. One owner thread per set;
 * nothing here is thread-safe.
 */
#ifndef RC_PRESENCE_H
#define RC_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_PRESENCE_USER_BYTES_LIMIT 128  /* RC_JWT_SUB_BYTES_LIMIT: a token's sub */
#define RC_PRESENCE_INFO_BYTES_LIMIT 1024 /* RC_JWT_INFO_BYTES_LIMIT: the info claim, compact */
#define RC_PRESENCE_CONN_CHARS 16          /* a connection id: 16 lowercase hex digits */

/* u64 key (never 0) -> u32 value, linear probing, backward-shift deletion. */
struct rc_u64map {
	uint64_t *keys; /* 0: empty */
	uint32_t *vals;
	uint32_t mask;  /* slots - 1; 0 with no slots */
	uint32_t count;
};

struct rc_presence_entry {
	uint64_t conn;      /* the connection's id, never 0 */
	uint64_t user_hash; /* of the user id, never 0 */
	char *text;         /* user then info, one allocation, not NUL-terminated */
	uint16_t user_len;
	uint16_t info_len;  /* 0: no info */
};

struct rc_presence {
	struct rc_presence_entry *v; /* dense: v[0..count) */
	uint32_t count;
	uint32_t cap;
	struct rc_u64map by_conn; /* conn -> index in v */
	struct rc_u64map users;   /* user hash -> its connections here */
	size_t text_bytes;        /* bytes of every entry's text */
};

/*
 * Adds connection conn of user[0..ulen) with info[0..ilen) (raw JSON, ilen 0 for none; both
 * copied) to p, which holds at most max entries. 0, -EEXIST (conn is there), -E2BIG (max),
 * -EINVAL (conn 0, lengths over the limits) or -ENOMEM (p unchanged).
 */
int rc_presence_add(struct rc_presence *p, uint64_t conn, const char *user, size_t ulen,
		    const char *info, size_t ilen, uint32_t max);

/* Removes conn from p. 0 or -ENOENT. */
int rc_presence_remove(struct rc_presence *p, uint64_t conn);

/* The entry of conn, or NULL. */
const struct rc_presence_entry *rc_presence_find(const struct rc_presence *p, uint64_t conn);

/* Distinct users in p. */
uint32_t rc_presence_users(const struct rc_presence *p);

/* The heap bytes p holds (arrays, indexes, texts), for the memory budget. */
size_t rc_presence_bytes(const struct rc_presence *p);

/* Frees what p holds; p is then empty and may be reused. */
void rc_presence_free(struct rc_presence *p);

/*
 * The answer to a presence query on topic[0..tlen) (borrowed), allocated (the caller frees
 * it), *len its length: {"op":OP,"topic":T,"connections":N,"users":U} and, with list,
 * ,"clients":[{"user":U,"conn":C[,"info":I]},...]; with omitted, ,"clients_omitted":true.
 * op is "presence" or "presence_stats". NULL without memory.
 */
char *rc_presence_write(const struct rc_presence *p, const char *op, const char *topic,
			size_t tlen, bool list, bool omitted, size_t *len);

/*
 * A join or leave event: {"op":"join"|"leave","topic":T,"user":U,"conn":C[,"info":I]},
 * allocated (the caller frees it), *len its length. NULL without memory.
 */
char *rc_presence_write_event(bool join, const char *topic, size_t tlen, const char *user,
			      size_t ulen, uint64_t conn, const char *info, size_t ilen,
			      size_t *len);

/*
 * One entry of a presence list, {"user":U,"conn":C[,"info":I]} (user first: the Redis
 * engine's query tells users apart by that prefix), allocated (the caller frees it), *len
 * its length. NULL without memory.
 */
char *rc_presence_write_client(const struct rc_presence_entry *e, size_t *len);

/* The 16 hex digits of connection id conn into out (not NUL-terminated). */
void rc_presence_conn_text(uint64_t conn, char out[RC_PRESENCE_CONN_CHARS]);

/* Checks p's indexes against its array (tests, RC_DASSERT); O(entries). */
bool rc_presence_validate(const struct rc_presence *p);

#endif
