/*
 * Counters, limit classification and the log-linear latency histogram (see stats.h).
 * Histogram: a value v with highest set bit h is stored in the sub-bucket v >> shift of range
 * shift = max(0, h - SUB_BITS); the index is shift * SUB_COUNT + (v >> shift), continuous
 * from the linear range (v < 2^SUB_BITS, one bucket per value) upwards. Pure; the calling
 * thread.
 */
#include "stats.h"

#include <errno.h>
#include <string.h>

#include "base/rc_assert.h"

void rcb_hist_init(struct rcb_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

uint32_t rcb_hist_index(uint64_t value)
{
	uint32_t shift = 0;

	if (value > RCB_HIST_VALUE_LIMIT)
		value = RCB_HIST_VALUE_LIMIT;
	if (value >= RCB_HIST_SUB_COUNT) {
		uint32_t high = 63 - (uint32_t)__builtin_clzll(value);

		shift = high - RCB_HIST_SUB_BITS;
	}
	RC_DASSERT(shift <= RCB_HIST_SHIFT_LIMIT);
	return shift * RCB_HIST_SUB_COUNT + (uint32_t)(value >> shift);
}

uint64_t rcb_hist_highest(uint32_t index)
{
	uint32_t shift, top;

	RC_ASSERT(index < RCB_HIST_BUCKETS);
	if (index < 2 * RCB_HIST_SUB_COUNT)
		return index;
	shift = index / RCB_HIST_SUB_COUNT - 1;
	top = index - shift * RCB_HIST_SUB_COUNT;
	RC_DASSERT(top >= RCB_HIST_SUB_COUNT && top < 2 * RCB_HIST_SUB_COUNT);
	return (((uint64_t)top + 1) << shift) - 1;
}

void rcb_hist_record(struct rcb_hist *h, uint64_t value)
{
	uint32_t i = rcb_hist_index(value);

	RC_DASSERT(i < RCB_HIST_BUCKETS);
	h->buckets[i]++;
	h->count++;
	h->sum += value;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
}

void rcb_hist_merge(struct rcb_hist *dst, const struct rcb_hist *src)
{
	RC_ASSERT(dst != src);
	for (uint32_t i = 0; i < RCB_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t rcb_hist_quantile(const struct rcb_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank == 0)
		rank = 1;
	for (uint32_t i = 0; i < RCB_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = rcb_hist_highest(i);

			return v < h->max ? v : h->max;
		}
	}
	RC_ASSERT(!"histogram counts do not add up");
	return h->max;
}

bool rcb_hist_selftest(void)
{
	/* Every value maps to a bucket whose highest value is >= it and within 1/SUB_COUNT. */
	for (uint64_t v = 1; v <= RCB_HIST_VALUE_LIMIT; v = v * 3 / 2 + 1) {
		uint64_t hi = rcb_hist_highest(rcb_hist_index(v));

		if (hi < v || (double)(hi - v) > (double)v / RCB_HIST_SUB_COUNT)
			return false;
	}
	for (uint32_t i = 1; i < RCB_HIST_BUCKETS; i++) {
		if (rcb_hist_index(rcb_hist_highest(i)) != i)
			return false;
		if (rcb_hist_index(rcb_hist_highest(i - 1) + 1) != i)
			return false;
	}
	return true;
}

static const struct {
	const char *name;
	bool error;
} counters[RCB_C__COUNT] = {
	[RCB_C_CONNECT_STARTED] = {"connect_started", false},
	[RCB_C_CONNECTED] = {"connected", false},
	[RCB_C_OPENED] = {"opened", false},
	[RCB_C_CONNECT_FAILED] = {"connect_failed", true},
	[RCB_C_HANDSHAKE_FAILED] = {"handshake_failed", true},
	[RCB_C_CLOSED] = {"closed", false},
	[RCB_C_UNEXPECTED_CLOSES] = {"unexpected_closes", true},
	[RCB_C_MSGS_SENT] = {"msgs_sent", false},
	[RCB_C_MSGS_RECV] = {"msgs_recv_measured", false},
	[RCB_C_MSGS_RECV_TOTAL] = {"msgs_recv", false},
	[RCB_C_BYTES_SENT] = {"bytes_sent", false},
	[RCB_C_BYTES_RECV] = {"bytes_recv", false},
	[RCB_C_WRONG_PAYLOAD] = {"wrong_payload", true},
	[RCB_C_GAPS] = {"gaps", true},
	[RCB_C_DUPLICATES] = {"duplicates", true},
	[RCB_C_OUT_OF_ORDER] = {"out_of_order", true},
	[RCB_C_MISSING] = {"missing", true},
	[RCB_C_PROTOCOL_ERRORS] = {"protocol_errors", true},
	[RCB_C_PUB_ERRORS] = {"publish_errors", true},
	[RCB_C_SKIPPED_SENDS] = {"skipped_sends", false},
	[RCB_C_ENOBUFS] = {"recv_enobufs", false},
	[RCB_C_PINGS] = {"pings", false},
	[RCB_C_DISCONNECTS] = {"disconnects", false},
	[RCB_C_RECONNECT_ATTEMPTS] = {"reconnect_attempts", false},
	[RCB_C_RECONNECTED] = {"reconnected", false},
	[RCB_C_CHURN_CYCLES] = {"churn_cycles", false},
	[RCB_C_PUBLISHED] = {"published", false},
	[RCB_C_OTHER_MSGS] = {"other_msgs", false},
	[RCB_C_STALE_CQES] = {"stale_cqes", false},
	[RCB_C_CLOSED_BY_SERVER] = {"closed_by_server", false},
	[RCB_C_UNDELIVERED] = {"undelivered", false},
};

static const struct {
	const char *name;
	const char *remedy;
} limits[RCB_LIM__COUNT] = {
	[RCB_LIM_NOFILE] = {"RLIMIT_NOFILE",
			    "raise the hard nofile limit (limits.conf / systemd LimitNOFILE, "
			    "capped by fs.nr_open), or spread sockets over more rings (--threads)"},
	[RCB_LIM_FILE_MAX] = {"fs.file-max", "raise fs.file-max (system-wide open files)"},
	[RCB_LIM_PORTS] = {"ephemeral ports",
			   "widen net.ipv4.ip_local_port_range or add source addresses "
			   "(--src-count)"},
	[RCB_LIM_MEMORY] = {"kernel memory", "raise net.ipv4.tcp_mem / net.core.*mem, or add RAM"},
	[RCB_LIM_REFUSED] = {"connection refused",
			     "the server is not listening or its accept queue overflowed: "
			     "raise net.core.somaxconn and the listen backlog"},
	[RCB_LIM_TIMEOUT] = {"connect timeout",
			     "SYN queue or server overload: raise net.ipv4.tcp_max_syn_backlog, "
			     "lower --rate"},
	[RCB_LIM_RESET] = {"connection reset",
			   "the server reset connections (its own limit or an accept-queue "
			   "overflow with tcp_abort_on_overflow)"},
	[RCB_LIM_OTHER] = {"other", "see the errno"},
};

void rcb_stats_init(struct rcb_stats *s)
{
	memset(s->counters, 0, sizeof(s->counters));
	memset(s->close_codes, 0, sizeof(s->close_codes));
	memset(s->limit_hits, 0, sizeof(s->limit_hits));
	memset(s->limit_errno, 0, sizeof(s->limit_errno));
	rcb_hist_init(&s->latency);
	rcb_hist_init(&s->connect);
	rcb_hist_init(&s->handshake);
}

void rcb_stats_merge(struct rcb_stats *dst, const struct rcb_stats *src)
{
	RC_ASSERT(dst != src);
	for (int i = 0; i < RCB_C__COUNT; i++)
		dst->counters[i] += src->counters[i];
	for (int i = 0; i < RCB_CLOSE_CODE_SLOTS; i++)
		dst->close_codes[i] += src->close_codes[i];
	for (int i = 0; i < RCB_LIM__COUNT; i++) {
		dst->limit_hits[i] += src->limit_hits[i];
		if (!dst->limit_errno[i])
			dst->limit_errno[i] = src->limit_errno[i];
	}
	rcb_hist_merge(&dst->latency, &src->latency);
	rcb_hist_merge(&dst->connect, &src->connect);
	rcb_hist_merge(&dst->handshake, &src->handshake);
}

static enum rcb_limit limit_of(int err)
{
	switch (err) {
	case EMFILE: return RCB_LIM_NOFILE;
	case ENFILE: return RCB_LIM_FILE_MAX;
	case EADDRNOTAVAIL:
	case EADDRINUSE: return RCB_LIM_PORTS;
	case ENOMEM:
	case ENOBUFS: return RCB_LIM_MEMORY;
	case ECONNREFUSED: return RCB_LIM_REFUSED;
	case ETIMEDOUT: return RCB_LIM_TIMEOUT;
	case ECONNRESET:
	case EPIPE: return RCB_LIM_RESET;
	default: return RCB_LIM_OTHER;
	}
}

void rcb_stats_close_code(struct rcb_stats *s, uint16_t code)
{
	uint32_t slot = (uint32_t)code - RCB_CLOSE_CODE_BASE;

	if (code < RCB_CLOSE_CODE_BASE || slot >= RCB_CLOSE_CODE_SLOTS - 1)
		slot = RCB_CLOSE_CODE_SLOTS - 1;
	s->close_codes[slot]++;
}

uint16_t rcb_close_code_of(uint32_t slot)
{
	RC_ASSERT(slot < RCB_CLOSE_CODE_SLOTS);
	return slot == RCB_CLOSE_CODE_SLOTS - 1 ? 0 : (uint16_t)(RCB_CLOSE_CODE_BASE + slot);
}

void rcb_stats_limit_hit(struct rcb_stats *s, int err)
{
	enum rcb_limit l = limit_of(err);

	RC_ASSERT(err > 0);
	s->limit_hits[l]++;
	if (!s->limit_errno[l])
		s->limit_errno[l] = err;
}

const char *rcb_counter_name(enum rcb_counter c)
{
	RC_ASSERT(c < RCB_C__COUNT);
	RC_ASSERT(counters[c].name);
	return counters[c].name;
}

bool rcb_counter_is_error(enum rcb_counter c)
{
	RC_ASSERT(c < RCB_C__COUNT);
	return counters[c].error;
}

const char *rcb_limit_name(enum rcb_limit l)
{
	RC_ASSERT(l < RCB_LIM__COUNT);
	return limits[l].name;
}

const char *rcb_limit_remedy(enum rcb_limit l)
{
	RC_ASSERT(l < RCB_LIM__COUNT);
	return limits[l].remedy;
}
