/* manifest.h: the JSON documents of store format 2, written and read here only.
 *
 *   STORE/config                 store id, format, creation time           (struct store_config)
 *   STORE/backups/NAME/NODE.json one node's backup NAME: metadata, tables, every file
 *                                (struct manifest); NODE is manifest_node_key()
 *   STORE/backups/NAME.json      the same, as stores written before cluster backups keep it
 *   pack member .cassbackup/index.json: every blob in the pack             (struct pack_index)
 *
 * Every parser here takes bytes from a store, which may be damaged or hostile, and checks them
 * where they are read: names are single path components (name_is_component), index
 * directories start with '.', sizes and offsets are at most CB_MAX_SIZE, modes fit 07777,
 * hashes are 64 hex digits, no name appears twice where it would make a tree ambiguous. Later
 * code may rely on all of that. A parser fails with -EBADMSG and a one-line reason in err.
 *
 * Names are bytes (Cassandra does not restrict file names to UTF-8, and a locale must not
 * decide what can be backed up): a name that is valid UTF-8 is stored as "name", any other as
 * "name_hex" (its bytes in hex).
 */
#ifndef CASSBACKUP_MANIFEST_H
#define CASSBACKUP_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CB_FORMAT 2
/* Largest file, blob or offset a store may describe: far above any real file, far enough below
 * 2^63 that sums of a few of them cannot overflow int64. */
#define CB_MAX_SIZE (UINT64_C(1) << 56)

struct cb_attr {
	uint32_t mode; /* permission bits only (07777) */
	uint32_t uid, gid;
	int64_t mtime_ns;
};

struct manifest_file {
	char *dir;  /* "" for the table directory, else ".<index>" */
	char *name;
	uint64_t size;
	struct cb_attr attr;
	unsigned char sha256[32];
	bool added; /* an incremental's: taken in from backups/ by this backup (else inherited) */
};

struct manifest_dir {
	char *name; /* ".<index>" */
	struct cb_attr attr;
};

/* One backups/ directory of a table and who last removed links there (tools/taken.h): the
 * state the backup left, and, where it removed links, the state it found ("EPOCH N BY"). */
struct manifest_links {
	char *dir;   /* the directory's path on the node */
	char *left;
	char *found; /* NULL: it removed no link there */
};

struct manifest_table {
	char *name;
	char *id;         /* 32 hex digits, or "" when the directory had none (Cassandra < 2.1) */
	char *schema_cql; /* NULL when the snapshot had no schema.cql */
	struct cb_attr attr;
	struct manifest_dir *dirs;
	size_t ndirs;
	struct manifest_file *files;
	size_t nfiles;
	/* The state of each of the table's backups/ directories (tools/taken.h) */
	struct manifest_links *links;
	size_t nlinks;
	/* The time (ms, the node's clock) of the newest drop or truncate snapshot the backup saw
	 * in the table's directories (0: none); -1 when the manifest does not say (made before
	 * it did). An incremental empties the table when a newer one appeared since. */
	int64_t emptied_ms;
};

struct manifest_keyspace {
	char *name;
	struct cb_attr attr;
	struct manifest_table *tables;
	size_t ntables;
};

/* One node of the ring as the backed-up node saw it (nodetool status): every string printable
 * (manifest_label_ok), "" when unknown. */
struct manifest_ring_node {
	char *host_id, *address, *datacenter, *rack;
};

/* What a backup was made of, so that an incremental builds only on a backup of the same
 * tables: every table (n 0; the system keyspaces too when system), or the keyspaces (table
 * NULL) and tables listed. Kept canonical by manifest_scope_add: sorted by keyspace, a
 * keyspace's entry before its tables', no table of a listed keyspace, nothing twice; system
 * only with n 0. */
struct manifest_scope_entry {
	char *keyspace, *table;
};
struct manifest_scope {
	struct manifest_scope_entry *v;
	size_t n;
	bool system;
};

/* Is ks one of Cassandra's system keyspaces (system, system_schema, system_auth, ...)? */
bool is_system_keyspace(const char *ks);
/* Is ks a keyspace of one node's own (system, system_schema, and the virtual ones): its tables
 * describe that node (host id, tokens, schema) and go back only with the whole node? */
bool is_node_local_keyspace(const char *ks);

/* Adds keyspace ks (table NULL) or table ks.table, keeping s canonical. 0 or -ENOMEM. */
int manifest_scope_add(struct manifest_scope *s, const char *ks, const char *table);
bool manifest_scope_equal(const struct manifest_scope *a, const struct manifest_scope *b);
int manifest_scope_copy(struct manifest_scope *dst, const struct manifest_scope *src);
void manifest_scope_free(struct manifest_scope *s);
/* s as the manifest's compact JSON object: one text per scope, so scopes compare as text. */
int manifest_scope_write(const struct manifest_scope *s, struct strbuf *out);
/* Reads what manifest_scope_write wrote. 0, -EBADMSG, or -ENOMEM. */
int manifest_scope_read(const char *text, struct manifest_scope *out);

struct manifest {
	char *name;
	char *node, *cluster, *datacenter, *host_id, *snapshot_tag, *cassandra_version; /* "" if unknown */
	char *rack, *schema_version; /* "" if unknown */
	char **tokens;
	size_t ntokens;
	struct manifest_ring_node *ring; /* the ring the node saw; none when unknown */
	size_t nring;
	int64_t created_ns;
	/* An incremental backup (Cassandra's backups/ directories taken in): the full backup of
	 * the same node it follows, and the backup it was made on top of (base itself or the
	 * incremental before it). Both NULL for a full backup, else names (name_is_component).
	 * Its tree is whole: previous's tree with the files it took in added (manifest "files"
	 * marked "added"), so a reader never needs the base to read it; the link is what keeps
	 * the base alive (retention, forget) and what list and restore --point-in-time follow. */
	char *base, *previous;
	/* A manifest written before scopes were recorded reads as every table but the system
	 * ones (what an incremental then took), with scope_unrecorded set: it may as well have
	 * been made of some tables only, so it is never an incremental's base. An incremental
	 * has its base's scope. */
	struct manifest_scope scope;
	bool scope_unrecorded;
	/* A full backup made with --clear-incremental-links: it removed the backups/ links of its
	 * tables flushed before its snapshot, so an incremental on an older full backup of those
	 * tables would lack them. */
	bool clears_links;
	/* A full backup: when its snapshot was taken, as its directories say (the newest mtime of
	 * the tag's directories); 0 when unknown (an incremental, or a manifest from before).
	 * Retention orders backups by it (manifest_time_ns): a snapshot backed up days later is
	 * that old. */
	int64_t snapshot_ns;
	/* A full backup made with create --take-snapshot: the greatest id among its node's
	 * commitlog segments the store held before the snapshot (-1: none), when commitlog_seen
	 * (commitlog.h commitlog_seen_id): the segments after it are in its point-in-time window
	 * whatever the node's clock said. Not recorded for a snapshot taken before create ran
	 * (segments archived since may have lower ids), by creates from before, or when the
	 * listing failed. */
	bool commitlog_seen;
	int64_t commitlog_seen_id;
	struct cb_attr root_attr; /* of the (first) data directory: the mount shows the backup so */
	struct manifest_keyspace *keyspaces;
	size_t nkeyspaces;
	/* Totals as create measured them, of the tables' files (node_files not counted): */
	uint64_t files, bytes, new_bytes, stored_bytes;
	/* The node's own files, beside the keyspaces: dir "" holds MANIFEST_SCHEMA_FILE (cqlsh's
	 * DESCRIBE SCHEMA output), dir MANIFEST_CONF_DIR the Cassandra configuration directory's
	 * regular files. Both names hold a character Cassandra refuses in a keyspace name (which
	 * is \w+), so they never meet a keyspace in the backup's directory. */
	struct manifest_file *node_files;
	size_t nnode_files;
};

#define MANIFEST_SCHEMA_FILE "schema.cql"
#define MANIFEST_CONF_DIR "cassandra-conf"
/* The node file of m at dir and name, or NULL. */
const struct manifest_file *manifest_node_file(const struct manifest *m, const char *dir,
					       const char *name);

/* Serialises m (whose names must already satisfy the rules above) as a format-2 manifest.
 * 0, -EINVAL when m breaks a rule (err says which), or -ENOMEM. */
int manifest_write(const struct manifest *m, struct strbuf *out, char *err, size_t errlen);

/* Parses and checks a manifest. On success *out is the caller's (manifest_free). */
int manifest_parse(const char *buf, size_t len, struct manifest **out, char *err, size_t errlen);

void manifest_free(struct manifest *m); /* accepts NULL */

/* Frees the strings of n records of backups/ directories and the array v (NULL: none). */
void manifest_links_free(struct manifest_links *v, size_t n);

/* What identifies the node of a backup in the store: its host id when known, else its node
 * name (backups made without nodetool). Never NULL. */
const char *manifest_node_key(const struct manifest *m);
/* A node key that can name a store key: a single path component of at most 64 bytes of
 * printable ASCII with no blank. NODE_KEY_RULE says so to a user. */
bool manifest_node_key_ok(const char *key);
#define NODE_KEY_RULE "a node is 1 to 64 bytes of printable ASCII, no blank or '/', not '.' or '..'"
/* A host id as Cassandra has it (nodetool info: java.util.UUID, lower-case 8-4-4-4-12 hex),
 * from a user's spelling in either case, into out. -EINVAL, HOST_ID_RULE to a user, for
 * anything else: host ids are compared as strings, so "1A1A..." given for "1a1a..." would
 * make a node's backups and segments look like another node's. */
int host_id_canonical(const char *in, char out[37]);
/* Do node keys a and b name one node? Equal, or one host id spelled in two cases: an older
 * cassbackup kept a host id as the user gave it, and its backups are the node's own. */
bool manifest_node_key_same(const char *a, const char *b);
#define HOST_ID_RULE "a host id is a UUID as nodetool info prints it (8-4-4-4-12 hexadecimal digits)"

/* The time a backup holds its node's data as of, which retention orders backups by: its
 * snapshot's (snapshot_ns) when known and earlier than its commit (created_ns), else its
 * commit's. */
int64_t manifest_time_ns(int64_t created_ns, int64_t snapshot_ns);
/* A label recorded about a node (address, datacenter, rack, version): at most 255 bytes, no
 * control character. */
bool manifest_label_ok(const char *s);

/* The ring as one JSON text (the catalog keeps it so), and back: parsed strictly, as in a
 * manifest (-EBADMSG, err says why). manifest_ring_free accepts NULL. */
int manifest_ring_write(const struct manifest_ring_node *ring, size_t n, struct strbuf *out);
int manifest_ring_parse(const char *text, struct manifest_ring_node **ring, size_t *n, char *err,
			size_t errlen);
void manifest_ring_free(struct manifest_ring_node *ring, size_t n);

struct pack_blob {
	unsigned char sha256[32];
	uint64_t size;
	uint64_t offset; /* of the blob's first byte in the pack's (uncompressed) tar stream */
};

struct pack_index {
	struct pack_blob *blobs;
	size_t nblobs;
};

int pack_index_write(const struct pack_index *pi, struct strbuf *out);
/* Parses and checks a pack index: offsets and sizes within CB_MAX_SIZE, no sha256 twice. */
int pack_index_parse(const char *buf, size_t len, struct pack_index *out, char *err,
		     size_t errlen);
void pack_index_free(struct pack_index *pi);

struct store_config {
	char id[33]; /* 32 hex digits */
	int format;
	int64_t created_ns;
	/* An encrypted store (crypt.h): "encryption": {"cipher": "AES-256-GCM", "chunk": N}.
	 * chunk 0: a plain store. Another cipher is -EPROTONOSUPPORT. */
	uint32_t crypt_chunk;
};

int store_config_write(const struct store_config *c, struct strbuf *out);
/* -EBADMSG when buf is not a store config, -EPROTONOSUPPORT when it is one of another format
 * (c->format says which). */
int store_config_parse(const char *buf, size_t len, struct store_config *c, char *err,
		       size_t errlen);

#endif
