/*
 * The memory budget in force (memory.c): once per tick each shard reads where the process
 * stands against memory_budget_bytes and acts on its own connections and topics: past the
 * soft mark it refuses new connections and topics (the level admission reads) and trims its
 * topics' histories; at the hard mark it also sheds its biggest consumers. Shard 0 samples
 * the kernel's socket memory once a second. The shard passed in is borrowed. Shard thread.
 */
#ifndef RC_MEMORY_H
#define RC_MEMORY_H

#include "runtime.h"

/* Connections one shard sheds per tick at the hard mark: the next tick sees what they freed. */
#define RC_SHED_PER_TICK_LIMIT 8

/* The once-per-tick step: updates s->mem_level, trims, sheds. Cheap when the tick has not
 * changed. Shard s's thread, each loop turn. */
void rc_memory_tick(struct rc_shard *s);

/* Reads the host's TCP socket memory (/proc/net/sockstat, all processes) into the budget,
 * if memory_count_kernel. Shard 0's thread, once a second. */
void rc_memory_sample_kernel(struct rc_app *app);

#endif
