/* backup_files.h: a backup's tables and files, loaded from the catalog for the commands that
 * read backups back (verify, restore). */
#ifndef CASSBACKUP_BACKUP_FILES_H
#define CASSBACKUP_BACKUP_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "sstable.h"

struct vf {
	char *dir, *name;   /* where it is presented: dir "" or ".<index>" */
	uint64_t size;      /* expected */
	unsigned char want[32];
	struct cb_blob_loc loc; /* source when path is NULL */
	char *path;         /* source when reading a directory */
	uint32_t mode;
	int64_t mtime_ns;
	bool read_ok;
	bool want_sha1;
	bool may_differ;    /* verify --imported: Statistics.db that nodetool import rewrote */
	struct data_sums sums;
	char *small;
	size_t small_len;
};

struct vlist {
	struct vf *v;
	size_t n, cap;
};

struct tables {
	struct cb_table_row *v; /* strings owned */
	size_t n;
	int64_t backup_id;
};

/* Loads the tables of backup `name` (a ref) from the store's catalog, checked against its
 * manifest: the same tables, each once (files_match_manifest checks each table's files). Prints
 * why not (naming the store) and returns < 0: -ENOENT when there is no such backup, -EUCLEAN
 * when the catalog disagrees with the manifest; *ts is then empty. */
struct store;
int load_tables(struct store *s, const char *store, const char *name, struct tables *ts);
void tables_free(struct tables *ts); /* leaves *ts empty */

/* Loads the files of one table row; prints why not and returns < 0. */
int load_files(catalog *cat, const char *store, int64_t table_row, struct vlist *l);

/* Holds l, all the catalog's files of table ks.table of backup name (both "" for the node's own
 * files), against the backup's manifest in the store: each file is what the manifest says
 * (store_check_file_content), each is named once, and the manifest has no other
 * (store_check_table_files). The catalog is a cache, and what a file's bytes are checked
 * against must be the store's word. 0, or < 0 with one line in why naming the first that
 * disagrees (-EUCLEAN) or why the manifest cannot be read. */
int files_match_manifest(struct store *s, const char *name, const char *ks, const char *table,
			 const struct vlist *l, struct strbuf *why);
void vlist_free(struct vlist *l);

#endif
