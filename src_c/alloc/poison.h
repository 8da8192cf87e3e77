/* ASan poisoning of allocator memory.
 *
 * Under ASan every byte the caller does not own is poisoned: uncarved slab
 * space, blocks on free lists and thread caches, cached large mappings. The
 * allocator unpoisons exactly what it touches (the link word of a free block)
 * and re-poisons it at once, so a use-after-free or an overflow into a free
 * neighbour is reported as use-after-poison. Elsewhere these are no-ops.
 */
#ifndef HAKMEM_POISON_H
#define HAKMEM_POISON_H

#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAK_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HAK_ASAN 1
#endif

#ifdef HAK_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
static inline void hak_poison(const void *p, size_t n) { __asan_poison_memory_region(p, n); }
static inline void hak_unpoison(const void *p, size_t n) { __asan_unpoison_memory_region(p, n); }
#else
static inline void hak_poison(const void *p, size_t n) { (void)p; (void)n; }
static inline void hak_unpoison(const void *p, size_t n) { (void)p; (void)n; }
#endif

/* The link word of a free block, read without touching its shadow: the heap walk reads
 * every free block's link at every quiescent point, and unpoisoning then re-poisoning each
 * one was most of its cost under ASan. A reader only: nothing else ever sees the word
 * unpoisoned. */
#ifdef HAK_ASAN
__attribute__((no_sanitize("address")))
#endif
static inline void *hak_peek_link(const void *block)
{
    return *(void *const *)block;
}

#endif
