/* parse_engine.c - EngineLabs REST bodies: the project made per
 * conversation, billing and 429 limits, and excerpts of error bodies. */
#include "provider/jscan.h"
#include "provider/parse.h"
#include "provider/parse_internal.h"
#include "provider/parse_json.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- project --------------------------------------------------------- */

/* An id given as a string without escapes: its raw bytes are its value. */
static bool plain_url_id(const struct jscan_val *v, char *dst, size_t size)
{
	return v->kind == JSCAN_STRING && !v->esc && parse_url_id(v->p, v->n, dst, size);
}

/* The reply as the upstream writes it, read without jansson: true with
 * *out filled if both ids are plain strings that pass, false when
 * anything is not so (the jansson path then decides, the same way, and
 * clears what this one may have left in *out). */
static bool project_fast(const char *body, size_t n, struct engine_project *out)
{
	struct jscan_val root;
	if (!body || jscan_parse(body, n, NULL, NULL, &root) != JSCAN_OK || root.kind != JSCAN_OBJECT)
		return false;
	struct jscan_val pid = jscan_get(&root, "projectId"), wid = jscan_get(&root, "workspaceId");
	return plain_url_id(&pid, out->project_id, sizeof(out->project_id)) &&
	       plain_url_id(&wid, out->workspace_id, sizeof(out->workspace_id));
}

enum gw_err engine_parse_project(const char *body, size_t n, struct engine_project *out)
{
	memset(out, 0, sizeof(*out));
	return project_fast(body, n, out) ? GW_OK : engine_parse_project_slow(body, n, out);
}

enum gw_err engine_parse_project_slow(const char *body, size_t n, struct engine_project *out)
{
	json_t *root;
	memset(out, 0, sizeof(*out));
	enum gw_err err = parse_json_object(body, n, &root);
	if (err)
		return err;
	if (!parse_json_url_id(json_object_get(root, "projectId"), out->project_id, sizeof(out->project_id),
			       false) ||
	    !parse_json_url_id(json_object_get(root, "workspaceId"), out->workspace_id,
			       sizeof(out->workspace_id), false)) {
		memset(out, 0, sizeof(*out));
		err = GW_EPROTO;
	}
	json_decref(root);
	return err;
}

/* ---- billing --------------------------------------------------------- */

/* A time given as ISO text or as a number of seconds (or milliseconds,
 * which JavaScript backends like to send). 0 when not understood. */
static int64_t time_of(const json_t *v)
{
	int64_t t = 0;
	if (json_is_string(v)) {
		if (!parse_rfc3339(json_string_value(v), json_string_length(v), false, &t))
			return 0;
	} else if (json_is_number(v)) {
		double d = json_number_value(v);
		if (!(d > 0 && d < 1e15))
			return 0;
		t = (int64_t)(d >= 1e11 ? d / 1000 : d);
	}
	return t > 0 ? t : 0;
}

/* Integer fields tolerate a JSON real; anything else leaves *out alone. */
static void long_of(const json_t *v, long *out)
{
	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		*out = x > LONG_MAX ? LONG_MAX : x < LONG_MIN ? LONG_MIN : (long)x;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (isfinite(d) && d > (double)LONG_MIN && d < (double)LONG_MAX)
			*out = (long)d;
	}
}

enum gw_err engine_parse_billing(const char *body, size_t n, struct engine_billing *out)
{
	json_t *root;
	memset(out, 0, sizeof(*out));
	enum gw_err err = parse_json_object(body, n, &root);
	if (err)
		return err;
	const json_t *reached = json_object_get(root, "hasReachedLimit");
	const json_t *limit = json_object_get(root, "limitReached");
	/* 429 bodies carry limitReached without hasReachedLimit; when both
	 * exist the boolean is the authority. */
	if (json_is_boolean(reached))
		out->has_reached_limit = json_is_true(reached);
	else
		out->has_reached_limit = json_is_object(limit);
	out->retry_at = time_of(json_object_get(limit, "retryAt"));
	if (!out->retry_at)
		out->retry_at = time_of(json_object_get(root, "retryAt"));
	long_of(json_object_get(root, "dailyUsage"), &out->daily_usage);
	long_of(json_object_get(root, "dailyLimit"), &out->daily_limit);
	long_of(json_object_get(root, "taskConcurrencyLimit"), &out->task_concurrency_limit);
	if (out->task_concurrency_limit < 0)
		out->task_concurrency_limit = 0;
	json_decref(root);
	return GW_OK;
}

/* ---- error excerpts -------------------------------------------------- */

/* Builds a single printable line into a fixed array: controls become
 * spaces, runs of spaces collapse, invalid UTF-8 becomes '?', and the text
 * is cut before a character that would not fit whole. */
struct line {
	char *out;
	size_t cap, len;   /* cap excludes the NUL */
	bool space, full, in_tag;
};

/* C0/C1 controls, DEL and the Unicode line/paragraph separators. */
static bool is_break(const unsigned char *s, size_t len)
{
	if (len == 1)
		return s[0] < 0x20 || s[0] == 0x7f || s[0] == ' ';
	if (len == 2)
		return s[0] == 0xc2 && s[1] < 0xa0;
	return len == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9);
}

static void line_put(struct line *l, const unsigned char *s, size_t len)
{
	if (l->full)
		return;
	if (is_break(s, len)) {
		l->space = l->len > 0;
		return;
	}
	size_t need = len + (l->space ? 1 : 0);
	if (l->len + need > l->cap) {
		l->full = true;
		return;
	}
	if (l->space)
		l->out[l->len++] = ' ';
	l->space = false;
	memcpy(l->out + l->len, s, len);
	l->len += len;
}

static void line_add(struct line *l, const char *text, size_t n, bool strip_tags)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < n && !l->full) {
		size_t len = gw_utf8_len(s + i, n - i);
		if (strip_tags && (s[i] == '<' || s[i] == '>' || l->in_tag)) {
			/* A tag separates words: "<td>a</td><td>b" reads "a b". */
			l->in_tag = s[i] == '<' || (l->in_tag && s[i] != '>');
			l->space = l->len > 0;
			i += len ? len : 1;
			continue;
		}
		if (len == 0) {
			line_put(l, (const unsigned char *)"?", 1);
			i++;
		} else {
			line_put(l, s + i, len);
			i += len;
		}
	}
}

static void line_add_json(struct line *l, const json_t *v)
{
	line_add(l, json_string_value(v), json_string_length(v), false);
}

/* The human part of a JSON error body: {"error":"X","message":"Y"} gives
 * "X: Y"; {"error":{"message":"Y"}} and Clerk's {"errors":[{"message"}]}
 * give "Y". False if there is none. */
static bool excerpt_json(struct line *l, const json_t *root)
{
	const json_t *e = json_object_get(root, "error");
	const json_t *m = json_object_get(root, "message");
	if (json_is_object(e))
		e = json_object_get(e, "message");
	if (!json_is_string(e) && !json_is_string(m)) {
		const json_t *first = json_array_get(json_object_get(root, "errors"), 0);
		m = json_object_get(first, "long_message");
		if (!json_is_string(m))
			m = json_object_get(first, "message");
	}
	if (json_is_string(e) && json_string_length(e)) {
		line_add_json(l, e);
		if (json_is_string(m) && json_string_length(m) && !json_equal(e, m)) {
			line_add(l, ":", 1, false);
			l->space = true;
			line_add_json(l, m);
		}
	} else if (json_is_string(m) && json_string_length(m)) {
		line_add_json(l, m);
	}
	return l->len > 0;
}

void engine_error_excerpt(const char *body, size_t n, char *out, size_t outlen)
{
	if (!out || outlen == 0)
		return;
	struct line l = { .out = out, .cap = outlen - 1 };
	if (!body)
		n = 0;
	size_t i = 0;
	while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	bool done = false;
	if (i < n && body[i] == '{') {
		json_t *root;
		if (parse_json_object(body, n, &root) == GW_OK) {
			done = excerpt_json(&l, root);
			json_decref(root);
		}
	}
	if (!done) {
		l.len = 0;
		l.space = l.full = false;
		line_add(&l, body, n, i < n && body[i] == '<');
	}
	out[l.len] = '\0';
}
