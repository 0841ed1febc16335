/* sqlite.c - the embedded default store backend: one SQLite connection,
 * used only on the store thread (opened before the thread starts).
 *
 * WAL with synchronous=NORMAL: a commit appends to the WAL without fsync, so
 * a write costs tens of microseconds; a power cut may lose the last commits,
 * which only costs a conversation its continuity (a miss), never
 * correctness. Every statement is prepared once at open and kept. TTL and
 * max_entries are enforced by a sweep (at open, then every STORE_SWEEP_S)
 * in bounded steps, so no query walks an unbounded number of rows. */
#include "store/store_internal.h"
#include "util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQ_SCHEMA_VERSION 1
#define SQ_SWEEP_BATCH 1000     /* rows deleted per statement */
#define SQ_SWEEP_STEPS 10       /* statements per sweep call... */
#define SQ_SWEEP_AGAIN_MS 10    /* ...then the rest a moment later */

/* Migrations: MIGRATIONS[v] takes the schema from version v to v + 1. */
static const char *const MIGRATIONS[SQ_SCHEMA_VERSION] = {
	"CREATE TABLE conv("
	" key BLOB PRIMARY KEY,"
	" chat_id TEXT NOT NULL,"
	" workspace_id TEXT NOT NULL,"
	" account TEXT NOT NULL,"
	" model TEXT NOT NULL,"
	" created INTEGER NOT NULL,"
	" last_used INTEGER NOT NULL);"
	"CREATE INDEX conv_last_used ON conv(last_used);"
	"CREATE TABLE kv("
	" name TEXT PRIMARY KEY,"
	" value BLOB NOT NULL,"
	" expires INTEGER NOT NULL);"
	"CREATE INDEX kv_expires ON kv(expires) WHERE expires > 0;",
};

enum sq_stmt {
	SQ_CONV_GET,
	SQ_CONV_PUT,
	SQ_CONV_TOUCH,
	SQ_KV_GET,
	SQ_KV_PUT,
	SQ_CONV_EXPIRE,
	SQ_KV_EXPIRE,
	SQ_CONV_COUNT,
	SQ_CONV_EVICT,
	SQ_NSTMT
};

static const char *const SQL[SQ_NSTMT] = {
	[SQ_CONV_GET] = "SELECT chat_id, workspace_id, account, model, created, last_used "
			"FROM conv WHERE key = ?1 AND last_used > ?2",
	[SQ_CONV_PUT] = "INSERT INTO conv(key, chat_id, workspace_id, account, model, created, "
			"last_used) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(key) DO UPDATE "
			"SET chat_id = excluded.chat_id, workspace_id = excluded.workspace_id, "
			"account = excluded.account, model = excluded.model, "
			"created = excluded.created, last_used = excluded.last_used",
	[SQ_CONV_TOUCH] = "UPDATE conv SET last_used = ?2 WHERE key = ?1",
	[SQ_KV_GET] = "SELECT value FROM kv WHERE name = ?1 AND (expires = 0 OR expires > ?2)",
	[SQ_KV_PUT] = "INSERT OR REPLACE INTO kv(name, value, expires) VALUES(?1, ?2, ?3)",
	[SQ_CONV_EXPIRE] = "DELETE FROM conv WHERE rowid IN (SELECT rowid FROM conv "
			   "WHERE last_used <= ?1 ORDER BY last_used LIMIT ?2)",
	[SQ_KV_EXPIRE] = "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv "
			 "WHERE expires > 0 AND expires <= ?1 LIMIT ?2)",
	/* Counts at most ?1 rows: enough to know how far over the bound. */
	[SQ_CONV_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM conv LIMIT ?1)",
	[SQ_CONV_EVICT] = "DELETE FROM conv WHERE rowid IN (SELECT rowid FROM conv "
			  "ORDER BY last_used LIMIT ?1)",
};

struct sq {
	sqlite3 *db;
	sqlite3_stmt *st[SQ_NSTMT];
	int64_t ttl_s;
	size_t max_entries;
	struct event *again; /* continues a sweep that had more to do */
	int64_t again_now;
};

static void sq_seterr(char *err, size_t errlen, const char *fmt, ...) GW_PRINTF(3, 4);
static void sq_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* mkdir -p of the directory part of path. */
static int make_parents(const char *path)
{
	char dir[STORE_URL_PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(dir))
		return ENAMETOOLONG;
	memcpy(dir, path, n + 1);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(dir, 0700) && errno != EEXIST)
			return errno;
		if (!(*p = c))
			break;
	}
	return 0;
}

/* Creates the file owner-only before SQLite does (its default is 0644): it
 * may hold a rotated cookie. SQLite gives the WAL the same mode. */
static int precreate(const char *path)
{
	int fd;
	while ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 && errno == EINTR)
		;
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int exec_sql(struct sq *q, const char *sql)
{
	return sqlite3_exec(q->db, sql, NULL, NULL, NULL);
}

static int pragma_int(struct sq *q, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static enum gw_err migrate_one(struct sq *q, int64_t v)
{
	char bump[64];
	snprintf(bump, sizeof(bump), "PRAGMA user_version = %lld", (long long)(v + 1));
	if (exec_sql(q, "BEGIN IMMEDIATE") != SQLITE_OK)
		return GW_EIO;
	if (exec_sql(q, MIGRATIONS[v]) != SQLITE_OK || exec_sql(q, bump) != SQLITE_OK ||
	    exec_sql(q, "COMMIT") != SQLITE_OK) {
		log_error(NULL, "sqlite store: migration to schema %lld failed: %s",
			  (long long)(v + 1), sqlite3_errmsg(q->db));
		(void)exec_sql(q, "ROLLBACK");
		return GW_EIO;
	}
	return GW_OK;
}

static enum gw_err migrate(struct sq *q, char *err, size_t errlen)
{
	int64_t v = 0;
	if (pragma_int(q, "PRAGMA user_version", &v) != SQLITE_OK) {
		sq_seterr(err, errlen, "sqlite store: cannot read schema version: %s",
			  sqlite3_errmsg(q->db));
		return GW_EIO;
	}
	if (v < 0 || v > SQ_SCHEMA_VERSION) {
		sq_seterr(err, errlen, "sqlite store: database schema version %lld is newer than "
			  "this build knows (%d)", (long long)v, SQ_SCHEMA_VERSION);
		return GW_ECONFIG;
	}
	for (; v < SQ_SCHEMA_VERSION; v++) {
		if (migrate_one(q, v)) {
			sq_seterr(err, errlen, "sqlite store: schema migration failed (see log)");
			return GW_EIO;
		}
	}
	return GW_OK;
}

static enum gw_err configure(struct sq *q, const struct store_opts *o, char *err, size_t errlen)
{
	char sql[64];
	sqlite3_stmt *st;
	const unsigned char *mode = NULL;
	bool wal = false;
	if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && (mode = sqlite3_column_text(st, 0)))
			wal = !strcmp((const char *)mode, "wal");
		sqlite3_finalize(st);
	}
	if (!wal) {
		sq_seterr(err, errlen, "sqlite store: cannot switch to WAL mode: %s",
			  sqlite3_errmsg(q->db));
		return GW_EIO;
	}
	snprintf(sql, sizeof(sql), "PRAGMA busy_timeout = %ld", o->timeout_ms);
	if (exec_sql(q, "PRAGMA synchronous = NORMAL") != SQLITE_OK ||
	    exec_sql(q, sql) != SQLITE_OK) {
		sq_seterr(err, errlen, "sqlite store: cannot set pragmas: %s",
			  sqlite3_errmsg(q->db));
		return GW_EIO;
	}
	return GW_OK;
}

static enum gw_err prepare_all(struct sq *q, char *err, size_t errlen)
{
	for (int i = 0; i < SQ_NSTMT; i++) {
		if (sqlite3_prepare_v3(q->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
				       NULL) != SQLITE_OK) {
			sq_seterr(err, errlen, "sqlite store: cannot prepare statement %d: %s", i,
				  sqlite3_errmsg(q->db));
			return GW_EIO;
		}
	}
	return GW_OK;
}

static void sq_free(void *be)
{
	struct sq *q = be;
	if (!q)
		return;
	if (q->again)
		event_free(q->again);
	for (int i = 0; i < SQ_NSTMT; i++)
		sqlite3_finalize(q->st[i]);
	if (q->db && sqlite3_close(q->db) != SQLITE_OK)
		log_error(NULL, "sqlite store: close failed: %s", sqlite3_errmsg(q->db));
	gw_free(q);
}

static void on_again(evutil_socket_t fd, short what, void *arg);

static enum gw_err open_db(struct sq *q, const char *path, char *err, size_t errlen)
{
	int e = make_parents(path);
	if (!e)
		e = precreate(path);
	if (e) {
		sq_seterr(err, errlen, "sqlite store: cannot create %s: %s", path, strerror(e));
		return GW_EIO;
	}
	int rc = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sq_seterr(err, errlen, "sqlite store: cannot open %s: %s", path,
			  q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
		return GW_EIO;
	}
	return GW_OK;
}

static enum gw_err sq_open(const struct store_url *u, const struct store_opts *o,
			   struct event_base *base, void **be, char *err, size_t errlen)
{
	struct sq *q = gw_calloc(1, sizeof(*q));
	if (!q) {
		sq_seterr(err, errlen, "sqlite store: out of memory");
		return GW_ENOMEM;
	}
	q->ttl_s = o->ttl_s;
	q->max_entries = o->max_entries;
	enum gw_err e = open_db(q, u->path, err, errlen);
	if (!e)
		e = configure(q, o, err, errlen);
	if (!e)
		e = migrate(q, err, errlen);
	if (!e)
		e = prepare_all(q, err, errlen);
	if (!e && !(q->again = event_new(base, -1, 0, on_again, q))) {
		sq_seterr(err, errlen, "sqlite store: out of memory");
		e = GW_ENOMEM;
	}
	if (e) {
		sq_free(q);
		return e;
	}
	*be = q;
	return GW_OK;
}

/* ---- ops ------------------------------------------------------------- */

static enum gw_err sq_fail(struct sq *q, const char *what, int rc)
{
	log_warn(NULL, "sqlite store: %s failed: %s", what, sqlite3_errmsg(q->db));
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? GW_ETIMEOUT : GW_EIO;
}

/* Copies a text column into a fixed field; false if it does not fit. */
static bool col_copy(sqlite3_stmt *st, int col, char *dst, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	int n = sqlite3_column_bytes(st, col);
	if (!t || n < 0 || (size_t)n >= size)
		return false;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return true;
}

/* A hit is a use: refresh last_used so TTL and eviction follow use, as
 * in the memory backend. A failed refresh only shortens the entry's life. */
static void touch(struct sq *q, struct store_op *op)
{
	sqlite3_stmt *st = q->st[SQ_CONV_TOUCH];
	sqlite3_bind_blob(st, 1, op->key, STORE_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, op->now);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		(void)sq_fail(q, "conversation touch", rc);
	else
		op->res.last_used = op->now;
	sqlite3_reset(st);
}

static void conv_get(struct sq *q, struct store_op *op)
{
	sqlite3_stmt *st = q->st[SQ_CONV_GET];
	sqlite3_bind_blob(st, 1, op->key, STORE_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, op->now - q->ttl_s);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct conv_entry *e = &op->res;
		op->found = col_copy(st, 0, e->chat_id, sizeof(e->chat_id)) &&
			    col_copy(st, 1, e->workspace_id, sizeof(e->workspace_id)) &&
			    col_copy(st, 2, e->account, sizeof(e->account)) &&
			    col_copy(st, 3, e->model, sizeof(e->model));
		e->created = sqlite3_column_int64(st, 4);
		e->last_used = sqlite3_column_int64(st, 5);
		if (!op->found)
			log_warn(NULL, "sqlite store: oversized conversation row ignored");
	} else if (rc != SQLITE_DONE) {
		op->err = sq_fail(q, "conversation read", rc);
	}
	sqlite3_reset(st);
	if (op->found)
		touch(q, op);
}

static void conv_put(struct sq *q, struct store_op *op)
{
	sqlite3_stmt *st = q->st[SQ_CONV_PUT];
	const struct conv_entry *e = &op->entry;
	sqlite3_bind_blob(st, 1, op->key, STORE_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->chat_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->workspace_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, e->account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, e->model, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, e->created ? e->created : op->now);
	sqlite3_bind_int64(st, 7, op->now);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		op->err = sq_fail(q, "conversation write", rc);
	sqlite3_reset(st);
}

static void kv_get(struct sq *q, struct store_op *op)
{
	sqlite3_stmt *st = q->st[SQ_KV_GET];
	sqlite3_bind_text(st, 1, op->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, op->now);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const void *v = sqlite3_column_blob(st, 0);
		int n = sqlite3_column_bytes(st, 0);
		if (n >= 0 && (size_t)n <= STORE_VALUE_MAX)
			store__op_set_value(op, v ? v : "", (size_t)n);
		else
			log_warn(NULL, "sqlite store: oversized kv value ignored");
	} else if (rc != SQLITE_DONE) {
		op->err = sq_fail(q, "kv read", rc);
	}
	sqlite3_reset(st);
}

static void kv_put(struct sq *q, struct store_op *op)
{
	sqlite3_stmt *st = q->st[SQ_KV_PUT];
	sqlite3_bind_text(st, 1, op->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, op->value, (int)op->vlen, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, op->ttl_s ? op->now + op->ttl_s : 0);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		op->err = sq_fail(q, "kv write", rc);
	sqlite3_reset(st);
	/* The value (maybe a cookie) was bound SQLITE_STATIC: unbind it so the
	 * statement keeps no pointer to memory about to be freed. */
	sqlite3_clear_bindings(st);
}

static void sq_exec(void *be, struct store_op *op)
{
	struct sq *q = be;
	op->err = GW_OK;
	switch (op->kind) {
	case STORE_OP_CONV_GET: conv_get(q, op); break;
	case STORE_OP_CONV_PUT: conv_put(q, op); break;
	case STORE_OP_KV_GET: kv_get(q, op); break;
	case STORE_OP_KV_PUT: kv_put(q, op); break;
	case STORE_OP_SWEEP: break;
	}
	store__op_done(op);
}

/* ---- sweep ----------------------------------------------------------- */

/* Runs one bounded DELETE; returns the rows deleted, -1 on error. */
static int delete_step(struct sq *q, enum sq_stmt which, int64_t a, int64_t b, bool two)
{
	sqlite3_stmt *st = q->st[which];
	sqlite3_bind_int64(st, 1, a);
	if (two)
		sqlite3_bind_int64(st, 2, b);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		(void)sq_fail(q, "sweep", rc);
		return -1;
	}
	return sqlite3_changes(q->db);
}

/* How many conversations are over max_entries (at most one batch). */
static int64_t over_bound(struct sq *q)
{
	sqlite3_stmt *st = q->st[SQ_CONV_COUNT];
	int64_t n = 0;
	sqlite3_bind_int64(st, 1, (int64_t)q->max_entries + SQ_SWEEP_BATCH);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else
		(void)sq_fail(q, "sweep count", rc);
	sqlite3_reset(st);
	return n > (int64_t)q->max_entries ? n - (int64_t)q->max_entries : 0;
}

/* One round of bounded steps; true if there is more to do. */
static bool sweep_round(struct sq *q, int64_t now)
{
	int a = delete_step(q, SQ_CONV_EXPIRE, now - q->ttl_s, SQ_SWEEP_BATCH, true);
	int b = delete_step(q, SQ_KV_EXPIRE, now, SQ_SWEEP_BATCH, true);
	int64_t over = over_bound(q);
	int c = over ? delete_step(q, SQ_CONV_EVICT, over, 0, false) : 0;
	if (a < 0 || b < 0 || c < 0)
		return false; /* logged; the next periodic sweep retries */
	return a == SQ_SWEEP_BATCH || b == SQ_SWEEP_BATCH || over >= SQ_SWEEP_BATCH;
}

/* Goes on by itself (`again`), on the store thread: nothing else waits. */
static bool sq_sweep(void *be, int64_t now)
{
	struct sq *q = be;
	bool more = false;
	for (int i = 0; i < SQ_SWEEP_STEPS && (more = sweep_round(q, now)); i++)
		;
	if (more) {
		struct timeval tv = { 0, SQ_SWEEP_AGAIN_MS * 1000 };
		q->again_now = now;
		if (evtimer_add(q->again, &tv))
			log_warn(NULL, "sqlite store: cannot schedule the rest of a sweep");
	}
	return false;
}

static void on_again(evutil_socket_t fd, short what, void *arg)
{
	struct sq *q = arg;
	GW_UNUSED(fd);
	GW_UNUSED(what);
	(void)sq_sweep(q, q->again_now);
}

const struct store_backend store__sqlite = {
	.kind = "sqlite",
	.open = sq_open,
	.exec = sq_exec,
	.sweep = sq_sweep,
	.free = sq_free,
};
