/* openai.h - the OpenAI chat-completions wire format: request parsing and
 * validation into the neutral struct chat_req, and the JSON / SSE text of
 * replies, models and errors. Pure functions: no I/O and no shared state
 * (only per-thread: the id generator and the error-param text), so every
 * entry point can be fuzzed and N worker threads may call them at once.
 *
 * Output functions append to a struct buf. They are all-or-nothing: on
 * failure (GW_ELIMIT when the buf's ceiling is hit, GW_ENOMEM) the buf is
 * truncated back to its length on entry, so a half-written SSE event never
 * reaches a client. */
#ifndef GW_FRONT_OPENAI_H
#define GW_FRONT_OPENAI_H

#include "core/chat.h"
#include "core/models.h"
#include "util/buf.h"

#define OAI_MAX_MESSAGES 2048
#define OAI_MAX_TEXT_BYTES ((size_t)4 << 20) /* sum of all message texts */
#define OAI_MAX_MODEL_BYTES 256

#define OAI_SSE_DONE "data: [DONE]\n\n"

/* Parses and validates a POST /v1/chat/completions body. On GW_OK *out is a
 * new request (free with chat_req_free) whose tenant is "" (the caller fills
 * it). On bad input returns GW_EINVAL with err set to a 400
 * "invalid_request_error" naming the field in err->param; on allocation
 * failure GW_ENOMEM with a 500 in err. *out is NULL on any error.
 *
 * err->param is either a string literal or per-thread storage that stays
 * valid until the next oai_parse_chat() call on the same thread: write the
 * error out (oai_error_json) before parsing another request, or copy it. */
enum gw_err oai_parse_chat(const char *body, size_t len, struct chat_req **out,
			   struct chat_error *err) GW_MUSTCHECK;

/* The identity shared by every chunk of one streamed (or non-streamed) reply. */
struct oai_stream {
	char id[48];      /* "chatcmpl-" + 24 random alphanumerics */
	int64_t created;  /* Unix seconds */
	char model[128];  /* the model name echoed to the client (truncated) */
	char *head;       /* the chunk head up to "choices":[, once formatted (owned) */
	size_t head_len;
};

/* Fills s with a fresh id, the current time and model (NULL gives ""). The
 * id comes from a cheap per-thread non-cryptographic generator: it must be
 * unique enough to tell replies apart, not unguessable. */
void oai_stream_init(struct oai_stream *s, const char *model);
/* Frees what the SSE writers cached in s (release before initialising s
 * again). */
void oai_stream_release(struct oai_stream *s);

/* One SSE event each: "data: {chat.completion.chunk}\n\n". */
/* First chunk: delta {"role":"assistant","content":""}. */
enum gw_err oai_sse_role(struct buf *b, struct oai_stream *s) GW_MUSTCHECK;
/* delta {"content":text} or, if reasoning, {"reasoning_content":text}.
 * Invalid UTF-8 in text becomes U+FFFD. */
enum gw_err oai_sse_delta(struct buf *b, struct oai_stream *s, const char *text, size_t n,
			  bool reasoning) GW_MUSTCHECK;
/* delta {} with finish_reason ("stop" when NULL). */
enum gw_err oai_sse_finish(struct buf *b, struct oai_stream *s,
			   const char *finish_reason) GW_MUSTCHECK;
/* choices [] and usage; negative counts are sent as 0. */
enum gw_err oai_sse_usage(struct buf *b, struct oai_stream *s, int prompt_tokens,
			  int completion_tokens) GW_MUSTCHECK;
/* "data: {"error":{...}}\n\n", for errors after the first SSE byte; send
 * OAI_SSE_DONE after it. */
enum gw_err oai_sse_error(struct buf *b, const struct chat_error *e) GW_MUSTCHECK;

/* The whole "chat.completion" object for stream:false. reasoning_content is
 * included only when rlen > 0; finish_reason NULL means "stop". */
enum gw_err oai_completion_json(struct buf *b, const struct oai_stream *s, const char *text,
				size_t tlen, const char *reasoning, size_t rlen,
				const char *finish_reason, int prompt_tokens,
				int completion_tokens) GW_MUSTCHECK;

/* {"error":{"message","type","param","code"}}; NULL param/code give null. */
enum gw_err oai_error_json(struct buf *b, const struct chat_error *e) GW_MUSTCHECK;

/* GET /v1/models: the enabled models only, id = the vendor name. */
enum gw_err oai_models_json(struct buf *b, const struct model_list *l,
			    int64_t created) GW_MUSTCHECK;
/* GET /v1/models/{id}: one model object. */
enum gw_err oai_model_json(struct buf *b, const struct model_info *m,
			   int64_t created) GW_MUSTCHECK;

/* Token counts are estimates (the upstream reports none): about one token
 * per 4 bytes of ASCII or other non-CJK text, one per CJK character (Han,
 * kana, Hangul, CJK punctuation and full-width forms), at least 1 for
 * non-empty text. Saturates at INT_MAX. */
int oai_estimate_tokens(const char *text, size_t n);
/* Sum over the messages plus 4 per message for the role and framing. */
int oai_prompt_tokens(const struct chat_req *req);

#endif
