/* upstream.h - building the HTTP calls cto.new expects: URLs from the base
 * URLs of the config, the Origin and auth headers, Clerk's version query. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "gw.h"
#include "net/httpc.h"

struct gw_config;

/* A Clerk call with the cookie. path starts with "/v1/". body NULL = GET. */
enum gw_err upstream_clerk(struct httpc *h, const struct gw_config *cfg, const char *path,
			   const char *cookie, const char *form_body, httpc_done_cb *cb, void *arg,
			   struct httpc_call **out) GW_MUSTCHECK;

/* An EngineLabs REST call with the JWT. json_body NULL = no body. */
enum gw_err upstream_engine(struct httpc *h, const struct gw_config *cfg, const char *method,
			    const char *path, const char *jwt, const char *json_body, size_t len,
			    httpc_done_cb *cb, void *arg, struct httpc_call **out) GW_MUSTCHECK;

#endif
