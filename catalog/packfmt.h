/* packfmt.h: reading the format-2 pack (pack.h writes it): its trailer, seek table and index,
 * each checked where it is read, so that nothing above ever uses a damaged table or a blob
 * outside the pack's data. No cache, no threads: packread.h caches what is read through here.
 */
#ifndef CASSBACKUP_PACKFMT_H
#define CASSBACKUP_PACKFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "io.h"
#include "manifest.h"
#include "seekable.h"

struct pack_trailer {
	uint64_t index_offset, index_size;
	unsigned char table_sha256[32];
};

#define PACK_INDEX_MAX (256u << 20)

/* Reads a pack's seek table and checks it against the trailer's SHA-256 (and the trailer's
 * index location against the table), so a damaged table is never used: -EBADMSG then. */
int pack_table_read(struct cb_io *io, struct seek_table **out, struct pack_trailer *tr);

/* Reads and parses the pack's index member, and checks that every blob's data starts a frame
 * and lies before the index: -EBADMSG (err says why) otherwise. */
int pack_index_read(struct cb_io *io, const struct seek_table *t, const struct pack_trailer *tr,
		    struct pack_index *out, char *err, size_t errlen);

/* What a pack says of itself, verified. */
struct pack_meta {
	uint64_t size;             /* of the object */
	struct seek_table *table;  /* its frames tile the object up to the trailer */
	struct pack_trailer trailer;
	struct pack_index index;   /* every blob at a frame start before the index, none overlapping */
};

/* Reads and verifies the pack at io: trailer, seek table (against the SHA-256 the trailer
 * holds, tiling the object) and index (pack_index_read). The one place a whole pack is
 * verified (a reader of frames needs only pack_table_read). 0, or -EBADMSG (damaged) or the
 * read's error, with one line in err; *out is the caller's (pack_meta_free) on success. */
int pack_meta_read(struct cb_io *io, struct pack_meta *out, char *err, size_t errlen);
void pack_meta_free(struct pack_meta *m); /* accepts a zeroed one */

/* For packread.c, which reads the index through its cache: the checks of pack_index_read on
 * index bytes already read, and the bound on their size (-EBADMSG, err says why). */
int pack_index_parse_checked(const char *buf, const struct seek_table *t,
			     const struct pack_trailer *tr, struct pack_index *out, char *err,
			     size_t errlen);
int pack_index_size_ok(const struct pack_trailer *tr, char *err, size_t errlen);

/* A failed read of a pack (the disk, object storage after its retries) as -EREMOTEIO, so that
 * it is not taken for -EIO, a corrupt frame; bytes that fail authentication (-EBADMSG from an
 * encrypted store's backend) as -EIO: damaged, as a checksum that fails. Other errors as they
 * are. */
int pack_read_error(ssize_t got);

/* The one text for each error of reading a pack, each with its one meaning (packread.h
 * pack_cache_read): "pack file is missing" for -ENOENT...; strerror's for any other. For
 * -EREMOTEIO it adds what the store said (this thread's cb_backend_last_error(), which a read
 * of the pack cache sets whichever thread fetched): call it in the thread whose read failed,
 * before its next call of the store. Never NULL; valid until this thread's next call. */
const char *pack_cache_strerror(int err);

#endif
