/* hakmem public API: the malloc family under the hak_ prefix.
 *
 * Semantics follow C11/POSIX:
 *   hak_malloc(0) returns a unique, freeable pointer (usable size >= 16);
 *   hak_free(NULL) is a no-op;
 *   a size that cannot be served returns NULL and sets errno = ENOMEM;
 *   hak_calloc(n, m) with n*m overflowing returns NULL and sets ENOMEM;
 *   hak_realloc(p, 0) frees p and returns a fresh minimal block (glibc-compatible
 *     callers get a freeable pointer, never a dangling one);
 *   hak_aligned_alloc follows posix_memalign's rules: alignment must be a power
 *     of two and a multiple of sizeof(void *), else NULL + EINVAL.
 * Every returned pointer is at least 16-byte aligned.
 *
 * Memory return: freed memory that stays unused for the decay delay
 * (HAKMEM_DECAY_MS milliseconds; -1: only on request) goes back to the OS by
 * itself, from a background thread. The default is 500 ms in the drop-in
 * library and "only on request" for the hak_ API (whose op-program replays
 * must be deterministic). hak_collect() gives back at once everything that
 * can be (the
 * calling thread's caches, empty slabs of idle or exited threads, free pages,
 * cached large mappings). The drop-in's malloc_trim() calls it.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *hak_malloc(size_t size);
void hak_free(void *ptr);
void *hak_calloc(size_t count, size_t size);
void *hak_realloc(void *ptr, size_t size);
void *hak_aligned_alloc(size_t alignment, size_t size);
size_t hak_usable_size(const void *ptr);
void hak_collect(void);

#ifdef __cplusplus
}
#endif

#endif
