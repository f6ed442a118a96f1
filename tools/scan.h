/* scan.h: finding a snapshot's files in Cassandra data directories.
 *
 *   <data-dir>/<keyspace>/<table>-<32 hex id>/snapshots/<tag>/{components, .<index>/, manifest.json,
 *                                                             schema.cql}
 *
 * One table's files may be spread over several data directories (data_file_directories); they
 * are merged into one table. Nothing outside snapshots/<tag>/ is read, and inside it transaction
 * logs (*_txn_*.log) and temporary files (tmp-*, tmplink-*) are left out.
 *
 * Symbolic links below a data directory are never followed (a link there is no part of what
 * Cassandra wrote, and following one would back up whatever it points at): a keyspace, table,
 * snapshots, snapshot or index directory or a file that is a symlink is skipped and listed in
 * scan_result.skipped. Every directory is opened relative to its parent with O_NOFOLLOW, and
 * scan_open_file() opens a file the same way, so a symlink swapped in later is not followed
 * either. Names are bytes, taken as they are.
 *
 * Cassandra hard-links what it puts in snapshots/ and backups/, so nothing below a table
 * directory is on another file system: a directory there that is (a mount of another file
 * system, a bind mount of a directory elsewhere) is not crossed, and listed in
 * scan_result.mounts; an incremental never removes a file there.
 */
#ifndef CASSBACKUP_SCAN_H
#define CASSBACKUP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cli.h"
#include "manifest.h"
#include "taken.h"
#include "util.h"

struct scan_file {
	char *name;      /* file name */
	char *src;       /* its path (data directory + rel), for messages */
	const char *data_dir; /* the data directory it is in (scan_opts' string) */
	const char *rel; /* within src: the path below data_dir */
	int dir;         /* index into the table's dirs, or -1 for the table directory */
	struct stat st;
};

struct scan_dir {
	char *name; /* ".<index>" */
	struct stat st;
};

struct scan_inode {
	dev_t dev;
	ino_t ino;
};

struct scan_table {
	char *keyspace;
	char *table;
	char *table_id;  /* 32 hex digits, or "" for an id-less directory name */
	char *dirname;   /* <table>-<id> as on disk */
	struct stat ks_st, table_st;
	struct scan_file *files;
	size_t nfiles;
	struct scan_dir *dirs;
	size_t ndirs;
	char *schema_cql; /* contents of schema.cql, or NULL */
	char *manifest;   /* contents of manifest.json (the first copy found), or NULL */
	size_t manifest_len;
	/* The time (ms) of the newest drop or truncate snapshot in the table's directories
	 * (dropped-<millis>-<name>, truncated-<millis>-<table>: taken with auto_snapshot), 0 for
	 * none: the table lost all its sstables then (TRUNCATE, or DROP and CREATE ... WITH ID).
	 * backups only: files of backups/ no newer than emptied_until_ms (that time), or among
	 * the files of the drop snapshot, are data the table no longer has: left out (and in
	 * place), counted in before_emptied. */
	int64_t emptied_ms, emptied_until_ms;
	struct scan_inode *dropped; /* backups only: the files of the newest drop snapshots (their
				     * flush's too: a file among them is from before the drop) */
	size_t ndropped;
	bool emptied_noted;
	uint64_t before_emptied;
	/* The table's backups/ directories (paths, in every data directory) and what the
	 * TAKEN_FILE of each says (taken.h), read in both kinds of scan. */
	char **backups_dirs;
	struct links_taken *backups_taken;
	size_t nbackups_dirs;
};

struct scan_opts {
	char *const *data_dirs;
	size_t ndata_dirs;
	const char *tag;
	struct selection *sel; /* --keyspace/--table; empty: every table (system ones only with
				* include_system). Entries that match nothing fail the scan. */
	bool include_system;
	/* Scan <table dir>/backups/ (Cassandra's incremental backups: every flushed or streamed
	 * sstable hard-linked there, index sstables in backups/.<index>/) instead of a snapshot;
	 * tag is then unused, and finding no table is no error (nothing was flushed). */
	bool backups;
};

struct scan_result {
	struct scan_table *tables; /* sorted by keyspace, table; files sorted by dir, name */
	size_t ntables;
	uint64_t nfiles;
	uint64_t bytes;
	char **skipped;  /* paths of symlinks not followed */
	size_t nskipped;
	char **mounts;   /* paths of directories on another file system, not crossed */
	size_t nmounts;
	char **others;   /* paths of other entries left out: directories that are not an index's,
			  * FIFOs, devices, sockets (Cassandra writes none in snapshots/backups) */
	size_t nothers;
	/* backups only: "<table dir>/backups (now <dir>)" of a table dropped and made again,
	 * left alone: its links belong to no live table. Only a sure case: the directory holds
	 * Cassandra's drop snapshot (dropped-<millis>-<name>, with auto_snapshot), no live
	 * sstable and nothing in backups/ flushed after that drop, while the other directory of
	 * the table holds live sstables. Any other two directories of one table: the scan
	 * refuses. */
	char **superseded;
	size_t nsuperseded;
	/* snapshots only: "<keyspace>.<table>" of each selected table that holds live sstables
	 * (a *-Data.db in its directory) and the snapshot in none of its data directories (a
	 * snapshot of some tables only, nodetool snapshot -kt): the backup lacks its data. */
	char **untagged;
	size_t nuntagged;
	struct stat root_st; /* of the first data directory */
	/* snapshots only: the newest mtime of the tag's directories (when the snapshot was
	 * taken: nodetool writes each last), 0 for none */
	int64_t snapshot_ns;
};

/* Scans. On failure, err holds a one-line reason naming the thing that failed. */
int scan_snapshot(const struct scan_opts *o, struct scan_result *res, struct strbuf *err);
void scan_result_free(struct scan_result *res);

/* Is scanned file f below directory dir (a path as the scan spells it: data directory, then
 * components below it)? */
bool scan_file_below(const struct scan_file *f, const char *dir);

/* Opens a scanned file for reading, each directory below its data directory with O_NOFOLLOW.
 * The fd, or -errno (-ELOOP: a component became a symlink). */
int scan_open_file(const struct scan_file *f);

/* A small scanned file's bytes (at most max), read as scan_open_file opens it: *out is the
 * caller's (NUL-terminated). 0 or -errno (-EFBIG over max). */
int scan_read_small(const struct scan_file *f, size_t max, char **out, size_t *len);

/* Removes a scanned file (an incremental backup's link in backups/ once committed), walking
 * to it as scan_open_file does, only if it is still the file described by was (inode, device,
 * size, mtime): 0, -ESTALE when it is another file or changed (left alone), -ENOENT when
 * gone, or -errno. Two processes at it: one removes it, the other gets -ENOENT. */
int scan_remove_file(const struct scan_file *f, const struct stat *was);

/* The Data.db files t's manifest.json lists that the scan did not find (in any data directory
 * scanned), appended to missing as "NAME" or ".<index>/NAME". 0 (also for a
 * table without manifest.json: older Cassandra wrote none), -EINVAL when the manifest has no
 * "files" list, -ENOMEM. */
int scan_table_missing(const struct scan_table *t, struct strv *missing);

#endif
