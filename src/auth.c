/*
 * Access tokens (see auth.h): base64url codec, HMAC-SHA256 through BoringSSL, claims through
 * cJSON. Pure; any thread.
 */
#include "auth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <openssl/base64.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

#define RC_AUTH_MAC_BYTES 32

/* base64url without padding -> bytes; returns the length or -1. */
static long b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	char buf[RC_AUTH_TOKEN_BYTES_LIMIT + 4];
	size_t n = 0, out_len = 0;
	if (len > RC_AUTH_TOKEN_BYTES_LIMIT || len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		if (ch == '-')
			ch = '+';
		else if (ch == '_')
			ch = '/';
		else if (ch == '+' || ch == '/' || ch == '=')
			return -1; /* only the URL-safe alphabet, unpadded */
		buf[n++] = ch;
	}
	while (n % 4)
		buf[n++] = '=';
	size_t need;
	if (!EVP_DecodedLength(&need, n) || need > cap)
		return -1;
	if (!EVP_DecodeBase64(out, &out_len, cap, (const uint8_t *)buf, n))
		return -1;
	return (long)out_len;
}

/* bytes -> base64url without padding; returns the length or 0 if cap is too small. */
static size_t b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t need = (len + 2) / 3 * 4 + 1;
	if (need > cap)
		return 0;
	size_t n = EVP_EncodeBlock((uint8_t *)out, in, len);
	while (n && out[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	out[n] = '\0';
	return n;
}

static int claims_parse(const char *json, size_t len, struct rc_auth_claims *out,
			const char **reason)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	int rc = -EINVAL;
	*reason = "token claims are not a JSON object";
	if (!root || !cJSON_IsObject(root))
		goto out;
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "exp");
	const cJSON *pub = cJSON_GetObjectItemCaseSensitive(root, "pub");
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "sub");
	*reason = "token claims need an integer exp (Unix seconds)";
	if (!cJSON_IsNumber(exp) || exp->valuedouble < 0 || exp->valuedouble > 1e15 ||
	    floor(exp->valuedouble) != exp->valuedouble)
		goto out;
	*reason = "token claims: pub must be a boolean, sub a short string";
	if ((pub && !cJSON_IsBool(pub)) || (sub && (!cJSON_IsString(sub) ||
						   strlen(sub->valuestring) >
							   RC_AUTH_SUBJECT_BYTES_LIMIT)))
		goto out;
	memset(out, 0, sizeof(*out));
	out->exp = (uint64_t)exp->valuedouble;
	out->may_publish = cJSON_IsTrue(pub);
	if (sub)
		strcpy(out->sub, sub->valuestring);
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

int rc_auth_verify(const char *token, size_t len, const uint8_t *key, size_t key_len,
		   uint64_t now_s, struct rc_auth_claims *out, const char **reason)
{
	uint8_t mac[RC_AUTH_MAC_BYTES], given[RC_AUTH_MAC_BYTES + 3];
	uint8_t claims[RC_AUTH_TOKEN_BYTES_LIMIT];
	unsigned mac_len = 0;

	RC_ASSERT(key != NULL && out != NULL);
	*reason = "malformed token";
	const char *dot = len <= RC_AUTH_TOKEN_BYTES_LIMIT ? memchr(token, '.', len) : NULL;
	if (!dot || dot == token)
		return -EINVAL;
	size_t clen = (size_t)(dot - token);
	long n = b64url_decode(token, clen, claims, sizeof(claims));
	long g = b64url_decode(dot + 1, len - clen - 1, given, sizeof(given));
	if (n <= 0 || g != RC_AUTH_MAC_BYTES)
		return -EINVAL;
	/* The signature covers the claims as sent (their base64url text). */
	HMAC(EVP_sha256(), key, key_len, (const uint8_t *)token, clen, mac, &mac_len);
	RC_ASSERT(mac_len == RC_AUTH_MAC_BYTES);
	if (CRYPTO_memcmp(mac, given, RC_AUTH_MAC_BYTES) != 0) {
		*reason = "bad token signature";
		return -EPERM;
	}
	int rc = claims_parse((const char *)claims, (size_t)n, out, reason);
	if (rc)
		return rc;
	if (out->exp <= now_s) {
		*reason = "token expired";
		return -ETIMEDOUT;
	}
	return 0;
}

size_t rc_auth_sign(const char *claims_json, size_t len, const uint8_t *key, size_t key_len,
		    char *out, size_t cap)
{
	uint8_t mac[RC_AUTH_MAC_BYTES];
	unsigned mac_len = 0;
	size_t n = b64url_encode((const uint8_t *)claims_json, len, out, cap);
	if (!n || n + 2 >= cap)
		return 0;
	HMAC(EVP_sha256(), key, key_len, (const uint8_t *)out, n, mac, &mac_len);
	out[n] = '.';
	size_t m = b64url_encode(mac, mac_len, out + n + 1, cap - n - 1);
	return m ? n + 1 + m : 0;
}
