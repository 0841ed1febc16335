/* http1.h - the HTTP/1.1 framing (RFC 9110, 9112) that the server
 * (front/h1_parse.c) and the clients (net/h1c_parse.c, net/ws.c) share:
 * token characters, token lists and chunked bodies. Pure functions over
 * memory, no I/O. */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include "gw.h"

#include <stdint.h>

struct buf;

/* Whether c may stand in a token (a method, a header name). */
bool http1_is_tchar(unsigned char c);

/* Whether a[0..n) is lit, ignoring case (header names, tokens). */
bool http1_ieq(const char *a, size_t n, const char *lit);

/* Whether a request with this method carries a body even when it is empty
 * (POST, PUT, PATCH: they send Content-Length: 0). */
bool http1_method_has_body(const char *m);

/* Whether the comma-separated list v[0..n) holds token tok (any case). */
bool http1_has_token(const char *v, size_t n, const char *tok);

/* Incremental decoder of a chunked body, zero-copy: it hands back where the
 * data lies in the input and the caller moves it where it wants. */
struct http1_chunked {
	int state;
	uint64_t left;     /* bytes left in the current chunk */
	size_t meta;       /* bytes of sizes, extensions and trailers seen */
};

enum http1_chunk_rc {
	HTTP1_CHUNK_MORE,     /* all of the input consumed, the body goes on */
	HTTP1_CHUNK_DATA,     /* in[*used - *dlen .. *used) is body data */
	HTTP1_CHUNK_DONE,     /* the body ended at *used; what follows is the next message */
	HTTP1_CHUNK_BAD,
};

enum http1_chunk_rc http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len,
				       size_t *used, size_t *dlen);

/* Decodes a whole chunked body held in memory into out (whose max bounds
 * it); GW_EAGAIN when it is not complete, GW_ELIMIT when too large. */
enum gw_err http1_chunked_decode(const char *in, size_t len, size_t *used,
				 struct buf *out) GW_MUSTCHECK;

#endif
