/* httpc.c - curl multi driven by libevent (curl's hiperfifo pattern).
 *
 * One event per socket curl asks us to watch, one evtimer for curl's
 * timeout. Two hiperfifo habits are deliberately absent: the timer is never
 * deleted because still_running hit 0 (a handle added from a done callback
 * arms it through TIMERFUNCTION, and deleting it stalls that handle), and
 * socket_action is never called from inside TIMERFUNCTION (curl forbids
 * reentrancy; a 0 timeout runs it from the loop instead). */
#include "net/httpc.h"
#include "net/httpc_internal.h"
#include "util/buf.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HTTPC_CONNECT_TIMEOUT_MS 10000L
#define HTTPC_CALL_TIMEOUT_MS 30000L
#define HTTPC_MAX_RESP_BYTES ((size_t)1 << 20)
#define HTTPC_BUFFER_BYTES 4096L   /* curl's receive buffer per call in flight */
/* Connection cache size. curl's default (4 x easy handles in the multi)
 * shrinks as calls finish, closing keep-alive connections a burst just
 * opened. WebSocket connections count here too but are never evicted. */
#define HTTPC_MAX_CONNS 4096L
/* Finished easy handles kept for the next call (curl_easy_reset clears
 * their options): a REST call then skips curl_easy_init/cleanup and their
 * buffer allocations. Bounded, so a burst does not pin memory. */
#define HTTPC_IDLE_EASY 16

struct httpc_sock {
	struct httpc *h;
	struct event *ev;
	curl_socket_t fd;
	struct httpc_sock *prev, *next;
};

struct httpc {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	char *ca_bundle;
	char *user_agent;
	long connect_timeout_ms;
	size_t active;     /* easy handles on the multi */
	int ws_alive;      /* ws objects not yet freed */
	struct httpc_call *calls;
	struct httpc_sock *socks;
	struct httpc_owner *doomed; /* handles whose socket we failed to watch */
	CURL *idle[HTTPC_IDLE_EASY]; /* reset, not on the multi */
	size_t n_idle;
};

struct httpc_call {
	struct httpc_owner owner; /* first: CURLOPT_PRIVATE points here */
	struct httpc *h;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	struct buf rbody;
	struct buf rhdrs;
	enum gw_err write_err;  /* why a write/header callback aborted */
	bool in_cb;
	httpc_done_cb *cb;
	void *arg;
	uint64_t t0_us;
	struct httpc_call *prev, *next;
	char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- libevent <-> curl glue ---- */

static struct httpc_owner *owner_of(CURL *e);

static void process_done(struct httpc *h)
{
	CURLMsg *m;
	int left;
	/* One message at a time: a done callback may remove other handles,
	 * and curl_multi_remove_handle drops their queued messages, so the
	 * queue never points at a handle that is gone. */
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode res = m->data.result;
		struct httpc_owner *o = owner_of(e);
		o->done(o, res);
	}
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
		     ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(h->multi, fd, action, &running);
	process_done(h);
}

static struct httpc_owner *owner_of(CURL *e)
{
	char *priv = NULL;
	curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
	GW_ASSERT(priv);
	return (struct httpc_owner *)(void *)priv;
}

static void undoom(struct httpc *h, struct httpc_owner *o)
{
	if (!o->doomed)
		return;
	for (struct httpc_owner **pp = &h->doomed; *pp; pp = &(*pp)->next_doomed) {
		if (*pp == o) {
			*pp = o->next_doomed;
			break;
		}
	}
	o->doomed = false;
}

/* curl 7.88 ignores a socket callback's error, so a transfer whose socket
 * we could not watch would hang until its timeout: fail it instead. */
static void fail_doomed(struct httpc *h)
{
	while (h->doomed) {
		struct httpc_owner *o = h->doomed;
		undoom(h, o);
		o->done(o, CURLE_OUT_OF_MEMORY); /* removes its handle */
	}
}

static void doom(struct httpc *h, CURL *e)
{
	struct httpc_owner *o = owner_of(e);
	if (o->doomed)
		return;
	o->doomed = true;
	o->next_doomed = h->doomed;
	h->doomed = o;
	struct timeval now = { 0, 0 };
	evtimer_add(h->timer, &now); /* from the loop, not inside curl */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	int running;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	process_done(h);
	fail_doomed(h);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc *h = userp;
	GW_UNUSED(multi);
	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

static void sock_free(struct httpc *h, struct httpc_sock *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	event_free(s->ev);
	gw_free(s);
}

static struct httpc_sock *sock_new(struct httpc *h, curl_socket_t fd)
{
	struct httpc_sock *s = gw_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->h = h;
	s->fd = fd;
	s->ev = event_new(h->base, fd, 0, on_sock_event, h);
	if (!s->ev) {
		gw_free(s);
		return NULL;
	}
	s->next = h->socks;
	if (h->socks)
		h->socks->prev = s;
	h->socks = s;
	if (curl_multi_assign(h->multi, fd, s) != CURLM_OK) {
		sock_free(h, s);
		return NULL;
	}
	return s;
}

static int sock_fn(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct httpc *h = userp;
	struct httpc_sock *s = socketp;
	GW_UNUSED(e);
	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_free(h, s);
		return 0;
	}
	if (!s && !(s = sock_new(h, fd))) {
		doom(h, e);
		return -1;
	}
	short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
		     ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	event_del(s->ev);
	if (event_assign(s->ev, h->base, fd, kind, on_sock_event, h) != 0 ||
	    event_add(s->ev, NULL) != 0) {
		doom(h, e);
		return -1;
	}
	return 0;
}

/* ---- client ---- */

struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *opts)
{
	static const struct httpc_opts defaults = { 0 };
	if (!opts)
		opts = &defaults;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK || !base)
		return NULL;
	struct httpc *h = gw_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->base = base;
	h->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
							     : HTTPC_CONNECT_TIMEOUT_MS;
	h->user_agent = gw_strdup(opts->user_agent ? opts->user_agent
						   : "enginelabs-2api/" GW_VERSION);
	if (opts->ca_bundle)
		h->ca_bundle = gw_strdup(opts->ca_bundle);
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, on_timer, h);
	if (!h->user_agent || (opts->ca_bundle && !h->ca_bundle) || !h->multi || !h->timer)
		goto fail;
	if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_fn) ||
	    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_fn) ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) ||
	    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, HTTPC_MAX_CONNS) ||
	    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			      opts->max_host_conns > 0 ? opts->max_host_conns : 0L))
		goto fail;
	return h;
fail:
	if (h->multi)
		curl_multi_cleanup(h->multi);
	if (h->timer)
		event_free(h->timer);
	gw_free(h->user_agent);
	gw_free(h->ca_bundle);
	gw_free(h);
	return NULL;
}

void httpc_free(struct httpc *h)
{
	if (!h)
		return;
	GW_ASSERT(h->ws_alive == 0);
	while (h->calls)
		httpc_call_cancel(h->calls);
	/* Closes cached keep-alive connections; curl may still call sock_fn
	 * with CURL_POLL_REMOVE from here, so h stays valid until after. */
	curl_multi_cleanup(h->multi);
	while (h->socks)
		sock_free(h, h->socks);
	while (h->n_idle)
		curl_easy_cleanup(h->idle[--h->n_idle]);
	event_free(h->timer);
	gw_free(h->user_agent);
	gw_free(h->ca_bundle);
	gw_free(h);
}

size_t httpc_active(const struct httpc *h)
{
	return h ? h->active : 0;
}

size_t httpc__watched(const struct httpc *h)
{
	size_t n = 0;
	for (const struct httpc_sock *s = h->socks; s; s = s->next)
		n++;
	return n;
}

struct event_base *httpc__base(struct httpc *h)
{
	return h->base;
}

const char *httpc__user_agent(const struct httpc *h)
{
	return h->user_agent;
}

void httpc__ws_ref(struct httpc *h, int delta)
{
	h->ws_alive += delta;
	GW_ASSERT(h->ws_alive >= 0);
}

enum gw_err httpc__setup_easy(struct httpc *h, CURL *e)
{
	if (curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent))
		return GW_ECONFIG;
	if (h->ca_bundle && curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle))
		return GW_ECONFIG;
	return GW_OK;
}

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	GW_UNUSED(purpose);
	struct httpc_owner *o = arg;
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	o->sock_errno = fd == CURL_SOCKET_BAD ? errno : 0; /* a later attempt may succeed */
	return fd;
}

enum gw_err httpc__result_err(const struct httpc_owner *o, CURLcode res)
{
	int e = o->sock_errno;
	if (res == CURLE_OPERATION_TIMEDOUT)
		return GW_ETIMEOUT;
	if (res == CURLE_OUT_OF_MEMORY || e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
		return GW_ENOMEM;
	return GW_EIO;
}

enum gw_err httpc__add(struct httpc *h, CURL *e, struct httpc_owner *owner)
{
	owner->sock_errno = 0;
	if (curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)owner) ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, owner))
		return GW_ECONFIG;
	CURLMcode rc = curl_multi_add_handle(h->multi, e);
	if (rc == CURLM_OUT_OF_MEMORY)
		return GW_ENOMEM;
	if (rc != CURLM_OK)
		return GW_EIO;
	h->active++;
	return GW_OK;
}

void httpc__remove(struct httpc *h, CURL *e)
{
	GW_ASSERT(h->active > 0);
	undoom(h, owner_of(e));
	curl_multi_remove_handle(h->multi, e);
	h->active--;
}

/* ---- calls ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct httpc_call *c = arg;
	size_t len = size * n;
	enum gw_err err = buf_add(&c->rbody, p, len);
	if (err) {
		c->write_err = err;
		return 0; /* curl aborts with CURLE_WRITE_ERROR */
	}
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct httpc_call *c = arg;
	size_t len = size * n;
	/* A status line starts a new header block: keep only the final
	 * response's (not a 100 Continue's or a proxy CONNECT's). */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		buf_reset(&c->rhdrs);
		return len;
	}
	if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n'))
		return len;
	enum gw_err err = buf_add(&c->rhdrs, p, len);
	if (err) {
		c->write_err = err;
		return 0;
	}
	return len;
}

static bool has_body_method(const char *m)
{
	return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

static enum gw_err set_method(struct httpc_call *c, const struct httpc_call_opts *o)
{
	CURL *e = c->easy;
	CURLcode rc = CURLE_OK;
	if (strcmp(o->method, "GET") == 0)
		rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(o->method, "HEAD") == 0)
		rc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(o->method, "POST") != 0)
		rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
	if (rc)
		return GW_ECONFIG;
	if (!c->body)
		return GW_OK;
	/* POSTFIELDS turns the request into one with a body; CUSTOMREQUEST
	 * above keeps PATCH/PUT/DELETE as the verb. */
	if (curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len) ||
	    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body))
		return GW_ECONFIG;
	return GW_OK;
}

static enum gw_err set_headers(struct httpc_call *c, const struct httpc_call_opts *o)
{
	struct curl_slist *l;
	for (const char *const *hp = o->headers; hp && *hp; hp++) {
		if (strpbrk(*hp, "\r\n"))
			return GW_EINVAL; /* no header injection */
		if (!(l = curl_slist_append(c->hdrs, *hp)))
			return GW_ENOMEM;
		c->hdrs = l;
	}
	/* An empty Expect: stops curl's 100-continue wait on bodies. */
	if (c->body) {
		if (!(l = curl_slist_append(c->hdrs, "Expect:")))
			return GW_ENOMEM;
		c->hdrs = l;
	}
	if (c->hdrs && curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs))
		return GW_ECONFIG;
	return GW_OK;
}

static enum gw_err call_setup(struct httpc_call *c, const struct httpc_call_opts *o)
{
	CURL *e = c->easy;
	size_t max = o->max_resp_bytes ? o->max_resp_bytes : HTTPC_MAX_RESP_BYTES;
	long timeout = o->timeout_ms > 0 ? o->timeout_ms : HTTPC_CALL_TIMEOUT_MS;
	buf_init(&c->rbody, max);
	buf_init(&c->rhdrs, max);
	enum gw_err err = httpc__setup_easy(c->h, e);
	if (err)
		return err;
	if (curl_easy_setopt(e, CURLOPT_URL, o->url) ||
	    /* Replies are small JSON; curl's 16 KB default per call in flight
	     * was the largest part of the heap at 500 streams. */
	    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTPC_BUFFER_BYTES) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, c) ||
	    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) ||
	    curl_easy_setopt(e, CURLOPT_HEADERDATA, c) ||
	    /* Lets curl refuse early when Content-Length is already too big. */
	    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max))
		return GW_ECONFIG;
	if ((err = set_method(c, o)))
		return err;
	return set_headers(c, o);
}

static void call_unlink(struct httpc_call *c)
{
	struct httpc *h = c->h;
	if (c->prev)
		c->prev->next = c->next;
	else if (h->calls == c)
		h->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* An easy handle for a call: a kept one if any, else a new one. */
static CURL *easy_get(struct httpc *h)
{
	if (h->n_idle)
		return h->idle[--h->n_idle];
	return curl_easy_init();
}

/* Takes back a handle that is not on the multi. */
static void easy_put(struct httpc *h, CURL *e)
{
	if (h->n_idle < HTTPC_IDLE_EASY) {
		curl_easy_reset(e);
		h->idle[h->n_idle++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static void call_free(struct httpc_call *c)
{
	if (c->easy)
		easy_put(c->h, c->easy);
	curl_slist_free_all(c->hdrs);
	gw_free(c->body);
	buf_release(&c->rbody);
	buf_release(&c->rhdrs);
	gw_free(c);
}

static void fill_error(struct httpc_call *c, CURLcode res, struct httpc_resp *r)
{
	r->status = 0;
	r->error = c->errbuf[0] ? c->errbuf : curl_easy_strerror(res);
	if (c->write_err == GW_ELIMIT || res == CURLE_FILESIZE_EXCEEDED) {
		r->err = GW_ELIMIT;
		r->error = "response larger than max_resp_bytes";
	} else if (c->write_err) {
		r->err = c->write_err;
		r->error = gw_strerror(c->write_err);
	} else {
		r->err = httpc__result_err(&c->owner, res);
		if (r->err == GW_ENOMEM && res != CURLE_OUT_OF_MEMORY)
			r->error = "no descriptor or memory for a socket here (not an upstream fault)";
	}
}

static void call_done(struct httpc_owner *o, CURLcode res)
{
	struct httpc_call *c = (struct httpc_call *)o;
	struct httpc_resp r = { .err = GW_OK, .error = "" };
	/* Out of the multi (and the list) first: the callback may start new
	 * calls or cancel others, and must find this one gone. */
	httpc__remove(c->h, c->easy);
	call_unlink(c);
	if (res == CURLE_OK) {
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r.status);
		if (r.status == 0)
			fill_error(c, CURLE_WEIRD_SERVER_REPLY, &r);
	} else {
		fill_error(c, res, &r);
	}
	r.body = c->rbody.p ? c->rbody.p : "";
	r.body_len = c->rbody.len;
	r.headers = c->rhdrs.p ? c->rhdrs.p : "";
	r.headers_len = c->rhdrs.len;
	r.elapsed_us = gw_now_us() - c->t0_us;
	c->in_cb = true;
	c->cb(&r, c->arg);
	call_free(c);
}

enum gw_err httpc_call_start(struct httpc *h, const struct httpc_call_opts *o,
			     httpc_done_cb *cb, void *arg, struct httpc_call **out)
{
	if (out)
		*out = NULL;
	if (!h || !o || !o->url || !o->method || !cb)
		return GW_EINVAL;
	if (o->body && !has_body_method(o->method))
		return GW_EINVAL;
	struct httpc_call *c = gw_calloc(1, sizeof(*c));
	if (!c)
		return GW_ENOMEM;
	c->owner.done = call_done;
	c->h = h;
	c->cb = cb;
	c->arg = arg;
	c->t0_us = gw_now_us();
	enum gw_err err = GW_ENOMEM;
	if (o->body && !(c->body = gw_strndup(o->body, o->body_len)))
		goto fail;
	if (!(c->easy = easy_get(h)))
		goto fail;
	if ((err = call_setup(c, o)) || (err = httpc__add(h, c->easy, &c->owner)))
		goto fail;
	c->next = h->calls;
	if (h->calls)
		h->calls->prev = c;
	h->calls = c;
	if (out)
		*out = c;
	return GW_OK;
fail:
	call_free(c);
	return err;
}

void httpc_call_cancel(struct httpc_call *c)
{
	/* Cancelling from inside its own callback: it is already finished. */
	if (!c || c->in_cb)
		return;
	/* Remove the handle first so curl calls none of our callbacks on
	 * memory freed below. */
	httpc__remove(c->h, c->easy);
	call_unlink(c);
	call_free(c);
}

/* ---- headers ---- */

bool httpc_header_next(const struct httpc_resp *r, const char *name, const char **pos,
		       const char **val, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *p = *pos ? *pos : r->headers;
	const char *end = r->headers + r->headers_len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;
		const char *le = eol ? eol : end;
		if (le > p && le[-1] == '\r')
			le--;
		if ((size_t)(le - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1;
			while (v < le && (*v == ' ' || *v == '\t'))
				v++;
			while (le > v && (le[-1] == ' ' || le[-1] == '\t'))
				le--;
			*val = v;
			*vlen = (size_t)(le - v);
			*pos = next;
			return true;
		}
		p = next;
	}
	*pos = end;
	return false;
}
