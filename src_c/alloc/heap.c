/* Thread heaps: per-thread caches, the slabs a thread owns, and what happens
 * to them when the thread exits.
 *
 * A heap owns slabs per class on two lists: `partial` (may have free blocks;
 * its head is where refills go first) and `full` (had none at last look; a
 * remote free may have refilled it since, so refill rescans it before asking
 * the pool for a new slab). Thread caches hold only blocks of owned slabs.
 *
 * Every slow path runs under the heap's own lock (internal.h): uncontended,
 * since only its thread takes it, except when the purge drains an idle heap
 * or fork_prepare holds every heap still (fork.c) so that the child inherits
 * no heap in the middle of a change.
 *
 * A thread that exits flushes its caches, drains its remote lists, returns
 * empty slabs to the pool and leaves the rest on the abandoned lists; the next
 * thread that needs a slab of that class adopts them, and the purge reclaims
 * those whose blocks all came back. Nothing is leaked and no slab ever has two
 * owners. A thread that allocates again after its exit (a later thread-local
 * destructor) is served by the shared exit heap, under that heap's lock: it
 * never gets a heap of its own again, which no destructor would give back.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

HAK_TLS struct hak_heap *hak_tl_heap = &hak_heap_empty;
struct hak_heap hak_heap_empty = {.free_key = UINT32_MAX};
struct hak_heap *hak_heaps;

/* Set once this thread's heap destructor has run. */
static HAK_TLS bool tl_exited;

/* heaps lock */
static struct hak_heap *free_heaps;
static uint8_t *heap_arena;
static size_t heap_arena_left;
static uint64_t heap_serial;
static uint32_t heap_ids;
static struct hak_heap *exit_heap; /* created on first use, never abandoned */

/* abandoned lock; abandoned_count == total length of the lists, updated in
 * the same critical section as the lists (a fork never sees them disagree) */
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
    /* A heap keeps its id when recycled; id 0 means "no owner" in unit keys.
     * A recycled heap owns no slab and no unit key names it (abandonment
     * republishes every key of its slabs first), so its id is free to reuse.
     * Ids stop below 0xffff: no unit key then has bits 12-31 all ones, which
     * hak_free_fast's test needs for the id-less free_key UINT32_MAX. */
    h->free_key = ++heap_ids < UINT16_MAX ? heap_ids << HAK_KEY_OWNER_SHIFT : UINT32_MAX;
    return h;
}

/* A fresh heap on the heap list; heaps lock held. */
static struct hak_heap *heap_new_locked(void)
{
    struct hak_heap *heap = heap_struct_alloc();
    if (!heap)
        return NULL;
    uint64_t free_key = heap->free_key;
    memset(heap, 0, sizeof *heap);
    heap->free_key = free_key;
    pthread_mutex_init(&heap->lock, NULL);
    void **slot = heap->slots;
    for (int c = 0; c < HAK_CLASSES; c++) {
        heap->tc[c].top = heap->tc[c].base = slot;
        slot += hak_class_tcache_limit[c];
        heap->tc[c].end = slot;
    }
    for (size_t size = 0; size <= HAK_TINY_MAX; size++)
        heap->tiny_cache[size] = (uint16_t)(hak_class_of(size) * sizeof(struct hak_tcache));
    heap->serial = ++heap_serial;
    /* The list is kept in address order, the order fork_prepare locks the
     * heaps in: one fixed order for every fork (a heap never moves). */
    struct hak_heap *prev = NULL, *next = hak_heaps;
    while (next && next < heap) {
        prev = next;
        next = next->next;
    }
    heap->prev = prev;
    heap->next = next;
    if (prev)
        prev->next = heap;
    else
        hak_heaps = heap;
    if (next)
        next->prev = heap;
    return heap;
}

extern pthread_key_t hak_thread_key;

/* The calling thread's heap, created on first use. */
struct hak_heap *hak_heap_get(void)
{
    struct hak_heap *heap = hak_tl_heap;
    if (HAK_LIKELY(heap != &hak_heap_empty))
        return heap;
    if (tl_exited)
        return NULL;
    hak_heaps_lock();
    heap = heap_new_locked();
    hak_heaps_unlock();
    if (!heap)
        return NULL;
    hak_tl_heap = heap;
    pthread_setspecific(hak_thread_key, heap);
    return heap;
}

static void own_slab(struct hak_heap *heap, struct hak_slab *slab)
{
    hak_sync(HAK_SYNC_OWNER, slab);
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
    uint32_t held = HAK_INJECT_EAGER_RELEASE ? hak_remote_pending(slab) : 0;
    if (slab->used == held)
        hak_heap_slab_emptied(heap, slab);
}

/* Rescans full slabs for remote frees that arrived since they filled up. */
static struct hak_slab *reclaim_full(struct hak_heap *heap, int size_class)
{
    struct hak_slab *slab = heap->full[size_class].head;
    while (slab) {
        struct hak_slab *next = slab->next;
        if (hak_remote_pending(slab) && hak_remote_drain(slab))
            slab_refilled(heap, slab);
        slab = next;
    }
    return heap->partial[size_class].head;
}

/* One abandoned slab of the class, off its list (NULL: none). */
static struct hak_slab *abandoned_pop(int size_class)
{
    if (!atomic_load_explicit(&abandoned_count, memory_order_relaxed))
        return NULL;
    hak_abandoned_lock();
    struct hak_slab *slab = abandoned[size_class].head;
    if (slab) {
        hak_list_remove(&abandoned[size_class], slab);
        atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
    }
    hak_abandoned_unlock();
    return slab;
}

static void abandoned_push(struct hak_slab *slab)
{
    hak_abandoned_lock();
    hak_list_push(&abandoned[slab->size_class], slab);
    atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
    hak_abandoned_unlock();
}

/* Adopts abandoned slabs of a class one at a time, draining each and
 * returning empty ones to the pool, until one can serve a refill (or all of
 * them, for a flush). The slabs of threads that exited together are so spread
 * over the threads that need them, instead of all going to the first one
 * while the others map fresh slabs. Heap lock held. */
static void adopt(struct hak_heap *heap, int size_class, bool all)
{
    struct hak_slab *slab;
    while ((slab = abandoned_pop(size_class)) != NULL) {
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

/* Fills the empty cache of the class with a batch from owned slabs and
 * returns one block of it (still poisoned). Heap lock held. */
static void *refill_locked(struct hak_heap *heap, int size_class)
{
    struct hak_tcache *tc = &heap->tc[size_class];
    uint32_t want = (uint32_t)(tc->end - tc->base) / 2 + 1;
    struct hak_slab *started = heap->partial[size_class].head;
    heap->slow_ops++;
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
        if (HAK_INJECT_REFILL_DRIFT && n && heap->slow_ops % 256 == 0)
            slab->used++;
        if (n) {
            tc->top = tc->base + n - 1;
            return *tc->top;
        }
        hak_list_remove(&heap->partial[size_class], slab);
        slab->full = true;
        hak_list_push(&heap->full[size_class], slab);
    }
}

/* The shared exit heap, created on first use. */
static struct hak_heap *exit_heap_get(void)
{
    hak_heaps_lock();
    if (!exit_heap)
        exit_heap = heap_new_locked();
    struct hak_heap *heap = exit_heap;
    hak_heaps_unlock();
    return heap;
}

/* A block for a thread whose heap is gone (it allocates from a destructor
 * that ran after hakmem's): from the exit heap, under its lock. Its frees
 * take the slow path (its heap is the empty one), as remote frees. */
static void *exit_heap_take(int size_class)
{
    struct hak_heap *heap = exit_heap_get();
    if (!heap)
        return NULL;
    hak_heap_lock(heap);
    struct hak_tcache *tc = &heap->tc[size_class];
    void *p = tc->top != tc->base ? *--tc->top : refill_locked(heap, size_class);
    hak_heap_unlock(heap);
    return p;
}

/* The thread cache of this class is empty: fill it with a batch from owned
 * slabs and return one block of it (still poisoned). NULL when memory is
 * exhausted. */
void *hak_tcache_refill(struct hak_heap *heap, int size_class)
{
    if (heap == &hak_heap_empty) {
        if (HAK_UNLIKELY(tl_exited))
            return exit_heap_take(size_class);
        heap = hak_heap_get();
        if (!heap)
            return NULL;
    }
    hak_heap_lock(heap);
    void *p = refill_locked(heap, size_class);
    hak_heap_unlock(heap);
    hak_purge_kick();
    return p;
}

/* Returns the oldest cached blocks of one class to their slabs until `keep`
 * remain (the newest, likeliest still in cache), linking consecutive blocks
 * of one slab into one chain. Heap lock held. */
static void flush_locked(struct hak_heap *heap, int size_class, uint32_t keep)
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

void hak_tcache_flush(struct hak_heap *heap, int size_class, uint32_t keep)
{
    hak_heap_lock(heap);
    flush_locked(heap, size_class, keep);
    hak_heap_unlock(heap);
}

/* free() found the cache full: return its older half, then cache `block`.
 * The block comes first, where free had it: the fast path's two exits (this
 * and hak_free) then need no register move. */
void hak_tcache_push_full(void *block, struct hak_heap *heap, int size_class)
{
    struct hak_tcache *tc = &heap->tc[size_class];
    hak_heap_lock(heap);
    heap->slow_ops++;
    flush_locked(heap, size_class, (uint32_t)(tc->end - tc->base) / 2);
    *tc->top++ = block;
    hak_heap_unlock(heap);
    hak_purge_kick();
}

/* Drains every owned slab, moving refilled ones to partial and releasing
 * empty ones, including the one hak_heap_slab_emptied would keep. Returns
 * how many it released. Heap lock held. */
static uint64_t drain_owned(struct hak_heap *heap, int size_class)
{
    uint64_t released = 0;
    reclaim_full(heap, size_class);
    struct hak_slab *slab = heap->partial[size_class].head;
    while (slab) {
        struct hak_slab *next = slab->next;
        hak_remote_drain(slab);
        if (slab->used == 0) {
            release_slab(heap, slab);
            released++;
        }
        slab = next;
    }
    return released;
}

void hak_heap_flush_all(struct hak_heap *heap)
{
    hak_heap_lock(heap);
    heap->slow_ops++;
    for (int c = 0; c < HAK_CLASSES; c++) {
        flush_locked(heap, c, 0);
        adopt(heap, c, true);
        drain_owned(heap, c);
    }
    hak_heap_unlock(heap);
}

static void abandon_list(struct hak_slab_list *list)
{
    struct hak_slab *slab = list->head;
    list->head = NULL;
    while (slab) {
        struct hak_slab *next = slab->next;
        slab->full = false;
        hak_sync(HAK_SYNC_OWNER, slab);
        atomic_store_explicit(&slab->owner, NULL, memory_order_release);
        if (!HAK_INJECT_HEAP_ID_RECYCLE)
            hak_slab_publish(slab);
        abandoned_push(slab);
        hak_purge_note();
        slab = next;
    }
}

/* Gives back everything a heap holds (its caches flushed, its slabs drained,
 * the empty ones returned, the rest abandoned). Heap lock held. */
static void abandon_locked(struct hak_heap *heap)
{
    for (int c = 0; c < HAK_CLASSES; c++) {
        flush_locked(heap, c, 0);
        drain_owned(heap, c);
        abandon_list(&heap->partial[c]);
        abandon_list(&heap->full[c]);
    }
}

static void heap_unlink_locked(struct hak_heap *heap)
{
    if (heap->prev)
        heap->prev->next = heap->next;
    else
        hak_heaps = heap->next;
    if (heap->next)
        heap->next->prev = heap->prev;
    heap->next = free_heaps;
    heap->prev = NULL;
    free_heaps = heap;
}

/* The heap's thread is gone: give everything back and recycle the heap. Its
 * own lock first, then (released, as the lock order wants) the heaps lock to
 * unlink it; a fork in between copies an empty heap, which the child abandons
 * again at no cost. */
void hak_heap_abandon(struct hak_heap *heap)
{
    hak_heap_lock(heap);
    abandon_locked(heap);
    hak_heap_unlock(heap);
    hak_heaps_lock();
    heap_unlink_locked(heap);
    hak_heaps_unlock();
}

/* The calling thread's heap leaves it: given back as at the thread's exit. */
static void give_back(struct hak_heap *heap)
{
    hak_tl_heap = &hak_heap_empty;
    hak_sync(HAK_SYNC_EXIT, heap);
    if (heap && heap != &hak_heap_empty)
        hak_heap_abandon(heap);
}

/* pthread key destructor. The thread may still allocate after this (other
 * destructors): it is then served by the exit heap, never by a heap of its
 * own (a heap created in the last destructor round would never be given
 * back). */
void hak_heap_thread_exit(void *arg)
{
    tl_exited = true;
    give_back(arg);
}

/* The thread lives on, as a new thread would start: no destructor runs for the
 * old heap, and tl_exited stays clear so the next allocation gets a heap. */
HAK_API void hak_retire_thread(void)
{
    if (hak_tl_heap == &hak_heap_empty)
        return;
    pthread_setspecific(hak_thread_key, NULL);
    give_back(hak_tl_heap);
}

/* An aligned interior pointer was handed out of `slab`: mark it, under its
 * owner's lock (the owner is the caller's heap, or the exit heap). */
void hak_heap_set_aligned(struct hak_slab *slab)
{
    hak_sync(HAK_SYNC_OWNER, slab);
    struct hak_heap *owner = atomic_load_explicit(&slab->owner, memory_order_relaxed);
    if (owner)
        hak_heap_lock(owner);
    atomic_store_explicit(&slab->has_aligned, 1, memory_order_relaxed);
    hak_slab_publish(slab);
    if (owner)
        hak_heap_unlock(owner);
}

/* ---- fork (init.c): every heap held still, the child gives back the rest --- */

/* Every heap's lock, in heap-list (address) order; the heaps lock is held
 * throughout, so no two threads ever take two heap locks at once. */
void hak_heaps_fork_prepare(void)
{
    hak_heaps_lock();
    if (!HAK_INJECT_FORK_UNLOCKED)
        for (struct hak_heap *h = hak_heaps; h; h = h->next)
            hak_heap_lock(h);
    hak_abandoned_lock();
}

void hak_heaps_fork_parent(void)
{
    hak_abandoned_unlock();
    if (!HAK_INJECT_FORK_UNLOCKED)
        for (struct hak_heap *h = hak_heaps; h; h = h->next)
            hak_heap_unlock(h);
    hak_heaps_unlock();
}

/* In the child, only the forking thread exists. Every other thread's heap
 * was held still by fork_prepare, so each is consistent: its caches, lists
 * and slabs are given back exactly as at its thread's exit (blocks it had
 * handed out stay live: the child may still free them), and the heap is
 * recycled with its id, which no unit key names any more. The exit heap
 * stays: it belongs to no thread. */
void hak_heaps_fork_child(void)
{
    hak_abandoned_unlock();
    struct hak_heap *self = hak_tl_heap;
    if (!HAK_INJECT_FORK_UNLOCKED)
        for (struct hak_heap *h = hak_heaps; h; h = h->next)
            hak_heap_unlock(h);
    struct hak_heap *heap = hak_heaps;
    while (heap) {
        struct hak_heap *next = heap->next;
        if (heap != self && heap != exit_heap) {
            /* The seeded bug walks the heap without its lock, as the old
             * code did: a dead thread may have held it mid-change. */
            if (!HAK_INJECT_FORK_UNLOCKED)
                hak_heap_lock(heap);
            abandon_locked(heap);
            if (!HAK_INJECT_FORK_UNLOCKED)
                hak_heap_unlock(heap);
            heap_unlink_locked(heap);
        }
        heap = next;
    }
    hak_heaps_unlock();
}

/* ---- purge (purge.c) ---- */

/* Drains every abandoned slab (taken off its list, so held exclusively) and
 * returns those whose blocks all came back. Abandoned lock only around the
 * list moves. */
static uint64_t reclaim_abandoned(void)
{
    uint64_t released = 0;
    for (int c = 0; c < HAK_CLASSES; c++) {
        if (!atomic_load_explicit(&abandoned_count, memory_order_relaxed))
            break;
        hak_abandoned_lock();
        struct hak_slab *slab = abandoned[c].head;
        uint64_t n = 0;
        for (struct hak_slab *s = slab; s; s = s->next)
            n++;
        abandoned[c].head = NULL;
        atomic_fetch_sub_explicit(&abandoned_count, n, memory_order_relaxed);
        hak_abandoned_unlock();
        struct hak_slab_list keep = {NULL};
        uint64_t kept = 0;
        while (slab) {
            struct hak_slab *next = slab->next;
            hak_remote_drain(slab);
            if (slab->used == 0) {
                hak_pool_return_slab(slab);
                released++;
            } else {
                hak_list_push(&keep, slab);
                kept++;
            }
            slab = next;
        }
        if (keep.head) {
            hak_abandoned_lock();
            while ((slab = keep.head) != NULL) {
                hak_list_remove(&keep, slab);
                hak_list_push(&abandoned[c], slab);
            }
            atomic_fetch_add_explicit(&abandoned_count, kept, memory_order_relaxed);
            hak_abandoned_unlock();
        }
    }
    return released;
}

/* Any slab of the heap with remote frees pending? Heap lock held. */
static bool heap_has_pending(const struct hak_heap *heap)
{
    for (int c = 0; c < HAK_CLASSES; c++)
        for (int list = 0; list < 2; list++)
            for (struct hak_slab *s = list ? heap->full[c].head : heap->partial[c].head; s;
                 s = s->next)
                if (hak_remote_pending(s))
                    return true;
    return false;
}

bool hak_heaps_purge(bool all)
{
    bool more = false;
    for (struct hak_heap *h = hak_heaps; h; h = h->next) {
        if (all) {
            hak_heap_lock(h);
        } else if (!hak_mutex_trylock(&h->lock)) {
            more = true; /* busy: look again next pass */
            continue;
        }
        /* Idle: no slow path since the last look. An active owner drains its
         * own slabs; an idle one's remote frees and empty slabs are the
         * purge's to give back. An active heap with remote frees pending is
         * looked at again next pass, in case it goes idle. */
        bool idle = h->slow_ops == h->purge_seen;
        h->purge_seen = h->slow_ops;
        if (all || idle) {
            for (int c = 0; c < HAK_CLASSES; c++) {
                if (HAK_INJECT_EARLY_PURGE)
                    hak_purge_inject_early(h, c);
                drain_owned(h, c);
            }
        } else if (heap_has_pending(h)) {
            more = true;
        }
        hak_heap_unlock(h);
    }
    reclaim_abandoned();
    return more;
}

uint64_t hak_abandoned_count(void)
{
    return atomic_load_explicit(&abandoned_count, memory_order_relaxed);
}

struct hak_slab *hak_abandoned_head(int size_class)
{
    return abandoned[size_class].head;
}
