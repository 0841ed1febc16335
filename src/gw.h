/* gw.h - types shared by every module: error codes, assertions, small helpers.
 *
 * Conventions (see docs/hacking.md): x_new() returns something the caller
 * owns, x_free() accepts NULL, x_take() moves ownership out, x_peek() borrows.
 * Fallible functions return enum gw_err and are GW_MUSTCHECK. */
#ifndef GW_H
#define GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_MUSTCHECK __attribute__((warn_unused_result))
#define GW_UNUSED(x) ((void)(x))
#define GW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define GW_SENTINEL __attribute__((sentinel))

enum gw_err {
	GW_OK = 0,
	GW_EAGAIN,    /* not done yet: wait for the event, not a failure */
	GW_ENOMEM,
	GW_ELIMIT,    /* a size or count bound was hit */
	GW_EINVAL,    /* bad input from a client or the config */
	GW_EPROTO,    /* the peer broke its protocol */
	GW_EAUTH,     /* credentials refused */
	GW_EUPSTREAM, /* upstream answered with an error */
	GW_ETIMEOUT,
	GW_EIO,
	GW_ECONFIG,
	GW_ENOTFOUND,
	GW_ECANCELED,
};

const char *gw_strerror(enum gw_err err);

void gw_panic(const char *file, int line, const char *expr) __attribute__((noreturn));

/* Invariants, not error handling: on in every build (a wrong state in a
 * daemon is worse than a crash with a clear message). */
#define GW_ASSERT(e) ((e) ? (void)0 : gw_panic(__FILE__, __LINE__, #e))

/* Allocation wrappers: abort on failure would hide error paths, so these
 * return NULL like malloc but can be made to fail in tests (alloc_fail). */
void *gw_malloc(size_t n);
void *gw_calloc(size_t n, size_t size);
void *gw_realloc(void *p, size_t n);
char *gw_strdup(const char *s);
char *gw_strndup(const char *s, size_t n);
void gw_free(void *p);

/* Test hook: make the Nth allocation from now fail (0 = never). */
void gw_alloc_fail_at(unsigned long n);
/* Test hook: allocations left before the armed failure, 0 once it happened. */
unsigned long gw_alloc_fail_left(void);

/* Monotonic time in milliseconds / microseconds. */
uint64_t gw_now_ms(void);
uint64_t gw_now_us(void);
/* n bytes from the kernel's random source (getrandom); false only if it
 * refuses (it blocks only before boot-time seeding). */
bool gw_random(void *p, size_t n) GW_MUSTCHECK;
/* Wall clock seconds since the epoch. */
int64_t gw_wall_s(void);

/* The value of a hex digit, -1 for any other byte. */
static inline int gw_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1): 1..4, 0 if it
 * is not one. The same rules as jansson's utf8_check_full: no overlong
 * forms, no surrogates, nothing past U+10FFFF. Inline: JSON scanning and
 * escaping call it per non-ASCII character. */
static inline size_t gw_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* n bytes as 2n lowercase hex digits and a NUL. */
void gw_hex(const unsigned char *p, size_t n, char *out);

/* s[0..n) is 1+ bytes of [A-Za-z0-9_-]: safe in a URL path or query as is. */
bool gw_url_id_ok(const char *s, size_t n);

/* Constant-time comparison of two byte strings (lengths may differ). */
bool gw_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
