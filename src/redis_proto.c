/*
 * The Redis engine's wire contract: topic placement, key names, the Lua script and the
 * parsers of its replies and of channel messages. Replies come decoded by hiredis'
 * redisReader; nothing here reads a socket. Pure; any thread.
 */
#include "redis_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>
#include <openssl/siphash.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

/*
 * One atomic step per batch of publishes or per replay, in as few calls as possible (each
 * call costs Redis more than the work it does: a batch shares it, and so do a topic's items).
 * 'r' (replay): KEYS 1 the topic's hash {e: epoch, s: last seq, r: when its TTL is next
 *   renewed}, 2 its stream. ARGV 1 'r', 2 the epoch to use if the numbering restarts, 3 since
 *   ("": none), 4 most entries, 5 history_age_max_ms (0: none), 6 most data bytes. Returns
 *   {seq, epoch, entries newest first}: as many of the newest as fit the bytes (the older
 *   ones are then a gap for the caller).
 * 'p' (publish): ARGV 1 'p', 2 T topics; per topic KEYS: its hash and stream, then the dedup
 *   key of each of its items that has an id; per topic ARGV: proposed epoch,
 *   history_messages_max, history_age_max_ms, key TTL in ms (0: none), channel, its item
 *   count n; then per item: dedup window in ms (0: no id) and data. Returns 3 values per item
 *   in that order: seq, epoch and 0 (stored), 1 (a duplicate: seq is the topic's last) or 2
 *   (refused: Redis did not take it; seq 0).
 * A missing hash (first use, expired, or a Redis that lost its data) starts a new numbering
 * under a new epoch and drops the stream, so a client's since from before is recognised as
 * another run. Per topic and batch, whatever its item count: one HMGET, one XADD of one
 * stream entry {d: payload} holding all its stored items, one PUBLISH of the same payload and
 * one HSET of the new seq (an XADD refused refuses the topic's items of the batch and takes
 * no seq); each topic's writes are done before the next topic starts, so a failure in a later
 * one (a key of the wrong type) never leaves stored items without their seq (that topic's
 * items are refused, the others go on). The payload is "<seq> <epoch> <data>" for one message
 * and "<seq>:<n> <epoch> <len 1> .. <len n> <data 1>..<data n>" for n > 1 consecutive seqs
 * (data concatenated). The stream's entries hold consecutive seqs, trimmed at its head only,
 * so the newest (seq - since) entries hold at least what came after since. Trimming, by count
 * of entries (approximate: whole stream nodes; each entry holds one message at least, so the
 * newest count messages stay) and by age, runs once a topic's seq passes a multiple of 64,
 * and by age before each replay, exactly, so a replay never returns what is older than the
 * age bound. The keys' TTL is renewed once half of it has passed (the hash's r: one TIME per
 * batch, no PTTL).
 */
static const char script[] =
	"local now\n"
	"local function clock()\n"
	"  if not now then\n"
	"    local t = redis.call('TIME')\n"
	"    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"  end\n"
	"  return now\n"
	"end\n"
	"local function numbering(h, x, epoch)\n"
	"  local m = redis.call('HMGET', h, 'e', 's', 'r')\n"
	"  if m[1] and m[2] then return m[1], tonumber(m[2]), tonumber(m[3]) or 0 end\n"
	"  redis.call('HSET', h, 'e', epoch, 's', '0')\n"
	"  redis.call('DEL', x)\n"
	"  return epoch, 0, 0\n"
	"end\n"
	"local function age_trim(x, age, approx)\n"
	"  if age == '0' then return end\n"
	"  local min = clock() - tonumber(age)\n"
	"  if min <= 0 then return end\n"
	"  if approx then\n"
	"    redis.call('XTRIM', x, 'MINID', '~', string.format('%d', min))\n"
	"  else\n"
	"    redis.call('XTRIM', x, 'MINID', string.format('%d', min))\n"
	"  end\n"
	"end\n"
	"if ARGV[1] == 'r' then\n"
	"  local e, n = numbering(KEYS[1], KEYS[2], ARGV[2])\n"
	"  local since = tonumber(ARGV[3])\n"
	"  local out = {}\n"
	"  if since and since < n then\n"
	"    age_trim(KEYS[2], ARGV[5], false)\n"
	"    local k = math.min(n - since, tonumber(ARGV[4]))\n"
	"    if k > 0 then out = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', k) end\n"
	"    local room = tonumber(ARGV[6])\n"
	"    for i = 1, #out do\n"
	"      room = room - #out[i][2][#out[i][2]]\n"
	"      if room < 0 then\n"
	"        for j = #out, i, -1 do out[j] = nil end\n"
	"        break\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  return {n, e, out}\n"
	"end\n"
	"local datas, ids, at, lens = {}, {}, {}, {}\n"
	"local function payload(first, e, c)\n"
	"  if c == 1 then return first .. ' ' .. e .. ' ' .. datas[1] end\n"
	"  for i = 1, c do lens[i] = #datas[i] end\n"
	"  return first .. ':' .. c .. ' ' .. e .. ' ' .. table.concat(lens, ' ', 1, c) .. ' ' ..\n"
	"         table.concat(datas, '', 1, c)\n"
	"end\n"
	"local out, k, a, o = {}, 1, 3, 0\n"
	"for _ = 1, tonumber(ARGV[2]) do\n"
	"  local h, x, epoch, ttl = KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 3]\n"
	"  local ok, e, n, renew = pcall(numbering, h, x, epoch)\n"
	"  local max, age, ch, count = ARGV[a + 1], ARGV[a + 2], ARGV[a + 4], tonumber(ARGV[a + 5])\n"
	"  k, a = k + 2, a + 6\n"
	"  if not ok then e, n = epoch, 0 end\n"
	"  local was = n\n"
	"  for _ = 1, count do\n"
	"    local w, d, r = ARGV[a], ARGV[a + 1], 0\n"
	"    local key = w ~= '0' and KEYS[k]\n"
	"    a = a + 2\n"
	"    if key then k = k + 1 end\n"
	"    if not ok then\n"
	"      r = 2\n"
	"    elseif key and not redis.call('SET', key, '1', 'NX', 'PX', w) then\n"
	"      r = 1\n"
	"    else\n"
	"      n = n + 1\n"
	"      datas[n - was], ids[n - was], at[n - was] = d, key, o + 1\n"
	"    end\n"
	"    out[o + 1], out[o + 2], out[o + 3] = r == 2 and 0 or n, e, r\n"
	"    o = o + 3\n"
	"  end\n"
	"  if n > was then\n"
	"    local p = payload(was + 1, e, n - was)\n"
	"    if type(redis.pcall('XADD', x, '*', 'd', p)) == 'table' then\n"
	"      for i = 1, n - was do\n"
	"        if ids[i] then redis.call('DEL', ids[i]) end\n"
	"        out[at[i]], out[at[i] + 2] = 0, 2\n"
	"      end\n"
	"      n = was\n"
	"    else\n"
	"      redis.call('PUBLISH', ch, p)\n"
	"    end\n"
	"  end\n"
	"  if ok then\n"
	"    if ttl ~= '0' and clock() >= renew then\n"
	"      redis.call('HSET', h, 's', n, 'r', clock() + math.floor(tonumber(ttl) / 2))\n"
	"      redis.call('PEXPIRE', h, ttl)\n"
	"      redis.call('PEXPIRE', x, ttl)\n"
	"    elseif n ~= was then\n"
	"      redis.call('HSET', h, 's', n)\n"
	"    end\n"
	"    if math.floor(n / 64) ~= math.floor(was / 64) then\n"
	"      redis.call('XTRIM', x, 'MAXLEN', '~', max)\n"
	"      age_trim(x, age, true)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return out\n";

/* Fixed, so that every node places a topic on the same instance. Not a secret: a client
 * that aims its topic names at one instance only loads that instance, as a hot topic does. */
static const uint64_t pick_key[2] = {0x72696e6763617374ull, 0x7265646973706963ull};

uint32_t rc_redis_pick(const char *const *addrs, uint32_t count, const char *topic, size_t len)
{
	uint8_t buf[512];
	uint64_t best = 0;
	uint32_t best_i = 0;
	RC_ASSERT(count > 0);
	for (uint32_t i = 0; i < count; i++) {
		size_t alen = strlen(addrs[i]);
		size_t n = RC_MIN(alen, sizeof(buf) / 2);
		memcpy(buf, addrs[i], n);
		buf[n++] = '\0';
		size_t tl = RC_MIN(len, sizeof(buf) - n);
		memcpy(buf + n, topic, tl);
		uint64_t score = SIPHASH_24(pick_key, buf, n + tl);
		if (i == 0 || score > best) {
			best = score;
			best_i = i;
		}
	}
	RC_ASSERT(best_i < count);
	return best_i;
}

int rc_redis_parse_address(const char *s, char *host, size_t host_cap, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	uint64_t p;
	if (!colon || colon == s || !rc_parse_u64(colon + 1, strlen(colon + 1), &p) ||
	    p == 0 || p > 65535)
		return -EINVAL;
	const char *h = s;
	size_t hlen = (size_t)(colon - s);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= host_cap)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

size_t rc_redis_key(char *out, size_t cap, const char *prefix, const char *topic, size_t tlen,
		    enum rc_redis_key which)
{
	static const char *const suffix[RC_REDIS_KEY_COUNT] = {"m", "x", "d."};
	RC_ASSERT(which < RC_REDIS_KEY_COUNT);
	int n = snprintf(out, cap, "%s{%.*s}.%s", prefix, (int)tlen, topic, suffix[which]);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

const char *rc_redis_script(size_t *len)
{
	*len = sizeof(script) - 1;
	return script;
}

void rc_redis_script_sha(char out[41])
{
	uint8_t md[SHA_DIGEST_LENGTH];
	SHA1((const uint8_t *)script, sizeof(script) - 1, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	RC_ASSERT(strlen(out) == 40);
}

/* Charges bytes to the reply task belongs to: false (and exceeded) past its bound. */
static bool take(const redisReadTask *task, size_t bytes)
{
	struct rc_redis_bound *b = task->privdata;
	if (bytes > b->bytes_max - b->bytes) {
		b->exceeded = true;
		return false;
	}
	b->bytes += bytes;
	return true;
}

static void *bounded_string(const redisReadTask *task, char *str, size_t len)
{
	const struct rc_redis_bound *b = task->privdata;
	return take(task, sizeof(redisReply) + len + 1) ? b->base->createString(task, str, len)
							  : NULL;
}

static void *bounded_array(const redisReadTask *task, int elements)
{
	const struct rc_redis_bound *b = task->privdata;
	/* A count past INT_MAX arrives truncated, maybe negative: refused too. */
	size_t bytes = elements < 0 ? SIZE_MAX : (size_t)elements * sizeof(redisReply *);
	return take(task, RC_MIN(bytes, SIZE_MAX - sizeof(redisReply)) + sizeof(redisReply))
		       ? b->base->createArray(task, elements)
		       : NULL;
}

static void *bounded_integer(const redisReadTask *task, long long value)
{
	const struct rc_redis_bound *b = task->privdata;
	return take(task, sizeof(redisReply)) ? b->base->createInteger(task, value) : NULL;
}

static void *bounded_nil(const redisReadTask *task)
{
	const struct rc_redis_bound *b = task->privdata;
	return take(task, sizeof(redisReply)) ? b->base->createNil(task) : NULL;
}

static redisReplyObjectFunctions bounded = {
	.createString = bounded_string,
	.createArray = bounded_array,
	.createInteger = bounded_integer,
	.createNil = bounded_nil,
	.freeObject = freeReplyObject,
};

redisReader *rc_redis_reader_create(struct rc_redis_bound *b, size_t bytes_max)
{
	redisReader *r = redisReaderCreate();
	if (!r)
		return NULL;
	*b = (struct rc_redis_bound){.bytes_max = bytes_max, .base = r->fn};
	RC_ASSERT(b->base && b->base->freeObject == freeReplyObject);
	r->fn = &bounded;
	r->privdata = b;
	return r;
}

bool rc_redis_reader_over(const redisReader *r, struct rc_redis_bound *b)
{
	if (r->len - r->pos <= b->bytes_max)
		return false;
	b->exceeded = true;
	return true;
}

/* A reply's text as a u64: a decimal string or a non-negative integer. */
static bool reply_u64(const redisReply *r, uint64_t *out)
{
	if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
		*out = (uint64_t)r->integer;
		return true;
	}
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
		return rc_parse_u64(r->str, r->len, out);
	return false;
}

/* el[0..3): seq, epoch and either entries (an array) or a publish's status. */
static int parse_triple(redisReply *const *el, struct rc_redis_result *out)
{
	memset(out, 0, sizeof(*out));
	if (!reply_u64(el[0], &out->seq) || !reply_u64(el[1], &out->epoch) || out->epoch == 0)
		return -EPROTO;
	const redisReply *third = el[2];
	if (third->type == REDIS_REPLY_ARRAY) {
		out->entries = third;
		return 0;
	}
	if (third->type != REDIS_REPLY_INTEGER || third->integer < 0 || third->integer > 2)
		return -EPROTO;
	out->duplicate = third->integer == 1;
	out->refused = third->integer == 2;
	return 0;
}

int rc_redis_parse_result(const redisReply *r, struct rc_redis_result *out)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return -EPROTO;
	return parse_triple(r->element, out);
}

int rc_redis_parse_item(const redisReply *r, size_t count, size_t i, struct rc_redis_result *out)
{
	RC_ASSERT(i < count);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 * count ||
	    r->element[3 * i + 2]->type != REDIS_REPLY_INTEGER)
		return -EPROTO;
	return parse_triple(r->element + 3 * i, out);
}

int rc_redis_parse_entry(const redisReply *e, struct rc_redis_msgs *out)
{
	const redisReply *seq = NULL, *data = NULL;
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return -EPROTO;
	const redisReply *f = e->element[1];
	if (f->type != REDIS_REPLY_ARRAY || f->elements % 2)
		return -EPROTO;
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
			return -EPROTO;
		if (k->str[0] == 's')
			seq = v;
		if (k->str[0] == 'd')
			data = v;
	}
	if (!data)
		return -EPROTO;
	if (!seq) /* {d: payload} */
		return rc_redis_parse_msgs(data->str, data->len, out);
	/* {s: seq, d: data}: one message, as stored before entries held payloads */
	memset(out, 0, sizeof(*out));
	if (!rc_parse_u64(seq->str, seq->len, &out->seq) || out->seq == 0)
		return -EPROTO;
	out->count = 1;
	out->data = data->str;
	out->end = data->str + data->len;
	return 0;
}

/* A decimal number p[..sp) ending at the first space before end: the text after that space,
 * or NULL (no space, or not a number). */
static const char *number(const char *p, const char *end, uint64_t *v)
{
	const char *sp = memchr(p, ' ', (size_t)(end - p));
	return sp && rc_parse_u64(p, (size_t)(sp - p), v) ? sp + 1 : NULL;
}

/* The lengths of m's count messages, which must add up to the bytes after them: where their
 * data starts, or NULL. */
static const char *check_lens(const struct rc_redis_msgs *m)
{
	const char *p = m->lens;
	uint64_t sum = 0, len;
	for (uint32_t i = 0; i < m->count; i++) {
		p = number(p, m->end, &len);
		if (!p || len > (uint64_t)(m->end - p))
			return NULL;
		sum += len;
	}
	return sum == (uint64_t)(m->end - p) ? p : NULL;
}

int rc_redis_parse_msgs(const char *p, size_t n, struct rc_redis_msgs *out)
{
	const char *end = p + n, *sp = memchr(p, ' ', n);
	const char *colon = sp ? memchr(p, ':', (size_t)(sp - p)) : NULL;
	uint64_t count = 1;
	memset(out, 0, sizeof(*out));
	if (!sp || !rc_parse_u64(p, (size_t)((colon ? colon : sp) - p), &out->seq))
		return -EPROTO;
	if (colon && (!rc_parse_u64(colon + 1, (size_t)(sp - colon - 1), &count) || count < 2 ||
		      count > RC_REDIS_MSGS_LIMIT))
		return -EPROTO;
	const char *rest = number(sp + 1, end, &out->epoch);
	if (!rest || out->seq == 0 || out->epoch == 0 || out->seq > UINT64_MAX - count)
		return -EPROTO;
	out->count = (uint32_t)count;
	out->end = end;
	out->data = rest;
	if (count > 1) {
		out->lens = rest;
		out->data = check_lens(out);
		if (!out->data)
			return -EPROTO;
	}
	return 0;
}

bool rc_redis_msgs_next(struct rc_redis_msgs *m, struct rc_redis_msg *out)
{
	uint64_t len = (uint64_t)(m->end - m->data);
	if (m->count == 0)
		return false;
	if (m->lens) {
		m->lens = number(m->lens, m->end, &len);
		RC_ASSERT(m->lens && len <= (uint64_t)(m->end - m->data)); /* checked by parse */
	}
	out->seq = m->seq++;
	out->epoch = m->epoch;
	out->data = m->data;
	out->data_len = (size_t)len;
	m->data += len;
	m->count--;
	return true;
}
