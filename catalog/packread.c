/* packread.c: see packread.h. */
#include "packread.h"
#include "io.h"
#include "backend.h"
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

/* Fetching. Frames a read needs that the cache lacks are fetched together: each run of
 * consecutive missing frames (at most RUN_MAX_FRAMES, RUN_MAX_BYTES compressed) is one
 * positional read, so one ranged GET on object storage. */
#define RUN_MAX_FRAMES 64
#define RUN_MAX_BYTES (8u << 20)

/* Read-ahead, for object storage (a local pack's reads are cheap and the kernel reads ahead on
 * it already): up to STREAMS sequential readers per pack are followed; a read that starts
 * within SEQ_SLACK of where one stopped continues it (FUSE hands a sequential reader's requests
 * to several threads, slightly out of order); from its SEQ_READS-th read on, the frames of the
 * next ra_window decoded bytes (at most half the cache) are queued, in jobs of half that (at
 * most a run: a request costs a round trip whatever its size, and few large ones were twice as
 * fast against moto_server as many small ones), for a few worker threads; when half the window
 * is read, the next half is queued. A stream taken over by another reader voids its jobs. */
#define STREAMS 4
#define SEQ_SLACK (1u << 20)
#define SEQ_READS 3
#define RA_WINDOW_MAX (32u << 20)
#define RA_WORKERS_MAX 16
#define JOBS_MAX 64
#define TAIL_MAX (64u << 20) /* a pack's trailer and seek table, at most (512 Ki frames) */

struct stream {
	uint64_t next;    /* decoded offset just after the stream's last read */
	uint32_t ra_end;  /* frames before this one are cached or queued */
	unsigned streak;  /* reads in a row that followed on (0: unused) */
	unsigned gen;     /* bumped when the stream is taken over: its queued jobs are void */
	uint64_t clock;   /* last use */
};

struct preader {
	uint64_t id;       /* unique in this cache: what its frames are filed under */
	char *relpath;     /* the pack's key: what it is found by */
	struct cb_io *io;  /* opened at the first fetch (the table may come from the disk cache) */
	uint64_t size;     /* of the pack, as its table says */
	struct seek_table *table;
	struct pack_trailer trailer; /* verified with the table */
	char dname[40];    /* disk-cache name of the pack's frames: "f-" + hex of sha256(path, table) */
	unsigned refs;
	struct stream streams[STREAMS];
	struct preader *next;
};

enum { FRAME_LOADING, FRAME_READY };

struct frame {
	uint64_t pack;
	uint32_t index;
	int state;
	unsigned refs;
	int err; /* set when loading failed; the entry is then unlinked */
	bool prefetched; /* loaded by read-ahead: a reader that finds it failed loads it again */
	unsigned char *data;
	size_t len;
	struct frame *next;             /* hash chain */
	struct frame *lru_prev, *lru_next; /* most recent at head */
};

struct pack_cache {
	struct cb_backend *backend; /* the store's: not ours */
	uint64_t next_id;           /* of the next pack reader (under mu) */
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
	struct disk_cache *disk; /* NULL: none */
	/* read-ahead (see STREAMS); all under mu */
	unsigned ra_workers;     /* 0: none */
	size_t ra_window, ra_chunk;
	pthread_t workers[RA_WORKERS_MAX];
	unsigned nworkers;
	pthread_cond_t work;
	struct job {
		struct preader *p; /* a reference held */
		unsigned stream, gen;
		uint32_t first, n;
	} jobs[JOBS_MAX];
	unsigned job_head, njobs;
	bool stopping;
	uint64_t clock;
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

int pack_cache_new(pack_cache **out, struct cb_backend *backend, size_t cache_bytes,
		   unsigned ra_workers)
{
	pack_cache *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->backend = backend;
	pc->next_id = 1;
	pc->budget = cache_bytes;
	if (ra_workers) {
		pc->ra_workers = ra_workers < RA_WORKERS_MAX ? ra_workers : RA_WORKERS_MAX;
		pc->ra_window = cache_bytes / 2 < RA_WINDOW_MAX ? cache_bytes / 2 : RA_WINDOW_MAX;
		pc->ra_chunk = pc->ra_window / 2;
	}
	pthread_mutex_init(&pc->mu, NULL);
	pthread_cond_init(&pc->loaded, NULL);
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

/* Stops the read-ahead workers; the jobs they had not started are dropped. */
static void stop_workers(pack_cache *pc)
{
	pthread_mutex_lock(&pc->mu);
	pc->stopping = true;
	pthread_cond_broadcast(&pc->work);
	pthread_mutex_unlock(&pc->mu);
	for (unsigned i = 0; i < pc->nworkers; i++)
		pthread_join(pc->workers[i], NULL);
	for (; pc->njobs; pc->njobs--, pc->job_head = (pc->job_head + 1) % JOBS_MAX)
		pc->jobs[pc->job_head].p->refs--;
}

void pack_cache_free(pack_cache *pc)
{
	if (!pc)
		return;
	stop_workers(pc);
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
	pthread_cond_destroy(&pc->work);
	pthread_cond_destroy(&pc->loaded);
	pthread_mutex_destroy(&pc->mu);
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

/* A failed read of the pack itself (the disk, or object storage after its retries) is
 * -EREMOTEIO, so that it is not taken for -EIO, corrupt frames. */
static int read_error(ssize_t got)
{
	return got == -EIO ? -EREMOTEIO : (int)got;
}

/* Reads the tail of an open pack into *out (u64 size, then the bytes), *len bytes. */
static int read_tail(struct cb_io *io, unsigned char **out, size_t *len)
{
	uint64_t tsize;
	int r = seek_table_size(io, &tsize);
	if (r < 0)
		return r == -EINVAL ? -EBADMSG : read_error(r);
	if (tsize > TAIL_MAX || tsize + PACK_TRAILER_SIZE > io->size)
		return -EBADMSG;
	size_t n = PACK_TRAILER_SIZE + (size_t)tsize;
	unsigned char *buf = malloc(8 + n);
	if (!buf)
		return -ENOMEM;
	put_le64(buf, io->size);
	ssize_t got = cb_io_pread(io, buf + 8, n, io->size - n);
	r = got < 0 ? read_error(got) : (size_t)got != n ? -EBADMSG : 0;
	if (r < 0) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = 8 + n;
	return 0;
}

/* Gives p its verified seek table: from the disk cache when it holds a good copy, else from
 * the pack (which is then opened), keeping a copy in the disk cache. */
static int open_table(pack_cache *pc, struct preader *p)
{
	char tname[40];
	int r = name_hash("t-", p->relpath, strlen(p->relpath), "", 0, tname);
	void *data;
	size_t len;
	if (r == 0 && pc->disk && disk_cache_get(pc->disk, tname, TAIL_MAX + 8 + PACK_TRAILER_SIZE,
						 &data, &len) == 0) {
		r = table_from_tail(p, data, len);
		free(data);
		if (r == 0 || r == -ENOMEM)
			return r;
		disk_cache_drop(pc->disk, tname); /* damaged: read the pack's own */
		r = 0;
	}
	unsigned char *tail = NULL;
	r = r ?: cb_backend_open_read(pc->backend, p->relpath, &p->io) ?: read_tail(p->io, &tail, &len)
	    ?: table_from_tail(p, tail, len);
	if (r == 0 && pc->disk)
		disk_cache_put(pc->disk, tname, tail, len); /* a cache: failing to keep it is no error */
	free(tail);
	return r;
}

/* p's open pack, opened now if its table came from the disk cache. */
static int pack_io(pack_cache *pc, struct preader *p, struct cb_io **out)
{
	pthread_mutex_lock(&pc->mu);
	struct cb_io *io = p->io;
	pthread_mutex_unlock(&pc->mu);
	if (io) {
		*out = io;
		return 0;
	}
	int r = cb_backend_open_read(pc->backend, p->relpath, &io);
	if (r < 0)
		return r;
	if (io->size != p->size) { /* another pack than the one whose table the disk cache kept */
		cb_io_close(io);
		return -EBADMSG;
	}
	pthread_mutex_lock(&pc->mu);
	if (p->io) {
		cb_io_close(io); /* another thread was first */
		io = p->io;
	} else {
		p->io = io;
	}
	pthread_mutex_unlock(&pc->mu);
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
	pthread_mutex_lock(&pc->mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (!strcmp(p->relpath, relpath)) {
			p->refs++;
			pthread_mutex_unlock(&pc->mu);
			*out = p;
			return 0;
		}
	}
	pthread_mutex_unlock(&pc->mu);

	/* Open outside the lock; if another thread raced us, keep theirs. */
	struct preader *np = calloc(1, sizeof(*np));
	int r = np && (np->relpath = strdup(relpath)) ? open_table(pc, np) : -ENOMEM;
	if (r < 0) {
		if (np)
			preader_close(np);
		return r;
	}
	np->refs = 1;

	pthread_mutex_lock(&pc->mu);
	for (struct preader *p = pc->packs[b]; p; p = p->next) {
		if (!strcmp(p->relpath, relpath)) {
			p->refs++;
			pthread_mutex_unlock(&pc->mu);
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

static unsigned frame_bucket(uint64_t pack, uint32_t index)
{
	uint64_t h = pack * 0x9E3779B97F4A7C15ull ^ (uint64_t)index * 0xC2B2AE3D27D4EB4Full;
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

static struct frame *find_frame(pack_cache *pc, uint64_t pack, uint32_t index)
{
	struct frame *f = pc->frames[frame_bucket(pack, index)];
	while (f && !(f->pack == pack && f->index == index))
		f = f->next;
	return f;
}

/* Drops a reference to f (ready or failed). Called with mu held. */
static void release_locked(pack_cache *pc, struct frame *f)
{
	if (--f->refs == 0) {
		if (f->err)
			free(f); /* already unlinked by its loader */
		else if (pc->used > pc->budget)
			evict(pc);
	}
}

static void put_frame(pack_cache *pc, struct frame *f)
{
	pthread_mutex_lock(&pc->mu);
	release_locked(pc, f);
	pthread_mutex_unlock(&pc->mu);
}

/* --- loading frames ---------------------------------------------------------------------- */

/* Claims for loading the frames of [first, last] the cache lacks, from the first it lacks to
 * just before the next it holds, at most RUN_MAX_FRAMES and RUN_MAX_BYTES compressed: each gets
 * a LOADING entry whose one reference is the caller's, in f[]. Returns how many (0: the cache
 * holds, or is loading, all of [first, last]), or -ENOMEM. */
static int claim_run(pack_cache *pc, struct preader *p, uint32_t first, uint32_t last,
			  bool prefetch, struct frame **f)
{
	const struct seek_table *t = p->table;
	int n = 0;
	pthread_mutex_lock(&pc->mu);
	for (uint32_t i = first; i <= last && n < RUN_MAX_FRAMES; i++) {
		if (find_frame(pc, p->id, i)) {
			if (n)
				break;
			continue;
		}
		if (n && t->coff[i + 1] - t->coff[f[0]->index] > RUN_MAX_BYTES)
			break;
		struct frame *nf = calloc(1, sizeof(*nf));
		if (!nf) {
			if (!n)
				n = -ENOMEM;
			break; /* what is claimed is loaded; the rest is tried again one by one */
		}
		*nf = (struct frame){.pack = p->id, .index = i, .state = FRAME_LOADING, .refs = 1,
				     .prefetched = prefetch, .len = seek_table_frame_size(t, i)};
		unsigned b = frame_bucket(p->id, i);
		nf->next = pc->frames[b];
		pc->frames[b] = nf;
		pc->stats.misses++;
		f[n++] = nf;
	}
	pthread_mutex_unlock(&pc->mu);
	return n;
}

/* Ends the loading of f: ready (r == 0) or failed (its entry unlinked, f->err set); wakes
 * those waiting for it. The loader's reference stays. */
static void finish_frame(pack_cache *pc, struct frame *f, int r)
{
	pthread_mutex_lock(&pc->mu);
	if (r < 0) {
		hash_unlink(pc, f);
		frame_buf_put(pc, f->data, f->len);
		f->data = NULL;
		f->err = r;
	} else {
		f->state = FRAME_READY;
		lru_push(pc, f);
		pc->used += f->len;
		evict(pc);
	}
	pthread_cond_broadcast(&pc->loaded);
	pthread_mutex_unlock(&pc->mu);
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
static int frame_from_disk(pack_cache *pc, struct preader *p, struct frame *f, struct tls *t)
{
	char name[64];
	frame_name(p, f->index, name, sizeof(name));
	size_t csize = (size_t)(p->table->coff[f->index + 1] - p->table->coff[f->index]), len;
	void *data;
	int r = disk_cache_get(pc->disk, name, csize, &data, &len);
	if (r < 0)
		return r == -ENOMEM ? r : -ENOENT;
	r = len == csize && has_checksum(data, len)
		    ? seekable_decode_buf(data, len, t->dctx, f->data, f->len) : -EIO;
	free(data);
	if (r == -EIO) {
		disk_cache_drop(pc->disk, name);
		return -ENOENT;
	}
	if (r == 0) {
		pthread_mutex_lock(&pc->mu);
		pc->stats.disk_hits++;
		pthread_mutex_unlock(&pc->mu);
	}
	return r;
}

/* Fetches frames f[0..n) (consecutive) with one positional read and decodes each, finishing
 * each frame; keeps a copy of each good one in the disk cache. */
static void fetch_run(pack_cache *pc, struct preader *p, struct frame **f, unsigned n,
		      struct tls *t)
{
	const struct seek_table *tb = p->table;
	uint64_t off = tb->coff[f[0]->index];
	size_t len = (size_t)(tb->coff[f[n - 1]->index + 1] - off);
	struct cb_io *io;
	int r = 0;
	if (t->scratch_cap < len) {
		void *s = realloc(t->scratch, len);
		r = s ? 0 : -ENOMEM;
		if (s) {
			t->scratch = s;
			t->scratch_cap = len;
		}
	}
	if (r == 0 && (r = pack_io(pc, p, &io)) == 0) {
		ssize_t got = cb_io_pread(io, t->scratch, len, off);
		r = got < 0 ? read_error(got) : (size_t)got != len ? -EIO : 0;
		pthread_mutex_lock(&pc->mu);
		pc->stats.fetches++;
		pc->stats.fetched_bytes += len;
		pthread_mutex_unlock(&pc->mu);
	}
	for (unsigned k = 0; k < n; k++) {
		const unsigned char *src = (unsigned char *)t->scratch + (tb->coff[f[k]->index] - off);
		size_t csize = (size_t)(tb->coff[f[k]->index + 1] - tb->coff[f[k]->index]);
		int fr = r < 0 ? r : seekable_decode_buf(src, csize, t->dctx, f[k]->data, f[k]->len);
		if (fr == 0 && pc->disk && has_checksum(src, csize)) {
			char name[64];
			frame_name(p, f[k]->index, name, sizeof(name));
			disk_cache_put(pc->disk, name, src, csize); /* a cache: failing to keep is no error */
		}
		finish_frame(pc, f[k], fr);
	}
}

/* Loads the claimed frames f[0..n) (consecutive, from claim_run): from the disk cache where it
 * holds them, the others with one read per run of consecutive ones. Every frame is finished
 * (ready or failed); the caller still holds its references. */
static void load_run(pack_cache *pc, struct preader *p, struct frame **f, unsigned n)
{
	struct tls *t = tls_get();
	bool done[RUN_MAX_FRAMES] = {false};
	for (unsigned k = 0; k < n; k++) {
		int r = t ? 0 : -ENOMEM;
		if (r == 0 && !(f[k]->data = frame_buf_get(pc, f[k]->len)))
			r = -ENOMEM;
		if (r == 0 && pc->disk)
			r = frame_from_disk(pc, p, f[k], t) == 0 ? 1 : 0;
		if (r != 0) {
			finish_frame(pc, f[k], r < 0 ? r : 0);
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
static int load_frames(pack_cache *pc, struct preader *p, uint32_t first, uint32_t last,
		       bool prefetch)
{
	int r = 0;
	while (first <= last) {
		struct frame *f[RUN_MAX_FRAMES];
		int n = claim_run(pc, p, first, last, prefetch, f);
		if (n <= 0)
			return n;
		load_run(pc, p, f, (unsigned)n);
		first = f[n - 1]->index + 1;
		pthread_mutex_lock(&pc->mu);
		for (int k = 0; k < n; k++) {
			if (r == 0)
				r = f[k]->err;
			release_locked(pc, f[k]);
		}
		pthread_mutex_unlock(&pc->mu);
		if (r < 0)
			break;
	}
	return r;
}

/* Returns frame `index` of pack p, decoded, with a reference held (release with put_frame). */
static int get_frame(pack_cache *pc, struct preader *p, uint32_t index, struct frame **out)
{
	for (;;) {
		pthread_mutex_lock(&pc->mu);
		struct frame *f = find_frame(pc, p->id, index);
		if (f) {
			f->refs++;
			while (f->state == FRAME_LOADING && f->err == 0)
				pthread_cond_wait(&pc->loaded, &pc->mu);
			int r = f->err;
			bool again = r && f->prefetched; /* read-ahead never fails a read: load it here */
			if (r)
				release_locked(pc, f);
			else {
				pc->stats.hits++;
				lru_unlink(pc, f);
				lru_push(pc, f);
			}
			pthread_mutex_unlock(&pc->mu);
			if (again)
				continue;
			if (r == 0)
				*out = f;
			return r;
		}
		pthread_mutex_unlock(&pc->mu);
		struct frame *nf[1];
		int n = claim_run(pc, p, index, index, false, nf);
		if (n < 0)
			return n;
		if (n == 0)
			continue; /* another thread claimed it meanwhile: wait for it */
		load_run(pc, p, nf, 1);
		int r = nf[0]->err;
		if (r < 0)
			put_frame(pc, nf[0]);
		else
			*out = nf[0];
		return r;
	}
}

/* --- read-ahead -------------------------------------------------------------------------- */

static void *ra_worker(void *arg)
{
	pack_cache *pc = arg;
	pthread_mutex_lock(&pc->mu);
	for (;;) {
		while (!pc->stopping && !pc->njobs)
			pthread_cond_wait(&pc->work, &pc->mu);
		if (pc->stopping)
			break;
		struct job j = pc->jobs[pc->job_head];
		pc->job_head = (pc->job_head + 1) % JOBS_MAX;
		pc->njobs--;
		bool live = j.p->streams[j.stream].gen == j.gen;
		pthread_mutex_unlock(&pc->mu);
		if (live) /* errors are left to the reads that need the frames */
			load_frames(pc, j.p, j.first, j.first + j.n - 1, true);
		pthread_mutex_lock(&pc->mu);
		j.p->refs--;
	}
	pthread_mutex_unlock(&pc->mu);
	return NULL;
}

/* Queues the frames of stream s's next ra_window bytes not yet queued, when less than half of
 * that window is. Called with mu held. */
static void schedule(pack_cache *pc, struct preader *p, struct stream *s)
{
	const struct seek_table *t = p->table;
	if (s->next >= t->doff[t->frames])
		return;
	uint32_t from = seek_table_frame_at(t, s->next);
	if (s->ra_end < from)
		s->ra_end = from;
	if (s->ra_end < t->frames && t->doff[s->ra_end] >= s->next + pc->ra_window / 2)
		return;
	uint64_t limit = s->next + pc->ra_window;
	while (s->ra_end < t->frames && t->doff[s->ra_end] < limit && pc->njobs < JOBS_MAX) {
		uint32_t a = s->ra_end, b = a + 1;
		while (b < t->frames && t->doff[b] < limit && b - a < RUN_MAX_FRAMES &&
		       t->doff[b] - t->doff[a] < pc->ra_chunk)
			b++;
		pc->jobs[(pc->job_head + pc->njobs++) % JOBS_MAX] =
			(struct job){.p = p, .stream = (unsigned)(s - p->streams), .gen = s->gen,
				     .first = a, .n = b - a};
		p->refs++;
		s->ra_end = b;
	}
	while (pc->nworkers < pc->ra_workers &&
	       pthread_create(&pc->workers[pc->nworkers], NULL, ra_worker, pc) == 0)
		pc->nworkers++;
	pthread_cond_broadcast(&pc->work);
}

/* Follows the reads of pack p: a read that starts near where a stream of reads stopped
 * continues it, any other takes over the least recently used stream. */
static void note_read(pack_cache *pc, struct preader *p, uint64_t off, size_t len)
{
	if (!pc->ra_workers || !len)
		return;
	pthread_mutex_lock(&pc->mu);
	struct stream *s = NULL, *lru = &p->streams[0];
	for (unsigned i = 0; i < STREAMS && !s; i++) {
		struct stream *c = &p->streams[i];
		if (c->streak && off + SEQ_SLACK >= c->next && off <= c->next + SEQ_SLACK)
			s = c;
		else if (c->clock < lru->clock)
			lru = c;
	}
	if (!s) {
		s = lru;
		*s = (struct stream){.gen = s->gen + 1};
	}
	s->streak++;
	s->clock = ++pc->clock;
	if (off + len > s->next)
		s->next = off + len;
	if (s->streak >= SEQ_READS)
		schedule(pc, p, s);
	pthread_mutex_unlock(&pc->mu);
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
	note_read(pc, p, off, len);
	return load_frames(pc, p, seek_table_frame_at(p->table, off),
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
	case -EREMOTEIO: return "cannot read the pack from the store";
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
		return r == -EINVAL ? -EBADMSG : read_error(r);
	if (tsize + PACK_TRAILER_SIZE > io->size)
		return -EBADMSG;
	uint64_t at = io->size - tsize - PACK_TRAILER_SIZE;
	unsigned char *buf = malloc(PACK_TRAILER_SIZE + tsize);
	if (!buf)
		return -ENOMEM;
	ssize_t n = cb_io_pread(io, buf, PACK_TRAILER_SIZE + tsize, at);
	unsigned char sha[32];
	r = n < 0 ? read_error(n) : n != (ssize_t)(PACK_TRAILER_SIZE + tsize) ? -EBADMSG : 0;
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
static int index_parse_checked(const char *buf, const struct seek_table *t,
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

static int index_size_ok(const struct pack_trailer *tr, char *err, size_t errlen)
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
	int r = index_size_ok(tr, err, errlen);
	if (r < 0)
		return r;
	struct tls *tl = tls_get();
	char *buf = malloc(tr->index_size + 1);
	r = !tl || !buf ? -ENOMEM : seekable_read(io, t, tl->dctx, tr->index_offset, buf, tr->index_size);
	if (r < 0)
		snprintf(err, errlen, "cannot read the pack index: %s", pack_cache_strerror(r));
	else
		r = index_parse_checked(buf, t, tr, out, err, errlen);
	free(buf);
	return r;
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
	char *buf = index_size_ok(&tr, err, errlen) == 0 ? malloc(tr.index_size + 1) : NULL;
	r = buf ? pack_cache_read(pc, key, tr.index_offset, buf, tr.index_size) : -EBADMSG;
	if (!buf && !*err)
		r = -ENOMEM;
	if (r < 0 && !*err)
		snprintf(err, errlen, "cannot read the pack index: %s", pack_cache_strerror(r));
	if (r == 0)
		r = index_parse_checked(buf, p->table, &tr, out, err, errlen);
	free(buf);
	put_pack(pc, p);
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
