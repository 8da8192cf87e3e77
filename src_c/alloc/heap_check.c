/* hak_heap_check: the full heap walk.
 *
 * Validates every structure and every counter identity written in
 * internal.h, and describes the first violation precisely (which superslab,
 * slab, class, block, and the numbers that disagree). Quiescent points only:
 * it reads owner-only fields of every thread's slabs and caches.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { MAX_BLOCKS = 65536 / 16 };

struct walk {
    struct hak_heap_report *r;
    uint8_t seen[MAX_BLOCKS / 8]; /* blocks of the current slab already found free */
};

__attribute__((format(printf, 3, 4))) static void fail(struct walk *w, uintptr_t where,
                                                       const char *fmt, ...)
{
    if (w->r->errors++)
        return;
    w->r->ok = 0;
    w->r->where = where;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->r->message, sizeof w->r->message, fmt, ap);
    va_end(ap);
}

/* Marks block address `a` of `slab` as found free on `what`; false (and the
 * first violation reported) when it is not a block boundary or was already
 * found free. */
static bool mark_free(struct walk *w, const struct hak_slab *slab, uintptr_t a, const char *what)
{
    uint32_t i = hak_block_index(slab, a);
    if (slab->start + (uintptr_t)i * slab->block_size != a) {
        fail(w, a, "slab %#lx (class %u, %u B): %s holds %#lx, not a block boundary",
             (unsigned long)slab->start, slab->size_class, slab->block_size, what,
             (unsigned long)a);
        return false;
    }
    if (w->seen[i / 8] & (1u << (i % 8))) {
        fail(w, a, "slab %#lx (class %u): block %u (%#lx) found free twice (again on %s)",
             (unsigned long)slab->start, slab->size_class, i, (unsigned long)a, what);
        return false;
    }
    w->seen[i / 8] |= (uint8_t)(1u << (i % 8));
    return true;
}

static uintptr_t carved_end(const struct hak_slab *slab)
{
    return slab->start + (uintptr_t)slab->carved * slab->block_size;
}

/* Walks one of the slab's own free chains (free or remote list), marking
 * blocks; every block must be a carved block of the slab. Returns how many it
 * found. A looping chain ends at the first block found twice. */
static uint32_t walk_chain(struct walk *w, const struct hak_slab *slab, void *head,
                           const char *what)
{
    uint32_t n = 0;
    uintptr_t end = carved_end(slab);
    for (void *b = head; b; b = hak_peek_link(b)) {
        uintptr_t a = (uintptr_t)b;
        if (a < slab->start || a >= end) {
            fail(w, a, "slab %#lx (class %u): %s holds %#lx, outside its carved blocks",
                 (unsigned long)slab->start, slab->size_class, what, (unsigned long)a);
            return n;
        }
        if (!mark_free(w, slab, a, what))
            return n;
        n++;
    }
    return n;
}

/* Marks the blocks of `slab` on a thread cache, which mixes slabs (blocks of
 * other slabs are check_thread_cache's business). */
static void walk_cache(struct walk *w, const struct hak_slab *slab, const struct hak_tcache *tc)
{
    uintptr_t end = carved_end(slab);
    for (void **slot = tc->base; slot < tc->top; slot++) {
        uintptr_t a = (uintptr_t)*slot;
        if (a >= slab->start && a < end && !mark_free(w, slab, a, "its owner's thread cache"))
            return;
    }
}

static bool list_holds(const struct hak_slab_list *list, const struct hak_slab *slab)
{
    for (struct hak_slab *s = list->head; s; s = s->next)
        if (s == slab)
            return true;
    return false;
}

static bool heap_alive(const struct hak_heap *heap)
{
    for (struct hak_heap *h = hak_heaps; h; h = h->next)
        if (h == heap)
            return true;
    return false;
}

static void check_ownership(struct walk *w, const struct hak_slab *slab,
                            const struct hak_heap *owner)
{
    int c = slab->size_class;
    if (!owner) {
        if (!list_holds(&(struct hak_slab_list){hak_abandoned_head(c)}, slab))
            fail(w, slab->start, "slab %#lx (class %d) has no owner and is not abandoned",
                 (unsigned long)slab->start, c);
        return;
    }
    if (!heap_alive(owner)) {
        fail(w, slab->start, "slab %#lx (class %d) is owned by a dead heap",
             (unsigned long)slab->start, c);
        return;
    }
    const struct hak_slab_list *list = slab->full ? &owner->full[c] : &owner->partial[c];
    if (!list_holds(list, slab))
        fail(w, slab->start, "slab %#lx (class %d) is not on its owner's %s list",
             (unsigned long)slab->start, c, slab->full ? "full" : "partial");
}

/* Returns the slab's `used`, for the superslab's active identity. */
static uint64_t check_slab(struct walk *w, struct hak_superslab *ss, unsigned first)
{
    struct hak_slab *slab = &hak_ss_slabs(ss)[first];
    uintptr_t start = (uintptr_t)ss + ((uintptr_t)first << HAK_UNIT_SHIFT);
    uintptr_t end = start + ((uintptr_t)slab->units << HAK_UNIT_SHIFT);
    int c = slab->size_class;
    if (c >= HAK_CLASSES || slab->block_size != hak_class_size[c] || slab->start != start ||
        slab->capacity != (end - start) / slab->block_size || slab->ss != ss ||
        slab->units != hak_class_units[c]) {
        fail(w, start, "superslab %#lx slab %u: geometry corrupt (class %d, %u B, start %#lx)",
             (unsigned long)ss, first, c, slab->block_size, (unsigned long)slab->start);
        return slab->used;
    }
    if (slab->carved > slab->capacity)
        fail(w, start, "slab %#lx (class %d): carved %u > capacity %u", (unsigned long)start, c,
             slab->carved, slab->capacity);
    memset(w->seen, 0, sizeof w->seen);
    uint32_t nfree = walk_chain(w, slab, slab->free, "the local free list");
    uintptr_t word = atomic_load_explicit(&slab->remote, memory_order_acquire);
    uint32_t nremote = walk_chain(w, slab, hak_remote_word_head(word), "the remote list");
    uint32_t pending = hak_remote_word_count(word);
    struct hak_heap *owner = atomic_load_explicit(&slab->owner, memory_order_acquire);
    if (owner && heap_alive(owner))
        walk_cache(w, slab, &owner->tc[c]);
    if (nfree != slab->free_len)
        fail(w, start, "slab %#lx (class %d): free list holds %u blocks, free_len says %u",
             (unsigned long)start, c, nfree, slab->free_len);
    if (nremote != pending)
        fail(w, start, "slab %#lx (class %d): remote list holds %u blocks, remote_pending says %u",
             (unsigned long)start, c, nremote, pending);
    if ((uint64_t)slab->used + slab->free_len != slab->carved)
        fail(w, start, "slab %#lx (class %d, %u B): used %u + free %u != carved %u",
             (unsigned long)start, c, slab->block_size, slab->used, slab->free_len, slab->carved);
    if (pending > slab->used)
        fail(w, start, "slab %#lx (class %d): remote_pending %u > used %u", (unsigned long)start,
             c, pending, slab->used);
    check_ownership(w, slab, owner);
    return slab->used;
}

static void check_superslab(struct walk *w, struct hak_superslab *ss)
{
    uintptr_t a = (uintptr_t)ss;
    if (ss->magic != HAK_SS_MAGIC || a & (HAK_SS_SIZE - 1) || hak_superslab_of(ss) != ss) {
        fail(w, a, "superslab %#lx: bad magic, alignment or registry entry", (unsigned long)a);
        return;
    }
    /* The header's units are no slab's: unit_slab and lead say so, and their
     * key is 0 (matches no heap's free_key: the free fast path relies on it). */
    for (unsigned u = 0; u < HAK_FIRST_UNIT; u++)
        if (ss->unit_slab[u] != HAK_UNIT_FREE || hak_ss_slabs(ss)[u].lead != HAK_UNIT_FREE ||
            atomic_load_explicit(&hak_ss_keys(ss)[u], memory_order_relaxed)) {
            fail(w, a, "superslab %#lx: header unit %u has a slab or a free-path key",
                 (unsigned long)a, u);
            return;
        }
    uint32_t free_units = 0, free_mask = 0;
    uint64_t used = 0;
    for (unsigned u = HAK_FIRST_UNIT; u < HAK_UNITS; u++) {
        unsigned first = ss->unit_slab[u];
        uint32_t key = atomic_load_explicit(&hak_ss_keys(ss)[u], memory_order_relaxed);
        if (first == HAK_UNIT_FREE) {
            if (hak_ss_slabs(ss)[u].lead != HAK_UNIT_FREE)
                fail(w, a, "superslab %#lx: free unit %u has a lead slab", (unsigned long)a, u);
            if (key)
                fail(w, a, "superslab %#lx: free unit %u has free-path key %#x", (unsigned long)a,
                     u, key);
            free_units++;
            free_mask |= 1u << u;
            continue;
        }
        struct hak_slab *slab = &hak_ss_slabs(ss)[first];
        if (first > u || !slab->units || u >= first + slab->units ||
            ss->unit_slab[first] != first || hak_ss_slabs(ss)[u].lead != first) {
            fail(w, a, "superslab %#lx: unit %u maps to slab %u, which does not cover it",
                 (unsigned long)a, u, first);
            return;
        }
        if (key != hak_slab_key(slab))
            fail(w, a, "superslab %#lx: unit %u has free-path key %#x, its slab's descriptor "
                 "says %#x", (unsigned long)a, u, key, hak_slab_key(slab));
        if (first == u)
            used += check_slab(w, ss, first);
    }
    if (free_units != ss->free_units)
        fail(w, a, "superslab %#lx: %u free units, free_units says %u", (unsigned long)a,
             free_units, ss->free_units);
    if (ss->cached && free_units != HAK_UNITS - HAK_FIRST_UNIT)
        fail(w, a, "superslab %#lx is cached with %u units in use", (unsigned long)a,
             HAK_UNITS - HAK_FIRST_UNIT - free_units);
    if (free_units == HAK_UNITS - HAK_FIRST_UNIT && !ss->cached)
        fail(w, a, "superslab %#lx is empty but neither cached nor unmapped", (unsigned long)a);
    /* dirty: free units whose pages a purge has yet to give back */
    if (ss->dirty_units & ~free_mask)
        fail(w, a, "superslab %#lx: units in use marked dirty (%#x)", (unsigned long)a,
             ss->dirty_units & ~free_mask);
    uint64_t active = atomic_load_explicit(&ss->active, memory_order_relaxed);
    if (active != used)
        fail(w, a, "superslab %#lx: active %llu != sum of its slabs' used %llu", (unsigned long)a,
             (unsigned long long)active, (unsigned long long)used);
}

/* The pool's list keeps superslabs with free units before full ones (a search
 * for units stops at the first full one: one behind it would never be used,
 * and a fresh superslab mapped instead), and its counters (mapped, cached,
 * dirty units) match the list.
 * Pool lock held. */
static void check_pool(struct walk *w)
{
    uint64_t mapped, cached, dirty, n = 0, n_cached = 0, n_dirty = 0;
    hak_pool_stats(&mapped, &cached, &dirty);
    bool full_seen = false;
    for (struct hak_superslab *ss = hak_superslabs; ss; ss = ss->next) {
        check_superslab(w, ss);
        n++;
        n_cached += ss->cached;
        n_dirty += (unsigned)__builtin_popcount(ss->dirty_units);
        if (ss->free_units && full_seen)
            fail(w, (uintptr_t)ss, "superslab %#lx has %u free units but lies behind a full "
                 "one on the pool's list: no search reaches it", (unsigned long)ss,
                 ss->free_units);
        full_seen |= !ss->free_units;
    }
    if (n != mapped || n_cached != cached || cached > HAK_SS_CACHE_MAX)
        fail(w, 0, "pool: %llu superslabs listed (%llu cached), counters say %llu mapped, "
             "%llu cached (at most %d)", (unsigned long long)n, (unsigned long long)n_cached,
             (unsigned long long)mapped, (unsigned long long)cached, HAK_SS_CACHE_MAX);
    /* the purge is noted once the count reaches PURGE_MIN_UNITS: a count that drifts
     * purges too early or never */
    if (n_dirty != dirty)
        fail(w, 0, "pool: %llu dirty units in the superslabs' masks, the count says %llu",
             (unsigned long long)n_dirty, (unsigned long long)dirty);
}

/* The cache's stack lies within its slots, and every cached block belongs to
 * a slab the heap owns, of the cache's class. */
static void check_thread_cache(struct walk *w, struct hak_heap *heap, int c)
{
    struct hak_tcache *tc = &heap->tc[c];
    if (tc->top < tc->base || tc->top > tc->end ||
        tc->end - tc->base != hak_class_tcache_limit[c]) {
        fail(w, (uintptr_t)tc->base,
             "heap %llu: thread cache of class %d: top %+td, end %+td slots from its base "
             "(limit %u)",
             (unsigned long long)heap->serial, c, tc->top - tc->base, tc->end - tc->base,
             hak_class_tcache_limit[c]);
        return;
    }
    for (void **slot = tc->base; slot < tc->top; slot++) {
        void *b = *slot;
        struct hak_superslab *ss = hak_superslab_of(b);
        struct hak_slab *slab = ss ? hak_slab_in(ss, b) : NULL;
        if (!slab || slab->size_class != c ||
            atomic_load_explicit(&slab->owner, memory_order_relaxed) != heap) {
            fail(w, (uintptr_t)b,
                 "heap %llu: thread cache of class %d holds %#lx, not a block of a slab it "
                 "owns of that class",
                 (unsigned long long)heap->serial, c, (unsigned long)b);
            return;
        }
    }
}

/* The heap's size table sends every tiny size to its class's cache: a wrong
 * entry would hand out blocks of another class. */
static void check_size_table(struct walk *w, const struct hak_heap *heap)
{
    for (size_t size = 0; size <= HAK_TINY_MAX; size++) {
        size_t want = (size_t)hak_class_of(size) * sizeof(struct hak_tcache);
        if (heap->tiny_cache[size] != want) {
            fail(w, (uintptr_t)heap,
                 "heap %llu: size table sends %zu B to cache offset %u, not %zu (class %d)",
                 (unsigned long long)heap->serial, size, heap->tiny_cache[size], want,
                 hak_class_of(size));
            return;
        }
    }
}

/* abandoned_count == the abandoned lists' total length, and every slab on
 * them is in use and ownerless (heap.c updates both in one critical
 * section). Abandoned lock held. */
static void check_abandoned(struct walk *w)
{
    uint64_t n = 0;
    for (int c = 0; c < HAK_CLASSES; c++)
        for (struct hak_slab *s = hak_abandoned_head(c); s && n <= (1u << 24); s = s->next) {
            n++;
            if (!s->units || s->size_class != c ||
                atomic_load_explicit(&s->owner, memory_order_relaxed))
                fail(w, s->start, "abandoned slab %#lx (list of class %d): not in use, of "
                     "class %d, or owned", (unsigned long)s->start, c, s->size_class);
        }
    if (n != hak_abandoned_count())
        fail(w, 0, "abandoned lists hold %llu slabs, abandoned_count says %llu",
             (unsigned long long)n, (unsigned long long)hak_abandoned_count());
}

HAK_API int hak_heap_check(struct hak_heap_report *report)
{
    struct walk *w = &(struct walk){.r = report};
    memset(report, 0, sizeof *report);
    report->ok = 1;
    hak_heaps_lock();
    hak_abandoned_lock();
    hak_pool_lock();
    check_pool(w);
    hak_pool_unlock();
    check_abandoned(w);
    hak_abandoned_unlock();
    for (struct hak_heap *h = hak_heaps; h; h = h->next) {
        check_size_table(w, h);
        for (int c = 0; c < HAK_CLASSES; c++)
            check_thread_cache(w, h, c);
    }
    hak_heaps_unlock();
    char msg[sizeof report->message];
    uintptr_t where = 0;
    int large_errors = hak_large_check(msg, sizeof msg, &where);
    if (large_errors) {
        if (!report->errors) {
            memcpy(report->message, msg, sizeof msg);
            report->where = where;
        }
        report->errors += large_errors;
        report->ok = 0;
    }
    return report->ok;
}

/* hak_collect's promise, slab by slab: an owned slab was drained and, if
 * empty, returned; an abandoned one likewise. Pool lock held. */
static void check_collected(struct walk *w, struct hak_superslab *ss)
{
    uintptr_t a = (uintptr_t)ss;
    if (ss->cached || ss->dirty_units)
        fail(w, a, "after a collect: superslab %#lx %s", (unsigned long)a,
             ss->cached ? "is still mapped while empty (cached)"
                        : "has free units whose pages were not given back");
    for (unsigned u = HAK_FIRST_UNIT; u < HAK_UNITS; u++) {
        if (ss->unit_slab[u] != u)
            continue;
        const struct hak_slab *slab = &hak_ss_slabs(ss)[u];
        uint32_t pending = hak_remote_word_count(
            atomic_load_explicit(&slab->remote, memory_order_acquire));
        if (pending || !slab->used)
            fail(w, slab->start, "after a collect: %s slab %#lx (class %u) kept with %u "
                 "block(s) in use, %u of them pending remotely",
                 atomic_load_explicit(&slab->owner, memory_order_relaxed) ? "owned"
                                                                          : "abandoned",
                 (unsigned long)slab->start, slab->size_class, slab->used, pending);
    }
}

HAK_API int hak_heap_check_collected(struct hak_heap_report *report)
{
    if (!hak_heap_check(report))
        return 0;
    struct walk *w = &(struct walk){.r = report};
    hak_heaps_lock();
    hak_abandoned_lock();
    hak_pool_lock();
    for (struct hak_superslab *ss = hak_superslabs; ss; ss = ss->next)
        check_collected(w, ss);
    hak_pool_unlock();
    hak_abandoned_unlock();
    hak_heaps_unlock();
    /* hak_collect flushed the caller's caches first */
    const struct hak_heap *self = hak_tl_heap;
    for (int c = 0; c < HAK_CLASSES; c++)
        if (self->tc[c].top != self->tc[c].base) {
            fail(w, (uintptr_t)self->tc[c].base, "after a collect: the collecting thread's "
                 "cache of class %d still holds %td block(s)", c,
                 self->tc[c].top - self->tc[c].base);
            break;
        }
    uint64_t live, bytes, cached;
    hak_large_stats(&live, &bytes, &cached);
    if (cached)
        fail(w, 0, "after a collect: %llu freed large mapping(s) still cached",
             (unsigned long long)cached);
    return report->ok;
}
