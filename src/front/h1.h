/* h1.h - the HTTP/1.1 server of one worker: connections, request framing,
 * timeouts, limits, replies (whole or chunked).
 *
 * Why not evhttp: libevent 2.1's server cannot bound the time to send a
 * request (its timeout is reset by every byte), cannot cap connections,
 * answers its own errors in HTML, and closes with unread input after an
 * early 413 so the client gets a reset instead of the answer.
 *
 * A connection serves one request at a time; pipelined requests wait in its
 * input. Every request the layer cannot accept (bad framing, too large, too
 * slow, too many connections) still reaches the handler, with
 * h1_req_refused() set, so errors are written in one place and one format. */
#ifndef GW_H1_H
#define GW_H1_H

#include "gw.h"
#include "front/h1_parse.h"

struct event_base;
struct h1_server;
struct h1_req;

typedef void (*h1_req_cb)(struct h1_req *req, void *arg);

struct h1_limits {
	size_t max_head;   /* request line and headers */
	size_t max_body;
	int timeout_s;     /* to receive a whole request; a write may stall this long */
	long max_conns;    /* open connections in the process, all servers */
};

/* Serves the listening socket fd (owned from now on). */
struct h1_server *h1_server_new(struct event_base *base, int fd, const struct h1_limits *lim,
				h1_req_cb cb, void *arg);
void h1_server_set_limits(struct h1_server *s, const struct h1_limits *lim);
/* Closes the listening socket; open connections close after their current
 * reply. */
void h1_server_stop(struct h1_server *s);
/* Closes every connection (close and done callbacks run) and the listener. */
void h1_server_free(struct h1_server *s);
long h1_open_connections(void);

/* The request. Strings live as long as the request. */
int h1_req_refused(const struct h1_req *r, const char **why); /* status, 0 = a request to serve */
enum h1_method h1_req_method(const struct h1_req *r);
const char *h1_req_method_name(const struct h1_req *r);
const char *h1_req_target(const struct h1_req *r); /* "/" when refused before the target */
const char *h1_req_header(const struct h1_req *r, const char *name);
const char *h1_req_body(const struct h1_req *r, size_t *len);

/* The reply. Headers first; then either h1_reply, or h1_start, h1_write...,
 * h1_end. After h1_reply or h1_end the caller must not touch r again. */
/* A header that does not fit or holds CR/LF is dropped (and logged). */
void h1_add_header(struct h1_req *r, const char *name, const char *value);
void h1_reply(struct h1_req *r, int status, const char *body, size_t len);
void h1_start(struct h1_req *r, int status);
void h1_write(struct h1_req *r, const char *p, size_t n);
/* As h1_write, but to the socket from here instead of at the end of the
 * loop turn: for a caller that already waited for the turn's end (a
 * second deferral costs a loop callback per write). */
void h1_write_now(struct h1_req *r, const char *p, size_t n);
void h1_end(struct h1_req *r);
/* Bytes written but not yet taken by the kernel. */
size_t h1_unsent(const struct h1_req *r);

/* Test hook: how often a flush left bytes for the write event, process-wide. */
size_t h1__write_waits(void);
/* Closes the connection after this reply. */
void h1_close_after(struct h1_req *r);

/* The client went away before h1_end: r is freed when cb returns. */
void h1_set_close_cb(struct h1_req *r, h1_req_cb cb, void *arg);
/* Everything written so far reached the kernel (resume a paused producer). */
void h1_set_drain_cb(struct h1_req *r, h1_req_cb cb, void *arg);
/* Runs once when r is released: after its last byte left, or when the
 * connection died; always after the close callback. */
void h1_set_done_cb(struct h1_req *r, h1_req_cb cb, void *arg);

#endif
