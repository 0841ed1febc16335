/* cio.h - direct I/O on a connection curl opened with CONNECT_ONLY.
 *
 * curl connects (TCP, proxy tunnel, TLS); after the first curl_easy_send
 * the bytes go straight through recv/send on the fd, or SSL_read/SSL_write
 * on curl's SSL object, because curl 7.88's curl_easy_recv/send find their
 * connection with a linear scan of the multi's connection cache. curl's own
 * calls remain for a TLS backend other than OpenSSL. Used by ws.c and
 * h1c.c. */
#ifndef GW_CIO_H
#define GW_CIO_H

#include "gw.h"

#include <curl/curl.h>
#include <sys/types.h>

#define CIO_ERR (-1)
#define CIO_AGAIN (-2)

enum cio_kind { CIO_FD, CIO_SSL, CIO_CURL };

struct ssl_st;

struct cio {
	enum cio_kind kind;
	curl_socket_t fd;
	struct ssl_st *ssl;
	CURL *easy;
	bool rd_wants_wr; /* SSL_read needs the fd writable */
	bool wr_wants_rd; /* SSL_write needs the fd readable */
	/* A short read on a plain socket emptied it: until the loop wakes us
	 * again (the owner clears this), a recv would only say EAGAIN. */
	bool drained;
};

/* After the first curl_easy_send on e, whose connection has socket fd:
 * picks how its bytes are reached. */
void cio_attach(struct cio *io, CURL *e, curl_socket_t fd);
/* A plain connected fd, without curl (tests, the ws fuzzer). */
void cio_attach_fd(struct cio *io, curl_socket_t fd);

/* Bytes read or written, 0 at the peer's orderly end (recv only),
 * CIO_AGAIN when the socket is not ready, CIO_ERR on any error. */
ssize_t cio_recv(struct cio *io, void *p, size_t n);
ssize_t cio_send(struct cio *io, const void *p, size_t n);

/* "fd", "ssl" or "curl". */
const char *cio_name(const struct cio *io);
/* Whether the TLS handshake resumed a session (false without TLS). */
bool cio_tls_resumed(const struct cio *io);

#endif
