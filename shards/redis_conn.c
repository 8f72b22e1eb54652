/*
 * Redis links on the shard's io_uring: connect, one send in flight (the rest of the turn's
 * commands wait in obuf and leave together), one receive in flight decoded by hiredis'
 * redisReader, replies matched FIFO to their commands, command and connect timeouts,
 * reconnect with exponential backoff and jitter. A failed link answers every waiting
 * command with NULL at once and closes its socket only once no operation is in flight, so
 * no buffer is reused under the kernel. Shard thread (see redis_conn.h for the exceptions).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "redis_conn.h"
#include "redis_proto.h"
#include "uring.h"

/* ---- addresses (main thread) ------------------------------------------------------------- */
static int resolve(const char *entry, struct rc_redis_addr *out, char *err, size_t err_len)
{
	char host[256], port[8];
	uint16_t p;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	if (rc_redis_parse_address(entry, host, sizeof(host), &p) != 0) {
		snprintf(err, err_len, "redis_addresses: '%s' is not host:port", entry);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", p);
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, err_len, "redis_addresses: %s: %s", entry, gai_strerror(rc));
		return -EINVAL;
	}
	RC_ASSERT(res->ai_addrlen <= sizeof(out->sa));
	memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
	out->sa_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int rc_redis_addrs_init(struct rc_app *app, char *err, size_t err_len)
{
	char *items[RC_REDIS_ADDRESSES_LIMIT];
	app->redis_names_buf = strdup(app->cfg.redis_addresses);
	app->redis_names = calloc(RC_REDIS_ADDRESSES_LIMIT, sizeof(*app->redis_names));
	app->redis_addrs = calloc(RC_REDIS_ADDRESSES_LIMIT, sizeof(*app->redis_addrs));
	if (!app->redis_names_buf || !app->redis_names || !app->redis_addrs) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	size_t n = rc_config_split_list(app->redis_names_buf, items, RC_ARRAY_LEN(items));
	RC_ASSERT(n > 0); /* rc_config_validate checked the list */
	for (size_t i = 0; i < n; i++) {
		int rc = resolve(items[i], &app->redis_addrs[i], err, err_len);
		if (rc != 0)
			return rc;
		app->redis_names[i] = items[i];
	}
	app->redis_count = (uint32_t)n;
	return 0;
}

void rc_redis_addrs_free(struct rc_app *app)
{
	free(app->redis_addrs);
	free(app->redis_names);
	free(app->redis_names_buf);
	app->redis_addrs = NULL;
	app->redis_names = NULL;
	app->redis_names_buf = NULL;
}

/* ---- links: lifetime --------------------------------------------------------------------- */
/* What a link holds from start to end: its reply ring and receive buffer. */
static size_t fixed_bytes(const struct rc_redis_link *l)
{
	return l->wait_cap * sizeof(*l->wait) + RC_REDIS_RECV_BYTES;
}

/* Charges (or releases) the bytes l's reader buffers now against what it was charged. */
static void reader_account(struct rc_redis_link *l)
{
	size_t now = l->reader ? l->reader->len : 0;
	if (now > l->reader_bytes)
		rc_mem_charge(l->shard->app, RC_BUDGET_engine, now - l->reader_bytes);
	else
		rc_mem_release(l->shard->app, RC_BUDGET_engine, l->reader_bytes - now);
	l->reader_bytes = now;
}

static void reader_free(struct rc_redis_link *l)
{
	if (l->reader)
		redisReaderFree(l->reader);
	l->reader = NULL;
	reader_account(l);
}

int rc_redis_links_init(struct rc_shard *s)
{
	const struct rc_app *app = s->app;
	uint32_t n = app->redis_count * 2;
	s->redis_links = calloc(n, sizeof(*s->redis_links));
	if (!s->redis_links)
		return -ENOMEM;
	s->redis_rand = app->epoch_key ^ ((uint64_t)s->index + 1) * 0x9e3779b97f4a7c15ull;
	/* Every instance counts as down until both its links connect. */
	s->stats.redis_down_mask = app->redis_count == 64 ? ~0ull : (1ull << app->redis_count) - 1;
	for (uint32_t i = 0; i < n; i++) {
		struct rc_redis_link *l = &s->redis_links[i];
		l->shard = s;
		l->index = i;
		l->kind = (uint8_t)(i % 2);
		l->fd = -1;
		l->wait_cap = (uint32_t)app->cfg.redis_pipeline_max + 1;
		l->wait = calloc(l->wait_cap, sizeof(*l->wait));
		l->rbuf = malloc(RC_REDIS_RECV_BYTES);
		if (!l->wait || !l->rbuf)
			return -ENOMEM;
		rc_mem_charge(s->app, RC_BUDGET_engine, fixed_bytes(l));
	}
	return 0;
}

void rc_redis_links_free(struct rc_shard *s)
{
	for (uint32_t i = 0; s->redis_links && i < s->app->redis_count * 2; i++) {
		struct rc_redis_link *l = &s->redis_links[i];
		RC_ASSERT(l->wait_count == 0 && !l->batch && !l->resend);
		if (l->fd >= 0)
			close(l->fd);
		reader_free(l);
		if (l->wait && l->rbuf)
			rc_mem_release(s->app, RC_BUDGET_engine, fixed_bytes(l));
		rc_mem_release(s->app, RC_BUDGET_engine, l->ocap + l->wcap);
		free(l->obuf);
		free(l->wbuf);
		free(l->rbuf);
		free(l->wait);
	}
	free(s->redis_links);
	s->redis_links = NULL;
}

/* The next delay before reconnecting: redis_reconnect_min_ms doubling per failure up to
 * redis_reconnect_max_ms, then scaled by a random 50..100 % so nodes do not reconnect in
 * step after an outage. */
static uint64_t backoff_ms(struct rc_redis_link *l)
{
	const struct rc_config *cfg = &l->shard->app->cfg;
	struct rc_shard *s = l->shard;
	uint32_t shift = RC_MIN(l->failures, 20u);
	uint64_t d = RC_MIN(cfg->redis_reconnect_min_ms << shift, cfg->redis_reconnect_max_ms);
	s->redis_rand ^= s->redis_rand << 13;
	s->redis_rand ^= s->redis_rand >> 7;
	s->redis_rand ^= s->redis_rand << 17;
	return d / 2 + s->redis_rand % (d / 2 + 1);
}

static void set_down_bit(struct rc_redis_link *l, bool down)
{
	struct rc_shard_stats *st = &l->shard->stats;
	uint64_t bit = 1ull << (l->index / 2);
	st->redis_down_mask = down ? st->redis_down_mask | bit : st->redis_down_mask & ~bit;
}

/* The link's own commands (AUTH, keepalive PING), answered inside this file. */
static bool internal(uint32_t what)
{
	return what == RC_REDIS_WHAT_AUTH || what == RC_REDIS_WHAT_PING;
}

/* A CLOSING link whose last operation completed: the socket closes, the reconnect waits. */
static void maybe_closed(struct rc_redis_link *l)
{
	if (l->state != RC_REDIS_CLOSING || l->inflight > 0)
		return;
	RC_ASSERT(!l->sending);
	close(l->fd);
	l->fd = -1;
	l->state = RC_REDIS_DOWN;
	l->deadline_ms = l->shard->clock.now_ms + backoff_ms(l);
	l->failures++;
}

void rc_redis_link_fail(struct rc_redis_link *l)
{
	struct rc_shard *s = l->shard;
	if (l->state == RC_REDIS_CLOSING || l->state == RC_REDIS_DOWN)
		return;
	RC_ASSERT(l->fd >= 0);
	s->stats.redis_errors += !l->stopped;
	set_down_bit(l, true);
	l->answered = false;
	l->gen++;
	l->state = RC_REDIS_CLOSING;
	/* Every operation in flight completes soon (stale by generation): the shutdown ends a
	 * receive or connect, the cancel whatever else still waits. */
	(void)shutdown(l->fd, SHUT_RDWR);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_NONE, 0, 0));
	reader_free(l);
	l->olen = 0;
	while (l->wait_count > 0) {
		struct rc_redis_wait w = l->wait[l->wait_head];
		l->wait_head = (l->wait_head + 1) % l->wait_cap;
		l->wait_count--;
		s->stats.redis_pipeline_depth--;
		if (!internal(w.what))
			s->app->redis_hooks->reply(l, w.ctx, w.what, NULL);
	}
	s->app->redis_hooks->down(l);
	maybe_closed(l);
}

void rc_redis_links_stop(struct rc_shard *s)
{
	for (uint32_t i = 0; s->redis_links && i < s->app->redis_count * 2; i++) {
		struct rc_redis_link *l = &s->redis_links[i];
		l->stopped = true;
		rc_redis_link_fail(l);
	}
}

/* ---- operations ---------------------------------------------------------------------------- */
static struct io_uring_sqe *link_sqe(struct rc_redis_link *l, enum rc_op op)
{
	struct io_uring_sqe *sqe = rc_uring_sqe(l->shard);
	io_uring_sqe_set_data64(sqe, rc_ud(op, l->gen, l->index));
	l->inflight++;
	return sqe;
}

static void connect_start(struct rc_redis_link *l)
{
	struct rc_shard *s = l->shard;
	const struct rc_redis_addr *a = &s->app->redis_addrs[l->index / 2];
	RC_ASSERT(l->state == RC_REDIS_DOWN);
	l->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		s->stats.redis_errors++;
		l->deadline_ms = s->clock.now_ms + backoff_ms(l);
		return;
	}
	int one = 1;
	(void)setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	io_uring_prep_connect(link_sqe(l, RC_OP_REDIS_CONNECT), l->fd,
			      (const struct sockaddr *)&a->sa, a->sa_len);
	l->state = RC_REDIS_CONNECTING;
	l->deadline_ms = s->clock.now_ms + s->app->cfg.redis_connect_timeout_ms;
}

static void recv_arm(struct rc_redis_link *l)
{
	io_uring_prep_recv(link_sqe(l, RC_OP_REDIS_RECV), l->fd, l->rbuf, RC_REDIS_RECV_BYTES, 0);
}

/* Hands obuf to the kernel when no send is in flight: the turn's commands in one send. */
static void flush(struct rc_redis_link *l)
{
	if (l->sending || l->olen == 0 || l->state != RC_REDIS_UP)
		return;
	char *b = l->wbuf;
	size_t cap = l->wcap;
	l->wbuf = l->obuf;
	l->wcap = l->ocap;
	l->wlen = l->olen;
	l->woff = 0;
	l->obuf = b;
	l->ocap = cap;
	l->olen = 0;
	io_uring_prep_send(link_sqe(l, RC_OP_REDIS_SEND), l->fd, l->wbuf, l->wlen, MSG_NOSIGNAL);
	l->sending = true;
	l->writes++;
	l->shard->stats.redis_writes++;
}

static void ping(struct rc_redis_link *l);

static void connected(struct rc_redis_link *l)
{
	struct rc_shard *s = l->shard;
	const char *password = s->app->cfg.redis_password;
	l->state = RC_REDIS_UP;
	l->last_rx_ms = s->clock.now_ms;
	l->reader = rc_redis_reader_create(&l->bound, s->app->cfg.redis_reply_bytes_max);
	if (!l->reader) {
		s->stats.alloc_failures++;
		rc_redis_link_fail(l);
		return;
	}
	if (l->failures > 0)
		s->stats.redis_reconnects++;
	l->failures = 0;
	recv_arm(l);
	l->answered = false;
	if (password[0]) {
		const char *argv[] = {"AUTH", password};
		size_t lens[] = {4, strlen(password)};
		(void)rc_redis_command(l, 2, argv, lens, NULL, RC_REDIS_WHAT_AUTH);
	}
	ping(l); /* a listening port is not yet a Redis that answers */
	s->app->redis_hooks->up(l);
}

/* On a subscriber link, whether r answers the waiting command (its AUTH, or a PING: "+PONG",
 * or ["pong", ""] while subscribed) rather than being a message or a confirmation. */
static bool answers_wait(const struct rc_redis_link *l, const redisReply *r)
{
	uint32_t what = l->wait[l->wait_head].what;
	if (what == RC_REDIS_WHAT_AUTH)
		return true; /* sent first: its answer comes first */
	if (r->type == REDIS_REPLY_STATUS)
		return strcmp(r->str, "PONG") == 0;
	return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
	       r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "pong") == 0;
}

/* Hands one decoded reply to whoever waits for it. False if the link failed. */
static bool dispatch_reply(struct rc_redis_link *l, redisReply *r)
{
	struct rc_shard *s = l->shard;
	bool err = r->type == REDIS_REPLY_ERROR;
	if (err)
		s->stats.redis_errors++;
	/* Up once both links of the instance got an answer: the engine needs both. */
	l->answered = true;
	if (s->redis_links[l->index ^ 1].answered)
		set_down_bit(l, false);
	if (l->wait_count == 0 || (l->kind == RC_REDIS_SUB && !answers_wait(l, r))) {
		if (l->kind != RC_REDIS_SUB) {
			rc_redis_link_fail(l); /* a reply nobody asked for */
			return false;
		}
		s->app->redis_hooks->push(l, r);
		return l->state == RC_REDIS_UP;
	}
	static const uint64_t bounds[] = RC_REDIS_LATENCY_BOUNDS_MS;
	struct rc_redis_wait w = l->wait[l->wait_head];
	l->wait_head = (l->wait_head + 1) % l->wait_cap;
	l->wait_count--;
	s->stats.redis_pipeline_depth--;
	uint64_t ms = s->clock.now_ms - w.sent_ms;
	uint32_t b = 0;
	while (b < RC_ARRAY_LEN(bounds) && ms > bounds[b])
		b++;
	s->stats.redis_latency[b]++;
	s->stats.redis_latency_ms_sum += ms;
	if (internal(w.what)) {
		if (err)
			rc_redis_link_fail(l);
		return !err;
	}
	s->app->redis_hooks->reply(l, w.ctx, w.what, r);
	return l->state == RC_REDIS_UP;
}

/* A reply past redis_reply_bytes_max, or what the reader could not decode: l fails. */
static void unreadable(struct rc_redis_link *l)
{
	l->shard->stats.redis_reply_oversize += l->bound.exceeded;
	rc_redis_link_fail(l);
}

static void received(struct rc_redis_link *l, int res)
{
	l->last_rx_ms = l->shard->clock.now_ms;
	if (res <= 0 || redisReaderFeed(l->reader, l->rbuf, (size_t)res) != REDIS_OK) {
		rc_redis_link_fail(l);
		return;
	}
	for (;;) {
		void *reply = NULL;
		if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
			unreadable(l);
			return;
		}
		if (!reply)
			break;
		rc_redis_bound_next(&l->bound);
		bool alive = dispatch_reply(l, reply);
		freeReplyObject(reply);
		if (!alive)
			return;
	}
	if (rc_redis_reader_over(l->reader, &l->bound)) {
		unreadable(l);
		return;
	}
	reader_account(l);
	recv_arm(l);
}

static void sent(struct rc_redis_link *l, int res)
{
	l->sending = false;
	if (res <= 0) {
		rc_redis_link_fail(l);
		return;
	}
	l->woff += (size_t)res;
	if (l->woff < l->wlen) {
		io_uring_prep_send(link_sqe(l, RC_OP_REDIS_SEND), l->fd, l->wbuf + l->woff,
				   l->wlen - l->woff, MSG_NOSIGNAL);
		l->sending = true;
		return;
	}
	flush(l);
}

void rc_redis_complete(struct rc_shard *s, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t i = rc_ud_slot(ud);
	RC_ASSERT(s->redis_links && i < s->app->redis_count * 2);
	struct rc_redis_link *l = &s->redis_links[i];
	RC_ASSERT(l->inflight > 0);
	l->inflight--;
	if (rc_ud_gen(ud) != (l->gen & RC_GEN_MASK)) {
		if (rc_ud_op(ud) == RC_OP_REDIS_SEND)
			l->sending = false;
		maybe_closed(l);
		return;
	}
	switch (rc_ud_op(ud)) {
	case RC_OP_REDIS_CONNECT:
		if (cqe->res < 0)
			rc_redis_link_fail(l);
		else
			connected(l);
		return;
	case RC_OP_REDIS_SEND: sent(l, cqe->res); return;
	case RC_OP_REDIS_RECV: received(l, cqe->res); return;
	default: RC_ASSERT(!"not a Redis operation");
	}
}

/* ---- commands and the turn --------------------------------------------------------------- */
/* Makes room for add more bytes in obuf (doubling), charged to the engine's memory. False:
 * out of memory or budget. */
static bool obuf_reserve(struct rc_redis_link *l, size_t add)
{
	struct rc_app *app = l->shard->app;
	if (l->olen + add <= l->ocap)
		return true;
	size_t cap = RC_MAX(l->ocap * 2, RC_MAX(l->olen + add, (size_t)4096));
	if (!rc_mem_try_charge(app, RC_BUDGET_engine, cap - l->ocap))
		return false;
	char *b = realloc(l->obuf, cap);
	if (!b) {
		rc_mem_release(app, RC_BUDGET_engine, cap - l->ocap);
		return false;
	}
	l->obuf = b;
	l->ocap = cap;
	return true;
}

bool rc_redis_backlog_room(const struct rc_redis_link *l, size_t add)
{
	size_t held = l->olen + (l->sending ? l->wlen - l->woff : 0);
	return held + add <= l->shard->app->cfg.redis_backlog_bytes_max;
}

int rc_redis_command(struct rc_redis_link *l, int argc, const char **argv, const size_t *argvlen,
		     void *ctx, uint32_t what)
{
	struct rc_shard *s = l->shard;
	bool waits = l->kind == RC_REDIS_CMD || internal(what);
	if (l->state != RC_REDIS_UP)
		return -ENOTCONN;
	if ((waits && l->wait_count + 1 >= l->wait_cap) || !rc_redis_backlog_room(l, 0)) {
		s->stats.redis_refusals++;
		return -EBUSY;
	}
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
	if (n < 0 || !obuf_reserve(l, (size_t)n)) {
		free(cmd);
		s->stats.alloc_failures++;
		return -ENOMEM;
	}
	memcpy(l->obuf + l->olen, cmd, (size_t)n);
	l->olen += (size_t)n;
	free(cmd);
	s->stats.redis_commands++;
	if (waits) {
		uint32_t at = (l->wait_head + l->wait_count) % l->wait_cap;
		l->wait[at] = (struct rc_redis_wait){ctx, s->clock.now_ms, what};
		l->wait_count++;
		s->stats.redis_pipeline_depth++;
	}
	RC_DASSERT(l->wait_count < l->wait_cap);
	return 0;
}

/* Keepalive of a quiet link: its answer (or the command timeout) tells whether Redis is
 * still there. */
static void ping(struct rc_redis_link *l)
{
	const char *argv[] = {"PING"};
	size_t lens[] = {4};
	(void)rc_redis_command(l, 1, argv, lens, NULL, RC_REDIS_WHAT_PING);
}

/* Connects a due link; fails one whose connect, oldest command or keepalive ran out of
 * time, and pings a quiet one. */
static void link_timers(struct rc_redis_link *l, uint64_t now)
{
	const struct rc_config *cfg = &l->shard->app->cfg;
	switch (l->state) {
	case RC_REDIS_DOWN:
		if (!l->stopped && !l->shard->draining && now >= l->deadline_ms)
			connect_start(l);
		return;
	case RC_REDIS_CONNECTING:
		if (now >= l->deadline_ms)
			rc_redis_link_fail(l);
		return;
	case RC_REDIS_UP:
		if (l->wait_count &&
		    now - l->wait[l->wait_head].sent_ms > cfg->redis_command_timeout_ms)
			rc_redis_link_fail(l);
		else if (!l->wait_count && now - l->last_rx_ms >= cfg->redis_command_timeout_ms / 2)
			ping(l);
		return;
	default: return;
	}
}

void rc_redis_links_turn(struct rc_shard *s)
{
	uint64_t now = s->clock.now_ms;
	for (uint32_t i = 0; i < s->app->redis_count * 2; i++) {
		struct rc_redis_link *l = &s->redis_links[i];
		link_timers(l, now);
		if (l->state == RC_REDIS_UP)
			s->app->redis_hooks->turn(l);
		flush(l);
	}
}

bool rc_redis_links_idle(const struct rc_shard *s)
{
	for (uint32_t i = 0; i < s->app->redis_count * 2; i++) {
		const struct rc_redis_link *l = &s->redis_links[i];
		if (l->state == RC_REDIS_UP && (l->olen || l->sending || l->wait_count))
			return false;
	}
	return true;
}
