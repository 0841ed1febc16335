/* h1c.c - REST calls written and read here over kept connections that curl
 * opened (see h1c.h).
 *
 * A connection is idle (on the pool's list, its fd watched for reading so
 * a close by the server is noticed), busy (one call), or connecting (a
 * CONNECT_ONLY handle on one of httpc's multis, waiting for curl). A call
 * takes the newest idle connection to its origin, or opens one. On a kept
 * connection the request is written from the loop turn the call started
 * in (event_active), so a call costs no socket watch change unless the
 * socket fills. A kept connection can have been closed by the server just
 * before the request went out: a call that sees the close before any byte
 * of its response is sent again, once, on a new connection, as curl does.
 *
 * Handlers that may end a call (on_io, on_connected, on_timer) end it as
 * their last step: the callback may start calls that take the connection
 * just given back, or cancel others. */
#include "net/h1c.h"
#include "net/cio.h"
#include "net/h1c_parse.h"
#include "net/httpc_internal.h"
#include "util/http1.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A connection idle longer than this is closed rather than used: servers
 * drop idle ones after a minute or so, often without a word. */
#define H1C_IDLE_MAX_US (55u * 1000000u)
#define H1C_READ_CHUNK 4096
#define H1C_IN_MAX (H1C_HEAD_MAX + H1C_READ_CHUNK)
#define H1C_OUT_MAX ((size_t)64 << 20)

struct h1c_conn {
	struct httpc_owner owner; /* first: CURLOPT_PRIVATE points here */
	struct h1c *pool;
	CURL *easy;
	bool in_multi;
	bool idle;                      /* on pool->idle */
	bool tls_first;                 /* TLS, first response: curl reads it */
	struct cio io;
	struct event *ev;
	short ev_flags;
	char *origin;
	struct h1c_call *call;          /* NULL while idle */
	struct h1c_conn *prev, *next;   /* pool->idle, newest first */
	uint64_t idle_since_us;
	char errbuf[CURL_ERROR_SIZE];
};

struct h1c_call {
	struct h1c *pool;
	struct h1c_conn *conn;
	char *origin;
	struct buf out;        /* the request, kept for a resend */
	size_t out_off;
	struct buf in;         /* response bytes not consumed yet */
	struct buf *body, *hdrs;
	struct h1c_head head;
	bool have_head;
	struct http1_chunked chunks;
	bool head_req;
	bool reused;           /* on a kept connection */
	bool got;              /* a byte of the response arrived */
	struct event *timer;
	h1c_done_fn *cb;
	void *arg;
	char error[CURL_ERROR_SIZE];
};

struct h1c {
	struct httpc *h;
	struct h1c_conn *idle, *idle_tail;
	size_t n_idle, n_conns, n_calls;
};

enum step { STEP_MORE, STEP_DONE, STEP_FAILED };

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_connected(struct httpc_owner *o, CURLcode res);

/* ---- URLs ---- */

static size_t scheme_len(const char *url)
{
	if (strncasecmp(url, "http://", 7) == 0)
		return 7;
	if (strncasecmp(url, "https://", 8) == 0)
		return 8;
	return 0;
}

size_t h1c_origin_len(const char *url)
{
	size_t s = scheme_len(url);
	if (!s)
		return 0;
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
			return 0;
	size_t a = strcspn(url + s, "/?");
	if (a == 0 || memchr(url + s, '@', a))
		return 0;
	return s + a;
}

/* ---- connections ---- */

static void idle_unlink(struct h1c_conn *k)
{
	struct h1c *p = k->pool;
	if (k->prev)
		k->prev->next = k->next;
	else
		p->idle = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		p->idle_tail = k->prev;
	k->prev = k->next = NULL;
	k->idle = false;
	p->n_idle--;
}

static void conn_close(struct h1c_conn *k)
{
	struct h1c *p = k->pool;
	if (k->idle)
		idle_unlink(k);
	if (k->ev)
		event_free(k->ev); /* before curl closes the fd */
	if (k->in_multi)
		httpc__remove(p->h, k->easy);
	httpc__easy_put(p->h, k->easy);
	gw_free(k->origin);
	gw_free(k);
	p->n_conns--;
}

/* Watches what the connection needs: always reading (a response, or the
 * server's close while idle), writing while a request waits for room. */
static bool conn_settle(struct h1c_conn *k)
{
	struct h1c_call *c = k->call;
	short want = EV_READ;
	if ((c && c->out_off < c->out.len) || k->io.rd_wants_wr)
		want |= EV_WRITE;
	if (want == k->ev_flags)
		return true;
	event_del(k->ev);
	if (event_assign(k->ev, httpc__base(k->pool->h), k->io.fd, want | EV_PERSIST, on_io, k) ||
	    event_add(k->ev, NULL))
		return false;
	k->ev_flags = want;
	return true;
}

static void conn_keep(struct h1c_conn *k)
{
	struct h1c *p = k->pool;
	if (p->n_idle >= (size_t)HTTPC_REST_CONNS)
		conn_close(p->idle_tail);
	k->call = NULL;
	if (k->tls_first) {
		k->io.kind = CIO_SSL;
		k->tls_first = false;
	}
	k->next = p->idle;
	if (p->idle)
		p->idle->prev = k;
	else
		p->idle_tail = k;
	p->idle = k;
	k->idle = true;
	p->n_idle++;
	k->idle_since_us = gw_now_us();
	if (!conn_settle(k))
		conn_close(k);
}

/* The newest idle connection to origin; stale ones met on the way are
 * closed. */
static struct h1c_conn *conn_take(struct h1c *p, const char *origin)
{
	uint64_t now = gw_now_us();
	for (struct h1c_conn *k = p->idle, *next; k; k = next) {
		next = k->next;
		if (now - k->idle_since_us > H1C_IDLE_MAX_US) {
			conn_close(k);
			continue;
		}
		if (strcmp(k->origin, origin) == 0) {
			idle_unlink(k);
			return k;
		}
	}
	return NULL;
}

static enum gw_err conn_setup(struct h1c_conn *k, const char *origin)
{
	struct httpc *h = k->pool->h;
	enum gw_err err = httpc__setup_easy(h, k->easy);
	if (!err)
		err = httpc__set_origin(k->easy, origin, strlen(origin));
	if (!err &&
	    (curl_easy_setopt(k->easy, CURLOPT_CONNECT_ONLY, 1L) ||
	     /* curl reads nothing for us after the connect. */
	     curl_easy_setopt(k->easy, CURLOPT_BUFFERSIZE, 1024L) ||
	     curl_easy_setopt(k->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) ||
	     curl_easy_setopt(k->easy, CURLOPT_ERRORBUFFER, k->errbuf) ||
	     /* Through an HTTP proxy, tunnel: the request is ours to write. */
	     curl_easy_setopt(k->easy, CURLOPT_HTTPPROXYTUNNEL, 1L)))
		err = GW_ECONFIG;
	return err ? err : httpc__add(h, k->easy, &k->owner, true);
}

/* A new connection for c, connecting; its call learns the outcome in
 * on_connected. */
static enum gw_err conn_open(struct h1c_call *c)
{
	struct h1c *p = c->pool;
	struct h1c_conn *k = gw_calloc(1, sizeof(*k));
	if (!k)
		return GW_ENOMEM;
	k->owner.done = on_connected;
	k->pool = p;
	k->io.fd = CURL_SOCKET_BAD;
	k->easy = httpc__easy_get(p->h);
	k->origin = gw_strdup(c->origin);
	p->n_conns++;
	enum gw_err err = k->easy && k->origin ? conn_setup(k, c->origin) : GW_ENOMEM;
	if (err) {
		conn_close(k);
		return err;
	}
	k->in_multi = true;
	k->call = c;
	c->conn = k;
	return GW_OK;
}

/* ---- calls ---- */

static void call_free(struct h1c_call *c)
{
	if (c->timer)
		event_free(c->timer);
	buf_release(&c->out);
	buf_release(&c->in);
	gw_free(c->origin);
	gw_free(c);
}

/* Reports and frees c. Its connection is kept when the exchange ended
 * cleanly and left nothing unread, else closed. */
static void finish(struct h1c_call *c, enum gw_err err, const char *why)
{
	struct h1c *p = c->pool;
	struct h1c_conn *k = c->conn;
	if (k) {
		c->conn = NULL;
		k->call = NULL;
		if (!err && c->head.keep_alive && c->in.len == 0 && c->out_off == c->out.len)
			conn_keep(k);
		else
			conn_close(k);
	}
	struct h1c_result r = { .err = err, .status = err ? 0 : c->head.status, .error = "" };
	if (err) {
		if (why != c->error)
			snprintf(c->error, sizeof(c->error), "%s", why);
		r.error = c->error;
	}
	p->n_calls--;
	c->cb(c->arg, &r);
	call_free(c);
}

static void consume(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = '\0';
}

static enum step fail_with(struct h1c_call *c, enum gw_err err)
{
	const char *why = err == GW_ELIMIT ? "response larger than max_resp_bytes"
			  : err == GW_ENOMEM ? "out of memory"
					     : "malformed response from upstream";
	finish(c, err == GW_ELIMIT || err == GW_ENOMEM ? err : GW_EIO, why);
	return STEP_FAILED;
}

/* The head, past any 1xx before it. */
static enum step read_head(struct h1c_call *c)
{
	for (;;) {
		enum gw_err err = h1c_parse_head(c->in.p, c->in.len, c->head_req, &c->head);
		if (err == GW_EAGAIN)
			return STEP_MORE;
		if (err)
			return fail_with(c, err);
		if (c->head.status >= 200)
			break;
		consume(&c->in, c->head.len);
	}
	buf_reset(c->hdrs);
	enum gw_err err = buf_add(c->hdrs, c->in.p + c->head.hdrs_off, c->head.hdrs_len);
	if (err)
		return fail_with(c, err);
	consume(&c->in, c->head.len);
	c->have_head = true;
	return STEP_DONE;
}

/* Moves the chunked body's data in c->in to the body; STEP_DONE at its
 * end (what follows stays in c->in). */
static enum step read_chunks(struct h1c_call *c)
{
	size_t at = 0;
	enum http1_chunk_rc rc;
	do {
		size_t used, dlen;
		rc = http1_chunked_feed(&c->chunks, c->in.p + at, c->in.len - at, &used, &dlen);
		at += used;
		if (rc == HTTP1_CHUNK_BAD)
			return fail_with(c, GW_EPROTO);
		if (rc == HTTP1_CHUNK_DATA) {
			enum gw_err err = buf_add(c->body, c->in.p + at - dlen, dlen);
			if (err)
				return fail_with(c, err);
		}
	} while (rc == HTTP1_CHUNK_DATA);
	consume(&c->in, at);
	return rc == HTTP1_CHUNK_DONE ? STEP_DONE : STEP_MORE;
}

static enum step read_body(struct h1c_call *c)
{
	size_t take = c->in.len;
	switch (c->head.body) {
	case H1C_BODY_NONE:
		return STEP_DONE;
	case H1C_BODY_CHUNKED:
		return read_chunks(c);
	case H1C_BODY_LENGTH:
		if ((uint64_t)take > c->head.content_length)
			take = (size_t)c->head.content_length;
		break;
	case H1C_BODY_CLOSE:
		break;
	}
	enum gw_err err = buf_add(c->body, c->in.p, take);
	if (err)
		return fail_with(c, err);
	consume(&c->in, take);
	if (c->head.body == H1C_BODY_LENGTH) {
		c->head.content_length -= take;
		return c->head.content_length ? STEP_MORE : STEP_DONE;
	}
	return STEP_MORE; /* until the server closes */
}

static enum step parse(struct h1c_call *c)
{
	if (!c->have_head) {
		enum step s = read_head(c);
		if (s != STEP_DONE)
			return s;
	}
	enum step s = read_body(c);
	if (s == STEP_DONE)
		finish(c, GW_OK, NULL);
	return s;
}

static void resend(struct h1c_call *c)
{
	conn_close(c->conn);
	c->conn = NULL;
	c->reused = false; /* so a second close is the call's end */
	c->out_off = 0;
	enum gw_err err = conn_open(c);
	if (err)
		finish(c, err, gw_strerror(err));
}

/* The connection ended (0) or broke (CIO_ERR) under c. */
static void conn_ended(struct h1c_call *c, ssize_t r)
{
	if (r == 0 && c->have_head && c->head.body == H1C_BODY_CLOSE) {
		c->head.keep_alive = false;
		finish(c, GW_OK, NULL);
	} else if (!c->got && c->reused) {
		resend(c); /* the server closed the kept connection first */
	} else {
		finish(c, GW_EIO, r == 0 ? "upstream closed the connection before the response ended"
					 : "connection to upstream broke");
	}
}

static enum step send_request(struct h1c_call *c)
{
	struct cio *io = &c->conn->io;
	while (c->out_off < c->out.len) {
		ssize_t r = cio_send(io, c->out.p + c->out_off, c->out.len - c->out_off);
		if (r == CIO_AGAIN)
			return STEP_MORE;
		if (r < 0) {
			conn_ended(c, r);
			return STEP_FAILED;
		}
		c->out_off += (size_t)r;
	}
	return STEP_DONE;
}

/* Reads and parses until the socket is empty or the call ended. */
static void recv_response(struct h1c_call *c)
{
	struct cio *io = &c->conn->io;
	for (;;) {
		enum gw_err err = buf_reserve(&c->in, H1C_READ_CHUNK);
		if (err) {
			fail_with(c, err == GW_ELIMIT ? GW_EPROTO : err);
			return;
		}
		ssize_t r = cio_recv(io, c->in.p + c->in.len, H1C_READ_CHUNK);
		if (r == CIO_AGAIN)
			break;
		if (r <= 0) {
			conn_ended(c, r);
			return;
		}
		c->got = true;
		c->in.len += (size_t)r;
		c->in.p[c->in.len] = '\0';
		if (parse(c) != STEP_MORE)
			return;
	}
	if (!conn_settle(c->conn))
		finish(c, GW_ENOMEM, "could not watch the connection");
}

/* what: the events the loop saw. Reading waits for EV_READ: just after a
 * request went out the answer is not there yet, and a recv to learn that
 * is a system call per call. (TLS keeps no decrypted bytes back: every
 * read goes on until the socket is empty.) While the request still goes
 * out, the answer is read as it comes: a server may answer early (413)
 * and stop reading. */
static void call_io(struct h1c_call *c, short what)
{
	if (send_request(c) == STEP_FAILED)
		return;
	if ((what & EV_READ) || c->conn->io.rd_wants_wr)
		recv_response(c);
	else if (!conn_settle(c->conn))
		finish(c, GW_ENOMEM, "could not watch the connection");
}

/* An idle connection woke: the server closed it, or sent what nobody
 * asked for. Either way it cannot carry a request. TLS records that are
 * not data (session tickets) only make the read say "again". */
static void idle_io(struct h1c_conn *k)
{
	char b[64];
	ssize_t r = cio_recv(&k->io, b, sizeof(b));
	if (r == CIO_AGAIN && conn_settle(k))
		return;
	conn_close(k);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct h1c_conn *k = arg;
	GW_UNUSED(fd);
	k->io.drained = false; /* a wake-up from the loop: the socket may have bytes */
	if (k->call)
		call_io(k->call, what);
	else
		idle_io(k);
}

static void on_connected(struct httpc_owner *o, CURLcode res)
{
	struct h1c_conn *k = (struct h1c_conn *)o;
	struct h1c_call *c = k->call;
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (res != CURLE_OK) {
		enum gw_err err = httpc__result_err(&k->owner, res);
		snprintf(c->error, sizeof(c->error), "%s",
			 err == GW_ENOMEM && res != CURLE_OUT_OF_MEMORY
				 ? "no descriptor or memory for a socket here (not an upstream fault)"
			 : k->errbuf[0] ? k->errbuf
					: curl_easy_strerror(res));
		finish(c, err, c->error);
		return;
	}
	if (curl_easy_getinfo(k->easy, CURLINFO_ACTIVESOCKET, &fd) || fd == CURL_SOCKET_BAD) {
		finish(c, GW_EIO, "no socket after connecting");
		return;
	}
	/* The first bytes through curl: that attaches the connection to our
	 * handle, so its SSL object can be had and curl never prunes it. */
	size_t sent = 0;
	CURLcode rc = curl_easy_send(k->easy, c->out.p, c->out.len, &sent);
	if (rc != CURLE_OK && rc != CURLE_AGAIN) {
		finish(c, GW_EIO, "connection to upstream broke");
		return;
	}
	c->out_off = sent;
	cio_attach(&k->io, k->easy, fd);
	/* TLS 1.3 session tickets arrive after the handshake, with the first
	 * response. Only curl's own read files them in the share (its
	 * callback needs the handle being read for), where the WebSocket that
	 * follows can resume one: so that first read goes through curl. */
	if (k->io.kind == CIO_SSL) {
		k->io.kind = CIO_CURL;
		k->tls_first = true;
	}
	if (!(k->ev = event_new(httpc__base(k->pool->h), fd, 0, on_io, k))) {
		finish(c, GW_ENOMEM, "out of memory");
		return;
	}
	call_io(c, 0);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct h1c_call *c = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	finish(c, GW_ETIMEOUT, "timed out waiting for upstream");
}

/* ---- the request ---- */

static bool is_header(const char *line, const char *name, size_t n)
{
	return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* "Name:" with nothing after it asks curl not to send that header. */
static bool empty_header(const char *h)
{
	const char *colon = strchr(h, ':');
	for (colon++; *colon == ' ' || *colon == '\t'; colon++)
		;
	return *colon == '\0';
}

enum gw_err h1c_headers_render(const char *const *lines, struct buf *b, unsigned *flags)
{
	size_t need = 0;
	*flags = 0;
	for (const char *const *l = lines; l && *l; l++) {
		if (strpbrk(*l, "\r\n") || !strchr(*l, ':'))
			return GW_EINVAL; /* no header injection */
		need += strlen(*l) + 2;
	}
	enum gw_err err = buf_reserve(b, need);
	for (const char *const *l = lines; !err && l && *l; l++) {
		if (is_header(*l, "User-Agent", 10))
			*flags |= H1C_HAS_USER_AGENT;
		else if (is_header(*l, "Accept", 6))
			*flags |= H1C_HAS_ACCEPT;
		if (!empty_header(*l))
			err = buf_cat(b, *l, "\r\n", NULL);
	}
	return err;
}

static enum gw_err build_request(struct h1c_call *c, const struct h1c_req *q, size_t olen)
{
	struct buf *b = &c->out;
	const char *target = q->url + olen;
	const char *authority = q->url + scheme_len(q->url);
	size_t alen = olen - scheme_len(q->url);
	const char *ua = q->hdr_flags & H1C_HAS_USER_AGENT ? NULL : httpc__user_agent(c->pool->h);
	/* One allocation: the constant parts and a length fit in 128. */
	enum gw_err err = buf_reserve(b, strlen(q->method) + strlen(target) + alen +
						 (ua ? strlen(ua) : 0) + q->hdr_len + q->body_len + 128);
	if (!err)
		err = buf_cat(b, q->method, " ", *target == '/' ? "" : "/", target,
			      " HTTP/1.1\r\nHost: ", NULL);
	if (!err)
		err = buf_add(b, authority, alen);
	if (!err)
		err = buf_adds(b, "\r\n");
	if (!err && ua)
		err = buf_cat(b, "User-Agent: ", ua, "\r\n", NULL);
	if (!err && !(q->hdr_flags & H1C_HAS_ACCEPT))
		err = buf_adds(b, "Accept: */*\r\n");
	if (!err)
		err = buf_add(b, q->hdr_block, q->hdr_len);
	if (!err && (q->body || http1_method_has_body(q->method))) {
		err = buf_adds(b, "Content-Length: ");
		if (!err)
			err = buf_add_i64(b, (int64_t)q->body_len);
		if (!err)
			err = buf_adds(b, "\r\n");
	}
	if (!err)
		err = buf_adds(b, "\r\n");
	if (!err && q->body)
		err = buf_add(b, q->body, q->body_len);
	return err;
}

static enum gw_err call_arm(struct h1c_call *c, long timeout_ms)
{
	struct event_base *base = httpc__base(c->pool->h);
	if (!(c->timer = evtimer_new(base, on_timer, c)))
		return GW_ENOMEM;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	return evtimer_add(c->timer, &tv) ? GW_EIO : GW_OK;
}

/* On a kept connection the request goes from the loop, not from here:
 * no callback may run inside h1c_call_start. */
static enum gw_err call_place(struct h1c_call *c)
{
	struct h1c_conn *k = conn_take(c->pool, c->origin);
	if (!k)
		return conn_open(c);
	k->call = c;
	c->conn = k;
	c->reused = true;
	event_active(k->ev, EV_WRITE, 0);
	return GW_OK;
}

enum gw_err h1c_call_start(struct h1c *p, const struct h1c_req *q, h1c_done_fn *cb, void *arg,
			   struct h1c_call **out)
{
	*out = NULL;
	size_t olen = q->origin_len;
	if (!olen || strpbrk(q->method, " \r\n") || !q->resp_body || !q->resp_hdrs)
		return GW_EINVAL;
	struct h1c_call *c = gw_calloc(1, sizeof(*c));
	if (!c)
		return GW_ENOMEM;
	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	c->body = q->resp_body;
	c->hdrs = q->resp_hdrs;
	c->head_req = strcmp(q->method, "HEAD") == 0;
	buf_init(&c->out, H1C_OUT_MAX);
	buf_init(&c->in, H1C_IN_MAX);
	enum gw_err err = GW_ENOMEM;
	if (!(c->origin = gw_strndup(q->url, olen)) || (err = build_request(c, q, olen)) ||
	    (err = call_arm(c, q->timeout_ms > 0 ? q->timeout_ms : 30000)) ||
	    (err = call_place(c))) {
		call_free(c);
		return err;
	}
	p->n_calls++;
	*out = c;
	return GW_OK;
}

void h1c_call_cancel(struct h1c_call *c)
{
	if (!c)
		return;
	if (c->conn) {
		c->conn->call = NULL;
		conn_close(c->conn);
	}
	c->pool->n_calls--;
	call_free(c);
}

/* ---- the pool ---- */

struct h1c *h1c_new(struct httpc *h)
{
	struct h1c *p = gw_calloc(1, sizeof(*p));
	if (p)
		p->h = h;
	return p;
}

void h1c_free(struct h1c *p)
{
	if (!p)
		return;
	GW_ASSERT(p->n_calls == 0);
	while (p->idle)
		conn_close(p->idle);
	GW_ASSERT(p->n_conns == 0);
	gw_free(p);
}

size_t h1c_calls(const struct h1c *p)
{
	return p ? p->n_calls : 0;
}

size_t h1c_conns(const struct h1c *p)
{
	return p ? p->n_conns : 0;
}

size_t h1c_idle(const struct h1c *p)
{
	return p ? p->n_idle : 0;
}
