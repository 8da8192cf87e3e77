/* The seeded-bug catalogue.
 *
 * Each entry is a historical bug of hakmem's ancestor, planted in the code path
 * it belongs to and compiled in only when its build asks for it
 * (`python -m harness.build VARIANT --inject NAME` passes -DHAK_INJECT_<NAME>=1).
 * A clean build has every entry at 0, so the planted branch is dead code that
 * the compiler removes. Each entry says where it lives, what it breaks and
 * which check or sanitizer should see it.
 */
#ifndef HAKMEM_INJECT_H
#define HAKMEM_INJECT_H

#ifndef HAK_INJECT_NAME
#define HAK_INJECT_NAME ""
#endif

/* double_conversion (free.c): free converts an aligned interior USER pointer
 * to its BASE, then subtracts the USER-BASE offset once more, so the block
 * pushed back is off by the padding and lands in the previous block.
 * Seen by: block_boundary / overlap / integrity, heap_check, ASan. */
#ifndef HAK_INJECT_DOUBLE_CONVERSION
#define HAK_INJECT_DOUBLE_CONVERSION 0
#endif

/* stale_refill (heap.c): a refill that exhausts its slab and moves on to
 * another still names the slab it started with, so the batch's `used` is
 * credited to the old slab (and `active` to the old slab's superslab when the
 * new slab lies in another one). Seen by: heap_check (used + free != carved,
 * active != sum of used), counters; later frees can underflow the new slab's
 * `used` and release it while blocks are live (overlap). */
#ifndef HAK_INJECT_STALE_REFILL
#define HAK_INJECT_STALE_REFILL 0
#endif

/* missing_used_add (slab.c): a batch refill that takes blocks from the slab's
 * free list adds only the freshly carved ones to `used`.
 * Seen by: heap_check (used + free != carved), counters. */
#ifndef HAK_INJECT_MISSING_USED_ADD
#define HAK_INJECT_MISSING_USED_ADD 0
#endif

/* guess_foreign (free.c): a pointer the registry does not know (a large
 * block, or not ours) is looked up by reading a "superslab header" at its
 * 2 MiB-aligned-down address instead of being rejected.
 * Seen by: signal:SIGSEGV (the guessed address is usually unmapped), ASan. */
#ifndef HAK_INJECT_GUESS_FOREIGN
#define HAK_INJECT_GUESS_FOREIGN 0
#endif

/* class_overhead (aligned.c): the aligned path sizes its block for the request
 * alone, forgetting the alignment padding it adds in front, so at a class edge
 * the block ends before the request does and spills into the next block.
 * Seen by: usable_size, overlap / integrity, ASan. */
#ifndef HAK_INJECT_CLASS_OVERHEAD
#define HAK_INJECT_CLASS_OVERHEAD 0
#endif

/* remote_plain_push (remote.c): the remote-free push is a plain load and store
 * instead of a CAS, losing blocks when two threads free into one slab at once.
 * Seen by: sanitizer:data-race (TSan), counters / leak under concurrency. */
#ifndef HAK_INJECT_REMOTE_PLAIN_PUSH
#define HAK_INJECT_REMOTE_PLAIN_PUSH 0
#endif

/* eager_release (heap.c): a slab counts as empty once its only used blocks are
 * pending on its remote list, and is handed back to the pool while that list
 * still holds them. Seen by: heap_check (superslab active drifts), counters,
 * block_boundary / overlap when a late push lands in the reused slab. */
#ifndef HAK_INJECT_EAGER_RELEASE
#define HAK_INJECT_EAGER_RELEASE 0
#endif

/* drain_counter (remote.c): draining remote frees moves the blocks but never
 * lowers remote_pending, so counters drift under cross-thread traffic.
 * Seen by: heap_check (remote list != remote_pending), counters. */
#ifndef HAK_INJECT_DRAIN_COUNTER
#define HAK_INJECT_DRAIN_COUNTER 0
#endif

/* fork_unlocked (heap.c): fork_prepare takes only the global locks, not each
 * thread heap's own lock, and the child gives back the other threads' heaps
 * without their locks: the fork bug hakmem shipped until issue 13. A thread
 * inside a slow path (a cache flush half done, a slab between two lists, an
 * adoption) when another thread forks leaves the child a half-updated heap,
 * which it flushes and abandons again. Seen by: the fork stress test
 * (tests/fork/fork_stress.c: children fail hak_heap_check -- a block free
 * twice, a slab on no list, a cached block of a slab it does not own -- or
 * crash, or deadlock on a heap lock a dead thread held), fork:heap_check once
 * the program fork op exists. */
#ifndef HAK_INJECT_FORK_UNLOCKED
#define HAK_INJECT_FORK_UNLOCKED 0
#endif

/* early_purge (purge.c, heap.c): the purge takes a slab of an idle heap
 * whose used blocks are all pending on its remote list for an empty one and
 * returns its pages (madvise DONTNEED) before draining it: the pending
 * blocks' links read back as zero, the drain keeps only the first, and the
 * others are lost for good (counted used forever). Seen by: counters / leak
 * (live blocks that nobody holds), tests/test_purge.py's seeded check; under
 * ASan nothing (the pages are still mapped). */
#ifndef HAK_INJECT_EARLY_PURGE
#define HAK_INJECT_EARLY_PURGE 0
#endif

/* refill_drift (heap.c): the ancestor's periodic bulk refill statistics.
 * Every 256th slow path of a heap counts the block the refill hands straight
 * to the caller a second time in its slab's `used`, so `used` drifts up by
 * one per 256 slow paths. Only a long-lived thread gets there: a heap starts
 * at 0 slow paths, thread churn gives each new thread a reset heap, and a
 * refill moves a batch of up to half a cache (33-129 blocks), so the first
 * drift needs tens of thousands of mallocs in one thread.
 * Seen by: heap_check (used + free != carved), counters; the slab is never
 * released again (a leak). */
#ifndef HAK_INJECT_REFILL_DRIFT
#define HAK_INJECT_REFILL_DRIFT 0
#endif

/* heap_id_recycle (heap.c): abandonment clears a slab's owner but leaves its
 * unit keys naming the exiting heap ("the adopter republishes them anyway").
 * The heap is recycled with its id for the next new thread, whose frees of
 * blocks in those abandoned slabs then match its own key: it caches them on
 * the fast path as their owner, while the slab is on the abandoned list (and
 * maybe adopted by another thread). Needs thread churn: a block allocated
 * before a thread_exit and freed after it. Seen by: heap_check (a cached block
 * of a slab the heap does not own), counters; overlap once the slab has two
 * users. */
#ifndef HAK_INJECT_HEAP_ID_RECYCLE
#define HAK_INJECT_HEAP_ID_RECYCLE 0
#endif

#endif
