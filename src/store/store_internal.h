/* store_internal.h - what store.c shares with the backends (memory, sqlite,
 * redis) and with the store tests. Not for other modules.
 *
 * store.c owns the store thread, the op queue and the delivery of results to
 * the callers' event_bases. A backend only executes ops, always on the store
 * thread: exec() starts an op and the backend finishes it, right away or
 * later, with exactly one store__op_done(). */
#ifndef GW_STORE_INTERNAL_H
#define GW_STORE_INTERNAL_H

#include "store/store.h"

#include <pthread.h>

#define STORE_NAME_MAX 200          /* kv name bytes */
#define STORE_VALUE_MAX (64 * 1024) /* kv value bytes */
#define STORE_QUEUE_MAX 10000       /* ops waiting for the store thread */
#define STORE_SWEEP_S 60            /* TTL and max_entries sweep period */
#define STORE_URL_PATH_MAX 4096

enum store_url_kind { STORE_URL_MEMORY, STORE_URL_SQLITE, STORE_URL_REDIS };

struct store_url {
	enum store_url_kind kind;
	char path[STORE_URL_PATH_MAX]; /* sqlite */
	char host[256];                /* redis: name or IP (IPv6 without brackets) */
	int port;
	int db;
	char user[128];                /* redis ACL user, may be empty */
	char password[256];            /* secret: never log or echo */
};

/* Parses a store URL. On failure writes a reason that never contains the
 * password (nor any other part of the URL after the scheme). */
enum gw_err store__parse_url(const char *url, struct store_url *out, char *err,
			     size_t errlen) GW_MUSTCHECK;

enum store_op_kind {
	STORE_OP_CONV_GET,
	STORE_OP_CONV_PUT,
	STORE_OP_KV_GET,
	STORE_OP_KV_PUT,
	STORE_OP_SWEEP, /* test hook: run the periodic sweep now */
};

enum store_op_state {
	STORE_OP_QUEUED,     /* in the store's queue */
	STORE_OP_RUNNING,    /* the backend has it */
	STORE_OP_DELIVERING, /* result posted to the caller's event_base */
	STORE_OP_DONE,       /* callback running or ran */
	STORE_OP_CANCELLED,  /* callback will never run */
};

struct store_sync;

struct store_op {
	struct store *s;
	struct store_op *next;
	enum store_op_kind kind;
	enum store_op_state state; /* under s->mu */

	/* Caller side: delivery event on the caller's base (NULL without cb),
	 * created and freed on the caller's thread only. */
	struct event *ev;
	union {
		store_conv_cb *conv;
		store_done_cb *done;
		store_kv_cb *kv;
	} cb;
	void *arg;
	struct store_sync *sync; /* store_kv_get_sync and test hooks */

	/* Input. */
	int64_t now; /* wall seconds on the store's clock, set before exec */
	uint8_t key[STORE_KEY_LEN];
	struct conv_entry entry;
	char *name;  /* NUL-terminated, owned */
	char *value; /* owned, vlen bytes (+NUL) */
	size_t vlen;
	int64_t ttl_s;
	bool sweep_once; /* STORE_OP_SWEEP: one backend call, not the whole sweep */

	/* Output, filled by the backend before store__op_done(). */
	enum gw_err err;
	bool found;
	struct conv_entry res;
	char *rval; /* gw_malloc'd, NUL-terminated; freed with the op */
	size_t rlen;
};

static inline bool store__op_is_write(const struct store_op *op)
{
	return op->kind == STORE_OP_CONV_PUT || op->kind == STORE_OP_KV_PUT;
}

/* Called by the backend, exactly once per exec'd op: on the store thread, or
 * on the caller's for an inline backend. */
void store__op_done(struct store_op *op);

/* Sets op->rval to a copy of p (n bytes) and op->found; GW_ENOMEM in op->err
 * if the copy fails. */
void store__op_set_value(struct store_op *op, const void *p, size_t n);

struct store_backend {
	const char *kind;
	/* On the opening thread, before the store thread starts; base is the
	 * store thread's (for the backend's own events). */
	enum gw_err (*open)(const struct store_url *u, const struct store_opts *o,
			    struct event_base *base, void **be, char *err, size_t errlen);
	void (*exec)(void *be, struct store_op *op);
	/* Optional: expire by TTL and enforce max_entries. */
	/* Returns true while work is left for another call: between calls an
	 * inline backend lets the callers' ops in. */
	bool (*sweep)(void *be, int64_t now);
	/* Ops exec'd but not done yet (async backends); NULL means 0. */
	size_t (*busy)(void *be);
	/* exec finishes every op before it returns and never blocks: ops then
	 * run on the callers' threads (serialised), not the store thread. */
	bool inline_exec;
	/* On the store thread after the last op; must free every event it made. */
	void (*free)(void *be);
};

extern const struct store_backend store__memory;
extern const struct store_backend store__sqlite;
extern const struct store_backend store__redis;

/* Test hooks. */
/* Runs the backend's sweep on the store thread and waits for it. */
void store__sweep(struct store *s);
/* One call of the backend's sweep (a step, for the memory store), on the
 * store's serialisation like any op. */
void store__sweep_step(struct store *s);
/* Moves the store's clock (TTL, created, last_used) by secs; the store
 * thread sees it for ops queued afterwards. */
void store__time_shift(struct store *s, int64_t secs);

#endif
