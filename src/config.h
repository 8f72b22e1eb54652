/*
 * The configuration: one table of every key (name, type, default, range, unit, help) from
 * which the struct, the parser, --help and the README table all come, so a key has one
 * spelling everywhere. Parses "key = value" text and --key=value arguments; reading files is
 * the caller's job (sans I/O). Single-threaded use at startup; the finished struct is
 * read-only and shared by every shard.
 */
#ifndef RC_CONFIG_H
#define RC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RC_KIB 1024ull
#define RC_MIB (1024ull * 1024ull)

/* Hard ceilings that config ranges may not exceed. */
#define RC_SHARDS_LIMIT 256
#define RC_MESSAGE_BYTES_LIMIT (1024ull * RC_MIB)
#define RC_RECV_BUFFERS_LIMIT 32768
#define RC_REDIS_ADDRESSES_LIMIT 64 /* redis_addresses entries (a bit each in a mask) */
#define RC_ORIGINS_LIMIT 32	     /* origins entries */
/* The longest origin: "https://", a 253-byte host name and ":65535". */
#define RC_ORIGIN_BYTES_MAX 267
#define RC_SUBPROTOCOLS_LIMIT 16 /* subprotocols entries */

/*
 * X(name, default, min, max, unit, help) for unsigned keys;
 * S(name, default, help) for strings; B(name, default, help) for booleans.
 */
#define RC_CONFIG_KEYS(X, S, B)                                                                    \
	S(address, "0.0.0.0", "IPv4 or IPv6 address to listen on")                                \
	S(admin_address, "127.0.0.1", "address of the admin listener (/health, /metrics, GET /)")  \
	X(admin_port, 0, 0, 65535, "",                                                             \
	  "admin listener port, never counted against connections_max; 0 = off (set it in "       \
	  "production: probes and scrapes then work while the public port is full)")             \
	X(admin_connections_max, 16, 1, 1024, "", "connections the admin listener serves at once") \
	B(public_admin_endpoints, true,                                                            \
	  "also serve /health, /metrics and GET / on the public port")                             \
	X(port, 8080, 0, 65535, "",                                                                \
	  "TCP port every shard listens on (SO_REUSEPORT); 0 = any free port")                     \
	X(shards, 0, 0, RC_SHARDS_LIMIT, "", "shard threads, one per core; 0 = online CPUs")       \
	X(tls_port, 0, 0, 65535, "",                                                               \
	  "TLS listener port (wss://, https://) beside port, every shard (SO_REUSEPORT); 0 = none") \
	S(tls_cert_file, "", "PEM certificate chain of the TLS listener (leaf first)")             \
	S(tls_key_file, "", "PEM private key of tls_cert_file")                                    \
	S(tls_sni_certs, "",                                                                       \
	  "more certificates chosen by SNI: comma-separated cert.pem:key.pem pairs, each serving " \
	  "the names its certificate lists; tls_cert_file serves any other name")                 \
	X(tls_ticket_rotate_s, 3600, 0, 604800, "s",                                               \
	  "session ticket keys rotate this often (tickets of the previous key still resume); 0 = " \
	  "no session tickets")                                                                    \
	X(tls_handshakes_per_turn_max, 16, 1, 65536, "",                                           \
	  "TLS handshake steps one shard runs per loop turn; more wait for the next turn, so a "  \
	  "flood of handshakes cannot starve open connections")                                  \
	B(pin_shards, true, "pin shard i to the i-th allowed CPU")                                 \
	X(connections_max, 0, 0, 100000000, "",                                                    \
	  "connections served at once (all shards); more get 503; 0 = what RLIMIT_NOFILE allows")  \
	X(backlog, 4096, 16, 1048576, "", "listen() backlog per shard (capped by somaxconn)")      \
	X(handshake_timeout_ms, 10000, 100, 600000, "ms",                                          \
	  "time allowed from accept to a complete HTTP request (the TLS handshake included)")   \
	X(ping_interval_ms, 30000, 0, 3600000, "ms",                                               \
	  "send a ping after this long without traffic from the client; 0 = never")                \
	X(idle_timeout_ms, 120000, 0, 86400000, "ms",                                              \
	  "close (1001) after this long without any frame from the client; 0 = never")             \
	X(message_timeout_ms, 30000, 0, 3600000, "ms",                                             \
	  "time a client has to complete a frame or fragmented message from its first byte (more " \
	  "bytes do not extend it); over it closes with 1008; 0 = never")                          \
	X(close_timeout_ms, 5000, 10, 600000, "ms",                                                \
	  "wait this long for the peer's close reply before closing TCP")                          \
	X(drain_timeout_ms, 10000, 0, 3600000, "ms",                                               \
	  "on SIGTERM/SIGINT, wait this long for close replies before exiting")                    \
	X(header_bytes_max, 8192, 256, 1048576, "bytes",                                           \
	  "request line + headers; larger gets 431")                                               \
	X(body_bytes_max, 1048576, 0, 268435456, "bytes", "HTTP request body; larger gets 413")    \
	X(frame_bytes_max, 65536, 125, RC_MESSAGE_BYTES_LIMIT, "bytes",                            \
	  "payload of one frame on pub/sub endpoints; larger closes with 1009")                    \
	X(message_bytes_max, 1048576, 125, RC_MESSAGE_BYTES_LIMIT, "bytes",                        \
	  "reassembled message on pub/sub endpoints; larger closes with 1009")                     \
	X(echo_frame_bytes_max, 16777216, 125, RC_MESSAGE_BYTES_LIMIT, "bytes",                    \
	  "payload of one frame on /echo; larger closes with 1009")                                \
	X(echo_message_bytes_max, 16777216, 125, RC_MESSAGE_BYTES_LIMIT, "bytes",                  \
	  "reassembled message on /echo; larger closes with 1009")                                 \
	X(messages_per_second_max, 0, 0, 10000000, "",                                             \
	  "messages one client may send per second, sustained (token bucket); over it closes "  \
	  "with 1008; 0 = no limit")                                                               \
	X(messages_burst_max, 1000, 1, 10000000, "",                                               \
	  "messages a client may send at once before messages_per_second_max applies")            \
	X(inflate_bytes_per_second_max, 8388608, 0, 1073741824, "bytes",                          \
	  "inflated bytes per connection per second (a bucket of 1 s, at least one message); "   \
	  "over it closes with 1008; 0 = no limit")                                                \
	X(json_depth_max, 32, 1, 1000, "",                                                         \
	  "arrays and objects nested in a client's JSON message; deeper gets an error, unparsed") \
	X(json_elements_max, 16384, 1, 100000000, "",                                              \
	  "JSON values in a client's message or POST /publish body; more get an error, unparsed") \
	X(send_queue_bytes_max, 4194304, 4096, RC_MESSAGE_BYTES_LIMIT, "bytes",                    \
	  "bytes queued to one connection before the slow-consumer policy applies")                \
	X(recv_buffer_bytes, 16384, 1024, 1048576, "bytes",                                        \
	  "size of each provided receive buffer (power of two)")                                   \
	X(recv_buffers, 1024, 16, RC_RECV_BUFFERS_LIMIT, "",                                       \
	  "most provided receive buffers per shard (power of two); the pool starts at 32 and "   \
	  "doubles on ENOBUFS")                                                                    \
	X(ring_entries, 4096, 64, 32768, "", "io_uring submission queue entries per shard")        \
	X(cqe_batch_max, 1024, 16, 65536, "",                                                     \
	  "completions handled per loop turn (send completions are not counted: all are taken)")  \
	X(sends_per_turn_max, 1024, 1, 1048576, "",                                              \
	  "sends issued per loop turn, oldest waiting connection first; the rest go next turn, "  \
	  "so a turn stays short and a publish joins the subscribers not yet served")             \
	X(receives_per_turn_max, 16, 1, 63, "",                                                   \
	  "receives (of up to recv_buffer_bytes each) handled per connection per loop turn; "    \
	  "more wait, in order, for the next turn, so one flooding client cannot hold the shard") \
	B(submit_batching, true,                                                                   \
	  "one io_uring_submit per loop turn; false submits after every send (benchmarks only)")  \
	X(timer_tick_ms, 50, 1, 1000, "ms", "timing-wheel resolution")                             \
	X(send_queue_age_max_ms, 10000, 0, 3600000, "ms",                                        \
	  "oldest queued frame older than this applies the slow-consumer policy; 0 = no limit")   \
	S(slow_consumer_policy, "close",                                                          \
	  "close (1013 + reason), drop (skip frames; the client sees a sequence gap) or latest "  \
	  "(a topic's unsent message is replaced by its newest, after a gap)")                     \
	X(memory_budget_bytes, 0, 0, 1ull << 50, "bytes",                                         \
	  "memory clients may make the gateway hold, kernel socket memory included; 0 = 3/4 of "  \
	  "the host's or cgroup's memory")                                                         \
	X(memory_soft_percent, 80, 10, 100, "%",                                                   \
	  "past this share of memory_budget_bytes new connections and topics are refused")         \
	X(http_memory_percent, 25, 1, 100, "%",                                                    \
	  "share of memory_budget_bytes that HTTP requests in progress (bodies) may hold together; "\
	  "a request that needs more gets 503")                                                    \
	B(memory_count_kernel, true,                                                               \
	  "count the host's TCP socket memory (/proc/net/sockstat) against memory_budget_bytes")   \
	X(subscriptions_per_connection_max, 256, 1, 65535, "",                                     \
	  "topics one connection may subscribe to")                                              \
	X(history_messages_max, 1024, 0, 1048576, "",                                              \
	  "messages kept per topic for replay after a reconnect; 0 = none")                        \
	X(history_age_max_ms, 300000, 0, 86400000, "ms",                                           \
	  "messages older than this leave the history; 0 = kept until evicted by count")           \
	X(history_bytes_max, 1048576, 0, RC_MESSAGE_BYTES_LIMIT, "bytes",                          \
	  "bytes of history kept per topic (frames included); the oldest go first")               \
	X(history_total_bytes_max, 268435456, 0, 1ull << 44, "bytes",                              \
	  "bytes of history kept by all topics, split over shards; the least recently published " \
	  "topics give way first")                                                                 \
	X(topics_max, 1000000, 1, 1ull << 32, "",                                                  \
	  "topics the process sequences at once, split over shards; past it new topics get error " \
	  "16 (busy)")                                                                             \
	X(topics_per_second_max, 256, 0, 65535, "",                                                \
	  "topics one connection may create per second (subscribing or publishing to a topic new "  \
	  "to its shard; token bucket, one second's worth at once); past it error 16 (busy); "    \
	  "0 = no limit")                                                                          \
	X(topic_forget_ms, 600000, 0, 86400000, "ms",                                              \
	  "a topic without subscribers or history is forgotten (seq restarts) after this; 0 = never") \
	X(dedup_window_ms, 60000, 0, 3600000, "ms",                                                \
	  "a publish repeating an id of the same publisher within this window is dropped; 0 = no " \
	  "dedup")                                                                                 \
	X(dedup_ids_max, 256, 1, 65536, "", "publish ids remembered per topic for dedup")          \
	S(client_publish, "any", "who may publish over WebSocket: any, subscribed or none")        \
	X(frame_arena_bytes, 33554432, 0, 17179869184ull, "bytes",                                 \
	  "registered arena for broadcast frames, split over shards; 0 = heap frames, no zero-copy") \
	X(send_zc_threshold_bytes, 0, 0, 4294967295ull, "bytes",                                   \
	  "arena frames at least this large go out with send_zc_fixed; 0 = never (loopback: "     \
	  "zero-copy measured slower at every size, see perf/results)")                           \
	X(mpsc_ring_entries, 16384, 64, 1048576, "",                                               \
	  "slots of each shard's inbound cross-shard ring (power of two)")                         \
	X(mpsc_drain_max, 4096, 16, 1048576, "", "cross-shard items handled per loop turn")         \
	X(outbox_items_max, 65536, 16, 1ull << 30, "",                                             \
	  "cross-shard items one shard may hold for full rings; past it publishes towards it get " \
	  "error 16 (busy) or 503")                                                                \
	S(engine, "memory",                                                                        \
	  "memory (topics, seq and history in this process) or redis (shared by every node "      \
	  "using the same redis_addresses and redis_prefix)")                                      \
	S(redis_addresses, "127.0.0.1:6379",                                                       \
	  "comma-separated host:port of independent Redis instances; a topic maps to one by a "   \
	  "rendezvous hash of its name (engine = redis)")                                          \
	S(redis_password, "", "sent with AUTH on every Redis connection; empty = no AUTH")        \
	S(redis_prefix, "ringcast:", "namespace of every Redis key and channel ringcast uses")   \
	X(redis_connect_timeout_ms, 1000, 10, 600000, "ms",                                       \
	  "a Redis connection not established within this is retried (backoff)")                  \
	X(redis_command_timeout_ms, 2000, 10, 600000, "ms",                                       \
	  "a Redis reply not received within this fails the connection (reconnect, publishes "    \
	  "answered busy)")                                                                        \
	X(redis_pipeline_max, 8192, 1, 1048576, "",                                               \
	  "commands awaiting their reply on one Redis connection; past it publishes get error "   \
	  "16 (busy) or 503")                                                                      \
	X(redis_backlog_bytes_max, 8388608, 4096, 1073741824, "bytes",                            \
	  "bytes waiting to be written to one Redis connection; past it publishes get busy/503")  \
	X(redis_reconnect_min_ms, 100, 1, 600000, "ms",                                           \
	  "first delay before reconnecting to Redis; doubles per failure, with jitter")           \
	X(redis_reconnect_max_ms, 5000, 1, 3600000, "ms", "longest delay between Redis reconnects") \
	X(redis_publish_batch_max, 128, 1, 1024, "",                                              \
	  "publishes one shard sends to one Redis in one script call (a loop turn's, up to this)") \
	X(redis_reply_bytes_max, 67108864, 65536, 1073741824, "bytes",                           \
	  "most one Redis reply may take in memory (arrays, strings, what is buffered); past "    \
	  "it the connection fails (a broken or hostile Redis); at least redis_backlog_bytes_max") \
	S(node_id, "",                                                                             \
	  "this process's name among the nodes sharing Redis (letters, digits, . _ : -, at most "  \
	  "64); empty = hostname-pid-random, generated at start")                                  \
	X(node_heartbeat_ms, 1000, 10, 600000, "ms",                                                \
	  "engine = redis: how often a node refreshes its entry in the node registry (/api/info)") \
	B(deflate, true, "negotiate permessage-deflate (RFC 7692, no context takeover)")          \
	X(deflate_level, 6, 1, 12, "", "libdeflate compression level")                             \
	X(deflate_echo_level, 1, 1, 12, "",                                                      \
	  "libdeflate level for what a connection sends while handling a message that arrived "  \
	  "compressed (an echo): the client paid little to send it, we pay little to answer")     \
	X(deflate_threshold_bytes, 256, 0, 1073741824, "bytes",                                    \
	  "messages shorter than this are sent uncompressed")                                      \
	X(stats_interval_ms, 1000, 0, 3600000, "ms",                                               \
	  "publish gateway totals to topic ringcast.stats (the GET / dashboard); 0 = off")       \
	X(sse_heartbeat_ms, 15000, 0, 3600000, "ms",                                             \
	  "a GET /sse stream gets a comment line after this long without an event (proxies and "  \
	  "the client library see it alive); 0 = never")                                           \
	S(token_hmac_secret, "",                                                                   \
	  "shared secret of HS256/384/512 JWTs (at least 32 bytes); with a key below, tokens are " \
	  "required on /ws (?token= or Authorization: Bearer) and POST /publish; empty = none")   \
	S(token_public_key_file, "",                                                               \
	  "PEM public key (RSA 2048+ bits or EC P-256) of RS256/ES256 JWTs without a kid; "        \
	  "reloaded on SIGHUP or when the file changes; empty = none")                             \
	S(token_jwks_file, "",                                                                     \
	  "JWKS file of RS256/ES256 keys chosen by the token's kid; reloaded on SIGHUP or when "  \
	  "the file changes; empty = none")                                                        \
	S(token_algorithms, "HS256,HS384,HS512,RS256,ES256",                                       \
	  "JWT algorithms accepted (none never is; each needs its key)")                           \
	S(token_audience, "", "required aud of JWTs; empty = tokens carrying an aud are refused")   \
	S(token_issuer, "", "required iss of JWTs; empty = not checked")                            \
	X(token_leeway_ms, 0, 0, 600000, "ms",                                                     \
	  "clock skew allowed on a JWT's exp, nbf and iat")                                        \
	X(token_bytes_max, 4096, 256, 65536, "bytes", "longest JWT accepted; longer get 401")      \
	S(namespaces, "",                                                                          \
	  "topic namespaces (topics NAME:...), best set one per line as namespace.NAME = "         \
	  "OPTION=VALUE,... (README, Namespaces); kept as NAME:OPTIONS;...")                       \
	X(presence_entries_max, 10000, 1, 10000000, "",                                            \
	  "presence entries one topic keeps (namespaces with presence=true); past it subscribers " \
	  "are not listed (counted)")                                                              \
	X(presence_list_max, 1000, 0, 10000000, "",                                                \
	  "a presence op on a topic with more entries answers the counts only")                    \
	X(presence_ttl_ms, 30000, 100, 3600000, "ms",                                               \
	  "engine = redis: a node's presence entries and registry entry expire this long after "  \
	  "its last refresh (every third of it), so a dead node's users disappear")                \
	S(api_key, "",                                                                             \
	  "key of the server API (/api/...) on the public port, sent as Authorization: apikey "    \
	  "<key>; the admin listener serves the API without it; empty = no API on the public port") \
	S(origins, "", "comma-separated Origin allowlist of WebSocket upgrades and cross-origin "  \
	  "HTTP (CORS: /sse, the publish path, assets), at most 32 of up to 267 bytes; "          \
	  "empty = any origin")                                                                    \
	S(subprotocols, "", "comma-separated subprotocols in server preference order (at most 16)") \
	S(log_level, "info", "error, warn, info or debug")

/* The values of log_level, least verbose first. */
enum rc_log_level {
	RC_LOG_LEVEL_ERROR = 0,
	RC_LOG_LEVEL_WARN,
	RC_LOG_LEVEL_INFO,
	RC_LOG_LEVEL_DEBUG,
};

struct rc_config {
#define RC_CFG_X(name, def, min, max, unit, help) uint64_t name;
#define RC_CFG_S(name, def, help) char *name;
#define RC_CFG_B(name, def, help) bool name;
	RC_CONFIG_KEYS(RC_CFG_X, RC_CFG_S, RC_CFG_B)
#undef RC_CFG_X
#undef RC_CFG_S
#undef RC_CFG_B
};

/* Fills cfg with every key's default. Strings are heap copies; free with rc_config_free(). */
int rc_config_init(struct rc_config *cfg);

/* Deep-copies src into dst (dst uninitialised). Returns 0 or -ENOMEM. */
int rc_config_copy(struct rc_config *dst, const struct rc_config *src);

/* Frees the strings of cfg. */
void rc_config_free(struct rc_config *cfg);

/*
 * Sets one key from its text value. Returns 0, or -EINVAL with a one-line message in err
 * naming the key and its accepted range (unknown key, not a number, out of range).
 */
int rc_config_set(struct rc_config *cfg, const char *key, const char *value, char *err,
		  size_t err_len);

/*
 * Parses "key = value" lines (# comments, blank lines) from text[0..len). origin names the
 * source in error messages ("ringcast.conf"). Returns 0 or -EINVAL with err set (line number).
 */
int rc_config_parse_text(struct rc_config *cfg, const char *text, size_t len, const char *origin,
			 char *err, size_t err_len);

/*
 * Checks rules that span keys (e.g. a frame limit above its message limit, buffer sizes that
 * are not powers of two). Returns 0 or -EINVAL with err set.
 */
int rc_config_validate(const struct rc_config *cfg, char *err, size_t err_len);

/* cfg's log_level as a level; RC_LOG_LEVEL_INFO if it is not one (rc_config_validate fails). */
enum rc_log_level rc_config_log_level(const struct rc_config *cfg);

/*
 * True if every string value survives rc_config_print() and rc_config_parse_text(): no line
 * breaks, and no '#' that would start a comment (at the start or after a blank).
 */
bool rc_config_printable(const struct rc_config *cfg);

/* Writes every key with its default, range, unit and help, one per line, as --help shows. */
void rc_config_print_help(FILE *out);

/* Writes the README's Markdown table of keys. */
void rc_config_print_markdown(FILE *out);

/* Writes the effective configuration as "key = value" lines. */
void rc_config_print(const struct rc_config *cfg, FILE *out);

/*
 * Splits a comma-separated list into trimmed, non-empty items; returns their count (at most
 * max). The items point into s, which is modified (commas become NULs).
 */
size_t rc_config_split_list(char *s, char **items, size_t max);

#define RC_NODE_ID_BYTES_LIMIT 64

/* Whether s[0..len) is a node_id: 1..RC_NODE_ID_BYTES_LIMIT letters, digits, '.', '_', ':' or
 * '-' (or empty when empty_ok: generated at start). Any thread. */
bool rc_node_id_valid(const char *s, size_t len, bool empty_ok);

/*
 * The default node_id, "host-pid-rnd" (rnd as 8 hex digits), into out (cap bytes, NUL
 * terminated): bytes of host a node_id cannot hold become '_', and host is shortened so the
 * whole fits RC_NODE_ID_BYTES_LIMIT. cap > RC_NODE_ID_BYTES_LIMIT. Any thread.
 */
void rc_node_id_make(char *out, size_t cap, const char *host, unsigned long pid, uint32_t rnd);

#endif
