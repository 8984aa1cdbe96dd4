/* Times one program run for bench/bench.py, without Python's spawn cost.
 *
 * usage: spawn FD UID GID -- PROGRAM ARGS...
 *
 * Becomes UID and GID with no supplementary groups (UID -1: stays as it
 * is), as a user's shell would be, then starts PROGRAM with posix_spawn
 * (stdin, stdout, stderr, environment and working directory inherited),
 * waits for it with wait4 and writes one line to descriptor FD:
 *   "<wall ns> <child user+sys us> <own user+sys us>"
 * the child's CPU including the children it waited for, ours so that the
 * caller can take it out of the namespace's total. Exits with the
 * program's exit code (128 + signal if killed; 127 if it could not start).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long us(struct rusage *r)
{
    return (long long)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1000000LL
        + r->ru_utime.tv_usec + r->ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argv[4][0] != '-' || argv[4][1] != '-') {
        fprintf(stderr, "usage: spawn FD UID GID -- PROGRAM ARGS...\n");
        return 64;
    }
    int fd = atoi(argv[1]);
    fcntl(fd, F_SETFD, FD_CLOEXEC); /* the program does not get it */
    long uid = strtol(argv[2], NULL, 10), gid = strtol(argv[3], NULL, 10);
    if (uid >= 0) {
        if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)) {
            perror("spawn: switching user");
            return 71;
        }
    }
    struct timespec t0, t1;
    pid_t pid;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int e = posix_spawn(&pid, argv[5], NULL, NULL, argv + 5, environ);
    if (e) {
        fprintf(stderr, "spawn: %s: cannot start (errno %d)\n", argv[5], e);
        return 127;
    }
    int status;
    struct rusage child, self;
    if (wait4(pid, &status, 0, &child) < 0) {
        perror("spawn: wait4");
        return 71;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &self);
    long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    dprintf(fd, "%lld %lld %lld\n", ns, us(&child), us(&self));
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
