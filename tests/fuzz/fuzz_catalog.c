/* libFuzzer target: the rows of a catalog.db, as a damaged or hostile store may hold them.
 *
 * The input is a list of rows, inserted with raw SQL into a catalog freshly created with the
 * real schema (so any value of any SQLite type can land in any column: names with '..' or '/',
 * blobs or NULs where text belongs, negative or huge sizes, offsets and ids, rows whose parents
 * are missing or point at each other). Then every read the mount and the tools make goes over
 * it: the tree from the root (get, lookup, list, xattrs, blob, path of every node), the backup
 * listing and summaries, tables and files of every backup, packs, their blobs and usage, blob
 * locations. Properties: no crash, no sanitizer report, every name handed out is one path
 * component, every pack path is relative and made of such components, sizes and offsets lie in
 * 0..CB_SIZE_MAX, a listed node is found again by lookup and by inode with the same name, and
 * every refusal is -EUCLEAN with a reason or -ENOENT.
 *
 * Encoding, read front to back until the input ends: one byte picks the table (mod 8), then
 * one value per column of that table (id first). A value is a tag byte and its payload:
 *   tag % 6 == 0: a small integer, (tag >> 3) - 8       (ids that hit other rows)
 *   tag % 6 == 1: a little-endian int64 from 8 bytes
 *   tag % 6 == 2: text from the dictionary below, entry tag >> 3
 *   tag % 6 == 3: text, next byte n, then n bytes (NULs kept: SQLite stores them)
 *   tag % 6 == 4: a blob, next byte n, then n bytes
 *   tag % 6 == 5: NULL
 * tests/fuzz/corpus/catalog/ holds seeds made by tests/fuzz/make_catalog_corpus.py. */
#include "catalog.h"
#include "manifest.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define CHECK(x) ((x) ? (void)0 : abort())
#define MAX_NODES 2000 /* bounds the walk of one input */

struct in {
	const unsigned char *p, *end;
};

static const char *const dict[] = {
	"", ".", "..", "/", "a/b", "/etc/passwd", "../../x", "shop", "orders", ".orders_idx",
	"nb-1-big-Data.db", "packs/ab/0123.tar.zst", "packs/../x", "packs//x", "day1", "\xff\xfe",
	"0123456789abcdef0123456789abcdef", "x\ny", ".cassbackup", "packs/ab/", "a\\b", "~",
	"packs/ab/%s%n.tar.zst", "backups", "-1", "9223372036854775807", "1e400", "\xc0\xaf",
	"ks", "t", "f", "..."};

static const struct table {
	const char *name;
	const char *cols[18];
} tables[] = {
	{"packs", {"id", "path", "size", "frames", "created_ns", "table_sha256", "index_offset",
		   "index_size"}},
	{"blobs", {"id", "sha256", "size", "pack_id", "offset"}},
	{"blob_locs", {"blob_id", "pack_id", "offset"}},
	{"backups", {"id", "name", "cluster", "datacenter", "node", "host_id", "snapshot_tag",
		     "created_ns", "files", "bytes", "new_bytes", "stored_bytes", "cassandra_version",
		     "tokens", "root_mode", "root_uid", "root_gid", "manifest_size"}},
	{"keyspaces", {"id", "backup_id", "name", "mode", "uid", "gid", "mtime_ns"}},
	{"tables", {"id", "backup_id", "keyspace_id", "name", "table_id", "schema_cql", "mode", "uid",
		    "gid", "mtime_ns"}},
	{"dirs", {"id", "table_row", "name", "mode", "uid", "gid", "mtime_ns"}},
	{"files", {"id", "backup_id", "table_row", "dir_id", "name", "size", "mode", "uid", "gid",
		   "mtime_ns", "blob_id"}},
};

static int take(struct in *in)
{
	return in->p < in->end ? *in->p++ : -1;
}

/* Binds the next value of the input to parameter i; false when the input ended. */
static bool bind_value(struct in *in, sqlite3_stmt *st, int i)
{
	int tag = take(in);
	if (tag < 0)
		return false;
	int64_t v = 0;
	size_t n;
	switch (tag % 6) {
	case 0:
		sqlite3_bind_int64(st, i, (tag >> 3) - 8);
		return true;
	case 1:
		for (int k = 0; k < 8; k++)
			v |= (int64_t)((uint64_t)(take(in) & 0xff) << (8 * k));
		sqlite3_bind_int64(st, i, v);
		return true;
	case 2:
		sqlite3_bind_text(st, i, dict[(tag >> 3) % (sizeof(dict) / sizeof(dict[0]))], -1,
				  SQLITE_STATIC);
		return true;
	case 3:
	case 4:
		n = (size_t)(take(in) & 0xff);
		if (n > (size_t)(in->end - in->p))
			n = (size_t)(in->end - in->p);
		if (tag % 6 == 3)
			sqlite3_bind_text(st, i, (const char *)in->p, (int)n, SQLITE_TRANSIENT);
		else
			sqlite3_bind_blob(st, i, in->p, (int)n, SQLITE_TRANSIENT);
		in->p += n;
		return true;
	default:
		sqlite3_bind_null(st, i);
		return true;
	}
}

/* Inserts the rows the input describes, in one transaction; a row SQLite refuses (a
 * constraint, a type, rowids used up) is left out, as no writer could have stored it either. */
static void insert_rows(sqlite3 *db, struct in *in)
{
	int t;
	while ((t = take(in)) >= 0) {
		const struct table *tb = &tables[t % 8];
		char sql[512], cols[300] = "", qs[80] = "";
		int n = 0;
		for (; n < 18 && tb->cols[n]; n++) {
			snprintf(cols + strlen(cols), sizeof(cols) - strlen(cols), "%s%s", n ? "," : "",
				 tb->cols[n]);
			snprintf(qs + strlen(qs), sizeof(qs) - strlen(qs), "%s?", n ? "," : "");
		}
		snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO %s(%s) VALUES(%s)", tb->name, cols, qs);
		sqlite3_stmt *st;
		CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
		bool full = true;
		for (int i = 1; i <= n && full; i++)
			full = bind_value(in, st, i);
		if (full)
			sqlite3_step(st);
		sqlite3_finalize(st);
		if (sqlite3_get_autocommit(db)) /* an error (SQLITE_FULL: rowids used up) ended it */
			sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	}
}

/* Every component of a pack path is a name; no leading, trailing or doubled '/'. */
static void check_pack_path(const char *p)
{
	if (!*p)
		return; /* "": no pack holds the bytes */
	char comp[256];
	CHECK(strlen(p) < 256);
	for (;;) {
		size_t n = strcspn(p, "/");
		memcpy(comp, p, n);
		comp[n] = '\0';
		CHECK(name_is_component(comp));
		if (!p[n])
			return;
		p += n + 1;
	}
}

static void check_loc(const struct cb_blob_loc *l)
{
	check_pack_path(l->pack_path);
	CHECK(l->offset <= CB_SIZE_MAX && l->size <= CB_SIZE_MAX);
}

static void check_refusal(catalog *c, int r)
{
	if (r == -EUCLEAN)
		CHECK(strncmp(catalog_errmsg(c), "catalog row ", 12) == 0);
	else
		CHECK(r >= 0 || r == -ENOENT);
}

/* --- the tree ------------------------------------------------------------------------------ */

struct walk {
	catalog *c;
	uint64_t ino[MAX_NODES];
	size_t n;
};

static int collect_node(void *ctx, const struct cb_node *n)
{
	struct walk *w = ctx;
	CHECK(n->kind == CB_NODE_SPECIAL || name_is_component(n->name));
	CHECK(n->size <= CB_SIZE_MAX);
	CHECK(CB_INO_KIND(n->ino) == (int)n->kind);
	if (w->n < MAX_NODES)
		w->ino[w->n++] = n->ino;
	return 0;
}

static int check_xattr(void *ctx, const char *name, const char *value)
{
	(void)ctx;
	CHECK(strncmp(name, "user.cassbackup.", 16) == 0 && value);
	return 0;
}

/* A listed child: found again by name under its parent, and by inode, with the same name. */
static void check_child(catalog *c, uint64_t parent, uint64_t ino)
{
	struct cb_node n, again;
	CHECK(catalog_node_get(c, ino, &n) == 0);
	CHECK(catalog_node_lookup(c, parent, n.name, &again) == 0);
	CHECK(strcmp(again.name, n.name) == 0);
	check_refusal(c, catalog_node_xattrs(c, ino, check_xattr, NULL));
	if (n.kind != CB_NODE_FILE) {
		CHECK(catalog_node_lookup(c, ino, "..", &again) == -ENOENT);
		return;
	}
	struct cb_blob_loc loc;
	int r = catalog_file_blob(c, ino, &loc);
	check_refusal(c, r);
	if (r == 0) {
		check_loc(&loc);
		CHECK(loc.size == n.size);
	}
	char path[4096];
	r = catalog_file_path(c, ino, path, sizeof(path));
	check_refusal(c, r);
	CHECK(r < 0 || (path[0] != '/' && !strstr(path, "//")));
	CHECK(catalog_node_lookup(c, ino, "x", &again) == -ENOTDIR);
}

static void walk_tree(catalog *c)
{
	static struct walk w; /* large: not on the stack */
	w.c = c;
	w.n = 0;
	w.ino[w.n++] = CB_INO_ROOT;
	for (size_t i = 0; i < w.n; i++) {
		size_t before = w.n;
		int r = catalog_node_list(c, w.ino[i], collect_node, &w);
		CHECK(r == 0 || r == -ENOTDIR);
		for (size_t k = before; k < w.n; k++)
			check_child(c, w.ino[i], w.ino[k]);
	}
}

/* --- listings for the tools ---------------------------------------------------------------- */

static int check_file_row(void *ctx, const struct cb_file_row *f)
{
	(void)ctx;
	CHECK(!*f->dir || name_is_component(f->dir));
	CHECK(name_is_component(f->name) && f->size == f->loc.size);
	check_loc(&f->loc);
	return 0;
}

static int check_table_row(void *ctx, const struct cb_table_row *t)
{
	CHECK(name_is_component(t->keyspace) && name_is_component(t->table) && t->table_id);
	int64_t *rows = ctx;
	if (rows[0] < 64)
		rows[1 + rows[0]++] = t->row;
	return 0;
}

static int check_summary(void *ctx, const struct cb_backup_summary *b)
{
	(void)ctx;
	CHECK(b->name && b->node && b->cluster && b->datacenter && b->host_id && b->snapshot_tag &&
	      b->cassandra_version);
	if (b->invalid)
		return 0;
	CHECK(name_is_component(b->name));
	CHECK(b->files <= CB_SIZE_MAX && b->bytes <= CB_SIZE_MAX && b->unique_bytes <= CB_SIZE_MAX);
	return 0;
}

static void check_backup(catalog *c, int64_t id, const char *name)
{
	int r = catalog_get_backup(c, name, check_summary, NULL);
	check_refusal(c, r);
	int64_t rows[65] = {0};
	r = catalog_backup_tables(c, id, check_table_row, rows);
	check_refusal(c, r);
	for (int64_t i = 0; i < rows[0]; i++)
		check_refusal(c, catalog_table_files(c, rows[1 + i], check_file_row, NULL));
}

struct names {
	int64_t id[64];
	char name[64][256];
	int n;
};

static int collect_name(void *ctx, int64_t id, const char *name, uint64_t manifest_size,
			const char *manifest_version)
{
	(void)manifest_size;
	CHECK(manifest_version);
	struct names *nm = ctx;
	CHECK(name);
	if (nm->n < 64) {
		nm->id[nm->n] = id;
		snprintf(nm->name[nm->n++], 256, "%s", name);
	}
	return 0;
}

/* --- packs and blobs ----------------------------------------------------------------------- */

struct blobs {
	unsigned char sha[64][32];
	uint64_t size[64];
	int n;
};

static int check_pack_blob(void *ctx, const unsigned char sha256[32], uint64_t size, uint64_t off)
{
	struct blobs *b = ctx;
	CHECK(size <= CB_SIZE_MAX && off <= CB_SIZE_MAX);
	if (b->n < 64) {
		memcpy(b->sha[b->n], sha256, 32);
		b->size[b->n++] = size;
	}
	return 0;
}

static int check_pack_row(void *ctx, const struct cb_pack_row *p)
{
	(void)ctx;
	check_pack_path(p->path);
	CHECK(*p->path && p->size <= CB_SIZE_MAX && p->index_offset <= CB_SIZE_MAX);
	return 0;
}

static int check_usage(void *ctx, const struct cb_pack_usage *u)
{
	(void)ctx;
	check_pack_path(u->path);
	CHECK(u->used <= u->blobs && u->used_bytes <= u->blob_bytes);
	return 0;
}

static int check_live(void *ctx, const struct cb_live_blob *b)
{
	(void)ctx;
	if (!b->keyspace) /* a node file (catalog.h): no table, dir "" or the configuration's */
		CHECK(!b->table && !b->table_id && name_is_component(b->name) &&
		      (!*b->dir || !strcmp(b->dir, MANIFEST_CONF_DIR)));
	else
		CHECK(b->table && name_is_component(b->keyspace) && name_is_component(b->table) &&
		      name_is_component(b->name) && (!*b->dir || name_is_component(b->dir)));
	CHECK(b->size <= CB_SIZE_MAX && b->offset <= CB_SIZE_MAX);
	return 0;
}

static int collect_pack(void *ctx, int64_t id, const char *relpath, uint64_t size)
{
	(void)size;
	struct names *nm = ctx;
	CHECK(relpath);
	if (nm->n < 64)
		nm->id[nm->n++] = id;
	return 0;
}

static void check_packs(catalog *c)
{
	struct names packs = {0};
	CHECK(catalog_list_packs(c, collect_pack, &packs) == 0);
	check_refusal(c, catalog_pack_rows(c, check_pack_row, NULL));
	check_refusal(c, catalog_pack_usage(c, check_usage, NULL));
	for (int i = 0; i < packs.n; i++) {
		unsigned char sha[32];
		check_refusal(c, catalog_pack_sha(c, packs.id[i], sha));
		check_refusal(c, catalog_pack_live_blobs(c, packs.id[i], check_live, NULL));
		static struct blobs b;
		b.n = 0;
		check_refusal(c, catalog_pack_blobs(c, packs.id[i], check_pack_blob, &b));
		for (int k = 0; k < b.n; k++) {
			struct cb_blob_loc loc;
			int r = catalog_blob_location(c, b.sha[k], b.size[k], &loc);
			check_refusal(c, r);
			if (r == 1)
				check_loc(&loc);
		}
	}
}

static void exercise(catalog *c)
{
	walk_tree(c);
	CHECK(catalog_list_backups(c, check_summary, NULL) == 0);
	static struct names nm;
	nm.n = 0;
	CHECK(catalog_backup_names(c, collect_name, &nm) == 0);
	for (int i = 0; i < nm.n; i++)
		check_backup(c, nm.id[i], nm.name[i]);
	check_packs(c);
	struct cb_node n;
	CHECK(catalog_node_lookup(c, CB_INO_BACKUPS, "..", &n) == -ENOENT);
	CHECK(catalog_node_get(c, CB_INO(7, 1), &n) == -ENOENT);
}

/* --- one input ----------------------------------------------------------------------------- */

static char template_path[64], db_path[64];
static unsigned char *template_bytes;
static size_t template_size;

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(buf, 1, len, f) == len && fclose(f) == 0);
}

static void remove_db(const char *path)
{
	char p[80];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* A freshly created catalog, once per process: its bytes are copied for every input. */
static void make_template(void)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(template_path, sizeof(template_path), "%s/fuzzcat-%d.tpl", dir, (int)getpid());
	snprintf(db_path, sizeof(db_path), "%s/fuzzcat-%d.db", dir, (int)getpid());
	remove_db(template_path);
	catalog *c;
	CHECK(catalog_open(&c, template_path, CATALOG_CREATE) == 0);
	catalog_close(c);
	sqlite3 *db; /* fold the WAL into the file, so the file alone is the catalog */
	CHECK(sqlite3_open(template_path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	FILE *f = fopen(template_path, "rb");
	CHECK(f);
	struct stat sb;
	CHECK(fstat(fileno(f), &sb) == 0);
	template_size = (size_t)sb.st_size;
	CHECK((template_bytes = malloc(template_size)) != NULL);
	CHECK(fread(template_bytes, 1, template_size, f) == template_size);
	fclose(f);
	remove_db(template_path);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (!template_bytes)
		make_template();
	remove_db(db_path);
	write_file(db_path, template_bytes, template_size);
	sqlite3 *db;
	CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
	sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
	struct in in = {data, data + size};
	insert_rows(db, &in);
	CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);

	/* as the mount opens it, or (odd sizes) as the tools do */
	catalog *c;
	CHECK(catalog_open(&c, db_path, size % 2 ? 0 : CATALOG_READONLY | CATALOG_SMALL_CACHE) == 0);
	exercise(c);
	catalog_close(c);
	remove_db(db_path);
	return 0;
}
