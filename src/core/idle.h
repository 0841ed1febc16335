/* idle.h - gives freed memory back to the system once the gateway is quiet.
 *
 * glibc keeps what a burst of streams freed in its arenas, so a gateway
 * that idles for months after one busy hour would hold its peak RSS all
 * that time (2,000 streams: 12 MB before, 52 MB ever after). After an
 * interval with no chat call open and none started, the free pages of
 * every arena are released (malloc_trim), once per quiet spell. */
#ifndef GW_CORE_IDLE_H
#define GW_CORE_IDLE_H

#include "gw.h"

#include <stdbool.h>

struct app;
struct event_base;
struct idle;

/* What the watch remembers between two looks; zero it to start. */
struct idle_state {
	unsigned long seen; /* calls started, at the last look */
	bool looked;
	bool dirty;         /* work (or start-up) since the last trim */
};

/* The decision, apart for tests: true when the interval that ends now was
 * quiet (no call open, none started since the last look) and calls ran,
 * or the process started, since the last trim. Updates s. */
bool idle_due(struct idle_state *s, unsigned long started, long open);

/* Looks every IDLE_INTERVAL_S seconds on base's loop (call on its thread).
 * NULL when out of memory: the gateway runs on, without trimming. */
struct idle *idle_new(struct app *app, struct event_base *base);
/* Accepts NULL. */
void idle_free(struct idle *i);

/* Tests: one look, as the timer takes it, at the app's counters; true if
 * it trimmed. */
bool idle__look(struct idle *i);

#endif
