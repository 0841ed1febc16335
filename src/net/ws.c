/* ws.c - WebSocket client: wslay's frame API over a curl CONNECT_ONLY
 * connection.
 *
 * Life of a ws: curl connects (TCP, proxy tunnel, TLS) as an easy handle on
 * the httpc's multi; the handle stays in the multi for the connection's
 * life because removing it closes the socket. When curl reports the
 * connect done we send the Upgrade request. The first bytes go through
 * curl_easy_send, because that call re-attaches the connection to our easy
 * handle: only then does CURLINFO_TLS_SSL_PTR return the SSL object, and an
 * attached connection is "in use", so curl never prunes it as idle. From
 * then on all I/O is direct (cio.h).
 *
 * Framing uses wslay's frame layer only: its event layer would add a
 * context with a fixed 4 KB output buffer to every ws. wslay parses and
 * builds frames; the message layer is here. A frame context (with its
 * 4 KB read buffer) is held only while a frame is half read or half sent:
 * between frames it goes back to the httpc for the next ws that needs one,
 * so a stream waiting for its next piece holds none. Received frames come as
 * pieces of wslay's 4 KB read buffer: a text message that sits whole in
 * one piece goes to on_text from there, others are assembled in `msg`,
 * which is freed once delivered. The size limit is checked when a frame
 * starts, before anything is buffered. Pings are answered, the peer's
 * close is echoed, and what RFC 6455 forbids (stray continuations,
 * reserved opcodes or RSV bits, masked or oversized control frames) fails
 * the connection with 1002. Pausing just stops calling wslay_frame_recv,
 * so unread frames wait in wslay's buffer. A message goes out at once
 * when nothing waits ahead of it; otherwise frames wait in a queue (pongs
 * and close replies ahead of messages, but never inside a frame already
 * begun; the user's close after the messages sent before it). All are
 * masked; a frame that fills the socket keeps its offset and goes on when
 * the fd is writable.
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
#include "net/cio.h"
#include "net/h1c.h"
#include "net/h1c_parse.h"
#include "util/http1.h"
#include "net/httpc_internal.h"
#include "net/ws_internal.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/sha.h"

#include <event2/event.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#define WS_CONNECT_TIMEOUT_MS 10000L
#define WS_MAX_MSG_BYTES ((size_t)4 << 20)
#define WS_READ_CHUNK 4096
/* Bytes read per connection per loop turn before yielding to others. */
#define WS_PASS_BUDGET (256 * 1024)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ws_state { WS_CONNECTING, WS_HS_SEND, WS_HS_RECV, WS_OPEN, WS_DONE };

enum ws_rd { RD_BLOCKED, RD_GOT, RD_EOF };

/* A frame waiting to be sent. wslay_frame_send takes a frame in pieces
 * (it returns the payload bytes it consumed), so `off` keeps our place
 * when the socket fills. p holds the payload from byte `skip` on: a
 * message sent straight from the caller's bytes keeps only its tail. */
struct ws_out {
	struct ws_out *next;
	uint8_t *p;
	size_t len;
	size_t off;
	size_t skip;
	uint8_t opcode;
};

/* A wslay frame context (a 4 KB read buffer inside) and the ws it serves
 * now: contexts move between the ws objects of one httpc. */
struct ws_fctx {
	wslay_frame_context_ptr ctx;
	struct ws *w;
};

struct ws {
	struct httpc_owner owner; /* first: CURLOPT_PRIVATE points here */
	struct httpc *h;
	CURL *easy;
	bool in_multi;
	struct ws_cbs cbs;
	void *arg;
	enum ws_state state;
	struct cio io;          /* the connection's bytes, once connected */
	struct event *ev;       /* persistent, on fd, once connected */
	short ev_flags;         /* EV_READ/EV_WRITE currently added */
	struct event *timer;    /* connect+upgrade deadline, then close deadline */
	long timeout_ms;
	struct buf out;         /* the Upgrade request */
	size_t out_off;
	struct buf in;          /* the answer to it */
	size_t left_off;        /* bytes of `in` after the header block: frames */
	char accept[29];
	struct ws_fctx *fx;     /* held only while wslay is inside a frame */
	uint64_t unparsed;      /* bytes wslay read that made no whole frame yet */
	size_t max_msg;
	/* receiving */
	enum ws_rd rd;          /* what the last recv callback saw */
	uint64_t fr_got;        /* payload bytes of the current frame so far */
	uint64_t msg_len;       /* payload bytes of the current data message */
	uint8_t msg_op;         /* its opcode (text/binary), 0 between messages */
	struct buf msg;         /* a text message that does not come whole */
	struct ws_out *pong;    /* filled from a ping's payload as it arrives */
	uint8_t peer_code[2];   /* first bytes of a close frame's payload */
	bool close_rcvd;
	int close_code;         /* the peer's, once close_rcvd */
	/* sending */
	bool send_failed;       /* the last send callback met an error, not EAGAIN */
	struct ws_out *cur;     /* partly sent: goes on before anything else */
	struct ws_out *ctrl;    /* pong and close replies, ahead of data */
	struct ws_out *data, *data_tail;
	struct ws_out close_out; /* our close frame: never needs an allocation */
	uint8_t close_pl[2];
	bool close_queued;
	bool close_sent;
	enum gw_err send_err;   /* ws_send_text failed inside a frame: end from the loop */
	bool paused;
	bool user_closed;
	int user_code;
	bool kick;              /* run an I/O pass at once, from the loop */
	size_t pass_bytes;
	int depth;
	bool freed;
	enum gw_err abort_err;  /* ws_close before the upgrade finished */
	int abort_code;
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
	if (!EVP_Digest(in, kl + sizeof(WS_GUID) - 1, md, &mdlen, gw_md_sha1(), NULL) || mdlen != 20) {
		out[0] = '\0'; /* matches no server answer */
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, md, 20);
}

struct hs_seen {
	bool upgrade, connection, accept, extensions;
};

static enum gw_err parse_header_line(const char *q, const char *le, const char *accept,
				     struct hs_seen *s)
{
	size_t nl, vl;
	const char *v;
	if (h1c_split_header(q, le, &nl, &v, &vl))
		return GW_EPROTO;
	if (http1_ieq(q, nl, "upgrade"))
		s->upgrade = http1_ieq(v, vl, "websocket");
	else if (http1_ieq(q, nl, "connection"))
		s->connection = http1_has_token(v, vl, "upgrade");
	else if (http1_ieq(q, nl, "sec-websocket-accept"))
		s->accept = vl == strlen(accept) && vl > 0 && memcmp(v, accept, vl) == 0;
	else if (http1_ieq(q, nl, "sec-websocket-extensions"))
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
	if (h1c_status_line(p, (size_t)(eol - p), status))
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
	return cio_name(&w->io);
}

bool ws__tls_resumed(const struct ws *w)
{
	return cio_tls_resumed(&w->io);
}

bool ws__holds_parser(const struct ws *w)
{
	return w->fx != NULL;
}

/* ---- the frame parser: held only while a frame is half-read or
 * half-sent, so a stream waiting for its next piece holds no 4 KB read
 * buffer ---- */

static ssize_t on_frame_recv(uint8_t *buf, size_t len, int flags, void *user);
static ssize_t on_frame_send(const uint8_t *data, size_t len, int flags, void *user);
static int on_frame_genmask(uint8_t *buf, size_t len, void *user);

static void fx_free(void *p)
{
	struct ws_fctx *fx = p;
	wslay_frame_context_free(fx->ctx);
	gw_free(fx);
}

static enum gw_err fx_take(struct ws *w)
{
	static const struct wslay_frame_callbacks cbs = {
		.send_callback = on_frame_send,
		.recv_callback = on_frame_recv,
		.genmask_callback = on_frame_genmask,
	};
	if (w->fx)
		return GW_OK;
	struct ws_fctx *fx = httpc__spare_take(w->h);
	if (!fx) {
		if (!(fx = gw_malloc(sizeof(*fx))))
			return GW_ENOMEM;
		if (wslay_frame_context_init(&fx->ctx, &cbs, fx) != 0) {
			gw_free(fx);
			return GW_ENOMEM;
		}
	}
	fx->w = w;
	w->fx = fx;
	return GW_OK;
}

/* wslay holds nothing of ours when every byte it read belongs to a whole
 * frame already handed over, and no frame is half-sent (queued in `cur`, or
 * cut by a failed send): its context is then as new (waiting for a frame
 * header, buffer empty). */
static bool fx_idle(const struct ws *w)
{
	return w->unparsed == 0 && w->fr_got == 0 && !w->cur && !w->send_err;
}

/* Gives an idle context back for another ws. Only an open ws does: one
 * that ended may have stopped inside a frame its counts do not show. */
static void fx_give_idle(struct ws *w)
{
	if (w->fx && w->state == WS_OPEN && fx_idle(w)) {
		httpc__spare_give(w->h, w->fx, fx_free);
		w->fx = NULL;
	}
}

/* The header bytes wslay read for a frame: wslay refuses a length not in
 * its shortest form, so this is exact. */
static uint64_t hdr_len(const struct wslay_frame_iocb *io)
{
	uint64_t n = io->payload_length;
	return 2 + (n > 65535 ? 8 : n > 125 ? 2 : 0) + (io->mask ? 4 : 0);
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

static void out_free(struct ws *w, struct ws_out *f)
{
	if (f != &w->close_out)
		gw_free(f);
}

static void out_free_list(struct ws *w, struct ws_out *f)
{
	while (f) {
		struct ws_out *next = f->next;
		out_free(w, f);
		f = next;
	}
}

/* Drops what is queued and half-received: a finished ws holds nothing. */
static void frames_clear(struct ws *w)
{
	if (w->cur)
		out_free(w, w->cur);
	out_free_list(w, w->ctrl);
	out_free_list(w, w->data);
	out_free_list(w, w->pong);
	w->cur = w->ctrl = w->data = w->data_tail = w->pong = NULL;
	buf_release(&w->msg);
}

static void destroy(struct ws *w)
{
	stop_io(w);
	if (w->fx)
		fx_free(w->fx);
	if (w->timer)
		event_free(w->timer);
	frames_clear(w);
	buf_release(&w->out);
	buf_release(&w->in);
	httpc__easy_put(w->h, w->easy);
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
	frames_clear(w);
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

static bool queued(const struct ws *w)
{
	return w->cur || w->ctrl || w->data;
}

bool ws__queued(const struct ws *w)
{
	return queued(w);
}

static bool want_write(const struct ws *w)
{
	return !w->close_sent && queued(w);
}

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
		if (!w->paused && !w->close_rcvd)
			want |= EV_READ;
		if (want_write(w))
			want |= EV_WRITE;
		break;
	default:
		return 0;
	}
	if (w->io.rd_wants_wr && !(w->state == WS_OPEN && w->paused))
		want |= EV_WRITE;
	if (w->io.wr_wants_rd)
		want |= EV_READ;
	return want;
}

/* Brings the fd event in line with what the state needs, then runs a
 * requested immediate pass. Every handler calls it before leave(). */
static void settle(struct ws *w)
{
	if (w->state == WS_DONE || w->freed || !w->ev)
		return;
	fx_give_idle(w);
	short want = wanted_events(w);
	if (want != w->ev_flags) {
		event_del(w->ev);
		event_assign(w->ev, httpc__base(w->h), w->io.fd, want | EV_PERSIST, on_io, w);
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

/* ---- wslay frame glue ---- */

/* The bytes of `in` after the 101's header block are frames, read first;
 * once all are read the handshake buffer is not needed again. */
static void in_consumed(struct ws *w)
{
	if (w->left_off == w->in.len) {
		buf_release(&w->in);
		w->left_off = 0;
	}
}

static ssize_t on_frame_recv(uint8_t *buf, size_t len, int flags, void *user)
{
	struct ws *w = ((struct ws_fctx *)user)->w;
	GW_UNUSED(flags);
	if (w->left_off < w->in.len) {
		/* Frames that arrived with the 101 come first. */
		size_t n = w->in.len - w->left_off;
		n = n < len ? n : len;
		memcpy(buf, w->in.p + w->left_off, n);
		w->left_off += n;
		in_consumed(w);
		w->rd = RD_GOT;
		w->unparsed += n;
		return (ssize_t)n;
	}
	if (w->pass_bytes >= WS_PASS_BUDGET) {
		w->kick = true; /* more next turn; also covers TLS-buffered bytes */
		goto block;
	}
	ssize_t r = cio_recv(&w->io, buf, len);
	if (r > 0) {
		w->pass_bytes += (size_t)r;
		w->rd = RD_GOT;
		w->unparsed += (uint64_t)r;
		return r;
	}
	if (r == CIO_AGAIN)
		goto block;
	w->rd = RD_EOF; /* or an error: wslay only sees "no bytes" */
	return -1;
block:
	w->rd = RD_BLOCKED;
	return -1;
}

static ssize_t on_frame_send(const uint8_t *data, size_t len, int flags, void *user)
{
	struct ws *w = ((struct ws_fctx *)user)->w;
	GW_UNUSED(flags);
	ssize_t r = cio_send(&w->io, data, len);
	if (r > 0)
		return r;
	/* wslay only sees "nothing sent"; the reason stays with us. */
	w->send_failed = r == CIO_ERR;
	return -1;
}

static int on_frame_genmask(uint8_t *buf, size_t len, void *user)
{
	GW_UNUSED(user);
	return gw_random(buf, len) ? 0 : -1;
}

/* ---- sending: whole frames, one at a time, replies ahead of messages ---- */

static struct ws_out *out_new(uint8_t opcode, const void *p, size_t n)
{
	struct ws_out *f = gw_malloc(sizeof(*f) + n);
	if (!f)
		return NULL;
	f->next = NULL;
	f->p = (uint8_t *)(f + 1);
	f->len = n;
	f->off = f->skip = 0;
	f->opcode = opcode;
	if (p && n)
		memcpy(f->p, p, n);
	return f;
}

static void out_ctrl(struct ws *w, struct ws_out *f)
{
	struct ws_out **pp = &w->ctrl;
	while (*pp)
		pp = &(*pp)->next;
	*pp = f;
}

static void out_data(struct ws *w, struct ws_out *f)
{
	if (w->data_tail)
		w->data_tail->next = f;
	else
		w->data = f;
	w->data_tail = f;
}

/* Our one close frame; `ctrl` puts it ahead of queued messages (a reply
 * or a failure), else it follows them (the user's close). */
static void queue_close(struct ws *w, uint16_t code, bool ctrl)
{
	if (w->close_queued)
		return;
	w->close_queued = true;
	struct ws_out *f = &w->close_out;
	w->close_pl[0] = (uint8_t)(code >> 8);
	w->close_pl[1] = (uint8_t)code;
	*f = (struct ws_out){ .p = w->close_pl, .len = code ? 2 : 0,
			      .opcode = WSLAY_CONNECTION_CLOSE };
	if (ctrl)
		out_ctrl(w, f);
	else
		out_data(w, f);
}

static struct ws_out *out_next(struct ws *w)
{
	if (!w->cur && w->ctrl) {
		w->cur = w->ctrl;
		w->ctrl = w->cur->next;
	} else if (!w->cur && w->data) {
		w->cur = w->data;
		w->data = w->cur->next;
		if (!w->data)
			w->data_tail = NULL;
	}
	return w->cur;
}

/* Sends what is left of f: GW_OK once all of it is out, GW_EAGAIN when
 * the socket is full (f->off says how far it got). */
static enum gw_err send_frame(struct ws *w, struct ws_out *f)
{
	struct wslay_frame_iocb io = {
		.fin = 1, .opcode = f->opcode, .mask = 1, .payload_length = f->len,
		.data = f->p + (f->off - f->skip), .data_length = f->len - f->off,
	};
	if (fx_take(w))
		return GW_ENOMEM;
	w->send_failed = false;
	ssize_t r = wslay_frame_send(w->fx->ctx, &io);
	if (w->send_failed)
		return GW_EIO;
	if (r == WSLAY_ERR_WANT_WRITE)
		return GW_EAGAIN;
	if (r < 0)
		return GW_EIO; /* no mask key */
	f->off += (size_t)r;
	/* wslay stops short only when a write blocks */
	return f->off < f->len ? GW_EAGAIN : GW_OK;
}

/* Sends queued frames until none is left or the socket is full
 * (GW_EAGAIN). Nothing follows our close frame. */
static enum gw_err send_frames(struct ws *w)
{
	struct ws_out *f;
	if (w->send_err)
		return w->send_err; /* wslay is inside a frame that was cut */
	while (!w->close_sent && (f = out_next(w))) {
		enum gw_err err = send_frame(w, f);
		if (err)
			return err;
		w->cur = NULL;
		w->close_sent = f == &w->close_out;
		out_free(w, f);
	}
	return GW_OK;
}

/* ---- receiving: the message layer over wslay's frames ---- */

static bool valid_close_code(int c)
{
	/* IANA's registered codes (RFC 6455 7.4, and 1012-1014 added since)
	 * less those never sent on the wire (1004-1006, 1015), and
	 * 3000-4999. */
	return (c >= 1000 && c <= 1014 && c != 1004 && c != 1005 && c != 1006) ||
	       (c >= 3000 && c <= 4999);
}

static void deliver_text(struct ws *w, const uint8_t *p, size_t n)
{
	if (w->cbs.on_text && !w->freed && w->state == WS_OPEN)
		w->cbs.on_text(w->arg, (const char *)p, n);
}

/* A one-frame message whose payload wslay hands over in one piece: it is
 * delivered from wslay's read buffer, never copied. */
static bool whole_in_piece(const struct wslay_frame_iocb *io, uint64_t at)
{
	return at == 0 && io->fin && io->opcode != WSLAY_CONTINUATION_FRAME &&
	       io->data_length == io->payload_length;
}

/* A data frame begins: fragment order and the size limit are checked
 * before any byte of it is buffered. */
static enum gw_err data_start(struct ws *w, const struct wslay_frame_iocb *io)
{
	if (io->opcode == WSLAY_CONTINUATION_FRAME) {
		if (!w->msg_op)
			return GW_EPROTO; /* continues nothing */
	} else {
		if (w->msg_op)
			return GW_EPROTO; /* a new message inside a fragmented one */
		w->msg_op = io->opcode;
		w->msg_len = 0;
		/* A message in one frame needs exactly its size; one in
		 * fragments grows up to the limit. */
		buf_init(&w->msg, io->fin ? (size_t)io->payload_length : w->max_msg);
	}
	if (io->payload_length > w->max_msg - w->msg_len)
		return GW_ELIMIT;
	w->msg_len += io->payload_length;
	if (w->msg_op != WSLAY_TEXT_FRAME || whole_in_piece(io, 0))
		return GW_OK;
	return buf_reserve(&w->msg, (size_t)io->payload_length) ? GW_ENOMEM : GW_OK;
}

static enum gw_err frame_start(struct ws *w, const struct wslay_frame_iocb *io)
{
	/* We offer no extension, and a server never masks (RFC 6455 5.1). */
	if (io->rsv || io->mask)
		return GW_EPROTO;
	switch (io->opcode) {
	case WSLAY_CONTINUATION_FRAME:
	case WSLAY_TEXT_FRAME:
	case WSLAY_BINARY_FRAME:
		return data_start(w, io);
	case WSLAY_PING:
		/* wslay has checked the length (<= 125) */
		w->pong = out_new(WSLAY_PONG, NULL, (size_t)io->payload_length);
		return w->pong ? GW_OK : GW_ENOMEM;
	case WSLAY_PONG:
	case WSLAY_CONNECTION_CLOSE:
		return GW_OK;
	default:
		return GW_EPROTO; /* reserved opcode */
	}
}

static enum gw_err data_chunk(struct ws *w, const struct wslay_frame_iocb *io, uint64_t at,
			      bool end)
{
	bool last = end && io->fin;
	if (w->msg_op != WSLAY_TEXT_FRAME) {
		/* Binary messages are not part of the upstream protocol: skipped. */
		if (last)
			w->msg_op = 0;
		return GW_OK;
	}
	if (whole_in_piece(io, at)) {
		w->msg_op = 0;
		deliver_text(w, io->data, io->data_length);
		return GW_OK;
	}
	if (buf_add(&w->msg, io->data, io->data_length))
		return GW_ENOMEM;
	if (!last)
		return GW_OK;
	w->msg_op = 0;
	deliver_text(w, (const uint8_t *)w->msg.p, w->msg.len);
	buf_release(&w->msg); /* an idle stream holds no message memory */
	return GW_OK;
}

/* The peer's close: remember its code and echo it (RFC 6455 5.5.1). */
static enum gw_err peer_close(struct ws *w, uint64_t len)
{
	if (len == 1)
		return GW_EPROTO;
	int code = len ? w->peer_code[0] << 8 | w->peer_code[1] : WSLAY_CODE_NO_STATUS_RCVD;
	if (len && !valid_close_code(code))
		return GW_EPROTO;
	w->close_rcvd = true;
	w->close_code = code;
	queue_close(w, len ? (uint16_t)code : 0, true);
	return GW_OK;
}

/* Only the latest ping needs its pong (RFC 6455 5.5.3): one not yet
 * started is replaced, so a ping flood cannot grow the queue. */
static void queue_pong(struct ws *w)
{
	struct ws_out *f = w->pong;
	w->pong = NULL;
	if (w->close_queued) {
		out_free(w, f);
		return;
	}
	for (struct ws_out **pp = &w->ctrl; *pp; pp = &(*pp)->next) {
		if ((*pp)->opcode == WSLAY_PONG) {
			f->next = (*pp)->next;
			out_free(w, *pp);
			*pp = f;
			return;
		}
	}
	out_ctrl(w, f);
}

static enum gw_err ctrl_chunk(struct ws *w, const struct wslay_frame_iocb *io, uint64_t at,
			      bool end)
{
	if (io->opcode == WSLAY_PING) {
		memcpy(w->pong->p + at, io->data, io->data_length);
		if (end)
			queue_pong(w);
	} else if (io->opcode == WSLAY_CONNECTION_CLOSE) {
		for (size_t i = 0; i < io->data_length && at + i < 2; i++)
			w->peer_code[at + i] = io->data[i];
		if (end)
			return peer_close(w, io->payload_length);
	}
	return GW_OK;
}

/* wslay hands over a frame's payload in pieces of its read buffer. */
static enum gw_err on_piece(struct ws *w, const struct wslay_frame_iocb *io)
{
	uint64_t at = w->fr_got;
	uint64_t used = (at == 0 ? hdr_len(io) : 0) + io->data_length;
	/* hdr_len assumes the shortest length encoding, which wslay 1.1
	 * enforces; should a wslay accept another, this is bad input from the
	 * upstream, not a reason to abort the process. */
	if (used > w->unparsed)
		return GW_EPROTO;
	w->unparsed -= used;
	if (at == 0) {
		enum gw_err err = frame_start(w, io);
		if (err)
			return err;
	}
	w->fr_got += io->data_length;
	bool end = w->fr_got == io->payload_length;
	if (end)
		w->fr_got = 0;
	if (wslay_is_ctrl_frame(io->opcode))
		return ctrl_chunk(w, io, at, end);
	return data_chunk(w, io, at, end);
}

/* Reads frames until the socket is empty or the pass budget is spent.
 * Checked before each frame piece: pausing leaves the rest in wslay's
 * buffer, and no piece is read for a ws that ended or was freed. */
static enum gw_err recv_frames(struct ws *w)
{
	while (!w->paused && !w->freed && w->state == WS_OPEN && !w->close_rcvd) {
		struct wslay_frame_iocb io;
		if (fx_take(w))
			return GW_ENOMEM;
		w->rd = RD_BLOCKED; /* wslay asks for bytes before WANT_READ */
		ssize_t r = wslay_frame_recv(w->fx->ctx, &io);
		if (r == WSLAY_ERR_WANT_READ) {
			if (w->rd == RD_GOT)
				continue; /* a short read left a header incomplete */
			return w->rd == RD_EOF ? GW_EIO : GW_OK;
		}
		if (r < 0)
			return r == WSLAY_ERR_PROTO ? GW_EPROTO : GW_EIO;
		enum gw_err err = on_piece(w, &io);
		if (err)
			return err;
	}
	return GW_OK;
}

/* ---- the open connection ---- */

/* The peer broke the protocol or sent a message over max_msg_bytes: say
 * why in a close frame, sent best effort (no waiting), and end. */
static void fail(struct ws *w, enum gw_err err)
{
	int code = err == GW_ELIMIT ? WSLAY_CODE_MESSAGE_TOO_BIG : WSLAY_CODE_PROTOCOL_ERROR;
	queue_close(w, (uint16_t)code, true);
	(void)send_frames(w);
	finish(w, err, code, 101);
}

static void io_pass(struct ws *w)
{
	if (w->send_err) {
		finish(w, w->send_err, 1006, 101);
		return;
	}
	if (!w->paused && !w->close_rcvd) {
		w->pass_bytes = 0;
		enum gw_err err = recv_frames(w);
		if (w->freed || w->state != WS_OPEN)
			return;
		if (err == GW_EPROTO || err == GW_ELIMIT) {
			fail(w, err);
			return;
		}
		if (err) {
			finish(w, err, 1006, 101);
			return;
		}
	}
	enum gw_err err = send_frames(w);
	if (err && err != GW_EAGAIN) {
		finish(w, err, 1006, 101);
		return;
	}
	if (w->close_rcvd && w->close_sent)
		finish(w, GW_OK, w->close_code, 101);
}

static void upgraded(struct ws *w, size_t hdr_len)
{
	/* Taken now, so on_open can send without needing memory; settle gives
	 * it back once idle. */
	if (fx_take(w)) {
		finish(w, GW_ENOMEM, 0, 101);
		return;
	}
	w->state = WS_OPEN;
	w->left_off = hdr_len;
	buf_release(&w->out); /* the upgrade request: held per stream otherwise */
	in_consumed(w);
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
		ssize_t r = cio_send(&w->io, w->out.p + w->out_off, w->out.len - w->out_off);
		if (r == CIO_AGAIN)
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
		ssize_t r = cio_recv(&w->io, w->in.p + w->in.len, room);
		if (r == CIO_AGAIN)
			return;
		if (r <= 0) {
			finish(w, GW_EIO, 0, 0);
			return;
		}
		w->in.len += (size_t)r;
		w->in.p[w->in.len] = '\0';
		int status;
		size_t hl;
		err = ws__parse_handshake(w->in.p, w->in.len, w->accept, &status, &hl);
		if (err == GW_EAGAIN)
			continue; /* cio_recv knows when the socket is empty */
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
	w->io.drained = false; /* a wake-up from the loop: the socket may have bytes */
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

/* The connection's socket, once its bytes can be reached: a ws gets its
 * fd event from here on. */
static enum gw_err attach_fd(struct ws *w)
{
	w->ev = event_new(httpc__base(w->h), w->io.fd, 0, on_io, w);
	return w->ev ? GW_OK : GW_ENOMEM;
}

static void connect_done(struct httpc_owner *o, CURLcode res)
{
	struct ws *w = (struct ws *)o;
	enter(w);
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (res != CURLE_OK) {
		finish(w, httpc__result_err(&w->owner, res), 0, 0);
	} else if (curl_easy_getinfo(w->easy, CURLINFO_ACTIVESOCKET, &fd) || fd == CURL_SOCKET_BAD) {
		finish(w, GW_EIO, 0, 0);
	} else {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(w->easy, w->out.p, w->out.len, &sent);
		if (rc != CURLE_OK && rc != CURLE_AGAIN) {
			finish(w, GW_EIO, 0, 0);
		} else {
			w->out_off = sent;
			w->state = w->out_off < w->out.len ? WS_HS_SEND : WS_HS_RECV;
			cio_attach(&w->io, w->easy, fd);
			if (attach_fd(w))
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
	enum gw_err err = buf_cat(&b, scheme, rest, NULL);
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
	if (!gw_random(raw, sizeof(raw)))
		return GW_EIO;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
	return GW_OK;
}

/* The request line and Host of a URL h1c's split cannot take (user
 * info, a fragment, bytes to escape): curl's parser decides. */
static enum gw_err add_target_curlu(struct ws *w, CURLU *u)
{
	char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	enum gw_err err = GW_EINVAL;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) || curl_url_get(u, CURLUPART_PATH, &path, 0))
		goto out;
	(void)curl_url_get(u, CURLUPART_PORT, &port, 0); /* only if explicit */
	(void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
	err = buf_cat(&w->out, "GET ", path[0] ? path : "/", query ? "?" : "", query ? query : "",
		      " HTTP/1.1\r\nHost: ", host, port ? ":" : "", port ? port : "", "\r\n", NULL);
out:
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	return err;
}

static enum gw_err add_target(struct ws *w, const char *url, size_t olen)
{
	if (!olen) {
		CURLU *u = curl_url();
		if (!u)
			return GW_ENOMEM;
		enum gw_err err = curl_url_set(u, CURLUPART_URL, url, 0) ? GW_EINVAL : add_target_curlu(w, u);
		curl_url_cleanup(u);
		return err;
	}
	const char *authority = strstr(url, "://") + 3;
	const char *target = url + olen;
	enum gw_err err = buf_cat(&w->out, "GET ", *target == '/' ? "" : "/", target,
				  " HTTP/1.1\r\nHost: ", NULL);
	if (!err)
		err = buf_add(&w->out, authority, (size_t)(target - authority));
	return err ? err : buf_adds(&w->out, "\r\n");
}

static enum gw_err build_request(struct ws *w, const char *url, size_t olen, const struct ws_opts *o)
{
	char key[25];
	enum gw_err err = make_key(key);
	if (err)
		return err;
	ws__accept_for_key(key, w->accept);
	if ((err = add_target(w, url, olen)))
		return err;
	err = buf_cat(&w->out, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
		      "\r\nSec-WebSocket-Version: 13\r\n", NULL);
	if (!err && !has_header(o->headers, "User-Agent"))
		err = buf_cat(&w->out, "User-Agent: ", httpc__user_agent(w->h), "\r\n", NULL);
	for (const char *const *hp = o->headers; !err && hp && *hp; hp++) {
		if (strpbrk(*hp, "\r\n") || !strchr(*hp, ':'))
			return GW_EINVAL; /* no header injection */
		err = buf_cat(&w->out, *hp, "\r\n", NULL);
	}
	return err ? err : buf_adds(&w->out, "\r\n");
}

/* curl gets only the origin when it can: a CONNECT_ONLY handle uses no
 * more, and curl 7.88 prints a URL byte by byte, several times. */
static enum gw_err setup_easy(struct ws *w, const char *url, size_t olen)
{
	enum gw_err err = httpc__setup_easy(w->h, w->easy);
	if (!err && olen)
		err = httpc__set_origin(w->easy, url, olen);
	else if (!err && curl_easy_setopt(w->easy, CURLOPT_URL, url))
		err = GW_ECONFIG;
	if (err)
		return err;
	if (curl_easy_setopt(w->easy, CURLOPT_CONNECT_ONLY, 1L) ||
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
	w->io.fd = CURL_SOCKET_BAD;
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
	w->easy = httpc__easy_get(h);
	w->timer = evtimer_new(httpc__base(h), on_timer, w);
	err = GW_ENOMEM;
	size_t olen = h1c_origin_len(url);
	if (!w->easy || !w->timer || (err = build_request(w, url, olen, o)) ||
	    (err = setup_easy(w, url, olen)))
		goto fail;
	struct timeval tv = { w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000 };
	if (evtimer_add(w->timer, &tv) != 0) {
		err = GW_EIO;
		goto fail;
	}
	if ((err = httpc__add(h, w->easy, &w->owner, true)))
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
	if (!w || w->freed || w->state != WS_OPEN || w->user_closed || w->close_rcvd ||
	    w->send_err)
		return GW_EIO;
	if (queued(w)) {
		/* Behind other frames: it waits, as a copy. */
		struct ws_out *f = out_new(WSLAY_TEXT_FRAME, p, n);
		if (!f)
			return GW_ENOMEM;
		out_data(w, f);
		if (w->depth == 0)
			settle(w); /* it goes when the fd is writable; a pass now would find it full */
		return GW_OK;
	}
	/* Nothing ahead: send from the caller's bytes at once (no user
	 * callback runs from here), and copy only a tail the socket did not
	 * take. */
	struct ws_out now = { .p = (uint8_t *)p, .len = n, .opcode = WSLAY_TEXT_FRAME };
	enum gw_err err = send_frame(w, &now);
	if (err == GW_EAGAIN) {
		/* wslay is inside this frame now, so the tail goes next. */
		struct ws_out *f = out_new(WSLAY_TEXT_FRAME, p + now.off, n - now.off);
		if (f) {
			f->len = n;
			f->off = f->skip = now.off;
			w->cur = f;
		} else {
			err = GW_ENOMEM;
		}
	}
	if (err == GW_OK || err == GW_EAGAIN) {
		/* Gives the parser back if the frame went whole; otherwise the
		 * rest goes when the fd is writable. */
		if (w->depth == 0)
			settle(w);
		return GW_OK;
	}
	w->send_err = err; /* the frame is cut: on_close tells, from the loop */
	kick(w);
	return err == GW_ENOMEM ? GW_ENOMEM : GW_OK;
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
	/* After the messages already queued; 0 sends a close without a code. */
	queue_close(w, (uint16_t)code, false);
	struct timeval tv = { w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000 };
	evtimer_add(w->timer, &tv);
	kick(w);
}

/* Test hook: the frame and message layers over a plain connected fd, as if
 * curl had connected it and the server had answered 101. */
enum gw_err ws__adopt_fd(struct httpc *h, int fd, size_t max_msg_bytes, const struct ws_cbs *cbs,
			 void *arg, struct ws **out)
{
	struct ws_opts o = { .url = "ws://adopted", .max_msg_bytes = max_msg_bytes };
	struct ws *w = ws_alloc(h, &o, cbs, arg);
	if (!w)
		return GW_ENOMEM;
	w->timer = evtimer_new(httpc__base(h), on_timer, w);
	cio_attach_fd(&w->io, fd);
	if (!w->timer || attach_fd(w)) {
		destroy(w);
		return GW_ENOMEM;
	}
	*out = w;
	enter(w);
	upgraded(w, 0);
	settle(w);
	leave(w);
	return GW_OK;
}
