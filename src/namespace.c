/*
 * Topic namespaces (see namespace.h): the option parser and the lookup by topic. Pure; any
 * thread.
 */
#include "namespace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"

#define OPTION_BYTES_LIMIT 256 /* one NAME:OPTIONS entry */

bool rc_namespace_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > RC_NAMESPACE_NAME_BYTES_LIMIT)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* value as one of words (index), or -1. */
static int word_of(const char *value, const char *const *words, int count)
{
	for (int i = 0; i < count; i++)
		if (strcmp(value, words[i]) == 0)
			return i;
	return -1;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const words[] = {"false", "true", "off", "on", "no", "yes", "0", "1"};
	int i = word_of(v, words, (int)RC_ARRAY_LEN(words));
	if (i < 0)
		return false;
	*out = i % 2 == 1;
	return true;
}

static bool parse_u32(const char *v, uint32_t max, uint32_t *out)
{
	char *end;
	if (*v < '0' || *v > '9')
		return false;
	unsigned long long n = strtoull(v, &end, 10);
	if (*end || n > max)
		return false;
	*out = (uint32_t)n;
	return true;
}

/* One OPTION=VALUE of ns: 0, or -EINVAL with why (a literal) set. */
static int option_set(struct rc_namespace *ns, const char *key, const char *v, const char **why)
{
	static const char *const publish[] = {"nobody", "subscribers", "any"};
	static const char *const slow[] = {"close", "drop", "latest"};
	bool ok;
	int i;
	if (strcmp(key, "history_size") == 0) {
		*why = "is not in 0..1048576";
		ok = ns->has_history_size = parse_u32(v, RC_NAMESPACE_HISTORY_SIZE_LIMIT,
						      &ns->history_size);
	} else if (strcmp(key, "history_age_ms") == 0) {
		*why = "is not in 0..86400000 ms";
		ok = ns->has_history_age = parse_u32(v, RC_NAMESPACE_HISTORY_AGE_LIMIT,
						     &ns->history_age_ms);
	} else if (strcmp(key, "publish") == 0) {
		*why = "is not nobody, subscribers or any";
		ok = (i = word_of(v, publish, 3)) >= 0;
		ns->publish = ok ? (enum rc_ns_publish)(i + 1) : RC_NS_PUBLISH_INHERIT;
	} else if (strcmp(key, "slow_consumer_policy") == 0) {
		*why = "is not close, drop or latest";
		ok = (i = word_of(v, slow, 3)) >= 0;
		ns->slow = ok ? (enum rc_ns_slow)(i + 1) : RC_NS_SLOW_INHERIT;
	} else if (strcmp(key, "join_leave_subscribers_max") == 0) {
		*why = "is not in 0..1048576";
		ok = parse_u32(v, RC_NAMESPACE_JOIN_LEAVE_SUBSCRIBERS_LIMIT,
			       &ns->join_leave_subscribers_max);
	} else {
		static const char *const flags[] = {"anonymous", "private", "presence", "join_leave"};
		bool *fields[] = {&ns->anonymous, &ns->is_private, &ns->presence, &ns->join_leave};
		*why = "is not a boolean (true/false)";
		i = word_of(key, flags, 4);
		if (i < 0) {
			*why = NULL;
			return -EINVAL;
		}
		ok = parse_bool(v, fields[i]);
	}
	return ok ? 0 : -EINVAL;
}

/* "k=v,k=v" (modified in place) into ns. */
static int options_parse(struct rc_namespace *ns, char *opts, char *err, size_t err_len)
{
	char *save = NULL;
	for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		while (*o == ' ' || *o == '\t')
			o++;
		char *eq = strchr(o, '='), *end = o + strlen(o);
		while (end > o && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!*o)
			continue;
		const char *why = "expected OPTION=VALUE";
		if (eq) {
			char *k = o, *v = eq + 1;
			for (*eq = '\0'; eq > k && (eq[-1] == ' ' || eq[-1] == '\t');)
				*--eq = '\0';
			while (*v == ' ' || *v == '\t')
				v++;
			if (option_set(ns, k, v, &why) == 0)
				continue;
			if (!why)
				snprintf(err, err_len, "namespace.%s: unknown option '%s' (history_size, "
					 "history_age_ms, publish, anonymous, private, "
					 "slow_consumer_policy, presence, join_leave, "
					 "join_leave_subscribers_max)", ns->name, k);
			else
				snprintf(err, err_len, "namespace.%s: %s: '%s' %s", ns->name, k, v, why);
			return -EINVAL;
		}
		snprintf(err, err_len, "namespace.%s: '%s': %s", ns->name, o, why);
		return -EINVAL;
	}
	if (ns->anonymous && ns->is_private) {
		snprintf(err, err_len, "namespace.%s: anonymous and private exclude each other",
			 ns->name);
		return -EINVAL;
	}
	return 0;
}

/* One "NAME:OPTIONS" entry (modified in place) appended to out. */
static int entry_parse(char *entry, struct rc_namespaces *out, char *err, size_t err_len)
{
	char *colon = strchr(entry, ':');
	size_t len = colon ? (size_t)(colon - entry) : strlen(entry);
	if (!colon || !rc_namespace_name_valid(entry, len)) {
		snprintf(err, err_len, "namespace '%.*s': a name is 1 to %d bytes of A-Z a-z 0-9 _ -",
			 (int)RC_MIN(len, 64), entry, RC_NAMESPACE_NAME_BYTES_LIMIT);
		return -EINVAL;
	}
	if (rc_namespace_of(out, entry, len + 1)) {
		snprintf(err, err_len, "namespace.%.*s is declared twice", (int)len, entry);
		return -EINVAL;
	}
	if (out->count == RC_NAMESPACES_LIMIT) {
		snprintf(err, err_len, "more than %d namespaces", RC_NAMESPACES_LIMIT);
		return -EINVAL;
	}
	struct rc_namespace *ns = &out->v[out->count];
	memset(ns, 0, sizeof(*ns));
	memcpy(ns->name, entry, len);
	ns->name_len = (uint32_t)len;
	ns->join_leave_subscribers_max = RC_DEFAULT_JOIN_LEAVE_SUBSCRIBERS_MAX;
	int rc = options_parse(ns, colon + 1, err, err_len);
	if (rc == 0) {
		out->count++;
		out->any_anonymous |= ns->anonymous;
	}
	return rc;
}

int rc_namespaces_parse(const char *spec, struct rc_namespaces *out, char *err, size_t err_len)
{
	RC_ASSERT(spec != NULL && out != NULL);
	memset(out, 0, sizeof(*out));
	char *copy = strdup(spec), *save = NULL;
	int rc = 0;
	if (!copy)
		return -ENOMEM;
	for (char *e = strtok_r(copy, ";", &save); e && rc == 0; e = strtok_r(NULL, ";", &save)) {
		while (*e == ' ' || *e == '\t')
			e++;
		if (!*e)
			continue;
		if (strlen(e) > OPTION_BYTES_LIMIT) {
			snprintf(err, err_len, "namespace '%.32s...': options longer than %d bytes", e,
				 OPTION_BYTES_LIMIT);
			rc = -EINVAL;
			break;
		}
		rc = entry_parse(e, out, err, err_len);
	}
	free(copy);
	RC_ASSERT(out->count <= RC_NAMESPACES_LIMIT);
	return rc;
}

const struct rc_namespace *rc_namespace_of(const struct rc_namespaces *set, const char *topic,
					   size_t len)
{
	const char *colon = memchr(topic, ':', RC_MIN(len, (size_t)RC_NAMESPACE_NAME_BYTES_LIMIT + 1));
	if (!set || !colon)
		return NULL;
	size_t n = (size_t)(colon - topic);
	for (uint32_t i = 0; i < set->count; i++)
		if (set->v[i].name_len == n && memcmp(set->v[i].name, topic, n) == 0)
			return &set->v[i];
	return NULL;
}
