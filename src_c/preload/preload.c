/* The drop-in library: the standard malloc family, served by hakmem.
 *
 * Loaded with LD_PRELOAD, these definitions interpose libc's for the whole
 * process. hakmem never calls libc's malloc and initialises without
 * allocating, so there is no recursion while it starts (see init.c). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* A process's malloc gives memory back by itself (purge.c). */
const bool hak_purge_by_default = true;

/* Tiny requests and owner frees run the fast paths inline; the rest go to
 * hak_malloc / hak_free_slow. Each starts on a 64-byte line: malloc's fast
 * path (60 bytes) then fits in one line and free's (113) in two, where a
 * 16-byte start could split them over one more line, which the front end
 * pays on every call (placed 48 bytes into a line, the same code ran batch16
 * 12% and fixed256 15% slower per CPU second; instruction counts equal). */
HAK_API __attribute__((aligned(64))) void *malloc(size_t size)
{
    if (HAK_LIKELY(size <= HAK_TINY_MAX))
        return hak_tiny_pop(size);
    return hak_malloc(size);
}

HAK_API __attribute__((aligned(64))) void free(void *ptr)
{
    if (!hak_free_fast(ptr))
        hak_free_slow(ptr);
}

HAK_API void cfree(void *ptr) { free(ptr); }
HAK_API void *calloc(size_t count, size_t size) { return hak_calloc(count, size); }
HAK_API void *realloc(void *ptr, size_t size) { return hak_realloc(ptr, size); }
HAK_API size_t malloc_usable_size(void *ptr) { return hak_usable_size(ptr); }

/* memalign and aligned_alloc as glibc (2.36) answers them: an alignment up to
 * 16 is what every block has (0 and 3 included); a larger one that is not a
 * power of two is raised to the next power of two; only one above
 * SIZE_MAX / 2 + 1 (which has no power of two to round to) fails, with EINVAL.
 * posix_memalign keeps the strict POSIX rules. */
static void *align_any(size_t alignment, size_t size)
{
    if (alignment <= HAK_ALIGN)
        return hak_malloc(size);
    if (alignment > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment & (alignment - 1))
        alignment = (size_t)1 << (64 - __builtin_clzl(alignment));
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

/* glibc's malloc_trim gives free memory back to the OS: hakmem's collect. */
HAK_API int malloc_trim(size_t pad)
{
    (void)pad;
    hak_collect();
    return 1;
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
