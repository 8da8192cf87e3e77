/* fork() while another thread is initialising the allocator.
 *
 *   fork_at_init
 *
 * A worker makes the process's first allocation; this program's own
 * pthread_key_create (which the allocator's initialisation calls, and which
 * the executable's definition interposes) holds that thread inside the
 * initialisation until the main thread has forked. The child then allocates,
 * frees and checks its heap, and forks a grandchild that does the same (so
 * the fork handlers exist exactly once in the child). Exit status: 0 when
 * both descendants passed, 1 otherwise (printed: which and how); a child
 * stuck for 10 s is killed by its own alarm.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "hakmem_debug.h"

/* armed: main has started (a sanitizer runtime creates keys before main);
 * forked: the parent's fork() has returned (set after it, so the worker is
 * certainly still inside the initialisation when the address space is copied;
 * the child, another pid, never waits). */
static atomic_int armed, entered, forked;
static pid_t parent;

int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
    int (*real)(pthread_key_t *, void (*)(void *)) =
        (int (*)(pthread_key_t *, void (*)(void *)))dlsym(RTLD_NEXT, "pthread_key_create");
    if (!atomic_load(&armed) || getpid() != parent)
        return real(key, destructor);
    atomic_store(&entered, 1);
    while (!atomic_load(&forked))
        usleep(100);
    return real(key, destructor);
}

static void *first_allocation(void *arg)
{
    (void)arg;
    hak_free(hak_malloc(64));
    return NULL;
}

/* Allocates tiny, mid and large blocks, fills, frees, checks: 0 when all is well. */
static int use_heap(void)
{
    static const size_t sizes[] = {16, 64, 1000, 5000, 40000, 1 << 20};
    void *blocks[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        blocks[i] = hak_malloc(sizes[i]);
        if (!blocks[i])
            return 5;
        memset(blocks[i], 0xa5, sizes[i]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        hak_free(blocks[i]);
    struct hak_heap_report r;
    if (!hak_heap_check(&r)) {
        fprintf(stderr, "fork_at_init: %s\n", r.message);
        return 3;
    }
    return 0;
}

static const char *outcome(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exit %d", WEXITSTATUS(status));
    else if (WTERMSIG(status) == SIGALRM)
        snprintf(buf, n, "hung");
    else
        snprintf(buf, n, "signal %d", WTERMSIG(status));
    return buf;
}

static int wait_for(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    return status;
}

int main(void)
{
    parent = getpid();
    atomic_store(&armed, 1);
    pthread_t worker;
    pthread_create(&worker, NULL, first_allocation, NULL);
    while (!atomic_load(&entered))
        usleep(100);
    pid_t pid = fork();
    atomic_store(&forked, 1);
    if (pid == 0) {
        alarm(10);
        int rc = use_heap();
        if (rc)
            _exit(rc);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            alarm(10);
            _exit(use_heap());
        }
        int status = wait_for(grandchild);
        _exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 100 + (status & 0x7f));
    }
    int status = wait_for(pid);
    pthread_join(worker, NULL);
    char buf[32];
    printf("fork_at_init: child %s\n", outcome(status, buf, sizeof buf));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
