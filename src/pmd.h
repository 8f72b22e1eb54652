/*
 * permessage-deflate (RFC 7692), sans I/O: negotiation of the Sec-WebSocket-Extensions offers
 * and the message codec on top of libdeflate's whole-buffer API. Owns the offer parser, the
 * response line and the 00 00 ff ff tail handling; does not own compressors, decompressors or
 * buffers (the caller passes them in) and knows nothing of frames, RSV1 or close frames.
 * Pure; the caller's thread.
 *
 * Memory per connection: zero between messages. libdeflate keeps no window across calls, so
 * ringcast always negotiates server_no_context_takeover and client_no_context_takeover and
 * every message is compressed and inflated on its own. A shard owns one compressor (per level)
 * and one decompressor and uses them for all its connections; a connection only remembers
 * "deflate negotiated" and the server window its client asked for. A broadcast is deflated
 * once by its owner shard and the same bytes go to every subscriber that negotiated the
 * extension and whose window the message fits.
 *
 * Small server windows (server_max_window_bits 8..14): libdeflate cannot be told a window; it
 * may refer back up to 32 KiB. But a back-reference never reaches before the message's first
 * byte, so a message of at most 2^bits bytes is valid for a 2^bits window whatever libdeflate
 * does, and such messages are compressed as usual. Longer ones go out uncompressed (RSV1 is
 * per message, RFC 7692 §6): honouring the window for them would need a compressor per
 * window size or per connection (zlib), and memory per connection is the product.
 * The cost is bandwidth on long messages to those clients, nothing else.
 *
 * Wire format of a compressed message (what rc_pmd_deflate() writes): libdeflate's raw
 * DEFLATE stream, whose last block has BFINAL = 1 and ends padded to a byte, followed by one
 * 0x00 byte. That byte is the header of an empty stored block (BFINAL = 0, BTYPE = 00 and
 * five padding bits) whose LEN/NLEN = 00 00 ff ff were removed, which is the form of RFC 7692
 * §7.2.3.4 ("f3 48 cd c9 c9 07 00 00" for "Hello"). A receiver appends 00 00 ff ff (§7.2.2)
 * and inflates: zlib-based ones that stop at BFINAL (Python websockets, Node ws) take the
 * first block and ignore the rest; ones that reset the inflater at BFINAL and go on (Chromium's
 * WebSocketInflater) read 00 + 00 00 ff ff as one empty stored block, ending exactly at the
 * message's end. Without the extra byte those would parse 00 00 ff ff as a stored block
 * header with LEN 0xff00 and fail the next message.
 */
#ifndef RC_PMD_H
#define RC_PMD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct libdeflate_compressor;
struct libdeflate_decompressor;

/* libdeflate's compression levels (its level 0, stored blocks only, only grows messages). */
#define RC_PMD_LEVEL_MIN 1
#define RC_PMD_LEVEL_MAX 12
#define RC_DEFAULT_DEFLATE_LEVEL 6
/* Below this DEFLATE's block overhead eats most of the saving, and a receiver still pays an
 * inflate call for it. */
#define RC_DEFAULT_DEFLATE_THRESHOLD_BYTES 256

/* The longest line rc_pmd_negotiate() writes, its CRLF and a NUL included. */
#define RC_PMD_RESPONSE_LIMIT 160

/*
 * Bytes rc_pmd_inflate() borrows right after a message: 00 00 ff ff (the tail every sender
 * strips, RFC 7692 §7.2.1) and 01 00 00 ff ff (an empty stored block with BFINAL = 1, which
 * libdeflate needs to see the stream end).
 */
#define RC_PMD_TAIL_ROOM 9

/* Window sizes (log2 bytes) an offer may name (RFC 7692 §7.1.2). */
#define RC_PMD_WINDOW_BITS_MIN 8
#define RC_PMD_WINDOW_BITS_MAX 15

/*
 * Errors of rc_pmd_inflate() and the close codes the runtime answers them with. A bomb is a
 * message bigger than the limit once inflated (1009, like any oversized message). Corrupt
 * data is 1007: the frames were well formed, their payload is not what RSV1 says it is, the
 * same class as invalid UTF-8 in a text message (Node ws answers 1007 too).
 */
#define RC_PMD_ERR_TOO_BIG (-EMSGSIZE)
#define RC_PMD_ERR_CORRUPT (-EBADMSG)

/* Server-side settings, read-only after startup (config keys deflate, deflate_level,
 * deflate_threshold_bytes). */
struct rc_pmd_config {
	bool enabled;             /* negotiate permessage-deflate at all */
	uint8_t level;            /* RC_PMD_LEVEL_MIN..MAX, given to libdeflate_alloc_compressor */
	uint32_t threshold_bytes; /* messages shorter than this are sent uncompressed */
};

/* What was agreed with one client. Both directions are always no_context_takeover. */
struct rc_pmd_params {
	uint8_t server_max_window_bits; /* the client's window for our messages: offered, else 15 */
	uint8_t client_max_window_bits; /* the client's window: its offered value, else 15 */
	uint32_t offer_index; /* which offer was accepted: 0-based, all headers, all extensions */
};

/*
 * Reads every offer of every Sec-WebSocket-Extensions header (ext_headers, borrowed): offers
 * separated by commas, parameters by semicolons, values tokens or quoted strings (RFC 7230
 * §3.2.6), extension and parameter names compared ignoring ASCII case, optional whitespace
 * around separators. Picks the first acceptable permessage-deflate offer, in the client's
 * order. An offer is declined, and the next one considered, when it is malformed, repeats a
 * parameter, names one RFC 7692 does not define for offers, gives server_no_context_takeover
 * or client_no_context_takeover a value, gives a window size other than 8..15 written as a
 * plain decimal, or omits server_max_window_bits' value. Every server window 8..15 is
 * accepted (see rc_pmd_fits_window() for what a small one costs), and every window the client
 * compresses with is fine, as libdeflate inflates a whole message from one buffer.
 *
 * On acceptance writes the response header line into response_line (cap at least
 * RC_PMD_RESPONSE_LIMIT, NUL-terminated): "Sec-WebSocket-Extensions: permessage-deflate;
 * server_no_context_takeover; client_no_context_takeover[; server_max_window_bits=N]\r\n".
 * client_no_context_takeover is always asked for (RFC 7692 §7.1.1.2 lets the server add it)
 * since a client keeping its window could refer back to an earlier message; the window size
 * appears only when offered, as §7.1.2.1 requires, and is the offered value N, 8 included:
 * the RFC allows no larger answer and Python websockets refuses one, while zlib-based
 * inflaters take 8 as it is (or as 9, which only widens their window); client_max_window_bits
 * is never answered (§7.1.2.2 makes it optional and a smaller client window would save us
 * nothing).
 *
 * Returns true and fills *out if an offer was accepted; false (response_line empty, *out
 * untouched) if cfg->enabled is off or nothing acceptable was offered. Never a reason to fail
 * the handshake.
 */
bool rc_pmd_negotiate(const struct rc_http_multi *ext_headers, const struct rc_pmd_config *cfg,
		      struct rc_pmd_params *out, char *response_line, size_t cap);

/* True if a message of n bytes should be compressed under cfg (n >= threshold_bytes). */
bool rc_pmd_should_compress(const struct rc_pmd_config *cfg, size_t n);

/*
 * True if an n-byte message compressed by rc_pmd_deflate() is valid for a receiver keeping a
 * window of 2^bits bytes (bits 8..15, asserted): always at 15 (libdeflate's own window is
 * 32 KiB), below it only if n <= 2^bits, since no back-reference reaches before the message's
 * start. A message that does not fit is sent uncompressed. Pure; any thread.
 */
bool rc_pmd_fits_window(uint8_t bits, size_t n);

/* An output size for rc_pmd_deflate() that fits any n-byte message at any level. */
size_t rc_pmd_deflate_bound(size_t n);

/*
 * Compresses the message in[0..n) into out[0..cap) in the wire format described above,
 * ready to be a frame payload with RSV1 set. c is borrowed (any level); no state is kept.
 * Returns the payload length, or 0 if it would not fit in cap (libdeflate may want a few
 * bytes of slack beyond the final length): with cap = n - 1 (or tighter) a 0 means "not worth
 * it, send the message uncompressed"; with cap >= rc_pmd_deflate_bound(n) it is never 0.
 */
size_t rc_pmd_deflate(struct libdeflate_compressor *c, const void *in, size_t n, void *out,
		      size_t cap);

/*
 * Inflates one complete compressed message: msg[0..n) is the payload of its frames joined
 * (fragments concatenated, unmasked). The tail every sender strips is put back without
 * copying the message: msg[n..n + RC_PMD_TAIL_ROOM) must be memory the caller owns (room left
 * at the end of an assembly buffer, or the next frame's bytes in the same receive buffer);
 * it is overwritten and restored before returning, so msg[0..n + RC_PMD_TAIL_ROOM) holds the
 * same bytes afterwards. A message that ends with a BFINAL block is accepted, and bytes after
 * that block are inflated as a new stream (what Chromium does), so the RFC 7692 §7.2.3.4 form
 * and rc_pmd_deflate()'s output both inflate. An empty msg inflates to an empty message, and
 * a msg that still ends in 00 00 ff ff has those read as the tail, as zlib receivers do.
 *
 * Writes at most out_max bytes to out and never allocates: d is borrowed and keeps nothing
 * between calls. Returns 0 with *out_len set, RC_PMD_ERR_TOO_BIG if the message would inflate
 * past out_max (close 1009), or RC_PMD_ERR_CORRUPT if it is not valid DEFLATE (close 1007);
 * on errors *out_len is 0 and out's contents are undefined. UTF-8 of text messages is the
 * caller's check, on the inflated bytes.
 */
int rc_pmd_inflate(struct libdeflate_decompressor *d, uint8_t *msg, size_t n, void *out,
		   size_t out_max, size_t *out_len);

#endif
