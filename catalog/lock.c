/* lock.c: see lock.h. */
#include "lock.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define LOCK_MAX_BYTES 4096

struct store_lock {
	struct cb_backend *b;
	struct lock_info info;
	pthread_t refresher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, thread_started;
};

static int lock_write(struct cb_backend *b, const struct lock_info *li)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:b, s:I}", "host", li->host, "command", li->command,
			      "pid", (json_int_t)li->pid, "exclusive", li->exclusive, "time_ns",
			      (json_int_t)li->time_ns);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return -ENOMEM;
	int r = cb_backend_put(b, li->key, s, strlen(s), 0);
	free(s);
	return r;
}

int lock_info_parse(const char *buf, size_t len, struct lock_info *li)
{
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	const char *host = NULL, *command = NULL;
	json_int_t pid = 0, t = 0;
	int excl = 0;
	int r = !o || json_unpack(o, "{s:s, s:s, s:I, s:b, s:I}", "host", &host, "command", &command,
				   "pid", &pid, "exclusive", &excl, "time_ns", &t)
			? -EBADMSG
			: 0;
	if (r == 0 && (strlen(host) >= sizeof(li->host) || strlen(command) >= sizeof(li->command) ||
		       pid < 0))
		r = -EBADMSG;
	if (r == 0) {
		snprintf(li->host, sizeof(li->host), "%s", host);
		snprintf(li->command, sizeof(li->command), "%s", command);
		li->pid = pid;
		li->time_ns = t;
		li->exclusive = excl;
	}
	json_decref(o);
	return r;
}

static void this_host(char *out, size_t n)
{
	if (gethostname(out, n) < 0)
		snprintf(out, n, "unknown");
	out[n - 1] = '\0';
}

bool lock_is_stale(const struct lock_info *li, int64_t now_ns)
{
	if (li->time_ns == 0 || now_ns - li->time_ns > LOCK_STALE_SECONDS * NS_PER_S)
		return true;
	char host[256];
	this_host(host, sizeof(host));
	return strcmp(li->host, host) == 0 && li->pid > 0 && li->pid <= INT32_MAX &&
	       kill((pid_t)li->pid, 0) < 0 && errno == ESRCH;
}

struct list_ctx {
	struct cb_backend *b;
	int (*cb)(void *ctx, const struct lock_info *li);
	void *ctx;
};

static int list_one(void *ctx, const char *key, uint64_t size)
{
	struct list_ctx *lc = ctx;
	struct lock_info li = {0};
	char *data = NULL;
	size_t len;
	(void)size;
	if (strlen(key) >= sizeof(li.key))
		return 0; /* not one of ours */
	int r = cb_backend_get(lc->b, key, LOCK_MAX_BYTES, &data, &len);
	if (r == -ENOENT)
		return 0; /* released meanwhile */
	if (r < 0 && r != -EFBIG)
		return r;
	if (r < 0 || lock_info_parse(data, len, &li) < 0)
		li = (struct lock_info){0}; /* unreadable: stale */
	free(data);
	snprintf(li.key, sizeof(li.key), "%s", key);
	return lc->cb(lc->ctx, &li);
}

int store_lock_list(struct cb_backend *b, int (*cb)(void *ctx, const struct lock_info *li),
		    void *ctx)
{
	struct list_ctx lc = {b, cb, ctx};
	return cb_backend_list(b, "locks/", list_one, &lc);
}

struct conflict_ctx {
	const struct lock_info *mine;
	struct lock_info found;
	bool any;
};

static int find_conflict(void *ctx, const struct lock_info *li)
{
	struct conflict_ctx *c = ctx;
	if (!strcmp(li->key, c->mine->key) || lock_is_stale(li, now_ns()))
		return 0;
	if (c->mine->exclusive || li->exclusive) {
		c->found = *li;
		c->any = true;
		return 1;
	}
	return 0;
}

static void *refresh_loop(void *arg)
{
	struct store_lock *l = arg;
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += LOCK_REFRESH_SECONDS;
		pthread_cond_timedwait(&l->cv, &l->mu, &until);
		if (l->stop)
			break;
		l->info.time_ns = now_ns();
		lock_write(l->b, &l->info); /* a failed refresh is retried next time */
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static int new_lock(struct cb_backend *b, bool exclusive, const char *command,
		    struct store_lock **out)
{
	struct store_lock *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	unsigned char rnd[16];
	char hex[33];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		free(l);
		return -EIO;
	}
	hex_encode(rnd, sizeof(rnd), hex);
	l->b = b;
	snprintf(l->info.key, sizeof(l->info.key), "locks/%s.json", hex);
	this_host(l->info.host, sizeof(l->info.host));
	snprintf(l->info.command, sizeof(l->info.command), "%s", command);
	l->info.pid = getpid();
	l->info.exclusive = exclusive;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	*out = l;
	return 0;
}

/* One attempt: write ours, look for a conflict, withdraw ours if there is one. */
static int try_take(struct store_lock *l, struct lock_info *holder)
{
	l->info.time_ns = now_ns();
	int r = lock_write(l->b, &l->info);
	if (r < 0)
		return r;
	struct conflict_ctx c = {.mine = &l->info};
	r = store_lock_list(l->b, find_conflict, &c);
	if (r < 0 || c.any) {
		cb_backend_delete(l->b, l->info.key);
		if (c.any && holder)
			*holder = c.found;
		return r < 0 ? r : -EBUSY;
	}
	return 0;
}

int store_lock_take(struct cb_backend *b, bool exclusive, const char *command, int wait_seconds,
		    void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
		    struct store_lock **out, struct lock_info *holder)
{
	*out = NULL;
	if (cb_backend_readonly(b))
		return -EROFS;
	struct store_lock *l;
	int r = new_lock(b, exclusive, command, &l);
	if (r < 0)
		return r;
	struct lock_info h;
	double deadline = mono_seconds() + wait_seconds;
	bool told = false;
	while ((r = try_take(l, &h)) == -EBUSY && mono_seconds() < deadline) {
		if (!told && waiting)
			waiting(ctx, &h);
		told = true;
		usleep(500000 + (useconds_t)random_below(1000000)); /* jitter: racing takers part */
	}
	if (r == 0 && pthread_create(&l->refresher, NULL, refresh_loop, l) == 0)
		l->thread_started = true;
	else if (r == 0)
		r = -EAGAIN;
	if (r < 0) {
		if (r == -EBUSY && holder)
			*holder = h;
		if (r == -EAGAIN)
			cb_backend_delete(b, l->info.key);
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		free(l);
		return r;
	}
	*out = l;
	return 0;
}

void store_lock_release(struct store_lock *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->thread_started)
		pthread_join(l->refresher, NULL);
	cb_backend_delete(l->b, l->info.key);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
}

struct unlock_ctx {
	struct cb_backend *b;
	bool all;
	unsigned removed;
	int64_t now;
};

static int unlock_one(void *ctx, const struct lock_info *li)
{
	struct unlock_ctx *u = ctx;
	if ((u->all || lock_is_stale(li, u->now)) && cb_backend_delete(u->b, li->key) == 0)
		u->removed++;
	return 0;
}

int store_unlock(struct cb_backend *b, bool all, unsigned *removed)
{
	struct unlock_ctx u = {b, all, 0, now_ns()};
	int r = store_lock_list(b, unlock_one, &u);
	*removed = u.removed;
	return r;
}
