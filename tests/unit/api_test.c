/* The server API's requests (src/api.c): call names, the fields each call takes and their
 * ranges, defaults, and the error body. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

static struct rc_api_req req;
static const char *reason;

static int parse(enum rc_api_call call, const char *body)
{
	return rc_api_parse(call, body, strlen(body), &req, &reason);
}

Test(api, names_its_calls)
{
	cr_assert(eq(int, rc_api_call_of("presence_stats", 14), RC_API_PRESENCE_STATS));
	cr_assert(eq(int, rc_api_call_of("presence", 8), RC_API_PRESENCE));
	cr_assert(eq(int, rc_api_call_of("presenc", 7), RC_API_CALL_COUNT));
	cr_assert(eq(str, (char *)rc_api_call_name(RC_API_BROADCAST), "broadcast"));
}

Test(api, reads_each_calls_fields)
{
	cr_assert(eq(int, parse(RC_API_DISCONNECT, "{\"user\":\"u-1\"}"), 0));
	cr_assert(eq(str, req.user, "u-1"));
	cr_assert(eq(u16, req.code, RC_API_CLOSE_CODE_DEFAULT));
	cr_assert(eq(int, parse(RC_API_DISCONNECT, "{\"user\":\"u\",\"code\":1000}"), 0));
	cr_assert(eq(u16, req.code, 1000));
	cr_assert(eq(int, parse(RC_API_UNSUBSCRIBE, "{\"user\":\"u\",\"topic\":\"a:b\"}"), 0));
	cr_assert(eq(str, req.topic, "a:b"));
	cr_assert(eq(int, parse(RC_API_HISTORY, "{\"topic\":\"t\",\"since\":9007199254740991}"),
		     0));
	cr_assert(eq(u64, req.since, 9007199254740991ull));
	cr_assert(eq(u32, req.limit, RC_API_HISTORY_DEFAULT));
	cr_assert(eq(int, parse(RC_API_INFO, ""), 0));
	cr_assert(eq(int, parse(RC_API_TOPICS, "{}"), 0));
}

Test(api, refuses_what_a_call_does_not_take)
{
	const char *bad[][2] = {
		{"", "presence"},
		{"[]", "presence"},
		{"{\"topic\":\"a b\"}", "presence"},
		{"{\"topic\":\"t\",\"topic\":\"t\"}", "presence"},
		{"{\"topic\":\"t\",\"user\":\"u\"}", "presence"},
		{"{\"user\":\"\"}", "disconnect"},
		{"{\"user\":\"u\",\"code\":1001}", "disconnect"},
		{"{\"user\":\"u\",\"code\":5000}", "disconnect"},
		{"{\"user\":\"u\",\"code\":3000.5}", "disconnect"},
		{"{\"user\":\"u\"}", "unsubscribe"},
		{"{\"topic\":\"t\",\"limit\":1001}", "history"},
		{"{\"topic\":\"t\",\"since\":-1}", "history"},
		{"{\"x\":1}", "info"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum rc_api_call call = rc_api_call_of(bad[i][1], strlen(bad[i][1]));
		cr_assert(eq(int, parse(call, bad[i][0]), -EINVAL), "%s", bad[i][0]);
		cr_assert(reason != NULL);
	}
}

Test(api, writes_errors)
{
	char out[128];
	size_t n = rc_api_write_error(out, sizeof(out), 404, "no \"such\" call");
	cr_assert(eq(str, out, "{\"error\":{\"code\":404,\"reason\":\"no \\\"such\\\" call\"}}"));
	cr_assert(eq(sz, n, strlen(out)));
	cr_assert(eq(sz, rc_api_write_error(out, 10, 404, "too long for it"), 0));
}

Test(api, merges_the_shards_topic_lists)
{
	const char in[] = "b 2\na:x 1\n\nb 3\n";
	size_t len;
	char *out = rc_api_write_topics(in, sizeof(in) - 1, &len);
	cr_assert(eq(str, out, "{\"topics\":[{\"topic\":\"a:x\",\"subscribers\":1},"
			       "{\"topic\":\"b\",\"subscribers\":5}]}"));
	cr_assert(eq(sz, len, strlen(out)));
	free(out);
	out = rc_api_write_topics("\n\n", 2, &len);
	cr_assert(eq(str, out, "{\"topics\":[]}"));
	free(out);
	cr_assert(eq(ptr, rc_api_write_topics("b\n", 2, &len), NULL));
	cr_assert(eq(ptr, rc_api_write_topics("b 1", 3, &len), NULL));
}
