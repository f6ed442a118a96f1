/* lock.c: see lock.h. */
#include "lock.h"
#include "backend_i.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define LOCK_MAX_BYTES 4096

/* --- periods ----------------------------------------------------------------------------- */

static struct lock_periods default_periods = {LOCK_REFRESH_SECONDS * NS_PER_S,
					      LOCK_STALE_SECONDS * NS_PER_S};
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/* 1: name is set to whole seconds in [1, 86400] (*ns gets them), 0: unset, -1: malformed. */
static int env_seconds(const char *name, int64_t *ns)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || *end || n < 1 || n > 86400)
		return -1;
	*ns = n * NS_PER_S;
	return 1;
}

static void read_env(void)
{
	struct lock_periods p = default_periods;
	int r = env_seconds("CASSBACKUP_LOCK_REFRESH_SECONDS", &p.refresh_ns);
	int s = env_seconds("CASSBACKUP_LOCK_STALE_SECONDS", &p.stale_ns);
	if (r >= 0 && s >= 0 && 2 * p.refresh_ns <= p.stale_ns)
		default_periods = p;
}

const struct lock_periods *lock_periods_default(void)
{
	pthread_once(&env_once, read_env);
	return &default_periods;
}

/* A lease must be renewed within this long of its last write's start, or it lapses: the
 * stale period less the margin, a fifth of it. */
static int64_t lapse_limit(const struct lock_periods *p) { return p->stale_ns - p->stale_ns / 5; }

/* Counts a stopped process and a suspended machine, unlike CLOCK_MONOTONIC. */
static int64_t boot_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* --- the document ------------------------------------------------------------------------ */

/* Writes li's document under its key, put with flags (cb_put_flags). */
static int lock_write_flags(struct cb_backend *b, const struct lock_info *li, int flags)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:b, s:I, s:I}", "host", li->host, "command",
			      li->command, "pid", (json_int_t)li->pid, "exclusive", li->exclusive,
			      "time_ns", (json_int_t)li->time_ns, "renewals", (json_int_t)li->renewals);
	if (o && ((*li->pid_space && json_object_set_new(o, "pid_space", json_string(li->pid_space)) < 0) ||
		  (li->probe && json_object_set_new(o, "probe", json_true()) < 0) ||
		  (li->pending_write && json_object_set_new(o, "pending_write", json_true()) < 0))) {
		json_decref(o);
		o = NULL;
	}
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return -ENOMEM;
	int r = cb_backend_put(b, li->key, s, strlen(s), flags);
	if ((r == -ENOSPC || r == -EDQUOT) && cb_backend_delete(b, RESERVE_KEY) == 0)
		r = cb_backend_put(b, li->key, s, strlen(s), flags); /* the disk is full: RESERVE_KEY */
	free(s);
	return r;
}

static int lock_write(struct cb_backend *b, const struct lock_info *li)
{
	return lock_write_flags(b, li, 0);
}

int lock_info_parse(const char *buf, size_t len, struct lock_info *li)
{
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	const char *host = NULL, *command = NULL, *space = "";
	json_int_t pid = 0, t = 0, renewals = 0;
	int excl = 0, probe = 0, pending = 0;
	int r = !o || json_unpack(o, "{s:s, s:s, s:I, s:b, s:I, s?I, s?b, s?b, s?s}", "host", &host,
				   "command", &command, "pid", &pid, "exclusive", &excl, "time_ns", &t,
				   "renewals", &renewals, "probe", &probe, "pending_write", &pending,
				   "pid_space", &space)
			? -EBADMSG
			: 0;
	if (r == 0 && (strlen(host) >= sizeof(li->host) || strlen(command) >= sizeof(li->command) ||
		       strlen(space) >= sizeof(li->pid_space) || pid < 0 || renewals < 0))
		r = -EBADMSG;
	if (r == 0) {
		snprintf(li->host, sizeof(li->host), "%s", host);
		snprintf(li->pid_space, sizeof(li->pid_space), "%s", space);
		snprintf(li->command, sizeof(li->command), "%s", command);
		li->pid = pid;
		li->time_ns = t;
		li->renewals = (uint64_t)renewals;
		li->exclusive = excl;
		li->probe = probe;
		li->pending_write = pending;
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

/* --- the observer's rule ----------------------------------------------------------------- */

void lock_pid_space(char *out, size_t n)
{
	char boot[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f && fgets(boot, sizeof(boot), f))
		boot[strcspn(boot, "\n")] = '\0';
	if (f)
		fclose(f);
	struct stat st;
	if (!*boot || stat("/proc/self/ns/pid", &st) < 0)
		*out = '\0';
	else
		snprintf(out, n, "%s/%llx:%llx", boot, (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
}

/* A holder whose process is gone, as only an observer in its pid space can tell: the same
 * host name is not enough (a container sharing the host's name with a pid namespace of its
 * own, another machine of the same name), so a lock without a pid space (an older
 * version's) is judged by the store's clock alone. */
static bool dead_here(const struct lock_info *li)
{
	char host[256], space[sizeof(li->pid_space)];
	this_host(host, sizeof(host));
	lock_pid_space(space, sizeof(space));
	return strcmp(li->host, host) == 0 && *space && strcmp(li->pid_space, space) == 0 &&
	       li->pid > 0 && li->pid <= INT32_MAX && kill((pid_t)li->pid, 0) < 0 && errno == ESRCH;
}

bool lock_judge(struct lock_info *li, int64_t store_now_ns, const struct lock_periods *p)
{
	li->age_ns = -1;
	if (li->mtime_ns > 0 && store_now_ns > 0)
		li->age_ns = store_now_ns > li->mtime_ns ? store_now_ns - li->mtime_ns : 0;
	li->stale = !*li->host || li->age_ns > p->stale_ns || (!li->pending_write && dead_here(li));
	return li->stale;
}

/* The lock objects of one listing, and the store's now. */
struct listing {
	const char *self; /* the key whose modification time is the store's now */
	int64_t now;      /* 0: not seen (yet) */
	struct { char key[64]; int64_t mtime; uint64_t size; } *v;
	size_t n, cap;
};

static int collect(void *ctx, const char *key, const struct cb_object_info *info)
{
	struct listing *l = ctx;
	if (strlen(key) >= sizeof(l->v->key))
		return 0; /* not one of ours */
	if (l->self && !strcmp(key, l->self)) {
		l->now = info->mtime_ns;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *v = realloc(l->v, cap * sizeof(*l->v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	snprintf(l->v[l->n].key, sizeof(l->v->key), "%s", key);
	l->v[l->n].size = info->size;
	l->v[l->n++].mtime = info->mtime_ns;
	return 0;
}

/* A lock the listing showed, read as absent: released meanwhile (0) only when a second look
 * agrees; still there, it is one this run cannot read now (-EIO, said), never one to take for
 * gone. */
static int read_as_absent(struct cb_backend *b, const char *key)
{
	uint64_t size;
	int r = cb_backend_stat(b, key, &size);
	if (r == -ENOENT)
		return 0;
	if (r == 0)
		cb_backend_set_error("%s: listed, then not found when read, though still there", key);
	return r == 0 ? -EIO : r;
}

/* Lists locks/ (all but self), reads and judges each at the store's now: self's modification
 * time (from the listing, else a HEAD of it; unknown without self). */
static int list_locks(struct cb_backend *b, const char *self, const struct lock_periods *p,
		      int (*cb)(void *ctx, const struct lock_info *li), void *ctx)
{
	struct listing l = {.self = self};
	int r = cb_backend_list_info(b, "locks/", collect, &l);
	struct cb_object_info own;
	if (r == 0 && self && !l.now && cb_backend_stat_info(b, self, &own) == 0)
		l.now = own.mtime_ns; /* a listing that does not show it yet */
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		struct lock_info li = {0};
		char *data = NULL;
		size_t len;
		r = cb_backend_get(b, l.v[i].key, LOCK_MAX_BYTES, &data, &len);
		if (r == -ENOENT) { /* released meanwhile? */
			if ((r = read_as_absent(b, l.v[i].key)) < 0)
				break;
			continue;
		}
		if (r == 0 && len == 0 && l.v[i].size > 0) { /* a cut answer (a gateway's, a cache's) */
			free(data);
			cb_backend_set_error("%s: listed with %llu bytes, read as none", l.v[i].key,
					     (unsigned long long)l.v[i].size);
			r = -EIO;
			break;
		}
		/* -EBADMSG: an encrypted store's object that fails authentication, which nobody
		 * holding the key wrote: no lock, as garbage is none in a plain store */
		if (r < 0 && r != -EFBIG && r != -EBADMSG)
			break;
		if (r < 0 || lock_info_parse(data, len, &li) < 0)
			li = (struct lock_info){0}; /* unreadable: stale */
		free(data);
		snprintf(li.key, sizeof(li.key), "%s", l.v[i].key);
		li.mtime_ns = l.v[i].mtime;
		lock_judge(&li, l.now, p);
		r = cb(ctx, &li);
	}
	free(l.v);
	return r;
}

/* --- holders ----------------------------------------------------------------------------- */

struct store_lock {
	struct cb_backend *b;
	struct lock_periods p;
	struct lock_info info;   /* as last written */
	pthread_t refresher;
	pthread_mutex_t mu;      /* guards what follows; held across a renewal */
	pthread_cond_t cv;       /* on CLOCK_MONOTONIC */
	int64_t renewed;         /* CLOCK_BOOTTIME at the start of the last successful write */
	int64_t retry_at;        /* after a failed renewal: when to try again (boot clock) */
	int64_t gap;             /* once lapsed: how long the lease went without a renewal */
	bool lapsed, gone;       /* sticky; gone: the object was removed by another process */
	bool stop, thread_started;
	bool kept;               /* store_lock_keep: left in place */
	char held_key[64];       /* store_lock_take_over: the caller's other lock, no conflict */
};

static int new_lock(struct cb_backend *b, const struct lock_periods *p, bool exclusive,
		    const char *command, struct store_lock **out)
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
	l->p = *p;
	snprintf(l->info.key, sizeof(l->info.key), "locks/%s.json", hex);
	this_host(l->info.host, sizeof(l->info.host));
	lock_pid_space(l->info.pid_space, sizeof(l->info.pid_space));
	snprintf(l->info.command, sizeof(l->info.command), "%s", command);
	l->info.pid = getpid();
	l->info.exclusive = exclusive;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&l->mu, NULL);
	*out = l;
	return 0;
}

static void free_lock(struct store_lock *l)
{
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
}

static void mark_lapsed(struct store_lock *l, int64_t gap)
{
	if (!l->lapsed)
		l->gap = gap;
	l->lapsed = true;
}

/* One renewal, l->mu held: 0 when the object was rewritten in time; -ETIMEDOUT when the lease
 * lapsed (before the renewal was due, while it ran, or found gone); the backend's error when
 * it failed (tried again after retry_at). The time a renewal starts is what counts for the
 * lease (the store's time of the write is later); the time it ends, for the gap: the new
 * lease counts only once the store has it. */
static int renew_locked(struct store_lock *l)
{
	if (l->lapsed)
		return -ETIMEDOUT;
	int64_t start = boot_ns();
	if (start - l->renewed >= lapse_limit(&l->p)) {
		mark_lapsed(l, start - l->renewed);
		return -ETIMEDOUT;
	}
	/* Rewriting the object would re-create one that another process removed (as stale, or
	 * 'unlock --all'): look first, and write it only where it is (CB_PUT_REPLACE_ONLY: in a
	 * directory store, a removal between the look and the write is seen too; in object
	 * storage, one removed as stale is caught by the gap, an observer took it for stale only
	 * once it went unrenewed for longer than the limit). */
	struct cb_object_info there;
	struct lock_info next = l->info;
	next.renewals++;
	next.time_ns = now_ns();
	int r = cb_backend_stat_info(l->b, l->info.key, &there);
	r = r < 0 ? r : lock_write_flags(l->b, &next, CB_PUT_REPLACE_ONLY);
	if (r == -ENOENT) {
		l->gone = true;
		mark_lapsed(l, start - l->renewed);
		return -ETIMEDOUT;
	}
	if (r < 0) {
		int64_t retry = l->p.refresh_ns / 5;
		if (retry < NS_PER_S)
			retry = l->p.refresh_ns < NS_PER_S ? l->p.refresh_ns : NS_PER_S;
		l->retry_at = boot_ns() + retry;
		return r;
	}
	l->info = next;
	l->retry_at = 0;
	int64_t end = boot_ns();
	if (end - l->renewed >= lapse_limit(&l->p)) {
		mark_lapsed(l, end - l->renewed);
		return -ETIMEDOUT;
	}
	l->renewed = start;
	return 0;
}

/* Between renewals: marks l lapsed (gone) when its object is no longer in the store, which
 * another process removed (unlock --all, or one that took it for stale) while this one was
 * paused for less than a renewal period. A failed look alone changes nothing. Called with mu
 * held. */
static void look_still_there(struct store_lock *l)
{
	struct cb_object_info there;
	if (cb_backend_stat_info(l->b, l->info.key, &there) == -ENOENT) {
		l->gone = true;
		mark_lapsed(l, boot_ns() - l->renewed);
	}
}

static void *refresh_loop(void *arg)
{
	struct store_lock *l = arg;
	pthread_mutex_lock(&l->mu);
	while (!l->stop && !l->lapsed) {
		int64_t due = l->renewed + l->p.refresh_ns;
		if (l->retry_at > due)
			due = l->retry_at;
		int64_t wait = due - boot_ns();
		if (wait <= 0) {
			renew_locked(l); /* a failure is retried; a lapse ends the loop */
			continue;
		}
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		int64_t ns = until.tv_nsec + wait % NS_PER_S;
		until.tv_sec += (time_t)(wait / NS_PER_S + ns / NS_PER_S);
		until.tv_nsec = (long)(ns % NS_PER_S);
		pthread_cond_timedwait(&l->cv, &l->mu, &until);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

struct conflict_ctx {
	const struct lock_info *mine;
	const char *held_key; /* the taker's other lock ("": none) */
	struct lock_info found;
	bool any;
};

static int find_conflict(void *ctx, const struct lock_info *li)
{
	struct conflict_ctx *c = ctx;
	if (li->stale || li->probe || !strcmp(li->key, c->held_key))
		return 0;
	if (c->mine->exclusive || li->exclusive) {
		c->found = *li;
		c->any = true;
		return 1;
	}
	return 0;
}

/* One attempt: write ours, look for a conflict (by the store's clock: ours was just written),
 * withdraw ours if there is one. */
static int try_take(struct store_lock *l, struct lock_info *holder)
{
	int64_t start = boot_ns();
	l->info.time_ns = now_ns();
	l->info.renewals = 0;
	int r = lock_write(l->b, &l->info);
	if (r < 0)
		return r;
	struct conflict_ctx c = {.mine = &l->info, .held_key = l->held_key};
	r = list_locks(l->b, l->info.key, &l->p, find_conflict, &c);
	if (r < 0 || c.any) {
		cb_backend_delete_quiet(l->b, l->info.key);
		if (c.any && holder)
			*holder = c.found;
		return r < 0 ? r : -EBUSY;
	}
	l->renewed = start;
	return 0;
}

/* Takes l (new_lock's), waiting as store_lock_take does; frees it on failure. */
static int take_waiting(struct store_lock *l, int wait_seconds,
			void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
			struct store_lock **out, struct lock_info *holder)
{
	struct cb_backend *b = l->b;
	int r;
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
			cb_backend_delete_quiet(b, l->info.key);
		free_lock(l);
		return r;
	}
	*out = l;
	return 0;
}

int store_lock_take_with(struct cb_backend *b, const struct lock_periods *p, bool exclusive,
			 const char *command, int wait_seconds,
			 void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
			 struct store_lock **out, struct lock_info *holder)
{
	*out = NULL;
	if (cb_backend_readonly(b))
		return -EROFS;
	struct store_lock *l;
	int r = new_lock(b, p, exclusive, command, &l);
	return r < 0 ? r : take_waiting(l, wait_seconds, waiting, ctx, out, holder);
}

int store_lock_take_over(struct store_lock *held, bool exclusive, int wait_seconds,
			 void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
			 struct store_lock **out, struct lock_info *holder)
{
	*out = NULL;
	struct store_lock *l;
	int r = new_lock(held->b, &held->p, exclusive, held->info.command, &l);
	if (r < 0)
		return r;
	snprintf(l->held_key, sizeof(l->held_key), "%s", held->info.key);
	return take_waiting(l, wait_seconds, waiting, ctx, out, holder);
}

int store_lock_take(struct cb_backend *b, bool exclusive, const char *command, int wait_seconds,
		    void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
		    struct store_lock **out, struct lock_info *holder)
{
	return store_lock_take_with(b, lock_periods_default(), exclusive, command, wait_seconds,
				    waiting, ctx, out, holder);
}

int store_lock_check(struct store_lock *l, struct strbuf *err)
{
	if (!l)
		return 0;
	pthread_mutex_lock(&l->mu);
	if (!l->lapsed && boot_ns() - l->renewed >= l->p.refresh_ns)
		renew_locked(l); /* a failure alone is judged by the time left, below */
	else if (!l->lapsed)
		look_still_there(l);
	int64_t since = boot_ns() - l->renewed;
	if (!l->lapsed && since >= lapse_limit(&l->p))
		mark_lapsed(l, since);
	int r = l->lapsed ? -ETIMEDOUT : 0;
	if (r < 0 && err && l->gone)
		sb_printf(err, "the lock of %s lapsed (%s was removed by another process: 'unlock "
			  "--all', or one that took it for stale), so nothing is committed",
			  cb_backend_location(l->b), l->info.key);
	else if (r < 0 && err)
		sb_printf(err, "the lock of %s lapsed (not renewed for %lld s: the process was paused "
			  "or the store was unreachable), so nothing is committed",
			  cb_backend_location(l->b), (long long)(l->gap / NS_PER_S));
	pthread_mutex_unlock(&l->mu);
	return r;
}

static void stop_renewing(struct store_lock *l)
{
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->thread_started)
		pthread_join(l->refresher, NULL);
	l->thread_started = false;
}

const char *store_lock_key(const struct store_lock *l)
{
	return l->info.key;
}

void store_lock_release(struct store_lock *l)
{
	if (!l)
		return;
	stop_renewing(l);
	if (!l->gone && !l->kept)
		cb_backend_delete(l->b, l->info.key);
	free_lock(l);
}

void store_lock_keep(struct store_lock *l)
{
	if (!l)
		return;
	stop_renewing(l);
	pthread_mutex_lock(&l->mu);
	l->kept = true;
	l->info.pending_write = true;
	if (!l->gone && !l->lapsed) /* else another process may have taken it for stale already */
		(void)lock_write(l->b, &l->info);
	pthread_mutex_unlock(&l->mu);
}

/* --- observers --------------------------------------------------------------------------- */

int store_lock_list(struct cb_backend *b, const struct store_lock *self,
		    int (*cb)(void *ctx, const struct lock_info *li), void *ctx)
{
	if (self)
		return list_locks(b, self->info.key, &self->p, cb, ctx);
	const struct lock_periods *p = lock_periods_default();
	if (cb_backend_readonly(b))
		return list_locks(b, NULL, p, cb, ctx);
	struct store_lock *probe;
	int r = new_lock(b, p, false, "probe", &probe);
	if (r < 0)
		return r;
	probe->info.probe = true;
	probe->info.time_ns = now_ns();
	r = lock_write(b, &probe->info);
	if (r == 0) {
		r = list_locks(b, probe->info.key, p, cb, ctx);
		cb_backend_delete(b, probe->info.key);
	}
	free_lock(probe);
	if (r == -EROFS) /* a store on a read-only file system: listed without the probe */
		r = list_locks(b, NULL, p, cb, ctx);
	return r;
}

struct unlock_ctx {
	struct cb_backend *b;
	bool all;
	unsigned removed;
	int (*kept)(void *ctx, const struct lock_info *li);
	void (*live_removed)(void *ctx, const struct lock_info *li);
	void *ctx;
};

static int unlock_one(void *ctx, const struct lock_info *li)
{
	struct unlock_ctx *u = ctx;
	if (u->all || li->stale) {
		if (cb_backend_delete(u->b, li->key) == 0) {
			u->removed++;
			if (!li->stale && !li->probe && u->live_removed)
				u->live_removed(u->ctx, li);
		}
		return 0;
	}
	return u->kept && !li->probe ? u->kept(u->ctx, li) : 0;
}

int store_unlock(struct cb_backend *b, bool all, unsigned *removed,
		 int (*kept)(void *ctx, const struct lock_info *li),
		 void (*live_removed)(void *ctx, const struct lock_info *li), void *ctx)
{
	*removed = 0;
	if (cb_backend_readonly(b))
		return -EROFS;
	struct unlock_ctx u = {b, all, 0, kept, live_removed, ctx};
	int r = store_lock_list(b, NULL, unlock_one, &u);
	*removed = u.removed;
	return r;
}
