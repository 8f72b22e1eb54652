/*
 * TLS contexts and connection engines over BoringSSL (tls.h), sans I/O. The engine's BIO reads
 * the ciphertext the runtime feeds from its receive buffer and appends what BoringSSL writes
 * to the connection's output buffer, which is freed as soon as it is sent: together with
 * BoringSSL releasing its record buffers when empty and shedding the handshake configuration,
 * an idle connection holds only the SSL object, its session and its two traffic keys.
 * Contexts: main thread (start, reload); engines: their shard's thread.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

#define NAME_OF(name, help) #name,
static const char *const failure_names[] = {RC_TLS_FAILURES(NAME_OF)};
#undef NAME_OF
RC_STATIC_ASSERT(RC_ARRAY_LEN(failure_names) == RC_TLS_FAILURE_COUNT, "one name per failure");

/* TLS 1.2 suites allowed: ECDHE with an AEAD only (TLS 1.3's are all AEAD). */
static const char cipher_list[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

const char *rc_tls_failure_name(enum rc_tls_failure f)
{
	return (unsigned)f < RC_TLS_FAILURE_COUNT ? failure_names[f] : "unknown";
}

enum rc_tls_failure rc_tls_failure_of(uint32_t err)
{
	if (ERR_GET_LIB(err) != ERR_LIB_SSL)
		return ERR_GET_LIB(err) == ERR_LIB_CIPHER ? RC_TLS_FAIL_bad_record
							   : RC_TLS_FAIL_protocol;
	int reason = ERR_GET_REASON(err);
	if (reason >= SSL_AD_REASON_OFFSET)
		return RC_TLS_FAIL_alert;
	switch (reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST: return RC_TLS_FAIL_garbage;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUP: return RC_TLS_FAIL_refused;
	case SSL_R_DATA_LENGTH_TOO_LONG:
	case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
	case SSL_R_RECORD_TOO_LARGE:
	case SSL_R_EXCESSIVE_MESSAGE_SIZE: return RC_TLS_FAIL_oversized;
	case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC: return RC_TLS_FAIL_bad_record;
	case SSL_R_NO_RENEGOTIATION: return RC_TLS_FAIL_renegotiation;
	case ERR_R_MALLOC_FAILURE: return RC_TLS_FAIL_memory;
	default: return RC_TLS_FAIL_protocol;
	}
}

/* ---- session ticket keys ------------------------------------------------------------------ */
static int key_fill(struct rc_tls_ticket_key *k)
{
	return RAND_bytes((uint8_t *)k, sizeof(*k)) == 1 ? 0 : -EIO;
}

int rc_tls_ticket_keys_init(struct rc_tls_ticket_keys *k)
{
	for (size_t i = 0; i < RC_TLS_TICKET_SLOTS; i++)
		if (key_fill(&k->slot[i]) != 0)
			return -EIO;
	atomic_store_explicit(&k->current, 0, memory_order_release);
	return 0;
}

int rc_tls_ticket_keys_rotate(struct rc_tls_ticket_keys *k)
{
	uint32_t cur = atomic_load_explicit(&k->current, memory_order_relaxed);
	/* The slot two ahead of the previous key: no reader looks at it. */
	if (key_fill(&k->slot[(cur + 1) % RC_TLS_TICKET_SLOTS]) != 0)
		return -EIO;
	/* Pairs with the acquire load in ticket_key_cb: the key bytes are visible first. */
	atomic_store_explicit(&k->current, cur + 1, memory_order_release);
	return 0;
}

static int ctx_keys_index = -1; /* ex_data slot of a context's ticket keys */
static int ctx_sni_index = -1;	/* ex_data slot of a default context's SNI contexts */
static BIO_METHOD *bio_method;	/* the engines' BIO, made with the first context */

static int ticket_key_cb(SSL *ssl, uint8_t *name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
			 HMAC_CTX *hctx, int encrypt)
{
	struct rc_tls_ticket_keys *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_keys_index);
	RC_ASSERT(k != NULL);
	uint32_t cur = atomic_load_explicit(&k->current, memory_order_acquire);
	if (encrypt) {
		const struct rc_tls_ticket_key *key = &k->slot[cur % RC_TLS_TICKET_SLOTS];
		if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
			return -1;
		memcpy(name, key->name, sizeof(key->name));
		if (!EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key->aes, iv) ||
		    !HMAC_Init_ex(hctx, key->hmac, sizeof(key->hmac), EVP_sha256(), NULL))
			return -1;
		return 1;
	}
	for (uint32_t age = 0; age < 2; age++) {
		const struct rc_tls_ticket_key *key = &k->slot[(cur - age) % RC_TLS_TICKET_SLOTS];
		if (memcmp(name, key->name, sizeof(key->name)) != 0)
			continue;
		if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key->aes, iv) ||
		    !HMAC_Init_ex(hctx, key->hmac, sizeof(key->hmac), EVP_sha256(), NULL))
			return -1;
		return age == 0 ? 1 : 2; /* 2: resume, and issue a ticket under the new key */
	}
	return 0; /* unknown key: a full handshake */
}

/* ---- contexts ----------------------------------------------------------------------------- */
/* The SNI contexts a default context owns: freed with it. */
struct sni_set {
	size_t count;
	SSL_CTX *ctx[RC_TLS_SNI_LIMIT];
};

static void sni_set_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
			 void *argp)
{
	struct sni_set *set = ptr;
	if (!set)
		return;
	for (size_t i = 0; i < set->count; i++)
		SSL_CTX_free(set->ctx[i]);
	free(set);
}

static int alpn_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
		   unsigned in_len, void *arg)
{
	/* Only http/1.1 for now; h2 (RFC 8441) will be one more entry here. */
	for (unsigned i = 0; i < in_len;) {
		unsigned n = in[i];
		if (i + 1 + n > in_len)
			break;
		if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*out_len = 8;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct sni_set *set = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_sni_index);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!set || !name)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < set->count; i++) {
		X509 *leaf = SSL_CTX_get0_certificate(set->ctx[i]);
		if (X509_check_host(leaf, name, strlen(name), 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, set->ctx[i]);
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* Loads the chain (leaf first) and key of pem into ctx. 0 or -EINVAL with err set. */
static int use_pem(SSL_CTX *ctx, const struct rc_tls_pem *pem, char *err, size_t err_len)
{
	BIO *cb = BIO_new_mem_buf(pem->cert, (ssize_t)pem->cert_len);
	BIO *kb = BIO_new_mem_buf(pem->key, (ssize_t)pem->key_len);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	int rc = -EINVAL;
	if (!x || !key || !SSL_CTX_use_certificate(ctx, x) || !SSL_CTX_use_PrivateKey(ctx, key) ||
	    !SSL_CTX_check_private_key(ctx)) {
		snprintf(err, err_len, "%s", !x ? "no PEM certificate" : !key ? "no PEM private key"
								: "key does not match");
		goto out;
	}
	X509 *chain;
	while ((chain = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
		int ok = SSL_CTX_add1_chain_cert(ctx, chain);
		X509_free(chain);
		if (!ok)
			goto out;
	}
	rc = 0;
out:
	ERR_clear_error(); /* the chain loop ends on a "no start line" error */
	X509_free(x);
	EVP_PKEY_free(key);
	BIO_free(cb);
	BIO_free(kb);
	return rc;
}

/* A context serving pem, configured as every ringcast context is. NULL with err set. */
static SSL_CTX *ctx_one(const struct rc_tls_pem *pem, struct rc_tls_ticket_keys *keys,
			uint32_t lifetime_s, char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_strict_cipher_list(ctx, cipher_list) || use_pem(ctx, pem, err, err_len)) {
		if (!err[0])
			snprintf(err, err_len, "context setup failed");
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Stateless resumption only: no server-side session cache to grow with clients. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	if (keys) {
		SSL_CTX_set_ex_data(ctx, ctx_keys_index, keys);
		SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_key_cb);
		SSL_CTX_set_timeout(ctx, lifetime_s);
		SSL_CTX_set_session_psk_dhe_timeout(ctx, lifetime_s);
		SSL_CTX_set_num_tickets(ctx, 1);
	} else {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	return ctx;
}

static int bio_write(BIO *b, const char *p, int n);
static int bio_read(BIO *b, char *p, int n);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);

/* The indices and the BIO method: made once, by the first context (main thread). */
static int globals_init(void)
{
	if (bio_method)
		return 0;
	ctx_keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx_sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_set_free);
	BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "ringcast");
	if (ctx_keys_index < 0 || ctx_sni_index < 0 || !m || !BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_ctrl(m, bio_ctrl)) {
		BIO_meth_free(m);
		return -ENOMEM;
	}
	bio_method = m;
	return 0;
}

SSL_CTX *rc_tls_ctx_new(const struct rc_tls_pem *pems, size_t count,
			struct rc_tls_ticket_keys *keys, uint32_t ticket_lifetime_s, char *err,
			size_t err_len)
{
	RC_ASSERT(count >= 1);
	err[0] = '\0';
	if (count > RC_TLS_SNI_LIMIT + 1 || globals_init() != 0) {
		snprintf(err, err_len, count > RC_TLS_SNI_LIMIT + 1 ? "over %d SNI certificates"
								    : "out of memory",
			 RC_TLS_SNI_LIMIT);
		return NULL;
	}
	SSL_CTX *ctx = ctx_one(&pems[0], keys, ticket_lifetime_s, err, err_len);
	struct sni_set *set = calloc(1, sizeof(*set));
	if (!ctx || !set || !SSL_CTX_set_ex_data(ctx, ctx_sni_index, set)) {
		if (!err[0])
			snprintf(err, err_len, "out of memory");
		free(set);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* From here the context owns set: freeing the context frees the SNI contexts. */
	for (size_t i = 1; i < count; i++) {
		set->ctx[set->count] = ctx_one(&pems[i], keys, ticket_lifetime_s, err, err_len);
		if (!set->ctx[set->count]) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		set->count++;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
	RC_ASSERT(set->count == count - 1);
	return ctx;
}

/* ---- the engine's BIO ------------------------------------------------------------------- */
static int bio_write(BIO *b, const char *p, int n)
{
	struct rc_tls_conn *t = BIO_get_data(b);
	RC_ASSERT(n >= 0);
	size_t need = (size_t)t->out_len + (size_t)n;
	if (need > UINT32_MAX / 2)
		goto fail;
	if (need > t->out_cap) {
		size_t cap = RC_MAX(need, RC_MAX((size_t)t->out_cap * 2, (size_t)1024));
		uint8_t *o = realloc(t->out, cap);
		if (!o)
			goto fail;
		t->out = o;
		t->out_cap = (uint32_t)cap;
	}
	memcpy(t->out + t->out_len, p, (size_t)n);
	t->out_len += (uint32_t)n;
	return n;
fail:
	t->out_failed = true;
	return -1;
}

static int bio_read(BIO *b, char *p, int n)
{
	struct rc_tls_conn *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (t->in_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	size_t k = RC_MIN(t->in_len, (size_t)n);
	memcpy(p, t->in, k);
	t->in += k;
	t->in_len -= k;
	return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	/* BoringSSL flushes after each flight; the bytes already sit in out. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ---- the engine ----------------------------------------------------------------------------- */
int rc_tls_conn_init(struct rc_tls_conn *t, SSL_CTX *ctx)
{
	RC_ASSERT(bio_method != NULL);
	memset(t, 0, sizeof(*t));
	t->ssl = SSL_new(ctx);
	BIO *b = BIO_new(bio_method);
	if (!t->ssl || !b) {
		BIO_free(b);
		SSL_free(t->ssl);
		t->ssl = NULL;
		return -ENOMEM;
	}
	BIO_set_data(b, t);
	BIO_set_init(b, 1);
	SSL_set_bio(t->ssl, b, b); /* one reference for both directions */
	SSL_set_accept_state(t->ssl);
	/* The certificate, key and settings are not kept past the handshake. */
	SSL_set_shed_handshake_config(t->ssl, 1);
	return 0;
}

void rc_tls_conn_free(struct rc_tls_conn *t)
{
	SSL_free(t->ssl);
	free(t->out);
	memset(t, 0, sizeof(*t));
}

void rc_tls_conn_feed(struct rc_tls_conn *t, const uint8_t *in, size_t n)
{
	RC_ASSERT(t->ssl != NULL);
	t->in = in;
	t->in_len = n;
}

/* What a failed or stopped call means: RC_TLS_WANT, RC_TLS_CLOSED or RC_TLS_FAILED. */
static int outcome(struct rc_tls_conn *t, int ret)
{
	int e = SSL_get_error(t->ssl, ret);
	if (e == SSL_ERROR_WANT_READ && !t->out_failed) {
		RC_ASSERT(t->in_len == 0);
		t->in = NULL;
		return RC_TLS_WANT;
	}
	if (e == SSL_ERROR_ZERO_RETURN && !t->out_failed)
		return RC_TLS_CLOSED;
	uint32_t err = (uint32_t)ERR_peek_error();
	t->failed = true;
	t->failure = (uint8_t)(t->out_failed || e == SSL_ERROR_SYSCALL ? RC_TLS_FAIL_memory
								     : rc_tls_failure_of(err));
	if (e == SSL_ERROR_SSL && !err)
		t->failure = RC_TLS_FAIL_protocol;
	ERR_clear_error();
	t->in = NULL;
	t->in_len = 0;
	return RC_TLS_FAILED;
}

int rc_tls_conn_read(struct rc_tls_conn *t, uint8_t *buf, size_t cap)
{
	RC_ASSERT(cap > 0 && cap <= INT32_MAX);
	if (t->failed)
		return RC_TLS_FAILED;
	if (!t->established) {
		int ret = SSL_do_handshake(t->ssl);
		if (ret != 1)
			return outcome(t, ret);
		t->established = true;
	}
	int n = SSL_read(t->ssl, buf, (int)cap);
	return n > 0 ? n : outcome(t, n);
}

int rc_tls_conn_write(struct rc_tls_conn *t, const void *p, size_t n)
{
	RC_ASSERT(t->established && !t->failed);
	RC_ASSERT(n > 0 && n <= RC_TLS_RECORD_PLAIN_LIMIT);
	int ret = SSL_write(t->ssl, p, (int)n);
	if (ret == (int)n)
		return 0;
	outcome(t, ret);
	return t->failure == RC_TLS_FAIL_memory ? -ENOMEM : -EPROTO;
}

uint8_t *rc_tls_conn_take_out(struct rc_tls_conn *t, uint32_t *len, uint32_t *cap)
{
	uint8_t *o = t->out;
	*len = t->out_len;
	*cap = t->out_cap;
	if (!o || t->out_len == 0)
		return NULL;
	t->out = NULL;
	t->out_len = 0;
	t->out_cap = 0;
	RC_ASSERT(*len <= *cap);
	return o;
}

bool rc_tls_conn_close_notify(struct rc_tls_conn *t)
{
	if (!t->established || t->failed || t->notified)
		return false;
	t->notified = true;
	/* 0: sent, the peer's has not come (we do not wait for it); < 0 only on failure. */
	int ret = SSL_shutdown(t->ssl);
	ERR_clear_error();
	RC_ASSERT(t->ssl != NULL);
	return ret >= 0 && t->out_len > 0;
}

bool rc_tls_conn_resumed(const struct rc_tls_conn *t)
{
	return t->ssl && SSL_session_reused(t->ssl);
}
