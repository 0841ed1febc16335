/* test_store_sqlite.c - the shared store behaviour against a real SQLite
 * file under /tmp, plus reopen, schema version, sweep and write latency. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_T_INCLUDED
#define T_VIRTUAL_CLOCK 1
#define T_BOUNDED 1

static char g_dir[PATH_MAX];
static char g_url[PATH_MAX + 32];
static unsigned g_seq;

/* A fresh database for every store the shared tests open, two directory
 * levels down so parent creation is exercised too. */
static const char *t_url(void)
{
	snprintf(g_url, sizeof(g_url), "sqlite://%s/db%u/sub/store.db", g_dir, ++g_seq);
	return g_url;
}

#include "test_store_memory.c"

static void path_of(char *out, size_t n, const char *url)
{
	snprintf(out, n, "%s", url + strlen("sqlite://"));
}

static sqlite3 *peek_db(const char *url)
{
	char path[PATH_MAX + 32];
	sqlite3 *db = NULL;
	path_of(path, sizeof(path), url);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	return db;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void test_reopen_keeps_data(void **state)
{
	(void)state;
	char url[sizeof(g_url)];
	snprintf(url, sizeof(url), "%s", t_url());
	struct store_opts o = { .ttl_s = 3600, .max_entries = 1000 };
	char err[256];
	struct store *s = store_open(url, &o, err, sizeof(err));
	assert_non_null(s);
	assert_string_equal(store_kind(s), "sqlite");
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 1, 50);
	assert_int_equal(put_conv(s, b, k, "persist"), GW_OK);
	assert_int_equal(put_kv(s, b, "acct/cookie", "c00kie", 6, 0), GW_OK);
	/* Queued fire-and-forget writes are flushed by close. */
	for (unsigned i = 0; i < 200; i++) {
		uint8_t k2[32];
		struct conv_entry e;
		mkkey(k2, i, 51);
		mkentry(&e, "bulk");
		assert_int_equal(store_conv_put(s, NULL, k2, &e, NULL, NULL, NULL), GW_OK);
	}
	store_close(s);
	s = store_open(url, &o, err, sizeof(err));
	assert_non_null(s);
	expect_conv(s, b, k, "persist");
	for (unsigned i = 0; i < 200; i += 37) {
		uint8_t k2[32];
		mkkey(k2, i, 51);
		expect_conv(s, b, k2, "bulk");
	}
	size_t len = 0;
	char *v = store_kv_get_sync(s, "acct/cookie", &len);
	assert_non_null(v);
	assert_int_equal(len, 6);
	assert_memory_equal(v, "c00kie", 6);
	gw_free(v);
	store_close(s);
	event_base_free(b);
}

static void test_schema_version(void **state)
{
	(void)state;
	char url[sizeof(g_url)], err[256] = "";
	snprintf(url, sizeof(url), "%s", t_url());
	struct store *s = store_open(url, NULL, err, sizeof(err));
	assert_non_null(s);
	store_close(s);
	sqlite3 *db = peek_db(url);
	assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
	assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
				       "('conv', 'kv', 'conv_last_used')"), 3);
	char mode[16] = "";
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	assert_string_equal(mode, "wal");
	/* A database from a newer build is refused, not misread. */
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_open(url, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "newer"));
	/* Owner-only file: it may hold a rotated cookie. */
	char path[PATH_MAX + 32];
	struct stat stt;
	path_of(path, sizeof(path), url);
	assert_int_equal(stat(path, &stt), 0);
	assert_int_equal(stt.st_mode & 0777, 0600);
}

static void test_sweep_deletes_rows(void **state)
{
	(void)state;
	char url[sizeof(g_url)], err[256];
	snprintf(url, sizeof(url), "%s", t_url());
	struct store_opts o = { .ttl_s = 100, .max_entries = 10 };
	struct store *s = store_open(url, &o, err, sizeof(err));
	assert_non_null(s);
	struct event_base *b = t_base();
	for (unsigned i = 0; i < 30; i++) {
		uint8_t k[32];
		mkkey(k, i, 60);
		assert_int_equal(put_conv(s, b, k, "x"), GW_OK);
	}
	assert_int_equal(put_kv(s, b, "old", "1", 1, 10), GW_OK);
	assert_int_equal(put_kv(s, b, "keep", "1", 1, 0), GW_OK);
	sqlite3 *db = peek_db(url);
	assert_int_equal(query_int(db, "SELECT count(*) FROM conv"), 30);
	store__sweep(s); /* the bound */
	assert_int_equal(query_int(db, "SELECT count(*) FROM conv"), 10);
	store__time_shift(s, 200);
	store__sweep(s); /* the TTL */
	assert_int_equal(query_int(db, "SELECT count(*) FROM conv"), 0);
	assert_int_equal(query_int(db, "SELECT count(*) FROM kv"), 1);
	sqlite3_close(db);
	store_close(s);
	event_base_free(b);
}

/* Larger than one sweep batch: the rest continues on a timer. */
static void test_sweep_large(void **state)
{
	(void)state;
	char url[sizeof(g_url)], err[256];
	snprintf(url, sizeof(url), "%s", t_url());
	struct store_opts o = { .ttl_s = 100, .max_entries = 100000 };
	struct store *s = store_open(url, &o, err, sizeof(err));
	assert_non_null(s);
	struct event_base *b = t_base();
	for (unsigned i = 0; i < 12000; i++) {
		uint8_t k[32];
		struct conv_entry e;
		mkkey(k, i, 61);
		mkentry(&e, "bulk");
		assert_int_equal(store_conv_put(s, NULL, k, &e, NULL, NULL, NULL), GW_OK);
		if (i % 5000 == 4999)
			store__sweep(s); /* the queue is bounded: let it drain */
	}
	store__sweep(s);
	sqlite3 *db = peek_db(url);
	assert_int_equal(query_int(db, "SELECT count(*) FROM conv"), 12000);
	store__time_shift(s, 500);
	store__sweep(s); /* 10 steps of 1000 now... */
	int64_t left = query_int(db, "SELECT count(*) FROM conv");
	assert_true(left <= 2000);
	/* ...and the rest 10 ms later, on the store thread: poll for it. */
	for (int i = 0; i < 500 && left > 0; i++) {
		usleep(10000);
		left = query_int(db, "SELECT count(*) FROM conv");
	}
	assert_int_equal(left, 0);
	sqlite3_close(db);
	store_close(s);
	event_base_free(b);
}

static void test_relative_path(void **state)
{
	(void)state;
	char cwd[PATH_MAX], err[256];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(g_dir), 0);
	struct store *s = store_open("sqlite://rel/a/b/x.db", NULL, err, sizeof(err));
	assert_int_equal(chdir(cwd), 0);
	assert_non_null(s);
	store_close(s);
	char path[PATH_MAX + 32];
	struct stat st;
	snprintf(path, sizeof(path), "%s/rel/a/b/x.db", g_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_null(store_open("sqlite:///proc/gw-no/such/x.db", NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "sqlite store"));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

#define T_LAT_N 1000

/* The worst write time, seen from a caller: put -> callback on its loop. */
static void test_write_latency(void **state)
{
	(void)state;
	char url[sizeof(g_url)], err[256];
	snprintf(url, sizeof(url), "%s", t_url());
	struct store *s = store_open(url, NULL, err, sizeof(err));
	assert_non_null(s);
	struct event_base *b = t_base();
	static uint64_t lat[T_LAT_N];
	for (unsigned i = 0; i < T_LAT_N; i++) {
		uint8_t k[32];
		mkkey(k, i, 70);
		uint64_t t0 = gw_now_us();
		assert_int_equal(put_conv(s, b, k, "latency"), GW_OK);
		lat[i] = gw_now_us() - t0;
	}
	qsort(lat, T_LAT_N, sizeof(lat[0]), cmp_u64);
	uint64_t t0 = gw_now_us();
	struct res r[T_LAT_N];
	memset(r, 0, sizeof(r));
	for (unsigned i = 0; i < T_LAT_N; i++) {
		uint8_t k[32];
		struct conv_entry e;
		mkkey(k, i, 71);
		mkentry(&e, "burst");
		assert_int_equal(store_conv_put(s, b, k, &e, on_done, &r[i], NULL), GW_OK);
	}
	for (unsigned i = 0; i < T_LAT_N; i++)
		assert_true(wait_calls(b, &r[i].calls, T_WAIT_MS));
	uint64_t burst = gw_now_us() - t0;
	printf("sqlite write latency over %d sequential puts: p50 %llu us, p99 %llu us, "
	       "max %llu us; %d queued puts in %llu us\n", T_LAT_N,
	       (unsigned long long)lat[T_LAT_N / 2], (unsigned long long)lat[T_LAT_N * 99 / 100],
	       (unsigned long long)lat[T_LAT_N - 1], T_LAT_N, (unsigned long long)burst);
	/* A loose bound: a write must never approach an fsync-per-commit
	 * regime or a lock wait. */
	assert_true(lat[T_LAT_N * 99 / 100] < 50000);
	store_close(s);
	event_base_free(b);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof(g_dir), "/tmp/gw-test-store-XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	return nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		T_COMMON_TESTS,
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_max_entries),
		cmocka_unit_test(test_reopen_keeps_data),
		cmocka_unit_test(test_schema_version),
		cmocka_unit_test(test_sweep_deletes_rows),
		cmocka_unit_test(test_sweep_large),
		cmocka_unit_test(test_relative_path),
		cmocka_unit_test(test_write_latency),
	};
	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
