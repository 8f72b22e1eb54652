/*
 * The configuration table and its parsers. Every key is declared once in RC_CONFIG_KEYS
 * (config.h); the descriptor table below, the struct, --help and the README table are
 * generated from it. Startup only, single thread.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "jwt.h"
#include "namespace.h"

enum rc_cfg_type {
	RC_CFG_UINT = 0,
	RC_CFG_STRING,
	RC_CFG_BOOL,
};

struct rc_cfg_desc {
	const char *name;
	enum rc_cfg_type type;
	size_t offset;
	uint64_t def;
	const char *def_str;
	uint64_t min;
	uint64_t max;
	const char *unit;
	const char *help;
};

#define RC_CFG_X(n, d, lo, hi, u, h)                                                               \
	{#n, RC_CFG_UINT, offsetof(struct rc_config, n), d, NULL, lo, hi, u, h},
#define RC_CFG_S(n, d, h) {#n, RC_CFG_STRING, offsetof(struct rc_config, n), 0, d, 0, 0, "", h},
#define RC_CFG_B(n, d, h) {#n, RC_CFG_BOOL, offsetof(struct rc_config, n), d, NULL, 0, 1, "", h},
static const struct rc_cfg_desc keys[] = {RC_CONFIG_KEYS(RC_CFG_X, RC_CFG_S, RC_CFG_B)};
#undef RC_CFG_X
#undef RC_CFG_S
#undef RC_CFG_B

static const struct rc_cfg_desc *find(const char *name, size_t len)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++)
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

int rc_config_init(struct rc_config *cfg)
{
	RC_ASSERT(cfg != NULL);
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		const struct rc_cfg_desc *k = &keys[i];
		char *field = (char *)cfg + k->offset;
		RC_ASSERT(k->type == RC_CFG_STRING || (k->def >= k->min && k->def <= k->max));
		if (k->type == RC_CFG_UINT) {
			memcpy(field, &k->def, sizeof(uint64_t));
		} else if (k->type == RC_CFG_BOOL) {
			bool b = k->def != 0;
			memcpy(field, &b, sizeof(b));
		} else {
			char *s = strdup(k->def_str);
			if (!s)
				return -ENOMEM;
			memcpy(field, &s, sizeof(s));
		}
	}
	return 0;
}

int rc_config_copy(struct rc_config *dst, const struct rc_config *src)
{
	*dst = *src;
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		if (keys[i].type != RC_CFG_STRING)
			continue;
		char **field = (char **)((char *)dst + keys[i].offset);
		*field = strdup(*field);
		if (!*field) {
			/* Keep dst freeable: later strings still alias src, so null them. */
			for (size_t j = i + 1; j < RC_ARRAY_LEN(keys); j++)
				if (keys[j].type == RC_CFG_STRING)
					*(char **)((char *)dst + keys[j].offset) = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

void rc_config_free(struct rc_config *cfg)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		if (keys[i].type != RC_CFG_STRING)
			continue;
		char **field = (char **)((char *)cfg + keys[i].offset);
		free(*field);
		*field = NULL;
	}
}

/* Parses an unsigned decimal with an optional k/m/g (binary) suffix. */
static bool parse_uint(const char *v, uint64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*v))
		return false;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno)
		return false;
	uint64_t mul = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = RC_KIB;
		end++;
		break;
	case 'm':
	case 'M':
		mul = RC_MIB;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1024 * RC_MIB;
		end++;
		break;
	default: break;
	}
	if (*end != '\0' || (n && mul > UINT64_MAX / n))
		return false;
	*out = n * mul;
	return true;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *yes[] = {"1", "true", "yes", "on"};
	static const char *no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < RC_ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return (*out = true);
		if (strcasecmp(v, no[i]) == 0)
			return !(*out = false);
	}
	return false;
}

static int set_desc(struct rc_config *cfg, const struct rc_cfg_desc *k, const char *value,
		    char *err, size_t err_len)
{
	char *field = (char *)cfg + k->offset;
	uint64_t n;
	bool b;

	switch (k->type) {
	case RC_CFG_UINT:
		if (!parse_uint(value, &n) || n < k->min || n > k->max) {
			snprintf(err, err_len, "%s: '%s' is not in %llu..%llu%s%s", k->name, value,
				 (unsigned long long)k->min, (unsigned long long)k->max,
				 *k->unit ? " " : "", k->unit);
			return -EINVAL;
		}
		memcpy(field, &n, sizeof(n));
		return 0;
	case RC_CFG_BOOL:
		if (!parse_bool(value, &b)) {
			snprintf(err, err_len, "%s: '%s' is not a boolean (true/false)", k->name,
				 value);
			return -EINVAL;
		}
		memcpy(field, &b, sizeof(b));
		return 0;
	case RC_CFG_STRING: {
		/* Surrounding blanks are trimmed, as in a config file, so both spell one value. */
		while (isspace((unsigned char)*value))
			value++;
		size_t vlen = strlen(value);
		while (vlen && isspace((unsigned char)value[vlen - 1]))
			vlen--;
		char *s = strndup(value, vlen), *old;
		if (!s)
			return -ENOMEM;
		memcpy(&old, field, sizeof(old));
		free(old);
		memcpy(field, &s, sizeof(s));
		return 0;
	}
	}
	RC_ASSERT(!"unknown config type");
	return -EINVAL;
}

#define NAMESPACE_PREFIX "namespace."

/*
 * namespace.NAME = OPTIONS: checked on its own (so that an error names its line), then NAME's
 * entry in cfg->namespaces is replaced or appended.
 */
static int namespace_set(struct rc_config *cfg, const char *name, const char *value, char *err,
			 size_t err_len)
{
	struct rc_namespaces *one = malloc(sizeof(*one));
	size_t nlen = strlen(name), old_len = strlen(cfg->namespaces);
	char *entry = NULL, *next = NULL;
	int rc = -ENOMEM;
	if (!one || asprintf(&entry, "%s:%s", name, value) < 0) {
		entry = NULL;
		goto out;
	}
	rc = -EINVAL;
	if (strchr(value, ';'))
		snprintf(err, err_len, "namespace.%s: options may not contain ';'", name);
	else if (rc_namespaces_parse(entry, one, err, err_len) == 0)
		rc = 0;
	if (rc)
		goto out;
	next = malloc(old_len + strlen(entry) + 2);
	if (!next) {
		rc = -ENOMEM;
		goto out;
	}
	/* Every entry but NAME's, then the new one. */
	size_t len = 0;
	char *copy = strdup(cfg->namespaces), *save = NULL;
	for (char *e = copy ? strtok_r(copy, ";", &save) : NULL; e; e = strtok_r(NULL, ";", &save))
		if (!(strncmp(e, name, nlen) == 0 && e[nlen] == ':'))
			len += (size_t)sprintf(next + len, "%s;", e);
	sprintf(next + len, "%s", entry);
	free(copy);
	free(cfg->namespaces);
	cfg->namespaces = next;
out:
	free(entry);
	free(one);
	return rc;
}

int rc_config_set(struct rc_config *cfg, const char *key, const char *value, char *err,
		  size_t err_len)
{
	RC_ASSERT(cfg != NULL && key != NULL && value != NULL);
	if (strncmp(key, NAMESPACE_PREFIX, strlen(NAMESPACE_PREFIX)) == 0)
		return namespace_set(cfg, key + strlen(NAMESPACE_PREFIX), value, err, err_len);
	const struct rc_cfg_desc *k = find(key, strlen(key));
	if (!k) {
		snprintf(err, err_len, "unknown config key '%s' (see --help)", key);
		return -EINVAL;
	}
	return set_desc(cfg, k, value, err, err_len);
}

static char *trim(char *s, char *end)
{
	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return s;
}

/*
 * Where the comment of a line starts (its end if none): a '#' at the start of the line or
 * after a blank, so values such as secrets may contain '#' themselves.
 */
static char *comment_start(char *line)
{
	for (char *p = line; *p; p++)
		if (*p == '#' && (p == line || isspace((unsigned char)p[-1])))
			return p;
	return line + strlen(line);
}

bool rc_config_printable(const struct rc_config *cfg)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		if (keys[i].type != RC_CFG_STRING)
			continue;
		const char *v = *(char *const *)((const char *)cfg + keys[i].offset);
		if (v[0] == '#' || strpbrk(v, "\r\n"))
			return false;
		for (const char *p = v; *p; p++)
			if (*p == '#' && isspace((unsigned char)p[-1]))
				return false;
	}
	return true;
}

int rc_config_parse_text(struct rc_config *cfg, const char *text, size_t len, const char *origin,
			 char *err, size_t err_len)
{
	char *copy = strndup(text, len);
	if (!copy)
		return -ENOMEM;
	int rc = 0, lineno = 0;
	char *next = copy;
	while (next) {
		char *line = next;
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		next = nl ? nl + 1 : NULL;
		lineno++;
		char *end = comment_start(line);
		char *eq = memchr(line, '=', (size_t)(end - line));
		char *l = trim(line, eq ? eq : end);
		if (!eq) {
			if (*l == '\0')
				continue;
			snprintf(err, err_len, "%s:%d: expected 'key = value'", origin, lineno);
			rc = -EINVAL;
			break;
		}
		char *v = trim(eq + 1, end);
		char sub[256];
		rc = rc_config_set(cfg, l, v, sub, sizeof(sub));
		if (rc) {
			snprintf(err, err_len, "%s:%d: %s", origin, lineno, sub);
			break;
		}
	}
	free(copy);
	return rc;
}

/* The index of name in enum rc_log_level, or -1. */
static int log_level_index(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	RC_STATIC_ASSERT(RC_ARRAY_LEN(names) == RC_LOG_LEVEL_DEBUG + 1, "a name per level");
	for (size_t i = 0; i < RC_ARRAY_LEN(names); i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

/* The JWT keys: a secret long enough for its hash, algorithms that exist. */
static int token_validate(const struct rc_config *cfg, char *err, size_t err_len)
{
	uint32_t algs;
	size_t n = strlen(cfg->token_hmac_secret);
	if (n && n < RC_JWT_HMAC_SECRET_BYTES_MIN) {
		snprintf(err, err_len, "token_hmac_secret: %zu bytes is too short (at least %d)", n,
			 RC_JWT_HMAC_SECRET_BYTES_MIN);
		return -EINVAL;
	}
	return rc_jwt_algs_parse(cfg->token_algorithms, &algs, err, err_len);
}

/* The namespaces parse; a private one needs tokens to carry its rights. */
static int namespaces_validate(const struct rc_config *cfg, char *err, size_t err_len)
{
	struct rc_namespaces *ns = malloc(sizeof(*ns));
	int rc = ns ? rc_namespaces_parse(cfg->namespaces, ns, err, err_len) : -ENOMEM;
	bool auth = cfg->token_hmac_secret[0] || cfg->token_public_key_file[0] ||
		    cfg->token_jwks_file[0];
	for (uint32_t i = 0; rc == 0 && !auth && i < ns->count; i++) {
		if (ns->v[i].is_private) {
			snprintf(err, err_len, "namespace.%s: private needs a token key "
				 "(token_hmac_secret, token_public_key_file or token_jwks_file)",
				 ns->v[i].name);
			rc = -EINVAL;
		}
	}
	free(ns);
	return rc;
}

/* engine and the redis_* keys: the engine's name, the address list, the backoff range. */
static int validate_redis(const struct rc_config *cfg, char *err, size_t err_len)
{
	if (strcmp(cfg->engine, "memory") != 0 && strcmp(cfg->engine, "redis") != 0) {
		snprintf(err, err_len, "engine: '%s' is not memory or redis", cfg->engine);
		return -EINVAL;
	}
	if (strlen(cfg->redis_prefix) > 256) {
		snprintf(err, err_len, "redis_prefix: longer than 256 bytes");
		return -EINVAL;
	}
	if (cfg->redis_reply_bytes_max < cfg->redis_backlog_bytes_max) {
		/* A node's channel message carries up to a batch of publishes. */
		snprintf(err, err_len, "redis_reply_bytes_max is below redis_backlog_bytes_max");
		return -EINVAL;
	}
	if (cfg->redis_reconnect_min_ms > cfg->redis_reconnect_max_ms) {
		snprintf(err, err_len, "redis_reconnect_min_ms exceeds redis_reconnect_max_ms");
		return -EINVAL;
	}
	if (!rc_node_id_valid(cfg->node_id, strlen(cfg->node_id), true)) {
		snprintf(err, err_len, "node_id: '%.64s' is not 1..64 letters, digits, '.', '_', ':' "
			 "or '-'", cfg->node_id);
		return -EINVAL;
	}
	if (cfg->node_heartbeat_ms * 2 > cfg->presence_ttl_ms) {
		snprintf(err, err_len, "node_heartbeat_ms (%llu) must be at most half of "
			 "presence_ttl_ms (%llu)", (unsigned long long)cfg->node_heartbeat_ms,
			 (unsigned long long)cfg->presence_ttl_ms);
		return -EINVAL;
	}
	char *copy = strdup(cfg->redis_addresses);
	char *items[RC_REDIS_ADDRESSES_LIMIT + 1];
	if (!copy)
		return -ENOMEM;
	size_t n = rc_config_split_list(copy, items, RC_ARRAY_LEN(items));
	int rc = n == 0 || n > RC_REDIS_ADDRESSES_LIMIT ? -EINVAL : 0;
	if (rc)
		snprintf(err, err_len, "redis_addresses: 1..%d host:port entries expected",
			 RC_REDIS_ADDRESSES_LIMIT);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *colon = strrchr(items[i], ':');
		uint64_t port;
		if (!colon || colon == items[i] || !parse_uint(colon + 1, &port) || !port ||
		    port > 65535) {
			snprintf(err, err_len, "redis_addresses: '%s' is not host:port", items[i]);
			rc = -EINVAL;
		}
	}
	free(copy);
	return rc;
}

/*
 * A list key's entries: at most limit of them, each at most bytes_max long (0: any length).
 * More would be dropped silently where the list is used; an origin too long for the CORS
 * header would be allowed to upgrade but get no CORS headers.
 */
static int list_validate(const char *key, const char *value, size_t limit, size_t bytes_max,
			 char *err, size_t err_len)
{
	char *copy = strdup(value), *items[RC_ORIGINS_LIMIT + RC_SUBPROTOCOLS_LIMIT + 1];
	if (!copy) {
		snprintf(err, err_len, "%s: no memory", key);
		return -ENOMEM;
	}
	size_t n = rc_config_split_list(copy, items, limit + 1);
	int rc = 0;
	if (n > limit) {
		snprintf(err, err_len, "%s: at most %zu entries", key, limit);
		rc = -EINVAL;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (bytes_max && strlen(items[i]) > bytes_max) {
			snprintf(err, err_len, "%s: '%.40s...' is longer than %zu bytes", key, items[i],
				 bytes_max);
			rc = -EINVAL;
		}
	}
	free(copy);
	return rc;
}

/* The TLS listener needs a certificate and a port of its own. */
static int tls_validate(const struct rc_config *cfg, char *err, size_t err_len)
{
	if (cfg->tls_port && (!cfg->tls_cert_file[0] || !cfg->tls_key_file[0])) {
		snprintf(err, err_len, "tls_port: needs tls_cert_file and tls_key_file");
		return -EINVAL;
	}
	if (cfg->tls_port && cfg->tls_port == cfg->port) {
		snprintf(err, err_len, "tls_port (%llu) must differ from port",
			 (unsigned long long)cfg->tls_port);
		return -EINVAL;
	}
	return 0;
}

int rc_config_validate(const struct rc_config *cfg, char *err, size_t err_len)
{
	int rc;
	if (cfg->frame_bytes_max > cfg->message_bytes_max) {
		snprintf(err, err_len, "frame_bytes_max (%llu) exceeds message_bytes_max (%llu)",
			 (unsigned long long)cfg->frame_bytes_max,
			 (unsigned long long)cfg->message_bytes_max);
		return -EINVAL;
	}
	if (cfg->echo_frame_bytes_max > cfg->echo_message_bytes_max) {
		snprintf(err, err_len,
			 "echo_frame_bytes_max (%llu) exceeds echo_message_bytes_max (%llu)",
			 (unsigned long long)cfg->echo_frame_bytes_max,
			 (unsigned long long)cfg->echo_message_bytes_max);
		return -EINVAL;
	}
	if (!rc_is_pow2(cfg->recv_buffers) || !rc_is_pow2(cfg->recv_buffer_bytes)) {
		snprintf(err, err_len, "recv_buffers and recv_buffer_bytes must be powers of two");
		return -EINVAL;
	}
	if (cfg->ping_interval_ms && cfg->idle_timeout_ms &&
	    cfg->idle_timeout_ms <= cfg->ping_interval_ms) {
		snprintf(err, err_len,
			 "idle_timeout_ms (%llu) must exceed ping_interval_ms (%llu) so a pong can "
			 "arrive",
			 (unsigned long long)cfg->idle_timeout_ms,
			 (unsigned long long)cfg->ping_interval_ms);
		return -EINVAL;
	}
	if (!rc_is_pow2(cfg->mpsc_ring_entries)) {
		snprintf(err, err_len, "mpsc_ring_entries (%llu) must be a power of two",
			 (unsigned long long)cfg->mpsc_ring_entries);
		return -EINVAL;
	}
	if (strcmp(cfg->slow_consumer_policy, "close") != 0 &&
	    strcmp(cfg->slow_consumer_policy, "drop") != 0 &&
	    strcmp(cfg->slow_consumer_policy, "latest") != 0) {
		snprintf(err, err_len, "slow_consumer_policy: '%s' is not close, drop or latest",
			 cfg->slow_consumer_policy);
		return -EINVAL;
	}
	if (strcmp(cfg->client_publish, "any") != 0 && strcmp(cfg->client_publish, "none") != 0 &&
	    strcmp(cfg->client_publish, "subscribed") != 0) {
		snprintf(err, err_len, "client_publish: '%s' is not any, subscribed or none",
			 cfg->client_publish);
		return -EINVAL;
	}
	if (token_validate(cfg, err, err_len) != 0)
		return -EINVAL;
	if (namespaces_validate(cfg, err, err_len) != 0)
		return -EINVAL;
	rc = validate_redis(cfg, err, err_len);
	if (rc)
		return rc;
	if (tls_validate(cfg, err, err_len) != 0)
		return -EINVAL;
	rc = list_validate("origins", cfg->origins, RC_ORIGINS_LIMIT, RC_ORIGIN_BYTES_MAX, err,
			   err_len);
	if (rc == 0)
		rc = list_validate("subprotocols", cfg->subprotocols, RC_SUBPROTOCOLS_LIMIT, 0, err,
				   err_len);
	if (rc)
		return rc;
	if (log_level_index(cfg->log_level) >= 0)
		return 0;
	snprintf(err, err_len, "log_level: '%s' is not one of error, warn, info, debug",
		 cfg->log_level);
	return -EINVAL;
}

enum rc_log_level rc_config_log_level(const struct rc_config *cfg)
{
	int level = log_level_index(cfg->log_level);
	return level < 0 ? RC_LOG_LEVEL_INFO : (enum rc_log_level)level;
}

static void format_default(const struct rc_cfg_desc *k, char *buf, size_t len)
{
	if (k->type == RC_CFG_STRING)
		snprintf(buf, len, "\"%s\"", k->def_str);
	else if (k->type == RC_CFG_BOOL)
		snprintf(buf, len, "%s", k->def ? "true" : "false");
	else
		snprintf(buf, len, "%llu", (unsigned long long)k->def);
}

void rc_config_print_help(FILE *out)
{
	char def[64];
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		const struct rc_cfg_desc *k = &keys[i];
		format_default(k, def, sizeof(def));
		fprintf(out, "  --%s=%s\n      %s", k->name, def, k->help);
		if (k->type == RC_CFG_UINT)
			fprintf(out, " [%llu..%llu%s%s]", (unsigned long long)k->min,
				(unsigned long long)k->max, *k->unit ? " " : "", k->unit);
		fputc('\n', out);
	}
}

void rc_config_print_markdown(FILE *out)
{
	char def[64];
	fprintf(out, "| key | default | range | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		const struct rc_cfg_desc *k = &keys[i];
		format_default(k, def, sizeof(def));
		fprintf(out, "| `%s` | `%s` | ", k->name, def);
		if (k->type == RC_CFG_UINT)
			fprintf(out, "%llu..%llu%s%s", (unsigned long long)k->min,
				(unsigned long long)k->max, *k->unit ? " " : "", k->unit);
		else
			fprintf(out, "%s", k->type == RC_CFG_BOOL ? "true/false" : "text");
		fprintf(out, " | %s |\n", k->help);
	}
}

/* One namespace.NAME = OPTIONS line per entry of spec, as a config file declares them. */
static void print_namespaces(const char *spec, FILE *out)
{
	char *copy = strdup(spec), *save = NULL;
	for (char *e = copy ? strtok_r(copy, ";", &save) : NULL; e; e = strtok_r(NULL, ";", &save)) {
		char *colon = strchr(e, ':');
		if (colon)
			fprintf(out, NAMESPACE_PREFIX "%s = %s\n", trim(e, colon),
				trim(colon + 1, colon + 1 + strlen(colon + 1)));
	}
	free(copy);
}

void rc_config_print(const struct rc_config *cfg, FILE *out)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) {
		const struct rc_cfg_desc *k = &keys[i];
		const char *field = (const char *)cfg + k->offset;
		if (k->type == RC_CFG_UINT) {
			uint64_t n;
			memcpy(&n, field, sizeof(n));
			fprintf(out, "%s = %llu\n", k->name, (unsigned long long)n);
		} else if (k->type == RC_CFG_BOOL) {
			bool b;
			memcpy(&b, field, sizeof(b));
			fprintf(out, "%s = %s\n", k->name, b ? "true" : "false");
		} else {
			char *s;
			memcpy(&s, field, sizeof(s));
			if (strcmp(k->name, "namespaces") == 0)
				print_namespaces(s, out);
			else
				fprintf(out, "%s = %s\n", k->name, s);
		}
	}
}

size_t rc_config_split_list(char *s, char **items, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
		char *v = trim(t, t + strlen(t));
		if (*v)
			items[n++] = v;
	}
	return n;
}

static bool node_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '_' || c == ':' || c == '-';
}

bool rc_node_id_valid(const char *s, size_t len, bool empty_ok)
{
	if (len == 0)
		return empty_ok;
	if (len > RC_NODE_ID_BYTES_LIMIT)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!node_char(s[i]))
			return false;
	return true;
}

void rc_node_id_make(char *out, size_t cap, const char *host, unsigned long pid, uint32_t rnd)
{
	char tail[40];
	RC_ASSERT(cap > RC_NODE_ID_BYTES_LIMIT);
	int t = snprintf(tail, sizeof(tail), "-%lu-%08x", pid, rnd);
	RC_ASSERT(t > 0 && (size_t)t < RC_NODE_ID_BYTES_LIMIT);
	size_t h = RC_MIN(strlen(host), RC_NODE_ID_BYTES_LIMIT - (size_t)t);
	for (size_t i = 0; i < h; i++)
		out[i] = node_char(host[i]) ? host[i] : '_';
	memcpy(out + h, tail, (size_t)t + 1);
	RC_ASSERT(rc_node_id_valid(out, strlen(out), false) || h == 0);
}
