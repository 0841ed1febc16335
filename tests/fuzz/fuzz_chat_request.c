/* fuzz_chat_request.c - oai_parse_chat on arbitrary bytes: it must never
 * crash or leak, and every result must satisfy the request invariants. */
#include <string.h>

#include "front/openai.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct chat_req *req = NULL;
	struct chat_error err;
	enum gw_err e = oai_parse_chat((const char *)data, size, &req, &err);
	if (e) {
		GW_ASSERT(req == NULL);
		GW_ASSERT(err.status == 400 || err.status == 500);
		GW_ASSERT(memchr(err.message, '\0', sizeof(err.message)) != NULL);
		return 0;
	}
	GW_ASSERT(req && req->n_msgs >= 1 && req->n_msgs <= OAI_MAX_MESSAGES);
	size_t total = 0;
	for (size_t i = 0; i < req->n_msgs; i++) {
		const struct chat_msg *m = &req->msgs[i];
		GW_ASSERT(m->text && strlen(m->text) == m->len);
		total += m->len;
	}
	GW_ASSERT(total <= OAI_MAX_TEXT_BYTES);
	enum chat_role last = req->msgs[req->n_msgs - 1].role;
	GW_ASSERT(last == ROLE_USER || last == ROLE_TOOL);
	GW_ASSERT(!req->include_usage || req->stream);
	GW_ASSERT(oai_prompt_tokens(req) >= 0);
	chat_req_free(req);
	return 0;
}
