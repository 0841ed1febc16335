/* memory.c - the in-process store backend (tests, single short-lived runs).
 *
 * Two chained hash tables (conversations, kv), each with an LRU list: the
 * list head is the most recently used item, the tail the next one evicted
 * beyond max_entries. Every op finishes at once, so ops run inline on the
 * callers' threads; store.c serialises them and the sweep, so no locking
 * here. */
#include "store/store_internal.h"

#include <stdio.h>
#include <string.h>

struct mem_link {
	struct mem_link *prev, *next;
};

/* Kept small: a store holds one conversation and one kv item per upstream
 * chat, up to max_entries of each. A conversation's strings are packed into
 * val ("chat\0workspace\0account\0model\0"), not kept in a conv_entry's
 * fixed fields (400 bytes). */
struct mem_item {
	struct mem_link lru;    /* LRU list, head = newest */
	struct mem_item *hnext; /* hash chain */
	uint64_t hash;
	int64_t used;  /* last get or put: a conversation's last_used and TTL */
	int64_t stamp; /* kv: expiry, 0 = never; conversation: created */
	char *val;     /* kv: the value (+NUL); conversation: packed strings */
	uint32_t vlen;
	uint32_t klen;
	uint8_t key[]; /* klen bytes */
};

struct mem_table {
	struct mem_item **slots;
	size_t nslots; /* power of two */
	size_t count;
	size_t max;
	struct mem_link lru; /* sentinel */
	struct mem_link *cursor; /* the sweep's next item, NULL between sweeps */
};

#define ITEM_OF(l) ((struct mem_item *)(void *)((char *)(l) - offsetof(struct mem_item, lru)))

struct mem {
	struct mem_table conv, kv;
	int64_t ttl_s;
};

#define MEM_INITIAL_SLOTS 64

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static bool tbl_init(struct mem_table *t, size_t max)
{
	t->slots = gw_calloc(MEM_INITIAL_SLOTS, sizeof(*t->slots));
	t->nslots = MEM_INITIAL_SLOTS;
	t->count = 0;
	t->max = max;
	t->lru.prev = t->lru.next = &t->lru;
	return t->slots != NULL;
}

static void item_free(struct mem_item *it)
{
	if (it->val)
		explicit_bzero(it->val, it->vlen); /* may be a secret */
	gw_free(it->val);
	gw_free(it);
}

static void lru_unlink(struct mem_item *it)
{
	it->lru.prev->next = it->lru.next;
	it->lru.next->prev = it->lru.prev;
}

static void lru_push_front(struct mem_table *t, struct mem_item *it)
{
	it->lru.next = t->lru.next;
	it->lru.prev = &t->lru;
	t->lru.next->prev = &it->lru;
	t->lru.next = &it->lru;
}

/* it leaves its place in the LRU list: a sweep paused there goes on from
 * the next item. */
static void cursor_skip(struct mem_table *t, const struct mem_item *it)
{
	if (t->cursor == &it->lru)
		t->cursor = it->lru.next;
}

static void tbl_touch(struct mem_table *t, struct mem_item *it, int64_t now)
{
	cursor_skip(t, it);
	it->used = now;
	lru_unlink(it);
	lru_push_front(t, it);
}

static struct mem_item *tbl_find(struct mem_table *t, const void *key, size_t klen)
{
	uint64_t h = fnv1a(key, klen);
	for (struct mem_item *it = t->slots[h & (t->nslots - 1)]; it; it = it->hnext)
		if (it->hash == h && it->klen == klen && !memcmp(it->key, key, klen))
			return it;
	return NULL;
}

static void tbl_remove(struct mem_table *t, struct mem_item *it)
{
	struct mem_item **pp = &t->slots[it->hash & (t->nslots - 1)];
	while (*pp != it)
		pp = &(*pp)->hnext;
	*pp = it->hnext;
	cursor_skip(t, it);
	lru_unlink(it);
	t->count--;
	item_free(it);
}

/* Doubles the slot array; on failure keeps the old one (longer chains, still
 * correct). */
static void tbl_grow(struct mem_table *t)
{
	size_t n = t->nslots * 2;
	struct mem_item **slots = gw_calloc(n, sizeof(*slots));
	if (!slots)
		return;
	for (size_t i = 0; i < t->nslots; i++) {
		struct mem_item *it = t->slots[i];
		while (it) {
			struct mem_item *next = it->hnext;
			it->hnext = slots[it->hash & (n - 1)];
			slots[it->hash & (n - 1)] = it;
			it = next;
		}
	}
	gw_free(t->slots);
	t->slots = slots;
	t->nslots = n;
}

static struct mem_item *tbl_add(struct mem_table *t, const void *key, size_t klen)
{
	struct mem_item *it = gw_calloc(1, sizeof(*it) + klen);
	if (!it)
		return NULL;
	memcpy(it->key, key, klen);
	it->klen = (uint32_t)klen;
	it->hash = fnv1a(key, klen);
	if (t->count >= t->nslots && t->nslots < (SIZE_MAX / 2) / sizeof(*t->slots))
		tbl_grow(t);
	struct mem_item **slot = &t->slots[it->hash & (t->nslots - 1)];
	it->hnext = *slot;
	*slot = it;
	lru_push_front(t, it);
	t->count++;
	while (t->count > t->max)
		tbl_remove(t, ITEM_OF(t->lru.prev));
	return it;
}

static void tbl_free(struct mem_table *t)
{
	while (t->lru.next != &t->lru && t->slots)
		tbl_remove(t, ITEM_OF(t->lru.next));
	gw_free(t->slots);
	t->slots = NULL;
}

static bool conv_expired(const struct mem *m, const struct mem_item *it, int64_t now)
{
	return now - it->used >= m->ttl_s;
}

static bool kv_expired(const struct mem_item *it, int64_t now)
{
	return it->stamp != 0 && now >= it->stamp;
}

static const struct {
	size_t off, size;
} conv_fields[] = {
	{ offsetof(struct conv_entry, chat_id), sizeof(((struct conv_entry *)0)->chat_id) },
	{ offsetof(struct conv_entry, workspace_id), sizeof(((struct conv_entry *)0)->workspace_id) },
	{ offsetof(struct conv_entry, account), sizeof(((struct conv_entry *)0)->account) },
	{ offsetof(struct conv_entry, model), sizeof(((struct conv_entry *)0)->model) },
};

/* The fields are NUL-terminated inside their arrays (store_conv_put checks). */
static char *conv_pack(const struct conv_entry *e, uint32_t *len)
{
	size_t n = 0, l[GW_ARRAY_LEN(conv_fields)];
	for (size_t i = 0; i < GW_ARRAY_LEN(conv_fields); i++)
		n += (l[i] = strnlen((const char *)e + conv_fields[i].off, conv_fields[i].size - 1)) + 1;
	char *p = gw_malloc(n), *q = p;
	if (!p)
		return NULL;
	for (size_t i = 0; i < GW_ARRAY_LEN(conv_fields); i++) {
		memcpy(q, (const char *)e + conv_fields[i].off, l[i]);
		q[l[i]] = '\0';
		q += l[i] + 1;
	}
	*len = (uint32_t)n;
	return p;
}

static void conv_unpack(const struct mem_item *it, struct conv_entry *e)
{
	const char *q = it->val;
	memset(e, 0, sizeof(*e));
	for (size_t i = 0; i < GW_ARRAY_LEN(conv_fields); i++) {
		size_t l = strlen(q);
		memcpy((char *)e + conv_fields[i].off, q, l + 1);
		q += l + 1;
	}
	e->created = it->stamp;
	e->last_used = it->used;
}

static void conv_get(struct mem *m, struct store_op *op)
{
	struct mem_item *it = tbl_find(&m->conv, op->key, STORE_KEY_LEN);
	if (it && conv_expired(m, it, op->now)) {
		tbl_remove(&m->conv, it);
		it = NULL;
	}
	if (it) {
		tbl_touch(&m->conv, it, op->now);
		conv_unpack(it, &op->res);
		op->found = true;
	}
}

static void conv_put(struct mem *m, struct store_op *op)
{
	uint32_t vlen;
	char *val = conv_pack(&op->entry, &vlen);
	if (!val) {
		op->err = GW_ENOMEM;
		return;
	}
	struct mem_item *it = tbl_find(&m->conv, op->key, STORE_KEY_LEN);
	if (!it && !(it = tbl_add(&m->conv, op->key, STORE_KEY_LEN))) {
		gw_free(val);
		op->err = GW_ENOMEM;
		return;
	}
	gw_free(it->val);
	it->val = val;
	it->vlen = vlen;
	it->stamp = op->entry.created ? op->entry.created : op->now;
	tbl_touch(&m->conv, it, op->now);
}

static void kv_get(struct mem *m, struct store_op *op)
{
	size_t n = strlen(op->name);
	struct mem_item *it = tbl_find(&m->kv, op->name, n);
	if (it && kv_expired(it, op->now)) {
		tbl_remove(&m->kv, it);
		it = NULL;
	}
	if (it) {
		tbl_touch(&m->kv, it, op->now);
		store__op_set_value(op, it->val, it->vlen);
	}
}

static void kv_put(struct mem *m, struct store_op *op)
{
	size_t n = strlen(op->name);
	char *val = gw_malloc(op->vlen + 1);
	if (!val) {
		op->err = GW_ENOMEM;
		return;
	}
	memcpy(val, op->value, op->vlen + 1);
	struct mem_item *it = tbl_find(&m->kv, op->name, n);
	if (!it && !(it = tbl_add(&m->kv, op->name, n))) {
		gw_free(val);
		op->err = GW_ENOMEM;
		return;
	}
	if (it->val)
		explicit_bzero(it->val, it->vlen);
	gw_free(it->val);
	it->val = val;
	it->vlen = (uint32_t)op->vlen;
	it->stamp = op->ttl_s ? op->now + op->ttl_s : 0;
	tbl_touch(&m->kv, it, op->now);
}

static void mem_exec(void *be, struct store_op *op)
{
	struct mem *m = be;
	op->err = GW_OK;
	switch (op->kind) {
	case STORE_OP_CONV_GET: conv_get(m, op); break;
	case STORE_OP_CONV_PUT: conv_put(m, op); break;
	case STORE_OP_KV_GET: kv_get(m, op); break;
	case STORE_OP_KV_PUT: kv_put(m, op); break;
	case STORE_OP_SWEEP: break;
	}
	store__op_done(op);
}

/* Ops of every worker wait while a sweep call runs (store.c's exec_mu),
 * so one call looks at this many items at most. */
#define MEM_SWEEP_STEP 1024

static bool mem_sweep(void *be, int64_t now)
{
	struct mem *m = be;
	int left = MEM_SWEEP_STEP;
	/* The LRU tail is the least recently used, so expired conversations
	 * sit together at the tail. */
	for (; left && m->conv.lru.prev != &m->conv.lru && conv_expired(m, ITEM_OF(m->conv.lru.prev), now); left--)
		tbl_remove(&m->conv, ITEM_OF(m->conv.lru.prev));
	/* kv expiries are per item, and there are records per chat: walk them
	 * all, a step per call; the cursor survives the ops in between. */
	struct mem_table *t = &m->kv;
	if (left && !t->cursor)
		t->cursor = t->lru.next;
	for (; left && t->cursor && t->cursor != &t->lru; left--) {
		struct mem_item *it = ITEM_OF(t->cursor);
		t->cursor = t->cursor->next;
		if (kv_expired(it, now))
			tbl_remove(t, it);
	}
	if (!left)
		return true;
	t->cursor = NULL;
	return false;
}

static void mem_free(void *be)
{
	struct mem *m = be;
	if (!m)
		return;
	tbl_free(&m->conv);
	tbl_free(&m->kv);
	gw_free(m);
}

static enum gw_err mem_open(const struct store_url *u, const struct store_opts *o,
			    struct event_base *base, void **be, char *err, size_t errlen)
{
	GW_UNUSED(u);
	GW_UNUSED(base);
	struct mem *m = gw_calloc(1, sizeof(*m));
	if (!m || !tbl_init(&m->conv, o->max_entries) || !tbl_init(&m->kv, o->max_entries)) {
		if (m) {
			gw_free(m->conv.slots);
			gw_free(m->kv.slots);
		}
		gw_free(m);
		if (err && errlen)
			snprintf(err, errlen, "memory store: out of memory");
		return GW_ENOMEM;
	}
	m->ttl_s = o->ttl_s;
	*be = m;
	return GW_OK;
}

const struct store_backend store__memory = {
	.kind = "memory",
	.open = mem_open,
	.exec = mem_exec,
	.sweep = mem_sweep,
	.inline_exec = true,
	.free = mem_free,
};
