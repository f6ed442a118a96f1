/* copy.h: copying a backup from one store to another (local or S3, either way), deduplicating
 * at the target.
 *
 * The backup's manifest is read from the source as bytes; every file's content (SHA-256 and
 * size) that the target already holds in a pack is not sent. The others are read from the
 * source packs (in pack and offset order), each checked against its SHA-256, and written into
 * new packs of about pack_size at the target (packer.h; a table that sends a quarter of that or
 * more gets packs of its own, as in a create) through the backend's upload (a multipart upload
 * on S3: no local copy). Then the manifest, byte for byte the source's, is put at the target
 * under backups/NAME/NODE.json, whatever the source's layout: the commit point. The target
 * holding this node's backup of the name under either layout (the older backups/NAME.json too)
 * is COPY_PRESENT when it is the same manifest, also when another copy of it came first at the
 * commit, else -EEXIST. Last, the target's catalog registers the pack and the backup (a failure
 * there loses nothing: the next open of the target takes the manifest in).
 *
 * So a failure, a damaged source pack or a kill at any point leaves no backup visible at the
 * target; an uncommitted upload is aborted (or, after a kill, left for cb_backend_reclaim /
 * prune), and a committed pack without its manifest is one that prune deletes.
 *
 * The caller opens both stores (the source may be read-only: it is only read) and holds the
 * target's shared lock (lock.h), as a create does, so that no prune deletes a pack whose blobs
 * the copy counts on, and passes it as o->lease: a lease that lapsed stops the copy before its
 * manifest (-ETIMEDOUT). Nothing here prints.
 */
#ifndef CASSBACKUP_COPY_H
#define CASSBACKUP_COPY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commitlog.h"
#include "hash.h"
#include "util.h"

struct store;
struct store_lock;

struct copy_stats;

struct copy_opts {
	int level;           /* zstd level of the new pack (0: 3) */
	unsigned threads;    /* compression threads (0: the caller's) */
	size_t frame_size;   /* 0: the default */
	uint64_t pack_size;  /* tar-stream bytes per new pack (0: PACK_DEFAULT_SIZE, packer.h) */
	bool dry_run;        /* plan only: nothing is read from packs or written */
	const volatile sig_atomic_t *cancel; /* non-zero: stop at the next chunk, -ECANCELED */
	progress_fn progress; /* bytes of blobs read from the source */
	/* called once the plan is made (st: the counts to send), before anything is sent */
	void (*planned)(void *pctx, const struct copy_stats *st);
	void *pctx;
	struct store_lock *lease; /* the target's lock: checked before the manifest (NULL: none) */
};

enum copy_outcome {
	COPY_COPIED,  /* the backup is now at the target */
	COPY_PRESENT, /* the target already had it, with the same manifest: nothing done */
	COPY_PLANNED, /* dry run: the counts say what a copy would do */
};

struct copy_stats {
	enum copy_outcome outcome;
	uint64_t files, bytes;                 /* of the backup */
	uint64_t blobs_sent, bytes_sent;       /* contents the target lacked (planned or copied) */
	uint64_t blobs_present, bytes_present; /* contents the target already held */
	uint64_t pack_bytes;                   /* of the new packs; 0 when none was written */
	char node[256];          /* the backup's node: its segments are under commitlogs/NODE */
	char host_id[64];        /* its host id ("" unknown): and those that record it elsewhere */
	struct commitlog_start window_start; /* where a point-in-time replay from it starts
					      * (commitlog_window_start; .ms INT64_MIN, every
					      * segment, when its full backup is not in the source) */
};

/* Copies backup name (a ref, store.h: one node backup) from src to dst (see above). 0 with st filled, or:
 *   -ENOENT   no backup of that name in src
 *   -EEXIST   dst has a backup of that name with another manifest (nothing changed)
 *   -EBADMSG  the source is damaged: its manifest does not parse, or a blob's bytes do not
 *             match its SHA-256 (err names the file and the pack)
 *   -ENODATA  no pack of src holds a file's bytes (an incomplete backup)
 *   -ECANCELED, or the backend's or the catalog's error.
 * err gets one line saying what failed (empty for -ENOENT). */
int backup_copy(struct store *src, struct store *dst, const char *name, const struct copy_opts *o,
		struct copy_stats *st, struct strbuf *err);

/* Counts of a segments_copy. */
struct segment_copy_stats {
	uint64_t sent, bytes_sent;       /* segments the target lacked (planned or copied), bytes */
	uint64_t present, bytes_present; /* segments the target held already, with the same bytes */
};

/* Copies the Cassandra commitlog segments of node (commitlogs/NODE; NULL: every node), with
 * those that record host_id under other node names (commitlog_list_host_elsewhere; host_id
 * NULL or "": none), that are in the window from from on (commitlog_in_window; from->ms
 * INT64_MIN: all of them) from src to dst, where a backup
 * copied with backup_copy needs them for a point-in-time restore (window_start, and every
 * segment after it: the target may lack the next backup). Each is read back and checked
 * against its SHA-256, then written with one exclusive put (commitlog.h), so it is whole or
 * absent at the target and never replaces another; one the target holds is not read. With
 * o->dry_run it only counts. A segment that fails on its own (damaged at the source, deleted
 * there meanwhile, other bytes under its name at the target) does not keep the others from
 * being copied; a failure of the backend stops the copy. 0, or the first failure:
 *   -EEXIST   the target holds other bytes under a segment's name
 *   -EBADMSG  a source segment is damaged, or the metadata of one does not read (which
 *             window it is of is not known: a replay from the source would stop on it too)
 *   -ENOENT   a segment was deleted from the source meanwhile (a prune there)
 *   -ECANCELED, or the backend's error.
 * err gets one line naming the first failed segment and how many more failed. What was sent
 * stays: it is what the backup needs, and prune keeps the segments a kept backup needs. */
int segments_copy(struct store *src, struct store *dst, const char *node, const char *host_id,
		  const struct commitlog_start *from, const struct copy_opts *o,
		  struct segment_copy_stats *st, struct strbuf *err);

#endif
