/* Synchronisation points: the one hook every atomic operation and lock of the
 * allocator that other threads can observe goes through (remote push and
 * drain, abandonment and adoption, the slab pool, the large cache, thread
 * exit, the locks of locks.c and of each heap).
 *
 * In a schedule-controlled build (HAK_SCHED=1, the `asan-sched` variant) each
 * point is a yield point of the executor's deterministic scheduler
 * (src_c/executor/sched.c): only one program thread runs at a time, and the
 * scheduler decides at every point which one runs next. So the interleaving
 * of a concurrent program is a function of the program and its schedule (seed
 * and depth), and a race replays the same way every time. In every other
 * build the hook is an empty inline function and the locks are plain
 * pthread_mutex_lock: the fast paths compile to the same code as without it.
 *
 * The hook sits just BEFORE the operation it names, where another thread's
 * step can come in between: before a CAS, after the load it is based on. A
 * seeded bug that replaces an atomic with plain accesses keeps the hooks of
 * the code it replaces (remote.c), so the scheduler can interleave it the way
 * the real code can be interleaved. What no hook marks, the scheduler cannot
 * interleave: plain accesses between two points run as one step (so do
 * relaxed reads used as hints, such as the abandoned count a refill looks at
 * before it takes the abandoned lock, a point itself; or a slab's remote
 * count read before a drain), and
 * weak-memory reorderings never happen under it (every hand-off is a full
 * barrier), so it explores interleavings of a sequentially consistent machine.
 */
#ifndef HAKMEM_SYNCPOINT_H
#define HAKMEM_SYNCPOINT_H

#include <pthread.h>
#include <stdbool.h>

#ifndef HAK_SCHED
#define HAK_SCHED 0
#endif

/* What a point is about to do (recorded in the scheduler's trace). */
enum hak_sync_kind {
    HAK_SYNC_WAIT = 0,     /* executor: a thread blocked (baton, barrier, lock) */
    HAK_SYNC_REMOTE_LOAD,  /* remote.c: read a slab's remote word */
    HAK_SYNC_REMOTE_PUSH,  /* remote.c: publish a block on it */
    HAK_SYNC_REMOTE_TAKE,  /* remote.c: the owner takes the list */
    HAK_SYNC_OWNER,        /* heap.c, free.c: read or change a slab's owner */
    HAK_SYNC_LOCK,         /* a lock is about to be taken */
    HAK_SYNC_UNLOCK,       /* a lock was released (wakes its waiters; not a yield) */
    HAK_SYNC_EXIT,         /* heap.c: a thread's heap is given back */
    HAK_SYNC_KINDS
};

#if HAK_SCHED
/* Defined by the executor (sched.c) in libhakmem.so; weak, so the drop-in
 * library of a scheduled build (no executor) links and never yields. A thread
 * the scheduler does not run returns at once. */
void hak_sched_point(enum hak_sync_kind kind, const void *addr)
    __attribute__((weak, visibility("hidden")));
/* The calling thread cannot go on until another thread releases addr: the
 * scheduler runs others and returns once addr was released (or when no
 * thread can run: the caller looks again). False: the calling thread is not
 * scheduled, and must block by itself. */
bool hak_sched_block(const void *addr) __attribute__((weak, visibility("hidden")));
#endif

static inline void hak_sync(enum hak_sync_kind kind, const void *addr)
{
#if HAK_SCHED
    if (hak_sched_point)
        hak_sched_point(kind, addr);
#else
    (void)kind;
    (void)addr;
#endif
}

/* Every lock of the allocator. Under the scheduler a thread must never sleep
 * in pthread_mutex_lock: the holder may be a thread the scheduler stopped at
 * a point inside its critical section, and only the blocked thread could let
 * it run. So it tries, and when the lock is held it tells the scheduler it is
 * blocked on it; the unlock's point makes it runnable again. */
static inline void hak_mutex_lock(pthread_mutex_t *m)
{
#if HAK_SCHED
    hak_sync(HAK_SYNC_LOCK, m);
    while (pthread_mutex_trylock(m) != 0)
        if (!hak_sched_block || !hak_sched_block(m)) {
            pthread_mutex_lock(m);
            return;
        }
#else
    pthread_mutex_lock(m);
#endif
}

static inline bool hak_mutex_trylock(pthread_mutex_t *m)
{
    hak_sync(HAK_SYNC_LOCK, m);
    return pthread_mutex_trylock(m) == 0;
}

static inline void hak_mutex_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
    hak_sync(HAK_SYNC_UNLOCK, m);
}

#endif
