/* conversation.h - conversation continuity, the pure part (DESIGN §4).
 *
 * Clients resend the whole history each turn; the upstream keeps it per
 * chat. A conversation is recognised by a key over (tenant, messages):
 *   - after a reply completes, the caller stores
 *       conv_key(tenant, msgs, n, reply) -> upstream chat;
 *   - on the next request it looks up
 *       conv_key(tenant, msgs, conv_lookup_prefix(msgs, n), NULL, 0):
 *     a hit sends only conv_new_turn(), a miss opens a new chat with
 *     conv_flatten() of the whole transcript.
 * Nothing here does I/O; every function is a function of its arguments. */
#ifndef GW_CONVERSATION_H
#define GW_CONVERSATION_H

#include "core/chat.h"
#include "util/buf.h"

#define CONV_KEY_LEN 32 /* SHA-256, same as STORE_KEY_LEN */

/* SHA-256 over a canonical, length-prefixed form of tenant and messages (and
 * extra_assistant_reply as one more assistant message when not NULL; it may
 * hold NULs, reply_len counts its bytes). System and developer count as one
 * role, since clients switch between them. tenant NULL is the same as "". */
void conv_key(const char *tenant, const struct chat_msg *msgs, size_t n,
	      const char *extra_assistant_reply, size_t reply_len, uint8_t out[CONV_KEY_LEN]);

/* How many leading messages make up "the history without the last user
 * turn": the trailing user and tool messages are dropped. */
size_t conv_lookup_prefix(const struct chat_msg *msgs, size_t n);

/* True when a key over msgs[0..prefix) can match a stored key at all:
 * stored keys always end with an assistant reply, so a prefix that does not
 * end with an assistant message is a certain miss (skip the lookup). */
bool conv_prefix_usable(const struct chat_msg *msgs, size_t prefix);

/* What trimming did, for the caller's log line. */
struct conv_trim {
	size_t dropped_msgs; /* oldest whole messages left out */
	size_t cut_bytes;    /* bytes cut from the start of the newest message */
};

/* Appends the transcript sent on a miss, as one prompt, to out:
 * system/developer texts first as they are (joined by "\n\n"), then every
 * other message as "User: ...", "Assistant: ...", "Tool: ..." separated by
 * "\n\n". A lone user message without system or assistant messages is sent
 * as its bare text. At most budget_bytes are appended: system text is kept,
 * the oldest messages are dropped first, and if the newest message alone is
 * too long its beginning is cut at a UTF-8 character boundary.
 * GW_ELIMIT if the system text leaves no room for any of the newest message
 * (or out's own ceiling is hit); out may then hold a partial append.
 * dropped_msgs may be NULL. */
enum gw_err conv_flatten(const struct chat_msg *msgs, size_t n, size_t budget_bytes,
			 struct buf *out, size_t *dropped_msgs) GW_MUSTCHECK;
/* The same, reporting the cut as well. trim may be NULL. */
enum gw_err conv_flatten_ex(const struct chat_msg *msgs, size_t n, size_t budget_bytes,
			    struct buf *out, struct conv_trim *trim) GW_MUSTCHECK;

/* Appends the text sent on a hit: the messages after prefix (normally one
 * user message, sent bare; several are labelled as in conv_flatten), trimmed
 * the same way. GW_EINVAL if there is no message after prefix. */
enum gw_err conv_new_turn(const struct chat_msg *msgs, size_t n, size_t prefix,
			  size_t budget, struct buf *out) GW_MUSTCHECK;
enum gw_err conv_new_turn_ex(const struct chat_msg *msgs, size_t n, size_t prefix,
			     size_t budget, struct buf *out, struct conv_trim *trim) GW_MUSTCHECK;

#endif
