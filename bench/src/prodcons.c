/* prodcons: producer/consumer remote free.
 * The main thread allocates blocks of random size in [min,max], touches them
 * and hands each over a lock-free single-producer/single-consumer ring to a
 * second thread, which reads and frees it: every free is a remote free (the
 * block was allocated by another thread). One malloc + one free per block =
 * 2 ops. An untimed prefill runs the same pipeline for 5% of the blocks. */
#include "bench_common.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define CACHELINE 64

static struct {
    _Alignas(CACHELINE) _Atomic size_t head; /* written by consumer */
    _Alignas(CACHELINE) _Atomic size_t tail; /* written by producer */
    _Alignas(CACHELINE) void **buf;
    size_t mask;
    long long warm, blocks;
    pthread_barrier_t bar;
} q;

static inline void cpu_relax(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

static volatile unsigned char sink;

static void consume(long long n)
{
    size_t head = atomic_load_explicit(&q.head, memory_order_relaxed);
    size_t tail_seen = head;
    unsigned char acc = 0;
    for (long long i = 0; i < n; i++) {
        unsigned spins = 0;
        while (head == tail_seen) {
            tail_seen = atomic_load_explicit(&q.tail, memory_order_acquire);
            if (head == tail_seen) cpu_relax(&spins);
        }
        unsigned char *p = q.buf[head & q.mask];
        acc ^= p[0];
        free(p);
        head++;
        atomic_store_explicit(&q.head, head, memory_order_release);
    }
    sink = acc;
}

static void *consumer(void *arg)
{
    (void)arg;
    consume(q.warm);
    pthread_barrier_wait(&q.bar);
    consume(q.blocks);
    return NULL;
}

static void produce(bench_rng *r, long long n, size_t min, size_t max)
{
    size_t tail = atomic_load_explicit(&q.tail, memory_order_relaxed);
    size_t head_seen = atomic_load_explicit(&q.head, memory_order_acquire);
    size_t cap = q.mask + 1;
    for (long long i = 0; i < n; i++) {
        size_t sz = bench_range(r, min, max);
        void *p = malloc(sz);
        if (!p) bench_oom("prodcons", sz);
        bench_touch(p, sz, (unsigned char)i);
        unsigned spins = 0;
        while (tail - head_seen >= cap) {
            head_seen = atomic_load_explicit(&q.head, memory_order_acquire);
            if (tail - head_seen >= cap) cpu_relax(&spins);
        }
        q.buf[tail & q.mask] = p;
        tail++;
        atomic_store_explicit(&q.tail, tail, memory_order_release);
    }
}

int main(int argc, char **argv)
{
    long long blocks = 5000000, ring = 4096, min = 16, max = 1024, seed = 1;
    bench_param ps[] = {
        {"blocks", &blocks, "timed blocks (1 malloc + 1 remote free each)"},
        {"ring", &ring, "SPSC ring capacity (rounded up to a power of 2)"},
        {"min", &min, "smallest request, bytes"},
        {"max", &max, "largest request, bytes"},
        {"seed", &seed, "RNG seed"},
    };
    bench_parse(argc, argv, "prodcons", "producer allocates, consumer thread frees (remote free)",
                ps, BENCH_NPARAMS(ps));
    bench_verify_mode("prodcons");
    if (ring < 1 || min < 1 || max < min) { fprintf(stderr, "prodcons: bad parameters\n"); return 2; }

    size_t cap = 1;
    while (cap < (size_t)ring) cap <<= 1;
    q.buf = calloc(cap, sizeof(void *));
    if (!q.buf) bench_oom("prodcons", cap * sizeof(void *));
    q.mask = cap - 1;
    q.blocks = blocks;
    q.warm = blocks / 20 + 1;
    pthread_barrier_init(&q.bar, NULL, 2);

    bench_rng r = {(uint64_t)seed};
    pthread_t th;
    if (pthread_create(&th, NULL, consumer, NULL)) { perror("pthread_create"); return 1; }
    produce(&r, q.warm, (size_t)min, (size_t)max);
    pthread_barrier_wait(&q.bar);
    double t0 = bench_now();
    produce(&r, blocks, (size_t)min, (size_t)max);
    pthread_join(th, NULL);
    double t1 = bench_now();

    pthread_barrier_destroy(&q.bar);
    free(q.buf);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=2 ring=%zu min=%lld max=%lld", cap, min, max);
    bench_report("prodcons", 2ULL * (unsigned long long)blocks, t1 - t0, extra);
    return 0;
}
