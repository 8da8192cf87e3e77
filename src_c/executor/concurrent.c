/* Concurrent mode: every program thread runs its own ops freely, in its own
 * order, racing the others. A slot's block is handed from thread to thread along
 * the plan's chain of effective ops on that slot (a baton per slot: the op
 * allowed to touch it next), so a free by another thread is a real remote free
 * racing everything else. The plan follows program order, so the earliest
 * unfinished op can always run: no deadlock.
 *
 * Barriers synchronise all threads. They are abortable spin/yield barriers rather
 * than pthread_barrier_t: after a failure the other threads must not wait for a
 * thread that stopped. Each thread ends with an implicit final barrier (the end
 * quiescent point). Program threads run on pool threads (pool.c). A thread_exit
 * ends the OS thread; the rest of that program thread runs on a fresh one, which
 * joins its predecessor first, so an exiting thread's TLS destructors have
 * finished before its successor reaches a barrier: quiescent points stay
 * quiescent.
 *
 * Scheduled (a schedule-controlled build, a program with a schedule): the same,
 * but one program thread runs at a time, as sched.c decides, and a thread waiting
 * for a baton or a barrier is blocked on it until the thread that moves it signals. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#pragma weak hak_flush_thread
#pragma weak hak_retire_thread

struct hx_cc;
struct hx_seg {
    struct hx_cc *cc;
    int t;
    bool again; /* a successor: the OS thread before it ended at a thread_exit op */
};

struct hx_cc {
    struct hx_run *r;
    size_t *list[HAKX_MAX_THREADS];
    size_t len[HAKX_MAX_THREADS];
    size_t k[HAKX_MAX_THREADS];
    unsigned n;
    _Atomic unsigned arrived, gen;
};

static bool barrier(struct hx_cc *cc)
{
    unsigned g = atomic_load(&cc->gen);
    if (atomic_fetch_add(&cc->arrived, 1) + 1 == cc->n) {
        atomic_store(&cc->arrived, 0);
        atomic_fetch_add(&cc->gen, 1);
        hx_sched_signal(&cc->gen);
        return true;
    }
    for (unsigned n = 0; atomic_load(&cc->gen) == g; n++) {
        if (hx_failed(cc->r))
            return false;
        hx_sched_pause(&cc->gen, n);
    }
    return true;
}

static bool quiescent(struct hx_cc *cc, int t, int64_t op)
{
    struct hx_run *r = cc->r;
    if (!barrier(cc))
        return false;
    if (!r->whitebox)
        return true;
    const char *a = op < 0 ? "end, before flush" : "barrier, before flush";
    const char *b = op < 0 ? "end, after flushing every thread" : "barrier, after flushing every thread";
    if (t == 0)
        hx_wb_quiescent(r, op, a);
    if (!barrier(cc))
        return false;
    hak_flush_thread();
    if (!barrier(cc))
        return false;
    if (t == 0)
        hx_wb_quiescent(r, op, b);
    return barrier(cc);
}

/* Runs program thread t's ops from where it is; true: it reached a thread_exit. */
static bool run_ops(struct hx_cc *cc, int t)
{
    struct hx_run *r = cc->r;
    for (; cc->k[t] < cc->len[t]; cc->k[t]++) {
        if (hx_failed(r))
            return false;
        size_t i = cc->list[t][cc->k[t]];
        const struct hakx_op *o = &r->ops[i];
        switch (o->op) {
        case HAKX_OP_BARRIER:
            if (!quiescent(cc, t, (int64_t)i))
                return false;
            break;
        case HAKX_OP_THREAD_EXIT:
            cc->k[t]++;
            return true;
        case HAKX_OP_FLUSH:
            if (r->tg->hakmem)
                hak_flush_thread();
            break;
        case HAKX_OP_FORK: /* on no slot: no baton */
        case HAKX_OP_COLLECT:
            hx_exec(r, i, t);
            break;
        default: {
            _Atomic int64_t *baton = &r->baton[o->slot];
            for (unsigned n = 0; atomic_load(baton) != (int64_t)i; n++) {
                if (hx_failed(r))
                    return false;
                hx_sched_pause(baton, n);
            }
            hx_exec(r, i, t);
            atomic_store(baton, r->next_on_slot[i]);
            hx_sched_signal(baton);
        }
        }
    }
    if (!hx_failed(r))
        quiescent(cc, t, -1);
    return false;
}

/* Program thread t's job (pool.c): its first OS thread, or a successor, which
 * goes on only if the run has not failed meanwhile. */
static int body(void *arg)
{
    struct hx_seg *seg = arg;
    struct hx_run *r = seg->cc->r;
    if (!seg->again || !hx_failed(r)) {
        hx_sched_enter(seg->t);
        if (run_ops(seg->cc, seg->t)) {
            seg->again = true;
            return HX_JOB_EXIT_AGAIN;
        }
    }
    if (r->tg->hakmem)
        hak_retire_thread();
    hx_sched_leave(seg->t);
    return HX_JOB_DONE;
}

void hx_run_concurrent(struct hx_run *r)
{
    struct hx_cc *cc = calloc(1, sizeof *cc);
    struct hx_seg *first = calloc(r->nthreads, sizeof *first);
    if (!cc || !first)
        goto out;
    cc->r = r;
    cc->n = r->nthreads;
    /* each thread's list sized exactly: an expanded program has up to HAKX_MAX_OPS ops */
    size_t need[HAKX_MAX_THREADS] = {0};
    for (size_t i = 0; i < r->nops; i++)
        for (unsigned t = 0; t < r->nthreads; t++)
            need[t] += r->effective[i] &&
                       (r->ops[i].op == HAKX_OP_BARRIER || r->ops[i].thread == t);
    for (unsigned t = 0; t < r->nthreads; t++) {
        cc->list[t] = malloc((need[t] ? need[t] : 1) * sizeof(size_t));
        if (!cc->list[t])
            goto out;
    }
    for (size_t i = 0; i < r->nops; i++) {
        if (!r->effective[i])
            continue;
        const struct hakx_op *o = &r->ops[i];
        for (unsigned t = 0; t < r->nthreads; t++)
            if (o->op == HAKX_OP_BARRIER || o->thread == t)
                cc->list[t][cc->len[t]++] = i;
    }
    for (int s = 0; s < HAKX_SLOTS; s++)
        atomic_store(&r->baton[s], r->first_on_slot[s]);
    bool scheduled = hx_sched_begin(r);
    unsigned started = 0;
    for (; started < r->nthreads; started++) {
        first[started].cc = cc;
        first[started].t = (int)started;
        if (!hx_pool_run((int)started, body, &first[started])) {
            hx_error(r, "pthread_create failed for thread %u", started);
            break;
        }
    }
    for (unsigned t = 0; t < started; t++)
        if (!hx_pool_wait((int)t))
            hx_error(r, "pthread_create failed for a successor of thread %u", t);
    if (!hx_failed(r))
        hx_cleanup(r);
    if (r->whitebox && !hx_failed(r))
        hx_wb_leak(r);
    if (scheduled)
        hx_sched_end(r->verdict);
out:
    if (cc)
        for (unsigned t = 0; t < HAKX_MAX_THREADS; t++)
            free(cc->list[t]);
    free(cc);
    free(first);
}
