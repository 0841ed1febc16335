/* ws.h - WebSocket client: wslay framing over a connection that curl opens
 * with CURLOPT_CONNECT_ONLY on the httpc's multi handle (so TLS settings,
 * CA bundle and HTTP(S)/SOCKS proxies apply to the stream too). After the
 * connect, I/O goes to the socket (or the TLS object) directly, so the cost
 * per message does not grow with the number of open connections.
 *
 * Callbacks run from the loop. Any callback may call ws_free() or
 * ws_close() on its own ws. After ws_open() returns GW_OK, exactly one
 * on_close follows, unless ws_free() is called first. The ws stays the
 * caller's to free after on_close (ws_free may be called inside it). */
#ifndef GW_WS_H
#define GW_WS_H

#include "gw.h"

struct httpc;
struct ws;

struct ws_cbs {
	void (*on_open)(void *arg);                          /* handshake done (101 checked) */
	void (*on_text)(void *arg, const char *p, size_t n); /* one whole text message */
	/* err: GW_OK for a clean close (code = peer's status code), else why it
	 * ended: GW_ETIMEOUT (connect/handshake deadline), GW_EAUTH (upgrade
	 * refused with 401/403; http_status says which), GW_EPROTO, GW_EIO
	 * (connection dropped), GW_ELIMIT (message over max_msg_bytes). */
	void (*on_close)(void *arg, enum gw_err err, int code, int http_status);
};

struct ws_opts {
	const char *url;              /* ws://, wss://, http:// or https:// */
	const char *const *headers;   /* NULL-terminated extra lines, e.g. "Origin: https://cto.new" */
	long connect_timeout_ms;      /* connect + TLS + upgrade; 0 = 10000 */
	size_t max_msg_bytes;         /* 0 = 4 MiB */
};

enum gw_err ws_open(struct httpc *h, const struct ws_opts *o, const struct ws_cbs *cbs,
		    void *arg, struct ws **out) GW_MUSTCHECK;
/* Queues a text message; returns GW_EIO if the connection is not open. */
enum gw_err ws_send_text(struct ws *w, const char *p, size_t n) GW_MUSTCHECK;
/* Backpressure: while paused, no bytes are read and on_text is not called. */
void ws_pause(struct ws *w, bool paused);
/* Starts a clean close with `code`; on_close follows. */
void ws_close(struct ws *w, int code);
/* Closes at once; no callback runs afterwards. Accepts NULL. */
void ws_free(struct ws *w);

#endif
