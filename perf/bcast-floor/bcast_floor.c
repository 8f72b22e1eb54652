/*
 * bcast-floor: the least a program can do on this kernel to send the same bytes to N sockets,
 * the floor ringcast's broadcast is read against (issue 14). It speaks just enough of RFC 6455
 * and of ringcast's pub/sub text for ringcast-bench's broadcast scenario to drive and check
 * it: a 101 for every upgrade, a connection whose text frame holds "sub" joins the one topic,
 * and a text frame holding "pub" is sent, unmasked and unchanged, to every subscriber. No JSON,
 * no topics, no seq, no queues, no budget, no slow-consumer policy beyond one bound.
 *
 * Fan-out: every frame published is appended once to one shared log, a memfd mapped twice in
 * a row so any span of it is contiguous in memory (registered as fixed buffer 0 when the kernel
 * takes fixed buffers for plain sends). A subscriber is a byte position in that log. Each loop
 * turn, every subscriber that is behind and has no send in flight gets ONE send SQE carrying
 * everything it is missing (all frames published since its last send), so the per-delivery
 * cost is one SQE, one CQE and the kernel's copy, shared by every frame of the turn. The SQ is
 * submitted when full and at the end of the turn (DEFER_TASKRUN, one submit_and_wait). A
 * subscriber more than half the log behind is closed (counted in the exit line).
 *
 * One thread and ring: multishot accept into direct descriptors, multishot recv into a
 * provided-buffer ring. Calling thread: main only.
 *
 * Usage: bcast-floor [--host 127.0.0.1] [--port 9000, 0: any free port] [--log-mib 64] [--fixed 1]
 *                    [--lifetime 3600]
 * Logs "bcast-floor: ready on HOST:PORT" on stderr; exits on SIGINT/SIGTERM or after
 * --lifetime seconds, printing publishes, deliveries (sends), bytes and closes.
 */
#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../floor.h"
#include "handshake.h"

#define SQ_ENTRIES 8192
#define BUFS 1024
#define BUF_SIZE 4096
#define RX_LIMIT (1u << 20)
#define NONE UINT32_MAX

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_REPLY, OP_CLOSE };

enum conn_state { CS_FREE = 0, CS_HANDSHAKE, CS_OPEN, CS_CLOSING };

struct conn {
	uint64_t pos;	  /* log byte offset of the next byte this subscriber needs */
	uint8_t *rx;	  /* unconsumed input (handshake or partial frame), malloc'd */
	char *reply;	  /* the 101 while it is being sent */
	uint32_t rx_len;
	uint32_t sub_index; /* index in subs[], NONE when not subscribed */
	uint8_t state;
	uint8_t sending;
	uint8_t recv_on;
	uint8_t replying;
};

static struct {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct conn *conns;
	uint32_t conns_count;
	uint32_t *subs; /* subscribed slots, unordered */
	uint32_t subs_count;
	uint32_t *ready; /* subscribers whose send completed short of the log's end */
	uint32_t ready_count;
	uint8_t *log; /* log_bytes mapped twice in a row */
	uint64_t log_bytes;
	uint64_t log_end; /* bytes ever appended */
	uint64_t log_walked; /* log_end at the last full walk */
	int listen_fd;
	int fixed; /* sends name fixed buffer 0 */
	uint64_t publishes, sends, send_bytes, slow_closed, errors;
} g;

static struct {
	const char *host;
	int port;
	unsigned log_mib;
	int fixed;
	unsigned lifetime_s;
} opt = {"127.0.0.1", 9000, 64, 0, 3600};

static uint64_t ud(enum op op, uint32_t slot)
{
	return ((uint64_t)op << 32) | slot;
}

static struct io_uring_sqe *sqe_get(void)
{
	return floor_sqe_get(&g.ring);
}

static void arm_accept(void)
{
	floor_arm_accept(&g.ring, g.listen_fd, ud(OP_ACCEPT, 0));
}

static void arm_recv(uint32_t slot)
{
	floor_arm_recv(&g.ring, slot, ud(OP_RECV, slot));
	g.conns[slot].recv_on = 1;
}

/* One send of everything subscriber slot is missing, straight from the log. */
static void send_missing(uint32_t slot)
{
	struct conn *c = &g.conns[slot];
	uint64_t lag = g.log_end - c->pos;
	struct io_uring_sqe *sqe;

	if (c->sending || !lag || c->state != CS_OPEN)
		return;
	sqe = sqe_get();
	io_uring_prep_send(sqe, (int)slot, g.log + c->pos % g.log_bytes, (size_t)lag,
			   MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	if (g.fixed) {
		sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
		sqe->buf_index = 0;
	}
	sqe->user_data = ud(OP_SEND, slot);
	c->sending = 1;
	g.sends++;
}

static void unsubscribe(struct conn *c)
{
	uint32_t last;

	if (c->sub_index == NONE)
		return;
	last = g.subs[--g.subs_count];
	g.subs[c->sub_index] = last;
	g.conns[last].sub_index = c->sub_index;
	c->sub_index = NONE;
}

/* Starts closing slot; the descriptor is closed once nothing of it is in flight. */
static void close_conn(uint32_t slot)
{
	struct conn *c = &g.conns[slot];
	struct io_uring_sqe *sqe;

	if (c->state == CS_FREE)
		return;
	c->state = CS_CLOSING;
	unsubscribe(c);
	if (c->recv_on) {
		sqe = sqe_get();
		io_uring_prep_cancel64(sqe, ud(OP_RECV, slot), 0);
		sqe->user_data = 0;
	}
	if (c->sending || c->recv_on || c->replying)
		return;
	free(c->rx);
	c->rx = NULL;
	sqe = sqe_get();
	io_uring_prep_close_direct(sqe, slot);
	sqe->user_data = ud(OP_CLOSE, slot);
	c->state = CS_FREE;
}

/* Appends one server text frame carrying payload (unmasked in place by the caller). */
static void publish(const uint8_t *payload, size_t len)
{
	uint8_t head[10];
	size_t hl = 2;
	uint8_t *dst = g.log + g.log_end % g.log_bytes;

	head[0] = 0x81;
	if (len < 126) {
		head[1] = (uint8_t)len;
	} else if (len < 65536) {
		head[1] = 126;
		head[2] = (uint8_t)(len >> 8);
		head[3] = (uint8_t)len;
		hl = 4;
	} else {
		head[1] = 127;
		for (int i = 0; i < 8; i++)
			head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(dst, head, hl);
	memcpy(dst + hl, payload, len);
	g.log_end += hl + len;
	g.publishes++;
}

/* Handles one whole client frame; false when the connection is to close. */
static bool on_frame(uint32_t slot, uint8_t op, uint8_t *p, size_t len)
{
	struct conn *c = &g.conns[slot];

	if (op == 0x8)
		return false;
	if (op != 0x1 && op != 0x2)
		return true;
	if (memmem(p, len, "\"pub\"", 5)) {
		publish(p, len);
	} else if (memmem(p, len, "\"sub\"", 5) && c->sub_index == NONE) {
		c->sub_index = g.subs_count;
		g.subs[g.subs_count++] = slot;
		c->pos = g.log_end;
	}
	return true;
}

/* Consumes the whole masked client frames at p; returns bytes consumed, or -1 to close. */
static long frames(uint32_t slot, uint8_t *p, size_t n)
{
	size_t off = 0;

	while (n - off >= 6) {
		uint8_t *f = p + off, *mask;
		uint64_t len = f[1] & 0x7f;
		size_t hl = 6;

		if (!(f[1] & 0x80))
			return -1;
		if (len == 126) {
			hl = 8;
			len = n - off >= hl ? ((uint64_t)f[2] << 8) | f[3] : 0;
		} else if (len == 127) {
			return -1;
		}
		if (n - off < hl || n - off - hl < len)
			break;
		if (len > RX_LIMIT || g.log_bytes / 4 < len + 10)
			return -1;
		mask = f + hl - 4;
		for (uint64_t i = 0; i < len; i++)
			f[hl + i] ^= mask[i & 3];
		if (!on_frame(slot, f[0] & 0x0f, f + hl, (size_t)len))
			return -1;
		off += hl + (size_t)len;
	}
	return (long)off;
}

/* Answers a complete upgrade request held in c->rx[0..end). */
static int handshake(uint32_t slot, size_t end)
{
	static const char name[] = "\r\nsec-websocket-key:";
	struct conn *c = &g.conns[slot];
	const char *h = (const char *)c->rx, *k = NULL, *e;
	char accept[29];
	struct io_uring_sqe *sqe;
	int n;

	for (size_t i = 0; i + sizeof(name) - 1 < end && !k; i++)
		if (!strncasecmp(h + i, name, sizeof(name) - 1))
			k = h + i + sizeof(name) - 1;
	if (!k)
		return -1;
	while (*k == ' ')
		k++;
	e = memchr(k, '\r', (size_t)(h + end - k));
	if (!e)
		return -1;
	rc_handshake_accept_key(k, (size_t)(e - k), accept);
	c->reply = malloc(160);
	if (!c->reply)
		return -1;
	n = snprintf(c->reply, 160,
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
	sqe = sqe_get();
	io_uring_prep_send(sqe, (int)slot, c->reply, (size_t)n, MSG_NOSIGNAL | MSG_WAITALL);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = ud(OP_REPLY, slot);
	c->replying = 1;
	c->state = CS_OPEN;
	return 0;
}

/* Feeds received bytes to slot: buffered only while a request or frame is incomplete. */
static int input(uint32_t slot, uint8_t *p, size_t n)
{
	struct conn *c = &g.conns[slot];
	long used;

	if (c->rx_len || c->state == CS_HANDSHAKE) {
		uint8_t *nb;

		if (c->rx_len + n > RX_LIMIT || !(nb = realloc(c->rx, c->rx_len + n)))
			return -1;
		memcpy(nb + c->rx_len, p, n);
		c->rx = nb;
		c->rx_len += (uint32_t)n;
		p = c->rx;
		n = c->rx_len;
	}
	if (c->state == CS_HANDSHAKE) {
		uint8_t *e = memmem(p, n, "\r\n\r\n", 4);

		if (!e)
			return 0;
		if (handshake(slot, (size_t)(e + 4 - p)))
			return -1;
		memmove(c->rx, e + 4, (size_t)(p + n - e - 4));
		c->rx_len = (uint32_t)(p + n - e - 4);
		p = c->rx;
		n = c->rx_len;
	}
	used = frames(slot, p, n);
	if (used < 0)
		return -1;
	if (p == c->rx) {
		memmove(c->rx, c->rx + used, n - (size_t)used);
		c->rx_len = (uint32_t)(n - (size_t)used);
		return 0;
	}
	if ((size_t)used < n) {
		free(c->rx);
		c->rx = malloc(n - (size_t)used);
		if (!c->rx)
			return -1;
		memcpy(c->rx, p + used, n - (size_t)used);
		c->rx_len = (uint32_t)(n - (size_t)used);
	}
	return 0;
}

static void on_recv(uint32_t slot, const struct io_uring_cqe *cqe, int *returned)
{
	struct conn *c = &g.conns[slot];

	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_on = 0;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		uint8_t *b = g.bufs + (size_t)bid * BUF_SIZE;

		if (cqe->res > 0 && c->state != CS_CLOSING && input(slot, b, (size_t)cqe->res))
			close_conn(slot);
		io_uring_buf_ring_add(g.br, b, BUF_SIZE, bid, io_uring_buf_ring_mask(BUFS),
				      (*returned)++);
	}
	if (cqe->res <= 0 && cqe->res != -ENOBUFS)
		close_conn(slot);
	else if (!c->recv_on && c->state != CS_CLOSING)
		arm_recv(slot);
	if (c->state == CS_CLOSING)
		close_conn(slot);
}

static void on_send(uint32_t slot, int res)
{
	struct conn *c = &g.conns[slot];

	c->sending = 0;
	if (res < 0) {
		if (!g.errors++)
			fprintf(stderr, "bcast-floor: first send error: %s\n", strerror(-res));
		close_conn(slot);
		return;
	}
	c->pos += (uint64_t)res;
	g.send_bytes += (uint64_t)res;
	if (c->state == CS_CLOSING)
		close_conn(slot);
	else if (c->pos < g.log_end)
		g.ready[g.ready_count++] = slot;
}

static void on_accept(const struct io_uring_cqe *cqe)
{
	if (cqe->res >= 0 && (uint32_t)cqe->res < g.conns_count) {
		uint32_t slot = (uint32_t)cqe->res;

		memset(&g.conns[slot], 0, sizeof(g.conns[slot]));
		g.conns[slot].sub_index = NONE;
		g.conns[slot].state = CS_HANDSHAKE;
		arm_recv(slot);
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept();
}

/* The turn's sends: every subscriber when the log grew, else those that came back short. */
static void fan_out(void)
{
	uint32_t ready = g.ready_count;

	g.ready_count = 0;
	if (g.log_end != g.log_walked) {
		g.log_walked = g.log_end;
		for (uint32_t i = 0; i < g.subs_count; i++) {
			uint32_t slot = g.subs[i];

			if (g.log_end - g.conns[slot].pos > g.log_bytes / 2) {
				g.slow_closed++;
				close_conn(slot);
				i--;
				continue;
			}
			send_missing(slot);
		}
		return;
	}
	for (uint32_t i = 0; i < ready; i++)
		send_missing(g.ready[i]);
}

static void dispatch(const struct io_uring_cqe *cqe, int *returned)
{
	uint32_t slot = (uint32_t)cqe->user_data;

	switch (cqe->user_data >> 32) {
	case OP_ACCEPT: on_accept(cqe); break;
	case OP_RECV: on_recv(slot, cqe, returned); break;
	case OP_SEND: on_send(slot, cqe->res); break;
	case OP_REPLY:
		g.conns[slot].replying = 0;
		free(g.conns[slot].reply);
		g.conns[slot].reply = NULL;
		if (cqe->res < 0 || g.conns[slot].state == CS_CLOSING)
			close_conn(slot);
		break;
	default: break;
	}
}

static void loop(time_t end)
{
	while (!atomic_load(&floor_stop) && time(NULL) < end) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
		struct io_uring_cqe *cqe;
		unsigned head, count = 0;
		int returned = 0;

		io_uring_submit_and_wait_timeout(&g.ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe (&g.ring, head, cqe) {
			dispatch(cqe, &returned);
			count++;
		}
		io_uring_cq_advance(&g.ring, count);
		if (returned)
			io_uring_buf_ring_advance(g.br, returned);
		fan_out();
	}
}

/* The log: one memfd mapped twice in a row, so a span crossing its end stays contiguous. */
static int map_log(void)
{
	size_t n = (size_t)opt.log_mib << 20;
	int fd = memfd_create("bcast-floor-log", MFD_CLOEXEC);
	uint8_t *base;

	if (fd < 0 || ftruncate(fd, (off_t)n))
		return -1;
	base = mmap(NULL, 2 * n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED ||
	    mmap(base, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
	    mmap(base + n, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		return -1;
	close(fd);
	g.log = base;
	g.log_bytes = n;
	return 0;
}

static int setup(void)
{
	struct io_uring_params p = {0};
	struct iovec iov;

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = SQ_ENTRIES * 8;
	if (io_uring_queue_init_params(SQ_ENTRIES, &g.ring, &p) ||
	    io_uring_register_files_sparse(&g.ring, g.conns_count) || map_log())
		return -1;
	iov.iov_base = g.log;
	iov.iov_len = 2 * g.log_bytes;
	g.fixed = opt.fixed && io_uring_register_buffers(&g.ring, &iov, 1) == 0;
	g.br = mmap(NULL, BUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
		    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	g.bufs = malloc((size_t)BUFS * BUF_SIZE);
	g.conns = calloc(g.conns_count, sizeof(*g.conns));
	g.subs = calloc(g.conns_count, sizeof(*g.subs));
	g.ready = calloc(g.conns_count, sizeof(*g.ready));
	if (g.br == MAP_FAILED || !g.bufs || !g.conns || !g.subs || !g.ready)
		return -1;
	if (floor_buf_ring(&g.ring, g.br, g.bufs, BUFS, BUF_SIZE))
		return -1;
	arm_accept();
	return 0;
}

static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--help") || !v)
			return -1;
		if (!strcmp(argv[i], "--host"))
			opt.host = v;
		else if (!strcmp(argv[i], "--port"))
			opt.port = atoi(v);
		else if (!strcmp(argv[i], "--log-mib"))
			opt.log_mib = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--fixed"))
			opt.fixed = atoi(v);
		else if (!strcmp(argv[i], "--lifetime"))
			opt.lifetime_s = (unsigned)atoi(v);
		else
			return -1;
	}
	return opt.log_mib < 4 || opt.log_mib > 4096 ? -1 : 0;
}

int main(int argc, char **argv)
{
	if (parse_args(argc, argv)) {
		fprintf(stderr, "usage: bcast-floor [--host H] [--port P] [--log-mib 4..4096] "
				"[--fixed 0|1] [--lifetime S]\n");
		return 2;
	}
	g.conns_count = floor_start();
	g.listen_fd = floor_listen(opt.host, opt.port, 0);
	if (g.listen_fd < 0 || setup()) {
		fprintf(stderr, "bcast-floor: setup on %s:%d failed: %s\n", opt.host, opt.port,
			strerror(errno));
		return 1;
	}
	fprintf(stderr, "bcast-floor: ready on %s:%d (fixed buffer %s)\n", opt.host,
		floor_port(g.listen_fd), g.fixed ? "on" : "off");
	loop(time(NULL) + opt.lifetime_s);
	fprintf(stderr,
		"bcast-floor: publishes %llu sends %llu bytes %llu slow_closed %llu errors %llu\n",
		(unsigned long long)g.publishes, (unsigned long long)g.sends,
		(unsigned long long)g.send_bytes, (unsigned long long)g.slow_closed,
		(unsigned long long)g.errors);
	return 0;
}
