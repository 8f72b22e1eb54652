/*
 * The Prometheus text of the shards' counters (metrics.c): GET /metrics through
 * rc_app_metrics() and rc_app_stats() (include/ringcast/app.h), and the size that text can
 * reach, which sizes the HTTP answer buffer. Reads the counters only.
 */
#ifndef RC_METRICS_H
#define RC_METRICS_H

#include "runtime.h"

/* The most bytes rc_app_metrics() can write for app's shard count (NUL included). Borrows
 * app. Any thread; app.c asks once, on the main thread, when the application is created. */
size_t rc_metrics_bytes_max(const struct rc_app *app);

#endif
