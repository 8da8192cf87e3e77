/* Handoff primitives: a sequence word per waiter; waiters spin briefly, then
 * yield, then sleep on a futex; wakers only make the syscall if someone sleeps. */
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define HX_SPINS 200
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
