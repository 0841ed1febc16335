/* h1c.h - REST calls httpc writes and reads itself (internal to net/).
 *
 * curl still opens every connection (TCP, proxy tunnel, TLS, DNS cache and
 * TLS sessions shared with the rest of httpc), as a CONNECT_ONLY handle;
 * the request is written and the response read here, on the fd or curl's
 * SSL object (cio.h), and the connection is kept for the next call to the
 * same origin. That skips, per call, what curl 7.88 spends on a transfer:
 * the URL parsed and printed again, every header byte through its printf,
 * its state machine, poll() calls and socket watch changes. callgrind:
 * one curl transfer cost 128,000 instructions; a streamed request with its
 * three REST calls went from 791,600 to 476,000 when they came here.
 *
 * Contract as httpc's: if h1c_call_start returns GW_OK, cb runs exactly
 * once, later, from the loop, unless h1c_call_cancel is called first. */
#ifndef GW_H1C_H
#define GW_H1C_H

#include "gw.h"
#include "util/buf.h"

#include <curl/curl.h>

struct httpc;
struct h1c;
struct h1c_call;

struct h1c_result {
	enum gw_err err;   /* GW_OK when a whole response arrived */
	long status;       /* 0 unless err == GW_OK */
	const char *error; /* why, when err != GW_OK; valid during the callback */
};

typedef void h1c_done_fn(void *arg, const struct h1c_result *r);

struct h1c_req {
	const char *method;
	const char *url;
	size_t origin_len;                 /* h1c_origin_len(url), not 0 */
	const char *hdr_block;             /* from h1c_headers_render */
	size_t hdr_len;
	unsigned hdr_flags;
	const char *body;                  /* may be NULL */
	size_t body_len;
	long timeout_ms;                   /* the whole call, connect included */
	struct buf *resp_body;             /* the caller's: its ceiling bounds the body */
	struct buf *resp_hdrs;             /* the caller's: the final head's header lines */
};

/* Which headers the caller gave, of those h1c adds otherwise. */
enum { H1C_HAS_USER_AGENT = 1, H1C_HAS_ACCEPT = 2 };

/* Renders the caller's "Name: value" lines (NULL-terminated, may be NULL)
 * as the request carries them, each ending in CRLF, onto b; a line "Name:"
 * with no value is left out (curl's rule for not sending a header). *flags
 * gets H1C_HAS_*. GW_EINVAL for a line with CR or LF in it or no colon. */
enum gw_err h1c_headers_render(const char *const *lines, struct buf *b,
			       unsigned *flags) GW_MUSTCHECK;

struct h1c *h1c_new(struct httpc *h);
/* Closes the kept connections; no call may be in flight. */
void h1c_free(struct h1c *p);

/* The length of url's "scheme://authority" when url can go this way,
 * else 0: http(s)://authority[/path][?query], plain printable ASCII, no
 * user info, no fragment (others go through curl). The rest of url is the
 * request target, written as it is. */
size_t h1c_origin_len(const char *url);

enum gw_err h1c_call_start(struct h1c *p, const struct h1c_req *q, h1c_done_fn *cb, void *arg,
			   struct h1c_call **out) GW_MUSTCHECK;
/* The callback never runs; the call's connection is closed (its state is
 * unknown). Not from inside the call's own callback. */
void h1c_call_cancel(struct h1c_call *c);

/* Calls in flight; connections held (idle, busy or connecting: each is a
 * handle on one of httpc's CONNECT_ONLY multis); idle ones. */
size_t h1c_calls(const struct h1c *p);
size_t h1c_conns(const struct h1c *p);
size_t h1c_idle(const struct h1c *p);

#endif
