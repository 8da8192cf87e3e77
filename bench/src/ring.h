/* The ring churn shared by `mixed` and `mid`: a ring of live blocks of random
 * size in [min, max]. Prefill (untimed) fills every slot; each timed step frees
 * a random slot and allocates a fresh random-size block into it (one free + one
 * malloc = 2 ops). Every block is touched (first and last byte). */
#ifndef BENCH_RING_H
#define BENCH_RING_H

#include "bench_common.h"

struct ring_defaults {
    long long steps, slots, min, max;
};

static int bench_ring_main(int argc, char **argv, const char *name, const char *summary,
                           struct ring_defaults d)
{
    long long steps = d.steps, slots = d.slots, min = d.min, max = d.max, seed = 1;
    bench_param ps[] = {
        {"steps", &steps, "timed steps (1 free + 1 malloc each)"},
        {"slots", &slots, "ring size (live blocks)"},
        {"min", &min, "smallest request, bytes"},
        {"max", &max, "largest request, bytes"},
        {"seed", &seed, "RNG seed"},
    };
    bench_parse(argc, argv, name, summary, ps, BENCH_NPARAMS(ps));
    bench_verify_mode(name);
    if (slots < 1 || min < 1 || max < min) {
        fprintf(stderr, "%s: bad parameters\n", name);
        return 2;
    }

    bench_rng r = {(uint64_t)seed};
    void **ring = calloc((size_t)slots, sizeof(void *));
    if (!ring) bench_oom(name, (size_t)slots * sizeof(void *));
    for (long long i = 0; i < slots; i++) {
        size_t n = bench_range(&r, (size_t)min, (size_t)max);
        if (!(ring[i] = malloc(n))) bench_oom(name, n);
        bench_touch(ring[i], n, (unsigned char)i);
    }

    double t0 = bench_now();
    for (long long s = 0; s < steps; s++) {
        uint32_t k = bench_below(&r, (uint32_t)slots);
        size_t n = bench_range(&r, (size_t)min, (size_t)max);
        free(ring[k]);
        void *p = malloc(n);
        if (!p) bench_oom(name, n);
        bench_touch(p, n, (unsigned char)s);
        ring[k] = p;
    }
    double t1 = bench_now();

    for (long long i = 0; i < slots; i++) free(ring[i]);
    free(ring);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=1 slots=%lld min=%lld max=%lld", slots, min, max);
    bench_report(name, 2ULL * (unsigned long long)steps, t1 - t0, extra);
    return 0;
}

#endif
