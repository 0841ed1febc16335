/* fuzz_ws_frames.c - server bytes after the 101: wslay's frame parser and
 * ws.c's message layer over it (reassembly, the size limit, ping/pong, the
 * close handshake, protocol checks, pausing, sending from a callback).
 *
 * Input: one option byte (size limit, pause and echo switches, piece
 * size), then the bytes the "server" sends before closing its side. The ws
 * must end with exactly one on_close, never hand over a message over its
 * limit, and free everything (ASan). Each input runs twice at once, on
 * one loop: written whole to one ws, and in pieces of a few bytes to
 * another (so frames stop anywhere, and the parser either ws gives back
 * between frames may be taken by the other); both must deliver the same
 * messages and end the same way. */
#include "net/httpc.h"
#include "net/ws.h"
#include "net/ws_internal.h"

#include <event2/event.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct ws *w;
	struct event_base *base;
	int closes;
	size_t max;
	bool flip_pause;
	bool echo;
	const uint8_t *left; /* still to write to the ws */
	size_t nleft;
	size_t piece;      /* bytes per write, 0 = all that fits */
	struct event *wev; /* writes the input; removed once it is all out */
	struct event *rev; /* drains what the ws sends */
	int sv[2];         /* sv[0] the ws's, sv[1] the peer's */
	/* what the ws did, to compare the two runs */
	uint64_t digest;
	size_t texts;
	enum gw_err err;
	int code;
};

static void digest_add(struct run *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		r->digest = (r->digest ^ b[i]) * 1099511628211ULL; /* FNV-1a */
}

static void on_text(void *arg, const char *p, size_t n)
{
	struct run *r = arg;
	GW_ASSERT(r->closes == 0);
	GW_ASSERT(n <= r->max);
	r->texts++;
	digest_add(r, &n, sizeof(n));
	digest_add(r, p, n);
	if (r->flip_pause) {
		ws_pause(r->w, true);
		ws_pause(r->w, false);
	}
	if (r->echo)
		(void)ws_send_text(r->w, p, n);
}

static void on_close(void *arg, enum gw_err err, int code, int http_status)
{
	struct run *r = arg;
	GW_ASSERT(r->closes++ == 0);
	/* No allocation fails here, so only the peer's doing ends a ws. */
	GW_ASSERT(err == GW_OK || err == GW_EIO || err == GW_EPROTO || err == GW_ELIMIT);
	/* The code says why, as ws.h promises. */
	if (err == GW_OK)
		GW_ASSERT(code == 1005 || (code >= 1000 && code <= 4999));
	else
		GW_ASSERT(code == (err == GW_EPROTO ? 1002 : err == GW_ELIMIT ? 1009 : 1006));
	GW_ASSERT(http_status == 101);
	r->err = err;
	r->code = code;
	event_base_loopbreak(r->base);
}

/* The server's side throws away what the ws sends (pongs, close frames,
 * echoes) ... */
static void on_peer_read(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(what);
	GW_UNUSED(arg);
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
}

/* ... and writes the input, then closes its write side. */
static void on_peer_write(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(what);
	struct run *r = arg;
	size_t want = r->piece && r->piece < r->nleft ? r->piece : r->nleft;
	ssize_t n = write(fd, r->left, want);
	if (n > 0) {
		r->left += n;
		r->nleft -= (size_t)n;
	}
	if (!r->nleft) {
		shutdown(fd, SHUT_WR);
		event_del(r->wev);
	}
}

/* A fresh socket pair, the peer's events and the ws for one run. */
static void run_start(struct httpc *h, struct run *r)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->sv))
		__builtin_trap();
	r->rev = event_new(r->base, r->sv[1], EV_READ | EV_PERSIST, on_peer_read, r);
	r->wev = event_new(r->base, r->sv[1], EV_WRITE | EV_PERSIST, on_peer_write, r);
	GW_ASSERT(r->rev && r->wev && event_add(r->rev, NULL) == 0);
	if (r->nleft)
		GW_ASSERT(event_add(r->wev, NULL) == 0);
	else
		shutdown(r->sv[1], SHUT_WR);
	static const struct ws_cbs cbs = { .on_text = on_text, .on_close = on_close };
	if (ws__adopt_fd(h, r->sv[0], r->max, &cbs, r, &r->w) != GW_OK) {
		r->w = NULL;
		r->err = GW_ENOMEM;
	}
}

static void run_end(struct run *r)
{
	if (r->w)
		ws_free(r->w);
	event_free(r->rev);
	event_free(r->wev);
	close(r->sv[0]);
	close(r->sv[1]);
}

/* Both runs on one loop until each has ended (the server's side closes
 * after its bytes, so every input ends). */
static void run_both(struct httpc *h, struct run r[2])
{
	run_start(h, &r[0]);
	run_start(h, &r[1]);
	while ((r[0].w && !r[0].closes) || (r[1].w && !r[1].closes))
		GW_ASSERT(event_base_loop(r[0].base, EVLOOP_ONCE) == 0);
	run_end(&r[0]);
	run_end(&r[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event_base *base;
	static struct httpc *h;
	if (!base && (!(base = event_base_new()) || !(h = httpc_new(base, NULL))))
		__builtin_trap();
	if (size < 1)
		return 0;
	static const size_t limits[] = { 1, 5, 125, 126, 4095, 4096, 65536, (size_t)4 << 20 };
	static const size_t pieces[] = { 1, 2, 3, 7 };
	struct run r[2];
	for (int i = 0; i < 2; i++) {
		r[i] = (struct run){
			.base = base,
			.max = limits[data[0] & 7],
			.flip_pause = data[0] & 0x10,
			.echo = data[0] & 0x20,
			.left = data + 1,
			.nleft = size - 1,
			.piece = i ? pieces[data[0] >> 6] : 0,
			.digest = 14695981039346656037ULL,
		};
	}
	run_both(h, r);
	GW_ASSERT(r[0].texts == r[1].texts && r[0].digest == r[1].digest);
	GW_ASSERT(r[0].err == r[1].err && r[0].code == r[1].code);
	return 0;
}
