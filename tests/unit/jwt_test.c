/*
 * JWT verification (src/jwt.c): the RFC 7515 A.1 vector, every algorithm with keys made here
 * by BoringSSL (PEM and JWKS), the claims (exp, nbf, iat, aud, iss, leeway, sub, channel,
 * rights), and the refusals (forged, none, confusion, wrong kid, oversized, strict base64url),
 * each fed whole and at a guard page. Also the topic patterns.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "jwt.h"

#define NOW_MS 1700000000000ull
static const char secret[] = "unit-test-secret-of-32-bytes-min";

/* ---- making tokens ------------------------------------------------------------------------ */
static void b64url(const uint8_t *in, size_t len, char *out)
{
	size_t n = EVP_EncodeBlock((uint8_t *)out, in, len);
	while (n && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/* "b64(header).b64(claims)" into out; returns its length. */
static size_t signing_input(const char *header, const char *claims, char *out)
{
	b64url((const uint8_t *)header, strlen(header), out);
	size_t n = strlen(out);
	out[n++] = '.';
	b64url((const uint8_t *)claims, strlen(claims), out + n);
	return strlen(out);
}

static void append_sig(char *tok, const uint8_t *sig, size_t len)
{
	size_t n = strlen(tok);
	tok[n] = '.';
	b64url(sig, len, tok + n + 1);
}

static void hs(const char *header, const char *claims, const EVP_MD *md, char *tok)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	size_t n = signing_input(header, claims, tok);
	HMAC(md, secret, strlen(secret), (const uint8_t *)tok, n, mac, &len);
	append_sig(tok, mac, len);
}

static void pk(const char *header, const char *claims, EVP_PKEY *key, char *tok)
{
	uint8_t sig[1024], *der = NULL;
	size_t n = signing_input(header, claims, tok), len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	cr_assert(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key));
	cr_assert(EVP_DigestSign(ctx, NULL, &len, (const uint8_t *)tok, n));
	der = OPENSSL_malloc(len);
	cr_assert(EVP_DigestSign(ctx, der, &len, (const uint8_t *)tok, n));
	EVP_MD_CTX_free(ctx);
	if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
		/* JOSE wants r || s, not DER. */
		ECDSA_SIG *es = ECDSA_SIG_from_bytes(der, len);
		const BIGNUM *r, *s;
		ECDSA_SIG_get0(es, &r, &s);
		BN_bn2bin_padded(sig, 32, r);
		BN_bn2bin_padded(sig + 32, 32, s);
		ECDSA_SIG_free(es);
		len = 64;
	} else {
		memcpy(sig, der, len);
	}
	OPENSSL_free(der);
	append_sig(tok, sig, len);
}

static EVP_PKEY *new_rsa(int bits)
{
	RSA *rsa = RSA_new();
	BIGNUM *e = BN_new();
	BN_set_word(e, 65537);
	cr_assert(RSA_generate_key_ex(rsa, bits, e, NULL));
	BN_free(e);
	EVP_PKEY *k = EVP_PKEY_new();
	EVP_PKEY_assign_RSA(k, rsa);
	return k;
}

static EVP_PKEY *new_ec(void)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	cr_assert(EC_KEY_generate_key(ec));
	EVP_PKEY *k = EVP_PKEY_new();
	EVP_PKEY_assign_EC_KEY(k, ec);
	return k;
}

static void pem_of(EVP_PKEY *key, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	cr_assert(PEM_write_bio_PUBKEY(b, key));
	int n = BIO_read(b, out, (int)cap - 1);
	cr_assert(n > 0);
	out[n] = '\0';
	BIO_free(b);
}

/* ---- fixtures ----------------------------------------------------------------------------- */
static EVP_PKEY *rsa_key, *ec_key, *other_rsa;
static struct rc_jwt_keyset keys;
static struct rc_jwt_verifier v;

static void setup(void)
{
	char pem[4096], err[256] = "";
	rsa_key = new_rsa(2048);
	ec_key = new_ec();
	other_rsa = new_rsa(2048);
	memset(&keys, 0, sizeof(keys));
	pem_of(rsa_key, pem, sizeof(pem));
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&keys, pem, strlen(pem), "r1", err, 256), 0));
	pem_of(ec_key, pem, sizeof(pem));
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&keys, pem, strlen(pem), "", err, 256), 0));
	v = (struct rc_jwt_verifier){RC_JWT_ALGS_ALL, (const uint8_t *)secret, strlen(secret),
				     &keys, NULL, NULL, 0, 4096};
}

static void teardown(void)
{
	rc_jwt_keyset_clear(&keys);
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(other_rsa);
}

/* Verifies tok copied to the end of a page followed by a PROT_NONE guard page. */
static enum rc_jwt_result verify(const char *tok, struct rc_jwt_claims *c)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = strlen(tok), pages = (len + (size_t)page - 1) / (size_t)page + 1;
	char *map = mmap(NULL, pages * (size_t)page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(map != MAP_FAILED);
	char *guard = map + (pages - 1) * (size_t)page, *at = guard - len;
	mprotect(guard, (size_t)page, PROT_NONE);
	memcpy(at, tok, len);
	struct rc_jwt_claims local;
	enum rc_jwt_result r = rc_jwt_verify(&v, at, len, NOW_MS, c ? c : &local);
	if (r == RC_JWT_ok && !c)
		rc_jwt_rights_free(local.rights);
	munmap(map, pages * (size_t)page);
	return r;
}

#define CLAIMS "{\"sub\":\"u-42\",\"exp\":1800000000}"
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

TestSuite(jwt, .init = setup, .fini = teardown);

Test(jwt, rfc7515_a1_vector)
{
	/* RFC 7515 A.1: its key (a JWK "k") and token, verified before its exp. */
	static const char k[] = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4"
				"hcgUuTwjAzZr1Z9CAow";
	static const char tok[] =
		"eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkz"
		"ODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p"
		"1r_wW1gFWFOEjXk";
	uint8_t key[80];
	size_t n = 0;
	char std[sizeof(k) + 4];
	strcpy(std, k);
	for (char *p = std; *p; p++)
		*p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
	while (strlen(std) % 4)
		strcat(std, "=");
	cr_assert(EVP_DecodeBase64(key, &n, sizeof(key), (const uint8_t *)std, strlen(std)));
	struct rc_jwt_claims c;
	v.secret = key;
	v.secret_len = n;
	cr_assert(eq(int, rc_jwt_verify(&v, tok, strlen(tok), 1300819379000ull, &c), RC_JWT_ok));
	cr_assert(eq(u64, c.exp_ms, 1300819380000ull));
	rc_jwt_rights_free(c.rights);
	cr_assert(eq(int, rc_jwt_verify(&v, tok, strlen(tok), 1300819380000ull, &c),
		     RC_JWT_expired));
}

Test(jwt, every_algorithm_verifies)
{
	char tok[2048];
	struct rc_jwt_claims c;
	hs(HS256, CLAIMS, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	cr_assert(eq(str, c.rights->sub, "u-42"));
	cr_assert(eq(u64, c.exp_ms, 1800000000000ull));
	rc_jwt_rights_free(c.rights);
	hs("{\"alg\":\"HS384\"}", CLAIMS, EVP_sha384(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	hs("{\"alg\":\"HS512\"}", CLAIMS, EVP_sha512(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	pk("{\"alg\":\"RS256\",\"kid\":\"r1\"}", CLAIMS, rsa_key, tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	pk("{\"alg\":\"RS256\"}", CLAIMS, rsa_key, tok); /* the only RS256 key */
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	pk("{\"alg\":\"ES256\"}", CLAIMS, ec_key, tok); /* the PEM key without kid */
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
}

Test(jwt, forged_and_confused_tokens_are_refused)
{
	char tok[2048], pem[4096];
	pk("{\"alg\":\"RS256\",\"kid\":\"r1\"}", CLAIMS, other_rsa, tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_signature));
	pk("{\"alg\":\"ES256\",\"kid\":\"r1\"}", CLAIMS, ec_key, tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_algorithm));
	pk("{\"alg\":\"RS256\",\"kid\":\"zz\"}", CLAIMS, rsa_key, tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_key));
	/* HS256 keyed with the RSA public key's PEM: checked against the secret only. */
	pem_of(rsa_key, pem, sizeof(pem));
	size_t n = signing_input(HS256, CLAIMS, tok);
	uint8_t mac[32];
	unsigned len;
	HMAC(EVP_sha256(), pem, strlen(pem), (const uint8_t *)tok, n, mac, &len);
	append_sig(tok, mac, len);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_signature));
	v.secret = NULL;
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_algorithm));
	signing_input("{\"alg\":\"none\"}", CLAIMS, tok);
	strcat(tok, ".");
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_algorithm));
	v.algs = 1u << RC_JWT_RS256;
	hs(HS256, CLAIMS, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_algorithm));
}

Test(jwt, tampering_any_byte_is_refused)
{
	char tok[2048];
	hs(HS256, CLAIMS, EVP_sha256(), tok);
	size_t len = strlen(tok);
	for (size_t i = 0; i < len; i++) {
		char saved = tok[i];
		tok[i] = saved == 'A' ? 'B' : 'A';
		cr_assert(not(eq(int, verify(tok, NULL), RC_JWT_ok)), "byte %zu", i);
		tok[i] = saved;
	}
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
}

Test(jwt, strict_form)
{
	char tok[2048], bad[2100];
	hs(HS256, CLAIMS, EVP_sha256(), tok);
	static const char *const suffixes[] = {"=", ".", ".x", "+", " "};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(bad, sizeof(bad), "%s%s", tok, suffixes[i]);
		cr_assert(not(eq(int, verify(bad, NULL), RC_JWT_ok)), "%s", suffixes[i]);
	}
	static const char *const malformed[] = {"", "a", "a.b", "a.b.c", "..", "e30.e30.",
						"eyJhbGciOiJIUzI1NiJ9.e30.AAAA.AAAA"};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		cr_assert(eq(int, verify(malformed[i], NULL), RC_JWT_malformed), "%s", malformed[i]);
	/* A header with crit, or an alg that is not a string. */
	hs("{\"alg\":\"HS256\",\"crit\":[\"x\"]}", CLAIMS, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_malformed));
	hs("{\"alg\":256}", CLAIMS, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_malformed));
	hs(HS256, "[1,2]", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_malformed));
	v.bytes_max = 100;
	hs(HS256, CLAIMS, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_too_large));
}

Test(jwt, time_claims_and_leeway)
{
	char tok[2048];
	hs(HS256, "{\"exp\":1700000000}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_expired)); /* exp == now */
	hs(HS256, "{\"exp\":1700000000.5}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	hs(HS256, "{\"nbf\":1700000001}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_not_yet_valid));
	hs(HS256, "{\"iat\":1700000060}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_not_yet_valid));
	v.leeway_ms = 60000;
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	hs(HS256, "{\"exp\":1699999950}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	static const char *const bad[] = {"{\"exp\":\"1\"}", "{\"exp\":-1}", "{\"nbf\":null}",
					  "{\"iat\":1e20}", "{\"sub\":42}", "{\"subs\":\"a\"}",
					  "{\"pubs\":[1]}", "{\"subs\":[\"a.>.b\"]}",
					  "{\"channel\":\"bad topic\"}", "{\"subs\":[\"\"]}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hs(HS256, bad[i], EVP_sha256(), tok);
		cr_assert(eq(int, verify(tok, NULL), RC_JWT_claims), "%s", bad[i]);
	}
}

Test(jwt, audience_and_issuer)
{
	char tok[2048];
	hs(HS256, "{\"aud\":\"gw\"}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_audience)); /* aud for someone */
	v.audience = "gw";
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	hs(HS256, "{\"aud\":[\"x\",\"gw\"]}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
	hs(HS256, "{\"aud\":[\"x\"]}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_audience));
	hs(HS256, "{}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_audience));
	v.audience = NULL;
	v.issuer = "me";
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_issuer));
	hs(HS256, "{\"iss\":\"me\"}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_ok));
}

Test(jwt, rights_and_channel)
{
	char tok[2048];
	struct rc_jwt_claims c;
	hs(HS256, "{\"sub\":\"u\",\"channel\":\"room.1\",\"subs\":[\"orders.eu\",\"chat.*\"],"
		  "\"pubs\":[\"chat.>\"]}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	cr_assert(eq(str, c.channel, "room.1"));
	cr_assert(eq(u64, c.exp_ms, 0));
	const struct rc_jwt_rights *r = c.rights;
	cr_assert(rc_jwt_rights_allow(r, false, "orders.eu", 9));
	cr_assert(rc_jwt_rights_allow(r, false, "chat.a", 6));
	cr_assert(not(rc_jwt_rights_allow(r, false, "chat.a.b", 8)));
	cr_assert(not(rc_jwt_rights_allow(r, false, "orders", 6)));
	cr_assert(rc_jwt_rights_allow(r, true, "chat.a.b", 8));
	cr_assert(not(rc_jwt_rights_allow(r, true, "orders.eu", 9)));
	rc_jwt_rights_free(c.rights);
	hs(HS256, "{}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	cr_assert(rc_jwt_rights_allow(c.rights, false, "any", 3));
	cr_assert(not(rc_jwt_rights_allow(c.rights, true, "any", 3)));
	rc_jwt_rights_free(c.rights);
	hs(HS256, "{\"subs\":[]}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	cr_assert(not(rc_jwt_rights_allow(c.rights, false, "any", 3)));
	rc_jwt_rights_free(c.rights);
}

/* The info claim (any JSON value) is kept compact behind the patterns; too large refused. */
Test(jwt, info_claim)
{
	char tok[4096];
	struct rc_jwt_claims c;
	size_t len;
	hs(HS256, "{\"sub\":\"u\",\"subs\":[\"a.*\"],\"info\": {\"name\": \"Ann\", \"n\": [1, 2]}}",
	   EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	const char *info = rc_jwt_rights_info(c.rights, &len);
	cr_assert(eq(sz, len, strlen("{\"name\":\"Ann\",\"n\":[1,2]}")));
	cr_assert(memcmp(info, "{\"name\":\"Ann\",\"n\":[1,2]}", len) == 0);
	cr_assert(rc_jwt_rights_allow(c.rights, false, "a.b", 3));
	rc_jwt_rights_free(c.rights);
	hs(HS256, "{\"sub\":\"u\"}", EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, &c), RC_JWT_ok));
	cr_assert(eq(ptr, (void *)rc_jwt_rights_info(c.rights, &len), NULL));
	cr_assert(eq(sz, len, 0));
	rc_jwt_rights_free(c.rights);
	char claims[RC_JWT_INFO_BYTES_LIMIT + 64];
	snprintf(claims, sizeof(claims), "{\"info\":\"%0*d\"}", RC_JWT_INFO_BYTES_LIMIT, 0);
	hs(HS256, claims, EVP_sha256(), tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_claims));
}

Test(jwt, patterns)
{
	static const struct {
		const char *pattern, *topic;
		bool match;
	} cases[] = {
		{"a.b", "a.b", true},    {"a.b", "a.bc", false}, {"a.*", "a.b", true},
		{"a.*", "a", false},     {"a.*", "a.b.c", false}, {"a.>", "a.b.c", true},
		{"a.>", "a", false},     {"a.>", "a.b", true},   {">", "x", true},
		{">", "x.y", true},      {"*", "x", true},       {"*", "x.y", false},
		{"*.b", "a.b", true},    {"*.b", "a.c", false},  {"a:b/c", "a:b/c", true},
		{"a.*.c", "a.b.c", true}, {"a.*.c", "a.b.d", false}, {"a.b", "a", false},
		{"vip:*", "vip:a", true}, {"vip:*", "vip.a", false}, {"a/*/c", "a/b/c", true},
		{"a:>", "a:b/c.d", true}, {"a.b", "a:b", false},  {"*", "", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *t = cases[i].topic;
		cr_assert(eq(int, rc_jwt_pattern_match(cases[i].pattern, t, strlen(t)),
			     cases[i].match), "%s ~ %s", cases[i].pattern, t);
		cr_assert(rc_jwt_pattern_valid(cases[i].pattern, strlen(cases[i].pattern)));
	}
	static const char *const invalid[] = {"", "a.>.b", "a*", "a.b*", ">a", "a b", "a.>>",
					      "a:>/b", "vip:*x"};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		cr_assert(not(rc_jwt_pattern_valid(invalid[i], strlen(invalid[i]))), "%s",
			  invalid[i]);
}

Test(jwt, jwks_keys_by_kid)
{
	char tok[2048], err[256] = "";
	struct rc_jwt_keyset ks = {0};
	static const char jwks[] =
		"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\",\"use\":\"sig\","
		"\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
		"\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
		"{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"h\"},"
		"{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"x\"}]}";
	cr_assert(eq(int, rc_jwt_keyset_add_jwks(&ks, jwks, strlen(jwks), err, 256), 0), "%s",
		  err);
	cr_assert(eq(u32, ks.count, 1));
	cr_assert(eq(str, ks.keys[0].kid, "e1"));
	cr_assert(eq(int, ks.keys[0].alg, RC_JWT_ES256));
	/* A token of that kid signed by another key fails its signature. */
	v.keys = &ks;
	pk("{\"alg\":\"ES256\",\"kid\":\"e1\"}", CLAIMS, ec_key, tok);
	cr_assert(eq(int, verify(tok, NULL), RC_JWT_signature));
	static const char *const bad[] = {
		"[]", "{\"keys\":{}}", "{\"keys\":[]}", "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\","
		"\"e\":\"AQAB\",\"kid\":\"small\"}]}", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
		"\"x\":\"AA\",\"y\":\"AA\",\"kid\":\"k\"}]}", "{\"keys\":[{\"kty\":\"EC\"}]}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rc_jwt_keyset b = {0};
		cr_assert(eq(int, rc_jwt_keyset_add_jwks(&b, bad[i], strlen(bad[i]), err, 256),
			     -EINVAL), "%s", bad[i]);
		cr_assert(eq(u32, b.count, 0));
		cr_assert(gt(sz, strlen(err), 0));
	}
	rc_jwt_keyset_clear(&ks);
}

Test(jwt, pem_refuses_weak_or_foreign_keys)
{
	char err[256] = "";
	struct rc_jwt_keyset ks = {0};
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&ks, "nothing", 7, "", err, 256), -EINVAL));
	EVP_PKEY *weak = new_rsa(1024);
	char pem[4096];
	pem_of(weak, pem, sizeof(pem));
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&ks, pem, strlen(pem), "", err, 256), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "2048"), NULL)), "%s", err);
	EVP_PKEY_free(weak);
	pem_of(rsa_key, pem, sizeof(pem));
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&ks, pem, strlen(pem), "a", err, 256), 0));
	cr_assert(eq(int, rc_jwt_keyset_add_pem(&ks, pem, strlen(pem), "a", err, 256), -EINVAL));
	rc_jwt_keyset_clear(&ks);
}

Test(jwt, algorithm_lists)
{
	uint32_t algs = 0;
	char err[256];
	cr_assert(eq(int, rc_jwt_algs_parse(" HS256 , ES256,", &algs, err, 256), 0));
	cr_assert(eq(u32, algs, (1u << RC_JWT_HS256) | (1u << RC_JWT_ES256)));
	cr_assert(eq(int, rc_jwt_algs_parse("HS256,none", &algs, err, 256), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "'none'"), NULL)));
	cr_assert(eq(int, rc_jwt_algs_parse("", &algs, err, 256), 0));
	cr_assert(eq(u32, algs, 0));
}
