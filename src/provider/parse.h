/* parse.h - pure parsers of the bytes cto.new sends (and of the cookie the
 * operator pastes). No I/O, no globals: each is unit-tested and fuzzed.
 * Facts about the formats: docs/upstream-protocol.md. */
#ifndef GW_PROVIDER_PARSE_H
#define GW_PROVIDER_PARSE_H

#include "gw.h"
#include "util/buf.h"

/* ---- cookie ---------------------------------------------------------- */

/* Extracts the __client value from what the operator pasted: a whole
 * browser Cookie header ("a=b; __client=VALUE; c=d"), "__client=VALUE", or
 * the bare VALUE. Surrounding whitespace and quotes are dropped. Returns
 * GW_EINVAL if there is no usable value (empty, control characters, spaces,
 * ';' or ',' inside, over 8 KiB, or a Cookie header without __client). */
enum gw_err clerk_cookie_parse(const char *in, size_t n, struct buf *value) GW_MUSTCHECK;

/* If a Set-Cookie header value sets __client to a new non-empty value,
 * copies it into value and returns true. Deletions (empty value, Max-Age=0
 * or an expiry in the past) return false. */
bool clerk_set_cookie_client(const char *hdr, size_t n, struct buf *value);

/* ---- Clerk JSON ------------------------------------------------------ */

struct clerk_session {
	char session_id[128];
	char user_id[128];
	char org_id[128];        /* "" when the user has no organisation */
};

/* GET /v1/client: picks last_active_session_id if it is an active session,
 * else the first active one. GW_EAUTH when there is no active session (the
 * cookie is signed out), GW_EPROTO when the shape is not understood. */
enum gw_err clerk_parse_client(const char *body, size_t n, struct clerk_session *out) GW_MUSTCHECK;

/* POST /tokens: {"object":"token","jwt":"..."}; copies the JWT and reads its
 * exp claim (unix seconds; payload is base64url JSON, the signature is not
 * checked). GW_EPROTO on anything else. */
enum gw_err clerk_parse_token(const char *body, size_t n, struct buf *jwt, int64_t *exp) GW_MUSTCHECK;

/* Clerk error bodies: {"errors":[{"code":"signed_out",...}]}. Copies the
 * first code (or "") into code. */
void clerk_error_code(const char *body, size_t n, char *code, size_t codelen);

/* ---- EngineLabs REST JSON -------------------------------------------- */

struct engine_project {
	char project_id[128];    /* = chatHistoryId */
	char workspace_id[128];
};

/* POST /projects/create-hosted. GW_EPROTO if projectId or workspaceId is
 * missing, not a string, too long or contains characters outside
 * [A-Za-z0-9_-] (they go into URLs). */
enum gw_err engine_parse_project(const char *body, size_t n, struct engine_project *out) GW_MUSTCHECK;

struct engine_billing {
	bool has_reached_limit;
	int64_t retry_at;        /* unix seconds when the limit resets, 0 = unknown */
	long daily_usage, daily_limit;
	long task_concurrency_limit; /* 0 = unknown */
};

/* GET /billing, and 429 bodies of POST /engine-agent/chat
 * ({"error":...,"limitReached":{"type":"daily","retryAt":"ISO-8601"}}).
 * Unknown fields are ignored; GW_EPROTO only if the body is not a JSON object. */
enum gw_err engine_parse_billing(const char *body, size_t n, struct engine_billing *out) GW_MUSTCHECK;

/* A short, single-line, printable excerpt of an error body for logs and
 * client messages (JSON "error"/"message" field if present, else the text),
 * at most outlen-1 bytes, never invalid UTF-8. */
void engine_error_excerpt(const char *body, size_t n, char *out, size_t outlen);

/* ---- WebSocket frames ------------------------------------------------ */

enum frame_kind {
	FRAME_HISTORY,    /* snapshot on connect: ignore */
	FRAME_STATE,      /* in_progress / cancelled set */
	FRAME_ECHO,       /* the user's own prompt echoed back: ignore */
	FRAME_CHAT,       /* a piece of the answer: id + text */
	FRAME_THINKING,   /* a piece of reasoning: id + text */
	FRAME_LABEL,      /* chat title: ignore */
	FRAME_PONG,       /* plain text "pong" */
	FRAME_OTHER,      /* a known-shaped frame of another type (tool_call, ...): type set, log it */
};

struct frame_item {
	enum frame_kind kind;
	bool in_progress;        /* FRAME_STATE */
	bool cancelled;          /* FRAME_STATE */
	const char *id;          /* FRAME_CHAT/THINKING: message id ("" if none) */
	size_t id_len;
	const char *text;        /* FRAME_CHAT/THINKING: the piece */
	size_t len;
	const char *type;        /* FRAME_OTHER: the inner or outer type ("" if none) */
	size_t type_len;
};

/* Called once per item; pointers are valid only during the call. Return
 * false to stop parsing (frame_parse then returns GW_ECANCELED). */
typedef bool frame_item_cb(void *arg, const struct frame_item *it);

/* Parses one WebSocket text message. An "update" frame's buffer is JSON
 * inside a string and may hold several newline-separated inner objects;
 * each gives one item. GW_EPROTO for malformed JSON (items already
 * delivered stay delivered). Thinking text is read from
 * thinking.content, else content, else text. */
enum gw_err frame_parse(const char *msg, size_t n, frame_item_cb *cb, void *arg) GW_MUSTCHECK;

/* Turns the pieces of one reply into deltas whatever the upstream sends:
 * deltas by default; once a piece for a message id starts with all the
 * text so far of that id (at least 2 bytes) and is longer, the id switches
 * to snapshot mode and only the new suffix is emitted. */
struct piece_tracker {
	struct buf id;           /* current message id */
	struct buf text;         /* text so far of the current message id */
	bool snapshot;
};

void piece_tracker_init(struct piece_tracker *t, size_t max_bytes);
void piece_tracker_release(struct piece_tracker *t);
/* Sets *delta and *dlen to the new text to emit (may be empty; points into
 * piece or t's storage, valid until the next call). GW_ELIMIT past max_bytes. */
enum gw_err piece_tracker_feed(struct piece_tracker *t, const char *id, size_t id_len,
			       const char *piece, size_t n, const char **delta, size_t *dlen) GW_MUSTCHECK;

#endif
