/* test_idle.c - when the quiet-spell memory trim runs (src/core/idle.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <string.h>

#include "core/app.h"
#include "core/idle.h"

static void test_first_quiet_interval_trims_once(void **state)
{
	(void)state;
	struct idle_state s = { 0 };
	/* The first look has no interval behind it. */
	assert_false(idle_due(&s, 0, 0));
	/* Start-up freed memory too: the first quiet interval trims... */
	assert_true(idle_due(&s, 0, 0));
	/* ...and only that one, while nothing runs. */
	for (int i = 0; i < 5; i++)
		assert_false(idle_due(&s, 0, 0));
}

static void test_busy_interval_waits(void **state)
{
	(void)state;
	struct idle_state s = { 0 };
	assert_false(idle_due(&s, 0, 0));
	assert_true(idle_due(&s, 0, 0));
	/* Calls started and ended within the interval: not quiet yet. */
	assert_false(idle_due(&s, 40, 0));
	/* Still starting some: wait. */
	assert_false(idle_due(&s, 41, 0));
	/* One quiet interval after the work: trim, once. */
	assert_true(idle_due(&s, 41, 0));
	assert_false(idle_due(&s, 41, 0));
	assert_false(idle_due(&s, 41, 0));
}

static void test_open_stream_waits(void **state)
{
	(void)state;
	struct idle_state s = { 0 };
	assert_false(idle_due(&s, 1, 1));
	/* A long stream: nothing new started, but one is open. */
	assert_false(idle_due(&s, 1, 1));
	assert_false(idle_due(&s, 1, 1));
	/* It ended during the last interval, and nothing started since. */
	assert_true(idle_due(&s, 1, 0));
	assert_false(idle_due(&s, 1, 0));
}

static void test_counter_wraps(void **state)
{
	(void)state;
	struct idle_state s = { 0 };
	assert_false(idle_due(&s, (unsigned long)-1, 0));
	assert_true(idle_due(&s, (unsigned long)-1, 0));
	/* One more call wraps the counter to 0: still work since the trim. */
	assert_false(idle_due(&s, 0, 0));
	assert_true(idle_due(&s, 0, 0));
}

/* The watch reads the app's counters: calls started, streams open. */
static void test_looks_at_the_app(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct app app;
	memset(&app, 0, sizeof(app));
	struct idle *i = idle_new(&app, base);
	assert_non_null(i);
	/* Nothing due at once: the loop returns without running the tick. */
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	assert_false(idle__look(i));
	assert_true(idle__look(i)); /* start-up */
	atomic_store(&app.calls_started, 3);
	atomic_store(&app.streams, 1);
	assert_false(idle__look(i));
	assert_false(idle__look(i)); /* one still open */
	atomic_store(&app.streams, 0);
	assert_true(idle__look(i));
	assert_false(idle__look(i));
	idle_free(i);
	idle_free(NULL);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_quiet_interval_trims_once),
		cmocka_unit_test(test_busy_interval_waits),
		cmocka_unit_test(test_open_stream_waits),
		cmocka_unit_test(test_counter_wraps),
		cmocka_unit_test(test_looks_at_the_app),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
