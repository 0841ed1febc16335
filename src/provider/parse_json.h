/* parse_json.h - small helpers shared by the provider parsers: jansson
 * objects, ids, and the pieces of a timestamp. */
#ifndef GW_PROVIDER_PARSE_JSON_H
#define GW_PROVIDER_PARSE_JSON_H

#include "gw.h"

#include <jansson.h>

/* Parses body as one JSON object: GW_EPROTO for anything else, GW_ENOMEM
 * when jansson says so. On GW_OK the caller owns *out (json_decref). */
enum gw_err parse_json_object(const char *body, size_t n, json_t **out) GW_MUSTCHECK;

/* Copies an id that goes into URLs: [A-Za-z0-9_-] only, 1..size-1 bytes.
 * An absent or null v gives "" and returns allow_absent. */
bool parse_json_url_id(const json_t *v, char *dst, size_t size, bool allow_absent);
/* The same check and copy for an id already in hand (s[0..n), no NUL
 * needed): false, dst untouched, if it is too long or not URL-safe. */
bool parse_url_id(const char *s, size_t n, char *dst, size_t size);

/* An RFC 3339 date-time with an explicit zone ("2026-11-25T10:00:00.000Z",
 * "...+02:00") into unix seconds. strict takes only that shape (seconds
 * required, at most 9 fraction digits, 1970 on): a chat's times decide
 * whether it is deleted. Otherwise also 't' or ' ' as separator, no
 * seconds, ',' fractions and "z", "+HHMM", "+HH" zones (retry times). */
bool parse_rfc3339(const char *s, size_t n, bool strict, int64_t *out);

#endif
