/*
 * tests/fake/record.c: the fake Discord's log (connections, received payloads, REST calls,
 * rule violations) and its JSON form for GET /_fake/log. Owns the log arrays; connection
 * records are shared with gateway.c, which fills in their close fields. Every array has a
 * hard cap: entries past it are counted as dropped, never stored.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errors.h"
#include "tests/fake/fake.h"

struct received {
    uint64_t conn;
    double t_ms;
    int op;
    char *payload; /* the client's JSON text, already validated */
};

struct rest {
    double t_ms;
    char *path;
    int status;
};

struct violation {
    double t_ms;
    int shard;
    const char *what;
};

/* An IDENTIFY (kind 'i') or RESUME (kind 'r') as the fake judged it. */
struct attempt {
    char kind;
    double t_ms;
    uint64_t conn;
    int shard;           /* -1: unknown (a RESUME of a session the fake never had) */
    long bucket_or_seq;  /* IDENTIFY: its bucket; RESUME: the seq it named (-1: none) */
    const char *refused; /* static text, NULL: accepted */
    size_t replayed;     /* RESUME: events replayed */
    char session[48];    /* IDENTIFY: the new session; RESUME: the one named (cut) */
};

static struct fk_conn_rec **conns;
static size_t n_conns, cap_conns;
static struct received *recv_log;
static size_t n_recv, cap_recv;
static struct rest *rest_log;
static size_t n_rest, cap_rest;
static struct violation *viol_log;
static size_t n_viol, cap_viol;
static struct attempt *att_log;
static size_t n_att, cap_att;
static uint64_t dropped;

/* Make room for one more element in a growable array; 0 or -1 (cap reached / no memory). */
static int grow(void **arr, size_t *cap, size_t n, size_t elem, size_t max)
{
    if (n < *cap)
        return 0;
    if (n >= max)
        return -1;
    size_t ncap = *cap ? *cap * 2 : 64;
    if (ncap > max)
        ncap = max;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

int fk_rec_conn_add(struct fk_conn_rec *r)
{
    if (grow((void **)&conns, &cap_conns, n_conns, sizeof(*conns), FK_MAX_RECORDS))
        return SH_ETOOBIG;
    conns[n_conns++] = r;
    return 0;
}

void fk_rec_received(uint64_t conn, int op, const char *payload, size_t len)
{
    if (grow((void **)&recv_log, &cap_recv, n_recv, sizeof(*recv_log), FK_MAX_RECEIVED)) {
        dropped++;
        return;
    }
    char *p = malloc(len + 1);
    if (!p) {
        dropped++;
        return;
    }
    memcpy(p, payload, len);
    p[len] = '\0';
    recv_log[n_recv++] = (struct received){conn, fk_now_ms(), op, p};
}

void fk_rec_rest(const char *path, int status)
{
    if (grow((void **)&rest_log, &cap_rest, n_rest, sizeof(*rest_log), FK_MAX_RECORDS)) {
        dropped++;
        return;
    }
    char *p = strdup(path);
    if (!p) {
        dropped++;
        return;
    }
    rest_log[n_rest++] = (struct rest){fk_now_ms(), p, status};
}

void fk_rec_violation(int shard, const char *what)
{
    fprintf(stderr, "fake-discord: violation shard=%d what=\"%s\"\n", shard, what);
    if (grow((void **)&viol_log, &cap_viol, n_viol, sizeof(*viol_log), FK_MAX_RECORDS)) {
        dropped++;
        return;
    }
    viol_log[n_viol++] = (struct violation){fk_now_ms(), shard, what};
}

static void rec_attempt(struct attempt a, const char *session)
{
    if (grow((void **)&att_log, &cap_att, n_att, sizeof(*att_log), FK_MAX_RECORDS)) {
        dropped++;
        return;
    }
    a.t_ms = fk_now_ms();
    snprintf(a.session, sizeof(a.session), "%s", session ? session : "");
    for (char *p = a.session; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?'; /* a client's bytes, cut anywhere: keep the log valid UTF-8 */
    att_log[n_att++] = a;
}

void fk_rec_identify(uint64_t conn, int shard, long bucket, const char *refused,
                     const char *session)
{
    rec_attempt(
        (struct attempt){
            .kind = 'i', .conn = conn, .shard = shard, .bucket_or_seq = bucket, .refused = refused},
        session);
}

void fk_rec_resume(uint64_t conn, int shard, const char *session, long seq, const char *refused,
                   size_t replayed)
{
    rec_attempt((struct attempt){.kind = 'r',
                                 .conn = conn,
                                 .shard = shard,
                                 .bucket_or_seq = seq,
                                 .refused = refused,
                                 .replayed = replayed},
                session);
}

static int rec_is_live(const struct fk_conn_rec *r)
{
    return r->closed_ms < 0;
}

void fk_rec_reset(void)
{
    size_t keep = 0;
    for (size_t i = 0; i < n_conns; i++) {
        if (rec_is_live(conns[i])) {
            conns[keep++] = conns[i];
        } else {
            free(conns[i]->path);
            free(conns[i]->query);
            free(conns[i]);
        }
    }
    n_conns = keep;
    for (size_t i = 0; i < n_recv; i++)
        free(recv_log[i].payload);
    n_recv = 0;
    for (size_t i = 0; i < n_rest; i++)
        free(rest_log[i].path);
    n_rest = 0;
    n_viol = 0;
    n_att = 0;
    dropped = 0;
}

int fk_json_str(struct sh_buf *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = sh_buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            rc = sh_buf_append(out, e, 2);
        } else if (*p < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            rc = sh_buf_append(out, e, 6);
        } else {
            rc = sh_buf_append(out, p, 1);
        }
    }
    return rc ? rc : sh_buf_append(out, "\"", 1);
}

static int json_int_or_null(struct sh_buf *out, int v)
{
    return v == FK_NONE_INT ? sh_buf_append_str(out, "null") : sh_buf_printf(out, "%d", v);
}

static int conns_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, "\"connections\":[");
    for (size_t i = 0; !rc && i < n_conns; i++) {
        const struct fk_conn_rec *r = conns[i];
        rc = sh_buf_printf(out, "%s{\"id\":%" PRIu64 ",\"path\":", i ? "," : "", r->id);
        rc = rc ? rc : fk_json_str(out, r->path ? r->path : "");
        rc = rc ? rc : sh_buf_append_str(out, ",\"query\":");
        rc = rc ? rc : fk_json_str(out, r->query ? r->query : "");
        rc = rc ? rc : sh_buf_append_str(out, ",\"shard\":");
        rc = rc ? rc : json_int_or_null(out, r->shard < 0 ? FK_NONE_INT : r->shard);
        rc = rc ? rc : sh_buf_printf(out, ",\"opened_ms\":%.3f,\"closed_ms\":", r->opened_ms);
        if (!rc)
            rc = r->closed_ms < 0 ? sh_buf_append_str(out, "null")
                                  : sh_buf_printf(out, "%.3f", r->closed_ms);
        rc = rc ? rc : sh_buf_append_str(out, ",\"close_code\":");
        rc = rc ? rc : json_int_or_null(out, r->close_code);
        rc = rc ? rc : sh_buf_append_str(out, ",\"closed_by\":");
        if (!rc)
            rc = r->closed_by ? fk_json_str(out, r->closed_by) : sh_buf_append_str(out, "null");
        rc = rc ? rc : sh_buf_append_str(out, ",\"reason\":");
        if (!rc)
            rc = r->reason ? fk_json_str(out, r->reason) : sh_buf_append_str(out, "null");
        rc = rc ? rc : sh_buf_append_str(out, "}");
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}

static int received_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, ",\"received\":[");
    for (size_t i = 0; !rc && i < n_recv; i++) {
        const struct received *e = &recv_log[i];
        rc = sh_buf_printf(out, "%s{\"conn\":%" PRIu64 ",\"t_ms\":%.3f,\"op\":", i ? "," : "",
                           e->conn, e->t_ms);
        rc = rc ? rc : json_int_or_null(out, e->op);
        rc = rc ? rc : sh_buf_append_str(out, ",\"payload\":");
        rc = rc ? rc : sh_buf_append_str(out, e->payload);
        rc = rc ? rc : sh_buf_append_str(out, "}");
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}

static int rest_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, ",\"rest\":[");
    for (size_t i = 0; !rc && i < n_rest; i++) {
        rc = sh_buf_printf(out, "%s{\"t_ms\":%.3f,\"path\":", i ? "," : "", rest_log[i].t_ms);
        rc = rc ? rc : fk_json_str(out, rest_log[i].path);
        rc = rc ? rc : sh_buf_printf(out, ",\"status\":%d}", rest_log[i].status);
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}

/* Sessions oldest first (the list itself is newest first). */
static int sessions_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, ",\"sessions\":[");
    int first = 1, n = 0;
    struct fk_session **all = malloc(((size_t)fk.n_sessions + 1) * sizeof(*all));
    if (!all)
        return SH_ENOMEM;
    for (struct fk_session *s = fk.sessions; s && n < fk.n_sessions; s = s->next)
        all[n++] = s;
    while (!rc && n > 0) {
        const struct fk_session *s = all[--n];
        rc = sh_buf_printf(out,
                           "%s{\"session_id\":\"%s\",\"shard\":%d,\"seq\":%" PRIu64
                           ",\"live\":%s,\"ended\":%s,\"expired\":%s,"
                           "\"current\":%s}",
                           first ? "" : ",", s->id, s->shard, s->seq, s->conn ? "true" : "false",
                           s->ended ? "true" : "false", s->expired ? "true" : "false",
                           fk.shards[s->shard].cur == s ? "true" : "false");
        first = 0;
    }
    free(all);
    return rc ? rc : sh_buf_append_str(out, "]");
}

static int violations_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, ",\"violations\":[");
    for (size_t i = 0; !rc && i < n_viol; i++) {
        rc = sh_buf_printf(out, "%s{\"t_ms\":%.3f,\"shard\":%d,\"what\":", i ? "," : "",
                           viol_log[i].t_ms, viol_log[i].shard);
        rc = rc ? rc : fk_json_str(out, viol_log[i].what);
        rc = rc ? rc : sh_buf_append_str(out, "}");
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}

/* "identifies" and "resumes", each in the order they came. */
static int attempts_json(struct sh_buf *out, char kind)
{
    int rc = sh_buf_append_str(out, kind == 'i' ? ",\"identifies\":[" : ",\"resumes\":[");
    int n = 0;
    for (size_t i = 0; !rc && i < n_att; i++) {
        const struct attempt *a = &att_log[i];
        if (a->kind != kind)
            continue;
        rc = sh_buf_printf(out, "%s{\"t_ms\":%.3f,\"conn\":%" PRIu64 ",\"shard\":", n++ ? "," : "",
                           a->t_ms, a->conn);
        rc = rc ? rc : json_int_or_null(out, a->shard < 0 ? FK_NONE_INT : a->shard);
        if (kind == 'i')
            rc = rc ? rc : sh_buf_printf(out, ",\"bucket\":%ld", a->bucket_or_seq);
        else
            rc = rc ? rc
                    : sh_buf_printf(out, ",\"seq\":%ld,\"replayed\":%zu", a->bucket_or_seq,
                                    a->replayed);
        rc = rc ? rc : sh_buf_append_str(out, ",\"session_id\":");
        if (!rc)
            rc = a->session[0] ? fk_json_str(out, a->session) : sh_buf_append_str(out, "null");
        rc = rc ? rc : sh_buf_append_str(out, ",\"refused\":");
        if (!rc)
            rc = a->refused ? fk_json_str(out, a->refused) : sh_buf_append_str(out, "null");
        rc = rc ? rc : sh_buf_append_str(out, "}");
    }
    return rc ? rc : sh_buf_append_str(out, "]");
}

int fk_rec_json(struct sh_buf *out)
{
    int rc = sh_buf_append_str(out, "{");
    rc = rc ? rc : conns_json(out);
    rc = rc ? rc : received_json(out);
    rc = rc ? rc : rest_json(out);
    rc = rc ? rc : sessions_json(out);
    rc = rc ? rc : violations_json(out);
    rc = rc ? rc : attempts_json(out, 'i');
    rc = rc ? rc : attempts_json(out, 'r');
    rc = rc ? rc
            : sh_buf_printf(out, ",\"stream\":{\"period_ms\":%ld,\"emitted\":%" PRIu64 "}",
                            fk.stream_ms, fk.stream_n);
    rc = rc ? rc : sh_buf_printf(out, ",\"dropped\":%" PRIu64 "}", dropped);
    return rc;
}
