/*
 * libFuzzer target for src/tls.c: what a client sends to the TLS port, fed to a server engine
 * in chunks (the first input byte picks their size, as in utf8_fuzz.c). Whatever the bytes,
 * the engine must end in one of its results, classify a failure, keep its output buffer
 * consistent and free everything (LSan). Also linked without libFuzzer into the corpus
 * replay (tests/fuzz/replay/replay_main.c).
 */
#include <stdint.h>
#include <stdlib.h>

#include "base/rc_assert.h"
#include "tls.h"
#include "tls_test_pem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *server_ctx(void)
{
	static SSL_CTX *ctx;
	static struct rc_tls_ticket_keys keys;
	if (ctx)
		return ctx;
	struct rc_tls_pem pem = {test_cert_pem, sizeof(test_cert_pem) - 1, test_key_pem,
				 sizeof(test_key_pem) - 1};
	char err[160];
	RC_ASSERT(rc_tls_ticket_keys_init(&keys) == 0);
	ctx = rc_tls_ctx_new(&pem, 1, &keys, 3600, err, sizeof(err));
	RC_ASSERT(ctx != NULL);
	return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t plain[RC_TLS_RECORD_PLAIN_LIMIT];
	struct rc_tls_conn t;
	if (size < 1)
		return 0;
	size_t chunk = data[0] ? data[0] : size;
	RC_ASSERT(rc_tls_conn_init(&t, server_ctx()) == 0);
	int r = RC_TLS_WANT;
	for (size_t off = 1; off < size && r >= 0;) {
		size_t k = size - off < chunk ? size - off : chunk;
		rc_tls_conn_feed(&t, data + off, k);
		off += k;
		while ((r = rc_tls_conn_read(&t, plain, sizeof(plain))) > 0)
			RC_ASSERT((size_t)r <= sizeof(plain));
		RC_ASSERT(r == RC_TLS_WANT || r == RC_TLS_CLOSED || r == RC_TLS_FAILED);
		RC_ASSERT(t.out_len <= t.out_cap);
		if (r == RC_TLS_FAILED)
			RC_ASSERT(t.failed && t.failure < RC_TLS_FAILURE_COUNT);
	}
	uint32_t len, cap;
	free(rc_tls_conn_take_out(&t, &len, &cap));
	RC_ASSERT(t.out == NULL && t.out_len == 0);
	rc_tls_conn_free(&t);
	return 0;
}
