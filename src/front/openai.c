/* openai.c - OpenAI chat-completions request parsing and reply encoding.
 *
 * Parsing uses jansson (strict: duplicate keys rejected, bodies bounded by
 * the caller). Output is written straight into a struct buf with
 * buf_add_json_str doing the escaping: the SSE functions run once per reply
 * piece, so they build no DOM and allocate nothing but buffer growth. */
#include "front/openai.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define INVALID "invalid_request_error"

/* ---- errors ---------------------------------------------------------- */

/* chat_error.param is a borrowed pointer; indexed names such as
 * "messages[2].content" live here until the next parse on this thread. */
static _Thread_local char param_tls[96];

static const char *param_fmt(const char *fmt, ...) GW_PRINTF(1, 2);
static const char *param_fmt(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(param_tls, sizeof(param_tls), fmt, ap);
	va_end(ap);
	return param_tls;
}

static enum gw_err bad(struct chat_error *err, const char *code, const char *param,
		       const char *fmt, ...) GW_PRINTF(4, 5);
static enum gw_err bad(struct chat_error *err, const char *code, const char *param,
		       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	err->status = 400;
	err->type = INVALID;
	err->code = code;
	err->param = param;
	err->retry_after = 0;
	return GW_EINVAL;
}

static enum gw_err nomem(struct chat_error *err)
{
	chat_error_set(err, 500, "server_error", NULL, "the gateway ran out of memory");
	return GW_ENOMEM;
}

/* Maps a failed append to the client-facing error: the only ceiling the
 * text buffers have is the total-text limit. */
static enum gw_err buf_fail(enum gw_err e, struct chat_error *err)
{
	if (e == GW_ELIMIT)
		return bad(err, "context_length_exceeded", "messages",
			   "the messages hold more than %zu bytes of text in all (the limit is 4 MiB); "
			   "shorten the conversation",
			   OAI_MAX_TEXT_BYTES);
	if (e)
		return nomem(err);
	return GW_OK;
}

/* ---- request parsing ------------------------------------------------- */

/* Appends a JSON string's bytes; jansson has checked the UTF-8, we refuse
 * NUL because texts travel on as C strings. */
static enum gw_err add_jstr(struct buf *b, const json_t *s, const char *param,
			    struct chat_error *err)
{
	const char *v = json_string_value(s);
	size_t n = json_string_length(s);
	if (memchr(v, '\0', n))
		return bad(err, "invalid_value", param,
			   "'%s' must not contain NUL characters (\\u0000)", param);
	return buf_fail(buf_add(b, v, n), err);
}

static enum gw_err add_sep(struct buf *b, struct chat_error *err)
{
	return b->len ? buf_fail(buf_addc(b, '\n'), err) : GW_OK;
}

static bool str_is(const json_t *s, const char *want)
{
	return json_is_string(s) && strcmp(json_string_value(s), want) == 0 &&
	       json_string_length(s) == strlen(want);
}

static bool is_one_of(const json_t *s, const char *const *names)
{
	for (; *names; names++)
		if (str_is(s, *names))
			return true;
	return false;
}

static enum gw_err add_part(struct buf *b, const json_t *part, size_t i, size_t j,
			    struct chat_error *err)
{
	static const char *const text_types[] = { "text", "input_text", "output_text", NULL };
	static const char *const image_types[] = { "image_url", "input_image", NULL };
	static const char *const other_media[] = { "input_audio", "audio", "file", "input_file", NULL };
	const char *p = param_fmt("messages[%zu].content[%zu]", i, j);
	if (!json_is_object(part))
		return bad(err, "invalid_type", p, "'%s' must be an object with a 'type'", p);
	const json_t *type = json_object_get(part, "type");
	const char *field = NULL;
	if (is_one_of(type, text_types))
		field = "text";
	else if (str_is(type, "refusal"))
		field = "refusal";
	else if (is_one_of(type, image_types))
		return bad(err, "unsupported_content", p,
			   "'%s': images are not supported yet; send the content as text", p);
	else if (is_one_of(type, other_media))
		return bad(err, "unsupported_content", p,
			   "'%s': content parts of type '%s' are not supported; send text", p,
			   json_string_value(type));
	else if (json_is_string(type))
		return bad(err, "invalid_value", p,
			   "'%s' has an unknown content part type '%.64s'; expected 'text'", p,
			   json_string_value(type));
	else
		return bad(err, "invalid_type", p, "'%s' needs a string 'type' such as 'text'", p);
	const json_t *t = json_object_get(part, field);
	if (!json_is_string(t))
		return bad(err, "invalid_type", param_fmt("messages[%zu].content[%zu].%s", i, j, field),
			   "'%s' must be a string", param_tls);
	enum gw_err e = add_sep(b, err);
	return e ? e : add_jstr(b, t, param_fmt("messages[%zu].content[%zu].%s", i, j, field), err);
}

static enum gw_err add_content(struct buf *b, const json_t *c, enum chat_role role, size_t i,
			       struct chat_error *err)
{
	const char *p = param_fmt("messages[%zu].content", i);
	if (!c || json_is_null(c)) {
		/* Assistant turns that only call tools carry no content. */
		if (role == ROLE_ASSISTANT)
			return GW_OK;
		return bad(err, "missing_required_parameter", p,
			   "'%s' is required for a message with role '%s'", p, chat_role_name(role));
	}
	if (json_is_string(c))
		return add_jstr(b, c, p, err);
	if (!json_is_array(c))
		return bad(err, "invalid_type", p,
			   "'%s' must be a string or an array of content parts", p);
	for (size_t j = 0; j < json_array_size(c); j++) {
		enum gw_err e = add_part(b, json_array_get(c, j), i, j, err);
		if (e)
			return e;
	}
	return GW_OK;
}

/* Renders one call as "[tool call name(arguments)]" so the transcript the
 * upstream sees, and the continuity key, still show what was called. */
static enum gw_err add_call(struct buf *b, const json_t *fn, const char *where,
			    struct chat_error *err)
{
	char param[96];
	snprintf(param, sizeof(param), "%s", where);
	const json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
	if (!json_is_string(name))
		return bad(err, "invalid_type", where, "'%s' needs a string 'name'", where);
	const json_t *args = json_object_get(fn, "arguments");
	enum gw_err e = add_sep(b, err);
	if (!e)
		e = buf_fail(buf_adds(b, "[tool call "), err);
	if (!e)
		e = add_jstr(b, name, param_fmt("%s.name", param), err);
	if (!e)
		e = buf_fail(buf_addc(b, '('), err);
	if (!e && json_is_string(args)) {
		e = add_jstr(b, args, param_fmt("%s.arguments", param), err);
	} else if (!e && args && !json_is_null(args)) {
		/* Some clients send the arguments as an object, not a string. */
		char *s = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s)
			return nomem(err);
		json_malloc_t mf;
		json_free_t ff;
		e = buf_fail(buf_adds(b, s), err);
		json_get_alloc_funcs(&mf, &ff);
		ff(s);
	}
	if (!e)
		e = buf_fail(buf_adds(b, ")]"), err);
	return e;
}

static enum gw_err add_tool_calls(struct buf *b, const json_t *msg, size_t i,
				  struct chat_error *err)
{
	const json_t *tc = json_object_get(msg, "tool_calls");
	const json_t *fc = json_object_get(msg, "function_call");
	if (fc && !json_is_null(fc)) {
		enum gw_err e = add_call(b, fc, param_fmt("messages[%zu].function_call", i), err);
		if (e)
			return e;
	}
	if (!tc || json_is_null(tc))
		return GW_OK;
	if (!json_is_array(tc))
		return bad(err, "invalid_type", param_fmt("messages[%zu].tool_calls", i),
			   "'%s' must be an array", param_tls);
	for (size_t j = 0; j < json_array_size(tc); j++) {
		const json_t *call = json_array_get(tc, j);
		const char *p = param_fmt("messages[%zu].tool_calls[%zu].function", i, j);
		const json_t *fn = json_is_object(call) ? json_object_get(call, "function") : NULL;
		if (!json_is_object(fn))
			return bad(err, "invalid_type", p, "'%s' must be an object", p);
		enum gw_err e = add_call(b, fn, p, err);
		if (e)
			return e;
	}
	return GW_OK;
}

static enum gw_err parse_role(const json_t *msg, size_t i, enum chat_role *role,
			      struct chat_error *err)
{
	static const struct {
		const char *name;
		enum chat_role role;
	} roles[] = {
		{ "system", ROLE_SYSTEM },   { "developer", ROLE_DEVELOPER },
		{ "user", ROLE_USER },       { "assistant", ROLE_ASSISTANT },
		{ "tool", ROLE_TOOL },       { "function", ROLE_TOOL },
	};
	const json_t *r = json_object_get(msg, "role");
	const char *p = param_fmt("messages[%zu].role", i);
	if (!r)
		return bad(err, "missing_required_parameter", p, "'%s' is required", p);
	for (size_t k = 0; k < GW_ARRAY_LEN(roles); k++) {
		if (str_is(r, roles[k].name)) {
			*role = roles[k].role;
			return GW_OK;
		}
	}
	return bad(err, "invalid_value", p,
		   "'%s' must be one of 'system', 'developer', 'user', 'assistant' or 'tool'", p);
}

/* Fills m only on success, so the caller's cleanup never sees half a message. */
static enum gw_err parse_message(const json_t *msg, size_t i, struct chat_msg *m,
				 size_t *total, struct chat_error *err)
{
	enum chat_role role = ROLE_USER;
	if (!json_is_object(msg))
		return bad(err, "invalid_type", param_fmt("messages[%zu]", i),
			   "'%s' must be an object with 'role' and 'content'", param_tls);
	enum gw_err e = parse_role(msg, i, &role, err);
	if (e)
		return e;
	struct buf t;
	buf_init(&t, OAI_MAX_TEXT_BYTES - *total);
	e = add_content(&t, json_object_get(msg, "content"), role, i, err);
	if (!e && role == ROLE_ASSISTANT)
		e = add_tool_calls(&t, msg, i, err);
	if (e) {
		buf_release(&t);
		return e;
	}
	m->text = buf_take(&t, &m->len);
	if (!m->text)
		return nomem(err);
	m->role = role;
	*total += m->len;
	return GW_OK;
}

static enum gw_err parse_messages(const json_t *root, struct chat_req *req,
				  struct chat_error *err)
{
	const json_t *msgs = json_object_get(root, "messages");
	if (!msgs)
		return bad(err, "missing_required_parameter", "messages",
			   "'messages' is required: an array of message objects");
	if (!json_is_array(msgs))
		return bad(err, "invalid_type", "messages",
			   "'messages' must be an array of message objects");
	size_t n = json_array_size(msgs);
	if (n == 0)
		return bad(err, "empty_array", "messages",
			   "'messages' must contain at least one message");
	if (n > OAI_MAX_MESSAGES)
		return bad(err, "array_above_max_length", "messages",
			   "'messages' has %zu messages; at most %d are allowed", n,
			   OAI_MAX_MESSAGES);
	req->msgs = gw_calloc(n, sizeof(*req->msgs));
	if (!req->msgs)
		return nomem(err);
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		enum gw_err e = parse_message(json_array_get(msgs, i), i, &req->msgs[i], &total, err);
		if (e)
			return e;
		req->n_msgs = i + 1;
	}
	enum chat_role last = req->msgs[n - 1].role;
	if (last != ROLE_USER && last != ROLE_TOOL)
		return bad(err, "invalid_value", "messages",
			   "the last message must be from the user (or a tool result), not '%s'",
			   chat_role_name(last));
	return GW_OK;
}

static enum gw_err parse_model(const json_t *root, struct chat_req *req, struct chat_error *err)
{
	const json_t *m = json_object_get(root, "model");
	if (!m || json_is_null(m))
		return GW_OK;
	if (!json_is_string(m))
		return bad(err, "invalid_type", "model", "'model' must be a string");
	size_t n = json_string_length(m);
	if (n == 0)
		return GW_OK; /* "" means the default, as an absent model does */
	if (n > OAI_MAX_MODEL_BYTES)
		return bad(err, "invalid_value", "model",
			   "'model' is longer than %d bytes", OAI_MAX_MODEL_BYTES);
	if (memchr(json_string_value(m), '\0', n))
		return bad(err, "invalid_value", "model",
			   "'model' must not contain NUL characters (\\u0000)");
	req->model = gw_strndup(json_string_value(m), n);
	return req->model ? GW_OK : nomem(err);
}

static enum gw_err parse_flag(const json_t *obj, const char *key, const char *param, bool *out,
			      struct chat_error *err)
{
	const json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return GW_OK;
	if (!json_is_boolean(v))
		return bad(err, "invalid_type", param, "'%s' must be a boolean (true or false)",
			   param);
	*out = json_is_true(v);
	return GW_OK;
}

static enum gw_err parse_stream(const json_t *root, struct chat_req *req, struct chat_error *err)
{
	bool usage = false;
	enum gw_err e = parse_flag(root, "stream", "stream", &req->stream, err);
	if (e)
		return e;
	const json_t *so = json_object_get(root, "stream_options");
	if (so && !json_is_null(so)) {
		if (!json_is_object(so))
			return bad(err, "invalid_type", "stream_options",
				   "'stream_options' must be an object");
		e = parse_flag(so, "include_usage", "stream_options.include_usage", &usage, err);
		if (e)
			return e;
	}
	req->include_usage = req->stream && usage; /* meaningless without a stream */
	return GW_OK;
}

static enum gw_err parse_n(const json_t *root, struct chat_error *err)
{
	const json_t *n = json_object_get(root, "n");
	if (!n || json_is_null(n))
		return GW_OK;
	if (!json_is_number(n))
		return bad(err, "invalid_type", "n", "'n' must be an integer");
	double v = json_number_value(n);
	if (v == 1.0)
		return GW_OK;
	if (v > 1.0)
		return bad(err, "unsupported_parameter", "n",
			   "only n=1 is supported: the upstream gives one choice per request");
	return bad(err, "invalid_value", "n", "'n' must be at least 1");
}

/* Fields the OpenAI API defines that we accept and ignore, for the record:
 * temperature, top_p, max_tokens, max_completion_tokens, stop,
 * presence_penalty, frequency_penalty, logit_bias, user, seed, tools,
 * tool_choice, response_format, parallel_tool_calls, logprobs, top_logprobs,
 * metadata, store, reasoning_effort, service_tier, modalities, prediction,
 * audio, web_search_options, functions, function_call, verbosity,
 * prompt_cache_key, safety_identifier. Unknown fields are ignored too, so a
 * newer SDK keeps working. */
static enum gw_err parse_root(const json_t *root, struct chat_req *req, struct chat_error *err)
{
	enum gw_err e = parse_model(root, req, err);
	if (!e)
		e = parse_stream(root, req, err);
	if (!e)
		e = parse_n(root, err);
	if (!e)
		e = parse_messages(root, req, err);
	return e;
}

enum gw_err oai_parse_chat(const char *body, size_t len, struct chat_req **out,
			   struct chat_error *err)
{
	json_error_t je;
	*out = NULL;
	if (!body) {
		body = "";
		len = 0;
	}
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!root)
		return bad(err, NULL, NULL,
			   "could not parse the JSON body of your request: %s (line %d, column %d)",
			   je.text, je.line, je.column);
	enum gw_err e;
	struct chat_req *req = NULL;
	if (!json_is_object(root)) {
		e = bad(err, "invalid_type", NULL, "the request body must be a JSON object");
	} else if (!(req = gw_calloc(1, sizeof(*req)))) {
		e = nomem(err);
	} else {
		e = parse_root(root, req, err);
	}
	json_decref(root);
	if (e) {
		chat_req_free(req);
		return e;
	}
	*out = req;
	return GW_OK;
}

/* ---- output ---------------------------------------------------------- */

/* Output functions chain appends with "if (!e) e = ..." and call finish()
 * once: on failure it cuts the buffer back, so nothing partial stays. */
static enum gw_err finish(struct buf *b, size_t start, enum gw_err e)
{
	if (e)
		buf_truncate(b, start);
	return e;
}

static enum gw_err add_qstr(struct buf *b, const char *s, size_t n)
{
	enum gw_err e = buf_addc(b, '"');
	if (!e)
		e = buf_add_json_str(b, s, n);
	if (!e)
		e = buf_addc(b, '"');
	return e;
}

/* A NUL-terminated string, or null for NULL. */
static enum gw_err add_qstr_or_null(struct buf *b, const char *s)
{
	return s ? add_qstr(b, s, strlen(s)) : buf_adds(b, "null");
}

static enum gw_err format_head(struct buf *b, const struct oai_stream *s)
{
	enum gw_err e = buf_adds(b, "data: {\"id\":");
	if (!e)
		e = add_qstr(b, s->id, strnlen(s->id, sizeof(s->id)));
	if (!e)
		e = buf_adds(b, ",\"object\":\"chat.completion.chunk\",\"created\":");
	if (!e)
		e = buf_add_i64(b, s->created);
	if (!e)
		e = buf_adds(b, ",\"model\":");
	if (!e)
		e = add_qstr(b, s->model, strnlen(s->model, sizeof(s->model)));
	if (!e)
		e = buf_adds(b, ",\"system_fingerprint\":null,\"choices\":[");
	return e;
}

/* Every chunk of a stream starts with the same bytes: they are formatted
 * (id and model escaped, created in decimal) for the first chunk only and
 * copied after that. Not caching them (out of memory) only costs time. */
static enum gw_err chunk_head(struct buf *b, struct oai_stream *s)
{
	if (s->head)
		return buf_add(b, s->head, s->head_len);
	size_t start = b->len;
	enum gw_err e = format_head(b, s);
	if (!e) {
		size_t n = b->len - start;
		s->head = gw_malloc(n);
		if (s->head) {
			memcpy(s->head, b->p + start, n);
			s->head_len = n;
		}
	}
	return e;
}

#define CHOICE_OPEN "{\"index\":0,\"delta\":"
#define CHOICE_TAIL_NULL ",\"logprobs\":null,\"finish_reason\":null}]}\n\n"

enum gw_err oai_sse_role(struct buf *b, struct oai_stream *s)
{
	size_t start = b->len;
	enum gw_err e = chunk_head(b, s);
	if (!e)
		e = buf_adds(b, CHOICE_OPEN "{\"role\":\"assistant\",\"content\":\"\"}"
				CHOICE_TAIL_NULL);
	return finish(b, start, e);
}

enum gw_err oai_sse_delta(struct buf *b, struct oai_stream *s, const char *text, size_t n,
			  bool reasoning)
{
	size_t start = b->len;
	enum gw_err e = chunk_head(b, s);
	if (!e)
		e = buf_adds(b, reasoning ? CHOICE_OPEN "{\"reasoning_content\":"
					  : CHOICE_OPEN "{\"content\":");
	if (!e)
		e = add_qstr(b, text, n);
	if (!e)
		e = buf_adds(b, "}" CHOICE_TAIL_NULL);
	return finish(b, start, e);
}

enum gw_err oai_sse_finish(struct buf *b, struct oai_stream *s, const char *finish_reason)
{
	size_t start = b->len;
	enum gw_err e = chunk_head(b, s);
	if (!e)
		e = buf_adds(b, CHOICE_OPEN "{},\"logprobs\":null,\"finish_reason\":");
	if (!e)
		e = add_qstr_or_null(b, finish_reason ? finish_reason : "stop");
	if (!e)
		e = buf_adds(b, "}]}\n\n");
	return finish(b, start, e);
}

static enum gw_err add_usage(struct buf *b, int prompt, int completion)
{
	int64_t p = prompt > 0 ? prompt : 0;
	int64_t c = completion > 0 ? completion : 0;
	return buf_printf(b, "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
			  ",\"total_tokens\":%" PRId64 "}", p, c, p + c);
}

enum gw_err oai_sse_usage(struct buf *b, struct oai_stream *s, int prompt_tokens,
			  int completion_tokens)
{
	size_t start = b->len;
	enum gw_err e = chunk_head(b, s);
	if (!e)
		e = buf_adds(b, "],");
	if (!e)
		e = add_usage(b, prompt_tokens, completion_tokens);
	if (!e)
		e = buf_adds(b, "}\n\n");
	return finish(b, start, e);
}

static enum gw_err add_error(struct buf *b, const struct chat_error *er)
{
	enum gw_err e = buf_adds(b, "{\"error\":{\"message\":");
	if (!e)
		e = add_qstr(b, er->message, strnlen(er->message, sizeof(er->message)));
	if (!e)
		e = buf_adds(b, ",\"type\":");
	if (!e)
		e = add_qstr_or_null(b, er->type ? er->type : "server_error");
	if (!e)
		e = buf_adds(b, ",\"param\":");
	if (!e)
		e = add_qstr_or_null(b, er->param);
	if (!e)
		e = buf_adds(b, ",\"code\":");
	if (!e)
		e = add_qstr_or_null(b, er->code);
	if (!e)
		e = buf_adds(b, "}}");
	return e;
}

enum gw_err oai_error_json(struct buf *b, const struct chat_error *er)
{
	size_t start = b->len;
	return finish(b, start, add_error(b, er));
}

enum gw_err oai_sse_error(struct buf *b, const struct chat_error *er)
{
	size_t start = b->len;
	enum gw_err e = buf_adds(b, "data: ");
	if (!e)
		e = add_error(b, er);
	if (!e)
		e = buf_adds(b, "\n\n");
	return finish(b, start, e);
}

static enum gw_err add_message(struct buf *b, const char *text, size_t tlen,
			       const char *reasoning, size_t rlen)
{
	enum gw_err e = buf_adds(b, "\"message\":{\"role\":\"assistant\",\"content\":");
	if (!e)
		e = add_qstr(b, text ? text : "", text ? tlen : 0);
	if (!e && reasoning && rlen > 0) {
		e = buf_adds(b, ",\"reasoning_content\":");
		if (!e)
			e = add_qstr(b, reasoning, rlen);
	}
	if (!e)
		e = buf_adds(b, ",\"refusal\":null}");
	return e;
}

enum gw_err oai_completion_json(struct buf *b, const struct oai_stream *s, const char *text,
				size_t tlen, const char *reasoning, size_t rlen,
				const char *finish_reason, int prompt_tokens,
				int completion_tokens)
{
	size_t start = b->len;
	enum gw_err e = buf_adds(b, "{\"id\":");
	if (!e)
		e = add_qstr(b, s->id, strnlen(s->id, sizeof(s->id)));
	if (!e)
		e = buf_printf(b, ",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":",
			       s->created);
	if (!e)
		e = add_qstr(b, s->model, strnlen(s->model, sizeof(s->model)));
	if (!e)
		e = buf_adds(b, ",\"system_fingerprint\":null,\"choices\":[{\"index\":0,");
	if (!e)
		e = add_message(b, text, tlen, reasoning, rlen);
	if (!e)
		e = buf_adds(b, ",\"logprobs\":null,\"finish_reason\":");
	if (!e)
		e = add_qstr_or_null(b, finish_reason ? finish_reason : "stop");
	if (!e)
		e = buf_adds(b, "}],");
	if (!e)
		e = add_usage(b, prompt_tokens, completion_tokens);
	if (!e)
		e = buf_addc(b, '}');
	return finish(b, start, e);
}

static enum gw_err add_model(struct buf *b, const struct model_info *m, int64_t created)
{
	size_t plen = strnlen(m->provider, sizeof(m->provider));
	enum gw_err e = buf_adds(b, "{\"id\":");
	if (!e)
		e = add_qstr(b, m->model, strnlen(m->model, sizeof(m->model)));
	if (!e)
		e = buf_printf(b, ",\"object\":\"model\",\"created\":%" PRId64 ",\"owned_by\":",
			       created);
	if (!e)
		e = plen ? add_qstr(b, m->provider, plen) : buf_adds(b, "\"cto.new\"");
	if (!e)
		e = buf_addc(b, '}');
	return e;
}

enum gw_err oai_models_json(struct buf *b, const struct model_list *l, int64_t created)
{
	size_t start = b->len;
	bool first = true;
	enum gw_err e = buf_adds(b, "{\"object\":\"list\",\"data\":[");
	for (size_t i = 0; !e && l && i < l->n; i++) {
		if (!l->v[i].enabled)
			continue;
		if (!first)
			e = buf_addc(b, ',');
		if (!e)
			e = add_model(b, &l->v[i], created);
		first = false;
	}
	if (!e)
		e = buf_adds(b, "]}");
	return finish(b, start, e);
}

enum gw_err oai_model_json(struct buf *b, const struct model_info *m, int64_t created)
{
	size_t start = b->len;
	return finish(b, start, add_model(b, m, created));
}

/* ---- stream identity ------------------------------------------------- */

/* splitmix64: ids only need to differ, not to be unpredictable. One state
 * per thread so workers never share it. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
	if (!rng_state)
		rng_state = gw_now_us() ^ ((uint64_t)getpid() << 32) ^
			    (uint64_t)(uintptr_t)&rng_state ^ ((uint64_t)gw_wall_s() << 20);
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void oai_stream_init(struct oai_stream *s, const char *model)
{
	static const char alnum[] =
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	static const char prefix[] = "chatcmpl-";
	memcpy(s->id, prefix, sizeof(prefix) - 1);
	char *o = s->id + sizeof(prefix) - 1;
	for (int i = 0; i < 24; i++)
		*o++ = alnum[rng_next() % (sizeof(alnum) - 1)];
	*o = '\0';
	s->created = gw_wall_s();
	size_t n = model ? strnlen(model, sizeof(s->model)) : 0;
	if (n == sizeof(s->model)) {
		n = sizeof(s->model) - 1;
		/* Cut on a character boundary, not inside a UTF-8 sequence. */
		while (n > 0 && ((unsigned char)model[n] & 0xc0) == 0x80)
			n--;
	}
	if (n)
		memcpy(s->model, model, n);
	s->model[n] = '\0';
	s->head = NULL;
	s->head_len = 0;
}

void oai_stream_release(struct oai_stream *s)
{
	gw_free(s->head);
	s->head = NULL;
	s->head_len = 0;
}

/* ---- token estimates ------------------------------------------------- */

/* Decodes one UTF-8 sequence at p; returns its length or 0 if invalid. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c = p[0];
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	*cp = c;
	return len;
}

static bool is_cjk(uint32_t c)
{
	return (c >= 0x1100 && c <= 0x11ff) ||   /* Hangul Jamo */
	       (c >= 0x2e80 && c <= 0x9fff) ||   /* radicals, CJK punctuation, kana, Han */
	       (c >= 0xa960 && c <= 0xa97f) ||   /* Hangul Jamo extended */
	       (c >= 0xac00 && c <= 0xd7af) ||   /* Hangul syllables */
	       (c >= 0xf900 && c <= 0xfaff) ||   /* compatibility ideographs */
	       (c >= 0xfe30 && c <= 0xfe4f) ||   /* compatibility forms */
	       (c >= 0xff00 && c <= 0xffef) ||   /* full-width forms */
	       (c >= 0x20000 && c <= 0x3ffff);   /* Han extensions */
}

int oai_estimate_tokens(const char *text, size_t n)
{
	const unsigned char *p = (const unsigned char *)text;
	uint64_t cjk = 0, bytes = 0;
	size_t i = 0;
	while (i < n) {
		uint32_t cp = 0;
		size_t l = p[i] < 0x80 ? 0 : utf8_decode(p + i, n - i, &cp);
		if (l && is_cjk(cp))
			cjk++;
		else
			bytes += l ? l : 1;
		i += l ? l : 1;
	}
	uint64_t t = cjk + (bytes + 3) / 4;
	if (t == 0 && n > 0)
		t = 1;
	return t > INT_MAX ? INT_MAX : (int)t;
}

int oai_prompt_tokens(const struct chat_req *req)
{
	int64_t t = 0;
	for (size_t i = 0; req && i < req->n_msgs && t < INT_MAX; i++)
		t += (int64_t)oai_estimate_tokens(req->msgs[i].text, req->msgs[i].len) + 4;
	return t > INT_MAX ? INT_MAX : (int)t;
}
