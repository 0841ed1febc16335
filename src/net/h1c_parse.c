/* h1c_parse.c - response heads (RFC 9112), strictly: a body whose framing
 * is unclear is refused rather than guessed, because a guess on a kept
 * connection would read one response as part of the next. Chunked bodies
 * are util/http1.h's, as the server's are. */
#include "net/h1c_parse.h"
#include "util/http1.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

enum gw_err h1c_status_line(const char *p, size_t n, int *status)
{
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[7]) ||
	    p[8] != ' ' || (n > 12 && p[12] != ' '))
		return GW_EPROTO;
	int st = 0;
	for (int i = 9; i < 12; i++) {
		if (!isdigit((unsigned char)p[i]))
			return GW_EPROTO;
		st = st * 10 + (p[i] - '0');
	}
	if (st < 100)
		return GW_EPROTO;
	*status = st;
	return GW_OK;
}

/* A line may hold no control byte but HTAB: a bare CR or LF inside one
 * would hide a header from us that another reader of the block sees. */
static bool clean_line(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

/* Content-Length: digits, or a list of the same digits ("5, 5"). */
static enum gw_err parse_length(const char *v, size_t n, uint64_t *out)
{
	bool have = false;
	uint64_t first = 0;
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		if (i == n)
			break;
		uint64_t x = 0;
		size_t d = 0;
		for (; i < n && isdigit((unsigned char)v[i]); i++, d++) {
			if (d == 18)
				return GW_EPROTO; /* far past any body we accept */
			x = x * 10 + (uint64_t)(v[i] - '0');
		}
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (d == 0 || (i < n && v[i] != ',') || (have && x != first))
			return GW_EPROTO;
		first = x;
		have = true;
	}
	if (!have)
		return GW_EPROTO;
	*out = first;
	return GW_OK;
}

struct seen {
	bool length, chunked, coding, close, keep_alive;
	uint64_t content_length;
};

enum gw_err h1c_split_header(const char *q, const char *le, size_t *nl, const char **v,
			     size_t *vl)
{
	const char *colon = memchr(q, ':', (size_t)(le - q));
	if (!colon || colon == q)
		return GW_EPROTO;
	const char *b = colon + 1, *e = le;
	while (b < e && (*b == ' ' || *b == '\t'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*nl = (size_t)(colon - q);
	*v = b;
	*vl = (size_t)(e - b);
	return GW_OK;
}

static enum gw_err header_line(const char *q, const char *le, struct seen *s)
{
	size_t nl, vl;
	const char *v;
	if (h1c_split_header(q, le, &nl, &v, &vl))
		return GW_EPROTO;
	for (size_t i = 0; i < nl; i++)
		if (!http1_is_tchar((unsigned char)q[i]))
			return GW_EPROTO; /* also refuses folded lines, which start with a space */
	if (http1_ieq(q, nl, "content-length")) {
		uint64_t x;
		if (parse_length(v, vl, &x) || (s->length && x != s->content_length))
			return GW_EPROTO;
		s->length = true;
		s->content_length = x;
	} else if (http1_ieq(q, nl, "transfer-encoding")) {
		/* chunked must come last, and nothing before it is asked for. */
		if (s->chunked || !http1_ieq(v, vl, "chunked"))
			s->coding = true;
		s->chunked = true;
	} else if (http1_ieq(q, nl, "connection")) {
		s->close = s->close || http1_has_token(v, vl, "close");
		s->keep_alive = s->keep_alive || http1_has_token(v, vl, "keep-alive");
	}
	return GW_OK;
}

static enum gw_err framing(struct h1c_head *h, const struct seen *s, bool head_req, bool http10)
{
	h->keep_alive = http10 ? s->keep_alive && !s->close : !s->close;
	/* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing. */
	if (s->coding || (http10 && s->chunked))
		return GW_EPROTO;
	if (head_req || h->status < 200 || h->status == 204 || h->status == 304) {
		h->body = H1C_BODY_NONE;
	} else if (s->chunked) {
		if (s->length)
			return GW_EPROTO; /* RFC 9112 6.3: a message to distrust */
		h->body = H1C_BODY_CHUNKED;
	} else if (s->length) {
		h->body = s->content_length ? H1C_BODY_LENGTH : H1C_BODY_NONE;
		h->content_length = s->content_length;
	} else {
		h->body = H1C_BODY_CLOSE;
		h->keep_alive = false;
	}
	return GW_OK;
}

/* The CR of the first CRLF in [p, end), or NULL. memchr per line costs a
 * fraction of memmem's setup, which was most of a head's parse. */
static const char *find_crlf(const char *p, const char *end)
{
	while (p < end) {
		const char *r = memchr(p, '\r', (size_t)(end - p));
		if (!r || r + 1 >= end)
			return NULL;
		if (r[1] == '\n')
			return r;
		p = r + 1;
	}
	return NULL;
}

/* One line of the head; the status line first. */
static enum gw_err head_line(const char *p, const char *q, const char *le, struct h1c_head *h,
			     struct seen *s)
{
	if (!clean_line(q, (size_t)(le - q)))
		return GW_EPROTO;
	if (q != p)
		return header_line(q, le, s);
	if (h1c_status_line(p, (size_t)(le - p), &h->status) || h->status == 101)
		return GW_EPROTO; /* no call here asks for an upgrade */
	h->hdrs_off = (size_t)(le + 2 - p);
	return GW_OK;
}

enum gw_err h1c_parse_head(const char *p, size_t n, bool head_req, struct h1c_head *h)
{
	memset(h, 0, sizeof(*h));
	const char *end = p + (n < H1C_HEAD_MAX ? n : H1C_HEAD_MAX);
	struct seen s = { 0 };
	enum gw_err bad = GW_OK; /* the first fault; told once the head is whole */
	for (const char *q = p;;) {
		const char *le = find_crlf(q, end);
		if (!le)
			return n >= H1C_HEAD_MAX ? GW_EPROTO : GW_EAGAIN;
		if (le == q && q != p) { /* the blank line */
			if (bad)
				return bad;
			h->hdrs_len = (size_t)(q - p) - h->hdrs_off;
			h->len = (size_t)(q + 2 - p);
			return framing(h, &s, head_req, p[7] == '0');
		}
		if (!bad)
			bad = head_line(p, q, le, h, &s);
		q = le + 2;
	}
}
