/* httpc_internal.h - what ws.c needs from httpc.c: the multi handle, the
 * loop, and a way to get told when an easy handle it added is done.
 * Not for other modules. */
#ifndef GW_HTTPC_INTERNAL_H
#define GW_HTTPC_INTERNAL_H

#include "net/httpc.h"

#include <curl/curl.h>

struct httpc_multi;

/* REST calls in flight per httpc, and the keep-alive connections its
 * multi keeps. Calls past it wait in httpc's queue (no curl handle, no
 * buffer) and start on a connection a finished call left open, so a burst
 * neither opens nor keeps more than this. */
#define HTTPC_REST_CONNS 64L
/* WebSockets per curl multi. curl 7.88 finds a CONNECT_ONLY handle's
 * connection (getinfo ACTIVESOCKET, the first send, removal) by walking
 * every connection of its multi, so the WebSockets are spread over small
 * multis ("shards") and that walk is bounded by this, not by the number
 * of streams open. A multi costs about 6 KB. */
#define HTTPC_WS_PER_MULTI 64

/* CURLOPT_PRIVATE of every easy handle on the multi points to one of these;
 * httpc calls done() from the loop when curl reports CURLMSG_DONE for it.
 * done() may remove and free its own handle and start or cancel others. */
struct httpc_owner {
	void (*done)(struct httpc_owner *o, CURLcode res);
	/* httpc's own: set when its socket could not be watched (no memory);
	 * the handle is then failed from the loop with CURLE_OUT_OF_MEMORY. */
	bool doomed;
	struct httpc_owner *next_doomed;
	/* errno of this handle's last socket(), 0 if it succeeded: tells the
	 * gateway's own shortage (EMFILE, ...) from an upstream that cannot be
	 * reached. */
	int sock_errno;
	/* httpc's own: the multi the handle is on. */
	struct httpc_multi *mu;
};

/* What a failed transfer means: GW_ETIMEOUT, GW_ENOMEM (no descriptor or
 * memory here, not an upstream fault) or GW_EIO. */
enum gw_err httpc__result_err(const struct httpc_owner *o, CURLcode res);

struct event_base *httpc__base(struct httpc *h);
const char *httpc__user_agent(const struct httpc *h);

/* Options every easy handle gets: NOSIGNAL, CA bundle, connect timeout,
 * protocols limited to http(s), user agent, the DNS and TLS session share. */
enum gw_err httpc__setup_easy(struct httpc *h, CURL *e) GW_MUSTCHECK;
/* CURLOPT_URL = the first n bytes of url (its "scheme://authority") and
 * "/": for CONNECT_ONLY handles, which use no more. curl 7.88 prints a
 * URL byte by byte, several times per connect, so a long one costs. */
enum gw_err httpc__set_origin(CURL *e, const char *url, size_t n) GW_MUSTCHECK;

/* An easy handle: a kept one (reset, so no option is left from its last
 * use) if any, else a new one; NULL without memory. Handles of calls,
 * WebSockets and direct connections all come from here and go back with
 * httpc__easy_put once off their multi: init and cleanup cost more than a
 * reset. */
CURL *httpc__easy_get(struct httpc *h);
/* Keeps e (off every multi, may be NULL) for the next taker, or cleans
 * it up when enough are kept. */
void httpc__easy_put(struct httpc *h, CURL *e);

/* Adds e to a multi (counted in httpc_active): the REST one, or with ws a
 * WebSocket shard. curl calls back through owner->done, never from inside
 * this function. */
enum gw_err httpc__add(struct httpc *h, CURL *e, struct httpc_owner *owner,
		       bool ws) GW_MUSTCHECK;
/* Removes e from the multi; for a CONNECT_ONLY handle this closes its
 * connection. Does not free e. */
void httpc__remove(struct httpc *h, CURL *e);

/* Sockets curl currently asks us to watch (tests: an upgraded ws's socket
 * must not be among them, or curl would run on every frame). */
size_t httpc__watched(const struct httpc *h);

/* Connections the direct calls hold, idle ones included (tests: kept
 * connections are reused). */
size_t httpc__direct_conns(const struct httpc *h);

/* WebSocket multis on h (tests: WebSockets spread over shards, and empty
 * ones are freed but one). */
size_t httpc__shards(const struct httpc *h);

/* ws objects on h not yet freed (tests: httpc_free requires none). */
int httpc__ws_alive(const struct httpc *h);

/* A few idle objects of one kind kept for ws.c to reuse: take returns
 * one or NULL; give keeps p, or frees it with free_fn when enough are
 * kept (httpc_free frees the kept ones with it too). */
void *httpc__spare_take(struct httpc *h);
void httpc__spare_give(struct httpc *h, void *p, void (*free_fn)(void *));

/* WebSockets alive on h (httpc_free asserts there are none). */
void httpc__ws_ref(struct httpc *h, int delta);

#endif
