/* test_http1.c - the HTTP/1.1 framing the server and the clients share
 * (util/http1.c): token lists and chunked bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/http1.h"

#include <stdio.h>
#include <string.h>

/* ---- token lists ---- */

static bool tok(const char *v, const char *t)
{
	return http1_has_token(v, strlen(v), t);
}

static void test_has_token(void **state)
{
	(void)state;
	assert_true(tok("close", "close"));
	assert_true(tok("Close", "close"));
	assert_true(tok("CLOSE", "Close"));
	assert_true(tok("keep-alive, close", "close"));
	assert_true(tok("keep-alive, close", "keep-alive"));
	assert_true(tok("  \t close \t ", "close"));
	assert_true(tok("a,b,,close,", "close"));
	assert_true(tok(",,close", "close"));
	assert_true(tok("foo ,\tclose\t, bar", "close"));
	assert_false(tok("closed", "close"));
	assert_false(tok("xclose", "close"));
	assert_false(tok("clos", "close"));
	assert_false(tok("keep-alive", "close"));
	assert_false(tok("close-ish, foo", "close"));
	assert_false(tok("cl ose", "close"));
	assert_false(tok("", "close"));
	assert_false(tok(" , , ", "close"));
	/* Only the first n bytes count. */
	assert_false(http1_has_token("closed", 4, "close"));
	assert_true(http1_has_token("close, x", 5, "close"));
	assert_false(http1_has_token("a, close", 4, "close"));
}

static void test_tchar(void **state)
{
	(void)state;
	const char *yes = "!#$%&'*+-.^_`|~09azAZ";
	for (const char *c = yes; *c; c++)
		assert_true(http1_is_tchar((unsigned char)*c));
	const char *no = " \t\"(),/:;<=>?@[\\]{}\x7f\x80";
	for (const char *c = no; *c; c++)
		assert_false(http1_is_tchar((unsigned char)*c));
	assert_false(http1_is_tchar(0));
}

/* ---- chunked bodies ---- */

static enum http1_chunk_rc feed(const char *s, size_t step, struct buf *out, size_t *total_used)
{
	struct http1_chunked ck = { 0 };
	size_t n = strlen(s), at = 0;
	enum http1_chunk_rc rc = HTTP1_CHUNK_MORE;
	while (at < n && (rc == HTTP1_CHUNK_MORE || rc == HTTP1_CHUNK_DATA)) {
		size_t len = n - at < step ? n - at : step, used, dlen;
		rc = http1_chunked_feed(&ck, s + at, len, &used, &dlen);
		assert_true(used <= len && dlen <= used);
		if (rc == HTTP1_CHUNK_DATA)
			assert_int_equal(buf_add(out, s + at + used - dlen, dlen), GW_OK);
		else
			assert_int_equal(dlen, 0);
		if (rc == HTTP1_CHUNK_MORE)
			assert_int_equal(used, len);
		at += used;
	}
	*total_used = at;
	return rc;
}

static void test_chunked_any_split(void **state)
{
	(void)state;
	const char *body = "5\r\nhello\r\n6;ext=1\r\n world\r\nA \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET";
	for (size_t step = 1; step < 80; step++) {
		struct buf out;
		buf_init(&out, 1024);
		size_t used;
		assert_int_equal(feed(body, step, &out, &used), HTTP1_CHUNK_DONE);
		assert_int_equal(used, strlen(body) - 3); /* the next request is left */
		assert_string_equal(out.p, "hello world0123456789");
		buf_release(&out);
	}
	struct buf out;
	buf_init(&out, 1024);
	size_t used;
	assert_int_equal(http1_chunked_decode(body, strlen(body), &used, &out), GW_OK);
	assert_int_equal(used, strlen(body) - 3);
	assert_string_equal(out.p, "hello world0123456789");
	buf_reset(&out);
	assert_int_equal(http1_chunked_decode(body, 20, &used, &out), GW_EAGAIN);
	buf_release(&out);
}

static void test_chunked_refusals(void **state)
{
	(void)state;
	static const char *bad[] = {
		"x\r\n", "5\r\nhelloX\r\n", "\r\n", "5\rX", "0\r\n\r\r", "0\r\nT: v\rX", "fffffffffffffffffff\r\n", "5 x\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct buf out;
		buf_init(&out, 1024);
		size_t used;
		if (feed(bad[i], 3, &out, &used) != HTTP1_CHUNK_BAD)
			fail_msg("case %zu accepted", i);
		buf_release(&out);
	}
	struct buf small;
	buf_init(&small, 4);
	size_t used;
	assert_int_equal(http1_chunked_decode("5\r\nhello\r\n0\r\n\r\n", 15, &used, &small), GW_ELIMIT);
	buf_release(&small);
	/* Endless extensions are bounded. */
	struct http1_chunked ck = { 0 };
	char ext[1024];
	memset(ext, 'e', sizeof(ext));
	size_t dlen;
	enum http1_chunk_rc rc = http1_chunked_feed(&ck, "1;", 2, &used, &dlen);
	for (int i = 0; i < 100 && rc == HTTP1_CHUNK_MORE; i++)
		rc = http1_chunked_feed(&ck, ext, sizeof(ext), &used, &dlen);
	assert_int_equal(rc, HTTP1_CHUNK_BAD);
}

/* What a client reading responses relies on: extensions and trailers
 * dropped, upper-case sizes, and the bytes after the body (the next
 * response on a kept connection) left unread. */
static void test_chunked_then_next_message(void **state)
{
	(void)state;
	static const char in[] = "A;x=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\n";
	struct buf out;
	size_t used = 0;
	buf_init(&out, 1024);
	assert_int_equal(http1_chunked_decode(in, sizeof(in) - 1, &used, &out), GW_OK);
	assert_int_equal(out.len, 10);
	assert_memory_equal(out.p, "0123456789", 10);
	assert_int_equal(used, strlen("A;x=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"));
	buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_has_token),
		cmocka_unit_test(test_tchar),
		cmocka_unit_test(test_chunked_any_split),
		cmocka_unit_test(test_chunked_refusals),
		cmocka_unit_test(test_chunked_then_next_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
