/*
 * shards/sendq.c on real io_uring: what one turn queues leaves in one gathered sendmsg, and
 * a reader slower than the sender (small socket buffers both sides) gets every byte of a
 * backlog through many partial sends, complete and in order. The server side of each test
 * is an endpoint whose on_message runs the step on the shard thread (where a broken
 * expectation is an RC_ASSERT: criterion's asserts belong to the test's thread).
 */
#include "rt_harness.h"

#include "../../shards/conn_rt.h"
#include "../../shards/sendq.h"

#define BURST 20
#define FLOOD_FRAMES 100
#define FLOOD_BYTES 65536
#define MANY 5000

#define MORE_FRAMES 3 /* frames queued per "more" */
#define MORE_ROUNDS 30

static uint64_t sends_before; /* shard thread only */
static uint32_t next_frame;   /* shard thread only: the index of the next "more" frame */

static uint8_t pattern(uint32_t frame, uint32_t i)
{
	return (uint8_t)(frame * 31u + i * 7u + (i >> 8));
}

/* Sends binary messages first..first+n-1 of FLOOD_BYTES: the frame index, then a pattern. */
static void send_frames(struct rc_conn *c, uint32_t first, uint32_t n)
{
	static uint8_t buf[FLOOD_BYTES];
	for (uint32_t f = first; f < first + n; f++) {
		memcpy(buf, &f, sizeof(f));
		for (uint32_t i = sizeof(f); i < FLOOD_BYTES; i++)
			buf[i] = pattern(f, i);
		RC_ASSERT(rc_conn_send(c, buf, sizeof(buf), true) == 0);
	}
}

static void flood(struct rc_conn *c)
{
	send_frames(c, 0, FLOOD_FRAMES);
}

/* "burst": BURST messages in one callback; "flood": the backlog; "sends?": the send
 * operations issued since, and whether the connection table checks out. */
static void on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	struct rc_shard *s = c->shard;
	char out[64];
	(void)binary;
	(void)ctx;
	if (len == 5 && memcmp(data, "burst", 5) == 0) {
		sends_before = s->stats.sends;
		for (int i = 0; i < BURST; i++) {
			int n = snprintf(out, sizeof(out), "m%02d", i);
			rc_conn_send(c, out, (size_t)n, false);
		}
	} else if (len == 3 && memcmp(data, "few", 3) == 0) {
		sends_before = s->stats.sends;
		for (int i = 0; i < RC_SEND_IOV_SMALL; i++) {
			int n = snprintf(out, sizeof(out), "f%d", i);
			rc_conn_send(c, out, (size_t)n, false);
		}
	} else if (len == 5 && memcmp(data, "flood", 5) == 0) {
		sends_before = s->stats.sends;
		flood(c);
	} else if (len == 4 && memcmp(data, "more", 4) == 0) {
		if (next_frame == 0)
			sends_before = s->stats.sends;
		send_frames(c, next_frame, MORE_FRAMES);
		next_frame += MORE_FRAMES;
	} else if (len == 4 && memcmp(data, "many", 4) == 0) {
		for (int i = 0; i < MANY; i++)
			RC_ASSERT(rc_conn_send(c, "x", 1, false) == 0);
	} else if (len == 5 && memcmp(data, "pool?", 5) == 0) {
		int n = snprintf(out, sizeof(out), "%llu %u %d",
				 (unsigned long long)s->qring_free_bytes,
				 s->sendop_small_free_count, rc_conn_table_validate(s));
		rc_conn_send(c, out, (size_t)n, false);
	} else {
		int n = snprintf(out, sizeof(out), "%llu %d",
				 (unsigned long long)(s->stats.sends - sends_before),
				 rc_conn_table_validate(s));
		rc_conn_send(c, out, (size_t)n, false);
	}
}

static void start(struct rt *rt)
{
	static const char *const kv[] = {"shards", "1", "connections_max", "16",
					 "send_queue_bytes_max", "67108864", NULL};
	struct rc_ws_handler h = {.on_message = on_message};
	rt_create(rt, kv);
	cr_assert(eq(int, rc_app_ws(rt->app, "/t", &h), 0));
	rt_start(rt);
}

/* Sends "many" and reads the MANY frames it queues at once (a ring of 8192 entries); then
 * asks "pool?": the bytes of empty rings the shard kept, which must be within the pool's
 * bound (the burst's ring went back to the allocator). */
static void burst_returns_nodes(int fd)
{
	char buf[64];
	unsigned free_count = 0, small_ops = 0;
	int valid = 0;
	rt_send_text(fd, "many");
	for (int i = 0; i < MANY; i++)
		cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), "x"));
	rt_send_text(fd, "pool?");
	cr_assert(eq(int,
		     sscanf(rt_recv_text(fd, buf, sizeof(buf)), "%u %u %d", &free_count, &small_ops,
			    &valid),
		     3));
	cr_assert(ge(u32, small_ops, 1), "the small gathered send's operation was pooled");
	cr_assert(le(u32, free_count, RC_QRING_POOL_BYTES), "the burst's big ring was freed");
	cr_assert(gt(u32, free_count, 0), "small rings are kept for reuse");
	cr_assert(eq(int, valid, 1));
}

/* BURST messages queued in one turn go out as one sendmsg, each frame intact, and so do
 * RC_SEND_IOV_SMALL (with a small operation, pooled afterwards); a burst of
 * MANY leaves the shard at most RC_QRING_POOL_BYTES of empty rings. (One test: criterion's
 * runner leaks under LSan when three of these tests share two workers.) */
Test(sendq, gathers_a_turns_frames_and_returns_a_bursts_nodes, .timeout = 60)
{
	struct rt rt;
	char buf[64], want[8];
	start(&rt);
	int fd = rt_ws_open(&rt, "/t", 0);
	rt_send_text(fd, "burst");
	for (int i = 0; i < BURST; i++) {
		snprintf(want, sizeof(want), "m%02d", i);
		cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), want));
	}
	rt_send_text(fd, "sends?");
	cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), "1 1"));
	/* A few frames take a small operation, gathered all the same. */
	rt_send_text(fd, "few");
	for (int i = 0; i < RC_SEND_IOV_SMALL; i++) {
		snprintf(want, sizeof(want), "f%d", i);
		cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), want));
	}
	rt_send_text(fd, "sends?");
	cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), "1 1"));
	burst_returns_nodes(fd);
	rt_ws_close(fd);
	rt_stop(&rt);
}

/* Reads one flood frame slowly, in small reads with pauses, and checks every byte. */
static void read_slowly(int fd, uint32_t want_frame)
{
	static uint8_t buf[FLOOD_BYTES];
	uint8_t op;
	cr_assert(eq(u64, rt_recv_header(fd, &op), FLOOD_BYTES));
	cr_assert(eq(u8, op, 0x2));
	for (size_t off = 0; off < FLOOD_BYTES; off += 4096) {
		rt_read_full(fd, buf + off, 4096);
		if (off % 32768 == 0)
			rt_sleep_ms(1);
	}
	uint32_t f;
	memcpy(&f, buf, sizeof(f));
	cr_assert(eq(u32, f, want_frame), "frames arrive in order");
	for (uint32_t i = sizeof(f); i < FLOOD_BYTES; i++)
		if (buf[i] != pattern(f, i))
			cr_fatal("frame %u byte %u: %u, want %u", f, i, buf[i], pattern(f, i));
}

/* A connection to a started rt whose socket buffers are small on both ends (4 KiB). */
static int open_slow_reader(struct rt *rt)
{
	int small = 4096;
	start(rt);
	/* Accepted sockets inherit the listener's send buffer. */
	int listen_fd = rt->app->shards[0].listen_fd;
	cr_assert(eq(int, setsockopt(listen_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0));
	return rt_ws_open(rt, "/t", small);
}

/* Asks "sends?": more than min sends since the step began, and a table that checks out. */
static void assert_sends_over(int fd, uint64_t min, const char *why)
{
	char buf[64];
	unsigned long long sends = 0;
	int valid = 0;
	rt_send_text(fd, "sends?");
	cr_assert(eq(int, sscanf(rt_recv_text(fd, buf, sizeof(buf)), "%llu %d", &sends, &valid), 2));
	cr_assert(gt(u64, (uint64_t)sends, min), "%s", why);
	cr_assert(eq(int, valid, 1));
}

/*
 * A backlog of 6.4 MB to a reader with 4 KiB socket buffers on both ends: the kernel takes
 * a little of each send, the queue resumes mid-frame, and the bytes arrive whole and in
 * order. More sends than the two a backlog of 100 frames needs without partial sends.
 *
 * Then the queue's ring while the kernel drains it slowly: each "more" queues three 64 KiB
 * frames behind a partial send still in flight, and the reader takes about one frame per
 * request, so the ring's head moves on while frames are appended behind it (its entries
 * wrap around) and it doubles with its contents wrapped, several times (4 to 64 entries).
 * Every frame arrives whole, once, in order. (One test: criterion's runner leaks under LSan
 * when three tests share two workers.)
 */
Test(sendq, partial_sends_and_a_wrapped_ring_keep_every_byte_in_order, .timeout = 180)
{
	struct rt rt;
	int fd = open_slow_reader(&rt);
	rt_send_text(fd, "flood");
	for (uint32_t f = 0; f < FLOOD_FRAMES; f++)
		read_slowly(fd, f);
	assert_sends_over(fd, 2, "partial sends resumed the queue");
	uint32_t read = 0;
	for (int i = 0; i < MORE_ROUNDS; i++) {
		rt_send_text(fd, "more");
		read_slowly(fd, read++);
	}
	while (read < MORE_ROUNDS * MORE_FRAMES)
		read_slowly(fd, read++);
	assert_sends_over(fd, MORE_ROUNDS, "sends went out while frames queued");
	rt_ws_close(fd);
	rt_stop(&rt);
}
