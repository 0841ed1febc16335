/* test_parse_engine.c - EngineLabs REST bodies: project, billing and 429
 * limits with ISO times, error excerpts (src/provider/parse_engine.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/parse.h"

#define T_2026_11_25_10 1795600800 /* 2026-11-25T10:00:00Z */

/* ---- project --------------------------------------------------------- */

static enum gw_err project(const char *body, struct engine_project *p)
{
	return engine_parse_project(body, strlen(body), p);
}

static void test_project_good(void **state)
{
	(void)state;
	struct engine_project p;
	assert_int_equal(project("{\"projectId\":\"6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b7c4a31\","
				 "\"projectShortCode\":\"sim-ab12\",\"workspaceId\":\"ws_sim0\","
				 "\"workspaceName\":\"Sim Workspace 0\"}", &p), GW_OK);
	assert_string_equal(p.project_id, "6f1c2a9e-3b7d-4c1e-9a2f-0d8e5b7c4a31");
	assert_string_equal(p.workspace_id, "ws_sim0");
	/* Longest id that fits. */
	char id[128], body[400];
	memset(id, 'Z', 127);
	id[127] = '\0';
	snprintf(body, sizeof(body), "{\"projectId\":\"%s\",\"workspaceId\":\"w\"}", id);
	assert_int_equal(project(body, &p), GW_OK);
	assert_string_equal(p.project_id, id);
}

static void test_project_bad(void **state)
{
	(void)state;
	struct engine_project p;
	static const char *const bad[] = {
		"", "[]", "null", "Internal Server Error", "{\"projectId\":\"p\"",
		"{\"workspaceId\":\"w\"}",
		"{\"projectId\":\"p\"}",
		"{\"projectId\":null,\"workspaceId\":\"w\"}",
		"{\"projectId\":12,\"workspaceId\":\"w\"}",
		"{\"projectId\":\"p\",\"workspaceId\":[\"w\"]}",
		"{\"projectId\":\"\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"../admin\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"a/b\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"a b\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"a?x=1\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"p\",\"workspaceId\":\"w&token=x\"}",
		"{\"projectId\":\"p%2f\",\"workspaceId\":\"w\"}",
		"{\"projectId\":\"caf\\u00e9\",\"workspaceId\":\"w\"}",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		strcpy(p.project_id, "junk");
		enum gw_err err = project(bad[i], &p);
		if (err != GW_EPROTO)
			fail_msg("body %zu '%s' gave %s", i, bad[i], gw_strerror(err));
		assert_string_equal(p.project_id, "");
		assert_string_equal(p.workspace_id, "");
	}
	char id[129], body[400];
	memset(id, 'Z', 128);
	id[128] = '\0';
	snprintf(body, sizeof(body), "{\"projectId\":\"%s\",\"workspaceId\":\"w\"}", id);
	assert_int_equal(project(body, &p), GW_EPROTO);
	assert_int_equal(engine_parse_project(NULL, 0, &p), GW_EPROTO);
}

/* ---- billing --------------------------------------------------------- */

static struct engine_billing billing_ok(const char *body)
{
	struct engine_billing b;
	memset(&b, 0x55, sizeof(b));
	enum gw_err err = engine_parse_billing(body, strlen(body), &b);
	if (err != GW_OK)
		fail_msg("billing '%s': %s", body, gw_strerror(err));
	return b;
}

static int64_t retry_of(const char *retry_json)
{
	char body[256];
	snprintf(body, sizeof(body), "{\"limitReached\":{\"type\":\"daily\",\"retryAt\":%s}}", retry_json);
	return billing_ok(body).retry_at;
}

static void test_billing_2026(void **state)
{
	(void)state;
	struct engine_billing b = billing_ok(
		"{\"tier\":\"free\",\"dailyUsage\":12,\"dailyLimit\":300,\"weeklyUsage\":40,"
		"\"weeklyLimit\":900,\"hasReachedLimit\":false,\"limitReached\":null,"
		"\"taskConcurrencyLimit\":2}");
	assert_false(b.has_reached_limit);
	assert_int_equal(b.retry_at, 0);
	assert_int_equal(b.daily_usage, 12);
	assert_int_equal(b.daily_limit, 300);
	assert_int_equal(b.task_concurrency_limit, 2);

	b = billing_ok("{\"tier\":\"free\",\"dailyUsage\":300,\"dailyLimit\":300,\"weeklyUsage\":300,"
		       "\"weeklyLimit\":900,\"hasReachedLimit\":true,\"limitReached\":{\"type\":\"daily\","
		       "\"retryAt\":\"2026-11-25T10:00:00.000Z\"},\"taskConcurrencyLimit\":2}");
	assert_true(b.has_reached_limit);
	assert_int_equal(b.retry_at, T_2026_11_25_10);
	assert_int_equal(b.daily_usage, 300);

	/* The boolean is the authority when both are present. */
	b = billing_ok("{\"hasReachedLimit\":false,\"limitReached\":{\"type\":\"daily\","
		       "\"retryAt\":\"2026-11-25T10:00:00Z\"}}");
	assert_false(b.has_reached_limit);
	assert_int_equal(b.retry_at, T_2026_11_25_10);

	/* Unknown and mistyped fields are ignored; absent ones are 0. */
	b = billing_ok("{\"dailyUsage\":\"12\",\"dailyLimit\":300.0,\"hasReachedLimit\":\"yes\","
		       "\"taskConcurrencyLimit\":-3,\"new\":{\"deep\":[1,2,3]}}");
	assert_false(b.has_reached_limit);
	assert_int_equal(b.daily_usage, 0);
	assert_int_equal(b.daily_limit, 300);
	assert_int_equal(b.task_concurrency_limit, 0);
	b = billing_ok("{}");
	assert_false(b.has_reached_limit);
	assert_int_equal(b.retry_at, 0);
	assert_int_equal(b.daily_limit, 0);
	assert_int_equal(b.task_concurrency_limit, 0);
}

static void test_billing_429(void **state)
{
	(void)state;
	struct engine_billing b = billing_ok("{\"error\":\"Daily limit reached\",\"limitReached\":"
					     "{\"type\":\"daily\",\"retryAt\":\"2026-11-25T10:00:00.000Z\"}}");
	assert_true(b.has_reached_limit);
	assert_int_equal(b.retry_at, T_2026_11_25_10);
	b = billing_ok("{\"error\":\"Too many concurrent tasks\",\"code\":\"CONCURRENCY_LIMIT\"}");
	assert_false(b.has_reached_limit);
	assert_int_equal(b.retry_at, 0);
	/* A retry time at the top level is read too. */
	b = billing_ok("{\"error\":\"x\",\"retryAt\":\"2026-11-25T10:00:00Z\"}");
	assert_int_equal(b.retry_at, T_2026_11_25_10);
}

static void test_billing_times(void **state)
{
	(void)state;
	assert_int_equal(retry_of("\"2026-11-25T10:00:00.000Z\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T10:00:00Z\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T10:00:00.5Z\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T10:00:00+00:00\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T10:00:00.123456+00:00\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T12:00:00+02:00\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T04:30:00-0530\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25T10:00Z\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-11-25 10:00:00z\""), T_2026_11_25_10);
	assert_int_equal(retry_of("\"2026-01-01T00:00:00Z\""), 1767225600);
	assert_int_equal(retry_of("\"2028-02-29T00:00:00Z\""), 1835395200);
	/* Numbers: seconds, or milliseconds as JavaScript sends them. */
	assert_int_equal(retry_of("1795600800"), T_2026_11_25_10);
	assert_int_equal(retry_of("1795600800000"), T_2026_11_25_10);
	/* Not understood: 0, never a wrong time. */
	static const char *const bad[] = {
		"\"2026-11-25T10:00:00\"", "\"2026-11-25\"", "\"2026-13-01T00:00:00Z\"",
		"\"2026-11-32T00:00:00Z\"", "\"2026-11-25T24:00:00Z\"", "\"2026-11-25T10:60:00Z\"",
		"\"2026-11-25T10:00:00.Z\"", "\"2026-11-25T10:00:00Zjunk\"", "\"2026-11-25T10:00:00+25:00\"",
		"\"2026-11-25T10:00:00+0\"", "\"26-11-25T10:00:00Z\"", "\"tomorrow\"", "\"\"",
		"null", "true", "-5", "{}", "[]",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		int64_t t = retry_of(bad[i]);
		if (t != 0)
			fail_msg("retryAt %s gave %lld", bad[i], (long long)t);
	}
}

static void test_billing_not_object(void **state)
{
	(void)state;
	struct engine_billing b;
	static const char *const bad[] = {
		"", "[]", "[{\"hasReachedLimit\":true}]", "null", "42", "\"x\"",
		"Internal Server Error", "<html></html>", "{\"a\":", "{\"a\":1}x",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		b.has_reached_limit = true;
		assert_int_equal(engine_parse_billing(bad[i], strlen(bad[i]), &b), GW_EPROTO);
		assert_false(b.has_reached_limit);
	}
	assert_int_equal(engine_parse_billing(NULL, 0, &b), GW_EPROTO);
}

/* ---- excerpts -------------------------------------------------------- */

static const char *excerpt(const char *body, size_t outlen)
{
	static char out[512];
	GW_ASSERT(outlen <= sizeof(out));
	memset(out, 'X', sizeof(out));
	engine_error_excerpt(body, body ? strlen(body) : 0, out, outlen);
	return out;
}

static void test_excerpt_json(void **state)
{
	(void)state;
	assert_string_equal(excerpt("{\"error\":\"Daily limit reached\",\"limitReached\":{\"type\":\"daily\"}}",
				    200), "Daily limit reached");
	assert_string_equal(excerpt("{\"error\":\"Not Found\",\"message\":\"Chat history not found\"}", 200),
			    "Not Found: Chat history not found");
	assert_string_equal(excerpt("{\"error\":\"Unauthorized\",\"message\":\"Unauthorized\"}", 200),
			    "Unauthorized");
	assert_string_equal(excerpt("{\"message\":\"Message too large\"}", 200), "Message too large");
	assert_string_equal(excerpt("{\"error\":{\"message\":\"nested\",\"type\":\"x\"}}", 200), "nested");
	assert_string_equal(excerpt("{\"errors\":[{\"code\":\"signed_out\",\"message\":\"Signed out\","
				    "\"long_message\":\"You are signed out\"}]}", 200), "You are signed out");
	assert_string_equal(excerpt("  {\"error\":\"line1\\nline2\\t\\u0001end \"}", 200), "line1 line2 end");
	/* JSON without a message field: the text itself. */
	assert_string_equal(excerpt("{\"code\":\"X\"}", 200), "{\"code\":\"X\"}");
	assert_string_equal(excerpt("{\"error\":42}", 200), "{\"error\":42}");
	assert_string_equal(excerpt("{\"error\":\"\"}", 200), "{\"error\":\"\"}");
	/* Broken JSON is text too. */
	assert_string_equal(excerpt("{\"error\":\"cut", 200), "{\"error\":\"cut");
}

static void test_excerpt_text(void **state)
{
	(void)state;
	assert_string_equal(excerpt("Internal Server Error", 200), "Internal Server Error");
	assert_string_equal(excerpt("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>"
				    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>"
				    "\r\n</body>\r\n</html>\r\n", 200),
			    "502 Bad Gateway 502 Bad Gateway nginx");
	assert_string_equal(excerpt("  \r\n a\r\n\tb\x01" "c\x7f" "d  ", 200), "a b c d");
	assert_string_equal(excerpt("a\xc2\x85" "b\xe2\x80\xa8" "c", 200), "a b c"); /* NEL, LS */
	assert_string_equal(excerpt("\xff\xfe" "abc", 200), "??abc");
	assert_string_equal(excerpt("ab\xe4\xbd", 200), "ab??");            /* cut sequence */
	assert_string_equal(excerpt("\xed\xa0\x80", 200), "???");           /* surrogate */
	assert_string_equal(excerpt("\xc0\xaf", 200), "??");                /* overlong */
	assert_string_equal(excerpt("", 200), "");
	assert_string_equal(excerpt(NULL, 200), "");
	assert_string_equal(excerpt("   ", 200), "");
}

static void test_excerpt_cut(void **state)
{
	(void)state;
	assert_string_equal(excerpt("Internal Server Error", 9), "Internal");
	assert_string_equal(excerpt("h\xc3\xa9llo", 2), "h");
	assert_string_equal(excerpt("h\xc3\xa9llo", 3), "h");   /* é does not fit whole */
	assert_string_equal(excerpt("h\xc3\xa9llo", 4), "h\xc3\xa9");
	assert_string_equal(excerpt("\xf0\x9f\x99\x82\xf0\x9f\x99\x82", 8), "\xf0\x9f\x99\x82");
	assert_string_equal(excerpt("\xe4\xbd\xa0\xe5\xa5\xbd", 6), "\xe4\xbd\xa0");
	assert_string_equal(excerpt("abc", 1), "");
	/* A space is never the last byte because of the cut. */
	assert_string_equal(excerpt("ab cd", 4), "ab");
	char out[4] = "xyz";
	engine_error_excerpt("abc", 3, out, 0);
	assert_string_equal(out, "xyz");
	/* A long body stays within bounds. */
	char big[5000];
	memset(big, 'e', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(strlen(excerpt(big, 100)), 99);
}

/* The output is valid UTF-8 with no control characters, for any input. */
static bool clean_utf8(const unsigned char *s)
{
	while (*s) {
		unsigned char c = *s;
		size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
			   : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		if (len == 0 || c < 0x20 || c == 0x7f)
			return false;
		for (size_t i = 1; i < len; i++)
			if ((s[i] & 0xc0) != 0x80)
				return false;
		if (len == 2 && c == 0xc2 && s[1] < 0xa0)
			return false;
		s += len;
	}
	return true;
}

static void test_excerpt_random(void **state)
{
	(void)state;
	static const char *const parts[] = {
		"a", " ", "\n", "\xc3\xa9", "\xe4\xbd\xa0", "\xf0\x9f\x99\x82", "\xff", "\xc3", "\x01",
		"<b>", "{", "\"error\":", "\"x\"", "}", "\xe2\x80\xa8", "\xc2\x85",
	};
	srand(7);
	for (int round = 0; round < 3000; round++) {
		char body[256] = "";
		size_t n = 0;
		while (n < 200) {
			const char *p = parts[rand() % (int)GW_ARRAY_LEN(parts)];
			size_t l = strlen(p);
			memcpy(body + n, p, l);
			n += l;
			if (rand() % 8 == 0)
				break;
		}
		body[n] = '\0';
		size_t outlen = 1 + (size_t)(rand() % 40);
		char out[64];
		engine_error_excerpt(body, n, out, outlen);
		assert_true(strlen(out) < outlen);
		if (!clean_utf8((const unsigned char *)out))
			fail_msg("round %d: unclean excerpt", round);
		if (out[0])
			assert_true(out[0] != ' ' && out[strlen(out) - 1] != ' ');
	}
}

/* No crash or leak when any allocation fails (jansson may then report a
 * syntax error or silently drop bytes: see test_parse_clerk.c). */
static void test_alloc_failures(void **state)
{
	(void)state;
	const char *body = "{\"tier\":\"free\",\"dailyUsage\":3,\"hasReachedLimit\":true,"
			   "\"limitReached\":{\"type\":\"daily\",\"retryAt\":\"2026-11-25T10:00:00Z\"}}";
	const char *pbody = "{\"projectId\":\"p1\",\"workspaceId\":\"w1\"}";
	bool ok = false;
	for (unsigned long k = 1; k < 200 && !ok; k++) {
		struct engine_billing b;
		struct engine_project p;
		char out[64];
		gw_alloc_fail_at(k);
		enum gw_err e1 = engine_parse_billing(body, strlen(body), &b);
		gw_alloc_fail_at(k);
		enum gw_err e2 = engine_parse_project(pbody, strlen(pbody), &p);
		gw_alloc_fail_at(k);
		engine_error_excerpt(body, strlen(body), out, sizeof(out));
		gw_alloc_fail_at(0);
		assert_true(e1 == GW_OK || e1 == GW_ENOMEM || e1 == GW_EPROTO);
		assert_true(e2 == GW_OK || e2 == GW_ENOMEM || e2 == GW_EPROTO);
		assert_true(clean_utf8((const unsigned char *)out));
		ok = e1 == GW_OK && e2 == GW_OK && b.retry_at == T_2026_11_25_10 &&
		     strcmp(p.project_id, "p1") == 0;
	}
	assert_true(ok);
}

int main(void)
{
	json_set_alloc_funcs(gw_malloc, gw_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project_good),
		cmocka_unit_test(test_project_bad),
		cmocka_unit_test(test_billing_2026),
		cmocka_unit_test(test_billing_429),
		cmocka_unit_test(test_billing_times),
		cmocka_unit_test(test_billing_not_object),
		cmocka_unit_test(test_excerpt_json),
		cmocka_unit_test(test_excerpt_text),
		cmocka_unit_test(test_excerpt_cut),
		cmocka_unit_test(test_excerpt_random),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
