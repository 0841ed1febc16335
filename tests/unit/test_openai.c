/* test_openai.c - OpenAI request validation and reply encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/openai.h"
#include "util/buf.h"
#include <inttypes.h>

/* ---- helpers --------------------------------------------------------- */

static struct chat_req *parse_ok(const char *body)
{
	struct chat_req *req = NULL;
	struct chat_error err;
	memset(&err, 0, sizeof(err));
	enum gw_err e = oai_parse_chat(body, strlen(body), &req, &err);
	if (e)
		fail_msg("unexpected error %d: %s (param %s)", e, err.message,
			 err.param ? err.param : "null");
	assert_non_null(req);
	return req;
}

/* Parses a body that must fail with 400; checks param, code and that the
 * message contains `needle`. */
static void parse_bad_n(const char *body, size_t len, const char *param, const char *code,
			const char *needle)
{
	struct chat_req *req = (struct chat_req *)1;
	struct chat_error err;
	memset(&err, 0, sizeof(err));
	assert_int_equal(oai_parse_chat(body, len, &req, &err), GW_EINVAL);
	assert_null(req);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.type, "invalid_request_error");
	if (param)
		assert_string_equal(err.param ? err.param : "(null)", param);
	else
		assert_null(err.param);
	if (code)
		assert_string_equal(err.code ? err.code : "(null)", code);
	if (!strstr(err.message, needle))
		fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void parse_bad(const char *body, const char *param, const char *code, const char *needle)
{
	parse_bad_n(body, strlen(body), param, code, needle);
}

/* Strips "data: " and "\n\n" off one SSE event and parses the JSON. */
static json_t *sse_json(const char *p, size_t n)
{
	assert_true(n > 8);
	assert_memory_equal(p, "data: ", 6);
	assert_memory_equal(p + n - 2, "\n\n", 2);
	assert_null(memchr(p, '\n', n - 2)); /* one line per event */
	assert_null(memchr(p, '\r', n));
	json_error_t je;
	json_t *j = json_loadb(p + 6, n - 8, JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("bad JSON %s in %.*s", je.text, (int)n, p);
	return j;
}

static const char *jstr(const json_t *o, const char *path1, const char *path2)
{
	const json_t *v = json_object_get(o, path1);
	if (path2)
		v = json_object_get(v, path2);
	assert_true(json_is_string(v));
	return json_string_value(v);
}

static const json_t *choice0(const json_t *chunk)
{
	const json_t *c = json_object_get(chunk, "choices");
	assert_true(json_is_array(c));
	assert_int_equal(json_array_size(c), 1);
	const json_t *ch = json_array_get(c, 0);
	assert_int_equal(json_integer_value(json_object_get(ch, "index")), 0);
	assert_true(json_is_null(json_object_get(ch, "logprobs")));
	return ch;
}

static void check_chunk_head(const json_t *j, const struct oai_stream *s)
{
	assert_string_equal(jstr(j, "id", NULL), s->id);
	assert_string_equal(jstr(j, "object", NULL), "chat.completion.chunk");
	assert_int_equal(json_integer_value(json_object_get(j, "created")), s->created);
	assert_string_equal(jstr(j, "model", NULL), s->model);
	assert_true(json_is_null(json_object_get(j, "system_fingerprint")));
}

/* ---- request: top level ---------------------------------------------- */

static void test_minimal(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok("{\"model\":\"gpt-5.4\",\"messages\":[{\"role\":\"user\","
				      "\"content\":\"hi\"}]}");
	assert_string_equal(r->model, "gpt-5.4");
	assert_int_equal(r->n_msgs, 1);
	assert_int_equal(r->msgs[0].role, ROLE_USER);
	assert_string_equal(r->msgs[0].text, "hi");
	assert_int_equal(r->msgs[0].len, 2);
	assert_false(r->stream);
	assert_false(r->include_usage);
	assert_string_equal(r->tenant, "");
	chat_req_free(r);
}

static void test_model_forms(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_null(r->model);
	chat_req_free(r);
	r = parse_ok("{\"model\":null,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_null(r->model);
	chat_req_free(r);
	r = parse_ok("{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_null(r->model);
	chat_req_free(r);
	parse_bad("{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model",
		  "invalid_type", "'model' must be a string");
	parse_bad("{\"model\":\"a\\u0000b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "model", NULL, "NUL");
	char big[400];
	snprintf(big, sizeof(big), "{\"model\":\"%0300d\",\"messages\":[{\"role\":\"user\","
		 "\"content\":\"x\"}]}", 0);
	parse_bad(big, "model", NULL, "longer than");
}

static void test_stream_flags(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok("{\"stream\":true,\"stream_options\":{\"include_usage\":true},"
				      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_true(r->stream);
	assert_true(r->include_usage);
	chat_req_free(r);
	/* include_usage means nothing without a stream */
	r = parse_ok("{\"stream\":false,\"stream_options\":{\"include_usage\":true},"
		     "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_false(r->stream);
	assert_false(r->include_usage);
	chat_req_free(r);
	r = parse_ok("{\"stream\":null,\"stream_options\":null,"
		     "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	assert_false(r->stream);
	chat_req_free(r);
	parse_bad("{\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "stream", "invalid_type", "'stream' must be a boolean");
	parse_bad("{\"stream\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "stream",
		  NULL, "boolean");
	parse_bad("{\"stream_options\":[],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "stream_options", NULL, "'stream_options' must be an object");
	parse_bad("{\"stream\":true,\"stream_options\":{\"include_usage\":\"y\"},"
		  "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "stream_options.include_usage", NULL, "boolean");
}

static void test_n(void **state)
{
	(void)state;
	chat_req_free(parse_ok("{\"n\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"));
	chat_req_free(parse_ok("{\"n\":null,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"));
	parse_bad("{\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "n",
		  "unsupported_parameter", "n=1");
	parse_bad("{\"n\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "n",
		  "invalid_value", "at least 1");
	parse_bad("{\"n\":\"2\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "n",
		  "invalid_type", "integer");
}

static void test_bad_json(void **state)
{
	(void)state;
	parse_bad("{\"messages\":[}", NULL, NULL, "could not parse the JSON body of your request");
	parse_bad("{\n\"messages\": tru}", NULL, NULL, "line 2");
	parse_bad("", NULL, NULL, "could not parse the JSON body");
	parse_bad_n(NULL, 0, NULL, NULL, "could not parse");
	parse_bad("[1,2]", NULL, NULL, "must be a JSON object");
	parse_bad("\"str\"", NULL, NULL, "could not parse");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]} trailing", NULL, NULL,
		  "could not parse");
	parse_bad("{\"model\":\"a\",\"model\":\"b\",\"messages\":[{\"role\":\"user\","
		  "\"content\":\"x\"}]}",
		  NULL, NULL, "duplicate");
	parse_bad("{\"messages\":\"\xff\"}", NULL, NULL, "could not parse");
}

static void test_ignored_fields(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok(
		"{\"model\":\"m\",\"temperature\":0.2,\"top_p\":1,\"max_tokens\":10,"
		"\"max_completion_tokens\":5,\"stop\":[\"x\"],\"presence_penalty\":0,"
		"\"frequency_penalty\":0,\"logit_bias\":{\"1\":2},\"user\":\"u\",\"seed\":1,"
		"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
		"\"tool_choice\":\"auto\",\"response_format\":{\"type\":\"text\"},"
		"\"parallel_tool_calls\":true,\"logprobs\":false,\"top_logprobs\":0,"
		"\"metadata\":{},\"store\":false,\"reasoning_effort\":\"low\","
		"\"service_tier\":\"auto\",\"modalities\":[\"text\"],\"prediction\":null,"
		"\"audio\":null,\"web_search_options\":{},\"functions\":[],\"function_call\":\"none\","
		"\"verbosity\":\"low\",\"prompt_cache_key\":\"k\",\"safety_identifier\":\"s\","
		"\"x_unknown_field\":{\"deep\":[1,2,3]},"
		"\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"bob\"}]}");
	assert_int_equal(r->n_msgs, 1);
	chat_req_free(r);
}

/* ---- request: messages ----------------------------------------------- */

static void test_messages_shape(void **state)
{
	(void)state;
	parse_bad("{}", "messages", "missing_required_parameter", "'messages' is required");
	parse_bad("{\"messages\":{}}", "messages", "invalid_type", "must be an array");
	parse_bad("{\"messages\":null}", "messages", NULL, "must be an array");
	parse_bad("{\"messages\":[]}", "messages", NULL, "at least one message");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},5]}", "messages[1]",
		  "invalid_type", "'messages[1]' must be an object");
}

static void test_too_many_messages(void **state)
{
	(void)state;
	const char *m = "{\"role\":\"user\",\"content\":\"x\"},";
	size_t ml = strlen(m);
	for (int count = OAI_MAX_MESSAGES; count <= OAI_MAX_MESSAGES + 1; count++) {
		char *body = malloc(ml * (size_t)count + 32);
		assert_non_null(body);
		size_t o = (size_t)sprintf(body, "{\"messages\":[");
		for (int i = 0; i < count; i++) {
			memcpy(body + o, m, ml);
			o += ml;
		}
		strcpy(body + o - 1, "]}");
		if (count == OAI_MAX_MESSAGES) {
			struct chat_req *r = parse_ok(body);
			assert_int_equal(r->n_msgs, OAI_MAX_MESSAGES);
			chat_req_free(r);
		} else {
			parse_bad(body, "messages", "array_above_max_length", "at most 2048");
		}
		free(body);
	}
}

static void test_roles(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok(
		"{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
		"{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\",\"content\":\"u\"},"
		"{\"role\":\"assistant\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"t\","
		"\"tool_call_id\":\"c1\"},{\"role\":\"function\",\"name\":\"f\",\"content\":\"fn\"}]}");
	assert_int_equal(r->n_msgs, 6);
	const enum chat_role want[] = { ROLE_SYSTEM, ROLE_DEVELOPER, ROLE_USER,
					ROLE_ASSISTANT, ROLE_TOOL, ROLE_TOOL };
	const char *texts[] = { "s", "d", "u", "a", "t", "fn" };
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(r->msgs[i].role, want[i]);
		assert_string_equal(r->msgs[i].text, texts[i]);
	}
	chat_req_free(r);
	parse_bad("{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
		  "missing_required_parameter", "'messages[0].role' is required");
	parse_bad("{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role",
		  "invalid_value", "must be one of");
	parse_bad("{\"messages\":[{\"role\":\"User\",\"content\":\"x\"}]}", "messages[0].role",
		  NULL, "must be one of");
	parse_bad("{\"messages\":[{\"role\":7,\"content\":\"x\"}]}", "messages[0].role", NULL,
		  "must be one of");
	parse_bad("{\"messages\":[{\"role\":\"us\\u0000er\",\"content\":\"x\"}]}",
		  "messages[0].role", NULL, "must be one of");
}

static void test_last_message(void **state)
{
	(void)state;
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		  "{\"role\":\"assistant\",\"content\":\"y\"}]}",
		  "messages", NULL, "last message must be from the user");
	parse_bad("{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages", NULL,
		  "last message must be from the user");
	chat_req_free(parse_ok("{\"messages\":[{\"role\":\"tool\",\"content\":\"r\"}]}"));
}

static void test_content_parts(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok(
		"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
		"{\"type\":\"text\",\"text\":\"b c\"},{\"type\":\"input_text\",\"text\":\"d\"}]}]}");
	assert_string_equal(r->msgs[0].text, "a\nb c\nd");
	assert_int_equal(r->msgs[0].len, 7);
	chat_req_free(r);
	r = parse_ok("{\"messages\":[{\"role\":\"user\",\"content\":[]}]}");
	assert_string_equal(r->msgs[0].text, "");
	assert_int_equal(r->msgs[0].len, 0);
	chat_req_free(r);
	r = parse_ok("{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\","
		     "\"refusal\":\"no\"}]},{\"role\":\"tool\",\"content\":[{\"type\":\"text\","
		     "\"text\":\"out1\"},{\"type\":\"text\",\"text\":\"out2\"}]}]}");
	assert_string_equal(r->msgs[0].text, "no");
	assert_string_equal(r->msgs[1].text, "out1\nout2");
	chat_req_free(r);
}

static void test_content_errors(void **state)
{
	(void)state;
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
		  "\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image_url\","
		  "\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}]}",
		  "messages[1].content[1]", "unsupported_content", "images are not supported yet");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
		  "\"image_url\":\"x\"}]}]}",
		  "messages[0].content[0]", "unsupported_content", "images are not supported");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
		  "\"input_audio\":{}}]}]}",
		  "messages[0].content[0]", "unsupported_content", "input_audio");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}",
		  "messages[0].content[0]", "invalid_value", "unknown content part type 'video'");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
		  "messages[0].content[0]", "invalid_type", "'type'");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
		  "messages[0].content[0]", "invalid_type", "must be an object");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
		  "messages[0].content[0].text", "invalid_type", "must be a string");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
		  "messages[0].content[0].text", NULL, "must be a string");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content",
		  "invalid_type", "string or an array of content parts");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":{\"type\":\"text\"}}]}",
		  "messages[0].content", NULL, "string or an array");
	parse_bad("{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content",
		  "missing_required_parameter", "is required for a message with role 'user'");
	parse_bad("{\"messages\":[{\"role\":\"system\",\"content\":null},{\"role\":\"user\","
		  "\"content\":\"x\"}]}",
		  "messages[0].content", NULL, "role 'system'");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}",
		  "messages[0].content", "invalid_value", "NUL");
	parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
		  "\"text\":\"\\u0000\"}]}]}",
		  "messages[0].content[0].text", NULL, "NUL");
}

static void test_tool_calls(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok(
		"{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
		"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
		"\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
		"\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"c2\",\"type\":\"function\","
		"\"function\":{\"name\":\"now\",\"arguments\":{\"tz\":\"UTC\"}}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}]}");
	assert_int_equal(r->n_msgs, 3);
	assert_string_equal(r->msgs[1].text,
			    "[tool call get_weather({\"city\":\"Paris\"})]\n"
			    "[tool call now({\"tz\":\"UTC\"})]");
	assert_string_equal(r->msgs[2].text, "sunny");
	chat_req_free(r);
	/* text and a call; absent content; legacy function_call */
	r = parse_ok("{\"messages\":[{\"role\":\"assistant\",\"content\":\"let me see\","
		     "\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]},"
		     "{\"role\":\"assistant\",\"function_call\":{\"name\":\"g\",\"arguments\":\"1\"}},"
		     "{\"role\":\"assistant\"},{\"role\":\"user\",\"content\":\"ok\"}]}");
	assert_string_equal(r->msgs[0].text, "let me see\n[tool call f()]");
	assert_string_equal(r->msgs[1].text, "[tool call g(1)]");
	assert_string_equal(r->msgs[2].text, "");
	chat_req_free(r);
	parse_bad("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}},{\"role\":\"user\","
		  "\"content\":\"x\"}]}",
		  "messages[0].tool_calls", "invalid_type", "must be an array");
	parse_bad("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\"}]},"
		  "{\"role\":\"user\",\"content\":\"x\"}]}",
		  "messages[0].tool_calls[0].function", NULL, "must be an object");
	parse_bad("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
		  "{\"name\":3}}]},{\"role\":\"user\",\"content\":\"x\"}]}",
		  "messages[0].tool_calls[0].function", NULL, "string 'name'");
	parse_bad("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
		  "{\"name\":\"f\",\"arguments\":\"\\u0000\"}}]},{\"role\":\"user\",\"content\":\"x\"}]}",
		  "messages[0].tool_calls[0].function.arguments", NULL, "NUL");
}

static void test_text_limit(void **state)
{
	(void)state;
	/* Two messages of 2.5 MiB: each fits, the sum does not. */
	size_t each = (size_t)5 << 19;
	size_t cap = 2 * each + 256;
	char *body = malloc(cap);
	assert_non_null(body);
	size_t o = (size_t)sprintf(body, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
	memset(body + o, 'a', each);
	o += each;
	o += (size_t)sprintf(body + o, "\"},{\"role\":\"user\",\"content\":\"");
	memset(body + o, 'b', each);
	o += each;
	o += (size_t)sprintf(body + o, "\"}]}");
	parse_bad_n(body, o, "messages", "context_length_exceeded", "4 MiB");
	/* Exactly at the limit is fine. */
	o = (size_t)sprintf(body, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
	memset(body + o, 'a', OAI_MAX_TEXT_BYTES);
	o += OAI_MAX_TEXT_BYTES;
	o += (size_t)sprintf(body + o, "\"}]}");
	struct chat_req *r = NULL;
	struct chat_error err;
	assert_int_equal(oai_parse_chat(body, o, &r, &err), GW_OK);
	assert_int_equal(r->msgs[0].len, OAI_MAX_TEXT_BYTES);
	chat_req_free(r);
	free(body);
}

static void test_unicode_text(void **state)
{
	(void)state;
	struct chat_req *r = parse_ok("{\"messages\":[{\"role\":\"user\","
				      "\"content\":\"h\\u00e9 \\u4e16\\ud83c\\udf89 \xe2\x82\xac\"}]}");
	assert_string_equal(r->msgs[0].text, "h\xc3\xa9 \xe4\xb8\x96\xf0\x9f\x8e\x89 \xe2\x82\xac");
	chat_req_free(r);
}

/* Every allocation the parser makes can fail; each failure must give
 * GW_ENOMEM with a 500 and leak nothing (ASan checks the leaks). */
static void test_alloc_failures(void **state)
{
	(void)state;
	const char *body =
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
		"\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\","
		"\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]},"
		"{\"role\":\"user\",\"content\":\"c\"}]}";
	bool ok = false;
	for (unsigned long n = 1; n < 200 && !ok; n++) {
		struct chat_req *r = NULL;
		struct chat_error err;
		gw_alloc_fail_at(n);
		enum gw_err e = oai_parse_chat(body, strlen(body), &r, &err);
		gw_alloc_fail_at(0);
		if (e == GW_OK) {
			ok = true;
			assert_string_equal(r->msgs[1].text, "[tool call f({\"x\":1})]");
		} else {
			assert_int_equal(e, GW_ENOMEM);
			assert_int_equal(err.status, 500);
			assert_null(r);
		}
		chat_req_free(r);
	}
	assert_true(ok);
}

/* ---- SSE ------------------------------------------------------------- */

static void test_stream_init(void **state)
{
	(void)state;
	struct oai_stream a, b;
	oai_stream_init(&a, "gpt-5.4");
	oai_stream_init(&b, NULL);
	assert_int_equal(strlen(a.id), 9 + 24);
	assert_memory_equal(a.id, "chatcmpl-", 9);
	for (size_t i = 9; i < strlen(a.id); i++)
		assert_true((a.id[i] >= '0' && a.id[i] <= '9') || (a.id[i] >= 'a' && a.id[i] <= 'z') ||
			    (a.id[i] >= 'A' && a.id[i] <= 'Z'));
	assert_string_not_equal(a.id, b.id);
	assert_true(a.created >= gw_wall_s() - 5 && a.created <= gw_wall_s());
	assert_string_equal(a.model, "gpt-5.4");
	assert_string_equal(b.model, "");
	/* A long name is cut on a character boundary: 126 ASCII + "é" would
	 * straddle the end, so the "é" goes. */
	char longname[200];
	memset(longname, 'x', 126);
	strcpy(longname + 126, "\xc3\xa9zzzz");
	oai_stream_init(&a, longname);
	assert_int_equal(strlen(a.model), 126);
}

static void test_sse_chunks(void **state)
{
	(void)state;
	struct oai_stream s;
	struct buf b;
	oai_stream_init(&s, "claude \"sonnet\"");
	buf_init(&b, 1 << 20);

	assert_int_equal(oai_sse_role(&b, &s), GW_OK);
	json_t *j = sse_json(b.p, b.len);
	check_chunk_head(j, &s);
	const json_t *ch = choice0(j);
	assert_string_equal(jstr(ch, "delta", "role"), "assistant");
	assert_string_equal(jstr(ch, "delta", "content"), "");
	assert_true(json_is_null(json_object_get(ch, "finish_reason")));
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_delta(&b, &s, "Hello", 5, false), GW_OK);
	j = sse_json(b.p, b.len);
	check_chunk_head(j, &s);
	ch = choice0(j);
	assert_string_equal(jstr(ch, "delta", "content"), "Hello");
	assert_null(json_object_get(json_object_get(ch, "delta"), "role"));
	assert_true(json_is_null(json_object_get(ch, "finish_reason")));
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_delta(&b, &s, "think", 5, true), GW_OK);
	j = sse_json(b.p, b.len);
	ch = choice0(j);
	assert_string_equal(jstr(ch, "delta", "reasoning_content"), "think");
	assert_null(json_object_get(json_object_get(ch, "delta"), "content"));
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_finish(&b, &s, "length"), GW_OK);
	j = sse_json(b.p, b.len);
	check_chunk_head(j, &s);
	ch = choice0(j);
	assert_int_equal(json_object_size(json_object_get(ch, "delta")), 0);
	assert_string_equal(jstr(ch, "finish_reason", NULL), "length");
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_finish(&b, &s, NULL), GW_OK);
	j = sse_json(b.p, b.len);
	assert_string_equal(jstr(choice0(j), "finish_reason", NULL), "stop");
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_usage(&b, &s, 12, 30), GW_OK);
	j = sse_json(b.p, b.len);
	check_chunk_head(j, &s);
	assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
	assert_true(json_is_array(json_object_get(j, "choices")));
	const json_t *u = json_object_get(j, "usage");
	assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 12);
	assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 30);
	assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 42);
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_sse_usage(&b, &s, -3, 2), GW_OK);
	j = sse_json(b.p, b.len);
	u = json_object_get(j, "usage");
	assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 0);
	assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 2);
	json_decref(j);

	assert_string_equal(OAI_SSE_DONE, "data: [DONE]\n\n");
	buf_release(&b);
	oai_stream_release(&s);
}

/* Several events in one buffer: each is a separate, parseable event. */
static void test_sse_sequence(void **state)
{
	(void)state;
	struct oai_stream s;
	struct buf b;
	oai_stream_init(&s, "m");
	buf_init(&b, 1 << 20);
	assert_int_equal(oai_sse_role(&b, &s), GW_OK);
	assert_int_equal(oai_sse_delta(&b, &s, "a\n\nb", 4, false), GW_OK);
	assert_int_equal(oai_sse_finish(&b, &s, "stop"), GW_OK);
	assert_int_equal(buf_adds(&b, OAI_SSE_DONE), GW_OK);
	int events = 0;
	const char *p = b.p;
	while (*p) {
		const char *end = strstr(p, "\n\n");
		assert_non_null(end);
		if (strncmp(p, OAI_SSE_DONE, strlen(OAI_SSE_DONE)) != 0) {
			json_t *j = sse_json(p, (size_t)(end + 2 - p));
			check_chunk_head(j, &s);
			json_decref(j);
		}
		events++;
		p = end + 2;
	}
	assert_int_equal(events, 4);
	buf_release(&b);
	oai_stream_release(&s);
}

static void check_delta_roundtrip_n(const char *in, size_t n, const char *want, size_t wn)
{
	struct oai_stream s;
	struct buf b;
	oai_stream_init(&s, "m");
	buf_init(&b, 1 << 20);
	assert_int_equal(oai_sse_delta(&b, &s, in, n, false), GW_OK);
	json_t *j = sse_json(b.p, b.len);
	const json_t *c = json_object_get(json_object_get(choice0(j), "delta"), "content");
	assert_true(json_is_string(c));
	assert_int_equal(json_string_length(c), wn);
	if (wn)
		assert_memory_equal(json_string_value(c), want, wn);
	json_decref(j);
	buf_release(&b);
	oai_stream_release(&s);
}

static void check_delta_roundtrip(const char *in, size_t n, const char *want)
{
	check_delta_roundtrip_n(in, n, want, strlen(want));
}

static void test_sse_escaping(void **state)
{
	(void)state;
	const char *s1 = "say \"hi\"\\ \n\r\t/ </script>";
	check_delta_roundtrip(s1, strlen(s1), s1);
	const char ctl[] = "\x01\x02\x1f\x7f\b\f";
	check_delta_roundtrip(ctl, sizeof(ctl) - 1, ctl);
	const char *mb = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89";
	check_delta_roundtrip(mb, strlen(mb), mb);
	/* Invalid UTF-8: a stray byte, a truncated sequence, an encoded
	 * surrogate and an overlong form each become U+FFFD. */
	check_delta_roundtrip("a\xff" "b", 3, "a\xef\xbf\xbd" "b");
	check_delta_roundtrip("x\xe4\xb8", 3, "x\xef\xbf\xbd\xef\xbf\xbd");
	check_delta_roundtrip("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	check_delta_roundtrip("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
	/* An embedded NUL is escaped, not a terminator. */
	check_delta_roundtrip_n("a\0b", 3, "a\0b", 3);
	check_delta_roundtrip("", 0, "");
}

static void test_sse_rollback(void **state)
{
	(void)state;
	struct oai_stream s;
	struct buf b;
	oai_stream_init(&s, "m");
	buf_init(&b, 400);
	assert_int_equal(buf_adds(&b, ": keep-alive\n\n"), GW_OK);
	size_t before = b.len;
	char big[400];
	memset(big, 'z', sizeof(big));
	assert_int_equal(oai_sse_delta(&b, &s, big, sizeof(big), false), GW_ELIMIT);
	assert_int_equal(b.len, before);
	assert_string_equal(b.p, ": keep-alive\n\n");
	assert_int_equal(oai_sse_delta(&b, &s, "ok", 2, false), GW_OK);
	buf_release(&b);
	/* Allocation failure also leaves nothing behind. */
	buf_init(&b, 1 << 20);
	gw_alloc_fail_at(1);
	assert_int_equal(oai_sse_role(&b, &s), GW_ENOMEM);
	gw_alloc_fail_at(0);
	assert_int_equal(b.len, 0);
	buf_release(&b);
	oai_stream_release(&s);
}

/* The chunk head is formatted once per stream and copied after that: the
 * copy must be byte for byte what formatting gives, per stream, and a head
 * that could not be kept (out of memory) is formatted again. */
static void test_sse_head_cached(void **state)
{
	(void)state;
	struct oai_stream s, t;
	struct buf b, c;
	oai_stream_init(&s, "m \"q\" \xc3\xa9");
	oai_stream_init(&t, "other");
	buf_init(&b, 1 << 20);
	buf_init(&c, 1 << 20);
	/* b has room, so the one allocation is the one keeping the head. */
	assert_int_equal(buf_reserve(&b, 4096), GW_OK);
	gw_alloc_fail_at(1);
	assert_int_equal(oai_sse_delta(&b, &s, "x", 1, false), GW_OK);
	gw_alloc_fail_at(0);
	assert_null(s.head);
	size_t first = b.len;
	assert_int_equal(oai_sse_delta(&b, &s, "x", 1, false), GW_OK);
	assert_non_null(s.head);
	assert_int_equal(oai_sse_delta(&b, &s, "x", 1, false), GW_OK);
	assert_int_equal(b.len, 3 * first);
	assert_memory_equal(b.p, b.p + first, first);
	assert_memory_equal(b.p, b.p + 2 * first, first);
	json_t *j = sse_json(b.p + 2 * first, first);
	check_chunk_head(j, &s);
	json_decref(j);
	/* Another stream keeps its own. */
	assert_int_equal(oai_sse_delta(&c, &t, "x", 1, false), GW_OK);
	assert_int_equal(oai_sse_delta(&c, &t, "x", 1, false), GW_OK);
	j = sse_json(c.p + c.len / 2, c.len / 2);
	check_chunk_head(j, &t);
	json_decref(j);
	buf_release(&b);
	buf_release(&c);
	oai_stream_release(&s);
	oai_stream_release(&t);
}

static void test_sse_error(void **state)
{
	(void)state;
	struct chat_error e;
	struct buf b;
	chat_error_set(&e, 502, "upstream_error", "upstream_failed", "the upstream said \"no\"\n");
	buf_init(&b, 4096);
	assert_int_equal(oai_sse_error(&b, &e), GW_OK);
	json_t *j = sse_json(b.p, b.len);
	const json_t *er = json_object_get(j, "error");
	assert_string_equal(jstr(er, "message", NULL), "the upstream said \"no\"\n");
	assert_string_equal(jstr(er, "type", NULL), "upstream_error");
	assert_string_equal(jstr(er, "code", NULL), "upstream_failed");
	assert_true(json_is_null(json_object_get(er, "param")));
	assert_int_equal(json_object_size(j), 1);
	json_decref(j);
	buf_release(&b);
}

/* ---- whole replies --------------------------------------------------- */

static json_t *load(const struct buf *b)
{
	json_error_t je;
	json_t *j = json_loadb(b->p, b->len, 0, &je);
	if (!j)
		fail_msg("bad JSON %s: %s", je.text, b->p);
	return j;
}

static void test_completion_json(void **state)
{
	(void)state;
	struct oai_stream s;
	struct buf b;
	oai_stream_init(&s, "gpt-5.4");
	buf_init(&b, 1 << 20);
	assert_int_equal(oai_completion_json(&b, &s, "Hi \"you\"", 8, "hmm", 3, NULL, 10, 5),
			 GW_OK);
	json_t *j = load(&b);
	assert_string_equal(jstr(j, "id", NULL), s.id);
	assert_string_equal(jstr(j, "object", NULL), "chat.completion");
	assert_int_equal(json_integer_value(json_object_get(j, "created")), s.created);
	assert_string_equal(jstr(j, "model", NULL), "gpt-5.4");
	const json_t *ch = choice0(j);
	assert_string_equal(jstr(ch, "message", "role"), "assistant");
	assert_string_equal(jstr(ch, "message", "content"), "Hi \"you\"");
	assert_string_equal(jstr(ch, "message", "reasoning_content"), "hmm");
	assert_string_equal(jstr(ch, "finish_reason", NULL), "stop");
	const json_t *u = json_object_get(j, "usage");
	assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 10);
	assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 5);
	assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 15);
	json_decref(j);

	buf_reset(&b);
	assert_int_equal(oai_completion_json(&b, &s, "", 0, NULL, 0, "length", 0, 0), GW_OK);
	j = load(&b);
	ch = choice0(j);
	assert_string_equal(jstr(ch, "message", "content"), "");
	assert_null(json_object_get(json_object_get(ch, "message"), "reasoning_content"));
	assert_string_equal(jstr(ch, "finish_reason", NULL), "length");
	assert_non_null(json_object_get(j, "usage"));
	json_decref(j);
	buf_release(&b);
}

static void test_error_json(void **state)
{
	(void)state;
	struct chat_error e;
	struct buf b;
	buf_init(&b, 4096);
	chat_error_set(&e, 404, "invalid_request_error", "model_not_found",
		       "The model 'x' does not exist");
	e.param = "model";
	assert_int_equal(oai_error_json(&b, &e), GW_OK);
	json_t *j = load(&b);
	const json_t *er = json_object_get(j, "error");
	assert_string_equal(jstr(er, "message", NULL), "The model 'x' does not exist");
	assert_string_equal(jstr(er, "type", NULL), "invalid_request_error");
	assert_string_equal(jstr(er, "param", NULL), "model");
	assert_string_equal(jstr(er, "code", NULL), "model_not_found");
	json_decref(j);

	buf_reset(&b);
	chat_error_set(&e, 500, "server_error", NULL, "tab\there");
	assert_int_equal(oai_error_json(&b, &e), GW_OK);
	j = load(&b);
	er = json_object_get(j, "error");
	assert_string_equal(jstr(er, "message", NULL), "tab\there");
	assert_true(json_is_null(json_object_get(er, "param")));
	assert_true(json_is_null(json_object_get(er, "code")));
	json_decref(j);

	/* A parse error goes out as the client will see it. */
	buf_reset(&b);
	struct chat_req *r;
	const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":7}]}";
	assert_int_equal(oai_parse_chat(body, strlen(body), &r, &e), GW_EINVAL);
	assert_int_equal(oai_error_json(&b, &e), GW_OK);
	j = load(&b);
	assert_string_equal(jstr(json_object_get(j, "error"), "param", NULL),
			    "messages[0].content");
	json_decref(j);
	buf_release(&b);
}

static const struct model_info test_models[] = {
	{ "gpt_5_4", "gpt-5.4", "GPT5_4", "openai", "free", true, true, 1 },
	{ "old", "old-model", "Old", "x", "pro", false, false, 1 },
	{ "claude_sonnet_4_5", "claude-sonnet-4.5", "ClaudeSonnet4_5", "", "free", true, false, 2 },
};

static void test_models_json(void **state)
{
	(void)state;
	struct model_list l = { (struct model_info *)test_models, GW_ARRAY_LEN(test_models) };
	struct buf b;
	buf_init(&b, 1 << 16);
	assert_int_equal(oai_models_json(&b, &l, 1700000000), GW_OK);
	json_t *j = load(&b);
	assert_string_equal(jstr(j, "object", NULL), "list");
	const json_t *d = json_object_get(j, "data");
	assert_int_equal(json_array_size(d), 2);
	const json_t *m0 = json_array_get(d, 0), *m1 = json_array_get(d, 1);
	assert_string_equal(jstr(m0, "id", NULL), "gpt-5.4");
	assert_string_equal(jstr(m0, "object", NULL), "model");
	assert_int_equal(json_integer_value(json_object_get(m0, "created")), 1700000000);
	assert_string_equal(jstr(m0, "owned_by", NULL), "openai");
	assert_string_equal(jstr(m1, "id", NULL), "claude-sonnet-4.5");
	assert_string_equal(jstr(m1, "owned_by", NULL), "cto.new");
	json_decref(j);

	buf_reset(&b);
	struct model_list empty = { NULL, 0 };
	assert_int_equal(oai_models_json(&b, &empty, 1), GW_OK);
	assert_string_equal(b.p, "{\"object\":\"list\",\"data\":[]}");

	buf_reset(&b);
	assert_int_equal(oai_model_json(&b, &test_models[0], 5), GW_OK);
	j = load(&b);
	assert_string_equal(jstr(j, "id", NULL), "gpt-5.4");
	assert_string_equal(jstr(j, "owned_by", NULL), "openai");
	assert_int_equal(json_integer_value(json_object_get(j, "created")), 5);
	json_decref(j);
	buf_release(&b);
}

/* ---- token estimates ------------------------------------------------- */

static void test_tokens(void **state)
{
	(void)state;
	assert_int_equal(oai_estimate_tokens("", 0), 0);
	assert_int_equal(oai_estimate_tokens("a", 1), 1);
	assert_int_equal(oai_estimate_tokens("abcd", 4), 1);
	assert_int_equal(oai_estimate_tokens("abcde", 5), 2);
	char ascii[400];
	memset(ascii, 'w', sizeof(ascii));
	assert_int_equal(oai_estimate_tokens(ascii, sizeof(ascii)), 100);
	/* 世界 こんにちは 안녕: one per CJK character, the spaces as ASCII */
	const char *cjk = "\xe4\xb8\x96\xe7\x95\x8c";
	assert_int_equal(oai_estimate_tokens(cjk, strlen(cjk)), 2);
	const char *kana = "\xe3\x81\x93\xe3\x82\x93\xea\xb0\x80";
	assert_int_equal(oai_estimate_tokens(kana, strlen(kana)), 3);
	const char *mixed = "hi \xe4\xb8\x96\xe7\x95\x8c!"; /* 4 ASCII bytes + 2 CJK */
	assert_int_equal(oai_estimate_tokens(mixed, strlen(mixed)), 3);
	/* Non-CJK multi-byte text counts by bytes: 4 Cyrillic letters = 8 bytes. */
	const char *cyr = "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2";
	assert_int_equal(oai_estimate_tokens(cyr, strlen(cyr)), 2);
	assert_int_equal(oai_estimate_tokens("\xff", 1), 1);
	assert_int_equal(oai_estimate_tokens("\xe4\xb8", 2), 1);

	struct chat_req *r = parse_ok("{\"messages\":[{\"role\":\"system\",\"content\":\"abcdefgh\"},"
				      "{\"role\":\"user\",\"content\":\"\"}]}");
	assert_int_equal(oai_prompt_tokens(r), 2 + 4 + 0 + 4);
	chat_req_free(r);
	assert_int_equal(oai_prompt_tokens(NULL), 0);
}

/* The SSE chunk's "created" is written without printf; it must match it. */
static void test_buf_add_i64(void **state)
{
	(void)state;
	const int64_t v[] = { 0, 1, -1, 9, 10, 1764000000, -1764000000, INT64_MAX, INT64_MIN };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct buf b;
		char want[32];
		buf_init(&b, 64);
		assert_int_equal(buf_add_i64(&b, v[i]), GW_OK);
		snprintf(want, sizeof(want), "%" PRId64, v[i]);
		assert_int_equal(b.len, strlen(want));
		assert_memory_equal(b.p, want, b.len);
		buf_release(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_buf_add_i64),
		cmocka_unit_test(test_model_forms),
		cmocka_unit_test(test_stream_flags),
		cmocka_unit_test(test_n),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_ignored_fields),
		cmocka_unit_test(test_messages_shape),
		cmocka_unit_test(test_too_many_messages),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_last_message),
		cmocka_unit_test(test_content_parts),
		cmocka_unit_test(test_content_errors),
		cmocka_unit_test(test_tool_calls),
		cmocka_unit_test(test_text_limit),
		cmocka_unit_test(test_unicode_text),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_stream_init),
		cmocka_unit_test(test_sse_chunks),
		cmocka_unit_test(test_sse_sequence),
		cmocka_unit_test(test_sse_escaping),
		cmocka_unit_test(test_sse_rollback),
		cmocka_unit_test(test_sse_head_cached),
		cmocka_unit_test(test_sse_error),
		cmocka_unit_test(test_completion_json),
		cmocka_unit_test(test_error_json),
		cmocka_unit_test(test_models_json),
		cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
