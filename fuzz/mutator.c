/* Structure-aware mutation of binary op programs: libFuzzer's custom mutator.
 *
 * libFuzzer's byte mutations are blind to the 8-byte op records of
 * harness/program.py: a random insertion or erasure shifts every later record,
 * and "allocate this class N more times" takes N lucky multi-byte edits. The
 * allocator's bugs live exactly there: a refill that crosses into a second slab
 * needs a slab's worth of same-class allocations; a slab released under a
 * pending remote free needs a full slab freed from two threads. So half of the
 * mutations here act on whole records; the other half are libFuzzer's own
 * (LLVMFuzzerMutate), which keep finding byte-level values: sizes, edges, and
 * compares traced by -fsanitize=fuzzer-no-link.
 *
 * Why C and a preloaded library: libFuzzer binds its weak reference to
 * LLVMFuzzerCustomMutator when its own library is loaded. Under asan the
 * campaign preloads libFuzzer (merged into ASan's runtime), long before
 * atheris could register a Python mutator, so harness.fuzz preloads this
 * library right after it instead. It must not depend on Python: the fork
 * mode's shell commands run with the same LD_PRELOAD.
 *
 * Record mutations keep the header byte and record alignment:
 *   repeat   a record copied 1-16 times after itself, each copy on the next slot
 *   segment  a run of records copied elsewhere, slots shifted by one offset
 *   erase    one record or a run removed
 *   swap     two records exchanged
 *   size     one record's size selector and value copied onto another
 *   thread   one record moved to another thread (a local free becomes remote)
 *   insert   a structural op (barrier, flush, thread exit, collect, fork) inserted
 *   orphan   a thread exit inserted after an op of its thread, and each later free of a
 *            block that thread allocated before it given to a thread picked at random (its
 *            successor included): blocks that outlive their thread come back remotely into
 *            its abandoned slabs, which adoption and the purge's reclaim then meet with
 *            frees pending (a thread exit alone leaves the frees where they were: on the
 *            exiting thread's successor, or on one other thread after a `thread` move)
 *   loop     a loop record inserted before a run of 1-4 records, which becomes its body:
 *            the count up to 2^20, skewed small (most loops short, some long enough
 *            to refill a class thousands of times); an existing loop's count rescaled
 *   schedule a schedule record given to a program without one (header bit 3), or its
 *            seed re-rolled, its depth or horizon changed: on a schedule-controlled build a
 *            concurrent program runs under the PCT scheduler, and a new seed is a new
 *            interleaving of the same ops (hakx.h)
 * A program's schedule record is not an op: the other mutations act on the records
 * after it. Every choice comes from `seed`: a run stays reproducible with -seed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hakx.h" /* the format's constants: one definition, the executor's */

enum { HEADER = HAKX_HEADER, RECORD = HAKX_RECORD, SLOTS = HAKX_SLOTS, MAX_REPEAT = 16 };
enum { SCHEDULED = HAKX_HEADER_SCHEDULED };
enum { OP_BARRIER = HAKX_OP_BARRIER, OP_FLUSH = HAKX_OP_FLUSH, OP_THREAD_EXIT = HAKX_OP_THREAD_EXIT,
       OP_FORK = HAKX_OP_FORK, OP_COLLECT = HAKX_OP_COLLECT, OP_LOOP = HAKX_OP_LOOP,
       OP_FREE = HAKX_OP_FREE };

__attribute__((weak)) size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

struct rng {
    uint64_t s;
    unsigned threads; /* the program's (its header's): which records share a thread */
};

static uint32_t next(struct rng *r)
{
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}

static size_t below(struct rng *r, size_t n)
{
    return n ? next(r) % n : 0;
}

static uint8_t *rec(uint8_t *data, size_t i)
{
    return data + HEADER + i * RECORD;
}

/* Opens a gap of `k` records at index `at` (the caller made sure they fit). */
static void open_gap(uint8_t *data, size_t n, size_t at, size_t k)
{
    memmove(rec(data, at + k), rec(data, at), (n - at) * RECORD);
}

static size_t repeat(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    size_t i = below(r, n), k = 1 + below(r, MAX_REPEAT);
    if (k > room)
        k = room;
    open_gap(data, n, i + 1, k);
    for (size_t c = 1; c <= k; c++) {
        memcpy(rec(data, i + c), rec(data, i), RECORD);
        rec(data, i + c)[2] = (uint8_t)((rec(data, i)[2] + c) % SLOTS);
    }
    return n + k;
}

static size_t segment(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    uint8_t seg[MAX_REPEAT * RECORD];
    size_t a = below(r, n), k = 1 + below(r, MAX_REPEAT);
    if (k > n - a)
        k = n - a;
    if (k > room)
        k = room;
    uint8_t shift = (uint8_t)below(r, SLOTS);
    memcpy(seg, rec(data, a), k * RECORD);
    for (size_t c = 0; c < k; c++)
        seg[c * RECORD + 2] = (uint8_t)((seg[c * RECORD + 2] + shift) % SLOTS);
    size_t at = below(r, n + 1);
    open_gap(data, n, at, k);
    memcpy(rec(data, at), seg, k * RECORD);
    return n + k;
}

static size_t erase(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    (void)room;
    size_t a = below(r, n), k = below(r, 10) < 7 ? 1 : 2 + below(r, 7);
    if (k > n - a)
        k = n - a;
    memmove(rec(data, a), rec(data, a + k), (n - a - k) * RECORD);
    return n - k;
}

static size_t swap(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    (void)room;
    uint8_t tmp[RECORD];
    uint8_t *x = rec(data, below(r, n)), *y = rec(data, below(r, n));
    memcpy(tmp, x, RECORD);
    memcpy(x, y, RECORD);
    memcpy(y, tmp, RECORD);
    return n;
}

static size_t size(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    (void)room;
    memmove(rec(data, below(r, n)) + 3, rec(data, below(r, n)) + 3, RECORD - 3);
    return n;
}

static size_t thread(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    (void)room;
    rec(data, below(r, n))[1] = (uint8_t)below(r, HAKX_MAX_THREADS);
    return n;
}

static size_t insert(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    /* a fork costs 5 ms (release) to 20 ms (asan) per run: one insert in eleven; a
     * collect (a purge: madvise and munmap) about as rare */
    static const uint8_t structural[] = {OP_BARRIER, OP_FLUSH, OP_THREAD_EXIT, OP_BARRIER,
                                         OP_FLUSH, OP_THREAD_EXIT, OP_BARRIER, OP_FLUSH,
                                         OP_THREAD_EXIT, OP_COLLECT, OP_FORK};
    (void)room;
    size_t at = below(r, n + 1);
    open_gap(data, n, at, 1);
    memset(rec(data, at), 0, RECORD);
    rec(data, at)[0] = structural[below(r, sizeof structural)];
    rec(data, at)[1] = (uint8_t)below(r, HAKX_MAX_THREADS);
    return n + 1;
}

static unsigned opcode(const uint8_t *b)
{
    return b[0] % HAKX_NUM_OPCODES;
}

/* The op puts a block into its slot (as decode.c reads records). */
static bool allocates(const uint8_t *b)
{
    return opcode(b) < OP_FREE;
}

static size_t orphan(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    (void)room;
    size_t at = below(r, n);
    unsigned nt = r->threads, t = rec(data, at)[1] % nt;
    bool held[SLOTS] = {false}; /* slots holding a block thread t allocated */
    for (size_t i = 0; i <= at; i++) {
        const uint8_t *b = rec(data, i);
        if (allocates(b))
            held[b[2] % SLOTS] = b[1] % nt == t;
        else if (opcode(b) == OP_FREE)
            held[b[2] % SLOTS] = false;
    }
    open_gap(data, n, at + 1, 1);
    uint8_t *x = rec(data, at + 1);
    memset(x, 0, RECORD);
    x[0] = OP_THREAD_EXIT;
    x[1] = (uint8_t)t;
    for (size_t i = at + 2; i <= n; i++) {
        uint8_t *b = rec(data, i);
        unsigned slot = b[2] % SLOTS;
        if (opcode(b) == OP_FREE && held[slot])
            b[1] = (uint8_t)below(r, nt);
        if (allocates(b) || opcode(b) == OP_FREE)
            held[slot] = false;
    }
    return n + 1;
}

/* A loop count field: e = log2 bound, w below it (hakx.h: count = 1 + w % 2^e). The bound
 * is skewed small (e below a pick below a uniform pick): long loops cost their length in
 * every run (half of all loops stay under 3 iterations, about one in 75 passes 4096), and
 * a campaign's reach is its executions per second; a few thousand iterations already
 * cross many refills. */
static void loop_count(uint8_t *b, struct rng *r)
{
    unsigned e = below(r, below(r, below(r, HAKX_MAX_COUNT_LOG2 + 1) + 1) + 1);
    uint32_t w = next(r) & (((uint32_t)1 << e) - 1);
    b[4] = (uint8_t)e;
    b[5] = (uint8_t)w;
    b[6] = (uint8_t)(w >> 8);
    b[7] = (uint8_t)(w >> 16);
}

static size_t loop(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    for (size_t i = 0; i < n; i++)
        if (rec(data, i)[0] % HAKX_NUM_OPCODES == OP_LOOP && below(r, 2) == 0) {
            loop_count(rec(data, i), r);
            return n;
        }
    (void)room;
    size_t at = below(r, n);
    open_gap(data, n, at, 1);
    uint8_t *b = rec(data, at);
    memset(b, 0, RECORD);
    b[0] = OP_LOOP;
    b[2] = (uint8_t)below(r, 4); /* body: the next 1-4 records */
    loop_count(b, r);
    return n + 1;
}

/* A schedule: seed, depth (1 + b % HAKX_SCHED_MAX_DEPTH), horizon 16 .. 2048 points
 * (PCT's k: most programs pass tens to hundreds of points). */
static void schedule_record(uint8_t *b, struct rng *r, unsigned what)
{
    if (what & 1) {
        uint32_t seed = next(r);
        memcpy(b, &seed, 4);
    }
    if (what & 2)
        b[4] = (uint8_t)below(r, HAKX_SCHED_MAX_DEPTH);
    if (what & 4) {
        uint32_t h = (16u << below(r, 8)) - 1;
        b[5] = (uint8_t)h;
        b[6] = (uint8_t)(h >> 8);
        b[7] = 0;
    }
}

/* Gives a program its schedule record, or changes the one it has; returns the number
 * of records. */
static size_t schedule(uint8_t *data, size_t n, size_t room, struct rng *r)
{
    /* a header with the bit but no record (an input cut at max_size) has no schedule to
     * change: writing one there ran past the buffer */
    if ((data[0] & SCHEDULED) && n) {
        static const unsigned what[] = {1, 1, 2, 4}; /* mostly a new seed */
        schedule_record(rec(data, 0), r, what[below(r, 4)]);
        return n;
    }
    if (!room)
        return n;
    open_gap(data, n, 0, 1);
    data[0] |= SCHEDULED;
    schedule_record(rec(data, 0), r, 7);
    return n + 1;
}

typedef size_t (*mutation)(uint8_t *data, size_t n, size_t room, struct rng *r);

static const struct {
    mutation fn;
    int grows; /* needs room for one more record */
} mutations[] = {
    {repeat, 1}, {repeat, 1}, {segment, 1}, {erase, 0}, {swap, 0},
    {size, 0},   {thread, 0}, {insert, 1},  {loop, 1},  {orphan, 1},
};

/* One record-level mutation of data[0, len) within max_size bytes; returns the
 * new length (header plus whole records). Exported for the harness's tests. */
size_t hakmem_mutate_records(uint8_t *data, size_t len, size_t max_size, unsigned seed)
{
    struct rng r = {seed * 0x9E3779B97F4A7C15ull + 1, 1};
    if (max_size < HEADER)
        return 0;
    if (len == 0)
        data[0] = 0;
    r.threads = 1u + data[0] % HAKX_MAX_THREADS;
    size_t n = len > HEADER ? (len - HEADER) / RECORD : 0;
    size_t cap = (max_size - HEADER) / RECORD;
    if (n > cap)
        n = cap;
    size_t room = cap - n;
    size_t nm = sizeof mutations / sizeof mutations[0];
    /* one mutation in ten is of the schedule */
    if (below(&r, 10) == 0)
        return HEADER + schedule(data, n, room, &r) * RECORD;
    /* the op records: after the schedule record, if any (ops sees them from its own
     * header position, the byte before them, which no mutation reads or writes) */
    size_t first = (data[0] & SCHEDULED) && n ? 1 : 0;
    uint8_t *ops = data + first * RECORD;
    size_t nops = n - first;
    if (nops == 0) {
        if (room)
            nops = insert(ops, nops, room, &r);
        return HEADER + (first + nops) * RECORD;
    }
    size_t pick;
    do
        pick = below(&r, nm);
    while (mutations[pick].grows && !room);
    nops = mutations[pick].fn(ops, nops, room, &r);
    return HEADER + (first + nops) * RECORD;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t len, size_t max_size, unsigned seed)
{
    if (LLVMFuzzerMutate && (seed & 1))
        return LLVMFuzzerMutate(data, len, max_size);
    return hakmem_mutate_records(data, len, max_size, seed >> 1);
}
