/*
 * The process's TLS configuration (tls_ctx.c): the server context built from tls_cert_file,
 * tls_key_file and tls_sni_certs, swapped whole on SIGHUP (new handshakes take the new one,
 * open connections keep theirs: each holds a reference), the session ticket keys rotated
 * every tls_ticket_rotate_s, and the kTLS probe. Main thread, except rc_tls_app_ctx (any
 * shard) and rc_tls_app_tick (shard 0).
 */
#ifndef RC_TLS_CTX_H
#define RC_TLS_CTX_H

#include "runtime.h"
#include "tls.h"

struct rc_tls_app {
	pthread_mutex_t lock;	/* guards ctx: shards take references while a reload swaps it */
	SSL_CTX *ctx;		/* what new handshakes use; one reference held here */
	struct rc_tls_ticket_keys keys; /* shared by every context, so tickets survive reloads */
	uint64_t next_rotate_ms; /* shard 0's clock: when the ticket key rotates next */
	_Atomic uint64_t reloads;	 /* SIGHUPs that installed new certificates */
	_Atomic uint64_t reload_failures; /* SIGHUPs whose files did not load (old ones kept) */
	bool ktls;		/* the kernel has the tls ULP (probed at start) */
};

/* With tls_port set: loads the certificates, makes the ticket keys and probes kTLS (logged).
 * 0, or -errno with err naming the file or the failure. Main thread, before the shards. */
int rc_tls_app_init(struct rc_app *app, char *err, size_t err_len);

/* Re-reads the certificate files (SIGHUP). On failure the old ones stay, logged and counted.
 * 0 or -errno. Main thread. */
int rc_tls_app_reload(struct rc_app *app);

/* Frees what rc_tls_app_init made (open connections' references must be gone). Main thread. */
void rc_tls_app_free(struct rc_app *app);

/* A reference to the current context, for one new connection (SSL_CTX_free it after
 * SSL_new took its own). Any shard thread. */
SSL_CTX *rc_tls_app_ctx(struct rc_app *app);

/* Rotates the ticket keys when due (now_ms: the calling shard's clock). Shard 0 only. */
void rc_tls_app_tick(struct rc_app *app, uint64_t now_ms);

#endif
