/*
 * The runtime's private types: the application, its shards and their connection records,
 * frames and send queues, the timing wheel and the per-shard counters. Never installed;
 * included by the files of shards/ only. Each struct says which thread may touch it.
 */
#ifndef RC_RUNTIME_H
#define RC_RUNTIME_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "config.h"
#include "ws_assembler.h"
#include "ws_frame.h"
#include "mpsc.h"
#include "pmd.h"
#include "http.h"
#include <ringcast/app.h>
#include <ringcast/conn.h>
#include <ringcast/config.h>
#include <ringcast/pubsub.h>

/* ---- user_data: {op:8, gen:24, slot:32} --------------------------------------------------- */
enum rc_op {
	RC_OP_NONE = 0,
	RC_OP_ACCEPT,
	RC_OP_RECV,
	RC_OP_SEND,
	RC_OP_SEND_ZC, /* result, then a notification (IORING_CQE_F_NOTIF) */
	RC_OP_CANCEL,
	RC_OP_CLOSE,
	RC_OP_SHUTDOWN,
	RC_OP_WAKE, /* eventfd doorbell read */
	RC_OP_MSG,  /* MSG_RING doorbell from another shard */
	RC_OP_COUNT,
};

#define RC_GEN_MASK 0xffffffu

static inline uint64_t rc_ud(enum rc_op op, uint32_t gen, uint32_t slot)
{
	return ((uint64_t)op << 56) | ((uint64_t)(gen & RC_GEN_MASK) << 32) | slot;
}
static inline enum rc_op rc_ud_op(uint64_t ud)
{
	return (enum rc_op)(ud >> 56);
}
static inline uint32_t rc_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & RC_GEN_MASK;
}
static inline uint32_t rc_ud_slot(uint64_t ud)
{
	return (uint32_t)ud;
}

/* ---- counters ---------------------------------------------------------------------------- */
/* Why a connection ended; the metric label of ringcast_connections_closed_total. */
#define RC_CLOSE_REASONS(X)                                                                        \
	X(normal, "client or server close handshake completed")                                    \
	X(protocol_error, "1002 sent")                                                             \
	X(invalid_data, "1007 sent")                                                               \
	X(too_big, "1009 sent")                                                                    \
	X(handshake_rejected, "the upgrade got a 4xx")                                             \
	X(handshake_timeout, "no complete request in handshake_timeout_ms")                        \
	X(idle_timeout, "no traffic in idle_timeout_ms")                                           \
	X(close_timeout, "no close reply in close_timeout_ms")                                     \
	X(peer_gone, "EOF or reset without a close handshake")                                     \
	X(slow_consumer, "send queue over send_queue_bytes_max")                                   \
	X(drain, "server shutdown")                                                                \
	X(http_done, "plain HTTP request answered")                                                \
	X(app, "closed by the application")                                                        \
	X(rate_limited, "1008: over messages_per_second_max")                                      \
	X(over_capacity, "503: connections_max reached")

enum rc_close_reason {
#define RC_X(name, help) RC_CLOSE_##name,
	RC_CLOSE_REASONS(RC_X)
#undef RC_X
		RC_CLOSE_REASON_COUNT,
};

/* One shard's counters. Written only by the shard; read racily (relaxed) by /metrics. */
struct rc_shard_stats {
	uint64_t connections_accepted;
	uint64_t connections_refused; /* accept failed: table full or out of memory */
	uint64_t connections_open;    /* gauge: records in use */
	uint64_t websockets_open;     /* gauge: upgraded connections */
	uint64_t connections_closed[RC_CLOSE_REASON_COUNT];
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t messages_in;
	uint64_t messages_out;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t http_requests;
	uint64_t pings_sent;
	uint64_t recv_rearms; /* multishot recv re-armed (ENOBUFS or kernel ended it) */
	uint64_t recv_buffers; /* gauge: provided receive buffers (grows under bursts) */
	uint64_t stale_cqes;  /* completions for a recycled slot, dropped */
	uint64_t sends;	      /* send/sendmsg SQEs issued */
	uint64_t loop_turns;
	uint64_t submits;
	uint64_t publishes;          /* messages sequenced by this shard as owner */
	uint64_t publish_duplicates; /* dropped by the dedup window */
	uint64_t deliveries;         /* broadcast frames queued to local subscribers */
	uint64_t slow_drops;         /* frames skipped for slow subscribers (policy drop) */
	uint64_t subscriptions;      /* gauge */
	uint64_t topics_owned;       /* gauge */
	uint64_t mpsc_full;          /* posts that waited in an outbox: target ring full */
	uint64_t doorbells;          /* MSG_RING wake-ups sent */
	uint64_t limit_mpsc_drain;   /* turns that hit mpsc_drain_max */
	uint64_t protocol_rejects;   /* client pub/sub messages answered with an error */
	uint64_t arena_frames;       /* gauge: frames alive in this shard's arena slice */
	uint64_t arena_exhausted;    /* broadcast frames that fell back to the heap */
	uint64_t sends_zc;           /* send_zc_fixed operations issued */
	uint64_t deflate_in_bytes;   /* bytes given to the compressor */
	uint64_t deflate_out_bytes;  /* bytes it produced (sent with RSV1) */
	uint64_t deflate_window_skips; /* messages sent plain: longer than the client's window */
	uint64_t inflated_messages;  /* compressed messages received */
	uint64_t alloc_failures;     /* runtime allocations that failed and were degraded */
};

/* ---- timing wheel ------------------------------------------------------------------------ */
struct rc_timer {
	struct rc_timer *next;
	struct rc_timer *prev;
	uint32_t expiry_tick; /* absolute tick; valid while linked */
	uint32_t linked;      /* 1 while in a bucket */
};

struct rc_wheel {
	struct rc_timer *buckets; /* sentinels, one per slot; circular lists */
	uint32_t slots;		  /* power of two */
	uint32_t now_tick;	  /* last tick processed */
};

int rc_wheel_init(struct rc_wheel *w, uint32_t slots, uint32_t now_tick);
void rc_wheel_free(struct rc_wheel *w);
/* (Re)arms t to fire at absolute tick expiry (clamped to now + 1). */
void rc_wheel_arm(struct rc_wheel *w, struct rc_timer *t, uint32_t expiry);
void rc_wheel_disarm(struct rc_timer *t);
/* Advances to tick now, calling fire(t, ctx) for every expired timer (already disarmed). */
void rc_wheel_advance(struct rc_wheel *w, uint32_t now, void (*fire)(struct rc_timer *, void *),
		      void *ctx);
/* Checks the wheel's invariants (tests, RC_DASSERT). */
bool rc_wheel_validate(const struct rc_wheel *w);

/* ---- frames and send queues -------------------------------------------------------------- */
/*
 * Bytes to send: a WebSocket frame or an HTTP response. A unicast frame belongs to one shard
 * and counts references with plain integers; a broadcast frame (shared) is built once by its
 * topic's owner shard, read-only afterwards, and counted atomically because every shard
 * holding subscribers references it.
 */
struct rc_frame {
	uint32_t refs;       /* atomic (__atomic builtins) when shared */
	uint32_t len;        /* bytes of data[] to send */
	uint64_t seq;        /* pub/sub sequence number, 0 for unicast frames */
	uint64_t topic_hash; /* rc_topic_hash of topic */
	const char *topic;   /* NUL-terminated, inside this allocation; NULL for unicast */
	uint16_t topic_len;
	uint8_t shared;
	uint8_t owner;       /* shard that built it */
	uint8_t arena_class; /* 0: malloc'd; else 1 + size class in the registered arena */
	uint8_t pad[3];
	struct rc_frame *deflated; /* broadcast: its permessage-deflate variant (a reference) */
	uint8_t data[];
};

struct rc_qnode {
	struct rc_qnode *next;
	struct rc_frame *frame;
	uint32_t queued_tick; /* for send_queue_age_max_ms */
};

#define RC_ARENA_CLASSES 9 /* 256 B .. 64 KiB chunks */

struct rc_sendq {
	struct rc_qnode *head;
	struct rc_qnode *tail;
	uint32_t bytes;	   /* queued and unsent, head_off excluded */
	uint32_t head_off; /* bytes of head->frame already sent */
};

#define RC_SEND_IOV_LIMIT 64

/* The msghdr and iovecs of one gathered send, alive until its completion. */
struct rc_sendop {
	struct msghdr mh;
	struct iovec iov[RC_SEND_IOV_LIMIT];
	struct rc_sendop *next_free;
};

/* A growable byte buffer: HTTP requests. */
struct rc_buf {
	uint32_t len;
	uint32_t cap;
	uint32_t flags; /* none defined: cleared on allocation */
	uint8_t data[];
};

/* ---- pub/sub ----------------------------------------------------------------------------- */
#include "topic.h"

/* A topic with local subscribers on this shard. */
struct rc_ltopic {
	struct rc_topic_node node;
	struct rc_sub *subs; /* doubly linked through rc_sub.next/prev */
	uint32_t count;
	uint32_t deflate_count; /* subscribers that negotiated permessage-deflate */
};

/* One connection's subscription to one topic. */
struct rc_sub {
	struct rc_sub *next; /* in the topic */
	struct rc_sub *prev;
	struct rc_sub *conn_next; /* in the connection */
	struct rc_ltopic *topic;
	struct rc_conn *conn;
	uint64_t last_seq; /* newest seq queued to this subscriber */
	bool pending;      /* waiting for the owner's replay: live frames are skipped */
};

#define RC_SHARD_MASK_WORDS (RC_SHARDS_LIMIT / 64)

/* A topic this shard owns: its sequence, history, subscribed shards and recent ids. */
struct rc_otopic {
	struct rc_topic_node node;
	uint64_t seq;
	uint64_t shard_mask[RC_SHARD_MASK_WORDS];
	uint64_t deflate_mask[RC_SHARD_MASK_WORDS]; /* shards with deflate subscribers */
	uint32_t deflate_shards;
	uint32_t shards_subscribed;
	struct rc_history hist;
	uint64_t unused_since_ms; /* no subscribers and no history since then; 0 = in use */
	uint64_t *dedup_hash; /* dedup_ids_max recent id hashes (ring), allocated on first id */
	uint64_t *dedup_at;
	uint32_t dedup_next;
};

/* Cross-shard control messages (frames travel as bare pointers, low bit clear). */
enum rc_xkind {
	RC_X_PUBLISH = 0, /* to the owner: assign a seq and broadcast */
	RC_X_SHARD_SUB,   /* to the owner: shard `from` has subscribers */
	RC_X_SHARD_UNSUB, /* to the owner: shard `from` has none left */
	RC_X_DEFLATE_ON,  /* to the owner: shard `from` has deflate subscribers */
	RC_X_DEFLATE_OFF, /* to the owner: shard `from` has none left */
	RC_X_REPLAY,      /* to the owner: what came after seq for a resuming subscriber */
	RC_X_REPLAYED,    /* from the owner: frames, gap and current seq for that subscriber */
	RC_X_PUB_DONE,    /* from the owner: the seq assigned to a publish (or duplicate) */
};

enum rc_reply {
	RC_REPLY_NONE = 0,
	RC_REPLY_WS,   /* ack to a WebSocket client */
	RC_REPLY_HTTP, /* one answer of a POST /publish batch */
};

struct rc_xmsg {
	uint8_t kind;  /* enum rc_xkind */
	uint8_t reply; /* enum rc_reply */
	uint8_t duplicate;
	uint8_t gap;
	uint16_t from; /* producing shard; RC_SHARDS_LIMIT for foreign threads */
	uint16_t topic_len;
	uint32_t slot; /* reply-to connection */
	uint32_t gen;
	uint32_t tag;  /* index within an HTTP batch */
	uint32_t nframes;
	uint64_t seq; /* REPLAY: since; REPLAYED/PUB_DONE: current or assigned seq */
	uint64_t gap_from;
	uint64_t gap_to;
	struct rc_frame **frames; /* REPLAYED: references owned by the message */
	uint32_t data_len;
	uint16_t id_len;
	char topic[RC_TOPIC_BYTES_LIMIT + 1];
	char id[65];
	char data[]; /* PUBLISH: the JSON value */
};

/* ---- connections ------------------------------------------------------------------------- */
enum rc_conn_state {
	RC_CONN_FREE = 0,
	RC_CONN_HTTP,	 /* reading the HTTP request */
	RC_CONN_OPEN,	 /* WebSocket open */
	RC_CONN_CLOSING, /* our close frame is queued or sent; waiting for the reply */
	RC_CONN_DOOMED,	 /* ops cancelled; the descriptor closes when none is in flight */
};

enum rc_conn_flag {
	RC_CF_RECV = 1u << 0,	      /* multishot recv armed */
	RC_CF_SEND = 1u << 1,	      /* a send is in flight */
	RC_CF_DIRTY = 1u << 2,	      /* on the shard's flush list */
	RC_CF_FLUSH_CLOSE = 1u << 3,  /* terminate once the queue is flushed */
	RC_CF_PING = 1u << 4,	      /* a server ping is unanswered */
	RC_CF_APP_OPEN = 1u << 5,     /* on_open ran; on_close owed */
	RC_CF_DESC_CLOSING = 1u << 6, /* close_direct issued */
	RC_CF_WANT_DRAIN = 1u << 7,   /* on_drain owed when the queue empties */
	RC_CF_DISCARD = 1u << 8,      /* failed: input is dropped, TCP half-closes after flush */
	RC_CF_SHUT_WR = 1u << 9,      /* shutdown(SHUT_WR) issued */
	RC_CF_DEFLATE = 1u << 10,     /* permessage-deflate negotiated */
	RC_CF_HTTP_RESUME = 1u << 11, /* parse requests waiting in pend at the next flush */
	RC_CF_MAY_PUBLISH = 1u << 12, /* its access token allows publishing (auth_secret set) */
	RC_CF_REFUSED = 1u << 13,     /* accepted over connections_max only to answer 503 */
};

/*
 * One connection. The slot index equals the io_uring fixed-file index, so the table needs
 * no map; a slot is reused only after its descriptor's close completed. Shard thread only.
 */
struct rc_conn {
	struct rc_timer timer;
	union {
		struct rc_ws_asm ws; /* OPEN, CLOSING: frame assembler; holds nothing when idle */
		struct {	     /* HTTP (all NULL when the upgrade hands over to ws): */
			struct rc_buf *pend; /* partial or waiting requests; NULL when idle */
			struct rc_buf *msg;  /* POST /publish batch being sequenced, or NULL */
		};
	};
	struct rc_sendq q;
	struct rc_sendop *sop; /* gathered send in flight, NULL otherwise */
	void *user;
	struct rc_shard *shard;
	struct rc_sub *subs; /* this connection's subscriptions */
	struct rc_qnode *zc_wait; /* frames sent zero-copy whose notification is owed (FIFO) */
	uint32_t gen;
	uint32_t last_rx_tick;
	uint32_t rate_tokens; /* messages_per_second_max bucket, in thousandths of a message */
	uint32_t rate_tick;   /* tick of its last refill */
	uint16_t close_code; /* what on_close reports */
	uint16_t flags;	     /* enum rc_conn_flag */
	uint8_t state;	     /* enum rc_conn_state */
	uint8_t endpoint;    /* index into app->ws */
	uint8_t inflight;    /* SQEs whose completion is still owed */
	uint8_t close_reason;
	uint16_t subs_count;
	uint8_t deflate_window_bits; /* server_max_window_bits agreed (8..15) if RC_CF_DEFLATE */
};

/* deflate_window_bits lives in what was tail padding: idle memory per connection is the
 * product, so a field that grows the record is a decision, not an accident. */
RC_STATIC_ASSERT(sizeof(struct rc_conn) <= 152, "struct rc_conn grew");

/* ---- shard and application --------------------------------------------------------------- */
struct rc_shard {
	struct io_uring ring;
	struct rc_app *app;
	struct rc_conn *conns; /* conns_cap records, index = fixed-file index */
	uint32_t conns_cap;    /* conns_limit + spare slots for refusing with a 503 */
	uint32_t conns_limit;  /* connections this shard serves (connections_max / shards) */
	uint32_t conns_refusing; /* records answering a 503 (not counted against the limit) */
	uint32_t conns_live;
	uint32_t *dirty; /* slots to flush this turn */
	uint32_t dirty_count;
	int index;
	int cpu;
	int listen_fd;
	int wake_fd;	   /* eventfd doorbell for other threads */
	uint64_t wake_buf; /* target of the doorbell's read */
	bool accept_armed;
	bool wake_armed;
	bool draining;
	bool running;
	uint64_t now_ms;   /* monotonic, updated each loop turn */
	uint64_t epoch_ms; /* monotonic time of tick 0 */
	uint64_t drain_deadline_ms;
	struct rc_wheel wheel;
	/* provided-buffer ring */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint32_t buf_count;  /* ring entries and the most buffers ever provided */
	uint32_t buf_active; /* buffers provided so far: grows on ENOBUFS, never shrinks */
	uint32_t buf_size;
	uint32_t br_returned; /* buffers added since the last advance */
	/* pools */
	struct rc_qnode *qnode_free;
	struct rc_sendop *sendop_free;
	struct rc_shard_stats stats;
	/* pub/sub */
	struct rc_mpsc inbox;          /* any shard or thread produces; this shard consumes */
	struct rc_outbox *outbox;      /* one per target shard */
	struct rc_topic_table ltopics; /* topics with local subscribers (rc_ltopic) */
	struct rc_topic_table otopics; /* topics this shard owns (rc_otopic) */
	char *scratch;                 /* publish data parsing */
	size_t scratch_cap;
	/* permessage-deflate: one codec per shard, nothing per connection */
	struct libdeflate_compressor *deflater;
	struct libdeflate_decompressor *inflater;
	uint8_t *zbuf; /* compression and inflation output, grown on demand */
	size_t zbuf_cap;
	uint8_t *ibuf; /* inflation output */
	size_t ibuf_cap;
	const uint8_t *rx_end; /* end of the receive buffer being parsed (tail room check) */
	uint64_t next_sweep_ms;
	/* this shard's slice of the registered frame arena */
	uint8_t *arena_bump;
	uint8_t *arena_end;
	struct rc_frame *arena_free[RC_ARENA_CLASSES];
	pthread_t thread;
	int start_rc; /* 0 or -errno from the thread's setup */
	char start_err[160];
};

/* Items posted to a shard whose inbox was full, kept in order for the next turn. */
struct rc_outbox {
	void **items;
	uint32_t head;
	uint32_t count;
	uint32_t cap;
};

#define RC_ENDPOINT_LIMIT 16
#define RC_CONN_SPARE_SLOTS 64 /* per shard, for answering 503 over connections_max */
#define RC_HTTP_OUT_BYTES_MIN (256u * 1024u) /* body room of a plain HTTP endpoint's answer */

struct rc_ws_endpoint {
	char path[64];
	struct rc_ws_handler h;
	struct rc_ws_limits limits;
};

struct rc_http_endpoint {
	char path[64];
	rc_http_fn fn;
	void *ctx;
};

struct rc_app {
	struct rc_config cfg;
	struct rc_shard *shards;
	int shards_count;
	int port; /* bound port */
	uint32_t conns_per_shard;
	uint32_t conns_spare;
	size_t http_out_bytes; /* body room for HTTP handlers: /metrics at this shard count fits */
	struct rc_ws_endpoint ws[RC_ENDPOINT_LIMIT];
	int ws_count;
	struct rc_http_endpoint http[RC_ENDPOINT_LIMIT];
	int http_count;
	struct rc_slice origins[32];
	size_t origins_count;
	struct rc_slice subprotocols[16];
	size_t subprotocols_count;
	char *origins_buf;
	char *subprotocols_buf;
	int log_level; /* 0 error .. 3 debug */
	bool drop_slow; /* slow_consumer_policy = drop */
	uint8_t client_publish; /* 0 any, 1 subscribed, 2 none */
	int pubsub_ws;  /* index of the pub/sub endpoint in ws[], -1 if none */
	char publish_path[64]; /* POST endpoint of the backend publish API, "" if none */
	struct rc_pmd_config pmd; /* permessage-deflate settings */
	uint8_t *arena;        /* registered frame arena (fixed buffer 0 of every ring) */
	size_t arena_bytes;
	int shards_started; /* threads started by rc_app_run (main thread only) */
	atomic_bool stopping;
	atomic_bool drain_forced; /* a second stop: drains end now (main thread writes) */
	atomic_int shards_exited; /* pairs with the main thread's acquire load in run */
	atomic_int shards_ready;  /* likewise: shards whose setup finished (start_rc is set) */
};

/* ---- functions shared between shards/ files ---------------------------------------------- */
/* uring.c */
int rc_uring_probe(char *err, size_t err_len);
int rc_uring_setup(struct rc_shard *s, char *err, size_t err_len);
struct io_uring_sqe *rc_uring_sqe(struct rc_shard *s);
uint64_t rc_clock_ms(void);
/* Wall-clock Unix seconds (token expiry). */
uint64_t rc_clock_unix_s(void);

/* bufring.c */
int rc_bufring_setup(struct rc_shard *s, char *err, size_t err_len);
void rc_bufring_free(struct rc_shard *s);
uint8_t *rc_bufring_addr(struct rc_shard *s, uint16_t bid);
void rc_bufring_return(struct rc_shard *s, uint16_t bid);
void rc_bufring_commit(struct rc_shard *s);
/* The kernel ran out of buffers: provide more (doubling, up to recv_buffers). */
void rc_bufring_grow(struct rc_shard *s);

/* sendq.c */
struct rc_frame *rc_frame_alloc(uint32_t len);
void rc_frame_unref(struct rc_frame *f);
int rc_conn_enqueue(struct rc_conn *c, struct rc_frame *f);
int rc_conn_send_frame(struct rc_conn *c, uint8_t opcode, const void *p, size_t len);
/* Sends a data message, compressed when c negotiated deflate and it is worth it. */
int rc_conn_send_data(struct rc_conn *c, uint8_t opcode, const void *p, size_t len);
/* Grows the shard's codec buffer to at least n bytes; NULL on allocation failure. */
uint8_t *rc_shard_zbuf(struct rc_shard *s, size_t n);
/* Grows *buf (capacity *cap) to at least n bytes; returns it, or NULL (unchanged) on failure. */
void *rc_grow(void **buf, size_t *cap, size_t n);
/* The same for the inflation output (a message being delivered may be echoed compressed). */
uint8_t *rc_shard_ibuf(struct rc_shard *s, size_t n);
int rc_conn_send_raw(struct rc_conn *c, const void *p, size_t len);
void rc_conn_mark_dirty(struct rc_conn *c);
void rc_shard_flush(struct rc_shard *s);
void rc_send_complete(struct rc_conn *c, int res);
void rc_send_zc_notified(struct rc_conn *c);
/* The shard whose thread this is, NULL elsewhere. */
extern _Thread_local struct rc_shard *rc_current_shard;
void rc_sendq_release(struct rc_shard *s, struct rc_sendq *q);
/* Drops every queued frame not yet handed to the kernel (slow consumer being closed). */
void rc_sendq_drop_unsent(struct rc_conn *c);
void rc_pools_free(struct rc_shard *s);

/* conn.c */
void rc_accept_arm(struct rc_shard *s);
void rc_accept_complete(struct rc_shard *s, struct io_uring_cqe *cqe);
void rc_recv_complete(struct rc_conn *c, struct io_uring_cqe *cqe);
void rc_conn_op_complete(struct rc_conn *c, enum rc_op op, int res);
void rc_conn_shutdown_wr(struct rc_conn *c);
/* Applies the close policy to a slow consumer: backlog dropped, 1013 sent. */
void rc_conn_slow_close(struct rc_conn *c);
void rc_conn_terminate(struct rc_conn *c, enum rc_close_reason why);
void rc_conn_ws_close(struct rc_conn *c, uint16_t code, const char *reason,
		      enum rc_close_reason why);
void rc_conn_timer_fire(struct rc_timer *t, void *ctx);
struct rc_conn *rc_conn_lookup(struct rc_shard *s, uint64_t ud);
uint32_t rc_shard_tick(const struct rc_shard *s);
const char *rc_close_reason_name(enum rc_close_reason why);
/* The upgrade succeeded: the heartbeat timer replaces the handshake timer. */
void rc_conn_opened(struct rc_conn *c);
/* A keep-alive HTTP connection waits for its next request: re-arms handshake_timeout_ms. */
void rc_conn_http_idle(struct rc_conn *c);

/* auth (input.c): checks a request's token when auth_secret is set. 0, or the HTTP status to
 * answer (401) with *reason; *may_publish reports the token's "pub" claim. */
int rc_conn_authorize(struct rc_conn *c, const struct rc_http_request *req, bool *may_publish,
		      const char **reason);

/* input.c */
void rc_conn_input(struct rc_conn *c, uint8_t *p, size_t n);
/* Frees what c's frame assembler holds (c->ws; upgraded connections only). */
void rc_conn_ws_reset(struct rc_conn *c);
/* Queues an HTTP response; keep_alive waits for the next request instead of closing. */
void rc_conn_http_reply(struct rc_conn *c, const char *resp, size_t len, enum rc_close_reason why,
			bool keep_alive);
/* Parses requests that waited in c->pend (after a deferred answer went out). */
void rc_conn_http_resume(struct rc_conn *c);

/* arena.c */
int rc_arena_init(struct rc_app *app, char *err, size_t err_len);
void rc_arena_free_all(struct rc_app *app);
int rc_arena_attach(struct rc_shard *s, char *err, size_t err_len);
/* A frame in s's arena slice, or NULL (no arena, too large, or slice exhausted). */
struct rc_frame *rc_arena_frame_alloc(struct rc_shard *s, uint32_t len);
/* Returns an arena frame to its owner's free list; owner shard thread only. */
void rc_arena_frame_release(struct rc_shard *s, struct rc_frame *f);

/* pubsub.c */
/* Sends an arena frame whose last reference dropped on this thread back to its owner. */
void rc_pubsub_return_frame(struct rc_frame *f);
void rc_frame_ref_n(struct rc_frame *f, uint32_t n);
int rc_pubsub_init(struct rc_shard *s);
void rc_pubsub_free(struct rc_shard *s);
void rc_pubsub_poll(struct rc_shard *s);
void rc_pubsub_sweep(struct rc_shard *s);
void rc_pubsub_conn_closed(struct rc_conn *c);
/* 0 subscribed; 1 subscribed, answer follows via rc_proto_subscribed; -EEXIST, -E2BIG
 * (subscriptions_per_connection_max), -EINVAL (topic name), -ENOMEM. */
int rc_pubsub_subscribe(struct rc_conn *c, const char *topic, size_t len, bool has_since,
			uint64_t since);
int rc_pubsub_unsubscribe(struct rc_conn *c, const char *topic, size_t len);
/* Any thread. 0, -EINVAL, -ENOMEM, or -EAGAIN (foreign thread and the owner's ring full). */
int rc_pubsub_publish(struct rc_app *app, const char *topic, size_t tlen, const char *data,
		      size_t dlen, const char *id, size_t idlen, enum rc_reply reply,
		      struct rc_conn *c, uint32_t tag);

/* pubsub_proto.c: the JSON client protocol and POST /publish on top of pubsub.c */
void rc_proto_subscribed(struct rc_conn *c, const char *topic, size_t len, uint64_t seq);
void rc_proto_gap(struct rc_conn *c, const char *topic, size_t len, uint64_t from, uint64_t to);
void rc_proto_published(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *topic,
			size_t len, uint64_t seq, bool duplicate, const char *id, size_t id_len);
void rc_proto_message(struct rc_conn *c, const void *data, size_t len, bool binary);
/* Serves POST /publish; the answer is sent when every publish of the batch is sequenced. */
void rc_proto_http_publish(struct rc_conn *c, const char *body, size_t len, bool keep_alive);

/* metrics.c */
/* The most bytes rc_app_metrics() can write for this shard count (NUL included). Any thread. */
size_t rc_metrics_bytes_max(const struct rc_app *app);

/* shard.c */
/* Rings `to`'s doorbell from shard s's ring (IORING_OP_MSG_RING). */
void rc_shard_ring(struct rc_shard *s, struct rc_shard *to);
/* Allocates the shard's tables and starts its thread (setup happens on the thread). */
int rc_shard_start(struct rc_shard *s);
/* Rings the shard's doorbell; any thread. */
void rc_shard_wake(struct rc_shard *s);
void rc_shard_drain_begin(struct rc_shard *s);
void rc_log(const struct rc_app *app, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define RC_LOG_ERROR RC_LOG_LEVEL_ERROR
#define RC_LOG_WARN RC_LOG_LEVEL_WARN
#define RC_LOG_INFO RC_LOG_LEVEL_INFO
#define RC_LOG_DEBUG RC_LOG_LEVEL_DEBUG

#endif
