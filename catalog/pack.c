/* pack.c: see pack.h. */
#include "pack.h"
#include "seekable.h"
#include "hash.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (1u << 20) /* a multiple of CB_DIRECT_ALIGN */

struct pack_writer {
	struct archive *a;
	seekable_writer *sw;
	char *buf;
	/* Names are bytes. libarchive translates them from the locale's charset to the UTF-8 of pax
	 * headers, so headers are written under C.UTF-8 on this thread, whatever the process's
	 * locale: a UTF-8 name goes in as it is; one that is not UTF-8 cannot be translated and
	 * libarchive writes its bytes unchanged under the pax keyword hdrcharset=BINARY (with
	 * ARCHIVE_WARN). GNU tar lists and extracts such members under their bytes. (locale_t)0
	 * when C.UTF-8 is missing: the caller's locale then decides which names are UTF-8. */
	locale_t utf8;
	int err; /* sticky: first failure */
	char msg[256];
};

int pack_key_new(struct strbuf *key)
{
	unsigned char id[16];
	char hex[33];
	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return -EIO;
	hex_encode(id, sizeof(id), hex);
	return sb_printf(key, "packs/%.2s/%s.tar.zst", hex, hex);
}

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	pack_writer *w = ctx;
	if (w->err) { /* a failed or abandoned pack: write nothing more */
		archive_set_error(a, -w->err, "%s", strerror(-w->err));
		return -1;
	}
	int r = seekable_writer_write(w->sw, buf, len);
	if (r < 0) {
		const char *why = seekable_writer_why(w->sw);
		archive_set_error(a, -r, "%s", why ? why : cb_backend_why(r));
		return -1;
	}
	return (la_ssize_t)len;
}

/* Maps a libarchive failure to -errno, remembering the first error. */
static int fail(pack_writer *w, int fallback)
{
	if (w->err == 0) {
		int e = archive_errno(w->a);
		w->err = e > 0 ? -e : fallback;
		const char *s = archive_error_string(w->a);
		if (s)
			snprintf(w->msg, sizeof(w->msg), "%s", s);
	}
	return w->err;
}

int pack_writer_new(pack_writer **out, struct cb_upload *sink, int level, unsigned nthreads,
		    size_t frame_size)
{
	pack_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	int r = seekable_writer_new(&w->sw, sink, level, nthreads,
				    frame_size ? frame_size : SEEKABLE_DEFAULT_FRAME_SIZE);
	if (r < 0)
		goto fail;
	r = -ENOMEM;
	w->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	w->buf = direct_chunk_alloc(COPY_CHUNK);
	w->a = archive_write_new();
	if (!w->buf || !w->a)
		goto fail;
	/* No blocking: every header and data byte reaches sink_write as it is produced, so the
	 * stream offset after archive_write_header() is where the member's data begins. */
	if (archive_write_set_format_pax(w->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK ||
	    archive_write_open2(w->a, w, NULL, sink_write, NULL, NULL) != ARCHIVE_OK) {
		r = fail(w, -EIO);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	pack_writer_free(w);
	return r;
}

static int write_header(pack_writer *w, const struct pack_member *m, const char *link,
			uint64_t *data_off)
{
	if (w->err)
		return w->err;
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return w->err = -ENOMEM;
	archive_entry_set_pathname(e, m->path);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, m->mode & 07777);
	if (link) {
		archive_entry_set_hardlink(e, link);
		archive_entry_set_size(e, 0);
	} else {
		archive_entry_set_size(e, (la_int64_t)m->size);
	}
	archive_entry_set_uid(e, m->uid);
	archive_entry_set_gid(e, m->gid);
	archive_entry_set_mtime(e, m->mtime_ns / 1000000000, m->mtime_ns % 1000000000);
	locale_t caller = w->utf8 ? uselocale(w->utf8) : (locale_t)0;
	int r = archive_write_header(w->a, e);
	if (caller)
		uselocale(caller);
	archive_entry_free(e);
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) /* WARN: a name written as bytes, see utf8 */
		return fail(w, -EIO);
	r = seekable_writer_cut(w->sw);
	if (r < 0)
		return w->err = r;
	*data_off = seekable_writer_offset(w->sw);
	return 0;
}

static int write_data(pack_writer *w, const void *buf, size_t len)
{
	la_ssize_t n = archive_write_data(w->a, buf, len);
	if (n < 0 || (size_t)n != len)
		return fail(w, -EIO);
	return 0;
}

int pack_writer_add_fd(pack_writer *w, const struct pack_member *m, int src_fd,
		       unsigned char sha256[32], uint64_t *data_off,
		       const volatile sig_atomic_t *cancel, progress_fn progress, void *pctx)
{
	sha256_ctx *h;
	int r = sha256_new(&h);
	if (r < 0)
		return w->err = r;
	r = write_header(w, m, NULL, data_off);
	bool direct = read_once_begin(src_fd);
	uint64_t off = 0;
	while (r == 0) {
		if (cancel && *cancel) {
			r = -ECANCELED;
			break;
		}
		ssize_t n = read_once_chunk(src_fd, &direct, w->buf, COPY_CHUNK, (off_t)off);
		if (n < 0) {
			r = (int)n;
			break;
		}
		/* short only at the end of the file: it is where m->size says */
		if (n < COPY_CHUNK || off + (uint64_t)n > m->size) {
			if (off + (uint64_t)n != m->size)
				r = -ESTALE;
			else if (n > 0 && (r = sha256_update(h, w->buf, (size_t)n)) == 0)
				r = write_data(w, w->buf, (size_t)n);
			if (r == 0 && progress && n > 0)
				progress(pctx, (uint64_t)n);
			break;
		}
		if ((r = sha256_update(h, w->buf, (size_t)n)) < 0 ||
		    (r = write_data(w, w->buf, (size_t)n)) < 0)
			break;
		off += (uint64_t)n;
		if (progress)
			progress(pctx, (uint64_t)n);
	}
	if (r == 0)
		r = sha256_final(h, sha256);
	sha256_free(h);
	if (r < 0 && w->err == 0)
		w->err = r;
	return r;
}

int pack_writer_add_buffer(pack_writer *w, const struct pack_member *m, const void *data,
			   uint64_t *data_off)
{
	int r = write_header(w, m, NULL, data_off);
	if (r == 0 && m->size)
		r = write_data(w, data, (size_t)m->size);
	return r;
}

int pack_writer_add_reader(pack_writer *w, const struct pack_member *m,
			   int (*read)(void *ctx, uint64_t off, void *buf, size_t len), void *ctx,
			   unsigned char sha256[32], uint64_t *data_off)
{
	sha256_ctx *h;
	int r = sha256_new(&h);
	if (r < 0)
		return w->err = r;
	r = write_header(w, m, NULL, data_off);
	for (uint64_t off = 0; r == 0 && off < m->size;) {
		size_t n = m->size - off < COPY_CHUNK ? (size_t)(m->size - off) : COPY_CHUNK;
		r = read(ctx, off, w->buf, n) ?: sha256_update(h, w->buf, n) ?: write_data(w, w->buf, n);
		off += n;
	}
	if (r == 0)
		r = sha256_final(h, sha256);
	sha256_free(h);
	if (r < 0 && w->err == 0)
		w->err = r;
	return r;
}

int pack_writer_add_hardlink(pack_writer *w, const struct pack_member *m, const char *target)
{
	uint64_t off;
	return write_header(w, m, target, &off);
}

int pack_trailer_frame(const void *table, size_t len, uint64_t index_offset,
		       uint64_t index_size, unsigned char table_sha256[32], struct strbuf *out)
{
	unsigned char t[PACK_TRAILER_SIZE] = {0};
	if (sha256_buf(table, len, table_sha256) < 0)
		return -ENOMEM;
	put_le32(t, PACK_TRAILER_MAGIC);
	put_le32(t + 4, PACK_TRAILER_SIZE - 8);
	memcpy(t + 8, PACK_TRAILER_TAG, 8);
	put_le64(t + 16, index_offset);
	put_le64(t + 24, index_size);
	memcpy(t + 32, table_sha256, 32);
	return sb_append(out, t, sizeof(t));
}

struct trailer_ctx {
	struct pack_info *info;
};

static int make_trailer(void *ctx, const void *table, size_t len, struct strbuf *extra)
{
	struct pack_info *info = ((struct trailer_ctx *)ctx)->info;
	return pack_trailer_frame(table, len, info->index_offset, info->index_size,
				  info->table_sha256, extra);
}

int pack_writer_finish(pack_writer *w, const struct pack_index *index, struct pack_info *info)
{
	memset(info, 0, sizeof(*info));
	if (w->err)
		return w->err;
	struct strbuf j = {0};
	int r = pack_index_write(index, &j);
	if (r == 0) {
		struct pack_member m = {.path = PACK_INDEX_MEMBER, .size = j.len, .mode = 0600,
					.uid = getuid(), .gid = getgid(), .mtime_ns = now_ns()};
		r = pack_writer_add_buffer(w, &m, j.buf, &info->index_offset);
		info->index_size = j.len;
	}
	sb_free(&j);
	if (r < 0)
		return r;
	if (archive_write_close(w->a) != ARCHIVE_OK)
		return fail(w, -EIO);
	struct trailer_ctx tc = {info};
	r = seekable_writer_finish(w->sw, make_trailer, &tc, &info->compressed, &info->frames);
	if (r < 0)
		w->err = r;
	return r;
}

uint64_t pack_writer_offset(const pack_writer *w)
{
	return seekable_writer_offset(w->sw);
}

const char *pack_writer_errmsg(pack_writer *w)
{
	return w && w->msg[0] ? w->msg : NULL;
}

void pack_writer_free(pack_writer *w)
{
	if (!w)
		return;
	if (w->err == 0)
		w->err = -ECANCELED; /* if still open, archive_write_free()'s close writes nothing */
	if (w->a)
		archive_write_free(w->a); /* closes, harmlessly, if still open */
	seekable_writer_free(w->sw);
	if (w->utf8)
		freelocale(w->utf8);
	free(w->buf);
	free(w);
}
