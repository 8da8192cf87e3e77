/* The drop-in library: the standard malloc family, served by hakmem.
 *
 * Loaded with LD_PRELOAD, these definitions interpose libc's for the whole
 * process. hakmem never calls libc's malloc and initialises without
 * allocating, so there is no recursion while it starts (see init.c). */
#include <errno.h>
#include <stddef.h>

#include "internal.h"

/* Tiny requests and owner frees run the fast paths inline; the rest go to
 * hak_malloc / hak_free. */
HAK_API void *malloc(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_cache_pop(hak_class_of(size));
    return hak_malloc(size);
}

HAK_API void free(void *ptr)
{
    if (!hak_free_fast(ptr))
        hak_free(ptr);
}

HAK_API void cfree(void *ptr) { free(ptr); }
HAK_API void *calloc(size_t count, size_t size) { return hak_calloc(count, size); }
HAK_API void *realloc(void *ptr, size_t size) { return hak_realloc(ptr, size); }
HAK_API size_t malloc_usable_size(void *ptr) { return hak_usable_size(ptr); }

/* glibc accepts any power-of-two alignment here, below sizeof(void *) too. */
static void *align_any(size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) && alignment && !(alignment & (alignment - 1)))
        alignment = sizeof(void *);
    return hak_aligned_alloc(alignment, size);
}

HAK_API void *aligned_alloc(size_t alignment, size_t size) { return align_any(alignment, size); }
HAK_API void *memalign(size_t alignment, size_t size) { return align_any(alignment, size); }
HAK_API void *valloc(size_t size) { return hak_aligned_alloc(4096, size); }

HAK_API void *pvalloc(size_t size)
{
    size_t rounded = (size + 4095) & ~(size_t)4095;
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return hak_aligned_alloc(4096, rounded ? rounded : 4096);
}

HAK_API int posix_memalign(void **out, size_t alignment, size_t size)
{
    int saved = errno;
    void *p = hak_aligned_alloc(alignment, size);
    if (!p) {
        int err = errno;
        errno = saved;
        return err;
    }
    *out = p;
    return 0;
}
