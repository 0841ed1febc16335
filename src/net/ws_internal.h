/* ws_internal.h - pure pieces of ws.c exposed for unit tests and fuzzing. */
#ifndef GW_WS_INTERNAL_H
#define GW_WS_INTERNAL_H

#include "gw.h"

/* The server's answer to the Upgrade request may not exceed this. */
#define WS_HS_MAX_BYTES 16384

/* accept = base64(SHA1(key + RFC 6455 GUID)); out gets 28 chars + NUL. */
void ws__accept_for_key(const char *key, char out[29]);

/* Parses the answer to the Upgrade request in p[0..n).
 *   GW_EAGAIN  header block not complete yet (and n < WS_HS_MAX_BYTES)
 *   GW_OK      101 with Upgrade: websocket, Connection: upgrade and the
 *              Sec-WebSocket-Accept equal to `accept`; *hdr_len is the
 *              length of the header block, bytes after it are frames
 *   GW_EAUTH   401 or 403
 *   GW_EPROTO  anything else
 * *status is the HTTP status once a status line parsed, else 0. */
enum gw_err ws__parse_handshake(const char *p, size_t n, const char *accept, int *status,
				size_t *hdr_len) GW_MUSTCHECK;

struct ws;
/* How an upgraded ws does its I/O: "fd", "ssl" or "curl" ("none" before). */
const char *ws__io_name(const struct ws *w);
/* Whether w's TLS handshake resumed a session (false for plain ws). */
bool ws__tls_resumed(const struct ws *w);
/* Whether frames wait in w's send queue. */
bool ws__queued(const struct ws *w);
/* Whether w holds a wslay frame parser now (only while inside a frame). */
bool ws__holds_parser(const struct ws *w);

struct httpc;
struct ws_cbs;
/* A ws over an already connected plain fd (the caller closes it after
 * ws_free), upgraded at once: drives the frame and message layers without
 * curl or a handshake, for the fuzzer. on_open runs from inside this call. */
enum gw_err ws__adopt_fd(struct httpc *h, int fd, size_t max_msg_bytes, const struct ws_cbs *cbs,
			 void *arg, struct ws **out) GW_MUSTCHECK;

#endif
