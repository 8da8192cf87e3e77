/* fixed256: the pure fast path. malloc(size) / free pairs with a single live
 * block; every malloc and every free is one op. Untimed prefill: the same
 * loop for 1% of the pairs. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    long long pairs = 50000000, size = 256;
    bench_param ps[] = {
        {"pairs", &pairs, "timed malloc/free pairs"},
        {"size", &size, "request size, bytes"},
    };
    bench_parse(argc, argv, "fixed256", "malloc(256)/free pairs, one live block", ps,
                BENCH_NPARAMS(ps));
    bench_verify_mode("fixed256");
    if (size < 1) { fprintf(stderr, "fixed256: bad parameters\n"); return 2; }

    size_t n = (size_t)size;
    long long warm = pairs / 100 + 1;
    double t0 = 0;
    for (long long i = -warm; i < pairs; i++) {
        if (i == 0) t0 = bench_now();
        void *p = malloc(n);
        if (!p) bench_oom("fixed256", n);
        bench_touch(p, n, (unsigned char)i);
        free(p);
    }
    double t1 = bench_now();
    char extra[64];
    snprintf(extra, sizeof extra, "threads=1 size=%lld", size);
    bench_report("fixed256", 2ULL * (unsigned long long)pairs, t1 - t0, extra);
    return 0;
}
