/* parse_json.c - jansson helpers shared by parse_clerk.c and parse_engine.c. */
#include "provider/parse_json.h"

#include <string.h>
#include <time.h>

enum gw_err parse_json_object(const char *body, size_t n, json_t **out)
{
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "", body ? n : 0, 0, &jerr);
	if (!root)
		return json_error_code(&jerr) == json_error_out_of_memory ? GW_ENOMEM : GW_EPROTO;
	if (!json_is_object(root)) {
		json_decref(root);
		return GW_EPROTO;
	}
	*out = root;
	return GW_OK;
}

bool parse_json_url_id(const json_t *v, char *dst, size_t size, bool allow_absent)
{
	dst[0] = '\0';
	if (!v || json_is_null(v))
		return allow_absent;
	if (!json_is_string(v))
		return false;
	return parse_url_id(json_string_value(v), json_string_length(v), dst, size);
}

bool parse_url_id(const char *s, size_t n, char *dst, size_t size)
{
	if (n >= size || !gw_url_id_ok(s, n))
		return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return true;
}

static bool parse_digits(const char **p, const char *end, int k, int *out)
{
	int v = 0;
	for (int i = 0; i < k; i++) {
		if (*p >= end || **p < '0' || **p > '9')
			return false;
		v = v * 10 + (*(*p)++ - '0');
	}
	*out = v;
	return true;
}

static bool parse_expect(const char **p, const char *end, char c)
{
	if (*p < end && **p == c) {
		(*p)++;
		return true;
	}
	return false;
}

/* "Z" or "+HH:MM" (and '-'); lenient also "z", "+HHMM" and "+HH".
 * Seconds east of UTC. */
static bool parse_offset(const char *p, const char *end, bool strict, int *off)
{
	int hh, mm = 0;
	*off = 0;
	if (p < end && (*p == 'Z' || (!strict && *p == 'z')))
		return p + 1 == end;
	if (p >= end || (*p != '+' && *p != '-'))
		return false;
	int sign = *p++ == '-' ? -1 : 1;
	if (!parse_digits(&p, end, 2, &hh))
		return false;
	if (strict || p < end) { /* the lenient form may omit ":mm", or just the colon */
		bool colon = parse_expect(&p, end, ':');
		if ((strict && !colon) || !parse_digits(&p, end, 2, &mm))
			return false;
	}
	if (p != end || hh > 23 || mm > 59)
		return false;
	*off = sign * (hh * 3600 + mm * 60);
	return true;
}

bool parse_rfc3339(const char *s, size_t n, bool strict, int64_t *out)
{
	const char *p = s, *end = s + n;
	int y, mo, d, h, mi, sec = 0, off;
	if (!parse_digits(&p, end, 4, &y) || !parse_expect(&p, end, '-') || !parse_digits(&p, end, 2, &mo) ||
	    !parse_expect(&p, end, '-') || !parse_digits(&p, end, 2, &d))
		return false;
	if (!parse_expect(&p, end, 'T') && (strict || !(parse_expect(&p, end, 't') || parse_expect(&p, end, ' '))))
		return false;
	if (!parse_digits(&p, end, 2, &h) || !parse_expect(&p, end, ':') || !parse_digits(&p, end, 2, &mi))
		return false;
	if (parse_expect(&p, end, ':')) {
		if (!parse_digits(&p, end, 2, &sec))
			return false;
		if (parse_expect(&p, end, '.') || (!strict && parse_expect(&p, end, ','))) {
			const char *f = p;
			while (p < end && *p >= '0' && *p <= '9' && (!strict || p - f < 9))
				p++;
			if (p == f)
				return false;
		}
	} else if (strict) {
		return false;
	}
	if (!parse_offset(p, end, strict, &off) || (strict && y < 1970) || mo < 1 || mo > 12 || d < 1 ||
	    d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	struct tm tm = { 0 };
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	int64_t t = (int64_t)timegm(&tm) - off;
	if (strict && t <= 0)
		return false;
	*out = t;
	return true;
}
