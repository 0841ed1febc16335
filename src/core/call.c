/* call.c - a chat request's way through the core. */
#include "core/call.h"
#include "config.h"
#include "core/app.h"
#include "core/conversation.h"
#include "core/pool.h"
#include "provider/ctonew.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#define CALL_MAX_ATTEMPTS 3
#define CALL_RETRY_BASE_MS 200
#define CALL_RETRY_BUDGET_US (10u * 1000 * 1000) /* no new attempt after this */

struct call {
	struct call *next, *prev;   /* on the worker's list */
	struct worker *w;
	struct gw_config *cfg;
	struct chat_req *req;
	char rid[24];
	struct call_sink sink;
	void *arg;

	struct waiter wt;
	enum { W_NONE, W_MODELS, W_SLOT } waiting;
	bool slot_held;
	bool started;                  /* the sink was told the reply began */
	int attempts;                  /* upstream exchanges tried */
	struct account *failed;        /* the account the last attempt failed on */
	struct event *retry;
	const struct models_snap *models;
	struct model_info model;
	struct store_op *op;
	struct store_op *save_op;
	size_t prefix;                 /* messages before the new turn */
	bool keyed;                    /* prefix can match a stored key */
	uint8_t key[CONV_KEY_LEN];
	struct conv_entry hit;
	bool have_hit;
	struct account *account;
	struct turn *turn;
	struct buf reply;              /* the answer text, for the next key */
	struct event *deadline;
	struct event *kick;            /* runs the first step from the loop */
	uint64_t started_us;
	bool ended;
};

static void call_free(struct call *c)
{
	struct worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else if (w->calls == c)
		w->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_calls--;
	atomic_fetch_sub(&w->app->streams, 1);
	if (c->waiting == W_MODELS)
		pool_models_cancel(w->app->pool, &c->wt);
	else if (c->waiting == W_SLOT)
		account_wait_cancel(c->account, &c->wt);
	if (c->slot_held)
		account_slot_release(c->account);
	waiter_fini(&c->wt);
	if (c->retry)
		event_free(c->retry);
	if (c->op)
		store_op_cancel(c->op);
	if (c->save_op)
		store_op_cancel(c->save_op);
	if (c->models)
		models_snap_unref(c->models);
	if (c->deadline)
		event_free(c->deadline);
	if (c->kick)
		event_free(c->kick);
	buf_release(&c->reply);
	chat_req_free(c->req);
	config_unref(c->cfg);
	gw_free(c);
}

static void call_end(struct call *c, const struct chat_error *e)
{
	if (c->ended)
		return;
	c->ended = true;
	if (c->turn) {
		turn_cancel(c->turn);
		c->turn = NULL;
	}
	c->sink.on_end(c->arg, e);
	call_free(c);
}

static void call_fail(struct call *c, int status, const char *type, const char *code, const char *fmt, ...)
	GW_PRINTF(5, 6);

static void call_fail(struct call *c, int status, const char *type, const char *code, const char *fmt, ...)
{
	struct chat_error e;
	va_list ap;
	chat_error_set(&e, status, type, code, "%s", "");
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof(e.message), fmt, ap);
	va_end(ap);
	call_end(c, &e);
}

/* ---- after the reply: remember where this conversation lives --------- */

static void head_name(const char *chat_id, char *out, size_t n)
{
	snprintf(out, n, "head:%s", chat_id);
}

static void on_saved(enum gw_err err, void *arg)
{
	struct call *c = arg;
	c->save_op = NULL;
	if (err)
		log_warn(c->rid, "conversation mapping not saved: %s", gw_strerror(err));
	call_end(c, NULL);
}

/* Saves the chat's head and key(messages + reply) -> this chat. The head
 * goes first without a callback: the store runs ops in order, so when the
 * mapping's callback comes both are stored (one wake-up instead of two).
 * The reply is finished for the client only then, so a gateway killed
 * right after a reply still continues that conversation. */
static void save_mapping(struct call *c)
{
	struct chat_req *r = c->req;
	struct conv_entry e = { 0 };
	uint8_t key[CONV_KEY_LEN];
	conv_key(r->tenant, r->msgs, r->n_msgs, c->reply.p ? c->reply.p : "", c->reply.len, key);
	snprintf(e.chat_id, sizeof(e.chat_id), "%s", c->hit.chat_id);
	snprintf(e.workspace_id, sizeof(e.workspace_id), "%s", c->hit.workspace_id);
	snprintf(e.account, sizeof(e.account), "%s", account_id(c->account));
	snprintf(e.model, sizeof(e.model), "%s", c->model.key);
	e.created = c->have_hit ? c->hit.created : gw_wall_s();
	e.last_used = gw_wall_s();
	char name[160], hex[2 * CONV_KEY_LEN + 1];
	head_name(c->hit.chat_id, name, sizeof(name));
	gw_hex(key, CONV_KEY_LEN, hex);
	struct store *st = c->w->app->store;
	if (store_kv_put(st, NULL, name, hex, strlen(hex), c->cfg->store_ttl, NULL, NULL, NULL) != GW_OK)
		log_warn(c->rid, "conversation head not saved (store refused it)");
	if (store_conv_put(st, c->w->base, key, &e, on_saved, c, &c->save_op) != GW_OK) {
		log_warn(c->rid, "conversation mapping not saved (store refused it)");
		call_end(c, NULL);
	}
}

/* ---- the provider's events ------------------------------------------- */

static void turn_accepted_cb(void *arg, const char *chat_id, const char *workspace_id)
{
	struct call *c = arg;
	c->started = true;
	snprintf(c->hit.chat_id, sizeof(c->hit.chat_id), "%s", chat_id);
	snprintf(c->hit.workspace_id, sizeof(c->hit.workspace_id), "%s", workspace_id);
	c->sink.on_start(c->arg, c->model.model);
}

static bool turn_piece_cb(void *arg, enum chat_ev_kind kind, const char *text, size_t len)
{
	struct call *c = arg;
	if (kind == CHAT_EV_TEXT && buf_add(&c->reply, text, len) != GW_OK) {
		/* Without the whole text the next turn cannot be matched; the
		 * client still gets its reply. */
		buf_release(&c->reply);
		buf_init(&c->reply, 0);
	}
	return c->sink.on_piece(c->arg, kind, text, len);
}

/* Tells the pool how the exchange went on this account. */
static void report(struct call *c, const struct chat_error *e)
{
	if (!e)
		account_report(c->account, ACCT_OK, 0);
	else if (e->code && strcmp(e->code, "upstream_quota") == 0)
		account_report(c->account, ACCT_QUOTA, gw_wall_s() + (e->retry_after > 0 ? e->retry_after : 60));
	else if (e->status == 502 || e->status == 504)
		account_report(c->account, ACCT_FAILED, 0);
	else
		account_report(c->account, ACCT_NEUTRAL, 0);
}

/* Before the first byte, a failure another attempt may cure is retried:
 * transient upstream trouble, or an account that cannot serve now. */
static bool should_retry(struct call *c, const struct chat_error *e)
{
	if (!e || c->started || c->attempts >= CALL_MAX_ATTEMPTS)
		return false;
	if (gw_now_us() - c->started_us > CALL_RETRY_BUDGET_US)
		return false;
	if (e->status == 502 || e->status == 504)
		return true;
	return e->code && (strcmp(e->code, "upstream_quota") == 0 || strcmp(e->code, "account_signed_out") == 0 ||
			   strcmp(e->code, "local_resources") == 0);
}

static void schedule_retry(struct call *c, const struct chat_error *e)
{
	/* Exponential backoff with jitter: 200 ms, 400 ms, ... +-25%. */
	long base = CALL_RETRY_BASE_MS << (c->attempts - 1);
	long jitter = (long)(gw_now_us() % (unsigned long)(base / 2 + 1)) - base / 4;
	long ms = base + jitter;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	log_info(c->rid, "attempt %d failed (%d %s); retrying in %ld ms", c->attempts, e->status,
		 e->code ? e->code : e->type, ms);
	c->failed = c->account;
	c->account = NULL;
	evtimer_add(c->retry, &tv);
}

static void turn_end_cb(void *arg, const struct chat_error *e)
{
	struct call *c = arg;
	c->turn = NULL; /* freed by the provider after this returns */
	report(c, e);
	if (c->slot_held) {
		account_slot_release(c->account);
		c->slot_held = false;
	}
	if (should_retry(c, e)) {
		schedule_retry(c, e);
		return;
	}
	/* The one line per request at info level (an access log). */
	log_info(c->rid, "%s %s %s, %zu msg, %s chat, %d attempt%s, %llu ms, %zu bytes", e ? "failed" : "done",
		 c->req->stream ? "stream" : "json", c->model.model, c->req->n_msgs,
		 c->have_hit ? "continued" : "new", c->attempts, c->attempts == 1 ? "" : "s",
		 (unsigned long long)((gw_now_us() - c->started_us) / 1000), c->reply.len);
	if (e)
		call_end(c, e);
	else
		save_mapping(c);
}

static const struct turn_cbs call_turn_cbs = { turn_accepted_cb, turn_piece_cb, turn_end_cb };

/* ---- the steps before the provider ----------------------------------- */

static void start_turn(struct call *c)
{
	struct chat_req *r = c->req;
	struct buf prompt;
	struct conv_trim trim = { 0 };
	enum gw_err err;
	size_t budget = (size_t)c->cfg->prompt_budget;
	buf_init(&prompt, budget + 64);
	if (c->have_hit)
		err = conv_new_turn_ex(r->msgs, r->n_msgs, c->prefix, budget, &prompt, &trim);
	else
		err = conv_flatten_ex(r->msgs, r->n_msgs, budget, &prompt, &trim);
	if (err) {
		buf_release(&prompt);
		call_fail(c, 500, "server_error", NULL, "could not build the prompt (%s)", gw_strerror(err));
		return;
	}
	if (trim.dropped_msgs || trim.cut_bytes)
		log_info(c->rid, "prompt trimmed to %zu bytes: %zu oldest message(s) dropped, %zu bytes cut", prompt.len,
			 trim.dropped_msgs, trim.cut_bytes);
	log_debug(c->rid, "%s upstream chat, prompt %zu bytes, account %s",
		  c->have_hit ? "continuing the" : "opening a new", prompt.len, account_id(c->account));
	struct turn_opts o = {
		.w = c->w,
		.account = c->account,
		.model = &c->model,
		.chat_id = c->have_hit ? c->hit.chat_id : NULL,
		.workspace_id = c->have_hit ? c->hit.workspace_id : NULL,
		.prompt = prompt.p ? prompt.p : "",
		.prompt_len = prompt.len,
		.rid = c->rid,
	};
	err = turn_start(&o, &call_turn_cbs, c, &c->turn);
	buf_release(&prompt);
	if (err)
		call_fail(c, 500, "server_error", NULL, "could not start the upstream exchange");
}

static void choose_account(struct call *c)
{
	if (c->have_hit) {
		c->account = pool_find(c->w->app->pool, c->hit.account);
		if (!c->account) {
			log_info(c->rid, "the account of this conversation is not usable: starting a new chat");
			c->have_hit = false;
		}
	}
	struct chat_error e;
	if (!c->account) {
		c->account = pool_pick(c->w->app->pool, c->failed, &e);
		if (!c->account) {
			call_end(c, &e);
			return;
		}
	}
	enum gw_err err = account_slot_acquire(c->account, &c->wt, &e);
	if (err == GW_EAGAIN) {
		c->waiting = W_SLOT;
		log_debug(c->rid, "waiting for a free slot on %s", account_id(c->account));
		return;
	}
	if (err) {
		call_end(c, &e);
		return;
	}
	c->slot_held = true;
	c->attempts++;
	start_turn(c);
}

/* A hit is used only if the upstream chat is still where this history
 * ends: a regenerated or edited turn, or a second conversation with the
 * same opening, branches off instead of writing into a chat that moved on. */
static void on_head(enum gw_err err, const char *value, size_t len, void *arg)
{
	struct call *c = arg;
	c->op = NULL;
	char hex[2 * CONV_KEY_LEN + 1];
	gw_hex(c->key, CONV_KEY_LEN, hex);
	if (err) {
		log_warn(c->rid, "store unavailable (%s): starting a new upstream chat", gw_strerror(err));
		c->have_hit = false;
	} else if (!value || len != strlen(hex) || memcmp(value, hex, len) != 0) {
		log_info(c->rid, "the conversation branched (edited, regenerated or a copy): new upstream chat");
		c->have_hit = false;
	}
	choose_account(c);
}

static void on_lookup(enum gw_err err, const struct conv_entry *e, void *arg)
{
	struct call *c = arg;
	c->op = NULL;
	if (err)
		log_warn(c->rid, "store unavailable (%s): continuing without conversation memory", gw_strerror(err));
	if (!e) {
		choose_account(c);
		return;
	}
	c->hit = *e;
	c->have_hit = true;
	char name[160];
	head_name(e->chat_id, name, sizeof(name));
	if (store_kv_get(c->w->app->store, c->w->base, name, on_head, c, &c->op) != GW_OK) {
		c->have_hit = false;
		choose_account(c);
	}
}

static void lookup(struct call *c)
{
	struct chat_req *r = c->req;
	c->prefix = conv_lookup_prefix(r->msgs, r->n_msgs);
	c->keyed = c->prefix > 0 && conv_prefix_usable(r->msgs, c->prefix);
	if (!c->keyed) {
		choose_account(c);
		return;
	}
	conv_key(r->tenant, r->msgs, c->prefix, NULL, 0, c->key);
	if (store_conv_get(c->w->app->store, c->w->base, c->key, on_lookup, c, &c->op) != GW_OK) {
		log_warn(c->rid, "store refused the lookup: continuing without conversation memory");
		choose_account(c);
	}
}

static void resolve_model(struct call *c);

static void on_wait(struct waiter *wt, void *arg)
{
	struct call *c = arg;
	int kind = c->waiting;
	c->waiting = W_NONE;
	if (kind == W_MODELS) {
		resolve_model(c);
	} else if (kind == W_SLOT) {
		c->slot_held = wt->err == GW_OK;
		c->attempts++;
		start_turn(c);
	}
}

static void resolve_model(struct call *c)
{
	struct chat_error e;
	enum gw_err err = pool_models(c->w->app->pool, c->w, &c->wt, &c->models, &e);
	if (err == GW_EAGAIN) {
		c->waiting = W_MODELS;
		return;
	}
	if (err) {
		call_end(c, &e);
		return;
	}
	const char *name = c->req->model ? c->req->model : c->cfg->default_model;
	const struct model_info *m = models_resolve(&c->models->list, name);
	if (!m || !m->enabled) {
		call_fail(c, 404, "invalid_request_error", "model_not_found",
			  "The model '%.100s' does not exist or is not enabled. List the available models with "
			  "GET /v1/models.", name);
		return;
	}
	c->model = *m;
	lookup(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct call *c = arg;
	call_fail(c, 504, "timeout", "request_timeout", "The request took longer than API_REQUEST_TIMEOUT (%ld s).",
		  c->cfg->request_timeout);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct call *c = arg;
	if (c->have_hit && !pool_find(c->w->app->pool, c->hit.account))
		c->have_hit = false; /* its account cannot serve: a new chat elsewhere */
	choose_account(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	resolve_model(arg);
}

enum gw_err call_start(struct worker *w, struct chat_req *req, const char *rid, const struct call_sink *sink,
		       void *arg, struct call **out)
{
	struct call *c = gw_calloc(1, sizeof(*c));
	if (!c) {
		chat_req_free(req);
		return GW_ENOMEM;
	}
	c->w = w;
	c->req = req;
	c->cfg = config_current();
	c->sink = *sink;
	c->arg = arg;
	c->started_us = gw_now_us();
	snprintf(c->rid, sizeof(c->rid), "%s", rid);
	buf_init(&c->reply, (size_t)c->cfg->max_reply_bytes);
	c->deadline = evtimer_new(w->base, on_deadline, c);
	c->kick = event_new(w->base, -1, 0, on_kick, c);
	c->retry = evtimer_new(w->base, on_retry, c);
	c->next = w->calls;
	if (w->calls)
		w->calls->prev = c;
	w->calls = c;
	w->n_calls++;
	atomic_fetch_add(&w->app->streams, 1);
	atomic_fetch_add_explicit(&w->app->calls_started, 1, memory_order_relaxed);
	if (!c->deadline || !c->kick || !c->retry || waiter_init(&c->wt, w->base, on_wait, c) != GW_OK) {
		call_free(c);
		return GW_ENOMEM;
	}
	event_active(c->kick, EV_TIMEOUT, 1);
	struct timeval tv = { c->cfg->request_timeout, 0 };
	evtimer_add(c->deadline, &tv);
	*out = c;
	return GW_OK;
}

void call_resume(struct call *c)
{
	if (c->turn)
		turn_resume(c->turn);
}

void call_cancel(struct call *c)
{
	if (c->ended)
		return;
	c->ended = true;
	if (c->turn) {
		turn_cancel(c->turn);
		c->turn = NULL;
	}
	log_info(c->rid, "client went away; upstream closed");
	call_free(c);
}

void call_abort_all(struct worker *w, int status, const char *msg)
{
	while (w->calls) {
		struct chat_error e;
		chat_error_set(&e, status, status == 503 ? "unavailable" : "server_error", "shutting_down", "%s", msg);
		call_end(w->calls, &e);
	}
}
