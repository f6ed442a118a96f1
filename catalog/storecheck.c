/* storecheck.c: see storecheck.h. */
#include "storecheck.h"
#include "commitlog.h"
#include "crypt.h"
#include "hash.h"
#include "lock.h"
#include "packread.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20)

struct cpack {
	char *key;               /* packs/xx/ID.tar.zst */
	uint64_t size;           /* of the object */
	uint32_t frames;
	struct pack_trailer tr;
	struct pack_index idx;   /* blobs in the pack's order */
	bool ok;                 /* trailer, table and index verified */
	bool selected;           /* to be read (step 3) */
	bool cataloged;          /* the catalog has a row for it (after reconcile) */
};

/* One blob of one pack; the array is sorted by (sha256, size), so copies in several packs sit
 * side by side. */
struct blobref {
	unsigned char sha[32];
	uint64_t size, offset;
	size_t pack;
	bool used; /* a manifest names it */
	bool bad;  /* read and found damaged */
};

struct named {
	char *name;
	uint64_t size;
	int64_t id;
	bool seen;
};

struct check {
	const struct storecheck_opts *o;
	struct store *s;
	bool oom;            /* a finding was lost, or memory ran out: the check fails at its end */
	struct cpack *packs; /* sorted by key */
	size_t npacks, packs_cap;
	struct blobref *blobs;
	size_t nblobs;
	struct named *known; /* the catalog's packs before reconcile, then its backups */
	size_t nknown, known_cap;
	struct reconcile_stats rs;
	bool catalog_ok;     /* the catalog could be brought up to date: compare it */
	size_t backups, packs_read, stale_locks, problems, segments, segments_read;
	uint64_t bytes, blob_bytes, bytes_read, unused_bytes, unused_blobs;
};

static bool canceled(const struct check *c)
{
	return c->o->cancel && *c->o->cancel;
}

/* ---- small helpers ------------------------------------------------------------------------ */

/* qsort, for arrays that may be empty (and NULL), which qsort itself may not be given. */
static void sort(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n)
		qsort(v, n, size, cmp);
}

/* memcpy of n elements from an array that may be empty (and NULL). */
static void copy(void *dst, const void *src, size_t n, size_t size)
{
	if (n)
		memcpy(dst, src, n * size);
}

/* Hands one finding to the caller. */
static void note(struct check *c, enum storecheck_finding kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct check *c, enum storecheck_finding kind, const char *fmt, ...)
{
	char *line = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0) {
		line = NULL;
		c->oom = true;
	} else if (c->o->finding && c->o->finding(c->o->ctx, kind, line) < 0) {
		c->oom = true;
	}
	va_end(ap);
	c->problems += kind == STORECHECK_PROBLEM;
	free(line);
}
#define problem(c, ...) note((c), STORECHECK_PROBLEM, __VA_ARGS__)
#define information(c, ...) note((c), STORECHECK_INFO, __VA_ARGS__)

static const char *hex16(const unsigned char sha[32], char out[17])
{
	char full[65];
	hex_encode(sha, 32, full);
	memcpy(out, full, 16);
	out[16] = '\0';
	return out;
}

static int named_add(struct check *c, const char *name, uint64_t size, int64_t id)
{
	if (c->nknown == c->known_cap) {
		size_t cap = c->known_cap ? 2 * c->known_cap : 64;
		struct named *v = realloc(c->known, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->known = v;
		c->known_cap = cap;
	}
	char *d = strdup(name);
	if (!d)
		return -ENOMEM;
	c->known[c->nknown++] = (struct named){d, size, id, false};
	return 0;
}

static void named_clear(struct check *c)
{
	for (size_t i = 0; i < c->nknown; i++)
		free(c->known[i].name);
	c->nknown = 0;
}

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

static struct named *named_find(struct check *c, const char *name)
{
	struct named key = {.name = (char *)name};
	return c->nknown ? bsearch(&key, c->known, c->nknown, sizeof(key), cmp_named) : NULL;
}

static int cmp_pack(const void *a, const void *b)
{
	return strcmp(((const struct cpack *)a)->key, ((const struct cpack *)b)->key);
}

static struct cpack *pack_find(struct check *c, const char *key)
{
	struct cpack k = {.key = (char *)key};
	return c->npacks ? bsearch(&k, c->packs, c->npacks, sizeof(k), cmp_pack) : NULL;
}

static int cmp_blob_key(const unsigned char *sa, uint64_t za, const unsigned char *sb, uint64_t zb)
{
	int d = memcmp(sa, sb, 32);
	return d ? d : za < zb ? -1 : za > zb;
}

static int cmp_blobref(const void *a, const void *b)
{
	const struct blobref *x = a, *y = b;
	int d = cmp_blob_key(x->sha, x->size, y->sha, y->size);
	return d ? d : x->pack < y->pack ? -1 : x->pack > y->pack;
}

/* The first blobref of content (sha, size), or NULL. */
static struct blobref *blob_find(struct check *c, const unsigned char sha[32], uint64_t size)
{
	size_t lo = 0, hi = c->nblobs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_blob_key(c->blobs[mid].sha, c->blobs[mid].size, sha, size) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == c->nblobs || cmp_blob_key(c->blobs[lo].sha, c->blobs[lo].size, sha, size) != 0)
		return NULL;
	return &c->blobs[lo];
}

static bool same_blob(const struct check *c, const struct blobref *b, const unsigned char sha[32],
		      uint64_t size)
{
	return b < c->blobs + c->nblobs && cmp_blob_key(b->sha, b->size, sha, size) == 0;
}

/* ---- the subset --------------------------------------------------------------------------- */

/* The pack's number: the first 4 bytes of its id. */
static uint32_t pack_number(const char *key)
{
	const char *base = strrchr(key, '/');
	base = base ? base + 1 : key;
	char head[9];
	unsigned char v[32];
	snprintf(head, sizeof(head), "%s", base);
	if (strlen(head) != 8 || hex_decode(head, v, 4) < 0)
		sha256_buf(key, strlen(key), v);
	return (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
}

/* Where the pack at key ranks for seed: the first 8 bytes of SHA-256(seed, key). */
static uint64_t pack_rank(uint64_t seed, const char *key)
{
	unsigned char v[32], in[8];
	sha256_ctx *h = NULL;
	put_le64(in, seed);
	if (sha256_new(&h) < 0 || sha256_update(h, in, sizeof(in)) < 0 || sha256_update(h, key, strlen(key)) < 0 ||
	    sha256_final(h, v) < 0)
		sha256_buf(key, strlen(key), v); /* out of memory: still a choice, only a fixed one */
	sha256_free(h);
	return get_le64(v);
}

struct ranked {
	uint64_t rank;
	size_t i;
};

static int cmp_ranked(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	return x->rank < y->rank ? -1 : x->rank > y->rank ? 1 : (x->i > y->i) - (x->i < y->i);
}

static int select_share(const struct storecheck_subset *s, const char *const *keys, size_t n, bool *selected)
{
	if (!n)
		return 0;
	double exact = s->share * (double)n - 1e-9; /* 0.28 * 25 is 7.000000000000001 */
	size_t want = exact > 0 ? (size_t)exact : 0;
	want += exact > 0 && (double)want < exact; /* rounded up */
	want = want < 1 ? 1 : want > n ? n : want;
	struct ranked *v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct ranked){.rank = pack_rank(s->seed, keys[i]), .i = i};
	qsort(v, n, sizeof(*v), cmp_ranked);
	for (size_t k = 0; k < want; k++)
		selected[v[k].i] = true;
	free(v);
	return 0;
}

int storecheck_select(const struct storecheck_subset *s, const char *const *keys, size_t n, bool *selected)
{
	for (size_t i = 0; i < n; i++)
		selected[i] = s->kind == STORECHECK_READ_ALL ||
			      (s->kind == STORECHECK_READ_NTH && s->m && pack_number(keys[i]) % s->m == s->n - 1);
	return s->kind == STORECHECK_READ_SHARE ? select_share(s, keys, n, selected) : 0;
}

/* "n/M" (1 <= n <= M) or "P%" (0 < P <= 100, decimals allowed). */

/* ---- 1. the catalog brought up to date ---------------------------------------------------- */

static int on_known_pack(void *ctx, int64_t id, const char *path, uint64_t size)
{
	return named_add(ctx, path, size, id);
}

/* Reconciles, and says what that changed. A failure leaves the catalog out of the comparison. */
static void reconcile(struct check *c)
{
	catalog *cat = store_catalog(c->s);
	struct strbuf err = {0};
	char why[512];
	int r = catalog_list_packs(cat, on_known_pack, c);
	if (r < 0) {
		problem(c, "catalog.db: cannot list its packs: %s", catalog_why(cat, r, why, sizeof(why)));
		return;
	}
	sort(c->known, c->nknown, sizeof(*c->known), cmp_named);
	r = store_reconcile(c->s, RECONCILE_PACKS, &c->rs, &err);
	if (r < 0) {
		problem(c, "catalog.db: %s ('cassbackup reindex' rebuilds it)", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return;
	}
	c->catalog_ok = true;
	const struct reconcile_stats *s = &c->rs;
	if (s->backups_added || s->backups_removed || s->packs_added || s->packs_removed)
		information(c, "catalog.db was behind the store (routine after a crash or another host's "
			    "work): took in %u backup(s) and %u pack(s), dropped %u backup(s) and %u pack(s)",
			    s->backups_added, s->packs_added, s->backups_removed, s->packs_removed);
}

/* ---- 2. packs ------------------------------------------------------------------------------ */

static int on_pack_key(void *ctx, const char *key, uint64_t size)
{
	struct check *c = ctx;
	size_t n = strlen(key);
	if (n < 8 || strcmp(key + n - 8, ".tar.zst") != 0) {
		information(c, "%s: not a pack (no .tar.zst name), ignored", key);
		return 0;
	}
	if (c->npacks == c->packs_cap) {
		size_t cap = c->packs_cap ? 2 * c->packs_cap : 64;
		struct cpack *v = realloc(c->packs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->packs = v;
		c->packs_cap = cap;
	}
	struct cpack *p = &c->packs[c->npacks];
	*p = (struct cpack){.key = strdup(key), .size = size};
	if (!p->key)
		return -ENOMEM;
	c->npacks++;
	return 0;
}

static int cmp_pack_blob_offset(const void *a, const void *b)
{
	const struct pack_blob *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Trailer, seek table and index of one pack (pack_meta_read); p->ok when all verify. */
static void check_pack(struct check *c, struct cpack *p)
{
	struct cb_io *io = NULL;
	struct pack_meta pm = {0};
	char why[512] = "";
	int r = cb_backend_open_read(store_backend(c->s), p->key, &io);
	if (r < 0) {
		problem(c, "%s: cannot open: %s", p->key,
			*cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
		return;
	}
	p->size = io->size;
	r = pack_meta_read(io, &pm, why, sizeof(why));
	if (r == -ENOMEM)
		c->oom = true;
	else if (r < 0)
		problem(c, "%s: %s", p->key, why);
	if (r == 0) {
		p->frames = pm.table->frames;
		p->tr = pm.trailer;
		p->idx = pm.index;
		pm.index = (struct pack_index){0}; /* p's now */
		p->ok = true;
	}
	pack_meta_free(&pm);
	cb_io_close(io);
}

/* Lists packs/, checks every pack, and builds the blob map from those that verify. */
/* Marks the packs step 3 reads (storecheck_select). */
static int select_packs(struct check *c)
{
	const char **keys = malloc((c->npacks ? c->npacks : 1) * sizeof(*keys));
	bool *sel = calloc(c->npacks ? c->npacks : 1, sizeof(*sel));
	int r = keys && sel ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < c->npacks; i++)
		keys[i] = c->packs[i].key;
	r = r ?: storecheck_select(&c->o->read, keys, c->npacks, sel);
	for (size_t i = 0; r == 0 && i < c->npacks; i++)
		c->packs[i].selected = sel[i];
	free(keys);
	free(sel);
	return r;
}

static int check_packs(struct check *c)
{
	int r = cb_backend_list(store_backend(c->s), "packs/", on_pack_key, c);
	if (r < 0)
		return r;
	sort(c->packs, c->npacks, sizeof(*c->packs), cmp_pack);
	r = select_packs(c);
	if (r < 0)
		return r;
	size_t n = 0;
	for (size_t i = 0; i < c->npacks && !canceled(c); i++) {
		check_pack(c, &c->packs[i]);
		n += c->packs[i].ok ? c->packs[i].idx.nblobs : 0;
	}
	if (canceled(c))
		return -ECANCELED;
	c->blobs = malloc((n ? n : 1) * sizeof(*c->blobs));
	if (!c->blobs)
		return -ENOMEM;
	for (size_t i = 0; i < c->npacks; i++) {
		for (size_t j = 0; c->packs[i].ok && j < c->packs[i].idx.nblobs; j++) {
			const struct pack_blob *b = &c->packs[i].idx.blobs[j];
			struct blobref *e = &c->blobs[c->nblobs++];
			*e = (struct blobref){.size = b->size, .offset = b->offset, .pack = i};
			memcpy(e->sha, b->sha256, 32);
			c->blob_bytes += b->size;
		}
	}
	sort(c->blobs, c->nblobs, sizeof(*c->blobs), cmp_blobref);
	for (size_t i = 0; i < c->nknown; i++) { /* packs the catalog had */
		const struct cpack *p = pack_find(c, c->known[i].name);
		if (!p)
			information(c, "%s: catalog.db knew this pack; the store no longer has it",
				    c->known[i].name);
		else if (p->size != c->known[i].size) /* the reconcile took it in as it is now */
			problem(c, "catalog.db: pack %s: %llu bytes in the store, %llu when it was indexed: "
				"damaged or replaced since (packs never change; 'cassbackup check "
				"--read-data' reads what it holds)", p->key, (unsigned long long)p->size,
				(unsigned long long)c->known[i].size);
	}
	named_clear(c);
	return 0;
}

/* ---- 3. the data of the chosen packs ------------------------------------------------------- */

/* Reading one pack: its blobs by offset, the one being hashed, and the bytes fed so far. */
struct pack_read {
	struct check *c;
	size_t pack;
	struct pack_blob *order;
	size_t n, next;
	sha256_ctx *h;
	int err; /* a read error inside the current blob */
};

static void mark_bad(struct check *c, size_t pack, const struct pack_blob *b)
{
	for (struct blobref *e = blob_find(c, b->sha256, b->size); e && same_blob(c, e, b->sha256, b->size); e++)
		if (e->pack == pack)
			e->bad = true;
}

/* The current blob is complete: compare, report, move on. */
static void blob_done(struct pack_read *pr)
{
	struct check *c = pr->c;
	const struct pack_blob *b = &pr->order[pr->next++];
	unsigned char got[32];
	char h[17];
	int r = sha256_final(pr->h, got);
	if (pr->err)
		problem(c, "%s: blob %s... (%llu bytes at offset %llu): %s", c->packs[pr->pack].key,
			hex16(b->sha256, h), (unsigned long long)b->size, (unsigned long long)b->offset,
			pack_cache_strerror(pr->err));
	else if (r == 0 && memcmp(got, b->sha256, 32) != 0)
		problem(c, "%s: blob %s... (%llu bytes at offset %llu): SHA-256 differs (damage that "
			"zstd's frame checksum did not catch)", c->packs[pr->pack].key, hex16(b->sha256, h),
			(unsigned long long)b->size, (unsigned long long)b->offset);
	if (pr->err || (r == 0 && memcmp(got, b->sha256, 32) != 0))
		mark_bad(c, pr->pack, b);
	pr->err = 0;
}

/* Feeds the stream bytes [off, off + n) (data, or NULL with err when they could not be read)
 * to the blobs they belong to. Returns whether any blob's bytes were among them. */
static bool feed(struct pack_read *pr, uint64_t off, const unsigned char *data, size_t n, int err)
{
	uint64_t end = off + n;
	bool touched = false;
	while (pr->next < pr->n) {
		const struct pack_blob *b = &pr->order[pr->next];
		if (b->offset >= end && b->size)
			break;
		uint64_t from = b->offset > off ? b->offset : off;
		uint64_t to = b->offset + b->size < end ? b->offset + b->size : end;
		if (from < to) {
			touched = true;
			if (err && !pr->err)
				pr->err = err;
			else if (!err)
				sha256_update(pr->h, data + (from - off), (size_t)(to - from));
		}
		if (b->offset + b->size > end)
			break;
		blob_done(pr);
	}
	return touched;
}

/* Feeds frame f of pack i, read through the frame cache in pieces; a piece that cannot be
 * read ends the frame (its bytes are fed as unreadable). */
static void read_frame(struct pack_read *pr, pack_cache *pc, const struct seek_table *t, uint32_t f,
		       unsigned char *buf)
{
	struct cpack *p = &pr->c->packs[pr->pack];
	uint64_t off = t->doff[f], end = t->doff[f + 1];
	while (off < end) {
		size_t n = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
		int r = pack_cache_read(pc, p->key, off, buf, n);
		if (r < 0)
			n = (size_t)(end - off);
		if (!feed(pr, off, r < 0 ? NULL : buf, n, r) && r < 0)
			problem(pr->c, "%s: frame %u (tar stream at %llu, no blob's data): %s",
						   p->key, f, (unsigned long long)off, pack_cache_strerror(r));
		pr->c->bytes_read += n;
		off += n;
	}
}

/* Decodes every frame of pack i and checks every blob in it. */
static int read_pack(struct check *c, pack_cache *pc, size_t i, sha256_ctx *h, unsigned char *buf)
{
	struct cpack *p = &c->packs[i];
	struct pack_read pr = {.c = c, .pack = i, .n = p->idx.nblobs, .h = h};
	struct cb_io *io = NULL;
	struct seek_table *t = NULL;
	struct pack_trailer tr;
	int r = cb_backend_open_read(store_backend(c->s), p->key, &io) ?: pack_table_read(io, &t, &tr);
	cb_io_close(io);
	if (r < 0) { /* it verified a moment ago */
		problem(c, "%s: cannot read its seek table: %s", p->key, pack_cache_strerror(r));
		return r == -ENOMEM ? r : 0;
	}
	pr.order = malloc((pr.n ? pr.n : 1) * sizeof(*pr.order));
	if (!pr.order) {
		seek_table_free(t);
		return -ENOMEM;
	}
	copy(pr.order, p->idx.blobs, pr.n, sizeof(*pr.order));
	sort(pr.order, pr.n, sizeof(*pr.order), cmp_pack_blob_offset);
	for (uint32_t f = 0; f < t->frames && !canceled(c); f++)
		read_frame(&pr, pc, t, f, buf);
	while (pr.next < pr.n && !canceled(c)) /* empty blobs at the very end */
		feed(&pr, t->doff[t->frames], buf, 0, 0);
	seek_table_free(t);
	free(pr.order);
	c->packs_read++;
	return canceled(c) ? -ECANCELED : 0;
}

static int read_data(struct check *c)
{
	pack_cache *pc = NULL;
	sha256_ctx *h = NULL;
	unsigned char *buf = malloc(CHUNK);
	int r = !buf ? -ENOMEM : store_pack_cache(c->s, &pc) ?: sha256_new(&h);
	for (size_t i = 0; r == 0 && i < c->npacks; i++)
		if (c->packs[i].ok && c->packs[i].selected)
			r = read_pack(c, pc, i, h, buf);
	sha256_free(h);
	free(buf);
	return r;
}

/* ---- 4. manifests -------------------------------------------------------------------------- */

/* A file of a backup as the manifest or the catalog has it, for comparing the two. */
struct cfile {
	char *path; /* ks/table/[.index/]name */
	uint64_t size;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
	unsigned char sha[32];
	bool located; /* catalog: it knows a pack holding the bytes */
};

struct cfiles {
	struct cfile *v;
	size_t n, cap;
};

static int cfiles_add(struct cfiles *l, const char *ks, const char *table, const char *dir,
		      const char *name, const struct cfile *f)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct cfile *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct cfile *e = &l->v[l->n];
	*e = *f;
	/* a node file (ks NULL) has at most one '/' in its path, a table's file at least two */
	int n = ks ? asprintf(&e->path, "%s/%s/%s%s%s", ks, table, dir, *dir ? "/" : "", name)
		   : asprintf(&e->path, "%s%s%s", dir, *dir ? "/" : "", name);
	if (n < 0)
		return -ENOMEM;
	l->n++;
	return 0;
}

static void cfiles_free(struct cfiles *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	*l = (struct cfiles){0};
}

static int cmp_cfile(const void *a, const void *b)
{
	return strcmp(((const struct cfile *)a)->path, ((const struct cfile *)b)->path);
}

/* Is every file's content in some verified pack's index, and not found damaged? Marks the
 * blobs used. */
static void check_files(struct check *c, const char *backup, const struct cfiles *l)
{
	char h[17];
	for (size_t i = 0; i < l->n; i++) {
		const struct cfile *f = &l->v[i];
		struct blobref *e = blob_find(c, f->sha, f->size), *first = e;
		bool good = false;
		for (; e && same_blob(c, e, f->sha, f->size); e++) {
			e->used = true;
			good |= !e->bad;
		}
		c->bytes += f->size;
		if (!first)
			problem(c, "backup %s: %s: its bytes (SHA-256 %s..., %llu bytes) are in no intact "
				"pack's index", backup, f->path, hex16(f->sha, h), (unsigned long long)f->size);
		else if (!good)
			problem(c, "backup %s: %s: its bytes are damaged in %s", backup, f->path,
				c->packs[first->pack].key);
	}
}

static int manifest_files(const struct manifest *m, struct cfiles *l)
{
	int r = 0;
	for (size_t k = 0; r == 0 && k < m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &m->keyspaces[k];
		for (size_t t = 0; r == 0 && t < ks->ntables; t++) {
			const struct manifest_table *tb = &ks->tables[t];
			for (size_t i = 0; r == 0 && i < tb->nfiles; i++) {
				const struct manifest_file *f = &tb->files[i];
				struct cfile cf = {.size = f->size, .mode = f->attr.mode, .uid = f->attr.uid,
						   .gid = f->attr.gid, .mtime_ns = f->attr.mtime_ns};
				memcpy(cf.sha, f->sha256, 32);
				r = cfiles_add(l, ks->name, tb->name, f->dir, f->name, &cf);
			}
		}
	}
	for (size_t i = 0; r == 0 && i < m->nnode_files; i++) {
		const struct manifest_file *f = &m->node_files[i];
		struct cfile cf = {.size = f->size, .mode = f->attr.mode, .uid = f->attr.uid,
				   .gid = f->attr.gid, .mtime_ns = f->attr.mtime_ns};
		memcpy(cf.sha, f->sha256, 32);
		r = cfiles_add(l, NULL, NULL, f->dir, f->name, &cf);
	}
	if (r == 0)
		sort(l->v, l->n, sizeof(*l->v), cmp_cfile);
	return r;
}

/* ---- 5. the catalog against the store ------------------------------------------------------- */

struct table_ref {
	int64_t row;
	char *keyspace, *table;
};

struct catalog_walk {
	struct table_ref *t;
	size_t n;
	const struct table_ref *cur;
	struct cfiles files;
};

static int on_catalog_table(void *ctx, const struct cb_table_row *t)
{
	struct catalog_walk *w = ctx;
	struct table_ref *v = realloc(w->t, (w->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	w->t = v;
	v[w->n] = (struct table_ref){t->row, strdup(t->keyspace), strdup(t->table)};
	if (!v[w->n].keyspace || !v[w->n].table) {
		free(v[w->n].keyspace);
		free(v[w->n].table);
		return -ENOMEM;
	}
	w->n++;
	return 0;
}

static int on_catalog_file(void *ctx, const struct cb_file_row *f)
{
	struct catalog_walk *w = ctx;
	struct cfile cf = {.size = f->size, .mode = f->mode, .uid = f->uid, .gid = f->gid,
			   .mtime_ns = f->mtime_ns, .located = f->loc.pack_id != 0};
	memcpy(cf.sha, f->loc.sha256, 32);
	return cfiles_add(&w->files, w->cur ? w->cur->keyspace : NULL, w->cur ? w->cur->table : NULL,
			  f->dir, f->name, &cf);
}

/* The files the catalog has for backup id, sorted like manifest_files(). */
static int catalog_files(catalog *cat, int64_t id, struct cfiles *out)
{
	struct catalog_walk w = {0};
	int r = catalog_backup_tables(cat, id, on_catalog_table, &w);
	for (size_t i = 0; r == 0 && i < w.n; i++) {
		w.cur = &w.t[i];
		r = catalog_table_files(cat, w.t[i].row, on_catalog_file, &w);
	}
	w.cur = NULL; /* the node's own files */
	r = r ?: catalog_node_files(cat, id, on_catalog_file, &w);
	for (size_t i = 0; i < w.n; i++) {
		free(w.t[i].keyspace);
		free(w.t[i].table);
	}
	free(w.t);
	if (r == 0)
		sort(w.files.v, w.files.n, sizeof(*w.files.v), cmp_cfile);
	*out = w.files;
	return r;
}

/* How a catalog file differs from the manifest's, or NULL. */
static const char *file_difference(struct check *c, const struct cfile *m, const struct cfile *k)
{
	if (cmp_blob_key(m->sha, m->size, k->sha, k->size) != 0)
		return "other content (SHA-256 or size)";
	if (m->mode != k->mode || m->uid != k->uid || m->gid != k->gid || m->mtime_ns != k->mtime_ns)
		return "other mode, owner or mtime";
	if (!k->located && blob_find(c, m->sha, m->size))
		return "no pack to read it from, though a pack holds its bytes";
	return NULL;
}

/* The catalog's files of a backup against its manifest's: one line for the backup. */
static void compare_files(struct check *c, const char *backup, const struct cfiles *m,
			  const struct cfiles *k)
{
	size_t i = 0, j = 0, differ = 0;
	char first[1024] = "";
	while (i < m->n || j < k->n) {
		int d = i == m->n ? 1 : j == k->n ? -1 : strcmp(m->v[i].path, k->v[j].path);
		const char *why = d < 0 ? "missing" : d > 0 ? "not in the manifest"
					 : file_difference(c, &m->v[i], &k->v[j]);
		if (why && !differ++)
			snprintf(first, sizeof(first), "%s: %s", d > 0 ? k->v[j].path : m->v[i].path, why);
		i += d <= 0;
		j += d >= 0;
	}
	if (differ)
		problem(c, "catalog.db: backup %s: %zu file(s) differ from its manifest (first: %s); "
			"'cassbackup reindex' rebuilds the catalog", backup, differ, first);
}

static int on_backup_id(void *ctx, const struct cb_backup_summary *b)
{
	*(int64_t *)ctx = b->id;
	return 0;
}

/* One manifest: it parses, its files' bytes are in the packs, the catalog agrees. */
static void check_manifest(struct check *c, const char *name)
{
	struct manifest *m = NULL;
	struct strbuf err = {0};
	struct cfiles mf = {0}, kf = {0};
	uint64_t size;
	catalog *cat = store_catalog(c->s);
	char why[512];
	int r = store_read_manifest(c->s, name, &m, &size, &err);
	if (r < 0 && r != -ENOENT) /* ENOENT: forgotten while we looked */
		problem(c, "%s", err.buf ? err.buf : strerror(-r));
	if (r < 0)
		goto out;
	c->backups++;
	if ((r = manifest_files(m, &mf)) < 0)
		goto out;
	check_files(c, name, &mf);
	struct named *k = c->catalog_ok ? named_find(c, name) : NULL;
	if (!c->catalog_ok)
		goto out;
	if (!k) {
		problem(c, "catalog.db: backup %s is missing; 'cassbackup reindex' rebuilds the catalog", name);
		goto out;
	}
	k->seen = true;
	if (k->size != size)
		problem(c, "catalog.db: backup %s: recorded from a manifest of %llu bytes, the store's has "
			"%llu", name, (unsigned long long)k->size, (unsigned long long)size);
	int64_t id = 0;
	r = catalog_get_backup(cat, name, on_backup_id, &id);
	if (r > 0 && (r = catalog_files(cat, id, &kf)) == 0)
		compare_files(c, name, &mf, &kf);
	else if (r < 0)
		problem(c, "catalog.db: backup %s: %s", name, catalog_why(cat, r, why, sizeof(why)));
	r = 0;
out:
	if (r == -ENOMEM)
		c->oom = true;
	cfiles_free(&mf);
	cfiles_free(&kf);
	manifest_free(m);
	sb_free(&err);
}

/* Names of backups/, each malloc'd. */
struct names {
	char **v;
	size_t n;
};

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct names){0};
}

static int on_manifest_key(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	struct names *l = ctx;
	char name[CB_REF_MAX];
	/* not a manifest: kept as "backups/...", named below */
	char *d = strdup(store_manifest_name(key, name) == 0 ? name : key);
	if (!d || ptrv_push(&l->v, &l->n, d) < 0) {
		free(d);
		return -ENOMEM;
	}
	return 0;
}

static int on_catalog_backup(void *ctx, int64_t id, const char *name, uint64_t size,
			     const char *version)
{
	(void)version;
	return named_add(ctx, name, size, id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every manifest in backups/; then the catalog's backups that have none. */
static int check_manifests(struct check *c)
{
	struct names names = {0};
	int r = cb_backend_list(store_backend(c->s), "backups/", on_manifest_key, &names);
	catalog *cat = store_catalog(c->s);
	if (r == 0 && c->catalog_ok) {
		r = catalog_backup_names(cat, on_catalog_backup, c);
		sort(c->known, c->nknown, sizeof(*c->known), cmp_named);
	}
	if (r == 0 && names.n)
		sort(names.v, names.n, sizeof(*names.v), cmp_str);
	for (size_t i = 0; r == 0 && i < names.n && !canceled(c); i++) {
		if (!strncmp(names.v[i], "backups/", 8))
			information(c, "%s: not a manifest (not backups/NAME/NODE.json or backups/NAME.json), ignored", names.v[i]);
		else
			check_manifest(c, names.v[i]);
	}
	for (size_t i = 0; r == 0 && c->catalog_ok && i < c->nknown; i++)
		if (!c->known[i].seen)
			problem(c, "catalog.db: lists backup %s, which has no valid manifest in the store",
				c->known[i].name);
	names_free(&names);
	return r < 0 ? r : canceled(c) ? -ECANCELED : 0;
}

/* The blobs the catalog says a pack holds against the pack's index. */
struct loc_cmp {
	struct pack_blob *v;
	size_t n, cap;
};

static int on_catalog_blob(void *ctx, const unsigned char sha[32], uint64_t size, uint64_t off)
{
	struct loc_cmp *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct pack_blob *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct pack_blob *b = &l->v[l->n++];
	memcpy(b->sha256, sha, 32);
	b->size = size;
	b->offset = off;
	return 0;
}

static int cmp_pack_blob(const void *a, const void *b)
{
	const struct pack_blob *x = a, *y = b;
	int d = cmp_blob_key(x->sha256, x->size, y->sha256, y->size);
	return d ? d : x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* How many of the pack's blobs the catalog records differently (missing, extra, elsewhere). */
static size_t blob_differences(struct cpack *p, struct loc_cmp *k)
{
	size_t n = p->idx.nblobs, i = 0, j = 0, differ = 0;
	struct pack_blob *v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return 0;
	copy(v, p->idx.blobs, n, sizeof(*v));
	sort(v, n, sizeof(*v), cmp_pack_blob);
	sort(k->v, k->n, sizeof(*k->v), cmp_pack_blob);
	while (i < n || j < k->n) {
		int d = i == n ? 1 : j == k->n ? -1 : cmp_pack_blob(&v[i], &k->v[j]);
		differ += d != 0;
		i += d <= 0;
		j += d >= 0;
	}
	free(v);
	return differ;
}

static int on_catalog_pack_row(void *ctx, const struct cb_pack_row *row)
{
	struct check *c = ctx;
	struct cpack *p = pack_find(c, row->path);
	if (!p) {
		problem(c, "catalog.db: lists pack %s, which the store does not have", row->path);
		return 0;
	}
	p->cataloged = true;
	if (!p->ok)
		return 0; /* said already */
	const char *why = memcmp(row->table_sha256, p->tr.table_sha256, 32) ? "seek table SHA-256"
			  : row->size != p->size ? "size"
			  : row->frames != p->frames ? "number of frames"
			  : row->index_offset != p->tr.index_offset || row->index_size != p->tr.index_size
				  ? "index location" : NULL;
	if (why) {
		problem(c, "catalog.db: pack %s: its %s differs from the pack's; 'cassbackup reindex' "
			"rebuilds the catalog", row->path, why);
		return 0;
	}
	struct loc_cmp l = {0};
	catalog *cat = store_catalog(c->s);
	int r = catalog_pack_blobs(cat, row->id, on_catalog_blob, &l);
	size_t differ = r == 0 ? blob_differences(p, &l) : 0;
	free(l.v);
	if (differ)
		problem(c, "catalog.db: pack %s: %zu blob(s) recorded otherwise than its index says; "
			"'cassbackup reindex' rebuilds the catalog", row->path, differ);
	return r;
}

static void compare_packs(struct check *c)
{
	catalog *cat = store_catalog(c->s);
	char why[512];
	int r = catalog_pack_rows(cat, on_catalog_pack_row, c);
	if (r < 0) {
		problem(c, "catalog.db: cannot read its packs: %s", catalog_why(cat, r, why, sizeof(why)));
		return;
	}
	for (size_t i = 0; i < c->npacks; i++)
		if (c->packs[i].ok && !c->packs[i].cataloged)
			problem(c, "catalog.db: pack %s is not indexed", c->packs[i].key);
}

/* ---- 6. stale locks, unused bytes ------------------------------------------------------------ */

static int on_lock(void *ctx, const struct lock_info *li)
{
	struct check *c = ctx;
	if (!li->stale)
		return 0;
	c->stale_locks++;
	char when[64], age[64] = "";
	format_time_utc(li->time_ns, when, sizeof(when));
	if (li->age_ns >= 0)
		snprintf(age, sizeof(age), ", %lld s ago by the store's clock",
			 (long long)(li->age_ns / 1000000000));
	if (!*li->host)
		information(c, "%s: not a lock document (counts as stale); 'cassbackup unlock' removes it",
			    li->key);
	else
		information(c, "%s: stale %s lock of %s (pid %lld on %s, last refreshed %s%s); "
			    "'cassbackup unlock' removes it", li->key, li->exclusive ? "exclusive" : "shared",
			    li->command, (long long)li->pid, li->host, when, age);
	return 0;
}

static void unused_bytes(struct check *c)
{
	for (size_t i = 0; i < c->nblobs; i++) {
		if (!c->blobs[i].used) {
			c->unused_blobs++;
			c->unused_bytes += c->blobs[i].size;
		}
	}
	for (size_t i = 0; i < c->npacks; i++) {
		struct cpack *p = &c->packs[i];
		size_t used = 0;
		for (size_t j = 0; p->ok && j < p->idx.nblobs; j++) {
			struct blobref *e = blob_find(c, p->idx.blobs[j].sha256, p->idx.blobs[j].size);
			used += e && e->used;
		}
		if (p->ok && used == 0)
			information(c, "%s: no backup uses any of its %zu blob(s) (%llu bytes)", p->key,
				    p->idx.nblobs, (unsigned long long)p->size);
	}
	if (c->unused_blobs) {
		char size[32];
		format_bytes(c->unused_bytes, size, sizeof(size));
		information(c, "unused: %s in %llu blob(s) no backup uses ('cassbackup prune' removes them)",
			    size, (unsigned long long)c->unused_blobs);
	}
}


/* ---- the walk ------------------------------------------------------------------------------- */

static void check_free(struct check *c)
{
	for (size_t i = 0; i < c->npacks; i++) {
		free(c->packs[i].key);
		pack_index_free(&c->packs[i].idx);
	}
	free(c->packs);
	free(c->blobs);
	named_clear(c);
	free(c->known);
	reconcile_stats_free(&c->rs);
}

/* --- commitlog segments ------------------------------------------------------------------ */

/* Segment key's metadata, and its bytes when selected: each one that does not read is a
 * problem naming it (a failed request too: the check cannot say the segment is whole). */
static int check_segment(struct check *c, const char *key, bool selected)
{
	struct cb_backend *b = store_backend(c->s);
	struct commitlog_meta m;
	struct strbuf why = {0};
	void *data = NULL;
	int r = commitlog_read_meta(b, key, &m, &why);
	if (r == 0 && selected) {
		c->segments_read++;
		if ((r = commitlog_read(b, key, &m, &data, &why)) == 0)
			c->bytes_read += m.size;
	}
	free(data);
	if (r == -ENOMEM || r == -ECANCELED) {
		sb_free(&why);
		return r;
	}
	if (r == -ENOENT) /* deleted since the listing: a prune's */
		r = 0;
	else if (r < 0)
		problem(c, "%s: %s%s", key, why.len ? why.buf : cb_backend_why(r),
			r == -EBADMSG ? " (a point-in-time restore that needs it fails)" : "");
	sb_free(&why);
	return 0;
}

static int check_segments(struct check *c)
{
	char **keys = NULL;
	size_t n = 0;
	int r = commitlog_keys(store_backend(c->s), &keys, &n);
	bool *sel = r == 0 ? calloc(n ? n : 1, sizeof(*sel)) : NULL;
	if (r == 0 && !sel)
		r = -ENOMEM;
	if (r == 0 && c->o->read.kind != STORECHECK_READ_NONE)
		r = storecheck_select(&c->o->read, (const char *const *)keys, n, sel);
	c->segments = n;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = canceled(c) ? -ECANCELED : check_segment(c, keys[i], sel[i]);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(sel);
	return r;
}

/* A key slot that does not parse (the key file or passphrase it was made for no longer opens
 * the store: the slot kept for disaster recovery, maybe), or made for another store. */
static int on_key_slot(void *ctx, const char *id, const struct crypt_slot_info *info, const char *why)
{
	struct check *c = ctx;
	const char *store_id = store_get_config(c->s)->id;
	if (!info)
		problem(c, "keys/%s.json: damaged key slot (%s): the key file or "
			"passphrase it was made for no longer opens the store; add another with "
			"'cassbackup key add', then remove this one", id, why);
	else if (*info->store && strcmp(info->store, store_id))
		problem(c, "keys/%s.json: a key slot made for another store (%s, not %s): it opens "
			"nothing here (copied in, or put back from the wrong copy); remove it with "
			"'cassbackup key remove %s', and add the key it was for with 'cassbackup key add'",
			id, info->store, store_id, id);
	else if (!info->bound)
		information(c, "keys/%s.json: a key slot without config_mac (made "
			    "by a release before the config's settings were bound to the key, or the "
			    "field removed): a damaged or replaced config is not noticed when it opens "
			    "the store; add another with 'cassbackup key add', then remove this one", id);
	return 0;
}

int storecheck_run(struct store *s, const struct storecheck_opts *o, struct storecheck_stats *st,
		   struct strbuf *err)
{
	struct check c = {.o = o, .s = s};
	reconcile(&c);
	int r = check_packs(&c);
	if (r == 0 && o->read.kind != STORECHECK_READ_NONE)
		r = read_data(&c);
	r = r ?: check_manifests(&c);
	if (r == 0 && c.catalog_ok)
		compare_packs(&c);
	if (r == 0 && store_encrypted(s)) {
		struct strbuf why = {0}; /* on failure the backend's word is said below */
		r = store_keys_list(s, on_key_slot, &c, &why);
		sb_free(&why);
	}
	r = r ?: check_segments(&c);
	r = r ?: store_lock_list(store_backend(s), o->lock, on_lock, &c);
	if (r == 0)
		unused_bytes(&c);
	if (r < 0 || c.oom) /* the backend's word, read before anything else can change it */
		sb_puts(err, r == -ECANCELED ? "interrupted"
			     : *cb_backend_last_error() ? cb_backend_last_error()
			     : strerror(r < 0 ? -r : ENOMEM));
	*st = (struct storecheck_stats){
		.backups = c.backups, .packs = c.npacks, .blobs = c.nblobs, .bytes = c.bytes,
		.blob_bytes = c.blob_bytes, .packs_read = c.packs_read, .bytes_read = c.bytes_read,
		.unused_blobs = c.unused_blobs, .unused_bytes = c.unused_bytes,
		.stale_locks = c.stale_locks, .segments = c.segments, .segments_read = c.segments_read,
		.problems = c.problems,
	};
	check_free(&c);
	return r < 0 ? r : c.oom ? -ENOMEM : 0;
}
