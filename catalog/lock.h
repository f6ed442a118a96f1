/* lock.h: who works on a store: locks/ID.json, one object per lock, as restic keeps them.
 *
 * Shared locks (create, copy, check, ...) coexist; an exclusive lock (prune) excludes every
 * other lock. Taking a lock writes it first and then lists the others, so of two processes
 * that race, at least one sees the other and backs off.
 *
 * A lock is a lease. Its holder renews it (rewrites its object: host, pid, command, exclusive,
 * the renewal count, and the holder's time for humans) every refresh period on a thread of its
 * own, and checks it (store_lock_check) immediately before each irreversible step: a create
 * before its manifest, a copy before its manifest, a prune before each batch of deletes; and
 * once more after a manifest is written (store_commit_manifest), which withdraws it when the
 * lease lapsed during the write.
 *
 * Holder's side. The lease runs from the start of the request that last wrote the object
 * (timed on CLOCK_BOOTTIME, which counts a process that was stopped or a machine that was
 * suspended) for the stale period. The holder marks it lapsed, for good, when a renewal
 * completes (or is due) the stale period less a fifth of it (the margin) or more after the
 * start of the previous successful write, or when a renewal finds the object gone (another
 * process removed it as stale): by then an observer may have taken the lock for stale, and a
 * prune may have deleted what the holder counts on. A lapsed lock is no longer renewed, and
 * store_lock_check fails from then on, so nothing is committed on it.
 *
 * Observer's side. A lock is stale only by the store's clock: when the store last saw its
 * object written (lock_info.mtime_ns: a local file's mtime, S3's Last-Modified) more than the
 * stale period before the store's "now", which is when the store saw the observer's own lock
 * object written (store_lock_take writes its own first; store_lock_list and store_unlock write
 * a probe when the caller holds none). No host's clock is ever compared with another's, so a
 * host whose clock runs ahead cannot take a live lock for stale. Also stale: a lock taken on
 * this host by a process that no longer runs, and an object that is not a lock document.
 * Stale locks are ignored by store_lock_take and removed by store_unlock.
 *
 * Why the margin suffices: an observer that judges a lock stale saw its object older than the
 * stale period by the store's clock, so the holder's next write had not landed within the
 * stale period of the previous one's start, which the holder counts as lapsed.
 */
#ifndef CASSBACKUP_LOCK_H
#define CASSBACKUP_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "util.h"

/* A local store keeps this much of its file system in RESERVE_KEY (store.c makes it): a lock
 * that cannot be written for want of space (ENOSPC, EDQUOT) deletes it and is written again,
 * so that forget and prune, which free space, still run on a store whose disk filled up. */
#define RESERVE_KEY "reserve"
#define RESERVE_BYTES (UINT64_C(1) << 20)

#define LOCK_REFRESH_SECONDS (5 * 60)
#define LOCK_STALE_SECONDS (30 * 60)

/* How a lease is kept: refresh_ns between renewals, stale_ns until a lock nobody renewed is
 * stale. The margin is a fifth of stale_ns; refresh_ns must be well below stale_ns less it. */
struct lock_periods {
	int64_t refresh_ns;
	int64_t stale_ns;
};

/* The periods every command uses: LOCK_REFRESH_SECONDS and LOCK_STALE_SECONDS, or, for tests
 * only, CASSBACKUP_LOCK_REFRESH_SECONDS and CASSBACKUP_LOCK_STALE_SECONDS from the environment
 * (whole seconds, read once; both ignored unless each is 1 to 86400 and the refresh period is
 * at most half the stale period). Every process working on a store must use the same ones. */
const struct lock_periods *lock_periods_default(void);

struct lock_info {
	char key[64];      /* locks/ID.json */
	char host[256];
	char command[64];
	int64_t pid;
	/* where pid names the holder: "BOOT_ID/DEV:INODE" of its boot and pid namespace; "" in
	 * documents of older versions. Only an observer in the same one judges it dead by pid. */
	char pid_space[96];
	int64_t time_ns;   /* the holder's clock at its last renewal: for humans, never compared */
	uint64_t renewals; /* how often its holder renewed it (0 in documents of older versions) */
	bool exclusive;
	bool probe;        /* written only to learn the store's now (store_lock_list): no lock */
	/* Left in place by its holder after a write whose outcome it could not learn
	 * (store_lock_keep): stale by the store's clock only, even when its process is gone. */
	bool pending_write;
	/* As the store sees it (store_lock_list): when it was last written, by the store's clock
	 * (0: unknown), and how long before the store's now (-1: unknown). */
	int64_t mtime_ns, age_ns;
	bool stale;        /* judged as above */
};

/* Where this process's pid names it: this boot of this kernel, this pid namespace
 * ("BOOT_ID/DEV:INODE" of /proc/self/ns/pid), into out; "" when either is unknown. */
void lock_pid_space(char *out, size_t n);

struct store_lock;

/* Takes a lock on the store, waiting up to wait_seconds (0: not at all) for conflicting live
 * locks to go; waiting(ctx, holder) is called once when it starts to wait. -EBUSY when a
 * conflicting lock remains (*holder, when not NULL, describes one), -EROFS on a read-only
 * store (where nothing can change, so readers need no lock: callers skip locking there).
 * The lock keeps the periods lock_periods_default() gives. */
int store_lock_take(struct cb_backend *b, bool exclusive, const char *command, int wait_seconds,
		    void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
		    struct store_lock **out, struct lock_info *holder);

/* store_lock_take with periods p (copied). */
int store_lock_take_with(struct cb_backend *b, const struct lock_periods *p, bool exclusive,
			 const char *command, int wait_seconds,
			 void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
			 struct store_lock **out, struct lock_info *holder);

/* Takes a lock of the kind exclusive says on held's store, as store_lock_take with held's
 * command and periods would, while the caller keeps held: held is no conflict, and stays (and
 * is renewed) while this one is waited for, so that a command that looks meanwhile still sees
 * the caller at work (a prune waiting for the exclusive lock, then going back to a shared one,
 * is never without a lock another prune would see). The caller releases held once this
 * returns 0, and keeps it otherwise. */
int store_lock_take_over(struct store_lock *held, bool exclusive, int wait_seconds,
			 void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
			 struct store_lock **out, struct lock_info *holder);

/* Before an irreversible step: renews the lease now when its last renewal is older than the
 * refresh period, else looks that its object is still there (one request: another process
 * may have removed it while this one was paused), then returns 0 when it was held without a
 * gap since it was taken, is still there, and has at least the margin left. Otherwise -ETIMEDOUT, and err gets one line: "the lock of STORE
 * lapsed (...), so nothing is committed". Sticky: once lapsed, always -ETIMEDOUT. A failed
 * renewal alone does not fail the check while the lease has the margin left. NULL (no lock
 * taken: a read-only store) gives 0. */
int store_lock_check(struct store_lock *l, struct strbuf *err);

/* The lock's object key ("locks/ID.json"). */
const char *store_lock_key(const struct store_lock *l);

/* Stops renewing and removes the lock (not once kept). Accepts NULL. */
void store_lock_release(struct store_lock *l);

/* After a write that failed without an answer (a manifest PUT that timed out may still land,
 * naming packs a prune would delete): stops renewing and marks the lock pending_write, so
 * that it is left in place by store_lock_release and keeps every prune out until it lapses by
 * the store's clock (LOCK_STALE_SECONDS). Accepts NULL. */
void store_lock_keep(struct store_lock *l);

/* The rule above for li (host, pid, mtime_ns) at the store's now (0: unknown; then only a
 * dead process on this host, or a document that did not parse, makes a lock stale). Sets
 * li->age_ns and li->stale and returns the latter. */
bool lock_judge(struct lock_info *li, int64_t store_now_ns, const struct lock_periods *p);

/* Calls cb for every lock object but self's, judged (lock_judge, with self's periods, else
 * lock_periods_default()). The store's now is when it saw self's object written (the
 * caller's own lock); with self NULL, a probe's: a lock document marked as one, which no lock
 * conflicts with, written for that and removed after; on a read-only store, where none can
 * be written, the age of locks stays unknown. An object that does not parse is passed with an
 * empty host (and counts as stale). cb returns 0 to go on. */
int store_lock_list(struct cb_backend *b, const struct store_lock *self,
		    int (*cb)(void *ctx, const struct lock_info *li), void *ctx);

/* Removes stale locks (all locks when all is set); *removed gets their count. kept (may be
 * NULL) is called for each lock left, live_removed (may be NULL) for each live one all
 * removed (a process may be working on the store under it). -EROFS on a read-only store. */
int store_unlock(struct cb_backend *b, bool all, unsigned *removed,
		 int (*kept)(void *ctx, const struct lock_info *li),
		 void (*live_removed)(void *ctx, const struct lock_info *li), void *ctx);

/* The lock document: written and parsed here only. -EBADMSG for anything that is not one. */
int lock_info_parse(const char *buf, size_t len, struct lock_info *li);

#endif
