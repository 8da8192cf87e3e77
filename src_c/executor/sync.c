/* Handoff primitives: a sequence word per waiter; waiters spin briefly, then
 * yield, then sleep on a futex; wakers only make the syscall if someone sleeps. */
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* A concurrent thread waiting for a baton or a barrier: 32 pauses, then yields. With 4
 * program threads on 2 cores, 200 pauses spent a sixth of a run spinning while the thread
 * it waited for could not get a core (release, 64-op 4-thread concurrent programs: 2,900
 * -> 4,300 execs/s). */
#define HX_SPINS 32
#define HX_YIELDS 2000

void hx_backoff(unsigned n)
{
    if (n < HX_SPINS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    else
        sched_yield();
}

void hx_wake(struct hx_wake *w)
{
    atomic_fetch_add(&w->seq, 1);
    if (atomic_load(&w->sleeping))
        syscall(SYS_futex, &w->seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void hx_wait(struct hx_wake *w, uint32_t *seen)
{
    uint32_t old = *seen;
    uint32_t now;
    for (unsigned n = 0; (now = atomic_load(&w->seq)) == old; n++) {
        if (n < HX_SPINS + HX_YIELDS) {
            hx_backoff(n);
            continue;
        }
        atomic_store(&w->sleeping, 1);
        if (atomic_load(&w->seq) == old)
            syscall(SYS_futex, &w->seq, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
        atomic_store(&w->sleeping, 0);
    }
    *seen = now;
}

/* ---- turn words */
/* Measured on 2 shared cores with 4 lockstep workers: pause-spinning only delays
 * the thread that must run next, yielding hands it the core; so a waiter spins a
 * few iterations at most, then yields (hinted: long; not hinted: briefly), then
 * sleeps on its futex. */
#define HX_TURN_SPIN 5     /* pause iterations of a hinted waiter, */
#define HX_TURN_YIELD 1000 /* then sched_yield()s, before it sleeps */
#define HX_TURN_BASE 0     /* pause iterations of a waiter not hinted, */
#define HX_TURN_BYIELD 10  /* then sched_yield()s, before it sleeps */

static void futex_wake1(_Atomic uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void hx_turn_init(struct hx_turn *t)
{
    t->seen = atomic_load(&t->word) >> 1;
}

void hx_turn_go(struct hx_turn *t)
{
    atomic_fetch_add(&t->word, 2);
    if (atomic_load(&t->sleeping))
        futex_wake1(&t->word);
}

void hx_turn_hint(struct hx_turn *t)
{
    uint32_t old = atomic_fetch_or(&t->word, 1);
    if (!(old & 1) && atomic_load(&t->sleeping))
        futex_wake1(&t->word);
}

void hx_turn_wait(struct hx_turn *t)
{
    unsigned n = 0;
    for (;;) {
        uint32_t v = atomic_load(&t->word);
        if ((v >> 1) != t->seen) {
            t->seen = v >> 1;
            if (v & 1)
                atomic_fetch_and(&t->word, ~1u);
            return;
        }
        if (n < ((v & 1) ? HX_TURN_SPIN : HX_TURN_BASE)) {
            n++;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        if (!(v & 1) && n < HX_TURN_BASE + HX_TURN_BYIELD) {
            n++;
            sched_yield();
            continue;
        }
        if ((v & 1) && n < HX_TURN_SPIN + HX_TURN_YIELD) {
            n++;
            sched_yield();
            continue;
        }
        if (v & 1) { /* hinted, but the turn did not come: drop the hint */
            atomic_compare_exchange_strong(&t->word, &v, v & ~1u);
            continue;
        }
        atomic_store(&t->sleeping, 1);
        if (atomic_load(&t->word) == v)
            syscall(SYS_futex, &t->word, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
        atomic_store(&t->sleeping, 0);
        n = 0;
    }
}

void hx_turn_wait_soon(struct hx_turn *t)
{
    hx_turn_hint(t);
    hx_turn_wait(t);
}
