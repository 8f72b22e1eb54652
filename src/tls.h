/*
 * TLS termination with BoringSSL, sans I/O: building server contexts from PEM bytes (TLS 1.2
 * and 1.3 only, AEAD suites only, ALPN http/1.1, SNI among several certificates, stateless
 * session tickets under rotating keys), and one connection's engine driven through a custom
 * BIO: ciphertext is fed in from a borrowed buffer (the receive buffer, no copy), plaintext
 * comes out into the caller's buffer, and what BoringSSL writes (handshake flights, records,
 * alerts) is appended to the connection's own output buffer, which exists only while it
 * holds bytes. No socket, no clock, no thread of its own: the runtime (shards/tls.c) moves
 * the bytes. Reading files is the caller's job. Contexts and ticket keys are shared by every
 * shard (BoringSSL locks what it changes in a context; the keys are published atomically);
 * an engine belongs to one thread.
 */
#ifndef RC_TLS_H
#define RC_TLS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* Plaintext per record (RFC 8446 §5.1): what one write call encrypts at most. */
#define RC_TLS_RECORD_PLAIN_LIMIT 16384u
/* Certificates a context may serve by SNI besides its default one. */
#define RC_TLS_SNI_LIMIT 32

/* X(name, help): why a TLS connection failed; the label of ringcast_tls_failures_total. */
#define RC_TLS_FAILURES(X)                                                                         \
	X(garbage, "bytes that are no TLS record (plain HTTP on the TLS port, noise)")             \
	X(refused, "TLS 1.0/1.1, or no shared AEAD suite or group")                                \
	X(oversized, "a record or handshake message over the TLS limits")                          \
	X(bad_record, "a record that failed decryption or authentication")                         \
	X(renegotiation, "a renegotiation attempt (never supported)")                              \
	X(alert, "a fatal alert from the peer, during the handshake or mid-message")               \
	X(incomplete, "the peer stopped halfway through the handshake (EOF or timeout)")           \
	X(protocol, "any other violation of the TLS protocol")                                     \
	X(memory, "no memory for TLS state or buffers")

enum rc_tls_failure {
#define RC_X(name, help) RC_TLS_FAIL_##name,
	RC_TLS_FAILURES(RC_X)
#undef RC_X
		RC_TLS_FAILURE_COUNT,
};

/* The label of f ("garbage", ...); "unknown" out of range. Returns a string literal. */
const char *rc_tls_failure_name(enum rc_tls_failure f);

/* Which failure a BoringSSL error (ERR_get_error's packed code) is. Pure. */
enum rc_tls_failure rc_tls_failure_of(uint32_t err);

/*
 * Session ticket keys: slots written ahead of the index that names the current one, so that
 * a reader on any shard never sees a key being written (a slot is rewritten three rotations
 * after it stopped being current or previous). Tickets of the current key resume; those of
 * the previous one resume and are renewed.
 */
#define RC_TLS_TICKET_SLOTS 4
struct rc_tls_ticket_key {
	uint8_t name[16];
	uint8_t hmac[32];
	uint8_t aes[32];
};

struct rc_tls_ticket_keys {
	struct rc_tls_ticket_key slot[RC_TLS_TICKET_SLOTS];
	/* Rotations so far; slot[current % SLOTS] encrypts. Written by one thread (the one that
	 * rotates) with release order, read with acquire order by the ticket callback. */
	_Atomic uint32_t current;
};

/* Fills every slot with fresh random keys. 0 or -EIO (no randomness). One thread. */
int rc_tls_ticket_keys_init(struct rc_tls_ticket_keys *k);

/* Makes a fresh key current; the old current one still decrypts. 0 or -EIO. Only one
 * thread may rotate (the others read concurrently). */
int rc_tls_ticket_keys_rotate(struct rc_tls_ticket_keys *k);

/* One certificate: PEM bytes of its chain (leaf first) and of its key, borrowed. */
struct rc_tls_pem {
	const char *cert;
	size_t cert_len;
	const char *key;
	size_t key_len;
};

/*
 * A server context serving pems[0] by default and pems[1..count) to clients whose SNI name one
 * of their certificates lists. keys (borrowed; must outlive every context made with it) signs
 * session tickets, or NULL for no tickets; ticket_lifetime_s is their lifetime hint. Returns
 * the context (the caller owns one reference: SSL_CTX_free), or NULL with err set naming the
 * certificate. Any thread; contexts are immutable once made.
 */
SSL_CTX *rc_tls_ctx_new(const struct rc_tls_pem *pems, size_t count,
			struct rc_tls_ticket_keys *keys, uint32_t ticket_lifetime_s, char *err,
			size_t err_len);

/* One connection's TLS state. Owned by its runtime record; one thread at a time. */
struct rc_tls_conn {
	SSL *ssl;
	const uint8_t *in; /* ciphertext being fed, borrowed for one rc_tls_conn_read round */
	size_t in_len;
	uint8_t *out;	   /* ciphertext for the peer; NULL when empty (idle: none) */
	uint32_t out_len;  /* bytes written to out */
	uint32_t out_cap;  /* allocated bytes of out */
	bool out_failed;   /* out could not grow: the connection must end */
	bool established;  /* the handshake completed */
	bool notified;	   /* our close_notify is written */
	bool failed;	   /* a fatal error: nothing more is read or written */
	uint8_t failure;   /* enum rc_tls_failure, if failed */
};

/* Results of rc_tls_conn_read besides a positive count of plaintext bytes. */
#define RC_TLS_WANT 0	    /* every byte fed is consumed; more ciphertext is needed */
#define RC_TLS_CLOSED (-1)  /* the peer sent close_notify */
#define RC_TLS_FAILED (-2)  /* fatal: t->failure says why; out may hold an alert to send */

/* Sets up t as a server connection of ctx (a reference is taken). 0 or -ENOMEM. */
int rc_tls_conn_init(struct rc_tls_conn *t, SSL_CTX *ctx);

/* Frees everything t holds, out included. t may be zeroed or already freed. */
void rc_tls_conn_free(struct rc_tls_conn *t);

/* Feeds in[0..n) (borrowed until rc_tls_conn_read returns RC_TLS_WANT or fails). */
void rc_tls_conn_feed(struct rc_tls_conn *t, const uint8_t *in, size_t n);

/*
 * Runs the handshake while it lasts, then decrypts: returns plaintext bytes written to
 * buf[0..cap) (call again for more), RC_TLS_WANT once everything fed is consumed, RC_TLS_CLOSED
 * or RC_TLS_FAILED. Output for the peer (flights, tickets, alerts) accumulates in t->out.
 */
int rc_tls_conn_read(struct rc_tls_conn *t, uint8_t *buf, size_t cap);

/* Encrypts p[0..n) (n <= RC_TLS_RECORD_PLAIN_LIMIT, borrowed) into t->out. Established
 * connections only. 0, or -ENOMEM / -EPROTO (then t->failed). */
int rc_tls_conn_write(struct rc_tls_conn *t, const void *p, size_t n);

/*
 * Hands t->out over to the caller (who frees it with free() once sent) and starts a new one,
 * so that BoringSSL never writes into bytes a send still reads. Returns NULL if out is empty;
 * *len and *cap get its length and allocated size.
 */
uint8_t *rc_tls_conn_take_out(struct rc_tls_conn *t, uint32_t *len, uint32_t *cap);

/* Writes our close_notify alert into t->out, once, on an established connection that did not
 * fail. Returns whether it did. */
bool rc_tls_conn_close_notify(struct rc_tls_conn *t);

/* Whether the handshake resumed a session (a ticket). */
bool rc_tls_conn_resumed(const struct rc_tls_conn *t);

#endif
