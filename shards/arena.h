/*
 * The frame arena (arena.c): one mapping cut into a slice per shard, from which a shard
 * allocates chunks of power-of-two size classes (256 B .. 64 KiB) for its broadcast frames,
 * so any shard can send them zero-copy (the arena is registered as fixed buffer 0 of every
 * ring when send_zc_threshold_bytes is set). Chunks only: what goes in them is frame.c's.
 * Setup: main thread. Attach, alloc, release: the owning shard's thread only.
 */
#ifndef RC_ARENA_H
#define RC_ARENA_H

#include "runtime.h"

/* Maps frame_arena_bytes (nothing when 0). 0, or -errno with one line in err. Main thread,
 * before the shards start. */
int rc_arena_init(struct rc_app *app, char *err, size_t err_len);

/* Unmaps the arena; after every shard thread has joined. */
void rc_arena_free_all(struct rc_app *app);

/* Registers the arena with s's ring (zero-copy on) and gives s its slice. 0, or -errno with
 * one line in err. Shard thread, at setup. */
int rc_arena_attach(struct rc_shard *s, char *err, size_t err_len);

/*
 * A chunk of at least bytes in s's slice (a reference into the arena, s's until released),
 * its size class in *cls; NULL when there is no arena, bytes is over the largest class, or
 * the slice is exhausted (counted in arena_exhausted). Shard s's thread.
 */
void *rc_arena_alloc(struct rc_shard *s, size_t bytes, uint8_t *cls);

/* Puts chunk (of class cls, allocated from s's slice) back on s's free list. Shard s's
 * thread: a chunk freed elsewhere travels home first (frame.c). */
void rc_arena_release(struct rc_shard *s, void *chunk, uint8_t cls);

#endif
