/*
 * lib/log.c: the line writer behind lib/log.h (logfmt or JSON, with the fields callers
 * formatted re-read and escaped), and the secret scrubber.
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

_Atomic int sh_log_level = SH_LOG_INFO;
_Atomic int sh_log_format = SH_LOG_LOGFMT;

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

int sh_log_format_parse(const char *name)
{
    if (!strcmp(name, "logfmt"))
        return SH_LOG_LOGFMT;
    if (!strcmp(name, "json"))
        return SH_LOG_JSON;
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

/* ---- rendering: re-read `key=value` fields, write them escaped ---- */

#define CUT_ROOM 24 /* kept free for `,"truncated":true}` */

struct out {
    char *p;
    size_t len, cap; /* cap excludes the NUL and CUT_ROOM */
    int full;        /* a put did not fit: the field being written is dropped */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static int is_key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

/* Length of a `key=` at s (the key's length), or 0. */
static size_t key_at(const char *s)
{
    size_t n = 0;
    while (is_key_char(s[n]))
        n++;
    return n && s[n] == '=' ? n : 0;
}

/* 1 when s is the end of the fields or ` key=`. */
static int field_end(const char *s)
{
    if (!*s)
        return 1;
    if (*s != ' ')
        return 0;
    while (*s == ' ')
        s++;
    return key_at(s) > 0;
}

/* Length of one valid UTF-8 sequence at s, 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    unsigned cp = c & (0xff >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Write v (n bytes) escaped as the inside of a JSON string. */
static void put_escaped(struct out *o, const char *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)v[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            put(o, esc, 2);
        } else if (ch == '\n') {
            puts_(o, "\\n");
        } else if (ch == '\r') {
            puts_(o, "\\r");
        } else if (ch == '\t') {
            puts_(o, "\\t");
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            puts_(o, esc);
        } else if (ch >= 0x80) {
            size_t k = utf8_len((const unsigned char *)v + i, n - i);
            if (!k) {
                puts_(o, "\\ufffd");
                i++;
                continue;
            }
            put(o, v + i, k);
            i += k;
            continue;
        } else {
            put(o, v + i, 1);
        }
        i++;
    }
}

/* 1 when v is a plain JSON number (-?digits, optional fraction). */
static int is_number(const char *v, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && v[i] == '-')
        i++;
    if (i < n && v[i] == '0' && i + 1 < n && v[i + 1] != '.')
        return 0;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++, digits++;
    if (digits && i < n && v[i] == '.') {
        size_t frac = 0;
        for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++)
            frac++;
        if (!frac)
            return 0;
    }
    return digits && i == n;
}

static int needs_quotes(const char *v, size_t n)
{
    if (!n)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f)
            return 1;
    }
    return 0;
}

static void put_field_(struct out *o, int format, int first, const char *k, size_t kn,
                       const char *v, size_t vn, int quoted)
{
    if (format == SH_LOG_JSON) {
        puts_(o, first ? "{\"" : ",\"");
        put_escaped(o, k, kn);
        puts_(o, "\":");
        if (!quoted && is_number(v, vn)) {
            put(o, v, vn);
        } else {
            puts_(o, "\"");
            put_escaped(o, v, vn);
            puts_(o, "\"");
        }
        return;
    }
    if (!first)
        puts_(o, " ");
    put(o, k, kn);
    puts_(o, "=");
    if (quoted || needs_quotes(v, vn)) {
        puts_(o, "\"");
        put_escaped(o, v, vn);
        puts_(o, "\"");
    } else {
        put_escaped(o, v, vn);
    }
}

/* One field, whole or not at all (a line that outgrew out ends with truncated=true). */
static void put_field(struct out *o, int format, int first, const char *k, size_t kn, const char *v,
                      size_t vn, int quoted)
{
    size_t mark = o->len;
    if (!o->full)
        put_field_(o, format, first, k, kn, v, vn, quoted);
    if (o->full)
        o->len = mark;
}

size_t sh_log_render(int format, const char *ts, const char *level, const char *fields, char *out,
                     size_t outlen)
{
    if (outlen <= CUT_ROOM + 64) {
        if (outlen)
            out[0] = '\0';
        return 0;
    }
    struct out o = {out, 0, outlen - 1 - CUT_ROOM, 0};
    put_field(&o, format, 1, "ts", 2, ts, strlen(ts), 0);
    put_field(&o, format, 0, "level", 5, level, strlen(level), 0);
    const char *s = fields;
    while (*s == ' ')
        s++;
    if (*s && !key_at(s)) { /* text before any key */
        const char *e = s;
        while (!field_end(e))
            e++;
        put_field(&o, format, 0, "msg", 3, s, (size_t)(e - s), 1);
        s = e;
    }
    while (*s) {
        while (*s == ' ')
            s++;
        size_t kn = key_at(s);
        if (!kn)
            break; /* only trailing spaces are left */
        const char *k = s, *v = s + kn + 1, *e;
        int quoted = *v == '"';
        if (quoted) {
            /* the value ends at the first quote followed by the end or ` key=` */
            const char *q = NULL;
            for (e = v + 1; *e; e++)
                if (*e == '"' && field_end(e + 1)) {
                    q = e;
                    break;
                }
            if (q) {
                put_field(&o, format, 0, k, kn, v + 1, (size_t)(q - v - 1), 1);
                s = q + 1;
                continue;
            }
            v++; /* no closing quote: the rest up to the next key, without the quote */
        }
        for (e = v; !field_end(e); e++)
            ;
        put_field(&o, format, 0, k, kn, v, (size_t)(e - v), quoted);
        s = e;
    }
    int cut = o.full;
    o.full = 0;
    o.cap += CUT_ROOM;
    if (cut)
        puts_(&o, format == SH_LOG_JSON ? ",\"truncated\":true" : " truncated=true");
    if (format == SH_LOG_JSON)
        puts_(&o, "}");
    out[o.len] = '\0';
    return o.len;
}

void sh_log_write(int level, const char *fmt, ...)
{
    char fields[4096], line[8192], ts[64];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (level < 0 || level > SH_LOG_ERROR)
        level = SH_LOG_ERROR;
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    scrub(fields);
    sh_log_render(atomic_load(&sh_log_format), ts, level_names[level], fields, line,
                  sizeof(line) - 1);
    scrub(line); /* a secret that escaping left whole */
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

int sh_log_limit_pass(struct sh_log_limit *lim, unsigned long long *held)
{
    unsigned long long now = sh_now_ms(), next = atomic_load(&lim->next_ms);
    if (now < next ||
        !atomic_compare_exchange_strong(&lim->next_ms, &next, now + SH_LOG_LIMIT_MS)) {
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
