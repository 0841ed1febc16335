/* ctonew.h - one exchange with cto.new: send a prompt into an upstream chat
 * (a new one, or a known chatHistoryId) and relay the reply pieces.
 *
 * 2026 flow: [new chat: POST /projects/create-hosted] -> open the WebSocket
 * -> preferred-model gate (PATCH /teams/preferred-model when it differs) ->
 * POST /engine-agent/offers -> POST /engine-agent/chat (base64 prompt) ->
 * frames until inProgress:false. 2025 flow: client-made UUID, plain prompt
 * with adapterName, WebSocket token = user id. */
#ifndef GW_CTONEW_H
#define GW_CTONEW_H

#include "gw.h"
#include "core/chat.h"
#include "core/models.h"

struct worker;
struct account;
struct turn;

struct turn_opts {
	struct worker *w;
	struct account *account;
	const struct model_info *model;  /* copied */
	const char *chat_id;             /* NULL/"" = open a new upstream chat */
	const char *workspace_id;        /* with chat_id (2026) */
	const char *prompt;              /* copied */
	size_t prompt_len;
	const char *rid;                 /* request id for logs */
};

struct turn_cbs {
	/* The upstream accepted the prompt (chat POST answered 202). */
	void (*on_accepted)(void *arg, const char *chat_id, const char *workspace_id);
	/* A piece of reply (TEXT or REASONING). Return false to pause reading
	 * (backpressure) until turn_resume(). */
	bool (*on_piece)(void *arg, enum chat_ev_kind kind, const char *text, size_t len);
	/* The end, exactly once: e == NULL for a complete reply. The turn is
	 * freed after this returns; do not touch it again. */
	void (*on_end)(void *arg, const struct chat_error *e);
};

/* On GW_OK callbacks follow from the loop (never from inside this call). */
enum gw_err turn_start(const struct turn_opts *o, const struct turn_cbs *cbs, void *arg,
		       struct turn **out) GW_MUSTCHECK;
void turn_resume(struct turn *t);
/* Stops at once (client gone): closes the WebSocket, no callback follows. */
void turn_cancel(struct turn *t);
/* True once on_accepted ran (no retry may happen after that). */
bool turn_accepted(const struct turn *t);

#endif
