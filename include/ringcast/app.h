/*
 * ringcast embedding API: the application. An application creates an rc_app from a
 * configuration, registers WebSocket endpoints and HTTP handlers by path, and runs it: one
 * pinned shard thread per core accepts connections (SO_REUSEPORT) and calls the endpoint's
 * callbacks on the thread of the shard that owns the connection. rc_app_run() returns after a
 * graceful drain (SIGINT/SIGTERM or rc_app_stop()).
 */
#ifndef RINGCAST_APP_H
#define RINGCAST_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_app;
struct rc_conn;
struct rc_config;

/* A WebSocket endpoint's callbacks. All run on the connection's shard thread; ctx is the
 * endpoint's ctx. Any may be NULL. */
struct rc_ws_handler {
	/* The 101 was queued; the connection is open. */
	void (*on_open)(struct rc_conn *c, void *ctx);
	/* A complete, validated message (text is valid UTF-8). data is borrowed for the call. */
	void (*on_message)(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx);
	/* The connection is gone; code is what the peer sent or 1006 if it vanished. c is
	 * invalid after this returns. */
	void (*on_close)(struct rc_conn *c, uint16_t code, void *ctx);
	/* The send queue emptied after having been above half of send_queue_bytes_max. */
	void (*on_drain)(struct rc_conn *c, void *ctx);
	void *ctx;
	/* Limits; 0 = the configuration's frame_bytes_max / message_bytes_max. */
	uint64_t frame_bytes_max;
	uint64_t message_bytes_max;
};

/* A plain HTTP request as an HTTP handler sees it. Borrowed for the call. */
struct rc_http_call {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* NUL-terminated copy of the path */
	const char *query;  /* after '?', "" if none */
	const void *body;
	size_t body_len;
	int shard; /* the calling shard */
};

/*
 * Answers a plain HTTP request: write the response body into out (capacity *out_len) and set
 * *out_len to its length, *content_type to a static string; return the status code (200…).
 * Returning a status ≥ 400 with *out_len 0 sends a standard body.
 */
typedef int (*rc_http_fn)(const struct rc_http_call *call, char *out, size_t *out_len,
			  const char **content_type, void *ctx);

/*
 * Creates an application from cfg (copied; the caller keeps ownership of cfg). Validates the
 * configuration and probes the kernel's io_uring features; on failure returns NULL and
 * writes one line naming the key or the missing feature and the minimum kernel into err.
 */
struct rc_app *rc_app_create(const struct rc_config *cfg, char *err, size_t err_len);

/* Registers a WebSocket endpoint at path (e.g. "/echo"); h is copied. Before rc_app_run(). */
int rc_app_ws(struct rc_app *app, const char *path, const struct rc_ws_handler *h);

/* Registers an HTTP handler at path for any method. Before rc_app_run(). */
int rc_app_http(struct rc_app *app, const char *path, rc_http_fn fn, void *ctx);

/*
 * Serves the pub/sub topics as Server-Sent Events at path (GET path?topics=a,b, resuming
 * with since= and Last-Event-ID; README "Server-Sent Events"). After rc_app_pubsub(), before
 * rc_app_run(). 0 or -EINVAL.
 */
int rc_app_sse(struct rc_app *app, const char *path);

/*
 * Serves a static asset at path: GET and HEAD answer data[0..len) (borrowed for the app's
 * life, typically embedded at build time) as content_type, with the ETag etag (a quoted
 * string, borrowed) and Cache-Control; a request whose If-None-Match names etag gets 304.
 * Before rc_app_run().
 */
int rc_app_asset(struct rc_app *app, const char *path, const char *content_type,
		 const void *data, size_t len, const char *etag);

/*
 * Starts the shards and blocks until the application has drained: SIGINT/SIGTERM (handled
 * here unless handle_signals is false) or rc_app_stop() stops accepting, sends close 1001 to
 * every connection and waits up to drain_timeout_ms for the replies. Returns 0 or -errno.
 */
int rc_app_run(struct rc_app *app, bool handle_signals);

/* Begins the drain; callable from any thread, also from a signal-free embedding. */
void rc_app_stop(struct rc_app *app);

/* Frees everything the application holds. After rc_app_run() returned. */
void rc_app_destroy(struct rc_app *app);

/* Number of shards (valid after rc_app_create). */
int rc_app_shards(const struct rc_app *app);

/* Totals over every shard, read without stopping them (each value may be a few events old). */
struct rc_app_stats {
	uint64_t connections_open;
	uint64_t websockets_open;
	uint64_t connections_accepted;
	uint64_t messages_in;
	uint64_t messages_out;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t publishes;
	uint64_t deliveries;
	uint64_t subscriptions;
	uint64_t topics;
	uint64_t slow_consumer_closes;
	uint64_t memory_bytes;        /* charged to the memory budget, kernel socket memory included */
	uint64_t memory_budget_bytes; /* memory_budget_bytes in force */
	int memory_level;             /* 0 ok, 1 past the soft mark, 2 at the budget */
	int shards;
	uint64_t redis_down_mask; /* engine = redis: bit i set while redis_addresses entry i is
				   * not reachable from every shard */
};

/* Fills *out with the current totals. Any thread, while rc_app_run() runs. */
void rc_app_stats(struct rc_app *app, struct rc_app_stats *out);

/*
 * Writes every runtime metric in the Prometheus text format (0.0.4) into buf and returns its
 * length, or 0 if cap is too small. Any shard thread (e.g. from an HTTP handler).
 */
size_t rc_app_metrics(struct rc_app *app, char *buf, size_t cap);

/* The port actually bound (useful with port 0 in tests). Valid during rc_app_run. */
int rc_app_port(const struct rc_app *app);

#endif
