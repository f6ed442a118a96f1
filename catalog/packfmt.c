/* packfmt.c: reading the format-2 pack (pack.h): its trailer, its seek table verified against
 * the SHA-256 the trailer holds, its index; see packfmt.h. The one place a pack's own word on
 * itself is read and checked. */
#include "packfmt.h"
#include "backend.h"
#include "hash.h"
#include "pack.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* A failed read of the pack itself (the disk, or object storage after its retries) is
 * -EREMOTEIO, so that it is not taken for -EIO, corrupt frames. */
int pack_read_error(ssize_t got)
{
	return got == -EIO ? -EREMOTEIO : got == -EBADMSG ? -EIO : (int)got;
}

const char *pack_cache_strerror(int err)
{
	static __thread char remote[600];
	switch (err) {
	case -ENOENT: return "pack file is missing";
	case -EBADMSG: return "pack has no valid seek table";
	case -EIO: return "pack data is corrupt (checksum mismatch, or fails authentication)";
	case -EREMOTEIO:
		if (!*cb_backend_last_error())
			return "cannot read the pack from the store";
		snprintf(remote, sizeof(remote), "cannot read the pack from the store (%s)",
			 cb_backend_last_error());
		return remote;
	case -ERANGE: return "file lies beyond the end of the pack (catalog and pack disagree)";
	default: return strerror(-err);
	}
}

int pack_table_read(struct cb_io *io, struct seek_table **out, struct pack_trailer *tr)
{
	*out = NULL;
	uint64_t tsize;
	int r = seek_table_size(io, &tsize);
	if (r < 0)
		return r == -EINVAL ? -EBADMSG : pack_read_error(r);
	if (tsize + PACK_TRAILER_SIZE > io->size)
		return -EBADMSG;
	uint64_t at = io->size - tsize - PACK_TRAILER_SIZE;
	unsigned char *buf = malloc(PACK_TRAILER_SIZE + tsize);
	if (!buf)
		return -ENOMEM;
	ssize_t n = cb_io_pread(io, buf, PACK_TRAILER_SIZE + tsize, at);
	unsigned char sha[32];
	r = n < 0 ? pack_read_error(n) : n != (ssize_t)(PACK_TRAILER_SIZE + tsize) ? -EBADMSG : 0;
	if (r == 0 && (get_le32(buf) != PACK_TRAILER_MAGIC || get_le32(buf + 4) != PACK_TRAILER_SIZE - 8 ||
		       memcmp(buf + 8, PACK_TRAILER_TAG, 8) != 0))
		r = -EBADMSG;
	if (r == 0 && (r = sha256_buf(buf + PACK_TRAILER_SIZE, tsize, sha)) == 0 &&
	    memcmp(sha, buf + 32, 32) != 0)
		r = -EBADMSG; /* the table is not the one the writer hashed: never use it */
	if (r == 0) {
		tr->index_offset = get_le64(buf + 16);
		tr->index_size = get_le64(buf + 24);
		memcpy(tr->table_sha256, sha, 32);
		r = seek_table_parse(buf + PACK_TRAILER_SIZE, tsize, at, out);
		if (r == -EINVAL)
			r = -EBADMSG;
	}
	if (r == 0 && (tr->index_size > (*out)->doff[(*out)->frames] ||
		       tr->index_offset > (*out)->doff[(*out)->frames] - tr->index_size)) {
		seek_table_free(*out);
		*out = NULL;
		r = -EBADMSG;
	}
	free(buf);
	return r;
}

/* True when off is where a frame starts (every blob's data starts a frame). */
static bool at_frame_start(const struct seek_table *t, uint64_t off)
{
	if (off >= t->doff[t->frames])
		return false;
	return t->doff[seek_table_frame_at(t, off)] == off;
}

static int cmp_blob_offset(const void *a, const void *b)
{
	const struct pack_blob *x = *(const struct pack_blob *const *)a;
	const struct pack_blob *y = *(const struct pack_blob *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* True when no two blobs of the index share bytes (each is checked on its own before). */
static int blobs_disjoint(const struct pack_index *pi, char *err, size_t errlen)
{
	size_t n = pi->nblobs;
	const struct pack_blob **v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = &pi->blobs[i];
	qsort(v, n, sizeof(*v), cmp_blob_offset);
	int r = 0;
	for (size_t i = 1; r == 0 && i < n; i++) {
		if (v[i - 1]->size && v[i - 1]->offset + v[i - 1]->size > v[i]->offset) {
			snprintf(err, errlen, "its index has blobs at offsets %llu and %llu that overlap",
				 (unsigned long long)v[i - 1]->offset, (unsigned long long)v[i]->offset);
			r = -EBADMSG;
		}
	}
	free(v);
	return r;
}

/* Parses index bytes read from a pack and checks every blob against the pack's table: each
 * starts a frame within the pack's data, and no two overlap. */
int pack_index_parse_checked(const char *buf, const struct seek_table *t,
			       const struct pack_trailer *tr, struct pack_index *out, char *err,
			       size_t errlen)
{
	int r = pack_index_parse(buf, tr->index_size, out, err, errlen);
	for (size_t i = 0; r == 0 && i < out->nblobs; i++) {
		const struct pack_blob *b = &out->blobs[i];
		if ((b->size && !at_frame_start(t, b->offset)) || b->offset > tr->index_offset ||
		    b->size > tr->index_offset - b->offset) {
			snprintf(err, errlen, "pack index: blob %zu at %llu does not start a frame within "
				 "the pack's data", i, (unsigned long long)b->offset);
			r = -EBADMSG;
		}
	}
	r = r ?: blobs_disjoint(out, err, errlen);
	if (r < 0)
		pack_index_free(out);
	return r;
}

int pack_index_size_ok(const struct pack_trailer *tr, char *err, size_t errlen)
{
	if (tr->index_size <= PACK_INDEX_MAX)
		return 0;
	snprintf(err, errlen, "pack index of %llu bytes is larger than any this writes",
		 (unsigned long long)tr->index_size);
	return -EBADMSG;
}

int pack_index_read(struct cb_io *io, const struct seek_table *t, const struct pack_trailer *tr,
		    struct pack_index *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	int r = pack_index_size_ok(tr, err, errlen);
	if (r < 0)
		return r;
	ZSTD_DCtx *dctx = ZSTD_createDCtx(); /* indexing a pack is rare: a context of its own */
	char *buf = malloc(tr->index_size + 1);
	r = !dctx || !buf ? -ENOMEM : seekable_read(io, t, dctx, tr->index_offset, buf, tr->index_size);
	ZSTD_freeDCtx(dctx);
	if (r < 0)
		snprintf(err, errlen, "cannot read the pack index: %s", pack_cache_strerror(r));
	else
		r = pack_index_parse_checked(buf, t, tr, out, err, errlen);
	free(buf);
	return r;
}

int pack_meta_read(struct cb_io *io, struct pack_meta *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->size = io->size;
	int r = pack_table_read(io, &out->table, &out->trailer);
	if (r == -EBADMSG)
		snprintf(err, errlen, "damaged trailer or seek table (missing, truncated, not tiling the "
			 "%llu bytes of the pack, or not matching the SHA-256 in its trailer)",
			 (unsigned long long)io->size);
	else if (r < 0)
		snprintf(err, errlen, "cannot read its seek table: %s", pack_cache_strerror(r));
	if (r == 0 && (r = pack_index_read(io, out->table, &out->trailer, &out->index, err, errlen)) < 0)
		pack_meta_free(out);
	return r;
}

void pack_meta_free(struct pack_meta *m)
{
	seek_table_free(m->table);
	pack_index_free(&m->index);
	m->table = NULL;
}
