/*
 * src/sse: GET /sse requests (topics, since, Last-Event-ID, percent-encoding; as many invalid
 * requests as valid ones), positions and the ids written for them, and event framing (id line,
 * one data line per line of the data, the blank line that ends it).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sse.h"

static struct rc_slice S(const char *p)
{
	return (struct rc_slice){p, (uint32_t)strlen(p)};
}

static char buf[4096];

static int parse(const char *query, const char *leid, struct rc_sse_request *req,
		 const char **reason)
{
	return rc_sse_parse(S(query), S(leid), buf, sizeof(buf), req, reason);
}

static bool named(const struct rc_sse_topic *t, const char *name)
{
	return t->name.len == strlen(name) && memcmp(t->name.p, name, t->name.len) == 0;
}

/* Topics in order; since and Last-Event-ID resume theirs; other parameters are ignored. */
Test(sse, topics_since_and_last_event_id)
{
	struct rc_sse_request req;
	const char *reason = NULL;
	cr_assert(eq(int, parse("token=t&topics=a,orders.eu/42,c&since=a~41~9f3c0a61d2b47e85,c~7",
				"orders.eu/42~5~00000000000000ff", &req, &reason), 0));
	cr_assert(eq(u32, req.count, 3));
	cr_assert(named(&req.topics[0], "a"));
	cr_assert(named(&req.topics[1], "orders.eu/42"));
	cr_assert(req.topics[0].has_since);
	cr_assert(req.topics[0].has_epoch);
	cr_assert(eq(u64, req.topics[0].since, 41));
	cr_assert(eq(u64, req.topics[0].epoch, 0x9f3c0a61d2b47e85ull));
	cr_assert(req.topics[1].has_since);
	cr_assert(eq(u64, req.topics[1].epoch, 0xff));
	cr_assert(req.topics[2].has_since);
	cr_assert(not(req.topics[2].has_epoch));
	cr_assert(eq(u64, req.topics[2].since, 7));
}

/* The query's since wins over Last-Event-ID; a Last-Event-ID of another topic is ignored. */
Test(sse, since_overrides_last_event_id)
{
	struct rc_sse_request req;
	const char *reason = NULL;
	cr_assert(eq(int, parse("topics=a&since=a~3~0000000000000001", "a~9~0000000000000001",
				&req, &reason), 0));
	cr_assert(eq(u64, req.topics[0].since, 3));
	cr_assert(eq(int, parse("topics=a", "b~9~0000000000000001", &req, &reason), 0));
	cr_assert(not(req.topics[0].has_since));
	cr_assert(eq(int, parse("topics=a", "garbage", &req, &reason), 0));
	cr_assert(not(req.topics[0].has_since));
}

/* Percent-encoded values (URLSearchParams encodes , : / ~) decode; empty elements skip. */
Test(sse, percent_encoding)
{
	struct rc_sse_request req;
	const char *reason = NULL;
	cr_assert(eq(int, parse("topics=a%2Cb%3Ac%2F1,&since=a%7E2%7E0000000000000abc", "", &req,
				&reason), 0));
	cr_assert(eq(u32, req.count, 2));
	cr_assert(named(&req.topics[1], "b:c/1"));
	cr_assert(eq(u64, req.topics[0].epoch, 0xabc));
}

/* An epoch that is not 16 lowercase hex digits reads as 0: the owner answers a reset. */
Test(sse, odd_epoch_reads_as_zero)
{
	struct rc_sse_topic t;
	cr_assert(rc_sse_parse_position("a~1~ABCDEF0123456789", 19, &t));
	cr_assert(t.has_epoch);
	cr_assert(eq(u64, t.epoch, 0));
	cr_assert(rc_sse_parse_position("a~1~abc", 7, &t));
	cr_assert(eq(u64, t.epoch, 0));
}

/* Every malformed request is refused with a reason. */
Test(sse, invalid_requests)
{
	static const char *const bad[] = {
		"",			      /* no topics */
		"topics=",		      /* empty list */
		"topics=,,",		      /* only empty elements */
		"topics=a%2",		      /* truncated escape */
		"topics=a%zz",		      /* bad escape */
		"topics=a b",		      /* bad topic character */
		"topics=a,a",		      /* a topic twice */
		"topics=a&since=b~1",	      /* since of a topic not requested */
		"topics=a&since=a",	      /* since without seq */
		"topics=a&since=a~x",	      /* seq not a number */
		"topics=a&since=a~18446744073709551616", /* seq overflows */
		"topics=a&since=a~",	      /* empty seq */
	};
	struct rc_sse_request req;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *reason = NULL;
		cr_assert(eq(int, parse(bad[i], "", &req, &reason), -EINVAL), "%s", bad[i]);
		cr_assert(reason != NULL);
	}
}

/* More than RC_SSE_TOPICS_LIMIT topics, or a decode buffer too small, is refused. */
Test(sse, limits)
{
	char q[1024] = "topics=";
	struct rc_sse_request req;
	const char *reason = NULL;
	for (int i = 0; i <= RC_SSE_TOPICS_LIMIT; i++)
		snprintf(q + strlen(q), sizeof(q) - strlen(q), "t%d,", i);
	cr_assert(eq(int, parse(q, "", &req, &reason), -EINVAL));
	cr_assert(eq(str, (char *)reason, "too many topics"));
	cr_assert(eq(int, rc_sse_parse(S("topics=abc"), S(""), buf, 2, &req, &reason), -EINVAL));
}

/* An id names topic, seq and epoch, and parses back. */
Test(sse, id_round_trip)
{
	char id[RC_SSE_ID_LIMIT];
	struct rc_sse_topic t;
	size_t n = rc_sse_write_id(id, "orders.eu", 9, 58, 0x9f3c0a61d2b47e85ull);
	cr_assert(eq(int, memcmp(id, "orders.eu~58~9f3c0a61d2b47e85", n), 0));
	cr_assert(rc_sse_parse_position(id, n, &t));
	cr_assert(eq(u64, t.since, 58));
	cr_assert(eq(u64, t.epoch, 0x9f3c0a61d2b47e85ull));
}

/* An event: id line, one data line per line (CR, LF, CRLF), the blank line; sized first. */
Test(sse, event_framing)
{
	char out[128];
	const char *d = "{\"a\":\n1}\r\n\r";
	size_t need = rc_sse_write_event(NULL, 0, "t~1~x", 5, d, strlen(d));
	cr_assert(eq(sz, rc_sse_write_event(out, need - 1, "t~1~x", 5, d, strlen(d)), need));
	cr_assert(eq(sz, rc_sse_write_event(out, sizeof(out), "t~1~x", 5, d, strlen(d)), need));
	static const char want[] = "id: t~1~x\ndata: {\"a\":\ndata: 1}\ndata: \ndata: \n\n";
	cr_assert(eq(sz, need, sizeof(want) - 1));
	cr_assert(eq(int, memcmp(out, want, need), 0));
	need = rc_sse_write_event(out, sizeof(out), NULL, 0, "{}", 2);
	cr_assert(eq(int, memcmp(out, "data: {}\n\n", need), 0));
}
