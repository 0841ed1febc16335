/* test_store_redis.c - the shared store behaviour against a real
 * redis-server (a child process on a free loopback port, with a password
 * and db 3), then the failure model: redis killed, stopped and restarted
 * mid-test. There is no skip: without redis-server this test fails. */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define STORE_T_INCLUDED
#define T_VIRTUAL_CLOCK 0 /* TTLs run on the server's clock */
#define T_BOUNDED 0       /* max_entries is not enforced on redis */

#define REDIS_BIN "/usr/bin/redis-server"
#define REDIS_PW "s3cret pw"
#define REDIS_PW_URL "s3cret%20pw"
#define REDIS_DB 3

static int g_port;
static pid_t g_pid = -1;
static char g_url[128];

static const char *t_url(void)
{
	snprintf(g_url, sizeof(g_url), "redis://:%s@127.0.0.1:%d/%d", REDIS_PW_URL, g_port,
		 REDIS_DB);
	return g_url;
}

#include "test_store_memory.c"

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* A blocking client on db REDIS_DB, NULL if the server does not answer. */
static redisContext *sync_client(void)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	redisReply *r = redisCommand(c, "AUTH %s", REDIS_PW);
	bool ok = r && r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	r = ok ? redisCommand(c, "SELECT %d", REDIS_DB) : NULL;
	ok = r && r->type == REDIS_REPLY_STATUS;
	freeReplyObject(r);
	if (!ok) {
		redisFree(c);
		return NULL;
	}
	return c;
}

static bool answers_ping(void)
{
	redisContext *c = sync_client();
	if (!c)
		return false;
	redisReply *r = redisCommand(c, "PING");
	bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
	freeReplyObject(r);
	redisFree(c);
	return ok;
}

static bool redis_start(void)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", g_port);
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
		execl(REDIS_BIN, "redis-server", "--save", "", "--appendonly", "no", "--port", port,
		      "--bind", "127.0.0.1", "--requirepass", REDIS_PW, "--dir", "/tmp",
		      (char *)NULL);
		_exit(127);
	}
	g_pid = pid;
	/* Wait for the condition (PING answered), bounded. */
	for (int i = 0; i < 500; i++) {
		if (answers_ping())
			return true;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			g_pid = -1;
			return false;
		}
		usleep(10000);
	}
	return false;
}

static void redis_signal(int sig)
{
	assert_true(g_pid > 0);
	assert_int_equal(kill(g_pid, sig), 0);
	if (sig == SIGKILL) {
		int st;
		assert_int_equal(waitpid(g_pid, &st, 0), g_pid);
		g_pid = -1;
	}
}

static int setup_redis(void **state)
{
	(void)state;
	if (access(REDIS_BIN, X_OK)) {
		fprintf(stderr, "%s not found: install redis-server (make test does)\n", REDIS_BIN);
		return -1;
	}
	for (int tries = 0; tries < 5; tries++) {
		g_port = free_port();
		if (g_port > 0 && redis_start())
			return 0;
		if (g_pid > 0)
			redis_signal(SIGKILL);
	}
	fprintf(stderr, "could not start redis-server\n");
	return -1;
}

static int teardown_redis(void **state)
{
	(void)state;
	if (g_pid > 0) {
		kill(g_pid, SIGCONT);
		kill(g_pid, SIGKILL);
		waitpid(g_pid, NULL, 0);
		g_pid = -1;
	}
	return 0;
}

static redisReply *sync_cmd(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(c, fmt, arg);
	assert_non_null(r);
	return r;
}

static void key_hex(const uint8_t k[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", k[i]);
}

/* The data is where the docs say: db 3, el2a:* keys, TTLs set. */
static void test_redis_layout(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 500, .timeout_ms = 1000 };
	struct store *s = t_open_opts(&o);
	assert_string_equal(store_kind(s), "redis");
	struct event_base *b = t_base();
	uint8_t k[32];
	char hex[65], name[128];
	mkkey(k, 1, 80);
	key_hex(k, hex);
	assert_int_equal(put_conv(s, b, k, "layout"), GW_OK);
	assert_int_equal(put_kv(s, b, "acct-1/cool-down", "42", 2, 100), GW_OK);
	assert_int_equal(put_kv(s, b, "acct-1/cookie", "c", 1, 0), GW_OK);
	redisContext *c = sync_client();
	assert_non_null(c);
	snprintf(name, sizeof(name), "el2a:conv:%s", hex);
	redisReply *r = sync_cmd(c, "TTL %s", name);
	assert_true(r->integer > 400 && r->integer <= 500);
	freeReplyObject(r);
	r = sync_cmd(c, "GET %s", "el2a:kv:acct-1/cool-down");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	assert_string_equal(r->str, "42");
	freeReplyObject(r);
	r = sync_cmd(c, "TTL %s", "el2a:kv:acct-1/cool-down");
	assert_true(r->integer > 0 && r->integer <= 100);
	freeReplyObject(r);
	r = sync_cmd(c, "TTL %s", "el2a:kv:acct-1/cookie");
	assert_int_equal(r->integer, -1);
	freeReplyObject(r);
	/* A value we cannot parse is a miss, not garbage. */
	r = redisCommand(c, "SET %s %s", name, "2 junk");
	freeReplyObject(r);
	expect_conv(s, b, k, NULL);
	r = sync_cmd(c, "SELECT %s", "0");
	freeReplyObject(r);
	r = sync_cmd(c, "EXISTS %s", "el2a:kv:acct-1/cookie");
	assert_int_equal(r->integer, 0);
	freeReplyObject(r);
	redisFree(c);
	store_close(s);
	event_base_free(b);
}

/* Polls the server (not the store: a hit refreshes the TTL) until key is
 * gone; false after limit_ms. */
static bool gone_within(const char *key, long limit_ms)
{
	redisContext *c = sync_client();
	assert_non_null(c);
	bool gone = false;
	uint64_t t0 = gw_now_ms();
	while (!gone && gw_now_ms() - t0 < (uint64_t)limit_ms) {
		redisReply *r = sync_cmd(c, "EXISTS %s", key);
		gone = r->integer == 0;
		freeReplyObject(r);
		if (!gone)
			usleep(50000);
	}
	redisFree(c);
	return gone;
}

static void test_redis_ttl(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 1, .timeout_ms = 1000 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 2, 80);
	assert_int_equal(put_conv(s, b, k, "brief"), GW_OK);
	assert_int_equal(put_kv(s, b, "brief", "v", 1, 1), GW_OK);
	expect_conv(s, b, k, "brief");
	/* Expiry is the server's: wait for it, bounded. */
	char hex[65], name[128];
	key_hex(k, hex);
	snprintf(name, sizeof(name), "el2a:conv:%s", hex);
	assert_true(gone_within(name, 4000));
	assert_true(gone_within("el2a:kv:brief", 4000));
	expect_conv(s, b, k, NULL);
	struct res r;
	assert_int_equal(get_kv(s, b, "brief", &r), GW_OK);
	assert_false(r.found);
	store_close(s);
	event_base_free(b);
}

static void test_redis_wrong_password(void **state)
{
	(void)state;
	char url[128], err[256];
	snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", g_port);
	struct store *s = store_open(url, NULL, err, sizeof(err));
	assert_non_null(s);
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 3, 80);
	assert_int_equal(put_conv(s, b, k, "x"), GW_EIO);
	struct res r;
	assert_int_equal(get_conv(s, b, k, &r), GW_EIO);
	assert_false(r.found);
	store_close(s);
	event_base_free(b);
}

/* Nothing listens: open works (degraded), every op fails fast. */
static void test_redis_down_at_start(void **state)
{
	(void)state;
	char url[64], err[256];
	int port = free_port();
	assert_true(port > 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	struct store_opts o = { .timeout_ms = 3000 };
	struct store *s = store_open(url, &o, err, sizeof(err));
	assert_non_null(s);
	struct event_base *b = t_base();
	uint64_t t0 = gw_now_ms();
	size_t len;
	assert_null(store_kv_get_sync(s, "cookie", &len));
	uint8_t k[32];
	mkkey(k, 4, 80);
	for (int i = 0; i < 10; i++)
		assert_int_equal(put_conv(s, b, k, "x"), GW_EIO);
	assert_true(gw_now_ms() - t0 < 1000); /* well under the op timeout */
	store_close(s);
	event_base_free(b);
}

/* Sends n gets; each must finish with GW_EIO or GW_ETIMEOUT; returns the
 * slowest in ms. */
static uint64_t ops_fail(struct store *s, struct event_base *b, int n, int *timeouts)
{
	uint64_t worst = 0;
	for (int i = 0; i < n; i++) {
		uint8_t k[32];
		struct res r;
		mkkey(k, (unsigned)i, 81);
		uint64_t t0 = gw_now_ms();
		enum gw_err err = get_conv(s, b, k, &r);
		uint64_t dt = gw_now_ms() - t0;
		worst = dt > worst ? dt : worst;
		assert_true(err == GW_EIO || err == GW_ETIMEOUT);
		if (err == GW_ETIMEOUT && timeouts)
			(*timeouts)++;
	}
	return worst;
}

/* Puts until one works; returns ms taken, or -1 after limit_ms. */
static long until_recovered(struct store *s, struct event_base *b, const uint8_t *k,
			    long limit_ms)
{
	uint64_t t0 = gw_now_ms();
	while (gw_now_ms() - t0 < (uint64_t)limit_ms) {
		if (put_conv(s, b, k, "after") == GW_OK)
			return (long)(gw_now_ms() - t0);
		usleep(50000);
	}
	return -1;
}

static void test_redis_killed_and_restarted(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 3600, .timeout_ms = 500 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 5, 80);
	assert_int_equal(put_conv(s, b, k, "before"), GW_OK);
	redis_signal(SIGKILL);
	uint64_t worst = ops_fail(s, b, 20, NULL);
	printf("redis killed: 20 ops failed, slowest %llu ms\n", (unsigned long long)worst);
	assert_true(worst < 1500);
	assert_true(redis_start()); /* same port */
	long ms = until_recovered(s, b, k, 10000);
	printf("redis restarted: store recovered after %ld ms\n", ms);
	assert_true(ms >= 0);
	expect_conv(s, b, k, "after");
	store_close(s);
	event_base_free(b);
}

static void test_redis_stalled(void **state)
{
	(void)state;
	struct store_opts o = { .ttl_s = 3600, .timeout_ms = 300 };
	struct store *s = t_open_opts(&o);
	struct event_base *b = t_base();
	uint8_t k[32];
	mkkey(k, 6, 80);
	assert_int_equal(put_conv(s, b, k, "before"), GW_OK);
	redis_signal(SIGSTOP);
	int timeouts = 0;
	uint64_t worst = ops_fail(s, b, 10, &timeouts);
	printf("redis stopped: 10 ops failed (%d timed out), slowest %llu ms\n", timeouts,
	       (unsigned long long)worst);
	assert_true(timeouts >= 1);
	assert_true(worst < 1300);
	redis_signal(SIGCONT);
	long ms = until_recovered(s, b, k, 10000);
	printf("redis resumed: store recovered after %ld ms\n", ms);
	assert_true(ms >= 0);
	expect_conv(s, b, k, "after");
	/* Closing with redis stopped again must not hang past the timeout. */
	struct conv_entry e;
	mkentry(&e, "late");
	redis_signal(SIGSTOP);
	assert_int_equal(store_conv_put(s, NULL, k, &e, NULL, NULL, NULL), GW_OK);
	uint64_t t0 = gw_now_ms();
	store_close(s);
	assert_true(gw_now_ms() - t0 < 1300);
	redis_signal(SIGCONT);
	event_base_free(b);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		T_COMMON_TESTS,
		cmocka_unit_test(test_redis_layout),
		cmocka_unit_test(test_redis_ttl),
		cmocka_unit_test(test_redis_wrong_password),
		cmocka_unit_test(test_redis_down_at_start),
		cmocka_unit_test(test_redis_killed_and_restarted),
		cmocka_unit_test(test_redis_stalled),
	};
	return cmocka_run_group_tests(tests, setup_redis, teardown_redis);
}
