/* fuzz_cookie.c - the pasted cookie and Set-Cookie headers. A value taken
 * must be a non-empty run of cookie-octets found in the input; a refused
 * Set-Cookie must leave the current value alone. */
#include <string.h>

#include "provider/parse.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_value(const struct buf *v, const unsigned char *data, size_t size)
{
	GW_ASSERT(v->len >= 1 && v->len <= 8192);
	for (size_t i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->p[i];
		GW_ASSERT(c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\');
	}
	GW_ASSERT(memmem(data, size, v->p, v->len) != NULL);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	struct buf v;
	buf_init(&v, 16384);
	enum gw_err err = clerk_cookie_parse(s, size, &v);
	GW_ASSERT(err == GW_OK || err == GW_EINVAL || err == GW_ENOMEM);
	if (err == GW_OK)
		check_value(&v, data, size);
	buf_release(&v);

	buf_init(&v, 16384);
	GW_ASSERT(buf_adds(&v, "OLD") == GW_OK);
	if (clerk_set_cookie_client(s, size, &v))
		check_value(&v, data, size);
	else
		GW_ASSERT(v.len == 3 && memcmp(v.p, "OLD", 4) == 0);
	buf_release(&v);
	return 0;
}
