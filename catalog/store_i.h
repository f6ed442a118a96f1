/* store_i.h: what the files of the store share inside the catalog library (internal). */
#ifndef CASSBACKUP_STORE_I_H
#define CASSBACKUP_STORE_I_H

#include "store.h"

/* filecheck.c: the caches behind store_check_file_content and store_check_location. */
struct filecheck;
int filecheck_new(struct filecheck **out);
void filecheck_free(struct filecheck *fc); /* accepts NULL */

/* The store's filecheck, made at the first call. -ENOMEM. */
int store_filecheck(struct store *s, struct filecheck **out);

#endif
