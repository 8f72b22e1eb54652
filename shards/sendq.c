/*
 * Per-connection send queues. A connection has at most one send in flight, which keeps its
 * bytes in order; whatever queues up meanwhile is gathered into one sendmsg when the
 * previous send completes. Sends are not issued as they are queued but once per loop turn
 * (rc_shard_flush), so all of a turn's sends leave in one io_uring_submit. A failed send or
 * a flushed close ends the connection in conn.c, the layer below; requests that waited for
 * an HTTP answer are resumed through the connection hooks. Shard thread only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn_rt.h"
#include "frame.h"
#include "mem.h"
#include "sendq.h"
#include "tls_rt.h"

/* A ring's bytes: its header and cap entries. */
static inline size_t qring_bytes(uint32_t cap)
{
	return sizeof(struct rc_qring) + (size_t)cap * sizeof(struct rc_qent);
}

/* The pool class of a ring of cap entries, or -1 if rings that big are not pooled. */
static inline int qring_class(uint32_t cap)
{
	int k = __builtin_ctz(cap) - __builtin_ctz(RC_QRING_MIN);
	return k >= 0 && k < RC_QRING_CLASSES ? k : -1;
}

/* A ring of cap entries, from the pool or the allocator, charged while it is in use
 * (send_queue); the pool is the shard's cache. NULL without memory. Inlined: a queue that
 * empties at every send (one frame per round) takes and returns one per delivery. */
static inline struct rc_qring *qring_get(struct rc_shard *s, uint32_t cap)
{
	int k = qring_class(cap);
	struct rc_qring *r = k >= 0 ? s->qring_free[k] : NULL;
	if (r) {
		s->qring_free[k] = r->next_free;
		s->qring_free_count--;
		s->qring_free_bytes -= qring_bytes(cap);
	} else {
		r = malloc(qring_bytes(cap));
		if (!r)
			return NULL;
		r->cap = cap;
	}
	RC_DASSERT(r->cap == cap);
	r->op = NULL;
	r->sent = 0;
	rc_mem_charge(s->app, RC_BUDGET_send_queue, qring_bytes(cap));
	return r;
}

/* Pools r for reuse, or frees it past the pool's bound: RC_QRING_POOL_BYTES, or
 * RC_QRING_POOL_PER_CONN per live connection if more. */
static inline void qring_put(struct rc_shard *s, struct rc_qring *r)
{
	size_t n = qring_bytes(r->cap);
	int k = qring_class(r->cap);
	rc_mem_release(s->app, RC_BUDGET_send_queue, n);
	uint64_t keep = s->qring_free_bytes + n;
	if (k < 0 || (keep > RC_QRING_POOL_BYTES &&
		      keep > (uint64_t)s->conns_live * RC_QRING_POOL_PER_CONN)) {
		free(r);
		return;
	}
	r->next_free = s->qring_free[k];
	s->qring_free[k] = r;
	s->qring_free_count++;
	s->qring_free_bytes = keep;
}

/* c's queue is empty: its ring goes back unless a send still owns its head (op). */
static inline void qring_settle(struct rc_conn *c)
{
	struct rc_sendq *q = &c->q;
	if (q->count || !q->ring || q->ring->op)
		return;
	qring_put(c->shard, q->ring);
	q->ring = NULL;
	q->head = 0;
}

/* Replaces c's full ring by one twice its size, entries in order from index 0. */
static bool __attribute__((noinline)) qring_grow(struct rc_conn *c)
{
	struct rc_sendq *q = &c->q;
	struct rc_qring *r = q->ring, *g = qring_get(c->shard, r->cap * 2);
	if (!g)
		return false;
	uint32_t first = RC_MIN(q->count, r->cap - q->head);
	memcpy(g->e, r->e + q->head, first * sizeof(g->e[0]));
	memcpy(g->e + first, r->e, (q->count - first) * sizeof(g->e[0]));
	g->op = r->op;
	g->sent = r->sent;
	r->op = NULL;
	qring_put(c->shard, r);
	q->ring = g;
	q->head = 0;
	return true;
}

/* Makes room for one more entry in c's queue: a ring for an empty queue, a bigger one for a
 * full one. False without memory. */
static inline bool qring_room(struct rc_conn *c)
{
	struct rc_sendq *q = &c->q;
	if (q->ring)
		return q->count < q->ring->cap || qring_grow(c);
	q->ring = qring_get(c->shard, RC_QRING_MIN);
	q->head = 0;
	return q->ring != NULL;
}

/* Drops the head frame of c's non-empty queue (its bytes are off the books already). */
static void pop_head(struct rc_conn *c)
{
	struct rc_sendq *q = &c->q;
	rc_frame_unref(q->ring->e[q->head].frame);
	q->head = (q->head + 1) & (q->ring->cap - 1);
	q->count--;
	q->ring->sent = 0;
}

/* Puts c at the tail of its shard's dirty list (once). */
static inline void mark_dirty(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	if (c->flags & RC_CF_DIRTY)
		return;
	RC_DASSERT(s->dirty_count < s->conns_cap);
	c->flags |= RC_CF_DIRTY;
	uint32_t at = s->dirty_head + s->dirty_count++;
	s->dirty[at < s->conns_cap ? at : at - s->conns_cap] = (uint32_t)(c - s->conns);
}

void rc_conn_mark_dirty(struct rc_conn *c)
{
	mark_dirty(c);
}

bool rc_sendq_slow(const struct rc_conn *c, size_t add)
{
	const struct rc_config *cfg = &c->shard->app->cfg;
	if (!c->q.count)
		return false;
	if (c->q.bytes + add > cfg->send_queue_bytes_max)
		return true;
	if (!cfg->send_queue_age_max_ms)
		return false;
	uint32_t ticks = rc_clock_tick(&c->shard->clock) - rc_sendq_at(&c->q, 0)->queued_tick;
	return (uint64_t)ticks * cfg->timer_tick_ms > cfg->send_queue_age_max_ms;
}

/* Whether c's queue may take add more bytes: refused (false) for a slow consumer when
 * checked. The ring and the frame are charged to the budget where they are allocated
 * (qring_get, frame.c); the budget's own bound is kept by shedding at its hard mark. */
static bool admit(const struct rc_conn *c, size_t add, bool checked)
{
	/* An empty queue takes anything (rc_sendq_slow's first test, without the call). */
	return !checked || !c->q.count || !rc_sendq_slow(c, add);
}

/* Queues f at c's tail (checked: refused for a slow consumer). Takes f's reference. */
static int enqueue(struct rc_conn *c, struct rc_frame *f, bool checked)
{
	if (c->state == RC_CONN_DOOMED) {
		/* A terminated connection's queue is being released: nothing may join it. */
		rc_frame_unref(f);
		return -EPIPE;
	}
	if (!admit(c, f->len, checked)) {
		rc_frame_unref(f);
		return -ENOBUFS;
	}
	if (!qring_room(c)) {
		rc_frame_unref(f);
		return -ENOMEM;
	}
	struct rc_qent *e = &c->q.ring->e[(c->q.head + c->q.count) & (c->q.ring->cap - 1)];
	e->frame = f;
	e->queued_tick = rc_clock_tick(&c->shard->clock);
	c->q.count++;
	c->q.bytes += f->len;
	/* A waiting pong keeps its place before f (replies stay in order); the next ping's
	 * pong joins the tail. Pongs beyond one are each followed by another frame, all of them
	 * counted against the queue's limit. */
	c->flags &= (uint16_t)~RC_CF_PONG;
	mark_dirty(c);
	return 0;
}

int rc_conn_enqueue(struct rc_conn *c, struct rc_frame *f)
{
	return enqueue(c, f, true);
}

int rc_sendq_push(struct rc_conn *c, struct rc_frame *f, bool checked)
{
	return enqueue(c, f, checked);
}

/*
 * Puts f in place of the waiting pong at c's tail (a newer pong, or a close frame that makes
 * it moot). Takes f's reference. 0, or -ENOBUFS for a slow consumer (checked).
 */
static int pong_replace(struct rc_conn *c, struct rc_frame *f, bool checked)
{
	struct rc_qent *t = rc_sendq_at(&c->q, c->q.count - 1);
	struct rc_frame *old = t->frame;

	RC_ASSERT(c->flags & RC_CF_PONG);
	RC_ASSERT(c->q.count > 1 || c->q.ring->sent == 0);
	if (!admit(c, f->len > old->len ? f->len - old->len : 0, checked)) {
		rc_frame_unref(f);
		return -ENOBUFS;
	}
	c->q.bytes = c->q.bytes - old->len + f->len;
	t->frame = f;
	rc_frame_unref(old);
	c->shard->stats.pongs_replaced++;
	return 0;
}

struct rc_frame *rc_frame_build(uint8_t opcode, bool rsv1, const void *p, size_t len)
{
	uint8_t hdr[RC_WS_SERVER_HEADER_LIMIT];
	size_t hlen = rc_ws_frame_write_header(hdr, opcode, true, rsv1, len);
	struct rc_frame *f = rc_frame_alloc((uint32_t)(hlen + len));
	if (!f)
		return NULL;
	memcpy(f->data, hdr, hlen);
	if (len)
		memcpy(f->data + hlen, p, len);
	return f;
}

static int send_frame(struct rc_conn *c, uint8_t opcode, bool rsv1, const void *p, size_t len)
{
	struct rc_frame *f = rc_frame_build(opcode, rsv1, p, len);
	bool checked = opcode != RC_WS_OP_CLOSE;
	int rc;

	if (!f)
		return -ENOMEM;
	if ((c->flags & RC_CF_PONG) && (opcode == RC_WS_OP_PONG || opcode == RC_WS_OP_CLOSE) &&
	    c->state != RC_CONN_DOOMED) {
		rc = pong_replace(c, f, checked);
		if (opcode == RC_WS_OP_CLOSE)
			c->flags &= (uint16_t)~RC_CF_PONG;
	} else {
		rc = enqueue(c, f, checked);
		if (rc == 0 && opcode == RC_WS_OP_PONG)
			c->flags |= RC_CF_PONG;
	}
	if (rc == 0)
		c->shard->stats.frames_out++;
	return rc;
}

int rc_conn_send_frame(struct rc_conn *c, uint8_t opcode, const void *p, size_t len)
{
	return send_frame(c, opcode, false, p, len);
}

void *rc_grow(struct rc_shard *s, void **buf, size_t *cap, size_t n)
{
	if (n <= *cap)
		return *buf;
	/* Client input asks for the growth: past the budget it is refused. */
	if (!rc_mem_try_charge(s->app, RC_BUDGET_inflate, n - *cap))
		return NULL;
	void *p = realloc(*buf, n);
	if (!p) {
		rc_mem_release(s->app, RC_BUDGET_inflate, n - *cap);
		return NULL;
	}
	*buf = p;
	*cap = n;
	return p;
}

void rc_grow_free(struct rc_shard *s, void **buf, size_t *cap)
{
	rc_mem_release(s->app, RC_BUDGET_inflate, *cap);
	free(*buf);
	*buf = NULL;
	*cap = 0;
}

uint8_t *rc_shard_zbuf(struct rc_shard *s, size_t n)
{
	return rc_grow(s, (void **)&s->zbuf, &s->zbuf_cap, n);
}

uint8_t *rc_shard_ibuf(struct rc_shard *s, size_t n)
{
	return rc_grow(s, (void **)&s->ibuf, &s->ibuf_cap, n);
}

int rc_conn_send_data(struct rc_conn *c, uint8_t opcode, const void *p, size_t len)
{
	struct rc_shard *s = c->shard;
	if (!(c->flags & RC_CF_DEFLATE) || len < 8 || !rc_pmd_should_compress(&s->app->pmd, len))
		return send_frame(c, opcode, false, p, len);
	if (!rc_pmd_fits_window(c->deflate_window_bits, len)) {
		s->stats.deflate_window_skips++;
		return send_frame(c, opcode, false, p, len);
	}
	/* A cap below len makes libdeflate give up on output that would not be smaller. */
	uint8_t *z = rc_shard_zbuf(s, len);
	/* An answer to a compressed message is compressed cheaply: a client must not buy our
	 * slowest level with its own cheap bytes. */
	struct libdeflate_compressor *d = s->in_deflated ? s->echo_deflater : s->deflater;
	size_t zlen = z ? rc_pmd_deflate(d, p, len, z, len - 1) : 0;
	if (zlen == 0)
		return send_frame(c, opcode, false, p, len);
	s->stats.deflate_in_bytes += len;
	s->stats.deflate_out_bytes += zlen;
	return send_frame(c, opcode, true, z, zlen);
}

int rc_conn_send_raw(struct rc_conn *c, const void *p, size_t len)
{
	struct rc_frame *f = rc_frame_alloc((uint32_t)len);
	if (!f)
		return -ENOMEM;
	memcpy(f->data, p, len);
	return rc_conn_enqueue(c, f);
}

/* Drops every frame of c's queue (no send may be reading them). */
static void release(struct rc_conn *c)
{
	while (c->q.count)
		pop_head(c);
	if (c->q.ring) {
		RC_ASSERT(c->q.ring->op == NULL);
		qring_put(c->shard, c->q.ring);
	}
	memset(&c->q, 0, sizeof(c->q));
	c->flags &= (uint16_t)~RC_CF_PONG;
}

void rc_sendq_conn_closed(struct rc_conn *c)
{
	RC_ASSERT(c->state == RC_CONN_DOOMED);
	if (!(c->flags & RC_CF_SEND)) {
		release(c);
		rc_tls_release(c);
	}
}

uint32_t rc_sendq_unsent(const struct rc_conn *c)
{
	/* Frames the kernel may be reading (the send in flight) or has half sent stay. A TLS
	 * connection's send reads its ciphertext, so its queue may be empty meanwhile. */
	const struct rc_sendq *q = &c->q;
	uint32_t keep = 0;
	if ((c->flags & RC_CF_SEND) && q->count)
		keep = q->ring->op ? (uint32_t)q->ring->op->mh.msg_iovlen : 1;
	else if (q->count && q->ring->sent)
		keep = 1;
	return RC_MIN(keep, q->count);
}

void rc_sendq_swap(struct rc_conn *c, uint32_t i, struct rc_frame *f)
{
	struct rc_qent *e = rc_sendq_at(&c->q, i);
	RC_ASSERT(i >= rc_sendq_unsent(c) && i < c->q.count);
	RC_ASSERT(c->q.bytes >= e->frame->len);
	c->q.bytes = c->q.bytes - e->frame->len + f->len;
	rc_frame_unref(e->frame);
	e->frame = f;
}

int rc_sendq_insert(struct rc_conn *c, uint32_t i, struct rc_frame *f)
{
	RC_ASSERT(i <= c->q.count && i >= rc_sendq_unsent(c));
	if (!qring_room(c)) {
		rc_frame_unref(f);
		return -ENOMEM;
	}
	struct rc_sendq *q = &c->q;
	uint32_t tick = i ? rc_sendq_at(q, i - 1)->queued_tick : rc_clock_tick(&c->shard->clock);
	for (uint32_t k = q->count; k > i; k--)
		*rc_sendq_at(q, k) = *rc_sendq_at(q, k - 1);
	*rc_sendq_at(q, i) = (struct rc_qent){.frame = f, .queued_tick = tick};
	if (i == q->count)
		c->flags &= (uint16_t)~RC_CF_PONG; /* a waiting pong is no longer last */
	q->count++;
	q->bytes += f->len;
	return 0;
}

void rc_sendq_drop_unsent(struct rc_conn *c)
{
	struct rc_sendq *q = &c->q;
	uint32_t keep = rc_sendq_unsent(c);
	while (q->count > keep) {
		struct rc_qent *e = rc_sendq_at(q, q->count - 1);
		q->bytes -= e->frame->len;
		rc_frame_unref(e->frame);
		q->count--;
	}
	/* A waiting pong was never handed over, so it went too. */
	c->flags &= (uint16_t)~RC_CF_PONG;
	RC_ASSERT(q->count || q->bytes == 0);
	qring_settle(c);
}

/* An operation for iovs iovecs: a small one when they fit, so a broadcast's gathered sends
 * of a few frames each take little memory; else one of RC_SEND_IOV_LIMIT. NULL if none. */
static struct rc_sendop *sendop_get(struct rc_shard *s, int iovs)
{
	bool small = iovs <= RC_SEND_IOV_SMALL;
	struct rc_sendop **pool = small ? &s->sendop_small_free : &s->sendop_free;
	uint32_t *count = small ? &s->sendop_small_free_count : &s->sendop_free_count;
	struct rc_sendop *op = *pool;
	if (op) {
		RC_DASSERT(*count > 0);
		*pool = op->next_free;
		(*count)--;
		return op;
	}
	uint32_t cap = small ? RC_SEND_IOV_SMALL : RC_SEND_IOV_LIMIT;
	op = malloc(sizeof(*op) + cap * sizeof(op->iov[0]));
	if (op)
		op->iov_cap = cap;
	return op;
}

static void sendop_put(struct rc_shard *s, struct rc_sendop *op)
{
	bool small = op->iov_cap == RC_SEND_IOV_SMALL;
	struct rc_sendop **pool = small ? &s->sendop_small_free : &s->sendop_free;
	uint32_t *count = small ? &s->sendop_small_free_count : &s->sendop_free_count;
	uint32_t limit = small ? RC_MAX(RC_SENDOP_POOL_LIMIT, s->conns_live) : RC_SENDOP_POOL_LIMIT;
	if (*count >= limit) {
		free(op);
		return;
	}
	op->next_free = *pool;
	*pool = op;
	(*count)++;
}

/*
 * Sends the head frame zero-copy from the registered arena. The kernel reads the frame until
 * the notification completion, so c->zc_wait keeps a reference to it until then.
 */
static bool issue_send_zc(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	struct rc_frame *f = rc_sendq_at(&c->q, 0)->frame;
	uint32_t sent = c->q.ring->sent, slot = (uint32_t)(c - s->conns);
	struct rc_zcwait *w = malloc(sizeof(*w));
	if (!w)
		return false;
	rc_mem_charge(s->app, RC_BUDGET_send_queue, sizeof(*w));
	rc_frame_ref_n(f, 1);
	w->frame = f;
	w->next = NULL;
	struct rc_zcwait **tail = &c->zc_wait;
	while (*tail)
		tail = &(*tail)->next;
	*tail = w;
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_send_zc_fixed(sqe, (int)slot, f->data + sent, f->len - sent, MSG_NOSIGNAL, 0,
				    0);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SEND_ZC, c->gen, slot));
	c->flags |= RC_CF_SEND;
	c->inflight += 2; /* the result and the notification */
	s->stats.sends_zc++;
	return true;
}

void rc_send_zc_notified(struct rc_conn *c)
{
	struct rc_zcwait *w = c->zc_wait;
	RC_ASSERT(w != NULL);
	c->zc_wait = w->next;
	rc_frame_unref(w->frame);
	rc_mem_release(c->shard->app, RC_BUDGET_send_queue, sizeof(*w));
	free(w);
	rc_conn_op_done(c);
}

/* Issues one send for c's queue: a plain send for one frame, a gathered sendmsg for more
 * (at most RC_SEND_IOV_LIMIT frames, read in one linear walk of the ring). */
static void issue_send(struct rc_conn *c)
{
	struct rc_shard *s = c->shard;
	struct rc_sendq *q = &c->q;
	struct rc_qring *r = q->ring;
	struct rc_frame *f = r->e[q->head].frame;
	uint32_t slot = (uint32_t)(c - s->conns);
	uint64_t zc_min = s->app->cfg.send_zc_threshold_bytes;

	RC_ASSERT(q->count > 0);
	RC_ASSERT(!(c->flags & RC_CF_SEND));
	RC_ASSERT(r->op == NULL);
	/* Large arena frames go zero-copy one at a time; small ones are cheaper to copy. */
	if (zc_min && f->arena_class && f->len - r->sent >= zc_min && issue_send_zc(c))
		return;
	struct io_uring_sqe *sqe;
	uint32_t iovs = RC_MIN(q->count, (uint32_t)RC_SEND_IOV_LIMIT);
	if (iovs == 1 || !(r->op = sendop_get(s, (int)iovs))) {
		sqe = rc_uring_sqe(s);
		io_uring_prep_send(sqe, (int)slot, f->data + r->sent, f->len - r->sent,
				   MSG_NOSIGNAL);
		iovs = 1;
	} else {
		struct rc_sendop *op = r->op;
		uint32_t mask = r->cap - 1;
		iovs = RC_MIN(iovs, op->iov_cap);
		for (uint32_t i = 0; i < iovs; i++) {
			struct rc_frame *g = r->e[(q->head + i) & mask].frame;
			op->iov[i].iov_base = g->data;
			op->iov[i].iov_len = g->len;
		}
		op->iov[0].iov_base = f->data + r->sent;
		op->iov[0].iov_len = f->len - r->sent;
		memset(&op->mh, 0, sizeof(op->mh));
		op->mh.msg_iov = op->iov;
		op->mh.msg_iovlen = (size_t)iovs;
		sqe = rc_uring_sqe(s);
		io_uring_prep_sendmsg(sqe, (int)slot, &op->mh, MSG_NOSIGNAL);
	}
	if (iovs == q->count)
		c->flags &= (uint16_t)~RC_CF_PONG; /* the kernel has the tail */
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_SEND, c->gen, slot));
	c->flags |= RC_CF_SEND;
	c->inflight++;
	s->stats.sends++;
	/* The unbatched mode exists to measure what batching saves (perf/broadcast). */
	if (!s->app->cfg.submit_batching) {
		s->stats.submits++;
		io_uring_submit(&s->ring);
	}
}

void rc_shard_flush(struct rc_shard *s)
{
	uint32_t max = (uint32_t)s->app->cfg.sends_per_turn_max, issued = 0;
	/* Oldest first, at most max sends: the rest keep their place for the next turn, so a
	 * publish that arrives meanwhile joins the queues of the subscribers not yet served
	 * instead of waiting for a whole round over all of them (issue 14). A connection is on
	 * the list at most once. */
	while (s->dirty_count) {
		if (issued == max) {
			s->stats.flushes_bounded++;
			return;
		}
		struct rc_conn *c = &s->conns[s->dirty[s->dirty_head]];
		if (++s->dirty_head == s->conns_cap)
			s->dirty_head = 0;
		s->dirty_count--;
		c->flags &= (uint16_t)~RC_CF_DIRTY;
		if (c->state == RC_CONN_FREE || c->state == RC_CONN_DOOMED)
			continue;
		if (c->flags & RC_CF_HTTP_RESUME) {
			c->flags &= (uint16_t)~RC_CF_HTTP_RESUME;
			s->app->conn_hooks->resume(c);
			if (c->state == RC_CONN_DOOMED)
				continue;
		}
		if (c->flags & RC_CF_SEND)
			continue; /* the completion will send the rest */
		if (c->tls) {
			if (rc_tls_issue_send(c)) {
				issued++;
				continue; /* sent, or the queue waits for the handshake */
			}
		} else if (c->q.count) {
			issue_send(c);
			issued++;
			continue;
		}
		if (c->flags & RC_CF_FLUSH_CLOSE) {
			/* TLS says goodbye first (close_notify), then the next flush ends c. */
			if (!(c->tls && rc_tls_close_notify(c)))
				rc_conn_terminate(c, (enum rc_close_reason)c->close_reason);
		} else if ((c->flags & (RC_CF_DISCARD | RC_CF_SHUT_WR)) == RC_CF_DISCARD) {
			if (!(c->tls && rc_tls_close_notify(c)))
				rc_conn_shutdown_wr(c);
		}
	}
	s->dirty_head = 0;
}

/* Drops the frames the kernel accepted (res bytes) from the head of c's queue. */
static void consume(struct rc_conn *c, uint32_t res)
{
	struct rc_sendq *q = &c->q;
	while (res > 0) {
		RC_ASSERT(q->count > 0);
		struct rc_qring *r = q->ring;
		uint32_t left = r->e[q->head].frame->len - r->sent;
		if (res < left) {
			r->sent += res;
			q->bytes -= res;
			return;
		}
		res -= left;
		q->bytes -= left;
		pop_head(c);
	}
	qring_settle(c);
}

void rc_sendq_consume(struct rc_conn *c, uint32_t n)
{
	RC_ASSERT(n <= c->q.bytes);
	consume(c, n);
	c->flags &= (uint16_t)~RC_CF_PONG; /* a pong at the tail may be encrypted already */
}

void rc_send_complete(struct rc_conn *c, int res)
{
	struct rc_shard *s = c->shard;

	RC_ASSERT(c->flags & RC_CF_SEND);
	c->flags &= (uint16_t)~RC_CF_SEND;
	struct rc_qring *r = c->q.ring;
	if (r && r->op) {
		sendop_put(s, r->op); /* the gathered send that started at the head is done */
		r->op = NULL;
	}
	if (c->state == RC_CONN_DOOMED) {
		release(c); /* terminated while the kernel read the queue */
		rc_tls_release(c);
	}
	rc_conn_op_done(c); /* may close a terminated connection's descriptor */
	if (c->state == RC_CONN_DOOMED)
		return;
	if (res < 0) {
		rc_conn_terminate(c, RC_CLOSE_peer_gone);
		return;
	}
	s->stats.bytes_out += (uint64_t)res;
	if (c->tls)
		rc_tls_sent(c, (uint32_t)res); /* ciphertext: its frames left the queue already */
	else
		consume(c, (uint32_t)res);
	if (c->q.count || (c->tls && rc_tls_out_pending(c)) || (c->flags & RC_CF_FLUSH_CLOSE) ||
	    (c->flags & (RC_CF_DISCARD | RC_CF_SHUT_WR)) == RC_CF_DISCARD) {
		mark_dirty(c);
		return;
	}
	if ((c->flags & RC_CF_WANT_DRAIN) && c->state == RC_CONN_OPEN) {
		c->flags &= (uint16_t)~RC_CF_WANT_DRAIN;
		const struct rc_ws_handler *h = &s->app->ws[c->endpoint].h;
		if (h->on_drain)
			h->on_drain(c, h->ctx);
	}
}

void rc_pools_free(struct rc_shard *s)
{
	for (int k = 0; k < RC_QRING_CLASSES; k++) {
		while (s->qring_free[k]) {
			struct rc_qring *r = s->qring_free[k];
			s->qring_free[k] = r->next_free;
			free(r);
		}
	}
	s->qring_free_bytes = 0;
	struct rc_sendop **pools[] = {&s->sendop_free, &s->sendop_small_free};
	for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
		while (*pools[i]) {
			struct rc_sendop *op = *pools[i];
			*pools[i] = op->next_free;
			free(op);
		}
	}
	s->qring_free_count = 0;
	s->sendop_free_count = 0;
	s->sendop_small_free_count = 0;
}

/* Frees *buf (capacity *cap) and its charge if it grew past what a shard keeps. */
static void trim(struct rc_shard *s, uint8_t **buf, size_t *cap)
{
	if (*cap > RC_CODEC_BUF_KEEP_BYTES)
		rc_grow_free(s, (void **)buf, cap);
}

void rc_sendq_trim(struct rc_shard *s)
{
	trim(s, &s->zbuf, &s->zbuf_cap);
	trim(s, &s->ibuf, &s->ibuf_cap);
}
