/* White-box checks through the introspection API (hakmem target only):
 * block_boundary, double_conversion, counters, heap_check (also right after a
 * collect op: what hak_collect promises to give back is gone), leak. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

#pragma weak hak_block_info
#pragma weak hak_counters_snapshot
#pragma weak hak_heap_check
#pragma weak hak_heap_check_collected
#pragma weak hak_flush_thread

int hx_count_index(int size_class)
{
    return size_class == HAK_CLASS_LARGE ? HAK_NUM_CLASSES : size_class;
}

bool hx_wb_on_alloc(struct hx_run *r, int64_t op, int thread, int slot, struct hx_block *b)
{
    struct hak_block_info info;
    uintptr_t user = (uintptr_t)b->p;
    if (!hak_block_info(b->p, &info, 0))
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, 1, 0,
                       "hak_block_info says the pointer it just returned is not ours");
    if (hx_take_hook(r, HAKX_HOOK_BOUNDARY))
        info.base += 8;
    uintptr_t seen_user = user;
    if (hx_take_hook(r, HAKX_HOOK_CONVERSION))
        seen_user += 16;
    bool slab = info.region == HAK_REGION_TINY || info.region == HAK_REGION_MID;
    if (slab && info.block_size &&
        (info.base < info.slab_start || (info.base - info.slab_start) % info.block_size))
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, info.slab_start,
                       info.base,
                       "base %#" PRIxPTR " is not on a block boundary of its slab (start %#" PRIxPTR
                       ", block size %zu, offset %" PRIuPTR ")",
                       info.base, info.slab_start, info.block_size,
                       info.base - info.slab_start);
    /* a new block came from the allocating thread's cache, so from a slab its heap owns
     * (every heap has a non-zero serial; 0 is for abandoned slabs and large blocks); a
     * realloc may keep its block where it was, in a slab abandoned since */
    if (slab && !info.owner && r->ops[op].op != HAKX_OP_REALLOC)
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, 1, 0,
                       "hak_block_info reports no owning heap for a %s block its thread just "
                       "allocated", info.region == HAK_REGION_TINY ? "tiny" : "mid");
    if (user < info.base || user >= info.base + info.block_size)
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, info.base, user,
                       "user %#" PRIxPTR " outside its block [%#" PRIxPTR ", +%zu)", user,
                       info.base, info.block_size);
    if (user + b->req > info.base + info.block_size)
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, info.base + info.block_size,
                       user + b->req,
                       "request of %" PRIu64 " B at %#" PRIxPTR
                       " runs past its block [%#" PRIxPTR ", +%zu)",
                       b->req, user, info.base, info.block_size);
    uintptr_t diff = seen_user - info.base;
    if (b->align == 0) {
        uintptr_t want = info.region == HAK_REGION_LARGE ? HAK_LARGE_HEADER : 0;
        if (diff != want)
            return hx_fail(r, "double_conversion", op, thread, slot, b->p, want, diff,
                           "user - base = %" PRIuPTR ", documented %" PRIuPTR
                           " for a plain %s block (base %#" PRIxPTR ")",
                           diff, want, info.region == HAK_REGION_LARGE ? "large" : "slab",
                           info.base);
    } else if (diff >= (uintptr_t)b->align + HAK_LARGE_HEADER) {
        return hx_fail(r, "double_conversion", op, thread, slot, b->p,
                       (uint64_t)b->align + HAK_LARGE_HEADER, diff,
                       "aligned block: user - base = %" PRIuPTR " >= alignment %u + %d",
                       diff, b->align, HAK_LARGE_HEADER);
    }
    int k = hx_count_index(info.size_class);
    if (k < 0 || k > HAK_NUM_CLASSES)
        return hx_fail(r, "block_boundary", op, thread, slot, b->p, 0, (uint64_t)info.size_class,
                       "hak_block_info reports size class %d", info.size_class);
    b->base = info.base;
    b->cls = k;
    return true;
}

bool hx_wb_on_release(struct hx_run *r, int64_t op, int thread, int slot,
                      const struct hx_block *b)
{
    struct hak_block_info info;
    if (!hak_block_info(b->p, &info, 0))
        return hx_fail(r, "double_conversion", op, thread, slot, b->p, b->base, 0,
                       "free would not recognise its own pointer (hak_block_info: not ours)");
    if (info.base != b->base)
        return hx_fail(r, "double_conversion", op, thread, slot, b->p, b->base, info.base,
                       "free would use base %#" PRIxPTR ", the block's base is %#" PRIxPTR,
                       info.base, b->base);
    return true;
}

/* Footprint figures of the verdict, at a check point (counters snapshot `c`). */
static void footprint(struct hx_run *r, const struct hak_counters *c)
{
    if (c->os_mapped > r->verdict->peak_mapped)
        r->verdict->peak_mapped = c->os_mapped;
    r->verdict->os_maps = c->os_maps - r->maps_before;
}

bool hx_wb_quiescent(struct hx_run *r, int64_t op, const char *where)
{
    struct hak_counters c;
    hak_counters_snapshot(&c);
    footprint(r, &c);
    int64_t mine[HX_COUNT_SLOTS] = {0};
    for (int t = 0; t <= HAKX_MAX_THREADS; t++)
        for (int k = 0; k < HX_COUNT_SLOTS; k++)
            mine[k] += r->counts[t][k];
    uint64_t sum = 0;
    for (int k = 0; k < HAK_NUM_CLASSES; k++) {
        const struct hak_class_counters *x = &c.cls[k];
        int64_t want = (int64_t)r->baseline.cls[k].live + mine[k];
        if ((int64_t)x->live != want)
            return hx_fail(r, "counters", op, -1, -1, NULL, (uint64_t)want, x->live,
                           "%s: class %d (%u B): allocator counts %" PRIu64
                           " live blocks, the executor holds %" PRId64,
                           where, k, x->block_size, x->live, want);
        if (x->used + x->free_list != x->carved || x->carved > x->capacity ||
            x->remote_pending + x->thread_cached > x->used)
            return hx_fail(r, "counters", op, -1, -1, NULL, x->carved, x->used + x->free_list,
                           "%s: class %d (%u B): identity broken: used %" PRIu64
                           " + free_list %" PRIu64 " vs carved %" PRIu64 " (capacity %" PRIu64
                           "), remote %" PRIu64 " + cached %" PRIu64,
                           where, k, x->block_size, x->used, x->free_list, x->carved,
                           x->capacity, x->remote_pending, x->thread_cached);
        sum += x->live;
    }
    int64_t want_large = (int64_t)r->baseline.large_live + mine[HAK_NUM_CLASSES];
    if ((int64_t)c.large_live != want_large)
        return hx_fail(r, "counters", op, -1, -1, NULL, (uint64_t)want_large, c.large_live,
                       "%s: allocator counts %" PRIu64 " live large blocks, the executor holds %"
                       PRId64, where, c.large_live, want_large);
    if (c.live_total != sum + c.large_live)
        return hx_fail(r, "counters", op, -1, -1, NULL, sum + c.large_live, c.live_total,
                       "%s: live_total %" PRIu64 " != sum of class live + large_live %" PRIu64,
                       where, c.live_total, sum + c.large_live);
    struct hak_heap_report rep;
    rep.message[0] = 0;
    if (!hak_heap_check(&rep))
        return hx_fail(r, "heap_check", op, -1, -1, (void *)rep.where, 0, (uint64_t)rep.errors,
                       "%s: %d violation(s); first: %s", where, rep.errors, rep.message);
    return true;
}

bool hx_wb_collected(struct hx_run *r, int64_t op)
{
    struct hak_counters c;
    hak_counters_snapshot(&c);
    footprint(r, &c);
    r->verdict->collect_mapped += c.os_mapped;
    struct hak_heap_report rep;
    rep.message[0] = 0;
    if (!hak_heap_check_collected(&rep))
        return hx_fail(r, "heap_check", op, -1, -1, (void *)rep.where, 0, (uint64_t)rep.errors,
                       "collect: %d violation(s); first: %s", rep.errors, rep.message);
    return true;
}

bool hx_wb_leak(struct hx_run *r)
{
    hak_flush_thread();
    struct hak_counters c;
    hak_counters_snapshot(&c);
    footprint(r, &c);
    if (c.live_total != r->baseline.live_total) {
        int worst = -1;
        for (int k = 0; k < HAK_NUM_CLASSES && worst < 0; k++)
            if (c.cls[k].live != r->baseline.cls[k].live)
                worst = k;
        return hx_fail(r, "leak", -1, -1, -1, NULL, r->baseline.live_total, c.live_total,
                       "after freeing every block and exiting every thread, %" PRIu64
                       " block(s) still live (first class with a surplus: %d; large: %" PRIu64 ")",
                       c.live_total - r->baseline.live_total, worst, c.large_live);
    }
    /* every program thread has exited or retired its heap by now (the pool's threads
     * outlive the run, their heaps must not) */
    if (c.heaps != r->baseline.heaps)
        return hx_fail(r, "leak", -1, -1, -1, NULL, r->baseline.heaps, c.heaps,
                       "after every thread exited or retired, %" PRIu64 " heap(s) alive; "
                       "%" PRIu64 " before the run", c.heaps, r->baseline.heaps);
    struct hak_heap_report rep;
    rep.message[0] = 0;
    if (!hak_heap_check(&rep))
        return hx_fail(r, "heap_check", -1, -1, -1, (void *)rep.where, 0, (uint64_t)rep.errors,
                       "at exit: %d violation(s); first: %s", rep.errors, rep.message);
    return true;
}
