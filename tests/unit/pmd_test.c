/*
 * Unit tests for src/pmd.c. Negotiation: a table of offers (the real clients' defaults,
 * several offers with the first declined, duplicates, quoted values, bad values, whitespace,
 * case, malformed lists), each header value ending at a PROT_NONE guard page, every prefix of
 * it parsed too, split into one header per offer, and every accepted response offered back.
 * Messages: deflate → inflate round trips over sizes, levels and kinds of data, the RFC 7692
 * §7.2.3 vectors, the output limit (bombs), corrupt input, and the tail room the inflater
 * borrows, which must end at the guard page and come back unchanged.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <libdeflate.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pmd.h"

/* ---- guard pages ------------------------------------------------------------------------ */

/* One region per header slot (offers) plus one for messages, each followed by PROT_NONE. */
#define SLOT_BYTES 4096u
#define MESSAGE_BYTES (2u << 20)
#define SLOTS RC_HTTP_REPEAT_LIMIT

static uint8_t *region[SLOTS + 1];
static size_t region_size[SLOTS + 1];
static struct libdeflate_decompressor *dec;

static void guard_init(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	for (size_t i = 0; i <= SLOTS; i++) {
		size_t want = i < SLOTS ? SLOT_BYTES : MESSAGE_BYTES;

		region_size[i] = (want + page - 1) / page * page;
		region[i] = mmap(NULL, region_size[i] + page, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert(region[i] != MAP_FAILED);
		cr_assert(eq(int, mprotect(region[i] + region_size[i], page, PROT_NONE), 0));
	}
	dec = libdeflate_alloc_decompressor();
	cr_assert(dec != NULL);
}

static void guard_fini(void)
{
	for (size_t i = 0; i <= SLOTS; i++)
		munmap(region[i], region_size[i] + (size_t)sysconf(_SC_PAGESIZE));
	libdeflate_free_decompressor(dec);
}

TestSuite(pmd, .init = guard_init, .fini = guard_fini);

/* Copies len bytes into region i so that they end where its guard page starts. */
static uint8_t *at_guard(size_t i, const void *src, size_t len)
{
	uint8_t *dst = region[i] + region_size[i] - len;

	cr_assert(len <= region_size[i]);
	memcpy(dst, src, len);
	return dst;
}

/* ---- negotiation ------------------------------------------------------------------------ */

static const struct rc_pmd_config on = {
	.enabled = true,
	.level = RC_DEFAULT_DEFLATE_LEVEL,
	.threshold_bytes = RC_DEFAULT_DEFLATE_THRESHOLD_BYTES,
};

#define RESPONSE                                                                                   \
	"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "              \
	"client_no_context_takeover"
#define SMWB "; server_max_window_bits="

struct ovec {
	const char *name;
	const char *headers[4]; /* NULL-terminated */
	int index;              /* accepted offer_index, -1 declined */
	uint8_t client_bits;    /* expected client_max_window_bits when accepted */
	uint8_t server_bits;    /* server_max_window_bits offered and answered, 0 if not */
};

#define ACCEPT(name, index, bits, sbits, ...) { name, { __VA_ARGS__, NULL }, index, bits, sbits }
#define DECLINE(name, ...) { name, { __VA_ARGS__, NULL }, -1, 0, 0 }
#define PMD "permessage-deflate"

static const struct ovec ovecs[] = {
	/* Chromium, Python websockets 10.4 and Node ws 8 all offer exactly this by default. */
	ACCEPT("browser and library default", 0, 15, 0, PMD "; client_max_window_bits"),
	ACCEPT("Firefox", 0, 15, 0, PMD),
	ACCEPT("Node ws, 10-bit server window first", 0, 12, 10,
	       PMD "; server_no_context_takeover; client_no_context_takeover; "
		   "server_max_window_bits=10; client_max_window_bits=12, " PMD
		   "; client_max_window_bits"),
	ACCEPT("websockets, 10-bit server window first", 0, 12, 10,
	       PMD "; server_no_context_takeover; server_max_window_bits=10; "
		   "client_max_window_bits=12, " PMD "; client_max_window_bits"),
	ACCEPT("server window 15", 0, 15, 15, PMD "; server_max_window_bits=15"),
	ACCEPT("server window 8", 0, 15, 8, PMD "; server_max_window_bits=8"),
	ACCEPT("server window 14", 0, 15, 14, PMD "; server_max_window_bits=14"),
	ACCEPT("quoted server window 9", 0, 15, 9, PMD "; server_max_window_bits=\"9\""),
	ACCEPT("every parameter", 0, 9, 15,
	       PMD "; server_no_context_takeover; client_no_context_takeover; "
		   "server_max_window_bits=15; client_max_window_bits=9"),
	ACCEPT("client window 8", 0, 8, 0, PMD "; client_max_window_bits=8"),
	ACCEPT("quoted value", 0, 10, 0, PMD "; client_max_window_bits=\"10\""),
	ACCEPT("quoted-pair in a value", 0, 15, 15, PMD "; server_max_window_bits=\"1\\5\""),
	ACCEPT("whitespace", 0, 12, 0,
	       " \t" PMD " \t; \t client_max_window_bits \t = \t 12 \t "),
	ACCEPT("no whitespace", 0, 11, 0, PMD ";client_no_context_takeover;"
						 "client_max_window_bits=11"),
	ACCEPT("case", 0, 8, 0,
	       "PerMessage-Deflate; Client_Max_Window_Bits=8; SERVER_NO_CONTEXT_TAKEOVER"),
	ACCEPT("empty list elements", 0, 15, 0, ", ,\t," PMD ",,"),
	ACCEPT("another extension first", 1, 15, 0,
	       "x-webkit-deflate-frame; no_context_takeover, " PMD),
	ACCEPT("second header", 1, 11, 0, "foo", PMD "; client_max_window_bits=11"),
	ACCEPT("third header after an empty one", 0, 15, 0, "", " ", PMD),
	ACCEPT("comma inside a quoted value", 1, 15, 0, "foo; a=\"x, " PMD "\", " PMD),
	ACCEPT("escaped quote inside a value", 1, 15, 0, "foo; b=\"\\\"\"; c, " PMD),
	ACCEPT("malformed offer first", 1, 15, 0, PMD " client_max_window_bits, " PMD),
	ACCEPT("escaped quote in a malformed offer", 1, 15, 0, PMD " x; a=\"\\\",y\", " PMD),
	ACCEPT("unterminated quote, next header", 1, 15, 0, PMD "; x=\"15", PMD),
	ACCEPT("8-bit server window first", 0, 15, 8,
	       PMD "; server_max_window_bits=8, " PMD "; server_max_window_bits=15"),
	ACCEPT("7-bit server window first", 1, 15, 12,
	       PMD "; server_max_window_bits=7, " PMD "; server_max_window_bits=12"),
	ACCEPT("duplicate first", 1, 13, 0,
	       PMD "; client_max_window_bits; client_max_window_bits, " PMD
		   "; client_max_window_bits=13"),

	DECLINE("no header", NULL),
	DECLINE("empty header", ""),
	DECLINE("only commas", " , ,, "),
	DECLINE("another extension", "x-webkit-deflate-frame"),
	DECLINE("longer name", PMD "x"),
	DECLINE("underscore name", "permessage_deflate"),
	DECLINE("quoted name", "\"" PMD "\""),
	DECLINE("name inside a quoted value", "foo; a=\"" PMD "\""),
	DECLINE("duplicate", PMD "; client_max_window_bits; client_max_window_bits"),
	DECLINE("duplicate, other case", PMD "; server_no_context_takeover; "
					     "Server_No_Context_Takeover"),
	DECLINE("duplicate window", PMD "; server_max_window_bits=15; server_max_window_bits=15"),
	DECLINE("unknown parameter", PMD "; foo"),
	DECLINE("unknown parameter with value", PMD "; max_window_bits=15"),
	DECLINE("duplicate small window",
		PMD "; server_max_window_bits=9; server_max_window_bits=9"),
	DECLINE("two small windows", PMD "; server_max_window_bits=9; server_max_window_bits=10"),
	DECLINE("server window 7", PMD "; server_max_window_bits=7"),
	DECLINE("server window 0", PMD "; server_max_window_bits=0"),
	DECLINE("server window 16", PMD "; server_max_window_bits=16"),
	DECLINE("server window 08", PMD "; server_max_window_bits=08"),
	DECLINE("server window 9 and junk", PMD "; server_max_window_bits=9x"),
	DECLINE("server window -9", PMD "; server_max_window_bits=-9"),
	DECLINE("server window 015", PMD "; server_max_window_bits=015"),
	DECLINE("server window +15", PMD "; server_max_window_bits=+15"),
	DECLINE("server window 15.0", PMD "; server_max_window_bits=15.0"),
	DECLINE("server window hex", PMD "; server_max_window_bits=0xf"),
	DECLINE("server window empty quotes", PMD "; server_max_window_bits=\"\""),
	DECLINE("server window space in quotes", PMD "; server_max_window_bits=\" 15\""),
	DECLINE("server window without value", PMD "; server_max_window_bits"),
	DECLINE("client window 7", PMD "; client_max_window_bits=7"),
	DECLINE("client window 16", PMD "; client_max_window_bits=16"),
	DECLINE("client window 100015", PMD "; client_max_window_bits=100015"),
	DECLINE("value on server_no_context_takeover", PMD "; server_no_context_takeover=true"),
	DECLINE("value on client_no_context_takeover", PMD "; client_no_context_takeover=\"\""),
	DECLINE("trailing semicolon", PMD ";"),
	DECLINE("empty parameter", PMD "; ;client_max_window_bits"),
	DECLINE("value without name", PMD "; =15"),
	DECLINE("equals without value", PMD "; client_max_window_bits="),
	DECLINE("double equals", PMD "; client_max_window_bits==10"),
	DECLINE("two tokens as a value", PMD "; client_max_window_bits=1 0"),
	DECLINE("unterminated quote", PMD "; client_max_window_bits=\"10"),
	DECLINE("control byte in quotes", PMD "; client_max_window_bits=\"1\x01\""),
	DECLINE("leading semicolon", "; " PMD),
	DECLINE("three headers, all declined", PMD "; a", PMD "; b", PMD "=1"),
};

/* Builds the header list from values, each value ending at its own guard page. */
static struct rc_http_multi headers_of(const char *const *values)
{
	struct rc_http_multi m = { .count = 0 };

	for (; *values; values++) {
		size_t len = strlen(*values);

		cr_assert(m.count < SLOTS);
		m.v[m.count].p = (const char *)at_guard(m.count, *values, len);
		m.v[m.count].len = (uint32_t)len;
		m.count++;
	}
	return m;
}

static void check_accepted(const struct ovec *v, bool ok, const struct rc_pmd_params *p,
			   const char *line)
{
	char want[RC_PMD_RESPONSE_LIMIT];

	cr_assert(ok, "%s: declined", v->name);
	if (v->server_bits)
		snprintf(want, sizeof(want), RESPONSE SMWB "%u\r\n", (unsigned)v->server_bits);
	else
		snprintf(want, sizeof(want), RESPONSE "\r\n");
	cr_assert(eq(str, (char *)line, want), "%s", v->name);
	cr_assert(eq(u32, p->offer_index, (uint32_t)v->index), "%s", v->name);
	cr_assert(eq(u8, p->client_max_window_bits, v->client_bits), "%s", v->name);
	cr_assert(eq(u8, p->server_max_window_bits, v->server_bits ? v->server_bits : 15), "%s",
		  v->name);
}

/* Negotiates v's offers, given as the header values hv (v->headers, or those split up). */
static void check_offers(const struct ovec *v, const char *const *hv)
{
	struct rc_http_multi m = headers_of(hv);
	struct rc_pmd_params p = { .offer_index = 999 };
	char line[RC_PMD_RESPONSE_LIMIT];
	bool ok = rc_pmd_negotiate(&m, &on, &p, line, sizeof(line));

	if (v->index >= 0) {
		check_accepted(v, ok, &p, line);
	} else {
		cr_assert(not(ok), "%s: accepted", v->name);
		cr_assert(eq(str, line, ""), "%s", v->name);
		cr_assert(eq(u32, p.offer_index, 999), "%s: params touched", v->name);
	}
}

Test(pmd, offer_table)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(ovecs); i++)
		check_offers(&ovecs[i], ovecs[i].headers);
}

/* Every prefix of every header value, at the guard page: no read past the value's end. */
Test(pmd, offer_prefixes_stay_in_bounds)
{
	char line[RC_PMD_RESPONSE_LIMIT];
	struct rc_pmd_params p;

	for (size_t i = 0; i < RC_ARRAY_LEN(ovecs); i++) {
		for (size_t h = 0; ovecs[i].headers[h]; h++) {
			const char *s = ovecs[i].headers[h];

			for (size_t n = 0; n <= strlen(s); n++) {
				struct rc_http_multi m = { .count = 1 };

				m.v[0].p = (const char *)at_guard(0, s, n);
				m.v[0].len = (uint32_t)n;
				rc_pmd_negotiate(&m, &on, &p, line, sizeof(line));
			}
		}
	}
}

/* Offers split one per header value give the same answer as one comma-separated list. */
Test(pmd, offers_split_across_headers)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(ovecs); i++) {
		const struct ovec *v = &ovecs[i];
		const char *split[SLOTS + 1];
		char buf[SLOTS][256];
		const char *s = v->headers[0];
		size_t k = 0;

		if (!s || v->headers[1] || strchr(s, '"'))
			continue;
		while (k < SLOTS - 1 && *s) {
			size_t len = strcspn(s, ",");

			snprintf(buf[k], sizeof(buf[k]), "%.*s", (int)len, s);
			split[k] = buf[k];
			k++;
			s += len + (s[len] == ',');
		}
		cr_assert(s[0] == '\0', "%s: too many offers", v->name);
		split[k] = NULL;
		check_offers(v, split);
	}
}

/* Our answer, offered back by a client, is acceptable and answered the same way. */
Test(pmd, response_offered_back)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(ovecs); i++) {
		const struct ovec *v = &ovecs[i];
		struct rc_http_multi m = headers_of(v->headers);
		struct rc_pmd_params p, q;
		char line[RC_PMD_RESPONSE_LIMIT], again[RC_PMD_RESPONSE_LIMIT];
		size_t prefix = strlen("Sec-WebSocket-Extensions: ");

		if (!rc_pmd_negotiate(&m, &on, &p, line, sizeof(line)))
			continue;
		line[strlen(line) - 2] = '\0';
		m.count = 1;
		m.v[0].p = (const char *)at_guard(0, line + prefix, strlen(line + prefix));
		m.v[0].len = (uint32_t)strlen(line + prefix);
		cr_assert(rc_pmd_negotiate(&m, &on, &q, again, sizeof(again)), "%s", v->name);
		cr_assert(eq(u32, q.offer_index, 0), "%s", v->name);
		cr_assert(eq(int, strncmp(again + prefix, line + prefix, strlen(line + prefix)), 0),
			  "%s", v->name);
	}
}

Test(pmd, every_client_window_size)
{
	for (unsigned bits = 8; bits <= 15; bits++) {
		char offer[64];
		struct ovec v = { "client window", { offer, NULL }, 0, (uint8_t)bits, 0 };

		snprintf(offer, sizeof(offer), PMD "; client_max_window_bits=%u", bits);
		check_offers(&v, v.headers);
	}
}

/* Every server window 8..15 is accepted and answered with its own value, whatever the client
 * says of its own window; repeating it, even with the same value, declines the offer. */
Test(pmd, every_server_window_size)
{
	static const char *const client[] = { "", "; client_max_window_bits",
					      "; client_max_window_bits=9" };
	static const uint8_t client_bits[] = { 15, 15, 9 };

	for (unsigned bits = 8; bits <= 15; bits++) {
		for (size_t k = 0; k < RC_ARRAY_LEN(client); k++) {
			char offer[128];
			struct ovec v = { offer, { offer, NULL }, 0, client_bits[k], 0 };

			v.server_bits = (uint8_t)bits;
			snprintf(offer, sizeof(offer), PMD "; server_max_window_bits=%u%s", bits,
				 client[k]);
			check_offers(&v, v.headers);
			snprintf(offer, sizeof(offer), PMD "%s; server_max_window_bits=%u",
				 client[k], bits);
			check_offers(&v, v.headers);
			snprintf(offer, sizeof(offer),
				 PMD "; server_max_window_bits=%u%s; server_max_window_bits=%u",
				 bits, client[k], bits);
			v.index = -1;
			check_offers(&v, v.headers);
		}
	}
}

/* A window holds any message up to its size; 15 bits (libdeflate's own 32 KiB) any at all. */
Test(pmd, fits_window)
{
	for (uint8_t bits = RC_PMD_WINDOW_BITS_MIN; bits < RC_PMD_WINDOW_BITS_MAX; bits++) {
		size_t w = (size_t)1 << bits;

		cr_assert(rc_pmd_fits_window(bits, 0));
		cr_assert(rc_pmd_fits_window(bits, w - 1), "%u", bits);
		cr_assert(rc_pmd_fits_window(bits, w), "%u", bits);
		cr_assert(not(rc_pmd_fits_window(bits, w + 1)), "%u", bits);
		cr_assert(not(rc_pmd_fits_window(bits, SIZE_MAX)), "%u", bits);
	}
	cr_assert(rc_pmd_fits_window(RC_PMD_WINDOW_BITS_MAX, 32768));
	cr_assert(rc_pmd_fits_window(RC_PMD_WINDOW_BITS_MAX, 32769));
	cr_assert(rc_pmd_fits_window(RC_PMD_WINDOW_BITS_MAX, SIZE_MAX));
}

Test(pmd, fits_window_below_8_aborts, .signal = SIGABRT)
{
	rc_pmd_fits_window(RC_PMD_WINDOW_BITS_MIN - 1, 1);
}

Test(pmd, disabled_declines_everything)
{
	struct rc_pmd_config off = on;
	const char *values[] = { PMD "; client_max_window_bits", NULL };
	struct rc_http_multi m = headers_of(values);
	struct rc_pmd_params p;
	char line[RC_PMD_RESPONSE_LIMIT] = "junk";

	off.enabled = false;
	cr_assert(not(rc_pmd_negotiate(&m, &off, &p, line, sizeof(line))));
	cr_assert(eq(str, line, ""));
}

/* The offer index counts offers of every extension across headers, skipping empty ones. */
Test(pmd, offer_index_spans_headers)
{
	const char *values[] = { "a, b;x=\"1,2\"", ",c", "d, " PMD "; server_max_window_bits=7",
				 PMD, NULL };
	struct rc_http_multi m = headers_of(values);
	struct rc_pmd_params p;
	char line[RC_PMD_RESPONSE_LIMIT];

	cr_assert(rc_pmd_negotiate(&m, &on, &p, line, sizeof(line)));
	cr_assert(eq(u32, p.offer_index, 5));
}

Test(pmd, small_response_buffer_aborts, .signal = SIGABRT)
{
	struct rc_http_multi m = { .count = 0 };
	struct rc_pmd_params p;
	char line[RC_PMD_RESPONSE_LIMIT - 1];

	rc_pmd_negotiate(&m, &on, &p, line, sizeof(line));
}

/* ---- messages --------------------------------------------------------------------------- */

/* Compressible text, incompressible bytes, one repeated byte. */
enum kind {
	K_TEXT = 0,
	K_RANDOM,
	K_ZEROS,
	K_COUNT,
};

static void fill(uint8_t *p, size_t n, enum kind k, uint32_t seed)
{
	static const char json[] = "{\"topic\":\"orders.eu\",\"seq\":1234,\"px\":101.25,\"qty\":7}";

	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		if (k == K_TEXT)
			p[i] = (uint8_t)json[(i + i / 97) % (sizeof(json) - 1)];
		else if (k == K_RANDOM)
			p[i] = (uint8_t)(seed >> 16);
		else
			p[i] = 0;
	}
}

/* Inflates msg[0..n), placed at the message guard page with the tail room after it filled
 * with a pattern that must survive; the message bytes must survive too. */
static int inflate_guarded(const void *msg, size_t n, void *out, size_t out_max, size_t *len)
{
	uint8_t room[RC_PMD_TAIL_ROOM];
	uint8_t *p;
	int r;

	memset(room, 0xa5, sizeof(room));
	p = region[SLOTS] + region_size[SLOTS] - n - RC_PMD_TAIL_ROOM;
	memcpy(p, msg, n);
	memcpy(p + n, room, sizeof(room));
	r = rc_pmd_inflate(dec, p, n, out, out_max, len);
	cr_assert(r == 0 || r == RC_PMD_ERR_CORRUPT || r == RC_PMD_ERR_TOO_BIG);
	cr_assert(le(sz, *len, out_max));
	cr_assert(eq(int, memcmp(p, msg, n), 0), "message changed");
	cr_assert(eq(int, memcmp(p + n, room, sizeof(room)), 0), "tail room not restored");
	if (r != 0)
		cr_assert(eq(sz, *len, 0));
	return r;
}

static void round_trip(struct libdeflate_compressor *c, size_t n, enum kind k)
{
	uint8_t *in = malloc(n + 1), *z = malloc(rc_pmd_deflate_bound(n)), *out = malloc(n + 1);
	size_t zlen, len = 99;

	cr_assert(in && z && out);
	fill(in, n, k, (uint32_t)n);
	zlen = rc_pmd_deflate(c, in, n, z, rc_pmd_deflate_bound(n));
	cr_assert(zlen > 0, "size %zu kind %d", n, k);
	cr_assert(eq(u8, z[zlen - 1], 0x00), "size %zu: stripped stored block header", n);
	cr_assert(eq(int, inflate_guarded(z, zlen, out, n, &len), 0), "size %zu kind %d", n, k);
	cr_assert(eq(sz, len, n));
	cr_assert(eq(int, memcmp(in, out, n), 0), "size %zu kind %d", n, k);
	free(in);
	free(z);
	free(out);
}

Test(pmd, round_trip_sizes_and_levels)
{
	static const size_t small[] = { 0, 1, 2, 5, 31, 64, 255, 256, 1000, 4096, 32767, 32768,
					32769, 65536 };
	static const size_t large[] = { 100000, 1u << 20 };

	for (int level = RC_PMD_LEVEL_MIN; level <= RC_PMD_LEVEL_MAX; level++) {
		struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);

		cr_assert(c != NULL);
		for (size_t i = 0; i < RC_ARRAY_LEN(small); i++)
			for (int k = 0; k < K_COUNT; k++)
				round_trip(c, small[i], (enum kind)k);
		for (size_t i = 0; i < RC_ARRAY_LEN(large) && (level % 4 == 1 || level == 12); i++)
			for (int k = 0; k < K_COUNT; k++)
				round_trip(c, large[i], (enum kind)k);
		libdeflate_free_compressor(c);
	}
}

/* Our payload minus its last byte is a complete DEFLATE stream: the BFINAL block. */
Test(pmd, deflate_ends_with_final_block_and_empty_stored_header)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
	uint8_t in[3000], z[4000], out[3000];
	size_t zlen, used = 0, len = 0;

	fill(in, sizeof(in), K_TEXT, 1);
	zlen = rc_pmd_deflate(c, in, sizeof(in), z, sizeof(z));
	cr_assert(zlen > 1 && zlen < sizeof(in) / 4);
	cr_assert(eq(int, libdeflate_deflate_decompress_ex(dec, z, zlen - 1, out, sizeof(out),
							   &used, &len), 0));
	cr_assert(eq(sz, used, zlen - 1));
	cr_assert(eq(sz, len, sizeof(in)));
	libdeflate_free_compressor(c);
}

/* cap below the input size turns incompressible data into "send it plain". */
Test(pmd, deflate_cap)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
	uint8_t in[1000], z[2000];
	size_t zlen;

	fill(in, sizeof(in), K_RANDOM, 7);
	cr_assert(eq(sz, rc_pmd_deflate(c, in, sizeof(in), z, sizeof(in) - 1), 0));
	cr_assert(eq(sz, rc_pmd_deflate(c, in, sizeof(in), z, 0), 0));
	cr_assert(rc_pmd_deflate(c, in, sizeof(in), z, rc_pmd_deflate_bound(sizeof(in))) > 0);
	fill(in, sizeof(in), K_TEXT, 7);
	zlen = rc_pmd_deflate(c, in, sizeof(in), z, sizeof(z));
	cr_assert(eq(sz, rc_pmd_deflate(c, in, sizeof(in), z, zlen - 1), 0), "one short");
	cr_assert(rc_pmd_deflate_bound(0) > 1);
	cr_assert(rc_pmd_deflate_bound(1000) > 1000);
	libdeflate_free_compressor(c);
}

Test(pmd, threshold)
{
	cr_assert(not(rc_pmd_should_compress(&on, RC_DEFAULT_DEFLATE_THRESHOLD_BYTES - 1)));
	cr_assert(rc_pmd_should_compress(&on, RC_DEFAULT_DEFLATE_THRESHOLD_BYTES));
	cr_assert(rc_pmd_should_compress(&on, 1u << 20));
}

struct zvec {
	const char *name;
	const char *bytes;
	size_t len;
	const char *text; /* expected message, NULL: the error below */
	size_t text_len;
	int err;
};

#define Z(name, bytes, text) { name, bytes, sizeof(bytes) - 1, text, sizeof(text) - 1, 0 }
#define ZBAD(name, bytes, err) { name, bytes, sizeof(bytes) - 1, NULL, 0, err }

static const struct zvec zvecs[] = {
	/* RFC 7692 §7.2.3.1-§7.2.3.6. */
	Z("one compressed block", "\xf2\x48\xcd\xc9\xc9\x07\x00", "Hello"),
	Z("fragmented: frames joined", "\xf2\x48\xcd" "\xc9\xc9\x07\x00", "Hello"),
	Z("stored block", "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", "Hello"),
	Z("BFINAL block, RFC form", "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", "Hello"),
	Z("two blocks", "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", "Hello"),
	Z("empty message, stored header", "\x00", ""),
	/* Other forms senders produce. */
	Z("BFINAL block ending the message", "\xf3\x48\xcd\xc9\xc9\x07\x00", "Hello"),
	Z("BFINAL stored block", "\x01\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f", "Hello"),
	Z("BFINAL fixed block, last byte completed by the tail", "\xf3\x48\xcd\xc9\xc9\x07",
	  "Hello"),
	Z("empty payload", "", ""),
	Z("empty fixed block", "\x02\x00", ""),
	Z("sync flush tail left in", "\xf2\x48\xcd\xc9\xc9\x07\x00\x00\x00\xff\xff", "Hello"),
	Z("two BFINAL streams (Chromium reads on)",
	  "\xf3\x48\xcd\xc9\xc9\x07\x00" "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", "HelloHello"),
	Z("BFINAL stored block ending in 00 00 ff ff", "\x01\x04\x00\xfb\xff\x00\x00\xff\xff",
	  "\x00\x00\xff\xff"),
	Z("BFINAL stream, then a sync-flushed one",
	  "\xf3\x48\xcd\xc9\xc9\x07\x00" "\xf2\x48\xcd\xc9\xc9\x07\x00", "HelloHello"),

	/* §7.2.3.2's second message refers back into the first: no context takeover here. */
	ZBAD("reference into an earlier message", "\xf2\x00\x11\x00\x00", RC_PMD_ERR_CORRUPT),
	ZBAD("reserved block type", "\x07\x00", RC_PMD_ERR_CORRUPT),
	ZBAD("reserved block type, not final", "\x06\x00", RC_PMD_ERR_CORRUPT),
	ZBAD("stored LEN/NLEN mismatch", "\x00\x05\x00\xfa\xfe\x48\x65\x6c\x6c\x6f\x00",
	     RC_PMD_ERR_CORRUPT),
	ZBAD("stored block longer than the message", "\x00\x20\x00\xdf\xff\x48\x65",
	     RC_PMD_ERR_CORRUPT),
	ZBAD("garbage", "\xff\xff\xff\xff", RC_PMD_ERR_CORRUPT),
	ZBAD("zlib header", "\x78\x9c\xf2\x48\xcd\xc9\xc9\x07\x00", RC_PMD_ERR_CORRUPT),
	ZBAD("garbage after a BFINAL stream", "\xf3\x48\xcd\xc9\xc9\x07\x00\xff\xff",
	     RC_PMD_ERR_CORRUPT),
	ZBAD("sync-flushed message cut short", "\xf2\x48\xcd\xc9", RC_PMD_ERR_CORRUPT),
};

Test(pmd, inflate_vectors)
{
	for (size_t i = 0; i < RC_ARRAY_LEN(zvecs); i++) {
		const struct zvec *v = &zvecs[i];
		uint8_t out[64];
		size_t len = 99;
		int r = inflate_guarded(v->bytes, v->len, out, sizeof(out), &len);

		if (v->text) {
			cr_assert(eq(int, r, 0), "%s", v->name);
			cr_assert(eq(sz, len, v->text_len), "%s", v->name);
			cr_assert(eq(int, memcmp(out, v->text, len), 0), "%s", v->name);
		} else {
			cr_assert(eq(int, r, v->err), "%s", v->name);
		}
	}
}

/* The limit holds exactly: a message of L bytes needs out_max >= L, in any stream. */
Test(pmd, inflate_limit_is_exact)
{
	uint8_t out[16];
	size_t len;

	for (size_t i = 0; i < RC_ARRAY_LEN(zvecs); i++) {
		const struct zvec *v = &zvecs[i];
		size_t want = v->text_len;

		if (!v->text)
			continue;
		cr_assert(eq(int, inflate_guarded(v->bytes, v->len, out, want, &len), 0), "%s",
			  v->name);
		cr_assert(eq(sz, len, want));
		if (want > 0)
			cr_assert(eq(int, inflate_guarded(v->bytes, v->len, out, want - 1, &len),
				     RC_PMD_ERR_TOO_BIG), "%s", v->name);
	}
}

/* 1 MiB of zeros deflates to about a kilobyte; with a 64 KiB limit it is a bomb. */
Test(pmd, inflate_bomb)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(12);
	size_t n = 1u << 20, zlen, len = 99;
	uint8_t *in = calloc(1, n), *z = malloc(rc_pmd_deflate_bound(n)), *out = malloc(64 << 10);

	cr_assert(c && in && z && out);
	zlen = rc_pmd_deflate(c, in, n, z, rc_pmd_deflate_bound(n));
	cr_assert(zlen > 0 && zlen < 4096, "%zu", zlen);
	cr_assert(eq(int, inflate_guarded(z, zlen, out, 64 << 10, &len), RC_PMD_ERR_TOO_BIG));
	cr_assert(eq(sz, len, 0));
	cr_assert(eq(int, inflate_guarded(z, zlen, out, 0, &len), RC_PMD_ERR_TOO_BIG));
	free(in);
	free(z);
	free(out);
	libdeflate_free_compressor(c);
}

/* Our output with a bit flipped anywhere, or cut short at any length, stays within the limit
 * and the buffers; a cut message is never taken for the whole one. */
Test(pmd, inflate_damaged_messages)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(9);
	uint8_t in[5000], z[6000], out[5000];
	size_t zlen, len;
	unsigned flips_corrupt = 0, cuts_corrupt = 0;

	fill(in, sizeof(in), K_TEXT, 5);
	zlen = rc_pmd_deflate(c, in, sizeof(in), z, sizeof(z));
	for (size_t bit = 0; bit < zlen * 8; bit++) {
		z[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		flips_corrupt += inflate_guarded(z, zlen, out, sizeof(out), &len) ==
				 RC_PMD_ERR_CORRUPT;
		z[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	for (size_t n = 1; n + 1 < zlen; n++) {
		int r = inflate_guarded(z, n, out, sizeof(out), &len);

		if (r == 0)
			cr_assert(len != sizeof(in) || memcmp(in, out, len) != 0, "cut at %zu", n);
		cuts_corrupt += r == RC_PMD_ERR_CORRUPT;
	}
	cr_assert(flips_corrupt > 0);
	cr_assert(cuts_corrupt > (zlen - 2) / 2, "%u of %zu", cuts_corrupt, zlen - 2);
	libdeflate_free_compressor(c);
}

Test(pmd, inflate_without_decompressor_aborts, .signal = SIGABRT)
{
	uint8_t msg[1 + RC_PMD_TAIL_ROOM] = { 0 }, out[4];
	size_t len;

	rc_pmd_inflate(NULL, msg, 1, out, sizeof(out), &len);
}
