/* test_httpc.c - httpc against an in-process evhttp server on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/httpc.h"
#include "net/httpc_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct delayed;

struct fx {
	struct delayed *slow; /* /slow replies not sent yet */
	int slow_ms;          /* how late /slow answers; 0 = 100 ms */
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *lis;
	int port;
	struct httpc *h;
	int done;
	int want;
	bool timed_out;
	int server_conns;
};

struct result {
	struct fx *f;
	bool called;
	enum gw_err err;
	long status;
	char *body;
	size_t body_len;
	char *headers;
	int cookies;
	char cookie[3][16];
	int order;      /* 1 for the first call to end, 2 for the next... */
	bool queued_out; /* timed out waiting for a connection, not in curl */
	char error_text[256];
};

static bool in_start; /* set while httpc_call_start runs */
/* The whole suite runs twice: calls through curl, then direct (h1c.c). */
static bool direct;

/* ---- server ---- */

struct delayed {
	struct fx *f;
	struct evhttp_request *req;
	struct event *ev;
	struct delayed *next;
};

static void delayed_unlink(struct delayed *d)
{
	for (struct delayed **pp = &d->f->slow; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	event_free(d->ev);
	free(d);
}

static void reply_delayed(evutil_socket_t fd, short what, void *arg)
{
	struct delayed *d = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	evhttp_send_reply(d->req, 200, "OK", NULL);
	delayed_unlink(d);
}

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_PUT: return "PUT";
	default: return "OTHER";
	}
}

static void route_echo(struct evhttp_request *req, struct evbuffer *out)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
	const char *expect = evhttp_find_header(hin, "Expect");
	const char *xt = evhttp_find_header(hin, "X-Test");
	const char *ua = evhttp_find_header(hin, "User-Agent");
	struct evkeyvalq *ho = evhttp_request_get_output_headers(req);
	evhttp_add_header(ho, "X-Expect", expect ? expect : "none");
	evhttp_add_header(ho, "X-Gone", evhttp_find_header(hin, "X-Gone") ? "sent" : "absent");
	evhttp_add_header(ho, "X-UA", ua ? ua : "none");
	const char *host = evhttp_find_header(hin, "Host");
	const char *accept = evhttp_find_header(hin, "Accept");
	const char *cl = evhttp_find_header(hin, "Content-Length");
	evhttp_add_header(ho, "X-Host", host ? host : "none");
	evhttp_add_header(ho, "X-Accept", accept ? accept : "none");
	evhttp_add_header(ho, "X-CL", cl ? cl : "none");
	evbuffer_add_printf(out, "%s %zu %s\n", method_name(evhttp_request_get_command(req)),
			    evbuffer_get_length(in), xt ? xt : "-");
	if (evbuffer_get_length(in) < 4096)
		evbuffer_add_buffer(out, in);
	evhttp_send_reply(req, 200, "OK", out);
}

static void route_big(struct evhttp_request *req, struct evbuffer *out, bool chunked)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	size_t n = q ? strtoul(q, NULL, 10) : 0;
	char *p = malloc(n + 1);
	memset(p, 'x', n);
	if (!chunked) {
		evbuffer_add(out, p, n);
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		evhttp_send_reply_start(req, 200, "OK");
		for (size_t off = 0; off < n; off += 1000) {
			evbuffer_add(out, p + off, n - off < 1000 ? n - off : 1000);
			evhttp_send_reply_chunk(req, out);
		}
		evhttp_send_reply_end(req);
	}
	free(p);
}

static void route(struct evhttp_request *req, void *arg)
{
	struct fx *f = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *ho = evhttp_request_get_output_headers(req);
	if (strcmp(path, "/get") == 0) {
		evbuffer_add_printf(out, "hello");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(path, "/echo") == 0) {
		route_echo(req, out);
	} else if (strcmp(path, "/cookies") == 0) {
		evhttp_add_header(ho, "Set-Cookie", "a=1; Path=/");
		evhttp_add_header(ho, "X-Other", "y");
		evhttp_add_header(ho, "Set-Cookie", "b=2");
		evhttp_add_header(ho, "set-cookie", "c=3");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(path, "/big") == 0 || strcmp(path, "/chunked") == 0) {
		route_big(req, out, path[1] == 'c');
	} else if (strcmp(path, "/slow") == 0) {
		struct delayed *d = calloc(1, sizeof(*d));
		int ms = f->slow_ms ? f->slow_ms : 100;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		d->f = f;
		d->req = req;
		d->next = f->slow;
		f->slow = d;
		d->ev = evtimer_new(f->base, reply_delayed, d);
		evtimer_add(d->ev, &tv);
	} else if (strcmp(path, "/hang") == 0) {
		/* never answered; evhttp_free drops it */
	} else {
		evhttp_send_reply(req, 404, "Not Found", out);
	}
	evbuffer_free(out);
}

static struct bufferevent *count_conn(struct event_base *base, void *arg)
{
	struct fx *f = arg;
	GW_UNUSED(base);
	f->server_conns++;
	return NULL; /* evhttp makes its default bufferevent */
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->base = event_base_new();
	f->http = evhttp_new(f->base);
	evhttp_set_allowed_methods(f->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
						    EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT);
	evhttp_set_gencb(f->http, route, f);
	evhttp_set_bevcb(f->http, count_conn, f);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	f->lis = evconnlistener_new_bind(f->base, NULL, NULL,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
					 (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(f->lis);
	assert_non_null(evhttp_bind_listener(f->http, f->lis));
	socklen_t sl = sizeof(sin);
	getsockname(evconnlistener_get_fd(f->lis), (struct sockaddr *)&sin, &sl);
	f->port = ntohs(sin.sin_port);
	f->h = httpc_new(f->base, NULL);
	assert_non_null(f->h);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	httpc_free(f->h);
	while (f->slow)
		delayed_unlink(f->slow);
	evhttp_free(f->http);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* ---- client helpers ---- */

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
	struct fx *f = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	f->timed_out = true;
	event_base_loopbreak(f->base);
}

/* Runs the loop until f->done reaches want (or a 10 s safety stop). */
static void run(struct fx *f, int want)
{
	struct timeval tv = { 10, 0 };
	struct event *safety = evtimer_new(f->base, on_safety, f);
	f->want = want;
	if (f->done < want) {
		evtimer_add(safety, &tv);
		event_base_dispatch(f->base);
	}
	event_free(safety);
	assert_false(f->timed_out);
	assert_int_equal(f->done, want);
}

static void on_done(const struct httpc_resp *r, void *arg)
{
	struct result *res = arg;
	assert_false(in_start);
	assert_false(res->called);
	assert_non_null(r->body);
	assert_non_null(r->error);
	res->called = true;
	res->err = r->err;
	res->queued_out = strstr(r->error, "no upstream connection came free") != NULL;
	snprintf(res->error_text, sizeof(res->error_text), "%s", r->error);
	res->status = r->status;
	res->body = malloc(r->body_len + 1);
	memcpy(res->body, r->body, r->body_len + 1);
	res->body_len = r->body_len;
	res->headers = strndup(r->headers, r->headers_len);
	const char *pos = NULL, *v;
	size_t vl;
	while (httpc_header_next(r, "set-cookie", &pos, &v, &vl)) {
		if (res->cookies < 3)
			snprintf(res->cookie[res->cookies], sizeof(res->cookie[0]), "%.*s", (int)vl, v);
		res->cookies++;
	}
	res->order = res->f->done + 1;
	if (++res->f->done >= res->f->want)
		event_base_loopbreak(res->f->base);
}

static void result_free(struct result *r)
{
	free(r->body);
	free(r->headers);
}

static struct httpc_call *start(struct fx *f, struct result *res, const char *method,
				const char *path, const char *body, size_t blen, size_t max,
				long timeout)
{
	char url[256];
	struct httpc_call *c = NULL;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
	static const char *const hdrs[] = { "X-Test: yes", "Content-Type: text/plain", NULL };
	struct httpc_call_opts o = { .method = method, .url = url, .headers = hdrs, .body = body,
				     .body_len = blen, .max_resp_bytes = max, .timeout_ms = timeout,
				     .direct = direct };
	res->f = f;
	in_start = true;
	enum gw_err err = httpc_call_start(f->h, &o, on_done, res, &c);
	in_start = false;
	assert_int_equal(err, GW_OK);
	assert_non_null(c);
	return c;
}

/* ---- tests ---- */

static void test_get(void **state)
{
	struct fx *f = *state;
	struct result r = { 0 };
	start(f, &r, "GET", "/get", NULL, 0, 0, 0);
	assert_false(r.called); /* never from inside start */
	assert_int_equal(httpc_active(f->h), 1);
	run(f, 1);
	assert_int_equal(r.err, GW_OK);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello");
	assert_int_equal(r.body_len, 5);
	assert_non_null(strstr(r.headers, "Content-Length: 5\r\n"));
	assert_null(strstr(r.headers, "HTTP/1.1")); /* header lines only */
	assert_int_equal(httpc_active(f->h), 0);
	result_free(&r);
}

static void test_post_and_patch(void **state)
{
	struct fx *f = *state;
	struct result a = { 0 }, b = { 0 }, c = { 0 };
	start(f, &a, "POST", "/echo", "{\"k\":1}", 7, 0, 0);
	start(f, &b, "PATCH", "/echo", "abc", 3, 0, 0);
	start(f, &c, "DELETE", "/echo", NULL, 0, 0, 0);
	run(f, 3);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.body, "POST 7 yes\n{\"k\":1}");
	assert_string_equal(b.body, "PATCH 3 yes\nabc");
	assert_string_equal(c.body, "DELETE 0 yes\n");
	assert_non_null(strstr(a.headers, "X-Expect: none"));
	result_free(&a);
	result_free(&b);
	result_free(&c);
}

static void test_big_post_no_expect(void **state)
{
	struct fx *f = *state;
	struct result r = { 0 };
	size_t n = 2 << 20;
	char *body = malloc(n);
	memset(body, 'b', n);
	start(f, &r, "POST", "/echo", body, n, 0, 0);
	free(body); /* copied by start */
	run(f, 1);
	assert_int_equal(r.err, GW_OK);
	assert_string_equal(r.body, "POST 2097152 yes\n");
	assert_non_null(strstr(r.headers, "X-Expect: none"));
	result_free(&r);
}

static void test_headers_cookies(void **state)
{
	struct fx *f = *state;
	struct result r = { 0 };
	start(f, &r, "GET", "/cookies", NULL, 0, 0, 0);
	run(f, 1);
	assert_int_equal(r.cookies, 3);
	assert_string_equal(r.cookie[0], "a=1; Path=/");
	assert_string_equal(r.cookie[1], "b=2");
	assert_string_equal(r.cookie[2], "c=3");
	result_free(&r);
}

static void test_header_next_edge(void **state)
{
	GW_UNUSED(state);
	const char *hb = "Set-Cookies: no\r\nSet-Cookie:  x=1 \r\nX: y\r\nSet-Cookie:\r\n";
	struct httpc_resp r = { .headers = hb, .headers_len = strlen(hb), .body = "", .error = "" };
	const char *pos = NULL, *v;
	size_t vl;
	assert_true(httpc_header_next(&r, "Set-Cookie", &pos, &v, &vl));
	assert_int_equal(vl, 3);
	assert_memory_equal(v, "x=1", 3);
	assert_true(httpc_header_next(&r, "Set-Cookie", &pos, &v, &vl));
	assert_int_equal(vl, 0);
	assert_false(httpc_header_next(&r, "Set-Cookie", &pos, &v, &vl));
	pos = NULL;
	assert_false(httpc_header_next(&r, "Missing", &pos, &v, &vl));
}

static void test_404(void **state)
{
	struct fx *f = *state;
	struct result r = { 0 };
	start(f, &r, "GET", "/nope", NULL, 0, 0, 0);
	run(f, 1);
	assert_int_equal(r.err, GW_OK);
	assert_int_equal(r.status, 404);
	result_free(&r);
}

static void test_body_limit(void **state)
{
	struct fx *f = *state;
	struct result a = { 0 }, b = { 0 }, c = { 0 };
	start(f, &a, "GET", "/big?5000", NULL, 0, 1000, 0);
	start(f, &b, "GET", "/chunked?5000", NULL, 0, 1000, 0);
	start(f, &c, "GET", "/chunked?1000", NULL, 0, 1000, 0);
	run(f, 3);
	assert_int_equal(a.err, GW_ELIMIT);
	assert_int_equal(a.status, 0);
	assert_int_equal(b.err, GW_ELIMIT);
	assert_int_equal(c.err, GW_OK); /* exactly the limit is fine */
	assert_int_equal(c.body_len, 1000);
	result_free(&a);
	result_free(&b);
	result_free(&c);
}

static void test_timeout(void **state)
{
	struct fx *f = *state;
	struct result r = { 0 };
	start(f, &r, "GET", "/hang", NULL, 0, 0, 200);
	run(f, 1);
	assert_int_equal(r.err, GW_ETIMEOUT);
	assert_int_equal(r.status, 0);
	assert_true(strlen(r.headers) == 0 || r.headers != NULL);
	result_free(&r);
}

static void test_refused(void **state)
{
	struct fx *f = *state;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(s, (struct sockaddr *)&sin, &sl);
	close(s); /* nothing listens there now */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
	struct result r = { .f = f };
	struct httpc_call_opts o = { .method = "GET", .url = url, .direct = direct };
	struct httpc_call *c;
	assert_int_equal(httpc_call_start(f->h, &o, on_done, &r, &c), GW_OK);
	run(f, 1);
	assert_int_equal(r.err, GW_EIO);
	assert_true(strlen(r.body) == 0);
	result_free(&r);
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	struct result a = { 0 }, b = { 0 };
	struct httpc_call *c = start(f, &a, "GET", "/get", NULL, 0, 0, 0);
	httpc_call_cancel(c);
	assert_int_equal(httpc_active(f->h), 0);
	start(f, &b, "GET", "/slow", NULL, 0, 0, 0); /* finishes after /get would */
	run(f, 1);
	assert_true(b.called);
	assert_false(a.called);
	result_free(&b);
}

/* A callback that cancels another call and starts a new one. */
struct chain {
	struct result self;
	struct httpc_call *victim;
	struct result *next;
};

static void on_chain(const struct httpc_resp *r, void *arg)
{
	struct chain *ch = arg;
	httpc_call_cancel(ch->victim);
	on_done(r, &ch->self);
	start(ch->self.f, ch->next, "GET", "/get", NULL, 0, 0, 0);
}

static void test_cancel_and_start_from_callback(void **state)
{
	struct fx *f = *state;
	struct result victim = { 0 }, next = { 0 };
	struct chain ch = { .next = &next };
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/get", f->port);
	struct httpc_call_opts o = { .method = "GET", .url = url, .direct = direct };
	struct httpc_call *c;
	ch.self.f = f;
	assert_int_equal(httpc_call_start(f->h, &o, on_chain, &ch, &c), GW_OK);
	ch.victim = start(f, &victim, "GET", "/slow", NULL, 0, 0, 0);
	run(f, 2); /* the chain call and the one it starts */
	assert_true(ch.self.called);
	assert_true(next.called);
	assert_int_equal(next.status, 200);
	assert_false(victim.called);
	assert_int_equal(httpc_active(f->h), 0);
	result_free(&ch.self);
	result_free(&next);
}

static void on_free_arg(const struct httpc_resp *r, void *arg)
{
	struct result *res = arg;
	struct fx *f = res->f;
	assert_int_equal(r->status, 200);
	free(res); /* a callback may free its own arg */
	if (++f->done >= f->want)
		event_base_loopbreak(f->base);
}

static void test_callback_frees_arg(void **state)
{
	struct fx *f = *state;
	struct result *res = calloc(1, sizeof(*res));
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/get", f->port);
	struct httpc_call_opts o = { .method = "GET", .url = url, .direct = direct };
	struct httpc_call *c;
	res->f = f;
	assert_int_equal(httpc_call_start(f->h, &o, on_free_arg, res, &c), GW_OK);
	run(f, 1);
}

#define NCONC 200

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	static struct result r[NCONC];
	char body[NCONC][16];
	for (int round = 0; round < 2; round++) {
		memset(r, 0, sizeof(r));
		f->done = 0;
		for (int i = 0; i < NCONC; i++) {
			int n = snprintf(body[i], sizeof(body[i]), "n=%d", i);
			start(f, &r[i], "POST", "/echo", body[i], (size_t)n, 0, 0);
		}
		assert_int_equal(httpc_active(f->h), NCONC);
		f->server_conns = 0;
		run(f, NCONC);
		/* The calls beyond HTTPC_REST_CONNS waited for a connection
		 * instead of opening one; round 2 found round 1's all open. */
		assert_int_equal(f->server_conns, round == 0 ? HTTPC_REST_CONNS : 0);
		for (int i = 0; i < NCONC; i++) {
			char want[64];
			snprintf(want, sizeof(want), "POST %zu yes\n%s", strlen(body[i]), body[i]);
			assert_int_equal(r[i].err, GW_OK);
			assert_string_equal(r[i].body, want);
			result_free(&r[i]);
		}
	}
	assert_int_equal(httpc_active(f->h), 0);
}

#define CAP ((int)HTTPC_REST_CONNS)

/* Past HTTPC_REST_CONNS calls in flight a call waits, holding no curl
 * handle, and starts on a connection a finished call left open. */
static void test_queue_waits_for_a_slot(void **state)
{
	struct fx *f = *state;
	static struct result slow[CAP];
	struct result q[2] = { 0 };
	memset(slow, 0, sizeof(slow));
	for (int i = 0; i < CAP; i++)
		start(f, &slow[i], "GET", "/slow", NULL, 0, 0, 0);
	start(f, &q[0], "POST", "/echo", "a", 1, 0, 0);
	start(f, &q[1], "POST", "/echo", "b", 1, 0, 0);
	assert_int_equal(httpc_active(f->h), CAP + 2);
	run(f, CAP + 2);
	/* Started at once, the echoes would end long before the 100 ms
	 * replies; queued, they wait for the first of those. */
	assert_true(q[0].order > 1 && q[1].order > 1);
	assert_string_equal(q[0].body, "POST 1 yes\na");
	assert_string_equal(q[1].body, "POST 1 yes\nb");
	for (int i = 0; i < CAP; i++) {
		assert_int_equal(slow[i].err, GW_OK);
		result_free(&slow[i]);
	}
	assert_int_equal(f->server_conns, CAP);
	assert_int_equal(httpc_active(f->h), 0);
	result_free(&q[0]);
	result_free(&q[1]);
}

/* Waiting calls start in the order they were made: one slot comes free at
 * a time here, so they also end in that order. */
static void test_queue_order(void **state)
{
	struct fx *f = *state;
	static struct result hang[CAP - 1];
	static struct httpc_call *hc[CAP - 1];
	struct result slow = { 0 }, q[2] = { 0 };
	memset(hang, 0, sizeof(hang));
	for (int i = 0; i < CAP - 1; i++)
		hc[i] = start(f, &hang[i], "GET", "/hang", NULL, 0, 0, 10000);
	start(f, &slow, "GET", "/slow", NULL, 0, 0, 0);
	start(f, &q[0], "GET", "/get", NULL, 0, 0, 0);
	start(f, &q[1], "GET", "/get", NULL, 0, 0, 0);
	run(f, 3);
	assert_int_equal(slow.order, 1);
	assert_int_equal(q[0].order, 2);
	assert_int_equal(q[1].order, 3);
	for (int i = 0; i < CAP - 1; i++)
		httpc_call_cancel(hc[i]);
	assert_int_equal(httpc_active(f->h), 0);
	result_free(&slow);
	result_free(&q[0]);
	result_free(&q[1]);
}

static void test_queue_cancel(void **state)
{
	struct fx *f = *state;
	static struct result slow[CAP];
	struct result x = { 0 }, y = { 0 };
	memset(slow, 0, sizeof(slow));
	for (int i = 0; i < CAP; i++)
		start(f, &slow[i], "GET", "/slow", NULL, 0, 0, 0);
	struct httpc_call *xc = start(f, &x, "GET", "/get", NULL, 0, 0, 0);
	start(f, &y, "GET", "/get", NULL, 0, 0, 0);
	httpc_call_cancel(xc);
	assert_int_equal(httpc_active(f->h), CAP + 1);
	run(f, CAP + 1);
	assert_false(x.called);
	assert_int_equal(y.err, GW_OK);
	assert_string_equal(y.body, "hello");
	for (int i = 0; i < CAP; i++)
		result_free(&slow[i]);
	result_free(&y);
	assert_int_equal(httpc_active(f->h), 0);
}

/* A queued call's timeout counts from its start and ends it on time, not
 * when a slot comes free. */
static void test_queue_timeout(void **state)
{
	struct fx *f = *state;
	static struct result hang[CAP];
	static struct httpc_call *hc[CAP];
	struct result z = { 0 };
	memset(hang, 0, sizeof(hang));
	for (int i = 0; i < CAP; i++)
		hc[i] = start(f, &hang[i], "GET", "/hang", NULL, 0, 0, 10000);
	start(f, &z, "GET", "/get", NULL, 0, 0, 100);
	run(f, 1);
	assert_int_equal(z.order, 1);
	assert_int_equal(z.err, GW_ETIMEOUT);
	assert_true(z.queued_out);
	for (int i = 0; i < CAP; i++) {
		assert_false(hang[i].called);
		httpc_call_cancel(hc[i]);
	}
	assert_int_equal(httpc_active(f->h), 0);
	result_free(&z);
}

/* A call that waited in the queue keeps only what is left of its timeout
 * when it starts: its timeout counts from httpc_call_start, not from the
 * moment it got a connection. */
static void test_queue_timeout_after_start(void **state)
{
	struct fx *f = *state;
	static struct result slow[CAP];
	struct result z = { 0 };
	memset(slow, 0, sizeof(slow));
	/* A slot frees after about 300 ms, and z's own reply takes 300 ms
	 * more: past its 450 ms, though within 450 ms of getting the slot.
	 * 150 ms either side, so a loaded loop does not move z's end into the
	 * queue. */
	f->slow_ms = 300;
	for (int i = 0; i < CAP; i++)
		start(f, &slow[i], "GET", "/slow", NULL, 0, 0, 0);
	start(f, &z, "GET", "/slow", NULL, 0, 0, 450);
	run(f, CAP + 1);
	assert_int_equal(z.err, GW_ETIMEOUT);
	assert_false(z.queued_out); /* it got its slot, then ran out of time */
	for (int i = 0; i < CAP; i++) {
		assert_int_equal(slow[i].err, GW_OK);
		result_free(&slow[i]);
	}
	result_free(&z);
}

static void test_free_with_calls_in_flight(void **state)
{
	GW_UNUSED(state);
	struct fx *f;
	void *st;
	setup(&st);
	f = st;
	struct result a = { 0 }, b = { 0 };
	static struct result more[CAP + 2];
	memset(more, 0, sizeof(more));
	start(f, &a, "GET", "/hang", NULL, 0, 0, 0);
	start(f, &b, "GET", "/get", NULL, 0, 0, 0);
	for (int i = 0; i < CAP + 2; i++) /* the last ones wait in the queue */
		start(f, &more[i], "GET", "/get", NULL, 0, 0, 0);
	assert_int_equal(httpc_active(f->h), CAP + 4);
	teardown(&st); /* no callback may run, nothing may leak (ASan) */
	assert_false(a.called);
	assert_false(b.called);
	for (int i = 0; i < CAP + 2; i++)
		assert_false(more[i].called);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct httpc_call *c = (void *)1;
	struct httpc_call_opts o = { .method = "GET", .url = NULL, .direct = direct };
	assert_int_equal(httpc_call_start(f->h, &o, on_done, NULL, &c), GW_EINVAL);
	assert_null(c);
	const char *const bad[] = { "X: a\r\nInjected: b", NULL };
	struct httpc_call_opts o2 = { .method = "GET", .url = "http://127.0.0.1:1/", .headers = bad,
				      .direct = direct };
	assert_int_equal(httpc_call_start(f->h, &o2, on_done, NULL, &c), GW_EINVAL);
	assert_int_equal(httpc_active(f->h), 0);
}

/* A raw server, for answers evhttp will not give: every request (a
 * header block) gets raw.resp; with raw.close_after the connection closes
 * once that is written. */
#define RAW_CONNS 8
static struct {
	const char *resp;
	bool close_after;
	int conns;
	struct bufferevent *bev[RAW_CONNS];
	struct evconnlistener *lis;
	char url[64];
} raw;

static void raw_forget(struct bufferevent *bev)
{
	for (int i = 0; i < RAW_CONNS; i++)
		if (raw.bev[i] == bev)
			raw.bev[i] = NULL;
	bufferevent_free(bev);
}

static void raw_written(struct bufferevent *bev, void *arg)
{
	GW_UNUSED(arg);
	if (raw.close_after)
		raw_forget(bev);
}

static void raw_read(struct bufferevent *bev, void *arg)
{
	GW_UNUSED(arg);
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0)
		return;
	evbuffer_drain(in, (size_t)end.pos + 4);
	bufferevent_write(bev, raw.resp, strlen(raw.resp));
}

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
	GW_UNUSED(what);
	GW_UNUSED(arg);
	raw_forget(bev);
}

static void raw_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int sl,
		       void *arg)
{
	GW_UNUSED(sa);
	GW_UNUSED(sl);
	GW_UNUSED(arg);
	struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
							 BEV_OPT_CLOSE_ON_FREE);
	assert_true(raw.conns < RAW_CONNS);
	raw.bev[raw.conns++] = bev;
	bufferevent_setcb(bev, raw_read, raw_written, raw_event, NULL);
	bufferevent_enable(bev, EV_READ);
}

static void raw_start(struct fx *f, const char *resp, bool close_after)
{
	memset(&raw, 0, sizeof(raw));
	raw.resp = resp;
	raw.close_after = close_after;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	raw.lis = evconnlistener_new_bind(f->base, raw_accept, NULL, LEV_OPT_CLOSE_ON_FREE, 16,
					  (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(raw.lis);
	socklen_t sl = sizeof(sin);
	getsockname(evconnlistener_get_fd(raw.lis), (struct sockaddr *)&sin, &sl);
	snprintf(raw.url, sizeof(raw.url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
}

static void raw_stop(void)
{
	for (int i = 0; i < RAW_CONNS; i++)
		if (raw.bev[i])
			bufferevent_free(raw.bev[i]);
	evconnlistener_free(raw.lis);
	memset(&raw, 0, sizeof(raw));
}

static struct httpc_call *raw_call(struct fx *f, struct result *r)
{
	struct httpc_call_opts o = { .method = "GET", .url = raw.url, .direct = direct };
	struct httpc_call *c;
	r->f = f;
	assert_int_equal(httpc_call_start(f->h, &o, on_done, r, &c), GW_OK);
	return c;
}

static void test_final_headers_only(void **state)
{
	struct fx *f = *state;
	raw_start(f, "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok",
		  false);
	struct result r = { 0 };
	raw_call(f, &r);
	run(f, 1);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok");
	assert_non_null(strstr(r.headers, "X-Final: 1"));
	assert_null(strstr(r.headers, "X-Interim"));
	result_free(&r);
	raw_stop();
}

/* The next call starts from the first's callback, before the loop can
 * see that the server closed the connection the first call left. */
static void on_done_then_call(const struct httpc_resp *r, void *arg)
{
	struct result *res = arg;
	on_done(r, res);
	raw_call(res->f, res + 1);
}

/* Two calls to a raw server answering resp, the second started from the
 * first's callback: both get "ok", over two connections. */
static void two_calls_two_connections(struct fx *f, const char *resp, bool close_after)
{
	raw_start(f, resp, close_after);
	struct result r[2] = { { .f = f }, { .f = f } };
	struct httpc_call_opts o = { .method = "GET", .url = raw.url, .direct = direct };
	struct httpc_call *c;
	assert_int_equal(httpc_call_start(f->h, &o, on_done_then_call, &r[0], &c), GW_OK);
	run(f, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r[i].err, GW_OK);
		assert_string_equal(r[i].body, "ok");
		result_free(&r[i]);
	}
	assert_int_equal(raw.conns, 2);
	raw_stop();
}

/* The second goes out on the connection the server closed, sees it end
 * before any answer, and is sent again on a new one. */
static void test_kept_connection_closed_by_server(void **state)
{
	two_calls_two_connections(*state, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
}

static void test_body_until_close(void **state)
{
	struct fx *f = *state;
	raw_start(f, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nhello", true);
	struct result r = { 0 };
	raw_call(f, &r);
	run(f, 1);
	assert_int_equal(r.err, GW_OK);
	assert_string_equal(r.body, "hello");
	result_free(&r);
	raw_stop();
}

/* "Connection: close" from a server that then keeps the socket open: the
 * connection is not used again all the same. */
static void test_connection_close_honoured(void **state)
{
	two_calls_two_connections(*state, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
				  false);
}

/* A kept connection goes only to its own origin: after a call to the
 * evhttp server, one to the raw server on another port reaches the raw
 * server. */
static void test_connection_per_origin(void **state)
{
	struct fx *f = *state;
	struct result a = { 0 }, b = { 0 };
	start(f, &a, "GET", "/get", NULL, 0, 0, 0);
	run(f, 1);
	assert_string_equal(a.body, "hello");
	raw_start(f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
	raw_call(f, &b);
	f->done = 0;
	run(f, 1);
	assert_int_equal(b.status, 200);
	assert_string_equal(b.body, "ok");
	assert_int_equal(raw.conns, 1);
	result_free(&a);
	result_free(&b);
	raw_stop();
}

static void on_safety_tick(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	event_base_loopbreak(arg);
}

/* A kept connection the server closes while it is idle is dropped then,
 * not kept until the next call finds it dead. */
static void test_idle_connection_closed_by_server(void **state)
{
	struct fx *f = *state;
	raw_start(f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
	struct result r = { 0 };
	raw_call(f, &r);
	run(f, 1);
	assert_string_equal(r.body, "ok");
	struct event *tick = evtimer_new(f->base, on_safety_tick, f->base);
	for (int i = 0; i < 200 && httpc__direct_conns(f->h) > 0; i++) {
		struct timeval tv = { 0, 10000 };
		evtimer_add(tick, &tv);
		event_base_dispatch(f->base);
	}
	event_free(tick);
	assert_int_equal(httpc__direct_conns(f->h), 0);
	result_free(&r);
	raw_stop();
}

/* What the client adds when the caller does not: Host, a User-Agent, an
 * Accept, and a Content-Length exactly when there is a body or the method
 * carries one. */
static void test_default_headers(void **state)
{
	struct fx *f = *state;
	char url[64], host[32];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", f->port);
	snprintf(host, sizeof(host), "X-Host: 127.0.0.1:%d\r\n", f->port);
	struct {
		const char *method, *body, *want_body, *want_cl;
	} cases[] = {
		{ "GET", NULL, "GET 0 -\n", "X-CL: none" },
		{ "POST", NULL, "POST 0 -\n", "X-CL: 0" },
		{ "DELETE", "x", "DELETE 1 -\nx", "X-CL: 1" },
	};
	for (size_t i = 0; i < 3; i++) {
		struct httpc_call_opts o = { .method = cases[i].method, .url = url, .body = cases[i].body,
					     .body_len = cases[i].body ? strlen(cases[i].body) : 0,
					     .direct = direct };
		struct result r = { .f = f };
		struct httpc_call *c;
		assert_int_equal(httpc_call_start(f->h, &o, on_done, &r, &c), GW_OK);
		f->done = 0;
		run(f, 1);
		assert_string_equal(r.body, cases[i].want_body);
		assert_non_null(strstr(r.headers, cases[i].want_cl));
		assert_non_null(strstr(r.headers, host));
		assert_non_null(strstr(r.headers, "X-Accept: */*"));
		assert_non_null(strstr(r.headers, "X-UA: enginelabs-2api/"));
		result_free(&r);
	}
}

/* Bytes after the response: the connection is not used again. */
static void test_excess_bytes_close(void **state)
{
	two_calls_two_connections(*state, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", false);
}

static void test_bad_framing(void **state)
{
	struct fx *f = *state;
	raw_start(f, "HTTP/1.1 abc\r\nContent-Length: 2\r\n\r\nok", false);
	struct result r = { 0 };
	raw_call(f, &r);
	run(f, 1);
	assert_int_equal(r.err, GW_EIO);
	assert_int_equal(r.status, 0);
	assert_true(strlen(r.error_text) > 0);
	result_free(&r);
	raw_stop();
}

/* Bodies of several chunks and of a length, whole, on one connection. */
static void test_bodies_whole(void **state)
{
	struct fx *f = *state;
	const char *paths[] = { "/chunked?25500", "/big?70000", "/chunked?1" };
	size_t lens[] = { 25500, 70000, 1 };
	for (int i = 0; i < 3; i++) {
		struct result r = { 0 };
		start(f, &r, "GET", paths[i], NULL, 0, 0, 0);
		f->done = 0;
		run(f, 1);
		assert_int_equal(r.err, GW_OK);
		assert_int_equal(r.body_len, lens[i]);
		assert_int_equal(strspn(r.body, "x"), lens[i]);
		result_free(&r);
	}
	assert_int_equal(f->server_conns, 1);
}

/* "Name:" with no value is not sent (curl's rule, kept by direct calls);
 * a User-Agent given replaces the client's own. */
static void test_header_rules(void **state)
{
	struct fx *f = *state;
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", f->port);
	static const char *const hdrs[] = { "X-Test: yes", "X-Gone:", "User-Agent: mine/1", NULL };
	struct httpc_call_opts o = { .method = "GET", .url = url, .headers = hdrs, .direct = direct };
	struct result r = { .f = f };
	struct httpc_call *c;
	assert_int_equal(httpc_call_start(f->h, &o, on_done, &r, &c), GW_OK);
	run(f, 1);
	assert_string_equal(r.body, "GET 0 yes\n");
	assert_non_null(strstr(r.headers, "X-Gone: absent"));
	assert_non_null(strstr(r.headers, "X-UA: mine/1"));
	result_free(&r);
}

/* Keep-alive: calls one after another share one connection. */
static void test_sequential_calls_share_a_connection(void **state)
{
	struct fx *f = *state;
	for (int i = 0; i < 3; i++) {
		struct result r = { 0 };
		start(f, &r, "GET", "/get", NULL, 0, 0, 0);
		f->done = 0;
		run(f, 1);
		assert_string_equal(r.body, "hello");
		result_free(&r);
	}
	assert_int_equal(f->server_conns, 1);
}

/* Every gw_* allocation failing in turn: start fails cleanly with
 * GW_ENOMEM, or the call completes (with GW_ENOMEM if a later one failed). */
static void test_alloc_failures(void **state)
{
	struct fx *f = *state;
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", f->port);
	static const char *const hdrs[] = { "X-Test: yes", NULL };
	struct httpc_call_opts o = { .method = "POST", .url = url, .direct = direct, .headers = hdrs,
				     .body = "abc", .body_len = 3 };
	int failed = 0;
	for (unsigned long n = 1; n <= 12; n++) {
		struct result r = { .f = f };
		struct httpc_call *c;
		gw_alloc_fail_at(n);
		enum gw_err err = httpc_call_start(f->h, &o, on_done, &r, &c);
		if (err == GW_OK) {
			f->done = 0;
			run(f, 1);
			assert_true(r.err == GW_OK || r.err == GW_ENOMEM);
			result_free(&r);
		} else {
			assert_int_equal(err, GW_ENOMEM);
			assert_int_equal(httpc_active(f->h), 0);
			failed++;
		}
		gw_alloc_fail_at(0);
	}
	assert_true(failed > 0);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_and_patch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_post_no_expect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headers_cookies, setup, teardown),
		cmocka_unit_test(test_header_next_edge),
		cmocka_unit_test_setup_teardown(test_404, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_and_start_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_frees_arg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_waits_for_a_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_timeout_after_start, setup, teardown),
		cmocka_unit_test(test_free_with_calls_in_flight),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_headers_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_connection_closed_by_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_until_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_excess_bytes_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_framing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequential_calls_share_a_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close_honoured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_per_origin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_connection_closed_by_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_headers, setup, teardown),
	};
	int failed = cmocka_run_group_tests_name("through curl", tests, NULL, NULL);
	direct = true;
	return failed + cmocka_run_group_tests_name("direct", tests, NULL, NULL);
}
