/* fork() while other threads are inside the allocator.
 *
 *   fork_stress FORKS SCENARIO SEED [THREADS]
 *
 * THREADS worker threads (default 3) churn the allocator until told to stop;
 * the main thread forks FORKS times meanwhile. SCENARIO picks what the
 * workers do (every one touches tiny, mid and large blocks):
 *   churn   each thread allocates a batch of mixed sizes, fills, verifies
 *           and frees it (its own blocks: caches fill, flush and refill)
 *   remote  threads hand blocks over through a shared ring and free each
 *           other's (remote frees, slabs emptied by remote frees)
 *   exit    each worker starts short-lived threads that allocate and exit
 *           with blocks live, which the worker then frees (abandonment,
 *           adoption, thread heaps recycled)
 *   aligned churn with aligned allocations mixed in
 *   all     one worker of each of the above (THREADS rounded up to 4)
 *
 * Every child, at once: checks the heap it inherited (hak_heap_check, when
 * the allocator has it), allocates 300 blocks of mixed sizes, fills and
 * verifies them, frees them, checks again and exits 0. A failed check exits
 * 3 with the message on stderr, a bad pattern 4, a NULL 5, a misaligned
 * aligned allocation 6 (counted with the parent's); every tenth child then
 * execs /bin/true instead of exiting (7 if exec fails); a child still
 * running after 20 s is killed by its own alarm (SIGALRM: "hung"), after
 * writing its stack to stderr (where it hangs is the diagnosis).
 *
 * Built two ways: -DFORK_HAK_API links libhakmem.so and calls hak_* (the
 * tests); without it the program calls the standard names and finds
 * hak_heap_check with dlsym, so it runs under any LD_PRELOAD allocator (the
 * bench). Prints one line:
 *   fork_stress: forks=N ok=N check=N corrupt=N null=N crashed=N hung=N scenario=S
 *                misaligned=N
 * (misaligned: aligned allocations of the parent's threads that missed their
 * alignment, which are not used) and exits 0 when every child passed and
 * nothing was misaligned, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem_debug.h"

#ifdef FORK_HAK_API
#include "hakmem.h"
#define A_MALLOC hak_malloc
#define A_FREE hak_free
#define A_ALIGNED(al, n) hak_aligned_alloc((al), (n))
#define A_FLUSH hak_flush_thread
static int (*heap_check)(struct hak_heap_report *) = hak_heap_check;
#else
#define A_MALLOC malloc
#define A_FREE free
#define A_ALIGNED(al, n) aligned_alloc((al), (n))
#define A_FLUSH()
static int (*heap_check)(struct hak_heap_report *);
#endif

enum { MAX_WORKERS = 8, BATCH = 48, RING = 256, CHILD_BLOCKS = 300 };

static _Atomic bool stop;
static _Atomic unsigned misaligned; /* aligned_alloc answers that missed their alignment */
static uint64_t seed0;

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mostly tiny, some mid, a few large (up to 1 MiB). */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rng(s);
    switch (r % 16) {
    case 0:
        return 65537 + (r >> 8) % (1u << 20);
    case 1: case 2: case 3:
        return 1025 + (r >> 8) % 40000;
    default:
        return 1 + (r >> 8) % 1024;
    }
}

static unsigned char pat(uintptr_t key, size_t i)
{
    return (unsigned char)(key * 131 + i * 7 + (i >> 8));
}

/* Patterns the first and last 64 bytes (all of a small block). */
static void fill(unsigned char *p, size_t n, uintptr_t key)
{
    size_t head = n < 128 ? n : 64;
    for (size_t i = 0; i < head; i++)
        p[i] = pat(key, i);
    for (size_t i = n < 128 ? n : n - 64; i < n; i++)
        p[i] = pat(key, i);
}

static bool verify(const unsigned char *p, size_t n, uintptr_t key)
{
    size_t head = n < 128 ? n : 64;
    for (size_t i = 0; i < head; i++)
        if (p[i] != pat(key, i))
            return false;
    for (size_t i = n < 128 ? n : n - 64; i < n; i++)
        if (p[i] != pat(key, i))
            return false;
    return true;
}

struct blk {
    unsigned char *p;
    size_t n;
};

static bool no_aligned; /* env FORK_STRESS_NO_ALIGNED: for allocators whose aligned_alloc is broken */

static void *alloc_blk(struct blk *b, uint64_t *s, bool aligned)
{
    aligned = aligned && !no_aligned;
    b->n = pick_size(s);
    if (aligned && rng(s) % 3 == 0) {
        size_t al = (size_t)32 << (rng(s) % 8);
        b->n = (b->n + al - 1) / al * al;
        b->p = A_ALIGNED(al, b->n);
        if (b->p && (uintptr_t)b->p % al) {
            /* Not a fork problem (Debian's mimalloc 2.0 has this bug): counted,
             * and the block is not used. */
            atomic_fetch_add(&misaligned, 1);
            A_FREE(b->p);
            b->p = NULL;
            return NULL;
        }
    } else {
        b->p = A_MALLOC(b->n);
    }
    if (b->p)
        fill(b->p, b->n, (uintptr_t)b->p);
    return b->p;
}

static void free_blk(struct blk *b)
{
    if (!verify(b->p, b->n, (uintptr_t)b->p)) {
        fprintf(stderr, "fork_stress: parent block %p (%zu B) corrupt\n", (void *)b->p, b->n);
        abort();
    }
    A_FREE(b->p);
    b->p = NULL;
}

/* ---- worker kinds ---- */

static void churn(uint64_t *s, bool aligned)
{
    struct blk batch[BATCH];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned n = 1 + (unsigned)(rng(s) % BATCH);
        for (unsigned i = 0; i < n; i++)
            if (!alloc_blk(&batch[i], s, aligned))
                n = i;
        for (unsigned i = 0; i < n; i++)
            free_blk(&batch[i]);
        if (rng(s) % 64 == 0)
            A_FLUSH();
    }
}

static struct {
    pthread_mutex_t lock;
    struct blk items[RING];
    unsigned count;
} ring = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void remote(uint64_t *s)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        struct blk b;
        if (!alloc_blk(&b, s, false))
            continue;
        struct blk out = {NULL, 0};
        pthread_mutex_lock(&ring.lock);
        if (ring.count == RING || (ring.count && rng(s) % 2)) {
            unsigned i = (unsigned)(rng(s) % ring.count);
            out = ring.items[i];
            ring.items[i] = ring.items[--ring.count];
        }
        if (ring.count < RING)
            ring.items[ring.count++] = b;
        else
            out.p ? free_blk(&b) : (void)0;
        pthread_mutex_unlock(&ring.lock);
        if (out.p)
            free_blk(&out);
    }
}

struct shortlived {
    uint64_t seed;
    struct blk left[16];
    unsigned n;
};

static void *shortlived_main(void *arg)
{
    struct shortlived *sl = arg;
    struct blk tmp[16];
    unsigned t = (unsigned)(rng(&sl->seed) % 16);
    for (unsigned i = 0; i < t; i++)
        if (alloc_blk(&tmp[i], &sl->seed, false))
            free_blk(&tmp[i]);
    sl->n = 1 + (unsigned)(rng(&sl->seed) % 16);
    for (unsigned i = 0; i < sl->n; i++)
        if (!alloc_blk(&sl->left[i], &sl->seed, false))
            sl->n = i;
    return NULL; /* exits with its blocks live */
}

static void exits(uint64_t *s)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        struct shortlived sl = {.seed = rng(s) | 1};
        pthread_t t;
        if (pthread_create(&t, NULL, shortlived_main, &sl) != 0)
            continue;
        pthread_join(t, NULL);
        for (unsigned i = 0; i < sl.n; i++)
            free_blk(&sl.left[i]); /* frees into abandoned or adopted slabs */
    }
}

static const char *scenario;

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t s = seed0 * 2654435761u + id * 97 + 1;
    const char *kind = scenario;
    if (!strcmp(kind, "all")) {
        static const char *kinds[] = {"churn", "remote", "exit", "aligned"};
        kind = kinds[id % 4];
    }
    if (!strcmp(kind, "churn"))
        churn(&s, false);
    else if (!strcmp(kind, "aligned"))
        churn(&s, true);
    else if (!strcmp(kind, "remote"))
        remote(&s);
    else
        exits(&s);
    return NULL;
}

/* ---- the child ---- */

static void hung(int sig)
{
    static const char msg[] = "fork_stress: a child hung; its stack:\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    void *frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void child(unsigned fork_no)
{
    signal(SIGALRM, hung);
    alarm(20);
    if (heap_check) {
        struct hak_heap_report r;
        if (!heap_check(&r)) {
            fprintf(stderr, "fork_stress: child %u inherited a bad heap: %s\n", fork_no,
                    r.message);
            _exit(3);
        }
    }
    static struct blk blocks[CHILD_BLOCKS];
    uint64_t s = seed0 + fork_no * 7919 + 3;
    for (unsigned i = 0; i < CHILD_BLOCKS; i++)
        if (!alloc_blk(&blocks[i], &s, i % 5 == 0))
            _exit(atomic_load(&misaligned) ? 6 : 5);
    for (unsigned i = 0; i < CHILD_BLOCKS; i++) {
        if (!verify(blocks[i].p, blocks[i].n, (uintptr_t)blocks[i].p)) {
            fprintf(stderr, "fork_stress: child %u block %u (%zu B at %p) corrupt\n", fork_no,
                    i, blocks[i].n, (void *)blocks[i].p);
            _exit(4);
        }
    }
    for (unsigned i = 0; i < CHILD_BLOCKS; i += 2)
        A_FREE(blocks[i].p);
    for (unsigned i = 1; i < CHILD_BLOCKS; i += 2)
        A_FREE(blocks[i].p);
    A_FLUSH();
    if (heap_check) {
        struct hak_heap_report r;
        if (!heap_check(&r)) {
            fprintf(stderr, "fork_stress: child %u heap bad after its work: %s\n", fork_no,
                    r.message);
            _exit(3);
        }
    }
    if (fork_no % 10 == 9) { /* a child may exec at once, too */
        execl("/bin/true", "true", (char *)NULL);
        _exit(7);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: fork_stress FORKS churn|remote|exit|aligned|all SEED [THREADS]\n");
        return 2;
    }
    unsigned forks = (unsigned)strtoul(argv[1], NULL, 10);
    scenario = argv[2];
    seed0 = strtoull(argv[3], NULL, 10) | 1;
    unsigned threads = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 3;
    no_aligned = getenv("FORK_STRESS_NO_ALIGNED") != NULL;
    if (!strcmp(scenario, "all") && threads < 4)
        threads = 4;
    if (threads > MAX_WORKERS)
        threads = MAX_WORKERS;
#ifndef FORK_HAK_API
    heap_check = (int (*)(struct hak_heap_report *))dlsym(RTLD_DEFAULT, "hak_heap_check");
#endif
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc now: a hung child's handler must not */
    pthread_t tids[MAX_WORKERS];
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, worker, (void *)(uintptr_t)i);
    unsigned ok = 0, check = 0, corrupt = 0, null = 0, crashed = 0, hung = 0;
    for (unsigned f = 0; f < forks; f++) {
        /* let the workers get inside the allocator */
        for (volatile unsigned spin = 0; spin < 20000; spin++)
            ;
        pid_t pid = fork();
        if (pid == 0)
            child(f);
        if (pid < 0) {
            perror("fork");
            break;
        }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (WIFEXITED(status)) {
            int code = WEXITSTATUS(status);
            ok += code == 0;
            check += code == 3;
            corrupt += code == 4;
            null += code == 5;
            misaligned += code == 6;
            crashed += code != 0 && code != 3 && code != 4 && code != 5 && code != 6;
        } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
            hung++;
        } else {
            crashed++;
        }
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    printf("fork_stress: forks=%u ok=%u check=%u corrupt=%u null=%u crashed=%u hung=%u "
           "scenario=%s misaligned=%u\n",
           forks, ok, check, corrupt, null, crashed, hung, scenario, atomic_load(&misaligned));
    return ok == forks && !atomic_load(&misaligned) ? 0 : 1;
}
