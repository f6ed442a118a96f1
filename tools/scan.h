/* scan.h: finding a snapshot's files in Cassandra data directories.
 *
 *   <data-dir>/<keyspace>/<table>-<32 hex id>/snapshots/<tag>/{components, .<index>/, manifest.json,
 *                                                             schema.cql}
 *
 * One table's files may be spread over several data directories (data_file_directories); they
 * are merged into one table. Nothing outside snapshots/<tag>/ is read, and inside it transaction
 * logs (*_txn_*.log) and temporary files (tmp-*, tmplink-*) are left out.
 */
#ifndef CASSBACKUP_SCAN_H
#define CASSBACKUP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "util.h"

struct scan_file {
	char *name;      /* file name */
	char *src;       /* absolute path to read it from */
	int dir;         /* index into the table's dirs, or -1 for the table directory */
	struct stat st;
};

struct scan_dir {
	char *name; /* ".<index>" */
	struct stat st;
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
};

struct scan_opts {
	char **data_dirs;
	size_t ndata_dirs;
	const char *tag;
	char **keyspaces; /* --keyspace */
	size_t nkeyspaces;
	char **tables;    /* --table KS.TABLE */
	size_t ntables;
	bool include_system;
};

struct scan_result {
	struct scan_table *tables; /* sorted by keyspace, table; files sorted by dir, name */
	size_t ntables;
	uint64_t nfiles;
	uint64_t bytes;
};

/* Scans. On failure, err holds a one-line reason naming the thing that failed. */
int scan_snapshot(const struct scan_opts *o, struct scan_result *res, struct strbuf *err);
void scan_result_free(struct scan_result *res);

bool is_system_keyspace(const char *ks);

#endif
