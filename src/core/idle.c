/* idle.c - malloc_trim after a quiet interval (see idle.h). */
#include "core/idle.h"
#include "core/app.h"
#include "util/log.h"

#include <event2/event.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Long enough that a steady trickle of requests never pays for a trim, short
 * enough that memory comes back within a minute of the last stream. */
#define IDLE_INTERVAL_S 10

struct idle {
	struct app *app;
	struct event *tick;
	struct idle_state st;
};

bool idle_due(struct idle_state *s, unsigned long started, long open)
{
	bool quiet = s->looked && open == 0 && started == s->seen;
	if (!s->looked || started != s->seen)
		s->dirty = true;
	s->seen = started;
	s->looked = true;
	if (!quiet || !s->dirty)
		return false;
	s->dirty = false;
	return true;
}

bool idle__look(struct idle *i)
{
	if (!idle_due(&i->st, atomic_load(&i->app->calls_started), atomic_load(&i->app->streams)))
		return false;
#ifdef __GLIBC__
	/* Every arena, whole free pages only; a few ms on a large heap, and the
	 * loop has nothing else to do. */
	int released = malloc_trim(0);
	log_debug(NULL, "idle: free memory %s to the system", released ? "given back" : "already given back");
#endif
	return true;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	(void)idle__look(arg);
}

struct idle *idle_new(struct app *app, struct event_base *base)
{
	struct idle *i = gw_calloc(1, sizeof(*i));
	if (!i)
		return NULL;
	i->app = app;
	i->tick = event_new(base, -1, EV_PERSIST, on_tick, i);
	struct timeval tv = { IDLE_INTERVAL_S, 0 };
	if (!i->tick || event_add(i->tick, &tv) != 0) {
		idle_free(i);
		return NULL;
	}
	return i;
}

void idle_free(struct idle *i)
{
	if (!i)
		return;
	if (i->tick)
		event_free(i->tick);
	gw_free(i);
}
