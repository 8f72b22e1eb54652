/*
 * ringcast-bench's output: samples of the server process (/proc/PID/stat and status), the time
 * series (open connections, reconnect attempts, server RSS per 100 ms), the merged statistics
 * as one JSON line on stdout, a short summary on stderr, and the exit status. The main thread,
 * after the workers are joined (rcb_sample_tick also while they run).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "base/rc_assert.h"

struct rcb_proc_sample rcb_proc_sample(int pid)
{
	struct rcb_proc_sample s = {0};
	char path[64], buf[4096], *p;
	unsigned long utime, stime;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return s;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return s;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name (which may hold spaces): state is field 3, utime 14. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
			 &stime) != 2)
		return s;
	s.cpu_ticks = utime + stime;
	s.user_ticks = utime;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return s;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "VmRSS: %lu kB", &utime) == 1)
			s.rss_kb = utime;
	fclose(f);
	s.ok = true;
	return s;
}

void rcb_sample_tick(struct rcb_run *run, struct rcb_result *res)
{
	uint64_t now = rcb_now_ns();
	struct rcb_series_point *pt;
	uint32_t open = 0;

	for (uint32_t i = 0; i < run->cfg->threads; i++)
		open += atomic_load_explicit(&run->threads[i].open_now, memory_order_relaxed);
	if (open > res->peak_open)
		res->peak_open = open;
	if (now < res->next_sample_ns || res->points_count >= RCB_SERIES_LIMIT)
		return;
	res->next_sample_ns = now + RCB_SERIES_BIN_NS;
	pt = &res->points[res->points_count++];
	pt->t_ns = now - run->start_ns;
	pt->open = open;
	pt->rss_kb = 0;
	if (run->cfg->server_pid) {
		struct rcb_proc_sample s = rcb_proc_sample(run->cfg->server_pid);

		pt->rss_kb = s.rss_kb;
		if (s.rss_kb > res->srv_rss_max_kb)
			res->srv_rss_max_kb = s.rss_kb;
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_hist(FILE *f, const char *name, const struct rcb_hist *h)
{
	fprintf(f,
		",\"%s\":{\"count\":%llu,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
		"\"p999\":%.1f,\"max\":%.1f}",
		name, (unsigned long long)h->count,
		h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0,
		rcb_hist_quantile(h, 0.5) / 1e3, rcb_hist_quantile(h, 0.9) / 1e3,
		rcb_hist_quantile(h, 0.99) / 1e3, rcb_hist_quantile(h, 0.999) / 1e3,
		(double)h->max / 1e3);
}

/* Attempt-rate shape of the reconnect storm, from the workers' 100 ms bins. */
static void reconnect_summary(const struct rcb_run *run, struct rcb_result *res)
{
	uint64_t first_loss = 0, last_back = 0, sum = 0, peak = 0;
	int64_t lo = -1, hi = -1;
	uint32_t active = 0;
	double mean = 0, var = 0;

	for (uint32_t i = 0; i < run->cfg->threads; i++) {
		const struct rcb_thread *t = &run->threads[i];

		if (t->first_loss_ns && (!first_loss || t->first_loss_ns < first_loss))
			first_loss = t->first_loss_ns;
		if (t->last_back_ns > last_back)
			last_back = t->last_back_ns;
	}
	for (uint32_t b = 0; b < RCB_SERIES_LIMIT; b++) {
		res->attempts[b] = 0;
		for (uint32_t i = 0; i < run->cfg->threads; i++)
			res->attempts[b] += run->threads[i].series[b];
		if (!res->attempts[b])
			continue;
		if (lo < 0)
			lo = b;
		hi = b;
		sum += res->attempts[b];
		active++;
		peak = RC_MAX(peak, (uint64_t)res->attempts[b]);
	}
	res->rc.first_loss_s = first_loss ? (double)(first_loss - run->start_ns) / 1e9 : -1;
	res->rc.all_back_s =
		first_loss && last_back > first_loss && res->open_at_end >= run->cfg->connections
			? (double)(last_back - first_loss) / 1e9
			: -1;
	if (lo < 0)
		return;
	/* Spread: the standard deviation of attempt times (bin centres weighted by attempts).
	 * Without jitter a whole wave lands in one bin: stddev near 0 and a tall peak. */
	for (int64_t b = lo; b <= hi; b++)
		mean += (double)res->attempts[b] * ((double)b + 0.5);
	mean /= (double)sum;
	for (int64_t b = lo; b <= hi; b++)
		var += (double)res->attempts[b] * ((double)b + 0.5 - mean) *
		       ((double)b + 0.5 - mean);
	var /= (double)sum;
	res->rc.peak_rate = (double)peak * 1e9 / RCB_SERIES_BIN_NS;
	res->rc.mean_rate = (double)sum / active * 1e9 / RCB_SERIES_BIN_NS;
	res->rc.stddev_s = sqrt(var) * RCB_SERIES_BIN_NS / 1e9;
	res->rc.span_s = (double)(hi - lo + 1) * RCB_SERIES_BIN_NS / 1e9;
}

/* "N connections (1013 x 3, 1001 x 1)": the server's closes by code, most frequent first. */
static void server_closes(const struct rcb_stats *s, char *buf, size_t cap)
{
	bool done[RCB_CLOSE_CODE_SLOTS] = {false};
	size_t n = (size_t)snprintf(buf, cap, "server closed %llu connections (",
				    (unsigned long long)s->counters[RCB_C_CLOSED_BY_SERVER]);

	/* Bounded: each pass takes one slot out. */
	for (int pass = 0; pass < RCB_CLOSE_CODE_SLOTS && n < cap; pass++) {
		int top = -1;

		for (int i = 0; i < RCB_CLOSE_CODE_SLOTS; i++)
			if (s->close_codes[i] && !done[i] &&
			    (top < 0 || s->close_codes[i] > s->close_codes[top]))
				top = i;
		if (top < 0)
			break;
		done[top] = true;
		n += (size_t)snprintf(buf + n, cap - n, pass ? ", " : "");
		if (rcb_close_code_of((uint32_t)top))
			n += (size_t)snprintf(buf + n, cap - n, "%u",
					      rcb_close_code_of((uint32_t)top));
		else
			n += (size_t)snprintf(buf + n, cap - n, "other");
		n += (size_t)snprintf(buf + n, cap - n, " x %llu",
				      (unsigned long long)s->close_codes[top]);
	}
	if (n < cap)
		snprintf(buf + n, cap - n, ")");
}

/* The limit that stopped the run: the pre-run cap, the errno most failed connects had, the
 * server closing connections, or a broadcast drain that ran out with deliveries due. */
static void find_stop(const struct rcb_run *run, struct rcb_result *res, char *buf, size_t cap)
{
	const struct rcb_stats *s = &res->total;
	int worst = -1;

	if (run->capped_by) {
		snprintf(buf, cap, "%s", run->capped_by);
		res->stopped_by = buf;
		return;
	}
	if (!s->counters[RCB_C_CONNECT_FAILED] && !s->counters[RCB_C_HANDSHAKE_FAILED]) {
		if (s->counters[RCB_C_CLOSED_BY_SERVER]) {
			server_closes(s, buf, cap);
			res->stopped_by = buf;
		} else if (s->counters[RCB_C_UNDELIVERED]) {
			/* The drain ran out and the close came before what was still due. */
			snprintf(buf, cap,
				 "drain: %llu deliveries never came, --drain %gs ran out (server "
				 "overloaded: raise --drain or lower --pub-rate)",
				 (unsigned long long)s->counters[RCB_C_UNDELIVERED], run->cfg->drain_s);
			res->stopped_by = buf;
		}
		return;
	}
	for (int l = 0; l < RCB_LIM__COUNT; l++)
		if (s->limit_hits[l] && (worst < 0 || s->limit_hits[l] > s->limit_hits[worst]))
			worst = l;
	if (worst < 0)
		return;
	snprintf(buf, cap, "%s (%s, %llu connects): %s", rcb_limit_name((enum rcb_limit)worst),
		 strerror(s->limit_errno[worst]), (unsigned long long)s->limit_hits[worst],
		 rcb_limit_remedy((enum rcb_limit)worst));
	res->stopped_by = buf;
}

static void json_server(FILE *f, const struct rcb_run *run, const struct rcb_result *res)
{
	const struct rcb_proc_sample *a = &res->srv_start, *b = &res->srv_end;
	double tck = (double)sysconf(_SC_CLK_TCK);
	double cpu_s = a->ok && b->ok ? (double)(b->cpu_ticks - a->cpu_ticks) / tck : 0;
	double user_s = a->ok && b->ok ? (double)(b->user_ticks - a->user_ticks) / tck : 0;
	uint64_t msgs = res->total.counters[RCB_C_MSGS_RECV];

	if (!run->cfg->server_pid) {
		fprintf(f, ",\"server\":null");
		return;
	}
	fprintf(f,
		",\"server\":{\"pid\":%d,\"rss_kb_before\":%llu,\"rss_kb_ramped\":%llu,"
		"\"rss_kb_end\":%llu,\"rss_kb_max\":%llu,\"cpu_s\":%.2f,\"cpu_util\":%.3f,"
		"\"cpu_us_per_msg\":%.3f,\"cpu_user_us_per_msg\":%.3f,"
		"\"cpu_sys_us_per_msg\":%.3f}",
		run->cfg->server_pid, (unsigned long long)res->srv_before.rss_kb,
		(unsigned long long)res->srv_ramped.rss_kb, (unsigned long long)b->rss_kb,
		(unsigned long long)RC_MAX(res->srv_rss_max_kb, b->rss_kb), cpu_s,
		res->measure_s > 0 ? cpu_s / res->measure_s : 0,
		msgs ? cpu_s * 1e6 / (double)msgs : 0, msgs ? user_s * 1e6 / (double)msgs : 0,
		msgs ? (cpu_s - user_s) * 1e6 / (double)msgs : 0);
}

static uint64_t error_total(const struct rcb_stats *s)
{
	uint64_t n = 0;

	for (int c = 0; c < RCB_C__COUNT; c++)
		if (rcb_counter_is_error((enum rcb_counter)c))
			n += s->counters[c];
	return n;
}

static void json_config(FILE *f, const struct rcb_run *run, const struct rcb_result *res)
{
	const struct rcb_config *cfg = run->cfg;
	uint64_t msgs = res->total.counters[RCB_C_MSGS_RECV];
	double rate = res->measure_s > 0 ? (double)msgs / res->measure_s : 0;

	fprintf(f,
		",\"connections\":%u,\"connections_asked\":%u,\"threads\":%u,\"rate\":%g,"
		"\"size\":%u,\"inflight\":%u,\"msg_rate\":%g,\"fd_mode\":\"%s\","
		"\"src_count\":%u,\"measure_s\":%.3f,\"ramp_s\":%.3f,\"wall_s\":%.3f,"
		"\"open_at_end\":%u,\"peak_open\":%u,\"msgs_per_s\":%.1f,\"mbytes_per_s\":%.2f",
		cfg->connections, run->connections_asked, cfg->threads, cfg->rate, cfg->size,
		cfg->inflight, cfg->msg_rate,
		!run->use_direct ? "fd"
		: run->ring_bind ? "direct"
				 : "direct-installed",
		cfg->src_count, res->measure_s, res->ramp_s, res->wall_s, res->open_at_end,
		res->peak_open, rate, rate * cfg->size / 1e6);
}

static void json_line(FILE *f, const struct rcb_run *run, const struct rcb_result *res)
{
	const struct rcb_config *cfg = run->cfg;
	const struct rcb_stats *s = &res->total;
	char url[400];

	snprintf(url, sizeof(url), "%s://%s%s", cfg->raw ? "tcp" : cfg->tls ? "wss" : "ws",
		 cfg->host, cfg->raw ? "" : cfg->path);
	fprintf(f, "{\"tool\":\"ringcast-bench\",\"scenario\":\"%s\",\"label\":",
		rcb_scenario_name(cfg->scenario));
	json_str(f, cfg->label ? cfg->label : "");
	fprintf(f, ",\"url\":");
	json_str(f, url);
	fprintf(f, ",\"ok\":%s,\"errors_total\":%llu,\"stopped_by\":",
		error_total(s) ? "false" : "true", (unsigned long long)error_total(s));
	if (res->stopped_by)
		json_str(f, res->stopped_by);
	else
		fprintf(f, "null");
	json_config(f, run, res);
	json_hist(f, "latency_us", &s->latency);
	json_hist(f, "connect_us", &s->connect);
	json_hist(f, "handshake_us", &s->handshake);
	fprintf(f, ",\"counters\":{");
	for (int c = 0; c < RCB_C__COUNT; c++)
		fprintf(f, "%s\"%s\":%llu", c ? "," : "", rcb_counter_name((enum rcb_counter)c),
			(unsigned long long)s->counters[c]);
	fprintf(f, "},\"limit_hits\":{");
	for (int l = 0, first = 1; l < RCB_LIM__COUNT; l++) {
		if (!s->limit_hits[l])
			continue;
		fprintf(f, "%s\"%s\":%llu", first ? "" : ",", rcb_limit_name((enum rcb_limit)l),
			(unsigned long long)s->limit_hits[l]);
		first = 0;
	}
	fprintf(f, "},\"close_codes\":{");
	for (int i = 0, first = 1; i < RCB_CLOSE_CODE_SLOTS; i++) {
		uint16_t code = rcb_close_code_of((uint32_t)i);

		if (!s->close_codes[i])
			continue;
		if (code)
			fprintf(f, "%s\"%u\":%llu", first ? "" : ",", code,
				(unsigned long long)s->close_codes[i]);
		else
			fprintf(f, "%s\"other\":%llu", first ? "" : ",",
				(unsigned long long)s->close_codes[i]);
		first = 0;
	}
	fprintf(f, "}");
	json_server(f, run, res);
	fprintf(f, ",\"self\":{\"user_s\":%.2f,\"sys_s\":%.2f}", res->self_user_s, res->self_sys_s);
	if (cfg->scenario == RCB_SC_RECONNECT)
		fprintf(f,
			",\"reconnect\":{\"backoff_base_s\":%g,\"backoff_factor\":%g,"
			"\"backoff_cap_s\":%g,\"jitter\":%g,\"first_loss_s\":%.3f,"
			"\"all_back_s\":%.3f,\"attempt_peak_per_s\":%.1f,"
			"\"attempt_mean_per_s\":%.1f,\"attempt_stddev_s\":%.3f,"
			"\"attempt_span_s\":%.1f}",
			cfg->backoff_base_s, cfg->backoff_factor, cfg->backoff_cap_s, cfg->jitter,
			res->rc.first_loss_s, res->rc.all_back_s, res->rc.peak_rate,
			res->rc.mean_rate, res->rc.stddev_s, res->rc.span_s);
	if (cfg->scenario == RCB_SC_BROADCAST)
		fprintf(f,
			",\"broadcast\":{\"topics\":%u,\"pub_rate\":%g,\"pub_via\":\"%s\","
			"\"expected_deliveries\":%llu,\"delivered\":%llu,\"http_answers\":%llu}",
			cfg->topics, cfg->pub_rate, cfg->pub_via == RCB_PUB_HTTP ? "http" : "ws",
			(unsigned long long)rcb_pubsub_expected(run),
			(unsigned long long)s->counters[RCB_C_MSGS_RECV_TOTAL],
			(unsigned long long)run->threads[0].pub_acked);
	fprintf(f, "}\n");
	fflush(f);
}

static void summary(FILE *f, const struct rcb_run *run, const struct rcb_result *res)
{
	const struct rcb_config *cfg = run->cfg;
	const struct rcb_stats *s = &res->total;
	const struct rcb_hist *h = &s->latency;

	fprintf(f, "ringcast-bench %s: %u conns (%u open at end), %u threads, %.1f s measured\n",
		rcb_scenario_name(cfg->scenario), cfg->connections, res->open_at_end, cfg->threads,
		res->measure_s);
	if (h->count)
		fprintf(f,
			"  %.0f msg/s; latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n",
			res->measure_s > 0 ? (double)s->counters[RCB_C_MSGS_RECV] / res->measure_s
					   : 0,
			rcb_hist_quantile(h, 0.5) / 1e3, rcb_hist_quantile(h, 0.9) / 1e3,
			rcb_hist_quantile(h, 0.99) / 1e3, rcb_hist_quantile(h, 0.999) / 1e3,
			(double)h->max / 1e3);
	if (s->handshake.count)
		fprintf(f, "  connect+handshake us p50 %.1f p99 %.1f max %.1f (%llu opened)\n",
			rcb_hist_quantile(&s->handshake, 0.5) / 1e3,
			rcb_hist_quantile(&s->handshake, 0.99) / 1e3,
			(double)s->handshake.max / 1e3,
			(unsigned long long)s->counters[RCB_C_OPENED]);
	if (cfg->server_pid && res->srv_end.ok)
		fprintf(f, "  server rss %llu -> %llu kB (max %llu)\n",
			(unsigned long long)res->srv_before.rss_kb,
			(unsigned long long)res->srv_end.rss_kb,
			(unsigned long long)RC_MAX(res->srv_rss_max_kb, res->srv_end.rss_kb));
	if (cfg->scenario == RCB_SC_RECONNECT)
		fprintf(f,
			"  reconnect: attempts peak %.0f/s, mean %.0f/s, stddev %.3f s; all back "
			"in %.2f s\n",
			res->rc.peak_rate, res->rc.mean_rate, res->rc.stddev_s, res->rc.all_back_s);
	for (int c = 0; c < RCB_C__COUNT; c++)
		if (rcb_counter_is_error((enum rcb_counter)c) && s->counters[c])
			fprintf(f, "  ERROR %s: %llu\n", rcb_counter_name((enum rcb_counter)c),
				(unsigned long long)s->counters[c]);
	if (res->stopped_by)
		fprintf(f, "  stopped by %s\n", res->stopped_by);
}

static void write_series(const struct rcb_run *run, const struct rcb_result *res)
{
	FILE *f = fopen(run->cfg->series_out, "w");

	if (!f) {
		fprintf(stderr, "ringcast-bench: %s: %s\n", run->cfg->series_out, strerror(errno));
		return;
	}
	fprintf(f, "t_s,open,attempts,rss_kb\n");
	for (uint32_t i = 0; i < res->points_count; i++) {
		const struct rcb_series_point *p = &res->points[i];
		uint64_t bin = p->t_ns / RCB_SERIES_BIN_NS;

		fprintf(f, "%.1f,%u,%u,%llu\n", (double)p->t_ns / 1e9, p->open,
			bin < RCB_SERIES_LIMIT ? res->attempts[bin] : 0,
			(unsigned long long)p->rss_kb);
	}
	fclose(f);
}

int rcb_report(struct rcb_run *run, struct rcb_result *res)
{
	const struct rcb_config *cfg = run->cfg;
	struct rusage ru;
	char stop[512];

	rcb_stats_init(&res->total);
	for (uint32_t i = 0; i < cfg->threads; i++)
		rcb_stats_merge(&res->total, &run->threads[i].stats);
	rcb_pubsub_finish(run, &res->total, res->drained);
	res->total.counters[RCB_C_MISSING] += res->missing_after_drain;
	if (cfg->scenario == RCB_SC_RECONNECT && res->open_at_end < cfg->connections)
		res->total.counters[RCB_C_MISSING] += cfg->connections - res->open_at_end;
	reconnect_summary(run, res);
	find_stop(run, res, stop, sizeof(stop));
	getrusage(RUSAGE_SELF, &ru);
	res->self_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	res->self_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	json_line(stdout, run, res);
	if (!cfg->quiet)
		summary(stderr, run, res);
	if (cfg->series_out)
		write_series(run, res);
	if (error_total(&res->total))
		return 1;
	return res->stopped_by ? 3 : 0;
}
