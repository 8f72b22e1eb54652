/* Assertion failure reporting. Any thread. */
#include "base/rc_assert.h"

#include <stdio.h>
#include <stdlib.h>

/* Relaxed: every registration stores the same function; a reader sees it or NULL. */
static int (*shard_fn)(void);

void rc_assert_set_shard_fn(int (*fn)(void))
{
	__atomic_store_n(&shard_fn, fn, __ATOMIC_RELAXED);
}

_Noreturn void rc_assert_fail(const char *expr, const char *file, int line)
{
	int (*fn)(void) = __atomic_load_n(&shard_fn, __ATOMIC_RELAXED);
	fprintf(stderr, "ringcast: assertion failed: %s (%s:%d, shard %d)\n", expr, file, line,
		fn ? fn() : -1);
	fflush(stderr);
	abort();
}
