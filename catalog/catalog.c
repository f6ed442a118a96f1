/* catalog.c: see catalog.h. */
#include "catalog.h"
#include "hash.h"
#include "manifest.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 4: incrementals' base and previous; the node's own files (catalog.h). 5: backups' scope
 * and clears_links. 6: manifests' versions (a replaced one is read again) and snapshot times.
 * 7: host ids canonical (store_register_manifest) */
#define CATALOG_FORMAT "cassbackup-catalog-7"
/* Pages a CATALOG_SMALL_CACHE connection keeps (SQLite's default is 2 MiB per connection). */
#define CATALOG_SMALL_CACHE_KIB "256"
#define CB_SIZE_MAX_SQL "4611686018427387903" /* CB_SIZE_MAX */
_Static_assert(CB_SIZE_MAX == 4611686018427387903, "CB_SIZE_MAX_SQL");

/* Listing /backups reads only this index: dense pages, even when the rows of thousands of
 * backups are scattered over a large catalog. */
#define BACKUPS_BY_NAME \
	"CREATE INDEX IF NOT EXISTS backups_by_name ON backups(name, created_ns, root_mode, root_uid, root_gid)"

static const char schema_sql[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE packs(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE,"
	"  size INTEGER NOT NULL, frames INTEGER NOT NULL, created_ns INTEGER NOT NULL,"
	"  table_sha256 BLOB NOT NULL, index_offset INTEGER NOT NULL, index_size INTEGER NOT NULL);"
	/* A blob is a content; pack_id/offset say where it is read from (NULL: no pack the
	 * catalog knows holds it, and its files cannot be read); blob_locs lists every pack that
	 * holds it, so a blob repacked elsewhere is found again when its pack goes. */
	"CREATE TABLE blobs(id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 BLOB NOT NULL,"
	"  size INTEGER NOT NULL, pack_id INTEGER REFERENCES packs(id),"
	"  offset INTEGER, UNIQUE(sha256, size));"
	"CREATE INDEX blobs_size ON blobs(size);"
	"CREATE INDEX blobs_pack ON blobs(pack_id);"
	"CREATE TABLE blob_locs(blob_id INTEGER NOT NULL REFERENCES blobs(id),"
	"  pack_id INTEGER NOT NULL REFERENCES packs(id), offset INTEGER NOT NULL,"
	"  PRIMARY KEY(blob_id, pack_id)) WITHOUT ROWID;"
	"CREATE INDEX blob_locs_pack ON blob_locs(pack_id);"
	/* A backup is one node's: ref is its key below backups/ ("NAME/NODE" or, in the older
	 * layout, "NAME"), node_key the node it is of (host id, else node name); one node has one
	 * backup of a name. ring is the JSON array manifest_ring_write makes. */
	"CREATE TABLE backups(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
	"  ref TEXT NOT NULL UNIQUE, node_key TEXT NOT NULL, rack TEXT NOT NULL,"
	"  schema_version TEXT NOT NULL, ring TEXT NOT NULL,"
	"  cluster TEXT NOT NULL, datacenter TEXT NOT NULL, node TEXT NOT NULL,"
	"  host_id TEXT NOT NULL, snapshot_tag TEXT NOT NULL, created_ns INTEGER NOT NULL,"
	"  files INTEGER NOT NULL, bytes INTEGER NOT NULL, new_bytes INTEGER NOT NULL,"
	"  stored_bytes INTEGER NOT NULL, cassandra_version TEXT NOT NULL, tokens TEXT NOT NULL,"
	"  root_mode INTEGER NOT NULL, root_uid INTEGER NOT NULL, root_gid INTEGER NOT NULL,"
	"  manifest_size INTEGER NOT NULL, base TEXT NOT NULL, previous TEXT NOT NULL,"
	"  scope TEXT NOT NULL, clears_links INTEGER NOT NULL, manifest_version TEXT NOT NULL,"
	"  snapshot_ns INTEGER NOT NULL,"
	"  UNIQUE(name, node_key));"
	BACKUPS_BY_NAME ";"
	"CREATE TABLE keyspaces(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  backup_id INTEGER NOT NULL REFERENCES backups(id), name TEXT NOT NULL,"
	"  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	"  mtime_ns INTEGER NOT NULL, UNIQUE(backup_id, name));"
	"CREATE TABLE tables(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  backup_id INTEGER NOT NULL REFERENCES backups(id),"
	"  keyspace_id INTEGER NOT NULL REFERENCES keyspaces(id), name TEXT NOT NULL,"
	"  table_id TEXT NOT NULL, schema_cql TEXT, mode INTEGER NOT NULL, uid INTEGER NOT NULL,"
	"  gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, UNIQUE(keyspace_id, name));"
	"CREATE INDEX tables_backup ON tables(backup_id);"
	"CREATE TABLE dirs(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  table_row INTEGER NOT NULL REFERENCES tables(id), name TEXT NOT NULL,"
	"  mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
	"  mtime_ns INTEGER NOT NULL, UNIQUE(table_row, name));"
	"CREATE TABLE files(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  backup_id INTEGER NOT NULL REFERENCES backups(id),"
	"  table_row INTEGER NOT NULL REFERENCES tables(id), dir_id INTEGER NOT NULL,"
	"  name TEXT NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL,"
	"  gid INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
	"  blob_id INTEGER NOT NULL REFERENCES blobs(id), UNIQUE(table_row, dir_id, name));"
	"CREATE INDEX files_backup_blob ON files(backup_id, blob_id);"
	"CREATE INDEX files_blob_backup ON files(blob_id, backup_id);"
	"INSERT INTO meta(key, value) VALUES('format', '" CATALOG_FORMAT "');";

/* Every catalog file has an identity of its own, made at random with it (catalogs from before
 * gain one at their next writable open): a program that holds a catalog open can tell a
 * catalog made anew at the same path (deleted, damaged and set aside) from the one it knows,
 * whose row ids, never reused (AUTOINCREMENT), name the same rows for the file's life. */
#define IDENTITY_SQL "INSERT OR IGNORE INTO meta(key, value) VALUES('id', lower(hex(randomblob(16))))" 

/* The ids a rebuild in place keeps (catalog_clear), one table per kind of node, each keyed
 * by what makes a node the same node, as the mount showed it: a backup by its ref, its
 * manifest (size, version, time made) and its directory's protection, so one forgotten and
 * made again under its name is another; a keyspace, table or directory by its parent's (kept)
 * id, its name (a table by its table id too) and its attributes; a file by its parent's ids,
 * its name, attributes and content. A row the old catalog had wrong (damaged, planted) is not
 * the same node, and gets a new id, so what a running mount cached of it is looked up again.
 * The parent's new row has its old id only when kept, and a row's new id is never an old one
 * (AUTOINCREMENT, its sequence raised to the old ids first: RAISE_SEQUENCES), so a node not
 * kept matches nothing below it either. An id the tree does not number (damaged) is not
 * kept. Made on every connection (ST_ADD_* read them), empty but within a rebuild's
 * transaction. */
#define KEPT_ATTRS "mode INTEGER, uid INTEGER, gid INTEGER, mtime_ns INTEGER"
#define KEPT_SQL                                                                                  \
	"CREATE TEMP TABLE IF NOT EXISTS kept_backups(ref TEXT, created_ns INTEGER,"              \
	"  manifest_size INTEGER, manifest_version TEXT, root_mode INTEGER, root_uid INTEGER,"     \
	"  root_gid INTEGER, id INTEGER, PRIMARY KEY(ref, created_ns, manifest_size,"              \
	"  manifest_version, root_mode, root_uid, root_gid)) WITHOUT ROWID;"                       \
	"CREATE TEMP TABLE IF NOT EXISTS kept_keyspaces(backup_id INTEGER, name TEXT, " KEPT_ATTRS \
	", id INTEGER, PRIMARY KEY(backup_id, name, mode, uid, gid, mtime_ns)) WITHOUT ROWID;"     \
	"CREATE TEMP TABLE IF NOT EXISTS kept_tables(keyspace_id INTEGER, name TEXT,"              \
	"  table_id TEXT, " KEPT_ATTRS ", id INTEGER,"                                             \
	"  PRIMARY KEY(keyspace_id, name, table_id, mode, uid, gid, mtime_ns)) WITHOUT ROWID;"     \
	"CREATE TEMP TABLE IF NOT EXISTS kept_dirs(table_row INTEGER, name TEXT, " KEPT_ATTRS      \
	", id INTEGER, PRIMARY KEY(table_row, name, mode, uid, gid, mtime_ns)) WITHOUT ROWID;"     \
	"CREATE TEMP TABLE IF NOT EXISTS kept_files(table_row INTEGER, dir_id INTEGER, name TEXT,"\
	"  size INTEGER, sha256 BLOB, " KEPT_ATTRS ", id INTEGER, PRIMARY KEY(table_row, dir_id,"  \
	"  name, size, sha256, mode, uid, gid, mtime_ns)) WITHOUT ROWID;"
#define FORGET_KEPT_SQL                                                                           \
	"DELETE FROM temp.kept_backups; DELETE FROM temp.kept_keyspaces;"                         \
	" DELETE FROM temp.kept_tables; DELETE FROM temp.kept_dirs; DELETE FROM temp.kept_files;"
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
/* An id the tree numbers (CB_ROW_MAX), in SQL */
#define SHOWN_ID "id < (1 << " STRINGIFY(CB_ROW_BITS) ")"
/* Table t's id sequence at least its greatest id the tree numbers: a sequence row lost
 * (damaged) would have new rows numbered from 1, onto ids kept or handed out before; one
 * damaged id beyond the numbered ones must not take every new row past them too. */
#define RAISE_SEQUENCE(t)                                                                         \
	" UPDATE sqlite_sequence SET seq = (SELECT MAX(id) FROM " t " WHERE " SHOWN_ID ")"        \
	"  WHERE name = '" t "' AND seq < (SELECT MAX(id) FROM " t " WHERE " SHOWN_ID ");"        \
	" INSERT INTO sqlite_sequence(name, seq) SELECT '" t "', MAX(id) FROM " t                 \
	"  WHERE " SHOWN_ID " AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '" t "')"\
	"  HAVING MAX(id) IS NOT NULL;"
#define RAISE_SEQUENCES                                                                           \
	RAISE_SEQUENCE("backups") RAISE_SEQUENCE("keyspaces") RAISE_SEQUENCE("tables")            \
	RAISE_SEQUENCE("dirs") RAISE_SEQUENCE("files")
#define KEEP_IDS_SQL                                                                              \
	FORGET_KEPT_SQL                                                                           \
	" INSERT OR IGNORE INTO temp.kept_backups SELECT ref, created_ns, manifest_size,"         \
	"  manifest_version, root_mode, root_uid, root_gid, id FROM backups WHERE " SHOWN_ID ";"  \
	" INSERT OR IGNORE INTO temp.kept_keyspaces SELECT backup_id, name, mode, uid, gid,"      \
	"  mtime_ns, id FROM keyspaces WHERE " SHOWN_ID ";"                                       \
	" INSERT OR IGNORE INTO temp.kept_tables SELECT keyspace_id, name, table_id, mode, uid,"  \
	"  gid, mtime_ns, id FROM tables WHERE " SHOWN_ID ";"                                     \
	" INSERT OR IGNORE INTO temp.kept_dirs SELECT table_row, name, mode, uid, gid, mtime_ns,"\
	"  id FROM dirs WHERE " SHOWN_ID ";"                                                      \
	" INSERT OR IGNORE INTO temp.kept_files SELECT f.table_row, f.dir_id, f.name, f.size,"    \
	"  b.sha256, f.mode, f.uid, f.gid, f.mtime_ns, f.id FROM files f JOIN blobs b"            \
	"  ON b.id = f.blob_id WHERE f." SHOWN_ID ";"
/* A kept row's attributes are those of parameters m, u, g and t (KEPT_ATTRS) */
#define KEPT_MATCH(m, u, g, t)                                                                    \
	"mode = ?" #m " AND uid = ?" #u " AND gid = ?" #g " AND mtime_ns = ?" #t
/* A backup's ref as ST_ADD_BACKUP makes it from its parameters */
#define ADDED_REF "(CASE WHEN ?18 THEN ?1 || '/' || ?19 ELSE ?1 END)"

/* Columns every node query returns: id, name, size, mode, uid, gid, mtime_ns. */
#define NODE_COLS_DIR(t) "id, name, 0, mode, uid, gid, mtime_ns FROM " t
/* A node file (table_row < 0, catalog.h) may hold passwords (cassandra.yaml's keystore ones):
 * shown 0600 and owned by the mounting user, whatever it was on the node. */
#define NODE_COLS_FILE "id, name, size, CASE WHEN table_row < 0 THEN 384 ELSE mode END,"        \
	" CASE WHEN table_row < 0 THEN -1 ELSE uid END, CASE WHEN table_row < 0 THEN -1 ELSE gid END,"\
	" mtime_ns FROM files"
/* dir_id of a node file in MANIFEST_CONF_DIR (0: the backup's directory), in SQL and in C */
#define CONF_DIR_ID "-1"
#define CONF_DIR_ID_N (-1)
#define DIR_NAME(f, d) "COALESCE(" d ".name, CASE WHEN " f ".dir_id = " CONF_DIR_ID         \
	" AND " f ".table_row < 0 THEN '" MANIFEST_CONF_DIR "' END)"
/* A backup's directory carries the protection its data directory had (040000 | mode, owner,
 * group), so a user who could not read the data cannot read its backup; 040755 and the
 * mounting user when none was recorded. */
#define BACKUP_COLS                                                                              \
	"id, name, 0, CASE WHEN root_mode > 0 THEN 16384 | root_mode ELSE 16877 END,"            \
	" CASE WHEN root_mode > 0 THEN root_uid ELSE -1 END,"                                   \
	" CASE WHEN root_mode > 0 THEN root_gid ELSE -1 END, created_ns FROM backups"

/* Node columns (NODE_COLS_DIR's) of backup row b, named name: a directory of the tree with the
 * protection of that backup's data directory. */
#define GROUP_COLS(name)                                                                          \
	"b.id, " name ", 0, CASE WHEN b.root_mode > 0 THEN 16384 | b.root_mode ELSE 16877 END,"   \
	" CASE WHEN b.root_mode > 0 THEN b.root_uid ELSE -1 END,"                                \
	" CASE WHEN b.root_mode > 0 THEN b.root_gid ELSE -1 END, b.created_ns"
/* How many nodes the ring recorded by backup row x has (0 for a damaged one). */
#define RING_NODES(x) "CASE WHEN json_valid(" x ".ring) THEN json_array_length(" x ".ring) ELSE 0 END"
/* A cluster's or datacenter's name as one directory name of the cluster view: view_name(),
 * an SQL function of ours (sql_view_name). */
#define CLUSTER_NAME "view_name(b.cluster, 'unknown-cluster')"
#define DC_NAME "view_name(b.datacenter, 'unknown-dc')"

/* Columns 16.. of a backup summary (read_summary). */
#define SUMMARY_MORE ", b.ref, b.node_key, b.rack, b.schema_version, b.ring, b.tokens, b.base," \
	" b.previous, b.scope, b.clears_links, b.snapshot_ns"

enum stmt {
	ST_BEGIN,
	ST_READ_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_BACKUP_EXISTS,
	ST_BLOB_SIZE_EXISTS,
	ST_FIND_BLOB,
	ST_FIND_USED_BLOB,
	ST_ADD_PACK,
	ST_ADD_BLOB,
	ST_ADD_BACKUP,
	ST_ADD_KEYSPACE,
	ST_ADD_TABLE,
	ST_ADD_DIR,
	ST_ADD_FILE,
	ST_LIST_PACKS,
	ST_PACK_SHA,
	ST_ROOT_ATTR,
	ST_FIND_ANY_BLOB,
	ST_ADD_BLOB_LOC,
	ST_BACKUP_NAMES,
	ST_DEL_FILES,
	ST_DEL_DIRS,
	ST_DEL_TABLES,
	ST_DEL_KEYSPACES,
	ST_DEL_BACKUP,
	ST_DEL_PACK_LOCS,
	ST_REPOINT_BLOBS,
	ST_DEL_PACK,
	ST_DEL_LOOSE_BLOBS,
	ST_LIST_BACKUPS,
	ST_GET_BACKUP,
	ST_GET_KEYSPACE,
	ST_GET_TABLE,
	ST_GET_DIR,
	ST_GET_FILE,
	ST_LOOKUP_KEYSPACE,
	ST_LOOKUP_TABLE,
	ST_LOOKUP_DIR,
	ST_LOOKUP_TABLE_FILE,
	ST_LOOKUP_DIR_FILE,
	ST_LOOKUP_NODE_FILE,
	ST_LIST_NODE_FILES,
	ST_CONF_DIR,
	ST_TOP_BACKUPS,
	ST_CLUSTERS,
	ST_CLUSTER_NAMES,
	ST_CLUSTER_DCS,
	ST_SET_NODES,
	ST_GROUP_REP,
	ST_LIST_KEYSPACES,
	ST_LIST_TABLES,
	ST_LIST_DIRS,
	ST_LIST_TABLE_FILES,
	ST_LIST_DIR_FILES,
	ST_FILE_BLOB,
	ST_XATTR_BACKUP,
	ST_XATTR_TABLE,
	ST_XATTR_FILE,
	ST_GET_BACKUP_BY_NAME,
	ST_BACKUP_TABLES,
	ST_TABLE_FILES,
	ST_FILE_PATH,
	ST_TABLE_FILE_COUNT,
	ST_BACKUP_TABLE_COUNT,
	ST_NAME_SET,
	ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_READ_BEGIN] = "BEGIN DEFERRED",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	/* ?3: ?2 is a host id, canonical; the row's node key may spell it in capitals */
	[ST_BACKUP_EXISTS] = "SELECT 1 FROM backups WHERE name = ?1 AND"
			     " (?2 IS NULL OR node_key = ?2 OR (?3 AND lower(node_key) = ?2))",
	[ST_BLOB_SIZE_EXISTS] = "SELECT 1 FROM blobs WHERE size = ?1 LIMIT 1",
	[ST_FIND_BLOB] = "SELECT id FROM blobs WHERE sha256 = ?1 AND size = ?2 AND pack_id IS NOT NULL",
	[ST_FIND_USED_BLOB] = "SELECT b.id FROM blobs b WHERE b.sha256 = ?1 AND b.size = ?2 AND "
			      "b.pack_id IS NOT NULL AND EXISTS (SELECT 1 FROM files f WHERE f.blob_id = b.id)",
	[ST_FIND_ANY_BLOB] = "SELECT id FROM blobs WHERE sha256 = ?1 AND size = ?2",
	[ST_ADD_PACK] = "INSERT INTO packs(path, size, frames, created_ns, table_sha256, index_offset,"
			" index_size) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_ADD_BLOB] = "INSERT INTO blobs(sha256, size, pack_id, offset) VALUES(?1, ?2, ?3, ?4)"
			" ON CONFLICT(sha256, size) DO UPDATE SET"
			" offset = CASE WHEN pack_id IS NULL THEN excluded.offset ELSE offset END,"
			" pack_id = COALESCE(pack_id, excluded.pack_id)",
	[ST_ADD_BLOB_LOC] = "INSERT OR IGNORE INTO blob_locs(blob_id, pack_id, offset)"
			    " VALUES(?1, ?2, ?3)",
	/* Each ST_ADD_ of a node takes the id kept for it (KEPT_SQL) where there is one. */
	[ST_ADD_BACKUP] = "INSERT INTO backups(id, name, cluster, datacenter, node, host_id,"
			  " snapshot_tag, created_ns, files, bytes, new_bytes, stored_bytes,"
			  " cassandra_version, tokens, root_mode, root_uid, root_gid, manifest_size,"
			  " ref, node_key, rack, schema_version, ring, base, previous, scope, clears_links,"
			  " manifest_version, snapshot_ns)"
			  " VALUES((SELECT id FROM temp.kept_backups WHERE ref = " ADDED_REF " AND"
			  " created_ns = ?7 AND manifest_size = ?17 AND manifest_version = ?27 AND"
			  " root_mode = ?14 AND root_uid = ?15 AND root_gid = ?16),"
			  " ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
			  " " ADDED_REF ", ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
	/* a row whose name does not agree with its ref is damaged: '' (no manifest's ref) has a
	 * reconcile drop it and take its manifest in again */
	[ST_BACKUP_NAMES] = "SELECT id, CASE WHEN ref = name OR ref = name || '/' || node_key"
			    " THEN ref ELSE '' END, manifest_size, manifest_version FROM backups",
	[ST_DEL_FILES] = "DELETE FROM files WHERE backup_id = ?1",
	[ST_DEL_DIRS] = "DELETE FROM dirs WHERE table_row IN (SELECT id FROM tables WHERE backup_id = ?1)",
	[ST_DEL_TABLES] = "DELETE FROM tables WHERE backup_id = ?1",
	[ST_DEL_KEYSPACES] = "DELETE FROM keyspaces WHERE backup_id = ?1",
	[ST_DEL_BACKUP] = "DELETE FROM backups WHERE id = ?1",
	[ST_DEL_PACK_LOCS] = "DELETE FROM blob_locs WHERE pack_id = ?1",
	[ST_REPOINT_BLOBS] = "UPDATE blobs SET (pack_id, offset) = (SELECT l.pack_id, l.offset FROM"
			     " blob_locs l WHERE l.blob_id = blobs.id ORDER BY l.pack_id DESC LIMIT 1)"
			     " WHERE pack_id = ?1",
	[ST_DEL_PACK] = "DELETE FROM packs WHERE id = ?1",
	[ST_DEL_LOOSE_BLOBS] = "DELETE FROM blobs WHERE pack_id IS NULL AND NOT EXISTS"
			       " (SELECT 1 FROM files f WHERE f.blob_id = blobs.id)",
	[ST_ADD_KEYSPACE] = "INSERT INTO keyspaces(id, backup_id, name, mode, uid, gid, mtime_ns)"
			    " VALUES((SELECT id FROM temp.kept_keyspaces WHERE backup_id = ?1 AND"
			    " name = ?2 AND " KEPT_MATCH(3, 4, 5, 6) "), ?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_ADD_TABLE] = "INSERT INTO tables(id, backup_id, keyspace_id, name, table_id, schema_cql,"
			 " mode, uid, gid, mtime_ns)"
			 " VALUES((SELECT id FROM temp.kept_tables WHERE keyspace_id = ?2 AND name = ?3"
			 " AND table_id = ?4 AND " KEPT_MATCH(6, 7, 8, 9) "),"
			 " ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_ADD_DIR] = "INSERT INTO dirs(id, table_row, name, mode, uid, gid, mtime_ns)"
		       " VALUES((SELECT id FROM temp.kept_dirs WHERE table_row = ?1 AND name = ?2"
		       " AND " KEPT_MATCH(3, 4, 5, 6) "), ?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_ADD_FILE] = "INSERT INTO files(id, backup_id, table_row, dir_id, name, size, mode, uid,"
			" gid, mtime_ns, blob_id)"
			" VALUES((SELECT id FROM temp.kept_files WHERE table_row = ?2 AND dir_id = ?3"
			" AND name = ?4 AND size = ?5 AND " KEPT_MATCH(6, 7, 8, 9) " AND"
			" sha256 = (SELECT sha256 FROM blobs WHERE id = ?10)),"
			" ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[ST_LIST_PACKS] = "SELECT id, path, size FROM packs ORDER BY id",
	[ST_PACK_SHA] = "SELECT table_sha256 FROM packs WHERE id = ?1",
	[ST_ROOT_ATTR] = "SELECT root_mode, root_uid, root_gid FROM backups WHERE root_mode > 0"
			 " ORDER BY created_ns DESC LIMIT 1",
	[ST_GET_BACKUP_BY_NAME] =
		"SELECT b.id, b.name, b.node, b.cluster, b.datacenter, b.host_id, b.snapshot_tag,"
		" b.created_ns, b.files, b.bytes, b.new_bytes, b.stored_bytes,"
		" (SELECT COUNT(*) FROM tables t WHERE t.backup_id = b.id), 0,"
		" NOT EXISTS (SELECT 1 FROM files f3 JOIN blobs b3 ON b3.id = f3.blob_id"
		"   WHERE f3.backup_id = b.id AND b3.pack_id IS NULL), b.cassandra_version" SUMMARY_MORE
		" FROM backups b WHERE b.ref = ?1 OR (?2 AND b.name = ?1) ORDER BY b.node_key",
	[ST_BACKUP_TABLES] = "SELECT t.id, k.id, k.name, t.name, t.table_id, t.schema_cql FROM tables t"
			     " JOIN keyspaces k ON k.id = t.keyspace_id WHERE t.backup_id = ?1"
			     " ORDER BY k.name, t.name",
	[ST_TABLE_FILES] = "SELECT f.id, f.dir_id, " DIR_NAME("f", "d") ", f.name, f.size, f.mode, f.uid, f.gid, f.mtime_ns,"
			   " b.pack_id, p.path, b.offset, b.size, b.sha256 FROM files f"
			   " JOIN blobs b ON b.id = f.blob_id LEFT JOIN packs p ON p.id = b.pack_id"
			   " LEFT JOIN dirs d ON d.id = f.dir_id WHERE f.table_row = ?1"
			   " ORDER BY COALESCE(d.name, ''), f.name",
	[ST_NAME_SET] = "SELECT COUNT(*) = 1 AND MAX(" RING_NODES("x") ") <= 1, MIN(id) FROM backups x"
			" WHERE name = ?1",
	[ST_FILE_PATH] = "SELECT bk.ref, k.name, t.name, f.dir_id, " DIR_NAME("f", "d") ", f.name,"
			 " bk.id, bk.name, f.table_row < 0, t.id IS NULL OR k.backup_id IS f.backup_id FROM files f"
			 " JOIN backups bk ON bk.id = f.backup_id LEFT JOIN tables t ON t.id = f.table_row"
			 " LEFT JOIN keyspaces k ON k.id = t.keyspace_id LEFT JOIN dirs d ON d.id = f.dir_id"
			 " WHERE f.id = ?1 AND (t.id IS NOT NULL OR f.table_row = -f.backup_id)",
	/* (FILE_PATH's columns 6, 7: the backup's row and name; 9: whether the table the file is
	 * listed under is of that backup too) */
	[ST_TABLE_FILE_COUNT] = "SELECT bk.ref, k.name, t.name, bk.id, bk.name,"
				" (SELECT COUNT(*) FROM files f WHERE f.table_row = t.id) FROM tables t"
				" JOIN keyspaces k ON k.id = t.keyspace_id JOIN backups bk ON bk.id = k.backup_id"
				" WHERE t.id = ?1",
	/* a backup's by its row (?1), or by one of its keyspaces' (?2) */
	[ST_BACKUP_TABLE_COUNT] = "SELECT bk.ref, '', '', bk.id, bk.name, (SELECT COUNT(*) FROM tables t"
				  " JOIN keyspaces k ON k.id = t.keyspace_id WHERE k.backup_id = bk.id)"
				  " FROM backups bk WHERE bk.id = COALESCE(?1,"
				  " (SELECT backup_id FROM keyspaces WHERE id = ?2))",
	[ST_LIST_BACKUPS] =
		"SELECT b.id, b.name, b.node, b.cluster, b.datacenter, b.host_id, b.snapshot_tag,"
		" b.created_ns, b.files, b.bytes, b.new_bytes, b.stored_bytes,"
		" (SELECT COUNT(*) FROM tables t WHERE t.backup_id = b.id),"
		/* TOTAL, not SUM: a damaged size must not make the whole listing fail with an
		 * integer overflow. -1 flags a size out of range. */
		" (SELECT CASE WHEN MIN(bl.size) < 0 OR MAX(bl.size) > " CB_SIZE_MAX_SQL
		"   THEN -1.0 ELSE TOTAL(bl.size) END FROM blobs bl WHERE bl.id IN"
		"   (SELECT blob_id FROM files f WHERE f.backup_id = b.id) AND NOT EXISTS"
		"   (SELECT 1 FROM files f2 WHERE f2.blob_id = bl.id AND f2.backup_id <> b.id)),"
		" NOT EXISTS (SELECT 1 FROM files f3 JOIN blobs b3 ON b3.id = f3.blob_id"
		"   WHERE f3.backup_id = b.id AND b3.pack_id IS NULL), b.cassandra_version" SUMMARY_MORE
		" FROM backups b ORDER BY b.created_ns, b.id",
	[ST_GET_BACKUP] = "SELECT " BACKUP_COLS " WHERE id = ?1",
	[ST_GET_KEYSPACE] = "SELECT " NODE_COLS_DIR("keyspaces") " WHERE id = ?1",
	[ST_GET_TABLE] = "SELECT " NODE_COLS_DIR("tables") " WHERE id = ?1",
	[ST_GET_DIR] = "SELECT " NODE_COLS_DIR("dirs") " WHERE id = ?1",
	[ST_GET_FILE] = "SELECT " NODE_COLS_FILE " WHERE id = ?1",
	[ST_LOOKUP_KEYSPACE] = "SELECT " NODE_COLS_DIR("keyspaces") " WHERE backup_id = ?1 AND name = ?2",
	[ST_LOOKUP_TABLE] = "SELECT " NODE_COLS_DIR("tables") " WHERE keyspace_id = ?1 AND name = ?2",
	[ST_LOOKUP_DIR] = "SELECT " NODE_COLS_DIR("dirs") " WHERE table_row = ?1 AND name = ?2",
	[ST_LOOKUP_TABLE_FILE] = "SELECT " NODE_COLS_FILE
				 " WHERE table_row = ?1 AND dir_id = 0 AND name = ?2",
	[ST_LOOKUP_DIR_FILE] = "SELECT " NODE_COLS_FILE " WHERE table_row ="
			       " (SELECT table_row FROM dirs WHERE id = ?1) AND dir_id = ?1 AND name = ?2",
	/* /backups: one entry per name, its smallest row, and whether it is a node backup alone
	 * (no other node's of the name, and a ring of at most one node recorded) */
	[ST_TOP_BACKUPS] = "SELECT " GROUP_COLS("b.name") ", (SELECT COUNT(*) = 1 AND MAX(" RING_NODES("x")
			   ") <= 1 FROM backups x WHERE x.name = b.name) FROM backups b"
			   " WHERE b.id = (SELECT MIN(y.id) FROM backups y WHERE y.name = b.name)"
			   " AND (?2 IS NULL OR b.name = ?2) ORDER BY b.name",
	[ST_CLUSTERS] = "SELECT " GROUP_COLS(CLUSTER_NAME) " FROM backups b WHERE b.id ="
			" (SELECT MIN(y.id) FROM backups y WHERE y.cluster = b.cluster)"
			" AND (?2 IS NULL OR " CLUSTER_NAME " = ?2) ORDER BY 2",
	[ST_CLUSTER_NAMES] = "SELECT " GROUP_COLS("b.name") " FROM backups b, backups r"
			     " WHERE r.id = ?1 AND b.cluster = r.cluster AND b.id = (SELECT MIN(y.id)"
			     " FROM backups y WHERE y.cluster = b.cluster AND y.name = b.name)"
			     " AND (?2 IS NULL OR b.name = ?2) ORDER BY 2",
	[ST_CLUSTER_DCS] = "SELECT " GROUP_COLS(DC_NAME) " FROM backups b, backups r"
			   " WHERE r.id = ?1 AND b.cluster = r.cluster AND b.name = r.name"
			   " AND b.id = (SELECT MIN(y.id) FROM backups y WHERE y.cluster = b.cluster"
			   " AND y.name = b.name AND y.datacenter = b.datacenter)"
			   " AND (?2 IS NULL OR " DC_NAME " = ?2) ORDER BY 2",
	/* the node backups of a level-1 group (same name) or level-4 (same cluster, name, dc) */
	[ST_SET_NODES] = "SELECT " GROUP_COLS("b.node") ", b.node_key FROM backups b, backups r"
			 " WHERE r.id = ?1 AND b.name = r.name AND (?3 = 1 OR (b.cluster = r.cluster"
			 " AND b.datacenter = r.datacenter)) ORDER BY b.node, b.node_key",
	[ST_GROUP_REP] = "SELECT " GROUP_COLS("CASE ?2 WHEN 2 THEN " CLUSTER_NAME " WHEN 4 THEN "
				      DC_NAME " ELSE b.name END") " FROM backups b WHERE b.id = ?1",
	[ST_LIST_KEYSPACES] = "SELECT " NODE_COLS_DIR("keyspaces") " WHERE backup_id = ?1 ORDER BY name",
	[ST_LIST_TABLES] = "SELECT " NODE_COLS_DIR("tables") " WHERE keyspace_id = ?1 ORDER BY name",
	[ST_LIST_DIRS] = "SELECT " NODE_COLS_DIR("dirs") " WHERE table_row = ?1 ORDER BY name",
	/* a backup's own files and its conf directory (catalog.h) */
	[ST_LOOKUP_NODE_FILE] = "SELECT " NODE_COLS_FILE " WHERE table_row = -?1 AND dir_id = ?3"
				" AND name = ?2",
	[ST_LIST_NODE_FILES] = "SELECT " NODE_COLS_FILE " WHERE table_row = -?1 AND dir_id = ?3"
			       " ORDER BY name",
	[ST_CONF_DIR] = "SELECT id, '" MANIFEST_CONF_DIR "', 0, 448, -1, -1, created_ns FROM backups"
			" WHERE id = ?1 AND EXISTS (SELECT 1 FROM files WHERE table_row = -?1"
			" AND dir_id = " CONF_DIR_ID ")",
	[ST_LIST_TABLE_FILES] = "SELECT " NODE_COLS_FILE
				" WHERE table_row = ?1 AND dir_id = 0 ORDER BY name",
	[ST_LIST_DIR_FILES] = "SELECT " NODE_COLS_FILE " WHERE table_row ="
			      " (SELECT table_row FROM dirs WHERE id = ?1) AND dir_id = ?1 ORDER BY name",
	[ST_FILE_BLOB] = "SELECT b.pack_id, p.path, b.offset, b.size, b.sha256, f.size FROM files f"
			 " JOIN blobs b ON b.id = f.blob_id LEFT JOIN packs p ON p.id = b.pack_id"
			 " WHERE f.id = ?1",
	[ST_XATTR_BACKUP] = "SELECT node, cluster, datacenter, created_ns, snapshot_tag, host_id,"
			    " rack, tokens, cassandra_version, schema_version, name, base, previous"
			    " FROM backups WHERE id = ?1",
	[ST_XATTR_TABLE] = "SELECT t.table_id, k.name, t.name FROM tables t"
			   " JOIN keyspaces k ON k.id = t.keyspace_id WHERE t.id = ?1",
	[ST_XATTR_FILE] = "SELECT b.sha256 FROM files f JOIN blobs b ON b.id = f.blob_id"
			  " WHERE f.id = ?1",
};

struct catalog {
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	char why[160]; /* the last invalid row, for catalog_errmsg; "" when none */
	char id[33];   /* the catalog's identity (meta 'id'); "" for an old read-only one */
	bool kept;     /* catalog_clear kept ids in this transaction (KEPT_SQL) */
};

static const char *col_text(sqlite3_stmt *st, int i);
static int prepare_once(catalog *c, const char *sql, sqlite3_stmt **st);
static const char *col_name(sqlite3_stmt *st, int i);
static int bad_row(catalog *c, int64_t row, const char *what);

/* Translates a SQLite result code to a negative errno, once, here. */
static int errno_from_sqlite(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_NOTADB:
		return -EMEDIUMTYPE;
	case SQLITE_CORRUPT:
		return -EUCLEAN;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		return sys > 0 ? -sys : -EIO;
	default:
		return -EIO;
	}
}

static int cerr(catalog *c, int rc)
{
	return errno_from_sqlite(c->db, rc);
}

/* Hands out a statement, reset and unbound. Every public call starts here, so it also forgets
 * the previous call's invalid row. */
static sqlite3_stmt *stmt(catalog *c, enum stmt s)
{
	sqlite3_stmt *st = c->st[s];
	c->why[0] = '\0';
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Steps a statement that returns no rows (or whose rows we ignore) and resets it. */
static int exec_stmt(catalog *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	int rc2 = sqlite3_reset(st);
	return cerr(c, rc == SQLITE_DONE ? rc2 : rc);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* c->id from meta 'id' ("" when an old catalog opened read-only has none yet). */
static int read_identity(catalog *c)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = 'id'", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return cerr(c, rc);
	rc = sqlite3_step(st);
	const char *v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
	snprintf(c->id, sizeof(c->id), "%s", v ? v : "");
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : cerr(c, rc);
}

const char *catalog_identity(const catalog *c)
{
	return c->id;
}

int catalog_reread_identity(catalog *c)
{
	return read_identity(c);
}

int catalog_renew_identity(catalog *c)
{
	int r = errno_from_sqlite(c->db, sqlite3_exec(c->db, "UPDATE meta SET value ="
						      " lower(hex(randomblob(16))) WHERE key = 'id'",
						      NULL, NULL, NULL));
	return r ?: read_identity(c);
}

int catalog_clear(catalog *c, bool keep_ids)
{
	static const char sql[] = "DELETE FROM files; DELETE FROM dirs; DELETE FROM tables;"
				  " DELETE FROM keyspaces; DELETE FROM backups; DELETE FROM blob_locs;"
				  " DELETE FROM blobs; DELETE FROM packs;";
	c->why[0] = '\0';
	c->kept = keep_ids;
	int rc = sqlite3_exec(c->db, RAISE_SEQUENCES, NULL, NULL, NULL);
	if (rc == SQLITE_OK && keep_ids)
		rc = sqlite3_exec(c->db, KEEP_IDS_SQL, NULL, NULL, NULL);
	return errno_from_sqlite(c->db, rc == SQLITE_OK ? sqlite3_exec(c->db, sql, NULL, NULL, NULL) : rc);
}

/* The directory name of the cluster view for a cluster's or datacenter's name x (Cassandra takes
 * any string), one to one and at most NAME_MAX bytes: none recorded (NULL or '') as unknown;
 * '%' as %25 and '/' as %2F; "." and ".." as %2E and %2E%2E; a name spelled as unknown with
 * its '-' as %2D; a name whose escaped form is longer than 255 bytes as its first 200 bytes,
 * then "%~" and 16 hex digits of the SHA-256 of the whole name. No escaped form holds a '%'
 * followed by anything but 25, 2F, 2E or 2D, so no two names meet. */
static int view_name_of(const char *x, const char *unknown, struct strbuf *out)
{
	if (!x || !*x)
		return sb_puts(out, unknown);
	if (!strcmp(x, ".") || !strcmp(x, ".."))
		return sb_puts(out, x[1] ? "%2E%2E" : "%2E");
	bool as_unknown = !strcmp(x, unknown);
	int r = 0;
	for (const char *p = x; r == 0 && *p; p++)
		r = *p == '%' ? sb_puts(out, "%25")
		  : *p == '/' ? sb_puts(out, "%2F")
		  : *p == '-' && as_unknown ? sb_puts(out, "%2D")
		  : sb_append(out, p, 1);
	if (r == 0 && out->len > 255) {
		unsigned char h[32];
		char hex[17];
		r = sha256_buf(x, strlen(x), h);
		hex_encode(h, 8, hex);
		/* cut before a character (not inside one's UTF-8 bytes: at most 3 follow its first)
		 * and before an escape: at 195 to 200 bytes, whatever bytes the name holds */
		size_t cut = 200;
		for (int i = 0; i < 3 && ((unsigned char)out->buf[cut] & 0xc0) == 0x80; i++)
			cut--;
		if (out->buf[cut - 1] == '%')
			cut -= 1;
		else if (out->buf[cut - 2] == '%')
			cut -= 2;
		out->len = cut;
		r = r ?: sb_printf(out, "%%~%s", hex);
	}
	return r;
}

static void sql_view_name(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const char *x = (const char *)sqlite3_value_text(argv[0]);
	const char *unknown = (const char *)sqlite3_value_text(argv[1]);
	struct strbuf out = {0};
	if (view_name_of(x, unknown ? unknown : "", &out) < 0 || !out.buf) {
		sb_free(&out);
		sqlite3_result_error_nomem(ctx);
	} else {
		sqlite3_result_text(ctx, out.buf, (int)out.len, free);
	}
}

int catalog_format_of(const char *path, char *out, size_t n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	const unsigned char *v = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
	bool ours = v && !strncmp((const char *)v, "cassbackup-catalog-", 19) &&
		    strspn((const char *)v + 19, "0123456789") == strlen((const char *)v + 19) && v[19];
	if (ours)
		snprintf(out, n, "%s", (const char *)v);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ours ? 0 : -EMEDIUMTYPE;
}

int catalog_open(catalog **out, const char *path, int flags)
{
	*out = NULL;
	struct stat sb;
	bool create = flags & CATALOG_CREATE;
	if (create && stat(path, &sb) == 0)
		return -EEXIST;
	if (!create && stat(path, &sb) < 0)
		return -errno;

	catalog *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int oflags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
	oflags |= (flags & CATALOG_READONLY) ? SQLITE_OPEN_READONLY
					     : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(path, &c->db, oflags, NULL);
	int r = errno_from_sqlite(c->db, rc);
	if (r < 0)
		goto fail;
	sqlite3_busy_timeout(c->db, 30000);
	rc = sqlite3_create_function(c->db, "view_name", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
				     sql_view_name, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;", NULL, NULL, NULL);
	if (rc == SQLITE_OK && (flags & CATALOG_SMALL_CACHE))
		rc = sqlite3_exec(c->db, "PRAGMA cache_size=-" CATALOG_SMALL_CACHE_KIB, NULL, NULL, NULL);
	if (create && rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, schema_sql, NULL, NULL, NULL);

	if ((r = errno_from_sqlite(c->db, rc)) < 0)
		goto fail;

	/* Is this ours? */
	sqlite3_stmt *st = NULL;
	rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = (rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_NOTADB ? -EMEDIUMTYPE
										  : cerr(c, rc);
		goto fail;
	}
	rc = sqlite3_step(st);
	r = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), CATALOG_FORMAT) == 0
		    ? 0 : -EMEDIUMTYPE;
	sqlite3_finalize(st);
	if (r < 0)
		goto fail;
	/* Catalogs made before the index (or the identity) existed gain it on their next write. */
	if (!(flags & CATALOG_READONLY) &&
	    ((r = errno_from_sqlite(c->db, sqlite3_exec(c->db, BACKUPS_BY_NAME, NULL, NULL, NULL))) < 0 ||
	     (r = errno_from_sqlite(c->db, sqlite3_exec(c->db, IDENTITY_SQL, NULL, NULL, NULL))) < 0))
		goto fail;
	if ((r = read_identity(c)) < 0 ||
	    (r = errno_from_sqlite(c->db, sqlite3_exec(c->db, KEPT_SQL, NULL, NULL, NULL))) < 0)
		goto fail;

	for (int i = 0; i < ST__COUNT; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
					NULL);
		if (rc != SQLITE_OK) {
			r = cerr(c, rc);
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	catalog_close(c);
	return r < 0 ? r : -EIO;
}

int catalog_checkpoint(catalog *c)
{
	return cerr(c, sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL));
}

void catalog_close(catalog *c)
{
	if (!c)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	free(c);
}

const char *catalog_errmsg(catalog *c)
{
	if (c && c->why[0])
		return c->why;
	return c && c->db ? sqlite3_errmsg(c->db) : "out of memory";
}

int catalog_begin(catalog *c)
{
	return exec_stmt(c, stmt(c, ST_BEGIN));
}

int catalog_read_begin(catalog *c)
{
	return exec_stmt(c, stmt(c, ST_READ_BEGIN));
}

int catalog_commit(catalog *c)
{
	int r = 0;
	if (c->kept) /* the kept ids end with the rebuild that kept them */
		r = errno_from_sqlite(c->db, sqlite3_exec(c->db, FORGET_KEPT_SQL, NULL, NULL, NULL));
	c->kept = false;
	return r ?: exec_stmt(c, stmt(c, ST_COMMIT));
}

void catalog_rollback(catalog *c)
{
	c->kept = false; /* the rollback takes the kept ids away with the rest */
	if (!sqlite3_get_autocommit(c->db))
		exec_stmt(c, stmt(c, ST_ROLLBACK));
}

/* Runs a query expected to give at most one row; 1 if it did, 0 if not. The statement is
 * left on its row for the caller to read; the caller resets it with done(). */
static int step_one(catalog *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	int rc2 = sqlite3_reset(st);
	return rc == SQLITE_DONE ? cerr(c, rc2) : cerr(c, rc);
}

static int done(catalog *c, sqlite3_stmt *st, int r)
{
	int rc = sqlite3_reset(st);
	return r < 0 ? r : (rc == SQLITE_OK ? r : cerr(c, rc));
}

int catalog_has_unlocated_blobs(catalog *c)
{
	sqlite3_stmt *st;
	int r = prepare_once(c, "SELECT 1 FROM blobs WHERE pack_id IS NULL LIMIT 1", &st);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : cerr(c, rc);
	sqlite3_finalize(st);
	return r;
}

int catalog_backup_exists(catalog *c, const char *name, const char *node_key)
{
	sqlite3_stmt *st = stmt(c, ST_BACKUP_EXISTS);
	char canon[37];
	bool host_id = node_key && host_id_canonical(node_key, canon) == 0;
	bind_text(st, 1, name);
	if (node_key)
		bind_text(st, 2, host_id ? canon : node_key);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int(st, 3, host_id);
	int r = step_one(c, st);
	return r == 1 ? done(c, st, 1) : r;
}

int catalog_blob_size_exists(catalog *c, uint64_t size)
{
	sqlite3_stmt *st = stmt(c, ST_BLOB_SIZE_EXISTS);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	int r = step_one(c, st);
	return r == 1 ? done(c, st, 1) : r;
}

/* The id of the blob (sha256, size) through query `which`: 1, 0 (none), or -errno. */
static int blob_id_by(catalog *c, enum stmt which, const unsigned char sha256[32], uint64_t size,
		      int64_t *id)
{
	sqlite3_stmt *st = stmt(c, which);
	sqlite3_bind_blob(st, 1, sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	int r = step_one(c, st);
	if (r != 1)
		return r;
	*id = sqlite3_column_int64(st, 0);
	return done(c, st, 1);
}

int catalog_find_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t *id)
{
	return blob_id_by(c, ST_FIND_BLOB, sha256, size, id);
}

int catalog_find_used_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t *id)
{
	return blob_id_by(c, ST_FIND_USED_BLOB, sha256, size, id);
}

static int insert(catalog *c, sqlite3_stmt *st, int64_t *id)
{
	int r = exec_stmt(c, st);
	if (r == 0 && id)
		*id = sqlite3_last_insert_rowid(c->db);
	return r;
}

int catalog_add_pack(catalog *c, const struct cb_pack_info *p, int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_PACK);
	bind_text(st, 1, p->path);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)p->size);
	sqlite3_bind_int64(st, 3, p->frames);
	sqlite3_bind_int64(st, 4, p->created_ns);
	sqlite3_bind_blob(st, 5, p->table_sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)p->index_offset);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)p->index_size);
	return insert(c, st, id);
}

int catalog_add_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t pack_id,
		     uint64_t offset, int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_BLOB);
	sqlite3_bind_blob(st, 1, sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	if (pack_id) {
		sqlite3_bind_int64(st, 3, pack_id);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)offset);
	} else {
		sqlite3_bind_null(st, 3);
		sqlite3_bind_null(st, 4);
	}
	int r = exec_stmt(c, st);
	if (r == 0)
		r = blob_id_by(c, ST_FIND_ANY_BLOB, sha256, size, id);
	if (r == 0)
		r = -EIO;
	if (r < 0 || !pack_id)
		return r < 0 ? r : 0;
	st = stmt(c, ST_ADD_BLOB_LOC);
	sqlite3_bind_int64(st, 1, *id);
	sqlite3_bind_int64(st, 2, pack_id);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)offset);
	return exec_stmt(c, st);
}

int catalog_add_backup(catalog *c, const struct cb_backup_info *b, int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_BACKUP);
	bind_text(st, 1, b->name);
	bind_text(st, 2, b->cluster);
	bind_text(st, 3, b->datacenter);
	bind_text(st, 4, b->node);
	bind_text(st, 5, b->host_id);
	bind_text(st, 6, b->snapshot_tag);
	sqlite3_bind_int64(st, 7, b->created_ns);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)b->files);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)b->bytes);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)b->new_bytes);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)b->stored_bytes);
	bind_text(st, 12, b->cassandra_version ? b->cassandra_version : "");
	bind_text(st, 13, b->tokens ? b->tokens : "");
	sqlite3_bind_int64(st, 14, b->root_mode);
	sqlite3_bind_int64(st, 15, b->root_uid);
	sqlite3_bind_int64(st, 16, b->root_gid);
	sqlite3_bind_int64(st, 17, (sqlite3_int64)b->manifest_size);
	sqlite3_bind_int(st, 18, b->nested);
	bind_text(st, 19, b->node_key ? b->node_key : "");
	bind_text(st, 20, b->rack ? b->rack : "");
	bind_text(st, 21, b->schema_version ? b->schema_version : "");
	bind_text(st, 22, b->ring ? b->ring : "[]");
	bind_text(st, 23, b->base ? b->base : "");
	bind_text(st, 24, b->previous ? b->previous : "");
	bind_text(st, 25, b->scope ? b->scope : "");
	sqlite3_bind_int(st, 26, b->clears_links);
	bind_text(st, 27, b->manifest_version ? b->manifest_version : "");
	sqlite3_bind_int64(st, 28, b->snapshot_ns);
	return insert(c, st, id);
}

static int exec_id(catalog *c, enum stmt which, int64_t id)
{
	sqlite3_stmt *st = stmt(c, which);
	sqlite3_bind_int64(st, 1, id);
	return exec_stmt(c, st);
}

int catalog_remove_backup(catalog *c, int64_t id)
{
	return exec_id(c, ST_DEL_FILES, id) ?: exec_id(c, ST_DEL_DIRS, id) ?:
	       exec_id(c, ST_DEL_TABLES, id) ?: exec_id(c, ST_DEL_KEYSPACES, id) ?:
	       exec_id(c, ST_DEL_BACKUP, id) ?: exec_stmt(c, stmt(c, ST_DEL_LOOSE_BLOBS));
}

int catalog_remove_pack(catalog *c, int64_t id)
{
	return exec_id(c, ST_DEL_PACK_LOCS, id) ?: exec_id(c, ST_REPOINT_BLOBS, id) ?:
	       exec_id(c, ST_DEL_PACK, id) ?: exec_stmt(c, stmt(c, ST_DEL_LOOSE_BLOBS));
}

int catalog_backup_names(catalog *c, catalog_backup_name_fn cb, void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_BACKUP_NAMES);
	int r;
	while ((r = step_one(c, st)) == 1) {
		const char *name = col_text(st, 1), *version = col_text(st, 3);
		r = cb(ctx, sqlite3_column_int64(st, 0), name ? name : "",
		       (uint64_t)sqlite3_column_int64(st, 2), version ? version : "");
		if (r != 0) {
			sqlite3_reset(st);
			return r;
		}
	}
	return r;
}

int catalog_pack_sha(catalog *c, int64_t pack_id, unsigned char sha[32])
{
	sqlite3_stmt *st = stmt(c, ST_PACK_SHA);
	sqlite3_bind_int64(st, 1, pack_id);
	int r = step_one(c, st);
	if (r != 1)
		return r;
	const void *v = sqlite3_column_blob(st, 0);
	if (!v || sqlite3_column_bytes(st, 0) != 32)
		r = bad_row(c, pack_id, "pack hash is not 32 bytes");
	else
		memcpy(sha, v, 32);
	return done(c, st, r < 0 ? r : 1);
}

static void bind_attr(sqlite3_stmt *st, int first, const struct cb_dir_attr *a)
{
	sqlite3_bind_int64(st, first, a->mode);
	sqlite3_bind_int64(st, first + 1, a->uid);
	sqlite3_bind_int64(st, first + 2, a->gid);
	sqlite3_bind_int64(st, first + 3, a->mtime_ns);
}

int catalog_add_keyspace(catalog *c, int64_t backup_id, const char *name,
			 const struct cb_dir_attr *a, int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_KEYSPACE);
	sqlite3_bind_int64(st, 1, backup_id);
	bind_text(st, 2, name);
	bind_attr(st, 3, a);
	return insert(c, st, id);
}

int catalog_add_table(catalog *c, int64_t backup_id, int64_t keyspace_row, const char *name,
		      const char *table_id, const char *schema_cql, const struct cb_dir_attr *a,
		      int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_TABLE);
	sqlite3_bind_int64(st, 1, backup_id);
	sqlite3_bind_int64(st, 2, keyspace_row);
	bind_text(st, 3, name);
	bind_text(st, 4, table_id);
	if (schema_cql)
		bind_text(st, 5, schema_cql);
	bind_attr(st, 6, a);
	return insert(c, st, id);
}

int catalog_add_dir(catalog *c, int64_t table_row, const char *name, const struct cb_dir_attr *a,
		    int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_DIR);
	sqlite3_bind_int64(st, 1, table_row);
	bind_text(st, 2, name);
	bind_attr(st, 3, a);
	return insert(c, st, id);
}

int catalog_add_file(catalog *c, const struct cb_file_info *f, int64_t *id)
{
	sqlite3_stmt *st = stmt(c, ST_ADD_FILE);
	sqlite3_bind_int64(st, 1, f->backup_id);
	sqlite3_bind_int64(st, 2, f->table_row);
	sqlite3_bind_int64(st, 3, f->dir_id);
	bind_text(st, 4, f->name);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)f->size);
	sqlite3_bind_int64(st, 6, f->mode);
	sqlite3_bind_int64(st, 7, f->uid);
	sqlite3_bind_int64(st, 8, f->gid);
	sqlite3_bind_int64(st, 9, f->mtime_ns);
	sqlite3_bind_int64(st, 10, f->blob_id);
	return insert(c, st, id);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	return s ? s : "";
}

/* A name or path column as stored, or "" (which no check accepts) when the value is not text
 * or holds a NUL: read as a C string, such a value would be cut short to another name ("a\0b"
 * to "a"), and a lookup by name, which binds text, would never find it. Call it before any
 * col_text() of the same column: that converts a blob to text for good. */
static const char *col_name(sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) != SQLITE_TEXT)
		return "";
	const char *s = (const char *)sqlite3_column_text(st, i);
	return s && strlen(s) == (size_t)sqlite3_column_bytes(st, i) ? s : "";
}

/* --- rows as read: every name, size and pack path is checked here, where it leaves SQLite ---- */

/* Records why row `row` cannot be used (for catalog_errmsg) and returns -EUCLEAN. */
static int bad_row(catalog *c, int64_t row, const char *what)
{
	snprintf(c->why, sizeof(c->why), "catalog row %lld: %s", (long long)row, what);
	return -EUCLEAN;
}

/* A size or offset column, if it lies in 0 .. CB_SIZE_MAX. */
static bool col_size(sqlite3_stmt *st, int i, uint64_t *out)
{
	sqlite3_int64 v = sqlite3_column_int64(st, i);
	if (v < 0 || v > CB_SIZE_MAX)
		return false;
	*out = (uint64_t)v;
	return true;
}

/* A pack path is relative to the store, made of valid components, and fits cb_blob_loc. */
static bool pack_path_ok(const char *p)
{
	char comp[256];
	if (strlen(p) >= sizeof(((struct cb_blob_loc *)0)->pack_path))
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!name_is_component(comp))
			return false; /* also an empty component: a leading, doubled or trailing '/' */
		if (!p[n])
			return true;
		p += n + 1;
	}
}

/* Reads (pack_id, pack path, offset, size, sha256) from columns first.. of a blob query. */
static int read_loc(catalog *c, sqlite3_stmt *st, int first, int64_t row, struct cb_blob_loc *loc)
{
	const char *path = col_name(st, first + 1);
	loc->pack_id = sqlite3_column_int64(st, first);
	bool nowhere = sqlite3_column_type(st, first) == SQLITE_NULL;
	if (!nowhere && !pack_path_ok(path))
		return bad_row(c, row, "invalid pack path");
	snprintf(loc->pack_path, sizeof(loc->pack_path), "%s", nowhere ? "" : path);
	if (nowhere)
		loc->offset = 0; /* no pack the catalog knows holds these bytes: reads find none */
	else if (!col_size(st, first + 2, &loc->offset))
		return bad_row(c, row, "blob offset or size out of range");
	if (!col_size(st, first + 3, &loc->size))
		return bad_row(c, row, "blob offset or size out of range");
	if (sqlite3_column_bytes(st, first + 4) != 32)
		return bad_row(c, row, "blob has no valid SHA-256");
	memcpy(loc->sha256, sqlite3_column_blob(st, first + 4), 32);
	return 0;
}

int catalog_list_packs(catalog *c, int (*cb)(void *ctx, int64_t id, const char *relpath, uint64_t size),
		       void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_LIST_PACKS);
	int rc, r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = cb(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), (uint64_t)sqlite3_column_int64(st, 2));
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

/* Reads a backup summary row. 0, or -EUCLEAN (with the reason in c->why) when its name or a
 * count is invalid; the counts are then 0. */
static int read_summary(catalog *c, sqlite3_stmt *st, struct cb_backup_summary *b)
{
	bool name_ok = name_is_component(col_name(st, 1)); /* before col_text converts it */
	*b = (struct cb_backup_summary){
		.id = sqlite3_column_int64(st, 0),
		.name = col_text(st, 1),
		.node = col_text(st, 2),
		.cluster = col_text(st, 3),
		.datacenter = col_text(st, 4),
		.host_id = col_text(st, 5),
		.snapshot_tag = col_text(st, 6),
		.created_ns = sqlite3_column_int64(st, 7),
		.tables = (uint64_t)sqlite3_column_int64(st, 12),
		.complete = sqlite3_column_int(st, 14) != 0,
		.cassandra_version = col_text(st, 15),
		.ref = col_text(st, 16),
		.node_key = col_text(st, 17),
		.rack = col_text(st, 18),
		.schema_version = col_text(st, 19),
		.ring = col_text(st, 20),
		.tokens = col_text(st, 21),
		.base = col_text(st, 22),
		.previous = col_text(st, 23),
		.scope = col_text(st, 24),
		.clears_links = sqlite3_column_int(st, 25) != 0,
		.snapshot_ns = sqlite3_column_int64(st, 26),
	};
	double unique = sqlite3_column_double(st, 13);
	int r = 0;
	char rn[256], rk[65];
	if (!name_ok)
		r = bad_row(c, b->id, "invalid backup name");
	else if (store_ref_split(b->ref, rn, rk) < 0 || strcmp(rn, b->name) != 0 ||
		 (*rk && strcmp(rk, b->node_key) != 0))
		r = bad_row(c, b->id, "invalid backup ref");
	else if (!col_size(st, 8, &b->files) || !col_size(st, 9, &b->bytes) ||
		 !col_size(st, 10, &b->new_bytes) || !col_size(st, 11, &b->stored_bytes) ||
		 !(unique >= 0 && unique <= (double)CB_SIZE_MAX))
		r = bad_row(c, b->id, "size out of range");
	if (r < 0) {
		b->files = b->bytes = b->new_bytes = b->stored_bytes = b->tables = 0;
		b->invalid = c->why;
		return r;
	}
	b->unique_bytes = (uint64_t)unique;
	return 0;
}

int catalog_get_backup(catalog *c, const char *ref,
		       int (*cb)(void *ctx, const struct cb_backup_summary *b), void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_GET_BACKUP_BY_NAME);
	bind_text(st, 1, ref);
	sqlite3_bind_int(st, 2, 0);
	int r = step_one(c, st);
	if (r != 1)
		return r;
	struct cb_backup_summary b;
	r = read_summary(c, st, &b);
	if (r == 0)
		r = cb(ctx, &b);
	return done(c, st, r ? r : 1);
}

int catalog_find_backups(catalog *c, const char *name,
			 int (*cb)(void *ctx, const struct cb_backup_summary *b), void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_GET_BACKUP_BY_NAME);
	bind_text(st, 1, name);
	sqlite3_bind_int(st, 2, 1);
	int rc, r = 0, n = 0;
	struct cb_backup_summary b;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = read_summary(c, st, &b);
		if (r == 0 && (r = cb(ctx, &b)) == 0)
			n++;
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, n) : done(c, st, cerr(c, rc));
}

int catalog_backup_tables(catalog *c, int64_t backup_id,
			  int (*cb)(void *ctx, const struct cb_table_row *t), void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_BACKUP_TABLES);
	sqlite3_bind_int64(st, 1, backup_id);
	int rc, r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cb_table_row t = {
			.row = sqlite3_column_int64(st, 0),
			.keyspace = col_name(st, 2),
			.table = col_name(st, 3),
			.table_id = col_text(st, 4),
			.schema_cql = (const char *)sqlite3_column_text(st, 5),
		};
		if (!name_is_component(t.keyspace))
			r = bad_row(c, sqlite3_column_int64(st, 1), "invalid keyspace name");
		else if (!name_is_component(t.table))
			r = bad_row(c, t.row, "invalid table name");
		else
			r = cb(ctx, &t);
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

/* One row of ST_TABLE_FILES, checked. 0 or -EUCLEAN. */
static int read_file_row(catalog *c, sqlite3_stmt *st, struct cb_file_row *f)
{
	int64_t row = sqlite3_column_int64(st, 0);
	bool in_dir = sqlite3_column_int64(st, 1) != 0;
	*f = (struct cb_file_row){
		.dir = !in_dir ? "" : sqlite3_column_type(st, 2) == SQLITE_NULL ? NULL : col_name(st, 2),
		.name = col_name(st, 3),
		.mode = (uint32_t)sqlite3_column_int64(st, 5),
		.uid = (uint32_t)sqlite3_column_int64(st, 6),
		.gid = (uint32_t)sqlite3_column_int64(st, 7),
		.mtime_ns = sqlite3_column_int64(st, 8),
	};
	if (!f->dir)
		return bad_row(c, row, "file in an index directory the catalog does not have");
	if (in_dir && !name_is_component(f->dir))
		return bad_row(c, row, "invalid index directory name");
	if (!name_is_component(f->name))
		return bad_row(c, row, "invalid file name");
	if (!col_size(st, 4, &f->size))
		return bad_row(c, row, "file size out of range");
	int r = read_loc(c, st, 9, row, &f->loc);
	if (r == 0 && f->loc.size != f->size)
		r = bad_row(c, row, "file size differs from its blob's");
	return r;
}

int catalog_node_files(catalog *c, int64_t backup_id,
		       int (*cb)(void *ctx, const struct cb_file_row *f), void *ctx)
{
	return catalog_table_files(c, -backup_id, cb, ctx);
}

int catalog_table_files(catalog *c, int64_t table_row,
			int (*cb)(void *ctx, const struct cb_file_row *f), void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_TABLE_FILES);
	sqlite3_bind_int64(st, 1, table_row);
	int rc, r = 0;
	struct cb_file_row f;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((r = read_file_row(c, st, &f)) == 0)
			r = cb(ctx, &f);
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

int catalog_list_backups(catalog *c, int (*cb)(void *ctx, const struct cb_backup_summary *b),
			 void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_LIST_BACKUPS);
	int rc, r = 0;
	struct cb_backup_summary b;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		read_summary(c, st, &b); /* an invalid row is handed on flagged (b.invalid) */
		r = cb(ctx, &b);
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

/* --- tree -------------------------------------------------------------------------------- */

/* The largest row id an inode number holds: CB_INO_ROW(CB_INO(kind, row)) == row for rows
 * 0 ..  NODE_ROW_MAX; a larger or negative id would wrap to another row's inode. */
#define NODE_ROW_MAX ((int64_t)(CB_INO_VIEW >> 3) - 1)

/* Reads a node row. false when the row is invalid (a name that is not one path component, a
 * size out of range, an id no inode number can hold): the tree leaves such a row out, as if it
 * were not there. */
static bool read_node(sqlite3_stmt *st, enum cb_node_kind kind, struct cb_node *n)
{
	const char *name = col_name(st, 1);
	int64_t id = sqlite3_column_int64(st, 0);
	if (!name_is_component(name) || !col_size(st, 2, &n->size) || id < 0 || id > NODE_ROW_MAX)
		return false;
	n->kind = kind;
	n->ino = CB_INO(kind, id);
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->mode = (uint32_t)sqlite3_column_int64(st, 3);
	int64_t uid = sqlite3_column_int64(st, 4), gid = sqlite3_column_int64(st, 5);
	n->uid = uid < 0 ? CB_OWNER_UNSET : (uint32_t)uid;
	n->gid = gid < 0 ? CB_OWNER_UNSET : (uint32_t)gid;
	n->mtime_ns = sqlite3_column_int64(st, 6);
	n->mode = (n->mode & 07777) | (kind == CB_NODE_FILE ? S_IFREG : S_IFDIR);
	return true;
}

/* The root and /backups: the protection of the newest backup's data directory (a user who
 * could not read the data directory cannot list its backups), 0755 and the mounting user when
 * no backup recorded one. */
static void special_node(catalog *c, uint64_t ino, struct cb_node *n)
{
	*n = (struct cb_node){
		.ino = ino,
		.kind = CB_NODE_SPECIAL,
		.mode = S_IFDIR | 0755,
		.uid = CB_OWNER_UNSET,
		.gid = CB_OWNER_UNSET,
	};
	snprintf(n->name, sizeof(n->name), "%s",
		 ino == CB_INO_ROOT ? "" : ino == CB_INO_BACKUPS ? "backups" : "clusters");
	sqlite3_stmt *st = stmt(c, ST_ROOT_ATTR);
	if (sqlite3_step(st) == SQLITE_ROW) {
		n->mode = S_IFDIR | ((uint32_t)sqlite3_column_int64(st, 0) & 07777);
		n->uid = (uint32_t)sqlite3_column_int64(st, 1);
		n->gid = (uint32_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
}

/* Runs a node query bound to (?1 = id, ?2 = name) and reads its single row. */
static int node_query(catalog *c, enum stmt s, enum cb_node_kind kind, int64_t id,
		      const char *name, struct cb_node *out)
{
	sqlite3_stmt *st = stmt(c, s);
	sqlite3_bind_int64(st, 1, id);
	if (name)
		bind_text(st, 2, name);
	int r = step_one(c, st);
	if (r == 0)
		return -ENOENT;
	if (r < 0)
		return r;
	return done(c, st, read_node(st, kind, out) ? 0 : -ENOENT);
}

bool catalog_node_mutable(uint64_t ino)
{
	return CB_INO_KIND(ino) == CB_NODE_SPECIAL || CB_INO_KIND(ino) == CB_NODE_GROUP;
}

/* GROUP levels (catalog.h): /backups/<name> of several nodes, /clusters/<cluster>,
 * /clusters/<cluster>/<name>, /clusters/<cluster>/<name>/<dc>. */
enum { GROUP_NAME = 1, GROUP_CLUSTER = 2, GROUP_CLUSTER_NAME = 3, GROUP_DC = 4 };

/* A row of GROUP_COLS read as a GROUP of level over its backup row. */
static bool read_group(sqlite3_stmt *st, int level, struct cb_node *n)
{
	if (!read_node(st, CB_NODE_GROUP, n))
		return false;
	int64_t rep = CB_INO_ROW(n->ino);
	if (rep > (NODE_ROW_MAX >> 3))
		return false;
	n->ino = CB_INO(CB_NODE_GROUP, (rep << 3) | level);
	return true;
}

/* Calls cb for each row of s (?1 = id, ?2 = name or NULL for all): GROUPs of level, except
 * that /backups shows a name of one node backup as that BACKUP itself. */
static int walk_groups(catalog *c, enum stmt s, int64_t id, const char *name, int level,
		       int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	sqlite3_stmt *st = stmt(c, s);
	sqlite3_bind_int64(st, 1, id);
	if (name)
		bind_text(st, 2, name);
	else
		sqlite3_bind_null(st, 2);
	int rc, r = 0;
	struct cb_node n;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		bool one = s == ST_TOP_BACKUPS && sqlite3_column_int64(st, 7) == 1;
		if (one ? read_node(st, CB_NODE_BACKUP, &n) : read_group(st, level, &n))
			r = cb(ctx, &n);
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

struct set_entry {
	struct cb_node n;
	char key[65];
};

/* How many characters of v[i]'s node key set it apart from every other entry of its name
 * (at least 8; 0 when no other entry has its name). Node keys of one backup name differ, so
 * name-PREFIX names are unique: two of one length differ in the prefix, two of different
 * lengths in length. */
static size_t key_chars_needed(const struct set_entry *v, size_t n, size_t i)
{
	size_t need = 0;
	for (size_t j = 0; j < n; j++) {
		if (j == i || strcmp(v[i].n.name, v[j].n.name) != 0)
			continue;
		size_t common = 0;
		while (v[i].key[common] && v[i].key[common] == v[j].key[common])
			common++;
		size_t k = common + 1 < 8 ? 8 : common + 1;
		need = k > need ? k : need;
	}
	return need;
}

/* Is name another entry's than v[i]'s: a node name kept as it is (need 0), or a name with a
 * key made already (entries before i, named in order)? */
static bool name_taken(const struct set_entry *v, size_t n, size_t i, const char *name,
		       const size_t *need)
{
	for (size_t j = 0; j < n; j++)
		if (j != i && (j < i || !need[j]) && !strcmp(v[j].n.name, name))
			return true;
	return false;
}

/* Names v[i] NAME-KEY with at least need[i] characters of its key, more while that is the name
 * of another of the set (a node whose own name is "cass-2b2b2b2b" beside two called "cass",
 * one of whose host ids begins 2b2b2b2b: two entries of one name made the directory fail).
 * false when no length sets it apart. */
static bool name_apart(struct set_entry *v, size_t n, size_t i, const size_t *need)
{
	size_t l = strlen(v[i].n.name), keylen = strlen(v[i].key);
	char name[sizeof(v[i].n.name)];
	/* a key shorter than need (a node name, for a backup without a host id) goes whole */
	for (size_t k = need[i] < keylen ? need[i] : keylen; k <= keylen && l + 1 + k < sizeof(name); k++) {
		if (k && k < keylen && v[i].key[k - 1] == '-')
			continue; /* a host id's dash does not end a name */
		snprintf(name, sizeof(name), "%s-%.*s", v[i].n.name, (int)k, v[i].key);
		if (!name_taken(v, n, i, name, need)) {
			memcpy(v[i].n.name, name, sizeof(name));
			return true;
		}
	}
	return false;
}

/* The node backups of a level-1 or level-4 group: BACKUP nodes named by node name, or node
 * name-KEY8 (the first 8 characters of the node key, more where two keys share those) where
 * two share a node name; through CB_INO_VIEW in the cluster view. */
static int walk_set(catalog *c, int64_t rep, int level,
		    int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	sqlite3_stmt *st = stmt(c, ST_SET_NODES);
	sqlite3_bind_int64(st, 1, rep);
	sqlite3_bind_int(st, 3, level == GROUP_NAME ? 1 : 4);
	struct set_entry *v = NULL;
	size_t n = 0;
	int rc, r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct set_entry e;
		if (!read_node(st, CB_NODE_BACKUP, &e.n))
			continue;
		snprintf(e.key, sizeof(e.key), "%s", col_text(st, 7));
		struct set_entry *w = realloc(v, (n + 1) * sizeof(*v));
		if (!w) {
			r = -ENOMEM;
			break;
		}
		v = w;
		v[n++] = e;
	}
	r = r ? done(c, st, r) : rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
	size_t *need = r == 0 ? calloc(n + 1, sizeof(*need)) : NULL;
	if (r == 0 && !need)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		need[i] = key_chars_needed(v, n, i); /* before any name changes */
	for (size_t i = 0; r == 0 && i < n; i++)
		if (need[i] && !name_apart(v, n, i, need))
			v[i].n.name[0] = '\0'; /* none (NODE-WHOLEKEY is another node's name): not shown */
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (level == GROUP_DC)
			v[i].n.ino |= CB_INO_VIEW;
		if (name_is_component(v[i].n.name))
			r = cb(ctx, &v[i].n);
	}
	free(need);
	free(v);
	return r;
}

/* Hands on nodes with the parent's CB_INO_VIEW bit. */
struct viewed {
	int (*cb)(void *ctx, const struct cb_node *n);
	void *ctx;
	uint64_t view;
};

static int add_view(void *ctx, const struct cb_node *n)
{
	const struct viewed *v = ctx;
	struct cb_node m = *n;
	m.ino |= v->view;
	return v->cb(v->ctx, &m);
}

struct wanted {
	const char *name;
	struct cb_node *out;
};

static int take_named(void *ctx, const struct cb_node *n)
{
	struct wanted *w = ctx;
	if (strcmp(n->name, w->name) != 0)
		return 0;
	*w->out = *n;
	return 1;
}

struct wanted_ino {
	uint64_t ino;
	struct cb_node *out;
};

/* take_named's twin: the node of an inode number. */
static int take_ino(void *ctx, const struct cb_node *n)
{
	struct wanted_ino *w = ctx;
	if (n->ino != w->ino)
		return 0;
	*w->out = *n;
	return 1;
}

static int found(int r)
{
	return r == 1 ? 0 : r == 0 ? -ENOENT : r;
}

int catalog_node_get(catalog *c, uint64_t ino, struct cb_node *out)
{
	int64_t row = CB_INO_ROW(ino);
	uint64_t view = ino & CB_INO_VIEW;
	int r;
	switch (CB_INO_KIND(ino)) {
	case CB_NODE_SPECIAL:
		if (ino != CB_INO_ROOT && ino != CB_INO_BACKUPS && ino != CB_INO_CLUSTERS)
			return -ENOENT;
		special_node(c, ino, out);
		return 0;
	case CB_NODE_GROUP: {
		if (view || (row & 7) < GROUP_NAME || (row & 7) > GROUP_DC)
			return -ENOENT;
		sqlite3_stmt *st = stmt(c, ST_GROUP_REP);
		sqlite3_bind_int64(st, 1, row >> 3);
		sqlite3_bind_int(st, 2, (int)(row & 7));
		r = step_one(c, st);
		if (r <= 0)
			return r == 0 ? -ENOENT : r;
		return done(c, st, read_group(st, (int)(row & 7), out) ? 0 : -ENOENT);
	}
	case CB_NODE_BACKUP: r = node_query(c, ST_GET_BACKUP, CB_NODE_BACKUP, row, NULL, out); break;
	case CB_NODE_KEYSPACE: r = node_query(c, ST_GET_KEYSPACE, CB_NODE_KEYSPACE, row, NULL, out); break;
	case CB_NODE_TABLE: r = node_query(c, ST_GET_TABLE, CB_NODE_TABLE, row, NULL, out); break;
	case CB_NODE_DIR: r = node_query(c, ST_GET_DIR, CB_NODE_DIR, row, NULL, out); break;
	case CB_NODE_FILE: r = node_query(c, ST_GET_FILE, CB_NODE_FILE, row, NULL, out); break;
	case CB_NODE_CONF: r = node_query(c, ST_CONF_DIR, CB_NODE_CONF, row, NULL, out); break;
	default: return -ENOENT;
	}
	if (r == 0)
		out->ino |= view;
	return r;
}

/* Binds a node-file statement: ?1 the backup row, ?3 the directory (0 or CONF_DIR_ID). */
static sqlite3_stmt *node_files_stmt(catalog *c, enum stmt s, int64_t backup, bool conf)
{
	sqlite3_stmt *st = stmt(c, s);
	sqlite3_bind_int64(st, 1, backup);
	sqlite3_bind_int64(st, 3, conf ? CONF_DIR_ID_N : 0);
	return st;
}

/* A backup's own file (in its conf directory when conf) by name. */
static int lookup_node_file(catalog *c, int64_t backup, bool conf, const char *name,
			    struct cb_node *out)
{
	sqlite3_stmt *st = node_files_stmt(c, ST_LOOKUP_NODE_FILE, backup, conf);
	bind_text(st, 2, name);
	int r = step_one(c, st);
	if (r <= 0)
		return r == 0 ? -ENOENT : r;
	return done(c, st, read_node(st, CB_NODE_FILE, out) ? 0 : -ENOENT);
}

/* Inside a backup's directory: a keyspace, else one of the node's own files (catalog.h). */
static int lookup_in_backup(catalog *c, int64_t row, const char *name, struct cb_node *out)
{
	int r = node_query(c, ST_LOOKUP_KEYSPACE, CB_NODE_KEYSPACE, row, name, out);
	if (r == -ENOENT)
		r = lookup_node_file(c, row, false, name, out);
	if (r == -ENOENT && !strcmp(name, MANIFEST_CONF_DIR))
		r = node_query(c, ST_CONF_DIR, CB_NODE_CONF, row, NULL, out);
	return r;
}

/* A child of a GROUP or of /backups or /clusters, by name. */
static int lookup_group(catalog *c, uint64_t parent, const char *name, struct cb_node *out)
{
	struct wanted w = {name, out};
	int64_t row = CB_INO_ROW(parent);
	if (parent == CB_INO_BACKUPS)
		return found(walk_groups(c, ST_TOP_BACKUPS, 0, name, GROUP_NAME, take_named, &w));
	if (parent == CB_INO_CLUSTERS)
		return found(walk_groups(c, ST_CLUSTERS, 0, name, GROUP_CLUSTER, take_named, &w));
	switch (row & 7) {
	case GROUP_NAME: return found(walk_set(c, row >> 3, GROUP_NAME, take_named, &w));
	case GROUP_CLUSTER:
		return found(walk_groups(c, ST_CLUSTER_NAMES, row >> 3, name, GROUP_CLUSTER_NAME,
					 take_named, &w));
	case GROUP_CLUSTER_NAME:
		return found(walk_groups(c, ST_CLUSTER_DCS, row >> 3, name, GROUP_DC, take_named, &w));
	case GROUP_DC: return found(walk_set(c, row >> 3, GROUP_DC, take_named, &w));
	default: return -ENOENT;
	}
}

int catalog_node_lookup(catalog *c, uint64_t parent, const char *name, struct cb_node *out)
{
	int64_t row = CB_INO_ROW(parent);
	uint64_t view = parent & CB_INO_VIEW;
	int r;
	switch (CB_INO_KIND(parent)) {
	case CB_NODE_SPECIAL:
		if (parent == CB_INO_ROOT) {
			if (strcmp(name, "backups") != 0 && strcmp(name, "clusters") != 0)
				return -ENOENT;
			special_node(c, *name == 'b' ? CB_INO_BACKUPS : CB_INO_CLUSTERS, out);
			return 0;
		}
		if (parent != CB_INO_BACKUPS && parent != CB_INO_CLUSTERS)
			return -ENOENT;
		return lookup_group(c, parent, name, out);
	case CB_NODE_GROUP:
		return lookup_group(c, parent, name, out);
	case CB_NODE_BACKUP:
		r = lookup_in_backup(c, row, name, out);
		break;
	case CB_NODE_CONF:
		r = lookup_node_file(c, row, true, name, out);
		break;
	case CB_NODE_KEYSPACE:
		r = node_query(c, ST_LOOKUP_TABLE, CB_NODE_TABLE, row, name, out);
		break;
	case CB_NODE_TABLE:
		r = node_query(c, ST_LOOKUP_DIR, CB_NODE_DIR, row, name, out);
		if (r == -ENOENT)
			r = node_query(c, ST_LOOKUP_TABLE_FILE, CB_NODE_FILE, row, name, out);
		break;
	case CB_NODE_DIR:
		r = node_query(c, ST_LOOKUP_DIR_FILE, CB_NODE_FILE, row, name, out);
		break;
	case CB_NODE_FILE:
		return -ENOTDIR;
	default:
		return -ENOENT;
	}
	if (r == 0)
		out->ino |= view;
	return r;
}

static int list_rows(catalog *c, sqlite3_stmt *st, enum cb_node_kind kind,
		     int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	int rc, r = 0;
	struct cb_node n;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (read_node(st, kind, &n)) /* an invalid row hides only itself */
			r = cb(ctx, &n);
	}
	if (r != 0)
		return done(c, st, r);
	return rc == SQLITE_DONE ? done(c, st, 0) : done(c, st, cerr(c, rc));
}

static int list_query(catalog *c, enum stmt s, enum cb_node_kind kind, int64_t id,
		      int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	sqlite3_stmt *st = stmt(c, s);
	sqlite3_bind_int64(st, 1, id);
	return list_rows(c, st, kind, cb, ctx);
}

/* A backup's directory: its keyspaces, its conf directory, its own files. */
static int list_backup(catalog *c, int64_t row, int (*cb)(void *ctx, const struct cb_node *n),
		       void *ctx)
{
	int r = list_query(c, ST_LIST_KEYSPACES, CB_NODE_KEYSPACE, row, cb, ctx);
	r = r ?: list_query(c, ST_CONF_DIR, CB_NODE_CONF, row, cb, ctx);
	return r ?: list_rows(c, node_files_stmt(c, ST_LIST_NODE_FILES, row, false), CB_NODE_FILE,
			      cb, ctx);
}

static int list_group(catalog *c, uint64_t parent,
		      int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	int64_t row = CB_INO_ROW(parent);
	if (parent == CB_INO_BACKUPS)
		return walk_groups(c, ST_TOP_BACKUPS, 0, NULL, GROUP_NAME, cb, ctx);
	if (parent == CB_INO_CLUSTERS)
		return walk_groups(c, ST_CLUSTERS, 0, NULL, GROUP_CLUSTER, cb, ctx);
	switch (row & 7) {
	case GROUP_NAME: return walk_set(c, row >> 3, GROUP_NAME, cb, ctx);
	case GROUP_CLUSTER:
		return walk_groups(c, ST_CLUSTER_NAMES, row >> 3, NULL, GROUP_CLUSTER_NAME, cb, ctx);
	case GROUP_CLUSTER_NAME:
		return walk_groups(c, ST_CLUSTER_DCS, row >> 3, NULL, GROUP_DC, cb, ctx);
	case GROUP_DC: return walk_set(c, row >> 3, GROUP_DC, cb, ctx);
	default: return -ENOENT;
	}
}

int catalog_node_list(catalog *c, uint64_t parent,
		      int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	int64_t row = CB_INO_ROW(parent);
	struct viewed vw = {cb, ctx, parent & CB_INO_VIEW};
	int r;
	struct cb_node n;
	switch (CB_INO_KIND(parent)) {
	case CB_NODE_SPECIAL:
		if (parent == CB_INO_ROOT) {
			special_node(c, CB_INO_BACKUPS, &n);
			if ((r = cb(ctx, &n)) != 0)
				return r;
			special_node(c, CB_INO_CLUSTERS, &n);
			return cb(ctx, &n);
		}
		if (parent != CB_INO_BACKUPS && parent != CB_INO_CLUSTERS)
			return -ENOENT;
		return list_group(c, parent, cb, ctx);
	case CB_NODE_GROUP:
		return list_group(c, parent, cb, ctx);
	case CB_NODE_BACKUP:
		return list_backup(c, row, add_view, &vw);
	case CB_NODE_CONF:
		return list_rows(c, node_files_stmt(c, ST_LIST_NODE_FILES, row, true), CB_NODE_FILE,
				 add_view, &vw);
	case CB_NODE_KEYSPACE:
		return list_query(c, ST_LIST_TABLES, CB_NODE_TABLE, row, add_view, &vw);
	case CB_NODE_TABLE:
		r = list_query(c, ST_LIST_DIRS, CB_NODE_DIR, row, add_view, &vw);
		if (r != 0)
			return r;
		return list_query(c, ST_LIST_TABLE_FILES, CB_NODE_FILE, row, add_view, &vw);
	case CB_NODE_DIR:
		return list_query(c, ST_LIST_DIR_FILES, CB_NODE_FILE, row, add_view, &vw);
	case CB_NODE_FILE:
		return -ENOTDIR;
	default:
		return -ENOENT;
	}
}

int catalog_file_blob(catalog *c, uint64_t ino, struct cb_blob_loc *out)
{
	if (CB_INO_KIND(ino) != CB_NODE_FILE)
		return -ENOENT;
	sqlite3_stmt *st = stmt(c, ST_FILE_BLOB);
	sqlite3_bind_int64(st, 1, CB_INO_ROW(ino));
	int r = step_one(c, st);
	if (r == 0)
		return -ENOENT;
	if (r < 0)
		return r;
	r = read_loc(c, st, 0, CB_INO_ROW(ino), out);
	if (r == 0 && sqlite3_column_int64(st, 5) != (sqlite3_int64)out->size)
		r = bad_row(c, CB_INO_ROW(ino), "file size differs from its blob's");
	return done(c, st, r);
}

int catalog_node_xattrs(catalog *c, uint64_t ino,
			int (*cb)(void *ctx, const char *name, const char *value), void *ctx)
{
	sqlite3_stmt *st;
	int r;
	char buf[80];
	switch (CB_INO_KIND(ino)) {
	case CB_NODE_BACKUP:
		st = stmt(c, ST_XATTR_BACKUP);
		sqlite3_bind_int64(st, 1, CB_INO_ROW(ino));
		if ((r = step_one(c, st)) <= 0)
			return r == 0 ? -ENOENT : r;
		format_time_utc(sqlite3_column_int64(st, 3), buf, sizeof(buf));
		if ((r = cb(ctx, "user.cassbackup.node", col_text(st, 0))) == 0 &&
		    (r = cb(ctx, "user.cassbackup.cluster", col_text(st, 1))) == 0 &&
		    (r = cb(ctx, "user.cassbackup.datacenter", col_text(st, 2))) == 0 &&
		    (r = cb(ctx, "user.cassbackup.created", buf)) == 0 &&
		    (r = cb(ctx, "user.cassbackup.snapshot_tag", col_text(st, 4))) == 0 &&
		    (r = cb(ctx, "user.cassbackup.name", col_text(st, 10))) == 0) {
			/* what was recorded of the node, when it was */
			static const char *const more[] = {"host_id", "rack", "tokens",
							   "release_version", "schema_version",
							   "base", "previous"};
			static const int cols[] = {5, 6, 7, 8, 9, 11, 12};
			for (size_t i = 0; r == 0 && i < sizeof(cols) / sizeof(*cols); i++) {
				char key[64];
				snprintf(key, sizeof(key), "user.cassbackup.%s", more[i]);
				if (*col_text(st, cols[i]))
					r = cb(ctx, key, col_text(st, cols[i]));
			}
		}
		return done(c, st, r);
	case CB_NODE_TABLE:
		st = stmt(c, ST_XATTR_TABLE);
		sqlite3_bind_int64(st, 1, CB_INO_ROW(ino));
		if ((r = step_one(c, st)) <= 0)
			return r == 0 ? -ENOENT : r;
		if (!name_is_component(col_name(st, 1)) || !name_is_component(col_name(st, 2)))
			return done(c, st, bad_row(c, CB_INO_ROW(ino), "invalid keyspace or table name"));
		if ((r = cb(ctx, "user.cassbackup.table_id", col_text(st, 0))) == 0 &&
		    (r = cb(ctx, "user.cassbackup.keyspace", col_text(st, 1))) == 0)
			r = cb(ctx, "user.cassbackup.table", col_text(st, 2));
		return done(c, st, r);
	case CB_NODE_FILE:
		st = stmt(c, ST_XATTR_FILE);
		sqlite3_bind_int64(st, 1, CB_INO_ROW(ino));
		if ((r = step_one(c, st)) <= 0)
			return r == 0 ? -ENOENT : r;
		if (sqlite3_column_bytes(st, 0) != 32)
			return done(c, st, bad_row(c, CB_INO_ROW(ino), "blob has no valid SHA-256"));
		hex_encode(sqlite3_column_blob(st, 0), 32, buf);
		return done(c, st, cb(ctx, "user.cassbackup.sha256", buf));
	default:
		return 0;
	}
}

/* Where backup row id of name is below /backups, into out: "NAME" for a node backup alone,
 * else "NAME/ENTRY" (catalog.h). 0 or -errno. */
static int backup_dir_name(catalog *c, int64_t id, const char *name, char *out, size_t n)
{
	sqlite3_stmt *st = stmt(c, ST_NAME_SET);
	bind_text(st, 1, name);
	int r = step_one(c, st);
	if (r <= 0)
		return r;
	int64_t alone = sqlite3_column_int64(st, 0), rep = sqlite3_column_int64(st, 1);
	done(c, st, 0);
	if (alone)
		return 0;
	struct cb_node e = {0};
	struct wanted_ino w = {CB_INO(CB_NODE_BACKUP, id), &e};
	r = walk_set(c, rep, GROUP_NAME, take_ino, &w);
	if (r < 0)
		return r;
	if (*e.name)
		snprintf(out, n, "%s/%s", name, e.name);
	return 0;
}

int catalog_file_ident(catalog *c, uint64_t ino, struct cb_file_ident *out)
{
	if (CB_INO_KIND(ino) != CB_NODE_FILE)
		return -ENOENT;
	sqlite3_stmt *st = stmt(c, ST_FILE_PATH);
	sqlite3_bind_int64(st, 1, CB_INO_ROW(ino));
	int r = step_one(c, st);
	if (r <= 0)
		return r == 0 ? -ENOENT : r;
	const char *bk = col_name(st, 0), *ks = col_name(st, 1), *t = col_name(st, 2);
	const char *dir = sqlite3_column_int64(st, 3) ? col_name(st, 4) : NULL, *name = col_name(st, 5);
	bool node_file = sqlite3_column_int64(st, 8) != 0; /* keyspace and table "" */
	char rn[256], rk[65];
	if (store_ref_split(bk, rn, rk) < 0 ||
	    (node_file ? *ks || *t : !name_is_component(ks) || !name_is_component(t)) ||
	    (dir && !name_is_component(dir)) || !name_is_component(name))
		return done(c, st, bad_row(c, CB_INO_ROW(ino), "invalid name on the file's path"));
	/* the bytes are checked against the manifest of the backup named here: it must be the one
	 * whose directory lists the file */
	if (!sqlite3_column_int64(st, 9))
		return done(c, st, bad_row(c, CB_INO_ROW(ino), "listed under another backup's table"));
	/* name_is_component: each fits its 256 bytes; a ref its CB_REF_MAX */
	snprintf(out->backup, sizeof(out->backup), "%s", bk);
	snprintf(out->keyspace, sizeof(out->keyspace), "%s", ks);
	snprintf(out->table, sizeof(out->table), "%s", t);
	snprintf(out->dir, sizeof(out->dir), "%s", dir ? dir : "");
	snprintf(out->name, sizeof(out->name), "%s", name);
	int64_t id = sqlite3_column_int64(st, 6);
	snprintf(out->shown, sizeof(out->shown), "%s", rn);
	done(c, st, 0);
	return backup_dir_name(c, id, rn, out->shown, sizeof(out->shown));
}

int catalog_dir_count(catalog *c, uint64_t ino, struct cb_file_ident *out, size_t *count)
{
	int kind = CB_INO_KIND(ino);
	int64_t row = CB_INO_ROW(ino);
	sqlite3_stmt *st;
	if (kind == CB_NODE_TABLE) {
		st = stmt(c, ST_TABLE_FILE_COUNT);
		sqlite3_bind_int64(st, 1, row);
	} else if (kind == CB_NODE_BACKUP || kind == CB_NODE_KEYSPACE) {
		st = stmt(c, ST_BACKUP_TABLE_COUNT);
		sqlite3_bind_int64(st, kind == CB_NODE_BACKUP ? 1 : 2, row);
	} else {
		return -ENOENT;
	}
	int r = step_one(c, st);
	if (r <= 0)
		return r == 0 ? -ENOENT : r;
	const char *bk = col_name(st, 0), *ks = col_name(st, 1), *t = col_name(st, 2);
	char rn[256], rk[65];
	if (store_ref_split(bk, rn, rk) < 0 ||
	    (kind == CB_NODE_TABLE && (!name_is_component(ks) || !name_is_component(t))))
		return done(c, st, bad_row(c, row, "invalid name on the directory's path"));
	*out = (struct cb_file_ident){0};
	snprintf(out->backup, sizeof(out->backup), "%s", bk);
	snprintf(out->keyspace, sizeof(out->keyspace), "%s", ks);
	snprintf(out->table, sizeof(out->table), "%s", t);
	snprintf(out->shown, sizeof(out->shown), "%s", rn);
	int64_t id = sqlite3_column_int64(st, 3), n = sqlite3_column_int64(st, 5);
	*count = n > 0 ? (size_t)n : 0;
	done(c, st, 0);
	return backup_dir_name(c, id, rn, out->shown, sizeof(out->shown));
}

int catalog_file_path(catalog *c, uint64_t ino, char *out, size_t outlen)
{
	struct cb_file_ident f;
	int r = catalog_file_ident(c, ino, &f);
	if (r < 0)
		return r;
	int n = *f.keyspace ? snprintf(out, outlen, "%s/%s/%s/%s%s%s", f.shown, f.keyspace, f.table,
				       f.dir, *f.dir ? "/" : "", f.name)
			    : snprintf(out, outlen, "%s/%s%s%s", f.shown, f.dir, *f.dir ? "/" : "", f.name);
	return n < 0 || (size_t)n >= outlen ? -ERANGE : 0;
}

/* --- for check and export ---------------------------------------------------------------- */

/* A statement for a query that runs once per command: prepared here, finalized by the caller. */
static int prepare_once(catalog *c, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : cerr(c, rc);
}

/* Ends a walk over st: finalizes it and returns r, or SQLite's error when the walk ended with
 * one (rc is the last sqlite3_step result). */
static int finish_walk(catalog *c, sqlite3_stmt *st, int rc, int r)
{
	if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = cerr(c, rc);
	sqlite3_finalize(st);
	return r;
}

static int read_pack_row(catalog *c, sqlite3_stmt *st, struct cb_pack_row *p)
{
	sqlite3_int64 frames = sqlite3_column_int64(st, 3);
	*p = (struct cb_pack_row){.id = sqlite3_column_int64(st, 0), .path = col_name(st, 1)};
	if (!pack_path_ok(p->path))
		return bad_row(c, p->id, "invalid pack path");
	if (!col_size(st, 2, &p->size) || !col_size(st, 5, &p->index_offset) ||
	    !col_size(st, 6, &p->index_size) || frames < 0 || frames > UINT32_MAX)
		return bad_row(c, p->id, "pack size out of range");
	if (sqlite3_column_bytes(st, 4) != 32)
		return bad_row(c, p->id, "pack hash is not 32 bytes");
	p->frames = (uint32_t)frames;
	memcpy(p->table_sha256, sqlite3_column_blob(st, 4), 32);
	return 0;
}

int catalog_pack_rows(catalog *c, int (*cb)(void *ctx, const struct cb_pack_row *p), void *ctx)
{
	sqlite3_stmt *st;
	int rc = SQLITE_DONE, r = prepare_once(c, "SELECT id, path, size, frames, table_sha256,"
						" index_offset, index_size FROM packs ORDER BY path", &st);
	if (r < 0)
		return r;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cb_pack_row p;
		r = read_pack_row(c, st, &p) ?: cb(ctx, &p);
	}
	return finish_walk(c, st, rc, r);
}

int catalog_pack_blobs(catalog *c, int64_t pack_id,
		       int (*cb)(void *ctx, const unsigned char sha256[32], uint64_t size,
				 uint64_t offset),
		       void *ctx)
{
	sqlite3_stmt *st;
	int rc = SQLITE_DONE, r = prepare_once(c, "SELECT b.id, b.sha256, b.size, l.offset FROM blob_locs l"
						" JOIN blobs b ON b.id = l.blob_id WHERE l.pack_id = ?1"
						" ORDER BY l.offset", &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, pack_id);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t size, off;
		int64_t row = sqlite3_column_int64(st, 0);
		if (sqlite3_column_bytes(st, 1) != 32)
			r = bad_row(c, row, "blob has no valid SHA-256");
		else if (!col_size(st, 2, &size) || !col_size(st, 3, &off))
			r = bad_row(c, row, "blob size or offset out of range");
		else
			r = cb(ctx, sqlite3_column_blob(st, 1), size, off);
	}
	return finish_walk(c, st, rc, r);
}

int catalog_blob_location(catalog *c, const unsigned char sha256[32], uint64_t size,
			  struct cb_blob_loc *out)
{
	sqlite3_stmt *st;
	int r = prepare_once(c, "SELECT b.id, b.pack_id, p.path, b.offset, b.size, b.sha256 FROM blobs b"
				" LEFT JOIN packs p ON p.id = b.pack_id"
				" WHERE b.sha256 = ?1 AND b.size = ?2", &st);
	if (r < 0)
		return r;
	sqlite3_bind_blob(st, 1, sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(out, 0, sizeof(*out));
		r = read_loc(c, st, 1, sqlite3_column_int64(st, 0), out) ?: 1;
	}
	return finish_walk(c, st, rc, r);
}

/* --- prune: what each pack holds, and moving blobs to a new pack ----------------------------- *
 * Self-contained (prepared per call: prune runs each a few times per pack, not per read). */

/* Steps st to its end, handing each row to row(); finalizes it. */
static int each_row(catalog *c, sqlite3_stmt *st, int (*row)(catalog *c, sqlite3_stmt *st, void *ctx),
		    void *ctx)
{
	int rc, r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = row(c, st, ctx);
	if (r == 0 && rc != SQLITE_DONE)
		r = cerr(c, rc);
	sqlite3_finalize(st);
	return r;
}

struct usage_ctx {
	int (*cb)(void *ctx, const struct cb_pack_usage *u);
	void *ctx;
};

static int usage_row(catalog *c, sqlite3_stmt *st, void *ctx)
{
	struct usage_ctx *uc = ctx;
	struct cb_pack_usage u = {.id = sqlite3_column_int64(st, 0), .path = col_name(st, 1)};
	if (!pack_path_ok(u.path))
		return bad_row(c, u.id, "invalid pack path");
	if (!col_size(st, 2, &u.size) || !col_size(st, 3, &u.blobs) || !col_size(st, 4, &u.blob_bytes) ||
	    !col_size(st, 5, &u.used) || !col_size(st, 6, &u.used_bytes) ||
	    u.used > u.blobs || u.used_bytes > u.blob_bytes)
		return bad_row(c, u.id, "pack sizes out of range");
	return uc->cb(uc->ctx, &u);
}

int catalog_pack_usage(catalog *c, int (*cb)(void *ctx, const struct cb_pack_usage *u), void *ctx)
{
	static const char sql[] =
		"SELECT p.id, p.path, p.size,"
		" (SELECT COUNT(*) FROM blob_locs l WHERE l.pack_id = p.id),"
		" (SELECT COALESCE(SUM(b.size), 0) FROM blob_locs l JOIN blobs b ON b.id = l.blob_id"
		"   WHERE l.pack_id = p.id),"
		" (SELECT COUNT(*) FROM blobs b WHERE b.pack_id = p.id AND"
		"   EXISTS (SELECT 1 FROM files f WHERE f.blob_id = b.id)),"
		" (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.pack_id = p.id AND"
		"   EXISTS (SELECT 1 FROM files f WHERE f.blob_id = b.id))"
		" FROM packs p ORDER BY p.id";
	sqlite3_stmt *st;
	int r = prepare_once(c, sql, &st);
	struct usage_ctx uc = {cb, ctx};
	return r < 0 ? r : each_row(c, st, usage_row, &uc);
}

struct live_ctx {
	int (*cb)(void *ctx, const struct cb_live_blob *b);
	void *ctx;
};

static bool table_id_ok(const char *id)
{
	size_t n = strlen(id);
	return (n == 0 || n == 32) && strspn(id, "0123456789abcdef") == n;
}

static int live_row(catalog *c, sqlite3_stmt *st, void *ctx)
{
	struct live_ctx *lc = ctx;
	bool dir_ok = name_is_component(col_name(st, 7)); /* before col_text converts it */
	struct cb_live_blob b = {
		.blob_id = sqlite3_column_int64(st, 0),
		.keyspace = col_name(st, 4), .table = col_name(st, 5), .table_id = col_text(st, 6),
		.dir = col_text(st, 7), .name = col_name(st, 8),
		.mode = (uint32_t)sqlite3_column_int64(st, 9) & 07777,
		.uid = (uint32_t)sqlite3_column_int64(st, 10), .gid = (uint32_t)sqlite3_column_int64(st, 11),
		.mtime_ns = sqlite3_column_int64(st, 12),
	};
	if (sqlite3_column_bytes(st, 1) != 32)
		return bad_row(c, b.blob_id, "blob has no valid SHA-256");
	memcpy(b.sha256, sqlite3_column_blob(st, 1), 32);
	if (!col_size(st, 2, &b.size) || !col_size(st, 3, &b.offset))
		return bad_row(c, b.blob_id, "blob size or offset out of range");
	bool node_file = sqlite3_column_int64(st, 13) != 0; /* keyspace NULL, dir "" or conf */
	if (node_file) {
		b.keyspace = b.table = b.table_id = NULL;
		if (!name_is_component(b.name) || (*b.dir && strcmp(b.dir, MANIFEST_CONF_DIR)))
			return bad_row(c, b.blob_id, "invalid name of a node file using the blob");
		return lc->cb(lc->ctx, &b);
	}
	if (!name_is_component(b.keyspace) || !name_is_component(b.table) || !table_id_ok(b.table_id) ||
	    strlen(b.table) + strlen(b.table_id) > 200 || !name_is_component(b.name) ||
	    (*b.dir && (b.dir[0] != '.' || !dir_ok)))
		return bad_row(c, b.blob_id, "invalid name on the path of a file using the blob");
	return lc->cb(lc->ctx, &b);
}

int catalog_pack_live_blobs(catalog *c, int64_t pack_id,
			    int (*cb)(void *ctx, const struct cb_live_blob *b), void *ctx)
{
	static const char sql[] =
		"SELECT b.id, b.sha256, b.size, b.offset, k.name, t.name, t.table_id,"
		" COALESCE(" DIR_NAME("f", "d") ", ''), f.name, f.mode, f.uid, f.gid, f.mtime_ns,"
		" f.table_row < 0 FROM blobs b"
		" JOIN files f ON f.id = (SELECT MIN(f2.id) FROM files f2 WHERE f2.blob_id = b.id)"
		" LEFT JOIN tables t ON t.id = f.table_row LEFT JOIN keyspaces k ON k.id = t.keyspace_id"
		" LEFT JOIN dirs d ON d.id = f.dir_id"
		" WHERE b.pack_id = ?1 ORDER BY b.offset, b.id";
	sqlite3_stmt *st;
	int r = prepare_once(c, sql, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, pack_id);
	struct live_ctx lc = {cb, ctx};
	return each_row(c, st, live_row, &lc);
}

int catalog_prefer_pack(catalog *c, int64_t pack_id)
{
	static const char sql[] =
		"UPDATE blobs SET (pack_id, offset) = (SELECT l.pack_id, l.offset FROM blob_locs l"
		"  WHERE l.blob_id = blobs.id AND l.pack_id = ?1)"
		" WHERE id IN (SELECT blob_id FROM blob_locs WHERE pack_id = ?1)";
	sqlite3_stmt *st;
	int r = prepare_once(c, sql, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, pack_id);
	int rc = sqlite3_step(st);
	r = rc == SQLITE_DONE ? 0 : cerr(c, rc);
	sqlite3_finalize(st);
	return r;
}

const char *catalog_why(catalog *cat, int r, char *buf, size_t n)
{
	const char *sql = catalog_errmsg(cat);
	/* SQLite's message is the reason only when SQLite failed; after a check of ours failed,
	 * it still says "not an error". */
	bool sqlite_said = sql && strcmp(sql, "not an error") != 0 && r != -ENOMEM;
	if (r == -EUCLEAN)
		snprintf(buf, n, "catalog.db is damaged: %s", sqlite_said ? sql
			 : "a row holds an impossible value (such as a SHA-256 that is not 32 bytes)");
	else
		snprintf(buf, n, "%s", sqlite_said ? sql : strerror(-r));
	return buf;
}
