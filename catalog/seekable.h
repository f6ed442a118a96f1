/* seekable.h: the zstd seekable format, written and read here from its published description
 * (zstd contrib/seekable_format/zstd_seekable_compression_format.md, version 0.1.0).
 *
 * A seekable stream is a run of independent zstd frames (each with zstd's content checksum)
 * followed by one skippable frame holding the seek table:
 *
 *   0x184D2A5E | u32 size | n x { u32 compressed, u32 decompressed [, u32 xxh64-low] }
 *              | u32 n | u8 descriptor | 0x8F92EAB1             (all little-endian)
 *
 * Plain `zstd -d` skips the seek table; our reader uses it to decode only the frames a read
 * touches. Every frame carries zstd's own content checksum, which the decoder verifies; we
 * write the per-entry checksums too (descriptor 0x80: the same low 32 bits of the content's
 * XXH64, the frame's last 4 bytes), so a frame is held to its place in the table: one copied
 * from elsewhere (another frame of the pack, a planted disk cache file) is refused. Tables
 * without them (descriptor 0, packs written before) are read as before.
 */
#ifndef CASSBACKUP_SEEKABLE_H
#define CASSBACKUP_SEEKABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "backend.h"
#include "io.h"
#include "util.h"

#define SEEKABLE_MAGIC 0x8F92EAB1u
#define SEEKABLE_SKIPPABLE_MAGIC 0x184D2A5Eu
#define SEEKABLE_MAX_FRAMES 0x8000000u
#define SEEKABLE_MAX_FRAME_SIZE (1u << 30) /* decompressed bytes in one frame we accept */
/* Store format 2: 128 KiB frames (design.md: a cold random 4 KiB read decodes one frame; with
 * 1 MiB frames its p99 was 25-41x a plain file's, with 128 KiB 4-6x, for 0-1.5% more pack). */
#define SEEKABLE_DEFAULT_FRAME_SIZE (128u << 10)

/* Frames we write hold at most 4 MiB: a read through the mount decodes a whole frame, and the
 * mount's frame cache (16 MiB by default) must hold several frames for concurrent readers, or
 * they evict each other's frames and every read decodes again. */
#define SEEKABLE_MAX_WRITE_FRAME_SIZE (4u << 20)

/* The writer's memory: in-flight frames (input plus compressed output) and the workers' zstd
 * contexts together stay within this. Fewer frames are queued, then fewer workers run, than
 * asked for when they would not fit; at least one worker always runs. */
#define SEEKABLE_WRITER_MEMORY (128u << 20)

/* --- writer ----------------------------------------------------------------------------- */

typedef struct seekable_writer seekable_writer;

/* Creates a writer appending to sink (an upload to the store, at the stream's start). Frames hold at most
 * frame_size bytes of input (1 to SEEKABLE_MAX_WRITE_FRAME_SIZE, else -EINVAL); nthreads > 0
 * compresses up to that many frames in parallel on worker threads (output order is kept; fewer
 * when SEEKABLE_WRITER_MEMORY would be exceeded), 0 compresses on the caller's thread. */
int seekable_writer_new(seekable_writer **out, struct cb_upload *sink, int level,
			unsigned nthreads, size_t frame_size);

/* The backend's words for the failure of a write from the writer's own thread (a refused
 * upload: the backend tells them per thread, cb_backend_last_error), or NULL. */
const char *seekable_writer_why(seekable_writer *w);

/* Appends input. Errors are sticky: once a call fails, every later call fails the same way. */
int seekable_writer_write(seekable_writer *w, const void *buf, size_t len);

/* Ends the current frame, so the next byte written starts a new frame. No-op when empty. */
int seekable_writer_cut(seekable_writer *w);

/* Bytes of input accepted so far (the offset in the decompressed stream). */
uint64_t seekable_writer_offset(const seekable_writer *w);

/* Given the seek table frame about to be written (table, len), appends to extra a skippable
 * frame to write just before it (or nothing). 0 or -errno. */
typedef int (*seekable_trailer_fn)(void *ctx, const void *table, size_t len, struct strbuf *extra);

/* Compresses and writes what is pending, then trailer's frame (when trailer is not NULL), then
 * the seek table. On success *compressed gets the total bytes written to the sink and *frames
 * the number of frames. The writer is spent afterwards. */
int seekable_writer_finish(seekable_writer *w, seekable_trailer_fn trailer, void *ctx,
			   uint64_t *compressed, uint32_t *frames);

/* Worker threads actually running (0: compression on the caller's thread). */
unsigned seekable_writer_threads(const seekable_writer *w);

/* Stops worker threads and frees. Accepts NULL. Does not close fd. */
void seekable_writer_free(seekable_writer *w);

/* --- reader ----------------------------------------------------------------------------- */

struct seek_table {
	uint32_t frames;
	uint64_t *coff; /* frames + 1 entries: compressed offset of frame i; coff[frames] = end */
	uint64_t *doff; /* frames + 1 entries: decompressed offset of frame i; doff[frames] = total */
	uint32_t *sum;  /* frame i's checksum; NULL: the table has none */
};

/* Is src (csize bytes, read for frame i) the frame the table names there: its checksum is the
 * table's (true when the table has no checksums)? */
bool seek_table_frame_matches(const struct seek_table *t, uint32_t i, const void *src, size_t csize);

/* The size of the seek table frame at the end of io, from its footer. -EINVAL when there is no
 * footer. */
int seek_table_size(struct cb_io *io, uint64_t *tsize);

/* Parses a seek table frame (tsize bytes at buf) whose frames must end exactly at compressed
 * offset frames_end. -EINVAL when malformed. */
int seek_table_parse(const unsigned char *buf, uint64_t tsize, uint64_t frames_end,
		     struct seek_table **out);

/* Reads and validates the seek table at the end of io. -EINVAL (with no table or a malformed
 * one), -EIO for read errors, -ENOMEM. *out is owned by the caller (seek_table_free). */
int seek_table_read(struct cb_io *io, struct seek_table **out);
void seek_table_free(struct seek_table *t);

/* Index of the frame holding decompressed offset off; requires off < doff[frames]. */
uint32_t seek_table_frame_at(const struct seek_table *t, uint64_t off);

static inline size_t seek_table_frame_size(const struct seek_table *t, uint32_t i)
{
	return (size_t)(t->doff[i + 1] - t->doff[i]);
}

/* Decodes frame i into dst (seek_table_frame_size(t, i) bytes). scratch and scratch_cap hold a
 * caller-owned buffer for the compressed bytes, grown as needed (release with free).
 * A frame whose bytes or checksum do not match gives -EIO, never wrong bytes; a failed read of
 * io -EREMOTEIO. */
int seekable_decode_frame(struct cb_io *io, const struct seek_table *t, uint32_t i, ZSTD_DCtx *dctx,
			  void *dst, void **scratch, size_t *scratch_cap);

/* Decodes one frame already in memory (csize bytes at src, as the seek table places them) into
 * dst (dsize bytes): -EIO, never wrong bytes, when it is not exactly one frame of dsize bytes
 * or its checksum does not match. */
int seekable_decode_buf(const void *src, size_t csize, ZSTD_DCtx *dctx, void *dst, size_t dsize);

/* Reads len decompressed bytes at off (must lie within the stream) without any caching. */
int seekable_read(struct cb_io *io, const struct seek_table *t, ZSTD_DCtx *dctx, uint64_t off,
		  void *buf, size_t len);

#endif
