/*
 * Envelope codec of envelope.h. Owns the protocol's field rules, the topic-name charset and
 * the JSON writers; does not own any buffer (input is borrowed, output goes to the caller's
 * memory). Pure; any thread.
 *
 * cJSON builds the tree that says which keys a message has and what its strings decode to.
 * Three things it does not do are done here, on the raw bytes:
 * - Strictness. cJSON accepts leading zeros ("01"), raw control bytes inside strings, any
 *   byte <= 0x20 as whitespace, a byte order mark, and it cuts strings at an escaped
 *   \u0000. A token pass (strict_tokens) rejects those first, so what passes is RFC 8259
 *   JSON and the raw walker below can trust one definition of whitespace.
 * - Data pass-through. cJSON keeps numbers as doubles and prints them with 15 significant
 *   digits when that round-trips within an epsilon: 0.30000000000000004 became 0.3,
 *   9007199254740993 became 9.00719925474099e+15 and 1e400 became null when we tried. A
 *   gateway must not rewrite what publishers send, so "data" is copied from the input,
 *   whitespace removed (copy_value), and the same goes for "since" (parsed from its digits).
 * - Positions. cJSON keeps none, so the raw walker pairs the n-th member of an object in
 *   the tree with the n-th member in the bytes (member_values).
 * cJSON resets a global error pointer on every parse (cJSON_GetErrorPtr); we never read it.
 */
#include "envelope.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "base/rc_assert.h"
#include "base/rc_util.h"
#include "utf8.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define PUT_LIT(o, lit) put(o, lit, sizeof(lit) - 1)

RC_STATIC_ASSERT(RC_TOPIC_BYTES_LIMIT == 128, "the topic reason strings say 128");
RC_STATIC_ASSERT(RC_ENVELOPE_ID_BYTES_LIMIT == 64, "the id reason string says 64");
RC_STATIC_ASSERT(RC_ENVELOPE_KEYS_LIMIT <= 32, "members are walked into a stack array");
RC_STATIC_ASSERT(RC_ENVELOPE_SEQ_LIMIT < UINT64_MAX / 10 - 9, "since digits cannot overflow");

/* ---- topic names ------------------------------------------------------------------------- */
static const bool topic_char[256] = {
	['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['0' ... '9'] = true,
	['_'] = true,         ['.'] = true,         [':'] = true,
	['/'] = true,         ['-'] = true,
};

bool rc_topic_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > RC_TOPIC_BYTES_LIMIT)
		return false;
	RC_ASSERT(name != NULL);
	/* A personal topic: '#' then a user id of the same charset (per-user delivery). */
	for (size_t i = rc_topic_personal(name, len); i < len; i++)
		if (!topic_char[(uint8_t)name[i]])
			return false;
	return true;
}

bool rc_topic_personal(const char *name, size_t len)
{
	return len > 1 && name[0] == '#';
}

bool rc_topic_reserved(const char *name, size_t len)
{
	static const char prefix[] = "ringcast.";

	RC_ASSERT(name != NULL || len == 0);
	return len >= sizeof(prefix) - 1 && memcmp(name, prefix, sizeof(prefix) - 1) == 0;
}

/* ---- raw tokens -------------------------------------------------------------------------- */
/* Where copy_value() puts compact JSON; full once a byte did not fit. */
struct sink {
	char *p;
	size_t cap;
	size_t len;
	bool full;
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* memchr, not strchr: a NUL byte must not match the terminator. */
static bool is_structural(char c)
{
	return memchr("{}[],:", c, 6) != NULL;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && is_ws(*p))
		p++;
	return p;
}

/* One or more digits at p: the end of them, or NULL. */
static const char *scan_digits(const char *p, const char *end)
{
	const char *start = p;

	while (p < end && is_digit(*p))
		p++;
	return p > start ? p : NULL;
}

/*
 * The string token at p (a quote): the byte after its closing quote, or NULL for a raw
 * control byte, an escaped \u0000 (cJSON would cut the string there) or no closing quote.
 * Which escapes are valid is cJSON's to check.
 */
static const char *scan_string(const char *p, const char *end)
{
	RC_DASSERT(p < end && *p == '"');
	for (p++; p < end; p++) {
		if (*p == '"')
			return p + 1;
		if ((uint8_t)*p < 0x20)
			return NULL;
		if (*p != '\\')
			continue;
		if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
			return NULL;
		if (++p == end)
			return NULL;
	}
	return NULL;
}

/* The number token at p: RFC 8259's grammar exactly, or NULL. */
static const char *scan_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (!(p = scan_digits(p, end)))
		return NULL;
	if (p < end && *p == '.' && !(p = scan_digits(p + 1, end)))
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!(p = scan_digits(p, end)))
			return NULL;
	}
	/* "01", "1.2.3", "1e5e5": what follows a number must not continue it. */
	if (p < end && (is_digit(*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' ||
			*p == '+'))
		return NULL;
	return p;
}

/* true, false or null at p: the byte after it, or NULL. */
static const char *scan_word(const char *p, const char *end)
{
	static const char *const words[] = { "true", "false", "null" };

	for (size_t i = 0; i < RC_ARRAY_LEN(words); i++) {
		size_t n = strlen(words[i]);

		if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0)
			return p + n;
	}
	return NULL;
}

/* The scalar token at p (string, number or word): its end, or NULL. */
static const char *scan_scalar(const char *p, const char *end)
{
	if (*p == '"')
		return scan_string(p, end);
	if (*p == '-' || is_digit(*p))
		return scan_number(p, end);
	return scan_word(p, end);
}

/*
 * Checks every token of in[0..len) against RFC 8259 (strings, numbers, words, the four
 * whitespace bytes, the six structural ones). Nesting and escapes are left to cJSON.
 */
static bool strict_tokens(const char *p, const char *end)
{
	while (p < end) {
		if (is_ws(*p) || is_structural(*p))
			p++;
		else if (!(p = scan_scalar(p, end)))
			return false;
	}
	return true;
}

bool rc_envelope_json_within(const char *in, size_t len, uint32_t depth_max,
			     uint32_t elements_max, const char **reason)
{
	const char *p = in, *end = in + len;
	uint32_t depth = 0, elements = 1;

	RC_ASSERT(in != NULL || len == 0);
	RC_ASSERT(reason != NULL);
	while (p < end) {
		if (*p == '"') {
			/* A malformed string ends the scan: the parser refuses it anyway. */
			if (!(p = scan_string(p, end)))
				return true;
			continue;
		}
		if (*p == '[' || *p == '{') {
			elements++;
			if (++depth > depth_max) {
				*reason = "JSON nested deeper than json_depth_max";
				return false;
			}
		} else if (*p == ']' || *p == '}') {
			depth -= depth > 0;
		} else if (*p == ',') {
			elements++;
		}
		if (elements > elements_max) {
			*reason = "JSON has more values than json_elements_max";
			return false;
		}
		p++;
	}
	return true;
}

/* Appends p[0..n) to s, or marks s full (and leaves it as it was) if it does not fit. */
static void put(struct sink *s, const char *p, size_t n)
{
	if (s->full || n > s->cap - s->len) {
		s->full = true;
		return;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
}

/*
 * The value starting at p (after any whitespace), in input that passed strict_tokens() and
 * cJSON: returns the byte after it, or NULL if the bytes do not hold one value (or s filled
 * up). With s, the value's tokens are appended to it without whitespace.
 */
static const char *copy_value(const char *p, const char *end, struct sink *s)
{
	uint32_t depth = 0;

	do {
		const char *tok;

		p = skip_ws(p, end);
		if (p == end)
			return NULL;
		tok = p;
		switch (*p) {
		case '{':
		case '[':
			depth++;
			p++;
			break;
		case '}':
		case ']':
			if (depth-- == 0)
				return NULL;
			p++;
			break;
		case ',':
		case ':':
			if (depth == 0)
				return NULL;
			p++;
			break;
		default:
			if (!(p = scan_scalar(p, end)))
				return NULL;
		}
		if (s) {
			put(s, tok, (size_t)(p - tok));
			if (s->full)
				return NULL;
		}
	} while (depth > 0);
	return p;
}

/*
 * Walks the first count members of the object at p ('{'), storing where each value starts
 * in vals[]. False if the bytes disagree with the tree cJSON built.
 */
static bool member_values(const char *p, const char *end, const char **vals, uint32_t count)
{
	RC_ASSERT(count <= RC_ENVELOPE_KEYS_LIMIT);
	if (p == end || *p != '{')
		return false;
	p++;
	for (uint32_t i = 0; i < count; i++) {
		p = skip_ws(p, end);
		if (i > 0) {
			if (p == end || *p != ',')
				return false;
			p = skip_ws(p + 1, end);
		}
		if (p == end || *p != '"' || !(p = scan_string(p, end)))
			return false;
		p = skip_ws(p, end);
		if (p == end || *p != ':')
			return false;
		vals[i] = p = skip_ws(p + 1, end);
		if (!(p = copy_value(p, end, NULL)))
			return false;
	}
	return true;
}

/* ---- fields and ops ---------------------------------------------------------------------- */
enum field {
	F_OP = 0,
	F_TOPIC,
	F_SINCE,
	F_DATA,
	F_ID,
	F_EPOCH,
	F_TOKEN,
	F_COUNT,
};

#define BIT(f) (1u << (f))

static const char *const field_names[F_COUNT] = { "op", "topic", "since", "data", "id",
						  "epoch", "token" };

static const char *const repeated_reasons[F_COUNT] = {
	"\"op\" appears twice",   "\"topic\" appears twice", "\"since\" appears twice",
	"\"data\" appears twice", "\"id\" appears twice",   "\"epoch\" appears twice",
	"\"token\" appears twice",
};

static const char *const misplaced_reasons[F_COUNT] = {
	[F_OP] = "\"op\" does not belong in a POST /publish item",
	[F_TOPIC] = "ping takes no \"topic\"",
	[F_SINCE] = "\"since\" belongs to sub only",
	[F_DATA] = "\"data\" belongs to pub only",
	[F_ID] = "\"id\" belongs to pub only",
	[F_EPOCH] = "\"epoch\" belongs to sub only",
	[F_TOKEN] = "\"token\" belongs to sub and refresh only",
};

/* Which fields an op requires and which it allows (bits of enum field). */
struct op_rule {
	const char *name;
	uint32_t required;
	uint32_t allowed;
};

static const struct op_rule op_rules[RC_ENVELOPE_OP_COUNT] = {
	[RC_ENVELOPE_OP_SUB] = { "sub", BIT(F_TOPIC),
				 BIT(F_OP) | BIT(F_TOPIC) | BIT(F_SINCE) | BIT(F_EPOCH) | BIT(F_TOKEN) },
	[RC_ENVELOPE_OP_UNSUB] = { "unsub", BIT(F_TOPIC), BIT(F_OP) | BIT(F_TOPIC) },
	[RC_ENVELOPE_OP_PUB] = { "pub", BIT(F_TOPIC) | BIT(F_DATA),
				 BIT(F_OP) | BIT(F_TOPIC) | BIT(F_DATA) | BIT(F_ID) },
	[RC_ENVELOPE_OP_PING] = { "ping", 0, BIT(F_OP) },
	[RC_ENVELOPE_OP_REFRESH] = { "refresh", BIT(F_TOKEN), BIT(F_OP) | BIT(F_TOKEN) },
	[RC_ENVELOPE_OP_PRESENCE] = { "presence", BIT(F_TOPIC), BIT(F_OP) | BIT(F_TOPIC) },
	[RC_ENVELOPE_OP_PRESENCE_STATS] = { "presence_stats", BIT(F_TOPIC),
					    BIT(F_OP) | BIT(F_TOPIC) },
};

/* A POST /publish item: a pub without "op". */
static const struct op_rule publish_item_rule = { "pub", BIT(F_TOPIC) | BIT(F_DATA),
						  BIT(F_TOPIC) | BIT(F_DATA) | BIT(F_ID) };

/* The fields of one object: tree node and raw value start, NULL when absent. */
struct fields {
	const cJSON *node[F_COUNT];
	const char *raw[F_COUNT];
};

/* Fills f from the object obj whose bytes start at raw ('{'). */
static enum rc_envelope_err collect(const cJSON *obj, const char *raw, const char *end,
				    struct fields *f, const char **reason)
{
	const char *vals[RC_ENVELOPE_KEYS_LIMIT];
	const cJSON *c;
	uint32_t count = 0, i = 0;

	memset(f, 0, sizeof(*f));
	cJSON_ArrayForEach(c, obj)
	{
		if (count++ == RC_ENVELOPE_KEYS_LIMIT) {
			*reason = "more than " STR(RC_ENVELOPE_KEYS_LIMIT) " keys";
			return RC_ENVELOPE_ERR_FIELD;
		}
	}
	if (!member_values(raw, end, vals, count)) {
		RC_DASSERT(!"the raw walker disagrees with cJSON");
		*reason = "not valid JSON";
		return RC_ENVELOPE_ERR_JSON;
	}
	cJSON_ArrayForEach(c, obj)
	{
		for (uint32_t k = 0; k < F_COUNT; k++) {
			if (strcmp(c->string, field_names[k]) != 0)
				continue;
			if (f->node[k]) {
				*reason = repeated_reasons[k];
				return RC_ENVELOPE_ERR_FIELD;
			}
			f->node[k] = c;
			f->raw[k] = vals[i];
		}
		i++;
	}
	RC_ASSERT(i == count);
	return RC_ENVELOPE_OK;
}

static enum rc_envelope_err read_op(const cJSON *node, enum rc_envelope_op *op,
				    const char **reason)
{
	if (!node) {
		*reason = "missing \"op\"";
		return RC_ENVELOPE_ERR_OP;
	}
	if (!cJSON_IsString(node)) {
		*reason = "\"op\" must be a string";
		return RC_ENVELOPE_ERR_OP;
	}
	for (uint32_t i = 0; i < RC_ENVELOPE_OP_COUNT; i++) {
		if (strcmp(node->valuestring, op_rules[i].name) == 0) {
			*op = (enum rc_envelope_op)i;
			return RC_ENVELOPE_OK;
		}
	}
	*reason = "unknown op (expected sub, unsub, pub, ping, refresh, presence or presence_stats)";
	return RC_ENVELOPE_ERR_UNKNOWN_OP;
}

/* Misplaced and missing fields, judged by rule. */
static enum rc_envelope_err check_fields(const struct fields *f, const struct op_rule *rule,
					 const char **reason)
{
	for (uint32_t k = 0; k < F_COUNT; k++) {
		if (f->node[k] && !(rule->allowed & BIT(k))) {
			*reason = misplaced_reasons[k];
			return RC_ENVELOPE_ERR_FIELD;
		}
	}
	if ((rule->required & BIT(F_TOPIC)) && !f->node[F_TOPIC]) {
		*reason = "missing \"topic\"";
		return RC_ENVELOPE_ERR_TOPIC;
	}
	if ((rule->required & BIT(F_DATA)) && !f->node[F_DATA]) {
		*reason = "missing \"data\"";
		return RC_ENVELOPE_ERR_DATA;
	}
	if ((rule->required & BIT(F_TOKEN)) && !f->node[F_TOKEN]) {
		*reason = "missing \"token\"";
		return RC_ENVELOPE_ERR_FIELD;
	}
	return RC_ENVELOPE_OK;
}

static enum rc_envelope_err read_topic(const cJSON *node, struct rc_envelope *e,
				       const char **reason)
{
	size_t len;

	if (!cJSON_IsString(node)) {
		*reason = "\"topic\" must be a string";
		return RC_ENVELOPE_ERR_TOPIC;
	}
	len = strlen(node->valuestring);
	if (len == 0 || len > RC_TOPIC_BYTES_LIMIT) {
		*reason = "\"topic\" must be 1 to " STR(RC_TOPIC_BYTES_LIMIT) " bytes long";
		return RC_ENVELOPE_ERR_TOPIC;
	}
	if (!rc_topic_name_valid(node->valuestring, len)) {
		*reason = "\"topic\" may hold only A-Z a-z 0-9 _ . : / -";
		return RC_ENVELOPE_ERR_TOPIC;
	}
	memcpy(e->topic, node->valuestring, len + 1);
	e->topic_len = (uint32_t)len;
	return RC_ENVELOPE_OK;
}

/* "since" from its digits (cJSON's double would round above 2^53). */
static enum rc_envelope_err read_since(const cJSON *node, const char *raw, const char *end,
				       struct rc_envelope *e, const char **reason)
{
	uint64_t v = 0;
	const char *p = raw;

	if (!cJSON_IsNumber(node) || p == end || !is_digit(*p))
		goto bad;
	for (; p < end && is_digit(*p); p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > RC_ENVELOPE_SEQ_LIMIT)
			goto bad;
	}
	if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
		goto bad;
	e->has_since = true;
	e->since = v;
	return RC_ENVELOPE_OK;
bad:
	*reason = "\"since\" must be an integer from 0 to 2^53-1";
	return RC_ENVELOPE_ERR_SINCE;
}

static enum rc_envelope_err read_id(const cJSON *node, struct rc_envelope *e,
				    const char **reason)
{
	size_t len;

	if (!cJSON_IsString(node) || (len = strlen(node->valuestring)) == 0 ||
	    len > RC_ENVELOPE_ID_BYTES_LIMIT) {
		*reason = "\"id\" must be a string of 1 to " STR(RC_ENVELOPE_ID_BYTES_LIMIT)
			  " bytes";
		return RC_ENVELOPE_ERR_ID;
	}
	memcpy(e->id, node->valuestring, len + 1);
	e->id_len = (uint32_t)len;
	return RC_ENVELOPE_OK;
}

/*
 * "epoch" as the client echoes it: 16 lowercase hex digits are an epoch; any other string
 * is kept as 0, which no topic ever has, so a resume with it is answered with a reset.
 */
static enum rc_envelope_err read_epoch(const cJSON *node, struct rc_envelope *e,
				       const char **reason)
{
	const char *p;
	uint64_t v = 0;

	if (!cJSON_IsString(node)) {
		*reason = "\"epoch\" must be a string";
		return RC_ENVELOPE_ERR_FIELD;
	}
	e->has_epoch = true;
	p = node->valuestring;
	if (strlen(p) != RC_ENVELOPE_EPOCH_CHARS)
		return RC_ENVELOPE_OK;
	for (uint32_t i = 0; i < RC_ENVELOPE_EPOCH_CHARS; i++) {
		const char *d = memchr("0123456789abcdef", p[i], 16);

		if (!d)
			return RC_ENVELOPE_OK;
		v = v << 4 | (uint64_t)(d - "0123456789abcdef");
	}
	e->epoch = v;
	return RC_ENVELOPE_OK;
}

/* "token": a non-empty string, copied into the data buffer (sub and refresh carry no data). */
static enum rc_envelope_err read_token(const cJSON *node, struct sink *data,
				       struct rc_envelope *e, const char **reason)
{
	size_t len;

	if (!cJSON_IsString(node) || (len = strlen(node->valuestring)) == 0 ||
	    len > RC_ENVELOPE_TOKEN_BYTES_LIMIT) {
		*reason = "\"token\" must be a non-empty string";
		return RC_ENVELOPE_ERR_FIELD;
	}
	/* A buffer sized for the message holds its token; a smaller one refuses it. */
	if (data->cap - data->len <= len) {
		*reason = "\"token\" is larger than allowed";
		return RC_ENVELOPE_ERR_DATA_TOO_LARGE;
	}
	e->token = data->p + data->len;
	memcpy(data->p + data->len, node->valuestring, len + 1);
	data->len += len + 1;
	e->token_len = (uint32_t)len;
	return RC_ENVELOPE_OK;
}

/* Copies "data" compact into the data buffer, behind what earlier items put there. */
static enum rc_envelope_err read_data(const char *raw, const char *end, struct sink *data,
				      struct rc_envelope *e, const char **reason)
{
	struct sink s = { data->p + data->len, 0, 0, false };

	RC_ASSERT(data->len <= data->cap);
	/* Earlier items of a batch may have used it all; a NUL must follow the value. */
	s.cap = data->cap - data->len > 0 ? data->cap - data->len - 1 : 0;
	if (!copy_value(raw, end, &s)) {
		RC_DASSERT(s.full);
		*reason = s.full ? "\"data\" is larger than allowed" : "not valid JSON";
		return s.full ? RC_ENVELOPE_ERR_DATA_TOO_LARGE : RC_ENVELOPE_ERR_JSON;
	}
	RC_ASSERT(s.len > 0 && s.len <= s.cap);
	s.p[s.len] = '\0';
	data->len += s.len + 1;
	e->data = s.p;
	e->data_len = (uint32_t)s.len;
	return RC_ENVELOPE_OK;
}

/*
 * One message object: obj in the tree, raw its first byte in the input. publish_item: a
 * POST /publish item (no op) rather than a client message.
 */
static enum rc_envelope_err parse_object(const cJSON *obj, const char *raw, const char *end,
					 bool publish_item, struct sink *data,
					 struct rc_envelope *e, const char **reason)
{
	const struct op_rule *rule = &publish_item_rule;
	enum rc_envelope_err err;
	struct fields f;

	if (!cJSON_IsObject(obj)) {
		*reason = publish_item ? "a publish item must be a JSON object"
				       : "a message must be a JSON object";
		return RC_ENVELOPE_ERR_NOT_OBJECT;
	}
	memset(e, 0, sizeof(*e));
	e->op = RC_ENVELOPE_OP_PUB;
	if ((err = collect(obj, raw, end, &f, reason)))
		return err;
	if (!publish_item) {
		if ((err = read_op(f.node[F_OP], &e->op, reason)))
			return err;
		rule = &op_rules[e->op];
	}
	if ((err = check_fields(&f, rule, reason)))
		return err;
	if (f.node[F_TOPIC] && (err = read_topic(f.node[F_TOPIC], e, reason)))
		return err;
	if (f.node[F_SINCE] && (err = read_since(f.node[F_SINCE], f.raw[F_SINCE], end, e, reason)))
		return err;
	if (f.node[F_ID] && (err = read_id(f.node[F_ID], e, reason)))
		return err;
	if (f.node[F_EPOCH] && (err = read_epoch(f.node[F_EPOCH], e, reason)))
		return err;
	if (f.node[F_DATA] && (err = read_data(f.raw[F_DATA], end, data, e, reason)))
		return err;
	if (f.node[F_TOKEN] && (err = read_token(f.node[F_TOKEN], data, e, reason)))
		return err;
	RC_ASSERT(e->op < RC_ENVELOPE_OP_COUNT);
	if (e->op != RC_ENVELOPE_OP_PING && e->op != RC_ENVELOPE_OP_REFRESH)
		RC_ASSERT(rc_topic_name_valid(e->topic, e->topic_len));
	return RC_ENVELOPE_OK;
}

/*
 * Checks encoding and tokens, then builds the tree. Returns it (the caller deletes it) with
 * *root_raw at the value's first byte, or NULL with *reason.
 */
static cJSON *parse_json(const char *in, size_t len, const char **root_raw, const char **reason)
{
	const char *end = in + len, *parse_end = NULL;
	cJSON *root;

	if (!rc_utf8_valid((const uint8_t *)in, len)) {
		*reason = "not valid UTF-8";
		return NULL;
	}
	if (!strict_tokens(in, end)) {
		*reason = "not valid JSON";
		return NULL;
	}
	root = cJSON_ParseWithLengthOpts(in, len, &parse_end, false);
	if (!root) {
		*reason = "not valid JSON";
		return NULL;
	}
	if (skip_ws(parse_end, end) != end) {
		cJSON_Delete(root);
		*reason = "bytes after the JSON value";
		return NULL;
	}
	*root_raw = skip_ws(in, end);
	return root;
}

enum rc_envelope_err rc_envelope_parse(const char *in, size_t len, struct rc_envelope *out,
				       char *data_buf, size_t data_cap, const char **reason)
{
	struct sink data = { data_buf, data_cap, 0, false };
	enum rc_envelope_err err;
	const char *raw = NULL;
	cJSON *root;

	RC_ASSERT(in != NULL || len == 0);
	RC_ASSERT(out != NULL && reason != NULL);
	RC_ASSERT(data_buf != NULL && data_cap > 0);
	*reason = NULL;
	root = parse_json(in, len, &raw, reason);
	if (!root)
		return RC_ENVELOPE_ERR_JSON;
	err = parse_object(root, raw, in + len, false, &data, out, reason);
	cJSON_Delete(root);
	RC_ASSERT((err == RC_ENVELOPE_OK) == (*reason == NULL));
	return err;
}

/* The items of a batch array whose bytes start at raw ('['). */
static enum rc_envelope_err parse_batch(const cJSON *arr, const char *raw, const char *end,
					struct rc_envelope *items, uint32_t items_max,
					uint32_t *count, struct sink *data, const char **reason)
{
	const char *p = raw + 1;
	const cJSON *c;
	uint32_t n = 0;
	int size = cJSON_GetArraySize(arr);

	if (size == 0 || (uint32_t)size > items_max) {
		*reason = size ? "more items than allowed in one POST /publish" : "empty batch";
		return RC_ENVELOPE_ERR_BATCH;
	}
	cJSON_ArrayForEach(c, arr)
	{
		enum rc_envelope_err err;

		*count = n;
		p = skip_ws(p, end);
		if (n > 0 && p < end && *p == ',')
			p = skip_ws(p + 1, end);
		if ((err = parse_object(c, p, end, true, data, &items[n], reason)))
			return err;
		if (!(p = copy_value(p, end, NULL))) {
			RC_DASSERT(!"the raw walker disagrees with cJSON");
			*reason = "not valid JSON";
			return RC_ENVELOPE_ERR_JSON;
		}
		n++;
	}
	RC_ASSERT(n == (uint32_t)size);
	*count = n;
	return RC_ENVELOPE_OK;
}

/* Which of "topics", "data" and "id" member c of a broadcast is, kept in the slots (data by
 * its raw value); an unknown or repeated key is an error. */
static enum rc_envelope_err broadcast_member(const cJSON *c, const char *raw,
					     const cJSON **topics, const cJSON **id,
					     const char **data_raw, const char **reason)
{
	bool dup;
	if (strcmp(c->string, "topics") == 0) {
		dup = *topics != NULL;
		*topics = c;
	} else if (strcmp(c->string, "id") == 0) {
		dup = *id != NULL;
		*id = c;
	} else if (strcmp(c->string, "data") == 0) {
		dup = *data_raw != NULL;
		*data_raw = raw;
	} else {
		*reason = "a broadcast takes \"topics\", \"data\" and \"id\" only";
		return RC_ENVELOPE_ERR_FIELD;
	}
	*reason = dup ? "repeated key in a broadcast" : NULL;
	return dup ? RC_ENVELOPE_ERR_FIELD : RC_ENVELOPE_OK;
}

/* {"topics":[T,...],"data":D[,"id":I]} at obj (raw: its '{'): one item per topic, all with
 * the same data and id. */
static enum rc_envelope_err parse_broadcast(const cJSON *obj, const char *raw, const char *end,
					    struct rc_envelope *items, uint32_t items_max,
					    uint32_t *count, struct sink *data, const char **reason)
{
	const char *vals[RC_ENVELOPE_KEYS_LIMIT], *data_raw = NULL;
	const cJSON *c, *topics = NULL, *id = NULL;
	uint32_t n = 0, i = 0;
	enum rc_envelope_err err;

	cJSON_ArrayForEach(c, obj)
		n++;
	if (n > 3) { /* more keys than a broadcast has */
		*reason = "a broadcast takes \"topics\", \"data\" and \"id\" only";
		return RC_ENVELOPE_ERR_FIELD;
	}
	if (!member_values(raw, end, vals, n)) {
		*reason = "not valid JSON";
		return RC_ENVELOPE_ERR_JSON;
	}
	cJSON_ArrayForEach(c, obj)
		if ((err = broadcast_member(c, vals[i++], &topics, &id, &data_raw, reason)))
			return err;
	int size = cJSON_IsArray(topics) ? cJSON_GetArraySize(topics) : 0;
	if (size == 0 || (uint32_t)size > items_max) {
		*reason = "\"topics\" must be an array of 1 to 256 topic names";
		return RC_ENVELOPE_ERR_BATCH;
	}
	if (!data_raw) {
		*reason = "missing \"data\"";
		return RC_ENVELOPE_ERR_DATA;
	}
	memset(&items[0], 0, sizeof(items[0]));
	items[0].op = RC_ENVELOPE_OP_PUB;
	if ((id && (err = read_id(id, &items[0], reason))) ||
	    (err = read_data(data_raw, end, data, &items[0], reason)))
		return err;
	n = 0;
	cJSON_ArrayForEach(c, topics)
	{
		if (n > 0)
			items[n] = items[0];
		*count = n;
		if ((err = read_topic(c, &items[n], reason)))
			return err;
		n++;
	}
	*count = n;
	return RC_ENVELOPE_OK;
}

/* The body of POST /publish, or with broadcast of a server API broadcast. */
static enum rc_envelope_err parse_body(const char *in, size_t len, bool broadcast,
				       struct rc_envelope *items, uint32_t items_max,
				       uint32_t *count, char *data_buf, size_t data_cap,
				       const char **reason)
{
	struct sink data = { data_buf, data_cap, 0, false };
	enum rc_envelope_err err;
	const char *raw = NULL;
	cJSON *root;

	RC_ASSERT(in != NULL || len == 0);
	RC_ASSERT(items != NULL && items_max > 0 && count != NULL && reason != NULL);
	RC_ASSERT(data_buf != NULL && data_cap > 0);
	*reason = NULL;
	*count = 0;
	root = parse_json(in, len, &raw, reason);
	if (!root)
		return RC_ENVELOPE_ERR_JSON;
	if (broadcast && cJSON_IsObject(root)) {
		err = parse_broadcast(root, raw, in + len, items, items_max, count, &data, reason);
		*count = err ? 0 : *count;
	} else if (!broadcast && cJSON_IsArray(root)) {
		err = parse_batch(root, raw, in + len, items, items_max, count, &data, reason);
	} else if (!broadcast && cJSON_IsObject(root)) {
		err = parse_object(root, raw, in + len, true, &data, &items[0], reason);
		*count = err ? 0 : 1;
	} else {
		*reason = broadcast ? "a broadcast is a JSON object"
				    : "the body must be a JSON object or an array of them";
		err = RC_ENVELOPE_ERR_NOT_OBJECT;
	}
	cJSON_Delete(root);
	RC_ASSERT((err == RC_ENVELOPE_OK) == (*reason == NULL));
	RC_ASSERT(*count <= items_max);
	return err;
}

enum rc_envelope_err rc_envelope_parse_publish(const char *in, size_t len,
					       struct rc_envelope *items, uint32_t items_max,
					       uint32_t *count, char *data_buf, size_t data_cap,
					       const char **reason)
{
	return parse_body(in, len, false, items, items_max, count, data_buf, data_cap, reason);
}

enum rc_envelope_err rc_envelope_parse_broadcast(const char *in, size_t len,
						 struct rc_envelope *items, uint32_t items_max,
						 uint32_t *count, char *data_buf, size_t data_cap,
						 const char **reason)
{
	return parse_body(in, len, true, items, items_max, count, data_buf, data_cap, reason);
}

/* ---- names ------------------------------------------------------------------------------- */
const char *rc_envelope_op_name(enum rc_envelope_op op)
{
	RC_ASSERT(op < RC_ENVELOPE_OP_COUNT);
	return op_rules[op].name;
}

static const char *const err_names[RC_ENVELOPE_ERR_COUNT] = {
	[RC_ENVELOPE_OK] = "ok",
	[RC_ENVELOPE_ERR_JSON] = "json",
	[RC_ENVELOPE_ERR_NOT_OBJECT] = "not_object",
	[RC_ENVELOPE_ERR_OP] = "op",
	[RC_ENVELOPE_ERR_UNKNOWN_OP] = "unknown_op",
	[RC_ENVELOPE_ERR_TOPIC] = "topic",
	[RC_ENVELOPE_ERR_DATA] = "data",
	[RC_ENVELOPE_ERR_DATA_TOO_LARGE] = "data_too_large",
	[RC_ENVELOPE_ERR_SINCE] = "since",
	[RC_ENVELOPE_ERR_ID] = "id",
	[RC_ENVELOPE_ERR_FIELD] = "field",
	[RC_ENVELOPE_ERR_BATCH] = "batch",
	[RC_ENVELOPE_ERR_NOT_SUBSCRIBED] = "not_subscribed",
	[RC_ENVELOPE_ERR_ALREADY_SUBSCRIBED] = "already_subscribed",
	[RC_ENVELOPE_ERR_SUBSCRIPTION_LIMIT] = "subscription_limit",
	[RC_ENVELOPE_ERR_FORBIDDEN] = "forbidden",
	[RC_ENVELOPE_ERR_BUSY] = "busy",
	[RC_ENVELOPE_ERR_INTERNAL] = "internal",
	[RC_ENVELOPE_ERR_TOKEN] = "token",
};

static const char *const err_reasons[RC_ENVELOPE_ERR_COUNT] = {
	[RC_ENVELOPE_OK] = "ok",
	[RC_ENVELOPE_ERR_JSON] = "not valid JSON",
	[RC_ENVELOPE_ERR_NOT_OBJECT] = "a message must be a JSON object",
	[RC_ENVELOPE_ERR_OP] = "missing or invalid \"op\"",
	[RC_ENVELOPE_ERR_UNKNOWN_OP] = "unknown op",
	[RC_ENVELOPE_ERR_TOPIC] = "missing or invalid \"topic\"",
	[RC_ENVELOPE_ERR_DATA] = "missing \"data\"",
	[RC_ENVELOPE_ERR_DATA_TOO_LARGE] = "\"data\" is larger than allowed",
	[RC_ENVELOPE_ERR_SINCE] = "invalid \"since\"",
	[RC_ENVELOPE_ERR_ID] = "invalid \"id\"",
	[RC_ENVELOPE_ERR_FIELD] = "a key is repeated or does not belong to this op",
	[RC_ENVELOPE_ERR_BATCH] = "invalid batch size",
	[RC_ENVELOPE_ERR_NOT_SUBSCRIBED] = "not subscribed to this topic",
	[RC_ENVELOPE_ERR_ALREADY_SUBSCRIBED] = "already subscribed to this topic",
	[RC_ENVELOPE_ERR_SUBSCRIPTION_LIMIT] = "too many subscriptions on this connection",
	[RC_ENVELOPE_ERR_FORBIDDEN] = "not allowed",
	[RC_ENVELOPE_ERR_BUSY] = "server busy, try again",
	[RC_ENVELOPE_ERR_INTERNAL] = "internal error",
	[RC_ENVELOPE_ERR_TOKEN] = "access token refused",
};

const char *rc_envelope_err_name(enum rc_envelope_err err)
{
	RC_ASSERT(err < RC_ENVELOPE_ERR_COUNT);
	return err_names[err];
}

const char *rc_envelope_err_reason(enum rc_envelope_err err)
{
	RC_ASSERT(err < RC_ENVELOPE_ERR_COUNT);
	return err_reasons[err];
}

/* ---- writers ----------------------------------------------------------------------------- */
#define MSG_HEAD "{\"op\":\"msg\",\"topic\":\""
#define MSG_SEQ "\",\"seq\":"
#define MSG_DATA ",\"data\":"
#define MSG_TAIL "}"

static size_t u64_digits(uint64_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static void put_u64(struct sink *o, uint64_t v)
{
	char buf[20];
	size_t n = u64_digits(v);

	RC_ASSERT(n <= sizeof(buf));
	for (size_t i = n; i-- > 0; v /= 10)
		buf[i] = (char)('0' + v % 10);
	put(o, buf, n);
}

/* Appends s[0..n) as the inside of a JSON string: quote, backslash and controls escaped. */
static void put_escaped(struct sink *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];
		char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
		size_t esc_len = 6;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		esc[4] = hex[c >> 4];
		esc[5] = hex[c & 15];
		put(o, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': case '\\': esc[1] = (char)c; esc_len = 2; break;
		case '\n': esc[1] = 'n'; esc_len = 2; break;
		case '\r': esc[1] = 'r'; esc_len = 2; break;
		case '\t': esc[1] = 't'; esc_len = 2; break;
		case '\b': esc[1] = 'b'; esc_len = 2; break;
		case '\f': esc[1] = 'f'; esc_len = 2; break;
		default: break;
		}
		put(o, esc, esc_len);
	}
	put(o, s + run, n - run);
}

/* Appends ,"epoch":"<16 hex digits>". */
static void put_epoch(struct sink *o, uint64_t epoch)
{
	static const char hex[] = "0123456789abcdef";
	char buf[RC_ENVELOPE_EPOCH_CHARS];

	RC_ASSERT(epoch != 0);
	for (size_t i = RC_ENVELOPE_EPOCH_CHARS; i-- > 0; epoch >>= 4)
		buf[i] = hex[epoch & 15];
	PUT_LIT(o, ",\"epoch\":\"");
	put(o, buf, sizeof(buf));
	PUT_LIT(o, "\"");
}

static size_t finish(const struct sink *o)
{
	RC_ASSERT(o->len <= o->cap);
	return o->full ? 0 : o->len;
}

size_t rc_envelope_msg_len(size_t topic_len, uint64_t seq, size_t data_len)
{
	return sizeof(MSG_HEAD) - 1 + topic_len + sizeof(MSG_SEQ) - 1 + u64_digits(seq) +
	       sizeof(MSG_DATA) - 1 + data_len + sizeof(MSG_TAIL) - 1;
}

size_t rc_envelope_write_msg(char *out, size_t cap, const char *topic, size_t topic_len,
			     uint64_t seq, const char *data, size_t data_len)
{
	struct sink o = { out, cap, 0, false };
	size_t n;

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(rc_topic_name_valid(topic, topic_len));
	RC_ASSERT(data != NULL && data_len > 0);
	PUT_LIT(&o, MSG_HEAD);
	put(&o, topic, topic_len);
	PUT_LIT(&o, MSG_SEQ);
	put_u64(&o, seq);
	PUT_LIT(&o, MSG_DATA);
	put(&o, data, data_len);
	PUT_LIT(&o, MSG_TAIL);
	n = finish(&o);
	RC_ASSERT(n == 0 || n == rc_envelope_msg_len(topic_len, seq, data_len));
	return n;
}

size_t rc_envelope_write_ack(char *out, size_t cap, enum rc_envelope_op of, const char *topic,
			     size_t topic_len, uint64_t seq, uint64_t epoch, const char *id,
			     size_t id_len)
{
	struct sink o = { out, cap, 0, false };

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(of < RC_ENVELOPE_OP_COUNT);
	if (topic_len)
		RC_ASSERT(rc_topic_name_valid(topic, topic_len));
	if (id_len)
		RC_ASSERT(id != NULL);
	PUT_LIT(&o, "{\"op\":\"ack\",\"of\":\"");
	put(&o, op_rules[of].name, strlen(op_rules[of].name));
	PUT_LIT(&o, "\"");
	if (topic_len) {
		PUT_LIT(&o, ",\"topic\":\"");
		put(&o, topic, topic_len);
		PUT_LIT(&o, "\"");
	}
	if (seq) {
		PUT_LIT(&o, ",\"seq\":");
		put_u64(&o, seq);
	}
	if (epoch)
		put_epoch(&o, epoch);
	if (id_len) {
		PUT_LIT(&o, ",\"id\":\"");
		put_escaped(&o, id, id_len);
		PUT_LIT(&o, "\"");
	}
	PUT_LIT(&o, "}");
	return finish(&o);
}

size_t rc_envelope_write_error(char *out, size_t cap, enum rc_envelope_err code,
			       const char *reason)
{
	struct sink o = { out, cap, 0, false };

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(code > RC_ENVELOPE_OK && code < RC_ENVELOPE_ERR_COUNT);
	RC_ASSERT(reason != NULL);
	RC_DASSERT(rc_utf8_valid((const uint8_t *)reason, strlen(reason)));
	PUT_LIT(&o, "{\"op\":\"error\",\"code\":");
	put_u64(&o, (uint64_t)code);
	PUT_LIT(&o, ",\"reason\":\"");
	put_escaped(&o, reason, strlen(reason));
	PUT_LIT(&o, "\"}");
	return finish(&o);
}

size_t rc_envelope_write_gap(char *out, size_t cap, const char *topic, size_t topic_len,
			     uint64_t from, uint64_t to, uint64_t epoch)
{
	struct sink o = { out, cap, 0, false };

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(rc_topic_name_valid(topic, topic_len));
	RC_ASSERT(from <= to);
	PUT_LIT(&o, "{\"op\":\"gap\",\"topic\":\"");
	put(&o, topic, topic_len);
	PUT_LIT(&o, "\",\"from\":");
	put_u64(&o, from);
	PUT_LIT(&o, ",\"to\":");
	put_u64(&o, to);
	put_epoch(&o, epoch);
	PUT_LIT(&o, "}");
	return finish(&o);
}

size_t rc_envelope_write_reset(char *out, size_t cap, const char *topic, size_t topic_len,
			       uint64_t epoch, uint64_t seq)
{
	struct sink o = { out, cap, 0, false };

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(rc_topic_name_valid(topic, topic_len));
	PUT_LIT(&o, "{\"op\":\"reset\",\"topic\":\"");
	put(&o, topic, topic_len);
	PUT_LIT(&o, "\"");
	put_epoch(&o, epoch);
	PUT_LIT(&o, ",\"seq\":");
	put_u64(&o, seq);
	PUT_LIT(&o, "}");
	return finish(&o);
}

/* The longest item is ,{"seq":18446744073709551615}; a duplicate's seq is always 0. */
#define PUBLISHED_ITEM_MAX                                                                         \
	RC_MAX(sizeof(",{\"seq\":}") - 1 + 20, sizeof(",{\"seq\":0,\"duplicate\":true}") - 1)
#define PUBLISHED_FRAME_MAX (sizeof("{\"results\":[]}\n") - 1)

size_t rc_envelope_published_max(uint32_t count)
{
	return PUBLISHED_FRAME_MAX + (size_t)count * PUBLISHED_ITEM_MAX;
}

size_t rc_envelope_write_published(char *out, size_t cap, bool batch, const uint64_t *seq,
				   const bool *duplicate, uint32_t count)
{
	struct sink o = { out, cap, 0, false };

	RC_ASSERT(out != NULL || cap == 0);
	RC_ASSERT(count >= 1);
	RC_ASSERT(batch || count == 1);
	if (batch)
		PUT_LIT(&o, "{\"results\":[");
	for (uint32_t i = 0; i < count; i++) {
		if (i)
			PUT_LIT(&o, ",");
		PUT_LIT(&o, "{\"seq\":");
		put_u64(&o, duplicate[i] ? 0 : seq[i]);
		if (duplicate[i])
			PUT_LIT(&o, ",\"duplicate\":true");
		PUT_LIT(&o, "}");
	}
	if (batch)
		PUT_LIT(&o, "]}");
	PUT_LIT(&o, "\n");
	RC_DASSERT(o.full || o.len <= rc_envelope_published_max(count));
	return finish(&o);
}
