/* cleanup_rule.h - which upstream chats the clean-up may delete, and the
 * record that proves a chat is ours. Pure functions, unit-tested.
 *
 * The chat list of the upstream does not carry the project name we give
 * our chats ("enginelabs-2api <rid>"), and its ids are made by the
 * upstream, so nothing in the list tells our chats from the ones the user
 * made in the web app. The proof is ours: when the gateway opens a chat it
 * stores "own:<chatHistoryId>" with the account that owns it. A chat
 * without that record is never deleted. */
#ifndef GW_CORE_CLEANUP_RULE_H
#define GW_CORE_CLEANUP_RULE_H

#include "gw.h"

/* The ownership record "own:<chat id>" (and what it says). */
struct cleanup_own {
	char account[64];        /* account id (never a cookie) */
	char workspace[128];
	int64_t noted;           /* unix seconds the record was (re)written */
};

/* Writes the record's value: "v1 <account> <workspace> <noted>". GW_EINVAL
 * when a field is empty, too long or holds a space or control byte. */
enum gw_err cleanup_own_format(const struct cleanup_own *o, char *out, size_t n) GW_MUSTCHECK;
/* Reads it back; false for anything else (a record we cannot read proves
 * nothing, so its chat is kept). */
bool cleanup_own_parse(const char *v, size_t len, struct cleanup_own *out);

/* What is known about one listed chat. */
struct cleanup_facts {
	bool owned;              /* an own: record names the account being swept */
	bool in_progress;        /* the list says a reply is running (or could not say) */
	bool head_present;       /* "head:<id>" is in the store: a mapping can still reach the chat */
	int64_t created, updated; /* from the list, 0 = unknown */
	int64_t noted;           /* from the own: record */
};

enum cleanup_verdict {
	CLEAN_DELETE,
	CLEAN_KEEP_NOT_OURS,     /* made by the user, by another account, or unknown to us */
	CLEAN_KEEP_BUSY,         /* a reply is running */
	CLEAN_KEEP_LIVE,         /* its conversation mapping is still alive */
	CLEAN_KEEP_RECENT,       /* used too recently, or its times are unknown */
};

/* A chat is deleted only if it is ours, idle, has no live mapping, and was
 * last used (the latest of created, updated and noted) at least
 * store_ttl + grace_s ago. The head expires store_ttl after the last reply
 * was saved, so the extra grace_s (the request timeout) covers a request
 * that read the head just before it expired and is still on its way to the
 * chat POST; it also spares a chat whose first reply is still running. */
enum cleanup_verdict cleanup_decide(const struct cleanup_facts *f, int64_t now, int64_t store_ttl,
				    int64_t grace_s);

const char *cleanup_verdict_name(enum cleanup_verdict v);

#endif
