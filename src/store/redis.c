/* redis.c - placeholder until the hiredis backend lands. */
#include "store/store_internal.h"

#include <stdio.h>

static enum gw_err rd_open(const struct store_url *u, const struct store_opts *o,
			   struct event_base *base, void **be, char *err, size_t errlen)
{
	GW_UNUSED(u);
	GW_UNUSED(o);
	GW_UNUSED(base);
	GW_UNUSED(be);
	snprintf(err, errlen, "redis store: not built yet");
	return GW_ECONFIG;
}

static void rd_exec(void *be, struct store_op *op)
{
	GW_UNUSED(be);
	op->err = GW_EIO;
	store__op_done(op);
}

static void rd_free(void *be)
{
	GW_UNUSED(be);
}

const struct store_backend store__redis = {
	.kind = "redis",
	.open = rd_open,
	.exec = rd_exec,
	.free = rd_free,
};
