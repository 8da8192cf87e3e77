/* The plan: which ops take effect (an op on an empty/occupied slot is skipped),
 * decided once, in program order, before anything runs. Sizes are either
 * reasonable (must succeed) or impossible (must fail), so slot occupancy never
 * depends on the target's answers; both modes and every repeat share the plan.
 * It also chains the effective ops of each slot: the concurrent mode hands a
 * slot's block from one thread to the next along that chain. */
#include <stdlib.h>

#include "internal.h"

bool hx_op_uses_slot(uint8_t op)
{
    return op <= HAKX_OP_WRITE;
}

bool hx_op_total(const struct hakx_op *o, uint64_t *total)
{
    if (o->op == HAKX_OP_CALLOC) {
        if (o->aux && o->size > UINT64_MAX / o->aux) {
            *total = UINT64_MAX;
            return true;
        }
        *total = o->size * o->aux;
    } else {
        *total = o->size;
    }
    return *total >= HX_IMPOSSIBLE;
}

int hx_plan(struct hx_run *r)
{
    size_t n = r->nops;
    r->effective = calloc(n ? n : 1, 1);
    r->next_on_slot = malloc((n ? n : 1) * sizeof *r->next_on_slot);
    if (!r->effective || !r->next_on_slot)
        return -1;
    bool occ[HAKX_SLOTS] = {0}, started[HAKX_MAX_THREADS] = {0};
    int64_t last[HAKX_SLOTS];
    for (int s = 0; s < HAKX_SLOTS; s++)
        last[s] = r->first_on_slot[s] = -1;
    bool aligned_ok = hx_target_has_aligned(r->tg);
    for (size_t i = 0; i < n; i++) {
        const struct hakx_op *o = &r->ops[i];
        bool eff = false;
        uint64_t total;
        bool impossible = o->op <= HAKX_OP_ALIGNED && hx_op_total(o, &total);
        switch (o->op) {
        case HAKX_OP_MALLOC:
        case HAKX_OP_CALLOC:
        case HAKX_OP_ALIGNED:
            eff = !occ[o->slot] && (o->op != HAKX_OP_ALIGNED || aligned_ok);
            if (eff && !impossible)
                occ[o->slot] = true;
            break;
        case HAKX_OP_REALLOC:
            eff = true;
            if (!impossible)
                occ[o->slot] = true;
            break;
        case HAKX_OP_FREE:
            eff = occ[o->slot];
            occ[o->slot] = false;
            break;
        case HAKX_OP_WRITE:
            eff = occ[o->slot];
            break;
        case HAKX_OP_THREAD_EXIT:
            eff = started[o->thread];
            break;
        case HAKX_OP_BARRIER:
            eff = true;
            break;
        case HAKX_OP_FLUSH:
            eff = r->tg->hakmem;
            break;
        }
        r->effective[i] = eff;
        r->next_on_slot[i] = -1;
        if (eff && o->op != HAKX_OP_BARRIER)
            started[o->thread] = o->op != HAKX_OP_THREAD_EXIT;
        if (eff && hx_op_uses_slot(o->op)) {
            if (last[o->slot] < 0)
                r->first_on_slot[o->slot] = (int64_t)i;
            else
                r->next_on_slot[last[o->slot]] = (int64_t)i;
            last[o->slot] = (int64_t)i;
        }
    }
    return 0;
}
