/* cleanup_rule.c - the ownership record and the delete-or-keep rule. */
#include "core/cleanup_rule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWN_MAX_VALUE 400

static bool field_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

enum gw_err cleanup_own_format(const struct cleanup_own *o, char *out, size_t n)
{
	if (!field_ok(o->account, sizeof(o->account)) || !field_ok(o->workspace, sizeof(o->workspace)) ||
	    o->noted <= 0)
		return GW_EINVAL;
	int k = snprintf(out, n, "v1 %s %s %lld", o->account, o->workspace, (long long)o->noted);
	return k > 0 && (size_t)k < n ? GW_OK : GW_ELIMIT;
}

/* Copies the next space-separated word of [*p, end) into dst. */
static bool word(const char **p, const char *end, char *dst, size_t size)
{
	const char *s = *p;
	while (*p < end && **p != ' ')
		(*p)++;
	size_t n = (size_t)(*p - s);
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
			return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	if (*p < end)
		(*p)++; /* the space */
	return true;
}

bool cleanup_own_parse(const char *v, size_t len, struct cleanup_own *out)
{
	memset(out, 0, sizeof(*out));
	if (!v || len < 3 || len > OWN_MAX_VALUE || memcmp(v, "v1 ", 3) != 0)
		return false;
	const char *p = v + 3, *end = v + len;
	char num[24];
	if (!word(&p, end, out->account, sizeof(out->account)) ||
	    !word(&p, end, out->workspace, sizeof(out->workspace)) || !word(&p, end, num, sizeof(num)) || p != end ||
	    end[-1] == ' ')
		goto bad;
	long long t = 0;
	if (num[0] == '0')
		goto bad; /* one spelling per value: what we write is what we read */
	for (const char *d = num; *d; d++) {
		if (*d < '0' || *d > '9' || t > (INT64_MAX - 9) / 10)
			goto bad;
		t = t * 10 + (*d - '0');
	}
	if (t <= 0)
		goto bad;
	out->noted = t;
	return true;
bad:
	memset(out, 0, sizeof(*out));
	return false;
}

enum cleanup_verdict cleanup_decide(const struct cleanup_facts *f, int64_t now, int64_t store_ttl,
				    int64_t grace_s)
{
	if (!f->owned)
		return CLEAN_KEEP_NOT_OURS;
	if (f->in_progress)
		return CLEAN_KEEP_BUSY;
	if (f->head_present)
		return CLEAN_KEEP_LIVE;
	int64_t last = f->created;
	if (f->updated > last)
		last = f->updated;
	if (f->noted > last)
		last = f->noted;
	if (last <= 0 || store_ttl < 0 || grace_s < 0)
		return CLEAN_KEEP_RECENT;
	/* Saturating: a silly TTL must mean "never", not wrap round to "now". */
	int64_t idle_needed = store_ttl > INT64_MAX / 2 || grace_s > INT64_MAX / 2 ? INT64_MAX : store_ttl + grace_s;
	if (now < last || now - last < idle_needed)
		return CLEAN_KEEP_RECENT;
	return CLEAN_DELETE;
}

const char *cleanup_verdict_name(enum cleanup_verdict v)
{
	switch (v) {
	case CLEAN_DELETE:
		return "delete";
	case CLEAN_KEEP_NOT_OURS:
		return "not ours";
	case CLEAN_KEEP_BUSY:
		return "in progress";
	case CLEAN_KEEP_LIVE:
		return "live mapping";
	case CLEAN_KEEP_RECENT:
		return "recent";
	}
	return "?";
}
