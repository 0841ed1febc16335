/* parse_frames.c - WebSocket text messages of the reply stream, and the
 * delta/snapshot tracker for the pieces they carry.
 *
 * frame_parse runs once per piece of every live reply. Its fast path
 * (jscan, no allocation) reads the frames the upstream sends nearly all
 * the time; everything else goes to the jansson path, which parses the
 * outer frame once, each inner line once, and hands out pointers into
 * jansson's strings instead of copying. Both give the same items and
 * result for every input (tests/fuzz/fuzz_frames_diff.c). */
#include "provider/parse.h"
#include "provider/jscan.h"
#include "provider/parse_internal.h"
#include "provider/parse_json.h"

#include <jansson.h>
#include <string.h>

static bool str_is(const json_t *v, const char *s)
{
	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
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
	json_t *obj;
	enum gw_err err = parse_json_object(line, n, &obj);
	if (err)
		return err;
	struct frame_item it;
	item_init(&it);
	classify_inner(obj, &it);
	err = cb(arg, &it) ? GW_OK : GW_ECANCELED;
	json_decref(obj);
	return err;
}

/* The next non-blank line of s[*at..n): an update's buffer holds
 * newline-separated JSON objects, blank lines skipped. */
static bool next_line(const char *s, size_t n, size_t *at, const char **line, size_t *len)
{
	while (*at < n) {
		const char *p = s + *at, *nl = memchr(p, '\n', n - *at);
		size_t l = nl ? (size_t)(nl - p) : n - *at;
		*at += l + (nl ? 1 : 0);
		if (!blank(p, l)) {
			*line = p;
			*len = l;
			return true;
		}
	}
	return false;
}

static enum gw_err parse_buffer(const json_t *buffer, frame_item_cb *cb, void *arg)
{
	if (!json_is_string(buffer))
		return GW_EPROTO;
	const char *s = json_string_value(buffer), *line;
	size_t n = json_string_length(buffer), at = 0, len;
	enum gw_err err = GW_OK;
	while (!err && next_line(s, n, &at, &line, &len))
		err = parse_line(line, len, cb, arg);
	return err;
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

static enum gw_err parse_jansson(const char *msg, size_t n, frame_item_cb *cb, void *arg)
{
	json_t *root;
	enum gw_err err = parse_json_object(msg, n, &root);
	if (err)
		return err;
	err = parse_outer(root, cb, arg);
	json_decref(root);
	return err;
}

/* ---- fast path ---------------------------------------------------------
 *
 * jscan validates a frame exactly as jansson would, the strings are read
 * in place and the update buffer is unescaped into a stack scratch area.
 * The outer frame is validated whole before anything is delivered; then
 * the buffer's lines go out one by one, each from the scanner when it has
 * the usual shape and otherwise through jansson (parse_line), which gives
 * the item or error the jansson path would give for that line. An outer
 * frame the fast path does not handle (invalid JSON, an escaped unknown
 * type...) goes to the jansson path whole. So no item is delivered twice
 * and the result never depends on how much the fast path covers. */

/* Unescaped buffer bytes kept on the stack: every delta frame, and
 * snapshot frames of replies up to about this size; larger ones make one
 * allocation (jansson makes dozens). */
#define FAST_SCRATCH 16384

#define IS(v, lit) jscan_str_eq((v), (lit), sizeof(lit) - 1)

/* What one inner line delivers; a string of kind JSCAN_NONE reads as "". */
struct fast_item {
	enum frame_kind kind;
	struct jscan_val id, text, type;
};

struct outer_keys {
	struct jscan_val type, buffer, state;
};

/* Members are kept as jansson keeps duplicates: the last one wins. */
static void outer_member(void *arg, const struct jscan_val *key, const struct jscan_val *val)
{
	struct outer_keys *o = arg;
	if (IS(key, "type"))
		o->type = *val;
	else if (IS(key, "buffer"))
		o->buffer = *val;
	else if (IS(key, "state"))
		o->state = *val;
}

struct inner_keys {
	struct jscan_val type, id, role, chat, thinking, content, text;
};

static void inner_member(void *arg, const struct jscan_val *key, const struct jscan_val *val)
{
	struct inner_keys *k = arg;
	struct jscan_val *slot = NULL;
	if (IS(key, "type"))
		slot = &k->type;
	else if (IS(key, "id"))
		slot = &k->id;
	else if (IS(key, "chat"))
		slot = &k->chat;
	else if (IS(key, "thinking"))
		slot = &k->thinking;
	else if (IS(key, "role"))
		slot = &k->role;
	else if (IS(key, "content"))
		slot = &k->content;
	else if (IS(key, "text"))
		slot = &k->text;
	if (slot)
		*slot = *val;
}

/* piece_of on jscan values. */
static struct jscan_val fast_piece(const struct inner_keys *k, const struct jscan_val *inner, bool thinking)
{
	struct jscan_val c = jscan_get(inner, "content");
	if (c.kind == JSCAN_STRING || !thinking)
		return c;
	if (inner->kind == JSCAN_STRING)
		return *inner;
	c = jscan_get(inner, "text");
	if (c.kind != JSCAN_STRING)
		c = k->content;
	if (c.kind != JSCAN_STRING)
		c = k->text;
	return c;
}

/* classify_inner on jscan values. */
static void fast_classify(const struct inner_keys *k, struct fast_item *it)
{
	memset(it, 0, sizeof(*it));
	if (IS(&k->role, "user")) {
		it->kind = FRAME_ECHO;
		return;
	}
	bool chat = IS(&k->type, "chat"), thinking = IS(&k->type, "thinking");
	struct jscan_val text = { .kind = JSCAN_NONE };
	if (chat || thinking)
		text = fast_piece(k, chat ? &k->chat : &k->thinking, thinking);
	enum jscan_kind id = k->id.kind;
	if (text.kind != JSCAN_STRING || (id != JSCAN_NONE && id != JSCAN_NULL && id != JSCAN_STRING)) {
		it->kind = FRAME_OTHER;
		if (k->type.kind == JSCAN_STRING)
			it->type = k->type;
		return;
	}
	it->kind = chat ? FRAME_CHAT : FRAME_THINKING;
	it->text = text;
	if (id == JSCAN_STRING)
		it->id = k->id;
}

/* A string value of s[0..n) at *at, just past its opening quote, if the
 * bytes after its closing quote are exactly lit; *at moves past lit. */
static bool str_then(const char *s, size_t n, size_t *at, struct jscan_val *v, const char *lit,
		     size_t lit_len)
{
	size_t q;
	bool esc;
	if (!jscan_str_scan(s + *at, n - *at, &q, &esc))
		return false;
	const char *after = s + *at + q + 1;
	if ((size_t)(s + n - after) < lit_len || memcmp(after, lit, lit_len) != 0)
		return false;
	*v = (struct jscan_val){ .kind = JSCAN_STRING, .esc = esc, .p = s + *at, .n = q };
	*at += q + 1 + lit_len;
	return true;
}

/* A chat piece as the upstream writes it, byte for byte outside its two
 * strings: {"id":"…","type":"chat","chat":{"content":"…"}}. It is checked
 * with two string scans and three compares; any other spelling takes
 * fast_line, which gives the same item for this one. */
#define CHAT_HEAD "{\"id\":\""
#define CHAT_AFTER_ID ",\"type\":\"chat\",\"chat\":{\"content\":\""
#define CHAT_AFTER_TEXT "}}"

static bool chat_line(const char *line, size_t n, struct fast_item *it)
{
	size_t at = sizeof(CHAT_HEAD) - 1;
	struct jscan_val id, text;
	if (n < at || memcmp(line, CHAT_HEAD, at) != 0 ||
	    !str_then(line, n, &at, &id, CHAT_AFTER_ID, sizeof(CHAT_AFTER_ID) - 1) ||
	    !str_then(line, n, &at, &text, CHAT_AFTER_TEXT, sizeof(CHAT_AFTER_TEXT) - 1) || at != n)
		return false;
	memset(it, 0, sizeof(*it));
	it->kind = FRAME_CHAT;
	it->id = id;
	it->text = text;
	return true;
}

/* One inner line; false if jansson must judge it. */
static bool fast_line(const char *line, size_t n, struct fast_item *it)
{
	struct inner_keys k;
	struct jscan_val root;
	memset(&k, 0, sizeof(k));
	if (jscan_parse(line, n, inner_member, &k, &root) != JSCAN_OK || root.kind != JSCAN_OBJECT)
		return false;
	fast_classify(&k, it);
	return true;
}

/* A string of an item, unescaped in place: it lies in the scratch copy of
 * the buffer, and each string is unescaped once, when its item goes out. */
static const char *fast_str(const struct jscan_val *v, size_t *len)
{
	*len = 0;
	if (v->kind != JSCAN_STRING)
		return "";
	*len = v->esc ? jscan_str_decode(v, (char *)v->p) : v->n;
	return v->p;
}

static bool fast_deliver(const struct fast_item *f, frame_item_cb *cb, void *arg)
{
	struct frame_item it;
	item_init(&it);
	it.kind = f->kind;
	it.id = fast_str(&f->id, &it.id_len);
	it.text = fast_str(&f->text, &it.len);
	it.type = fast_str(&f->type, &it.type_len);
	return cb(arg, &it);
}

/* The unescaped buffer s[0..n), line by line: a line of the usual shape
 * goes out from the scanner, any other through jansson, which gives the
 * same item (or error) the jansson path would give for it. */
static enum gw_err fast_lines(char *s, size_t n, frame_item_cb *cb, void *arg)
{
	const char *line;
	size_t at = 0, len;
	enum gw_err err = GW_OK;
	while (!err && next_line(s, n, &at, &line, &len)) {
		struct fast_item f;
		if (chat_line(line, len, &f) || fast_line(line, len, &f)) /* s is ours: strings unescape in place */
			err = fast_deliver(&f, cb, arg) ? GW_OK : GW_ECANCELED;
		else
			err = parse_line(line, len, cb, arg);
	}
	return err;
}

static bool fast_update(const struct jscan_val *buffer, frame_item_cb *cb, void *arg, enum gw_err *err)
{
	char stack[FAST_SCRATCH];
	char *s = buffer->n <= sizeof(stack) ? stack : gw_malloc(buffer->n);
	if (!s)
		return false; /* jansson will meet the same shortage and say so */
	size_t n = jscan_str_decode(buffer, s);
	*err = fast_lines(s, n, cb, arg);
	if (s != stack)
		gw_free(s);
	return true;
}

/* The update frame as the upstream writes it, byte for byte up to the
 * buffer's opening quote. Such a frame is read in one pass: its buffer is
 * checked while it is decoded, and only the closing "} is left to check.
 * Any other spelling (spaces, key order, escapes) takes fast_parse. */
#define UPDATE_HEAD "{\"type\":\"update\",\"buffer\":\""

/* True if a buffer string whose closing quote is at body[quote] ends the
 * frame body[0..bn) exactly: that quote, then the frame's closing brace. */
static bool closes_frame(const char *body, size_t bn, size_t quote)
{
	return quote + 2 == bn && body[bn - 1] == '}';
}

/* The commonest frame of all, a buffer that starts with a chat piece, is
 * matched on its raw bytes, still escaped once:
 *   {\"id\":\"ID\",\"type\":\"chat\",\"chat\":{\"content\":\"TEXT\"}}\n…"}
 * with ID printable ASCII. Only the buffer from TEXT on is decoded, once; the
 * piece's structure is compared, and the lines after it (a batch) go to
 * fast_lines from that same decoded copy. Anything else (an id with
 * escapes, a TEXT that is not one JSON string once the buffer's escapes are
 * undone, anything but a line end after it) fails a check and takes the
 * whole buffer through fast_lines, which gives the same items. */
#define RAW_CHAT_HEAD "{\\\"id\\\":\\\""
#define RAW_CHAT_AFTER_ID "\\\",\\\"type\\\":\\\"chat\\\",\\\"chat\\\":{\\\"content\\\":\\\""
#define CHAT_TAIL "\"}}\n" /* what ends TEXT's line, once the buffer is decoded */

static bool plain_id(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			return false;
	}
	return true;
}

/* True if body[0..bn) (the buffer's string body and the frame's "}) is one
 * such piece; it then went to cb, and *err says how. s has room for bn. */
static bool raw_chat(const char *body, size_t bn, char *s, frame_item_cb *cb, void *arg, enum gw_err *err)
{
	size_t hl = sizeof(RAW_CHAT_HEAD) - 1, al = sizeof(RAW_CHAT_AFTER_ID) - 1, tl = sizeof(CHAT_TAIL) - 1;
	if (bn < hl || memcmp(body, RAW_CHAT_HEAD, hl) != 0)
		return false;
	const char *id = body + hl;
	const char *bs = memchr(id, '\\', bn - hl);
	if (!bs || (size_t)(body + bn - bs) < al || memcmp(bs, RAW_CHAT_AFTER_ID, al) != 0 ||
	    !plain_id(id, (size_t)(bs - id)))
		return false;
	const char *t = bs + al;
	size_t tn = (size_t)(body + bn - t), len, quote, q;
	bool esc;
	if (!jscan_str_take(t, tn, s, &len, &quote) || !closes_frame(t, tn, quote) ||
	    !jscan_str_scan(s, len, &q, &esc) || len - q < tl || memcmp(s + q, CHAT_TAIL, tl) != 0)
		return false;
	struct fast_item f;
	memset(&f, 0, sizeof(f));
	f.kind = FRAME_CHAT;
	f.id = (struct jscan_val){ .kind = JSCAN_STRING, .p = id, .n = (size_t)(bs - id) };
	f.text = (struct jscan_val){ .kind = JSCAN_STRING, .esc = esc, .p = s, .n = q };
	*err = fast_deliver(&f, cb, arg) ? GW_OK : GW_ECANCELED;
	if (!*err)
		*err = fast_lines(s + q + tl, len - q - tl, cb, arg);
	return true;
}

/* True if the frame was handled (*err is then frame_parse's result). */
static bool update_parse(const char *msg, size_t n, frame_item_cb *cb, void *arg, enum gw_err *err)
{
	size_t hl = sizeof(UPDATE_HEAD) - 1;
	if (n < hl + 2 || memcmp(msg, UPDATE_HEAD, hl) != 0)
		return false;
	const char *body = msg + hl;
	size_t bn = n - hl, len, quote;
	char stack[FAST_SCRATCH];
	char *s = bn <= sizeof(stack) ? stack : gw_malloc(bn);
	if (!s)
		return false;
	bool whole = raw_chat(body, bn, s, cb, arg, err);
	if (!whole) {
		whole = jscan_str_take(body, bn, s, &len, &quote) && closes_frame(body, bn, quote);
		if (whole)
			*err = fast_lines(s, len, cb, arg);
	}
	if (s != stack)
		gw_free(s);
	return whole;
}

/* classify_state on jscan values. */
static void fast_state(const struct jscan_val *state, struct frame_item *it)
{
	struct jscan_val ip = { .kind = JSCAN_NONE }, c = { .kind = JSCAN_NONE }, key, val;
	struct jscan_iter iter;
	jscan_iter_init(&iter, state);
	while (jscan_iter_next(&iter, &key, &val)) {
		if (IS(&key, "inProgress"))
			ip = val;
		else if (IS(&key, "cancelled"))
			c = val;
	}
	bool ip_ok = ip.kind == JSCAN_TRUE || ip.kind == JSCAN_FALSE;
	bool c_ok = c.kind == JSCAN_NONE || c.kind == JSCAN_NULL || c.kind == JSCAN_TRUE || c.kind == JSCAN_FALSE;
	if (!ip_ok || !c_ok) {
		it->kind = FRAME_OTHER;
		it->type = "state";
		it->type_len = 5;
		return;
	}
	it->kind = FRAME_STATE;
	it->in_progress = ip.kind == JSCAN_TRUE;
	it->cancelled = c.kind == JSCAN_TRUE;
}

/* True if the frame was handled (*err is then frame_parse's result). */
static bool fast_parse(const char *msg, size_t n, frame_item_cb *cb, void *arg, enum gw_err *err)
{
	struct outer_keys o;
	struct jscan_val root;
	memset(&o, 0, sizeof(o));
	if (jscan_parse(msg, n, outer_member, &o, &root) != JSCAN_OK || root.kind != JSCAN_OBJECT)
		return false;
	if (IS(&o.type, "update")) {
		*err = GW_EPROTO;
		return o.buffer.kind == JSCAN_STRING ? fast_update(&o.buffer, cb, arg, err) : true;
	}
	struct frame_item it;
	item_init(&it);
	if (IS(&o.type, "state")) {
		fast_state(&o.state, &it);
	} else if (IS(&o.type, "history")) {
		it.kind = FRAME_HISTORY;
	} else if (IS(&o.type, "label")) {
		it.kind = FRAME_LABEL;
	} else {
		if (o.type.kind == JSCAN_STRING && o.type.esc)
			return false; /* a rare escaped unknown type: jansson unescapes it */
		it.kind = FRAME_OTHER;
		if (o.type.kind == JSCAN_STRING) {
			it.type = o.type.p;
			it.type_len = o.type.n;
		}
	}
	*err = cb(arg, &it) ? GW_OK : GW_ECANCELED;
	return true;
}

static bool is_pong(const char *msg, size_t n, frame_item_cb *cb, void *arg, enum gw_err *err)
{
	if (n != 4 || memcmp(msg, "pong", 4) != 0)
		return false;
	struct frame_item it;
	item_init(&it);
	it.kind = FRAME_PONG;
	*err = cb(arg, &it) ? GW_OK : GW_ECANCELED;
	return true;
}

enum gw_err frame_parse(const char *msg, size_t n, frame_item_cb *cb, void *arg)
{
	enum gw_err err;
	if (!msg)
		return GW_EPROTO;
	if (is_pong(msg, n, cb, arg, &err) || update_parse(msg, n, cb, arg, &err) ||
	    fast_parse(msg, n, cb, arg, &err))
		return err;
	return parse_jansson(msg, n, cb, arg);
}

enum gw_err frame_parse_slow(const char *msg, size_t n, frame_item_cb *cb, void *arg)
{
	enum gw_err err;
	if (!msg)
		return GW_EPROTO;
	if (is_pong(msg, n, cb, arg, &err))
		return err;
	return parse_jansson(msg, n, cb, arg);
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
