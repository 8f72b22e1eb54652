/*
 * ringcast-bench: the load generator's shared types. One process; --threads worker threads,
 * each owning one io_uring ring, its share of the connections, its provided-buffer ring and its
 * statistics. The main thread sequences the run's phases through one atomic and merges the
 * workers' results after joining them; workers share nothing mutable with each other.
 *
 * Modules: opts.c (command line), loop.c (rings, sockets, completions), wsproto.c (WebSocket
 * client side and payloads), traffic.c (what each scenario does per connection), pubsub.c
 * (broadcast), main.c (phases, limits), report.c (JSON and summary), stats.c (counters,
 * histogram). Symbols are prefixed rcb_ so they never collide with libringcast's rc_.
 */
#ifndef RCB_BENCH_H
#define RCB_BENCH_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/rc_util.h"
#include "stats.h"

#define RCB_KEYS 64		 /* precomputed Sec-WebSocket-Key/Accept pairs */
#define RCB_HDR_LIMIT 14	 /* a frame header, even a (wrongly) masked one */
#define RCB_ASM_LIMIT (1u << 20) /* largest message assembled (broadcast, handshake) */
#define RCB_TX_LIMIT (16u << 20) /* largest backlog of unsent bytes per connection */
#define RCB_THREADS_LIMIT 64
#define RCB_TOPICS_LIMIT 4096
#define RCB_SERIES_BIN_NS 100000000ull /* reconnect/RSS time series: 100 ms bins */
#define RCB_SERIES_LIMIT 36000	       /* one hour of bins */

enum rcb_scenario {
	RCB_SC_CONNECT = 0,
	RCB_SC_ECHO,
	RCB_SC_BROADCAST,
	RCB_SC_CHURN,
	RCB_SC_SPIKE,
	RCB_SC_ENDURANCE,
	RCB_SC_RECONNECT,
	RCB_SC__COUNT,
};

enum rcb_pub_via {
	RCB_PUB_WS = 0,
	RCB_PUB_HTTP,
};

/* Everything the command line sets (opts.c); read-only once the workers start. */
struct rcb_config {
	enum rcb_scenario scenario;
	struct sockaddr_in dst;
	char host[80];		  /* Host header, "ip:port" */
	char path[256];		  /* request target of the upgrade */
	uint32_t connections;	  /* N: connections held through the run */
	uint32_t threads;	  /* worker threads, one ring each */
	double rate;		  /* connection opens per second; 0 = all at once */
	double duration_s;	  /* measure (or hold) phase */
	double warmup_s;	  /* echo: traffic before measuring */
	double drain_s;		  /* bound on waiting for outstanding messages */
	double connect_timeout_s; /* connect start to 101 */
	double close_timeout_s;	  /* close frame sent to the server's answer */
	double ramp_timeout_s;	  /* bound on the ramp; default from N and rate */
	uint32_t inflight;	  /* K: messages in flight per connection */
	uint32_t size;		  /* S: payload bytes per message */
	double msg_rate;	  /* open-loop messages/s per connection; 0 = closed loop */
	uint32_t burst;		  /* spike: connects issued at once */
	double churn_rate;	  /* churn: connect-handshake-close cycles per second */
	uint32_t src_count;	  /* source addresses 127.0.0.2 ...; 0 = let the kernel pick */
	uint32_t recv_buf_size;	  /* bytes per provided receive buffer */
	uint32_t recv_bufs;	  /* provided buffers per ring (power of two) */
	bool raw;		  /* plain TCP echo, no WebSocket (the raw floor) */
	bool tls;		  /* wss:// (tls.c): every connection makes a full TLS handshake */
	bool text;		  /* echo with text frames instead of binary */
	bool direct;		  /* io_uring direct descriptors instead of process fds */
	bool quiet;		  /* no human summary */
	bool progress;		  /* phase changes on stderr as they happen */
	const char *sub_msg;	  /* broadcast: subscribe text, %t = topic */
	const char *pub_msg;	  /* broadcast: publish text, %t = topic, %d = data */
	const char *topic;	  /* broadcast: topic name prefix */
	uint32_t topics;	  /* broadcast: subscribers spread over this many topics */
	double pub_rate;	  /* broadcast: publishes per second */
	enum rcb_pub_via pub_via; /* broadcast: WebSocket frames or HTTP POST */
	char pub_path[128];	  /* broadcast: HTTP publish path */
	struct sockaddr_in pub_dst; /* broadcast: where the publisher connects (--pub-port) */
	double settle_s;	  /* broadcast: wait after subscribing before publishing */
	bool sub_ack;		  /* broadcast: subscribed = answered, not sent */
	double backoff_base_s;	  /* reconnect: first delay */
	double backoff_factor;	  /* reconnect: growth per failed attempt */
	double backoff_cap_s;	  /* reconnect: longest delay */
	double jitter;		  /* reconnect: +- fraction of each delay, 0..1 */
	int server_pid;		  /* server to observe (RSS, CPU), 0 = none */
	double sample_s;	  /* endurance: RSS sampling period */
	const char *series_out;	  /* CSV file for time series (reconnect, endurance) */
	const char *label;	  /* free text copied into the JSON line */
	uint32_t dump_other;	  /* broadcast: unexpected messages dumped to stderr at most */
	uint64_t seed;
};

/* The run's phases, advanced only by the main thread. */
enum rcb_phase {
	RCB_PH_RAMP = 0,  /* opening the N held connections at --rate */
	RCB_PH_SUBSCRIBE, /* broadcast: subscribing, then settling */
	RCB_PH_WARMUP,	  /* traffic, not measured */
	RCB_PH_MEASURE,	  /* traffic, measured */
	RCB_PH_DRAIN,	  /* no new traffic; waiting for what is outstanding */
	RCB_PH_CLOSE,	  /* closing everything politely */
	RCB_PH_DONE,	  /* workers exit */
};

enum rcb_conn_state {
	RCB_CS_IDLE = 0,   /* slot unused */
	RCB_CS_BACKOFF,	   /* waiting to reconnect at t0_ns */
	RCB_CS_CONNECTING, /* socket/bind/connect chain in flight */
	RCB_CS_HANDSHAKE,  /* upgrade request sent, waiting for the 101 */
	RCB_CS_OPEN,
	RCB_CS_CLOSING,	 /* our close frame sent, waiting for the server's */
	RCB_CS_SHUTDOWN, /* descriptor closing; the slot frees when ops reaches 0 */
};

enum rcb_role {
	RCB_ROLE_HOLD = 0,  /* one of the N connections held through the run */
	RCB_ROLE_CHURN,	    /* churn: connects, handshakes, closes */
	RCB_ROLE_BURST,	    /* spike: part of the burst */
	RCB_ROLE_PUBLISHER, /* broadcast: publishes (thread 0 only) */
};

/* Connection flags. */
#define RCB_CF_RECV_ARMED 0x0001   /* a multishot recv is in flight */
#define RCB_CF_SENDING 0x0002	   /* tx_out is in the kernel */
#define RCB_CF_DIRTY 0x0004	   /* on the thread's dirty list (tx_pend waits) */
#define RCB_CF_REARM 0x0008	   /* on the thread's re-arm list */
#define RCB_CF_SUBSCRIBED 0x0010   /* broadcast: the subscribe message went out */
#define RCB_CF_CONNECTED 0x0020	   /* TCP established in this attempt */
#define RCB_CF_WE_CLOSE 0x0040	   /* the close was ours: not an unexpected close */
#define RCB_CF_WAS_OPEN 0x0080	   /* reached OPEN in this attempt */
#define RCB_CF_SERVER_CLOSE 0x0100 /* the server sent a close frame first */
#define RCB_CF_HAS_SOCKET 0x0200   /* a descriptor exists and must be closed */
#define RCB_CF_FAILED 0x0400	   /* this attempt's failure is already counted */
#define RCB_CF_PEER_CLOSED 0x0800  /* the server sent close: shut down once our reply is out */
#define RCB_CF_FIN 0x1000	   /* the frame being received ends its message */
#define RCB_CF_BAD 0x2000	   /* the message being received differs from what was sent */
#define RCB_CF_RETRY 0x4000	   /* reconnect: this attempt follows a loss */
#define RCB_CF_SUB_ANSWERED 0x8000 /* broadcast: a message came after the subscribe */

/* Flags that outlive attempts (rcb_conn.life). */
#define RCB_LF_SETTLED 0x01 /* the first attempt ended (open or failed) */
#define RCB_LF_OPENED 0x02  /* reached OPEN at least once */
#define RCB_LF_LOST 0x04    /* an open connection ended by the server (close frame or cut) */

/* One client connection. Owned by its thread; ~150 bytes, no buffers while idle. */
struct rcb_conn {
	uint64_t t0_ns;	     /* attempt start; BACKOFF: due time; CLOSING: close start */
	uint64_t tx_seq;     /* echo: next sequence to send */
	uint64_t rx_seq;     /* echo: next sequence expected (tx_seq - rx_seq are in flight) */
	uint64_t frame_left; /* payload bytes still to come in the current frame */
	uint64_t last_seq;   /* broadcast: last server "seq" seen + 1, 0 = none */
	uint64_t next_index; /* broadcast: publisher index expected next ("i=") */
	uint8_t *tx_out;     /* bytes in the kernel (owned); stable until the send completes */
	uint8_t *tx_pend;    /* bytes queued behind them (owned) */
	uint8_t *asm_buf;    /* handshake answer, split message, control payload (owned) */
	struct rcb_tls *tls; /* wss://: the TLS client (tls.c), NULL otherwise (owned) */
	uint32_t tx_out_len;
	uint32_t tx_out_cap;
	uint32_t tx_pend_len;
	uint32_t tx_pend_cap;
	uint32_t asm_len;
	uint32_t asm_cap;
	uint32_t rx_off; /* bytes of the current message (raw: of the current S-byte unit) */
	uint32_t ctl_at; /* where the control payload being received starts in asm_buf */
	uint32_t id;	 /* run-wide number: slot * threads + thread index */
	uint32_t gen;	 /* life of this slot, 24 bits in user_data */
	int32_t fd;	 /* direct slot or plain fd; -1 none */
	uint16_t flags;	 /* RCB_CF_* */
	int16_t err;	 /* first errno of this attempt */
	uint8_t state;	 /* enum rcb_conn_state */
	uint8_t role;	 /* enum rcb_role */
	uint8_t ops;	 /* completions still to come */
	uint8_t attempt; /* reconnect: consecutive failed attempts */
	uint8_t msg_op;	 /* data message in progress: 0, TEXT or BINARY */
	uint8_t ctl_op;	 /* control frame in progress, 0 none */
	uint8_t hdr_len; /* bytes of a split frame header in hdr */
	uint8_t life;	 /* RCB_LF_* */
	uint8_t hdr[RCB_HDR_LIMIT];
};

struct rcb_run;

/* One worker: a ring and everything it owns. */
struct rcb_thread {
	struct io_uring ring;
	struct rcb_run *run;
	struct rcb_conn *conns;
	uint64_t *sent_ns;    /* echo: conns_count * K send times, by sequence % K */
	uint32_t *free_slots; /* stack of IDLE slots */
	uint32_t *dirty;      /* slots with bytes waiting in tx_pend */
	uint32_t *rearm;      /* slots whose multishot recv ended */
	uint32_t conns_count; /* slots (fixed-file table size in direct mode) */
	uint32_t free_count;
	uint32_t dirty_count;
	uint32_t rearm_count;
	uint32_t index;
	uint32_t hold_target; /* held connections this thread opens */
	uint32_t hold_started;
	uint32_t burst_target; /* spike: this thread's share of the burst */
	uint64_t burst_started;
	uint32_t pending;     /* conns in BACKOFF/CONNECTING/HANDSHAKE/CLOSING/SHUTDOWN */
	uint32_t open_count;  /* conns in OPEN */
	uint32_t alive_count; /* conns not IDLE */
	uint32_t br_returned; /* buffers given back in this loop turn */
	uint32_t peak_open;
	uint32_t rr_next; /* open-loop round-robin position */
	int publisher;	  /* slot of the publisher, -1 none */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	size_t br_bytes;
	uint64_t now_ns;  /* time at the top of this loop turn */
	uint64_t scan_ns; /* next timeout/backoff scan */
	uint64_t churn_started;
	uint64_t published;	    /* broadcast publisher: messages issued */
	uint64_t pub_acked;	    /* broadcast HTTP publisher: answers read */
	uint64_t outstanding_local; /* echo: messages sent and not yet back */
	uint64_t received_local;    /* broadcast: messages received */
	uint64_t first_loss_ns;	    /* reconnect: first open connection lost, 0 = none */
	uint64_t last_back_ns;	    /* reconnect: last reconnection completed */
	double open_loop_credit;    /* open-loop messages due but not yet sent */
	uint64_t credit_ns;	    /* when the credit was last topped up */
	uint32_t settled_local;	    /* published as settled */
	uint32_t subscribed_local;  /* published as subscribed */
	uint32_t answered_local;    /* published as answered */
	bool publisher_started;
	char *scratch; /* broadcast: message text being built (owned) */
	uint32_t scratch_cap;
	int seen_phase;
	uint64_t rng;
	uint32_t *series;	   /* reconnect attempts per 100 ms bin, RCB_SERIES_LIMIT */
	uint64_t *topic_published; /* thread 0: publishes per topic */
	uint32_t dumped;	   /* --dump-other: messages dumped so far */
	/* Progress read by the main thread; relaxed stores here, relaxed loads there. */
	_Atomic uint32_t open_now;    /* connections in OPEN */
	_Atomic uint32_t settled;     /* held/burst connects that finished (open or failed) */
	_Atomic uint32_t subscribed;  /* broadcast: subscriptions sent */
	_Atomic uint32_t answered;    /* broadcast: subscriptions answered (--sub-ack) */
	_Atomic uint64_t outstanding; /* echo: messages in flight */
	_Atomic uint64_t received;    /* broadcast: messages received by subscribers */
	_Atomic uint32_t alive;	      /* slots not IDLE */
	_Atomic int ready;	      /* 1 set up, -errno failed, 0 not yet */
	_Atomic int finished;	      /* the loop has exited */
	struct rcb_stats stats;
	pthread_t tid;
};

/* The whole run: read-mostly, shared by every thread. */
struct rcb_run {
	const struct rcb_config *cfg;
	struct rcb_thread *threads;
	_Atomic int phase; /* enum rcb_phase; release store by main, acquire loads */
	uint64_t start_ns;
	uint64_t measure_start_ns;
	uint64_t measure_end_ns;
	uint64_t deadline_ns;		      /* hard end: workers stop even with work left */
	struct sockaddr_in *src;	      /* cfg->src_count source addresses */
	uint32_t *subs_per_topic;	      /* broadcast: subscribers of each topic */
	_Atomic uint64_t expected_deliveries; /* broadcast: published x subscribers, so far */
	uint32_t slots_limit;		      /* per-ring slot cap from RLIMIT_NOFILE */
	bool use_direct;		      /* direct descriptors and in-ring bind (probed) */
	bool ring_bind;			      /* IORING_OP_BIND + URING_CMD setsockopt work */
	bool whole_messages;		      /* deliver assembled messages (broadcast) */
	const char *capped_by;		      /* limit that lowered N before the run, or NULL */
	uint32_t connections_asked;
	char keys[RCB_KEYS][25];
	char accepts[RCB_KEYS][29];
};

/* opts.c */
/* Parses argv into cfg. Returns 0, 1 when --help was printed, or -EINVAL (message printed). */
int rcb_opts_parse(int argc, char **argv, struct rcb_config *cfg);
const char *rcb_scenario_name(enum rcb_scenario sc);

/* loop.c — all but probe/main/teardown run on the owning worker thread. */
/* Checks io_uring features once (main thread); sets run->ring_bind. 0 or -errno (printed). */
int rcb_loop_probe(struct rcb_run *run);
/* The worker thread's body: sets up its ring, loops until DONE or the deadline. */
void *rcb_loop_main(void *arg);
/* Releases a joined worker's ring and buffers (main thread). */
void rcb_loop_teardown(struct rcb_thread *t);
/* Begins an attempt: the socket/bind/connect(/upgrade) chain. c is IDLE or BACKOFF. */
void rcb_conn_start(struct rcb_thread *t, struct rcb_conn *c);
/* Ends an attempt or connection that failed (err > 0): counts it once, then shuts down. */
void rcb_conn_lose(struct rcb_thread *t, struct rcb_conn *c, int err);
/* Counts the loss once without closing yet (a close handshake the server started). */
void rcb_conn_note_loss(struct rcb_thread *t, struct rcb_conn *c, int err);
/* Closes the descriptor; the slot is released when its last completion arrives. */
void rcb_conn_shutdown(struct rcb_thread *t, struct rcb_conn *c);
/* Queues c for sending its tx_pend bytes in this loop turn. */
void rcb_conn_mark_dirty(struct rcb_thread *t, struct rcb_conn *c);
/* Moves c to state s, keeping the thread's open/alive/pending counts. */
void rcb_conn_set_state(struct rcb_thread *t, struct rcb_conn *c, enum rcb_conn_state s);
/* An IDLE slot for a new connection of role, or NULL when every slot is taken. */
struct rcb_conn *rcb_conn_alloc(struct rcb_thread *t, enum rcb_role role);
/* Gives back a slot with nothing in the kernel (BACKOFF at the end of a run). */
void rcb_conn_free(struct rcb_thread *t, struct rcb_conn *c);
uint64_t rcb_now_ns(void);

/* wsproto.c */
uint64_t rcb_rng_next(struct rcb_thread *t);
/* Grows *buf to hold need bytes (doubling, at most limit); false past limit or out of memory. */
bool rcb_buf_grow(uint8_t **buf, uint32_t *cap, size_t need, size_t limit);
/* Offset just past the "\r\n\r\n" ending an HTTP head, 0 if not there yet. */
size_t rcb_http_head_end(const uint8_t *p, size_t n);
void rcb_ws_build_request(struct rcb_thread *t, struct rcb_conn *c);
/* The upgrade request queued in tx_pend (wss://: sent encrypted once TLS is up). */
void rcb_ws_queue_request(struct rcb_thread *t, struct rcb_conn *c);
void rcb_ws_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n);
uint8_t *rcb_tx_reserve(struct rcb_thread *t, struct rcb_conn *c, size_t n);
void rcb_ws_queue_frame(struct rcb_thread *t, struct rcb_conn *c, uint8_t opcode,
			const uint8_t *payload, size_t len);
void rcb_ws_queue_echo(struct rcb_thread *t, struct rcb_conn *c);
void rcb_ws_close(struct rcb_thread *t, struct rcb_conn *c, uint16_t code);
void rcb_conn_free_buffers(struct rcb_conn *c);
/* Frees what an idle connection need not hold: the send buffers (nothing in flight or
 * pending), and the assembly buffer unless it holds the first part of something. */
void rcb_conn_trim_buffers(struct rcb_conn *c);
void rcb_payload_fill(uint8_t *p, size_t size, uint32_t id, uint64_t seq);
bool rcb_payload_check(const uint8_t *p, size_t n, size_t off, uint32_t id, uint64_t seq);

/* tls.c — wss://; tx_pend holds plaintext, tx_out ciphertext. */
/* Makes the client context (main thread, before the workers). 0 or -ENOMEM. */
int rcb_tls_init(void);
/* A new TLS client for c's attempt; its ClientHello is put in tx_out (nothing in flight). */
void rcb_tls_start(struct rcb_conn *c);
/* Server bytes p[0..n) for c: the handshake advances (then the upgrade request is queued) or
 * the plaintext goes to rcb_ws_rx. */
void rcb_tls_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n);
/* Encrypts tx_pend (once established) and moves what is due into tx_out; false if nothing
 * is to be sent. Nothing may be in flight. */
bool rcb_tls_seal(struct rcb_conn *c);
/* Whether c has bytes for rcb_tls_seal. */
bool rcb_tls_pending(const struct rcb_conn *c);
void rcb_tls_free(struct rcb_conn *c);

/* traffic.c */
void rcb_traffic_tick(struct rcb_thread *t);
void rcb_traffic_on_open(struct rcb_thread *t, struct rcb_conn *c);
void rcb_traffic_on_echo(struct rcb_thread *t, struct rcb_conn *c, bool payload_ok);
bool rcb_traffic_on_released(struct rcb_thread *t, struct rcb_conn *c);
void rcb_traffic_on_lost(struct rcb_thread *t, struct rcb_conn *c, int err);
bool rcb_traffic_keeps_tx(const struct rcb_thread *t, const struct rcb_conn *c);
/* How long the loop may sleep before timed work (opens, sends, publishes) is due. */
uint64_t rcb_traffic_wait_ns(const struct rcb_thread *t);
bool rcb_measuring(const struct rcb_thread *t);
int rcb_phase(const struct rcb_thread *t);

/* pubsub.c */
void rcb_pubsub_subscribe(struct rcb_thread *t, struct rcb_conn *c);
void rcb_pubsub_on_message(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *msg,
			   size_t len);
void rcb_pubsub_publish_tick(struct rcb_thread *t);
void rcb_pubsub_http_rx(struct rcb_thread *t, struct rcb_conn *c, const uint8_t *p, size_t n);
uint64_t rcb_pubsub_expected(const struct rcb_run *run);
/* Counts what subscribers never received: missing, or undelivered where their connection
 * ended first (the server closed it, or the bench when the drain ran out: !drained). */
void rcb_pubsub_finish(struct rcb_run *run, struct rcb_stats *total, bool drained);

/* report.c — the main thread. */
struct rcb_proc_sample {
	uint64_t rss_kb;
	uint64_t cpu_ticks; /* utime + stime, clock ticks */
	uint64_t user_ticks; /* utime alone: the kernel's share is cpu_ticks - user_ticks */
	bool ok;
};

struct rcb_series_point {
	uint64_t t_ns; /* since the run started */
	uint32_t open;
	uint64_t rss_kb;
};

/* What the main thread gathers while the run goes, and the merged outcome. */
struct rcb_result {
	struct rcb_stats total;
	struct rcb_proc_sample srv_before; /* before the first connect */
	struct rcb_proc_sample srv_ramped; /* after the ramp */
	struct rcb_proc_sample srv_start;  /* measure phase start */
	struct rcb_proc_sample srv_end;	   /* measure phase end */
	uint64_t srv_rss_max_kb;
	uint64_t missing_after_drain; /* echoes never answered on live connections */
	bool drained;		      /* broadcast: all expected deliveries came */
	double measure_s;
	double ramp_s;
	double wall_s;
	double self_user_s;
	double self_sys_s;
	uint32_t open_at_end;
	uint32_t peak_open;
	const char *stopped_by; /* the limit that stopped the run, NULL = none */
	struct {
		double first_loss_s; /* since run start, <0 = none */
		double all_back_s;   /* first loss to the last reconnection, <0 = not all back */
		double peak_rate;    /* attempts/s in the busiest 100 ms bin */
		double mean_rate;    /* attempts/s over bins with attempts */
		double stddev_s;     /* standard deviation of attempt times */
		double span_s;	     /* first to last bin with attempts */
	} rc;
	uint64_t next_sample_ns;
	uint32_t points_count;
	struct rcb_series_point points[RCB_SERIES_LIMIT];
	uint32_t attempts[RCB_SERIES_LIMIT]; /* reconnect attempts per bin, all threads */
};

/* Reads utime+stime and VmRSS of pid; .ok false when it is gone or pid is 0. */
struct rcb_proc_sample rcb_proc_sample(int pid);
/* Records one time-series point when a 100 ms bin has passed; tracks peak open. */
void rcb_sample_tick(struct rcb_run *run, struct rcb_result *res);
/* Merges the joined workers' results, prints JSON and summary; returns the exit status. */
int rcb_report(struct rcb_run *run, struct rcb_result *res);

#endif
