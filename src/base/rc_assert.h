/*
 * Assertions. RC_ASSERT is on in every build: a broken invariant aborts with the expression,
 * file:line and the calling shard rather than corrupting memory. RC_DASSERT guards hot or
 * expensive checks and is compiled only into debug, asan and fuzz builds (RC_DEBUG=1).
 * Never assert on network bytes or config values: those are operating errors (rc_err.h).
 * Any thread.
 */
#ifndef RC_ASSERT_H
#define RC_ASSERT_H

#include <stddef.h>

/*
 * Registers fn, which returns the calling thread's shard index (-1 outside shard threads),
 * for assertion messages to name the shard. Each shard thread of the runtime registers it
 * as it starts; unset, messages say shard -1. Any thread.
 */
void rc_assert_set_shard_fn(int (*fn)(void));

/* Prints the failed expression and aborts. Never returns. */
_Noreturn void rc_assert_fail(const char *expr, const char *file, int line);

#define RC_LIKELY(x) __builtin_expect(!!(x), 1)
#define RC_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define RC_ASSERT(c)                                                                               \
	do {                                                                                       \
		if (RC_UNLIKELY(!(c)))                                                             \
			rc_assert_fail(#c, __FILE__, __LINE__);                                    \
	} while (0)

#if defined(RC_DEBUG) && RC_DEBUG
#define RC_DASSERT(c) RC_ASSERT(c)
#else
#define RC_DASSERT(c) ((void)sizeof(!(c)))
#endif

#define RC_STATIC_ASSERT(c, msg) _Static_assert(c, msg)

#endif
