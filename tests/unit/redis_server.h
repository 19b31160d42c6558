/*
 * tests/unit/redis_server.h: a throwaway redis-server for unit tests: a free loopback port, a
 * temp folder of its own (AOF on, no RDB snapshots, a unix socket there too), an optional
 * password; stopped by its pid (never the system's service), and killed by the kernel when the
 * test process dies first. t_redis_start answers -1 when redis-server is not installed, so that a
 * test can SKIP.
 */
#ifndef SHARDHOOK_TESTS_UNIT_REDIS_SERVER_H
#define SHARDHOOK_TESTS_UNIT_REDIS_SERVER_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "tests/unit/test_fs.h"

struct t_redis {
    pid_t pid;
    int port;
    char dir[128];
    char sock[160];
    char password[64];
    char url[256]; /* redis://[:pw@]127.0.0.1:port */
};

static inline int t_redis_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline int t_redis_installed(void)
{
    return !system("command -v redis-server >/dev/null 2>&1");
}

static inline void t_redis_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Run redis-server on rs->port in rs->dir and wait until it answers PING. 0 or -2. */
static inline int t_redis_spawn(struct t_redis *rs)
{
    char port[16], log[200];
    snprintf(port, sizeof(port), "%d", rs->port);
    snprintf(log, sizeof(log), "%s/redis.log", rs->dir);
    const char *argv[24] = {"redis-server",
                            "--port",
                            port,
                            "--bind",
                            "127.0.0.1",
                            "--dir",
                            rs->dir,
                            "--appendonly",
                            "yes",
                            "--appendfsync",
                            "everysec",
                            "--save",
                            "",
                            "--unixsocket",
                            rs->sock,
                            "--daemonize",
                            "no",
                            "--logfile",
                            log};
    int n = 19;
    if (rs->password[0]) {
        argv[n++] = "--requirepass";
        argv[n++] = rs->password;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -2;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies takes its server with it */
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    rs->pid = pid;
    for (int i = 0; i < 250; i++) { /* 5 s */
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
        int up = c && !c->err;
        if (up && rs->password[0]) {
            redisReply *r = redisCommand(c, "AUTH %s", rs->password);
            up = r && r->type != REDIS_REPLY_ERROR;
            if (r)
                freeReplyObject(r);
        }
        if (up) { /* PING answers -LOADING while the AOF is read back */
            redisReply *r = redisCommand(c, "PING");
            up = r && r->type != REDIS_REPLY_ERROR;
            if (r)
                freeReplyObject(r);
        }
        if (c)
            redisFree(c);
        if (up)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rs->pid = 0;
            return -2;
        }
        t_redis_sleep_ms(20);
    }
    return -2;
}

/* Start a server (password NULL: none). 0, -1 not installed, -2 failed. */
static inline int t_redis_start(struct t_redis *rs, const char *password)
{
    memset(rs, 0, sizeof(*rs));
    if (!t_redis_installed())
        return -1;
    snprintf(rs->dir, sizeof(rs->dir), "/tmp/shardhook-unit-redis-XXXXXX");
    if (!mkdtemp(rs->dir))
        return -2;
    snprintf(rs->sock, sizeof(rs->sock), "%s/redis.sock", rs->dir);
    if (password)
        snprintf(rs->password, sizeof(rs->password), "%s", password);
    for (int attempt = 0; attempt < 3; attempt++) {
        rs->port = t_redis_free_port();
        if (rs->port <= 0)
            continue;
        if (password)
            snprintf(rs->url, sizeof(rs->url), "redis://:%s@127.0.0.1:%d", password, rs->port);
        else
            snprintf(rs->url, sizeof(rs->url), "redis://127.0.0.1:%d", rs->port);
        if (t_redis_spawn(rs) == 0)
            return 0;
        if (rs->pid) {
            kill(rs->pid, SIGKILL);
            waitpid(rs->pid, NULL, 0);
            rs->pid = 0;
        }
    }
    rm_rf(rs->dir);
    return -2;
}

/* kill -9, as a crash would. */
static inline void t_redis_kill(struct t_redis *rs)
{
    if (rs->pid > 0) {
        kill(rs->pid, SIGKILL);
        waitpid(rs->pid, NULL, 0);
        rs->pid = 0;
    }
}

/* Start again on the same port and folder (its AOF is read back). 0 or -2. */
static inline int t_redis_restart(struct t_redis *rs)
{
    t_redis_kill(rs);
    return t_redis_spawn(rs);
}

/* Stop it (SIGTERM, then SIGKILL after 5 s) and remove its folder. */
static inline void t_redis_stop(struct t_redis *rs)
{
    if (rs->pid > 0) {
        kill(rs->pid, SIGTERM);
        int i = 0;
        while (waitpid(rs->pid, NULL, WNOHANG) == 0 && i++ < 250)
            t_redis_sleep_ms(20);
        if (i > 250) {
            kill(rs->pid, SIGKILL);
            waitpid(rs->pid, NULL, 0);
        }
        rs->pid = 0;
    }
    if (rs->dir[0])
        rm_rf(rs->dir);
    rs->dir[0] = '\0';
}

/* A plain hiredis connection for the test's own checks (NULL on failure). */
static inline redisContext *t_redis_client(const struct t_redis *rs)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (rs->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", rs->password);
        if (r)
            freeReplyObject(r);
    }
    return c;
}

/*
 * In a test (tests/unit/test.h): start *srv the first time (state: 0 not tried, 1 up, -1 not
 * installed, -2 failed to start), SKIP when redis-server is not installed, fail when it would
 * not start.
 */
#define T_NEED_REDIS(srv, state)                                                                   \
    do {                                                                                           \
        if (!(state))                                                                              \
            (state) = t_redis_start(&(srv), NULL) == 0 ? 1 : t_redis_installed() ? -2 : -1;        \
        if ((state) == -1)                                                                         \
            SKIP("redis-server is not installed");                                                 \
        ASSERT_EQ((state), 1);                                                                     \
    } while (0)

#endif
