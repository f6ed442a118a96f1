/* store.h: a store (format 2) and its catalog.
 *
 * A store is a set of objects behind a backend (backend.h: a local directory or an S3 prefix):
 *   config                       store id, format, creation time; written once by init
 *   backups/NAME.json            one manifest per backup (manifest.h); its presence is the
 *                                backup's existence: written last, after its pack
 *   packs/xx/ID.tar.zst          immutable packs of blobs (pack.h), each listing its blobs
 *   locks/ID.json                who works on the store (lock.h)
 * and catalog.db, an SQLite cache of backups/ and of the packs' indexes: STORE/catalog.db for a
 * local store, CACHE_DIR/<store id>/catalog.db for a remote one. Opening a store brings the
 * catalog up to date with the store (store_reconcile): a backup whose manifest appeared (a
 * crash between manifest and catalog, another node's backup, a catalog restored from
 * elsewhere) is taken in, one whose manifest went (forget) is dropped, and with
 * RECONCILE_PACKS packs are listed too, so packs that went (prune) are dropped and new ones
 * indexed. A deleted catalog is rebuilt the same way (reindex).
 */
#ifndef CASSBACKUP_STORE_H
#define CASSBACKUP_STORE_H

#include "backend.h"
#include "catalog.h"
#include "manifest.h"
#include "pack.h"
#include "util.h"

#define STORE_DEFAULT_CACHE_DIR "/var/cache/cassbackup"
#define MANIFEST_MAX (1u << 30)

/* Process-wide settings, set by a program's main before it opens a store: how to reach S3
 * stores (the strings must outlive every store) and where remote stores keep their catalog
 * (else $CASSBACKUP_CACHE_DIR, else STORE_DEFAULT_CACHE_DIR as root, else
 * $TMPDIR/cassbackup-UID). */
void store_set_s3_options(const struct cb_s3_options *o);
const struct cb_s3_options *store_s3_options(void);
void store_set_cache_dir(const char *dir);

/* Creates a store at location: a local directory (created if missing; its parent must exist;
 * if it exists it must be empty) or an S3 prefix (which must hold no config). Writes config
 * and, for a local store, an empty catalog. -EEXIST when something is there. */
int store_init(const char *location, struct strbuf *err);

struct store;

enum store_flags {
	STORE_READONLY = 1 << 0,   /* never write the store (the catalog may still be refreshed) */
	STORE_NO_RECONCILE = 1 << 1, /* trust the catalog as it is (a mount's worker threads) */
};

enum reconcile_flags {
	RECONCILE_PACKS = 1 << 0, /* list packs/ too: drop gone packs, index new ones */
};

struct reconcile_stats {
	unsigned backups_added, backups_removed, packs_added, packs_removed;
	unsigned bad_manifests, bad_packs; /* skipped: they do not parse or verify */
};

/* Opens the store at location, checks its config (one line in err otherwise: not a store,
 * another format), opens its catalog and, unless STORE_NO_RECONCILE, reconciles it
 * (RECONCILE_PACKS). -ENOENT (nothing there), -EMEDIUMTYPE (not a cassbackup store),
 * -EPROTONOSUPPORT (another format), or -errno. */
int store_open_full(const char *location, int flags, struct store **out, struct strbuf *err);
void store_close(struct store *s); /* accepts NULL */

struct cb_backend *store_backend(struct store *s);
catalog *store_catalog(struct store *s);
const struct store_config *store_get_config(const struct store *s);
const char *store_location(const struct store *s);
/* The catalog file this store uses. */
const char *store_catalog_path(const struct store *s);

/* Brings the catalog up to date with the store (see above). */
int store_reconcile(struct store *s, int flags, struct reconcile_stats *st, struct strbuf *err);

/* Registers, within the caller's catalog transaction, a pack and every blob its index lists. */
int store_register_pack(catalog *c, const struct cb_pack_info *p, const struct pack_index *pi,
			int64_t *pack_id);
/* Registers, within the caller's catalog transaction, the backup a manifest describes. Files
 * whose content no known pack holds are registered without a location (the backup is then
 * listed as incomplete, and reading them fails). */
int store_register_manifest(catalog *c, const struct manifest *m, uint64_t manifest_size);

/* backups/NAME.json */
int store_manifest_key(const char *name, struct strbuf *key);

/* Reads and parses the manifest of backup name. -ENOENT when there is none. */
int store_read_manifest(struct store *s, const char *name, struct manifest **out,
			uint64_t *size, struct strbuf *err);

/* Compatibility for readers that only need the catalog: opens the store (reconciled, unless
 * catalog_flags has CATALOG_NO_RECONCILE) and hands over its catalog connection. */
int store_open(const char *location, int catalog_flags, catalog **out);

#endif
