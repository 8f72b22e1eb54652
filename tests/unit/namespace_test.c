/* Topic namespaces: option parsing (every option, every refusal naming its problem), lookup
 * by topic prefix, and the namespace.NAME config lines with --print-config's round trip. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "namespace.h"

static struct rc_namespaces ns;
static char err[256];

Test(namespace, parses_every_option)
{
	const char spec[] = "chat:history_size=100, history_age_ms=5000,publish=subscribers,"
			    "private=true,slow_consumer_policy=drop,presence=on,join_leave=yes,"
			    "join_leave_subscribers_max=50; news:anonymous=true,publish=nobody;feed:publish=any,slow_consumer_policy=latest;"
			    "plain:";
	cr_assert(eq(int, rc_namespaces_parse(spec, &ns, err, sizeof(err)), 0), "%s", err);
	cr_assert(eq(u32, ns.count, 4));
	const struct rc_namespace *c = &ns.v[0];
	cr_assert(eq(str, (char *)c->name, "chat"));
	cr_assert(c->has_history_size && c->history_size == 100);
	cr_assert(c->has_history_age && c->history_age_ms == 5000);
	cr_assert(eq(int, c->publish, RC_NS_PUBLISH_SUBSCRIBERS));
	cr_assert(c->is_private && !c->anonymous && c->presence && c->join_leave);
	cr_assert(eq(int, c->slow, RC_NS_SLOW_DROP));
	cr_assert(eq(u32, c->join_leave_subscribers_max, 50));
	cr_assert(eq(u32, ns.v[1].join_leave_subscribers_max, RC_DEFAULT_JOIN_LEAVE_SUBSCRIBERS_MAX));
	cr_assert(ns.v[1].anonymous && ns.v[1].publish == RC_NS_PUBLISH_NOBODY);
	cr_assert(eq(int, ns.v[2].publish, RC_NS_PUBLISH_ANY));
	cr_assert(eq(int, ns.v[2].slow, RC_NS_SLOW_LATEST));
	cr_assert(not(ns.v[3].has_history_size));
	cr_assert(eq(int, ns.v[3].publish, RC_NS_PUBLISH_INHERIT));
	cr_assert(ns.any_anonymous);
}

Test(namespace, finds_a_topic_by_its_prefix)
{
	cr_assert(eq(int, rc_namespaces_parse("chat:;chat2:", &ns, err, sizeof(err)), 0));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "chat:room", 9), (void *)&ns.v[0]));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "chat2:x", 7), (void *)&ns.v[1]));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "chat:", 5), (void *)&ns.v[0]));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "chat", 4), NULL));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "chat.room", 9), NULL));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "cha:t", 5), NULL));
	cr_assert(eq(ptr, (void *)rc_namespace_of(&ns, "x:chat:y", 8), NULL));
	cr_assert(eq(ptr, (void *)rc_namespace_of(NULL, "chat:y", 6), NULL));
}

Test(namespace, refusals_name_the_problem)
{
	static const struct {
		const char *spec, *needle;
	} bad[] = {
		{"chat:history_size=-1", "history_size: '-1'"},
		{"chat:history_size=1048577", "0..1048576"},
		{"chat:history_age_ms=x", "history_age_ms"},
		{"chat:join_leave_subscribers_max=1048577", "join_leave_subscribers_max: '1048577'"},
		{"chat:join_leave_subscribers_max=", "is not in 0..1048576"},
		{"chat:publish=all", "'all' is not nobody, subscribers or any"},
		{"chat:slow_consumer_policy=kill", "close, drop or latest"},
		{"chat:private=maybe", "not a boolean"},
		{"chat:colour=red", "unknown option 'colour'"},
		{"chat:history_size", "expected OPTION=VALUE"},
		{"chat:anonymous=true,private=true", "exclude each other"},
		{"a b:publish=any", "namespace 'a b'"},
		{":publish=any", "namespace ''"},
		{"nocolon", "namespace 'nocolon'"},
		{"chat:;chat:", "declared twice"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert(eq(int, rc_namespaces_parse(bad[i].spec, &ns, err, sizeof(err)), -EINVAL),
			  "%s", bad[i].spec);
		cr_assert(not(eq(ptr, strstr(err, bad[i].needle), NULL)), "%s: %s", bad[i].spec, err);
	}
}

Test(namespace, config_lines_and_print)
{
	struct rc_config cfg;
	const char text[] = "namespace.chat = history_size=10, private=true\n"
			    "namespace.news = anonymous=true\n"
			    "namespace.chat = publish=nobody\n"
			    "token_hmac_secret = 0123456789abcdef0123456789abcdef\n";
	cr_assert(eq(int, rc_config_init(&cfg), 0));
	cr_assert(eq(int, rc_config_parse_text(&cfg, text, strlen(text), "t.conf", err, 256), 0),
		  "%s", err);
	/* A later line for a namespace replaces the earlier one. */
	cr_assert(eq(str, cfg.namespaces, "news:anonymous=true;chat:publish=nobody"));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), 0), "%s", err);
	char out[16384] = "";
	FILE *f = fmemopen(out, sizeof(out), "w");
	rc_config_print(&cfg, f);
	fclose(f);
	cr_assert(not(eq(ptr, strstr(out, "namespace.news = anonymous=true\n"), NULL)), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "namespace.chat = publish=nobody\n"), NULL)));
	cr_assert(eq(ptr, strstr(out, "namespaces ="), NULL));
	const char bad[] = "port = 1\nnamespace.chat = publish=all\n";
	cr_assert(eq(int, rc_config_parse_text(&cfg, bad, strlen(bad), "t.conf", err, 256),
		     -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "t.conf:2: namespace.chat: publish"), NULL)), "%s", err);
	/* private needs tokens. */
	rc_config_set(&cfg, "token_hmac_secret", "", err, sizeof(err));
	rc_config_set(&cfg, "namespace.chat", "private=true", err, sizeof(err));
	cr_assert(eq(int, rc_config_validate(&cfg, err, sizeof(err)), -EINVAL));
	cr_assert(not(eq(ptr, strstr(err, "private needs a token key"), NULL)), "%s", err);
	rc_config_free(&cfg);
}
