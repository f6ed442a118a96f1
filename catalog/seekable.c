/* seekable.c: zstd seekable format writer and reader; see seekable.h. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateCCtxSize_usingCParams, exported by libzstd */
#include "seekable.h"

#include <zstd_errors.h>
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- writer ----------------------------------------------------------------------------- */

enum job_state { JOB_FREE, JOB_QUEUED, JOB_BUSY, JOB_DONE };

struct job {
	unsigned char *in;
	size_t in_len;
	unsigned char *out;
	size_t out_len;
	enum job_state state;
	int err;
	uint64_t seq;
};

struct seekable_writer {
	struct cb_upload *sink;
	int level;
	size_t frame_size;
	size_t out_cap;

	unsigned nthreads;
	pthread_t *threads;
	unsigned started;
	pthread_t flusher;
	bool flusher_started;
	pthread_mutex_t mu;
	pthread_cond_t cv_work; /* a job was queued, or stop */
	pthread_cond_t cv_done; /* a job was compressed, or stop */
	pthread_cond_t cv_free; /* a job was written out and its slot freed */
	bool stop;

	struct job *jobs;
	unsigned njobs;
	struct job *cur;    /* job being filled by the caller, or NULL */
	uint64_t next_seq;  /* sequence number the next filled job gets */
	uint64_t flush_seq; /* next sequence number to write out */

	ZSTD_CCtx *cctx; /* inline compression (nthreads == 0) */
	uint64_t input;
	uint64_t written;
	uint32_t *entries; /* 3 per frame: compressed, decompressed, checksum */
	uint32_t nentries, entries_cap;
	int err;       /* the caller's sticky error */
	int flush_err; /* the flusher's first error (under mu) */
	char flush_why[512]; /* the backend's words for it (told per thread: kept from the
			      * flusher's, set once before flush_err) */
};

/* Start writeback every this many output bytes, so dirty pages don't pile up for the final
 * fsync and the disk works while we compress. */

static ZSTD_CCtx *make_cctx(int level)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	if (!c)
		return NULL;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1))) {
		ZSTD_freeCCtx(c);
		return NULL;
	}
	return c;
}

static void compress_job(ZSTD_CCtx *c, struct job *j, size_t out_cap)
{
	size_t n = ZSTD_compress2(c, j->out, out_cap, j->in, j->in_len);
	if (ZSTD_isError(n)) {
		j->err = ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
		j->out_len = 0;
	} else {
		j->err = 0;
		j->out_len = n;
	}
}

static void *worker_main(void *arg)
{
	seekable_writer *w = arg;
	ZSTD_CCtx *c = make_cctx(w->level);

	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct job *pick = NULL;
		for (unsigned i = 0; i < w->njobs; i++) {
			struct job *j = &w->jobs[i];
			if (j->state == JOB_QUEUED && (!pick || j->seq < pick->seq))
				pick = j;
		}
		if (!pick) {
			if (w->stop)
				break;
			pthread_cond_wait(&w->cv_work, &w->mu);
			continue;
		}
		pick->state = JOB_BUSY;
		pthread_mutex_unlock(&w->mu);
		if (c)
			compress_job(c, pick, w->out_cap);
		else
			pick->err = -ENOMEM;
		pthread_mutex_lock(&w->mu);
		pick->state = JOB_DONE;
		pthread_cond_broadcast(&w->cv_done);
	}
	pthread_mutex_unlock(&w->mu);
	ZSTD_freeCCtx(c);
	return NULL;
}

/* The seek table's checksum of a frame we wrote: zstd's own content checksum, its last 4
 * bytes, is the same low 32 bits of the XXH64 of its content that the format names. */
static uint32_t frame_checksum(const unsigned char *frame, size_t csize)
{
	return csize >= 4 ? get_le32(frame + csize - 4) : 0;
}

static int add_entry(seekable_writer *w, uint32_t csize, uint32_t dsize, uint32_t sum)
{
	if (w->nentries >= SEEKABLE_MAX_FRAMES)
		return -EFBIG;
	if (w->nentries == w->entries_cap) {
		uint32_t cap = w->entries_cap ? w->entries_cap * 2 : 256;
		uint32_t *p = realloc(w->entries, (size_t)cap * 3 * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->entries = p;
		w->entries_cap = cap;
	}
	w->entries[3 * w->nentries] = csize;
	w->entries[3 * w->nentries + 1] = dsize;
	w->entries[3 * w->nentries + 2] = sum;
	w->nentries++;
	return 0;
}

/* Writes a compressed job to the sink and records its seek table entry. */
static int emit_job(seekable_writer *w, struct job *j)
{
	int r = j->err;
	if (r == 0)
		r = cb_upload_write(w->sink, j->out, j->out_len);
	if (r == 0)
		r = add_entry(w, (uint32_t)j->out_len, (uint32_t)j->in_len,
			      frame_checksum(j->out, j->out_len));
	if (r == 0)
		w->written += j->out_len;
	return r;
}

/* Writes compressed jobs to the sink in order, freeing their slots. Runs on its own thread so that
 * the caller's reading and hashing, the compression and the output overlap. */
static void *flusher_main(void *arg)
{
	seekable_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct job *j = &w->jobs[w->flush_seq % w->njobs];
		if (j->state != JOB_DONE) {
			if (w->stop && w->flush_seq == w->next_seq)
				break;
			if (w->stop && j->state == JOB_FREE)
				break;
			pthread_cond_wait(&w->cv_done, &w->mu);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		int r = w->flush_err ? w->flush_err : emit_job(w, j);
		pthread_mutex_lock(&w->mu);
		if (r < 0 && w->flush_err == 0) {
			w->flush_err = r;
			snprintf(w->flush_why, sizeof(w->flush_why), "%s", cb_backend_last_error());
		}
		j->in_len = 0;
		j->state = JOB_FREE;
		w->flush_seq++;
		pthread_cond_broadcast(&w->cv_free);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static int submit(seekable_writer *w)
{
	struct job *j = w->cur;
	w->cur = NULL;
	j->seq = w->next_seq++;
	if (w->nthreads == 0) {
		compress_job(w->cctx, j, w->out_cap);
		int r = emit_job(w, j);
		j->in_len = 0;
		w->flush_seq++;
		return r;
	}
	pthread_mutex_lock(&w->mu);
	j->state = JOB_QUEUED;
	pthread_cond_signal(&w->cv_work);
	int r = w->flush_err;
	pthread_mutex_unlock(&w->mu);
	return r;
}

/* Makes w->cur a free job, waiting for the flusher to free its slot if needed. */
static int acquire(seekable_writer *w)
{
	struct job *j = &w->jobs[w->next_seq % w->njobs];
	int r = 0;
	if (w->nthreads) {
		pthread_mutex_lock(&w->mu);
		while (j->state != JOB_FREE && w->flush_err == 0)
			pthread_cond_wait(&w->cv_free, &w->mu);
		r = w->flush_err;
		pthread_mutex_unlock(&w->mu);
	}
	if (r == 0)
		w->cur = j;
	return r;
}

/* Sizes the pipeline to SEEKABLE_WRITER_MEMORY: a job holds a frame and its compressed bound,
 * a worker a zstd context. Ideally 8 jobs per worker (so reading, compressing and writing
 * overlap); never fewer than workers + 2 (one being filled, one being written out). */
static void size_pipeline(size_t frame_size, int level, unsigned *nthreads, unsigned *njobs)
{
	size_t job = frame_size + ZSTD_compressBound(frame_size);
	size_t ctx = ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(level, frame_size, 0));
	size_t budget = SEEKABLE_WRITER_MEMORY;
	unsigned t = *nthreads;
	if (t == 0) {
		*njobs = 1;
		return;
	}
	while (t > 1 && (t + 2) * job + t * ctx > budget)
		t--;
	size_t fit = budget > t * ctx ? (budget - t * ctx) / job : 0;
	size_t want = 8 * (size_t)t + 2;
	*njobs = (unsigned)(fit < t + 2 ? t + 2 : fit < want ? fit : want);
	*nthreads = t;
}

int seekable_writer_new(seekable_writer **out, struct cb_upload *sink, int level,
			unsigned nthreads, size_t frame_size)
{
	if (frame_size == 0 || frame_size > SEEKABLE_MAX_WRITE_FRAME_SIZE)
		return -EINVAL;
	seekable_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->sink = sink;
	w->level = level;
	w->frame_size = frame_size;
	w->out_cap = ZSTD_compressBound(frame_size);
	size_pipeline(frame_size, level, &nthreads, &w->njobs);
	w->nthreads = nthreads;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv_work, NULL);
	pthread_cond_init(&w->cv_done, NULL);
	pthread_cond_init(&w->cv_free, NULL);
	int r = -ENOMEM;
	w->jobs = calloc(w->njobs, sizeof(*w->jobs));
	if (!w->jobs)
		goto fail;
	for (unsigned i = 0; i < w->njobs; i++) {
		w->jobs[i].in = malloc(frame_size);
		w->jobs[i].out = malloc(w->out_cap);
		if (!w->jobs[i].in || !w->jobs[i].out)
			goto fail;
	}
	if (nthreads == 0) {
		w->cctx = make_cctx(level);
		if (!w->cctx)
			goto fail;
	} else {
		w->threads = calloc(nthreads, sizeof(*w->threads));
		if (!w->threads)
			goto fail;
		for (; w->started < nthreads; w->started++) {
			int e = pthread_create(&w->threads[w->started], NULL, worker_main, w);
			if (e) {
				r = -e;
				goto fail;
			}
		}
		int e = pthread_create(&w->flusher, NULL, flusher_main, w);
		if (e) {
			r = -e;
			goto fail;
		}
		w->flusher_started = true;
	}
	*out = w;
	return 0;
fail:
	seekable_writer_free(w);
	return r;
}

int seekable_writer_write(seekable_writer *w, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len && w->err == 0) {
		if (!w->cur && (w->err = acquire(w)) < 0)
			break;
		size_t n = w->frame_size - w->cur->in_len;
		if (n > len)
			n = len;
		memcpy(w->cur->in + w->cur->in_len, p, n);
		w->cur->in_len += n;
		w->input += n;
		p += n;
		len -= n;
		if (w->cur->in_len == w->frame_size)
			w->err = submit(w);
	}
	return w->err;
}

int seekable_writer_cut(seekable_writer *w)
{
	if (w->err == 0 && w->cur && w->cur->in_len > 0)
		w->err = submit(w);
	return w->err;
}

uint64_t seekable_writer_offset(const seekable_writer *w)
{
	return w->input;
}

/* Waits until every frame is compressed and written out. */
static int drain(seekable_writer *w)
{
	if (seekable_writer_cut(w) < 0)
		return w->err;
	if (w->cur) { /* acquired but empty */
		w->cur->state = JOB_FREE;
		w->cur = NULL;
	}
	if (w->nthreads) {
		pthread_mutex_lock(&w->mu);
		while (w->flush_seq < w->next_seq && w->flush_err == 0)
			pthread_cond_wait(&w->cv_free, &w->mu);
		int r = w->flush_err;
		pthread_mutex_unlock(&w->mu);
		if (r < 0)
			return w->err = r;
	}
	return 0;
}

/* The seek table frame of what was written, into t. */
static int build_table(const seekable_writer *w, struct strbuf *t)
{
	size_t esize = 12;
	size_t tsize = 8 + (size_t)w->nentries * esize + 9;
	unsigned char *p = malloc(tsize), *q = p;
	if (!p)
		return -ENOMEM;
	put_le32(q, SEEKABLE_SKIPPABLE_MAGIC);
	put_le32(q + 4, (uint32_t)(tsize - 8));
	q += 8;
	for (uint32_t i = 0; i < w->nentries; i++, q += esize) {
		put_le32(q, w->entries[3 * i]);
		put_le32(q + 4, w->entries[3 * i + 1]);
		put_le32(q + 8, w->entries[3 * i + 2]);
	}
	put_le32(q, w->nentries);
	q[4] = 0x80; /* descriptor: checksums */
	put_le32(q + 5, SEEKABLE_MAGIC);
	int r = sb_append(t, p, tsize);
	free(p);
	return r;
}

int seekable_writer_finish(seekable_writer *w, seekable_trailer_fn trailer, void *ctx,
			   uint64_t *compressed, uint32_t *frames)
{
	int r = drain(w);
	if (r < 0)
		return r;
	struct strbuf table = {0}, extra = {0};
	r = build_table(w, &table);
	if (r == 0 && trailer)
		r = trailer(ctx, table.buf, table.len, &extra);
	if (r == 0 && extra.len)
		r = cb_upload_write(w->sink, extra.buf, extra.len);
	if (r == 0)
		r = cb_upload_write(w->sink, table.buf, table.len);
	if (r == 0)
		w->written += extra.len + table.len;
	sb_free(&table);
	sb_free(&extra);
	if (r < 0)
		return w->err = r;
	if (compressed)
		*compressed = w->written;
	if (frames)
		*frames = w->nentries;
	w->err = -EINVAL; /* spent */
	return 0;
}

unsigned seekable_writer_threads(const seekable_writer *w)
{
	return w->nthreads;
}

void seekable_writer_free(seekable_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv_work);
	pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < w->started; i++)
		pthread_join(w->threads[i], NULL);
	if (w->flusher_started) {
		pthread_mutex_lock(&w->mu);
		pthread_cond_broadcast(&w->cv_done);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->flusher, NULL);
	}
	free(w->threads);
	if (w->jobs) {
		for (unsigned i = 0; i < w->njobs; i++) {
			free(w->jobs[i].in);
			free(w->jobs[i].out);
		}
	}
	free(w->jobs);
	ZSTD_freeCCtx(w->cctx);
	free(w->entries);
	pthread_cond_destroy(&w->cv_free);
	pthread_cond_destroy(&w->cv_done);
	pthread_cond_destroy(&w->cv_work);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/* --- reader ----------------------------------------------------------------------------- */

void seek_table_free(struct seek_table *t)
{
	if (!t)
		return;
	free(t->coff);
	free(t->doff);
	free(t->sum);
	free(t);
}

int seek_table_size(struct cb_io *io, uint64_t *tsize)
{
	unsigned char foot[9];
	if (io->size < 8 + 9)
		return -EINVAL;
	ssize_t n = cb_io_pread(io, foot, sizeof(foot), io->size - 9);
	if (n < 0)
		return (int)n;
	if (n != 9 || get_le32(foot + 5) != SEEKABLE_MAGIC)
		return -EINVAL;
	uint32_t frames = get_le32(foot);
	unsigned desc = foot[4];
	if (desc & 0x7c) /* reserved bits must be zero */
		return -EINVAL;
	size_t esize = (desc & 0x80) ? 12 : 8;
	if (frames > SEEKABLE_MAX_FRAMES)
		return -EINVAL;
	*tsize = 8 + (uint64_t)frames * esize + 9;
	return *tsize > io->size ? -EINVAL : 0;
}

int seek_table_parse(const unsigned char *buf, uint64_t tsize, uint64_t frames_end,
		     struct seek_table **out)
{
	*out = NULL;
	if (tsize < 17 || get_le32(buf) != SEEKABLE_SKIPPABLE_MAGIC || get_le32(buf + 4) != tsize - 8 ||
	    get_le32(buf + tsize - 4) != SEEKABLE_MAGIC)
		return -EINVAL;
	uint32_t frames = get_le32(buf + tsize - 9);
	size_t esize = (buf[tsize - 5] & 0x80) ? 12 : 8;
	if ((buf[tsize - 5] & 0x7c) || frames > SEEKABLE_MAX_FRAMES ||
	    8 + (uint64_t)frames * esize + 9 != tsize)
		return -EINVAL;
	struct seek_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->frames = frames;
	t->coff = malloc(((size_t)frames + 1) * sizeof(uint64_t));
	t->doff = malloc(((size_t)frames + 1) * sizeof(uint64_t));
	t->sum = esize == 12 ? malloc(((size_t)frames + 1) * sizeof(uint32_t)) : NULL;
	if (!t->coff || !t->doff || (esize == 12 && !t->sum)) {
		seek_table_free(t);
		return -ENOMEM;
	}
	uint64_t c = 0, d = 0;
	const unsigned char *p = buf + 8;
	for (uint32_t i = 0; i < frames; i++, p += esize) {
		t->coff[i] = c;
		t->doff[i] = d;
		uint32_t dsize = get_le32(p + 4);
		if (dsize > SEEKABLE_MAX_FRAME_SIZE) {
			seek_table_free(t);
			return -EINVAL;
		}
		c += get_le32(p);
		d += dsize;
		if (t->sum)
			t->sum[i] = get_le32(p + 8);
	}
	t->coff[frames] = c;
	t->doff[frames] = d;
	if (c != frames_end) { /* frames must tile the file up to where the caller says */
		seek_table_free(t);
		return -EINVAL;
	}
	*out = t;
	return 0;
}

int seek_table_read(struct cb_io *io, struct seek_table **out)
{
	*out = NULL;
	uint64_t tsize;
	int r = seek_table_size(io, &tsize);
	if (r < 0)
		return r;
	unsigned char *buf = malloc(tsize);
	if (!buf)
		return -ENOMEM;
	ssize_t n = cb_io_pread(io, buf, tsize, io->size - tsize);
	r = n < 0 ? (int)n : n != (ssize_t)tsize ? -EINVAL : seek_table_parse(buf, tsize, io->size - tsize, out);
	free(buf);
	return r;
}

uint32_t seek_table_frame_at(const struct seek_table *t, uint64_t off)
{
	/* Last frame whose start is <= off; empty frames share a start and are skipped past. */
	uint32_t lo = 0, hi = t->frames;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->doff[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int seekable_decode_frame(struct cb_io *io, const struct seek_table *t, uint32_t i, ZSTD_DCtx *dctx,
			  void *dst, void **scratch, size_t *scratch_cap)
{
	size_t csize = (size_t)(t->coff[i + 1] - t->coff[i]);
	size_t dsize = seek_table_frame_size(t, i);
	if (*scratch_cap < csize) {
		void *p = realloc(*scratch, csize);
		if (!p)
			return -ENOMEM;
		*scratch = p;
		*scratch_cap = csize;
	}
	ssize_t n = cb_io_pread(io, *scratch, csize, t->coff[i]);
	if (n < 0) /* a failed read is not to be taken for a corrupt frame; bytes that fail
		    * authentication are one (pack_read_error) */
		return n == -EIO ? -EREMOTEIO : n == -EBADMSG ? -EIO : (int)n;
	if ((size_t)n != csize || !seek_table_frame_matches(t, i, *scratch, csize))
		return -EIO;
	return seekable_decode_buf(*scratch, csize, dctx, dst, dsize);
}

bool seek_table_frame_matches(const struct seek_table *t, uint32_t i, const void *src, size_t csize)
{
	return !t->sum || (csize >= 4 && frame_checksum(src, csize) == t->sum[i]);
}

int seekable_decode_buf(const void *src, size_t csize, ZSTD_DCtx *dctx, void *dst, size_t dsize)
{
	if (dsize == 0)
		return 0; /* a skippable or empty frame holds no stream bytes */
	/* The frame must be exactly one zstd frame; its content size, when it records one (the
	 * format does not require it), must match the seek table. */
	unsigned long long fcs = ZSTD_getFrameContentSize(src, csize);
	if ((fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != dsize) ||
	    ZSTD_findFrameCompressedSize(src, csize) != csize)
		return -EIO;
	size_t got = ZSTD_decompressDCtx(dctx, dst, dsize, src, csize);
	if (ZSTD_isError(got))
		return ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
	return got == dsize ? 0 : -EIO;
}

int seekable_read(struct cb_io *io, const struct seek_table *t, ZSTD_DCtx *dctx, uint64_t off,
		  void *buf, size_t len)
{
	if (off + len > t->doff[t->frames] || off + len < off)
		return -EINVAL;
	void *scratch = NULL, *frame = NULL;
	size_t scratch_cap = 0, frame_cap = 0;
	int r = 0;
	unsigned char *dst = buf;
	while (len) {
		uint32_t i = seek_table_frame_at(t, off);
		size_t fsize = seek_table_frame_size(t, i);
		if (frame_cap < fsize) {
			void *p = realloc(frame, fsize);
			if (!p) {
				r = -ENOMEM;
				break;
			}
			frame = p;
			frame_cap = fsize;
		}
		r = seekable_decode_frame(io, t, i, dctx, frame, &scratch, &scratch_cap);
		if (r < 0)
			break;
		size_t in = (size_t)(off - t->doff[i]);
		size_t n = fsize - in < len ? fsize - in : len;
		memcpy(dst, (unsigned char *)frame + in, n);
		dst += n;
		off += n;
		len -= n;
	}
	free(scratch);
	free(frame);
	return r;
}

const char *seekable_writer_why(seekable_writer *w)
{
	pthread_mutex_lock(&w->mu);
	const char *why = w->flush_err && w->flush_why[0] ? w->flush_why : NULL;
	pthread_mutex_unlock(&w->mu); /* set once, before flush_err, and never again */
	return why;
}
