/* filecheck.c: binding what the catalog says of a file to what the store says (store.h
 * store_check_file_content, store_check_location).
 *
 * The catalog is a cache that may be stale (rebuilt under a running reader), damaged, or
 * planted; the store's manifests and pack indexes are the truth. Two small caches make the
 * check a lookup:
 *   - digests: per backup, every file of its manifest as (16 bytes of SHA-256 of its path,
 *     its content's SHA-256, its size), sorted by path hash: 56 bytes a file;
 *   - indexes: per pack, every blob of its index as (offset, size, SHA-256), sorted by offset:
 *     48 bytes a blob.
 * Each is bounded in bytes and evicts the least recently used entry whole; one entry larger
 * than its bound is still built, used once, and dropped at the next insertion.
 */
#include "store.h"
#include "store_i.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_BUDGET (32u << 20)
#define INDEX_BUDGET (16u << 20)

struct digest_file {
	unsigned char path[16]; /* SHA-256 of "keyspace\0table\0dir\0name", cut to 16 bytes */
	unsigned char sha[32];
	uint64_t size;
};

struct index_blob {
	uint64_t offset, size;
	unsigned char sha[32];
};

/* One cached entry: a backup's digest or a pack's index. */
struct entry {
	char *key;          /* backup ref (store.h), or pack key */
	void *v;            /* struct digest_file[] or struct index_blob[], sorted */
	size_t n, bytes;
	struct entry *prev, *next; /* most recent first */
};

struct lru {
	struct entry *head, *tail;
	size_t bytes, budget;
};

struct filecheck {
	pthread_mutex_t mu;
	struct lru digests, indexes;
};

int filecheck_new(struct filecheck **out)
{
	struct filecheck *fc = calloc(1, sizeof(*fc));
	if (!fc)
		return -ENOMEM;
	pthread_mutex_init(&fc->mu, NULL);
	fc->digests.budget = DIGEST_BUDGET;
	fc->indexes.budget = INDEX_BUDGET;
	*out = fc;
	return 0;
}

static void entry_free(struct entry *e)
{
	if (e) {
		free(e->key);
		free(e->v);
		free(e);
	}
}

static void lru_unlink(struct lru *l, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
	l->bytes -= e->bytes;
}

static void lru_push(struct lru *l, struct entry *e)
{
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	l->head = e;
	if (!l->tail)
		l->tail = e;
	l->bytes += e->bytes;
}

static void lru_clear(struct lru *l)
{
	while (l->head) {
		struct entry *e = l->head;
		lru_unlink(l, e);
		entry_free(e);
	}
}

void filecheck_free(struct filecheck *fc)
{
	if (!fc)
		return;
	lru_clear(&fc->digests);
	lru_clear(&fc->indexes);
	pthread_mutex_destroy(&fc->mu);
	free(fc);
}

/* Finds key and makes it most recent; called with mu held. */
static struct entry *lru_find(struct lru *l, const char *key)
{
	for (struct entry *e = l->head; e; e = e->next) {
		if (!strcmp(e->key, key)) {
			lru_unlink(l, e);
			lru_push(l, e);
			return e;
		}
	}
	return NULL;
}

/* Takes e in (replacing an entry of its key), evicting the least recent entries beyond the
 * budget, never e itself. Called with mu held. */
static void lru_insert(struct lru *l, struct entry *e)
{
	for (struct entry *o = l->head; o; o = o->next) {
		if (!strcmp(o->key, e->key)) {
			lru_unlink(l, o);
			entry_free(o);
			break;
		}
	}
	lru_push(l, e);
	while (l->bytes > l->budget && l->tail != e) {
		struct entry *t = l->tail;
		lru_unlink(l, t);
		entry_free(t);
	}
}

/* Drops key (a digest found out of date). */
static void lru_drop(struct filecheck *fc, struct lru *l, const char *key)
{
	pthread_mutex_lock(&fc->mu);
	for (struct entry *e = l->head; e; e = e->next) {
		if (!strcmp(e->key, key)) {
			lru_unlink(l, e);
			entry_free(e);
			break;
		}
	}
	pthread_mutex_unlock(&fc->mu);
}

/* --- digests of manifests ---------------------------------------------------------------- */

static int path_hash(const char *ks, const char *table, const char *dir, const char *name,
		     unsigned char out[16])
{
	struct strbuf b = {0};
	unsigned char sha[32];
	int r = sb_append(&b, ks, strlen(ks) + 1) ?: sb_append(&b, table, strlen(table) + 1) ?:
		sb_append(&b, dir, strlen(dir) + 1) ?: sb_append(&b, name, strlen(name));
	r = r ?: sha256_buf(b.buf, b.len, sha);
	if (r == 0)
		memcpy(out, sha, 16);
	sb_free(&b);
	return r;
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(((const struct digest_file *)a)->path, ((const struct digest_file *)b)->path, 16);
}

static size_t manifest_files(const struct manifest *m)
{
	size_t n = m->nnode_files;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t t = 0; t < m->keyspaces[k].ntables; t++)
			n += m->keyspaces[k].tables[t].nfiles;
	return n;
}

/* The digest of manifest m, as a new entry under key (the ref it was read by). */
static int make_digest(const struct manifest *m, const char *key, struct entry **out)
{
	size_t n = manifest_files(m), i = 0;
	struct entry *e = calloc(1, sizeof(*e));
	struct digest_file *v = e ? calloc(n ? n : 1, sizeof(*v)) : NULL;
	int r = v && (e->key = strdup(key)) ? 0 : -ENOMEM;
	for (size_t k = 0; r == 0 && k < m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &m->keyspaces[k];
		for (size_t t = 0; r == 0 && t < ks->ntables; t++) {
			const struct manifest_table *tb = &ks->tables[t];
			for (size_t f = 0; r == 0 && f < tb->nfiles; f++, i++) {
				const struct manifest_file *mf = &tb->files[f];
				r = path_hash(ks->name, tb->name, mf->dir, mf->name, v[i].path);
				memcpy(v[i].sha, mf->sha256, 32);
				v[i].size = mf->size;
			}
		}
	}
	/* the node's own files: keyspace and table "", as catalog_file_ident names them */
	for (size_t f = 0; r == 0 && f < m->nnode_files; f++, i++) {
		const struct manifest_file *mf = &m->node_files[f];
		r = path_hash("", "", mf->dir, mf->name, v[i].path);
		memcpy(v[i].sha, mf->sha256, 32);
		v[i].size = mf->size;
	}
	if (r < 0) {
		free(v);
		if (e)
			e->v = NULL;
		entry_free(e);
		return r;
	}
	qsort(v, n, sizeof(*v), cmp_digest);
	e->v = v;
	e->n = n;
	e->bytes = n * sizeof(*v) + sizeof(*e);
	*out = e;
	return 0;
}

/* Looks f up in backup's digest (reading the manifest when the cache lacks it): 1 when the
 * manifest lists f with exactly (sha, size), 0 when it lists f otherwise or not at all. */
static int digest_lookup(struct store *s, struct filecheck *fc, const struct cb_file_ident *f,
			 const unsigned char sha[32], uint64_t size, struct strbuf *err)
{
	struct digest_file want;
	int r = path_hash(f->keyspace, f->table, f->dir, f->name, want.path);
	if (r < 0)
		return r;
	pthread_mutex_lock(&fc->mu);
	struct entry *e = lru_find(&fc->digests, f->backup);
	if (!e) {
		pthread_mutex_unlock(&fc->mu);
		struct manifest *m;
		r = store_read_manifest(s, f->backup, &m, NULL, err);
		if (r < 0)
			return r;
		r = make_digest(m, f->backup, &e); /* keyed as it is looked up: by ref */
		manifest_free(m);
		if (r < 0)
			return r;
		pthread_mutex_lock(&fc->mu);
		lru_insert(&fc->digests, e);
	}
	const struct digest_file *d = bsearch(&want, e->v, e->n, sizeof(want), cmp_digest);
	r = d && d->size == size && memcmp(d->sha, sha, 32) == 0;
	pthread_mutex_unlock(&fc->mu);
	return r;
}

int store_check_file_content(struct store *s, const struct cb_file_ident *f,
			     const unsigned char sha[32], uint64_t size, struct strbuf *err)
{
	struct filecheck *fc;
	int r = store_filecheck(s, &fc);
	/* a digest cached before the backup was forgotten and made again under its name says
	 * otherwise: read the manifest once more before calling the catalog wrong */
	for (int pass = 0; r == 0 && pass < 2; pass++) {
		r = digest_lookup(s, fc, f, sha, size, err);
		if (r == 0 && pass == 0)
			lru_drop(fc, &fc->digests, f->backup);
	}
	if (r == 1)
		return 0;
	if (r == 0) {
		sb_printf(err, "the catalog's entry for %s/%s%s%s%s%s%s%s is not what backups/%s.json "
			  "says (a stale or damaged catalog: 'cassbackup reindex' rebuilds it)",
			  *f->shown ? f->shown : f->backup, f->keyspace, *f->keyspace ? "/" : "",
			  f->table, *f->table ? "/" : "", f->dir, *f->dir ? "/" : "", f->name, f->backup);
		return -EUCLEAN;
	}
	if (!err->len)
		sb_printf(err, "cannot read backups/%s.json: %s", f->backup, strerror(-r));
	return r;
}

/* --- pack indexes ------------------------------------------------------------------------ */

static int cmp_offset(const void *a, const void *b)
{
	uint64_t x = ((const struct index_blob *)a)->offset, y = ((const struct index_blob *)b)->offset;
	return x < y ? -1 : x > y;
}

static int make_index(const char *key, const struct pack_index *pi, struct entry **out)
{
	struct entry *e = calloc(1, sizeof(*e));
	struct index_blob *v = e ? calloc(pi->nblobs ? pi->nblobs : 1, sizeof(*v)) : NULL;
	if (!v || !(e->key = strdup(key))) {
		free(v);
		entry_free(e);
		return -ENOMEM;
	}
	for (size_t i = 0; i < pi->nblobs; i++) {
		v[i].offset = pi->blobs[i].offset;
		v[i].size = pi->blobs[i].size;
		memcpy(v[i].sha, pi->blobs[i].sha256, 32);
	}
	qsort(v, pi->nblobs, sizeof(*v), cmp_offset);
	e->v = v;
	e->n = pi->nblobs;
	e->bytes = pi->nblobs * sizeof(*v) + sizeof(*e);
	*out = e;
	return 0;
}

/* 1 when the pack's index lists (sha, size) at offset, 0 when not. */
static int index_lookup(struct store *s, struct filecheck *fc, const struct cb_blob_loc *loc,
			struct strbuf *err)
{
	pthread_mutex_lock(&fc->mu);
	struct entry *e = lru_find(&fc->indexes, loc->pack_path);
	if (!e) {
		pthread_mutex_unlock(&fc->mu);
		pack_cache *pc;
		struct pack_index pi;
		char why[256] = "";
		int r = store_pack_cache(s, &pc) ?: pack_cache_index(pc, loc->pack_path, &pi, why, sizeof(why));
		if (r < 0) {
			sb_printf(err, "%s: %s", loc->pack_path, *why ? why : strerror(-r));
			return r;
		}
		r = make_index(loc->pack_path, &pi, &e);
		pack_index_free(&pi);
		if (r < 0)
			return r;
		pthread_mutex_lock(&fc->mu);
		lru_insert(&fc->indexes, e);
	}
	struct index_blob want = {.offset = loc->offset};
	const struct index_blob *b = bsearch(&want, e->v, e->n, sizeof(want), cmp_offset);
	int r = b && b->size == loc->size && memcmp(b->sha, loc->sha256, 32) == 0;
	pthread_mutex_unlock(&fc->mu);
	return r;
}

int store_check_location(struct store *s, const struct cb_blob_loc *loc, struct strbuf *err)
{
	struct filecheck *fc;
	int r = store_filecheck(s, &fc);
	if (r == 0 && !loc->size)
		return 0; /* an empty file: no bytes to read from anywhere */
	r = r ?: index_lookup(s, fc, loc, err);
	if (r == 0) {
		char hex[65];
		hex_encode(loc->sha256, 32, hex);
		sb_printf(err, "the catalog reads content %s from %s at %llu, where that pack's index "
			  "has no such blob (a stale or damaged catalog: 'cassbackup reindex' rebuilds "
			  "it)", hex, loc->pack_path, (unsigned long long)loc->offset);
		return -EUCLEAN;
	}
	return r < 0 ? r : 0;
}
