/* ratelimit.h - requests per minute per client key, shared by all workers. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include "gw.h"

/* Counts one request for tenant (hex key hash, "" without keys) against
 * rpm per minute. Returns false when over, with the seconds until the next
 * window in *retry_after. rpm 0 = no limit. */
bool ratelimit_take(const char *tenant, long rpm, int64_t now_s, int *retry_after);

#endif
