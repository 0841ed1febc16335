/* h1_parse.c - HTTP/1.1 request heads. */
#include "front/h1_parse.h"
#include "util/http1.h"

#include <string.h>
#include <strings.h>

size_t h1_head_end(const char *p, size_t len, size_t *from)
{
	size_t i = *from;
	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);
		if (!nl)
			break;
		i = (size_t)(nl - p);
		if (i + 1 >= len || (p[i + 1] == '\r' && i + 2 >= len)) {
			*from = i; /* undecided until more bytes come */
			return 0;
		}
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
		i++;
	}
	*from = len;
	return 0;
}

/* Cuts the line at *pp and returns it; *pp moves past its terminator.
 * NULL when a CR stands anywhere but before the LF. */
static char *next_line(char **pp, char *end)
{
	char *s = *pp;
	char *nl = memchr(s, '\n', (size_t)(end - s));
	if (!nl)
		return NULL;
	char *e = nl;
	if (e > s && e[-1] == '\r')
		e--;
	if (memchr(s, '\r', (size_t)(e - s)))
		return NULL;
	*e = '\0';
	*pp = nl + 1;
	return s;
}

static enum h1_method method_of(const char *m)
{
	static const struct {
		const char *s;
		enum h1_method m;
	} known[] = { { "GET", H1_GET }, { "HEAD", H1_HEAD }, { "POST", H1_POST }, { "OPTIONS", H1_OPTIONS } };
	for (size_t i = 0; i < GW_ARRAY_LEN(known); i++)
		if (strcmp(m, known[i].s) == 0)
			return known[i].m;
	return H1_OTHER;
}

static int parse_request_line(char *line, struct h1_head *h, const char **why)
{
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 || strchr(sp2 + 1, ' '))
		return *why = "malformed request line", 400;
	*sp1 = *sp2 = '\0';
	for (const char *c = line; *c; c++)
		if (!http1_is_tchar((unsigned char)*c))
			return *why = "malformed method", 400;
	for (const unsigned char *c = (const unsigned char *)sp1 + 1; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			return *why = "malformed request target", 400;
	const char *v = sp2 + 1;
	if (strncmp(v, "HTTP/", 5) != 0)
		return *why = "malformed HTTP version", 400;
	if (strcmp(v + 5, "1.1") == 0)
		h->minor = 1;
	else if (strcmp(v + 5, "1.0") == 0)
		h->minor = 0;
	else
		return *why = "HTTP version not supported", 505;
	h->method_s = line;
	h->method = method_of(line);
	h->target = sp1 + 1;
	return 0;
}

static int parse_header_line(char *line, struct h1_head *h, const char **why)
{
	if (*line == ' ' || *line == '\t')
		return *why = "folded header line", 400;
	char *colon = strchr(line, ':');
	if (!colon || colon == line)
		return *why = "malformed header line", 400;
	for (const char *c = line; c < colon; c++)
		if (!http1_is_tchar((unsigned char)*c))
			return *why = "malformed header name", 400;
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	char *e = v + strlen(v);
	for (const unsigned char *c = (const unsigned char *)v; c < (const unsigned char *)e; c++)
		if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
			return *why = "control character in a header", 400;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	if (h->n_headers == H1_MAX_HEADERS || h->n_headers == h->cap)
		return *why = "too many headers", 431;
	h->h[h->n_headers].name = line;
	h->h[h->n_headers].value = v;
	h->n_headers++;
	return 0;
}

static int parse_length(const char *v, int64_t *out)
{
	int64_t n = 0;
	if (!*v)
		return -1;
	for (; *v; v++) {
		if (*v < '0' || *v > '9' || n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*v - '0');
	}
	*out = n;
	return 0;
}

/* Framing and connection semantics from the headers. */
static int derive(struct h1_head *h, const char **why)
{
	int n_cl = 0, n_te = 0, n_host = 0;
	h->keep_alive = h->minor == 1;
	for (size_t i = 0; i < h->n_headers; i++) {
		const char *n = h->h[i].name, *v = h->h[i].value;
		if (strcasecmp(n, "Content-Length") == 0) {
			if (++n_cl > 1 || parse_length(v, &h->content_length) != 0)
				return *why = "more than one or an invalid Content-Length", 400;
		} else if (strcasecmp(n, "Transfer-Encoding") == 0) {
			if (++n_te > 1)
				return *why = "more than one Transfer-Encoding", 400;
			if (strcasecmp(v, "chunked") != 0)
				return *why = "only the chunked transfer coding is supported", 501;
			h->chunked = true;
		} else if (strcasecmp(n, "Connection") == 0) {
			if (http1_has_token(v, strlen(v), "close"))
				h->keep_alive = false;
			else if (http1_has_token(v, strlen(v), "keep-alive"))
				h->keep_alive = true;
		} else if (strcasecmp(n, "Expect") == 0) {
			if (strcasecmp(v, "100-continue") != 0)
				return *why = "unsupported expectation", 417;
			h->expect_continue = h->minor == 1;
		} else if (strcasecmp(n, "Host") == 0) {
			n_host++;
		}
	}
	if (h->chunked && (n_cl || h->minor == 0))
		return *why = "Transfer-Encoding with Content-Length or in HTTP/1.0", 400;
	if (n_host > 1 || (h->minor == 1 && n_host == 0))
		return *why = "an HTTP/1.1 request needs exactly one Host header", 400;
	return 0;
}

size_t h1_head_slots(const char *p, size_t len)
{
	size_t n = 0;
	for (const char *e = p + len; n < H1_MAX_HEADERS && (p = memchr(p, '\n', (size_t)(e - p))); p++)
		n++;
	return n;
}

void h1_head_reset(struct h1_head *h)
{
	memset(h, 0, sizeof(*h));
	h->target = "/";
	h->method_s = "";
	h->method = H1_OTHER;
	h->content_length = -1;
}

int h1_parse_head(char *p, size_t len, struct h1_head *h, struct h1_header *hdrs, size_t cap,
		  const char **why)
{
	h1_head_reset(h);
	h->h = hdrs;
	h->cap = cap;
	*why = "";
	char *end = p + len;
	if (memchr(p, '\0', len))
		return *why = "NUL byte in the head", 400;
	char *line = next_line(&p, end);
	if (!line)
		return *why = "malformed request line", 400;
	int st = parse_request_line(line, h, why);
	while (!st) {
		line = next_line(&p, end);
		if (!line)
			return *why = "malformed header line", 400;
		if (!*line)
			break;
		st = parse_header_line(line, h, why);
	}
	return st ? st : derive(h, why);
}

const char *h1_head_get(const struct h1_head *h, const char *name)
{
	for (size_t i = 0; i < h->n_headers; i++)
		if (strcasecmp(h->h[i].name, name) == 0)
			return h->h[i].value;
	return NULL;
}
