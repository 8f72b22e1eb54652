/*
 * TLS on the ring: one record per TLS connection in a side table by slot, created when its
 * first bytes arrive and freed when the connection ends. The engine (src/tls.c) reads the
 * ciphertext straight from the receive buffer and decrypts into one plaintext buffer per
 * shard, which the plain input hook then parses as it would a receive buffer. Sending, the
 * queued frames (a broadcast frame is still built once) are encrypted into a buffer handed to
 * one send and freed when the kernel took all of it: an idle connection holds no record
 * buffer. Memory is charged to the budget's tls category: an estimate of BoringSSL's state
 * (more during the handshake), and our buffers exactly. Shard thread only, except
 * rc_tls_shard_init/free (main thread).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn_rt.h"
#include "frame.h"
#include "mem.h"
#include "sendq.h"
#include "tls_ctx.h"
#include "tls_rt.h"

RC_STATIC_ASSERT(RC_TLS_FAILURE_COUNT <= RC_TLS_FAILURE_SLOTS, "stats hold every failure");

/* What BoringSSL holds for a connection, charged as an estimate (its allocations are not
 * hooked): during the handshake (record buffers, handshake state, certificate settings) and
 * once established (the SSL object, its session and two AEAD keys; measured, README). */
#define TLS_HANDSHAKE_BYTES (24u * 1024u)
#define TLS_ESTABLISHED_BYTES 3072u
/* Plaintext encrypted for one send, at most: bounds the buffer a slow reader makes us hold
 * beyond its queue (frames past it wait in the queue, counted there). */
#define TLS_SEND_BATCH_BYTES (64u * 1024u)
/* Ciphertext put off to a later turn, at most (a ClientHello is far smaller). */
#define TLS_DEFER_BYTES_LIMIT (64u * 1024u)
/* Room past a record's plaintext: input.c borrows tail room after a message (inflation). */
#define TLS_PLAIN_TAIL_BYTES 64u

struct rc_tls_rec {
	struct rc_tls_conn t;
	uint8_t *wire;	     /* ciphertext a send reads: not touched until it completes */
	uint32_t wire_len;
	uint32_t wire_off;   /* bytes of wire sent */
	uint32_t wire_cap;
	uint32_t charged;    /* bytes charged to the tls category besides wire and defer */
	uint8_t *defer;	     /* ciphertext waiting for the next turn's handshake budget */
	uint32_t defer_len;
	uint32_t defer_cap;
	uint32_t slot;
	bool listed;	     /* on the shard's deferred list */
	struct rc_tls_rec *defer_next;
	struct rc_tls_rec *defer_prev;
};

struct rc_tls_shard {
	struct rc_tls_rec **recs; /* conns_cap entries; NULL: plain, or no byte arrived yet */
	uint8_t *plain;		  /* one record's plaintext plus tail room (input) */
	uint8_t *stage;		  /* small queued frames gathered into one record (output) */
	struct rc_tls_rec *defer_head; /* handshakes put off, oldest first */
	struct rc_tls_rec *defer_tail;
	uint32_t steps;		  /* handshake steps run this turn */
};

int rc_tls_shard_init(struct rc_shard *s)
{
	struct rc_tls_shard *sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	s->tls = sh;
	sh->recs = calloc(s->conns_cap, sizeof(*sh->recs));
	sh->plain = malloc(RC_TLS_RECORD_PLAIN_LIMIT + TLS_PLAIN_TAIL_BYTES);
	sh->stage = malloc(RC_TLS_RECORD_PLAIN_LIMIT);
	return sh->recs && sh->plain && sh->stage ? 0 : -ENOMEM;
}

void rc_tls_shard_free(struct rc_shard *s)
{
	struct rc_tls_shard *sh = s->tls;
	if (!sh)
		return;
	for (uint32_t i = 0; sh->recs && i < s->conns_cap; i++)
		RC_ASSERT(sh->recs[i] == NULL);
	free(sh->recs);
	free(sh->plain);
	free(sh->stage);
	free(sh);
	s->tls = NULL;
}

static uint32_t slot_of(const struct rc_conn *c)
{
	return (uint32_t)(c - c->shard->conns);
}

static struct rc_tls_rec *rec_of(const struct rc_conn *c)
{
	const struct rc_tls_shard *sh = c->shard->tls;
	return sh && c->tls ? sh->recs[slot_of(c)] : NULL;
}

static struct rc_tls_rec *rec_new(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	struct rc_tls_rec *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	SSL_CTX *ctx = rc_tls_app_ctx(s->app);
	int rc = rc_tls_conn_init(&r->t, ctx);
	SSL_CTX_free(ctx); /* the connection holds its own reference */
	if (rc) {
		free(r);
		return NULL;
	}
	r->slot = slot_of(c);
	r->charged = TLS_HANDSHAKE_BYTES + (uint32_t)sizeof(*r);
	rc_mem_charge(s->app, RC_BUDGET_tls, r->charged);
	s->tls->recs[r->slot] = r;
	s->stats.tls_open++;
	return r;
}

static void unlist(struct rc_tls_shard *sh, struct rc_tls_rec *r)
{
	if (!r->listed)
		return;
	*(r->defer_prev ? &r->defer_prev->defer_next : &sh->defer_head) = r->defer_next;
	*(r->defer_next ? &r->defer_next->defer_prev : &sh->defer_tail) = r->defer_prev;
	r->defer_next = r->defer_prev = NULL;
	r->listed = false;
}

static void defer_free(struct rc_shard *s, struct rc_tls_rec *r)
{
	rc_mem_release(s->app, RC_BUDGET_tls, r->defer_cap);
	free(r->defer);
	r->defer = NULL;
	r->defer_len = r->defer_cap = 0;
}

static void wire_free(struct rc_shard *s, struct rc_tls_rec *r)
{
	rc_mem_release(s->app, RC_BUDGET_tls, r->wire_cap);
	free(r->wire);
	r->wire = NULL;
	r->wire_len = r->wire_off = r->wire_cap = 0;
}

void rc_tls_release(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	struct rc_tls_rec *r = rec_of(c);
	RC_ASSERT(c->state == RC_CONN_DOOMED);
	if (!r)
		return;
	RC_ASSERT(!(c->flags & RC_CF_SEND));
	if (!r->t.established && !r->t.failed)
		s->stats.tls_failures[RC_TLS_FAIL_incomplete]++;
	unlist(s->tls, r);
	defer_free(s, r);
	wire_free(s, r);
	rc_mem_release(s->app, RC_BUDGET_tls, r->charged);
	rc_tls_conn_free(&r->t);
	s->tls->recs[r->slot] = NULL;
	free(r);
	s->stats.tls_open--;
}

/* A fatal TLS error on c, counted once: the alert BoringSSL wrote goes out, then c ends. */
static void failed(struct rc_conn *c, struct rc_tls_rec *r)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(r->t.failed);
	s->stats.tls_failures[r->t.failure]++;
	c->close_reason = (uint8_t)RC_CLOSE_tls_error;
	c->flags |= RC_CF_FLUSH_CLOSE | RC_CF_DISCARD;
	rc_conn_mark_dirty(c);
}

static void established(struct rc_conn *c, struct rc_tls_rec *r)
{
	struct rc_shard *s = c->shard;
	RC_ASSERT(r->charged >= TLS_HANDSHAKE_BYTES);
	s->stats.tls_handshakes++;
	if (rc_tls_conn_resumed(&r->t))
		s->stats.tls_resumed++;
	rc_mem_release(s->app, RC_BUDGET_tls, TLS_HANDSHAKE_BYTES - TLS_ESTABLISHED_BYTES);
	r->charged -= TLS_HANDSHAKE_BYTES - TLS_ESTABLISHED_BYTES;
	/* An answer queued before the handshake ended (a 503) may go out now. */
	rc_conn_mark_dirty(c);
}

/* Feeds p[0..n) to c's engine and hands the plaintext up. r may be freed when it returns. */
static void run(struct rc_conn *c, struct rc_tls_rec *r, const uint8_t *p, size_t n)
{
	struct rc_shard *s = c->shard;
	uint8_t *plain = s->tls->plain;
	bool was_established = r->t.established;
	if (!was_established)
		s->tls->steps++;
	rc_tls_conn_feed(&r->t, p, n);
	for (;;) {
		int got = rc_tls_conn_read(&r->t, plain, RC_TLS_RECORD_PLAIN_LIMIT);
		if (!was_established && r->t.established) {
			was_established = true;
			established(c, r);
		}
		if (got == RC_TLS_FAILED) {
			failed(c, r);
		} else if (got == RC_TLS_CLOSED) {
			/* close_notify: the end of the stream, as an EOF would be. */
			rc_conn_terminate(c, c->state == RC_CONN_CLOSING
						     ? (enum rc_close_reason)c->close_reason
						     : RC_CLOSE_peer_gone);
			return;
		} else if (got > 0) {
			s->rx_end = plain + RC_TLS_RECORD_PLAIN_LIMIT + TLS_PLAIN_TAIL_BYTES;
			s->app->conn_hooks->input(c, plain, (size_t)got);
			s->rx_end = NULL;
			if (c->state == RC_CONN_DOOMED)
				return; /* r may be gone */
			continue;
		}
		break;
	}
	if (r->t.out_len)
		rc_conn_mark_dirty(c);
}

/* Keeps p[0..n) for a later turn: this turn's handshake budget is spent. */
static void defer(struct rc_conn *c, struct rc_tls_rec *r, const uint8_t *p, size_t n)
{
	struct rc_shard *s = c->shard;
	struct rc_tls_shard *sh = s->tls;
	size_t need = (size_t)r->defer_len + n;
	if (need > TLS_DEFER_BYTES_LIMIT || need > r->defer_cap) {
		uint8_t *d = need <= TLS_DEFER_BYTES_LIMIT ? realloc(r->defer, need) : NULL;
		if (!d) {
			r->t.failed = true;
			r->t.failure = need > TLS_DEFER_BYTES_LIMIT ? RC_TLS_FAIL_oversized
								    : RC_TLS_FAIL_memory;
			failed(c, r);
			return;
		}
		rc_mem_charge(s->app, RC_BUDGET_tls, need - r->defer_cap);
		r->defer = d;
		r->defer_cap = (uint32_t)need;
	}
	memcpy(r->defer + r->defer_len, p, n);
	r->defer_len = (uint32_t)need;
	s->stats.tls_deferred++;
	if (r->listed)
		return;
	r->listed = true;
	r->defer_prev = sh->defer_tail;
	*(sh->defer_tail ? &sh->defer_tail->defer_next : &sh->defer_head) = r;
	sh->defer_tail = r;
}

void rc_tls_input(struct rc_conn *c, uint8_t *p, size_t n)
{
	struct rc_shard *s = c->shard;
	struct rc_tls_rec *r = rec_of(c);
	RC_ASSERT(c->tls);
	if (!r && !(r = rec_new(c))) {
		s->stats.tls_failures[RC_TLS_FAIL_memory]++;
		s->stats.alloc_failures++;
		rc_conn_terminate(c, RC_CLOSE_tls_error);
		return;
	}
	if (r->t.failed)
		return; /* its alert is on the way; what follows is dropped */
	if (!r->t.established &&
	    (r->listed || s->tls->steps >= s->app->cfg.tls_handshakes_per_turn_max)) {
		defer(c, r, p, n);
		return;
	}
	run(c, r, p, n);
}

void rc_tls_turn(struct rc_shard *s)
{
	struct rc_tls_shard *sh = s->tls;
	if (!sh)
		return;
	sh->steps = 0;
	while (sh->defer_head && sh->steps < s->app->cfg.tls_handshakes_per_turn_max) {
		struct rc_tls_rec *r = sh->defer_head;
		struct rc_conn *c = &s->conns[r->slot];
		uint8_t *buf = r->defer;
		uint32_t len = r->defer_len;
		unlist(sh, r);
		rc_mem_release(s->app, RC_BUDGET_tls, r->defer_cap);
		r->defer = NULL;
		r->defer_len = r->defer_cap = 0;
		if (c->state != RC_CONN_DOOMED && !r->t.failed)
			run(c, r, buf, len);
		free(buf);
	}
}

bool rc_tls_waiting(const struct rc_shard *s)
{
	return s->tls && s->tls->defer_head != NULL;
}

bool rc_tls_close_notify(struct rc_conn *c)
{
	struct rc_tls_rec *r = rec_of(c);
	RC_ASSERT(!(c->flags & RC_CF_SEND));
	if (!r || r->wire || !rc_tls_conn_close_notify(&r->t))
		return false;
	return rc_tls_issue_send(c);
}

bool rc_tls_out_pending(const struct rc_conn *c)
{
	const struct rc_tls_rec *r = rec_of(c);
	return r && (r->wire || r->t.out_len);
}

/* The plaintext of c's next record: a full record straight from the head frame, or queued
 * frames (and parts) gathered into stage, which leave the queue. Sets *n (> 0). */
static const uint8_t *next_record(struct rc_conn *c, uint8_t *stage, uint32_t *n)
{
	const struct rc_frame *f = rc_sendq_at(&c->q, 0)->frame;
	if (f->len - c->q.ring->sent >= RC_TLS_RECORD_PLAIN_LIMIT) {
		*n = RC_TLS_RECORD_PLAIN_LIMIT;
		return f->data + c->q.ring->sent; /* consumed once encrypted */
	}
	uint32_t len = 0;
	while (c->q.count && len < RC_TLS_RECORD_PLAIN_LIMIT) {
		f = rc_sendq_at(&c->q, 0)->frame;
		uint32_t sent = c->q.ring->sent;
		uint32_t k = RC_MIN(f->len - sent, RC_TLS_RECORD_PLAIN_LIMIT - len);
		memcpy(stage + len, f->data + sent, k);
		len += k;
		rc_sendq_consume(c, k);
	}
	RC_ASSERT(len > 0);
	*n = len;
	return NULL;
}

/* Encrypts queued frames (a bounded batch) into the engine's output, frames leaving the
 * queue as they are encrypted. Small frames share records: a subscriber's burst of
 * broadcasts costs one record per 16 KiB, not one per message. */
static void encrypt(struct rc_conn *c, struct rc_tls_rec *r)
{
	uint8_t *stage = c->shard->tls->stage;
	while (c->q.count && r->t.out_len < TLS_SEND_BATCH_BYTES) {
		uint32_t n;
		const uint8_t *direct = next_record(c, stage, &n);
		if (rc_tls_conn_write(&r->t, direct ? direct : stage, n) != 0) {
			failed(c, r);
			return;
		}
		if (direct)
			rc_sendq_consume(c, n);
	}
}

bool rc_tls_issue_send(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	struct rc_tls_rec *r = rec_of(c);
	RC_ASSERT(!(c->flags & RC_CF_SEND));
	if (!r)
		return c->q.count != 0; /* an answer waits for the client's first bytes */
	if (!r->wire) {
		if (r->t.established && !r->t.failed)
			encrypt(c, r);
		r->wire = rc_tls_conn_take_out(&r->t, &r->wire_len, &r->wire_cap);
		if (r->wire)
			rc_mem_charge(s->app, RC_BUDGET_tls, r->wire_cap);
	}
	if (!r->wire)
		return !r->t.failed && c->q.count != 0;
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_send(sqe, (int)r->slot, r->wire + r->wire_off, r->wire_len - r->wire_off,
			   MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SEND, c->gen, r->slot));
	c->flags |= RC_CF_SEND;
	c->inflight++;
	s->stats.sends++;
	return true;
}

void rc_tls_sent(struct rc_conn *c, uint32_t res)
{
	struct rc_tls_rec *r = rec_of(c);
	RC_ASSERT(r != NULL && r->wire != NULL);
	RC_ASSERT(res <= r->wire_len - r->wire_off);
	r->wire_off += res;
	if (r->wire_off == r->wire_len)
		wire_free(c->shard, r);
}
