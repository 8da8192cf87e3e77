/* Executor internals shared by the files of src_c/executor/ (one concept each:
 * decode.c, pattern.c, target.c, intervals.c, verdict.c, whitebox.c, ops.c,
 * plan.c, sync.c, pool.c, lockstep.c, concurrent.c, fork.c, run.c). */
#ifndef HAKX_INTERNAL_H
#define HAKX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "hakx.h"
#include "hakmem_debug.h"
#include "syncpoint.h" /* the allocator's synchronisation points (src_c/alloc/syncpoint.h) */

#define HX_HIDDEN __attribute__((visibility("hidden")))

/* Hot loops (pattern, overlap scan): a wider-vector clone where the CPU has it
 * (ifunc), plain SSE2 otherwise. None under ASan or TSan: the ifunc resolver is
 * instrumented and runs during relocation, before the sanitizer runtime is
 * initialised, which crashes any program that links the library (SIGSEGV in
 * __tsan_func_entry from dl_relocate_object). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HX_NO_CLONES
#endif
#endif
#if defined(__x86_64__) && defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(HX_NO_CLONES)
#define HX_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HX_CLONES
#endif

/* Requests up to this many bytes must succeed; from HX_IMPOSSIBLE on they must fail.
 * The binary format cannot express anything in between (see hakx.h). */
#define HX_REASONABLE_MAX ((uint64_t)1 << 27)
#define HX_IMPOSSIBLE ((uint64_t)1 << 47)
#define HX_MAIN_THREAD HAKX_MAX_THREADS /* index of the executor's own thread in counts */
#define HX_COUNT_SLOTS (HAK_NUM_CLASSES + 1) /* last: large */

/* ---- decode.c */
HX_HIDDEN uint64_t hx_decode_size(uint8_t sel, uint8_t v0, uint8_t v1, uint8_t v2);
/* A loop record's count (before it is lowered to fit HAKX_MAX_OPS). */
HX_HIDDEN uint64_t hx_loop_count(const uint8_t *b);
/* The index, in the program as written (a loop and its body: one op), of expanded op op. */
HX_HIDDEN int64_t hx_program_op(const uint8_t *data, size_t len, int64_t op);

/* ---- target.c: ONE table of function pointers for every target. */
struct hx_target {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    size_t (*usable_size)(void *);
    bool hakmem;       /* the white-box target (this library's hak_* functions) */
    bool strict_zero;  /* malloc(0) must return a pointer */
    bool always16;     /* every pointer is 16-aligned, whatever the size */
    char name[160];
};
HX_HIDDEN const struct hx_target *hx_target_get(const char *path, const char *prefix, char *err,
                                                size_t errlen);
HX_HIDDEN void *hx_target_aligned(const struct hx_target *t, size_t align, size_t size);
HX_HIDDEN bool hx_target_has_aligned(const struct hx_target *t);

/* ---- pattern.c: byte at offset o of a block with seed s is byte (o % 8) of
 * (s + (o / 8) * K); independent of the block length. */
HX_HIDDEN uint64_t hx_seed(unsigned slot, uint64_t op_index, uint32_t repeat);
HX_HIDDEN void hx_fill(void *p, size_t n, uint64_t seed);
/* Returns the first offset in [0, n) that does not match, or (size_t)-1. */
HX_HIDDEN size_t hx_verify(const void *p, size_t n, uint64_t seed);
HX_HIDDEN uint8_t hx_pattern_byte(uint64_t seed, size_t off);
HX_HIDDEN size_t hx_first_nonzero(const void *p, size_t n);

/* ---- intervals.c: the live blocks [start, end), at most one per slot, packed in
 * any order; overlap = any live block intersects (a vectorised scan). */
struct hx_intervals {
    int64_t start[HAKX_SLOTS], end[HAKX_SLOTS]; /* user addresses: < 2^63 */
    int8_t slot_of[HAKX_SLOTS];
    int8_t pos_of[HAKX_SLOTS]; /* per slot: 1 + its index, 0: none */
    int n;
};
/* Inserts as slot's block; on overlap returns the slot of a clashing block and does
 * not insert, else -1. */
HX_HIDDEN int hx_iv_insert(struct hx_intervals *s, uintptr_t start, uintptr_t end, int slot);
HX_HIDDEN void hx_iv_remove(struct hx_intervals *s, int slot);
/* The live block of slot (false: none). */
HX_HIDDEN bool hx_iv_get(const struct hx_intervals *s, int slot, uintptr_t *start, uintptr_t *end);

/* ---- executor state */
struct hx_block {
    void *p;          /* user pointer (NULL with live: a NULL the target may return, e.g. malloc(0)) */
    uint64_t req;     /* requested bytes (calloc: count * size) */
    uint64_t usable;  /* bytes covered by the pattern */
    uint64_t seed;
    uintptr_t base;   /* white-box: BASE reported at allocation */
    int32_t cls;      /* white-box: class index for counting (HAK_NUM_CLASSES: large) */
    uint32_t align;
    bool live;
};

struct hx_run {
    const struct hakx_op *ops;
    size_t nops;
    unsigned nthreads;
    const struct hx_target *tg;
    struct hakx_options *opt;
    bool whitebox;
    int mode;
    uint32_t repeat;
    uint32_t hooks_left;        /* hooks not yet applied */
    /* plan.c */
    uint8_t *effective;         /* per op */
    int64_t *next_on_slot;      /* per op: next effective op on the same slot, or -1 */
    int64_t first_on_slot[HAKX_SLOTS];
    /* ops [0, planned) are decoded and planned; on a cache line of its own (the
     * lockstep workers read it before every op while a planner thread advances it) */
    char pad0[64];
    _Atomic size_t planned;
    char pad1[64];
    /* state */
    struct hx_block slots[HAKX_SLOTS];
    struct hx_intervals iv;
    pthread_mutex_t lock;       /* guards iv, hooks, trace (concurrent mode) */
    bool use_lock;
    int64_t counts[HAKX_MAX_THREADS + 1][HX_COUNT_SLOTS];
    struct hak_counters baseline;
    uint64_t maps_before;       /* os_maps when the first repeat started */
    _Atomic int failed;
    struct hakx_verdict *verdict;
    _Atomic uint64_t executed;
    /* concurrent.c */
    _Atomic int64_t baton[HAKX_SLOTS];
    struct hakx_schedule schedule; /* depth 0: none */
    /* fork.c: children that reported and were still exiting (under lock) */
    pid_t unreaped[HAKX_MAX_FORKS];
    unsigned n_unreaped;
};

/* ---- verdict.c */
HX_HIDDEN bool hx_fail(struct hx_run *r, const char *check, int64_t op, int thread, int slot,
                       const void *ptr, uint64_t expected, uint64_t observed, const char *fmt,
                       ...) __attribute__((format(printf, 9, 10)));
/* An executor problem (not a finding): status HAKX_STATUS_ERROR. */
HX_HIDDEN bool hx_error(struct hx_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool hx_failed(struct hx_run *r)
{
    return atomic_load_explicit(&r->failed, memory_order_acquire) != 0;
}
HX_HIDDEN void hx_lock(struct hx_run *r);
HX_HIDDEN void hx_unlock(struct hx_run *r);
HX_HIDDEN bool hx_take_hook(struct hx_run *r, uint32_t hook);

/* ---- whitebox.c */
/* Checks a fresh block (block_boundary, double_conversion); fills b->base and b->cls. */
HX_HIDDEN bool hx_wb_on_alloc(struct hx_run *r, int64_t op, int thread, int slot,
                              struct hx_block *b);
/* Before free/realloc: the base for the user pointer is still the one recorded. */
HX_HIDDEN bool hx_wb_on_release(struct hx_run *r, int64_t op, int thread, int slot,
                                const struct hx_block *b);
/* Counters + heap walk at a quiescent point. */
HX_HIDDEN bool hx_wb_quiescent(struct hx_run *r, int64_t op, const char *where);
/* Right after a collect op, in lockstep: hak_heap_check_collected. */
HX_HIDDEN bool hx_wb_collected(struct hx_run *r, int64_t op);
HX_HIDDEN bool hx_wb_leak(struct hx_run *r);
HX_HIDDEN int hx_count_index(int size_class);

/* ---- ops.c */
HX_HIDDEN void hx_exec(struct hx_run *r, size_t i, int thread_index);
HX_HIDDEN void hx_cleanup(struct hx_run *r);

/* ---- fork.c: the fork op (op i on program thread t) */
HX_HIDDEN void hx_fork(struct hx_run *r, size_t i, int t);
/* Waits for the children of fork ops that reported before they had exited. */
HX_HIDDEN void hx_fork_reap(struct hx_run *r);

/* ---- plan.c */
HX_HIDDEN int hx_plan(struct hx_run *r);
/* The same in steps: hx_plan_alloc, then hx_plan_range over consecutive ranges
 * (r->ops decoded there); hx_plan_ready waits until op i is planned (the lockstep
 * mode runs while a planner thread decodes and plans ahead of it). */
struct hx_plan_state {
    bool occ[HAKX_SLOTS], started[HAKX_MAX_THREADS];
    int64_t last[HAKX_SLOTS];
    unsigned forks; /* fork ops made effective so far (at most HAKX_MAX_FORKS) */
};
HX_HIDDEN int hx_plan_alloc(struct hx_run *r, struct hx_plan_state *ps);
HX_HIDDEN void hx_plan_range(struct hx_run *r, struct hx_plan_state *ps, size_t from, size_t to);
static inline void hx_plan_ready(struct hx_run *r, size_t i);
HX_HIDDEN bool hx_op_uses_slot(uint8_t op);
/* Total bytes requested (calloc: count * size); true if impossible (overflow or >= HX_IMPOSSIBLE). */
HX_HIDDEN bool hx_op_total(const struct hakx_op *o, uint64_t *total);

/* ---- sync.c: spin, then yield, then futex */
struct hx_wake { _Atomic uint32_t seq; _Atomic int sleeping; };
HX_HIDDEN void hx_wake(struct hx_wake *w);
/* Waits until w->seq != *seen; updates *seen. */
HX_HIDDEN void hx_wait(struct hx_wake *w, uint32_t *seen);
/* Polite busy wait step number n (spin, then sched_yield). */
HX_HIDDEN void hx_backoff(unsigned n);
/* A turn word (lockstep workers): word = go count << 1 | hint. Only the thread
 * whose turn is next spins (it was hinted); every other waiter sleeps on its own
 * futex word, so on few cores the runnable threads are the one running and the
 * one about to run. */
struct hx_turn { _Atomic uint32_t word; _Atomic int sleeping; uint32_t seen; };
HX_HIDDEN void hx_turn_init(struct hx_turn *t);
/* Gives t its turn (and wakes it if it sleeps). */
HX_HIDDEN void hx_turn_go(struct hx_turn *t);
/* Tells t its turn is imminent: it should spin, not sleep (wakes it if it sleeps). */
HX_HIDDEN void hx_turn_hint(struct hx_turn *t);
/* Waits for the next go (spins while hinted, sleeps otherwise). */
HX_HIDDEN void hx_turn_wait(struct hx_turn *t);
/* Waits as one hinted: for a go expected soon (the end of a short run, the next run). */
HX_HIDDEN void hx_turn_wait_soon(struct hx_turn *t);

/* ---- sched.c: the scheduler of scheduled runs (a schedule-controlled build's
 * concurrent mode, for a program with a schedule). In other builds these are empty. */
#if HAK_SCHED
/* Starts scheduling r's program threads (false: r runs free). */
HX_HIDDEN bool hx_sched_begin(struct hx_run *r);
/* Stops (after the run's cleanup), stores the steps and the trace in v, and gives
 * back what the allocator keeps cached (hak_collect). */
HX_HIDDEN void hx_sched_end(struct hakx_verdict *v);
/* An OS thread starts for program thread t: it waits for its turn. */
HX_HIDDEN void hx_sched_enter(int t);
/* t's last OS thread has ended (its driver says so, for it): the turn goes on. */
HX_HIDDEN void hx_sched_leave(int t);
/* The calling thread waits for something at addr: blocked until hx_sched_signal(addr)
 * (unscheduled: busy-wait step n). */
HX_HIDDEN void hx_sched_pause(const void *addr, unsigned n);
HX_HIDDEN void hx_sched_signal(const void *addr);
/* Around fork(): one fork at a time, and the child must not schedule. */
HX_HIDDEN void hx_sched_fork(bool before);
#else
static inline bool hx_sched_begin(struct hx_run *r) { (void)r; return false; }
static inline void hx_sched_end(struct hakx_verdict *v) { (void)v; }
static inline void hx_sched_enter(int t) { (void)t; }
static inline void hx_sched_leave(int t) { (void)t; }
static inline void hx_sched_pause(const void *addr, unsigned n) { (void)addr; hx_backoff(n); }
static inline void hx_sched_signal(const void *addr) { (void)addr; }
static inline void hx_sched_fork(bool before) { (void)before; }
#endif

/* ---- pool.c: OS threads kept across runs, one per program thread index */
enum { HX_JOB_DONE, HX_JOB_EXIT, HX_JOB_EXIT_AGAIN };
/* Held by hakx_run: one run at a time uses the pool. */
extern HX_HIDDEN pthread_mutex_t hx_pool_lock;
/* Runs fn(arg) on pool thread t (started if there is none); false: no thread. fn
 * returns HX_JOB_DONE (the thread waits for its next job), HX_JOB_EXIT (the OS
 * thread ends) or HX_JOB_EXIT_AGAIN (it ends and a fresh one runs fn(arg) again,
 * after joining it). */
HX_HIDDEN bool hx_pool_run(int t, int (*fn)(void *), void *arg);
/* Waits until t's job is done (an ended thread joined); false: a successor could
 * not be started. */
HX_HIDDEN bool hx_pool_wait(int t);

/* ---- lockstep.c / concurrent.c */
HX_HIDDEN void hx_run_lockstep(struct hx_run *r);
HX_HIDDEN void hx_run_concurrent(struct hx_run *r);

static inline void hx_plan_ready(struct hx_run *r, size_t i)
{
    if (i < r->nops)
        for (unsigned n = 0; atomic_load_explicit(&r->planned, memory_order_acquire) <= i; n++)
            hx_backoff(n);
}

#endif
