/* Does a sanitizer runtime keep a fork child able to allocate?
 *
 * Three threads allocate and free blocks of one size without pause, so at any instant one
 * is likely inside the runtime's allocator, holding the lock of that size class (a refill
 * of its cache, a drain, a quarantine recycle). The main thread forks meanwhile. Each
 * child starts a thread that allocates the same size from an empty cache: it must take
 * that lock. A runtime with a fork handler takes its allocator's locks around fork(), so
 * the child gets them unlocked; without one the child can inherit a held lock and hang.
 *
 * Run with the runtime preloaded, and ASAN_OPTIONS quarantine_size_mb=0 (every free goes
 * back to the allocator at once) and allocator_release_to_os_interval_ms=0 (each return
 * may give pages back to the OS, with the class's lock held): the lock is then held much
 * longer, and a fork more often lands while it is, even on a loaded machine where the three
 * are mostly off CPU. It forks until a child is still running after the wait (that child is
 * killed), the forks are done or the seconds have passed, and prints "hung at fork K" or
 * "no child hung in N forks". Usage: fork_amid_malloc [forks] [wait_ms] [seconds]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK = 64, BATCH = 512, HAMMERS = 3 };

static atomic_bool stop;

static void *hammer(void *arg) {
    (void)arg;
    void *blocks[BATCH];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < BATCH; i++)
            blocks[i] = malloc(BLOCK);
        for (int i = 0; i < BATCH; i++)
            free(blocks[i]);
    }
    return NULL;
}

static void *allocate_in_child(void *arg) {
    (void)arg;
    for (int i = 0; i < BATCH; i++)
        free(malloc(BLOCK));
    return NULL;
}

static void child(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, allocate_in_child, NULL) == 0)
        pthread_join(t, NULL);
    _exit(0);
}

/* 1 if the child had to be killed: still running after wait_ms. */
static int reap(pid_t pid, long wait_ms) {
    struct timespec tick = {0, 1000000};
    for (long waited = 0; waited < wait_ms; waited++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0;
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 1;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 200;
    long wait_ms = argc > 2 ? atol(argv[2]) : 2000;
    time_t until = time(NULL) + (argc > 3 ? atol(argv[3]) : 3600);
    pthread_t t[HAMMERS];
    for (int i = 0; i < HAMMERS; i++)
        if (pthread_create(&t[i], NULL, hammer, NULL) != 0)
            return 2;
    int hung_at = 0;
    int done = 0;
    for (int i = 1; i <= forks && !hung_at && time(NULL) < until; i++, done++) {
        pid_t pid = fork();
        if (pid == 0)
            child();
        if (pid < 0)
            return 2;
        if (reap(pid, wait_ms))
            hung_at = i;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < HAMMERS; i++)
        pthread_join(t[i], NULL);
    if (hung_at)
        printf("hung at fork %d\n", hung_at);
    else
        printf("no child hung in %d forks\n", done);
    return 0;
}
