/*
 * Pub/sub across shards (pubsub.c): every topic has an owner shard (topic hash mod shards)
 * that sequences its messages, keeps its history and dedup window and builds each message's
 * frame once; local topics fan those frames out to this shard's subscribers. Control
 * messages and frames travel between shards through the inboxes (outbox.h). Answers that
 * belong to the client protocol go up through rc_pubsub_hooks. Shard threads, except
 * rc_pubsub_publish (any thread).
 */
#ifndef RC_PUBSUB_H
#define RC_PUBSUB_H

#include "runtime.h"

/* A topic with local subscribers on this shard. */
struct rc_ltopic {
	struct rc_topic_node node;
	/* its count subscribers, dense (rc_sub.index), walked in order by a fan-out; cap slots
	 * allocated (those past count NULL), charged as topics */
	struct rc_sub **subv;
	uint32_t count;
	uint32_t cap;
	uint32_t deflate_count; /* subscribers that negotiated permessage-deflate */
	uint8_t slow;           /* enum rc_ns_slow of its namespace; INHERIT: the app's policy */
	uint8_t presence;       /* RC_PRESENCE_* of its namespace: the owner hears (un)subscribes */
};

/* What a namespace's topic tracks (rc_ltopic.presence, rc_otopic.presence_flags). */
#define RC_PRESENCE_LIST 1u /* presence=true: the owner keeps who is subscribed */
#define RC_PRESENCE_EVENTS 2u /* join_leave=true: subscribers hear join and leave */

/* One connection's subscription to one topic. */
struct rc_sub {
	struct rc_sub *conn_next; /* in the connection */
	struct rc_ltopic *topic;
	struct rc_conn *conn;
	uint64_t last_seq; /* newest seq queued to this subscriber */
	uint64_t epoch;    /* the topic's, from the owner's answer (0: none asked or known) */
	uint32_t index;    /* in topic->subv */
	bool pending;      /* waiting for the owner's replay: live frames are skipped */
};

#define RC_SHARD_MASK_WORDS (RC_SHARDS_LIMIT / 64)

/* A topic this shard owns: its sequence, history, subscribed shards and recent ids. */
struct rc_otopic {
	struct rc_topic_node node;
	uint64_t seq;
	uint64_t epoch; /* names this run of seq (rc_topic_epoch); a new record gets a new one */
	uint64_t shard_mask[RC_SHARD_MASK_WORDS];
	uint64_t deflate_mask[RC_SHARD_MASK_WORDS]; /* shards with deflate subscribers */
	uint32_t deflate_shards;
	uint32_t shards_subscribed;
	struct rc_history hist;
	uint64_t unused_since_ms; /* no subscribers and no history since then; 0 = in use */
	/* in the shard's history order (hist_oldest .. hist_newest) while hist.count > 0 */
	struct rc_otopic *hist_prev;
	struct rc_otopic *hist_next;
	struct rc_dedup_id *dedup; /* recent (publisher, id) hashes: grows from 8 doubling up
				    * to dedup_ids_max */
	uint32_t dedup_cap;
	uint32_t dedup_count;
	uint32_t dedup_next; /* once full at its size: the slot the next id overwrites */
	uint32_t hist_age_ms; /* history_age_max_ms, or its namespace's history_age_ms */
	/* engine = redis (pubsub_redis.c); all zero with the memory engine */
	struct rc_xmsg *waiting; /* REPLAYs waiting for the first sync, linked through next */
	struct rc_frame **held;  /* live messages held while a sync runs, in arrival order */
	uint32_t held_count;
	uint32_t held_cap;
	uint8_t rsub;       /* enum rc_rsub: the node's subscription to the topic's channel */
	bool synced;        /* seq and epoch are Redis's (a sync answered, or a message came) */
	bool syncing;       /* a sync script is in flight: live messages are held */
	bool need_sync;     /* subscribed, the sync could not be sent: sent when the link is up */
	bool answered_blind; /* subscribers were answered before the first sync: reset them */
	struct rc_frame **events; /* join/leave frames held while subscribers wait (waiting) */
	uint32_t events_count;
	uint32_t events_cap;
	uint8_t presence_flags;     /* RC_PRESENCE_* of its namespace */
	struct rc_presence *presence; /* who is subscribed (RC_PRESENCE_LIST); NULL: nobody yet */
	uint32_t subscribers; /* subscriptions the owner heard come and not go (presence_flags) */
};

/* A topic's channel subscription (engine = redis), as the subscriber link last asked. */
enum rc_rsub {
	RC_RSUB_NONE = 0,
	RC_RSUB_SUBSCRIBING,
	RC_RSUB_SUBSCRIBED,
	RC_RSUB_UNSUBSCRIBING,
};

/* One remembered publish id of a topic. */
struct rc_dedup_id {
	uint64_t hash; /* of the publisher and the id, never 0 */
	uint64_t at_ms;
};

/* Cross-shard control messages (RC_ITEM_XMSG items; frames travel as RC_ITEM_FRAME). */
enum rc_xkind {
	RC_X_PUBLISH = 0, /* to the owner: assign a seq and broadcast */
	RC_X_SHARD_SUB,   /* to the owner: shard `from` has subscribers */
	RC_X_SHARD_UNSUB, /* to the owner: shard `from` has none left */
	RC_X_DEFLATE_ON,  /* to the owner: shard `from` has deflate subscribers */
	RC_X_DEFLATE_OFF, /* to the owner: shard `from` has none left */
	RC_X_REPLAY,      /* to the owner: a subscriber's answer (what came after since) */
	RC_X_REPLAYED,    /* from the owner: frames, gap or reset, current seq and epoch */
	RC_X_PUB_DONE,    /* from the owner: the seq assigned to a publish (or duplicate) */
	RC_X_RESET,       /* from the owner: the numbering restarted (epoch), live from seq */
	RC_X_GAP,         /* from the owner: gap_from..gap_to of the topic are lost */
	RC_X_PRESENCE_ADD, /* to the owner: connection `conn` of user (data) subscribed */
	RC_X_PRESENCE_DEL, /* to the owner: ... unsubscribed or closed */
	RC_X_PRESENCE_GET, /* to the owner: a presence query (stats_only: the counts) */
	RC_X_HISTORY_GET,  /* to the owner: messages after seq, at most limit (server API) */
	RC_X_TOPICS_GET,   /* to every shard: its topics with subscribers (server API) */
	RC_X_ANSWER,       /* from the owner: its JSON answer to a query in data (empty: no
			    * memory) */
	RC_X_USER,         /* to every shard: close user's (data) connections with code, or
			    * unsubscribe them from topic */
};

/* Who hears the seq a publish was given. */
enum rc_reply {
	RC_REPLY_NONE = 0,
	RC_REPLY_WS,   /* ack to a WebSocket client */
	RC_REPLY_HTTP, /* one answer of a POST /publish batch */
};

struct rc_xmsg {
	struct rc_xmsg *next; /* in a list of the owner's (rc_otopic.waiting) */
	uint8_t kind;  /* enum rc_xkind */
	uint8_t reply; /* enum rc_reply */
	uint8_t duplicate;
	uint8_t gap;
	uint8_t has_since; /* REPLAY: the subscriber resumes from seq */
	uint8_t has_epoch; /* REPLAY: ... of epoch `epoch` */
	uint8_t reset;     /* REPLAYED: since is meaningless in the current epoch */
	uint8_t may_create; /* PUBLISH: the publisher may create the topic (its bucket) */
	uint8_t created;    /* PUB_DONE: the publish created the topic */
	uint8_t refused;    /* PUB_DONE: refused (topics_max): busy */
	uint8_t stats_only; /* PRESENCE_GET: presence_stats, not the list */
	uint16_t code;      /* USER: the close code (no topic: disconnect) */
	uint32_t limit;     /* HISTORY_GET: messages at most */
	uint16_t from; /* producing shard; RC_SHARDS_LIMIT for foreign threads */
	uint16_t topic_len;
	uint32_t slot; /* reply-to connection */
	uint32_t gen;
	uint32_t tag;  /* index within an HTTP batch */
	uint32_t nframes;
	uint64_t seq; /* REPLAY: since; REPLAYED/PUB_DONE: current or assigned seq; PUBLISH in
		       * a Redis batch: its item's place in the script's answer */
	uint64_t epoch; /* REPLAY: the client's (0: none or foreign); else the topic's (0: none) */
	uint64_t publisher; /* PUBLISH: who publishes (dedup scope): 0 the backend, else
			     * rc_pubsub_publisher() */
	uint64_t conn; /* PRESENCE_ADD/DEL: rc_pubsub_conn_id of the subscriber */
	uint16_t user_len; /* PRESENCE_ADD/DEL: data holds the user id then the client info */
	uint64_t gap_from;
	uint64_t gap_to;
	struct rc_frame **frames; /* REPLAYED: references owned by the message */
	uint32_t data_len;
	uint16_t id_len;
	char topic[RC_TOPIC_BYTES_LIMIT + 1];
	char id[65];
	char data[]; /* PUBLISH: the JSON value */
};

/*
 * The client protocol's answers, which pub/sub produces but does not word (pubsub_proto.c).
 * Wired once by rc_app_create (app.c); they run on the subscriber's or publisher's shard
 * thread. topic is borrowed for the call.
 */
struct rc_pubsub_hooks {
	/* A subscription that asked for an answer is live from seq of epoch (0: unknown, out of
	 * memory): everything up to seq was replayed or reported, or, with reset, the client's
	 * since meant nothing in this epoch. */
	void (*subscribed)(struct rc_conn *c, const char *topic, size_t len, uint64_t seq,
			   uint64_t epoch, bool reset);
	/* Messages from..to of a resumed topic's epoch are gone from history. */
	void (*gap)(struct rc_conn *c, const char *topic, size_t len, uint64_t from, uint64_t to,
		    uint64_t epoch);
	/* A publish with a reply got its seq in epoch (or was a duplicate, or was refused as
	 * busy: seq 0); tag is its batch index. */
	void (*published)(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *topic,
			  size_t len, uint64_t seq, uint64_t epoch, bool duplicate, bool busy,
			  const char *id, size_t id_len);
	/* A query's answer from the topic's owner (presence, history): JSON text[0..len),
	 * borrowed for the call; len 0 when the owner had no memory for it. */
	void (*answer)(struct rc_conn *c, enum rc_reply reply, uint32_t tag, const char *text,
		       size_t len);
	/* c was unsubscribed from topic by the server API. */
	void (*unsubscribed)(struct rc_conn *c, const char *topic, size_t len);
};

/* How a client subscribes: the owner answers it (the subscribed hook), and it may resume. */
struct rc_resume {
	bool has_since;
	uint64_t since; /* the last seq it saw */
	bool has_epoch;
	uint64_t epoch; /* of that seq; 0 matches no topic */
};

/*
 * How owner shards sequence when topics live in Redis (pubsub_redis.c): app->engine, NULL
 * with the memory engine. Called by the owner outside any per-subscriber loop. Owner thread.
 */
struct rc_engine_ops {
	/* Publishes m (taken); the publisher hears through rc_pubsub_published. */
	void (*publish)(struct rc_shard *s, struct rc_xmsg *m);
	/* t got its first subscribed shard (on) or lost its last one (off). */
	void (*watch)(struct rc_shard *s, struct rc_otopic *t, bool on);
	/* Answers a subscriber's REPLAY m (taken) about t (borrowed). */
	void (*replay)(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m);
	/* t's presence entry of connection conn was added (add) or removed here: the other
	 * nodes' view follows. */
	void (*presence)(struct rc_shard *s, struct rc_otopic *t, uint64_t conn, bool add);
	/* Answers presence query m (taken) with every node's entries. */
	void (*presence_get)(struct rc_shard *s, struct rc_xmsg *m);
	/* Answers history query m (taken: since m->seq, at most m->limit) from the store every
	 * node shares, whether or not this node has the topic. */
	void (*history)(struct rc_shard *s, struct rc_xmsg *m);
	/* A join (or leave) of t went out here as envelope env[0..len) (borrowed): the other
	 * nodes' subscribers hear it too. */
	void (*event)(struct rc_shard *s, const struct rc_otopic *t, bool join, const char *env,
		      size_t len);
	/* Takes join/leave frame f of t if t's new subscribers still wait for their answer: it
	 * goes out after it (a subscriber sees its own join). False: f is the caller's. */
	bool (*defer_event)(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f);
};

/* ---- for the engine (pubsub_redis.c); owner shard thread ---------------------------------- */
/* The topic s owns by that name, or NULL. */
struct rc_otopic *rc_pubsub_owned(struct rc_shard *s, const char *name, size_t len);

/* Answers publish m (taken) with seq of epoch, or as a duplicate, or refused (busy). */
void rc_pubsub_published(struct rc_shard *s, struct rc_xmsg *m, uint64_t seq, uint64_t epoch,
			 bool dup, bool refused);

/* The broadcast frame of message seq of t (data borrowed), with its deflated variant when
 * some shard takes it; one reference for the caller. NULL: out of memory (counted). */
struct rc_frame *rc_pubsub_frame(struct rc_shard *s, struct rc_otopic *t, uint64_t seq,
				 const char *data, size_t dlen);

/* Keeps f in t's history and posts it to every subscribed shard. Takes the caller's
 * reference. t->seq is the caller's to advance. */
void rc_pubsub_fan_out(struct rc_shard *s, struct rc_otopic *t, struct rc_frame *f);

/* Tells every shard subscribed to t of a RESET (live from seq in t->epoch) or a GAP (from..to
 * in t->epoch), in order with the frames posted before and after. Counted when it fails. */
void rc_pubsub_tell_shards(struct rc_shard *s, struct rc_otopic *t, enum rc_xkind kind,
			   uint64_t seq, uint64_t from, uint64_t to);

/* Answers REPLAY m (taken) from what the owner holds: t's seq, epoch and history. */
void rc_pubsub_replay_local(struct rc_shard *s, struct rc_otopic *t, struct rc_xmsg *m);

/* Sends REPLAYED m (taken, filled by the engine) back to its subscriber's shard. */
void rc_pubsub_answer(struct rc_shard *s, struct rc_xmsg *m);

/* Drops t's history (its numbering restarted). */
void rc_pubsub_hist_clear(struct rc_shard *s, struct rc_otopic *t);

/* Allocates s's outboxes and topic tables. 0 or -ENOMEM. Main thread, before s starts. */
int rc_pubsub_init(struct rc_shard *s);

/* Releases what s's pub/sub holds, including items still in its inbox and outboxes. After
 * every shard thread has joined. */
void rc_pubsub_free(struct rc_shard *s);

/* Retries the outboxes and handles up to mpsc_drain_max inbox items. Once per turn. */
void rc_pubsub_poll(struct rc_shard *s);

/* Past the memory budget's soft mark: halves the history of every topic s owns, oldest
 * first (a topic with one message left keeps none). Shard s's thread, once per tick. */
void rc_pubsub_trim(struct rc_shard *s);

/* Ages owned topics' history out and forgets unused topics after topic_forget_ms. */
void rc_pubsub_sweep(struct rc_shard *s);

/* c was terminated: drops its subscriptions (the owners hear of emptied topics). Part of the
 * closed hook (app.c). */
void rc_pubsub_conn_closed(struct rc_conn *c);

/* Subscribes c to topic[0..len) (copied). With r (borrowed), the subscription waits for the
 * owner's answer, which comes through the subscribed hook (and the gap hook, and replayed
 * messages, when r resumes). 0 subscribed (without r); 1 subscribed, the answer follows;
 * -EEXIST, -E2BIG (subscriptions_per_connection_max), -EINVAL (topic name), -EBUSY (a new
 * topic past topics_max, read racily from its owner), -EAGAIN (a new topic past c's
 * topics_per_second_max), -ENOBUFS (a new topic past the memory budget's soft mark),
 * -ENOMEM (nothing changed). Counted. */
int rc_pubsub_subscribe(struct rc_conn *c, const char *topic, size_t len,
			const struct rc_resume *r);

/* The dedup scope of what c publishes: its token's subject when it has one, else the
 * connection itself (shard, slot, generation). Never 0, the backend's. */
uint64_t rc_pubsub_publisher(const struct rc_conn *c);

/* c's id among every connection of the process: shard, 23 bits of generation, slot, with
 * the top bit set (never 0). What presence and join/leave name a connection by. */
uint64_t rc_pubsub_conn_id(const struct rc_conn *c);

/*
 * Asks topic[0..len)'s owner who is subscribed (stats_only: how many); the answer comes to c
 * (borrowed, checked by generation) through the answer hook, with reply and tag. 0,
 * -EINVAL (topic name) or -ENOMEM.
 */
int rc_pubsub_presence(struct rc_conn *c, const char *topic, size_t len, bool stats_only,
		       enum rc_reply reply, uint32_t tag);

/*
 * Asks topic[0..len)'s owner for the messages after seq since that its history holds, at most
 * limit, oldest first: {"topic","epoch","seq","messages":[msg envelopes]}, through the answer
 * hook as rc_pubsub_presence. 0, -EINVAL or -ENOMEM.
 */
int rc_pubsub_history(struct rc_conn *c, const char *topic, size_t len, uint64_t since,
		      uint32_t limit, enum rc_reply reply, uint32_t tag);

/*
 * Asks every shard for its topics with local subscribers (personal topics left out): each
 * answers "NAME COUNT\n" lines through the answer hook (at least "\n"), to c with reply and
 * tag. 0, or -ENOMEM with nothing sent.
 */
int rc_pubsub_topics(struct rc_conn *c, enum rc_reply reply, uint32_t tag);

/*
 * On every shard, the connections of user[0..ulen) (those on its personal topic) are closed
 * with code, or, with tlen, unsubscribed from topic[0..tlen) (told through the unsubscribed
 * hook). Shard s's thread. 0, -EINVAL or -ENOMEM (some shards may not have heard).
 */
int rc_pubsub_user_action(struct rc_shard *s, const char *user, size_t ulen, const char *topic,
			  size_t tlen, uint16_t code);

/* Unsubscribes c from topic[0..len). 0 or -ENOENT. */
int rc_pubsub_unsubscribe(struct rc_conn *c, const char *topic, size_t len);

/*
 * Publishes data[0..dlen) (a JSON value) to topic with idempotency key id (may be empty);
 * all copied. reply says who hears the seq: c (borrowed, checked by generation when the
 * answer comes back), tag its batch index. A WebSocket reply publishes as c
 * (rc_pubsub_publisher), everything else as the backend: ids repeat only within one.
 * Any thread. 0, -EINVAL, -ENOMEM, -EAGAIN (foreign thread and the owner's ring full) or
 * -EBUSY (rc_pubsub_busy: nothing posted).
 */
int rc_pubsub_publish(struct rc_app *app, const char *topic, size_t tlen, const char *data,
		      size_t dlen, const char *id, size_t idlen, enum rc_reply reply,
		      struct rc_conn *c, uint32_t tag);

/*
 * True if a publish to topic (hash) must be refused to bound the outboxes: the owner's
 * outboxes, or this shard's towards the owner, hold outbox_items_max items (the owner's read
 * racily). Refusing at the entry keeps what was sequenced deliverable. Counted. Any thread
 * (s NULL: a foreign thread).
 */
bool rc_pubsub_busy(struct rc_shard *s, struct rc_app *app, uint64_t hash);

/*
 * Checks s's pub/sub state: every subscription linked in its topic and its connection,
 * subscriber and deflate counts, the owned topics' shard masks and counts, the tables. For
 * tests and RC_DASSERT; O(subscriptions + connections + topics). Shard s's thread.
 */
bool rc_pubsub_validate(const struct rc_shard *s);

#endif
