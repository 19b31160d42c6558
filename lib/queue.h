/*
 * lib/queue.h: the one cross-thread hand-off queue (h2o's multithread queue is the model).
 *
 * Any thread pushes; one consumer takes everything at once, in push order. The queue links
 * through a struct sh_qnode embedded in the item (SH_QUEUE_ITEM gets the item back) and
 * allocates nothing. It knows no wake-up: push returns 1 when the queue was empty, and only
 * then does the caller wake the consumer (lws_cancel_service, curl_multi_wakeup, a condvar);
 * later pushes ride on that wake-up, since the consumer takes them with the first. A caller
 * that keeps totals next to the queue (bytes, events) holds its own lock around push/take;
 * the lock order is then its lock first, the queue's second. Owns its mutex, not the items.
 */
#ifndef SHARDHOOK_LIB_QUEUE_H
#define SHARDHOOK_LIB_QUEUE_H

#include <pthread.h>
#include <stddef.h>

struct sh_qnode {
    struct sh_qnode *next; /* the next item in push order; NULL at the end */
};

struct sh_queue {
    pthread_mutex_t lock;
    struct sh_qnode *head;
    struct sh_qnode **tail; /* &head when empty, else &last->next */
};

/* The item of type `type` whose `member` is the node n. */
#define SH_QUEUE_ITEM(n, type, member) ((type *)(void *)((char *)(n)-offsetof(type, member)))

void sh_queue_init(struct sh_queue *q);
/* Only once nobody pushes any more; the items still queued are the caller's (take them first). */
void sh_queue_destroy(struct sh_queue *q);
/* Append n (any thread). Returns 1 when the queue was empty, so the caller wakes the consumer. */
int sh_queue_push(struct sh_queue *q, struct sh_qnode *n);
/* Take every queued item: the first pushed, linked through next in push order, or NULL. */
struct sh_qnode *sh_queue_take(struct sh_queue *q);
/* 1 when nothing is queued (a moment's answer: another thread may push right after). */
int sh_queue_empty(struct sh_queue *q);

#endif
