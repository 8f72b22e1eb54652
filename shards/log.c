/* The runtime's log lines on stderr. Any thread. */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void rc_log(const struct rc_app *app, int level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	const struct rc_shard *self = rc_current_shard;
	char line[512];
	va_list ap;

	RC_ASSERT(level >= RC_LOG_ERROR && level <= RC_LOG_DEBUG);
	if (app && level > app->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (self)
		fprintf(stderr, "ringcast: [%s] shard %d: %s\n", names[level], self->index, line);
	else
		fprintf(stderr, "ringcast: [%s] %s\n", names[level], line);
}
