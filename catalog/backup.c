/* backup.c: see backup.h.
 *
 * Store format 2, as written here: the files whose bytes the store lacks go into new packs of
 * about opts.pack_size each (packer.h: seekable tar.zst whose last member indexes its blobs),
 * uploaded as they are written and committed one by one (a local file linked into packs/, or a
 * completed multipart upload); a table that brings a quarter of pack_size or more gets packs of
 * its own (Cassandra compacts within a table, so its dead sstables later take whole packs with
 * them and prune deletes instead of repacking), smaller ones share packs. Then the manifest
 * backups/NAME.json, written once and never replacing one (the commit point), then one catalog
 * transaction registers the packs, their blobs and the backup's tree. A crash before the
 * manifest leaves at most packs no manifest names, which prune removes.
 *
 * Deduplication: a file whose (SHA-256, size) is already stored is not written again. Hashing
 * first costs a second read, so it is done only where a duplicate is possible: small files,
 * and files whose exact size some stored (or just written) blob has. Within the pack, a file
 * with the same bytes as an earlier member is a tar hard link to it.
 */
#include "backup.h"
#include "lock.h"
#include "manifest.h"
#include "packread.h"
#include "catalog.h"
#include "pack.h"
#include "packer.h"
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PREHASH_BELOW (1u << 20)   /* always hash files smaller than this before writing */
#define IN_MEMORY_BELOW (8u << 20) /* read files this small once, into memory: the bytes hashed
				    * are then exactly the bytes written */

struct blob {
	unsigned char sha[32];
	uint64_t size;
	unsigned pack;   /* the packer's number of the pack holding it */
	char *member;    /* the member holding the bytes, for hard links to it */
};

/* A pack committed by this backup, registered with it at the end. */
struct done_pack {
	char *key;
	struct pack_info info;
	struct pack_index index; /* a copy */
};

/* Open-addressing map from (sha256, size) to an index in the blobs written to this pack. */
struct blob_map {
	long *slots; /* -1: empty */
	size_t cap;
	size_t n;
};

struct wfile {
	char *name;
	unsigned dir; /* BACKUP_TABLE_DIR or an index into the table's dirs */
	uint64_t size;
	struct backup_attr a;
	unsigned char sha[32];
	int64_t stored_id; /* > 0: bytes already in the store */
	long pending;      /* >= 0: index into blobs written by this backup */
	bool inherited;    /* an incremental's, from its previous backup (add_stored) */
};

struct wdir {
	char *name;
	struct backup_attr a;
};

/* A table of the backup, or the node's own files (backup_writer.own: keyspace NULL, dirs ""
 * and MANIFEST_CONF_DIR). */
struct wtable {
	char *keyspace, *table, *table_id, *dirname, *schema_cql;
	struct backup_attr ka, ta;
	const struct manifest_links *links; /* borrowed (backup_table) */
	size_t nlinks;
	int64_t emptied_ms;
	bool own_packs;    /* it brings a quarter of pack_size or more: packs of its own */
	struct wdir *dirs;
	size_t ndirs;
	struct wfile *files;
	size_t nfiles, files_cap;
};

struct backup_writer {
	const char *root;        /* the store's location, for messages */
	char *name, *cluster, *datacenter, *node, *host_id, *tag, *version, *rack, *schema_version;
	char *base, *previous;   /* NULL: a full backup */
	struct manifest_scope scope;
	bool clears_links;
	char ref[CB_REF_MAX]; /* NAME/NODE: where the manifest goes (store.h) */
	struct manifest_ring_node *ring;
	size_t nring;
	char **tokens;
	size_t ntokens;
	struct backup_attr root_attr;
	int64_t created_ns, snapshot_ns;
	bool commitlog_seen;
	int64_t commitlog_seen_id;
	struct backup_writer_opts o;
	catalog *cat;            /* the store's catalog (owned by store) */
	struct store *store;     /* the caller's */
	struct store_lock *lock; /* shared: prune waits until this backup is committed */
	packer *pk;
	struct done_pack *packs; /* committed, to register */
	size_t npacks;
	struct wtable *tables;
	size_t ntables;
	struct wtable own;       /* the node's own files (backup_writer_add_node_file) */
	struct blob *blobs;
	size_t nblobs, blobs_cap;
	struct blob_map map;
	uint64_t files, bytes, new_bytes;
	unsigned reclaimed;
	int reclaim_err;
	int err; /* sticky */
	struct strbuf msg;
	bool committed;
};

/* --- blob map ----------------------------------------------------------------------------- */

static size_t blob_hash(const unsigned char *sha, uint64_t size)
{
	uint64_t h;
	memcpy(&h, sha, sizeof(h));
	return (size_t)(h ^ size * 0x9E3779B97F4A7C15ull);
}

static long map_find(const struct blob_map *m, const struct blob *blobs, const unsigned char *sha,
		     uint64_t size)
{
	if (!m->cap)
		return -1;
	for (size_t i = blob_hash(sha, size) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		long v = m->slots[i];
		if (v < 0)
			return -1;
		if (blobs[v].size == size && memcmp(blobs[v].sha, sha, 32) == 0)
			return v;
	}
}

static void map_put(long *slots, size_t cap, const struct blob *blobs, long idx)
{
	size_t j = blob_hash(blobs[idx].sha, blobs[idx].size) & (cap - 1);
	while (slots[j] >= 0)
		j = (j + 1) & (cap - 1);
	slots[j] = idx;
}

static int map_insert(struct blob_map *m, const struct blob *blobs, long idx)
{
	if (2 * (m->n + 1) > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		long *s = malloc(cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (size_t i = 0; i < cap; i++)
			s[i] = -1;
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i] >= 0)
				map_put(s, cap, blobs, m->slots[i]);
		free(m->slots);
		m->slots = s;
		m->cap = cap;
	}
	map_put(m->slots, m->cap, blobs, idx);
	m->n++;
	return 0;
}

/* Sizes written to this pack so far: a later file of the same size may be a duplicate. */
static bool size_seen(const struct blob *blobs, size_t n, uint64_t size)
{
	/* Only consulted for files >= PREHASH_BELOW, of which a backup has few; linear is fine. */
	for (size_t i = 0; i < n; i++)
		if (blobs[i].size == size)
			return true;
	return false;
}

/* --- errors ------------------------------------------------------------------------------- */

/* Records the first failure (r < 0) with its one-line message; returns r. */
__attribute__((format(printf, 3, 4))) static int fail(backup_writer *w, int r, const char *fmt, ...)
{
	if (w->err)
		return r;
	w->err = r;
	va_list ap;
	va_start(ap, fmt);
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	w->msg.len = 0;
	/* the store refused after the lease lapsed: a prune may have taken the store meanwhile
	 * (aborting this create's upload, say), which is what the operator needs to hear */
	struct strbuf lease = {0};
	if (r != -ECANCELED && r != -ESTALE && r != -ENOMEM && r != -ETIMEDOUT &&
	    store_lock_check(w->lock, &lease) < 0)
		sb_printf(&w->msg, "%s; then: %s", lease.buf, line);
	else
		sb_puts(&w->msg, line);
	sb_free(&lease);
	return r;
}

const char *backup_writer_errmsg(const backup_writer *w)
{
	return w && w->msg.buf ? w->msg.buf : "";
}

/* --- begin -------------------------------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static int copy_meta(backup_writer *w, const struct backup_meta *m)
{
	w->name = dup_or_empty(m->name);
	w->cluster = dup_or_empty(m->cluster);
	w->datacenter = dup_or_empty(m->datacenter);
	w->node = dup_or_empty(m->node);
	w->host_id = m->host_id ? strdup(m->host_id) : NULL;
	w->tag = dup_or_empty(m->snapshot_tag);
	w->version = dup_or_empty(m->cassandra_version);
	w->rack = dup_or_empty(m->rack);
	w->schema_version = dup_or_empty(m->schema_version);
	w->root_attr = m->root_attr;
	w->created_ns = m->created_ns ? m->created_ns : now_ns();
	w->snapshot_ns = m->snapshot_ns;
	w->commitlog_seen = m->commitlog_seen;
	w->commitlog_seen_id = m->commitlog_seen_id;
	if (m->base && (!(w->base = strdup(m->base)) || !(w->previous = strdup(m->previous))))
		return -ENOMEM;
	if (m->scope && manifest_scope_copy(&w->scope, m->scope) < 0)
		return -ENOMEM;
	w->clears_links = m->clears_links;
	if (!w->name || !w->cluster || !w->datacenter || !w->node || !w->tag ||
	    !w->version || (m->host_id && !w->host_id) || !w->rack || !w->schema_version)
		return -ENOMEM;
	if (!(w->ring = calloc(m->nring + 1, sizeof(*w->ring))))
		return -ENOMEM;
	for (; w->nring < m->nring; w->nring++) {
		const struct manifest_ring_node *a = &m->ring[w->nring];
		struct manifest_ring_node *b = &w->ring[w->nring];
		b->host_id = dup_or_empty(a->host_id);
		b->address = dup_or_empty(a->address);
		b->datacenter = dup_or_empty(a->datacenter);
		b->rack = dup_or_empty(a->rack);
		if (!b->host_id || !b->address || !b->datacenter || !b->rack) {
			w->nring++; /* freed with the writer */
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < m->ntokens; i++) {
		char *t = strdup(m->tokens[i]);
		if (!t || ptrv_push(&w->tokens, &w->ntokens, t) < 0) {
			free(t);
			return -ENOMEM;
		}
	}
	return 0;
}

/* 1 when the store holds w's name for node under another spelling of its host id (an older
 * cassbackup kept one as the user gave it), 0 when not, or -errno with err. */
static int taken_in_other_case(backup_writer *w, const char *node, struct strbuf *err)
{
	char other[CB_REF_MAX];
	int r = store_backup_ref_other_case(w->store, w->name, node, other);
	if (r < 0 && r != -ENOENT)
		sb_printf(err, "cannot list %s/backups/%s/: %s", w->root, w->name, cb_backend_why(r));
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

/* The name is free for this node when neither the catalog nor the store has a manifest of
 * it by this node (backups/NAME/NODE.json, or one at backups/NAME.json the catalog took in).
 * Other nodes' backups of the name are the same cluster backup. */
static int check_name_free(backup_writer *w, struct strbuf *err)
{
	const char *node = w->host_id && *w->host_id ? w->host_id : w->node;
	if (store_backup_ref(w->name, node, w->ref) < 0) {
		sb_printf(err, "cannot name backup %s of node %s in the store: the name must be one path "
			  "component of at most 250 bytes, the node (host id, else node name) at most 64 "
			  "bytes of printable ASCII, no blank or '/'", w->name, node);
		return -EINVAL;
	}
	int r = catalog_backup_exists(w->cat, w->name, node);
	if (r < 0)
		sb_printf(err, "cannot read catalog of %s: %s", w->root, catalog_errmsg(w->cat));
	struct strbuf key = {0};
	uint64_t size;
	if (r == 0 && (r = store_manifest_key(w->ref, &key)) == 0) {
		r = cb_backend_stat(store_backend(w->store), key.buf, &size);
		if (r < 0 && r != -ENOENT) /* the store's answer, not the catalog's */
			sb_printf(err, "cannot learn whether %s/%s exists: %s", w->root, key.buf,
				  cb_backend_why(r));
		r = r == 0 ? 1 : r == -ENOENT ? 0 : r;
		if (r == 0)
			r = taken_in_other_case(w, node, err);
	} else if (r == -EINVAL) {
		sb_printf(err, "cannot name backup %s in the store: invalid backup name", w->name);
	}
	sb_free(&key);
	if (r > 0)
		sb_printf(err, "backup %s of node %s already exists in %s", w->name, node, w->root);
	return r > 0 ? -EEXIST : r;
}

static int take_lock(backup_writer *w, struct strbuf *err)
{
	struct lock_info holder;
	int r = store_lock_take(store_backend(w->store), false, "create", w->o.lock_wait_seconds,
				w->o.lock_waiting, w->o.pctx, &w->lock, &holder);
	if (r == -EBUSY)
		sb_printf(err, "store %s is locked by %s (pid %lld on %s); try again later, or "
			  "'cassbackup unlock' if that process is gone", w->root, holder.command,
			  (long long)holder.pid, holder.host);
	else if (r < 0)
		sb_printf(err, "cannot lock store %s: %s", w->root, cb_backend_why(r));
	return r;
}

/* The packer's word that a pack is in the store: kept (with a copy of its index) to register
 * with the backup. */
static int pack_committed(void *ctx, const char *key, const struct pack_info *info,
			  const struct pack_index *pi)
{
	backup_writer *w = ctx;
	struct done_pack *v = realloc(w->packs, (w->npacks + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	w->packs = v;
	struct done_pack *d = &v[w->npacks];
	*d = (struct done_pack){.key = strdup(key), .info = *info, .index = {.nblobs = pi->nblobs}};
	d->index.blobs = malloc((pi->nblobs ? pi->nblobs : 1) * sizeof(*pi->blobs));
	if (!d->key || !d->index.blobs) {
		free(d->key);
		free(d->index.blobs);
		return -ENOMEM;
	}
	memcpy(d->index.blobs, pi->blobs, pi->nblobs * sizeof(*pi->blobs));
	w->npacks++;
	return 0;
}

static int open_and_check(backup_writer *w, struct strbuf *err)
{
	int r = take_lock(w, err);
	if (r < 0)
		return r;
	/* Under the lock, no prune runs: the packs deduplicated against must be the store's now,
	 * not as they were before a prune this create waited for deleted some. */
	r = store_reconcile(w->store, RECONCILE_PACKS, NULL, err);
	if (r < 0)
		return r;
	/* Leftover uploads of dead local writers (S3's are aborted by prune, under its lock). */
	if (!cb_location_is_remote(w->root))
		w->reclaim_err = cb_backend_reclaim(store_backend(w->store), &w->reclaimed);
	r = check_name_free(w, err);
	if (r < 0)
		return r;
	struct packer_opts po = {.backend = store_backend(w->store), .target = w->o.pack_size,
				 .level = w->o.level, .threads = w->o.threads,
				 .frame_size = w->o.frame_size, .committed = pack_committed, .ctx = w,
				 .commit_behind = true};
	r = packer_new(&po, &w->pk);
	if (r < 0)
		sb_puts(err, "out of memory");
	return r;
}

int backup_writer_begin(struct store *s, const struct backup_meta *meta,
			const struct backup_writer_opts *opts, backup_writer **out, struct strbuf *err)
{
	*out = NULL;
	backup_writer *w = calloc(1, sizeof(*w));
	if (!w) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	w->o = *opts;
	w->store = s;
	w->cat = store_catalog(s);
	w->root = store_location(s);
	int r = copy_meta(w, meta);
	if (r < 0)
		sb_puts(err, "out of memory");
	else
		r = open_and_check(w, err);
	if (r < 0) {
		backup_writer_free(w);
		return r;
	}
	*out = w;
	return 0;
}

int backup_writer_reclaimed(const backup_writer *w, unsigned *count)
{
	*count = w->reclaimed;
	return w->reclaim_err;
}

/* --- the tree ----------------------------------------------------------------------------- */

int backup_writer_add_table(backup_writer *w, const struct backup_table *t, unsigned *table)
{
	if (w->err)
		return w->err;
	for (size_t i = 0; i < w->ntables; i++)
		if (!strcmp(w->tables[i].keyspace, t->keyspace) && !strcmp(w->tables[i].table, t->table))
			return fail(w, -EEXIST, "table %s.%s added twice", t->keyspace, t->table);
	struct wtable *v = realloc(w->tables, (w->ntables + 1) * sizeof(*v));
	if (!v)
		return fail(w, -ENOMEM, "out of memory");
	w->tables = v;
	struct wtable *n = &v[w->ntables];
	uint64_t target = w->o.pack_size ? w->o.pack_size : PACK_DEFAULT_SIZE;
	*n = (struct wtable){
		.keyspace = strdup(t->keyspace),
		.table = strdup(t->table),
		.table_id = dup_or_empty(t->table_id),
		.dirname = strdup(t->dirname),
		.schema_cql = t->schema_cql ? strdup(t->schema_cql) : NULL,
		.ka = t->keyspace_attr,
		.ta = t->table_attr,
		.links = t->links,
		.nlinks = t->nlinks,
		.emptied_ms = t->emptied_ms,
		.own_packs = t->bytes >= target / 4,
	};
	w->ntables++; /* freed with the writer, complete or not */
	if (!n->keyspace || !n->table || !n->table_id || !n->dirname || (t->schema_cql && !n->schema_cql))
		return fail(w, -ENOMEM, "out of memory");
	/* into or out of a big table's packs of its own: the pack being written is done */
	bool was_own = w->ntables > 1 && v[w->ntables - 2].own_packs;
	int r = was_own || n->own_packs ? packer_cut(w->pk) : 0;
	if (r < 0)
		return fail(w, r, "%s", packer_errmsg(w->pk));
	*table = (unsigned)(w->ntables - 1);
	return 0;
}

static int add_dir(backup_writer *w, struct wtable *t, const char *name,
		   const struct backup_attr *a, unsigned *dir)
{
	struct wdir *v = realloc(t->dirs, (t->ndirs + 1) * sizeof(*v));
	if (!v)
		return fail(w, -ENOMEM, "out of memory");
	t->dirs = v;
	v[t->ndirs] = (struct wdir){.name = strdup(name), .a = *a};
	if (!v[t->ndirs].name)
		return fail(w, -ENOMEM, "out of memory");
	*dir = (unsigned)t->ndirs++;
	return 0;
}

int backup_writer_add_dir(backup_writer *w, unsigned table, const char *name,
			  const struct backup_attr *a, unsigned *dir)
{
	if (w->err)
		return w->err;
	if (table >= w->ntables)
		return fail(w, -EINVAL, "directory %s: no such table", name);
	return add_dir(w, &w->tables[table], name, a, dir);
}

/* A table's file is <keyspace>/<table dir>/[.<index>/]<name> in the pack, as in a data
 * directory; a node file [<dir>/]<name>, as in the mount. */
static int member_path(const struct wtable *t, const struct wfile *f, struct strbuf *sb)
{
	sb->len = 0;
	if (!t->keyspace)
		return f->dir != BACKUP_TABLE_DIR
			       ? sb_printf(sb, "%s/%s", t->dirs[f->dir].name, f->name)
			       : sb_printf(sb, "%s", f->name);
	if (f->dir != BACKUP_TABLE_DIR)
		return sb_printf(sb, "%s/%s/%s/%s", t->keyspace, t->dirname, t->dirs[f->dir].name,
				 f->name);
	return sb_printf(sb, "%s/%s/%s", t->keyspace, t->dirname, f->name);
}

/* Appends the file's record to its table; NULL when out of memory. */
static struct wfile *new_file(struct wtable *t, unsigned dir, const struct backup_file *f)
{
	if (t->nfiles == t->files_cap) {
		size_t cap = t->files_cap ? 2 * t->files_cap : 16;
		struct wfile *v = realloc(t->files, cap * sizeof(*v));
		if (!v)
			return NULL;
		t->files = v;
		t->files_cap = cap;
	}
	struct wfile *wf = &t->files[t->nfiles];
	*wf = (struct wfile){.name = strdup(f->name), .dir = dir, .size = f->size, .a = f->attr,
			     .pending = -1};
	if (!wf->name)
		return NULL;
	t->nfiles++;
	return wf;
}

/* --- file contents ------------------------------------------------------------------------ */

/* A file being added: where its bytes are, and what is known of them. */
struct src {
	const struct backup_file *f;
	int fd;              /* -1 when data */
	const void *data;    /* the bytes, when in memory */
	void *mem;           /* data read here (owned) */
	bool hashed;         /* wf->sha holds the hash of the bytes */
};

static bool maybe_duplicate(backup_writer *w, uint64_t size, int *r)
{
	if (size < PREHASH_BELOW || size_seen(w->blobs, w->nblobs, size))
		return true;
	*r = catalog_blob_size_exists(w->cat, size);
	return *r == 1;
}

/* Hashes the source's bytes into wf->sha, reading a small file into memory first. */
static int prehash(backup_writer *w, struct src *s, struct wfile *wf)
{
	uint64_t size = s->f->size;
	int r;
	if (!s->data && size <= IN_MEMORY_BELOW) {
		s->mem = malloc(size + 1);
		ssize_t n = s->mem ? pread_full(s->fd, s->mem, size + 1, 0) : -ENOMEM;
		if (n < 0)
			return (int)n;
		if ((uint64_t)n != size)
			return -ESTALE;
		s->data = s->mem;
	}
	if (s->data)
		r = sha256_buf(s->data, size, wf->sha);
	else
		r = sha256_fd(s->fd, size, wf->sha, w->o.cancel, NULL, NULL);
	s->hashed = r == 0;
	return r;
}

static int grow_blobs(backup_writer *w)
{
	if (w->nblobs < w->blobs_cap)
		return 0;
	size_t cap = w->blobs_cap ? 2 * w->blobs_cap : 256;
	struct blob *b = realloc(w->blobs, cap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	w->blobs = b;
	w->blobs_cap = cap;
	return 0;
}

static void progress(backup_writer *w, uint64_t bytes)
{
	if (w->o.progress)
		w->o.progress(w->o.pctx, bytes);
}

/* Writes the file's bytes as a new member; wf gets their hash and blob. */
static int store_bytes(backup_writer *w, struct src *s, struct wfile *wf, const char *member,
		       bool node_file)
{
	int r = grow_blobs(w);
	if (r < 0)
		return r;
	const struct backup_file *f = s->f;
	struct pack_member m = {.path = member, .size = f->size, .mode = f->attr.mode,
				.uid = f->attr.uid, .gid = f->attr.gid, .mtime_ns = f->attr.mtime_ns};
	struct blob *b = &w->blobs[w->nblobs];
	*b = (struct blob){.size = f->size};
	if (s->data) {
		memcpy(b->sha, wf->sha, 32);
		r = packer_add_buffer(w->pk, &m, s->data, b->sha, &b->pack);
		if (r == 0 && !node_file)
			progress(w, f->size);
	} else {
		r = packer_add_fd(w->pk, &m, s->fd, b->sha, w->o.cancel, w->o.progress, w->o.pctx,
				  &b->pack);
	}
	if (r == 0 && s->hashed && memcmp(b->sha, wf->sha, 32) != 0)
		r = -ESTALE; /* hashed once, read again as other bytes */
	if (r < 0)
		return r;
	memcpy(wf->sha, b->sha, 32);
	long i = map_find(&w->map, w->blobs, b->sha, f->size);
	if (i >= 0) { /* same bytes as a file written earlier, not hashed before: keep the copy */
		wf->pending = i;
		return 0;
	}
	if (!(b->member = strdup(member)))
		return -ENOMEM;
	wf->pending = (long)w->nblobs++;
	if (!node_file) /* the totals are the tables' (manifest.h) */
		w->new_bytes += f->size;
	return map_insert(&w->map, w->blobs, wf->pending);
}

/* Finds the file's bytes in this pack or the store, or writes them. */
static int place_bytes(backup_writer *w, struct src *s, struct wfile *wf, const char *member,
		       bool node_file)
{
	int r = 0;
	if (s->data || maybe_duplicate(w, s->f->size, &r)) {
		if ((r = prehash(w, s, wf)) < 0)
			return r;
		long i = map_find(&w->map, w->blobs, wf->sha, wf->size);
		if (i >= 0) { /* same bytes as a file written before: stored once */
			struct pack_member m = {.path = member, .size = wf->size, .mode = wf->a.mode,
						.uid = wf->a.uid, .gid = wf->a.gid,
						.mtime_ns = wf->a.mtime_ns};
			wf->pending = i;
			/* in the pack being written: a hard link to it, so that `tar -x` of the pack
			 * gives this file too; in an earlier pack, only the manifest names it */
			if (w->blobs[i].pack == packer_seq(w->pk))
				r = packer_add_link(w->pk, &m, w->blobs[i].member);
			if (r == 0 && !node_file)
				progress(w, wf->size);
			return r;
		}
		r = catalog_find_blob(w->cat, wf->sha, wf->size, &wf->stored_id);
		if (r != 0) {
			if (r == 1 && !node_file)
				progress(w, wf->size);
			return r < 0 ? r : 0;
		}
	}
	return r < 0 ? r : store_bytes(w, s, wf, member, node_file);
}

static int add(backup_writer *w, struct wtable *t, unsigned dir, const struct backup_file *f,
	       int fd, const void *data)
{
	if (w->err)
		return w->err;
	if (w->o.cancel && *w->o.cancel)
		return fail(w, -ECANCELED, "interrupted");
	if (!t || (dir != BACKUP_TABLE_DIR && dir >= t->ndirs))
		return fail(w, -EINVAL, "file %s: no such table or directory", f->source);
	struct wfile *wf = new_file(t, dir, f);
	if (!wf)
		return fail(w, -ENOMEM, "out of memory");
	struct strbuf member = {0};
	struct src s = {.f = f, .fd = fd, .data = data};
	int r = member_path(t, wf, &member);
	if (r == 0)
		r = place_bytes(w, &s, wf, member.buf, !t->keyspace);
	sb_free(&member);
	free(s.mem);
	if (r == 0) {
		if (t->keyspace) { /* the totals are the tables' (manifest.h) */
			w->files++;
			w->bytes += f->size;
		}
		return 0;
	}
	const char *said = packer_errmsg(w->pk); /* the pack and what failed writing it */
	if (r == -ECANCELED)
		return fail(w, r, "interrupted");
	if (r == -ESTALE)
		return fail(w, r, "cannot back up %s: the file changed while it was being read",
			    f->source);
	if (*said && packer_failed_behind(w->pk)) /* an earlier pack's commit: not this file's */
		return fail(w, r, "%s", said);
	if (*said)
		return fail(w, r, "%s (backing up %s)", said, f->source);
	return fail(w, r, "cannot back up %s: %s", f->source, strerror(-r));
}

static struct wtable *table_of(backup_writer *w, unsigned table)
{
	return table < w->ntables ? &w->tables[table] : NULL;
}

int backup_writer_add_file(backup_writer *w, unsigned table, unsigned dir,
			   const struct backup_file *f, int fd)
{
	return add(w, table_of(w, table), dir, f, fd, NULL);
}

int backup_writer_add_buffer(backup_writer *w, unsigned table, unsigned dir,
			     const struct backup_file *f, const void *data)
{
	return add(w, table_of(w, table), dir, f, -1, data);
}

int backup_writer_add_node_file(backup_writer *w, const char *dir, const struct backup_file *f,
				const void *data)
{
	if (w->err)
		return w->err;
	struct wtable *t = &w->own; /* its one directory, when made, is dirs[0] */
	if (*dir && strcmp(dir, MANIFEST_CONF_DIR))
		return fail(w, -EINVAL, "node file %s: no directory %s", f->source, dir);
	if (!name_is_component(f->name))
		return fail(w, -EINVAL, "node file %s: invalid name", f->source);
	unsigned d = *dir ? 0 : BACKUP_TABLE_DIR;
	for (size_t i = 0; i < t->nfiles; i++)
		if (t->files[i].dir == d && !strcmp(t->files[i].name, f->name))
			return fail(w, -EEXIST, "node file %s added twice", f->source);
	struct backup_attr a = {0700, 0, 0, 0}; /* not recorded: the mount shows its own */
	int r = *dir && !t->ndirs ? add_dir(w, t, dir, &a, &d) : 0;
	return r < 0 ? r : add(w, t, d, f, -1, data);
}

/* The manifest's view of t's files, into files (t->nfiles of them; strings are t's). With
 * mark_added (a table's files in an incremental), a file not inherited from the backup it
 * follows is marked added. */
static void fill_files(const struct wtable *t, bool mark_added, struct manifest_file *files)
{
	for (size_t f = 0; f < t->nfiles; f++) {
		const struct wfile *wf = &t->files[f];
		struct manifest_file *mf = &files[f];
		mf->dir = wf->dir == BACKUP_TABLE_DIR ? "" : t->dirs[wf->dir].name;
		mf->name = wf->name;
		mf->size = wf->size;
		mf->attr = (struct cb_attr){wf->a.mode & 07777, wf->a.uid, wf->a.gid, wf->a.mtime_ns};
		memcpy(mf->sha256, wf->sha, 32);
		mf->added = mark_added && !wf->inherited;
	}
}

int backup_writer_add_stored(backup_writer *w, unsigned table, unsigned dir,
			     const struct backup_file *f, const unsigned char sha256[32])
{
	if (w->err)
		return w->err;
	struct wtable *t = table_of(w, table);
	if (!t || (dir != BACKUP_TABLE_DIR && dir >= t->ndirs))
		return fail(w, -EINVAL, "file %s: no such table or directory", f->source);
	struct wfile *wf = new_file(t, dir, f);
	if (!wf)
		return fail(w, -ENOMEM, "out of memory");
	memcpy(wf->sha, sha256, 32);
	wf->inherited = true;
	int r = catalog_find_blob(w->cat, wf->sha, wf->size, &wf->stored_id);
	if (r == 0)
		return fail(w, -ENOENT, "cannot take %s into backup %s: its content is in no pack of "
			    "the store", f->source, w->name);
	if (r < 0)
		return fail(w, r, "cannot read the catalog of %s: %s", w->root, catalog_errmsg(w->cat));
	w->files++;
	w->bytes += f->size;
	return 0; /* nothing read: no progress to report */
}

/* The manifest of this backup: metadata, then keyspaces in the order their first table came. */
static int fill_keyspace(const backup_writer *w, size_t first, struct manifest_keyspace *k)
{
	const struct wtable *t0 = &w->tables[first];
	k->name = t0->keyspace;
	k->attr = (struct cb_attr){t0->ka.mode & 07777, t0->ka.uid, t0->ka.gid, t0->ka.mtime_ns};
	k->tables = calloc(w->ntables, sizeof(*k->tables));
	if (!k->tables)
		return -ENOMEM;
	for (size_t i = first; i < w->ntables; i++) {
		const struct wtable *t = &w->tables[i];
		if (strcmp(t->keyspace, t0->keyspace))
			continue;
		struct manifest_table *mt = &k->tables[k->ntables++];
		*mt = (struct manifest_table){.name = t->table, .id = t->table_id,
					      .schema_cql = t->schema_cql, .ndirs = t->ndirs,
					      .nfiles = t->nfiles,
					      .links = (struct manifest_links *)t->links,
					      .nlinks = t->nlinks, .emptied_ms = t->emptied_ms};
		mt->attr = (struct cb_attr){t->ta.mode & 07777, t->ta.uid, t->ta.gid, t->ta.mtime_ns};
		mt->dirs = calloc(t->ndirs + 1, sizeof(*mt->dirs));
		mt->files = calloc(t->nfiles + 1, sizeof(*mt->files));
		if (!mt->dirs || !mt->files)
			return -ENOMEM;
		for (size_t d = 0; d < t->ndirs; d++)
			mt->dirs[d] = (struct manifest_dir){t->dirs[d].name,
				{t->dirs[d].a.mode & 07777, t->dirs[d].a.uid, t->dirs[d].a.gid, t->dirs[d].a.mtime_ns}};
		fill_files(t, w->base != NULL, mt->files);
	}
	return 0;
}

/* Frees what fill_manifest allocated (the strings belong to the writer). */
static void free_manifest_view(struct manifest *m)
{
	for (size_t k = 0; k < m->nkeyspaces; k++) {
		for (size_t t = 0; t < m->keyspaces[k].ntables; t++) {
			free(m->keyspaces[k].tables[t].dirs);
			free(m->keyspaces[k].tables[t].files);
		}
		free(m->keyspaces[k].tables);
	}
	free(m->keyspaces);
	free(m->node_files);
}

static int fill_manifest(const backup_writer *w, uint64_t stored, struct manifest *m)
{
	*m = (struct manifest){
		.name = w->name, .node = w->node, .cluster = w->cluster, .datacenter = w->datacenter,
		.host_id = w->host_id ? w->host_id : "", .snapshot_tag = w->tag,
		.cassandra_version = w->version, .tokens = w->tokens, .ntokens = w->ntokens,
		.rack = w->rack, .schema_version = w->schema_version, .ring = w->ring,
		.nring = w->nring, .created_ns = w->created_ns, .files = w->files, .bytes = w->bytes,
		.new_bytes = w->new_bytes, .stored_bytes = stored, .base = w->base,
		.previous = w->previous, .scope = w->scope, .clears_links = w->clears_links,
		.snapshot_ns = w->snapshot_ns, .commitlog_seen = w->commitlog_seen,
		.commitlog_seen_id = w->commitlog_seen_id, .root_attr = {w->root_attr.mode & 07777, w->root_attr.uid, w->root_attr.gid,
			      w->root_attr.mtime_ns},
	};
	m->keyspaces = calloc(w->ntables + 1, sizeof(*m->keyspaces));
	m->node_files = calloc(w->own.nfiles + 1, sizeof(*m->node_files));
	if (!m->keyspaces || !m->node_files)
		return -ENOMEM;
	fill_files(&w->own, false, m->node_files);
	m->nnode_files = w->own.nfiles;
	int r = 0;
	for (size_t i = 0; r == 0 && i < w->ntables; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = !strcmp(w->tables[j].keyspace, w->tables[i].keyspace);
		if (!seen)
			r = fill_keyspace(w, i, &m->keyspaces[m->nkeyspaces++]);
	}
	return r;
}

/* Commits the last pack. A backup whose every file the store already held writes none. */
static int finish_packs(backup_writer *w)
{
	if (w->o.cancel && *w->o.cancel)
		return -ECANCELED;
	return packer_finish(w->pk);
}

/* Bytes of the packs this backup wrote. */
static uint64_t stored_bytes(const backup_writer *w)
{
	struct packer_stats st;
	packer_get_stats(w->pk, &st);
	return st.bytes;
}

/* The commit point: backups/NAME.json, written once, after the pack. */
static int put_manifest(backup_writer *w, const struct manifest *m, uint64_t *size,
			char version[CB_VERSION_MAX])
{
	struct strbuf doc = {0}, err = {0};
	char why[256] = "";
	int r = manifest_write(m, &doc, why, sizeof(why));
	if (r == -EINVAL)
		return fail(w, r, "cannot describe backup %s: %s", w->name, why);
	/* what every reader will do with it, before it is the store's: a manifest that does not
	 * read back (a name twice in a table, say) would be a backup nobody can restore, and an
	 * incremental removes Cassandra's links once it is committed */
	struct manifest *back = NULL;
	if (r == 0 && (r = manifest_parse(doc.buf, doc.len, &back, why, sizeof(why))) < 0 && r != -ENOMEM) {
		sb_free(&doc);
		return fail(w, -EINVAL, "cannot commit backup %s: its manifest does not read back (%s); "
			    "nothing is committed", w->name, why);
	}
	manifest_free(back);
	r = r ?: store_commit_manifest(w->store, w->lock, w->ref, doc.buf, doc.len, version, &err);
	*size = doc.len;
	if (r == -EEXIST)
		fail(w, r, "backup %s of node %s was created by another process meanwhile; nothing "
			"changed", w->name, manifest_node_key(m));
	else if (r < 0)
		fail(w, r, "%s", err.buf ? err.buf : strerror(-r));
	sb_free(&doc);
	sb_free(&err);
	return r;
}

/* Takes the committed backup into the catalog (one transaction): its packs, then its tree. A
 * failure here loses nothing: the manifest is written, and the next open of the store takes it
 * in. */
static void register_backup(backup_writer *w, const struct manifest *m, uint64_t msize,
			    const char *version)
{
	catalog *c = w->cat;
	if (catalog_begin(c) < 0)
		return;
	int r = 0;
	for (size_t i = 0; r == 0 && i < w->npacks; i++) {
		const struct done_pack *d = &w->packs[i];
		struct cb_pack_info p = {.path = d->key, .size = d->info.compressed,
					 .frames = d->info.frames, .created_ns = w->created_ns,
					 .index_offset = d->info.index_offset,
					 .index_size = d->info.index_size};
		memcpy(p.table_sha256, d->info.table_sha256, 32);
		int64_t pack_id;
		r = store_register_pack(c, &p, &d->index, &pack_id);
	}
	r = r ?: store_register_manifest(c, m, true, msize, version) ?: catalog_commit(c);
	if (r < 0)
		catalog_rollback(c);
}

int backup_writer_commit(backup_writer *w, struct backup_summary *sum)
{
	if (w->err)
		return w->err;
	struct manifest m = {0};
	uint64_t msize = 0;
	char version[CB_VERSION_MAX] = "";
	int r = finish_packs(w);
	if (r == -ECANCELED)
		fail(w, r, "interrupted");
	else if (r < 0)
		fail(w, r, "%s", packer_errmsg(w->pk));
	if (r == 0 && (r = fill_manifest(w, stored_bytes(w), &m)) < 0)
		fail(w, r, "out of memory");
	/* The lease, held all along, before the commit point: had it lapsed, a prune could have
	 * deleted packs this backup counts on. Its packs then stay, packs no manifest names. */
	struct strbuf lease = {0};
	if (r == 0 && (r = store_lock_check(w->lock, &lease)) < 0)
		fail(w, r, "%s", lease.buf);
	sb_free(&lease);
	if (r == 0 && (r = put_manifest(w, &m, &msize, version)) == 0) {
		w->committed = true;
		register_backup(w, &m, msize, version);
	}
	free_manifest_view(&m); /* whatever fill_manifest made, also after a failure */
	if (r < 0)
		return r;
	*sum = (struct backup_summary){.tables = w->ntables, .files = w->files, .bytes = w->bytes,
				       .new_bytes = w->new_bytes, .stored_bytes = stored_bytes(w),
				       .packs = w->npacks};
	return 0;
}

/* --- free --------------------------------------------------------------------------------- */

static void free_table(struct wtable *t)
{
	for (size_t k = 0; k < t->nfiles; k++)
		free(t->files[k].name);
	for (size_t d = 0; d < t->ndirs; d++)
		free(t->dirs[d].name);
	free(t->files);
	free(t->dirs);
	free(t->keyspace);
	free(t->table);
	free(t->table_id);
	free(t->dirname);
	free(t->schema_cql);
}

static void free_tables(backup_writer *w)
{
	for (size_t i = 0; i < w->ntables; i++)
		free_table(&w->tables[i]);
	free(w->tables);
	free_table(&w->own);
}

void backup_writer_free(backup_writer *w)
{
	if (!w)
		return;
	packer_free(w->pk); /* aborts a pack not committed */
	store_lock_release(w->lock);
	for (size_t i = 0; i < w->npacks; i++) {
		free(w->packs[i].key);
		free(w->packs[i].index.blobs);
	}
	free(w->packs);
	free_tables(w);
	for (size_t i = 0; i < w->nblobs; i++)
		free(w->blobs[i].member);
	free(w->blobs);
	free(w->map.slots);
	free(w->name);
	free(w->cluster);
	free(w->datacenter);
	free(w->node);
	free(w->host_id);
	free(w->tag);
	free(w->version);
	free(w->rack);
	free(w->schema_version);
	free(w->base);
	free(w->previous);
	manifest_scope_free(&w->scope);
	manifest_ring_free(w->ring, w->nring);
	for (size_t i = 0; i < w->ntokens; i++)
		free(w->tokens[i]);
	free(w->tokens);
	sb_free(&w->msg);
	free(w);
}
