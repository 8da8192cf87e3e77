/* hakmem introspection API, present in every build variant.
 *
 * The harness uses it for its white-box checks. Nothing here is on a fast path;
 * calls may take the allocator's global locks and walk every structure.
 *
 * Vocabulary:
 *   USER  the pointer the API hands out and takes back;
 *   BASE  the start of the block the allocator accounts for.
 * For plain allocations USER - BASE is 0 in slabs and HAK_LARGE_HEADER for
 * large blocks; for aligned allocations it is whatever padding reached the
 * requested alignment. hak_block_info computes BASE from USER with the very
 * function the free path uses, so a free that converts differently is a bug.
 */
#ifndef HAKMEM_DEBUG_H
#define HAKMEM_DEBUG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes between BASE and USER of a plain (unaligned) large block. */
#define HAK_LARGE_HEADER 64
/* Size classes: 0 .. HAK_NUM_CLASSES-1; tiny classes are those <= 1 KiB. */
#define HAK_NUM_CLASSES 48
#define HAK_CLASS_LARGE (-1)

enum hak_region {
    HAK_REGION_NOT_OURS = 0,   /* the registry does not know this address */
    HAK_REGION_TINY = 1,       /* slab block of a class <= 1 KiB */
    HAK_REGION_MID = 2,        /* slab block of a pooled mid class */
    HAK_REGION_LARGE = 3,      /* its own mapping */
};

enum hak_block_state {
    HAK_STATE_NOT_OURS = 0,
    HAK_STATE_UNCARVED = 1,    /* inside a slab, beyond its bump pointer */
    HAK_STATE_LIVE = 2,        /* carved and not found on any free structure */
    HAK_STATE_THREAD_CACHE = 3,/* on a thread's cache list */
    HAK_STATE_SLAB_FREE = 4,   /* on its slab's local free list */
    HAK_STATE_REMOTE = 5,      /* on its slab's remote-free list, not yet drained */
    HAK_STATE_INTERIOR = 6,    /* ours, but not inside any block (slab tail, header) */
};

struct hak_block_info {
    int region;                /* enum hak_region */
    int state;                 /* enum hak_block_state (HAK_STATE_LIVE unless HAK_INFO_STATE) */
    int size_class;            /* HAK_CLASS_LARGE for large blocks */
    uintptr_t user;            /* the pointer asked about */
    uintptr_t base;            /* BASE the free path would use for `user` */
    uintptr_t slab_start;      /* first block of the slab (large: mapping start) */
    size_t block_size;         /* bytes from base (slab stride, or large block span) */
    size_t usable_size;        /* what hak_usable_size(user) answers */
    uint64_t owner;            /* owning heap's serial (0: abandoned or large) */
    uint32_t block_index;      /* index in its slab (0 for large) */
};

/* Flags for hak_block_info. */
#define HAK_INFO_STATE 1u      /* also search free structures to fill `state` */

/* Fills *out for ptr. Never dereferences an address the registry does not own.
 * Returns region (0 = not ours). */
int hak_block_info(const void *ptr, struct hak_block_info *out, unsigned flags);

struct hak_class_counters {
    uint32_t block_size;
    uint32_t slabs;            /* slabs currently serving this class */
    uint64_t capacity;         /* sum of slab capacities */
    uint64_t carved;           /* blocks ever handed out of the bump region */
    uint64_t used;             /* carved and not on a slab free list */
    uint64_t free_list;        /* on slab local free lists */
    uint64_t remote_pending;   /* on remote-free lists, not yet drained */
    uint64_t thread_cached;    /* on per-thread cache lists */
    uint64_t live;             /* used - remote_pending - thread_cached: held by callers */
};

struct hak_counters {
    struct hak_class_counters cls[HAK_NUM_CLASSES];
    uint64_t superslabs;       /* mapped superslabs (in use + cached) */
    uint64_t superslabs_cached;/* empty superslabs kept mapped for reuse */
    uint64_t dirty_units;      /* free superslab units not yet given back (64 KiB each) */
    uint64_t superslab_active; /* sum of per-superslab active counters */
    uint64_t large_live;       /* live large blocks */
    uint64_t large_bytes;      /* bytes mapped for live large blocks */
    uint64_t large_cached;     /* freed large mappings kept for reuse */
    uint64_t heaps;            /* thread heaps alive */
    uint64_t abandoned_slabs;  /* slabs of exited threads not yet adopted */
    uint64_t live_total;       /* sum of cls[].live + large_live */
    uint64_t os_mapped;        /* bytes mapped from the kernel and not returned */
    uint64_t os_maps;          /* mmap calls made since the library loaded */
};

/* Snapshot of every counter. Exact at quiescent points (no thread inside the
 * allocator); approximate otherwise. */
void hak_counters_snapshot(struct hak_counters *out);

struct hak_heap_report {
    int ok;                    /* 1: every structure validated */
    int errors;                /* number of violations found (first is described) */
    uintptr_t where;           /* address of the first offending structure or block */
    char message[512];         /* the first violation, precisely */
};

/* Walks and validates every superslab, slab, free list, remote list, thread
 * cache and large block, and every counter identity. Quiescent points only.
 * Returns report->ok. */
int hak_heap_check(struct hak_heap_report *report);

/* hak_heap_check, and what hak_collect() promises, called right after it at a
 * quiescent point on the thread that collected: its caches empty, no superslab
 * cached or holding pages of free units, no large mapping cached, and every
 * slab in use (owned or abandoned) drained of its remote frees and holding a
 * block. Returns report->ok. */
int hak_heap_check_collected(struct hak_heap_report *report);

/* Flushes the calling thread's caches to their slabs, drains remote frees
 * into every slab it owns, adopts and drains abandoned slabs, and returns
 * empty slabs to their superslabs. */
void hak_flush_thread(void);

/* Gives the calling thread's heap back exactly as the thread's exit would
 * (caches flushed, remote frees drained, empty slabs returned, the rest
 * abandoned for adoption, the heap id recycled); its next allocation starts a
 * fresh heap, as a new thread's would. Lets a test driver reuse an OS thread as
 * a new program thread. */
void hak_retire_thread(void);

/* Size class a request of `size` bytes is served from (HAK_CLASS_LARGE above
 * the mid pool), and the block size of a class. */
int hak_size_class(size_t size);
size_t hak_class_block_size(int size_class);

/* Out-of-memory injection, for tests of the paths a refused mapping takes (an
 * address-space limit cannot reach them under ASan, whose shadow needs the
 * address space). Of the requests for memory hakmem makes to the OS from now
 * on (mmap, mremap), the first `after` go through, the `count` after them fail
 * as the kernel's ENOMEM would, and later ones go through again; count 0 ends
 * an earlier injection. */
void hak_fail_os_maps(unsigned long after, unsigned long count);
/* Requests for OS memory refused by hak_fail_os_maps since the library loaded. */
unsigned long hak_os_refusals(void);

/* Name of the bug injected into this build ("" for a clean build). */
const char *hak_injected_bug(void);
/* Name of the build variant ("release", "asan", ...). */
const char *hak_build_variant(void);

#ifdef __cplusplus
}
#endif

#endif
