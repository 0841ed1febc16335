/* cleanup.c - deletes upstream chats whose conversation mapping expired
 * (UPSTREAM_CLEANUP_INTERVAL). A pass walks the accounts one after the
 * other: the workspace of our chats (store) -> a JWT (pool) -> one page of
 * the chat list -> per chat: our ownership record, then the head record
 * (store) -> the rule -> DELETE. Every step is async on the worker's loop;
 * only one step is ever in flight, so stopping cancels exactly one thing. */
#include "core/cleanup.h"
#include "config.h"
#include "core/app.h"
#include "core/cleanup_rule.h"
#include "core/pool.h"
#include "provider/histories.h"
#include "provider/upstream.h"
#include "store/store.h"
#include "util/log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#define CLEANUP_TICK_MAX_S 10    /* a reloaded setting is noticed this soon (an idle wake-up costs nothing) */
#define CLEANUP_PAGE_SIZE 100    /* the simulator's cap; we read one page only */
#define CLEANUP_MAX_DELETES 20   /* per pass, all accounts together */
#define CLEANUP_RECORD_TTLS 4    /* own:/cleanws: records live this many STORE_TTLs, and more */
#define CLEANUP_MAX_ACCOUNTS 64  /* force-refresh memory; more accounts just never force */
#define CLEANUP_RID "cleanup"

struct cleanup {
	struct worker *w;
	struct event *tick;
	uint64_t last_pass_ms;
	bool said_2025;
	bool force[CLEANUP_MAX_ACCOUNTS]; /* the upstream refused this account's JWT last time */

	/* the pass in progress (at most one; cfg is set while one runs) */
	struct gw_config *cfg;
	int64_t now;
	size_t acct_i;               /* next account index; c->a's is acct_i - 1 */
	struct account *a;
	struct waiter wt;
	bool waiting;
	struct account_creds creds;  /* secrets: released as soon as an account is done */
	char workspace[128];
	struct httpc_call *http;
	struct store_op *op;
	struct engine_histories *list;
	size_t item_i;
	struct cleanup_own own;

	/* the pass's counts, for its one log line */
	struct {
		size_t accounts, skipped, listed, ours, deleted, gone, live, busy, recent, failed;
	} n;
	size_t deletes_left;
	bool more;
};

static void next_account(struct cleanup *c);
static void next_item(struct cleanup *c);

/* The force-refresh flag of the account in hand (NULL past the memory). */
static bool *force_of(struct cleanup *c)
{
	size_t i = c->acct_i - 1;
	return i < CLEANUP_MAX_ACCOUNTS ? &c->force[i] : NULL;
}

/* The upstream refused the JWT: the next pass asks for a new one. */
static void note_refused(struct cleanup *c, const struct httpc_resp *r)
{
	bool *f = force_of(c);
	if (r->err == GW_OK && r->status == 401 && f)
		*f = true;
}

static void arm_tick(struct cleanup *c, long interval)
{
	struct timeval tv = { interval > 0 && interval < CLEANUP_TICK_MAX_S ? interval : CLEANUP_TICK_MAX_S, 0 };
	evtimer_add(c->tick, &tv);
}

static bool draining(const struct cleanup *c)
{
	return atomic_load(&c->w->app->draining) || atomic_load(&c->w->app->stopping);
}

/* How long own: and cleanws: records live. A chat becomes deletable
 * STORE_TTL + API_REQUEST_TIMEOUT after its last use; its record must then
 * still be there for a few passes (the first one may come a whole interval,
 * or a settings check, later). Live chats renew their record once per
 * STORE_TTL (on_head), so a few STORE_TTLs leave room to spare. */
static int64_t record_ttl(const struct gw_config *cfg)
{
	const int64_t cap = INT64_MAX / 16;
	int64_t ttl = cfg->store_ttl, grace = cfg->request_timeout, every = cfg->upstream_cleanup_interval;
	if (ttl > cap || grace > cap || every > cap)
		return 0; /* no expiry; unreachable within the config's bounds */
	return CLEANUP_RECORD_TTLS * ttl + 2 * grace + 4 * every + 2 * CLEANUP_TICK_MAX_S;
}

/* ---- recording what is ours ------------------------------------------ */

void cleanup_note_chat(struct store *st, const struct gw_config *cfg, const char *account, const char *chat_id,
		       const char *workspace_id)
{
	if (!st || cfg->upstream_cleanup_interval <= 0 || cfg->engine_flow != FLOW_2026)
		return;
	struct cleanup_own o = { .noted = gw_wall_s() };
	char value[400], name[200];
	snprintf(o.account, sizeof(o.account), "%s", account);
	snprintf(o.workspace, sizeof(o.workspace), "%s", workspace_id);
	int64_t ttl = record_ttl(cfg);
	if (cleanup_own_format(&o, value, sizeof(value)) != GW_OK ||
	    snprintf(name, sizeof(name), "own:%s", chat_id) >= (int)sizeof(name)) {
		log_warn(NULL, "upstream clean-up: chat %.64s not recorded (bad id)", chat_id);
		return;
	}
	if (store_kv_put(st, NULL, name, value, strlen(value), ttl, NULL, NULL, NULL) != GW_OK)
		log_warn(NULL, "upstream clean-up: chat %s not recorded (store refused it)", chat_id);
	/* Which workspace to list for this account: the chat list wants one. */
	snprintf(name, sizeof(name), "cleanws:%s", account);
	if (store_kv_put(st, NULL, name, o.workspace, strlen(o.workspace), ttl, NULL, NULL, NULL) != GW_OK)
		log_warn(NULL, "upstream clean-up: workspace of %s not recorded", account);
}

/* ---- one pass -------------------------------------------------------- */

static void release_account(struct cleanup *c)
{
	account_creds_release(&c->creds);
	memset(&c->creds, 0, sizeof(c->creds));
	c->a = NULL;
}

static void pass_end(struct cleanup *c)
{
	release_account(c);
	log_info(CLEANUP_RID,
		 "upstream clean-up pass: %zu account(s) (%zu skipped), %zu chat(s) listed, %zu ours: %zu deleted, "
		 "%zu already gone, %zu with a live mapping, %zu in progress, %zu recent; %zu failed step(s)%s",
		 c->n.accounts, c->n.skipped, c->n.listed, c->n.ours, c->n.deleted, c->n.gone, c->n.live, c->n.busy, c->n.recent,
		 c->n.failed, c->more ? "; only the newest page of chats is visible" : "");
	gw_free(c->list);
	c->list = NULL;
	config_unref(c->cfg);
	c->cfg = NULL;
	c->last_pass_ms = gw_now_ms();
}

static void pass_start(struct cleanup *c)
{
	c->list = gw_malloc(sizeof(*c->list));
	if (!c->list) {
		log_warn(CLEANUP_RID, "upstream clean-up: out of memory, pass skipped");
		c->last_pass_ms = gw_now_ms();
		return;
	}
	c->cfg = config_current();
	c->now = gw_wall_s();
	c->acct_i = 0;
	memset(&c->n, 0, sizeof(c->n));
	c->deletes_left = CLEANUP_MAX_DELETES;
	c->more = false;
	next_account(c);
}

static void on_delete(const struct httpc_resp *r, void *arg)
{
	struct cleanup *c = arg;
	c->http = NULL;
	const char *id = c->list->item[c->item_i].id;
	if (r->err == GW_OK && r->status >= 200 && r->status <= 299) {
		c->n.deleted++;
		log_debug(CLEANUP_RID, "%s: upstream chat %s deleted (mapping expired)", account_id(c->a), id);
	} else if (r->err == GW_OK && r->status == 404) {
		c->n.gone++;
	} else {
		c->n.failed++;
		note_refused(c, r);
		log_warn(CLEANUP_RID, "%s: deleting upstream chat %s failed: %s %ld", account_id(c->a), id,
			 r->err ? r->error : "HTTP", r->status);
	}
	c->item_i++;
	next_item(c);
}

static void on_head(enum gw_err err, const char *value, size_t len, void *arg)
{
	GW_UNUSED(len);
	struct cleanup *c = arg;
	c->op = NULL;
	const struct engine_history *h = &c->list->item[c->item_i];
	if (err) {
		/* Cannot tell whether a mapping still needs it: keep it. */
		c->n.failed++;
		c->item_i++;
		next_item(c);
		return;
	}
	struct cleanup_facts f = {
		.owned = true,
		.in_progress = h->in_progress,
		.head_present = value != NULL,
		.created = h->created,
		.updated = h->updated,
		.noted = c->own.noted,
	};
	enum cleanup_verdict v = cleanup_decide(&f, c->now, c->cfg->store_ttl, c->cfg->request_timeout);
	log_debug(CLEANUP_RID, "%s: upstream chat %s: %s", account_id(c->a), h->id, cleanup_verdict_name(v));
	switch (v) {
	case CLEAN_DELETE: {
		char path[200];
		snprintf(path, sizeof(path), "/engine-agent/chat-histories/%s", h->id);
		c->deletes_left--;
		if (upstream_engine(c->w->httpc, c->cfg, "DELETE", path, c->creds.jwt, NULL, 0, on_delete, c,
				    &c->http) == GW_OK)
			return;
		c->n.failed++;
		break;
	}
	case CLEAN_KEEP_LIVE:
		c->n.live++;
		/* A conversation that goes on for longer than its records live
		 * would lose its proof of ownership (and then linger, safely):
		 * renew the record once per STORE_TTL while it is alive. */
		if (c->now - c->own.noted >= c->cfg->store_ttl)
			cleanup_note_chat(c->w->app->store, c->cfg, c->own.account, h->id, c->own.workspace);
		break;
	case CLEAN_KEEP_BUSY:
		c->n.busy++;
		break;
	case CLEAN_KEEP_RECENT:
		c->n.recent++;
		break;
	case CLEAN_KEEP_NOT_OURS:
		break;
	}
	c->item_i++;
	next_item(c);
}

static void on_own(enum gw_err err, const char *value, size_t len, void *arg)
{
	struct cleanup *c = arg;
	c->op = NULL;
	const struct engine_history *h = &c->list->item[c->item_i];
	if (err)
		c->n.failed++;
	if (err || !value || !cleanup_own_parse(value, len, &c->own) || strcmp(c->own.account, account_id(c->a)) != 0) {
		/* Not provably ours (made in the web app, by another account, or
		 * before the clean-up was turned on): never touched. */
		c->item_i++;
		next_item(c);
		return;
	}
	c->n.ours++;
	char name[200];
	snprintf(name, sizeof(name), "head:%s", h->id);
	if (store_kv_get(c->w->app->store, c->w->base, name, on_head, c, &c->op) != GW_OK) {
		c->n.failed++;
		c->item_i++;
		next_item(c);
	}
}

static void next_item(struct cleanup *c)
{
	while (c->item_i < c->list->n) {
		if (draining(c) || c->deletes_left == 0) {
			pass_end(c);
			return;
		}
		char name[200];
		snprintf(name, sizeof(name), "own:%s", c->list->item[c->item_i].id);
		if (store_kv_get(c->w->app->store, c->w->base, name, on_own, c, &c->op) == GW_OK)
			return;
		c->n.failed++;
		c->item_i++;
	}
	next_account(c);
}

static void on_list(const struct httpc_resp *r, void *arg)
{
	struct cleanup *c = arg;
	c->http = NULL;
	if (r->err != GW_OK || r->status < 200 || r->status > 299) {
		c->n.failed++;
		note_refused(c, r);
		log_warn(CLEANUP_RID, "%s: listing upstream chats failed: %s %ld", account_id(c->a),
			 r->err ? r->error : "HTTP", r->status);
		next_account(c);
		return;
	}
	if (engine_parse_histories(r->body, r->body_len, c->list) != GW_OK) {
		c->n.failed++;
		log_warn(CLEANUP_RID, "%s: the upstream's chat list is not understood (%zu bytes)", account_id(c->a),
			 r->body_len);
		next_account(c);
		return;
	}
	c->n.listed += c->list->n;
	c->more |= c->list->has_more;
	c->item_i = 0;
	next_item(c);
}

static void list_chats(struct cleanup *c)
{
	char path[300];
	snprintf(path, sizeof(path), "/engine-agent/chat-histories?workspaceId=%s&pageSize=%d", c->workspace,
		 CLEANUP_PAGE_SIZE);
	if (upstream_engine(c->w->httpc, c->cfg, "GET", path, c->creds.jwt, NULL, 0, on_list, c, &c->http) !=
	    GW_OK) {
		c->n.failed++;
		next_account(c);
	}
}

static void get_creds(struct cleanup *c)
{
	struct chat_error e;
	bool *f = force_of(c), force = f && *f;
	if (f)
		*f = false; /* the ask after a wait takes the JWT that wait made */
	enum gw_err err = account_creds_get(c->a, c->w, force, &c->wt, &c->creds, &e);
	if (err == GW_EAGAIN) {
		c->waiting = true;
		return;
	}
	if (err) {
		c->n.skipped++;
		log_debug(CLEANUP_RID, "%s: no credentials now (%s): skipped", account_id(c->a), e.message);
		next_account(c);
		return;
	}
	list_chats(c);
}

static void on_wait(struct waiter *wt, void *arg)
{
	struct cleanup *c = arg;
	c->waiting = false;
	if (wt->err != GW_OK || draining(c)) {
		c->n.skipped++;
		next_account(c);
		return;
	}
	get_creds(c);
}

static void on_ws(enum gw_err err, const char *value, size_t len, void *arg)
{
	struct cleanup *c = arg;
	c->op = NULL;
	if (err)
		c->n.failed++;
	if (err || !value || len >= sizeof(c->workspace) || !gw_url_id_ok(value, len)) {
		/* No chat of ours recorded on this account: nothing to list. */
		next_account(c);
		return;
	}
	memcpy(c->workspace, value, len);
	c->workspace[len] = '\0';
	get_creds(c);
}

static void next_account(struct cleanup *c)
{
	release_account(c);
	for (;;) {
		if (draining(c)) {
			pass_end(c);
			return;
		}
		struct account *a = pool_at(c->w->app->pool, c->acct_i);
		if (!a) {
			pass_end(c);
			return;
		}
		c->acct_i++;
		if (!account_healthy(a)) {
			/* Signed out or failing: leave it to the breaker's probe. */
			c->n.skipped++;
			continue;
		}
		c->a = a;
		c->n.accounts++;
		char name[200];
		snprintf(name, sizeof(name), "cleanws:%s", account_id(a));
		if (store_kv_get(c->w->app->store, c->w->base, name, on_ws, c, &c->op) == GW_OK)
			return;
		c->n.failed++;
		c->a = NULL;
	}
}

/* ---- the timer ------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct cleanup *c = arg;
	struct gw_config *cfg = config_current();
	long interval = cfg->upstream_cleanup_interval;
	bool flow_2025 = cfg->engine_flow == FLOW_2025;
	config_unref(cfg);
	if (interval > 0 && flow_2025) {
		if (!c->said_2025)
			log_info(CLEANUP_RID, "UPSTREAM_CLEANUP_INTERVAL is ignored with ENGINE_FLOW=2025");
		c->said_2025 = true;
	} else if (interval > 0 && !c->cfg && !draining(c) &&
		   gw_now_ms() - c->last_pass_ms >= (uint64_t)interval * 1000) {
		pass_start(c);
	}
	if (draining(c))
		return; /* no more passes: the loop is about to end */
	arm_tick(c, interval);
}

struct cleanup *cleanup_new(struct worker *w)
{
	struct cleanup *c = gw_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	/* The first pass comes one interval after start, not at once: a
	 * restart loop must not hammer the upstream. */
	c->last_pass_ms = gw_now_ms();
	c->tick = evtimer_new(w->base, on_tick, c);
	if (!c->tick || waiter_init(&c->wt, w->base, on_wait, c) != GW_OK) {
		if (c->tick)
			event_free(c->tick);
		gw_free(c);
		return NULL;
	}
	struct gw_config *cfg = config_current();
	long interval = cfg->upstream_cleanup_interval;
	config_unref(cfg);
	arm_tick(c, interval);
	if (interval > 0)
		log_info(CLEANUP_RID, "upstream clean-up on: a pass every %ld s", interval);
	return c;
}

void cleanup_free(struct cleanup *c)
{
	if (!c)
		return;
	event_free(c->tick);
	if (c->http)
		httpc_call_cancel(c->http);
	if (c->op)
		store_op_cancel(c->op);
	if (c->waiting)
		account_wait_cancel(c->a, &c->wt);
	waiter_fini(&c->wt);
	account_creds_release(&c->creds);
	gw_free(c->list);
	config_unref(c->cfg);
	gw_free(c);
}
