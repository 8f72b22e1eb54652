/*
 * Access tokens in the runtime (token.c): the key set loaded from token_public_key_file and
 * token_jwks_file (read here, verified by src/jwt.c), replaced on SIGHUP or when a file
 * changes while the shards keep verifying, each with its own reference; and what each
 * connection's token said (its rights, its subject's dedup scope, its expiry) in the slot
 * array beside the records. Failures are counted by reason (ringcast_auth_failures_total).
 * rc_token_init, rc_token_reload, rc_token_watch and rc_token_free: main thread; the rest:
 * the connection's shard thread.
 */
#ifndef RC_TOKEN_H
#define RC_TOKEN_H

#include "jwt.h"
#include "runtime.h"

/*
 * Reads app->cfg's token settings: the algorithms, the key files. Sets app->auth when any
 * key is configured. Returns 0, or -errno with err naming the file and the problem. Main
 * thread, before the shards start.
 */
int rc_token_init(struct rc_app *app, char *err, size_t err_len);

/*
 * Reads the key files again and, if they hold a valid key set, makes it the one the shards
 * verify with (each takes it at its next verification); a bad file keeps the old set and is
 * logged. Returns 0 or -errno. Main thread.
 */
int rc_token_reload(struct rc_app *app);

/* Reloads when a key file's modification time changed; looks at most once a second. Main
 * thread, called from the signal wait loop. */
void rc_token_watch(struct rc_app *app, uint64_t now_ms);

/* Drops every reference to key sets (the shards have joined). Main thread, at destroy. */
void rc_token_free(struct rc_app *app);

/*
 * Verifies token[0..len) (borrowed) for shard s with the current keys at the wall clock.
 * RC_JWT_ok with *out filled (its rights owned by the caller), or the reason, counted.
 */
enum rc_jwt_result rc_token_verify(struct rc_shard *s, const char *token, size_t len,
				   struct rc_jwt_claims *out);

/* Counts a refusal of reason r that the verifier did not make (missing, subject, channel). */
void rc_token_count_failure(struct rc_shard *s, enum rc_jwt_result r);

/*
 * c's token is now claims (a verified one; its rights are taken over, the previous ones
 * freed): its rights, its subject's dedup scope, and, with expires, its exp as a deadline on
 * the shard clock (0 without exp). Requires s->tokens.
 */
void rc_token_conn_set(struct rc_conn *c, struct rc_jwt_claims *claims, bool expires);

/* The rights of c's token: NULL without a token or without authentication. */
const struct rc_jwt_rights *rc_token_rights(const struct rc_conn *c);

/* c's slot lets go of its token: the connection ended, or it opens without one. */
void rc_token_conn_clear(struct rc_conn *c);

#endif
