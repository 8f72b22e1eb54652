/*
 * Inside pub/sub: what pubsub.c lends pubsub_users.c (cross-shard messages, owned topics,
 * broadcast frames) and what pubsub_users.c gives back (presence bookkeeping, the handlers of
 * its messages). Private to the two and to the Redis engine's pubsub_redis.c and
 * presence_redis.c (answers, unsequenced frames); shard threads.
 */
#ifndef RC_PUBSUB_INT_H
#define RC_PUBSUB_INT_H

#include "pubsub.h"

/* ---- pubsub.c ---- */
/* Who sequences topic name and shares its presence across nodes: the engine (Redis), or
 * NULL (this process's memory; and always for the gateway's own ringcast.* feeds). */
const struct rc_engine_ops *rc_pubsub_engine_of(const struct rc_shard *s, const char *name,
						size_t len);
/* The owner shard of a topic hash. */
struct rc_shard *rc_pubsub_owner_of(const struct rc_app *app, uint64_t hash);
/* A cross-shard message about topic with room for dlen bytes of data, charged (outbox) until
 * rc_pubsub_xmsg_free; NULL without memory. s: the producing shard. */
struct rc_xmsg *rc_pubsub_xmsg_new(struct rc_app *app, const struct rc_shard *s,
				   enum rc_xkind kind, const char *topic, size_t tlen, size_t dlen);
void rc_pubsub_xmsg_free(struct rc_app *app, struct rc_xmsg *m);
/* Sends m to shard `to` (handled at once when it is s). Takes ownership. */
void rc_pubsub_send(struct rc_shard *s, struct rc_shard *to, struct rc_xmsg *m);
/* The live connection m answers (slot and generation), or NULL. */
struct rc_conn *rc_pubsub_reply_conn(struct rc_shard *s, const struct rc_xmsg *m);
/* An unsequenced (seq 0) broadcast frame of topic with room for an envelope of elen bytes at
 * *env; NULL without memory. */
struct rc_frame *rc_pubsub_frame_shared(struct rc_shard *s, const char *topic, size_t tlen,
					uint64_t hash, size_t elen, char **env);
/* The envelope of broadcast frame f (its bytes after the header) at *env; its length. */
size_t rc_pubsub_frame_envelope(const struct rc_frame *f, const uint8_t **env);
/* Posts unsequenced f to every shard subscribed to t, keeping none in history (rc_pubsub_fan_out
 * keeps a message). Consumes the caller's reference. */
void rc_pubsub_fan_out_event(struct rc_shard *s, const struct rc_otopic *t, struct rc_frame *f);

/* ---- pubsub_users.c ---- */
/* Handles a presence, history, topics, answer or user message. Consumes m. */
void rc_pubsub_users_handle(struct rc_shard *s, struct rc_xmsg *m);
/* Tells t's owner that c subscribed to t (add) or left it. */
void rc_pubsub_presence_notify(struct rc_shard *s, struct rc_conn *c, const struct rc_ltopic *t,
			       bool add);
/* Drops t's presence set, releasing its charge (the topic's end). */
void rc_pubsub_presence_drop(struct rc_shard *s, struct rc_otopic *t);
/* Sends text[0..len) (borrowed; NULL: no memory) back to query m's connection, which gets
 * an empty answer when memory is short. Consumes m. */
void rc_pubsub_answer_query(struct rc_shard *s, struct rc_xmsg *m, const char *text, size_t len);
/* Answers history query m with the topic's epoch (has_epoch: known), seq and msgs[0..len):
 * its msg envelopes, oldest first, joined by commas. Consumes m. */
void rc_pubsub_history_answer(struct rc_shard *s, struct rc_xmsg *m, bool has_epoch,
			      uint64_t epoch, uint64_t seq, const char *msgs, size_t len);
/* Answers history query m from what this owner holds (the memory engine's answer, and the
 * Redis engine's when Redis cannot be asked). Consumes m. */
void rc_pubsub_history_local(struct rc_shard *s, struct rc_xmsg *m);
/* Answers presence query m (taken) from this owner's set of its topic; partial adds
 * "partial":true (the other nodes' entries could not be read). */
void rc_pubsub_presence_answer(struct rc_shard *s, struct rc_xmsg *m, bool partial);

#endif
