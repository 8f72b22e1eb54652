/*
 * The connection table (conn.c): a shard's slab of connection records whose slot is the
 * io_uring fixed-file index, with a 24-bit generation per slot so a late completion never
 * reaches the slot's next connection. It accepts (multishot, direct descriptors), receives
 * (multishot recv from the buffer ring), and tears down: cancel what is in flight, close the
 * descriptor, reuse the slot only once every completion arrived. It knows nothing of what
 * the bytes mean: received bytes and the end of a connection go up through rc_conn_hooks.
 * (Named conn_rt.h beside include/ringcast/conn.h, the public half.) Shards and connections
 * passed in are borrowed. Shard thread only.
 */
#ifndef RC_CONN_RT_H
#define RC_CONN_RT_H

#include "runtime.h"
#include "uring.h"

/*
 * The calls the connection's upper layers take from the layers below them, so that no
 * lower file names a higher one. Wired once by rc_app_create (app.c, the top) before any
 * shard starts; read-only afterwards. Every hook runs on c's shard thread.
 */
struct rc_conn_hooks {
	/* Bytes arrived for c (conn.c). p[0..n) is borrowed for the call; the receive buffer's
	 * end is s->rx_end. http_serve.c's rc_conn_input. */
	void (*input)(struct rc_conn *c, uint8_t *p, size_t n);
	/* Ciphertext arrived for c from the TLS listener (borrowed for the call); the plaintext
	 * goes on to input. tls_rt.c's rc_tls_input. */
	void (*tls_input)(struct rc_conn *c, uint8_t *p, size_t n);
	/* c was terminated (conn.c; it was still reading HTTP when http): every layer above
	 * the table lets go of c (input's buffers, send queue, subscriptions) before on_close
	 * runs. Once per connection. */
	void (*closed)(struct rc_conn *c, bool http);
	/* Requests waiting in c->pend may be parsed now (sendq.c's flush, RC_CF_HTTP_RESUME).
	 * http_serve.c's rc_conn_http_resume. */
	void (*resume)(struct rc_conn *c);
	/* POST publish_path arrived (http_serve.c); body is borrowed for the call and the answer
	 * follows later. pubsub_proto.c's rc_proto_http_publish. */
	void (*publish)(struct rc_conn *c, const char *body, size_t len, bool keep_alive);
	/* GET sse_path arrived and its token (if any) was accepted (http_serve.c): query and
	 * last_event_id are borrowed for the call. pubsub_proto.c's rc_proto_sse_open. */
	void (*sse)(struct rc_conn *c, struct rc_slice query, struct rc_slice last_event_id);
	/* A server API request /api/name[0..nlen) arrived (http_serve.c): authorized when it came
	 * on the admin listener or with the api_key; post: its method was POST; body borrowed for
	 * the call, the answer may follow later. api_serve.c's rc_api_serve. */
	void (*api)(struct rc_conn *c, const char *name, size_t nlen, bool authorized, bool post,
		    const char *body, size_t len, bool keep_alive);
};

/* The live connection ud (a CQE's user_data) refers to, or NULL when its slot was freed or
 * reused since (a stale completion: counted in stale_cqes). Returns a reference into s. */
struct rc_conn *rc_conn_lookup(struct rc_shard *s, uint64_t ud);

/* The slot field of an accept's user_data names its listener. */
#define RC_ACCEPT_PUBLIC 0
#define RC_ACCEPT_ADMIN 1
#define RC_ACCEPT_TLS 2

/* Arms the multishot accepts (public, TLS and, on shard 0, admin) unless armed, draining,
 * or without listener. */
void rc_conn_accept_arm(struct rc_shard *s);

/*
 * An accept completion: the new connection (state HTTP, recv armed; a reference into s's
 * table), or NULL for an error, a descriptor we cannot take (closed again) or a drain.
 * Borrows cqe. The caller starts the connection's timers (rc_conn_accepted, session.h).
 */
struct rc_conn *rc_conn_accept_complete(struct rc_shard *s, struct io_uring_cqe *cqe);

/* A recv completion for c: bytes go to the input hook, the end of the stream terminates c,
 * ENOBUFS grows the buffer ring and re-arms. Past receives_per_turn_max in this turn (or
 * behind receives of c already waiting) the bytes or the end wait, in order, for a later
 * turn, holding their buffer. Borrows cqe. */
void rc_conn_recv_complete(struct rc_conn *c, struct io_uring_cqe *cqe);

/* Starts a loop turn's receive accounting and handles the receives put off by earlier turns,
 * each connection's within its receives_per_turn_max. Before the turn's completions. */
void rc_conn_rx_turn(struct rc_shard *s);

/* Allocates (0 or -ENOMEM) and frees the per-turn receive accounting; after the connection
 * table is allocated, and at destroy (any buffers still waiting go with the buffer ring). */
int rc_conn_rx_setup(struct rc_shard *s);
void rc_conn_rx_free(struct rc_shard *s);

/* A cancel, shutdown or close completion for c (sends complete in sendq.c). */
void rc_conn_op_complete(struct rc_conn *c, enum rc_op op, int res);

/* One operation on c completed: counted off inflight; a doomed connection with nothing left
 * in flight closes its descriptor. */
void rc_conn_op_done(struct rc_conn *c);

/*
 * Ends c now, counted under why: the closed hook and on_close run, everything in flight is
 * cancelled, and the slot returns to the table once the descriptor's close completed.
 * Harmless on a connection already ending.
 */
void rc_conn_terminate(struct rc_conn *c, enum rc_close_reason why);

/* Half-closes c's TCP stream (shutdown SHUT_WR), once: after a failure's close frame. */
void rc_conn_shutdown_wr(struct rc_conn *c);

/*
 * Checks s's table: slot states, flags consistent with the state, in-flight counts,
 * generations, the dirty list, and the shard's connection counts. For tests and
 * RC_DASSERT; O(conns_cap). Borrows s. Shard s's thread between events (the loop, or a
 * callback other than on_close, which runs mid-teardown), or after the thread stopped.
 */
bool rc_conn_table_validate(const struct rc_shard *s);

#endif
