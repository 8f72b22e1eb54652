/*
 * shards/conn.c on real io_uring: a slot comes back to the table only after its
 * connection's descriptor closed, with its generation bumped; a completion that still
 * carries the old generation is dropped and counted, never applied to the slot's new
 * connection; and rc_conn_table_validate() holds through it all and catches a broken record.
 * The server side of each step runs in an endpoint's on_message, on the shard thread.
 */
#include "rt_harness.h"

#include "../../shards/conn_rt.h"
#include "../../shards/uring.h"

static uint64_t stale_before; /* shard thread only */

/* A completion on c's slot with generation gen: a NOP tagged like a shutdown. */
static void post_completion(struct rc_conn *c, uint32_t gen)
{
	struct rc_shard *s = c->shard;
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SHUTDOWN, gen, (uint32_t)(c - s->conns)));
}

/*
 * "id": the connection's slot and generation. "stale G": a completion for this slot with
 * generation G. "stale?": stale completions counted since, the record's in-flight count and
 * whether the table checks out. "corrupt": whether the validator passes a record whose
 * generation left its 24 bits, and a table whose live count is off by one (each restored),
 * then the table restored.
 */
static void on_message(struct rc_conn *c, const void *data, size_t len, bool binary, void *ctx)
{
	struct rc_shard *s = c->shard;
	char in[32], out[64];
	unsigned gen = 0;
	int n = 0;
	(void)binary;
	(void)ctx;
	snprintf(in, sizeof(in), "%.*s", (int)len, (const char *)data);
	if (strcmp(in, "id") == 0) {
		n = snprintf(out, sizeof(out), "%u %u", (unsigned)(c - s->conns), c->gen);
	} else if (sscanf(in, "stale %u", &gen) == 1) {
		stale_before = s->stats.stale_cqes;
		post_completion(c, gen);
		n = snprintf(out, sizeof(out), "posted");
	} else if (strcmp(in, "stale?") == 0) {
		n = snprintf(out, sizeof(out), "%llu %u %d",
			     (unsigned long long)(s->stats.stale_cqes - stale_before), c->inflight,
			     rc_conn_table_validate(s));
	} else if (strcmp(in, "corrupt") == 0) {
		c->gen += RC_GEN_MASK + 1;
		bool bad_gen = rc_conn_table_validate(s);
		c->gen -= RC_GEN_MASK + 1;
		s->conns_live++;
		bool bad_count = rc_conn_table_validate(s);
		s->conns_live--;
		n = snprintf(out, sizeof(out), "%d %d %d", bad_gen, bad_count,
			     rc_conn_table_validate(s));
	}
	rc_conn_send(c, out, (size_t)n, false);
}

static void start(struct rt *rt)
{
	static const char *const kv[] = {"shards", "1", "connections_max", "4", NULL};
	struct rc_ws_handler h = {.on_message = on_message};
	rt_create(rt, kv);
	cr_assert(eq(int, rc_app_ws(rt->app, "/t", &h), 0));
	rt_start(rt);
}

/* Opens a connection and asks for its slot and generation. */
static int open_id(struct rt *rt, unsigned *slot, unsigned *gen)
{
	char buf[64];
	int fd = rt_ws_open(rt, "/t", 0);
	rt_send_text(fd, "id");
	cr_assert(eq(int, sscanf(rt_recv_text(fd, buf, sizeof(buf)), "%u %u", slot, gen), 2));
	return fd;
}

/*
 * A closed connection's slot is handed out again with the next generation, and a
 * completion tagged with the old one is dropped and counted: the new connection's in-flight
 * count is untouched and it keeps working.
 */
Test(conn, reused_slot_drops_a_stale_completion, .timeout = 60)
{
	struct rt rt;
	char buf[64], cmd[32];
	unsigned slot_a, gen_a, slot, gen, inflight_before, inflight;
	unsigned long long stale;
	int valid;
	start(&rt);
	rt_ws_close(open_id(&rt, &slot_a, &gen_a));
	/* The kernel hands out free descriptor slots in its own order: at most one round of
	 * the table (conns_cap slots) comes before slot_a again. */
	int fd = -1;
	for (uint32_t i = 0; i <= rt.app->conns_per_shard + rt.app->conns_spare; i++) {
		fd = open_id(&rt, &slot, &gen);
		if (slot == slot_a)
			break;
		rt_ws_close(fd);
		fd = -1;
	}
	cr_assert(fd >= 0, "slot %u was never handed out again", slot_a);
	cr_assert(eq(u32, gen, (gen_a + 1) & RC_GEN_MASK), "one reuse, one generation");
	rt_send_text(fd, "stale?");
	const char *answer = rt_recv_text(fd, buf, sizeof(buf));
	cr_assert(eq(int, sscanf(answer, "%llu %u %d", &stale, &inflight_before, &valid), 3));
	snprintf(cmd, sizeof(cmd), "stale %u", gen_a);
	rt_send_text(fd, cmd);
	cr_assert(eq(str, (char *)rt_recv_text(fd, buf, sizeof(buf)), "posted"));
	rt_send_text(fd, "stale?");
	answer = rt_recv_text(fd, buf, sizeof(buf));
	cr_assert(eq(int, sscanf(answer, "%llu %u %d", &stale, &inflight, &valid), 3));
	cr_assert(eq(u64, (uint64_t)stale, 1), "the stale completion was counted");
	cr_assert(eq(u32, inflight, inflight_before), "and not applied to the new connection");
	cr_assert(eq(int, valid, 1));
	rt_ws_close(fd);
	rt_stop(&rt);
}

/* The validator holds with connections in several states and rejects a broken record. */
Test(conn, validator_catches_a_broken_record, .timeout = 60)
{
	struct rt rt;
	char buf[64];
	unsigned slot, gen;
	start(&rt);
	int http = rt_connect(&rt, 0);
	rt_write(http, "GET /t HTTP/1.1\r\nHost:", 22); /* a request still arriving */
	int a = open_id(&rt, &slot, &gen);
	int b = open_id(&rt, &slot, &gen);
	rt_send_text(b, "corrupt");
	cr_assert(eq(str, (char *)rt_recv_text(b, buf, sizeof(buf)), "0 0 1"));
	rt_ws_close(a);
	rt_send_text(b, "corrupt");
	cr_assert(eq(str, (char *)rt_recv_text(b, buf, sizeof(buf)), "0 0 1"));
	close(http);
	rt_ws_close(b);
	rt_stop(&rt);
}
