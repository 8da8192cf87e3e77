/* Memory given back: each scenario allocates, frees everything, then waits
 * for RSS to come back near its baseline.
 *
 *   rss SCENARIO wait|collect [BOUND_MIB]
 *
 * Scenarios (issue 13):
 *   large    20 x 12 MiB blocks written and freed (the large cache)
 *   exited   a thread allocates 64 Ki x 1000 B and exits; another thread
 *            frees them all (remote frees into abandoned slabs)
 *   idle     the same, but the owner stays alive and idle (remote frees
 *            into an idle owner's slabs)
 *   mixed    one thread churns 16 B - 48 KiB blocks up to ~200 MiB live,
 *            then frees them (empty slabs and superslabs)
 *   sparse   24 MiB of 4000 B blocks, all freed but one in 256, which stay
 *            live until RSS is measured: their slabs keep every superslab
 *            mapped, so the freed units come back only by the purge's
 *            madvise (a free unit of a superslab in use)
 *   pending  (the seeded-bug check) the idle scenario, then hak_collect()
 *            at once: every block must come back (live == 0)
 *
 * `wait` polls RSS (/proc/self/statm) every 50 ms, for up to 30 s, until it
 * is within BOUND_MIB (default 8) of the baseline taken before the
 * scenario: the purge thread must get there by itself. `collect` calls
 * hak_collect() and measures once. Prints
 *   rss: scenario=S mode=M baseline_kib=B peak_kib=P after_kib=A waited_ms=W live=L
 *        heap_check=ok|<first violation>
 * and exits 0 when A <= B + BOUND, live == 0 and the heap walk is clean, 1
 * otherwise. The 30 s are a bound on a 500 ms decay, not a timing assertion.
 *
 * The heap walk runs once RSS is measured, in a fork child: the purge thread
 * may be inside a pass at any moment in this process, and a walk needs a
 * quiescent allocator, which the child (one thread, every allocator lock
 * taken across the fork) is. It is the only walk after the purge thread's
 * passes: no op program runs that thread.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"
#include "hakmem_debug.h"

enum { SMALL_N = 64 * 1024, SMALL_SIZE = 1000 };
enum { SPARSE_N = 6 * 1024, SPARSE_SIZE = 4000, SPARSE_KEEP = 256 };
/* the sparse scenario's live blocks, freed once RSS is measured */
static void *sparse_kept[SPARSE_N / SPARSE_KEEP];

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* hak_heap_check in a fork child: "ok", the first violation, or how the
 * child ended. */
static void heap_check_in_child(char *out, size_t size)
{
    int fd[2];
    if (pipe(fd)) {
        snprintf(out, size, "pipe failed");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        struct hak_heap_report r;
        const char *said = hak_heap_check(&r) ? "ok" : r.message;
        ssize_t ignored = write(fd[1], said, strlen(said));
        (void)ignored;
        _exit(0);
    }
    close(fd[1]);
    ssize_t n = pid < 0 ? -1 : read(fd[0], out, size - 1);
    close(fd[0]);
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (pid < 0)
        snprintf(out, size, "fork failed");
    else if (n <= 0)
        snprintf(out, size, "no report: the child %s %d",
                 WIFSIGNALED(status) ? "died of signal" : "exited",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    else
        out[n] = '\0';
    for (char *c = out; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static long peak;
static void note_peak(void)
{
    long r = rss_kib();
    if (r > peak)
        peak = r;
}

static void **blocks;

static void fill_small(void)
{
    for (unsigned i = 0; i < SMALL_N; i++) {
        blocks[i] = hak_malloc(SMALL_SIZE);
        memset(blocks[i], (int)i, SMALL_SIZE);
    }
    note_peak();
}

static void *owner_exits(void *arg)
{
    (void)arg;
    fill_small();
    return NULL;
}

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static int idle_stage; /* 1: blocks ready; 2: owner may exit */

static void *owner_idles(void *arg)
{
    (void)arg;
    fill_small();
    pthread_mutex_lock(&idle_lock);
    idle_stage = 1;
    pthread_cond_broadcast(&idle_cond);
    while (idle_stage < 2)
        pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);
    return NULL;
}

static void *freer(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < SMALL_N; i++)
        hak_free(blocks[i]);
    return NULL;
}

static void run_freer(void)
{
    pthread_t t;
    pthread_create(&t, NULL, freer, NULL);
    pthread_join(t, NULL);
}

static pthread_t idle_owner;

static void scenario(const char *name)
{
    if (!strcmp(name, "large")) {
        void *big[20];
        for (int i = 0; i < 20; i++) {
            big[i] = hak_malloc((size_t)12 << 20);
            memset(big[i], i, (size_t)12 << 20);
        }
        note_peak();
        for (int i = 0; i < 20; i++)
            hak_free(big[i]);
        hak_flush_thread();
    } else if (!strcmp(name, "exited")) {
        pthread_t t;
        pthread_create(&t, NULL, owner_exits, NULL);
        pthread_join(t, NULL);
        run_freer();
    } else if (!strcmp(name, "idle") || !strcmp(name, "pending")) {
        pthread_create(&idle_owner, NULL, owner_idles, NULL);
        pthread_mutex_lock(&idle_lock);
        while (idle_stage < 1)
            pthread_cond_wait(&idle_cond, &idle_lock);
        pthread_mutex_unlock(&idle_lock);
        run_freer();
    } else if (!strcmp(name, "mixed")) {
        enum { N = 40000 };
        static void *live[N];
        uint64_t s = 88172645463325252ull;
        for (unsigned i = 0; i < N; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t n = s % 8 == 0 ? 1024 + s % (48 * 1024) : 16 + s % 1000;
            live[i] = hak_malloc(n);
            memset(live[i], 1, n);
            if (i % 3 == 2) {
                hak_free(live[i - 1]);
                live[i - 1] = NULL;
            }
        }
        note_peak();
        for (unsigned i = 0; i < N; i++)
            hak_free(live[i]);
        hak_flush_thread();
    } else if (!strcmp(name, "sparse")) {
        static void *all[SPARSE_N];
        for (unsigned i = 0; i < SPARSE_N; i++) {
            all[i] = hak_malloc(SPARSE_SIZE);
            memset(all[i], 1, SPARSE_SIZE);
        }
        note_peak();
        for (unsigned i = 0; i < SPARSE_N; i++) {
            if (i % SPARSE_KEEP == 0)
                sparse_kept[i / SPARSE_KEEP] = all[i];
            else
                hak_free(all[i]);
        }
        hak_flush_thread();
    } else {
        fprintf(stderr, "rss: unknown scenario %s\n", name);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rss large|exited|idle|mixed|sparse|pending wait|collect "
                        "[BOUND_MIB]\n");
        return 2;
    }
    const char *name = argv[1];
    bool wait = !strcmp(argv[2], "wait");
    long bound = (argc > 3 ? atol(argv[3]) : 8) * 1024;
    blocks = hak_malloc(SMALL_N * sizeof *blocks); /* large: its own mapping */
    memset(blocks, 0, SMALL_N * sizeof *blocks);
    hak_free(hak_malloc(16));
    long baseline = rss_kib();
    peak = baseline;
    scenario(name);
    long after = rss_kib();
    long waited = 0;
    if (wait) {
        while (after > baseline + bound && waited < 30000) {
            sleep_ms(50);
            waited += 50;
            after = rss_kib();
        }
    } else {
        hak_collect();
        after = rss_kib();
    }
    char walk[600];
    heap_check_in_child(walk, sizeof walk);
    for (unsigned i = 0; i < SPARSE_N / SPARSE_KEEP; i++)
        hak_free(sparse_kept[i]);
    struct hak_counters c;
    hak_counters_snapshot(&c);
    uint64_t live = c.live_total - 1; /* the `blocks` array */
    printf("rss: scenario=%s mode=%s baseline_kib=%ld peak_kib=%ld after_kib=%ld waited_ms=%ld "
           "live=%llu heap_check=%s\n",
           name, argv[2], baseline, peak, after, waited, (unsigned long long)live, walk);
    if (idle_owner) {
        pthread_mutex_lock(&idle_lock);
        idle_stage = 2;
        pthread_cond_broadcast(&idle_cond);
        pthread_mutex_unlock(&idle_lock);
        pthread_join(idle_owner, NULL);
    }
    return after <= baseline + bound && live == 0 && !strcmp(walk, "ok") ? 0 : 1;
}
