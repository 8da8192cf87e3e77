/* bench_common.h - shared helpers for the allocator benchmarks in bench/src/.
 *
 * Timing (CLOCK_MONOTONIC), a cheap inline RNG (wyrand), key=value argument
 * parsing, a compiler barrier that keeps malloc/free pairs from being elided,
 * the BENCH_VERIFY self-report (which object really serves malloc), and the
 * one-line machine-readable result.
 *
 * Every benchmark is invoked as:  ./NAME [key=value ...]   (./NAME --help lists keys)
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- timing ------------------------------------------------------------ */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- RNG: wyrand (one multiply per draw) ------------------------------- */
typedef struct { uint64_t s; } bench_rng;

static inline uint64_t bench_rand(bench_rng *r)
{
    r->s += 0xa0761d6478bd642fULL;
    __uint128_t m = (__uint128_t)r->s * (r->s ^ 0xe7037ed1a0b428dbULL);
    return (uint64_t)(m >> 64) ^ (uint64_t)m;
}

/* uniform in [0, n) without division (Lemire multiply-shift on 32 bits) */
static inline uint32_t bench_below(bench_rng *r, uint32_t n)
{
    return (uint32_t)(((uint64_t)(uint32_t)bench_rand(r) * n) >> 32);
}

/* uniform in [lo, hi] */
static inline size_t bench_range(bench_rng *r, size_t lo, size_t hi)
{
    return lo + bench_below(r, (uint32_t)(hi - lo + 1));
}

/* ---- keep the compiler honest ------------------------------------------ */
/* Makes p escape so that malloc/free pairs and the touches cannot be elided. */
#define BENCH_ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

/* Touch a fresh block: write its first and last byte. */
static inline void bench_touch(void *p, size_t n, unsigned char v)
{
    unsigned char *c = (unsigned char *)p;
    c[0] = v;
    c[n - 1] = v;
    BENCH_ESCAPE(c);
}

static inline void bench_oom(const char *bench, size_t n)
{
    fprintf(stderr, "bench=%s error=malloc_returned_null size=%zu\n", bench, n);
    exit(3);
}

/* ---- arguments: key=value --------------------------------------------- */
typedef struct {
    const char *key;
    long long *val;
    const char *help;
} bench_param;

static void bench_usage(const char *name, const char *what, const bench_param *ps, int n)
{
    printf("usage: %s [key=value ...]\n%s\n\nparameters (default):\n", name, what);
    for (int i = 0; i < n; i++)
        printf("  %-10s %-40s (%lld)\n", ps[i].key, ps[i].help, *ps[i].val);
    printf("\nenvironment: BENCH_VERIFY=1 prints which objects serve malloc/free and exits.\n");
}

static void bench_parse(int argc, char **argv, const char *name, const char *what,
                        const bench_param *ps, int n)
{
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            bench_usage(name, what, ps, n);
            exit(0);
        }
        const char *eq = strchr(argv[a], '=');
        int ok = 0;
        if (eq) {
            for (int i = 0; i < n; i++) {
                size_t kl = strlen(ps[i].key);
                if ((size_t)(eq - argv[a]) == kl && !strncmp(argv[a], ps[i].key, kl)) {
                    char *end;
                    long long v = strtoll(eq + 1, &end, 0);
                    if (*end == 'k' || *end == 'K') { v <<= 10; end++; }
                    else if (*end == 'm' || *end == 'M') { v <<= 20; end++; }
                    if (*end || end == eq + 1 || v < 0) break;
                    *ps[i].val = v;
                    ok = 1;
                    break;
                }
            }
        }
        if (!ok) {
            fprintf(stderr, "%s: bad argument '%s' (try --help)\n", name, argv[a]);
            exit(2);
        }
    }
}

/* ---- which object serves malloc? --------------------------------------- */
static const char *bench_sym_object(const char *sym)
{
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info di;
    if (!f) return "unresolved";
    if (!dladdr(f, &di) || !di.dli_fname || !di.dli_fname[0]) return "unknown";
    return di.dli_fname;
}

/* hakmem exports `const char *hak_build_variant(void)`; report it when present. */
static const char *bench_variant(void)
{
    const char *(*fn)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "hak_build_variant");
    const char *v = fn ? fn() : NULL;
    return v && v[0] ? v : "none";
}

/* With BENCH_VERIFY=1: print the serving objects and exit before any work. */
static void bench_verify_mode(const char *name)
{
    const char *e = getenv("BENCH_VERIFY");
    if (!e || !e[0] || !strcmp(e, "0")) return;
    /* exercise the allocator once so a broken preload fails here, not later */
    void *p = malloc(64);
    if (!p) bench_oom(name, 64);
    bench_touch(p, 64, 1);
    free(p);
    printf("verify bench=%s malloc=%s free=%s calloc=%s realloc=%s variant=%s\n", name,
           bench_sym_object("malloc"), bench_sym_object("free"), bench_sym_object("calloc"),
           bench_sym_object("realloc"), bench_variant());
    fflush(stdout);
    exit(0);
}

/* ---- result line -------------------------------------------------------- */
/* extra: optional " key=value" pairs (no leading/trailing newline). */
static void bench_report(const char *name, unsigned long long ops, double seconds,
                         const char *extra)
{
    printf("bench=%s ops=%llu seconds=%.6f ops_per_sec=%.0f%s%s malloc_so=%s\n", name, ops,
           seconds, seconds > 0 ? (double)ops / seconds : 0.0, extra && extra[0] ? " " : "",
           extra ? extra : "", bench_sym_object("malloc"));
    fflush(stdout);
}

#define BENCH_NPARAMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

#endif /* BENCH_COMMON_H */
