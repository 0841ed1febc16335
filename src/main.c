/* main.c - start-up, worker threads, signals, ordered shutdown. */
#include "gw.h"
#include "config.h"
#include "core/app.h"
#include "core/call.h"
#include "core/cleanup.h"
#include "core/idle.h"
#include "core/pool.h"
#include "front/server.h"
#include "net/httpc.h"
#include "store/store.h"
#include "util/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define DRAIN_CHECK_MS 50

static void usage(void)
{
	dprintf(STDOUT_FILENO,
		"enginelabs-2api %s - OpenAI-compatible gateway to cto.new models\n\n"
		"usage: enginelabs-2api [--help] [--version] [--check-config] [--NAME=value ...]\n\n"
		"Settings come from .env in the working directory, then the environment, then flags.\n"
		"Signals: TERM/INT drain and exit (twice: exit at once), HUP reloads settings.\n\n"
		"settings:\n",
		GW_VERSION);
	config_usage(STDOUT_FILENO);
}

struct post {
	void (*fn)(void *arg);
	void *arg;
};

static void post_run(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct post p = *(struct post *)arg;
	gw_free(arg);
	p.fn(p.arg);
}

enum gw_err worker_post(struct worker *w, void (*fn)(void *arg), void *arg)
{
	struct post *p = gw_malloc(sizeof(*p));
	if (!p)
		return GW_ENOMEM;
	p->fn = fn;
	p->arg = arg;
	/* event_base_once is thread-safe once evthread_use_pthreads() ran. */
	if (event_base_once(w->base, -1, EV_TIMEOUT, post_run, p, NULL) != 0) {
		gw_free(p);
		return GW_ENOMEM;
	}
	return GW_OK;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn(NULL, "cannot raise the open-file limit: %s", strerror(errno));
	}
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct worker *w = arg;
	/* Wait for every worker: the main thread joins the others once its own
	 * loop ends, which must not cut their streams short. */
	if (atomic_load(&w->app->streams) == 0 && atomic_load(&w->app->flushing) == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	struct timeval tv = { 0, DRAIN_CHECK_MS * 1000 };
	evtimer_add(w->drain_timer, &tv);
}

static void drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct worker *w = arg;
	if (w->n_calls)
		log_warn(NULL, "shutdown: ending %zu stream(s) still open after the drain deadline", w->n_calls);
	call_abort_all(w, 503, "The gateway is shutting down; the reply was cut off.");
	/* Give the error events a moment to reach their clients, no more. */
	struct timeval grace = { 1, 0 };
	event_base_loopexit(w->base, &grace);
}

static void worker_start_drain(void *arg)
{
	struct worker *w = arg;
	struct gw_config *cfg = config_current();
	server_stop_listening(w->server);
	struct timeval now = { 0, 0 }, dl = { cfg->shutdown_timeout, 0 };
	config_unref(cfg);
	w->drain_timer = evtimer_new(w->base, drain_check, w);
	if (!w->drain_timer || event_base_once(w->base, -1, EV_TIMEOUT, drain_deadline, w, &dl) != 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	evtimer_add(w->drain_timer, &now);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	GW_UNUSED(what);
	struct app *app = arg;
	if (atomic_exchange(&app->draining, true)) {
		log_warn(NULL, "second %s: exiting now", sig == SIGINT ? "SIGINT" : "SIGTERM");
		_exit(0);
	}
	log_info(NULL, "%s: draining %ld stream(s), then exiting (send again to exit at once)",
		 sig == SIGINT ? "SIGINT" : "SIGTERM", atomic_load(&app->streams));
	for (size_t i = 0; i < app->n_workers; i++)
		if (worker_post(&app->workers[i], worker_start_drain, &app->workers[i]) != GW_OK)
			event_base_loopexit(app->workers[i].base, NULL);
}

static void worker_apply_config(void *arg)
{
	struct worker *w = arg;
	struct gw_config *cfg = config_current();
	server_apply_config(w->server, cfg);
	config_unref(cfg);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	GW_UNUSED(sig);
	GW_UNUSED(what);
	struct app *app = arg;
	char err[512];
	struct gw_config *next = config_load(app->env_path, app->argc, app->argv, err, sizeof(err));
	if (!next) {
		log_error(NULL, "SIGHUP: reload refused, keeping the running settings: %s", err);
		return;
	}
	struct gw_config *cur = config_current();
	config_keep_fixed(next, cur);
	config_unref(cur);
	log_setup((enum log_level)next->log_level, (enum log_format)next->log_format);
	config_install(next);
	pool_reload(app->pool, next);
	for (size_t i = 0; i < app->n_workers; i++)
		if (worker_post(&app->workers[i], worker_apply_config, &app->workers[i]) != GW_OK)
			log_warn(NULL, "SIGHUP: worker %zu did not get the new limits", i);
	log_info(NULL, "SIGHUP: settings reloaded");
}

static bool worker_init(struct app *app, size_t idx, const struct gw_config *cfg, char *err, size_t errlen)
{
	struct worker *w = &app->workers[idx];
	w->idx = (int)idx;
	w->app = app;
	w->base = event_base_new();
	if (!w->base)
		return snprintf(err, errlen, "cannot create an event loop"), false;
	struct httpc_opts ho = {
		.ca_bundle = *cfg->ca_bundle ? cfg->ca_bundle : NULL,
		.connect_timeout_ms = cfg->upstream_connect_timeout * 1000,
	};
	w->httpc = httpc_new(w->base, &ho);
	if (!w->httpc)
		return snprintf(err, errlen, "cannot create the upstream HTTP client"), false;
	w->server = server_new(w, cfg, err, errlen);
	return w->server != NULL;
}

static void worker_fini(struct worker *w)
{
	call_abort_all(w, 503, "The gateway is shutting down.");
	server_free(w->server);
	httpc_free(w->httpc);
	if (w->drain_timer)
		event_free(w->drain_timer);
	if (w->base)
		event_base_free(w->base);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_dispatch(w->base);
	return NULL;
}

static int run(struct app *app, struct gw_config *cfg)
{
	char err[512];
	app->n_workers = (size_t)cfg->workers;
	app->workers = gw_calloc(app->n_workers, sizeof(*app->workers));
	if (!app->workers)
		return log_error(NULL, "out of memory"), 1;
	for (size_t i = 0; i < app->n_workers; i++) {
		if (!worker_init(app, i, cfg, err, sizeof(err))) {
			log_error(NULL, "%s", err);
			return 1;
		}
	}
	struct event_base *main_base = app->workers[0].base;
	struct event *sterm = evsignal_new(main_base, SIGTERM, on_stop_signal, app);
	struct event *sint = evsignal_new(main_base, SIGINT, on_stop_signal, app);
	struct event *shup = evsignal_new(main_base, SIGHUP, on_hup, app);
	if (!sterm || !sint || !shup || evsignal_add(sterm, NULL) || evsignal_add(sint, NULL) ||
	    evsignal_add(shup, NULL))
		return log_error(NULL, "cannot install signal handlers"), 1;

	for (size_t i = 1; i < app->n_workers; i++) {
		if (pthread_create(&app->workers[i].thread, NULL, worker_main, &app->workers[i]) != 0)
			return log_error(NULL, "cannot start worker thread %zu", i), 1;
	}
	/* Upstream hygiene runs on worker 0 only, whose loop is this thread's. */
	struct cleanup *cleanup = cleanup_new(&app->workers[0]);
	if (!cleanup)
		log_warn(NULL, "upstream clean-up not started: out of memory");
	struct idle *idle = idle_new(app, main_base);
	if (!idle)
		log_warn(NULL, "idle memory trim not started: out of memory");
	log_info(NULL, "listening on http://%s:%ld (%zu worker%s, store %s, flow %s)", cfg->host, cfg->port,
		 app->n_workers, app->n_workers == 1 ? "" : "s", store_kind(app->store),
		 cfg->engine_flow == FLOW_2025 ? "2025" : "2026");
	event_base_dispatch(main_base);
	for (size_t i = 1; i < app->n_workers; i++) {
		event_base_loopexit(app->workers[i].base, NULL);
		pthread_join(app->workers[i].thread, NULL);
	}
	/* Before app_free frees the HTTP clients and the store it uses. */
	cleanup_free(cleanup);
	idle_free(idle);
	event_free(sterm);
	event_free(sint);
	event_free(shup);
	return 0;
}

static void app_free(struct app *app)
{
	for (size_t i = 0; app->workers && i < app->n_workers; i++)
		worker_fini(&app->workers[i]);
	gw_free(app->workers);
	pool_free(app->pool);
	store_close(app->store);
}

static int check_flags(int argc, char **argv, bool *check_only)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage();
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			dprintf(STDOUT_FILENO, "enginelabs-2api %s\n", GW_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "--check-config") == 0) {
			*check_only = true;
		} else if (strncmp(argv[i], "--", 2) != 0 || !strchr(argv[i], '=')) {
			dprintf(STDERR_FILENO, "enginelabs-2api: unknown argument '%s' (see --help)\n", argv[i]);
			return 2;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	bool check_only = false;
	int rc = check_flags(argc, argv, &check_only);
	if (rc >= 0)
		return rc;

	char err[512];
	struct gw_config *cfg = config_load(".env", argc, argv, err, sizeof(err));
	if (!cfg) {
		dprintf(STDERR_FILENO, "enginelabs-2api: configuration error: %s\n", err);
		return 1;
	}
	if (check_only) {
		config_print(cfg, STDOUT_FILENO);
		dprintf(STDOUT_FILENO, "configuration OK\n");
		config_unref(cfg);
		return 0;
	}
	log_setup((enum log_level)cfg->log_level, (enum log_format)cfg->log_format);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (evthread_use_pthreads() != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error(NULL, "cannot initialise libevent threads or libcurl");
		return 1;
	}
	json_set_alloc_funcs(gw_malloc, gw_free);

	struct app app = { .started_ms = gw_now_ms(), .env_path = ".env", .argc = argc, .argv = argv };
	config_install(config_ref(cfg));
	struct store_opts so = { .ttl_s = cfg->store_ttl, .max_entries = (size_t)cfg->store_max_entries };
	app.store = store_open(cfg->store_url, &so, err, sizeof(err));
	if (!app.store) {
		log_error(NULL, "STORE_URL: %s", err);
		return 1;
	}
	app.pool = pool_new(&app, cfg, err, sizeof(err));
	if (!app.pool) {
		log_error(NULL, "%s", err);
		store_close(app.store);
		return 1;
	}
	rc = run(&app, cfg);
	app_free(&app);
	config_unref(cfg);
	config_install(NULL);
	curl_global_cleanup();
	log_info(NULL, "stopped");
	return rc;
}
