/*
 * The live dashboard of the ringcast program: GET / serves a page that subscribes over the
 * gateway's own WebSocket (/ws) to topic "ringcast.stats", which a feed thread publishes
 * once per stats_interval_ms from rc_app_stats(). Main thread starts and stops the feed; the
 * HTTP handler runs on shard threads.
 */
#ifndef RC_DASHBOARD_H
#define RC_DASHBOARD_H

#include <stddef.h>
#include <stdint.h>

#include <ringcast/ringcast.h>

#define RC_STATS_TOPIC "ringcast.stats"

struct rc_dashboard;

/* HTTP handler for GET /: the page (ctx unused). */
int rc_dashboard_page(const struct rc_http_call *call, char *out, size_t *out_len,
		      const char **content_type, void *ctx);

/* Starts the feed thread publishing every interval_ms (0: none, returns NULL). */
struct rc_dashboard *rc_dashboard_start(struct rc_app *app, uint64_t interval_ms);

/* Stops and joins the feed thread; after rc_app_run() returned. NULL is fine. */
void rc_dashboard_stop(struct rc_dashboard *d);

#endif
