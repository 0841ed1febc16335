/* log.c - one line per event, one write(2) per line. */
#include "util/log.h"
#include "util/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int cur_level = LOG_INFO;
static atomic_int cur_format = LOG_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
/* The text format's column: as printf's "%-5s". */
static const char *const level_padded[] = { "error", "warn ", "info ", "debug" };

void log_setup(enum log_level level, enum log_format format)
{
	atomic_store(&cur_level, (int)level);
	atomic_store(&cur_format, (int)format);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&cur_level, memory_order_relaxed);
}

bool log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < GW_ARRAY_LEN(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_WARN;
		return true;
	}
	return false;
}

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere left to report it */
		p += w;
		n -= (size_t)w;
	}
}

/* "2026-11-25T16:02:27.123Z" for tv. The part up to the seconds is
 * formatted once a second per thread: strftime and snprintf were most of
 * the cost of the one line a request logs. */
void log__time(const struct timeval *tvp, char out[32])
{
	static _Thread_local time_t last_sec = -1;
	static _Thread_local char last[24];
	struct timeval tv = *tvp;
	if (tv.tv_sec != last_sec) {
		struct tm tm;
		gmtime_r(&tv.tv_sec, &tm);
		if (!strftime(last, sizeof(last), "%Y-%m-%dT%H:%M:%S", &tm))
			last[0] = '\0';
		last_sec = tv.tv_sec;
	}
	size_t l = strlen(last);
	int ms = (int)(tv.tv_usec / 1000);
	memcpy(out, last, l);
	out[l] = '.';
	out[l + 1] = (char)('0' + ms / 100);
	out[l + 2] = (char)('0' + ms / 10 % 10);
	out[l + 3] = (char)('0' + ms % 10);
	out[l + 4] = 'Z';
	out[l + 5] = '\0';
}

void log_msg(enum log_level level, const char *rid, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048], ts[32];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	struct timeval now;
	gettimeofday(&now, NULL);
	log__time(&now, ts);

	char line[8192];
	/* max = cap - 1, so the buffer never grows: it stays on the stack. */
	struct buf b = { .p = line, .len = 0, .cap = sizeof(line), .max = sizeof(line) - 1 };
	enum gw_err err;
	if (atomic_load(&cur_format) == LOG_JSON) {
		err = buf_cat(&b, "{\"ts\":\"", ts, "\",\"level\":\"", level_names[level], "\"", NULL);
		if (!err && rid)
			err = buf_cat(&b, ",\"rid\":\"", rid, "\"", NULL);
		if (!err)
			err = buf_adds(&b, ",\"msg\":\"");
		if (!err)
			err = buf_add_json_str(&b, msg, mlen);
		if (!err)
			err = buf_adds(&b, "\"}\n");
	} else {
		err = buf_cat(&b, ts, " ", level_padded[level], " ", rid ? rid : "", rid ? " " : "", NULL);
		if (!err)
			err = buf_add(&b, msg, mlen);
		if (!err)
			err = buf_addc(&b, '\n');
	}
	if (err) /* the line did not fit: cut it rather than lose it */
		b.len = sizeof(line) - 1, line[b.len - 1] = '\n';
	write_all(line, b.len);
}
