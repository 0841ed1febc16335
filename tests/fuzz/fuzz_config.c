/* fuzz_config.c - the .env parser and the validation behind it. */
#include "config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[512];
	log_setup(LOG_ERROR, LOG_TEXT); /* unknown keys warn: keep the fuzzer quiet */
	struct gw_config *c = config_load_env_text((const char *)data, size, err, sizeof(err));
	if (c) {
		/* What was accepted must satisfy the table's bounds. */
		if (c->port < 1 || c->port > 65535 || !c->host || !*c->host)
			__builtin_trap();
		config_unref(c);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		__builtin_trap(); /* every refusal says why */
	}
	return 0;
}
