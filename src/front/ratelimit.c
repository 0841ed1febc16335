/* ratelimit.c - a fixed one-minute window per client key.
 *
 * Keys are few (the operator's list), so a small open-addressed table is
 * enough; when it is full the oldest window is reused, which can only
 * forget counts, never refuse a client wrongly. */
#include "front/ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define RL_SLOTS 256
#define RL_KEY 16

struct rl_slot {
	char key[RL_KEY + 1];
	int64_t window;  /* minute number */
	long count;
};

static struct rl_slot slots[RL_SLOTS];
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const char *key)
{
	size_t h = 5381;
	for (const char *p = key; *p; p++)
		h = h * 33 + (unsigned char)*p;
	return h % RL_SLOTS;
}

bool ratelimit_take(const char *tenant, long rpm, int64_t now_s, int *retry_after)
{
	if (rpm <= 0)
		return true;
	char key[RL_KEY + 1];
	snprintf(key, sizeof(key), "%s", *tenant ? tenant : "-");
	int64_t window = now_s / 60;
	pthread_mutex_lock(&rl_lock);
	size_t i = slot_of(key), oldest = i;
	struct rl_slot *s = NULL;
	for (size_t n = 0; n < RL_SLOTS; n++, i = (i + 1) % RL_SLOTS) {
		if (strcmp(slots[i].key, key) == 0 || !slots[i].key[0]) {
			s = &slots[i];
			break;
		}
		if (slots[i].window < slots[oldest].window)
			oldest = i;
	}
	if (!s) {
		s = &slots[oldest];
		s->key[0] = '\0';
	}
	if (strcmp(s->key, key) != 0 || s->window != window) {
		memcpy(s->key, key, sizeof(key));
		s->window = window;
		s->count = 0;
	}
	bool ok = s->count < rpm;
	if (ok)
		s->count++;
	pthread_mutex_unlock(&rl_lock);
	if (!ok)
		*retry_after = (int)(60 - now_s % 60);
	return ok;
}
