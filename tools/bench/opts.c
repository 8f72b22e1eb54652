/*
 * ringcast-bench's command line: the scenario subcommand, its parameters, their defaults and
 * ranges, and --help. Owns no state after parsing; the main thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "base/rc_assert.h"

static const char *const scenario_names[RCB_SC__COUNT] = {
	[RCB_SC_CONNECT] = "connect",	  [RCB_SC_ECHO] = "echo",
	[RCB_SC_BROADCAST] = "broadcast", [RCB_SC_CHURN] = "churn",
	[RCB_SC_SPIKE] = "spike",	  [RCB_SC_ENDURANCE] = "endurance",
	[RCB_SC_RECONNECT] = "reconnect",
};

static const char usage_text[] =
	"usage: ringcast-bench SCENARIO [options]\n"
	"\n"
	"An io_uring WebSocket load generator. Prints one JSON line per run on stdout and a short\n"
	"summary on stderr. Exit status: 0 ok; 1 correctness errors (wrong payloads, gaps,\n"
	"duplicates, missing messages, connections cut without a close frame, failed connects\n"
	"or handshakes); 2 bad usage or setup failure; 3 the run was cut short by a limit, by\n"
	"the server closing connections (slow consumer 1013, drain 1001: counted in\n"
	"closed_by_server and close_codes) or by a broadcast drain that ran out; the JSON's\n"
	"stopped_by names it. The bench never aborts on what a server does.\n"
	"\n"
	"Scenarios (defaults in brackets):\n"
	"  connect    ramp to N connections at --rate, hold --duration; connect and handshake\n"
	"             latency, failures, the limit that stopped the ramp  [N 1000, rate 1000, 5s]\n"
	"  echo       N connections, K messages in flight each, S bytes, for --duration:\n"
	"             messages/s and round-trip percentiles  [N 100, K 1, S 64, 10s, warmup 2s]\n"
	"             with --msg-rate r: open loop, r messages/s per connection (K bounds it)\n"
	"  broadcast  N subscribers (--topics spread), one publisher at --pub-rate, S bytes of\n"
	"             data: publish-to-receive percentiles and completeness (every subscriber\n"
	"             gets every message once, in order)  [N 100, 100/s, S 64, 10s]\n"
	"  churn      hold N, and connect-handshake-close --churn-rate times per second\n"
	"             [N 100, 100/s, 10s]; with --msg-rate the held ones carry echo traffic\n"
	"  spike      hold N (may be 0), then issue --burst connects at once  [N 0, burst 1000]\n"
	"  endurance  hold N with --msg-rate echo traffic for --duration, sampling the server's\n"
	"             RSS every --sample (needs --server-pid)  [N 1000, 1/s, 60s]\n"
	"  reconnect  hold N for --duration; when the server goes away (restart it meanwhile),\n"
	"             reconnect with exponential backoff and jitter; reports the reconnect-rate\n"
	"             spread  [N 100, 30s]\n"
	"\n"
	"Target and transport:\n"
	"  --url URL             ws://IPv4:PORT/PATH (no DNS)  [ws://127.0.0.1:8080/echo];\n"
	"                        wss:// runs every scenario over TLS (full handshake each\n"
	"                        connection, certificate not verified)\n"
	"  --raw                 plain TCP echo, no WebSocket (for perf/tcp-floor)\n"
	"  --text                echo with text frames (payloads are ASCII either way)\n"
	"  -c, --connections N   connections held (N)\n"
	"  -t, --threads T       worker threads, one io_uring each  [1]\n"
	"  --rate R              connection opens per second, 0 = all at once\n"
	"  --src-count C         bind to C source addresses 127.0.0.2.. before connecting\n"
	"                        (IP_BIND_ADDRESS_NO_PORT), each with its own ephemeral ports;\n"
	"                        0 = kernel choice  [auto: 16, or one per 2000 connections:\n"
	"                        the kernel's port search slows as an address's ports fill]\n"
	"  --no-direct           hold sockets as process fds, not io_uring direct descriptors\n"
	"                        (direct ones are bounded per ring by RLIMIT_NOFILE, not per\n"
	"                        process: --threads T holds up to T x RLIMIT_NOFILE)\n"
	"  --recv-buf-size B     bytes per provided receive buffer  [16384]\n"
	"  --recv-bufs B         provided buffers per ring, power of two  [1024]\n"
	"\n"
	"Timing (seconds; suffixes ms, s, m, h accepted):\n"
	"  -d, --duration T      measure/hold phase\n"
	"  --warmup T            echo/endurance/churn traffic before measuring\n"
	"  --drain T             bound on waiting for outstanding messages  [2s]\n"
	"  --connect-timeout T   connect start to 101  [10s]\n"
	"  --close-timeout T     our close frame to the server's answer  [2s]\n"
	"  --ramp-timeout T      bound on the ramp  [N/rate + connect-timeout + 5s]\n"
	"\n"
	"Traffic:\n"
	"  -k, --inflight K      messages in flight per connection  [1]\n"
	"  -s, --size S          payload bytes  [64]\n"
	"  --msg-rate r          open-loop messages/s per connection (echo, churn, endurance)\n"
	"  --burst K             spike: connects issued at once\n"
	"  --churn-rate R        churn: cycles per second\n"
	"\n"
	"Broadcast (ringcast pub/sub protocol by default; any text protocol via templates):\n"
	"  --sub-msg TEXT        subscribe message, %t = topic\n"
	"                        [{\"op\":\"sub\",\"topic\":\"%t\"}]\n"
	"  --pub-msg TEXT        publish message/body, %t = topic, %d = data (JSON-safe ASCII\n"
	"                        carrying the send time and publish index)\n"
	"                        [{\"op\":\"pub\",\"topic\":\"%t\",\"data\":\"%d\"}]\n"
	"  --topic NAME          topic name prefix  [bench]; topic i is NAME or NAME-i\n"
	"  --topics M            spread subscribers over M topics, published round robin  [1]\n"
	"  --pub-rate R          publishes per second  [100]\n"
	"  --pub-via ws|http     publish over a WebSocket or with HTTP POST --pub-path  [ws]\n"
	"  --pub-path PATH       [/publish]\n"
	"  --pub-port P          the publisher connects to --url's address on port P (another\n"
	"                        node of a cluster: cross-node latency)  [--url's port]\n"
	"  --settle T            wait after subscribing before publishing  [0.5s]\n"
	"  --sub-ack             the subscribe phase ends when every subscriber got a first\n"
	"                        message (ringcast's ack), not when every subscribe was sent\n"
	"                        (bounded by 5s): a publish then reaches every subscriber\n"
	"  Received messages are matched by the data's i= (publish index, per topic) and, when\n"
	"  present, by the server's \"seq\":N (must grow by one); gaps, duplicates, reordering\n"
	"  and messages never received are errors. Other messages (acks) are counted apart.\n"
	"  Messages due on a connection that ended first (the server closed it, or the bench\n"
	"  did when --drain ran out) are counted as undelivered, not as missing.\n"
	"\n"
	"Reconnect:\n"
	"  --backoff-base T      first delay  [1s]\n"
	"  --backoff-factor F    growth per failed attempt  [2]\n"
	"  --backoff-cap T       longest delay  [30s]\n"
	"  --jitter J            each delay is scaled by 1 +- J (uniform), 0..1  [0.25]\n"
	"\n"
	"Observation and output:\n"
	"  --server-pid PID      read the server's RSS and CPU (utime+stime) before, after the\n"
	"                        ramp, around the measure phase; CPU per message in the JSON\n"
	"  --sample T            endurance RSS sampling period  [1s]\n"
	"  --series-out FILE     CSV time series: t_s,open,attempts,rss_kb (100 ms bins)\n"
	"  --label TEXT          copied into the JSON line (e.g. the server's name)\n"
	"  --dump-other N        broadcast: print the first N received messages (per thread)\n"
	"                        that carry no publish index and are no ack, escaped, on\n"
	"                        stderr (what a server sent instead of a broadcast)  [0]\n"
	"  --seed N              masks, jitter  [time]\n"
	"  -q, --quiet           no summary on stderr\n"
	"  --progress            print each phase change on stderr as it happens:\n"
	"                        'ringcast-bench: phase NAME open=N t=SECONDS' (for scripts\n"
	"                        that sample the server when the ramp is done)\n"
	"  -h, --help            this text\n"
	"\n"
	"Limits: the tool raises its soft RLIMIT_NOFILE to the hard one, sizes each ring's\n"
	"fixed-file table to it, and caps N at what threads x table and source addresses x\n"
	"ephemeral ports allow, saying so. Failed connects are classified by errno into the limit\n"
	"they point at (RLIMIT_NOFILE, fs.file-max, ephemeral ports, kernel memory, refused,\n"
	"timeout, reset); the JSON's stopped_by names the dominant one.\n";

const char *rcb_scenario_name(enum rcb_scenario sc)
{
	RC_ASSERT(sc < RCB_SC__COUNT);
	return scenario_names[sc];
}

static int parse_scenario(const char *s, enum rcb_scenario *out)
{
	for (int i = 0; i < RCB_SC__COUNT; i++) {
		if (strcmp(s, scenario_names[i]) == 0) {
			*out = (enum rcb_scenario)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* A duration: a number with an optional unit (ms, s, m, h); seconds when none. */
static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	if (*end == '\0' || strcmp(end, "s") == 0)
		*out = v;
	else if (strcmp(end, "ms") == 0)
		*out = v / 1000;
	else if (strcmp(end, "m") == 0)
		*out = v * 60;
	else if (strcmp(end, "h") == 0)
		*out = v * 3600;
	else
		return -EINVAL;
	return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ws://a.b.c.d:port/path, wss:// (TLS), or tcp:// for --raw; no DNS, IPv4 only. */
static int parse_url(const char *url, struct rcb_config *cfg)
{
	char host[64];
	const char *p, *colon, *slash;
	uint32_t port;
	size_t n;

	cfg->tls = strncmp(url, "wss://", 6) == 0;
	if (strncmp(url, "ws://", 5) == 0)
		p = url + 5;
	else if (cfg->tls)
		p = url + 6;
	else if (strncmp(url, "tcp://", 6) == 0)
		p = url + 6;
	else
		return -EINVAL;
	colon = strchr(p, ':');
	if (!colon)
		return -EINVAL;
	n = (size_t)(colon - p);
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, p, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &cfg->dst.sin_addr) != 1)
		return -EINVAL;
	slash = strchr(colon, '/');
	{
		char portbuf[8];
		size_t pn = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);

		if (pn == 0 || pn >= sizeof(portbuf))
			return -EINVAL;
		memcpy(portbuf, colon + 1, pn);
		portbuf[pn] = '\0';
		if (parse_u32(portbuf, 1, 65535, &port))
			return -EINVAL;
	}
	cfg->dst.sin_family = AF_INET;
	cfg->dst.sin_port = htons((uint16_t)port);
	snprintf(cfg->host, sizeof(cfg->host), "%s:%u", host, port);
	if (snprintf(cfg->path, sizeof(cfg->path), "%s", slash ? slash : "/") >=
	    (int)sizeof(cfg->path))
		return -EINVAL;
	return 0;
}

static void set_defaults(struct rcb_config *cfg, enum rcb_scenario sc)
{
	static const struct {
		uint32_t n;
		double duration_s;
		double rate;
	} per[RCB_SC__COUNT] = {
		[RCB_SC_CONNECT] = {1000, 5, 1000},   [RCB_SC_ECHO] = {100, 10, 1000},
		[RCB_SC_BROADCAST] = {100, 10, 1000}, [RCB_SC_CHURN] = {100, 10, 1000},
		[RCB_SC_SPIKE] = {0, 5, 1000},	      [RCB_SC_ENDURANCE] = {1000, 60, 1000},
		[RCB_SC_RECONNECT] = {100, 30, 1000},
	};

	memset(cfg, 0, sizeof(*cfg));
	cfg->scenario = sc;
	cfg->connections = per[sc].n;
	cfg->duration_s = per[sc].duration_s;
	cfg->rate = per[sc].rate;
	cfg->threads = 1;
	cfg->warmup_s = sc == RCB_SC_ECHO ? 2 : 0;
	cfg->drain_s = 2;
	cfg->connect_timeout_s = 10;
	cfg->close_timeout_s = 2;
	cfg->ramp_timeout_s = -1;
	cfg->inflight = 1;
	cfg->size = 64;
	cfg->msg_rate = sc == RCB_SC_ENDURANCE ? 1 : 0;
	cfg->burst = sc == RCB_SC_SPIKE ? 1000 : 0;
	cfg->churn_rate = sc == RCB_SC_CHURN ? 100 : 0;
	cfg->src_count = UINT32_MAX; /* auto */
	cfg->recv_buf_size = 16384;
	cfg->recv_bufs = 1024;
	cfg->direct = true;
	cfg->sub_msg = "{\"op\":\"sub\",\"topic\":\"%t\"}";
	cfg->pub_msg = "{\"op\":\"pub\",\"topic\":\"%t\",\"data\":\"%d\"}";
	cfg->topic = "bench";
	cfg->topics = 1;
	cfg->pub_rate = 100;
	snprintf(cfg->pub_path, sizeof(cfg->pub_path), "/publish");
	cfg->settle_s = 0.5;
	cfg->backoff_base_s = 1;
	cfg->backoff_factor = 2;
	cfg->backoff_cap_s = 30;
	cfg->jitter = 0.25;
	cfg->sample_s = 1;
	parse_url(sc == RCB_SC_BROADCAST ? "ws://127.0.0.1:8080/" : "ws://127.0.0.1:8080/echo",
		  cfg);
}

enum {
	O_URL = 256,
	O_RAW,
	O_TEXT,
	O_RATE,
	O_SRC,
	O_NODIRECT,
	O_RBSIZE,
	O_RBCOUNT,
	O_WARMUP,
	O_DRAIN,
	O_CTIMEOUT,
	O_CLTIMEOUT,
	O_RTIMEOUT,
	O_MSGRATE,
	O_BURST,
	O_CHURN,
	O_SUB,
	O_PUB,
	O_TOPIC,
	O_TOPICS,
	O_PUBRATE,
	O_PUBVIA,
	O_PUBPATH,
	O_PUBPORT,
	O_SETTLE,
	O_BBASE,
	O_BFACTOR,
	O_BCAP,
	O_JITTER,
	O_PID,
	O_SAMPLE,
	O_SERIES,
	O_LABEL,
	O_SEED,
	O_PROGRESS,
	O_DUMP,
	O_SUBACK,
};

static const struct option long_opts[] = {
	{"url", required_argument, 0, O_URL},
	{"raw", no_argument, 0, O_RAW},
	{"text", no_argument, 0, O_TEXT},
	{"connections", required_argument, 0, 'c'},
	{"threads", required_argument, 0, 't'},
	{"rate", required_argument, 0, O_RATE},
	{"src-count", required_argument, 0, O_SRC},
	{"no-direct", no_argument, 0, O_NODIRECT},
	{"recv-buf-size", required_argument, 0, O_RBSIZE},
	{"recv-bufs", required_argument, 0, O_RBCOUNT},
	{"duration", required_argument, 0, 'd'},
	{"warmup", required_argument, 0, O_WARMUP},
	{"drain", required_argument, 0, O_DRAIN},
	{"connect-timeout", required_argument, 0, O_CTIMEOUT},
	{"close-timeout", required_argument, 0, O_CLTIMEOUT},
	{"ramp-timeout", required_argument, 0, O_RTIMEOUT},
	{"inflight", required_argument, 0, 'k'},
	{"size", required_argument, 0, 's'},
	{"msg-rate", required_argument, 0, O_MSGRATE},
	{"burst", required_argument, 0, O_BURST},
	{"churn-rate", required_argument, 0, O_CHURN},
	{"sub-msg", required_argument, 0, O_SUB},
	{"pub-msg", required_argument, 0, O_PUB},
	{"topic", required_argument, 0, O_TOPIC},
	{"topics", required_argument, 0, O_TOPICS},
	{"pub-rate", required_argument, 0, O_PUBRATE},
	{"pub-via", required_argument, 0, O_PUBVIA},
	{"pub-path", required_argument, 0, O_PUBPATH},
	{"pub-port", required_argument, 0, O_PUBPORT},
	{"settle", required_argument, 0, O_SETTLE},
	{"backoff-base", required_argument, 0, O_BBASE},
	{"backoff-factor", required_argument, 0, O_BFACTOR},
	{"backoff-cap", required_argument, 0, O_BCAP},
	{"jitter", required_argument, 0, O_JITTER},
	{"server-pid", required_argument, 0, O_PID},
	{"sample", required_argument, 0, O_SAMPLE},
	{"series-out", required_argument, 0, O_SERIES},
	{"label", required_argument, 0, O_LABEL},
	{"seed", required_argument, 0, O_SEED},
	{"quiet", no_argument, 0, 'q'},
	{"progress", no_argument, 0, O_PROGRESS},
	{"dump-other", required_argument, 0, O_DUMP},
	{"sub-ack", no_argument, 0, O_SUBACK},
	{"help", no_argument, 0, 'h'},
	{0, 0, 0, 0},
};

static const char *opt_name(int opt)
{
	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

/* Applies one option; -EINVAL if its value is out of range. */
static int apply(struct rcb_config *cfg, int opt, const char *arg)
{
	uint32_t u;

	switch (opt) {
	case O_URL: return parse_url(arg, cfg);
	case O_RAW: cfg->raw = true; return 0;
	case O_TEXT: cfg->text = true; return 0;
	case 'c': return parse_u32(arg, 0, 10000000, &cfg->connections);
	case 't': return parse_u32(arg, 1, RCB_THREADS_LIMIT, &cfg->threads);
	case O_RATE: return parse_double(arg, 0, 1e7, &cfg->rate);
	case O_SRC: return parse_u32(arg, 0, 60000, &cfg->src_count);
	case O_NODIRECT: cfg->direct = false; return 0;
	case O_RBSIZE: return parse_u32(arg, 256, 1u << 20, &cfg->recv_buf_size);
	case O_RBCOUNT:
		if (parse_u32(arg, 8, 32768, &u) || !rc_is_pow2(u))
			return -EINVAL;
		cfg->recv_bufs = u;
		return 0;
	case 'd': return parse_seconds(arg, &cfg->duration_s);
	case O_WARMUP: return parse_seconds(arg, &cfg->warmup_s);
	case O_DRAIN: return parse_seconds(arg, &cfg->drain_s);
	case O_CTIMEOUT: return parse_seconds(arg, &cfg->connect_timeout_s);
	case O_CLTIMEOUT: return parse_seconds(arg, &cfg->close_timeout_s);
	case O_RTIMEOUT: return parse_seconds(arg, &cfg->ramp_timeout_s);
	case 'k': return parse_u32(arg, 1, 4096, &cfg->inflight);
	case 's': return parse_u32(arg, 0, 16u << 20, &cfg->size);
	case O_MSGRATE: return parse_double(arg, 0, 1e6, &cfg->msg_rate);
	case O_BURST: return parse_u32(arg, 0, 10000000, &cfg->burst);
	case O_CHURN: return parse_double(arg, 0, 1e6, &cfg->churn_rate);
	case O_SUB: cfg->sub_msg = arg; return 0;
	case O_PUB: cfg->pub_msg = arg; return 0;
	case O_TOPIC: cfg->topic = arg; return strlen(arg) < 200 ? 0 : -EINVAL;
	case O_TOPICS: return parse_u32(arg, 1, RCB_TOPICS_LIMIT, &cfg->topics);
	case O_PUBRATE: return parse_double(arg, 0.001, 1e7, &cfg->pub_rate);
	case O_PUBVIA:
		if (strcmp(arg, "ws") && strcmp(arg, "http"))
			return -EINVAL;
		cfg->pub_via = strcmp(arg, "ws") ? RCB_PUB_HTTP : RCB_PUB_WS;
		return 0;
	case O_PUBPATH:
		return snprintf(cfg->pub_path, sizeof(cfg->pub_path), "%s", arg) <
				       (int)sizeof(cfg->pub_path)
			       ? 0
			       : -EINVAL;
	case O_PUBPORT: {
		double port;
		if (parse_double(arg, 1, 65535, &port) != 0)
			return -EINVAL;
		cfg->pub_dst.sin_port = htons((uint16_t)port);
		return 0;
	}
	case O_SETTLE: return parse_seconds(arg, &cfg->settle_s);
	case O_BBASE: return parse_seconds(arg, &cfg->backoff_base_s);
	case O_BFACTOR: return parse_double(arg, 1, 100, &cfg->backoff_factor);
	case O_BCAP: return parse_seconds(arg, &cfg->backoff_cap_s);
	case O_JITTER: return parse_double(arg, 0, 1, &cfg->jitter);
	case O_PID:
		if (parse_u32(arg, 1, 1u << 30, &u))
			return -EINVAL;
		cfg->server_pid = (int)u;
		return 0;
	case O_SAMPLE: return parse_seconds(arg, &cfg->sample_s);
	case O_SERIES: cfg->series_out = arg; return 0;
	case O_LABEL: cfg->label = arg; return 0;
	case O_SEED: cfg->seed = strtoull(arg, NULL, 10); return 0;
	case 'q': cfg->quiet = true; return 0;
	case O_PROGRESS: cfg->progress = true; return 0;
	case O_DUMP: return parse_u32(arg, 0, 1000000, &cfg->dump_other);
	case O_SUBACK: cfg->sub_ack = true; return 0;
	default: return -EINVAL;
	}
}

/* Cross-option rules, each with a message naming the options. */
static int validate(struct rcb_config *cfg)
{
	const char *why = NULL;

	if (cfg->raw && cfg->tls)
		why = "--raw is plain TCP (drop wss://)";
	else if (cfg->scenario == RCB_SC_BROADCAST && cfg->raw)
		why = "broadcast needs WebSocket (drop --raw)";
	else if (cfg->scenario == RCB_SC_BROADCAST && cfg->connections == 0)
		why = "broadcast needs at least one subscriber (-c)";
	else if (cfg->scenario == RCB_SC_BROADCAST && !strstr(cfg->pub_msg, "%d"))
		why = "--pub-msg must contain %d (the data carrying time and index)";
	else if (cfg->scenario == RCB_SC_ECHO && cfg->connections == 0)
		why = "echo needs at least one connection (-c)";
	else if (cfg->scenario != RCB_SC_SPIKE && cfg->connections == 0 &&
		 cfg->scenario != RCB_SC_CHURN)
		why = "at least one connection is needed (-c)";
	else if (cfg->sample_s < 0.1)
		why = "--sample must be at least 100ms";
	else if (cfg->backoff_cap_s < cfg->backoff_base_s)
		why = "--backoff-cap must be at least --backoff-base";
	else if (cfg->raw && cfg->size == 0)
		why = "--raw needs --size of at least 1";
	else if (cfg->duration_s > 24 * 3600)
		why = "--duration is bounded at 24h";
	if (why) {
		fprintf(stderr, "ringcast-bench: %s\n", why);
		return -EINVAL;
	}
	if (cfg->ramp_timeout_s < 0)
		cfg->ramp_timeout_s = (cfg->rate > 0 ? cfg->connections / cfg->rate : 0) +
				      cfg->connect_timeout_s + 5;
	if (cfg->src_count == UINT32_MAX) {
		/* The kernel's ephemeral port search (IP_BIND_ADDRESS_NO_PORT) slows down as a
		 * source address's ports fill: measured here, 120k connections from 8 addresses
		 * cost 23 s of system time to open, from 64 addresses 5 s. Keep each address
		 * below ~2000 connections (7 % of the default range). */
		uint64_t need = (uint64_t)cfg->connections + cfg->burst +
				(uint64_t)(cfg->churn_rate * (cfg->duration_s + 60));

		cfg->src_count = (uint32_t)RC_MIN(RC_MAX(16u, need / 2000 + 1), 60000u);
	}
	return 0;
}

int rcb_opts_parse(int argc, char **argv, struct rcb_config *cfg)
{
	enum rcb_scenario sc;
	int opt;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? -EINVAL : 1;
	}
	if (parse_scenario(argv[1], &sc)) {
		fprintf(stderr, "ringcast-bench: unknown scenario '%s' (see --help)\n", argv[1]);
		return -EINVAL;
	}
	set_defaults(cfg, sc);
	optind = 2;
	while ((opt = getopt_long(argc, argv, "c:t:d:k:s:qh", long_opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return 1;
		}
		if (opt == '?')
			return -EINVAL;
		if (apply(cfg, opt, optarg)) {
			fprintf(stderr, "ringcast-bench: bad value '%s' for --%s (see --help)\n",
				optarg ? optarg : "", opt_name(opt));
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringcast-bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (cfg->pub_dst.sin_port) { /* --url's address, --pub-port's port */
		in_port_t port = cfg->pub_dst.sin_port;
		cfg->pub_dst = cfg->dst;
		cfg->pub_dst.sin_port = port;
	}
	return validate(cfg);
}
