/*
 * The runtime on real io_uring for the shards/ unit tests (sendq_test.c, conn_test.c,
 * pubsub_rt_test.c): an application built with the public API, run by rc_app_run() on a
 * thread of the test, listening on a free loopback port, and a small blocking WebSocket
 * client (the upgrade, masked frames out, whole frames in). A kernel without io_uring skips
 * the test. Endpoint callbacks run on the shard threads; they may reach the runtime's
 * internals through c->shard (the tests include shards/ headers). Header only.
 */
#ifndef RC_RT_HARNESS_H
#define RC_RT_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ringcast/ringcast.h>

#include "../../shards/runtime.h"

struct rt {
	struct rc_config *cfg;
	struct rc_app *app;
	pthread_t runner;
	int run_rc;
};

static void rt_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/*
 * Creates rt->app on 127.0.0.1, a free port, from NULL-terminated key/value pairs over the
 * defaults (log_level error). Skips the test when the kernel lacks io_uring.
 */
static void rt_create(struct rt *rt, const char *const *kv)
{
	char err[256] = "";
	memset(rt, 0, sizeof(*rt));
	rt->cfg = rc_config_new();
	cr_assert(rt->cfg != NULL);
	cr_assert(eq(int, rc_config_set_key(rt->cfg, "address", "127.0.0.1", err, sizeof(err)), 0));
	cr_assert(eq(int, rc_config_set_key(rt->cfg, "port", "0", err, sizeof(err)), 0));
	cr_assert(eq(int, rc_config_set_key(rt->cfg, "log_level", "error", err, sizeof(err)), 0));
	for (size_t i = 0; kv && kv[i]; i += 2) {
		int rc = rc_config_set_key(rt->cfg, kv[i], kv[i + 1], err, sizeof(err));
		cr_assert(eq(int, rc, 0), "%s", err);
	}
	rt->app = rc_app_create(rt->cfg, err, sizeof(err));
	if (!rt->app && strstr(err, "io_uring"))
		cr_skip_test("needs io_uring: %s", err);
	cr_assert(rt->app != NULL, "rc_app_create: %s", err);
}

static void *rt_run(void *arg)
{
	struct rt *rt = arg;
	rt->run_rc = rc_app_run(rt->app, false);
	return NULL;
}

/* Runs the application on its own thread and waits until every shard is set up. */
static void rt_start(struct rt *rt)
{
	cr_assert(eq(int, pthread_create(&rt->runner, NULL, rt_run, rt), 0));
	/* Pairs with the shards' release increments: app->shards and the port are set. */
	for (int i = 0; i < 10000; i++) {
		if (atomic_load_explicit(&rt->app->shards_ready, memory_order_acquire) ==
		    rc_app_shards(rt->app))
			return;
		cr_assert(eq(int, atomic_load(&rt->app->shards_exited), 0), "a shard failed");
		rt_sleep_ms(1);
	}
	cr_fatal("the shards did not start");
}

/* Drains and stops the application; rc_app_run must have returned 0. */
static void rt_stop(struct rt *rt)
{
	rc_app_stop(rt->app);
	pthread_join(rt->runner, NULL);
	cr_assert(eq(int, rt->run_rc, 0));
	rc_app_destroy(rt->app);
	rc_config_delete(rt->cfg);
}

/* A TCP connection to the application; rcvbuf > 0 sets SO_RCVBUF before connecting. */
static int rt_connect(struct rt *rt, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct timeval tv = {20, 0}; /* a hang fails the test instead of blocking it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	a.sin_port = htons((uint16_t)rc_app_port(rt->app));
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	cr_assert(eq(int, connect(fd, (struct sockaddr *)&a, sizeof(a)), 0));
	return fd;
}

static void rt_write(int fd, const void *p, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const uint8_t *)p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		cr_assert(w > 0, "write: %s", strerror(errno));
		done += (size_t)w;
	}
}

/* Reads exactly n bytes (a signal interrupting the read is not an error). */
static void rt_read_full(int fd, void *p, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(fd, (uint8_t *)p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		cr_assert(r > 0, "read: %zd (%s) after %zu of %zu bytes", r, strerror(errno), got,
			  n);
		got += (size_t)r;
	}
}

/* True once the server closed the connection (read returns 0). */
static bool rt_eof(int fd)
{
	uint8_t b;
	ssize_t r;
	while ((r = read(fd, &b, 1)) < 0 && errno == EINTR)
		;
	return r == 0;
}

/* Opens a WebSocket connection to path; rcvbuf as in rt_connect. */
static int rt_ws_open(struct rt *rt, const char *path, int rcvbuf)
{
	static const char want[] = "HTTP/1.1 101 ";
	char req[256], resp[1024];
	size_t n = 0;
	int fd = rt_connect(rt, rcvbuf);
	int len = snprintf(req, sizeof(req),
			   "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade"
			   "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			   "Sec-WebSocket-Version: 13\r\n\r\n",
			   path);
	rt_write(fd, req, (size_t)len);
	/* Byte by byte up to the blank line: nothing after the 101 may be swallowed. */
	while (n < 4 || memcmp(resp + n - 4, "\r\n\r\n", 4) != 0) {
		cr_assert(n < sizeof(resp));
		rt_read_full(fd, resp + n, 1);
		n++;
	}
	cr_assert(eq(int, memcmp(resp, want, sizeof(want) - 1), 0), "%.*s", (int)n, resp);
	return fd;
}

/* Sends one masked, final frame. */
static void rt_send(int fd, uint8_t opcode, const void *p, size_t n)
{
	static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	uint8_t hdr[14];
	size_t h = 2;
	hdr[0] = (uint8_t)(0x80 | opcode);
	if (n < 126) {
		hdr[1] = (uint8_t)(0x80 | n);
	} else {
		cr_assert(n <= 0xffff);
		hdr[1] = 0x80 | 126;
		hdr[2] = (uint8_t)(n >> 8);
		hdr[3] = (uint8_t)n;
		h = 4;
	}
	memcpy(hdr + h, mask, 4);
	rt_write(fd, hdr, h + 4);
	uint8_t *m = malloc(n + 1);
	cr_assert(m != NULL);
	for (size_t i = 0; i < n; i++)
		m[i] = ((const uint8_t *)p)[i] ^ mask[i % 4];
	rt_write(fd, m, n);
	free(m);
}

static void rt_send_text(int fd, const char *text)
{
	rt_send(fd, 0x1, text, strlen(text));
}

/* Reads one server frame's header: its opcode and payload length (server frames are final
 * and unmasked here). */
static uint64_t rt_recv_header(int fd, uint8_t *opcode)
{
	uint8_t h[8];
	rt_read_full(fd, h, 2);
	cr_assert(eq(u8, h[0] & 0xf0, 0x80), "a final frame without RSV bits");
	cr_assert(eq(u8, h[1] & 0x80, 0), "server frames are unmasked");
	*opcode = h[0] & 0x0f;
	uint64_t len = h[1] & 0x7f;
	int ext = len == 126 ? 2 : len == 127 ? 8 : 0;
	if (ext) {
		rt_read_full(fd, h, (size_t)ext);
		len = 0;
		for (int i = 0; i < ext; i++)
			len = len << 8 | h[i];
	}
	return len;
}

/* Reads one whole text frame into buf as a NUL-terminated string. */
static const char *rt_recv_text(int fd, char *buf, size_t cap)
{
	uint8_t op;
	uint64_t len = rt_recv_header(fd, &op);
	cr_assert(eq(u8, op, 0x1), "a text frame");
	cr_assert(len < cap, "frame of %llu bytes", (unsigned long long)len);
	rt_read_full(fd, buf, (size_t)len);
	buf[len] = '\0';
	return buf;
}

/* The close handshake from the client side, then the server's EOF: once this returns, the
 * server has terminated the connection (its subscriptions and queue are gone). */
static void rt_ws_close(int fd)
{
	static const uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
	uint8_t op, payload[125];
	rt_send(fd, 0x8, code, sizeof(code));
	uint64_t len = rt_recv_header(fd, &op);
	while (op != 0x8) { /* what was still queued before the close reply */
		cr_assert(len <= sizeof(payload) || op == 0x1 || op == 0x2);
		for (uint64_t left = len; left > 0;) {
			size_t take = left < sizeof(payload) ? (size_t)left : sizeof(payload);
			rt_read_full(fd, payload, take);
			left -= take;
		}
		len = rt_recv_header(fd, &op);
	}
	cr_assert(len <= sizeof(payload));
	rt_read_full(fd, payload, (size_t)len);
	cr_assert(rt_eof(fd), "the server closes after the close handshake");
	close(fd);
}

#endif
