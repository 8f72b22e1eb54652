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
 * call costs Redis more than the work it does: a batch shares it).
 * 'r' (replay): KEYS 1 the topic's hash {e: epoch, s: last seq}, 2 its stream. ARGV 1 'r',
 *   2 the epoch to use if the numbering restarts, 3 since ("": none), 4 most entries,
 *   5 history_age_max_ms (0: none). Returns {seq, epoch, entries newest first}.
 * 'p' (publish): ARGV 1 'p', 2 N; then per item i (0..N-1) KEYS 3i+1..3i+3: the topic's
 *   hash, stream and the item's dedup key (unused when its window is 0), and ARGV 3+7i..:
 *   proposed epoch, data, history_messages_max, history_age_max_ms, dedup_window_ms (0: no
 *   id), channel, key TTL in ms (0: none). Returns 3N values: per item seq, epoch and 0
 *   (stored), 1 (a duplicate: seq is the topic's last) or 2 (refused: Redis did not take it).
 * A missing hash (first use, expired, or a Redis that lost its data) starts a new numbering
 * under a new epoch and drops the stream, so a client's since from before is recognised as
 * another run. The stream holds consecutive seqs, trimmed at its head only, so the newest
 * (seq - since) entries are exactly what came after since. A topic's hash is read once per
 * batch and written once after it (an item refused by XADD takes no seq: the stream stays
 * consecutive). Trimming, by count (approximate: whole stream nodes) and by age, runs once
 * a topic's seq passes a multiple of 64 (a stream holds at most 64 more than its bound, plus
 * a node: replays take only the newest count), and by age before each replay, exactly, so a
 * replay never returns what is older than the age bound. The keys' TTL is renewed once half
 * of it has passed (one PTTL per topic and batch).
 */
static const char script[] =
	"local function numbering(h, x, epoch)\n"
	"  local m = redis.call('HMGET', h, 'e', 's')\n"
	"  if m[1] and m[2] then return m[1], tonumber(m[2]) end\n"
	"  redis.call('HSET', h, 'e', epoch, 's', '0')\n"
	"  redis.call('DEL', x)\n"
	"  return epoch, 0\n"
	"end\n"
	"local function age_trim(x, age, approx)\n"
	"  if age == '0' then return end\n"
	"  local t = redis.call('TIME')\n"
	"  local min = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(age)\n"
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
	"  end\n"
	"  return {n, e, out}\n"
	"end\n"
	"local out, tops, order = {}, {}, {}\n"
	"for i = 0, tonumber(ARGV[2]) - 1 do\n"
	"  local h, x, a = KEYS[3 * i + 1], KEYS[3 * i + 2], 3 + 7 * i\n"
	"  local t = tops[h]\n"
	"  if not t then\n"
	"    local e, n = numbering(h, x, ARGV[a])\n"
	"    t = {e = e, n = n, was = n, x = x, max = ARGV[a + 2], age = ARGV[a + 3],\n"
	"         ttl = ARGV[a + 6]}\n"
	"    tops[h] = t\n"
	"    order[#order + 1] = h\n"
	"  end\n"
	"  local d, r = ARGV[a + 4], 0\n"
	"  if d ~= '0' and not redis.call('SET', KEYS[3 * i + 3], '1', 'NX', 'PX', d) then\n"
	"    r = 1\n"
	"  elseif type(redis.pcall('XADD', x, '*', 's', t.n + 1, 'd', ARGV[a + 1])) == 'table' then\n"
	"    if d ~= '0' then redis.call('DEL', KEYS[3 * i + 3]) end\n"
	"    r = 2\n"
	"  else\n"
	"    t.n = t.n + 1\n"
	"    redis.call('PUBLISH', ARGV[a + 5], t.n .. ' ' .. t.e .. ' ' .. ARGV[a + 1])\n"
	"  end\n"
	"  out[3 * i + 1], out[3 * i + 2], out[3 * i + 3] = t.n, t.e, r\n"
	"end\n"
	"for _, h in ipairs(order) do\n"
	"  local t = tops[h]\n"
	"  if t.n ~= t.was then redis.call('HSET', h, 's', t.n) end\n"
	"  if math.floor(t.n / 64) ~= math.floor(t.was / 64) then\n"
	"    redis.call('XTRIM', t.x, 'MAXLEN', '~', t.max)\n"
	"    age_trim(t.x, t.age, true)\n"
	"  end\n"
	"  if t.ttl ~= '0' and redis.call('PTTL', h) < tonumber(t.ttl) / 2 then\n"
	"    redis.call('PEXPIRE', h, t.ttl)\n"
	"    redis.call('PEXPIRE', t.x, t.ttl)\n"
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

int rc_redis_parse_entry(const redisReply *e, uint64_t *seq, const char **data, size_t *dlen)
{
	bool has_seq = false, has_data = false;
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
			has_seq = rc_parse_u64(v->str, v->len, seq);
		if (k->str[0] == 'd') {
			*data = v->str;
			*dlen = v->len;
			has_data = true;
		}
	}
	return has_seq && has_data ? 0 : -EPROTO;
}

int rc_redis_parse_msg(const char *p, size_t n, struct rc_redis_msg *out)
{
	const char *sp1 = memchr(p, ' ', n);
	if (!sp1)
		return -EPROTO;
	size_t rest = n - (size_t)(sp1 + 1 - p);
	const char *sp2 = memchr(sp1 + 1, ' ', rest);
	if (!sp2)
		return -EPROTO;
	if (!rc_parse_u64(p, (size_t)(sp1 - p), &out->seq) ||
	    !rc_parse_u64(sp1 + 1, (size_t)(sp2 - sp1 - 1), &out->epoch))
		return -EPROTO;
	if (out->seq == 0 || out->epoch == 0)
		return -EPROTO;
	out->data = sp2 + 1;
	out->data_len = n - (size_t)(sp2 + 1 - p);
	return 0;
}
