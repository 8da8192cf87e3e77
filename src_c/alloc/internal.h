/* hakmem internals: the one header every allocator file includes.
 *
 * Memory layout
 *   superslab  a 2 MiB region aligned to 2 MiB, split into 32 units of 64 KiB.
 *              Unit 0 holds its header (struct hak_superslab, the unit keys and
 *              the descriptors: about 8 KiB, up to 3 pages resident, the rest
 *              of the unit never touched) and is never part of a slab, so every
 *              slab starts on a unit boundary and no block shares a unit with
 *              the header: the free fast path needs no header test, and a
 *              slab's block layout does not depend on where it was placed.
 *              The price is 56 KiB of address space per superslab, and 31
 *              units for slabs instead of 31.9.
 *   slab       a run of 1..8 contiguous units serving one size class. Any
 *              class can take units of any superslab (shared pool). The slab
 *              descriptor lives in the superslab header, indexed by its first
 *              unit, so pointer -> slab is: align down to 2 MiB, unit index,
 *              unit_slab[] -> descriptor. No syscall, no search. The free
 *              path's common case needs only a unit key: one word per unit,
 *              next to the descriptors (owner, class; see hak_ss_keys).
 *   registry   a flat byte map with one entry per 2 MiB chunk of the address
 *              space, set while a superslab is mapped there. A pointer whose
 *              chunk is not registered is never dereferenced as ours.
 *   large      blocks above the mid pool get their own mapping; a hash table
 *              (large.c) knows every live one, so they too are recognised
 *              without touching the pointer.
 *
 * Ownership
 *   Each slab has one owning thread heap (or none: abandoned). Only the owner
 *   touches the slab's local free list and its owner-only counters; other
 *   threads free into the slab's lock-free remote list (remote.c).
 */
#ifndef HAKMEM_INTERNAL_H
#define HAKMEM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"
#include "hakmem_debug.h"
#include "inject.h"
#include "poison.h"
#include "syncpoint.h"

#define HAK_API __attribute__((visibility("default")))
#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_TLS _Thread_local __attribute__((tls_model("initial-exec")))

#ifndef HAK_DEBUG
#define HAK_DEBUG 0
#endif
#ifndef HAK_VARIANT_NAME
#define HAK_VARIANT_NAME "unknown"
#endif

enum {
    HAK_ALIGN = 16,
    HAK_SS_SHIFT = 21,
    HAK_UNIT_SHIFT = 16,
    HAK_UNITS = 32,
    HAK_FIRST_UNIT = 1, /* unit 0 is the header's */
    HAK_MAX_SLAB_UNITS = 8,
    HAK_TINY_CLASSES = 20,
    HAK_CLASSES = 44, /* <= HAK_NUM_CLASSES */
    HAK_TINY_MAX = 1024,
    HAK_MID_MAX = 65536,
    HAK_SS_CACHE_MAX = 4,
    HAK_UNIT_FREE = 0xff,
};

#define HAK_SS_SIZE ((uintptr_t)1 << HAK_SS_SHIFT)
#define HAK_UNIT_SIZE ((uintptr_t)1 << HAK_UNIT_SHIFT)
#define HAK_SS_MAGIC 0x68616b5353ULL /* "hakSS" */

struct hak_heap;
struct hak_superslab;

/* Per-slab counters and their identities (kept by slab.c, remote.c, heap.c):
 *   carved <= capacity                  blocks ever cut from the bump region
 *   used + free_len == carved           a carved block is on the local free
 *                                       list, or it is "used": held by a caller,
 *                                       on a thread cache, or on the remote list
 *   remote_pending == |remote list|     always: the count is packed into the
 *                                       same word as the list head (bits
 *                                       48-63) and changes in the push's CAS
 *                                       and the drain's exchange, so no
 *                                       moment (a fork included) sees them
 *                                       disagree
 *   remote_pending <= used
 * Per superslab:
 *   active == sum of used over its slabs (updated in the same batch as used)
 * Per class, at quiescent points:
 *   sum(used) - sum(remote_pending) - sum(thread cache lengths) == live blocks
 */
/* 128 bytes, 64-aligned (the fields hak_slab_in and free read share the
 * first cache line): a descriptor is found with a shift, not a multiply. */
struct hak_slab {
    /* owner-only, hot */
    _Alignas(64) void *free; /* local free list (singly linked through blocks) */
    uint32_t free_len;
    uint32_t used;
    uint32_t carved;
    uint32_t capacity;
    uint32_t block_size;
    uintptr_t start;        /* address of block 0 */
    uint64_t div_mul;       /* 2^40 / block_size + 1: block index by multiply */
    uint16_t size_class;
    uint8_t lead;           /* first unit of the slab covering this unit's slot,
                             * HAK_UNIT_FREE if none: mirrors unit_slab[] so that
                             * hak_slab_in finds a one-unit slab from the address
                             * alone (this field sits in the descriptor it reads) */
    uint8_t units;          /* 0: descriptor not in use */
    _Atomic uint8_t has_aligned; /* an interior (aligned) pointer was handed out */
    bool full;              /* on the heap's full list, not its partial list */
    /* shared */
    _Atomic(struct hak_heap *) owner;   /* NULL: abandoned */
    _Atomic uintptr_t remote;           /* remote list: count << 48 | head */
    /* list links: the owner's partial/full list, or the abandoned list */
    struct hak_slab *next;
    struct hak_slab *prev;
    struct hak_superslab *ss;
};

struct hak_superslab {
    uint64_t magic;
    struct hak_superslab *next;     /* all mapped superslabs (pool lock) */
    struct hak_superslab *prev;
    _Atomic uint64_t active;
    uint32_t free_units;            /* pool lock: free slab units, at most
                                     * HAK_UNITS - HAK_FIRST_UNIT (empty) */
    uint32_t dirty_units;           /* pool lock: free units whose pages may be
                                     * resident (a bit per unit; purge.c) */
    uint64_t dirty_ms;              /* pool lock: 0, then when a purge pass first
                                     * saw dirty units (or the superslab cached) */
    bool cached;                    /* empty and parked in the superslab cache */
    uint8_t unit_slab[HAK_UNITS];   /* first unit of the slab covering a unit;
                                     * HAK_UNIT_FREE for a free unit and, for
                                     * good, for the units before HAK_FIRST_UNIT */
    /* then, at its colour's offset (hak_ss_slabs), the HAK_UNITS slab descriptors */
};
_Static_assert(sizeof(struct hak_slab) == 128, "descriptor index is a shift");

/* The remote list word: user addresses fit in 48 bits, and a slab holds at
 * most 64 KiB * 8 / 16 = 32768 blocks, so the length fits in the top 16. */
enum { HAK_REMOTE_COUNT_SHIFT = 48 };
#define HAK_REMOTE_PTR_MASK (((uintptr_t)1 << HAK_REMOTE_COUNT_SHIFT) - 1)

static inline void *hak_remote_word_head(uintptr_t word)
{
    return (void *)(word & HAK_REMOTE_PTR_MASK);
}

static inline uint32_t hak_remote_word_count(uintptr_t word)
{
    return (uint32_t)(word >> HAK_REMOTE_COUNT_SHIFT);
}

/* remote_pending: blocks on the slab's remote list, read in one load. */
static inline uint32_t hak_remote_pending(const struct hak_slab *slab)
{
    return hak_remote_word_count(
        atomic_load_explicit(&((struct hak_slab *)slab)->remote, memory_order_relaxed));
}

/* After the superslab header, at an offset that depends on the superslab's
 * address (its colour: address bits 21-25, in steps of the key array's size),
 * come the unit keys and then the slab descriptors. At one fixed offset the
 * same line of every superslab fell into the same few cache sets. The colour
 * costs no load. */
enum { HAK_SS_COLORS = 32 };
#define HAK_SS_COLORED_OFFSET ((sizeof(struct hak_superslab) + 63) & ~(size_t)63)
#define HAK_SS_KEYS_BYTES (HAK_UNITS * sizeof(uint32_t))
/* The header's bytes: room for keys and descriptors at any colour. The rest
 * of unit 0 is never written (and stays poisoned under ASan). */
#define HAK_SS_HEADER_BYTES                                                          \
    (HAK_SS_COLORED_OFFSET + HAK_SS_COLORS * HAK_SS_KEYS_BYTES +                     \
     HAK_UNITS * sizeof(struct hak_slab))
_Static_assert(HAK_SS_HEADER_BYTES <= HAK_FIRST_UNIT * HAK_UNIT_SIZE,
               "the header fits in the units before the first slab unit");

static inline unsigned hak_ss_color(uintptr_t a)
{
    return (unsigned)(a >> HAK_SS_SHIFT) & (HAK_SS_COLORS - 1);
}

static inline uintptr_t hak_ss_colored(const struct hak_superslab *ss)
{
    uintptr_t a = (uintptr_t)ss;
    return a + HAK_SS_COLORED_OFFSET + hak_ss_color(a) * HAK_SS_KEYS_BYTES;
}

/* The free path's key of each unit, one dense word per unit, so that an
 * owner's free reads one word and no descriptor (32 descriptors per superslab
 * do not stay in L1; 128 bytes of keys do):
 *   bits 16-31  owner heap's id (0: no owner)
 *   bit  12     HAK_KEY_SLOW: the slab handed out an aligned interior pointer
 *   bits 0-11   the byte offset of the class's cache in struct hak_heap
 *               (class * sizeof(struct hak_tcache)), so free indexes it as is
 * 0 for a free unit and for unit 0 (the header's, never a slab: its key is
 * never written): no heap's free_key is 0 (ids start at 1), so a free of a
 * header address fails the fast path's one comparison. Whoever changes a
 * slab's owner, class or has_aligned republishes its key (hak_slab_publish);
 * hak_heap_check verifies every key against the descriptors, unit 0's
 * included. */
enum { HAK_KEY_CACHE = 0xfff, HAK_KEY_SLOW = 1u << 12, HAK_KEY_OWNER_SHIFT = 16 };

static inline _Atomic uint32_t *hak_ss_keys(const struct hak_superslab *ss)
{
    return (_Atomic uint32_t *)hak_ss_colored(ss);
}

static inline struct hak_slab *hak_ss_slabs(const struct hak_superslab *ss)
{
    return (struct hak_slab *)(hak_ss_colored(ss) + HAK_SS_KEYS_BYTES);
}

/* The key of the unit holding address a, in superslab ss. Unit and colour
 * are adjacent address bits (16-20, 21-25) and a colour step is the key
 * array's size, so colour * 32 + unit indexes the keys from the colour-0
 * position: one shift and one mask. */
static inline _Atomic uint32_t *hak_unit_key(const struct hak_superslab *ss, uintptr_t a)
{
    uintptr_t index = (a >> HAK_UNIT_SHIFT) & (HAK_SS_COLORS * HAK_UNITS - 1);
    return (_Atomic uint32_t *)((uintptr_t)ss + HAK_SS_COLORED_OFFSET) + index;
}

/* Thread cache of one class: a bounded stack of free blocks of slabs this heap
 * owns. It lives in the heap's slot array, not linked through the blocks, so
 * malloc and free touch no block memory (a cold freed block is never written,
 * a fresh carve never touched) and update one word: the count is top - base,
 * not a second counter in a store-to-load chain. Blocks on it count as `used`
 * in their slab. */
struct hak_tcache {
    void **top;     /* one past the most recently cached block */
    void **base;    /* empty when top == base */
    void **end;     /* full when top == end (base + the class's limit) */
};

static inline uint32_t hak_tcache_count(const struct hak_tcache *tc)
{
    return (uint32_t)(tc->top - tc->base);
}

/* Debug and introspection only. */
static inline bool hak_tcache_holds(const struct hak_tcache *tc, const void *block)
{
    for (void **slot = tc->base; slot < tc->top; slot++)
        if (*slot == block)
            return true;
    return false;
}

struct hak_slab_list {
    struct hak_slab *head;
};

struct hak_heap {
    struct hak_tcache tc[HAK_CLASSES];
    uint64_t free_key;      /* its id << HAK_KEY_OWNER_SHIFT; UINT32_MAX (matches
                             * no unit key) for the empty heap, and for heaps
                             * created once the 16-bit ids ran out. A 32-bit
                             * value in 64 bits (the padding before partial[]):
                             * free's xor with the zero-extended key then needs
                             * no extension of its own */
    struct hak_slab_list partial[HAK_CLASSES]; /* may have free blocks; head is current */
    /* The byte offset of the cache serving each tiny size, indexed by the size
     * itself (0..HAK_TINY_MAX): the drop-in's malloc then goes from a size to
     * its cache in one load, based on the heap pointer it has already loaded,
     * where a global class table took four instructions (round, shift, the
     * table's address, the load) and a multiply to scale the class. 2 KiB per
     * heap, filled once when the heap is made (hak_heap_check verifies it).
     * Left zero in the empty heap, whose caches are all empty: any offset
     * there leads to the refill, which takes the size, not the class
     * (hak_tiny_pop). */
    uint16_t tiny_cache[HAK_TINY_MAX + 1];
    struct hak_slab_list full[HAK_CLASSES];    /* had none at last look */
    uint64_t serial;
    struct hak_heap *next;  /* heap list (heaps lock) */
    struct hak_heap *prev;
    /* Held by the owning thread around every slow path that changes the heap's
     * lists, its slabs' owner-only fields or its caches' contents beyond one
     * push or pop (refill, flush, adoption, abandonment); by the purge when it
     * drains an idle heap; and by fork_prepare for every heap, so a fork never
     * copies a heap in the middle of such a change. The fast paths (one push
     * or pop) take no lock: each is one slot store and one top store. */
    pthread_mutex_t lock;
    uint64_t slow_ops;      /* slow paths run (under lock): the purge's idle test */
    uint64_t purge_seen;    /* slow_ops when the purge last looked (purge only) */
    void *slots[];          /* every class's cache: tc[c].base .. tc[c].end */
};
_Static_assert(offsetof(struct hak_heap, tc) == 0 &&
                   sizeof(((struct hak_heap *)0)->tc) <= HAK_KEY_CACHE + 1,
               "a unit key holds the byte offset of a cache in the heap");

/* ---- size classes (size_class.c) ---- */
extern const uint32_t hak_class_size[HAK_CLASSES];
extern const uint8_t hak_class_units[HAK_CLASSES];
extern const uint16_t hak_class_tcache_limit[HAK_CLASSES];

extern const uint8_t hak_tiny_class[HAK_TINY_MAX / 16 + 1];

/* Classes: 16..128 step 16, then four steps per power of two up to 64 KiB. */
static inline int hak_class_of(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_tiny_class[(size + 15) >> 4];
    size_t s = size - 1;
    int e = 63 - __builtin_clzl(s);
    return 8 + (e - 7) * 4 + (int)((s >> (e - 2)) - 4);
}

/* ---- registry (registry.c) ---- */
#define HAK_REGISTRY_CHUNKS ((uintptr_t)1 << (47 - HAK_SS_SHIFT))
extern _Atomic uint8_t hak_registry_map[HAK_REGISTRY_CHUNKS];
void hak_registry_set(uintptr_t ss, bool owned);

/* Does address a lie in a mapped superslab? One load; a itself is not read. */
static inline bool hak_registered(uintptr_t a)
{
    uintptr_t chunk = a >> HAK_SS_SHIFT;
    return HAK_LIKELY(chunk < HAK_REGISTRY_CHUNKS) &&
           atomic_load_explicit(&hak_registry_map[chunk], memory_order_acquire);
}

static inline struct hak_superslab *hak_superslab_at(uintptr_t a)
{
    return (struct hak_superslab *)(a & ~(HAK_SS_SIZE - 1));
}

static inline struct hak_superslab *hak_superslab_of(const void *p)
{
    return hak_registered((uintptr_t)p) ? hak_superslab_at((uintptr_t)p) : NULL;
}

/* The value as it is, hidden from the optimiser: it can no longer rewrite
 * an expression of it in terms of where it came from. No instruction. */
static inline uintptr_t hak_opaque(uintptr_t v)
{
    __asm__("" : "+r"(v));
    return v;
}

/* hak_superslab_of for the free fast path, in 9 instructions where it took
 * 11 (of the 27 of a drop-in free): the one shift that gives the chunk serves
 * the bound test, the registry index and, shifted back, the superslab's
 * address. Left visible, the compiler turned the bound test into a second
 * shift of the pointer and the address into a mask of it (a copy and an
 * instruction each); hak_opaque stops it. Relaxed suffices: a pointer that is
 * ours came from an allocation ordered after its superslab's registration,
 * and a foreign one is only compared, never dereferenced. (A plain volatile
 * read would fold into the comparison, one instruction less, but ThreadSanitizer
 * would then see a race with the registration of a superslab where a large
 * block, or a foreign one, had been freed.) False: not in a registered
 * superslab (a bool, not a NULL superslab, which the caller would then test
 * again). */
static inline bool hak_superslab_fast(uintptr_t a, struct hak_superslab **ss)
{
    uintptr_t chunk = hak_opaque(a >> HAK_SS_SHIFT);
    if (HAK_UNLIKELY(chunk >= HAK_REGISTRY_CHUNKS) ||
        HAK_UNLIKELY(!atomic_load_explicit(&hak_registry_map[chunk], memory_order_relaxed)))
        return false;
    *ss = (struct hak_superslab *)(chunk << HAK_SS_SHIFT);
    return true;
}

/* Slab covering p, or NULL when p lies in the header's unit or a free unit
 * (the lead of both is HAK_UNIT_FREE). The descriptor address is computed
 * from p; only units after the first of a multi-unit slab take a second
 * (forwarding) load. A slab starts at its first unit, so p is never before
 * its start. */
static inline struct hak_slab *hak_slab_in(struct hak_superslab *ss, const void *p)
{
    uintptr_t unit = ((uintptr_t)p - (uintptr_t)ss) >> HAK_UNIT_SHIFT;
    struct hak_slab *slabs = hak_ss_slabs(ss);
    struct hak_slab *slab = &slabs[unit];
    uint8_t lead = slab->lead;
    if (HAK_UNLIKELY(lead != unit)) {
        if (lead == HAK_UNIT_FREE)
            return NULL;
        slab = &slabs[lead];
    }
    return slab;
}

static inline uint32_t hak_block_index(const struct hak_slab *slab, uintptr_t p)
{
    return (uint32_t)(((uint64_t)(p - slab->start) * slab->div_mul) >> 40);
}

/* The one USER -> BASE conversion for slab blocks. */
static inline uintptr_t hak_block_base(const struct hak_slab *slab, uintptr_t user)
{
    return slab->start + (uintptr_t)hak_block_index(slab, user) * slab->block_size;
}

/* USER -> BASE as the free path does it: only slabs that handed out an
 * aligned interior pointer need the division. */
static inline uintptr_t hak_user_to_base(const struct hak_slab *slab, uintptr_t user)
{
    if (HAK_UNLIKELY(atomic_load_explicit(&slab->has_aligned, memory_order_relaxed)))
        return hak_block_base(slab, user);
    return user;
}

/* ---- free-list links inside free blocks (kept poisoned under ASan) ---- */
static inline void *hak_next_get(void *block)
{
    hak_unpoison(block, sizeof(void *));
    void *next = *(void **)block;
    hak_poison(block, sizeof(void *));
    return next;
}

static inline void hak_next_set(void *block, void *next)
{
    hak_unpoison(block, sizeof(void *));
    *(void **)block = next;
    hak_poison(block, sizeof(void *));
}

/* Is `block` on the free chain starting at `head` (looked at for at most
 * limit + 1 links, so a looping chain ends)? Debug and introspection only. */
static inline bool hak_chain_holds(void *head, const void *block, uint64_t limit)
{
    for (uint64_t i = 0; head && i <= limit; i++, head = hak_next_get(head))
        if (head == block)
            return true;
    return false;
}

/* ---- os.c ---- */
void *hak_os_map(size_t size);
void *hak_os_map_aligned(size_t size, size_t align);
void hak_os_unmap(void *p, size_t size);
void *hak_os_remap(void *p, size_t old_size, size_t new_size);
void hak_os_stats(uint64_t *mapped, uint64_t *maps);

/* ---- locks.c: the locks, taken in this order: heaps, one heap's lock (all of
 * them, in heap-list order, only in fork_prepare), abandoned, pool, large. A
 * thread holding its heap's lock never takes the heaps lock. ---- */
void hak_pool_lock(void);
void hak_pool_unlock(void);
void hak_heaps_lock(void);
void hak_heaps_unlock(void);
void hak_abandoned_lock(void);
void hak_abandoned_unlock(void);

static inline void hak_heap_lock(struct hak_heap *heap)
{
    hak_mutex_lock(&heap->lock);
}

static inline void hak_heap_unlock(struct hak_heap *heap)
{
    hak_mutex_unlock(&heap->lock);
}

/* ---- superslab.c: the shared slab pool ---- */
struct hak_slab *hak_pool_take_slab(int size_class);
void hak_pool_return_slab(struct hak_slab *slab);
extern struct hak_superslab *hak_superslabs;  /* pool lock */
void hak_pool_stats(uint64_t *mapped, uint64_t *cached, uint64_t *dirty);
/* Gives back free units dirty for `delay` ms (madvise) and empty superslabs
 * cached that long (munmap); true if some are left for later. */
bool hak_pool_purge(uint64_t now, uint64_t delay);

/* ---- slab.c ---- */
void hak_slab_format(struct hak_slab *slab, struct hak_superslab *ss, unsigned first_unit,
                     unsigned units, int size_class);
uint32_t hak_slab_take(struct hak_slab *slab, uint32_t want, void **out);
void hak_slab_put_chain(struct hak_slab *slab, void *head, void *tail, uint32_t n);
uint32_t hak_slab_key(const struct hak_slab *slab);
void hak_slab_publish(struct hak_slab *slab);

/* ---- remote.c ---- */
void hak_remote_push(struct hak_slab *slab, void *block);
uint32_t hak_remote_drain(struct hak_slab *slab);

/* ---- heap.c: thread heaps, caches, ownership ---- */
extern HAK_TLS struct hak_heap *hak_tl_heap;
extern struct hak_heap hak_heap_empty;
extern struct hak_heap *hak_heaps;    /* heap lock */
struct hak_heap *hak_heap_get(void);
void *hak_tcache_refill(struct hak_heap *heap, int size_class);
void hak_tcache_flush(struct hak_heap *heap, int size_class, uint32_t keep);
void hak_tcache_push_full(void *block, struct hak_heap *heap, int size_class);
void hak_heap_flush_all(struct hak_heap *heap);
void hak_heap_abandon(struct hak_heap *heap);
void hak_heap_slab_emptied(struct hak_heap *heap, struct hak_slab *slab);
void hak_heap_thread_exit(void *heap);
uint64_t hak_abandoned_count(void);
struct hak_slab *hak_abandoned_head(int size_class);
void hak_heap_set_aligned(struct hak_slab *slab);
void hak_heaps_fork_prepare(void);
void hak_heaps_fork_parent(void);
void hak_heaps_fork_child(void);
/* The purge's work on heaps (heaps lock held by the caller): drain and release
 * the empty slabs of idle heaps (every heap when `all`), and reclaim
 * abandoned slabs whose blocks all came back. True when a heap should be
 * looked at again (busy, or active with remote frees pending). */
bool hak_heaps_purge(bool all);

static inline void hak_list_push(struct hak_slab_list *list, struct hak_slab *slab)
{
    slab->prev = NULL;
    slab->next = list->head;
    if (list->head)
        list->head->prev = slab;
    list->head = slab;
}

static inline void hak_list_remove(struct hak_slab_list *list, struct hak_slab *slab)
{
    if (slab->prev)
        slab->prev->next = slab->next;
    else
        list->head = slab->next;
    if (slab->next)
        slab->next->prev = slab->prev;
    slab->next = slab->prev = NULL;
}

/* ---- large.c ---- */
void *hak_large_alloc(size_t size, size_t align, bool zero);
bool hak_large_free(void *user);
size_t hak_large_usable(const void *user);
void *hak_large_realloc(void *user, size_t size);
bool hak_large_info(const void *user, uintptr_t *map_base, size_t *map_size);
void hak_large_stats(uint64_t *live, uint64_t *bytes, uint64_t *cached);
int hak_large_check(char *msg, size_t cap, uintptr_t *where);
void hak_large_lock(void);
void hak_large_unlock(void);
/* Unmaps cached large mappings unused for `delay` ms; true if some are left. */
bool hak_large_purge(uint64_t now, uint64_t delay);

/* ---- purge.c: memory return with a bounded delay ---- */
uint64_t hak_now_ms(void);
uint64_t hak_decay_ms(void);
void hak_purge_init(void);
void hak_purge_note(void);
void hak_purge_kick_slow(void);
void hak_purge_fork_prepare(void);
void hak_purge_fork_parent(void);
void hak_purge_fork_child(void);
void hak_purge_inject_early(struct hak_heap *heap, int size_class);
extern _Atomic bool hak_purge_kick_flag;

/* Called by slow paths once their locks are released: starts or wakes the
 * purge thread when an event left something to give back. One load. */
static inline void hak_purge_kick(void)
{
    if (HAK_UNLIKELY(atomic_load_explicit(&hak_purge_kick_flag, memory_order_relaxed)))
        hak_purge_kick_slow();
}

/* ---- init.c ---- */
extern _Atomic int hak_initialised;
void hak_init_slow(void);
static inline void hak_ensure_init(void)
{
    if (HAK_UNLIKELY(!atomic_load_explicit(&hak_initialised, memory_order_acquire)))
        hak_init_slow();
}

/* A global lock (locks.c, large.c): never taken before the fork handlers exist. */
static inline void hak_global_lock(pthread_mutex_t *m)
{
    hak_ensure_init();
    hak_mutex_lock(m);
}

/* ---- report.c: misuse reports (double free, foreign pointer) ---- */
void hak_report_misuse(const char *what, const void *ptr);

/* ---- alloc.c: a block of one class, unpoisoned (shared with aligned.c) ---- */
void *hak_alloc_class(int size_class);

/* ---- the fast paths of hak_malloc and hak_free, here so that the drop-in's
 * malloc and free run them inline rather than through a second jump ---- */
void *hak_alloc_refill(struct hak_heap *heap, int size_class);

/* A block of the class from the calling thread's cache (unpoisoned); an empty
 * cache, the empty heap's included, goes to the refill as a tail call. */
static inline void *hak_cache_pop(int size_class)
{
    struct hak_heap *heap = hak_tl_heap;
    struct hak_tcache *tc = &heap->tc[size_class];
    void **top = tc->top;
    if (HAK_UNLIKELY(top == tc->base))
        return hak_alloc_refill(heap, size_class);
    void *p = *--top;
    tc->top = top;
    hak_unpoison(p, hak_class_size[size_class]);
    return p;
}

void *hak_tiny_refill(size_t size, struct hak_heap *heap);

/* hak_cache_pop for a tiny size (<= HAK_TINY_MAX), its cache found through
 * the heap's own size table: no class computation on the fast path. The
 * empty heap's table sends every size to class 0's empty cache, so the refill
 * takes the size, not the class. */
static inline void *hak_tiny_pop(size_t size)
{
    struct hak_heap *heap = hak_tl_heap;
    struct hak_tcache *tc = (struct hak_tcache *)((char *)heap + heap->tiny_cache[size]);
    void **top = tc->top;
    if (HAK_UNLIKELY(top == tc->base))
        return hak_tiny_refill(size, heap);
    void *p = *--top;
    tc->top = top;
    hak_unpoison(p, hak_class_size[tc - heap->tc]);
    return p;
}

static inline void hak_cache_push(struct hak_heap *heap, struct hak_tcache *tc, void *base)
{
    void **top = tc->top;
    if (HAK_LIKELY(top != tc->end)) {
        *top = base;
        /* The slot before the count: a fork() copying this thread's heap
         * mid-push must not see top past a slot not yet written. Compiler
         * barrier only (x86 keeps store order); no instruction. */
        atomic_signal_fence(memory_order_release);
        tc->top = top + 1;
        return;
    }
    hak_tcache_push_full(base, heap, (int)(tc - heap->tc));
}

void hak_free_slow(void *ptr);

/* Frees a plain block of a slab the calling thread owns, from the unit key
 * alone: one comparison with the heap's free_key rejects everything else
 * (free units and the header's unit have key 0; foreign and large pointers
 * are stopped by the registry; remote, aligned-interior and every free of a
 * debug build): hak_free_slow. */
static inline bool hak_free_fast(void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    struct hak_superslab *ss;
    if (HAK_DEBUG || !hak_superslab_fast(a, &ss))
        return false;
    uint32_t key = atomic_load_explicit(hak_unit_key(ss, a), memory_order_relaxed);
    struct hak_heap *heap = hak_tl_heap;
    /* key's bits 12-31 equal free_key's (whose bits 0-15 are 0) exactly when
     * the xor is at most HAK_KEY_CACHE, and then it is the cache offset: the
     * test and the offset in one instruction. free_key UINT32_MAX passes no
     * key: ids stop below 0xffff, so no key's bits 12-31 are all ones. */
    uint64_t offset = key ^ heap->free_key;
    if (HAK_UNLIKELY(offset > HAK_KEY_CACHE))
        return false;
    struct hak_tcache *tc = (struct hak_tcache *)((char *)heap + offset);
    hak_poison(ptr, hak_class_size[tc - heap->tc]);
    hak_cache_push(heap, tc, ptr);
    return true;
}

#endif
