/*
 * libFuzzer target for rc_pmd_negotiate(), the Sec-WebSocket-Extensions offer parser. The
 * first byte picks the configuration (bits 0-1: disabled when both are 0) and how many header
 * values the rest may become (bits 2-4: 1..8); the rest is cut at '\n' into those values, each
 * an exact-size heap copy so ASan sees any read past a value. Checks: a disabled config
 * declines; an answer is one of the lines ringcast writes (with server_max_window_bits=8..15
 * or without it), matching the parameters returned, all in range; the answer offered back is
 * accepted as itself; and, when no quotes are involved, the values joined by commas into one
 * header get the same answer. Also linked without libFuzzer into the corpus replay.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "Sec-WebSocket-Extensions: "
#define ANSWER                                                                                     \
	PREFIX "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

struct result {
	bool ok;
	struct rc_pmd_params p;
	char line[RC_PMD_RESPONSE_LIMIT];
};

/* Negotiates over heap copies of the values, into a response buffer of the minimum size. */
static void negotiate(const struct rc_http_multi *m, const struct rc_pmd_config *cfg,
		      struct result *out)
{
	struct rc_http_multi copy = { .count = m->count };
	char *line = malloc(RC_PMD_RESPONSE_LIMIT);
	char *v[RC_HTTP_REPEAT_LIMIT];

	RC_ASSERT(line != NULL);
	for (uint8_t i = 0; i < m->count; i++) {
		v[i] = malloc(m->v[i].len ? m->v[i].len : 1);
		RC_ASSERT(v[i] != NULL);
		memcpy(v[i], m->v[i].p, m->v[i].len);
		copy.v[i] = (struct rc_slice){ .p = v[i], .len = m->v[i].len };
	}
	memset(out, 0, sizeof(*out));
	out->ok = rc_pmd_negotiate(&copy, cfg, &out->p, line, RC_PMD_RESPONSE_LIMIT);
	memcpy(out->line, line, RC_PMD_RESPONSE_LIMIT);
	for (uint8_t i = 0; i < m->count; i++)
		free(v[i]);
	free(line);
}

static void check_answer(const struct result *r)
{
	size_t len = strlen(r->line);
	char windowed[RC_PMD_RESPONSE_LIMIT];

	if (!r->ok) {
		RC_ASSERT(len == 0);
		return;
	}
	RC_ASSERT(len < RC_PMD_RESPONSE_LIMIT);
	RC_ASSERT(r->p.server_max_window_bits >= RC_PMD_WINDOW_BITS_MIN);
	RC_ASSERT(r->p.server_max_window_bits <= RC_PMD_WINDOW_BITS_MAX);
	snprintf(windowed, sizeof(windowed), ANSWER "; server_max_window_bits=%u\r\n",
		 (unsigned)r->p.server_max_window_bits);
	/* Without the parameter in the answer the client's window is the full 15 bits. */
	if (strcmp(r->line, windowed) != 0) {
		RC_ASSERT(strcmp(r->line, ANSWER "\r\n") == 0);
		RC_ASSERT(r->p.server_max_window_bits == RC_PMD_WINDOW_BITS_MAX);
	}
	RC_ASSERT(r->p.client_max_window_bits >= RC_PMD_WINDOW_BITS_MIN);
	RC_ASSERT(r->p.client_max_window_bits <= RC_PMD_WINDOW_BITS_MAX);
}

/* A client repeating our answer as its offer gets the same answer (at index 0). */
static void check_offered_back(const struct result *r, const struct rc_pmd_config *cfg)
{
	struct rc_http_multi m = { .count = 1 };
	struct result again;
	size_t len = strlen(r->line) - strlen(PREFIX) - 2;

	m.v[0] = (struct rc_slice){ .p = r->line + strlen(PREFIX), .len = (uint32_t)len };
	negotiate(&m, cfg, &again);
	RC_ASSERT(again.ok && again.p.offer_index == 0);
	RC_ASSERT(strcmp(again.line, r->line) == 0);
}

/* Without quoted strings every offer ends at a comma or a value's end, so joining the values
 * with commas changes nothing. */
static void check_joined(const struct rc_http_multi *m, const struct rc_pmd_config *cfg,
			 const struct result *r)
{
	struct rc_http_multi one = { .count = 1 };
	struct result j;
	size_t len = 0;
	char *buf;

	for (uint8_t i = 0; i < m->count; i++) {
		if (memchr(m->v[i].p, '"', m->v[i].len))
			return;
		len += m->v[i].len + 1;
	}
	buf = malloc(len + 1);
	RC_ASSERT(buf != NULL);
	len = 0;
	for (uint8_t i = 0; i < m->count; i++) {
		memcpy(buf + len, m->v[i].p, m->v[i].len);
		len += m->v[i].len;
		if (i + 1 < m->count)
			buf[len++] = ',';
	}
	one.v[0] = (struct rc_slice){ .p = buf, .len = (uint32_t)len };
	negotiate(&one, cfg, &j);
	RC_ASSERT(j.ok == r->ok);
	RC_ASSERT(strcmp(j.line, r->line) == 0);
	if (r->ok) {
		RC_ASSERT(j.p.offer_index == r->p.offer_index);
		RC_ASSERT(j.p.client_max_window_bits == r->p.client_max_window_bits);
		RC_ASSERT(j.p.server_max_window_bits == r->p.server_max_window_bits);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_pmd_config cfg = { .level = RC_DEFAULT_DEFLATE_LEVEL };
	struct rc_http_multi m = { .count = 0 };
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	struct result r, r2;
	unsigned max_values;

	if (size < 1 || size - 1 > UINT32_MAX)
		return 0;
	cfg.enabled = (data[0] & 3) != 0;
	max_values = 1 + ((data[0] >> 2) & 7);
	while (p < end && m.count < max_values) {
		bool last = m.count + 1u == max_values;
		const char *nl = last ? NULL : memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl ? nl : end;

		m.v[m.count++] = (struct rc_slice){ .p = p, .len = (uint32_t)(stop - p) };
		p = nl ? nl + 1 : end;
	}
	negotiate(&m, &cfg, &r);
	check_answer(&r);
	if (!cfg.enabled)
		RC_ASSERT(!r.ok);
	negotiate(&m, &cfg, &r2);
	RC_ASSERT(r2.ok == r.ok && strcmp(r2.line, r.line) == 0);
	if (r.ok)
		check_offered_back(&r, &cfg);
	check_joined(&m, &cfg, &r);
	return 0;
}
