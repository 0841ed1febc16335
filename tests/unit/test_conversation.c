/* test_conversation.c - keys, lookup prefix, flattening and trimming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/conversation.h"

#define M(r, t) { (r), (char *)(t), sizeof(t) - 1 }

static void key_of(const char *tenant, const struct chat_msg *m, size_t n, uint8_t out[32])
{
	conv_key(tenant, m, n, NULL, 0, out);
}

static bool same_key(const char *t1, const struct chat_msg *a, size_t na,
		     const char *t2, const struct chat_msg *b, size_t nb)
{
	uint8_t k1[32], k2[32];
	key_of(t1, a, na, k1);
	key_of(t2, b, nb, k2);
	return memcmp(k1, k2, 32) == 0;
}

/* The key is stored (SQLite, Redis): its form may not change between
 * versions. Computed here from the documented form, not by conv_key's
 * code: SHA-256 of the domain line, then "tag:length:" and the bytes of
 * the tenant, each message (system and developer as "system") and the
 * reply. */
static void test_key_form(void **state)
{
	(void)state;
	char big[1000];
	memset(big, 'b', sizeof(big));
	struct chat_msg m[] = { M(ROLE_DEVELOPER, "be brief"), M(ROLE_USER, "hi"),
				{ ROLE_ASSISTANT, big, sizeof(big) }, M(ROLE_USER, "") };
	const char *parts[][2] = { { "tenant", "acme" }, { "system", "be brief" }, { "user", "hi" } };
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
	EVP_DigestUpdate(ctx, "el2a-conv-v1\n", 13);
	for (size_t i = 0; i < 3; i++) {
		char h[64];
		int hl = snprintf(h, sizeof(h), "%s:%zu:", parts[i][0], strlen(parts[i][1]));
		EVP_DigestUpdate(ctx, h, (size_t)hl);
		EVP_DigestUpdate(ctx, parts[i][1], strlen(parts[i][1]));
	}
	EVP_DigestUpdate(ctx, "assistant:1000:", 15);
	EVP_DigestUpdate(ctx, big, sizeof(big));
	EVP_DigestUpdate(ctx, "user:0:", 7);
	EVP_DigestUpdate(ctx, "assistant:5:hello", 17);
	uint8_t want[32], got[32];
	unsigned int wl = 0;
	assert_int_equal(EVP_DigestFinal_ex(ctx, want, &wl), 1);
	EVP_MD_CTX_free(ctx);
	conv_key("acme", m, 4, "hello", 5, got);
	assert_memory_equal(got, want, 32);
}

static void test_key_stable(void **state)
{
	(void)state;
	struct chat_msg m[] = { M(ROLE_SYSTEM, "be brief"), M(ROLE_USER, "hi"),
				M(ROLE_ASSISTANT, "hello"), M(ROLE_USER, "how are you?") };
	uint8_t k1[32], k2[32], zero[32] = { 0 };
	key_of("tenant", m, 4, k1);
	key_of("tenant", m, 4, k2);
	assert_memory_equal(k1, k2, 32);
	assert_memory_not_equal(k1, zero, 32);
	/* NULL tenant is the empty tenant. */
	assert_true(same_key(NULL, m, 4, "", m, 4));
	/* No messages still gives a key, different from one message. */
	assert_false(same_key("t", m, 0, "t", m, 1));
}

static void test_key_sensitive(void **state)
{
	(void)state;
	struct chat_msg a[] = { M(ROLE_USER, "hi"), M(ROLE_ASSISTANT, "yo") };
	struct chat_msg role[] = { M(ROLE_ASSISTANT, "hi"), M(ROLE_ASSISTANT, "yo") };
	struct chat_msg text[] = { M(ROLE_USER, "hi!"), M(ROLE_ASSISTANT, "yo") };
	struct chat_msg order[] = { M(ROLE_ASSISTANT, "yo"), M(ROLE_USER, "hi") };
	struct chat_msg tool[] = { M(ROLE_USER, "hi"), M(ROLE_TOOL, "yo") };
	assert_false(same_key("t", a, 2, "t", role, 2));
	assert_false(same_key("t", a, 2, "t", text, 2));
	assert_false(same_key("t", a, 2, "t", order, 2));
	assert_false(same_key("t", a, 2, "t", tool, 2));
	assert_false(same_key("t", a, 2, "u", a, 2));
	assert_false(same_key("t", a, 2, "t", a, 1));
}

static void test_key_length_prefix(void **state)
{
	(void)state;
	struct chat_msg x[] = { M(ROLE_USER, "ab"), M(ROLE_USER, "c") };
	struct chat_msg y[] = { M(ROLE_USER, "a"), M(ROLE_USER, "bc") };
	struct chat_msg z[] = { M(ROLE_USER, "abc") };
	assert_false(same_key("t", x, 2, "t", y, 2));
	assert_false(same_key("t", x, 2, "t", z, 1));
	/* A message text that looks like the canonical form of two messages. */
	struct chat_msg fake[] = { M(ROLE_USER, "a:1:user:1:b") };
	struct chat_msg two[] = { M(ROLE_USER, "a"), M(ROLE_USER, "b") };
	assert_false(same_key("t", fake, 1, "t", two, 2));
	/* Tenant and message boundaries cannot slide into each other. */
	struct chat_msg u1[] = { M(ROLE_USER, "bc") };
	struct chat_msg u2[] = { M(ROLE_USER, "c") };
	assert_false(same_key("a", u1, 1, "ab", u2, 1));
	/* Texts with embedded NULs are hashed by length. */
	struct chat_msg n1[] = { { ROLE_USER, (char *)"a\0b", 3 } };
	struct chat_msg n2[] = { { ROLE_USER, (char *)"a\0c", 3 } };
	assert_false(same_key("t", n1, 1, "t", n2, 1));
}

static void test_key_system_is_developer(void **state)
{
	(void)state;
	struct chat_msg s[] = { M(ROLE_SYSTEM, "rules"), M(ROLE_USER, "q") };
	struct chat_msg d[] = { M(ROLE_DEVELOPER, "rules"), M(ROLE_USER, "q") };
	struct chat_msg u[] = { M(ROLE_USER, "rules"), M(ROLE_USER, "q") };
	assert_true(same_key("t", s, 2, "t", d, 2));
	assert_false(same_key("t", s, 2, "t", u, 2));
}

static void test_key_reply(void **state)
{
	(void)state;
	struct chat_msg turn[] = { M(ROLE_USER, "q"), M(ROLE_ASSISTANT, "answer") };
	uint8_t stored[32], looked[32];
	conv_key("t", turn, 1, "answer", 6, stored);
	/* The next request resends the reply as an assistant message, then a
	 * new user turn: its lookup key must be the stored one. */
	struct chat_msg next[] = { M(ROLE_USER, "q"), M(ROLE_ASSISTANT, "answer"),
				   M(ROLE_USER, "more") };
	size_t prefix = conv_lookup_prefix(next, 3);
	assert_int_equal(prefix, 2);
	assert_true(conv_prefix_usable(next, prefix));
	key_of("t", next, prefix, looked);
	assert_memory_equal(stored, looked, 32);
	key_of("t", turn, 2, looked);
	assert_memory_equal(stored, looked, 32);
	/* Reply given as NULL vs empty reply differ (one more message). */
	conv_key("t", turn, 1, "", 0, looked);
	key_of("t", turn, 1, stored);
	assert_memory_not_equal(stored, looked, 32);
}

static void test_prefix(void **state)
{
	(void)state;
	struct chat_msg a[] = { M(ROLE_SYSTEM, "s"), M(ROLE_USER, "u") };
	assert_int_equal(conv_lookup_prefix(a, 2), 1);
	assert_false(conv_prefix_usable(a, 1));
	struct chat_msg b[] = { M(ROLE_USER, "u") };
	assert_int_equal(conv_lookup_prefix(b, 1), 0);
	assert_false(conv_prefix_usable(b, 0));
	struct chat_msg c[] = { M(ROLE_USER, "u"), M(ROLE_ASSISTANT, "a"), M(ROLE_TOOL, "t"),
				M(ROLE_USER, "u2"), M(ROLE_USER, "u3") };
	assert_int_equal(conv_lookup_prefix(c, 5), 2);
	assert_true(conv_prefix_usable(c, 2));
	struct chat_msg d[] = { M(ROLE_USER, "u"), M(ROLE_ASSISTANT, "a") };
	assert_int_equal(conv_lookup_prefix(d, 2), 2);
	assert_int_equal(conv_lookup_prefix(d, 0), 0);
}

static char *flat(const struct chat_msg *m, size_t n, size_t budget, size_t *dropped,
		  enum gw_err *err_out)
{
	static struct buf b;
	buf_release(&b);
	buf_init(&b, 1 << 20);
	enum gw_err err = conv_flatten(m, n, budget, &b, dropped);
	if (err_out)
		*err_out = err;
	else
		assert_int_equal(err, GW_OK);
	return b.p ? b.p : (char *)"";
}

static void test_flatten_format(void **state)
{
	(void)state;
	size_t dropped = 99;
	struct chat_msg one[] = { M(ROLE_USER, "just this") };
	assert_string_equal(flat(one, 1, 1000, &dropped, NULL), "just this");
	assert_int_equal(dropped, 0);

	struct chat_msg sys[] = { M(ROLE_SYSTEM, "Be nice."), M(ROLE_USER, "hi") };
	assert_string_equal(flat(sys, 2, 1000, NULL, NULL), "Be nice.\n\nUser: hi");

	struct chat_msg all[] = { M(ROLE_DEVELOPER, "D1"), M(ROLE_USER, "q1"),
				  M(ROLE_ASSISTANT, "a1"), M(ROLE_SYSTEM, "S2"),
				  M(ROLE_TOOL, "t1"), M(ROLE_USER, "q2") };
	assert_string_equal(flat(all, 6, 1000, &dropped, NULL),
			    "D1\n\nS2\n\nUser: q1\n\nAssistant: a1\n\nTool: t1\n\nUser: q2");
	assert_int_equal(dropped, 0);

	struct chat_msg two[] = { M(ROLE_USER, "q1"), M(ROLE_ASSISTANT, "a1"),
				  M(ROLE_USER, "q2") };
	assert_string_equal(flat(two, 3, 1000, NULL, NULL),
			    "User: q1\n\nAssistant: a1\n\nUser: q2");

	/* Empty system texts add nothing; a lone user then is still bare. */
	struct chat_msg empty_sys[] = { M(ROLE_SYSTEM, ""), M(ROLE_USER, "q") };
	assert_string_equal(flat(empty_sys, 2, 1000, NULL, NULL), "q");

	struct chat_msg only_sys[] = { M(ROLE_SYSTEM, "s") };
	assert_string_equal(flat(only_sys, 1, 1000, NULL, NULL), "s");
	assert_string_equal(flat(NULL, 0, 1000, NULL, NULL), "");
}

static void test_flatten_drops_oldest(void **state)
{
	(void)state;
	struct chat_msg m[] = { M(ROLE_SYSTEM, "SYS"), M(ROLE_USER, "first"),
				M(ROLE_ASSISTANT, "second"), M(ROLE_USER, "third") };
	const char *full = "SYS\n\nUser: first\n\nAssistant: second\n\nUser: third";
	size_t dropped;
	assert_string_equal(flat(m, 4, strlen(full), &dropped, NULL), full);
	assert_int_equal(dropped, 0);
	assert_string_equal(flat(m, 4, strlen(full) - 1, &dropped, NULL),
			    "SYS\n\nAssistant: second\n\nUser: third");
	assert_int_equal(dropped, 1);
	assert_string_equal(flat(m, 4, strlen("SYS\n\nUser: third"), &dropped, NULL),
			    "SYS\n\nUser: third");
	assert_int_equal(dropped, 2);
	/* Newest message alone too long: its beginning is cut. */
	struct conv_trim t;
	struct buf b;
	buf_init(&b, 1000);
	assert_int_equal(conv_flatten_ex(m, 4, strlen("SYS\n\nUser: ird"), &b, &t), GW_OK);
	assert_string_equal(b.p, "SYS\n\nUser: ird");
	assert_int_equal(t.dropped_msgs, 2);
	assert_int_equal(t.cut_bytes, 2);
	buf_release(&b);
	/* No room for any of it next to the system text. */
	enum gw_err err;
	flat(m, 4, strlen("SYS\n\nUser: "), NULL, &err);
	assert_int_equal(err, GW_ELIMIT);
	flat(m, 4, 2, NULL, &err);
	assert_int_equal(err, GW_ELIMIT);
}

/* Strict UTF-8 check: no overlongs, surrogates or truncated sequences. */
static bool valid_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned c = p[i], cp;
		size_t k;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + j] & 0x3F);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static void check_every_budget(const struct chat_msg *m, size_t n, const char *sys)
{
	const struct chat_msg *last = &m[n - 1];
	size_t prev_dropped = SIZE_MAX;
	for (size_t budget = 0; budget < 400; budget++) {
		struct buf b;
		struct conv_trim t = { 0 };
		buf_init(&b, 1 << 16);
		enum gw_err err = conv_flatten_ex(m, n, budget, &b, &t);
		if (err) {
			assert_int_equal(err, GW_ELIMIT);
			buf_release(&b);
			continue;
		}
		assert_true(b.len <= budget);
		assert_true(valid_utf8(b.p, b.len));
		if (sys)
			assert_memory_equal(b.p, sys, strlen(sys));
		/* The newest message's end is always there. */
		size_t tail = last->len - t.cut_bytes;
		assert_true(b.len >= tail);
		assert_memory_equal(b.p + b.len - tail, last->text + t.cut_bytes, tail);
		/* More budget never drops more. */
		assert_true(t.dropped_msgs <= prev_dropped);
		prev_dropped = t.dropped_msgs;
		if (t.cut_bytes)
			assert_int_equal(t.dropped_msgs, n - 1 - (sys ? 1 : 0));
		buf_release(&b);
	}
	assert_int_equal(prev_dropped, 0);
}

static void test_trim_multibyte(void **state)
{
	(void)state;
	struct chat_msg zh[] = { M(ROLE_SYSTEM, "系统提示"), M(ROLE_USER, "你好，世界"),
				 M(ROLE_ASSISTANT, "好的😀👍🏽"), M(ROLE_USER, "再见😀再见🎉结束") };
	check_every_budget(zh, 4, "系统提示");
	struct chat_msg emoji[] = { M(ROLE_USER, "😀😀😀"), M(ROLE_ASSISTANT, "é"),
				    M(ROLE_USER, "a😀b𝄞c€dé") };
	check_every_budget(emoji, 3, NULL);
	struct chat_msg bare[] = { M(ROLE_USER, "汉字😀汉字😀汉字😀x") };
	check_every_budget(bare, 1, NULL);
}

static void test_new_turn(void **state)
{
	(void)state;
	struct chat_msg m[] = { M(ROLE_SYSTEM, "S"), M(ROLE_USER, "q1"), M(ROLE_ASSISTANT, "a1"),
				M(ROLE_USER, "q2") };
	struct buf b;
	buf_init(&b, 1000);
	assert_int_equal(conv_new_turn(m, 4, 3, 1000, &b), GW_OK);
	assert_string_equal(b.p, "q2");
	buf_reset(&b);
	struct chat_msg t[] = { M(ROLE_USER, "q1"), M(ROLE_ASSISTANT, "a1"), M(ROLE_TOOL, "r"),
				M(ROLE_USER, "q2") };
	assert_int_equal(conv_new_turn(t, 4, 2, 1000, &b), GW_OK);
	assert_string_equal(b.p, "Tool: r\n\nUser: q2");
	buf_reset(&b);
	/* Trimmed like a flatten: the old part goes first. */
	assert_int_equal(conv_new_turn(t, 4, 2, 8, &b), GW_OK);
	assert_string_equal(b.p, "User: q2");
	buf_reset(&b);
	assert_int_equal(conv_new_turn(m, 4, 3, 1, &b), GW_OK);
	assert_string_equal(b.p, "2");
	assert_int_equal(conv_new_turn(m, 4, 4, 1000, &b), GW_EINVAL);
	buf_release(&b);
}

static void test_flatten_buf_limit(void **state)
{
	(void)state;
	struct chat_msg m[] = { M(ROLE_USER, "0123456789") };
	struct buf b;
	buf_init(&b, 5);
	assert_int_equal(conv_flatten(m, 1, 100, &b, NULL), GW_ELIMIT);
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_form),
		cmocka_unit_test(test_key_stable),
		cmocka_unit_test(test_key_sensitive),
		cmocka_unit_test(test_key_length_prefix),
		cmocka_unit_test(test_key_system_is_developer),
		cmocka_unit_test(test_key_reply),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_flatten_format),
		cmocka_unit_test(test_flatten_drops_oldest),
		cmocka_unit_test(test_trim_multibyte),
		cmocka_unit_test(test_new_turn),
		cmocka_unit_test(test_flatten_buf_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
