/*
 * WebSocket input (input.c): the frames an open connection receives, assembled by its
 * rc_ws_asm (src/ws_assembler.c), inflated when compressed, rate-limited, and delivered
 * whole to the endpoint's on_message; pings answered and the close handshake completed.
 * Shard thread only.
 */
#ifndef RC_INPUT_H
#define RC_INPUT_H

#include "runtime.h"

/* Feeds p[0..n) (borrowed; in the receive buffer up to s->rx_end when that is set) to an
 * open or closing connection's frame assembler. */
void rc_conn_ws_input(struct rc_conn *c, uint8_t *p, size_t n);

/* Frees what c's frame assembler holds (c->ws; upgraded connections only). */
void rc_conn_ws_reset(struct rc_conn *c);

/* Sheds an open connection at the memory budget's hard mark: its unsent backlog and partial
 * message dropped, 1013 "memory budget" sent, counted as memory_shed. */
void rc_conn_shed(struct rc_conn *c);

#endif
