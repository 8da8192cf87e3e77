/* large: big-block churn. Block sizes are log-uniform in [min,max] (default
 * 64 KiB - 32 MiB); `live` blocks are live at a time. Each step frees a random
 * live block and allocates a new one in its place (2 ops). Each block is
 * touched at its first and last byte only (so page faults for two pages, not
 * a memset of megabytes). This measures the large path: mmap/munmap versus a
 * cache of mappings. */
#include "bench_common.h"
#include <math.h>

static size_t logu(bench_rng *r, double lmin, double lmax)
{
    double u = (double)(bench_rand(r) >> 11) * (1.0 / 9007199254740992.0);
    return (size_t)exp2(lmin + u * (lmax - lmin));
}

int main(int argc, char **argv)
{
    long long steps = 500000, live = 4, min = 64 << 10, max = 32 << 20, seed = 1;
    bench_param ps[] = {
        {"steps", &steps, "timed steps (1 free + 1 malloc each)"},
        {"live", &live, "live blocks"},
        {"min", &min, "smallest request, bytes"},
        {"max", &max, "largest request, bytes"},
        {"seed", &seed, "RNG seed"},
    };
    bench_parse(argc, argv, "large", "log-uniform 64 KiB - 32 MiB churn, a few live blocks", ps,
                BENCH_NPARAMS(ps));
    bench_verify_mode("large");
    if (live < 1 || min < 1 || max < min) { fprintf(stderr, "large: bad parameters\n"); return 2; }

    bench_rng r = {(uint64_t)seed};
    double lmin = log2((double)min), lmax = log2((double)max);
    void **ring = calloc((size_t)live, sizeof(void *));
    if (!ring) bench_oom("large", (size_t)live * sizeof(void *));
    for (long long i = 0; i < live; i++) {
        size_t n = logu(&r, lmin, lmax);
        if (!(ring[i] = malloc(n))) bench_oom("large", n);
        bench_touch(ring[i], n, (unsigned char)i);
    }

    double t0 = bench_now();
    for (long long s = 0; s < steps; s++) {
        uint32_t k = bench_below(&r, (uint32_t)live);
        size_t n = logu(&r, lmin, lmax);
        free(ring[k]);
        void *p = malloc(n);
        if (!p) bench_oom("large", n);
        bench_touch(p, n, (unsigned char)s);
        ring[k] = p;
    }
    double t1 = bench_now();

    for (long long i = 0; i < live; i++) free(ring[i]);
    free(ring);
    char extra[128];
    snprintf(extra, sizeof extra, "threads=1 live=%lld min=%lld max=%lld", live, min, max);
    bench_report("large", 2ULL * (unsigned long long)steps, t1 - t0, extra);
    return 0;
}
