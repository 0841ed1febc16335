/* redis.c - the shared store backend (several gateway instances): hiredis
 * 0.14 async on the store thread's event loop.
 *
 * Keys: el2a:conv:<hex key> holds one string (see conv_encode) with EXPIRE
 * ttl_s, refreshed on every hit; el2a:kv:<name> holds the raw value, with EX
 * when the caller gives a TTL. max_entries is NOT enforced here: Redis has
 * no cheap "evict the least recently used of my keys", and the TTL already
 * bounds the set (size it with maxmemory + volatile-lru if needed).
 *
 * Failure model: hiredis 0.14 has no async timeouts, so every command gets
 * its own timer (GW_ETIMEOUT) and a timed-out connection is dropped. After a
 * disconnect we reconnect with exponential backoff (100 ms .. 5 s); in
 * between, ops fail at once with GW_EIO, so callers degrade (continuity off)
 * instead of waiting. One line is logged per outage and one on recovery. */
#include "store/store_internal.h"
#include "util/log.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 5000
#define RD_CONV_PREFIX "el2a:conv:"
#define RD_KV_PREFIX "el2a:kv:"
#define RD_KEY_MAX (sizeof(RD_KV_PREFIX) + STORE_NAME_MAX + 1)
#define RD_CONV_VALUE_MAX 1024 /* an encoded conv_entry is well below this */

enum rd_state {
	RD_CONNECTING_FIRST, /* start-up: commands wait in hiredis' buffer */
	RD_CONNECTING,       /* a reconnect attempt: ops fail fast */
	RD_UP,
	RD_DOWN,             /* waiting for the retry timer */
};

struct rd {
	struct event_base *base;
	struct store_url u; /* holds the password: wiped on free */
	struct timeval timeout;
	int64_t ttl_s;
	redisAsyncContext *ac;
	enum rd_state state;
	struct event *retry;
	struct event *conn_timer;
	long backoff_ms;
	size_t busy;          /* ops exec'd and not done */
	bool outage;          /* "unavailable" logged, "back" not yet */
	bool refused_logged;  /* one "command refused" line per connection */
	bool dropping;        /* inside our own redisAsyncFree */
	bool closing;
};

/* One command in flight. Lives until hiredis calls its reply callback (which
 * it always does, with NULL on disconnect), even after its op timed out. */
struct rcmd {
	struct rd *r;
	struct store_op *op; /* NULL once the op is done */
	struct event *timer;
};

static void rd_connect(struct rd *r);

static long ms_of(const struct timeval *tv)
{
	return (long)tv->tv_sec * 1000 + (long)tv->tv_usec / 1000;
}

static void rd_down(struct rd *r, const char *why)
{
	struct timeval tv = { r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000 };
	r->state = RD_DOWN;
	if (!r->outage) {
		/* why comes from hiredis (errno text or our own words), never
		 * from the URL: no password can appear here. */
		log_warn(NULL, "redis unavailable: %s (degraded: continuity off)", why);
		r->outage = true;
	}
	if (evtimer_add(r->retry, &tv))
		log_error(NULL, "redis store: cannot schedule a reconnect");
	r->backoff_ms = r->backoff_ms * 2 > RD_BACKOFF_MAX_MS ? RD_BACKOFF_MAX_MS
							       : r->backoff_ms * 2;
}

/* Frees the connection ourselves (timeouts): pending commands get their
 * callbacks with a NULL reply, i.e. GW_EIO. Never called from inside a
 * hiredis callback. */
static void rd_drop(struct rd *r, const char *why)
{
	redisAsyncContext *ac = r->ac;
	if (!ac)
		return;
	r->ac = NULL;
	evtimer_del(r->conn_timer);
	r->dropping = true;
	redisAsyncFree(ac);
	r->dropping = false;
	if (!r->closing)
		rd_down(r, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rd *r = ac->data;
	if (status != REDIS_OK) {
		evtimer_del(r->conn_timer);
		r->ac = NULL; /* hiredis frees it when we return */
		rd_down(r, ac->errstr[0] ? ac->errstr : "connect failed");
	}
	/* Connected is not yet up: a stopped server still completes TCP
	 * handshakes. The PING reply (on_ready) decides, under conn_timer. */
}

static void log_refused(struct rd *r, const redisReply *reply);

static void on_ready(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rd *r = arg;
	const redisReply *rep = reply;
	GW_UNUSED(ac);
	if (!rep)
		return; /* disconnected: on_disconnect or rd_drop handle it */
	evtimer_del(r->conn_timer);
	r->state = RD_UP;
	r->backoff_ms = RD_BACKOFF_MIN_MS;
	if (rep->type == REDIS_REPLY_ERROR) {
		/* Up but refusing (bad password): ops get GW_EIO from the
		 * server's errors, logged once. */
		log_refused(r, rep);
	} else if (r->outage) {
		log_info(NULL, "redis back");
		r->outage = false;
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rd *r = ac->data;
	if (r->dropping)
		return; /* rd_drop handles the state */
	r->ac = NULL;
	evtimer_del(r->conn_timer);
	if (r->closing)
		return;
	rd_down(r, status == REDIS_OK ? "connection closed" :
		   ac->errstr[0] ? ac->errstr : "connection lost");
}

static void log_refused(struct rd *r, const redisReply *reply)
{
	/* Error replies name the problem (NOAUTH, WRONGPASS, OOM...) and never
	 * echo an argument, so they are safe to log; once per connection. */
	if (r->refused_logged)
		return;
	r->refused_logged = true;
	log_warn(NULL, "redis store: command refused: %.*s", reply->len > 200 ? 200 : (int)reply->len,
		 reply->str);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rd *r = arg;
	const redisReply *rep = reply;
	GW_UNUSED(ac);
	if (rep && rep->type == REDIS_REPLY_ERROR)
		log_refused(r, rep);
}

/* AUTH and SELECT go first in the output buffer, so they reach the server
 * before any op issued while the connection is being made. */
static bool send_setup(struct rd *r, redisAsyncContext *ac)
{
	int rc = REDIS_OK;
	if (r->u.password[0] && r->u.user[0])
		rc = redisAsyncCommand(ac, on_setup_reply, r, "AUTH %s %s", r->u.user,
				       r->u.password);
	else if (r->u.password[0])
		rc = redisAsyncCommand(ac, on_setup_reply, r, "AUTH %s", r->u.password);
	if (rc == REDIS_OK && r->u.db)
		rc = redisAsyncCommand(ac, on_setup_reply, r, "SELECT %d", r->u.db);
	if (rc == REDIS_OK)
		rc = redisAsyncCommand(ac, on_ready, r, "PING");
	return rc == REDIS_OK;
}

static void rd_connect(struct rd *r)
{
	bool first = r->state == RD_CONNECTING_FIRST;
	redisAsyncContext *ac = redisAsyncConnect(r->u.host, r->u.port);
	if (!ac || ac->err) {
		rd_down(r, ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		return;
	}
	ac->data = r;
	r->refused_logged = false;
	if (redisLibeventAttach(ac, r->base) != REDIS_OK ||
	    redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK || !send_setup(r, ac)) {
		redisAsyncFree(ac);
		rd_down(r, "cannot set up the connection");
		return;
	}
	r->ac = ac;
	r->state = first ? RD_CONNECTING_FIRST : RD_CONNECTING;
	if (evtimer_add(r->conn_timer, &r->timeout))
		log_error(NULL, "redis store: cannot arm the connect timer");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct rd *r = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	if (!r->closing && !r->ac) {
		r->state = RD_CONNECTING;
		rd_connect(r);
	}
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rd *r = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	rd_drop(r, "connect timed out");
}

/* ---- the conversation value: "1 <created> <last_used> " then four
 * length-prefixed fields "<len>:<bytes>" ---------------------------------- */

static bool put_field(char *out, size_t size, size_t *off, const char *s)
{
	int n = snprintf(out + *off, size - *off, "%zu:%s", strlen(s), s);
	if (n < 0 || (size_t)n >= size - *off)
		return false;
	*off += (size_t)n;
	return true;
}

static size_t conv_encode(const struct conv_entry *e, char *out, size_t size)
{
	int n = snprintf(out, size, "1 %" PRId64 " %" PRId64 " ", e->created, e->last_used);
	if (n < 0 || (size_t)n >= size)
		return 0;
	size_t off = (size_t)n;
	if (!put_field(out, size, &off, e->chat_id) || !put_field(out, size, &off, e->workspace_id) ||
	    !put_field(out, size, &off, e->account) || !put_field(out, size, &off, e->model))
		return 0;
	return off;
}

static bool get_num(const char **p, const char *end, char stop, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;
	while (s < end && *s >= '0' && *s <= '9') {
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (s == *p || s >= end || *s != stop)
		return false;
	*p = s + 1;
	*out = v;
	return true;
}

static bool get_field(const char **p, const char *end, char *dst, size_t size)
{
	uint64_t n;
	if (!get_num(p, end, ':', size - 1, &n) || (uint64_t)(end - *p) < n ||
	    memchr(*p, '\0', (size_t)n))
		return false;
	memcpy(dst, *p, (size_t)n);
	dst[n] = '\0';
	*p += n;
	return true;
}

/* Strict: anything unexpected is a miss, never a half-filled entry. */
static bool conv_decode(const char *s, size_t len, struct conv_entry *e)
{
	const char *p = s, *end = s + len;
	uint64_t created, used;
	memset(e, 0, sizeof(*e));
	if (len < 2 || p[0] != '1' || p[1] != ' ')
		return false;
	p += 2;
	if (!get_num(&p, end, ' ', INT64_MAX, &created) || !get_num(&p, end, ' ', INT64_MAX, &used))
		return false;
	e->created = (int64_t)created;
	e->last_used = (int64_t)used;
	return get_field(&p, end, e->chat_id, sizeof(e->chat_id)) &&
	       get_field(&p, end, e->workspace_id, sizeof(e->workspace_id)) &&
	       get_field(&p, end, e->account, sizeof(e->account)) &&
	       get_field(&p, end, e->model, sizeof(e->model)) && p == end;
}

/* ---- commands -------------------------------------------------------- */

static void finish_get(struct store_op *op, const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_NIL)
		return;
	if (rep->type != REDIS_REPLY_STRING) {
		op->err = GW_EPROTO;
		return;
	}
	if (op->kind == STORE_OP_KV_GET) {
		if (rep->len <= STORE_VALUE_MAX)
			store__op_set_value(op, rep->str, rep->len);
		else
			log_warn(NULL, "redis store: oversized kv value ignored");
		return;
	}
	op->found = conv_decode(rep->str, rep->len, &op->res);
	if (!op->found)
		log_warn(NULL, "redis store: malformed conversation value ignored");
}

static void finish(struct rd *r, struct store_op *op, const redisReply *rep)
{
	if (!rep)
		op->err = GW_EIO; /* disconnected before the reply */
	else if (rep->type == REDIS_REPLY_ERROR) {
		log_refused(r, rep);
		op->err = GW_EIO;
	} else if (op->kind == STORE_OP_CONV_GET || op->kind == STORE_OP_KV_GET) {
		finish_get(op, rep);
	} else if (rep->type != REDIS_REPLY_STATUS) {
		op->err = GW_EPROTO;
	}
	store__op_done(op);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rcmd *c = arg;
	GW_UNUSED(ac);
	if (c->op) {
		struct store_op *op = c->op;
		c->op = NULL;
		c->r->busy--;
		finish(c->r, op, reply);
	}
	event_free(c->timer);
	gw_free(c);
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rcmd *c = arg;
	struct rd *r = c->r;
	struct store_op *op = c->op;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	GW_ASSERT(op);
	c->op = NULL;
	r->busy--;
	op->err = GW_ETIMEOUT;
	store__op_done(op);
	/* A stuck server: drop the connection (this frees c via its NULL reply)
	 * so the next ops fail fast until a reconnect works. */
	rd_drop(r, "command timed out");
}

static void fail_now(struct store_op *op, enum gw_err err)
{
	op->err = err;
	store__op_done(op);
}

static void key_name(const struct store_op *op, char *key, size_t size)
{
	if (op->kind == STORE_OP_KV_GET || op->kind == STORE_OP_KV_PUT) {
		snprintf(key, size, RD_KV_PREFIX "%s", op->name);
		return;
	}
	size_t off = (size_t)snprintf(key, size, RD_CONV_PREFIX);
	GW_ASSERT(off + 2 * STORE_KEY_LEN < size);
	gw_hex(op->key, STORE_KEY_LEN, key + off);
}

/* Builds the argv of op's command; values point into op or into the
 * caller's buffers. Returns argc, 0 if the entry cannot be encoded. */
static int build(struct rd *r, struct store_op *op, const char *key, char *val, size_t valsz,
		 char *ex, size_t exsz, const char **argv, size_t *lens)
{
	int argc = 0;
	bool get = op->kind == STORE_OP_CONV_GET || op->kind == STORE_OP_KV_GET;
	argv[argc] = get ? "GET" : "SET";
	lens[argc++] = 3;
	argv[argc] = key;
	lens[argc++] = strlen(key);
	if (get)
		return argc;
	int64_t ttl = op->kind == STORE_OP_CONV_PUT ? r->ttl_s : op->ttl_s;
	if (op->kind == STORE_OP_CONV_PUT) {
		struct conv_entry e = op->entry;
		e.last_used = op->now;
		if (!e.created)
			e.created = op->now;
		lens[argc] = conv_encode(&e, val, valsz);
		if (!lens[argc])
			return 0;
		argv[argc++] = val;
	} else {
		argv[argc] = op->value;
		lens[argc++] = op->vlen;
	}
	if (ttl > 0) {
		argv[argc] = "EX";
		lens[argc++] = 2;
		lens[argc] = (size_t)snprintf(ex, exsz, "%" PRId64, ttl);
		argv[argc++] = ex;
	}
	return argc;
}

static enum gw_err send_cmd(struct rd *r, struct store_op *op, int argc, const char **argv,
			    const size_t *lens)
{
	struct rcmd *c = gw_calloc(1, sizeof(*c));
	if (!c)
		return GW_ENOMEM;
	c->r = r;
	c->op = op;
	c->timer = evtimer_new(r->base, on_cmd_timeout, c);
	if (!c->timer) {
		gw_free(c);
		return GW_ENOMEM;
	}
	if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
		event_free(c->timer);
		gw_free(c);
		return GW_EIO;
	}
	if (evtimer_add(c->timer, &r->timeout))
		log_error(NULL, "redis store: cannot arm a command timer");
	r->busy++;
	return GW_OK;
}

/* A hit is a use: push the expiry out again (fire and forget; a failure
 * only shortens the entry's life). */
static void refresh_ttl(struct rd *r, const char *key)
{
	char ttl[32];
	const char *argv[3] = { "EXPIRE", key, ttl };
	size_t lens[3] = { 6, strlen(key), (size_t)snprintf(ttl, sizeof(ttl), "%" PRId64, r->ttl_s) };
	(void)redisAsyncCommandArgv(r->ac, NULL, NULL, 3, argv, lens);
}

static void rd_exec(void *be, struct store_op *op)
{
	struct rd *r = be;
	char key[RD_KEY_MAX], val[RD_CONV_VALUE_MAX], ex[32];
	const char *argv[5];
	size_t lens[5];
	int argc = 0;
	op->err = GW_OK;
	if (op->kind == STORE_OP_SWEEP) {
		fail_now(op, GW_OK);
		return;
	}
	if (!r->ac || (r->state != RD_UP && r->state != RD_CONNECTING_FIRST)) {
		fail_now(op, GW_EIO); /* degraded: fail fast */
		return;
	}
	key_name(op, key, sizeof(key));
	argc = build(r, op, key, val, sizeof(val), ex, sizeof(ex), argv, lens);
	enum gw_err err = argc ? send_cmd(r, op, argc, argv, lens) : GW_EINVAL;
	if (err) {
		fail_now(op, err);
		return;
	}
	if (op->kind == STORE_OP_CONV_GET)
		refresh_ttl(r, key);
}

static size_t rd_busy(void *be)
{
	return ((struct rd *)be)->busy;
}

static void rd_free(void *be)
{
	struct rd *r = be;
	if (!r)
		return;
	r->closing = true;
	if (r->ac)
		rd_drop(r, "closing");
	if (r->retry)
		event_free(r->retry);
	if (r->conn_timer)
		event_free(r->conn_timer);
	explicit_bzero(&r->u, sizeof(r->u));
	gw_free(r);
}

static enum gw_err rd_open(const struct store_url *u, const struct store_opts *o,
			   struct event_base *base, void **be, char *err, size_t errlen)
{
	struct rd *r = gw_calloc(1, sizeof(*r));
	if (!r || !(r->retry = evtimer_new(base, on_retry, r)) ||
	    !(r->conn_timer = evtimer_new(base, on_conn_timeout, r))) {
		rd_free(r);
		snprintf(err, errlen, "redis store: out of memory");
		return GW_ENOMEM;
	}
	r->base = base;
	r->u = *u;
	r->ttl_s = o->ttl_s;
	r->timeout.tv_sec = o->timeout_ms / 1000;
	r->timeout.tv_usec = (o->timeout_ms % 1000) * 1000;
	r->backoff_ms = RD_BACKOFF_MIN_MS;
	r->state = RD_CONNECTING_FIRST;
	/* Not being able to reach Redis now is not fatal: the gateway runs
	 * degraded (every lookup a miss) and keeps retrying. */
	rd_connect(r);
	log_info(NULL, "redis store: %s:%d db %d, op timeout %ld ms", r->u.host, r->u.port, r->u.db,
		 ms_of(&r->timeout));
	*be = r;
	return GW_OK;
}

const struct store_backend store__redis = {
	.kind = "redis",
	.open = rd_open,
	.exec = rd_exec,
	.busy = rd_busy,
	.free = rd_free,
};
