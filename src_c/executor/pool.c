/* The executor's OS threads, kept across runs: program thread t of every run
 * runs on pool thread t. Creating and joining threads per run cost more than a
 * short program's ops (pthread_create, a fresh stack faulted in, a join), so a
 * thread that ends a job waits for the next one instead of exiting.
 *
 * What a run sees stays what a fresh thread would give it: a job that ends a run
 * on the white-box target retires the thread's heap (hak_retire_thread), the
 * same transition as a thread exit. A job that returns HX_JOB_EXIT (a thread_exit
 * op) really ends its OS thread; HX_JOB_EXIT_AGAIN also runs the job again on a
 * fresh thread, which joins its predecessor before it starts, so the old
 * thread's TLS destructors have finished before the successor's first op.
 *
 * One run at a time uses the pool: hakx_run holds hx_pool_lock.
 *
 * The library is pinned (RTLD_NODELETE) once a pool thread exists: a process
 * that dlclose()s it (cffi, at interpreter exit) would otherwise unmap the code
 * an idle pool thread is still spinning in. */
#include <dlfcn.h>
#include <pthread.h>

#include "internal.h"

/* Fields are written by the main thread between jobs, or by pool threads during a job
 * (the creator of a successor is its predecessor, not the main thread): each side reads
 * the other's only across a turn (job, done) or a pthread_create/join. */
struct hx_pt {
    bool alive;                /* main: a pool thread exists for this slot */
    bool ended;                /* the job's last thread returned from its function */
    pthread_t ended_th;        /* that thread, for main to join */
    bool failed;               /* the job could not go on (no thread for a successor) */
    int (*fn)(void *);
    void *arg;
    struct hx_turn job;        /* main -> thread: a job is ready */
    struct hx_turn done;       /* thread -> main: the job returned */
    pthread_t predecessor;     /* joined first (HX_JOB_EXIT_AGAIN) */
    bool has_predecessor;
};

/* A program thread's stack: the executor and the allocator never recurse. Small,
 * because a thread_exit op ends a real thread and a sanitizer clears the shadow of
 * the whole stack then (ASan remaps shadow above 64 KiB, a TLB shootdown each: with
 * the default 8 MiB, a fifth of a campaign's time). */
#define HX_STACK (256u << 10)

static struct hx_pt pool[HAKX_MAX_THREADS];
pthread_mutex_t hx_pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void *pool_thread(void *arg);

static void pin_library(void)
{
    Dl_info info;
    if (dladdr((void *)pin_library, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

static bool start_thread(struct hx_pt *pt)
{
    static pthread_once_t pinned = PTHREAD_ONCE_INIT;
    pthread_once(&pinned, pin_library);
    hx_turn_init(&pt->job);
    pt->ended = false;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, HX_STACK);
    int err = pthread_create(&th, &attr, pool_thread, pt);
    pthread_attr_destroy(&attr);
    return err == 0;
}

static void *pool_thread(void *arg)
{
    struct hx_pt *pt = arg;
    if (pt->has_predecessor) {
        pthread_join(pt->predecessor, NULL);
        pt->has_predecessor = false;
    }
    for (;;) {
        int rc = pt->fn(pt->arg);
        if (rc == HX_JOB_EXIT_AGAIN) {
            pt->predecessor = pthread_self();
            pt->has_predecessor = true;
            if (start_thread(pt))
                return NULL; /* the successor goes on with the job */
            pt->has_predecessor = false;
            pt->failed = true;
            rc = HX_JOB_EXIT;
        }
        if (rc == HX_JOB_EXIT) {
            pt->ended = true;
            pt->ended_th = pthread_self();
        }
        hx_turn_go(&pt->done);
        if (rc == HX_JOB_EXIT)
            return NULL;
        hx_turn_wait_soon(&pt->job);
    }
}

bool hx_pool_run(int t, int (*fn)(void *), void *arg)
{
    struct hx_pt *pt = &pool[t];
    pt->fn = fn;
    pt->arg = arg;
    pt->failed = false;
    hx_turn_init(&pt->done);
    if (pt->alive) {
        hx_turn_go(&pt->job);
        return true;
    }
    pt->has_predecessor = false;
    pt->alive = start_thread(pt);
    return pt->alive;
}

bool hx_pool_wait(int t)
{
    struct hx_pt *pt = &pool[t];
    hx_turn_wait_soon(&pt->done);
    if (pt->ended) {
        pthread_join(pt->ended_th, NULL);
        pt->alive = false;
    }
    return !pt->failed;
}
