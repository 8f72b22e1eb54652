/*
 * libFuzzer target for src/ws_assembler.c, the code a shard runs on received bytes. The input
 * after the first byte is a client's byte stream; the first byte picks the connection limits
 * and how the stream is cut into receives (like uWS fuzzing/helpers.h). The stream is fed
 * once whole and once in chunks, each receive an exact-size heap copy so ASan sees any access
 * past it, and both runs must report the same sequence of events (digested). The allocation
 * hooks track every byte handed out: rc_ws_asm_bytes() must equal it after each receive and
 * drop to 0 on reset. A third, chunked run fails one allocation and must end with 1011 and no
 * leak. Granted tail room is borrowed (written and restored) as inflation would. Also linked
 * without libFuzzer into the corpus replay.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "pmd.h"
#include "ws_assembler.h"
#include "ws_fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One run: the caller's state and what it saw. */
struct caller {
	struct rc_ws_asm a;
	struct rc_ws_asm_env env;
	enum rc_ws_asm_next mode; /* a server's view: CONTROL after a close, STOP after failing */
	size_t live;		  /* bytes the alloc hook handed out and release did not take */
	uint32_t allocs;
	uint32_t fail_at; /* the alloc call (1-based) that fails; 0: none */
	uint32_t events;
	uint32_t frames; /* whole frames, as rc_ws_asm_feed counts them */
	uint64_t digest; /* over every event, in order */
	uint16_t fail_code;
};

static void mix(struct caller *c, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		c->digest = (c->digest ^ b[i]) * 0x100000001b3ull;
}

static void *f_alloc(void *old, size_t old_size, size_t new_size, void *ctx)
{
	struct caller *c = ctx;
	void *p;

	RC_ASSERT(new_size > old_size);
	RC_ASSERT((old == NULL) == (old_size == 0));
	if (++c->allocs == c->fail_at)
		return NULL;
	p = realloc(old, new_size);
	RC_ASSERT(p != NULL);
	c->live += new_size - old_size;
	return p;
}

static void f_release(void *p, size_t size, void *ctx)
{
	struct caller *c = ctx;

	RC_ASSERT(p != NULL && size <= c->live);
	c->live -= size;
	free(p);
}

static enum rc_ws_asm_next f_message(struct rc_ws_asm_message *m, void *ctx)
{
	struct caller *c = ctx;
	uint8_t hdr[3] = {'M', m->opcode, m->compressed};
	uint8_t saved[RC_PMD_TAIL_ROOM];

	RC_ASSERT(c->mode == RC_WS_ASM_DATA);
	RC_ASSERT(m->opcode == 1 || m->opcode == 2);
	RC_ASSERT(m->len <= c->env.lim->message_bytes_max);
	if (m->tail_room) {
		memcpy(saved, m->payload + m->len, sizeof(saved));
		memset(m->payload + m->len, 0x5a, sizeof(saved));
		memcpy(m->payload + m->len, saved, sizeof(saved));
	}
	c->events++;
	mix(c, hdr, sizeof(hdr));
	mix(c, &m->len, sizeof(m->len));
	mix(c, m->payload, m->len);
	return c->mode;
}

static enum rc_ws_asm_next f_control(const struct rc_ws_asm_control *f, void *ctx)
{
	struct caller *c = ctx;
	uint8_t hdr[1] = {f->opcode};

	RC_ASSERT(c->mode != RC_WS_ASM_STOP);
	RC_ASSERT(f->len <= 125);
	if (f->opcode == RC_WS_OP_CLOSE) {
		RC_ASSERT(f->close_code == 1005 || rc_ws_close_code_valid(f->close_code));
		c->mode = RC_WS_ASM_CONTROL;
	} else {
		RC_ASSERT(f->close_code == 0);
	}
	c->events++;
	mix(c, hdr, sizeof(hdr));
	mix(c, &f->close_code, sizeof(f->close_code));
	mix(c, f->payload, f->len);
	return c->mode;
}

static void f_fail(uint16_t code, const char *reason, void *ctx)
{
	struct caller *c = ctx;

	RC_ASSERT(code == 1002 || code == 1007 || code == 1009 || code == 1011);
	RC_ASSERT(reason != NULL && reason[0] != '\0');
	RC_ASSERT(rc_ws_asm_bytes(&c->a) == 0);
	c->fail_code = code;
	c->mode = RC_WS_ASM_STOP;
	c->events++;
	mix(c, &code, sizeof(code));
	mix(c, reason, strlen(reason));
}

static const struct rc_ws_asm_ops ops = {
	.alloc = f_alloc,
	.release = f_release,
	.on_message = f_message,
	.on_control = f_control,
	.on_fail = f_fail,
};

/* Feeds p[0..n) in chunks of 1..max bytes from a generator seeded by seed; max 0: whole. */
static void serve(struct caller *c, const uint8_t *p, size_t n, size_t max, uint32_t seed)
{
	while (n > 0 && c->mode != RC_WS_ASM_STOP) {
		size_t len = ws_fuzz_chunk_len(&seed, n, max);
		uint8_t *chunk = malloc(len);

		RC_ASSERT(chunk != NULL);
		memcpy(chunk, p, len);
		c->frames += rc_ws_asm_feed(&c->a, chunk, len, len, c->mode, &c->env);
		free(chunk);
		RC_ASSERT(rc_ws_asm_bytes(&c->a) == c->live);
		p += len;
		n -= len;
	}
}

static void caller_init(struct caller *c, const struct rc_ws_limits *lim)
{
	memset(c, 0, sizeof(*c));
	rc_ws_asm_init(&c->a);
	c->env = (struct rc_ws_asm_env){lim, &ops, c};
	c->digest = 0xcbf29ce484222325ull;
}

static void caller_end(struct caller *c)
{
	rc_ws_asm_reset(&c->a, &c->env);
	RC_ASSERT(rc_ws_asm_bytes(&c->a) == 0);
	RC_ASSERT(c->live == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct caller whole, chunked, starved;
	struct rc_ws_limits lim;
	size_t cmax;

	if (size < 1)
		return 0;
	lim = ws_fuzz_limits(data[0]);
	cmax = ws_fuzz_chunk_max(data[0]);
	caller_init(&whole, &lim);
	caller_init(&chunked, &lim);
	serve(&whole, data + 1, size - 1, 0, 0);
	serve(&chunked, data + 1, size - 1, cmax, data[0]);
	RC_ASSERT(whole.events == chunked.events);
	/* A whole receive completes the frame that fails; a chunked one may fail it early. */
	if (!whole.fail_code)
		RC_ASSERT(whole.frames == chunked.frames);
	RC_ASSERT(whole.digest == chunked.digest);
	RC_ASSERT(whole.fail_code == chunked.fail_code);
	RC_ASSERT(whole.mode == chunked.mode);
	caller_end(&whole);
	caller_end(&chunked);

	if (chunked.allocs == 0)
		return 0;
	caller_init(&starved, &lim);
	starved.fail_at = 1 + (uint32_t)(size % chunked.allocs);
	serve(&starved, data + 1, size - 1, cmax, data[0]);
	if (starved.allocs >= starved.fail_at)
		RC_ASSERT(starved.fail_code == RC_WS_CLOSE_INTERNAL && starved.live == 0);
	caller_end(&starved);
	return 0;
}
