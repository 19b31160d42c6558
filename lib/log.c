/*
 * lib/log.c: the logfmt writer behind lib/log.h, and the secret scrubber.
 * Thread-safe: a line is formatted into a local buffer and written with one call.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"

int sh_log_level = SH_LOG_INFO;

#define MAX_SECRETS 32
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[MAX_SECRETS];
static int n_secrets;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

int sh_log_level_parse(const char *name)
{
    for (int i = 0; i <= SH_LOG_OFF; i++)
        if (!strcmp(name, level_names[i]))
            return i;
    return -1;
}

void sh_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&secrets_lock);
    int dup = 0;
    for (int i = 0; i < n_secrets; i++)
        dup |= !strcmp(secrets[i], secret);
    if (!dup && n_secrets < MAX_SECRETS)
        secrets[n_secrets++] = strdup(secret);
    pthread_mutex_unlock(&secrets_lock);
}

void sh_log_clear_secrets(void)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < n_secrets; i++)
        free(secrets[i]);
    n_secrets = 0;
    pthread_mutex_unlock(&secrets_lock);
}

/* Replace each registered secret in line (in place, it only shrinks or keeps length). */
static void scrub(char *line)
{
    static const char mask[] = "[redacted]";
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < n_secrets; i++) {
        size_t sl = strlen(secrets[i]);
        char *p;
        while ((p = strstr(line, secrets[i])) != NULL) {
            size_t ml = sl < sizeof(mask) - 1 ? sl : sizeof(mask) - 1;
            memcpy(p, mask, ml);
            memmove(p + ml, p + sl, strlen(p + sl) + 1);
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

void sh_log_write(int level, const char *fmt, ...)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (level < 0 || level > SH_LOG_ERROR)
        level = SH_LOG_ERROR;
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    scrub(line);
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

int sh_log_limit_pass(struct sh_log_limit *lim, unsigned long long *held)
{
    unsigned long long now = sh_now_ms(), next = atomic_load(&lim->next_ms);
    if (now < next || !atomic_compare_exchange_strong(&lim->next_ms, &next, now + SH_LOG_LIMIT_MS)) {
        atomic_fetch_add(&lim->held, 1);
        return 0;
    }
    *held = atomic_exchange(&lim->held, 0);
    return 1;
}

void sh_log_write_limited(int level, struct sh_log_limit *lim, const char *fmt, ...)
{
    unsigned long long held;
    if (!sh_log_limit_pass(lim, &held))
        return;
    char msg[3584];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (held)
        sh_log_write(level, "%s suppressed=%llu", msg, held);
    else
        sh_log_write(level, "%s", msg);
}
