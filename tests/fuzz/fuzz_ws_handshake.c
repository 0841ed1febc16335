/* fuzz_ws_handshake.c - the parser of the server's answer to our Upgrade. */
#include "net/ws_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Accept value for the RFC 6455 sample key, as the seeds use. */
	static const char accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
	/* An exact-size copy so ASan sees any read past the end. */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	int status;
	size_t hl;
	enum gw_err err = ws__parse_handshake(p, size, accept, &status, &hl);
	if (err == GW_OK && (status != 101 || hl == 0 || hl > size))
		__builtin_trap();
	if (err != GW_OK && hl != 0)
		__builtin_trap();
	free(p);
	return 0;
}
