/* test_parse_clerk.c - the pasted cookie, Set-Cookie rotation and deletion,
 * Clerk's client, token and error bodies (src/provider/parse_clerk.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/parse.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- helpers --------------------------------------------------------- */

static enum gw_err cookie(const char *in, struct buf *v)
{
	return clerk_cookie_parse(in, in ? strlen(in) : 0, v);
}

static void assert_cookie(const char *in, const char *want)
{
	struct buf v;
	buf_init(&v, 16384);
	enum gw_err err = cookie(in, &v);
	if (err != GW_OK)
		fail_msg("cookie '%s': %s", in, gw_strerror(err));
	assert_string_equal(v.p, want);
	assert_int_equal(v.len, strlen(want));
	buf_release(&v);
}

static void assert_cookie_bad(const char *in)
{
	struct buf v;
	buf_init(&v, 16384);
	enum gw_err err = cookie(in, &v);
	if (err != GW_EINVAL)
		fail_msg("cookie '%s' gave %s, want EINVAL", in ? in : "(null)", gw_strerror(err));
	buf_release(&v);
}

/* Runs clerk_set_cookie_client on a buffer holding "OLD". */
static bool set_cookie(const char *hdr, char *out, size_t outlen)
{
	struct buf v;
	buf_init(&v, 16384);
	assert_int_equal(buf_adds(&v, "OLD"), GW_OK);
	bool r = clerk_set_cookie_client(hdr, hdr ? strlen(hdr) : 0, &v);
	snprintf(out, outlen, "%s", v.p);
	buf_release(&v);
	return r;
}

static void assert_rotates(const char *hdr, const char *want)
{
	char got[256];
	if (!set_cookie(hdr, got, sizeof(got)))
		fail_msg("Set-Cookie '%s' not taken", hdr);
	assert_string_equal(got, want);
}

static void assert_ignored(const char *hdr)
{
	char got[256];
	if (set_cookie(hdr, got, sizeof(got)))
		fail_msg("Set-Cookie '%s' taken as a new value", hdr);
	assert_string_equal(got, "OLD"); /* untouched */
}

static void b64url(const char *in, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t n = strlen(in), o = 0;
	const unsigned char *s = (const unsigned char *)in;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

/* A JWT shaped like Clerk's (RS256 header, made-up signature). */
static void make_jwt(const char *payload, char *out)
{
	char h[128], p[1024];
	b64url("{\"alg\":\"RS256\",\"kid\":\"ins_2\",\"typ\":\"JWT\"}", h);
	b64url(payload, p);
	sprintf(out, "%s.%s.c2lnbmF0dXJlX2J5dGVz", h, p);
}

static enum gw_err token(const char *body, struct buf *jwt, int64_t *exp)
{
	return clerk_parse_token(body, strlen(body), jwt, exp);
}

static enum gw_err token_of_jwt(const char *jwt_text, int64_t *exp)
{
	char body[2048];
	struct buf jwt;
	buf_init(&jwt, 16384);
	snprintf(body, sizeof(body), "{\"object\":\"token\",\"jwt\":\"%s\"}", jwt_text);
	enum gw_err err = token(body, &jwt, exp);
	if (err == GW_OK)
		assert_string_equal(jwt.p, jwt_text);
	buf_release(&jwt);
	return err;
}

static enum gw_err token_of_payload(const char *payload, int64_t *exp)
{
	char jwt[1500];
	make_jwt(payload, jwt);
	return token_of_jwt(jwt, exp);
}

static enum gw_err client(const char *body, struct clerk_session *s)
{
	return clerk_parse_client(body, strlen(body), s);
}

/* ---- cookie as pasted ------------------------------------------------ */

static void test_cookie_forms(void **state)
{
	(void)state;
	assert_cookie("abc.DEF_ghi-123", "abc.DEF_ghi-123");
	assert_cookie("YWJjZA==", "YWJjZA==");              /* base64 padding stays */
	assert_cookie("  abc \r\n", "abc");
	assert_cookie("\"abc\"", "abc");
	assert_cookie("'abc'", "abc");
	assert_cookie("'__client=abc; a=b'", "abc");
	assert_cookie("'abc", "'abc");                /* not a pair: a cookie-octet */
	assert_cookie("__client=abc", "abc");
	assert_cookie(" __client = \"abc\" ", "abc");
	assert_cookie("__client=YWJjZA==", "YWJjZA==");
	assert_cookie("__session=eyJ.a.b; __client_uat=1764000000; __client=VAL_1; "
		      "cf_clearance=x=y=z", "VAL_1");
	assert_cookie("Cookie: a=b;__client=VAL2;c=d", "VAL2");
	assert_cookie("cookie:   __client=VAL3", "VAL3");
	assert_cookie("\"__session=s; __client=VAL4\"", "VAL4");
	assert_cookie("a=b; __client=first; __client=second", "first");
	assert_cookie("__client=v; trailing;", "v");
}

static void test_cookie_bad(void **state)
{
	(void)state;
	assert_cookie_bad(NULL);
	assert_cookie_bad("");
	assert_cookie_bad("   \t ");
	assert_cookie_bad("\"\"");
	assert_cookie_bad("'\"");
	assert_cookie_bad("__client=");
	assert_cookie_bad("__client=\"\"");
	assert_cookie_bad("__client=; a=b");
	/* A header with '=' signs but no __client is not a bare value. */
	assert_cookie_bad("a=b");
	assert_cookie_bad("a=b; c=d");
	assert_cookie_bad("__session=x; __client_uat=1");
	assert_cookie_bad("__Client=abc");           /* the name is case-sensitive */
	assert_cookie_bad("client=abc");
	assert_cookie_bad("ab=cd==");                /* '=' inside is not padding */
	assert_cookie_bad("ab;cd");
	assert_cookie_bad("ab cd");
	assert_cookie_bad("ab,cd");
	assert_cookie_bad("ab\"cd");
	assert_cookie_bad("ab\\cd");
	assert_cookie_bad("ab\x01" "cd");
	assert_cookie_bad("ab\x7f" "cd");
	assert_cookie_bad("v\xc3\xa4lue");
	assert_cookie_bad("__client=a b");
	assert_cookie_bad("__client=a\tb; x=y");
	assert_cookie_bad("__client=a,b");
}

static void test_cookie_length_and_buffer(void **state)
{
	(void)state;
	char big[8194 + 16];
	memset(big, 'A', 8192);
	big[8192] = '\0';
	struct buf v;
	buf_init(&v, 16384);
	assert_int_equal(clerk_cookie_parse(big, 8192, &v), GW_OK);
	assert_int_equal(v.len, 8192);
	big[8192] = 'A';
	assert_int_equal(clerk_cookie_parse(big, 8193, &v), GW_EINVAL);
	/* The length check applies to the value, not to the whole header. */
	char hdr[9000];
	memcpy(hdr, "__client=", 9);
	memset(hdr + 9, 'B', 8193);
	assert_int_equal(clerk_cookie_parse(hdr, 9 + 8193, &v), GW_EINVAL);
	/* The old contents are replaced, not appended to. */
	assert_int_equal(cookie("__client=new", &v), GW_OK);
	assert_string_equal(v.p, "new");
	buf_release(&v);

	/* Only n bytes are read: what follows is not part of the input. */
	buf_init(&v, 16384);
	assert_int_equal(clerk_cookie_parse("abcdef; x", 3, &v), GW_OK);
	assert_string_equal(v.p, "abc");
	buf_release(&v);

	/* The caller's buffer bound is honoured. */
	buf_init(&v, 4);
	assert_int_equal(cookie("abcdef", &v), GW_ELIMIT);
	buf_release(&v);

	buf_init(&v, 64);
	gw_alloc_fail_at(1);
	assert_int_equal(cookie("abcdef", &v), GW_ENOMEM);
	gw_alloc_fail_at(0);
	buf_release(&v);
}

/* ---- Set-Cookie ------------------------------------------------------ */

static void test_set_cookie_new_value(void **state)
{
	(void)state;
	assert_rotates("__client=sim_client_abc; Path=/; HttpOnly; Secure; SameSite=Lax",
		       "sim_client_abc");
	assert_rotates("Set-Cookie: __client=V1; path=/", "V1");
	assert_rotates("set-cookie:__client=V2", "V2");
	assert_rotates("  __client = \"V3\" ; Domain=clerk.cto.new", "V3");
	assert_rotates("__client=YWJj==; Secure", "YWJj==");
	/* Long-lived and future expiry are not deletions. */
	assert_rotates("__client=V4; Max-Age=31536000", "V4");
	assert_rotates("__client=V5; Expires=Wed, 01 Jan 2200 00:00:00 GMT", "V5");
	/* Max-Age wins over Expires. */
	assert_rotates("__client=V6; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60", "V6");
	/* Malformed attributes are ignored, as browsers do. */
	assert_rotates("__client=V7; Max-Age=soon; Expires=whenever", "V7");
	assert_rotates("__client=V8; Max-Age=", "V8");
}

static void test_set_cookie_ignored(void **state)
{
	(void)state;
	/* Deletions. */
	assert_ignored("__client=; Path=/; Max-Age=0");
	assert_ignored("__client=\"\"; Path=/");
	assert_ignored("__client=x; Max-Age=0");
	assert_ignored("__client=x; max-age=-1");
	assert_ignored("__client=x; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
	assert_ignored("__client=x; expires=Thursday, 01-Jan-70 00:00:01 GMT");
	assert_ignored("__client=x; Expires=Sun Nov  6 08:49:37 1994");
	assert_ignored("__client=x; Max-Age=0; Expires=Wed, 01 Jan 2200 00:00:00 GMT");
	/* Other cookies, including look-alike names. */
	assert_ignored("__client_uat=1764000000; Path=/");
	assert_ignored("__session=eyJ; Path=/");
	assert_ignored("__Client=abc; Path=/");
	assert_ignored("client=abc");
	assert_ignored("x=y; __client=abc");        /* only the first pair is the cookie */
	/* Not a usable value or not a Set-Cookie at all. */
	assert_ignored("__client=a b; Path=/");
	assert_ignored("__client=a\x01" "b");
	assert_ignored("__client");
	assert_ignored("");
	assert_ignored(NULL);
}

static void test_set_cookie_keeps_old_on_failure(void **state)
{
	(void)state;
	struct buf v;
	buf_init(&v, 5);
	assert_int_equal(buf_adds(&v, "OLD"), GW_OK);
	assert_false(clerk_set_cookie_client(S("__client=TOOLONG"), &v));
	assert_string_equal(v.p, "OLD");
	assert_int_equal(v.len, 3);
	assert_true(clerk_set_cookie_client(S("__client=NEW12"), &v));
	assert_string_equal(v.p, "NEW12");
	buf_release(&v);

	buf_init(&v, 4096);
	assert_int_equal(buf_adds(&v, "OLD"), GW_OK);
	gw_alloc_fail_at(1);
	/* Longer than the first allocation (256), so the copy needs memory. */
	assert_false(clerk_set_cookie_client(S("__client=a_value_longer_than_the_first_chunk_of_memory_"
					      "that_buf_reserve_allocates_0123456789abcdef0123456789abcdef"
					      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
					      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
					      "0123456789abcdef0123456789abcdef"), &v));
	gw_alloc_fail_at(0);
	assert_string_equal(v.p, "OLD");
	buf_release(&v);
}

/* ---- /v1/client ------------------------------------------------------ */

static void test_client_sim_shape(void **state)
{
	(void)state;
	struct clerk_session s;
	assert_int_equal(client("{\"response\":{\"id\":\"client_sim0\",\"object\":\"client\","
				"\"sessions\":[{\"id\":\"sess_sim0\",\"object\":\"session\",\"status\":\"active\","
				"\"user\":{\"id\":\"user_sim0\"},\"last_active_organization_id\":\"org_sim0\"}],"
				"\"last_active_session_id\":\"sess_sim0\"},\"client\":null}", &s), GW_OK);
	assert_string_equal(s.session_id, "sess_sim0");
	assert_string_equal(s.user_id, "user_sim0");
	assert_string_equal(s.org_id, "org_sim0");
}

#define SESS(id, st, user) "{\"id\":\"" id "\",\"status\":\"" st "\",\"user\":{\"id\":\"" user "\"}," \
	"\"last_active_organization_id\":\"org_" user "\"}"

static void test_client_pick(void **state)
{
	(void)state;
	struct clerk_session s;
	/* last_active_session_id names an active session: it wins. */
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_a", "active", "ua") ","
				SESS("sess_b", "active", "ub") "],\"last_active_session_id\":\"sess_b\"}}", &s),
			 GW_OK);
	assert_string_equal(s.session_id, "sess_b");
	assert_string_equal(s.user_id, "ub");
	assert_string_equal(s.org_id, "org_ub");
	/* It names an ended session: the first active one is used. */
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_a", "ended", "ua") ","
				SESS("sess_b", "active", "ub") "," SESS("sess_c", "active", "uc")
				"],\"last_active_session_id\":\"sess_a\"}}", &s), GW_OK);
	assert_string_equal(s.session_id, "sess_b");
	/* Null, absent or unknown last_active_session_id: first active. */
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_a", "expired", "ua") ","
				SESS("sess_c", "active", "uc") "],\"last_active_session_id\":null}}", &s), GW_OK);
	assert_string_equal(s.session_id, "sess_c");
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_c", "active", "uc") "]}}", &s),
			 GW_OK);
	assert_string_equal(s.session_id, "sess_c");
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_c", "active", "uc")
				"],\"last_active_session_id\":\"sess_zzz\"}}", &s), GW_OK);
	assert_string_equal(s.session_id, "sess_c");
	/* The client object at the top level (no "response" wrapper). */
	assert_int_equal(client("{\"object\":\"client\",\"sessions\":[" SESS("sess_t", "active", "ut")
				"],\"last_active_session_id\":\"sess_t\"}", &s), GW_OK);
	assert_string_equal(s.session_id, "sess_t");
}

static void test_client_org(void **state)
{
	(void)state;
	struct clerk_session s;
	assert_int_equal(client("{\"response\":{\"sessions\":[{\"id\":\"sess_a\",\"status\":\"active\","
				"\"user\":{\"id\":\"user_a\"}}]}}", &s), GW_OK);
	assert_string_equal(s.org_id, "");
	assert_string_equal(s.user_id, "user_a");
	assert_int_equal(client("{\"response\":{\"sessions\":[{\"id\":\"sess_a\",\"status\":\"active\","
				"\"user\":{\"id\":\"user_a\"},\"last_active_organization_id\":null}]}}", &s), GW_OK);
	assert_string_equal(s.org_id, "");
}

static void test_client_signed_out(void **state)
{
	(void)state;
	struct clerk_session s;
	assert_int_equal(client("{\"response\":{\"sessions\":[],\"last_active_session_id\":null}}", &s),
			 GW_EAUTH);
	assert_int_equal(client("{\"response\":{\"sessions\":[" SESS("sess_a", "ended", "ua") ","
				SESS("sess_b", "removed", "ub") "],\"last_active_session_id\":\"sess_a\"}}", &s),
			 GW_EAUTH);
	assert_int_equal(client("{\"response\":null,\"client\":null}", &s), GW_EAUTH);
	assert_string_equal(s.session_id, "");
}

static void test_client_bad_shapes(void **state)
{
	(void)state;
	struct clerk_session s;
	static const char *const bad[] = {
		"", "null", "[]", "\"x\"", "{", "Signed out",
		"{\"response\":{}}",
		"{\"response\":{\"sessions\":{}}}",
		"{\"response\":[]}",
		"{\"response\":{\"sessions\":[1]}}",
		"{\"response\":{\"sessions\":[{\"id\":1,\"status\":\"active\",\"user\":{\"id\":\"u\"}}]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"s\",\"status\":true,\"user\":{\"id\":\"u\"}}]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"s\",\"status\":\"active\"}]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"s\",\"status\":\"active\",\"user\":\"u\"}]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"s\",\"status\":\"active\",\"user\":{\"id\":7}}]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"s\",\"status\":\"active\",\"user\":{\"id\":\"u\"},"
		"\"last_active_organization_id\":5}]}}",
		"{\"response\":{\"sessions\":[" SESS("sess_a", "active", "ua") "],\"last_active_session_id\":3}}",
		/* Ids go into URLs. */
		"{\"response\":{\"sessions\":[" SESS("sess/../x", "active", "ua") "]}}",
		"{\"response\":{\"sessions\":[" SESS("sess_a", "active", "u?a") "]}}",
		"{\"response\":{\"sessions\":[{\"id\":\"\",\"status\":\"active\",\"user\":{\"id\":\"u\"}}]}}",
		/* An ended entry of the wrong shape is still a shape we do not know. */
		"{\"response\":{\"sessions\":[" SESS("sess_a", "active", "ua") ",{\"id\":\"s\",\"status\":null}]}}",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		enum gw_err err = client(bad[i], &s);
		if (err != GW_EPROTO)
			fail_msg("body %zu '%s' gave %s, want EPROTO", i, bad[i], gw_strerror(err));
		assert_string_equal(s.session_id, "");
	}
}

static void test_client_id_length(void **state)
{
	(void)state;
	char id[200], body[600];
	struct clerk_session s;
	memset(id, 'x', sizeof(id));
	id[127] = '\0';
	snprintf(body, sizeof(body), "{\"sessions\":[{\"id\":\"%s\",\"status\":\"active\","
		 "\"user\":{\"id\":\"u\"}}]}", id);
	assert_int_equal(client(body, &s), GW_OK);
	assert_int_equal(strlen(s.session_id), 127);
	id[127] = 'x';
	id[128] = '\0';
	snprintf(body, sizeof(body), "{\"sessions\":[{\"id\":\"%s\",\"status\":\"active\","
		 "\"user\":{\"id\":\"u\"}}]}", id);
	assert_int_equal(client(body, &s), GW_EPROTO);
}

/* ---- tokens ---------------------------------------------------------- */

static void test_token_good(void **state)
{
	(void)state;
	char jwt[1500], body[2048];
	struct buf b;
	int64_t exp = -1;
	make_jwt("{\"sub\":\"user_sim0\",\"sid\":\"sess_sim0\",\"org_id\":\"org_sim0\","
		 "\"iat\":1767225540,\"exp\":1767225600}", jwt);
	snprintf(body, sizeof(body), "{\"object\":\"token\",\"jwt\":\"%s\"}", jwt);
	buf_init(&b, 16384);
	assert_int_equal(buf_adds(&b, "stale"), GW_OK);
	assert_int_equal(token(body, &b, &exp), GW_OK);
	assert_string_equal(b.p, jwt);
	assert_int_equal(exp, 1767225600);
	/* "object" may be missing; unknown fields are fine. */
	snprintf(body, sizeof(body), "{\"jwt\":\"%s\",\"extra\":[1,2]}", jwt);
	assert_int_equal(token(body, &b, &exp), GW_OK);
	assert_int_equal(exp, 1767225600);
	buf_release(&b);

	/* Every payload length mod 3, so every unpadded tail length. */
	for (int pad = 0; pad < 6; pad++) {
		char payload[128];
		snprintf(payload, sizeof(payload), "{\"x\":\"%.*s\",\"exp\":%d}", pad, "abcdef",
			 1767225600 + pad);
		exp = 0;
		assert_int_equal(token_of_payload(payload, &exp), GW_OK);
		assert_int_equal(exp, 1767225600 + pad);
	}
	assert_int_equal(token_of_payload("{\"exp\":1767225600.0}", &exp), GW_OK);
	assert_int_equal(exp, 1767225600);
	/* Non-ASCII claims decode too. */
	assert_int_equal(token_of_payload("{\"name\":\"J\xc3\xb6rg \xf0\x9f\x99\x82\",\"exp\":42}", &exp),
			 GW_OK);
	assert_int_equal(exp, 42);
}

static void test_token_bad(void **state)
{
	(void)state;
	struct buf b;
	int64_t exp;
	char jwt[1500], body[2048];
	buf_init(&b, 16384);
	make_jwt("{\"exp\":1767225600}", jwt);
	snprintf(body, sizeof(body), "{\"object\":\"session\",\"jwt\":\"%s\"}", jwt);
	assert_int_equal(token(body, &b, &exp), GW_EPROTO);
	snprintf(body, sizeof(body), "{\"object\":7,\"jwt\":\"%s\"}", jwt);
	assert_int_equal(token(body, &b, &exp), GW_EPROTO);
	assert_int_equal(token("{\"object\":\"token\"}", &b, &exp), GW_EPROTO);
	assert_int_equal(token("{\"object\":\"token\",\"jwt\":42}", &b, &exp), GW_EPROTO);
	assert_int_equal(token("{\"object\":\"token\",\"jwt\":null}", &b, &exp), GW_EPROTO);
	assert_int_equal(token("[]", &b, &exp), GW_EPROTO);
	assert_int_equal(token("", &b, &exp), GW_EPROTO);
	assert_int_equal(token("{\"errors\":[{\"code\":\"signed_out\"}]}", &b, &exp), GW_EPROTO);
	assert_int_equal(clerk_parse_token(NULL, 0, &b, &exp), GW_EPROTO);
	buf_release(&b);

	/* The JWT itself. */
	assert_int_equal(token_of_jwt("", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("abc", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.b", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.eyJleHAiOjF9.c.d", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt(".eyJleHAiOjF9.c", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a..c", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.eyJleHAiOjF9.", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.eyJleHAiOjF9.c", &exp), GW_OK); /* {"exp":1} */
	assert_int_equal(exp, 1);
	assert_int_equal(token_of_jwt("a.eyJleHAiOjF9=.c", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.eyJle+HAiOjF9.c", &exp), GW_EPROTO);
	assert_int_equal(token_of_jwt("a.eyJleHAiOjF9a.c", &exp), GW_EPROTO); /* length 4k+1 */
	assert_int_equal(token_of_jwt("a b.eyJleHAiOjF9.c", &exp), GW_EPROTO);
	/* The payload. */
	assert_int_equal(token_of_payload("not json", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("[1]", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("{\"sub\":\"u\"}", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("{\"exp\":\"1767225600\"}", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("{\"exp\":-5}", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("{\"exp\":0}", &exp), GW_EPROTO);
	assert_int_equal(token_of_payload("{\"exp\":1e300}", &exp), GW_EPROTO);
	assert_int_equal(exp, 0);
}

static void test_token_limits(void **state)
{
	(void)state;
	char jwt[1500], body[2048];
	struct buf b;
	int64_t exp;
	make_jwt("{\"exp\":1767225600}", jwt);
	snprintf(body, sizeof(body), "{\"object\":\"token\",\"jwt\":\"%s\"}", jwt);
	buf_init(&b, 10);
	assert_int_equal(token(body, &b, &exp), GW_ELIMIT);
	buf_release(&b);

	/* A JWT of absurd size is refused before decoding. */
	size_t big = 20000;
	char *huge = malloc(big + 64);
	assert_non_null(huge);
	strcpy(huge, "{\"jwt\":\"a.");
	memset(huge + 10, 'A', big);
	strcpy(huge + 10 + big, ".c\"}");
	buf_init(&b, 1 << 20);
	assert_int_equal(token(huge, &b, &exp), GW_EPROTO);
	buf_release(&b);
	free(huge);
}

/* Failing each allocation in turn neither crashes nor leaks (LeakSanitizer
 * checks in the sanitizer build). The error code is not checked: jansson
 * 2.14 does not report every allocation failure as such, and some make its
 * lexer drop bytes silently, so a failed parse may look like EPROTO. */
static void test_alloc_failures(void **state)
{
	(void)state;
	char jwt[1500], body[2048];
	make_jwt("{\"sub\":\"user_a\",\"exp\":1767225600}", jwt);
	snprintf(body, sizeof(body), "{\"object\":\"token\",\"jwt\":\"%s\"}", jwt);
	const char *cbody = "{\"response\":{\"sessions\":[" SESS("sess_a", "active", "ua") "]}}";
	bool token_ok = false, client_ok = false;
	for (unsigned long k = 1; k < 200 && !(token_ok && client_ok); k++) {
		struct buf b;
		int64_t exp;
		struct clerk_session s;
		buf_init(&b, 16384);
		gw_alloc_fail_at(k);
		enum gw_err e1 = token(body, &b, &exp);
		gw_alloc_fail_at(k);
		enum gw_err e2 = client(cbody, &s);
		gw_alloc_fail_at(0);
		assert_true(e1 == GW_OK || e1 == GW_ENOMEM || e1 == GW_EPROTO);
		assert_true(e2 == GW_OK || e2 == GW_ENOMEM || e2 == GW_EPROTO || e2 == GW_EAUTH);
		token_ok |= e1 == GW_OK;
		client_ok |= e2 == GW_OK;
		buf_release(&b);
	}
	assert_true(token_ok && client_ok);
}

/* ---- error codes ----------------------------------------------------- */

static void test_error_code(void **state)
{
	(void)state;
	char code[64];
	clerk_error_code(S("{\"errors\":[{\"code\":\"signed_out\",\"message\":\"Signed out\","
			   "\"long_message\":\"You are signed out\"}]}"), code, sizeof(code));
	assert_string_equal(code, "signed_out");
	clerk_error_code(S("{\"errors\":[{\"message\":\"x\"},{\"code\":\"second\"}]}"), code, sizeof(code));
	assert_string_equal(code, "");
	strcpy(code, "junk");
	clerk_error_code(S("{\"errors\":[]}"), code, sizeof(code));
	assert_string_equal(code, "");
	strcpy(code, "junk");
	clerk_error_code(S("Internal Server Error"), code, sizeof(code));
	assert_string_equal(code, "");
	strcpy(code, "junk");
	clerk_error_code(S("{\"errors\":[{\"code\":42}]}"), code, sizeof(code));
	assert_string_equal(code, "");
	strcpy(code, "junk");
	clerk_error_code(S("{\"errors\":{\"code\":\"x\"}}"), code, sizeof(code));
	assert_string_equal(code, "");
	strcpy(code, "junk");
	clerk_error_code(NULL, 0, code, sizeof(code));
	assert_string_equal(code, "");
	/* Cut to fit, and only printable ASCII reaches the caller's logs. */
	clerk_error_code(S("{\"errors\":[{\"code\":\"signed_out\"}]}"), code, 4);
	assert_string_equal(code, "sig");
	clerk_error_code(S("{\"errors\":[{\"code\":\"a\\nb c\\u00e9\"}]}"), code, sizeof(code));
	assert_string_equal(code, "a?b?c??");
	/* codelen 0 writes nothing. */
	strcpy(code, "keep");
	clerk_error_code(S("{\"errors\":[{\"code\":\"x\"}]}"), code, 0);
	assert_string_equal(code, "keep");
}

int main(void)
{
	/* As in the gateway, so allocation failures reach jansson too. */
	json_set_alloc_funcs(gw_malloc, gw_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cookie_forms),
		cmocka_unit_test(test_cookie_bad),
		cmocka_unit_test(test_cookie_length_and_buffer),
		cmocka_unit_test(test_set_cookie_new_value),
		cmocka_unit_test(test_set_cookie_ignored),
		cmocka_unit_test(test_set_cookie_keeps_old_on_failure),
		cmocka_unit_test(test_client_sim_shape),
		cmocka_unit_test(test_client_pick),
		cmocka_unit_test(test_client_org),
		cmocka_unit_test(test_client_signed_out),
		cmocka_unit_test(test_client_bad_shapes),
		cmocka_unit_test(test_client_id_length),
		cmocka_unit_test(test_token_good),
		cmocka_unit_test(test_token_bad),
		cmocka_unit_test(test_token_limits),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_error_code),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
