/* ctonew.c - one prompt/reply exchange with cto.new (both flows). */
#include "provider/ctonew.h"
#include "config.h"
#include "core/app.h"
#include "core/cleanup.h"
#include "core/pool.h"
#include "net/httpc.h"
#include "net/ws.h"
#include "provider/parse.h"
#include "provider/upstream.h"
#include "util/buf.h"
#include "util/log.h"

#include <event2/event.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TURN_PING_S 30
#define TURN_WS_MAX_MSG (8u << 20)

enum turn_step { ST_CREDS, ST_PROJECT, ST_WS, ST_GATE, ST_MODEL, ST_OFFERS, ST_CHAT, ST_STREAM };

struct turn {
	struct worker *w;
	struct account *a;
	struct gw_config *cfg;
	struct model_info model;
	char chat_id[128];
	char workspace[128];
	char rid[24];
	char *prompt;
	size_t prompt_len;
	bool new_chat;
	enum turn_step step;

	struct account_creds creds;
	bool forced;               /* a JWT refresh was already forced once */
	bool force_next;           /* the next credentials request forces it */
	struct waiter wt;
	bool waiting_creds, waiting_gate;
	bool gate_held;
	struct httpc_call *http;
	struct ws *ws;

	struct piece_tracker chat_tr, think_tr;
	bool seen_in_progress;
	bool got_piece;
	bool posted;               /* the chat POST went out */
	bool accepted;
	bool paused;
	size_t reply_bytes;
	struct event *timer;       /* first-piece / idle deadline */
	uint64_t last_piece_us;    /* when the last piece came; once set, the timer runs the idle deadline */
	struct event *ping;

	struct turn_cbs cbs;
	void *arg;
	int depth;                 /* callbacks of ours on the stack */
	bool ended;
};

static void turn_free(struct turn *t)
{
	account_creds_release(&t->creds);
	waiter_fini(&t->wt);
	if (t->timer)
		event_free(t->timer);
	if (t->ping)
		event_free(t->ping);
	piece_tracker_release(&t->chat_tr);
	piece_tracker_release(&t->think_tr);
	config_unref(t->cfg);
	gw_free(t->prompt);
	gw_free(t);
}

static void enter(struct turn *t)
{
	t->depth++;
}

/* Leaves a callback; frees the turn if it ended meanwhile. */
static void leave(struct turn *t)
{
	if (--t->depth == 0 && t->ended)
		turn_free(t);
}

/* Releases everything that talks to the outside. */
static void turn_stop(struct turn *t)
{
	if (t->waiting_creds)
		account_wait_cancel(t->a, &t->wt);
	if (t->waiting_gate)
		account_wait_cancel(t->a, &t->wt);
	t->waiting_creds = t->waiting_gate = false;
	if (t->gate_held) {
		account_model_release(t->a);
		t->gate_held = false;
	}
	if (t->http) {
		httpc_call_cancel(t->http);
		t->http = NULL;
	}
	ws_free(t->ws);
	t->ws = NULL;
	if (t->timer)
		evtimer_del(t->timer);
	if (t->ping)
		evtimer_del(t->ping);
}

static void turn_end(struct turn *t, const struct chat_error *e)
{
	if (t->ended)
		return;
	t->ended = true;
	turn_stop(t);
	t->cbs.on_end(t->arg, e);
}

static void turn_fail(struct turn *t, int status, const char *type, const char *code, const char *fmt,
		      ...) GW_PRINTF(5, 6);

static void turn_fail_with(struct turn *t, const struct chat_error *e)
{
	log_warn(t->rid, "upstream: %s", e->message);
	turn_end(t, e);
}

static void turn_fail(struct turn *t, int status, const char *type, const char *code, const char *fmt, ...)
{
	struct chat_error e;
	va_list ap;
	chat_error_set(&e, status, type, code, "%s", "");
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof(e.message), fmt, ap);
	va_end(ap);
	turn_fail_with(t, &e);
}

/* The gateway itself ran out of descriptors or memory: not the upstream's
 * fault nor the account's (the breaker must not count it), and soon over. */
static void fail_local(struct turn *t, const char *what)
{
	struct chat_error e;
	chat_error_local(&e, what);
	turn_fail_with(t, &e);
}

static void fail_resp(struct turn *t, const char *what, const struct httpc_resp *r)
{
	if (r->err == GW_ENOMEM) {
		fail_local(t, what);
		return;
	}
	if (r->err != GW_OK) {
		turn_fail(t, r->err == GW_ETIMEOUT ? 504 : 502, r->err == GW_ETIMEOUT ? "timeout" : "upstream_error",
			  "upstream_unreachable", "The upstream could not be reached (%s): %s", what, r->error);
		return;
	}
	char ex[200];
	engine_error_excerpt(r->body, r->body_len, ex, sizeof(ex));
	turn_fail(t, 502, "upstream_error", "upstream_error", "The upstream refused %s (HTTP %ld): %s", what,
		  r->status, ex);
}

static void step(struct turn *t);

static void arm(struct event *ev, long seconds)
{
	struct timeval tv = { seconds, 0 };
	evtimer_add(ev, &tv);
}

/* ---- REST steps ------------------------------------------------------ */

static bool start_engine(struct turn *t, const char *method, const char *path, const struct buf *body,
			 httpc_done_cb *cb)
{
	enum gw_err err = upstream_engine(t->w->httpc, t->cfg, method, path, t->creds.jwt, body ? body->p : NULL,
					  body ? body->len : 0, cb, t, &t->http);
	if (err) {
		turn_fail(t, 500, "server_error", NULL, "cannot start the upstream call (%s)", gw_strerror(err));
		return false;
	}
	return true;
}

/* A 401 from EngineLabs: the JWT was refused. Once per turn, mint a new one
 * and start over - safe because nothing reached the upstream chat yet. */
static bool retry_auth(struct turn *t, const struct httpc_resp *r)
{
	if (r->err != GW_OK || r->status != 401 || t->forced || t->accepted)
		return false;
	log_info(t->rid, "upstream refused the JWT; refreshing it and retrying");
	t->forced = true;
	t->force_next = true;
	t->posted = false;
	ws_free(t->ws); /* the new attempt opens its own stream */
	t->ws = NULL;
	account_creds_release(&t->creds);
	if (t->gate_held) {
		account_model_release(t->a);
		t->gate_held = false;
	}
	t->step = ST_CREDS;
	step(t);
	return true;
}

static void on_project(const struct httpc_resp *r, void *arg)
{
	struct turn *t = arg;
	enter(t);
	t->http = NULL;
	struct engine_project p;
	if (retry_auth(t, r)) {
	} else if (r->err != GW_OK || r->status < 200 || r->status > 299) {
		fail_resp(t, "creating a project", r);
	} else if (engine_parse_project(r->body, r->body_len, &p) != GW_OK) {
		turn_fail(t, 502, "upstream_error", "upstream_protocol", "The upstream's project reply is not understood.");
	} else {
		snprintf(t->chat_id, sizeof(t->chat_id), "%s", p.project_id);
		snprintf(t->workspace, sizeof(t->workspace), "%s", p.workspace_id);
		log_debug(t->rid, "new upstream chat %s", t->chat_id);
		/* Only now can the chat be proven ours later (the list does not say). */
		cleanup_note_chat(t->w->app->store, t->cfg, account_id(t->a), t->chat_id, t->workspace);
		t->step = ST_WS;
		step(t);
	}
	leave(t);
}

static void on_model(const struct httpc_resp *r, void *arg)
{
	struct turn *t = arg;
	enter(t);
	t->http = NULL;
	bool ok = r->err == GW_OK && r->status >= 200 && r->status <= 299;
	account_model_switched(t->a, t->model.key, ok);
	if (retry_auth(t, r)) {
	} else if (!ok) {
		fail_resp(t, "selecting the model", r);
	} else {
		log_info(t->rid, "%s: preferred model set to %s", account_id(t->a), t->model.key);
		t->step = ST_OFFERS;
		step(t);
	}
	leave(t);
}

static void on_offers(const struct httpc_resp *r, void *arg)
{
	struct turn *t = arg;
	enter(t);
	t->http = NULL;
	if (retry_auth(t, r)) {
	} else {
		/* The web app calls it before each message; its failure alone
		 * does not stop a chat. */
		if (r->err != GW_OK || r->status >= 300)
			log_info(t->rid, "offers call failed (HTTP %ld), continuing", r->status);
		t->step = ST_CHAT;
		step(t);
	}
	leave(t);
}

static void chat_refused(struct turn *t, const struct httpc_resp *r)
{
	char ex[200];
	struct chat_error e;
	if (r->err != GW_OK || r->status >= 500 || r->status < 400) {
		fail_resp(t, "the chat message", r);
		return;
	}
	engine_error_excerpt(r->body, r->body_len, ex, sizeof(ex));
	if (r->status == 429) {
		struct engine_billing b = { 0 };
		if (engine_parse_billing(r->body, r->body_len, &b) != GW_OK)
			b.retry_at = 0;
		chat_error_set(&e, 429, "rate_limit_error", "upstream_quota",
			       "The upstream account is at its limit: %s", ex);
		int64_t wait = b.retry_at > 0 ? b.retry_at - gw_wall_s() : 60;
		e.retry_after = wait < 1 ? 1 : wait > 86400 ? 86400 : (int)wait;
	} else if (r->status == 413) {
		chat_error_set(&e, 413, "invalid_request_error", "prompt_too_large",
			       "The upstream refused the prompt as too large: %s", ex);
	} else {
		chat_error_set(&e, 502, "upstream_error", "upstream_error",
			       "The upstream refused the chat message (HTTP %ld): %s", r->status, ex);
	}
	log_warn(t->rid, "upstream: %s", e.message);
	turn_end(t, &e);
}

/* The reply begins: by the chat POST's 202, or by the first sign of the
 * task on the stream, whichever comes first - the stream can beat the
 * POST's answer, and its pieces must not be dropped. */
static void accept_now(struct turn *t, const char *why)
{
	if (t->accepted)
		return;
	t->accepted = true;
	log_debug(t->rid, "prompt accepted (%s)", why);
	t->step = ST_STREAM;
	arm(t->timer, t->cfg->first_piece_timeout);
	t->cbs.on_accepted(t->arg, t->chat_id, t->workspace);
}

static void on_chat(const struct httpc_resp *r, void *arg)
{
	struct turn *t = arg;
	enter(t);
	t->http = NULL;
	if (t->gate_held) {
		account_model_release(t->a);
		t->gate_held = false;
	}
	bool ok = r->err == GW_OK && r->status >= 200 && r->status <= 299;
	if (t->accepted) {
		if (!ok) /* the stream already carries the reply: believe it */
			log_warn(t->rid, "chat POST answered %ld after the reply had started", r->status);
	} else if (retry_auth(t, r)) {
	} else if (!ok) {
		chat_refused(t, r);
	} else {
		accept_now(t, "202");
	}
	leave(t);
}

static enum gw_err chat_body(struct turn *t, struct buf *b)
{
	enum gw_err err;
	if (t->cfg->engine_flow == FLOW_2025) {
		err = buf_adds(b, "{\"prompt\":\"");
		if (!err)
			err = buf_add_json_str(b, t->prompt, t->prompt_len);
		if (!err)
			err = buf_cat(b, "\",\"adapterName\":\"", t->model.agent_key, "\",\"chatHistoryId\":\"",
				      t->chat_id, "\"}", NULL);
		return err;
	}
	size_t enc = 4 * ((t->prompt_len + 2) / 3);
	err = buf_adds(b, "{\"prompt\":\"");
	if (!err)
		err = buf_reserve(b, enc + 1);
	if (!err) {
		/* base64: without it the upstream loses some characters. */
		int n = EVP_EncodeBlock((unsigned char *)b->p + b->len, (const unsigned char *)t->prompt,
					(int)t->prompt_len);
		b->len += (size_t)n;
		b->p[b->len] = '\0';
		err = buf_cat(b, "\",\"encoded\":true,\"chatHistoryId\":\"", t->chat_id, "\"}", NULL);
	}
	return err;
}

/* ---- the WebSocket --------------------------------------------------- */

static bool deliver(struct turn *t, enum chat_ev_kind kind, struct piece_tracker *tr,
		    const struct frame_item *it)
{
	const char *d;
	size_t dl;
	if (piece_tracker_feed(tr, it->id, it->id_len, it->text, it->len, &d, &dl) != GW_OK ||
	    t->reply_bytes + dl > (size_t)t->cfg->max_reply_bytes) {
		turn_fail(t, 502, "upstream_error", "reply_too_large", "The reply is larger than MAX_REPLY_BYTES.");
		return false;
	}
	t->got_piece = true;
	if (dl == 0)
		return true;
	t->reply_bytes += dl;
	/* The idle deadline is armed once; on_deadline moves it on from the
	 * last piece, so a piece costs a clock read, not a timer re-arm. */
	bool first = t->last_piece_us == 0;
	t->last_piece_us = gw_now_us();
	if (first)
		arm(t->timer, t->cfg->idle_timeout);
	if (!t->cbs.on_piece(t->arg, kind, d, dl) && !t->paused && t->ws) {
		t->paused = true;
		ws_pause(t->ws, true);
	}
	return !t->ended;
}

static bool on_item(void *arg, const struct frame_item *it)
{
	struct turn *t = arg;
	if (t->ended)
		return false;
	switch (it->kind) {
	case FRAME_STATE:
		if (it->in_progress && t->posted) {
			t->seen_in_progress = true;
			accept_now(t, "task started");
		} else if (t->accepted && (t->seen_in_progress || t->got_piece)) {
			/* inProgress:false right after connect means idle, not done. */
			log_debug(t->rid, "reply complete (%zu bytes)", t->reply_bytes);
			turn_end(t, NULL);
			return false;
		}
		return true;
	case FRAME_CHAT:
	case FRAME_THINKING:
		if (!t->posted)
			return true; /* history of an earlier turn */
		accept_now(t, "first piece");
		if (t->ended)
			return false;
		if (it->kind == FRAME_CHAT)
			return deliver(t, CHAT_EV_TEXT, &t->chat_tr, it);
		return deliver(t, CHAT_EV_REASONING, &t->think_tr, it);
	case FRAME_OTHER:
		log_info(t->rid, "upstream frame of type '%.*s' skipped", (int)(it->type_len > 40 ? 40 : it->type_len),
			 it->type);
		return true;
	default:
		return true;
	}
}

static void ws_on_text(void *arg, const char *p, size_t n)
{
	struct turn *t = arg;
	enter(t);
	enum gw_err err = frame_parse(p, n, on_item, t);
	if (err == GW_EPROTO && !t->ended)
		log_warn(t->rid, "malformed upstream frame (%zu bytes) skipped", n);
	leave(t);
}

static void ws_on_open(void *arg)
{
	struct turn *t = arg;
	enter(t);
	log_debug(t->rid, "reply stream open");
	arm(t->ping, TURN_PING_S);
	t->step = t->cfg->engine_flow == FLOW_2025 ? ST_CHAT : ST_GATE;
	step(t);
	leave(t);
}

static void ws_on_close(void *arg, enum gw_err err, int code, int http_status)
{
	struct turn *t = arg;
	enter(t);
	ws_free(t->ws); /* after on_close the ws is still ours to free */
	t->ws = NULL;
	if (!t->accepted && (err == GW_EAUTH || http_status == 401) && !t->forced) {
		struct httpc_resp fake = { .err = GW_OK, .status = 401 };
		retry_auth(t, &fake);
	} else if (!t->accepted && err == GW_ENOMEM) {
		fail_local(t, "the reply stream");
	} else if (!t->accepted && http_status) {
		turn_fail(t, 502, "upstream_error", "upstream_stream", "The upstream refused the reply stream (HTTP %d).",
			  http_status);
	} else {
		turn_fail(t, err == GW_ETIMEOUT ? 504 : 502, err == GW_ETIMEOUT ? "timeout" : "upstream_error",
			  "upstream_stream_closed", "The upstream reply stream ended before the reply did (%s, code %d).",
			  gw_strerror(err), code);
	}
	leave(t);
}

static const struct ws_cbs turn_ws_cbs = { ws_on_open, ws_on_text, ws_on_close };

static void open_ws(struct turn *t)
{
	struct buf url, ck, origin;
	buf_init(&url, 4096);
	buf_init(&ck, 16384);
	buf_init(&origin, 1024);
	enum gw_err err = buf_cat(&url, t->cfg->engine_ws_base_url, "/engine-agent/chat-histories/",
				  t->chat_id, "/buffer/stream?token=", t->creds.user_id, NULL);
	if (!err && t->cfg->engine_flow == FLOW_2026)
		err = buf_cat(&url, "%3A", t->creds.org_id, "&workspaceId=", t->workspace, NULL);
	/* The cookie may have rotated since the credentials were taken. */
	char *cookie = account_cookie(t->a);
	if (!err)
		err = cookie ? buf_cat(&ck, "Cookie: __client=", cookie, NULL) : GW_ENOMEM;
	account_cookie_free(cookie);
	if (!err)
		err = buf_cat(&origin, "Origin: ", t->cfg->upstream_origin, NULL);
	if (!err) {
		const char *hdrs[] = { origin.p, ck.p, NULL };
		struct ws_opts o = { .url = url.p, .headers = hdrs,
				     .connect_timeout_ms = t->cfg->upstream_connect_timeout * 1000,
				     .max_msg_bytes = TURN_WS_MAX_MSG };
		err = ws_open(t->w->httpc, &o, &turn_ws_cbs, t, &t->ws);
	}
	if (ck.p)
		memset(ck.p, 0, ck.cap);
	buf_release(&url);
	buf_release(&ck);
	buf_release(&origin);
	if (err)
		turn_fail(t, 500, "server_error", NULL, "cannot open the upstream stream (%s)", gw_strerror(err));
}

/* ---- the steps ------------------------------------------------------- */

static void on_wait(struct waiter *wt, void *arg)
{
	GW_UNUSED(wt);
	struct turn *t = arg;
	enter(t);
	t->waiting_creds = false;
	if (t->waiting_gate) {
		t->waiting_gate = false;
		t->gate_held = true;
		t->step = t->wt.flag ? ST_MODEL : ST_OFFERS;
	}
	step(t);
	leave(t);
}

static void step_creds(struct turn *t)
{
	struct chat_error e;
	/* Force only the first ask: asking again after the wait must take the
	 * JWT that wait produced, not throw it away. */
	bool force = t->force_next;
	t->force_next = false;
	enum gw_err err = account_creds_get(t->a, t->w, force, &t->wt, &t->creds, &e);
	if (err == GW_EAGAIN) {
		t->waiting_creds = true;
		return;
	}
	if (err) {
		log_warn(t->rid, "upstream credentials: %s", e.message);
		turn_end(t, &e);
		return;
	}
	if (!t->new_chat)
		t->step = ST_WS;
	else if (t->cfg->engine_flow == FLOW_2026)
		t->step = ST_PROJECT;
	else
		t->step = ST_WS;
	step(t);
}

static void step_gate(struct turn *t)
{
	bool need_switch = false;
	enum gw_err err = account_model_acquire(t->a, t->model.key, &t->wt, &need_switch);
	if (err == GW_EAGAIN) {
		log_debug(t->rid, "waiting for the account's model to be free");
		t->waiting_gate = true;
		return;
	}
	t->gate_held = true;
	t->step = need_switch ? ST_MODEL : ST_OFFERS;
	step(t);
}

static void step(struct turn *t)
{
	struct buf b;
	buf_init(&b, 64u << 20);
	switch (t->step) {
	case ST_CREDS:
		step_creds(t);
		break;
	case ST_PROJECT:
		if (buf_cat(&b, "{\"projectName\":\"enginelabs-2api ", t->rid, "\"}", NULL) == GW_OK)
			start_engine(t, "POST", "/projects/create-hosted", &b, on_project);
		break;
	case ST_WS:
		open_ws(t);
		break;
	case ST_GATE:
		step_gate(t);
		break;
	case ST_MODEL:
		if (buf_cat(&b, "{\"modelKey\":\"", t->model.key, "\"}", NULL) == GW_OK)
			start_engine(t, "PATCH", "/teams/preferred-model", &b, on_model);
		break;
	case ST_OFFERS:
		if (buf_cat(&b, "{\"chatHistoryId\":\"", t->chat_id, "\",\"surface\":\"ENGINE_AGENT\"}", NULL) == GW_OK)
			start_engine(t, "POST", "/engine-agent/offers", &b, on_offers);
		break;
	case ST_CHAT:
		if (chat_body(t, &b) == GW_OK)
			t->posted = start_engine(t, "POST", "/engine-agent/chat", &b, on_chat);
		else
			turn_fail(t, 500, "server_error", NULL, "out of memory");
		break;
	case ST_STREAM:
		break;
	}
	buf_release(&b);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct turn *t = arg;
	if (t->last_piece_us) {
		uint64_t idle_us = (uint64_t)t->cfg->idle_timeout * 1000000u;
		uint64_t since = gw_now_us() - t->last_piece_us;
		if (since < idle_us) {
			uint64_t left = idle_us - since;
			struct timeval tv = { (time_t)(left / 1000000u), (suseconds_t)(left % 1000000u) };
			evtimer_add(t->timer, &tv);
			return;
		}
	}
	enter(t);
	if (t->got_piece)
		turn_fail(t, 504, "timeout", "upstream_idle", "The upstream stopped sending the reply (idle %ld s).",
			  t->cfg->idle_timeout);
	else
		turn_fail(t, 504, "timeout", "upstream_first_piece",
			  "The upstream sent no reply within %ld s.", t->cfg->first_piece_timeout);
	leave(t);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct turn *t = arg;
	if (t->ws && ws_send_text(t->ws, "ping", 4) != GW_OK)
		log_debug(t->rid, "ping not sent");
	arm(t->ping, TURN_PING_S);
}

static void start_post(void *arg)
{
	struct turn *t = arg;
	/* The post held one reference (depth 1 from turn_start). */
	if (t->ended) {
		if (--t->depth == 0)
			turn_free(t);
		return;
	}
	step(t);
	leave(t);
}

static void uuid4(char out[37])
{
	unsigned char r[16];
	if (!gw_random(r, sizeof(r)))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(gw_now_us() >> (i % 8));
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

enum gw_err turn_start(const struct turn_opts *o, const struct turn_cbs *cbs, void *arg, struct turn **out)
{
	struct turn *t = gw_calloc(1, sizeof(*t));
	if (!t)
		return GW_ENOMEM;
	t->w = o->w;
	t->a = o->account;
	t->cfg = config_current();
	t->model = *o->model;
	t->cbs = *cbs;
	t->arg = arg;
	snprintf(t->rid, sizeof(t->rid), "%s", o->rid);
	t->new_chat = !o->chat_id || !*o->chat_id;
	if (t->new_chat && t->cfg->engine_flow == FLOW_2025)
		uuid4(t->chat_id);
	else if (!t->new_chat) {
		snprintf(t->chat_id, sizeof(t->chat_id), "%s", o->chat_id);
		snprintf(t->workspace, sizeof(t->workspace), "%s", o->workspace_id ? o->workspace_id : "");
	}
	piece_tracker_init(&t->chat_tr, (size_t)t->cfg->max_reply_bytes);
	piece_tracker_init(&t->think_tr, (size_t)t->cfg->max_reply_bytes);
	t->prompt = gw_strndup(o->prompt, o->prompt_len);
	t->prompt_len = o->prompt_len;
	t->timer = evtimer_new(t->w->base, on_deadline, t);
	t->ping = evtimer_new(t->w->base, on_ping, t);
	t->depth = 1; /* until start_post runs */
	if (!t->prompt || !t->timer || !t->ping || waiter_init(&t->wt, t->w->base, on_wait, t) != GW_OK ||
	    worker_post(t->w, start_post, t) != GW_OK) {
		t->depth = 0;
		turn_free(t);
		return GW_ENOMEM;
	}
	*out = t;
	return GW_OK;
}

void turn_resume(struct turn *t)
{
	if (t->paused && t->ws && !t->ended) {
		t->paused = false;
		ws_pause(t->ws, false);
	}
}

void turn_cancel(struct turn *t)
{
	if (!t || t->ended)
		return;
	t->ended = true;
	turn_stop(t);
	if (t->depth == 0)
		turn_free(t);
}

bool turn_accepted(const struct turn *t)
{
	return t->accepted;
}
