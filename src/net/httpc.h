/* httpc.h - HTTP(S) client: curl multi handles on one event loop, driven by
 * libevent (curl's hiperfifo pattern, minus its evtimer_del bug).
 *
 * Contract (libuv's): if httpc_call_start() returns GW_OK, the callback runs
 * exactly once, later, from the loop - never from inside httpc_call_start -
 * unless httpc_call_cancel() is called first, after which it never runs.
 * Proxies come from the standard environment variables (curl reads them). */
#ifndef GW_HTTPC_H
#define GW_HTTPC_H

#include "gw.h"

struct event_base;
struct httpc;
struct httpc_call;

struct httpc_opts {
	const char *ca_bundle;      /* NULL = system default */
	long connect_timeout_ms;    /* default 10000 */
	const char *user_agent;     /* NULL = "enginelabs-2api/<version>" */
};

struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *opts);
/* Cancels every call still in flight (their callbacks never run) and every
 * WebSocket made on this client must already be freed. */
void httpc_free(struct httpc *h);

struct httpc_resp {
	enum gw_err err;         /* GW_OK when a status line arrived; else GW_ETIMEOUT, GW_EIO, GW_ELIMIT */
	long status;             /* 0 when err != GW_OK */
	const char *body;        /* NUL-terminated, never NULL */
	size_t body_len;
	const char *headers;     /* raw header block of the final response, "Name: value\r\n" lines */
	size_t headers_len;
	const char *error;       /* human-readable cause when err != GW_OK, never NULL */
	uint64_t elapsed_us;
};

/* resp and everything it points to are valid only during the callback. */
typedef void httpc_done_cb(const struct httpc_resp *resp, void *arg);

struct httpc_call_opts {
	const char *method;            /* "GET", "POST", "PATCH", "DELETE" */
	const char *url;
	const char *const *headers;    /* NULL-terminated "Name: value" lines; copied */
	const char *body;              /* copied; may be NULL */
	size_t body_len;
	long timeout_ms;               /* whole call; 0 = 30000 */
	size_t max_resp_bytes;         /* 0 = 1 MiB; a bigger body ends with GW_ELIMIT */
	/* Write the request and read the response here, over a connection
	 * curl opened and that is kept for the next direct call (h1c.h):
	 * about an eighth of the CPU of a curl transfer. For small calls on
	 * the hot path; a URL h1c cannot take goes through curl. */
	bool direct;
};

enum gw_err httpc_call_start(struct httpc *h, const struct httpc_call_opts *o,
			     httpc_done_cb *cb, void *arg, struct httpc_call **out) GW_MUSTCHECK;
void httpc_call_cancel(struct httpc_call *c);

/* Iterates the values of header `name` (case-insensitive) in resp->headers.
 * Start with *pos = NULL. Returns false when there are no more. */
bool httpc_header_next(const struct httpc_resp *r, const char *name, const char **pos,
		       const char **val, size_t *vlen);

/* Number of calls and WebSockets currently open on this client (for tests, stats). */
size_t httpc_active(const struct httpc *h);

#endif
