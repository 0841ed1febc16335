/* models.h - the upstream's model list (from GET /chat/adapters) and how a
 * client's model name resolves to one of them. Pure functions. */
#ifndef GW_MODELS_H
#define GW_MODELS_H

#include "gw.h"

struct model_info {
	char key[64];        /* snake case, e.g. "gpt_5_4": what PATCH /teams/preferred-model takes */
	char model[64];      /* vendor name, e.g. "gpt-5.4": the id /v1/models shows */
	char agent_key[64];  /* PascalCase, e.g. "GPT5_4": the 2025 flow's adapterName */
	char provider[32];   /* "openai", "anthropic", ... (owned_by) */
	char min_tier[16];
	bool enabled;
	bool supports_images;
	int multiplier;      /* uses per request */
};

struct model_list {
	struct model_info *v;
	size_t n;
};

/* Parses the /chat/adapters body. Entries missing key/model/engineAgentKey
 * or with over-long fields are skipped; a body that is not the expected
 * shape gives GW_EPROTO. At most 512 entries. */
enum gw_err models_parse_adapters(const char *body, size_t len, struct model_list *out) GW_MUSTCHECK;
void models_list_release(struct model_list *l);

/* Finds the model a client name refers to: key, model, agent_key (all
 * case-insensitive) or a known alias of the older flow / the seed project
 * ("ClaudeSonnet4_5", "GPT5", "claude-sonnet-4.5", ...). Returns NULL if none. */
const struct model_info *models_resolve(const struct model_list *l, const char *name);

#endif
