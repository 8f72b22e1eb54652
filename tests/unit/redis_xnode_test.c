/*
 * src/redis_xnode: key names, the script's digest, event and control payloads (written and
 * parsed back, whole and cut at every byte), the presence and registry replies decoded by
 * hiredis' redisReader and the JSON answers built from them, with malformed inputs as many
 * as valid ones; and the node_id rules of src/config.c.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "config.h"
#include "redis_xnode.h"

/* The reply RESP text resp encodes, fed in one piece; NULL when it is not one whole reply. */
static redisReply *reply_of(const char *resp)
{
	redisReader *rd = redisReaderCreate();
	void *out = NULL;
	cr_assert(rd != NULL);
	if (redisReaderFeed(rd, resp, strlen(resp)) != REDIS_OK ||
	    redisReaderGetReply(rd, &out) != REDIS_OK)
		out = NULL;
	redisReaderFree(rd);
	return out;
}

Test(redis_xnode, keys)
{
	char k[128];
	const struct {
		enum rc_xnode_key which;
		const char *want;
	} cases[] = {
		{RC_XNODE_KEY_PRESENCE, "p:{chat:a}.p.n1"},
		{RC_XNODE_KEY_PRESENCE_BASE, "p:{chat:a}.p."},
		{RC_XNODE_KEY_TOPIC_NODES, "p:{chat:a}.pn"},
		{RC_XNODE_KEY_NODES, "p:nodes"},
		{RC_XNODE_KEY_NODE, "p:node.n1"},
		{RC_XNODE_KEY_NODE_BASE, "p:node."},
		{RC_XNODE_KEY_CONTROL, "p:!ctl"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = rc_xnode_key(k, sizeof(k), "p:", "chat:a", 6, "n1", cases[i].which);
		cr_assert(eq(str, k, (char *)cases[i].want));
		cr_assert(eq(sz, n, strlen(cases[i].want)));
	}
	cr_assert(eq(sz, rc_xnode_key(k, 8, "p:", "chat:a", 6, "n1", RC_XNODE_KEY_PRESENCE), 0));
}

Test(redis_xnode, script_sha_is_sha1_of_the_text)
{
	char sha[41];
	size_t len;
	const char *text = rc_xnode_script(&len);
	uint8_t md[SHA_DIGEST_LENGTH];
	char want[41];
	SHA1((const uint8_t *)text, len, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	rc_xnode_script_sha(sha);
	cr_assert(eq(str, sha, want));
}

Test(redis_xnode, events_round_trip_and_cut_ones_fail)
{
	const char env[] = "{\"op\":\"join\",\"topic\":\"chat:a\",\"user\":\"u 1\"}";
	size_t len;
	char *p = rc_xnode_write_event('j', "node-1", env, strlen(env), &len);
	struct rc_xnode_event e;
	cr_assert(p != NULL);
	cr_assert(rc_xnode_is_event(p, len));
	cr_assert(eq(int, rc_xnode_parse_event(p, len, &e), 0));
	cr_assert(eq(chr, e.kind, 'j'));
	cr_assert(eq(sz, e.node_len, 6));
	cr_assert(eq(int, memcmp(e.node, "node-1", 6), 0));
	cr_assert(eq(sz, e.data_len, strlen(env)));
	cr_assert(eq(int, memcmp(e.data, env, e.data_len), 0));
	for (size_t cut = 0; cut < len; cut++)
		cr_assert(eq(int, rc_xnode_parse_event(p, cut, &e), -EPROTO), "cut at %zu", cut);
	free(p);
	cr_assert(not(rc_xnode_is_event("12 3 {}", 7)));
	cr_assert(not(rc_xnode_is_event("", 0)));
	const char *bad[] = {"x n {}", "j  {}", "jn {}", "j n x", "j n {", "l n }{x",
			     "j 0123456789012345678901234567890123456789012345678901234567890123456789 {}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, rc_xnode_parse_event(bad[i], strlen(bad[i]), &e), -EPROTO),
			  "%s", bad[i]);
}

Test(redis_xnode, control_messages_round_trip)
{
	char out[512];
	struct rc_xnode_ctl m = {.kind = 'd', .node = "n1", .node_len = 2, .code = 4001,
				 .user = "a user", .user_len = 6},
			    got;
	size_t n = rc_xnode_write_ctl(out, sizeof(out), &m);
	cr_assert(eq(str, out, "d n1 4001 a user"));
	cr_assert(eq(int, rc_xnode_parse_ctl(out, n, &got), 0));
	cr_assert(eq(chr, got.kind, 'd'));
	cr_assert(eq(u16, got.code, 4001));
	cr_assert(eq(sz, got.user_len, 6));
	cr_assert(eq(int, memcmp(got.user, "a user", 6), 0));
	m = (struct rc_xnode_ctl){.kind = 'u', .node = "n2", .node_len = 2, .topic = "chat:x",
				  .topic_len = 6, .user = "42", .user_len = 2};
	n = rc_xnode_write_ctl(out, sizeof(out), &m);
	cr_assert(eq(str, out, "u n2 chat:x 42"));
	cr_assert(eq(int, rc_xnode_parse_ctl(out, n, &got), 0));
	cr_assert(eq(sz, got.topic_len, 6));
	cr_assert(eq(int, memcmp(got.topic, "chat:x", 6), 0));
	for (size_t cut = 0; cut + 2 < n; cut++) /* shorter users are users still */
		cr_assert(eq(int, rc_xnode_parse_ctl(out, cut, &got), -EPROTO), "cut at %zu", cut);
	cr_assert(eq(sz, rc_xnode_write_ctl(out, 8, &m), 0));
}

Test(redis_xnode, malformed_control_messages_are_refused)
{
	struct rc_xnode_ctl got;
	const char *bad[] = {"x n1 4000 u", "d n1 999 u", "d n1 5000 u", "d n1 2000 u",
			     "d n1 4000 ", "u n1 bad!topic u", "u n1  u", "d  4000 u", "d n1 40a0 u",
			     "u n1 chat:x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, rc_xnode_parse_ctl(bad[i], strlen(bad[i]), &got), -EPROTO),
			  "%s", bad[i]);
	cr_assert(eq(int, rc_xnode_parse_ctl("d n1 1000 u", 11, &got), 0));
}

Test(redis_xnode, presence_answers)
{
	redisReply *r = reply_of("*4\r\n:3\r\n:2\r\n:1\r\n*3\r\n"
				 "$23\r\n{\"user\":\"a\",\"conn\":\"1\"}\r\n"
				 "$23\r\n{\"user\":\"a\",\"conn\":\"2\"}\r\n"
				 "$3\r\nbad\r\n");
	struct rc_xnode_presence p;
	size_t skipped, len;
	cr_assert(eq(int, rc_xnode_parse_presence(r, &p), 0));
	cr_assert(p.listed);
	char *json = rc_xnode_write_presence(&p, "presence", "chat:a", 6, true, &skipped, &len);
	cr_assert(eq(str, json,
		     "{\"op\":\"presence\",\"topic\":\"chat:a\",\"connections\":3,\"users\":2,"
		     "\"clients\":[{\"user\":\"a\",\"conn\":\"1\"},{\"user\":\"a\",\"conn\":\"2\"}]}"));
	cr_assert(eq(sz, skipped, 1));
	free(json);
	json = rc_xnode_write_presence(&p, "presence_stats", "chat:a", 6, false, &skipped, &len);
	cr_assert(eq(str, json, "{\"op\":\"presence_stats\",\"topic\":\"chat:a\",\"connections\":3,"
				"\"users\":2}"));
	free(json);
	freeReplyObject(r);
	r = reply_of("*4\r\n:9\r\n:4\r\n:0\r\n*0\r\n");
	cr_assert(eq(int, rc_xnode_parse_presence(r, &p), 0));
	json = rc_xnode_write_presence(&p, "presence", "t", 1, true, &skipped, &len);
	cr_assert(eq(str, json, "{\"op\":\"presence\",\"topic\":\"t\",\"connections\":9,"
				"\"users\":4,\"clients_omitted\":true}"));
	free(json);
	freeReplyObject(r);
}

Test(redis_xnode, malformed_presence_replies_are_refused)
{
	const char *bad[] = {"*3\r\n:1\r\n:1\r\n:1\r\n", "*4\r\n:1\r\n:2\r\n:0\r\n*0\r\n",
			     "*4\r\n:1\r\n:1\r\n:2\r\n*0\r\n", "*4\r\n:1\r\n:1\r\n:1\r\n*0\r\n",
			     "*4\r\n:-1\r\n:0\r\n:0\r\n*0\r\n", "*4\r\n:1\r\n:1\r\n:0\r\n:0\r\n",
			     "-ERR no\r\n", "$2\r\nhi\r\n"};
	struct rc_xnode_presence p;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		redisReply *r = reply_of(bad[i]);
		cr_assert(r != NULL);
		cr_assert(eq(int, rc_xnode_parse_presence(r, &p), -EPROTO), "case %zu", i);
		freeReplyObject(r);
	}
}

Test(redis_xnode, info_adds_the_live_nodes)
{
	const char local[] = "{\"node\":\"h\",\"shards\":2}";
	redisReply *r = reply_of("*3\r\n"
				 "*2\r\n$2\r\nn1\r\n*4\r\n$4\r\nname\r\n$2\r\nh1\r\n$6\r\nshards\r\n$1\r\n4\r\n"
				 "*1\r\n$2\r\nn2\r\n"
				 "*2\r\n$2\r\nn3\r\n*1\r\n$4\r\nname\r\n");
	size_t len;
	char *json = rc_xnode_write_info(local, strlen(local), r, &len);
	cr_assert(eq(str, json, "{\"node\":\"h\",\"shards\":2,\"nodes\":[{\"node\":\"n1\","
				"\"name\":\"h1\",\"shards\":4}]}"));
	free(json);
	freeReplyObject(r);
	json = rc_xnode_write_info(local, strlen(local), NULL, &len);
	cr_assert(eq(str, json, "{\"node\":\"h\",\"shards\":2,\"partial\":true}"));
	free(json);
	cr_assert(rc_xnode_write_info("[1]", 3, NULL, &len) == NULL);
}

Test(redis_xnode, topics_sum_other_nodes_shards)
{
	/* this node "me": its shards' lines come live; me/0 in Redis is left out, "me.x" is
	 * another node (ids may hold '.'), a bad count and a bad name are skipped */
	const char local[] = "a 2\nb 1\n";
	redisReply *r = reply_of("*4\r\n"
				 "*2\r\n$4\r\nme/0\r\n*2\r\n$1\r\na\r\n$2\r\n99\r\n"
				 "*2\r\n$6\r\nme.x/1\r\n*4\r\n$1\r\na\r\n$1\r\n3\r\n"
				 "$1\r\nc\r\n$1\r\nx\r\n"
				 "*2\r\n$4\r\nn2/0\r\n*4\r\n$1\r\nc\r\n$1\r\n5\r\n"
				 "$3\r\na b\r\n$1\r\n1\r\n"
				 "*1\r\n$4\r\nn3/0\r\n");
	size_t len;
	char *json = rc_xnode_write_topics(local, strlen(local), r, "me", &len);
	cr_assert(eq(str, json, "{\"topics\":[{\"topic\":\"a\",\"subscribers\":5},"
				"{\"topic\":\"b\",\"subscribers\":1},"
				"{\"topic\":\"c\",\"subscribers\":5}]}"));
	free(json);
	freeReplyObject(r);
	json = rc_xnode_write_topics(local, strlen(local), NULL, "me", &len);
	cr_assert(eq(str, json, "{\"topics\":[{\"topic\":\"a\",\"subscribers\":2},"
				"{\"topic\":\"b\",\"subscribers\":1}],\"partial\":true}"));
	free(json);
}

Test(redis_xnode, node_ids)
{
	char id[RC_NODE_ID_BYTES_LIMIT + 1];
	cr_assert(rc_node_id_valid("web-1.eu:a_b", 12, false));
	cr_assert(rc_node_id_valid("", 0, true));
	cr_assert(not(rc_node_id_valid("", 0, false)));
	cr_assert(not(rc_node_id_valid("a b", 3, false)));
	cr_assert(not(rc_node_id_valid("a!", 2, false)));
	char long_id[RC_NODE_ID_BYTES_LIMIT + 2];
	memset(long_id, 'x', sizeof(long_id));
	cr_assert(not(rc_node_id_valid(long_id, sizeof(long_id), false)));
	rc_node_id_make(id, sizeof(id), "my host", 42, 0xabcdef01u);
	cr_assert(eq(str, id, "my_host-42-abcdef01"));
	memset(long_id, 'h', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	rc_node_id_make(id, sizeof(id), long_id, 4194304, 1);
	cr_assert(eq(sz, strlen(id), RC_NODE_ID_BYTES_LIMIT));
	cr_assert(rc_node_id_valid(id, strlen(id), false));
}
