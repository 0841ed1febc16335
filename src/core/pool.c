/* pool.c - accounts, their Clerk sessions and JWTs, the preferred-model
 * gate, and the shared model list. */
#include "core/pool.h"
#include "core/app.h"
#include "config.h"
#include "provider/parse.h"
#include "provider/upstream.h"
#include "store/store.h"
#include "util/log.h"
#include "util/sha.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX_ACCOUNTS 64
#define JWT_MIN_LEFT_S 15    /* never hand out a JWT closer to expiry than this */
#define JWT_REFRESH_AHEAD_S 30 /* refresh in the background below this */
#define FAIL_CACHE_S 2       /* a failed refresh is remembered this long */
#define BREAKER_THRESHOLD 5  /* consecutive failures that open the breaker */
#define BREAKER_MIN_S 5      /* first open period; doubles up to BREAKER_MAX_S */
#define BREAKER_MAX_S 300
#define SLOT_QUEUE_MAX 64    /* requests waiting for a slot, per account */

/* What a waiter of an account waits for (waiter.tag). */
enum { WAIT_TOKEN = 1, WAIT_GATE, WAIT_SLOT };

struct account {
	struct pool *pool;
	pthread_mutex_t lock;
	char id[32];
	char *cfg_cookie;           /* as configured: tells a reload what changed */
	char *cookie;               /* current value, rotated by Clerk */
	struct clerk_session sess;
	bool have_sess;
	char *jwt;
	int64_t jwt_exp;
	bool refreshing;
	struct waitq token_waiters;
	bool signed_out;
	struct chat_error fail;
	int64_t fail_until;
	/* preferred-model gate */
	char cur_model[64];
	int holders;
	bool switching;
	struct waitq gate;
	/* capacity */
	int running;
	size_t queued;
	struct waitq slots;
	/* health */
	int failures;               /* consecutive */
	int64_t open_until;         /* breaker open until (unix s) */
	int open_s;                 /* current open period */
	bool probing;               /* half-open: one request is trying */
	int64_t cool_until;         /* quota reached until (unix s) */
};

struct snap_impl {
	struct models_snap pub;
	atomic_int refs;
};

struct pool {
	struct app *app;
	pthread_mutex_t lock;
	struct account *acc[POOL_MAX_ACCOUNTS];
	size_t n;
	atomic_size_t rr;
	struct snap_impl *models;
	bool models_fetching;
	struct waitq models_waiters;
	struct chat_error models_err;
	int64_t models_err_until;
};

static void secret_free(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		gw_free(s);
	}
}

/* ---- accounts -------------------------------------------------------- */

static void account_id_of(const char *cookie, char out[32])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	/* Out of memory inside OpenSSL: a random id keeps accounts apart. */
	if (!gw_sha256(cookie, strlen(cookie), md))
		GW_ASSERT(gw_random(md, sizeof(md)));
	memcpy(out, "acct-", 5);
	gw_hex(md, 6, out + 5);
}

static void cookie_key(const struct account *a, char out[64])
{
	snprintf(out, 64, "cookie:%s", a->id);
}

/* Per-account state kept in the store, so a restart (or another instance
 * sharing Redis) knows it: "<what>:<account id>". */
static void state_key(const struct account *a, const char *what, char out[64])
{
	snprintf(out, 64, "%s:%s", what, a->id);
}

static void state_save(const struct account *a, const char *what, const char *value, int64_t ttl_s)
{
	char key[64];
	state_key(a, what, key);
	if (store_kv_put(a->pool->app->store, NULL, key, value, strlen(value), ttl_s, NULL, NULL, NULL) != GW_OK)
		log_warn(NULL, "%s: %s not saved in the store", a->id, what);
}

static void state_load(struct account *a)
{
	char key[64];
	size_t len;
	state_key(a, "cool", key);
	char *v = store_kv_get_sync(a->pool->app->store, key, &len);
	if (v) {
		long long until = strtoll(v, NULL, 10);
		if (until > gw_wall_s()) {
			a->cool_until = until;
			log_info(NULL, "%s: at its usage limit (saved) for %lld s more", a->id, until - gw_wall_s());
		}
		gw_free(v);
	}
	state_key(a, "model", key);
	v = store_kv_get_sync(a->pool->app->store, key, &len);
	if (v) {
		snprintf(a->cur_model, sizeof(a->cur_model), "%s", v);
		gw_free(v);
	}
}

static struct account *account_new(struct pool *p, const char *value)
{
	struct account *a = gw_calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->pool = p;
	pthread_mutex_init(&a->lock, NULL);
	waitq_init(&a->token_waiters);
	waitq_init(&a->gate);
	waitq_init(&a->slots);
	account_id_of(value, a->id);
	a->cfg_cookie = gw_strdup(value);
	char key[64];
	cookie_key(a, key);
	size_t len;
	char *saved = store_kv_get_sync(p->app->store, key, &len);
	if (saved && len > 0 && strlen(saved) == len) {
		log_info(NULL, "%s: using the rotated cookie saved in the store", a->id);
		a->cookie = saved;
	} else {
		secret_free(saved);
		a->cookie = gw_strdup(value);
	}
	if (!a->cfg_cookie || !a->cookie) {
		secret_free(a->cfg_cookie);
		secret_free(a->cookie);
		gw_free(a);
		return NULL;
	}
	state_load(a);
	return a;
}

static void account_free(struct account *a)
{
	if (!a)
		return;
	secret_free(a->cfg_cookie);
	secret_free(a->cookie);
	secret_free(a->jwt);
	pthread_mutex_destroy(&a->lock);
	gw_free(a);
}

const char *account_id(const struct account *a)
{
	return a->id;
}

/* Splits CLERK_COOKIE on commas (never inside a cookie value) and parses
 * each part; calls fn for each usable value. */
static bool each_cookie(const char *raw, bool (*fn)(void *arg, const char *value), void *arg,
			char *err, size_t errlen)
{
	const char *p = raw;
	int idx = 0;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		idx++;
		struct buf v;
		buf_init(&v, 16384);
		bool blank = strspn(p, " \t") >= l;
		if (!blank) {
			if (clerk_cookie_parse(p, l, &v) != GW_OK) {
				snprintf(err, errlen,
					 "CLERK_COOKIE: account %d: no usable __client value (paste the whole "
					 "Cookie header of clerk.cto.new or the bare __client value)", idx);
				buf_release(&v);
				return false;
			}
			bool ok = fn(arg, v.p);
			memset(v.p, 0, v.len);
			buf_release(&v);
			if (!ok) {
				snprintf(err, errlen, "out of memory");
				return false;
			}
		}
		p = e ? e + 1 : p + l;
	}
	return true;
}

static bool add_account(void *arg, const char *value)
{
	struct pool *p = arg;
	if (p->n >= POOL_MAX_ACCOUNTS)
		return true;
	char id[32];
	account_id_of(value, id);
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->acc[i]->id, id) == 0)
			return true; /* the same cookie twice */
	struct account *a = account_new(p, value);
	if (!a)
		return false;
	p->acc[p->n++] = a;
	return true;
}

struct pool *pool_new(struct app *app, const struct gw_config *cfg, char *err, size_t errlen)
{
	struct pool *p = gw_calloc(1, sizeof(*p));
	if (!p)
		return snprintf(err, errlen, "out of memory"), NULL;
	p->app = app;
	pthread_mutex_init(&p->lock, NULL);
	waitq_init(&p->models_waiters);
	if (!each_cookie(cfg->clerk_cookie, add_account, p, err, errlen)) {
		pool_free(p);
		return NULL;
	}
	if (p->n == 0)
		log_warn(NULL, "CLERK_COOKIE is not set: chat requests will fail until it is (then SIGHUP)");
	else
		log_info(NULL, "%zu upstream account%s configured", p->n, p->n == 1 ? "" : "s");
	return p;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		account_free(p->acc[i]);
	if (p->models)
		models_snap_unref(&p->models->pub);
	pthread_mutex_destroy(&p->lock);
	gw_free(p);
}

struct reload_ctx {
	struct pool *p;
	bool seen[POOL_MAX_ACCOUNTS];
};

static bool reload_one(void *arg, const char *value)
{
	struct reload_ctx *rc = arg;
	struct pool *p = rc->p;
	char id[32];
	account_id_of(value, id);
	for (size_t i = 0; i < p->n; i++) {
		struct account *a = p->acc[i];
		if (strcmp(a->id, id) == 0) {
			rc->seen[i] = true;
			return true;
		}
	}
	return add_account(p, value);
}

void pool_reload(struct pool *p, const struct gw_config *cfg)
{
	/* Accounts are never freed while running (requests hold pointers to
	 * them); a cookie that disappears from the config is only retired. */
	struct reload_ctx rc = { .p = p };
	char err[256];
	pthread_mutex_lock(&p->lock);
	size_t before = p->n;
	if (!each_cookie(cfg->clerk_cookie, reload_one, &rc, err, sizeof(err))) {
		pthread_mutex_unlock(&p->lock);
		log_error(NULL, "SIGHUP: %s; accounts unchanged", err);
		return;
	}
	for (size_t i = 0; i < before; i++) {
		struct account *a = p->acc[i];
		pthread_mutex_lock(&a->lock);
		a->signed_out = !rc.seen[i];
		if (!rc.seen[i])
			log_info(NULL, "%s: removed from CLERK_COOKIE, retired", a->id);
		pthread_mutex_unlock(&a->lock);
	}
	if (p->n > before)
		log_info(NULL, "SIGHUP: %zu new account(s)", p->n - before);
	pthread_mutex_unlock(&p->lock);
}

static long concurrency_limit(void)
{
	struct gw_config *cfg = config_current();
	long n = cfg ? cfg->account_concurrency : 2;
	config_unref(cfg);
	return n;
}

/* Whether a can take a new request now; call with a->lock held. */
static bool usable_locked(const struct account *a, int64_t now)
{
	if (a->signed_out || a->cool_until > now)
		return false;
	if (a->failures >= BREAKER_THRESHOLD)
		return a->open_until <= now && !a->probing; /* half-open: one probe */
	return true;
}

/* Claims the half-open probe if a is in that state; a->lock held. */
static void claim_probe_locked(struct account *a)
{
	if (a->failures >= BREAKER_THRESHOLD)
		a->probing = true;
}

/* Why nobody can serve, as the client should hear it. */
static void none_usable(struct pool *p, size_t n, struct chat_error *e)
{
	int64_t now = gw_wall_s(), soonest_cool = 0, soonest_open = 0;
	size_t cooling = 0, signed_out = 0;
	for (size_t i = 0; i < n; i++) {
		struct account *a = p->acc[i];
		pthread_mutex_lock(&a->lock);
		if (a->signed_out) {
			signed_out++;
		} else if (a->cool_until > now) {
			cooling++;
			if (!soonest_cool || a->cool_until < soonest_cool)
				soonest_cool = a->cool_until;
		} else if (a->open_until > now && (!soonest_open || a->open_until < soonest_open)) {
			soonest_open = a->open_until;
		}
		pthread_mutex_unlock(&a->lock);
	}
	if (signed_out == n) {
		chat_error_set(e, 503, "unavailable", "account_signed_out",
			       "Every upstream account is signed out: replace CLERK_COOKIE and reload (SIGHUP).");
		e->retry_after = 60;
	} else if (cooling + signed_out == n) {
		chat_error_set(e, 429, "rate_limit_error", "upstream_quota",
			       "Every upstream account is at its usage limit; it resets in %lld s.",
			       (long long)(soonest_cool - now));
		e->retry_after = (int)(soonest_cool - now < 1 ? 1 : soonest_cool - now);
	} else {
		chat_error_set(e, 503, "unavailable", "upstream_unhealthy",
			       "The upstream is failing for every account; retrying shortly.");
		int64_t wait = soonest_open > now ? soonest_open - now : 1;
		e->retry_after = (int)(wait < 1 ? 1 : wait);
	}
}

struct account *pool_pick(struct pool *p, const struct account *avoid, struct chat_error *e)
{
	pthread_mutex_lock(&p->lock);
	size_t n = p->n;
	pthread_mutex_unlock(&p->lock);
	if (n == 0) {
		chat_error_set(e, 503, "unavailable", "no_account",
			       "No upstream account is configured: set CLERK_COOKIE and reload (SIGHUP).");
		return NULL;
	}
	size_t start = atomic_fetch_add(&p->rr, 1);
	int64_t now = gw_wall_s();
	struct account *best = NULL, *fallback = NULL;
	long best_load = 0;
	for (size_t i = 0; i < n; i++) {
		struct account *a = p->acc[(start + i) % n];
		pthread_mutex_lock(&a->lock);
		bool ok = usable_locked(a, now);
		long load = a->running + (long)a->queued;
		pthread_mutex_unlock(&a->lock);
		if (!ok)
			continue;
		if (a == avoid) {
			fallback = a;
			continue;
		}
		if (!best || load < best_load) {
			best = a;
			best_load = load;
		}
	}
	if (!best)
		best = fallback;
	if (!best) {
		none_usable(p, n, e);
		return NULL;
	}
	pthread_mutex_lock(&best->lock);
	claim_probe_locked(best);
	pthread_mutex_unlock(&best->lock);
	return best;
}

struct account *pool_find(struct pool *p, const char *id)
{
	pthread_mutex_lock(&p->lock);
	struct account *found = NULL;
	for (size_t i = 0; i < p->n && !found; i++)
		if (strcmp(p->acc[i]->id, id) == 0)
			found = p->acc[i];
	pthread_mutex_unlock(&p->lock);
	if (!found)
		return NULL;
	pthread_mutex_lock(&found->lock);
	bool ok = usable_locked(found, gw_wall_s());
	if (ok)
		claim_probe_locked(found);
	pthread_mutex_unlock(&found->lock);
	return ok ? found : NULL;
}

struct account *pool_at(struct pool *p, size_t i)
{
	pthread_mutex_lock(&p->lock);
	struct account *a = i < p->n ? p->acc[i] : NULL;
	pthread_mutex_unlock(&p->lock);
	return a;
}

bool account_healthy(struct account *a)
{
	pthread_mutex_lock(&a->lock);
	bool ok = !a->signed_out && a->failures < BREAKER_THRESHOLD;
	pthread_mutex_unlock(&a->lock);
	return ok;
}

enum gw_err account_slot_acquire(struct account *a, struct waiter *wt, struct chat_error *e)
{
	long limit = concurrency_limit();
	pthread_mutex_lock(&a->lock);
	if (a->running < limit && waitq_empty(&a->slots)) {
		a->running++;
		pthread_mutex_unlock(&a->lock);
		return GW_OK;
	}
	if (a->queued >= SLOT_QUEUE_MAX) {
		pthread_mutex_unlock(&a->lock);
		chat_error_set(e, 429, "rate_limit_error", "account_busy",
			       "The upstream account is busy (%ld replies at once, %d waiting); retry shortly.", limit,
			       SLOT_QUEUE_MAX);
		e->retry_after = 2;
		return GW_ELIMIT;
	}
	a->queued++;
	wt->tag = WAIT_SLOT;
	waitq_push(&a->slots, wt);
	pthread_mutex_unlock(&a->lock);
	return GW_EAGAIN;
}

/* Hands free slots to waiters in order; a->lock held. */
static void slots_pump(struct account *a, long limit)
{
	struct waiter *h;
	while (a->running < limit && (h = waitq_peek(&a->slots))) {
		a->running++;
		a->queued--;
		waitq_wake(h, GW_OK);
	}
}

void account_slot_release(struct account *a)
{
	long limit = concurrency_limit();
	pthread_mutex_lock(&a->lock);
	GW_ASSERT(a->running > 0);
	a->running--;
	slots_pump(a, limit);
	pthread_mutex_unlock(&a->lock);
}

void account_report(struct account *a, enum account_outcome o, int64_t until)
{
	int64_t now = gw_wall_s();
	pthread_mutex_lock(&a->lock);
	switch (o) {
	case ACCT_OK:
		if (a->failures >= BREAKER_THRESHOLD)
			log_info(NULL, "%s: healthy again", a->id);
		a->failures = 0;
		a->open_s = 0;
		break;
	case ACCT_FAILED:
		a->failures++;
		if (a->failures >= BREAKER_THRESHOLD) {
			a->open_s = a->open_s ? a->open_s * 2 : BREAKER_MIN_S;
			if (a->open_s > BREAKER_MAX_S)
				a->open_s = BREAKER_MAX_S;
			a->open_until = now + a->open_s;
			log_warn(NULL, "%s: %d failures in a row; resting it for %d s", a->id, a->failures, a->open_s);
		}
		break;
	case ACCT_QUOTA: {
		char v[24];
		a->cool_until = until > now ? until : now + 60;
		log_warn(NULL, "%s: at its usage limit; not used for %lld s", a->id, (long long)(a->cool_until - now));
		snprintf(v, sizeof(v), "%lld", (long long)a->cool_until);
		state_save(a, "cool", v, a->cool_until - now + 60);
		break;
	}
	case ACCT_NEUTRAL:
		break;
	}
	a->probing = false;
	pthread_mutex_unlock(&a->lock);
}

/* ---- Clerk refresh --------------------------------------------------- */

struct refresh {
	struct account *a;
	struct worker *w;
	struct gw_config *cfg;
	char *cookie;
	bool rediscovered; /* the session was looked up again after a refused mint */
};

static void refresh_step(struct refresh *r);

/* Applies a rotated __client from any Clerk response at once, and saves it. */
static void apply_rotation(struct refresh *r, const struct httpc_resp *resp)
{
	const char *pos = NULL, *v;
	size_t vl;
	while (httpc_header_next(resp, "set-cookie", &pos, &v, &vl)) {
		struct buf nv;
		buf_init(&nv, 16384);
		if (clerk_set_cookie_client(v, vl, &nv)) {
			struct account *a = r->a;
			char *copy = gw_strdup(nv.p), *copy2 = gw_strdup(nv.p);
			if (copy && copy2) {
				pthread_mutex_lock(&a->lock);
				secret_free(a->cookie);
				a->cookie = copy;
				pthread_mutex_unlock(&a->lock);
				secret_free(r->cookie);
				r->cookie = copy2;
				char key[64];
				cookie_key(a, key);
				struct store *st = a->pool->app->store;
				struct store_op *op;
				if (store_kv_put(st, r->w->base, key, nv.p, nv.len, 0, NULL, NULL, &op) != GW_OK)
					log_warn(NULL, "%s: cookie rotated but could not be saved", a->id);
				log_info(NULL, "%s: Clerk rotated the session cookie; using and saving the new one",
					 a->id);
			} else {
				secret_free(copy);
				secret_free(copy2);
			}
		}
		memset(nv.p ? nv.p : "", 0, nv.len);
		buf_release(&nv);
	}
}

static void refresh_finish(struct refresh *r, enum gw_err err, const struct chat_error *e, char *jwt,
			   int64_t exp)
{
	struct account *a = r->a;
	pthread_mutex_lock(&a->lock);
	a->refreshing = false;
	if (err == GW_OK) {
		secret_free(a->jwt);
		a->jwt = jwt;
		a->jwt_exp = exp;
		a->fail_until = 0;
	} else {
		secret_free(jwt);
		a->fail = *e;
		a->fail_until = gw_wall_s() + FAIL_CACHE_S;
		if (err == GW_EAUTH) {
			a->signed_out = true;
			a->have_sess = false;
		}
	}
	waitq_wake_all(&a->token_waiters, err);
	pthread_mutex_unlock(&a->lock);
	config_unref(r->cfg);
	secret_free(r->cookie);
	gw_free(r);
}

static void refresh_fail(struct refresh *r, enum gw_err err, int status, const char *code,
			 const char *what, const struct httpc_resp *resp)
{
	struct chat_error e;
	char excerpt[160] = "";
	if (resp && resp->err == GW_OK)
		engine_error_excerpt(resp->body, resp->body_len, excerpt, sizeof(excerpt));
	else if (resp)
		snprintf(excerpt, sizeof(excerpt), "%s", resp->error);
	if (resp && resp->err == GW_ENOMEM) {
		log_warn(NULL, "%s: %s: %s", r->a->id, what, excerpt);
		chat_error_local(&e, what);
	} else if (err == GW_EAUTH) {
		log_error(NULL, "%s: signed out (%s); replace CLERK_COOKIE and send SIGHUP", r->a->id, excerpt);
		chat_error_set(&e, 503, "unavailable", "account_signed_out",
			       "The upstream account is signed out; the operator must renew CLERK_COOKIE.");
		e.retry_after = 60;
	} else {
		log_warn(NULL, "%s: %s failed: %s (HTTP %ld)", r->a->id, what, excerpt, resp ? resp->status : 0);
		chat_error_set(&e, status, status == 504 ? "timeout" : "upstream_error", code,
			       "Upstream authentication (%s) failed: %s", what, excerpt);
	}
	refresh_finish(r, err, &e, NULL, 0);
}

static int resp_status_class(const struct httpc_resp *resp)
{
	return resp->err == GW_ETIMEOUT ? 504 : 502;
}

static void on_token(const struct httpc_resp *resp, void *arg)
{
	struct refresh *r = arg;
	apply_rotation(r, resp);
	if (resp->err != GW_OK) {
		refresh_fail(r, GW_EUPSTREAM, resp_status_class(resp), "upstream_unreachable", "token", resp);
		return;
	}
	if ((resp->status == 401 || resp->status == 404) && !r->rediscovered) {
		/* The session may have ended or changed: discover it again, once. */
		r->rediscovered = true;
		pthread_mutex_lock(&r->a->lock);
		r->a->have_sess = false;
		pthread_mutex_unlock(&r->a->lock);
		refresh_step(r);
		return;
	}
	if (resp->status == 401) {
		refresh_fail(r, GW_EAUTH, 503, NULL, "token", resp);
		return;
	}
	if (resp->status != 200) {
		refresh_fail(r, GW_EUPSTREAM, 502, "upstream_error", "token", resp);
		return;
	}
	struct buf jwt;
	int64_t exp = 0;
	buf_init(&jwt, 16384);
	if (clerk_parse_token(resp->body, resp->body_len, &jwt, &exp) != GW_OK) {
		buf_release(&jwt);
		refresh_fail(r, GW_EPROTO, 502, "upstream_protocol", "token (unexpected reply)", resp);
		return;
	}
	if (exp <= 0)
		exp = gw_wall_s() + 60;
	log_debug(NULL, "%s: JWT minted, valid for %lld s", r->a->id, (long long)(exp - gw_wall_s()));
	refresh_finish(r, GW_OK, NULL, buf_take(&jwt, NULL), exp);
}

static void on_client(const struct httpc_resp *resp, void *arg)
{
	struct refresh *r = arg;
	apply_rotation(r, resp);
	if (resp->err != GW_OK) {
		refresh_fail(r, GW_EUPSTREAM, resp_status_class(resp), "upstream_unreachable", "session", resp);
		return;
	}
	if (resp->status == 401) {
		refresh_fail(r, GW_EAUTH, 503, NULL, "session", resp);
		return;
	}
	if (resp->status != 200) {
		refresh_fail(r, GW_EUPSTREAM, 502, "upstream_error", "session", resp);
		return;
	}
	struct clerk_session s;
	enum gw_err err = clerk_parse_client(resp->body, resp->body_len, &s);
	if (err == GW_EAUTH) {
		refresh_fail(r, GW_EAUTH, 503, NULL, "session (no active session)", resp);
		return;
	}
	if (err) {
		refresh_fail(r, GW_EPROTO, 502, "upstream_protocol", "session (unexpected reply)", resp);
		return;
	}
	pthread_mutex_lock(&r->a->lock);
	r->a->sess = s;
	r->a->have_sess = true;
	pthread_mutex_unlock(&r->a->lock);
	log_info(NULL, "%s: Clerk session found (user %s%s%s)", r->a->id, s.user_id, s.org_id[0] ? ", org " : "",
		 s.org_id);
	refresh_step(r);
}

static void refresh_step(struct refresh *r)
{
	struct account *a = r->a;
	pthread_mutex_lock(&a->lock);
	bool have = a->have_sess;
	struct clerk_session s = a->sess;
	pthread_mutex_unlock(&a->lock);
	struct httpc_call *call;
	enum gw_err err;
	if (!have) {
		err = upstream_clerk(r->w->httpc, r->cfg, "/v1/client", r->cookie, NULL, on_client, r, &call);
	} else {
		char path[300], form[200];
		snprintf(path, sizeof(path), "/v1/client/sessions/%s/tokens", s.session_id);
		if (s.org_id[0])
			snprintf(form, sizeof(form), "organization_id=%s", s.org_id);
		else
			form[0] = '\0';
		err = upstream_clerk(r->w->httpc, r->cfg, path, r->cookie, form, on_token, r, &call);
	}
	if (err) {
		struct chat_error e;
		chat_error_set(&e, 500, "server_error", NULL, "cannot start the upstream call: %s",
			       gw_strerror(err));
		refresh_finish(r, err, &e, NULL, 0);
	}
}

static void refresh_step_post(void *arg)
{
	refresh_step(arg);
}

/* Starts a refresh on worker w; call with a->lock held and refreshing false. */
static void refresh_start_locked(struct account *a, struct worker *w)
{
	struct refresh *r = gw_calloc(1, sizeof(*r));
	char *cookie = gw_strdup(a->cookie);
	if (!r || !cookie) {
		gw_free(r);
		secret_free(cookie);
		return;
	}
	a->refreshing = true;
	r->a = a;
	r->w = w;
	r->cfg = config_current();
	r->cookie = cookie;
	/* The first step may take the lock itself: run it from the loop. */
	if (worker_post(w, refresh_step_post, r) != GW_OK) {
		a->refreshing = false;
		config_unref(r->cfg);
		secret_free(r->cookie);
		gw_free(r);
	}
}

char *account_cookie(struct account *a)
{
	pthread_mutex_lock(&a->lock);
	char *c = gw_strdup(a->cookie);
	pthread_mutex_unlock(&a->lock);
	return c;
}

void account_cookie_free(char *cookie)
{
	secret_free(cookie);
}

void account_creds_release(struct account_creds *c)
{
	secret_free(c->cookie);
	secret_free(c->jwt);
	c->cookie = c->jwt = NULL;
}

enum gw_err account_creds_get(struct account *a, struct worker *w, bool force, struct waiter *wt,
			      struct account_creds *out, struct chat_error *e)
{
	int64_t now = gw_wall_s();
	pthread_mutex_lock(&a->lock);
	if (a->signed_out) {
		chat_error_set(e, 503, "unavailable", "account_signed_out",
			       "The upstream account is signed out; the operator must renew CLERK_COOKIE.");
		e->retry_after = 60;
		pthread_mutex_unlock(&a->lock);
		return GW_EAUTH;
	}
	if (force && a->jwt && !a->refreshing) {
		secret_free(a->jwt);
		a->jwt = NULL;
	}
	if (a->jwt && a->jwt_exp - now > JWT_MIN_LEFT_S) {
		out->jwt = gw_strdup(a->jwt);
		out->cookie = gw_strdup(a->cookie);
		snprintf(out->user_id, sizeof(out->user_id), "%s", a->sess.user_id);
		snprintf(out->org_id, sizeof(out->org_id), "%s", a->sess.org_id);
		if (a->jwt_exp - now < JWT_REFRESH_AHEAD_S && !a->refreshing)
			refresh_start_locked(a, w);
		pthread_mutex_unlock(&a->lock);
		if (!out->jwt || !out->cookie) {
			account_creds_release(out);
			chat_error_set(e, 500, "server_error", NULL, "out of memory");
			return GW_ENOMEM;
		}
		return GW_OK;
	}
	if (!force && a->fail_until > now && !a->refreshing) {
		*e = a->fail;
		pthread_mutex_unlock(&a->lock);
		return GW_EUPSTREAM;
	}
	wt->tag = WAIT_TOKEN;
	waitq_push(&a->token_waiters, wt);
	if (!a->refreshing)
		refresh_start_locked(a, w);
	bool started = a->refreshing;
	if (!started)
		waitq_remove(wt);
	pthread_mutex_unlock(&a->lock);
	if (!started) {
		chat_error_set(e, 500, "server_error", NULL, "out of memory");
		return GW_ENOMEM;
	}
	return GW_EAGAIN;
}

static void gate_pump(struct account *a);
static void slots_pump(struct account *a, long limit);

void account_wait_cancel(struct account *a, struct waiter *wt)
{
	long limit = concurrency_limit();
	pthread_mutex_lock(&a->lock);
	if (waitq_remove(wt)) {
		if (wt->tag == WAIT_SLOT)
			a->queued--;
	} else if (waitq_take_unconsumed(wt)) {
		/* Woken but gone before its callback ran: hand back what the wake
		 * granted, or the gate or a slot would be held for ever. */
		if (wt->tag == WAIT_SLOT) {
			a->running--;
			slots_pump(a, limit);
		} else if (wt->tag == WAIT_GATE) {
			a->holders--;
			if (wt->flag) {
				a->switching = false;
				a->cur_model[0] = '\0';
			}
			gate_pump(a);
		}
	}
	pthread_mutex_unlock(&a->lock);
}

/* ---- preferred-model gate -------------------------------------------- */

/* Grants queued waiters while the model allows; call with a->lock held. */
static void gate_pump(struct account *a)
{
	struct waiter *h;
	while (!a->switching && (h = waitq_peek(&a->gate))) {
		const char *want = h->want;
		if (a->holders > 0 && strcmp(a->cur_model, want) != 0)
			break;
		a->holders++;
		h->flag = strcmp(a->cur_model, want) != 0;
		if (h->flag) {
			a->switching = true;
			snprintf(a->cur_model, sizeof(a->cur_model), "%s", want);
		}
		waitq_wake(h, GW_OK);
	}
}

enum gw_err account_model_acquire(struct account *a, const char *model_key, struct waiter *wt,
				  bool *need_switch)
{
	pthread_mutex_lock(&a->lock);
	bool same = strcmp(a->cur_model, model_key) == 0;
	if (waitq_empty(&a->gate) && !a->switching && (a->holders == 0 || same)) {
		a->holders++;
		*need_switch = !same;
		if (!same) {
			a->switching = true;
			snprintf(a->cur_model, sizeof(a->cur_model), "%s", model_key);
		}
		pthread_mutex_unlock(&a->lock);
		return GW_OK;
	}
	wt->want = model_key;
	wt->tag = WAIT_GATE;
	waitq_push(&a->gate, wt);
	pthread_mutex_unlock(&a->lock);
	return GW_EAGAIN;
}

void account_model_switched(struct account *a, const char *model_key, bool ok)
{
	pthread_mutex_lock(&a->lock);
	a->switching = false;
	if (!ok)
		a->cur_model[0] = '\0'; /* unknown: the next request sets it again */
	else
		state_save(a, "model", model_key, 0);
	gate_pump(a);
	pthread_mutex_unlock(&a->lock);
}

void account_model_release(struct account *a)
{
	pthread_mutex_lock(&a->lock);
	GW_ASSERT(a->holders > 0);
	a->holders--;
	gate_pump(a);
	pthread_mutex_unlock(&a->lock);
}

/* ---- models ---------------------------------------------------------- */

void models_snap_unref(const struct models_snap *s)
{
	struct snap_impl *si = (struct snap_impl *)s;
	if (si && atomic_fetch_sub(&si->refs, 1) == 1) {
		models_list_release(&si->pub.list);
		gw_free(si);
	}
}

struct mfetch {
	struct pool *p;
	struct worker *w;
	struct account *a;
	struct waiter wt;
	struct account_creds creds;
	bool forced;
	bool force_next;
};

static void models_finish(struct mfetch *f, struct snap_impl *snap, const struct chat_error *e)
{
	struct pool *p = f->p;
	pthread_mutex_lock(&p->lock);
	p->models_fetching = false;
	if (snap) {
		if (p->models)
			models_snap_unref(&p->models->pub);
		p->models = snap;
		p->models_err_until = 0;
	} else {
		p->models_err = *e;
		p->models_err_until = gw_wall_s() + FAIL_CACHE_S;
	}
	waitq_wake_all(&p->models_waiters, snap ? GW_OK : GW_EUPSTREAM);
	pthread_mutex_unlock(&p->lock);
	account_creds_release(&f->creds);
	waiter_fini(&f->wt);
	gw_free(f);
}

static void mfetch_creds(struct mfetch *f);

static void on_adapters(const struct httpc_resp *resp, void *arg)
{
	struct mfetch *f = arg;
	struct chat_error e;
	char excerpt[160] = "";
	if (resp->err == GW_ENOMEM) {
		chat_error_local(&e, "the model list");
		models_finish(f, NULL, &e);
		return;
	}
	if (resp->err != GW_OK) {
		chat_error_set(&e, resp->err == GW_ETIMEOUT ? 504 : 502, "upstream_error", "upstream_unreachable",
			       "Could not fetch the model list: %s", resp->error);
		models_finish(f, NULL, &e);
		return;
	}
	if (resp->status == 401 && !f->forced) {
		f->forced = true;
		f->force_next = true;
		account_creds_release(&f->creds);
		mfetch_creds(f);
		return;
	}
	if (resp->status != 200) {
		engine_error_excerpt(resp->body, resp->body_len, excerpt, sizeof(excerpt));
		chat_error_set(&e, 502, "upstream_error", "upstream_error",
			       "Could not fetch the model list: upstream answered %ld: %s", resp->status, excerpt);
		models_finish(f, NULL, &e);
		return;
	}
	struct snap_impl *snap = gw_calloc(1, sizeof(*snap));
	if (!snap || models_parse_adapters(resp->body, resp->body_len, &snap->pub.list) != GW_OK) {
		gw_free(snap);
		chat_error_set(&e, 502, "upstream_error", "upstream_protocol",
			       "The upstream model list has an unexpected shape.");
		models_finish(f, NULL, &e);
		return;
	}
	atomic_init(&snap->refs, 1);
	snap->pub.fetched = gw_wall_s();
	log_info(NULL, "model list fetched: %zu models", snap->pub.list.n);
	models_finish(f, snap, NULL);
}

static void on_mfetch_wait(struct waiter *wt, void *arg)
{
	GW_UNUSED(wt);
	mfetch_creds(arg);
}

static void mfetch_creds(struct mfetch *f)
{
	struct chat_error e;
	bool force = f->force_next;
	f->force_next = false;
	enum gw_err err = account_creds_get(f->a, f->w, force, &f->wt, &f->creds, &e);
	if (err == GW_EAGAIN)
		return;
	if (err) {
		models_finish(f, NULL, &e);
		return;
	}
	struct gw_config *cfg = config_current();
	struct httpc_call *call;
	err = upstream_engine(f->w->httpc, cfg, "GET", "/chat/adapters", f->creds.jwt, NULL, 0, on_adapters, f,
			      &call);
	config_unref(cfg);
	if (err) {
		chat_error_set(&e, 500, "server_error", NULL, "cannot start the upstream call");
		models_finish(f, NULL, &e);
	}
}

static void mfetch_post(void *arg)
{
	mfetch_creds(arg);
}

/* Starts a fetch; call with p->lock held and models_fetching false. */
static enum gw_err models_fetch_start_locked(struct pool *p, struct worker *w, struct chat_error *e)
{
	struct account *a = NULL;
	pthread_mutex_unlock(&p->lock);
	a = pool_pick(p, NULL, e);
	pthread_mutex_lock(&p->lock);
	if (!a)
		return GW_EUPSTREAM;
	struct mfetch *f = gw_calloc(1, sizeof(*f));
	if (!f || waiter_init(&f->wt, w->base, on_mfetch_wait, f) != GW_OK) {
		gw_free(f);
		chat_error_set(e, 500, "server_error", NULL, "out of memory");
		return GW_ENOMEM;
	}
	f->p = p;
	f->w = w;
	f->a = a;
	p->models_fetching = true;
	if (worker_post(w, mfetch_post, f) != GW_OK) {
		p->models_fetching = false;
		waiter_fini(&f->wt);
		gw_free(f);
		chat_error_set(e, 500, "server_error", NULL, "out of memory");
		return GW_ENOMEM;
	}
	return GW_OK;
}

enum gw_err pool_models(struct pool *p, struct worker *w, struct waiter *wt,
			const struct models_snap **out, struct chat_error *e)
{
	struct gw_config *cfg = config_current();
	long ttl = cfg->models_ttl;
	config_unref(cfg);
	int64_t now = gw_wall_s();
	pthread_mutex_lock(&p->lock);
	struct snap_impl *cur = p->models;
	bool fresh = cur && cur->pub.fetched + ttl > now;
	if (cur && !fresh && !p->models_fetching && p->models_err_until <= now) {
		struct chat_error ignored;
		if (models_fetch_start_locked(p, w, &ignored) != GW_OK)
			log_warn(NULL, "model list refresh not started: %s", ignored.message);
		cur = p->models; /* the lock was dropped: read it again */
	}
	if (cur) {
		/* Fresh, or stale while a refresh runs in the background. */
		atomic_fetch_add(&cur->refs, 1);
		*out = &cur->pub;
		pthread_mutex_unlock(&p->lock);
		return GW_OK;
	}
	if (!p->models_fetching && p->models_err_until > now) {
		*e = p->models_err;
		pthread_mutex_unlock(&p->lock);
		return GW_EUPSTREAM;
	}
	enum gw_err err = GW_OK;
	if (!p->models_fetching)
		err = models_fetch_start_locked(p, w, e);
	if (err == GW_OK)
		waitq_push(&p->models_waiters, wt);
	pthread_mutex_unlock(&p->lock);
	return err ? err : GW_EAGAIN;
}

void pool_models_cancel(struct pool *p, struct waiter *wt)
{
	pthread_mutex_lock(&p->lock);
	waitq_remove(wt);
	pthread_mutex_unlock(&p->lock);
}
