/* Page mappings from the kernel: the only place hakmem asks the OS for memory
 * or gives it back.
 *
 * Invariant: memory handed back to the kernel (unmapped, or moved away by
 * mremap) carries no ASan poison. The shadow outlives the mapping, so a later
 * mapping at the same address would otherwise inherit stale poison and ASan
 * would report the allocator's own first write to it. Recent ASan runtimes
 * clean the shadow in their munmap interceptor; mremap is intercepted by none,
 * and the runtime atheris ships may predate the munmap interceptor. */
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"
#include "hakmem_debug.h"

/* The footprint as the kernel sees it (hak_counters.os_mapped, .os_maps): bytes mapped
 * and not yet returned, and mmap calls made. Updated beside each syscall, so a relaxed
 * add costs nothing next to it; they never feed a decision, only introspection. */
static _Atomic uint64_t os_mapped, os_maps;

/* Out-of-memory injection (hak_fail_os_maps): requests still to let through,
 * then requests still to refuse, and requests refused so far. A relaxed load
 * of a zero count is all a request pays when no test asked for failures. */
static _Atomic uint64_t fail_after, fail_count, refusals;

/* Takes one from *n unless it is 0; whether it did. */
static bool take_one(_Atomic uint64_t *n)
{
    uint64_t v = atomic_load_explicit(n, memory_order_relaxed);
    while (v && !atomic_compare_exchange_weak_explicit(n, &v, v - 1, memory_order_relaxed,
                                                       memory_order_relaxed))
        ;
    return v != 0;
}

/* Whether this request is one hak_fail_os_maps asked to refuse. */
static bool refused(void)
{
    if (HAK_LIKELY(!atomic_load_explicit(&fail_count, memory_order_relaxed)))
        return false;
    if (take_one(&fail_after) || !take_one(&fail_count))
        return false;
    atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed);
    errno = ENOMEM;
    return true;
}

HAK_API void hak_fail_os_maps(unsigned long after, unsigned long count)
{
    atomic_store_explicit(&fail_count, 0, memory_order_relaxed);
    atomic_store_explicit(&fail_after, after, memory_order_relaxed);
    atomic_store_explicit(&fail_count, count, memory_order_relaxed);
}

HAK_API unsigned long hak_os_refusals(void)
{
    return (unsigned long)atomic_load_explicit(&refusals, memory_order_relaxed);
}

void *hak_os_map(size_t size)
{
    if (refused())
        return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    atomic_fetch_add_explicit(&os_mapped, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&os_maps, 1, memory_order_relaxed);
    return p;
}

/* Over-maps by `align` and trims both ends, so the result is aligned and the
 * trimmed pages go back at once. */
void *hak_os_map_aligned(size_t size, size_t align)
{
    size_t span = size + align;
    uint8_t *raw = hak_os_map(span);
    if (!raw)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        hak_os_unmap(raw, head);
    if (tail)
        hak_os_unmap((void *)(start + size), tail);
    return (void *)start;
}

void hak_os_unmap(void *p, size_t size)
{
    hak_unpoison(p, size);
    munmap(p, size);
    atomic_fetch_sub_explicit(&os_mapped, size, memory_order_relaxed);
}

/* mremap(MREMAP_MAYMOVE); NULL on failure, with the old mapping intact. */
void *hak_os_remap(void *p, size_t old_size, size_t new_size)
{
    if (refused())
        return NULL;
    hak_unpoison(p, old_size);
    void *moved = mremap(p, old_size, new_size, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED)
        return NULL;
    atomic_fetch_add_explicit(&os_mapped, new_size - old_size, memory_order_relaxed);
    return moved;
}

void hak_os_stats(uint64_t *mapped, uint64_t *maps)
{
    *mapped = atomic_load_explicit(&os_mapped, memory_order_relaxed);
    *maps = atomic_load_explicit(&os_maps, memory_order_relaxed);
}
