/* lock.h: who works on a store: locks/ID.json, one object per lock, as restic keeps them.
 *
 * Shared locks (create, verify, export) coexist; an exclusive lock (prune) excludes every other
 * lock. A lock names its host, pid, command and time, and its holder rewrites it every
 * LOCK_REFRESH_SECONDS on a thread of its own. A lock is stale when it was not refreshed for
 * LOCK_STALE_SECONDS, or when it was taken on this host by a process that no longer runs; stale
 * locks are ignored by store_lock_take and removed by store_unlock_stale.
 *
 * Taking a lock writes it first and then lists the others, so of two processes that race,
 * at least one sees the other and backs off.
 */
#ifndef CASSBACKUP_LOCK_H
#define CASSBACKUP_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define LOCK_REFRESH_SECONDS (5 * 60)
#define LOCK_STALE_SECONDS (30 * 60)

struct lock_info {
	char key[64];     /* locks/ID.json */
	char host[256];
	char command[64];
	int64_t pid;
	int64_t time_ns;  /* last refresh */
	bool exclusive;
};

struct store_lock;

/* Takes a lock on the store, waiting up to wait_seconds (0: not at all) for conflicting live
 * locks to go; waiting(ctx, holder) is called once when it starts to wait. -EBUSY when a
 * conflicting lock remains (*holder, when not NULL, describes one), -EROFS on a read-only
 * store (where nothing can change, so readers need no lock: callers skip locking there). */
int store_lock_take(struct cb_backend *b, bool exclusive, const char *command, int wait_seconds,
		    void (*waiting)(void *ctx, const struct lock_info *holder), void *ctx,
		    struct store_lock **out, struct lock_info *holder);

/* Stops refreshing and removes the lock. Accepts NULL. */
void store_lock_release(struct store_lock *l);

/* True when li is stale at now_ns (see above), as seen from this host. */
bool lock_is_stale(const struct lock_info *li, int64_t now_ns);

/* Calls cb for every lock object; an object that does not parse is passed with an empty host
 * and time 0 (so it counts as stale). */
int store_lock_list(struct cb_backend *b, int (*cb)(void *ctx, const struct lock_info *li),
		    void *ctx);

/* Removes stale locks (all locks when all is set). *removed gets their count. */
int store_unlock(struct cb_backend *b, bool all, unsigned *removed);

/* The lock document: written and parsed here only. -EBADMSG for anything that is not one. */
int lock_info_parse(const char *buf, size_t len, struct lock_info *li);

#endif
