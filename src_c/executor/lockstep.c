/* Lockstep mode: ops run one at a time in program order, each on the OS thread
 * of its program thread, so a program replays identically every time.
 *
 * Control passes directly from worker to worker (a run of consecutive ops of one
 * thread is executed without any handoff; the worker that reaches a barrier runs
 * its checks); it returns to the executor's main thread for thread exits (joined
 * before the next op, so TLS destructors never race with it), starting a thread,
 * and the end. Workers are pool threads (pool.c), kept across runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#pragma weak hak_flush_thread
#pragma weak hak_retire_thread

enum { CMD_RUN, CMD_FLUSH, CMD_QUIT };

struct hx_ls;
struct hx_lw {
    struct hx_ls *ls;
    int index;
    int cmd;
    bool alive, exiting;
    struct hx_turn w;
};

struct hx_ls {
    struct hx_run *r;
    size_t pc;
    bool ended;            /* the end's quiescent point is done */
    struct hx_turn main;
    struct hx_turn *reply; /* where a flushed worker hands control back */
    struct hx_lw w[HAKX_MAX_THREADS];
};

/* The turn word of whoever runs right after the run of thread t starting at op i:
 * a worker, or the main thread (thread exit, a thread to start, the end). */
static struct hx_turn *after_run(struct hx_ls *ls, size_t *pi, int t)
{
    struct hx_run *r = ls->r;
    size_t i = *pi, planned = atomic_load_explicit(&r->planned, memory_order_acquire);
    for (; i < r->nops; i++) {
        if (i >= planned)
            return NULL; /* not planned yet: no hint */
        if (!r->effective[i])
            continue;
        const struct hakx_op *o = &r->ops[i];
        if (o->op == HAKX_OP_THREAD_EXIT)
            break;
        if (o->thread != t && o->op != HAKX_OP_BARRIER) {
            *pi = i;
            return ls->w[o->thread].alive ? &ls->w[o->thread].w : &ls->main;
        }
    }
    *pi = r->nops;
    return &ls->main;
}

/* The white-box checks of a quiescent point, around a flush of every live worker
 * (each flushes its own caches). `self` (NULL: the main thread) has control: it
 * flushes itself directly and hands control to each other worker and back, so a
 * 1-thread program passes its barriers without a single handoff. */
static void quiescent(struct hx_ls *ls, struct hx_lw *self, int64_t op)
{
    struct hx_run *r = ls->r;
    if (!r->whitebox || hx_failed(r))
        return;
    if (!hx_wb_quiescent(r, op, op < 0 ? "end, before flush" : "barrier, before flush"))
        return;
    struct hx_turn *back = self ? &self->w : &ls->main;
    for (int t = 0; t < HAKX_MAX_THREADS; t++) {
        struct hx_lw *lw = &ls->w[t];
        if (lw == self) {
            if (r->tg->hakmem)
                hak_flush_thread();
        } else if (lw->alive) {
            ls->reply = back;
            lw->cmd = CMD_FLUSH;
            hx_turn_go(&lw->w);
            hx_turn_wait(back);
        }
    }
    hx_wb_quiescent(r, op, op < 0 ? "end, after flushing every thread"
                                  : "barrier, after flushing every thread");
}

/* Runs ops from ls->pc while they are this worker's, barriers included; hands
 * control to the next op's worker, or to the main thread. True: the worker
 * ends its OS thread (a thread_exit op). */
static bool run_ops(struct hx_ls *ls, struct hx_lw *lw)
{
    struct hx_run *r = ls->r;
    size_t i = ls->pc;
    for (;;) {
        while (hx_plan_ready(r, i), i < r->nops && !r->effective[i])
            i++;
        if (i >= r->nops && !hx_failed(r)) {
            ls->pc = i;
            quiescent(ls, lw, -1);
            ls->ended = true;
        }
        if (i >= r->nops || hx_failed(r))
            break;
        const struct hakx_op *o = &r->ops[i];
        if (o->op == HAKX_OP_BARRIER) {
            ls->pc = i + 1;
            quiescent(ls, lw, (int64_t)i);
            i++;
            continue;
        }
        if (o->thread != lw->index) {
            struct hx_lw *nx = &ls->w[o->thread];
            if (!nx->alive)
                break;
            ls->pc = i;
            nx->cmd = CMD_RUN;
            hx_turn_go(&nx->w);
            /* Only the thread after nx's run may spin; this one sleeps
             * unless that is its own turn. */
            size_t j = i;
            struct hx_turn *c = after_run(ls, &j, o->thread);
            if (c)
                hx_turn_hint(c);
            return false;
        }
        if (o->op == HAKX_OP_THREAD_EXIT) {
            ls->pc = i + 1;
            lw->exiting = true;
            hx_turn_go(&ls->main);
            return true;
        }
        hx_exec(r, i, lw->index);
        i++;
    }
    ls->pc = i;
    hx_turn_go(&ls->main);
    return false;
}

/* A program thread's job on its pool thread, for one run. */
static int worker(void *arg)
{
    struct hx_lw *lw = arg;
    struct hx_ls *ls = lw->ls;
    struct hx_run *r = ls->r;
    for (;;) {
        hx_turn_wait(&lw->w);
        if (lw->cmd == CMD_QUIT) {
            if (r->tg->hakmem)
                hak_retire_thread();
            return HX_JOB_DONE;
        }
        if (lw->cmd == CMD_FLUSH) {
            if (r->tg->hakmem)
                hak_flush_thread();
            hx_turn_go(ls->reply);
            continue;
        }
        if (run_ops(ls, lw))
            return HX_JOB_EXIT;
    }
}

static bool spawn(struct hx_ls *ls, int t)
{
    struct hx_lw *lw = &ls->w[t];
    lw->ls = ls;
    lw->index = t;
    lw->exiting = false;
    hx_turn_init(&lw->w);
    if (!hx_pool_run(t, worker, lw)) {
        hx_error(ls->r, "pthread_create failed for thread %d", t);
        return false;
    }
    lw->alive = true;
    return true;
}

static void reap(struct hx_ls *ls)
{
    for (int t = 0; t < HAKX_MAX_THREADS; t++)
        if (ls->w[t].alive && ls->w[t].exiting) {
            hx_pool_wait(t);
            ls->w[t].alive = ls->w[t].exiting = false;
        }
}

void hx_run_lockstep(struct hx_run *r)
{
    static struct hx_ls zero_ls;
    struct hx_ls *ls = calloc(1, sizeof *ls);
    if (!ls)
        return;
    *ls = zero_ls;
    ls->r = r;
    hx_turn_init(&ls->main);
    for (;;) {
        size_t i = ls->pc;
        while (hx_plan_ready(r, i), i < r->nops && !r->effective[i])
            i++;
        if (i >= r->nops || hx_failed(r))
            break;
        const struct hakx_op *o = &r->ops[i];
        if (o->op == HAKX_OP_BARRIER) {
            quiescent(ls, NULL, (int64_t)i);
            ls->pc = i + 1;
            continue;
        }
        if (!ls->w[o->thread].alive && !spawn(ls, o->thread))
            break;
        ls->pc = i;
        ls->w[o->thread].cmd = CMD_RUN;
        hx_turn_go(&ls->w[o->thread].w);
        hx_turn_wait(&ls->main);
        reap(ls);
        if (ls->ended)
            break;
    }
    if (!ls->ended)
        quiescent(ls, NULL, -1);
    if (!hx_failed(r))
        hx_cleanup(r);
    for (int t = 0; t < HAKX_MAX_THREADS; t++)
        if (ls->w[t].alive) {
            ls->w[t].cmd = CMD_QUIT;
            hx_turn_go(&ls->w[t].w);
            hx_pool_wait(t);
            ls->w[t].alive = false;
        }
    if (r->whitebox && !hx_failed(r))
        hx_wb_leak(r);
    free(ls);
}
