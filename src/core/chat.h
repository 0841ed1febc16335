/* chat.h - the neutral request and reply events: the seam between the
 * client-facing fronts (OpenAI today) and the upstream providers (cto.new).
 * Fronts never see upstream fields; providers never see OpenAI fields. */
#ifndef GW_CHAT_H
#define GW_CHAT_H

#include "gw.h"

enum chat_role { ROLE_SYSTEM, ROLE_DEVELOPER, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

const char *chat_role_name(enum chat_role role);

/* One message: its role and the text of its parts joined with "\n".
 * text is NUL-terminated and valid UTF-8; len excludes the NUL. */
struct chat_msg {
	enum chat_role role;
	char *text;
	size_t len;
};

struct chat_req {
	char *model;            /* as the client named it, or NULL for the default */
	struct chat_msg *msgs;  /* at least one; owned */
	size_t n_msgs;
	bool stream;
	bool include_usage;     /* stream_options.include_usage */
	char tenant[65];        /* hex SHA-256 of the client key, "" without keys */
};

void chat_req_free(struct chat_req *req);

/* Errors a client can see: the status and the OpenAI error fields. */
struct chat_error {
	int status;             /* HTTP status: 400, 401, 404, 429, 502, 503, 504 ... */
	const char *type;       /* static: "invalid_request_error", "upstream_error" ... */
	const char *code;       /* static or NULL: "model_not_found", "rate_limit_exceeded" ... */
	const char *param;      /* static or NULL: the offending field */
	int retry_after;        /* seconds, 0 = no Retry-After header */
	char message[512];
};

void chat_error_set(struct chat_error *e, int status, const char *type, const char *code,
		    const char *fmt, ...) GW_PRINTF(5, 6);
/* The gateway itself found no descriptor or memory for `what` (an upstream
 * call failed with GW_ENOMEM): 503 local_resources with Retry-After 1. It
 * is not the upstream's fault nor the account's, so no breaker counts it
 * (call.c), and it is soon over. */
void chat_error_local(struct chat_error *e, const char *what);

/* Reply events, in order: any number of TEXT and REASONING, then exactly one
 * of DONE or ERROR. Pointers are borrowed for the duration of the callback. */
enum chat_ev_kind { CHAT_EV_TEXT, CHAT_EV_REASONING, CHAT_EV_DONE, CHAT_EV_ERROR };

struct chat_ev {
	enum chat_ev_kind kind;
	const char *text;             /* TEXT, REASONING */
	size_t len;
	const struct chat_error *err; /* ERROR */
};

#endif
