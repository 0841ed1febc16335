/* fuzz_sse_roundtrip.c - arbitrary bytes as reply text: the delta chunk
 * must always be one valid SSE event of valid JSON, and when the input was
 * valid UTF-8 without NUL the parsed content must equal it exactly. */
#include <jansson.h>
#include <string.h>

#include "front/openai.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Independent of buf.c on purpose: the oracle must not share its bugs. */
static bool valid_utf8_no_nul(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct oai_stream s;
	if (!s.id[0])
		oai_stream_init(&s, "fuzz-model");
	bool reasoning = size > 0 && (data[0] & 1);
	struct buf b;
	buf_init(&b, (size_t)64 << 20);
	enum gw_err e = oai_sse_delta(&b, &s, (const char *)data, size, reasoning);
	GW_ASSERT(e == GW_OK);
	GW_ASSERT(b.len > 8 && memcmp(b.p, "data: ", 6) == 0);
	GW_ASSERT(memcmp(b.p + b.len - 2, "\n\n", 2) == 0);
	GW_ASSERT(memchr(b.p, '\n', b.len - 2) == NULL); /* one line: SSE framing holds */
	GW_ASSERT(memchr(b.p, '\r', b.len) == NULL);
	json_error_t je;
	json_t *j = json_loadb(b.p + 6, b.len - 8, JSON_ALLOW_NUL, &je);
	GW_ASSERT(j != NULL);
	json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
	json_t *c = json_object_get(json_object_get(ch, "delta"),
				    reasoning ? "reasoning_content" : "content");
	GW_ASSERT(json_is_string(c));
	GW_ASSERT(strcmp(json_string_value(json_object_get(j, "id")), s.id) == 0);
	if (valid_utf8_no_nul(data, size)) {
		GW_ASSERT(json_string_length(c) == size);
		GW_ASSERT(size == 0 || memcmp(json_string_value(c), data, size) == 0);
	}
	json_decref(j);
	buf_release(&b);
	return 0;
}
