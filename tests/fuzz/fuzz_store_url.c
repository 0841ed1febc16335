/* fuzz_store_url.c - store__parse_url on arbitrary bytes: no crash, no
 * overflow, and the invariants a successful parse promises. */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refused redis URL's password never reaches the message. The message
 * templates may contain any short word, so compare with the message for the
 * same URL with the password overwritten by 'Z's: the password may appear
 * only where it also appears there (template text). Passwords with '%'
 * (decoding may change the parse path) or 'Z' are skipped. */
static void check_no_echo(const char *url, const char *err)
{
	const char *colon = strstr(url, "://:"), *at = strrchr(url, '@');
	if (!colon || !at || at <= colon + 4)
		return;
	size_t off = (size_t)(colon + 4 - url), n = (size_t)(at - url) - off;
	char *pw = strndup(url + off, n), *other = strdup(url);
	if (pw && other && !strpbrk(pw, "%Z")) {
		char err2[256] = "";
		struct store_url u;
		memset(other + off, 'Z', n);
		if (store__parse_url(other, &u, err2, sizeof(err2)) != GW_OK && strstr(err, pw))
			GW_ASSERT(strstr(err2, pw));
	}
	free(pw);
	free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	struct store_url u;
	char err[256];
	err[0] = '\0';
	if (store__parse_url(url, &u, err, sizeof(err)) == GW_OK) {
		if (u.kind == STORE_URL_REDIS) {
			GW_ASSERT(u.host[0] != '\0');
			GW_ASSERT(u.port >= 1 && u.port <= 65535);
			GW_ASSERT(u.db >= 0);
			GW_ASSERT(memchr(u.password, '\0', sizeof(u.password)));
		} else if (u.kind == STORE_URL_SQLITE) {
			GW_ASSERT(u.path[0] != '\0');
		}
	} else {
		GW_ASSERT(err[0] != '\0');
		check_no_echo(url, err);
	}
	free(url);
	return 0;
}
