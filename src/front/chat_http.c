/* chat_http.c - POST /v1/chat/completions: from the HTTP request to the
 * core call, and the reply back as SSE chunks or one JSON object. */
#include "config.h"
#include "core/app.h"
#include "core/call.h"
#include "front/h1.h"
#include "front/openai.h"
#include "front/server.h"
#include "util/buf.h"
#include "util/log.h"

#include <event2/event.h>
#include <string.h>

#define SSE_HIWAT (64 * 1024) /* stop reading upstream above this much unsent output */

struct chat_http {
	struct h1_req *req;
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
	struct buf out;      /* SSE events not yet handed to h1 */
	struct event *keepalive;
	struct event *flush; /* stream only: hands out to h1 once the pieces at hand are in */
	bool flush_queued;   /* flush is active: spares event_active, which locks the base, per piece */
	uint64_t last_write_us;
};

static void ch_free(struct chat_http *ch)
{
	if (ch->keepalive)
		event_free(ch->keepalive);
	if (ch->flush)
		event_free(ch->flush);
	buf_release(&ch->text);
	buf_release(&ch->reasoning);
	buf_release(&ch->out);
	oai_stream_release(&ch->ids);
	req_ctx_free(ch->ctx);
	gw_free(ch);
}

static void on_drained(struct h1_req *req, void *arg)
{
	GW_UNUSED(req);
	struct chat_http *ch = arg;
	if (ch->paused && ch->call) {
		ch->paused = false;
		call_resume(ch->call);
	}
}

/* Sends ch->out as one chunk; returns false when the client is backed up.
 * now: from the flush event, at the loop turn's end already. */
static bool send_out(struct chat_http *ch, bool now)
{
	if (!ch->out.len)
		return !ch->paused;
	(now ? h1_write_now : h1_write)(ch->req, ch->out.p, ch->out.len);
	buf_reset(&ch->out);
	ch->last_write_us = gw_now_us();
	if (h1_unsent(ch->req) > SSE_HIWAT)
		ch->paused = true;
	return !ch->paused;
}

static bool flush_out(struct chat_http *ch)
{
	return send_out(ch, false);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct chat_http *ch = arg;
	ch->flush_queued = false;
	(void)send_out(ch, true);
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

/* The last byte of the reply reached the socket (or the client is gone):
 * shutdown may proceed. */
static void on_done(struct h1_req *req, void *arg)
{
	GW_UNUSED(req);
	struct app *app = arg;
	atomic_fetch_sub(&app->flushing, 1);
}

static void on_client_close(struct h1_req *req, void *arg)
{
	GW_UNUSED(req);
	struct chat_http *ch = arg;
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
	server_add_common_headers(ch->req, ch->ctx);
	h1_add_header(ch->req, "Content-Type", "text/event-stream; charset=utf-8");
	h1_add_header(ch->req, "Cache-Control", "no-cache");
	h1_add_header(ch->req, "X-Accel-Buffering", "no");
	h1_start(ch->req, 200);
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
	/* Pieces often come many to one upstream read: they leave as one chunk,
	 * later on this same loop turn, and h1's cost is paid once. Past the
	 * high-water mark the chunk goes now, and the call is told to wait. */
	if (ch->out.len + h1_unsent(ch->req) > SSE_HIWAT)
		return flush_out(ch);
	if (!ch->flush_queued) {
		ch->flush_queued = true;
		event_active(ch->flush, EV_TIMEOUT, 1);
	}
	return true;
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
	h1_end(ch->req);
}

static void sink_end(void *arg, const struct chat_error *e)
{
	struct chat_http *ch = arg;
	ch->call = NULL;
	if (ch->started) {
		finish_stream(ch, e);
	} else {
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

static const struct call_sink http_sink = { sink_start, sink_piece, sink_end };

static bool parse_body(struct h1_req *req, struct req_ctx *ctx, struct chat_req **out)
{
	size_t len;
	const char *body = h1_req_body(req, &len);
	struct chat_error e;
	if (oai_parse_chat(body, len, out, &e) != GW_OK) {
		server_reply_error(req, ctx, &e);
		return false;
	}
	return true;
}

void chat_http_handle(struct h1_req *req, struct req_ctx *ctx)
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
		server_reply_unavailable(req, ctx, "memory");
		req_ctx_free(ctx);
		return;
	}
	ch->req = req;
	ch->ctx = ctx;
	ch->stream = creq->stream;
	ch->include_usage = creq->include_usage;
	ch->prompt_tokens = oai_prompt_tokens(creq);
	buf_init(&ch->text, (size_t)ctx->cfg->max_reply_bytes);
	buf_init(&ch->reasoning, (size_t)ctx->cfg->max_reply_bytes);
	/* out gathers the events of one loop turn, up to SSE_HIWAT, then one more. */
	buf_init(&ch->out, (size_t)ctx->cfg->max_reply_bytes * 7 + 4096 + SSE_HIWAT);
	ch->keepalive = evtimer_new(ctx->w->base, on_keepalive, ch);
	if (ch->stream)
		ch->flush = event_new(ctx->w->base, -1, 0, on_flush, ch);
	log_debug(ctx->rid, "chat %s, %zu message(s), model %.80s", creq->stream ? "stream" : "json", creq->n_msgs,
		  creq->model ? creq->model : "(default)");
	/* Before the call starts: it may end before call_start returns. */
	atomic_fetch_add(&ctx->w->app->flushing, 1);
	h1_set_done_cb(req, on_done, ctx->w->app);
	h1_set_close_cb(req, on_client_close, ch);
	h1_set_drain_cb(req, on_drained, ch);
	enum gw_err err = GW_ENOMEM;
	if (ch->keepalive && (ch->flush || !ch->stream))
		err = call_start(ctx->w, creq, ctx->rid, &http_sink, ch, &ch->call);
	else
		chat_req_free(creq);
	if (err != GW_OK) {
		server_reply_unavailable(req, ctx, "resources");
		ch_free(ch);
		return;
	}
}
