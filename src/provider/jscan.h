/* jscan.h - a strict JSON validator and walker that never allocates.
 *
 * It exists for the per-piece hot path (frame_parse): it accepts exactly
 * the texts that jansson 2.14's json_loadb(s, n, 0, ...) accepts, so a text
 * it validates can be read without jansson and give the same values:
 * - the root is an object or an array, with only whitespace around it;
 * - strict UTF-8 everywhere (no overlong forms, surrogates or > U+10FFFF);
 * - strings hold no raw control characters, escapes are the RFC 8259 ones,
 *   \uXXXX pairs must be proper surrogate pairs and \u0000 is refused;
 * - numbers follow RFC 8259; integers must fit int64 and reals must not
 *   overflow a double (underflow is fine), as jansson refuses those;
 * - a value nested deeper than JSCAN_MAX_DEPTH (containers included) is
 *   refused like jansson's JSON_PARSER_MAX_DEPTH.
 * Duplicate keys are allowed; jansson keeps the last one, so walkers that
 * look a key up must keep the last match too. */
#ifndef GW_PROVIDER_JSCAN_H
#define GW_PROVIDER_JSCAN_H

#include "gw.h"

#include <string.h>

#define JSCAN_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

enum jscan_kind {
	JSCAN_NONE = 0, /* absent (a lookup that found nothing) */
	JSCAN_OBJECT,
	JSCAN_ARRAY,
	JSCAN_STRING,
	JSCAN_NUMBER,
	JSCAN_TRUE,
	JSCAN_FALSE,
	JSCAN_NULL,
};

/* A value inside validated text. For a string, p and n cover the raw bytes
 * between the quotes and esc says whether any of them is a backslash (if
 * not, the raw bytes are the value). For anything else, p and n cover the
 * value's whole text ('{' to '}' for an object). */
struct jscan_val {
	enum jscan_kind kind;
	bool esc;
	const char *p;
	size_t n;
};

enum jscan_res {
	JSCAN_OK = 0,
	JSCAN_EINVALID, /* jansson refuses this text too */
	JSCAN_EUNSURE,  /* a real of over 256 bytes right at the double overflow
			 * bound: not decided here, ask jansson */
};

/* Called for each member of the root object, in text order, once the
 * member's value is validated (the rest of the text may still be invalid:
 * act on what was seen only once jscan_parse returns JSCAN_OK). */
typedef void jscan_member_fn(void *arg, const struct jscan_val *key, const struct jscan_val *val);

/* Validates s[0..n) as one JSON text (see above). On JSCAN_OK, *root is the
 * root value, and fn (may be NULL) was called for each member if the root
 * is an object. */
enum jscan_res jscan_parse(const char *s, size_t n, jscan_member_fn *fn, void *arg,
			   struct jscan_val *root) GW_MUSTCHECK;

/* Walks the members of an object value that jscan_parse validated (the
 * text must not have changed since). */
struct jscan_iter {
	const char *p, *end;
};

void jscan_iter_init(struct jscan_iter *it, const struct jscan_val *obj);
/* Next member, false at the end. */
bool jscan_iter_next(struct jscan_iter *it, struct jscan_val *key, struct jscan_val *val);
/* The last member of obj named name (plain ASCII, no NUL), or kind
 * JSCAN_NONE if obj is not an object or has no such member. */
struct jscan_val jscan_get(const struct jscan_val *obj, const char *name);

/* Whether a validated string value decodes to lit[0..n). Inline because
 * key lookups call it for every member: an unescaped string is a length
 * check and a memcmp of a constant size. */
bool jscan_str_eq_esc(const struct jscan_val *v, const char *lit, size_t n);

static inline bool jscan_str_eq(const struct jscan_val *v, const char *lit, size_t n)
{
	if (v->kind != JSCAN_STRING)
		return false;
	if (!v->esc)
		return v->n == n && memcmp(v->p, lit, n) == 0;
	return jscan_str_eq_esc(v, lit, n);
}
/* Decodes a validated string value into out, which has room for v->n bytes
 * and may be v->p itself (decoding in place). Returns the decoded length
 * (never more than v->n; never holds a NUL). */
size_t jscan_str_decode(const struct jscan_val *v, char *out);

/* Validates, as jscan_parse would, the JSON string whose body starts at s
 * (just past its opening quote) and ends before s + n. True if valid: then
 * *quote_at is the offset of its closing quote and *esc whether it holds
 * an escape. */
bool jscan_str_scan(const char *s, size_t n, size_t *quote_at, bool *esc) GW_MUSTCHECK;

/* Validates and decodes, in one pass, the JSON string whose body starts at
 * s (just past its opening quote) and ends before s + n. out has room for
 * n bytes and does not overlap s. True if the string is one jscan_parse would
 * accept: then *out_len is its decoded length and *quote_at the offset of
 * its closing quote. On false, out holds garbage. */
bool jscan_str_take(const char *s, size_t n, char *out, size_t *out_len,
		    size_t *quote_at) GW_MUSTCHECK;

#endif
