/* test_h1c_parse.c - the reading side of the HTTP/1.1 client: response
 * heads (status line, headers, the framing decision), including the
 * framings it must refuse to guess. Chunked bodies: test_http1.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/h1c_parse.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- heads ---- */

/* Parses an exact-size heap copy of s, so ASan sees any read past the end. */
static enum gw_err head_n(const char *s, size_t n, bool head_req, struct h1c_head *h)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	enum gw_err err = h1c_parse_head(p, n, head_req, h);
	free(p);
	return err;
}

static enum gw_err head(const char *s, bool head_req, struct h1c_head *h)
{
	return head_n(s, strlen(s), head_req, h);
}

/* s must be refused. */
static void refused(const char *s)
{
	struct h1c_head h;
	enum gw_err err = head(s, false, &h);
	if (err != GW_EPROTO)
		fail_msg("%s for: %s", gw_strerror(err), s);
}

static void test_head_content_length(void **state)
{
	(void)state;
	static const char status[] = "HTTP/1.1 200 OK\r\n";
	static const char hdrs[] = "Content-Type: text/plain\r\nContent-Length: 5\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
	struct h1c_head h;
	assert_int_equal(head(resp, false, &h), GW_OK);
	assert_int_equal(h.status, 200);
	/* The body after the blank line is not part of the head. */
	assert_int_equal(h.len, strlen(resp) - strlen("hello"));
	assert_int_equal(h.hdrs_off, strlen(status));
	assert_int_equal(h.hdrs_len, strlen(hdrs));
	assert_memory_equal(resp + h.hdrs_off, hdrs, h.hdrs_len);
	assert_int_equal(h.hdrs_off + h.hdrs_len + 2, h.len);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(h.content_length, 5);
	assert_true(h.keep_alive);

	/* No headers at all: an empty span right after the status line. */
	assert_int_equal(head("HTTP/1.1 404 Not Found\r\n\r\nxyz", false, &h), GW_OK);
	assert_int_equal(h.status, 404);
	assert_int_equal(h.len, 26);
	assert_int_equal(h.hdrs_off, 24);
	assert_int_equal(h.hdrs_len, 0);
	assert_int_equal(h.body, H1C_BODY_CLOSE);

	/* Names any case, values trimmed of spaces and tabs. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:\t 42 \t\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(h.content_length, 42);
}

static void test_head_length_forms(void **state)
{
	(void)state;
	struct h1c_head h;
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_NONE);
	assert_int_equal(h.content_length, 0);
	assert_true(h.keep_alive);

	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(h.content_length, 5);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", false, &h),
			 GW_OK);
	assert_int_equal(h.content_length, 7);
	/* 18 digits is the most accepted. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.content_length, 999999999999999999ULL);

	refused("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length:   \r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: ,\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n"); /* 19 digits */
}

static void test_head_chunked(void **state)
{
	(void)state;
	struct h1c_head h;
	assert_int_equal(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_CHUNKED);
	assert_true(h.keep_alive);
	assert_int_equal(h.len, strlen("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
	assert_int_equal(head("HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_CHUNKED);

	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n");
	/* A coding we cannot undo is refused even when no body follows. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", true, &h), GW_EPROTO);
}

static void test_head_connection(void **state)
{
	(void)state;
	struct h1c_head h;
	/* Neither length nor chunked: the body runs to the close. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_CLOSE);
	assert_false(h.keep_alive);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_CLOSE);
	assert_false(h.keep_alive);

	assert_int_equal(head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_false(h.keep_alive);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 2\r\n\r\n", false, &h),
			 GW_OK);
	assert_false(h.keep_alive);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nConnection: foo\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
			      false, &h), GW_OK);
	assert_false(h.keep_alive);
	/* Not the token "close". */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 2\r\n\r\n", false, &h),
			 GW_OK);
	assert_true(h.keep_alive);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nX-Connection: close\r\nContent-Length: 2\r\n\r\n", false, &h),
			 GW_OK);
	assert_true(h.keep_alive);

	/* HTTP/1.0 closes unless it says keep-alive. */
	assert_int_equal(head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_false(h.keep_alive);
	assert_int_equal(head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", false, &h),
			 GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_true(h.keep_alive);
	assert_int_equal(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n", false, &h),
			 GW_OK);
	assert_true(h.keep_alive);
	assert_int_equal(head("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\n", false,
			      &h), GW_OK);
	assert_false(h.keep_alive);
	assert_int_equal(head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_CLOSE);
	assert_false(h.keep_alive);
}

static void test_head_no_body(void **state)
{
	(void)state;
	static const char *const cases[] = {
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
	};
	static const int statuses[] = { 204, 304, 100, 103, 204, 304 };
	struct h1c_head h;
	for (size_t i = 0; i < GW_ARRAY_LEN(cases); i++) {
		assert_int_equal(head(cases[i], false, &h), GW_OK);
		assert_int_equal(h.status, statuses[i]);
		if (h.body != H1C_BODY_NONE)
			fail_msg("case %zu: body %d", i, (int)h.body);
		assert_true(h.keep_alive);
	}
	/* The answer to HEAD: no body whatever the headers say. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, &h), GW_OK);
	assert_int_equal(h.status, 200);
	assert_int_equal(h.body, H1C_BODY_NONE);
	assert_true(h.keep_alive);
	assert_int_equal(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_NONE);
	assert_int_equal(head("HTTP/1.1 200 OK\r\n\r\n", true, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_NONE);
	/* The same heads without HEAD do have bodies. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(head("HTTP/1.1 205 Reset Content\r\nContent-Length: 5\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
}

static void test_head_interim(void **state)
{
	(void)state;
	static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
	struct h1c_head h;
	assert_int_equal(head(resp, false, &h), GW_OK);
	assert_int_equal(h.status, 100);
	assert_int_equal(h.len, strlen("HTTP/1.1 100 Continue\r\n\r\n"));
	assert_int_equal(h.body, H1C_BODY_NONE);
	/* The caller skips it and finds the real head. */
	size_t skip = h.len;
	assert_int_equal(head(resp + skip, false, &h), GW_OK);
	assert_int_equal(h.status, 200);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(h.content_length, 2);
	assert_int_equal(skip + h.len + 2, strlen(resp));

	refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
	assert_int_equal(head("HTTP/1.1 101 Switching Protocols\r\n\r\n", true, &h), GW_EPROTO);
}

/* Every proper prefix of a valid head is "not yet", the whole is a head. */
static void test_head_incomplete(void **state)
{
	(void)state;
	static const char *const heads[] = {
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.0 204\r\nX: \r\n\r\n",
	};
	for (size_t k = 0; k < GW_ARRAY_LEN(heads); k++) {
		size_t n = strlen(heads[k]);
		struct h1c_head h;
		for (size_t i = 0; i < n; i++) {
			enum gw_err err = head_n(heads[k], i, false, &h);
			if (err != GW_EAGAIN)
				fail_msg("head %zu, prefix %zu: %s", k, i, gw_strerror(err));
		}
		assert_int_equal(head_n(heads[k], n, false, &h), GW_OK);
		assert_int_equal(h.len, n);
	}
}

/* A head longer than H1C_HEAD_MAX is refused, whenever its end comes. */
static void test_head_too_long(void **state)
{
	(void)state;
	size_t n = H1C_HEAD_MAX + 64;
	char *p = malloc(n);
	assert_non_null(p);
	static const char status[] = "HTTP/1.1 200 OK\r\n";
	memcpy(p, status, strlen(status));
	size_t at = strlen(status);
	while (at + 12 <= n) {
		memcpy(p + at, "X-Pad: abc\r\n", 12);
		at += 12;
	}
	memset(p + at, 'a', n - at);
	struct h1c_head h;
	assert_int_equal(h1c_parse_head(p, H1C_HEAD_MAX - 1, false, &h), GW_EAGAIN);
	assert_int_equal(h1c_parse_head(p, H1C_HEAD_MAX, false, &h), GW_EPROTO);
	assert_int_equal(h1c_parse_head(p, n, false, &h), GW_EPROTO);

	/* The blank line ending exactly at H1C_HEAD_MAX is still accepted;
	 * one byte later it is not. */
	memset(p + strlen(status), 'a', n - strlen(status));
	memcpy(p + strlen(status), "X-Pad: ", 7);
	memcpy(p + H1C_HEAD_MAX - 4, "\r\n\r\n", 4);
	assert_int_equal(h1c_parse_head(p, n, false, &h), GW_OK);
	assert_int_equal(h.len, H1C_HEAD_MAX);
	assert_int_equal(h.hdrs_len, H1C_HEAD_MAX - 2 - strlen(status));
	memset(p + H1C_HEAD_MAX - 4, 'a', 4);
	memcpy(p + H1C_HEAD_MAX - 3, "\r\n\r\n", 4);
	assert_int_equal(h1c_parse_head(p, n, false, &h), GW_EPROTO);
	free(p);
}

static void test_status_lines(void **state)
{
	(void)state;
	int st = -1;
	assert_int_equal(h1c_status_line("HTTP/1.1 200", 12, &st), GW_OK);
	assert_int_equal(st, 200);
	assert_int_equal(h1c_status_line("HTTP/1.0 404 Not Found", 22, &st), GW_OK);
	assert_int_equal(st, 404);
	assert_int_equal(h1c_status_line("HTTP/1.1 999 ", 13, &st), GW_OK);
	assert_int_equal(st, 999);
	assert_int_equal(h1c_status_line("HTTP/1.1 100 x", 14, &st), GW_OK);
	assert_int_equal(st, 100);

	static const char *const bad[] = {
		"HTTP/2 200", "HTTP/1.1 20", "HTTP/1.1 2000", "HTTP/1.1 099 x", "HTTP/1.1 200x",
		"HTTP/1.1 000", "HTTP/1.1  200", "HTTP/1.1 2x0", "http/1.1 200", "HTTP/1. 200",
		"HTTP/1.1\t200", "HTTP/1.1 -20", "", "HTTP/1.10 200", "ICY 200 OK",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		st = -1;
		if (h1c_status_line(bad[i], strlen(bad[i]), &st) != GW_EPROTO)
			fail_msg("status line accepted: \"%s\"", bad[i]);
		assert_int_equal(st, -1);
		char resp[128];
		snprintf(resp, sizeof(resp), "%s\r\nContent-Length: 0\r\n\r\n", bad[i]);
		refused(resp);
	}
	/* Nothing but a blank line. */
	refused("\r\n\r\n");
	refused("\r\nHTTP/1.1 200 OK\r\n\r\n");
}

static void test_head_bad_header_lines(void **state)
{
	(void)state;
	refused("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-A\t: b\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX A: b\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-A: b\r\n continued\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-A: b\r\n\tcontinued: x\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\n X-A: b\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-(A): b\r\n\r\n");
	/* A bare LF or CR inside a line would hide a header from us that a
	 * reader splitting on LF sees; control bytes in the reason too. */
	refused("HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 100\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 1\r\n\r\n");
	refused("HTTP/1.1 200 OK\nX: y\r\n\r\n");
	refused("HTTP/1.1 200 O\x01K\r\n\r\n");
	refused("HTTP/1.1 200 OK\r\nX-A: b\x7f\r\n\r\n");
	/* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 answer is faulty. */
	refused("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
	/* NUL in a value and in a name (strlen would stop there: explicit lengths). */
	static const char nul_val[] = "HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 0\r\n\r\n";
	static const char nul_name[] = "HTTP/1.1 200 OK\r\nX-\0A: b\r\n\r\n";
	struct h1c_head h;
	assert_int_equal(head_n(nul_val, sizeof(nul_val) - 1, false, &h), GW_EPROTO);
	assert_int_equal(head_n(nul_name, sizeof(nul_name) - 1, false, &h), GW_EPROTO);

	/* What is fine: no space after the colon, an empty value, a tchar name. */
	assert_int_equal(head("HTTP/1.1 200 OK\r\nX-A:b\r\nX-Empty:\r\n!#$%&'*+-.^_`|~09aZ: v\r\n"
			      "X-Tab: a\tb\r\nContent-Length:3\r\n\r\n", false, &h), GW_OK);
	assert_int_equal(h.body, H1C_BODY_LENGTH);
	assert_int_equal(h.content_length, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_content_length),
		cmocka_unit_test(test_head_length_forms),
		cmocka_unit_test(test_head_chunked),
		cmocka_unit_test(test_head_connection),
		cmocka_unit_test(test_head_no_body),
		cmocka_unit_test(test_head_interim),
		cmocka_unit_test(test_head_incomplete),
		cmocka_unit_test(test_head_too_long),
		cmocka_unit_test(test_status_lines),
		cmocka_unit_test(test_head_bad_header_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
