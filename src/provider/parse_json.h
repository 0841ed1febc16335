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

/* Reads exactly k decimal digits at *p (moving it on) into *out. */
bool parse_digits(const char **p, const char *end, int k, int *out);
/* Steps over c if it stands at *p. */
bool parse_expect(const char **p, const char *end, char c);

#endif
