/* store.h - where conversation mappings and per-account state live:
 * memory: (tests), sqlite://PATH (default, survives restarts) or
 * redis://host:port/db (shared by several gateway instances).
 *
 * Every backend runs its I/O on one store thread with its own event loop, so
 * nothing here blocks a caller's loop (no fsync, no network wait). Calls may
 * come from any worker thread; each callback runs on the event_base passed to
 * the call, exactly once, never from inside the call itself, unless the
 * operation is cancelled first with store_op_cancel(). */
#ifndef GW_STORE_H
#define GW_STORE_H

#include "gw.h"

struct event_base;
struct store;
struct store_op;

#define STORE_KEY_LEN 32 /* SHA-256 */

/* What a conversation key maps to. Strings are NUL-terminated; ids longer
 * than the field are refused by store_conv_put (GW_EINVAL). */
struct conv_entry {
	char chat_id[128];       /* the upstream chatHistoryId (2026: projectId) */
	char workspace_id[128];  /* empty for the 2025 flow */
	char account[64];        /* account id (not its cookie) that owns the chat */
	char model[64];          /* adapter key last used in this chat */
	int64_t created;         /* unix seconds */
	int64_t last_used;       /* unix seconds */
};

struct store_opts {
	int64_t ttl_s;           /* entries unused for this long expire; default 30 days */
	size_t max_entries;      /* oldest-used evicted beyond this; default 100000 (0 = default) */
	long timeout_ms;         /* per operation (redis); default 2000 */
};

/* Opens a store from its URL. On failure returns NULL and writes a reason
 * (no secrets: a redis password is never echoed) into err. */
struct store *store_open(const char *url, const struct store_opts *opts, char *err, size_t errlen);
/* Finishes queued writes (flush), then stops the thread. Accepts NULL. */
void store_close(struct store *s);
/* "memory", "sqlite" or "redis". */
const char *store_kind(const struct store *s);

/* e is NULL on a miss. err != GW_OK means the store could not answer
 * (e.g. redis down: GW_EIO, GW_ETIMEOUT). */
typedef void store_conv_cb(enum gw_err err, const struct conv_entry *e, void *arg);
typedef void store_done_cb(enum gw_err err, void *arg);
/* value is NULL when absent; valid during the callback only. */
typedef void store_kv_cb(enum gw_err err, const char *value, size_t len, void *arg);

enum gw_err store_conv_get(struct store *s, struct event_base *base,
			   const uint8_t key[STORE_KEY_LEN], store_conv_cb *cb, void *arg,
			   struct store_op **op) GW_MUSTCHECK;
/* Also refreshes last_used. cb may be NULL (fire and forget, errors logged). */
enum gw_err store_conv_put(struct store *s, struct event_base *base,
			   const uint8_t key[STORE_KEY_LEN], const struct conv_entry *e,
			   store_done_cb *cb, void *arg, struct store_op **op) GW_MUSTCHECK;

/* Small per-account values (rotated cookie, quota cool-down, model set).
 * name: up to 200 bytes; value up to 64 KiB; ttl_s 0 = no expiry. */
enum gw_err store_kv_get(struct store *s, struct event_base *base, const char *name,
			 store_kv_cb *cb, void *arg, struct store_op **op) GW_MUSTCHECK;
enum gw_err store_kv_put(struct store *s, struct event_base *base, const char *name,
			 const char *value, size_t len, int64_t ttl_s,
			 store_done_cb *cb, void *arg, struct store_op **op) GW_MUSTCHECK;

/* The callback of op will not run. Must be called on the thread of the
 * event_base the op was started with. */
void store_op_cancel(struct store_op *op);

/* Synchronous read for start-up only (before any loop runs), e.g. to load
 * the rotated cookie. Returns a gw_malloc'd value or NULL. */
char *store_kv_get_sync(struct store *s, const char *name, size_t *len);

#endif
