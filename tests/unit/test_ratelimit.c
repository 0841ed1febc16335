/* test_ratelimit.c - requests per minute per client key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "front/ratelimit.h"

#include <stdio.h>

static void test_limit_per_key_and_window(void **state)
{
	(void)state;
	int ra = -1;
	int64_t t = 6000000; /* a minute boundary */
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_take("aaaa", 3, t + 10, &ra));
	assert_false(ratelimit_take("aaaa", 3, t + 10, &ra));
	assert_int_equal(ra, 50);
	assert_true(ratelimit_take("bbbb", 3, t + 10, &ra)); /* another key has its own count */
	assert_true(ratelimit_take("aaaa", 3, t + 60, &ra)); /* the next minute starts afresh */
	assert_true(ratelimit_take("aaaa", 0, t + 60, &ra)); /* 0 = off */
}

static void test_many_keys_never_refuse_wrongly(void **state)
{
	(void)state;
	int ra;
	char key[32];
	/* More keys than slots: old windows are recycled, new keys still pass. */
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "k%05d", i);
		assert_true(ratelimit_take(key, 1, 7000000, &ra));
	}
	assert_true(ratelimit_take("", 1, 7000000, &ra));
	assert_false(ratelimit_take("", 1, 7000000, &ra));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_per_key_and_window),
		cmocka_unit_test(test_many_keys_never_refuse_wrongly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
