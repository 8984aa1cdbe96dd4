/* Times program runs for bench/bench.py, without Python's spawn cost.
 *
 * usage: spawn FD UID GID -- PROGRAM ARGS...
 *        spawn FD UID GID --list FILE [SECONDS]
 *
 * The list form runs one program per line of FILE, one after the other,
 * as a shell loop would: each line is the path of its stdin, then the
 * program and its arguments, separated by tabs. It writes one line per
 * run to FD, "<wall ns> <child user+sys us> <exit code>", and at the end
 * "end <own user+sys us>"; it stops starting runs once SECONDS have
 * passed (a queue-less client that delivers as it goes). Its own cost per
 * run is one posix_spawn and one wait4.
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
#include <string.h>
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

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The --list form (see the top). */
static int run_list(int fd, const char *file, double seconds)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        perror("spawn: list");
        return 66;
    }
    char line[65536];
    double start = now_s();
    while (fgets(line, sizeof line, f)) {
        if (seconds > 0 && now_s() - start > seconds)
            break;
        line[strcspn(line, "\n")] = 0;
        char *args[256];
        int n = 0;
        for (char *tok = strtok(line, "\t"); tok && n < 255; tok = strtok(NULL, "\t"))
            args[n++] = tok;
        args[n] = NULL;
        if (n < 2)
            continue;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, args[0], O_RDONLY, 0);
        struct timespec t0, t1;
        pid_t pid;
        int status = 127 << 8;
        struct rusage child = {0};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int e = posix_spawn(&pid, args[1], &fa, NULL, args + 1, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (e == 0 && wait4(pid, &status, 0, &child) < 0) {
            perror("spawn: wait4");
            return 71;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        int code = e ? 127 : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        dprintf(fd, "%lld %lld %d\n", ns, us(&child), code);
    }
    fclose(f);
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    dprintf(fd, "end %lld\n", us(&self));
    return 0;
}

int main(int argc, char **argv)
{
    int list = argc >= 6 && strcmp(argv[4], "--list") == 0;
    if (argc < 6 || (!list && (argv[4][0] != '-' || argv[4][1] != '-'))) {
        fprintf(stderr, "usage: spawn FD UID GID -- PROGRAM ARGS...\n"
                        "       spawn FD UID GID --list FILE [SECONDS]\n");
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
    if (list)
        return run_list(fd, argv[5], argc > 6 ? atof(argv[6]) : 0);
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
