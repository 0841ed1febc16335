/* cleanup.h - optional upstream hygiene: deletes the upstream chats the
 * gateway opened once their conversation mapping expired
 * (UPSTREAM_CLEANUP_INTERVAL seconds between passes; 0, the default, = off).
 *
 * Without it every conversation leaves one chat in the user's cto.new
 * account for ever. The rule (src/core/cleanup_rule.h): only chats with our
 * own ownership record, idle, whose head record is gone and which have not
 * been used for STORE_TTL + API_REQUEST_TIMEOUT. One pass at a time, on one
 * worker, bounded (one page of the list per account, a few deletions). */
#ifndef GW_CORE_CLEANUP_H
#define GW_CORE_CLEANUP_H

#include "gw.h"

struct worker;
struct store;
struct gw_config;
struct cleanup;

/* Runs the clean-up on w's loop; call on that loop's thread (before or
 * while it runs). With the setting off it only re-reads the setting now
 * and then (a reload may turn it on) and never calls the upstream.
 * NULL when out of memory. */
struct cleanup *cleanup_new(struct worker *w);
/* Stops at once: pending upstream calls and store reads are cancelled.
 * Call on w's thread, before the worker's HTTP client and the store are
 * freed. Accepts NULL. */
void cleanup_free(struct cleanup *c);

/* The gateway just opened upstream chat chat_id for account (2026 flow):
 * records the proof that it is ours, if the clean-up is on. Fire and
 * forget; any thread. Chats opened while the setting is off are never
 * recorded, so they are never deleted. */
void cleanup_note_chat(struct store *st, const struct gw_config *cfg, const char *account, const char *chat_id,
		       const char *workspace_id);

#endif
