/* histories.h - the account's chat list, GET /engine-agent/chat-histories
 * (docs/upstream-protocol.md): a pure parser of the upstream's bytes, used
 * by the clean-up of expired upstream chats (src/core/cleanup.c). */
#ifndef GW_PROVIDER_HISTORIES_H
#define GW_PROVIDER_HISTORIES_H

#include "gw.h"

/* One page is all we ever ask for (pageSize <= this); more entries in a
 * body are ignored and reported as has_more. */
#define HISTORIES_MAX 100

struct engine_history {
	char id[128];            /* [A-Za-z0-9_-] only: it goes into a DELETE URL */
	bool in_progress;        /* true also when the field is missing or not a boolean */
	int64_t created;         /* unix seconds, 0 = absent or not understood */
	int64_t updated;         /* unix seconds, 0 = absent or not understood */
};

struct engine_histories {
	struct engine_history item[HISTORIES_MAX];
	size_t n;
	bool has_more;           /* the upstream said so, or we cut the list */
	size_t skipped;          /* entries dropped: not an object, or a missing or unsafe id */
};

/* {"chatHistories":[{id,label,projectId,workspaceId,createdAt,updatedAt,
 * inProgress},...],"hasMore":bool}. GW_EPROTO when the body is not an
 * object or chatHistories is not an array; unknown fields are ignored.
 * An entry whose state cannot be read counts as in progress, so a caller
 * that deletes only idle chats never deletes it. */
enum gw_err engine_parse_histories(const char *body, size_t n, struct engine_histories *out) GW_MUSTCHECK;

/* RFC 3339 date-time with an explicit zone ("2026-03-01T10:00:00.123Z",
 * "...+02:00"); false for anything else. */
bool histories_parse_time(const char *s, size_t n, int64_t *out);

#endif
