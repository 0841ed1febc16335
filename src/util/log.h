/* log.h - leveled logging to stderr, as text or one JSON object per line.
 *
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2). Never pass a secret (cookie, JWT, client key) to these
 * functions; log ids or redacted forms (see config_redact). */
#ifndef GW_LOG_H
#define GW_LOG_H

#include "gw.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_TEXT, LOG_JSON };

void log_setup(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);
/* rid: the request id, or NULL outside a request. */
void log_msg(enum log_level level, const char *rid, const char *fmt, ...) GW_PRINTF(3, 4);

/* Parses "error|warn|info|debug"; returns false if unknown. */
bool log_level_parse(const char *s, enum log_level *out);

struct timeval;
/* The line's time stamp for tv, "2026-11-25T16:02:27.123Z" (tests). */
void log__time(const struct timeval *tv, char out[32]);

#define log_error(rid, ...) log_msg(LOG_ERROR, rid, __VA_ARGS__)
#define log_warn(rid, ...) log_msg(LOG_WARN, rid, __VA_ARGS__)
#define log_info(rid, ...) log_msg(LOG_INFO, rid, __VA_ARGS__)
#define log_debug(rid, ...) \
	do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, rid, __VA_ARGS__); } while (0)

#endif
