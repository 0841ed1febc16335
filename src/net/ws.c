/* ws.c - WebSocket client: wslay framing over a curl CONNECT_ONLY
 * connection.
 *
 * Life of a ws: curl connects (TCP, proxy tunnel, TLS) as an easy handle on
 * the httpc's multi; the handle stays in the multi for the connection's
 * life because removing it closes the socket. When curl reports the
 * connect done we send the Upgrade request. The first bytes go through
 * curl_easy_send, because that call re-attaches the connection to our easy
 * handle: only then does CURLINFO_TLS_SSL_PTR return the SSL object, and an
 * attached connection is "in use", so curl never prunes it as idle. From
 * then on all I/O is direct (recv/send on the fd, or SSL_read/SSL_write on
 * curl's SSL object), because curl 7.88's curl_easy_recv/send find the
 * connection with a linear scan of the multi's connection cache.
 *
 * Callbacks may call ws_free/ws_close on their own ws: every entry from the
 * loop bumps `depth`, and ws_free at depth > 0 only marks the ws; the
 * outermost handler destroys it on the way out. No user callback ever runs
 * from inside a ws_* API call.
 *
 * on_close codes: clean close -> the peer's code; GW_EIO -> 1006;
 * GW_ELIMIT -> 1009; GW_EPROTO after the upgrade -> 1002; before the
 * upgrade -> 0. http_status is 101 once upgraded, else the refusal's status
 * (or 0 if none arrived). */
#include "net/ws.h"
#include "net/httpc_internal.h"
#include "net/ws_internal.h"
#include "util/buf.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#define WS_CONNECT_TIMEOUT_MS 10000L
#define WS_MAX_MSG_BYTES ((size_t)4 << 20)
#define WS_READ_CHUNK 4096
/* Bytes read per connection per loop turn before yielding to others. */
#define WS_PASS_BUDGET (256 * 1024)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ws_state { WS_CONNECTING, WS_HS_SEND, WS_HS_RECV, WS_OPEN, WS_DONE };
enum ws_io { WS_IO_FD, WS_IO_SSL, WS_IO_CURL };

#define IO_ERR (-1)
#define IO_AGAIN (-2)

struct ws_pending {
	struct ws_pending *next;
	size_t n;
	char p[];
};

struct ws {
	struct httpc_owner owner; /* first: CURLOPT_PRIVATE points here */
	struct httpc *h;
	CURL *easy;
	bool in_multi;
	struct ws_cbs cbs;
	void *arg;
	enum ws_state state;
	enum ws_io io;
	curl_socket_t fd;
	SSL *ssl;
	struct event *ev;       /* persistent, on fd, once connected */
	short ev_flags;         /* EV_READ/EV_WRITE currently added */
	struct event *timer;    /* connect+upgrade deadline, then close deadline */
	long timeout_ms;
	struct buf out;         /* the Upgrade request */
	size_t out_off;
	struct buf in;          /* the answer to it */
	size_t left_off;        /* bytes of `in` after the header block: frames */
	char accept[29];
	wslay_event_context_ptr ctx;
	size_t max_msg;
	uint64_t cur_msg;       /* payload bytes of the message being received */
	bool too_big;
	bool nomem;
	bool paused;
	bool user_closed;
	int user_code;
	bool rd_wants_wr;       /* SSL_read needs the fd writable */
	bool wr_wants_rd;       /* SSL_write needs the fd readable */
	bool kick;              /* run an I/O pass at once, from the loop */
	size_t pass_bytes;
	bool drained;           /* in this on_io: a plain recv came back short, the socket is empty */
	int depth;
	bool freed;
	enum gw_err abort_err;  /* ws_close before the upgrade finished */
	int abort_code;
	struct ws_pending *pend_head, *pend_tail;
};

/* ---- pure helpers ---- */

void ws__accept_for_key(const char *key, char out[29])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char in[64];
	size_t kl = strlen(key);
	GW_ASSERT(kl + sizeof(WS_GUID) <= sizeof(in));
	memcpy(in, key, kl);
	memcpy(in + kl, WS_GUID, sizeof(WS_GUID) - 1);
	if (!EVP_Digest(in, kl + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
		out[0] = '\0'; /* matches no server answer */
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, md, 20);
}

static bool ieq(const char *a, size_t an, const char *b)
{
	return an == strlen(b) && strncasecmp(a, b, an) == 0;
}

/* Does the comma-separated list v[0..n) contain token tok? */
static bool has_token(const char *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && ieq(v + s, e - s, tok))
			return true;
	}
	return false;
}

static enum gw_err parse_status_line(const char *p, size_t n, int *status)
{
	/* "HTTP/1.x NNN[ reason]" */
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[7]) ||
	    p[8] != ' ' || (n > 12 && p[12] != ' '))
		return GW_EPROTO;
	int st = 0;
	for (int i = 9; i < 12; i++) {
		if (!isdigit((unsigned char)p[i]))
			return GW_EPROTO;
		st = st * 10 + (p[i] - '0');
	}
	*status = st;
	return GW_OK;
}

struct hs_seen {
	bool upgrade, connection, accept, extensions;
};

static enum gw_err parse_header_line(const char *q, const char *le, const char *accept,
				     struct hs_seen *s)
{
	const char *colon = memchr(q, ':', (size_t)(le - q));
	if (!colon || colon == q)
		return GW_EPROTO;
	const char *v = colon + 1, *ve = le;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	size_t nl = (size_t)(colon - q), vl = (size_t)(ve - v);
	if (ieq(q, nl, "upgrade"))
		s->upgrade = ieq(v, vl, "websocket");
	else if (ieq(q, nl, "connection"))
		s->connection = has_token(v, vl, "upgrade");
	else if (ieq(q, nl, "sec-websocket-accept"))
		s->accept = vl == strlen(accept) && vl > 0 && memcmp(v, accept, vl) == 0;
	else if (ieq(q, nl, "sec-websocket-extensions"))
		s->extensions = true;
	return GW_OK;
}

enum gw_err ws__parse_handshake(const char *p, size_t n, const char *accept, int *status,
				size_t *hdr_len)
{
	*status = 0;
	*hdr_len = 0;
	const char *end = memmem(p, n, "\r\n\r\n", 4);
	if (!end)
		return n >= WS_HS_MAX_BYTES ? GW_EPROTO : GW_EAGAIN;
	size_t hl = (size_t)(end - p) + 4;
	if (hl > WS_HS_MAX_BYTES)
		return GW_EPROTO;
	const char *eol = memmem(p, hl, "\r\n", 2);
	if (parse_status_line(p, (size_t)(eol - p), status))
		return GW_EPROTO;
	if (*status == 401 || *status == 403)
		return GW_EAUTH;
	if (*status != 101)
		return GW_EPROTO;
	struct hs_seen seen = { 0 };
	const char *q = eol + 2, *hend = p + hl - 2;
	while (q < hend) {
		const char *le = memmem(q, (size_t)(hend + 2 - q), "\r\n", 2);
		if (parse_header_line(q, le, accept, &seen))
			return GW_EPROTO;
		q = le + 2;
	}
	/* We offer no extension, so a server that enables one breaks RFC 6455
	 * (and its frames would set RSV bits wslay rejects). */
	if (!seen.upgrade || !seen.connection || !seen.accept || seen.extensions)
		return GW_EPROTO;
	*hdr_len = hl;
	return GW_OK;
}

const char *ws__io_name(const struct ws *w)
{
	if (!w || w->state < WS_HS_SEND)
		return "none";
	return w->io == WS_IO_SSL ? "ssl" : w->io == WS_IO_CURL ? "curl" : "fd";
}

/* ---- raw I/O: fd, SSL object, or curl as a last resort ---- */

static ssize_t io_recv(struct ws *w, void *p, size_t n)
{
	if (w->io == WS_IO_SSL) {
		ERR_clear_error();
		int r = SSL_read(w->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		w->rd_wants_wr = false;
		if (r > 0)
			return r;
		switch (SSL_get_error(w->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			return IO_AGAIN;
		case SSL_ERROR_WANT_WRITE:
			w->rd_wants_wr = true;
			return IO_AGAIN;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			return IO_ERR;
		}
	}
	if (w->io == WS_IO_CURL) {
		size_t got = 0;
		CURLcode rc = curl_easy_recv(w->easy, p, n, &got);
		if (rc == CURLE_AGAIN)
			return IO_AGAIN;
		return rc ? IO_ERR : (ssize_t)got;
	}
	ssize_t r;
	do
		r = recv(w->fd, p, n, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_AGAIN : IO_ERR;
	return r;
}

static ssize_t io_send(struct ws *w, const void *p, size_t n)
{
	if (w->io == WS_IO_SSL) {
		ERR_clear_error();
		int r = SSL_write(w->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
		w->wr_wants_rd = false;
		if (r > 0)
			return r;
		switch (SSL_get_error(w->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
			return IO_AGAIN;
		case SSL_ERROR_WANT_READ:
			w->wr_wants_rd = true;
			return IO_AGAIN;
		default:
			return IO_ERR;
		}
	}
	if (w->io == WS_IO_CURL) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(w->easy, p, n, &sent);
		if (rc == CURLE_AGAIN)
			return IO_AGAIN;
		return rc ? IO_ERR : (ssize_t)sent;
	}
	ssize_t r;
	do
		r = send(w->fd, p, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_AGAIN : IO_ERR;
	return r;
}

/* ---- lifetime ---- */

static void enter(struct ws *w)
{
	w->depth++;
}

static void destroy(struct ws *w);

/* The caller must not touch w after this. */
static void leave(struct ws *w)
{
	GW_ASSERT(w->depth > 0);
	if (--w->depth == 0 && w->freed)
		destroy(w);
}

static void stop_io(struct ws *w)
{
	if (w->ev) {
		event_free(w->ev); /* before curl closes the fd */
		w->ev = NULL;
	}
	if (w->timer)
		evtimer_del(w->timer);
	if (w->in_multi) {
		httpc__remove(w->h, w->easy);
		w->in_multi = false;
	}
}

static void pending_clear(struct ws *w)
{
	while (w->pend_head) {
		struct ws_pending *p = w->pend_head;
		w->pend_head = p->next;
		gw_free(p);
	}
	w->pend_tail = NULL;
}

static void destroy(struct ws *w)
{
	stop_io(w);
	if (w->ctx)
		wslay_event_context_free(w->ctx);
	if (w->timer)
		event_free(w->timer);
	pending_clear(w);
	buf_release(&w->out);
	buf_release(&w->in);
	curl_easy_cleanup(w->easy);
	httpc__ws_ref(w->h, -1);
	gw_free(w);
}

/* Ends the connection and reports it once. Called only from loop
 * handlers (depth > 0), so on_close may free w. */
static void finish(struct ws *w, enum gw_err err, int code, int http_status)
{
	if (w->state == WS_DONE)
		return;
	w->state = WS_DONE;
	stop_io(w);
	pending_clear(w);
	if (!w->freed && w->cbs.on_close)
		w->cbs.on_close(w->arg, err, code, http_status);
}

void ws_free(struct ws *w)
{
	if (!w || w->freed)
		return;
	w->freed = true;
	if (w->depth == 0)
		destroy(w);
}

/* ---- event plumbing ---- */

static void on_io(evutil_socket_t fd, short what, void *arg);

static short wanted_events(struct ws *w)
{
	short want = 0;
	switch (w->state) {
	case WS_HS_SEND:
		want = EV_WRITE;
		break;
	case WS_HS_RECV:
		want = EV_READ;
		break;
	case WS_OPEN:
		if (!w->paused && wslay_event_want_read(w->ctx))
			want |= EV_READ;
		if (wslay_event_want_write(w->ctx))
			want |= EV_WRITE;
		break;
	default:
		return 0;
	}
	if (w->rd_wants_wr && !(w->state == WS_OPEN && w->paused))
		want |= EV_WRITE;
	if (w->wr_wants_rd)
		want |= EV_READ;
	return want;
}

/* Brings the fd event in line with what the state needs, then runs a
 * requested immediate pass. Every handler calls it before leave(). */
static void settle(struct ws *w)
{
	if (w->state == WS_DONE || w->freed || !w->ev)
		return;
	short want = wanted_events(w);
	if (want != w->ev_flags) {
		event_del(w->ev);
		event_assign(w->ev, httpc__base(w->h), w->fd, want | EV_PERSIST, on_io, w);
		if (want && event_add(w->ev, NULL) != 0) {
			finish(w, GW_EIO, 1006, w->state == WS_OPEN ? 101 : 0);
			return;
		}
		w->ev_flags = want;
	}
	if (w->kick) {
		w->kick = false;
		event_active(w->ev, EV_WRITE, 0);
	}
}

/* Asks for an I/O pass from the loop (never inline: no user callback may
 * run from inside an API call). */
static void kick(struct ws *w)
{
	w->kick = true;
	if (w->depth == 0)
		settle(w);
}

/* ---- wslay glue ---- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			     void *user)
{
	struct ws *w = user;
	GW_UNUSED(flags);
	if (w->paused || w->freed || w->state != WS_OPEN)
		goto block;
	if (w->left_off < w->in.len) {
		/* Frames that arrived with the 101 come first. */
		size_t n = w->in.len - w->left_off;
		n = n < len ? n : len;
		memcpy(buf, w->in.p + w->left_off, n);
		w->left_off += n;
		if (w->left_off == w->in.len) {
			buf_release(&w->in); /* the handshake buffer is not needed again */
			w->left_off = 0;
		}
		return (ssize_t)n;
	}
	if (w->pass_bytes >= WS_PASS_BUDGET) {
		w->kick = true; /* more next turn; also covers TLS-buffered bytes */
		goto block;
	}
	/* A short read on a plain socket emptied it: say so without the
	 * recv that would only return EAGAIN (the fd is level-triggered, so
	 * bytes arriving meanwhile wake us again). Not for TLS, where the
	 * library may hold decrypted bytes the socket does not show. */
	if (w->drained)
		goto block;
	ssize_t r = io_recv(w, buf, len);
	if (r > 0) {
		w->pass_bytes += (size_t)r;
		if (w->io == WS_IO_FD && (size_t)r < len)
			w->drained = true;
		return r;
	}
	if (r == IO_AGAIN)
		goto block;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); /* EOF or error */
	return -1;
block:
	wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	return -1;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
			     int flags, void *user)
{
	struct ws *w = user;
	GW_UNUSED(flags);
	ssize_t r = io_send(w, data, len);
	if (r >= 0)
		return r;
	wslay_event_set_error(ctx, r == IO_AGAIN ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static int on_wslay_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
	GW_UNUSED(user);
	if (len > INT_MAX || RAND_bytes(buf, (int)len) != 1) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return 0;
}

static void on_wslay_frame_start(wslay_event_context_ptr ctx,
				 const struct wslay_event_on_frame_recv_start_arg *a, void *user)
{
	struct ws *w = user;
	GW_UNUSED(ctx);
	if (a->opcode & 0x8)
		return; /* control frames interleave and do not count */
	if (a->opcode != WSLAY_CONTINUATION_FRAME)
		w->cur_msg = 0;
	/* wslay enforces the limit itself; this only tells why it closed. */
	if (a->payload_length > w->max_msg || w->cur_msg + a->payload_length > w->max_msg)
		w->too_big = true;
	else
		w->cur_msg += a->payload_length;
}

static void deliver_text(struct ws *w, const char *p, size_t n)
{
	if (w->paused || w->pend_head) {
		/* Already in wslay's read buffer when the user paused: hold it
		 * (at most one read's worth) until ws_pause(w, false). */
		struct ws_pending *m = gw_malloc(sizeof(*m) + n + 1);
		if (!m) {
			w->nomem = true;
			return;
		}
		m->next = NULL;
		m->n = n;
		memcpy(m->p, p, n);
		m->p[n] = '\0';
		if (w->pend_tail)
			w->pend_tail->next = m;
		else
			w->pend_head = m;
		w->pend_tail = m;
		return;
	}
	if (w->cbs.on_text)
		w->cbs.on_text(w->arg, p, n);
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
			 void *user)
{
	struct ws *w = user;
	GW_UNUSED(ctx);
	/* Binary messages are not part of the upstream protocol: ignored. */
	if (a->opcode != WSLAY_TEXT_FRAME || w->freed || w->state != WS_OPEN)
		return;
	deliver_text(w, (const char *)a->msg, a->msg_length);
}

static void flush_pending(struct ws *w)
{
	while (w->pend_head && !w->paused && !w->freed && w->state == WS_OPEN) {
		struct ws_pending *m = w->pend_head;
		w->pend_head = m->next;
		if (!w->pend_head)
			w->pend_tail = NULL;
		if (w->cbs.on_text)
			w->cbs.on_text(w->arg, m->p, m->n);
		gw_free(m);
	}
}

/* ---- the open connection ---- */

static void io_pass(struct ws *w)
{
	flush_pending(w);
	if (w->freed || w->state != WS_OPEN)
		return;
	if (!w->paused && wslay_event_want_read(w->ctx)) {
		w->pass_bytes = 0;
		int r = wslay_event_recv(w->ctx);
		if (w->freed || w->state != WS_OPEN)
			return;
		if (w->nomem) {
			finish(w, GW_ENOMEM, 1006, 101);
			return;
		}
		if (r != 0) {
			finish(w, r == WSLAY_ERR_NOMEM ? GW_ENOMEM : GW_EIO, 1006, 101);
			return;
		}
	}
	bool failed = !wslay_event_get_read_enabled(w->ctx) &&
		      !wslay_event_get_close_received(w->ctx) && !w->user_closed;
	if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0 && !failed) {
		finish(w, GW_EIO, 1006, 101);
		return;
	}
	if (failed) {
		/* wslay failed the connection (close frame queued and, best
		 * effort, sent above): the peer broke the protocol or sent a
		 * message over max_msg_bytes. wslay checks the size before our
		 * frame callback runs, so the code it sent tells which. */
		bool big = w->too_big || (wslay_event_get_close_sent(w->ctx) &&
					  wslay_event_get_status_code_sent(w->ctx) ==
						  WSLAY_CODE_MESSAGE_TOO_BIG);
		finish(w, big ? GW_ELIMIT : GW_EPROTO, big ? 1009 : 1002, 101);
		return;
	}
	if (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx))
		finish(w, GW_OK, wslay_event_get_status_code_received(w->ctx), 101);
}

static enum gw_err start_wslay(struct ws *w)
{
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = on_wslay_recv,
		.send_callback = on_wslay_send,
		.genmask_callback = on_wslay_genmask,
		.on_frame_recv_start_callback = on_wslay_frame_start,
		.on_msg_recv_callback = on_wslay_msg,
	};
	if (wslay_event_context_client_init(&w->ctx, &cbs, w) != 0)
		return GW_ENOMEM;
	wslay_event_config_set_max_recv_msg_length(w->ctx, w->max_msg);
	return GW_OK;
}

static void upgraded(struct ws *w, size_t hdr_len)
{
	if (start_wslay(w)) {
		finish(w, GW_ENOMEM, 0, 101);
		return;
	}
	w->state = WS_OPEN;
	w->left_off = hdr_len;
	buf_release(&w->out); /* the upgrade request: held per stream otherwise */
	if (w->left_off == w->in.len) {
		buf_release(&w->in); /* no frames came with the 101 */
		w->left_off = 0;
	}
	evtimer_del(w->timer);
	if (w->cbs.on_open && !w->freed)
		w->cbs.on_open(w->arg);
	if (!w->freed && w->state == WS_OPEN)
		io_pass(w); /* frames may have come with the 101 */
}

/* ---- the upgrade ---- */

static void hs_send(struct ws *w)
{
	while (w->out_off < w->out.len) {
		ssize_t r = io_send(w, w->out.p + w->out_off, w->out.len - w->out_off);
		if (r == IO_AGAIN)
			return;
		if (r < 0) {
			finish(w, GW_EIO, 0, 0);
			return;
		}
		w->out_off += (size_t)r;
	}
	w->state = WS_HS_RECV;
}

static void hs_recv(struct ws *w)
{
	for (;;) {
		size_t room = WS_HS_MAX_BYTES - w->in.len;
		room = room < WS_READ_CHUNK ? room : WS_READ_CHUNK;
		enum gw_err err = room == 0 ? GW_EPROTO : buf_reserve(&w->in, room);
		if (err) {
			finish(w, err, 0, 0);
			return;
		}
		ssize_t r = io_recv(w, w->in.p + w->in.len, room);
		if (r == IO_AGAIN)
			return;
		if (r <= 0) {
			finish(w, GW_EIO, 0, 0);
			return;
		}
		if (w->io == WS_IO_FD && (size_t)r < room)
			w->drained = true; /* also for the frame pass right after the 101 */
		w->in.len += (size_t)r;
		w->in.p[w->in.len] = '\0';
		int status;
		size_t hl;
		err = ws__parse_handshake(w->in.p, w->in.len, w->accept, &status, &hl);
		if (err == GW_EAGAIN) {
			if (w->drained)
				return; /* the rest comes with a later wake-up */
			continue;
		}
		if (err) {
			finish(w, err, 0, status);
			return;
		}
		upgraded(w, hl);
		return;
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct ws *w = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	enter(w);
	w->drained = false; /* a wake-up from the loop: the socket may have bytes */
	if (w->state == WS_HS_SEND)
		hs_send(w);
	if (w->state == WS_HS_RECV)
		hs_recv(w);
	else if (w->state == WS_OPEN)
		io_pass(w);
	settle(w);
	leave(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ws *w = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	enter(w);
	if (w->abort_err)
		finish(w, w->abort_err, w->abort_code, 0);
	else if (w->state == WS_OPEN)
		finish(w, GW_ETIMEOUT, w->user_code, 101); /* peer never answered our close */
	else
		finish(w, GW_ETIMEOUT, 0, 0);
	leave(w);
}

static enum ws_io pick_io(struct ws *w)
{
	struct curl_tlssessioninfo *ti = NULL;
	if (curl_easy_getinfo(w->easy, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti &&
	    ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals) {
		w->ssl = ti->internals;
		/* wslay retries a blocked write from its own queue; let OpenSSL
		 * accept that and partial writes like send(2) does. */
		SSL_set_mode(w->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
					     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		return WS_IO_SSL;
	}
	char *url = NULL;
	curl_easy_getinfo(w->easy, CURLINFO_EFFECTIVE_URL, &url);
	/* TLS we cannot reach (another backend): curl must do the I/O. */
	if (url && strncasecmp(url, "https:", 6) == 0)
		return WS_IO_CURL;
	return WS_IO_FD;
}

static void connect_done(struct httpc_owner *o, CURLcode res)
{
	struct ws *w = (struct ws *)o;
	enter(w);
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (res != CURLE_OK) {
		bool local = res == CURLE_OUT_OF_MEMORY || httpc__local_failure(&w->owner);
		finish(w, res == CURLE_OPERATION_TIMEDOUT ? GW_ETIMEOUT : local ? GW_ENOMEM : GW_EIO, 0, 0);
	} else if (curl_easy_getinfo(w->easy, CURLINFO_ACTIVESOCKET, &fd) || fd == CURL_SOCKET_BAD) {
		finish(w, GW_EIO, 0, 0);
	} else {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(w->easy, w->out.p, w->out.len, &sent);
		if (rc != CURLE_OK && rc != CURLE_AGAIN) {
			finish(w, GW_EIO, 0, 0);
		} else {
			w->fd = fd;
			w->out_off = sent;
			w->io = pick_io(w);
			w->state = w->out_off < w->out.len ? WS_HS_SEND : WS_HS_RECV;
			w->ev = event_new(httpc__base(w->h), fd, 0, on_io, w);
			if (!w->ev)
				finish(w, GW_ENOMEM, 0, 0);
		}
	}
	settle(w);
	leave(w);
}

/* ---- open ---- */

static enum gw_err http_url(const char *url, char **out)
{
	const char *rest;
	const char *scheme;
	if (strncasecmp(url, "ws://", 5) == 0) {
		scheme = "http://";
		rest = url + 5;
	} else if (strncasecmp(url, "wss://", 6) == 0) {
		scheme = "https://";
		rest = url + 6;
	} else if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
		scheme = "";
		rest = url;
	} else {
		return GW_EINVAL;
	}
	struct buf b;
	buf_init(&b, 16384);
	enum gw_err err = buf_printf(&b, "%s%s", scheme, rest);
	if (err) {
		buf_release(&b);
		return err;
	}
	*out = buf_take(&b, NULL);
	return *out ? GW_OK : GW_ENOMEM;
}

static bool has_header(const char *const *hdrs, const char *name)
{
	size_t n = strlen(name);
	for (; hdrs && *hdrs; hdrs++)
		if (strncasecmp(*hdrs, name, n) == 0 && (*hdrs)[n] == ':')
			return true;
	return false;
}

static enum gw_err make_key(char key[25])
{
	unsigned char raw[16];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return GW_EIO;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	return GW_OK;
}

static enum gw_err add_target(struct ws *w, CURLU *u)
{
	char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	enum gw_err err = GW_EINVAL;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) || curl_url_get(u, CURLUPART_PATH, &path, 0))
		goto out;
	(void)curl_url_get(u, CURLUPART_PORT, &port, 0); /* only if explicit */
	(void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
	err = buf_printf(&w->out, "GET %s%s%s HTTP/1.1\r\nHost: %s%s%s\r\n", path[0] ? path : "/",
			 query ? "?" : "", query ? query : "", host, port ? ":" : "",
			 port ? port : "");
out:
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	return err;
}

static enum gw_err build_request(struct ws *w, const char *url, const struct ws_opts *o)
{
	char key[25];
	enum gw_err err = make_key(key);
	if (err)
		return err;
	ws__accept_for_key(key, w->accept);
	CURLU *u = curl_url();
	if (!u)
		return GW_ENOMEM;
	err = curl_url_set(u, CURLUPART_URL, url, 0) ? GW_EINVAL : add_target(w, u);
	curl_url_cleanup(u);
	if (err)
		return err;
	err = buf_printf(&w->out,
			 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key);
	if (!err && !has_header(o->headers, "User-Agent"))
		err = buf_printf(&w->out, "User-Agent: %s\r\n", httpc__user_agent(w->h));
	for (const char *const *hp = o->headers; !err && hp && *hp; hp++) {
		if (strpbrk(*hp, "\r\n") || !strchr(*hp, ':'))
			return GW_EINVAL; /* no header injection */
		err = buf_printf(&w->out, "%s\r\n", *hp);
	}
	return err ? err : buf_adds(&w->out, "\r\n");
}

static enum gw_err setup_easy(struct ws *w, const char *url)
{
	enum gw_err err = httpc__setup_easy(w->h, w->easy);
	if (err)
		return err;
	if (curl_easy_setopt(w->easy, CURLOPT_URL, url) ||
	    curl_easy_setopt(w->easy, CURLOPT_CONNECT_ONLY, 1L) ||
	    /* curl reads nothing for us after the connect: its smallest buffer
	     * saves 15 KB per stream. */
	    curl_easy_setopt(w->easy, CURLOPT_BUFFERSIZE, 1024L) ||
	    curl_easy_setopt(w->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) ||
	    curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, w->timeout_ms) ||
	    /* Through an HTTP proxy, tunnel: the Upgrade is for the server. */
	    curl_easy_setopt(w->easy, CURLOPT_HTTPPROXYTUNNEL, 1L))
		return GW_ECONFIG;
	return GW_OK;
}

static struct ws *ws_alloc(struct httpc *h, const struct ws_opts *o, const struct ws_cbs *cbs,
			   void *arg)
{
	struct ws *w = gw_calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->owner.done = connect_done;
	w->h = h;
	w->cbs = *cbs;
	w->arg = arg;
	w->fd = CURL_SOCKET_BAD;
	w->state = WS_CONNECTING;
	w->timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : WS_CONNECT_TIMEOUT_MS;
	w->max_msg = o->max_msg_bytes ? o->max_msg_bytes : WS_MAX_MSG_BYTES;
	buf_init(&w->out, 65536);
	buf_init(&w->in, WS_HS_MAX_BYTES);
	httpc__ws_ref(h, 1);
	return w;
}

enum gw_err ws_open(struct httpc *h, const struct ws_opts *o, const struct ws_cbs *cbs,
		    void *arg, struct ws **out)
{
	if (out)
		*out = NULL;
	if (!h || !o || !o->url || !cbs || !out)
		return GW_EINVAL;
	char *url = NULL;
	enum gw_err err = http_url(o->url, &url);
	if (err)
		return err;
	struct ws *w = ws_alloc(h, o, cbs, arg);
	if (!w) {
		gw_free(url);
		return GW_ENOMEM;
	}
	w->easy = curl_easy_init();
	w->timer = evtimer_new(httpc__base(h), on_timer, w);
	err = GW_ENOMEM;
	if (!w->easy || !w->timer || (err = build_request(w, url, o)) ||
	    (err = setup_easy(w, url)))
		goto fail;
	struct timeval tv = { w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000 };
	if (evtimer_add(w->timer, &tv) != 0) {
		err = GW_EIO;
		goto fail;
	}
	if ((err = httpc__add(h, w->easy, &w->owner)))
		goto fail;
	w->in_multi = true;
	gw_free(url);
	*out = w;
	return GW_OK;
fail:
	gw_free(url);
	if (w->timer)
		evtimer_del(w->timer);
	destroy(w);
	return err;
}

/* ---- API on an open ws ---- */

enum gw_err ws_send_text(struct ws *w, const char *p, size_t n)
{
	if (!w || w->freed || w->state != WS_OPEN || w->user_closed ||
	    wslay_event_get_close_received(w->ctx))
		return GW_EIO;
	struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)p, n };
	int r = wslay_event_queue_msg(w->ctx, &m);
	if (r == WSLAY_ERR_NOMEM)
		return GW_ENOMEM;
	if (r != 0)
		return GW_EIO;
	kick(w);
	return GW_OK;
}

void ws_pause(struct ws *w, bool paused)
{
	if (!w || w->freed || w->paused == paused)
		return;
	w->paused = paused;
	if (w->state != WS_OPEN)
		return;
	if (paused) {
		if (w->depth == 0)
			settle(w);
		return;
	}
	/* Resume with a pass at once: bytes may wait inside OpenSSL or in
	 * our held messages, and the fd would not signal those. */
	kick(w);
}

void ws_close(struct ws *w, int code)
{
	if (!w || w->freed || w->state == WS_DONE || w->user_closed || w->abort_err)
		return;
	if (w->state != WS_OPEN) {
		/* Not upgraded yet: give up the attempt, reported from the loop. */
		w->abort_err = GW_ECANCELED;
		w->abort_code = code;
		struct timeval now = { 0, 0 };
		evtimer_add(w->timer, &now);
		return;
	}
	w->user_closed = true;
	w->user_code = code;
	if (wslay_event_queue_close(w->ctx, (uint16_t)code, NULL, 0) == WSLAY_ERR_INVALID_ARGUMENT)
		(void)wslay_event_queue_close(w->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
	struct timeval tv = { w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000 };
	evtimer_add(w->timer, &tv);
	kick(w);
}
