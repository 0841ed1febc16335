/* fuzz_adapters.c - models_parse_adapters on arbitrary bytes, then
 * resolution of a name taken from the same input. */
#include <string.h>

#include "core/models.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct model_list l;
	enum gw_err e = models_parse_adapters((const char *)data, size, &l);
	if (e) {
		GW_ASSERT(l.v == NULL && l.n == 0);
		return 0;
	}
	GW_ASSERT(l.n <= 512);
	for (size_t i = 0; i < l.n; i++) {
		const struct model_info *m = &l.v[i];
		GW_ASSERT(m->key[0] && m->model[0] && m->agent_key[0]);
		GW_ASSERT(m->multiplier >= 0);
		/* Every entry must be findable by each of its own names. */
		GW_ASSERT(models_resolve(&l, m->model) != NULL);
		GW_ASSERT(models_resolve(&l, m->agent_key) != NULL);
		const struct model_info *k = models_resolve(&l, m->key);
		GW_ASSERT(k != NULL);
	}
	/* The first line of the input doubles as a client model name. */
	char name[128];
	size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	char *nl = strchr(name, '\n');
	if (nl)
		*nl = '\0';
	(void)models_resolve(&l, name);
	models_list_release(&l);
	return 0;
}
