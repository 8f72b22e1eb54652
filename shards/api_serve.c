/*
 * The server API (see api_serve.h): routes /api/NAME to its call, checks who may call it and
 * how, parses the body (src/api.c, or the envelope's publish and broadcast parsers) and
 * answers: at once (info, disconnect, unsubscribe: these act on every shard as the messages
 * arrive), when every publish is sequenced (publish, broadcast), or when the topic's owner
 * answers (presence, presence_stats, history). Shard threads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "api_serve.h"
#include "namespace.h"
#include "presence_redis.h"
#include "pubsub.h"
#include "pubsub_proto.h"

/* The error answer, which closes the connection. */
static void api_error(struct rc_conn *c, int status, const char *reason)
{
	char out[512];
	size_t len = rc_api_write_error(out, sizeof(out), status, reason);
	rc_proto_http_answer(c, status, out, len, false);
}

/* Answers 200 with root printed (and deleted); 503 without memory. */
static void api_json(struct rc_conn *c, cJSON *root, bool keep_alive)
{
	char *text = root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (!text) {
		api_error(c, 503, "out of memory");
		return;
	}
	rc_proto_http_answer(c, 200, text, strlen(text), keep_alive);
	free(text);
}

/* {"node","shards","connections","subscriptions","topics","per_shard":[...]}: the counters
 * are read racily, as /metrics reads them. */
static cJSON *info(const struct rc_app *app)
{
	char host[256] = "";
	uint64_t sum[4] = {0};
	cJSON *root = cJSON_CreateObject(), *per = cJSON_CreateArray();
	bool ok = root && per && gethostname(host, sizeof(host) - 1) == 0 &&
		  cJSON_AddStringToObject(root, "node", host) &&
		  cJSON_AddStringToObject(root, "node_id", app->cfg.node_id) &&
		  cJSON_AddNumberToObject(root, "shards", app->shards_count);
	for (int i = 0; ok && i < app->shards_count; i++) {
		const struct rc_shard_stats *st = &app->shards[i].stats;
		uint64_t v[4] = {__atomic_load_n(&st->websockets_open, __ATOMIC_RELAXED),
				 __atomic_load_n(&st->subscriptions, __ATOMIC_RELAXED),
				 __atomic_load_n(&st->topics_owned, __ATOMIC_RELAXED),
				 __atomic_load_n(&st->presence_entries, __ATOMIC_RELAXED)};
		cJSON *o = cJSON_CreateObject();
		ok = o && cJSON_AddItemToArray(per, o) && cJSON_AddNumberToObject(o, "shard", i) &&
		     cJSON_AddNumberToObject(o, "connections", (double)v[0]) &&
		     cJSON_AddNumberToObject(o, "subscriptions", (double)v[1]) &&
		     cJSON_AddNumberToObject(o, "topics", (double)v[2]) &&
		     cJSON_AddNumberToObject(o, "presence_entries", (double)v[3]);
		for (int k = 0; k < 4; k++)
			sum[k] += v[k];
	}
	ok = ok && cJSON_AddNumberToObject(root, "connections", (double)sum[0]) &&
	     cJSON_AddNumberToObject(root, "subscriptions", (double)sum[1]) &&
	     cJSON_AddNumberToObject(root, "topics", (double)sum[2]) &&
	     cJSON_AddNumberToObject(root, "presence_entries", (double)sum[3]) &&
	     cJSON_AddItemToObject(root, "per_shard", per);
	if (!ok) {
		cJSON_Delete(per);
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* Sends a query to req's topic owner; its answer completes c's request (rc_proto_answer). */
static void query(struct rc_conn *c, enum rc_api_call call, const struct rc_api_req *req,
		  bool keep_alive)
{
	const struct rc_namespace *ns =
		rc_namespace_of(c->shard->app->namespaces, req->topic, req->topic_len);
	if (call != RC_API_HISTORY && !(ns && ns->presence)) {
		api_error(c, 400, "presence is off for this topic");
		return;
	}
	if (rc_proto_http_wait(c, keep_alive, 1) != 0) {
		api_error(c, 503, "out of memory");
		return;
	}
	int rc = call == RC_API_HISTORY
			 ? rc_pubsub_history(c, req->topic, req->topic_len, req->since, req->limit,
					     RC_REPLY_HTTP, 0)
			 : rc_pubsub_presence(c, req->topic, req->topic_len,
					      call == RC_API_PRESENCE_STATS, RC_REPLY_HTTP, 0);
	if (rc != 0)
		rc_proto_answer(c, RC_REPLY_HTTP, 0, NULL, 0); /* the 503, and c waits no more */
}

/* Every shard's topics with their subscribers, merged when the last shard answered. */
static void topics(struct rc_conn *c, bool keep_alive)
{
	int shards = c->shard->app->shards_count;
	if (rc_proto_http_wait(c, keep_alive, (uint32_t)shards) != 0) {
		api_error(c, 503, "out of memory");
		return;
	}
	/* Nothing was sent: as many lost answers make the 503 and end the wait. */
	if (rc_pubsub_topics(c, RC_REPLY_HTTP, 0) != 0)
		for (int i = 0; i < shards; i++)
			rc_proto_answer(c, RC_REPLY_HTTP, 0, NULL, 0);
}

/* disconnect and unsubscribe: posted to every shard (and with the Redis engine to every
 * other node), answered at once; {"partial":true} when the other nodes could not be told. */
static void user_action(struct rc_conn *c, const struct rc_api_req *req, bool keep_alive)
{
	static const char partial[] = "{\"partial\":true}";
	int rc = rc_pubsub_user_action(c->shard, req->user, req->user_len, req->topic,
				       req->topic_len, req->code);
	bool told = rc != 0 || !c->shard->app->engine ||
		    rc_xnode_user_action(c->shard, req->user, req->user_len, req->topic,
					 req->topic_len, req->code) == 0;
	if (rc == -EINVAL)
		api_error(c, 400, "\"user\" cannot name a personal topic");
	else if (rc != 0)
		api_error(c, 503, "out of memory: some shards were not told");
	else if (!told)
		rc_proto_http_answer(c, 200, partial, sizeof(partial) - 1, keep_alive);
	else
		rc_proto_http_answer(c, 200, "{}", 2, keep_alive);
}

/* info: this node's counters; with the Redis engine also every live node's registry entry,
 * answered when Redis answers. */
static void node_info(struct rc_conn *c, bool keep_alive)
{
	struct rc_app *app = c->shard->app;
	cJSON *root = info(app);
	char *text = root && app->engine ? cJSON_PrintUnformatted(root) : NULL;
	if (!app->engine) {
		api_json(c, root, keep_alive);
		return;
	}
	cJSON_Delete(root);
	if (!text || rc_proto_http_wait(c, keep_alive, 1) != 0)
		api_error(c, 503, "out of memory");
	else
		rc_xnode_info(c, text, strlen(text));
	free(text);
}

void rc_api_serve(struct rc_conn *c, const char *name, size_t nlen, bool authorized, bool post,
		  const char *body, size_t len, bool keep_alive)
{
	struct rc_api_req req;
	const char *reason = NULL;
	enum rc_api_call call = rc_api_call_of(name, nlen);
	if (!authorized) {
		api_error(c, 401, "the server API needs the admin listener, or api_key as "
				  "Authorization: apikey <key>");
		return;
	}
	if (call == RC_API_CALL_COUNT) {
		api_error(c, 404, "no such API call");
		return;
	}
	if (!post && call != RC_API_INFO && call != RC_API_TOPICS) {
		api_error(c, 405, "use POST");
		return;
	}
	if (call == RC_API_PUBLISH || call == RC_API_BROADCAST) {
		rc_proto_api_publish(c, body, len, keep_alive, call == RC_API_BROADCAST);
		return;
	}
	if (rc_api_parse(call, body, len, &req, &reason) != 0) {
		api_error(c, 400, reason);
		return;
	}
	switch (call) {
	case RC_API_DISCONNECT:
	case RC_API_UNSUBSCRIBE: user_action(c, &req, keep_alive); break;
	case RC_API_PRESENCE:
	case RC_API_PRESENCE_STATS:
	case RC_API_HISTORY: query(c, call, &req, keep_alive); break;
	case RC_API_INFO: node_info(c, keep_alive); break;
	case RC_API_TOPICS: topics(c, keep_alive); break;
	default: RC_ASSERT(!"publishes are served above"); break;
	}
}
