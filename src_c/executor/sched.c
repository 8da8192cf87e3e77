/* The deterministic scheduler of scheduled runs: PCT (Burckhardt et al., "A
 * randomized scheduler with probabilistic guarantees of finding bugs", ASPLOS
 * 2010) over the allocator's synchronisation points (src_c/alloc/syncpoint.h) and
 * the executor's own waits (a slot's baton, a barrier). An op boundary is no
 * point: the ops of different threads only meet through the allocator (its
 * points) or a slot (its baton), so a point there would only dilute the
 * change points.
 *
 * Only one program thread runs at a time: the one holding the turn. At each
 * point it asks the scheduler who runs next: the runnable thread of highest
 * priority. Priorities are a random permutation of d .. d+n-1 (n threads,
 * d the depth); at d-1 change points the running thread's priority drops to
 * d-1, d-2, ... (in the order they come): a bug that needs d ordering
 * constraints among k steps is hit with probability at least 1/(n k^(d-1))
 * per run. A change point here is a thread and one of its own points (drawn
 * from 1 .. h, the schedule's horizon: an estimate of the points of one
 * thread, so k = n h), rather than one of the run's points as in the paper:
 * the same distribution over the steps of a run, but the minimizer can delete
 * the ops of the other threads, or of this one after the point, without
 * moving it. The seed, depth and horizon are part of the program (hakx.h), so
 * the interleaving of
 * a program is a function of the program: a reproducer replays the same way
 * every time, and the trace (a hash of the sequence of points: thread and
 * kind, no addresses) proves it.
 *
 * A thread that cannot go on (a lock another thread holds, a baton not yet
 * its own, a barrier not everyone reached) is blocked on an address and not
 * runnable until that address is signalled (an unlock, a baton handed on, a
 * barrier's generation). If no thread is runnable, every blocked thread is
 * made runnable again to look once more (a lock can be held by a thread no
 * scheduler runs): a true deadlock spins until the harness's timeout.
 *
 * The turn is handed over through a futex word per thread: a hand-off is a
 * full barrier, which is why no weak-memory reordering ever shows under the
 * scheduler, and a happens-before edge, which is why TSan builds are never
 * scheduled (it would hide exactly the races TSan reports; see README). */
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hakmem.h"
#include "internal.h"

HAKX_API int hakx_sched_supported(void)
{
    return HAK_SCHED;
}

#if HAK_SCHED

struct hx_sched {
    unsigned n;
    unsigned nchange, fired;
    int prio[HAKX_MAX_THREADS];
    struct { int thread; uint64_t point; } change[HAKX_SCHED_MAX_DEPTH];
    uint64_t points[HAKX_MAX_THREADS]; /* each thread's points so far */
    uint64_t steps;
    uint64_t trace;
    const void *blocked[HAKX_MAX_THREADS]; /* NULL: runnable */
    bool done[HAKX_MAX_THREADS];
    bool forking;                          /* a fork op is under way */
    pid_t pid;
    _Atomic uint32_t turn[HAKX_MAX_THREADS]; /* 1: this thread runs */
};

/* The scheduled run in progress (one per process: the points carry no run). */
static struct hx_sched *current;
static _Atomic bool busy;
/* The program thread this OS thread runs for; -1: not scheduled. */
static _Thread_local int self = -1;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void note(struct hx_sched *s, int t, int kind)
{
    s->trace = (s->trace ^ (uint64_t)(t << 8 | kind)) * 0x100000001b3u;
}

static void futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    syscall(SYS_futex, w, op, val, NULL, NULL, 0);
}

static void wait_turn(struct hx_sched *s, int t)
{
    for (unsigned n = 0; !atomic_load(&s->turn[t]); n++)
        if (n < 100)
            hx_backoff(n);
        else
            futex(&s->turn[t], FUTEX_WAIT_PRIVATE, 0);
}

/* The runnable thread of highest priority; -1: none. */
static int pick(const struct hx_sched *s)
{
    int best = -1;
    for (unsigned u = 0; u < s->n; u++)
        if (!s->done[u] && !s->blocked[u] && (best < 0 || s->prio[u] > s->prio[best]))
            best = (int)u;
    return best;
}

/* from holds the turn (or acts for a thread that ended, from < 0: no wait). */
static void hand_over(struct hx_sched *s, int from, int to)
{
    if (to == from)
        return;
    if (from >= 0)
        atomic_store(&s->turn[from], 0);
    if (to >= 0) {
        atomic_store(&s->turn[to], 1);
        futex(&s->turn[to], FUTEX_WAKE_PRIVATE, 1);
    }
    if (from >= 0)
        wait_turn(s, from);
}

/* Nobody can run: let the blocked look again (see the top). */
static int unblock_all(struct hx_sched *s)
{
    for (unsigned u = 0; u < s->n; u++)
        s->blocked[u] = NULL;
    sched_yield();
    return pick(s);
}

static struct hx_sched *mine(void)
{
    struct hx_sched *s = current;
    if (self < 0 || !s)
        return NULL;
    /* In a fork child only the forking thread lives: nothing to schedule. */
    if (s->forking && getpid() != s->pid) {
        self = -1;
        return NULL;
    }
    return s;
}

void hak_sched_point(enum hak_sync_kind kind, const void *addr)
{
    struct hx_sched *s = mine();
    if (!s)
        return;
    int t = self;
    if (kind == HAK_SYNC_UNLOCK) {
        /* Not a step of its own: the lock's waiters become runnable and, if
         * their priority is higher, run from the releasing thread's next point
         * on. A yield here would add a step for little: the releasing
         * thread's code up to its next point reaches shared state through
         * points only (or through plain accesses, which no point marks). */
        hx_sched_signal(addr);
        return;
    }
    s->steps++;
    s->points[t]++;
    note(s, t, kind);
    for (unsigned j = 0; j < s->nchange; j++)
        if (s->change[j].thread == t && s->change[j].point == s->points[t])
            s->prio[t] = (int)(s->nchange - s->fired++);
    hand_over(s, t, pick(s));
}

bool hak_sched_block(const void *addr)
{
    struct hx_sched *s = mine();
    if (!s)
        return false;
    int t = self;
    note(s, t, HAK_SYNC_WAIT);
    s->blocked[t] = addr;
    int u = pick(s);
    if (u < 0)
        u = unblock_all(s);
    hand_over(s, t, u);
    return true;
}

bool hx_sched_begin(struct hx_run *r)
{
    const struct hakx_schedule *sc = &r->schedule;
    if (!sc->depth)
        return false;
    bool no = false;
    if (!atomic_compare_exchange_strong(&busy, &no, true)) {
        hx_error(r, "another scheduled run is in progress in this process");
        return false;
    }
    static struct hx_sched s;
    memset(&s, 0, sizeof s);
    s.n = r->nthreads;
    s.pid = getpid();
    uint64_t x = sc->seed;
    unsigned d = sc->depth;
    for (unsigned u = 0; u < s.n; u++)
        s.prio[u] = (int)(d + u);
    for (unsigned u = s.n; u > 1; u--) { /* Fisher-Yates */
        unsigned v = (unsigned)(splitmix(&x) % u);
        int tmp = s.prio[u - 1];
        s.prio[u - 1] = s.prio[v];
        s.prio[v] = tmp;
    }
    s.nchange = d - 1;
    for (unsigned j = 0; j < s.nchange; j++) {
        s.change[j].thread = (int)(splitmix(&x) % s.n);
        s.change[j].point = 1 + splitmix(&x) % sc->horizon;
    }
    atomic_store(&s.turn[pick(&s)], 1);
    current = &s;
    return true;
}

void hx_sched_enter(int t)
{
    if (!current)
        return;
    self = t;
    wait_turn(current, t);
}

void hx_sched_leave(int t)
{
    struct hx_sched *s = current;
    if (!s)
        return;
    s->done[t] = true;
    int u = pick(s);
    if (u < 0)
        u = unblock_all(s); /* -1 again when every thread is done */
    hand_over(s, -1, u);
}

void hx_sched_end(struct hakx_verdict *v)
{
    if (!current)
        return;
    /* The next scheduled run in this process (a campaign's) starts with nothing
     * cached, as a fresh replay does: the same program passes the same points. */
    hak_collect();
    v->sched_steps = current->steps;
    v->sched_trace = current->trace;
    current = NULL;
    atomic_store(&busy, false);
}

void hx_sched_pause(const void *addr, unsigned n)
{
    if (!mine() || !hak_sched_block(addr))
        hx_backoff(n);
}

void hx_sched_signal(const void *addr)
{
    struct hx_sched *s = mine();
    if (!s)
        return;
    for (unsigned u = 0; u < s->n; u++)
        if (s->blocked[u] == addr)
            s->blocked[u] = NULL;
}

/* One fork at a time: glibc holds its atfork lock from the prepare handlers to
 * the parent's, and hakmem's prepare handler takes every heap's lock, so it may
 * block and let another thread run; a second fork there would sleep on glibc's
 * lock while holding the turn. */
void hx_sched_fork(bool before)
{
    struct hx_sched *s = mine();
    if (!s)
        return;
    if (before) {
        while (s->forking)
            hak_sched_block(&s->forking);
        s->forking = true;
    } else {
        s->forking = false;
        hx_sched_signal(&s->forking);
    }
}

#endif
