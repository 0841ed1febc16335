/* fuzz_frames.c - frame_parse on arbitrary bytes, both as a whole message
 * and as the buffer of an update frame, with every chat/thinking piece fed
 * to a piece tracker. Items must be well-formed and deltas must be
 * suffixes of their pieces. */
#include <string.h>

#include "provider/parse.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

struct ctx {
	struct piece_tracker chat, think;
	size_t items, stop_at;
	size_t fed, emitted;
	unsigned sum;
};

/* Reads every byte so ASan sees any pointer past its string. */
static unsigned touch(const char *s, size_t n)
{
	unsigned x = 0;
	for (size_t i = 0; i < n; i++)
		x = x * 31 + (unsigned char)s[i];
	return x;
}

static bool on_item(void *arg, const struct frame_item *it)
{
	struct ctx *c = arg;
	GW_ASSERT(it->kind >= FRAME_HISTORY && it->kind <= FRAME_OTHER);
	GW_ASSERT(it->id && it->text && it->type);
	c->sum += touch(it->id, it->id_len) + touch(it->text, it->len) + touch(it->type, it->type_len);
	if (it->kind == FRAME_CHAT || it->kind == FRAME_THINKING) {
		struct piece_tracker *t = it->kind == FRAME_CHAT ? &c->chat : &c->think;
		const char *d;
		size_t dl;
		if (piece_tracker_feed(t, it->id, it->id_len, it->text, it->len, &d, &dl) == GW_OK) {
			GW_ASSERT(dl <= it->len && d + dl == it->text + it->len);
			c->fed += it->len;
			c->emitted += dl;
		}
	} else {
		GW_ASSERT(it->len == 0 && it->id_len == 0);
	}
	if (it->kind != FRAME_OTHER)
		GW_ASSERT(it->type_len == 0);
	c->items++;
	return c->stop_at == 0 || c->items < c->stop_at;
}

static void run(const char *msg, size_t n, size_t stop_at)
{
	struct ctx c = { .stop_at = stop_at };
	piece_tracker_init(&c.chat, 1 << 16);
	piece_tracker_init(&c.think, 1 << 16);
	enum gw_err err = frame_parse(msg, n, on_item, &c);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_ENOMEM || err == GW_ECANCELED);
	if (err == GW_ECANCELED)
		GW_ASSERT(stop_at && c.items == stop_at);
	GW_ASSERT(c.emitted <= c.fed);
	piece_tracker_release(&c.chat);
	piece_tracker_release(&c.think);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	run(s, size, 0);
	run(s, size, 1);
	/* The same bytes as the JSON text inside an update's buffer string. */
	struct buf f;
	buf_init(&f, 1 << 20);
	if (buf_adds(&f, "{\"type\":\"update\",\"buffer\":\"") == GW_OK &&
	    buf_add_json_str(&f, s, size) == GW_OK && buf_adds(&f, "\"}") == GW_OK) {
		run(f.p, f.len, 0);
		run(f.p, f.len, 2);
	}
	buf_release(&f);
	return 0;
}
