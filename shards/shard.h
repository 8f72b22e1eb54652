/*
 * A shard's thread (shard.c): setup on the thread, the loop turn and the drain. Started by
 * app.c; everything else in it runs on the shard's own thread.
 */
#ifndef RC_SHARD_H
#define RC_SHARD_H

#include "runtime.h"

/*
 * Allocates s's tables and inbox and starts its thread, which sets up its ring, buffers and
 * arena slice (s->start_rc and s->start_err report a setup failure) and runs the loop until
 * the drain ends. 0 or -errno. Borrows s, which must outlive the thread. Main thread.
 */
int rc_shard_start(struct rc_shard *s);

#endif
