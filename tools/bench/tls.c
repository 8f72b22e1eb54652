/*
 * wss:// for ringcast-bench: a BoringSSL client per connection over two memory BIOs, driven
 * by the worker's ring like the plain bytes. The ClientHello goes out in the connect chain in
 * place of the upgrade request; the server's bytes are fed in as they arrive and decrypted
 * before the WebSocket parser sees them; once the handshake ends the upgrade request is
 * queued, and from then on tx_pend holds plaintext, encrypted when it is handed to the kernel
 * (tx_out holds ciphertext). Every connection makes a full handshake (no resumption), so a
 * churn measures handshakes. Certificates are not verified: the bench measures the server.
 * The owning worker thread, except rcb_tls_init (main thread, before the workers).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "base/rc_assert.h"
#include "bench.h"

struct rcb_tls {
	SSL *ssl;
	BIO *rbio; /* the server's bytes, fed in */
	BIO *wbio; /* bytes for the server: flights and records */
	bool established;
};

static SSL_CTX *client_ctx;

int rcb_tls_init(void)
{
	static const uint8_t alpn[] = "\x08http/1.1";
	client_ctx = SSL_CTX_new(TLS_method());
	if (!client_ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_OFF);
	return SSL_CTX_set_alpn_protos(client_ctx, alpn, sizeof(alpn) - 1) == 0 ? 0 : -ENOMEM;
}

void rcb_tls_free(struct rcb_conn *c)
{
	if (!c->tls)
		return;
	SSL_free(c->tls->ssl); /* frees both BIOs */
	free(c->tls);
	c->tls = NULL;
}

/* Moves what BoringSSL wrote into tx_out (nothing may be in flight); false if nothing. */
static bool take_wbio(struct rcb_conn *c)
{
	const uint8_t *p;
	size_t n;
	RC_ASSERT(!(c->flags & RCB_CF_SENDING));
	BIO_mem_contents(c->tls->wbio, &p, &n);
	if (n == 0)
		return false;
	if (!rcb_buf_grow(&c->tx_out, &c->tx_out_cap, n, RCB_TX_LIMIT + RCB_TX_LIMIT / 8))
		RC_ASSERT(!"out of memory for TLS records");
	memcpy(c->tx_out, p, n);
	c->tx_out_len = (uint32_t)n;
	BIO_reset(c->tls->wbio);
	return true;
}

void rcb_tls_start(struct rcb_conn *c)
{
	rcb_tls_free(c);
	c->tls = calloc(1, sizeof(*c->tls));
	RC_ASSERT(c->tls != NULL);
	c->tls->ssl = SSL_new(client_ctx);
	c->tls->rbio = BIO_new(BIO_s_mem());
	c->tls->wbio = BIO_new(BIO_s_mem());
	RC_ASSERT(c->tls->ssl && c->tls->rbio && c->tls->wbio);
	SSL_set_bio(c->tls->ssl, c->tls->rbio, c->tls->wbio);
	SSL_set_connect_state(c->tls->ssl);
	int r = SSL_do_handshake(c->tls->ssl);
	RC_ASSERT(r != 1 && SSL_get_error(c->tls->ssl, r) == SSL_ERROR_WANT_READ);
	RC_ASSERT(take_wbio(c)); /* the ClientHello */
}

void rcb_tls_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n)
{
	static _Thread_local uint8_t plain[16384];
	struct rcb_tls *s = c->tls;
	RC_ASSERT(s != NULL);
	BIO_write(s->rbio, p, (int)n);
	if (!s->established) {
		int r = SSL_do_handshake(s->ssl);
		if (r != 1) {
			if (SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
				rcb_conn_lose(t, c, EPROTO);
			else if (BIO_pending(s->wbio))
				rcb_conn_mark_dirty(t, c);
			return;
		}
		s->established = true;
		if (c->state == RCB_CS_HANDSHAKE)
			rcb_ws_queue_request(t, c); /* plaintext; encrypted when sent */
	}
	for (;;) {
		int got = SSL_read(s->ssl, plain, sizeof(plain));
		if (got <= 0) {
			int e = SSL_get_error(s->ssl, got);
			int why = e == SSL_ERROR_ZERO_RETURN ? ECONNRESET : EPROTO;
			if (e != SSL_ERROR_WANT_READ)
				rcb_conn_lose(t, c, why);
			break;
		}
		rcb_ws_rx(t, c, plain, (size_t)got);
		if (c->state == RCB_CS_SHUTDOWN || c->state == RCB_CS_IDLE)
			return;
	}
	if (c->tls && BIO_pending(c->tls->wbio))
		rcb_conn_mark_dirty(t, c);
}

bool rcb_tls_seal(struct rcb_conn *c)
{
	struct rcb_tls *s = c->tls;
	if (s->established && c->tx_pend_len) {
		int w = SSL_write(s->ssl, c->tx_pend, (int)c->tx_pend_len);
		RC_ASSERT(w == (int)c->tx_pend_len); /* a memory BIO takes everything */
		c->tx_pend_len = 0;
	}
	return take_wbio(c);
}

bool rcb_tls_pending(const struct rcb_conn *c)
{
	return c->tls && ((c->tls->established && c->tx_pend_len) || BIO_pending(c->tls->wbio));
}
