/* Threads whose own thread-local destructor allocates in every destructor
 * round, the last one included (glibc runs PTHREAD_DESTRUCTOR_ITERATIONS = 4
 * rounds; a destructor that sets its key again is called in the next round).
 *
 *   dtor_alloc THREADS
 *
 * The program's key is created after hakmem's, so in each round its
 * destructor runs after hakmem's: what it allocates in the last round comes
 * after hakmem's last chance to give a heap back.
 *
 * Each thread allocates, then exits; its destructor allocates and frees in
 * every round, and in the last round keeps one block live, which the main
 * thread frees after joining it. Then the main thread collects and prints
 *   dtor_alloc: threads=N heaps=H live=L heap_check=ok|<message>
 * hakmem before issue 13 left one heap per thread behind (a heap created in
 * the last round, which no destructor gives back): heaps = N + 1. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "hakmem_debug.h"

enum { MAX_THREADS = 256, ROUNDS = 4 };

static pthread_key_t key;
static void *kept[MAX_THREADS];

struct state {
    unsigned id;
    unsigned round;
};

static void destructor(void *arg)
{
    struct state *st = arg;
    st->round++;
    void *p = hak_malloc(100 + st->round * 300);
    memset(p, 0x5a, 100);
    if (st->round < ROUNDS) {
        hak_free(p);
        pthread_setspecific(key, st); /* call me again next round */
    } else {
        kept[st->id] = p; /* allocated in the last round, freed by main */
    }
}

static void *thread_main(void *arg)
{
    static struct state states[MAX_THREADS];
    unsigned id = (unsigned)(uintptr_t)arg;
    states[id] = (struct state){id, 0};
    void *p = hak_malloc(64);
    hak_free(p);
    pthread_setspecific(key, &states[id]);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 50;
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    hak_free(hak_malloc(1)); /* hakmem's key first: ours runs after it in each round */
    pthread_key_create(&key, destructor);
    for (unsigned i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, thread_main, (void *)(uintptr_t)i);
        pthread_join(t, NULL);
    }
    for (unsigned i = 0; i < n; i++)
        hak_free(kept[i]);
    hak_flush_thread();
    struct hak_counters c;
    hak_counters_snapshot(&c);
    struct hak_heap_report r;
    int ok = hak_heap_check(&r);
    printf("dtor_alloc: threads=%u heaps=%llu live=%llu heap_check=%s\n", n,
           (unsigned long long)c.heaps, (unsigned long long)c.live_total, ok ? "ok" : r.message);
    return 0;
}
