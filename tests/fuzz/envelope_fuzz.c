/*
 * libFuzzer target for src/envelope.c. The first input byte picks the data buffer size and
 * the batch item limit; the rest is parsed as a client message and as a POST /publish body.
 * What parses must meet every postcondition of envelope.h, and round-trip: its data re-parses
 * to the same bytes (compaction is a fixed point), and the msg, ack and gap built from it are
 * JSON that cJSON reads back to the same fields. What fails must carry a code and a reason
 * that the error writer turns into JSON reading back the same reason. The rest, taken as a C
 * string, also goes through the error writer's escaping. Also linked without libFuzzer into
 * the corpus replay (tests/fuzz/replay/replay_main.c).
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "envelope.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ITEMS_LIMIT 10
#define OUT_SLACK 200 /* envelope bytes around topic, seq, id and data */

static char data_buf[1 << 16];
static char redo_buf[1 << 16];

static bool utf8(const char *s, size_t n)
{
	return rc_utf8_valid((const uint8_t *)s, n);
}

/* cJSON reads out[0..n) as an object whose member key is the string want. */
static void expect_string_member(const char *out, size_t n, const char *key, const char *want)
{
	cJSON *j = cJSON_ParseWithLength(out, n);
	const cJSON *m;

	RC_ASSERT(j != NULL);
	m = cJSON_GetObjectItemCaseSensitive(j, key);
	RC_ASSERT(cJSON_IsString(m));
	RC_ASSERT(strcmp(m->valuestring, want) == 0);
	cJSON_Delete(j);
}

/* Wraps e's data in a new pub and parses it again: the same data bytes must come back. */
static void reparse_data(const struct rc_envelope *e)
{
	size_t cap = e->data_len + e->topic_len + OUT_SLACK, n;
	char *msg = malloc(cap);
	struct rc_envelope again;
	const char *reason;

	RC_ASSERT(msg != NULL);
	n = (size_t)snprintf(msg, cap, "{\"op\":\"pub\",\"topic\":\"%s\",\"data\":%s}", e->topic,
			     e->data);
	RC_ASSERT(n < cap);
	RC_ASSERT(rc_envelope_parse(msg, n, &again, redo_buf, sizeof(redo_buf), &reason) ==
		  RC_ENVELOPE_OK);
	RC_ASSERT(again.data_len == e->data_len);
	RC_ASSERT(memcmp(again.data, e->data, e->data_len) == 0);
	free(msg);
}

/* Builds msg, ack and gap from e and reads them back. */
static void build_from(const struct rc_envelope *e)
{
	size_t cap = e->data_len + e->topic_len + e->id_len * 6 + OUT_SLACK, n;
	char *out = malloc(cap);
	cJSON *j;

	RC_ASSERT(out != NULL);
	if (e->op == RC_ENVELOPE_OP_PUB) {
		n = rc_envelope_write_msg(out, cap, e->topic, e->topic_len, RC_ENVELOPE_SEQ_LIMIT,
					  e->data, e->data_len);
		RC_ASSERT(n == rc_envelope_msg_len(e->topic_len, RC_ENVELOPE_SEQ_LIMIT,
						   e->data_len));
		RC_ASSERT(rc_envelope_write_msg(out, n - 1, e->topic, e->topic_len,
						RC_ENVELOPE_SEQ_LIMIT, e->data, e->data_len) == 0);
		RC_ASSERT(utf8(out, n));
		expect_string_member(out, n, "topic", e->topic);
		j = cJSON_ParseWithLength(out, n);
		RC_ASSERT(j != NULL && cJSON_GetObjectItemCaseSensitive(j, "data") != NULL);
		cJSON_Delete(j);
	}
	n = rc_envelope_write_ack(out, cap, e->op, e->topic, e->topic_len, e->since, e->epoch,
				  e->id, e->id_len);
	RC_ASSERT(n > 0 && utf8(out, n));
	expect_string_member(out, n, "of", rc_envelope_op_name(e->op));
	if (e->id_len)
		expect_string_member(out, n, "id", e->id);
	if (e->topic_len) {
		n = rc_envelope_write_gap(out, cap, e->topic, e->topic_len, 1, e->since + 1,
					  e->epoch | 1);
		RC_ASSERT(n > 0);
		expect_string_member(out, n, "topic", e->topic);
		n = rc_envelope_write_reset(out, cap, e->topic, e->topic_len, e->epoch | 1,
					    e->since);
		RC_ASSERT(n > 0);
		expect_string_member(out, n, "topic", e->topic);
	}
	free(out);
}

/* The postconditions of a parsed message or item. */
static void check_parsed(const struct rc_envelope *e, size_t data_cap)
{
	RC_ASSERT(e->op < RC_ENVELOPE_OP_COUNT);
	RC_ASSERT(strlen(e->topic) == e->topic_len);
	if (e->op == RC_ENVELOPE_OP_PING || e->op == RC_ENVELOPE_OP_REFRESH)
		RC_ASSERT(e->topic_len == 0);
	else
		RC_ASSERT(rc_topic_name_valid(e->topic, e->topic_len));
	if (e->has_since)
		RC_ASSERT(e->op == RC_ENVELOPE_OP_SUB && e->since <= RC_ENVELOPE_SEQ_LIMIT);
	RC_ASSERT(e->id_len <= RC_ENVELOPE_ID_BYTES_LIMIT && strlen(e->id) == e->id_len);
	RC_ASSERT(utf8(e->id, e->id_len));
	if (e->id_len)
		RC_ASSERT(e->op == RC_ENVELOPE_OP_PUB);
	RC_ASSERT((e->op == RC_ENVELOPE_OP_PUB) == (e->data != NULL));
	if (e->data) {
		RC_ASSERT(e->data_len > 0 && e->data_len < data_cap);
		RC_ASSERT(strlen(e->data) == e->data_len);
		RC_ASSERT(utf8(e->data, e->data_len));
		reparse_data(e);
	}
	if (e->op == RC_ENVELOPE_OP_REFRESH)
		RC_ASSERT(e->token != NULL);
	if (e->token)
		RC_ASSERT(e->token_len > 0 && e->token_len < data_cap &&
			  strlen(e->token) == e->token_len);
	build_from(e);
}

/* A refusal: a known code and a reason the error writer can carry. */
static void check_refusal(enum rc_envelope_err err, const char *reason)
{
	char out[512];
	size_t n;

	RC_ASSERT(err > RC_ENVELOPE_OK && err <= RC_ENVELOPE_ERR_BATCH);
	RC_ASSERT(reason != NULL && reason[0] != '\0');
	n = rc_envelope_write_error(out, sizeof(out), err, reason);
	RC_ASSERT(n > 0);
	expect_string_member(out, n, "reason", reason);
}

/* Any UTF-8 text goes through the error writer's escaping and reads back unchanged. */
static void escape_round_trip(const char *p, size_t n)
{
	size_t len = strnlen(p, n), cap = len * 6 + OUT_SLACK, w;
	char *text = malloc(len + 1), *out = malloc(cap);

	RC_ASSERT(text != NULL && out != NULL);
	memcpy(text, p, len);
	text[len] = '\0';
	if (utf8(text, len)) {
		w = rc_envelope_write_error(out, cap, RC_ENVELOPE_ERR_INTERNAL, text);
		RC_ASSERT(w > 0 && utf8(out, w));
		expect_string_member(out, w, "reason", text);
	}
	free(text);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rc_envelope items[ITEMS_LIMIT];
	const char *in = (const char *)data + 1, *reason = NULL;
	size_t len, data_cap;
	uint32_t items_max, count = 0;
	enum rc_envelope_err err;
	struct rc_envelope e;

	if (size < 1)
		return 0;
	len = size - 1;
	data_cap = (data[0] & 63) ? (size_t)(data[0] & 63) * 4 : sizeof(data_buf);
	items_max = 1 + (uint32_t)(data[0] >> 6) * 3;

	err = rc_envelope_parse(in, len, &e, data_buf, data_cap, &reason);
	if (err == RC_ENVELOPE_OK)
		check_parsed(&e, data_cap);
	else
		check_refusal(err, reason);

	err = rc_envelope_parse_publish(in, len, items, items_max, &count, data_buf, data_cap,
					&reason);
	if (err == RC_ENVELOPE_OK) {
		RC_ASSERT(count >= 1 && count <= items_max);
		for (uint32_t i = 0; i < count; i++) {
			RC_ASSERT(items[i].op == RC_ENVELOPE_OP_PUB);
			check_parsed(&items[i], data_cap);
		}
	} else {
		RC_ASSERT(count < items_max);
		check_refusal(err, reason);
	}
	escape_round_trip(in, len);
	return 0;
}
