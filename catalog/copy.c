/* copy.c: see copy.h.
 *
 * plan (read the source manifest, compare with the target's, list the contents the target
 * lacks and where the source keeps them) -> send (one new pack at the target) -> commit (the
 * manifest) -> register (the target's catalog).
 */
#include "copy.h"
#include "backend.h"
#include "catalog.h"
#include "commitlog.h"
#include "lock.h"
#include "manifest.h"
#include "pack.h"
#include "packer.h"
#include "packread.h"
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* One content of the backup, and the first file (in manifest order) that holds it. */
struct centry {
	unsigned char sha[32];
	uint64_t size;
	const struct manifest_table *t; /* the table of that file */
	const struct manifest_file *f;
	unsigned group;   /* 0: a table that shares packs; else its table's packs of its own */
	char *member;     /* <ks>/<table>[-<id>]/[<.index>/]<file>: the name a create gives it */
	int64_t pack_id;  /* where the source keeps it */
	char *pack_path;
	uint64_t src_off, dst_off;
};

struct copy {
	struct store *src, *dst;
	const char *name;
	const struct copy_opts *o;
	struct copy_stats *st;
	struct strbuf *err;
	char *doc; /* the source manifest, as bytes */
	size_t len;
	struct manifest *m;
	struct centry *v; /* every content of the backup, then (after plan) only those to send */
	size_t n, cap;
	packer *pk;            /* the new packs */
	pack_cache *pc;        /* the source store's */
	int64_t created_ns;
	char dst_ref[CB_REF_MAX];     /* where the target keeps it: NAME/NODE, whatever the source's layout */
	char version[CB_VERSION_MAX]; /* the target manifest's, once written */
};

/* --- plan -------------------------------------------------------------------------------- */

static int read_source_manifest(struct copy *c)
{
	struct strbuf key = {0};
	char why[512] = "";
	int r = store_manifest_key(c->name, &key);
	if (r == 0)
		r = cb_backend_get(store_backend(c->src), key.buf, MANIFEST_MAX, &c->doc, &c->len);
	if (r < 0 && r != -ENOENT)
		sb_printf(c->err, "cannot read %s/%s: %s", store_location(c->src),
			  key.buf ? key.buf : "backups", r == -EINVAL ? "invalid backup name" : cb_backend_why(r));
	if (r == 0 && (r = manifest_parse(c->doc, c->len, &c->m, why, sizeof(why))) < 0)
		sb_printf(c->err, "%s/%s: %s", store_location(c->src), key.buf, why);
	char name[256] = "", node[65] = "";
	store_ref_split(c->name, name, node); /* a valid ref: store_manifest_key checked it */
	if (r == 0 && strcmp(c->m->name, name) != 0) {
		sb_printf(c->err, "%s/%s names backup \"%s\"", store_location(c->src), key.buf, c->m->name);
		r = -EBADMSG;
	}
	if (r == 0 && *node && !manifest_node_key_same(manifest_node_key(c->m), node)) {
		sb_printf(c->err, "%s/%s describes node %s", store_location(c->src), key.buf,
			  manifest_node_key(c->m));
		r = -EBADMSG;
	}
	sb_free(&key);
	return r;
}

/* 0 when the name is free at the target, 1 when it holds the same manifest, -EEXIST when it
 * holds another one. */
/* What the target holds under key: 1 the source's manifest byte for byte, 0 nothing, -EEXIST
 * another backup of this node (node_of: the manifest must describe this node to count: NULL,
 * any), or the backend's error with err. */
static int target_holds(struct copy *c, const char *key, const char *node_of)
{
	_cleanup_free_ char *doc = NULL;
	size_t len = 0;
	int r = cb_backend_get(store_backend(c->dst), key, MANIFEST_MAX, &doc, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		sb_printf(c->err, "cannot read %s/%s: %s", store_location(c->dst), key, cb_backend_why(r));
		return r;
	}
	if (len == c->len && memcmp(doc, c->doc, len) == 0)
		return 1;
	if (node_of) { /* an older layout's manifest is this node's only when it says so */
		struct manifest *m = NULL;
		char why[256];
		bool ours = manifest_parse(doc, len, &m, why, sizeof(why)) == 0 &&
			    manifest_node_key_same(manifest_node_key(m), node_of);
		manifest_free(m);
		if (!ours)
			return 0;
	}
	return -EEXIST;
}

/* Has the target this node's backup of the name already: 1 the same (nothing to do), 0 none,
 * -EEXIST another. Both layouts count: backups/NAME/NODE.json, which a copy writes, and
 * backups/NAME.json of an older store, if it is this node's (a second manifest of one node
 * and name is one every reader of the target refuses). */
static int check_target(struct copy *c)
{
	struct strbuf key = {0}, older = {0};
	int r = store_manifest_key(c->dst_ref, &key);
	r = r ?: store_manifest_key(c->m->name, &older);
	r = r ?: target_holds(c, key.buf, NULL);
	if (r == 0)
		r = target_holds(c, older.buf, manifest_node_key(c->m));
	if (r == -EEXIST)
		sb_printf(c->err, "%s already holds a different backup named so; nothing copied",
			  store_location(c->dst));
	sb_free(&key);
	sb_free(&older);
	return r;
}

static int push_entry(struct copy *c, const struct manifest_keyspace *k,
		      const struct manifest_table *t, const struct manifest_file *f)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 256;
		struct centry *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	struct centry *e = &c->v[c->n];
	*e = (struct centry){.size = f->size, .t = t, .f = f};
	memcpy(e->sha, f->sha256, 32);
	struct strbuf m = {0};
	/* k NULL: one of the node's own files, a member as the writer names it (backup.c) */
	int r = k ? sb_printf(&m, "%s/%s%s%s/%s%s%s", k->name, t->name, *t->id ? "-" : "", t->id,
			      f->dir, *f->dir ? "/" : "", f->name)
		  : sb_printf(&m, "%s%s%s", f->dir, *f->dir ? "/" : "", f->name);
	if (r < 0)
		return r;
	e->member = m.buf;
	c->n++;
	return 0;
}

static int collect(struct copy *c)
{
	for (size_t k = 0; k < c->m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &c->m->keyspaces[k];
		for (size_t t = 0; t < ks->ntables; t++) {
			const struct manifest_table *tb = &ks->tables[t];
			for (size_t f = 0; f < tb->nfiles; f++) {
				int r = push_entry(c, ks, tb, &tb->files[f]);
				if (r < 0)
					return r;
				c->st->files++;
				c->st->bytes += tb->files[f].size;
			}
		}
	}
	for (size_t f = 0; f < c->m->nnode_files; f++) { /* sent, not counted (manifest.h) */
		int r = push_entry(c, NULL, NULL, &c->m->node_files[f]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int cmp_content(const void *a, const void *b)
{
	const struct centry *x = a, *y = b;
	int d = memcmp(x->sha, y->sha, 32);
	return d ? d : (x->size > y->size) - (x->size < y->size);
}

/* By pack group (shared packs first), then where the source keeps them. */
static int cmp_location(const void *a, const void *b)
{
	const struct centry *x = a, *y = b;
	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (x->pack_id != y->pack_id)
		return x->pack_id < y->pack_id ? -1 : 1;
	return (x->src_off > y->src_off) - (x->src_off < y->src_off);
}

static void drop_entry(struct centry *e)
{
	free(e->member);
	free(e->pack_path);
	e->member = e->pack_path = NULL;
}

/* Keeps one entry per content (the member name of any one file holding it). */
static void unique_contents(struct copy *c)
{
	qsort(c->v, c->n, sizeof(*c->v), cmp_content);
	size_t out = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (out && cmp_content(&c->v[out - 1], &c->v[i]) == 0) {
			drop_entry(&c->v[i]);
			continue;
		}
		c->v[out++] = c->v[i];
	}
	c->n = out;
}

/* Where the source keeps e's bytes: 0, or -ENODATA (err says which file lacks them). */
static int locate(struct copy *c, struct centry *e)
{
	struct cb_blob_loc loc;
	catalog *cat = store_catalog(c->src);
	int r = catalog_blob_location(cat, e->sha, e->size, &loc);
	if (r < 0) {
		sb_printf(c->err, "cannot read the catalog of %s: %s", store_location(c->src),
			  catalog_errmsg(cat));
		return r;
	}
	if (r == 0 || loc.pack_id == 0) {
		sb_printf(c->err, "file %s: no pack of %s holds its bytes (the backup is incomplete); "
			  "nothing copied", e->member, store_location(c->src));
		return -ENODATA;
	}
	e->pack_id = loc.pack_id;
	e->src_off = loc.offset;
	e->pack_path = strdup(loc.pack_path);
	return e->pack_path ? 0 : -ENOMEM;
}

struct by_table {
	const struct manifest_table *t;
	size_t i;
};

static int cmp_by_table(const void *a, const void *b)
{
	const struct by_table *x = a, *y = b;
	if (x->t != y->t)
		return (uintptr_t)x->t < (uintptr_t)y->t ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

/* A table that sends a quarter of the pack size or more gets packs of its own, as in a
 * create (backup.h): its entries get a group of their own, numbered by the table's first. */
static int group_tables(struct copy *c)
{
	uint64_t quarter = (c->o->pack_size ? c->o->pack_size : PACK_DEFAULT_SIZE) / 4;
	struct by_table *v = malloc((c->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		v[i] = (struct by_table){c->v[i].t, i};
	qsort(v, c->n, sizeof(*v), cmp_by_table);
	for (size_t a = 0, b; a < c->n; a = b) {
		uint64_t bytes = 0;
		for (b = a; b < c->n && v[b].t == v[a].t; b++)
			bytes += c->v[v[b].i].size;
		for (size_t k = a; k < b; k++)
			c->v[v[k].i].group = bytes >= quarter ? (unsigned)(v[a].i + 1) : 0;
	}
	free(v);
	return 0;
}

/* Leaves in c->v only the contents the target lacks, in source pack and offset order. */
static int plan_sends(struct copy *c)
{
	catalog *dcat = store_catalog(c->dst);
	for (size_t i = 0; i < c->n; i++) {
		int64_t id;
		struct centry *e = &c->v[i];
		int r = catalog_find_blob(dcat, e->sha, e->size, &id);
		if (r == 0)
			r = locate(c, e);
		else if (r < 0)
			sb_printf(c->err, "cannot read the catalog of %s: %s", store_location(c->dst),
				  catalog_errmsg(dcat));
		if (r < 0)
			return r;
		if (r == 1) { /* the target has it: no member name means nothing to send */
			c->st->blobs_present++;
			c->st->bytes_present += e->size;
			drop_entry(e);
		} else {
			c->st->blobs_sent++;
			c->st->bytes_sent += e->size;
		}
	}
	size_t out = 0;
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].member)
			c->v[out++] = c->v[i];
	c->n = out;
	int r = group_tables(c);
	if (r == 0)
		qsort(c->v, c->n, sizeof(*c->v), cmp_location);
	return r;
}

/* --- send -------------------------------------------------------------------------------- */

/* The packer's word that a pack is in the target: registered now, in its own transaction, so
 * that if the manifest then fails, the pack is one no backup uses, as prune expects of a
 * leftover. A failure here loses nothing either: the next open of the target indexes it. */
static int pack_committed(void *ctx, const char *key, const struct pack_info *info,
			  const struct pack_index *pi)
{
	struct copy *c = ctx;
	struct cb_pack_info p = {.path = key, .size = info->compressed, .frames = info->frames,
				 .created_ns = c->created_ns, .index_offset = info->index_offset,
				 .index_size = info->index_size};
	memcpy(p.table_sha256, info->table_sha256, 32);
	int64_t id;
	catalog *cat = store_catalog(c->dst);
	if (catalog_begin(cat) == 0 &&
	    (store_register_pack(cat, &p, pi, &id) ?: catalog_commit(cat)) < 0)
		catalog_rollback(cat);
	return 0;
}

static int start_packer(struct copy *c)
{
	int r = store_pack_cache(c->src, &c->pc);
	if (r < 0) {
		sb_printf(c->err, "cannot read packs of %s: %s", store_location(c->src), strerror(-r));
		return r;
	}
	struct packer_opts po = {.backend = store_backend(c->dst), .target = c->o->pack_size,
				 .level = c->o->level, .threads = c->o->threads,
				 .frame_size = c->o->frame_size, .committed = pack_committed, .ctx = c};
	c->created_ns = now_ns();
	return packer_new(&po, &c->pk);
}

struct reader {
	struct copy *c;
	struct centry *e;
	int read_error; /* what reading the source failed with; 0: a failure is the target's */
};

/* The source pack of e is gone (a prune on the source repacked its content since the copy
 * planned): e is read from where the source holds it now. 0, -ENOENT (no pack holds it), or
 * the error of looking. */
static int relocate(struct copy *c, struct centry *e)
{
	struct cb_blob_loc loc = {.size = e->size}, moved;
	memcpy(loc.sha256, e->sha, 32);
	snprintf(loc.pack_path, sizeof(loc.pack_path), "%s", e->pack_path);
	int r = store_relocate(c->src, &loc, &moved);
	char *path = r == 0 ? strdup(moved.pack_path) : NULL;
	if (r == 0 && !path)
		return -ENOMEM;
	if (r < 0) /* -ENOENT: nowhere now; else it could not be looked for, the store's or the
		    * catalog's failure, not the pack's damage */
		return r == -ENOENT || r == -ENOMEM ? r : -EREMOTEIO;
	free(e->pack_path);
	e->pack_path = path;
	e->pack_id = moved.pack_id;
	e->src_off = moved.offset;
	return 0;
}

/* The bytes of the content: the same wherever they are read from (its SHA-256 is checked at
 * the end), so a relocation midway goes on at the same offset. */
static int read_source(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct reader *rd = ctx;
	const struct copy_opts *o = rd->c->o;
	if (o->cancel && *o->cancel)
		return -ECANCELED;
	int r = pack_cache_read(rd->c->pc, rd->e->pack_path, rd->e->src_off + off, buf, len);
	if (r == -ENOENT && (r = relocate(rd->c, rd->e)) == 0)
		r = pack_cache_read(rd->c->pc, rd->e->pack_path, rd->e->src_off + off, buf, len);
	if (r == 0 && o->progress)
		o->progress(o->pctx, len);
	if (r < 0)
		rd->read_error = r;
	return r;
}

/* Copies one content into the packs, checking its bytes against its SHA-256 on the way. */
static int send_one(struct copy *c, struct centry *e)
{
	const struct cb_attr *a = &e->f->attr;
	struct pack_member m = {.path = e->member, .size = e->size, .mode = a->mode, .uid = a->uid,
				.gid = a->gid, .mtime_ns = a->mtime_ns};
	struct reader rd = {c, e, 0};
	unsigned char sha[32];
	int r = packer_add_reader(c->pk, &m, read_source, &rd, sha, NULL);
	if (r == 0 && memcmp(sha, e->sha, 32) != 0) {
		sb_printf(c->err, "file %s: its bytes in %s/%s do not match its SHA-256 (a damaged "
			  "pack; 'cassbackup check --read-data' tells more); nothing copied",
			  e->member, store_location(c->src), e->pack_path);
		return -EBADMSG;
	}
	if (r == -ECANCELED)
		sb_puts(c->err, "interrupted");
	else if (r < 0 && *packer_errmsg(c->pk))
		sb_printf(c->err, "%s; nothing copied", packer_errmsg(c->pk));
	else if (r < 0 && rd.read_error)
		sb_printf(c->err, "file %s: cannot copy it from %s/%s: %s; nothing copied", e->member,
			  store_location(c->src), e->pack_path,
			  r == -ENOMEM ? strerror(-r) : pack_cache_strerror(r));
	else if (r < 0) /* the source was read: writing the target's pack failed */
		sb_printf(c->err, "file %s: cannot write it into a new pack of %s: %s; nothing copied",
			  e->member, store_location(c->dst), r == -ENOMEM ? strerror(-r) : cb_backend_why(r));
	return r;
}

/* Writes every planned content into new packs (a table's own, or shared) and commits them. */
static int send_all(struct copy *c)
{
	int r = start_packer(c);
	for (size_t i = 0; r == 0 && i < c->n; i++) {
		if (i && c->v[i].group != c->v[i - 1].group && (r = packer_cut(c->pk)) < 0)
			break;
		r = send_one(c, &c->v[i]);
	}
	if (r == 0 && c->o->cancel && *c->o->cancel)
		r = -ECANCELED;
	r = r ?: packer_finish(c->pk);
	if (r == -ECANCELED && !c->err->len)
		sb_puts(c->err, "interrupted");
	else if (r < 0 && !c->err->len)
		sb_printf(c->err, "%s", *packer_errmsg(c->pk) ? packer_errmsg(c->pk) : strerror(-r));
	if (r == 0) {
		struct packer_stats st;
		packer_get_stats(c->pk, &st);
		c->st->pack_bytes = st.bytes;
	}
	return r;
}

/* --- commit ------------------------------------------------------------------------------ */

/* The commit point: backups/NAME/NODE.json at the target, the source's bytes, written once.
 * 0; 1 when another copy of this same backup wrote it first; -EEXIST (another backup), or
 * the write's error, with err. */
static int put_manifest(struct copy *c)
{
	int r = store_commit_manifest(c->dst, c->o->lease, c->dst_ref, c->doc, c->len, c->version, c->err);
	if (r != -EEXIST)
		return r;
	if (check_target(c) == 1)
		return 1; /* another copy of this same backup came first */
	c->err->len = 0;
	sb_printf(c->err, "another process wrote a backup of that name to %s meanwhile; nothing copied",
		  store_location(c->dst));
	return -EEXIST;
}

/* Takes the committed backup into the target's catalog. A failure loses nothing: the
 * manifest is written, and the next open of the target takes it in. */
static void register_backup(struct copy *c)
{
	catalog *cat = store_catalog(c->dst);
	if (catalog_begin(cat) < 0)
		return;
	if ((store_register_manifest(cat, c->m, true, c->len, c->version) ?:
	     catalog_commit(cat)) < 0)
		catalog_rollback(cat);
}

static void copy_free(struct copy *c)
{
	packer_free(c->pk); /* aborts a pack not committed */
	for (size_t i = 0; i < c->n; i++)
		drop_entry(&c->v[i]);
	free(c->v);
	manifest_free(c->m);
	free(c->doc);
}

static int plan(struct copy *c)
{
	int r = read_source_manifest(c);
	if (r < 0)
		return r;
	r = store_backup_ref(c->m->name, manifest_node_key(c->m), c->dst_ref);
	if (r < 0) {
		sb_printf(c->err, "backup %s: its node cannot name a manifest of the target", c->name);
		return -EBADMSG;
	}
	r = check_target(c);
	if (r != 0)
		return r;
	r = collect(c);
	if (r == 0) {
		unique_contents(c);
		r = plan_sends(c);
	}
	return r;
}

/* The backup's node and where its point-in-time window starts, for segments_copy. */
static void note_window(struct copy *c)
{
	snprintf(c->st->node, sizeof(c->st->node), "%s", c->m->node);
	snprintf(c->st->host_id, sizeof(c->st->host_id), "%s", c->m->host_id ? c->m->host_id : "");
	struct strbuf why = {0};
	/* a window not known (its full backup is not in the source): every segment of the node,
	 * rather than too few */
	if (commitlog_window_start(c->src, c->m, &c->st->window_start, &why) < 0)
		c->st->window_start = (struct commitlog_start){INT64_MIN, -1};
	sb_free(&why);
}

int backup_copy(struct store *src, struct store *dst, const char *name, const struct copy_opts *o,
		struct copy_stats *st, struct strbuf *err)
{
	*st = (struct copy_stats){0};
	struct copy c = {.src = src, .dst = dst, .name = name, .o = o, .st = st, .err = err};
	int r = plan(&c);
	if (r >= 0)
		note_window(&c);
	if (r == 1) {
		st->outcome = COPY_PRESENT;
		r = 0;
	} else if (r == 0 && o->dry_run) {
		st->outcome = COPY_PLANNED;
	} else if (r == 0) {
		if (o->planned)
			o->planned(o->pctx, st);
		/* the target's lease, held all along, before the commit point (copy.h) */
		r = (c.n ? send_all(&c) : 0) ?: store_lock_check(o->lease, err) ?: put_manifest(&c);
		if (r == 0)
			register_backup(&c);
		st->outcome = r == 1 ? COPY_PRESENT : COPY_COPIED; /* 1: another copy of it came first */
		r = r == 1 ? 0 : r;
	}
	if (r == -ENOMEM && !err->len)
		sb_puts(err, "out of memory");
	copy_free(&c);
	return r;
}

/* --- commitlog segments ------------------------------------------------------------------ */

/* Copies segment m unless the target holds it (counted in st either way). */
static int segment_copy_one(struct store *src, struct store *dst, const struct commitlog_meta *m,
			    const struct copy_opts *o, struct segment_copy_stats *st, struct strbuf *why)
{
	int r = commitlog_find(store_backend(dst), m, why);
	if (r == -ENOENT && o->dry_run) {
		r = COMMITLOG_STORED; /* would be */
	} else if (r == -ENOENT) {
		struct strbuf key = {0};
		void *data = NULL;
		r = commitlog_key(m->node, m->name, &key);
		r = r ?: commitlog_read(store_backend(src), key.buf, m, &data, why);
		if (r == -ENOENT)
			sb_puts(why, "deleted from the source meanwhile (by a prune there)");
		r = r ?: commitlog_put(store_backend(dst), m, data, m->size, o->level ? o->level : 3, why);
		free(data);
		sb_free(&key);
	}
	if (r == COMMITLOG_STORED) {
		st->sent++;
		st->bytes_sent += m->size;
	} else if (r == COMMITLOG_PRESENT) {
		st->present++;
		st->bytes_present += m->size;
	}
	return r < 0 ? r : 0;
}

/* A failure of one segment alone (damaged, deleted meanwhile, other bytes at the target): the
 * others are still worth copying. Any other (the backend's) would fail them all. */
static bool segment_alone(int r)
{
	return r == -EBADMSG || r == -EEXIST || r == -ENOENT;
}

/* l, with the segments of host_id under other node names than node appended. */
static int add_host_elsewhere(struct store *src, const char *node, const char *host_id,
			      struct commitlog_list *l, struct strbuf *err)
{
	if (!node || !host_id || !*host_id)
		return 0;
	struct commitlog_list moved;
	int r = commitlog_list_host_elsewhere(store_backend(src), node, host_id, &moved, err);
	if (r < 0)
		return r;
	struct commitlog_meta *v = realloc(l->v, (l->n + moved.n + 1) * sizeof(*v));
	if (v) {
		l->v = v;
		if (moved.n)
			memcpy(l->v + l->n, moved.v, moved.n * sizeof(*v));
		l->n += moved.n;
	}
	commitlog_list_free(&moved);
	return v ? 0 : -ENOMEM;
}

int segments_copy(struct store *src, struct store *dst, const char *node, const char *host_id,
		  const struct commitlog_start *from, const struct copy_opts *o,
		  struct segment_copy_stats *st, struct strbuf *err)
{
	*st = (struct segment_copy_stats){0};
	struct commitlog_list l;
	struct strbuf bad = {0}, why = {0};
	int r = commitlog_list(store_backend(src), node, false, &l, &bad);
	if (r == 0 && (r = add_host_elsewhere(src, node, host_id, &l, &bad)) < 0)
		commitlog_list_free(&l);
	if (r < 0) {
		sb_printf(err, "cannot read the commitlog segments of %s: %s", store_location(src),
			  bad.len ? bad.buf : cb_backend_why(r));
		sb_free(&bad);
		return r;
	}
	int first = 0; /* the first failure, said in err; the others are counted */
	unsigned failed = 0;
	/* one node's (with every node, from->ms is INT64_MIN: all of them are in) */
	struct commitlog_window w;
	commitlog_window_of(l.v, l.n, from, INT64_MAX, &w);
	for (size_t i = 0; i < l.n; i++) {
		if (!commitlog_in_window(&l.v[i], &w))
			continue;
		if (o->cancel && *o->cancel) {
			if (!failed)
				sb_puts(err, "interrupted");
			first = first ?: -ECANCELED;
			break;
		}
		why.len = 0;
		if (why.buf)
			why.buf[0] = '\0';
		int q = segment_copy_one(src, dst, &l.v[i], o, st, &why);
		if (q < 0 && !failed++)
			sb_printf(err, "commitlog segment %s/%s: %s", l.v[i].node, l.v[i].name,
				  why.len ? why.buf : cb_backend_why(q));
		first = first ?: q;
		if (q < 0 && !segment_alone(q))
			break;
	}
	if (failed > 1)
		sb_printf(err, " (and %u more that failed)", failed - 1);
	if (l.bad) { /* their metadata does not read: which window they are of is not known */
		sb_printf(err, "%s%u commitlog segment%s of %s cannot be read: %s", failed ? "; " : "",
			  l.bad, l.bad == 1 ? "" : "s", store_location(src), bad.buf ? bad.buf : "");
		first = first ?: -EBADMSG;
	}
	commitlog_list_free(&l);
	sb_free(&bad);
	sb_free(&why);
	return first;
}
