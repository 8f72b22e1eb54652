/*
 * Frames (frame.c): bytes to send, a WebSocket frame or an HTTP response, referenced by the
 * send queues that hold them. A unicast frame belongs to one shard and counts references with
 * plain integers; a broadcast frame (shared) is built once by its topic's owner shard,
 * read-only afterwards, and counted atomically because every shard holding subscribers
 * references it. The last reference frees a heap frame where it drops, and sends an arena
 * frame home to its owner shard. Shard threads; rc_frame_unref also at shutdown.
 */
#ifndef RC_FRAME_H
#define RC_FRAME_H

#include "runtime.h"

struct rc_frame {
	uint32_t refs;       /* atomic (__atomic builtins) when shared */
	uint32_t len;        /* bytes of data[] to send */
	uint64_t seq;        /* pub/sub sequence number, 0 for unicast frames */
	uint64_t topic_hash; /* rc_topic_hash of topic */
	const char *topic;   /* NUL-terminated, inside this allocation; NULL for unicast */
	uint16_t topic_len;
	uint8_t shared;
	uint8_t owner;       /* shard that built it */
	uint8_t arena_class; /* 0: malloc'd; else 1 + size class in the registered arena */
	uint8_t pad[3];
	struct rc_frame *deflated; /* broadcast: its permessage-deflate variant (a reference) */
	/* broadcast: its Server-Sent Events variant (a reference), built by the first shard
	 * that delivers it to an SSE subscriber and set once (compare-and-swap, sse_rt.c) */
	struct rc_frame *sse;
	uint8_t data[]; /* len bytes, then the topic and its NUL when topic is set (charged) */
};

/* The header every queued byte pays; owner and arena_class fit its padding. The SSE
 * variant's pointer made it 56: one per frame, none per connection. */
RC_STATIC_ASSERT(sizeof(struct rc_frame) == 56, "the frame header grew");
RC_STATIC_ASSERT(RC_SHARDS_LIMIT <= 256, "rc_frame.owner is one byte");

/* A unicast frame of len bytes on the heap, one reference (the caller's), charged to the
 * budget (send_queue) until its last reference drops; NULL without memory. Any thread with
 * rc_current_app set (shard threads). */
struct rc_frame *rc_frame_alloc(uint32_t len);

/*
 * A broadcast frame of len bytes built by s: in s's arena slice when it fits, else on the
 * heap; shared, owned by s, one reference (the caller's). NULL without memory. Shard s's
 * thread.
 */
struct rc_frame *rc_frame_alloc_shared(struct rc_shard *s, uint32_t len);

/* Takes n more references to f (one atomic add for a shared frame). Any shard thread that
 * holds a reference. */
void rc_frame_ref_n(struct rc_frame *f, uint32_t n);

/*
 * Drops one reference to f. The last one releases its charge and frees a heap frame, or
 * returns an arena frame to its owner's slice (through the owner's inbox from another shard;
 * outside shard threads, at shutdown, the arena is unmapped whole). Any thread holding a
 * reference with rc_current_app set (shard threads, rc_app_destroy).
 */
void rc_frame_unref(struct rc_frame *f);

/* An arena frame of s came home (an RC_ITEM_RETURN of s's inbox): its chunk is free again.
 * Takes ownership of f. Shard s's thread. */
void rc_frame_returned(struct rc_shard *s, struct rc_frame *f);

#endif
