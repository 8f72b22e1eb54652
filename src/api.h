/*
 * The server API's requests and errors, sans I/O: which call a path names (/api/NAME), the
 * JSON body of the calls that are not publishes ({"topic"}, {"user"[,"code"][,"topic"]},
 * {"topic"[,"since"][,"limit"]}), and the error body {"error":{"code":N,"reason":R}}, N being
 * the HTTP status. Publish and broadcast bodies are the envelope's (envelope.h). Pure; any
 * thread.
 */
#ifndef RC_API_H
#define RC_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topic.h" /* RC_TOPIC_BYTES_LIMIT */

#define RC_API_USER_BYTES_LIMIT 127   /* a user id: "#" and it make a topic name */
#define RC_API_HISTORY_LIMIT 1000     /* messages one history call answers at most */
#define RC_API_HISTORY_DEFAULT 100    /* ... when it gives no limit */
#define RC_API_CLOSE_CODE_DEFAULT 4000 /* disconnect's close code when none is given */

enum rc_api_call {
	RC_API_PUBLISH = 0,
	RC_API_BROADCAST,
	RC_API_DISCONNECT,
	RC_API_UNSUBSCRIBE,
	RC_API_PRESENCE,
	RC_API_PRESENCE_STATS,
	RC_API_HISTORY,
	RC_API_TOPICS,
	RC_API_INFO,
	RC_API_CALL_COUNT,
};

/* A parsed request body (the fields its call takes). Strings are NUL-terminated copies. */
struct rc_api_req {
	char topic[RC_TOPIC_BYTES_LIMIT + 1]; /* "" when absent */
	uint32_t topic_len;
	char user[RC_API_USER_BYTES_LIMIT + 1];
	uint32_t user_len;
	uint16_t code;  /* disconnect: the close code */
	uint64_t since; /* history: messages after this seq (0: from the oldest kept) */
	uint32_t limit; /* history: at most this many (1..RC_API_HISTORY_LIMIT) */
};

/* The call /api/name[0..len) names, or RC_API_CALL_COUNT. Borrows name. */
enum rc_api_call rc_api_call_of(const char *name, size_t len);

/* "publish", "broadcast", ... */
const char *rc_api_call_name(enum rc_api_call call);

/*
 * Parses the body in[0..len) (borrowed; empty is {} for calls without required fields) of
 * call (not PUBLISH or BROADCAST) into *out. 0, or -EINVAL with *reason (a literal): not a
 * JSON object, a field missing, of the wrong type or out of range, or one the call does not
 * take. Close codes: 1000, or 3000..4999.
 */
int rc_api_parse(enum rc_api_call call, const char *in, size_t len, struct rc_api_req *out,
		 const char **reason);

/*
 * Merges the shards' topic lists in[0..len) ("NAME COUNT\n" lines, a topic in several) into
 * {"topics":[{"topic":T,"subscribers":N},...]} sorted by name, allocated (the caller frees
 * it), *out_len its length. NULL without memory or for a malformed line.
 */
char *rc_api_write_topics(const char *in, size_t len, size_t *out_len);

/* Writes {"error":{"code":status,"reason":reason}} (reason escaped) into out[0..cap); its
 * length, or 0 if it does not fit. */
size_t rc_api_write_error(char *out, size_t cap, int status, const char *reason);

#endif
