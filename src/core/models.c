/* models.c - the upstream's model list and client model-name resolution. */
#include "core/models.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#define MODELS_MAX 512
#define MODELS_MAX_MULTIPLIER 1000

/* ---- parsing --------------------------------------------------------- */

/* Copies a string field into dst. Returns false if it is present but not a
 * string, too long or holds NUL; an absent or null field gives "" and is
 * accepted only when !required. */
static bool copy_field(const json_t *obj, const char *key, char *dst, size_t cap, bool required)
{
	const json_t *v = json_object_get(obj, key);
	dst[0] = '\0';
	if (!v || json_is_null(v))
		return !required;
	if (!json_is_string(v))
		return false;
	size_t n = json_string_length(v);
	if (n >= cap || memchr(json_string_value(v), '\0', n) || (required && n == 0))
		return false;
	memcpy(dst, json_string_value(v), n);
	dst[n] = '\0';
	return true;
}

static bool get_bool(const json_t *obj, const char *key, bool dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int get_multiplier(const json_t *obj)
{
	const json_t *v = json_object_get(obj, "usageMultiplier");
	if (!json_is_number(v))
		return 1;
	double d = json_number_value(v);
	if (!(d >= 0)) /* also NaN */
		return 1;
	if (d > MODELS_MAX_MULTIPLIER)
		return MODELS_MAX_MULTIPLIER;
	return (int)ceil(d); /* a fractional cost still uses a whole request */
}

static bool parse_entry(const json_t *e, struct model_info *m)
{
	if (!json_is_object(e))
		return false;
	if (!copy_field(e, "key", m->key, sizeof(m->key), true) ||
	    !copy_field(e, "model", m->model, sizeof(m->model), true) ||
	    !copy_field(e, "engineAgentKey", m->agent_key, sizeof(m->agent_key), true) ||
	    !copy_field(e, "provider", m->provider, sizeof(m->provider), false) ||
	    !copy_field(e, "minimumTier", m->min_tier, sizeof(m->min_tier), false))
		return false;
	/* A list without the flag predates it: everything listed was usable. */
	m->enabled = get_bool(e, "enabled", true);
	m->supports_images = get_bool(e, "supportsImages", false);
	m->multiplier = get_multiplier(e);
	return true;
}

static bool has_key(const struct model_info *v, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i].key, key) == 0)
			return true;
	return false;
}

enum gw_err models_parse_adapters(const char *body, size_t len, struct model_list *out)
{
	out->v = NULL;
	out->n = 0;
	if (!body)
		return GW_EPROTO;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	const json_t *arr = json_is_object(root) ? json_object_get(root, "chatAdapters") : NULL;
	if (!json_is_array(arr)) {
		json_decref(root);
		return GW_EPROTO;
	}
	size_t cap = json_array_size(arr) < MODELS_MAX ? json_array_size(arr) : MODELS_MAX;
	struct model_info *v = gw_calloc(cap, sizeof(*v));
	if (!v) {
		json_decref(root);
		return GW_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(arr) && n < cap; i++) {
		/* Skip bad or repeated entries rather than lose the whole list. */
		if (parse_entry(json_array_get(arr, i), &v[n]) && !has_key(v, n, v[n].key))
			n++;
	}
	json_decref(root);
	if (n == 0) {
		gw_free(v);
		v = NULL;
	}
	out->v = v;
	out->n = n;
	return GW_OK;
}

void models_list_release(struct model_list *l)
{
	if (!l)
		return;
	gw_free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ---- resolution ------------------------------------------------------ */

/* Names clients of the older flow and of the seed project use, mapped to
 * the upstream's engineAgentKey. Only used when nothing matches exactly,
 * and only if the target is in the current list. */
static const struct {
	const char *alias;
	const char *agent_key;
} aliases[] = {
	{ "claude-4.5-sonnet", "ClaudeSonnet4_5" },
	{ "claude-sonnet-4-5", "ClaudeSonnet4_5" },
	{ "claude-sonnet-4-5-20250929", "ClaudeSonnet4_5" },
	{ "sonnet-4.5", "ClaudeSonnet4_5" },
	{ "sonnet", "ClaudeSonnet4_5" },
	{ "claude-sonnet-4", "ClaudeSonnet4" },
	{ "claude-4-sonnet", "ClaudeSonnet4" },
	{ "claude-4.5-opus", "ClaudeOpus4_5" },
	{ "claude-opus-4-5", "ClaudeOpus4_5" },
	{ "opus-4.5", "ClaudeOpus4_5" },
	{ "claude-4.5-haiku", "ClaudeHaiku4_5" },
	{ "claude-haiku-4-5", "ClaudeHaiku4_5" },
	{ "haiku-4.5", "ClaudeHaiku4_5" },
	{ "gpt-5-latest", "GPT5" },
	{ "gpt-5-chat", "GPT5" },
	{ "gpt-5-chat-latest", "GPT5" },
	{ "gpt-5.1-latest", "GPT5_1" },
	{ "gemini-2.5-pro-latest", "Gemini2_5Pro" },
};

static const struct model_info *find_exact(const struct model_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct model_info *m = &l->v[i];
		if (strcasecmp(m->key, name) == 0 || strcasecmp(m->model, name) == 0 ||
		    strcasecmp(m->agent_key, name) == 0)
			return m;
	}
	return NULL;
}

/* Lowercase letters and digits only: "claude-sonnet-4.5", "ClaudeSonnet4_5"
 * and "claude_sonnet_4_5" all become "claudesonnet45". */
static void squash(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	for (; *s && n + 1 < cap; s++)
		if (isalnum((unsigned char)*s))
			out[n++] = (char)tolower((unsigned char)*s);
	out[n] = '\0';
}

static bool squash_eq(const char *field, const char *want)
{
	char f[64];
	squash(field, f, sizeof(f));
	return f[0] && strcmp(f, want) == 0;
}

static const struct model_info *find_squashed(const struct model_list *l, const char *name)
{
	char want[128];
	if (strlen(name) >= sizeof(want))
		return NULL;
	squash(name, want, sizeof(want));
	if (!want[0])
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		const struct model_info *m = &l->v[i];
		if (squash_eq(m->key, want) || squash_eq(m->model, want) ||
		    squash_eq(m->agent_key, want))
			return m;
	}
	return NULL;
}

static const struct model_info *find_alias(const struct model_list *l, const char *name)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(aliases); i++) {
		if (strcasecmp(aliases[i].alias, name) != 0)
			continue;
		for (size_t j = 0; j < l->n; j++)
			if (strcasecmp(l->v[j].agent_key, aliases[i].agent_key) == 0)
				return &l->v[j];
	}
	return NULL;
}

static const struct model_info *resolve_one(const struct model_list *l, const char *name)
{
	const struct model_info *m = find_exact(l, name);
	if (!m)
		m = find_alias(l, name);
	if (!m)
		m = find_squashed(l, name);
	return m;
}

const struct model_info *models_resolve(const struct model_list *l, const char *name)
{
	if (!l || !name || !name[0])
		return NULL;
	const struct model_info *m = resolve_one(l, name);
	/* Routers such as LiteLLM prefix the provider: "anthropic/claude-…". */
	const char *slash = strrchr(name, '/');
	if (!m && slash && slash[1])
		m = resolve_one(l, slash + 1);
	return m;
}
