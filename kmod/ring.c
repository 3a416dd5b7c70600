// SPDX-License-Identifier: GPL-2.0
/*
 * The record ring: one buffer, records reserved in order by any CPU, filled
 * outside the lock, committed, and read in order through /dev/gpugate. A
 * reader stops at the first record not yet committed, so records always
 * leave in the order they were reserved (the order of their kernel seq).
 *
 * Each slot is an 8-byte header (length, committed flag) and the record,
 * padded to 8 bytes. A slot never wraps: where the space left before the
 * end is too short, a pad slot fills it.
 */
#include <linux/irq_work.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "gpugate.h"

#define GG_SLOT_COMMITTED 0x80000000u
#define GG_SLOT_PAD	  0x40000000u
#define GG_SLOT_LEN	  0x00ffffffu
/* wake the reader once this much is queued; below it the reader polls */
#define GG_RING_WAKE	  (512 * 1024)

struct gg_slot {
	u32 word; /* length of the record | GG_SLOT_* */
	u32 pad;
};

static struct {
	u8 *buf;
	u64 size; /* a power of two */
	u64 head; /* next byte to reserve (monotonic) */
	u64 tail; /* next byte to read (monotonic) */
	raw_spinlock_t lock;
	struct irq_work wake;
} gg_ring;

DECLARE_WAIT_QUEUE_HEAD(gg_ring_wait);

static void gg_ring_wake(struct irq_work *w)
{
	wake_up_interruptible(&gg_ring_wait);
}

int gg_ring_init(size_t bytes)
{
	gg_ring.size = roundup_pow_of_two(max_t(size_t, bytes, 64 * 1024));
	gg_ring.buf = vzalloc(gg_ring.size);
	if (!gg_ring.buf)
		return -ENOMEM;
	raw_spin_lock_init(&gg_ring.lock);
	init_irq_work(&gg_ring.wake, gg_ring_wake);
	return 0;
}

void gg_ring_exit(void)
{
	irq_work_sync(&gg_ring.wake);
	vfree(gg_ring.buf);
	gg_ring.buf = NULL;
}

u64 gg_ring_size(void)
{
	return gg_ring.size;
}

u64 gg_ring_used(void)
{
	return READ_ONCE(gg_ring.head) - READ_ONCE(gg_ring.tail);
}

static struct gg_slot *gg_slot_at(u64 pos)
{
	return (struct gg_slot *)(gg_ring.buf + (pos & (gg_ring.size - 1)));
}

/* Room for size bytes of record, or NULL when the ring is full. */
void *gg_ring_reserve(u32 size)
{
	u64 need = sizeof(struct gg_slot) + ALIGN(size, 8), head, to_end, used;
	struct gg_slot *slot, *pad = NULL;
	unsigned long flags;

	raw_spin_lock_irqsave(&gg_ring.lock, flags);
	head = gg_ring.head;
	to_end = gg_ring.size - (head & (gg_ring.size - 1));
	if (to_end < need) {
		pad = gg_slot_at(head);
		head += to_end;
	}
	if (head + need - READ_ONCE(gg_ring.tail) > gg_ring.size) {
		raw_spin_unlock_irqrestore(&gg_ring.lock, flags);
		return NULL;
	}
	if (pad) {
		u32 word = GG_SLOT_COMMITTED | GG_SLOT_PAD | (u32)(to_end - sizeof(struct gg_slot));

		/* a pad slot is committed at once, its length with it */
		smp_store_release(&pad->word, word);
	}
	slot = gg_slot_at(head);
	slot->word = size;
	gg_ring.head = head + need;
	used = gg_ring.head - READ_ONCE(gg_ring.tail);
	raw_spin_unlock_irqrestore(&gg_ring.lock, flags);
	if (used >= GG_RING_WAKE && used - need < GG_RING_WAKE)
		irq_work_queue(&gg_ring.wake);
	return slot + 1;
}

void gg_ring_commit(void *rec)
{
	struct gg_slot *slot = (struct gg_slot *)rec - 1;

	/* the record's bytes before the flag that lets the reader copy them */
	smp_store_release(&slot->word, slot->word | GG_SLOT_COMMITTED);
}

/*
 * Whole committed records, oldest first, as many as fit in len. The reader
 * is serialized by the caller (one owner reads).
 */
ssize_t gg_ring_read(char __user *buf, size_t len)
{
	/* pairs with the writers' update of head under the lock */
	u64 tail = gg_ring.tail, head = smp_load_acquire(&gg_ring.head);
	size_t done = 0;

	while (tail < head) {
		struct gg_slot *slot = gg_slot_at(tail);
		/* pairs with gg_ring_commit: the flag, then the bytes */
		u32 word = smp_load_acquire(&slot->word);
		u32 n = word & GG_SLOT_LEN;

		if (!(word & GG_SLOT_COMMITTED))
			break;
		if (!(word & GG_SLOT_PAD)) {
			if (done + n > len) {
				if (!done)
					return -EMSGSIZE; /* not even the oldest record fits */
				break;
			}
			if (copy_to_user(buf + done, slot + 1, n)) {
				if (!done)
					return -EFAULT;
				break;
			}
			done += n;
		}
		slot->word = 0;
		tail += sizeof(*slot) + ALIGN(n, 8);
		/* the slot is read before writers may reuse its space */
		smp_store_release(&gg_ring.tail, tail);
	}
	return done;
}
