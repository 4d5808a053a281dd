/* Native launcher of the stand-in benchmark_model (loopback/benchmark_model.py).

   A real benchmark_model is a native binary: the phone's shell starts it in a
   few milliseconds. The stand-in is Python, whose start (12-25 ms here, plus
   compiling the script) is paid again by every burst. This launcher is what
   the loopback phone runs instead: it hands its argv to the stand-in's zygote
   (TOOL --itpl-zygote, started on first use), which forks a child that reads
   the launcher's folder, ITPL_* environment and CPU affinity from /proc, runs
   the tool and writes its output back, ending with "\0itpl-exit:N\n". The
   launcher prints the output and exits with N. Without a zygote it runs the
   Python tool itself. Built by loopback/launcher.py with -DTOOL, -DPYTHON
   and -DSOCKET. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void start_zygote(void) {
    if (fork() == 0) {
        setsid();
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execl(PYTHON, PYTHON, TOOL, "--itpl-zygote", (char *)NULL);
        _exit(127);
    }
}

static int connect_zygote(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, SOCKET, sizeof addr.sun_path - 1);
    for (int attempt = 0; attempt < 300; attempt++) {  /* 15 s for a zygote to come up */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        if (attempt == 0)
            start_zygote();
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return -1;
}

static int write_all(int fd, const char *data, size_t n) {
    while (n) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    int fd = connect_zygote();
    if (fd < 0) {  /* no zygote: the tool in its own process */
        setenv("ITPL_STANDIN_ZYGOTE", "0", 1);
        char **args = calloc((size_t)argc + 2, sizeof *args);
        args[0] = PYTHON;
        args[1] = TOOL;
        for (int i = 1; i < argc; i++)
            args[i + 1] = argv[i];
        execv(PYTHON, args);
        perror("itpl stand-in launcher: " PYTHON);
        return 127;
    }
    /* the request: this process's id, then the arguments, each ending in NUL */
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if (write_all(fd, pid, (size_t)n + 1) < 0)
        return 1;
    for (int i = 1; i < argc; i++)
        if (write_all(fd, argv[i], strlen(argv[i]) + 1) < 0)
            return 1;
    shutdown(fd, SHUT_WR);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {  /* a few KB: read it all, then find the exit status at its end */
        if (len == cap)
            out = realloc(out, cap *= 2);
        ssize_t r = read(fd, out + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    static const char mark[] = "\0itpl-exit:";
    size_t m = sizeof mark - 1;
    for (size_t i = len >= m ? len - m + 1 : 0; i-- > 0;) {
        if (memcmp(out + i, mark, m) == 0) {
            write_all(1, out, i);
            return atoi(out + i + m);
        }
    }
    write_all(1, out, len);
    return 1;  /* no status: the child was killed */
}
