/*
 * bridge/hookauth.c: copies of the webhooks' secrets and headers, swapped in by the delivery
 * thread when a reload queued new ones (bridge/hookauth.h). A queued copy waits under a mutex;
 * an atomic flag spares the delivery thread the lock while nothing is queued.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/hookauth.h"
#include "lib/errors.h"

struct entry {
    struct br_hookauth *cur;  /* delivery thread */
    struct br_hookauth *next; /* under lock */
};

struct br_hookauth_set {
    pthread_mutex_t lock;
    atomic_int queued;
    size_t n;
    struct entry *e;
};

static void auth_free(struct br_hookauth *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->secrets && i < a->n_secrets; i++)
        free(a->secrets[i]);
    free(a->secrets);
    for (size_t i = 0; a->headers && i < a->n_headers; i++) {
        free(a->headers[i].name);
        free(a->headers[i].value);
    }
    free(a->headers);
    free(a);
}

static struct br_hookauth *auth_copy(const struct cfg_webhook *w)
{
    struct br_hookauth *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->secrets = calloc(w->n_secrets ? w->n_secrets : 1, sizeof(*a->secrets));
    a->headers = calloc(w->n_headers ? w->n_headers : 1, sizeof(*a->headers));
    int ok = a->secrets && a->headers;
    for (size_t i = 0; ok && i < w->n_secrets; i++, a->n_secrets++)
        ok = (a->secrets[i] = strdup(w->secrets[i])) != NULL;
    for (size_t i = 0; ok && i < w->n_headers; i++, a->n_headers++) {
        a->headers[i].name = strdup(w->headers[i].name);
        a->headers[i].value = strdup(w->headers[i].value);
        ok = a->headers[i].name && a->headers[i].value;
    }
    if (!ok) {
        auth_free(a);
        return NULL;
    }
    return a;
}

int br_hookauth_new(const struct cfg_config *cfg, struct br_hookauth_set **out)
{
    struct br_hookauth_set *s = calloc(1, sizeof(*s));
    if (!s)
        return SH_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->queued, 0);
    s->n = cfg->n_webhooks;
    s->e = calloc(s->n ? s->n : 1, sizeof(*s->e));
    int ok = s->e != NULL;
    for (size_t i = 0; ok && i < s->n; i++)
        ok = (s->e[i].cur = auth_copy(&cfg->webhooks[i])) != NULL;
    if (!ok) {
        br_hookauth_free(s);
        return SH_ENOMEM;
    }
    *out = s;
    return SH_OK;
}

int br_hookauth_update(struct br_hookauth_set *s, size_t i, const struct cfg_webhook *w)
{
    if (!s || i >= s->n)
        return SH_EINVAL;
    struct br_hookauth *a = auth_copy(w);
    if (!a)
        return SH_ENOMEM;
    pthread_mutex_lock(&s->lock);
    struct br_hookauth *old = s->e[i].next;
    s->e[i].next = a;
    atomic_store(&s->queued, 1);
    pthread_mutex_unlock(&s->lock);
    auth_free(old);
    return SH_OK;
}

const struct br_hookauth *br_hookauth_current(struct br_hookauth_set *s, size_t i)
{
    if (atomic_load(&s->queued)) {
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < s->n; k++)
            if (s->e[k].next) {
                auth_free(s->e[k].cur);
                s->e[k].cur = s->e[k].next;
                s->e[k].next = NULL;
            }
        atomic_store(&s->queued, 0);
        pthread_mutex_unlock(&s->lock);
    }
    return s->e[i].cur;
}

void br_hookauth_free(struct br_hookauth_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->e && i < s->n; i++) {
        auth_free(s->e[i].cur);
        auth_free(s->e[i].next);
    }
    free(s->e);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
