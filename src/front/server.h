/* server.h - the HTTP front of one worker: listener and limits (over h1.c),
 * routes, client auth, CORS, request ids, and the one place errors become
 * JSON. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "gw.h"
#include "core/chat.h"

struct worker;
struct h1_req;
struct gw_config;
struct buf;

/* What a handler gets about the request it serves. */
struct req_ctx {
	struct worker *w;
	struct gw_config *cfg;   /* a reference, released by req_ctx_free */
	char rid[24];            /* request id, also sent as X-Request-Id */
	char tenant[65];         /* hex SHA-256 of the client key, "" without keys */
	char origin_ok[256];     /* Access-Control-Allow-Origin to send, "" = none */
	uint64_t start_us;
};

struct server *server_new(struct worker *w, const struct gw_config *cfg, char *err, size_t errlen);
void server_free(struct server *s);
/* Stops accepting new connections (shutdown). */
void server_stop_listening(struct server *s);
/* Applies reloadable limits of a new config. */
void server_apply_config(struct server *s, const struct gw_config *cfg);

/* Standard headers (request id, CORS) on a reply about to start. */
void server_add_common_headers(struct h1_req *req, const struct req_ctx *ctx);
/* Sends a complete JSON reply; body is copied. */
void server_reply_json(struct h1_req *req, const struct req_ctx *ctx, int status,
		       const char *body, size_t len);
/* Sends an OpenAI-shaped error reply with the matching status. */
void server_reply_error(struct h1_req *req, const struct req_ctx *ctx, const struct chat_error *e);
/* 503 with Retry-After: the gateway is out of `what` ("memory", ...). */
void server_reply_unavailable(struct h1_req *req, const struct req_ctx *ctx, const char *what);

void req_ctx_free(struct req_ctx *ctx);

/* Route handlers (front/chat_http.c, front/models_http.c). Each takes
 * ownership of ctx and answers req exactly once. */
void chat_http_handle(struct h1_req *req, struct req_ctx *ctx);
void models_http_list(struct h1_req *req, struct req_ctx *ctx);
void models_http_get(struct h1_req *req, struct req_ctx *ctx, const char *id);

#endif
