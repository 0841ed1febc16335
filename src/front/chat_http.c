/* chat_http.c - POST /v1/chat/completions: from the HTTP request to the
 * core call, and the reply back as SSE chunks or one JSON object. */
#include "config.h"
#include "core/app.h"
#include "core/call.h"
#include "front/openai.h"
#include "front/server.h"
#include "util/buf.h"
#include "util/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#define SSE_HIWAT (64 * 1024) /* stop reading upstream above this much unsent output */

struct chat_http {
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct req_ctx *ctx;
	struct call *call;
	bool stream;
	bool include_usage;
	bool started;        /* SSE headers sent */
	bool paused;
	int prompt_tokens;
	int completion_tokens;
	struct oai_stream ids;
	struct buf text;     /* stream:false */
	struct buf reasoning;
	struct buf out;      /* scratch for one SSE event */
	struct evbuffer *eb; /* reused for every chunk: evhttp drains it */
	struct event *keepalive;
	uint64_t last_write_us;
};

static void ch_free(struct chat_http *ch)
{
	if (ch->keepalive)
		event_free(ch->keepalive);
	if (ch->eb)
		evbuffer_free(ch->eb);
	buf_release(&ch->text);
	buf_release(&ch->reasoning);
	buf_release(&ch->out);
	req_ctx_free(ch->ctx);
	gw_free(ch);
}

static size_t unsent_bytes(struct chat_http *ch)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(ch->evcon);
	return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void on_drained(struct evhttp_connection *evcon, void *arg)
{
	GW_UNUSED(evcon);
	struct chat_http *ch = arg;
	if (ch->paused && ch->call) {
		ch->paused = false;
		call_resume(ch->call);
	}
}

/* Sends ch->out as one chunk; returns false when the client is backed up. */
static bool flush_out(struct chat_http *ch)
{
	if (evbuffer_add(ch->eb, ch->out.p, ch->out.len) != 0) {
		buf_reset(&ch->out);
		return true;
	}
	buf_reset(&ch->out);
	evhttp_send_reply_chunk_with_cb(ch->req, ch->eb, on_drained, ch);
	ch->last_write_us = gw_now_us();
	if (unsent_bytes(ch) > SSE_HIWAT)
		ch->paused = true;
	return !ch->paused;
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct chat_http *ch = arg;
	uint64_t iv = (uint64_t)ch->ctx->cfg->keepalive_interval * 1000000u;
	if (gw_now_us() - ch->last_write_us >= iv - iv / 10 && !ch->paused) {
		if (buf_adds(&ch->out, ": keep-alive\n\n") == GW_OK)
			(void)flush_out(ch);
	}
	struct timeval tv = { ch->ctx->cfg->keepalive_interval, 0 };
	evtimer_add(ch->keepalive, &tv);
}

/* The last byte of the reply reached the socket: shutdown may proceed. */
static void on_complete(struct evhttp_request *req, void *arg)
{
	GW_UNUSED(req);
	struct app *app = arg;
	atomic_fetch_sub(&app->flushing, 1);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
	GW_UNUSED(evcon);
	struct chat_http *ch = arg;
	evhttp_request_set_on_complete_cb(ch->req, NULL, NULL);
	atomic_fetch_sub(&ch->ctx->w->app->flushing, 1);
	/* On a timeout or EOF evhttp detaches an unfinished request from its
	 * connection and leaves it to us; otherwise it frees it itself. */
	if (!evhttp_request_get_connection(ch->req))
		evhttp_request_free(ch->req);
	if (ch->call)
		call_cancel(ch->call);
	ch->call = NULL;
	ch_free(ch);
}

static void sink_start(void *arg, const char *model)
{
	struct chat_http *ch = arg;
	oai_stream_init(&ch->ids, model);
	if (!ch->stream)
		return;
	struct evkeyvalq *h = evhttp_request_get_output_headers(ch->req);
	server_add_common_headers(ch->req, ch->ctx);
	evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_send_reply_start(ch->req, 200, "OK");
	ch->started = true;
	if (oai_sse_role(&ch->out, &ch->ids) == GW_OK)
		(void)flush_out(ch);
	struct timeval tv = { ch->ctx->cfg->keepalive_interval, 0 };
	evtimer_add(ch->keepalive, &tv);
}

static bool sink_piece(void *arg, enum chat_ev_kind kind, const char *text, size_t len)
{
	struct chat_http *ch = arg;
	bool reasoning = kind == CHAT_EV_REASONING;
	if (!reasoning)
		ch->completion_tokens += oai_estimate_tokens(text, len);
	if (!ch->stream) {
		if (buf_add(reasoning ? &ch->reasoning : &ch->text, text, len) != GW_OK)
			log_warn(ch->ctx->rid, "reply larger than the buffer; cut");
		return true;
	}
	if (oai_sse_delta(&ch->out, &ch->ids, text, len, reasoning) != GW_OK)
		return true;
	return flush_out(ch);
}

static void finish_stream(struct chat_http *ch, const struct chat_error *e)
{
	enum gw_err err;
	if (e) {
		err = oai_sse_error(&ch->out, e);
	} else {
		err = oai_sse_finish(&ch->out, &ch->ids, "stop");
		if (!err && ch->include_usage)
			err = oai_sse_usage(&ch->out, &ch->ids, ch->prompt_tokens, ch->completion_tokens);
	}
	if (!err)
		err = buf_adds(&ch->out, OAI_SSE_DONE);
	if (!err)
		(void)flush_out(ch);
	evhttp_connection_set_closecb(ch->evcon, NULL, NULL);
	evhttp_send_reply_end(ch->req);
}

static void sink_end(void *arg, const struct chat_error *e)
{
	struct chat_http *ch = arg;
	ch->call = NULL;
	if (ch->started) {
		finish_stream(ch, e);
	} else {
		evhttp_connection_set_closecb(ch->evcon, NULL, NULL);
		if (e) {
			server_reply_error(ch->req, ch->ctx, e);
		} else {
			struct buf b;
			buf_init(&b, (size_t)ch->ctx->cfg->max_reply_bytes * 7 + 4096);
			if (oai_completion_json(&b, &ch->ids, ch->text.p ? ch->text.p : "", ch->text.len,
						ch->reasoning.p, ch->reasoning.len, "stop", ch->prompt_tokens,
						ch->completion_tokens) == GW_OK) {
				server_reply_json(ch->req, ch->ctx, 200, b.p, b.len);
			} else {
				struct chat_error oom;
				chat_error_set(&oom, 500, "server_error", NULL, "could not encode the reply");
				server_reply_error(ch->req, ch->ctx, &oom);
			}
			buf_release(&b);
		}
	}
	ch_free(ch);
}

/* Pieces are small and must leave at once: without this a kept-alive
 * client's delayed ACK holds each one up to 40 ms (Nagle). */
static void no_delay(struct evhttp_connection *evcon)
{
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	int one = 1;
	if (bev && bufferevent_getfd(bev) >= 0)
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static const struct call_sink http_sink = { sink_start, sink_piece, sink_end };

static bool parse_body(struct evhttp_request *req, struct req_ctx *ctx, struct chat_req **out)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
	struct chat_error e;
	if (oai_parse_chat(body, len, out, &e) != GW_OK) {
		server_reply_error(req, ctx, &e);
		return false;
	}
	return true;
}

void chat_http_handle(struct evhttp_request *req, struct req_ctx *ctx)
{
	struct chat_req *creq;
	struct app *app = ctx->w->app;
	if (atomic_load(&app->streams) >= ctx->cfg->max_streams) {
		struct chat_error e;
		chat_error_set(&e, 503, "unavailable", "too_many_streams",
			       "The gateway is at MAX_STREAMS; retry shortly.");
		e.retry_after = 1;
		server_reply_error(req, ctx, &e);
		req_ctx_free(ctx);
		return;
	}
	if (!parse_body(req, ctx, &creq)) {
		req_ctx_free(ctx);
		return;
	}
	memcpy(creq->tenant, ctx->tenant, sizeof(creq->tenant));
	struct chat_http *ch = gw_calloc(1, sizeof(*ch));
	if (!ch) {
		chat_req_free(creq);
		evhttp_send_error(req, 503, "Service Unavailable");
		req_ctx_free(ctx);
		return;
	}
	ch->req = req;
	ch->evcon = evhttp_request_get_connection(req);
	no_delay(ch->evcon);
	ch->ctx = ctx;
	ch->stream = creq->stream;
	ch->include_usage = creq->include_usage;
	ch->prompt_tokens = oai_prompt_tokens(creq);
	buf_init(&ch->text, (size_t)ctx->cfg->max_reply_bytes);
	buf_init(&ch->reasoning, (size_t)ctx->cfg->max_reply_bytes);
	buf_init(&ch->out, (size_t)ctx->cfg->max_reply_bytes * 7 + 4096);
	ch->keepalive = evtimer_new(ctx->w->base, on_keepalive, ch);
	ch->eb = evbuffer_new();
	log_debug(ctx->rid, "chat %s, %zu message(s), model %.80s", creq->stream ? "stream" : "json", creq->n_msgs,
		  creq->model ? creq->model : "(default)");
	if (!ch->keepalive || !ch->eb || call_start(ctx->w, creq, ctx->rid, &http_sink, ch, &ch->call) != GW_OK) {
		struct chat_error e;
		chat_error_set(&e, 503, "unavailable", NULL, "The gateway is out of resources; retry shortly.");
		server_reply_error(req, ctx, &e);
		ch_free(ch);
		return;
	}
	atomic_fetch_add(&ctx->w->app->flushing, 1);
	evhttp_request_set_on_complete_cb(req, on_complete, ctx->w->app);
	evhttp_connection_set_closecb(ch->evcon, on_client_close, ch);
}
