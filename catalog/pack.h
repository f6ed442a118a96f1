/* pack.h: writing a pack: a pax tar stream (libarchive) compressed as seekable zstd.
 *
 * Each member's data starts a new zstd frame, so a file's bytes begin at a frame boundary and
 * its offset in the tar stream is where a reader seeks to. `tar --zstd -xf` of a pack restores
 * the members under their names; `zstd -t` checks every frame.
 *
 * Member names are bytes: they are written as given (pax hdrcharset=BINARY), in any locale,
 * whether or not they are valid UTF-8.
 */
#ifndef CASSBACKUP_PACK_H
#define CASSBACKUP_PACK_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "hash.h"
#include "manifest.h"

/* Format 2: the last tar member lists the pack's blobs (manifest.h, struct pack_index), and a
 * trailer, a skippable frame just before the seek table, says where that member is and holds
 * the SHA-256 of the seek table frame, so a reader never trusts a damaged table:
 *   u32 PACK_TRAILER_MAGIC | u32 56 | "CBPACK2\0" | u64 index offset | u64 index size |
 *   u8[32] seek table SHA-256                                          (little-endian)
 * `zstd -d` and `tar --zstd` skip it as they skip the seek table. */
#define PACK_INDEX_MEMBER ".cassbackup/index.json"
#define PACK_TRAILER_MAGIC 0x184D2A5Bu
#define PACK_TRAILER_TAG "CBPACK2\0"
#define PACK_TRAILER_SIZE 64

typedef struct pack_writer pack_writer;

/* A new pack's key: packs/xx/ID.tar.zst with a random 128-bit ID (xx its first two digits). */
int pack_key_new(struct strbuf *key);

struct pack_member {
	const char *path; /* member name, relative */
	uint64_t size;
	uint32_t mode; /* permission bits; members are regular files */
	uint32_t uid, gid;
	int64_t mtime_ns;
};

/* Starts a pack written to sink (an upload to the store). level: zstd level; nthreads: compression threads (0: the caller's; fewer
 * run when their memory would exceed SEEKABLE_WRITER_MEMORY); frame_size: bytes of tar stream
 * per zstd frame at most (0: SEEKABLE_DEFAULT_FRAME_SIZE; over SEEKABLE_MAX_WRITE_FRAME_SIZE:
 * -EINVAL). */
int pack_writer_new(pack_writer **out, struct cb_upload *sink, int level, unsigned nthreads,
		    size_t frame_size);

/* Adds a member with m->size bytes read from src_fd, hashing them into sha256.
 * *data_off gets the offset of the member's first data byte in the tar stream.
 * -ESTALE when the file's length differs from m->size, -ECANCELED when *cancel is set, the
 * sink's error (e.g. -ENOSPC) when writing fails. Any error leaves the pack unusable. */
int pack_writer_add_fd(pack_writer *w, const struct pack_member *m, int src_fd,
		       unsigned char sha256[32], uint64_t *data_off,
		       const volatile sig_atomic_t *cancel, progress_fn progress, void *pctx);

/* Adds a member from memory (m->size bytes at data). */
int pack_writer_add_buffer(pack_writer *w, const struct pack_member *m, const void *data,
			   uint64_t *data_off);

/* Adds a member of m->size bytes that read(ctx, off, buf, len) supplies, in order, in chunks
 * of at most 1 MiB (a blob copied from another pack; read returns 0 or -errno), hashing them
 * into sha256. read's error is returned; any error leaves the pack unusable. */
int pack_writer_add_reader(pack_writer *w, const struct pack_member *m,
			   int (*read)(void *ctx, uint64_t off, void *buf, size_t len), void *ctx,
			   unsigned char sha256[32], uint64_t *data_off);

/* Adds a member that is a hard link to an earlier member `target` (same bytes): `tar -x`
 * recreates the file without the pack storing its bytes twice. */
int pack_writer_add_hardlink(pack_writer *w, const struct pack_member *m, const char *target);

/* What finish wrote, for the catalog. */
struct pack_info {
	uint64_t compressed;           /* bytes of the pack */
	uint32_t frames;
	uint64_t index_offset, index_size; /* of PACK_INDEX_MEMBER's data in the tar stream */
	unsigned char table_sha256[32];    /* of the seek table frame */
};

/* The trailer frame for a seek table frame (table, len), appended to out; table_sha256 gets
 * the table's hash. (pack_writer_finish writes it; exposed for tests of readers.) */
int pack_trailer_frame(const void *table, size_t len, uint64_t index_offset,
		       uint64_t index_size, unsigned char table_sha256[32], struct strbuf *out);

/* Adds index (every blob whose data this pack holds) as the last member, PACK_INDEX_MEMBER,
 * ends the tar stream, and writes the trailer and the seek table. */
int pack_writer_finish(pack_writer *w, const struct pack_index *index, struct pack_info *info);

/* Bytes of tar stream written so far (where the next member's header goes). */
uint64_t pack_writer_offset(const pack_writer *w);

/* libarchive's message for the last failure, if it had one; else NULL. */
const char *pack_writer_errmsg(pack_writer *w);

void pack_writer_free(pack_writer *w); /* accepts NULL */

#endif
