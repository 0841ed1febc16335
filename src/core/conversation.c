/* conversation.c - conversation keys, lookup prefix and transcript
 * flattening (pure functions, see conversation.h). */
#include "core/conversation.h"
#include "util/sha.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Bumped whenever the canonical form changes, so old keys simply miss
 * instead of matching something else. */
static const char KEY_DOMAIN[] = "el2a-conv-v1\n";

static bool is_system(enum chat_role r)
{
	return r == ROLE_SYSTEM || r == ROLE_DEVELOPER;
}

/* system and developer share one canonical name: clients switch between them
 * from one turn to the next. */
static const char *canon_role(enum chat_role r)
{
	return is_system(r) ? "system" : chat_role_name(r);
}

/* "tag:n:" into head; 0 if it does not fit. By hand: snprintf was a
 * third of a part's cost for a short message. */
static size_t part_head(char head[64], const char *tag, size_t n)
{
	size_t tl = strlen(tag);
	char digits[24];
	size_t dl = 0;
	do
		digits[dl++] = (char)('0' + n % 10);
	while ((n /= 10) && dl < sizeof(digits));
	if (tl + dl + 2 > 64)
		return 0;
	memcpy(head, tag, tl);
	head[tl] = ':';
	for (size_t i = 0; i < dl; i++)
		head[tl + 1 + i] = digits[dl - 1 - i];
	head[tl + 1 + dl] = ':';
	return tl + dl + 2;
}

static bool digest_part(EVP_MD_CTX *ctx, const char *tag, const char *p, size_t n)
{
	char head[64];
	size_t hl = part_head(head, tag, n);
	if (!hl || EVP_DigestUpdate(ctx, head, hl) != 1)
		return false;
	return n == 0 || EVP_DigestUpdate(ctx, p, n) == 1;
}

static bool key_digest(EVP_MD_CTX *ctx, const char *tenant, const struct chat_msg *msgs,
		       size_t n, const char *reply, size_t reply_len, uint8_t out[CONV_KEY_LEN])
{
	unsigned int olen = 0;
	if (EVP_DigestInit_ex(ctx, gw_md_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, KEY_DOMAIN, sizeof(KEY_DOMAIN) - 1) != 1)
		return false;
	if (!digest_part(ctx, "tenant", tenant ? tenant : "", tenant ? strlen(tenant) : 0))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!digest_part(ctx, canon_role(msgs[i].role), msgs[i].text, msgs[i].len))
			return false;
	if (reply && !digest_part(ctx, "assistant", reply, reply_len))
		return false;
	return EVP_DigestFinal_ex(ctx, out, &olen) == 1 && olen == CONV_KEY_LEN;
}

void conv_key(const char *tenant, const struct chat_msg *msgs, size_t n,
	      const char *extra_assistant_reply, size_t reply_len, uint8_t out[CONV_KEY_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && key_digest(ctx, tenant, msgs, n, extra_assistant_reply, reply_len, out);
	EVP_MD_CTX_free(ctx);
	if (ok)
		return;
	/* Out of memory inside OpenSSL. A random key matches nothing, so the
	 * worst outcome is a miss (a new upstream chat), never two
	 * conversations sharing one chat as a constant fallback would. */
	GW_ASSERT(gw_random(out, CONV_KEY_LEN));
}

size_t conv_lookup_prefix(const struct chat_msg *msgs, size_t n)
{
	while (n > 0 && (msgs[n - 1].role == ROLE_USER || msgs[n - 1].role == ROLE_TOOL))
		n--;
	return n;
}

bool conv_prefix_usable(const struct chat_msg *msgs, size_t prefix)
{
	return prefix > 0 && msgs[prefix - 1].role == ROLE_ASSISTANT;
}

static const char *label(enum chat_role r)
{
	switch (r) {
	case ROLE_ASSISTANT: return "Assistant: ";
	case ROLE_TOOL: return "Tool: ";
	default: return "User: ";
	}
}

#define SEP "\n\n"
#define SEP_LEN 2

/* The shape of one flattened transcript, computed before any byte is
 * written so the budget decisions never depend on partial output. */
struct plan {
	size_t sys_bytes;  /* system block, separators included */
	size_t n_other;    /* non-system messages */
	bool bare;         /* one user message, nothing else: no label */
	size_t first_kept; /* index among the non-system messages */
	size_t cut;        /* bytes skipped at the start of the newest message */
};

static size_t label_len(const struct plan *p, enum chat_role r)
{
	return p->bare ? 0 : strlen(label(r));
}

static void plan_system(const struct chat_msg *m, size_t n, struct plan *p)
{
	size_t n_sys = 0;
	const struct chat_msg *only = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!is_system(m[i].role)) {
			p->n_other++;
			only = &m[i];
		} else if (m[i].len > 0) {
			p->sys_bytes += (n_sys++ ? SEP_LEN : 0) + m[i].len;
		}
	}
	p->bare = n_sys == 0 && p->n_other == 1 && only->role == ROLE_USER;
}

/* Index in m of the newest non-system message before end (n_other > 0). */
static size_t prev_other(const struct chat_msg *m, size_t end)
{
	while (end > 0 && is_system(m[end - 1].role))
		end--;
	GW_ASSERT(end > 0);
	return end - 1;
}

/* Cuts the beginning of the newest message so that it fits in avail bytes
 * with its label; the kept end starts on a UTF-8 character. */
static enum gw_err plan_cut(const struct chat_msg *last, size_t avail, struct plan *p)
{
	size_t lab = label_len(p, last->role);
	if (avail <= lab)
		return GW_ELIMIT;
	size_t start = last->len - (avail - lab);
	while (start < last->len && ((unsigned char)last->text[start] & 0xC0) == 0x80)
		start++;
	if (start >= last->len)
		return GW_ELIMIT;
	p->first_kept = p->n_other - 1;
	p->cut = start;
	return GW_OK;
}

/* Chooses which messages fit: newest first, whole messages, then a cut of
 * the newest one if not even it fits. */
static enum gw_err plan_budget(const struct chat_msg *m, size_t n, size_t budget, struct plan *p)
{
	size_t sep = p->sys_bytes > 0 && p->n_other > 0 ? SEP_LEN : 0;
	if (p->sys_bytes > budget || budget - p->sys_bytes < sep)
		return GW_ELIMIT;
	size_t avail = budget - p->sys_bytes - sep, used = 0, k = 0, end = n;
	while (k < p->n_other) {
		end = prev_other(m, end);
		const struct chat_msg *c = &m[end];
		size_t cost = (k ? SEP_LEN : 0) + label_len(p, c->role);
		if (c->len > avail || cost > avail - c->len || used > avail - c->len - cost)
			break;
		used += cost + c->len;
		k++;
	}
	p->first_kept = p->n_other - k;
	if (k > 0 || p->n_other == 0)
		return GW_OK;
	return plan_cut(&m[prev_other(m, n)], avail, p);
}

static enum gw_err emit_system(const struct chat_msg *m, size_t n, struct buf *out)
{
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (!is_system(m[i].role) || m[i].len == 0)
			continue;
		enum gw_err err = first ? GW_OK : buf_add(out, SEP, SEP_LEN);
		if (err || (err = buf_add(out, m[i].text, m[i].len)))
			return err;
		first = false;
	}
	return GW_OK;
}

static enum gw_err emit(const struct chat_msg *m, size_t n, const struct plan *p, struct buf *out)
{
	enum gw_err err = emit_system(m, n, out);
	if (err)
		return err;
	bool need_sep = p->sys_bytes > 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_system(m[i].role) || k++ < p->first_kept)
			continue;
		size_t skip = k == p->n_other ? p->cut : 0;
		if (need_sep && (err = buf_add(out, SEP, SEP_LEN)))
			return err;
		if (!p->bare && (err = buf_adds(out, label(m[i].role))))
			return err;
		if ((err = buf_add(out, m[i].text + skip, m[i].len - skip)))
			return err;
		need_sep = true;
	}
	return GW_OK;
}

enum gw_err conv_flatten_ex(const struct chat_msg *msgs, size_t n, size_t budget_bytes,
			    struct buf *out, struct conv_trim *trim)
{
	struct plan p = { 0 };
	plan_system(msgs, n, &p);
	enum gw_err err = plan_budget(msgs, n, budget_bytes, &p);
	if (err)
		return err;
	if (trim) {
		trim->dropped_msgs = p.first_kept;
		trim->cut_bytes = p.cut;
	}
	return emit(msgs, n, &p, out);
}

enum gw_err conv_flatten(const struct chat_msg *msgs, size_t n, size_t budget_bytes,
			 struct buf *out, size_t *dropped_msgs)
{
	struct conv_trim t = { 0 };
	enum gw_err err = conv_flatten_ex(msgs, n, budget_bytes, out, &t);
	if (!err && dropped_msgs)
		*dropped_msgs = t.dropped_msgs;
	return err;
}

enum gw_err conv_new_turn_ex(const struct chat_msg *msgs, size_t n, size_t prefix,
			     size_t budget, struct buf *out, struct conv_trim *trim)
{
	if (prefix >= n)
		return GW_EINVAL;
	return conv_flatten_ex(msgs + prefix, n - prefix, budget, out, trim);
}

enum gw_err conv_new_turn(const struct chat_msg *msgs, size_t n, size_t prefix,
			  size_t budget, struct buf *out)
{
	return conv_new_turn_ex(msgs, n, prefix, budget, out, NULL);
}
