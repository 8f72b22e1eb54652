/* The configuration table: defaults, parsing, ranges and cross-key rules. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <string.h>

#include "config.h"

static struct rc_config cfg;
static char err[256];

static void setup(void)
{
	cr_assert(eq(int, rc_config_init(&cfg), 0));
	err[0] = '\0';
}

static void teardown(void)
{
	rc_config_free(&cfg);
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, defaults_are_valid)
{
	cr_assert(eq(u64, cfg.port, 8080));
	cr_assert(eq(u64, cfg.echo_message_bytes_max, 16u << 20));
	cr_assert(eq(str, cfg.address, "0.0.0.0"));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), 0));
}

Test(config, sets_numbers_with_suffixes)
{
	cr_assert(eq(int, rc_config_set(&cfg, "message_bytes_max", "2m", err, sizeof(err)), 0));
	cr_assert(eq(u64, cfg.message_bytes_max, 2u << 20));
	cr_assert(eq(int, rc_config_set(&cfg, "frame_bytes_max", "64k", err, sizeof(err)), 0));
	cr_assert(eq(u64, cfg.frame_bytes_max, 65536));
}

Test(config, rejects_out_of_range_with_the_range)
{
	cr_assert(eq(int, rc_config_set(&cfg, "port", "70000", err, sizeof(err)), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "0..65535"), NULL)), "%s", err);
	cr_assert(eq(u64, cfg.port, 8080));
}

Test(config, rejects_garbage_numbers)
{
	const char *bad[] = { "", "-1", "12x", "0x10", "1kk", "99999999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, rc_config_set(&cfg, "backlog", bad[i], err, sizeof(err)), -EINVAL),
			  "accepted '%s'", bad[i]);
}

Test(config, rejects_unknown_key)
{
	cr_assert(eq(int, rc_config_set(&cfg, "no_such_key", "1", err, sizeof(err)), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "no_such_key"), NULL)));
}

Test(config, parses_booleans_and_strings)
{
	cr_assert(eq(int, rc_config_set(&cfg, "pin_shards", "off", err, sizeof(err)), 0));
	cr_assert(eq(int, cfg.pin_shards, 0));
	cr_assert(eq(int, rc_config_set(&cfg, "pin_shards", "maybe", err, sizeof(err)), -EINVAL));
	cr_assert(eq(int, rc_config_set(&cfg, "origins", "https://a, https://b", err, 256), 0));
	cr_assert(eq(str, cfg.origins, "https://a, https://b"));
}

Test(config, parses_text_with_comments)
{
	const char text[] = "# a comment\n\nport = 9000   # trailing\n  shards=2\nlog_level = debug\n";
	cr_assert(eq(int, rc_config_parse_text(&cfg, text, strlen(text), "t.conf", err, 256), 0));
	cr_assert(eq(u64, cfg.port, 9000));
	cr_assert(eq(u64, cfg.shards, 2));
	cr_assert(eq(str, cfg.log_level, "debug"));
}

Test(config, text_errors_name_the_line)
{
	const char text[] = "port = 9000\nthis is not a key value line\n";
	cr_assert(eq(int, rc_config_parse_text(&cfg, text, strlen(text), "t.conf", err, 256),
		     -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "t.conf:2"), NULL)), "%s", err);
}

Test(config, cross_key_rules)
{
	rc_config_set(&cfg, "frame_bytes_max", "2m", err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "frame_bytes_max"), NULL)));
	teardown();
	setup();
	rc_config_set(&cfg, "recv_buffers", "1000", err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
	teardown();
	setup();
	rc_config_set(&cfg, "idle_timeout_ms", "1000", err, sizeof(err));
	rc_config_set(&cfg, "ping_interval_ms", "2000", err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
	teardown();
	setup();
	rc_config_set(&cfg, "log_level", "loud", err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
}

Test(config, splits_lists)
{
	char s[] = " chat , ,superchat,,  v2 ";
	char *items[8];
	size_t n = rc_config_split_list(s, items, 8);
	cr_assert(eq(sz, n, 3));
	cr_assert(eq(str, items[0], "chat"));
	cr_assert(eq(str, items[1], "superchat"));
	cr_assert(eq(str, items[2], "v2"));
}

Test(config, hash_starts_a_comment_only_after_a_blank)
{
	const char text[] = "token_hmac_secret = s3#cret   # the secret\n#port = 1\n";
	cr_assert(eq(int, rc_config_parse_text(&cfg, text, strlen(text), "t.conf", err, 256), 0));
	cr_assert(eq(str, cfg.token_hmac_secret, "s3#cret"));
	cr_assert(eq(u64, cfg.port, 8080));
	cr_assert(rc_config_printable(&cfg));
	rc_config_set(&cfg, "token_hmac_secret", "a #b", err, sizeof(err));
	cr_assert(not(rc_config_printable(&cfg)));
}

Test(config, errors_count_blank_lines)
{
	const char text[] = "port = 9000\n\n\nnot a line\n";
	cr_assert(eq(int, rc_config_parse_text(&cfg, text, strlen(text), "t.conf", err, 256),
		     -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "t.conf:4"), NULL)), "%s", err);
}

Test(config, trims_string_values_like_the_file_parser)
{
	cr_assert(eq(int, rc_config_set(&cfg, "origins", "  https://a \t", err, sizeof(err)), 0));
	cr_assert(eq(str, cfg.origins, "https://a"));
}

/* engine and the redis_* keys: each bad value is refused with its key named; good lists of
 * one and several instances pass. */
Test(config, redis_engine_keys)
{
	static const char *const bad[][2] = {
		{"engine", "postgres"},
		{"redis_addresses", ""},
		{"redis_addresses", "localhost"},
		{"redis_addresses", "h:1,:2"},
		{"redis_addresses", "h:0"},
		{"redis_addresses", "h:70000"},
		{"redis_reconnect_min_ms", "9000"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		teardown();
		setup();
		cr_assert(eq(int, rc_config_set(&cfg, bad[i][0], bad[i][1], err, sizeof(err)), 0));
		cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL), "%s = %s",
			  bad[i][0], bad[i][1]);
		cr_assert(not(eq(ptr, strstr(err, bad[i][0]), NULL)), "%s", err);
	}
	teardown();
	setup();
	char prefix[300];
	memset(prefix, 'p', sizeof(prefix) - 1);
	prefix[sizeof(prefix) - 1] = '\0';
	rc_config_set(&cfg, "redis_prefix", prefix, err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
	teardown();
	setup();
	rc_config_set(&cfg, "engine", "redis", err, sizeof(err));
	rc_config_set(&cfg, "redis_addresses", "10.0.0.5:6379, [::1]:7000,redis:6380", err,
		      sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), 0), "%s", err);
}
