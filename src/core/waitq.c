/* waitq.c - cross-thread wake-ups through event_active on the waiter's loop. */
#include "core/waitq.h"

#include <event2/event.h>

void waitq_init(struct waitq *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

bool waitq_empty(const struct waitq *q)
{
	return q->head == NULL;
}

static void waiter_fire(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct waiter *wt = arg;
	wt->fired = false;
	wt->cb(wt, wt->arg);
}

enum gw_err waiter_init(struct waiter *wt, struct event_base *base,
			void (*cb)(struct waiter *wt, void *arg), void *arg)
{
	wt->next = NULL;
	wt->pprev = NULL;
	wt->q = NULL;
	wt->fired = false;
	wt->tag = 0;
	wt->err = GW_OK;
	wt->cb = cb;
	wt->arg = arg;
	wt->want = NULL;
	wt->ev = event_new(base, -1, 0, waiter_fire, wt);
	return wt->ev ? GW_OK : GW_ENOMEM;
}

void waiter_fini(struct waiter *wt)
{
	GW_ASSERT(wt->q == NULL);
	if (wt->ev)
		event_free(wt->ev);
	wt->ev = NULL;
}

void waitq_push(struct waitq *q, struct waiter *wt)
{
	GW_ASSERT(wt->q == NULL);
	wt->next = NULL;
	wt->pprev = q->tail;
	wt->q = q;
	*q->tail = wt;
	q->tail = &wt->next;
}

struct waiter *waitq_peek(struct waitq *q)
{
	return q->head;
}

bool waitq_remove(struct waiter *wt)
{
	struct waitq *q = wt->q;
	if (!q)
		return false;
	*wt->pprev = wt->next;
	if (wt->next)
		wt->next->pprev = wt->pprev;
	else
		q->tail = wt->pprev;
	wt->next = NULL;
	wt->pprev = NULL;
	wt->q = NULL;
	return true;
}

bool waitq_take_unconsumed(struct waiter *wt)
{
	bool granted = wt->q == NULL && wt->fired;
	wt->fired = false;
	return granted;
}

void waitq_wake(struct waiter *wt, enum gw_err err)
{
	waitq_remove(wt);
	wt->err = err;
	wt->fired = true;
	event_active(wt->ev, EV_TIMEOUT, 1);
}

void waitq_wake_all(struct waitq *q, enum gw_err err)
{
	while (q->head)
		waitq_wake(q->head, err);
}
