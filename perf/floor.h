/*
 * What perf/tcp-floor and perf/bcast-floor share: the listening socket and the io_uring
 * helpers both floors arm their connections with. Header-only (each floor is one file built on
 * its own); calling thread: the floor's ring owner.
 */
#ifndef PERF_FLOOR_H
#define PERF_FLOOR_H

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* A free SQE, submitting what is queued first when the SQ is full. */
static inline struct io_uring_sqe *floor_sqe_get(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

/* Multishot accept of listen_fd into direct descriptors. */
static inline void floor_arm_accept(struct io_uring *ring, int listen_fd, uint64_t user_data)
{
	struct io_uring_sqe *sqe = floor_sqe_get(ring);

	io_uring_prep_multishot_accept_direct(sqe, listen_fd, NULL, NULL, 0);
	sqe->user_data = user_data;
}

/* Multishot recv on direct descriptor slot into provided-buffer group 0. */
static inline void floor_arm_recv(struct io_uring *ring, uint32_t slot, uint64_t user_data)
{
	struct io_uring_sqe *sqe = floor_sqe_get(ring);

	io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	sqe->user_data = user_data;
}

/* A TCP listener on host:port (TCP_NODELAY inherited by accepted sockets); -1 on failure. */
static inline int floor_listen(const char *host, int port, int reuseport)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 65535)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The port listen_fd is bound to (what --port 0 picked); -1 if unknown. */
static inline int floor_port(int listen_fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(listen_fd, (struct sockaddr *)&a, &len))
		return -1;
	return ntohs(a.sin_port);
}

/* Set by SIGINT/SIGTERM: the floor's loop ends. */
static atomic_int floor_stop;

static inline void floor_on_signal(int sig)
{
	(void)sig;
	atomic_store(&floor_stop, 1);
}

/* Signals, and RLIMIT_NOFILE raised to its hard limit; returns the direct-descriptor slots
 * one ring may hold (its fixed-file table is capped at RLIMIT_NOFILE). */
static inline uint32_t floor_start(void)
{
	struct rlimit rl;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, floor_on_signal);
	signal(SIGTERM, floor_on_signal);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	return (uint32_t)(rl.rlim_cur < 65000 ? rl.rlim_cur : 65000);
}

/* Registers br (count entries, a power of 2) as provided-buffer group 0 holding count buffers
 * of size bytes at bufs; 0 or -errno. */
static inline int floor_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
				 uint8_t *bufs, unsigned count, unsigned size)
{
	struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = count};
	int ret = io_uring_register_buf_ring(ring, &reg, 0);

	if (ret)
		return ret;
	io_uring_buf_ring_init(br);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(br, bufs + (size_t)i * size, size, (unsigned short)i,
				      io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(br, (int)count);
	return 0;
}

#endif
