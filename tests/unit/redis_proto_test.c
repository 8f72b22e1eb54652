/*
 * src/redis_proto: topic placement (stable, spread, minimal movement when an instance is
 * removed), addresses, key names, the script's digest, and the parsers of script replies,
 * stream entries and channel messages on replies decoded by hiredis' redisReader, with as
 * many malformed inputs as valid ones.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_proto.h"

/* Decodes one RESP reply from text (whole); the caller frees it. */
static redisReply *decode(const char *resp)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;
	cr_assert(r != NULL);
	cr_assert(eq(int, redisReaderFeed(r, resp, strlen(resp)), REDIS_OK));
	cr_assert(eq(int, redisReaderGetReply(r, &reply), REDIS_OK));
	cr_assert(reply != NULL);
	redisReaderFree(r);
	return reply;
}

Test(redis_proto, pick_is_stable_and_spreads)
{
	const char *addrs[] = {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"};
	int per[3] = {0};
	char t[32];
	for (int i = 0; i < 3000; i++) {
		int n = snprintf(t, sizeof(t), "topic-%d", i);
		uint32_t a = rc_redis_pick(addrs, 3, t, (size_t)n);
		cr_assert(lt(u32, a, 3));
		cr_assert(eq(u32, a, rc_redis_pick(addrs, 3, t, (size_t)n)));
		per[a]++;
	}
	for (int k = 0; k < 3; k++)
		cr_assert(gt(int, per[k], 800), "instance %d holds %d of 3000", k, per[k]);
}

Test(redis_proto, pick_moves_only_the_removed_instances_topics)
{
	const char *three[] = {"a:1", "b:2", "c:3"};
	const char *two[] = {"a:1", "b:2"};
	char t[32];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(t, sizeof(t), "t%d", i);
		uint32_t before = rc_redis_pick(three, 3, t, (size_t)n);
		uint32_t after = rc_redis_pick(two, 2, t, (size_t)n);
		if (before < 2)
			cr_assert(eq(u32, before, after));
	}
	cr_assert(eq(u32, rc_redis_pick(three, 1, "x", 1), 0));
}

Test(redis_proto, addresses)
{
	char host[64];
	uint16_t port;
	cr_assert(eq(int, rc_redis_parse_address("127.0.0.1:6379", host, sizeof(host), &port), 0));
	cr_assert(eq(str, host, "127.0.0.1"));
	cr_assert(eq(u16, port, 6379));
	cr_assert(eq(int, rc_redis_parse_address("[::1]:7000", host, sizeof(host), &port), 0));
	cr_assert(eq(str, host, "::1"));
	cr_assert(eq(int, rc_redis_parse_address("redis:1", host, sizeof(host), &port), 0));
	const char *bad[] = {"", "host", ":6379", "h:0", "h:65536", "h:x", "h:", "[]:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, rc_redis_parse_address(bad[i], host, sizeof(host), &port),
			     -EINVAL), "%s", bad[i]);
	cr_assert(eq(int, rc_redis_parse_address("toolong:1", host, 4, &port), -EINVAL));
}

Test(redis_proto, keys)
{
	char k[64];
	cr_assert(eq(sz, rc_redis_key(k, sizeof(k), "rc:", "news", 4, RC_REDIS_KEY_META), 11));
	cr_assert(eq(str, k, "rc:{news}.m"));
	rc_redis_key(k, sizeof(k), "", "a", 1, RC_REDIS_KEY_DEDUP);
	cr_assert(eq(str, k, "{a}.d."));
	cr_assert(eq(sz, rc_redis_key(k, 8, "rc:", "news", 4, RC_REDIS_KEY_STREAM), 0));
}

Test(redis_proto, script_sha_is_sha1_of_the_text)
{
	char sha[41];
	size_t len;
	rc_redis_script_sha(sha);
	cr_assert(eq(sz, strlen(sha), 40));
	cr_assert(rc_redis_script(&len) != NULL);
	cr_assert(gt(sz, len, 100));
	for (int i = 0; i < 40; i++)
		cr_assert(strchr("0123456789abcdef", sha[i]) != NULL);
}

/* The next message of ms is seq with data (seq 0: there is none). */
static void next_is(struct rc_redis_msgs *ms, uint64_t seq, const char *data)
{
	struct rc_redis_msg m;
	bool more = rc_redis_msgs_next(ms, &m);
	cr_assert(eq(int, more, seq != 0));
	if (!more)
		return;
	cr_assert(eq(u64, m.seq, seq));
	cr_assert(eq(sz, m.data_len, strlen(data)));
	cr_assert(eq(int, memcmp(m.data, data, m.data_len), 0));
}

Test(redis_proto, publish_and_replay_results)
{
	struct rc_redis_result res;
	redisReply *r = decode("*3\r\n:7\r\n$2\r\n42\r\n:0\r\n");
	cr_assert(eq(int, rc_redis_parse_result(r, &res), 0));
	cr_assert(eq(u64, res.seq, 7));
	cr_assert(eq(u64, res.epoch, 42));
	cr_assert(not(res.duplicate));
	cr_assert(res.entries == NULL);
	freeReplyObject(r);
	r = decode("*3\r\n:7\r\n$2\r\n42\r\n:1\r\n");
	cr_assert(eq(int, rc_redis_parse_result(r, &res), 0));
	cr_assert(res.duplicate);
	freeReplyObject(r);
	r = decode("*3\r\n:2\r\n$1\r\n9\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\ns\r\n$1\r\n2\r\n"
		   "$1\r\nd\r\n$4\r\n\"hi\"\r\n");
	cr_assert(eq(int, rc_redis_parse_result(r, &res), 0));
	cr_assert(res.entries != NULL);
	cr_assert(eq(sz, res.entries->elements, 1));
	struct rc_redis_msgs ms;
	cr_assert(eq(int, rc_redis_parse_entry(res.entries->element[0], &ms), 0));
	next_is(&ms, 2, "\"hi\"");
	next_is(&ms, 0, NULL);
	freeReplyObject(r);
}

Test(redis_proto, stream_entry_with_several_messages)
{
	redisReply *r = decode("*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$14\r\n4:2 9 1 3 xabc\r\n");
	struct rc_redis_msgs ms;
	cr_assert(eq(int, rc_redis_parse_entry(r, &ms), 0));
	cr_assert(eq(u64, ms.epoch, 9));
	next_is(&ms, 4, "x");
	next_is(&ms, 5, "abc");
	next_is(&ms, 0, NULL);
	freeReplyObject(r);
}

Test(redis_proto, batch_items)
{
	struct rc_redis_result res;
	redisReply *r = decode("*9\r\n:3\r\n$2\r\n42\r\n:0\r\n:3\r\n$2\r\n42\r\n:1\r\n"
			       ":5\r\n$1\r\n7\r\n:2\r\n");
	cr_assert(eq(int, rc_redis_parse_item(r, 3, 0, &res), 0));
	cr_assert(eq(u64, res.seq, 3));
	cr_assert(eq(u64, res.epoch, 42));
	cr_assert(not(res.duplicate || res.refused));
	cr_assert(eq(int, rc_redis_parse_item(r, 3, 1, &res), 0));
	cr_assert(res.duplicate && !res.refused);
	cr_assert(eq(int, rc_redis_parse_item(r, 3, 2, &res), 0));
	cr_assert(res.refused && !res.duplicate);
	cr_assert(eq(u64, res.epoch, 7));
	cr_assert(eq(int, rc_redis_parse_item(r, 2, 0, &res), -EPROTO)); /* not 3 per item */
	freeReplyObject(r);
	const char *bad[] = {
		"*3\r\n:1\r\n$1\r\n2\r\n:3\r\n",
		"*3\r\n:1\r\n$1\r\n2\r\n:-1\r\n",
		"*3\r\n:1\r\n$1\r\n2\r\n*0\r\n",
		"*3\r\n:1\r\n$1\r\n0\r\n:0\r\n",
		"-ERR oom\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = decode(bad[i]);
		cr_assert(eq(int, rc_redis_parse_item(r, 1, 0, &res), -EPROTO), "case %zu", i);
		freeReplyObject(r);
	}
}

Test(redis_proto, malformed_results_are_refused)
{
	const char *bad[] = {
		"+OK\r\n",
		"-NOSCRIPT No matching script\r\n",
		"*2\r\n:1\r\n$1\r\n2\r\n",
		"*3\r\n:-1\r\n$1\r\n2\r\n:0\r\n",
		"*3\r\n:1\r\n$1\r\nx\r\n:0\r\n",
		"*3\r\n:1\r\n$1\r\n0\r\n:0\r\n",
		"*3\r\n:1\r\n$1\r\n2\r\n$1\r\n0\r\n",
		"*3\r\n:1\r\n$21\r\n184467440737095516160\r\n:0\r\n",
	};
	struct rc_redis_result res;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		redisReply *r = decode(bad[i]);
		cr_assert(eq(int, rc_redis_parse_result(r, &res), -EPROTO), "case %zu", i);
		freeReplyObject(r);
	}
	const char *bad_entries[] = {
		"*1\r\n$3\r\n1-0\r\n",
		"*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\ns\r\n",
		"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\ns\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\ns\r\n$1\r\nz\r\n$1\r\nd\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\n1-0\r\n*2\r\n$2\r\nss\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\ns\r\n$1\r\n0\r\n$1\r\nd\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$7\r\n1:2 1 1\r\n", /* a bad payload */
	};
	struct rc_redis_msgs ms;
	for (size_t i = 0; i < sizeof(bad_entries) / sizeof(bad_entries[0]); i++) {
		redisReply *r = decode(bad_entries[i]);
		int rc = rc_redis_parse_entry(r, &ms);
		cr_assert(eq(int, rc, -EPROTO), "entry %zu", i);
		freeReplyObject(r);
	}
}

/* Parses payload p whole: the messages it holds, at most cap, into out; their count or -1. */
static int messages(const char *p, size_t n, struct rc_redis_msg *out, int cap)
{
	struct rc_redis_msgs m;
	int k = 0;
	if (rc_redis_parse_msgs(p, n, &m) != 0)
		return -1;
	while (k < cap && rc_redis_msgs_next(&m, &out[k]))
		k++;
	bool more = rc_redis_msgs_next(&m, &out[0]); /* never more than announced */
	cr_assert(eq(int, more, false));
	return k;
}

Test(redis_proto, channel_message_one)
{
	struct rc_redis_msg m[2];
	const char ok[] = "12 345 {\"a\": 1}";
	cr_assert(eq(int, messages(ok, sizeof(ok) - 1, m, 2), 1));
	cr_assert(eq(u64, m[0].seq, 12));
	cr_assert(eq(u64, m[0].epoch, 345));
	cr_assert(eq(sz, m[0].data_len, 8));
	cr_assert(eq(int, memcmp(m[0].data, "{\"a\": 1}", 8), 0));
	cr_assert(eq(int, messages("1 2 ", 4, m, 2), 1));
	cr_assert(eq(sz, m[0].data_len, 0));
	const char *bad[] = {"", "1", "1 2", "x 2 d", "1 x d", "0 2 d", "1 0 d", " 1 2 d",
			     "1  2 d", "99999999999999999999999 1 d", "j 1 2",
			     "18446744073709551615:2 1 1 1 ab"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, messages(bad[i], strlen(bad[i]), m, 2), -1), "%s", bad[i]);
}

Test(redis_proto, channel_message_several)
{
	struct rc_redis_msg m[4];
	const char ok[] = "7:3 9 2 0 5 {}hello";
	cr_assert(eq(int, messages(ok, sizeof(ok) - 1, m, 4), 3));
	const char *want[] = {"{}", "", "hello"};
	for (int i = 0; i < 3; i++) {
		cr_assert(eq(u64, m[i].seq, 7 + (uint64_t)i));
		cr_assert(eq(u64, m[i].epoch, 9));
		cr_assert(eq(sz, m[i].data_len, strlen(want[i])));
		cr_assert(eq(int, memcmp(m[i].data, want[i], m[i].data_len), 0));
	}
	/* Data holding spaces and digits is taken by length, not by its text. */
	const char spaced[] = "1:2 3 3 4 1 2 3 4";
	cr_assert(eq(int, messages(spaced, sizeof(spaced) - 1, m, 4), 2));
	cr_assert(eq(int, memcmp(m[0].data, "1 2", 3), 0));
	cr_assert(eq(int, memcmp(m[1].data, " 3 4", 4), 0));
	const char *bad[] = {"1:1 2 1 a",      /* several means two at least */
			     "1:2 2 1 1 abc",  /* the lengths do not add up */
			     "1:2 2 1 1 a",    /* nor here */
			     "1:2 2 1 ab",     /* one length missing */
			     "1:2 2 1 x ab",   /* not a length */
			     "1:x 2 1 1 ab", "1: 2 1 1 ab", ":2 2 1 1 ab", "0:2 2 1 1 ab",
			     "1:2 0 1 1 ab", "1:1025 2 1 1 ab", "1:2 2 99999999999999999999 1 ab"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, messages(bad[i], strlen(bad[i]), m, 4), -1), "%s", bad[i]);
}

/* Feeds resp to a reader bounded at max bytes per reply: its first reply, or NULL on failure
 * with *exceeded telling why. */
static redisReply *bounded_decode(const char *resp, size_t max, bool *exceeded)
{
	struct rc_redis_bound b;
	redisReader *r = rc_redis_reader_create(&b, max);
	void *reply = NULL;
	cr_assert(r != NULL);
	cr_assert(eq(int, redisReaderFeed(r, resp, strlen(resp)), REDIS_OK));
	if (redisReaderGetReply(r, &reply) != REDIS_OK || rc_redis_reader_over(r, &b))
		reply = NULL;
	*exceeded = b.exceeded;
	redisReaderFree(r);
	return reply;
}

Test(redis_proto, bounded_reader_refuses_huge_declarations)
{
	bool exceeded;
	redisReply *ok = bounded_decode("*2\r\n$3\r\nabc\r\n:5\r\n", 4096, &exceeded);
	cr_assert(ok != NULL && !exceeded);
	cr_assert(eq(sz, ok->elements, 2));
	freeReplyObject(ok);
	/* An array that would take 7.9 GB of pointers before any element arrived. */
	cr_assert(bounded_decode("*993399379\r\n", 1 << 20, &exceeded) == NULL && exceeded);
	cr_assert(bounded_decode("*3000000000\r\n", 1 << 20, &exceeded) == NULL); /* > INT_MAX */
	/* Many small objects adding up past the bound; a nested array likewise. */
	const char four[] = "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n";
	cr_assert(bounded_decode(four, 4 * sizeof(redisReply), &exceeded) == NULL && exceeded);
	cr_assert(bounded_decode("*1\r\n*1\r\n$200\r\n", 64, &exceeded) == NULL && exceeded);
	/* A string still arriving that the reader already buffers past the bound. */
	char big[300];
	snprintf(big, sizeof(big), "$1000000\r\n%0250d", 0);
	cr_assert(bounded_decode(big, 128, &exceeded) == NULL && exceeded);
	/* Not the bound's failure: a protocol error. */
	cr_assert(bounded_decode("?\r\n", 4096, &exceeded) == NULL && !exceeded);
}
