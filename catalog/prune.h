/* prune.h: freeing the space of a store that no backup uses any more.
 *
 * Backups go when their manifest goes (forget); the packs holding their blobs stay until a
 * prune. A prune holds the store's exclusive lock (lock.h) only while it deletes; it plans
 * and copies under a shared one, beside creates, as one more writer of packs. It:
 *   1. takes a shared lock, and backs off when another prune holds one;
 *   2. brings the catalog up to date with the store (store_reconcile with RECONCILE_PACKS and
 *      RECONCILE_STRICT), so it knows every manifest in backups/ and every pack in packs/, also
 *      packs that a create killed before its manifest left behind; and refuses to go on when a
 *      manifest cannot be read or parsed, whatever the reason (its backup's blobs would look
 *      unused);
 *   3. plans, per pack: its used bytes, the blobs the remaining backups read from it (a blob
 *      that two packs hold is used once, at its current location: the copy in the other pack
 *      is unused), and its unused bytes, everything else it holds. A pack with no used blob is
 *      due to be deleted; then, as restic's --max-unused, packs are repacked, the largest
 *      unused share first, until the unused bytes of the packs that stay are at most
 *      max_unused percent of the bytes they hold; others stay;
 *   4. repacks: copies the blobs used now, each checked against its SHA-256 on the way, into
 *      new packs of about pack_size (packer.h; members named as in a create,
 *      <ks>/<table>-<id>/[<.index>/]<file>, after one file that uses the blob, so `tar -x` of
 *      any pack still gives a data-dir layout); commits a new pack, registers it and makes it
 *      the current location of its blobs; a pack all of whose used blobs are copied so is due
 *      to be deleted;
 *   5. deletes, in a delete phase (at the end, and whenever the packs due after a repack hold
 *      PRUNE_COPIED_PACKS pack sizes, so a repack needs bounded room): checks its shared
 *      lease (lapsed: nothing more, -ETIMEDOUT), takes the exclusive lock (so no create or
 *      copy runs), reconciles strictly again (so it knows every backup made since the plan),
 *      and deletes each due pack no backup reads from now: from the store, then from the
 *      catalog, PRUNE_BATCH at a time, each batch only while the lease holds. A due pack a
 *      backup made since the plan reads from (it deduplicated against a blob the plan took for
 *      unused) is kept. Then upload leftovers of dead writers go (on S3, pending multipart
 *      uploads, which only the exclusive lock makes safe to abort).
 *      With nothing to delete (no pack or segment due), there is no delete phase: the
 *      exclusive lock is tried once for the leftovers alone, and when another command holds
 *      the store they wait for the next prune (sweep_skipped_for names the holder).
 *   6. in the delete phase, after the packs: lists commitlogs/ again and, from the catalog just
 *      read, deletes the commitlog segments no kept backup needs (commitlog_retention), each
 *      batch only while the lease holds. A segment whose metadata cannot be read stays.
 *      archive-commitlog takes no lock: a segment it stores carries the time it was stored,
 *      after the start of every backup's window, so a prune never deletes it.
 * So a prune killed at any point loses no blob of a remaining backup, and the next prune
 * finishes the job: a pack deleted from the store but not from the catalog is dropped by the
 * reconcile; a repack killed after its new pack was registered leaves the old pack holding
 * only unused copies, which the next prune deletes; one killed before that leaves a new pack
 * holding only unused copies, deleted in turn.
 *
 * Nothing here prints: errors come back as -errno with one line in err.
 */
#ifndef CASSBACKUP_PRUNE_H
#define CASSBACKUP_PRUNE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "lock.h"
#include "util.h"

#define PRUNE_DEFAULT_MAX_UNUSED 5            /* percent */

struct prune_opts {
	unsigned max_unused;  /* unused share of the store to tolerate, percent (0-100; 100: no repack) */
	bool dry_run;         /* plan only: the store is not changed (the catalog, a cache, is) */
	/* only while no other command holds the store: no lock is waited for; one in the way
	 * (another prune, a create, at the start or before a delete phase) ends the prune there
	 * as a success, what was done kept (stats busy_skipped_for names the holder). The backup
	 * job's prune: of nodes sharing a store, the last to finish prunes, instead of each
	 * waiting and failing. */
	bool if_idle;
	int lock_wait_seconds; /* how long to wait for other locks (a create's) to go */
	/* called once when it starts to wait, naming a holder */
	void (*lock_waiting)(void *lock_ctx, const struct lock_info *holder);
	void *lock_ctx;
	progress_fn progress; /* bytes copied into new packs */
	void *pctx;
	const volatile sig_atomic_t *cancel; /* non-zero: stop at the next blob, -ECANCELED */
	int level;            /* zstd level of new packs (0: 3) */
	unsigned threads;     /* compression threads (0: the caller's) */
	size_t frame_size;    /* 0: the default */
	uint64_t pack_size;   /* tar-stream bytes per new pack (0: PACK_DEFAULT_SIZE, packer.h) */
};

enum prune_action { PRUNE_KEEP, PRUNE_DELETE, PRUNE_REPACK };

struct prune_pack {
	int64_t id;
	char *path;                 /* packs/xx/ID.tar.zst */
	uint64_t size;              /* bytes of the pack */
	uint64_t blobs, blob_bytes; /* everything it holds (uncompressed) */
	uint64_t used, used_bytes;  /* blobs remaining backups read from it */
	enum prune_action action;
	bool copied;                /* repack: every used blob is in a new pack */
	bool in_use;                /* due to go, but a backup made since the plan reads from it
				     * (or it went meanwhile): kept */
	bool gone;                  /* deleted (from the store and the catalog) */
};

struct prune_stats {
	/* the store was read and a plan made; false when an if_idle prune found the store in
	 * use at its start, and the figures of what was there are unknown, not 0 */
	bool planned;
	unsigned packs;              /* before */
	unsigned delete_packs, repack_packs, keep_packs; /* the plan */
	uint64_t bytes;              /* of all packs, before */
	uint64_t delete_bytes, repack_bytes, keep_bytes; /* pack bytes, by plan */
	uint64_t repack_used_bytes;  /* blob bytes the plan copies */
	uint64_t keep_unused_bytes;  /* unused blob bytes left in kept packs */
	uint64_t freed_estimate;     /* bytes the plan frees, repacked packs estimated */
	unsigned bad_packs;          /* in packs/ but unreadable: left alone (check names them) */
	/* what was done */
	unsigned leftovers;          /* upload leftovers removed */
	int leftovers_err;           /* 0, or why they could not be looked for */
	bool reclaimed;              /* leftovers were looked for */
	/* Nothing was due to go, and the exclusive lock, tried once for the leftovers' sweep only,
	 * was another command's: who holds it ("create (pid N on HOST, shared)"), "" otherwise */
	char sweep_skipped_for[640];
	/* with if_idle: the store was another command's, so the prune stopped there: who held it */
	char busy_skipped_for[640];
	unsigned packs_in_use;       /* due packs kept: backups made since the plan use them */
	unsigned delete_phases;      /* times the exclusive lock was taken to delete */
	unsigned packs_deleted, packs_repacked, packs_written;
	uint64_t bytes_removed;      /* of packs deleted or repacked */
	uint64_t bytes_written;      /* of new packs */
	uint64_t bytes_rewritten;    /* blob bytes copied into them */
	/* commitlog segments (commitlog.h; commitlog_retention says which a kept backup needs) */
	unsigned segments;           /* before */
	unsigned delete_segments;    /* the plan: no kept backup needs them */
	unsigned bad_segments;       /* their metadata cannot be read: left alone */
	unsigned segments_deleted;   /* done, in the last delete phase (planned again there) */
};

typedef struct prune prune;

/* Takes a shared lock of store s (the caller's, open until prune_free; waiting as o says),
 * reconciles the catalog from a complete reading of the store and plans. -EBUSY when an
 * exclusive lock stays, or another prune runs (err names the holder; of two that start
 * together, the one whose lock key sorts first tries again for a few seconds), -EBADMSG or the
 * backend's error when a manifest cannot be read (err names it). *out is the caller's
 * (prune_free), NULL on failure. */
struct store;
int prune_begin(struct store *s, const struct prune_opts *o, prune **out, struct strbuf *err);

/* The packs (by catalog id) and the plan for each. Valid until prune_free. */
const struct prune_pack *prune_packs(const prune *p, size_t *n);
const struct prune_stats *prune_get_stats(const prune *p);

/* Carries the plan out (nothing in a dry run): repacks, then deletes under the exclusive lock,
 * waiting for it as o says. On failure err says what failed; what was done before it is kept
 * and counted in the stats, and the store holds every blob it held that a backup uses. */
int prune_run(prune *p, struct strbuf *err);

/* Releases the lock (the store stays the caller's). Accepts NULL. */
void prune_free(prune *p);

#endif
