/* sha.h - OpenSSL's SHA-1 and SHA-256, fetched once per process.
 *
 * Given EVP_sha256() (or calling SHA256()), OpenSSL 3 looks the algorithm
 * up by name in its provider store, under a lock, on every digest; the
 * per-request digests (API key tenant, conversation key, WebSocket accept)
 * use these instead. */
#ifndef GW_SHA_H
#define GW_SHA_H

#include "gw.h"

#include <openssl/evp.h>

const EVP_MD *gw_md_sha1(void);
const EVP_MD *gw_md_sha256(void);

/* SHA-256 of p[0..n); false only if OpenSSL runs out of memory. */
bool gw_sha256(const void *p, size_t n, unsigned char out[32]) GW_MUSTCHECK;

#endif
