/* mid: medium-size (8-32 KiB) churn on a ring of slots.
 * Prefill (untimed): every slot gets a block of random size in [min,max].
 * Timed: each step frees a random slot and allocates a fresh random-size block
 * into it (one free + one malloc = 2 ops). Every block is touched (first and
 * last byte). */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long steps = 2000000, slots = 1024, min = 8192, max = 32768, seed = 1;
    bench_param ps[] = {
        {"steps", &steps, "timed steps (1 free + 1 malloc each)"},
        {"slots", &slots, "ring size (live blocks)"},
        {"min", &min, "smallest request, bytes"},
        {"max", &max, "largest request, bytes"},
        {"seed", &seed, "RNG seed"},
    };
    bench_parse(argc, argv, "mid", "random 8-32 KiB churn on a ring of live blocks", ps,
                BENCH_NPARAMS(ps));
    bench_verify_mode("mid");
    if (slots < 1 || min < 1 || max < min) { fprintf(stderr, "mid: bad parameters\n"); return 2; }

    bench_rng r = {(uint64_t)seed};
    void **ring = calloc((size_t)slots, sizeof(void *));
    if (!ring) bench_oom("mid", (size_t)slots * sizeof(void *));
    for (long long i = 0; i < slots; i++) {
        size_t n = bench_range(&r, (size_t)min, (size_t)max);
        if (!(ring[i] = malloc(n))) bench_oom("mid", n);
        bench_touch(ring[i], n, (unsigned char)i);
    }

    double t0 = bench_now();
    for (long long s = 0; s < steps; s++) {
        uint32_t k = bench_below(&r, (uint32_t)slots);
        size_t n = bench_range(&r, (size_t)min, (size_t)max);
        free(ring[k]);
        void *p = malloc(n);
        if (!p) bench_oom("mid", n);
        bench_touch(p, n, (unsigned char)s);
        ring[k] = p;
    }
    double t1 = bench_now();

    for (long long i = 0; i < slots; i++) free(ring[i]);
    free(ring);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=1 slots=%lld min=%lld max=%lld", slots, min, max);
    bench_report("mid", 2ULL * (unsigned long long)steps, t1 - t0, extra);
    return 0;
}
