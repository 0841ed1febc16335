/* cio.c - direct I/O on a connection curl opened (see cio.h). */
#include "net/cio.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

void cio_attach_fd(struct cio *io, curl_socket_t fd)
{
	memset(io, 0, sizeof(*io));
	io->kind = CIO_FD;
	io->fd = fd;
}

void cio_attach(struct cio *io, CURL *e, curl_socket_t fd)
{
	cio_attach_fd(io, fd);
	io->easy = e;
	struct curl_tlssessioninfo *ti = NULL;
	if (curl_easy_getinfo(e, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti &&
	    ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals) {
		io->ssl = ti->internals;
		/* A blocked write is offered again from another buffer (wslay
		 * masks a frame again from the same offset); let OpenSSL accept
		 * that and partial writes, as send(2) does. */
		SSL_set_mode(io->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		io->kind = CIO_SSL;
		return;
	}
	char *url = NULL;
	curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
	/* TLS we cannot reach (another backend): curl must do the I/O. */
	if (url && strncasecmp(url, "https:", 6) == 0)
		io->kind = CIO_CURL;
}

static ssize_t ssl_recv(struct cio *io, void *p, size_t n)
{
	ERR_clear_error();
	int r = SSL_read(io->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	io->rd_wants_wr = false;
	if (r > 0)
		return r;
	switch (SSL_get_error(io->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return CIO_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		io->rd_wants_wr = true;
		return CIO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		return CIO_ERR;
	}
}

ssize_t cio_recv(struct cio *io, void *p, size_t n)
{
	if (io->kind == CIO_SSL)
		return ssl_recv(io, p, n);
	if (io->kind == CIO_CURL) {
		size_t got = 0;
		CURLcode rc = curl_easy_recv(io->easy, p, n, &got);
		if (rc == CURLE_AGAIN)
			return CIO_AGAIN;
		return rc ? CIO_ERR : (ssize_t)got;
	}
	/* Not for TLS, where the library may hold decrypted bytes the socket
	 * does not show. The fd is level-triggered, so bytes arriving
	 * meanwhile wake the owner, which clears the mark. */
	if (io->drained)
		return CIO_AGAIN;
	ssize_t r;
	do
		r = recv(io->fd, p, n, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? CIO_AGAIN : CIO_ERR;
	if (r > 0 && (size_t)r < n)
		io->drained = true;
	return r;
}

static ssize_t ssl_send(struct cio *io, const void *p, size_t n)
{
	ERR_clear_error();
	int r = SSL_write(io->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	io->wr_wants_rd = false;
	if (r > 0)
		return r;
	switch (SSL_get_error(io->ssl, r)) {
	case SSL_ERROR_WANT_WRITE:
		return CIO_AGAIN;
	case SSL_ERROR_WANT_READ:
		io->wr_wants_rd = true;
		return CIO_AGAIN;
	default:
		return CIO_ERR;
	}
}

ssize_t cio_send(struct cio *io, const void *p, size_t n)
{
	if (io->kind == CIO_SSL)
		return ssl_send(io, p, n);
	if (io->kind == CIO_CURL) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(io->easy, p, n, &sent);
		if (rc == CURLE_AGAIN)
			return CIO_AGAIN;
		return rc ? CIO_ERR : (ssize_t)sent;
	}
	ssize_t r;
	do
		r = send(io->fd, p, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? CIO_AGAIN : CIO_ERR;
	return r;
}

const char *cio_name(const struct cio *io)
{
	return io->kind == CIO_SSL ? "ssl" : io->kind == CIO_CURL ? "curl" : "fd";
}

bool cio_tls_resumed(const struct cio *io)
{
	return io->ssl && SSL_session_reused(io->ssl);
}
