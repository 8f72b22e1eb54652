/*
 * Start-up host check: compares the kernel settings and resource limits ringcast depends on
 * (the ones tools/tune-host.sh checks and applies, explained in kernel-tuning.md) with their
 * recommended values and reports every miss. Advisory only: it never stops the start.
 * Owns no state. Main thread, once, before the shards start.
 */
#ifndef RC_HOSTCHECK_H
#define RC_HOSTCHECK_H

/* Connection count assumed when the caller passes 0 (tune-host.sh's default). */
#define RC_HOSTCHECK_DEFAULT_CONNECTIONS 100000ul

/* Largest connection count the recommendations are computed for (tune-host.sh's limit). */
#define RC_HOSTCHECK_CONNECTIONS_LIMIT 1000000000ul

/*
 * Reads each recommended value from /proc/sys and getrlimit(2), sized for connections_wanted
 * (0 means RC_HOSTCHECK_DEFAULT_CONNECTIONS; larger than RC_HOSTCHECK_CONNECTIONS_LIMIT is
 * clamped), and calls log_line(line, ctx) once per item the host misses, with one line in
 * plain words such as "net.core.somaxconn is 4096; 65535 or more is recommended (run
 * tools/tune-host.sh --apply; see kernel-tuning.md)". line is borrowed for the call only.
 * The caller decides whether to log at all (log_level=error does not). A value that cannot
 * be read (an absent /proc file, a key another namespace owns) is skipped silently.
 * log_line may be NULL to only count. Returns the number of misses (0 = host is ready).
 */
int rc_hostcheck_log(unsigned long connections_wanted,
		     void (*log_line)(const char *line, void *ctx), void *ctx);

#endif
