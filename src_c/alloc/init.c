/* Process-wide initialisation and fork().
 *
 * Initialisation allocates nothing through malloc: the thread key and the
 * lock-free registry need no memory, so the LD_PRELOAD library cannot recurse
 * into itself while it starts. pthread_atfork is registered last, after the
 * allocator is usable, because it may allocate.
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
static pthread_mutex_t init_mutex = PTHREAD_MUTEX_INITIALIZER;

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
    hak_purge_fork_child();
    hak_large_unlock();
    hak_pool_unlock();
    hak_heaps_fork_child();
}

void hak_init_slow(void)
{
    hak_mutex_lock(&init_mutex);
    if (!atomic_load_explicit(&hak_initialised, memory_order_relaxed)) {
        pthread_key_create(&hak_thread_key, hak_heap_thread_exit);
        hak_purge_init();
        atomic_store_explicit(&hak_initialised, 1, memory_order_release);
        pthread_atfork(fork_prepare, fork_parent, fork_child);
    }
    hak_mutex_unlock(&init_mutex);
}
