/* backup.c: see backup.h.
 *
 * Store format 1, as written here: one new pack per backup in STORE/tmp/ (locked by its writer),
 * holding the files whose bytes the store lacks and, last, `.cassbackup/<name>.manifest.json`
 * describing the whole backup; then fsync, rename into packs/, fsync of the directories, and
 * one SQLite transaction registering the pack, its blobs and the backup's tree.
 *
 * Deduplication: a file whose (SHA-256, size) is already stored is not written again. Hashing
 * first costs a second read, so it is done only where a duplicate is possible: small files,
 * and files whose exact size some stored (or just written) blob has. Within the pack, a file
 * with the same bytes as an earlier member is a tar hard link to it.
 */
#include "backup.h"
#include "catalog.h"
#include "pack.h"
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
	uint64_t offset; /* in this pack's tar stream */
	int64_t id;      /* catalog id once registered */
	char *member;    /* the member holding the bytes, for hard links to it */
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
	long pending;      /* >= 0: index into blobs written to this pack */
};

struct wdir {
	char *name;
	struct backup_attr a;
};

struct wtable {
	char *keyspace, *table, *table_id, *dirname, *schema_cql;
	struct backup_attr ka, ta;
	struct wdir *dirs;
	size_t ndirs;
	struct wfile *files;
	size_t nfiles, files_cap;
};

struct backup_writer {
	char *root;
	char *name, *cluster, *datacenter, *node, *host_id, *tag, *version;
	char **tokens;
	size_t ntokens;
	struct backup_attr root_attr;
	int64_t created_ns;
	struct backup_writer_opts o;
	catalog *cat;
	struct store_tmp tmp;
	pack_writer *pw;
	struct wtable *tables;
	size_t ntables;
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
	sb_puts(&w->msg, line);
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

static int copy_meta(backup_writer *w, const char *root, const struct backup_meta *m)
{
	w->root = strdup(root);
	w->name = dup_or_empty(m->name);
	w->cluster = dup_or_empty(m->cluster);
	w->datacenter = dup_or_empty(m->datacenter);
	w->node = dup_or_empty(m->node);
	w->host_id = m->host_id ? strdup(m->host_id) : NULL;
	w->tag = dup_or_empty(m->snapshot_tag);
	w->version = dup_or_empty(m->cassandra_version);
	w->root_attr = m->root_attr;
	w->created_ns = m->created_ns ? m->created_ns : now_ns();
	if (!w->root || !w->name || !w->cluster || !w->datacenter || !w->node || !w->tag ||
	    !w->version || (m->host_id && !w->host_id))
		return -ENOMEM;
	for (size_t i = 0; i < m->ntokens; i++) {
		char *t = strdup(m->tokens[i]);
		if (!t || ptrv_push(&w->tokens, &w->ntokens, t) < 0) {
			free(t);
			return -ENOMEM;
		}
	}
	return 0;
}

static int open_and_check(backup_writer *w, struct strbuf *err)
{
	int r = store_open(w->root, 0, &w->cat);
	if (r == -EMEDIUMTYPE) {
		sb_printf(err, "cannot open store %s: not a cassbackup store (no catalog.db)", w->root);
		return r;
	} else if (r < 0) {
		sb_printf(err, "cannot open store %s: %s", w->root, strerror(-r));
		return r;
	}
	w->reclaim_err = store_reclaim_tmp(w->root, &w->reclaimed);
	r = catalog_backup_exists(w->cat, w->name);
	if (r < 0) {
		sb_printf(err, "cannot read catalog of %s: %s", w->root, catalog_errmsg(w->cat));
		return r;
	} else if (r > 0) {
		sb_printf(err, "backup %s already exists in %s", w->name, w->root);
		return -EEXIST;
	}
	r = store_tmp_create(w->root, &w->tmp);
	if (r < 0) {
		sb_printf(err, "cannot create a pack in %s/tmp: %s", w->root, strerror(-r));
		return r;
	}
	r = pack_writer_new(&w->pw, w->tmp.fd, w->o.level, w->o.threads, w->o.frame_size);
	if (r < 0)
		sb_printf(err, "cannot start pack %s: %s", w->tmp.path, strerror(-r));
	return r;
}

int backup_writer_begin(const char *root, const struct backup_meta *meta,
			const struct backup_writer_opts *opts, backup_writer **out, struct strbuf *err)
{
	*out = NULL;
	backup_writer *w = calloc(1, sizeof(*w));
	if (!w) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	w->tmp.fd = -1;
	w->o = *opts;
	int r = copy_meta(w, root, meta);
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
	*n = (struct wtable){
		.keyspace = strdup(t->keyspace),
		.table = strdup(t->table),
		.table_id = dup_or_empty(t->table_id),
		.dirname = strdup(t->dirname),
		.schema_cql = t->schema_cql ? strdup(t->schema_cql) : NULL,
		.ka = t->keyspace_attr,
		.ta = t->table_attr,
	};
	w->ntables++; /* freed with the writer, complete or not */
	if (!n->keyspace || !n->table || !n->table_id || !n->dirname || (t->schema_cql && !n->schema_cql))
		return fail(w, -ENOMEM, "out of memory");
	*table = (unsigned)(w->ntables - 1);
	return 0;
}

int backup_writer_add_dir(backup_writer *w, unsigned table, const char *name,
			  const struct backup_attr *a, unsigned *dir)
{
	if (w->err)
		return w->err;
	if (table >= w->ntables)
		return fail(w, -EINVAL, "directory %s: no such table", name);
	struct wtable *t = &w->tables[table];
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

static int member_path(const backup_writer *w, unsigned table, const struct wfile *f,
		       struct strbuf *sb)
{
	const struct wtable *t = &w->tables[table];
	sb->len = 0;
	if (f->dir != BACKUP_TABLE_DIR)
		return sb_printf(sb, "%s/%s/%s/%s", t->keyspace, t->dirname, t->dirs[f->dir].name,
				 f->name);
	return sb_printf(sb, "%s/%s/%s", t->keyspace, t->dirname, f->name);
}

/* Appends the file's record to its table; NULL when out of memory. */
static struct wfile *new_file(backup_writer *w, unsigned table, unsigned dir,
			      const struct backup_file *f)
{
	struct wtable *t = &w->tables[table];
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
static int store_bytes(backup_writer *w, struct src *s, struct wfile *wf, const char *member)
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
		r = pack_writer_add_buffer(w->pw, &m, s->data, &b->offset);
		memcpy(b->sha, wf->sha, 32);
		if (r == 0)
			progress(w, f->size);
	} else {
		r = pack_writer_add_fd(w->pw, &m, s->fd, b->sha, &b->offset, w->o.cancel,
				       w->o.progress, w->o.pctx);
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
	w->new_bytes += f->size;
	return map_insert(&w->map, w->blobs, wf->pending);
}

/* Finds the file's bytes in this pack or the store, or writes them. */
static int place_bytes(backup_writer *w, struct src *s, struct wfile *wf, const char *member)
{
	int r = 0;
	if (s->data || maybe_duplicate(w, s->f->size, &r)) {
		if ((r = prehash(w, s, wf)) < 0)
			return r;
		long i = map_find(&w->map, w->blobs, wf->sha, wf->size);
		if (i >= 0) { /* same bytes as a member of this pack: a hard link to it */
			struct pack_member m = {.path = member, .size = wf->size, .mode = wf->a.mode,
						.uid = wf->a.uid, .gid = wf->a.gid,
						.mtime_ns = wf->a.mtime_ns};
			wf->pending = i;
			r = pack_writer_add_hardlink(w->pw, &m, w->blobs[i].member);
			if (r == 0)
				progress(w, wf->size);
			return r;
		}
		r = catalog_find_blob(w->cat, wf->sha, wf->size, &wf->stored_id);
		if (r != 0) {
			if (r == 1)
				progress(w, wf->size);
			return r < 0 ? r : 0;
		}
	}
	return r < 0 ? r : store_bytes(w, s, wf, member);
}

static int add(backup_writer *w, unsigned table, unsigned dir, const struct backup_file *f,
	       int fd, const void *data)
{
	if (w->err)
		return w->err;
	if (w->o.cancel && *w->o.cancel)
		return fail(w, -ECANCELED, "interrupted");
	if (table >= w->ntables || (dir != BACKUP_TABLE_DIR && dir >= w->tables[table].ndirs))
		return fail(w, -EINVAL, "file %s: no such table or directory", f->source);
	struct wfile *wf = new_file(w, table, dir, f);
	if (!wf)
		return fail(w, -ENOMEM, "out of memory");
	struct strbuf member = {0};
	struct src s = {.f = f, .fd = fd, .data = data};
	int r = member_path(w, table, wf, &member);
	if (r == 0)
		r = place_bytes(w, &s, wf, member.buf);
	sb_free(&member);
	free(s.mem);
	if (r == 0) {
		w->files++;
		w->bytes += f->size;
		return 0;
	}
	const char *la = pack_writer_errmsg(w->pw);
	if (r == -ECANCELED)
		return fail(w, r, "interrupted");
	if (r == -ESTALE)
		return fail(w, r, "cannot back up %s: the file changed while it was being read",
			    f->source);
	if (r == -ENOSPC || r == -EDQUOT)
		return fail(w, r, "cannot write pack %s: %s", w->tmp.path, strerror(-r));
	if (r == -EIO && la) /* libarchive's own words */
		return fail(w, r, "cannot back up %s: %s", f->source, la);
	return fail(w, r, "cannot back up %s: %s", f->source, strerror(-r));
}

int backup_writer_add_file(backup_writer *w, unsigned table, unsigned dir,
			   const struct backup_file *f, int fd)
{
	return add(w, table, dir, f, fd, NULL);
}

int backup_writer_add_buffer(backup_writer *w, unsigned table, unsigned dir,
			     const struct backup_file *f, const void *data)
{
	return add(w, table, dir, f, -1, data);
}

/* --- manifest ----------------------------------------------------------------------------- */

/* "key": "name" when name is UTF-8, else "key_hex": "<its bytes in hex>": JSON holds text, and
 * names are bytes. */
static int json_name(struct strbuf *j, const char *key, const char *name)
{
	if (utf8_valid(name))
		return sb_printf(j, "\"%s\": ", key) ?: sb_json_str(j, name);
	size_t n = strlen(name);
	char *hex = malloc(2 * n + 1);
	if (!hex)
		return -ENOMEM;
	hex_encode((const unsigned char *)name, n, hex);
	int r = sb_printf(j, "\"%s_hex\": \"%s\"", key, hex);
	free(hex);
	return r;
}

static int manifest_head(const backup_writer *w, struct strbuf *j)
{
	char created[64];
	format_time_utc(w->created_ns, created, sizeof(created));
	int r = sb_puts(j, "{\n  \"format\": \"cassbackup-manifest-1\",\n  \"backup\": {");
	r = r ?: json_name(j, "name", w->name);
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "cluster", w->cluster);
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "datacenter", w->datacenter);
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "node", w->node);
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "host_id", w->host_id ? w->host_id : "");
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "snapshot_tag", w->tag);
	r = r ?: sb_puts(j, ", ") ?: json_name(j, "cassandra_version", w->version);
	r = r ?: sb_printf(j, ", \"root\": {\"mode\": %u, \"uid\": %u, \"gid\": %u}, \"tokens\": [",
			   w->root_attr.mode & 07777, w->root_attr.uid, w->root_attr.gid);
	for (size_t i = 0; r == 0 && i < w->ntokens; i++)
		r = sb_puts(j, i ? ", " : "") ?: sb_json_str(j, w->tokens[i]);
	r = r ?: sb_puts(j, "]");
	r = r ?: sb_printf(j, ", \"created\": \"%s\", \"created_ns\": %lld},\n  \"tables\": [", created,
			   (long long)w->created_ns);
	for (size_t i = 0; r == 0 && i < w->ntables; i++) {
		const struct wtable *t = &w->tables[i];
		r = sb_puts(j, i ? ",\n    {" : "\n    {") ?: json_name(j, "keyspace", t->keyspace);
		r = r ?: sb_puts(j, ", ") ?: json_name(j, "table", t->table);
		r = r ?: sb_puts(j, ", ") ?: json_name(j, "table_id", t->table_id);
		r = r ?: sb_puts(j, ", ") ?: json_name(j, "dir", t->dirname);
		r = r ?: sb_puts(j, "}");
	}
	return r;
}

static int manifest_files(const backup_writer *w, struct strbuf *j)
{
	struct strbuf p = {0};
	char hex[65];
	bool first = true;
	int r = sb_puts(j, "\n  ],\n  \"files\": [");
	for (size_t i = 0; r == 0 && i < w->ntables; i++) {
		const struct wtable *t = &w->tables[i];
		for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
			const struct wfile *f = &t->files[k];
			hex_encode(f->sha, 32, hex);
			r = member_path(w, (unsigned)i, f, &p);
			r = r ?: sb_puts(j, first ? "\n    {" : ",\n    {") ?: json_name(j, "path", p.buf);
			first = false;
			r = r ?: sb_printf(j, ", \"size\": %llu, \"mode\": %u, \"uid\": %u, \"gid\": %u, "
					   "\"mtime_ns\": %lld, \"sha256\": \"%s\"}",
					   (unsigned long long)f->size, f->a.mode & 07777, f->a.uid,
					   f->a.gid, (long long)f->a.mtime_ns, hex);
		}
	}
	sb_free(&p);
	r = r ?: sb_puts(j, "\n  ],\n  \"blobs\": [");
	for (size_t i = 0; r == 0 && i < w->nblobs; i++) {
		hex_encode(w->blobs[i].sha, 32, hex);
		r = sb_printf(j, "%s\n    {\"sha256\": \"%s\", \"size\": %llu, \"offset\": %llu}",
			      i ? "," : "", hex, (unsigned long long)w->blobs[i].size,
			      (unsigned long long)w->blobs[i].offset);
	}
	return r ?: sb_puts(j, "\n  ]\n}\n");
}

/* The last member: the pack describes the backup it completes. */
static int write_manifest(backup_writer *w)
{
	struct strbuf j = {0}, path = {0};
	int r = manifest_head(w, &j) ?: manifest_files(w, &j);
	r = r ?: sb_printf(&path, ".cassbackup/%s.manifest.json", w->name);
	if (r == 0) {
		struct pack_member m = {.path = path.buf, .size = j.len, .mode = 0644, .uid = getuid(),
					.gid = getgid(), .mtime_ns = w->created_ns};
		uint64_t off;
		r = pack_writer_add_buffer(w->pw, &m, j.buf, &off);
	}
	sb_free(&j);
	sb_free(&path);
	return r;
}

/* --- commit ------------------------------------------------------------------------------- */

static int register_files(backup_writer *w, int64_t backup_id, size_t ti, int64_t ks_row)
{
	catalog *c = w->cat;
	const struct wtable *t = &w->tables[ti];
	struct cb_dir_attr a = {t->ta.mode & 07777, t->ta.uid, t->ta.gid, t->ta.mtime_ns};
	int64_t table_row, id;
	int r = catalog_add_table(c, backup_id, ks_row, t->table, t->table_id, t->schema_cql, &a,
				  &table_row);
	int64_t *dir_rows = calloc(t->ndirs + 1, sizeof(*dir_rows));
	if (r == 0 && !dir_rows)
		r = -ENOMEM;
	for (size_t d = 0; r == 0 && d < t->ndirs; d++) {
		const struct backup_attr *da = &t->dirs[d].a;
		a = (struct cb_dir_attr){da->mode & 07777, da->uid, da->gid, da->mtime_ns};
		r = catalog_add_dir(c, table_row, t->dirs[d].name, &a, &dir_rows[d]);
	}
	for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
		const struct wfile *f = &t->files[k];
		struct cb_file_info fi = {
			.backup_id = backup_id,
			.table_row = table_row,
			.dir_id = f->dir != BACKUP_TABLE_DIR ? dir_rows[f->dir] : 0,
			.name = f->name,
			.size = f->size,
			.mode = f->a.mode & 07777,
			.uid = f->a.uid,
			.gid = f->a.gid,
			.mtime_ns = f->a.mtime_ns,
			.blob_id = f->pending >= 0 ? w->blobs[f->pending].id : f->stored_id,
		};
		r = catalog_add_file(c, &fi, &id);
	}
	free(dir_rows);
	return r;
}

/* The keyspace row of table ti: that of an earlier table of the same keyspace, or a new one. */
static int keyspace_row(backup_writer *w, int64_t backup_id, size_t ti, int64_t *rows)
{
	const struct wtable *t = &w->tables[ti];
	for (size_t i = 0; i < ti; i++) {
		if (!strcmp(w->tables[i].keyspace, t->keyspace)) {
			rows[ti] = rows[i];
			return 0;
		}
	}
	struct cb_dir_attr a = {t->ka.mode & 07777, t->ka.uid, t->ka.gid, t->ka.mtime_ns};
	return catalog_add_keyspace(w->cat, backup_id, t->keyspace, &a, &rows[ti]);
}

static int register_tree(backup_writer *w, int64_t pack_id, uint64_t stored)
{
	struct cb_backup_info b = {
		.name = w->name, .cluster = w->cluster, .datacenter = w->datacenter, .node = w->node,
		.host_id = w->host_id, .snapshot_tag = w->tag, .created_ns = w->created_ns,
		.pack_id = pack_id, .files = w->files, .bytes = w->bytes, .new_bytes = w->new_bytes,
		.stored_bytes = stored,
	};
	int64_t backup_id;
	int r = catalog_add_backup(w->cat, &b, &backup_id);
	int64_t *ks_rows = calloc(w->ntables + 1, sizeof(*ks_rows));
	if (r == 0 && !ks_rows)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < w->ntables; i++)
		r = keyspace_row(w, backup_id, i, ks_rows) ?: register_files(w, backup_id, i, ks_rows[i]);
	free(ks_rows);
	return r;
}

/* One transaction: the pack, its blobs, the backup and its tree. */
static int register_backup(backup_writer *w, uint64_t stored, uint32_t frames)
{
	catalog *c = w->cat;
	int64_t pack_id;
	int r = catalog_begin(c);
	if (r < 0)
		return r;
	r = catalog_backup_exists(c, w->name);
	if (r > 0)
		r = -EEXIST;
	if (r == 0)
		r = catalog_add_pack(c, w->tmp.relpath, stored, frames, w->created_ns, &pack_id);
	for (size_t i = 0; r == 0 && i < w->nblobs; i++)
		r = catalog_add_blob(c, w->blobs[i].sha, w->blobs[i].size, pack_id, w->blobs[i].offset,
				     &w->blobs[i].id);
	if (r == 0)
		r = register_tree(w, pack_id, stored);
	if (r == 0)
		r = catalog_commit(c);
	if (r < 0)
		catalog_rollback(c);
	return r;
}

int backup_writer_commit(backup_writer *w, struct backup_summary *sum)
{
	if (w->err)
		return w->err;
	uint64_t stored = 0;
	uint32_t frames = 0;
	int r = write_manifest(w);
	if (r == 0)
		r = pack_writer_finish(w->pw, &stored, &frames);
	if (r == 0 && w->o.cancel && *w->o.cancel)
		r = -ECANCELED;
	if (r == -ECANCELED)
		return fail(w, r, "interrupted");
	if (r < 0)
		return fail(w, r, "cannot write pack %s: %s", w->tmp.path, strerror(-r));
	r = store_tmp_commit(w->root, &w->tmp);
	if (r < 0)
		return fail(w, r, "cannot move pack into %s/%s: %s", w->root, w->tmp.relpath,
			    strerror(-r));
	r = register_backup(w, stored, frames);
	if (r == -EEXIST)
		return fail(w, r, "backup %s was created by another process meanwhile; nothing changed",
			    w->name);
	if (r < 0)
		return fail(w, r, "cannot register backup in %s/catalog.db: %s", w->root,
			    catalog_errmsg(w->cat));
	w->committed = true;
	store_tmp_release(&w->tmp, true);
	*sum = (struct backup_summary){.tables = w->ntables, .files = w->files, .bytes = w->bytes,
				       .new_bytes = w->new_bytes, .stored_bytes = stored};
	return 0;
}

/* --- free --------------------------------------------------------------------------------- */

static void free_tables(backup_writer *w)
{
	for (size_t i = 0; i < w->ntables; i++) {
		struct wtable *t = &w->tables[i];
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
	free(w->tables);
}

void backup_writer_free(backup_writer *w)
{
	if (!w)
		return;
	pack_writer_free(w->pw);
	if (w->tmp.path)
		store_tmp_release(&w->tmp, w->committed);
	catalog_close(w->cat);
	free_tables(w);
	for (size_t i = 0; i < w->nblobs; i++)
		free(w->blobs[i].member);
	free(w->blobs);
	free(w->map.slots);
	free(w->root);
	free(w->name);
	free(w->cluster);
	free(w->datacenter);
	free(w->node);
	free(w->host_id);
	free(w->tag);
	free(w->version);
	for (size_t i = 0; i < w->ntokens; i++)
		free(w->tokens[i]);
	free(w->tokens);
	sb_free(&w->msg);
	free(w);
}
