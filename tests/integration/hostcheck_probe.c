/*
 * Test driver for src/app/hostcheck.c, built by tune_host_test.py (the unit-test binaries link
 * the library, which has no src/app). It includes hostcheck.c to reach its static table.
 *   hostcheck_probe table N            the recommendation table for N connections, as JSON
 *   hostcheck_probe check N [PROC_SYS] rc_hostcheck_log() against PROC_SYS (default /proc/sys):
 *                                      one logged line each, then "misses=<count>"
 */
#include <stdio.h>
#include <stdlib.h>

static const char *probe_proc_sys = "/proc/sys";
#define RC_HOSTCHECK_PROC_SYS probe_proc_sys
#include "app/hostcheck.c"

static const char *const dir_name[] = { "ge", "le", "eq" };

static void print_table(uint64_t connections)
{
	printf("[");
	for (size_t i = 0; i < RC_ARRAY_LEN(host_limits); i++) {
		const struct rc_hostcheck_item *item = &host_limits[i];

		printf("%s{\"name\": \"%s\", \"fields\": [", i ? ", " : "", item->name);
		for (uint32_t f = 0; f < item->field_count; f++) {
			uint64_t want = recommended(&item->fields[f], connections);

			printf("%s{\"direction\": \"%s\", \"recommended\": ", f ? ", " : "",
			       dir_name[item->fields[f].dir]);
			if (want == RC_HOSTCHECK_UNLIMITED)
				printf("\"unlimited\"}");
			else
				printf("%llu}", (unsigned long long)want);
		}
		printf("]}");
	}
	printf("]\n");
}

static void print_line(const char *line, void *ctx)
{
	int *calls = ctx;

	(*calls)++;
	printf("%s\n", line);
}

int main(int argc, char **argv)
{
	unsigned long connections;
	int calls = 0, misses;

	if (argc < 3) {
		fprintf(stderr, "usage: hostcheck_probe table|check N [PROC_SYS]\n");
		return 2;
	}
	connections = strtoul(argv[2], NULL, 10);
	if (strcmp(argv[1], "table") == 0) {
		print_table(connections);
		return 0;
	}
	if (argc > 3)
		probe_proc_sys = argv[3];
	misses = rc_hostcheck_log(connections, print_line, &calls);
	printf("misses=%d\n", misses);
	return misses == calls ? 0 : 3;
}
