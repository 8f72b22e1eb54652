/*
 * JSON Web Tokens (RFC 7519, JWS compact serialization of RFC 7515), verified sans I/O with
 * BoringSSL: HS256/384/512 against a shared secret, RS256 and ES256 against public keys given
 * as PEM text or as a JWKS document (keys chosen by "kid"). Reading the key files is the
 * caller's job; time comes in as now_ms (Unix milliseconds). Also the rights a token grants:
 * topic patterns in its "subs" and "pubs" claims (the syntax is in rc_jwt_pattern_match).
 * A key set is immutable once built and may be read by any number of threads at once; the
 * rest is pure, any thread.
 */
#ifndef RC_JWT_H
#define RC_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topic.h" /* RC_TOPIC_BYTES_LIMIT */

#define RC_JWT_BYTES_LIMIT 65536     /* the largest token_bytes_max */
#define RC_JWT_SUB_BYTES_LIMIT 128   /* the "sub" claim, bytes */
#define RC_JWT_KID_BYTES_LIMIT 64    /* a key id, bytes */
#define RC_JWT_PATTERNS_LIMIT 64     /* entries of "subs" plus "pubs" */
#define RC_JWT_INFO_BYTES_LIMIT 1024 /* the "info" claim (client info presence shows), compact */
#define RC_JWT_KEYS_LIMIT 32         /* keys in one key set */
#define RC_JWT_HMAC_SECRET_BYTES_MIN 32 /* RFC 7518 §3.2: a key as long as the hash */
#define RC_JWT_RSA_BITS_MIN 2048

/* The signature algorithms ("alg"); bit i of an allowed set is enum value i. */
enum rc_jwt_alg {
	RC_JWT_HS256 = 0,
	RC_JWT_HS384,
	RC_JWT_HS512,
	RC_JWT_RS256,
	RC_JWT_ES256,
	RC_JWT_ALG_COUNT,
};

#define RC_JWT_ALGS_ALL ((1u << RC_JWT_ALG_COUNT) - 1)

/*
 * Why a token was refused: the label of ringcast_auth_failures_total. The verifier returns
 * MALFORMED..CLAIMS; the runtime reports the others.
 */
#define RC_JWT_RESULTS(X)                                                                          \
	X(ok, "accepted")                                                                          \
	X(malformed, "not three base64url parts of JSON objects")                                  \
	X(too_large, "longer than token_bytes_max")                                                \
	X(algorithm, "alg not in token_algorithms, none, or without a key of its kind")           \
	X(key, "no key with the token's kid")                                                      \
	X(signature, "the signature does not verify")                                              \
	X(expired, "exp passed (token_leeway_ms allowed)")                                         \
	X(not_yet_valid, "nbf or iat in the future (token_leeway_ms allowed)")                     \
	X(audience, "aud does not name token_audience")                                            \
	X(issuer, "iss is not token_issuer")                                                       \
	X(claims, "a claim has the wrong type or size, or a right is not a pattern")               \
	X(missing, "no token where one is required")                                               \
	X(subject, "a refresh or channel token for another sub")                                   \
	X(channel, "a channel token for another topic")

enum rc_jwt_result {
#define RC_X(name, help) RC_JWT_##name,
	RC_JWT_RESULTS(RC_X)
#undef RC_X
		RC_JWT_RESULT_COUNT,
};

/* One public key (RS256 or ES256). */
struct rc_jwt_key {
	char kid[RC_JWT_KID_BYTES_LIMIT + 1]; /* "" for a PEM key: used by tokens without kid */
	enum rc_jwt_alg alg;                  /* RC_JWT_RS256 or RC_JWT_ES256 */
	void *pkey;                           /* EVP_PKEY, owned */
};

/* The public keys tokens may be signed with. Built at startup or on reload, then read-only. */
struct rc_jwt_keyset {
	struct rc_jwt_key keys[RC_JWT_KEYS_LIMIT];
	uint32_t count;
};

/* What verification checks, all borrowed from the caller for the call. */
struct rc_jwt_verifier {
	uint32_t algs;                      /* allowed algorithms, bits of enum rc_jwt_alg */
	const uint8_t *secret;              /* HS* key; NULL: HS* tokens are refused */
	size_t secret_len;
	const struct rc_jwt_keyset *keys;   /* RS256/ES256 keys; NULL: none */
	const char *audience;               /* NULL or "": aud is not checked */
	const char *issuer;                 /* NULL or "": iss is not checked */
	uint64_t leeway_ms;                 /* clock skew allowed on exp, nbf and iat */
	size_t bytes_max;                   /* longer tokens are refused (too_large) */
};

/*
 * The rights of a token, one allocation: its "subs" patterns then its "pubs" patterns, each
 * NUL-terminated, in patterns[]. A claim that is absent differs from an empty one: without
 * "subs" any topic may be subscribed, without "pubs" none may be published to.
 */
struct rc_jwt_rights {
	bool has_subs;       /* the token carried "subs" */
	uint16_t subs_count;
	uint16_t pubs_count;
	uint16_t info_len;   /* bytes of the "info" claim behind the patterns, 0: none */
	uint32_t len;        /* bytes of patterns[] (the info not counted) */
	char sub[RC_JWT_SUB_BYTES_LIMIT + 1]; /* the user id, "" if none */
	char patterns[];
};

/* What a valid token says. */
struct rc_jwt_claims {
	uint64_t exp_ms;                         /* Unix ms of exp; 0: no exp */
	char channel[RC_TOPIC_BYTES_LIMIT + 1];  /* the "channel" claim, "" if none */
	struct rc_jwt_rights *rights;            /* owned by the caller: rc_jwt_rights_free */
};

/*
 * Parses a comma-separated list of algorithm names ("HS256,RS256") into *algs. Returns 0,
 * or -EINVAL with err naming the item ("none" is never accepted).
 */
int rc_jwt_algs_parse(const char *list, uint32_t *algs, char *err, size_t err_len);

/* "HS256", "RS256", ... for alg. */
const char *rc_jwt_alg_name(enum rc_jwt_alg alg);

/*
 * Adds the public key in PEM text pem[0..len) (borrowed; "BEGIN PUBLIC KEY", RSA of at least
 * RC_JWT_RSA_BITS_MIN bits or EC P-256) to ks with key id kid ("" for none). Returns 0, or
 * -EINVAL/-E2BIG/-ENOMEM with err set.
 */
int rc_jwt_keyset_add_pem(struct rc_jwt_keyset *ks, const char *pem, size_t len, const char *kid,
			  char *err, size_t err_len);

/*
 * Adds every signing key of the JWKS document json[0..len) (borrowed; RFC 7517 {"keys":[...]},
 * kty RSA or EC P-256, each with a kid; keys with "use":"enc" or another kty are skipped) to
 * ks. Returns 0, or -EINVAL (not JWKS, a key malformed, no usable key), -E2BIG or -ENOMEM
 * with err set.
 */
int rc_jwt_keyset_add_jwks(struct rc_jwt_keyset *ks, const char *json, size_t len, char *err,
			   size_t err_len);

/* Frees the keys of ks and empties it. */
void rc_jwt_keyset_clear(struct rc_jwt_keyset *ks);

/*
 * Verifies token[0..len) (borrowed) with v at now_ms: size, form (strict base64url, JSON
 * header and payload), "alg" allowed and backed by a key of its kind (so an RS256 public key
 * is never used as an HMAC secret), the key by "kid", the signature (HMAC compared in
 * constant time), then exp, nbf, iat, aud, iss and the types of sub, channel, subs and pubs.
 * Returns RC_JWT_ok and fills *out (its rights the caller's to free), or the reason it was
 * refused (*out is then untouched).
 */
enum rc_jwt_result rc_jwt_verify(const struct rc_jwt_verifier *v, const char *token, size_t len,
				 uint64_t now_ms, struct rc_jwt_claims *out);

/* The "info" claim of r (NULL is fine) as compact JSON, *len bytes, not NUL-terminated; NULL
 * (and *len 0) without one. Borrowed from r. */
const char *rc_jwt_rights_info(const struct rc_jwt_rights *r, size_t *len);

/* Frees rights (NULL is fine). */
void rc_jwt_rights_free(struct rc_jwt_rights *rights);

/*
 * True if topic[0..len) matches pattern (NUL-terminated). Topics are read as segments
 * separated by '.', ':' or '/' (each separator matches only itself): in a pattern, a segment
 * "*" matches exactly one segment, a last segment ">" matches one or more, and anything else
 * matches itself. "chat.*" matches "chat.room" but not "chat" or "chat.room.1"; "chat.>"
 * matches both of the latter's kind; "vip:*" matches "vip:a"; ">" matches every topic. Pure.
 */
bool rc_jwt_pattern_match(const char *pattern, const char *topic, size_t len);

/* True if pattern (NUL-terminated) is one: a topic name whose segments may be "*" or, last,
 * ">". */
bool rc_jwt_pattern_valid(const char *pattern, size_t len);

/*
 * True if rights let their holder subscribe to (publish false) or publish to (publish true)
 * topic[0..len): a pattern of "subs" (or any topic when the token had no "subs"), of "pubs"
 * (none when it had none). rights NULL: a token without subs and pubs.
 */
bool rc_jwt_rights_allow(const struct rc_jwt_rights *rights, bool publish, const char *topic,
			 size_t len);

/* The metric label of r ("signature", "expired", ...); "unknown" out of range. */
const char *rc_jwt_result_name(enum rc_jwt_result r);

/* A sentence for clients saying why r refused a token ("access token refused: ..."). */
const char *rc_jwt_result_reason(enum rc_jwt_result r);

#endif
