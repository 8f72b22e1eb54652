/*
 * Server-Sent Events on the runtime: the events a GET /sse stream is sent (src/sse.c frames
 * them). A broadcast's SSE variant is shared: its id (topic~seq~epoch) is the same for every
 * subscriber, so one copy per publish serves every stream of every shard. Shard threads.
 */
#include <errno.h>
#include <string.h>

#include "frame.h"
#include "sendq.h"
#include "sse.h"
#include "sse_rt.h"

struct rc_frame *rc_sse_frame(const char *id, size_t idlen, const char *json, size_t n)
{
	size_t len = rc_sse_write_event(NULL, 0, id, idlen, json, n);
	struct rc_frame *f = rc_frame_alloc((uint32_t)len);
	if (!f)
		return NULL;
	size_t w = rc_sse_write_event((char *)f->data, len, id, idlen, json, n);
	RC_ASSERT(w == len);
	return f;
}

int rc_sse_send(struct rc_conn *c, const char *json, size_t n, bool checked)
{
	RC_ASSERT(c->flags & RC_CF_SSE);
	struct rc_frame *f = rc_sse_frame(NULL, 0, json, n);
	if (!f)
		return -ENOMEM;
	return rc_sendq_push(c, f, checked);
}

int rc_sse_heartbeat(struct rc_conn *c)
{
	static const char beat[] = ":\n\n";
	RC_ASSERT(c->flags & RC_CF_SSE);
	int rc = rc_conn_send_raw(c, beat, sizeof(beat) - 1);
	if (rc == 0)
		c->shard->stats.sse_heartbeats++;
	return rc;
}

/* Builds f's SSE variant on shard s: shared, owned by s, the same seq and topic hash (the
 * slow-consumer policies find a topic's frames by them). NULL without memory. */
static struct rc_frame *build(struct rc_shard *s, const struct rc_frame *f, size_t hlen,
			      uint64_t epoch)
{
	char id[RC_SSE_ID_LIMIT];
	const char *json = (const char *)f->data + hlen;
	size_t n = f->len - hlen;
	size_t idlen = rc_sse_write_id(id, f->topic, f->topic_len, f->seq, epoch);
	size_t len = rc_sse_write_event(NULL, 0, id, idlen, json, n);
	struct rc_frame *v = rc_frame_alloc_shared(s, (uint32_t)len);
	if (!v)
		return NULL;
	size_t w = rc_sse_write_event((char *)v->data, len, id, idlen, json, n);
	RC_ASSERT(w == len);
	v->seq = f->seq;
	v->topic_hash = f->topic_hash;
	s->stats.sse_variants++;
	return v;
}

struct rc_frame *rc_sse_variant(struct rc_shard *s, struct rc_frame *f, size_t hlen,
				uint64_t epoch)
{
	RC_ASSERT(f->shared && f->topic != NULL);
	RC_DASSERT(hlen < f->len);
	/* acquire: pairs with the release of the compare-and-swap that installed it. */
	struct rc_frame *v = __atomic_load_n(&f->sse, __ATOMIC_ACQUIRE);
	if (v)
		return v;
	struct rc_frame *mine = build(s, f, hlen, epoch);
	if (!mine)
		return NULL;
	struct rc_frame *expected = NULL;
	/* release: the variant's bytes are visible to every shard that loads the pointer. */
	if (__atomic_compare_exchange_n(&f->sse, &expected, mine, false, __ATOMIC_RELEASE,
					__ATOMIC_ACQUIRE))
		return mine;
	rc_frame_unref(mine); /* another shard installed its copy first */
	RC_ASSERT(expected != NULL);
	return expected;
}
