/* The integrity pattern: a function of (slot, op index, repeat) and the offset only,
 * so any prefix of a block can be verified (realloc_preserve). */
#include <string.h>

#include "internal.h"

#define HX_K 0x9E3779B97F4A7C15ull

/* The fill and verify loops dominate a single-thread run: HX_CLONES.
 *
 * Under ASan they also dominated fuzz campaigns (a shadow check per word, and in
 * the asan-cov build a coverage callback per loop compare: about 3 GB/s, a third
 * of a campaign's time on multi-MiB blocks). So there they run uninstrumented
 * (HX_UNCHECKED) after one region check that keeps what ASan would have seen: the
 * first poisoned byte of the range is accessed, instrumented, and reported as
 * any ASan report. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HX_REGION_CHECK 1
#endif
#endif

#ifdef HX_REGION_CHECK
#include <sanitizer/asan_interface.h>

#define HX_UNCHECKED __attribute__((no_sanitize("address", "coverage")))

static void region_check(const void *p, size_t n)
{
    volatile const unsigned char *bad = __asan_region_is_poisoned((void *)p, n);
    if (bad)
        (void)*bad;
}
#else
#define HX_UNCHECKED
static inline void region_check(const void *p, size_t n)
{
    (void)p;
    (void)n;
}
#endif

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

uint64_t hx_seed(unsigned slot, uint64_t op_index, uint32_t repeat)
{
    return mix((uint64_t)slot << 56 ^ op_index << 8 ^ (uint64_t)repeat << 40 ^ 0x5eed) | 1;
}

uint8_t hx_pattern_byte(uint64_t seed, size_t off)
{
    return (uint8_t)((seed + (uint64_t)(off / 8) * HX_K) >> (8 * (off % 8)));
}

static HX_CLONES HX_UNCHECKED void fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    size_t words = n / 8;
    uint64_t w = seed;
    for (size_t i = 0; i < words; i++, w += HX_K)
        memcpy(b + 8 * i, &w, 8);
    for (size_t o = words * 8; o < n; o++)
        b[o] = hx_pattern_byte(seed, o);
}

static HX_CLONES HX_UNCHECKED size_t verify(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    size_t words = n / 8;
    size_t i = 0;
    while (i < words) {
        size_t end = i + 64 < words ? i + 64 : words;
        uint64_t diff = 0, w = seed + (uint64_t)i * HX_K;
        for (size_t k = i; k < end; k++, w += HX_K) {
            uint64_t got;
            memcpy(&got, b + 8 * k, 8);
            diff |= got ^ w;
        }
        if (diff) {
            for (size_t o = 8 * i; o < 8 * end; o++)
                if (b[o] != hx_pattern_byte(seed, o))
                    return o;
        }
        i = end;
    }
    for (size_t o = words * 8; o < n; o++)
        if (b[o] != hx_pattern_byte(seed, o))
            return o;
    return (size_t)-1;
}

static HX_CLONES HX_UNCHECKED size_t first_nonzero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t o = 0;
    for (; o + 64 <= n; o += 64) {
        uint64_t acc = 0;
        for (size_t k = 0; k < 64; k += 8) {
            uint64_t w;
            memcpy(&w, b + o + k, 8);
            acc |= w;
        }
        if (acc)
            break;
    }
    for (; o < n; o++)
        if (b[o])
            return o;
    return (size_t)-1;
}

void hx_fill(void *p, size_t n, uint64_t seed)
{
    region_check(p, n);
    fill(p, n, seed);
}

size_t hx_verify(const void *p, size_t n, uint64_t seed)
{
    region_check(p, n);
    return verify(p, n, seed);
}

size_t hx_first_nonzero(const void *p, size_t n)
{
    region_check(p, n);
    return first_nonzero(p, n);
}
