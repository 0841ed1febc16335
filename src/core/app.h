/* app.h - the process: shared state and the worker threads.
 *
 * Each worker owns an event loop, an HTTP front (its own listening socket
 * on the shared port, SO_REUSEPORT) and an upstream HTTP client. Everything
 * a request touches lives on its worker; what is shared between workers
 * (config, accounts, models, store) is behind a mutex or its own thread. */
#ifndef GW_APP_H
#define GW_APP_H

#include "gw.h"
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>

struct event_base;
struct event;
struct server;
struct httpc;
struct store;
struct pool;
struct models_cache;
struct call;

struct worker {
	int idx;
	pthread_t thread;
	struct app *app;
	struct event_base *base;
	struct server *server;
	struct httpc *httpc;
	struct call *calls;          /* live chat calls, for shutdown */
	size_t n_calls;
	struct event *drain_timer;
};

struct app {
	struct gw_config *boot_cfg;  /* the config at start (fixed keys) */
	struct worker *workers;
	size_t n_workers;
	struct store *store;
	struct pool *pool;
	struct models_cache *models;
	atomic_bool draining;
	atomic_bool stopping;
	atomic_long streams;         /* chat calls in flight, all workers */
	atomic_ulong calls_started;  /* chat calls ever started, all workers (idle.c) */
	atomic_long flushing;        /* chat replies not yet written out to their client */
	uint64_t started_ms;
	char *env_path;
	int argc;
	char **argv;
};

/* Runs fn(arg) on worker w's loop thread, soon. Safe from any thread. */
enum gw_err worker_post(struct worker *w, void (*fn)(void *arg), void *arg) GW_MUSTCHECK;

#endif
