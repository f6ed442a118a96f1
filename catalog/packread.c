/* packread.c: see packread.h. */
#include "packread.h"
#include "io.h"
#include "backend.h"
#include "hash.h"
#include "pack.h"
#include "store.h"
#include "seekable.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#define PACK_BUCKETS 256
#define FRAME_BUCKETS 4096
#define MAX_IDLE_PACKS 128

/* Decoded frames are the bulk of a reader's memory, allocated and freed all the time. Those of
 * FRAME_MAP_MIN bytes or more are mapped on their own (mmap), outside malloc's arenas, so the
 * memory of an evicted frame goes back to the system instead of fragmenting a heap that never
 * shrinks (a long-running mount's RSS grew that way); up to POOL_MAX freed buffers (POOL_BYTES
 * in all) are kept for reuse, so a busy cache does not map and fault in a buffer per frame. */
#define FRAME_MAP_MIN (64u << 10)
#define POOL_MAX 8
#define POOL_BYTES (8u << 20)

struct preader {
	int64_t id;
	struct cb_io *io;
	struct seek_table *table;
	unsigned refs;
	struct preader *next;
};

enum { FRAME_LOADING, FRAME_READY };

struct frame {
	int64_t pack;
	uint32_t index;
	int state;
	unsigned refs;
	int err; /* set when loading failed; the entry is then unlinked */
	unsigned char *data;
	size_t len;
	struct frame *next;             /* hash chain */
	struct frame *lru_prev, *lru_next; /* most recent at head */
};

struct pack_cache {
	char *store_dir;
	struct cb_backend *backend;
	size_t budget;
	pthread_mutex_t mu;
	pthread_cond_t loaded;
	struct preader *packs[PACK_BUCKETS];
	unsigned npacks;
	struct frame *frames[FRAME_BUCKETS];
	struct frame *lru_head, *lru_tail;
	size_t used;
	struct {
		void *buf;
		size_t cap;
	} pool[POOL_MAX]; /* freed frame buffers kept for reuse */
	unsigned npool;
	size_t pool_bytes;
	struct pack_cache_stats stats;
};

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
	pthread_setspecific(tls_key, t);
	return t;
}

static size_t map_size(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (len + page - 1) / page * page;
}

/* A buffer for a decoded frame of len bytes: from the pool when one fits (at most twice the
 * size, so big buffers are not spent on small frames), else a new mapping. NULL when out of
 * memory. Called without mu. */
static void *frame_buf_get(pack_cache *pc, size_t len)
{
	if (len < FRAME_MAP_MIN)
		return malloc(len ? len : 1);
	size_t want = map_size(len);
	pthread_mutex_lock(&pc->mu);
	for (unsigned i = 0; i < pc->npool; i++) {
		if (pc->pool[i].cap >= want && pc->pool[i].cap / 2 <= want) {
			void *b = pc->pool[i].buf;
			pc->pool_bytes -= pc->pool[i].cap;
			pc->pool[i] = pc->pool[--pc->npool];
			pthread_mutex_unlock(&pc->mu);
			return b;
		}
	}
	pthread_mutex_unlock(&pc->mu);
	void *b = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return b == MAP_FAILED ? NULL : b;
}

/* Gives back a frame buffer from frame_buf_get (NULL is fine). Called with mu held. */
static void frame_buf_put(pack_cache *pc, void *buf, size_t len)
{
	if (!buf || len < FRAME_MAP_MIN) {
		free(buf);
		return;
	}
	size_t cap = map_size(len);
	if (pc->npool < POOL_MAX && pc->pool_bytes + cap <= POOL_BYTES) {
		pc->pool[pc->npool].buf = buf;
		pc->pool[pc->npool++].cap = cap;
		pc->pool_bytes += cap;
	} else {
		munmap(buf, cap);
	}
}

int pack_cache_new(pack_cache **out, const char *store_dir, size_t cache_bytes)
{
	pack_cache *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->store_dir = strdup(store_dir);
	int r = pc->store_dir ? cb_backend_open(store_dir, CB_BACKEND_READONLY, store_s3_options(),
						&pc->backend)
			      : -ENOMEM;
	if (r < 0) {
		free(pc->store_dir);
		free(pc);
		return r;
	}
	pc->budget = cache_bytes;
	pthread_mutex_init(&pc->mu, NULL);
	pthread_cond_init(&pc->loaded, NULL);
	*out = pc;
	return 0;
}

static void preader_close(struct preader *p)
{
	cb_io_close(p->io);
	seek_table_free(p->table);
	free(p);
}

void pack_cache_free(pack_cache *pc)
{
	if (!pc)
		return;
	for (unsigned b = 0; b < PACK_BUCKETS; b++) {
		for (struct preader *p = pc->packs[b], *n; p; p = n) {
			n = p->next;
			preader_close(p);
		}
	}
	for (struct frame *f = pc->lru_head, *n; f; f = n) {
		n = f->lru_next;
		frame_buf_put(pc, f->data, f->len);
		free(f);
	}
	for (unsigned i = 0; i < pc->npool; i++)
		munmap(pc->pool[i].buf, pc->pool[i].cap);
	pthread_cond_destroy(&pc->loaded);
	pthread_mutex_destroy(&pc->mu);
	cb_backend_close(pc->backend);
	free(pc->store_dir);
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

static int get_pack(pack_cache *pc, int64_t id, const char *relpath, struct preader **out)
{
	if (!relpath || !*relpath)
		return -ENOENT; /* the catalog knows no pack holding these bytes */
	unsigned b = (unsigned)((uint64_t)id % PACK_BUCKETS);
	pthread_mutex_lock(&pc->mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (p->id == id) {
			p->refs++;
			pthread_mutex_unlock(&pc->mu);
			*out = p;
			return 0;
		}
	}
	pthread_mutex_unlock(&pc->mu);

	/* Open outside the lock; if another thread raced us, keep theirs. */
	struct strbuf path = {0};
	int r = sb_printf(&path, "%s/%s", pc->store_dir, relpath);
	struct preader *np = calloc(1, sizeof(*np));
	if (r == 0 && !np)
		r = -ENOMEM;
	if (r == 0)
		r = cb_backend_open_read(pc->backend, relpath, &np->io);
	struct pack_trailer tr;
	if (r == 0)
		r = pack_table_read(np->io, &np->table, &tr);
	sb_free(&path);
	if (r < 0) {
		if (np)
			preader_close(np);
		return r;
	}
	np->id = id;
	np->refs = 1;

	pthread_mutex_lock(&pc->mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (p->id == id) {
			p->refs++;
			pthread_mutex_unlock(&pc->mu);
			preader_close(np);
			*out = p;
			return 0;
		}
	}
	if (pc->npacks >= MAX_IDLE_PACKS)
		close_idle_packs(pc);
	np->next = pc->packs[b];
	pc->packs[b] = np;
	pc->npacks++;
	pthread_mutex_unlock(&pc->mu);
	*out = np;
	return 0;
}

static void put_pack(pack_cache *pc, struct preader *p)
{
	pthread_mutex_lock(&pc->mu);
	p->refs--;
	pthread_mutex_unlock(&pc->mu);
}

static unsigned frame_bucket(int64_t pack, uint32_t index)
{
	uint64_t h = (uint64_t)pack * 0x9E3779B97F4A7C15ull ^ (uint64_t)index * 0xC2B2AE3D27D4EB4Full;
	return (unsigned)(h >> 40) % FRAME_BUCKETS;
}

static void lru_unlink(pack_cache *pc, struct frame *f)
{
	if (f->lru_prev)
		f->lru_prev->lru_next = f->lru_next;
	else
		pc->lru_head = f->lru_next;
	if (f->lru_next)
		f->lru_next->lru_prev = f->lru_prev;
	else
		pc->lru_tail = f->lru_prev;
	f->lru_prev = f->lru_next = NULL;
}

static void lru_push(pack_cache *pc, struct frame *f)
{
	f->lru_prev = NULL;
	f->lru_next = pc->lru_head;
	if (pc->lru_head)
		pc->lru_head->lru_prev = f;
	pc->lru_head = f;
	if (!pc->lru_tail)
		pc->lru_tail = f;
}

static void hash_unlink(pack_cache *pc, struct frame *f)
{
	struct frame **pp = &pc->frames[frame_bucket(f->pack, f->index)];
	while (*pp && *pp != f)
		pp = &(*pp)->next;
	if (*pp)
		*pp = f->next;
}

/* Frees unreferenced frames from the cold end until within budget. Called with mu held. */
static void evict(pack_cache *pc)
{
	struct frame *f = pc->lru_tail;
	while (pc->used > pc->budget && f) {
		struct frame *prev = f->lru_prev;
		if (f->refs == 0 && f->state == FRAME_READY) {
			hash_unlink(pc, f);
			lru_unlink(pc, f);
			pc->used -= f->len;
			pc->stats.evictions++;
			frame_buf_put(pc, f->data, f->len);
			free(f);
		}
		f = prev;
	}
}

/* Returns frame `index` of pack p, decoded, with a reference held (release with put_frame). */
static int get_frame(pack_cache *pc, struct preader *p, uint32_t index, struct frame **out)
{
	unsigned b = frame_bucket(p->id, index);
	pthread_mutex_lock(&pc->mu);
	for (;;) {
		struct frame *f = pc->frames[b];
		while (f && !(f->pack == p->id && f->index == index))
			f = f->next;
		if (!f)
			break;
		f->refs++;
		while (f->state == FRAME_LOADING && f->err == 0)
			pthread_cond_wait(&pc->loaded, &pc->mu);
		if (f->err) {
			int r = f->err;
			if (--f->refs == 0)
				free(f); /* already unlinked by the loader */
			pthread_mutex_unlock(&pc->mu);
			return r;
		}
		pc->stats.hits++;
		lru_unlink(pc, f);
		lru_push(pc, f);
		pthread_mutex_unlock(&pc->mu);
		*out = f;
		return 0;
	}

	struct frame *f = calloc(1, sizeof(*f));
	if (!f) {
		pthread_mutex_unlock(&pc->mu);
		return -ENOMEM;
	}
	f->pack = p->id;
	f->index = index;
	f->state = FRAME_LOADING;
	f->refs = 1;
	f->len = seek_table_frame_size(p->table, index);
	f->next = pc->frames[b];
	pc->frames[b] = f;
	pc->stats.misses++;
	pthread_mutex_unlock(&pc->mu);

	struct tls *t = tls_get();
	int r = t ? 0 : -ENOMEM;
	if (r == 0 && !(f->data = frame_buf_get(pc, f->len)))
		r = -ENOMEM;
	if (r == 0)
		r = seekable_decode_frame(p->io, p->table, index, t->dctx, f->data, &t->scratch,
					  &t->scratch_cap);

	pthread_mutex_lock(&pc->mu);
	if (r < 0) {
		hash_unlink(pc, f);
		frame_buf_put(pc, f->data, f->len);
		f->data = NULL;
		f->err = r;
		pthread_cond_broadcast(&pc->loaded);
		if (--f->refs == 0)
			free(f);
		pthread_mutex_unlock(&pc->mu);
		return r;
	}
	f->state = FRAME_READY;
	lru_push(pc, f);
	pc->used += f->len;
	evict(pc);
	pthread_cond_broadcast(&pc->loaded);
	pthread_mutex_unlock(&pc->mu);
	*out = f;
	return 0;
}

static void put_frame(pack_cache *pc, struct frame *f)
{
	pthread_mutex_lock(&pc->mu);
	f->refs--;
	if (f->refs == 0 && pc->used > pc->budget)
		evict(pc);
	pthread_mutex_unlock(&pc->mu);
}

/* Does [off, off + len) lie within the pack's decompressed stream? */
static bool in_stream(const struct preader *p, uint64_t off, size_t len)
{
	uint64_t total = p->table->doff[p->table->frames];
	return off <= total && len <= total - off;
}

int pack_cache_read(pack_cache *pc, int64_t pack_id, const char *relpath, uint64_t off, void *buf,
		    size_t len)
{
	struct preader *p;
	int r = get_pack(pc, pack_id, relpath, &p);
	if (r < 0)
		return r;
	if (!in_stream(p, off, len)) {
		put_pack(pc, p);
		return -ERANGE;
	}
	unsigned char *dst = buf;
	while (len) {
		uint32_t i = seek_table_frame_at(p->table, off);
		struct frame *f = NULL;
		r = get_frame(pc, p, i, &f);
		if (r < 0)
			break;
		size_t in = (size_t)(off - p->table->doff[i]);
		size_t n = f->len - in < len ? f->len - in : len;
		memcpy(dst, f->data + in, n);
		put_frame(pc, f);
		dst += n;
		off += n;
		len -= n;
	}
	put_pack(pc, p);
	return r;
}

int pack_cache_pin(pack_cache *pc, int64_t pack_id, const char *relpath, uint64_t off, size_t len,
		   struct pack_pin *pin)
{
	struct preader *p;
	*pin = (struct pack_pin){0};
	int r = get_pack(pc, pack_id, relpath, &p);
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
	while (len) {
		uint32_t i = seek_table_frame_at(p->table, off);
		struct frame *f = NULL;
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
		put_frame(pc, pin->frame[i]);
	if (pin->pack)
		put_pack(pc, pin->pack);
	*pin = (struct pack_pin){0};
}

void pack_cache_get_stats(pack_cache *pc, struct pack_cache_stats *st)
{
	pthread_mutex_lock(&pc->mu);
	*st = pc->stats;
	st->bytes = pc->used;
	pthread_mutex_unlock(&pc->mu);
}

const char *pack_cache_strerror(int err)
{
	switch (err) {
	case -ENOENT: return "pack file is missing";
	case -EBADMSG: return "pack has no valid seek table";
	case -EIO: return "pack data is corrupt (checksum mismatch)";
	case -ERANGE: return "file lies beyond the end of the pack (catalog and pack disagree)";
	default: return strerror(-err);
	}
}

/* --- the format-2 pack: trailer, verified seek table, index ------------------------------ */

int pack_table_read(struct cb_io *io, struct seek_table **out, struct pack_trailer *tr)
{
	*out = NULL;
	uint64_t tsize;
	int r = seek_table_size(io, &tsize);
	if (r < 0)
		return r == -EINVAL ? -EBADMSG : r;
	if (tsize + PACK_TRAILER_SIZE > io->size)
		return -EBADMSG;
	uint64_t at = io->size - tsize - PACK_TRAILER_SIZE;
	unsigned char *buf = malloc(PACK_TRAILER_SIZE + tsize);
	if (!buf)
		return -ENOMEM;
	ssize_t n = cb_io_pread(io, buf, PACK_TRAILER_SIZE + tsize, at);
	unsigned char sha[32];
	r = n < 0 ? (int)n : n != (ssize_t)(PACK_TRAILER_SIZE + tsize) ? -EBADMSG : 0;
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

int pack_index_read(struct cb_io *io, const struct seek_table *t, const struct pack_trailer *tr,
		    struct pack_index *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (tr->index_size > PACK_INDEX_MAX) {
		snprintf(err, errlen, "pack index of %llu bytes is larger than any this writes",
			 (unsigned long long)tr->index_size);
		return -EBADMSG;
	}
	struct tls *tl = tls_get();
	char *buf = malloc(tr->index_size + 1);
	int r = !tl || !buf ? -ENOMEM
			    : seekable_read(io, t, tl->dctx, tr->index_offset, buf, tr->index_size);
	if (r < 0) {
		snprintf(err, errlen, "cannot read the pack index: %s", pack_cache_strerror(r));
		free(buf);
		return r;
	}
	r = pack_index_parse(buf, tr->index_size, out, err, errlen);
	free(buf);
	for (size_t i = 0; r == 0 && i < out->nblobs; i++) {
		const struct pack_blob *b = &out->blobs[i];
		if ((b->size && !at_frame_start(t, b->offset)) || b->offset > tr->index_offset ||
		    b->size > tr->index_offset - b->offset) {
			snprintf(err, errlen, "pack index: blob %zu at %llu does not start a frame within "
				 "the pack's data", i, (unsigned long long)b->offset);
			pack_index_free(out);
			r = -EBADMSG;
		}
	}
	return r;
}
