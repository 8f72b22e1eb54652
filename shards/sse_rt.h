/*
 * Server-Sent Events on the runtime (sse_rt.c): what a GET /sse stream is sent, framed as
 * events instead of WebSocket frames. Unicast answers (acks, gaps, resets, errors) are framed
 * per connection; a broadcast message gets one SSE variant per publish, built by the first
 * shard that delivers it to a stream and shared by every stream on every shard, like the
 * deflated variant. Shard threads.
 */
#ifndef RC_SSE_RT_H
#define RC_SSE_RT_H

#include "runtime.h"

/* A unicast frame holding one event: the id line when idlen > 0, json[0..n) as data
 * (both copied). NULL without memory. */
struct rc_frame *rc_sse_frame(const char *id, size_t idlen, const char *json, size_t n);

/* Queues json[0..n) (copied) to stream c as an event without id; checked (the queue's
 * limit applies) or not (a stream's last event, as a close frame is never refused). 0 or
 * -errno as rc_conn_enqueue. */
int rc_sse_send(struct rc_conn *c, const char *json, size_t n, bool checked);

/* Queues a heartbeat comment to stream c (counted). 0 or -errno as rc_conn_enqueue
 * (-ENOBUFS: a slow consumer). */
int rc_sse_heartbeat(struct rc_conn *c);

/*
 * The SSE variant of broadcast frame f (borrowed), whose envelope starts hlen bytes in and
 * was published in epoch: f->sse once built (by this or another shard), else built now and
 * installed with a compare-and-swap (a shard that loses the race frees its copy). Returns a
 * reference f holds (borrowed: take one to queue it), or NULL without memory. Shard s's
 * thread, holding a reference to f.
 */
struct rc_frame *rc_sse_variant(struct rc_shard *s, struct rc_frame *f, size_t hlen,
				uint64_t epoch);

#endif
