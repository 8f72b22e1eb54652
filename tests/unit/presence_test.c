/* Presence sets: add, remove (the swapped-in entry keeps its index), distinct users, bounds,
 * the footprint, and the JSON answers and events. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "presence.h"

static struct rc_presence p;

static void reset(void)
{
	rc_presence_free(&p);
}

TestSuite(presence, .fini = reset);

Test(presence, counts_connections_and_distinct_users)
{
	cr_assert(eq(int, rc_presence_add(&p, 1, "alice", 5, NULL, 0, 10), 0));
	cr_assert(eq(int, rc_presence_add(&p, 2, "alice", 5, NULL, 0, 10), 0));
	cr_assert(eq(int, rc_presence_add(&p, 3, "bob", 3, "{\"n\":1}", 7, 10), 0));
	cr_assert(eq(int, rc_presence_add(&p, 3, "bob", 3, NULL, 0, 10), -EEXIST));
	cr_assert(eq(u32, p.count, 3));
	cr_assert(eq(u32, rc_presence_users(&p), 2));
	cr_assert(eq(int, rc_presence_remove(&p, 1), 0));
	cr_assert(eq(u32, rc_presence_users(&p), 2));
	cr_assert(eq(int, rc_presence_remove(&p, 2), 0));
	cr_assert(eq(u32, rc_presence_users(&p), 1));
	cr_assert(eq(int, rc_presence_remove(&p, 2), -ENOENT));
	const struct rc_presence_entry *e = rc_presence_find(&p, 3);
	cr_assert(e && e->user_len == 3 && memcmp(e->text, "bob", 3) == 0);
	cr_assert(rc_presence_validate(&p));
}

Test(presence, refuses_past_max_and_bad_input)
{
	cr_assert(eq(int, rc_presence_add(&p, 1, "a", 1, NULL, 0, 1), 0));
	cr_assert(eq(int, rc_presence_add(&p, 2, "b", 1, NULL, 0, 1), -E2BIG));
	cr_assert(eq(int, rc_presence_add(&p, 0, "b", 1, NULL, 0, 5), -EINVAL));
	char big[RC_PRESENCE_INFO_BYTES_LIMIT + 1];
	memset(big, '1', sizeof(big));
	cr_assert(eq(int, rc_presence_add(&p, 3, "b", 1, big, sizeof(big), 5), -EINVAL));
}

Test(presence, many_entries_in_any_order_keep_the_indexes_right)
{
	char user[16];
	for (uint64_t i = 1; i <= 5000; i++) {
		int n = snprintf(user, sizeof(user), "u%llu", (unsigned long long)(i % 700));
		cr_assert(eq(int, rc_presence_add(&p, i * 0x10001, user, (size_t)n, NULL, 0, 10000),
			     0));
	}
	cr_assert(eq(u32, rc_presence_users(&p), 700));
	size_t full = rc_presence_bytes(&p);
	cr_assert(full > 5000 * sizeof(struct rc_presence_entry));
	for (uint64_t i = 1; i <= 5000; i += 2)
		cr_assert(eq(int, rc_presence_remove(&p, i * 0x10001), 0));
	cr_assert(eq(u32, p.count, 2500));
	cr_assert(rc_presence_validate(&p));
	for (uint64_t i = 2; i <= 5000; i += 2)
		cr_assert(rc_presence_find(&p, i * 0x10001) != NULL);
	for (uint64_t i = 2; i <= 5000; i += 2)
		cr_assert(eq(int, rc_presence_remove(&p, i * 0x10001), 0));
	cr_assert(eq(u32, p.count, 0));
	cr_assert(eq(u32, rc_presence_users(&p), 0));
	cr_assert(eq(sz, p.text_bytes, 0));
}

Test(presence, writes_the_list_the_counts_and_events)
{
	size_t len;
	cr_assert(eq(int, rc_presence_add(&p, 0xab, "al\"ice", 6, "{\"n\":1}", 7, 10), 0));
	char *s = rc_presence_write(&p, "presence", "chat:x", 6, true, false, &len);
	cr_assert(s != NULL);
	cr_assert(eq(str, s,
		     "{\"op\":\"presence\",\"topic\":\"chat:x\",\"connections\":1,\"users\":1,"
		     "\"clients\":[{\"user\":\"al\\\"ice\",\"conn\":\"00000000000000ab\","
		     "\"info\":{\"n\":1}}]}"));
	cr_assert(eq(sz, len, strlen(s)));
	free(s);
	s = rc_presence_write(&p, "presence", "chat:x", 6, false, true, &len);
	cr_assert(eq(str, s,
		     "{\"op\":\"presence\",\"topic\":\"chat:x\",\"connections\":1,\"users\":1,"
		     "\"clients_omitted\":true}"));
	free(s);
	s = rc_presence_write_event(false, "chat:x", 6, "bob", 3, 0x1, NULL, 0, &len);
	cr_assert(eq(str, s,
		     "{\"op\":\"leave\",\"topic\":\"chat:x\",\"user\":\"bob\","
		     "\"conn\":\"0000000000000001\"}"));
	free(s);
}
