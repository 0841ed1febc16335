/* test_ws.c - the WebSocket client against tests/unit/ws_peer.js (node),
 * over ws:// and, with a self-signed certificate made at test time, wss://. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/httpc.h"
#include "net/httpc_internal.h"
#include "net/ws.h"
#include "net/ws_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the peer processes (one plain, one TLS) ---- */

struct peer {
	pid_t pid;
	int stdin_fd;
	int port;
};

static struct peer plain_peer = { -1, -1, 0 }, tls_peer = { -1, -1, 0 };
static char tmpdir[64];
static char cert_path[128];

static bool spawn(const char *const argv[], struct peer *p)
{
	int in[2], out[2];
	/* CLOEXEC: a later peer must not inherit this one's stdin, or
	 * closing it would not reach EOF. */
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
		return false;
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->pid = pid;
	p->stdin_fd = in[1];
	char line[32] = { 0 };
	size_t n = 0;
	while (n < sizeof(line) - 1 && !strchr(line, '\n')) {
		struct pollfd pf = { out[0], POLLIN, 0 };
		if (poll(&pf, 1, 15000) <= 0)
			break;
		ssize_t r = read(out[0], line + n, sizeof(line) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(out[0]);
	p->port = atoi(line);
	return p->port > 0;
}

static int run_cmd(const char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(devnull, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool make_cert(void)
{
	char key[128], subj_alt[] = "subjectAltName=IP:127.0.0.1";
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/gw-test-ws-XXXXXX");
	if (!mkdtemp(tmpdir))
		return false;
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
	const char *const argv[] = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
				     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
				     "-out", cert_path, "-days", "1", "-subj", "/CN=127.0.0.1",
				     "-addext", subj_alt, NULL };
	return run_cmd(argv) == 0;
}

static void stop_peer(struct peer *p)
{
	if (p->pid <= 0)
		return;
	close(p->stdin_fd); /* the peer exits when stdin closes or on SIGTERM */
	kill(p->pid, SIGTERM);
	int st;
	waitpid(p->pid, &st, 0);
	p->pid = -1;
}

static int group_setup(void **state)
{
	GW_UNUSED(state);
	signal(SIGPIPE, SIG_IGN);
	const char *const argv[] = { "node", "tests/unit/ws_peer.js", NULL };
	if (!spawn(argv, &plain_peer)) {
		fprintf(stderr, "cannot start tests/unit/ws_peer.js (node, run from repo root)\n");
		return -1;
	}
	if (make_cert()) {
		char key[128];
		snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
		const char *const targv[] = { "node", "tests/unit/ws_peer.js", "--tls", cert_path,
					      key, NULL };
		if (!spawn(targv, &tls_peer))
			tls_peer.port = 0;
	}
	return 0;
}

static int group_teardown(void **state)
{
	GW_UNUSED(state);
	stop_peer(&plain_peer);
	stop_peer(&tls_peer);
	if (tmpdir[0]) {
		char p[160];
		snprintf(p, sizeof(p), "%s/key.pem", tmpdir);
		unlink(p);
		unlink(cert_path);
		rmdir(tmpdir);
	}
	return 0;
}

/* ---- per test: a loop and a client ---- */

struct fx {
	struct event_base *base;
	struct httpc *h;
	int done;
	int want;
	bool timed_out;
	bool tls;
};

static int setup_common(void **state, bool tls)
{
	if (tls && tls_peer.port == 0) {
		skip();
	}
	struct fx *f = calloc(1, sizeof(*f));
	struct httpc_opts o = { .ca_bundle = tls ? cert_path : NULL };
	f->tls = tls;
	f->base = event_base_new();
	f->h = httpc_new(f->base, &o);
	assert_non_null(f->h);
	*state = f;
	return 0;
}

static int setup_plain(void **state)
{
	return setup_common(state, false);
}

static int setup_tls(void **state)
{
	return setup_common(state, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (!f)
		return 0;
	/* A test stopped by a failed assertion leaves its WebSockets open;
	 * httpc_free would abort on them before cmocka prints that assertion.
	 * Leave them (and the client) instead: the test fails all the same. */
	if (httpc__ws_alive(f->h) != 0) {
		print_error("%d WebSocket(s) still open at teardown\n", httpc__ws_alive(f->h));
		return -1;
	}
	assert_int_equal(httpc_active(f->h), 0);
	httpc_free(f->h);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
	struct fx *f = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	f->timed_out = true;
	event_base_loopbreak(f->base);
}

static void run(struct fx *f, int want)
{
	struct timeval tv = { 20, 0 };
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

static void mark(struct fx *f)
{
	if (++f->done >= f->want)
		event_base_loopbreak(f->base);
}

struct cl {
	struct fx *f;
	struct ws *w;
	int opened;
	size_t watched_at_open;
	int texts;
	char *last;
	size_t last_len;
	char log[1024];
	bool closed;
	enum gw_err err;
	int code;
	int http_status;
	/* behaviour */
	const char *send_on_open;
	size_t send_len;
	const char *send2_on_open; /* NUL-terminated, sent right after */
	int close_after;      /* ws_close(1000) after this many texts */
	int free_after;       /* ws_free after this many texts */
	bool pause_first;     /* ws_pause(true) in the first on_text */
	bool close_on_open;
	int expect_len;       /* 0 = any */
	bool resumed;         /* at open: the TLS handshake resumed a session */
	bool queued;          /* after the sends on open: frames waited in the queue */
};

static void cl_open(void *arg)
{
	struct cl *c = arg;
	assert_false(c->closed);
	/* wss must read through SSL_read, not curl_easy_recv. */
	assert_string_equal(ws__io_name(c->w), c->f->tls ? "ssl" : "fd");
	c->opened++;
	c->watched_at_open = httpc__watched(c->f->h);
	c->resumed = ws__tls_resumed(c->w);
	if (c->send_on_open)
		assert_int_equal(ws_send_text(c->w, c->send_on_open, c->send_len), GW_OK);
	if (c->send2_on_open)
		assert_int_equal(ws_send_text(c->w, c->send2_on_open, strlen(c->send2_on_open)), GW_OK);
	c->queued = ws__queued(c->w);
	if (c->close_on_open)
		ws_close(c->w, 1000);
}

static void cl_text(void *arg, const char *p, size_t n)
{
	struct cl *c = arg;
	assert_false(c->closed);
	assert_int_equal(c->opened, 1);
	c->texts++;
	free(c->last);
	c->last = malloc(n + 1);
	memcpy(c->last, p, n);
	c->last[n] = '\0';
	c->last_len = n;
	if (n < 64 && strlen(c->log) + n + 2 < sizeof(c->log)) {
		if (c->log[0])
			strcat(c->log, "|");
		strncat(c->log, p, n);
	}
	if (c->free_after && c->texts == c->free_after) {
		ws_free(c->w);
		c->w = NULL;
		mark(c->f);
		return;
	}
	if (c->pause_first && c->texts == 1) {
		ws_pause(c->w, true);
		mark(c->f);
	}
	if (c->close_after && c->texts == c->close_after)
		ws_close(c->w, 1000);
}

static void cl_close(void *arg, enum gw_err err, int code, int http_status)
{
	struct cl *c = arg;
	assert_false(c->closed);
	c->closed = true;
	c->err = err;
	c->code = code;
	c->http_status = http_status;
	ws_free(c->w); /* freeing from inside on_close is allowed */
	c->w = NULL;
	mark(c->f);
}

static const struct ws_cbs cl_cbs = { cl_open, cl_text, cl_close };

static char *url_for(struct fx *f, const char *path)
{
	static char url[256];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", f->tls ? "wss" : "ws",
		 f->tls ? tls_peer.port : plain_peer.port, path);
	return url;
}

static void open_cl(struct fx *f, struct cl *c, const char *path, size_t max, long timeout)
{
	struct ws_opts o = { .url = url_for(f, path), .max_msg_bytes = max,
			     .connect_timeout_ms = timeout };
	static const char *const hdrs[] = { "Origin: https://cto.new", NULL };
	o.headers = hdrs;
	c->f = f;
	assert_int_equal(ws_open(f->h, &o, &cl_cbs, c, &c->w), GW_OK);
	assert_non_null(c->w);
	assert_int_equal(c->opened, 0); /* never from inside ws_open */
}

static void cl_release(struct cl *c)
{
	ws_free(c->w);
	free(c->last);
}

static void after_ms(struct fx *f, int ms, event_callback_fn fn, void *arg)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_base_once(f->base, -1, EV_TIMEOUT, fn, arg, &tv);
}

/* ---- tests ---- */

static void test_echo(void **state)
{
	struct fx *f = *state;
	struct cl c = { .send_on_open = "hello", .send_len = 5, .close_after = 1 };
	open_cl(f, &c, "/echo", 0, 0);
	assert_int_equal(httpc_active(f->h), 1);
	run(f, 1);
	assert_int_equal(c.opened, 1);
	assert_int_equal(c.texts, 1);
	assert_string_equal(c.last, "hello");
	assert_int_equal(c.watched_at_open, 0); /* curl let go of the socket */
	assert_true(c.closed);
	assert_int_equal(c.err, GW_OK);
	assert_int_equal(c.code, 1000);
	assert_int_equal(c.http_status, 101);
	cl_release(&c);
}

/* A URL h1c's split refuses (a fragment) goes through curl's parser for
 * the request line and Host; the fragment is not sent. */
static void test_echo_curl_parsed_url(void **state)
{
	struct fx *f = *state;
	struct cl c = { .send_on_open = "hi", .send_len = 2, .close_after = 1 };
	open_cl(f, &c, "/echo#frag", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 1);
	assert_string_equal(c.last, "hi");
	assert_int_equal(c.http_status, 101);
	cl_release(&c);
}

static void test_frames_with_101(void **state)
{
	struct fx *f = *state;
	struct cl c = { .free_after = 2 };
	open_cl(f, &c, "/after101", 0, 0);
	run(f, 1);
	assert_string_equal(c.log, "early|second");
	assert_false(c.closed);
	cl_release(&c);
}

static void check_pattern(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (char)('a' + i % 26))
			fail_msg("byte %zu wrong", i);
}

/* path sends one message of len pattern bytes, then we close cleanly. */
static void expect_pattern(struct fx *f, const char *path, size_t len)
{
	struct cl c = { .close_after = 1 };
	open_cl(f, &c, path, 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 1);
	assert_int_equal(c.last_len, len);
	check_pattern(c.last, c.last_len);
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

/* path sends a message over 512 KiB: refused with 1009, nothing delivered. */
static void expect_over_limit(struct fx *f, const char *path)
{
	struct cl c = { 0 };
	open_cl(f, &c, path, 512 * 1024, 0);
	run(f, 1);
	assert_int_equal(c.texts, 0);
	assert_int_equal(c.err, GW_ELIMIT);
	assert_int_equal(c.code, 1009);
	assert_int_equal(c.http_status, 101);
	cl_release(&c);
}

static void test_big_message(void **state)
{
	expect_pattern(*state, "/big?n=1048576", 1048576);
}

static void test_over_limit(void **state)
{
	expect_over_limit(*state, "/big?n=1048576");
}

static void test_big_send(void **state)
{
	struct fx *f = *state;
	size_t n = 1 << 20;
	char *msg = malloc(n);
	for (size_t i = 0; i < n; i++)
		msg[i] = (char)('a' + i % 26);
	struct cl c = { .send_on_open = msg, .send_len = n, .close_after = 1 };
	open_cl(f, &c, "/echo", 0, 0);
	run(f, 1);
	assert_int_equal(c.last_len, n);
	assert_memory_equal(c.last, msg, n);
	assert_int_equal(c.err, GW_OK);
	free(msg);
	cl_release(&c);
}

static void test_fragmented(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_after = 1 };
	open_cl(f, &c, "/frag", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 1);
	assert_string_equal(c.last, "hello world");
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

/* The close code the peer last received from us; `done` counts the
 * completions run() has waited for so far in this test. */
static int peer_last_close(struct fx *f, int done)
{
	struct cl c = { .free_after = 1 };
	open_cl(f, &c, "/lastclose", 0, 0);
	run(f, done + 1);
	int code = atoi(c.last);
	cl_release(&c);
	return code;
}

/* Fragments larger than wslay's read buffer, assembled into one message. */
static void test_fragmented_big(void **state)
{
	expect_pattern(*state, "/fragbig?n=10000&k=3", 30000);
}

/* Each fragment fits, the message does not: refused before buffering it. */
static void test_fragmented_over_limit(void **state)
{
	/* Not asked of the peer: our close frame is best effort, and closing
	 * with its unread data pending resets the connection. */
	expect_over_limit(*state, "/fragbig?n=300000&k=3");
}

/* A fragmented binary message with a ping inside is skipped; an empty text
 * message is still a message. */
static void test_mixed(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_after = 2 };
	open_cl(f, &c, "/mixed", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 2);
	assert_string_equal(c.log, "after"); /* the empty text, then "after": no binary */
	assert_string_equal(c.last, "after");
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

static void test_protocol_errors(void **state)
{
	struct fx *f = *state;
	static const char *const cases[] = { "cont", "newmsg", "rsv", "opcode", "ctlfrag",
					     "ctlbig", "masked", "close1", "badcode" };
	int done = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proto?case=%s", cases[i]);
		struct cl c = { 0 };
		open_cl(f, &c, path, 0, 0);
		run(f, ++done);
		if (c.err != GW_EPROTO || c.code != 1002)
			fail_msg("%s: err %d code %d", cases[i], c.err, c.code);
		assert_int_equal(c.texts, 0);
		assert_int_equal(c.http_status, 101);
		assert_int_equal(peer_last_close(f, done++), 1002);
		cl_release(&c);
	}
}

/* A ping with the most payload a control frame may carry. */
static void test_ping_125(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_after = 1 };
	open_cl(f, &c, "/ping?n=125", 0, 0);
	run(f, 1);
	assert_int_equal(c.last_len, 5 + 125);
	assert_memory_equal(c.last, "pong:", 5);
	check_pattern(c.last + 5, 125);
	cl_release(&c);
}

/* A message sent just before ws_close goes out before the close frame. */
static void test_send_then_close(void **state)
{
	struct fx *f = *state;
	struct cl c = { .send_on_open = "last words", .send_len = 10, .close_on_open = true };
	open_cl(f, &c, "/echo", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 1);
	assert_string_equal(c.last, "last words");
	assert_int_equal(c.err, GW_OK);
	assert_int_equal(c.code, 1000);
	cl_release(&c);
}

/* The same with the message queued: a first one larger than the socket
 * takes at once (the peer reads nothing for a while) is still going out
 * when the second and the close come. */
static void test_queued_then_close(void **state)
{
	struct fx *f = *state;
	size_t n = (size_t)8 << 20;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, 'b', n);
	struct cl c = { .send_on_open = big, .send_len = n, .send2_on_open = "last words",
			.close_on_open = true };
	open_cl(f, &c, "/echoslow", (size_t)16 << 20, 0);
	run(f, 1);
	assert_true(c.queued);
	assert_int_equal(c.texts, 2);
	assert_string_equal(c.last, "last words");
	assert_int_equal(c.err, GW_OK);
	assert_int_equal(c.code, 1000);
	free(big);
	cl_release(&c);
}

static void test_ping_pong(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_after = 1 };
	open_cl(f, &c, "/ping", 0, 0);
	run(f, 1);
	assert_string_equal(c.last, "pong:p1"); /* the peer saw our automatic pong */
	cl_release(&c);
}

static void test_server_close(void **state)
{
	struct fx *f = *state;
	struct cl c = { 0 };
	open_cl(f, &c, "/close?code=4001", 0, 0);
	run(f, 1);
	assert_int_equal(c.opened, 1);
	assert_int_equal(c.err, GW_OK);
	assert_int_equal(c.code, 4001);
	assert_int_equal(c.http_status, 101);
	assert_int_equal(peer_last_close(f, 1), 4001); /* our close echoed its code */
	cl_release(&c);
}

/* 1012-1014 (service restart, try again later, bad gateway) are in IANA's
 * registry: a clean close, not a protocol error. */
static void test_server_close_registered(void **state)
{
	struct fx *f = *state;
	static const char *const paths[] = { "/close?code=1012", "/close?code=1013",
					     "/close?code=1014" };
	for (int i = 0; i < 3; i++) {
		struct cl c = { 0 };
		open_cl(f, &c, paths[i], 0, 0);
		f->done = 0;
		run(f, 1);
		assert_int_equal(c.err, GW_OK);
		assert_int_equal(c.code, 1012 + i);
		cl_release(&c);
	}
}

static void test_drop(void **state)
{
	struct fx *f = *state;
	struct cl c = { 0 };
	open_cl(f, &c, "/drop", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 0);
	assert_int_equal(c.err, GW_EIO);
	cl_release(&c);
}

static void test_refused_upgrade(void **state)
{
	struct fx *f = *state;
	struct cl a = { 0 }, b = { 0 };
	open_cl(f, &a, "/auth", 0, 0);
	open_cl(f, &b, "/e500", 0, 0);
	run(f, 2);
	assert_int_equal(a.opened, 0);
	assert_int_equal(a.err, GW_EAUTH);
	assert_int_equal(a.http_status, 401);
	assert_int_equal(b.err, GW_EPROTO);
	assert_int_equal(b.http_status, 500);
	cl_release(&a);
	cl_release(&b);
}

static void test_handshake_deadline(void **state)
{
	struct fx *f = *state;
	struct cl c = { 0 };
	open_cl(f, &c, "/silent", 0, 300);
	run(f, 1);
	assert_int_equal(c.opened, 0);
	assert_int_equal(c.err, GW_ETIMEOUT);
	cl_release(&c);
}

static void test_connect_refused(void **state)
{
	struct fx *f = *state;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(s, (struct sockaddr *)&sin, &sl);
	close(s);
	char url[64];
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(sin.sin_port));
	struct cl c = { .f = f };
	struct ws_opts o = { .url = url };
	assert_int_equal(ws_open(f->h, &o, &cl_cbs, &c, &c.w), GW_OK);
	run(f, 1);
	assert_int_equal(c.err, GW_EIO);
	cl_release(&c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cl *c = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	/* 150 ms paused with 49 messages sent: none may have arrived. */
	assert_int_equal(c->texts, 1);
	c->close_after = 50;
	ws_pause(c->w, false);
}

static void test_pause_resume(void **state)
{
	struct fx *f = *state;
	struct cl c = { .pause_first = true };
	open_cl(f, &c, "/burst?n=50", 0, 0);
	run(f, 1); /* first message, now paused */
	after_ms(f, 150, resume_cb, &c);
	run(f, 2); /* the close after message 50 */
	assert_int_equal(c.texts, 50);
	char want[1024] = "m0";
	for (int i = 1; i < 50; i++)
		sprintf(want + strlen(want), "|m%d", i);
	assert_string_equal(c.log, want);
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

/* Paused between fragmented messages with pings inside: what is already
 * read waits, in order, and no fragment is lost or delivered early. */
static void test_pause_resume_fragments(void **state)
{
	struct fx *f = *state;
	struct cl c = { .pause_first = true };
	open_cl(f, &c, "/fragburst?n=50", 0, 0);
	run(f, 1);
	after_ms(f, 150, resume_cb, &c);
	run(f, 2);
	assert_int_equal(c.texts, 50);
	char want[1024] = "m0";
	for (int i = 1; i < 50; i++)
		sprintf(want + strlen(want), "|m%d", i);
	assert_string_equal(c.log, want);
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	mark(arg);
}

static void test_free_in_on_text(void **state)
{
	struct fx *f = *state;
	struct cl c = { .free_after = 1 };
	open_cl(f, &c, "/burst?n=50", 0, 0);
	run(f, 1);
	assert_null(c.w);
	assert_int_equal(httpc_active(f->h), 0);
	after_ms(f, 100, tick, f); /* nothing more may arrive */
	run(f, 2);
	assert_int_equal(c.texts, 1);
	assert_false(c.closed);
	cl_release(&c);
}

static void test_binary_ignored(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_after = 1 };
	open_cl(f, &c, "/binary", 0, 0);
	run(f, 1);
	assert_int_equal(c.texts, 1);
	assert_string_equal(c.last, "after-binary");
	cl_release(&c);
}

static void test_close_from_client(void **state)
{
	struct fx *f = *state;
	struct cl c = { .close_on_open = true };
	open_cl(f, &c, "/echo", 0, 0);
	run(f, 1);
	assert_int_equal(c.err, GW_OK);
	assert_int_equal(c.code, 1000);
	cl_release(&c);
}

static void test_close_and_free_before_open(void **state)
{
	struct fx *f = *state;
	struct cl a = { 0 }, b = { 0 };
	open_cl(f, &a, "/echo", 0, 0);
	open_cl(f, &b, "/echo", 0, 0);
	assert_int_equal(ws_send_text(a.w, "x", 1), GW_EIO); /* not open yet */
	ws_close(a.w, 1000);
	ws_free(b.w);
	b.w = NULL;
	assert_int_equal(httpc_active(f->h), 1);
	after_ms(f, 100, tick, f);
	run(f, 2); /* a's on_close, then the tick */
	assert_true(a.closed);
	assert_int_equal(a.opened, 0);
	assert_int_equal(a.err, GW_ECANCELED);
	assert_false(b.closed);
	assert_int_equal(b.opened, 0);
	cl_release(&a);
	cl_release(&b);
}

/* An idle, paused ws with unread input must survive curl looking for dead
 * connections (it does so at most once a second, when a transfer needs a
 * connection). */
static void on_http(const struct httpc_resp *r, void *arg)
{
	struct cl *c = arg;
	assert_int_equal(r->err, GW_OK);
	ws_pause(c->w, false);
}

static void start_http(evutil_socket_t fd, short what, void *arg)
{
	struct cl *c = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	char url[64];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/", c->f->tls ? "https" : "http",
		 c->f->tls ? tls_peer.port : plain_peer.port);
	struct httpc_call_opts o = { .method = "GET", .url = url };
	struct httpc_call *call;
	assert_int_equal(httpc_call_start(c->f->h, &o, on_http, c, &call), GW_OK);
}

static void test_idle_survives_prune(void **state)
{
	struct fx *f = *state;
	struct cl c = { .pause_first = true, .close_after = 2 };
	open_cl(f, &c, "/burst?n=2", 0, 0);
	run(f, 1);
	after_ms(f, 1200, start_http, &c);
	run(f, 2);
	assert_int_equal(c.texts, 2);
	assert_int_equal(c.err, GW_OK);
	cl_release(&c);
}

#define NCONC 200

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	static struct cl c[NCONC];
	static char msg[NCONC][16];
	memset(c, 0, sizeof(c));
	for (int i = 0; i < NCONC; i++) {
		int n = snprintf(msg[i], sizeof(msg[i]), "hi %d", i);
		c[i].send_on_open = msg[i];
		c[i].send_len = (size_t)n;
		c[i].close_after = 1;
		open_cl(f, &c[i], "/echo", 0, 0);
	}
	assert_int_equal(httpc_active(f->h), NCONC);
	/* Spread over small curl multis, so curl's per-multi connection walks
	 * stay short. */
	assert_int_equal(httpc__shards(f->h), (NCONC + HTTPC_WS_PER_MULTI - 1) / HTTPC_WS_PER_MULTI);
	run(f, NCONC);
	for (int i = 0; i < NCONC; i++) {
		assert_int_equal(c[i].err, GW_OK);
		assert_string_equal(c[i].last, msg[i]);
		cl_release(&c[i]);
	}
	/* Emptied shards are freed from the loop, all but one. */
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(httpc__shards(f->h), 1);
}

/* Writes bytes as the server and lets the ws read them: a socket pair
 * delivers at once, so one pass of the loop sees them. */
static void peer_says(struct fx *f, int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(event_base_loop(f->base, EVLOOP_NONBLOCK), 0);
}

/* A ws adopted on one end of a new socket pair (max 0: no size limit);
 * sv[1] is its peer. */
static void adopt_pair(struct fx *f, int sv[2], size_t max, struct cl *c)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	c->f = f;
	assert_int_equal(ws__adopt_fd(f->h, sv[0], max, &cl_cbs, c, &c->w), GW_OK);
}

/* A ws holds wslay's frame parser (4 KB) only while a frame is half read;
 * parsers given back serve other ws objects without mixing their bytes. */
static void test_parser_only_inside_frames(void **state)
{
	struct fx *f = *state;
	static const uint8_t hello[] = { 0x81, 5, 'h', 'e', 'l', 'l', 'o' };
	static const uint8_t two[] = { 0x81, 2, 'h', 'i', 0x81, 3, 'y', 'o', 'u' };
	int a[2], b[2];
	struct cl ca = { 0 }, cb = { 0 };
	adopt_pair(f, a, 0, &ca);
	adopt_pair(f, b, 0, &cb);
	assert_false(ws__holds_parser(ca.w));
	assert_false(ws__holds_parser(cb.w));

	peer_says(f, a[1], hello, 1); /* half a header */
	assert_true(ws__holds_parser(ca.w));
	peer_says(f, a[1], hello + 1, 3); /* the rest of it, and "he" */
	assert_true(ws__holds_parser(ca.w));
	assert_int_equal(ca.texts, 0);

	peer_says(f, b[1], two, sizeof(two)); /* whole frames on B meanwhile */
	assert_string_equal(cb.log, "hi|you");
	assert_false(ws__holds_parser(cb.w));

	peer_says(f, a[1], hello + 4, 3);
	assert_string_equal(ca.log, "hello");
	assert_false(ws__holds_parser(ca.w));
	peer_says(f, a[1], two, 5); /* one frame and a header byte */
	assert_true(ws__holds_parser(ca.w));
	peer_says(f, a[1], two + 5, sizeof(two) - 5);
	assert_string_equal(ca.log, "hello|hi|you");
	assert_false(ws__holds_parser(ca.w));
	/* A send from outside the loop (as the ping timer sends) that goes out
	 * whole gives its parser back at once, too. */
	assert_int_equal(ws_send_text(cb.w, "ping", 4), GW_OK);
	assert_false(ws__holds_parser(cb.w));
	assert_false(ca.closed || cb.closed);

	cl_release(&ca);
	cl_release(&cb);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
}

/* A send that fails leaves wslay inside the frame it cut: that parser is
 * never handed to another ws, whose next frame would go out behind the cut
 * frame's header and mask. */
static void test_cut_frame_parser_not_shared(void **state)
{
	struct fx *f = *state;
	int a[2], b[2];
	struct cl ca = { 0 }, cb = { 0 };
	adopt_pair(f, a, 0, &ca);
	adopt_pair(f, b, 0, &cb);
	close(a[1]); /* A's peer is gone: its next send fails inside the frame */
	assert_int_equal(ws_send_text(ca.w, "x", 1), GW_OK); /* the failure ends it later */
	assert_int_equal(ws_send_text(cb.w, "hi", 2), GW_OK);
	uint8_t got[16];
	assert_int_equal(read(b[1], got, sizeof(got)), 2 + 4 + 2);
	assert_int_equal(got[0], 0x81);     /* FIN, text */
	assert_int_equal(got[1], 0x80 | 2); /* masked, 2 bytes: B's own frame */
	assert_int_equal(got[6] ^ got[2], 'h');
	assert_int_equal(got[7] ^ got[3], 'i');
	cl_release(&ca);
	cl_release(&cb);
	close(a[0]);
	close(b[0]);
	close(b[1]);
}

/* The size limit applies at a frame's first piece: a peer that announces
 * too much, sends one byte and stalls is refused at once, without waiting
 * for the rest or buffering any of it. (wslay reports a frame only with
 * payload, so a bare header waits.) */
static void test_limit_at_header(void **state)
{
	struct fx *f = *state;
	/* text, FIN, 16-bit length 1000, then 1 byte of it */
	static const uint8_t hdr[] = { 0x81, 126, 0x03, 0xe8, 'x' };
	int sv[2];
	struct cl c = { 0 };
	adopt_pair(f, sv, 100, &c);
	peer_says(f, sv[1], hdr, sizeof(hdr));
	assert_true(c.closed);
	assert_int_equal(c.err, GW_ELIMIT);
	assert_int_equal(c.code, 1009);
	assert_int_equal(c.texts, 0);
	cl_release(&c);
	close(sv[0]);
	close(sv[1]);
}

static void on_rest_done(const struct httpc_resp *r, void *arg)
{
	struct fx *f = arg;
	assert_int_equal(r->err, GW_OK);
	mark(f);
}

/* Opens one wss to /echo, trades a message, closes; says whether its TLS
 * handshake resumed a session. */
static bool wss_round(struct fx *f)
{
	struct cl c = { .send_on_open = "x", .send_len = 1, .close_after = 1 };
	open_cl(f, &c, "/echo", 0, 0);
	f->done = 0;
	run(f, 1);
	assert_int_equal(c.err, GW_OK);
	assert_string_equal(c.last, "x");
	cl_release(&c);
	return c.resumed;
}

/* One TLS-session share per client: a WebSocket to a host a REST call has
 * just talked to resumes that call's session instead of a full handshake.
 * Only REST connections leave sessions: a WebSocket's own TLS 1.3 tickets
 * arrive after the handshake, on our direct SSL_read, where curl does not
 * see them; and a server may take a ticket only once. */
static void tls_session_resumed(struct fx *f, bool direct)
{
	assert_false(wss_round(f));
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/", tls_peer.port);
	struct httpc_call_opts o = { .method = "GET", .url = url, .direct = direct };
	struct httpc_call *call;
	assert_int_equal(httpc_call_start(f->h, &o, on_rest_done, f, &call), GW_OK);
	f->done = 0;
	run(f, 1);
	assert_true(wss_round(f));
}

static void test_tls_session_resumed(void **state)
{
	tls_session_resumed(*state, false);
}

/* The same after a direct call (h1c.c), whose later reads bypass curl. */
static void test_tls_session_resumed_direct(void **state)
{
	tls_session_resumed(*state, true);
}

static void on_rest_404(const struct httpc_resp *r, void *arg)
{
	struct fx *f = arg;
	assert_int_equal(r->err, GW_OK);
	assert_int_equal(r->status, 404); /* what the peer answers plain requests */
	mark(f);
}

/* Direct calls over TLS, one after another: the first answer is read
 * through curl (for its session tickets), the next ones on the SSL object,
 * all on one kept connection. */
static void test_direct_calls_over_tls(void **state)
{
	struct fx *f = *state;
	char url[64];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/x", tls_peer.port);
	struct httpc_call_opts o = { .method = "GET", .url = url, .direct = true };
	for (int i = 0; i < 3; i++) {
		struct httpc_call *call;
		assert_int_equal(httpc_call_start(f->h, &o, on_rest_404, f, &call), GW_OK);
		f->done = 0;
		run(f, 1);
		assert_int_equal(httpc__direct_conns(f->h), 1);
	}
}

/* ---- pure parts ---- */

static void test_accept_key(void **state)
{
	GW_UNUSED(state);
	char out[29];
	ws__accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 section 1.3 */
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_parse_handshake(void **state)
{
	GW_UNUSED(state);
	const char *acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
	int st;
	size_t hl;
	const char *ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
			 "Connection: keep-alive, Upgrade\r\n"
			 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x01x";
	assert_int_equal(ws__parse_handshake(ok, strlen(ok), acc, &st, &hl), GW_OK);
	assert_int_equal(st, 101);
	assert_int_equal(hl, strlen(ok) - 3);
	assert_int_equal(ws__parse_handshake(ok, 40, acc, &st, &hl), GW_EAGAIN);
	const char *bad_acc = "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
			      "Sec-WebSocket-Accept: AAAA\r\n\r\n";
	assert_int_equal(ws__parse_handshake(bad_acc, strlen(bad_acc), acc, &st, &hl), GW_EPROTO);
	const char *no_up = "HTTP/1.1 101 X\r\nConnection: upgrade\r\n"
			    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	assert_int_equal(ws__parse_handshake(no_up, strlen(no_up), acc, &st, &hl), GW_EPROTO);
	const char *ext = "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
			  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
			  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
	assert_int_equal(ws__parse_handshake(ext, strlen(ext), acc, &st, &hl), GW_EPROTO);
	const char *forb = "HTTP/1.1 403 Forbidden\r\n\r\n";
	assert_int_equal(ws__parse_handshake(forb, strlen(forb), acc, &st, &hl), GW_EAUTH);
	assert_int_equal(st, 403);
	const char *junk = "HTTP/1.1 1x1 Nope\r\n\r\n";
	assert_int_equal(ws__parse_handshake(junk, strlen(junk), acc, &st, &hl), GW_EPROTO);
	assert_int_equal(st, 0);
	const char *nocolon = "HTTP/1.1 101 X\r\nbroken line\r\n\r\n";
	assert_int_equal(ws__parse_handshake(nocolon, strlen(nocolon), acc, &st, &hl), GW_EPROTO);
	char big[WS_HS_MAX_BYTES];
	memset(big, 'a', sizeof(big));
	assert_int_equal(ws__parse_handshake(big, sizeof(big), acc, &st, &hl), GW_EPROTO);
}

static void test_bad_open(void **state)
{
	struct fx *f = *state;
	struct ws *w = (void *)1;
	struct ws_opts o = { .url = "ftp://127.0.0.1/" };
	assert_int_equal(ws_open(f->h, &o, &cl_cbs, NULL, &w), GW_EINVAL);
	assert_null(w);
	const char *const inj[] = { "X: a\r\nY: b", NULL };
	struct ws_opts o2 = { .url = "ws://127.0.0.1:1/", .headers = inj };
	assert_int_equal(ws_open(f->h, &o2, &cl_cbs, NULL, &w), GW_EINVAL);
	assert_int_equal(httpc_active(f->h), 0);
	ws_free(NULL);
	ws_close(NULL, 1000);
	ws_pause(NULL, true);
}

/* Every gw_* allocation failing in turn: ws_open fails cleanly with
 * GW_ENOMEM, or exactly one on_close follows. */
static void test_alloc_failures(void **state)
{
	struct fx *f = *state;
	int failed = 0;
	for (unsigned long n = 1; n <= 16; n++) {
		struct cl c = { .f = f, .send_on_open = "x", .send_len = 1, .close_after = 1 };
		struct ws_opts o = { .url = url_for(f, "/echo") };
		gw_alloc_fail_at(n);
		enum gw_err err = ws_open(f->h, &o, &cl_cbs, &c, &c.w);
		if (err == GW_OK) {
			f->done = 0;
			run(f, 1);
			assert_true(c.closed);
			assert_true(c.err == GW_OK || c.err == GW_ENOMEM);
		} else {
			assert_int_equal(err, GW_ENOMEM);
			assert_null(c.w);
			assert_int_equal(httpc_active(f->h), 0);
			failed++;
		}
		gw_alloc_fail_at(0);
		cl_release(&c);
	}
	assert_true(failed > 0);
}

#define BOTH(t)                                                           \
	cmocka_unit_test_setup_teardown(t, setup_plain, teardown),        \
	cmocka_unit_test_setup_teardown(t, setup_tls, teardown)

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_parse_handshake),
		cmocka_unit_test_setup_teardown(test_bad_open, setup_plain, teardown),
		BOTH(test_echo),
		BOTH(test_echo_curl_parsed_url),
		BOTH(test_frames_with_101),
		BOTH(test_big_message),
		BOTH(test_over_limit),
		BOTH(test_big_send),
		BOTH(test_fragmented),
		BOTH(test_ping_pong),
		BOTH(test_fragmented_big),
		BOTH(test_fragmented_over_limit),
		BOTH(test_mixed),
		BOTH(test_protocol_errors),
		BOTH(test_ping_125),
		BOTH(test_send_then_close),
		BOTH(test_queued_then_close),
		BOTH(test_server_close),
		cmocka_unit_test_setup_teardown(test_server_close_registered, setup_plain, teardown),
		BOTH(test_drop),
		BOTH(test_refused_upgrade),
		cmocka_unit_test_setup_teardown(test_handshake_deadline, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_connect_refused, setup_plain, teardown),
		BOTH(test_pause_resume),
		BOTH(test_pause_resume_fragments),
		BOTH(test_free_in_on_text),
		BOTH(test_binary_ignored),
		BOTH(test_close_from_client),
		BOTH(test_close_and_free_before_open),
		BOTH(test_idle_survives_prune),
		BOTH(test_concurrent),
		cmocka_unit_test_setup_teardown(test_parser_only_inside_frames, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_limit_at_header, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_cut_frame_parser_not_shared, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_tls_session_resumed, setup_tls, teardown),
		cmocka_unit_test_setup_teardown(test_tls_session_resumed_direct, setup_tls, teardown),
		cmocka_unit_test_setup_teardown(test_direct_calls_over_tls, setup_tls, teardown),
		BOTH(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
