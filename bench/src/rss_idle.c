/* Memory given back after a big mixed workload (issue 13's RSS benchmark).
 *
 *   rss_idle [mib=1024] [threads=4] [idle_ms=2000] [seed=1]
 *
 * THREADS threads each allocate MIB/THREADS MiB in a mixed size profile
 * (by bytes: about a third tiny 16-1024 B, a third mid 1-64 KiB, a third
 * large 64 KiB-4 MiB), writing every page; then each thread frees the blocks
 * of the NEXT thread (every free is a cross-thread free), the threads exit
 * but one, which stays alive and idle; the process idles IDLE_MS and prints
 *   bench=rss_idle peak_kib=P after_kib=A mib=M threads=T idle_ms=I malloc_so=...
 * where P is VmHWM and A the resident set after the idle (/proc/self/status).
 * No call into the allocator happens during the idle.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 16 };

struct part {
    void **blocks;
    size_t n;
    size_t cap;
    uint64_t seed;
    size_t bytes;
};

static struct part parts[MAX_THREADS];
static unsigned threads = 4;
static pthread_barrier_t barrier;
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static int done;

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t pick(uint64_t *s)
{
    uint64_t r = rng(s);
    unsigned k = (unsigned)(r % 1000);
    if (k < 960)
        return 16 + (r >> 12) % 1009;            /* tiny: ~33% of the bytes */
    if (k < 998)
        return 1024 + (r >> 12) % (63 * 1024);   /* mid */
    return 65536 + (r >> 12) % (4u << 20);       /* large */
}

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n))
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    struct part *p = &parts[id];
    while (p->bytes < p->cap) {
        size_t n = pick(&p->seed);
        char *b = malloc(n);
        for (size_t i = 0; i < n; i += 4096)
            b[i] = 1;
        b[n - 1] = 1;
        p->blocks[p->n++] = b;
        p->bytes += n;
    }
    pthread_barrier_wait(&barrier);
    struct part *q = &parts[(id + 1) % threads];
    for (size_t i = 0; i < q->n; i++)
        free(q->blocks[i]);
    pthread_barrier_wait(&barrier);
    if (id == 0) { /* one thread stays alive, idle, until the end */
        pthread_mutex_lock(&idle_lock);
        while (!done)
            pthread_cond_wait(&idle_cond, &idle_lock);
        pthread_mutex_unlock(&idle_lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long mib = 1024, idle_ms = 2000;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "mib=", 4))
            mib = atol(argv[i] + 4);
        else if (!strncmp(argv[i], "threads=", 8))
            threads = (unsigned)atoi(argv[i] + 8);
        else if (!strncmp(argv[i], "idle_ms=", 8))
            idle_ms = atol(argv[i] + 8);
        else if (!strncmp(argv[i], "seed=", 5))
            seed = strtoull(argv[i] + 5, NULL, 10);
    }
    if (threads < 1 || threads > MAX_THREADS)
        threads = 4;
    /* the block tables come from mmap-backed calloc of the allocator under test */
    for (unsigned t = 0; t < threads; t++) {
        parts[t].cap = (size_t)mib * 1024 * 1024 / threads;
        parts[t].blocks = calloc(parts[t].cap / 16 + 1, sizeof(void *));
        parts[t].seed = seed * 0x9E3779B97F4A7C15ull + t + 1;
    }
    pthread_barrier_init(&barrier, NULL, threads);
    pthread_t tids[MAX_THREADS];
    for (unsigned t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, worker, (void *)(uintptr_t)t);
    for (unsigned t = 1; t < threads; t++)
        pthread_join(tids[t], NULL);
    for (unsigned t = 0; t < threads; t++)
        free(parts[t].blocks);
    struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    long peak = status_kib("VmHWM:"), after = status_kib("VmRSS:");
    Dl_info info = {0};
    dladdr((void *)(uintptr_t)dlsym(RTLD_DEFAULT, "malloc"), &info);
    printf("bench=rss_idle peak_kib=%ld after_kib=%ld mib=%ld threads=%u idle_ms=%ld malloc_so=%s\n",
           peak, after, mib, threads, idle_ms, info.dli_fname ? info.dli_fname : "unknown");
    pthread_mutex_lock(&idle_lock);
    done = 1;
    pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&idle_lock);
    pthread_join(tids[0], NULL);
    return 0;
}
