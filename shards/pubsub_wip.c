/* Temporary no-op pub/sub hooks while the pub/sub modules are being written. */
#include <stdlib.h>
#include "runtime.h"

int rc_pubsub_init(struct rc_shard *s)
{
	s->outbox = calloc((size_t)s->app->shards_count, sizeof(*s->outbox));
	return s->outbox ? 0 : -1;
}
void rc_pubsub_free(struct rc_shard *s)
{
	free(s->outbox);
	s->outbox = NULL;
}
void rc_pubsub_poll(struct rc_shard *s)
{
	(void)s;
}
void rc_pubsub_sweep(struct rc_shard *s)
{
	(void)s;
}
void rc_pubsub_conn_closed(struct rc_conn *c)
{
	(void)c;
}
void rc_proto_http_publish(struct rc_conn *c, const char *body, size_t len)
{
	(void)c;
	(void)body;
	(void)len;
}
