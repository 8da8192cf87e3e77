/* The malloc family's edge calls, answered by whichever allocator serves this
 * process (glibc, or a drop-in loaded with LD_PRELOAD). One line per call:
 *   NAME: null errno=E                         the call failed
 *   NAME: block align=OK|BAD usable=OK|BAD     it returned a block; align: the
 *         pointer has the alignment glibc documents for the call (at least
 *         16, and the requested one rounded up to a power of two); usable:
 *         malloc_usable_size >= what was asked and the block is writable
 *   NAME: rc=R                                 an int result (posix_memalign)
 * tests/test_compat.py runs it under glibc and under hakmem's drop-in and
 * requires the same lines. errno is reset before every call.
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Arguments pass through here so the compiler assumes nothing about them. */
static size_t id(size_t x)
{
    volatile size_t v = x;
    return v;
}

static size_t pow2_at_least(size_t a)
{
    size_t p = 1;
    while (p < a && p)
        p <<= 1;
    return p;
}

static void report(const char *name, void *p, size_t asked, size_t align)
{
    if (!p) {
        printf("%s: null errno=%d\n", name, errno);
        return;
    }
    size_t want = align < 16 ? 16 : pow2_at_least(align);
    bool aligned = (uintptr_t)p % want == 0;
    size_t have = malloc_usable_size(p);
    bool usable = have >= asked;
    memset(p, 0xa5, have < asked ? have : asked);
    printf("%s: block align=%s usable=%s\n", name, aligned ? "OK" : "BAD", usable ? "OK" : "BAD");
    free(p);
}

#define CALL(expr, asked, align)                                                               \
    do {                                                                                       \
        errno = 0;                                                                             \
        void *p_ = (expr);                                                                     \
        report(#expr, p_, (asked), (align));                                                   \
    } while (0)

#define PM(align, size)                                                                        \
    do {                                                                                       \
        void *p_ = NULL;                                                                       \
        errno = 0;                                                                             \
        int rc_ = posix_memalign(&p_, (align), (size));                                        \
        printf("posix_memalign(%s, %s): rc=%d\n", #align, #size, rc_);                         \
        if (rc_ == 0)                                                                          \
            report("  the block", p_, (size), (align));                                        \
    } while (0)

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t huge = SIZE_MAX - 4096, half = SIZE_MAX / 2 + 1;

    CALL(malloc(id(0)), 0, 16);
    CALL(malloc(id(1)), 1, 16);
    CALL(malloc(id(huge)), 0, 16);
    CALL(malloc(id(PTRDIFF_MAX)), 0, 16);
    CALL(calloc(id(0), id(0)), 0, 16);
    CALL(calloc(id(0), id(5)), 0, 16);
    CALL(calloc(id(5), id(0)), 0, 16);
    CALL(calloc(id(half), id(2)), 0, 16);
    CALL(calloc(id(SIZE_MAX), id(SIZE_MAX)), 0, 16);
    CALL(calloc(id(1), id(huge)), 0, 16);

    CALL(memalign(id(0), id(100)), 100, 0);
    CALL(memalign(id(1), id(100)), 100, 1);
    CALL(memalign(id(3), id(100)), 100, 3);
    CALL(memalign(id(8), id(100)), 100, 8);
    CALL(memalign(id(24), id(100)), 100, 24);
    CALL(memalign(id(48), id(100)), 100, 48);
    CALL(memalign(id(100), id(1000)), 1000, 100);
    CALL(memalign(id(4096), id(10)), 10, 4096);
    CALL(memalign(id(5000), id(10)), 10, 5000);
    CALL(memalign(id(1 << 20), id(10)), 10, 1 << 20);
    CALL(memalign(id(64), id(0)), 0, 64);
    CALL(memalign(id(half), id(8)), 0, 0);
    CALL(memalign(id(half + 1), id(8)), 0, 0);
    CALL(memalign(id(64), id(huge)), 0, 0);

    CALL(aligned_alloc(id(0), id(100)), 100, 0);
    CALL(aligned_alloc(id(8), id(100)), 100, 8);
    CALL(aligned_alloc(id(64), id(100)), 100, 64);
    CALL(aligned_alloc(id(4096), id(4096)), 4096, 4096);
    CALL(aligned_alloc(id(64), id(0)), 0, 64);
    CALL(aligned_alloc(id(64), id(huge)), 0, 0);

    PM(0, 8);
    PM(1, 8);
    PM(4, 8);
    PM(8, 8);
    PM(16, 0);
    PM(24, 8);
    PM(64, 100);
    PM(4096, 1);
    PM(1 << 20, 100);
    PM(64, huge);
    PM(half, 8);

    CALL(valloc(id(0)), 0, page);
    CALL(valloc(id(1)), 1, page);
    CALL(valloc(id(page + 1)), page + 1, page);
    CALL(valloc(id(huge)), 0, 0);
    CALL(pvalloc(id(0)), 0, page);
    CALL(pvalloc(id(1)), page, page);
    CALL(pvalloc(id(page + 1)), 2 * page, page);
    CALL(pvalloc(id(huge)), 0, 0);

    {
        errno = 0;
        void *p = realloc(NULL, id(0));
        report("realloc(NULL, 0)", p, 0, 16);
        p = malloc(100);
        errno = 0;
        void *q = realloc(p, id(0));
        printf("realloc(p, 0): %s errno=%d\n", q ? "block" : "null", errno);
        free(q);
        p = malloc(100);
        memset(p, 7, 100);
        errno = 0;
        q = realloc(p, id(huge));
        printf("realloc(p, huge): %s errno=%d old block intact=%s\n", q ? "block" : "null", errno,
               ((unsigned char *)p)[99] == 7 ? "yes" : "no");
        free(q ? q : p);
        p = malloc(100);
        errno = 0;
        q = reallocarray(p, id(half), id(2));
        printf("reallocarray(p, half, 2): %s errno=%d\n", q ? "block" : "null", errno);
        free(q ? q : p);
        p = malloc(10);
        errno = 0;
        q = reallocarray(p, 100, 10);
        report("reallocarray(p, 100, 10)", q, 1000, 16);
        p = malloc(1 << 20);
        q = realloc(p, 10);
        report("realloc(large, 10)", q, 10, 16);
    }
    printf("malloc_usable_size(NULL): %zu\n", malloc_usable_size(NULL));
    errno = 0;
    free(NULL);
    printf("free(NULL): errno=%d\n", errno);
    {
        void *blocks[64];
        for (int i = 0; i < 64; i++)
            blocks[i] = malloc(100000);
        for (int i = 0; i < 64; i++)
            free(blocks[i]);
        int r = malloc_trim(0);
        printf("malloc_trim(0): %s\n", r == 0 || r == 1 ? "0 or 1" : "other");
    }
    return 0;
}
