/* Remote free: a block freed by a thread that does not own its slab.
 *
 * Each slab has a lock-free multi-producer single-consumer stack. Producers
 * push one block at a time with a CAS; the owner takes the whole stack with
 * one exchange and moves it to its local free list, so there is no pop and no
 * ABA. The block stays counted in `used` until the owner drains it.
 *
 * The stack's length (remote_pending) lives in the top 16 bits of the same
 * word as its head (internal.h), so the push's CAS is at once the count's
 * increment and the block's publication, and the drain's exchange takes both
 * back: no instant, a fork() included, sees the count disagree with the list.
 * The CAS is the pusher's last touch of the slab (once published, the owner
 * may drain the block, find the slab empty and hand it back to the pool).
 */
#include "internal.h"

void hak_remote_push(struct hak_slab *slab, void *block)
{
    const uintptr_t one = (uintptr_t)1 << HAK_REMOTE_COUNT_SHIFT;
    if (HAK_INJECT_REMOTE_PLAIN_PUSH) {
        /* The seeded bug keeps the real code's points (syncpoint.h): a load, then
         * a store where the CAS was. */
        uintptr_t *plain = (uintptr_t *)&slab->remote;
        hak_sync(HAK_SYNC_REMOTE_LOAD, slab);
        uintptr_t old = *plain;
        hak_next_set(block, hak_remote_word_head(old));
        hak_sync(HAK_SYNC_REMOTE_PUSH, slab);
        *plain = ((old & ~HAK_REMOTE_PTR_MASK) + one) | (uintptr_t)block;
        return;
    }
    hak_sync(HAK_SYNC_REMOTE_LOAD, slab);
    uintptr_t word = atomic_load_explicit(&slab->remote, memory_order_relaxed);
    do {
        hak_next_set(block, hak_remote_word_head(word));
        hak_sync(HAK_SYNC_REMOTE_PUSH, slab);
    } while (!atomic_compare_exchange_weak_explicit(
        &slab->remote, &word, (word & ~HAK_REMOTE_PTR_MASK) + one + (uintptr_t)block,
        memory_order_release, memory_order_relaxed));
    /* The slab's first pending block: if its owner stays idle, the purge
     * drains it (purge.c). Only globals are touched after the CAS, and no lock
     * is held here (hak_free is the only caller), so the purge thread may be
     * kicked. */
    if (HAK_UNLIKELY(!word)) {
        hak_purge_note();
        hak_purge_kick();
    }
}

/* Takes the whole remote list (its count goes with it). */
static uintptr_t take_all(struct hak_slab *slab)
{
    hak_sync(HAK_SYNC_REMOTE_TAKE, slab);
    if (!HAK_INJECT_DRAIN_COUNTER)
        return atomic_exchange_explicit(&slab->remote, 0, memory_order_acquire);
    /* The seeded bug: the list goes, its count stays. */
    uintptr_t word = atomic_load_explicit(&slab->remote, memory_order_relaxed);
    while (hak_remote_word_head(word) &&
           !atomic_compare_exchange_weak_explicit(&slab->remote, &word,
                                                  word & ~HAK_REMOTE_PTR_MASK,
                                                  memory_order_acquire, memory_order_relaxed))
        ;
    return word;
}

/* Owner only (or whoever holds the slab exclusively: its owner heap's lock,
 * or an abandoned slab taken off its list). Moves every pending remote block
 * to the local free list and returns how many. */
uint32_t hak_remote_drain(struct hak_slab *slab)
{
    void *head = hak_remote_word_head(take_all(slab));
    if (!head)
        return 0;
    uint32_t n = 1;
    void *tail = head;
    for (void *next; (next = hak_next_get(tail)) != NULL; tail = next) {
        if (HAK_UNLIKELY(n == slab->capacity)) {
            /* More blocks than the slab has: a block was freed twice and the
             * list loops. Cut it rather than spin forever. */
            hak_report_misuse("remote-free list longer than its slab (double free)", next);
            hak_next_set(tail, NULL);
            break;
        }
        n++;
    }
    hak_slab_put_chain(slab, head, tail, n);
    return n;
}
