/*
 * Topic namespaces, sans I/O: topics named "NAME:rest" belong to namespace NAME, whose options
 * override the gateway-wide ones for them (history size and age, who may publish, anonymous
 * access, private topics, the slow-consumer policy, presence and join/leave messages). Declared in the configuration as
 *   namespace.NAME = OPTION=VALUE,OPTION=VALUE,...
 * and kept in the config's "namespaces" string as "NAME:OPTIONS;NAME:OPTIONS". A parsed set is
 * built at startup and read-only afterwards; any thread may read it.
 */
#ifndef RC_NAMESPACE_H
#define RC_NAMESPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_NAMESPACES_LIMIT 64
#define RC_NAMESPACE_NAME_BYTES_LIMIT 32
#define RC_NAMESPACE_HISTORY_SIZE_LIMIT 1048576u    /* as history_messages_max */
#define RC_NAMESPACE_HISTORY_AGE_LIMIT 86400000u    /* ms, as history_age_max_ms */
#define RC_NAMESPACE_JOIN_LEAVE_SUBSCRIBERS_LIMIT 1048576u
/* Join/leave messages go out while a topic has at most this many subscribers: past it one
 * join is a frame to each of them, and N clients joining N^2 frames. */
#define RC_DEFAULT_JOIN_LEAVE_SUBSCRIBERS_MAX 1000u

/* Who may publish to a namespace's topics over WebSocket. */
enum rc_ns_publish {
	RC_NS_PUBLISH_INHERIT = 0, /* client_publish and the token's pubs decide */
	RC_NS_PUBLISH_NOBODY,      /* no client: the backend only (POST /publish) */
	RC_NS_PUBLISH_SUBSCRIBERS, /* clients subscribed to the topic */
	RC_NS_PUBLISH_ANY,         /* any client of the namespace */
};

/* The slow-consumer policy of a namespace's topics. */
enum rc_ns_slow {
	RC_NS_SLOW_INHERIT = 0, /* slow_consumer_policy */
	RC_NS_SLOW_CLOSE,
	RC_NS_SLOW_DROP,
	RC_NS_SLOW_LATEST,
};

struct rc_namespace {
	char name[RC_NAMESPACE_NAME_BYTES_LIMIT + 1]; /* A-Z a-z 0-9 _ - */
	uint32_t name_len;
	bool has_history_size;
	uint32_t history_size;     /* messages kept per topic (history_messages_max) */
	bool has_history_age;
	uint32_t history_age_ms;   /* history_age_max_ms */
	enum rc_ns_publish publish;
	enum rc_ns_slow slow;
	bool anonymous;            /* clients without a token may subscribe (and publish) */
	bool is_private;           /* subscribing needs an explicit subs right or a channel token */
	bool presence;             /* the owner keeps who is subscribed (pubsub.c, presence.c) */
	bool join_leave;           /* subscribers hear join and leave messages (pubsub.c) */
	uint32_t join_leave_subscribers_max; /* ... while the topic has at most this many
					      * subscribers (the one coming or going included) */
};

struct rc_namespaces {
	struct rc_namespace v[RC_NAMESPACES_LIMIT];
	uint32_t count;
	bool any_anonymous; /* some namespace has anonymous=true */
};

/*
 * Parses spec ("NAME:OPTIONS;NAME:OPTIONS", borrowed; "" for none) into *out. Returns 0, or
 * -EINVAL with err naming the namespace, the option and what is wrong ("namespace.chat:
 * publish: 'all' is not nobody, subscribers or any").
 */
int rc_namespaces_parse(const char *spec, struct rc_namespaces *out, char *err, size_t err_len);

/* True if name[0..len) may name a namespace: 1..32 bytes of A-Z a-z 0-9 _ -. */
bool rc_namespace_name_valid(const char *name, size_t len);

/* The namespace of topic[0..len) (the part before its first ':'), or NULL. Borrows both. */
const struct rc_namespace *rc_namespace_of(const struct rc_namespaces *set, const char *topic,
					   size_t len);

#endif
