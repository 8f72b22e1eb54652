/*
 * What the nodes sharing Redis tell each other (see redis_xnode.h): the nodes' script, key
 * names, event and control payloads, and the JSON answers built from the script's replies
 * (decoded by hiredis' redisReader; nothing here reads a socket). Pure; any thread.
 */
#include "redis_xnode.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/sha.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "config.h"   /* rc_node_id_valid */
#include "api.h"      /* rc_api_write_topics */
#include "envelope.h" /* rc_topic_name_valid */

/*
 * One script, one mode per call (ARGV 1). A node's presence entries of a topic are one hash
 * per node, so Redis 7.0 (no per-field expiry) expires them per node; a sorted set per topic
 * names the nodes holding entries, scored by their expiry (Redis time), so a query skips a
 * dead node's hash even before Redis evicts it. The node registry has the same shape: a hash
 * per node and a sorted set of nodes.
 * 'a' (change or refresh): KEYS 1 the node's hash, 2 the set; ARGV 2 the TTL in ms, 3 the
 *   node, 4 how many fields to delete, those fields, then field/value pairs to set. The hash
 *   and the node's score get the TTL (an emptied hash leaves the set); expired nodes leave
 *   the set; the set lives as long as its latest node.
 * 'w' (replace): as 'a', the hash emptied first (a full rewrite, a registry entry).
 * 'x' (remove): KEYS as 'a'; ARGV 2 the node. The hash and the node's score go.
 * 'q' (presence): KEYS 1 the set; ARGV 2 the hashes' name without the node, 3 the most
 *   entries to list. Returns {connections, distinct users, 1 if listed, entries}. An entry
 *   is the JSON {"user":U,"conn":C...}; the user's escaped text, which cannot hold '","',
 *   tells users apart.
 * 'i' (registry): KEYS 1 the set; ARGV 2 the hashes' name without the node. Returns
 *   {{node, {field, value, ...}}, ...} of the live nodes.
 */
static const char script[] =
	"local function now()\n"
	"  local t = redis.call('TIME')\n"
	"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"end\n"
	"local mode = ARGV[1]\n"
	"if mode == 'a' or mode == 'w' then\n"
	"  local ttl, t, nd = tonumber(ARGV[2]), now(), tonumber(ARGV[4])\n"
	"  if mode == 'w' then redis.call('DEL', KEYS[1]) end\n"
	"  for i = 5, 4 + nd do redis.call('HDEL', KEYS[1], ARGV[i]) end\n"
	"  for i = 5 + nd, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
	"  if redis.call('PEXPIRE', KEYS[1], ttl) == 1 then\n"
	"    redis.call('ZADD', KEYS[2], t + ttl, ARGV[3])\n"
	"  else\n"
	"    redis.call('ZREM', KEYS[2], ARGV[3])\n"
	"  end\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t)\n"
	"  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end\n"
	"  return 1\n"
	"end\n"
	"if mode == 'x' then\n"
	"  redis.call('DEL', KEYS[1])\n"
	"  redis.call('ZREM', KEYS[2], ARGV[2])\n"
	"  return 1\n"
	"end\n"
	"local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], now(), '+inf')\n"
	"if mode == 'i' then\n"
	"  local out = {}\n"
	"  for _, n in ipairs(nodes) do\n"
	"    local h = redis.call('HGETALL', ARGV[2] .. n)\n"
	"    if #h > 0 then out[#out + 1] = {n, h} end\n"
	"  end\n"
	"  return out\n"
	"end\n"
	"local conns, users, seen, list, max = 0, 0, {}, {}, tonumber(ARGV[3])\n"
	"for _, n in ipairs(nodes) do\n"
	"  for _, v in ipairs(redis.call('HVALS', ARGV[2] .. n)) do\n"
	"    conns = conns + 1\n"
	"    local e = string.find(v, '\",\"conn\":\"', 1, true)\n"
	"    local u = e and string.sub(v, 1, e) or v\n"
	"    if not seen[u] then seen[u] = true; users = users + 1 end\n"
	"    if conns <= max then list[conns] = v end\n"
	"  end\n"
	"end\n"
	"if conns > max then list = {} end\n"
	"return {conns, users, conns <= max and 1 or 0, list}\n";

const char *rc_xnode_script(size_t *len)
{
	*len = sizeof(script) - 1;
	return script;
}

void rc_xnode_script_sha(char out[41])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[SHA_DIGEST_LENGTH];
	SHA1((const uint8_t *)script, sizeof(script) - 1, md);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[40] = '\0';
}

size_t rc_xnode_key(char *out, size_t cap, const char *prefix, const char *topic, size_t tlen,
		    const char *node, enum rc_xnode_key which)
{
	int n = -1;
	RC_ASSERT(which < RC_XNODE_KEY_COUNT);
	switch (which) {
	case RC_XNODE_KEY_PRESENCE:
		n = snprintf(out, cap, "%s{%.*s}.p.%s", prefix, (int)tlen, topic, node);
		break;
	case RC_XNODE_KEY_PRESENCE_BASE:
		n = snprintf(out, cap, "%s{%.*s}.p.", prefix, (int)tlen, topic);
		break;
	case RC_XNODE_KEY_TOPIC_NODES:
		n = snprintf(out, cap, "%s{%.*s}.pn", prefix, (int)tlen, topic);
		break;
	case RC_XNODE_KEY_NODES: n = snprintf(out, cap, "%snodes", prefix); break;
	case RC_XNODE_KEY_NODE: n = snprintf(out, cap, "%snode.%s", prefix, node); break;
	case RC_XNODE_KEY_NODE_BASE: n = snprintf(out, cap, "%snode.", prefix); break;
	case RC_XNODE_KEY_CONTROL: n = snprintf(out, cap, "%s!ctl", prefix); break;
	case RC_XNODE_KEY_TOPIC_SETS: n = snprintf(out, cap, "%stopics", prefix); break;
	case RC_XNODE_KEY_TOPICS: n = snprintf(out, cap, "%stopics.%s", prefix, node); break;
	case RC_XNODE_KEY_TOPICS_BASE: n = snprintf(out, cap, "%stopics.", prefix); break;
	default: break;
	}
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- payloads ------------------------------------------------------------------------------ */
bool rc_xnode_is_event(const char *p, size_t n)
{
	return n > 0 && isalpha((unsigned char)p[0]);
}

/* Splits "<kind> <word> <rest>": the kind letter, the word (a node_id) and where the rest
 * starts. False if p[0..n) is not of that shape. */
static bool split_head(const char *p, size_t n, const char **word, size_t *wlen,
		       const char **rest)
{
	if (n < 4 || p[1] != ' ')
		return false;
	const char *sp = memchr(p + 2, ' ', n - 2);
	if (!sp)
		return false;
	*word = p + 2;
	*wlen = (size_t)(sp - *word);
	*rest = sp + 1;
	return rc_node_id_valid(*word, *wlen, false);
}

int rc_xnode_parse_event(const char *p, size_t n, struct rc_xnode_event *out)
{
	const char *rest;
	if (!split_head(p, n, &out->node, &out->node_len, &rest) || (p[0] != 'j' && p[0] != 'l'))
		return -EPROTO;
	out->kind = p[0];
	out->data = rest;
	out->data_len = n - (size_t)(rest - p);
	/* An envelope is a JSON object: anything else is not ours to deliver. */
	if (out->data_len < 2 || out->data[0] != '{' || out->data[out->data_len - 1] != '}')
		return -EPROTO;
	return 0;
}

char *rc_xnode_write_event(char kind, const char *node, const char *env, size_t elen,
			   size_t *len)
{
	size_t nlen = strlen(node);
	char *out = malloc(nlen + elen + 4);
	RC_ASSERT(kind == 'j' || kind == 'l');
	if (!out)
		return NULL;
	out[0] = kind;
	out[1] = ' ';
	memcpy(out + 2, node, nlen);
	out[2 + nlen] = ' ';
	memcpy(out + 3 + nlen, env, elen);
	*len = nlen + elen + 3;
	return out;
}

int rc_xnode_parse_ctl(const char *p, size_t n, struct rc_xnode_ctl *out)
{
	const char *rest, *sp;
	memset(out, 0, sizeof(*out));
	if (!split_head(p, n, &out->node, &out->node_len, &rest) || (p[0] != 'd' && p[0] != 'u'))
		return -EPROTO;
	out->kind = p[0];
	size_t left = n - (size_t)(rest - p);
	sp = memchr(rest, ' ', left);
	if (!sp)
		return -EPROTO;
	size_t wlen = (size_t)(sp - rest);
	out->user = sp + 1;
	out->user_len = left - wlen - 1;
	if (out->user_len == 0 || out->user_len > 127 || memchr(out->user, '\0', out->user_len))
		return -EPROTO; /* what the API takes: a JSON string of 1..127 bytes */
	if (out->kind == 'u') {
		out->topic = rest;
		out->topic_len = wlen;
		return rc_topic_name_valid(rest, wlen) ? 0 : -EPROTO;
	}
	uint64_t code;
	if (wlen == 0 || rest[0] == '0' || !rc_parse_u64(rest, wlen, &code) ||
	    (code != 1000 && (code < 3000 || code > 4999)))
		return -EPROTO;
	out->code = (uint16_t)code;
	return 0;
}

size_t rc_xnode_write_ctl(char *out, size_t cap, const struct rc_xnode_ctl *m)
{
	int n;
	RC_ASSERT(m->kind == 'd' || m->kind == 'u');
	if (m->kind == 'd')
		n = snprintf(out, cap, "d %.*s %u %.*s", (int)m->node_len, m->node, m->code,
			     (int)m->user_len, m->user);
	else
		n = snprintf(out, cap, "u %.*s %.*s %.*s", (int)m->node_len, m->node,
			     (int)m->topic_len, m->topic, (int)m->user_len, m->user);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- replies ------------------------------------------------------------------------------- */
static bool int_of(const redisReply *r, uint64_t *out)
{
	if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
		return false;
	*out = (uint64_t)r->integer;
	return true;
}

int rc_xnode_parse_presence(const redisReply *r, struct rc_xnode_presence *out)
{
	uint64_t listed;
	memset(out, 0, sizeof(*out));
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
	    !int_of(r->element[0], &out->connections) || !int_of(r->element[1], &out->users) ||
	    !int_of(r->element[2], &listed) || listed > 1 ||
	    r->element[3]->type != REDIS_REPLY_ARRAY || out->users > out->connections)
		return -EPROTO;
	out->listed = listed == 1;
	out->clients = r->element[3];
	return out->listed && out->clients->elements != out->connections ? -EPROTO : 0;
}

/* Adds "name":s[0..n) to obj; false without memory. */
static bool add_text(cJSON *obj, const char *name, const char *s, size_t n)
{
	char *z = malloc(n + 1);
	cJSON *v = NULL;
	if (z) {
		memcpy(z, s, n);
		z[n] = '\0';
		v = cJSON_CreateString(z);
	}
	free(z);
	if (v && cJSON_AddItemToObject(obj, name, v))
		return true;
	cJSON_Delete(v);
	return false;
}

/* Prints and deletes root: the text (the caller frees it) and *len, or NULL. */
static char *print(cJSON *root, bool ok, size_t *len)
{
	char *out = ok && root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	*len = out ? strlen(out) : 0;
	return out;
}

/* Adds p's entries that are JSON objects to arr; false without memory. */
static bool add_clients(cJSON *arr, const struct rc_xnode_presence *p, size_t *skipped)
{
	for (size_t i = 0; i < p->clients->elements; i++) {
		const redisReply *e = p->clients->element[i];
		cJSON *c = e->type == REDIS_REPLY_STRING ? cJSON_ParseWithLength(e->str, e->len)
							  : NULL;
		if (!cJSON_IsObject(c)) {
			cJSON_Delete(c);
			(*skipped)++;
			continue;
		}
		if (!cJSON_AddItemToArray(arr, c)) {
			cJSON_Delete(c);
			return false;
		}
	}
	return true;
}

char *rc_xnode_write_presence(const struct rc_xnode_presence *p, const char *op,
			      const char *topic, size_t tlen, bool list, size_t *skipped,
			      size_t *len)
{
	cJSON *root = cJSON_CreateObject();
	bool ok = root && cJSON_AddStringToObject(root, "op", op) &&
		  add_text(root, "topic", topic, tlen) &&
		  cJSON_AddNumberToObject(root, "connections", (double)p->connections) &&
		  cJSON_AddNumberToObject(root, "users", (double)p->users);
	*skipped = 0;
	if (ok && list && !p->listed)
		ok = cJSON_AddTrueToObject(root, "clients_omitted") != NULL;
	if (ok && list && p->listed) {
		cJSON *arr = cJSON_AddArrayToObject(root, "clients");
		ok = arr && add_clients(arr, p, skipped);
	}
	return print(root, ok, len);
}

/* {"node":id, field: value...} of one registry entry [id, [field, value, ...]], or NULL
 * (malformed: skipped, or no memory). */
static cJSON *node_entry(const redisReply *e)
{
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
	    e->element[1]->elements % 2)
		return NULL;
	const redisReply *id = e->element[0], *h = e->element[1];
	cJSON *o = cJSON_CreateObject();
	bool ok = o && add_text(o, "node", id->str, id->len);
	for (size_t i = 0; ok && i + 1 < h->elements; i += 2) {
		const redisReply *k = h->element[i], *v = h->element[i + 1];
		uint64_t num;
		char name[64];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    k->len >= sizeof(name) || strcmp(k->str, "node") == 0)
			continue;
		snprintf(name, sizeof(name), "%s", k->str);
		if (rc_parse_u64(v->str, v->len, &num))
			ok = cJSON_AddNumberToObject(o, name, (double)num) != NULL;
		else
			ok = add_text(o, name, v->str, v->len);
	}
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

char *rc_xnode_write_info(const char *local, size_t llen, const redisReply *r, size_t *len)
{
	cJSON *root = cJSON_ParseWithLength(local, llen);
	bool ok = cJSON_IsObject(root);
	if (ok && !r)
		ok = cJSON_AddTrueToObject(root, "partial") != NULL;
	cJSON *arr = ok && r ? cJSON_AddArrayToObject(root, "nodes") : NULL;
	ok = ok && (!r || arr);
	for (size_t i = 0; ok && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		cJSON *o = node_entry(r->element[i]);
		if (o && !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			ok = false;
		}
	}
	return print(root, ok, len);
}

/* Whether member "<node>/<shard>" is one of node own's shards. */
static bool own_member(const redisReply *m, const char *own)
{
	size_t n = strlen(own);
	return m->type == REDIS_REPLY_STRING && m->len > n && m->str[n] == '/' &&
	       memcmp(m->str, own, n) == 0;
}

/* Appends "topic count\n" for each valid field/value pair of hash reply h to text. */
static bool append_topics(char **text, size_t *len, size_t *cap, const redisReply *h)
{
	for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
		const redisReply *t = h->element[i], *v = h->element[i + 1];
		uint64_t count;
		if (t->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    !rc_topic_name_valid(t->str, t->len) || !rc_parse_u64(v->str, v->len, &count))
			continue;
		if (*len + t->len + 24 > *cap) {
			size_t c = 2 * *cap + t->len + 24;
			char *p = realloc(*text, c);
			if (!p)
				return false;
			*text = p;
			*cap = c;
		}
		*len += (size_t)snprintf(*text + *len, *cap - *len, "%.*s %llu\n", (int)t->len,
					 t->str, (unsigned long long)count);
	}
	return true;
}

char *rc_xnode_write_topics(const char *local, size_t llen, const redisReply *r,
			    const char *own, size_t *len)
{
	size_t cap = llen + 256, n = llen;
	char *lines = malloc(cap), *out = NULL;
	bool ok = lines != NULL;
	if (ok)
		memcpy(lines, local, llen);
	for (size_t i = 0; ok && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
		    !own_member(e->element[0], own))
			ok = append_topics(&lines, &n, &cap, e->element[1]);
	}
	out = ok ? rc_api_write_topics(lines, n, len) : NULL;
	free(lines);
	if (!out || r)
		return out;
	cJSON *root = cJSON_Parse(out);
	free(out);
	ok = cJSON_IsObject(root) && cJSON_AddTrueToObject(root, "partial") != NULL;
	return print(root, ok, len);
}
