/*
 * permessage-deflate (RFC 7692): the Sec-WebSocket-Extensions offer parser, the response
 * line, and the message codec over libdeflate. Owns no buffers, compressors or per-connection
 * state: every call works on what the caller passes in. Pure; the caller's thread.
 *
 * The offer grammar (RFC 6455 §9.1 with RFC 7230 §3.2.6 tokens and quoted strings):
 *   extension-list = 1#( token *( OWS ";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] ) )
 * Whitespace around ";" and "=" is accepted, as most clients' own parsers accept it, and empty
 * list elements (",,") are skipped as RFC 7230 §7 asks of recipients. A malformed element is
 * declined and the parser resumes after the next comma outside a quoted string, so one broken
 * offer never hides a good one, nor does a comma inside a quoted value start a new offer.
 */
#include "pmd.h"

#include <libdeflate.h>
#include <stdio.h>
#include <string.h>

#include "base/rc_assert.h"

/* ---- negotiation ------------------------------------------------------------------------ */

/* The parameters RFC 7692 §7.1 defines for an offer, one bit each in offer.seen. */
enum param {
	P_SERVER_NO_CONTEXT_TAKEOVER = 0,
	P_CLIENT_NO_CONTEXT_TAKEOVER,
	P_SERVER_MAX_WINDOW_BITS,
	P_CLIENT_MAX_WINDOW_BITS,
	P_COUNT,
};

static const char *const param_names[P_COUNT] = {
	[P_SERVER_NO_CONTEXT_TAKEOVER] = "server_no_context_takeover",
	[P_CLIENT_NO_CONTEXT_TAKEOVER] = "client_no_context_takeover",
	[P_SERVER_MAX_WINDOW_BITS] = "server_max_window_bits",
	[P_CLIENT_MAX_WINDOW_BITS] = "client_max_window_bits",
};

/* A parameter value after quoted-pair unescaping; longer values only keep their length. */
#define VALUE_KEEP 4

struct value {
	char s[VALUE_KEEP];
	uint32_t len; /* full unescaped length, may exceed VALUE_KEEP */
	bool present; /* the parameter had "=" and a value */
};

/* One list element of one header value, as far as negotiation cares. */
struct offer {
	uint8_t seen;           /* bit (1 << enum param) per parameter met */
	uint8_t server_bits;    /* server_max_window_bits, 0 if absent */
	uint8_t client_bits;    /* client_max_window_bits value, 0 if absent or valueless */
	bool is_pmd;            /* the extension is permessage-deflate */
	bool declined;          /* malformed, or a parameter we must decline */
};

struct cursor {
	const char *p;
	uint32_t len;
	uint32_t pos; /* <= len */
};

/* RFC 7230 tchar: "!#$%&'*+-.^_`|~", digits and letters. */
static bool is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* RFC 7230 qdtext and the second byte of a quoted-pair: HTAB, SP, VCHAR, obs-text. */
static bool is_qchar(unsigned char ch)
{
	return ch == '\t' || ch == ' ' || (ch >= 0x21 && ch != 0x7f);
}

static int peek(const struct cursor *c)
{
	return c->pos < c->len ? (unsigned char)c->p[c->pos] : -1;
}

static void skip_ows(struct cursor *c)
{
	while (peek(c) == ' ' || peek(c) == '\t')
		c->pos++;
}

static bool parse_token(struct cursor *c, struct rc_slice *tok)
{
	uint32_t start = c->pos;

	while (c->pos < c->len && is_tchar((unsigned char)c->p[c->pos]))
		c->pos++;
	*tok = (struct rc_slice){ .p = c->p + start, .len = c->pos - start };
	return tok->len > 0;
}

static void value_put(struct value *v, char ch)
{
	if (v->len < VALUE_KEEP)
		v->s[v->len] = ch;
	v->len++;
}

/* A quoted-string at the cursor (on its opening DQUOTE), unescaped into *v. */
static bool parse_quoted(struct cursor *c, struct value *v)
{
	RC_ASSERT(peek(c) == '"');
	c->pos++;
	for (;;) {
		int ch = peek(c);

		if (ch == '"') {
			c->pos++;
			return true;
		}
		if (ch == '\\') {
			c->pos++;
			ch = peek(c);
		}
		if (ch < 0 || !is_qchar((unsigned char)ch))
			return false;
		value_put(v, (char)ch);
		c->pos++;
	}
}

static bool parse_value(struct cursor *c, struct value *v)
{
	struct rc_slice tok;

	v->present = true;
	if (peek(c) == '"')
		return parse_quoted(c, v);
	if (!parse_token(c, &tok))
		return false;
	for (uint32_t i = 0; i < tok.len; i++)
		value_put(v, tok.p[i]);
	return true;
}

/* "8".."15" in plain decimal (no sign, no leading zero), else 0. */
static uint8_t window_bits(const struct value *v)
{
	unsigned bits;

	if (v->len == 1 && v->s[0] >= '8' && v->s[0] <= '9')
		bits = (unsigned)(v->s[0] - '0');
	else if (v->len == 2 && v->s[0] == '1' && v->s[1] >= '0' && v->s[1] <= '5')
		bits = 10 + (unsigned)(v->s[1] - '0');
	else
		return 0;
	RC_ASSERT(bits >= RC_PMD_WINDOW_BITS_MIN && bits <= RC_PMD_WINDOW_BITS_MAX);
	return (uint8_t)bits;
}

/* Records one parameter of a permessage-deflate offer, declining the offer if RFC 7692 §5
 * says so (unknown, repeated, or an invalid value). */
static void apply_param(struct offer *o, struct rc_slice name, const struct value *v)
{
	unsigned p = 0;

	while (p < P_COUNT && !rc_slice_caseeq(name, param_names[p]))
		p++;
	if (p == P_COUNT || (o->seen & (1u << p))) {
		o->declined = true;
		return;
	}
	o->seen |= (uint8_t)(1u << p);
	switch (p) {
	case P_SERVER_NO_CONTEXT_TAKEOVER:
	case P_CLIENT_NO_CONTEXT_TAKEOVER:
		if (v->present)
			o->declined = true;
		break;
	case P_SERVER_MAX_WINDOW_BITS:
		o->server_bits = v->present ? window_bits(v) : 0;
		if (o->server_bits == 0)
			o->declined = true;
		break;
	default:
		RC_ASSERT(p == P_CLIENT_MAX_WINDOW_BITS);
		o->client_bits = v->present ? window_bits(v) : 0;
		if (v->present && o->client_bits == 0)
			o->declined = true;
		break;
	}
}

/*
 * Parses one element from the cursor (at its first byte, OWS skipped) up to and past its
 * terminating comma. Returns false if it is malformed; the cursor is then somewhere inside.
 */
static bool parse_offer(struct cursor *c, struct offer *o)
{
	struct rc_slice name;

	if (!parse_token(c, &name))
		return false;
	o->is_pmd = rc_slice_caseeq(name, "permessage-deflate");
	for (;;) {
		struct value v = { .present = false };
		int ch;

		skip_ows(c);
		ch = peek(c);
		if (ch < 0 || ch == ',') {
			c->pos += ch == ',';
			return true;
		}
		if (ch != ';')
			return false;
		c->pos++;
		skip_ows(c);
		if (!parse_token(c, &name))
			return false;
		skip_ows(c);
		if (peek(c) == '=') {
			c->pos++;
			skip_ows(c);
			if (!parse_value(c, &v))
				return false;
		}
		if (o->is_pmd)
			apply_param(o, name, &v);
	}
}

/* After a malformed element: resume past the next comma that is outside a quoted string,
 * scanning again from the element's start so quotes are tracked from their beginning. */
static void skip_element(struct cursor *c, uint32_t start)
{
	bool quoted = false;

	RC_ASSERT(start <= c->len);
	for (c->pos = start; c->pos < c->len; c->pos++) {
		char ch = c->p[c->pos];

		if (quoted && ch == '\\')
			c->pos += c->pos + 1 < c->len;
		else if (ch == '"')
			quoted = !quoted;
		else if (!quoted && ch == ',')
			break;
	}
	c->pos += c->pos < c->len;
	RC_ASSERT(c->pos <= c->len);
}

/* The next non-empty element of one header value into *o; false at the value's end. */
static bool next_offer(struct cursor *c, struct offer *o)
{
	uint32_t start;

	memset(o, 0, sizeof(*o));
	for (;;) {
		skip_ows(c);
		if (peek(c) != ',')
			break;
		c->pos++;
	}
	if (c->pos == c->len)
		return false;
	start = c->pos;
	if (!parse_offer(c, o)) {
		o->declined = true;
		skip_element(c, start);
	}
	RC_ASSERT(c->pos > start);
	return true;
}

static bool acceptable(const struct offer *o)
{
	return o->is_pmd && !o->declined;
}

#define ANSWER                                                                                     \
	"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "              \
	"client_no_context_takeover"
#define ANSWER_WINDOW "; server_max_window_bits="

RC_STATIC_ASSERT(sizeof(ANSWER ANSWER_WINDOW "15\r\n") <= RC_PMD_RESPONSE_LIMIT,
		 "response line limit");

/* §7.1.2.1: an offered server_max_window_bits must be answered with at most its value. We
 * answer the value itself: rc_pmd_fits_window() keeps every message within it. */
static void write_response(const struct offer *o, char *line, size_t cap)
{
	int len;

	if (o->server_bits)
		len = snprintf(line, cap, ANSWER ANSWER_WINDOW "%u\r\n", (unsigned)o->server_bits);
	else
		len = snprintf(line, cap, ANSWER "\r\n");
	RC_ASSERT(len > 0);
	RC_ASSERT((size_t)len < cap);
}

bool rc_pmd_negotiate(const struct rc_http_multi *ext_headers, const struct rc_pmd_config *cfg,
		      struct rc_pmd_params *out, char *response_line, size_t cap)
{
	uint32_t index = 0;
	struct offer o;

	RC_ASSERT(ext_headers->count <= RC_HTTP_REPEAT_LIMIT);
	RC_ASSERT(cap >= RC_PMD_RESPONSE_LIMIT);
	response_line[0] = '\0';
	if (!cfg->enabled)
		return false;
	for (uint8_t h = 0; h < ext_headers->count; h++) {
		struct cursor c = { .p = ext_headers->v[h].p, .len = ext_headers->v[h].len };

		while (next_offer(&c, &o)) {
			if (acceptable(&o)) {
				write_response(&o, response_line, cap);
				out->server_max_window_bits =
					o.server_bits ? o.server_bits : RC_PMD_WINDOW_BITS_MAX;
				out->client_max_window_bits =
					o.client_bits ? o.client_bits : RC_PMD_WINDOW_BITS_MAX;
				out->offer_index = index;
				return true;
			}
			index++;
		}
	}
	return false;
}

/* ---- messages --------------------------------------------------------------------------- */

/* 00 00 ff ff completes the empty stored block a sender's sync flush ended with (its header
 * bits are the message's last byte); 01 00 00 ff ff is an empty stored block with BFINAL set,
 * which gives libdeflate, a whole-stream decoder, its end. */
static const uint8_t inflate_tail[RC_PMD_TAIL_ROOM] = {
	0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff,
};

bool rc_pmd_should_compress(const struct rc_pmd_config *cfg, size_t n)
{
	return n >= cfg->threshold_bytes;
}

bool rc_pmd_fits_window(uint8_t bits, size_t n)
{
	RC_ASSERT(bits >= RC_PMD_WINDOW_BITS_MIN);
	RC_ASSERT(bits <= RC_PMD_WINDOW_BITS_MAX);
	/* A distance never exceeds the bytes before it: n - 1 < 2^bits for n <= 2^bits. */
	return bits == RC_PMD_WINDOW_BITS_MAX || n <= (size_t)1 << bits;
}

size_t rc_pmd_deflate_bound(size_t n)
{
	return libdeflate_deflate_compress_bound(NULL, n) + 1;
}

size_t rc_pmd_deflate(struct libdeflate_compressor *c, const void *in, size_t n, void *out,
		      size_t cap)
{
	uint8_t *o = out;
	size_t len;

	RC_ASSERT(c != NULL);
	RC_ASSERT(in != NULL || n == 0);
	if (cap == 0)
		return 0;
	RC_ASSERT(out != NULL);
	len = libdeflate_deflate_compress(c, n ? in : "", n, o, cap - 1);
	if (len == 0)
		return 0;
	RC_ASSERT(len < cap);
	/* The stripped empty stored block after the BFINAL block: see pmd.h. */
	o[len] = 0x00;
	return len + 1;
}

int rc_pmd_inflate(struct libdeflate_decompressor *d, uint8_t *msg, size_t n, void *out,
		   size_t out_max, size_t *out_len)
{
	uint8_t saved[RC_PMD_TAIL_ROOM];
	size_t end = n, pos = 0, produced = 0;
	int err = 0;

	RC_ASSERT(d != NULL && msg != NULL);
	RC_ASSERT(out != NULL && out_len != NULL);
	*out_len = 0;
	if (n == 0)
		return 0;
	/* A sender that left the flush's LEN/NLEN in (RFC 7692 §7.2.1 says remove them) gets
	 * them read as the tail, as zlib receivers do. No valid message changes meaning: a
	 * stripped one never ends in ff, and a BFINAL stored block ending in these bytes reads
	 * the same ones either way. */
	if (n >= 4 && memcmp(msg + n - 4, inflate_tail, 4) == 0)
		end = n - 4;
	memcpy(saved, msg + n, sizeof(saved));
	memcpy(msg + end, inflate_tail, sizeof(inflate_tail));
	/* One pass per DEFLATE stream: a stream that ends (BFINAL) before the message does is
	 * followed by another, as after Chromium's inflateReset; each uses at least a byte. */
	while (pos < end) {
		size_t used = 0, len = 0;
		enum libdeflate_result r = libdeflate_deflate_decompress_ex(
			d, msg + pos, end + RC_PMD_TAIL_ROOM - pos, (uint8_t *)out + produced,
			out_max - produced, &used, &len);

		if (r != LIBDEFLATE_SUCCESS) {
			err = r == LIBDEFLATE_INSUFFICIENT_SPACE ? RC_PMD_ERR_TOO_BIG
								 : RC_PMD_ERR_CORRUPT;
			break;
		}
		RC_ASSERT(used > 0 && used <= end + RC_PMD_TAIL_ROOM - pos);
		RC_ASSERT(len <= out_max - produced);
		pos += used;
		produced += len;
	}
	memcpy(msg + n, saved, sizeof(saved));
	if (err == 0)
		*out_len = produced;
	return err;
}
