/* buf.c - bounded growable buffer. */
#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void buf_release(struct buf *b)
{
	gw_free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

enum gw_err buf_add_i64(struct buf *b, int64_t v)
{
	char d[24], *e = d + sizeof(d), *q = e;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do
		*--q = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--q = '-';
	return buf_add(b, q, (size_t)(e - q));
}

void buf_reset(struct buf *b)
{
	buf_truncate(b, 0);
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len > b->len)
		return;
	b->len = len;
	if (b->p)
		b->p[len] = '\0';
}

/* The first allocation: most buffers here (request lines and headers,
 * small JSON bodies and replies) end between 100 and 300 bytes, and at 64
 * they were grown two or three times each (65 reallocs a request). */
#define BUF_FIRST_CAP 256

enum gw_err buf_reserve(struct buf *b, size_t more)
{
	size_t need;
	if (__builtin_add_overflow(b->len, more, &need) || need > b->max)
		return GW_ELIMIT;
	if (need + 1 <= b->cap)
		return GW_OK;
	size_t cap = b->cap ? b->cap : BUF_FIRST_CAP;
	while (cap < need + 1)
		cap = cap > SIZE_MAX / 2 ? need + 1 : cap * 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	char *p = gw_realloc(b->p, cap);
	if (!p)
		return GW_ENOMEM;
	b->p = p;
	b->cap = cap;
	b->p[b->len] = '\0';
	return GW_OK;
}

enum gw_err buf_add(struct buf *b, const void *p, size_t n)
{
	enum gw_err err = buf_reserve(b, n);
	if (err)
		return err;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return GW_OK;
}

enum gw_err buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

enum gw_err buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

enum gw_err buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return GW_EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_add(b, small, (size_t)n);
	enum gw_err err = buf_reserve(b, (size_t)n);
	if (err)
		return err;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return GW_OK;
}

enum gw_err buf_cat(struct buf *b, ...)
{
	size_t start = b->len;
	enum gw_err err = GW_OK;
	va_list ap;
	va_start(ap, b);
	for (const char *s; !err && (s = va_arg(ap, const char *));)
		err = buf_adds(b, s);
	va_end(ap);
	if (err)
		buf_truncate(b, start);
	return err;
}

static char *json_escape_byte(char *o, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	*o++ = '\\';
	switch (c) {
	case '"': *o++ = '"'; break;
	case '\\': *o++ = '\\'; break;
	case '\n': *o++ = 'n'; break;
	case '\r': *o++ = 'r'; break;
	case '\t': *o++ = 't'; break;
	case '\b': *o++ = 'b'; break;
	case '\f': *o++ = 'f'; break;
	default:
		*o++ = 'u';
		*o++ = '0';
		*o++ = '0';
		*o++ = hex[c >> 4];
		*o++ = hex[c & 15];
	}
	return o;
}

enum gw_err buf_add_json_str(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		/* Reserve per slice (6 output bytes per input byte at worst) so a
		 * long string does not need 6x its size in headroom up front. */
		size_t slice = n - i < 1024 ? n - i : 1024;
		enum gw_err err = buf_reserve(b, slice * 6 + 6);
		if (err)
			return err;
		char *o = b->p + b->len;
		size_t end = i + slice;
		while (i < end) {
			unsigned char c = p[i];
			if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
				*o++ = (char)c;
				i++;
			} else if (c < 0x80) {
				o = json_escape_byte(o, c);
				i++;
			} else {
				size_t l = gw_utf8_len(p + i, n - i);
				if (l == 0) {
					memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
					o += 3;
					i++;
				} else {
					memcpy(o, p + i, l);
					o += l;
					i += l;
				}
			}
		}
		b->len = (size_t)(o - b->p);
		b->p[b->len] = '\0';
	}
	if (!b->p)
		return buf_reserve(b, 0);
	return GW_OK;
}

char *buf_take(struct buf *b, size_t *len)
{
	char *p = b->p;
	if (len)
		*len = b->len;
	if (!p)
		p = gw_strdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
