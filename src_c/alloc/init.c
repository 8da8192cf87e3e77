/* Process-wide initialisation and fork().
 *
 * Initialisation allocates nothing through malloc: the thread key and the
 * lock-free registry need no memory, so the LD_PRELOAD library cannot recurse
 * into itself while it starts. pthread_atfork is registered last and may
 * allocate: the initialising thread's own allocations go through (a
 * thread-local flag; glibc holds the lock fork takes while it registers, so
 * no fork copies their locks), and every other thread waits in pthread_once
 * until the handlers exist. No other thread takes an allocator lock before
 * that (locks.c): a fork without handlers copies a held lock into a child
 * that has nobody to release it (a fork stress child in CI hung on the large
 * lock when the flag said "initialised" a moment before the handlers were
 * registered). pthread_once, not a mutex, because glibc reruns
 * in the child a once routine that a fork interrupted, where a mutex would
 * stay held forever.
 *
 * fork(): the parent takes every lock around the fork, every thread heap's
 * own lock included, so no thread is inside a slow path (refill, flush, slab
 * list moves, adoption, abandonment) when the address space is copied and
 * the child never inherits a lock held by a thread that does not exist
 * there. The fast paths take no lock: a push or pop of a thread cache is one
 * slot store then one top store, and a remote free one CAS (its count in the
 * same word), so a copy taken between any two instructions is consistent.
 * The child then gives back the heaps of the other threads exactly as their
 * thread exits would have (heap.c), and starts its own purge thread when it
 * needs one (purge.c). It may allocate, free and exec at once.
 */
#include <pthread.h>

#include "internal.h"

_Atomic int hak_initialised;
pthread_key_t hak_thread_key;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static HAK_TLS bool tl_initialising;
/* Set once pthread_atfork has returned, and by fork_child (which runs only if
 * they were): a child that reruns an initialisation its fork interrupted must
 * not register them twice (fork_prepare would then take its locks twice). */
static bool handlers_registered;

static void fork_prepare(void)
{
    hak_heaps_fork_prepare(); /* heaps, every heap, abandoned */
    hak_pool_lock();
    hak_large_lock();
    hak_purge_fork_prepare();
}

static void fork_parent(void)
{
    hak_purge_fork_parent();
    hak_large_unlock();
    hak_pool_unlock();
    hak_heaps_fork_parent();
}

static void fork_child(void)
{
    handlers_registered = true;
    hak_purge_fork_child();
    hak_large_unlock();
    hak_pool_unlock();
    hak_heaps_fork_child();
}

static void init_once_routine(void)
{
    tl_initialising = true;
    pthread_key_create(&hak_thread_key, hak_heap_thread_exit);
    hak_purge_init();
    if (!handlers_registered)
        handlers_registered = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
    tl_initialising = false;
    atomic_store_explicit(&hak_initialised, 1, memory_order_release);
}

void hak_init_slow(void)
{
    if (!tl_initialising) /* else pthread_atfork is allocating */
        pthread_once(&init_once, init_once_routine);
}
