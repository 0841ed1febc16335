/* pool.h - the upstream accounts (one per configured cookie) and what is
 * shared about them between workers: the Clerk session and JWT (one
 * refresh in flight per account), the rotated cookie, the team-wide
 * preferred model (a gate that serialises switches), and the model list.
 *
 * All functions are thread-safe. "Waiting" functions return GW_EAGAIN after
 * queueing the waiter; its callback then runs on the waiter's loop and the
 * caller asks again. */
#ifndef GW_POOL_H
#define GW_POOL_H

#include "gw.h"
#include "core/chat.h"
#include "core/models.h"
#include "core/waitq.h"

struct app;
struct worker;
struct gw_config;
struct pool;
struct account;

struct pool *pool_new(struct app *app, const struct gw_config *cfg, char *err, size_t errlen);
void pool_free(struct pool *p);
/* SIGHUP: a changed cookie replaces the account's (and revives it). */
void pool_reload(struct pool *p, const struct gw_config *cfg);

/* An account for a new conversation: the usable one with the most spare
 * capacity (ties broken round-robin), avoiding `avoid` when another can
 * serve. NULL with e filled when none can: 429 + Retry-After when all are
 * at their quota, 503 + Retry-After when all are failing or signed out. */
struct account *pool_pick(struct pool *p, const struct account *avoid, struct chat_error *e);
/* The account with this id if it is usable now, else NULL. */
struct account *pool_find(struct pool *p, const char *id);

const char *account_id(const struct account *a);

/* For background chores (the chat clean-up): every configured account by
 * index, usable or not, without claiming the breaker's half-open probe
 * that pool_pick/pool_find hand to a request. */
struct account *pool_at(struct pool *p, size_t i); /* NULL past the last account */
/* Signed in and its breaker closed (a quota cool-down does not count:
 * listing and deleting chats cost no usage). */
bool account_healthy(struct account *a);

/* Capacity: replies in progress at once per account (ACCOUNT_CONCURRENCY),
 * with a bounded wait queue. GW_OK: a slot is held (release it).
 * GW_EAGAIN: wt queued; when it fires with GW_OK the slot is held.
 * GW_ELIMIT: the queue is full; e is a 429 with Retry-After. */
enum gw_err account_slot_acquire(struct account *a, struct waiter *wt, struct chat_error *e) GW_MUSTCHECK;
void account_slot_release(struct account *a);

/* Health: what an exchange on this account came to. */
enum account_outcome {
	ACCT_OK,        /* a reply completed */
	ACCT_FAILED,    /* upstream unreachable, 5xx, broken stream: counts toward the breaker */
	ACCT_QUOTA,     /* at its usage limit until `until` (unix seconds) */
	ACCT_NEUTRAL,   /* the request's own fault (too large, ...) */
};
void account_report(struct account *a, enum account_outcome o, int64_t until);

/* What a request needs to talk to the upstream as this account. */
struct account_creds {
	char *cookie;    /* the __client value (secret); gw_free */
	char *jwt;       /* fresh JWT (secret); gw_free */
	char user_id[128];
	char org_id[128];
};
void account_creds_release(struct account_creds *c);
/* The current __client value (secret), for a call made later than the
 * credentials were taken. Free with account_cookie_free. */
char *account_cookie(struct account *a);
void account_cookie_free(char *cookie);

/* GW_OK: creds filled with a JWT valid for at least 15 s more.
 * GW_EAGAIN: wt queued; ask again when it fires (wt->err says how it went).
 * Other: e filled (401 signed out -> 503 for the client, upstream errors -> 502).
 * force: the upstream refused the current JWT; mint a new one. */
enum gw_err account_creds_get(struct account *a, struct worker *w, bool force, struct waiter *wt,
			      struct account_creds *out, struct chat_error *e) GW_MUSTCHECK;
/* Marks a failed wait (cancel): call on the waiter's thread. */
void account_wait_cancel(struct account *a, struct waiter *wt);

/* The model gate. GW_OK: granted; *need_switch says the caller must PATCH
 * the preferred model and then call account_model_switched. GW_EAGAIN: wt
 * queued; when it fires it is granted and wt->flag is need_switch. */
enum gw_err account_model_acquire(struct account *a, const char *model_key, struct waiter *wt,
				  bool *need_switch) GW_MUSTCHECK;
void account_model_switched(struct account *a, const char *model_key, bool ok);
void account_model_release(struct account *a);

/* The model list: a shared, immutable snapshot. */
struct models_snap {
	struct model_list list;
	int64_t fetched;     /* unix seconds */
};
/* GW_OK: *out is a reference (release with models_snap_unref).
 * GW_EAGAIN: wt queued. Other: e filled. */
enum gw_err pool_models(struct pool *p, struct worker *w, struct waiter *wt,
			const struct models_snap **out, struct chat_error *e) GW_MUSTCHECK;
void pool_models_cancel(struct pool *p, struct waiter *wt);
void models_snap_unref(const struct models_snap *s);

#endif
