/*
 * The MPSC ring of mpsc.h: slot sequence numbers, the producers' claim loop, the consumer's
 * batch pop and the sleep/wake flag. Owns the slot array; does not own the items, which are
 * opaque pointers passed from producer to consumer. Producers: any thread. Consumer: the
 * one thread that owns the ring (a shard).
 *
 * Why not Concurrency Kit's ck_ring_enqueue_mpsc (libck-dev 0.7.1)? After claiming a
 * position with a CAS, a ck producer spins until every earlier producer has committed
 * (`while (p_tail != producer) ck_pr_stall()`), so one producer preempted between claim and
 * commit stalls all the others: a shard thread could spin on a foreign publisher's time
 * slice. ck also keeps one slot empty (a ring of 8 holds 7) and has no batch dequeue. Here
 * each slot has its own sequence number, so producers never wait for one another.
 *
 * Positions are 64-bit and never wrap in practice (2^64 pushes), so a slot's sequence
 * number is unambiguous: comparisons need no modular arithmetic beyond a signed difference.
 */
#include "mpsc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/rc_assert.h"

/* Bytes between the end of field a and the start of field b of struct rc_mpsc. */
#define GAP(a, b)                                                                                  \
	(offsetof(struct rc_mpsc, b) - offsetof(struct rc_mpsc, a) -                               \
	 sizeof(((struct rc_mpsc *)0)->a))

RC_STATIC_ASSERT(sizeof(struct rc_mpsc_slot) == 16, "four slots per cache line");
RC_STATIC_ASSERT((uint64_t)RC_MPSC_CAPACITY_LIMIT * sizeof(struct rc_mpsc_slot) <= SIZE_MAX,
		 "the slot array size fits size_t");
RC_STATIC_ASSERT(offsetof(struct rc_mpsc, slots) >= RC_CACHELINE, "apart from what precedes");
RC_STATIC_ASSERT(GAP(capacity, tail) >= RC_CACHELINE, "tail apart from the read-only fields");
RC_STATIC_ASSERT(GAP(tail, head) >= RC_CACHELINE, "consumer's head apart from producers' tail");
RC_STATIC_ASSERT(GAP(head, sleeping) >= RC_CACHELINE, "sleep flag apart from the head");
RC_STATIC_ASSERT(sizeof(struct rc_mpsc) - offsetof(struct rc_mpsc, sleeping) - sizeof(uint32_t) >=
			 RC_CACHELINE,
		 "apart from what follows");

int rc_mpsc_init(struct rc_mpsc *q, uint32_t capacity)
{
	void *mem = NULL;

	RC_ASSERT(q != NULL);
	/* Capacity 1 cannot work: "published pos" (pos + 1) would equal "free for pos + 1". */
	if (capacity < 2 || capacity > RC_MPSC_CAPACITY_LIMIT || !rc_is_pow2(capacity))
		return -EINVAL;
	/* Line-aligned, so a slot never straddles two lines and four slots share one. */
	if (posix_memalign(&mem, RC_CACHELINE, (size_t)capacity * sizeof(struct rc_mpsc_slot)))
		return -ENOMEM;
	memset(q, 0, sizeof(*q));
	q->slots = mem;
	q->mask = capacity - 1;
	q->capacity = capacity;
	for (uint32_t i = 0; i < capacity; i++) {
		atomic_init(&q->slots[i].seq, i);
		q->slots[i].item = NULL;
	}
	atomic_init(&q->tail, 0);
	q->head = 0;
	atomic_init(&q->sleeping, 0);
	RC_DASSERT(rc_mpsc_validate(q));
	return 0;
}

void rc_mpsc_free(struct rc_mpsc *q)
{
	RC_ASSERT(q != NULL);
	RC_ASSERT(q->slots != NULL);
	free(q->slots);
	q->slots = NULL;
	q->capacity = 0;
	q->mask = 0;
}

bool rc_mpsc_push(struct rc_mpsc *q, void *item)
{
	struct rc_mpsc_slot *slot;
	uint64_t pos, seq;

	RC_ASSERT(item != NULL);
	RC_DASSERT(q->slots != NULL);
	/* Relaxed: tail is only where to try first; the CAS below decides who owns pos. */
	pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	for (;;) {
		int64_t diff;

		slot = &q->slots[pos & q->mask];
		/*
		 * Acquire, pairs with the consumer's release store of pos + capacity in
		 * rc_mpsc_pop(): its read of the previous lap's item happens before we
		 * overwrite the slot below.
		 */
		seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
		diff = (int64_t)(seq - pos);
		if (diff == 0) {
			/*
			 * Relaxed CAS on tail, pairs with the other producers' CAS: it only
			 * elects the producer of pos; the slot's seq carries the ordering the
			 * consumer needs. On failure pos is reloaded with the current tail.
			 */
			if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
		} else if (diff < 0) {
			/* The previous lap's item at this slot is not consumed: full. */
			return false;
		} else {
			/* Another producer took pos meanwhile: catch up (relaxed, as above). */
			pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
		}
	}
	slot->item = item;
	/* Release, pairs with the acquire load in rc_mpsc_pop(): item is visible first. */
	atomic_store_explicit(&slot->seq, pos + 1, memory_order_release);
	return true;
}

uint32_t rc_mpsc_pop(struct rc_mpsc *q, void **out, uint32_t max)
{
	uint64_t pos = q->head;
	uint32_t n = 0;

	RC_ASSERT(out != NULL || max == 0);
	RC_DASSERT(q->slots != NULL);
	while (n < max) {
		struct rc_mpsc_slot *slot = &q->slots[pos & q->mask];

		/*
		 * Acquire, pairs with the producer's release store of pos + 1 in
		 * rc_mpsc_push(): the item it wrote is visible once we see that seq.
		 * Anything else (pos: empty, or claimed and still being written) ends the
		 * batch; the rest waits for a later call.
		 */
		if (atomic_load_explicit(&slot->seq, memory_order_acquire) != pos + 1)
			break;
		out[n++] = slot->item;
		/*
		 * Release, pairs with the acquire load in rc_mpsc_push(): our read of item
		 * happens before the next lap's producer overwrites it.
		 */
		atomic_store_explicit(&slot->seq, pos + q->capacity, memory_order_release);
		pos++;
	}
	q->head = pos;
	RC_ASSERT(n <= max);
	return n;
}

/* True if every slot's seq fits the live state: for pos in [head, head + cap), pos or pos+1. */
static bool slots_consistent(const struct rc_mpsc *q, uint64_t head)
{
	for (uint64_t pos = head; pos < head + q->capacity; pos++) {
		/* Acquire, pairs with either side's release store of this slot's seq. */
		uint64_t seq = atomic_load_explicit(&q->slots[pos & q->mask].seq,
						    memory_order_acquire);

		if (seq != pos && seq != pos + 1)
			return false;
	}
	return true;
}

/* True if no position at or past tail was published: what holds when producers are quiet. */
static bool slots_quiet(const struct rc_mpsc *q, uint64_t head, uint64_t tail)
{
	for (uint64_t pos = tail; pos < head + q->capacity; pos++) {
		/* Acquire, as in slots_consistent(). */
		uint64_t seq = atomic_load_explicit(&q->slots[pos & q->mask].seq,
						    memory_order_acquire);

		if (seq != pos)
			return false;
	}
	return true;
}

bool rc_mpsc_validate(const struct rc_mpsc *q)
{
	uint64_t head = q->head, tail;
	bool quiet;

	if (q->slots == NULL || q->capacity < 2 || q->capacity > RC_MPSC_CAPACITY_LIMIT)
		return false;
	if (!rc_is_pow2(q->capacity) || q->mask != q->capacity - 1)
		return false;
	/* Relaxed: a snapshot of a counter that only grows; no data is read through it. */
	tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (tail < head || tail - head > q->capacity)
		return false;
	/* Relaxed: a value check only; the flag orders nothing here. */
	if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) > 1)
		return false;
	if (!slots_consistent(q, head))
		return false;
	/*
	 * Positions at or past the snapshot of tail must still be free unless a producer
	 * claimed one meanwhile. Publishing needs a claim that moves tail first, and our
	 * acquire loads of the slots make that claim happen before the reload below, so a
	 * reload that still equals the snapshot proves no producer interfered.
	 */
	quiet = slots_quiet(q, head, tail);
	/* Relaxed, as above; coherence with the claim is what the argument needs. */
	return quiet || atomic_load_explicit(&q->tail, memory_order_relaxed) != tail;
}

/*
 * The sleep/wake protocol is Dekker's pattern with two seq_cst fences:
 *
 *   consumer: sleeping = 1;  fence;  look at slot[head].seq   (prepare, then cancel)
 *   producer: slot.seq = pos + 1;  fence;  look at sleeping   (push, then wake_needed)
 *
 * The fences are totally ordered, so at least one side sees the other's store: either the
 * consumer finds the item and does not sleep, or the producer finds sleeping == 1 and one
 * producer (the one whose exchange returns 1) rings. A consumer that sleeps while slot[head]
 * is claimed but not yet published is safe too: that slot's producer publishes after the
 * consumer's fence and so sees the flag. Flag stores and loads themselves may be relaxed:
 * the fences give the ordering, and the items are published through the slots' seq.
 */
void rc_mpsc_sleep_prepare(struct rc_mpsc *q)
{
	/* Relaxed store, ordered before the re-check by the fence that follows. */
	atomic_store_explicit(&q->sleeping, 1, memory_order_relaxed);
	/* seq_cst fence, pairs with the fence in rc_mpsc_wake_needed(). */
	atomic_thread_fence(memory_order_seq_cst);
}

bool rc_mpsc_sleep_cancel(struct rc_mpsc *q)
{
	const struct rc_mpsc_slot *slot = &q->slots[q->head & q->mask];

	/*
	 * Acquire, after the fence of rc_mpsc_sleep_prepare(): pairs with the producer's
	 * release store in rc_mpsc_push() (and, through the fences, with its wake check).
	 */
	if (atomic_load_explicit(&slot->seq, memory_order_acquire) != q->head + 1)
		return false;
	/* Relaxed: a producer that misses this store only rings once more, harmlessly. */
	atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
	return true;
}

void rc_mpsc_sleep_end(struct rc_mpsc *q)
{
	/* Relaxed, as in rc_mpsc_sleep_cancel(): only saves doorbells, never loses one. */
	atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
}

bool rc_mpsc_wake_needed(struct rc_mpsc *q)
{
	/* seq_cst fence, pairs with the fence in rc_mpsc_sleep_prepare(): see the comment above. */
	atomic_thread_fence(memory_order_seq_cst);
	/*
	 * Relaxed load first, so an awake consumer's line stays shared in every producer's
	 * cache; relaxed exchange, pairs with the other producers' exchanges and the
	 * consumer's stores: it only elects the single producer that rings.
	 */
	if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) == 0)
		return false;
	return atomic_exchange_explicit(&q->sleeping, 0, memory_order_relaxed) == 1;
}
