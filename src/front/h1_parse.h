/* h1_parse.h - HTTP/1.1 request heads (RFC 9112) from client bytes; chunked
 * bodies are util/http1.h's.
 *
 * Pure functions over memory, no I/O, so the fuzzer can drive them. The
 * rules are strict where leniency lets a request be read two ways
 * (smuggling): one Content-Length, no Content-Length with chunked, no
 * whitespace before a colon, no folded lines, no bare CR. */
#ifndef GW_H1_PARSE_H
#define GW_H1_PARSE_H

#include "gw.h"

#define H1_MAX_HEADERS 100

enum h1_method { H1_GET, H1_HEAD, H1_POST, H1_OPTIONS, H1_OTHER };

struct h1_header {
	const char *name;  /* NUL-terminated, inside the parsed block */
	const char *value; /* NUL-terminated, surrounding blanks removed */
};

struct h1_head {
	enum h1_method method;
	const char *method_s;
	const char *target;      /* request-target as sent */
	int minor;               /* HTTP/1.minor */
	struct h1_header *h;     /* the caller's storage, n_headers used */
	size_t n_headers;
	size_t cap;              /* entries in h */
	int64_t content_length;  /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool expect_continue;
};

/* A head with nothing parsed: target "/", method H1_OTHER named "", no
 * Content-Length. h1_parse_head starts from it, and so does a request
 * refused before its head was read. */
void h1_head_reset(struct h1_head *h);

/* Length of the head at the start of p (request line up to and including the
 * empty line), 0 when the empty line has not arrived yet. from is where the
 * previous call stopped looking, so a head trickling in is scanned once. */
size_t h1_head_end(const char *p, size_t len, size_t *from);

/* Parses a complete head in place (terminators become NULs) and its headers
 * into hdrs (cap entries; h1_head_slots() of the head is always enough).
 * Returns 0, or the HTTP status to refuse it with and a static reason in
 * *why. */
int h1_parse_head(char *p, size_t len, struct h1_head *h, struct h1_header *hdrs, size_t cap,
		  const char **why);

/* How many header entries the head p (len bytes) can need: its line count,
 * at most H1_MAX_HEADERS (one more header is refused anyway). Lets a request
 * hold exactly its headers instead of H1_MAX_HEADERS of them. */
size_t h1_head_slots(const char *p, size_t len);

/* The value of header name (case-insensitive), NULL when absent. */
const char *h1_head_get(const struct h1_head *h, const char *name);

#endif
