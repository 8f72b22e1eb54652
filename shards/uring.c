/*
 * io_uring setup and the helpers every shard file uses: the start-up feature probe, ring
 * creation with the flags the runtime depends on, SQE allocation that never fails silently,
 * and the doorbells that wake a shard. Ring functions run on the owning shard thread; the
 * probe runs on the main thread before any shard starts; rc_uring_wake on any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "uring.h"

/* Each opcode the runtime issues, with the kernel that introduced what we need of it. */
static const struct {
	int op;
	const char *name;
	const char *kernel;
} required_ops[] = {
	{IORING_OP_ACCEPT, "IORING_OP_ACCEPT (multishot, direct)", "5.19"},
	{IORING_OP_RECV, "IORING_OP_RECV (multishot, provided buffers)", "6.0"},
	{IORING_OP_SEND, "IORING_OP_SEND", "5.6"},
	{IORING_OP_SENDMSG, "IORING_OP_SENDMSG", "5.3"},
	{IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL (by fixed fd)", "6.0"},
	{IORING_OP_CLOSE, "IORING_OP_CLOSE (direct)", "5.15"},
	{IORING_OP_READ, "IORING_OP_READ", "5.6"},
	{IORING_OP_MSG_RING, "IORING_OP_MSG_RING", "5.18"},
	{IORING_OP_SEND_ZC, "IORING_OP_SEND_ZC", "6.0"},
};

#define RC_RING_FLAGS                                                                              \
	(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |     \
	 IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL)

int rc_uring_probe(char *err, size_t err_len)
{
	struct io_uring ring;
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = RC_RING_FLAGS;
	p.cq_entries = 64;
	int rc = io_uring_queue_init_params(8, &ring, &p);
	if (rc == -EINVAL) {
		snprintf(err, err_len,
			 "io_uring lacks IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN: Linux >= 6.1 "
			 "is required");
		return rc;
	}
	if (rc < 0) {
		snprintf(err, err_len, "io_uring_setup failed: %s%s", strerror(-rc),
			 rc == -EPERM ? " (is kernel.io_uring_disabled set?)" : "");
		return rc;
	}
	struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		io_uring_queue_exit(&ring);
		snprintf(err, err_len, "io_uring probe unavailable: Linux >= 6.1 is required");
		return -ENOSYS;
	}
	rc = 0;
	for (size_t i = 0; i < RC_ARRAY_LEN(required_ops); i++) {
		if (!io_uring_opcode_supported(probe, required_ops[i].op)) {
			snprintf(err, err_len, "io_uring lacks %s: Linux >= %s is required",
				 required_ops[i].name, required_ops[i].kernel);
			rc = -ENOSYS;
			break;
		}
	}
	if (rc == 0 && !(p.features & IORING_FEAT_EXT_ARG)) {
		snprintf(err, err_len,
			 "io_uring lacks IORING_FEAT_EXT_ARG: Linux >= 5.11 is required");
		rc = -ENOSYS;
	}
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return rc;
}

int rc_uring_setup(struct rc_shard *s, char *err, size_t err_len)
{
	struct io_uring_params p;
	uint32_t entries = (uint32_t)s->app->cfg.ring_entries;

	memset(&p, 0, sizeof(p));
	p.flags = RC_RING_FLAGS;
	/* Completions arrive in bursts (a broadcast completes one send per subscriber), so the
	 * CQ is four times the SQ; overflow is still handled by the kernel's backlog. */
	p.cq_entries = entries * 4;
	int rc = io_uring_queue_init_params(entries, &s->ring, &p);
	if (rc < 0) {
		snprintf(err, err_len, "shard %d: io_uring_queue_init(%u): %s", s->index, entries,
			 strerror(-rc));
		return rc;
	}
	rc = io_uring_register_files_sparse(&s->ring, s->conns_cap);
	if (rc < 0) {
		snprintf(
			err, err_len,
			"shard %d: registering %u direct descriptors: %s (connections_max / shards "
			"must not exceed RLIMIT_NOFILE)",
			s->index, s->conns_cap, strerror(-rc));
		io_uring_queue_exit(&s->ring);
		return rc;
	}
	/* The registered ring fd saves an fdget/fdput on every io_uring_enter. */
	(void)io_uring_register_ring_fd(&s->ring);
	return 0;
}

struct io_uring_sqe *rc_uring_sqe(struct rc_shard *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (RC_LIKELY(sqe != NULL))
		return sqe;
	/* The SQ is full mid-turn: submit what is queued and take a fresh entry. Bounded: one
	 * submit always frees the whole SQ (SUBMIT_ALL). */
	s->stats.submits++;
	int rc = io_uring_submit(&s->ring);
	RC_ASSERT(rc >= 0 || rc == -EBUSY || rc == -EAGAIN);
	sqe = io_uring_get_sqe(&s->ring);
	RC_ASSERT(sqe != NULL);
	return sqe;
}

void rc_uring_msg_ring(struct rc_shard *s, struct rc_shard *to)
{
	RC_DASSERT(s != to);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_msg_ring(sqe, to->ring.ring_fd, 0, rc_ud(RC_OP_MSG, 0, 0), 0);
	/* Only failures (a stopped target) post a completion here; RC_OP_NONE ignores them. */
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_NONE, 0, 0));
	s->stats.doorbells++;
}

void rc_uring_wake_arm(struct rc_shard *s)
{
	if (s->wake_armed)
		return;
	RC_ASSERT(s->wake_fd >= 0);
	struct io_uring_sqe *sqe = rc_uring_sqe(s);
	io_uring_prep_read(sqe, s->wake_fd, &s->wake_buf, sizeof(s->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, rc_ud(RC_OP_WAKE, 0, 0));
	s->wake_armed = true;
}

void rc_uring_wake(struct rc_shard *s)
{
	uint64_t one = 1;
	if (s->wake_fd >= 0)
		(void)!write(s->wake_fd, &one, sizeof(one));
}
