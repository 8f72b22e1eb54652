/*
 * The frame arena. One mapping, registered as fixed buffer 0 with every shard's ring when
 * zero-copy sends are enabled, is cut into one slice per shard. A shard builds its broadcast
 * frames in chunks of its own slice (size classes of powers of two, carved by a bump pointer
 * and recycled through per-class free lists), so any shard can send them with
 * send_zc_fixed: the NIC or the loopback path reads the owner's bytes, nothing is copied per
 * subscriber. Only the owner allocates and frees in its slice; frame.c sends a frame whose
 * last reference drops elsewhere back to its owner first. This file knows chunks, not
 * frames. Allocation: owner shard thread. Setup: main thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"

#define RC_ARENA_MIN_SHIFT 8 /* 256-byte smallest chunk */

RC_STATIC_ASSERT((1u << (RC_ARENA_MIN_SHIFT + RC_ARENA_CLASSES - 1)) >= 65536,
		 "the largest arena class must hold a 64 KiB frame");

int rc_arena_init(struct rc_app *app, char *err, size_t err_len)
{
	size_t bytes = (size_t)app->cfg.frame_arena_bytes;
	if (bytes == 0)
		return 0;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (p == MAP_FAILED) {
		snprintf(err, err_len, "frame_arena_bytes: mmap(%zu): %s", bytes, strerror(errno));
		return -errno;
	}
	app->arena = p;
	app->arena_bytes = bytes;
	return 0;
}

void rc_arena_free_all(struct rc_app *app)
{
	if (app->arena)
		munmap(app->arena, app->arena_bytes);
	app->arena = NULL;
}

/* Each shard's share of the arena, whole cache lines. */
static size_t slice_bytes(const struct rc_app *app)
{
	return (app->arena_bytes / (size_t)app->shards_count) & ~(size_t)(RC_CACHELINE - 1);
}

/* Registers the whole arena with s's ring and gives s its slice. Shard thread, at setup. */
int rc_arena_attach(struct rc_shard *s, char *err, size_t err_len)
{
	struct rc_app *app = s->app;
	if (!app->arena)
		return 0;
	/* Registration pins every page of the arena (resident at once, and charged to
	 * RLIMIT_MEMLOCK per ring without CAP_IPC_LOCK), so it happens only when zero-copy
	 * sends are on; otherwise the arena is plain memory touched as frames need it. */
	struct iovec iov = {app->arena, app->arena_bytes};
	int rc = app->cfg.send_zc_threshold_bytes ? io_uring_register_buffers(&s->ring, &iov, 1) : 0;
	if (rc < 0) {
		snprintf(err, err_len,
			 "shard %d: registering the %zu-byte frame arena: %s (RLIMIT_MEMLOCK? see "
			 "kernel-tuning.md, or lower frame_arena_bytes)",
			 s->index, app->arena_bytes, strerror(-rc));
		return rc;
	}
	s->arena_bump = app->arena + slice_bytes(app) * (size_t)s->index;
	s->arena_end = s->arena_bump + slice_bytes(app);
	return 0;
}

static int class_of(size_t bytes)
{
	int cls = 0;
	while (cls < RC_ARENA_CLASSES && ((size_t)1 << (RC_ARENA_MIN_SHIFT + cls)) < bytes)
		cls++;
	return cls < RC_ARENA_CLASSES ? cls : -1;
}

static bool in_slice(const struct rc_shard *s, const void *p)
{
	return (const uint8_t *)p >= s->arena_end - slice_bytes(s->app) &&
	       (const uint8_t *)p < s->arena_end;
}

void *rc_arena_alloc(struct rc_shard *s, size_t bytes, uint8_t *cls)
{
	int c = class_of(bytes);
	if (c < 0 || !s->arena_end)
		return NULL;
	void *chunk = s->arena_free[c];
	if (chunk) {
		s->arena_free[c] = *(void **)chunk;
	} else {
		size_t size = (size_t)1 << (RC_ARENA_MIN_SHIFT + c);
		if ((size_t)(s->arena_end - s->arena_bump) < size) {
			s->stats.arena_exhausted++;
			return NULL;
		}
		chunk = s->arena_bump;
		s->arena_bump += size;
	}
	RC_DASSERT(in_slice(s, chunk));
	*cls = (uint8_t)c;
	s->stats.arena_frames++;
	return chunk;
}

void rc_arena_release(struct rc_shard *s, void *chunk, uint8_t cls)
{
	RC_ASSERT(cls < RC_ARENA_CLASSES);
	RC_DASSERT(in_slice(s, chunk));
	*(void **)chunk = s->arena_free[cls];
	s->arena_free[cls] = chunk;
	s->stats.arena_frames--;
}
