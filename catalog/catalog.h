/* catalog.h: the SQLite index of a store.
 *
 * One catalog handle is one SQLite connection and its prepared statements; it belongs to one
 * thread at a time (the mount gives each worker thread its own). The database runs in WAL mode,
 * so readers (the mount) never block the writer (a backup being registered) and vice versa.
 *
 * The catalog is an index: every fact in it is also in the packs' manifests.
 *
 * Tree for the mount. Inode numbers are (row id << 3 | kind) and therefore stable across mounts:
 *   /                      CB_INO_ROOT (kind SPECIAL, row 0)
 *   /backups               CB_INO_BACKUPS (kind SPECIAL, row 1)
 *   /backups/<name>        the BACKUP row of name when it is alone: the only node backup of
 *                          name, which recorded a ring of at most one node (a one-node
 *                          cluster, a backup made without nodetool, a store of the older
 *                          layout); else a GROUP (level 1) of the node backups of name, whose
 *                          entries are their BACKUP rows named by node name (node
 *                          name-KEY8, the node key's first 8 characters, when two of them
 *                          share a node name). So the shape of /backups/<name> is known from
 *                          the first node backup on.
 *   /clusters              CB_INO_CLUSTERS (kind SPECIAL, row 2)
 *   /clusters/<cluster>/<name>/<dc>/<node>
 *                          GROUPs of levels 2, 3, 4 (names escaped one to one, at most 255
 *                          bytes, "unknown-cluster", "unknown-dc" when not recorded:
 *                          view_name_of in catalog.c), then the BACKUP rows as in a level-1 group, seen through
 *                          CB_INO_VIEW: that bit is set on them and everything below them, so
 *                          the cluster view has inode numbers of its own (the kernel keeps one
 *                          parent per directory) and the same bytes
 * A GROUP's row is (the smallest backup row id of its node backups << 3 | level): stable while
 * that backup is there.
 *   .../<keyspace>         KEYSPACE rows
 *   .../<table>            TABLE rows
 *   .../<table>/.<index>   DIR rows (secondary index sstables)
 *   .../<file>             FILE rows
 * A backup's own files (manifest.h node_files) are FILE rows too, with table_row the backup's
 * row negated and dir_id 0 (in the backup's directory, beside the keyspaces: schema.cql) or -1
 * (in its cassandra-conf/, a CONF node whose row is the backup's). They may hold passwords, so
 * the tree shows them 0600 (0700 for cassandra-conf/), owned by the mounting user.
 *
 * Rows as read. The catalog may be damaged or hostile, so every row is checked where it is read:
 * each name (backup, keyspace, table, index directory, file) must be one path component
 * (name_is_component), each size and offset at most CB_SIZE_MAX, each pack path a relative path
 * of such components, a file's size its blob's. Callers may rely on what they are handed.
 * What happens to a row that fails depends on who reads it:
 *   - the tree (catalog_node_*): the row hides only itself. Listings leave it out, a lookup or
 *     get of it gives -ENOENT, as if it were not there; its siblings are served as usual.
 *   - everything else (catalog_backup_tables, catalog_table_files, catalog_get_backup,
 *     catalog_file_blob, catalog_node_xattrs): the call fails with -EUCLEAN, and
 *     catalog_errmsg() says which row and why ("catalog row 12: invalid keyspace name"), so a
 *     restore or verify never acts on a partial or hostile listing without knowing it.
 *   - catalog_list_backups: the listing goes on; the bad backup is handed to the callback
 *     flagged (cb_backup_summary.invalid), for the caller to report.
 */
#ifndef CASSBACKUP_CATALOG_H
#define CASSBACKUP_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog;

/* The largest size or offset a row may hold (2^62 - 1): beyond any real file, and small enough
 * that an offset plus a size never overflows an off_t. */
#define CB_SIZE_MAX (INT64_MAX / 2)

enum catalog_flags {
	CATALOG_READONLY = 1 << 0, /* open for queries only */
	CATALOG_CREATE = 1 << 1,   /* create a new, empty catalog (fails if the file exists) */
	/* keep a small page cache (256 KiB instead of SQLite's 2 MiB): for the mount, which holds
	 * a connection per worker thread and runs only indexed point queries and short listings */
	CATALOG_SMALL_CACHE = 1 << 2,
	/* store_open(): trust the catalog as it is, do not compare it with the store first (a
	 * mount's worker threads; the mount's main thread keeps it up to date) */
	CATALOG_NO_RECONCILE = 1 << 3,
};

/* Opens (or creates) the catalog at path. -ENOENT when missing, -EMEDIUMTYPE when the file is not
 * a cassbackup catalog, other -errno for I/O. On failure *out is NULL. */
int catalog_open(catalog **out, const char *path, int flags);
void catalog_close(catalog *c); /* accepts NULL */
/* Writes what the catalog's WAL holds into its file and empties the WAL, so that the file alone
 * is the whole catalog (one about to be linked into place without its sidecars). 0, or -errno
 * (-ENOSPC: the disk is full). */
int catalog_checkpoint(catalog *c);

/* The format a catalog file names itself by ("cassbackup-catalog-N"), into out (n bytes): 0,
 * or -EMEDIUMTYPE when path is no readable catalog of any cassbackup format (damaged, or not
 * one at all). For naming a catalog that catalog_open refused. */
int catalog_format_of(const char *path, char *out, size_t n);

/* The catalog file's identity: 32 hex digits made at random with the file, the same for every
 * connection to it ("" for a catalog from before identities, opened read-only). Within one
 * identity a row id names one node for good (a rebuild in place gives a node its old id, or
 * one never used before: catalog_clear), so a program that holds ids (the mount's inode
 * numbers) must start afresh only when the identity of the file at the path changes. */
const char *catalog_identity(const catalog *c);
/* Reads the identity again (another connection may have renewed it). */
int catalog_reread_identity(catalog *c);
/* Gives the catalog a new identity: a copy of a catalog put in place of it (an older one,
 * whose ids a mount may have seen given to other rows) is then told apart from it. */
int catalog_renew_identity(catalog *c);

/* Deletes every backup, pack and blob row, within the caller's transaction (a rebuild in
 * place, store_rebuild_catalog); the identity and the id sequences stay, raised first to the
 * greatest id the tree numbers (a sequence row lost would number new rows from 1, onto ids
 * handed out before). keep_ids: a node added again within that transaction gets its old id
 * (one the tree numbers: CB_ROW_MAX) when it is the same node: the same backup (its ref, its
 * manifest's size, version and time made, its directory's protection) and the same path
 * below it with the same attributes, and for a file the same content. So the numbers a
 * program holds (the mount's inode numbers) still name the same nodes after a rebuild, and
 * name nothing when their node is not the same. Without keep_ids every node gets a new id:
 * what a program holds names nothing (a rebuild that distrusts the old rows' ids). */
int catalog_clear(catalog *c, bool keep_ids);

/* Why the last call on this handle failed, for a program to print: the invalid row it met
 * ("catalog row N: ..."), else SQLite's message. Never NULL; valid until the next call. */
const char *catalog_errmsg(catalog *c);
/* The words for a failed catalog call's return r, into buf: SQLite's message only when SQLite
 * failed (after a check of ours failed it still says "not an error"); for -EUCLEAN, that
 * catalog.db is damaged. Returns buf. */
const char *catalog_why(catalog *cat, int r, char *buf, size_t n);

/* Write transaction (BEGIN IMMEDIATE) around a backup's registration. */
int catalog_begin(catalog *c);
int catalog_commit(catalog *c);
void catalog_rollback(catalog *c);

/* Read transaction: every query from the first after it until catalog_rollback sees one state
 * of the catalog, whatever another connection commits meanwhile (a reindex renumbers the
 * packs and blobs, and with --renumber every row: a plan made of several queries must not mix
 * row ids of before and after). */
int catalog_read_begin(catalog *c);

/* --- writer ------------------------------------------------------------------------------ */

struct cb_backup_info {
	const char *name;
	const char *cluster;
	const char *datacenter;
	const char *node;
	const char *host_id;
	const char *snapshot_tag;
	int64_t created_ns;
	uint64_t files;
	uint64_t bytes;        /* logical bytes of all files */
	uint64_t new_bytes;    /* logical bytes of files whose content the store lacked */
	uint64_t stored_bytes; /* bytes of the pack this backup wrote */
	const char *cassandra_version; /* "" when unknown */
	const char *tokens;    /* space-separated; "" when unknown */
	uint32_t root_mode, root_uid, root_gid; /* the data directory's */
	uint64_t manifest_size; /* of the manifest, to notice a replaced one */
	const char *manifest_version; /* the store's word for it (cb_object_info); NULL or "" unknown */
	int64_t snapshot_ns;    /* a full backup's snapshot's time (manifest.h); 0 unknown */
	const char *node_key;   /* manifest_node_key: host id, else node name */
	bool nested;            /* kept at backups/NAME/NODE.json (else backups/NAME.json) */
	const char *rack, *schema_version; /* "" when unknown */
	const char *ring;       /* manifest_ring_write's JSON array */
	const char *base, *previous; /* an incremental's (manifest.h); NULL or "" for a full one */
	const char *scope;      /* manifest_scope_write's text */
	bool clears_links;      /* manifest.h */
};

struct cb_pack_info {
	const char *path; /* the pack's key: packs/xx/ID.tar.zst */
	uint64_t size;
	uint32_t frames;
	int64_t created_ns;
	unsigned char table_sha256[32];
	uint64_t index_offset, index_size;
};

struct cb_dir_attr {
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
};

struct cb_file_info {
	int64_t backup_id;
	int64_t table_row;
	int64_t dir_id; /* 0: the table directory itself */
	const char *name;
	uint64_t size;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
	int64_t blob_id;
};

/* 1 when some file's bytes are in no pack the catalog knows (a backup another host made,
 * whose packs were not indexed yet), 0 when not, or -errno. */
int catalog_has_unlocated_blobs(catalog *c);

/* 1 when a backup of that name exists (of node node_key, a host id in either case; NULL: of
 * any node), 0 when not, or -errno. */
int catalog_backup_exists(catalog *c, const char *name, const char *node_key);
/* 1 when some blob has exactly this size (a file of another size can't be a duplicate). */
int catalog_blob_size_exists(catalog *c, uint64_t size);
/* 1 and *id when a blob with this content is stored, 0 when not. */
int catalog_find_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t *id);
/* catalog_find_blob for a content a backup the catalog knows uses: stored and kept (a blob
 * no backup uses is in a pack that prune may delete). */
int catalog_find_used_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t *id);

int catalog_add_pack(catalog *c, const struct cb_pack_info *p, int64_t *id);
/* Adds a blob (pack_id 0: a content no known pack holds), or returns the id of the one with
 * that content, recording pack_id as one more place that holds it. */
int catalog_add_blob(catalog *c, const unsigned char sha256[32], uint64_t size, int64_t pack_id,
		     uint64_t offset, int64_t *id);
int catalog_add_backup(catalog *c, const struct cb_backup_info *b, int64_t *id);
int catalog_add_keyspace(catalog *c, int64_t backup_id, const char *name,
			 const struct cb_dir_attr *a, int64_t *id);
int catalog_add_table(catalog *c, int64_t backup_id, int64_t keyspace_row, const char *name,
		      const char *table_id, const char *schema_cql, const struct cb_dir_attr *a,
		      int64_t *id);
int catalog_add_dir(catalog *c, int64_t table_row, const char *name, const struct cb_dir_attr *a,
		    int64_t *id);
int catalog_add_file(catalog *c, const struct cb_file_info *f, int64_t *id);

/* Removes a backup and everything under it (blobs no file uses and no pack holds go too). */
int catalog_remove_backup(catalog *c, int64_t id);
/* Removes a pack; blobs it held are read from another pack that holds them, if any. */
int catalog_remove_pack(catalog *c, int64_t id);
/* Every backup's row id, ref (store.h), manifest size and version ("" unknown), in no
 * particular order. */
typedef int (*catalog_backup_name_fn)(void *ctx, int64_t id, const char *name, uint64_t manifest_size,
				      const char *manifest_version);
int catalog_backup_names(catalog *c, catalog_backup_name_fn cb, void *ctx);
/* The SHA-256 of a pack's seek table as recorded when the pack was indexed. 1, 0 (no such
 * pack) or -errno. */
int catalog_pack_sha(catalog *c, int64_t pack_id, unsigned char sha[32]);

/* Packs the catalog knows, for reclaiming packs it doesn't. cb returns 0 to go on. */
int catalog_list_packs(catalog *c, int (*cb)(void *ctx, int64_t id, const char *relpath, uint64_t size),
		       void *ctx);

/* --- listing ----------------------------------------------------------------------------- */

struct cb_backup_summary {
	int64_t id;
	const char *name, *node, *cluster, *datacenter, *host_id, *snapshot_tag;
	int64_t created_ns;
	uint64_t tables, files, bytes, new_bytes, stored_bytes;
	uint64_t unique_bytes; /* logical bytes of blobs no other backup references */
	bool complete;         /* every file's bytes are in a pack the catalog knows */
	const char *cassandra_version; /* "" when unknown */
	const char *ref;      /* the backup's key below backups/ (store.h): "NAME/NODE" or "NAME" */
	const char *node_key; /* the node it is of: host id, else node name */
	const char *rack, *schema_version; /* "" when unknown */
	const char *ring;     /* the ring it recorded, as manifest_ring_write made it */
	const char *tokens;   /* space-separated, "" when unknown */
	/* An incremental's full backup and the backup it follows (names, of the same node): ""
	 * for a full backup. Not checked as names: compare them, do not build paths of them. */
	const char *base, *previous;
	const char *scope; /* what it was made of: manifest_scope_write's text (manifest.h) */
	bool clears_links; /* manifest.h */
	int64_t snapshot_ns; /* manifest.h; 0 unknown */
	/* NULL for a sound row; else why it is not ("catalog row 3: invalid backup name"): the
	 * counts are then 0 and name is as stored (escape it before printing). */
	const char *invalid;
};

/* Calls cb for every backup, oldest first, invalid rows included (flagged: see above); strings
 * are valid during the call only. */
int catalog_list_backups(catalog *c, int (*cb)(void *ctx, const struct cb_backup_summary *b),
			 void *ctx);

struct cb_blob_loc {
	int64_t pack_id;     /* 0 and pack_path "": no pack the catalog knows holds the bytes */
	char pack_path[256];
	uint64_t offset; /* of the file's first byte in the pack's tar stream */
	uint64_t size;
	unsigned char sha256[32];
};

/* Calls cb with the summary of the backup whose ref (store.h) is ref (unique_bytes not
 * computed). 1 when found, 0 when not, -EUCLEAN when its row is invalid, or -errno / cb's
 * non-zero return. */
int catalog_get_backup(catalog *c, const char *ref,
		       int (*cb)(void *ctx, const struct cb_backup_summary *b), void *ctx);
/* Calls cb for every node backup called name, or whose ref is name, by node key (unique_bytes
 * not computed). The number of them, -EUCLEAN at an invalid row, or -errno / cb's non-zero
 * return. */
int catalog_find_backups(catalog *c, const char *name,
			 int (*cb)(void *ctx, const struct cb_backup_summary *b), void *ctx);

struct cb_table_row {
	int64_t row;
	const char *keyspace, *table, *table_id, *schema_cql; /* schema_cql may be NULL */
};
/* Tables of a backup, by keyspace and name. cb returns 0 to go on. A row with an invalid
 * keyspace or table name stops the listing with -EUCLEAN (catalog_errmsg says which): rows
 * before it have been handed to cb, none after it. */
int catalog_backup_tables(catalog *c, int64_t backup_id,
			  int (*cb)(void *ctx, const struct cb_table_row *t), void *ctx);

struct cb_file_row {
	const char *dir;  /* "" for the table directory, else ".<index>" */
	const char *name;
	uint64_t size;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
	struct cb_blob_loc loc;
};
/* Files of one table (row from catalog_backup_tables), by directory and name. A row with an
 * invalid directory or file name, size, offset or pack path stops the listing with -EUCLEAN, as
 * in catalog_backup_tables. */
int catalog_table_files(catalog *c, int64_t table_row,
			int (*cb)(void *ctx, const struct cb_file_row *f), void *ctx);

/* The backup's own files (its schema.cql, its cassandra-conf/), as catalog_table_files: dir ""
 * or MANIFEST_CONF_DIR. */
int catalog_node_files(catalog *c, int64_t backup_id,
		       int (*cb)(void *ctx, const struct cb_file_row *f), void *ctx);

/* --- tree -------------------------------------------------------------------------------- */

enum cb_node_kind {
	CB_NODE_CONF = 0, /* a backup's MANIFEST_CONF_DIR directory; its row is the backup's */
	CB_NODE_SPECIAL = 1,
	CB_NODE_BACKUP,
	CB_NODE_KEYSPACE,
	CB_NODE_TABLE,
	CB_NODE_DIR,
	CB_NODE_FILE,
	CB_NODE_GROUP, /* a directory of node backups or of cluster backups (see above) */
};

/* Whether directory ino's entries can change (the root's, /backups, /clusters and GROUPs), as
 * opposed to everything below a backup, which never does. */
bool catalog_node_mutable(uint64_t ino);

#define CB_INO(kind, row) (((uint64_t)(row) << 3) | (uint64_t)(kind))
#define CB_INO_VIEW ((uint64_t)1 << 47) /* the cluster view's copy of a node (see above) */
#define CB_INO_KIND(ino) ((int)((ino) & 7))
#define CB_INO_ROW(ino) ((int64_t)(((ino) & ~CB_INO_VIEW) >> 3))
/* Rows below 2^CB_ROW_BITS are numbered in the tree (their CB_INO below CB_INO_VIEW, and below
 * a mount's generation bits); a greater id (a damaged row) is never shown, nor kept by a
 * rebuild (catalog_clear). */
#define CB_ROW_BITS 44
#define CB_ROW_MAX ((int64_t)1 << CB_ROW_BITS)
#define CB_INO_ROOT CB_INO(CB_NODE_SPECIAL, 0) /* == 1, FUSE_ROOT_ID */
#define CB_INO_BACKUPS CB_INO(CB_NODE_SPECIAL, 1)
#define CB_INO_CLUSTERS CB_INO(CB_NODE_SPECIAL, 2)
/* CB_INO(CB_NODE_SPECIAL, 3) and special rows from 2^40 are the mount's own (fs/cbfs.h: /commitlogs) */
#define CB_OWNER_UNSET UINT32_MAX /* uid/gid not recorded: the caller picks one */

struct cb_node {
	uint64_t ino;
	enum cb_node_kind kind;
	uint64_t size;
	uint32_t mode; /* with file type bits */
	uint32_t uid, gid;
	int64_t mtime_ns; /* 0: not recorded */
	char name[256];
};

/* Node by inode number; -ENOENT when there is none (or its row is invalid). */
int catalog_node_get(catalog *c, uint64_t ino, struct cb_node *out);
/* Child of parent by name; -ENOENT, or -ENOTDIR when parent is a file. */
int catalog_node_lookup(catalog *c, uint64_t parent, const char *name, struct cb_node *out);
/* Calls cb for each child of parent, in a stable order. cb returns 0 to go on. */
int catalog_node_list(catalog *c, uint64_t parent,
		      int (*cb)(void *ctx, const struct cb_node *n), void *ctx);

/* Where a FILE node's bytes are. -ENOENT when ino is not a file, -EUCLEAN when its blob's row
 * is invalid (catalog_errmsg says why). */
int catalog_file_blob(catalog *c, uint64_t ino, struct cb_blob_loc *out);

/* Where a FILE node is in its backup: the names on its path, each a name_is_component (dir ""
 * for the table's own directory, else ".<index>"). -ENOENT when ino is not a file, -EUCLEAN
 * when a name on the way is invalid. */
struct cb_file_ident {
	char backup[320]; /* the backup's ref (store.h) */
	char shown[600];  /* its directory below /backups: NAME, or NAME/NODE of several */
	char keyspace[256], table[256], dir[256], name[256];
};
int catalog_file_ident(catalog *c, uint64_t ino, struct cb_file_ident *out);

/* What the catalog lists below directory ino, to be held against the backup's manifest: for a
 * TABLE, its ident (dir and name "") and its number of files (all its directories'); for a
 * BACKUP or KEYSPACE, the backup's ident (keyspace and table "") and its number of tables.
 * -ENOENT for another kind or a row that is gone. */
int catalog_dir_count(catalog *c, uint64_t ino, struct cb_file_ident *out, size_t *count);

/* The path of a FILE node below /backups, "backup/keyspace/table/[.index/]file", into out (for
 * messages). -ENOENT when ino is not a file, -ERANGE when out is too small (PATH_MAX is enough),
 * -EUCLEAN when a name on the way is invalid. */
int catalog_file_path(catalog *c, uint64_t ino, char *out, size_t outlen);

/* Extended attributes of a node: cb(name, value) for each. */
int catalog_node_xattrs(catalog *c, uint64_t ino,
			int (*cb)(void *ctx, const char *name, const char *value), void *ctx);

/* --- for check and export (prepared per call: these run once per command) --------------- */

struct cb_pack_row {
	int64_t id;
	const char *path;
	uint64_t size;
	uint32_t frames;
	unsigned char table_sha256[32];
	uint64_t index_offset, index_size;
};
/* Calls cb for every pack row, by path; strings valid during the call. A row whose path,
 * sizes or hash are impossible stops the walk with -EUCLEAN (catalog_errmsg says which). */
int catalog_pack_rows(catalog *c, int (*cb)(void *ctx, const struct cb_pack_row *p), void *ctx);

/* Calls cb for every blob the catalog says pack pack_id holds (its blob_locs), with the blob's
 * SHA-256, size and offset in that pack's tar stream. -EUCLEAN for an impossible row. */
int catalog_pack_blobs(catalog *c, int64_t pack_id,
		       int (*cb)(void *ctx, const unsigned char sha256[32], uint64_t size,
				 uint64_t offset),
		       void *ctx);

/* Where the content (sha256, size) is read from: 1 and *out (pack_id 0 and pack_path "" when
 * no pack the catalog knows holds it), 0 when the catalog has no such blob, -EUCLEAN for an
 * impossible row, or -errno. */
int catalog_blob_location(catalog *c, const unsigned char sha256[32], uint64_t size,
			  struct cb_blob_loc *out);

/* --- prune ------------------------------------------------------------------------------- */

/* What a pack holds: every blob (any blob it holds, whether read from there or not), and the
 * blobs some file uses whose current location (the one reads go to) is this pack. */
struct cb_pack_usage {
	int64_t id;
	const char *path;           /* checked as a pack path */
	uint64_t size;              /* bytes of the pack */
	uint64_t blobs, blob_bytes; /* every blob it holds */
	uint64_t used, used_bytes;  /* blobs files use, read from this pack */
};
/* Calls cb for every pack, by id; strings are valid during the call only. A row out of range
 * stops the listing with -EUCLEAN (catalog_errmsg says which). */
int catalog_pack_usage(catalog *c, int (*cb)(void *ctx, const struct cb_pack_usage *u), void *ctx);

/* A blob that files use, read from a pack, and the place of one file using it (the one
 * catalogued first): names checked as path components, table_id "" or 32 hex digits, dir ""
 * (the table's directory) or ".<index>"; for a node file keyspace, table and table_id NULL,
 * dir "" or MANIFEST_CONF_DIR. */
struct cb_live_blob {
	int64_t blob_id;
	unsigned char sha256[32];
	uint64_t size, offset;
	const char *keyspace, *table, *table_id, *dir, *name;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
};
/* Calls cb for each blob files use whose current location is pack_id, by offset. Strings are
 * valid during the call only; cb must not use the catalog. */
int catalog_pack_live_blobs(catalog *c, int64_t pack_id,
			    int (*cb)(void *ctx, const struct cb_live_blob *b), void *ctx);

/* Makes pack_id the current location of every blob it holds (a pack just written by a
 * repack), so that readers go there and the packs they came from hold them unused. */
int catalog_prefer_pack(catalog *c, int64_t pack_id);

#endif
