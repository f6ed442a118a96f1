/* packer.h: writing blobs into packs of a bounded size; the one writer of packs, for create,
 * copy and prune.
 *
 * Members go into the packer's current pack (pack.h: a seekable tar.zst uploaded to the store
 * as it is written, exclusive: never replacing an object). A pack is closed, committed in the
 * store and handed to the caller (committed) when the next member would take its tar stream
 * past the target size, when it holds PACKER_MAX_BLOBS blobs, when the next member's name is
 * already in it (two nodes' sstables of one name: `tar -x` of a pack must give each file its
 * own bytes), when the caller cuts it (packer_cut: a big table's packs of its own), or at
 * packer_finish. A member larger than the target is a pack of its own. So a node of any size
 * becomes packs of about the target, each uploaded in parts sized for it (backend.h
 * size_hint), and a prune that drops a few percent rewrites packs of that size, not the node.
 *
 * Each committed pack is whole in the store and lists its blobs in its index (every content
 * once: a member whose bytes repeat an earlier one of the same pack is not indexed again).
 * A failure, a cancel or packer_free before packer_finish aborts the pack being written; packs
 * committed before stay, holding blobs no manifest may name yet, which prune removes.
 *
 * Errors are negative errno values; packer_errmsg() says what failed, in one line. Nothing
 * here prints.
 */
#ifndef CASSBACKUP_PACKER_H
#define CASSBACKUP_PACKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "hash.h"
#include "manifest.h"
#include "pack.h"

#define PACK_DEFAULT_SIZE (UINT64_C(512) << 20)
#define PACK_MIN_SIZE (UINT64_C(1) << 20)
/* Blobs in one pack at most: its index (about 150 bytes a blob) stays well under
 * PACK_INDEX_MAX, which readers accept. */
#define PACKER_MAX_BLOBS 200000u

typedef struct packer packer;

struct packer_opts {
	struct cb_backend *backend;
	uint64_t target;     /* tar-stream bytes a pack holds (0: PACK_DEFAULT_SIZE) */
	int level;           /* zstd level (0: 3) */
	unsigned threads;    /* compression threads (0: the caller's) */
	size_t frame_size;   /* 0: the default */
	/* Called once each pack is committed in the store, with its key, what its writer wrote
	 * and its index (valid during the call). Its failure ends the packer with that error. */
	int (*committed)(void *ctx, const char *key, const struct pack_info *info,
			 const struct pack_index *pi);
	void *ctx;
	/* Commit each closed pack on a thread of its own while the next one is written (the
	 * commit waits for the last parts, S3's CompleteMultipartUpload or a local fsync, with
	 * nothing compressing meanwhile). At most one such commit runs; committed is then called
	 * later, from the caller's thread, at the next pack's close or at packer_finish, and a
	 * commit's failure is returned there. For a caller that does not look its blobs up in the
	 * store between packs (create keeps its own map of what it wrote). */
	bool commit_behind;
};

int packer_new(const struct packer_opts *o, packer **out);

/* Adds a member as pack_writer_add_fd does (reading m->size bytes of fd, hashing them into
 * sha256), in the pack it belongs in (see above). *seq gets the number of the pack it went
 * into (packer_seq). -ESTALE, -ECANCELED or the store's error, as the pack writer's. */
int packer_add_fd(packer *p, const struct pack_member *m, int fd, unsigned char sha256[32],
		  const volatile sig_atomic_t *cancel, progress_fn progress, void *pctx,
		  unsigned *seq);

/* Adds a member of m->size bytes at data, whose SHA-256 the caller computed. */
int packer_add_buffer(packer *p, const struct pack_member *m, const void *data,
		      const unsigned char sha256[32], unsigned *seq);

/* Adds a member whose bytes read(ctx, off, buf, len) supplies, hashing them into sha256. */
int packer_add_reader(packer *p, const struct pack_member *m,
		      int (*read)(void *ctx, uint64_t off, void *buf, size_t len), void *ctx,
		      unsigned char sha256[32], unsigned *seq);

/* Adds a hard link to target, a member of the current pack (packer_seq must be the one the
 * target went into): the same bytes, not stored twice. */
int packer_add_link(packer *p, const struct pack_member *m, const char *target);

/* The number of the pack the next member goes into unless it must rotate (1 for the first). */
unsigned packer_seq(const packer *p);

/* Commits the current pack now, if it holds anything: the next member starts a new one. */
int packer_cut(packer *p);

/* Commits the last pack, and waits for a commit behind. */
int packer_finish(packer *p);

struct packer_stats {
	unsigned packs;      /* committed */
	uint64_t bytes;      /* of the packs committed (compressed, as stored) */
	uint64_t blob_bytes; /* of the blobs they index */
};
void packer_get_stats(const packer *p, struct packer_stats *st);

/* One line saying what failed; "" when nothing failed. */
const char *packer_errmsg(const packer *p);
/* Whether that was a commit behind's failure (of an earlier pack than the member being added
 * when it was said). */
bool packer_failed_behind(const packer *p);

/* Waits for a commit behind, then aborts a pack not committed. Accepts NULL. */
void packer_free(packer *p);

#endif
