/* test_store_memory.c - the memory store, plus the behaviour tests every
 * backend must pass. test_store_sqlite.c and test_store_redis.c include this
 * file with STORE_T_INCLUDED defined (and their own t_url()) to run the same
 * tests against their engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

#ifndef STORE_T_INCLUDED
static const char *t_url(void)
{
	return "memory:";
}
#define T_VIRTUAL_CLOCK 1 /* store__time_shift moves the expiry clock */
#define T_BOUNDED 1       /* max_entries is enforced */
#endif

#define T_WAIT_MS 5000

/* ---- harness --------------------------------------------------------- */

struct res {
	int calls;
	enum gw_err err;
	bool found;
	struct conv_entry e;
	char *val;
	size_t len;
};

static void res_clear(struct res *r)
{
	free(r->val);
	memset(r, 0, sizeof(*r));
}

static void on_conv(enum gw_err err, const struct conv_entry *e, void *arg)
{
	struct res *r = arg;
	r->calls++;
	r->err = err;
	r->found = e != NULL;
	if (e)
		r->e = *e;
}

static void on_done(enum gw_err err, void *arg)
{
	struct res *r = arg;
	r->calls++;
	r->err = err;
}

static void on_kv(enum gw_err err, const char *v, size_t len, void *arg)
{
	struct res *r = arg;
	r->calls++;
	r->err = err;
	r->found = v != NULL;
	if (v) {
		r->val = malloc(len + 1);
		memcpy(r->val, v, len);
		r->val[len] = '\0';
		r->len = len;
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Runs base until *calls > 0 or timeout_ms passed; false on timeout. */
static bool wait_calls(struct event_base *base, const int *calls, int timeout_ms)
{
	bool expired = false;
	struct event *t = evtimer_new(base, on_deadline, &expired);
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	if (!t || evtimer_add(t, &tv))
		abort();
	while (*calls == 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *calls > 0;
}

static void mkkey(uint8_t k[STORE_KEY_LEN], unsigned i, unsigned salt)
{
	for (unsigned j = 0; j < STORE_KEY_LEN; j++)
		k[j] = (uint8_t)((i >> (8 * (j % 4))) ^ (salt * 31 + j));
}

static void mkentry(struct conv_entry *e, const char *chat)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->chat_id, sizeof(e->chat_id), "%s", chat);
	snprintf(e->workspace_id, sizeof(e->workspace_id), "ws-%s", chat);
	snprintf(e->account, sizeof(e->account), "acct-1");
	snprintf(e->model, sizeof(e->model), "claude-sonnet");
	e->created = 1700000000;
}

static struct store *t_open_opts(const struct store_opts *o)
{
	char err[256] = "";
	struct store *s = store_open(t_url(), o, err, sizeof(err));
	if (!s)
		fail_msg("store_open(%s): %s", store_kind(NULL), err);
	return s;
}

static struct store *t_open(void)
{
	struct store_opts o = { .ttl_s = 3600, .max_entries = 1000, .timeout_ms = 1000 };
	return t_open_opts(&o);
}

/* The synchronous wrappers also check that no callback runs inside a call. */
static enum gw_err put_conv(struct store *s, struct event_base *b, const uint8_t *key,
			    const char *chat)
{
	struct conv_entry e;
	struct res r = { 0 };
	mkentry(&e, chat);
	assert_int_equal(store_conv_put(s, b, key, &e, on_done, &r, NULL), GW_OK);
	assert_int_equal(r.calls, 0);
	assert_true(wait_calls(b, &r.calls, T_WAIT_MS));
	assert_int_equal(r.calls, 1);
	return r.err;
}

static enum gw_err get_conv(struct store *s, struct event_base *b, const uint8_t *key,
			    struct res *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(store_conv_get(s, b, key, on_conv, r, NULL), GW_OK);
	assert_int_equal(r->calls, 0);
	assert_true(wait_calls(b, &r->calls, T_WAIT_MS));
	assert_int_equal(r->calls, 1);
	return r->err;
}

/* Hit with this chat id, or miss when chat is NULL. */
static void expect_conv(struct store *s, struct event_base *b, const uint8_t *key,
			const char *chat)
{
	struct res r;
	assert_int_equal(get_conv(s, b, key, &r), GW_OK);
	if (!chat) {
		assert_false(r.found);
		return;
	}
	assert_true(r.found);
	assert_string_equal(r.e.chat_id, chat);
}

static enum gw_err put_kv(struct store *s, struct event_base *b, const char *name,
			  const char *v, size_t len, int64_t ttl)
{
	struct res r = { 0 };
	enum gw_err err = store_kv_put(s, b, name, v, len, ttl, on_done, &r, NULL);
	if (err)
		return err;
	assert_int_equal(r.calls, 0);
	assert_true(wait_calls(b, &r.calls, T_WAIT_MS));
	assert_int_equal(r.calls, 1);
	return r.err;
}

static enum gw_err get_kv(struct store *s, struct event_base *b, const char *name,
			  struct res *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(store_kv_get(s, b, name, on_kv, r, NULL), GW_OK);
	assert_int_equal(r->calls, 0);
	assert_true(wait_calls(b, &r->calls, T_WAIT_MS));
	assert_int_equal(r->calls, 1);
	return r->err;
}

static struct event_base *t_base(void)
{
	struct event_base *b = event_base_new();
	assert_non_null(b);
	return b;
}

/* ---- behaviour every backend shares ---------------------------------- */

static void test_conv_roundtrip(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k1[32], k2[32];
	mkkey(k1, 1, 1);
	mkkey(k2, 2, 1);
	expect_conv(s, b, k1, NULL);
	assert_int_equal(put_conv(s, b, k1, "chat-one"), GW_OK);
	struct res r;
	assert_int_equal(get_conv(s, b, k1, &r), GW_OK);
	assert_true(r.found);
	assert_string_equal(r.e.chat_id, "chat-one");
	assert_string_equal(r.e.workspace_id, "ws-chat-one");
	assert_string_equal(r.e.account, "acct-1");
	assert_string_equal(r.e.model, "claude-sonnet");
	assert_int_equal(r.e.created, 1700000000);
	assert_true(r.e.last_used > 1700000000);
	expect_conv(s, b, k2, NULL);
	/* Overwrite. */
	assert_int_equal(put_conv(s, b, k1, "chat-two"), GW_OK);
	expect_conv(s, b, k1, "chat-two");
	store_close(s);
	event_base_free(b);
}

static void test_conv_put_invalid(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k[32];
	struct conv_entry e;
	struct store_op *op = (struct store_op *)1;
	mkkey(k, 3, 1);
	mkentry(&e, "x");
	memset(e.chat_id, 'a', sizeof(e.chat_id)); /* no NUL: too long */
	assert_int_equal(store_conv_put(s, b, k, &e, on_done, NULL, &op), GW_EINVAL);
	assert_null(op);
	mkentry(&e, "");
	assert_int_equal(store_conv_put(s, b, k, &e, on_done, NULL, NULL), GW_EINVAL);
	mkentry(&e, "x");
	memset(e.model, 'm', sizeof(e.model));
	assert_int_equal(store_conv_put(s, b, k, &e, NULL, NULL, NULL), GW_EINVAL);
	mkentry(&e, "x");
	/* A callback needs a base to run on. */
	assert_int_equal(store_conv_put(s, NULL, k, &e, on_done, NULL, NULL), GW_EINVAL);
	assert_int_equal(store_conv_get(s, b, k, NULL, NULL, NULL), GW_EINVAL);
	assert_int_equal(store_conv_get(s, NULL, k, on_conv, NULL, NULL), GW_EINVAL);
	/* Longest accepted ids. */
	memset(e.chat_id, 'c', sizeof(e.chat_id) - 1);
	e.chat_id[sizeof(e.chat_id) - 1] = '\0';
	memset(e.account, 'a', sizeof(e.account) - 1);
	e.account[sizeof(e.account) - 1] = '\0';
	struct res r = { 0 };
	assert_int_equal(store_conv_put(s, b, k, &e, on_done, &r, NULL), GW_OK);
	assert_true(wait_calls(b, &r.calls, T_WAIT_MS));
	assert_int_equal(r.err, GW_OK);
	assert_int_equal(get_conv(s, b, k, &r), GW_OK);
	assert_true(r.found);
	assert_string_equal(r.e.chat_id, e.chat_id);
	assert_string_equal(r.e.account, e.account);
	store_close(s);
	event_base_free(b);
}

static void test_kv_roundtrip(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	struct res r;
	assert_int_equal(get_kv(s, b, "acct-1/cookie", &r), GW_OK);
	assert_false(r.found);
	res_clear(&r);
	assert_int_equal(put_kv(s, b, "acct-1/cookie", "v1", 2, 0), GW_OK);
	assert_int_equal(get_kv(s, b, "acct-1/cookie", &r), GW_OK);
	assert_true(r.found);
	assert_int_equal(r.len, 2);
	assert_string_equal(r.val, "v1");
	res_clear(&r);
	/* Binary, with NULs, at the size limit. */
	char *big = malloc(STORE_VALUE_MAX);
	for (size_t i = 0; i < STORE_VALUE_MAX; i++)
		big[i] = (char)(i % 251);
	assert_int_equal(put_kv(s, b, "acct-1/cookie", big, STORE_VALUE_MAX, 0), GW_OK);
	assert_int_equal(get_kv(s, b, "acct-1/cookie", &r), GW_OK);
	assert_int_equal(r.len, STORE_VALUE_MAX);
	assert_memory_equal(r.val, big, STORE_VALUE_MAX);
	res_clear(&r);
	/* Empty value is present, not absent. */
	assert_int_equal(put_kv(s, b, "empty", "", 0, 0), GW_OK);
	assert_int_equal(get_kv(s, b, "empty", &r), GW_OK);
	assert_true(r.found);
	assert_int_equal(r.len, 0);
	res_clear(&r);
	/* Limits. */
	char name[STORE_NAME_MAX + 2];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(put_kv(s, b, name, "v", 1, 0), GW_EINVAL);
	name[STORE_NAME_MAX] = '\0';
	assert_int_equal(put_kv(s, b, name, "v", 1, 0), GW_OK);
	assert_int_equal(put_kv(s, b, "x", big, STORE_VALUE_MAX + 1, 0), GW_EINVAL);
	assert_int_equal(put_kv(s, b, "", "v", 1, 0), GW_EINVAL);
	assert_int_equal(put_kv(s, b, "x", "v", 1, -1), GW_EINVAL);
	assert_int_equal(put_kv(s, b, "x", NULL, 1, 0), GW_EINVAL);
	assert_int_equal(store_kv_get(s, b, "", on_kv, &r, NULL), GW_EINVAL);
	free(big);
	store_close(s);
	event_base_free(b);
}

static void test_kv_sync(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	size_t len = 99;
	assert_null(store_kv_get_sync(s, "missing", &len));
	assert_int_equal(len, 0);
	assert_int_equal(put_kv(s, b, "rotated", "cookie\0x", 8, 0), GW_OK);
	char *v = store_kv_get_sync(s, "rotated", &len);
	assert_non_null(v);
	assert_int_equal(len, 8);
	assert_memory_equal(v, "cookie\0x", 8);
	gw_free(v);
	assert_null(store_kv_get_sync(s, "", &len));
	store_close(s);
	event_base_free(b);
}

static void test_fire_and_forget(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k[32];
	struct conv_entry e;
	struct store_op *op = (struct store_op *)1;
	mkkey(k, 7, 2);
	mkentry(&e, "ff");
	/* No callback: no handle either (nothing to cancel). */
	assert_int_equal(store_conv_put(s, NULL, k, &e, NULL, NULL, &op), GW_OK);
	assert_null(op);
	assert_int_equal(store_kv_put(s, NULL, "ff", "1", 1, 0, NULL, NULL, &op), GW_OK);
	assert_null(op);
	/* Ops run in order, so a later read sees the write. */
	expect_conv(s, b, k, "ff");
	store_close(s);
	event_base_free(b);
}

/* Threaded backends (sqlite, redis): ops cancelled while still queued.
 * The memory store runs ops at once, so there they are cancelled while
 * delivering, which must hold as well. */
static void test_cancel_queued(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 8, 2);
	struct res got[50], wrote = { 0 };
	memset(got, 0, sizeof(got));
	for (int i = 0; i < 50; i++) {
		struct store_op *op = NULL;
		assert_int_equal(store_conv_get(s, b, k, on_conv, &got[i], &op), GW_OK);
		assert_non_null(op);
		store_op_cancel(op);
	}
	/* A cancelled write still happens; only its callback is gone. */
	struct conv_entry e;
	struct store_op *op = NULL;
	mkentry(&e, "written");
	assert_int_equal(store_conv_put(s, b, k, &e, on_done, &wrote, &op), GW_OK);
	store_op_cancel(op);
	/* Ops complete in order: once this one is back, the cancelled ones
	 * would have been delivered already. */
	expect_conv(s, b, k, "written");
	for (int i = 0; i < 50; i++)
		assert_int_equal(got[i].calls, 0);
	assert_int_equal(wrote.calls, 0);
	store_op_cancel(NULL);
	store_close(s);
	event_base_free(b);
}

/* Cancel after the store finished the op and posted its delivery, before
 * the caller's loop ran it. */
static void test_cancel_delivering(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 9, 2);
	assert_int_equal(put_conv(s, b, k, "c"), GW_OK);
	for (int round = 0; round < 20; round++) {
		struct res r = { 0 };
		struct store_op *op = NULL;
		assert_int_equal(store_conv_get(s, b, k, on_conv, &r, &op), GW_OK);
		store__sweep(s); /* a barrier: the get ran before it */
		store_op_cancel(op);
		expect_conv(s, b, k, "c");
		assert_int_equal(r.calls, 0);
	}
	store_close(s);
	event_base_free(b);
}

#define T_THREAD_OPS 300

struct worker {
	struct store *s;
	unsigned id;
	int errors;
};

static int worker_round(struct worker *w, struct event_base *b, unsigned i)
{
	uint8_t k[32];
	char chat[32];
	struct conv_entry e;
	struct res r = { 0 }, g = { 0 }, c = { 0 };
	struct store_op *op = NULL;
	mkkey(k, i, 100 + w->id);
	snprintf(chat, sizeof(chat), "t%u-%u", w->id, i);
	mkentry(&e, chat);
	if (store_conv_put(w->s, b, k, &e, on_done, &r, NULL) ||
	    store_conv_get(w->s, b, k, on_conv, &g, NULL))
		return 1;
	if (i % 5 == 0) {
		if (store_conv_get(w->s, b, k, on_conv, &c, &op))
			return 1;
		store_op_cancel(op);
	}
	if (!wait_calls(b, &r.calls, T_WAIT_MS) || !wait_calls(b, &g.calls, T_WAIT_MS))
		return 1;
	return r.err || g.err || !g.found || strcmp(g.e.chat_id, chat) || r.calls != 1 ||
	       g.calls != 1 || c.calls != 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct event_base *b = event_base_new();
	if (!b) {
		w->errors++;
		return NULL;
	}
	for (unsigned i = 0; i < T_THREAD_OPS; i++)
		w->errors += worker_round(w, b, i);
	event_base_free(b);
	return NULL;
}

static void test_two_threads(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct worker w[2] = { { s, 1, 0 }, { s, 2, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(w[0].errors, 0);
	assert_int_equal(w[1].errors, 0);
	store_close(s);
}

/* store_close drains what is queued; deliveries still pending on a base
 * run after the close (the store lives until the last one). */
static void test_close_drains(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	struct res r[20];
	memset(r, 0, sizeof(r));
	for (unsigned i = 0; i < 20; i++) {
		uint8_t k[32];
		struct conv_entry e;
		mkkey(k, i, 7);
		mkentry(&e, "drain");
		assert_int_equal(store_conv_put(s, NULL, k, &e, NULL, NULL, NULL), GW_OK);
		assert_int_equal(store_conv_get(s, b, k, on_conv, &r[i], NULL), GW_OK);
	}
	store_close(s);
	for (unsigned i = 0; i < 20; i++) {
		assert_true(wait_calls(b, &r[i].calls, T_WAIT_MS));
		assert_int_equal(r[i].err, GW_OK);
		assert_true(r[i].found);
	}
	event_base_free(b);
	store_close(NULL);
}

#if T_VIRTUAL_CLOCK
static void test_ttl(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 100, .max_entries = 1000 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	uint8_t ka[32], kb[32];
	struct res r;
	mkkey(ka, 1, 9);
	mkkey(kb, 2, 9);
	assert_int_equal(put_conv(s, b, ka, "A"), GW_OK);
	assert_int_equal(put_kv(s, b, "short", "v", 1, 50), GW_OK);
	assert_int_equal(put_kv(s, b, "forever", "v", 1, 0), GW_OK);
	store__time_shift(s, 60);
	assert_int_equal(put_conv(s, b, kb, "B"), GW_OK);
	assert_int_equal(get_kv(s, b, "short", &r), GW_OK);
	assert_false(r.found);
	store__time_shift(s, 130);
	expect_conv(s, b, ka, NULL);
	expect_conv(s, b, kb, "B"); /* a hit is a use: refreshes */
	store__time_shift(s, 225);
	expect_conv(s, b, kb, "B");
	store__time_shift(s, 330);
	store__sweep(s);
	expect_conv(s, b, kb, NULL);
	assert_int_equal(get_kv(s, b, "forever", &r), GW_OK);
	assert_true(r.found);
	res_clear(&r);
	store_close(s);
	event_base_free(b);
}
#endif

#if T_BOUNDED
static void test_max_entries(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 1000000, .max_entries = 10 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	for (unsigned i = 0; i < 25; i++) {
		uint8_t k[32];
		mkkey(k, i, 11);
		store__time_shift(s, i);
		assert_int_equal(put_conv(s, b, k, "m"), GW_OK);
	}
	store__sweep(s);
	for (unsigned i = 0; i < 25; i++) {
		uint8_t k[32];
		mkkey(k, i, 11);
		expect_conv(s, b, k, i < 15 ? NULL : "m");
	}
	store_close(s);
	event_base_free(b);
}
#endif

/* Every allocation on the way may fail: the call then returns an error and
 * its callback never runs, or the callback runs exactly once (maybe with
 * GW_ENOMEM from the store thread). Nothing leaks (ASan) or hangs. */
static void test_alloc_failures(void **state)
{
	(void)state;
	struct store *s = t_open();
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 1, 12);
	for (unsigned long n = 1; n <= 8; n++) {
		struct res r = { 0 }, g = { 0 };
		struct conv_entry e;
		mkentry(&e, "af");
		gw_alloc_fail_at(n);
		enum gw_err pe = store_kv_put(s, b, "af", "v", 1, 0, on_done, &r, NULL);
		enum gw_err ge = store_kv_get(s, b, "af", on_kv, &g, NULL);
		enum gw_err ce = store_conv_put(s, NULL, k, &e, NULL, NULL, NULL);
		if (pe == GW_OK)
			assert_true(wait_calls(b, &r.calls, T_WAIT_MS));
		if (ge == GW_OK)
			assert_true(wait_calls(b, &g.calls, T_WAIT_MS));
		gw_alloc_fail_at(0);
		assert_int_equal(r.calls, pe == GW_OK);
		assert_int_equal(g.calls, ge == GW_OK);
		assert_true(pe == GW_OK || pe == GW_ENOMEM);
		assert_true(ge == GW_OK || ge == GW_ENOMEM);
		assert_true(ce == GW_OK || ce == GW_ENOMEM);
		assert_true(r.err == GW_OK || r.err == GW_ENOMEM);
		assert_true(g.err == GW_OK || g.err == GW_ENOMEM);
		res_clear(&g);
	}
	store_close(s);
	event_base_free(b);
}

#define T_COMMON_TESTS \
	cmocka_unit_test(test_conv_roundtrip), \
	cmocka_unit_test(test_conv_put_invalid), \
	cmocka_unit_test(test_kv_roundtrip), \
	cmocka_unit_test(test_kv_sync), \
	cmocka_unit_test(test_fire_and_forget), \
	cmocka_unit_test(test_cancel_queued), \
	cmocka_unit_test(test_cancel_delivering), \
	cmocka_unit_test(test_two_threads), \
	cmocka_unit_test(test_close_drains), \
	cmocka_unit_test(test_alloc_failures)

/* ---- memory only ----------------------------------------------------- */

#ifndef STORE_T_INCLUDED
static void expect_url_error(const char *url, const char *must_not_contain)
{
	char err[256] = "";
	struct store_url u;
	assert_int_not_equal(store__parse_url(url, &u, err, sizeof(err)), GW_OK);
	assert_true(err[0] != '\0');
	if (must_not_contain)
		assert_null(strstr(err, must_not_contain));
	assert_null(store_open(url, NULL, err, sizeof(err)));
	if (must_not_contain)
		assert_null(strstr(err, must_not_contain));
}

static void test_url_parse(void **state)
{
	(void)state;
	struct store_url u;
	char err[256];
	assert_int_equal(store__parse_url("memory:", &u, err, sizeof(err)), GW_OK);
	assert_int_equal(u.kind, STORE_URL_MEMORY);
	assert_int_equal(store__parse_url("sqlite://data/gw.db", &u, err, sizeof(err)), GW_OK);
	assert_int_equal(u.kind, STORE_URL_SQLITE);
	assert_string_equal(u.path, "data/gw.db");
	assert_int_equal(store__parse_url("sqlite:///var/lib/gw.db", &u, err, sizeof(err)), GW_OK);
	assert_string_equal(u.path, "/var/lib/gw.db");
	assert_int_equal(store__parse_url("redis://10.0.0.5:6380/2", &u, err, sizeof(err)), GW_OK);
	assert_int_equal(u.kind, STORE_URL_REDIS);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.password, "");
	assert_int_equal(store__parse_url("redis://:p%40ss@w/rd@cache:7000", &u, err,
					  sizeof(err)), GW_OK);
	assert_string_equal(u.password, "p@ss@w/rd");
	assert_string_equal(u.user, "");
	assert_string_equal(u.host, "cache");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 0);
	assert_int_equal(store__parse_url("redis://bob:pw@[::1]:7001/", &u, err, sizeof(err)),
			 GW_OK);
	assert_string_equal(u.user, "bob");
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7001);
	assert_int_equal(store__parse_url("redis://localhost", &u, err, sizeof(err)), GW_OK);
	assert_int_equal(u.port, 6379);
}

static void test_url_errors(void **state)
{
	(void)state;
	expect_url_error(NULL, NULL);
	expect_url_error("", NULL);
	expect_url_error("postgres://u:hunter2@db/x", "hunter2");
	expect_url_error("memory", NULL);
	expect_url_error("sqlite://", NULL);
	expect_url_error("redis://:hunter2@", "hunter2");
	expect_url_error("redis://:hunter2@host:0", "hunter2");
	expect_url_error("redis://:hunter2@host:65536", "hunter2");
	expect_url_error("redis://:hunter2@host:6379/x", "hunter2");
	expect_url_error("redis://:hunter2@host:6379/1?timeout=3", "hunter2");
	expect_url_error("redis://hunter2@host:6379", "hunter2");
	expect_url_error("redis://:bad%zzhunter2@host", "hunter2");
	expect_url_error("redis://:hunter2@ho st", "hunter2");
	expect_url_error("redis://:hunter2@[::1", "hunter2");
	expect_url_error("redis://:a%00hunter2@h", "hunter2");
}

static void test_open_kind(void **state)
{
	(void)state;
	struct store *s = t_open();
	assert_string_equal(store_kind(s), "memory");
	store_close(s);
}

/* Between two steps of a sweep, an op may remove the very item the sweep
 * is to go on from (a get that finds it expired): the sweep goes on from
 * the next one instead of from freed memory (ASan), and still reaches the
 * rest. */
static void test_sweep_cursor_item_removed(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 100, .max_entries = 100000 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	char name[32];
	/* Newest first in the LRU list: one step walks x1999 down to x976 and
	 * stops on x975. */
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "x%u", i);
		assert_int_equal(put_kv(s, b, name, "v", 1, 10), GW_OK);
	}
	store__time_shift(s, 200);
	store__sweep_step(s);
	struct res r;
	assert_int_equal(get_kv(s, b, "x975", &r), GW_OK);
	assert_false(r.found);
	res_clear(&r);
	/* The step stopped where this test needs it: with the clock back, an
	 * item past it (x1, expired but not swept) is still there. Reading it
	 * moves it ahead of the cursor, out of this sweep: the loop below does
	 * not look at it. */
	store__time_shift(s, 0);
	assert_int_equal(get_kv(s, b, "x1", &r), GW_OK);
	assert_true(r.found);
	res_clear(&r);
	store__time_shift(s, 200);
	store__sweep(s);
	store__time_shift(s, 0);
	for (unsigned i = 0; i < 976; i += 97) {
		snprintf(name, sizeof(name), "x%u", i);
		assert_int_equal(get_kv(s, b, name, &r), GW_OK);
		assert_false(r.found); /* swept, not just expired */
		res_clear(&r);
	}
	store_close(s);
	event_base_free(b);
}

/* The memory store sweeps a step at a time (its callers wait for each
 * step): a sweep still reaches every item, not only the first step's. The
 * clock is moved back afterwards, where an item left in place would still
 * be found. */
static void test_sweep_in_steps(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 100, .max_entries = 100000 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	char name[32];
	uint8_t k[32];
	for (unsigned i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "e%u", i);
		assert_int_equal(put_kv(s, b, name, "v", 1, 10), GW_OK);
		snprintf(name, sizeof(name), "k%u", i);
		assert_int_equal(put_kv(s, b, name, "v", 1, 0), GW_OK);
		mkkey(k, i, 12);
		assert_int_equal(put_conv(s, b, k, "c"), GW_OK);
	}
	store__time_shift(s, 200);
	store__sweep(s);
	store__time_shift(s, 0);
	struct res r;
	for (unsigned i = 0; i < 3000; i += 999) {
		snprintf(name, sizeof(name), "e%u", i);
		assert_int_equal(get_kv(s, b, name, &r), GW_OK);
		assert_false(r.found);
		res_clear(&r);
		snprintf(name, sizeof(name), "k%u", i);
		assert_int_equal(get_kv(s, b, name, &r), GW_OK);
		assert_true(r.found);
		res_clear(&r);
		mkkey(k, i, 12);
		expect_conv(s, b, k, NULL);
	}
	store_close(s);
	event_base_free(b);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		T_COMMON_TESTS,
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_max_entries),
		cmocka_unit_test(test_sweep_in_steps),
		cmocka_unit_test(test_sweep_cursor_item_removed),
		cmocka_unit_test(test_url_parse),
		cmocka_unit_test(test_url_errors),
		cmocka_unit_test(test_open_kind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
