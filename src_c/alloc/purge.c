/* Memory return: what is freed goes back to the OS after a bounded delay.
 *
 * Three kinds of memory are kept after use, each for a reason (reuse without
 * a syscall or a page fault), and each is given back once it has stayed
 * unused for the decay delay (HAKMEM_DECAY_MS, default 500 ms):
 *   - free units of superslabs (slabs returned to the pool): madvise(DONTNEED),
 *     and whole empty (cached) superslabs: unmapped (superslab.c);
 *   - cached large mappings: unmapped (large.c);
 *   - slabs pinned by nobody's action: the empty and remotely freed slabs of
 *     an idle heap (one with no slow path since the last pass), and abandoned
 *     slabs whose blocks all came back, are drained and returned to the pool
 *     (heap.c), so the first two rules then apply to them.
 *
 * Who purges: a background thread, started on the first event that leaves
 * something to give back (never on a fast path, and never under a lock: the
 * events only raise a flag, and the slow paths that find the flag raised kick
 * the thread once their locks are released). It sleeps in a timed wait while
 * anything is pending and parks (an untimed wait) when nothing is, so a
 * steady state that gives nothing back makes no syscall. hak_collect() (and
 * malloc_trim in the drop-in) purges everything at once from the caller.
 * HAKMEM_DECAY_MS=-1 disables the thread (hak_collect still works); it is
 * on by default in the drop-in only (hak_purge_init). A fork
 * child starts no thread: its own slow paths run the same passes inline.
 *
 * The free fast path never comes here.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

/* Not a syncpoint.h lock: no synchronisation point lies inside its critical
 * sections, so a scheduled thread never stops while it holds it, and the
 * purge thread (which no scheduler runs) waits on its condition variable. */
static pthread_mutex_t purge_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purge_cond = PTHREAD_COND_INITIALIZER;
/* Something may be given back later (set by the events, cleared by a pass
 * that leaves nothing pending). */
static _Atomic bool pending;
/* An event raised `pending` while the thread may be parked or not started. */
_Atomic bool hak_purge_kick_flag;
static bool thread_started, thread_parked; /* purge_mutex */
static _Atomic bool starting;
static long decay_ms = -2; /* -2: not read yet; -1: no background thread */
static bool forked_child;  /* purge inline, start no thread */
static _Atomic uint64_t last_inline_ms;

uint64_t hak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t hak_decay_ms(void)
{
    long ms = decay_ms;
    return ms < 0 ? 500 : (uint64_t)ms;
}

/* Defined (true) by the drop-in library only (preload.c). */
extern const bool hak_purge_by_default __attribute__((weak));

/* Reads HAKMEM_DECAY_MS once (init.c): getenv allocates nothing. Without it,
 * the drop-in purges in the background (500 ms) and the hak_ API library
 * does not: the harness replays op programs in lockstep and needs the same
 * addresses on every replay, which a purge at a moment set by the clock
 * would change (hak_collect purges in both). */
void hak_purge_init(void)
{
    const char *env = getenv("HAKMEM_DECAY_MS");
    long ms = env && *env ? strtol(env, NULL, 10) : &hak_purge_by_default ? 500 : -1;
    decay_ms = ms < 0 ? -1 : ms;
}

void hak_purge_note(void)
{
    if (!atomic_load_explicit(&pending, memory_order_relaxed)) {
        atomic_store_explicit(&pending, true, memory_order_relaxed);
        atomic_store_explicit(&hak_purge_kick_flag, true, memory_order_relaxed);
    }
}

/* Gives back what has stayed unused for `delay` ms (0: everything). Returns
 * whether something is left that a later pass may give back. */
static bool purge_pass(uint64_t delay, bool all)
{
    uint64_t now = hak_now_ms();
    hak_heaps_lock();
    bool more = hak_heaps_purge(all);
    hak_heaps_unlock();
    more |= hak_pool_purge(now, delay);
    more |= hak_large_purge(now, delay);
    return more;
}

static void *purge_thread(void *arg)
{
    (void)arg;
    uint64_t delay = hak_decay_ms();
    pthread_mutex_lock(&purge_mutex);
    for (;;) {
        while (!atomic_load_explicit(&pending, memory_order_relaxed)) {
            thread_parked = true;
            pthread_cond_wait(&purge_cond, &purge_mutex);
            thread_parked = false;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t step = delay / 2 ? delay / 2 : 1;
        ts.tv_sec += (time_t)(step / 1000);
        ts.tv_nsec += (long)(step % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&purge_cond, &purge_mutex, &ts);
        atomic_store_explicit(&pending, false, memory_order_relaxed);
        pthread_mutex_unlock(&purge_mutex);
        if (purge_pass(delay, false))
            atomic_store_explicit(&pending, true, memory_order_relaxed);
        pthread_mutex_lock(&purge_mutex);
    }
    return NULL;
}

/* A slow path with no lock held found the kick flag raised: start the
 * background thread, or wake it if it is parked. */
void hak_purge_kick_slow(void)
{
    atomic_store_explicit(&hak_purge_kick_flag, false, memory_order_relaxed);
    if (decay_ms == -1)
        return;
    if (forked_child) {
        /* No thread in a fork child (a child may not start threads under
         * some runtimes, and most children exec at once): the slow paths
         * purge inline, at most once per half delay, while work is pending. */
        uint64_t now = hak_now_ms(), delay = hak_decay_ms();
        uint64_t last = atomic_load_explicit(&last_inline_ms, memory_order_relaxed);
        if (now - last >= delay / 2 &&
            atomic_compare_exchange_strong_explicit(&last_inline_ms, &last, now,
                                                    memory_order_relaxed, memory_order_relaxed)) {
            atomic_store_explicit(&pending, false, memory_order_relaxed);
            if (purge_pass(delay, false))
                atomic_store_explicit(&pending, true, memory_order_relaxed);
        }
        if (atomic_load_explicit(&pending, memory_order_relaxed))
            atomic_store_explicit(&hak_purge_kick_flag, true, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&purge_mutex);
    bool started = thread_started;
    if (started && thread_parked)
        pthread_cond_signal(&purge_cond);
    pthread_mutex_unlock(&purge_mutex);
    if (started || atomic_exchange_explicit(&starting, true, memory_order_acq_rel))
        return;
    /* A library loaded with dlopen may be unloaded while the thread sleeps in
     * its code (cffi unloads at interpreter exit): pin it first. dlopen may
     * allocate; no lock of ours is held. */
    Dl_info self;
    if (dladdr((void *)purge_thread, &self) && self.dli_fname)
        dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    /* The thread takes no signal meant for the program. pthread_create may
     * allocate (through this allocator): no lock of ours is held here. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t tid;
    bool ok = pthread_create(&tid, &attr, purge_thread, NULL) == 0;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&purge_mutex);
    thread_started = ok;
    pthread_mutex_unlock(&purge_mutex);
    if (!ok)
        atomic_store_explicit(&starting, false, memory_order_relaxed);
}

/* fork: the child has no purge thread, and starts none: its slow paths purge
 * inline instead (hak_purge_kick_slow). */
void hak_purge_fork_prepare(void) { pthread_mutex_lock(&purge_mutex); }
void hak_purge_fork_parent(void) { pthread_mutex_unlock(&purge_mutex); }
void hak_purge_fork_child(void)
{
    pthread_mutex_init(&purge_mutex, NULL);
    pthread_cond_init(&purge_cond, NULL);
    thread_started = thread_parked = false;
    forked_child = true;
    atomic_store_explicit(&starting, false, memory_order_relaxed);
    if (atomic_load_explicit(&pending, memory_order_relaxed))
        atomic_store_explicit(&hak_purge_kick_flag, true, memory_order_relaxed);
}

/* The seeded bug early_purge (inject.h): a slab of an idle heap whose used
 * blocks are all pending on its remote list looks empty to the purge, which
 * returns its pages before draining it; the pending blocks' links read back
 * as zero and the drain loses all but the first. Heap lock held. */
void hak_purge_inject_early(struct hak_heap *heap, int size_class)
{
    for (int list = 0; list < 2; list++) {
        struct hak_slab *slab = list ? heap->full[size_class].head
                                     : heap->partial[size_class].head;
        for (; slab; slab = slab->next) {
            uint32_t pending_blocks = hak_remote_pending(slab);
            if (!pending_blocks || slab->used != pending_blocks)
                continue;
            uintptr_t page = ((uintptr_t)slab->start + 4095) & ~(uintptr_t)4095;
            uintptr_t end = (uintptr_t)slab->ss +
                            (((uintptr_t)(slab - hak_ss_slabs(slab->ss)) + slab->units)
                             << HAK_UNIT_SHIFT);
            madvise((void *)page, end - page, MADV_DONTNEED);
        }
    }
}

HAK_API void hak_collect(void)
{
    struct hak_heap *heap = hak_tl_heap;
    if (heap != &hak_heap_empty)
        hak_heap_flush_all(heap);
    purge_pass(0, true);
}
