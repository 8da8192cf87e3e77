/* batch16: bursts of small fixed-size allocations.
 * Each round mallocs `batch` blocks of `size` bytes, then frees them all in
 * allocation order. Every malloc and every free is one op. A short untimed
 * prefill runs the same pattern to warm caches. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long rounds = 1000000, batch = 100, size = 16;
    bench_param ps[] = {
        {"rounds", &rounds, "timed rounds"},
        {"batch", &batch, "blocks per round"},
        {"size", &size, "request size, bytes"},
    };
    bench_parse(argc, argv, "batch16", "batch x malloc(16) then batch x free, repeated", ps,
                BENCH_NPARAMS(ps));
    bench_verify_mode("batch16");
    if (batch < 1 || size < 1) { fprintf(stderr, "batch16: bad parameters\n"); return 2; }

    void **b = calloc((size_t)batch, sizeof(void *));
    if (!b) bench_oom("batch16", (size_t)batch * sizeof(void *));
    size_t n = (size_t)size;
    long long warm = rounds / 100 + 1;

    double t0 = 0;
    for (long long r = -warm; r < rounds; r++) {
        if (r == 0) t0 = bench_now();
        for (long long i = 0; i < batch; i++) {
            void *p = malloc(n);
            if (!p) bench_oom("batch16", n);
            bench_touch(p, n, (unsigned char)i);
            b[i] = p;
        }
        for (long long i = 0; i < batch; i++) free(b[i]);
    }
    double t1 = bench_now();
    free(b);
    char extra[96];
    snprintf(extra, sizeof extra, "threads=1 batch=%lld size=%lld", batch, size);
    bench_report("batch16", 2ULL * (unsigned long long)rounds * (unsigned long long)batch,
                 t1 - t0, extra);
    return 0;
}
