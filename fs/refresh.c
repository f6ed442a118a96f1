/* refresh.c: the thread that keeps the mount's catalog up to date with the store.
 *
 * FUSE workers never write the catalog nor list the store: they ask (cbfs_refresh), and this
 * thread, alone holding the store's catalog connection, serves the requests, several at once
 * when they pile up. A listing of /backups asks for backups/ only; a pack found gone asks for
 * packs/ too (a prune moved its blobs). A backup another host made may need packs this
 * catalog has not indexed: the reconcile then lists packs/ as well (RECONCILE_PACKS_IF_NEEDED).
 * Before each refresh the catalog file is looked at: one made anew at its path (deleted, set
 * aside as damaged) is moved to, and the inode generation bumped (cbfs.h).
 */
#include "cbfs.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

enum { LAST_BACKUPS, LAST_PACKS, LAST_REOPEN };

static int64_t since(const struct cbfs *fs, int what)
{
	int i = what & REFRESH_REOPEN ? LAST_REOPEN : what & REFRESH_PACKS ? LAST_PACKS : LAST_BACKUPS;
	return now_ns() - fs->refreshed_ns[i];
}

/* Moves the mount to the catalog file now at the store's catalog path, when it is not the one
 * the store opened; bumps the generation when it did. Called on the refresh thread. */
static void follow_catalog(struct cbfs *fs)
{
	struct strbuf err = {0};
	pthread_rwlock_wrlock(&fs->gen_lock);
	int r = store_follow_catalog(fs->store, &err);
	if (r > 0) {
		unsigned g = atomic_load(&fs->gen);
		atomic_store(&fs->gen, g >= GEN_MAX ? 1 : g + 1);
	}
	pthread_rwlock_unlock(&fs->gen_lock);
	if (r > 0)
		cbfs_log(fs, "%s: the catalog was made anew; inode numbers handed out before are "
			 "stale now", fs->location);
	if (err.len)
		cbfs_log(fs, "%s: %s", fs->location, err.buf);
	sb_free(&err);
}

/* One refresh of what was asked (enum refresh_what). */
static void refresh_once(struct cbfs *fs, int what)
{
	int64_t start = now_ns();
	follow_catalog(fs);
	int flags = RECONCILE_PACKS_IF_NEEDED | (what & REFRESH_PACKS ? RECONCILE_PACKS : 0);
	struct strbuf err = {0};
	if (store_reconcile(fs->store, flags, NULL, &err) < 0)
		cbfs_log(fs, "%s: %s", fs->location, err.buf ? err.buf : "cannot refresh the catalog");
	sb_free(&err);
	pthread_mutex_lock(&fs->mu);
	fs->refreshed_ns[LAST_BACKUPS] = start;
	if (what & REFRESH_PACKS)
		fs->refreshed_ns[LAST_PACKS] = start;
	if (what & REFRESH_REOPEN)
		fs->refreshed_ns[LAST_REOPEN] = start;
	pthread_mutex_unlock(&fs->mu);
}

static void *refresher(void *arg)
{
	struct cbfs *fs = arg;
	pthread_mutex_lock(&fs->mu);
	for (;;) {
		while (!fs->stopping && fs->done == fs->asked)
			pthread_cond_wait(&fs->asked_cv, &fs->mu);
		if (fs->stopping)
			break;
		uint64_t upto = fs->asked;
		int what = fs->pending;
		fs->pending = 0;
		pthread_mutex_unlock(&fs->mu);
		refresh_once(fs, what);
		pthread_mutex_lock(&fs->mu);
		fs->done = upto;
		pthread_cond_broadcast(&fs->done_cv);
	}
	pthread_mutex_unlock(&fs->mu);
	return NULL;
}

int cbfs_refresh_start(struct cbfs *fs)
{
	pthread_mutex_init(&fs->mu, NULL);
	pthread_rwlock_init(&fs->gen_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->asked_cv, NULL);
	pthread_cond_init(&fs->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	int64_t now = now_ns();
	for (size_t i = 0; i < ARRAY_SIZE(fs->refreshed_ns); i++)
		fs->refreshed_ns[i] = now; /* the store was just opened and reconciled */
	int r = -pthread_create(&fs->refresher, NULL, refresher, fs);
	fs->refresher_started = r == 0;
	return r;
}

void cbfs_refresh_stop(struct cbfs *fs)
{
	if (!fs->refresher_started)
		return;
	pthread_mutex_lock(&fs->mu);
	fs->stopping = true;
	pthread_cond_broadcast(&fs->asked_cv);
	pthread_mutex_unlock(&fs->mu);
	pthread_join(fs->refresher, NULL);
	fs->refresher_started = false;
}

void cbfs_refresh(struct cbfs *fs, int what, int64_t min_age_ns, int64_t wait_ns)
{
	pthread_mutex_lock(&fs->mu);
	if (!fs->refresher_started || fs->stopping || since(fs, what) < min_age_ns) {
		pthread_mutex_unlock(&fs->mu);
		return;
	}
	uint64_t mine = ++fs->asked;
	fs->pending |= what;
	pthread_cond_signal(&fs->asked_cv);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += wait_ns / 1000000000;
	until.tv_nsec += wait_ns % 1000000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	while (fs->done < mine && !fs->stopping)
		if (pthread_cond_timedwait(&fs->done_cv, &fs->mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&fs->mu);
}
