/* hak_free: the free path.
 *
 * Pointer -> slab is the registry load plus the superslab's unit keys: no
 * syscall, no search, and a pointer outside every registered superslab is
 * never dereferenced. The owner of a plain slab finds everything it needs in
 * the unit's key (internal.h) and pushes the block onto its thread cache
 * without reading the slab descriptor. Everything else takes the slow path:
 * USER -> BASE, which happens here and only here, and only for slabs that ever
 * handed out an aligned interior pointer; the owner's push, or anyone else's
 * push onto the slab's remote list; debug checks (debug builds take the slow
 * path for every free). */
#include "internal.h"

#if HAK_DEBUG
/* Debug builds: a double free or an interior pointer is reported, never
 * absorbed. Linear scans: debug builds trade speed for a precise report. */
static void check_free(struct hak_slab *slab, void *user, void *base)
{
    struct hak_heap *heap = hak_tl_heap;
    uintptr_t start = hak_block_base(slab, (uintptr_t)user);
    if ((uintptr_t)user != start && !atomic_load_explicit(&slab->has_aligned, memory_order_relaxed))
        hak_report_misuse("free of a pointer inside a block", user);
    if (hak_block_index(slab, (uintptr_t)base) >= slab->carved)
        hak_report_misuse("free of a never-allocated block", user);
    if (atomic_load_explicit(&slab->owner, memory_order_relaxed) != heap)
        return;
    if (hak_tcache_holds(&heap->tc[slab->size_class], base) ||
        hak_chain_holds(slab->free, base, slab->free_len))
        hak_report_misuse("double free", user);
}
#endif

static void free_not_in_slab(void *ptr)
{
    if (!ptr)
        return;
    if (HAK_INJECT_GUESS_FOREIGN) {
        struct hak_superslab *guess = hak_superslab_at((uintptr_t)ptr);
        if (*(volatile uint64_t *)&guess->magic == HAK_SS_MAGIC)
            return;
    }
    if (hak_large_free(ptr)) {
        hak_purge_kick();
        return;
    }
    hak_report_misuse("free of a pointer hakmem does not own", ptr);
}

HAK_API void hak_free(void *ptr)
{
    if (HAK_LIKELY(hak_free_fast(ptr)))
        return;
    hak_free_slow(ptr);
}

/* Every free hak_free_fast turned down. An entry of its own so that the
 * drop-in's free, whose inline fast path has just failed, does not run it a
 * second time (18 instructions of every remote free). */
__attribute__((noinline)) void hak_free_slow(void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    if (HAK_UNLIKELY(!hak_registered(a))) {
        free_not_in_slab(ptr);
        return;
    }
    struct hak_slab *slab = hak_slab_in(hak_superslab_at(a), ptr);
    if (HAK_UNLIKELY(!slab)) {
        hak_report_misuse("free of an address outside any block", ptr);
        return;
    }
    void *base = (void *)hak_user_to_base(slab, (uintptr_t)ptr);
    if (HAK_INJECT_DOUBLE_CONVERSION)
        base = (uint8_t *)base - ((uint8_t *)ptr - (uint8_t *)base);
#if HAK_DEBUG
    check_free(slab, ptr, base);
#endif
    hak_poison(base, slab->block_size);
    struct hak_heap *heap = hak_tl_heap;
    hak_sync(HAK_SYNC_OWNER, slab);
    if (atomic_load_explicit(&slab->owner, memory_order_relaxed) == heap) {
        hak_cache_push(heap, &heap->tc[slab->size_class], base);
        return;
    }
    hak_remote_push(slab, base);
}
