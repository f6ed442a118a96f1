/* store.h: the on-disk layout of a store.
 *
 *   STORE/catalog.db           SQLite (WAL), the index; rebuildable from packs alone
 *   STORE/packs/xx/ID.tar.zst  immutable packs
 *   STORE/tmp/                 packs being written; renamed into packs/ only when complete
 *
 * A pack being written is held with an exclusive flock(2) until its backup is registered. A
 * writer creates and locks its file while holding a shared flock on tmp/ itself, and the
 * reclaimer looks while holding it exclusively, so no file is ever seen between its creation and
 * its lock: a tmp/ file nobody holds is a leftover of a process that died, whatever its size or
 * age, and is reclaimed.
 */
#ifndef CASSBACKUP_STORE_H
#define CASSBACKUP_STORE_H

#include "catalog.h"

/* Creates a store at root: the directory (its parent must exist; it may exist if empty),
 * packs/, tmp/ and an empty catalog. -EEXIST when root holds anything else. */
int store_init(const char *root);

/* Opens root's catalog. -ENOENT when root is missing, -EMEDIUMTYPE when root is not a store.
 * *out is NULL on failure. */
int store_open(const char *root, int catalog_flags, catalog **out);

/* Removes files in tmp/ that no live process holds. *reclaimed gets their count. Waits (briefly)
 * for writers that are creating their tmp file. */
int store_reclaim_tmp(const char *root, unsigned *reclaimed);

struct store_tmp {
	int fd;
	char *path;    /* absolute tmp path */
	char *relpath; /* final path relative to root: packs/xx/ID.tar.zst */
	char *final;   /* absolute final path */
	bool renamed;  /* store_tmp_commit() moved it to final */
};

/* Creates a new, locked tmp file for a pack and picks its final name. */
int store_tmp_create(const char *root, struct store_tmp *t);

/* fsyncs the tmp file, renames it to its final place and fsyncs both directories. The lock
 * stays held (the fd open) until store_tmp_release(). */
int store_tmp_commit(const char *root, struct store_tmp *t);

/* Closes the fd (dropping the lock). Unless the backup was registered (committed), removes the
 * pack from wherever it is, tmp/ or packs/, so no unregistered pack is left behind. */
void store_tmp_release(struct store_tmp *t, bool committed);

#endif
