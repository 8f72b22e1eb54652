/*
 * The worker loop of ringcast-bench: one io_uring ring per thread with its connection slots,
 * its provided-buffer ring and the completion dispatch.
 *
 * Opening a connection is one linked chain submitted with everything else of the loop turn:
 * socket (direct, into the slot's fixed-file entry) -> setsockopt TCP_NODELAY and
 * IP_BIND_ADDRESS_NO_PORT (URING_CMD) -> bind to the source address -> connect -> send the
 * upgrade request. Only connect, send, recv and close post completions on success, so a
 * connection costs two or three CQEs to open. Received bytes come from one multishot recv per
 * connection into the provided-buffer ring: an idle connection holds no receive buffer. Closing
 * is shutdown hard-linked to close; a slot is reused only when no completion is outstanding.
 * Without IORING_OP_BIND (kernel < 6.11) sockets are made with syscalls and installed in the
 * table; with --no-direct they stay process fds. Everything here runs on the owning worker.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "base/rc_assert.h"

/* Opcodes newer than liburing 2.3's header; probed at startup. */
#define OP_BIND_NR 56	    /* IORING_OP_BIND, Linux 6.11 */
#define CMD_SETSOCKOPT_NR 3 /* SOCKET_URING_OP_SETSOCKOPT (6.7) */
#define RING_ENTRIES 4096
#define CHAIN_SQES 6 /* socket, 2 x setsockopt, bind, connect, send */

enum op {
	OP_SOCKET = 1,
	OP_SOCKOPT,
	OP_BIND,
	OP_CONNECT,
	OP_SEND,
	OP_RECV,
	OP_SHUTDOWN,
	OP_CLOSE,
};

static const int one = 1; /* setsockopt value; read by the kernel at issue time */

uint64_t rcb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ud_pack(enum op op, const struct rcb_conn *c, uint32_t slot)
{
	return ((uint64_t)op << 56) | ((uint64_t)(c->gen & 0xffffff) << 32) | slot;
}

static uint32_t slot_of(const struct rcb_thread *t, const struct rcb_conn *c)
{
	RC_DASSERT(c >= t->conns && c < t->conns + t->conns_count);
	return (uint32_t)(c - t->conns);
}

static bool use_direct(const struct rcb_thread *t)
{
	return t->run->use_direct;
}

/* An SQE, submitting first when the SQ has fewer than need free entries (links must not be
 * cut by a submit in the middle of a chain). */
static struct io_uring_sqe *sqe_get(struct rcb_thread *t, unsigned need)
{
	struct io_uring_sqe *sqe;

	if (io_uring_sq_space_left(&t->ring) < need)
		io_uring_submit(&t->ring);
	sqe = io_uring_get_sqe(&t->ring);
	RC_ASSERT(sqe);
	return sqe;
}

static void sqe_on_conn(struct rcb_thread *t, struct io_uring_sqe *sqe, struct rcb_conn *c)
{
	sqe->fd = c->fd;
	if (use_direct(t))
		sqe->flags |= IOSQE_FIXED_FILE;
}

void rcb_conn_set_state(struct rcb_thread *t, struct rcb_conn *c, enum rcb_conn_state s)
{
	bool was_pending = c->state != RCB_CS_IDLE && c->state != RCB_CS_OPEN;
	bool is_pending = s != RCB_CS_IDLE && s != RCB_CS_OPEN;

	if (c->state == RCB_CS_OPEN)
		t->open_count--;
	if (s == RCB_CS_OPEN)
		t->open_count++;
	if (c->state == RCB_CS_IDLE)
		t->alive_count++;
	if (s == RCB_CS_IDLE)
		t->alive_count--;
	t->pending -= was_pending;
	t->pending += is_pending;
	c->state = (uint8_t)s;
	RC_DASSERT(t->pending <= t->conns_count);
}

struct rcb_conn *rcb_conn_alloc(struct rcb_thread *t, enum rcb_role role)
{
	struct rcb_conn *c;

	if (t->free_count == 0)
		return NULL;
	c = &t->conns[t->free_slots[--t->free_count]];
	RC_ASSERT(c->state == RCB_CS_IDLE);
	RC_ASSERT(c->ops == 0);
	c->role = (uint8_t)role;
	c->attempt = 0;
	c->life = 0;
	return c;
}

void rcb_conn_free(struct rcb_thread *t, struct rcb_conn *c)
{
	RC_ASSERT(c->ops == 0);
	RC_ASSERT(t->free_count < t->conns_count);
	rcb_conn_free_buffers(c);
	rcb_tls_free(c);
	c->flags = 0;
	rcb_conn_set_state(t, c, RCB_CS_IDLE);
	t->free_slots[t->free_count++] = slot_of(t, c);
}

void rcb_conn_mark_dirty(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->flags & RCB_CF_DIRTY)
		return;
	RC_ASSERT(t->dirty_count < t->conns_count);
	c->flags |= RCB_CF_DIRTY;
	t->dirty[t->dirty_count++] = slot_of(t, c);
}

static void mark_rearm(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->flags & RCB_CF_REARM)
		return;
	RC_ASSERT(t->rearm_count < t->conns_count);
	c->flags |= RCB_CF_REARM;
	t->rearm[t->rearm_count++] = slot_of(t, c);
}

/* Syscall path: a socket with options and source address set, as a plain fd, or -errno. */
static int socket_by_syscalls(const struct rcb_thread *t, const struct rcb_conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int err;

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (t->run->cfg->src_count) {
		struct sockaddr_in *a = &t->run->src[c->id % t->run->cfg->src_count];

		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0) {
			err = -errno;
			close(fd);
			return err;
		}
	}
	return fd;
}

static void prep_setsockopt(struct rcb_thread *t, struct rcb_conn *c, int level, int name)
{
	struct io_uring_sqe *sqe = sqe_get(t, 1);

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe_on_conn(t, sqe, c);
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	sqe->cmd_op = CMD_SETSOCKOPT_NR;
	/* level and optname share the addr word; optlen sits where file_index does. */
	sqe->addr = (uint64_t)(uint32_t)level | ((uint64_t)(uint32_t)name << 32);
	sqe->file_index = sizeof(one);
	sqe->addr3 = (uint64_t)(uintptr_t)&one;
	sqe->user_data = ud_pack(OP_SOCKOPT, c, slot_of(t, c));
}

/* In-ring socket creation: socket direct, options, bind; all linked, silent on success. */
static void chain_socket(struct rcb_thread *t, struct rcb_conn *c)
{
	uint32_t slot = slot_of(t, c);
	struct io_uring_sqe *sqe = sqe_get(t, CHAIN_SQES);

	io_uring_prep_socket_direct(sqe, AF_INET, SOCK_STREAM, 0, slot, 0);
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	sqe->user_data = ud_pack(OP_SOCKET, c, slot);
	c->fd = (int32_t)slot;
	prep_setsockopt(t, c, IPPROTO_TCP, TCP_NODELAY);
	if (t->run->cfg->src_count) {
		prep_setsockopt(t, c, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
		sqe = sqe_get(t, 1);
		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = OP_BIND_NR;
		sqe_on_conn(t, sqe, c);
		sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
		sqe->addr = (uint64_t)(uintptr_t)&t->run->src[c->id % t->run->cfg->src_count];
		sqe->addr2 = sizeof(struct sockaddr_in);
		sqe->user_data = ud_pack(OP_BIND, c, slot);
	}
}

static void maybe_release(struct rcb_thread *t, struct rcb_conn *c);

/* Sends tx_out whole (MSG_WAITALL: the kernel retries short sends); one send in flight per
 * connection keeps the bytes in order. */
static void prep_send_out(struct rcb_thread *t, struct rcb_conn *c)
{
	struct io_uring_sqe *sqe = sqe_get(t, 1);

	RC_ASSERT(!(c->flags & RCB_CF_SENDING));
	RC_ASSERT(c->tx_out_len > 0);
	io_uring_prep_send(sqe, c->fd, c->tx_out, c->tx_out_len, MSG_NOSIGNAL | MSG_WAITALL);
	sqe_on_conn(t, sqe, c);
	sqe->user_data = ud_pack(OP_SEND, c, slot_of(t, c));
	c->flags |= RCB_CF_SENDING;
	c->ops++;
}

static void fail_now(struct rcb_thread *t, struct rcb_conn *c, int err)
{
	c->flags &= (uint16_t)~RCB_CF_HAS_SOCKET;
	rcb_conn_lose(t, c, err);
	maybe_release(t, c);
}

void rcb_conn_start(struct rcb_thread *t, struct rcb_conn *c)
{
	const struct rcb_config *cfg = t->run->cfg;
	struct io_uring_sqe *sqe;
	bool ws = !cfg->raw && !(c->role == RCB_ROLE_PUBLISHER && cfg->pub_via == RCB_PUB_HTTP);

	RC_ASSERT(c->state == RCB_CS_IDLE || c->state == RCB_CS_BACKOFF);
	RC_ASSERT(c->ops == 0);
	c->gen++;
	c->t0_ns = t->now_ns;
	c->err = 0;
	c->flags = RCB_CF_HAS_SOCKET | (c->flags & RCB_CF_RETRY);
	c->tx_seq = c->rx_seq = c->frame_left = 0;
	c->last_seq = c->next_index = 0;
	c->rx_off = 0;
	c->msg_op = c->ctl_op = c->hdr_len = 0;
	rcb_conn_set_state(t, c, RCB_CS_CONNECTING);
	t->stats.counters[RCB_C_CONNECT_STARTED]++;
	if (cfg->tls)
		rcb_tls_start(c); /* the ClientHello goes where the request would */
	else if (ws)
		rcb_ws_build_request(t, c);
	if (use_direct(t) && t->run->ring_bind) {
		chain_socket(t, c);
	} else {
		int fd = socket_by_syscalls(t, c);

		if (fd < 0) {
			fail_now(t, c, -fd);
			return;
		}
		c->fd = fd;
		if (use_direct(t)) {
			int slot = (int)slot_of(t, c);
			int ret = io_uring_register_files_update(&t->ring, (unsigned)slot, &fd, 1);

			close(fd);
			if (ret < 0) {
				fail_now(t, c, -ret);
				return;
			}
			c->fd = slot;
		}
	}
	sqe = sqe_get(t, 2);
	/* A publisher may be sent to another port (--pub-port): another node of a cluster. */
	const struct sockaddr_in *dst = &cfg->dst;
	if (c->role == RCB_ROLE_PUBLISHER && cfg->pub_dst.sin_port) {
		dst = &cfg->pub_dst;
		RC_DASSERT(dst->sin_family == AF_INET);
	}
	io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)dst, sizeof(*dst));
	sqe_on_conn(t, sqe, c);
	sqe->user_data = ud_pack(OP_CONNECT, c, slot_of(t, c));
	c->ops++;
	if (!ws && !cfg->tls)
		return;
	sqe->flags |= IOSQE_IO_LINK;
	prep_send_out(t, c);
}

void rcb_conn_shutdown(struct rcb_thread *t, struct rcb_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->state == RCB_CS_SHUTDOWN || c->state == RCB_CS_IDLE)
		return;
	rcb_conn_set_state(t, c, RCB_CS_SHUTDOWN);
	if (!(c->flags & RCB_CF_HAS_SOCKET) || c->fd < 0)
		return;
	/* Shutdown ends the multishot recv and any pending connect; close drops the table's
	 * reference. Hard-linked: close runs even if shutdown fails (never connected). */
	sqe = sqe_get(t, 2);
	io_uring_prep_shutdown(sqe, c->fd, SHUT_RDWR);
	sqe_on_conn(t, sqe, c);
	sqe->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
	sqe->user_data = ud_pack(OP_SHUTDOWN, c, slot_of(t, c));
	sqe = sqe_get(t, 1);
	if (use_direct(t))
		io_uring_prep_close_direct(sqe, (unsigned)c->fd);
	else
		io_uring_prep_close(sqe, c->fd);
	sqe->user_data = ud_pack(OP_CLOSE, c, slot_of(t, c));
	c->ops++;
	c->flags &= (uint16_t)~RCB_CF_HAS_SOCKET;
}

/* Frees the slot once nothing of it is in the kernel any more. */
static void maybe_release(struct rcb_thread *t, struct rcb_conn *c)
{
	if (c->state != RCB_CS_SHUTDOWN || c->ops)
		return;
	RC_ASSERT(!(c->flags & (RCB_CF_SENDING | RCB_CF_RECV_ARMED)));
	c->fd = -1;
	if (rcb_traffic_on_released(t, c))
		return;
	rcb_conn_free(t, c);
}

static void arm_recv(struct rcb_thread *t, struct rcb_conn *c)
{
	struct io_uring_sqe *sqe = sqe_get(t, 1);

	RC_ASSERT(!(c->flags & RCB_CF_RECV_ARMED));
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe_on_conn(t, sqe, c);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	sqe->user_data = ud_pack(OP_RECV, c, slot_of(t, c));
	c->flags |= RCB_CF_RECV_ARMED;
	c->ops++;
}

static bool conn_active(const struct rcb_conn *c)
{
	return c->state == RCB_CS_HANDSHAKE || c->state == RCB_CS_OPEN ||
	       c->state == RCB_CS_CLOSING;
}

void rcb_conn_note_loss(struct rcb_thread *t, struct rcb_conn *c, int err)
{
	RC_ASSERT(err > 0);
	if ((c->flags & (RCB_CF_FAILED | RCB_CF_WE_CLOSE)) || c->state == RCB_CS_SHUTDOWN)
		return;
	c->flags |= RCB_CF_FAILED;
	if (!c->err)
		c->err = (int16_t)err;
	rcb_traffic_on_lost(t, c, c->err);
}

void rcb_conn_lose(struct rcb_thread *t, struct rcb_conn *c, int err)
{
	rcb_conn_note_loss(t, c, err);
	rcb_conn_shutdown(t, c);
}

static void connect_complete(struct rcb_thread *t, struct rcb_conn *c, int res)
{
	const struct rcb_config *cfg = t->run->cfg;

	RC_ASSERT(c->ops > 0);
	c->ops--;
	if (c->state != RCB_CS_CONNECTING) {
		maybe_release(t, c);
		return;
	}
	if (res < 0) {
		/* A failed socket/bind earlier in the chain cancels connect: keep its errno. */
		if (!c->err)
			c->err = (int16_t)-res;
		rcb_conn_lose(t, c, c->err);
		return;
	}
	c->flags |= RCB_CF_CONNECTED;
	t->stats.counters[RCB_C_CONNECTED]++;
	rcb_hist_record(&t->stats.connect, t->now_ns - c->t0_ns);
	arm_recv(t, c);
	if (cfg->raw || (c->role == RCB_ROLE_PUBLISHER && cfg->pub_via == RCB_PUB_HTTP)) {
		/* No upgrade: open as soon as TCP is, and "handshake" is the TCP connect. */
		rcb_hist_record(&t->stats.handshake, t->now_ns - c->t0_ns);
		rcb_conn_set_state(t, c, RCB_CS_OPEN);
		rcb_traffic_on_open(t, c);
	} else {
		rcb_conn_set_state(t, c, RCB_CS_HANDSHAKE);
	}
}

/* Hands tx_pend to the kernel when nothing else is in flight. */
static void send_pending(struct rcb_thread *t, struct rcb_conn *c)
{
	uint8_t *b;
	uint32_t cap;

	if ((c->flags & RCB_CF_SENDING) || !conn_active(c))
		return;
	if (c->tls) {
		if (rcb_tls_seal(c))
			prep_send_out(t, c);
		return;
	}
	if (c->tx_pend_len == 0)
		return;
	b = c->tx_out;
	cap = c->tx_out_cap;
	c->tx_out = c->tx_pend;
	c->tx_out_cap = c->tx_pend_cap;
	c->tx_out_len = c->tx_pend_len;
	c->tx_pend = b;
	c->tx_pend_cap = cap;
	c->tx_pend_len = 0;
	prep_send_out(t, c);
}

static void send_complete(struct rcb_thread *t, struct rcb_conn *c, int res)
{
	RC_ASSERT(c->ops > 0);
	RC_ASSERT(c->flags & RCB_CF_SENDING);
	c->ops--;
	c->flags &= (uint16_t)~RCB_CF_SENDING;
	if (res < 0) {
		if (res != -ECANCELED && conn_active(c))
			rcb_conn_lose(t, c, -res);
		maybe_release(t, c);
		return;
	}
	t->stats.counters[RCB_C_BYTES_SENT] += (uint64_t)res;
	/* MSG_WAITALL retries short sends in the kernel; a short count means the peer went
	 * away, which the receive side reports. */
	c->tx_out_len = 0;
	if ((c->flags & RCB_CF_PEER_CLOSED) && c->tx_pend_len == 0 && !rcb_tls_pending(c)) {
		rcb_conn_shutdown(t, c);
		maybe_release(t, c);
		return;
	}
	if (c->tx_pend_len || rcb_tls_pending(c))
		send_pending(t, c);
	else if (!rcb_traffic_keeps_tx(t, c))
		rcb_conn_trim_buffers(c);
	maybe_release(t, c);
}

static void recv_complete(struct rcb_thread *t, struct rcb_conn *c, const struct io_uring_cqe *cqe)
{
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		RC_ASSERT(c->ops > 0);
		c->ops--;
		c->flags &= (uint16_t)~RCB_CF_RECV_ARMED;
	}
	if (res > 0) {
		uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *data = t->bufs + (size_t)bid * t->run->cfg->recv_buf_size;

		RC_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
		t->stats.counters[RCB_C_BYTES_RECV] += (uint64_t)res;
		if (conn_active(c) && c->tls)
			rcb_tls_rx(t, c, data, (size_t)res);
		else if (conn_active(c))
			rcb_ws_rx(t, c, data, (size_t)res);
		io_uring_buf_ring_add(t->br, data, t->run->cfg->recv_buf_size, (unsigned short)bid,
				      io_uring_buf_ring_mask(t->run->cfg->recv_bufs),
				      (int)t->br_returned++);
		if (!(cqe->flags & IORING_CQE_F_MORE) && conn_active(c))
			mark_rearm(t, c);
	} else if (res == -ENOBUFS) {
		t->stats.counters[RCB_C_ENOBUFS]++;
		if (conn_active(c))
			mark_rearm(t, c);
	} else if (conn_active(c)) {
		/* EOF after our close frame is the normal end; anything else is a loss. */
		if (res == 0 && c->state == RCB_CS_CLOSING)
			rcb_conn_shutdown(t, c);
		else
			rcb_conn_lose(t, c, res == 0 ? ECONNRESET : -res);
	}
	maybe_release(t, c);
}

static void dispatch(struct rcb_thread *t, const struct io_uring_cqe *cqe)
{
	enum op op = (enum op)(cqe->user_data >> 56);
	uint32_t gen = (uint32_t)(cqe->user_data >> 32) & 0xffffff;
	uint32_t slot = (uint32_t)cqe->user_data;
	struct rcb_conn *c;

	RC_ASSERT(slot < t->conns_count);
	c = &t->conns[slot];
	if ((c->gen & 0xffffff) != gen) {
		t->stats.counters[RCB_C_STALE_CQES]++;
		return;
	}
	switch (op) {
	case OP_SOCKET:
		if (cqe->res < 0)
			c->flags &= (uint16_t)~RCB_CF_HAS_SOCKET;
		/* fall through */
	case OP_SOCKOPT:
	case OP_BIND:
		/* Posted only on failure; the first real errno explains the cancelled rest. */
		if (cqe->res < 0 && cqe->res != -ECANCELED && !c->err)
			c->err = (int16_t)-cqe->res;
		break;
	case OP_CONNECT: connect_complete(t, c, cqe->res); break;
	case OP_SEND: send_complete(t, c, cqe->res); break;
	case OP_RECV: recv_complete(t, c, cqe); break;
	case OP_SHUTDOWN: break;
	case OP_CLOSE:
		RC_ASSERT(c->ops > 0);
		c->ops--;
		maybe_release(t, c);
		break;
	default: RC_ASSERT(!"unknown op in user_data");
	}
}

/* Sends queued bytes and re-arms receives; the SQEs go out with the next wait. */
static void flush(struct rcb_thread *t)
{
	for (uint32_t i = 0; i < t->rearm_count; i++) {
		struct rcb_conn *c = &t->conns[t->rearm[i]];

		c->flags &= (uint16_t)~RCB_CF_REARM;
		if (conn_active(c) && !(c->flags & RCB_CF_RECV_ARMED))
			arm_recv(t, c);
	}
	t->rearm_count = 0;
	for (uint32_t i = 0; i < t->dirty_count; i++) {
		struct rcb_conn *c = &t->conns[t->dirty[i]];

		c->flags &= (uint16_t)~RCB_CF_DIRTY;
		send_pending(t, c);
	}
	t->dirty_count = 0;
}

static int setup_buf_ring(struct rcb_thread *t)
{
	const struct rcb_config *cfg = t->run->cfg;
	struct io_uring_buf_reg reg = {0};
	int ret;

	t->br_bytes = cfg->recv_bufs * sizeof(struct io_uring_buf);
	t->br = mmap(NULL, t->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (t->br == MAP_FAILED) {
		t->br = NULL;
		return -ENOMEM;
	}
	t->bufs = malloc((size_t)cfg->recv_bufs * cfg->recv_buf_size);
	if (!t->bufs)
		return -ENOMEM;
	reg.ring_addr = (uint64_t)(uintptr_t)t->br;
	reg.ring_entries = cfg->recv_bufs;
	reg.bgid = 0;
	ret = io_uring_register_buf_ring(&t->ring, &reg, 0);
	if (ret)
		return ret;
	io_uring_buf_ring_init(t->br);
	for (uint32_t i = 0; i < cfg->recv_bufs; i++)
		io_uring_buf_ring_add(t->br, t->bufs + (size_t)i * cfg->recv_buf_size,
				      cfg->recv_buf_size, (unsigned short)i,
				      io_uring_buf_ring_mask(cfg->recv_bufs), (int)i);
	io_uring_buf_ring_advance(t->br, (int)cfg->recv_bufs);
	return 0;
}

static int setup(struct rcb_thread *t)
{
	struct io_uring_params p = {0};
	int ret;

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = RING_ENTRIES * 8;
	ret = io_uring_queue_init_params(RING_ENTRIES, &t->ring, &p);
	if (ret)
		return ret;
	io_uring_register_ring_fd(&t->ring);
	if (use_direct(t)) {
		ret = io_uring_register_files_sparse(&t->ring, t->conns_count);
		if (ret)
			return ret;
	}
	return setup_buf_ring(t);
}

/* One loop turn's submit and wait: until a completion, or until timed work is due (short
 * while rates drive work, else long enough to stay cheap). */
static void wait_and_reap(struct rcb_thread *t)
{
	uint64_t wait_ns = rcb_traffic_wait_ns(t);
	struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / 1000000000ull),
				       .tv_nsec = (long long)(wait_ns % 1000000000ull)};
	struct io_uring_cqe *cqe;
	unsigned head, count = 0;

	io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, &ts, NULL);
	t->now_ns = rcb_now_ns();
	t->br_returned = 0;
	io_uring_for_each_cqe (&t->ring, head, cqe) {
		dispatch(t, cqe);
		if (++count == RING_ENTRIES * 8)
			break;
	}
	io_uring_cq_advance(&t->ring, count);
	if (t->br_returned)
		io_uring_buf_ring_advance(t->br, (int)t->br_returned);
}

/* Progress for the main thread's phase decisions: plain counters copied into relaxed
 * atomics once per loop turn (the main thread only compares sums against targets). */
static void publish_progress(struct rcb_thread *t)
{
	atomic_store_explicit(&t->open_now, t->open_count, memory_order_relaxed);
	atomic_store_explicit(&t->alive, t->alive_count, memory_order_relaxed);
	atomic_store_explicit(&t->settled, t->settled_local, memory_order_relaxed);
	atomic_store_explicit(&t->subscribed, t->subscribed_local, memory_order_relaxed);
	atomic_store_explicit(&t->answered, t->answered_local, memory_order_relaxed);
	atomic_store_explicit(&t->outstanding, t->outstanding_local, memory_order_relaxed);
	atomic_store_explicit(&t->received, t->received_local, memory_order_relaxed);
}

void *rcb_loop_main(void *arg)
{
	struct rcb_thread *t = arg;
	uint64_t deadline_ns;
	int ret = setup(t);

	atomic_store_explicit(&t->ready, ret ? ret : 1, memory_order_release);
	if (ret)
		return NULL;
	deadline_ns = t->run->deadline_ns;
	t->now_ns = rcb_now_ns();
	/* Bounded by the run's deadline; normally ends when the main thread says DONE and
	 * every slot is idle again. */
	while (t->now_ns < deadline_ns) {
		if (rcb_phase(t) == RCB_PH_DONE && t->alive_count == 0)
			break;
		rcb_traffic_tick(t);
		flush(t);
		wait_and_reap(t);
		publish_progress(t);
	}
	publish_progress(t);
	atomic_store_explicit(&t->finished, 1, memory_order_release);
	return NULL;
}

void rcb_loop_teardown(struct rcb_thread *t)
{
	if (atomic_load_explicit(&t->ready, memory_order_acquire) == 1)
		io_uring_queue_exit(&t->ring);
	if (t->br)
		munmap(t->br, t->br_bytes);
	t->br = NULL;
	free(t->bufs);
	t->bufs = NULL;
}

int rcb_loop_probe(struct rcb_run *run)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	int ret = io_uring_queue_init(8, &ring, 0);

	if (ret) {
		fprintf(stderr, "ringcast-bench: io_uring unavailable (%s); needs Linux 6.1+\n",
			strerror(-ret));
		return ret;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (!probe || !io_uring_opcode_supported(probe, IORING_OP_SOCKET) ||
	    !io_uring_opcode_supported(probe, IORING_OP_SEND)) {
		fprintf(stderr, "ringcast-bench: io_uring lacks IORING_OP_SOCKET; needs Linux "
				"5.19+ (6.1+ for multishot recv with buffer rings)\n");
		io_uring_free_probe(probe);
		io_uring_queue_exit(&ring);
		return -EOPNOTSUPP;
	}
	run->ring_bind = io_uring_opcode_supported(probe, OP_BIND_NR) &&
			 io_uring_opcode_supported(probe, IORING_OP_URING_CMD);
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return 0;
}
