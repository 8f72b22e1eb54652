/*
 * Access tokens in the runtime (see token.h). The key set is refcounted: the application
 * holds one reference to the current set, each shard one to the set it last took. A reload
 * builds a new set, swaps it in under token_lock and bumps token_keys_gen; a shard that sees
 * the generation change takes the new set under the same lock and drops the old one, and
 * whoever drops the last reference frees it. Verification itself takes no lock. Main thread
 * (loading, reloading) and shard threads (verifying, the slot array).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "mem.h"
#include "token.h"

#define RC_TOKEN_FILE_BYTES_LIMIT (1024 * 1024) /* a PEM key or a JWKS document */
#define RC_TOKEN_WATCH_MS 1000

/* One key set and who holds it. */
struct rc_token_keys {
	atomic_int refs; /* the app's and the shards' references; the last drop frees */
	struct rc_jwt_keyset set;
};

static void keys_unref(struct rc_token_keys *k)
{
	if (!k)
		return;
	/* acq_rel: the freeing thread sees every use of the set by the others. */
	int left = atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel);
	RC_ASSERT(left >= 1);
	if (left > 1)
		return;
	rc_jwt_keyset_clear(&k->set);
	free(k);
}

/* The whole of file path into *text (malloc'd) and its modification time into *mtime_ns. */
static int file_read(const char *path, char **text, size_t *len, int64_t *mtime_ns, char *err,
		     size_t err_len)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &st) != 0) {
		int e = errno;
		snprintf(err, err_len, "%s: %s", path, strerror(e));
		if (f)
			fclose(f);
		return -e;
	}
	int rc = 0;
	*len = 0;
	*text = NULL;
	if (st.st_size > RC_TOKEN_FILE_BYTES_LIMIT) {
		snprintf(err, err_len, "%s: larger than %d bytes", path, RC_TOKEN_FILE_BYTES_LIMIT);
		rc = -EFBIG;
	} else if (!(*text = malloc((size_t)st.st_size + 1))) {
		rc = -ENOMEM;
	} else {
		*len = fread(*text, 1, (size_t)st.st_size, f);
		if (ferror(f)) {
			snprintf(err, err_len, "%s: cannot read", path);
			rc = -EIO;
		}
	}
	*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	fclose(f);
	return rc;
}

/* A new key set from the configured files, with their modification times. */
static int keys_load(const struct rc_config *cfg, struct rc_token_keys **out, int64_t mtime[2],
		     char *err, size_t err_len)
{
	const char *files[2] = {cfg->token_public_key_file, cfg->token_jwks_file};
	struct rc_token_keys *k = calloc(1, sizeof(*k));
	int rc = 0;
	if (!k)
		return -ENOMEM;
	atomic_init(&k->refs, 1);
	for (int i = 0; rc == 0 && i < 2; i++) {
		char *text = NULL, why[256] = "";
		size_t len = 0;
		if (!files[i][0])
			continue;
		rc = file_read(files[i], &text, &len, &mtime[i], err, err_len);
		if (rc == 0 && i == 0)
			rc = rc_jwt_keyset_add_pem(&k->set, text, len, "", why, sizeof(why));
		else if (rc == 0)
			rc = rc_jwt_keyset_add_jwks(&k->set, text, len, why, sizeof(why));
		if (why[0])
			snprintf(err, err_len, "%s: %s", files[i], why);
		free(text);
	}
	if (rc) {
		keys_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

/* Makes k (one reference, taken over) the set the shards verify with. */
static void keys_publish(struct rc_app *app, struct rc_token_keys *k)
{
	pthread_mutex_lock(&app->token_lock);
	struct rc_token_keys *old = app->token_keys;
	app->token_keys = k;
	/* Pairs with the acquire load in shard_keys. */
	atomic_fetch_add_explicit(&app->token_keys_gen, 1, memory_order_release);
	pthread_mutex_unlock(&app->token_lock);
	keys_unref(old);
}

int rc_token_init(struct rc_app *app, char *err, size_t err_len)
{
	const struct rc_config *cfg = &app->cfg;
	struct rc_token_keys *k = NULL;
	int rc = rc_jwt_algs_parse(cfg->token_algorithms, &app->token_algs, err, err_len);
	if (rc)
		return rc;
	pthread_mutex_init(&app->token_lock, NULL);
	app->auth = cfg->token_hmac_secret[0] || cfg->token_public_key_file[0] ||
		    cfg->token_jwks_file[0];
	if (!app->auth)
		return 0;
	rc = keys_load(cfg, &k, app->token_files_mtime, err, err_len);
	if (rc == 0)
		keys_publish(app, k);
	return rc;
}

int rc_token_reload(struct rc_app *app)
{
	struct rc_token_keys *k = NULL;
	char err[320] = "";
	int64_t mtime[2] = {app->token_files_mtime[0], app->token_files_mtime[1]};
	int rc = keys_load(&app->cfg, &k, mtime, err, sizeof(err));
	/* Either way the files were seen as they are now: a bad one is not retried per tick. */
	app->token_files_mtime[0] = mtime[0];
	app->token_files_mtime[1] = mtime[1];
	if (rc) {
		rc_log(app, RC_LOG_ERROR, "token keys not reloaded, the old ones stay: %s", err);
		return rc;
	}
	rc_log(app, RC_LOG_INFO, "token keys reloaded: %u public keys", k->set.count);
	keys_publish(app, k);
	return 0;
}

/* The modification time of path in ns, or -1. */
static int64_t mtime_of(const char *path)
{
	struct stat st;
	if (!path[0] || stat(path, &st) != 0)
		return -1;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

void rc_token_watch(struct rc_app *app, uint64_t now_ms)
{
	const struct rc_config *cfg = &app->cfg;
	if (!app->auth || now_ms - app->token_checked_ms < RC_TOKEN_WATCH_MS)
		return;
	app->token_checked_ms = now_ms;
	int64_t a = mtime_of(cfg->token_public_key_file), b = mtime_of(cfg->token_jwks_file);
	if ((a >= 0 && a != app->token_files_mtime[0]) || (b >= 0 && b != app->token_files_mtime[1]))
		(void)rc_token_reload(app);
}

void rc_token_free(struct rc_app *app)
{
	for (int i = 0; app->shards && i < app->shards_count; i++) {
		keys_unref(app->shards[i].token_keys);
		app->shards[i].token_keys = NULL;
	}
	keys_unref(app->token_keys);
	app->token_keys = NULL;
	pthread_mutex_destroy(&app->token_lock);
}

/* The key set s verifies with: the current one, taken if it changed since s last looked. */
static const struct rc_jwt_keyset *shard_keys(struct rc_shard *s)
{
	struct rc_app *app = s->app;
	/* Pairs with the release increment in keys_publish. */
	unsigned gen = atomic_load_explicit(&app->token_keys_gen, memory_order_acquire);
	if (gen != s->token_keys_gen) {
		struct rc_token_keys *old = s->token_keys;
		pthread_mutex_lock(&app->token_lock);
		s->token_keys = app->token_keys;
		if (s->token_keys)
			atomic_fetch_add_explicit(&s->token_keys->refs, 1, memory_order_relaxed);
		s->token_keys_gen = atomic_load_explicit(&app->token_keys_gen, memory_order_relaxed);
		pthread_mutex_unlock(&app->token_lock);
		keys_unref(old);
	}
	return s->token_keys ? &s->token_keys->set : NULL;
}

void rc_token_count_failure(struct rc_shard *s, enum rc_jwt_result r)
{
	RC_ASSERT(r != RC_JWT_ok && r < RC_JWT_RESULT_COUNT);
	s->stats.auth_failures[r]++;
}

enum rc_jwt_result rc_token_verify(struct rc_shard *s, const char *token, size_t len,
				   struct rc_jwt_claims *out)
{
	const struct rc_config *cfg = &s->app->cfg;
	RC_ASSERT(s->app->auth);
	struct rc_jwt_verifier v = {
		.algs = s->app->token_algs,
		.secret = (const uint8_t *)cfg->token_hmac_secret,
		.secret_len = strlen(cfg->token_hmac_secret),
		.keys = shard_keys(s),
		.audience = cfg->token_audience,
		.issuer = cfg->token_issuer,
		.leeway_ms = cfg->token_leeway_ms,
		.bytes_max = cfg->token_bytes_max,
	};
	enum rc_jwt_result r = rc_jwt_verify(&v, token, len, rc_clock_unix_ms(), out);
	if (r != RC_JWT_ok)
		rc_token_count_failure(s, r);
	return r;
}

/* The bytes rights hold against the budget. */
static size_t rights_size(const struct rc_jwt_rights *r)
{
	return sizeof(*r) + r->len;
}

static void slot_clear(struct rc_shard *s, struct rc_conn_token *t)
{
	if (t->rights)
		rc_mem_release(s->app, RC_BUDGET_http, rights_size(t->rights));
	rc_jwt_rights_free(t->rights);
	*t = (struct rc_conn_token){0, 0, NULL};
}

void rc_token_conn_set(struct rc_conn *c, struct rc_jwt_claims *claims, bool expires)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(s->tokens != NULL);
	RC_ASSERT(claims->rights != NULL);
	struct rc_conn_token *t = &s->tokens[c - s->conns];
	slot_clear(s, t);
	t->rights = claims->rights;
	claims->rights = NULL;
	/* Bounded by token_bytes_max and held by an admitted connection: charged, not refused. */
	rc_mem_charge(s->app, RC_BUDGET_http, rights_size(t->rights));
	/* One publisher per subject across its connections; the top bit stays clear (a
	 * connection's own scope has it set, rc_pubsub_publisher) and 0 means none. */
	if (t->rights->sub[0])
		t->publisher = rc_topic_hash(t->rights->sub, strlen(t->rights->sub)) >> 1 | 1;
	if (!expires || !claims->exp_ms)
		return;
	/* exp (with the leeway) becomes a deadline on the shard's monotonic clock, at least
	 * 1 ms so that 0 keeps meaning "none". */
	uint64_t now = rc_clock_unix_ms(), end = claims->exp_ms + s->app->cfg.token_leeway_ms;
	t->expires_ms = RC_MAX(s->clock.now_ms, 1) + (end > now ? end - now : 0);
}

const struct rc_jwt_rights *rc_token_rights(const struct rc_conn *c)
{
	const struct rc_shard *s = c->shard;
	return s->tokens ? s->tokens[c - s->conns].rights : NULL;
}

const char *rc_conn_subject(const struct rc_conn *c)
{
	const struct rc_jwt_rights *r = rc_token_rights(c);
	return r ? r->sub : "";
}

void rc_token_conn_clear(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	if (s->tokens)
		slot_clear(s, &s->tokens[c - s->conns]);
}
