/* gw.c - the small helpers declared in gw.h. */
#include "gw.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/random.h>
#include <time.h>

static const char *const err_names[] = {
	[GW_OK] = "ok",
	[GW_EAGAIN] = "try again",
	[GW_ENOMEM] = "out of memory",
	[GW_ELIMIT] = "limit exceeded",
	[GW_EINVAL] = "invalid input",
	[GW_EPROTO] = "protocol error",
	[GW_EAUTH] = "authentication failed",
	[GW_EUPSTREAM] = "upstream error",
	[GW_ETIMEOUT] = "timed out",
	[GW_EIO] = "i/o error",
	[GW_ECONFIG] = "configuration error",
	[GW_ENOTFOUND] = "not found",
	[GW_ECANCELED] = "canceled",
};

const char *gw_strerror(enum gw_err err)
{
	if ((size_t)err < GW_ARRAY_LEN(err_names) && err_names[err])
		return err_names[err];
	return "unknown error";
}

void gw_panic(const char *file, int line, const char *expr)
{
	fprintf(stderr, "fatal: assertion failed at %s:%d: %s\n", file, line, expr);
	abort();
}

static atomic_ulong alloc_countdown;

void gw_alloc_fail_at(unsigned long n)
{
	atomic_store(&alloc_countdown, n);
}

unsigned long gw_alloc_fail_left(void)
{
	return atomic_load(&alloc_countdown);
}

static bool alloc_should_fail(void)
{
	unsigned long left = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
	if (left == 0)
		return false;
	return atomic_fetch_sub(&alloc_countdown, 1) == 1;
}

void *gw_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *gw_calloc(size_t n, size_t size)
{
	return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *gw_realloc(void *p, size_t n)
{
	return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

char *gw_strndup(const char *s, size_t n)
{
	char *d = gw_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *gw_strdup(const char *s)
{
	return s ? gw_strndup(s, strlen(s)) : NULL;
}

void gw_free(void *p)
{
	free(p);
}

uint64_t gw_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void gw_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

bool gw_random(void *p, size_t n)
{
	unsigned char *b = p;
	while (n > 0) {
		ssize_t r = getrandom(b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

uint64_t gw_now_ms(void)
{
	return gw_now_us() / 1000u;
}

int64_t gw_wall_s(void)
{
	return (int64_t)time(NULL);
}

bool gw_url_id_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

bool gw_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	/* Walk the longer length so timing does not reveal the common prefix. */
	const unsigned char *x = a, *y = b;
	size_t n = alen > blen ? alen : blen;
	unsigned char diff = alen != blen;
	for (size_t i = 0; i < n; i++) {
		unsigned char cx = i < alen ? x[i] : 0;
		unsigned char cy = i < blen ? y[i] : 0;
		diff |= cx ^ cy;
	}
	return diff == 0;
}
