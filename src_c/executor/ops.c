/* Executing one op and the black-box checks around it: align, overlap,
 * integrity, usable_size, realloc_preserve, calloc_zero, null. */
#include <inttypes.h>
#include <string.h>

#include "hakmem.h"
#include "internal.h"

#pragma weak hak_flush_thread
#pragma weak hak_collect

static const char *const op_names[HAKX_NUM_OPCODES] = {
    "malloc", "calloc", "realloc", "aligned_alloc", "free", "write", "thread_exit", "barrier",
    "flush", "loop", "fork", "collect",
};

static uint64_t min_align(const struct hx_target *tg, uint64_t req)
{
    if (tg->always16 || req >= 16)
        return 16;
    uint64_t a = 1;
    while (a * 2 <= req)
        a *= 2;
    return a;
}

static void trace(struct hx_run *r, const void *p)
{
    struct hakx_options *o = r->opt;
    if (!o->trace)
        return;
    hx_lock(r);
    if (o->trace_len < o->trace_cap)
        o->trace[o->trace_len] = (uint64_t)(uintptr_t)p;
    o->trace_len++;
    hx_unlock(r);
}

/* Admits a fresh block into slot s after checking it; fills its pattern. */
static bool admit(struct hx_run *r, size_t i, int t, int s, void *p, uint64_t req, uint32_t align,
                  bool zeroed)
{
    const struct hx_target *tg = r->tg;
    const char *what = op_names[r->ops[i].op];
    struct hx_block b = {.p = p, .req = req, .align = align, .cls = -1, .live = true};
    uintptr_t u = (uintptr_t)p;
    uint64_t need = min_align(tg, req);
    if (align > need)
        need = align;
    if (u % need)
        return hx_fail(r, "align", (int64_t)i, t, s, p, need, u % need,
                       "%s(%" PRIu64 ") returned %p, not %" PRIu64 "-byte aligned", what, req, p,
                       need);
    b.usable = tg->usable_size ? tg->usable_size(p) : req;
    if (b.usable < req)
        return hx_fail(r, "usable_size", (int64_t)i, t, s, p, req, b.usable,
                       "%s(%" PRIu64 ") = %p: usable size %" PRIu64 " < requested", what, req, p,
                       b.usable);
    if (zeroed) {
        size_t off = hx_first_nonzero(p, req);
        if (off != (size_t)-1)
            return hx_fail(r, "calloc_zero", (int64_t)i, t, s, p, 0,
                           ((const unsigned char *)p)[off],
                           "calloc block %p of %" PRIu64 " B has a nonzero byte at offset %zu", p,
                           req, off);
    }
    if (r->whitebox && !hx_wb_on_alloc(r, (int64_t)i, t, s, &b))
        return false;
    hx_lock(r);
    int k = hx_iv_insert(&r->iv, u, u + (b.usable ? b.usable : 1), s);
    struct { uintptr_t start, end; int slot; } other = {0, 0, k};
    if (k >= 0)
        hx_iv_get(&r->iv, k, &other.start, &other.end);
    hx_unlock(r);
    if (k >= 0)
        return hx_fail(r, "overlap", (int64_t)i, t, s, p, other.start, u,
                       "%s(%" PRIu64 ") = [%p, +%" PRIu64 ") overlaps the live block of slot %d "
                       "[%#" PRIxPTR ", %#" PRIxPTR ")",
                       what, req, p, b.usable, other.slot, other.start, other.end);
    if (r->whitebox) {
        r->counts[t][b.cls]++;
        if (hx_take_hook(r, HAKX_HOOK_COUNTERS))
            r->counts[t][b.cls]++;
    }
    b.seed = hx_seed((unsigned)s, i, r->repeat);
    hx_fill(p, b.usable + (hx_take_hook(r, HAKX_HOOK_OVERRUN) ? 16 : 0), b.seed);
    trace(r, p);
    r->slots[s] = b;
    return true;
}

/* Checks a block about to be released or rewritten: integrity, double_conversion. */
static bool check_block(struct hx_run *r, int64_t i, int t, int s, const struct hx_block *b)
{
    if (!b->p)
        return true;
    size_t off = hx_verify(b->p, b->usable, b->seed);
    if (off != (size_t)-1) {
        const unsigned char *c = b->p;
        return hx_fail(r, "integrity", i, t, s, (const char *)b->p + off,
                       hx_pattern_byte(b->seed, off), c[off],
                       "block %p (%" PRIu64 " B requested, %" PRIu64
                       " usable) of slot %d: pattern broken at offset %zu",
                       b->p, b->req, b->usable, s, off);
    }
    if (r->whitebox && !hx_wb_on_release(r, i, t, s, b))
        return false;
    return true;
}

/* The executor stops holding b (before the target frees it). */
static void forget(struct hx_run *r, int t, const struct hx_block *b)
{
    if (!b->p)
        return;
    hx_lock(r);
    hx_iv_remove(&r->iv, (int)(b - r->slots));
    hx_unlock(r);
    if (r->whitebox && b->cls >= 0)
        r->counts[t][b->cls]--;
}

static void release(struct hx_run *r, int t, struct hx_block *b)
{
    forget(r, t, b);
    if (b->p) {
        r->tg->free(b->p);
        if (r->whitebox && hx_take_hook(r, HAKX_HOOK_HEAP)) {
            /* Flushed first: hakmem's thread caches hold blocks in an array,
             * so only a block on its slab's free list has a link to corrupt.
             * The block's first word now points at the block itself: the
             * chain through it loops (heap_check must see a block free twice). */
            hak_flush_thread();
            volatile uintptr_t *w = (volatile uintptr_t *)b->base;
            w[0] = b->base;
        }
    }
    memset(b, 0, sizeof *b);
}

static void alloc_op(struct hx_run *r, size_t i, int t, const struct hakx_op *o)
{
    uint64_t total;
    bool impossible = hx_op_total(o, &total);
    void *p;
    uint32_t align = 0;
    switch (o->op) {
    case HAKX_OP_CALLOC:
        p = r->tg->calloc(o->aux, o->size);
        break;
    case HAKX_OP_ALIGNED_ALLOC:
        align = o->aux;
        p = hx_target_aligned(r->tg, o->aux, o->size);
        break;
    default:
        p = r->tg->malloc(o->size);
        break;
    }
    if (impossible) {
        if (p)
            hx_fail(r, "null", (int64_t)i, t, o->slot, p, 0, (uint64_t)(uintptr_t)p,
                    "%s of an impossible size (%" PRIu64 " x %" PRIu64 ") returned %p, not NULL",
                    op_names[o->op], o->op == HAKX_OP_CALLOC ? (uint64_t)o->aux : 1, o->size, p);
        return;
    }
    if (!p) {
        if (total == 0 && !r->tg->strict_zero) {
            r->slots[o->slot] = (struct hx_block){.live = true, .cls = -1};
            return;
        }
        hx_fail(r, "null", (int64_t)i, t, o->slot, NULL, 1, 0,
                "%s(%" PRIu64 "%s) returned NULL for a reasonable request", op_names[o->op],
                total, align ? ", aligned" : "");
        return;
    }
    admit(r, i, t, o->slot, p, total, align, o->op == HAKX_OP_CALLOC);
}

static void realloc_op(struct hx_run *r, size_t i, int t, const struct hakx_op *o)
{
    struct hx_block old = r->slots[o->slot];
    if (!old.live) {
        alloc_op(r, i, t, o); /* realloc(NULL, n) */
        return;
    }
    if (!check_block(r, (int64_t)i, t, o->slot, &old))
        return;
    bool impossible = o->size >= HX_IMPOSSIBLE;
    hx_lock(r);
    if (old.p)
        hx_iv_remove(&r->iv, o->slot);
    hx_unlock(r);
    void *q = r->tg->realloc(old.p, o->size);
    if (impossible || !q) {
        if (impossible && q) {
            hx_fail(r, "null", (int64_t)i, t, o->slot, q, 0, (uint64_t)(uintptr_t)q,
                    "realloc(%p, %" PRIu64 ") of an impossible size returned %p, not NULL", old.p,
                    o->size, q);
            return;
        }
        if (!impossible && !(o->size == 0 && !r->tg->strict_zero)) {
            hx_fail(r, "null", (int64_t)i, t, o->slot, old.p, 1, 0,
                    "realloc(%p, %" PRIu64 ") returned NULL for a reasonable request", old.p,
                    o->size);
            return;
        }
        if (impossible) { /* the old block stays */
            if (old.p) {
                hx_lock(r);
                hx_iv_insert(&r->iv, (uintptr_t)old.p, (uintptr_t)old.p + (old.usable ? old.usable : 1),
                             o->slot);
                hx_unlock(r);
            }
            return;
        }
        /* realloc(p, 0) == NULL: p was freed (glibc) */
        if (r->whitebox && old.cls >= 0)
            r->counts[t][old.cls]--;
        r->slots[o->slot] = (struct hx_block){.live = true, .cls = -1};
        return;
    }
    if (r->whitebox && old.p && old.cls >= 0)
        r->counts[t][old.cls]--;
    r->slots[o->slot] = (struct hx_block){0};
    if (old.p) {
        uint64_t keep = old.req < o->size ? old.req : o->size;
        size_t off = hx_verify(q, keep, old.seed);
        if (off != (size_t)-1) {
            hx_fail(r, "realloc_preserve", (int64_t)i, t, o->slot, q,
                    hx_pattern_byte(old.seed, off), ((unsigned char *)q)[off],
                    "realloc(%p, %" PRIu64 ") = %p lost data at offset %zu (of %" PRIu64
                    " B to keep)",
                    old.p, o->size, q, off, keep);
            return;
        }
    }
    /* In place, an aligned block stays aligned (its user pointer may be interior). */
    admit(r, i, t, o->slot, q, o->size, q == old.p ? old.align : 0, false);
}

void hx_exec(struct hx_run *r, size_t i, int t)
{
    const struct hakx_op *o = &r->ops[i];
    struct hx_block *b = &r->slots[o->slot];
    switch (o->op) {
    case HAKX_OP_MALLOC:
    case HAKX_OP_CALLOC:
    case HAKX_OP_ALIGNED_ALLOC:
        alloc_op(r, i, t, o);
        break;
    case HAKX_OP_REALLOC:
        realloc_op(r, i, t, o);
        break;
    case HAKX_OP_FREE:
        if (check_block(r, (int64_t)i, t, o->slot, b))
            release(r, t, b);
        break;
    case HAKX_OP_WRITE:
        if (b->p && check_block(r, (int64_t)i, t, o->slot, b)) {
            b->seed = hx_seed(o->slot, i, r->repeat);
            hx_fill(b->p, b->usable, b->seed);
        }
        break;
    case HAKX_OP_FLUSH:
        if (r->tg->hakmem)
            hak_flush_thread();
        break;
    case HAKX_OP_FORK:
        hx_fork(r, i, t);
        break;
    case HAKX_OP_COLLECT:
        if (r->tg->hakmem) {
            hak_collect();
            /* in lockstep the other threads are parked: a quiescent point */
            if (r->whitebox && r->mode == HAKX_MODE_LOCKSTEP)
                hx_wb_collected(r, (int64_t)i);
        }
        break;
    default:
        break;
    }
}

void hx_cleanup(struct hx_run *r)
{
    for (int s = 0; s < HAKX_SLOTS && !hx_failed(r); s++) {
        struct hx_block *b = &r->slots[s];
        if (!b->live)
            continue;
        if (b->p && r->whitebox && hx_take_hook(r, HAKX_HOOK_LEAK)) {
            forget(r, HX_MAIN_THREAD, b);
            memset(b, 0, sizeof *b);
            continue;
        }
        if (check_block(r, -1, -1, s, b))
            release(r, HX_MAIN_THREAD, b);
    }
}
