/* config.h - every setting of the gateway, from one declarative table.
 *
 * Sources, later ones winning: .env in the working directory, the
 * environment, then --NAME=value flags (--port=1 and --PORT=1 both work).
 * A config is immutable once built; the running one is swapped on SIGHUP
 * and borrowed with config_ref()/config_unref(). */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "gw.h"
#include "util/log.h"

#include <stdatomic.h>

enum engine_flow { FLOW_2026, FLOW_2025 };

struct gw_config {
	atomic_int refs;

	/* secrets: printed only through config_print's redaction */
	char *api_master_key;   /* raw, comma-separated */
	char *clerk_cookie;     /* raw; several accounts separated by commas */

	char *host;
	long port;
	bool allow_no_key;
	char *cors_origins;     /* "" = no CORS headers; "*" or a comma list */

	char *clerk_base_url;
	char *engine_api_base_url;
	char *engine_ws_base_url;
	char *upstream_origin;
	char *clerk_api_version;
	char *clerk_js_version;
	long engine_flow;       /* enum engine_flow */
	char *default_model;
	long models_ttl;

	char *store_url;
	long store_ttl;
	long store_max_entries;
	long upstream_cleanup_interval; /* 0 = off (src/core/cleanup.c) */
	long prompt_budget;

	long request_timeout;
	long upstream_connect_timeout;
	long first_piece_timeout;
	long idle_timeout;
	long client_timeout;
	long keepalive_interval;
	long shutdown_timeout;

	long max_body_bytes;
	long max_header_bytes;
	long max_streams;
	long max_connections;
	long max_reply_bytes;
	long rate_limit_rpm;
	long account_concurrency;

	long workers;
	long log_level;         /* enum log_level */
	long log_format;        /* enum log_format */
	char *ca_bundle;

	/* derived */
	char **api_keys;        /* NULL-terminated split of api_master_key */
	size_t n_api_keys;
};

/* Builds a config from .env (env_path, may be NULL to skip), the process
 * environment and argv flags. On error returns NULL and writes a message
 * that names the key, the source and the bad value (redacted if secret). */
struct gw_config *config_load(const char *env_path, int argc, char **argv, char *err, size_t errlen);

/* The same from .env text alone (no environment, no flags): for tests and
 * the fuzzer. */
struct gw_config *config_load_env_text(const char *text, size_t n, char *err, size_t errlen);

struct gw_config *config_ref(struct gw_config *c);
void config_unref(struct gw_config *c);

/* Prints every setting as NAME=value, secrets redacted. */
void config_print(const struct gw_config *c, int fd);

/* Writes a redacted form of a secret: "<unset>" or "<set, N bytes>". */
void config_redact(const char *secret, char *out, size_t n);

/* After a reload: copies into `next` the values of keys that cannot change
 * without a restart (logging which ones were asked to change). */
void config_keep_fixed(struct gw_config *next, const struct gw_config *cur);

/* Prints the flag list with defaults (for --help). */
void config_usage(int fd);

/* The running config, swapped atomically on reload. */
struct gw_config *config_current(void); /* returns a new reference */
void config_install(struct gw_config *c); /* steals c */

/* True if host is a loopback address or name. */
bool config_host_is_loopback(const char *host);

#endif
