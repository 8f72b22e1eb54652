/*
 * Redis connections on a shard's own io_uring (redis_conn.c): per Redis instance, one
 * command link and one subscriber link, sockets like any client's (no extra thread, no
 * blocking call). Commands are RESP-encoded by hiredis (redisFormatCommandArgv) into an
 * output buffer that leaves in one send per turn (pipelining), replies are decoded by a
 * redisReader (bounded per reply by redis_reply_bytes_max) and matched FIFO to what their command asked (struct rc_redis_wait). A link
 * quiet for half of redis_command_timeout_ms is pinged, so a Redis that went away without a
 * word (a partition) is noticed too. A link that fails (refused, EOF, error, command or
 * connect timeout) fails every waiting command, closes, and reconnects after an exponential
 * backoff with jitter. What the replies mean is the engine's (pubsub_redis.c), reached
 * through app->redis_hooks. What a link holds (buffers, reply ring, what its reader buffers)
 * is charged to the budget's engine category. Shard thread, except rc_redis_addrs_init/free
 * (main thread) and rc_redis_links_init/free (before the threads start, after they joined).
 */
#ifndef RC_REDIS_CONN_H
#define RC_REDIS_CONN_H

#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "redis_proto.h"
#include "runtime.h"

struct rc_xmsg;

#define RC_REDIS_RECV_BYTES 65536u
#define RC_REDIS_WHAT_AUTH UINT32_MAX /* the link's own AUTH, never shown to the hooks */
#define RC_REDIS_WHAT_PING (UINT32_MAX - 1) /* the link's keepalive, likewise */

/* One Redis instance of redis_addresses, resolved at start. */
struct rc_redis_addr {
	struct sockaddr_storage sa;
	socklen_t sa_len;
};

enum rc_redis_kind {
	RC_REDIS_CMD = 0, /* commands and their replies, FIFO */
	RC_REDIS_SUB,     /* SUBSCRIBE mode: confirmations and messages, no FIFO */
};

enum rc_redis_state {
	RC_REDIS_DOWN = 0,   /* waiting for deadline_ms to connect */
	RC_REDIS_CONNECTING, /* connect in flight until deadline_ms */
	RC_REDIS_UP,
	RC_REDIS_CLOSING, /* failed: the socket closes when no operation is in flight */
};

/* A command awaiting its reply. */
struct rc_redis_wait {
	void *ctx;        /* the engine's, handed back with the reply */
	uint64_t sent_ms; /* shard clock when queued: command timeout and latency */
	uint32_t what;    /* the engine's tag (RC_REDIS_WHAT_AUTH or _PING: the link's own) */
};

/* One connection to one Redis instance. Shard thread only. */
struct rc_redis_link {
	struct rc_shard *shard;
	redisReader *reader; /* NULL unless UP */
	struct rc_redis_bound bound; /* reader's: redis_reply_bytes_max per reply */
	char *obuf;          /* encoded commands not yet handed to the kernel */
	size_t olen;
	size_t ocap;
	char *wbuf; /* the bytes of the send in flight */
	size_t wlen;
	size_t wcap;
	size_t woff;  /* of wbuf already sent */
	char *rbuf;   /* RC_REDIS_RECV_BYTES: the receive in flight */
	size_t reader_bytes; /* what reader buffers, as charged to the memory budget */
	struct rc_redis_wait *wait; /* ring of redis_pipeline_max (+1 for AUTH) */
	uint32_t wait_cap;
	uint32_t wait_head;
	uint32_t wait_count;
	uint64_t deadline_ms; /* DOWN: next connect; CONNECTING: connect timeout */
	uint64_t last_rx_ms;  /* UP: when bytes last came: a quiet link is pinged */
	uint64_t writes;      /* sends issued (commands per write: the pipelining) */
	struct rc_xmsg *batch; /* command link: the engine's publishes for its next script call */
	struct rc_xmsg *batch_tail;
	uint32_t batch_count;
	size_t batch_bytes; /* what encoding the batch will add to obuf, at most */
	struct rc_xmsg *resend; /* publishes refused NOSCRIPT, to go again once it is loaded */
	struct rc_xmsg *resend_tail;
	bool reloading; /* a script load for resend is in flight: no batch leaves before it */
	int fd;
	uint32_t gen;      /* bumped at each failure: completions of an older one are stale */
	uint32_t index;    /* in s->redis_links: instance * 2 + kind */
	uint32_t failures; /* in a row, for the backoff; 0 once a connect succeeded */
	uint16_t inflight; /* operations whose completion is owed (any generation) */
	uint8_t kind;      /* enum rc_redis_kind */
	uint8_t state;     /* enum rc_redis_state */
	bool sending;
	bool answered; /* a reply came since the connect: Redis is there, not just its port */
	bool stopped; /* the shard is exiting: no reconnect */
};

/* The engine's side of a link (pubsub_redis.c), wired by app.c. Shard thread. */
struct rc_redis_hooks {
	/* l is connected (and AUTH, if any, is queued first): queue what it needs first. */
	void (*up)(struct rc_redis_link *l);
	/* The reply r (NULL: the link failed first) to the command queued with ctx and what;
	 * r is freed after the call. */
	void (*reply)(struct rc_redis_link *l, void *ctx, uint32_t what, redisReply *r);
	/* A subscriber link's reply (confirmation or message); freed after the call. */
	void (*push)(struct rc_redis_link *l, redisReply *r);
	/* l failed; every waiting command was answered with NULL first. */
	void (*down)(struct rc_redis_link *l);
	/* Once per loop turn while l is up, before its commands leave: queue what was gathered. */
	void (*turn)(struct rc_redis_link *l);
};

/* Resolves redis_addresses into app->redis_addrs and app->redis_names (the entries as
 * written). 0, or -errno with one line in err. Main thread, in rc_app_create. */
int rc_redis_addrs_init(struct rc_app *app, char *err, size_t err_len);

/* Frees what rc_redis_addrs_init allocated. Main thread. */
void rc_redis_addrs_free(struct rc_app *app);

/* Allocates s's links (two per instance), DOWN and due at once. 0 or -ENOMEM. Main thread,
 * before s starts. */
int rc_redis_links_init(struct rc_shard *s);

/* Once per loop turn: connects links that are due, fails those past a timeout, and hands
 * each link's queued commands to the kernel in one send. Shard thread. */
void rc_redis_links_turn(struct rc_shard *s);

/* The shard exits: every link fails (their waiting commands are answered) and closes, and
 * none reconnects. Shard thread, after its loop. */
void rc_redis_links_stop(struct rc_shard *s);

/* Whether none of s's links that are up has commands unsent or unanswered: a draining
 * shard waits for that (bounded by redis_command_timeout_ms) before it exits. */
bool rc_redis_links_idle(const struct rc_shard *s);

/* Frees s's links: after its ring exited (no operation can touch their buffers). */
void rc_redis_links_free(struct rc_shard *s);

/* A completion of a link operation (op RC_OP_REDIS_*). Shard thread. */
void rc_redis_complete(struct rc_shard *s, struct io_uring_cqe *cqe);

/*
 * Queues a command of argc arguments (argv[i] of argvlen[i] bytes, borrowed) on l. On a
 * command link its reply comes back through the reply hook with ctx and what (ownership of
 * ctx stays the caller's: it gets it back then). 0; -ENOTCONN (l not UP); -EBUSY (the
 * pipeline or backlog is full: counted); -ENOMEM.
 */
int rc_redis_command(struct rc_redis_link *l, int argc, const char **argv, const size_t *argvlen,
		     void *ctx, uint32_t what);

/* Whether add more bytes fit l's backlog (redis_backlog_bytes_max: what waits in obuf and
 * in the send in flight). */
bool rc_redis_backlog_room(const struct rc_redis_link *l, size_t add);

/* Fails l now (a protocol error the engine found): as if its socket had failed. */
void rc_redis_link_fail(struct rc_redis_link *l);

/* s's command or subscriber link to instance i. */
static inline struct rc_redis_link *rc_redis_link(struct rc_shard *s, uint32_t i,
						  enum rc_redis_kind kind)
{
	RC_DASSERT(i < s->app->redis_count);
	return &s->redis_links[i * 2 + kind];
}

#endif
