/* backup.h: writing one backup into a store.
 *
 * A backup is metadata (name, node, cluster, ...) and a tree: tables, each with files and
 * `.<index>/` directories of files. The writer owns what a backup is on disk:
 *   - where each file's bytes go: a file whose content (SHA-256 and size) the store already
 *     holds is not stored again, one whose content repeats a file of this backup is stored once;
 *   - the description of the backup that the store keeps beside its bytes;
 *   - the commit: nothing is visible to readers of the store until backup_writer_commit()
 *     returns 0. A failure, backup_writer_free() before the commit, a signal or a crash leaves
 *     no backup, and nothing that the next backup_writer_begin() on the store does not remove.
 *
 * Use: begin; add_table (and add_dir) for every table, add_file for every file, in any order
 * after its table (and directory), though a table's files best follow it, small tables first
 * (they share packs); commit; free. Names are bytes: any byte but '/' and NUL, in
 * any locale, kept exactly (the caller checks that they are single path components).
 *
 * Errors are negative errno values. After a failure, backup_writer_errmsg() says in one line
 * what failed and why, naming the file (by its `source`) or the store; the writer is then
 * unusable except for backup_writer_free(). Nothing here prints.
 */
#ifndef CASSBACKUP_BACKUP_H
#define CASSBACKUP_BACKUP_H

#include <signal.h>
#include <stdint.h>

#include "hash.h"
#include "lock.h"
#include "manifest.h"
#include "util.h"

typedef struct backup_writer backup_writer;

/* Owner, mode (permission bits) and mtime of a keyspace, table or index directory, or file. */
struct backup_attr {
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
};

struct backup_meta {
	/* One node has one backup of a name; the nodes of a cluster share it (a cluster backup).
	 * The node is its host id, else its node name (manifest_node_key), which must then be one
	 * (manifest_node_key_ok). The manifest goes to backups/NAME/NODE.json. */
	const char *name;
	const char *cluster, *datacenter, *node, *host_id, *snapshot_tag; /* NULL: unknown */
	const char *rack, *schema_version; /* NULL: unknown */
	const struct manifest_ring_node *ring; /* the ring the node saw (nodetool status) */
	size_t nring;
	const char *cassandra_version;   /* NULL: unknown */
	const char *const *tokens;       /* the node's tokens (nodetool info/ring), ntokens of them */
	size_t ntokens;
	struct backup_attr root_attr;    /* of the data directory: the mount shows the backup so */
	int64_t created_ns; /* 0: now */
	int64_t snapshot_ns; /* a full backup's snapshot's time (manifest.h); 0: unknown */
	bool commitlog_seen; /* a full backup's commitlog_seen_id (manifest.h) is known */
	int64_t commitlog_seen_id;
	/* An incremental backup: the full backup of this node it follows and the backup it is
	 * made on top of (manifest.h), both names; NULL for a full backup. The caller hands the
	 * writer previous's files with backup_writer_add_stored and the new ones as usual. */
	const char *base, *previous;
	/* What the backup was made of (manifest.h); NULL: every table but the system ones. */
	const struct manifest_scope *scope;
	bool clears_links; /* made with --clear-incremental-links (manifest.h) */
};

struct backup_writer_opts {
	int level;           /* zstd level, 1 to 19 */
	unsigned threads;    /* compression threads, 0: the caller's; memory bounds them too */
	size_t frame_size;   /* bytes per zstd frame, 0: the default; at most 4 MiB */
	const volatile sig_atomic_t *cancel; /* non-zero: stop at the next chance, -ECANCELED */
	progress_fn progress; /* called with bytes of files done (read, or found in the store) */
	void *pctx;
	uint64_t pack_size;  /* tar-stream bytes per pack (0: PACK_DEFAULT_SIZE, packer.h) */
	int lock_wait_seconds; /* how long to wait for a prune's exclusive lock to go */
	/* called once (with pctx) when it starts to wait, naming the holder */
	void (*lock_waiting)(void *pctx, const struct lock_info *holder);
};

struct backup_table {
	const char *keyspace, *table;
	const char *table_id; /* 32 hex digits, or "" */
	const char *dirname;  /* the table's directory name in the data directory (<table>-<id>) */
	const char *schema_cql; /* NULL: none */
	struct backup_attr keyspace_attr, table_attr;
	uint64_t bytes;       /* of its files, about: a table of a quarter of pack_size or more gets
			       * packs of its own (its files are best added right after it) */
	/* manifest_table.links: borrowed, kept by the caller until the commit */
	const struct manifest_links *links;
	size_t nlinks;
	int64_t emptied_ms;   /* manifest_table.emptied_ms (-1: not said) */
};

struct backup_file {
	const char *name; /* in its directory */
	uint64_t size;    /* exactly this many bytes are backed up; other lengths give -ESTALE */
	struct backup_attr attr;
	const char *source; /* where the bytes come from, for messages */
};

struct backup_summary {
	uint64_t tables, files;
	uint64_t bytes;        /* of all files */
	uint64_t new_bytes;    /* of files whose content the store did not hold */
	uint64_t stored_bytes; /* written to the store */
	size_t packs;          /* written */
};

/* Starts a backup of meta->name in store s (the caller's, open until backup_writer_free):
 * takes its shared lock, brings the catalog up to date under it, removes what earlier writers
 * that died left behind, checks the name is free. -EEXIST when a backup of that name exists.
 * On failure err gets the reason (one line) and *out is NULL. */
struct store;
int backup_writer_begin(struct store *s, const struct backup_meta *meta,
			const struct backup_writer_opts *opts, backup_writer **out, struct strbuf *err);

/* What begin removed: the count of unfinished backups' leftovers; the return value is < 0 when
 * cleaning failed (not fatal: begin went on). */
int backup_writer_reclaimed(const backup_writer *w, unsigned *count);

/* Adds a table; *table gets its handle for add_dir/add_file. -EEXIST for the same keyspace and
 * table twice. Strings are copied. */
int backup_writer_add_table(backup_writer *w, const struct backup_table *t, unsigned *table);

/* Adds a `.<index>` directory to a table; *dir gets its handle for add_file. */
int backup_writer_add_dir(backup_writer *w, unsigned table, const char *name,
			  const struct backup_attr *a, unsigned *dir);

/* Adds a file of a table, in directory dir (BACKUP_TABLE_DIR: the table's own), reading
 * f->size bytes from fd (positional reads from offset 0; fd stays the caller's). -ESTALE when
 * the file is shorter or longer than f->size or its bytes changed while they were read. */
#define BACKUP_TABLE_DIR UINT32_MAX
int backup_writer_add_file(backup_writer *w, unsigned table, unsigned dir,
			   const struct backup_file *f, int fd);

/* Adds a file whose content (sha256, f->size) the store holds already, as an incremental
 * inherits its previous backup's files: nothing is read. -ENOENT when the catalog knows no
 * such content (the previous backup's bytes are gone: nothing to point at). */
int backup_writer_add_stored(backup_writer *w, unsigned table, unsigned dir,
			     const struct backup_file *f, const unsigned char sha256[32]);

/* As add_file, with the f->size bytes at data. */
int backup_writer_add_buffer(backup_writer *w, unsigned table, unsigned dir,
			     const struct backup_file *f, const void *data);

/* Adds one of the node's own files (manifest.h: node_files): dir "" (MANIFEST_SCHEMA_FILE) or
 * MANIFEST_CONF_DIR, with the f->size bytes at data; deduplicated as any file. -EEXIST for the
 * same dir and name twice, -EINVAL for another dir or a name that is not one component. */
int backup_writer_add_node_file(backup_writer *w, const char *dir, const struct backup_file *f,
				const void *data);

/* Makes the backup durable, then visible (one catalog transaction). -EEXIST when another
 * writer committed a backup of the same name meanwhile (nothing changed); -ETIMEDOUT when the
 * store's lock lapsed before the manifest (lock.h: nothing committed). */
int backup_writer_commit(backup_writer *w, struct backup_summary *summary);

/* One line saying what failed and why; "" when nothing failed. */
const char *backup_writer_errmsg(const backup_writer *w);

/* Frees; before a successful commit, removes everything the backup wrote. Accepts NULL. */
void backup_writer_free(backup_writer *w);

#endif
