/* chat.c - helpers for the neutral request and error types. */
#include "core/chat.h"

#include <stdarg.h>
#include <stdio.h>

const char *chat_role_name(enum chat_role role)
{
	switch (role) {
	case ROLE_SYSTEM: return "system";
	case ROLE_DEVELOPER: return "developer";
	case ROLE_USER: return "user";
	case ROLE_ASSISTANT: return "assistant";
	case ROLE_TOOL: return "tool";
	}
	return "user";
}

void chat_req_free(struct chat_req *req)
{
	if (!req)
		return;
	for (size_t i = 0; i < req->n_msgs; i++)
		gw_free(req->msgs[i].text);
	gw_free(req->msgs);
	gw_free(req->model);
	gw_free(req);
}

void chat_error_local(struct chat_error *e, const char *what)
{
	chat_error_set(e, 503, "unavailable", "local_resources",
		       "The gateway is out of descriptors or memory (%s); retry shortly.", what);
	e->retry_after = 1;
}

void chat_error_set(struct chat_error *e, int status, const char *type, const char *code,
		    const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->type = type;
	e->code = code;
	e->param = NULL;
	e->retry_after = 0;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}
