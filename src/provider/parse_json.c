/* parse_json.c - jansson helpers shared by parse_clerk.c and parse_engine.c. */
#include "provider/parse_json.h"

#include <string.h>

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
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	memcpy(dst, s, n + 1);
	return true;
}

bool parse_digits(const char **p, const char *end, int k, int *out)
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

bool parse_expect(const char **p, const char *end, char c)
{
	if (*p < end && **p == c) {
		(*p)++;
		return true;
	}
	return false;
}
