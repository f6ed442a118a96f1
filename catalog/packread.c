/* packread.c: see packread.h. Pack readers (by key, with their verified tables, from the disk
 * cache or the pack), fetching frames in runs, and the public calls; decoded frames are kept by
 * framecache.c, read-ahead is readahead.c, the pack format packfmt.c. */
#include "packread_i.h"
#include "io.h"
#include "backend.h"
#include "backend_i.h"
#include "diskcache.h"
#include "hash.h"
#include "pack.h"
#include "seekable.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* Per-thread decompression state. */
struct tls {
	ZSTD_DCtx *dctx;
	void *scratch;
	size_t scratch_cap;
};
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *p)
{
	struct tls *t = p;
	ZSTD_freeDCtx(t->dctx);
	free(t->scratch);
	free(t);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_destroy);
}

static struct tls *tls_get(void)
{
	pthread_once(&tls_once, tls_init);
	struct tls *t = pthread_getspecific(tls_key);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->dctx = ZSTD_createDCtx();
	if (!t->dctx) {
		free(t);
		return NULL;
	}
	if (pthread_setspecific(tls_key, t) != 0) { /* kept nowhere: it would leak at each call */
		ZSTD_freeDCtx(t->dctx);
		free(t);
		return NULL;
	}
	return t;
}

int pack_cache_new(pack_cache **out, struct cb_backend *backend, size_t cache_bytes,
		   unsigned ra_workers)
{
	pack_cache *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->backend = backend;
	pc->next_id = 1;
	fc_init(&pc->fc, cache_bytes);
	ra_init(pc, ra_workers, cache_bytes);
	pthread_cond_init(&pc->work, NULL);
	*out = pc;
	return 0;
}

int pack_cache_use_disk(pack_cache *pc, const char *dir, uint64_t max_bytes, struct strbuf *err)
{
	return disk_cache_open(dir, max_bytes, &pc->disk, err);
}

static void preader_close(struct preader *p)
{
	cb_io_close(p->io);
	seek_table_free(p->table);
	free(p->relpath);
	free(p);
}

void pack_cache_free(pack_cache *pc)
{
	if (!pc)
		return;
	ra_stop(pc);
	for (unsigned b = 0; b < PACK_BUCKETS; b++) {
		for (struct preader *p = pc->packs[b], *n; p; p = n) {
			n = p->next;
			preader_close(p);
		}
	}
	fc_destroy(&pc->fc);
	pthread_cond_destroy(&pc->work);
	disk_cache_close(pc->disk);
	free(pc);
}

/* Drops readers nobody uses. Called with mu held. */
static void close_idle_packs(pack_cache *pc)
{
	for (unsigned b = 0; b < PACK_BUCKETS; b++) {
		struct preader **pp = &pc->packs[b];
		while (*pp) {
			struct preader *p = *pp;
			if (p->refs == 0) {
				*pp = p->next;
				preader_close(p);
				pc->npacks--;
			} else {
				pp = &p->next;
			}
		}
	}
}

/* --- a pack's table: from the disk cache, else from the pack's tail ---------------------- */

/* The last bytes of a pack (trailer and seek table) held in memory, read as the pack. */
struct tail_io {
	struct cb_io io;
	const unsigned char *buf;
	size_t len;
};

static ssize_t tail_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct tail_io *t = (struct tail_io *)io;
	uint64_t start = io->size - t->len;
	if (off < start || off > io->size)
		return -EIO; /* pack_table_read reads nothing before the trailer */
	if (len > io->size - off)
		len = (size_t)(io->size - off);
	memcpy(buf, t->buf + (off - start), len);
	return (ssize_t)len;
}

static void tail_close(struct cb_io *io) { (void)io; }

static const struct cb_io_ops tail_ops = {.pread = tail_pread, .close = tail_close};

/* Disk-cache names: "t-" + 32 hex digits of sha256(path) for a pack's tail, "f-" + 32 hex of
 * sha256(path, table sha) + "-" + index for its frames. */
static int name_hash(const char *prefix, const void *a, size_t alen, const void *b, size_t blen,
		     char out[40])
{
	unsigned char buf[512 + 32], sha[32];
	if (alen + blen > sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, a, alen);
	memcpy(buf + alen, b, blen);
	int r = sha256_buf(buf, alen + blen, sha);
	if (r == 0) {
		memcpy(out, prefix, 2);
		hex_encode(sha, 16, out + 2);
		out[34] = '\0';
	}
	return r;
}

/* Checks and parses a tail: u64 pack size, then the pack's last bytes. */
static int table_from_tail(struct preader *p, const unsigned char *tail, size_t len)
{
	if (len < 8 || get_le64(tail) < len - 8)
		return -EBADMSG;
	struct tail_io t = {.io = {.ops = &tail_ops, .size = get_le64(tail)}, .buf = tail + 8,
			    .len = len - 8};
	int r = pack_table_read(&t.io, &p->table, &p->trailer);
	if (r == 0) {
		p->size = t.io.size;
		r = name_hash("f-", p->relpath, strlen(p->relpath) + 1, p->trailer.table_sha256, 32,
			      p->dname);
	}
	return r;
}

/* Reads the tail of an open pack into *out (u64 size, then the bytes), *len bytes. */
static int read_tail(struct cb_io *io, unsigned char **out, size_t *len)
{
	uint64_t tsize;
	int r = seek_table_size(io, &tsize);
	if (r < 0)
		return r == -EINVAL ? -EBADMSG : pack_read_error(r);
	if (tsize > TAIL_MAX || tsize + PACK_TRAILER_SIZE > io->size)
		return -EBADMSG;
	size_t n = PACK_TRAILER_SIZE + (size_t)tsize;
	unsigned char *buf = malloc(8 + n);
	if (!buf)
		return -ENOMEM;
	put_le64(buf, io->size);
	ssize_t got = cb_io_pread(io, buf + 8, n, io->size - n);
	r = got < 0 ? pack_read_error(got) : (size_t)got != n ? -EBADMSG : 0;
	if (r < 0) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = 8 + n;
	return 0;
}

/* A disk cache copy of a pack's tail is the SHA-256 of the pack's key, then the tail: a copy
 * put under another pack's name (copied, swapped) is not that pack's. */
#define TAIL_BINDING 32

/* Gives p its verified seek table: from the disk cache when it holds a good copy of this
 * pack's, else from the pack (which is then opened), keeping a copy in the disk cache. */
static int open_table(pack_cache *pc, struct preader *p)
{
	char tname[40];
	unsigned char bind[TAIL_BINDING];
	int r = name_hash("t-", p->relpath, strlen(p->relpath), "", 0, tname) ?:
		sha256_buf(p->relpath, strlen(p->relpath), bind);
	void *data;
	size_t len;
	if (r == 0 && pc->disk &&
	    disk_cache_get(pc->disk, tname, TAIL_BINDING + TAIL_MAX + 8 + PACK_TRAILER_SIZE, &data,
			   &len) == 0) {
		r = len > TAIL_BINDING && !memcmp(data, bind, TAIL_BINDING)
			    ? table_from_tail(p, (unsigned char *)data + TAIL_BINDING, len - TAIL_BINDING)
			    : -EBADMSG;
		free(data);
		if (r == 0 || r == -ENOMEM)
			return r;
		disk_cache_drop(pc->disk, tname); /* damaged, or another pack's: read the pack's own */
		r = 0;
	}
	unsigned char *tail = NULL;
	if (r == 0 && (r = cb_backend_open_read(pc->backend, p->relpath, &p->io)) < 0)
		r = pack_read_error(r); /* the store failing, not the pack */
	r = r ?: read_tail(p->io, &tail, &len) ?: table_from_tail(p, tail, len);
	unsigned char *copy = r == 0 && pc->disk ? malloc(TAIL_BINDING + len) : NULL;
	if (copy) { /* a cache: failing to keep it is no error */
		memcpy(copy, bind, TAIL_BINDING);
		memcpy(copy + TAIL_BINDING, tail, len);
		disk_cache_put(pc->disk, tname, copy, TAIL_BINDING + len);
		free(copy);
	}
	free(tail);
	return r;
}

/* p's open pack, opened now if its table came from the disk cache. */
static int pack_io(pack_cache *pc, struct preader *p, struct cb_io **out)
{
	pthread_mutex_lock(&pc->fc.mu);
	struct cb_io *io = p->io;
	pthread_mutex_unlock(&pc->fc.mu);
	if (io) {
		*out = io;
		return 0;
	}
	int r = cb_backend_open_read(pc->backend, p->relpath, &io);
	if (r < 0)
		return pack_read_error(r); /* the store failing, not the pack */
	if (io->size != p->size) { /* another pack than the one whose table the disk cache kept */
		cb_io_close(io);
		return -EBADMSG;
	}
	pthread_mutex_lock(&pc->fc.mu);
	if (p->io) {
		cb_io_close(io); /* another thread was first */
		io = p->io;
	} else {
		p->io = io;
	}
	pthread_mutex_unlock(&pc->fc.mu);
	*out = io;
	return 0;
}

/* The hash bucket of a pack key (FNV-1a). */
static unsigned key_bucket(const char *key)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *k = (const unsigned char *)key; *k; k++)
		h = (h ^ *k) * 16777619u;
	return h % PACK_BUCKETS;
}

/* The reader of the pack at key, opened (its verified table read) when the cache has none: by
 * key, never by a catalog row id, which a rebuilt catalog gives to another pack. */
static int get_pack(pack_cache *pc, const char *relpath, struct preader **out)
{
	if (!relpath || !*relpath)
		return -ENOENT; /* the catalog knows no pack holding these bytes */
	unsigned b = key_bucket(relpath);
	pthread_mutex_lock(&pc->fc.mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (!strcmp(p->relpath, relpath)) {
			p->refs++;
			pthread_mutex_unlock(&pc->fc.mu);
			*out = p;
			return 0;
		}
	}
	pthread_mutex_unlock(&pc->fc.mu);

	/* Open outside the lock; if another thread raced us, keep theirs. */
	struct preader *np = calloc(1, sizeof(*np));
	int r = np && (np->relpath = strdup(relpath)) ? open_table(pc, np) : -ENOMEM;
	if (r < 0) {
		if (np)
			preader_close(np);
		return r;
	}
	np->refs = 1;

	pthread_mutex_lock(&pc->fc.mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (!strcmp(p->relpath, relpath)) {
			p->refs++;
			pthread_mutex_unlock(&pc->fc.mu);
			preader_close(np);
			*out = p;
			return 0;
		}
	}
	if (pc->npacks >= MAX_IDLE_PACKS)
		close_idle_packs(pc);
	np->id = pc->next_id++;
	np->next = pc->packs[b];
	pc->packs[b] = np;
	pc->npacks++;
	pthread_mutex_unlock(&pc->fc.mu);
	*out = np;
	return 0;
}

static void put_pack(pack_cache *pc, struct preader *p)
{
	pthread_mutex_lock(&pc->fc.mu);
	p->refs--;
	pthread_mutex_unlock(&pc->fc.mu);
}

/* --- loading frames ---------------------------------------------------------------------- */

/* Remembers that fetching frames [first, last] of p failed with err (FETCH_FAILURE_SECONDS).
 * Called with mu held. */
static void note_fetch_failure_locked(struct preader *p, uint32_t first, uint32_t last, int err)
{
	p->failed_first = first;
	p->failed_last = last;
	p->failed_err = err;
	p->failed_at = mono_seconds();
	snprintf(p->failed_why, sizeof(p->failed_why), "%s", cb_backend_last_error());
}

/* Makes the last fetch that failed of p this thread's backend error: a read that takes that
 * failure as its answer says why, whichever thread fetched. Called with mu held. */
static void adopt_fetch_failure_locked(const struct preader *p)
{
	cb_backend_set_error("%s", p->failed_why);
}

/* The error of a fetch of frame i of p that failed under FETCH_FAILURE_SECONDS ago (adopted:
 * adopt_fetch_failure_locked), or 0. Called with mu held. */
static int recent_fetch_failure_locked(const struct preader *p, uint32_t i)
{
	if (!p->failed_err || i < p->failed_first || i > p->failed_last ||
	    mono_seconds() - p->failed_at >= FETCH_FAILURE_SECONDS)
		return 0;
	adopt_fetch_failure_locked(p);
	return p->failed_err;
}

/* Claims for loading the frames of [first, last] the cache lacks, from the first it lacks to
 * just before the next it holds, at most RUN_MAX_FRAMES and RUN_MAX_BYTES compressed: each gets
 * a LOADING entry whose one reference is the caller's, in f[]. Returns how many (0: the cache
 * holds, or is loading, all of [first, last]), -ENOMEM, or the error of a fetch of the first
 * frame to claim that failed just now (recent_fetch_failure_locked). */
static int claim_run(pack_cache *pc, struct preader *p, uint32_t first, uint32_t last,
			  bool prefetch, struct fc_frame **f)
{
	const struct seek_table *t = p->table;
	int n = 0;
	pthread_mutex_lock(&pc->fc.mu);
	for (uint32_t i = first; i <= last && n < RUN_MAX_FRAMES; i++) {
		if (fc_find_locked(&pc->fc, p->id, i)) {
			if (n)
				break;
			continue;
		}
		if (n && t->coff[i + 1] - t->coff[f[0]->index] > RUN_MAX_BYTES)
			break;
		int failed = recent_fetch_failure_locked(p, i);
		if (failed) {
			if (!n)
				n = failed;
			break; /* what is claimed is loaded; the rest fails when it is asked for */
		}
		struct fc_frame *nf = fc_claim_locked(&pc->fc, p->id, i, seek_table_frame_size(t, i),
						      prefetch);
		if (!nf) {
			if (!n)
				n = -ENOMEM;
			break; /* what is claimed is loaded; the rest is tried again one by one */
		}
		f[n++] = nf;
	}
	pthread_mutex_unlock(&pc->fc.mu);
	return n;
}

static void frame_name(const struct preader *p, uint32_t index, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s-%u", p->dname, index);
}

/* Only frames that carry zstd's content checksum go to the disk cache: decoding such a frame
 * is what verifies it when it is read back (zstd format: magic, then the frame header
 * descriptor, whose bit 2 is the checksum flag). */
static bool has_checksum(const unsigned char *src, size_t csize)
{
	return csize > 5 && get_le32(src) == 0xFD2FB528u && (src[4] & 4);
}

/* Decodes frame f from the disk cache: 0, or -ENOENT when the cache lacks it; a copy that is
 * damaged (size or checksum) is dropped, and -ENOENT returned, so it is fetched again. */
static int frame_from_disk(pack_cache *pc, struct preader *p, struct fc_frame *f, struct tls *t)
{
	char name[64];
	frame_name(p, f->index, name, sizeof(name));
	size_t csize = (size_t)(p->table->coff[f->index + 1] - p->table->coff[f->index]), len;
	void *data;
	int r = disk_cache_get(pc->disk, name, csize, &data, &len);
	if (r < 0)
		return r == -ENOMEM ? r : -ENOENT;
	r = len == csize && has_checksum(data, len) && seek_table_frame_matches(p->table, f->index, data, len)
		    ? seekable_decode_buf(data, len, t->dctx, f->data, f->len) : -EIO;
	free(data);
	if (r == -EIO) {
		disk_cache_drop(pc->disk, name);
		return -ENOENT;
	}
	if (r == 0) {
		pthread_mutex_lock(&pc->fc.mu);
		pc->disk_hits++;
		pthread_mutex_unlock(&pc->fc.mu);
	}
	return r;
}

/* Fetches frames f[0..n) (consecutive) with one positional read and decodes each, finishing
 * each frame; keeps a copy of each good one in the disk cache. */
static void fetch_run(pack_cache *pc, struct preader *p, struct fc_frame **f, unsigned n,
		      struct tls *t)
{
	const struct seek_table *tb = p->table;
	uint64_t off = tb->coff[f[0]->index];
	size_t len = (size_t)(tb->coff[f[n - 1]->index + 1] - off);
	struct cb_io *io = NULL;
	int r = 0;
	if (t->scratch_cap < len) {
		void *s = realloc(t->scratch, len);
		r = s ? 0 : -ENOMEM;
		if (s) {
			t->scratch = s;
			t->scratch_cap = len;
		}
	}
	if (r == 0) /* a failure's words are this fetch's (a local pread sets none), not an
		     * earlier call's */
		cb_backend_set_error("%s", "");
	if (r == 0 && (r = pack_io(pc, p, &io)) == 0) {
		ssize_t got = cb_io_pread(io, t->scratch, len, off);
		r = got < 0 ? pack_read_error(got) : (size_t)got != len ? -EIO : 0;
		if (r == 0) /* its frames are decoded in the cache now: the page cache need not keep
			     * the pack's bytes too (a cold read of 8 GiB filled memory twice over) */
			cb_io_done(io, off, len);
		pthread_mutex_lock(&pc->fc.mu);
		pc->fetches++;
		pc->fetched_bytes += len;
		pthread_mutex_unlock(&pc->fc.mu);
	}
	if (r < 0 && r != -ENOMEM) { /* opening the pack, or reading it */
		pthread_mutex_lock(&pc->fc.mu);
		note_fetch_failure_locked(p, f[0]->index, f[n - 1]->index, r);
		pthread_mutex_unlock(&pc->fc.mu);
	}
	for (unsigned k = 0; k < n; k++) {
		const unsigned char *src = (unsigned char *)t->scratch + (tb->coff[f[k]->index] - off);
		size_t csize = (size_t)(tb->coff[f[k]->index + 1] - tb->coff[f[k]->index]);
		int fr = r < 0 ? r : !seek_table_frame_matches(tb, f[k]->index, src, csize) ? -EIO
				   : seekable_decode_buf(src, csize, t->dctx, f[k]->data, f[k]->len);
		if (fr == 0 && pc->disk && has_checksum(src, csize)) {
			char name[64];
			frame_name(p, f[k]->index, name, sizeof(name));
			disk_cache_put(pc->disk, name, src, csize); /* a cache: failing to keep is no error */
		}
		fc_finish(&pc->fc, f[k], fr);
	}
}

/* Loads the claimed frames f[0..n) (consecutive, from claim_run): from the disk cache where it
 * holds them, the others with one read per run of consecutive ones. Every frame is finished
 * (ready or failed); the caller still holds its references. */
static void load_run(pack_cache *pc, struct preader *p, struct fc_frame **f, unsigned n)
{
	struct tls *t = tls_get();
	bool done[RUN_MAX_FRAMES] = {false};
	for (unsigned k = 0; k < n; k++) {
		int r = t ? 0 : -ENOMEM;
		if (r == 0)
			r = fc_fill(&pc->fc, f[k]);
		if (r == 0 && pc->disk)
			r = frame_from_disk(pc, p, f[k], t) == 0 ? 1 : 0;
		if (r != 0) {
			fc_finish(&pc->fc, f[k], r < 0 ? r : 0);
			done[k] = true;
		}
	}
	for (unsigned k = 0; k < n;) {
		unsigned end = k;
		while (end < n && !done[end])
			end++;
		if (end > k)
			fetch_run(pc, p, f + k, end - k, t);
		k = end + 1;
	}
}

/* Makes the cache hold the frames [first, last] of p, fetching what it lacks in runs; frames
 * other threads are loading are left to them. 0, or the first error of a frame loaded here. */
int pr_load_frames(pack_cache *pc, struct preader *p, uint32_t first, uint32_t last,
		   bool prefetch)
{
	int r = 0;
	while (first <= last) {
		struct fc_frame *f[RUN_MAX_FRAMES];
		int n = claim_run(pc, p, first, last, prefetch, f);
		if (n <= 0)
			return n;
		load_run(pc, p, f, (unsigned)n);
		first = f[n - 1]->index + 1;
		pthread_mutex_lock(&pc->fc.mu);
		for (int k = 0; k < n; k++) {
			if (r == 0)
				r = f[k]->err;
			fc_release_locked(&pc->fc, f[k]);
		}
		pthread_mutex_unlock(&pc->fc.mu);
		if (r < 0)
			break;
	}
	return r;
}

/* Returns frame `index` of pack p, decoded, with a reference held (release with put_frame). */
static int get_frame(pack_cache *pc, struct preader *p, uint32_t index, struct fc_frame **out)
{
	for (;;) {
		pthread_mutex_lock(&pc->fc.mu);
		struct fc_frame *f = fc_find_locked(&pc->fc, p->id, index);
		if (f) {
			f->refs++;
			int r = fc_wait_locked(&pc->fc, f);
			/* read-ahead never fails a read: load it here (unless that fetch failed just now:
			 * claim_run answers with its failure, FETCH_FAILURE_SECONDS) */
			bool again = r && f->prefetched;
			if (r && !again && r == p->failed_err)
				adopt_fetch_failure_locked(p); /* another reader's fetch failed */
			if (r)
				fc_release_locked(&pc->fc, f);
			pthread_mutex_unlock(&pc->fc.mu);
			if (again)
				continue;
			if (r == 0)
				*out = f;
			return r;
		}
		pthread_mutex_unlock(&pc->fc.mu);
		struct fc_frame *nf[1];
		int n = claim_run(pc, p, index, index, false, nf);
		if (n < 0)
			return n;
		if (n == 0)
			continue; /* another thread claimed it meanwhile: wait for it */
		load_run(pc, p, nf, 1);
		int r = nf[0]->err;
		if (r < 0)
			fc_release(&pc->fc, nf[0]);
		else
			*out = nf[0];
		return r;
	}
}

/* --- reads ------------------------------------------------------------------------------- */

/* Does [off, off + len) lie within the pack's decompressed stream? */
static bool in_stream(const struct preader *p, uint64_t off, size_t len)
{
	uint64_t total = p->table->doff[p->table->frames];
	return off <= total && len <= total - off;
}

/* Before a read of [off, off + len): follows the stream, and fetches the frames it needs that
 * the cache lacks, neighbours together. */
static int prepare_read(pack_cache *pc, struct preader *p, uint64_t off, size_t len)
{
	if (!len)
		return 0;
	ra_note_read(pc, p, off, len);
	return pr_load_frames(pc, p, seek_table_frame_at(p->table, off),
			   seek_table_frame_at(p->table, off + len - 1), false);
}

int pack_cache_read(pack_cache *pc, const char *key, uint64_t off, void *buf, size_t len)
{
	struct preader *p;
	int r = get_pack(pc, key, &p);
	if (r < 0)
		return r;
	if (!in_stream(p, off, len)) {
		put_pack(pc, p);
		return -ERANGE;
	}
	r = prepare_read(pc, p, off, len);
	unsigned char *dst = buf;
	while (r == 0 && len) {
		uint32_t i = seek_table_frame_at(p->table, off);
		struct fc_frame *f = NULL;
		r = get_frame(pc, p, i, &f);
		if (r < 0)
			break;
		size_t in = (size_t)(off - p->table->doff[i]);
		size_t n = f->len - in < len ? f->len - in : len;
		memcpy(dst, f->data + in, n);
		fc_release(&pc->fc, f);
		dst += n;
		off += n;
		len -= n;
	}
	put_pack(pc, p);
	return r;
}

int pack_cache_pin(pack_cache *pc, const char *key, uint64_t off, size_t len, struct pack_pin *pin)
{
	struct preader *p;
	*pin = (struct pack_pin){0};
	int r = get_pack(pc, key, &p);
	if (r < 0)
		return r;
	pin->pack = p;
	if (!in_stream(p, off, len)) {
		r = -ERANGE;
		goto fail;
	}
	if (len && seek_table_frame_at(p->table, off + len - 1) - seek_table_frame_at(p->table, off) >=
			   PACK_PIN_MAX) {
		r = -E2BIG;
		goto fail;
	}
	if ((r = prepare_read(pc, p, off, len)) < 0)
		goto fail;
	while (len) {
		uint32_t i = seek_table_frame_at(p->table, off);
		struct fc_frame *f = NULL;
		if ((r = get_frame(pc, p, i, &f)) < 0)
			goto fail;
		size_t in = (size_t)(off - p->table->doff[i]);
		size_t n = f->len - in < len ? f->len - in : len;
		pin->frame[pin->n] = f;
		pin->seg[pin->n].data = f->data + in;
		pin->seg[pin->n].len = n;
		pin->n++;
		off += n;
		len -= n;
	}
	return 0;
fail:
	pack_cache_unpin(pc, pin);
	return r;
}

void pack_cache_unpin(pack_cache *pc, struct pack_pin *pin)
{
	for (unsigned i = 0; i < pin->n; i++)
		fc_release(&pc->fc, pin->frame[i]);
	if (pin->pack)
		put_pack(pc, pin->pack);
	*pin = (struct pack_pin){0};
}

void pack_cache_get_stats(pack_cache *pc, struct pack_cache_stats *st)
{
	struct fc_stats f;
	fc_get_stats(&pc->fc, &f);
	pthread_mutex_lock(&pc->fc.mu);
	*st = (struct pack_cache_stats){.hits = f.hits, .misses = f.misses, .evictions = f.evictions,
					.fetches = pc->fetches, .fetched_bytes = pc->fetched_bytes,
					.disk_hits = pc->disk_hits, .bytes = f.bytes};
	pthread_mutex_unlock(&pc->fc.mu);
}

int pack_cache_index(pack_cache *pc, const char *key, struct pack_index *out, char *err,
		     size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct preader *p;
	int r = get_pack(pc, key, &p);
	if (r < 0) {
		snprintf(err, errlen, "%s", pack_cache_strerror(r));
		return r;
	}
	const struct pack_trailer tr = p->trailer;
	char *buf = pack_index_size_ok(&tr, err, errlen) == 0 ? malloc(tr.index_size + 1) : NULL;
	r = buf ? pack_cache_read(pc, key, tr.index_offset, buf, tr.index_size) : -EBADMSG;
	if (!buf && !*err)
		r = -ENOMEM;
	if (r < 0 && !*err)
		snprintf(err, errlen, "cannot read the pack index: %s", pack_cache_strerror(r));
	if (r == 0)
		r = pack_index_parse_checked(buf, p->table, &tr, out, err, errlen);
	free(buf);
	put_pack(pc, p);
	return r;
}

