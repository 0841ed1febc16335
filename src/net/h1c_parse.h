/* h1c_parse.h - the reading side of the HTTP/1.1 client (h1c.c): response
 * heads, as pure functions over bytes from upstream (chunked bodies are
 * util/http1.h's). */
#ifndef GW_H1C_PARSE_H
#define GW_H1C_PARSE_H

#include "gw.h"

#include <stdint.h>

/* A response head (status line, header lines, blank line) may not exceed
 * this. */
#define H1C_HEAD_MAX 65536

enum h1c_body {
	H1C_BODY_NONE,    /* HEAD, 1xx, 204, 304 */
	H1C_BODY_LENGTH,  /* Content-Length bytes */
	H1C_BODY_CHUNKED, /* Transfer-Encoding: chunked */
	H1C_BODY_CLOSE,   /* everything until the server closes */
};

struct h1c_head {
	int status;
	size_t len;           /* bytes of the head, its blank line included */
	size_t hdrs_off;      /* the header lines: "Name: value\r\n" each */
	size_t hdrs_len;
	enum h1c_body body;
	uint64_t content_length;
	bool keep_alive;      /* the connection can carry the next request */
};

/* Parses the response head at the start of p[0..n); head_req: the request
 * was HEAD, so no body follows whatever the headers say.
 *   GW_EAGAIN  not complete yet (and n < H1C_HEAD_MAX)
 *   GW_OK      *h filled; a 1xx other than 101 is an interim head the
 *              caller skips (h->len bytes) before the real one
 *   GW_EPROTO  malformed, too long, or framing we cannot trust
 *              (conflicting Content-Length, a coding other than chunked) */
enum gw_err h1c_parse_head(const char *p, size_t n, bool head_req, struct h1c_head *h) GW_MUSTCHECK;

/* "HTTP/1.x NNN[ reason]" in p[0..n), the line without its CRLF. */
enum gw_err h1c_status_line(const char *p, size_t n, int *status) GW_MUSTCHECK;

/* Splits the header line q..le (no CRLF) at its colon: name and value,
 * the value without surrounding blanks. GW_EPROTO without a colon or a
 * name. */
enum gw_err h1c_split_header(const char *q, const char *le, size_t *nl, const char **v,
			     size_t *vl) GW_MUSTCHECK;

#endif
