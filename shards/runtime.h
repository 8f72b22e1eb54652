/*
 * The runtime's shared types: the application, its shards and their connection records,
 * which every layer of shards/ reads (docs/architecture.md, "Runtime layers"), and the
 * calling thread's shard. Types only one module uses live in that module's header; every
 * function is declared in its module's header. Never installed; included by shards/ files
 * only. Each struct says which thread may touch it.
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
#include "budget.h"
#include "config.h"
#include "pmd.h"
#include "topic.h"
#include "ws_assembler.h"
#include "ws_frame.h"
#include <ringcast/app.h>
#include <ringcast/config.h>
#include <ringcast/conn.h>
#include <ringcast/pubsub.h>

#include "clock.h"
#include "mpsc.h"
#include "stats.h"
#include "wheel.h"

struct rc_frame;          /* frame.h */
struct rc_zcwait;         /* sendq.h */
struct rc_sendop;         /* sendq.h */
struct rc_sub;            /* pubsub.h */
struct rc_otopic;         /* pubsub.h */
struct rc_outbox;         /* outbox.h */
struct rc_http_pub;       /* pubsub_proto.c */
struct rc_conn_hooks;     /* conn_rt.h */
struct rc_redis_link;     /* redis_conn.h */
struct rc_redis_addr;     /* redis_conn.h */
struct rc_redis_hooks;    /* redis_conn.h */
struct rc_xnode_op;       /* presence_redis.c */
struct rc_engine_ops;     /* pubsub.h */
struct rc_tls_shard;      /* tls.h */
struct rc_tls_app;        /* tls_ctx.h */
struct rc_pubsub_hooks;   /* pubsub.h */
struct rc_jwt_rights;     /* jwt.h */
struct rc_token_keys;     /* token.c */
struct rc_namespaces;     /* namespace.h */
struct libdeflate_compressor;
struct libdeflate_decompressor;

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
	RC_CF_SSE = 1u << 12,         /* a GET /sse stream (OPEN: events, not frames) */
	RC_CF_REFUSED = 1u << 13,     /* accepted over connections_max only to answer 503 */
	RC_CF_ADMIN = 1u << 14,       /* from the admin listener: outside connections_max */
	RC_CF_PONG = 1u << 15,	      /* the queue's tail is a pong not yet handed to the kernel */
};

#define RC_CORS_ANY 255 /* rc_conn.cors: any origin may read the answer */

/* A growable byte buffer: HTTP requests (http_serve.c), charged to the budget (http). */
struct rc_buf {
	uint32_t len;
	uint32_t cap;
	uint32_t need; /* bytes the pending request needs before it is parsed again; 0 unknown */
	uint8_t data[];
};

/* A connection's send queue (sendq.c): frames in order, the head partly sent (the node
 * keeps how much). 64-bit: a single message may exceed send_queue_bytes_max. */
/* One queued frame: a reference, released when its bytes are sent or dropped. */
struct rc_qent {
	struct rc_frame *frame;
	uint32_t queued_tick; /* for send_queue_age_max_ms */
};

/*
 * A connection's queue is a ring of entries (a power of two of them), so a send gathers and a
 * completion drops frames in one linear walk, and a frame queued costs a store, not a node
 * (issue 14: a broadcast's per-delivery work was pointer chasing through scattered nodes).
 * What only the head needs lives here, not in every connection record. A ring is allocated
 * when a frame is queued to an empty queue and goes back to the shard's pool when the queue
 * empties; it doubles when full and is charged to the budget (send_queue) while in use.
 */
struct rc_qring {
	union {
		struct rc_sendop *op;	    /* the gathered send in flight that starts at head */
		struct rc_qring *next_free; /* in the shard's pool */
	};
	uint32_t cap;  /* entries: a power of two */
	uint32_t sent; /* bytes of the head frame already sent */
	struct rc_qent e[];
};

/* Sizes of empty queue rings a shard keeps for reuse: 4, 8, .. 128 entries (sendq.c). */
#define RC_QRING_CLASSES 6

struct rc_sendq {
	struct rc_qring *ring; /* the frames, in order; NULL while empty (sendq.h) */
	uint32_t head;	       /* ring index of the oldest */
	uint32_t count;	       /* frames queued */
	uint64_t bytes;	       /* queued and not yet sent */
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
			/* the POST /publish answer being sequenced (pubsub_proto.c), or NULL */
			struct rc_http_pub *http_pub;
			/* the current request's CORS answer (http_serve.c): 0 none,
			 * RC_CORS_ANY "*", else 1 + its index in app->origins */
			uint8_t cors;
		};
	};
	struct rc_sendq q;
	void *user;
	struct rc_shard *shard;
	struct rc_sub *subs; /* this connection's subscriptions */
	struct rc_zcwait *zc_wait; /* frames sent zero-copy whose notification is owed (FIFO) */
	uint32_t gen;
	uint32_t last_rx_tick;
	uint32_t rate_tokens; /* messages_per_second_max bucket, in thousandths of a message */
	uint32_t rate_tick;   /* tick of its last refill (both buckets) */
	uint32_t inflate_tokens; /* inflate_bytes_per_second_max bucket, in bytes */
	/* message_timeout_ms: the tick by which the incomplete frame or fragmented message
	 * being received must be complete; 0 while none is (session.c) */
	uint32_t msg_deadline_tick;
	uint16_t close_code; /* what on_close reports */
	uint16_t flags;	     /* enum rc_conn_flag */
	uint8_t state : 3;	  /* enum rc_conn_state */
	uint8_t close_reason : 5; /* enum rc_close_reason */
	uint8_t endpoint : 4;	  /* index into app->ws (RC_ENDPOINT_LIMIT 16) */
	uint8_t deflate_window_bits : 4; /* server_max_window_bits agreed (8..15) if DEFLATE */
	uint8_t inflight;	  /* SQEs whose completion is still owed */
	uint8_t topic_second;	  /* low 8 bits of the second of the topic bucket's refill */
	uint16_t subs_count;	  /* subscriptions_per_connection_max is at most 65535 */
	uint16_t topic_tokens;	  /* topics_per_second_max bucket, whole topics */
	bool tls; /* from the TLS listener (tls_port): bytes pass through tls_rt.c */
};

/* Idle memory per connection is the product, so a field that grows the record is a decision,
 * not an accident: small fields share bytes, and what only a queued frame needs (the head's
 * sent offset, the gathered send in flight) lives in the queue's ring header, which leaves room
 * for 64-bit queue bytes and the message deadline. The docs quote the size
 * (docs/architecture.md, README.md). */
RC_STATIC_ASSERT(sizeof(struct rc_conn) == 152, "struct rc_conn changed size: update the docs");
RC_STATIC_ASSERT(RC_CONN_DOOMED < 8, "state fits its 3 bits");
RC_STATIC_ASSERT(RC_CLOSE_REASON_COUNT <= 32, "close_reason fits its 5 bits");

/*
 * What a connection's access token said (token keys configured): one per slot beside the
 * records, so that they do not grow. Written at the upgrade, on a refresh and on each
 * POST /publish; freed when the slot closes (token.c). Shard thread only.
 */
struct rc_conn_token {
	uint64_t publisher;  /* the dedup scope of its "sub" (rc_pubsub_publisher); 0: none */
	uint64_t expires_ms; /* shard-clock ms (rc_clock) when its exp passes; 0: no expiry */
	struct rc_jwt_rights *rights; /* owned: its sub and patterns; NULL: no token */
};

/* A receive put off to a later turn: res bytes in buffer bid, or the end of the stream
 * (res <= 0, no buffer), of the connection in slot with generation gen. */
struct rc_rx_item {
	uint32_t slot;
	uint32_t gen;
	int32_t res;
	uint16_t bid;
};

/* ---- shard and application --------------------------------------------------------------- */
#define RC_ARENA_CLASSES 9 /* arena.c's size classes: 256 B .. 64 KiB chunks */

struct rc_shard {
	struct io_uring ring;
	struct rc_app *app;
	struct rc_conn *conns; /* conns_cap records, index = fixed-file index */
	struct rc_conn_token *tokens; /* conns_cap entries with token keys, else NULL */
	uint32_t conns_cap;    /* conns_limit + spare slots for refusing with a 503 */
	uint32_t conns_limit;  /* connections this shard serves (connections_max / shards) */
	uint32_t conns_refusing; /* records answering a 503 (not counted against the limit) */
	uint32_t conns_admin;    /* records from the admin listener (not counted either) */
	uint32_t conns_live;
	uint32_t *dirty; /* slots to flush, oldest first: circular, conns_cap entries */
	uint32_t dirty_head; /* the oldest entry's index */
	uint32_t dirty_count;
	int index;
	int cpu;
	int listen_fd;
	int admin_fd; /* the admin listener (admin_port), shard 0 only; -1 otherwise */
	int tls_fd;   /* the TLS listener (tls_port); -1 without one */
	int wake_fd;	   /* eventfd doorbell for other threads */
	uint64_t wake_buf; /* target of the doorbell's read */
	bool accept_armed;
	bool admin_accept_armed;
	bool tls_accept_armed;
	bool wake_armed;
	bool draining;
	bool running;
	struct rc_clock clock; /* now_ms of this turn, ticks of the wheel */
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
	struct rc_qring *qring_free[RC_QRING_CLASSES]; /* empty queue rings by size (sendq.c) */
	uint64_t qring_free_bytes;  /* what they hold, bounded (rc_qring_pool_bytes_max) */
	uint32_t qring_free_count;
	struct rc_sendop *sendop_free;
	uint32_t sendop_free_count; /* at most RC_SENDOP_POOL_LIMIT */
	struct rc_sendop *sendop_small_free; /* RC_SEND_IOV_SMALL operations */
	uint32_t sendop_small_free_count;    /* at most one per live connection (or 64) */
	struct rc_shard_stats stats;
	/* pub/sub */
	struct rc_mpsc inbox;          /* any shard or thread produces; this shard consumes */
	struct rc_outbox *outbox;      /* one per target shard */
	struct rc_topic_table ltopics; /* topics with local subscribers (rc_ltopic) */
	struct rc_topic_table otopics; /* topics this shard owns (rc_otopic) */
	uint64_t topics_created;       /* owned topics ever created: their epochs' counter */
	/* owned topics holding history, least recently published first (pubsub.c) */
	struct rc_otopic *hist_oldest;
	struct rc_otopic *hist_newest;
	/* engine = redis: instance i's command link at [2i], subscriber link at [2i+1] */
	struct rc_redis_link *redis_links;
	uint64_t redis_rand; /* xorshift state: reconnect jitter */
	uint64_t xnode_refresh_ms; /* next refresh of this node's presence entries (owned topics) */
	uint64_t xnode_beat_ms;    /* shard 0: next node registry heartbeat */
	uint64_t xnode_rewrite;    /* bit i: instance i's entries are rewritten whole at the next
				    * refresh (its command link came up) */
	struct rc_xnode_op *xnode_ops; /* presence changes of this turn, flushed at its end */
	uint32_t xnode_ops_count;
	uint32_t xnode_ops_cap;
	char *scratch;                 /* publish data parsing */
	size_t scratch_cap;
	/* permessage-deflate: one codec per shard, nothing per connection */
	struct libdeflate_compressor *deflater;
	struct libdeflate_decompressor *inflater;
	/* deflate_echo_level: used while a message that arrived compressed is handled */
	struct libdeflate_compressor *echo_deflater;
	bool in_deflated; /* a compressed message's on_message is running */
	uint8_t *zbuf; /* compression and inflation output, grown on demand */
	size_t zbuf_cap;
	uint8_t *ibuf; /* inflation output */
	size_t ibuf_cap;
	const uint8_t *rx_end; /* end of the receive buffer being parsed (tail room check) */
	/* receives_per_turn_max (conn.c): per slot, the receives handled this turn and whether
	 * its receiving is paused (one byte per connection); the slots counted this turn; and
	 * the receives put off to a later turn, in arrival order, each holding its buffer. */
	uint8_t *rx_turn;
	uint32_t *rx_touched;
	uint32_t rx_touched_count;
	struct rc_rx_item *rx_fifo;
	uint32_t *rx_paused; /* slots whose receive is cancelled while theirs wait */
	uint32_t rx_paused_count;
	uint32_t rx_fifo_count;
	uint32_t rx_fifo_cap; /* recv_buffers + cqe_batch_max: every buffer, and one end each */
	uint64_t next_sweep_ms;
	uint32_t mem_tick;  /* tick of the last memory step (memory.c) */
	uint8_t mem_level;  /* enum rc_budget_level as of that step: admission reads it */
	/* this shard's slice of the registered frame arena (arena.c) */
	uint8_t *arena_bump;
	uint8_t *arena_end;
	void *arena_free[RC_ARENA_CLASSES]; /* free chunks per class, linked through their start */
	struct rc_token_keys *token_keys; /* this shard's reference to the key set (token.c) */
	unsigned token_keys_gen;          /* app->token_keys_gen when it was taken */
	struct rc_tls_shard *tls; /* TLS records by slot, with tls_port only (tls.c) */
	pthread_t thread;
	int start_rc; /* 0 or -errno from the thread's setup */
	char start_err[160];
};

#define RC_ENDPOINT_LIMIT 16
RC_STATIC_ASSERT(RC_ENDPOINT_LIMIT <= 16, "rc_conn.endpoint fits its 4 bits");
#define RC_CONN_SPARE_SLOTS 64 /* per shard, for answering 503 over connections_max */
#define RC_HTTP_OUT_BYTES_MIN (256u * 1024u) /* body room of a plain HTTP endpoint's answer */

struct rc_ws_endpoint {
	char path[64];
	struct rc_ws_handler h;
	struct rc_ws_limits limits;
};

struct rc_http_endpoint {
	char path[64];
	rc_http_fn fn; /* NULL for a static asset (rc_app_asset) */
	void *ctx;
	const void *asset; /* a static asset's bytes, its length, type and ETag (borrowed) */
	size_t asset_len;
	const char *asset_type;
	const char *etag;
};

/* Who may publish from a WebSocket client (client_publish). */
enum rc_client_publish {
	RC_CLIENT_PUBLISH_ANY = 0,
	RC_CLIENT_PUBLISH_SUBSCRIBED, /* only to topics it subscribed to */
	RC_CLIENT_PUBLISH_NONE,
};

/* Set up by the main thread before the shards start; read-only for them, except the atomics. */
struct rc_app {
	struct rc_config cfg;
	struct rc_shard *shards;
	int shards_count;
	int port; /* bound port */
	int tls_port; /* bound TLS port, 0 without a TLS listener */
	struct rc_tls_app *tls; /* certificates and ticket keys (tls_ctx.c), NULL without */
	uint32_t conns_per_shard;
	uint32_t conns_spare;
	size_t http_out_bytes; /* body room for HTTP handlers: /metrics at this shard count fits */
	struct rc_ws_endpoint ws[RC_ENDPOINT_LIMIT];
	int ws_count;
	struct rc_http_endpoint http[RC_ENDPOINT_LIMIT];
	int http_count;
	struct rc_slice origins[RC_ORIGINS_LIMIT];
	size_t origins_count;
	struct rc_slice subprotocols[RC_SUBPROTOCOLS_LIMIT];
	size_t subprotocols_count;
	char *origins_buf;
	char *subprotocols_buf;
	int log_level; /* 0 error .. 3 debug */
	bool drop_slow; /* slow_consumer_policy = drop */
	bool latest_slow; /* slow_consumer_policy = latest */
	enum rc_client_publish client_publish;
	int pubsub_ws;  /* index of the pub/sub endpoint in ws[], -1 if none */
	char publish_path[64]; /* POST endpoint of the backend publish API, "" if none */
	char sse_path[64];     /* GET endpoint of Server-Sent Events streams, "" if none */
	/* The calls lower layers make into higher ones, wired by rc_app_create (app.c). */
	const struct rc_conn_hooks *conn_hooks;
	const struct rc_pubsub_hooks *pubsub_hooks;
	/* engine = redis: how owners sequence (NULL: in memory), the instances, the links'
	 * hooks; set by rc_app_create, read-only after */
	const struct rc_engine_ops *engine;
	struct rc_redis_addr *redis_addrs;
	const char **redis_names; /* the redis_addresses entries, for placement */
	char *redis_names_buf;
	uint32_t redis_count;
	char redis_sha[41]; /* of the engine's Lua script (rc_redis_script_sha) */
	const struct rc_redis_hooks *redis_hooks;
	char xnode_sha[41];      /* of the nodes' script (rc_xnode_script_sha, presence_redis.c) */
	uint64_t conn_id_salt;   /* engine = redis: random, top bit clear, XORed into connection
				  * ids so they differ across nodes; 0 with the memory engine */
	struct rc_pmd_config pmd; /* permessage-deflate settings */
	uint64_t epoch_key;       /* random per process: topic epochs differ across restarts */
	uint8_t *arena;        /* registered frame arena (fixed buffer 0 of every ring) */
	size_t arena_bytes;
	struct rc_budget budget; /* memory_budget_bytes, charged per shard (mem.h) */
	const char *budget_source; /* where the budget came from, for the start log */
	int shards_started; /* threads started by rc_app_run (main thread only) */
	atomic_bool stopping;
	atomic_bool drain_forced; /* a second stop: drains end now (main thread writes) */
	atomic_int shards_exited; /* pairs with the main thread's acquire load in run */
	atomic_int shards_ready;  /* likewise: shards whose setup finished (start_rc is set) */
	/* JWT verification (token.c): keys replaced by the main thread on reload. */
	bool auth;                      /* a token key is configured: tokens are required */
	uint32_t token_algs;            /* token_algorithms, bits of enum rc_jwt_alg */
	pthread_mutex_t token_lock;     /* guards token_keys against a concurrent reload */
	struct rc_token_keys *token_keys; /* the current key set, one reference */
	atomic_uint token_keys_gen;     /* bumped (release) after each replacement */
	int64_t token_files_mtime[2];   /* ns of token_public_key_file and token_jwks_file */
	struct rc_namespaces *namespaces; /* parsed from cfg.namespaces; never NULL once created */
	uint64_t token_checked_ms;      /* main thread: when the files were last looked at */
};

/* ---- the calling thread ------------------------------------------------------------------ */
/* The shard whose thread this is, NULL on any other thread (main, embedders' threads). Set
 * once by the shard thread (rc_runtime_enter); read by the same thread only. */
extern _Thread_local struct rc_shard *rc_current_shard;

/* Makes s the calling thread's shard (rc_current_shard, and the shard that assertion
 * messages name). Borrows s for the thread's life. Shard thread, first thing. */
void rc_runtime_enter(struct rc_shard *s);

/* The application whose memory this thread's frees release (mem.h): its shard's app on a
 * shard thread, the app being destroyed on the thread tearing it down, NULL otherwise. */
extern _Thread_local struct rc_app *rc_current_app;

#endif
