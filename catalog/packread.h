/* packread.h: reading the decompressed tar stream of packs, with a bounded frame cache.
 *
 * Thread-safe: any number of threads may call pack_cache_read() at once. Each thread gets its
 * own zstd decompression context; a frame being decoded by one thread is waited for, not
 * decoded again, by others. Packs are opened lazily through the cb_io interface.
 */
#ifndef CASSBACKUP_PACKREAD_H
#define CASSBACKUP_PACKREAD_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "packfmt.h"
#include "util.h"

typedef struct pack_cache pack_cache;

/* Reads packs of the store behind backend (borrowed: it must outlive the cache), by key.
 * cache_bytes bounds the decoded frames kept (frames in use by a reader are kept even past
 * it), read-ahead included.
 *
 * Frames a read needs that the cache lacks are fetched together, each run of consecutive ones
 * with one positional read (one ranged GET on object storage). On object storage, sequential
 * reading of a pack is detected and the frames ahead (up to 32 MiB, at most half of
 * cache_bytes) are fetched by ra_workers threads (the S3 client's parallel count; 0: no
 * read-ahead, for local packs, which the kernel reads ahead), started at the first need. Read-ahead never fails a read: a frame it could not load is loaded again by the read
 * that needs it. */
int pack_cache_new(pack_cache **out, struct cb_backend *backend, size_t cache_bytes,
		   unsigned ra_workers);

/* Keeps fetched (compressed) frames and pack tables in the directory dir too, at most
 * max_bytes (see diskcache.h), so that reading them again, in this process or the next, costs
 * no fetch from the store. What is read back is verified (a frame by its zstd checksum, a table
 * by its SHA-256); a damaged copy is dropped and fetched again, never used. Call before the
 * first read. 0, or -errno with one line in err. */
int pack_cache_use_disk(pack_cache *pc, const char *dir, uint64_t max_bytes, struct strbuf *err);

/* Accepts NULL. No read may be in progress. */
void pack_cache_free(pack_cache *pc);

/* Copies len bytes at offset off of the decompressed stream of the pack at key (packs/xx/
 * ID.tar.zst) into buf. 0 on success, else one of these, each with one meaning:
 *   -ENOENT   the pack file is missing
 *   -EBADMSG  the pack has no valid seek table (truncated, or not a seekable pack)
 *   -ERANGE   [off, off + len) does not lie within the pack's stream (the catalog and the pack
 *             disagree about where a file is)
 *   -EIO      a frame is corrupt (checksum mismatch)
 *   -EREMOTEIO the pack could not be read (a disk error; object storage failing after its
 *             retries)
 *   -ENOMEM, or another -errno from opening or reading the pack.
 * A fetch that failed is the answer to reads of its frames for a moment after
 * (FETCH_FAILURE_SECONDS): the same error, without asking the store again. */
int pack_cache_read(pack_cache *pc, const char *key, uint64_t off, void *buf, size_t len);

/* Zero-copy access: the decoded frames holding [off, off + len) stay pinned in the cache, and
 * seg[] points into them, until pack_cache_unpin(). -E2BIG when the range spans more than
 * PACK_PIN_MAX frames (use pack_cache_read then); other errors as pack_cache_read. */
#define PACK_PIN_MAX 16
struct pack_pin {
	unsigned n;
	struct {
		const void *data;
		size_t len;
	} seg[PACK_PIN_MAX];
	void *frame[PACK_PIN_MAX];
	void *pack;
};
int pack_cache_pin(pack_cache *pc, const char *key, uint64_t off, size_t len, struct pack_pin *pin);
void pack_cache_unpin(pack_cache *pc, struct pack_pin *pin);

struct pack_cache_stats {
	uint64_t hits, misses, evictions;
	uint64_t fetches, fetched_bytes; /* positional reads of frames (ranged GETs), their bytes */
	uint64_t disk_hits;              /* frames decoded from the disk cache */
	size_t bytes;
};
void pack_cache_get_stats(pack_cache *pc, struct pack_cache_stats *st);

/* The index of the pack at key, read through the cache (its verified table and trailer, its
 * frames) and checked as pack_index_read checks it. */
int pack_cache_index(pack_cache *pc, const char *key, struct pack_index *out, char *err,
		     size_t errlen);

#endif
