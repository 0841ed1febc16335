/* server.c - the HTTP front: listener, limits, routing, auth, CORS, errors. */
#include "front/server.h"
#include "front/h1.h"
#include "front/openai.h"
#include "front/ratelimit.h"
#include "core/app.h"
#include "config.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/sha.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SERVER_BACKLOG 4096

struct server {
	struct worker *w;
	struct h1_server *h1;
};

static atomic_ulong rid_counter;
static unsigned rid_pid; /* getpid() is a system call: asked once */
static pthread_once_t rid_once = PTHREAD_ONCE_INIT;

static void rid_init(void)
{
	rid_pid = (unsigned)getpid() & 0xffffu;
}

static void make_rid(char out[24])
{
	/* Unique within a process; the pid keeps them apart across a fleet's logs. */
	unsigned long n = atomic_fetch_add(&rid_counter, 1) + 1;
	pthread_once(&rid_once, rid_init);
	snprintf(out, 24, "r%x-%lx", rid_pid, n);
}

void req_ctx_free(struct req_ctx *ctx)
{
	if (!ctx)
		return;
	config_unref(ctx->cfg);
	gw_free(ctx);
}

void server_add_common_headers(struct h1_req *req, const struct req_ctx *ctx)
{
	h1_add_header(req, "X-Request-Id", ctx->rid);
	if (ctx->origin_ok[0]) {
		h1_add_header(req, "Access-Control-Allow-Origin", ctx->origin_ok);
		if (strcmp(ctx->origin_ok, "*") != 0)
			h1_add_header(req, "Vary", "Origin");
	}
}

void server_reply_json(struct h1_req *req, const struct req_ctx *ctx, int status,
		       const char *body, size_t len)
{
	server_add_common_headers(req, ctx);
	h1_add_header(req, "Content-Type", "application/json");
	h1_reply(req, status, body, len);
}

static const char oom_body[] = "{\"error\":{\"message\":\"The gateway is out of memory; retry shortly.\","
			       "\"type\":\"unavailable\",\"param\":null,\"code\":null}}";

/* The answer when not even an error can be built. */
static void reply_oom(struct h1_req *req)
{
	h1_add_header(req, "Content-Type", "application/json");
	h1_add_header(req, "Retry-After", "1");
	h1_reply(req, 503, oom_body, sizeof(oom_body) - 1);
}

void server_reply_unavailable(struct h1_req *req, const struct req_ctx *ctx, const char *what)
{
	struct chat_error e;
	chat_error_set(&e, 503, "unavailable", NULL, "The gateway is out of %s; retry shortly.", what);
	e.retry_after = 1;
	server_reply_error(req, ctx, &e);
}

void server_reply_error(struct h1_req *req, const struct req_ctx *ctx, const struct chat_error *e)
{
	struct buf b;
	buf_init(&b, 64 * 1024);
	if (oai_error_json(&b, e) != GW_OK) {
		buf_release(&b);
		reply_oom(req);
		return;
	}
	if (e->retry_after > 0) {
		char ra[24];
		snprintf(ra, sizeof(ra), "%d", e->retry_after);
		h1_add_header(req, "Retry-After", ra);
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

static const char *bearer_key(struct h1_req *req)
{
	const char *auth = h1_req_header(req, "Authorization");
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		auth += 7;
		while (*auth == ' ')
			auth++;
		return auth;
	}
	return h1_req_header(req, "x-api-key");
}

/* Checks every configured key (no early exit) in constant time per key. */
static bool authenticate(const struct gw_config *cfg, struct h1_req *req, char tenant[65])
{
	tenant[0] = '\0';
	if (cfg->n_api_keys == 0)
		return true;
	const char *key = bearer_key(req);
	if (!key)
		return false;
	size_t kl = strlen(key);
	bool ok = false;
	for (size_t i = 0; i < cfg->n_api_keys; i++)
		ok |= gw_ct_equal(key, kl, cfg->api_keys[i], strlen(cfg->api_keys[i]));
	if (ok) {
		unsigned char md[SHA256_DIGEST_LENGTH];
		if (!gw_sha256(key, kl, md))
			return false; /* out of memory inside OpenSSL: refuse, never share a tenant */
		gw_hex(md, sizeof(md), tenant);
	}
	return ok;
}

static void reply_status(struct h1_req *req, struct req_ctx *ctx, int status,
			 const char *type, const char *code, const char *msg)
{
	struct chat_error e;
	chat_error_set(&e, status, type, code, "%s", msg);
	server_reply_error(req, ctx, &e);
	req_ctx_free(ctx);
}

static void handle_health(struct h1_req *req, struct req_ctx *ctx)
{
	struct app *app = ctx->w->app;
	char body[192];
	bool draining = atomic_load(&app->draining);
	int n = snprintf(body, sizeof(body),
			 "{\"status\":\"%s\",\"streams\":%ld,\"connections\":%ld,\"uptime_s\":%llu}",
			 draining ? "draining" : "ok", atomic_load(&app->streams), h1_open_connections(),
			 (unsigned long long)((gw_now_ms() - app->started_ms) / 1000));
	server_reply_json(req, ctx, draining ? 503 : 200, body, (size_t)n);
	req_ctx_free(ctx);
}

static void handle_preflight(struct h1_req *req, struct req_ctx *ctx)
{
	server_add_common_headers(req, ctx);
	if (ctx->origin_ok[0]) {
		h1_add_header(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
		h1_add_header(req, "Access-Control-Allow-Headers",
			      "Authorization, Content-Type, x-api-key, X-Request-Id, "
			      "OpenAI-Organization, OpenAI-Project, X-Stainless-OS, X-Stainless-Lang, "
			      "X-Stainless-Package-Version, X-Stainless-Runtime, X-Stainless-Runtime-Version, "
			      "X-Stainless-Arch, X-Stainless-Retry-Count, X-Stainless-Timeout");
		h1_add_header(req, "Access-Control-Max-Age", "86400");
	}
	h1_reply(req, 204, NULL, 0);
	req_ctx_free(ctx);
}

static bool path_is(const char *path, const char *want)
{
	size_t l = strlen(want);
	return strncmp(path, want, l) == 0 && (path[l] == '\0' || (path[l] == '/' && path[l + 1] == '\0'));
}

/* A request the connection layer turned down: answered in the API's shape. */
static void reply_refused(struct h1_req *req, struct req_ctx *ctx, int status, const char *why)
{
	static const struct {
		int status;
		const char *type, *code;
	} kinds[] = {
		{ 408, "invalid_request_error", "request_timeout" },
		{ 413, "invalid_request_error", "request_too_large" },
		{ 417, "invalid_request_error", "expectation_failed" },
		{ 431, "invalid_request_error", "headers_too_large" },
		{ 501, "invalid_request_error", "not_implemented" },
		{ 503, "unavailable", "overloaded" },
		{ 505, "invalid_request_error", "http_version_not_supported" },
	};
	const char *type = "invalid_request_error", *code = "bad_request";
	for (size_t i = 0; i < GW_ARRAY_LEN(kinds); i++)
		if (kinds[i].status == status)
			type = kinds[i].type, code = kinds[i].code;
	struct chat_error e;
	chat_error_set(&e, status, type, code, "The request was refused: %s.", why);
	if (status == 503)
		e.retry_after = 1;
	server_reply_error(req, ctx, &e);
	req_ctx_free(ctx);
}

static void route(struct h1_req *req, struct req_ctx *ctx, const char *path)
{
	enum h1_method m = h1_req_method(req);
	struct app *app = ctx->w->app;

	if (path_is(path, "/healthz") || path_is(path, "/health")) {
		handle_health(req, ctx);
		return;
	}
	if (m == H1_OPTIONS) {
		handle_preflight(req, ctx);
		return;
	}
	if (m != H1_GET && m != H1_POST && m != H1_HEAD) {
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
	if (!authenticate(ctx->cfg, req, ctx->tenant)) {
		reply_status(req, ctx, 401, "authentication_error", "invalid_api_key",
			     "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' "
			     "(or 'x-api-key: <key>').");
		return;
	}
	if ((chat && m != H1_POST) || (!chat && m != H1_GET && m != H1_HEAD)) {
		reply_status(req, ctx, 405, "invalid_request_error", "method_not_allowed",
			     chat ? "Use POST for /v1/chat/completions." : "Use GET for /v1/models.");
		return;
	}
	if (atomic_load(&app->draining)) {
		h1_close_after(req);
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

/* The path of a request-target: origin-form or absolute-form, without the
 * query. */
static void target_path(const char *t, char *out, size_t n)
{
	if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
		const char *slash = strchr(strstr(t, "//") + 2, '/');
		t = slash ? slash : "/";
	}
	size_t l = strcspn(t, "?#");
	if (l >= n)
		l = n - 1;
	memcpy(out, t, l);
	out[l] = '\0';
	if (!l)
		snprintf(out, n, "/");
}

static void on_request(struct h1_req *req, void *arg)
{
	struct server *s = arg;
	struct req_ctx *ctx = gw_calloc(1, sizeof(*ctx));
	if (!ctx) {
		reply_oom(req);
		return;
	}
	ctx->w = s->w;
	ctx->cfg = config_current();
	ctx->start_us = gw_now_us();
	make_rid(ctx->rid);
	cors_origin(ctx->cfg, h1_req_header(req, "Origin"), ctx->origin_ok);
	const char *why;
	int refused = h1_req_refused(req, &why);
	if (refused) {
		reply_refused(req, ctx, refused, why);
		return;
	}
	char path[1024];
	target_path(h1_req_target(req), path, sizeof(path));
	log_debug(ctx->rid, "%.16s %.200s", h1_req_method_name(req), path);
	route(req, ctx, path);
}

static int listen_socket(const struct gw_config *cfg, char *err, size_t errlen)
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
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

/* Each stream holds a client socket and an upstream one. */
static long max_connections(const struct gw_config *cfg)
{
	if (cfg->max_connections > 0)
		return cfg->max_connections;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 100000;
	long n = ((long)rl.rlim_cur - 64) / 2;
	return n < 16 ? 16 : n;
}

static void limits_of(const struct gw_config *cfg, struct h1_limits *lim)
{
	lim->max_head = (size_t)cfg->max_header_bytes;
	lim->max_body = (size_t)cfg->max_body_bytes;
	lim->timeout_s = (int)cfg->client_timeout;
	lim->max_conns = max_connections(cfg);
}

void server_apply_config(struct server *s, const struct gw_config *cfg)
{
	struct h1_limits lim;
	limits_of(cfg, &lim);
	h1_server_set_limits(s->h1, &lim);
}

struct server *server_new(struct worker *w, const struct gw_config *cfg, char *err, size_t errlen)
{
	struct server *s = gw_calloc(1, sizeof(*s));
	if (!s)
		return snprintf(err, errlen, "out of memory"), NULL;
	s->w = w;
	int fd = listen_socket(cfg, err, errlen);
	if (fd < 0) {
		gw_free(s);
		return NULL;
	}
	struct h1_limits lim;
	limits_of(cfg, &lim);
	s->h1 = h1_server_new(w->base, fd, &lim, on_request, s);
	if (!s->h1) {
		snprintf(err, errlen, "cannot start the HTTP listener");
		gw_free(s);
		return NULL;
	}
	return s;
}

void server_stop_listening(struct server *s)
{
	if (s && s->h1)
		h1_server_stop(s->h1);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	h1_server_free(s->h1);
	gw_free(s);
}
