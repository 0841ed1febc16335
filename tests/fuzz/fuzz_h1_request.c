/* fuzz_h1_request.c - client bytes as an HTTP/1.1 request: head framing,
 * head parsing and a chunked body fed in pieces. A parsed head must point
 * into its input and say one framing; the decoder must consume what it is
 * given unless it stops, and never exceed its body bound. */
#include <string.h>

#include "front/h1_parse.h"
#include "util/buf.h"
#include "util/http1.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_head(const struct h1_head *h, const char *p, size_t len)
{
	GW_ASSERT(h->target >= p && h->target < p + len);
	GW_ASSERT(h->minor == 0 || h->minor == 1);
	GW_ASSERT(h->n_headers <= H1_MAX_HEADERS);
	GW_ASSERT(!(h->chunked && h->content_length >= 0));
	for (size_t i = 0; i < h->n_headers; i++) {
		GW_ASSERT(h->h[i].name >= p && h->h[i].name < p + len && *h->h[i].name);
		GW_ASSERT(h->h[i].value >= p && h->h[i].value <= p + len);
		GW_ASSERT(!strpbrk(h->h[i].value, "\r\n"));
	}
}

/* Fed in pieces, the decoder gives the same body as in one piece. */
static void check_chunked(const char *p, size_t len, size_t step)
{
	struct buf whole, pieces;
	buf_init(&whole, 4096);
	buf_init(&pieces, 4096);
	size_t used_whole = 0;
	enum gw_err err = http1_chunked_decode(p, len, &used_whole, &whole);
	GW_ASSERT(used_whole <= len);

	struct http1_chunked ck = { 0 };
	size_t at = 0;
	enum http1_chunk_rc rc = HTTP1_CHUNK_MORE;
	bool over = false;
	while (at < len && (rc == HTTP1_CHUNK_MORE || rc == HTTP1_CHUNK_DATA)) {
		size_t n = len - at < step ? len - at : step, used, dlen;
		rc = http1_chunked_feed(&ck, p + at, n, &used, &dlen);
		GW_ASSERT(used <= n && dlen <= used);
		GW_ASSERT(rc != HTTP1_CHUNK_MORE || used == n);
		if (rc == HTTP1_CHUNK_DATA && buf_add(&pieces, p + at + used - dlen, dlen) != GW_OK)
			over = true;
		at += used;
	}
	if (err == GW_OK && !over) {
		GW_ASSERT(rc == HTTP1_CHUNK_DONE && at == used_whole);
		GW_ASSERT(whole.len == pieces.len && memcmp(whole.p ? whole.p : "", pieces.p ? pieces.p : "", whole.len) == 0);
	}
	if (err == GW_EINVAL)
		GW_ASSERT(rc == HTTP1_CHUNK_BAD || over);
	buf_release(&whole);
	buf_release(&pieces);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *copy = gw_malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	size_t from = 0, end = h1_head_end(copy, size, &from);
	GW_ASSERT(end <= size);
	/* The head trickling in (as the server rescans from `from`): the end is
	 * found at the same place. */
	size_t step = size ? (size_t)data[0] % 7 + 1 : 1, inc_from = 0, inc_end = 0;
	for (size_t have = 0; !inc_end && have < size;) {
		have = size - have < step ? size : have + step;
		inc_end = h1_head_end(copy, have, &inc_from);
	}
	GW_ASSERT(inc_end == end);
	if (end) {
		/* Parsed with the full array and with h1_head_slots() entries (as
		 * the server does), the verdict is the same. */
		static struct h1_header full[H1_MAX_HEADERS];
		size_t slots = h1_head_slots(copy, end);
		struct h1_header *fit = gw_malloc(sizeof(*fit) * (slots ? slots : 1));
		char *copy2 = gw_malloc(end + 1);
		GW_ASSERT(fit && copy2);
		memcpy(copy2, copy, end + 1);
		struct h1_head h, h2;
		const char *why, *why2;
		int st = h1_parse_head(copy, end, &h, full, H1_MAX_HEADERS, &why);
		int st2 = h1_parse_head(copy2, end, &h2, fit, slots, &why2);
		GW_ASSERT(st == 0 || (st >= 400 && st <= 505 && why && *why));
		GW_ASSERT(st == st2 && strcmp(why, why2) == 0 && h.n_headers == h2.n_headers);
		if (st == 0)
			check_head(&h, copy, end);
		gw_free(copy2);
		gw_free(fit);
	}
	check_chunked((const char *)data + end, size - end, size ? (size_t)data[0] % 17 + 1 : 1);
	gw_free(copy);
	return 0;
}
