/* hakmem executor: runs op programs against an allocator and checks them.
 *
 * Public C API (exported from libhakmem.so with default visibility). harness/cdefs.py
 * reads this file as the cffi declarations: keep it to plain declarations, integer
 * #defines and enums.
 *
 * Binary program format (every byte string is a valid program):
 *   byte 0            header: threads = 1 + (b % 8)        (empty input: 1 thread, no ops)
 *                     bit 3 (HAKX_HEADER_SCHEDULED): the first record is the schedule
 *   then 8-byte op records; a trailing partial record is ignored:
 *     r[0] opcode  = r[0] % 12  (enum hakx_opcode)
 *     r[1] thread  = r[1] % threads
 *     r[2] slot    = r[2] % 64
 *     r[3] size selector (r[3] % 8), r[4..6] v0 v1 v2 (v = v0 | v1<<8 | v2<<16):
 *          0 zero   size 0
 *          1 small  1 + v % 1024                            (1 .. 1 KiB)
 *          2 edge   2^e + j*2^e/4 + d, e = 4 + v0 % 21, j = v1 % 4, d = v2 % 3 - 1
 *                   (every class edge 16 B .. 28 MiB, and +-1 around it)
 *          3 mid    1025 + v % 64512                        (1 KiB+1 .. 64 KiB)
 *          4 large  65537 + v % 8323072                     (64 KiB+1 .. 8 MiB)
 *          5 raw    v                                       (0 .. 16 MiB-1)
 *          6 huge   SIZE_MAX - v                            (impossible: overflow edges)
 *          7 pow2   2^(47 + v0 % 17)                        (impossible: > address space)
 *     r[7] aux: aligned_alloc: alignment = 2^(r[7] % 21) (1 B .. 1 MiB);
 *               calloc: count = r[7] % 5 (0 .. 4); ignored otherwise.
 *   A loop record repeats the records after it (its body) on the same threads:
 *     r[2] body    = the next 1 + r[2] % HAKX_MAX_BODY records (fewer at the end)
 *     r[4] e = r[4] % 21; r[5..7] w = r5 | r6<<8 | r7<<16: count = 1 + w % 2^e (1 .. 2^20)
 *   Loops do not nest: a loop record inside a body is ignored. A loop's count is lowered
 *   so that the expanded program never exceeds HAKX_MAX_OPS ops, nor HAKX_MAX_BYTES bytes
 *   of blocks touched, charged per op in the worst case: what it allocates (aligned_alloc:
 *   size + alignment, the most its usable size can exceed the request by), plus for free,
 *   write and realloc the largest block the program ever puts in that slot, nor
 *   HAKX_MAX_HEAVY heavy ops (barrier, thread_exit, collect: milliseconds each under a
 *   sanitizer); a plain op past any budget is dropped: its count is lowered to 0.
 *   A fork record (thread only) forks the process from that program thread; the child
 *   checks what it inherited and reports (fork.c). Only the first HAKX_MAX_FORKS forks of
 *   a run take effect (a fork costs milliseconds: a loop of them would stall a campaign).
 *   A collect record (thread only) calls hak_collect() on that program thread: its caches
 *   flushed, then everything that can be given back to the OS given back at once (the purge
 *   the background thread does after its delay, here at a point the program chooses, so
 *   replays stay deterministic); a no-op on foreign targets.
 *   Fields an opcode does not use decode to 0 (the canonical encoding writes 0).
 *   The schedule record (header bit 3, and at least one record): the seed and depth of
 *   the PCT scheduler (executor/sched.c) that runs the program's concurrent mode on a
 *   schedule-controlled build (hakx_sched_supported()); ignored elsewhere:
 *     r[0..3] seed (little-endian), r[4] depth = 1 + r[4] % HAKX_SCHED_MAX_DEPTH
 *     (depth - 1 priority change points), r[5..7] horizon = 1 + (r5 | r6<<8 | r7<<16):
 *     a change point is a thread's point drawn from its points 1 .. horizon (PCT's k
 *     is threads * horizon; executor/sched.c).
 *
 * The executor runs the expanded program: every loop unrolled in place. A verdict names
 * the failing op of the expanded program (op_index) and of the program as written
 * (program_op: a loop with its body counts as one op).
 *
 * Semantics: see harness/program.py (the Python twin of the decoder).
 */
#ifndef HAKX_H
#define HAKX_H

#include <stddef.h>
#include <stdint.h>

#define HAKX_API __attribute__((visibility("default")))

#define HAKX_SLOTS 64
#define HAKX_MAX_THREADS 8
#define HAKX_RECORD 8
#define HAKX_HEADER 1

/* Bumped when the format or semantics change; hakx_version() returns it, and the harness
 * refuses a library whose version differs from the header it was loaded with. */
#define HAKX_VERSION 8

#define HAKX_MAX_BODY 16           /* records in a loop body */
#define HAKX_MAX_COUNT_LOG2 20     /* a loop runs its body at most 2^20 times */
#define HAKX_MAX_OPS 1048576       /* 2^20: ops of an expanded program (seconds under a sanitizer) */
/* 2^30 bytes of blocks an expanded program touches: a loop of reallocs of 2 MiB blocks ran
 * for minutes (the fuzzer's timeout, kept as a hang) while doing nothing a shorter run does not */
#define HAKX_MAX_BYTES 1073741824
/* barriers, thread exits and collects of an expanded program: a loop of 104k rounds of four
 * barriers on 8 threads (3 ms each under ASan, concurrent, at load 12) ran for many minutes
 * and was kept as a hang by a 10-minute campaign. A thread exit costs 100-200 us under ASan
 * (a real thread ends and one starts): at 4096, loops of exits took 45% of a campaign's time
 * in a 422-input corpus; 1024 bound a run's heavy ops to about 0.2 s */
#define HAKX_MAX_HEAVY 1024
#define HAKX_MAX_FORKS 2           /* fork ops that take effect per run; later ones are skipped */
#define HAKX_HEADER_SCHEDULED 8    /* header bit: the first record is the schedule */
#define HAKX_SCHED_MAX_DEPTH 4     /* PCT depth 1..4: up to 3 priority change points */

enum hakx_opcode {
    HAKX_OP_MALLOC = 0,
    HAKX_OP_CALLOC = 1,
    HAKX_OP_REALLOC = 2,
    HAKX_OP_ALIGNED_ALLOC = 3,
    HAKX_OP_FREE = 4,
    HAKX_OP_WRITE = 5,
    HAKX_OP_THREAD_EXIT = 6,
    HAKX_OP_BARRIER = 7,
    HAKX_OP_FLUSH = 8,
    HAKX_OP_LOOP = 9,
    HAKX_OP_FORK = 10,
    HAKX_OP_COLLECT = 11,
    HAKX_NUM_OPCODES = 12,
};

/* One decoded op. size: the request (calloc: the element size).
 * aux: calloc count, aligned_alloc alignment, else 0. */
struct hakx_op {
    uint8_t op;
    uint8_t thread;
    uint8_t slot;
    uint8_t pad;
    uint32_t aux;
    uint64_t size;
};

enum hakx_mode { HAKX_MODE_LOCKSTEP = 0, HAKX_MODE_CONCURRENT = 1 };

/* A program's schedule; depth 0: none (the program runs free). */
struct hakx_schedule {
    uint32_t seed;
    uint32_t depth;
    uint32_t horizon;
};

/* Test hooks (bit flags): make a white-box check fire on purpose. */
#define HAKX_HOOK_BOUNDARY 1u   /* lie: the first block's base is reported 8 B off */
#define HAKX_HOOK_CONVERSION 2u /* lie: the first block's user pointer is seen 16 B off */
#define HAKX_HOOK_COUNTERS 4u   /* miscount: the executor counts its first block twice */
#define HAKX_HOOK_LEAK 8u       /* forget: the final cleanup drops one block unfreed */
#define HAKX_HOOK_HEAP 16u      /* after the first free, point its first word at itself */
#define HAKX_HOOK_OVERRUN 32u   /* overrun: the first block's pattern is written 16 B past its end */

struct hakx_options {
    int32_t mode;            /* enum hakx_mode */
    int32_t whitebox;        /* 1: white-box checks (hakmem target only) */
    uint32_t repeats;        /* run the program this many times (0 = 1) */
    uint32_t hooks;          /* HAKX_HOOK_* */
    const char *target_path; /* NULL: this library's hak_* functions; else dlopen() path */
    const char *prefix;      /* symbol prefix for target_path ("" for libc names) */
    uint64_t *trace;         /* optional: user pointers of successful allocations, in order */
    uint64_t trace_cap;
    uint64_t trace_len;      /* out */
};

enum hakx_status { HAKX_STATUS_PASS = 0, HAKX_STATUS_FAIL = 1, HAKX_STATUS_ERROR = 2 };

struct hakx_verdict {
    int32_t status;        /* enum hakx_status; ERROR: setup problem (message says) */
    char check[32];        /* stable check name of the first failure ("" on pass) */
    int64_t op_index;      /* op of the expanded program that failed; -1: after the last op */
    int64_t program_op;    /* the same op in the program as written (loop = one op); -1 */
    int32_t thread;        /* program thread (-1: the executor's main thread) */
    int32_t slot;          /* -1 if none */
    uint64_t pointer;      /* user pointer involved (0 if none) */
    uint64_t expected;
    uint64_t observed;
    uint64_t ops_executed; /* effective ops run (all repeats) */
    uint64_t ops_skipped;  /* ops skipped (empty/occupied slot, ...) */
    uint64_t sched_steps;  /* scheduled run: synchronisation points passed (0: not scheduled) */
    uint64_t sched_trace;  /* scheduled run: hash of the sequence of points (thread, kind) */
    /* the allocator's footprint (white-box runs; 0 otherwise): the most bytes it had mapped
     * at a check point, the sum of what it kept mapped after each collect op, and its mmap
     * calls during the run(s). A lockstep run is deterministic, so two builds of one
     * allocator can be compared on them. */
    uint64_t peak_mapped;
    uint64_t collect_mapped;
    uint64_t os_maps;
    char message[512];
};

/* Decodes data[0..len) into the expanded program's ops (up to cap); returns the number of
 * ops it has (may exceed cap) and stores the thread count in *threads. */
HAKX_API size_t hakx_decode(const uint8_t *data, size_t len, struct hakx_op *ops, size_t cap,
                            uint32_t *threads);

/* Runs a program. Copies the input into an exact-size malloc'd buffer first.
 * Returns verdict->status. Never calls back into Python. */
HAKX_API int hakx_run(const uint8_t *data, size_t len, struct hakx_options *opt,
                      struct hakx_verdict *verdict);

/* Stores the schedule of a program in *out (depth 0: it has none); returns out->depth. */
HAKX_API uint32_t hakx_schedule_of(const uint8_t *data, size_t len, struct hakx_schedule *out);

/* 1 if this library is a schedule-controlled build: its concurrent mode runs a program
 * that has a schedule under the deterministic scheduler. */
HAKX_API int hakx_sched_supported(void);

/* HAKX_VERSION of the headers the library was compiled from. */
HAKX_API int hakx_version(void);

#endif
