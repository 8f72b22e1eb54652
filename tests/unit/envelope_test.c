/*
 * Unit tests for src/envelope.c: every client op valid and invalid (more invalid vectors than
 * valid ones), POST /publish bodies single and batched, the exact bytes of every writer,
 * JSON escaping, large numbers, and topic-name charset and length edges. Parser inputs end
 * at a PROT_NONE guard page, so reading one byte past the input faults.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "envelope.h"

#define NO_SINCE (-1)
/* "ünïcödé 😀", split where a letter would extend a hex escape. */
#define UNICODE "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 \xf0\x9f\x98\x80"
#define GUARD_SPAN (1u << 20)

static char data_buf[4096];

/* Copies s[0..len) so that it ends exactly at a PROT_NONE page. */
static const char *at_guard(const char *s, size_t len)
{
	static char *base;
	long page = sysconf(_SC_PAGESIZE);

	if (!base) {
		base = mmap(NULL, GUARD_SPAN + (size_t)page, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert(base != MAP_FAILED);
		cr_assert(eq(int, mprotect(base + GUARD_SPAN, (size_t)page, PROT_NONE), 0));
	}
	cr_assert(le(sz, len, (size_t)GUARD_SPAN));
	memcpy(base + GUARD_SPAN - len, s, len);
	return base + GUARD_SPAN - len;
}

static enum rc_envelope_err parse_n(const char *s, size_t len, struct rc_envelope *e,
				    size_t data_cap, const char **reason)
{
	cr_assert(le(sz, data_cap, sizeof(data_buf)));
	return rc_envelope_parse(at_guard(s, len), len, e, data_buf, data_cap, reason);
}

static enum rc_envelope_err parse(const char *s, struct rc_envelope *e, const char **reason)
{
	return parse_n(s, strlen(s), e, sizeof(data_buf), reason);
}

/* ---- valid client messages --------------------------------------------------------------- */
struct valid {
	const char *in;
	enum rc_envelope_op op;
	const char *topic; /* "" for ping */
	int64_t since;     /* NO_SINCE when absent */
	const char *id;    /* NULL when absent */
	const char *data;  /* expected compact data, NULL when absent */
};

static const struct valid valids[] = {
	{ "{\"op\":\"sub\",\"topic\":\"orders.eu/42\"}", RC_ENVELOPE_OP_SUB, "orders.eu/42",
	  NO_SINCE, NULL, NULL },
	{ "{\"op\":\"sub\",\"topic\":\"a\",\"since\":17}", RC_ENVELOPE_OP_SUB, "a", 17, NULL,
	  NULL },
	{ "{\"op\":\"sub\",\"topic\":\"a\",\"since\":0}", RC_ENVELOPE_OP_SUB, "a", 0, NULL, NULL },
	{ "{\"op\":\"sub\",\"topic\":\"a\",\"since\":9007199254740991}", RC_ENVELOPE_OP_SUB, "a",
	  9007199254740991LL, NULL, NULL },
	{ "{\"op\":\"unsub\",\"topic\":\"chat:room-7\"}", RC_ENVELOPE_OP_UNSUB, "chat:room-7",
	  NO_SINCE, NULL, NULL },
	{ "{\"op\":\"ping\"}", RC_ENVELOPE_OP_PING, "", NO_SINCE, NULL, NULL },
	{ " \r\n\t{ \"op\" : \"ping\" } \n", RC_ENVELOPE_OP_PING, "", NO_SINCE, NULL, NULL },
	{ "{\"op\":\"ping\",\"x\":{\"deep\":[1,{\"y\":null}]},\"z\":\"w\"}", RC_ENVELOPE_OP_PING,
	  "", NO_SINCE, NULL, NULL },
	{ "{ \"op\" : \"pub\" , \"topic\":\"t\", \"data\": { \"a\" : [1, 2 ,3], \"b\":\"x y\" } }",
	  RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL, "{\"a\":[1,2,3],\"b\":\"x y\"}" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":[0.30000000000000004,9007199254740993,1e400,"
	  "12345678901234567890,-0,-1.5e-3,1E+2]}",
	  RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL,
	  "[0.30000000000000004,9007199254740993,1e400,12345678901234567890,-0,-1.5e-3,1E+2]" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"a\\\"b\\\\c\\u00e9\\n\\/\"}",
	  RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL, "\"a\\\"b\\\\c\\u00e9\\n\\/\"" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"" UNICODE "\"}", RC_ENVELOPE_OP_PUB, "t",
	  NO_SINCE, NULL, "\"" UNICODE "\"" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":null}", RC_ENVELOPE_OP_PUB, "t", NO_SINCE,
	  NULL, "null" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":true}", RC_ENVELOPE_OP_PUB, "t", NO_SINCE,
	  NULL, "true" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":{ }}", RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL,
	  "{}" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":[ ]}", RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL,
	  "[]" },
	{ "{\"data\":[1],\"topic\":\"t\",\"op\":\"pub\"}", RC_ENVELOPE_OP_PUB, "t", NO_SINCE, NULL,
	  "[1]" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"id\":\"k-1\"}", RC_ENVELOPE_OP_PUB, "t",
	  NO_SINCE, "k-1", "1" },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"id\":\"q\\\"\\u00e9\\t\"}",
	  RC_ENVELOPE_OP_PUB, "t", NO_SINCE, "q\"\xc3\xa9\t", "1" },
	{ "{\"op\":\"sub\",\"topic\":\"orders\\/eu\"}", RC_ENVELOPE_OP_SUB, "orders/eu", NO_SINCE,
	  NULL, NULL },
	{ "{\"\\u006fp\":\"sub\",\"topic\":\"t\"}", RC_ENVELOPE_OP_SUB, "t", NO_SINCE, NULL, NULL },
	{ "{\"op\":\"sub\",\"topic\":\"AZaz09_.:/-\"}", RC_ENVELOPE_OP_SUB, "AZaz09_.:/-", NO_SINCE,
	  NULL, NULL },
};

static void check_valid(const struct valid *v, const struct rc_envelope *e)
{
	cr_assert(eq(int, (int)e->op, (int)v->op), "%s", v->in);
	cr_assert(eq(str, (char *)e->topic, (char *)v->topic), "%s", v->in);
	cr_assert(eq(u32, e->topic_len, (uint32_t)strlen(v->topic)));
	cr_assert(eq(int, e->has_since, v->since != NO_SINCE), "%s", v->in);
	if (v->since != NO_SINCE)
		cr_assert(eq(u64, e->since, (uint64_t)v->since), "%s", v->in);
	cr_assert(eq(u32, e->id_len, v->id ? (uint32_t)strlen(v->id) : 0u), "%s", v->in);
	if (v->id)
		cr_assert(eq(str, (char *)e->id, (char *)v->id), "%s", v->in);
	if (!v->data) {
		cr_assert(e->data == NULL, "%s", v->in);
		return;
	}
	cr_assert(e->data != NULL, "%s", v->in);
	cr_assert(eq(str, (char *)e->data, (char *)v->data), "%s", v->in);
	cr_assert(eq(u32, e->data_len, (uint32_t)strlen(v->data)));
}

Test(envelope, parses_every_valid_vector)
{
	for (size_t i = 0; i < sizeof(valids) / sizeof(valids[0]); i++) {
		struct rc_envelope e;
		const char *reason = "unset";

		cr_assert(eq(int, parse(valids[i].in, &e, &reason), RC_ENVELOPE_OK), "%s: %s",
			  valids[i].in, reason ? reason : "");
		cr_assert(reason == NULL);
		check_valid(&valids[i], &e);
	}
}

/* The same data written with different whitespace yields the same bytes. */
Test(envelope, data_is_compacted_identically)
{
	static const char *const ins[] = {
		"{\"op\":\"pub\",\"topic\":\"t\",\"data\":{\"a\":[1,{\"b\":\" x \"}]}}",
		"{\"op\":\"pub\",\"topic\":\"t\",\"data\" :\n"
		"{ \"a\" :\t[ 1 ,\r\n{ \"b\" : \" x \" } ] } }",
	};
	char first[256];

	for (size_t i = 0; i < 2; i++) {
		struct rc_envelope e;
		const char *reason;

		cr_assert(eq(int, parse(ins[i], &e, &reason), RC_ENVELOPE_OK));
		if (i == 0)
			snprintf(first, sizeof(first), "%s", e.data);
		cr_assert(eq(str, (char *)e.data, first));
	}
	cr_assert(eq(str, first, "{\"a\":[1,{\"b\":\" x \"}]}"));
}

/* Data exactly at the limit fits; one byte more does not. */
Test(envelope, data_limit_is_exact)
{
	const char *in = "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"abcdef\"}";
	struct rc_envelope e;
	const char *reason;

	cr_assert(eq(int, parse_n(in, strlen(in), &e, 9, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(u32, e.data_len, 8));
	cr_assert(eq(int, parse_n(in, strlen(in), &e, 8, &reason), RC_ENVELOPE_ERR_DATA_TOO_LARGE));
	cr_assert(eq(str, (char *)reason, "\"data\" is larger than allowed"));
}

/* A deep but legal nesting passes through whole. */
Test(envelope, deep_data)
{
	char in[1024], want[512];
	size_t n = 0, w = 0;
	struct rc_envelope e;
	const char *reason;

	n += (size_t)snprintf(in, sizeof(in), "{\"op\":\"pub\",\"topic\":\"t\",\"data\":");
	for (int i = 0; i < 200; i++)
		in[n++] = '[', want[w++] = '[';
	for (int i = 0; i < 200; i++)
		in[n++] = ']', want[w++] = ']';
	in[n++] = '}';
	in[n] = '\0';
	want[w] = '\0';
	cr_assert(eq(int, parse(in, &e, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(str, (char *)e.data, want));
}

/* ---- invalid client messages ------------------------------------------------------------- */
struct invalid {
	const char *in;
	enum rc_envelope_err err;
};

static const struct invalid invalids[] = {
	{ "", RC_ENVELOPE_ERR_JSON },
	{ "   \n", RC_ENVELOPE_ERR_JSON },
	{ "hello", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"sub\"", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"ping\"} x", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"ping\"}{\"op\":\"ping\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"ping\",}", RC_ENVELOPE_ERR_JSON },
	{ "{'op':'ping'}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"\xff\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"\xed\xa0\x80\"}", RC_ENVELOPE_ERR_JSON },
	{ "\xef\xbb\xbf{\"op\":\"ping\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":01}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1.}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":.5}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":+1}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":NaN}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":tru}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"a\x01z\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"a\\u0000z\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"sub\",\"topic\":\"a\\u0000b\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"\\ud800\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":\"\\x41\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\x0b\"ping\"}", RC_ENVELOPE_ERR_JSON },
	{ "{\"op\":\"ping\"\x01}", RC_ENVELOPE_ERR_JSON },
	{ "[{\"op\":\"ping\"}]", RC_ENVELOPE_ERR_NOT_OBJECT },
	{ "\"ping\"", RC_ENVELOPE_ERR_NOT_OBJECT },
	{ "42", RC_ENVELOPE_ERR_NOT_OBJECT },
	{ "null", RC_ENVELOPE_ERR_NOT_OBJECT },
	{ "{}", RC_ENVELOPE_ERR_OP },
	{ "{\"topic\":\"t\"}", RC_ENVELOPE_ERR_OP },
	{ "{\"op\":1,\"topic\":\"t\"}", RC_ENVELOPE_ERR_OP },
	{ "{\"op\":null}", RC_ENVELOPE_ERR_OP },
	{ "{\"op\":[\"sub\"]}", RC_ENVELOPE_ERR_OP },
	{ "{\"op\":\"SUB\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_UNKNOWN_OP },
	{ "{\"op\":\"subscribe\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_UNKNOWN_OP },
	{ "{\"op\":\"msg\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_UNKNOWN_OP },
	{ "{\"op\":\"\"}", RC_ENVELOPE_ERR_UNKNOWN_OP },
	{ "{\"op\":\"sub\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"unsub\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"pub\",\"data\":1}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"a b\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"caf\xc3\xa9\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"a#\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"a*\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"a\\\"b\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":\"a\\nb\"}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":5}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":null}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"sub\",\"topic\":[\"t\"]}", RC_ENVELOPE_ERR_TOPIC },
	{ "{\"op\":\"pub\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_DATA },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"id\":\"x\"}", RC_ENVELOPE_ERR_DATA },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":-1}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":1.5}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":1.0}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":1e3}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":\"5\"}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":9007199254740992}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":99999999999999999999999}",
	  RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":true}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":null}", RC_ENVELOPE_ERR_SINCE },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"id\":\"\"}", RC_ENVELOPE_ERR_ID },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"id\":5}", RC_ENVELOPE_ERR_ID },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"id\":null}", RC_ENVELOPE_ERR_ID },
	{ "{\"op\":\"ping\",\"op\":\"ping\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"a\",\"topic\":\"b\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"data\":2}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"\\u0074opic\":\"u\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"unsub\",\"topic\":\"t\",\"since\":1}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"since\":1}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"data\":1}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"id\":\"x\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"ping\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":1,\"epoch\":5}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":1,\"epoch\":null}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"a\",\"epoch\":\"a\"}",
	  RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"epoch\":\"a\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"unsub\",\"topic\":\"t\",\"epoch\":\"a\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"refresh\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"refresh\",\"token\":\"\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"refresh\",\"token\":5}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"refresh\",\"token\":\"a\",\"token\":\"b\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"refresh\",\"token\":\"a\",\"topic\":\"t\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"pub\",\"topic\":\"t\",\"data\":1,\"token\":\"a\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"unsub\",\"topic\":\"t\",\"token\":\"a\"}", RC_ENVELOPE_ERR_FIELD },
	{ "{\"op\":\"sub\",\"topic\":\"t\",\"token\":null}", RC_ENVELOPE_ERR_FIELD },
};

/* A refresh carries a token; so may a sub (a channel token). Both are copied into the data
 * buffer, unescaped. */
Test(envelope, reads_tokens_of_refresh_and_sub)
{
	struct rc_envelope e;
	const char *reason = NULL;
	cr_assert(eq(int, parse("{\"op\":\"refresh\",\"token\":\"a.b\\/c\"}", &e, &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(int, (int)e.op, (int)RC_ENVELOPE_OP_REFRESH));
	cr_assert(eq(str, (char *)e.token, "a.b/c"));
	cr_assert(eq(u32, e.token_len, 5));
	cr_assert(eq(u32, e.topic_len, 0));
	cr_assert(eq(int, parse("{\"op\":\"sub\",\"topic\":\"t\",\"since\":3,\"token\":\"x.y.z\"}",
				&e, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(str, (char *)e.token, "x.y.z"));
	cr_assert(eq(u64, e.since, 3));
	cr_assert(eq(int, parse("{\"op\":\"sub\",\"topic\":\"t\"}", &e, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(ptr, (void *)e.token, NULL));
	cr_assert(eq(str, (char *)rc_envelope_op_name(RC_ENVELOPE_OP_REFRESH), "refresh"));
	cr_assert(eq(int, parse("{\"op\":\"presence\",\"topic\":\"chat:a\"}", &e, &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(int, (int)e.op, (int)RC_ENVELOPE_OP_PRESENCE));
	cr_assert(eq(str, e.topic, "chat:a"));
	cr_assert(eq(int, parse("{\"op\":\"presence_stats\",\"topic\":\"a\"}", &e, &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(int, (int)e.op, (int)RC_ENVELOPE_OP_PRESENCE_STATS));
	cr_assert(eq(int, parse("{\"op\":\"presence\"}", &e, &reason), RC_ENVELOPE_ERR_TOPIC));
	cr_assert(eq(int, parse("{\"op\":\"presence\",\"topic\":\"a\",\"since\":1}", &e,
				&reason), RC_ENVELOPE_ERR_FIELD));
	cr_assert(eq(str, (char *)rc_envelope_err_name(RC_ENVELOPE_ERR_TOKEN), "token"));
}

/* An epoch of 16 lowercase hex digits is read; any other string is kept as 0, an epoch no
 * topic has, so resuming with it gets a reset rather than an error. */
Test(envelope, reads_the_epoch_of_a_sub)
{
	static const struct {
		const char *in;
		uint64_t epoch;
	} cases[] = {
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"since\":3,\"epoch\":\"00c0ffee12345678\"}",
		  0x00c0ffee12345678ull },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"ffffffffffffffff\",\"since\":3}",
		  UINT64_MAX },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"00C0FFEE12345678\"}", 0 },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"00c0ffee1234567\"}", 0 },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"00c0ffee123456789\"}", 0 },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"\"}", 0 },
		{ "{\"op\":\"sub\",\"topic\":\"t\",\"epoch\":\"0x00c0ffee123456\"}", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rc_envelope e;
		const char *reason = NULL;

		cr_assert(eq(int, (int)parse(cases[i].in, &e, &reason), (int)RC_ENVELOPE_OK), "%s",
			  cases[i].in);
		cr_assert(e.has_epoch, "%s", cases[i].in);
		cr_assert(eq(u64, e.epoch, cases[i].epoch), "%s", cases[i].in);
	}
}

Test(envelope, rejects_every_invalid_vector)
{
	cr_assert(ge(sz, sizeof(invalids) / sizeof(invalids[0]),
		     sizeof(valids) / sizeof(valids[0])));
	for (size_t i = 0; i < sizeof(invalids) / sizeof(invalids[0]); i++) {
		struct rc_envelope e;
		const char *reason = NULL;
		enum rc_envelope_err err = parse(invalids[i].in, &e, &reason);

		cr_assert(eq(int, (int)err, (int)invalids[i].err), "vector %zu %s: got %s (%s)", i,
			  invalids[i].in, rc_envelope_err_name(err), reason ? reason : "-");
		cr_assert(reason != NULL && reason[0] != '\0', "vector %zu has no reason", i);
	}
}

/* NUL bytes, which C-string vectors cannot hold: between tokens, in a string, at the end. */
Test(envelope, rejects_raw_nul_bytes)
{
	static const char *const ins[] = {
		"{\"op\":\0\"ping\"}",
		"{\"op\":\"pi\0ng\"}",
		"{\"op\":\"ping\"}\0",
		"\0{\"op\":\"ping\"}",
	};
	static const size_t lens[] = { 15, 15, 15, 15 };

	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
		struct rc_envelope e;
		const char *reason;

		cr_assert(eq(int, parse_n(ins[i], lens[i], &e, sizeof(data_buf), &reason),
			     RC_ENVELOPE_ERR_JSON), "vector %zu", i);
	}
}

/* Parses pre + fill_len bytes of 'x' + post. */
static enum rc_envelope_err parse_filled(const char *pre, size_t fill_len, const char *post,
					 struct rc_envelope *e, const char **reason)
{
	char in[512], fill[256];

	cr_assert(lt(sz, fill_len, sizeof(fill)));
	memset(fill, 'x', fill_len);
	fill[fill_len] = '\0';
	snprintf(in, sizeof(in), "%s%s%s", pre, fill, post);
	return parse(in, e, reason);
}

/* Topic and id length limits, at and past the edge; more than 16 keys. */
Test(envelope, length_limits)
{
	const char *sub = "{\"op\":\"sub\",\"topic\":\"";
	const char *pub = "{\"op\":\"pub\",\"topic\":\"t\",\"data\":0,\"id\":\"";
	struct rc_envelope e;
	const char *reason;
	char in[512];

	cr_assert(eq(int, parse_filled(sub, RC_TOPIC_BYTES_LIMIT, "\"}", &e, &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(u32, e.topic_len, RC_TOPIC_BYTES_LIMIT));
	cr_assert(eq(int, parse_filled(sub, RC_TOPIC_BYTES_LIMIT + 1, "\"}", &e, &reason),
		     RC_ENVELOPE_ERR_TOPIC));
	cr_assert(eq(str, (char *)reason, "\"topic\" must be 1 to 128 bytes long"));
	cr_assert(eq(int, parse_filled(pub, RC_ENVELOPE_ID_BYTES_LIMIT, "\"}", &e, &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(u32, e.id_len, RC_ENVELOPE_ID_BYTES_LIMIT));
	cr_assert(eq(int, parse_filled(pub, RC_ENVELOPE_ID_BYTES_LIMIT + 1, "\"}", &e, &reason),
		     RC_ENVELOPE_ERR_ID));

	size_t n = (size_t)snprintf(in, sizeof(in), "{\"op\":\"ping\"");
	for (int k = 1; k < RC_ENVELOPE_KEYS_LIMIT; k++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, ",\"k%d\":%d", k, k);
	snprintf(in + n, sizeof(in) - n, "}");
	cr_assert(eq(int, parse(in, &e, &reason), RC_ENVELOPE_OK), "16 keys");
	snprintf(in + n, sizeof(in) - n, ",\"k99\":0}");
	cr_assert(eq(int, parse(in, &e, &reason), RC_ENVELOPE_ERR_FIELD), "17 keys");
}

/* Every byte value as a one-byte topic: valid exactly for the documented charset. */
Test(envelope, topic_charset)
{
	const char *ok = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/-";

	for (int c = 0; c < 256; c++) {
		char s[1] = { (char)c };
		bool want = c != 0 && strchr(ok, c) != NULL;

		cr_assert(eq(int, rc_topic_name_valid(s, 1), want), "byte 0x%02x", c);
	}
	cr_assert(not(rc_topic_name_valid("", 0)));
	cr_assert(rc_topic_name_valid("orders.eu/42", 12));
	cr_assert(not(rc_topic_name_valid("orders eu", 9)));
	cr_assert(rc_topic_name_valid("#u-42", 5) && rc_topic_personal("#u-42", 5));
	cr_assert(not(rc_topic_name_valid("##", 2)));
	cr_assert(not(rc_topic_name_valid("a#", 2)));
	cr_assert(not(rc_topic_personal("#", 1)));
	cr_assert(not(rc_topic_personal("u", 1)));
}

/* ---- POST /publish bodies ---------------------------------------------------------------- */
static enum rc_envelope_err parse_pub(const char *s, struct rc_envelope *items, uint32_t max,
				      uint32_t *count, size_t data_cap, const char **reason)
{
	size_t len = strlen(s);

	return rc_envelope_parse_publish(at_guard(s, len), len, items, max, count, data_buf,
					 data_cap, reason);
}

Test(envelope, publish_single_object)
{
	struct rc_envelope items[4];
	uint32_t count = 99;
	const char *reason;

	cr_assert(eq(int,
		     parse_pub("{\"topic\":\"a/b\",\"data\":{\"x\": 1},\"id\":\"r1\"}", items, 4,
			       &count, sizeof(data_buf), &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(u32, count, 1));
	cr_assert(eq(int, (int)items[0].op, RC_ENVELOPE_OP_PUB));
	cr_assert(eq(str, items[0].topic, "a/b"));
	cr_assert(eq(str, (char *)items[0].data, "{\"x\":1}"));
	cr_assert(eq(str, items[0].id, "r1"));
}

Test(envelope, publish_batch)
{
	struct rc_envelope items[4];
	uint32_t count = 0;
	const char *reason;

	cr_assert(eq(int,
		     parse_pub(" [ {\"topic\":\"a\",\"data\":1} ,\n"
			       "{\"data\":[2, 3],\"topic\":\"b\"},"
			       "{\"topic\":\"c\",\"data\":\"s\",\"id\":\"k\"} ] ",
			       items, 4, &count, sizeof(data_buf), &reason),
		     RC_ENVELOPE_OK));
	cr_assert(eq(u32, count, 3));
	cr_assert(eq(str, items[0].topic, "a"));
	cr_assert(eq(str, (char *)items[0].data, "1"));
	cr_assert(eq(str, items[1].topic, "b"));
	cr_assert(eq(str, (char *)items[1].data, "[2,3]"));
	cr_assert(eq(str, items[2].topic, "c"));
	cr_assert(eq(str, (char *)items[2].data, "\"s\""));
	cr_assert(eq(str, items[2].id, "k"));
	cr_assert(eq(u32, items[2].id_len, 1));
	/* Packed one after another, NUL-separated. */
	cr_assert(eq(ptr, (void *)items[1].data, (void *)(items[0].data + 2)));
}

Test(envelope, publish_invalid_bodies)
{
	static const struct {
		const char *in;
		uint32_t max;
		enum rc_envelope_err err;
		uint32_t at;
	} bad[] = {
		{ "[]", 4, RC_ENVELOPE_ERR_BATCH, 0 },
		{ "[{\"topic\":\"a\",\"data\":1},{\"topic\":\"b\",\"data\":2}]", 1,
		  RC_ENVELOPE_ERR_BATCH, 0 },
		{ "[{\"topic\":\"a\",\"data\":1},{\"topic\":\"b c\",\"data\":2}]", 4,
		  RC_ENVELOPE_ERR_TOPIC, 1 },
		{ "[{\"topic\":\"a\",\"data\":1},{\"topic\":\"b\"}]", 4, RC_ENVELOPE_ERR_DATA, 1 },
		{ "[1]", 4, RC_ENVELOPE_ERR_NOT_OBJECT, 0 },
		{ "[{\"topic\":\"a\",\"data\":1},[]]", 4, RC_ENVELOPE_ERR_NOT_OBJECT, 1 },
		{ "\"x\"", 4, RC_ENVELOPE_ERR_NOT_OBJECT, 0 },
		{ "{\"op\":\"pub\",\"topic\":\"a\",\"data\":1}", 4, RC_ENVELOPE_ERR_FIELD, 0 },
		{ "{\"topic\":\"a\",\"data\":1,\"since\":3}", 4, RC_ENVELOPE_ERR_FIELD, 0 },
		{ "{\"topic\":\"a\",\"data\":1,\"id\":7}", 4, RC_ENVELOPE_ERR_ID, 0 },
		{ "[{\"topic\":\"a\",\"data\":1}", 4, RC_ENVELOPE_ERR_JSON, 0 },
		{ "[{\"topic\":\"a\",\"data\":1}] [", 4, RC_ENVELOPE_ERR_JSON, 0 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rc_envelope items[4];
		uint32_t count = 99;
		const char *reason = NULL;
		enum rc_envelope_err err =
			parse_pub(bad[i].in, items, bad[i].max, &count, sizeof(data_buf), &reason);

		cr_assert(eq(int, (int)err, (int)bad[i].err), "%s: got %s (%s)", bad[i].in,
			  rc_envelope_err_name(err), reason ? reason : "-");
		cr_assert(eq(u32, count, bad[i].at), "%s", bad[i].in);
		cr_assert(reason != NULL);
	}
}

/* The data buffer is shared by a batch: the item that overflows it is named. */
Test(envelope, publish_batch_data_overflow)
{
	struct rc_envelope items[4];
	uint32_t count = 0;
	const char *reason;
	const char *in = "[{\"topic\":\"a\",\"data\":\"12345\"},"
			 "{\"topic\":\"b\",\"data\":\"12345\"}]";

	/* "12345" with quotes is 7 bytes + NUL = 8 per item. */
	cr_assert(eq(int, parse_pub(in, items, 4, &count, 16, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(int, parse_pub(in, items, 4, &count, 15, &reason),
		     RC_ENVELOPE_ERR_DATA_TOO_LARGE));
	cr_assert(eq(u32, count, 1));
	/* Two items fill the buffer exactly: a third finds no room at all. */
	in = "[{\"topic\":\"a\",\"data\":\"12345\"},{\"topic\":\"b\",\"data\":\"12345\"},"
	     "{\"topic\":\"c\",\"data\":1}]";
	cr_assert(eq(int, parse_pub(in, items, 4, &count, 16, &reason),
		     RC_ENVELOPE_ERR_DATA_TOO_LARGE));
	cr_assert(eq(u32, count, 2));
	cr_assert(eq(int, parse_pub(in, items, 4, &count, 18, &reason), RC_ENVELOPE_OK));
	cr_assert(eq(u32, count, 3));
}

/* ---- writers ----------------------------------------------------------------------------- */
/* Checks that out[0..n) holds exactly the bytes of want. */
static void expect_bytes(const char *out, size_t n, const char *want)
{
	cr_assert(eq(sz, n, strlen(want)), "got %.*s", (int)n, out);
	cr_assert(eq(int, memcmp(out, want, n), 0), "got %.*s", (int)n, out);
}

Test(envelope, msg_exact_bytes)
{
	char out[256];
	size_t n = rc_envelope_write_msg(out, sizeof(out), "orders.eu/42", 12, 7, "{\"a\":1}", 7);

	expect_bytes(out, n,
		     "{\"op\":\"msg\",\"topic\":\"orders.eu/42\",\"seq\":7,\"data\":{\"a\":1}}");
	cr_assert(eq(sz, n, rc_envelope_msg_len(12, 7, 7)));
	n = rc_envelope_write_msg(out, sizeof(out), "t", 1, 0, "null", 4);
	expect_bytes(out, n, "{\"op\":\"msg\",\"topic\":\"t\",\"seq\":0,\"data\":null}");
	n = rc_envelope_write_msg(out, sizeof(out), "t", 1, 1ull << 53, "1", 1);
	expect_bytes(out, n,
		     "{\"op\":\"msg\",\"topic\":\"t\",\"seq\":9007199254740992,\"data\":1}");
	n = rc_envelope_write_msg(out, sizeof(out), "t", 1, UINT64_MAX, "1", 1);
	expect_bytes(out, n,
		     "{\"op\":\"msg\",\"topic\":\"t\",\"seq\":18446744073709551615,\"data\":1}");
	cr_assert(eq(sz, n, rc_envelope_msg_len(1, UINT64_MAX, 1)));
}

/* Every writer returns 0 for every capacity below its length, and the length at it. */
Test(envelope, writers_refuse_short_buffers)
{
	char out[256];
	size_t full[5];

	full[0] = rc_envelope_write_msg(out, sizeof(out), "topic", 5, 12345, "[1,2]", 5);
	full[1] = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_PUB, "topic", 5, 9, 7,
					"i\"d", 3);
	full[2] = rc_envelope_write_error(out, sizeof(out), RC_ENVELOPE_ERR_TOPIC, "a\nb\"c");
	full[3] = rc_envelope_write_gap(out, sizeof(out), "topic", 5, 3, 90, 7);
	full[4] = rc_envelope_write_reset(out, sizeof(out), "topic", 5, 7, 90);
	for (size_t cap = 0; cap <= full[0]; cap++)
		cr_assert(eq(sz, rc_envelope_write_msg(out, cap, "topic", 5, 12345, "[1,2]", 5),
			     cap == full[0] ? full[0] : 0));
	for (size_t cap = 0; cap <= full[1]; cap++)
		cr_assert(eq(sz,
			     rc_envelope_write_ack(out, cap, RC_ENVELOPE_OP_PUB, "topic", 5, 9, 7,
						   "i\"d", 3),
			     cap == full[1] ? full[1] : 0));
	for (size_t cap = 0; cap <= full[2]; cap++)
		cr_assert(eq(sz,
			     rc_envelope_write_error(out, cap, RC_ENVELOPE_ERR_TOPIC, "a\nb\"c"),
			     cap == full[2] ? full[2] : 0));
	for (size_t cap = 0; cap <= full[3]; cap++)
		cr_assert(eq(sz, rc_envelope_write_gap(out, cap, "topic", 5, 3, 90, 7),
			     cap == full[3] ? full[3] : 0));
	for (size_t cap = 0; cap <= full[4]; cap++)
		cr_assert(eq(sz, rc_envelope_write_reset(out, cap, "topic", 5, 7, 90),
			     cap == full[4] ? full[4] : 0));
}

Test(envelope, ack_exact_bytes)
{
	char out[256];
	size_t n;

	n = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_SUB, "t", 1, 42, 0, NULL, 0);
	expect_bytes(out, n, "{\"op\":\"ack\",\"of\":\"sub\",\"topic\":\"t\",\"seq\":42}");
	n = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_SUB, "t", 1, 42,
				  0x00c0ffee12345678ull, NULL, 0);
	expect_bytes(out, n,
		     "{\"op\":\"ack\",\"of\":\"sub\",\"topic\":\"t\",\"seq\":42,"
		     "\"epoch\":\"00c0ffee12345678\"}");
	n = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_UNSUB, "t", 1, 0, 0, NULL, 0);
	expect_bytes(out, n, "{\"op\":\"ack\",\"of\":\"unsub\",\"topic\":\"t\"}");
	n = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_PUB, "a/b", 3, 9007199254740991,
				  UINT64_MAX, "k\"\\\x01", 4);
	expect_bytes(out, n,
		     "{\"op\":\"ack\",\"of\":\"pub\",\"topic\":\"a/b\",\"seq\":9007199254740991,"
		     "\"epoch\":\"ffffffffffffffff\",\"id\":\"k\\\"\\\\\\u0001\"}");
	n = rc_envelope_write_ack(out, sizeof(out), RC_ENVELOPE_OP_PING, NULL, 0, 0, 0, NULL, 0);
	expect_bytes(out, n, "{\"op\":\"ack\",\"of\":\"ping\"}");
}

Test(envelope, error_escapes_its_reason)
{
	char out[256];
	size_t n;

	n = rc_envelope_write_error(out, sizeof(out), RC_ENVELOPE_ERR_JSON, "not valid JSON");
	expect_bytes(out, n, "{\"op\":\"error\",\"code\":1,\"reason\":\"not valid JSON\"}");
	n = rc_envelope_write_error(out, sizeof(out), RC_ENVELOPE_ERR_INTERNAL,
				    "q\"b\\n\nr\rt\tb\bf\f\x01\x1f\x7f/\xc3\xa9");
	expect_bytes(out, n,
		     "{\"op\":\"error\",\"code\":17,\"reason\":\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f"
		     "\\u0001\\u001f\x7f/\xc3\xa9\"}");
	/* And a JSON parser reads the reason back unchanged. */
	cJSON *j = cJSON_ParseWithLength(out, n);
	cr_assert(j != NULL);
	cr_assert(eq(str, cJSON_GetObjectItem(j, "reason")->valuestring,
		     "q\"b\\n\nr\rt\tb\bf\f\x01\x1f\x7f/\xc3\xa9"));
	cJSON_Delete(j);
}

Test(envelope, gap_exact_bytes)
{
	char out[128];
	size_t n = rc_envelope_write_gap(out, sizeof(out), "x:y", 3, 5, 9007199254740992, 1);

	expect_bytes(out, n,
		     "{\"op\":\"gap\",\"topic\":\"x:y\",\"from\":5,\"to\":9007199254740992,"
		     "\"epoch\":\"0000000000000001\"}");
}

/* A reset names the epoch and the seq the subscription goes on from. */
Test(envelope, reset_exact_bytes)
{
	char out[128];
	size_t n = rc_envelope_write_reset(out, sizeof(out), "orders", 6, 0xabcdef0123456789ull, 0);

	expect_bytes(out, n,
		     "{\"op\":\"reset\",\"topic\":\"orders\",\"epoch\":\"abcdef0123456789\","
		     "\"seq\":0}");
}

/* An epoch is written only when the topic has one: 0 is a programmer error. */
Test(envelope, reset_without_epoch_aborts, .signal = SIGABRT)
{
	char out[128];

	rc_envelope_write_reset(out, sizeof(out), "t", 1, 0, 5);
}

/* "ringcast." and below belong to the gateway; lookalikes do not. */
Test(envelope, reserved_topics)
{
	cr_assert(rc_topic_reserved("ringcast.stats", 14));
	cr_assert(rc_topic_reserved("ringcast.", 9));
	cr_assert(not(rc_topic_reserved("ringcast", 8)));
	cr_assert(not(rc_topic_reserved("ringcastx.stats", 15)));
	cr_assert(not(rc_topic_reserved("Ringcast.stats", 14)));
	cr_assert(not(rc_topic_reserved("orders.ringcast.", 16)));
	cr_assert(not(rc_topic_reserved("", 0)));
}

/* The POST /publish answer: one object, or a batch in item order; duplicates carry no seq. */
Test(envelope, published_exact_bytes)
{
	char out[256];
	uint64_t seq[3] = {59, 7, 9007199254740992};
	bool dup[3] = {false, true, false};
	size_t n;

	n = rc_envelope_write_published(out, sizeof(out), false, seq, dup, 1);
	expect_bytes(out, n, "{\"seq\":59}\n");
	n = rc_envelope_write_published(out, sizeof(out), false, &seq[1], &dup[1], 1);
	expect_bytes(out, n, "{\"seq\":0,\"duplicate\":true}\n");
	n = rc_envelope_write_published(out, sizeof(out), true, seq, dup, 3);
	expect_bytes(out, n,
		     "{\"results\":[{\"seq\":59},{\"seq\":0,\"duplicate\":true},"
		     "{\"seq\":9007199254740992}]}\n");
	n = rc_envelope_write_published(out, sizeof(out), true, seq, dup, 1);
	expect_bytes(out, n, "{\"results\":[{\"seq\":59}]}\n");
}

/* The bound holds for the longest items, and every shorter capacity is refused. */
Test(envelope, published_fits_its_bound)
{
	enum { ITEMS = 256 };
	static uint64_t seq[ITEMS];
	static bool dup[ITEMS];
	static char out[64 * ITEMS];
	for (int i = 0; i < ITEMS; i++) {
		seq[i] = UINT64_MAX;
		dup[i] = i % 2;
	}
	size_t max = rc_envelope_published_max(ITEMS);
	size_t n = rc_envelope_write_published(out, max, true, seq, dup, ITEMS);
	cr_assert(n > 0 && n <= max);
	for (int i = 0; i < ITEMS; i++)
		dup[i] = false;
	n = rc_envelope_write_published(out, sizeof(out), true, seq, dup, ITEMS);
	cr_assert(n > 0 && n <= max);
	for (size_t cap = 0; cap < n; cap++)
		cr_assert(eq(sz, rc_envelope_write_published(out, cap, true, seq, dup, ITEMS), 0));
	cJSON *j = cJSON_ParseWithLength(out, n);
	cr_assert(j != NULL);
	cr_assert(eq(int, cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")), ITEMS));
	cJSON_Delete(j);
}

Test(envelope, published_single_with_many_items_aborts, .signal = SIGABRT)
{
	char out[128];
	uint64_t seq[2] = {1, 2};
	bool dup[2] = {false, false};

	rc_envelope_write_published(out, sizeof(out), false, seq, dup, 2);
}

/* A parsed pub turned into a msg: the same bytes whatever the client's whitespace. */
Test(envelope, pub_round_trips_to_msg)
{
	const char *in =
		"{ \"op\":\"pub\", \"topic\":\"room.1\", \"data\": {\"n\": 9007199254740993} }";
	struct rc_envelope e;
	const char *reason;
	char out[256];
	size_t n;

	cr_assert(eq(int, parse(in, &e, &reason), RC_ENVELOPE_OK));
	n = rc_envelope_write_msg(out, sizeof(out), e.topic, e.topic_len, 3, e.data, e.data_len);
	expect_bytes(out, n,
		     "{\"op\":\"msg\",\"topic\":\"room.1\",\"seq\":3,"
		     "\"data\":{\"n\":9007199254740993}}");
}

Test(envelope, names)
{
	cr_assert(eq(str, (char *)rc_envelope_op_name(RC_ENVELOPE_OP_UNSUB), "unsub"));
	cr_assert(eq(str, (char *)rc_envelope_err_name(RC_ENVELOPE_ERR_DATA_TOO_LARGE),
		     "data_too_large"));
	for (int i = 0; i < RC_ENVELOPE_ERR_COUNT; i++) {
		cr_assert(rc_envelope_err_name((enum rc_envelope_err)i) != NULL, "err %d", i);
		cr_assert(rc_envelope_err_reason((enum rc_envelope_err)i) != NULL, "err %d", i);
	}
}

/* Programmer errors abort: a topic the parser would never have let through. */
Test(envelope, msg_with_invalid_topic_aborts, .signal = SIGABRT)
{
	char out[128];

	rc_envelope_write_msg(out, sizeof(out), "a\"b", 3, 1, "1", 1);
}

Test(envelope, gap_backwards_aborts, .signal = SIGABRT)
{
	char out[128];

	rc_envelope_write_gap(out, sizeof(out), "t", 1, 9, 8, 1);
}

/* The pre-parse scan: depth and values counted outside strings, at the guard page. */
static bool within(const char *s, uint32_t depth, uint32_t elements)
{
	const char *reason = NULL;
	bool ok = rc_envelope_json_within(at_guard(s, strlen(s)), strlen(s), depth, elements,
					  &reason);
	cr_assert(ok == (reason == NULL));
	return ok;
}

Test(envelope, json_within_counts_depth_and_values_outside_strings)
{
	cr_assert(within("[[1]]", 2, 10));
	cr_assert(not(within("[[[1]]]", 2, 10)));
	cr_assert(within("{\"a\":[1,2],\"b\":{}}", 2, 6));
	cr_assert(not(within("{\"a\":[1,2],\"b\":{}}", 2, 5)));
	cr_assert(within("\"[[[[,,,,\"", 1, 1));
	cr_assert(within("\"\\\"[[[\"", 1, 1));
	cr_assert(not(within("[1,2,3]", 5, 3)));
	cr_assert(within("[1,2,3]", 5, 4));
	cr_assert(within("[\"unterminated", 1, 2));
	cr_assert(within("", 1, 1));
}

/* A server API broadcast: one data for many topics, strict about its keys. */
Test(envelope, parses_broadcasts)
{
	struct rc_envelope items[4];
	char buf[256];
	uint32_t n;
	const char *reason;
	const char ok[] = "{\"id\":\"k1\",\"topics\":[\"a\",\"b:c\"],\"data\": {\"x\": 12345678901234567890}}";
	cr_assert(eq(int, rc_envelope_parse_broadcast(ok, strlen(ok), items, 4, &n, buf,
						      sizeof(buf), &reason), RC_ENVELOPE_OK));
	cr_assert(eq(u32, n, 2));
	cr_assert(eq(str, items[1].topic, "b:c"));
	cr_assert(eq(str, (char *)items[1].data, "{\"x\":12345678901234567890}"));
	cr_assert(eq(ptr, (void *)items[0].data, (void *)items[1].data));
	cr_assert(eq(str, items[1].id, "k1"));
	const char *bad[] = {"[]", "{\"topics\":[],\"data\":1}", "{\"topics\":[\"a\"]}",
			     "{\"topics\":[\"a b\"],\"data\":1}", "{\"topics\":\"a\",\"data\":1}",
			     "{\"topics\":[\"a\"],\"data\":1,\"x\":2}",
			     "{\"topics\":[\"a\"],\"data\":1,\"data\":2}",
			     "{\"topics\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"data\":1}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(rc_envelope_parse_broadcast(bad[i], strlen(bad[i]), items, 4, &n, buf,
						      sizeof(buf), &reason) != RC_ENVELOPE_OK,
			  "%s", bad[i]);
		cr_assert(eq(u32, n, 0));
	}
}
