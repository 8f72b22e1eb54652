/*
 * The calling thread's shard: one thread-local, set once by each shard thread, read by the
 * log, by frames going home and by publishes that must know whether they come from a
 * shard. Assertion messages name it through the hook rc_assert.c offers. Any thread.
 */
#include "runtime.h"

_Thread_local struct rc_shard *rc_current_shard;
_Thread_local struct rc_app *rc_current_app;

static int current_index(void)
{
	return rc_current_shard ? rc_current_shard->index : -1;
}

void rc_runtime_enter(struct rc_shard *s)
{
	RC_ASSERT(s != NULL);
	RC_ASSERT(rc_current_shard == NULL);
	rc_current_shard = s;
	rc_current_app = s->app;
	rc_assert_set_shard_fn(current_index);
}
