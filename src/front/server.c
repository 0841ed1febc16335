/* server.c - evhttp front: listener, limits, routing, auth, CORS, errors. */
#include "front/server.h"
#include "front/openai.h"
#include "front/ratelimit.h"
#include "core/app.h"
#include "config.h"
#include "util/buf.h"
#include "util/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SERVER_BACKLOG 4096
#define SERVER_ACCEPT_RETRY_MS 500

struct server {
	struct worker *w;
	struct evhttp *http;
	struct evconnlistener *lis;
	struct event *accept_retry;
};

static atomic_ulong rid_counter;

static void make_rid(char out[24])
{
	/* Unique within a process; the pid keeps them apart across a fleet's logs. */
	unsigned long n = atomic_fetch_add(&rid_counter, 1) + 1;
	snprintf(out, 24, "r%x-%lx", (unsigned)getpid() & 0xffffu, n);
}

void req_ctx_free(struct req_ctx *ctx)
{
	if (!ctx)
		return;
	config_unref(ctx->cfg);
	gw_free(ctx);
}

void server_add_common_headers(struct evhttp_request *req, const struct req_ctx *ctx)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "X-Request-Id", ctx->rid);
	if (ctx->origin_ok[0]) {
		evhttp_add_header(h, "Access-Control-Allow-Origin", ctx->origin_ok);
		if (strcmp(ctx->origin_ok, "*") != 0)
			evhttp_add_header(h, "Vary", "Origin");
	}
}

void server_reply_json(struct evhttp_request *req, const struct req_ctx *ctx, int status,
		       const char *body, size_t len)
{
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	server_add_common_headers(req, ctx);
	evhttp_add_header(h, "Content-Type", "application/json");
	if (!out || evbuffer_add(out, body, len) != 0) {
		evbuffer_free(out);
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	evhttp_send_reply(req, status, NULL, out);
	evbuffer_free(out);
}

void server_reply_error(struct evhttp_request *req, const struct req_ctx *ctx, const struct chat_error *e)
{
	struct buf b;
	buf_init(&b, 64 * 1024);
	if (e->retry_after > 0) {
		char ra[24];
		snprintf(ra, sizeof(ra), "%d", e->retry_after);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
	}
	if (oai_error_json(&b, e) != GW_OK) {
		buf_release(&b);
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	log_info(ctx->rid, "-> %d %s%s%s", e->status, e->type, e->code ? " " : "", e->code ? e->code : "");
	server_reply_json(req, ctx, e->status, b.p, b.len);
	buf_release(&b);
}

/* The Origin to echo in Access-Control-Allow-Origin, if allowed. */
static void cors_origin(const struct gw_config *cfg, const char *origin, char out[256])
{
	out[0] = '\0';
	const char *list = cfg->cors_origins;
	if (!*list)
		return;
	if (strcmp(list, "*") == 0) {
		strcpy(out, "*");
		return;
	}
	if (!origin || strlen(origin) >= 256)
		return;
	size_t ol = strlen(origin);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		while (l && *p == ' ')
			p++, l--;
		while (l && p[l - 1] == ' ')
			l--;
		if (l == ol && strncasecmp(p, origin, l) == 0) {
			memcpy(out, origin, ol + 1);
			return;
		}
		p = e ? e + 1 : p + strlen(p);
	}
}

static const char *bearer_key(struct evkeyvalq *in)
{
	const char *auth = evhttp_find_header(in, "Authorization");
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		auth += 7;
		while (*auth == ' ')
			auth++;
		return auth;
	}
	return evhttp_find_header(in, "x-api-key");
}

/* Checks every configured key (no early exit) in constant time per key. */
static bool authenticate(const struct gw_config *cfg, struct evkeyvalq *in, char tenant[65])
{
	tenant[0] = '\0';
	if (cfg->n_api_keys == 0)
		return true;
	const char *key = bearer_key(in);
	if (!key)
		return false;
	size_t kl = strlen(key);
	bool ok = false;
	for (size_t i = 0; i < cfg->n_api_keys; i++)
		ok |= gw_ct_equal(key, kl, cfg->api_keys[i], strlen(cfg->api_keys[i]));
	if (ok) {
		unsigned char md[SHA256_DIGEST_LENGTH];
		SHA256((const unsigned char *)key, kl, md);
		for (size_t i = 0; i < sizeof(md); i++)
			snprintf(tenant + 2 * i, 3, "%02x", md[i]);
	}
	return ok;
}

static void reply_status(struct evhttp_request *req, struct req_ctx *ctx, int status,
			 const char *type, const char *code, const char *msg)
{
	struct chat_error e;
	chat_error_set(&e, status, type, code, "%s", msg);
	server_reply_error(req, ctx, &e);
	req_ctx_free(ctx);
}

static void handle_health(struct evhttp_request *req, struct req_ctx *ctx)
{
	struct app *app = ctx->w->app;
	char body[160];
	bool draining = atomic_load(&app->draining);
	int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"streams\":%ld,\"uptime_s\":%llu}",
			 draining ? "draining" : "ok", atomic_load(&app->streams),
			 (unsigned long long)((gw_now_ms() - app->started_ms) / 1000));
	server_reply_json(req, ctx, draining ? 503 : 200, body, (size_t)n);
	req_ctx_free(ctx);
}

static void handle_preflight(struct evhttp_request *req, struct req_ctx *ctx)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	server_add_common_headers(req, ctx);
	if (ctx->origin_ok[0]) {
		evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
		evhttp_add_header(h, "Access-Control-Allow-Headers",
				  "Authorization, Content-Type, x-api-key, X-Request-Id, "
				  "OpenAI-Organization, OpenAI-Project, X-Stainless-OS, X-Stainless-Lang, "
				  "X-Stainless-Package-Version, X-Stainless-Runtime, X-Stainless-Runtime-Version, "
				  "X-Stainless-Arch, X-Stainless-Retry-Count, X-Stainless-Timeout");
		evhttp_add_header(h, "Access-Control-Max-Age", "86400");
	}
	evhttp_send_reply(req, 204, "No Content", NULL);
	req_ctx_free(ctx);
}

static bool path_is(const char *path, const char *want)
{
	size_t l = strlen(want);
	return strncmp(path, want, l) == 0 && (path[l] == '\0' || (path[l] == '/' && path[l + 1] == '\0'));
}

/* evhttp frames a body by the first Content-Length and would run what
 * follows a shorter one as the next request: refuse any repetition, and
 * close the connection so nothing after it is read (request smuggling). */
static bool framing_ok(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	int n = 0;
	for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next)
		n += strcasecmp(kv->key, "Content-Length") == 0;
	return n <= 1;
}

static void route(struct evhttp_request *req, struct req_ctx *ctx, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct app *app = ctx->w->app;

	if (!framing_ok(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		reply_status(req, ctx, 400, "invalid_request_error", "bad_framing",
			     "The request has more than one Content-Length header.");
		return;
	}
	if (path_is(path, "/healthz") || path_is(path, "/health")) {
		handle_health(req, ctx);
		return;
	}
	if (cmd == EVHTTP_REQ_OPTIONS) {
		handle_preflight(req, ctx);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_POST && cmd != EVHTTP_REQ_HEAD) {
		reply_status(req, ctx, 405, "invalid_request_error", "method_not_allowed",
			     "Only GET, POST and OPTIONS are served here.");
		return;
	}
	bool chat = path_is(path, "/v1/chat/completions") || path_is(path, "/chat/completions");
	bool models = path_is(path, "/v1/models") || path_is(path, "/models");
	bool model_one = strncmp(path, "/v1/models/", 11) == 0 && path[11];
	if (!chat && !models && !model_one) {
		char msg[320];
		snprintf(msg, sizeof(msg), "Unknown request URL: %.200s. Please check the URL and method.",
			 path);
		reply_status(req, ctx, 404, "invalid_request_error", "unknown_url", msg);
		return;
	}
	if (!authenticate(ctx->cfg, evhttp_request_get_input_headers(req), ctx->tenant)) {
		reply_status(req, ctx, 401, "authentication_error", "invalid_api_key",
			     "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' "
			     "(or 'x-api-key: <key>').");
		return;
	}
	if ((chat && cmd != EVHTTP_REQ_POST) || (!chat && cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)) {
		reply_status(req, ctx, 405, "invalid_request_error", "method_not_allowed",
			     chat ? "Use POST for /v1/chat/completions." : "Use GET for /v1/models.");
		return;
	}
	if (atomic_load(&app->draining)) {
		reply_status(req, ctx, 503, "unavailable", "shutting_down",
			     "The gateway is shutting down; retry on another instance.");
		return;
	}
	int retry_after;
	if (chat && !ratelimit_take(ctx->tenant, ctx->cfg->rate_limit_rpm, gw_wall_s(), &retry_after)) {
		struct chat_error e;
		chat_error_set(&e, 429, "rate_limit_error", "rate_limit_exceeded",
			       "Rate limit reached: %ld requests per minute for this key. Retry in %d s.",
			       ctx->cfg->rate_limit_rpm, retry_after);
		e.retry_after = retry_after;
		server_reply_error(req, ctx, &e);
		req_ctx_free(ctx);
		return;
	}
	if (chat)
		chat_http_handle(req, ctx);
	else if (models)
		models_http_list(req, ctx);
	else
		models_http_get(req, ctx, path + 11);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	struct req_ctx *ctx = gw_calloc(1, sizeof(*ctx));
	if (!ctx) {
		evhttp_send_error(req, 503, "Service Unavailable");
		return;
	}
	ctx->w = s->w;
	ctx->cfg = config_current();
	ctx->start_us = gw_now_us();
	make_rid(ctx->rid);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	cors_origin(ctx->cfg, evhttp_find_header(in, "Origin"), ctx->origin_ok);

	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (!path || !*path)
		path = "/";
	log_debug(ctx->rid, "%s %.200s", evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET",
		  path);
	route(req, ctx, path);
}

static void accept_retry(evutil_socket_t fd, short what, void *arg)
{
	GW_UNUSED(fd);
	GW_UNUSED(what);
	struct server *s = arg;
	if (s->lis && !atomic_load(&s->w->app->draining))
		evconnlistener_enable(s->lis);
}

/* EMFILE/ENFILE leave the listener readable: pause it instead of spinning. */
/* The listener error callback gets evhttp's argument, not ours, so
 * servers are found by their listener. Written only at start-up. */
static struct server *registry[256];
static atomic_int registry_n;

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
	GW_UNUSED(arg);
	struct server *s = NULL;
	for (int i = 0; i < atomic_load(&registry_n) && !s; i++)
		if (registry[i] && registry[i]->lis == lis)
			s = registry[i];
	if (!s)
		return;
	int e = EVUTIL_SOCKET_ERROR();
	log_warn(NULL, "accept failed: %s; pausing new connections for %d ms",
		 evutil_socket_error_to_string(e), SERVER_ACCEPT_RETRY_MS);
	evconnlistener_disable(lis);
	struct timeval tv = { 0, SERVER_ACCEPT_RETRY_MS * 1000 };
	evtimer_add(s->accept_retry, &tv);
}

static evutil_socket_t listen_socket(const struct gw_config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	char port[8];
	snprintf(port, sizeof(port), "%ld", cfg->port);
	const char *host = cfg->host;
	char h6[64];
	if (host[0] == '[' && strlen(host) < sizeof(h6)) { /* [::1] */
		snprintf(h6, sizeof(h6), "%s", host + 1);
		h6[strcspn(h6, "]")] = '\0';
		host = h6;
	}
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "HOST '%s': %s", cfg->host, gai_strerror(rc));
		return -1;
	}
	evutil_socket_t fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SERVER_BACKLOG) != 0) {
		snprintf(err, errlen, "cannot listen on %s:%ld: %s", cfg->host, cfg->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

void server_apply_config(struct server *s, const struct gw_config *cfg)
{
	evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->max_body_bytes);
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)cfg->max_header_bytes);
	/* Also the idle timeout of a stream: keep-alive comments must beat it. */
	evhttp_set_timeout(s->http, (int)cfg->client_timeout);
}

struct server *server_new(struct worker *w, const struct gw_config *cfg, char *err, size_t errlen)
{
	struct server *s = gw_calloc(1, sizeof(*s));
	if (!s)
		return snprintf(err, errlen, "out of memory"), NULL;
	s->w = w;
	s->http = evhttp_new(w->base);
	s->accept_retry = evtimer_new(w->base, accept_retry, s);
	if (!s->http || !s->accept_retry) {
		snprintf(err, errlen, "out of memory");
		server_free(s);
		return NULL;
	}
	server_apply_config(s, cfg);
	/* Every method reaches the router, which answers 405 in the API's shape
	 * (evhttp would send a bare 501). */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_OPTIONS |
						    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_default_content_type(s->http, "application/json");
	evhttp_set_gencb(s->http, on_request, s);

	evutil_socket_t fd = listen_socket(cfg, err, errlen);
	if (fd < 0) {
		server_free(s);
		return NULL;
	}
	s->lis = evconnlistener_new(w->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				    SERVER_BACKLOG, fd);
	if (!s->lis || !evhttp_bind_listener(s->http, s->lis)) {
		if (!s->lis)
			close(fd);
		snprintf(err, errlen, "cannot start the HTTP listener");
		server_free(s);
		return NULL;
	}
	int slot = atomic_fetch_add(&registry_n, 1);
	if (slot < (int)GW_ARRAY_LEN(registry))
		registry[slot] = s;
	evconnlistener_set_error_cb(s->lis, on_accept_error);
	return s;
}

void server_stop_listening(struct server *s)
{
	if (s && s->lis)
		evconnlistener_disable(s->lis);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < GW_ARRAY_LEN(registry); i++)
		if (registry[i] == s)
			registry[i] = NULL;
	if (s->http)
		evhttp_free(s->http); /* frees the bound listener too */
	else if (s->lis)
		evconnlistener_free(s->lis);
	if (s->accept_retry)
		event_free(s->accept_retry);
	gw_free(s);
}
