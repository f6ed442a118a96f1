/* storecheck.h: is the store whole? The engine of `cassbackup check`.
 *
 * storecheck_run walks a store, opened as it is (STORE_NO_RECONCILE: bringing the catalog up
 * to date is part of the check), in this order:
 *   1. the catalog brought up to date with the store, noting what that changed (the catalog is
 *      a cache of the store: information, not a problem);
 *   2. every pack: trailer, seek table (against the SHA-256 its trailer holds, and tiling the
 *      object up to the trailer, so a pack of the wrong size fails), index (every blob at a
 *      frame start, before the index; no two blobs overlapping): pack_meta_read;
 *   3. with a subset to read: every frame of the chosen packs decoded and every blob in them
 *      checked against its SHA-256 and size;
 *   4. every manifest in backups/ parses, and every file it names has its bytes in some pack's
 *      index (and, where read, undamaged);
 *   5. the catalog agrees with the store: its packs, the blobs it says each holds, its backups
 *      and their files;
 *   6. every commitlog segment's metadata reads (commitlog.h) and, with a subset to read, the
 *      segments it chooses (by the same rule, over their keys) decode to the bytes of their
 *      SHA-256;
 *   7. stale locks and bytes no backup uses, as information.
 * Each finding is handed to the caller as it is made: one line, a problem or information,
 * naming the object and the reason. Nothing here prints.
 *
 * The subset is deterministic: a pack's number is the first 4 bytes of its id (the hex name of
 * packs/xx/ID.tar.zst; the SHA-256 of the key for a pack named otherwise); "n of M" reads the
 * packs whose number mod M is n - 1, so the M runs 1 .. M of M read every pack once; a share P
 * reads the packs whose number lies in the lowest fraction P of the range.
 */
#ifndef CASSBACKUP_STORECHECK_H
#define CASSBACKUP_STORECHECK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct store;
struct store_lock;

/* Which packs step 3 reads. */
enum storecheck_read {
	STORECHECK_READ_NONE,  /* none: no pack's data, no segment's bytes */
	STORECHECK_READ_ALL,
	STORECHECK_READ_NTH,   /* part n of m: packs whose number mod m is n - 1 (1 <= n <= m) */
	STORECHECK_READ_SHARE, /* a share of the packs, chosen by seed (restic's "x%") */
};

struct storecheck_subset {
	enum storecheck_read kind;
	uint64_t n, m; /* STORECHECK_READ_NTH */
	double share;  /* STORECHECK_READ_SHARE: in (0, 1] */
	uint64_t seed; /* STORECHECK_READ_SHARE: which packs; a caller draws it anew for each run */
};

/* Marks in selected[i] whether s has the data of the pack at keys[i] read, of the n packs the
 * store holds. A share reads ceil(share * n) packs, at least one when there are any, those
 * ranked first by a hash of seed and key: the same seed picks the same packs, and runs with
 * seeds drawn at random come to read every pack (a weekly "10%" reads them all in about 30
 * weeks), which a choice by pack number alone would not. -ENOMEM. */
int storecheck_select(const struct storecheck_subset *s, const char *const *keys, size_t n, bool *selected);

enum storecheck_finding {
	STORECHECK_PROBLEM, /* the store is not whole there: the check fails */
	STORECHECK_INFO,    /* worth knowing (a stale lock, unused bytes, what reconcile changed) */
};

struct storecheck_opts {
	struct storecheck_subset read;
	/* The caller's own lock on the store (NULL: none): never counted as stale. */
	const struct store_lock *lock;
	/* Non-zero: stop at the next pack, manifest or frame, with -ECANCELED. May be NULL. */
	const volatile sig_atomic_t *cancel;
	/* Called with each finding, in the order found (line valid during the call only). 0, or
	 * -errno: the line is lost, and the check fails at its end with -ENOMEM, as when it runs
	 * out of memory itself. */
	int (*finding)(void *ctx, enum storecheck_finding kind, const char *line);
	void *ctx;
};

struct storecheck_stats {
	size_t backups;        /* manifests read */
	size_t packs, blobs;   /* packs in packs/, blobs in the indexes of those that verify */
	uint64_t bytes;        /* of the files of every backup */
	uint64_t blob_bytes;   /* of those blobs */
	size_t packs_read;     /* step 3 */
	uint64_t bytes_read;
	uint64_t unused_blobs, unused_bytes;
	size_t stale_locks;
	size_t segments;       /* commitlog segments in commitlogs/ */
	size_t segments_read;  /* step 6 */
	size_t problems;       /* findings of kind STORECHECK_PROBLEM */
};

/* Checks the store s (opened with STORE_NO_RECONCILE, under the caller's shared lock o->lock)
 * as above; st gets the counts. 0 when the walk completed (the findings tell whether the store
 * is whole), else -ECANCELED, -ENOMEM (or a finding that could not be handed out) or the
 * backend's -errno from listing the store, with one line in err ("interrupted", the backend's
 * message). A failed walk has handed out some findings, not all. */
int storecheck_run(struct store *s, const struct storecheck_opts *o, struct storecheck_stats *st,
		   struct strbuf *err);

#endif
