/* sha.c - see sha.h. */
#include "util/sha.h"

#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const EVP_MD *sha1, *sha256;

/* Kept for the life of the process. If a fetch fails (no default
 * provider), the implicit-fetch objects still work, only slower. */
static void fetch(void)
{
	EVP_MD *m = EVP_MD_fetch(NULL, "SHA1", NULL);
	sha1 = m ? m : EVP_sha1();
	m = EVP_MD_fetch(NULL, "SHA256", NULL);
	sha256 = m ? m : EVP_sha256();
}

const EVP_MD *gw_md_sha1(void)
{
	pthread_once(&once, fetch);
	return sha1;
}

const EVP_MD *gw_md_sha256(void)
{
	pthread_once(&once, fetch);
	return sha256;
}

bool gw_sha256(const void *p, size_t n, unsigned char out[32])
{
	unsigned int len = 0;
	return EVP_Digest(p, n, out, &len, gw_md_sha256(), NULL) && len == 32;
}
