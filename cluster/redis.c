/*
 * cluster/redis.c: the coordination thread's Redis connection (see redis.h): the parsed
 * `cluster.redis` address, one hiredis 0.14 synchronous context with connect and command
 * timeouts, AUTH and SELECT on every connect, the Lua scripts of cluster/scripts/ (put into this
 * object by the assembler's .incbin, as http/status_page.c does with its page; the Makefile makes
 * this object depend on them) with their SHA1s from SCRIPT LOAD, and the application id that
 * names every key. A connection error drops the context; the caller reconnects. Owns no thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "cluster/redis.h"
#include "config/redis_url.h"
#include "lib/clock.h"
#include "lib/errors.h"

/* ---- the scripts, embedded ---- */

/* Paths are relative to the directory make runs in (the repository root), like -I. */
#define CL_INCBIN_(name, file)                                                                     \
    ".balign 16\n"                                                                                 \
    "cl__lua_" #file "_start:\n"                                                                   \
    ".incbin \"cluster/scripts/" #file ".lua\"\n"                                                  \
    "cl__lua_" #file "_end:\n"                                                                     \
    ".byte 0\n"
__asm__(".pushsection .rodata\n" CL_SCRIPTS(CL_INCBIN_) ".popsection\n");

#define CL_EXTERN_(name, file)                                                                     \
    extern const char cl__lua_##file##_start[] __asm__("cl__lua_" #file "_start");                 \
    extern const char cl__lua_##file##_end[] __asm__("cl__lua_" #file "_end");
CL_SCRIPTS(CL_EXTERN_)

struct script_text {
    const char *name;
    const char *start, *end;
};

#define CL_TEXT_(name, file) {#file, cl__lua_##file##_start, cl__lua_##file##_end},
static const struct script_text scripts[CL_SCRIPT_COUNT] = {CL_SCRIPTS(CL_TEXT_)};

const char *cl__script_name(enum cl__script s)
{
    return (unsigned)s < CL_SCRIPT_COUNT ? scripts[s].name : "?";
}

/* ---- the connection ---- */

struct cl__redis {
    struct cfg_redis_url url;
    int timeout_ms;
    redisContext *ctx;
    char sha[CL_SCRIPT_COUNT][41];
    char where[300];
    char err[256];
    int rtt_ms;
    uint64_t pipeline_ms; /* when the first command of a pipeline was appended; 0 none */
};

int cl__redis_new(const char *url, int timeout_ms, struct cl__redis **out, char *err, size_t errlen)
{
    char why[200];
    *out = NULL;
    struct cl__redis *r = calloc(1, sizeof(*r));
    if (!r)
        return SH_ENOMEM;
    if (cfg_redis_url_parse(url, &r->url, why, sizeof(why))) {
        snprintf(err, errlen, "cluster.redis: %s", why);
        free(r);
        return SH_ECONFIG;
    }
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    r->rtt_ms = -1;
    if (r->url.is_unix)
        snprintf(r->where, sizeof(r->where), "unix:%s", r->url.path);
    else
        snprintf(r->where, sizeof(r->where), strchr(r->url.host, ':') ? "[%s]:%d/%d" : "%s:%d/%d",
                 r->url.host, r->url.port, r->url.db);
    *out = r;
    return SH_OK;
}

static void set_err(struct cl__redis *r, const char *what, const char *detail)
{
    snprintf(r->err, sizeof(r->err), "%s: %s", what, detail && *detail ? detail : "failed");
}

static void drop(struct cl__redis *r, const char *what)
{
    if (r->ctx) {
        if (what)
            set_err(r, what, r->ctx->err ? r->ctx->errstr : "connection lost");
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    r->pipeline_ms = 0;
}

/* 0 when rep is of type (AUTH and SELECT: status, SCRIPT LOAD: string); else -1, err set. */
static int expect(struct cl__redis *r, const redisReply *rep, int type, const char *what)
{
    if (rep->type == type)
        return 0;
    set_err(r, what, rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

static int load_scripts(struct cl__redis *r)
{
    for (int i = 0; i < CL_SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", scripts[i].start};
        size_t lens[] = {6, 4, (size_t)(scripts[i].end - scripts[i].start)};
        redisReply *rep = redisCommandArgv(r->ctx, 3, argv, lens);
        if (!rep) {
            drop(r, "script load");
            return SH_ENET;
        }
        int bad = expect(r, rep, REDIS_REPLY_STRING, "script load") || rep->len != 40;
        if (!bad)
            memcpy(r->sha[i], rep->str, 41);
        freeReplyObject(rep);
        if (bad) {
            drop(r, NULL);
            return SH_ENET;
        }
    }
    return SH_OK;
}

/* One handshake command's reply (freed here): 0, else the connection dropped and fail_rc
   (SH_ENET when there was no reply). */
static int handshake_step(struct cl__redis *r, redisReply *rep, const char *what, int fail_rc)
{
    if (!rep) {
        drop(r, what);
        return SH_ENET;
    }
    int bad = expect(r, rep, REDIS_REPLY_STATUS, what);
    freeReplyObject(rep);
    if (bad) {
        drop(r, NULL);
        return fail_rc;
    }
    return SH_OK;
}

/* AUTH and SELECT on a fresh connection: 0, SH_EAUTH or SH_ENET (dropped either way). */
static int handshake(struct cl__redis *r)
{
    int rc = SH_OK;
    if (r->url.password[0]) {
        const char *argv[] = {"AUTH", r->url.password};
        rc = handshake_step(r, redisCommandArgv(r->ctx, 2, argv, NULL), "auth", SH_EAUTH);
    }
    if (rc == SH_OK && r->url.db)
        rc = handshake_step(r, redisCommand(r->ctx, "SELECT %d", r->url.db), "select", SH_ENET);
    return rc;
}

int cl__redis_connect(struct cl__redis *r)
{
    drop(r, NULL);
    struct timeval tv = {.tv_sec = r->timeout_ms / 1000, .tv_usec = (r->timeout_ms % 1000) * 1000};
    uint64_t t0 = sh_now_ms();
    r->ctx = r->url.is_unix ? redisConnectUnixWithTimeout(r->url.path, tv)
                            : redisConnectWithTimeout(r->url.host, r->url.port, tv);
    if (!r->ctx) {
        set_err(r, "connect", "out of memory");
        return SH_ENET;
    }
    if (r->ctx->err) {
        drop(r, "connect");
        return SH_ENET;
    }
    if (redisSetTimeout(r->ctx, tv) != REDIS_OK) {
        drop(r, "connect");
        return SH_ENET;
    }
    if (!r->url.is_unix && redisEnableKeepAlive(r->ctx) != REDIS_OK) {
        drop(r, "connect");
        return SH_ENET;
    }
    int rc = handshake(r);
    if (!rc)
        rc = load_scripts(r);
    if (!rc) {
        r->err[0] = '\0';
        r->rtt_ms = (int)(sh_now_ms() - t0);
    }
    return rc;
}

int cl__redis_connected(const struct cl__redis *r)
{
    return r && r->ctx != NULL;
}

/* A reply came back (or NULL: the connection broke, which drops it). */
static redisReply *finish(struct cl__redis *r, void *rep, uint64_t t0, const char *what)
{
    if (!rep) {
        drop(r, what);
        return NULL;
    }
    r->rtt_ms = (int)(sh_now_ms() - t0);
    return rep;
}

redisReply *cl__redis_cmd(struct cl__redis *r, const char *fmt, ...)
{
    if (!r->ctx)
        return NULL;
    uint64_t t0 = sh_now_ms();
    va_list ap;
    va_start(ap, fmt);
    void *rep = redisvCommand(r->ctx, fmt, ap);
    va_end(ap);
    return finish(r, rep, t0, "command");
}

redisReply *cl__redis_argv(struct cl__redis *r, int argc, const char **argv, const size_t *lens)
{
    if (!r->ctx)
        return NULL;
    uint64_t t0 = sh_now_ms();
    return finish(r, redisCommandArgv(r->ctx, argc, argv, lens), t0, "command");
}

int cl__redis_append(struct cl__redis *r, const char *fmt, ...)
{
    if (!r->ctx)
        return SH_ENET;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(r->ctx, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK)
        return SH_ENOMEM;
    if (!r->pipeline_ms)
        r->pipeline_ms = sh_now_ms();
    return SH_OK;
}

int cl__redis_append_argv(struct cl__redis *r, int argc, const char **argv, const size_t *lens)
{
    if (!r->ctx)
        return SH_ENET;
    if (redisAppendCommandArgv(r->ctx, argc, argv, lens) != REDIS_OK)
        return SH_ENOMEM;
    if (!r->pipeline_ms)
        r->pipeline_ms = sh_now_ms();
    return SH_OK;
}

redisReply *cl__redis_read(struct cl__redis *r)
{
    if (!r->ctx)
        return NULL;
    void *rep = NULL;
    uint64_t t0 = r->pipeline_ms ? r->pipeline_ms : sh_now_ms();
    if (redisGetReply(r->ctx, &rep) != REDIS_OK)
        rep = NULL;
    rep = finish(r, rep, t0, "read");
    r->pipeline_ms = 0;
    return rep;
}

#define MAX_SCRIPT_ARGS 32

static redisReply *evalsha(struct cl__redis *r, enum cl__script s, int nkeys, int argc,
                           const char **argv, const size_t *lens)
{
    const char *av[MAX_SCRIPT_ARGS + 3];
    size_t al[MAX_SCRIPT_ARGS + 3];
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    av[1] = r->sha[s];
    av[2] = nk;
    for (int i = 0; i < 3; i++)
        al[i] = strlen(av[i]);
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    return cl__redis_argv(r, argc + 3, av, al);
}

redisReply *cl__redis_script(struct cl__redis *r, enum cl__script s, int nkeys, int argc,
                             const char **argv, const size_t *lens)
{
    if ((unsigned)s >= CL_SCRIPT_COUNT || argc < nkeys || nkeys < 0 || argc > MAX_SCRIPT_ARGS) {
        set_err(r, "script", "bad arguments");
        return NULL;
    }
    if (!r->ctx)
        return NULL;
    redisReply *rep = evalsha(r, s, nkeys, argc, argv, lens);
    if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8)) {
        /* Redis restarted or flushed its scripts: load them all again, retry once */
        freeReplyObject(rep);
        if (load_scripts(r))
            return NULL;
        rep = evalsha(r, s, nkeys, argc, argv, lens);
    }
    return rep;
}

const char *cl__redis_script_sha(const struct cl__redis *r, enum cl__script s)
{
    return (unsigned)s < CL_SCRIPT_COUNT ? r->sha[s] : "";
}

int cl__redis_rtt_ms(const struct cl__redis *r)
{
    return r->rtt_ms;
}

const char *cl__redis_error(const struct cl__redis *r)
{
    return r->err;
}

const char *cl__redis_where(const struct cl__redis *r)
{
    return r->where;
}

void cl__redis_free(struct cl__redis *r)
{
    if (!r)
        return;
    drop(r, NULL);
    memset(r->url.password, 0, sizeof(r->url.password));
    free(r);
}

/* ---- key names ---- */

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* The token's first part base64-decoded into out when it is 1..20 digits; else 0. */
static int app_id_from_token(const char *token, char *out, size_t cap)
{
    char digits[32];
    size_t n = 0;
    unsigned bits = 0, nbits = 0;
    for (const char *p = token; *p && *p != '.'; p++) {
        if (*p == '=')
            break;
        int v = b64_value(*p);
        if (v < 0)
            return 0;
        bits = (bits << 6) | (unsigned)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            char ch = (char)((bits >> nbits) & 0xff);
            if (ch < '0' || ch > '9' || n + 1 >= sizeof(digits))
                return 0;
            digits[n++] = ch;
        }
    }
    if (n == 0 || n > 20 || n + 1 > cap)
        return 0;
    memcpy(out, digits, n);
    out[n] = '\0';
    return 1;
}

void cl__app_id(const char *token, char *out, size_t cap)
{
    if (!cap)
        return;
    if (!token)
        token = "";
    if (app_id_from_token(token, out, cap))
        return;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), md);
    size_t i = 0;
    for (; i < 8 && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[2 * i] = '\0';
}

void cl__key_prefix(const char *token, char *out, size_t cap)
{
    char app[32];
    cl__app_id(token, app, sizeof(app));
    snprintf(out, cap, "shardhook:{%s}:", app);
}
