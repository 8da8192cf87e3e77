/* One slab: its bump region, its local free list, and the batch moves between
 * the slab and a thread cache. Owner thread only.
 *
 * Every move keeps the identities written in internal.h: a block leaving the
 * slab (free list or bump region) adds to `used` and to its superslab's
 * `active` in the same batch; a chain coming back subtracts from both.
 */
#include "internal.h"

void hak_slab_format(struct hak_slab *slab, struct hak_superslab *ss, unsigned first_unit,
                     unsigned units, int size_class)
{
    /* Block 0 at the first unit's start (never a header unit), so a class
     * has the same layout in every slab. */
    uintptr_t start = (uintptr_t)ss + ((uintptr_t)first_unit << HAK_UNIT_SHIFT);
    uint32_t bs = hak_class_size[size_class];
    slab->free = NULL;
    slab->free_len = 0;
    slab->used = 0;
    slab->carved = 0;
    slab->capacity = (uint32_t)(((uintptr_t)units << HAK_UNIT_SHIFT) / bs);
    slab->block_size = bs;
    slab->start = start;
    slab->div_mul = (((uint64_t)1 << 40) / bs) + 1;
    slab->size_class = (uint16_t)size_class;
    slab->units = (uint8_t)units;
    atomic_store_explicit(&slab->has_aligned, 0, memory_order_relaxed);
    slab->full = false;
    atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
    atomic_store_explicit(&slab->remote, 0, memory_order_relaxed);
    slab->next = slab->prev = NULL;
    slab->ss = ss;
}

/* Cuts up to `want` never-used blocks from the bump region into out[],
 * lowest address last (a thread cache pops it first). The blocks themselves
 * are not touched: their pages stay untouched until the caller writes. */
static uint32_t carve(struct hak_slab *slab, uint32_t want, void **out)
{
    uint32_t n = slab->capacity - slab->carved;
    if (n > want)
        n = want;
    uintptr_t block = slab->start + (uintptr_t)(slab->carved + n) * slab->block_size;
    for (uint32_t i = 0; i < n; i++) {
        block -= slab->block_size;
        out[i] = (void *)block;
    }
    /* A relaxed atomic store (a plain store on every target): hak_block_info reads
     * `carved` from other threads without the owner's lock (the white-box check of a
     * remote free); the value only grows, so any value it reads is a right answer
     * for a block it was handed. */
    __atomic_store_n(&slab->carved, slab->carved + n, __ATOMIC_RELAXED);
    return n;
}

/* Moves up to `want` blocks off the local free list into out[]. */
static uint32_t take_free(struct hak_slab *slab, uint32_t want, void **out)
{
    void *block = slab->free;
    uint32_t n = 0;
    while (block && n < want) {
        out[n++] = block;
        block = hak_next_get(block);
    }
    slab->free = block;
    slab->free_len -= n;
    return n;
}

/* Takes up to `want` blocks for a thread cache into out[0..n): free list
 * first (after draining remote frees into it when it is empty), then the bump
 * region. Returns n. */
uint32_t hak_slab_take(struct hak_slab *slab, uint32_t want, void **out)
{
    if (!slab->free && hak_remote_pending(slab))
        hak_remote_drain(slab);
    uint32_t from_free = take_free(slab, want, out);
    uint32_t n = from_free + carve(slab, want - from_free, out + from_free);
    slab->used += HAK_INJECT_MISSING_USED_ADD ? n - from_free : n;
    atomic_fetch_add_explicit(&slab->ss->active, n, memory_order_relaxed);
    return n;
}

/* Returns a linked chain of n blocks of this slab to its local free list. */
void hak_slab_put_chain(struct hak_slab *slab, void *head, void *tail, uint32_t n)
{
    hak_next_set(tail, slab->free);
    slab->free = head;
    slab->free_len += n;
    slab->used -= n;
    atomic_fetch_sub_explicit(&slab->ss->active, n, memory_order_relaxed);
}

/* The key hak_free() finds for every unit of this slab (internal.h). */
uint32_t hak_slab_key(const struct hak_slab *slab)
{
    struct hak_heap *owner = atomic_load_explicit(&slab->owner, memory_order_relaxed);
    uint32_t key = owner ? (uint32_t)owner->free_key : 0;
    if (key == UINT32_MAX)
        key = HAK_KEY_SLOW; /* an owner without an id: its frees take the slow path */
    if (atomic_load_explicit(&slab->has_aligned, memory_order_relaxed))
        key |= HAK_KEY_SLOW;
    return key | (uint32_t)(slab->size_class * sizeof(struct hak_tcache));
}

void hak_slab_publish(struct hak_slab *slab)
{
    unsigned first = (unsigned)(slab - hak_ss_slabs(slab->ss));
    uint32_t key = hak_slab_key(slab);
    for (unsigned u = first; u < first + slab->units; u++)
        atomic_store_explicit(&hak_ss_keys(slab->ss)[u], key, memory_order_relaxed);
}
