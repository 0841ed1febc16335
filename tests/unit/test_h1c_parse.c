/* test_h1c_parse.c - the reading side of the HTTP/1.1 client: response
 * heads (status line, headers, the framing decision) and the incremental
 * chunked decoder, including the framings it must refuse to guess. */
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

/* ---- h1c_has_token ---- */

static bool tok(const char *v, const char *t)
{
	return h1c_has_token(v, strlen(v), t);
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
	assert_false(h1c_has_token("closed", 4, "close"));
	assert_true(h1c_has_token("close, x", 5, "close"));
	assert_false(h1c_has_token("a, close", 4, "close"));
}

/* ---- chunked bodies ---- */

/* One call on an exact-size copy from a fresh state. */
static enum gw_err dechunk_n(const char *s, size_t n, struct buf *out, size_t *used)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	struct h1c_chunks c = { 0 };
	*used = (size_t)-1;
	enum gw_err err = h1c_dechunk(&c, p, n, out, used);
	free(p);
	return err;
}

static enum gw_err dechunk(const char *s, struct buf *out, size_t *used)
{
	return dechunk_n(s, strlen(s), out, used);
}

/* s decodes to want, using all of it but the last `rest` bytes. */
static void decodes(const char *s, const char *want, size_t rest)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	size_t used;
	enum gw_err err = dechunk(s, &out, &used);
	if (err != GW_OK)
		fail_msg("%s for: %s", gw_strerror(err), s);
	assert_int_equal(used, strlen(s) - rest);
	assert_int_equal(out.len, strlen(want));
	if (out.len)
		assert_memory_equal(out.p, want, out.len);
	buf_release(&out);
}

static void test_dechunk_simple(void **state)
{
	(void)state;
	decodes("5\r\nhello\r\n0\r\n\r\n", "hello", 0);
	decodes("0\r\n\r\n", "", 0);
	decodes("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0);
	/* Extensions, with spaces before them, are ignored. */
	decodes("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", 0);
	decodes("5 ;a=\"b c\"\r\nhello\r\n0 \t\r\n\r\n", "hello", 0);
	decodes("5;\r\nhello\r\n0\r\n\r\n", "hello", 0);
	/* Hex in either case, leading zeros. */
	decodes("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0);
	decodes("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0);
	decodes("1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n", "0123456789abcdef0123456789abcde", 0);
	decodes("0005\r\nhello\r\n000\r\n\r\n", "hello", 0);
	/* Data may hold CR and LF. */
	decodes("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 0);
	/* Trailers are read and dropped. */
	decodes("5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-Other: 1\r\n\r\n", "hello", 0);
	/* Bytes after the end are the next response's. */
	decodes("5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", "hello", strlen("HTTP/1.1 200 OK\r\n"));
	decodes("0\r\nT: v\r\n\r\n0\r\n\r\n", "", 5);
}

/* Every way of cutting a body in two gives what one call gives, and so
 * does feeding it a byte at a time. */
static void test_dechunk_any_split(void **state)
{
	(void)state;
	static const char body[] = "4;a=b\r\nWiki\r\n5\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n"
				   "010\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT";
	static const char want[] = "Wikipedia in\r\n\r\nchunks.0123456789abcdef";
	size_t n = strlen(body), end = n - 4;
	for (size_t k = 0; k <= n; k++) {
		struct h1c_chunks c = { 0 };
		struct buf out;
		buf_init(&out, 1024);
		size_t u1 = (size_t)-1, u2 = 0;
		enum gw_err err = h1c_dechunk(&c, body, k, &out, &u1);
		if (k < end) {
			assert_int_equal(err, GW_EAGAIN);
			assert_int_equal(u1, k);
			err = h1c_dechunk(&c, body + k, n - k, &out, &u2);
		}
		if (err != GW_OK)
			fail_msg("split at %zu: %s", k, gw_strerror(err));
		assert_int_equal(u1 + u2, end);
		assert_int_equal(out.len, strlen(want));
		assert_memory_equal(out.p, want, out.len);
		buf_release(&out);
	}

	struct h1c_chunks c = { 0 };
	struct buf out;
	buf_init(&out, 1024);
	size_t at = 0, used;
	enum gw_err err = GW_EAGAIN;
	while (err == GW_EAGAIN && at < n) {
		err = h1c_dechunk(&c, body + at, 1, &out, &used);
		assert_int_equal(used, 1);
		at++;
	}
	assert_int_equal(err, GW_OK);
	assert_int_equal(at, end);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.p, want, out.len);
	buf_release(&out);
}

static void test_dechunk_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t used; /* through the offending byte */
	} bad[] = {
		{ "\r\n", 1 },                         /* no digits */
		{ ";x\r\n", 1 },                       /* no digits before an extension */
		{ "g\r\n", 1 },                        /* not hex */
		{ "5g\r\nhello\r\n", 2 },
		{ "-5\r\n", 1 },
		{ "0x5\r\nhello\r\n", 2 },
		{ "5 5\r\nhello\r\n", 3 },
		{ "5\nhello\r\n0\r\n\r\n", 2 },        /* bare LF after the size */
		{ "5;x\nhello\r\n0\r\n\r\n", 4 },      /* bare LF ending an extension */
		{ "5\r\r\nhello\r\n", 3 },
		{ "5\r\nhelloX\r\n0\r\n\r\n", 9 },     /* no CRLF after the data */
		{ "5\r\nhello\n0\r\n\r\n", 9 },        /* bare LF after the data */
		{ "5\r\nhello\rX0\r\n\r\n", 10 },
		{ "5\r\nhello\r\n0\r\n\n", 14 },       /* bare LF as the final line */
		{ "0\r\n\r\r", 5 },
		{ "0\r\nX: y\n\r\n", 8 },              /* bare LF ending a trailer */
		{ "0\r\nX: y\rZ\r\n", 9 },
		{ "0\r\n\nX: y\r\n\r\n", 4 },
		{ "0000000000000001\r\nx\r\n0\r\n\r\n", 16 }, /* 16 hex digits */
		{ "fffffffffffffffff\r\n", 16 },
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		struct buf out;
		buf_init(&out, 1024);
		size_t used;
		enum gw_err err = dechunk(bad[i].s, &out, &used);
		if (err != GW_EPROTO)
			fail_msg("case %zu (%s): %s", i, bad[i].s, gw_strerror(err));
		if (used != bad[i].used)
			fail_msg("case %zu: used %zu, want %zu", i, used, bad[i].used);
		buf_release(&out);
	}
	/* 15 hex digits are still a size. */
	decodes("000000000000001\r\nx\r\n0\r\n\r\n", "x", 0);
	struct buf out;
	buf_init(&out, 1024);
	size_t used;
	assert_int_equal(dechunk("FFFFFFFFFFFFFFF\r\nabc", &out, &used), GW_EAGAIN);
	assert_int_equal(used, 20);
	assert_int_equal(out.len, 3);
	buf_release(&out);
}

/* An extension of 4096 bytes is skipped, one of 4097 refused. */
static void test_dechunk_extension_bound(void **state)
{
	(void)state;
	size_t cap = 4200;
	char *s = malloc(cap);
	assert_non_null(s);
	for (size_t ext = 4095; ext <= 4097; ext++) {
		memset(s, 0, cap);
		s[0] = '1';
		s[1] = ';';
		memset(s + 2, 'e', ext);
		strcpy(s + 2 + ext, "\r\nx\r\n0\r\n\r\n");
		struct buf out;
		buf_init(&out, 1024);
		size_t used;
		enum gw_err err = dechunk(s, &out, &used);
		if (ext <= 4096) {
			assert_int_equal(err, GW_OK);
			assert_int_equal(used, strlen(s));
			assert_int_equal(out.len, 1);
			assert_int_equal(out.p[0], 'x');
		} else {
			assert_int_equal(err, GW_EPROTO);
			assert_int_equal(used, 2 + 4097);
		}
		buf_release(&out);
	}
	free(s);

	/* The bound holds per extension, not per body. */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(buf_adds(&b, "1;"), GW_OK);
		for (int j = 0; j < 4000; j++)
			assert_int_equal(buf_addc(&b, 'e'), GW_OK);
		assert_int_equal(buf_adds(&b, "\r\ny\r\n"), GW_OK);
	}
	assert_int_equal(buf_adds(&b, "0\r\n\r\n"), GW_OK);
	decodes(b.p, "yyyy", 0);
	buf_release(&b);
}

/* Trailers are bounded like a head. */
static void test_dechunk_trailer_bound(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_adds(&b, "0\r\n"), GW_OK);
	while (b.len < 2 * H1C_HEAD_MAX)
		assert_int_equal(buf_adds(&b, "X-Trailer: 0123456789abcdef\r\n"), GW_OK);
	assert_int_equal(buf_adds(&b, "\r\n"), GW_OK);
	struct buf out;
	buf_init(&out, 1024);
	size_t used;
	assert_int_equal(dechunk_n(b.p, b.len, &out, &used), GW_EPROTO);
	assert_true(used > H1C_HEAD_MAX && used < b.len);
	buf_release(&out);

	/* A few kilobytes of trailers are fine. */
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "2\r\nok\r\n0\r\n"), GW_OK);
	for (int i = 0; i < 100; i++)
		assert_int_equal(buf_adds(&b, "X-Trailer: 0123456789abcdef\r\n"), GW_OK);
	assert_int_equal(buf_adds(&b, "\r\n"), GW_OK);
	decodes(b.p, "ok", 0);
	buf_release(&b);
}

static void test_dechunk_limit(void **state)
{
	(void)state;
	static const char body[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
	struct buf out;
	size_t used;
	buf_init(&out, 8);
	assert_int_equal(dechunk(body, &out, &used), GW_ELIMIT);
	assert_int_equal(out.len, 5); /* the first chunk went in */
	assert_memory_equal(out.p, "hello", 5);
	buf_release(&out);

	buf_init(&out, 4);
	assert_int_equal(dechunk(body, &out, &used), GW_ELIMIT);
	assert_int_equal(out.len, 0);
	buf_release(&out);

	/* A ceiling of exactly the body is enough. */
	buf_init(&out, 10);
	assert_int_equal(dechunk(body, &out, &used), GW_OK);
	assert_int_equal(used, strlen(body));
	assert_int_equal(out.len, 10);
	assert_memory_equal(out.p, "helloworld", 10);
	buf_release(&out);

	/* Appended after what out already holds, under the same ceiling. */
	buf_init(&out, 12);
	assert_int_equal(buf_adds(&out, "xyz"), GW_OK);
	assert_int_equal(dechunk(body, &out, &used), GW_ELIMIT);
	buf_release(&out);
}

static void test_dechunk_more_and_after_end(void **state)
{
	(void)state;
	struct h1c_chunks c = { 0 };
	struct buf out;
	buf_init(&out, 1024);
	size_t used = 99;
	assert_int_equal(h1c_dechunk(&c, "", 0, &out, &used), GW_EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(h1c_dechunk(&c, "5\r\nhel", 6, &out, &used), GW_EAGAIN);
	assert_int_equal(used, 6);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.p, "hel", 3);
	assert_int_equal(h1c_dechunk(&c, "lo\r\n0\r\n", 7, &out, &used), GW_EAGAIN);
	assert_int_equal(used, 7);
	assert_int_equal(h1c_dechunk(&c, "X-T: 1\r", 7, &out, &used), GW_EAGAIN);
	assert_int_equal(used, 7);
	assert_int_equal(h1c_dechunk(&c, "\n\r\nHTTP", 7, &out, &used), GW_OK);
	assert_int_equal(used, 3);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.p, "hello", 5);
	/* Done stays done, consuming nothing. */
	used = 99;
	assert_int_equal(h1c_dechunk(&c, "5\r\nmore!\r\n", 10, &out, &used), GW_OK);
	assert_int_equal(used, 0);
	used = 99;
	assert_int_equal(h1c_dechunk(&c, "", 0, &out, &used), GW_OK);
	assert_int_equal(used, 0);
	assert_int_equal(out.len, 5);
	buf_release(&out);
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
		cmocka_unit_test(test_has_token),
		cmocka_unit_test(test_dechunk_simple),
		cmocka_unit_test(test_dechunk_any_split),
		cmocka_unit_test(test_dechunk_refusals),
		cmocka_unit_test(test_dechunk_extension_bound),
		cmocka_unit_test(test_dechunk_trailer_bound),
		cmocka_unit_test(test_dechunk_limit),
		cmocka_unit_test(test_dechunk_more_and_after_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
