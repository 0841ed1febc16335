/* models_http.c - GET /v1/models and GET /v1/models/{id}. */
#include "config.h"
#include "core/app.h"
#include "core/pool.h"
#include "front/h1.h"
#include "front/openai.h"
#include "front/server.h"
#include "util/buf.h"

#include <stdio.h>
#include <string.h>

struct models_req {
	struct h1_req *req;
	struct req_ctx *ctx;
	struct waiter wt;
	bool waiting;
	char id[256];      /* "" = the list */
};

static void mr_free(struct models_req *mr)
{
	if (mr->waiting)
		pool_models_cancel(mr->ctx->w->app->pool, &mr->wt);
	waiter_fini(&mr->wt);
	req_ctx_free(mr->ctx);
	gw_free(mr);
}

static void answer(struct models_req *mr, const struct models_snap *snap)
{
	struct buf b;
	buf_init(&b, 4u << 20);
	enum gw_err err;
	if (!mr->id[0]) {
		err = oai_models_json(&b, &snap->list, snap->fetched);
	} else {
		const struct model_info *m = models_resolve(&snap->list, mr->id);
		if (!m || !m->enabled) {
			struct chat_error e;
			chat_error_set(&e, 404, "invalid_request_error", "model_not_found",
				       "The model '%.100s' does not exist. List the available models with GET /v1/models.",
				       mr->id);
			server_reply_error(mr->req, mr->ctx, &e);
			buf_release(&b);
			return;
		}
		err = oai_model_json(&b, m, snap->fetched);
	}
	if (err) {
		struct chat_error e;
		chat_error_set(&e, 500, "server_error", NULL, "could not encode the model list");
		server_reply_error(mr->req, mr->ctx, &e);
	} else {
		server_reply_json(mr->req, mr->ctx, 200, b.p, b.len);
	}
	buf_release(&b);
}

/* Returns true when mr was answered (and freed). */
static bool try_answer(struct models_req *mr)
{
	const struct models_snap *snap;
	struct chat_error e;
	enum gw_err err = pool_models(mr->ctx->w->app->pool, mr->ctx->w, &mr->wt, &snap, &e);
	if (err == GW_EAGAIN) {
		mr->waiting = true;
		return false;
	}
	if (err)
		server_reply_error(mr->req, mr->ctx, &e);
	else {
		answer(mr, snap);
		models_snap_unref(snap);
	}
	mr_free(mr);
	return true;
}

static void on_wait(struct waiter *wt, void *arg)
{
	GW_UNUSED(wt);
	struct models_req *mr = arg;
	mr->waiting = false;
	try_answer(mr);
}

static void on_close(struct h1_req *req, void *arg)
{
	GW_UNUSED(req);
	mr_free(arg);
}

static void start(struct h1_req *req, struct req_ctx *ctx, const char *id)
{
	struct models_req *mr = gw_calloc(1, sizeof(*mr));
	if (!mr || waiter_init(&mr->wt, ctx->w->base, on_wait, mr) != GW_OK) {
		gw_free(mr);
		server_reply_unavailable(req, ctx, "memory");
		req_ctx_free(ctx);
		return;
	}
	mr->req = req;
	mr->ctx = ctx;
	snprintf(mr->id, sizeof(mr->id), "%s", id);
	if (!try_answer(mr))
		h1_set_close_cb(req, on_close, mr);
}

void models_http_list(struct h1_req *req, struct req_ctx *ctx)
{
	start(req, ctx, "");
}

/* Model ids may hold '/' or ':' sent percent-encoded; a bad escape stays as sent. */
static void percent_decode(const char *s, char *out, size_t n)
{
	size_t o = 0;
	for (; *s && o + 1 < n; s++) {
		int hi, lo;
		if (*s == '%' && (hi = gw_hexval(s[1])) >= 0 && (lo = gw_hexval(s[2])) >= 0 && (hi || lo)) {
			out[o++] = (char)(hi * 16 + lo);
			s += 2;
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

void models_http_get(struct h1_req *req, struct req_ctx *ctx, const char *id)
{
	char dec[256];
	percent_decode(id, dec, sizeof(dec));
	start(req, ctx, dec);
}
