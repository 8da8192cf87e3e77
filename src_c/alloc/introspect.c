/* The introspection API (hakmem_debug.h), except the heap walk (heap_check.c).
 * Present in every build variant; nothing here is on a fast path. */
#include <string.h>

#include "internal.h"

HAK_API const char *hak_build_variant(void)
{
    return HAK_VARIANT_NAME;
}

HAK_API const char *hak_injected_bug(void)
{
    return HAK_INJECT_NAME;
}

/* Where a carved block is: on a cache, a free list, a remote list, or live.
 * Caller holds the heap lock. */
static int carved_state(const struct hak_slab *slab, uintptr_t base)
{
    for (struct hak_heap *h = hak_heaps; h; h = h->next)
        if (hak_tcache_holds(&h->tc[slab->size_class], (void *)base))
            return HAK_STATE_THREAD_CACHE;
    if (hak_chain_holds(slab->free, (void *)base, slab->free_len))
        return HAK_STATE_SLAB_FREE;
    void *remote = hak_remote_word_head(
        atomic_load_explicit(&((struct hak_slab *)slab)->remote, memory_order_acquire));
    if (hak_chain_holds(remote, (void *)base, slab->capacity))
        return HAK_STATE_REMOTE;
    return HAK_STATE_LIVE;
}

static int slab_block_info(struct hak_superslab *ss, uintptr_t p, struct hak_block_info *out,
                           unsigned flags)
{
    struct hak_slab *slab = hak_slab_in(ss, (void *)p);
    if (!slab || p >= slab->start + (uintptr_t)slab->capacity * slab->block_size) {
        out->region = HAK_REGION_TINY;
        out->state = HAK_STATE_INTERIOR;
        out->size_class = -2;
        return out->region;
    }
    struct hak_heap *owner = atomic_load_explicit(&slab->owner, memory_order_acquire);
    uintptr_t base = hak_user_to_base(slab, p);
    out->region = slab->size_class < HAK_TINY_CLASSES ? HAK_REGION_TINY : HAK_REGION_MID;
    out->size_class = slab->size_class;
    out->base = base;
    out->slab_start = slab->start;
    out->block_size = slab->block_size;
    out->usable_size = hak_usable_size((void *)p);
    out->owner = owner ? owner->serial : 0;
    out->block_index = hak_block_index(slab, base);
    if (out->block_index >= __atomic_load_n(&slab->carved, __ATOMIC_RELAXED))
        out->state = HAK_STATE_UNCARVED;
    else if (flags & HAK_INFO_STATE)
        out->state = carved_state(slab, hak_block_base(slab, p));
    else
        out->state = HAK_STATE_LIVE;
    return out->region;
}

HAK_API int hak_block_info(const void *ptr, struct hak_block_info *out, unsigned flags)
{
    memset(out, 0, sizeof *out);
    uintptr_t p = (uintptr_t)ptr;
    out->user = p;
    out->size_class = HAK_CLASS_LARGE;
    struct hak_superslab *ss = hak_superslab_of(ptr);
    if (ss) {
        hak_heaps_lock();
        int region = slab_block_info(ss, p, out, flags);
        hak_heaps_unlock();
        return region;
    }
    uintptr_t map_base;
    size_t map_size;
    if (ptr && hak_large_info(ptr, &map_base, &map_size)) {
        out->region = HAK_REGION_LARGE;
        out->state = HAK_STATE_LIVE;
        out->base = map_base;
        out->slab_start = map_base;
        out->block_size = map_size;
        out->usable_size = map_base + map_size - p;
        return out->region;
    }
    out->region = HAK_REGION_NOT_OURS;
    out->state = HAK_STATE_NOT_OURS;
    return 0;
}

HAK_API void hak_counters_snapshot(struct hak_counters *out)
{
    memset(out, 0, sizeof *out);
    for (int c = 0; c < HAK_CLASSES; c++)
        out->cls[c].block_size = hak_class_size[c];
    hak_heaps_lock();
    for (struct hak_heap *h = hak_heaps; h; h = h->next) {
        out->heaps++;
        for (int c = 0; c < HAK_CLASSES; c++)
            out->cls[c].thread_cached += hak_tcache_count(&h->tc[c]);
    }
    hak_pool_lock();
    for (struct hak_superslab *ss = hak_superslabs; ss; ss = ss->next) {
        out->superslab_active += atomic_load_explicit(&ss->active, memory_order_relaxed);
        for (unsigned u = HAK_FIRST_UNIT; u < HAK_UNITS; u++) {
            struct hak_slab *slab = &hak_ss_slabs(ss)[u];
            if (ss->unit_slab[u] != u || !slab->units)
                continue;
            struct hak_class_counters *k = &out->cls[slab->size_class];
            k->slabs++;
            k->capacity += slab->capacity;
            k->carved += slab->carved;
            k->used += slab->used;
            k->free_list += slab->free_len;
            k->remote_pending += hak_remote_pending(slab);
        }
    }
    hak_pool_stats(&out->superslabs, &out->superslabs_cached, &out->dirty_units);
    hak_pool_unlock();
    hak_heaps_unlock();
    out->abandoned_slabs = hak_abandoned_count();
    hak_large_stats(&out->large_live, &out->large_bytes, &out->large_cached);
    hak_os_stats(&out->os_mapped, &out->os_maps);
    for (int c = 0; c < HAK_CLASSES; c++) {
        struct hak_class_counters *k = &out->cls[c];
        k->live = k->used - k->remote_pending - k->thread_cached;
        out->live_total += k->live;
    }
    out->live_total += out->large_live;
}

HAK_API void hak_flush_thread(void)
{
    struct hak_heap *heap = hak_heap_get();
    if (heap)
        hak_heap_flush_all(heap);
}
