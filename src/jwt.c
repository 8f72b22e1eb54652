/*
 * JSON Web Tokens (see jwt.h): a strict base64url codec, the header and claims through cJSON,
 * HMAC, RSA PKCS#1 v1.5 and ECDSA P-256 through BoringSSL, key sets from PEM and JWKS text,
 * and the topic patterns of rights. Pure; any thread (a built key set is only read).
 */
#include "jwt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "envelope.h" /* rc_topic_name_valid */

#define HEADER_BYTES_LIMIT 1024 /* a decoded JOSE header */
#define SIG_BYTES_LIMIT 1024    /* RSA up to 8192 bits */
#define NUMERIC_DATE_LIMIT 1e13 /* seconds; exp in ms still fits in 64 bits */

static const char *const alg_names[RC_JWT_ALG_COUNT] = {"HS256", "HS384", "HS512", "RS256",
							  "ES256"};

#define NAME_OF(name, help) #name,
static const char *const result_names[] = {RC_JWT_RESULTS(NAME_OF)};
#undef NAME_OF
#define REASON_OF(name, help) "access token refused: " help,
static const char *const result_reasons[] = {RC_JWT_RESULTS(REASON_OF)};
#undef REASON_OF
RC_STATIC_ASSERT(RC_ARRAY_LEN(result_names) == RC_JWT_RESULT_COUNT, "a name per result");

const char *rc_jwt_result_name(enum rc_jwt_result r)
{
	return (unsigned)r < RC_JWT_RESULT_COUNT ? result_names[r] : "unknown";
}

const char *rc_jwt_result_reason(enum rc_jwt_result r)
{
	return (unsigned)r < RC_JWT_RESULT_COUNT ? result_reasons[r] : "access token refused";
}

const char *rc_jwt_alg_name(enum rc_jwt_alg alg)
{
	RC_ASSERT((unsigned)alg < RC_JWT_ALG_COUNT);
	return alg_names[alg];
}

/* The algorithm named name[0..len), or -1. */
static int alg_of(const char *name, size_t len)
{
	for (int i = 0; i < RC_JWT_ALG_COUNT; i++)
		if (strlen(alg_names[i]) == len && memcmp(alg_names[i], name, len) == 0)
			return i;
	return -1;
}

int rc_jwt_algs_parse(const char *list, uint32_t *algs, char *err, size_t err_len)
{
	uint32_t set = 0;
	const char *p = list;
	while (*p) {
		size_t n = strcspn(p, ",");
		const char *s = p, *e = p + n;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		int a = alg_of(s, (size_t)(e - s));
		if (e > s && a < 0) {
			snprintf(err, err_len, "token_algorithms: '%.*s' is not one of HS256, HS384, "
				 "HS512, RS256, ES256", (int)(e - s), s);
			return -EINVAL;
		}
		if (a >= 0)
			set |= 1u << a;
		p += n + (p[n] == ',');
	}
	RC_ASSERT((set & ~RC_JWT_ALGS_ALL) == 0);
	*algs = set;
	return 0;
}

/* ---- base64url (RFC 4648 §5), strict: no padding, no other alphabet, no stray bits ------- */
static int b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	return ch == '_' ? 63 : -1;
}

/* in[0..len) decoded into out (cap bytes); the length, or -1 if malformed or too long. */
static long b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	/* The bits past the last byte must be zero: one encoding per value. */
	if (acc & ((1u << bits) - 1))
		return -1;
	RC_ASSERT(n <= cap);
	return (long)n;
}

/* ---- patterns and rights ------------------------------------------------------------------ */
/* Topic segments are separated by '.', ':' or '/'. */
static bool is_sep(char c)
{
	return c == '.' || c == ':' || c == '/';
}

/* The first separator in p[0..len), or p + len. */
static const char *next_sep(const char *p, size_t len)
{
	while (len && !is_sep(*p)) {
		p++;
		len--;
	}
	return p;
}

bool rc_jwt_pattern_valid(const char *pattern, size_t len)
{
	char name[RC_TOPIC_BYTES_LIMIT + 1];
	if (len == 0 || len > RC_TOPIC_BYTES_LIMIT || memchr(pattern, '\0', len))
		return false;
	/* Wildcard segments stand for a valid name; anything else must be one. */
	for (size_t i = 0, seg = 0; i <= len; i++) {
		if (i < len && !is_sep(pattern[i])) {
			name[i] = pattern[i];
			continue;
		}
		bool star = i - seg == 1 && pattern[seg] == '*';
		bool rest = i - seg == 1 && pattern[seg] == '>';
		if (rest && i != len)
			return false;
		if (star || rest)
			name[seg] = 'x';
		if (i < len)
			name[i] = pattern[i];
		seg = i + 1;
	}
	return rc_topic_name_valid(name, len);
}

bool rc_jwt_pattern_match(const char *p, const char *topic, size_t len)
{
	const char *t = topic, *end = topic + len, *pend = p + strlen(p);
	RC_ASSERT(p != NULL);
	for (;;) {
		const char *pe = next_sep(p, (size_t)(pend - p));
		const char *te = next_sep(t, (size_t)(end - t));
		size_t plen = (size_t)(pe - p), tlen = (size_t)(te - t);
		if (pe == pend && plen == 1 && *p == '>')
			return true; /* this topic segment and whatever follows */
		bool star = plen == 1 && *p == '*';
		if (!star && (plen != tlen || memcmp(p, t, plen) != 0))
			return false;
		if (pe == pend || te == end)
			return pe == pend && te == end;
		if (*pe != *te)
			return false; /* "a.b" is not "a:b" */
		p = pe + 1;
		t = te + 1;
	}
}

bool rc_jwt_rights_allow(const struct rc_jwt_rights *r, bool publish, const char *topic,
			 size_t len)
{
	if (!publish && (!r || !r->has_subs))
		return true;
	if (!r)
		return false;
	const char *p = r->patterns;
	for (uint32_t i = 0; i < (uint32_t)r->subs_count + r->pubs_count; i++) {
		RC_DASSERT(p < r->patterns + r->len);
		if ((i >= r->subs_count) == publish && rc_jwt_pattern_match(p, topic, len))
			return true;
		p += strlen(p) + 1;
	}
	return false;
}

const char *rc_jwt_rights_info(const struct rc_jwt_rights *r, size_t *len)
{
	*len = r ? r->info_len : 0;
	return *len ? r->patterns + r->len : NULL;
}

void rc_jwt_rights_free(struct rc_jwt_rights *rights)
{
	free(rights);
}

/* ---- keys --------------------------------------------------------------------------------- */
/* The algorithm pkey serves (RS256 for RSA of enough bits, ES256 for P-256), or -1. */
static int pkey_alg(const EVP_PKEY *pkey)
{
	if (EVP_PKEY_id(pkey) == EVP_PKEY_RSA)
		return EVP_PKEY_bits(pkey) >= RC_JWT_RSA_BITS_MIN ? RC_JWT_RS256 : -1;
	if (EVP_PKEY_id(pkey) != EVP_PKEY_EC)
		return -1;
	const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pkey));
	return g && EC_GROUP_get_curve_name(g) == NID_X9_62_prime256v1 ? RC_JWT_ES256 : -1;
}

/* Adds pkey (taking ownership, freed on failure) under kid. */
static int keyset_add(struct rc_jwt_keyset *ks, EVP_PKEY *pkey, const char *kid, char *err,
		      size_t err_len)
{
	int alg = pkey ? pkey_alg(pkey) : -1;
	int rc = -EINVAL;
	if (alg < 0) {
		snprintf(err, err_len, "key '%s': not an RSA key of %d+ bits nor an EC P-256 key",
			 kid, RC_JWT_RSA_BITS_MIN);
	} else if (ks->count == RC_JWT_KEYS_LIMIT) {
		snprintf(err, err_len, "more than %d keys", RC_JWT_KEYS_LIMIT);
		rc = -E2BIG;
	} else if (strlen(kid) > RC_JWT_KID_BYTES_LIMIT) {
		snprintf(err, err_len, "kid '%.16s...' is longer than %d bytes", kid,
			 RC_JWT_KID_BYTES_LIMIT);
	} else {
		rc = 0;
	}
	for (uint32_t i = 0; rc == 0 && i < ks->count; i++) {
		if (strcmp(ks->keys[i].kid, kid) == 0) {
			snprintf(err, err_len, "kid '%s' appears twice", kid);
			rc = -EINVAL;
		}
	}
	if (rc) {
		EVP_PKEY_free(pkey);
		return rc;
	}
	struct rc_jwt_key *k = &ks->keys[ks->count++];
	strcpy(k->kid, kid);
	k->alg = (enum rc_jwt_alg)alg;
	k->pkey = pkey;
	return 0;
}

int rc_jwt_keyset_add_pem(struct rc_jwt_keyset *ks, const char *pem, size_t len, const char *kid,
			  char *err, size_t err_len)
{
	RC_ASSERT(ks != NULL && kid != NULL);
	if (len > INT32_MAX) {
		snprintf(err, err_len, "PEM text too long");
		return -EINVAL;
	}
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey) {
		snprintf(err, err_len, "no PEM public key (-----BEGIN PUBLIC KEY-----) found");
		return -EINVAL;
	}
	return keyset_add(ks, pkey, kid, err, err_len);
}

/* The big-endian number in the base64url string member name of obj, or NULL. */
static BIGNUM *jwk_number(const cJSON *obj, const char *name, size_t len_max)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);
	uint8_t buf[SIG_BYTES_LIMIT];
	if (!cJSON_IsString(m) || len_max > sizeof(buf))
		return NULL;
	long n = b64url_decode(m->valuestring, strlen(m->valuestring), buf, len_max);
	return n > 0 ? BN_bin2bn(buf, (size_t)n, NULL) : NULL;
}

static EVP_PKEY *jwk_rsa(const cJSON *jwk)
{
	BIGNUM *n = jwk_number(jwk, "n", SIG_BYTES_LIMIT), *e = jwk_number(jwk, "e", 8);
	RSA *rsa = RSA_new();
	EVP_PKEY *pkey = EVP_PKEY_new();
	if (n && e && rsa && pkey && RSA_set0_key(rsa, n, e, NULL)) {
		n = e = NULL; /* rsa owns them now */
		if (EVP_PKEY_assign_RSA(pkey, rsa))
			return pkey;
	}
	BN_free(n);
	BN_free(e);
	RSA_free(rsa);
	EVP_PKEY_free(pkey);
	return NULL;
}

static EVP_PKEY *jwk_ec(const cJSON *jwk)
{
	const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
	if (!cJSON_IsString(crv) || strcmp(crv->valuestring, "P-256") != 0)
		return NULL;
	BIGNUM *x = jwk_number(jwk, "x", 32), *y = jwk_number(jwk, "y", 32);
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	EVP_PKEY *pkey = EVP_PKEY_new();
	bool ok = x && y && ec && pkey && EC_KEY_set_public_key_affine_coordinates(ec, x, y) &&
		  EVP_PKEY_assign_EC_KEY(pkey, ec);
	BN_free(x);
	BN_free(y);
	if (ok)
		return pkey;
	EC_KEY_free(ec);
	EVP_PKEY_free(pkey);
	return NULL;
}

/* One member of "keys": 0 added, 1 skipped (not a signing key we know), or -errno. */
static int jwk_add(struct rc_jwt_keyset *ks, const cJSON *jwk, char *err, size_t err_len)
{
	const cJSON *kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
	const cJSON *kid = cJSON_GetObjectItemCaseSensitive(jwk, "kid");
	const cJSON *use = cJSON_GetObjectItemCaseSensitive(jwk, "use");
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(jwk, "alg");
	if (!cJSON_IsObject(jwk) || !cJSON_IsString(kty)) {
		snprintf(err, err_len, "JWKS: a key is not an object with a kty");
		return -EINVAL;
	}
	bool rsa = strcmp(kty->valuestring, "RSA") == 0, ec = strcmp(kty->valuestring, "EC") == 0;
	if ((!rsa && !ec) || (cJSON_IsString(use) && strcmp(use->valuestring, "sig") != 0))
		return 1;
	if (!cJSON_IsString(kid) || !kid->valuestring[0]) {
		snprintf(err, err_len, "JWKS: every key needs a kid");
		return -EINVAL;
	}
	if (cJSON_IsString(alg) && strcmp(alg->valuestring, rsa ? "RS256" : "ES256") != 0)
		return 1; /* e.g. an RS512 key: never used to verify */
	EVP_PKEY *pkey = rsa ? jwk_rsa(jwk) : jwk_ec(jwk);
	if (!pkey) {
		snprintf(err, err_len, "JWKS: key '%.64s': malformed %s parameters", kid->valuestring,
			 kty->valuestring);
		return -EINVAL;
	}
	return keyset_add(ks, pkey, kid->valuestring, err, err_len);
}

int rc_jwt_keyset_add_jwks(struct rc_jwt_keyset *ks, const char *json, size_t len, char *err,
			   size_t err_len)
{
	RC_ASSERT(ks != NULL);
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys"), *jwk;
	int rc = 0, added = 0;
	if (!cJSON_IsObject(root) || !cJSON_IsArray(keys)) {
		snprintf(err, err_len, "JWKS: not a JSON object with a \"keys\" array");
		rc = -EINVAL;
		goto out;
	}
	cJSON_ArrayForEach(jwk, keys)
	{
		int r = jwk_add(ks, jwk, err, err_len);
		if (r < 0) {
			rc = r;
			goto out;
		}
		added += r == 0;
	}
	if (!added) {
		snprintf(err, err_len, "JWKS: no RS256 or ES256 signing key");
		rc = -EINVAL;
	}
out:
	cJSON_Delete(root);
	return rc;
}

void rc_jwt_keyset_clear(struct rc_jwt_keyset *ks)
{
	for (uint32_t i = 0; i < ks->count; i++) {
		EVP_PKEY_free(ks->keys[i].pkey);
		ks->keys[i].pkey = NULL;
	}
	ks->count = 0;
}

/* ---- verification ------------------------------------------------------------------------- */
/* What the JOSE header says. */
struct header {
	enum rc_jwt_alg alg;
	char kid[RC_JWT_KID_BYTES_LIMIT + 1]; /* "" if none */
};

static enum rc_jwt_result header_parse(const struct rc_jwt_verifier *v, const char *in,
				       size_t len, struct header *h)
{
	uint8_t buf[HEADER_BYTES_LIMIT];
	long n = b64url_decode(in, len, buf, sizeof(buf));
	cJSON *root = n > 0 ? cJSON_ParseWithLength((const char *)buf, (size_t)n) : NULL;
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(root, "alg");
	const cJSON *kid = cJSON_GetObjectItemCaseSensitive(root, "kid");
	enum rc_jwt_result r = RC_JWT_malformed;
	/* No extension is understood, so a critical one refuses the token (RFC 7515 §4.1.11). */
	if (!cJSON_IsObject(root) || !cJSON_IsString(alg) ||
	    cJSON_GetObjectItemCaseSensitive(root, "crit") ||
	    (kid && (!cJSON_IsString(kid) || strlen(kid->valuestring) > RC_JWT_KID_BYTES_LIMIT)))
		goto out;
	r = RC_JWT_algorithm;
	int a = alg_of(alg->valuestring, strlen(alg->valuestring));
	if (a < 0 || !(v->algs & (1u << a)))
		goto out; /* "none" among them */
	h->alg = (enum rc_jwt_alg)a;
	snprintf(h->kid, sizeof(h->kid), "%s", kid ? kid->valuestring : "");
	r = RC_JWT_ok;
out:
	cJSON_Delete(root);
	return r;
}

static enum rc_jwt_result hmac_check(const struct rc_jwt_verifier *v, enum rc_jwt_alg alg,
				     const char *input, size_t len, const uint8_t *sig,
				     size_t sig_len)
{
	const EVP_MD *md = alg == RC_JWT_HS256 ? EVP_sha256()
			   : alg == RC_JWT_HS384 ? EVP_sha384() : EVP_sha512();
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	if (!v->secret || !v->secret_len)
		return RC_JWT_algorithm;
	if (!HMAC(md, v->secret, v->secret_len, (const uint8_t *)input, len, mac, &mac_len))
		return RC_JWT_signature;
	RC_ASSERT(mac_len == EVP_MD_size(md));
	if (sig_len != mac_len || CRYPTO_memcmp(mac, sig, mac_len) != 0)
		return RC_JWT_signature;
	return RC_JWT_ok;
}

/*
 * The key for h: by kid when the token names one; otherwise the key without a kid (PEM) or
 * the only key of the token's algorithm. NULL with *r set when there is none.
 */
static const struct rc_jwt_key *key_for(const struct rc_jwt_keyset *ks, const struct header *h,
					enum rc_jwt_result *r)
{
	const struct rc_jwt_key *found = NULL, *only = NULL;
	uint32_t same_alg = 0;
	*r = RC_JWT_key;
	for (uint32_t i = 0; ks && i < ks->count && !found; i++) {
		const struct rc_jwt_key *k = &ks->keys[i];
		if (h->kid[0]) {
			found = strcmp(k->kid, h->kid) == 0 ? k : NULL;
		} else if (k->alg == h->alg) {
			found = k->kid[0] ? NULL : k;
			only = k;
			same_alg++;
		}
	}
	if (!found && same_alg == 1)
		found = only;
	/* A key of one kind never checks a signature of another (RS/ES/HS confusion). */
	if (found && found->alg != h->alg) {
		*r = RC_JWT_algorithm;
		return NULL;
	}
	return found;
}

/* A JOSE ES256 signature (r || s, 32 bytes each) as the DER that BoringSSL verifies. */
static uint8_t *es256_der(const uint8_t *sig, size_t sig_len, size_t *der_len)
{
	uint8_t *der = NULL;
	if (sig_len != 64)
		return NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
		r = s = NULL; /* es owns them now */
		if (!ECDSA_SIG_to_bytes(&der, der_len, es))
			der = NULL;
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return der;
}

static enum rc_jwt_result pkey_check(const struct rc_jwt_verifier *v, const struct header *h,
				     const char *input, size_t len, const uint8_t *sig,
				     size_t sig_len)
{
	enum rc_jwt_result r;
	const struct rc_jwt_key *k = key_for(v->keys, h, &r);
	if (!k)
		return r;
	uint8_t *der = NULL;
	size_t der_len = sig_len;
	if (h->alg == RC_JWT_ES256 && !(der = es256_der(sig, sig_len, &der_len)))
		return RC_JWT_signature;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) &&
		  EVP_DigestVerify(ctx, der ? der : sig, der_len, (const uint8_t *)input, len);
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ok ? RC_JWT_ok : RC_JWT_signature;
}

/* A NumericDate claim in Unix ms: 1 if present and valid, 0 if absent, -1 if malformed. */
static int numeric_date(const cJSON *root, const char *name, uint64_t *ms)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, name);
	if (!d)
		return 0;
	if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0) || d->valuedouble >= NUMERIC_DATE_LIMIT)
		return -1;
	*ms = (uint64_t)(d->valuedouble * 1000.0);
	return 1;
}

static enum rc_jwt_result times_check(const struct rc_jwt_verifier *v, const cJSON *root,
				      uint64_t now_ms, uint64_t *exp_ms)
{
	uint64_t nbf = 0, iat = 0;
	int e = numeric_date(root, "exp", exp_ms), n = numeric_date(root, "nbf", &nbf);
	int i = numeric_date(root, "iat", &iat);
	if (e < 0 || n < 0 || i < 0)
		return RC_JWT_claims;
	if (e > 0 && now_ms >= *exp_ms + v->leeway_ms)
		return RC_JWT_expired;
	if ((n > 0 && nbf > now_ms + v->leeway_ms) || (i > 0 && iat > now_ms + v->leeway_ms))
		return RC_JWT_not_yet_valid;
	if (e == 0)
		*exp_ms = 0;
	return RC_JWT_ok;
}

/* aud (a string or an array of them) must name v->audience; present without one configured,
 * the token is meant for someone else (RFC 7519 §4.1.3). */
static enum rc_jwt_result audience_check(const struct rc_jwt_verifier *v, const cJSON *root)
{
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(root, "aud"), *a;
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(root, "iss");
	bool want_aud = v->audience && v->audience[0], want_iss = v->issuer && v->issuer[0];
	if (want_iss && (!cJSON_IsString(iss) || strcmp(iss->valuestring, v->issuer) != 0))
		return RC_JWT_issuer;
	if (!aud && !want_aud)
		return RC_JWT_ok;
	if (cJSON_IsString(aud))
		return want_aud && strcmp(aud->valuestring, v->audience) == 0 ? RC_JWT_ok
									       : RC_JWT_audience;
	if (!cJSON_IsArray(aud))
		return RC_JWT_audience;
	cJSON_ArrayForEach(a, aud)
	{
		if (want_aud && cJSON_IsString(a) && strcmp(a->valuestring, v->audience) == 0)
			return RC_JWT_ok;
	}
	return RC_JWT_audience;
}

/* The bytes of the patterns in list (an array of valid patterns), or -1. */
static long patterns_size(const cJSON *list, uint32_t *count)
{
	const cJSON *p;
	long size = 0;
	if (!list)
		return 0;
	if (!cJSON_IsArray(list))
		return -1;
	cJSON_ArrayForEach(p, list)
	{
		if (!cJSON_IsString(p) || ++*count > RC_JWT_PATTERNS_LIMIT ||
		    !rc_jwt_pattern_valid(p->valuestring, strlen(p->valuestring)))
			return -1;
		size += (long)strlen(p->valuestring) + 1;
	}
	return size;
}

static char *patterns_copy(const cJSON *list, char *out)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, list)
	{
		size_t n = strlen(p->valuestring) + 1;
		memcpy(out, p->valuestring, n);
		out += n;
	}
	return out;
}

/* sub, channel, subs and pubs into out (rights allocated here). */
static enum rc_jwt_result rights_parse(const cJSON *root, struct rc_jwt_claims *out)
{
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "sub");
	const cJSON *chan = cJSON_GetObjectItemCaseSensitive(root, "channel");
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(root, "subs");
	const cJSON *pubs = cJSON_GetObjectItemCaseSensitive(root, "pubs");
	const cJSON *info = cJSON_GetObjectItemCaseSensitive(root, "info");
	uint32_t nsubs = 0, npubs = 0;
	long a = patterns_size(subs, &nsubs), b = patterns_size(pubs, &npubs);
	/* The client info presence shows, kept as compact JSON behind the patterns. */
	char *itext = info ? cJSON_PrintUnformatted(info) : NULL;
	size_t ilen = itext ? strlen(itext) : 0;
	if (info && (!itext || ilen > RC_JWT_INFO_BYTES_LIMIT)) {
		free(itext);
		return RC_JWT_claims;
	}
	if (a < 0 || b < 0 || nsubs + npubs > RC_JWT_PATTERNS_LIMIT ||
	    (sub && (!cJSON_IsString(sub) || strlen(sub->valuestring) > RC_JWT_SUB_BYTES_LIMIT)) ||
	    (chan && (!cJSON_IsString(chan) ||
		      !rc_topic_name_valid(chan->valuestring, strlen(chan->valuestring))))) {
		free(itext);
		return RC_JWT_claims;
	}
	struct rc_jwt_rights *r = malloc(sizeof(*r) + (size_t)(a + b) + ilen);
	if (!r) {
		free(itext);
		return RC_JWT_claims;
	}
	r->info_len = (uint16_t)ilen;
	if (ilen)
		memcpy(r->patterns + a + b, itext, ilen);
	free(itext);
	r->has_subs = subs != NULL;
	r->subs_count = (uint16_t)nsubs;
	r->pubs_count = (uint16_t)npubs;
	r->len = (uint32_t)(a + b);
	snprintf(r->sub, sizeof(r->sub), "%s", sub ? sub->valuestring : "");
	char *end = patterns_copy(pubs, patterns_copy(subs, r->patterns));
	RC_ASSERT(end == r->patterns + r->len);
	snprintf(out->channel, sizeof(out->channel), "%s", chan ? chan->valuestring : "");
	out->rights = r;
	return RC_JWT_ok;
}

/* The payload in[0..len): decoded, parsed and checked into out. */
static enum rc_jwt_result claims_parse(const struct rc_jwt_verifier *v, const char *in,
				       size_t len, uint64_t now_ms, struct rc_jwt_claims *out)
{
	uint8_t *buf = malloc(len / 4 * 3 + 3);
	long n = buf ? b64url_decode(in, len, buf, len / 4 * 3 + 3) : -1;
	cJSON *root = n > 0 ? cJSON_ParseWithLength((const char *)buf, (size_t)n) : NULL;
	enum rc_jwt_result r = RC_JWT_malformed;
	struct rc_jwt_claims c = {0};
	free(buf);
	if (!cJSON_IsObject(root))
		goto out;
	if ((r = times_check(v, root, now_ms, &c.exp_ms)) != RC_JWT_ok)
		goto out;
	if ((r = audience_check(v, root)) != RC_JWT_ok)
		goto out;
	if ((r = rights_parse(root, &c)) != RC_JWT_ok)
		goto out;
	RC_ASSERT(c.rights != NULL);
	*out = c;
out:
	cJSON_Delete(root);
	return r;
}

enum rc_jwt_result rc_jwt_verify(const struct rc_jwt_verifier *v, const char *token, size_t len,
				 uint64_t now_ms, struct rc_jwt_claims *out)
{
	uint8_t sig[SIG_BYTES_LIMIT];
	struct header h;
	RC_ASSERT(v != NULL && out != NULL);
	if (len > v->bytes_max || len > RC_JWT_BYTES_LIMIT)
		return RC_JWT_too_large;
	const char *end = token + len, *d1 = memchr(token, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
		return RC_JWT_malformed; /* not three parts (a JWE has five) */
	enum rc_jwt_result r = header_parse(v, token, (size_t)(d1 - token), &h);
	if (r != RC_JWT_ok)
		return r;
	long sig_len = b64url_decode(d2 + 1, (size_t)(end - d2 - 1), sig, sizeof(sig));
	if (sig_len <= 0)
		return RC_JWT_malformed;
	/* The signature covers header and payload as sent; claims are read only once it holds. */
	size_t input_len = (size_t)(d2 - token);
	if (h.alg <= RC_JWT_HS512)
		r = hmac_check(v, h.alg, token, input_len, sig, (size_t)sig_len);
	else
		r = pkey_check(v, &h, token, input_len, sig, (size_t)sig_len);
	if (r != RC_JWT_ok)
		return r;
	return claims_parse(v, d1 + 1, (size_t)(d2 - d1 - 1), now_ms, out);
}
