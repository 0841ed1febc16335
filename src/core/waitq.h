/* waitq.h - waiting on something another worker thread may finish.
 *
 * A waiter belongs to one request on one loop. The side that finishes the
 * work (any thread, holding the lock that guards the queue) records the
 * result and wakes the waiter; its callback then runs on its own loop.
 * Cancelling (on the waiter's thread, under the same lock) guarantees the
 * callback will not run. */
#ifndef GW_WAITQ_H
#define GW_WAITQ_H

#include "gw.h"

struct event_base;
struct event;

struct waitq;

struct waiter {
	struct waiter *next, **pprev; /* linked while queued */
	struct waitq *q;              /* the queue it is on, NULL when not queued */
	struct event *ev;
	enum gw_err err;              /* the result, set before the wake-up */
	void (*cb)(struct waiter *wt, void *arg);
	void *arg;
	const void *want;             /* what the waiter waits for (queue-specific) */
	bool flag;                    /* queue-specific extra result */
	bool fired;                   /* woken, callback not yet run */
	int tag;                      /* which queue of its owner it waits in */
};

struct waitq {
	struct waiter *head, **tail;
};

void waitq_init(struct waitq *q);
bool waitq_empty(const struct waitq *q);

/* Prepares a waiter whose cb will run on base. */
enum gw_err waiter_init(struct waiter *wt, struct event_base *base,
			void (*cb)(struct waiter *wt, void *arg), void *arg) GW_MUSTCHECK;
/* Frees the event; the waiter must not be queued (cancel it first). */
void waiter_fini(struct waiter *wt);

/* Queue operations: call with the queue's lock held. */
void waitq_push(struct waitq *q, struct waiter *wt);
struct waiter *waitq_peek(struct waitq *q);
/* Unlinks wt (no-op if not queued); returns true if it was queued. */
bool waitq_remove(struct waiter *wt);
/* For cancelling (queue lock held, on the waiter's thread): true when wt
 * was already woken but its callback has not run, so whatever the wake
 * granted must be given back by the caller. Clears that state. */
bool waitq_take_unconsumed(struct waiter *wt);
/* Unlinks wt and schedules its callback with err. */
void waitq_wake(struct waiter *wt, enum gw_err err);
void waitq_wake_all(struct waitq *q, enum gw_err err);

#endif
