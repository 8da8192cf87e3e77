/* Large blocks: above the mid pool, each block is its own mapping.
 *
 * A hash table (open addressing on the USER pointer, under the large lock)
 * knows every live large block, so free and usable_size recognise one without
 * reading the pointer, and reject what is not ours.
 *
 * Freed mappings go to a small cache (best fit, at most four times the request)
 * instead of munmap, so steady churn of multi-MiB blocks neither pays the
 * syscalls nor faults its pages in again. A header (HAK_LARGE_HEADER bytes
 * before USER, poisoned under ASan) repeats the table entry so the heap walk
 * can cross-check both.
 *
 * Counters: live == table entries; bytes == sum of their map sizes;
 * cached == cache entries, cached_bytes == sum of their sizes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define LARGE_MAGIC 0x68616b4c52474bULL /* "hakLRGK" */

/* 20 slots: with 16, churn of 4 live blocks of log-uniform 64 KiB - 32 MiB
 * evicted and mapped afresh more often, for a higher peak RSS (112-120 MiB
 * against 104-107 MiB over four seeds of bench/large) and 25% more CPU. */
enum {
    PAGE = 4096,
    CACHE_SLOTS = 20,
    TABLE_MIN = 256,
};
static const size_t CACHE_MAX_BYTES = (size_t)256 << 20;

struct large_header {
    uint64_t magic;
    uintptr_t map_base;
    size_t map_size;
    uintptr_t user;
};

struct large_entry {
    uintptr_t user; /* 0: empty, 1: tombstone */
    uintptr_t map_base;
    size_t map_size;
};

struct cached_map {
    uintptr_t base;
    size_t size;
    uint64_t since_ms; /* 0, then when a purge pass first saw it cached (purge.c) */
};

static pthread_mutex_t large_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct large_entry *table;
static size_t table_cap, table_used, table_tombs;
static uint64_t live_count, live_bytes;
static struct cached_map cache[CACHE_SLOTS];
static unsigned cache_count;
static size_t cache_bytes;

void hak_large_lock(void) { hak_global_lock(&large_mutex); }
void hak_large_unlock(void) { hak_mutex_unlock(&large_mutex); }

static size_t slot_of(uintptr_t user, size_t cap)
{
    return (size_t)((user >> 12) * 0x9E3779B97F4A7C15ULL >> 20) & (cap - 1);
}

static struct large_entry *table_find(uintptr_t user)
{
    if (!table)
        return NULL;
    for (size_t i = slot_of(user, table_cap);; i = (i + 1) & (table_cap - 1)) {
        if (table[i].user == user)
            return &table[i];
        if (table[i].user == 0)
            return NULL;
    }
}

static void table_put_raw(struct large_entry *t, size_t cap, struct large_entry e)
{
    size_t i = slot_of(e.user, cap);
    while (t[i].user > 1)
        i = (i + 1) & (cap - 1);
    t[i] = e;
}

static bool table_grow(void)
{
    size_t cap = table_cap ? table_cap * 2 : TABLE_MIN;
    if (table_used * 4 < table_cap)
        cap = table_cap; /* mostly tombstones: rebuild at the same size */
    struct large_entry *t = hak_os_map(cap * sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].user > 1)
            table_put_raw(t, cap, table[i]);
    if (table)
        hak_os_unmap(table, table_cap * sizeof *table);
    table = t;
    table_cap = cap;
    table_tombs = 0;
    return true;
}

/* Room for one more entry, growing the table if need be; false only when the
 * OS refused the bigger table. */
static bool table_reserve(void)
{
    return (table_used + table_tombs + 1) * 2 <= table_cap || table_grow();
}

static bool table_insert(struct large_entry e)
{
    if (!table_reserve())
        return false;
    table_put_raw(table, table_cap, e);
    table_used++;
    return true;
}

static void table_remove(struct large_entry *e)
{
    e->user = 1;
    table_used--;
    table_tombs++;
}

/* A cached mapping for `need` bytes: the smallest that fits (at most 4x the
 * request, to bound waste), else the largest smaller one grown with mremap,
 * which keeps its resident pages so only the new tail faults in. */
static bool cache_take(size_t need, struct cached_map *out)
{
    int fit = -1, grow = -1;
    for (unsigned i = 0; i < cache_count; i++) {
        size_t size = cache[i].size;
        if (size >= need && size / 4 <= need && (fit < 0 || size < cache[fit].size))
            fit = (int)i;
        if (size < need && (grow < 0 || size > cache[grow].size))
            grow = (int)i;
    }
    int pick = fit >= 0 ? fit : grow;
    if (pick < 0)
        return false;
    struct cached_map m = cache[pick];
    cache[pick] = cache[--cache_count];
    cache_bytes -= m.size;
    if (m.size < need) {
        void *moved = hak_os_remap((void *)m.base, m.size, need);
        if (!moved) {
            hak_os_unmap((void *)m.base, m.size);
            return false;
        }
        m = (struct cached_map){(uintptr_t)moved, need, 0};
    }
    *out = m;
    return true;
}

/* Keeps a freed mapping, evicting the oldest entries to make room. */
static void cache_put(uintptr_t base, size_t size)
{
    if (size > CACHE_MAX_BYTES) {
        hak_os_unmap((void *)base, size);
        return;
    }
    while (cache_count == CACHE_SLOTS || cache_bytes + size > CACHE_MAX_BYTES) {
        hak_os_unmap((void *)cache[0].base, cache[0].size);
        cache_bytes -= cache[0].size;
        memmove(cache, cache + 1, --cache_count * sizeof cache[0]);
    }
    hak_poison((void *)base, size);
    cache[cache_count++] = (struct cached_map){base, size, 0}; /* the purge stamps it */
    cache_bytes += size;
    hak_purge_note();
}

bool hak_large_purge(uint64_t now, uint64_t delay)
{
    bool more = false;
    hak_large_lock();
    for (unsigned i = 0; i < cache_count;) {
        /* Entries are stamped by the first pass that sees them (no clock on
         * the free path), so one goes after between one and two delays. */
        if (!cache[i].since_ms && delay) {
            cache[i].since_ms = now;
            more = true;
            i++;
        } else if (!delay || now - cache[i].since_ms >= delay) {
            hak_os_unmap((void *)cache[i].base, cache[i].size);
            cache_bytes -= cache[i].size;
            memmove(cache + i, cache + i + 1, (--cache_count - i) * sizeof cache[0]);
        } else {
            more = true;
            i++;
        }
    }
    hak_large_unlock();
    return more;
}

static void write_header(uintptr_t user, uintptr_t map_base, size_t map_size)
{
    struct large_header *h = (struct large_header *)(user - HAK_LARGE_HEADER);
    hak_unpoison(h, sizeof *h);
    *h = (struct large_header){LARGE_MAGIC, map_base, map_size, user};
    hak_poison(h, HAK_LARGE_HEADER);
}

/* Span to map for `size` usable bytes at `align`: the header, the worst-case
 * padding from the (page-aligned) mapping to an aligned USER, rounded to
 * pages. 0: too big. */
static size_t span_for(size_t size, size_t align)
{
    size_t pad = align > HAK_ALIGN ? align : 0;
    size_t span;
    if (__builtin_add_overflow(size, (size_t)HAK_LARGE_HEADER + pad + PAGE - 1, &span) ||
        span > PTRDIFF_MAX)
        return 0;
    return span & ~(size_t)(PAGE - 1);
}

void *hak_large_alloc(size_t size, size_t align, bool zero)
{
    size_t span = span_for(size, align);
    if (!span) {
        errno = ENOMEM;
        return NULL;
    }
    struct cached_map m;
    bool reused;
    hak_large_lock();
    reused = cache_take(span, &m);
    if (!reused) {
        m.base = (uintptr_t)hak_os_map(span);
        m.size = span;
    }
    uintptr_t user = 0;
    if (m.base) {
        user = (m.base + HAK_LARGE_HEADER + align - 1) & ~(uintptr_t)(align - 1);
        /* The header before the entry, both under the lock: a fork() copies
         * either neither or both. */
        write_header(user, m.base, m.size);
        if (table_insert((struct large_entry){user, m.base, m.size})) {
            live_count++;
            live_bytes += m.size;
        } else {
            hak_os_unmap((void *)m.base, m.size);
            user = 0;
        }
    }
    hak_large_unlock();
    if (!user) {
        errno = ENOMEM;
        return NULL;
    }
    hak_unpoison((void *)user, m.base + m.size - user);
    if (zero && reused)
        memset((void *)user, 0, m.base + m.size - user);
    return (void *)user;
}

bool hak_large_free(void *user)
{
    hak_large_lock();
    struct large_entry *e = table_find((uintptr_t)user);
    if (!e) {
        hak_large_unlock();
        return false;
    }
    uintptr_t base = e->map_base;
    size_t size = e->map_size;
    table_remove(e);
    live_count--;
    live_bytes -= size;
    cache_put(base, size);
    hak_large_unlock();
    return true;
}

bool hak_large_info(const void *user, uintptr_t *map_base, size_t *map_size)
{
    hak_large_lock();
    struct large_entry *e = table_find((uintptr_t)user);
    if (e) {
        *map_base = e->map_base;
        *map_size = e->map_size;
    }
    hak_large_unlock();
    return e != NULL;
}

size_t hak_large_usable(const void *user)
{
    uintptr_t base;
    size_t size;
    if (!hak_large_info(user, &base, &size))
        return 0;
    return base + size - (uintptr_t)user;
}

/* Grows or shrinks in place when the mapping allows, else mremap for plain
 * blocks, else allocate-copy-free. NULL with the old block intact on failure. */
void *hak_large_realloc(void *user, size_t size)
{
    uintptr_t base;
    size_t map_size;
    if (!hak_large_info(user, &base, &map_size)) {
        hak_report_misuse("realloc of a pointer hakmem does not own", user);
        errno = EINVAL;
        return NULL;
    }
    size_t usable = base + map_size - (uintptr_t)user;
    if (size <= usable && size > usable / 2)
        return user;
    size_t span = span_for(size, HAK_ALIGN);
    if (!span) {
        errno = ENOMEM;
        return NULL;
    }
    if ((uintptr_t)user - base == HAK_LARGE_HEADER) {
        hak_large_lock();
        /* The moved block's entry must go in once its mapping has moved (or
         * free and usable_size would no longer know it), and the table may
         * need to grow for it: grow it first, before the entry is looked up
         * (a growth moves the entries). A removal and an insertion leave the
         * table's load as it was, so the insertion below then needs no growth. */
        struct large_entry *e = table_reserve() ? table_find((uintptr_t)user) : NULL;
        void *moved = e ? hak_os_remap((void *)base, map_size, span) : NULL;
        if (moved) {
            table_remove(e);
            uintptr_t nuser = (uintptr_t)moved + HAK_LARGE_HEADER;
            write_header(nuser, (uintptr_t)moved, span);
            table_insert((struct large_entry){nuser, (uintptr_t)moved, span});
            live_bytes += span - map_size;
            hak_large_unlock();
            hak_unpoison((void *)nuser, span - HAK_LARGE_HEADER);
            return (void *)nuser;
        }
        hak_large_unlock();
    }
    void *p = hak_malloc(size);
    if (!p)
        return NULL;
    memcpy(p, user, usable < size ? usable : size);
    hak_free(user);
    return p;
}

void hak_large_stats(uint64_t *live, uint64_t *bytes, uint64_t *cached)
{
    hak_large_lock();
    *live = live_count;
    *bytes = live_bytes;
    *cached = cache_count;
    hak_large_unlock();
}

/* Cross-checks every table entry against its header and the counters.
 * Returns the number of violations; the first is described in msg. */
int hak_large_check(char *msg, size_t cap, uintptr_t *where)
{
    int errors = 0;
    uint64_t n = 0, bytes = 0;
    hak_large_lock();
    for (size_t i = 0; i < table_cap; i++) {
        struct large_entry *e = &table[i];
        if (e->user <= 1)
            continue;
        n++;
        bytes += e->map_size;
        struct large_header *h = (struct large_header *)(e->user - HAK_LARGE_HEADER);
        hak_unpoison(h, sizeof *h);
        bool bad = h->magic != LARGE_MAGIC || h->map_base != e->map_base ||
                   h->map_size != e->map_size || h->user != e->user ||
                   e->user < e->map_base + HAK_LARGE_HEADER ||
                   e->user >= e->map_base + e->map_size || e->user % HAK_ALIGN;
        hak_poison(h, HAK_LARGE_HEADER);
        if (bad && errors++ == 0) {
            snprintf(msg, cap, "large block %#lx: header or table entry corrupt (map %#lx+%zu)",
                     (unsigned long)e->user, (unsigned long)e->map_base, e->map_size);
            *where = e->user;
        }
    }
    if ((n != live_count || bytes != live_bytes) && errors++ == 0) {
        snprintf(msg, cap, "large counters: live %llu bytes %llu, table holds %llu blocks %llu bytes",
                 (unsigned long long)live_count, (unsigned long long)live_bytes,
                 (unsigned long long)n, (unsigned long long)bytes);
        *where = 0;
    }
    hak_large_unlock();
    return errors;
}
