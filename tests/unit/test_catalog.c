/* Unit tests for the catalog: schema, registration, the tree the mount walks, listings. */
#include "catalog.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"

struct names {
	char v[16][256];
	uint64_t ino[16];
	int n;
};

static int collect(void *ctx, const struct cb_node *n)
{
	struct names *s = ctx;
	if (s->n < 16) {
		snprintf(s->v[s->n], sizeof(s->v[0]), "%s", n->name);
		s->ino[s->n] = n->ino;
	}
	s->n++;
	return 0;
}

struct xa {
	char sha[80];
	char node[80];
	int n;
};

static int collect_xattr(void *ctx, const char *name, const char *value)
{
	struct xa *x = ctx;
	if (!strcmp(name, "user.cassbackup.sha256"))
		snprintf(x->sha, sizeof(x->sha), "%s", value);
	if (!strcmp(name, "user.cassbackup.node"))
		snprintf(x->node, sizeof(x->node), "%s", value);
	x->n++;
	return 0;
}

struct sums {
	uint64_t unique[4];
	int n;
};

static int collect_backup(void *ctx, const struct cb_backup_summary *b)
{
	struct sums *s = ctx;
	if (s->n < 4)
		s->unique[s->n] = b->unique_bytes;
	s->n++;
	return 0;
}

/* Registers a backup with one table holding files with the given blob ids. */
static int64_t add_backup(catalog *c, const char *name, int64_t pack, const int64_t *blobs,
			  const uint64_t *sizes, int nfiles)
{
	struct cb_dir_attr a = {.mode = 0755, .uid = 999, .gid = 999, .mtime_ns = 1000000000};
	struct cb_backup_info b = {.name = name, .node = "node-1", .created_ns = 5};
	(void)pack;
	int64_t bid, ks, tb, dir, fid;
	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_add_backup(c, &b, &bid) == 0);
	CHECK(catalog_add_keyspace(c, bid, "shop", &a, &ks) == 0);
	CHECK(catalog_add_table(c, bid, ks, "orders", "0123456789abcdef0123456789abcdef",
				"CREATE TABLE shop.orders (id int PRIMARY KEY);", &a, &tb) == 0);
	CHECK(catalog_add_dir(c, tb, ".orders_idx", &a, &dir) == 0);
	for (int i = 0; i < nfiles; i++) {
		char fname[64];
		snprintf(fname, sizeof(fname), "nb-%d-big-Data.db", i + 1);
		struct cb_file_info f = {
			.backup_id = bid, .table_row = tb, .dir_id = i == nfiles - 1 ? dir : 0,
			.name = fname, .size = sizes[i], .mode = 0644, .uid = 999, .gid = 999,
			.mtime_ns = 1234567890123456789, .blob_id = blobs[i],
		};
		CHECK(catalog_add_file(c, &f, &fid) == 0);
	}
	CHECK(catalog_commit(c) == 0);
	return bid;
}

static int count_tables(void *ctx, const struct cb_table_row *t)
{
	(void)t;
	(*(int *)ctx)++;
	return 0;
}

static int count_files(void *ctx, const struct cb_file_row *f)
{
	(void)f;
	(*(int *)ctx)++;
	return 0;
}

static void sql(const char *db, const char *q)
{
	sqlite3 *h;
	CHECK(sqlite3_open(db, &h) == SQLITE_OK);
	CHECK(sqlite3_exec(h, q, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(h);
}

/* Rows a hostile or damaged catalog may hold: the tree hides each bad row alone; the other
 * readers fail with -EUCLEAN and name the row. day1's rows come first (ids 1), day2's next. */
static void check_invalid_rows(const char *db)
{
	catalog *c;
	struct names n = {0};
	struct cb_node node;
	int k = 0;
	sql(db, "UPDATE backups SET name = 'x/../y', ref = 'x/../y' WHERE name = 'day1';"
		"UPDATE keyspaces SET name = '..' WHERE id = 2;"
		"UPDATE files SET size = 4611686018427387904 WHERE name = 'nb-1-big-Data.db'"
		" AND backup_id = 2;");
	CHECK(catalog_open(&c, db, CATALOG_READONLY) == 0);
	CHECK(catalog_node_list(c, CB_INO_BACKUPS, collect, &n) == 0);
	CHECK(n.n == 1 && !strcmp(n.v[0], "day2"));
	CHECK(catalog_node_get(c, CB_INO(CB_NODE_BACKUP, 1), &node) == -ENOENT);
	n.n = 0;
	CHECK(catalog_node_list(c, n.ino[0], collect, &n) == 0 && n.n == 0); /* keyspace '..' */
	CHECK(catalog_node_get(c, CB_INO(CB_NODE_KEYSPACE, 2), &node) == -ENOENT);
	CHECK(catalog_get_backup(c, "x/../y", collect_backup, &(struct sums){0}) == -EUCLEAN);
	CHECK(!strcmp(catalog_errmsg(c), "catalog row 1: invalid backup name"));
	CHECK(catalog_backup_tables(c, 2, count_tables, &k) == -EUCLEAN && k == 0);
	CHECK(!strcmp(catalog_errmsg(c), "catalog row 2: invalid keyspace name"));
	CHECK(catalog_backup_tables(c, 1, count_tables, &k) == 0 && k == 1);
	k = 0;
	CHECK(catalog_table_files(c, 2, count_files, &k) == -EUCLEAN);
	CHECK(strstr(catalog_errmsg(c), ": file size out of range") != NULL);
	CHECK(catalog_table_files(c, 1, count_files, &k) == 0 && k == 3);
	/* the listing goes on past a bad row, flagging it */
	struct sums s = {0};
	CHECK(catalog_list_backups(c, collect_backup, &s) == 0 && s.n == 2);
	catalog_close(c);
	sql(db, "UPDATE blobs SET size = -1 WHERE id = 1");
	CHECK(catalog_open(&c, db, CATALOG_READONLY) == 0);
	CHECK(catalog_table_files(c, 1, count_files, &k) == -EUCLEAN);
	CHECK(strstr(catalog_errmsg(c), "blob offset or size out of range") != NULL);
	catalog_close(c);
}

static int count_invalid(void *ctx, const struct cb_backup_summary *b)
{
	if (b->invalid)
		(*(int *)ctx)++;
	return 0;
}

/* Names stored as something other than plain text (found by fuzz_catalog): a blob, or text
 * holding a NUL. Read as C strings they would be cut short to another name ("a\0b" to "a":
 * a restore writing two files to one name) and a lookup by name could never find them, so
 * each is an invalid row like any other. */
/* A new catalog at root/file with backups day1 and day2, each with one table holding a file
 * and an index directory holding another (rows: backups, keyspaces, tables, dirs 1 and 2;
 * files 1, 2 and 3, 4). */
static void two_backups(const char *root, const char *file, struct strbuf *path)
{
	sb_printf(path, "%s/%s", root, file);
	catalog *c;
	CHECK(catalog_open(&c, path->buf, CATALOG_CREATE) == 0);
	unsigned char sha[32];
	memset(sha, 7, 32);
	int64_t pack, blob;
	struct cb_pack_info pinfo = {.path = "packs/aa/aa.tar.zst", .size = 1000, .frames = 1};
	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_add_pack(c, &pinfo, &pack) == 0);
	CHECK(catalog_add_blob(c, sha, 10, pack, 512, &blob) == 0);
	CHECK(catalog_commit(c) == 0);
	int64_t blobs[] = {blob, blob};
	uint64_t sizes[] = {10, 10};
	add_backup(c, "day1", pack, blobs, sizes, 2);
	add_backup(c, "day2", pack, blobs, sizes, 2);
	catalog_close(c);
}

static void check_names_not_text(const char *root)
{
	struct strbuf path = {0};
	catalog *c;
	two_backups(root, "names.db", &path);
	sql(path.buf, "UPDATE backups SET name = CAST(name AS BLOB) WHERE name = 'day1';"
		      "UPDATE files SET name = 'nb-2-big-Data.db' || char(0) || '.x'"
		      " WHERE backup_id = 2 AND dir_id = 0;");
	CHECK(catalog_open(&c, path.buf, CATALOG_READONLY) == 0);
	struct names n = {0};
	struct cb_node node;
	CHECK(catalog_node_list(c, CB_INO_BACKUPS, collect, &n) == 0);
	CHECK(n.n == 1 && !strcmp(n.v[0], "day2"));
	CHECK(catalog_node_get(c, CB_INO(CB_NODE_BACKUP, 1), &node) == -ENOENT);
	int invalid = 0;
	CHECK(catalog_list_backups(c, count_invalid, &invalid) == 0 && invalid == 1);
	CHECK(catalog_node_get(c, CB_INO(CB_NODE_FILE, 3), &node) == -ENOENT);
	n.n = 0; /* day2's table: the index directory only, its file named with a NUL hidden */
	CHECK(catalog_node_list(c, CB_INO(CB_NODE_TABLE, 2), collect, &n) == 0);
	CHECK(n.n == 1 && !strcmp(n.v[0], ".orders_idx"));
	int k = 0;
	CHECK(catalog_table_files(c, 2, count_files, &k) == -EUCLEAN && k == 0);
	CHECK(!strcmp(catalog_errmsg(c), "catalog row 3: invalid file name"));
	char p[4096];
	CHECK(catalog_file_path(c, CB_INO(CB_NODE_FILE, 3), p, sizeof(p)) == -EUCLEAN);
	catalog_close(c);
	sb_free(&path);
}

/* Row ids an inode number cannot hold (found by fuzz_catalog): a negative one, and one past
 * 2^61 whose inode wraps to another row's. Each hides itself from the tree; before, day2's
 * keyspace was listed with the inode of day1's, and a backup with id -8 was listed but could
 * not be got by its inode. */
static void check_row_ids(const char *root)
{
	struct strbuf path = {0};
	catalog *c;
	two_backups(root, "ids.db", &path);
	sql(path.buf, "UPDATE keyspaces SET id = 2305843009213693953 WHERE id = 2;"
		      "UPDATE tables SET keyspace_id = 2305843009213693953 WHERE keyspace_id = 2;"
		      "UPDATE backups SET id = -8 WHERE id = 1;"
		      "UPDATE keyspaces SET backup_id = -8 WHERE backup_id = 1;");
	CHECK(catalog_open(&c, path.buf, CATALOG_READONLY) == 0);
	struct names n = {0};
	CHECK(catalog_node_list(c, CB_INO_BACKUPS, collect, &n) == 0);
	CHECK(n.n == 1 && !strcmp(n.v[0], "day2") && n.ino[0] == CB_INO(CB_NODE_BACKUP, 2));
	n.n = 0;
	CHECK(catalog_node_list(c, CB_INO(CB_NODE_BACKUP, 2), collect, &n) == 0 && n.n == 0);
	struct cb_node node;
	CHECK(catalog_node_lookup(c, CB_INO(CB_NODE_BACKUP, 2), "shop", &node) == -ENOENT);
	catalog_close(c);
	sb_free(&path);
}

/* The rows of backup `name` made at created_ns: a keyspace, a table, an index directory and
 * two files, nb-1 of content 1 and nb-2 of content `second` in the index directory; their
 * ids in ids[0..5] (backup, keyspace, table, dir, nb-1, nb-2). Within the caller's
 * transaction, after the pack and blobs. */
static void add_tree(catalog *c, const char *name, int64_t created_ns, unsigned char second,
		     int64_t ids[6])
{
	struct cb_dir_attr a = {.mode = 0755, .mtime_ns = 1};
	struct cb_backup_info b = {.name = name, .node = "node-1", .created_ns = created_ns};
	unsigned char sha[32];
	int64_t pack, blob[2];
	char pack_path[64];
	snprintf(pack_path, sizeof(pack_path), "packs/bb/%s.tar.zst", name);
	struct cb_pack_info pinfo = {.path = pack_path, .size = 1000, .frames = 1};
	CHECK(catalog_add_pack(c, &pinfo, &pack) == 0);
	for (int i = 0; i < 2; i++) {
		memset(sha, i ? second : 1, sizeof(sha));
		CHECK(catalog_add_blob(c, sha, 10, pack, 512 * i, &blob[i]) == 0);
	}
	CHECK(catalog_add_backup(c, &b, &ids[0]) == 0);
	CHECK(catalog_add_keyspace(c, ids[0], "shop", &a, &ids[1]) == 0);
	CHECK(catalog_add_table(c, ids[0], ids[1], "orders", "0123456789abcdef0123456789abcdef", NULL,
				&a, &ids[2]) == 0);
	CHECK(catalog_add_dir(c, ids[2], ".orders_idx", &a, &ids[3]) == 0);
	for (int i = 0; i < 2; i++) {
		struct cb_file_info f = {.backup_id = ids[0], .table_row = ids[2], .dir_id = i ? ids[3] : 0,
					 .name = i ? "nb-2-big-Data.db" : "nb-1-big-Data.db", .size = 10,
					 .mode = 0644, .blob_id = blob[i]};
		CHECK(catalog_add_file(c, &f, &ids[4 + i]) == 0);
	}
}

/* A rebuild in place (catalog_clear, then the rows again in its transaction) gives each node
 * that is the same node its old id; a file of other content, and every node of a backup made
 * again at another time, get ids never used before; the kept ids end with the transaction. */
static void check_clear_keeps_ids(const char *root)
{
	struct strbuf path = {0};
	sb_printf(&path, "%s/kept.db", root);
	catalog *c;
	int64_t first[6], again[6], other[6], later[6];
	CHECK(catalog_open(&c, path.buf, CATALOG_CREATE) == 0);
	CHECK(catalog_begin(c) == 0);
	add_tree(c, "k", 5, 2, first);
	CHECK(catalog_commit(c) == 0);

	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_clear(c, true) == 0);
	add_tree(c, "k", 5, 3, again); /* nb-2 of other content */
	CHECK(catalog_commit(c) == 0);
	for (int i = 0; i < 5; i++)
		CHECK(again[i] == first[i]);
	CHECK(again[5] > first[5]);

	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_clear(c, true) == 0);
	add_tree(c, "k", 6, 3, other); /* forgotten and made again */
	catalog_rollback(c);           /* and the rollback keeps the rows as they were */
	struct cb_node n;
	CHECK(catalog_node_get(c, CB_INO(CB_NODE_FILE, again[5]), &n) == 0);
	CHECK(other[0] > again[0] && other[1] > again[1] && other[2] > again[2]);
	CHECK(other[3] > again[3] && other[4] > again[5] && other[5] > other[4]);

	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_clear(c, true) == 0);
	CHECK(catalog_commit(c) == 0); /* nothing kept after the transaction */
	CHECK(catalog_begin(c) == 0);
	add_tree(c, "k", 5, 3, later);
	CHECK(catalog_commit(c) == 0);
	CHECK(later[0] > again[0] && later[4] > again[5]);

	/* the id sequences lost (damaged): new rows are still numbered after the kept ones */
	sql(path.buf, "DELETE FROM sqlite_sequence");
	int64_t kept[6], fresh[6];
	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_clear(c, true) == 0);
	for (int n = 0; n < 8; n++) { /* taken in before k (as "a..." before "k"), numbered first */
		char name[8];
		snprintf(name, sizeof(name), "a%d", n);
		add_tree(c, name, 5, 3, fresh);
		for (int i = 0; i < 6; i++)
			CHECK(fresh[i] > later[i < 4 ? i : 5]);
	}
	add_tree(c, "k", 5, 3, kept);
	CHECK(catalog_commit(c) == 0);
	for (int i = 0; i < 6; i++)
		CHECK(kept[i] == later[i]);

	/* a row the old catalog had wrong (its mode planted) is another node: a new id */
	sql(path.buf, "UPDATE files SET mode = 438 WHERE name = 'nb-1-big-Data.db'");
	CHECK(catalog_begin(c) == 0);
	CHECK(catalog_clear(c, true) == 0);
	add_tree(c, "k", 5, 3, again);
	CHECK(catalog_commit(c) == 0);
	CHECK(again[3] == kept[3] && again[5] == kept[5] && again[4] > kept[5]);
	catalog_close(c);
	sb_free(&path);
}

int main(void)
{
	char root[] = "/tmp/cb-catalog-XXXXXX";
	CHECK(mkdtemp(root) != NULL);
	struct strbuf store = {0}, db = {0};
	sb_printf(&store, "%s/store", root);
	sb_printf(&db, "%s/catalog.db", store.buf);

	catalog *c = NULL;
	struct store *st = NULL;
	struct strbuf err = {0};
	CHECK(store_open(store.buf, NULL, &st, &err) == -ENOENT && !st);
	CHECK(store_init(store.buf, NULL, &err) == 0);
	CHECK(store_init(store.buf, NULL, &err) == -EEXIST); /* not empty any more */
	sb_free(&err);
	/* The catalog alone: rows are added by hand here (the store's reconcile would drop
	 * backups that have no manifest). */
	CHECK(catalog_open(&c, db.buf, 0) == 0);

	unsigned char sha1[32], sha2[32], sha3[32];
	memset(sha1, 1, 32);
	memset(sha2, 2, 32);
	memset(sha3, 3, 32);
	int64_t pack, b1, b2, b3, again, found;
	CHECK(catalog_begin(c) == 0);
	struct cb_pack_info pinfo = {.path = "packs/aa/aa.tar.zst", .size = 1000, .frames = 3,
				     .created_ns = 1};
	CHECK(catalog_add_pack(c, &pinfo, &pack) == 0);
	CHECK(catalog_add_blob(c, sha1, 100, pack, 1536, &b1) == 0);
	CHECK(catalog_add_blob(c, sha2, 200, pack, 4096, &b2) == 0);
	CHECK(catalog_add_blob(c, sha3, 300, pack, 9000, &b3) == 0);
	CHECK(catalog_add_blob(c, sha1, 100, pack, 77, &again) == 0 && again == b1); /* dedup */
	CHECK(catalog_commit(c) == 0);
	CHECK(catalog_find_blob(c, sha2, 200, &found) == 1 && found == b2);
	CHECK(catalog_find_blob(c, sha2, 201, &found) == 0);
	CHECK(catalog_blob_size_exists(c, 300) == 1 && catalog_blob_size_exists(c, 301) == 0);

	int64_t blobs1[] = {b1, b2, b3};
	uint64_t sizes1[] = {100, 200, 300};
	int64_t id1 = add_backup(c, "day1", pack, blobs1, sizes1, 3);
	int64_t blobs2[] = {b1, b2};
	uint64_t sizes2[] = {100, 200};
	add_backup(c, "day2", pack, blobs2, sizes2, 2);
	CHECK(catalog_backup_exists(c, "day1", NULL) == 1 && catalog_backup_exists(c, "nope", NULL) == 0);
	/* a second backup of the same name and node is refused by the schema, and rolled back */
	CHECK(catalog_begin(c) == 0);
	struct cb_backup_info dup = {.name = "day1"};
	CHECK(catalog_add_backup(c, &dup, &found) == -EEXIST);
	catalog_rollback(c);
	/* another node's backup of the name is one more node of the cluster backup day1 */
	CHECK(catalog_begin(c) == 0);
	struct cb_backup_info node2 = {.name = "day1", .node_key = "n2", .nested = true};
	CHECK(catalog_add_backup(c, &node2, &found) == 0);
	CHECK(catalog_backup_exists(c, "day1", "n2") == 1 && catalog_backup_exists(c, "day1", "n3") == 0);
	CHECK(catalog_add_backup(c, &node2, &found) == -EEXIST);
	catalog_rollback(c);

	/* day1 alone holds blob 3 (300 bytes); day2 holds nothing alone */
	struct sums s = {0};
	CHECK(catalog_list_backups(c, collect_backup, &s) == 0);
	CHECK(s.n == 2 && s.unique[0] == 300 && s.unique[1] == 0);

	/* the tree: a read-only handle, as the mount uses */
	catalog *r;
	CHECK(catalog_open(&r, db.buf, CATALOG_READONLY) == 0);
	struct names n = {0};
	CHECK(catalog_node_list(r, CB_INO_ROOT, collect, &n) == 0);
	CHECK(n.n == 2 && !strcmp(n.v[0], "backups") && n.ino[0] == CB_INO_BACKUPS);
	CHECK(!strcmp(n.v[1], "clusters") && n.ino[1] == CB_INO_CLUSTERS);
	n.n = 0;
	CHECK(catalog_node_list(r, CB_INO_BACKUPS, collect, &n) == 0);
	CHECK(n.n == 2 && !strcmp(n.v[0], "day1") && !strcmp(n.v[1], "day2"));
	CHECK(n.ino[0] == CB_INO(CB_NODE_BACKUP, id1));

	struct cb_node node, tnode, fnode;
	CHECK(catalog_node_lookup(r, CB_INO_BACKUPS, "day1", &node) == 0 && node.kind == CB_NODE_BACKUP);
	CHECK(S_ISDIR(node.mode) && node.uid == CB_OWNER_UNSET);
	CHECK(catalog_node_lookup(r, CB_INO_BACKUPS, "day9", &node) == -ENOENT);
	CHECK(catalog_node_lookup(r, CB_INO(CB_NODE_BACKUP, id1), "shop", &node) == 0);
	CHECK(catalog_node_lookup(r, node.ino, "orders", &tnode) == 0 && tnode.kind == CB_NODE_TABLE);
	CHECK(tnode.uid == 999 && (tnode.mode & 07777) == 0755 && S_ISDIR(tnode.mode));
	n.n = 0;
	CHECK(catalog_node_list(r, tnode.ino, collect, &n) == 0);
	CHECK(n.n == 3 && !strcmp(n.v[0], ".orders_idx") && !strcmp(n.v[1], "nb-1-big-Data.db"));
	CHECK(catalog_node_lookup(r, tnode.ino, "nb-2-big-Data.db", &fnode) == 0);
	CHECK(fnode.kind == CB_NODE_FILE && S_ISREG(fnode.mode) && fnode.size == 200);
	CHECK(fnode.mtime_ns == 1234567890123456789);
	CHECK(catalog_node_lookup(r, fnode.ino, "x", &node) == -ENOTDIR);
	CHECK(catalog_node_get(r, fnode.ino, &node) == 0 && !strcmp(node.name, "nb-2-big-Data.db"));
	CHECK(catalog_node_get(r, CB_INO(CB_NODE_FILE, 999999), &node) == -ENOENT);
	/* the index subdirectory holds the last file */
	CHECK(catalog_node_lookup(r, tnode.ino, ".orders_idx", &node) == 0 && node.kind == CB_NODE_DIR);
	CHECK(catalog_node_lookup(r, node.ino, "nb-3-big-Data.db", &fnode) == 0 && fnode.size == 300);
	CHECK(catalog_node_lookup(r, tnode.ino, "nb-3-big-Data.db", &node) == -ENOENT);

	struct cb_blob_loc loc;
	CHECK(catalog_file_blob(r, fnode.ino, &loc) == 0);
	CHECK(loc.pack_id == pack && loc.offset == 9000 && loc.size == 300);
	CHECK(!strcmp(loc.pack_path, "packs/aa/aa.tar.zst") && !memcmp(loc.sha256, sha3, 32));
	CHECK(catalog_file_blob(r, tnode.ino, &loc) == -ENOENT);

	struct xa x = {0};
	CHECK(catalog_node_xattrs(r, fnode.ino, collect_xattr, &x) == 0);
	CHECK(x.n == 1 && !strcmp(x.sha, "0303030303030303030303030303030303030303030303030303030303030303"));
	x = (struct xa){0};
	CHECK(catalog_node_xattrs(r, CB_INO(CB_NODE_BACKUP, id1), collect_xattr, &x) == 0);
	CHECK(!strcmp(x.node, "node-1") && x.n >= 5);
	/* writes through a read-only handle fail */
	struct cb_pack_info other_pack = {.path = "packs/bb/bb.tar.zst", .size = 1, .frames = 1};
	CHECK(catalog_add_pack(r, &other_pack, &found) == -EROFS);
	catalog_close(r);
	catalog_close(c);

	/* a file that is not a catalog */
	struct strbuf junk = {0};
	sb_printf(&junk, "%s/junk.db", root);
	FILE *f = fopen(junk.buf, "w");
	fputs("definitely not sqlite, but long enough to look like a header..........", f);
	fclose(f);
	CHECK(catalog_open(&c, junk.buf, 0) == -EMEDIUMTYPE && c == NULL);
	unlink(junk.buf);
	/* an SQLite database of someone else's: valid SQLite, no cassbackup format */
	sqlite3 *other;
	CHECK(sqlite3_open(junk.buf, &other) == SQLITE_OK);
	CHECK(sqlite3_exec(other, "CREATE TABLE meta(key TEXT, value TEXT);"
			   "INSERT INTO meta VALUES('format', 'someone-else-1');"
			   "CREATE TABLE photos(id INTEGER PRIMARY KEY);", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(other);
	CHECK(catalog_open(&c, junk.buf, 0) == -EMEDIUMTYPE && c == NULL);
	CHECK(catalog_open(&c, junk.buf, CATALOG_READONLY) == -EMEDIUMTYPE && c == NULL);
	unlink(junk.buf);
	CHECK(sqlite3_open(junk.buf, &other) == SQLITE_OK); /* and one without a meta table */
	CHECK(sqlite3_exec(other, "CREATE TABLE t(x);", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(other);
	CHECK(catalog_open(&c, junk.buf, 0) == -EMEDIUMTYPE && c == NULL);
	unlink(junk.buf);
	CHECK(catalog_open(&c, junk.buf, CATALOG_CREATE) == 0); /* fresh catalog is ours */
	catalog_close(c);

	check_invalid_rows(db.buf);
	check_names_not_text(root);
	check_row_ids(root);
	check_clear_keeps_ids(root);

	sb_free(&junk);
	sb_free(&db);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		failures++;
	sb_free(&store);
	if (failures) {
		fprintf(stderr, "test_catalog: %d checks failed\n", failures);
		return 1;
	}
	printf("test_catalog: all checks passed\n");
	return 0;
}
