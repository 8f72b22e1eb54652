/*
 * shards/pubsub.c on real io_uring, through the embedding API: rc_conn_subscribe and
 * rc_conn_unsubscribe from an endpoint's callbacks, rc_publish from the test's own thread
 * (a foreign thread), and the JSON protocol of rc_app_pubsub for resuming with since.
 * rc_pubsub_validate() and rc_conn_table_validate() check the shard after each step, and
 * the validator is shown to catch a broken count.
 */
#include "rt_harness.h"

#include "../../shards/conn_rt.h"
#include "../../shards/pubsub.h"

/* "sub T" / "unsub T": the embedding API's answer. "check": subscriptions held by the shard
 * and both validators. "corrupt": whether the validator passes a topic whose subscriber
 * count is off by one (restored), then the shard restored. */
static void on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	struct rc_shard *s = c->shard;
	char in[64], out[64];
	int n = 0;
	(void)binary;
	(void)ctx;
	snprintf(in, sizeof(in), "%.*s", (int)len, (const char *)data);
	if (strncmp(in, "sub ", 4) == 0) {
		n = snprintf(out, sizeof(out), "sub %d", rc_conn_subscribe(c, in + 4, len - 4));
	} else if (strncmp(in, "unsub ", 6) == 0) {
		n = snprintf(out, sizeof(out), "unsub %d", rc_conn_unsubscribe(c, in + 6, len - 6));
	} else if (strcmp(in, "check") == 0) {
		n = snprintf(out, sizeof(out), "%llu %d %d",
			     (unsigned long long)s->stats.subscriptions, rc_pubsub_validate(s),
			     rc_conn_table_validate(s));
	} else if (strcmp(in, "corrupt") == 0) {
		RC_ASSERT(c->subs != NULL);
		c->subs->topic->count++;
		bool broken = rc_pubsub_validate(s);
		c->subs->topic->count--;
		n = snprintf(out, sizeof(out), "%d %d", broken, rc_pubsub_validate(s));
	}
	rc_conn_send(c, out, (size_t)n, false);
}

static void start(struct rt *rt, const char *shards)
{
	const char *const kv[] = {"shards", shards, "connections_max", "64",
				  "history_messages_max", "3", NULL};
	struct rc_ws_handler h = {.on_message = on_message};
	rt_create(rt, kv);
	cr_assert(eq(int, rc_app_ws(rt->app, "/api", &h), 0));
	cr_assert(eq(int, rc_app_pubsub(rt->app, "/ws", "/publish"), 0));
	rt_start(rt);
}

/* rc_publish from this (foreign) thread; a full inbox is retried, never lost. */
static void publish(struct rt *rt, const char *topic, const char *data)
{
	int rc;
	while ((rc = rc_publish(rt->app, topic, strlen(topic), data, strlen(data), NULL)) ==
	       -EAGAIN)
		rt_sleep_ms(1);
	cr_assert(eq(int, rc, 0));
}

static void expect(int fd, const char *want)
{
	char buf[256];
	cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), (char *)want));
}

/* Message seq of topic, whose data is the number seq. */
static void expect_msg(int fd, const char *topic, int seq)
{
	char want[128];
	snprintf(want, sizeof(want), "{\"op\":\"msg\",\"topic\":\"%s\",\"seq\":%d,\"data\":%d}",
		 topic, seq, seq);
	expect(fd, want);
}

/*
 * An answer carrying the topic's epoch: want holds "epoch":"E" where 16 hex digits must be,
 * the same as *epoch if that is set already (else *epoch takes them).
 */
static void expect_epoch(int fd, const char *want, char epoch[17])
{
	char buf[256];
	const char *got = rt_recv_text(fd, buf, sizeof(buf));
	const char *at = strstr(got, "\"epoch\":\"");
	cr_assert(at != NULL, "no epoch in %s", got);
	at += 9;
	cr_assert(ge(sz, strlen(at), 17u));
	if (!epoch[0])
		memcpy(epoch, at, 16);
	cr_assert(eq(int, memcmp(at, epoch, 16), 0), "epoch %.16s, was %s", at, epoch);
	char norm[256];
	snprintf(norm, sizeof(norm), "%.*sE%s", (int)(at - got), got, at + 16);
	cr_assert(eq(str, norm, (char *)want));
}

static void ask(int fd, const char *cmd, const char *want)
{
	rt_send_text(fd, cmd);
	expect(fd, want);
}

/*
 * Subscribe, receive in order, refuse a second subscription, unsubscribe; messages to a
 * topic left stop at once (one shard: a later publish to another topic arrives first).
 * Closing the connection drops its subscriptions.
 */
Test(pubsub_rt, subscribe_and_unsubscribe_through_the_api, .timeout = 60)
{
	struct rt rt;
	start(&rt, "1");
	int fd = rt_ws_open(&rt, "/api", 0);
	ask(fd, "sub t", "sub 0");
	publish(&rt, "t", "{\"n\":1}");
	publish(&rt, "t", "[2]");
	expect(fd, "{\"op\":\"msg\",\"topic\":\"t\",\"seq\":1,\"data\":{\"n\":1}}");
	expect(fd, "{\"op\":\"msg\",\"topic\":\"t\",\"seq\":2,\"data\":[2]}");
	ask(fd, "sub t", "sub -17");
	ask(fd, "sub bad topic", "sub -22");
	ask(fd, "sub u", "sub 0");
	ask(fd, "check", "2 1 1");
	ask(fd, "unsub t", "unsub 0");
	ask(fd, "unsub t", "unsub -2");
	publish(&rt, "t", "3");
	publish(&rt, "u", "4");
	expect(fd, "{\"op\":\"msg\",\"topic\":\"u\",\"seq\":1,\"data\":4}");
	ask(fd, "check", "1 1 1");
	ask(fd, "corrupt", "0 1");
	rt_ws_close(fd);
	fd = rt_ws_open(&rt, "/api", 0);
	ask(fd, "check", "0 1 1");
	rt_ws_close(fd);
	rt_stop(&rt);
}

/*
 * Resume over two shards: a subscriber with since gets what history still holds after it
 * (a gap for what history lost: it keeps 3), then the ack with the current seq, then live
 * messages in order like every other subscriber.
 */
Test(pubsub_rt, resume_with_since_replays_then_goes_live, .timeout = 60)
{
	struct rt rt;
	char data[16], epoch[17] = "";
	start(&rt, "2");
	int live = rt_ws_open(&rt, "/ws", 0);
	rt_send_text(live, "{\"op\":\"sub\",\"topic\":\"r\"}");
	expect_epoch(live, "{\"op\":\"ack\",\"of\":\"sub\",\"topic\":\"r\",\"epoch\":\"E\"}",
		     epoch);
	for (int i = 1; i <= 6; i++) {
		snprintf(data, sizeof(data), "%d", i);
		publish(&rt, "r", data);
	}
	/* Once the live subscriber has them all, the owner has sequenced them. */
	for (int i = 1; i <= 6; i++) {
		expect_msg(live, "r", i);
	}
	int resumed = rt_ws_open(&rt, "/ws", 0);
	rt_send_text(resumed, "{\"op\":\"sub\",\"topic\":\"r\",\"since\":1}");
	expect_epoch(resumed,
		     "{\"op\":\"gap\",\"topic\":\"r\",\"from\":2,\"to\":3,\"epoch\":\"E\"}",
		     epoch);
	for (int i = 4; i <= 6; i++) {
		expect_msg(resumed, "r", i);
	}
	expect_epoch(resumed,
		     "{\"op\":\"ack\",\"of\":\"sub\",\"topic\":\"r\",\"seq\":6,\"epoch\":\"E\"}",
		     epoch);
	publish(&rt, "r", "7");
	expect_msg(live, "r", 7);
	expect_msg(resumed, "r", 7);
	rt_send_text(resumed, "{\"op\":\"unsub\",\"topic\":\"r\"}");
	expect(resumed, "{\"op\":\"ack\",\"of\":\"unsub\",\"topic\":\"r\"}");
	int api = rt_ws_open(&rt, "/api", 0);
	rt_send_text(api, "check");
	char buf[64];
	unsigned long long subs;
	int pubsub_ok = 0, table_ok = 0;
	const char *answer = rt_recv_text(api, buf, sizeof(buf));
	cr_assert(eq(int, sscanf(answer, "%llu %d %d", &subs, &pubsub_ok, &table_ok), 3));
	cr_assert(eq(int, pubsub_ok, 1));
	cr_assert(eq(int, table_ok, 1));
	rt_ws_close(api);
	rt_ws_close(resumed);
	rt_ws_close(live);
	rt_stop(&rt);
}
