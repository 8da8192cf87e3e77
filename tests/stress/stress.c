/* Multithreaded stress of the allocator through its public API.
 *
 *   stress THREADS OPS_PER_THREAD ROUNDS SEED
 *
 * Each round starts THREADS threads. Each thread allocates (malloc, calloc,
 * aligned, realloc) random sizes across tiny, mid and large, writes a pattern
 * derived from the block's id into it, verifies the pattern before every
 * realloc and free, and hands blocks to other threads through queues, which
 * free them (remote frees). Threads exit with blocks still live; the next
 * round's threads free those (frees into abandoned slabs). At every round's
 * end (quiescent) the live blocks are checked for overlap and the heap walk
 * must pass; after the last round everything is freed and every counter must
 * be back to zero. Prints "stress: ops=N seconds=S" and exits 0, or names the
 * first failure and exits 1.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hakmem.h"
#include "hakmem_debug.h"

enum { SLOTS = 256, QUEUE = 1024, MAX_THREADS = 16, LEFT = MAX_THREADS * SLOTS };

struct block {
    unsigned char *p;
    size_t size;
    size_t align;
    uint64_t id;
};

struct queue {
    pthread_mutex_t lock;
    struct block items[QUEUE];
    unsigned count;
};

static int threads, ops_per_thread;
static uint64_t seed0;
static struct queue queues[MAX_THREADS];
static struct block leftovers[LEFT];
static unsigned leftover_count;
static pthread_mutex_t leftover_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t next_id, total_ops;

#define FAIL(...)                                                                              \
    do {                                                                                       \
        fprintf(stderr, "stress: " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                   \
        exit(1);                                                                               \
    } while (0)

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Large blocks get their first and last 4 KiB patterned; the rest all of it. */
static void pattern_span(const struct block *b, size_t *head, size_t *tail_from)
{
    *head = b->size < 8192 ? b->size : 4096;
    *tail_from = b->size < 8192 ? b->size : b->size - 4096;
}

static unsigned char pattern_byte(uint64_t id, size_t i)
{
    return (unsigned char)((id * 131 + i * 7) ^ (i >> 8));
}

static void write_pattern(const struct block *b)
{
    size_t head, tail;
    pattern_span(b, &head, &tail);
    for (size_t i = 0; i < head; i++)
        b->p[i] = pattern_byte(b->id, i);
    for (size_t i = tail; i < b->size; i++)
        b->p[i] = pattern_byte(b->id, i);
}

static void verify(const struct block *b, size_t len, const char *when)
{
    size_t head, tail;
    pattern_span(b, &head, &tail);
    for (size_t i = 0; i < len; i++) {
        if (i >= head && i < tail)
            i = tail;
        if (i < len && b->p[i] != pattern_byte(b->id, i))
            FAIL("block %llu (%p, %zu B) corrupt at byte %zu %s",
                 (unsigned long long)b->id, (void *)b->p, b->size, i, when);
    }
}

static size_t draw_size(uint64_t *s)
{
    uint64_t r = rng(s) % 100;
    if (r < 60)
        return rng(s) % 1025;
    if (r < 93)
        return 1025 + rng(s) % (65536 - 1024);
    return 65537 + rng(s) % (4u << 20);
}

static void check_alignment(const struct block *b)
{
    uintptr_t a = (uintptr_t)b->p;
    if (a % 16 || (b->align && a % b->align))
        FAIL("block %p (%zu B, align %zu) misaligned", (void *)b->p, b->size, b->align);
    if (hak_usable_size(b->p) < b->size)
        FAIL("usable_size %zu < %zu", hak_usable_size(b->p), b->size);
}

static void alloc_block(struct block *b, uint64_t *s)
{
    b->size = draw_size(s);
    b->align = 0;
    b->id = atomic_fetch_add(&next_id, 1);
    switch (rng(s) % 8) {
    case 0:
        b->p = hak_calloc(1, b->size);
        for (size_t i = 0; i < b->size; i += 61)
            if (b->p && b->p[i])
                FAIL("calloc(%zu) byte %zu not zero", b->size, i);
        break;
    case 1:
        b->align = (size_t)1 << (4 + rng(s) % 17);
        b->size %= 70000;
        b->p = hak_aligned_alloc(b->align, b->size);
        break;
    default:
        b->p = hak_malloc(b->size);
    }
    if (!b->p)
        FAIL("allocation of %zu B (align %zu) returned NULL", b->size, b->align);
    check_alignment(b);
    write_pattern(b);
}

static void free_block(struct block *b, const char *when)
{
    verify(b, b->size, when);
    hak_free(b->p);
    b->p = NULL;
}

static void realloc_block(struct block *b, uint64_t *s)
{
    verify(b, b->size, "before realloc");
    size_t size = draw_size(s);
    unsigned char *p = hak_realloc(b->p, size);
    if (!p)
        FAIL("realloc to %zu returned NULL", size);
    struct block old = *b;
    old.p = p;
    verify(&old, old.size < size ? old.size : size, "after realloc (prefix lost)");
    b->p = p;
    b->size = size;
    b->align = 0;
    check_alignment(b);
    write_pattern(b);
}

static void send_block(int to, struct block *b)
{
    struct queue *q = &queues[to];
    pthread_mutex_lock(&q->lock);
    if (q->count < QUEUE) {
        q->items[q->count++] = *b;
        b->p = NULL;
    }
    pthread_mutex_unlock(&q->lock);
}

static void drain_queue(int me)
{
    struct queue *q = &queues[me];
    struct block items[QUEUE];
    pthread_mutex_lock(&q->lock);
    unsigned n = q->count;
    memcpy(items, q->items, n * sizeof items[0]);
    q->count = 0;
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < n; i++)
        free_block(&items[i], "at remote free");
    atomic_fetch_add(&total_ops, n);
}

static void take_leftovers(void)
{
    pthread_mutex_lock(&leftover_lock);
    unsigned n = leftover_count < 64 ? leftover_count : 64;
    struct block mine[64];
    leftover_count -= n;
    memcpy(mine, &leftovers[leftover_count], n * sizeof mine[0]);
    pthread_mutex_unlock(&leftover_lock);
    for (unsigned i = 0; i < n; i++)
        free_block(&mine[i], "freed after its thread exited");
    atomic_fetch_add(&total_ops, n);
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t s = seed0 * 0x9E3779B97F4A7C15ULL + (uint64_t)me * 7919 + 1;
    struct block slots[SLOTS] = {0};
    for (int op = 0; op < ops_per_thread; op++) {
        struct block *b = &slots[rng(&s) % SLOTS];
        uint64_t r = rng(&s) % 100;
        if (!b->p)
            alloc_block(b, &s);
        else if (r < 45)
            free_block(b, "at free");
        else if (r < 60)
            realloc_block(b, &s);
        else if (r < 80)
            send_block((me + 1 + (int)(rng(&s) % (threads - 1 ? threads - 1 : 1))) % threads, b);
        else if (r < 90)
            write_pattern(b);
        else
            take_leftovers();
        if (op % 64 == 0)
            drain_queue(me);
    }
    drain_queue(me);
    pthread_mutex_lock(&leftover_lock);
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p && leftover_count < LEFT)
            leftovers[leftover_count++] = slots[i];
        else if (slots[i].p)
            free_block(&slots[i], "at thread end");
    pthread_mutex_unlock(&leftover_lock);
    atomic_fetch_add(&total_ops, (uint64_t)ops_per_thread);
    return NULL;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct block *)a)->p;
    uintptr_t y = (uintptr_t)((const struct block *)b)->p;
    return x < y ? -1 : x > y;
}

static void quiescent_checks(int round)
{
    qsort(leftovers, leftover_count, sizeof leftovers[0], by_address);
    for (unsigned i = 0; i < leftover_count; i++) {
        verify(&leftovers[i], leftovers[i].size, "at round end");
        if (i && leftovers[i - 1].p + hak_usable_size(leftovers[i - 1].p) > leftovers[i].p)
            FAIL("round %d: blocks %p and %p overlap", round, (void *)leftovers[i - 1].p,
                 (void *)leftovers[i].p);
    }
    struct hak_heap_report r;
    if (!hak_heap_check(&r))
        FAIL("round %d: heap walk: %s (%d errors)", round, r.message, r.errors);
}

int main(int argc, char **argv)
{
    if (argc != 5)
        FAIL("usage: stress THREADS OPS_PER_THREAD ROUNDS SEED");
    threads = atoi(argv[1]);
    ops_per_thread = atoi(argv[2]);
    int rounds = atoi(argv[3]);
    seed0 = strtoull(argv[4], NULL, 10);
    if (threads < 1 || threads > MAX_THREADS)
        FAIL("THREADS must be 1..%d", MAX_THREADS);
    for (int i = 0; i < MAX_THREADS; i++)
        pthread_mutex_init(&queues[i].lock, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int round = 0; round < rounds; round++) {
        pthread_t tid[MAX_THREADS];
        for (int i = 0; i < threads; i++)
            pthread_create(&tid[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < threads; i++)
            pthread_join(tid[i], NULL);
        for (int i = 0; i < threads; i++)
            drain_queue(i);
        quiescent_checks(round);
    }
    while (leftover_count)
        take_leftovers();
    hak_flush_thread();
    struct hak_counters c;
    hak_counters_snapshot(&c);
    for (int k = 0; k < HAK_NUM_CLASSES; k++)
        if (c.cls[k].live || c.cls[k].remote_pending || c.cls[k].thread_cached || c.cls[k].used)
            FAIL("class %d (%u B) after freeing everything: live %llu used %llu remote %llu "
                 "cached %llu", k, c.cls[k].block_size, (unsigned long long)c.cls[k].live,
                 (unsigned long long)c.cls[k].used, (unsigned long long)c.cls[k].remote_pending,
                 (unsigned long long)c.cls[k].thread_cached);
    if (c.live_total || c.large_live || c.abandoned_slabs || c.superslab_active)
        FAIL("after freeing everything: live_total %llu large %llu abandoned slabs %llu "
             "active %llu", (unsigned long long)c.live_total, (unsigned long long)c.large_live,
             (unsigned long long)c.abandoned_slabs, (unsigned long long)c.superslab_active);
    quiescent_checks(rounds);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("stress: ops=%llu seconds=%.3f threads=%d rounds=%d\n",
           (unsigned long long)total_ops, (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, threads, rounds);
    return 0;
}
