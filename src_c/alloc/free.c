/* hak_free: the free path.
 *
 * Pointer -> slab is the registry load plus the superslab's unit map: no
 * syscall, no search, and a pointer outside every registered superslab is
 * never dereferenced. USER -> BASE happens here and only here, and only for
 * slabs that ever handed out an aligned interior pointer. The owner pushes the
 * block onto its thread cache; anyone else pushes it onto the slab's remote
 * list. */
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
    if (hak_large_free(ptr))
        return;
    hak_report_misuse("free of a pointer hakmem does not own", ptr);
}

HAK_API void hak_free(void *ptr)
{
    if (HAK_UNLIKELY(!hak_registered((uintptr_t)ptr))) {
        free_not_in_slab(ptr);
        return;
    }
    struct hak_slab *slab = hak_slab_in(hak_superslab_at((uintptr_t)ptr), ptr);
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
    if (HAK_LIKELY(atomic_load_explicit(&slab->owner, memory_order_relaxed) == heap)) {
        struct hak_tcache *tc = &heap->tc[slab->size_class];
        void **top = tc->top;
        if (HAK_LIKELY(top != tc->end)) {
            *top = base;
            tc->top = top + 1;
            return;
        }
        hak_tcache_push_full(heap, slab->size_class, base);
        return;
    }
    hak_remote_push(slab, base);
}
