/*
 * The ringcast program: reads the configuration (embedded defaults, then an optional file,
 * then --key=value flags), checks the host's limits, and runs the gateway application on the
 * embedding API with its endpoints: /echo (conformance and benchmarks) and GET /health.
 * Main thread; the endpoint callbacks run on shard threads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringcast/ringcast.h>

#include "config.h"
#include "app/assets.h"
#include "app/dashboard.h"
#include "app/hostcheck.h"

static void usage(FILE *out)
{
	fprintf(out,
		"ringcast %s - a sharded io_uring WebSocket gateway\n\n"
		"usage: ringcast [--config FILE] [--KEY=VALUE | --KEY VALUE]...\n"
		"       ringcast --help | --version | --print-config | --print-config-markdown\n\n"
		"Endpoints: ws://HOST:PORT/echo echoes every message; ws://HOST:PORT/ws speaks the\n"
		"pub/sub protocol; POST /publish; GET /metrics (Prometheus); GET /health;\n"
		"GET / a live dashboard; GET /ringcast.js the JS client library.\n"
		"Signals: SIGTERM/SIGINT drain (close 1001 to every client, wait up to\n"
		"drain_timeout_ms, exit 0); a second signal ends the drain at once; SIGHUP\n"
		"reloads token_public_key_file and token_jwks_file, and the TLS certificates\n"
		"(tls_cert_file, tls_key_file, tls_sni_certs).\n"
		"Exit status: 0 after the drain; 2 usage or configuration error (unknown key, bad\n"
		"or out-of-range value, cross-key rule, unreadable config file, bad flag: one line\n"
		"names it); 1 runtime failure (io_uring, listen, host limits, a shard not starting).\n"
		"Run tools/tune-host.sh --check before start (see kernel-tuning.md).\n\n"
		"Configuration keys (config file lines are 'key = value'; sizes accept k/m/g):\n",
		RINGCAST_VERSION);
	rc_config_print_help(out);
}

static int load_file(struct rc_config *cfg, const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, err_len, "config: cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	char *text = NULL;
	size_t cap = 0, len = 0, n;
	char chunk[4096];
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n > cap) {
			cap = (len + n) * 2;
			char *t = realloc(text, cap);
			if (!t) {
				free(text);
				fclose(f);
				snprintf(err, err_len, "config: %s: out of memory", path);
				return -ENOMEM;
			}
			text = t;
		}
		memcpy(text + len, chunk, n);
		len += n;
	}
	int read_errno = ferror(f) ? errno : 0;
	fclose(f);
	if (read_errno) {
		free(text);
		snprintf(err, err_len, "config: cannot read %s: %s", path, strerror(read_errno));
		return -read_errno;
	}
	int rc = rc_config_parse_text(cfg, text ? text : "", len, path, err, err_len);
	free(text);
	return rc;
}

enum action { RUN = 0, HELP, VERSION, PRINT, PRINT_MD, FAIL };

/* Exit statuses, as --help and the README document them. */
enum rc_exit {
	RC_EXIT_OK = 0,
	RC_EXIT_RUNTIME, /* the kernel, the host or a shard failed */
	RC_EXIT_CONFIG,	 /* usage or configuration error, named in one line */
};

/*
 * The configuration checks that need no kernel: cross-key rules and the listen address, so
 * that they exit as configuration errors before anything starts. Returns 0 or -EINVAL.
 */
static int check_config(const struct rc_config *cfg, char *err, size_t err_len)
{
	struct in6_addr addr;
	if (rc_config_validate(cfg, err, err_len) != 0)
		return -EINVAL;
	if (inet_pton(AF_INET, cfg->address, &addr) == 1 ||
	    inet_pton(AF_INET6, cfg->address, &addr) == 1)
		return 0;
	snprintf(err, err_len, "address: '%s' is not an IPv4 or IPv6 address", cfg->address);
	return -EINVAL;
}

/* Applies --config first (so flags override the file), then every --key=value. */
static enum action parse_args(struct rc_config *cfg, int argc, char **argv, char *err,
			      size_t err_len)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			return load_file(cfg, argv[i + 1], err, err_len) ? FAIL : RUN;
		if (strncmp(argv[i], "--config=", 9) == 0)
			return load_file(cfg, argv[i] + 9, err, err_len) ? FAIL : RUN;
	}
	return RUN;
}

static enum action parse_flags(struct rc_config *cfg, int argc, char **argv, char *err,
			       size_t err_len)
{
	static const struct {
		const char *flag;
		enum action a;
	} words[] = {
		{"--help", HELP},
		{"-h", HELP},
		{"--version", VERSION},
		{"--print-config", PRINT},
		{"--print-config-markdown", PRINT_MD},
	};
	enum action act = RUN;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool word = false;
		for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
			if (strcmp(a, words[w].flag) == 0) {
				act = words[w].a;
				word = true;
			}
		if (word)
			continue;
		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, err_len, "unexpected argument '%s' (see --help)", a);
			return FAIL;
		}
		char key[128];
		const char *eq = strchr(a, '='), *value;
		if (eq) {
			snprintf(key, sizeof(key), "%.*s", (int)(eq - a - 2), a + 2);
			value = eq + 1;
		} else if (i + 1 < argc) {
			snprintf(key, sizeof(key), "%s", a + 2);
			value = argv[++i];
		} else {
			snprintf(err, err_len, "%s needs a value (see --help)", a);
			return FAIL;
		}
		if (strcmp(key, "config") == 0)
			continue;
		if (rc_config_set(cfg, key, value, err, err_len) != 0)
			return FAIL;
	}
	return act;
}

/* /echo: every message goes back as it came. */
static void echo_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	(void)ctx;
	(void)rc_conn_send(c, data, len, binary);
}

/* GET /health: 200 ok; past the memory budget's soft mark, or while a Redis instance of the
 * engine is unreachable, 503 degraded with the reason, so a load balancer sends new clients
 * elsewhere while the ones connected keep being served. */
static int health(const struct rc_http_call *call, char *out, size_t *out_len,
		  const char **content_type, void *ctx)
{
	struct rc_app_stats st;
	(void)call;
	rc_app_stats(ctx, &st);
	bool degraded = st.memory_level > 0 || st.redis_down_mask;
	const char *reason = st.memory_level > 0 ? "memory" : "redis unreachable";
	int n = degraded ? snprintf(out, *out_len, "{\"status\":\"degraded\",\"reason\":\"%s\"}\n",
				    reason)
			 : snprintf(out, *out_len, "{\"status\":\"ok\"}\n");
	*out_len = (size_t)n;
	*content_type = "application/json";
	return degraded ? 503 : 200;
}

static int metrics(const struct rc_http_call *call, char *out, size_t *out_len,
		   const char **content_type, void *ctx)
{
	(void)call;
	*out_len = rc_app_metrics(ctx, out, *out_len);
	*content_type = "text/plain; version=0.0.4";
	return *out_len ? 200 : 500;
}

static void log_line(const char *line, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "ringcast: [warn] %s\n", line);
}

int main(int argc, char **argv)
{
	struct rc_config cfg;
	char err[512] = "";
	if (rc_config_init(&cfg) != 0)
		return RC_EXIT_RUNTIME;
	enum action act = parse_args(&cfg, argc, argv, err, sizeof(err));
	if (act == RUN)
		act = parse_flags(&cfg, argc, argv, err, sizeof(err));
	if ((act == RUN || act == PRINT) && rc_config_default_node_id(&cfg) != 0)
		act = FAIL;
	if (act == RUN && check_config(&cfg, err, sizeof(err)) != 0)
		act = FAIL;
	int rc = RC_EXIT_OK;
	switch (act) {
	case HELP: usage(stdout); goto out;
	case VERSION: printf("ringcast %s\n", RINGCAST_VERSION); goto out;
	case PRINT: rc_config_print(&cfg, stdout); goto out;
	case PRINT_MD: rc_config_print_markdown(stdout); goto out;
	case FAIL:
		fprintf(stderr, "ringcast: %s\n", err);
		rc = RC_EXIT_CONFIG;
		goto out;
	case RUN: break;
	}
	struct rc_app *app = rc_app_create(&cfg, err, sizeof(err));
	if (!app) {
		fprintf(stderr, "ringcast: %s\n", err);
		rc = RC_EXIT_RUNTIME;
		goto out;
	}
	/* Host advice is a warning: log_level=error silences it. */
	if (rc_config_log_level(&cfg) >= RC_LOG_LEVEL_WARN)
		rc_hostcheck_log((unsigned long)cfg.connections_max, log_line, NULL);
	struct rc_ws_handler echo = {.on_message = echo_message,
				     .frame_bytes_max = cfg.echo_frame_bytes_max,
				     .message_bytes_max = cfg.echo_message_bytes_max};
	if (rc_app_ws(app, "/echo", &echo) != 0 || rc_app_http(app, "/health", health, app) != 0 ||
	    rc_app_http(app, "/metrics", metrics, app) != 0 ||
	    rc_app_pubsub(app, "/ws", "/publish") != 0 || rc_app_sse(app, "/sse") != 0 ||
	    rc_app_http(app, "/", rc_dashboard_page, NULL) != 0 ||
	    rc_app_asset(app, "/ringcast.js", "application/javascript; charset=utf-8",
			 rc_asset_ringcast_js, rc_asset_ringcast_js_len,
			 rc_asset_ringcast_js_etag) != 0) {
		fprintf(stderr, "ringcast: registering endpoints failed\n");
		rc = RC_EXIT_RUNTIME;
	} else {
		struct rc_dashboard *dash = rc_dashboard_start(app, cfg.stats_interval_ms);
		if (rc_app_run(app, true) != 0)
			rc = RC_EXIT_RUNTIME;
		rc_dashboard_stop(dash);
	}
	rc_app_destroy(app);
out:
	rc_config_free(&cfg);
	return rc;
}
