/* Thread heaps: per-thread caches, the slabs a thread owns, and what happens
 * to them when the thread exits.
 *
 * A heap owns slabs per class on two lists: `partial` (may have free blocks;
 * its head is where refills go first) and `full` (had none at last look; a
 * remote free may have refilled it since, so refill rescans it before asking
 * the pool for a new slab). Thread caches hold only blocks of owned slabs.
 *
 * A thread that exits flushes its caches, drains its remote lists, returns
 * empty slabs to the pool and leaves the rest on the abandoned lists; the next
 * thread that needs a slab of that class adopts them. Nothing is leaked and no
 * slab ever has two owners.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

HAK_TLS struct hak_heap *hak_tl_heap = &hak_heap_empty;
struct hak_heap hak_heap_empty = {.free_key = UINT32_MAX};
struct hak_heap *hak_heaps;

/* heap lock */
static struct hak_heap *free_heaps;
static uint8_t *heap_arena;
static size_t heap_arena_left;
static uint64_t heap_serial;
static uint32_t heap_ids;
static struct hak_slab_list abandoned[HAK_CLASSES];
static _Atomic uint64_t abandoned_count;

/* Four heaps per mapping: a heap is ~60 KiB, mostly cache slots, whose pages
 * are touched only as they are used. */
enum { HEAP_ARENA_BYTES = 256 * 1024 };

/* A heap with its cache slots: every class's limit, summed. */
static size_t heap_bytes(void)
{
    size_t slots = 0;
    for (int c = 0; c < HAK_CLASSES; c++)
        slots += hak_class_tcache_limit[c];
    return (sizeof(struct hak_heap) + slots * sizeof(void *) + 63) & ~(size_t)63;
}

static struct hak_heap *heap_struct_alloc(void)
{
    if (free_heaps) {
        struct hak_heap *h = free_heaps;
        free_heaps = h->next;
        return h;
    }
    size_t sz = heap_bytes();
    if (heap_arena_left < sz) {
        heap_arena = hak_os_map(HEAP_ARENA_BYTES);
        if (!heap_arena)
            return NULL;
        heap_arena_left = HEAP_ARENA_BYTES;
    }
    struct hak_heap *h = (struct hak_heap *)heap_arena;
    heap_arena += sz;
    heap_arena_left -= sz;
    /* A heap keeps its id when recycled; id 0 means "no owner" in unit keys. */
    h->free_key = ++heap_ids < UINT16_MAX ? heap_ids << HAK_KEY_OWNER_SHIFT : UINT32_MAX;
    return h;
}

extern pthread_key_t hak_thread_key;

/* The calling thread's heap, created on first use. */
struct hak_heap *hak_heap_get(void)
{
    struct hak_heap *heap = hak_tl_heap;
    if (HAK_LIKELY(heap != &hak_heap_empty))
        return heap;
    hak_ensure_init();
    hak_heaps_lock();
    heap = heap_struct_alloc();
    if (heap) {
        uint32_t free_key = heap->free_key;
        memset(heap, 0, sizeof *heap);
        heap->free_key = free_key;
        void **slot = heap->slots;
        for (int c = 0; c < HAK_CLASSES; c++) {
            heap->tc[c].top = heap->tc[c].base = slot;
            slot += hak_class_tcache_limit[c];
            heap->tc[c].end = slot;
        }
        heap->serial = ++heap_serial;
        heap->next = hak_heaps;
        if (hak_heaps)
            hak_heaps->prev = heap;
        hak_heaps = heap;
    }
    hak_heaps_unlock();
    if (!heap)
        return NULL;
    hak_tl_heap = heap;
    pthread_setspecific(hak_thread_key, heap);
    return heap;
}

static void own_slab(struct hak_heap *heap, struct hak_slab *slab)
{
    atomic_store_explicit(&slab->owner, heap, memory_order_release);
    hak_slab_publish(slab);
    slab->full = false;
    hak_list_push(&heap->partial[slab->size_class], slab);
}

static void release_slab(struct hak_heap *heap, struct hak_slab *slab)
{
    hak_list_remove(slab->full ? &heap->full[slab->size_class] : &heap->partial[slab->size_class],
                    slab);
    hak_pool_return_slab(slab);
}

/* A slab of `heap` reached used == 0. Keep it when it is the class's only
 * partial slab (so alternating malloc/free does not bounce slabs through the
 * pool); otherwise hand it back. */
void hak_heap_slab_emptied(struct hak_heap *heap, struct hak_slab *slab)
{
    struct hak_slab *head = heap->partial[slab->size_class].head;
    if (!slab->full && head == slab && !slab->next)
        return;
    release_slab(heap, slab);
}

/* After blocks came back to a slab: move it off the full list, and release it
 * if it is now empty. */
static void slab_refilled(struct hak_heap *heap, struct hak_slab *slab)
{
    if (slab->full) {
        hak_list_remove(&heap->full[slab->size_class], slab);
        slab->full = false;
        hak_list_push(&heap->partial[slab->size_class], slab);
    }
    uint32_t held = HAK_INJECT_EAGER_RELEASE
                        ? atomic_load_explicit(&slab->remote_pending, memory_order_relaxed)
                        : 0;
    if (slab->used == held)
        hak_heap_slab_emptied(heap, slab);
}

/* Rescans full slabs for remote frees that arrived since they filled up. */
static struct hak_slab *reclaim_full(struct hak_heap *heap, int size_class)
{
    struct hak_slab *slab = heap->full[size_class].head;
    while (slab) {
        struct hak_slab *next = slab->next;
        if (atomic_load_explicit(&slab->remote_pending, memory_order_relaxed) &&
            hak_remote_drain(slab))
            slab_refilled(heap, slab);
        slab = next;
    }
    return heap->partial[size_class].head;
}

/* Adopts abandoned slabs of a class one at a time, draining each and
 * returning empty ones to the pool, until one can serve a refill (or all of
 * them, for a flush). The slabs of threads that exited together are so spread
 * over the threads that need them, instead of all going to the first one
 * while the others map fresh slabs. */
static void adopt(struct hak_heap *heap, int size_class, bool all)
{
    while (atomic_load_explicit(&abandoned_count, memory_order_relaxed)) {
        hak_heaps_lock();
        struct hak_slab *slab = abandoned[size_class].head;
        if (slab)
            hak_list_remove(&abandoned[size_class], slab);
        hak_heaps_unlock();
        if (!slab)
            return;
        atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
        own_slab(heap, slab);
        hak_remote_drain(slab);
        if (slab->used == 0)
            release_slab(heap, slab);
        else if (!all && (slab->free || slab->carved < slab->capacity))
            return;
    }
}

static struct hak_slab *acquire_slab(struct hak_heap *heap, int size_class)
{
    struct hak_slab *slab = reclaim_full(heap, size_class);
    if (slab)
        return slab;
    adopt(heap, size_class, false);
    slab = heap->partial[size_class].head;
    if (slab)
        return slab;
    slab = hak_pool_take_slab(size_class);
    if (slab)
        own_slab(heap, slab);
    return slab;
}

/* The thread cache of this class is empty: fill it with a batch from owned
 * slabs and return one block of it (still poisoned). NULL when memory is
 * exhausted. */
void *hak_tcache_refill(struct hak_heap *heap, int size_class)
{
    if (heap == &hak_heap_empty) {
        heap = hak_heap_get();
        if (!heap)
            return NULL;
    }
    struct hak_tcache *tc = &heap->tc[size_class];
    uint32_t want = (uint32_t)(tc->end - tc->base) / 2 + 1;
    struct hak_slab *started = heap->partial[size_class].head;
    for (;;) {
        struct hak_slab *slab = heap->partial[size_class].head;
        if (!slab)
            slab = acquire_slab(heap, size_class);
        if (!slab)
            return NULL;
        uint32_t n = hak_slab_take(slab, want, tc->base);
        if (HAK_INJECT_STALE_REFILL && n && started && started != slab) {
            slab->used -= n;
            started->used += n;
            atomic_fetch_sub_explicit(&slab->ss->active, n, memory_order_relaxed);
            atomic_fetch_add_explicit(&started->ss->active, n, memory_order_relaxed);
        }
        if (n) {
            tc->top = tc->base + n - 1;
            return *tc->top;
        }
        hak_list_remove(&heap->partial[size_class], slab);
        slab->full = true;
        hak_list_push(&heap->full[size_class], slab);
    }
}

/* Returns the oldest cached blocks of one class to their slabs until `keep`
 * remain (the newest, likeliest still in cache), linking consecutive blocks
 * of one slab into one chain. */
void hak_tcache_flush(struct hak_heap *heap, int size_class, uint32_t keep)
{
    struct hak_tcache *tc = &heap->tc[size_class];
    uint32_t count = hak_tcache_count(tc);
    if (count <= keep)
        return;
    uint32_t out = count - keep;
    void **slot = tc->base;
    for (uint32_t i = 0; i < out;) {
        void *head = slot[i];
        struct hak_slab *slab = hak_slab_in(hak_superslab_of(head), head);
        uintptr_t span = (uintptr_t)slab->capacity * slab->block_size;
        void *tail = head;
        uint32_t n = 1;
        while (i + n < out && (uintptr_t)slot[i + n] - slab->start < span) {
            hak_next_set(tail, slot[i + n]);
            tail = slot[i + n];
            n++;
        }
        i += n;
        hak_slab_put_chain(slab, head, tail, n);
        slab_refilled(heap, slab);
    }
    memmove(slot, slot + out, keep * sizeof *slot);
    tc->top = slot + keep;
}

/* free() found the cache full: return its older half, then cache `block`. */
void hak_tcache_push_full(struct hak_heap *heap, int size_class, void *block)
{
    struct hak_tcache *tc = &heap->tc[size_class];
    hak_tcache_flush(heap, size_class, (uint32_t)(tc->end - tc->base) / 2);
    *tc->top++ = block;
}

/* Drains every owned slab, moving refilled ones to partial and releasing
 * empty ones, including the one hak_heap_slab_emptied would keep. */
static void drain_owned(struct hak_heap *heap, int size_class)
{
    reclaim_full(heap, size_class);
    struct hak_slab *slab = heap->partial[size_class].head;
    while (slab) {
        struct hak_slab *next = slab->next;
        hak_remote_drain(slab);
        if (slab->used == 0)
            release_slab(heap, slab);
        slab = next;
    }
}

void hak_heap_flush_all(struct hak_heap *heap)
{
    for (int c = 0; c < HAK_CLASSES; c++) {
        hak_tcache_flush(heap, c, 0);
        adopt(heap, c, true);
        drain_owned(heap, c);
    }
}

static void abandon_list(struct hak_slab_list *list)
{
    struct hak_slab *slab = list->head;
    list->head = NULL;
    while (slab) {
        struct hak_slab *next = slab->next;
        slab->full = false;
        atomic_store_explicit(&slab->owner, NULL, memory_order_release);
        hak_slab_publish(slab);
        hak_heaps_lock();
        hak_list_push(&abandoned[slab->size_class], slab);
        hak_heaps_unlock();
        atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
        slab = next;
    }
}

/* The heap's thread is gone (thread exit, or the other threads of a fork
 * parent): give everything back and recycle the heap. */
void hak_heap_abandon(struct hak_heap *heap)
{
    for (int c = 0; c < HAK_CLASSES; c++) {
        hak_tcache_flush(heap, c, 0);
        drain_owned(heap, c);
        abandon_list(&heap->partial[c]);
        abandon_list(&heap->full[c]);
    }
    hak_heaps_lock();
    if (heap->prev)
        heap->prev->next = heap->next;
    else
        hak_heaps = heap->next;
    if (heap->next)
        heap->next->prev = heap->prev;
    heap->next = free_heaps;
    free_heaps = heap;
    hak_heaps_unlock();
}

/* pthread key destructor. The thread may still allocate after this (other
 * destructors): it then gets a fresh heap, abandoned again on the next pass. */
void hak_heap_thread_exit(void *arg)
{
    struct hak_heap *heap = arg;
    hak_tl_heap = &hak_heap_empty;
    if (heap && heap != &hak_heap_empty)
        hak_heap_abandon(heap);
}

uint64_t hak_abandoned_count(void)
{
    return atomic_load_explicit(&abandoned_count, memory_order_relaxed);
}

struct hak_slab *hak_abandoned_head(int size_class)
{
    return abandoned[size_class].head;
}
