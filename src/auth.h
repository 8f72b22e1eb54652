/*
 * Signed access tokens, sans I/O: "<claims>.<signature>", both base64url without padding,
 * where claims is a JSON object ({"sub":"user-42","exp":1767225600,"pub":true}) and signature
 * is HMAC-SHA256(secret, claims as sent) from BoringSSL. A backend mints tokens with the
 * shared secret (tools/mint-token.py does it in a few lines); the gateway verifies them in
 * the handshake and on POST /publish without any lookup. Time comes in as now_s (Unix
 * seconds). Pure; any thread.
 */
#ifndef RC_AUTH_H
#define RC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_AUTH_TOKEN_BYTES_LIMIT 1024
#define RC_AUTH_SUBJECT_BYTES_LIMIT 64

/* What a valid token grants. */
struct rc_auth_claims {
	uint64_t exp;       /* Unix seconds; the token is refused from then on */
	bool may_publish;   /* "pub": true */
	char sub[RC_AUTH_SUBJECT_BYTES_LIMIT + 1]; /* optional subject, "" if none */
};

/*
 * Verifies token[0..len) (borrowed) against key[0..key_len) at time now_s. Returns 0 and
 * fills *out when the signature matches (constant-time comparison) and exp is in the future;
 * otherwise -EINVAL (malformed: not two base64url parts, not a JSON object, exp missing or not
 * an integer, oversized), -EPERM (bad signature) or -ETIMEDOUT (expired), with *reason set
 * to a string literal.
 */
int rc_auth_verify(const char *token, size_t len, const uint8_t *key, size_t key_len,
		   uint64_t now_s, struct rc_auth_claims *out, const char **reason);

/*
 * Writes a token for claims_json (a JSON object, borrowed) signed with key into out and
 * returns its length, or 0 if cap is too small. For tests and tools.
 */
size_t rc_auth_sign(const char *claims_json, size_t len, const uint8_t *key, size_t key_len,
		    char *out, size_t cap);

#endif
