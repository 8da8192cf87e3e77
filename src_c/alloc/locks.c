/* The global locks. Order: heaps, then pool, then large. None is taken on a
 * fast path: the pool lock guards slab hand-out and return, the heap lock the
 * list of thread heaps and the abandoned slabs, the large lock (large.c) the
 * table of large blocks. fork() takes them all (init.c). */
#include <pthread.h>

#include "internal.h"

static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t heaps_mutex = PTHREAD_MUTEX_INITIALIZER;

void hak_pool_lock(void) { pthread_mutex_lock(&pool_mutex); }
void hak_pool_unlock(void) { pthread_mutex_unlock(&pool_mutex); }
void hak_heaps_lock(void) { pthread_mutex_lock(&heaps_mutex); }
void hak_heaps_unlock(void) { pthread_mutex_unlock(&heaps_mutex); }
