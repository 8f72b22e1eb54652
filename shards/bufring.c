/*
 * The shard's provided-buffer ring: up to recv_buffers buffers of recv_buffer_bytes as
 * buffer group 0, from which every multishot recv takes a buffer only when bytes arrive. An
 * idle connection therefore holds no receive memory. Buffers go back after each completion
 * is parsed; returns are published to the kernel once per loop turn. The ring starts with a
 * few buffers and doubles them whenever the kernel runs out (ENOBUFS), so a quiet shard
 * touches little memory and a bursty one grows to what its bursts need. Shard thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bufring.h"

#define RC_BUF_GROUP 0
#define RC_BUF_INITIAL 32 /* buffers provided at start */

int rc_bufring_setup(struct rc_shard *s, char *err, size_t err_len)
{
	uint32_t count = (uint32_t)s->app->cfg.recv_buffers;
	uint32_t size = (uint32_t)s->app->cfg.recv_buffer_bytes;
	size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);

	RC_ASSERT(rc_is_pow2(count) && count <= 32768);
	/* liburing 2.3 has no io_uring_setup_buf_ring(): map and register the ring here. */
	void *ring_mem =
		mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (ring_mem == MAP_FAILED) {
		snprintf(err, err_len, "shard %d: mmap buffer ring: %s", s->index, strerror(errno));
		return -errno;
	}
	s->bufs = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
		       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (s->bufs == MAP_FAILED) {
		int rc = -errno;
		s->bufs = NULL;
		munmap(ring_mem, ring_bytes);
		snprintf(err, err_len, "shard %d: mmap %u receive buffers: %s", s->index, count,
			 strerror(-rc));
		return rc;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)ring_mem;
	reg.ring_entries = count;
	reg.bgid = RC_BUF_GROUP;
	int rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (rc < 0) {
		munmap(ring_mem, ring_bytes);
		munmap(s->bufs, (size_t)count * size);
		s->bufs = NULL;
		snprintf(err, err_len, "shard %d: io_uring_register_buf_ring: %s (Linux >= 5.19)",
			 s->index, strerror(-rc));
		return rc;
	}
	s->br = ring_mem;
	s->buf_count = count;
	s->buf_size = size;
	s->buf_active = 0;
	io_uring_buf_ring_init(s->br);
	rc_bufring_grow(s);
	return 0;
}

void rc_bufring_grow(struct rc_shard *s)
{
	uint32_t add = s->buf_active ? s->buf_active : RC_MIN((uint32_t)RC_BUF_INITIAL, s->buf_count);
	add = RC_MIN(add, s->buf_count - s->buf_active);
	if (add == 0)
		return;
	/* New buffers queue behind the returns of this turn, published with them. */
	for (uint32_t i = 0; i < add; i++) {
		uint16_t bid = (uint16_t)(s->buf_active + i);
		io_uring_buf_ring_add(s->br, rc_bufring_addr(s, bid), s->buf_size, bid,
				      io_uring_buf_ring_mask(s->buf_count), (int)s->br_returned);
		s->br_returned++;
	}
	s->buf_active += add;
	s->stats.recv_buffers = s->buf_active;
	rc_bufring_commit(s);
}

void rc_bufring_free(struct rc_shard *s)
{
	if (!s->br)
		return;
	(void)io_uring_unregister_buf_ring(&s->ring, RC_BUF_GROUP);
	munmap(s->br, (size_t)s->buf_count * sizeof(struct io_uring_buf));
	munmap(s->bufs, (size_t)s->buf_count * s->buf_size);
	s->br = NULL;
	s->bufs = NULL;
}

uint8_t *rc_bufring_addr(struct rc_shard *s, uint16_t bid)
{
	RC_DASSERT(bid < s->buf_count);
	return s->bufs + (size_t)bid * s->buf_size;
}

void rc_bufring_return(struct rc_shard *s, uint16_t bid)
{
	RC_DASSERT(bid < s->buf_active);
	RC_DASSERT(s->br_returned < s->buf_count);
	io_uring_buf_ring_add(s->br, rc_bufring_addr(s, bid), s->buf_size, bid,
			      io_uring_buf_ring_mask(s->buf_count), (int)s->br_returned);
	s->br_returned++;
}

void rc_bufring_commit(struct rc_shard *s)
{
	if (s->br_returned == 0)
		return;
	io_uring_buf_ring_advance(s->br, (int)s->br_returned);
	s->br_returned = 0;
}
