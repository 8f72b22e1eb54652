/*
 * The runtime's log (log.c): one line per call on stderr, labelled with the calling shard,
 * filtered by the application's log_level. Any thread.
 */
#ifndef RC_LOG_H
#define RC_LOG_H

#include "runtime.h"

/* The levels of log_level (config.h). */
#define RC_LOG_ERROR RC_LOG_LEVEL_ERROR
#define RC_LOG_WARN RC_LOG_LEVEL_WARN
#define RC_LOG_INFO RC_LOG_LEVEL_INFO
#define RC_LOG_DEBUG RC_LOG_LEVEL_DEBUG

/*
 * Logs fmt at level (RC_LOG_*) unless app's log_level is lower; app may be NULL (always
 * logs). Borrows app; truncates lines past 512 bytes. Any thread; a rate limit, where one is
 * needed, is the caller's.
 */
void rc_log(const struct rc_app *app, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
