/* test_jscan.c - the strict allocation-free JSON scanner
 * (src/provider/jscan.c). Its contract is to accept exactly what
 * json_loadb(s, n, 0, ...) accepts, so most checks ask jansson too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/jscan.h"

#define LIT(s) (s), (sizeof(s) - 1)

static bool jansson_accepts(const char *s, size_t n)
{
	json_error_t jerr;
	json_t *v = json_loadb(s, n, 0, &jerr);
	json_decref(v);
	return v != NULL;
}

/* jscan and jansson agree on s, and the answer is want. */
static void check_n(const char *s, size_t n, bool want)
{
	struct jscan_val root;
	enum jscan_res res = jscan_parse(s, n, NULL, NULL, &root);
	if (jansson_accepts(s, n) != want)
		fail_msg("jansson %s '%.*s'", want ? "refuses" : "accepts", (int)n, s);
	if ((res == JSCAN_OK) != want)
		fail_msg("jscan %s '%.*s' (%d)", want ? "refuses" : "accepts", (int)n, s, res);
	if (want) {
		assert_true(root.kind == JSCAN_OBJECT || root.kind == JSCAN_ARRAY);
		assert_true(root.p >= s && root.p + root.n <= s + n);
		assert_int_equal(root.p[0], root.kind == JSCAN_OBJECT ? '{' : '[');
		assert_int_equal(root.p[root.n - 1], root.kind == JSCAN_OBJECT ? '}' : ']');
	}
}

static void check(const char *s, bool want)
{
	check_n(s, strlen(s), want);
}

static void test_structure(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"{}", "[]", " \t\r\n{ } \n", "[1,2,3]", "{\"a\":{\"b\":[{}, [], \"x\"]}}",
		"[true,false,null]", "{\"a\" : 1 , \"b\":\"\"}", "[[],[[]]]", "{\"\":0}",
		"{\"a\":1,\"a\":2}", /* duplicates: jansson keeps the last */
	};
	static const char *const bad[] = {
		"", " ", "1", "\"s\"", "true", "null", "{", "}", "[", "[1,]", "[,1]", "{,}",
		"{\"a\":1,}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{a:1}", "{'a':1}", "[1 2]",
		"{} {}", "{}x", "{}]", "[}", "{]", "[tru]", "[truex]", "[nul]", "[True]",
		"[NaN]", "[Infinity]", "[-]", "{\"a\":1}\v", "\xef\xbb\xbf{}", "[1]//",
		"[\"a\"\"b\"]", "{\"a\":1 \"b\":2}", "[01]", "[+1]",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(ok); i++)
		check(ok[i], true);
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
		check(bad[i], false);
	/* A NUL byte is never valid, anywhere; only n bytes are read. */
	check_n(LIT("{}\0"), false);
	check_n(LIT("{\"a\0\":1}"), false);
	check_n(LIT("[\0]"), false);
	check_n("{}}", 2, true);
}

static void test_numbers(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"[0]", "[-0]", "[1]", "[-1]", "[10]", "[0.5]", "[-0.0]", "[1e5]", "[1E5]", "[1e+5]",
		"[1e-5]", "[0e0]", "[1.5e300]", "[123.456e-7]",
		"[9223372036854775807]", "[-9223372036854775808]",
		"[1e308]", "[1.7976931348623157e308]", "[17976931348623157e292]",
		"[0.17976931348623157e309]", "[1e-400]", "[-1e-99999999999999999999]",
		"[0e99999999999999999999]", "[0.000e400]", "[0.0001e311]", "[99999999999999999999.0]",
		"[100000000000000000000e-300]",
	};
	static const char *const bad[] = {
		"[00]", "[01]", "[-01]", "[1.]", "[.5]", "[-.5]", "[1.e5]", "[1e]", "[1e+]", "[1e-]",
		"[1ee5]", "[1.5.5]", "[--1]", "[-]", "[0x10]", "[1_000]",
		"[9223372036854775808]", "[-9223372036854775809]", "[10000000000000000000]",
		"[99999999999999999999]", "[-99999999999999999999]",
		"[1e309]", "[1.7976931348623159e308]", "[1e99999999999999999999]", "[-1e400]",
		"[0.1e310]", "[10e308]", "[1000e306]",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(ok); i++)
		check(ok[i], true);
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
		check(bad[i], false);
	/* Right at the bound with very many digits: jscan does not decide. */
	char big[400];
	strcpy(big, "[1.797693134862315");
	memset(big + strlen(big), '9', 300);
	strcpy(big + 18 + 300, "e308]");
	struct jscan_val root;
	assert_int_equal(jscan_parse(big, strlen(big), NULL, NULL, &root), JSCAN_EUNSURE);
	/* Far from it, any length is decided. */
	big[1] = '0';
	check(big, true);
}

static void test_strings(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"[\"\"]", "[\"abc\"]", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "[\"\\u0041\\u00e9\\u20AC\"]",
		"[\"\\ud83d\\ude42\"]", "[\"\\uDBFF\\uDFFF\"]", "[\"\x7f\"]", "[\"\\u0001\"]",
		"[\"h\xc3\xa9 \xe4\xbd\xa0 \xf0\x9f\x99\x82 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"]",
		"[\"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\"]",
	};
	static const char *const bad[] = {
		"[\"abc]", "[\"\\\"]", "[\"\\x41\"]", "[\"\\a\"]", "[\"\\'\"]", "[\"\\U0041\"]",
		"[\"\\u004\"]", "[\"\\u00g1\"]", "[\"\\u\"]", "[\"\\u0000\"]", "[\"a\\u0000b\"]",
		"[\"\\ud83d\"]", "[\"\\ud83dx\"]", "[\"\\ud83d\\n\"]", "[\"\\ud83d\\u0041\"]",
		"[\"\\ud83d\\ud83d\"]", "[\"\\ude42\"]", "[\"\\ude42\\ud83d\"]", "[\"\\ud83d\\ude4\"]",
		"[\"\t\"]", "[\"\n\"]", "[\"\x1f\"]", "[\"\x01\"]",
		"[\"\x80\"]", "[\"\xbf\"]", "[\"\xc0\x80\"]", "[\"\xc1\xbf\"]", "[\"\xc3\"]",
		"[\"\xc3\x28\"]", "[\"\xe0\x80\x80\"]", "[\"\xe0\x9f\xbf\"]", "[\"\xed\xa0\x80\"]",
		"[\"\xed\xbf\xbf\"]", "[\"\xe4\xbd\"]", "[\"\xf0\x80\x80\x80\"]", "[\"\xf0\x8f\xbf\xbf\"]",
		"[\"\xf4\x90\x80\x80\"]", "[\"\xf5\x80\x80\x80\"]", "[\"\xff\"]", "[\"\xfe\"]",
		"[\"\xf0\x9f\x99\"]", "[\"\xf0\x9f\x99\x28\"]", "{\"\\u0000\":1}", "{\"\xff\":1}",
		"[1]\xc3\xa9", "[\xc3\xa9]",
	};
	for (size_t i = 0; i < GW_ARRAY_LEN(ok); i++)
		check(ok[i], true);
	for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
		check(bad[i], false);
	/* A multi-byte character cut by the end of the input. */
	check_n("[\"\xe4\xbd\xa0\"]", 4, false);
}

static void nest(char *out, size_t depth, const char *inner)
{
	size_t n = 0;
	for (size_t i = 0; i < depth; i++)
		out[n++] = '[';
	n += (size_t)sprintf(out + n, "%s", inner);
	for (size_t i = 0; i < depth; i++)
		out[n++] = ']';
	out[n] = '\0';
}

static void test_depth(void **state)
{
	(void)state;
	static char s[2 * JSCAN_MAX_DEPTH + 64];
	/* jansson counts every value, the innermost scalar included. */
	nest(s, JSCAN_MAX_DEPTH, "");
	check(s, true);
	nest(s, JSCAN_MAX_DEPTH, "1");
	check(s, false);
	nest(s, JSCAN_MAX_DEPTH - 1, "1");
	check(s, true);
	nest(s, JSCAN_MAX_DEPTH + 1, "");
	check(s, false);
	nest(s, JSCAN_MAX_DEPTH - 1, "{\"a\":{}}");
	check(s, false);
	nest(s, JSCAN_MAX_DEPTH - 2, "{\"a\":{}}");
	check(s, true);
}

struct members {
	int n;
	char keys[8][16];
	struct jscan_val vals[8];
};

static void on_member(void *arg, const struct jscan_val *key, const struct jscan_val *val)
{
	struct members *m = arg;
	GW_ASSERT(m->n < 8 && key->kind == JSCAN_STRING && key->n < 16);
	memcpy(m->keys[m->n], key->p, key->n);
	m->keys[m->n][key->n] = '\0';
	m->vals[m->n++] = *val;
}

static void assert_val(const struct jscan_val *v, enum jscan_kind kind, const char *text)
{
	assert_int_equal(v->kind, kind);
	assert_int_equal(v->n, strlen(text));
	assert_memory_equal(v->p, text, v->n);
}

static void test_members(void **state)
{
	(void)state;
	const char *s = " { \"s\" : \"a\\nb\" , \"o\":{\"x\":[1,{\"y\":2}]},\"a\":[ ],\"n\":-1.5e3,"
			"\"t\":true,\"f\":false,\"z\":null,\"s\":\"plain\" } ";
	struct members m = { 0 };
	struct jscan_val root;
	assert_int_equal(jscan_parse(s, strlen(s), on_member, &m, &root), JSCAN_OK);
	assert_int_equal(m.n, 8);
	assert_string_equal(m.keys[0], "s");
	assert_val(&m.vals[0], JSCAN_STRING, "a\\nb");
	assert_true(m.vals[0].esc);
	assert_string_equal(m.keys[1], "o");
	assert_val(&m.vals[1], JSCAN_OBJECT, "{\"x\":[1,{\"y\":2}]}");
	assert_val(&m.vals[2], JSCAN_ARRAY, "[ ]");
	assert_val(&m.vals[3], JSCAN_NUMBER, "-1.5e3");
	assert_val(&m.vals[4], JSCAN_TRUE, "true");
	assert_val(&m.vals[5], JSCAN_FALSE, "false");
	assert_val(&m.vals[6], JSCAN_NULL, "null");
	assert_val(&m.vals[7], JSCAN_STRING, "plain");
	assert_false(m.vals[7].esc);

	/* The same members through the iterator; lookups keep the last duplicate. */
	struct jscan_iter it;
	struct jscan_val key, val;
	int n = 0;
	jscan_iter_init(&it, &root);
	while (jscan_iter_next(&it, &key, &val)) {
		assert_int_equal(key.n, strlen(m.keys[n]));
		assert_int_equal(val.kind, m.vals[n].kind);
		assert_ptr_equal(val.p, m.vals[n].p);
		assert_int_equal(val.n, m.vals[n].n);
		assert_int_equal(val.esc, m.vals[n].esc);
		n++;
	}
	assert_int_equal(n, 8);
	struct jscan_val v = jscan_get(&root, "s");
	assert_val(&v, JSCAN_STRING, "plain");
	v = jscan_get(&root, "missing");
	assert_int_equal(v.kind, JSCAN_NONE);
	struct jscan_val o = jscan_get(&root, "o");
	v = jscan_get(&o, "x");
	assert_val(&v, JSCAN_ARRAY, "[1,{\"y\":2}]");
	v = jscan_get(&v, "y"); /* not an object */
	assert_int_equal(v.kind, JSCAN_NONE);
	struct jscan_val empty = jscan_get(&root, "a");
	jscan_iter_init(&it, &empty);
	assert_false(jscan_iter_next(&it, &key, &val));

	/* Escaped keys are found by their decoded name; an array root has no members. */
	s = "{\"t\\u0079pe\":\"x\",\"\\u00e9\":1,\"b\\\"q\":[\"}\",\"\\\"]\"]}";
	assert_int_equal(jscan_parse(s, strlen(s), NULL, NULL, &root), JSCAN_OK);
	v = jscan_get(&root, "type");
	assert_val(&v, JSCAN_STRING, "x");
	v = jscan_get(&root, "\xc3\xa9");
	assert_val(&v, JSCAN_NUMBER, "1");
	v = jscan_get(&root, "b\"q");
	assert_val(&v, JSCAN_ARRAY, "[\"}\",\"\\\"]\"]");
	m.n = 0;
	assert_int_equal(jscan_parse(LIT("[{\"a\":1}]"), on_member, &m, &root), JSCAN_OK);
	assert_int_equal(m.n, 0);
}

/* Decoding agrees with jansson's value, in place or not. */
static void check_decode(const char *json_str)
{
	char doc[256], out[256];
	snprintf(doc, sizeof(doc), "{\"k\":\"%s\"}", json_str);
	json_error_t jerr;
	json_t *j = json_loads(doc, 0, &jerr);
	if (!j)
		fail_msg("jansson refuses %s", doc);
	const char *want = json_string_value(json_object_get(j, "k"));
	size_t wlen = json_string_length(json_object_get(j, "k"));
	struct jscan_val root;
	assert_int_equal(jscan_parse(doc, strlen(doc), NULL, NULL, &root), JSCAN_OK);
	struct jscan_val v = jscan_get(&root, "k");
	assert_int_equal(v.kind, JSCAN_STRING);
	assert_true(jscan_str_eq(&v, want, wlen));
	if (wlen)
		assert_false(jscan_str_eq(&v, want, wlen - 1));
	size_t n = jscan_str_decode(&v, out);
	assert_int_equal(n, wlen);
	assert_memory_equal(out, want, n);
	n = jscan_str_decode(&v, (char *)v.p); /* in place */
	assert_int_equal(n, wlen);
	assert_memory_equal(v.p, want, n);
	/* The one-pass take of the same string (doc was decoded in place
	 * above: write it again). */
	snprintf(doc, sizeof(doc), "{\"k\":\"%s\"}", json_str);
	size_t quote = 0;
	assert_true(jscan_str_take(doc + 6, strlen(doc) - 6, out, &n, &quote));
	assert_int_equal(n, wlen);
	assert_memory_equal(out, want, n);
	assert_int_equal(quote, strlen(doc) - 8);
	json_decref(j);
}

static void test_decode(void **state)
{
	(void)state;
	check_decode("");
	check_decode("plain");
	check_decode("\\\"\\\\\\/\\b\\f\\n\\r\\t");
	check_decode("a\\u0041\\u00e9\\u20ac\\uFFFF\\ud83d\\ude42z");
	check_decode("h\xc3\xa9 \\n \xf0\x9f\x99\x82\\\\");
	check_decode("\\u0001\\u001f\\u007f\\u0080\\u07ff\\u0800\\udbff\\udfff");
	struct jscan_val root;
	assert_int_equal(jscan_parse(LIT("{\"k\":\"ab\",\"n\":12}"), NULL, NULL, &root), JSCAN_OK);
	struct jscan_val v = jscan_get(&root, "k"), n = jscan_get(&root, "n");
	assert_true(jscan_str_eq(&v, LIT("ab")));
	assert_false(jscan_str_eq(&v, LIT("abc")));
	assert_false(jscan_str_eq(&v, LIT("a")));
	assert_false(jscan_str_eq(&n, LIT("12"))); /* not a string */
}

/* Random near-JSON: valid pieces glued with the occasional wrong byte.
 * Whatever comes out, jscan and jansson must agree. */
static size_t random_doc(char *out, size_t max)
{
	static const char *const parts[] = {
		"{", "}", "[", "]", ",", ":", "\"", "\"k\"", "\"v\"", "1", "-", "0", "12", ".", "5", "e",
		"E+", "-3", "true", "false", "null", " ", "\n", "\\", "\\n", "\\u", "00e9", "d83d",
		"\\ude42", "\\ud83d", "\\u0000", "\xc3\xa9", "\xe4\xbd", "\xa0", "\xff", "\t", "x",
		"9223372036854775807", "9223372036854775808", "e308", "e309", "\x01", "\"a\":", "{\"a\":",
	};
	size_t n = 0, want = 1 + (size_t)(rand() % 24);
	out[n++] = rand() % 2 ? '{' : '[';
	for (size_t i = 0; i < want; i++) {
		const char *p = parts[rand() % (int)GW_ARRAY_LEN(parts)];
		size_t l = strlen(p);
		if (n + l + 2 >= max)
			break;
		memcpy(out + n, p, l);
		n += l;
	}
	out[n++] = out[0] == '{' ? '}' : ']';
	out[n] = '\0';
	return n;
}

static void test_random_agreement(void **state)
{
	(void)state;
	srand(4242);
	int accepted = 0;
	for (int i = 0; i < 200000; i++) {
		char doc[512];
		size_t n = random_doc(doc, sizeof(doc));
		struct jscan_val root;
		bool j = jansson_accepts(doc, n);
		enum jscan_res res = jscan_parse(doc, n, NULL, NULL, &root);
		if ((res == JSCAN_OK) != j)
			fail_msg("disagree on '%s': jscan %d, jansson %d", doc, res, j);
		accepted += j;
	}
	assert_true(accepted > 1000); /* the generator does reach valid documents */
}

/* jscan_str_take on random string bodies: it takes a body whole exactly
 * when jansson reads ["body"] as an array of that one string, and then
 * decodes it as jansson does. */
static void test_take_agreement(void **state)
{
	(void)state;
	static const char *const parts[] = {
		"a", "\"", "\\", "\\n", "\\\"", "\\u", "00e9", "d83d", "\\ude42", "\\ud83d",
		"\\u0000", "\\x", "\xc3\xa9", "\xe4\xbd", "\xa0", "\xff", "\t", "\x01", " ", "]",
	};
	srand(4343);
	int taken = 0;
	for (int i = 0; i < 100000; i++) {
		char doc[256], out[256];
		size_t n = 0, want = (size_t)(rand() % 12);
		doc[n++] = '[';
		doc[n++] = '"';
		for (size_t k = 0; k < want; k++) {
			const char *p = parts[rand() % (int)GW_ARRAY_LEN(parts)];
			memcpy(doc + n, p, strlen(p));
			n += strlen(p);
		}
		doc[n++] = '"';
		doc[n++] = ']';
		doc[n] = '\0';
		json_error_t jerr;
		json_t *j = json_loadb(doc, n, 0, &jerr);
		json_t *v = json_array_get(j, 0);
		bool one = j && json_array_size(j) == 1 && json_is_string(v);
		size_t len = 0, quote = 0;
		bool whole = jscan_str_take(doc + 2, n - 2, out, &len, &quote) && quote == n - 4;
		if (one != whole)
			fail_msg("disagree on '%s': take %d, jansson %d", doc, whole, one);
		if (one) {
			assert_int_equal(len, json_string_length(v));
			assert_memory_equal(out, json_string_value(v), len);
			taken++;
		}
		json_decref(j);
	}
	assert_true(taken > 1000);
}

int main(void)
{
	json_set_alloc_funcs(gw_malloc, gw_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_members),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_random_agreement),
		cmocka_unit_test(test_take_agreement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
