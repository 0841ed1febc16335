/* fuzz_clerk_json.c - Clerk bodies: /v1/client, /tokens, error codes; the
 * input also serves as a JWT payload inside a well-formed token body. */
#include <string.h>

#include "provider/parse.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_id(const char *id, bool may_be_empty)
{
	size_t n = strlen(id);
	GW_ASSERT(n < 128 && (may_be_empty || n > 0));
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		GW_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-');
	}
}

static void b64url(const unsigned char *s, size_t n, struct buf *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		char q[4] = { a[(v >> 18) & 63], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63] };
		size_t k = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
		if (buf_add(out, q, k) != GW_OK)
			return;
	}
}

static void token(const char *body, size_t n)
{
	struct buf jwt;
	int64_t exp = -1;
	buf_init(&jwt, 1 << 16);
	enum gw_err err = clerk_parse_token(body, n, &jwt, &exp);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_ENOMEM);
	if (err == GW_OK)
		GW_ASSERT(exp > 0 && jwt.len >= 5 && memchr(jwt.p, '.', jwt.len));
	else
		GW_ASSERT(exp == 0);
	buf_release(&jwt);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	struct clerk_session cs;
	enum gw_err err = clerk_parse_client(s, size, &cs);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_EAUTH || err == GW_ENOMEM);
	if (err == GW_OK) {
		check_id(cs.session_id, false);
		check_id(cs.user_id, false);
		check_id(cs.org_id, true);
	}
	token(s, size);

	char code[16];
	clerk_error_code(s, size, code, sizeof(code));
	for (size_t i = 0; code[i]; i++)
		GW_ASSERT(i < sizeof(code) - 1 && code[i] > 0x20 && code[i] < 0x7f);

	/* The bytes as the claims of a JWT in a well-formed token body. */
	struct buf body;
	buf_init(&body, 1 << 20);
	if (buf_adds(&body, "{\"object\":\"token\",\"jwt\":\"eyJhbGciOiJSUzI1NiJ9.") == GW_OK) {
		b64url(data, size, &body);
		if (buf_adds(&body, ".c2ln\"}") == GW_OK)
			token(body.p, body.len);
	}
	buf_release(&body);
	return 0;
}
