/* test_h1_parse.c - request heads (RFC 9112), including the framing
 * ambiguities that enable request smuggling. Chunked bodies: test_http1.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "front/h1_parse.h"
#include "util/buf.h"

#include <stdio.h>
#include <string.h>

/* Parses a copy of s (the parser writes into its input); returns the status. */
static int parse(const char *s, struct h1_head *h, char *copy, size_t cap)
{
	size_t n = strlen(s);
	assert_true(n < cap);
	memcpy(copy, s, n + 1);
	const char *why;
	static struct h1_header hdrs[H1_MAX_HEADERS];
	return h1_parse_head(copy, n, h, hdrs, H1_MAX_HEADERS, &why);
}

static void test_head_end_across_reads(void **state)
{
	(void)state;
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
	size_t full = strlen(req) - 4, from = 0;
	for (size_t n = 0; n < full; n++)
		assert_int_equal(h1_head_end(req, n, &from), 0);
	assert_int_equal(h1_head_end(req, full, &from), full);
	from = 0;
	assert_int_equal(h1_head_end("GET / HTTP/1.0\n\nX", 17, &from), 16); /* bare LF lines */
	from = 0;
	assert_int_equal(h1_head_end("GET / HTTP/1.1\r\nA: b\r\r\n", 24, &from), 0);
}

static void test_simple_get(void **state)
{
	(void)state;
	struct h1_head h;
	char c[512];
	assert_int_equal(parse("GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Key:  v v \t\r\n\r\n", &h, c, sizeof(c)), 0);
	assert_int_equal(h.method, H1_GET);
	assert_string_equal(h.target, "/v1/models?x=1");
	assert_int_equal(h.minor, 1);
	assert_string_equal(h1_head_get(&h, "x-key"), "v v");
	assert_null(h1_head_get(&h, "X-Absent"));
	assert_int_equal(h.content_length, -1);
	assert_true(h.keep_alive);
	assert_false(h.chunked);
}

static void test_connection_semantics(void **state)
{
	(void)state;
	struct h1_head h;
	char c[512];
	assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h, c, sizeof(c)), 0);
	assert_false(h.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, c, sizeof(c)), 0);
	assert_true(h.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", &h, c, sizeof(c)), 0);
	assert_false(h.keep_alive);
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", &h,
			       c, sizeof(c)), 0);
	assert_true(h.expect_continue);
	assert_int_equal(h.content_length, 5);
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", &h, c, sizeof(c)), 417);
}

static void test_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{ "GARBAGE\r\n\r\n", 400 },
		{ "GET /\r\n\r\n", 400 },
		{ "GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505 },
		{ "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 400 },                               /* no Host */
		{ "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },         /* two Hosts */
		{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },                   /* space before colon */
		{ "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400 },         /* obs-fold */
		{ "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400 },                 /* bare CR */
		{ "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", 400 },
		/* smuggling: the classic CL.CL, CL.TE, TE.TE shapes */
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501 },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400 },
	};
	char c[512];
	struct h1_head h;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = parse(cases[i].req, &h, c, sizeof(c));
		if (st != cases[i].status)
			fail_msg("case %zu (%s): %d, want %d", i, cases[i].req, st, cases[i].status);
	}
	/* A NUL anywhere in the head. */
	char nul[] = "GET /a HTTP/1.1\r\nHost: a\0b\r\n\r\n";
	const char *why;
	struct h1_header hdrs[4];
	assert_int_equal(h1_parse_head(nul, sizeof(nul) - 1, &h, hdrs, 4, &why), 400);
}

/* Host plus n other headers, parsed into the slots the server would give it. */
static int parse_n_headers(int n, size_t *n_headers)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_adds(&b, "GET / HTTP/1.1\r\nHost: a\r\n"), GW_OK);
	for (int i = 0; i < n; i++)
		assert_int_equal(buf_printf(&b, "X-%d: v\r\n", i), GW_OK);
	assert_int_equal(buf_adds(&b, "\r\n"), GW_OK);
	struct h1_head h;
	const char *why;
	struct h1_header hdrs[H1_MAX_HEADERS];
	size_t slots = h1_head_slots(b.p, b.len);
	assert_true(slots <= H1_MAX_HEADERS);
	int st = h1_parse_head(b.p, b.len, &h, hdrs, slots, &why);
	*n_headers = h.n_headers;
	buf_release(&b);
	return st;
}

/* H1_MAX_HEADERS headers are accepted, one more is 431. */
static void test_header_count_bound(void **state)
{
	(void)state;
	size_t n;
	assert_int_equal(parse_n_headers(H1_MAX_HEADERS - 1, &n), 0);
	assert_int_equal(n, H1_MAX_HEADERS);
	assert_int_equal(parse_n_headers(H1_MAX_HEADERS, &n), 431);
}

/* Feeds s in pieces of step bytes, collecting the data spans; returns the
 * last code and the bytes used. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_end_across_reads),
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_connection_semantics),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_header_count_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
