/* fuzz_engine_json.c - REST bodies: project (its fast path against the
 * jansson-only parser), billing (the input also as a retryAt string) and
 * error excerpts, which must always be one line of valid UTF-8 within the
 * given size. */
#include <string.h>

#include "provider/parse_internal.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_id(const char *id)
{
	size_t n = strlen(id);
	GW_ASSERT(n > 0 && n < 128);
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		GW_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-');
	}
}

/* Independent UTF-8 check: no controls (C0, DEL, C1), no cut sequences. */
static void check_line(const unsigned char *s, size_t outlen)
{
	size_t n = strlen((const char *)s), i = 0;
	GW_ASSERT(n < outlen);
	GW_ASSERT(n == 0 || (s[0] != ' ' && s[n - 1] != ' '));
	while (i < n) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		GW_ASSERT(len && i + len <= n && c >= 0x20 && c != 0x7f && c != 0xc0 && c != 0xc1);
		for (size_t k = 1; k < len; k++)
			GW_ASSERT((s[i + k] & 0xc0) == 0x80);
		GW_ASSERT(!(c == 0xc2 && s[i + 1] < 0xa0));
		i += len;
	}
}

static void billing(const char *body, size_t n)
{
	struct engine_billing b;
	enum gw_err err = engine_parse_billing(body, n, &b);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_ENOMEM);
	GW_ASSERT(b.retry_at >= 0 && b.task_concurrency_limit >= 0);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	struct engine_project p, q;
	enum gw_err err = engine_parse_project(s, size, &p);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_ENOMEM);
	GW_ASSERT(engine_parse_project_slow(s, size, &q) == err);
	GW_ASSERT(memcmp(&p, &q, sizeof(p)) == 0);
	if (err == GW_OK) {
		check_id(p.project_id);
		check_id(p.workspace_id);
	}
	billing(s, size);

	char out[257];
	size_t outlen = size ? 1 + data[0] % 256 : sizeof(out);
	engine_error_excerpt(s, size, out, outlen);
	check_line((const unsigned char *)out, outlen);
	engine_error_excerpt(s, size, out, sizeof(out));
	check_line((const unsigned char *)out, sizeof(out));

	/* The bytes as a retry time, in a 429 body and at the top level. */
	struct buf body;
	buf_init(&body, 1 << 20);
	if (buf_adds(&body, "{\"limitReached\":{\"type\":\"daily\",\"retryAt\":\"") == GW_OK &&
	    buf_add_json_str(&body, s, size) == GW_OK && buf_adds(&body, "\"}}") == GW_OK)
		billing(body.p, body.len);
	buf_reset(&body);
	if (buf_adds(&body, "{\"hasReachedLimit\":true,\"retryAt\":\"") == GW_OK &&
	    buf_add_json_str(&body, s, size) == GW_OK && buf_adds(&body, "\"}") == GW_OK)
		billing(body.p, body.len);
	buf_release(&body);
	return 0;
}
