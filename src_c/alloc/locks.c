/* The global locks. Order: heaps, then one heap's own lock (struct hak_heap;
 * fork_prepare alone takes all of them, in heap-list order), then abandoned,
 * pool, large. None is taken on a fast path: the heaps lock guards the list
 * of thread heaps and their ids, the abandoned lock the abandoned slab lists,
 * the pool lock slab hand-out and return, the large lock (large.c) the table
 * of large blocks. A thread holding its heap's lock never takes the heaps
 * lock, so fork_prepare (heaps, then every heap) cannot deadlock with it.
 * fork() takes them all (init.c). Each goes through syncpoint.h, so that under the
 * scheduler taking and releasing it are yield points. None is taken before the
 * fork handlers are registered (hak_global_lock: one load): any entry point
 * may be a process's first call (hak_heap_check, a free of a foreign pointer),
 * and a fork in between would copy the held lock into a child with no handler
 * to release it. */
#include <pthread.h>

#include "internal.h"

static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t heaps_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t abandoned_mutex = PTHREAD_MUTEX_INITIALIZER;

void hak_pool_lock(void) { hak_global_lock(&pool_mutex); }
void hak_pool_unlock(void) { hak_mutex_unlock(&pool_mutex); }

void hak_heaps_lock(void) { hak_global_lock(&heaps_mutex); }
void hak_heaps_unlock(void) { hak_mutex_unlock(&heaps_mutex); }

void hak_abandoned_lock(void) { hak_global_lock(&abandoned_mutex); }
void hak_abandoned_unlock(void) { hak_mutex_unlock(&abandoned_mutex); }
