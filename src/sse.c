/*
 * Server-Sent Events for GET /sse (see sse.h): the request's topics and resume positions,
 * and the framing of events. Pure; the caller's thread.
 */
#include "sse.h"

#include <errno.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "envelope.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes v into *o (within end); false if it does not fit or a %XX is bad. */
static bool decode(struct rc_slice v, char **o, const char *end)
{
	for (uint32_t i = 0; i < v.len; i++) {
		char ch = v.p[i];
		if (ch == '%') {
			if (i + 2 >= v.len || hexval(v.p[i + 1]) < 0 || hexval(v.p[i + 2]) < 0)
				return false;
			ch = (char)(hexval(v.p[i + 1]) << 4 | hexval(v.p[i + 2]));
			i += 2;
		}
		if (*o == end)
			return false;
		*(*o)++ = ch;
	}
	return true;
}

/* The value of query parameter name (first occurrence); false if absent. */
static bool param(struct rc_slice q, const char *name, struct rc_slice *v)
{
	size_t nlen = strlen(name);
	for (uint32_t i = 0; i < q.len;) {
		uint32_t end = i;
		while (end < q.len && q.p[end] != '&')
			end++;
		if (end - i > nlen && memcmp(q.p + i, name, nlen) == 0 && q.p[i + nlen] == '=') {
			*v = (struct rc_slice){q.p + i + nlen + 1, (uint32_t)(end - i - nlen - 1)};
			return true;
		}
		i = end + 1;
	}
	return false;
}

bool rc_sse_parse_position(const char *p, size_t n, struct rc_sse_topic *t)
{
	const char *a = memchr(p, '~', n);
	if (!a)
		return false;
	size_t tlen = (size_t)(a - p), rest = n - tlen - 1;
	const char *b = memchr(a + 1, '~', rest);
	size_t slen = b ? (size_t)(b - a - 1) : rest;
	*t = (struct rc_sse_topic){{p, (uint32_t)tlen}, true, b != NULL, 0, 0};
	if (!rc_topic_name_valid(p, tlen) || !rc_parse_u64(a + 1, slen, &t->since))
		return false;
	if (!b)
		return true;
	size_t elen = n - (size_t)(b + 1 - p);
	for (size_t i = 0; elen == 16 && i < elen; i++) {
		int h = hexval(b[1 + i]);
		if (h < 0 || (b[1 + i] >= 'A' && b[1 + i] <= 'F')) {
			t->epoch = 0;
			break;
		}
		t->epoch = t->epoch << 4 | (uint64_t)h;
	}
	return true;
}

/* The requested topic named like name, or NULL. */
static struct rc_sse_topic *find(struct rc_sse_request *req, const char *name, size_t len)
{
	for (uint32_t i = 0; i < req->count; i++)
		if (req->topics[i].name.len == len && memcmp(req->topics[i].name.p, name, len) == 0)
			return &req->topics[i];
	return NULL;
}

/* Applies position p[0..n) to its topic; -EINVAL if malformed or not requested (strict), or
 * 0 (ignored when not strict). */
static int apply(struct rc_sse_request *req, const char *p, size_t n, bool strict)
{
	struct rc_sse_topic pos, *t;
	if (!rc_sse_parse_position(p, n, &pos) || !(t = find(req, pos.name.p, pos.name.len)))
		return strict ? -EINVAL : 0;
	if (strict || !t->has_since) {
		t->has_since = true;
		t->since = pos.since;
		t->has_epoch = pos.has_epoch;
		t->epoch = pos.epoch;
	}
	return 0;
}

/* Splits the decoded list p[0..n) at commas, calling back per non-empty element. */
static int topics_from(struct rc_sse_request *req, const char *p, size_t n, const char **reason)
{
	for (size_t i = 0; i < n;) {
		const char *c = memchr(p + i, ',', n - i);
		size_t end = c ? (size_t)(c - p) : n;
		if (end > i) {
			if (!rc_topic_name_valid(p + i, end - i)) {
				*reason = "bad topic name";
				return -EINVAL;
			}
			if (find(req, p + i, end - i)) {
				*reason = "topic named twice";
				return -EINVAL;
			}
			if (req->count == RC_SSE_TOPICS_LIMIT) {
				*reason = "too many topics";
				return -EINVAL;
			}
			req->topics[req->count++] =
				(struct rc_sse_topic){{p + i, (uint32_t)(end - i)}, false, false, 0, 0};
		}
		i = end + 1;
	}
	return 0;
}

static int since_from(struct rc_sse_request *req, const char *p, size_t n, const char **reason)
{
	for (size_t i = 0; i < n;) {
		const char *c = memchr(p + i, ',', n - i);
		size_t end = c ? (size_t)(c - p) : n;
		if (end > i && apply(req, p + i, end - i, true) != 0) {
			*reason = "bad since: topic~seq~epoch of a requested topic";
			return -EINVAL;
		}
		i = end + 1;
	}
	return 0;
}

int rc_sse_parse(struct rc_slice query, struct rc_slice last_event_id, char *buf, size_t cap,
		 struct rc_sse_request *req, const char **reason)
{
	struct rc_slice tv, sv;
	char *o = buf, *end = buf + cap;
	req->count = 0;
	*reason = "too long";
	if (!param(query, "topics", &tv)) {
		*reason = "topics=a,b required";
		return -EINVAL;
	}
	if (!decode(tv, &o, end))
		return -EINVAL;
	int rc = topics_from(req, buf, (size_t)(o - buf), reason);
	if (rc == 0 && req->count == 0) {
		*reason = "topics=a,b required";
		rc = -EINVAL;
	}
	if (rc == 0 && param(query, "since", &sv)) {
		char *s = o;
		if (!decode(sv, &o, end))
			return -EINVAL;
		rc = since_from(req, s, (size_t)(o - s), reason);
	}
	if (rc == 0 && last_event_id.len)
		(void)apply(req, last_event_id.p, last_event_id.len, false);
	RC_ASSERT(req->count <= RC_SSE_TOPICS_LIMIT);
	return rc;
}

size_t rc_sse_write_id(char *out, const char *topic, size_t tlen, uint64_t seq, uint64_t epoch)
{
	static const char hex[] = "0123456789abcdef";
	char digits[20];
	size_t n = 0, d = 0;
	RC_ASSERT(tlen <= 128);
	memcpy(out, topic, tlen);
	n = tlen;
	out[n++] = '~';
	do {
		digits[d++] = (char)('0' + seq % 10);
		seq /= 10;
	} while (seq);
	while (d)
		out[n++] = digits[--d];
	out[n++] = '~';
	for (int i = 15; i >= 0; i--)
		out[n++] = hex[(epoch >> (i * 4)) & 15];
	RC_ASSERT(n <= RC_SSE_ID_LIMIT);
	return n;
}

/* Appends p[0..n) at *o when writing (out given), always counting. */
static void put(char *out, size_t *o, const void *p, size_t n)
{
	if (out)
		memcpy(out + *o, p, n);
	*o += n;
}

/* Writes (out given) or only measures the event of rc_sse_write_event; returns its length. */
static size_t event(char *out, const char *id, size_t idlen, const char *data, size_t dlen)
{
	size_t o = 0;
	if (idlen) {
		put(out, &o, "id: ", 4);
		put(out, &o, id, idlen);
		put(out, &o, "\n", 1);
	}
	for (size_t i = 0; i <= dlen;) {
		size_t j = i;
		while (j < dlen && data[j] != '\n' && data[j] != '\r')
			j++;
		put(out, &o, "data: ", 6);
		put(out, &o, data + i, j - i);
		put(out, &o, "\n", 1);
		if (j + 1 < dlen && data[j] == '\r' && data[j + 1] == '\n')
			j++;
		i = j + 1;
	}
	put(out, &o, "\n", 1);
	return o;
}

size_t rc_sse_write_event(char *out, size_t cap, const char *id, size_t idlen, const char *data,
			  size_t dlen)
{
	size_t need = event(NULL, id, idlen, data, dlen);
	if (!out || need > cap)
		return need;
	size_t n = event(out, id, idlen, data, dlen);
	RC_ASSERT(n == need);
	return n;
}
