/* parse_frames.c - WebSocket text messages of the reply stream, and the
 * delta/snapshot tracker for the pieces they carry.
 *
 * frame_parse runs once per piece of every live reply, so it parses the
 * outer frame once, each inner line once, and hands out pointers into
 * jansson's strings instead of copying. */
#include "provider/parse.h"

#include <jansson.h>
#include <string.h>

static bool str_is(const json_t *v, const char *s)
{
	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

static enum gw_err load_error(const json_error_t *jerr)
{
	return json_error_code(jerr) == json_error_out_of_memory ? GW_ENOMEM : GW_EPROTO;
}

static void item_other(struct frame_item *it, const json_t *type)
{
	it->kind = FRAME_OTHER;
	if (json_is_string(type)) {
		it->type = json_string_value(type);
		it->type_len = json_string_length(type);
	}
}

/* The piece of a chat or thinking object: its "content" if that is a
 * string. A thinking object may also be the string itself. */
static const json_t *piece_of(const json_t *obj, const json_t *inner, bool thinking)
{
	const json_t *c = json_object_get(inner, "content");
	if (json_is_string(c) || !thinking)
		return c;
	if (json_is_string(inner))
		return inner;
	c = json_object_get(inner, "text");
	if (!json_is_string(c))
		c = json_object_get(obj, "content");
	if (!json_is_string(c))
		c = json_object_get(obj, "text");
	return c;
}

/* Fills it from one inner object of an update buffer. Anything not of the
 * exact expected shape becomes FRAME_OTHER (logged by the caller). */
static void classify_inner(const json_t *obj, struct frame_item *it)
{
	const json_t *type = json_object_get(obj, "type");
	const json_t *id = json_object_get(obj, "id");
	/* The echo is checked first: a prompt must never pass as answer text. */
	if (str_is(json_object_get(obj, "role"), "user")) {
		it->kind = FRAME_ECHO;
		return;
	}
	bool chat = str_is(type, "chat"), thinking = str_is(type, "thinking");
	const json_t *text = NULL;
	if (chat || thinking)
		text = piece_of(obj, json_object_get(obj, chat ? "chat" : "thinking"), thinking);
	if (!json_is_string(text) || (id && !json_is_null(id) && !json_is_string(id))) {
		item_other(it, type);
		return;
	}
	it->kind = chat ? FRAME_CHAT : FRAME_THINKING;
	it->text = json_string_value(text);
	it->len = json_string_length(text);
	if (json_is_string(id)) {
		it->id = json_string_value(id);
		it->id_len = json_string_length(id);
	}
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static void item_init(struct frame_item *it)
{
	memset(it, 0, sizeof(*it));
	it->id = it->text = it->type = "";
}

static enum gw_err parse_line(const char *line, size_t n, frame_item_cb *cb, void *arg)
{
	json_error_t jerr;
	json_t *obj = json_loadb(line, n, 0, &jerr);
	if (!obj)
		return load_error(&jerr);
	enum gw_err err = GW_EPROTO;
	if (json_is_object(obj)) {
		struct frame_item it;
		item_init(&it);
		classify_inner(obj, &it);
		err = cb(arg, &it) ? GW_OK : GW_ECANCELED;
	}
	json_decref(obj);
	return err;
}

/* An update's buffer: newline-separated JSON objects, blank lines skipped. */
static enum gw_err parse_buffer(const json_t *buffer, frame_item_cb *cb, void *arg)
{
	if (!json_is_string(buffer))
		return GW_EPROTO;
	const char *s = json_string_value(buffer);
	size_t n = json_string_length(buffer);
	while (n) {
		const char *nl = memchr(s, '\n', n);
		size_t len = nl ? (size_t)(nl - s) : n;
		if (!blank(s, len)) {
			enum gw_err err = parse_line(s, len, cb, arg);
			if (err)
				return err;
		}
		if (!nl)
			break;
		s = nl + 1;
		n -= len + 1;
	}
	return GW_OK;
}

/* state.inProgress must be a boolean (a missing one must not end a reply);
 * cancelled is optional. Otherwise the frame is FRAME_OTHER. */
static void classify_state(const json_t *type, const json_t *state, struct frame_item *it)
{
	const json_t *ip = json_object_get(state, "inProgress");
	const json_t *cancelled = json_object_get(state, "cancelled");
	if (!json_is_boolean(ip) || (cancelled && !json_is_null(cancelled) && !json_is_boolean(cancelled))) {
		item_other(it, type);
		return;
	}
	it->kind = FRAME_STATE;
	it->in_progress = json_is_true(ip);
	it->cancelled = json_is_true(cancelled);
}

static enum gw_err parse_outer(const json_t *root, frame_item_cb *cb, void *arg)
{
	const json_t *type = json_object_get(root, "type");
	struct frame_item it;
	item_init(&it);
	if (str_is(type, "update"))
		return parse_buffer(json_object_get(root, "buffer"), cb, arg);
	if (str_is(type, "state"))
		classify_state(type, json_object_get(root, "state"), &it);
	else if (str_is(type, "history"))
		it.kind = FRAME_HISTORY;
	else if (str_is(type, "label"))
		it.kind = FRAME_LABEL;
	else
		item_other(&it, type);
	return cb(arg, &it) ? GW_OK : GW_ECANCELED;
}

enum gw_err frame_parse(const char *msg, size_t n, frame_item_cb *cb, void *arg)
{
	if (!msg)
		return GW_EPROTO;
	if (n == 4 && memcmp(msg, "pong", 4) == 0) {
		struct frame_item it;
		item_init(&it);
		it.kind = FRAME_PONG;
		return cb(arg, &it) ? GW_OK : GW_ECANCELED;
	}
	json_error_t jerr;
	json_t *root = json_loadb(msg, n, 0, &jerr);
	if (!root)
		return load_error(&jerr);
	enum gw_err err = json_is_object(root) ? parse_outer(root, cb, arg) : GW_EPROTO;
	json_decref(root);
	return err;
}

/* ---- piece tracker --------------------------------------------------- */

void piece_tracker_init(struct piece_tracker *t, size_t max_bytes)
{
	buf_init(&t->id, max_bytes);
	buf_init(&t->text, max_bytes);
	t->snapshot = false;
}

void piece_tracker_release(struct piece_tracker *t)
{
	buf_release(&t->id);
	buf_release(&t->text);
	t->snapshot = false;
}

/* Skips UTF-8 continuation bytes so a delta never starts mid-character. */
static size_t char_start(const char *s, size_t n, size_t at)
{
	while (at < n && ((unsigned char)s[at] & 0xc0) == 0x80)
		at++;
	return at;
}

static enum gw_err switch_id(struct piece_tracker *t, const char *id, size_t id_len)
{
	if (t->id.len == id_len && (id_len == 0 || memcmp(t->id.p, id, id_len) == 0))
		return GW_OK;
	buf_reset(&t->id);
	buf_reset(&t->text);
	t->snapshot = false;
	return buf_add(&t->id, id, id_len);
}

/* A snapshot piece: only what lies beyond the known text is new. If the
 * piece rewrote the known part, the rewrite cannot be taken back from the
 * client, so it is not emitted; the piece still becomes the reference for
 * the next ones. */
static enum gw_err feed_snapshot(struct piece_tracker *t, const char *piece, size_t n,
				 size_t *from)
{
	size_t known = t->text.len;
	*from = n;
	if (n <= known)
		return GW_OK;
	if (memcmp(piece, t->text.p, known) == 0) {
		*from = known;
		return buf_add(&t->text, piece + known, n - known);
	}
	*from = char_start(piece, n, known);
	buf_reset(&t->text);
	return buf_add(&t->text, piece, n);
}

enum gw_err piece_tracker_feed(struct piece_tracker *t, const char *id, size_t id_len,
			       const char *piece, size_t n, const char **delta, size_t *dlen)
{
	size_t from = 0;
	if (!piece) {
		piece = "";
		n = 0;
	}
	*delta = piece;
	*dlen = 0;
	enum gw_err err = switch_id(t, id ? id : "", id ? id_len : 0);
	if (err)
		return err;
	size_t known = t->text.len;
	if (!t->snapshot && known >= 2 && n > known && memcmp(piece, t->text.p, known) == 0)
		t->snapshot = true;
	if (t->snapshot)
		err = feed_snapshot(t, piece, n, &from);
	else
		err = buf_add(&t->text, piece, n);
	if (err)
		return err;
	*delta = piece + from;
	*dlen = n - from;
	return GW_OK;
}
