/* parse_clerk.c - the __client cookie (as pasted and as Set-Cookie) and the
 * Clerk JSON bodies. Pure functions; facts in docs/upstream-protocol.md. */
#include "provider/parse.h"
#include "provider/parse_json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define COOKIE_NAME "__client"
#define COOKIE_NAME_LEN (sizeof(COOKIE_NAME) - 1)
#define COOKIE_MAX 8192
#define JWT_MAX 16384

/* ---- small text helpers ---------------------------------------------- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Narrows [*s, *s + *n) by whitespace on both sides. */
static void trim(const char **s, size_t *n)
{
	while (*n && is_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_space((*s)[*n - 1]))
		(*n)--;
}

/* Trims whitespace, then one pair of surrounding quotes, then whitespace
 * again: people paste "a=b; c=d" or 'VALUE' straight from a shell line. */
static void trim_quotes(const char **s, size_t *n)
{
	trim(s, n);
	if (*n >= 2 && ((*s)[0] == '"' || (*s)[0] == '\'') && (*s)[*n - 1] == (*s)[0]) {
		(*s)++;
		*n -= 2;
		trim(s, n);
	}
}

/* Drops a leading "Name:" header prefix (case-insensitive) if present. */
static void drop_header_name(const char **s, size_t *n, const char *name)
{
	size_t l = strlen(name);
	if (*n >= l && strncasecmp(*s, name, l) == 0) {
		*s += l;
		*n -= l;
	}
}

/* The value goes verbatim into a Cookie header, so it must consist of
 * RFC 6265 cookie-octets only: no controls, spaces, DQUOTE, ',', ';', '\'
 * and nothing outside ASCII. */
static bool cookie_value_ok(const char *v, size_t n)
{
	if (n == 0 || n > COOKIE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\')
			return false;
	}
	return true;
}

/* Splits "name=value" (value may be empty); false if there is no '='. */
static bool split_pair(const char *s, size_t n, const char **name, size_t *nlen,
		       const char **val, size_t *vlen)
{
	const char *eq = memchr(s, '=', n);
	if (!eq)
		return false;
	*name = s;
	*nlen = (size_t)(eq - s);
	trim(name, nlen);
	*val = eq + 1;
	*vlen = n - (size_t)(eq + 1 - s);
	trim_quotes(val, vlen);
	return true;
}

static bool is_client_name(const char *name, size_t nlen)
{
	return nlen == COOKIE_NAME_LEN && memcmp(name, COOKIE_NAME, nlen) == 0;
}

/* ---- cookie as pasted ------------------------------------------------ */

/* A bare value has no ';' and no '=' except base64 padding ("=" or "=="
 * ending a multiple of 4 bytes), so "__client=" and "a=" are pairs. */
static bool looks_bare(const char *s, size_t n)
{
	size_t body = n;
	if (memchr(s, ';', n))
		return false;
	while (body && s[body - 1] == '=')
		body--;
	if (memchr(s, '=', body))
		return false;
	return body == n || (n - body <= 2 && n % 4 == 0);
}

static enum gw_err store_value(struct buf *value, const char *v, size_t n)
{
	if (!cookie_value_ok(v, n))
		return GW_EINVAL;
	buf_reset(value);
	return buf_add(value, v, n);
}

enum gw_err clerk_cookie_parse(const char *in, size_t n, struct buf *value)
{
	const char *s = in ? in : "";
	if (!in)
		n = 0;
	trim_quotes(&s, &n);
	drop_header_name(&s, &n, "Cookie:");
	trim_quotes(&s, &n);
	if (looks_bare(s, n))
		return store_value(value, s, n);

	/* A Cookie header: "a=b; __client=VALUE; c=d". The first __client wins;
	 * a header without one is an error, not a bare value with '=' in it. */
	while (n) {
		const char *semi = memchr(s, ';', n);
		size_t plen = semi ? (size_t)(semi - s) : n;
		const char *name, *val;
		size_t nlen, vlen;
		if (split_pair(s, plen, &name, &nlen, &val, &vlen) && is_client_name(name, nlen))
			return store_value(value, val, vlen);
		if (!semi)
			break;
		s = semi + 1;
		n -= plen + 1;
	}
	return GW_EINVAL;
}

/* ---- Set-Cookie ------------------------------------------------------ */

static int month_of(const char *t, size_t n)
{
	static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	if (n < 3)
		return -1;
	for (int m = 0; m < 12; m++)
		if (strncasecmp(t, names + 3 * m, 3) == 0)
			return m;
	return -1;
}

static bool all_digits(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i] < '0' || t[i] > '9')
			return false;
	return n > 0;
}

static int small_num(const char *t, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (t[i] - '0');
	return v;
}

/* hh:mm:ss with one or two digits each. */
static bool parse_hms(const char *t, size_t n, struct tm *tm)
{
	int part[3] = { 0 }, k = 0, digits = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i] == ':') {
			if (++k > 2 || digits == 0)
				return false;
			digits = 0;
		} else if (t[i] >= '0' && t[i] <= '9' && digits < 2) {
			part[k] = part[k] * 10 + (t[i] - '0');
			digits++;
		} else {
			return false;
		}
	}
	if (k != 2 || digits == 0 || part[0] > 23 || part[1] > 59 || part[2] > 60)
		return false;
	tm->tm_hour = part[0];
	tm->tm_min = part[1];
	tm->tm_sec = part[2];
	return true;
}

static bool date_char(char c)
{
	char l = (char)(c | 0x20);
	return (c >= '0' && c <= '9') || c == ':' || (l >= 'a' && l <= 'z');
}

/* The cookie-date algorithm of RFC 6265 5.1.1, simplified: any order of a
 * time, a day of month, a month name and a year among delimiter-separated
 * tokens, so IMF-fixdate, RFC 850 and asctime forms all work. */
static bool parse_cookie_date(const char *s, size_t n, int64_t *out)
{
	struct tm tm = { 0 };
	bool have_time = false, have_day = false, have_month = false, have_year = false;
	size_t i = 0;
	while (i < n) {
		while (i < n && !date_char(s[i]))
			i++;
		size_t b = i;
		while (i < n && date_char(s[i]))
			i++;
		const char *t = s + b;
		size_t tl = i - b;
		int m;
		if (tl == 0)
			break;
		if (!have_time && memchr(t, ':', tl) && parse_hms(t, tl, &tm)) {
			have_time = true;
		} else if (!have_day && tl <= 2 && all_digits(t, tl)) {
			tm.tm_mday = small_num(t, tl);
			have_day = true;
		} else if (!have_month && (m = month_of(t, tl)) >= 0) {
			tm.tm_mon = m;
			have_month = true;
		} else if (!have_year && tl >= 2 && tl <= 4 && all_digits(t, tl)) {
			int y = small_num(t, tl);
			y += y < 70 ? 2000 : y < 100 ? 1900 : 0;
			tm.tm_year = y - 1900;
			have_year = true;
		}
	}
	if (!have_time || !have_day || !have_month || !have_year || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_year < 1601 - 1900)
		return false;
	*out = (int64_t)timegm(&tm);
	return true;
}

/* Reads "Max-Age" as a signed integer; false if malformed (then ignored,
 * as RFC 6265 says). */
static bool parse_max_age(const char *v, size_t n, int64_t *out)
{
	bool neg = n && v[0] == '-';
	if (neg) {
		v++;
		n--;
	}
	if (!all_digits(v, n))
		return false;
	int64_t x = 0;
	for (size_t i = 0; i < n && x < 1000000000000LL; i++)
		x = x * 10 + (v[i] - '0');
	*out = neg ? -x : x;
	return true;
}

/* True if the attributes after the first ';' delete the cookie. Max-Age
 * wins over Expires (RFC 6265 5.3 step 3). */
static bool attrs_delete(const char *s, size_t n)
{
	bool have_max_age = false, have_expires = false;
	int64_t max_age = 0, expires = 0;
	while (n) {
		const char *semi = memchr(s, ';', n);
		size_t plen = semi ? (size_t)(semi - s) : n;
		const char *name, *val;
		size_t nlen, vlen;
		if (split_pair(s, plen, &name, &nlen, &val, &vlen)) {
			if (nlen == 7 && strncasecmp(name, "max-age", 7) == 0)
				have_max_age = parse_max_age(val, vlen, &max_age) || have_max_age;
			else if (nlen == 7 && strncasecmp(name, "expires", 7) == 0)
				have_expires = parse_cookie_date(val, vlen, &expires) || have_expires;
		}
		if (!semi)
			break;
		s = semi + 1;
		n -= plen + 1;
	}
	if (have_max_age)
		return max_age <= 0;
	return have_expires && expires <= gw_wall_s();
}

bool clerk_set_cookie_client(const char *hdr, size_t n, struct buf *value)
{
	const char *s = hdr ? hdr : "";
	if (!hdr)
		n = 0;
	trim(&s, &n);
	drop_header_name(&s, &n, "Set-Cookie:");
	const char *semi = memchr(s, ';', n);
	size_t plen = semi ? (size_t)(semi - s) : n;
	const char *name, *val;
	size_t nlen, vlen;
	if (!split_pair(s, plen, &name, &nlen, &val, &vlen) || !is_client_name(name, nlen))
		return false;
	if (!cookie_value_ok(val, vlen))
		return false;
	if (semi && attrs_delete(semi + 1, n - plen - 1))
		return false;
	/* Keep the caller's current value intact if the copy fails: buf_add
	 * touches nothing when it cannot reserve room. */
	size_t old = value->len;
	value->len = 0;
	if (buf_add(value, val, vlen) != GW_OK) {
		value->len = old;
		return false;
	}
	return true;
}

/* ---- Clerk JSON ------------------------------------------------------ */

/* Checks every entry's shape and returns the active one to use, or NULL. */
static enum gw_err pick_session(const json_t *sessions, const json_t *last, const json_t **pick)
{
	const json_t *first = NULL;
	size_t i;
	json_t *s;
	*pick = NULL;
	json_array_foreach(sessions, i, s) {
		const json_t *status = json_object_get(s, "status");
		const json_t *id = json_object_get(s, "id");
		if (!json_is_object(s) || !json_is_string(status) || !json_is_string(id))
			return GW_EPROTO;
		if (strcmp(json_string_value(status), "active") != 0)
			continue;
		if (!first)
			first = s;
		if (json_is_string(last) && json_equal(id, last))
			*pick = s;
	}
	if (!*pick)
		*pick = first;
	return GW_OK;
}

static enum gw_err session_fill(const json_t *s, struct clerk_session *out)
{
	const json_t *user = json_object_get(s, "user");
	if (!parse_json_url_id(json_object_get(s, "id"), out->session_id, sizeof(out->session_id), false) ||
	    !json_is_object(user) ||
	    !parse_json_url_id(json_object_get(user, "id"), out->user_id, sizeof(out->user_id), false) ||
	    !parse_json_url_id(json_object_get(s, "last_active_organization_id"), out->org_id,
		     sizeof(out->org_id), true))
		return GW_EPROTO;
	return GW_OK;
}

/* The client object sits under "response" (current Clerk) or at the top. */
static enum gw_err client_session(const json_t *root, struct clerk_session *out)
{
	const json_t *client = json_object_get(root, "response");
	if (json_is_null(client))
		return GW_EAUTH; /* no client at all: the cookie is signed out */
	if (!client)
		client = root;
	if (!json_is_object(client))
		return GW_EPROTO;
	const json_t *sessions = json_object_get(client, "sessions");
	const json_t *last = json_object_get(client, "last_active_session_id");
	if (!json_is_array(sessions) || (last && !json_is_null(last) && !json_is_string(last)))
		return GW_EPROTO;
	const json_t *pick;
	enum gw_err err = pick_session(sessions, last, &pick);
	if (err)
		return err;
	if (!pick)
		return GW_EAUTH;
	return session_fill(pick, out);
}

enum gw_err clerk_parse_client(const char *body, size_t n, struct clerk_session *out)
{
	json_t *root;
	memset(out, 0, sizeof(*out));
	enum gw_err err = parse_json_object(body, n, &root);
	if (err)
		return err;
	err = client_session(root, out);
	json_decref(root);
	if (err)
		memset(out, 0, sizeof(*out));
	return err;
}

/* ---- JWT ------------------------------------------------------------- */

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Unpadded base64url (RFC 4648 5) into out (room for n * 3 / 4 bytes).
 * False on a bad character or an impossible length. */
static bool b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	if (n % 4 == 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_val((unsigned char)in[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*outlen = o;
	return true;
}

static bool jwt_chars_ok(const char *s, size_t n, const char **payload, size_t *plen)
{
	const char *dot[2] = { NULL, NULL };
	int dots = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (dots == 2)
				return false;
			dot[dots++] = s + i;
		} else if (b64url_val((unsigned char)s[i]) < 0) {
			return false;
		}
	}
	if (dots != 2 || dot[0] == s || dot[1] == dot[0] + 1 || dot[1] == s + n - 1)
		return false;
	*payload = dot[0] + 1;
	*plen = (size_t)(dot[1] - dot[0] - 1);
	return true;
}

static bool exp_of(const json_t *claims, int64_t *exp)
{
	const json_t *e = json_object_get(claims, "exp");
	if (json_is_integer(e)) {
		*exp = (int64_t)json_integer_value(e);
	} else if (json_is_real(e)) {
		double d = json_real_value(e);
		if (!(d > 0 && d < 1e15))
			return false;
		*exp = (int64_t)d;
	} else {
		return false;
	}
	return *exp > 0;
}

/* Decodes the payload and reads exp; the signature is the server's business. */
static enum gw_err jwt_exp(const char *jwt, size_t n, int64_t *exp)
{
	const char *p;
	size_t plen, dlen;
	if (!jwt_chars_ok(jwt, n, &p, &plen))
		return GW_EPROTO;
	unsigned char *dec = gw_malloc(plen / 4 * 3 + 3);
	if (!dec)
		return GW_ENOMEM;
	enum gw_err err = GW_EPROTO;
	json_t *claims = NULL;
	if (b64url_decode(p, plen, dec, &dlen))
		err = parse_json_object((const char *)dec, dlen, &claims);
	gw_free(dec);
	if (err)
		return err;
	err = exp_of(claims, exp) ? GW_OK : GW_EPROTO;
	json_decref(claims);
	return err;
}

static enum gw_err token_fields(const json_t *root, struct buf *jwt, int64_t *exp)
{
	const json_t *object = json_object_get(root, "object");
	const json_t *j = json_object_get(root, "jwt");
	/* "object" is optional (older answers lack it) but must say token. */
	if (object && (!json_is_string(object) || strcmp(json_string_value(object), "token") != 0))
		return GW_EPROTO;
	if (!json_is_string(j) || json_string_length(j) > JWT_MAX)
		return GW_EPROTO;
	const char *s = json_string_value(j);
	size_t n = json_string_length(j);
	enum gw_err err = jwt_exp(s, n, exp);
	if (err)
		return err;
	buf_reset(jwt);
	return buf_add(jwt, s, n);
}

enum gw_err clerk_parse_token(const char *body, size_t n, struct buf *jwt, int64_t *exp)
{
	json_t *root;
	*exp = 0;
	enum gw_err err = parse_json_object(body, n, &root);
	if (err)
		return err;
	err = token_fields(root, jwt, exp);
	json_decref(root);
	if (err)
		*exp = 0;
	return err;
}

/* ---- errors ---------------------------------------------------------- */

void clerk_error_code(const char *body, size_t n, char *code, size_t codelen)
{
	json_t *root;
	if (!code || codelen == 0)
		return;
	code[0] = '\0';
	if (parse_json_object(body, n, &root) != GW_OK)
		return;
	const json_t *c = json_object_get(json_array_get(json_object_get(root, "errors"), 0), "code");
	if (json_is_string(c)) {
		/* Codes end up in logs: printable ASCII only, cut to fit. */
		const char *s = json_string_value(c);
		size_t len = json_string_length(c), i;
		for (i = 0; i < len && i < codelen - 1; i++)
			code[i] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
		code[i] = '\0';
	}
	json_decref(root);
}
