/* jscan.c - strict JSON validation and walking without allocation.
 *
 * Every rule here mirrors jansson 2.14's load.c with flags 0 (see
 * jscan.h); tests/fuzz/fuzz_frames_diff.c checks the two agree. The
 * validator is a loop over three states (a value, a key, after a value)
 * with one bit per open container instead of recursion. */
#include "provider/jscan.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char uchar;

/* ---- strings --------------------------------------------------------- */

enum { C_PLAIN, C_QUOTE, C_BSLASH, C_CTRL, C_HIGH };

#define R4(c) c, c, c, c
#define R16(c) R4(c), R4(c), R4(c), R4(c)

/* How a byte inside a string is handled; DEL (0x7f) is plain for jansson. */
static const uchar str_class[256] = {
	R16(C_CTRL), R16(C_CTRL),
	C_PLAIN, C_PLAIN, C_QUOTE, C_PLAIN, R4(C_PLAIN), R4(C_PLAIN), R4(C_PLAIN),
	R16(C_PLAIN), R16(C_PLAIN),
	R4(C_PLAIN), R4(C_PLAIN), R4(C_PLAIN), C_BSLASH, C_PLAIN, C_PLAIN, C_PLAIN,
	R16(C_PLAIN), R16(C_PLAIN),
	R16(C_HIGH), R16(C_HIGH), R16(C_HIGH), R16(C_HIGH),
	R16(C_HIGH), R16(C_HIGH), R16(C_HIGH), R16(C_HIGH),
};

/* The byte each one-letter escape stands for, 0 for the others. */
static const uchar simple_esc[256] = {
	['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b',
	['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

/* Eight bytes at a time over the plain runs of strings (SWAR): the
 * per-byte loops below only see the bytes around something special. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static uint64_t load8(const void *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
	return x;
}

/* Nonzero iff some byte of x is below n (n <= 0x80). */
static uint64_t any_below(uint64_t x, uint64_t n)
{
	return (x - ONES * n) & ~x & HIGHS;
}

/* Nonzero iff some byte of x equals c. */
static uint64_t any_eq(uint64_t x, uint64_t c)
{
	return any_below(x ^ (ONES * c), 1);
}

/* Nonzero iff one of the 8 bytes is not C_PLAIN. */
static uint64_t special8(uint64_t x)
{
	return any_below(x, 0x20) | any_eq(x, '"') | any_eq(x, '\\') | (x & HIGHS);
}

/* How many bytes of a chunk precede the first one flagged in mask (not 0).
 * The lowest flag of the masks above is exact (a borrow only runs upward
 * from a flagged byte), and the lowest byte is the first in memory on a
 * little-endian machine; elsewhere, the byte loops find it. */
static size_t first_flagged(uint64_t mask)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (size_t)__builtin_ctzll(mask) / 8;
#else
	(void)mask;
	return 0;
#endif
}

/* The first byte at or after p that is not C_PLAIN, or end. */
static const uchar *skip_plain(const uchar *p, const uchar *end)
{
	while (end - p >= 8) {
		uint64_t m = special8(load8(p));
		if (m) {
			p += first_flagged(m);
			break;
		}
		p += 8;
	}
	while (p < end && str_class[*p] == C_PLAIN)
		p++;
	return p;
}

/* The four hex digits at p as a number, -1 if they are not four hex digits. */
static long hex4(const uchar *p, const uchar *end)
{
	if (end - p < 4)
		return -1;
	long v = 0;
	for (int i = 0; i < 4; i++) {
		int h = gw_hexval(p[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* p is just past a backslash: returns the end of the escape or NULL. A
 * high surrogate must be followed by an escaped low one; a lone low
 * surrogate and \u0000 are refused, as jansson does. */
static const uchar *scan_escape(const uchar *p, const uchar *end)
{
	if (p >= end)
		return NULL;
	if (simple_esc[*p])
		return p + 1;
	if (*p != 'u')
		return NULL;
	long u = hex4(p + 1, end);
	if (u <= 0 || (u >= 0xdc00 && u <= 0xdfff))
		return NULL;
	p += 5;
	if (u < 0xd800 || u > 0xdbff)
		return p;
	if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
		return NULL;
	long lo = hex4(p + 2, end);
	if (lo < 0xdc00 || lo > 0xdfff)
		return NULL;
	return p + 6;
}

/* p is just past an opening quote: returns the closing quote or NULL. */
static const uchar *scan_string(const uchar *p, const uchar *end, bool *esc)
{
	for (;;) {
		p = skip_plain(p, end);
		if (p >= end)
			return NULL;
		size_t l;
		switch (str_class[*p]) {
		case C_QUOTE:
			return p;
		case C_BSLASH:
			*esc = true;
			p = scan_escape(p + 1, end);
			if (!p)
				return NULL;
			break;
		case C_HIGH:
			l = gw_utf8_len(p, (size_t)(end - p));
			if (!l)
				return NULL;
			p += l;
			break;
		default:
			return NULL; /* a raw control character */
		}
	}
}

/* ---- numbers --------------------------------------------------------- */

static bool is_digit(uchar c)
{
	return c >= '0' && c <= '9';
}

static const uchar *digits(const uchar *p, const uchar *end)
{
	while (p < end && is_digit(*p))
		p++;
	return p;
}

/* jansson reads integers with strtoll and refuses ERANGE. The digits have
 * no leading zero (except "0" itself). */
static bool int_fits(const uchar *d, size_t n, bool neg)
{
	if (n != 19)
		return n < 19;
	return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

/* jansson's jsonp_strtod on a copy: refused only if strtod overflows. */
static enum jscan_res strtod_check(const uchar *s, size_t n)
{
	char tmp[257];
	if (n >= sizeof(tmp))
		return JSCAN_EUNSURE;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	char *dot = strchr(tmp, '.'), point = localeconv()->decimal_point[0];
	if (dot && point)
		*dot = point;
	errno = 0;
	double v = strtod(tmp, NULL);
	return (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE ? JSCAN_EINVALID : JSCAN_OK;
}

/* A real overflows a double iff it rounds past DBL_MAX (~1.8e308). With
 * the value written 0.d1d2... x 10^mag (d1 != 0), mag <= 308 never does
 * and mag >= 310 always does; only mag == 309 needs strtod. */
static enum jscan_res real_check(const uchar *s, const uchar *end, const uchar *ip, size_t ilen,
				 const uchar *fp, size_t flen, long long ex)
{
	long long mag;
	if (ilen > 1 || ip[0] != '0') {
		mag = (long long)ilen;
	} else {
		size_t z = 0;
		while (z < flen && fp[z] == '0')
			z++;
		if (z == flen)
			return JSCAN_OK; /* zero, whatever the exponent */
		mag = -(long long)z;
	}
	mag += ex;
	if (mag <= 308)
		return JSCAN_OK;
	if (mag >= 310)
		return JSCAN_EINVALID;
	return strtod_check(s, (size_t)(end - s));
}

/* The exponent's digits, saturated far beyond any length that could
 * cancel it out. */
static const uchar *exponent(const uchar *p, const uchar *end, long long *ex)
{
	bool neg = false;
	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	if (p >= end || !is_digit(*p))
		return NULL;
	long long v = 0;
	for (; p < end && is_digit(*p); p++)
		if (v < 1000000000000000LL)
			v = v * 10 + (*p - '0');
	*ex = neg ? -v : v;
	return p;
}

/* Returns the end of the number at p, or NULL with *res set. */
static const uchar *scan_number(const uchar *p, const uchar *end, enum jscan_res *res)
{
	const uchar *s = p, *fp = NULL;
	bool neg = *p == '-', real = false;
	long long ex = 0;
	*res = JSCAN_EINVALID;
	if (neg)
		p++;
	const uchar *ip = p;
	if (p >= end || !is_digit(*p))
		return NULL;
	p = *p == '0' ? p + 1 : digits(p, end);
	if (p < end && is_digit(*p))
		return NULL; /* a leading zero */
	size_t ilen = (size_t)(p - ip), flen = 0;
	if (p < end && *p == '.') {
		fp = ++p;
		p = digits(p, end);
		flen = (size_t)(p - fp);
		if (!flen)
			return NULL;
		real = true;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p = exponent(p + 1, end, &ex);
		if (!p)
			return NULL;
		real = true;
	}
	if (!real) {
		*res = JSCAN_OK;
		return int_fits(ip, ilen, neg) ? p : NULL;
	}
	*res = real_check(s, p, ip, ilen, fp, flen, ex);
	return *res == JSCAN_OK ? p : NULL;
}

/* ---- the validator --------------------------------------------------- */

enum step { ST_VALUE, ST_KEY, ST_AFTER, ST_DONE, ST_FAIL };

struct scan {
	const uchar *p, *end;
	size_t depth;           /* containers open */
	bool esc;               /* the last string scanned had an escape */
	enum jscan_res res;     /* why ST_FAIL */
	const uchar *vstart;    /* the value of the current root member */
	const uchar *root_end;  /* just past the root value */
	struct jscan_val key;   /* and its key */
	jscan_member_fn *fn;
	void *arg;
	uchar arr[JSCAN_MAX_DEPTH / 8]; /* bit set: that container is an array */
};

static const uchar *skip_ws(const uchar *p, const uchar *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static bool in_array(const struct scan *s)
{
	size_t d = s->depth - 1;
	return s->arr[d / 8] & (1u << (d % 8));
}

static enum step open_container(struct scan *s, bool array)
{
	size_t d = s->depth++;
	if (array)
		s->arr[d / 8] |= (uchar)(1u << (d % 8));
	else
		s->arr[d / 8] &= (uchar)~(1u << (d % 8));
	s->p = skip_ws(s->p + 1, s->end);
	if (s->p < s->end && *s->p == (array ? ']' : '}')) {
		s->p++;
		s->depth--;
		return ST_AFTER;
	}
	return array ? ST_VALUE : ST_KEY;
}

static enum step literal(struct scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return ST_FAIL;
	s->p += n;
	return ST_AFTER;
}

/* s->p is at the first byte of a value (or the end); s->depth containers
 * hold it, and jansson counts the value itself as one more level. */
static enum step step_value(struct scan *s)
{
	const uchar *p = s->p;
	if (p >= s->end || s->depth >= JSCAN_MAX_DEPTH)
		return ST_FAIL;
	if (s->depth == 1)
		s->vstart = p;
	switch (*p) {
	case '{':
		return open_container(s, false);
	case '[':
		return open_container(s, true);
	case '"':
		s->esc = false;
		p = scan_string(p + 1, s->end, &s->esc);
		if (!p)
			return ST_FAIL;
		s->p = p + 1;
		return ST_AFTER;
	case 't':
		return literal(s, "true", 4);
	case 'f':
		return literal(s, "false", 5);
	case 'n':
		return literal(s, "null", 4);
	default:
		if (*p != '-' && !is_digit(*p))
			return ST_FAIL;
		p = scan_number(p, s->end, &s->res);
		if (!p)
			return ST_FAIL;
		s->p = p;
		return ST_AFTER;
	}
}

/* A key, its colon and the whitespace up to its value. Only keys of the
 * root object are kept, for the member callback. */
static enum step step_key(struct scan *s)
{
	const uchar *p = s->p;
	struct jscan_val key = { .kind = JSCAN_STRING, .esc = false };
	if (p >= s->end || *p != '"')
		return ST_FAIL;
	key.p = (const char *)p + 1;
	p = scan_string(p + 1, s->end, &key.esc);
	if (!p)
		return ST_FAIL;
	key.n = (size_t)((const char *)p - key.p);
	if (s->depth == 1)
		s->key = key;
	p = skip_ws(p + 1, s->end);
	if (p >= s->end || *p != ':')
		return ST_FAIL;
	s->p = skip_ws(p + 1, s->end);
	return ST_VALUE;
}

static enum jscan_kind kind_of(uchar c)
{
	switch (c) {
	case '{': return JSCAN_OBJECT;
	case '[': return JSCAN_ARRAY;
	case '"': return JSCAN_STRING;
	case 't': return JSCAN_TRUE;
	case 'f': return JSCAN_FALSE;
	case 'n': return JSCAN_NULL;
	default: return JSCAN_NUMBER;
	}
}

/* A value of text [start, end); a string's quotes are left out. */
static void make_val(struct jscan_val *v, const uchar *start, const uchar *end, bool esc)
{
	v->kind = kind_of(*start);
	v->esc = false;
	v->p = (const char *)start;
	v->n = (size_t)(end - start);
	if (v->kind == JSCAN_STRING) {
		v->esc = esc;
		v->p++;
		v->n -= 2;
	}
}

static void emit_member(struct scan *s)
{
	struct jscan_val v;
	make_val(&v, s->vstart, s->p, s->esc);
	s->fn(s->arg, &s->key, &v);
}

/* A value ended at s->p: a comma, or the end of its container. */
static enum step step_after(struct scan *s)
{
	if (s->depth == 0) {
		s->root_end = s->p;
		return skip_ws(s->p, s->end) == s->end ? ST_DONE : ST_FAIL;
	}
	bool array = in_array(s);
	if (s->depth == 1 && s->fn && !array)
		emit_member(s);
	const uchar *p = skip_ws(s->p, s->end);
	if (p >= s->end)
		return ST_FAIL;
	if (*p == ',') {
		s->p = skip_ws(p + 1, s->end);
		return array ? ST_VALUE : ST_KEY;
	}
	if (*p != (array ? ']' : '}'))
		return ST_FAIL;
	s->p = p + 1;
	s->depth--;
	return ST_AFTER;
}

enum jscan_res jscan_parse(const char *text, size_t n, jscan_member_fn *fn, void *arg,
			   struct jscan_val *root)
{
	struct scan s;
	memset(&s, 0, offsetof(struct scan, arr)); /* the bits are set as containers open */
	s.end = (const uchar *)text + n;
	s.p = skip_ws((const uchar *)text, s.end);
	s.res = JSCAN_EINVALID;
	s.fn = fn;
	s.arg = arg;
	const uchar *start = s.p;
	/* jansson without JSON_DECODE_ANY takes only an object or array. */
	if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
		return JSCAN_EINVALID;
	enum step st = ST_VALUE;
	while (st != ST_DONE) {
		if (st == ST_VALUE)
			st = step_value(&s);
		else if (st == ST_KEY)
			st = step_key(&s);
		else if (st == ST_AFTER)
			st = step_after(&s);
		else
			return s.res == JSCAN_EUNSURE ? JSCAN_EUNSURE : JSCAN_EINVALID;
	}
	make_val(root, start, s.root_end, false);
	return JSCAN_OK;
}

/* ---- walking validated text ------------------------------------------ */

/* p is just past an opening quote of a validated string: its closing
 * quote, the first one after an even run of backslashes. */
static const char *raw_string_end(const char *p, const char *end, bool *esc)
{
	const char *start = p, *q;
	for (;; p = q + 1) {
		q = memchr(p, '"', (size_t)(end - p));
		if (!q)
			return end;
		size_t bs = 0;
		while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\')
			bs++;
		if (bs % 2 == 0)
			break;
	}
	if (memchr(start, '\\', (size_t)(q - start)))
		*esc = true;
	return q;
}

/* The end of the validated value at p. */
static const char *raw_value_end(const char *p, const char *end, bool *esc)
{
	if (*p == '"')
		return raw_string_end(p + 1, end, esc) + 1;
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
		       *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	size_t depth = 0;
	bool ignored = false;
	for (; p < end; p++) {
		if (*p == '"')
			p = raw_string_end(p + 1, end, &ignored);
		else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
	}
	return end;
}

void jscan_iter_init(struct jscan_iter *it, const struct jscan_val *obj)
{
	it->p = it->end = NULL;
	if (obj->kind == JSCAN_OBJECT && obj->n >= 2) {
		it->p = obj->p + 1;
		it->end = obj->p + obj->n - 1;
	}
}

static const char *skip_ws_c(const char *p, const char *end)
{
	return (const char *)skip_ws((const uchar *)p, (const uchar *)end);
}

bool jscan_iter_next(struct jscan_iter *it, struct jscan_val *key, struct jscan_val *val)
{
	const char *p = skip_ws_c(it->p, it->end), *end = it->end;
	if (p < end && *p == ',')
		p = skip_ws_c(p + 1, end);
	if (p >= end || *p != '"')
		return false;
	key->kind = JSCAN_STRING;
	key->esc = false;
	key->p = p + 1;
	p = raw_string_end(p + 1, end, &key->esc);
	key->n = (size_t)(p - key->p);
	p = skip_ws_c(p + 1, end);
	p = skip_ws_c(p + 1, end); /* past the colon */
	if (p >= end)
		return false;
	bool esc = false;
	const char *q = raw_value_end(p, end, &esc);
	make_val(val, (const uchar *)p, (const uchar *)q, esc);
	it->p = q;
	return true;
}

struct jscan_val jscan_get(const struct jscan_val *obj, const char *name)
{
	struct jscan_val found = { .kind = JSCAN_NONE }, key, val;
	struct jscan_iter it;
	size_t n = strlen(name);
	jscan_iter_init(&it, obj);
	while (jscan_iter_next(&it, &key, &val))
		if (jscan_str_eq(&key, name, n))
			found = val;
	return found;
}

/* ---- decoding -------------------------------------------------------- */

static size_t utf8_put(unsigned long u, char *out)
{
	if (u < 0x80) {
		out[0] = (char)u;
		return 1;
	}
	if (u < 0x800) {
		out[0] = (char)(0xc0 | (u >> 6));
		out[1] = (char)(0x80 | (u & 0x3f));
		return 2;
	}
	if (u < 0x10000) {
		out[0] = (char)(0xe0 | (u >> 12));
		out[1] = (char)(0x80 | ((u >> 6) & 0x3f));
		out[2] = (char)(0x80 | (u & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (u >> 18));
	out[1] = (char)(0x80 | ((u >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((u >> 6) & 0x3f));
	out[3] = (char)(0x80 | (u & 0x3f));
	return 4;
}

/* Decodes the validated escape at *pp (a backslash) into out[0..4). */
static size_t unescape(const char **pp, const char *end, char *out)
{
	const uchar *p = (const uchar *)*pp + 1;
	if (*p != 'u') {
		*pp += 2;
		out[0] = (char)simple_esc[*p];
		return 1;
	}
	unsigned long u = (unsigned long)hex4(p + 1, (const uchar *)end);
	*pp += 6;
	if (u >= 0xd800 && u <= 0xdbff) {
		unsigned long lo = (unsigned long)hex4(p + 7, (const uchar *)end);
		u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		*pp += 6;
	}
	return utf8_put(u, out);
}

bool jscan_str_eq_esc(const struct jscan_val *v, const char *lit, size_t n)
{
	if (v->kind != JSCAN_STRING || v->n < n)
		return false; /* unescaping only shortens */
	const char *p = v->p, *end = v->p + v->n;
	size_t i = 0;
	while (p < end) {
		char u[4];
		size_t k = 1;
		if (*p == '\\')
			k = unescape(&p, end, u);
		else
			u[0] = *p++;
		if (i + k > n || memcmp(lit + i, u, k) != 0)
			return false;
		i += k;
	}
	return i == n;
}

size_t jscan_str_decode(const struct jscan_val *v, char *out)
{
	if (!v->esc) {
		memmove(out, v->p, v->n);
		return v->n;
	}
	/* Runs between escapes are short in JSON-in-JSON: a loop beats memchr
	 * and memmove there. */
	const char *p = v->p, *end = v->p + v->n;
	char *w = out;
	while (p < end) {
		if (end - p >= 8) {
			/* x is loaded before it is stored, and stored no further
			 * than it was loaded from: fine when decoding in place. */
			uint64_t x = load8(p), m = any_eq(x, '\\');
			if (!m) {
				memcpy(w, &x, 8);
				w += 8;
				p += 8;
				continue;
			}
			for (size_t k = first_flagged(m); k; k--)
				*w++ = *p++;
		}
		if (*p != '\\') {
			*w++ = *p++;
			continue;
		}
		char u[4];
		size_t k = unescape(&p, end, u);
		memcpy(w, u, k);
		w += k;
	}
	return (size_t)(w - out);
}

bool jscan_str_scan(const char *s, size_t n, size_t *quote_at, bool *esc)
{
	*esc = false;
	const uchar *q = scan_string((const uchar *)s, (const uchar *)s + n, esc);
	if (!q)
		return false;
	*quote_at = (size_t)(q - (const uchar *)s);
	return true;
}

/* scan_string and jscan_str_decode in one pass, for a string read once. */
bool jscan_str_take(const char *s, size_t n, char *out, size_t *out_len, size_t *quote_at)
{
	const uchar *p = (const uchar *)s, *end = p + n;
	char *w = out;
	for (;;) {
		/* Copy the plain run as skip_plain finds it, 8 bytes at a time.
		 * All 8 are stored even when fewer are plain: w trails p, so the
		 * store stays inside out, and the extra bytes get overwritten. */
		while (end - p >= 8) {
			uint64_t x = load8(p), m = special8(x);
			memcpy(w, &x, 8);
			if (m) {
				size_t k = first_flagged(m);
				w += k;
				p += k;
				break;
			}
			w += 8;
			p += 8;
		}
		while (p < end && str_class[*p] == C_PLAIN)
			*w++ = (char)*p++;
		if (p >= end)
			return false;
		size_t l;
		switch (str_class[*p]) {
		case C_QUOTE:
			*out_len = (size_t)(w - out);
			*quote_at = (size_t)(p - (const uchar *)s);
			return true;
		case C_BSLASH: {
			/* JSON inside JSON is mostly \" and \n: those inline. */
			if (end - p >= 2 && simple_esc[p[1]]) {
				*w++ = (char)simple_esc[p[1]];
				p += 2;
				break;
			}
			if (!scan_escape(p + 1, end))
				return false;
			const char *e = (const char *)p;
			w += unescape(&e, (const char *)end, w);
			p = (const uchar *)e;
			break;
		}
		case C_HIGH:
			l = gw_utf8_len(p, (size_t)(end - p));
			if (!l)
				return false;
			memcpy(w, p, l);
			w += l;
			p += l;
			break;
		default:
			return false; /* a raw control character */
		}
	}
}
