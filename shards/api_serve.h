/*
 * The server API for backends (api_serve.c): POST /api/NAME with a JSON body on the admin
 * listener, or on the public port with api_key; JSON answers, errors as
 * {"error":{"code":HTTP status,"reason":...}}. Publishes go through pubsub_proto, queries to
 * topic owners through pub/sub and come back through the answer hook. Shard threads.
 */
#ifndef RC_API_SERVE_H
#define RC_API_SERVE_H

#include "runtime.h"

/* Serves /api/name[0..nlen) (the api conn hook): body borrowed for the call; the answer may
 * follow later (publishes, presence, history). */
void rc_api_serve(struct rc_conn *c, const char *name, size_t nlen, bool authorized, bool post,
		  const char *body, size_t len, bool keep_alive);

#endif
