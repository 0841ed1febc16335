/* parse_internal.h - test hooks into the provider parsers; the gateway
 * itself uses parse.h only. */
#ifndef GW_PROVIDER_PARSE_INTERNAL_H
#define GW_PROVIDER_PARSE_INTERNAL_H

#include "provider/parse.h"

/* frame_parse without its allocation-free fast path: jansson only. The
 * differential fuzzer (tests/fuzz/fuzz_frames_diff.c) checks both give the
 * same items and result on every input. */
enum gw_err frame_parse_slow(const char *msg, size_t n, frame_item_cb *cb, void *arg) GW_MUSTCHECK;

/* engine_parse_project without its jscan fast path; fuzz_engine_json
 * checks both give the same result and ids. */
enum gw_err engine_parse_project_slow(const char *body, size_t n,
				      struct engine_project *out) GW_MUSTCHECK;

#endif
