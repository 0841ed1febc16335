/* load.c - load generator for bench/run.sh (not part of the gateway build).
 *
 * One libevent loop drives N concurrent streams from its own process, so
 * the process under test (the gateway, or nginx relaying the upstream
 * protocol) and the simulator keep their CPU to themselves.
 *
 * --mode gw: OpenAI chat completions against the gateway (stream or not).
 * --mode up: the upstream protocol, as the gateway speaks it, against nginx
 *   (or the simulator itself): Clerk session and JWT once, then per request
 *   [2026: POST /projects/create-hosted] -> WebSocket
 *   /engine-agent/chat-histories/{id}/buffer/stream -> [2026: offers] ->
 *   POST /engine-agent/chat -> frames until inProgress:false.
 *
 * Every reply is checked byte for byte against the simulator's `[pieces=N]`
 * answer "w1 w2 ... wN". Every loop is bounded: -n requests, a per-request
 * timeout and a whole-run deadline. One JSON line of results goes to stdout.
 *
 * Build: cc -O2 -o load load.c $(pkg-config --cflags --libs libevent) */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (64u << 20)
#define MAX_PIDS 4
#define MAX_SAMPLES 100000
#define MAX_ERRS 12

/* ---- small helpers ---------------------------------------------------- */

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			die("out of memory");
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		die("sb_printf: line too long");
	sb_add(b, tmp, (size_t)n);
}

static void sb_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static void sb_free(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static const char *memmem_s(const char *h, size_t n, const char *needle)
{
	return memmem(h, n, needle, strlen(needle));
}

static void put_utf8(struct sbuf *out, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	sb_add(out, u, n);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool hex4(const char *p, const char *end, uint32_t *v)
{
	if (end - p < 4)
		return false;
	*v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval((unsigned char)p[i]);
		if (h < 0)
			return false;
		*v = *v * 16 + (uint32_t)h;
	}
	return true;
}

/* Decodes the JSON string whose first character (after the opening quote)
 * is at p; appends to out. Returns the position after the closing quote, or
 * NULL if the string is malformed or unterminated. */
static const char *json_str(const char *p, const char *end, struct sbuf *out)
{
	while (p < end) {
		const char *q = p;
		while (q < end && *q != '"' && *q != '\\')
			q++;
		if (q > p)
			sb_add(out, p, (size_t)(q - p));
		if (q >= end)
			return NULL;
		if (*q == '"')
			return q + 1;
		if (q + 1 >= end)
			return NULL;
		char c = q[1];
		p = q + 2;
		switch (c) {
		case '"': case '\\': case '/':
			sb_add(out, &c, 1);
			break;
		case 'n': sb_add(out, "\n", 1); break;
		case 't': sb_add(out, "\t", 1); break;
		case 'r': sb_add(out, "\r", 1); break;
		case 'b': sb_add(out, "\b", 1); break;
		case 'f': sb_add(out, "\f", 1); break;
		case 'u': {
			uint32_t cp, lo;
			if (!hex4(p, end, &cp))
				return NULL;
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
			    hex4(p + 2, end, &lo) && lo >= 0xdc00 && lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			put_utf8(out, cp);
			break;
		}
		default:
			return NULL;
		}
	}
	return NULL;
}

/* The string value of the first `"key":"` in [p, end); false if absent. */
static bool json_get(const char *p, size_t n, const char *key, struct sbuf *out)
{
	char pat[128];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *at = memmem_s(p, n, pat);
	if (!at)
		return false;
	return json_str(at + strlen(pat), p + n, out) != NULL;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(struct sbuf *out, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		char o[4] = { B64[(v >> 18) & 63], B64[(v >> 12) & 63], i + 1 < n ? B64[(v >> 6) & 63] : '=',
			      i + 2 < n ? B64[v & 63] : '=' };
		sb_add(out, o, 4);
	}
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- options ---------------------------------------------------------- */

/* One --pid NAME:PID[,PID...]: several processes under one name (gateway
 * instances sharing a port) are measured as their sum. */
#define MAX_GROUP 4

struct watched {
	char name[32];
	int pid[MAX_GROUP];
	int npid;
	long long ticks0, ticks1;
	long long sched0, sched1; /* ns, summed over threads */
	long long *rss; /* samples, kB */
	size_t nrss;
	long long hwm_kb, rss_end_kb;
	long long rss_idle_kb; /* --idle-after S: VmRSS S seconds after the run; -1 if not asked */
	long fds_max; /* open descriptors, the largest sample */
};

static struct {
	bool up;
	bool stream;
	int flow;
	int port, sim_port;
	const char *key, *cookie, *model, *agent, *label, *note;
	long conc, total, warmup, pieces, slow, ramp_ms;
	long req_timeout_s, deadline_s, pool_max, fresh, idle_s;
	struct watched w[MAX_PIDS];
	int nw;
} opt = { .stream = true, .flow = 2026, .key = "", .cookie = "sim_client_default",
	  .model = "claude-sonnet-4-5", .agent = "ClaudeSonnet4_5", .label = "", .note = "", .conc = 1, .total = 100,
	  .warmup = 0, .pieces = 32, .req_timeout_s = 120, .deadline_s = 300, .pool_max = 256 };

static struct event_base *base;
static struct sockaddr_in target_addr, sim_addr;

/* ---- HTTP/1.1 and WebSocket client connection --------------------------- */

enum hc_state { HC_IDLE, HC_HEAD, HC_BODY_CL, HC_CHUNK_SIZE, HC_CHUNK_DATA, HC_CHUNK_CRLF, HC_TRAILER, HC_BODY_EOF,
		HC_WS, HC_DEAD };

struct hc;
struct hc_ops {
	void (*head)(void *arg, struct hc *h, int status, const char *hdrs, size_t n);
	void (*data)(void *arg, struct hc *h, const char *p, size_t n);
	/* The response is complete (ok) or the connection failed (!ok). */
	void (*done)(void *arg, struct hc *h, bool ok);
	void (*ws_msg)(void *arg, struct hc *h, int op, const char *p, size_t n);
};

struct pool;

struct hc {
	struct bufferevent *bev;
	enum hc_state st;
	bool keepalive, closing, free_pending;
	int depth;
	size_t remaining;
	const struct hc_ops *ops;
	void *arg;
	struct pool *pool;
	struct hc *next; /* pool idle list */
	int frag_op;
	struct sbuf frag;
};

static long open_conns;
static void note_err(const char *fmt, ...);
static void note_kind(bool wrong, const char *fmt, ...);

static void hc_free_now(struct hc *h)
{
	if (h->bev)
		bufferevent_free(h->bev);
	sb_free(&h->frag);
	free(h);
	open_conns--;
}

/* Closes the connection; freed now, or when the callback that runs returns. */
static void hc_close(struct hc *h)
{
	h->st = HC_DEAD;
	h->ops = NULL;
	if (h->depth > 0)
		h->free_pending = true;
	else
		hc_free_now(h);
}

static void pool_release(struct hc *h, bool reusable);

static void hc_complete(struct hc *h, bool ok)
{
	const struct hc_ops *ops = h->ops;
	void *arg = h->arg;
	bool reusable = ok && h->keepalive;
	h->st = reusable ? HC_IDLE : HC_DEAD;
	if (h->pool) {
		h->ops = NULL;
		if (ops && ops->done)
			ops->done(arg, h, ok);
		pool_release(h, reusable);
		return;
	}
	if (ops && ops->done)
		ops->done(arg, h, ok);
	if (!reusable && !h->free_pending && h->st == HC_DEAD)
		hc_close(h);
}

static bool hdr_has(const char *hdrs, size_t n, const char *name, const char *value)
{
	/* Case-insensitive scan of "name: value" lines. */
	size_t ln = strlen(name), lv = strlen(value);
	const char *p = hdrs, *end = hdrs + n;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > ln + 1 && !strncasecmp(p, name, ln) && p[ln] == ':') {
			const char *v = p + ln + 1;
			while (v < eol && *v == ' ')
				v++;
			for (const char *q = v; q + lv <= eol; q++)
				if (!strncasecmp(q, value, lv))
					return true;
		}
		p = eol + 1;
	}
	return false;
}

static long hdr_long(const char *hdrs, size_t n, const char *name)
{
	size_t ln = strlen(name);
	const char *p = hdrs, *end = hdrs + n;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > ln + 1 && !strncasecmp(p, name, ln) && p[ln] == ':')
			return strtol(p + ln + 1, NULL, 10);
		p = eol + 1;
	}
	return -1;
}

static bool hc_head(struct hc *h, struct evbuffer *in)
{
	struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (e.pos < 0) {
		if (evbuffer_get_length(in) > MAX_HEAD)
			hc_complete(h, false);
		return false;
	}
	size_t n = (size_t)e.pos + 4;
	char *hdrs = (char *)evbuffer_pullup(in, (ssize_t)n);
	int status = 0;
	if (n < 12 || strncmp(hdrs, "HTTP/1.", 7) || sscanf(hdrs + 9, "%3d", &status) != 1) {
		hc_complete(h, false);
		return false;
	}
	if (status >= 100 && status < 200 && status != 101) {
		evbuffer_drain(in, n);
		return true;
	}
	bool chunked = hdr_has(hdrs, n, "transfer-encoding", "chunked");
	long cl = hdr_long(hdrs, n, "content-length");
	h->keepalive = !hdr_has(hdrs, n, "connection", "close") && (chunked || cl >= 0);
	if (status == 101)
		h->st = HC_WS;
	else if (chunked)
		h->st = HC_CHUNK_SIZE;
	else if (cl >= 0) {
		h->st = HC_BODY_CL;
		h->remaining = (size_t)cl;
	} else if (status == 204 || status == 304) {
		h->st = HC_BODY_CL;
		h->remaining = 0;
	} else
		h->st = HC_BODY_EOF;
	if (h->ops && h->ops->head)
		h->ops->head(h->arg, h, status, hdrs, n);
	evbuffer_drain(in, n);
	if (h->st == HC_BODY_CL && h->remaining == 0)
		hc_complete(h, true);
	return h->st != HC_DEAD && h->st != HC_IDLE;
}

/* Passes up to `remaining` body bytes on; true when they are all there. */
static bool hc_body_bytes(struct hc *h, struct evbuffer *in)
{
	while (h->remaining > 0 && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in);
		if (n > h->remaining)
			n = h->remaining;
		const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
		if (h->ops && h->ops->data)
			h->ops->data(h->arg, h, p, n);
		evbuffer_drain(in, n);
		h->remaining -= n;
		if (h->st == HC_DEAD)
			return false;
	}
	return h->remaining == 0;
}

static void ws_send(struct hc *h, int op, const void *p, size_t n)
{
	unsigned char hdr[14];
	size_t hl = 2;
	hdr[0] = (unsigned char)(0x80 | op);
	if (n < 126) {
		hdr[1] = (unsigned char)(0x80 | n);
	} else if (n < 65536) {
		hdr[1] = 0x80 | 126;
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		hl = 4;
	} else {
		hdr[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			hdr[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	uint32_t mask = (uint32_t)rng();
	memcpy(hdr + hl, &mask, 4);
	hl += 4;
	unsigned char *m = xmalloc(n);
	const unsigned char *mk = hdr + hl - 4;
	for (size_t i = 0; i < n; i++)
		m[i] = ((const unsigned char *)p)[i] ^ mk[i & 3];
	struct evbuffer *out = bufferevent_get_output(h->bev);
	evbuffer_add(out, hdr, hl);
	evbuffer_add(out, m, n);
	free(m);
}

static void ws_deliver(struct hc *h, int op, const char *p, size_t n)
{
	if (h->ops && h->ops->ws_msg)
		h->ops->ws_msg(h->arg, h, op, p, n);
}

/* One WebSocket frame from the server (unmasked); false = need more. */
static bool hc_ws_frame(struct hc *h, struct evbuffer *in)
{
	size_t have = evbuffer_get_length(in);
	unsigned char b[14];
	if (have < 2)
		return false;
	evbuffer_copyout(in, b, have < 14 ? have : 14);
	bool fin = b[0] & 0x80, masked = b[1] & 0x80;
	int op = b[0] & 0x0f;
	uint64_t len = b[1] & 0x7f;
	size_t hl = 2;
	if (len == 126) {
		if (have < 4)
			return false;
		len = (uint64_t)b[2] << 8 | b[3];
		hl = 4;
	} else if (len == 127) {
		if (have < 10)
			return false;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | b[2 + i];
		hl = 10;
	}
	if (masked)
		hl += 4;
	if (len > MAX_BODY) {
		hc_complete(h, false);
		return false;
	}
	if (have < hl + len)
		return false;
	char *f = (char *)evbuffer_pullup(in, (ssize_t)(hl + len));
	char *p = f + hl;
	if (masked)
		for (uint64_t i = 0; i < len; i++)
			p[i] ^= f[hl - 4 + (i & 3)];
	if (op == 0x9)
		ws_send(h, 0xA, p, (size_t)len);
	else if (op == 0x8)
		ws_deliver(h, op, p, (size_t)len);
	else if (op == 0x1 || op == 0x2) {
		if (fin)
			ws_deliver(h, op, p, (size_t)len);
		else {
			sb_reset(&h->frag);
			sb_add(&h->frag, p, (size_t)len);
			h->frag_op = op;
		}
	} else if (op == 0x0) {
		sb_add(&h->frag, p, (size_t)len);
		if (fin)
			ws_deliver(h, h->frag_op, h->frag.p, h->frag.len);
	}
	if (h->st != HC_DEAD)
		evbuffer_drain(in, hl + len);
	return h->st == HC_WS;
}

static bool hc_step(struct hc *h, struct evbuffer *in)
{
	char *line;
	size_t n;
	switch (h->st) {
	case HC_HEAD:
		return hc_head(h, in);
	case HC_BODY_CL:
		if (hc_body_bytes(h, in)) {
			hc_complete(h, true);
			return h->st != HC_DEAD && h->st != HC_IDLE;
		}
		return false;
	case HC_CHUNK_SIZE:
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > 1024)
				hc_complete(h, false);
			return false;
		}
		h->remaining = strtoul(line, NULL, 16);
		free(line);
		h->st = h->remaining ? HC_CHUNK_DATA : HC_TRAILER;
		return true;
	case HC_CHUNK_DATA:
		if (!hc_body_bytes(h, in))
			return false;
		h->st = HC_CHUNK_CRLF;
		return true;
	case HC_CHUNK_CRLF:
		if (evbuffer_get_length(in) < 2)
			return false;
		evbuffer_drain(in, 2);
		h->st = HC_CHUNK_SIZE;
		return true;
	case HC_TRAILER:
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (!line)
			return false;
		free(line);
		if (n == 0) {
			hc_complete(h, true);
			return h->st != HC_DEAD && h->st != HC_IDLE;
		}
		return true;
	case HC_BODY_EOF:
		h->remaining = evbuffer_get_length(in);
		hc_body_bytes(h, in);
		return false;
	case HC_WS:
		return hc_ws_frame(h, in);
	case HC_IDLE:
	case HC_DEAD:
		return false;
	}
	return false;
}

static void hc_leave(struct hc *h)
{
	if (--h->depth == 0 && h->free_pending)
		hc_free_now(h);
}

static void hc_read_cb(struct bufferevent *bev, void *ctx)
{
	struct hc *h = ctx;
	struct evbuffer *in = bufferevent_get_input(bev);
	h->depth++;
	/* Bounded: each step consumes input or changes state. */
	while (evbuffer_get_length(in) > 0 && hc_step(h, in))
		;
	hc_leave(h);
}

static void hc_write_cb(struct bufferevent *bev, void *ctx)
{
	(void)bev;
	struct hc *h = ctx;
	if (h->closing && !h->free_pending && h->depth == 0)
		hc_free_now(h);
}

static void pool_drop_idle(struct hc *h);

static void hc_event_cb(struct bufferevent *bev, short what, void *ctx)
{
	(void)bev;
	struct hc *h = ctx;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return;
	}
	h->depth++;
	if (h->closing) {
		h->free_pending = true;
	} else if (h->st == HC_BODY_EOF && (what & BEV_EVENT_EOF)) {
		h->keepalive = false;
		hc_complete(h, true);
	} else if (h->st == HC_IDLE) {
		if (h->pool)
			pool_drop_idle(h);
		h->free_pending = true;
	} else if (h->st != HC_DEAD) {
		h->keepalive = false;
		hc_complete(h, false);
	}
	if (h->st != HC_IDLE || !h->pool)
		h->free_pending = true;
	hc_leave(h);
}

static struct hc *hc_new(const struct sockaddr_in *sa)
{
	struct hc *h = xmalloc(sizeof(*h));
	h->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!h->bev)
		die("bufferevent_socket_new failed");
	open_conns++;
	bufferevent_setcb(h->bev, hc_read_cb, hc_write_cb, hc_event_cb, h);
	bufferevent_enable(h->bev, EV_READ | EV_WRITE);
	h->st = HC_IDLE;
	if (bufferevent_socket_connect(h->bev, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		/* Typically EMFILE: reported as a failed request on the next turn. */
		note_kind(false, "connect: %s", strerror(errno));
		bufferevent_trigger_event(h->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
	}
	return h;
}

/* Sends a request; the response goes to ops/arg. */
static void hc_send(struct hc *h, const struct hc_ops *ops, void *arg, const char *req, size_t n)
{
	h->ops = ops;
	h->arg = arg;
	h->st = HC_HEAD;
	h->keepalive = false;
	bufferevent_write(h->bev, req, n);
}

/* Sends a close frame and frees the connection once it has left. */
static void ws_close(struct hc *h)
{
	if (h->st == HC_WS) {
		ws_send(h, 0x8, "\x03\xe8", 2);
		h->st = HC_DEAD;
		h->ops = NULL;
		h->closing = true;
		bufferevent_disable(h->bev, EV_READ);
		return;
	}
	hc_close(h);
}

/* ---- a pool of keep-alive connections for REST calls -------------------- */

struct preq {
	const struct hc_ops *ops;
	void *arg;
	char *req;
	size_t n;
	struct preq *next;
};

struct pool {
	struct sockaddr_in sa;
	struct hc *idle;
	long open, max;
	struct preq *qhead, *qtail;
};

static void pool_dispatch(struct pool *pl, struct hc *h, struct preq *r)
{
	h->pool = pl;
	hc_send(h, r->ops, r->arg, r->req, r->n);
	free(r->req);
	free(r);
}

static void pool_submit(struct pool *pl, const struct hc_ops *ops, void *arg, const char *req, size_t n)
{
	struct preq *r = xmalloc(sizeof(*r));
	r->ops = ops;
	r->arg = arg;
	r->req = xmalloc(n);
	memcpy(r->req, req, n);
	r->n = n;
	if (pl->idle) {
		struct hc *h = pl->idle;
		pl->idle = h->next;
		h->next = NULL;
		pool_dispatch(pl, h, r);
	} else if (pl->open < pl->max) {
		pl->open++;
		pool_dispatch(pl, hc_new(&pl->sa), r);
	} else {
		if (pl->qtail)
			pl->qtail->next = r;
		else
			pl->qhead = r;
		pl->qtail = r;
	}
}

static struct preq *pool_pop(struct pool *pl)
{
	struct preq *r = pl->qhead;
	if (r) {
		pl->qhead = r->next;
		if (!pl->qhead)
			pl->qtail = NULL;
		r->next = NULL;
	}
	return r;
}

static void pool_release(struct hc *h, bool reusable)
{
	struct pool *pl = h->pool;
	if (!reusable) {
		pl->open--;
		h->pool = NULL;
		hc_close(h);
		struct preq *r = pl->qhead ? pool_pop(pl) : NULL;
		if (r) {
			pl->open++;
			pool_dispatch(pl, hc_new(&pl->sa), r);
		}
		return;
	}
	struct preq *r = pool_pop(pl);
	if (r) {
		pool_dispatch(pl, h, r);
		return;
	}
	h->st = HC_IDLE;
	h->next = pl->idle;
	pl->idle = h;
}

static void pool_drop_idle(struct hc *h)
{
	struct pool *pl = h->pool;
	for (struct hc **pp = &pl->idle; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	pl->open--;
	h->pool = NULL;
	h->st = HC_DEAD;
}

static void pool_close_idle(struct pool *pl)
{
	while (pl->idle) {
		struct hc *h = pl->idle;
		pl->idle = h->next;
		pl->open--;
		h->pool = NULL;
		hc_close(h);
	}
}

/* ---- results ------------------------------------------------------------ */

struct lat {
	int64_t *v;
	size_t n, cap;
};

static void lat_add(struct lat *l, int64_t v)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			die("out of memory");
	}
	l->v[l->n++] = v;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(struct lat *l, double p)
{
	if (!l->n)
		return -1;
	qsort(l->v, l->n, sizeof(*l->v), cmp64);
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
	return (double)l->v[i] / 1000.0;
}

static struct {
	bool measuring;
	long started, finished, ok, bad, err, timeouts;
	long inflight, peak_inflight;
	struct lat ttfb, ttft, total;
	char errs[MAX_ERRS][200];
	int nerrs;
	int64_t t_start, t_end;
	long long sim_cpu0, sim_cpu1, sim_rss1;
	long long pieces_ok;
} R;

/* Keeps a few examples of each kind (failed, wrong reply) for the report. */
static void note_kind(bool wrong, const char *fmt, ...)
{
	static int nk[2];
	if (R.nerrs >= MAX_ERRS || nk[wrong] >= MAX_ERRS / 2)
		return;
	nk[wrong]++;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(R.errs[R.nerrs++], sizeof(R.errs[0]), fmt, ap);
	va_end(ap);
}

static void note_err(const char *fmt, ...)
{
	if (R.nerrs >= MAX_ERRS)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(R.errs[R.nerrs++], sizeof(R.errs[0]), fmt, ap);
	va_end(ap);
}

/* ---- /proc ------------------------------------------------------------- */

static long long proc_ticks(int pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut = 0, st = 0;
	/* Fields 3.. after the command; utime and stime are 14 and 15. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static long long proc_sched_ns(int pid)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	long long sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p2[320];
		snprintf(p2, sizeof(p2), "/proc/%d/task/%s/schedstat", pid, e->d_name);
		FILE *f = fopen(p2, "r");
		if (!f)
			continue;
		long long ns = 0;
		if (fscanf(f, "%lld", &ns) == 1)
			sum += ns;
		fclose(f);
	}
	closedir(d);
	return sum;
}

static long long proc_status_kb(int pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static long proc_fds(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

enum pstat { PS_TICKS, PS_SCHED, PS_RSS, PS_HWM, PS_FDS };

static long long proc_get(int pid, enum pstat k)
{
	switch (k) {
	case PS_TICKS:
		return proc_ticks(pid);
	case PS_SCHED:
		return proc_sched_ns(pid);
	case PS_RSS:
		return proc_status_kb(pid, "VmRSS");
	case PS_HWM:
		return proc_status_kb(pid, "VmHWM");
	case PS_FDS:
		return proc_fds(pid);
	}
	return -1;
}

/* The sum over w's processes; -1 when one of them cannot be read. The peak
 * of a group (PS_HWM) is the sum of each one's peak: an upper bound. */
static long long group_get(const struct watched *w, enum pstat k)
{
	long long sum = 0;
	for (int i = 0; i < w->npid; i++) {
		long long v = proc_get(w->pid[i], k);
		if (v < 0)
			return -1;
		sum += v;
	}
	return sum;
}

static struct event *sample_ev;

static void sample_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	for (int i = 0; i < opt.nw; i++) {
		struct watched *w = &opt.w[i];
		long long kb = group_get(w, PS_RSS);
		if (kb >= 0 && w->nrss < MAX_SAMPLES)
			w->rss[w->nrss++] = kb;
		long fds = (long)group_get(w, PS_FDS);
		if (fds > w->fds_max)
			w->fds_max = fds;
	}
}

/* ---- the simulator's own CPU (GET /__sim/stats) ------------------------- */

struct simq {
	struct sbuf body;
	long long *cpu;
	void (*then)(void);
};

static void simq_data(void *arg, struct hc *h, const char *p, size_t n)
{
	(void)h;
	struct simq *q = arg;
	if (q->body.len + n < MAX_BODY)
		sb_add(&q->body, p, n);
}

static long long json_num_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void simq_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct simq *q = arg;
	*q->cpu = -1;
	if (ok && q->body.p) {
		const char *c = strstr(q->body.p, "\"cpu\":{");
		if (c) {
			long long u = json_num_after(c, "\"user\":"), s = json_num_after(c, "\"system\":");
			if (u >= 0 && s >= 0)
				*q->cpu = u + s;
		}
		long long rss = json_num_after(q->body.p, "\"rssBytes\":");
		if (rss >= 0)
			R.sim_rss1 = rss;
	}
	void (*then)(void) = q->then;
	sb_free(&q->body);
	free(q);
	if (then)
		then();
}

static const struct hc_ops simq_ops = { NULL, simq_data, simq_done, NULL };
static struct pool sim_pool;

static void sim_cpu(long long *out, void (*then)(void))
{
	if (!opt.sim_port) {
		*out = -1;
		then();
		return;
	}
	struct simq *q = xmalloc(sizeof(*q));
	q->cpu = out;
	q->then = then;
	char req[256];
	int n = snprintf(req, sizeof(req), "GET /__sim/stats?chats=0 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
			 opt.sim_port);
	pool_submit(&sim_pool, &simq_ops, q, req, (size_t)n);
}

/* ---- one request --------------------------------------------------------- */

struct user;

struct req {
	struct user *u;
	long seq;
	int64_t t0, t_ttfb, t_ttft;
	int status, ws_status;
	bool saw_done, saw_finish, saw_error, failed;
	bool accepted, ws_open, in_progress, ended;
	int refs; /* REST calls in flight that will call back with this request */
	struct sbuf text, line, body, scratch;
	char chat_id[64], workspace[64];
	struct hc *ws;
	struct event *timer;
};

struct user {
	long idx;
	struct hc *h; /* gw mode: the user's keep-alive connection */
	struct req *cur;
	struct event *start_ev;
};

static struct pool up_pool;
static struct {
	char sid[64], user[64], org[64];
	struct sbuf jwt;
} clerk;
static struct sbuf expected;
static long users_alive;
static struct user **users;
static long nusers;
static long phase_total, phase_started;

static void phase_user_done(struct user *u);
static void user_next(struct user *u);

static void expected_text(void)
{
	sb_reset(&expected);
	for (long i = 1; i <= opt.pieces; i++)
		sb_printf(&expected, i < opt.pieces ? "w%ld " : "w%ld", i);
}

static void prompt_text(struct sbuf *out, long seq)
{
	sb_printf(out, "bench request %ld [pieces=%ld]", seq, opt.pieces);
	if (opt.slow > 0)
		sb_printf(out, "[slow=%ld]", opt.slow);
}

static void req_free(struct req *r)
{
	if (r->timer)
		event_free(r->timer);
	sb_free(&r->text);
	sb_free(&r->line);
	sb_free(&r->body);
	sb_free(&r->scratch);
	free(r);
}

/* Ends the request exactly once: records, frees, and starts the next. */
static void req_end(struct req *r, bool ok, const char *why)
{
	if (r->ended)
		return;
	r->ended = true;
	struct user *u = r->u;
	int64_t t = now_us();
	R.inflight--;
	R.finished++;
	if (R.measuring) {
		if (!ok) {
			R.err++;
			note_kind(false, "req %ld: %s", r->seq, why);
		} else if (r->text.len != expected.len || memcmp(r->text.p ? r->text.p : "", expected.p, expected.len)) {
			R.bad++;
			note_kind(true, "req %ld: reply differs (%zu bytes, want %zu): %.60s", r->seq, r->text.len, expected.len,
				 r->text.p ? r->text.p : "");
		} else {
			R.ok++;
			R.pieces_ok += opt.pieces;
			lat_add(&R.total, t - r->t0);
			if (r->t_ttfb)
				lat_add(&R.ttfb, r->t_ttfb - r->t0);
			if (r->t_ttft)
				lat_add(&R.ttft, r->t_ttft - r->t0);
		}
	} else if (!ok || r->text.len != expected.len) {
		note_err("warm-up req %ld: %s", r->seq, ok ? "reply differs" : why);
	}
	if (r->ws) {
		r->ws->ops = NULL;
		ws_close(r->ws);
		r->ws = NULL;
	}
	if (!ok && u->h) {
		hc_close(u->h);
		u->h = NULL;
	}
	u->cur = NULL;
	event_del(r->timer);
	if (!r->refs)
		req_free(r);
	user_next(u);
}

static void req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct req *r = arg;
	if (R.measuring)
		R.timeouts++;
	if (r->u->h) {
		hc_close(r->u->h);
		r->u->h = NULL;
	}
	req_end(r, false, "timeout");
}

/* ---- gw mode: OpenAI chat completions ------------------------------------ */

static void gw_sse_line(struct req *r, const char *p, size_t n)
{
	if (n < 6 || memcmp(p, "data: ", 6))
		return;
	p += 6;
	n -= 6;
	if (n == 6 && !memcmp(p, "[DONE]", 6)) {
		r->saw_done = true;
		return;
	}
	if (memmem_s(p, n, "\"error\":{")) {
		r->saw_error = true;
		if (r->scratch.len == 0)
			sb_add(&r->scratch, p, n < 150 ? n : 150);
		return;
	}
	if (memmem_s(p, n, "\"finish_reason\":\""))
		r->saw_finish = true;
	size_t before = r->text.len;
	if (json_get(p, n, "content", &r->text) && r->text.len > before && !r->t_ttft)
		r->t_ttft = now_us();
}

static void gw_head(void *arg, struct hc *h, int status, const char *hdrs, size_t n)
{
	(void)h;
	(void)hdrs;
	(void)n;
	struct req *r = arg;
	r->status = status;
}

static void gw_data(void *arg, struct hc *h, const char *p, size_t n)
{
	(void)h;
	struct req *r = arg;
	if (!opt.stream || r->status != 200) {
		if (r->body.len + n < MAX_BODY)
			sb_add(&r->body, p, n);
		return;
	}
	/* SSE: complete lines only. */
	const char *end = p + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl) {
			sb_add(&r->line, p, (size_t)(end - p));
			break;
		}
		if (r->line.len) {
			sb_add(&r->line, p, (size_t)(nl - p));
			gw_sse_line(r, r->line.p, r->line.len);
			sb_reset(&r->line);
		} else {
			gw_sse_line(r, p, (size_t)(nl - p));
		}
		p = nl + 1;
	}
}

static void gw_done(void *arg, struct hc *h, bool ok)
{
	struct req *r = arg;
	struct user *u = r->u;
	if (!ok) {
		if (u->h == h)
			u->h = NULL; /* hc_complete closes it */
		req_end(r, false, "connection failed or closed early");
		return;
	}
	if ((!h->keepalive || opt.fresh) && u->h == h) {
		/* --fresh 1: a new connection per request, as curl does. */
		if (h->keepalive)
			hc_close(h);
		u->h = NULL;
	}
	if (r->status != 200) {
		char why[200];
		snprintf(why, sizeof(why), "HTTP %d %.120s", r->status, r->body.p ? r->body.p : "");
		req_end(r, false, why);
		return;
	}
	if (!opt.stream) {
		const char *m = r->body.p ? memmem_s(r->body.p, r->body.len, "\"message\":") : NULL;
		if (!m || !json_get(m, r->body.len - (size_t)(m - r->body.p), "content", &r->text)) {
			req_end(r, false, "no message.content in the reply");
			return;
		}
		r->t_ttft = now_us();
		req_end(r, true, NULL);
		return;
	}
	if (r->saw_error) {
		char why[200];
		snprintf(why, sizeof(why), "error event: %s", r->scratch.p);
		req_end(r, false, why);
	} else if (!r->saw_done || !r->saw_finish) {
		req_end(r, false, "stream ended without finish_reason and [DONE]");
	} else {
		req_end(r, true, NULL);
	}
}

static void gw_first_byte(struct bufferevent *bev, void *ctx);

static const struct hc_ops gw_ops = { gw_head, gw_data, gw_done, NULL };

static void gw_start(struct req *r)
{
	struct user *u = r->u;
	if (!u->h)
		u->h = hc_new(&target_addr);
	struct sbuf prompt = { 0 }, body = { 0 }, req = { 0 };
	prompt_text(&prompt, r->seq);
	sb_printf(&body, "{\"model\":\"%s\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
		  opt.model, opt.stream ? "true" : "false", prompt.p);
	sb_printf(&req, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		  "Content-Type: application/json\r\nAccept: %s\r\n", opt.port,
		  opt.stream ? "text/event-stream" : "application/json");
	if (*opt.key)
		sb_printf(&req, "Authorization: Bearer %s\r\n", opt.key);
	sb_printf(&req, "Content-Length: %zu\r\n\r\n", body.len);
	sb_add(&req, body.p, body.len);
	hc_send(u->h, &gw_ops, r, req.p, req.len);
	bufferevent_setcb(u->h->bev, gw_first_byte, hc_write_cb, hc_event_cb, u->h);
	sb_free(&prompt);
	sb_free(&body);
	sb_free(&req);
}

/* Takes the time of the first response byte, then hands over to the parser. */
static void gw_first_byte(struct bufferevent *bev, void *ctx)
{
	struct hc *h = ctx;
	struct req *r = h->arg;
	if (r && h->ops == &gw_ops && !r->t_ttfb)
		r->t_ttfb = now_us();
	bufferevent_setcb(bev, hc_read_cb, hc_write_cb, hc_event_cb, h);
	hc_read_cb(bev, ctx);
}

/* ---- up mode: the upstream protocol (through nginx) ---------------------- */

static void up_rest(struct req *r, const struct hc_ops *ops, const char *method, const char *path, const char *body)
{
	struct sbuf q = { 0 };
	sb_printf(&q, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: https://cto.new\r\n"
		  "Authorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json\r\n",
		  method, path, opt.port, clerk.jwt.p);
	sb_printf(&q, "Content-Length: %zu\r\n\r\n", strlen(body));
	sb_add(&q, body, strlen(body));
	r->status = 0;
	sb_reset(&r->body);
	r->refs++;
	pool_submit(&up_pool, ops, r, q.p, q.len);
	sb_free(&q);
}

static void up_body(void *arg, struct hc *h, const char *p, size_t n)
{
	(void)h;
	struct req *r = arg;
	if (r->body.len + n < MAX_BODY)
		sb_add(&r->body, p, n);
}

static void up_head(void *arg, struct hc *h, int status, const char *hdrs, size_t n)
{
	(void)h;
	(void)hdrs;
	(void)n;
	struct req *r = arg;
	r->status = status;
	sb_reset(&r->body);
}

static void up_ws_open(struct req *r);
static void up_offers(struct req *r);
static void up_chat(struct req *r);

/* The end of one REST call of r: drops the call's reference, and says
 * whether r goes on (still live, and the status was the wanted one). */
static bool up_rest_ok(struct req *r, bool ok, int want, const char *what)
{
	if (--r->refs == 0 && r->ended) {
		req_free(r);
		return false;
	}
	if (r->ended)
		return false;
	if (ok && r->status == want)
		return true;
	char why[200];
	snprintf(why, sizeof(why), "%s: %s HTTP %d %.100s", what, ok ? "" : "connection failed,", r->status,
		 r->body.p ? r->body.p : "");
	req_end(r, false, why);
	return false;
}

static void up_project_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct req *r = arg;
	if (!up_rest_ok(r, ok, 201, "create-hosted"))
		return;
	struct sbuf v = { 0 };
	if (!json_get(r->body.p, r->body.len, "projectId", &v) || v.len >= sizeof(r->chat_id)) {
		sb_free(&v);
		req_end(r, false, "no projectId");
		return;
	}
	memcpy(r->chat_id, v.p, v.len + 1);
	sb_reset(&v);
	if (!json_get(r->body.p, r->body.len, "workspaceId", &v) || v.len >= sizeof(r->workspace)) {
		sb_free(&v);
		req_end(r, false, "no workspaceId");
		return;
	}
	memcpy(r->workspace, v.p, v.len + 1);
	sb_free(&v);
	up_ws_open(r);
}

static const struct hc_ops up_project_ops = { up_head, up_body, up_project_done, NULL };

static void up_frame_update(struct req *r, const char *p, size_t n)
{
	/* The buffer is JSON text inside a JSON string: decode it, then take
	 * the content of every inner {"type":"chat"} line. */
	sb_reset(&r->scratch);
	if (!json_get(p, n, "buffer", &r->scratch))
		return;
	const char *s = r->scratch.p, *end = s + r->scratch.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			nl = end;
		if (memmem_s(s, (size_t)(nl - s), "\"type\":\"chat\"")) {
			const char *c = memmem_s(s, (size_t)(nl - s), "\"chat\":{");
			size_t before = r->text.len;
			if (c && json_get(c, (size_t)(nl - c), "content", &r->text) && r->text.len > before &&
			    !r->t_ttft)
				r->t_ttft = now_us();
		}
		s = nl + 1;
	}
}

static void up_maybe_end(struct req *r)
{
	if (r->accepted && r->in_progress == false && r->saw_finish)
		req_end(r, true, NULL);
}

static void up_ws_msg(void *arg, struct hc *h, int op, const char *p, size_t n)
{
	(void)h;
	struct req *r = arg;
	if (op == 0x8) {
		req_end(r, false, "the WebSocket closed before the reply ended");
		return;
	}
	if (n > 16 && !memcmp(p, "{\"type\":\"update\"", 16)) {
		if (r->in_progress)
			up_frame_update(r, p, n);
	} else if (n > 15 && !memcmp(p, "{\"type\":\"state\"", 15)) {
		if (memmem_s(p, n, "\"inProgress\":true")) {
			r->in_progress = true;
		} else if (r->in_progress && memmem_s(p, n, "\"inProgress\":false")) {
			r->in_progress = false;
			r->saw_finish = true;
			up_maybe_end(r);
		}
	}
}

static void up_ws_head(void *arg, struct hc *h, int status, const char *hdrs, size_t n)
{
	(void)h;
	(void)hdrs;
	(void)n;
	struct req *r = arg;
	r->ws_status = status;
	if (status != 101)
		return;
	r->ws_open = true;
	if (opt.flow == 2026)
		up_offers(r);
	else
		up_chat(r);
}

static void up_ws_done(void *arg, struct hc *h, bool ok)
{
	struct req *r = arg;
	(void)ok;
	if (r->ws == h)
		r->ws = NULL;
	char why[100];
	if (r->ws_status == 101)
		snprintf(why, sizeof(why), "the WebSocket closed before the reply ended");
	else if (r->ws_status)
		snprintf(why, sizeof(why), "WebSocket upgrade refused (HTTP %d)", r->ws_status);
	else
		snprintf(why, sizeof(why), "WebSocket connection failed before the upgrade answer");
	req_end(r, false, why);
}

static const struct hc_ops up_ws_ops = { up_ws_head, up_body, up_ws_done, up_ws_msg };

static void up_ws_open(struct req *r)
{
	struct sbuf q = { 0 };
	unsigned char key[16];
	for (int i = 0; i < 16; i++)
		key[i] = (unsigned char)rng();
	struct sbuf k = { 0 };
	b64(&k, key, 16);
	sb_printf(&q, "GET /engine-agent/chat-histories/%s/buffer/stream?token=%s", r->chat_id, clerk.user);
	if (opt.flow == 2026)
		sb_printf(&q, "%%3A%s&workspaceId=%s", clerk.org, r->workspace);
	sb_printf(&q, " HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nOrigin: https://cto.new\r\n"
		  "Cookie: __client=%s\r\n\r\n", opt.port, k.p, opt.cookie);
	r->ws = hc_new(&target_addr);
	hc_send(r->ws, &up_ws_ops, r, q.p, q.len);
	sb_free(&q);
	sb_free(&k);
}

static void up_offers_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct req *r = arg;
	if (up_rest_ok(r, ok, 200, "offers"))
		up_chat(r);
}

static const struct hc_ops up_offers_ops = { up_head, up_body, up_offers_done, NULL };

static void up_offers(struct req *r)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"chatHistoryId\":\"%s\",\"surface\":\"ENGINE_AGENT\"}", r->chat_id);
	up_rest(r, &up_offers_ops, "POST", "/engine-agent/offers", body);
}

static void up_chat_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct req *r = arg;
	if (!up_rest_ok(r, ok, 202, "chat"))
		return;
	r->accepted = true;
	r->t_ttfb = now_us();
	up_maybe_end(r);
}

static const struct hc_ops up_chat_ops = { up_head, up_body, up_chat_done, NULL };

static void up_chat(struct req *r)
{
	struct sbuf prompt = { 0 }, body = { 0 };
	prompt_text(&prompt, r->seq);
	if (opt.flow == 2026) {
		sb_add(&body, "{\"prompt\":\"", 11);
		b64(&body, (const unsigned char *)prompt.p, prompt.len);
		sb_printf(&body, "\",\"encoded\":true,\"chatHistoryId\":\"%s\"}", r->chat_id);
	} else {
		sb_printf(&body, "{\"prompt\":\"%s\",\"adapterName\":\"%s\",\"chatHistoryId\":\"%s\"}", prompt.p,
			  opt.agent, r->chat_id);
	}
	up_rest(r, &up_chat_ops, "POST", "/engine-agent/chat", body.p);
	sb_free(&prompt);
	sb_free(&body);
}

static void uuid4(char out[37])
{
	unsigned char b[16];
	for (int i = 0; i < 16; i++)
		b[i] = (unsigned char)rng();
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void up_start(struct req *r)
{
	if (opt.flow == 2026) {
		char body[128];
		snprintf(body, sizeof(body), "{\"projectName\":\"bench %ld\"}", r->seq);
		up_rest(r, &up_project_ops, "POST", "/projects/create-hosted", body);
	} else {
		uuid4(r->chat_id);
		up_ws_open(r);
	}
}

/* ---- users and phases ------------------------------------------------------ */

static void (*phase_then)(void);

static void user_next(struct user *u)
{
	if (phase_started >= phase_total) {
		phase_user_done(u);
		return;
	}
	struct req *r = xmalloc(sizeof(*r));
	r->u = u;
	r->seq = ++R.started;
	phase_started++;
	r->t0 = now_us();
	r->timer = evtimer_new(base, req_timeout_cb, r);
	struct timeval tv = { opt.req_timeout_s, 0 };
	evtimer_add(r->timer, &tv);
	u->cur = r;
	R.inflight++;
	if (R.inflight > R.peak_inflight)
		R.peak_inflight = R.inflight;
	if (opt.up)
		up_start(r);
	else
		gw_start(r);
}

static void user_start_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	user_next(arg);
}

static void phase_user_done(struct user *u)
{
	if (u->h) {
		hc_close(u->h);
		u->h = NULL;
	}
	if (u->start_ev)
		event_free(u->start_ev);
	u->start_ev = NULL;
	free(u);
	if (--users_alive == 0) {
		free(users);
		users = NULL;
		void (*then)(void) = phase_then;
		phase_then = NULL;
		if (then)
			then();
	}
}

/* Runs `total` requests over `conc` users (started over ramp_ms), then `then`. */
static void phase_run(long conc, long total, void (*then)(void))
{
	if (conc > total)
		conc = total;
	phase_then = then;
	phase_total = total;
	phase_started = 0;
	if (conc <= 0) {
		then();
		return;
	}
	nusers = conc;
	users_alive = conc;
	users = xmalloc((size_t)conc * sizeof(*users));
	for (long i = 0; i < conc; i++) {
		struct user *u = xmalloc(sizeof(*u));
		u->idx = i;
		users[i] = u;
		long us = conc > 1 ? opt.ramp_ms * 1000 * i / conc : 0;
		struct timeval tv = { us / 1000000, us % 1000000 };
		u->start_ev = evtimer_new(base, user_start_cb, u);
		evtimer_add(u->start_ev, &tv);
	}
}

/* ---- Clerk bootstrap (up mode) --------------------------------------------- */

struct boot {
	int status;
	struct sbuf body;
	void (*then)(void);
};

static void boot_head(void *arg, struct hc *h, int status, const char *hdrs, size_t n)
{
	(void)h;
	(void)hdrs;
	(void)n;
	((struct boot *)arg)->status = status;
}

static void boot_data(void *arg, struct hc *h, const char *p, size_t n)
{
	(void)h;
	struct boot *b = arg;
	if (b->body.len + n < MAX_BODY)
		sb_add(&b->body, p, n);
}

static void boot_copy(const struct boot *b, const char *key, char *out, size_t cap)
{
	struct sbuf v = { 0 };
	if (!json_get(b->body.p, b->body.len, key, &v) || v.len >= cap)
		die("Clerk answer without %s (HTTP %d)", key, b->status);
	memcpy(out, v.p, v.len + 1);
	sb_free(&v);
}

static void boot_token_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct boot *b = arg;
	if (!ok || b->status != 200 || !json_get(b->body.p, b->body.len, "jwt", &clerk.jwt))
		die("Clerk token request failed (HTTP %d)", b->status);
	void (*then)(void) = b->then;
	sb_free(&b->body);
	free(b);
	then();
}

static const struct hc_ops boot_token_ops = { boot_head, boot_data, boot_token_done, NULL };

static void boot_client_done(void *arg, struct hc *h, bool ok)
{
	(void)h;
	struct boot *b = arg;
	if (!ok || b->status != 200)
		die("Clerk GET /v1/client failed (HTTP %d)", b->status);
	boot_copy(b, "last_active_session_id", clerk.sid, sizeof(clerk.sid));
	boot_copy(b, "last_active_organization_id", clerk.org, sizeof(clerk.org));
	const char *u = memmem_s(b->body.p, b->body.len, "\"user\":{");
	struct sbuf v = { 0 };
	if (!u || !json_get(u, b->body.len - (size_t)(u - b->body.p), "id", &v) || v.len >= sizeof(clerk.user))
		die("Clerk answer without user id");
	memcpy(clerk.user, v.p, v.len + 1);
	sb_free(&v);
	sb_reset(&b->body);
	b->status = 0;
	char form[128], q[1024];
	snprintf(form, sizeof(form), "organization_id=%s", clerk.org);
	int n = snprintf(q, sizeof(q),
			 "POST /v1/client/sessions/%s/tokens?__clerk_api_version=2025-11-10&_clerk_js_version=6.7.3 "
			 "HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: https://cto.new\r\nCookie: __client=%s\r\n"
			 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
			 clerk.sid, opt.port, opt.cookie, strlen(form), form);
	pool_submit(&up_pool, &boot_token_ops, b, q, (size_t)n);
}

static const struct hc_ops boot_client_ops = { boot_head, boot_data, boot_client_done, NULL };

static void clerk_boot(void (*then)(void))
{
	struct boot *b = xmalloc(sizeof(*b));
	b->then = then;
	char q[1024];
	int n = snprintf(q, sizeof(q),
			 "GET /v1/client?__clerk_api_version=2025-11-10&_clerk_js_version=6.7.3 HTTP/1.1\r\n"
			 "Host: 127.0.0.1:%d\r\nOrigin: https://cto.new\r\nCookie: __client=%s\r\n\r\n",
			 opt.port, opt.cookie);
	pool_submit(&up_pool, &boot_client_ops, b, q, (size_t)n);
}

/* ---- the run ---------------------------------------------------------------- */

static void json_pct(FILE *f, const char *name, struct lat *l)
{
	fprintf(f, ",\"%s_p50_ms\":%.3f,\"%s_p99_ms\":%.3f", name, pct_ms(l, 0.50), name, pct_ms(l, 0.99));
}

static void report(void)
{
	double wall = (double)(R.t_end - R.t_start) / 1e6;
	long tck = sysconf(_SC_CLK_TCK);
	FILE *f = stdout;
	fprintf(f, "{\"label\":\"%s\",\"mode\":\"%s\",\"flow\":%d,\"conc\":%ld,\"n\":%ld,\"pieces\":%ld,\"slow\":%ld,"
		"\"stream\":%s,\"ok\":%ld,\"bad\":%ld,\"err\":%ld,\"timeouts\":%ld,\"wall_s\":%.3f,\"rps\":%.1f,"
		"\"peak_inflight\":%ld,\"fresh\":%s,\"idle_after_s\":%ld,\"note\":\"%s\"",
		opt.label, opt.up ? "up" : "gw", opt.flow, opt.conc, opt.total, opt.pieces, opt.slow,
		opt.stream ? "true" : "false", R.ok, R.bad, R.err, R.timeouts, wall,
		wall > 0 ? (double)R.ok / wall : 0.0, R.peak_inflight, opt.fresh ? "true" : "false", opt.idle_s, opt.note);
	json_pct(f, "ttfb", &R.ttfb);
	json_pct(f, "ttft", &R.ttft);
	json_pct(f, "total", &R.total);
	fprintf(f, ",\"sim_cpu_us\":%lld,\"sim_rss_kb\":%lld",
		R.sim_cpu0 >= 0 && R.sim_cpu1 >= 0 ? R.sim_cpu1 - R.sim_cpu0 : -1, R.sim_rss1 / 1024);
	fprintf(f, ",\"procs\":{");
	for (int i = 0; i < opt.nw; i++) {
		struct watched *w = &opt.w[i];
		long long med = -1, mx = -1;
		if (w->nrss) {
			qsort(w->rss, w->nrss, sizeof(*w->rss), cmp64);
			med = w->rss[w->nrss / 2];
			mx = w->rss[w->nrss - 1];
		}
		fprintf(f, "%s\"%s\":{\"pid\":%d,\"cpu_us\":%lld,\"ticks\":%lld,\"sched_us\":%lld,"
			"\"hwm_kb\":%lld,\"rss_end_kb\":%lld,\"rss_steady_kb\":%lld,\"rss_max_kb\":%lld,\"samples\":%zu,"
			"\"fds_max\":%ld,\"rss_idle_kb\":%lld}",
			i ? "," : "", w->name, w->pid[0], (w->ticks1 - w->ticks0) * 1000000 / tck, w->ticks1 - w->ticks0,
			(w->sched1 - w->sched0) / 1000, w->hwm_kb, w->rss_end_kb, med, mx, w->nrss, w->fds_max,
			w->rss_idle_kb);
	}
	fprintf(f, "},\"errors\":[");
	for (int i = 0; i < R.nerrs; i++) {
		fputc(i ? ',' : '"', f);
		if (i)
			fputc('"', f);
		for (const char *p = R.errs[i]; *p; p++)
			if (*p == '"' || *p == '\\')
				fprintf(f, "\\%c", *p);
			else if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
				fputc(*p, f);
		fputc('"', f);
	}
	fprintf(f, "]}\n");
	fflush(f);
}

static struct event *deadline_ev;

/* The watched processes' figures at the end of the measured phase. */
static void read_end(void)
{
	for (int i = 0; i < opt.nw; i++) {
		struct watched *w = &opt.w[i];
		w->ticks1 = group_get(w, PS_TICKS);
		w->sched1 = group_get(w, PS_SCHED);
		w->hwm_kb = group_get(w, PS_HWM);
		w->rss_end_kb = group_get(w, PS_RSS);
	}
}

static void finish_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	for (int i = 0; i < opt.nw; i++)
		opt.w[i].rss_idle_kb = opt.idle_s ? group_get(&opt.w[i], PS_RSS) : -1;
	report();
	event_base_loopbreak(base);
}

/* Every connection is closed by now; with --idle-after S the watched
 * processes get S quiet seconds before their memory is read once more. */
static void finish_after_sim(void)
{
	pool_close_idle(&sim_pool);
	pool_close_idle(&up_pool);
	event_del(deadline_ev); /* the run is over; the idle wait is not part of it */
	struct timeval tv = { opt.idle_s, 0 };
	if (event_base_once(base, -1, EV_TIMEOUT, finish_now, NULL, &tv) != 0)
		die("cannot arm a timer");
}

static void measured_done(void)
{
	R.t_end = now_us();
	R.measuring = false;
	if (sample_ev)
		event_del(sample_ev);
	read_end();
	sim_cpu(&R.sim_cpu1, finish_after_sim);
}

static void measured_start(void)
{
	for (int i = 0; i < opt.nw; i++) {
		opt.w[i].ticks0 = group_get(&opt.w[i], PS_TICKS);
		opt.w[i].sched0 = group_get(&opt.w[i], PS_SCHED);
		if (opt.w[i].ticks0 < 0)
			die("cannot read /proc/PID/stat of %s", opt.w[i].name);
	}
	R.measuring = true;
	R.t_start = now_us();
	struct timeval tv = { 0, 100000 };
	sample_ev = event_new(base, -1, EV_PERSIST, sample_cb, NULL);
	evtimer_add(sample_ev, &tv);
	sample_cb(-1, 0, NULL);
	phase_run(opt.conc, opt.total, measured_done);
}

static void after_sim_cpu0(void)
{
	measured_start();
}

static void warmup_done(void)
{
	sim_cpu(&R.sim_cpu0, after_sim_cpu0);
}

static void begin(void)
{
	long wc = opt.warmup < opt.conc ? opt.warmup : opt.conc;
	phase_run(wc > 50 ? 50 : wc, opt.warmup, warmup_done);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	note_err("deadline of %ld s reached with %ld requests in flight", opt.deadline_s, R.inflight);
	R.timeouts += R.inflight;
	R.err += R.inflight;
	R.t_end = now_us();
	R.measuring = false;
	read_end();
	R.sim_cpu1 = -1;
	report();
	exit(3);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: load --port P [--mode gw|up] [--key K] [--stream 0|1] [-c CONC] [-n TOTAL] [--warmup W]\n"
		"  [--pieces N] [--slow MS] [--ramp-ms MS] [--flow 2026|2025] [--cookie C] [--sim-port P]\n"
		"  [--pid NAME:PID[,PID...] ...] [--idle-after S] [--req-timeout S] [--deadline S] [--pool N]\n"
		"  [--label TEXT]\n");
	exit(2);
}

static long num(const char *v, long lo, long hi, const char *what)
{
	char *e;
	long x = strtol(v, &e, 10);
	if (*e || x < lo || x > hi)
		die("%s must be %ld..%ld", what, lo, hi);
	return x;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--mode"))
			opt.up = !strcmp(v, "up");
		else if (!strcmp(a, "--port"))
			opt.port = (int)num(v, 1, 65535, a);
		else if (!strcmp(a, "--sim-port"))
			opt.sim_port = (int)num(v, 1, 65535, a);
		else if (!strcmp(a, "--key"))
			opt.key = v;
		else if (!strcmp(a, "--cookie"))
			opt.cookie = v;
		else if (!strcmp(a, "--note"))
			opt.note = v;
		else if (!strcmp(a, "--label"))
			opt.label = v;
		else if (!strcmp(a, "--stream"))
			opt.stream = num(v, 0, 1, a);
		else if (!strcmp(a, "-c"))
			opt.conc = num(v, 1, 1000000, a);
		else if (!strcmp(a, "-n"))
			opt.total = num(v, 1, 100000000, a);
		else if (!strcmp(a, "--warmup"))
			opt.warmup = num(v, 0, 1000000, a);
		else if (!strcmp(a, "--pieces"))
			opt.pieces = num(v, 1, 1000000, a);
		else if (!strcmp(a, "--slow"))
			opt.slow = num(v, 0, 100000, a);
		else if (!strcmp(a, "--ramp-ms"))
			opt.ramp_ms = num(v, 0, 600000, a);
		else if (!strcmp(a, "--flow"))
			opt.flow = (int)num(v, 2025, 2026, a);
		else if (!strcmp(a, "--req-timeout"))
			opt.req_timeout_s = num(v, 1, 3600, a);
		else if (!strcmp(a, "--idle-after"))
			opt.idle_s = num(v, 0, 600, a);
		else if (!strcmp(a, "--deadline"))
			opt.deadline_s = num(v, 1, 36000, a);
		else if (!strcmp(a, "--fresh"))
			opt.fresh = num(v, 0, 1, a);
		else if (!strcmp(a, "--pool"))
			opt.pool_max = num(v, 1, 100000, a);
		else if (!strcmp(a, "--pid")) {
			const char *c = strchr(v, ':');
			if (!c || opt.nw >= MAX_PIDS || (size_t)(c - v) >= sizeof(opt.w[0].name))
				usage();
			struct watched *w = &opt.w[opt.nw++];
			memcpy(w->name, v, (size_t)(c - v));
			char list[128];
			if (strlen(c + 1) >= sizeof(list))
				usage();
			strcpy(list, c + 1);
			for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
				if (w->npid >= MAX_GROUP)
					usage();
				w->pid[w->npid++] = (int)num(tok, 1, 1 << 30, "pid");
			}
			if (!w->npid)
				usage();
			w->rss = xmalloc(MAX_SAMPLES * sizeof(*w->rss));
			w->rss_idle_kb = -1;
		} else
			usage();
	}
	if (!opt.port)
		usage();
}

static void addr_of(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	rng_state ^= (uint64_t)now_us() * 2654435761u ^ (uint64_t)getpid();
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("setrlimit");
	}
	base = event_base_new();
	if (!base)
		die("event_base_new failed");
	addr_of(&target_addr, opt.port);
	addr_of(&sim_addr, opt.sim_port ? opt.sim_port : opt.port);
	up_pool.sa = target_addr;
	up_pool.max = opt.pool_max;
	sim_pool.sa = sim_addr;
	sim_pool.max = 1;
	expected_text();
	deadline_ev = evtimer_new(base, deadline_cb, NULL);
	if (!deadline_ev)
		die("cannot create the deadline timer");
	struct timeval tv = { opt.deadline_s, 0 };
	evtimer_add(deadline_ev, &tv);
	if (opt.up)
		clerk_boot(begin);
	else
		begin();
	event_base_dispatch(base);
	return R.err || R.bad ? 1 : 0;
}
