/* rusage_exec: run a command and report its resource usage via wait4().
 *
 *   rusage_exec CMD [ARGS...]
 *
 * Runs CMD as a child, waits with wait4() and prints to stderr one line
 *   rusage maxrss_kib=N utime=S stime=S status=N
 * then exits with the child's exit status (128+signal if it was killed).
 *
 * Why not os.wait4() in Python directly: Linux carries a process's ru_maxrss
 * across execve() (the high-water mark of the pre-exec address space counts),
 * so a benchmark spawned by a 25 MiB Python process reports at least 25 MiB.
 * This launcher is tiny, so its children start from ~1 MiB. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: rusage_exec CMD [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 125; }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {}
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    fprintf(stderr, "rusage maxrss_kib=%ld utime=%.6f stime=%.6f status=%d\n", ru.ru_maxrss,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, code);
    return code;
}
