/* h1.c - HTTP/1.1 connections on a libevent loop (see h1.h). */
#include "front/h1.h"
#include "util/buf.h"
#include "util/http1.h"
#include "util/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define H1_LINGER_S 2          /* a closing connection reads what is left this long */
#define H1_ACCEPT_RETRY_MS 500
#define H1_HDR_MAX 8192        /* response headers */
#define H1_PIPELINE_MAX 65536  /* input held while a request is served */

enum conn_state {
	C_IDLE,    /* between requests */
	C_HEAD,    /* part of a head arrived */
	C_BODY,    /* the head is in, reading the body */
	C_BUSY,    /* the handler has the request */
	C_LINGER,  /* replied and shut down for writing: reading until EOF */
};

struct h1_server {
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *accept_retry;
	struct h1_limits lim;
	h1_req_cb cb;
	void *arg;
	struct h1_conn *conns;
};

struct h1_conn {
	struct h1_server *s;
	struct h1_conn *prev, *next;
	struct bufferevent *bev;
	struct event *timer;
	struct event *flush_ev; /* no fd: run at the end of this loop turn */
	struct h1_req *req;
	enum conn_state state;
	size_t scan;            /* where h1_head_end resumes */
	bool close_after;
};

struct h1_req {
	struct h1_conn *c;
	struct h1_head head;
	char *headbuf;          /* header entries, then the head (read_head) */
	struct buf body;
	struct http1_chunked ck;
	struct evbuffer *chunks; /* chunked body data so far */
	int64_t body_left;      /* Content-Length bytes still to read */
	int refused;
	const char *why;
	struct buf hdrs;        /* response headers added so far */
	bool started;
	bool ended;
	bool broken;            /* a chunk was lost: the body must not look whole */
	h1_req_cb close_cb, drain_cb, done_cb;
	void *close_arg, *drain_arg, *done_arg;
};

static atomic_long open_conns;

long h1_open_connections(void)
{
	return atomic_load(&open_conns);
}

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status < 400 ? "OK" : "Error";
	}
}

/* ---- requests ---- */

static struct h1_req *req_new(struct h1_conn *c)
{
	struct h1_req *r = gw_calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->c = c;
	h1_head_reset(&r->head); /* what a refusal before the parse shows */
	buf_init(&r->body, c->s->lim.max_body);
	buf_init(&r->hdrs, H1_HDR_MAX);
	return r;
}

static void req_free(struct h1_req *r)
{
	gw_free(r->headbuf);
	if (r->chunks)
		evbuffer_free(r->chunks);
	buf_release(&r->body);
	buf_release(&r->hdrs);
	gw_free(r);
}

/* The request is over, answered or not: its handler hears it, then it goes. */
static void req_done(struct h1_req *r)
{
	if (r->done_cb)
		r->done_cb(r, r->done_arg);
	req_free(r);
}

int h1_req_refused(const struct h1_req *r, const char **why)
{
	if (why)
		*why = r->why ? r->why : "";
	return r->refused;
}

enum h1_method h1_req_method(const struct h1_req *r) { return r->head.method; }
const char *h1_req_method_name(const struct h1_req *r) { return r->head.method_s; }
const char *h1_req_target(const struct h1_req *r) { return r->head.target; }

const char *h1_req_header(const struct h1_req *r, const char *name)
{
	return h1_head_get(&r->head, name);
}

const char *h1_req_body(const struct h1_req *r, size_t *len)
{
	*len = r->body.len;
	return r->body.p ? r->body.p : "";
}

void h1_set_close_cb(struct h1_req *r, h1_req_cb cb, void *arg) { r->close_cb = cb, r->close_arg = arg; }
void h1_set_drain_cb(struct h1_req *r, h1_req_cb cb, void *arg) { r->drain_cb = cb, r->drain_arg = arg; }
void h1_set_done_cb(struct h1_req *r, h1_req_cb cb, void *arg) { r->done_cb = cb, r->done_arg = arg; }
void h1_close_after(struct h1_req *r) { r->c->close_after = true; }

/* ---- connections ---- */

/* Sends what the output holds now. The bufferevent's write event stays off
 * while the socket takes everything, the usual case: a streamed piece then
 * leaves with one writev, instead of the write event being added, fired on
 * the next loop turn and removed (two epoll_ctl and a wake-up per piece).
 * Only what the socket does not take (or an error) switches it on, and the
 * bufferevent then sends the rest under the write timeout and reports
 * errors as before; on_write switches it off again once the output drained.
 * Replies call it through flush_ev (want_flush), so the pieces of one loop
 * turn (one upstream read) still leave in one writev. */
/* Flushes that left bytes for the write event (tests: backpressure really
 * happened). */
static atomic_size_t write_waits;

size_t h1__write_waits(void)
{
	return atomic_load_explicit(&write_waits, memory_order_relaxed);
}

static void flush(struct h1_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (!evbuffer_get_length(out) || (bufferevent_get_enabled(c->bev) & EV_WRITE))
		return;
	/* A socket bufferevent keeps its output's front frozen so only it
	 * drains it; it thaws it the same way around its own writes. */
	evbuffer_unfreeze(out, 1);
	(void)evbuffer_write(out, bufferevent_getfd(c->bev));
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out)) {
		atomic_fetch_add_explicit(&write_waits, 1, memory_order_relaxed);
		bufferevent_enable(c->bev, EV_WRITE);
	}
}

static void conn_free(struct h1_conn *c)
{
	struct h1_req *r = c->req;
	if (r) {
		c->req = NULL;
		if (!r->ended && r->close_cb) /* only a handler sets one */
			r->close_cb(r, r->close_arg);
		req_done(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		c->s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	bufferevent_free(c->bev); /* closes the socket */
	event_free(c->timer);
	event_free(c->flush_ev);
	gw_free(c);
	atomic_fetch_sub(&open_conns, 1);
}

static void want_flush(struct h1_conn *c)
{
	event_active(c->flush_ev, EV_WRITE, 0); /* once per turn, however often asked */
}

static void arm(struct h1_conn *c, int seconds)
{
	struct timeval tv = { seconds, 0 };
	evtimer_add(c->timer, &tv);
}

static void dispatch(struct h1_conn *c)
{
	struct h1_req *r = c->req;
	c->state = C_BUSY;
	evtimer_del(c->timer);
	if (!r->head.keep_alive)
		c->close_after = true;
	c->s->cb(r, c->s->arg);
}

/* Hands the handler a request it must refuse, then closes the connection. */
static void refuse(struct h1_conn *c, int status, const char *why)
{
	if (!c->req && !(c->req = req_new(c))) {
		conn_free(c);
		return;
	}
	struct h1_req *r = c->req;
	r->refused = status;
	r->why = why;
	r->head.keep_alive = false;
	dispatch(c);
}

static void start_linger(struct h1_conn *c)
{
	c->state = C_LINGER;
	(void)shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	bufferevent_enable(c->bev, EV_READ);
	arm(c, H1_LINGER_S);
}

static void read_requests(struct h1_conn *c);

/* The last byte of the reply reached the kernel. */
static void complete(struct h1_conn *c)
{
	struct h1_req *r = c->req;
	c->req = NULL;
	req_done(r);
	if (c->close_after) {
		start_linger(c);
		return;
	}
	c->state = C_IDLE;
	c->scan = 0;
	bufferevent_enable(c->bev, EV_READ);
	arm(c, c->s->lim.timeout_s);
	read_requests(c);
}

static enum gw_err read_head(struct h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t have = evbuffer_get_length(in), look = have < c->s->lim.max_head ? have : c->s->lim.max_head;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
	size_t end = p ? h1_head_end(p, look, &c->scan) : 0;
	if (!end) {
		if (have >= c->s->lim.max_head)
			refuse(c, 431, "the request head is larger than MAX_HEADER_BYTES");
		return GW_EAGAIN;
	}
	/* One block: the header entries, then the head's bytes they point into. */
	size_t slots = h1_head_slots(p, end), hsize = slots * sizeof(struct h1_header);
	struct h1_req *r = c->req = req_new(c);
	if (!r || !(r->headbuf = gw_malloc(hsize + end + 1))) {
		refuse(c, 503, "out of memory"); /* with this request, or a new one if there is none */
		return GW_ENOMEM;
	}
	char *head = r->headbuf + hsize;
	evbuffer_remove(in, head, end);
	head[end] = '\0';
	const char *why;
	int st = h1_parse_head(head, end, &r->head, (struct h1_header *)(void *)r->headbuf, slots, &why);
	if (st) {
		refuse(c, st, why);
		return GW_EINVAL;
	}
	if (r->head.content_length > (int64_t)c->s->lim.max_body) {
		refuse(c, 413, "the request body is larger than MAX_BODY_BYTES");
		return GW_ELIMIT;
	}
	r->body_left = r->head.content_length > 0 ? r->head.content_length : 0;
	c->state = C_BODY;
	if (r->head.expect_continue && (r->body_left || r->head.chunked)) {
		bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		flush(c);
	}
	return GW_OK;
}

/* Content-Length: the exact size is reserved once (pages are touched only
 * as bytes arrive) and filled as they come. */
static enum gw_err read_sized_body(struct h1_conn *c, struct evbuffer *in)
{
	struct h1_req *r = c->req;
	size_t have = evbuffer_get_length(in);
	size_t n = have < (uint64_t)r->body_left ? have : (size_t)r->body_left;
	if (!n)
		return r->body_left ? GW_EAGAIN : GW_OK;
	if (buf_reserve(&r->body, (size_t)r->body_left) != GW_OK ||
	    evbuffer_remove(in, r->body.p + r->body.len, n) != (int)n) {
		refuse(c, 503, "out of memory");
		return GW_ENOMEM;
	}
	r->body.len += n;
	r->body.p[r->body.len] = '\0';
	r->body_left -= (int64_t)n;
	return r->body_left ? GW_EAGAIN : GW_OK;
}

/* Chunked: data chains move to r->chunks without a copy; one exact copy
 * into r->body at the end. */
static enum gw_err read_chunked_body(struct h1_conn *c, struct evbuffer *in)
{
	struct h1_req *r = c->req;
	if (!r->chunks && !(r->chunks = evbuffer_new()))
		return refuse(c, 503, "out of memory"), GW_ENOMEM;
	for (;;) {
		struct evbuffer_iovec v;
		if (!evbuffer_get_length(in) || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return GW_EAGAIN;
		size_t used, dlen;
		enum http1_chunk_rc rc = http1_chunked_feed(&r->ck, v.iov_base, v.iov_len, &used, &dlen);
		evbuffer_drain(in, used - dlen);
		if (rc == HTTP1_CHUNK_BAD)
			return refuse(c, 400, "malformed chunked body"), GW_EINVAL;
		if (rc == HTTP1_CHUNK_DONE)
			break;
		if (rc == HTTP1_CHUNK_DATA) {
			if (evbuffer_get_length(r->chunks) + dlen > c->s->lim.max_body)
				return refuse(c, 413, "the request body is larger than MAX_BODY_BYTES"), GW_ELIMIT;
			if (evbuffer_remove_buffer(in, r->chunks, dlen) != (int)dlen)
				return refuse(c, 503, "out of memory"), GW_ENOMEM;
		}
	}
	size_t total = evbuffer_get_length(r->chunks);
	if (buf_reserve(&r->body, total) != GW_OK || evbuffer_remove(r->chunks, r->body.p, total) != (int)total)
		return refuse(c, 503, "out of memory"), GW_ENOMEM;
	r->body.len = total;
	r->body.p[total] = '\0';
	return GW_OK;
}

static void read_requests(struct h1_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->state == C_IDLE) {
		/* Empty lines before a request are allowed (RFC 9112 2.2). */
		const unsigned char *p;
		while ((p = evbuffer_pullup(in, 1)) && (*p == '\r' || *p == '\n'))
			evbuffer_drain(in, 1);
		if (!evbuffer_get_length(in))
			return;
		/* From its first byte a request has CLIENT_TIMEOUT to arrive whole,
		 * however it is trickled (slowloris). */
		c->state = C_HEAD;
		arm(c, c->s->lim.timeout_s);
	}
	if (c->state == C_HEAD && read_head(c) != GW_OK)
		return;
	if (c->state != C_BODY)
		return;
	if ((c->req->head.chunked ? read_chunked_body(c, in) : read_sized_body(c, in)) == GW_OK)
		dispatch(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct h1_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	switch (c->state) {
	case C_LINGER:
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	case C_BUSY:
		/* Pipelined bytes wait; past a bound stop reading them. */
		if (evbuffer_get_length(in) > H1_PIPELINE_MAX)
			bufferevent_disable(bev, EV_READ);
		return;
	default:
		read_requests(c);
	}
}

/* All of the output reached the kernel: an ended reply is complete, a
 * stream may go on (the handler resumes one paused on h1_unsent). */
static void drained(struct h1_conn *c)
{
	struct h1_req *r = c->req;
	if (c->state != C_BUSY || !r)
		return;
	if (r->ended)
		complete(c);
	else if (r->drain_cb)
		r->drain_cb(r, r->drain_arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	bufferevent_disable(bev, EV_WRITE); /* back to flush() */
	drained(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	GW_UNUSED(bev);
	struct h1_conn *c = arg;
	if ((what & BEV_EVENT_EOF) && c->state == C_BUSY && c->req && c->req->ended) {
		/* A client that half-closed after its request still gets the reply. */
		bufferevent_disable(c->bev, EV_READ);
		c->close_after = true;
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && c->req)
		log_info(NULL, "client stopped reading for CLIENT_TIMEOUT; connection dropped");
	conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct h1_conn *c = arg;
	switch (c->state) {
	case C_IDLE:
	case C_LINGER:
		conn_free(c);
		return;
	case C_HEAD:
	case C_BODY:
		refuse(c, 408, "the request was not received within CLIENT_TIMEOUT");
		return;
	case C_BUSY:
		return; /* dispatch stopped it: the reply's deadline is the write timeout */
	}
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct h1_conn *c = arg;
	flush(c);
	/* Unless the write event took over, no on_write will come. */
	if (!(bufferevent_get_enabled(c->bev) & EV_WRITE))
		drained(c);
}

static void conn_new(struct h1_server *s, evutil_socket_t fd)
{
	struct h1_conn *c = gw_calloc(1, sizeof(*c));
	if (c) {
		c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
		c->timer = evtimer_new(s->base, on_timer, c);
		c->flush_ev = event_new(s->base, -1, 0, on_flush, c);
	}
	if (!c || !c->bev || !c->timer || !c->flush_ev) {
		if (c && c->bev)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c && c->timer)
			event_free(c->timer);
		if (c && c->flush_ev)
			event_free(c->flush_ev);
		gw_free(c);
		return;
	}
	long n = atomic_fetch_add(&open_conns, 1) + 1;
	c->s = s;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	/* Replies are small pieces that must leave at once (Nagle + delayed ACK = 40 ms each). */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	struct timeval wt = { s->lim.timeout_s, 0 };
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	(void)bufferevent_set_max_single_read(c->bev, 65536);
	bufferevent_disable(c->bev, EV_WRITE); /* see flush() */
	bufferevent_enable(c->bev, EV_READ);
	if (s->lim.max_conns > 0 && n > s->lim.max_conns) {
		refuse(c, 503, "the gateway is at MAX_CONNECTIONS");
		return;
	}
	arm(c, s->lim.timeout_s);
}

/* ---- replies ---- */

/* HTTP/1.0 has no chunks: the end of the body is the end of the connection. */
static bool chunked(const struct h1_req *r)
{
	return r->head.minor == 1;
}

/* "%zx\r\n" without printf (once per streamed piece); out holds 20 bytes. */
static int chunk_size_line(char out[static 20], size_t n)
{
	char d[16], *q = d + sizeof(d);
	do
		*--q = "0123456789abcdef"[n & 15];
	while (n >>= 4);
	int len = (int)(d + sizeof(d) - q);
	memcpy(out, q, (size_t)len);
	memcpy(out + len, "\r\n", 2);
	return len + 2;
}

void h1_add_header(struct h1_req *r, const char *name, const char *value)
{
	/* No header injection through a value. */
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") ||
	    buf_cat(&r->hdrs, name, ": ", value, "\r\n", NULL) != GW_OK)
		log_warn(NULL, "reply header %.40s dropped (too large or holds CR/LF)", name);
}

static void write_head(struct h1_req *r, int status, const char *framing)
{
	struct h1_conn *c = r->c;
	char line[64];
	int n = snprintf(line, sizeof(line), "HTTP/1.%d %d %s\r\n", r->head.minor == 0 && !r->refused ? 0 : 1,
			 status, reason(status));
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add(out, line, (size_t)n);
	evbuffer_add(out, r->hdrs.p ? r->hdrs.p : "", r->hdrs.len);
	buf_release(&r->hdrs); /* a stream's reply may last minutes */
	evbuffer_add_printf(out, "%s%s\r\n", framing,
			    c->close_after ? "Connection: close\r\n" : r->head.minor == 0 ? "Connection: keep-alive\r\n" : "");
}

static void finish(struct h1_req *r)
{
	struct h1_conn *c = r->c;
	r->ended = true;
	want_flush(c); /* on_flush completes the request once it is all sent */
}

void h1_reply(struct h1_req *r, int status, const char *body, size_t len)
{
	GW_ASSERT(!r->started && !r->ended);
	char cl[48];
	snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
	r->started = true;
	write_head(r, status, status == 204 || status == 304 ? "" : cl);
	if (len && r->head.method != H1_HEAD)
		bufferevent_write(r->c->bev, body, len);
	finish(r);
}

void h1_start(struct h1_req *r, int status)
{
	GW_ASSERT(!r->started);
	r->started = true;
	if (!chunked(r))
		r->c->close_after = true;
	write_head(r, status, chunked(r) ? "Transfer-Encoding: chunked\r\n" : "");
	want_flush(r->c);
}

/* Appends a piece of the body to the output; false if nothing was. */
static bool put(struct h1_req *r, const char *p, size_t n)
{
	GW_ASSERT(r->started && !r->ended);
	if (!n || r->head.method == H1_HEAD || r->broken)
		return false;
	struct evbuffer *out = bufferevent_get_output(r->c->bev);
	if (!chunked(r)) {
		if (evbuffer_add(out, p, n) == 0)
			return true;
		r->broken = true; /* as below: a hole would pass for a whole body */
		r->c->close_after = true;
		return false;
	}
	/* Size line, data and CRLF into one contiguous stretch of the output:
	 * one copy per piece, one iovec per writev, and one round of the
	 * buffer's callbacks (at commit). All or nothing: out of memory, the
	 * chunk is dropped whole rather than its size line left without it,
	 * and the reply is cut (h1_end sends no last chunk and closes), so the
	 * client sees a broken body, not one with a hole in it. */
	char hex[24];
	size_t hl = (size_t)chunk_size_line(hex, n), total = hl + n + 2;
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) != 1) {
		r->broken = true;
		r->c->close_after = true;
		return false;
	}
	char *o = v.iov_base;
	memcpy(o, hex, hl);
	memcpy(o + hl, p, n);
	memcpy(o + hl + n, "\r\n", 2);
	v.iov_len = total;
	(void)evbuffer_commit_space(out, &v, 1);
	return true;
}

void h1_write(struct h1_req *r, const char *p, size_t n)
{
	if (put(r, p, n))
		want_flush(r->c);
}

/* A chunk straight to the socket, when nothing waits ahead of it: no
 * evbuffer chain is allocated, filled, drained and freed for it. What the
 * socket does not take (or all of it, on an error the bufferevent will
 * meet and report) goes to the output for the write event. */
static void write_direct(struct h1_req *r, const char *p, size_t n)
{
	struct h1_conn *c = r->c;
	char hex[24];
	size_t hl = (size_t)chunk_size_line(hex, n);
	struct iovec iov[3] = { { hex, hl }, { (void *)(uintptr_t)p, n }, { "\r\n", 2 } };
	ssize_t w;
	do
		w = writev(bufferevent_getfd(c->bev), iov, 3);
	while (w < 0 && errno == EINTR);
	size_t done = w > 0 ? (size_t)w : 0;
	if (done == hl + n + 2)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	bool ok = true;
	for (int i = 0; i < 3 && ok; i++) {
		size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
		done -= skip;
		ok = evbuffer_add(out, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip) == 0;
	}
	if (!ok) {
		r->broken = true; /* part of a chunk is out: the reply is cut */
		c->close_after = true;
	}
	atomic_fetch_add_explicit(&write_waits, 1, memory_order_relaxed);
	bufferevent_enable(c->bev, EV_WRITE);
}

void h1_write_now(struct h1_req *r, const char *p, size_t n)
{
	struct h1_conn *c = r->c;
	if (n && chunked(r) && r->head.method != H1_HEAD && !r->broken &&
	    !evbuffer_get_length(bufferevent_get_output(c->bev)) &&
	    !(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
		GW_ASSERT(r->started && !r->ended);
		write_direct(r, p, n);
		return;
	}
	if (put(r, p, n))
		flush(c);
}

void h1_end(struct h1_req *r)
{
	GW_ASSERT(r->started && !r->ended);
	if (chunked(r) && r->head.method != H1_HEAD && !r->broken)
		evbuffer_add(bufferevent_get_output(r->c->bev), "0\r\n\r\n", 5);
	finish(r);
}

size_t h1_unsent(const struct h1_req *r)
{
	return evbuffer_get_length(bufferevent_get_output(r->c->bev));
}

/* ---- the listener ---- */

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	GW_UNUSED(lis);
	GW_UNUSED(sa);
	GW_UNUSED(salen);
	conn_new(arg, fd);
}

static void accept_retry(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct h1_server *s = arg;
	if (s->lis) /* NULL once stopped */
		evconnlistener_enable(s->lis);
}

/* EMFILE/ENFILE leave the listener readable: pause it instead of spinning. */
static void on_accept_error(struct evconnlistener *lis, void *arg)
{
	struct h1_server *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	log_warn(NULL, "accept failed: %s; pausing new connections for %d ms", evutil_socket_error_to_string(e),
		 H1_ACCEPT_RETRY_MS);
	evconnlistener_disable(lis);
	struct timeval tv = { 0, H1_ACCEPT_RETRY_MS * 1000 };
	evtimer_add(s->accept_retry, &tv);
}

struct h1_server *h1_server_new(struct event_base *base, int fd, const struct h1_limits *lim,
				h1_req_cb cb, void *arg)
{
	struct h1_server *s = gw_calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return NULL;
	}
	s->base = base;
	s->lim = *lim;
	s->cb = cb;
	s->arg = arg;
	s->accept_retry = evtimer_new(base, accept_retry, s);
	s->lis = evconnlistener_new(base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!s->lis)
		close(fd);
	if (!s->lis || !s->accept_retry) {
		h1_server_free(s);
		return NULL;
	}
	evconnlistener_set_error_cb(s->lis, on_accept_error);
	return s;
}

void h1_server_set_limits(struct h1_server *s, const struct h1_limits *lim)
{
	s->lim = *lim;
}

void h1_server_stop(struct h1_server *s)
{
	/* Closed, not paused: new connections are refused at once (a load
	 * balancer or client retries elsewhere) instead of waiting in the
	 * backlog until exit. */
	if (s->lis)
		evconnlistener_free(s->lis);
	s->lis = NULL;
	evtimer_del(s->accept_retry);
	for (struct h1_conn *c = s->conns; c; c = c->next)
		c->close_after = true;
}

void h1_server_free(struct h1_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_free(s->conns);
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->accept_retry)
		event_free(s->accept_retry);
	gw_free(s);
}
