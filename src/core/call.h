/* call.h - one chat request through the core: model resolution,
 * conversation continuity (store lookup, prompt building, saving the
 * mapping after the reply), account choice, then the provider exchange.
 * The front sees only neutral events. */
#ifndef GW_CALL_H
#define GW_CALL_H

#include "gw.h"
#include "core/chat.h"

struct worker;
struct call;

struct call_sink {
	/* The upstream accepted the prompt: the reply begins. model is the
	 * vendor name of the model that answers (for the response's "model"). */
	void (*on_start)(void *arg, const char *model);
	/* A piece; return false when the client is backed up (call_resume later). */
	bool (*on_piece)(void *arg, enum chat_ev_kind kind, const char *text, size_t len);
	/* Exactly once; e == NULL on success. The call is freed after this. */
	void (*on_end)(void *arg, const struct chat_error *e);
};

/* Steals req. On GW_OK the sink's callbacks follow from the loop. */
enum gw_err call_start(struct worker *w, struct chat_req *req, const char *rid, const struct call_sink *sink,
		       void *arg, struct call **out) GW_MUSTCHECK;
void call_resume(struct call *c);
/* The client left: stop everything; no callback follows. */
void call_cancel(struct call *c);
/* Shutdown: ends every call of worker w with an error (on_end runs). */
void call_abort_all(struct worker *w, int status, const char *msg);

#endif
