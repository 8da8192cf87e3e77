/* Out of memory: each request hakmem makes to the OS refused in turn.
 *
 *   oom [MAX_POINTS]
 *
 * A fixed workload runs in a fork child of a process that has not allocated
 * through hakmem, so every child starts from the same empty allocator: every
 * entry point, each size range, reallocs within a class range, across ranges,
 * grown in place by mremap and shrunk, a second superslab, and enough large
 * blocks reallocated by mremap that the large-block table grows, in one of
 * them, inside a realloc. Child k lets hakmem's first k OS requests through
 * (hak_fail_os_maps) and refuses the rest (mode `all`: the kernel is out of
 * memory from then on) or only the next one (mode `one`: a transient
 * failure). In each child:
 *   - a call that returns NULL must set errno to ENOMEM, and an OS request
 *     must have been refused during that call;
 *   - a realloc that returns NULL leaves the old block intact and freeable;
 *   - a block returned is aligned, as large as asked, and keeps what was
 *     written to it until it is freed (or reallocated: its prefix moves);
 *   - with the refusals ended, every size range allocates again;
 *   - once everything is freed and collected, the heap walk (with what
 *     hak_collect promises) is clean and no block is live.
 * The sweep of a mode ends at the first k whose child had nothing refused
 * (the workload made k requests or fewer). Prints each failing child's
 * complaint and
 *   oom: points=N refused=R nulls=U failures=F
 * (N children run in both modes, R requests refused, U NULL results seen),
 * and exits 0 when no child failed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "hakmem_debug.h"

enum { SLOTS = 16, BULK_TINY = 2600, BULK_LARGE = 8, TOMBSTONES = 102 };
/* Workers: with the main thread's, two heap mappings' worth of heaps (four
 * heaps per mapping); each allocates WORKER_SIZES blocks and frees REMOTE of
 * the main thread's. */
enum { WORKERS = 6, WORKER_SIZES = 3, REMOTE = 16 };
enum { PASSED = 0, FAILED = 1, UNREFUSED = 3 };
static const size_t MIB = (size_t)1 << 20;

struct block {
    unsigned char *p;
    size_t size;
    unsigned char fill;
};

static struct block slot[SLOTS], tiny[BULK_TINY], large[BULK_LARGE];
static struct block owned[WORKERS][WORKER_SIZES], late;
static unsigned nulls;
static const char *mode_name;
static unsigned point;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("oom: child %u (%s): ", point, mode_name);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    _exit(FAILED);
}

static void fill(struct block *b, unsigned char byte)
{
    b->fill = byte;
    memset(b->p, byte, b->size);
}

/* The block still holds its fill in its first `n` bytes (all equal to the
 * first, which is the fill: memcmp of the block against itself one byte on). */
static void verify(const struct block *b, size_t n, const char *what)
{
    if (!n || (b->p[0] == b->fill && !memcmp(b->p, b->p + 1, n - 1)))
        return;
    size_t i = 0;
    while (b->p[i] == b->fill)
        i++;
    fail("%s: byte %zu of a %zu B block at %p is %#x, not %#x", what, i, b->size, (void *)b->p,
         b->p[i], b->fill);
}

/* The checks of one call's result; true when it returned a block. */
static bool returned(void *p, unsigned long refused_before, const char *what, size_t size,
                     size_t align)
{
    if (!p) {
        if (errno != ENOMEM)
            fail("%s(%zu) returned NULL with errno %d, not ENOMEM", what, size, errno);
        if (hak_os_refusals() == refused_before)
            fail("%s(%zu) returned NULL with no OS request refused", what, size);
        nulls++;
        return false;
    }
    if ((uintptr_t)p % align)
        fail("%s(%zu) returned %p, not %zu-aligned", what, size, p, align);
    if (hak_usable_size(p) < size)
        fail("%s(%zu) returned %p with %zu usable bytes", what, size, p, hak_usable_size(p));
    return true;
}

static void allocate(struct block *b, size_t size, size_t align, bool zeroed)
{
    static unsigned char next_fill = 1;
    unsigned long before = hak_os_refusals();
    errno = 0;
    void *p = align > 16 ? hak_aligned_alloc(align, size)
              : zeroed   ? hak_calloc(size / 100, 100)
                         : hak_malloc(size);
    const char *what = align > 16 ? "aligned_alloc" : zeroed ? "calloc" : "malloc";
    *b = (struct block){NULL, size, 0};
    if (!returned(p, before, what, size, align > 16 ? align : 16))
        return;
    b->p = p;
    if (zeroed) {
        b->fill = 0;
        verify(b, size, "calloc's zeroes");
    }
    fill(b, next_fill++ | 1);
}

static void reallocate(struct block *b, size_t size)
{
    if (!b->p)
        return;
    unsigned long before = hak_os_refusals();
    errno = 0;
    void *p = hak_realloc(b->p, size);
    if (!returned(p, before, "realloc", size, 16)) {
        verify(b, b->size, "the block a failed realloc kept");
        return;
    }
    size_t kept = size < b->size ? size : b->size;
    b->p = p;
    verify(b, kept, "realloc's moved prefix");
    b->size = size;
    fill(b, (unsigned char)(b->fill + 2));
}

static void release(struct block *b)
{
    if (!b->p)
        return;
    verify(b, b->size, "a block before its free");
    hak_free(b->p);
    b->p = NULL;
}

/* A collect, then the heap walk with what the collect promises. */
static void collect_and_walk(const char *what)
{
    hak_collect();
    struct hak_heap_report r;
    if (!hak_heap_check_collected(&r))
        fail("%s: %s", what, r.message);
}

/* ---- workers and a fork, taking turns so the OS requests keep their order -- */

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_moved = PTHREAD_COND_INITIALIZER;
/* Turns the main thread gave, turns the workers finished. */
static unsigned given, finished;
static pthread_key_t late_key;

static void wait_for(const unsigned *counter, unsigned value)
{
    pthread_mutex_lock(&turn_lock);
    while (*counter < value)
        pthread_cond_wait(&turn_moved, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
}

static void advance(unsigned *counter)
{
    pthread_mutex_lock(&turn_lock);
    ++*counter;
    pthread_cond_broadcast(&turn_moved);
    pthread_mutex_unlock(&turn_lock);
}

/* A destructor of a key newer than hakmem's, so it runs after hakmem gave the
 * thread's heap back: the block comes from the exit heap. */
static void late_allocation(void *unused)
{
    (void)unused;
    allocate(&late, 1000, 16, false);
}

/* REMOTE of the main thread's tiny blocks from `first` on (odd ones: the
 * workload frees the even ones itself). */
static void free_tiny(unsigned first)
{
    for (unsigned j = 0; j < REMOTE; j++)
        release(&tiny[1 + 2 * (first + j)]);
}

static void *worker(void *arg)
{
    static const size_t sizes[WORKER_SIZES] = {1000, 20000, 300000};
    unsigned t = (unsigned)(uintptr_t)arg;
    wait_for(&given, t + 1);
    for (unsigned i = 0; i < WORKER_SIZES; i++)
        allocate(&owned[t][i], sizes[i], 16, false);
    free_tiny(t * REMOTE);
    if (t == 0)
        pthread_setspecific(late_key, &late);
    advance(&finished);
    wait_for(&given, WORKERS + t + 1);
    return NULL;
}

/* A fork child while the workers are alive: its fork gave their heaps back,
 * and it frees their blocks, allocates, and walks the heap. */
static void fork_with_workers(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail("fork failed");
    if (pid == 0) {
        for (unsigned t = 0; t < WORKERS; t++)
            for (unsigned i = 0; i < WORKER_SIZES; i++)
                release(&owned[t][i]);
        struct block b;
        allocate(&b, 1000, 16, false);
        release(&b);
        allocate(&b, 20000, 16, false);
        release(&b);
        free_tiny(WORKERS * REMOTE);
        collect_and_walk("the fork child's heap walk");
        _exit(PASSED);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != PASSED)
        fail("the fork child made with the workers alive failed (status %#x)", status);
}

static void workers_and_fork(void)
{
    pthread_t thread[WORKERS];
    if (pthread_key_create(&late_key, late_allocation))
        fail("pthread_key_create failed");
    for (unsigned t = 0; t < WORKERS; t++)
        if (pthread_create(&thread[t], NULL, worker, (void *)(uintptr_t)t))
            fail("pthread_create failed");
    for (unsigned t = 0; t < WORKERS; t++) {
        advance(&given);
        wait_for(&finished, t + 1);
    }
    fork_with_workers();
    for (unsigned t = 0; t < WORKERS; t++) {
        advance(&given);
        pthread_join(thread[t], NULL);
    }
}

static void workload(void)
{
    allocate(&slot[0], 16, 16, false);
    allocate(&slot[1], 1000, 16, false);
    allocate(&slot[2], 10 * 100, 16, true);
    allocate(&slot[3], 20000, 16, false);
    allocate(&slot[4], 65536, 16, false);
    allocate(&slot[5], 3000, 4096, false);
    allocate(&slot[6], 300000, 16, false);
    allocate(&slot[7], 2 * MIB, 16, false);
    allocate(&slot[8], MIB, MIB, false);
    allocate(&slot[9], 100 * 1000, 16, true);
    reallocate(&slot[1], 2000);    /* another tiny class */
    reallocate(&slot[6], 600000);  /* a large block grown by mremap */
    reallocate(&slot[0], 200000);  /* tiny to large */
    reallocate(&slot[7], MIB);     /* a large block shrunk */
    reallocate(&slot[3], 100);     /* mid to tiny */
    reallocate(&slot[4], MIB + 4096); /* mid to large */
    for (unsigned i = 0; i < BULK_TINY; i++) /* past one superslab */
        allocate(&tiny[i], 1000, 16, false);
    /* The large-block table's growth inside a realloc: a large block
     * allocated and freed is an entry and then a tombstone, from a cached
     * mapping after the first (no OS request); then blocks each reallocated
     * by mremap, one of whose reinsertions grows the table. */
    struct block b;
    for (unsigned i = 0; i < TOMBSTONES; i++) {
        allocate(&b, 70000, 16, false);
        release(&b);
    }
    for (unsigned i = 0; i < BULK_LARGE; i++)
        allocate(&large[i], 70000, 16, false);
    for (unsigned i = 0; i < 2 * BULK_LARGE; i++)
        reallocate(&large[i % BULK_LARGE], 70000 << (1 + i / BULK_LARGE));
    workers_and_fork();
    for (unsigned i = 0; i < BULK_TINY; i += 2)
        release(&tiny[i]);
    reallocate(&slot[6], MIB);
    reallocate(&slot[9], 2 * MIB);
}

/* Every size range allocates again once the OS stops refusing. */
static void recovery(void)
{
    static const size_t sizes[] = {16, 1000, 20000, 65536, 300000, 5 << 20};
    struct block b;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        allocate(&b, sizes[i], 16, false);
        if (!b.p)
            fail("malloc(%zu) still fails after the refusals ended", sizes[i]);
        release(&b);
    }
    allocate(&b, MIB, MIB, false);
    if (!b.p)
        fail("aligned_alloc(1 MiB) still fails after the refusals ended");
    release(&b);
}

static void release_all(void)
{
    for (unsigned i = 0; i < SLOTS; i++)
        release(&slot[i]);
    for (unsigned i = 0; i < BULK_TINY; i++)
        release(&tiny[i]);
    for (unsigned i = 0; i < BULK_LARGE; i++)
        release(&large[i]);
    for (unsigned t = 0; t < WORKERS; t++)
        for (unsigned i = 0; i < WORKER_SIZES; i++)
            release(&owned[t][i]);
    release(&late);
}

/* What a child tells its parent: OS requests refused, NULL results seen. */
struct figures {
    unsigned long refused, nulls;
};

/* The workload with OS requests refused from request `after` on (`count` of
 * them), then the checks; writes its figures to `out` and returns its exit
 * status (a failed check exits at once, FAILED). */
static int child(unsigned long after, unsigned long count, int out)
{
    hak_fail_os_maps(after, count);
    workload();
    release_all();
    hak_fail_os_maps(0, 0);
    struct figures f = {hak_os_refusals(), nulls};
    recovery();
    collect_and_walk("heap walk after the collect");
    struct hak_counters c;
    hak_counters_snapshot(&c);
    if (c.live_total)
        fail("%llu blocks live after every block was freed", (unsigned long long)c.live_total);
    ssize_t ignored = write(out, &f, sizeof f);
    (void)ignored;
    return f.refused ? PASSED : UNREFUSED;
}

/* Child `point` in a fork; its exit status (FAILED when it failed or died,
 * which it or this says) and its figures. */
static int run_point(unsigned long count, struct figures *f)
{
    int fd[2];
    fflush(stdout);
    if (pipe(fd))
        exit(2);
    pid_t pid = fork();
    if (pid < 0)
        exit(2);
    if (pid == 0) {
        close(fd[0]);
        _exit(child(point, count, fd[1]));
    }
    close(fd[1]);
    ssize_t got = read(fd[0], f, sizeof *f);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        printf("oom: child %u (%s): died of signal %d\n", point, mode_name, WTERMSIG(status));
        return FAILED;
    }
    return got == (ssize_t)sizeof *f ? WEXITSTATUS(status) : FAILED;
}

int main(int argc, char **argv)
{
    unsigned max_points = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
    unsigned points = 0, failures = 0;
    unsigned long refused = 0, null_results = 0;
    static const struct {
        const char *name;
        unsigned long count;
    } modes[] = {{"all", (unsigned long)-1}, {"one", 1}};
    for (size_t m = 0; m < 2; m++) {
        mode_name = modes[m].name;
        int status = PASSED;
        for (point = 0; point < max_points && status != UNREFUSED; point++, points++) {
            struct figures f = {0, 0};
            status = run_point(modes[m].count, &f);
            failures += status == FAILED;
            refused += f.refused;
            null_results += f.nulls;
        }
    }
    printf("oom: points=%u refused=%lu nulls=%lu failures=%u\n", points, refused, null_results,
           failures);
    return failures ? 1 : 0;
}
