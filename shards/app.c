/*
 * The application object behind include/ringcast/app.h: configuration checks, the kernel
 * probe, SO_REUSEPORT listeners (one per shard, created here so a bind error is reported
 * before any thread starts), shard start-up (a shard that fails stops and joins the others)
 * and the drain on SIGINT/SIGTERM (a second signal ends it). The top of the runtime's layers:
 * it wires the hooks through which lower layers reach higher ones. Main thread, except
 * rc_app_stop() (any thread).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_serve.h"
#include "arena.h"
#include "conn_rt.h"
#include "http_serve.h"
#include "log.h"
#include "metrics.h"
#include "namespace.h"
#include "pubsub.h"
#include "pubsub_proto.h"
#include "presence_redis.h"
#include "pubsub_redis.h"
#include "redis_proto.h"
#include "redis_xnode.h"
#include "sendq.h"
#include "shard.h"
#include "token.h"
#include "tls_ctx.h"
#include "tls_rt.h"
#include "uring.h"

/* ---- the upward calls (docs/architecture.md, "Runtime layers") ------------------------------ */
/* A terminated connection: input, its send queue and its subscriptions let go of it. */
static void conn_closed(struct rc_conn *c, bool http)
{
	rc_proto_conn_closed(c, http);
	rc_conn_input_release(c, http);
	rc_sendq_conn_closed(c);
	rc_pubsub_conn_closed(c);
	rc_token_conn_clear(c);
	if (c->flags & RC_CF_SSE)
		c->shard->stats.sse_open--;
}

static const struct rc_conn_hooks conn_hooks = {
	.input = rc_conn_input,
	.tls_input = rc_tls_input,
	.closed = conn_closed,
	.resume = rc_conn_http_resume,
	.publish = rc_proto_http_publish,
	.sse = rc_proto_sse_open,
	.api = rc_api_serve,
};

static const struct rc_pubsub_hooks pubsub_hooks = {
	.subscribed = rc_proto_subscribed,
	.gap = rc_proto_gap,
	.published = rc_proto_published,
	.answer = rc_proto_answer,
	.unsubscribed = rc_proto_unsubscribed,
};

/* ---- public configuration wrappers (include/ringcast/config.h) ---------------------------- */
struct rc_config *rc_config_new(void)
{
	struct rc_config *cfg = malloc(sizeof(*cfg));
	if (cfg && rc_config_init(cfg) != 0) {
		rc_config_free(cfg);
		free(cfg);
		cfg = NULL;
	}
	return cfg;
}

int rc_config_set_key(struct rc_config *cfg, const char *key, const char *value, char *err,
		      size_t err_len)
{
	return rc_config_set(cfg, key, value, err, err_len);
}

int rc_config_default_node_id(struct rc_config *cfg)
{
	char host[256] = "", id[RC_NODE_ID_BYTES_LIMIT + 1], err[128];
	uint32_t rnd;
	if (cfg->node_id[0])
		return 0;
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "ringcast");
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		rnd = (uint32_t)rc_clock_ms();
	rc_node_id_make(id, sizeof(id), host, (unsigned long)getpid(), rnd);
	return rc_config_set(cfg, "node_id", id, err, sizeof(err));
}

void rc_config_delete(struct rc_config *cfg)
{
	if (!cfg)
		return;
	rc_config_free(cfg);
	free(cfg);
}

/* ---- listeners ----------------------------------------------------------------------------- */
static int listen_socket(const struct rc_config *cfg, const char *address, int port, char *err,
			 size_t err_len)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		slen = sizeof(*in4);
	} else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		slen = sizeof(*in6);
	} else {
		snprintf(err, err_len, "address: '%s' is not an IPv4 or IPv6 address",
			 address);
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	int one = 1;
	/* Accepted sockets inherit TCP_NODELAY from the listener: no setsockopt per connection. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		goto fail_close;
	if (bind(fd, (struct sockaddr *)&ss, slen) || listen(fd, (int)cfg->backlog))
		goto fail_close;
	return fd;
fail_close:;
	int e = errno;
	close(fd);
	errno = e;
fail:
	snprintf(err, err_len, "listen on %s:%d: %s", address, port, strerror(errno));
	return -errno;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* ---- creation ------------------------------------------------------------------------------ */
static int online_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static size_t split_slices(const char *text, char **buf, struct rc_slice *out, size_t max)
{
	char *items[32];
	*buf = strdup(text);
	if (!*buf)
		return 0;
	size_t n = rc_config_split_list(*buf, items, RC_MIN(max, RC_ARRAY_LEN(items)));
	for (size_t i = 0; i < n; i++) {
		out[i].p = items[i];
		out[i].len = (uint32_t)strlen(items[i]);
	}
	return n;
}

/* Topic names are hashed under a random per-process key (hash flooding); set once, before the
 * first app's shards run, and never changed while any table holds hashes. */
static void topic_key_init(void)
{
	uint64_t key[2];
	if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
		key[0] = rc_clock_ms() ^ (uint64_t)getpid() << 32;
		key[1] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
	}
	rc_topic_hash_key(key);
}

/* The first number of /proc/meminfo's MemTotal line, in bytes; 0 if unknown. */
static uint64_t host_memory(void)
{
	char line[256];
	unsigned long long kib = 0;
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return (uint64_t)kib * 1024;
}

/* This process's cgroup v2 memory.max in bytes; 0 if unlimited or unknown. */
static uint64_t cgroup_memory(void)
{
	char line[512], path[640];
	unsigned long long max = 0;
	FILE *f = fopen("/proc/self/cgroup", "r");
	if (!f)
		return 0;
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, "0::", 3) == 0;
	fclose(f);
	if (!found)
		return 0;
	line[strcspn(line, "\n")] = '\0';
	snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &max) != 1) /* "max": no limit */
		max = 0;
	fclose(f);
	return (uint64_t)max;
}

/* memory_budget_bytes, or 3/4 of the host's or cgroup's memory when it is 0. */
static int budget_setup(struct rc_app *app, char *err, size_t err_len)
{
	uint64_t bytes = app->cfg.memory_budget_bytes;
	app->budget_source = "memory_budget_bytes";
	if (bytes == 0) {
		uint64_t host = host_memory(), cg = cgroup_memory();
		bytes = rc_budget_default(host, cg);
		app->budget_source = cg && (!host || cg < host) ? "3/4 of the cgroup's memory.max"
			: host ? "3/4 of the host's memory" : "host memory unknown";
	}
	int rc = rc_budget_init(&app->budget, (uint32_t)app->shards_count, bytes,
				(uint32_t)app->cfg.memory_soft_percent);
	if (rc != 0)
		snprintf(err, err_len, "memory budget: %s", strerror(-rc));
	return rc;
}

/* True when every category of b is back to zero (debug builds check it at shutdown). */
static bool budget_settled(const struct rc_budget *b)
{
	for (int cat = 0; cat < RC_BUDGET_CATEGORY_COUNT; cat++) {
		int64_t sum = 0;
		for (uint32_t i = 0; i <= b->shards_count; i++)
			sum += atomic_load_explicit(&b->shards[i].bytes[cat], memory_order_relaxed);
		if (sum != 0) {
			fprintf(stderr, "ringcast: memory budget: %s holds %lld bytes at exit\n",
				rc_budget_category_name((enum rc_budget_category)cat), (long long)sum);
			return false;
		}
	}
	return true;
}

/* Sizes the per-shard connection tables from connections_max and RLIMIT_NOFILE. */
static int size_tables(struct rc_app *app, char *err, size_t err_len)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	/* Raise the soft limit to the hard one: the fixed-file table is capped by it. */
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	uint64_t per_ring_max = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
	uint64_t want = app->cfg.connections_max;
	/* Each ring's table also holds RC_CONN_SPARE_SLOTS so that connections over the limit
	 * can be accepted just long enough to hear a 503 instead of hanging in the backlog, and
	 * shard 0's the admin listener's allowance. */
	uint64_t admin = app->cfg.admin_port ? app->cfg.admin_connections_max : 0;
	uint64_t reserved = RC_MIN(per_ring_max / 2, RC_CONN_SPARE_SLOTS + admin);
	uint64_t per_shard = want ? (want + (uint64_t)app->shards_count - 1) / app->shards_count
				  : per_ring_max - reserved;
	if (per_shard + RC_CONN_SPARE_SLOTS + admin > per_ring_max && want) {
		snprintf(err, err_len,
			 "connections_max: %llu over %d shards needs %llu descriptors per ring, "
			 "above "
			 "RLIMIT_NOFILE %llu (raise it, add shards, or see kernel-tuning.md)",
			 (unsigned long long)want, app->shards_count, (unsigned long long)per_shard,
			 (unsigned long long)per_ring_max);
		return -EINVAL;
	}
	app->conns_per_shard = (uint32_t)per_shard;
	uint64_t rest = per_ring_max - per_shard;
	if (rest < admin) {
		snprintf(err, err_len, "admin_connections_max: %llu do not fit RLIMIT_NOFILE %llu",
			 (unsigned long long)admin, (unsigned long long)per_ring_max);
		return -EINVAL;
	}
	app->conns_spare = (uint32_t)RC_MIN(rest - admin, RC_CONN_SPARE_SLOTS);
	return 0;
}

struct rc_app *rc_app_create(const struct rc_config *cfg, char *err, size_t err_len)
{
	if (rc_config_validate(cfg, err, err_len) != 0)
		return NULL;
	if (rc_uring_probe(err, err_len) != 0)
		return NULL;
	struct rc_app *app = calloc(1, sizeof(*app));
	if (!app || rc_config_copy(&app->cfg, cfg) != 0 ||
	    rc_config_default_node_id(&app->cfg) != 0) {
		snprintf(err, err_len, "out of memory");
		if (app)
			rc_config_free(&app->cfg);
		free(app);
		return NULL;
	}
	app->shards_count = cfg->shards ? (int)cfg->shards : online_cpus();
	app->log_level = (int)rc_config_log_level(cfg);
	app->drop_slow = strcmp(cfg->slow_consumer_policy, "drop") == 0;
	app->latest_slow = strcmp(cfg->slow_consumer_policy, "latest") == 0;
	app->pmd.enabled = cfg->deflate;
	app->pmd.level = (uint8_t)cfg->deflate_level;
	app->pmd.threshold_bytes = (uint32_t)cfg->deflate_threshold_bytes;
	app->client_publish = strcmp(cfg->client_publish, "any") == 0 ? RC_CLIENT_PUBLISH_ANY
							: RC_CLIENT_PUBLISH_NONE;
	if (strcmp(cfg->client_publish, "subscribed") == 0)
		app->client_publish = RC_CLIENT_PUBLISH_SUBSCRIBED;
	app->pubsub_ws = -1;
	static pthread_once_t topic_key_once = PTHREAD_ONCE_INIT;
	(void)pthread_once(&topic_key_once, topic_key_init);
	/* Epochs need only differ from the last run's: the clock stands in if getrandom fails. */
	if (getrandom(&app->epoch_key, sizeof(app->epoch_key), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(app->epoch_key))
		app->epoch_key = rc_clock_ms() ^ (uint64_t)time(NULL) << 32 ^ (uint64_t)getpid();
	app->conn_hooks = &conn_hooks;
	app->pubsub_hooks = &pubsub_hooks;
	if (strcmp(cfg->engine, "redis") == 0) {
		/* Before the metrics are sized: they have lines per Redis instance. */
		if (rc_redis_addrs_init(app, err, err_len) != 0) {
			rc_app_destroy(app);
			return NULL;
		}
		app->engine = &rc_redis_engine;
		app->redis_hooks = &rc_redis_link_hooks;
		rc_redis_script_sha(app->redis_sha);
		rc_xnode_script_sha(app->xnode_sha);
		app->conn_id_salt = app->epoch_key * 0x9e3779b97f4a7c15ull >> 1;
	}
	app->http_out_bytes = RC_MAX((size_t)RC_HTTP_OUT_BYTES_MIN, rc_metrics_bytes_max(app));
	app->origins_count = split_slices(cfg->origins, &app->origins_buf, app->origins,
					  RC_ARRAY_LEN(app->origins));
	app->subprotocols_count = split_slices(cfg->subprotocols, &app->subprotocols_buf,
					       app->subprotocols, RC_ARRAY_LEN(app->subprotocols));
	app->namespaces = malloc(sizeof(*app->namespaces));
	if (!app->namespaces ||
	    rc_namespaces_parse(cfg->namespaces, app->namespaces, err, err_len) != 0 ||
	    size_tables(app, err, err_len) != 0 || budget_setup(app, err, err_len) != 0 ||
	    rc_token_init(app, err, err_len) != 0 || rc_tls_app_init(app, err, err_len) != 0) {
		rc_app_destroy(app);
		return NULL;
	}
	return app;
}

static int add_path(char *dst, size_t cap, const char *path)
{
	if (!path || path[0] != '/' || strlen(path) >= cap)
		return -EINVAL;
	strcpy(dst, path);
	return 0;
}

int rc_app_ws(struct rc_app *app, const char *path, const struct rc_ws_handler *h)
{
	if (app->ws_count == RC_ENDPOINT_LIMIT)
		return -ENOSPC;
	struct rc_ws_endpoint *ep = &app->ws[app->ws_count];
	if (add_path(ep->path, sizeof(ep->path), path) != 0)
		return -EINVAL;
	ep->h = *h;
	ep->limits.frame_bytes_max =
		h->frame_bytes_max ? h->frame_bytes_max : app->cfg.frame_bytes_max;
	ep->limits.message_bytes_max =
		h->message_bytes_max ? h->message_bytes_max : app->cfg.message_bytes_max;
	ep->limits.require_mask = true;
	ep->limits.rsv1_allowed = false;
	app->ws_count++;
	return 0;
}

int rc_app_http(struct rc_app *app, const char *path, rc_http_fn fn, void *ctx)
{
	if (app->http_count == RC_ENDPOINT_LIMIT)
		return -ENOSPC;
	struct rc_http_endpoint *ep = &app->http[app->http_count];
	if (add_path(ep->path, sizeof(ep->path), path) != 0)
		return -EINVAL;
	ep->fn = fn;
	ep->ctx = ctx;
	app->http_count++;
	return 0;
}

int rc_app_asset(struct rc_app *app, const char *path, const char *content_type,
		 const void *data, size_t len, const char *etag)
{
	RC_ASSERT(data != NULL && content_type != NULL && etag != NULL);
	int rc = rc_app_http(app, path, NULL, NULL);
	if (rc)
		return rc;
	struct rc_http_endpoint *ep = &app->http[app->http_count - 1];
	ep->asset = data;
	ep->asset_len = len;
	ep->asset_type = content_type;
	ep->etag = etag;
	return 0;
}

int rc_app_pubsub(struct rc_app *app, const char *ws_path, const char *publish_path)
{
	struct rc_ws_handler h = {.on_open = rc_proto_on_open, .on_message = rc_proto_on_message};
	if (strlen(publish_path) >= sizeof(app->publish_path) || publish_path[0] != '/')
		return -EINVAL;
	int rc = rc_app_ws(app, ws_path, &h);
	if (rc)
		return rc;
	app->pubsub_ws = app->ws_count - 1;
	strcpy(app->publish_path, publish_path);
	return 0;
}

int rc_app_sse(struct rc_app *app, const char *path)
{
	if (app->pubsub_ws < 0 || strlen(path) >= sizeof(app->sse_path) || path[0] != '/')
		return -EINVAL;
	strcpy(app->sse_path, path);
	return 0;
}

int rc_app_shards(const struct rc_app *app)
{
	return app->shards_count;
}

int rc_app_port(const struct rc_app *app)
{
	return app->port;
}

/* Takes s's listeners (public, admin) out of service; their descriptors stay open. */
static void listeners_shutdown(struct rc_shard *s)
{
	if (s->listen_fd >= 0)
		(void)shutdown(s->listen_fd, SHUT_RD);
	if (s->admin_fd >= 0)
		(void)shutdown(s->admin_fd, SHUT_RD);
	if (s->tls_fd >= 0)
		(void)shutdown(s->tls_fd, SHUT_RD);
}

void rc_app_stop(struct rc_app *app)
{
	/* Stop listening before any shard hears of the stop, so no shard still accepting can
	 * take a new connection into the drain: shutdown takes every listener out of the
	 * SO_REUSEPORT group at once (new SYNs are refused) and fails the pending accepts. The
	 * descriptors stay open until rc_app_destroy, so this never races a close. */
	if (!atomic_exchange_explicit(&app->stopping, true, memory_order_acq_rel))
		for (int i = 0; app->shards && i < app->shards_count; i++)
			listeners_shutdown(&app->shards[i]);
	/* The exchange above pairs with the acquire loads in each shard's wake handler. */
	for (int i = 0; app->shards && i < app->shards_count; i++)
		rc_uring_wake(&app->shards[i]);
}

/* ---- running ------------------------------------------------------------------------------- */
static int open_listeners(struct rc_app *app, char *err, size_t err_len)
{
	int port = (int)app->cfg.port;
	for (int i = 0; i < app->shards_count; i++) {
		struct rc_shard *s = &app->shards[i];
		s->listen_fd = listen_socket(&app->cfg, app->cfg.address, port, err, err_len);
		if (s->listen_fd < 0)
			return s->listen_fd;
		if (i == 0)
			port = bound_port(s->listen_fd);
	}
	app->port = port;
	for (int i = 0; app->cfg.tls_port && i < app->shards_count; i++) {
		struct rc_shard *s = &app->shards[i];
		s->tls_fd = listen_socket(&app->cfg, app->cfg.address, (int)app->cfg.tls_port, err,
					  err_len);
		if (s->tls_fd < 0)
			return s->tls_fd;
		app->tls_port = (int)app->cfg.tls_port;
	}
	if (!app->cfg.admin_port)
		return 0;
	/* One shard serves the admin listener: a handful of probes needs no spreading. */
	struct rc_shard *s0 = &app->shards[0];
	s0->admin_fd = listen_socket(&app->cfg, app->cfg.admin_address, (int)app->cfg.admin_port,
				     err, err_len);
	return s0->admin_fd < 0 ? s0->admin_fd : 0;
}

/* Waits until every started shard has finished its setup, successfully or not. */
static void wait_ready(struct rc_app *app)
{
	struct timespec ms = {0, 1000000};
	/* Pairs with the release increment in shard_main, made after start_rc is written. */
	while (atomic_load_explicit(&app->shards_ready, memory_order_acquire) < app->shards_started)
		nanosleep(&ms, NULL);
}

/* A second stop: every shard ends its drain now. The shards change their own state. */
static void drain_now(struct rc_app *app)
{
	/* Pairs with the acquire load in each shard's doorbell handler. */
	atomic_store_explicit(&app->drain_forced, true, memory_order_release);
	rc_app_stop(app);
}

static void wait_for_stop(struct rc_app *app, bool handle_signals, const sigset_t *set)
{
	struct timespec tick = {0, 100 * 1000000};
	bool stop_sent = false;
	/* Exits when every started shard has; a second signal during the drain ends it. */
	while (atomic_load_explicit(&app->shards_exited, memory_order_acquire) <
	       app->shards_started) {
		int sig = handle_signals ? sigtimedwait(set, NULL, &tick) : -1;
		if (!handle_signals)
			nanosleep(&tick, NULL);
		if (sig == SIGHUP && app->auth)
			(void)rc_token_reload(app);
		if (sig == SIGHUP)
			(void)rc_tls_app_reload(app);
		rc_token_watch(app, rc_clock_ms());
		if (sig != SIGINT && sig != SIGTERM)
			continue;
		rc_log(app, RC_LOG_INFO, "%s: %s", strsignal(sig),
		       stop_sent ? "ending the drain now" : "draining connections");
		if (stop_sent)
			drain_now(app);
		else
			rc_app_stop(app);
		stop_sent = true;
	}
}

static int shards_alloc(struct rc_app *app)
{
	app->shards = calloc((size_t)app->shards_count, sizeof(*app->shards));
	if (!app->shards)
		return -ENOMEM;
	for (int i = 0; i < app->shards_count; i++) {
		app->shards[i].app = app;
		app->shards[i].index = i;
		app->shards[i].cpu = -1;
		app->shards[i].listen_fd = -1;
		app->shards[i].admin_fd = -1;
		app->shards[i].tls_fd = -1;
		app->shards[i].wake_fd = -1;
		app->shards[i].conns_cap = app->conns_per_shard + app->conns_spare;
		if (i == 0 && app->cfg.admin_port)
			app->shards[i].conns_cap += (uint32_t)app->cfg.admin_connections_max;
		app->shards[i].conns_limit = app->conns_per_shard;
	}
	return 0;
}

/*
 * Starts a thread per shard and waits for their setup. Returns 0, or the failure of the lowest
 * shard that failed, named in one line in err; the shards that did start keep running until
 * the caller stops them.
 */
static int shards_start(struct rc_app *app, char *err, size_t err_len)
{
	int rc = 0;
	for (int i = 0; rc == 0 && i < app->shards_count; i++) {
		rc = app->engine ? rc_redis_links_init(&app->shards[i]) : 0;
		if (rc == 0)
			rc = rc_shard_start(&app->shards[i]);
		if (rc == 0)
			app->shards_started++;
		else
			snprintf(err, err_len, "shard %d: cannot start: %s", i, strerror(-rc));
	}
	int failed = rc != 0;
	wait_ready(app);
	for (int i = app->shards_started - 1; i >= 0; i--) {
		const struct rc_shard *s = &app->shards[i];
		if (s->start_rc == 0)
			continue;
		failed++;
		rc = s->start_rc;
		snprintf(err, err_len, "%s", s->start_err[0] ? s->start_err : strerror(-rc));
	}
	RC_ASSERT(app->shards_started <= app->shards_count);
	if (failed > 1) {
		size_t len = strlen(err);
		snprintf(err + len, err_len - len, " (%d of %d shards failed to start)", failed,
			 app->shards_count);
	}
	if (rc != 0)
		RC_ASSERT(err[0] != '\0');
	return rc;
}

int rc_app_run(struct rc_app *app, bool handle_signals)
{
	char err[256] = "";
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP); /* reloads the token keys and the TLS certificates */
	signal(SIGPIPE, SIG_IGN);
	/* Shards inherit the mask, so only this thread takes SIGINT/SIGTERM/SIGHUP. */
	if (handle_signals)
		pthread_sigmask(SIG_BLOCK, &set, &old);

	int rc = shards_alloc(app);
	if (rc == 0)
		rc = rc_arena_init(app, err, sizeof(err));
	if (rc == 0)
		rc = open_listeners(app, err, sizeof(err));
	if (rc == 0)
		rc = shards_start(app, err, sizeof(err));
	if (rc != 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "starting: %s", strerror(-rc));
		/* One line names the failure; every shard that did start drains and is joined. */
		rc_log(app, RC_LOG_ERROR, "%s", err);
		rc_app_stop(app);
	} else {
		rc_log(app, RC_LOG_DEBUG, "%u connections per shard", app->conns_per_shard);
		if (app->cfg.admin_port)
			rc_log(app, RC_LOG_INFO, "admin on %s:%llu (/health, /metrics, /)",
			       app->cfg.admin_address, (unsigned long long)app->cfg.admin_port);
		rc_log(app, RC_LOG_INFO, "memory budget %llu MiB (%s), soft mark %llu %%",
		       (unsigned long long)(app->budget.limit_bytes >> 20), app->budget_source,
		       (unsigned long long)app->cfg.memory_soft_percent);
		if (app->tls_port)
			rc_log(app, RC_LOG_INFO, "TLS on %s:%d (wss://, https://)",
			       app->cfg.address, app->tls_port);
		fprintf(stderr, "ringcast: ready on %s:%d (%d shards)\n", app->cfg.address,
			app->port, app->shards_count);
	}
	wait_for_stop(app, handle_signals, &set);
	for (int i = 0; i < app->shards_started; i++)
		pthread_join(app->shards[i].thread, NULL);
	if (handle_signals)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

void rc_app_destroy(struct rc_app *app)
{
	if (!app)
		return;
	/* Every shard thread has joined: rings and inboxes can go now, in any order. What they
	 * held is released on this thread's books. */
	rc_current_app = app;
	for (int i = 0; app->shards && i < app->shards_count; i++) {
		struct rc_shard *s = &app->shards[i];
		if (s->running)
			io_uring_queue_exit(&s->ring);
		rc_redis_links_free(s);
		rc_xnode_free(s);
		if (s->outbox)
			rc_pubsub_free(s);
		if (s->inbox.slots)
			rc_mpsc_free(&s->inbox);
	}
	rc_current_app = NULL;
	/* Nothing any client made us hold outlives the shards: the books are back to zero. */
	RC_DASSERT(!app->budget.shards || budget_settled(&app->budget));
	for (int i = 0; app->shards && i < app->shards_count; i++) {
		struct rc_shard *s = &app->shards[i];
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		if (s->admin_fd >= 0)
			close(s->admin_fd);
		if (s->tls_fd >= 0)
			close(s->tls_fd);
		rc_tls_shard_free(s);
		if (s->wake_fd >= 0)
			close(s->wake_fd);
		free(s->conns);
		free(s->tokens);
		free(s->dirty);
		rc_conn_rx_free(s);
	}
	rc_token_free(app);
	free(app->namespaces);
	free(app->shards);
	rc_redis_addrs_free(app);
	rc_tls_app_free(app);
	rc_arena_free_all(app);
	rc_budget_free(&app->budget);
	free(app->origins_buf);
	free(app->subprotocols_buf);
	rc_config_free(&app->cfg);
	free(app);
}
