/* lib/queue.c: the mutex-guarded list of lib/queue.h. */
#include "lib/queue.h"

void sh_queue_init(struct sh_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = NULL;
    q->tail = &q->head;
}

void sh_queue_destroy(struct sh_queue *q)
{
    pthread_mutex_destroy(&q->lock);
}

int sh_queue_push(struct sh_queue *q, struct sh_qnode *n)
{
    n->next = NULL;
    pthread_mutex_lock(&q->lock);
    int was_empty = q->head == NULL;
    *q->tail = n;
    q->tail = &n->next;
    pthread_mutex_unlock(&q->lock);
    return was_empty;
}

struct sh_qnode *sh_queue_take(struct sh_queue *q)
{
    pthread_mutex_lock(&q->lock);
    struct sh_qnode *all = q->head;
    q->head = NULL;
    q->tail = &q->head;
    pthread_mutex_unlock(&q->lock);
    return all;
}

int sh_queue_empty(struct sh_queue *q)
{
    pthread_mutex_lock(&q->lock);
    int empty = q->head == NULL;
    pthread_mutex_unlock(&q->lock);
    return empty;
}
