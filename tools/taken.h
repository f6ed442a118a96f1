/* taken.h: which chain of backups took in a table's backups/ links.
 *
 * Cassandra hard-links each flushed sstable into <table>/backups/ once, and the backup that
 * takes a link in removes it (an incremental, or a full backup made with
 * --clear-incremental-links). An incremental is whole only if every link flushed since its
 * chain's last backup is still there: no backup of another chain (another full backup it is
 * made on, another store) removed one meanwhile. The store cannot tell (a backup that removed
 * links can be forgotten, copied elsewhere, dated by a wrong clock, or, with nothing new, never
 * made), so the table directory tells: TAKEN_FILE in each backups/ directory counts the
 * removals and names the chain that did the last ones.
 *
 *   cassbackup-taken 1 N M CHAIN
 *
 * N: how many times links were removed from that directory, by any backup (0: never); M: the
 * N at which CHAIN became the one removing them; CHAIN: "<store id>:<base ref>", the store and
 * the full backup (store.h ref) of the chain. A backup records, per table, the N it left
 * (manifest "taken"); the next incremental of its chain is whole when N is still that, or when
 * every removal since was its own chain's (a run killed after marking, or one that found
 * nothing new). The file is written (renamed into place, synced) before the manifest that
 * records it, so a kill leaves it claiming a removal that may not have happened: other chains
 * are then refused, never wrongly allowed.
 */
#ifndef CASSBACKUP_TAKEN_H
#define CASSBACKUP_TAKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define TAKEN_FILE ".cassbackup-taken"
#define TAKEN_CHAIN_MAX 400

struct links_taken {
	uint64_t n, m;
	char chain[TAKEN_CHAIN_MAX]; /* "" when n is 0 */
};

/* Reads TAKEN_FILE in directory dirfd (a backups/ directory): 0 (all zero when there is none),
 * -EBADMSG when it is not one this program wrote, or -errno. */
int taken_read(int dirfd, struct links_taken *t);

/* The chain of the backups made on base (a ref) in the store of id store_id, into chain. */
int taken_chain(const char *store_id, const char *base_ref, char chain[TAKEN_CHAIN_MAX]);

/* Is a backup of chain that recorded `recorded` followed, as the directory says now (t), only
 * by removals of its own chain? */
bool taken_allows(const struct links_taken *t, uint64_t recorded, const char *chain);

/* Records a removal by chain in backups directory dir, whose file said was (taken_read): n + 1,
 * replacing the file atomically and durably, under an exclusive flock of dir. *now: what it
 * says then. 0, -EAGAIN when the file no longer says was (another backup marked it since it
 * was read: what was checked is stale), or -errno. */
int taken_mark(const char *dir, const struct links_taken *was, const char *chain,
	       struct links_taken *now);

#endif
