/* The fork op: a program thread forks the process while the other program threads are
 * live (in concurrent mode, in the middle of their own operations), and the child checks
 * what it inherited:
 *   - white-box: hak_heap_check over the whole inherited heap;
 *   - lockstep mode (the other threads are parked between ops, so the executor's own
 *     slot table is a consistent snapshot): every inherited block still holds its
 *     pattern, and frees cleanly;
 *   - any target: a batch across tiny, mid and large sizes allocates, fills, verifies
 *     and frees, on the forking thread and then on a thread the child starts.
 * It reports "<check>\t<message>" through a pipe and _exits. The parent waits for the
 * report: a child that crashes (fork:crash), hangs (fork:hang: a lock held by a thread
 * that does not exist in the child) or reports a failure (fork:<check>) is a finding. The
 * parent goes on either way. A child still running after HX_FORK_TIMEOUT_MS is asked by
 * the parent (HANG_SIGNAL) to report the hang itself, with the stack of the thread it was
 * working on: where a child hangs is the first question a fork:hang raises, and a
 * one-time hang cannot be replayed to answer it. The parent waits HX_FORK_GRACE_MS for
 * that report, then ends the child. The handler is installed, and the unwinder loaded,
 * in the parent before the fork, and the signal is never blocked across it: a child that
 * hangs inside fork() itself (an atfork handler waiting for a lock) can still answer. A
 * timer of the child's own, armed after fork() returned, could not (a no-seeds trial kept
 * such a silent hang). */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#pragma weak hak_heap_check

/* How long a child may take before it is asked to report a hang (HAKX_FORK_TIMEOUT_MS
 * overrides it: tests of the hang check): long enough for a sanitized child's batch on a
 * loaded machine. */
#define HX_FORK_TIMEOUT_MS 20000
/* How much longer the parent waits for a hung child's own report. */
#define HX_FORK_GRACE_MS 5000
/* What the parent sends a hung child: a real-time signal, which nothing else in a
 * campaign's process uses (SIGALRM is libFuzzer's -timeout). */
#define HANG_SIGNAL (SIGRTMIN + 4)

static int fork_timeout_ms(void)
{
    const char *env = getenv("HAKX_FORK_TIMEOUT_MS");
    int ms = env ? atoi(env) : 0;
    return ms > 0 ? ms : HX_FORK_TIMEOUT_MS;
}

/* sizes of the child's batch: tiny, class edges, mid, large (a 2 MiB block, once here, was
 * a fifth of a fork op's time under ASan: filling fresh copy-on-write pages) */
static const size_t batch_sizes[] = {16, 48, 200, 1024, 3000, 20000, 65536, 70000, 300000};
#define BATCH (sizeof batch_sizes / sizeof batch_sizes[0])

static bool report(char *msg, size_t len, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool report(char *msg, size_t len, const char *check, const char *fmt, ...)
{
    int n = snprintf(msg, len, "%s\t", check);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool check_inherited(struct hx_run *r, char *msg, size_t len)
{
    for (int s = 0; s < HAKX_SLOTS; s++) {
        struct hx_block *b = &r->slots[s];
        if (!b->live || !b->p)
            continue;
        size_t off = hx_verify(b->p, b->usable, b->seed);
        if (off != (size_t)-1)
            return report(msg, len, "integrity", "inherited block %p of slot %d: byte %zu "
                          "differs from its pattern", b->p, s, off);
        r->tg->free(b->p);
    }
    return true;
}

static bool check_batch(struct hx_run *r, char *msg, size_t len)
{
    void *p[BATCH];
    for (size_t k = 0; k < BATCH; k++) {
        p[k] = r->tg->malloc(batch_sizes[k]);
        if (!p[k])
            return report(msg, len, "null", "malloc(%zu) returned NULL in the child",
                          batch_sizes[k]);
        hx_fill(p[k], batch_sizes[k], 0xf0f0 + k);
    }
    for (size_t k = 0; k < BATCH; k++) {
        size_t off = hx_verify(p[k], batch_sizes[k], 0xf0f0 + k);
        if (off != (size_t)-1)
            return report(msg, len, "integrity", "the child's block of %zu B at %p: byte %zu "
                          "was overwritten", batch_sizes[k], p[k], off);
    }
    for (size_t k = 0; k < BATCH; k++)
        r->tg->free(p[k]);
    return true;
}

struct batch_job {
    struct hx_run *r;
    char *msg;
    size_t len;
    bool ok;
};

/* ---- the child's own hang report (async-signal context: no stdio, no allocation) ---- */

enum { HANG_FRAMES = 24 };
static int hang_fd = -1;
static char hang_head[64];

struct text {
    char *p, *end;
};

static void put(struct text *t, const char *s)
{
    while (*s && t->p < t->end)
        *t->p++ = *s++;
}

static void put_hex(struct text *t, uintptr_t v)
{
    char digits[2 * sizeof v + 1];
    int n = (int)sizeof digits - 1;
    digits[n] = 0;
    do {
        digits[--n] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    put(t, "0x");
    put(t, digits + n);
}

/* One frame as symbol+offset (object+offset), the object's offset being what addr2line
 * takes when the symbol is a static function's nearest exported neighbour. */
static void put_frame(struct text *t, void *pc)
{
    Dl_info info;
    if (!dladdr(pc, &info) || !info.dli_fname) {
        put_hex(t, (uintptr_t)pc);
        return;
    }
    if (info.dli_sname) {
        put(t, info.dli_sname);
        put(t, "+");
        put_hex(t, (uintptr_t)pc - (uintptr_t)info.dli_saddr);
        put(t, " ");
    }
    const char *base = strrchr(info.dli_fname, '/');
    put(t, "(");
    put(t, base ? base + 1 : info.dli_fname);
    put(t, "+");
    put_hex(t, (uintptr_t)pc - (uintptr_t)info.dli_fbase);
    put(t, ")");
}

static void report_hang(int sig)
{
    (void)sig;
    void *frames[HANG_FRAMES];
    int n = backtrace(frames, HANG_FRAMES);
    char msg[sizeof ((struct hakx_verdict *)0)->message];
    struct text t = {msg, msg + sizeof msg - 1};
    put(&t, hang_head);
    for (int k = 2; k < n; k++) { /* past this handler and the signal trampoline */
        put_frame(&t, frames[k]);
        if (k + 1 < n)
            put(&t, " <- ");
    }
    *t.p++ = 0;
    for (const char *p = msg; p < t.p;) {
        ssize_t w = write(hang_fd, p, (size_t)(t.p - p));
        if (w <= 0)
            break;
        p += w;
    }
    _exit(0);
}

/* In the parent, before the fork: the child inherits the handler, the report's pipe and
 * head, and the unwinder backtrace() loads on its first call (which a hung child may not
 * manage: loading takes the loader's lock). */
static void prepare_hang_report(int fd, int timeout_ms)
{
    static bool warm;
    if (!warm) {
        void *frame[1];
        backtrace(frame, 1);
        warm = true;
    }
    hang_fd = fd;
    snprintf(hang_head, sizeof hang_head, "hang\tstill running after %d ms, at: ", timeout_ms);
    struct sigaction sa = {.sa_handler = report_hang};
    sigemptyset(&sa.sa_mask);
    sigaction(HANG_SIGNAL, &sa, NULL);
}

static void *batch_thread(void *arg)
{
    struct batch_job *job = arg;
    job->ok = check_batch(job->r, job->msg, job->len);
    return NULL;
}

/* The batch again on a thread the child starts: its heap is one the fork recycled (the
 * parent's other threads do not exist here), and it is given back when the thread ends.
 * A child that cannot start a thread has nothing to report about the allocator. */
static bool check_thread_batch(struct hx_run *r, char *msg, size_t len)
{
    struct batch_job job = {r, msg, len, true};
    pthread_t th;
    if (pthread_create(&th, NULL, batch_thread, &job) == 0) {
        /* the hang report is that thread's to make: its stack is the one that matters */
        sigset_t hang, old;
        sigemptyset(&hang);
        sigaddset(&hang, HANG_SIGNAL);
        pthread_sigmask(SIG_BLOCK, &hang, &old);
        pthread_join(th, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return job.ok;
}

static void child(struct hx_run *r, int fd)
{
    char msg[sizeof r->verdict->message] = "";
    bool ok = true;
    if (r->tg->hakmem && hak_heap_check) {
        struct hak_heap_report rep;
        if (!hak_heap_check(&rep))
            ok = report(msg, sizeof msg, "heap_check", "inherited heap: %s", rep.message);
    }
    if (ok && r->mode == HAKX_MODE_LOCKSTEP)
        ok = check_inherited(r, msg, sizeof msg);
    if (ok)
        ok = check_batch(r, msg, sizeof msg);
    if (ok)
        ok = check_thread_batch(r, msg, sizeof msg);
    if (ok)
        ok = !r->tg->hakmem || !hak_heap_check || hak_heap_check(&(struct hak_heap_report){0}) ||
             report(msg, sizeof msg, "heap_check", "after the child's own batch");
    if (ok)
        snprintf(msg, sizeof msg, "ok\t");
    ssize_t left = (ssize_t)strlen(msg) + 1; /* the NUL: the report is complete */
    for (const char *p = msg; left > 0;) {
        ssize_t w = write(fd, p, (size_t)left);
        if (w <= 0)
            break;
        p += w;
        left -= w;
    }
    _exit(0);
}

/* Reads the child's report until its NUL, EOF or the timeout; false on timeout. Not until
 * EOF: that comes only once the child's whole address space is torn down. */
static bool read_report(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n == cap - 1 || memchr(buf, 0, n))
            break;
    }
    buf[n] = 0;
    return true;
}

static void judge(struct hx_run *r, size_t i, int t, pid_t pid, int timeout_ms, bool in_time,
                  char *buf)
{
    int status = 0;
    if (!in_time) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        hx_fail(r, "fork:hang", (int64_t)i, t, -1, NULL, 0, (uint64_t)timeout_ms,
                "the child forked by thread %d did not report within %d ms (a lock held by "
                "a thread that does not exist in the child?)", t, timeout_ms);
        return;
    }
    char *tab = strchr(buf, '\t');
    if (tab && waitpid(pid, &status, WNOHANG) == 0) {
        /* It reported and is exiting: reaped at the run's end (hx_fork_reap). */
        hx_lock(r);
        r->unreaped[r->n_unreaped++] = pid;
        hx_unlock(r);
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (WIFSIGNALED(status)) {
        hx_fail(r, "fork:crash", (int64_t)i, t, -1, NULL, 0, (uint64_t)WTERMSIG(status),
                "the child forked by thread %d died of signal %d (%s) before reporting", t,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
        return;
    }
    if (!tab) {
        hx_fail(r, "fork:crash", (int64_t)i, t, -1, NULL, 0, (uint64_t)WEXITSTATUS(status),
                "the child forked by thread %d exited with status %d before reporting", t,
                WEXITSTATUS(status));
        return;
    }
    *tab = 0;
    if (strcmp(buf, "ok") != 0) {
        char check[32];
        snprintf(check, sizeof check, "fork:%s", buf);
        hx_fail(r, check, (int64_t)i, t, -1, NULL, 0, 0, "in the child forked by thread %d: %s",
                t, tab + 1);
    }
}

/* The child runs none of the handlers the process installed for signals sent to it from
 * outside: a fuzzer's (libFuzzer prints its statistics and allocates a path in its SIGINT
 * handler) would run where the fork left allocator locks held, and hang the child for
 * good. A SIGINT goes to the whole process group (a Ctrl-C, a campaign's stop): it is the
 * parent's to act on, and the child, ignoring it, finishes its check or reports its hang.
 * The others caught here get their default action (ignored ones stay ignored). Signals
 * stay blocked across the fork (see hx_fork) so that none lands before this. */
static void drop_inherited_handlers(void)
{
    static const int outside[] = {SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    signal(SIGINT, SIG_IGN);
    for (size_t k = 0; k < sizeof outside / sizeof outside[0]; k++) {
        struct sigaction sa;
        if (sigaction(outside[k], NULL, &sa) == 0 && sa.sa_handler != SIG_IGN)
            signal(outside[k], SIG_DFL);
    }
}

/* Held from the hang report's preparation to fork(): the child must inherit its own
 * pipe as the report's, not that of a fork op another thread prepares at the same time. */
static pthread_mutex_t preparing = PTHREAD_MUTEX_INITIALIZER;

void hx_fork(struct hx_run *r, size_t i, int t)
{
    int fds[2];
    if (pipe(fds)) {
        hx_error(r, "pipe failed for the fork op: %s", strerror(errno));
        return;
    }
    int timeout_ms = fork_timeout_ms();
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, HANG_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    sigdelset(&old, HANG_SIGNAL);
    hx_sched_fork(true);
    pthread_mutex_lock(&preparing);
    prepare_hang_report(fds[1], timeout_ms);
    pid_t pid = fork();
    if (pid == 0)
        drop_inherited_handlers();
    else
        pthread_mutex_unlock(&preparing);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid)
        hx_sched_fork(false);
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        hx_error(r, "fork failed: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        child(r, fds[1]);
    }
    close(fds[1]);
    char buf[sizeof r->verdict->message + 40];
    bool in_time = read_report(fds[0], buf, sizeof buf, timeout_ms);
    if (!in_time) {
        kill(pid, HANG_SIGNAL);
        in_time = read_report(fds[0], buf, sizeof buf, HX_FORK_GRACE_MS);
    }
    close(fds[0]);
    judge(r, i, t, pid, timeout_ms + HX_FORK_GRACE_MS, in_time, buf);
}

void hx_fork_reap(struct hx_run *r)
{
    int status;
    for (unsigned k = 0; k < r->n_unreaped; k++)
        while (waitpid(r->unreaped[k], &status, 0) < 0 && errno == EINTR)
            ;
    r->n_unreaped = 0;
}
