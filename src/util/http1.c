/* http1.c - HTTP/1.1 framing both sides share (see http1.h). */
#include "util/http1.h"
#include "util/buf.h"

#include <string.h>
#include <strings.h>

#define CHUNK_META_MAX 16384 /* sizes, extensions and trailers of one body */

bool http1_is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
	case '-': case '.': case '^': case '_': case '`': case '|': case '~':
		return true;
	default:
		return false;
	}
}

bool http1_ieq(const char *a, size_t n, const char *lit)
{
	return n == strlen(lit) && strncasecmp(a, lit, n) == 0;
}

bool http1_method_has_body(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

bool http1_has_token(const char *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && http1_ieq(v + s, e - s, tok))
			return true;
	}
	return false;
}

enum { C_SIZE0, C_SIZE, C_BWS, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_TLINE, C_TLINE_LF, C_END_LF };

/* One byte of everything but chunk data. */
static enum http1_chunk_rc meta_byte(struct http1_chunked *c, char ch)
{
	if (++c->meta > CHUNK_META_MAX)
		return HTTP1_CHUNK_BAD;
	int hv = gw_hexval(ch);
	switch (c->state) {
	case C_SIZE0:
	case C_SIZE:
		if (hv >= 0) {
			if (c->left >> 59)
				return HTTP1_CHUNK_BAD;
			c->left = c->left * 16 + (uint64_t)hv;
			c->state = C_SIZE;
		} else if (c->state == C_SIZE0) {
			return HTTP1_CHUNK_BAD;
		} else if (ch == ';') {
			c->state = C_EXT;
		} else if (ch == ' ' || ch == '\t') {
			c->state = C_BWS;
		} else if (ch == '\r') {
			c->state = C_SIZE_LF;
		} else if (ch == '\n') {
			c->state = c->left ? C_DATA : C_TRAILER;
		} else {
			return HTTP1_CHUNK_BAD;
		}
		return HTTP1_CHUNK_MORE;
	case C_BWS: /* blanks after the size: only before an extension or the line end */
		if (ch == ';')
			c->state = C_EXT;
		else if (ch == '\r')
			c->state = C_SIZE_LF;
		else if (ch == '\n')
			c->state = c->left ? C_DATA : C_TRAILER;
		else if (ch != ' ' && ch != '\t')
			return HTTP1_CHUNK_BAD;
		return HTTP1_CHUNK_MORE;
	case C_EXT:
		if (ch == '\n')
			c->state = c->left ? C_DATA : C_TRAILER;
		else if (ch == '\r')
			c->state = C_SIZE_LF;
		else if (ch == '\0')
			return HTTP1_CHUNK_BAD;
		return HTTP1_CHUNK_MORE;
	case C_SIZE_LF:
		if (ch != '\n')
			return HTTP1_CHUNK_BAD;
		c->state = c->left ? C_DATA : C_TRAILER;
		return HTTP1_CHUNK_MORE;
	case C_DATA_CR:
		if (ch == '\r')
			return c->state = C_DATA_LF, HTTP1_CHUNK_MORE;
		if (ch == '\n')
			return c->state = C_SIZE0, HTTP1_CHUNK_MORE;
		return HTTP1_CHUNK_BAD;
	case C_DATA_LF:
		if (ch != '\n')
			return HTTP1_CHUNK_BAD;
		return c->state = C_SIZE0, HTTP1_CHUNK_MORE;
	case C_TRAILER:
		if (ch == '\n')
			return HTTP1_CHUNK_DONE;
		c->state = ch == '\r' ? C_END_LF : C_TLINE;
		return HTTP1_CHUNK_MORE;
	case C_TLINE:
		if (ch == '\n')
			c->state = C_TRAILER;
		else if (ch == '\r')
			c->state = C_TLINE_LF;
		else if (ch == '\0')
			return HTTP1_CHUNK_BAD;
		return HTTP1_CHUNK_MORE;
	case C_TLINE_LF:
		if (ch != '\n')
			return HTTP1_CHUNK_BAD;
		return c->state = C_TRAILER, HTTP1_CHUNK_MORE;
	case C_END_LF:
		return ch == '\n' ? HTTP1_CHUNK_DONE : HTTP1_CHUNK_BAD;
	}
	return HTTP1_CHUNK_BAD;
}

enum http1_chunk_rc http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, size_t *used,
				 size_t *dlen)
{
	size_t i = 0;
	enum http1_chunk_rc rc = HTTP1_CHUNK_MORE;
	*dlen = 0;
	while (i < len && rc == HTTP1_CHUNK_MORE) {
		if (c->state == C_DATA) {
			size_t n = len - i < c->left ? len - i : (size_t)c->left;
			c->left -= n;
			if (!c->left)
				c->state = C_DATA_CR;
			*dlen = n;
			*used = i + n;
			return HTTP1_CHUNK_DATA;
		}
		rc = meta_byte(c, in[i++]);
	}
	*used = i;
	return rc;
}

enum gw_err http1_chunked_decode(const char *in, size_t len, size_t *used, struct buf *out)
{
	struct http1_chunked c = { 0 };
	size_t at = 0;
	for (;;) {
		size_t u, d;
		enum http1_chunk_rc rc = http1_chunked_feed(&c, in + at, len - at, &u, &d);
		at += u;
		*used = at;
		if (rc == HTTP1_CHUNK_DONE)
			return GW_OK;
		if (rc == HTTP1_CHUNK_BAD)
			return GW_EINVAL;
		if (rc == HTTP1_CHUNK_MORE)
			return GW_EAGAIN;
		enum gw_err err = buf_add(out, in + at - d, d);
		if (err)
			return err;
	}
}
