/*
 * The memory budget's books on real io_uring (shards/mem.h and its callers): partial frames
 * are charged to frame_assembly while held, and once every client is gone and its topics are
 * forgotten each category a client can fill is back to where it started. Debug builds then
 * check at rc_app_destroy that every category, the shards' own buffers included, is 0.
 */
#include "rt_harness.h"

static void echo(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	(void)ctx;
	rc_conn_send(c, data, len, binary);
}

static uint64_t bytes(struct rt *rt, enum rc_budget_category cat)
{
	return rc_budget_category_bytes(&rt->app->budget, cat);
}

/* Waits until category cat holds want bytes (it moves on the shard's thread). */
static void wait_bytes(struct rt *rt, enum rc_budget_category cat, uint64_t want)
{
	for (int i = 0; i < 20000 && bytes(rt, cat) != want; i++)
		rt_sleep_ms(1);
	cr_assert(eq(u64, bytes(rt, cat), want), "%s", rc_budget_category_name(cat));
}

/* The first part of a masked binary frame announcing 4000 bytes: 1000 of them. */
static void send_partial(int fd)
{
	uint8_t buf[8 + 1000] = {0x82, 0x80 | 126, 4000 >> 8, 4000 & 0xff, 1, 2, 3, 4};
	memset(buf + 8, 'p', 1000);
	rt_write(fd, buf, sizeof(buf));
}

Test(memory_rt, books_return_to_zero_when_clients_leave, .timeout = 60)
{
	const char *const kv[] = {"shards", "1", "topic_forget_ms", "1", "history_age_max_ms", "1",
				  "memory_count_kernel", "0", NULL};
	struct rc_ws_handler h = {.on_message = echo};
	struct rt rt;
	char buf[256];

	rt_create(&rt, kv);
	cr_assert(eq(int, rc_app_ws(rt.app, "/echo", &h), 0));
	cr_assert(eq(int, rc_app_pubsub(rt.app, "/ws", "/publish"), 0));
	rt_start(&rt);
	uint64_t topics = bytes(&rt, RC_BUDGET_topics); /* the empty topic tables */
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = rt_ws_open(&rt, "/echo", 0);
		send_partial(fds[i]);
	}
	for (int i = 0; i < 20000 && bytes(&rt, RC_BUDGET_frame_assembly) < 3000; i++)
		rt_sleep_ms(1);
	cr_assert(ge(u64, bytes(&rt, RC_BUDGET_frame_assembly), 3000));
	cr_assert(le(u64, bytes(&rt, RC_BUDGET_frame_assembly), 3 * (1000 + 512)));
	int sub = rt_ws_open(&rt, "/ws", 0);
	rt_send_text(sub, "{\"op\":\"sub\",\"topic\":\"t\"}");
	rt_recv_text(sub, buf, sizeof(buf));
	cr_assert(gt(u64, bytes(&rt, RC_BUDGET_topics), topics));
	cr_assert(eq(int, rc_publish(rt.app, "t", 1, "1", 1, NULL), 0));
	rt_recv_text(sub, buf, sizeof(buf));
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	rt_ws_close(sub);
	wait_bytes(&rt, RC_BUDGET_frame_assembly, 0);
	wait_bytes(&rt, RC_BUDGET_http, 0);
	wait_bytes(&rt, RC_BUDGET_send_queue, 0);
	/* History ages out and the topic is forgotten by the once-a-second sweeps. */
	wait_bytes(&rt, RC_BUDGET_topics, topics);
	wait_bytes(&rt, RC_BUDGET_history, 0);
	wait_bytes(&rt, RC_BUDGET_broadcast, 0);
	wait_bytes(&rt, RC_BUDGET_outbox, 0);
	rt_stop(&rt);
}
