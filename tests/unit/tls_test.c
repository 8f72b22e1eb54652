/*
 * src/tls.c, sans I/O: the server engine against a real BoringSSL client, both in memory
 * (no socket): handshakes for TLS 1.2 and 1.3, ALPN, SNI, data both ways at record
 * boundaries, ciphertext fed byte by byte, old versions and weak suites refused, garbage,
 * ticket resumption across key rotations, and the failure classification.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/tls_test_pem.h"
#include "tls.h"

static struct rc_tls_ticket_keys keys;
static SSL_CTX *server_ctx;

static void setup(void)
{
	struct rc_tls_pem pems[2] = {
		{test_cert_pem, sizeof(test_cert_pem) - 1, test_key_pem, sizeof(test_key_pem) - 1},
		{other_cert_pem, sizeof(other_cert_pem) - 1, other_key_pem,
		 sizeof(other_key_pem) - 1},
	};
	char err[160];
	cr_assert(eq(int, rc_tls_ticket_keys_init(&keys), 0));
	server_ctx = rc_tls_ctx_new(pems, 2, &keys, 7200, err, sizeof(err));
	cr_assert(server_ctx != NULL, "%s", err);
}

static void teardown(void)
{
	SSL_CTX_free(server_ctx);
}

/* A client: its own context, memory BIOs for both directions. */
struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *in;  /* what the server sent */
	BIO *out; /* what the client sends */
};

/* The last session a client got a ticket for (TLS 1.3 tickets arrive after the handshake). */
static SSL_SESSION *ticket_session;

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION_free(ticket_session);
	ticket_session = sess;
	return 1; /* we keep the reference */
}

static void client_new(struct client *c, uint16_t max_version, const char *ciphers,
		       const char *sni)
{
	static const uint8_t alpn[] = "\x02h2\x08http/1.1";
	c->ctx = SSL_CTX_new(TLS_method());
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(c->ctx, max_version);
	if (ciphers)
		cr_assert(SSL_CTX_set_strict_cipher_list(c->ctx, ciphers));
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT);
	SSL_CTX_sess_set_new_cb(c->ctx, new_session);
	c->ssl = SSL_new(c->ctx);
	c->in = BIO_new(BIO_s_mem());
	c->out = BIO_new(BIO_s_mem());
	SSL_set_bio(c->ssl, c->in, c->out);
	SSL_set_connect_state(c->ssl);
	SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
	SSL_set_tlsext_host_name(c->ssl, sni);
}

static void client_free(struct client *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
}

/* Moves the client's output into the server (in chunks of `chunk` bytes, 0: whole) and the
 * server's output back; plaintext the server read is appended to got. Returns the last
 * rc_tls_conn_read result. */
static int pump(struct client *c, struct rc_tls_conn *t, size_t chunk, uint8_t *got,
		size_t *got_len)
{
	const uint8_t *p;
	size_t n;
	int r = RC_TLS_WANT;
	BIO_mem_contents(c->out, &p, &n);
	uint8_t *copy = malloc(n + 1);
	memcpy(copy, p, n);
	BIO_reset(c->out);
	for (size_t off = 0; off < n && r >= 0;) {
		size_t k = chunk ? (n - off < chunk ? n - off : chunk) : n - off;
		rc_tls_conn_feed(t, copy + off, k);
		off += k;
		uint8_t buf[RC_TLS_RECORD_PLAIN_LIMIT];
		while ((r = rc_tls_conn_read(t, buf, sizeof(buf))) > 0) {
			memcpy(got + *got_len, buf, (size_t)r);
			*got_len += (size_t)r;
		}
	}
	free(copy);
	uint32_t len, cap;
	uint8_t *o = rc_tls_conn_take_out(t, &len, &cap);
	if (o)
		BIO_write(c->in, o, (int)len);
	free(o);
	return r;
}

/* Runs the handshake to its end (or failure); returns the server's last result. */
static int handshake(struct client *c, struct rc_tls_conn *t, size_t chunk)
{
	uint8_t got[64];
	size_t got_len = 0;
	int r = RC_TLS_WANT;
	for (int i = 0; i < 10 && r == RC_TLS_WANT; i++) {
		int cr = SSL_do_handshake(c->ssl);
		r = pump(c, t, chunk, got, &got_len);
		if (cr == 1 && t->established)
			break;
	}
	cr_assert(eq(sz, got_len, 0));
	return r;
}

static void established_roundtrip(uint16_t version, size_t chunk)
{
	struct client c;
	struct rc_tls_conn t;
	client_new(&c, version, NULL, "localhost");
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	cr_assert(eq(int, handshake(&c, &t, chunk), RC_TLS_WANT));
	cr_assert(t.established);
	cr_assert(eq(int, SSL_version(c.ssl), version));
	const uint8_t *proto;
	unsigned proto_len;
	SSL_get0_alpn_selected(c.ssl, &proto, &proto_len);
	cr_assert(eq(u32, proto_len, 8));
	cr_assert(eq(int, memcmp(proto, "http/1.1", 8), 0));
	/* Client to server: 40000 bytes span three records. */
	static uint8_t msg[40000], got[40000];
	size_t got_len = 0;
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7);
	cr_assert(eq(int, SSL_write(c.ssl, msg, sizeof(msg)), (int)sizeof(msg)));
	cr_assert(eq(int, pump(&c, &t, chunk, got, &got_len), RC_TLS_WANT));
	cr_assert(eq(sz, got_len, sizeof(msg)));
	cr_assert(eq(int, memcmp(got, msg, sizeof(msg)), 0));
	/* Server to client, one record at most per write. */
	for (size_t off = 0; off < sizeof(msg); off += RC_TLS_RECORD_PLAIN_LIMIT) {
		size_t k = sizeof(msg) - off < RC_TLS_RECORD_PLAIN_LIMIT ? sizeof(msg) - off
									  : RC_TLS_RECORD_PLAIN_LIMIT;
		cr_assert(eq(int, rc_tls_conn_write(&t, msg + off, k), 0));
	}
	pump(&c, &t, chunk, got, &got_len);
	size_t n = 0;
	int r;
	while (n < sizeof(msg) && (r = SSL_read(c.ssl, got + n, (int)(sizeof(got) - n))) > 0)
		n += (size_t)r;
	cr_assert(eq(sz, n, sizeof(msg)));
	cr_assert(eq(int, memcmp(got, msg, sizeof(msg)), 0));
	/* Idle: nothing left to send, no output buffer held. */
	cr_assert(t.out == NULL);
	rc_tls_conn_free(&t);
	client_free(&c);
}

TestSuite(tls, .init = setup, .fini = teardown);

Test(tls, tls13_roundtrip)
{
	established_roundtrip(TLS1_3_VERSION, 0);
}

Test(tls, tls12_roundtrip)
{
	established_roundtrip(TLS1_2_VERSION, 0);
}

Test(tls, ciphertext_fed_byte_by_byte)
{
	established_roundtrip(TLS1_3_VERSION, 1);
}

Test(tls, ciphertext_fed_in_odd_chunks)
{
	established_roundtrip(TLS1_2_VERSION, 7);
}

static enum rc_tls_failure refused_with(uint16_t version, const char *ciphers)
{
	struct client c;
	struct rc_tls_conn t;
	client_new(&c, version, ciphers, "localhost");
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	cr_assert(eq(int, handshake(&c, &t, 0), RC_TLS_FAILED));
	cr_assert(not(t.established));
	enum rc_tls_failure f = (enum rc_tls_failure)t.failure;
	rc_tls_conn_free(&t);
	client_free(&c);
	return f;
}

Test(tls, tls11_and_tls10_refused)
{
	cr_assert(eq(int, refused_with(TLS1_1_VERSION, NULL), RC_TLS_FAIL_refused));
	cr_assert(eq(int, refused_with(TLS1_VERSION, NULL), RC_TLS_FAIL_refused));
}

Test(tls, cbc_and_rsa_kx_suites_refused)
{
	cr_assert(eq(int, refused_with(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA"),
		     RC_TLS_FAIL_refused));
	cr_assert(eq(int, refused_with(TLS1_2_VERSION, "AES128-GCM-SHA256"),
		     RC_TLS_FAIL_refused));
}

Test(tls, garbage_is_garbage)
{
	static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct rc_tls_conn t;
	uint8_t buf[64];
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	rc_tls_conn_feed(&t, http, sizeof(http) - 1);
	cr_assert(eq(int, rc_tls_conn_read(&t, buf, sizeof(buf)), RC_TLS_FAILED));
	cr_assert(eq(int, t.failure, RC_TLS_FAIL_garbage));
	/* Failed stays failed, whatever comes next. */
	rc_tls_conn_feed(&t, http, sizeof(http) - 1);
	cr_assert(eq(int, rc_tls_conn_read(&t, buf, sizeof(buf)), RC_TLS_FAILED));
	rc_tls_conn_free(&t);
}

Test(tls, oversized_record_refused)
{
	static const uint8_t rec[] = {0x16, 0x03, 0x01, 0xff, 0xff, 0x01};
	struct rc_tls_conn t;
	uint8_t buf[64];
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	rc_tls_conn_feed(&t, rec, sizeof(rec));
	cr_assert(eq(int, rc_tls_conn_read(&t, buf, sizeof(buf)), RC_TLS_FAILED));
	cr_assert(eq(int, t.failure, RC_TLS_FAIL_oversized));
	rc_tls_conn_free(&t);
}

static X509 *peer_cert_for(const char *sni)
{
	struct client c;
	struct rc_tls_conn t;
	client_new(&c, TLS1_3_VERSION, NULL, sni);
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	cr_assert(eq(int, handshake(&c, &t, 0), RC_TLS_WANT));
	X509 *x = SSL_get_peer_certificate(c.ssl);
	rc_tls_conn_free(&t);
	client_free(&c);
	return x;
}

static bool names(X509 *x, const char *host)
{
	bool ok = X509_check_host(x, host, strlen(host), 0, NULL) == 1;
	X509_free(x);
	return ok;
}

Test(tls, sni_picks_the_matching_certificate)
{
	cr_assert(names(peer_cert_for("other.test"), "other.test"));
	cr_assert(names(peer_cert_for("localhost"), "localhost"));
	cr_assert(names(peer_cert_for("unknown.example"), "localhost"));
}

/* A full handshake whose ticket is kept, then resumption attempts with it after `rotations`
 * key rotations; returns whether the server resumed. */
static bool resumes_after(int rotations)
{
	struct client c;
	struct rc_tls_conn t;
	uint8_t got[64];
	size_t got_len = 0;
	client_new(&c, TLS1_3_VERSION, NULL, "localhost");
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	cr_assert(eq(int, handshake(&c, &t, 0), RC_TLS_WANT));
	uint8_t buf[16];
	/* BoringSSL sends the ticket with the server's first write. */
	cr_assert(eq(int, rc_tls_conn_write(&t, "x", 1), 0));
	pump(&c, &t, 0, got, &got_len);
	cr_assert(eq(int, SSL_read(c.ssl, buf, sizeof(buf)), 1));
	SSL_SESSION *sess = ticket_session;
	ticket_session = NULL;
	cr_assert(sess != NULL);
	cr_assert(SSL_SESSION_has_ticket(sess));
	rc_tls_conn_free(&t);
	client_free(&c);
	for (int i = 0; i < rotations; i++)
		cr_assert(eq(int, rc_tls_ticket_keys_rotate(&keys), 0));
	client_new(&c, TLS1_3_VERSION, NULL, "localhost");
	SSL_set_session(c.ssl, sess);
	cr_assert(eq(int, rc_tls_conn_init(&t, server_ctx), 0));
	cr_assert(eq(int, handshake(&c, &t, 0), RC_TLS_WANT));
	pump(&c, &t, 0, got, &got_len);
	bool resumed = rc_tls_conn_resumed(&t);
	cr_assert(eq(int, resumed, SSL_session_reused(c.ssl)));
	SSL_SESSION_free(sess);
	rc_tls_conn_free(&t);
	client_free(&c);
	return resumed;
}

Test(tls, ticket_resumes_across_one_rotation_not_two)
{
	cr_assert(resumes_after(0));
	cr_assert(resumes_after(1));
	cr_assert(not(resumes_after(2)));
}

Test(tls, failure_classification)
{
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_WRONG_VERSION_NUMBER)),
		     RC_TLS_FAIL_garbage));
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_HTTP_REQUEST)),
		     RC_TLS_FAIL_garbage));
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER)),
		     RC_TLS_FAIL_refused));
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_NO_RENEGOTIATION)),
		     RC_TLS_FAIL_renegotiation));
	cr_assert(eq(int,
		     rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_AD_REASON_OFFSET +
							     SSL_AD_HANDSHAKE_FAILURE)),
		     RC_TLS_FAIL_alert));
	cr_assert(eq(int,
		     rc_tls_failure_of(
			     ERR_PACK(ERR_LIB_SSL, SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC)),
		     RC_TLS_FAIL_bad_record));
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_RECORD_TOO_LARGE)),
		     RC_TLS_FAIL_oversized));
	cr_assert(eq(int, rc_tls_failure_of(ERR_PACK(ERR_LIB_SSL, SSL_R_UNEXPECTED_RECORD)),
		     RC_TLS_FAIL_protocol));
	cr_assert(eq(str, (char *)rc_tls_failure_name(RC_TLS_FAIL_incomplete), "incomplete"));
	cr_assert(eq(str, (char *)rc_tls_failure_name(RC_TLS_FAILURE_COUNT), "unknown"));
}
