/* Access tokens: signing and verification, expiry, tampering and malformed input. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <string.h>

#include "auth.h"

static const uint8_t key[] = "s3cret";
#define KEY_LEN (sizeof(key) - 1)
#define NOW 1700000000u

static size_t sign(const char *claims, char *out, size_t cap)
{
	return rc_auth_sign(claims, strlen(claims), key, KEY_LEN, out, cap);
}

static int verify(const char *tok, struct rc_auth_claims *c)
{
	const char *reason = NULL;
	int rc = rc_auth_verify(tok, strlen(tok), key, KEY_LEN, NOW, c, &reason);
	if (rc)
		cr_assert(not(eq(ptr, (void *)reason, NULL)));
	return rc;
}

Test(auth, round_trip_with_claims)
{
	char tok[256];
	struct rc_auth_claims c;
	cr_assert(gt(sz, sign("{\"exp\":1800000000,\"pub\":true,\"sub\":\"u-42\"}", tok, 256), 0));
	cr_assert(eq(int, verify(tok, &c), 0));
	cr_assert(eq(u64, c.exp, 1800000000));
	cr_assert(c.may_publish);
	cr_assert(eq(str, c.sub, "u-42"));
}

Test(auth, publish_defaults_to_false)
{
	char tok[256];
	struct rc_auth_claims c;
	sign("{\"exp\":1800000000}", tok, sizeof(tok));
	cr_assert(eq(int, verify(tok, &c), 0));
	cr_assert(not(c.may_publish));
	cr_assert(eq(str, c.sub, ""));
}

Test(auth, known_vector_from_mint_token_py)
{
	/* tools/mint-token.py s3cret with exp 1800000000, pub true (Python's hmac module). */
	const char *tok = "eyJleHAiOjE4MDAwMDAwMDAsInB1YiI6dHJ1ZX0."
			  "RUB3tQYJszuOM71qYv3IRHTxQ5CBwcEm1KluJrolMO0";
	struct rc_auth_claims c;
	char mine[256];
	sign("{\"exp\":1800000000,\"pub\":true}", mine, sizeof(mine));
	cr_assert(eq(str, mine, (char *)tok));
	cr_assert(eq(int, verify(tok, &c), 0));
}

Test(auth, expired_token_is_refused)
{
	char tok[256];
	struct rc_auth_claims c;
	sign("{\"exp\":1700000000}", tok, sizeof(tok)); /* exp == now */
	cr_assert(eq(int, verify(tok, &c), -ETIMEDOUT));
}

Test(auth, tampered_claims_or_signature_are_refused)
{
	char tok[256];
	struct rc_auth_claims c;
	size_t n = sign("{\"exp\":1800000000,\"pub\":false}", tok, sizeof(tok));
	for (size_t i = 0; i < n; i++) {
		if (tok[i] == '.')
			continue;
		char save = tok[i];
		tok[i] = save == 'A' ? 'B' : 'A';
		cr_assert(not(eq(int, verify(tok, &c), 0)), "flip at %zu accepted", i);
		tok[i] = save;
	}
	cr_assert(eq(int, verify(tok, &c), 0));
}

Test(auth, other_key_is_refused)
{
	char tok[256];
	struct rc_auth_claims c;
	const char *reason;
	sign("{\"exp\":1800000000}", tok, sizeof(tok));
	cr_assert(eq(int, rc_auth_verify(tok, strlen(tok), (const uint8_t *)"other", 5, NOW, &c,
					 &reason),
		     -EPERM));
}

Test(auth, malformed_tokens_are_refused)
{
	struct rc_auth_claims c;
	const char *bad[] = {"", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???",
			     "eyJleHAiOjF9.AAAA", "eyJleHAiOjF9==.xx", "a+b.c/d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, verify(bad[i], &c), -EINVAL), "accepted '%s'", bad[i]);
}

Test(auth, bad_claims_are_refused_even_when_signed)
{
	const char *claims[] = {"[]", "{}", "{\"exp\":\"soon\"}", "{\"exp\":1800000000.5}",
				"{\"exp\":-1}", "{\"exp\":1800000000,\"pub\":1}", "not json",
				("{\"exp\":1800000000,\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}")};
	for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
		char tok[512];
		struct rc_auth_claims c;
		cr_assert(gt(sz, sign(claims[i], tok, sizeof(tok)), 0));
		cr_assert(eq(int, verify(tok, &c), -EINVAL), "accepted claims %s", claims[i]);
	}
}

Test(auth, oversized_token_is_refused)
{
	static char tok[RC_AUTH_TOKEN_BYTES_LIMIT + 10];
	struct rc_auth_claims c;
	memset(tok, 'A', sizeof(tok) - 1);
	tok[100] = '.';
	cr_assert(eq(int, verify(tok, &c), -EINVAL));
}
