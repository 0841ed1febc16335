/* histories.c - parser of the chat list (GET /engine-agent/chat-histories). */
#include "provider/histories.h"
#include "provider/parse_json.h"

#include <jansson.h>
#include <string.h>

bool histories_parse_time(const char *s, size_t n, int64_t *out)
{
	return parse_rfc3339(s, n, true, out);
}

static int64_t time_field(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	int64_t t = 0;
	if (!json_is_string(v) || !histories_parse_time(json_string_value(v), json_string_length(v), &t))
		return 0;
	return t;
}

enum gw_err engine_parse_histories(const char *body, size_t n, struct engine_histories *out)
{
	json_t *root;
	memset(out, 0, sizeof(*out));
	enum gw_err err = parse_json_object(body, n, &root);
	if (err)
		return err;
	const json_t *list = json_object_get(root, "chatHistories");
	if (!json_is_array(list)) {
		json_decref(root);
		return GW_EPROTO;
	}
	out->has_more = json_is_true(json_object_get(root, "hasMore"));
	size_t i;
	const json_t *o;
	json_array_foreach(list, i, o) {
		if (out->n == HISTORIES_MAX) {
			out->has_more = true;
			break;
		}
		struct engine_history *h = &out->item[out->n];
		if (!json_is_object(o) || !parse_json_url_id(json_object_get(o, "id"), h->id, sizeof(h->id), false)) {
			memset(h, 0, sizeof(*h));
			out->skipped++;
			continue;
		}
		/* Only an explicit false says idle. */
		h->in_progress = !json_is_false(json_object_get(o, "inProgress"));
		h->created = time_field(o, "createdAt");
		h->updated = time_field(o, "updatedAt");
		out->n++;
	}
	json_decref(root);
	return GW_OK;
}
