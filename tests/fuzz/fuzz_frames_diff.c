/* fuzz_frames_diff.c - frame_parse (jscan fast path, jansson fallback)
 * against frame_parse_slow (jansson only) on the same bytes. The items
 * delivered (kind, in_progress, cancelled, id, text, type), their order
 * and the result must be identical, also when the callback stops early.
 *
 * The bytes are tried as a whole message, as the text of an update's
 * buffer (escaped, and spliced raw into the buffer string), and as the
 * text and the id of a chat piece inside a buffer, and after a buffer's
 * closing quote, so the fast path sees mostly valid frames with hostile
 * strings and numbers where it matters. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "provider/parse_internal.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct rec {
	struct buf log;     /* every item, serialised */
	size_t items, stop_at;
	bool full;
};

static bool record(void *arg, const struct frame_item *it)
{
	struct rec *r = arg;
	GW_ASSERT(it->id && it->text && it->type);
	unsigned char head[3] = { (unsigned char)it->kind, it->in_progress, it->cancelled };
	size_t lens[3] = { it->id_len, it->len, it->type_len };
	if (buf_add(&r->log, head, sizeof(head)) || buf_add(&r->log, lens, sizeof(lens)) ||
	    buf_add(&r->log, it->id, it->id_len) || buf_add(&r->log, it->text, it->len) ||
	    buf_add(&r->log, it->type, it->type_len))
		r->full = true;
	r->items++;
	return r->stop_at == 0 || r->items < r->stop_at;
}

static void report(const char *what, const char *msg, size_t n, enum gw_err a, enum gw_err b)
{
	fprintf(stderr, "frame_parse and frame_parse_slow differ (%s): %s vs %s on %zu bytes:\n%.*s\n",
		what, gw_strerror(a), gw_strerror(b), n, (int)(n > 2000 ? 2000 : n), msg);
}

static void compare(const char *msg, size_t n, size_t stop_at)
{
	struct rec fast = { .stop_at = stop_at }, slow = { .stop_at = stop_at };
	buf_init(&fast.log, 1 << 24);
	buf_init(&slow.log, 1 << 24);
	enum gw_err ef = frame_parse(msg, n, record, &fast);
	enum gw_err es = frame_parse_slow(msg, n, record, &slow);
	if (ef != es) {
		report("result", msg, n, ef, es);
		GW_ASSERT(ef == es);
	}
	if (!fast.full && !slow.full &&
	    (fast.log.len != slow.log.len || (fast.log.len && memcmp(fast.log.p, slow.log.p, fast.log.len) != 0))) {
		report("items", msg, n, ef, es);
		GW_ASSERT(!"same items");
	}
	buf_release(&fast.log);
	buf_release(&slow.log);
}

/* Once to the end, once stopped after the first, second or third item. */
static void compare_all(const struct buf *b)
{
	if (!b->p)
		return;
	compare(b->p, b->len, 0);
	compare(b->p, b->len, 1 + b->len % 3);
}

/* The bytes as the buffer of an update: escaped (always valid JSON then,
 * as buf_add_json_str replaces invalid UTF-8) or spliced in raw. */
static void as_buffer(const char *s, size_t n, bool raw)
{
	struct buf f;
	buf_init(&f, 1 << 22);
	if (buf_adds(&f, "{\"type\":\"update\",\"buffer\":\"") == GW_OK &&
	    (raw ? buf_add(&f, s, n) : buf_add_json_str(&f, s, n)) == GW_OK && buf_adds(&f, "\"}") == GW_OK)
		compare_all(&f);
	buf_release(&f);
}

/* The bytes spliced raw into the content string of a chat piece, and into
 * its id, written as the upstream writes a piece (parse_frames.c reads
 * that spelling on a path of its own). */
static void as_piece(const char *s, size_t n, bool id)
{
	struct buf line;
	buf_init(&line, 1 << 21);
	if (buf_adds(&line, id ? "{\"id\":\"" : "{\"id\":\"msg_1\",\"type\":\"chat\",\"chat\":{\"content\":\"") == GW_OK &&
	    buf_add(&line, s, n) == GW_OK &&
	    buf_adds(&line, id ? "\",\"type\":\"chat\",\"chat\":{\"content\":\"x\"}}\n" : "\"}}\n") == GW_OK)
		as_buffer(line.p, line.len, false);
	buf_release(&line);
}

/* The bytes after an update's buffer, in place of its closing brace: what
 * follows the string must be checked on every path that reads it. */
static void as_tail(const char *s, size_t n)
{
	struct buf f;
	buf_init(&f, 1 << 22);
	if (buf_adds(&f, "{\"type\":\"update\",\"buffer\":\"{\\\"id\\\":\\\"m\\\",\\\"type\\\":\\\"chat\\\","
			 "\\\"chat\\\":{\\\"content\\\":\\\"a\\\"}}\\n\"") == GW_OK &&
	    buf_add(&f, s, n) == GW_OK)
		compare_all(&f);
	buf_release(&f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	json_set_alloc_funcs(gw_malloc, gw_free); /* as the gateway does */
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	struct buf whole = { .p = (char *)s, .len = size };
	if (size == 0) {
		compare("", 0, 0);
		return 0;
	}
	compare_all(&whole);
	as_buffer(s, size, false);
	as_buffer(s, size, true);
	as_piece(s, size, false);
	as_piece(s, size, true);
	as_tail(s, size);
	return 0;
}
