/* test_models.c - /chat/adapters parsing and model-name resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/models.h"

static const char ADAPTERS[] =
	"{\"chatAdapters\":["
	"{\"key\":\"gpt_5_4\",\"model\":\"gpt-5.4\",\"engineAgentKey\":\"GPT5_4\","
	"\"provider\":\"openai\",\"minimumTier\":\"free\",\"enabled\":true,\"usageMultiplier\":1,"
	"\"supportsImages\":true},"
	"{\"key\":\"claude_sonnet_4_5\",\"model\":\"claude-sonnet-4-5-20250929\","
	"\"engineAgentKey\":\"ClaudeSonnet4_5\",\"provider\":\"anthropic\",\"minimumTier\":\"pro\","
	"\"enabled\":false,\"usageMultiplier\":3,\"supportsImages\":false},"
	"{\"key\":\"gpt_5\",\"model\":\"gpt-5\",\"engineAgentKey\":\"GPT5\",\"provider\":\"openai\"}"
	"],\"other\":1}";

static struct model_list parse_ok(const char *body)
{
	struct model_list l;
	assert_int_equal(models_parse_adapters(body, strlen(body), &l), GW_OK);
	return l;
}

static void test_parse_good(void **state)
{
	(void)state;
	struct model_list l = parse_ok(ADAPTERS);
	assert_int_equal(l.n, 3);
	const struct model_info *m = &l.v[0];
	assert_string_equal(m->key, "gpt_5_4");
	assert_string_equal(m->model, "gpt-5.4");
	assert_string_equal(m->agent_key, "GPT5_4");
	assert_string_equal(m->provider, "openai");
	assert_string_equal(m->min_tier, "free");
	assert_true(m->enabled);
	assert_true(m->supports_images);
	assert_int_equal(m->multiplier, 1);
	m = &l.v[1];
	assert_string_equal(m->agent_key, "ClaudeSonnet4_5");
	assert_string_equal(m->min_tier, "pro");
	assert_false(m->enabled);
	assert_false(m->supports_images);
	assert_int_equal(m->multiplier, 3);
	/* Defaults for the optional fields. */
	m = &l.v[2];
	assert_true(m->enabled);
	assert_false(m->supports_images);
	assert_int_equal(m->multiplier, 1);
	assert_string_equal(m->min_tier, "");
	models_list_release(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	models_list_release(&l);
	models_list_release(NULL);
}

static void test_parse_skips_bad_entries(void **state)
{
	(void)state;
	char longkey[200];
	snprintf(longkey, sizeof(longkey), "%080d", 7);
	char body[2048];
	snprintf(body, sizeof(body),
		 "{\"chatAdapters\":["
		 "{\"model\":\"a\",\"engineAgentKey\":\"A\"},"              /* no key */
		 "{\"key\":\"b\",\"engineAgentKey\":\"B\"},"                /* no model */
		 "{\"key\":\"c\",\"model\":\"c\"},"                         /* no agent key */
		 "{\"key\":\"\",\"model\":\"d\",\"engineAgentKey\":\"D\"}," /* empty key */
		 "{\"key\":5,\"model\":\"e\",\"engineAgentKey\":\"E\"},"    /* not a string */
		 "{\"key\":\"%s\",\"model\":\"f\",\"engineAgentKey\":\"F\"}," /* too long */
		 "{\"key\":\"g\",\"model\":\"g\",\"engineAgentKey\":\"G\",\"provider\":[]},"
		 "{\"key\":\"h\\u0000\",\"model\":\"h\",\"engineAgentKey\":\"H\"},"
		 "\"str\",null,[],"
		 "{\"key\":\"ok\",\"model\":\"ok-1\",\"engineAgentKey\":\"Ok\",\"enabled\":\"yes\","
		 "\"usageMultiplier\":-4},"
		 "{\"key\":\"OK\",\"model\":\"dup\",\"engineAgentKey\":\"Dup\"},"
		 "{\"key\":\"big\",\"model\":\"big\",\"engineAgentKey\":\"Big\","
		 "\"usageMultiplier\":1e300},"
		 "{\"key\":\"frac\",\"model\":\"frac\",\"engineAgentKey\":\"Frac\","
		 "\"usageMultiplier\":0.5}"
		 "]}",
		 longkey);
	struct model_list l = parse_ok(body);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].key, "ok");
	assert_true(l.v[0].enabled); /* a non-boolean flag falls back to the default */
	assert_int_equal(l.v[0].multiplier, 1);
	assert_string_equal(l.v[1].key, "big");
	assert_int_equal(l.v[1].multiplier, 1000);
	assert_int_equal(l.v[2].multiplier, 1);
	models_list_release(&l);
}

static void check_eproto(const char *body)
{
	struct model_list l = { (struct model_info *)1, 99 };
	assert_int_equal(models_parse_adapters(body, strlen(body), &l), GW_EPROTO);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

static void test_parse_wrong_shape(void **state)
{
	(void)state;
	check_eproto("");
	check_eproto("not json");
	check_eproto("[]");
	check_eproto("{}");
	check_eproto("{\"chatAdapters\":{}}");
	check_eproto("{\"chatAdapters\":null}");
	check_eproto("{\"chatAdapters\":[]} x");
	check_eproto("{\"chatAdapters\":[],\"chatAdapters\":[]}");
	struct model_list l;
	assert_int_equal(models_parse_adapters(NULL, 0, &l), GW_EPROTO);
	/* The right shape with nothing usable is not an error. */
	l = parse_ok("{\"chatAdapters\":[]}");
	assert_int_equal(l.n, 0);
	models_list_release(&l);
	l = parse_ok("{\"chatAdapters\":[1,2]}");
	assert_int_equal(l.n, 0);
	models_list_release(&l);
}

static void test_parse_huge_list(void **state)
{
	(void)state;
	size_t count = 700, cap = count * 100 + 64;
	char *body = malloc(cap);
	assert_non_null(body);
	size_t o = (size_t)snprintf(body, cap, "{\"chatAdapters\":[");
	for (size_t i = 0; i < count; i++)
		o += (size_t)snprintf(body + o, cap - o,
				      "%s{\"key\":\"k%zu\",\"model\":\"m%zu\",\"engineAgentKey\":\"A%zu\"}",
				      i ? "," : "", i, i, i);
	o += (size_t)snprintf(body + o, cap - o, "]}");
	struct model_list l;
	assert_int_equal(models_parse_adapters(body, o, &l), GW_OK);
	assert_int_equal(l.n, 512);
	assert_string_equal(l.v[511].key, "k511");
	models_list_release(&l);
	free(body);
}

static void test_parse_alloc_failure(void **state)
{
	(void)state;
	struct model_list l;
	gw_alloc_fail_at(1);
	assert_int_equal(models_parse_adapters(ADAPTERS, strlen(ADAPTERS), &l), GW_ENOMEM);
	gw_alloc_fail_at(0);
	assert_null(l.v);
}

static void expect(const struct model_list *l, const char *name, const char *key)
{
	const struct model_info *m = models_resolve(l, name);
	if (!key) {
		if (m)
			fail_msg("'%s' resolved to %s, expected nothing", name, m->key);
		return;
	}
	if (!m)
		fail_msg("'%s' did not resolve, expected %s", name, key);
	assert_string_equal(m->key, key);
}

static void test_resolve_names(void **state)
{
	(void)state;
	struct model_list l = parse_ok(ADAPTERS);
	expect(&l, "gpt_5_4", "gpt_5_4");
	expect(&l, "gpt-5.4", "gpt_5_4");
	expect(&l, "GPT5_4", "gpt_5_4");
	expect(&l, "GPT-5.4", "gpt_5_4");
	expect(&l, "gpt5_4", "gpt_5_4");
	expect(&l, "claude-sonnet-4-5-20250929", "claude_sonnet_4_5");
	expect(&l, "CLAUDE_SONNET_4_5", "claude_sonnet_4_5");
	expect(&l, "ClaudeSonnet4_5", "claude_sonnet_4_5");
	expect(&l, "GPT5", "gpt_5");
	expect(&l, "gpt-5", "gpt_5");
	models_list_release(&l);
}

static void test_resolve_aliases(void **state)
{
	(void)state;
	struct model_list l = parse_ok(ADAPTERS);
	expect(&l, "claude-sonnet-4.5", "claude_sonnet_4_5");
	expect(&l, "claude-4.5-sonnet", "claude_sonnet_4_5");
	expect(&l, "Claude-4.5-Sonnet", "claude_sonnet_4_5");
	expect(&l, "claude-sonnet-4-5", "claude_sonnet_4_5");
	expect(&l, "gpt5", "gpt_5");
	expect(&l, "gpt-5-chat-latest", "gpt_5");
	/* Router-style provider prefixes. */
	expect(&l, "openai/gpt-5.4", "gpt_5_4");
	expect(&l, "anthropic/claude-4.5-sonnet", "claude_sonnet_4_5");
	/* An alias whose target is not in the list resolves to nothing. */
	expect(&l, "claude-4.5-opus", NULL);
	expect(&l, "opus-4.5", NULL);
	models_list_release(&l);
}

static void test_resolve_unknown(void **state)
{
	(void)state;
	struct model_list l = parse_ok(ADAPTERS);
	expect(&l, "gpt-4o", NULL);
	expect(&l, "llama", NULL);
	expect(&l, "gpt-5.4-mini", NULL);
	expect(&l, "", NULL);
	expect(&l, "---", NULL);
	expect(&l, "openai/", NULL);
	expect(&l, "/", NULL);
	assert_null(models_resolve(&l, NULL));
	assert_null(models_resolve(NULL, "gpt-5"));
	struct model_list empty = { NULL, 0 };
	assert_null(models_resolve(&empty, "gpt-5"));
	char huge[600];
	memset(huge, 'g', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	expect(&l, huge, NULL);
	models_list_release(&l);
}

/* A disabled model still resolves: the caller decides what to say. */
static void test_resolve_disabled(void **state)
{
	(void)state;
	struct model_list l = parse_ok(ADAPTERS);
	const struct model_info *m = models_resolve(&l, "ClaudeSonnet4_5");
	assert_non_null(m);
	assert_false(m->enabled);
	models_list_release(&l);
}

/* A model literally named like an alias wins over the alias. */
static void test_resolve_exact_first(void **state)
{
	(void)state;
	struct model_list l = parse_ok(
		"{\"chatAdapters\":["
		"{\"key\":\"claude_sonnet_4_5\",\"model\":\"claude-sonnet-4.5\","
		"\"engineAgentKey\":\"ClaudeSonnet4_5\"},"
		"{\"key\":\"sonnet_x\",\"model\":\"claude-4.5-sonnet\",\"engineAgentKey\":\"SonnetX\"},"
		"{\"key\":\"gpt5\",\"model\":\"gpt-5-preview\",\"engineAgentKey\":\"Gpt5Preview\"},"
		"{\"key\":\"gpt_5\",\"model\":\"gpt-5\",\"engineAgentKey\":\"GPT5\"}"
		"]}");
	expect(&l, "claude-4.5-sonnet", "sonnet_x");
	expect(&l, "claude-sonnet-4.5", "claude_sonnet_4_5");
	expect(&l, "gpt5", "gpt5");   /* exact key beats squashed "gpt-5" */
	expect(&l, "gpt5preview", "gpt5"); /* exact agent key, any case */
	models_list_release(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_skips_bad_entries),
		cmocka_unit_test(test_parse_wrong_shape),
		cmocka_unit_test(test_parse_huge_list),
		cmocka_unit_test(test_parse_alloc_failure),
		cmocka_unit_test(test_resolve_names),
		cmocka_unit_test(test_resolve_aliases),
		cmocka_unit_test(test_resolve_unknown),
		cmocka_unit_test(test_resolve_disabled),
		cmocka_unit_test(test_resolve_exact_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
