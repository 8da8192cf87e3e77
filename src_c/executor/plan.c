/* The plan: which ops take effect (an op on an empty/occupied slot is skipped),
 * decided once, in program order, before anything runs. Sizes are either
 * reasonable (must succeed) or impossible (must fail), so slot occupancy never
 * depends on the target's answers; both modes and every repeat share the plan.
 * It also chains the effective ops of each slot: the concurrent mode hands a
 * slot's block from one thread to the next along that chain. */
#include <stdlib.h>
#include <string.h>

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

int hx_plan_alloc(struct hx_run *r, struct hx_plan_state *ps)
{
    size_t n = r->nops;
    r->effective = calloc(n ? n : 1, 1);
    r->next_on_slot = malloc((n ? n : 1) * sizeof *r->next_on_slot);
    if (!r->effective || !r->next_on_slot)
        return -1;
    for (int s = 0; s < HAKX_SLOTS; s++) {
        ps->last[s] = r->first_on_slot[s] = -1;
        ps->occ[s] = false;
    }
    for (int t = 0; t < HAKX_MAX_THREADS; t++)
        ps->started[t] = false;
    ps->forks = 0;
    atomic_store(&r->planned, 0);
    return 0;
}

int hx_plan(struct hx_run *r)
{
    struct hx_plan_state ps;
    if (hx_plan_alloc(r, &ps))
        return -1;
    hx_plan_range(r, &ps, 0, r->nops);
    atomic_store_explicit(&r->planned, r->nops, memory_order_release);
    return 0;
}

void hx_plan_range(struct hx_run *r, struct hx_plan_state *ps, size_t from, size_t to)
{
    bool occ[HAKX_SLOTS], started[HAKX_MAX_THREADS]; /* local copies: no aliasing */
    int64_t last[HAKX_SLOTS];
    memcpy(occ, ps->occ, sizeof occ);
    memcpy(started, ps->started, sizeof started);
    memcpy(last, ps->last, sizeof last);
    bool aligned_ok = hx_target_has_aligned(r->tg), hakmem = r->tg->hakmem;
    unsigned forks = ps->forks;
    int64_t dummy, first[HAKX_SLOTS];
    memcpy(first, r->first_on_slot, sizeof first);
    /* locals: byte stores into effective[] may alias anything else */
    const struct hakx_op *restrict ops = r->ops;
    uint8_t *restrict effective = r->effective;
    int64_t *restrict next = r->next_on_slot;
    /* Branch-free: programs are random, so every branch on the op or the slot's
     * state would be mispredicted. */
    for (size_t i = from; i < to; i++) {
        const struct hakx_op *o = &ops[i];
        unsigned op = o->op, s = o->slot, t = o->thread;
        bool occ_s = occ[s];
        uint64_t total;
        bool impossible = __builtin_mul_overflow(o->size, op == HAKX_OP_CALLOC ? o->aux : 1u,
                                                 &total) |
                          (total >= HX_IMPOSSIBLE);
        const bool cand[HAKX_NUM_OPCODES] = {
            [HAKX_OP_MALLOC] = !occ_s,
            [HAKX_OP_CALLOC] = !occ_s,
            [HAKX_OP_REALLOC] = true,
            [HAKX_OP_ALIGNED_ALLOC] = !occ_s & aligned_ok,
            [HAKX_OP_FREE] = occ_s,
            [HAKX_OP_WRITE] = occ_s,
            [HAKX_OP_THREAD_EXIT] = started[t],
            [HAKX_OP_BARRIER] = true,
            [HAKX_OP_FLUSH] = hakmem,
            [HAKX_OP_COLLECT] = hakmem,
            [HAKX_OP_FORK] = forks < HAKX_MAX_FORKS,
        };
        bool eff = cand[op];
        forks += eff & (op == HAKX_OP_FORK);
        bool allocs = op <= HAKX_OP_ALIGNED_ALLOC; /* malloc, calloc, realloc, aligned_alloc */
        occ[s] = (occ_s | (allocs & eff & !impossible)) & (op != HAKX_OP_FREE);
        effective[i] = eff;
        next[i] = -1;
        bool starts = eff & (op != HAKX_OP_BARRIER);
        started[t] = starts ? op != HAKX_OP_THREAD_EXIT : started[t];
        bool chain = eff & hx_op_uses_slot((uint8_t)op);
        int64_t l = last[s];
        int64_t *dst = l < 0 ? &first[s] : &next[l];
        *(chain ? dst : &dummy) = (int64_t)i;
        last[s] = chain ? (int64_t)i : l;
    }
    (void)dummy;
    memcpy(r->first_on_slot, first, sizeof first);
    memcpy(ps->occ, occ, sizeof occ);
    memcpy(ps->started, started, sizeof started);
    memcpy(ps->last, last, sizeof last);
    ps->forks = forks;
}
