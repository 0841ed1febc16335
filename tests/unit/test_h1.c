/* test_h1.c - the HTTP/1.1 server on a real loop and real loopback
 * sockets: keep-alive, pipelining, chunked bodies both ways, refusals, the
 * request deadline, the connection cap, and every allocation failing in
 * turn (no crash, no leak: the ASan build runs this too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "front/h1.h"
#include "util/buf.h"
#include "util/http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fx {
	struct event_base *base;
	struct h1_server *srv;
	int port;
	int handled;
	char body[256];     /* body of the last request served */
	int drain_left;     /* /drain: pieces still to write */
	bool drain_now;     /* /drain-now: the pieces go through h1_write_now */
};

#define DRAIN_PIECES 6
#define DRAIN_BIG (16 * 1024 * 1024) /* more than a loopback socket and its peer take at once */

/* /drain writes its next piece only when the output has drained, like a
 * stream under backpressure: if a drain went unreported it would stall.
 * /drain-now writes with h1_write_now, as the SSE stream does, which
 * reports a drain only after the socket pushed back: it goes on writing
 * while the socket takes everything. */
static void drain_next(struct h1_req *r, void *arg)
{
	struct fx *f = arg;
	do {
		if (--f->drain_left == 0) {
			h1_end(r);
			return;
		}
		size_t n = f->drain_left == DRAIN_PIECES / 2 ? DRAIN_BIG : 100;
		char *p = malloc(n);
		assert_non_null(p);
		memset(p, 'a' + f->drain_left, n);
		(f->drain_now ? h1_write_now : h1_write)(r, p, n);
		free(p);
	} while (f->drain_now && h1_unsent(r) == 0);
}

/* /ok: 200 "hi"; /stream: three chunks; /body: echoes the body length;
 * refused requests: their status. */
static void handler(struct h1_req *r, void *arg)
{
	struct fx *f = arg;
	const char *why;
	int st = h1_req_refused(r, &why);
	f->handled++;
	if (st) {
		h1_reply(r, st, why, strlen(why));
		return;
	}
	size_t len;
	const char *b = h1_req_body(r, &len);
	snprintf(f->body, sizeof(f->body), "%.*s", (int)(len < 255 ? len : 255), b);
	if (strcmp(h1_req_target(r), "/drain") == 0 || strcmp(h1_req_target(r), "/drain-now") == 0) {
		f->drain_now = strcmp(h1_req_target(r), "/drain-now") == 0;
		f->drain_left = DRAIN_PIECES + 1;
		h1_set_drain_cb(r, drain_next, f);
		h1_start(r, 200);
		drain_next(r, f);
		return;
	}
	if (strcmp(h1_req_target(r), "/stream") == 0) {
		h1_add_header(r, "Content-Type", "text/plain");
		h1_start(r, 200);
		h1_write(r, "one ", 4);
		h1_write(r, "two ", 4);
		h1_write(r, "three", 5);
		h1_end(r);
		return;
	}
	char out[32];
	int n = strcmp(h1_req_target(r), "/body") == 0 ? snprintf(out, sizeof(out), "len=%zu", len)
						       : snprintf(out, sizeof(out), "hi");
	h1_add_header(r, "X-Handler", "test_h1"); /* reaches the reply-header allocation */
	h1_reply(r, 200, out, (size_t)n);
}

static int listen_any(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static int setup_with(void **state, int timeout_s, long max_conns)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->base = event_base_new();
	struct h1_limits lim = { .max_head = 4096, .max_body = 1024, .timeout_s = timeout_s, .max_conns = max_conns };
	f->srv = h1_server_new(f->base, listen_any(&f->port), &lim, handler, f);
	assert_non_null(f->srv);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 5, 0);
}

static int setup_short(void **state)
{
	return setup_with(state, 1, 0);
}

static int setup_cap(void **state)
{
	return setup_with(state, 5, 1);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	h1_server_free(f->srv);
	event_base_free(f->base);
	free(f);
	return 0;
}

static int client(struct fx *f)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(send(fd, s, n, 0), (ssize_t)n);
}

/* Runs the loop and reads until `want` responses (counted by status lines)
 * are in, or the server closed, or 3 s passed. Returns bytes read. */
static size_t pump(struct fx *f, int fd, int want, char *out, size_t cap, bool *closed)
{
	size_t len = 0;
	*closed = false;
	for (int i = 0; i < 3000 && !*closed; i++) {
		struct timeval tv = { 0, 1000 };
		event_base_loopexit(f->base, &tv);
		event_base_loop(f->base, 0);
		ssize_t r = recv(fd, out + len, cap - 1 - len, 0);
		if (r == 0)
			*closed = true;
		else if (r > 0)
			len += (size_t)r;
		out[len] = '\0';
		int n = 0;
		for (const char *p = out; (p = strstr(p, "HTTP/1.")); p++)
			n++;
		if (n >= want && want > 0 && strstr(out, "\r\n\r\n") && (strstr(out, "0\r\n\r\n") || !strstr(out, "chunked")))
			break;
	}
	return len;
}

static void test_keep_alive_and_pipelining(void **state)
{
	struct fx *f = *state;
	int fd = client(f);
	char buf[8192];
	bool closed;
	send_all(fd, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
	pump(f, fd, 1, buf, sizeof(buf), &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(buf, "Content-Length: 2\r\n\r\nhi"));
	assert_false(closed);
	/* Two more in one write: answered in order on the same connection. */
	send_all(fd, "POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
	size_t n = pump(f, fd, 2, buf, sizeof(buf), &closed);
	assert_true(n > 0);
	char *first = strstr(buf, "len=5"), *second = strstr(buf, "\r\n\r\nhi");
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	assert_int_equal(f->handled, 3);
	close(fd);
}

static void test_chunked_both_ways(void **state)
{
	struct fx *f = *state;
	int fd = client(f);
	char buf[8192];
	bool closed;
	send_all(fd, "POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n");
	pump(f, fd, 1, buf, sizeof(buf), &closed);
	assert_string_equal(f->body, "abcde");
	assert_non_null(strstr(buf, "Transfer-Encoding: chunked\r\n"));
	assert_non_null(strstr(buf, "\r\n\r\n4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"));
	close(fd);
}

/* The body /drain sends, decoded: pieces of 100 bytes but the big one, in
 * order, each of one letter. */
static void check_drain_body(const char *buf, size_t n)
{
	const char *body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	struct buf out;
	size_t used = 0;
	buf_init(&out, DRAIN_BIG + 1000);
	assert_int_equal(http1_chunked_decode(body, n - (size_t)(body - buf), &used, &out), GW_OK);
	size_t at = 0;
	for (int left = DRAIN_PIECES; left > 0; left--) {
		size_t len = left == DRAIN_PIECES / 2 ? DRAIN_BIG : 100;
		assert_true(at + len <= out.len);
		for (size_t i = 0; i < len; i++)
			if (out.p[at + i] != 'a' + left)
				fail_msg("piece %d byte %zu is '%c'", left, i, out.p[at + i]);
		at += len;
	}
	assert_int_equal(at, out.len);
	buf_release(&out);
}

/* Asks for target (a /drain route) and checks the body arrived whole, with
 * at least one write that had to wait for the socket. */
static void drain_run(struct fx *f, const char *request)
{
	int fd = client(f);
	static char buf[DRAIN_BIG + 65536];
	bool closed;
	size_t waits = h1__write_waits();
	send_all(fd, request);
	size_t n = pump(f, fd, 1, buf, sizeof(buf), &closed);
	assert_true(h1__write_waits() > waits); /* the big piece did wait for the socket */
	assert_false(closed);
	assert_int_equal(f->drain_left, 0);
	assert_true(n > DRAIN_BIG);
	assert_non_null(strstr(buf + n - 5, "0\r\n\r\n"));
	check_drain_body(buf, n);
	close(fd);
}

static void test_drain_reported(void **state)
{
	drain_run(*state, "GET /drain HTTP/1.1\r\nHost: a\r\n\r\n");
}

/* The same through h1_write_now, whose chunks go straight to the socket
 * when nothing waits ahead: the big one does not fit, its rest waits for
 * the write event, and what follows waits behind it. The client must get
 * every byte once, in order. */
static void test_write_now_under_backpressure(void **state)
{
	drain_run(*state, "GET /drain-now HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_refusals_close(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *req;
		const char *status;
	} cases[] = {
		{ "POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", "HTTP/1.1 413 " },
		{ "POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "HTTP/1.1 400 " },
		{ "GET /ok HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 505 " },
		{ "POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400 " },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fd = client(f);
		char buf[8192];
		bool closed;
		send_all(fd, cases[i].req);
		pump(f, fd, 1, buf, sizeof(buf), &closed);
		if (strncmp(buf, cases[i].status, strlen(cases[i].status)) != 0)
			fail_msg("case %zu: %.60s", i, buf);
		assert_non_null(strstr(buf, "Connection: close\r\n"));
		/* After the reply the server shuts its side: EOF follows. */
		if (!closed)
			pump(f, fd, 0, buf, sizeof(buf), &closed);
		assert_true(closed);
		close(fd);
	}
}

static void test_request_deadline(void **state)
{
	struct fx *f = *state; /* CLIENT_TIMEOUT 1 s */
	int fd = client(f);
	char buf[8192];
	bool closed = false;
	size_t len = 0;
	/* A byte every 100 ms does not keep a request alive past its deadline. */
	const char *head = "GET /ok HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	for (size_t i = 0; head[i] && !closed && len == 0; i++) {
		if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1)
			break;
		for (int k = 0; k < 100; k++) {
			struct timeval tv = { 0, 1000 };
			event_base_loopexit(f->base, &tv);
			event_base_loop(f->base, 0);
		}
		ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);
		if (r > 0)
			len = (size_t)r, buf[len] = '\0';
	}
	assert_true(len > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 408 "));
	close(fd);
}

static void test_connection_cap(void **state)
{
	struct fx *f = *state; /* MAX_CONNECTIONS 1 */
	int a = client(f);
	char buf[8192];
	bool closed;
	send_all(a, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
	pump(f, a, 1, buf, sizeof(buf), &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200 "));
	int b = client(f);
	pump(f, b, 1, buf, sizeof(buf), &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 503 "));
	close(b);
	close(a);
	/* Slots free again once the first goes. */
	for (int i = 0; i < 3000 && h1_open_connections() > 0; i++) {
		struct timeval tv = { 0, 1000 };
		event_base_loopexit(f->base, &tv);
		event_base_loop(f->base, 0);
	}
	int c = client(f);
	send_all(c, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
	pump(f, c, 1, buf, sizeof(buf), &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200 "));
	close(c);
}

/* Every allocation of a request's life fails in turn: the client gets a
 * whole answer (200, or 503 when the failure hit the request) or a closed
 * connection, never a torn one; the server serves the next request. */
static void test_allocation_failures(void **state)
{
	struct fx *f = *state;
	bool all_passed = false;
	for (unsigned long n = 1; n <= 60 && !all_passed; n++) {
		int fd = client(f);
		char buf[8192];
		bool closed;
		gw_alloc_fail_at(n);
		send_all(fd, "POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
			     "3\r\nabc\r\n0\r\n\r\n");
		size_t len = pump(f, fd, 1, buf, sizeof(buf), &closed);
		all_passed = gw_alloc_fail_left() != 0; /* the request needed fewer than n */
		gw_alloc_fail_at(0);
		if (all_passed)
			assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\nX-Handler: test_h1\r\n"));
		else if (len)
			assert_true(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 || strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
		else /* only without a connection record (the first allocation) is there no one to answer */
			assert_true(closed && n == 1);
		close(fd);
	}
	assert_true(all_passed); /* every allocation of the request was made to fail once */
	int fd = client(f);
	char buf[8192];
	bool closed;
	send_all(fd, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
	pump(f, fd, 1, buf, sizeof(buf), &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200 "));
	close(fd);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the daemon: a write to a gone client is an error, not a signal */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keep_alive_and_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_now_under_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_deadline, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap, setup_cap, teardown),
		cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
