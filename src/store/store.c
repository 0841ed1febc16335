/* store.c - URL parsing, the store thread, the op queue and the delivery of
 * results to the callers' event_bases.
 *
 * Callers enqueue ops under s->mu and wake the store thread with
 * event_active() on a persistent event. The backend executes each op on the
 * store thread and calls store__op_done(), which activates a delivery event
 * that the op created on the caller's base at submit time (so delivery
 * cannot fail for lack of memory). The op's state, always changed under
 * s->mu, makes cancellation race-free: once store_op_cancel() has set
 * CANCELLED nobody activates the delivery event, and a delivery already
 * activated is removed from the caller's active queue by event_free() on the
 * caller's own thread before it can run.
 *
 * A backend that never waits (memory) is not worth a thread hop: its ops run
 * on the caller's thread, one at a time under s->exec_mu, and the delivery
 * event is activated on the caller's own base, so the callback still runs on
 * a later loop turn (never inside the call that submitted it) and no thread
 * is woken. The store thread then only runs the periodic sweep.
 *
 * Ownership: the thread that runs an op (the store thread, or for an
 * inline backend the caller's) owns it until it is DELIVERING, then the
 * delivery event (or a cancel) does. The store struct lives until it is
 * closed and the last op is released, so a late delivery after store_close
 * still finds its mutex. */
#include "store/store_internal.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_DEFAULT_TTL_S (30 * 24 * 3600)
#define STORE_DEFAULT_MAX_ENTRIES 100000
#define STORE_DEFAULT_TIMEOUT_MS 2000
#define STORE_OPS_PER_TURN 64 /* bounded work per loop turn */
#define REDIS_DEFAULT_PORT 6379
#define REDIS_DB_MAX 1000000

struct store_sync {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	enum gw_err err;
	char *val;
	size_t len;
};

struct store {
	const struct store_backend *be_ops;
	void *be;
	struct store_opts opts;
	struct event_base *base; /* the store thread's */
	struct event *wake;
	struct event *sweep_ev;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_mutex_t exec_mu;      /* inline backends: one op or sweep at a time */
	struct store_op *head, *tail; /* queued, under mu */
	size_t queued;
	size_t live;   /* ops not yet released */
	bool stopping; /* no new ops; drain and stop */
	bool closed;   /* store_close returned: the last release frees s */
	int64_t shift; /* test clock shift, atomic */
};

/* ---- URL parsing ---------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) GW_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Percent-decodes p[0..n) into out (NUL-terminated); false if malformed,
 * too long or decoding to a NUL. */
static bool pct_decode(const char *p, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i];
		if (c == '%') {
			int hi = n - i >= 3 ? gw_hexval(p[i + 1]) : -1;
			int lo = n - i >= 3 ? gw_hexval(p[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return false;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= outsz)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

/* Parses up to max_digits decimal digits into [lo, hi]; advances *pp. */
static bool parse_uint(const char **pp, int max_digits, long lo, long hi, int *out)
{
	const char *p = *pp;
	long v = 0;
	int nd = 0;
	while (isdigit((unsigned char)*p) && nd < max_digits) {
		v = v * 10 + (*p++ - '0');
		nd++;
	}
	if (nd == 0 || isdigit((unsigned char)*p) || v < lo || v > hi)
		return false;
	*out = (int)v;
	*pp = p;
	return true;
}

static bool host_char(char c, bool v6)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' || (v6 && c == ':');
}

static enum gw_err parse_userinfo(const char *ui, size_t n, struct store_url *u, char *err,
				  size_t errlen)
{
	const char *colon = memchr(ui, ':', n);
	if (!colon) {
		seterr(err, errlen, "redis URL: credentials must be ':password@' or 'user:password@'");
		return GW_ECONFIG;
	}
	if (!pct_decode(ui, (size_t)(colon - ui), u->user, sizeof(u->user))) {
		seterr(err, errlen, "redis URL: bad or too long user name");
		return GW_ECONFIG;
	}
	if (!pct_decode(colon + 1, n - (size_t)(colon - ui) - 1, u->password, sizeof(u->password))) {
		seterr(err, errlen, "redis URL: bad or too long password");
		return GW_ECONFIG;
	}
	return GW_OK;
}

static enum gw_err parse_host(const char **pp, struct store_url *u, char *err, size_t errlen)
{
	const char *p = *pp, *end;
	bool v6 = *p == '[';
	if (v6) {
		end = strchr(++p, ']');
		if (!end) {
			seterr(err, errlen, "redis URL: unterminated [IPv6] host");
			return GW_ECONFIG;
		}
	} else {
		end = p + strcspn(p, ":/");
	}
	size_t n = (size_t)(end - p);
	if (n == 0 || n >= sizeof(u->host)) {
		seterr(err, errlen, "redis URL: missing or too long host");
		return GW_ECONFIG;
	}
	for (size_t i = 0; i < n; i++) {
		if (!host_char(p[i], v6)) {
			seterr(err, errlen, "redis URL: bad character in host");
			return GW_ECONFIG;
		}
	}
	memcpy(u->host, p, n);
	u->host[n] = '\0';
	*pp = end + (v6 ? 1 : 0);
	return GW_OK;
}

static enum gw_err parse_redis(const char *rest, struct store_url *u, char *err, size_t errlen)
{
	/* The last '@' ends the credentials: a password may hold '@' or '/',
	 * the host and db never do. */
	const char *at = strrchr(rest, '@'), *p = rest;
	enum gw_err e;
	if (at) {
		if ((e = parse_userinfo(rest, (size_t)(at - rest), u, err, errlen)))
			return e;
		p = at + 1;
	}
	if ((e = parse_host(&p, u, err, errlen)))
		return e;
	u->port = REDIS_DEFAULT_PORT;
	if (*p == ':' && (p++, !parse_uint(&p, 5, 1, 65535, &u->port))) {
		seterr(err, errlen, "redis URL: port must be 1-65535");
		return GW_ECONFIG;
	}
	if (*p == '/' && *++p && !parse_uint(&p, 7, 0, REDIS_DB_MAX, &u->db)) {
		seterr(err, errlen, "redis URL: db must be a number 0-%d", REDIS_DB_MAX);
		return GW_ECONFIG;
	}
	if (*p) {
		seterr(err, errlen, "redis URL: unexpected text after host:port/db");
		return GW_ECONFIG;
	}
	return GW_OK;
}

static enum gw_err parse_sqlite(const char *path, struct store_url *u, char *err, size_t errlen)
{
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(u->path)) {
		seterr(err, errlen, "sqlite URL: missing or too long path (sqlite://PATH)");
		return GW_ECONFIG;
	}
	for (size_t i = 0; i < n; i++) {
		if (iscntrl((unsigned char)path[i])) {
			seterr(err, errlen, "sqlite URL: control character in path");
			return GW_ECONFIG;
		}
	}
	memcpy(u->path, path, n + 1);
	return GW_OK;
}

enum gw_err store__parse_url(const char *url, struct store_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	if (!url || !*url) {
		seterr(err, errlen, "store URL is empty");
		return GW_ECONFIG;
	}
	if (!strcmp(url, "memory:") || !strcmp(url, "memory://")) {
		u->kind = STORE_URL_MEMORY;
		return GW_OK;
	}
	if (!strncmp(url, "sqlite://", 9)) {
		u->kind = STORE_URL_SQLITE;
		return parse_sqlite(url + 9, u, err, errlen);
	}
	if (!strncmp(url, "redis://", 8)) {
		u->kind = STORE_URL_REDIS;
		enum gw_err e = parse_redis(url + 8, u, err, errlen);
		if (e)
			explicit_bzero(u, sizeof(*u));
		return e;
	}
	/* The URL itself is not echoed: it may carry a password. */
	seterr(err, errlen, "unknown store URL (expected memory:, sqlite://PATH or "
	       "redis://[:password@]host:port[/db])");
	return GW_ECONFIG;
}

/* ---- ops ------------------------------------------------------------- */

static int64_t store_now(struct store *s)
{
	return gw_wall_s() + __atomic_load_n(&s->shift, __ATOMIC_RELAXED);
}

void store__time_shift(struct store *s, int64_t secs)
{
	__atomic_store_n(&s->shift, secs, __ATOMIC_RELAXED);
}

static void store_destroy(struct store *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->exec_mu);
	gw_free(s);
}

static void wipe_free(char *p, size_t n)
{
	/* kv values may be secrets (a rotated cookie): do not leave them in
	 * freed memory. */
	if (p)
		explicit_bzero(p, n);
	gw_free(p);
}

static void op_release(struct store_op *op)
{
	struct store *s = op->s;
	gw_free(op->name);
	wipe_free(op->value, op->vlen);
	wipe_free(op->rval, op->rlen);
	gw_free(op);
	pthread_mutex_lock(&s->mu);
	GW_ASSERT(s->live > 0);
	bool last = --s->live == 0 && s->closed;
	pthread_mutex_unlock(&s->mu);
	if (last)
		store_destroy(s);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg);

static struct store_op *op_new(struct store *s, enum store_op_kind kind, struct event_base *base,
			       bool has_cb)
{
	struct store_op *op = gw_calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->s = s;
	op->kind = kind;
	if (has_cb && !(op->ev = event_new(base, -1, 0, on_deliver, op))) {
		gw_free(op);
		return NULL;
	}
	return op;
}

/* Frees an op that was never queued. */
static void op_discard(struct store_op *op)
{
	if (op->ev)
		event_free(op->ev);
	gw_free(op->name);
	wipe_free(op->value, op->vlen);
	gw_free(op);
}

static void op_exec(struct store *s, struct store_op *op)
{
	op->now = store_now(s);
	if (op->kind == STORE_OP_SWEEP) {
		/* the test hooks: the whole sweep at once, or one step */
		while (s->be_ops->sweep && s->be_ops->sweep(s->be, op->now) && !op->sweep_once)
			;
		store__op_done(op);
	} else {
		s->be_ops->exec(s->be, op);
	}
}

/* exec_mu is held from the stopping check to the end of the op, so the store
 * thread cannot free the backend under it. */
static enum gw_err op_run_inline(struct store *s, struct store_op *op, struct store_op **out)
{
	pthread_mutex_lock(&s->exec_mu);
	pthread_mutex_lock(&s->mu);
	bool stopping = s->stopping;
	if (!stopping) {
		op->state = STORE_OP_RUNNING;
		s->live++;
		if (out)
			*out = op->ev ? op : NULL;
	}
	pthread_mutex_unlock(&s->mu);
	if (!stopping)
		op_exec(s, op);
	pthread_mutex_unlock(&s->exec_mu);
	if (stopping)
		op_discard(op);
	return stopping ? GW_EIO : GW_OK;
}

static enum gw_err op_submit(struct store *s, struct store_op *op, struct store_op **out)
{
	if (s->be_ops->inline_exec)
		return op_run_inline(s, op, out);
	pthread_mutex_lock(&s->mu);
	enum gw_err err = s->stopping ? GW_EIO : s->queued >= STORE_QUEUE_MAX ? GW_ELIMIT : GW_OK;
	if (!err) {
		op->state = STORE_OP_QUEUED;
		if (s->tail)
			s->tail->next = op;
		else
			s->head = op;
		s->tail = op;
		s->queued++;
		s->live++;
		if (out)
			*out = op->ev ? op : NULL;
		event_active(s->wake, EV_READ, 0);
	}
	pthread_mutex_unlock(&s->mu);
	if (err)
		op_discard(op);
	return err;
}

static struct store_op *queue_pop(struct store *s, bool *skip)
{
	pthread_mutex_lock(&s->mu);
	struct store_op *op = s->head;
	if (op) {
		s->head = op->next;
		if (!s->head)
			s->tail = NULL;
		s->queued--;
		op->next = NULL;
		/* A cancelled read has nothing left to do; a cancelled write
		 * still happens (only its callback is gone). */
		*skip = op->state == STORE_OP_CANCELLED && !store__op_is_write(op);
		if (op->state == STORE_OP_QUEUED)
			op->state = STORE_OP_RUNNING;
	}
	pthread_mutex_unlock(&s->mu);
	return op;
}

static void maybe_stop(struct store *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stopping && !s->head;
	pthread_mutex_unlock(&s->mu);
	if (stop && (!s->be_ops->busy || s->be_ops->busy(s->be) == 0))
		event_base_loopbreak(s->base);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	for (int i = 0; i < STORE_OPS_PER_TURN; i++) {
		bool skip = false;
		struct store_op *op = queue_pop(s, &skip);
		if (!op)
			break;
		if (skip) {
			op_release(op);
			continue;
		}
		op_exec(s, op);
	}
	pthread_mutex_lock(&s->mu);
	bool more = s->head != NULL;
	pthread_mutex_unlock(&s->mu);
	if (more)
		event_active(s->wake, EV_READ, 0);
	else
		maybe_stop(s);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	if (!s->be_ops->sweep)
		return;
	pthread_mutex_lock(&s->exec_mu);
	bool more = s->be_ops->sweep(s->be, store_now(s));
	pthread_mutex_unlock(&s->exec_mu);
	/* The next step on a later loop turn: relocking at once would let
	 * this thread take the mutex back before a waiting worker wakes. */
	if (more)
		event_active(s->sweep_ev, EV_TIMEOUT, 0);
}

static void sync_finish(struct store_op *op)
{
	struct store_sync *y = op->sync;
	pthread_mutex_lock(&y->mu);
	y->err = op->err;
	y->val = op->rval;
	y->len = op->rlen;
	op->rval = NULL;
	op->rlen = 0;
	op_release(op);
	y->done = true;
	pthread_cond_signal(&y->cv);
	pthread_mutex_unlock(&y->mu);
}

static void log_lost(const struct store_op *op)
{
	/* GW_EIO and GW_ETIMEOUT are logged by the backend once per outage. */
	if (op->err && op->err != GW_EIO && op->err != GW_ETIMEOUT)
		log_warn(NULL, "store: background %s failed: %s",
			 op->kind == STORE_OP_CONV_PUT ? "conversation write" : "write",
			 gw_strerror(op->err));
}

void store__op_done(struct store_op *op)
{
	struct store *s = op->s;
	if (op->sync) {
		sync_finish(op);
		maybe_stop(s);
		return;
	}
	pthread_mutex_lock(&s->mu);
	bool release = op->state == STORE_OP_CANCELLED || !op->ev;
	if (!release) {
		GW_ASSERT(op->state == STORE_OP_RUNNING);
		op->state = STORE_OP_DELIVERING;
		event_active(op->ev, EV_TIMEOUT, 0);
	}
	pthread_mutex_unlock(&s->mu);
	if (release) {
		log_lost(op);
		op_release(op);
	}
	maybe_stop(s);
}

void store__op_set_value(struct store_op *op, const void *p, size_t n)
{
	op->rval = gw_malloc(n + 1);
	if (!op->rval) {
		op->err = GW_ENOMEM;
		return;
	}
	if (n)
		memcpy(op->rval, p, n);
	op->rval[n] = '\0';
	op->rlen = n;
	op->found = true;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct store_op *op = arg;
	struct store *s = op->s;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	pthread_mutex_lock(&s->mu);
	GW_ASSERT(op->state == STORE_OP_DELIVERING);
	op->state = STORE_OP_DONE;
	pthread_mutex_unlock(&s->mu);
	switch (op->kind) {
	case STORE_OP_CONV_GET:
		op->cb.conv(op->err, !op->err && op->found ? &op->res : NULL, op->arg);
		break;
	case STORE_OP_KV_GET:
		op->cb.kv(op->err, !op->err && op->found ? op->rval : NULL,
			  !op->err && op->found ? op->rlen : 0, op->arg);
		break;
	default:
		op->cb.done(op->err, op->arg);
		break;
	}
	event_free(op->ev);
	op_release(op);
}

void store_op_cancel(struct store_op *op)
{
	if (!op)
		return;
	struct store *s = op->s;
	pthread_mutex_lock(&s->mu);
	GW_ASSERT(op->state != STORE_OP_DONE && op->state != STORE_OP_CANCELLED);
	bool delivering = op->state == STORE_OP_DELIVERING;
	struct event *ev = op->ev;
	op->ev = NULL;
	op->state = STORE_OP_CANCELLED;
	pthread_mutex_unlock(&s->mu);
	/* On the caller's thread: also takes an activated delivery off the
	 * active queue, so on_deliver cannot run. */
	event_free(ev);
	if (delivering)
		op_release(op); /* the store thread let go of it already */
}

/* Runs op on the store thread and waits for it; returns its error and
 * hands over its value. */
static enum gw_err op_run_sync(struct store *s, struct store_op *op, char **val, size_t *len)
{
	struct store_sync y = { .done = false };
	if (pthread_mutex_init(&y.mu, NULL)) {
		op_discard(op);
		return GW_ENOMEM;
	}
	if (pthread_cond_init(&y.cv, NULL)) {
		pthread_mutex_destroy(&y.mu);
		op_discard(op);
		return GW_ENOMEM;
	}
	op->sync = &y;
	enum gw_err err = op_submit(s, op, NULL);
	if (!err) {
		/* No timeout here: every backend finishes every op (redis
		 * commands have their own timers). */
		pthread_mutex_lock(&y.mu);
		while (!y.done)
			pthread_cond_wait(&y.cv, &y.mu);
		pthread_mutex_unlock(&y.mu);
		err = y.err;
	}
	pthread_cond_destroy(&y.cv);
	pthread_mutex_destroy(&y.mu);
	if (val)
		*val = y.val;
	else
		wipe_free(y.val, y.len);
	if (len)
		*len = y.len;
	return err;
}

/* ---- public calls ---------------------------------------------------- */

static bool name_ok(const char *name)
{
	return name && *name && strnlen(name, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

static bool field_ok(const char *f, size_t size, bool required)
{
	size_t n = strnlen(f, size);
	return n < size && (!required || n > 0);
}

static bool entry_ok(const struct conv_entry *e)
{
	return field_ok(e->chat_id, sizeof(e->chat_id), true) &&
	       field_ok(e->workspace_id, sizeof(e->workspace_id), false) &&
	       field_ok(e->account, sizeof(e->account), false) &&
	       field_ok(e->model, sizeof(e->model), false);
}

enum gw_err store_conv_get(struct store *s, struct event_base *base,
			   const uint8_t key[STORE_KEY_LEN], store_conv_cb *cb, void *arg,
			   struct store_op **out)
{
	if (!s || !base || !key || !cb)
		return GW_EINVAL;
	struct store_op *op = op_new(s, STORE_OP_CONV_GET, base, true);
	if (!op)
		return GW_ENOMEM;
	memcpy(op->key, key, STORE_KEY_LEN);
	op->cb.conv = cb;
	op->arg = arg;
	return op_submit(s, op, out);
}

enum gw_err store_conv_put(struct store *s, struct event_base *base,
			   const uint8_t key[STORE_KEY_LEN], const struct conv_entry *e,
			   store_done_cb *cb, void *arg, struct store_op **out)
{
	if (out)
		*out = NULL;
	if (!s || !key || !e || (cb && !base) || !entry_ok(e))
		return GW_EINVAL;
	struct store_op *op = op_new(s, STORE_OP_CONV_PUT, base, cb != NULL);
	if (!op)
		return GW_ENOMEM;
	memcpy(op->key, key, STORE_KEY_LEN);
	op->entry = *e;
	op->cb.done = cb;
	op->arg = arg;
	return op_submit(s, op, out);
}

enum gw_err store_kv_get(struct store *s, struct event_base *base, const char *name,
			 store_kv_cb *cb, void *arg, struct store_op **out)
{
	if (!s || !base || !name_ok(name) || !cb)
		return GW_EINVAL;
	struct store_op *op = op_new(s, STORE_OP_KV_GET, base, true);
	if (!op)
		return GW_ENOMEM;
	if (!(op->name = gw_strdup(name))) {
		op_discard(op);
		return GW_ENOMEM;
	}
	op->cb.kv = cb;
	op->arg = arg;
	return op_submit(s, op, out);
}

enum gw_err store_kv_put(struct store *s, struct event_base *base, const char *name,
			 const char *value, size_t len, int64_t ttl_s,
			 store_done_cb *cb, void *arg, struct store_op **out)
{
	if (out)
		*out = NULL;
	if (!s || !name_ok(name) || (!value && len) || len > STORE_VALUE_MAX || ttl_s < 0 ||
	    (cb && !base))
		return GW_EINVAL;
	struct store_op *op = op_new(s, STORE_OP_KV_PUT, base, cb != NULL);
	if (!op)
		return GW_ENOMEM;
	op->name = gw_strdup(name);
	op->value = gw_malloc(len + 1);
	if (!op->name || !op->value) {
		op_discard(op);
		return GW_ENOMEM;
	}
	if (len)
		memcpy(op->value, value, len);
	op->value[len] = '\0';
	op->vlen = len;
	op->ttl_s = ttl_s;
	op->cb.done = cb;
	op->arg = arg;
	return op_submit(s, op, out);
}

char *store_kv_get_sync(struct store *s, const char *name, size_t *len)
{
	if (len)
		*len = 0;
	if (!s || !name_ok(name))
		return NULL;
	struct store_op *op = op_new(s, STORE_OP_KV_GET, NULL, false);
	if (!op)
		return NULL;
	if (!(op->name = gw_strdup(name))) {
		op_discard(op);
		return NULL;
	}
	char *val = NULL;
	size_t n = 0;
	enum gw_err err = op_run_sync(s, op, &val, &n);
	if (err) {
		log_warn(NULL, "store: start-up read failed: %s", gw_strerror(err));
		wipe_free(val, n);
		return NULL;
	}
	if (len)
		*len = n;
	return val;
}

static void sweep_sync(struct store *s, bool once)
{
	struct store_op *op = op_new(s, STORE_OP_SWEEP, NULL, false);
	GW_ASSERT(op);
	op->sweep_once = once;
	GW_ASSERT(op_run_sync(s, op, NULL, NULL) == GW_OK);
}

void store__sweep(struct store *s)
{
	sweep_sync(s, false);
}

void store__sweep_step(struct store *s)
{
	sweep_sync(s, true);
}

/* ---- open / close ---------------------------------------------------- */

static void *store_main(void *arg)
{
	struct store *s = arg;
	if (event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
		log_error(NULL, "store: event loop failed");
	pthread_mutex_lock(&s->exec_mu);
	s->be_ops->free(s->be);
	s->be = NULL;
	pthread_mutex_unlock(&s->exec_mu);
	return NULL;
}

static void opts_fill(struct store_opts *o, const struct store_opts *in)
{
	if (in)
		*o = *in;
	else
		memset(o, 0, sizeof(*o));
	if (o->ttl_s <= 0)
		o->ttl_s = STORE_DEFAULT_TTL_S;
	if (o->max_entries == 0)
		o->max_entries = STORE_DEFAULT_MAX_ENTRIES;
	if (o->timeout_ms <= 0)
		o->timeout_ms = STORE_DEFAULT_TIMEOUT_MS;
}

static const struct store_backend *backend_of(enum store_url_kind k)
{
	switch (k) {
	case STORE_URL_MEMORY: return &store__memory;
	case STORE_URL_SQLITE: return &store__sqlite;
	case STORE_URL_REDIS: return &store__redis;
	}
	return NULL;
}

/* Frees what store_open made before the thread started. */
static void open_undo(struct store *s)
{
	if (s->be)
		s->be_ops->free(s->be);
	if (s->wake)
		event_free(s->wake);
	if (s->sweep_ev)
		event_free(s->sweep_ev);
	if (s->base)
		event_base_free(s->base);
	store_destroy(s);
}

static enum gw_err open_loop(struct store *s)
{
	struct timeval every = { STORE_SWEEP_S, 0 };
	s->base = event_base_new();
	if (!s->base)
		return GW_ENOMEM;
	s->wake = event_new(s->base, -1, EV_PERSIST, on_wake, s);
	s->sweep_ev = event_new(s->base, -1, EV_PERSIST, on_sweep, s);
	if (!s->wake || !s->sweep_ev || event_add(s->sweep_ev, &every))
		return GW_ENOMEM;
	return GW_OK;
}

/* The store thread takes no signals: SIGTERM and friends belong to the main
 * loop, and SIGPIPE from a write to a dead redis socket (hiredis uses plain
 * write()) must become EPIPE, not kill the process. */
static int start_thread(struct store *s)
{
	sigset_t all, old;
	sigfillset(&all);
	int rc = pthread_sigmask(SIG_BLOCK, &all, &old);
	if (rc)
		return rc;
	rc = pthread_create(&s->thread, NULL, store_main, s);
	int rc2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
	GW_ASSERT(rc2 == 0);
	return rc;
}

static struct store *store_open_url(const struct store_url *u, const struct store_opts *opts,
				    char *err, size_t errlen)
{
	struct store *s = gw_calloc(1, sizeof(*s));
	if (!s || pthread_mutex_init(&s->mu, NULL)) {
		gw_free(s);
		seterr(err, errlen, "store: out of memory");
		return NULL;
	}
	if (pthread_mutex_init(&s->exec_mu, NULL)) {
		pthread_mutex_destroy(&s->mu);
		gw_free(s);
		seterr(err, errlen, "store: out of memory");
		return NULL;
	}
	opts_fill(&s->opts, opts);
	s->be_ops = backend_of(u->kind);
	if (open_loop(s)) {
		seterr(err, errlen, "store: cannot create its event loop");
		open_undo(s);
		return NULL;
	}
	if (s->be_ops->open(u, &s->opts, s->base, &s->be, err, errlen)) {
		s->be = NULL;
		open_undo(s);
		return NULL;
	}
	/* The sweep also runs once at open, first thing on the thread. */
	event_active(s->sweep_ev, EV_TIMEOUT, 0);
	int rc = start_thread(s);
	if (rc) {
		seterr(err, errlen, "store: cannot start its thread: %s", strerror(rc));
		open_undo(s);
		return NULL;
	}
	pthread_setname_np(s->thread, "gw-store");
	return s;
}

struct store *store_open(const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
	struct store_url *u = gw_malloc(sizeof(*u));
	if (!u) {
		seterr(err, errlen, "store: out of memory");
		return NULL;
	}
	struct store *s = NULL;
	if (store__parse_url(url, u, err, errlen) == GW_OK)
		s = store_open_url(u, opts, err, errlen);
	explicit_bzero(u, sizeof(*u));
	gw_free(u);
	return s;
}

const char *store_kind(const struct store *s)
{
	return s ? s->be_ops->kind : "none";
}

void store_close(struct store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	event_active(s->wake, EV_READ, 0);
	pthread_mutex_unlock(&s->mu);
	int rc = pthread_join(s->thread, NULL);
	GW_ASSERT(rc == 0);
	event_free(s->wake);
	event_free(s->sweep_ev);
	event_base_free(s->base);
	pthread_mutex_lock(&s->mu);
	s->closed = true;
	bool last = s->live == 0;
	pthread_mutex_unlock(&s->mu);
	if (last)
		store_destroy(s);
}
