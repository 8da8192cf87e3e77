/* Remote free: a block freed by a thread that does not own its slab.
 *
 * Each slab has a lock-free multi-producer single-consumer stack. Producers
 * push one block at a time with a CAS; the owner takes the whole stack with
 * one exchange and moves it to its local free list, so there is no pop and no
 * ABA. The block stays counted in `used` until the owner drains it.
 *
 * remote_pending is incremented BEFORE the block is published: once published
 * the owner may drain it, find the slab empty and hand the slab back to the
 * pool, so the push must be the pusher's last touch of the slab.
 */
#include "internal.h"

void hak_remote_push(struct hak_slab *slab, void *block)
{
    atomic_fetch_add_explicit(&slab->remote_pending, 1, memory_order_relaxed);
    if (HAK_INJECT_REMOTE_PLAIN_PUSH) {
        void **plain = (void **)&slab->remote_head;
        hak_next_set(block, *plain);
        *plain = block;
        return;
    }
    void *head = atomic_load_explicit(&slab->remote_head, memory_order_relaxed);
    do {
        hak_next_set(block, head);
    } while (!atomic_compare_exchange_weak_explicit(&slab->remote_head, &head, block,
                                                    memory_order_release,
                                                    memory_order_relaxed));
}

/* Owner only. Moves every pending remote block to the local free list and
 * returns how many. */
uint32_t hak_remote_drain(struct hak_slab *slab)
{
    void *head = atomic_exchange_explicit(&slab->remote_head, NULL, memory_order_acquire);
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
    if (!HAK_INJECT_DRAIN_COUNTER)
        atomic_fetch_sub_explicit(&slab->remote_pending, n, memory_order_relaxed);
    hak_slab_put_chain(slab, head, tail, n);
    return n;
}
