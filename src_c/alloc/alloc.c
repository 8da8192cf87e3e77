/* Allocation: hak_malloc, hak_calloc, hak_realloc, hak_usable_size.
 *
 * The fast path is a pop from the calling thread's cache of the size class;
 * a thread that never allocated has the shared empty heap, whose caches are
 * empty, so its first call falls into the refill and creates its heap. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* The cache is empty. Out of line, so that the fast path (hak_cache_pop)
 * keeps no frame and ends in a tail call. */
__attribute__((noinline)) void *hak_alloc_refill(struct hak_heap *heap, int size_class)
{
    void *p = hak_tcache_refill(heap, size_class);
    if (HAK_UNLIKELY(!p)) {
        errno = ENOMEM;
        return NULL;
    }
    hak_unpoison(p, hak_class_size[size_class]);
    return p;
}

/* hak_tiny_pop found its cache empty (or the thread has no heap yet). */
__attribute__((noinline)) void *hak_tiny_refill(size_t size, struct hak_heap *heap)
{
    return hak_alloc_refill(heap, hak_class_of(size));
}

void *hak_alloc_class(int size_class)
{
    return hak_cache_pop(size_class);
}

HAK_API void *hak_malloc(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_tiny_pop(size);
    if (size <= HAK_MID_MAX)
        return hak_cache_pop(hak_class_of(size));
    return hak_large_alloc(size, HAK_ALIGN, false);
}

HAK_API void *hak_calloc(size_t count, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    if (bytes > HAK_MID_MAX)
        return hak_large_alloc(bytes, HAK_ALIGN, true);
    int size_class = hak_class_of(bytes);
    void *p = hak_cache_pop(size_class);
    if (p)
        memset(p, 0, hak_class_size[size_class]);
    return p;
}

/* Usable bytes from `user` to the end of its slab block. */
static size_t slab_usable(const struct hak_slab *slab, uintptr_t user)
{
    return slab->block_size - (user - hak_block_base(slab, user));
}

HAK_API size_t hak_usable_size(const void *ptr)
{
    struct hak_superslab *ss = hak_superslab_of(ptr);
    if (!ss)
        return ptr ? hak_large_usable(ptr) : 0;
    struct hak_slab *slab = hak_slab_in(ss, ptr);
    return slab ? slab_usable(slab, (uintptr_t)ptr) : 0;
}

static void *move_block(void *old, size_t old_usable, size_t size)
{
    void *p = hak_malloc(size);
    if (!p)
        return NULL;
    memcpy(p, old, old_usable < size ? old_usable : size);
    hak_free(old);
    return p;
}

HAK_API void *hak_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return hak_malloc(size);
    if (size == 0) {
        hak_free(ptr);
        return hak_malloc(0);
    }
    struct hak_superslab *ss = hak_superslab_of(ptr);
    if (!ss) {
        if (size > HAK_MID_MAX)
            return hak_large_realloc(ptr, size);
        size_t usable = hak_large_usable(ptr);
        if (!usable) {
            hak_report_misuse("realloc of a pointer hakmem does not own", ptr);
            errno = EINVAL;
            return NULL;
        }
        return move_block(ptr, usable, size);
    }
    struct hak_slab *slab = hak_slab_in(ss, ptr);
    if (!slab) {
        hak_report_misuse("realloc of an address outside any block", ptr);
        errno = EINVAL;
        return NULL;
    }
    size_t usable = slab_usable(slab, (uintptr_t)ptr);
    if (size <= usable && size > usable / 2)
        return ptr;
    return move_block(ptr, usable, size);
}
