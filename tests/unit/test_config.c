/* test_config.c - the settings table: sources, precedence, errors, redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char env_path[64];

static void write_env(const char *text)
{
	snprintf(env_path, sizeof(env_path), "/tmp/gw-test-env-%d", getpid());
	FILE *f = fopen(env_path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	static const char *const vars[] = { "PORT", "HOST", "API_MASTER_KEY", "CLERK_COOKIE", "LOG_LEVEL",
					    "ENGINE_FLOW", "ALLOW_NO_KEY", "CORS_ORIGINS", "STORE_URL",
					    "CLERK_BASE_URL", "WORKERS" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	env_path[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (env_path[0])
		unlink(env_path);
	return 0;
}

static struct gw_config *load(int argc, char **argv, char *err)
{
	return config_load(env_path[0] ? env_path : NULL, argc, argv, err, 512);
}

static void test_defaults(void **state)
{
	(void)state;
	char err[512];
	struct gw_config *c = load(0, NULL, err);
	assert_non_null(c);
	assert_int_equal(c->port, 8089);
	assert_string_equal(c->host, "127.0.0.1");
	assert_int_equal(c->engine_flow, FLOW_2026);
	assert_string_equal(c->clerk_base_url, "https://clerk.cto.new");
	assert_string_equal(c->store_url, "sqlite://data/enginelabs-2api.db");
	assert_int_equal(c->n_api_keys, 0);
	assert_string_equal(c->cors_origins, ""); /* auto without a key: no CORS */
	assert_true(c->workers >= 1);
	config_unref(c);
}

static void test_precedence(void **state)
{
	(void)state;
	char err[512];
	write_env("# comment\nPORT=1000\nexport HOST = 127.0.0.2\nLOG_LEVEL='debug'\nDEFAULT_MODEL=\"gpt-5.4\" \n");
	setenv("PORT", "2000", 1);
	char *argv[] = { "gw", "--port=3000", NULL };
	struct gw_config *c = load(2, argv, err);
	assert_non_null(c);
	assert_int_equal(c->port, 3000);
	assert_string_equal(c->host, "127.0.0.2");
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_string_equal(c->default_model, "gpt-5.4");
	config_unref(c);

	c = load(0, NULL, err);
	assert_non_null(c);
	assert_int_equal(c->port, 2000); /* environment over .env */
	config_unref(c);
}

static void test_errors_name_key_source_value(void **state)
{
	(void)state;
	char err[512];
	char *argv[] = { "gw", "--port=99999", NULL };
	assert_null(load(2, argv, err));
	assert_non_null(strstr(err, "PORT"));
	assert_non_null(strstr(err, "flag"));
	assert_non_null(strstr(err, "99999"));
	assert_non_null(strstr(err, "1..65535"));

	write_env("HOST=127.0.0.1\nENGINE_FLOW=2024\n");
	assert_null(load(0, NULL, err));
	assert_non_null(strstr(err, "ENGINE_FLOW"));
	assert_non_null(strstr(err, "line 2"));
	assert_non_null(strstr(err, "2026, 2025"));

	setenv("CLERK_BASE_URL", "ftp://x", 1);
	write_env("");
	assert_null(load(0, NULL, err));
	assert_non_null(strstr(err, "CLERK_BASE_URL"));
	assert_non_null(strstr(err, "environment"));
	unsetenv("CLERK_BASE_URL");

	char *argv2[] = { "gw", "--no-such-thing=1", NULL };
	assert_null(load(2, argv2, err));
	assert_non_null(strstr(err, "unknown flag"));

	char *argv3[] = { "gw", "--port=12ab", NULL };
	assert_null(load(2, argv3, err));
	assert_non_null(strstr(err, "not a whole number"));

	write_env("JUST TEXT\n");
	assert_null(load(0, NULL, err));
	assert_non_null(strstr(err, "KEY=VALUE"));
}

static void test_secret_values_never_in_errors(void **state)
{
	(void)state;
	char err[512];
	char secret[] = "sk-verysecret-\x01-value";
	setenv("API_MASTER_KEY", secret, 1);
	assert_null(load(0, NULL, err));
	assert_non_null(strstr(err, "API_MASTER_KEY"));
	assert_null(strstr(err, "verysecret"));
	assert_non_null(strstr(err, "<set,"));
	unsetenv("API_MASTER_KEY");
}

static void test_print_redacts(void **state)
{
	(void)state;
	char err[512];
	setenv("API_MASTER_KEY", "sk-one,sk-two", 1);
	setenv("CLERK_COOKIE", "__client=abcdefsecretcookie", 1);
	struct gw_config *c = load(0, NULL, err);
	assert_non_null(c);
	assert_int_equal(c->n_api_keys, 2);
	assert_string_equal(c->api_keys[1], "sk-two");
	assert_string_equal(c->cors_origins, "*"); /* auto with a key */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/gw-test-print-%d", getpid());
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	config_print(c, fileno(f));
	fflush(f);
	rewind(f);
	char out[8192];
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	unlink(path);
	assert_null(strstr(out, "sk-one"));
	assert_null(strstr(out, "secretcookie"));
	assert_non_null(strstr(out, "API_MASTER_KEY=<set, 13 bytes>"));
	assert_non_null(strstr(out, "PORT=8089"));
	config_unref(c);
	unsetenv("API_MASTER_KEY");
	unsetenv("CLERK_COOKIE");
}

static void test_no_key_beyond_loopback(void **state)
{
	(void)state;
	char err[512];
	setenv("HOST", "0.0.0.0", 1);
	assert_null(load(0, NULL, err));
	assert_non_null(strstr(err, "API_MASTER_KEY"));
	setenv("ALLOW_NO_KEY", "true", 1);
	struct gw_config *c = load(0, NULL, err);
	assert_non_null(c);
	config_unref(c);
	unsetenv("ALLOW_NO_KEY");
	setenv("API_MASTER_KEY", "k", 1);
	c = load(0, NULL, err);
	assert_non_null(c);
	config_unref(c);
	unsetenv("API_MASTER_KEY");
	unsetenv("HOST");
}

static void test_keep_fixed_on_reload(void **state)
{
	(void)state;
	char err[512];
	struct gw_config *cur = load(0, NULL, err);
	setenv("PORT", "9999", 1);
	setenv("LOG_LEVEL", "error", 1);
	struct gw_config *next = load(0, NULL, err);
	assert_non_null(cur);
	assert_non_null(next);
	config_keep_fixed(next, cur);
	assert_int_equal(next->port, 8089);         /* needs a restart */
	assert_int_equal(next->log_level, LOG_ERROR); /* reloadable */
	config_unref(cur);
	config_unref(next);
	unsetenv("PORT");
	unsetenv("LOG_LEVEL");
}

static void test_refcount_and_current(void **state)
{
	(void)state;
	char err[512];
	struct gw_config *c = load(0, NULL, err);
	config_install(config_ref(c));
	struct gw_config *cur = config_current();
	assert_ptr_equal(cur, c);
	config_unref(cur);
	config_install(NULL);
	assert_null(config_current());
	config_unref(c);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	char err[512];
	static const char text[] = "PORT=1234\nAPI_MASTER_KEY=a,b,c\nCORS_ORIGINS=auto\nDEFAULT_MODEL=gpt-5.4\n";
	bool saw_failure = false;
	/* Fail the Nth allocation for every N until loading no longer fails:
	 * each error path must return cleanly (ASan checks for leaks). */
	for (unsigned long n = 1; n < 500; n++) {
		gw_alloc_fail_at(n);
		struct gw_config *c = config_load_env_text(text, sizeof(text) - 1, err, sizeof(err));
		gw_alloc_fail_at(0);
		if (c) {
			assert_int_equal(c->port, 1234);
			assert_int_equal(c->n_api_keys, 3);
			config_unref(c);
			assert_true(saw_failure);
			return;
		}
		saw_failure = true;
		assert_non_null(strstr(err, "out of memory"));
	}
	fail_msg("config loading never succeeded");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_name_key_source_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_values_never_in_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_print_redacts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_key_beyond_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_fixed_on_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refcount_and_current, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
