/* sha.h - OpenSSL's SHA-1 and SHA-256, fetched once per process.
 *
 * Given EVP_sha256() (or calling SHA256()), OpenSSL 3 looks the algorithm
 * up by name in its provider store, under a lock, on every digest; the
 * per-request digests (API key tenant, conversation key, WebSocket accept)
 * use these instead. */
#ifndef GW_SHA_H
#define GW_SHA_H

#include <openssl/evp.h>

const EVP_MD *gw_md_sha1(void);
const EVP_MD *gw_md_sha256(void);

/* n bytes as 2n lowercase hex digits and a NUL. */
void gw_hex(const unsigned char *p, size_t n, char *out);

#endif
