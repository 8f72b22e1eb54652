/*
 * The process's TLS configuration: reads the PEM files named by the config, builds the
 * server context through src/tls.c, swaps it on SIGHUP, rotates the ticket keys and probes
 * for kernel TLS. See tls_ctx.h for the threads of each call.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tls_ctx.h"

#define PEM_BYTES_LIMIT (1024 * 1024) /* a certificate chain or key file */

/* Reads path into a new buffer (*out, caller frees). 0 or -errno with err set. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(PEM_BYTES_LIMIT);
	size_t n = 0;
	int rc = 0;
	if (!f || !buf) {
		rc = f ? -ENOMEM : -errno;
		goto out;
	}
	n = fread(buf, 1, PEM_BYTES_LIMIT, f);
	if (ferror(f))
		rc = -EIO;
	else if (n == PEM_BYTES_LIMIT)
		rc = -EFBIG;
out:
	if (rc) {
		snprintf(err, err_len, "%s: %s", path, strerror(-rc));
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	*out = buf;
	*len = n;
	return rc;
}

/* The certificate files: tls_cert_file/tls_key_file, then each tls_sni_certs pair. */
struct pem_files {
	struct rc_tls_pem pem[RC_TLS_SNI_LIMIT + 1];
	size_t count;
};

static void pem_files_free(struct pem_files *pf)
{
	for (size_t i = 0; i < pf->count; i++) {
		free((char *)pf->pem[i].cert);
		free((char *)pf->pem[i].key);
	}
	pf->count = 0;
}

static int pem_add(struct pem_files *pf, const char *cert, const char *key, char *err,
		   size_t err_len)
{
	if (pf->count == RC_ARRAY_LEN(pf->pem)) {
		snprintf(err, err_len, "tls_sni_certs: more than %d pairs", RC_TLS_SNI_LIMIT);
		return -EINVAL;
	}
	struct rc_tls_pem *p = &pf->pem[pf->count];
	char *c = NULL, *k = NULL;
	int rc = read_file(cert, &c, &p->cert_len, err, err_len);
	if (rc == 0)
		rc = read_file(key, &k, &p->key_len, err, err_len);
	if (rc) {
		free(c);
		return rc;
	}
	p->cert = c;
	p->key = k;
	pf->count++;
	return 0;
}

/* Reads every file the config names. 0 or -errno with err set (pf then holds nothing). */
static int pem_files_read(const struct rc_config *cfg, struct pem_files *pf, char *err,
			  size_t err_len)
{
	char *items[RC_TLS_SNI_LIMIT + 1];
	char *list = strdup(cfg->tls_sni_certs);
	int rc = list ? pem_add(pf, cfg->tls_cert_file, cfg->tls_key_file, err, err_len) : -ENOMEM;
	size_t n = rc == 0 ? rc_config_split_list(list, items, RC_ARRAY_LEN(items)) : 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char *colon = strchr(items[i], ':');
		if (!colon) {
			snprintf(err, err_len, "tls_sni_certs: '%s' is not cert.pem:key.pem",
				 items[i]);
			rc = -EINVAL;
			break;
		}
		*colon = '\0';
		rc = pem_add(pf, items[i], colon + 1, err, err_len);
	}
	free(list);
	if (rc)
		pem_files_free(pf);
	return rc;
}

/* A new context from the files, or NULL with err set. Main thread. */
static SSL_CTX *ctx_load(struct rc_app *app, char *err, size_t err_len)
{
	const struct rc_config *cfg = &app->cfg;
	struct pem_files pf = {.count = 0};
	if (pem_files_read(cfg, &pf, err, err_len) != 0)
		return NULL;
	uint32_t rotate_s = (uint32_t)cfg->tls_ticket_rotate_s;
	char why[160] = "";
	SSL_CTX *ctx = rc_tls_ctx_new(pf.pem, pf.count, rotate_s ? &app->tls->keys : NULL,
				      2 * rotate_s, why, sizeof(why));
	if (!ctx)
		snprintf(err, err_len, "tls_cert_file/tls_sni_certs: %s", why);
	pem_files_free(&pf);
	return ctx;
}

/* Kernel TLS needs the "tls" upper-layer protocol; the socket need not be connected for
 * the kernel to say whether it has one (ENOENT: no module). */
static bool ktls_probe(int *err_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_out = errno;
		return false;
	}
	int rc = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"));
	*err_out = rc ? errno : 0;
	close(fd);
	/* Unconnected sockets refuse the ULP with ENOTCONN when the module is there. */
	return rc == 0 || *err_out == ENOTCONN;
}

int rc_tls_app_init(struct rc_app *app, char *err, size_t err_len)
{
	if (!app->cfg.tls_port)
		return 0;
	struct rc_tls_app *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	app->tls = t;
	pthread_mutex_init(&t->lock, NULL);
	if (rc_tls_ticket_keys_init(&t->keys) != 0) {
		snprintf(err, err_len, "TLS: no randomness for the session ticket keys");
		return -EIO;
	}
	t->ctx = ctx_load(app, err, err_len);
	if (!t->ctx)
		return -EINVAL;
	int e = 0;
	t->ktls = ktls_probe(&e);
	rc_log(app, RC_LOG_INFO, "kTLS: %s (setsockopt TCP_ULP \"tls\": %s); records are "
	       "encrypted in user space (docs/ktls.md)", t->ktls ? "available" : "unavailable",
	       e ? strerror(e) : "ok");
	return 0;
}

int rc_tls_app_reload(struct rc_app *app)
{
	char err[256] = "";
	struct rc_tls_app *t = app->tls;
	if (!t)
		return 0;
	SSL_CTX *ctx = ctx_load(app, err, sizeof(err));
	if (!ctx) {
		atomic_fetch_add_explicit(&t->reload_failures, 1, memory_order_relaxed);
		rc_log(app, RC_LOG_ERROR, "SIGHUP: certificates not reloaded: %s", err);
		return -EINVAL;
	}
	pthread_mutex_lock(&t->lock);
	SSL_CTX *old = t->ctx;
	t->ctx = ctx;
	pthread_mutex_unlock(&t->lock);
	/* Connections made with the old context hold their own references. */
	SSL_CTX_free(old);
	atomic_fetch_add_explicit(&t->reloads, 1, memory_order_relaxed);
	rc_log(app, RC_LOG_INFO, "SIGHUP: certificates reloaded; new handshakes use them");
	return 0;
}

void rc_tls_app_free(struct rc_app *app)
{
	struct rc_tls_app *t = app->tls;
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
	app->tls = NULL;
}

SSL_CTX *rc_tls_app_ctx(struct rc_app *app)
{
	struct rc_tls_app *t = app->tls;
	RC_ASSERT(t != NULL);
	pthread_mutex_lock(&t->lock);
	SSL_CTX *ctx = t->ctx;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&t->lock);
	RC_ASSERT(ctx != NULL);
	return ctx;
}

void rc_tls_app_tick(struct rc_app *app, uint64_t now_ms)
{
	struct rc_tls_app *t = app->tls;
	uint64_t every_ms = app->cfg.tls_ticket_rotate_s * 1000;
	if (!t || !every_ms)
		return;
	if (t->next_rotate_ms && now_ms >= t->next_rotate_ms &&
	    rc_tls_ticket_keys_rotate(&t->keys) != 0)
		rc_log(app, RC_LOG_WARN, "TLS: ticket key rotation failed (no randomness)");
	if (!t->next_rotate_ms || now_ms >= t->next_rotate_ms)
		t->next_rotate_ms = now_ms + every_ms;
}
