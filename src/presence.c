/*
 * Presence of one topic (see presence.h): a dense entry array, an index by connection id and
 * a count of connections per user hash, both open-addressing maps that grow by doubling at
 * half full and delete by shifting back (no tombstones). Answers and events are written with
 * cJSON, which escapes user ids. Pure; the owner shard's thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "presence.h"
#include "topic.h"

/* ---- u64 -> u32 map ------------------------------------------------------------------------ */
static uint32_t slot_of(const struct rc_u64map *m, uint64_t key)
{
	/* Keys are ids and SipHash values: a multiplicative mix spreads the ids' low bits. */
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
}

/* The slot holding key, or the empty slot where it would go. Needs slots. */
static uint32_t probe(const struct rc_u64map *m, uint64_t key)
{
	uint32_t i = slot_of(m, key);
	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & m->mask;
	return i;
}

static uint32_t *map_get(const struct rc_u64map *m, uint64_t key)
{
	if (!m->keys)
		return NULL;
	uint32_t i = probe(m, key);
	return m->keys[i] ? &m->vals[i] : NULL;
}

/* Room for one more key (at most half full). 0 or -ENOMEM (m unchanged). */
static int map_reserve(struct rc_u64map *m)
{
	uint32_t slots = m->keys ? m->mask + 1 : 0;
	if ((m->count + 1) * 2 <= slots)
		return 0;
	uint32_t nslots = slots ? slots * 2 : 16;
	struct rc_u64map n = {calloc(nslots, sizeof(*n.keys)), calloc(nslots, sizeof(*n.vals)),
			      nslots - 1, 0};
	if (!n.keys || !n.vals) {
		free(n.keys);
		free(n.vals);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < slots; i++) {
		if (!m->keys[i])
			continue;
		uint32_t j = probe(&n, m->keys[i]);
		n.keys[j] = m->keys[i];
		n.vals[j] = m->vals[i];
		n.count++;
	}
	free(m->keys);
	free(m->vals);
	*m = n;
	return 0;
}

/* Sets key (absent, with room reserved) to val. */
static void map_put(struct rc_u64map *m, uint64_t key, uint32_t val)
{
	uint32_t i = probe(m, key);
	RC_ASSERT(m->keys[i] == 0 && (m->count + 1) * 2 <= m->mask + 1);
	m->keys[i] = key;
	m->vals[i] = val;
	m->count++;
}

/* Removes key (present), shifting later keys of its run back into the hole. */
static void map_del(struct rc_u64map *m, uint64_t key)
{
	uint32_t hole = probe(m, key);
	RC_ASSERT(m->keys[hole] == key);
	for (uint32_t i = (hole + 1) & m->mask; m->keys[i]; i = (i + 1) & m->mask) {
		uint32_t home = slot_of(m, m->keys[i]);
		/* Moves unless its home lies cyclically in (hole, i]. */
		if (((i - home) & m->mask) >= ((i - hole) & m->mask)) {
			m->keys[hole] = m->keys[i];
			m->vals[hole] = m->vals[i];
			hole = i;
		}
	}
	m->keys[hole] = 0;
	m->count--;
}

static size_t map_bytes(const struct rc_u64map *m)
{
	return m->keys ? (size_t)(m->mask + 1) * (sizeof(*m->keys) + sizeof(*m->vals)) : 0;
}

static void map_free(struct rc_u64map *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct rc_u64map){0};
}

/* ---- the set --------------------------------------------------------------------------------- */
static int entries_reserve(struct rc_presence *p)
{
	if (p->count < p->cap)
		return 0;
	uint32_t ncap = p->cap ? p->cap * 2 : 4;
	struct rc_presence_entry *v = realloc(p->v, ncap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->v = v;
	p->cap = ncap;
	return 0;
}

int rc_presence_add(struct rc_presence *p, uint64_t conn, const char *user, size_t ulen,
		    const char *info, size_t ilen, uint32_t max)
{
	if (!conn || ulen > RC_PRESENCE_USER_BYTES_LIMIT || ilen > RC_PRESENCE_INFO_BYTES_LIMIT)
		return -EINVAL;
	if (map_get(&p->by_conn, conn))
		return -EEXIST;
	if (p->count >= max)
		return -E2BIG;
	uint64_t uh = rc_topic_hash(user, ulen) | 1;
	uint32_t *known = map_get(&p->users, uh);
	char *text = malloc(ulen + ilen + 1);
	if (!text || entries_reserve(p) || map_reserve(&p->by_conn) ||
	    (!known && map_reserve(&p->users))) {
		free(text);
		return -ENOMEM;
	}
	memcpy(text, user, ulen);
	if (ilen)
		memcpy(text + ulen, info, ilen);
	p->v[p->count] = (struct rc_presence_entry){conn, uh, text, (uint16_t)ulen, (uint16_t)ilen};
	map_put(&p->by_conn, conn, p->count);
	if (known)
		(*known)++;
	else
		map_put(&p->users, uh, 1);
	p->count++;
	p->text_bytes += ulen + ilen + 1;
	return 0;
}

int rc_presence_remove(struct rc_presence *p, uint64_t conn)
{
	uint32_t *at = map_get(&p->by_conn, conn);
	if (!at)
		return -ENOENT;
	uint32_t i = *at;
	struct rc_presence_entry *e = &p->v[i];
	uint32_t *users = map_get(&p->users, e->user_hash);
	RC_ASSERT(users && *users > 0);
	if (--*users == 0)
		map_del(&p->users, e->user_hash);
	map_del(&p->by_conn, conn);
	p->text_bytes -= (size_t)e->user_len + e->info_len + 1;
	free(e->text);
	/* The last entry fills the hole, and its index follows. */
	if (i != --p->count) {
		*e = p->v[p->count];
		*map_get(&p->by_conn, e->conn) = i;
	}
	return 0;
}

const struct rc_presence_entry *rc_presence_find(const struct rc_presence *p, uint64_t conn)
{
	const uint32_t *at = map_get(&p->by_conn, conn);
	return at ? &p->v[*at] : NULL;
}

uint32_t rc_presence_users(const struct rc_presence *p)
{
	return p->users.count;
}

size_t rc_presence_bytes(const struct rc_presence *p)
{
	return (size_t)p->cap * sizeof(*p->v) + map_bytes(&p->by_conn) + map_bytes(&p->users) +
	       p->text_bytes;
}

void rc_presence_free(struct rc_presence *p)
{
	for (uint32_t i = 0; i < p->count; i++)
		free(p->v[i].text);
	free(p->v);
	map_free(&p->by_conn);
	map_free(&p->users);
	*p = (struct rc_presence){0};
}

bool rc_presence_validate(const struct rc_presence *p)
{
	uint32_t users = 0;
	if (p->by_conn.count != p->count || p->count > p->cap)
		return false;
	for (uint32_t i = 0; i < p->count; i++) {
		const uint32_t *at = map_get(&p->by_conn, p->v[i].conn);
		if (!at || *at != i || !map_get(&p->users, p->v[i].user_hash))
			return false;
	}
	for (uint32_t i = 0; p->users.keys && i <= p->users.mask; i++)
		users += p->users.keys[i] ? p->users.vals[i] : 0;
	return users == p->count;
}

/* ---- JSON --------------------------------------------------------------------------------- */
void rc_presence_conn_text(uint64_t conn, char out[RC_PRESENCE_CONN_CHARS])
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = RC_PRESENCE_CONN_CHARS; i-- > 0; conn >>= 4)
		out[i] = hex[conn & 15];
}

/* A cJSON string (or, raw, JSON text as is) of s[0..n); NULL without memory. */
static cJSON *create_n(const char *s, size_t n, bool raw)
{
	char *z = malloc(n + 1);
	if (!z)
		return NULL;
	memcpy(z, s, n);
	z[n] = '\0';
	cJSON *v = raw ? cJSON_CreateRaw(z) : cJSON_CreateString(z);
	free(z);
	return v;
}

/* Adds "name":s[0..n) to obj (raw: JSON text as is); false without memory. */
static bool add_n(cJSON *obj, const char *name, const char *s, size_t n, bool raw)
{
	cJSON *v = create_n(s, n, raw);
	if (v && cJSON_AddItemToObject(obj, name, v))
		return true;
	cJSON_Delete(v);
	return false;
}

/* Adds "user", "conn" and, with ilen, "info" (raw JSON) to obj; false without memory. */
static bool add_client(cJSON *obj, const char *user, size_t ulen, uint64_t conn,
		       const char *info, size_t ilen)
{
	char id[RC_PRESENCE_CONN_CHARS];
	rc_presence_conn_text(conn, id);
	return add_n(obj, "user", user, ulen, false) && add_n(obj, "conn", id, sizeof(id), false) &&
	       (!ilen || add_n(obj, "info", info, ilen, true));
}

/* Prints and deletes root: the text (the caller frees it) and *len, or NULL. */
static char *finish(cJSON *root, bool ok, size_t *len)
{
	char *out = ok ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	*len = out ? strlen(out) : 0;
	return out;
}

/* {"op":op,"topic":T} to add to; NULL without memory. */
static cJSON *head(const char *op, const char *topic, size_t tlen)
{
	cJSON *root = cJSON_CreateObject();
	if (root && cJSON_AddStringToObject(root, "op", op) &&
	    add_n(root, "topic", topic, tlen, false))
		return root;
	cJSON_Delete(root);
	return NULL;
}

char *rc_presence_write(const struct rc_presence *p, const char *op, const char *topic,
			size_t tlen, bool list, bool omitted, size_t *len)
{
	cJSON *root = head(op, topic, tlen);
	bool ok = root && cJSON_AddNumberToObject(root, "connections", p->count) &&
		  cJSON_AddNumberToObject(root, "users", p->users.count);
	if (ok && omitted)
		ok = cJSON_AddTrueToObject(root, "clients_omitted") != NULL;
	cJSON *clients = ok && list ? cJSON_AddArrayToObject(root, "clients") : NULL;
	ok = ok && (!list || clients);
	for (uint32_t i = 0; ok && list && i < p->count; i++) {
		const struct rc_presence_entry *e = &p->v[i];
		cJSON *c = cJSON_CreateObject();
		ok = c && cJSON_AddItemToArray(clients, c) &&
		     add_client(c, e->text, e->user_len, e->conn, e->text + e->user_len,
				e->info_len);
	}
	if (!root)
		return NULL;
	return finish(root, ok, len);
}

char *rc_presence_write_event(bool join, const char *topic, size_t tlen, const char *user,
			      size_t ulen, uint64_t conn, const char *info, size_t ilen,
			      size_t *len)
{
	cJSON *root = head(join ? "join" : "leave", topic, tlen);
	if (!root)
		return NULL;
	return finish(root, add_client(root, user, ulen, conn, info, ilen), len);
}

char *rc_presence_write_client(const struct rc_presence_entry *e, size_t *len)
{
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	return finish(root, add_client(root, e->text, e->user_len, e->conn, e->text + e->user_len,
				       e->info_len),
		      len);
}
