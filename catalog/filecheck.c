/* filecheck.c: binding what the catalog says of a file to what the store says (store.h
 * store_check_file_content, store_check_location).
 *
 * The catalog is a cache that may be stale (rebuilt under a running reader), damaged, or
 * planted; the store's manifests and pack indexes are the truth. Two small caches make the
 * check a lookup:
 *   - digests: per backup, every file of its manifest as (16 bytes of SHA-256 of its path,
 *     its content's SHA-256, its size), sorted by path hash: 56 bytes a file; and every table
 *     as (16 bytes of SHA-256 of its name, its number of files), so that a catalog missing a
 *     file or a table is found too;
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

/* A table of a manifest: keyspace and table "" for the node's own files. */
struct digest_table {
	unsigned char name[16]; /* SHA-256 of "keyspace\0table", cut to 16 bytes */
	uint64_t nfiles;
	char id[33];            /* its id: 32 hex digits, or "" (manifest.h) */
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
	struct digest_table *tables; /* a digest's: sorted, the node's own files included */
	size_t ntables;
	char version[CB_VERSION_MAX]; /* a digest's: its manifest's (local stores; else "") */
	struct entry *prev, *next; /* most recent first */
};

struct lru {
	struct entry *head, *tail;
	size_t bytes, budget;
};

struct filecheck {
	pthread_mutex_t mu;
	struct lru digests, indexes;
	uint64_t manifest_reads; /* under mu */
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
		free(e->tables);
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

/* SHA-256 of the n parts joined by NUL, cut to 16 bytes: a name within a manifest. */
static int parts_hash(const char *const *parts, size_t n, unsigned char out[16])
{
	struct strbuf b = {0};
	unsigned char sha[32];
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = sb_append(&b, parts[i], strlen(parts[i]) + (i + 1 < n));
	r = r ?: sha256_buf(b.buf, b.len, sha);
	if (r == 0)
		memcpy(out, sha, 16);
	sb_free(&b);
	return r;
}

static int path_hash(const char *ks, const char *table, const char *dir, const char *name,
		     unsigned char out[16])
{
	const char *parts[] = {ks, table, dir, name};
	return parts_hash(parts, 4, out);
}

static int table_hash(const char *ks, const char *table, unsigned char out[16])
{
	const char *parts[] = {ks, table};
	return parts_hash(parts, 2, out);
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(((const struct digest_file *)a)->path, ((const struct digest_file *)b)->path, 16);
}

static int cmp_table(const void *a, const void *b)
{
	return memcmp(((const struct digest_table *)a)->name, ((const struct digest_table *)b)->name, 16);
}

static size_t manifest_tables(const struct manifest *m)
{
	size_t n = 0;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		n += m->keyspaces[k].ntables;
	return n;
}

/* e's tables from m: each table of each keyspace, then the node's own files as table "". */
static int digest_tables(const struct manifest *m, struct entry *e)
{
	size_t n = manifest_tables(m) + 1, i = 0;
	struct digest_table *v = calloc(n, sizeof(*v));
	int r = v ? 0 : -ENOMEM;
	for (size_t k = 0; r == 0 && k < m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &m->keyspaces[k];
		for (size_t t = 0; r == 0 && t < ks->ntables; t++, i++) {
			r = table_hash(ks->name, ks->tables[t].name, v[i].name);
			v[i].nfiles = ks->tables[t].nfiles;
			snprintf(v[i].id, sizeof(v[i].id), "%s", ks->tables[t].id);
		}
	}
	if (r == 0) {
		r = table_hash("", "", v[i].name);
		v[i].nfiles = m->nnode_files;
	}
	if (r < 0) {
		free(v);
		return r;
	}
	qsort(v, n, sizeof(*v), cmp_table);
	e->tables = v;
	e->ntables = n;
	e->bytes += n * sizeof(*v);
	return 0;
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
	if ((r = digest_tables(m, e)) < 0) {
		entry_free(e);
		return r;
	}
	*out = e;
	return 0;
}

/* The version (backend.h) of backup's manifest now, into out, in a local store, where asking
 * costs one stat: a manifest replaced there (forgotten and made again under its name by a
 * host with a catalog of its own) is then seen at the next question, not only once the
 * catalog has caught up. "" in object storage (a request per question would be too many).
 * 0, -ENOENT when the backup is gone, or -errno. */
static int manifest_version(struct store *s, const char *backup, char out[CB_VERSION_MAX])
{
	*out = '\0';
	if (cb_location_is_remote(store_location(s)))
		return 0;
	struct strbuf key = {0};
	struct cb_object_info info = {0};
	int r = store_manifest_key(backup, &key) ?: cb_backend_stat_info(store_backend(s), key.buf, &info);
	sb_free(&key);
	if (r == 0)
		memcpy(out, info.version, CB_VERSION_MAX);
	return r;
}

/* backup's digest, read from its manifest when the cache lacks it or holds one of another
 * version of it: 0 with fc->mu held and *out valid until it is released, or < 0 (err says
 * why) without it. */
static int digest_locked(struct store *s, struct filecheck *fc, const char *backup,
			 struct entry **out, struct strbuf *err)
{
	char version[CB_VERSION_MAX];
	int r = manifest_version(s, backup, version);
	if (r < 0) {
		if (r != -ENOENT)
			sb_printf(err, "cannot look at backups/%s.json: %s", backup, strerror(-r));
		return r;
	}
	pthread_mutex_lock(&fc->mu);
	struct entry *e = lru_find(&fc->digests, backup);
	if (e && strcmp(e->version, version) != 0) {
		lru_unlink(&fc->digests, e);
		entry_free(e);
		e = NULL;
	}
	if (!e) {
		pthread_mutex_unlock(&fc->mu);
		struct manifest *m;
		r = store_read_manifest(s, backup, &m, NULL, err);
		if (r < 0)
			return r;
		r = make_digest(m, backup, &e); /* keyed as it is looked up: by ref */
		manifest_free(m);
		if (r < 0)
			return r;
		/* the version looked at before the read: were the manifest replaced in between,
		 * the next question reads it again */
		memcpy(e->version, version, CB_VERSION_MAX);
		pthread_mutex_lock(&fc->mu);
		fc->manifest_reads++;
		lru_insert(&fc->digests, e);
	}
	*out = e;
	return 0;
}

uint64_t store_check_manifest_reads(struct store *s)
{
	struct filecheck *fc;
	if (store_filecheck(s, &fc) < 0)
		return 0;
	pthread_mutex_lock(&fc->mu);
	uint64_t n = fc->manifest_reads;
	pthread_mutex_unlock(&fc->mu);
	return n;
}

/* What the catalog says, to be asked of backup f->backup's digest; one of: file f has content
 * (sha, size); table f->keyspace/f->table has size files; table f->keyspace/f->table has id
 * table_id; the backup has size tables. */
struct digest_question {
	const struct cb_file_ident *f;
	const unsigned char *sha; /* set: a file's content */
	uint64_t size;
	const char *table_id; /* set: a table's id */
	bool tables; /* set: the number of tables */
};

/* 1 when e agrees with q, 0 when not, -ENOMEM. Called with mu held. */
static int digest_answer(const struct entry *e, const struct digest_question *q)
{
	if (q->tables)
		return e->ntables - 1 == q->size;
	if (!q->sha) {
		struct digest_table want;
		if (table_hash(q->f->keyspace, q->f->table, want.name) < 0)
			return -ENOMEM;
		const struct digest_table *t = bsearch(&want, e->tables, e->ntables, sizeof(want), cmp_table);
		if (q->table_id)
			return t && !strcmp(t->id, q->table_id);
		return t && t->nfiles == q->size;
	}
	struct digest_file want;
	if (path_hash(q->f->keyspace, q->f->table, q->f->dir, q->f->name, want.path) < 0)
		return -ENOMEM;
	const struct digest_file *d = bsearch(&want, e->v, e->n, sizeof(want), cmp_digest);
	return d && d->size == q->size && memcmp(d->sha, q->sha, 32) == 0;
}

/* Asks q of the backup's manifest: 1 when it agrees, 0 when it disagrees once read afresh (a
 * digest cached before the backup was forgotten and made again under its name says
 * otherwise: the manifest is read once more before the catalog is called wrong), or < 0. */
static int digest_ask(struct store *s, const struct digest_question *q, struct strbuf *err)
{
	struct filecheck *fc;
	int r = store_filecheck(s, &fc);
	for (int pass = 0; r == 0 && pass < 2; pass++) {
		struct entry *e;
		if ((r = digest_locked(s, fc, q->f->backup, &e, err)) < 0)
			break;
		r = digest_answer(e, q);
		pthread_mutex_unlock(&fc->mu);
		if (r == 0 && pass == 0)
			lru_drop(fc, &fc->digests, q->f->backup);
	}
	if (r < 0 && !err->len)
		sb_printf(err, "cannot read backups/%s.json: %s", q->f->backup, strerror(-r));
	return r;
}

static const char *shown(const struct cb_file_ident *f)
{
	return *f->shown ? f->shown : f->backup;
}

int store_check_file_content(struct store *s, const struct cb_file_ident *f,
			     const unsigned char sha[32], uint64_t size, struct strbuf *err)
{
	struct digest_question q = {.f = f, .sha = sha, .size = size};
	int r = digest_ask(s, &q, err);
	if (r == 1)
		return 0;
	if (r == 0) {
		sb_printf(err, "the catalog's entry for %s/%s%s%s%s%s%s%s is not what backups/%s.json "
			  "says (a stale or damaged catalog: 'cassbackup reindex' rebuilds it)",
			  shown(f), f->keyspace, *f->keyspace ? "/" : "",
			  f->table, *f->table ? "/" : "", f->dir, *f->dir ? "/" : "", f->name, f->backup);
		return -EUCLEAN;
	}
	return r;
}

int store_check_table_files(struct store *s, const struct cb_file_ident *t, size_t nfiles,
			    struct strbuf *err)
{
	struct digest_question q = {.f = t, .size = nfiles};
	int r = digest_ask(s, &q, err);
	if (r == 0) {
		sb_printf(err, "the catalog lists %zu file%s for %s%s%s%s%s, where backups/%s.json has "
			  "another number (a stale or damaged catalog: 'cassbackup reindex' rebuilds it)",
			  nfiles, nfiles == 1 ? "" : "s", shown(t), *t->keyspace ? "/" : "", t->keyspace,
			  *t->table ? "/" : " (the node's own files)", t->table, t->backup);
		return -EUCLEAN;
	}
	return r < 0 ? r : 0;
}

int store_check_table_id(struct store *s, const struct cb_file_ident *t, const char *table_id,
			 struct strbuf *err)
{
	struct digest_question q = {.f = t, .table_id = table_id};
	int r = digest_ask(s, &q, err);
	if (r == 0) {
		sb_printf(err, "the catalog's id of table %s/%s/%s is not the one backups/%s.json "
			  "gives (a stale or damaged catalog: 'cassbackup reindex' rebuilds it)",
			  shown(t), t->keyspace, t->table, t->backup);
		return -EUCLEAN;
	}
	return r < 0 ? r : 0;
}

int store_check_backup_tables(struct store *s, const struct cb_file_ident *b, size_t ntables,
			      struct strbuf *err)
{
	struct digest_question q = {.f = b, .size = ntables, .tables = true};
	int r = digest_ask(s, &q, err);
	if (r == 0) {
		sb_printf(err, "the catalog lists %zu table%s for %s, where backups/%s.json has another "
			  "number (a stale or damaged catalog: 'cassbackup reindex' rebuilds it)",
			  ntables, ntables == 1 ? "" : "s", shown(b), b->backup);
		return -EUCLEAN;
	}
	return r < 0 ? r : 0;
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
