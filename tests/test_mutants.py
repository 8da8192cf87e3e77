"""The mutation-score tool (harness.mutants): generation, sampling, resumable state, the
report, and every classification seen to fire on a hand-written mutant of remote.c (real
builds, fast tests and a short campaign; no universalmutator numbering is relied on)."""

from __future__ import annotations

import json

import pytest

import harness.mutants as hm
from harness import PROJECT_ROOT
from harness.errors import UsageError

REMOTE = (PROJECT_ROOT / "src_c" / "alloc" / "remote.c").read_text()

# each (old, new) must occur exactly once in remote.c
MUTATIONS = {
    # not C any more
    "no_compile": ("uint32_t n = 1;", "uint32_t n = ;"),
    # every remote free counts twice: remote_pending never returns to 0
    "killed_fast": ("+ one + (uintptr_t)block", "+ one + one + (uintptr_t)block"),
    # the owner's drain waits for a remote free that never comes: the first flush hangs
    "timeout": ("if (!head)\n        return 0;",
                "while (!head)\n        head = hak_remote_word_head(atomic_load_explicit("
                "&slab->remote, memory_order_acquire));"),
    # the purge is told of every remote free, not only a list's first (remote-135): more
    # wake-ups, the same memory given back; no test counts wake-ups (a real blind spot, of
    # cost only). The misuse report's wording, this case until the misuse cases read it,
    # is now killed by them
    "survived": ("    if (HAK_UNLIKELY(!word)) {", "    if (1) {"),
    # `if (!0)` commented out: the same object code, never built or tested
    "equivalent": ("    if (!HAK_INJECT_DRAIN_COUNTER)\n",
                   "    /*if (!HAK_INJECT_DRAIN_COUNTER)*/\n"),
}


def _mutant(tmp_path, name, old, new, index):
    assert REMOTE.count(old) == 1, old
    path = tmp_path / f"remote.mutant.{index}.c"
    path.write_text(REMOTE.replace(old, new))
    return hm.Mutant("remote.c", index, path)


@pytest.mark.parametrize("expected", sorted(MUTATIONS))
def test_each_classification_fires(tmp_path, monkeypatch, expected):
    monkeypatch.setattr(hm, "REPLAY_TIMEOUT", 5.0)  # a hang is seen in 5 s, not 30
    index = 90000 + sorted(MUTATIONS).index(expected)
    m = _mutant(tmp_path, expected, *MUTATIONS[expected], index)
    r = hm.run_mutant(m, tmp_path / "out", budget=3, seed=1, minimize_time=10)
    assert r.status == expected, r
    assert "-" in r.diff and "+" in r.diff and r.file == "remote.c"
    if expected == "killed_fast":
        assert r.check and r.by
    if expected == "timeout":
        assert r.check == "timeout"
    assert not (hm.SCRATCH / f"mutant-{m.id}").exists()  # scratch tree removed
    assert (PROJECT_ROOT / "src_c" / "alloc" / "remote.c").read_text() == REMOTE


#: blind spots the fast tests now close: (survivor, file of src_c/alloc, a text of it, its
#: mutation, the fast test that kills it, the check that fires)
CLOSED = {
    # the push after a full cache's flush moves the top the wrong way: it survived 6 random
    # programs and a 30 s campaign; the cache-fill programs kill it
    "heap-1500": ("heap.c", "    *tc->top++ = block;\n    hak_heap_unlock(heap);", "top++",
                  "top--", "cache-fill program", None),
    # the purge reclaims abandoned slabs only when there are none: it survived a 60 s
    # campaign; the heap walk after the reclaim programs' collect finds the emptied slabs
    "heap-2662": ("heap.c",
                  "        if (!atomic_load_explicit(&abandoned_count, memory_order_relaxed))\n",
                  "(!atomic", "(atomic", "reclaim program", "heap_check"),
    # footprint policy, which no correctness check sees (the placement survivors' class):
    # the aligned map keeps its over-mapped tail, so more stays mapped after a collect
    "footprint-kept": ("os.c", "    if (tail)\n        hak_os_unmap", "if (tail)", "if (0)",
                       "cache-fill program", "footprint:kept"),
    # every large block maps a page more than it needs
    "footprint-mapped": ("large.c", "(size_t)HAK_LARGE_HEADER + pad + PAGE - 1", "PAGE - 1",
                         "PAGE + PAGE - 1", "random program", "footprint:mapped"),
    # an emptied superslab is never cached: the next refill maps a fresh one
    "footprint-maps": ("superslab.c", "        if (cached_count < HAK_SS_CACHE_MAX) {",
                       "HAK_SS_CACHE_MAX", "0", "cache-fill program", "footprint:maps"),
    # the purge thread does not re-arm after a pass that left work (the wake-up survivors'
    # class): it parks with memory still to give back; no program runs the purge thread,
    # the purge scenarios do
    "purge-rearm": ("purge.c", "        if (purge_pass(delay, false))\n            atomic_store_"
                    "explicit(&pending, true, memory_order_relaxed);\n        pthread_mutex_lock("
                    "&purge_mutex);\n    }", "if (purge_pass", "if (!purge_pass",
                    "purge scenario", "purge:rss"),
    # a thread allocating in its TLS destructor after its exit gets no exit heap (heap-1548,
    # a survivor, and heap-2339 before it): malloc returns NULL there; only a C scenario
    # has TLS destructors that allocate
    "heap-1548": ("heap.c", "        if (HAK_UNLIKELY(tl_exited))\n            return exit_heap_"
                  "take", "HAK_UNLIKELY(tl_exited)", "0==1", "exit scenario", "exit:crash"),
    # every heap gets serial 0 (heap-438, a survivor): hak_block_info then names no owner
    # for a block its thread just allocated, which the white-box check after each
    # allocation now sees
    "heap-438": ("heap.c", "    heap->serial = ++heap_serial;", "++heap_serial",
                 "-+heap_serial", "regression", "block_boundary"),
    # the purge marks dirty units clean without madvising them (superslab-1391's class: a
    # superslab kept in use by a few live blocks gives its freed units back only this way)
    "purge-madvise": ("superslab.c", "        madvise((void *)from, to - from, MADV_DONTNEED);\n"
                      "        u = end;", "        madvise((void *)from, to - from, "
                      "MADV_DONTNEED);\n", "", "purge scenario sparse", "purge:rss"),
    # a purge takes its superslab's dirty units off the pool's count by a remainder instead
    # of a difference (superslab-1434, a survivor): a collect purges every superslab, which
    # leaves the count right by chance; the purge thread's passes, which purge some of them,
    # leave it wrong, and only the walk after the purge scenarios sees that
    "superslab-1434": ("superslab.c", "    dirty_total -= (unsigned)__builtin_popcount(dirty);",
                       "-=", "%=", "purge scenario", "purge:heap_check"),
    # out of memory (the class no program reaches: an address-space limit is no use under
    # ASan): a refill that found no slab goes on with none (heap-1225, a survivor), and a
    # superslab the OS refused is carved (superslab-924, a survivor); the out-of-memory
    # scenario refuses each OS request in turn
    "heap-1225": ("heap.c",
                  "            slab = acquire_slab(heap, size_class);\n        if (!slab)",
                  "if (!slab)", "if (0==1)", "out-of-memory scenario", "oom:child"),
    "superslab-924": ("superslab.c", "        if (ss)\n            slab = carve_slab(ss, HAK_FIRST",
                      "        if (ss)\n", "", "out-of-memory scenario", "oom:child"),
    # a foreign pointer's free goes unreported on the debug build (free-219, a survivor):
    # the misuse reports exist there only, and each mutant now gets a debug build
    "free-219": ("free.c", '    hak_report_misuse("free of a pointer hakmem does not own", ptr);',
                 "    hak_report", "    (void)ptr; //", "misuse case", "misuse:foreign_pointer"),
    # hak_retire_thread does nothing (as survivors heap-2361 and heap-2371 did): the pool's
    # threads keep their heaps across runs, and the end of every run now counts heaps
    "retire-nothing": ("heap.c", "    if (hak_tl_heap == &hak_heap_empty)\n        return;\n"
                  "    pthread_setspecific", "==", "!=", "regression", "leak"),
}


@pytest.fixture(scope="module")
def reference():
    """The clean build's footprints, once for every mutant of this module."""
    return hm.footprints(hm.build(hm.BUILD), 1)


@pytest.mark.parametrize("survivor", sorted(CLOSED))
def test_blind_spot_is_closed(tmp_path, reference, survivor):
    file, old, a, b, by, check = CLOSED[survivor]
    text = (PROJECT_ROOT / "src_c" / "alloc" / file).read_text()
    assert text.count(old) == 1
    path = tmp_path / f"{file[:-2]}.mutant.{survivor}.c"
    path.write_text(text.replace(old, old.replace(a, b)))
    index = 90030 + sorted(CLOSED).index(survivor)
    r = hm.run_mutant(hm.Mutant(file, index, path), tmp_path / "out", budget=3, seed=1,
                      minimize_time=10, reference=reference)
    assert r.status == "killed_fast" and r.by.startswith(by), r
    assert check is None or r.check == check, r


def test_footprint_is_deterministic_and_only_more_is_worse(reference):
    again = hm.footprints(hm.build(hm.BUILD), 1)
    assert again == reference  # lockstep runs: the same figures every time
    some = next(iter(reference.values()))
    assert some.peak_mapped > 0 and some.os_maps > 0
    less = hm.Footprint(some.peak_mapped - 1, max(0, some.collect_mapped - 1), 0)
    assert less.worse(some) == "" and some.worse(some) == ""
    assert some.worse(less) in ("footprint:kept", "footprint:mapped")


def test_a_mutant_the_build_verification_rejects_is_killed(tmp_path):
    src = PROJECT_ROOT / "src_c" / "alloc" / "introspect.c"
    text = src.read_text()
    assert text.count("return HAK_VARIANT_NAME;") == 1
    path = tmp_path / "introspect.mutant.1.c"
    path.write_text(text.replace("return HAK_VARIANT_NAME;", 'return "";'))
    r = hm.run_mutant(hm.Mutant("introspect.c", 90020, path), tmp_path / "out", budget=3,
                      seed=1, minimize_time=10)
    assert (r.status, r.check, r.by) == ("killed_fast", "build-verify", "build"), r


def test_campaign_kill_keeps_check_and_reproducer(tmp_path, monkeypatch):
    # with no fast tests at all, the remote_pending mutant is left to the campaign
    monkeypatch.setattr(hm, "REGRESSIONS", tmp_path / "none")
    monkeypatch.setattr(hm, "STRESS_PROGRAMS", 0)
    monkeypatch.setattr(hm, "CACHE_FILL_SIZES", ())
    monkeypatch.setattr(hm, "_scenarios", lambda b: None)
    m = _mutant(tmp_path, "campaign", *MUTATIONS["killed_fast"], 90010)
    r = hm.run_mutant(m, tmp_path / "out", budget=30, seed=1, minimize_time=20)
    assert r.status == "killed_campaign", r
    assert r.by == "campaign" and r.check and r.detected_s is not None
    assert r.reproducer.startswith(str(tmp_path / "out" / "reproducers"))
    assert json.loads(open(r.reproducer).read())["signature"] == r.check
    assert (tmp_path / "out" / "logs" / f"{m.id}.log").is_file()


def test_generate_and_sample(tmp_path):
    ms = hm.generate(["remote.c"], tmp_path)
    assert len(ms) > 100 and all(m.file == "remote.c" for m in ms)
    assert [m.index for m in ms] == sorted(m.index for m in ms)
    a, b = hm.sample(ms, 5, 7), hm.sample(ms, 5, 7)
    assert [m.id for m in a] == [m.id for m in b] and len(a) == 5
    assert hm.sample(ms, 0, 7) == ms
    assert a[0].diff().startswith("--- a/src_c/alloc/remote.c")
    with pytest.raises(UsageError, match="no .*nosuch.c"):
        hm.generate(["nosuch.c"], tmp_path)


def test_state_resumes_and_refuses_other_parameters(tmp_path):
    params = {"files": ["remote.c"], "sample": 2, "seed": 1, "budget": 5}
    s = hm.State(tmp_path / "state.json", params, resume=False)
    s.add(hm.Result("remote-1", "remote.c", "survived", diff="d"))
    with pytest.raises(UsageError, match="--resume"):
        hm.State(tmp_path / "state.json", params, resume=False)
    again = hm.State(tmp_path / "state.json", params, resume=True)
    assert again.results["remote-1"].status == "survived"
    with pytest.raises(UsageError, match="other parameters"):
        hm.State(tmp_path / "state.json", {**params, "seed": 2}, resume=True)
    again.add(hm.Result("remote-2", "remote.c", "killed_fast", "counters", "x"))
    again.forget("survived")  # --rerun-survivors: they run again, the kill stays
    assert set(hm.State(tmp_path / "state.json", params, resume=True).results) == {"remote-2"}
    again.forget_stale({"remote-2": "another diff"})  # the id now names another mutation
    assert hm.State(tmp_path / "state.json", params, resume=True).results == {}


def test_scores_and_report():
    rs = [hm.Result("remote-1", "remote.c", "no_compile"),
          hm.Result("remote-2", "remote.c", "killed_fast", "counters", "stress program 0"),
          hm.Result("remote-3", "remote.c", "killed_campaign", "heap_check", "campaign",
                    "r.json", 4.5),
          hm.Result("remote-4", "remote.c", "survived", diff="-a\n+b\n", detail="nothing"),
          hm.Result("heap-1", "heap.c", "timeout", "timeout", "campaign")]
    hm.judge(rs, [("never", hm.re.compile("^nothing$"), "-")])
    assert rs[3].equivalent == ""
    t = hm.scores(rs)
    assert t["remote.c"]["score"] == pytest.approx(2 / 3) and t["heap.c"]["score"] == 1.0
    assert t["all"]["compiling"] == 4 and t["all"]["killed"] == 3
    md = hm.markdown(rs, {"sample": 5, "seed": 1, "budget": 60}, {"remote.c": 238, "heap.c": 9})
    assert "| `remote.c` | 238 | 4 | 1 | 0 | 1 | 1 | 0 | 1 (0) | 0 | 67% (2/3) | 67% (2/3) |" in md
    assert "| **all** | 247 | 5 |" in md and "**Unjudged**" in md
    assert "### `remote-4`" in md and "```diff\n-a\n+b\n```" in md
    hm.judge(rs, [("any", hm.re.compile("^-a$", hm.re.M), "because")])
    t = hm.scores(rs)
    assert t["remote.c"]["judged_equivalent"] == 1 and t["remote.c"]["score_nonequivalent"] == 1.0
    assert t["remote.c"]["mutants"] == 4 and t["all"]["mutants"] == 5
    assert "Judged equivalent (any: because)." in hm.markdown(rs, {"sample": 5, "seed": 1,
                                                                  "budget": 60}, {})


STRENGTHENED = ("@@ -15,3 +15,3 @@\n {\n"
                "-    atomic_fetch_add_explicit(&slab->remote_pending, 1, memory_order_relaxed);\n"
                "+    atomic_fetch_add_explicit(&slab->remote_pending, 1, memory_order_seq_cst);\n")


ROUND = ("@@ -56,3 +56,3 @@\n         slots += hak_class_tcache_limit[c];\n"
         "-    return (sizeof(struct hak_heap) + slots * sizeof(void *) + 63) & ~(size_t)63;\n"
         "+    return (sizeof(struct hak_heap) + slots * sizeof(void *) + (63-1)) & ~(size_t)63;\n")
DRAIN = "@@ -71,3 +71,3 @@\n     if (!head)\n-        return 0;\n+        return -1;\n"
SERIAL = ("@@ -101,3 +101,3 @@\n     }\n-    heap->serial = ++heap_serial;\n"
          "+    heap->serial = --heap_serial;\n")
LOOP = ("@@ -613,3 +613,3 @@\n     for (int c = 0; c < HAK_CLASSES; c++)\n"
        "-        for (int list = 0; list < 2; list++)\n"
        "+        for (int list = 0; list != 2; list++)\n")

LINKS = ("@@ -30,3 +30,3 @@\n     atomic_store_explicit(&slab->remote, 0, memory_order_relaxed);\n"
         "-    slab->next = slab->prev = NULL;\n+    /*slab->next = slab->prev = NULL;*/\n")

CHAIN = ("@@ -346,3 +346,3 @@\n         void *tail = head;\n-        uint32_t n = 1;\n"
         "+        uint32_t n = 0;\n")

PENDING_LOOP = ("@@ -615,3 +615,3 @@\n     for (int c = 0; c < HAK_CLASSES; c++)\n"
                "-        for (int list = 0; list < 2; list++)\n"
                "+        for (int list = (0-1); list < 2; list++)\n"
                "             for (struct hak_slab *s = list ? heap->full[c].head : "
                "heap->partial[c].head; s;\n")
REMOTE_WORD = ("@@ -29,3 +29,3 @@\n     atomic_store_explicit(&slab->owner, NULL, "
               "memory_order_relaxed);\n-    atomic_store_explicit(&slab->remote, 0, "
               "memory_order_relaxed);\n+    /*atomic_store_explicit(&slab->remote, 0, "
               "memory_order_relaxed);*/\n")
FORK_UNLOCK = ("@@ -557,3 +557,3 @@\n             if (!HAK_INJECT_FORK_UNLOCKED)\n"
               "-                hak_heap_unlock(heap);\n"
               "+                /*hak_heap_unlock(heap);*/\n"
               "             heap_unlink_locked(heap);\n")

STAMP = ("@@ -69,3 +69,3 @@\n     ss->dirty_units = 0;\n-    ss->dirty_ms = 0;\n"
         "+    ss->dirty_ms = (0-1);\n")

UNMAP = ("@@ -87,3 +87,3 @@\n     dirty_total -= (unsigned)__builtin_popcount(ss->dirty_units);\n"
         "-    ss->dirty_units = 0;\n+    ss->dirty_units = (0-1);\n     list_unlink(ss);\n")
UNITS_LOOP = ("@@ -126,3 +126,3 @@\n     }\n-    for (unsigned u = first; u < first + units; u++)\n"
              "+    for (unsigned u = first; u != first + units; u++)\n")
PUBLISH = ("@@ -137,3 +137,3 @@\n     hak_slab_format(slab, ss, first, units, size_class);\n"
           "-    hak_slab_publish(slab);\n+    /*hak_slab_publish(slab);*/\n")
GUARD = ("@@ -75,3 +75,3 @@\n     for (void *next; (next = hak_next_get(tail)) != NULL; "
         "tail = next) {\n-        if (HAK_UNLIKELY(n == slab->capacity)) {\n"
         "+        if (HAK_UNLIKELY(n > slab->capacity)) {\n")


@pytest.mark.parametrize("diff, equivalent", [
    (STRENGTHENED, True),
    (LOOP, True),
    (LOOP.replace("< 2", "< n").replace("!= 2", "!= n"), False),  # a bound that may change
    (LOOP.replace("list = 0; list != 2", "list = 1; list != 2"), False),  # more changed
    (LOOP.replace("!= 2", "<= 2"), False),  # one more iteration
    (ROUND, True),
    (ROUND.replace("(63-1)", "(63-9)"), False),  # rounds a multiple of 8 down
    (DRAIN, True),
    (DRAIN.replace("if (!head)", "if (!tail)"), False),  # another return 0
    (SERIAL, True),
    (LINKS, True),
    (CHAIN, True),
    (UNMAP, True),
    (UNMAP.replace("     list_unlink(ss);\n", "     ss->cached = false;\n"), False),  # read again
    (UNITS_LOOP, True),
    (UNITS_LOOP.replace("u = first; u !=", "u = 0; u !="), False),  # starts elsewhere
    (PUBLISH, True),
    (PUBLISH.replace("hak_slab_format(slab, ss, first, units, size_class)", "own_slab(h, s)"),
     False),
    (STAMP, True),
    (STAMP.replace("ss->dirty_units = 0;", "ss->dirty_units |= taken;"), False),  # elsewhere
    (PENDING_LOOP, True),
    (PENDING_LOOP.replace("(0-1)", "(0+1)"), False),  # the partial list never scanned
    (GUARD, True),
    (GUARD.replace("n > slab", "n + 1 == slab"), False),  # fires on a full slab's list
    (REMOTE_WORD, True),
    (REMOTE_WORD.replace("slab->owner, NULL", "slab->full, 0"), False),  # another place
    (FORK_UNLOCK, True),
    (FORK_UNLOCK.replace("heap_unlink_locked", "abandon_locked"), False),  # still in use
    (CHAIN.replace("n = 0;", "n = 2;"), False),  # a block counted that is not in the chain
    (LINKS.replace("slab->remote, 0", "slab->owner, NULL"), False),  # another place
    (LINKS.replace("+    /*slab->next = slab->prev = NULL;*/", "+    slab->next = NULL;"), False),
    (SERIAL.replace("--heap_serial", "heap_serial"), False),  # serials repeat
    (STRENGTHENED.replace("_seq_cst", "_acquire"), False),  # not always valid, not stronger
    (STRENGTHENED.replace("1, memory_order_seq", "2, memory_order_seq"), False),  # more changed
    (STRENGTHENED.replace("relaxed", "seq_cst").replace("+    atomic_fetch_add_explicit(&slab->"
                                                        "remote_pending, 1, memory_order_seq",
                                                        "+    x(1, memory_order_relaxed"), False),
])
def test_equivalence_rules_match_their_class_only(diff, equivalent):
    r = hm.Result("x-1", "x.c", "survived", diff=diff)
    hm.judge([r], hm.load_rules())
    assert bool(r.equivalent) == equivalent, r.equivalent
