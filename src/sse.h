/*
 * Server-Sent Events for GET /sse, sans I/O: the request (which topics, and from where each
 * resumes: the `since` query parameter and the browser's Last-Event-ID) and the event
 * framing (an `id:` line naming topic, seq and epoch, the JSON on `data:` lines). The same
 * position format, topic~seq~epoch, serves ids, Last-Event-ID and `since`, so a browser's
 * automatic resume maps onto the pub/sub resume. Pure; the caller's thread.
 */
#ifndef RC_SSE_H
#define RC_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rc_util.h"

/* Topics one GET /sse may name (subscriptions_per_connection_max applies too). */
#define RC_SSE_TOPICS_LIMIT 64
/* The longest id: a topic (128 bytes), "~", a seq (20 digits), "~", an epoch (16 digits). */
#define RC_SSE_ID_LIMIT (128 + 1 + 20 + 1 + 16)

/* One topic of a stream and where it resumes. */
struct rc_sse_topic {
	struct rc_slice name; /* borrows the decode buffer given to rc_sse_parse */
	bool has_since;
	bool has_epoch;
	uint64_t since; /* the last seq the client saw */
	uint64_t epoch; /* of that seq; 0 when the text was no epoch (then a reset follows) */
};

struct rc_sse_request {
	struct rc_sse_topic topics[RC_SSE_TOPICS_LIMIT];
	uint32_t count;
};

/*
 * Parses GET /sse's query (`topics=a,b` required, `since=a~41~<epoch>,b~7` optional, other
 * parameters ignored; values may be percent-encoded) and last_event_id (one position, may be
 * empty) into req. Decoded text goes to buf[0..cap), which req borrows. A position in `since`
 * overrides Last-Event-ID for its topic; a Last-Event-ID that names no requested topic or is
 * malformed is ignored (it is whatever id the browser saw last). 0, or -EINVAL with *reason
 * (a string literal): no topics, a bad or repeated topic, more than RC_SSE_TOPICS_LIMIT, a
 * malformed `since` or one naming a topic not requested, or cap too small.
 */
int rc_sse_parse(struct rc_slice query, struct rc_slice last_event_id, char *buf, size_t cap,
		 struct rc_sse_request *req, const char **reason);

/*
 * Parses one position topic~seq or topic~seq~epoch (epoch: 16 lowercase hex digits; any
 * other text reads as epoch 0, which matches no topic). True if well-formed; t->name
 * borrows p.
 */
bool rc_sse_parse_position(const char *p, size_t n, struct rc_sse_topic *t);

/* Writes the id of message seq of topic in epoch (topic~seq~epoch) to out (at least
 * RC_SSE_ID_LIMIT bytes); returns its length. */
size_t rc_sse_write_id(char *out, const char *topic, size_t tlen, uint64_t seq, uint64_t epoch);

/*
 * Writes one event: `id: <id>` when idlen > 0, the data as `data: ` lines (one per line of
 * it: a CR, LF or CRLF inside data starts a new line), then the blank line that ends the
 * event. Returns the event's length; writes only when out is not NULL and cap holds it
 * (call with NULL first to size the buffer).
 */
size_t rc_sse_write_event(char *out, size_t cap, const char *id, size_t idlen, const char *data,
			  size_t dlen);

#endif
