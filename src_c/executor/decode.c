/* The total decoder: every byte string is a program (layout in hakx.h). */
#include <string.h>

#include "internal.h"

uint64_t hx_decode_size(uint8_t sel, uint8_t v0, uint8_t v1, uint8_t v2)
{
    uint32_t v = (uint32_t)v0 | (uint32_t)v1 << 8 | (uint32_t)v2 << 16;
    switch (sel % 8) {
    case 0:
        return 0;
    case 1:
        return 1 + v % 1024;
    case 2: {
        unsigned e = 4 + v0 % 21;
        uint64_t p = (uint64_t)1 << e;
        return p + (v1 % 4) * (p / 4) + (uint64_t)(v2 % 3) - 1;
    }
    case 3:
        return 1025 + v % 64512;
    case 4:
        return 65537 + v % 8323072;
    case 5:
        return v;
    case 6:
        return UINT64_MAX - v;
    default:
        return (uint64_t)1 << (47 + v0 % 17);
    }
}

/* One record as an op (a loop record is never decoded this way). */
static struct hakx_op decode_one(const uint8_t *b, unsigned nt)
{
    struct hakx_op o = {0};
    o.op = b[0] % HAKX_NUM_OPCODES;
    o.thread = (uint8_t)(b[1] % nt);
    switch (o.op) {
    case HAKX_OP_MALLOC:
    case HAKX_OP_REALLOC:
        o.slot = b[2] % HAKX_SLOTS;
        o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
        break;
    case HAKX_OP_CALLOC:
        o.slot = b[2] % HAKX_SLOTS;
        o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
        o.aux = b[7] % 5;
        break;
    case HAKX_OP_ALIGNED_ALLOC:
        o.slot = b[2] % HAKX_SLOTS;
        o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
        o.aux = (uint32_t)1 << (b[7] % 21);
        break;
    case HAKX_OP_FREE:
    case HAKX_OP_WRITE:
        o.slot = b[2] % HAKX_SLOTS;
        break;
    case HAKX_OP_BARRIER:
        o.thread = 0;
        break;
    default: /* thread_exit, flush, fork, collect: thread only */
        break;
    }
    return o;
}

static bool is_loop(const uint8_t *b)
{
    return b[0] % HAKX_NUM_OPCODES == HAKX_OP_LOOP;
}

uint64_t hx_loop_count(const uint8_t *b)
{
    uint32_t w = (uint32_t)b[5] | (uint32_t)b[6] << 8 | (uint32_t)b[7] << 16;
    return 1 + w % ((uint32_t)1 << (b[4] % (HAKX_MAX_COUNT_LOG2 + 1)));
}

/* Records before the first op: the schedule record, if the header says so. */
static size_t first_record(const uint8_t *data, size_t len)
{
    size_t nrec = len > HAKX_HEADER ? (len - HAKX_HEADER) / HAKX_RECORD : 0;
    return nrec && (data[0] & HAKX_HEADER_SCHEDULED) ? 1 : 0;
}

HAKX_API uint32_t hakx_schedule_of(const uint8_t *data, size_t len, struct hakx_schedule *out)
{
    out->seed = 0;
    out->depth = 0;
    out->horizon = 0;
    if (first_record(data, len)) {
        const uint8_t *b = data + HAKX_HEADER;
        out->seed = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                    (uint32_t)b[3] << 24;
        out->depth = 1 + b[4] % HAKX_SCHED_MAX_DEPTH;
        out->horizon = 1 + ((uint32_t)b[5] | (uint32_t)b[6] << 8 | (uint32_t)b[7] << 16);
    }
    return out->depth;
}

/* What an allocating op is charged: the bytes its block may span, which the executor
 * fills and later verifies; 0 for an impossible request, which fails without touching
 * memory. An aligned block's usable size can exceed its request by about the alignment
 * (hakmem: 298 B at 1 MiB alignment is 440 KiB usable), so it is charged size +
 * alignment; charged the request alone, a loop writing such a block ran for 30 s at the
 * op cap and was kept as a libFuzzer timeout. */
static uint64_t alloc_bytes(const struct hakx_op *o)
{
    if (o->op == HAKX_OP_FREE || o->op == HAKX_OP_WRITE || o->size >= HX_REASONABLE_MAX)
        return 0;
    if (o->op == HAKX_OP_CALLOC)
        return o->size * o->aux;
    return o->op == HAKX_OP_ALIGNED_ALLOC ? o->size + o->aux : o->size;
}

/* One pass over the records as they are written, in order: the state of the walk that
 * expands them. The byte budget is charged per op in the worst case: what it allocates,
 * plus, for an op on the slot's existing block (free and write verify it, realloc copies
 * it), the largest block the program ever puts in that slot. */
struct walk {
    const uint8_t *data;
    size_t nrec, k;
    unsigned nt;
    size_t ops;     /* expanded so far */
    uint64_t bytes; /* charged so far */
    size_t heavy;   /* barriers, thread exits and collects so far */
    uint64_t slot_max[HAKX_SLOTS];
};

static bool is_slotted(uint8_t op)
{
    return op <= HAKX_OP_WRITE;
}

/* Ops that cost milliseconds, not microseconds: a barrier (every thread hands over, then
 * a heap walk), a thread exit (a thread ends and its heap is abandoned), a collect (a full
 * purge). */
static bool is_heavy(uint8_t op)
{
    return op == HAKX_OP_BARRIER || op == HAKX_OP_THREAD_EXIT || op == HAKX_OP_COLLECT;
}

static void walk_init(struct walk *w, const uint8_t *data, size_t len)
{
    memset(w, 0, sizeof *w);
    w->data = data;
    w->nt = len ? 1u + data[0] % HAKX_MAX_THREADS : 1u;
    w->nrec = len > HAKX_HEADER ? (len - HAKX_HEADER) / HAKX_RECORD : 0;
    w->k = first_record(data, len);
    for (size_t r = w->k; r < w->nrec; r++) {
        const uint8_t *b = data + HAKX_HEADER + r * HAKX_RECORD;
        if (is_loop(b))
            continue;
        struct hakx_op o = decode_one(b, w->nt);
        uint64_t n = alloc_bytes(&o);
        if (is_slotted(o.op) && n > w->slot_max[o.slot])
            w->slot_max[o.slot] = n;
    }
}

static uint64_t op_cost(const struct walk *w, const struct hakx_op *o)
{
    bool on_block = o->op == HAKX_OP_FREE || o->op == HAKX_OP_WRITE || o->op == HAKX_OP_REALLOC;
    return alloc_bytes(o) + (on_block ? w->slot_max[o->slot] : 0);
}

/* The program's items: a plain op, or a loop (its body: the records after it). The one
 * walk every decoding shares, so the expansion and the program-op index agree. */
struct item {
    size_t rec;      /* first record (the loop record itself for a loop) */
    size_t nbody;    /* loop: records after rec in its body; 0 for a plain op */
    size_t ops;      /* loop: non-loop records in its body; 1 for a plain op */
    uint64_t count;  /* times it runs, lowered to keep within HAKX_MAX_OPS, _BYTES and _HEAVY */
};

static bool next_item(struct walk *w, struct item *it)
{
    if (w->k >= w->nrec)
        return false;
    const uint8_t *b = w->data + HAKX_HEADER + w->k * HAKX_RECORD;
    it->rec = w->k;
    it->nbody = 0;
    it->count = 1;
    if (is_loop(b)) {
        size_t m = 1 + b[2] % HAKX_MAX_BODY;
        it->nbody = m < w->nrec - w->k - 1 ? m : w->nrec - w->k - 1;
        it->count = hx_loop_count(b);
    }
    it->ops = 0;
    uint64_t cost = 0;
    size_t heavy = 0;
    for (size_t j = it->nbody ? 1 : 0; j <= it->nbody; j++) {
        const uint8_t *r = b + j * HAKX_RECORD;
        if (is_loop(r))
            continue;
        struct hakx_op o = decode_one(r, w->nt);
        it->ops++;
        cost += op_cost(w, &o);
        heavy += is_heavy(o.op);
    }
    size_t room = HAKX_MAX_OPS - w->ops;
    if (it->ops && it->count > room / it->ops)
        it->count = room / it->ops;
    uint64_t budget = HAKX_MAX_BYTES - w->bytes;
    if (cost && it->count > budget / cost)
        it->count = budget / cost;
    if (heavy && it->count > (HAKX_MAX_HEAVY - w->heavy) / heavy)
        it->count = (HAKX_MAX_HEAVY - w->heavy) / heavy;
    w->ops += it->ops * it->count;
    w->bytes += cost * it->count;
    w->heavy += heavy * it->count;
    w->k += 1 + it->nbody;
    return true;
}

HAKX_API size_t hakx_decode(const uint8_t *data, size_t len, struct hakx_op *ops, size_t cap,
                            uint32_t *threads)
{
    struct walk w;
    walk_init(&w, data, len);
    if (threads)
        *threads = w.nt;
    size_t n = 0;
    struct item it;
    while (next_item(&w, &it)) {
        size_t first = n;
        for (size_t j = it.nbody ? 1 : 0; j <= it.nbody && it.count; j++) {
            const uint8_t *b = data + HAKX_HEADER + (it.rec + j) * HAKX_RECORD;
            if (is_loop(b))
                continue;
            if (n < cap)
                ops[n] = decode_one(b, w.nt);
            n++;
        }
        /* the other iterations copy the first one */
        for (uint64_t c = 1; c < it.count && it.ops; c++, n += it.ops)
            if (n + it.ops <= cap)
                memcpy(&ops[n], &ops[first], it.ops * sizeof *ops);
    }
    return n;
}

int64_t hx_program_op(const uint8_t *data, size_t len, int64_t op)
{
    struct walk w;
    walk_init(&w, data, len);
    int64_t index = 0;
    struct item it;
    if (op < 0)
        return -1;
    for (; next_item(&w, &it); index++)
        if ((uint64_t)op < w.ops)
            return index;
    return -1;
}

HAKX_API int hakx_version(void)
{
    return HAKX_VERSION;
}
