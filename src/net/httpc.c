/* httpc.c - curl multi driven by libevent (curl's hiperfifo pattern).
 *
 * REST calls share one multi handle; WebSockets connect on small multis of
 * their own (see HTTPC_WS_PER_MULTI), and so do the connections of direct
 * calls (h1c.c), which curl opens but never reads. Direct and curl calls
 * share the HTTPC_REST_CONNS slots and the queue. Each multi has one evtimer for
 * curl's timeout, and there is one event per socket curl asks us to
 * watch. Two hiperfifo habits are deliberately absent: the timer is never
 * deleted because still_running hit 0 (a handle added from a done callback
 * arms it through TIMERFUNCTION, and deleting it stalls that handle), and
 * socket_action is never called from inside TIMERFUNCTION (curl forbids
 * reentrancy; a 0 timeout runs it from the loop instead). */
#include "net/httpc.h"
#include "net/h1c.h"
#include "net/httpc_internal.h"
#include "util/buf.h"
#include "util/http1.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HTTPC_CONNECT_TIMEOUT_MS 10000L
#define HTTPC_CALL_TIMEOUT_MS 30000L
#define HTTPC_MAX_RESP_BYTES ((size_t)1 << 20)
#define HTTPC_MAX_HEADER_BYTES ((size_t)64 << 10) /* a direct call's request headers */
#define HTTPC_BUFFER_BYTES 4096L   /* curl's receive buffer per call in flight */
/* WebSocket connections are in use for their whole life and never evicted:
 * a shard's cache only has to hold one more than its handles. */
#define HTTPC_WS_CONNS ((long)HTTPC_WS_PER_MULTI + 1)
/* Finished easy handles kept for the next call (curl_easy_reset clears
 * their options): a REST call then skips curl_easy_init/cleanup and their
 * buffer allocations. Bounded, so a burst does not pin memory. */
#define HTTPC_IDLE_EASY 16
/* Idle objects kept for ws.c (its frame parsers, 4 KB each). */
#define HTTPC_SPARES 32

/* A bounded stack of idle objects: reset easy handles, ws.c's spares. */
struct httpc_stack {
	void *v[HTTPC_SPARES];
	size_t n, cap;
};
_Static_assert(HTTPC_IDLE_EASY <= HTTPC_SPARES, "the idle easy handles fit a stack");

/* One curl multi handle with its timer: the REST calls' one, or a
 * WebSocket shard. */
struct httpc_multi {
	struct httpc *h;
	CURLM *m;
	struct event *timer;
	size_t handles;            /* easy handles on it */
	struct httpc_multi *next;  /* WebSocket shards only */
};

struct httpc_sock {
	struct httpc_multi *mu;
	struct event *ev;
	curl_socket_t fd;
	struct httpc_sock *prev, *next;
};

struct httpc {
	struct event_base *base;
	struct httpc_multi rest;
	struct httpc_multi *shards; /* WebSocket multis, created as needed */
	struct event *reap;         /* frees empty shards, from the loop */
	/* DNS answers and TLS sessions, shared by all of h's easy handles: a
	 * new WebSocket can resume the session a REST call to the same host
	 * left, and no handle keeps a session cache of its own. (Sessions
	 * come from REST connections only: a WebSocket's TLS 1.3 tickets
	 * arrive on our own SSL_read, unseen by curl.) One thread uses it,
	 * so it needs no locks. */
	CURLSH *share;
	char *ca_bundle;
	char *user_agent;
	long connect_timeout_ms;
	int ws_alive;      /* ws objects not yet freed */
	struct httpc_call *calls;
	/* Calls waiting for one of the HTTPC_REST_CONNS slots, oldest first:
	 * they hold no curl handle or buffer until they start. */
	struct httpc_call *queue, **queue_tail;
	struct event *pump;         /* starts queued calls, from the loop */
	struct event *qtimer;       /* fails queued calls whose timeout passed */
	uint64_t q_due_us;          /* when qtimer fires, 0 = not armed */
	struct httpc_sock *socks;
	struct httpc_owner *doomed; /* handles whose socket we failed to watch */
	struct httpc_stack idle;    /* reset easy handles, not on a multi */
	struct httpc_stack spare;   /* given back by ws.c, for its next taker */
	void (*spare_free)(void *);
	struct h1c *direct;         /* kept connections of the direct calls */
};

struct httpc_call {
	struct httpc_owner owner; /* first: CURLOPT_PRIVATE points here */
	struct httpc *h;
	CURL *easy;             /* NULL while queued, and for direct calls */
	size_t olen;            /* h1c_origin_len(url); 0: the call goes through curl */
	struct h1c_call *lc;    /* a direct call in flight */
	struct buf dhdrs;       /* a direct call's header lines, as sent */
	unsigned dflags;        /* H1C_HAS_* */
	struct curl_slist *hdrs;
	char *url;
	char *body;
	size_t body_len;
	char method[8];
	long timeout_ms;
	size_t max_resp;
	struct buf rbody;
	struct buf rhdrs;
	enum gw_err write_err;  /* why a write/header callback aborted */
	bool in_cb;
	httpc_done_cb *cb;
	void *arg;
	uint64_t t0_us;
	struct httpc_call *prev, *next; /* h->calls: every call not finished */
	struct httpc_call *q_next;      /* h->queue, while waiting for a slot */
	struct httpc_call **q_pprev;    /* what points at this call in h->queue */
	char errbuf[CURL_ERROR_SIZE];
};

static const char queue_timeout_msg[] = "no upstream connection came free within the call's timeout";

static void on_pump(evutil_socket_t fd, short what, void *arg);
static void on_qtimer(evutil_socket_t fd, short what, void *arg);

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void *stack_take(struct httpc_stack *s)
{
	return s->n ? s->v[--s->n] : NULL;
}

/* False when full: the caller frees p. */
static bool stack_put(struct httpc_stack *s, void *p)
{
	if (s->n == s->cap)
		return false;
	s->v[s->n++] = p;
	return true;
}

/* ---- libevent <-> curl glue ---- */

static struct httpc_owner *owner_of(CURL *e);

static void process_done(struct httpc_multi *mu)
{
	CURLMsg *m;
	int left;
	/* One message at a time: a done callback may remove other handles,
	 * and curl_multi_remove_handle drops their queued messages, so the
	 * queue never points at a handle that is gone. */
	while ((m = curl_multi_info_read(mu->m, &left))) {
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
	struct httpc_multi *mu = arg;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
		     ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(mu->m, fd, action, &running);
	process_done(mu);
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

static void doom(struct httpc_multi *mu, CURL *e)
{
	struct httpc *h = mu->h;
	struct httpc_owner *o = owner_of(e);
	if (o->doomed)
		return;
	o->doomed = true;
	o->next_doomed = h->doomed;
	h->doomed = o;
	struct timeval now = { 0, 0 };
	evtimer_add(mu->timer, &now); /* from the loop, not inside curl */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct httpc_multi *mu = arg;
	struct httpc *h = mu->h;
	int running;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	curl_multi_socket_action(mu->m, CURL_SOCKET_TIMEOUT, 0, &running);
	process_done(mu);
	fail_doomed(h);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc_multi *mu = userp;
	GW_UNUSED(multi);
	if (timeout_ms < 0) {
		evtimer_del(mu->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	return evtimer_add(mu->timer, &tv) == 0 ? 0 : -1;
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

static struct httpc_sock *sock_new(struct httpc_multi *mu, curl_socket_t fd)
{
	struct httpc *h = mu->h;
	struct httpc_sock *s = gw_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->mu = mu;
	s->fd = fd;
	s->ev = event_new(h->base, fd, 0, on_sock_event, mu);
	if (!s->ev) {
		gw_free(s);
		return NULL;
	}
	s->next = h->socks;
	if (h->socks)
		h->socks->prev = s;
	h->socks = s;
	if (curl_multi_assign(mu->m, fd, s) != CURLM_OK) {
		sock_free(h, s);
		return NULL;
	}
	return s;
}

static int sock_fn(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct httpc_multi *mu = userp;
	struct httpc_sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_free(mu->h, s);
		return 0;
	}
	if (!s && !(s = sock_new(mu, fd))) {
		doom(mu, e);
		return -1;
	}
	short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
		     ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	event_del(s->ev);
	if (event_assign(s->ev, mu->h->base, fd, kind, on_sock_event, mu) != 0 ||
	    event_add(s->ev, NULL) != 0) {
		doom(mu, e);
		return -1;
	}
	return 0;
}

static bool multi_init(struct httpc_multi *mu, struct httpc *h, long max_conns)
{
	mu->h = h;
	mu->m = curl_multi_init();
	mu->timer = evtimer_new(h->base, on_timer, mu);
	return mu->m && mu->timer &&
	       !curl_multi_setopt(mu->m, CURLMOPT_SOCKETFUNCTION, sock_fn) &&
	       !curl_multi_setopt(mu->m, CURLMOPT_SOCKETDATA, mu) &&
	       !curl_multi_setopt(mu->m, CURLMOPT_TIMERFUNCTION, timer_fn) &&
	       !curl_multi_setopt(mu->m, CURLMOPT_TIMERDATA, mu) &&
	       !curl_multi_setopt(mu->m, CURLMOPT_MAXCONNECTS, max_conns);
}

/* Closes the multi's cached connections; curl may still call sock_fn with
 * CURL_POLL_REMOVE from here, so mu stays valid until after. */
static void multi_fini(struct httpc_multi *mu)
{
	if (!mu->h)
		return; /* multi_init never ran */
	if (mu->m)
		curl_multi_cleanup(mu->m);
	for (struct httpc_sock *s = mu->h->socks, *next; s; s = next) {
		next = s->next;
		if (s->mu == mu)
			sock_free(mu->h, s);
	}
	if (mu->timer)
		event_free(mu->timer);
}

static void shard_free(struct httpc_multi *mu)
{
	multi_fini(mu);
	gw_free(mu);
}

/* A shard with room for one more WebSocket: the first that has some, so
 * the others empty out and get reaped. */
static struct httpc_multi *shard_get(struct httpc *h)
{
	for (struct httpc_multi *mu = h->shards; mu; mu = mu->next) {
		if (mu->handles < HTTPC_WS_PER_MULTI)
			return mu;
	}
	struct httpc_multi *mu = gw_calloc(1, sizeof(*mu));
	if (!mu)
		return NULL;
	if (!multi_init(mu, h, HTTPC_WS_CONNS)) {
		shard_free(mu);
		return NULL;
	}
	mu->next = h->shards;
	h->shards = mu;
	return mu;
}

/* Frees empty shards but one, which the next WebSocket takes. Runs from
 * the loop: a shard empties inside its own process_done. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	bool kept = false;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	for (struct httpc_multi **pp = &h->shards; *pp;) {
		struct httpc_multi *mu = *pp;
		if (mu->handles > 0 || !kept) {
			kept = kept || mu->handles == 0;
			pp = &mu->next;
			continue;
		}
		*pp = mu->next;
		shard_free(mu);
	}
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
	h->queue_tail = &h->queue;
	h->idle.cap = HTTPC_IDLE_EASY;
	h->spare.cap = HTTPC_SPARES;
	h->reap = event_new(base, -1, 0, on_reap, h);
	h->pump = event_new(base, -1, 0, on_pump, h);
	h->qtimer = evtimer_new(base, on_qtimer, h);
	h->share = curl_share_init();
	h->direct = h1c_new(h);
	if (!h->user_agent || !h->direct || (opts->ca_bundle && !h->ca_bundle) || !h->reap || !h->pump ||
	    !h->qtimer ||
	    !h->share ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) ||
	    !multi_init(&h->rest, h, HTTPC_REST_CONNS)) {
		httpc_free(h);
		return NULL;
	}
	return h;
}

void httpc_free(struct httpc *h)
{
	if (!h)
		return;
	GW_ASSERT(h->ws_alive == 0);
	while (h->calls)
		httpc_call_cancel(h->calls);
	h1c_free(h->direct); /* its connections are on the shards */
	multi_fini(&h->rest);
	while (h->shards) {
		struct httpc_multi *mu = h->shards;
		h->shards = mu->next;
		shard_free(mu);
	}
	GW_ASSERT(!h->socks);
	for (void *e; (e = stack_take(&h->idle));)
		curl_easy_cleanup(e);
	for (void *p; (p = stack_take(&h->spare));)
		h->spare_free(p);
	if (h->share)
		curl_share_cleanup(h->share); /* after the last easy handle */
	if (h->reap)
		event_free(h->reap);
	if (h->pump)
		event_free(h->pump);
	if (h->qtimer)
		event_free(h->qtimer);
	gw_free(h->user_agent);
	gw_free(h->ca_bundle);
	gw_free(h);
}

size_t httpc_active(const struct httpc *h)
{
	if (!h)
		return 0;
	/* A direct call counts once, whether or not it holds a connection;
	 * kept connections do not count. */
	size_t n = h->rest.handles + h1c_calls(h->direct);
	for (const struct httpc_multi *mu = h->shards; mu; mu = mu->next)
		n += mu->handles;
	n -= h1c_conns(h->direct); /* on the shards, but not calls */
	for (const struct httpc_call *c = h->queue; c; c = c->q_next)
		n++;
	return n;
}

size_t httpc__watched(const struct httpc *h)
{
	size_t n = 0;
	for (const struct httpc_sock *s = h->socks; s; s = s->next)
		n++;
	return n;
}

size_t httpc__direct_conns(const struct httpc *h)
{
	return h1c_conns(h->direct);
}

size_t httpc__shards(const struct httpc *h)
{
	size_t n = 0;
	for (const struct httpc_multi *mu = h->shards; mu; mu = mu->next)
		n++;
	return n;
}

int httpc__ws_alive(const struct httpc *h)
{
	return h->ws_alive;
}

struct event_base *httpc__base(struct httpc *h)
{
	return h->base;
}

const char *httpc__user_agent(const struct httpc *h)
{
	return h->user_agent;
}

void *httpc__spare_take(struct httpc *h)
{
	return stack_take(&h->spare);
}

void httpc__spare_give(struct httpc *h, void *p, void (*free_fn)(void *))
{
	h->spare_free = free_fn;
	if (!stack_put(&h->spare, p))
		free_fn(p);
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
	    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent) ||
	    curl_easy_setopt(e, CURLOPT_SHARE, h->share))
		return GW_ECONFIG;
	if (h->ca_bundle && curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle))
		return GW_ECONFIG;
	return GW_OK;
}

enum gw_err httpc__set_origin(CURL *e, const char *url, size_t n)
{
	struct buf b;
	buf_init(&b, n + 2);
	enum gw_err err = buf_add(&b, url, n);
	if (!err)
		err = buf_addc(&b, '/');
	if (!err && curl_easy_setopt(e, CURLOPT_URL, b.p))
		err = GW_ECONFIG;
	buf_release(&b);
	return err;
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

enum gw_err httpc__add(struct httpc *h, CURL *e, struct httpc_owner *owner, bool ws)
{
	struct httpc_multi *mu = ws ? shard_get(h) : &h->rest;
	if (!mu)
		return GW_ENOMEM;
	owner->sock_errno = 0;
	owner->mu = mu;
	if (curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)owner) ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, owner))
		return GW_ECONFIG;
	CURLMcode rc = curl_multi_add_handle(mu->m, e);
	if (rc == CURLM_OUT_OF_MEMORY)
		return GW_ENOMEM;
	if (rc != CURLM_OK)
		return GW_EIO;
	mu->handles++;
	return GW_OK;
}

void httpc__remove(struct httpc *h, CURL *e)
{
	struct httpc_owner *o = owner_of(e);
	struct httpc_multi *mu = o->mu;
	GW_ASSERT(mu->handles > 0);
	undoom(h, o);
	curl_multi_remove_handle(mu->m, e);
	if (--mu->handles == 0 && mu != &h->rest)
		event_active(h->reap, 0, 0);
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

static enum gw_err set_method(struct httpc_call *c)
{
	CURL *e = c->easy;
	CURLcode rc = CURLE_OK;
	if (strcmp(c->method, "GET") == 0)
		rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(c->method, "HEAD") == 0)
		rc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(c->method, "POST") != 0)
		rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	if (rc)
		return GW_ECONFIG;
	if (!c->body && !http1_method_has_body(c->method))
		return GW_OK;
	/* POSTFIELDS turns the request into one with a body; CUSTOMREQUEST
	 * above keeps PATCH/PUT/DELETE as the verb. A POST without a body
	 * still needs it ("", Content-Length: 0): curl would send a GET. */
	if (curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len) ||
	    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body ? c->body : ""))
		return GW_ECONFIG;
	return GW_OK;
}

static enum gw_err make_headers(struct httpc_call *c, const struct httpc_call_opts *o)
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
	return GW_OK;
}

/* Copies what the call needs from o, but the URL: curl copies that when
 * the call starts, and a call that has to wait copies it then. */
static enum gw_err call_prepare(struct httpc_call *c, const struct httpc_call_opts *o)
{
	size_t ml = strlen(o->method);
	if (ml >= sizeof(c->method))
		return GW_EINVAL;
	memcpy(c->method, o->method, ml + 1);
	c->olen = o->direct ? h1c_origin_len(o->url) : 0;
	buf_init(&c->dhdrs, HTTPC_MAX_HEADER_BYTES);
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : HTTPC_CALL_TIMEOUT_MS;
	c->max_resp = o->max_resp_bytes ? o->max_resp_bytes : HTTPC_MAX_RESP_BYTES;
	if (o->body) {
		if (!(c->body = gw_strndup(o->body, o->body_len)))
			return GW_ENOMEM;
		c->body_len = o->body_len;
	}
	return c->olen ? h1c_headers_render(o->headers, &c->dhdrs, &c->dflags) : make_headers(c, o);
}

static enum gw_err call_setup(struct httpc_call *c, const char *url, long timeout_ms)
{
	CURL *e = c->easy;
	buf_init(&c->rbody, c->max_resp);
	buf_init(&c->rhdrs, c->max_resp);
	enum gw_err err = httpc__setup_easy(c->h, e);
	if (err)
		return err;
	if (curl_easy_setopt(e, CURLOPT_URL, url) ||
	    /* Replies are small JSON; curl's 16 KB default per call in flight
	     * was the largest part of the heap at 500 streams. */
	    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTPC_BUFFER_BYTES) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, c) ||
	    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) ||
	    curl_easy_setopt(e, CURLOPT_HEADERDATA, c) ||
	    /* Lets curl refuse early when Content-Length is already too big. */
	    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_resp) ||
	    (c->hdrs && curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs)))
		return GW_ECONFIG;
	return set_method(c);
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

CURL *httpc__easy_get(struct httpc *h)
{
	CURL *e = stack_take(&h->idle);
	return e ? e : curl_easy_init();
}

void httpc__easy_put(struct httpc *h, CURL *e)
{
	if (!e)
		return;
	if (h->idle.n == h->idle.cap) {
		curl_easy_cleanup(e); /* no room: not worth a reset */
		return;
	}
	curl_easy_reset(e);
	(void)stack_put(&h->idle, e);
}

static void call_free(struct httpc_call *c)
{
	if (c->easy)
		httpc__easy_put(c->h, c->easy);
	curl_slist_free_all(c->hdrs);
	buf_release(&c->dhdrs);
	gw_free(c->url);
	gw_free(c->body);
	buf_release(&c->rbody);
	buf_release(&c->rhdrs);
	gw_free(c);
}

/* Calls holding one of the HTTPC_REST_CONNS slots. */
static size_t in_flight(const struct httpc *h)
{
	return h->rest.handles + h1c_calls(h->direct);
}

static void call_report(struct httpc_call *c, struct httpc_resp *r);
static void pump_kick(struct httpc *h);

static void direct_done(void *arg, const struct h1c_result *res)
{
	struct httpc_call *c = arg;
	c->lc = NULL;
	call_unlink(c);
	pump_kick(c->h);
	struct httpc_resp r = { .err = res->err, .status = res->status,
				.error = res->err ? res->error : "" };
	call_report(c, &r);
}

static enum gw_err direct_launch(struct httpc_call *c, const char *url, long left_ms)
{
	buf_init(&c->rbody, c->max_resp);
	buf_init(&c->rhdrs, c->max_resp);
	struct h1c_req q = {
		.method = c->method,
		.url = url,
		.origin_len = c->olen,
		.hdr_block = c->dhdrs.p,
		.hdr_len = c->dhdrs.len,
		.hdr_flags = c->dflags,
		.body = c->body,
		.body_len = c->body_len,
		.timeout_ms = left_ms,
		.resp_body = &c->rbody,
		.resp_hdrs = &c->rhdrs,
	};
	return h1c_call_start(c->h->direct, &q, direct_done, c, &c->lc);
}

/* Hands the call to curl (or h1c), with what is left of its timeout. */
static enum gw_err call_launch(struct httpc_call *c, const char *url)
{
	long left = c->timeout_ms - (long)((gw_now_us() - c->t0_us) / 1000);
	if (left <= 0)
		return GW_ETIMEOUT;
	if (c->olen)
		return direct_launch(c, url, left);
	if (!(c->easy = httpc__easy_get(c->h)))
		return GW_ENOMEM;
	enum gw_err err = call_setup(c, url, left);
	return err ? err : httpc__add(c->h, c->easy, &c->owner, false);
}

/* Reports r and frees c; c is off the multi, the queue and the list. */
static void call_report(struct httpc_call *c, struct httpc_resp *r)
{
	r->body = c->rbody.p ? c->rbody.p : "";
	r->body_len = c->rbody.len;
	r->headers = c->rhdrs.p ? c->rhdrs.p : "";
	r->headers_len = c->rhdrs.len;
	r->elapsed_us = gw_now_us() - c->t0_us;
	c->in_cb = true;
	c->cb(r, c->arg);
	call_free(c);
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

/* A slot was freed: queued calls start from the loop, never from inside
 * an API call or another call's callback. */
static void pump_kick(struct httpc *h)
{
	if (h->queue)
		event_active(h->pump, 0, 0);
}

static void call_done(struct httpc_owner *o, CURLcode res)
{
	struct httpc_call *c = (struct httpc_call *)o;
	struct httpc *h = c->h;
	struct httpc_resp r = { .err = GW_OK, .error = "" };
	/* Out of the multi (and the list) first: the callback may start new
	 * calls or cancel others, and must find this one gone. */
	httpc__remove(h, c->easy);
	call_unlink(c);
	pump_kick(h);
	if (res == CURLE_OK) {
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r.status);
		if (r.status == 0)
			fill_error(c, CURLE_WEIRD_SERVER_REPLY, &r);
	} else {
		fill_error(c, res, &r);
	}
	call_report(c, &r);
}

static uint64_t call_due_us(const struct httpc_call *c)
{
	return c->t0_us + (uint64_t)c->timeout_ms * 1000u;
}

/* Arms qtimer for due_us unless it fires sooner already. */
static void qtimer_arm(struct httpc *h, uint64_t due_us)
{
	if (h->q_due_us && h->q_due_us <= due_us)
		return;
	uint64_t now = gw_now_us();
	uint64_t in = due_us > now ? due_us - now : 0;
	struct timeval tv = { (time_t)(in / 1000000u), (suseconds_t)(in % 1000000u) };
	h->q_due_us = evtimer_add(h->qtimer, &tv) == 0 ? due_us : 0;
}

static void queue_push(struct httpc *h, struct httpc_call *c)
{
	c->q_next = NULL;
	c->q_pprev = h->queue_tail;
	*h->queue_tail = c;
	h->queue_tail = &c->q_next;
	qtimer_arm(h, call_due_us(c));
}

static void queue_remove(struct httpc *h, struct httpc_call *c)
{
	*c->q_pprev = c->q_next;
	if (c->q_next)
		c->q_next->q_pprev = c->q_pprev;
	else
		h->queue_tail = c->q_pprev;
	if (!h->queue) {
		evtimer_del(h->qtimer);
		h->q_due_us = 0;
	}
}

/* Ends a call that never reached curl; the callback may start or cancel
 * other calls, so callers read the queue again after it. */
static void queue_fail(struct httpc_call *c, enum gw_err err)
{
	queue_remove(c->h, c);
	call_unlink(c);
	struct httpc_resp r = { .err = err,
				.error = err == GW_ETIMEOUT ? queue_timeout_msg : gw_strerror(err) };
	call_report(c, &r);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	while (h->queue && in_flight(h) < (size_t)HTTPC_REST_CONNS) {
		struct httpc_call *c = h->queue;
		enum gw_err err = call_launch(c, c->url);
		if (err) {
			queue_fail(c, err);
		} else {
			queue_remove(h, c);
			gw_free(c->url); /* curl has its own copy */
			c->url = NULL;
		}
	}
}

/* Calls still queued when their timeout passes end with GW_ETIMEOUT then,
 * not when a slot comes free. */
static void on_qtimer(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	h->q_due_us = 0;
	struct httpc_call *c = h->queue;
	while (c) {
		if (call_due_us(c) > gw_now_us()) {
			qtimer_arm(h, call_due_us(c));
			c = c->q_next;
			continue;
		}
		queue_fail(c, GW_ETIMEOUT);
		c = h->queue;
	}
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
	enum gw_err err = call_prepare(c, o);
	if (err)
		goto fail;
	/* Behind the queue when there is one, so calls start in order. */
	if (h->queue || in_flight(h) >= (size_t)HTTPC_REST_CONNS) {
		if (!(c->url = gw_strdup(o->url))) {
			err = GW_ENOMEM;
			goto fail;
		}
		queue_push(h, c);
	} else if ((err = call_launch(c, o->url))) {
		goto fail;
	}
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
	struct httpc *h = c->h;
	if (c->lc) {
		h1c_call_cancel(c->lc);
		c->lc = NULL;
		pump_kick(h);
	} else if (c->easy) {
		/* Remove the handle first so curl calls none of our callbacks
		 * on memory freed below. */
		httpc__remove(h, c->easy);
		pump_kick(h);
	} else {
		queue_remove(h, c);
	}
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
