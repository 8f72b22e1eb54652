/*
 * libFuzzer target for src/config.c: arbitrary config file text, then arbitrary --key=value
 * pairs. Whatever the input, parsing either succeeds or fails with a message, never crashes,
 * never leaves a key outside its declared range, and a configuration that validates prints
 * and re-parses to the same values. Also linked without libFuzzer into the corpus replay.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints cfg and parses the print into a fresh config: both must print the same. */
static void round_trip(const struct rc_config *cfg)
{
	char *a = NULL, *b = NULL, err[256];
	size_t alen = 0, blen = 0;
	FILE *f = open_memstream(&a, &alen);
	RC_ASSERT(f != NULL);
	rc_config_print(cfg, f);
	fclose(f);
	struct rc_config again;
	RC_ASSERT(rc_config_init(&again) == 0);
	RC_ASSERT(rc_config_parse_text(&again, a, alen, "print", err, sizeof(err)) == 0);
	f = open_memstream(&b, &blen);
	RC_ASSERT(f != NULL);
	rc_config_print(&again, f);
	fclose(f);
	RC_ASSERT(alen == blen && memcmp(a, b, alen) == 0);
	rc_config_free(&again);
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_config cfg;
	char err[512];
	const char *text = (const char *)data;
	/* A NUL splits the input: before it a config file, after it key=value flags. */
	const char *nul = memchr(text, '\0', size);
	size_t file_len = nul ? (size_t)(nul - text) : size;

	RC_ASSERT(rc_config_init(&cfg) == 0);
	int rc = rc_config_parse_text(&cfg, text, file_len, "fuzz.conf", err, sizeof(err));
	if (rc != 0)
		RC_ASSERT(err[0] != '\0');
	for (const char *p = nul ? nul + 1 : text + size; p < text + size;) {
		const char *end = memchr(p, '\0', (size_t)(text + size - p));
		size_t n = end ? (size_t)(end - p) : (size_t)(text + size - p);
		char *kv = strndup(p, n), *eq = strchr(kv, '=');
		if (eq) {
			*eq = '\0';
			(void)rc_config_set(&cfg, kv, eq + 1, err, sizeof(err));
		}
		free(kv);
		p += n + 1;
	}
	if (rc_config_validate(&cfg, err, sizeof(err)) == 0 && rc_config_printable(&cfg))
		round_trip(&cfg);
	rc_config_free(&cfg);
	return 0;
}
