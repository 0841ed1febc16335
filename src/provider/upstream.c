/* upstream.c - HTTP calls to Clerk and EngineLabs with the right headers. */
#include "provider/upstream.h"
#include "config.h"
#include "util/buf.h"

#include <stdio.h>
#include <string.h>

#define UPSTREAM_REST_TIMEOUT_MS 30000
#define UPSTREAM_MAX_RESP (4u << 20)

enum gw_err upstream_clerk(struct httpc *h, const struct gw_config *cfg, const char *path,
			   const char *cookie, const char *form_body, httpc_done_cb *cb, void *arg,
			   struct httpc_call **out)
{
	struct buf url, ck, origin;
	buf_init(&url, 4096);
	buf_init(&ck, 16384);
	buf_init(&origin, 1024);
	enum gw_err err = buf_cat(&url, cfg->clerk_base_url, path, "?__clerk_api_version=",
				  cfg->clerk_api_version, "&_clerk_js_version=", cfg->clerk_js_version, NULL);
	if (!err)
		err = buf_cat(&ck, "Cookie: __client=", cookie, NULL);
	if (!err)
		err = buf_cat(&origin, "Origin: ", cfg->upstream_origin, NULL);
	if (!err) {
		const char *hdrs[] = { ck.p, origin.p, "Accept: application/json",
				       "Content-Type: application/x-www-form-urlencoded", NULL };
		struct httpc_call_opts o = {
			.method = form_body ? "POST" : "GET",
			.url = url.p,
			.headers = hdrs,
			.body = form_body,
			.body_len = form_body ? strlen(form_body) : 0,
			.timeout_ms = UPSTREAM_REST_TIMEOUT_MS,
			.max_resp_bytes = UPSTREAM_MAX_RESP,
		};
		if (!form_body)
			hdrs[3] = NULL;
		err = httpc_call_start(h, &o, cb, arg, out);
	}
	/* The cookie is a secret: do not leave it in freed memory. */
	if (ck.p)
		memset(ck.p, 0, ck.cap);
	buf_release(&url);
	buf_release(&ck);
	buf_release(&origin);
	return err;
}

enum gw_err upstream_engine(struct httpc *h, const struct gw_config *cfg, const char *method,
			    const char *path, const char *jwt, const char *json_body, size_t len,
			    httpc_done_cb *cb, void *arg, struct httpc_call **out)
{
	struct buf url, auth, origin;
	buf_init(&url, 4096);
	buf_init(&auth, 16384);
	buf_init(&origin, 1024);
	enum gw_err err = buf_cat(&url, cfg->engine_api_base_url, path, NULL);
	if (!err)
		err = buf_cat(&auth, "Authorization: Bearer ", jwt, NULL);
	if (!err)
		err = buf_cat(&origin, "Origin: ", cfg->upstream_origin, NULL);
	if (!err) {
		const char *hdrs[] = { auth.p, origin.p, "Accept: application/json",
				       json_body ? "Content-Type: application/json" : NULL, NULL };
		struct httpc_call_opts o = {
			.method = method,
			.url = url.p,
			.headers = hdrs,
			.body = json_body,
			.body_len = json_body ? len : 0,
			.timeout_ms = UPSTREAM_REST_TIMEOUT_MS,
			.max_resp_bytes = UPSTREAM_MAX_RESP,
			.direct = true,
		};
		err = httpc_call_start(h, &o, cb, arg, out);
	}
	if (auth.p)
		memset(auth.p, 0, auth.cap);
	buf_release(&url);
	buf_release(&auth);
	buf_release(&origin);
	return err;
}
