/* test_cleanup.c - the clean-up of expired upstream chats: the rule that
 * decides (src/core/cleanup_rule.c), the ownership record, and the parser of
 * the chat list (src/provider/histories.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cleanup_rule.h"
#include "provider/histories.h"

#define T0 1795600800 /* 2026-11-25T10:00:00Z */
#define TTL 2592000   /* STORE_TTL default: 30 days */
#define GRACE 300     /* API_REQUEST_TIMEOUT default */

/* ---- the rule -------------------------------------------------------- */

static struct cleanup_facts expired(void)
{
	struct cleanup_facts f = { .owned = true, .created = T0, .updated = T0, .noted = T0 };
	return f;
}

static void test_rule_deletes_ours_expired_idle(void **state)
{
	(void)state;
	struct cleanup_facts f = expired();
	assert_int_equal(cleanup_decide(&f, T0 + TTL + GRACE, TTL, GRACE), CLEAN_DELETE);
	assert_int_equal(cleanup_decide(&f, T0 + 10 * TTL, TTL, GRACE), CLEAN_DELETE);
	/* A chat whose first reply failed has no head ever: same rule. */
	f.updated = 0;
	assert_int_equal(cleanup_decide(&f, T0 + TTL + GRACE, TTL, GRACE), CLEAN_DELETE);
}

static void test_rule_never_deletes_what_is_not_ours(void **state)
{
	(void)state;
	struct cleanup_facts f = expired();
	f.owned = false;
	assert_int_equal(cleanup_decide(&f, T0 + 100 * TTL, TTL, GRACE), CLEAN_KEEP_NOT_OURS);
	/* Whatever else is true of it. */
	f.in_progress = true;
	f.head_present = true;
	assert_int_equal(cleanup_decide(&f, T0 + 100 * TTL, TTL, GRACE), CLEAN_KEEP_NOT_OURS);
}

static void test_rule_keeps_live_mapping_however_old(void **state)
{
	(void)state;
	/* A head record means a mapping still reaches the chat, even if the
	 * list's times say it is old (another instance with a longer TTL
	 * sharing the store, a clock that jumped). */
	struct cleanup_facts f = expired();
	f.head_present = true;
	assert_int_equal(cleanup_decide(&f, T0 + 100 * TTL, TTL, GRACE), CLEAN_KEEP_LIVE);
}

static void test_rule_keeps_busy(void **state)
{
	(void)state;
	struct cleanup_facts f = expired();
	f.in_progress = true;
	assert_int_equal(cleanup_decide(&f, T0 + 100 * TTL, TTL, GRACE), CLEAN_KEEP_BUSY);
}

static void test_rule_keeps_recent(void **state)
{
	(void)state;
	struct cleanup_facts f = expired();
	/* One second short of STORE_TTL + grace since the last use. */
	assert_int_equal(cleanup_decide(&f, T0 + TTL + GRACE - 1, TTL, GRACE), CLEAN_KEEP_RECENT);
	/* The latest of created, updated and noted counts. */
	f.created = T0 - 5 * TTL;
	f.updated = T0 - 5 * TTL;
	f.noted = T0;
	assert_int_equal(cleanup_decide(&f, T0 + TTL, TTL, GRACE), CLEAN_KEEP_RECENT);
	f.noted = T0 - 5 * TTL;
	f.updated = T0;
	assert_int_equal(cleanup_decide(&f, T0 + TTL, TTL, GRACE), CLEAN_KEEP_RECENT);
	f.updated = T0 - 5 * TTL;
	f.created = T0;
	assert_int_equal(cleanup_decide(&f, T0 + TTL, TTL, GRACE), CLEAN_KEEP_RECENT);
	/* A clock behind the chat's times. */
	assert_int_equal(cleanup_decide(&f, T0 - 1, TTL, GRACE), CLEAN_KEEP_RECENT);
	/* No time known at all: cannot prove it is old. */
	struct cleanup_facts u = { .owned = true };
	assert_int_equal(cleanup_decide(&u, T0 + 100 * TTL, TTL, GRACE), CLEAN_KEEP_RECENT);
	/* Absurd settings saturate to "never", not wrap to "now". */
	assert_int_equal(cleanup_decide(&f, INT64_MAX, INT64_MAX, GRACE), CLEAN_KEEP_RECENT);
	assert_int_equal(cleanup_decide(&f, T0 + 100 * TTL, -1, GRACE), CLEAN_KEEP_RECENT);
}

static void test_verdict_names(void **state)
{
	(void)state;
	assert_string_equal(cleanup_verdict_name(CLEAN_DELETE), "delete");
	assert_string_equal(cleanup_verdict_name(CLEAN_KEEP_LIVE), "live mapping");
	assert_string_equal(cleanup_verdict_name((enum cleanup_verdict)99), "?");
}

/* ---- the ownership record -------------------------------------------- */

static void test_own_roundtrip(void **state)
{
	(void)state;
	struct cleanup_own o = { .account = "acct-0123456789ab", .workspace = "ws_sim0", .noted = T0 }, back;
	char v[400];
	assert_int_equal(cleanup_own_format(&o, v, sizeof(v)), GW_OK);
	assert_string_equal(v, "v1 acct-0123456789ab ws_sim0 1795600800");
	assert_true(cleanup_own_parse(v, strlen(v), &back));
	assert_string_equal(back.account, o.account);
	assert_string_equal(back.workspace, o.workspace);
	assert_int_equal(back.noted, T0);
	/* Too small a buffer. */
	assert_int_equal(cleanup_own_format(&o, v, 20), GW_ELIMIT);
}

static void test_own_format_refuses(void **state)
{
	(void)state;
	char v[400];
	struct cleanup_own o = { .account = "a b", .workspace = "w", .noted = T0 };
	assert_int_equal(cleanup_own_format(&o, v, sizeof(v)), GW_EINVAL);
	struct cleanup_own e = { .account = "a", .workspace = "", .noted = T0 };
	assert_int_equal(cleanup_own_format(&e, v, sizeof(v)), GW_EINVAL);
	struct cleanup_own z = { .account = "a", .workspace = "w", .noted = 0 };
	assert_int_equal(cleanup_own_format(&z, v, sizeof(v)), GW_EINVAL);
	struct cleanup_own c = { .account = "a\n", .workspace = "w", .noted = T0 };
	assert_int_equal(cleanup_own_format(&c, v, sizeof(v)), GW_EINVAL);
}

static void test_own_parse_refuses(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "v1", "v1 ", "v2 a w 1", "v1 a w", "v1 a w 1 extra", "v1 a w 1 ", "v1  a w 1", "v1 a w x1",
		"v1 a w 0", "v1 a w -1", "v1 a w 99999999999999999999", "v1 a\tb w 1", "V1 a w 1", "v1 a w 01",
	};
	struct cleanup_own o;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(cleanup_own_parse(bad[i], strlen(bad[i]), &o));
		assert_int_equal(o.noted, 0);
		assert_string_equal(o.account, "");
	}
	assert_false(cleanup_own_parse(NULL, 0, &o));
	/* An account id longer than the field. */
	char v[300];
	snprintf(v, sizeof(v), "v1 %070d w 1", 7);
	assert_false(cleanup_own_parse(v, strlen(v), &o));
	/* Length is taken as given: no reliance on a NUL. */
	const char *good = "v1 a w 12345";
	assert_true(cleanup_own_parse(good, strlen(good), &o));
	assert_int_equal(o.noted, 12345);
	assert_true(cleanup_own_parse(good, strlen(good) - 2, &o));
	assert_int_equal(o.noted, 123);
}

/* ---- the chat list --------------------------------------------------- */

static enum gw_err list(const char *body, struct engine_histories *h)
{
	return engine_parse_histories(body, strlen(body), h);
}

static void test_list_sim_shape(void **state)
{
	(void)state;
	static struct engine_histories h;
	assert_int_equal(list("{\"chatHistories\":[{\"id\":\"6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b7c4a31\",\"label\":null,"
			      "\"projectId\":\"6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b7c4a31\",\"workspaceId\":\"ws_sim0\","
			      "\"createdAt\":\"2026-11-25T10:00:00.000Z\",\"updatedAt\":\"2026-11-25T10:00:05.123Z\","
			      "\"inProgress\":false},"
			      "{\"id\":\"b\",\"createdAt\":\"2026-11-25T12:00:00+02:00\",\"inProgress\":true}],"
			      "\"hasMore\":false}", &h), GW_OK);
	assert_int_equal(h.n, 2);
	assert_false(h.has_more);
	assert_int_equal(h.skipped, 0);
	assert_string_equal(h.item[0].id, "6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b7c4a31");
	assert_false(h.item[0].in_progress);
	assert_int_equal(h.item[0].created, T0);
	assert_int_equal(h.item[0].updated, T0 + 5);
	assert_true(h.item[1].in_progress);
	assert_int_equal(h.item[1].created, T0);
	assert_int_equal(h.item[1].updated, 0);
}

static void test_list_unsafe_entries(void **state)
{
	(void)state;
	static struct engine_histories h;
	/* Ids that cannot go into a URL, missing ids, non-objects: skipped.
	 * A state we cannot read counts as in progress. */
	assert_int_equal(list("{\"chatHistories\":[{\"id\":\"../x\"},{\"id\":\"a b\"},{\"id\":7},{},1,null,"
			      "{\"id\":\"ok1\",\"inProgress\":\"no\"},{\"id\":\"ok2\"},"
			      "{\"id\":\"ok3\",\"inProgress\":0,\"createdAt\":\"yesterday\",\"updatedAt\":12}],"
			      "\"hasMore\":true}", &h), GW_OK);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.skipped, 6);
	assert_true(h.has_more);
	for (size_t i = 0; i < h.n; i++) {
		assert_true(h.item[i].in_progress);
		assert_int_equal(h.item[i].created, 0);
		assert_int_equal(h.item[i].updated, 0);
	}
	char body[400];
	char id[200];
	memset(id, 'x', 128);
	id[128] = '\0';
	snprintf(body, sizeof(body), "{\"chatHistories\":[{\"id\":\"%s\",\"inProgress\":false}]}", id);
	assert_int_equal(list(body, &h), GW_OK);
	assert_int_equal(h.n, 0);
	assert_int_equal(h.skipped, 1);
}

static void test_list_bad_bodies(void **state)
{
	(void)state;
	static struct engine_histories h;
	static const char *const bad[] = { "", "[]", "null", "{}", "{\"chatHistories\":{}}", "{\"chatHistories\":null}",
					   "<html>", "{\"chatHistories\":[" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(list(bad[i], &h), GW_EPROTO);
		assert_int_equal(h.n, 0);
	}
	assert_int_equal(engine_parse_histories(NULL, 0, &h), GW_EPROTO);
}

static void test_list_capped(void **state)
{
	(void)state;
	static struct engine_histories h;
	char *body = malloc(40 * (HISTORIES_MAX + 10) + 64);
	assert_non_null(body);
	size_t n = (size_t)sprintf(body, "{\"chatHistories\":[");
	for (int i = 0; i < HISTORIES_MAX + 10; i++)
		n += (size_t)sprintf(body + n, "%s{\"id\":\"c%d\",\"inProgress\":false}", i ? "," : "", i);
	n += (size_t)sprintf(body + n, "],\"hasMore\":false}");
	assert_int_equal(engine_parse_histories(body, n, &h), GW_OK);
	assert_int_equal(h.n, HISTORIES_MAX);
	assert_true(h.has_more);
	assert_string_equal(h.item[HISTORIES_MAX - 1].id, "c99");
	free(body);
}

static void test_times(void **state)
{
	(void)state;
	int64_t t = 0;
	static const struct {
		const char *s;
		int64_t want;
	} good[] = {
		{ "2026-11-25T10:00:00Z", T0 },
		{ "2026-11-25T10:00:00.5Z", T0 },
		{ "2026-11-25T10:00:00.123456789Z", T0 },
		{ "2026-11-25T11:30:00+01:30", T0 },
		{ "2026-11-25T08:00:00-02:00", T0 },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_true(histories_parse_time(good[i].s, strlen(good[i].s), &t));
		assert_int_equal(t, good[i].want);
	}
	static const char *const bad[] = {
		"", "2026-11-25", "2026-11-25T10:00Z", "2026-11-25T10:00:00", "2026-11-25 10:00:00Z",
		"2026-13-25T10:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T10:00:00.Z", "2026-11-25T10:00:00+0100",
		"2026-11-25T10:00:00Zjunk", "1969-12-31T23:59:59Z", "2026-11-25T10:00:00.1234567890Z", "１９",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 42;
		assert_false(histories_parse_time(bad[i], strlen(bad[i]), &t));
		assert_int_equal(t, 42);
	}
}

static void test_list_alloc_failures(void **state)
{
	(void)state;
	static struct engine_histories h;
	const char *body = "{\"chatHistories\":[{\"id\":\"a\",\"inProgress\":false,"
			   "\"createdAt\":\"2026-11-25T10:00:00Z\"}],\"hasMore\":false}";
	bool ok = false;
	for (unsigned long k = 1; k < 200 && !ok; k++) {
		gw_alloc_fail_at(k);
		enum gw_err e = engine_parse_histories(body, strlen(body), &h);
		gw_alloc_fail_at(0);
		assert_true(e == GW_OK || e == GW_ENOMEM || e == GW_EPROTO);
		if (e != GW_OK)
			assert_int_equal(h.n, 0);
		ok = e == GW_OK && h.n == 1 && h.item[0].created == T0;
	}
	assert_true(ok);
}

int main(void)
{
	json_set_alloc_funcs(gw_malloc, gw_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_deletes_ours_expired_idle),
		cmocka_unit_test(test_rule_never_deletes_what_is_not_ours),
		cmocka_unit_test(test_rule_keeps_live_mapping_however_old),
		cmocka_unit_test(test_rule_keeps_busy),
		cmocka_unit_test(test_rule_keeps_recent),
		cmocka_unit_test(test_verdict_names),
		cmocka_unit_test(test_own_roundtrip),
		cmocka_unit_test(test_own_format_refuses),
		cmocka_unit_test(test_own_parse_refuses),
		cmocka_unit_test(test_list_sim_shape),
		cmocka_unit_test(test_list_unsafe_entries),
		cmocka_unit_test(test_list_bad_bodies),
		cmocka_unit_test(test_list_capped),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_list_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
