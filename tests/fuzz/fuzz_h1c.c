/* fuzz_h1c.c - the HTTP/1.1 client's reading side (h1c_parse.c): response
 * heads. (Chunked bodies are util/http1.c's, fuzzed whole against split by
 * fuzz_h1_request.)
 *
 * Input: two control bytes, then the bytes from "upstream". Bit 0 of byte 0
 * says the request was HEAD; the rest is kept for the corpus's layout. The
 * heads are parsed (1xx interim heads skipped as a caller would) and their
 * invariants checked. */
#include "net/h1c_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(e) ((e) ? (void)0 : fail(__LINE__, #e))

static void fail(int line, const char *what)
{
	fprintf(stderr, "fuzz_h1c.c:%d: invariant broken: %s\n", line, what);
	abort();
}

static bool same_head(const struct h1c_head *a, const struct h1c_head *b)
{
	return a->status == b->status && a->len == b->len && a->hdrs_off == b->hdrs_off &&
	       a->hdrs_len == b->hdrs_len && a->body == b->body && a->content_length == b->content_length &&
	       a->keep_alive == b->keep_alive;
}

/* One head at p[0..n); returns its result and fills *h. */
static enum gw_err check_head(const char *p, size_t n, bool head_req, struct h1c_head *h)
{
	enum gw_err err = h1c_parse_head(p, n, head_req, h);
	CHECK(err == GW_OK || err == GW_EAGAIN || err == GW_EPROTO);
	size_t lim = n < H1C_HEAD_MAX ? n : H1C_HEAD_MAX;
	const char *end = memmem(p, lim, "\r\n\r\n", 4);
	if (err == GW_EAGAIN) {
		CHECK(n < H1C_HEAD_MAX);
		CHECK(end == NULL);
		return err;
	}
	if (err == GW_EPROTO) {
		CHECK(end != NULL || n >= H1C_HEAD_MAX);
		return err;
	}
	CHECK(h->len <= n && h->len <= H1C_HEAD_MAX);
	CHECK(h->len >= 16); /* "HTTP/1.x NNN\r\n\r\n" */
	CHECK(end != NULL && (size_t)(end - p) + 4 == h->len); /* the first blank line */
	CHECK(h->hdrs_off + h->hdrs_len + 2 == h->len);
	CHECK(h->hdrs_off >= 14 && memcmp(p + h->hdrs_off - 2, "\r\n", 2) == 0);
	CHECK(memchr(p, '\0', h->len) == NULL || memchr(p, '\0', h->hdrs_off) != NULL);
	CHECK(h->status >= 100 && h->status <= 999 && h->status != 101);
	int st = 0;
	CHECK(h1c_status_line(p, h->hdrs_off - 2, &st) == GW_OK && st == h->status);
	if (head_req || h->status < 200 || h->status == 204 || h->status == 304)
		CHECK(h->body == H1C_BODY_NONE);
	if (h->body == H1C_BODY_CLOSE)
		CHECK(!h->keep_alive);
	if (h->body == H1C_BODY_LENGTH)
		CHECK(h->content_length > 0 && h->content_length < 1000000000000000000ULL);
	else
		CHECK(h->content_length == 0);

	/* The head alone reads the same; one byte less is not a head yet. */
	struct h1c_head h2;
	CHECK(h1c_parse_head(p, h->len, head_req, &h2) == GW_OK && same_head(h, &h2));
	CHECK(h1c_parse_head(p, h->len - 1, head_req, &h2) == GW_EAGAIN);
	/* Asked by HEAD, a head that framed a body reads the same, bodiless. */
	if (!head_req) {
		CHECK(h1c_parse_head(p, n, true, &h2) == GW_OK);
		CHECK(h2.status == h->status && h2.len == h->len && h2.hdrs_off == h->hdrs_off &&
		      h2.hdrs_len == h->hdrs_len && h2.body == H1C_BODY_NONE);
		if (h->body != H1C_BODY_CLOSE)
			CHECK(h2.keep_alive == h->keep_alive);
	}
	return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	bool head_req = data[0] & 1;
	size_t n = size - 2;
	/* An exact-size copy so ASan sees any read past the end. */
	char *p = malloc(n ? n : 1);
	if (!p)
		return 0;
	memcpy(p, data + 2, n);

	size_t at = 0;
	struct h1c_head h;
	for (int i = 0; i < 8; i++) {
		if (check_head(p + at, n - at, head_req, &h) != GW_OK)
			break;
		at += h.len;
		if (h.status >= 200)
			break;
	}
	free(p);
	return 0;
}
