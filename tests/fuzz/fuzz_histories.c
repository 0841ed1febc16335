/* fuzz_histories.c - the chat list the clean-up reads
 * (GET /engine-agent/chat-histories), the ownership record it reads back
 * from the store, and the rule fed with whatever they gave: ids stay safe
 * for URLs, counts within bounds, and a chat not proven ours, busy or with
 * a live mapping is never judged deletable. */
#include <string.h>

#include "core/cleanup_rule.h"
#include "provider/histories.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_id(const char *id)
{
	size_t n = strlen(id);
	GW_ASSERT(n > 0 && n < 128);
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		GW_ASSERT((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-');
	}
}

static struct engine_histories h;

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *s = (const char *)data;
	enum gw_err err = engine_parse_histories(s, size, &h);
	GW_ASSERT(err == GW_OK || err == GW_EPROTO || err == GW_ENOMEM);
	GW_ASSERT(h.n <= HISTORIES_MAX);
	if (err != GW_OK)
		GW_ASSERT(h.n == 0);

	struct cleanup_own own;
	bool owned = cleanup_own_parse(s, size, &own);
	if (owned) {
		GW_ASSERT(own.noted > 0 && own.account[0] && own.workspace[0]);
		char back[400];
		GW_ASSERT(cleanup_own_format(&own, back, sizeof(back)) == GW_OK);
		GW_ASSERT(strlen(back) == size && memcmp(back, s, size) == 0);
	}

	int64_t t;
	if (histories_parse_time(s, size, &t))
		GW_ASSERT(t > 0);

	for (size_t i = 0; i < h.n; i++) {
		const struct engine_history *e = &h.item[i];
		check_id(e->id);
		GW_ASSERT(e->created >= 0 && e->updated >= 0);
		int64_t now = size ? (int64_t)data[0] << 24 : 0;
		struct cleanup_facts f = {
			.owned = owned,
			.in_progress = e->in_progress,
			.head_present = size && (data[size - 1] & 1),
			.created = e->created,
			.updated = e->updated,
			.noted = owned ? own.noted : 0,
		};
		enum cleanup_verdict v = cleanup_decide(&f, e->updated + now, size, (int64_t)i);
		if (v == CLEAN_DELETE)
			GW_ASSERT(f.owned && !f.in_progress && !f.head_present);
	}
	return 0;
}
