/*
 * Start-up host check (see hostcheck.h): reads the kernel settings and resource limits
 * ringcast depends on and logs the ones below (or above) their recommended values. It owns
 * the C copy of the recommendation table; it does not change the host (tools/tune-host.sh
 * --apply does) and it never fails the start. Main thread, before the shards start.
 */
#include "app/hostcheck.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

/*
 * Where sysctls are read. A test may compile this file with its own root (a fake /proc/sys
 * tree) to compare the check with tools/tune-host.sh --proc-sys on the same values.
 */
#ifndef RC_HOSTCHECK_PROC_SYS
#define RC_HOSTCHECK_PROC_SYS "/proc/sys"
#endif

#define RC_HOSTCHECK_FIELDS_LIMIT 3
#define RC_HOSTCHECK_UNLIMITED UINT64_MAX
/* Open files beyond the connections: listeners, rings, logs, the Redis link, the HTTP API. */
#define RC_HOSTCHECK_FD_MARGIN 65536
#define RC_HOSTCHECK_TEXT_BYTES 128
#define RC_HOSTCHECK_LINE_BYTES 512

enum rc_hostcheck_dir {
	RC_HOSTCHECK_GE = 0, /* the value should be at least the recommendation */
	RC_HOSTCHECK_LE,     /* the value should be at most the recommendation */
	RC_HOSTCHECK_EQ,     /* the value should be exactly the recommendation */
};

enum rc_hostcheck_kind {
	RC_HOSTCHECK_SYSCTL = 0, /* /proc/sys/<name with dots as slashes> */
	RC_HOSTCHECK_RLIMIT,	 /* getrlimit(resource): soft, hard */
	RC_HOSTCHECK_VERSION,	 /* kernel.osrelease as major * 1000 + minor */
};

enum rc_hostcheck_status {
	RC_HOSTCHECK_OK = 0,
	RC_HOSTCHECK_MISS, /* some field is on the wrong side of its recommendation */
	RC_HOSTCHECK_SKIP, /* unreadable */
};

/* One value of an item; recommended = connections * mul / div + add. */
struct rc_hostcheck_field {
	enum rc_hostcheck_dir dir;
	uint32_t mul;
	uint32_t div; /* > 0 */
	uint64_t add; /* RC_HOSTCHECK_UNLIMITED: no limit at all (then mul is 0) */
};

struct rc_hostcheck_item {
	const char *name; /* sysctl name, or RLIMIT_* as tune-host.sh spells it */
	enum rc_hostcheck_kind kind;
	int resource;	      /* RLIMIT_* when kind is RC_HOSTCHECK_RLIMIT */
	uint32_t field_count; /* 1..RC_HOSTCHECK_FIELDS_LIMIT */
	struct rc_hostcheck_field fields[RC_HOSTCHECK_FIELDS_LIMIT];
	const char *label; /* plain words, with the name in parentheses; NULL: the name */
	const char *parts[RC_HOSTCHECK_FIELDS_LIMIT]; /* each field's name when more than one */
};

/* One table row per line reads better than the formatter's layout. */
/* clang-format off */
#define RC_HC_GE(mul, div, add) { RC_HOSTCHECK_GE, (mul), (div), (add) }
#define RC_HC_LE(mul, div, add) { RC_HOSTCHECK_LE, (mul), (div), (add) }
#define RC_HC_EQ(mul, div, add) { RC_HOSTCHECK_EQ, (mul), (div), (add) }
#define RC_HC_FDS RC_HC_GE(1, 1, RC_HOSTCHECK_FD_MARGIN)
#define RC_HC_PORTS { "first", "last" }
#define RC_HC_PAGES { "low", "pressure", "high" }
#define RC_HC_BUFFER { "min", "default", "max" }
#define RC_HC_SYSCTL_PARTS(name, parts, n, ...)                                                    \
	{ name, RC_HOSTCHECK_SYSCTL, 0, n, { __VA_ARGS__ }, NULL, parts }
#define RC_HC_SYSCTL(name, n, ...) RC_HC_SYSCTL_PARTS(name, { NULL }, n, __VA_ARGS__)
#define RC_HC_RLIMIT(res, label, field)                                                            \
	{ #res, RC_HOSTCHECK_RLIMIT, res, 2, { field, field }, label " (" #res ")",                 \
	  { "soft", "hard" } }

/*
 * The recommendation table. Its twin is TABLE in tools/tune-host.sh: the script has to work
 * on a host without a build, and the binary must not read the source tree at run time, so
 * the table cannot live in one shared data file. Generating one from the other would tie
 * the build to bash and sed for twenty rows. Instead tests/integration/tune_host_test.py
 * compiles this file, dumps this table for several connection counts and fails on any
 * difference from `tune-host.sh --json`, and runs both checks on the same fake /proc/sys
 * trees: change both (and kernel-tuning.md) together. Order and spelling match the script.
 */
static const struct rc_hostcheck_item host_limits[] = {
	{ "kernel.osrelease", RC_HOSTCHECK_VERSION, 0, 1, { RC_HC_GE(0, 1, 6001) },
	  "kernel version (kernel.osrelease)", { NULL } },
	RC_HC_SYSCTL("kernel.io_uring_disabled", 1, RC_HC_LE(0, 1, 0)),
	RC_HC_SYSCTL("fs.file-max", 1, RC_HC_GE(2, 1, RC_HOSTCHECK_FD_MARGIN)),
	RC_HC_SYSCTL("fs.nr_open", 1, RC_HC_FDS),
	RC_HC_RLIMIT(RLIMIT_NOFILE, "open-file limit", RC_HC_FDS),
	RC_HC_RLIMIT(RLIMIT_MEMLOCK, "locked-memory limit", RC_HC_GE(0, 1, RC_HOSTCHECK_UNLIMITED)),
	RC_HC_SYSCTL("vm.max_map_count", 1, RC_HC_GE(0, 1, 262144)),
	RC_HC_SYSCTL("net.core.somaxconn", 1, RC_HC_GE(0, 1, 65535)),
	RC_HC_SYSCTL("net.ipv4.tcp_max_syn_backlog", 1, RC_HC_GE(0, 1, 65535)),
	RC_HC_SYSCTL("net.core.netdev_max_backlog", 1, RC_HC_GE(0, 1, 16384)),
	RC_HC_SYSCTL_PARTS("net.ipv4.ip_local_port_range", RC_HC_PORTS, 2, RC_HC_LE(0, 1, 10000),
			   RC_HC_GE(0, 1, 65535)),
	RC_HC_SYSCTL_PARTS("net.ipv4.tcp_mem", RC_HC_PAGES, 3, RC_HC_GE(1, 2, 0), RC_HC_GE(1, 1, 0),
			   RC_HC_GE(2, 1, 0)),
	RC_HC_SYSCTL_PARTS("net.ipv4.tcp_rmem", RC_HC_BUFFER, 3, RC_HC_GE(0, 1, 4096),
			   RC_HC_LE(0, 1, 16384), RC_HC_GE(0, 1, 4194304)),
	RC_HC_SYSCTL_PARTS("net.ipv4.tcp_wmem", RC_HC_BUFFER, 3, RC_HC_GE(0, 1, 4096),
			   RC_HC_LE(0, 1, 16384), RC_HC_GE(0, 1, 4194304)),
	RC_HC_SYSCTL("net.core.rmem_max", 1, RC_HC_GE(0, 1, 16777216)),
	RC_HC_SYSCTL("net.core.wmem_max", 1, RC_HC_GE(0, 1, 16777216)),
	RC_HC_SYSCTL("net.ipv4.tcp_fin_timeout", 1, RC_HC_LE(0, 1, 15)),
	RC_HC_SYSCTL("net.ipv4.tcp_tw_reuse", 1, RC_HC_EQ(0, 1, 1)),
	RC_HC_SYSCTL("net.ipv4.tcp_slow_start_after_idle", 1, RC_HC_LE(0, 1, 0)),
	RC_HC_SYSCTL("net.netfilter.nf_conntrack_max", 1, RC_HC_GE(2, 1, RC_HOSTCHECK_FD_MARGIN)),
};
/* clang-format on */

/* Connections times the largest multiplier, plus the margin, must not overflow. */
RC_STATIC_ASSERT(RC_HOSTCHECK_CONNECTIONS_LIMIT < UINT64_MAX / 4, "recommendations overflow");

/* One item as read from the host. */
struct rc_hostcheck_reading {
	uint32_t count;				    /* values read; 0 = unreadable */
	uint64_t values[RC_HOSTCHECK_FIELDS_LIMIT]; /* RC_HOSTCHECK_UNLIMITED for infinity */
	char text[RC_HOSTCHECK_TEXT_BYTES];	    /* as displayed, space-separated */
};

static uint64_t recommended(const struct rc_hostcheck_field *field, uint64_t connections)
{
	RC_ASSERT(field->div > 0);
	RC_ASSERT(connections <= RC_HOSTCHECK_CONNECTIONS_LIMIT);
	if (field->add == RC_HOSTCHECK_UNLIMITED)
		return RC_HOSTCHECK_UNLIMITED;
	return connections * field->mul / field->div + field->add;
}

static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	RC_ASSERT(used < size);
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

/* Appends a displayed value ("unlimited", "6.1" for a version, or the number) to buf. */
static void show_value(char *buf, size_t size, uint64_t value, enum rc_hostcheck_kind kind)
{
	if (value == RC_HOSTCHECK_UNLIMITED)
		append(buf, size, "unlimited");
	else if (kind == RC_HOSTCHECK_VERSION)
		append(buf, size, "%llu.%llu", (unsigned long long)(value / 1000),
		       (unsigned long long)(value % 1000));
	else
		append(buf, size, "%llu", (unsigned long long)value);
}

/* Reads /proc/sys/<name> into text (NUL-terminated, whitespace runs as one space). */
static bool read_sysctl_text(const char *name, char *text, size_t size)
{
	char path[256];
	ssize_t got;
	size_t out = 0;
	int fd, n;

	RC_ASSERT(size > 1);
	n = snprintf(path, sizeof(path), "%s/%s", RC_HOSTCHECK_PROC_SYS, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return false;
	for (char *p = path + strlen(RC_HOSTCHECK_PROC_SYS) + 1; *p; p++)
		if (*p == '.')
			*p = '/';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	got = read(fd, text, size - 1);
	close(fd);
	if (got <= 0)
		return false;
	for (ssize_t i = 0; i < got; i++) {
		char c = text[i] == '\t' || text[i] == '\n' ? ' ' : text[i];

		if (c != ' ' || (out > 0 && text[out - 1] != ' '))
			text[out++] = c;
	}
	while (out > 0 && text[out - 1] == ' ')
		out--;
	text[out] = '\0';
	RC_ASSERT(out < size);
	return out > 0;
}

/* Parses up to RC_HOSTCHECK_FIELDS_LIMIT unsigned decimal numbers; returns how many, 0 if any
 * token is not a number or there are too many. */
static uint32_t parse_numbers(const char *text, uint64_t *values)
{
	uint32_t count = 0;
	const char *p = text;

	RC_ASSERT(text != NULL);
	while (*p) {
		char *end;
		unsigned long long v;

		if (*p < '0' || *p > '9' || count == RC_HOSTCHECK_FIELDS_LIMIT)
			return 0;
		v = strtoull(p, &end, 10);
		values[count++] = v;
		if (*end != ' ' && *end != '\0')
			return 0;
		p = *end ? end + 1 : end;
	}
	RC_ASSERT(count <= RC_HOSTCHECK_FIELDS_LIMIT);
	return count;
}

static void read_rlimit(const struct rc_hostcheck_item *item, struct rc_hostcheck_reading *r)
{
	struct rlimit lim;

	RC_ASSERT(item->kind == RC_HOSTCHECK_RLIMIT);
	if (getrlimit(item->resource, &lim) != 0)
		return;
	r->values[0] = lim.rlim_cur == RLIM_INFINITY ? RC_HOSTCHECK_UNLIMITED : lim.rlim_cur;
	r->values[1] = lim.rlim_max == RLIM_INFINITY ? RC_HOSTCHECK_UNLIMITED : lim.rlim_max;
	r->count = 2;
	RC_ASSERT(item->field_count == r->count);
}

/* Fills r from the host; r->count stays 0 when the item cannot be read. */
static void read_item(const struct rc_hostcheck_item *item, struct rc_hostcheck_reading *r)
{
	unsigned major, minor;

	memset(r, 0, sizeof(*r));
	switch (item->kind) {
	case RC_HOSTCHECK_RLIMIT: read_rlimit(item, r); break;
	case RC_HOSTCHECK_VERSION:
		if (!read_sysctl_text("kernel.osrelease", r->text, sizeof(r->text)))
			return;
		if (sscanf(r->text, "%u.%u", &major, &minor) != 2)
			return;
		r->values[0] = (uint64_t)major * 1000 + minor;
		r->count = 1;
		break;
	case RC_HOSTCHECK_SYSCTL:
		if (read_sysctl_text(item->name, r->text, sizeof(r->text)))
			r->count = parse_numbers(r->text, r->values);
		break;
	}
	RC_ASSERT(r->count <= RC_HOSTCHECK_FIELDS_LIMIT);
}

/* True if value is on the wrong side of the field's recommendation. */
static bool field_missed(const struct rc_hostcheck_field *f, uint64_t value, uint64_t connections)
{
	uint64_t want = recommended(f, connections);

	if (value < want)
		return f->dir != RC_HOSTCHECK_LE;
	return value > want && f->dir != RC_HOSTCHECK_GE;
}

static enum rc_hostcheck_status compare(const struct rc_hostcheck_item *item,
					const struct rc_hostcheck_reading *r, uint64_t connections)
{
	RC_ASSERT(item->field_count >= 1 && item->field_count <= RC_HOSTCHECK_FIELDS_LIMIT);
	if (r->count != item->field_count)
		return RC_HOSTCHECK_SKIP;
	for (uint32_t i = 0; i < item->field_count; i++)
		if (field_missed(&item->fields[i], r->values[i], connections))
			return RC_HOSTCHECK_MISS;
	return RC_HOSTCHECK_OK;
}

/* The value as read: one number when every field holds it, else each field by name. */
static void show_reading(char *buf, size_t size, const struct rc_hostcheck_item *item,
			 const struct rc_hostcheck_reading *r)
{
	bool same = true;

	RC_ASSERT(r->count == item->field_count);
	for (uint32_t i = 1; i < r->count; i++)
		same = same && r->values[i] == r->values[0];
	if (same) {
		show_value(buf, size, r->values[0], item->kind);
		return;
	}
	for (uint32_t i = 0; i < r->count; i++) {
		RC_ASSERT(item->parts[i] != NULL);
		append(buf, size, "%s%s ", i ? ", " : "", item->parts[i]);
		show_value(buf, size, r->values[i], item->kind);
	}
}

/* Appends what field i should be: "165536 or more", "15 or less", "6.1 or newer", "1". */
static void show_want(char *buf, size_t size, const struct rc_hostcheck_item *item, uint32_t i,
		      uint64_t connections)
{
	const struct rc_hostcheck_field *f = &item->fields[i];
	uint64_t want = recommended(f, connections);

	show_value(buf, size, want, item->kind);
	if (want == RC_HOSTCHECK_UNLIMITED || f->dir == RC_HOSTCHECK_EQ)
		return;
	if (f->dir == RC_HOSTCHECK_LE)
		append(buf, size, want ? " or less" : "");
	else
		append(buf, size, item->kind == RC_HOSTCHECK_VERSION ? " or newer" : " or more");
}

/*
 * Appends what the missed fields should be: one phrase when every field misses the same
 * recommendation, else each missed field by name. Returns the number of phrases.
 */
static uint32_t show_wants(char *buf, size_t size, const struct rc_hostcheck_item *item,
			   const struct rc_hostcheck_reading *r, uint64_t connections)
{
	uint32_t missed[RC_HOSTCHECK_FIELDS_LIMIT], n = 0;
	bool same = true;

	for (uint32_t i = 0; i < item->field_count; i++) {
		const struct rc_hostcheck_field *f = &item->fields[i];

		if (field_missed(f, r->values[i], connections))
			missed[n++] = i;
		same = same && f->dir == item->fields[0].dir &&
		       recommended(f, connections) == recommended(&item->fields[0], connections);
	}
	RC_ASSERT(n >= 1);
	if (n == 1 && item->field_count == 1)
		same = true;
	if (same && n == item->field_count) {
		show_want(buf, size, item, 0, connections);
		return 1;
	}
	for (uint32_t k = 0; k < n; k++) {
		append(buf, size, "%s%s ", k ? ", " : "", item->parts[missed[k]]);
		show_want(buf, size, item, missed[k], connections);
	}
	return n;
}

/*
 * Formats the miss of one item into line, in plain words: "open-file limit (RLIMIT_NOFILE) is
 * 20000; 165536 or more is recommended for 100000 connections (...)".
 */
static void format_miss(char *line, size_t size, const struct rc_hostcheck_item *item,
			const struct rc_hostcheck_reading *r, uint64_t connections)
{
	char now[RC_HOSTCHECK_TEXT_BYTES] = "", want[RC_HOSTCHECK_TEXT_BYTES] = "";
	char scale[64] = "";
	const char *hint = "run tools/tune-host.sh --apply";
	uint32_t phrases = show_wants(want, sizeof(want), item, r, connections);

	show_reading(now, sizeof(now), item, r);
	for (uint32_t i = 0; i < item->field_count; i++)
		if (item->fields[i].mul != 0)
			snprintf(scale, sizeof(scale), " for %llu connections",
				 (unsigned long long)connections);
	if (item->kind == RC_HOSTCHECK_RLIMIT)
		hint = "raise the service's Limit*= or run tools/tune-host.sh --apply";
	else if (item->kind == RC_HOSTCHECK_VERSION)
		hint = "for the io_uring features ringcast uses";
	snprintf(line, size, "%s is %s; %s %s %s%s (%s; see kernel-tuning.md)",
		 item->label ? item->label : item->name, now, want, phrases > 1 ? "are" : "is",
		 item->kind == RC_HOSTCHECK_VERSION ? "needed" : "recommended", scale, hint);
}

int rc_hostcheck_log(unsigned long connections_wanted,
		     void (*log_line)(const char *line, void *ctx), void *ctx)
{
	uint64_t connections = connections_wanted;
	struct rc_hostcheck_reading reading;
	char line[RC_HOSTCHECK_LINE_BYTES];
	int misses = 0;

	if (connections == 0)
		connections = RC_HOSTCHECK_DEFAULT_CONNECTIONS;
	connections = RC_MIN(connections, (uint64_t)RC_HOSTCHECK_CONNECTIONS_LIMIT);
	for (size_t i = 0; i < RC_ARRAY_LEN(host_limits); i++) {
		const struct rc_hostcheck_item *item = &host_limits[i];
		enum rc_hostcheck_status status;

		read_item(item, &reading);
		status = compare(item, &reading, connections);
		if (status != RC_HOSTCHECK_MISS)
			continue;
		misses++;
		if (log_line == NULL)
			continue;
		format_miss(line, sizeof(line), item, &reading, connections);
		log_line(line, ctx);
	}
	RC_ASSERT(misses >= 0 && (size_t)misses <= RC_ARRAY_LEN(host_limits));
	return misses;
}
