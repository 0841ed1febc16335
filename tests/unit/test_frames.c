/* test_frames.c - WebSocket frames of the reply stream and the piece
 * tracker that turns deltas or snapshots into deltas
 * (src/provider/parse_frames.c). Frame shapes follow tests/sim/sim.js. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/parse.h"
#include "provider/parse_internal.h"

#define LIT(s) (s), (sizeof(s) - 1)

/* ---- collecting items ------------------------------------------------ */

struct item {
	enum frame_kind kind;
	bool in_progress, cancelled;
	char id[64], text[512], type[64];
	size_t len;
};

struct got {
	int n;
	int stop_after; /* 0 = never stop */
	struct item v[32];
};

static void copy(char *dst, size_t size, const char *s, size_t n)
{
	GW_ASSERT(s != NULL && n < size);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static bool collect(void *arg, const struct frame_item *it)
{
	struct got *g = arg;
	GW_ASSERT(g->n < (int)GW_ARRAY_LEN(g->v));
	struct item *o = &g->v[g->n++];
	o->kind = it->kind;
	o->in_progress = it->in_progress;
	o->cancelled = it->cancelled;
	copy(o->id, sizeof(o->id), it->id, it->id_len);
	copy(o->text, sizeof(o->text), it->text, it->len);
	copy(o->type, sizeof(o->type), it->type, it->type_len);
	o->len = it->len;
	return g->stop_after == 0 || g->n < g->stop_after;
}

static enum gw_err parse(const char *msg, struct got *g)
{
	int stop = g->stop_after;
	memset(g, 0, sizeof(*g));
	g->stop_after = stop;
	return frame_parse(msg, strlen(msg), collect, g);
}

/* An update frame as the simulator builds it: the buffer is JSON text
 * inside a JSON string (jansson does the escaping). */
static char *update_frame(const char *buffer)
{
	json_t *f = json_pack("{s:s, s:s}", "type", "update", "buffer", buffer);
	GW_ASSERT(f != NULL);
	char *s = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	GW_ASSERT(s != NULL);
	return s;
}

static enum gw_err parse_update(const char *buffer, struct got *g)
{
	char *f = update_frame(buffer);
	enum gw_err err = parse(f, g);
	gw_free(f);
	return err;
}

static void assert_item(const struct item *it, enum frame_kind kind, const char *id, const char *text)
{
	assert_int_equal(it->kind, kind);
	assert_string_equal(it->id, id);
	assert_string_equal(it->text, text);
	assert_int_equal(it->len, strlen(text));
}

static void assert_other(const char *msg, const char *type)
{
	struct got g = { 0 };
	enum gw_err err = parse(msg, &g);
	if (err != GW_OK)
		fail_msg("'%s': %s", msg, gw_strerror(err));
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].kind, FRAME_OTHER);
	assert_string_equal(g.v[0].type, type);
}

static void assert_inner_other(const char *buffer, const char *type)
{
	struct got g = { 0 };
	enum gw_err err = parse_update(buffer, &g);
	if (err != GW_OK)
		fail_msg("buffer '%s': %s", buffer, gw_strerror(err));
	assert_int_equal(g.n, 1);
	if (g.v[0].kind != FRAME_OTHER)
		fail_msg("buffer '%s' gave kind %d", buffer, g.v[0].kind);
	assert_string_equal(g.v[0].type, type);
}

static void assert_proto(const char *msg, int items_before)
{
	struct got g = { 0 };
	enum gw_err err = parse(msg, &g);
	if (err != GW_EPROTO)
		fail_msg("'%s' gave %s, want EPROTO", msg, gw_strerror(err));
	assert_int_equal(g.n, items_before);
}

/* ---- outer frames ---------------------------------------------------- */

static void test_simple_frames(void **state)
{
	(void)state;
	struct got g = { 0 };
	assert_int_equal(parse("pong", &g), GW_OK);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].kind, FRAME_PONG);
	assert_int_equal(parse("{\"type\":\"history\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
			       "{\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":\"yo\"}]}", &g), GW_OK);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].kind, FRAME_HISTORY);
	assert_int_equal(parse("{\"type\":\"label\",\"label\":\"Say hello\"}", &g), GW_OK);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].kind, FRAME_LABEL);
	/* Items of ignored kinds still carry safe empty strings. */
	assert_string_equal(g.v[0].id, "");
	assert_string_equal(g.v[0].type, "");
}

static void test_state_frames(void **state)
{
	(void)state;
	struct got g = { 0 };
	assert_int_equal(parse("{\"type\":\"state\",\"state\":{\"inProgress\":true,\"cancelled\":false,"
			       "\"taskId\":\"task_1a2b\"}}", &g), GW_OK);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].kind, FRAME_STATE);
	assert_true(g.v[0].in_progress);
	assert_false(g.v[0].cancelled);
	assert_int_equal(parse("{\"type\":\"state\",\"state\":{\"inProgress\":false,\"cancelled\":true,"
			       "\"taskId\":null}}", &g), GW_OK);
	assert_false(g.v[0].in_progress);
	assert_true(g.v[0].cancelled);
	assert_int_equal(parse("{\"type\":\"state\",\"state\":{\"inProgress\":false}}", &g), GW_OK);
	assert_int_equal(g.v[0].kind, FRAME_STATE);
	assert_false(g.v[0].cancelled);
	/* A state we cannot read must not end a reply: FRAME_OTHER. */
	assert_other("{\"type\":\"state\",\"state\":{\"cancelled\":false}}", "state");
	assert_other("{\"type\":\"state\",\"state\":{\"inProgress\":\"no\"}}", "state");
	assert_other("{\"type\":\"state\",\"state\":{\"inProgress\":0}}", "state");
	assert_other("{\"type\":\"state\",\"state\":{\"inProgress\":true,\"cancelled\":1}}", "state");
	assert_other("{\"type\":\"state\",\"state\":true}", "state");
	assert_other("{\"type\":\"state\"}", "state");
}

static void test_unknown_outer(void **state)
{
	(void)state;
	assert_other("{\"type\":\"surprise\",\"data\":{\"note\":\"unknown frame type\"}}", "surprise");
	assert_other("{\"type\":\"error\",\"message\":\"x\"}", "error");
	assert_other("{\"data\":1}", "");
	assert_other("{\"type\":7}", "");
	assert_other("{\"type\":null}", "");
	assert_other("{}", "");
	assert_other("{\"type\":\"p\\u00e9ng\"}", "p\xc3\xa9ng");
}

static void test_malformed_outer(void **state)
{
	(void)state;
	assert_proto("{\"type\":\"update\",\"buffer\":\"{not json", 0); /* the simulator's fault */
	assert_proto("", 0);
	assert_proto("ping", 0);
	assert_proto("pong\n", 0);
	assert_proto("Pong", 0);
	assert_proto("null", 0);
	assert_proto("[]", 0);
	assert_proto("[{\"type\":\"history\"}]", 0);
	assert_proto("\"update\"", 0);
	assert_proto("{\"type\":\"state\"} {}", 0);
	assert_proto("{\"type\":\"update\"}", 0);
	assert_proto("{\"type\":\"update\",\"buffer\":null}", 0);
	assert_proto("{\"type\":\"update\",\"buffer\":{\"id\":\"m\"}}", 0);
	assert_proto("{\"type\":\"update\",\"buffer\":\"\\u0000\"}", 0);
	assert_proto("{\"type\":\"label\",\"label\":\"\xff\"}", 0); /* invalid UTF-8 */
	assert_int_equal(frame_parse(NULL, 0, collect, NULL), GW_EPROTO);
	/* Only n bytes are read. */
	struct got g = { 0 };
	assert_int_equal(frame_parse("pongpong", 4, collect, &g), GW_OK);
	assert_int_equal(g.v[0].kind, FRAME_PONG);
	assert_int_equal(frame_parse("{\"type\":\"label\"}garbage", 16, collect, &g), GW_OK);
	assert_int_equal(g.v[1].kind, FRAME_LABEL);
}

/* ---- update buffers -------------------------------------------------- */

static void test_update_chat(void **state)
{
	(void)state;
	struct got g = { 0 };
	/* Exactly as on the wire (see the brief and tests/sim/sim.js). */
	assert_int_equal(parse("{\"type\":\"update\",\"buffer\":\"{\\\"id\\\":\\\"msg_1\\\",\\\"type\\\":"
			       "\\\"chat\\\",\\\"chat\\\":{\\\"content\\\":\\\"Hel\\\"}}\\n\"}", &g), GW_OK);
	assert_int_equal(g.n, 1);
	assert_item(&g.v[0], FRAME_CHAT, "msg_1", "Hel");

	/* Echo, thinking, answer and a tool call in one buffer, with blank
	 * lines, CRLF and no final newline. */
	assert_int_equal(parse_update(
		"{\"role\":\"user\",\"content\":\"hi there\"}\n"
		"\n"
		"{\"id\":\"msg_t\",\"type\":\"thinking\",\"thinking\":{\"content\":\"Thinking \"}}\r\n"
		"  \n"
		"{\"id\":\"msg_a\",\"type\":\"chat\",\"chat\":{\"content\":\"Hello\"}}\n"
		"{\"id\":\"tool_1\",\"type\":\"tool_call\",\"tool_call\":{\"name\":\"read_file\","
		"\"arguments\":{\"path\":\"README.md\"},\"status\":\"completed\"}}\n"
		"{\"id\":\"msg_a\",\"type\":\"chat\",\"chat\":{\"content\":\" world\"}}", &g), GW_OK);
	assert_int_equal(g.n, 5);
	assert_int_equal(g.v[0].kind, FRAME_ECHO);
	assert_item(&g.v[1], FRAME_THINKING, "msg_t", "Thinking ");
	assert_item(&g.v[2], FRAME_CHAT, "msg_a", "Hello");
	assert_int_equal(g.v[3].kind, FRAME_OTHER);
	assert_string_equal(g.v[3].type, "tool_call");
	assert_item(&g.v[4], FRAME_CHAT, "msg_a", " world");

	/* An empty or blank buffer has no items. */
	assert_int_equal(parse_update("", &g), GW_OK);
	assert_int_equal(g.n, 0);
	assert_int_equal(parse_update("\n\n \r\n", &g), GW_OK);
	assert_int_equal(g.n, 0);
	/* An empty piece is still a piece. */
	assert_int_equal(parse_update("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"\"}}\n", &g),
			 GW_OK);
	assert_item(&g.v[0], FRAME_CHAT, "m", "");
	/* A missing or null id reads as "". */
	assert_int_equal(parse_update("{\"type\":\"chat\",\"chat\":{\"content\":\"x\"}}\n"
				      "{\"id\":null,\"type\":\"chat\",\"chat\":{\"content\":\"y\"}}\n", &g), GW_OK);
	assert_item(&g.v[0], FRAME_CHAT, "", "x");
	assert_item(&g.v[1], FRAME_CHAT, "", "y");
}

static void test_update_unicode(void **state)
{
	(void)state;
	struct got g = { 0 };
	/* Raw UTF-8, and \u escapes inside the inner JSON (a surrogate pair). */
	assert_int_equal(parse_update("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":"
				      "\"h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82\"}}\n"
				      "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":"
				      "\"\\u00e9\\ud83d\\ude42\\n\\\"q\\\"\"}}\n", &g), GW_OK);
	assert_int_equal(g.n, 2);
	assert_item(&g.v[0], FRAME_CHAT, "m",
		    "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82");
	assert_item(&g.v[1], FRAME_CHAT, "m", "\xc3\xa9\xf0\x9f\x99\x82\n\"q\"");
	/* A NUL escape in a piece is refused by jansson: the line is malformed. */
	assert_int_equal(parse_update("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"a\\u0000b\"}}",
				      &g), GW_EPROTO);
}

static void test_update_thinking_sources(void **state)
{
	(void)state;
	struct got g = { 0 };
	assert_int_equal(parse_update(
		"{\"id\":\"t\",\"type\":\"thinking\",\"thinking\":{\"content\":\"a\",\"text\":\"no\"},\"content\":\"no\"}\n"
		"{\"id\":\"t\",\"type\":\"thinking\",\"thinking\":\"b\"}\n"
		"{\"id\":\"t\",\"type\":\"thinking\",\"thinking\":{\"text\":\"c\"}}\n"
		"{\"id\":\"t\",\"type\":\"thinking\",\"content\":\"d\",\"text\":\"no\"}\n"
		"{\"id\":\"t\",\"type\":\"thinking\",\"text\":\"e\"}\n"
		"{\"id\":\"t\",\"type\":\"thinking\",\"thinking\":{\"content\":5},\"content\":\"f\"}\n", &g),
		GW_OK);
	assert_int_equal(g.n, 6);
	const char *want[] = { "a", "b", "c", "d", "e", "f" };
	for (int i = 0; i < 6; i++)
		assert_item(&g.v[i], FRAME_THINKING, "t", want[i]);
	assert_inner_other("{\"id\":\"t\",\"type\":\"thinking\",\"thinking\":{\"content\":null}}", "thinking");
	assert_inner_other("{\"id\":\"t\",\"type\":\"thinking\"}", "thinking");
}

static void test_update_wrong_types(void **state)
{
	(void)state;
	/* Pieces that are not strings are logged, never crash or pass as text. */
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":42}}", "chat");
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":null}}", "chat");
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":[\"a\"]}}", "chat");
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\",\"chat\":\"text\"}", "chat");
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\",\"content\":\"top\"}", "chat");
	assert_inner_other("{\"id\":\"m\",\"type\":\"chat\"}", "chat");
	assert_inner_other("{\"id\":7,\"type\":\"chat\",\"chat\":{\"content\":\"x\"}}", "chat");
	assert_inner_other("{\"id\":{},\"type\":\"thinking\",\"thinking\":{\"content\":\"x\"}}", "thinking");
	assert_inner_other("{\"id\":\"x\",\"type\":\"image\",\"image\":{}}", "image");
	assert_inner_other("{\"id\":\"x\",\"type\":\"CHAT\",\"chat\":{\"content\":\"x\"}}", "CHAT");
	assert_inner_other("{\"id\":\"x\",\"type\":1}", "");
	assert_inner_other("{\"id\":\"x\"}", "");
	assert_inner_other("{\"role\":\"assistant\",\"content\":\"x\"}", "");
	assert_inner_other("{\"role\":5,\"content\":\"x\"}", "");
	/* A user echo never passes as answer text, whatever else it says. */
	struct got g = { 0 };
	assert_int_equal(parse_update("{\"role\":\"user\",\"type\":\"chat\",\"chat\":{\"content\":\"p\"}}", &g),
			 GW_OK);
	assert_int_equal(g.v[0].kind, FRAME_ECHO);
}

static void test_update_malformed_inner(void **state)
{
	(void)state;
	struct got g = { 0 };
	/* The simulator's inner fault. */
	assert_proto("{\"type\":\"update\",\"buffer\":\"{not json\\n\"}", 0);
	/* Items before the bad line stay delivered. */
	assert_int_equal(parse_update("{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"a\"}}\n"
				      "{not json\n"
				      "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"b\"}}\n", &g),
			 GW_EPROTO);
	assert_int_equal(g.n, 1);
	assert_item(&g.v[0], FRAME_CHAT, "m", "a");
	static const char *const bad[] = {
		"[1]\n", "\"chat\"\n", "42\n", "null\n", "{\"a\":1} {\"b\":2}\n", "{\"a\":1}}\n",
		"{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"a\n\"}}\n", /* split by a raw newline */
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
		enum gw_err err = parse_update(bad[i], &g);
		if (err != GW_EPROTO)
			fail_msg("buffer %zu gave %s", i, gw_strerror(err));
	}
}

static void test_stop(void **state)
{
	(void)state;
	struct got g = { .stop_after = 2 };
	const char *buffer = "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"a\"}}\n"
			     "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"b\"}}\n"
			     "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"c\"}}\n"
			     "{bad\n";
	assert_int_equal(parse_update(buffer, &g), GW_ECANCELED);
	assert_int_equal(g.n, 2);
	assert_item(&g.v[1], FRAME_CHAT, "m", "b");
	g.stop_after = 1;
	assert_int_equal(parse_update(buffer, &g), GW_ECANCELED);
	assert_int_equal(g.n, 1);
	g.stop_after = 4;
	assert_int_equal(parse_update(buffer, &g), GW_EPROTO);
	assert_int_equal(g.n, 3);
	g.stop_after = 1;
	assert_int_equal(parse("pong", &g), GW_ECANCELED);
	assert_int_equal(parse("{\"type\":\"state\",\"state\":{\"inProgress\":false}}", &g), GW_ECANCELED);
	assert_int_equal(parse("{\"type\":\"surprise\"}", &g), GW_ECANCELED);
	assert_int_equal(g.n, 1);
}

/* No crash or leak when any allocation fails (jansson may then report a
 * syntax error or silently drop bytes: see test_parse_clerk.c). The fast
 * path allocates nothing for such a frame, so the jansson path is driven
 * directly. */
static void test_alloc_failures(void **state)
{
	(void)state;
	char *f = update_frame("{\"role\":\"user\",\"content\":\"hi\"}\n"
			       "{\"id\":\"msg_a\",\"type\":\"chat\",\"chat\":{\"content\":\"Hello\"}}\n");
	bool ok = false;
	for (unsigned long k = 1; k < 300 && !ok; k++) {
		struct got g = { 0 };
		gw_alloc_fail_at(k);
		enum gw_err err = frame_parse_slow(f, strlen(f), collect, &g);
		gw_alloc_fail_at(0);
		assert_true(err == GW_OK || err == GW_ENOMEM || err == GW_EPROTO);
		ok = err == GW_OK && g.n == 2 && g.v[1].kind == FRAME_CHAT &&
		     strcmp(g.v[1].text, "Hello") == 0;
	}
	assert_true(ok);
	gw_free(f);
}

/* ---- fast path against the jansson path ------------------------------ */

/* Every item, serialised, so two runs compare with one memcmp. */
struct log {
	struct buf b;
	size_t items, stop_after;
};

static bool log_item(void *arg, const struct frame_item *it)
{
	struct log *l = arg;
	unsigned char head[3] = { (unsigned char)it->kind, it->in_progress, it->cancelled };
	size_t lens[3] = { it->id_len, it->len, it->type_len };
	GW_ASSERT(buf_add(&l->b, head, sizeof(head)) == GW_OK && buf_add(&l->b, lens, sizeof(lens)) == GW_OK &&
		  buf_add(&l->b, it->id, it->id_len) == GW_OK && buf_add(&l->b, it->text, it->len) == GW_OK &&
		  buf_add(&l->b, it->type, it->type_len) == GW_OK);
	l->items++;
	return l->stop_after == 0 || l->items < l->stop_after;
}

/* frame_parse and frame_parse_slow agree on msg, stopping after 0 (never)
 * to 12 items; returns the full run's result and item count. */
static enum gw_err same_both_ways(const char *msg, size_t n, size_t *items)
{
	enum gw_err first = GW_OK;
	for (size_t stop = 0; stop <= 12; stop++) {
		struct log fast = { .stop_after = stop }, slow = { .stop_after = stop };
		buf_init(&fast.b, 1 << 24);
		buf_init(&slow.b, 1 << 24);
		enum gw_err ef = frame_parse(msg, n, log_item, &fast);
		enum gw_err es = frame_parse_slow(msg, n, log_item, &slow);
		if (ef != es || fast.b.len != slow.b.len || (fast.b.len && memcmp(fast.b.p, slow.b.p, fast.b.len)))
			fail_msg("stop %zu: fast %s (%zu items), slow %s (%zu items) on '%.*s'", stop,
				 gw_strerror(ef), fast.items, gw_strerror(es), slow.items, (int)(n > 300 ? 300 : n), msg);
		if (stop == 0) {
			first = ef;
			*items = fast.items;
		}
		buf_release(&fast.b);
		buf_release(&slow.b);
	}
	return first;
}

/* Whether frame_parse took msg without a single allocation (so without
 * jansson): the next allocation is made to fail, and must still fail after. */
static bool allocation_free(const char *msg, enum gw_err want)
{
	struct got g = { 0 };
	gw_alloc_fail_at(1);
	enum gw_err err = frame_parse(msg, strlen(msg), collect, &g);
	void *p = gw_malloc(1);
	gw_alloc_fail_at(0);
	gw_free(p);
	return err == want && p == NULL;
}

static void check_both(bool fast, const char *msg, enum gw_err want, size_t want_items)
{
	size_t items = 0;
	enum gw_err err = same_both_ways(msg, strlen(msg), &items);
	if (err != want || items != want_items)
		fail_msg("'%s': %s with %zu items, want %s with %zu", msg, gw_strerror(err), items, gw_strerror(want),
			 want_items);
	if (allocation_free(msg, want) != fast)
		fail_msg("'%s' %s the fast path", msg, fast ? "missed" : "took");
}

enum { SLOW, FAST };

/* A chat piece as the upstream spells it, escaped as a buffer holds it,
 * and an update frame around a buffer. */
#define PIECE(id, text) "{\\\"id\\\":\\\"" id "\\\",\\\"type\\\":\\\"chat\\\",\\\"chat\\\":{\\\"content\\\":\\\"" text "\\\"}}"
#define UPDATE_OPEN "{\"type\":\"update\",\"buffer\":\""
#define UPDATE(buffer) UPDATE_OPEN buffer "\"}"

static void test_fast_matches_slow(void **state)
{
	(void)state;
	/* Shapes the fast path reads itself... */
	check_both(FAST, UPDATE(PIECE("msg_1", "Hel") "\\n"), GW_OK, 1);
	check_both(FAST, " {\"buffer\" : \"\\r\\n{ \\\"chat\\\" : {\\\"x\\\":[1,{}],\\\"content\\\":\\\"a\\\\n\\\\u00e9\\\"} ,"
		   "\\\"type\\\":\\\"ch\\\\u0061t\\\", \\\"id\\\":null, \\\"id\\\":\\\"m\\\\\\\"q\\\"}\\n\\t\\n\" ,"
		   "\"type\" : \"update\", \"extra\":[true,-1.5e-3,{\"a\":null}]} ", GW_OK, 1);
	check_both(FAST, "{\"t\\u0079pe\":\"state\",\"state\":{\"cancelled\":true,\"inProgress\":false,\"inProgress\":true}}",
		   GW_OK, 1);
	check_both(FAST, "{\"type\":\"state\",\"state\":{\"inProgress\":true,\"cancelled\":\"no\"}}", GW_OK, 1);
	check_both(FAST, "{\"type\":\"state\",\"state\":[{\"inProgress\":true}]}", GW_OK, 1);
	check_both(FAST, "{\"type\":\"history\",\"messages\":[]}", GW_OK, 1);
	check_both(FAST, "{\"type\":\"label\",\"type\":\"odd\",\"label\":\"x\"}", GW_OK, 1);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":7}", GW_EPROTO, 0);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"\"}", GW_OK, 0);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"{\\\"role\\\":\\\"user\\\"}\\n{\\\"type\\\":\\\"tool_call\\\"}\\n"
		   "{\\\"type\\\":\\\"thinking\\\",\\\"thinking\\\":\\\"t\\\\ud83d\\\\ude42\\\"}\"}", GW_OK, 3);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"{}\"} ", GW_OK, 1);
	/* The upstream's exact spelling, which parse_frames.c reads on paths
	 * of its own, next to near misses of it: all must give what jansson
	 * gives. */
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"{\\\"id\\\":\\\"m\\\\u0061\\\",\\\"type\\\":\\\"chat\\\","
		   "\\\"chat\\\":{\\\"content\\\":\\\"x\\\\\\\"}}\\\"}}\\n\"}", GW_OK, 1);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"{\\\"id\\\":\\\"m\\\",\\\"type\\\":\\\"chat\\\","
		   "\\\"chat\\\":{\\\"content\\\":\\\"a\\\"},\\\"x\\\":1}\\n\"}", GW_OK, 1);
	check_both(FAST, UPDATE(PIECE("m", "a") " \\r\\n"), GW_OK, 1);
	check_both(FAST, "{\"type\":\"update\",\"buffer\":\"{}\\n\"}\n", GW_OK, 1);
	/* ...and shapes it hands to jansson: the whole frame, or a line of an
	 * update that is not of the usual shape. */
	check_both(SLOW, "{\"type\":\"upd\\u0061te\",\"type\":\"s\\u00e9\",\"buffer\":\"\"}", GW_OK, 1);
	check_both(SLOW, UPDATE(PIECE("m", "a") "\\n[1]\\n"), GW_EPROTO, 1);
	check_both(SLOW, UPDATE(PIECE("m", "a") "\\n{\\\"n\\\":1e999}\\n"), GW_EPROTO, 1);
	check_both(SLOW, "{\"type\":\"update\",\"buffer\":\"{}\"} x", GW_EPROTO, 0);
	check_both(SLOW, "{\"type\":\"update\",\"buffer\":\"\xff\"}", GW_EPROTO, 0);
	/* What follows the exact spellings is checked too. */
	check_both(SLOW, "{\"type\":\"update\",\"buffer\":\"{}\"x", GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m", "a") "x\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m", "a\\u0001") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE_OPEN "{}\"x}", GW_EPROTO, 0);
	check_both(SLOW, UPDATE_OPEN PIECE("m", "a") "\\n\"x", GW_EPROTO, 0);
	check_both(SLOW, UPDATE_OPEN PIECE("m", "a") "\\n\"x}", GW_EPROTO, 0);
	check_both(SLOW, "[{\"type\":\"update\",\"buffer\":\"{}\"}]", GW_EPROTO, 0);
	/* A buffer that starts with a piece is matched on the raw frame
	 * (raw_chat), the lines after it read from the same copy: near misses. */
	check_both(FAST, UPDATE(PIECE("m", "a") "\\n" PIECE("m", "b") "\\n"), GW_OK, 2);
	check_both(FAST, UPDATE(PIECE("m", "a") "\\n{\\\"role\\\":\\\"user\\\"}\\n\\n" PIECE("n", "b")), GW_OK, 3);
	check_both(FAST, UPDATE(PIECE("m", "a\\\\nb\\\\\\\"c\\\\\\\\") "\\n"), GW_OK, 1);
	check_both(FAST, UPDATE(PIECE("m\xc3\xa9", "a") "\\n"), GW_OK, 1);
	check_both(FAST, UPDATE(PIECE("", "") "\\n"), GW_OK, 1);
	check_both(FAST, UPDATE(PIECE("m", "a")), GW_OK, 1);
	check_both(SLOW, UPDATE(PIECE("m", "a\\nb") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m\"x", "a") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m\xff", "a") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m\x01", "a") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE(PIECE("m", "a\\\\") "\\n"), GW_EPROTO, 0);
	check_both(SLOW, UPDATE("{\\\"id\\\":\\\"m\\\",\\\"type\\\":\\\"chat\\\",\\\"chat\\\":{\\\"content\\\":\\\"a\\\"}]\\n"),
		   GW_EPROTO, 0);
}

/* Many lines in one update: every item goes out, in order, and a stop
 * among them holds. */
static void test_fast_many_lines(void **state)
{
	(void)state;
	char buffer[4096] = "";
	for (int i = 0; i < 20; i++) {
		char line[128];
		snprintf(line, sizeof(line), i % 5 == 4 ? "{\"role\":\"user\",\"content\":\"%d\"}\n"
			 : "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"p\\\"%d\"}}\n", i);
		strcat(buffer, line);
	}
	char *f = update_frame(buffer);
	size_t items = 0;
	assert_int_equal(same_both_ways(f, strlen(f), &items), GW_OK);
	assert_int_equal(items, 20);
	assert_true(allocation_free(f, GW_OK));
	struct got g = { .stop_after = 11 };
	assert_int_equal(parse(f, &g), GW_ECANCELED);
	assert_int_equal(g.n, 11);
	assert_item(&g.v[8], FRAME_CHAT, "m", "p\"8");
	assert_int_equal(g.v[9].kind, FRAME_ECHO);
	assert_item(&g.v[10], FRAME_CHAT, "m", "p\"10");
	gw_free(f);
}

/* A buffer past the stack scratch area is unescaped into an allocation;
 * if that fails, the jansson path takes the frame. */
static void test_fast_big_frame(void **state)
{
	(void)state;
	static char buffer[40000];
	char *p = buffer + sprintf(buffer, "{\"id\":\"m\",\"type\":\"chat\",\"chat\":{\"content\":\"");
	for (int i = 0; i < 5000; i++)
		p += sprintf(p, "w%d\\n ", i % 10);
	strcpy(p, "\"}}\n");
	char *f = update_frame(buffer);
	size_t items = 0;
	assert_int_equal(same_both_ways(f, strlen(f), &items), GW_OK);
	assert_int_equal(items, 1);
	/* The log allocates nothing during the call, so the failed allocation
	 * is the fast path's, and jansson still reads the frame. */
	struct log l = { 0 };
	buf_init(&l.b, 1 << 20);
	assert_int_equal(buf_reserve(&l.b, 1 << 16), GW_OK);
	gw_alloc_fail_at(1);
	assert_int_equal(frame_parse(f, strlen(f), log_item, &l), GW_OK);
	void *next = gw_malloc(1);
	gw_alloc_fail_at(0);
	assert_non_null(next); /* the failure was used up inside frame_parse */
	gw_free(next);
	assert_int_equal(l.items, 1);
	size_t lens[3];
	memcpy(lens, l.b.p + 3, sizeof(lens));
	assert_int_equal(lens[1], 5000 * 4); /* "wN\n " */
	buf_release(&l.b);
	gw_free(f);
}

/* ---- piece tracker --------------------------------------------------- */

struct feed {
	struct piece_tracker t;
	char out[4096];
	size_t len;
};

static enum gw_err feed(struct feed *f, const char *id, const char *piece, const char *want)
{
	const char *d = NULL;
	size_t dl = 12345;
	enum gw_err err = piece_tracker_feed(&f->t, id, strlen(id), piece, strlen(piece), &d, &dl);
	if (err)
		return err;
	assert_non_null(d);
	GW_ASSERT(f->len + dl < sizeof(f->out));
	memcpy(f->out + f->len, d, dl);
	f->len += dl;
	f->out[f->len] = '\0';
	if (want && (dl != strlen(want) || memcmp(d, want, dl) != 0))
		fail_msg("piece '%s': emitted '%.*s', want '%s'", piece, (int)dl, d, want);
	return GW_OK;
}

#define FEED(f, id, piece, want) assert_int_equal(feed((f), (id), (piece), (want)), GW_OK)

static void test_tracker_delta(void **state)
{
	(void)state;
	struct feed f = { 0 };
	piece_tracker_init(&f.t, 1 << 20);
	FEED(&f, "m1", "Hel", "Hel");
	FEED(&f, "m1", "lo", "lo");
	FEED(&f, "m1", " world", " world");
	FEED(&f, "m1", "", "");
	assert_false(f.t.snapshot);
	assert_string_equal(f.out, "Hello world");
	/* A delta equal to the text so far is not longer: still a delta. */
	FEED(&f, "m2", "ab", "ab");
	FEED(&f, "m2", "ab", "ab");
	assert_false(f.t.snapshot);
	/* Under two bytes of text nothing switches (the documented threshold). */
	FEED(&f, "m3", "a", "a");
	FEED(&f, "m3", "ab", "ab");
	assert_false(f.t.snapshot);
	piece_tracker_release(&f.t);
	piece_tracker_release(&f.t); /* release twice is harmless */
}

static void test_tracker_snapshot_sim(void **state)
{
	(void)state;
	struct feed f = { 0 };
	piece_tracker_init(&f.t, 1 << 20);
	/* The simulator's snapshot mode: "w1 ", "w1 w2 ", "w1 w2 w3 "... */
	FEED(&f, "msg_a", "w1 ", "w1 ");
	FEED(&f, "msg_a", "w1 w2 ", "w2 ");
	assert_true(f.t.snapshot);
	FEED(&f, "msg_a", "w1 w2 w3 ", "w3 ");
	FEED(&f, "msg_a", "w1 w2 w3 w4", "w4");
	/* A repeated or shorter snapshot adds nothing. */
	FEED(&f, "msg_a", "w1 w2 w3 w4", "");
	FEED(&f, "msg_a", "w1 w2", "");
	FEED(&f, "msg_a", "w1 w2 w3 w4 w5", " w5");
	assert_string_equal(f.out, "w1 w2 w3 w4 w5");
	/* A new message id starts over in delta mode. */
	f.len = 0;
	FEED(&f, "msg_b", "w1 w2", "w1 w2");
	assert_false(f.t.snapshot);
	FEED(&f, "msg_b", "w1 w2 w3", " w3");
	assert_true(f.t.snapshot);
	FEED(&f, "msg_c", "w1", "w1");
	assert_false(f.t.snapshot);
	piece_tracker_release(&f.t);
}

static void test_tracker_unicode(void **state)
{
	(void)state;
	struct feed f = { 0 };
	piece_tracker_init(&f.t, 1 << 20);
	/* The simulator's [unicode] reply in pairs of code points, as snapshots. */
	FEED(&f, "m", "h\xc3\xa9", "h\xc3\xa9");
	FEED(&f, "m", "h\xc3\xa9ll", "ll");
	FEED(&f, "m", "h\xc3\xa9llo ", "o ");
	FEED(&f, "m", "h\xc3\xa9llo w\xc3\xb6", "w\xc3\xb6");
	FEED(&f, "m", "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82",
	     "rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82");
	assert_string_equal(f.out, "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82");
	piece_tracker_release(&f.t);
}

static void test_tracker_rewrite(void **state)
{
	(void)state;
	struct feed f = { 0 };
	piece_tracker_init(&f.t, 1 << 20);
	FEED(&f, "m", "w1 ", "w1 ");
	FEED(&f, "m", "w1 w2 ", "w2 ");
	/* The upstream rewrote the start: only what lies beyond is new. */
	FEED(&f, "m", "W1 w2 w3 ", "w3 ");
	FEED(&f, "m", "W1 w2 w3 w4", "w4");      /* extends the rewritten text */
	FEED(&f, "m", "X", "");
	assert_string_equal(f.out, "w1 w2 w3 w4");
	/* A rewrite never makes a delta start inside a character. */
	f.len = 0;
	FEED(&f, "n", "ab", "ab");
	FEED(&f, "n", "abc", "c");
	FEED(&f, "n", "a\xe4\xbd\xa0\xe5\xa5\xbd", "\xe5\xa5\xbd"); /* byte 3 is inside 你 */
	FEED(&f, "n", "a\xe4\xbd\xa0\xe5\xa5\xbd!", "!");
	piece_tracker_release(&f.t);
}

static void test_tracker_limits(void **state)
{
	(void)state;
	struct feed f = { 0 };
	piece_tracker_init(&f.t, 5);
	FEED(&f, "m", "abc", "abc");
	assert_int_equal(feed(&f, "m", "def", NULL), GW_ELIMIT);
	FEED(&f, "x", "abcde", "abcde");
	assert_int_equal(feed(&f, "toolongid", "a", NULL), GW_ELIMIT);
	piece_tracker_release(&f.t);

	/* NULL id and piece are empty ones. */
	const char *d;
	size_t dl;
	piece_tracker_init(&f.t, 64);
	assert_int_equal(piece_tracker_feed(&f.t, NULL, 0, NULL, 0, &d, &dl), GW_OK);
	assert_int_equal(dl, 0);
	assert_int_equal(piece_tracker_feed(&f.t, NULL, 0, "hi", 2, &d, &dl), GW_OK);
	assert_int_equal(dl, 2);
	assert_memory_equal(d, "hi", 2);
	piece_tracker_release(&f.t);

	piece_tracker_init(&f.t, 1 << 20);
	gw_alloc_fail_at(1);
	assert_int_equal(feed(&f, "m", "abc", NULL), GW_ENOMEM);
	gw_alloc_fail_at(0);
	piece_tracker_release(&f.t);
}

/* Random text of mixed-width characters, a few hundred bytes. */
static size_t random_text(char *out, size_t max)
{
	static const char *const ch[] = { "a", "b", "c", "d", "e", "f", "g", " ", ".", "\n",
					  "\xc3\xa9", "\xc3\xb6", "\xe4\xbd\xa0", "\xe5\xa5\xbd",
					  "\xf0\x9f\x99\x82", "w1", "Z" };
	size_t n = 0, want = (size_t)(rand() % 300);
	while (n < want) {
		const char *c = ch[rand() % (int)GW_ARRAY_LEN(ch)];
		size_t l = strlen(c);
		if (n + l >= max)
			break;
		memcpy(out + n, c, l);
		n += l;
	}
	out[n] = '\0';
	return n;
}

/* A random cut point at a character boundary in (from, n]. */
static size_t cut_after(const char *s, size_t n, size_t from)
{
	size_t at = from + 1 + (size_t)(rand() % 12);
	if (at > n)
		at = n;
	while (at < n && ((unsigned char)s[at] & 0xc0) == 0x80)
		at++;
	return at;
}

static void emit(struct piece_tracker *t, const char *id, const char *p, size_t n, char *out,
		 size_t *olen)
{
	const char *d;
	size_t dl;
	assert_int_equal(piece_tracker_feed(t, id, strlen(id), p, n, &d, &dl), GW_OK);
	memcpy(out + *olen, d, dl);
	*olen += dl;
}

static void test_tracker_random_delta(void **state)
{
	(void)state;
	srand(12345);
	for (int round = 0; round < 2000; round++) {
		char text[400], out[400];
		size_t n = random_text(text, sizeof(text)), olen = 0, at = 0;
		struct piece_tracker t;
		piece_tracker_init(&t, 1 << 16);
		while (at < n) {
			size_t next = cut_after(text, n, at);
			/* A delta that starts with all the text so far (2+ bytes) and is
			 * longer is indistinguishable from a snapshot by definition:
			 * re-cut instead of feeding the one ambiguous case. */
			if (at >= 2 && next - at > at && memcmp(text + at, text, at) == 0)
				next = at + 1; /* one character: never longer than the text */
			while (next < n && ((unsigned char)text[next] & 0xc0) == 0x80)
				next++;
			emit(&t, "msg", text + at, next - at, out, &olen);
			at = next;
		}
		if (olen != n || memcmp(out, text, n) != 0)
			fail_msg("round %d: deltas do not add up to the text", round);
		assert_false(t.snapshot);
		piece_tracker_release(&t);
	}
}

static void test_tracker_random_snapshot(void **state)
{
	(void)state;
	srand(54321);
	for (int round = 0; round < 2000; round++) {
		char text[400], out[400];
		size_t n = random_text(text, sizeof(text)), olen = 0;
		struct piece_tracker t;
		piece_tracker_init(&t, 1 << 16);
		/* The first piece has at least 2 bytes (the detection threshold);
		 * later ones are growing prefixes, sometimes repeated once the
		 * tracker knows they are snapshots (before that a repeat is a
		 * legitimate delta). */
		size_t at = cut_after(text, n, n >= 2 ? 1 : 0);
		emit(&t, "msg", text, at, out, &olen);
		while (at < n) {
			if (rand() % 5 != 0 || !t.snapshot)
				at = cut_after(text, n, at);
			emit(&t, "msg", text, at, out, &olen);
		}
		if (t.snapshot)
			emit(&t, "msg", text, n, out, &olen); /* a final duplicate */
		if (olen != n || memcmp(out, text, n) != 0)
			fail_msg("round %d: %zu bytes emitted for %zu of text", round, olen, n);
		piece_tracker_release(&t);
	}
}

/* End to end as the stream sees it: the simulator's frames in both modes,
 * parsed, fed to one tracker per kind, reassembled. */
struct stream {
	struct piece_tracker chat, think;
	char text[512], reasoning[128];
	size_t tlen, rlen;
};

static bool on_item(void *arg, const struct frame_item *it)
{
	struct stream *s = arg;
	const char *d;
	size_t dl;
	if (it->kind == FRAME_CHAT) {
		GW_ASSERT(piece_tracker_feed(&s->chat, it->id, it->id_len, it->text, it->len, &d, &dl) == GW_OK);
		memcpy(s->text + s->tlen, d, dl);
		s->tlen += dl;
	} else if (it->kind == FRAME_THINKING) {
		GW_ASSERT(piece_tracker_feed(&s->think, it->id, it->id_len, it->text, it->len, &d, &dl) == GW_OK);
		memcpy(s->reasoning + s->rlen, d, dl);
		s->rlen += dl;
	}
	return true;
}

static void run_stream(bool snapshot, int per_frame)
{
	static const char *const words[] = { "Nice ", "to ", "meet ", "you, ", "J\xc3\xb6rg ", "\xf0\x9f\x99\x82." };
	static const char *const thoughts[] = { "Thinking ", "about ", "it." };
	struct stream s = { 0 };
	piece_tracker_init(&s.chat, 4096);
	piece_tracker_init(&s.think, 4096);
	char sofar[256] = "";
	char buffer[2048] = "";
	int in_frame = 0;
	assert_int_equal(frame_parse(LIT("{\"type\":\"state\",\"state\":{\"inProgress\":true,"
					     "\"cancelled\":false,\"taskId\":\"task_1\"}}"), on_item, &s), GW_OK);
	for (size_t i = 0; i < GW_ARRAY_LEN(thoughts) + GW_ARRAY_LEN(words); i++) {
		char line[512];
		if (i < GW_ARRAY_LEN(thoughts)) {
			snprintf(line, sizeof(line), "{\"id\":\"msg_t\",\"type\":\"thinking\",\"thinking\":"
				 "{\"content\":\"%s\"}}\n", thoughts[i]);
		} else {
			strcat(sofar, words[i - GW_ARRAY_LEN(thoughts)]);
			snprintf(line, sizeof(line), "{\"id\":\"msg_a\",\"type\":\"chat\",\"chat\":"
				 "{\"content\":\"%s\"}}\n", snapshot ? sofar : words[i - GW_ARRAY_LEN(thoughts)]);
		}
		strcat(buffer, line);
		if (++in_frame == per_frame || i + 1 == GW_ARRAY_LEN(thoughts) + GW_ARRAY_LEN(words)) {
			char *f = update_frame(buffer);
			assert_int_equal(frame_parse(f, strlen(f), on_item, &s), GW_OK);
			gw_free(f);
			buffer[0] = '\0';
			in_frame = 0;
		}
	}
	s.text[s.tlen] = '\0';
	s.reasoning[s.rlen] = '\0';
	assert_string_equal(s.text, "Nice to meet you, J\xc3\xb6rg \xf0\x9f\x99\x82.");
	assert_string_equal(s.reasoning, "Thinking about it.");
	piece_tracker_release(&s.chat);
	piece_tracker_release(&s.think);
}

static void test_stream_end_to_end(void **state)
{
	(void)state;
	run_stream(false, 1);
	run_stream(true, 1);
	run_stream(false, 3); /* the simulator's [batch] */
	run_stream(true, 3);
}

int main(void)
{
	json_set_alloc_funcs(gw_malloc, gw_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_frames),
		cmocka_unit_test(test_state_frames),
		cmocka_unit_test(test_unknown_outer),
		cmocka_unit_test(test_malformed_outer),
		cmocka_unit_test(test_update_chat),
		cmocka_unit_test(test_update_unicode),
		cmocka_unit_test(test_update_thinking_sources),
		cmocka_unit_test(test_update_wrong_types),
		cmocka_unit_test(test_update_malformed_inner),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_fast_matches_slow),
		cmocka_unit_test(test_fast_many_lines),
		cmocka_unit_test(test_fast_big_frame),
		cmocka_unit_test(test_tracker_delta),
		cmocka_unit_test(test_tracker_snapshot_sim),
		cmocka_unit_test(test_tracker_unicode),
		cmocka_unit_test(test_tracker_rewrite),
		cmocka_unit_test(test_tracker_limits),
		cmocka_unit_test(test_tracker_random_delta),
		cmocka_unit_test(test_tracker_random_snapshot),
		cmocka_unit_test(test_stream_end_to_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
