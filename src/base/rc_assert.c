/* Assertion failure reporting. Any thread. */
#include "base/rc_assert.h"

#include <stdio.h>
#include <stdlib.h>

_Thread_local int rc_thread_shard = -1;

_Noreturn void rc_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "ringcast: assertion failed: %s (%s:%d, shard %d)\n", expr, file, line,
		rc_thread_shard);
	fflush(stderr);
	abort();
}
