/* diskcache.h: a size-bounded directory of small immutable files, evicted least recently used
 * first. The mount keeps fetched (compressed) pack frames and pack tables there, so that a
 * second read of the same bytes, even after a remount, costs no request to object storage.
 *
 * The directory is made 0700 (and made so when it exists), files are 0600 and appear whole or
 * not at all (written under a temporary name, then renamed). One process uses a directory at a
 * time (an flock on DIR/.lock; disk_cache_open gives -EBUSY otherwise). Contents are not
 * trusted: callers verify what they read (packread.c decodes frames, whose zstd checksum
 * catches damage, and checks tables against their SHA-256) and drop what fails.
 *
 * Thread-safe. Recency survives a remount: a file read is touched (mtime), and the order is
 * rebuilt from mtimes at open.
 */
#ifndef CASSBACKUP_DISKCACHE_H
#define CASSBACKUP_DISKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct disk_cache;

/* Opens (creating it when missing) the cache directory dir, holding at most max_bytes of files
 * (sizes rounded up to 4 KiB); files over that from an earlier, larger cache are evicted now.
 * -EBUSY when another process uses it, -ENOTDIR, -EACCES, -ENOMEM, or -errno; err gets one
 * line saying why. */
int disk_cache_open(const char *dir, uint64_t max_bytes, struct disk_cache **out,
		    struct strbuf *err);
void disk_cache_close(struct disk_cache *dc); /* accepts NULL */

/* Reads the file called name (a name_is_component, no leading '.') into *data (malloc'd, the
 * caller's) and *len, and marks it most recently used. -ENOENT when the cache does not hold it,
 * -EFBIG when it is over max bytes. */
int disk_cache_get(struct disk_cache *dc, const char *name, size_t max, void **data, size_t *len);

/* Stores data under name, replacing a file of that name, then evicts the least recently used
 * files until the cache is within its size. A file larger than the whole cache is not kept
 * (0 all the same: the cache is an optimisation). -errno when writing failed. */
int disk_cache_put(struct disk_cache *dc, const char *name, const void *data, size_t len);

/* Removes name (a file found damaged). */
void disk_cache_drop(struct disk_cache *dc, const char *name);

/* Bytes the cache holds (rounded as above). */
uint64_t disk_cache_bytes(struct disk_cache *dc);

#endif
