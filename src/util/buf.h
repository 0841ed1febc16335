/* buf.h - a growable byte buffer with a ceiling chosen at creation.
 *
 * The bytes are always NUL-terminated (not counted in len) so a buffer of
 * text can be handed to C string functions. A buffer owns its bytes;
 * buf_take() hands them to the caller. */
#ifndef GW_BUF_H
#define GW_BUF_H

#include "gw.h"

struct buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max; /* appends past this fail with GW_ELIMIT */
};

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b); /* frees the bytes; b may be reused after buf_init */
void buf_reset(struct buf *b);   /* len = 0, keeps the memory */
void buf_truncate(struct buf *b, size_t len); /* cuts back to len (no-op if not shorter) */

enum gw_err buf_reserve(struct buf *b, size_t more) GW_MUSTCHECK;
enum gw_err buf_add(struct buf *b, const void *p, size_t n) GW_MUSTCHECK;
enum gw_err buf_adds(struct buf *b, const char *s) GW_MUSTCHECK;
enum gw_err buf_addc(struct buf *b, char c) GW_MUSTCHECK;
enum gw_err buf_printf(struct buf *b, const char *fmt, ...) GW_PRINTF(2, 3) GW_MUSTCHECK;
/* Appends the strings up to the NULL that ends the list, all or nothing:
 * what buf_printf("%s%s...") does, without parsing a format. */
enum gw_err buf_cat(struct buf *b, ...) GW_SENTINEL GW_MUSTCHECK;
/* Decimal, without printf's format parsing (per streamed piece). */
enum gw_err buf_add_i64(struct buf *b, int64_t v) GW_MUSTCHECK;

/* Appends s as the body of a JSON string (no quotes), escaping as RFC 8259
 * requires. Invalid UTF-8 bytes become U+FFFD so the output is always valid. */
enum gw_err buf_add_json_str(struct buf *b, const char *s, size_t n) GW_MUSTCHECK;

/* Moves the bytes out; the caller frees them with gw_free(). */
char *buf_take(struct buf *b, size_t *len);

#endif
