/*
 * Statistics of ringcast-bench: counters (traffic, and the correctness errors that fail a
 * run), the kernel limits a failed connect points at, and a log-linear latency histogram.
 *
 * The histogram: every power-of-two range of values is split
 * into 2^RCB_HIST_SUB_BITS equal sub-buckets, so a recorded value is known to within 1/128
 * (0.8 %) of itself at any magnitude, with a fixed 36 KiB of counters and O(1) recording.
 * Values are nanoseconds; anything above RCB_HIST_VALUE_LIMIT lands in the top bucket (max
 * stays exact). Not thread-safe: each worker owns its histograms, the main thread merges them
 * after join.
 */
#ifndef RCB_STATS_H
#define RCB_STATS_H

#include <stdbool.h>
#include <stdint.h>

#define RCB_HIST_SUB_BITS 7
#define RCB_HIST_SUB_COUNT (1u << RCB_HIST_SUB_BITS)
#define RCB_HIST_SHIFT_LIMIT 34 /* values up to 2^41 ns (about 36 minutes) */
#define RCB_HIST_BUCKETS ((RCB_HIST_SHIFT_LIMIT + 2) * RCB_HIST_SUB_COUNT)
#define RCB_HIST_VALUE_LIMIT (((uint64_t)2 * RCB_HIST_SUB_COUNT << RCB_HIST_SHIFT_LIMIT) - 1)

struct rcb_hist {
	uint64_t count;
	uint64_t sum; /* for the mean; wraps only after 584 years of total latency */
	uint64_t min; /* exact; UINT64_MAX while empty */
	uint64_t max; /* exact */
	uint64_t buckets[RCB_HIST_BUCKETS];
};

/* Empties h. */
void rcb_hist_init(struct rcb_hist *h);

/* Records one value (ns). */
void rcb_hist_record(struct rcb_hist *h, uint64_t value);

/* Adds every count of src into dst. */
void rcb_hist_merge(struct rcb_hist *dst, const struct rcb_hist *src);

/*
 * Returns the value at quantile q (0 < q <= 1): the highest value equivalent to the bucket
 * holding the ceil(q * count)-th smallest sample, clamped to the exact max. 0 when empty.
 */
uint64_t rcb_hist_quantile(const struct rcb_hist *h, double q);

/* Bucket index of a value and the highest value that maps to an index (exposed for tests). */
uint32_t rcb_hist_index(uint64_t value);
uint64_t rcb_hist_highest(uint32_t index);

/* Runs the histogram's self-checks (index/bucket round trips, error bound); false if broken. */
bool rcb_hist_selftest(void);

/* What one worker counts. Names (for JSON) and which ones are errors live in stats.c. */
enum rcb_counter {
	RCB_C_CONNECT_STARTED = 0,
	RCB_C_CONNECTED,	 /* TCP connect completed */
	RCB_C_OPENED,		 /* handshake completed (--raw: connected) */
	RCB_C_CONNECT_FAILED,	 /* error: socket/bind/connect failed or timed out */
	RCB_C_HANDSHAKE_FAILED,	 /* error: no valid 101 */
	RCB_C_CLOSED,		 /* closes we started that completed */
	RCB_C_UNEXPECTED_CLOSES, /* error: the server closed or reset an open connection */
	RCB_C_MSGS_SENT,
	RCB_C_MSGS_RECV, /* messages received in the measure phase (the rate's numerator) */
	RCB_C_MSGS_RECV_TOTAL,
	RCB_C_BYTES_SENT,
	RCB_C_BYTES_RECV,
	RCB_C_WRONG_PAYLOAD,   /* error: echo payload or length differs from what was sent */
	RCB_C_GAPS,	       /* error: a sequence number was skipped */
	RCB_C_DUPLICATES,      /* error: a sequence number came again */
	RCB_C_OUT_OF_ORDER,    /* error: a sequence number went backwards */
	RCB_C_MISSING,	       /* error: messages sent/published and never received */
	RCB_C_PROTOCOL_ERRORS, /* error: malformed frames or HTTP answers from the server */
	RCB_C_PUB_ERRORS,      /* error: publishes the server refused (HTTP non-2xx) */
	RCB_C_SKIPPED_SENDS,   /* open-loop sends skipped because K were already in flight */
	RCB_C_ENOBUFS,	       /* receive re-armed after the provided-buffer ring ran dry */
	RCB_C_PINGS,	       /* server pings answered */
	RCB_C_DISCONNECTS,     /* reconnect: open connections lost (expected there) */
	RCB_C_RECONNECT_ATTEMPTS,
	RCB_C_RECONNECTED,
	RCB_C_CHURN_CYCLES, /* churn: connect, handshake and close completed */
	RCB_C_PUBLISHED,
	RCB_C_OTHER_MSGS,	/* messages that are not the bench's (acks, server notices) */
	RCB_C_STALE_CQES,	/* completions of an earlier life of a slot, dropped */
	RCB_C_CLOSED_BY_SERVER, /* open connections the server closed with a close frame */
	RCB_C_UNDELIVERED,	/* broadcast: never received because the connection ended
				 * first (server close, cut, or the bench after --drain) */
	RCB_C__COUNT,
};

/* The limit a failed socket/bind/connect points at. */
enum rcb_limit {
	RCB_LIM_NOFILE = 0, /* EMFILE */
	RCB_LIM_FILE_MAX,   /* ENFILE */
	RCB_LIM_PORTS,	    /* EADDRNOTAVAIL, EADDRINUSE */
	RCB_LIM_MEMORY,	    /* ENOMEM, ENOBUFS */
	RCB_LIM_REFUSED,    /* ECONNREFUSED */
	RCB_LIM_TIMEOUT,    /* ETIMEDOUT, or --connect-timeout */
	RCB_LIM_RESET,	    /* ECONNRESET, EPIPE during the handshake */
	RCB_LIM_OTHER,
	RCB_LIM__COUNT,
};

/* Close codes the server sent first: 1000..1015 by code, anything else in the last slot. */
#define RCB_CLOSE_CODE_BASE 1000
#define RCB_CLOSE_CODE_SLOTS 17

struct rcb_stats {
	uint64_t counters[RCB_C__COUNT];
	uint64_t close_codes[RCB_CLOSE_CODE_SLOTS];
	uint64_t limit_hits[RCB_LIM__COUNT];
	int limit_errno[RCB_LIM__COUNT]; /* first errno (positive) seen per limit */
	struct rcb_hist latency;	 /* round trip (echo) or publish-to-receive (broadcast) */
	struct rcb_hist connect;	 /* connect start to TCP established */
	struct rcb_hist handshake;	 /* connect start to the 101 (--raw: established) */
};

/* Empties s. */
void rcb_stats_init(struct rcb_stats *s);

/* Adds src into dst (counters, limits, histograms). */
void rcb_stats_merge(struct rcb_stats *dst, const struct rcb_stats *src);

/* Counts a close code the server sent first. */
void rcb_stats_close_code(struct rcb_stats *s, uint16_t code);

/* The code counted in close_codes[slot]; 0 for the last slot (any other code). */
uint16_t rcb_close_code_of(uint32_t slot);

/* Counts a failed connect's errno (positive) against the limit it points at. */
void rcb_stats_limit_hit(struct rcb_stats *s, int err);

/* JSON name of a counter ("wrong_payload"); true if the counter is a correctness error. */
const char *rcb_counter_name(enum rcb_counter c);
bool rcb_counter_is_error(enum rcb_counter c);

/* Short name of a limit ("RLIMIT_NOFILE") and the setting that lifts it (one sentence). */
const char *rcb_limit_name(enum rcb_limit l);
const char *rcb_limit_remedy(enum rcb_limit l);

#endif
