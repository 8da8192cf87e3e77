/* larson: Larson-style server churn across thread generations.
 * `threads` threads each own an array of `slots` blocks; each step frees a
 * random slot and allocates a random-size block in [min,max] into it (2 ops).
 * After steps/(gens*threads) steps a thread exits and hands its array to a
 * thread of the next generation, so most frees hit blocks allocated by a
 * thread that is gone (or by the prefill, done untimed by the main thread).
 * Timed: all generations, thread creation and join included (as in Larson). */
#include "bench_common.h"
#include <pthread.h>

typedef struct {
    void **slots;
    long long nslots, steps;
    size_t min, max;
    uint64_t seed;
} work;

static void *worker(void *arg)
{
    work *w = arg;
    bench_rng r = {w->seed};
    void **a = w->slots;
    uint32_t ns = (uint32_t)w->nslots;
    for (long long s = 0; s < w->steps; s++) {
        uint32_t k = bench_below(&r, ns);
        size_t n = bench_range(&r, w->min, w->max);
        free(a[k]);
        void *p = malloc(n);
        if (!p) bench_oom("larson", n);
        bench_touch(p, n, (unsigned char)s);
        a[k] = p;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long long threads = 4, slots = 1024, steps = 32000000, gens = 8, min = 16, max = 1024,
              seed = 1;
    bench_param ps[] = {
        {"threads", &threads, "threads per generation"},
        {"slots", &slots, "blocks per thread array"},
        {"steps", &steps, "total timed steps over all threads/generations"},
        {"gens", &gens, "thread generations (arrays handed over between them)"},
        {"min", &min, "smallest request, bytes"},
        {"max", &max, "largest request, bytes"},
        {"seed", &seed, "RNG seed"},
    };
    bench_parse(argc, argv, "larson", "Larson-style multi-thread churn with array hand-over", ps,
                BENCH_NPARAMS(ps));
    bench_verify_mode("larson");
    if (threads < 1 || slots < 1 || gens < 1 || min < 1 || max < min) {
        fprintf(stderr, "larson: bad parameters\n");
        return 2;
    }

    long long per = steps / (gens * threads);
    if (per < 1) per = 1;
    void ***arrays = calloc((size_t)threads, sizeof(void **));
    work *w = calloc((size_t)threads, sizeof(work));
    pthread_t *th = calloc((size_t)threads, sizeof(pthread_t));
    if (!arrays || !w || !th) bench_oom("larson", (size_t)threads * sizeof(work));
    bench_rng r = {(uint64_t)seed};
    for (long long t = 0; t < threads; t++) {
        arrays[t] = calloc((size_t)slots, sizeof(void *));
        if (!arrays[t]) bench_oom("larson", (size_t)slots * sizeof(void *));
        for (long long i = 0; i < slots; i++) {
            size_t n = bench_range(&r, (size_t)min, (size_t)max);
            if (!(arrays[t][i] = malloc(n))) bench_oom("larson", n);
            bench_touch(arrays[t][i], n, (unsigned char)i);
        }
    }

    double t0 = bench_now();
    for (long long g = 0; g < gens; g++) {
        for (long long t = 0; t < threads; t++) {
            /* generation g's thread t takes the array of thread t+g of the last one */
            w[t] = (work){arrays[(t + g) % threads], slots, per, (size_t)min, (size_t)max,
                          (uint64_t)seed * 0x9e3779b97f4a7c15ULL + (uint64_t)(g * threads + t + 1)};
            if (pthread_create(&th[t], NULL, worker, &w[t])) { perror("pthread_create"); return 1; }
        }
        for (long long t = 0; t < threads; t++) pthread_join(th[t], NULL);
    }
    double t1 = bench_now();

    for (long long t = 0; t < threads; t++) {
        for (long long i = 0; i < slots; i++) free(arrays[t][i]);
        free(arrays[t]);
    }
    free(arrays);
    free(w);
    free(th);
    char extra[160];
    snprintf(extra, sizeof extra, "threads=%lld slots=%lld gens=%lld min=%lld max=%lld", threads,
             slots, gens, min, max);
    bench_report("larson", 2ULL * (unsigned long long)(per * gens * threads), t1 - t0, extra);
    return 0;
}
