/* hakx_run: decode, plan, run each repeat in the chosen mode, report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#pragma weak hak_counters_snapshot
#pragma weak hak_flush_thread
#pragma weak hak_block_info

/* Planning a long lockstep program runs on a thread of its own, ahead of the ops being
 * executed (the lockstep mode waits for each op's plan). */
#define HX_PIPELINE_MIN 8192
#define HX_PIPELINE_CHUNK 2048

struct hx_planner { struct hx_run *r; struct hx_plan_state ps; };

static void *planner(void *arg)
{
    struct hx_planner *pl = arg;
    struct hx_run *r = pl->r;
    for (size_t i = 0; i < r->nops; i += HX_PIPELINE_CHUNK) {
        size_t end = r->nops - i < HX_PIPELINE_CHUNK ? r->nops : i + HX_PIPELINE_CHUNK;
        hx_plan_range(r, &pl->ps, i, end);
        atomic_store_explicit(&r->planned, end, memory_order_release);
    }
    return NULL;
}

static void verdict_init(struct hakx_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->op_index = -1;
    v->program_op = -1;
    v->thread = -1;
    v->slot = -1;
}

HAKX_API int hakx_run(const uint8_t *data, size_t len, struct hakx_options *opt,
                      struct hakx_verdict *v)
{
    verdict_init(v);
    struct hakx_options dflt = {0};
    if (!opt)
        opt = &dflt;
    opt->trace_len = 0;
    /* Decode from an exact-size copy: an over-read is the sanitizer's to see. */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        v->status = HAKX_STATUS_ERROR;
        snprintf(v->message, sizeof v->message, "out of memory copying the input");
        return v->status;
    }
    if (len)
        memcpy(copy, data, len);
    uint32_t nthreads;
    size_t n = hakx_decode(copy, len, NULL, 0, &nthreads);
    struct hakx_op *ops = malloc((n ? n : 1) * sizeof *ops);
    if (ops)
        hakx_decode(copy, len, ops, n, &nthreads);
    struct hx_run *r = calloc(1, sizeof *r);
    char err[256] = "";
    const struct hx_target *tg = hx_target_get(opt->target_path, opt->prefix, err, sizeof err);
    if (!ops || !r || !tg) {
        v->status = HAKX_STATUS_ERROR;
        snprintf(v->check, sizeof v->check, "executor");
        snprintf(v->message, sizeof v->message, "%s", tg ? "out of memory" : err);
        goto out;
    }
    r->ops = ops;
    r->nops = n;
    r->nthreads = nthreads;
    r->tg = tg;
    r->opt = opt;
    r->verdict = v;
    r->mode = opt->mode;
    r->whitebox = opt->whitebox && tg->hakmem && hak_counters_snapshot && hak_block_info;
    r->use_lock = opt->mode == HAKX_MODE_CONCURRENT;
    hakx_schedule_of(copy, len, &r->schedule);
    pthread_mutex_init(&r->lock, NULL);
    struct hx_planner pl = {.r = r};
    if (hx_plan_alloc(r, &pl.ps)) {
        v->status = HAKX_STATUS_ERROR;
        snprintf(v->message, sizeof v->message, "out of memory planning %zu ops", n);
        goto out;
    }
    pthread_t plt;
    bool pipelined = opt->mode != HAKX_MODE_CONCURRENT && n >= HX_PIPELINE_MIN &&
                     pthread_create(&plt, NULL, planner, &pl) == 0;
    if (!pipelined) {
        hx_plan_range(r, &pl.ps, 0, n);
        atomic_store_explicit(&r->planned, n, memory_order_release);
    }
    uint32_t reps = opt->repeats ? opt->repeats : 1;
    r->hooks_left = opt->hooks;
    uint32_t done = 0;
    pthread_mutex_lock(&hx_pool_lock);
    for (; done < reps && !hx_failed(r); done++) {
        r->repeat = done;
        memset(r->slots, 0, sizeof r->slots);
        memset(&r->iv, 0, sizeof r->iv);
        memset(r->counts, 0, sizeof r->counts);
        if (r->whitebox) {
            hak_flush_thread();
            hak_counters_snapshot(&r->baseline);
            if (done == 0)
                r->maps_before = r->baseline.os_maps;
        }
        if (opt->mode == HAKX_MODE_CONCURRENT)
            hx_run_concurrent(r);
        else
            hx_run_lockstep(r);
        hx_fork_reap(r);
        if (pipelined) {
            pthread_join(plt, NULL);
            pipelined = false;
        }
    }
    pthread_mutex_unlock(&hx_pool_lock);
    if (pipelined) /* no repeat ran */
        pthread_join(plt, NULL);
    uint64_t eff = 0;
    for (size_t i = 0; i < n; i++)
        eff += r->effective[i];
    v->ops_executed = eff * done;
    v->ops_skipped = (n - eff) * done;
    v->program_op = hx_program_op(copy, len, v->op_index);
    pthread_mutex_destroy(&r->lock);
out:
    if (r) {
        free(r->effective);
        free(r->next_on_slot);
    }
    free(r);
    free(ops);
    free(copy);
    return v->status;
}
