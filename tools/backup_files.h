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

/* Loads the tables of backup `name`; prints why not (naming the store) and returns < 0. */
int load_tables(catalog *cat, const char *store, const char *name, struct tables *ts);
void tables_free(struct tables *ts);

/* Loads the files of one table row; prints why not and returns < 0. */
int load_files(catalog *cat, const char *store, int64_t table_row, struct vlist *l);

/* Holds each file of l (of table ks.table of backup name) against the backup's manifest in
 * the store (store_check_file_content): the catalog is a cache, and what a file's bytes are
 * checked against must be the store's word. 0, or < 0 with one line in why naming the first
 * that disagrees (-EUCLEAN) or why the manifest cannot be read. */
struct store;
int files_match_manifest(struct store *s, const char *name, const char *ks, const char *table,
			 const struct vlist *l, struct strbuf *why);
void vlist_free(struct vlist *l);

#endif
