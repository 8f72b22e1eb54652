/*
 * The server API's requests and errors (see api.h): a table of the calls and the fields each
 * takes, bodies read with cJSON (its tree freed before returning). Pure; any thread.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "envelope.h"

enum api_field {
	A_TOPIC = 1u << 0,
	A_USER = 1u << 1,
	A_CODE = 1u << 2,
	A_SINCE = 1u << 3,
	A_LIMIT = 1u << 4,
};

struct call_rule {
	const char *name;
	uint32_t required;
	uint32_t allowed;
};

static const struct call_rule rules[RC_API_CALL_COUNT] = {
	[RC_API_PUBLISH] = {"publish", 0, 0},
	[RC_API_BROADCAST] = {"broadcast", 0, 0},
	[RC_API_DISCONNECT] = {"disconnect", A_USER, A_USER | A_CODE},
	[RC_API_UNSUBSCRIBE] = {"unsubscribe", A_USER | A_TOPIC, A_USER | A_TOPIC},
	[RC_API_PRESENCE] = {"presence", A_TOPIC, A_TOPIC},
	[RC_API_PRESENCE_STATS] = {"presence_stats", A_TOPIC, A_TOPIC},
	[RC_API_HISTORY] = {"history", A_TOPIC, A_TOPIC | A_SINCE | A_LIMIT},
	[RC_API_TOPICS] = {"topics", 0, 0},
	[RC_API_INFO] = {"info", 0, 0},
};

enum rc_api_call rc_api_call_of(const char *name, size_t len)
{
	for (int i = 0; i < RC_API_CALL_COUNT; i++)
		if (strlen(rules[i].name) == len && memcmp(rules[i].name, name, len) == 0)
			return (enum rc_api_call)i;
	return RC_API_CALL_COUNT;
}

const char *rc_api_call_name(enum rc_api_call call)
{
	RC_ASSERT(call < RC_API_CALL_COUNT);
	return rules[call].name;
}

/* A string member into out[0..cap) (its length in *len): false if not a string or too long. */
static bool read_string(const cJSON *v, char *out, size_t cap, uint32_t *len)
{
	size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, v->valuestring, n + 1);
	*len = (uint32_t)n;
	return true;
}

/* An integer member within [min, max] into *out. */
static bool read_uint(const cJSON *v, double min, double max, uint64_t *out)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max ||
	    floor(v->valuedouble) != v->valuedouble)
		return false;
	*out = (uint64_t)v->valuedouble;
	return true;
}

/* Reads member v (field f) into out; 0 or -EINVAL with *reason. */
static int read_field(enum api_field f, const cJSON *v, struct rc_api_req *out,
		      const char **reason)
{
	uint64_t n = 0;
	switch (f) {
	case A_TOPIC:
		if (read_string(v, out->topic, sizeof(out->topic), &out->topic_len) &&
		    rc_topic_name_valid(out->topic, out->topic_len))
			return 0;
		*reason = "\"topic\" must be a topic name";
		return -EINVAL;
	case A_USER:
		if (read_string(v, out->user, sizeof(out->user), &out->user_len))
			return 0;
		*reason = "\"user\" must be a string of 1 to 127 bytes";
		return -EINVAL;
	case A_CODE:
		if (read_uint(v, 1000, 4999, &n) && (n == 1000 || n >= 3000)) {
			out->code = (uint16_t)n;
			return 0;
		}
		*reason = "\"code\" must be 1000 or 3000 to 4999";
		return -EINVAL;
	case A_SINCE:
		if (read_uint(v, 0, (double)RC_ENVELOPE_SEQ_LIMIT, &out->since))
			return 0;
		*reason = "\"since\" must be an integer from 0 to 2^53-1";
		return -EINVAL;
	case A_LIMIT:
		if (read_uint(v, 1, RC_API_HISTORY_LIMIT, &n)) {
			out->limit = (uint32_t)n;
			return 0;
		}
		*reason = "\"limit\" must be an integer from 1 to 1000";
		return -EINVAL;
	}
	RC_ASSERT(!"unknown field");
	return -EINVAL;
}

static enum api_field field_of(const char *name)
{
	static const char *const names[] = {"topic", "user", "code", "since", "limit"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return (enum api_field)(1u << i);
	return 0;
}

/* The members of obj into out as rule r allows; 0 or -EINVAL with *reason. */
static int read_members(const struct call_rule *r, const cJSON *obj, struct rc_api_req *out,
			const char **reason)
{
	uint32_t seen = 0;
	const cJSON *v;
	cJSON_ArrayForEach(v, obj)
	{
		enum api_field f = field_of(v->string);
		if (!(f & r->allowed) || (seen & f)) {
			*reason = f & seen ? "repeated key" : "a key this call does not take";
			return -EINVAL;
		}
		seen |= f;
		if (read_field(f, v, out, reason) != 0)
			return -EINVAL;
	}
	if ((seen & r->required) != r->required) {
		*reason = r->required & ~seen & A_TOPIC ? "missing \"topic\"" : "missing \"user\"";
		return -EINVAL;
	}
	return 0;
}

int rc_api_parse(enum rc_api_call call, const char *in, size_t len, struct rc_api_req *out,
		 const char **reason)
{
	RC_ASSERT(call < RC_API_CALL_COUNT && call != RC_API_PUBLISH && call != RC_API_BROADCAST);
	memset(out, 0, sizeof(*out));
	out->code = RC_API_CLOSE_CODE_DEFAULT;
	out->limit = RC_API_HISTORY_DEFAULT;
	*reason = NULL;
	if (len == 0 && rules[call].required == 0)
		return 0;
	cJSON *root = cJSON_ParseWithLength(in, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		*reason = "the body must be a JSON object";
		return -EINVAL;
	}
	int rc = read_members(&rules[call], root, out, reason);
	cJSON_Delete(root);
	return rc;
}

/* One line of a shard's topic list. */
struct topic_count {
	const char *name;
	size_t len;
	uint64_t count;
};

static int by_name(const void *a, const void *b)
{
	const struct topic_count *x = a, *y = b;
	int d = memcmp(x->name, y->name, RC_MIN(x->len, y->len));
	return d ? d : (x->len > y->len) - (x->len < y->len);
}

/* Reads "NAME COUNT" lines of in[0..len) into v (room for every line); their number, or -1. */
static long read_lines(const char *in, size_t len, struct topic_count *v)
{
	long n = 0;
	for (const char *p = in, *end = in + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
		if (!nl)
			return -1;
		if (nl > p) {
			if (!sp || sp == p || sp + 1 == nl)
				return -1;
			v[n] = (struct topic_count){p, (size_t)(sp - p), 0};
			for (const char *d = sp + 1; d < nl; d++) {
				if (*d < '0' || *d > '9')
					return -1;
				v[n].count = v[n].count * 10 + (uint64_t)(*d - '0');
			}
			n++;
		}
		p = nl + 1;
	}
	return n;
}

char *rc_api_write_topics(const char *in, size_t len, size_t *out_len)
{
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += in[i] == '\n';
	struct topic_count *v = malloc((lines + 1) * sizeof(*v));
	long n = v ? read_lines(in, len, v) : -1;
	cJSON *root = n >= 0 ? cJSON_CreateObject() : NULL;
	cJSON *arr = root ? cJSON_AddArrayToObject(root, "topics") : NULL;
	bool ok = arr != NULL;
	if (ok)
		qsort(v, (size_t)n, sizeof(*v), by_name);
	for (long i = 0; ok && i < n; i++) {
		if (i + 1 < n && by_name(&v[i], &v[i + 1]) == 0) {
			v[i + 1].count += v[i].count; /* the same topic on another shard */
			continue;
		}
		char name[RC_TOPIC_BYTES_LIMIT + 1];
		cJSON *o = cJSON_CreateObject();
		snprintf(name, sizeof(name), "%.*s", (int)v[i].len, v[i].name);
		ok = o && cJSON_AddItemToArray(arr, o) && cJSON_AddStringToObject(o, "topic", name) &&
		     cJSON_AddNumberToObject(o, "subscribers", (double)v[i].count);
	}
	char *out = ok ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	free(v);
	*out_len = out ? strlen(out) : 0;
	return out;
}

size_t rc_api_write_error(char *out, size_t cap, int status, const char *reason)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *err = root ? cJSON_AddObjectToObject(root, "error") : NULL;
	bool ok = err && cJSON_AddNumberToObject(err, "code", status) &&
		  cJSON_AddStringToObject(err, "reason", reason) &&
		  cJSON_PrintPreallocated(root, out, (int)RC_MIN(cap, (size_t)INT32_MAX), false);
	cJSON_Delete(root);
	return ok ? strlen(out) : 0;
}
