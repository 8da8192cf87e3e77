/* hak_aligned_alloc (posix_memalign rules).
 *
 * Alignments up to 16 are what every block has. Larger ones take a block with
 * enough slack and hand out the aligned interior pointer; the slab is marked
 * so that free converts USER back to BASE (free.c). Requests whose slack does
 * not fit the mid pool go to an aligned large mapping. */
#include <errno.h>
#include <stdint.h>

#include "internal.h"

HAK_API void *hak_aligned_alloc(size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment % sizeof(void *)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= HAK_ALIGN)
        return hak_malloc(size);
    if (size > PTRDIFF_MAX - alignment) {
        errno = ENOMEM;
        return NULL;
    }
    /* The padding to an aligned USER is at most alignment - 16; at least one
     * usable byte keeps USER inside its block even for size 0 (else USER could
     * be the next block's BASE, and free would convert it to that block). */
    size_t need = (size ? size : 1) + alignment - HAK_ALIGN;
    if (HAK_INJECT_CLASS_OVERHEAD)
        need = size;
    if (need > HAK_MID_MAX)
        return hak_large_alloc(size, alignment, false);
    uintptr_t base = (uintptr_t)hak_alloc_class(hak_class_of(need));
    if (!base)
        return NULL;
    uintptr_t user = (base + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (user != base) {
        struct hak_slab *slab = hak_slab_in(hak_superslab_of((void *)base), (void *)base);
        if (!atomic_load_explicit(&slab->has_aligned, memory_order_relaxed))
            hak_heap_set_aligned(slab);
    }
    return (void *)user;
}
