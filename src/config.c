/* config.c - the settings table, the three sources, validation, redaction. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_ENV_MAX_BYTES (1024 * 1024)
#define CFG_VALUE_MAX_BYTES (64 * 1024)

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_ENUM, CFG_URL };

enum {
	CFG_RELOAD = 1,   /* SIGHUP may change it */
	CFG_SECRET = 2,   /* never printed */
	CFG_EMPTY_OK = 4, /* "" is a valid value */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;
	long min, max;
	const char *def;
	unsigned flags;
	const char *const *choices; /* CFG_ENUM: index stored as long */
	const char *help;
};

static const char *const flow_choices[] = { "2026", "2025", NULL };
static const char *const level_choices[] = { "error", "warn", "info", "debug", NULL };
static const char *const format_choices[] = { "text", "json", NULL };

#define OFF(f) offsetof(struct gw_config, f)
#define DAY (24L * 3600)

/* The only place a setting is named. */
static const struct cfg_key keys[] = {
	{ "API_MASTER_KEY", CFG_STR, OFF(api_master_key), 0, 0, "", CFG_RELOAD | CFG_SECRET | CFG_EMPTY_OK, NULL,
	  "client API key, or a comma-separated list; empty = no auth (loopback only)" },
	{ "CLERK_COOKIE", CFG_STR, OFF(clerk_cookie), 0, 0, "", CFG_RELOAD | CFG_SECRET | CFG_EMPTY_OK, NULL,
	  "cto.new browser Cookie header or bare __client value; accounts separated by commas" },
	{ "HOST", CFG_STR, OFF(host), 0, 0, "127.0.0.1", 0, NULL, "address to listen on" },
	{ "PORT", CFG_INT, OFF(port), 1, 65535, "8089", 0, NULL, "port to listen on" },
	{ "ALLOW_NO_KEY", CFG_BOOL, OFF(allow_no_key), 0, 1, "false", 0, NULL,
	  "allow listening beyond loopback without API_MASTER_KEY" },
	{ "CORS_ORIGINS", CFG_STR, OFF(cors_origins), 0, 0, "auto", CFG_RELOAD | CFG_EMPTY_OK, NULL,
	  "allowed browser origins (comma list or *); auto = * when a key is required, none otherwise" },
	{ "CLERK_BASE_URL", CFG_URL, OFF(clerk_base_url), 0, 0, "https://clerk.cto.new", 0, NULL,
	  "Clerk front-end API" },
	{ "ENGINE_API_BASE_URL", CFG_URL, OFF(engine_api_base_url), 0, 0, "https://api.enginelabs.ai", 0, NULL,
	  "EngineLabs REST API" },
	{ "ENGINE_WS_BASE_URL", CFG_URL, OFF(engine_ws_base_url), 0, 0, "wss://api.enginelabs.ai", 0, NULL,
	  "EngineLabs WebSocket API" },
	{ "UPSTREAM_ORIGIN", CFG_STR, OFF(upstream_origin), 0, 0, "https://cto.new", 0, NULL,
	  "Origin header sent upstream" },
	{ "CLERK_API_VERSION", CFG_STR, OFF(clerk_api_version), 0, 0, "2025-11-10", CFG_RELOAD, NULL,
	  "__clerk_api_version query value" },
	{ "CLERK_JS_VERSION", CFG_STR, OFF(clerk_js_version), 0, 0, "6.7.3", CFG_RELOAD, NULL,
	  "_clerk_js_version query value" },
	{ "ENGINE_FLOW", CFG_ENUM, OFF(engine_flow), 0, 0, "2026", 0, flow_choices,
	  "upstream protocol generation: 2026 or 2025" },
	{ "DEFAULT_MODEL", CFG_STR, OFF(default_model), 0, 0, "claude-sonnet-4-5", CFG_RELOAD, NULL,
	  "model used when a request names none" },
	{ "MODELS_TTL", CFG_INT, OFF(models_ttl), 1, 7 * DAY, "600", CFG_RELOAD, NULL,
	  "seconds the model list is cached" },
	{ "STORE_URL", CFG_STR, OFF(store_url), 0, 0, "sqlite://data/enginelabs-2api.db", 0, NULL,
	  "sqlite://PATH, memory: or redis://host:port/db" },
	{ "STORE_TTL", CFG_INT, OFF(store_ttl), 1, 3650 * DAY, "2592000", 0, NULL,
	  "seconds an unused conversation mapping is kept" },
	{ "STORE_MAX_ENTRIES", CFG_INT, OFF(store_max_entries), 100, 100000000, "100000", 0, NULL,
	  "conversation mappings kept at most (sqlite, memory)" },
	{ "UPSTREAM_CLEANUP_INTERVAL", CFG_INT, OFF(upstream_cleanup_interval), 0, 30 * DAY, "0", CFG_RELOAD, NULL,
	  "seconds between deletions of upstream chats whose mapping expired (0 = off)" },
	{ "PROMPT_BUDGET", CFG_INT, OFF(prompt_budget), 1024, 1000000, "20000", CFG_RELOAD, NULL,
	  "bytes of prompt text sent upstream at most (transcripts are trimmed)" },
	{ "API_REQUEST_TIMEOUT", CFG_INT, OFF(request_timeout), 1, 7200, "300", CFG_RELOAD, NULL,
	  "seconds a whole request may take" },
	{ "UPSTREAM_CONNECT_TIMEOUT", CFG_INT, OFF(upstream_connect_timeout), 1, 300, "10", CFG_RELOAD, NULL,
	  "seconds to connect (and TLS) to the upstream" },
	{ "FIRST_PIECE_TIMEOUT", CFG_INT, OFF(first_piece_timeout), 1, 3600, "120", CFG_RELOAD, NULL,
	  "seconds from the chat POST to the first reply piece" },
	{ "IDLE_TIMEOUT", CFG_INT, OFF(idle_timeout), 1, 3600, "120", CFG_RELOAD, NULL,
	  "seconds of silence allowed between reply pieces" },
	{ "CLIENT_TIMEOUT", CFG_INT, OFF(client_timeout), 1, 3600, "60", 0, NULL,
	  "seconds a client may take to send its request, or stall reading" },
	{ "KEEPALIVE_INTERVAL", CFG_INT, OFF(keepalive_interval), 1, 600, "15", CFG_RELOAD, NULL,
	  "seconds between SSE keep-alive comments while waiting" },
	{ "SHUTDOWN_TIMEOUT", CFG_INT, OFF(shutdown_timeout), 0, 3600, "30", CFG_RELOAD, NULL,
	  "seconds live streams may take to finish after SIGTERM" },
	{ "MAX_BODY_BYTES", CFG_INT, OFF(max_body_bytes), 1024, 256L << 20, "8388608", 0, NULL,
	  "largest request body" },
	{ "MAX_HEADER_BYTES", CFG_INT, OFF(max_header_bytes), 1024, 1L << 20, "16384", 0, NULL,
	  "largest request header block" },
	{ "MAX_STREAMS", CFG_INT, OFF(max_streams), 1, 1000000, "12000", CFG_RELOAD, NULL,
	  "chat requests in flight at most" },
	{ "MAX_CONNECTIONS", CFG_INT, OFF(max_connections), 0, 10000000, "0", CFG_RELOAD, NULL,
	  "open client connections at most (0 = half the open-file limit)" },
	{ "MAX_REPLY_BYTES", CFG_INT, OFF(max_reply_bytes), 1024, 1L << 30, "16777216", CFG_RELOAD, NULL,
	  "largest reply relayed" },
	{ "RATE_LIMIT_RPM", CFG_INT, OFF(rate_limit_rpm), 0, 1000000, "0", CFG_RELOAD, NULL,
	  "requests per minute per client key (0 = off)" },
	{ "ACCOUNT_CONCURRENCY", CFG_INT, OFF(account_concurrency), 1, 1000000, "2", CFG_RELOAD, NULL,
	  "replies in progress at once per upstream account" },
	{ "WORKERS", CFG_INT, OFF(workers), 0, 256, "0", 0, NULL, "worker threads (0 = one per core)" },
	{ "LOG_LEVEL", CFG_ENUM, OFF(log_level), 0, 0, "info", CFG_RELOAD, level_choices,
	  "error, warn, info or debug" },
	{ "LOG_FORMAT", CFG_ENUM, OFF(log_format), 0, 0, "text", CFG_RELOAD, format_choices, "text or json" },
	{ "CA_BUNDLE", CFG_STR, OFF(ca_bundle), 0, 0, "", CFG_EMPTY_OK, NULL,
	  "CA certificates file for the upstream (empty = system)" },
};

static const struct cfg_key *key_find(const char *name, size_t n)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++)
		if (strlen(keys[i].name) == n && strncasecmp(keys[i].name, name, n) == 0)
			return &keys[i];
	return NULL;
}

static char **str_slot(struct gw_config *c, const struct cfg_key *k)
{
	return (char **)((char *)c + k->off);
}

static long *long_slot(struct gw_config *c, const struct cfg_key *k)
{
	return (long *)((char *)c + k->off);
}

static bool *bool_slot(struct gw_config *c, const struct cfg_key *k)
{
	return (bool *)((char *)c + k->off);
}

void config_redact(const char *secret, char *out, size_t n)
{
	if (!secret || !*secret)
		snprintf(out, n, "<unset>");
	else
		snprintf(out, n, "<set, %zu bytes>", strlen(secret));
}

static void set_err(char *err, size_t errlen, const struct cfg_key *k, const char *src,
		    const char *val, const char *fmt, ...) GW_PRINTF(6, 7);

static void set_err(char *err, size_t errlen, const struct cfg_key *k, const char *src,
		    const char *val, const char *fmt, ...)
{
	char why[256], shown[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (k->flags & CFG_SECRET)
		config_redact(val, shown, sizeof(shown));
	else
		snprintf(shown, sizeof(shown), "'%.80s%s'", val, strlen(val) > 80 ? "..." : "");
	snprintf(err, errlen, "%s (from %s): %s is %s", k->name, src, shown, why);
}

static bool parse_long(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, true;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, true;
	}
	return false;
}

static bool url_ok(const char *s)
{
	static const char *const schemes[] = { "http://", "https://", "ws://", "wss://" };
	for (size_t i = 0; i < GW_ARRAY_LEN(schemes); i++) {
		size_t l = strlen(schemes[i]);
		if (strncasecmp(s, schemes[i], l) == 0)
			return s[l] != '\0' && s[l] != '/' && !strpbrk(s, " \t\r\n\"<>\\^`{|}");
	}
	return false;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Stores one value into c; src names where it came from, for the error. */
static bool set_value(struct gw_config *c, const struct cfg_key *k, const char *val,
		      const char *src, char *err, size_t errlen)
{
	if (strlen(val) > CFG_VALUE_MAX_BYTES)
		return set_err(err, errlen, k, src, "", "longer than %d bytes", CFG_VALUE_MAX_BYTES), false;
	if (has_ctl(val))
		return set_err(err, errlen, k, src, val, "not allowed: it contains control characters"), false;
	switch (k->type) {
	case CFG_URL:
		if (!url_ok(val))
			return set_err(err, errlen, k, src, val,
				       "not a URL (expected http://, https://, ws:// or wss://host[:port][/path])"),
			       false;
		/* fall through */
	case CFG_STR: {
		if (!*val && !(k->flags & CFG_EMPTY_OK))
			return set_err(err, errlen, k, src, val, "empty"), false;
		char *copy = gw_strdup(val);
		if (!copy)
			return snprintf(err, errlen, "out of memory"), false;
		/* A trailing slash on a base URL would double up when paths are joined. */
		if (k->type == CFG_URL) {
			size_t l = strlen(copy);
			while (l > 0 && copy[l - 1] == '/')
				copy[--l] = '\0';
		}
		gw_free(*str_slot(c, k));
		*str_slot(c, k) = copy;
		return true;
	}
	case CFG_INT: {
		long v;
		if (!parse_long(val, &v))
			return set_err(err, errlen, k, src, val, "not a whole number"), false;
		if (v < k->min || v > k->max)
			return set_err(err, errlen, k, src, val, "out of range (%ld..%ld)", k->min, k->max), false;
		*long_slot(c, k) = v;
		return true;
	}
	case CFG_BOOL:
		if (!parse_bool(val, bool_slot(c, k)))
			return set_err(err, errlen, k, src, val, "not a boolean (true/false)"), false;
		return true;
	case CFG_ENUM:
		for (long i = 0; k->choices[i]; i++) {
			if (strcasecmp(val, k->choices[i]) == 0) {
				*long_slot(c, k) = i;
				return true;
			}
		}
		{
			char list[128] = "";
			for (size_t i = 0; k->choices[i]; i++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 i ? ", " : "", k->choices[i]);
			return set_err(err, errlen, k, src, val, "not one of: %s", list), false;
		}
	}
	return false;
}

/* Removes surrounding quotes and, for unquoted values, a " #" comment. */
static char *env_value(char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	size_t l = strlen(v);
	if (l >= 2 && (v[0] == '"' || v[0] == '\'')) {
		char *close = strrchr(v + 1, v[0]);
		if (close && close != v) {
			*close = '\0';
			return v + 1;
		}
	}
	char *hash = strstr(v, " #");
	if (hash)
		*hash = '\0';
	l = strlen(v);
	while (l > 0 && (v[l - 1] == ' ' || v[l - 1] == '\t' || v[l - 1] == '\r'))
		v[--l] = '\0';
	return v;
}

static char *read_small_file(const char *path, bool *missing, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	*missing = false;
	if (!f) {
		if (errno == ENOENT)
			return *missing = true, NULL;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *data = gw_malloc(CFG_ENV_MAX_BYTES + 1);
	if (!data) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t n = fread(data, 1, CFG_ENV_MAX_BYTES + 1, f);
	bool bad = ferror(f);
	fclose(f);
	if (bad || n > CFG_ENV_MAX_BYTES) {
		snprintf(err, errlen, "%s: %s", path, bad ? "read error" : "larger than 1 MiB");
		gw_free(data);
		return NULL;
	}
	data[n] = '\0';
	if (memchr(data, '\0', n)) {
		snprintf(err, errlen, "%s: contains NUL bytes", path);
		gw_free(data);
		return NULL;
	}
	return data;
}

/* Applies one "KEY=VALUE" line of .env; unknown keys are only warned about. */
static bool env_line(struct gw_config *c, char *line, const char *path, int lineno, char *err, size_t errlen)
{
	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '#' || *line == '\0' || *line == '\r')
		return true;
	if (strncmp(line, "export ", 7) == 0)
		line += 7;
	char *eq = strchr(line, '=');
	if (!eq) {
		snprintf(err, errlen, "%s line %d: expected KEY=VALUE", path, lineno);
		return false;
	}
	char *name_end = eq;
	while (name_end > line && (name_end[-1] == ' ' || name_end[-1] == '\t'))
		name_end--;
	const struct cfg_key *k = key_find(line, (size_t)(name_end - line));
	if (!k) {
		log_warn(NULL, "%s line %d: unknown setting '%.*s' ignored", path, lineno,
			 (int)(name_end - line > 64 ? 64 : name_end - line), line);
		return true;
	}
	char src[64];
	snprintf(src, sizeof(src), "%s line %d", path, lineno);
	return set_value(c, k, env_value(eq + 1), src, err, errlen);
}

/* Parses .env text in place (data is modified; NUL-terminated). */
static bool load_env_text(struct gw_config *c, char *data, const char *path, char *err, size_t errlen)
{
	bool ok = true;
	int lineno = 0;
	for (char *p = data; ok && p && *p;) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		ok = env_line(c, p, path, lineno, err, errlen);
		p = nl ? nl + 1 : NULL;
	}
	return ok;
}

static bool load_env_file(struct gw_config *c, const char *path, char *err, size_t errlen)
{
	bool missing;
	char *data = read_small_file(path, &missing, err, errlen);
	if (!data)
		return missing;
	bool ok = load_env_text(c, data, path, err, errlen);
	gw_free(data);
	return ok;
}

static bool load_environ(struct gw_config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++) {
		const char *v = getenv(keys[i].name);
		if (v && !set_value(c, &keys[i], v, "environment", err, errlen))
			return false;
	}
	return true;
}

/* --NAME=value or --name-with-dashes=value. Other flags are main's. */
static bool load_flags(struct gw_config *c, int argc, char **argv, char *err, size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0)
			continue;
		const char *eq = strchr(a, '=');
		if (!eq)
			continue;
		char name[64];
		size_t n = (size_t)(eq - a - 2);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		for (size_t j = 0; j < n; j++)
			name[j] = a[2 + j] == '-' ? '_' : (char)toupper((unsigned char)a[2 + j]);
		name[n] = '\0';
		const struct cfg_key *k = key_find(name, n);
		if (!k) {
			snprintf(err, errlen, "unknown flag '%.*s' (see --help)", (int)(eq - a), a);
			return false;
		}
		if (!set_value(c, k, eq + 1, "flag", err, errlen))
			return false;
	}
	return true;
}

static bool split_keys(struct gw_config *c)
{
	size_t n = 1;
	for (const char *p = c->api_master_key; *p; p++)
		n += *p == ',';
	c->api_keys = gw_calloc(n + 1, sizeof(char *));
	if (!c->api_keys)
		return false;
	const char *p = c->api_master_key;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		while (l && (*p == ' ' || *p == '\t'))
			p++, l--;
		while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
			l--;
		if (l) {
			c->api_keys[c->n_api_keys] = gw_strndup(p, l);
			if (!c->api_keys[c->n_api_keys])
				return false;
			c->n_api_keys++;
		}
		p = e ? e + 1 : p + strlen(p);
	}
	return true;
}

bool config_host_is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0;
}

static bool validate(struct gw_config *c, char *err, size_t errlen)
{
	if (!split_keys(c))
		return snprintf(err, errlen, "out of memory"), false;
	if (c->n_api_keys == 0 && !c->allow_no_key && !config_host_is_loopback(c->host)) {
		snprintf(err, errlen,
			 "HOST: refusing to listen on '%s' without API_MASTER_KEY: anyone could use your "
			 "account; set API_MASTER_KEY, or ALLOW_NO_KEY=true if that is really intended",
			 c->host);
		return false;
	}
	if (strcmp(c->cors_origins, "auto") == 0) {
		gw_free(c->cors_origins);
		c->cors_origins = gw_strdup(c->n_api_keys ? "*" : "");
		if (!c->cors_origins)
			return snprintf(err, errlen, "out of memory"), false;
	}
	if (strncmp(c->store_url, "sqlite://", 9) != 0 && strcmp(c->store_url, "memory:") != 0 &&
	    strncmp(c->store_url, "redis://", 8) != 0) {
		snprintf(err, errlen, "STORE_URL: '%.80s' is not sqlite://PATH, memory: or redis://host:port/db",
			 strncmp(c->store_url, "redis", 5) == 0 ? "redis://<redacted>" : c->store_url);
		return false;
	}
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > 64 ? 64 : n;
	}
	return true;
}

static struct gw_config *config_defaults(char *err, size_t errlen)
{
	struct gw_config *c = gw_calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&c->refs, 1);
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++) {
		if (!set_value(c, &keys[i], keys[i].def, "default", err, errlen)) {
			config_unref(c);
			return NULL;
		}
	}
	return c;
}

struct gw_config *config_load_env_text(const char *text, size_t n, char *err, size_t errlen)
{
	if (n > CFG_ENV_MAX_BYTES || memchr(text, '\0', n)) {
		snprintf(err, errlen, ".env: larger than 1 MiB or contains NUL bytes");
		return NULL;
	}
	char *copy = gw_strndup(text, n);
	struct gw_config *c = copy ? config_defaults(err, errlen) : NULL;
	if (!copy)
		snprintf(err, errlen, "out of memory");
	bool ok = c && load_env_text(c, copy, ".env", err, errlen) && validate(c, err, errlen);
	gw_free(copy);
	if (!ok) {
		config_unref(c);
		return NULL;
	}
	return c;
}

struct gw_config *config_load(const char *env_path, int argc, char **argv, char *err, size_t errlen)
{
	struct gw_config *c = config_defaults(err, errlen);
	if (!c)
		return NULL;
	bool ok = (!env_path || load_env_file(c, env_path, err, errlen));
	ok = ok && load_environ(c, err, errlen);
	ok = ok && load_flags(c, argc, argv, err, errlen);
	ok = ok && validate(c, err, errlen);
	if (!ok) {
		config_unref(c);
		return NULL;
	}
	return c;
}

struct gw_config *config_ref(struct gw_config *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

static void config_free(struct gw_config *c)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++)
		if (keys[i].type == CFG_STR || keys[i].type == CFG_URL)
			gw_free(*str_slot(c, &keys[i]));
	for (size_t i = 0; c->api_keys && i < c->n_api_keys; i++)
		gw_free(c->api_keys[i]);
	gw_free(c->api_keys);
	gw_free(c);
}

void config_unref(struct gw_config *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		config_free(c);
}

static void value_text(const struct gw_config *c, const struct cfg_key *k, char *out, size_t n)
{
	struct gw_config *m = (struct gw_config *)c;
	switch (k->type) {
	case CFG_STR:
	case CFG_URL:
		if (k->flags & CFG_SECRET)
			config_redact(*str_slot(m, k), out, n);
		else
			snprintf(out, n, "%s", *str_slot(m, k));
		break;
	case CFG_INT:
		snprintf(out, n, "%ld", *long_slot(m, k));
		break;
	case CFG_BOOL:
		snprintf(out, n, "%s", *bool_slot(m, k) ? "true" : "false");
		break;
	case CFG_ENUM:
		snprintf(out, n, "%s", k->choices[*long_slot(m, k)]);
		break;
	}
}

void config_print(const struct gw_config *c, int fd)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++) {
		char v[512];
		value_text(c, &keys[i], v, sizeof(v));
		dprintf(fd, "%s=%s\n", keys[i].name, v);
	}
}

void config_usage(int fd)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++) {
		char flag[64];
		size_t j;
		for (j = 0; keys[i].name[j] && j < sizeof(flag) - 1; j++)
			flag[j] = keys[i].name[j] == '_' ? '-' : (char)tolower((unsigned char)keys[i].name[j]);
		flag[j] = '\0';
		dprintf(fd, "  --%s=VALUE\n      %s (%s; default: %s)%s\n", flag, keys[i].help, keys[i].name,
			*keys[i].def ? keys[i].def : "empty", keys[i].flags & CFG_RELOAD ? " [reloadable]" : "");
	}
}

static bool same_value(const struct gw_config *a, const struct gw_config *b, const struct cfg_key *k)
{
	struct gw_config *x = (struct gw_config *)a, *y = (struct gw_config *)b;
	switch (k->type) {
	case CFG_STR:
	case CFG_URL:
		return strcmp(*str_slot(x, k), *str_slot(y, k)) == 0;
	case CFG_BOOL:
		return *bool_slot(x, k) == *bool_slot(y, k);
	default:
		return *long_slot(x, k) == *long_slot(y, k);
	}
}

void config_keep_fixed(struct gw_config *next, const struct gw_config *cur)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(keys); i++) {
		const struct cfg_key *k = &keys[i];
		if ((k->flags & CFG_RELOAD) || same_value(next, cur, k))
			continue;
		log_warn(NULL, "reload: %s changed but needs a restart; keeping the running value", k->name);
		if (k->type == CFG_STR || k->type == CFG_URL) {
			char *v = gw_strdup(*str_slot((struct gw_config *)cur, k));
			if (v) {
				gw_free(*str_slot(next, k));
				*str_slot(next, k) = v;
			}
		} else if (k->type == CFG_BOOL) {
			*bool_slot(next, k) = *bool_slot((struct gw_config *)cur, k);
		} else {
			*long_slot(next, k) = *long_slot((struct gw_config *)cur, k);
		}
	}
}

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_config *current;

struct gw_config *config_current(void)
{
	pthread_mutex_lock(&current_lock);
	struct gw_config *c = config_ref(current);
	pthread_mutex_unlock(&current_lock);
	return c;
}

void config_install(struct gw_config *c)
{
	pthread_mutex_lock(&current_lock);
	struct gw_config *old = current;
	current = c;
	pthread_mutex_unlock(&current_lock);
	config_unref(old);
}
