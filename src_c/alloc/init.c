/* Process-wide initialisation and fork().
 *
 * Initialisation allocates nothing through malloc: the thread key and the
 * lock-free registry need no memory, so the LD_PRELOAD library cannot recurse
 * into itself while it starts. pthread_atfork is registered last, after the
 * allocator is usable, because it may allocate.
 *
 * fork(): the parent takes every global lock around the fork so the child
 * never inherits a lock held by a thread that does not exist there; the child
 * then abandons the heaps of those threads, so their slabs get adopted.
 */
#include <pthread.h>

#include "internal.h"

_Atomic int hak_initialised;
pthread_key_t hak_thread_key;
static pthread_mutex_t init_mutex = PTHREAD_MUTEX_INITIALIZER;

static void fork_prepare(void)
{
    hak_heaps_lock();
    hak_pool_lock();
    hak_large_lock();
}

static void fork_parent(void)
{
    hak_large_unlock();
    hak_pool_unlock();
    hak_heaps_unlock();
}

static void fork_child(void)
{
    fork_parent();
    struct hak_heap *heap = hak_heaps;
    while (heap) {
        struct hak_heap *next = heap->next;
        if (heap != hak_tl_heap)
            hak_heap_abandon(heap);
        heap = next;
    }
}

void hak_init_slow(void)
{
    pthread_mutex_lock(&init_mutex);
    if (!atomic_load_explicit(&hak_initialised, memory_order_relaxed)) {
        pthread_key_create(&hak_thread_key, hak_heap_thread_exit);
        atomic_store_explicit(&hak_initialised, 1, memory_order_release);
        pthread_atfork(fork_prepare, fork_parent, fork_child);
    }
    pthread_mutex_unlock(&init_mutex);
}
