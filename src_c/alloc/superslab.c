/* The shared slab pool: 2 MiB superslabs carved into slabs of any class.
 *
 * All mapped superslabs sit on one list under the pool lock, those with free
 * units at the front and full ones at the back, so a search for free units
 * stops at the first full superslab. An emptied superslab is parked (cached)
 * rather than unmapped, up to HAK_SS_CACHE_MAX of them, so steady churn does
 * not turn into mmap/munmap pairs.
 */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

struct hak_superslab *hak_superslabs;
static unsigned cached_count;
/* Units on dirty_units lists, all superslabs (pool lock). The purge thread is
 * told only once they reach PURGE_MIN_UNITS (1 MiB) or a superslab empties:
 * the odd slab a steady state hands back and takes again is not worth a
 * thread or a syscall. */
static unsigned dirty_total;
enum { PURGE_MIN_UNITS = 16 };
static uint64_t mapped_count;
/* Units a slab can take in one superslab: all of them when it is empty. */
enum { SLAB_UNITS = HAK_UNITS - HAK_FIRST_UNIT };


static void list_unlink(struct hak_superslab *ss)
{
    if (ss->prev)
        ss->prev->next = ss->next;
    else
        hak_superslabs = ss->next;
    if (ss->next)
        ss->next->prev = ss->prev;
    ss->next = ss->prev = NULL;
}

static void list_push_front(struct hak_superslab *ss)
{
    ss->prev = NULL;
    ss->next = hak_superslabs;
    if (hak_superslabs)
        hak_superslabs->prev = ss;
    hak_superslabs = ss;
}

static void list_push_back(struct hak_superslab *ss)
{
    struct hak_superslab *tail = hak_superslabs;
    if (!tail) {
        list_push_front(ss);
        return;
    }
    while (tail->next)
        tail = tail->next;
    tail->next = ss;
    ss->prev = tail;
    ss->next = NULL;
}

static struct hak_superslab *superslab_map(void)
{
    struct hak_superslab *ss = hak_os_map_aligned(HAK_SS_SIZE, HAK_SS_SIZE);
    if (!ss)
        return NULL;
    ss->magic = HAK_SS_MAGIC;
    atomic_init(&ss->active, 0);
    ss->free_units = SLAB_UNITS;
    ss->dirty_units = 0;
    ss->dirty_ms = 0;
    ss->cached = false;
    /* The header's units too: their key stays 0 and their lead
     * HAK_UNIT_FREE, so no lookup finds a slab there. */
    memset(ss->unit_slab, HAK_UNIT_FREE, sizeof ss->unit_slab);
    for (unsigned u = 0; u < HAK_UNITS; u++)
        hak_ss_slabs(ss)[u].lead = HAK_UNIT_FREE;
    /* Everything after the header, the unused rest of its unit included, is
     * poisoned until a slab carves it. */
    hak_poison((uint8_t *)ss + HAK_SS_HEADER_BYTES, HAK_SS_SIZE - HAK_SS_HEADER_BYTES);
    hak_registry_set((uintptr_t)ss, true);
    mapped_count++;
    list_push_front(ss);
    return ss;
}

static void superslab_unmap(struct hak_superslab *ss)
{
    dirty_total -= (unsigned)__builtin_popcount(ss->dirty_units);
    ss->dirty_units = 0;
    list_unlink(ss);
    hak_registry_set((uintptr_t)ss, false);
    mapped_count--;
    hak_os_unmap(ss, HAK_SS_SIZE);
}

/* First run of `units` free units in ss (from HAK_FIRST_UNIT: the header's
 * units are never a slab's), or -1; *same is set when the run starts where a
 * slab of `size_class` last lay (its descriptor keeps the class after the
 * slab is returned). */
static int find_units(const struct hak_superslab *ss, unsigned units, int size_class, bool *same)
{
    int first_fit = -1;
    unsigned run = 0;
    for (unsigned u = HAK_FIRST_UNIT; u < HAK_UNITS; u++) {
        run = ss->unit_slab[u] == HAK_UNIT_FREE ? run + 1 : 0;
        if (run < units)
            continue;
        unsigned start = u + 1 - units;
        if (hak_ss_slabs(ss)[start].size_class == size_class) {
            *same = true;
            return (int)start;
        }
        if (first_fit < 0)
            first_fit = (int)start;
    }
    *same = false;
    return first_fit;
}

static struct hak_slab *carve_slab(struct hak_superslab *ss, unsigned first, int size_class)
{
    unsigned units = hak_class_units[size_class];
    if (ss->cached) {
        ss->cached = false;
        cached_count--;
    }
    for (unsigned u = first; u < first + units; u++)
        ss->unit_slab[u] = hak_ss_slabs(ss)[u].lead = (uint8_t)first;
    uint32_t taken = ss->dirty_units & (((1u << units) - 1) << first);
    dirty_total -= (unsigned)__builtin_popcount(taken);
    ss->dirty_units &= ~taken;
    ss->free_units -= units;
    if (ss->free_units == 0) {
        list_unlink(ss);
        list_push_back(ss);
    }
    struct hak_slab *slab = &hak_ss_slabs(ss)[first];
    hak_slab_format(slab, ss, first, units, size_class);
    hak_slab_publish(slab);
    return slab;
}

/* Prefers units a slab of the same class last used: the same block layout
 * touches the same pages, where the layout of another class makes more of the
 * superslab resident (mid churn: 20 MiB against 14 MiB). The search for such
 * units gives up POOL_SCAN superslabs after the first fit. */
enum { POOL_SCAN = 16 };

struct hak_slab *hak_pool_take_slab(int size_class)
{
    unsigned units = hak_class_units[size_class];
    struct hak_slab *slab = NULL;
    struct hak_superslab *fit_ss = NULL;
    int fit = -1;
    unsigned after_fit = 0;
    hak_pool_lock();
    for (struct hak_superslab *ss = hak_superslabs;
         ss && ss->free_units && after_fit < POOL_SCAN; ss = ss->next) {
        after_fit += fit_ss != NULL;
        bool same;
        int first = ss->free_units >= units ? find_units(ss, units, size_class, &same) : -1;
        if (first >= 0 && same) {
            fit_ss = ss;
            fit = first;
            break;
        }
        if (first >= 0 && !fit_ss) {
            fit_ss = ss;
            fit = first;
        }
    }
    if (fit_ss)
        slab = carve_slab(fit_ss, (unsigned)fit, size_class);
    if (!slab) {
        struct hak_superslab *ss = superslab_map();
        if (ss)
            slab = carve_slab(ss, HAK_FIRST_UNIT, size_class);
    }
    hak_pool_unlock();
    return slab;
}

/* The slab must hold no block: used == 0 and nothing pending remotely. */
void hak_pool_return_slab(struct hak_slab *slab)
{
    struct hak_superslab *ss = slab->ss;
    unsigned first = (unsigned)(slab - hak_ss_slabs(ss));
    uintptr_t unit0 = (uintptr_t)ss + ((uintptr_t)first << HAK_UNIT_SHIFT);
    uintptr_t end = unit0 + ((uintptr_t)slab->units << HAK_UNIT_SHIFT);
    hak_pool_lock();
    for (unsigned u = first; u < first + slab->units; u++) {
        ss->unit_slab[u] = hak_ss_slabs(ss)[u].lead = HAK_UNIT_FREE;
        atomic_store_explicit(&hak_ss_keys(ss)[u], 0, memory_order_relaxed);
    }
    ss->free_units += slab->units;
    if (!ss->dirty_units)
        ss->dirty_ms = 0; /* stamped by the next purge pass: no clock here */
    ss->dirty_units |= ((1u << slab->units) - 1) << first;
    dirty_total += slab->units;
    if (dirty_total >= PURGE_MIN_UNITS || ss->free_units == SLAB_UNITS)
        hak_purge_note();
    hak_poison((void *)slab->start, end - slab->start);
    slab->units = 0;
    atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
    if (ss->free_units == SLAB_UNITS) {
        if (cached_count < HAK_SS_CACHE_MAX) {
            ss->dirty_ms = 0; /* cached from the next purge pass on */
            ss->cached = true;
            cached_count++;
        } else {
            superslab_unmap(ss);
            ss = NULL;
        }
    }
    if (ss && ss->prev) {
        list_unlink(ss);
        list_push_front(ss);
    }
    hak_pool_unlock();
}

/* madvise(DONTNEED) on every run of dirty free units (never the header's:
 * they are never a slab's, so never dirty). Pool lock held. */
static void purge_units(struct hak_superslab *ss)
{
    uint32_t dirty = ss->dirty_units;
    for (unsigned u = 0; u < HAK_UNITS;) {
        if (!(dirty >> u & 1)) {
            u++;
            continue;
        }
        unsigned end = u;
        while (end < HAK_UNITS && (dirty >> end & 1))
            end++;
        uintptr_t from = (uintptr_t)ss + ((uintptr_t)u << HAK_UNIT_SHIFT);
        uintptr_t to = (uintptr_t)ss + ((uintptr_t)end << HAK_UNIT_SHIFT);
        madvise((void *)from, to - from, MADV_DONTNEED);
        u = end;
    }
    dirty_total -= (unsigned)__builtin_popcount(dirty);
    ss->dirty_units = 0;
}

bool hak_pool_purge(uint64_t now, uint64_t delay)
{
    bool more = false;
    hak_pool_lock();
    struct hak_superslab *ss = hak_superslabs;
    while (ss) {
        struct hak_superslab *next = ss->next;
        if ((ss->cached || ss->dirty_units) && !ss->dirty_ms && delay) {
            ss->dirty_ms = now; /* first seen by a pass: due one delay from now */
            more = true;
            ss = next;
            continue;
        }
        bool due = !delay || now - ss->dirty_ms >= delay;
        if (ss->cached) {
            if (due) {
                ss->cached = false;
                cached_count--;
                superslab_unmap(ss);
            } else {
                more = true;
            }
        } else if (ss->dirty_units) {
            if (due)
                purge_units(ss);
            else
                more = true;
        }
        ss = next;
    }
    hak_pool_unlock();
    return more;
}

void hak_pool_stats(uint64_t *mapped, uint64_t *cached, uint64_t *dirty)
{
    *mapped = mapped_count;
    *cached = cached_count;
    *dirty = dirty_total;
}
