/*
 * libFuzzer target for src/jwt.c. The first byte picks what the rest is:
 *   0: a token, verified against a secret and a JWKS key set without crashing or reading out
 *      of bounds; a token that verifies has rights that answer for its own patterns;
 *   1: claims text, signed here with HS256: the token is never refused for its signature or
 *      its header (the signature is a function of the text and the key);
 *   2: a JWKS document, loaded into a key set that is then cleared (no leak);
 *   3: a pattern and a topic split at the first NUL, matched.
 * Also linked into the corpus replay.
 */
#include <openssl/base64.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-secret";
/* RFC 7517 A.1's EC key. */
static const char jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"1\","
			   "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
			   "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}";

static struct rc_jwt_keyset keys;

static void verifier(struct rc_jwt_verifier *v)
{
	char err[256];
	if (!keys.count)
		RC_ASSERT(rc_jwt_keyset_add_jwks(&keys, jwks, strlen(jwks), err, sizeof(err)) == 0);
	*v = (struct rc_jwt_verifier){RC_JWT_ALGS_ALL, (const uint8_t *)secret, strlen(secret),
				      &keys, "", "", 1000, RC_JWT_BYTES_LIMIT};
}

static void check_rights(const struct rc_jwt_claims *c)
{
	const struct rc_jwt_rights *r = c->rights;
	const char *p = r->patterns;
	RC_ASSERT(strlen(r->sub) <= RC_JWT_SUB_BYTES_LIMIT);
	for (uint32_t i = 0; i < (uint32_t)r->subs_count + r->pubs_count; i++) {
		size_t n = strlen(p);
		RC_ASSERT(rc_jwt_pattern_valid(p, n));
		(void)rc_jwt_rights_allow(r, i >= r->subs_count, p, n);
		p += n + 1;
	}
	RC_ASSERT(p == r->patterns + r->len);
}

static void verify(const char *tok, size_t len, bool signed_here)
{
	struct rc_jwt_verifier v;
	struct rc_jwt_claims c;
	verifier(&v);
	enum rc_jwt_result r = rc_jwt_verify(&v, tok, len, 1700000000000ull, &c);
	if (signed_here)
		RC_ASSERT(r != RC_JWT_signature && r != RC_JWT_algorithm && r != RC_JWT_key);
	if (r != RC_JWT_ok)
		return;
	check_rights(&c);
	rc_jwt_rights_free(c.rights);
}

/* base64url of in into out (4/3 of len + 4 bytes); returns the length. */
static size_t b64url(const uint8_t *in, size_t len, char *out)
{
	size_t n = EVP_EncodeBlock((uint8_t *)out, in, len);
	while (n && out[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return n;
}

static void sign_and_verify(const uint8_t *claims, size_t len)
{
	static const char head[] = "{\"alg\":\"HS256\"}";
	char *tok = malloc(len * 4 / 3 + 128);
	uint8_t mac[32];
	unsigned mac_len;
	if (!tok)
		return;
	size_t n = b64url((const uint8_t *)head, strlen(head), tok);
	tok[n++] = '.';
	n += b64url(claims, len, tok + n);
	HMAC(EVP_sha256(), secret, strlen(secret), (const uint8_t *)tok, n, mac, &mac_len);
	tok[n++] = '.';
	n += b64url(mac, mac_len, tok + n);
	verify(tok, n, true);
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (size == 0 || size > RC_JWT_BYTES_LIMIT)
		return 0;
	uint8_t mode = data[0] % 4;
	const char *rest = (const char *)data + 1;
	size_t n = size - 1;
	char *copy = malloc(n + 1); /* exact size: ASan sees any read past the input */
	if (!copy)
		return 0;
	memcpy(copy, rest, n);
	copy[n] = '\0';
	if (mode == 0) {
		verify(copy, n, false);
	} else if (mode == 1) {
		sign_and_verify((const uint8_t *)copy, n);
	} else if (mode == 2) {
		struct rc_jwt_keyset ks = {0};
		(void)rc_jwt_keyset_add_jwks(&ks, copy, n, err, sizeof(err));
		rc_jwt_keyset_clear(&ks);
	} else {
		size_t plen = strlen(copy);
		const char *topic = plen < n ? copy + plen + 1 : "";
		if (rc_jwt_pattern_valid(copy, plen))
			(void)rc_jwt_pattern_match(copy, topic, strlen(topic));
	}
	free(copy);
	return 0;
}
