/* histories.c - parser of the chat list (GET /engine-agent/chat-histories). */
#include "provider/histories.h"
#include "provider/parse_json.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

/* Stricter than parse_engine.c's reader of retry times (seconds and a zone
 * are required): a time here decides whether a chat is deleted, so only
 * the shape the upstream sends is taken, anything else is "unknown". */
bool histories_parse_time(const char *s, size_t n, int64_t *out)
{
	const char *p = s, *end = s + n;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	if (!parse_digits(&p, end, 4, &y) || !parse_expect(&p, end, '-') || !parse_digits(&p, end, 2, &mo) ||
	    !parse_expect(&p, end, '-') || !parse_digits(&p, end, 2, &d) || !parse_expect(&p, end, 'T') ||
	    !parse_digits(&p, end, 2, &h) || !parse_expect(&p, end, ':') || !parse_digits(&p, end, 2, &mi) ||
	    !parse_expect(&p, end, ':') || !parse_digits(&p, end, 2, &sec))
		return false;
	if (parse_expect(&p, end, '.')) {
		const char *f = p;
		while (p < end && *p >= '0' && *p <= '9' && p - f < 9)
			p++;
		if (p == f)
			return false;
	}
	if (parse_expect(&p, end, 'Z')) {
		sign = 0;
	} else if (p < end && (*p == '+' || *p == '-')) {
		sign = *p++ == '-' ? -1 : 1;
		if (!parse_digits(&p, end, 2, &oh) || !parse_expect(&p, end, ':') || !parse_digits(&p, end, 2, &om))
			return false;
	} else {
		return false;
	}
	if (p != end || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return false;
	struct tm tm = { 0 };
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	int64_t t = (int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60);
	if (t <= 0)
		return false;
	*out = t;
	return true;
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
