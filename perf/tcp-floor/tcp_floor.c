/*
 * tcp-floor: the smallest io_uring TCP echo server we can write, as the floor every WebSocket
 * figure of perf/ is read against (what the kernel and loopback allow on this machine). No
 * WebSocket, no parsing: bytes in, the same bytes out, in order.
 *
 * One thread per --threads, each with its own ring, SO_REUSEPORT listener, multishot accept
 * into direct descriptors (so a process holds threads x RLIMIT_NOFILE sockets), multishot recv
 * into a provided-buffer ring, and a send straight from the received buffer, which returns to
 * the ring when the send completes. A connection's pending buffers are chained through a
 * per-buffer next array: a connection costs 8 bytes of user memory and no buffer while idle.
 *
 * Usage: tcp-floor [--host 127.0.0.1] [--port 9000] [--threads 1] [--bufs 256]
 *                  [--buf-size 4096] [--lifetime 3600]
 * Logs "tcp-floor: ready on HOST:PORT" on stderr when listening; exits on SIGINT/SIGTERM or
 * after --lifetime seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

#define NONE 0xffff
#define RING_ENTRIES 4096

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CLOSE };

struct conn {
	uint16_t head; /* first pending buffer id, NONE = empty */
	uint16_t tail;
	uint8_t sending; /* a send is in flight (head is in the kernel) */
	uint8_t recv_on; /* the multishot recv is armed */
	uint8_t closing;
	uint8_t open;
};

struct worker {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint16_t *next; /* per buffer: next pending buffer of the same connection */
	uint32_t *len;	/* per buffer: bytes received into it */
	struct conn *conns;
	uint32_t *rearm;
	uint32_t rearm_count;
	uint32_t conns_count;
	int listen_fd;
	pthread_t tid;
};

static struct {
	const char *host;
	int port;
	unsigned threads;
	unsigned bufs;
	unsigned buf_size;
	unsigned lifetime_s;
} opt = {"127.0.0.1", 9000, 1, 256, 4096, 3600};

static uint64_t ud(enum op op, uint32_t slot)
{
	return ((uint64_t)op << 32) | slot;
}

static struct io_uring_sqe *sqe_get(struct worker *w)
{
	return floor_sqe_get(&w->ring);
}

static void arm_accept(struct worker *w)
{
	floor_arm_accept(&w->ring, w->listen_fd, ud(OP_ACCEPT, 0));
}

static void arm_recv(struct worker *w, uint32_t slot)
{
	floor_arm_recv(&w->ring, slot, ud(OP_RECV, slot));
	w->conns[slot].recv_on = 1;
}

static void give_back(struct worker *w, uint16_t bid, int *returned)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * opt.buf_size, opt.buf_size, bid,
			      io_uring_buf_ring_mask(opt.bufs), (*returned)++);
}

static void send_head(struct worker *w, uint32_t slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe;

	if (c->sending || c->head == NONE)
		return;
	sqe = sqe_get(w);
	io_uring_prep_send(sqe, (int)slot, w->bufs + (size_t)c->head * opt.buf_size,
			   w->len[c->head], MSG_WAITALL | MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = ud(OP_SEND, slot);
	c->sending = 1;
}

static void maybe_close(struct worker *w, uint32_t slot, int *returned)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe;

	if (!c->closing || c->sending || c->recv_on || !c->open)
		return;
	while (c->head != NONE) {
		uint16_t b = c->head;

		c->head = w->next[b];
		give_back(w, b, returned);
	}
	sqe = sqe_get(w);
	io_uring_prep_close_direct(sqe, slot);
	sqe->user_data = ud(OP_CLOSE, slot);
	c->open = 0;
}

static void on_recv(struct worker *w, uint32_t slot, const struct io_uring_cqe *cqe, int *returned)
{
	struct conn *c = &w->conns[slot];

	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_on = 0;
	if (cqe->res > 0) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

		w->len[bid] = (uint32_t)cqe->res;
		w->next[bid] = NONE;
		if (c->head == NONE)
			c->head = bid;
		else
			w->next[c->tail] = bid;
		c->tail = bid;
		send_head(w, slot);
		if (!c->recv_on && !c->closing)
			w->rearm[w->rearm_count++] = slot;
	} else if (cqe->res == -ENOBUFS && !c->closing) {
		/* Every buffer is waiting to be sent back: retry once some return. */
		if (!c->recv_on)
			w->rearm[w->rearm_count++] = slot;
	} else {
		c->closing = 1;
	}
	maybe_close(w, slot, returned);
}

static void on_send(struct worker *w, uint32_t slot, int res, int *returned)
{
	struct conn *c = &w->conns[slot];
	uint16_t b = c->head;

	c->sending = 0;
	c->head = w->next[b];
	give_back(w, b, returned);
	if (res < 0)
		c->closing = 1;
	else
		send_head(w, slot);
	maybe_close(w, slot, returned);
}

static void on_accept(struct worker *w, const struct io_uring_cqe *cqe)
{
	if (cqe->res >= 0 && (uint32_t)cqe->res < w->conns_count) {
		uint32_t slot = (uint32_t)cqe->res;

		memset(&w->conns[slot], 0, sizeof(w->conns[slot]));
		w->conns[slot].head = NONE;
		w->conns[slot].open = 1;
		arm_recv(w, slot);
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept(w);
}

static void loop(struct worker *w, time_t end)
{
	while (!atomic_load(&floor_stop) && time(NULL) < end) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
		struct io_uring_cqe *cqe;
		unsigned head, count = 0;
		int returned = 0;

		for (uint32_t i = 0; i < w->rearm_count; i++) {
			struct conn *c = &w->conns[w->rearm[i]];

			if (c->open && !c->recv_on && !c->closing)
				arm_recv(w, w->rearm[i]);
		}
		w->rearm_count = 0;
		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe (&w->ring, head, cqe) {
			uint32_t slot = (uint32_t)cqe->user_data;

			switch (cqe->user_data >> 32) {
			case OP_ACCEPT: on_accept(w, cqe); break;
			case OP_RECV: on_recv(w, slot, cqe, &returned); break;
			case OP_SEND: on_send(w, slot, cqe->res, &returned); break;
			default: break;
			}
			if (++count == RING_ENTRIES)
				break;
		}
		io_uring_cq_advance(&w->ring, count);
		if (returned)
			io_uring_buf_ring_advance(w->br, returned);
	}
}

static int setup(struct worker *w)
{
	struct io_uring_params p = {0};
	size_t br_bytes = opt.bufs * sizeof(struct io_uring_buf);

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = RING_ENTRIES * 4;
	if (io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p))
		return -1;
	if (io_uring_register_files_sparse(&w->ring, w->conns_count))
		return -1;
	w->br = mmap(NULL, br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->bufs = malloc((size_t)opt.bufs * opt.buf_size);
	w->next = calloc(opt.bufs, sizeof(*w->next));
	w->len = calloc(opt.bufs, sizeof(*w->len));
	w->conns = calloc(w->conns_count, sizeof(*w->conns));
	w->rearm = calloc(w->conns_count, sizeof(*w->rearm));
	if (w->br == MAP_FAILED || !w->bufs || !w->next || !w->len || !w->conns || !w->rearm)
		return -1;
	if (floor_buf_ring(&w->ring, w->br, w->bufs, opt.bufs, opt.buf_size))
		return -1;
	arm_accept(w);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (setup(w)) {
		fprintf(stderr, "tcp-floor: ring setup failed: %s\n", strerror(errno));
		exit(1);
	}
	loop(w, time(NULL) + opt.lifetime_s);
	atomic_store(&floor_stop, 1);
	return NULL;
}

static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--help") || !v) {
			fprintf(stderr, "usage: tcp-floor [--host H] [--port P] [--threads N] "
					"[--bufs N (power of 2)] [--buf-size B] [--lifetime S]\n");
			return -1;
		}
		if (!strcmp(argv[i], "--host"))
			opt.host = v;
		else if (!strcmp(argv[i], "--port"))
			opt.port = atoi(v);
		else if (!strcmp(argv[i], "--threads"))
			opt.threads = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--bufs"))
			opt.bufs = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--buf-size"))
			opt.buf_size = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--lifetime"))
			opt.lifetime_s = (unsigned)atoi(v);
		else
			return -1;
	}
	if (opt.threads < 1 || opt.threads > 64 || opt.bufs < 8 || opt.bufs > 32768 ||
	    (opt.bufs & (opt.bufs - 1)) || opt.buf_size < 64)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct worker *ws;
	uint32_t slots;

	if (parse_args(argc, argv))
		return 2;
	slots = floor_start();
	ws = calloc(opt.threads, sizeof(*ws));
	for (unsigned i = 0; ws && i < opt.threads; i++) {
		ws[i].listen_fd = floor_listen(opt.host, opt.port, 1);
		ws[i].conns_count = slots;
		if (ws[i].listen_fd < 0) {
			fprintf(stderr, "tcp-floor: cannot listen on %s:%d: %s\n", opt.host,
				opt.port, strerror(errno));
			return 1;
		}
	}
	if (!ws)
		return 1;
	for (unsigned i = 0; i < opt.threads; i++)
		pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
	fprintf(stderr, "tcp-floor: ready on %s:%d\n", opt.host, opt.port);
	for (unsigned i = 0; i < opt.threads; i++)
		pthread_join(ws[i].tid, NULL);
	return 0;
}
