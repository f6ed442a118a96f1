/* store.h: a store (format 2), the one object that owns it.
 *
 * A store is a set of objects behind a backend (backend.h: a local directory or an S3 prefix):
 *   config                       store id, format, creation time; written once by init
 *   backups/NAME/NODE.json       one manifest per node backup (manifest.h); its presence is
 *                                the backup's existence: written last, after its packs, never
 *                                replaced. NODE is the node's key (manifest_node_key: its host
 *                                id, else its node name), so the nodes of one cluster backup NAME
 *                                commit side by side without a name taken from each other.
 *   backups/NAME.json            the same, as stores written before cluster backups keep them
 *                                (read, listed, forgotten and copied as they are; never written
 *                                by create)
 * A backup's *ref* is its key's path below backups/ without ".json": "NAME/NODE", or "NAME"
 * for the older layout. Refs are what the catalog and the store's readers name backups by.
 *   packs/xx/ID.tar.zst          immutable packs of blobs (pack.h), each listing its blobs
 *   locks/ID.json                who works on the store (lock.h)
 * and catalog.db, an SQLite cache of backups/ and of the packs' indexes: STORE/catalog.db for a
 * local, writable store, CACHE_DIR/<store id>/catalog.db otherwise (a remote store, a read-only
 * copy). Opening a store brings the catalog up to date with the store (store_reconcile).
 *
 * struct store is what everything else asks: it owns the backend, the catalog (one connection,
 * for the thread that opened the store) and the pack cache that reads packs by key. Nothing
 * about a store is process-global: two stores with other settings can be open at once.
 */
#ifndef CASSBACKUP_STORE_H
#define CASSBACKUP_STORE_H

#include "backend.h"
#include "catalog.h"
#include "manifest.h"
#include "pack.h"
#include "packread.h"
#include "util.h"

#define STORE_SYSTEM_CACHE_DIR "/var/cache/cassbackup"
#define MANIFEST_MAX (1u << 30)
#define STORE_DEFAULT_READ_CACHE (16u << 20)

enum store_flags {
	STORE_READONLY = 1 << 0,     /* never write the store (the catalog, a cache, is refreshed) */
	STORE_NO_RECONCILE = 1 << 1, /* open the catalog as it is; the caller reconciles */
	/* key_file is a default that a plain store ignores even when written (copy's target
	 * falling back to the source's key); without it, a key given for a store opened to write
	 * must find it encrypted */
	STORE_KEY_IF_ENCRYPTED = 1 << 2,
	/* no catalog: a command that only writes objects through the backend (archive-commitlog)
	 * must not wait for another's write transaction on it; store_catalog gives NULL */
	STORE_NO_CATALOG = 1 << 3,
};

/* How to open a store. A zeroed struct is the default for each field. */
struct store_options {
	const struct cb_s3_options *s3; /* how to reach s3:// stores; copied by the S3 client */
	/* Where a store keeps a catalog it cannot keep beside itself. NULL: $CASSBACKUP_CACHE_DIR,
	 * else STORE_SYSTEM_CACHE_DIR for root, else $XDG_CACHE_HOME/cassbackup, else
	 * ~/.cache/cassbackup. It must be the user's own directory (util.h open_private_dir):
	 * whoever else can write there could plant the catalog. */
	const char *cache_dir;
	int flags;                      /* enum store_flags */
	size_t read_cache_bytes;        /* decoded frames the pack cache keeps (0: 16 MiB) */
	/* An encrypted store's key file (crypt.h); a plain store opened read only ignores it. Read
	 * at open, its mode checked; the key it unwraps stays in locked memory for the store's
	 * life. */
	const char *key_file;
	/* Or a passphrase, read from this file (never from the command line); opens passphrase
	 * slots. key_file wins when both are given. */
	const char *passphrase_file;
	/* Or the passphrase itself, typed at a terminal (tools/ttypass.h), when neither file is
	 * given; the caller's, in locked memory. */
	const struct crypt_secret *passphrase;
	bool encrypt;                   /* store_init: make an encrypted store (needs key_file) */
};

/* The cache directory o names or implies (see above), into out. */
int store_cache_dir(const struct store_options *o, struct strbuf *out);

/* Creates a store at location: a local directory (created if missing; its parent must exist;
 * if it exists it must be empty) or an S3 prefix (which must hold no config). Writes config
 * and, for a local store, an empty catalog. -EEXIST when something is there. With o->encrypt,
 * a random master key is made and its first key slot (keys/ID.json, opened by o->key_file)
 * written before config, which then says the store is encrypted; -ENOKEY, with nothing made,
 * when no key file is given or it cannot be used. */
int store_init(const char *location, const struct store_options *o, struct strbuf *err);

struct store;

/* Opens the store at location, checks its config (one line in err otherwise: not a store,
 * another format), opens its catalog and, unless STORE_NO_RECONCILE, reconciles it
 * (RECONCILE_PACKS). -ENOENT (nothing there), -EMEDIUMTYPE (not a cassbackup store),
 * -EPROTONOSUPPORT (another format), -EPERM (a cache directory that is not the user's own),
 * or -errno. An encrypted store needs o->key_file: -ENOKEY without one or when it cannot be
 * used (missing, too open, another's, the wrong size: err says which), -EKEYREJECTED when it
 * opens none of the store's key slots; its backend then seals and opens every object but
 * config and keys/ (backend_crypt.c), and its catalog, a plaintext cache, lives in the cache
 * directory, never in the store. A plain store whose keys/ holds slots is refused (-EBADMSG),
 * to read as to write: its config was changed to make us write plaintext, or read what was
 * planted; a plain store opened with a key given is refused too (-EKEYREJECTED; not with
 * STORE_KEY_IF_ENCRYPTED):
 * whoever gives a key means to write ciphertext, and to read only what the key authenticates
 * (a store whose config, keys/ and contents were replaced by plain ones reads as plain).
 * *out is the caller's (store_close). */
int store_open(const char *location, const struct store_options *o, struct store **out,
	       struct strbuf *err);
void store_close(struct store *s); /* accepts NULL */

struct cb_backend *store_backend(struct store *s);
catalog *store_catalog(struct store *s);
const struct store_config *store_get_config(const struct store *s);
const char *store_location(const struct store *s);
/* True for an encrypted store. */
bool store_encrypted(const struct store *s);
/* The catalog file this store uses. */
const char *store_catalog_path(const struct store *s);

/* The store's pack cache (made at the first call, read_cache_bytes big, with read-ahead
 * workers on object storage): reads packs by key, for any thread. -ENOMEM. */
int store_pack_cache(struct store *s, pack_cache **out);

/* Another connection to the store's catalog, read-only (CATALOG_SMALL_CACHE when small), for
 * another thread (a mount's worker). -ESTALE when the file at the catalog's path is no longer
 * the catalog this store opened (its identity changed: deleted and made anew): the caller
 * must start afresh rather than mix row ids of two catalogs. */
int store_catalog_connect(struct store *s, bool small, catalog **out);

/* Checks the catalog's word on file f of backup f->backup against the store: its content
 * (sha256, size) must be what backups/<f->backup>.json lists for f. 0; -EUCLEAN when they
 * differ (a stale, damaged or planted catalog; err says so); else the error reading the
 * manifest (-ENOENT: forgotten meanwhile). Manifests are read once and kept as compact
 * digests in a bounded cache; in a directory store each question also looks at the
 * manifest's version (one stat), so one forgotten (-ENOENT) or made again under its name is
 * seen at once. Thread-safe. */
int store_check_file_content(struct store *s, const struct cb_file_ident *f,
			     const unsigned char sha256[32], uint64_t size, struct strbuf *err);
/* How many manifests the store_check_ functions have read so far (for tests). */
uint64_t store_check_manifest_reads(struct store *s);

/* Checks the catalog's count of the files of table t->keyspace/t->table (both "" for the
 * node's own files) of backup t->backup: backups/<t->backup>.json must list exactly nfiles
 * for it. With store_check_file_content of each of the catalog's files, each named once, this
 * makes the catalog's list the manifest's: a file or table missing from the catalog is found.
 * 0; -EUCLEAN (err says so); else the error reading the manifest. Thread-safe. */
int store_check_table_files(struct store *s, const struct cb_file_ident *t, size_t nfiles,
			    struct strbuf *err);

/* The same for table t->keyspace/t->table's id: backups/<t->backup>.json must give it
 * table_id (32 hex digits, or "" for a directory without one). 0; -EUCLEAN (err says so); else
 * the error reading the manifest. Thread-safe. */
int store_check_table_id(struct store *s, const struct cb_file_ident *t, const char *table_id,
			 struct strbuf *err);

/* The same for the backup's tables (b->backup; keyspace, table, dir and name unused): the
 * manifest must list exactly ntables tables (the node's own files are not one). */
int store_check_backup_tables(struct store *s, const struct cb_file_ident *b, size_t ntables,
			      struct strbuf *err);

/* Checks that the pack the catalog reads a content from (loc) lists that content (sha256,
 * size) at that offset in its own index: so bytes read there are that content's, or a frame
 * checksum fails. 0, -EUCLEAN (err says so), or the error reading the pack's index (kept in a
 * bounded cache). Thread-safe. */
int store_check_location(struct store *s, const struct cb_blob_loc *loc, struct strbuf *err);

/* For a long-lived reader (the mount): when the file at the store's catalog path is no longer
 * the catalog the store opened (deleted and made anew, set aside as damaged, a copy put in
 * place: that one gets a new identity), opens the one there now (making it when missing) and
 * reconciles it with the store: 1; 1 too when the same file's identity was renewed by another
 * reader; 0 when nothing changed; or -errno with err. Only the thread that owns the store's
 * catalog may call it. */
int store_follow_catalog(struct store *s, struct strbuf *err);

enum reconcile_flags {
	RECONCILE_PACKS = 1 << 0, /* list packs/ too: drop gone packs, index new ones */
	/* list packs/ too when a backup taken in has files whose bytes no known pack holds (a
	 * backup another host made): a refresh that lists only backups/ otherwise */
	RECONCILE_PACKS_IF_NEEDED = 1 << 1,
	/* decisions that delete are made from this reading: a manifest in backups/ that cannot be
	 * read or parsed, whatever the reason (a failed GET, a 404 after the listing, an empty
	 * body), fails the reconcile with -EBADMSG/-errno and err naming it, the catalog unchanged */
	RECONCILE_STRICT = 1 << 2,
	/* a rebuild in place (store_rebuild_catalog): the catalog was emptied first, so what is
	 * not taken in is gone from it. A manifest or pack that does not read or parse is read
	 * once more; one that then does not read (a failed request, fewer bytes than listed)
	 * fails the rebuild with -errno and err naming it, the catalog as it was; one read whole
	 * that does not parse is damaged: named (bad_manifests, bad_packs) and left out */
	RECONCILE_REBUILD = 1 << 3,
};

struct reconcile_stats {
	unsigned backups_added, backups_removed, packs_added, packs_removed;
	unsigned bad_manifests, bad_packs; /* skipped: they do not parse or verify */
	bool unreadable;                   /* RECONCILE_STRICT failed on a manifest (err says which) */
	struct strbuf why;                 /* what was skipped and why ("; "-separated) */
};
void reconcile_stats_free(struct reconcile_stats *st);

/* NULL, or why this run keeps its catalog in a temporary directory of its own ("PATH:
 * reason": the usual one's disk is full), rebuilt from the store and removed at close. */
const char *store_temporary_catalog(const struct store *s);

/* How many packs in packs/ the last reading of it could not index (a failed read, a damaged
 * pack), and why the first, "KEY: reason", into why: the bytes they hold are in no pack the
 * catalog knows until a reading succeeds. Safe from any thread. */
unsigned store_packs_unread(struct store *s, char why[512]);

/* How many manifests the reconcile store_open ran could not read or parse (*n), and which and
 * why ("" when none): their backups are not in the catalog, so list must say so. */
const char *store_skipped_manifests(const struct store *s, unsigned *n);

/* Where the content of loc (sha256, size) is read from now that its pack is gone (a prune
 * repacked it while a command read the backup): the catalog's packs brought up to date
 * (RECONCILE_PACKS) and the content looked up again. 0 with *moved in another pack, -ENOENT
 * when no pack holds it, or the error of reading the store. For the thread that opened the
 * store. */
int store_relocate(struct store *s, const struct cb_blob_loc *loc, struct cb_blob_loc *moved);

/* Brings the catalog up to date with the store, in one transaction: a backup whose manifest
 * appeared is taken in, one whose manifest went (or changed) is dropped; with RECONCILE_PACKS
 * packs that went are dropped and new ones indexed. Without RECONCILE_STRICT, a manifest that
 * cannot be read is skipped (counted, named in st->why) and a backup the catalog has keeps its
 * rows. st may be NULL. */
int store_reconcile(struct store *s, int flags, struct reconcile_stats *st, struct strbuf *err);

/* Rebuilds the catalog from the store alone, in place and in one transaction: every row goes,
 * then backups/ and every pack's index are read again (as store_reconcile with
 * RECONCILE_PACKS). Readers of the catalog (a running mount) see the old rows or the new,
 * never a mix. Each node keeps its row id where its old row was the same node
 * (catalog_clear); renumber: none does, so that numbers a mount handed out from rows that
 * may have been wrong name nothing. */
int store_rebuild_catalog(struct store *s, bool renumber, struct reconcile_stats *st,
			  struct strbuf *err);

/* Registers, within the caller's catalog transaction, a pack and every blob its index lists. */
int store_register_pack(catalog *c, const struct cb_pack_info *p, const struct pack_index *pi,
			int64_t *pack_id);
/* Registers, within the caller's catalog transaction, the backup a manifest describes. Files
 * whose content no known pack holds are registered without a location (the backup is then
 * listed as incomplete, and reading them fails). */
/* nested: the manifest is kept at backups/NAME/NODE.json (else backups/NAME.json).
 * manifest_version: the store's version of it (cb_object_info); "" or NULL when not known,
 * and the next reconcile reads it again. 0; -EEXIST when the catalog has the node's backup
 * of that name; -EBADMSG when a row below the backup's is taken (the manifest names a node
 * twice): nothing registered either way; or another -errno. */
int store_register_manifest(catalog *c, const struct manifest *m, bool nested,
			    uint64_t manifest_size, const char *manifest_version);

/* The longest ref: a name (250 bytes), '/', a node key (64), NUL. */
#define CB_REF_MAX 320
/* backups/REF.json; -EINVAL for a ref that cannot be a backup's. */
int store_manifest_key(const char *ref, struct strbuf *key);
struct store_lock;
/* The commit point of a create or a copy: writes doc as the manifest of backup ref, only if
 * there is none (-EEXIST, err untouched: the caller says whose). The caller checked its lease
 * (lock) just before; it is checked again once the manifest is written, since the write itself
 * may take minutes (retries, a paused process) and a lease that lapsed meanwhile may have let
 * a prune delete packs the manifest names: the manifest is then deleted again and -ETIMEDOUT
 * returned. Otherwise 0, or the backend's error; err gets one line. version (NULL: not
 * wanted) gets the written manifest's version (cb_object_info), "" when the store did not say. */
int store_commit_manifest(struct store *s, struct store_lock *lock, const char *ref,
			  const void *doc, size_t len, char version[CB_VERSION_MAX], struct strbuf *err);
/* The ref in a key of backups/ ("backups/NAME.json" or "backups/NAME/NODE.json"), into ref:
 * 0, or -EINVAL for a key that is not a manifest's. The one place such keys are read. */
int store_manifest_name(const char *key, char ref[CB_REF_MAX]);
/* The ref of node backup (name, node key): "NAME/NODE", into ref. -EINVAL when name or node
 * cannot be one's. */
int store_backup_ref(const char *name, const char *node_key, char ref[CB_REF_MAX]);
/* The ref of node's backup name under another spelling of its host id, which an older
 * cassbackup kept as the user gave it (manifest_node_key_same), as backups/NAME/ lists it.
 * 0, -ENOENT when there is none (node_key is no host id), or the listing's -errno. */
int store_backup_ref_other_case(struct store *s, const char *name, const char *node_key,
				char ref[CB_REF_MAX]);
/* Splits a ref into its name and its node key ("" for the older layout). -EINVAL. */
int store_ref_split(const char *ref, char name[256], char node_key[65]);

/* Reads and parses the manifest of the backup ref names, and checks that it describes that
 * backup (its name, and its node key for a nested ref). -ENOENT when there is none. */
int store_read_manifest(struct store *s, const char *ref, struct manifest **out,
			uint64_t *size, struct strbuf *err);

/* --- key slots of an encrypted store (storekey.c) ------------------------------------------ */

struct crypt_key;
struct crypt_secret;
struct crypt_slot_info;

/* Lists keys/ and opens the first slot of kind (enum crypt_slot_kind) secret opens, for the
 * store id and chunk size its config gives: *key (the caller's) and slot_id (the slot's id, 32
 * hex digits). -EKEYREJECTED (err: how many slots it opened none of), -ENOKEY (no slots),
 * -EBADMSG (every slot of that kind damaged), -EUCLEAN (the config is not what the slots were
 * made for: its id or chunk size changed; err says so), or the store's error. */
int store_keys_unlock(struct cb_backend *b, const char *store_id, uint32_t chunk,
		      const struct crypt_secret *secret, int kind, struct crypt_key **key,
		      char slot_id[33], struct strbuf *err);
/* Writes a new slot (kind: enum crypt_slot_kind) for key into keys/ID.json, exclusively; id
 * gets its id. */
int store_keys_add(struct cb_backend *b, const char *store_id, uint32_t chunk,
		   const struct crypt_key *key, int kind, const struct crypt_secret *secret, char id[33],
		   struct strbuf *err);

/* The key and slot an encrypted store was opened with (NULL and "" for a plain one). */
const struct crypt_key *store_key(const struct store *s);
const char *store_key_slot(const struct store *s);

/* Calls cb for each slot in keys/ (a slot that does not parse: info NULL, why says why). A
 * slot that cannot be read (the store's error, not the slot's) stops the listing with that
 * error, err naming the slot. */
int store_keys_list(struct store *s,
		    int (*cb)(void *ctx, const char *id, const struct crypt_slot_info *info,
			      const char *why),
		    void *ctx, struct strbuf *err);
/* Removes slot id: 0; -EBUSY for the slot the store was opened with, -ESTALE when that slot
 * is gone (another key removed it since the store was opened), -ENOENT when id is absent; 1
 * when id was removed but the slot the store was opened with had gone meanwhile (a remove
 * that ran while this one was paused past its lease): written back when no other slot was
 * left, else left retired (err says which). The caller holds the store's exclusive lock, so
 * that removes do not interleave; it is checked (store_lock_check, its error returned) after
 * the slot the store was opened with is seen and immediately before the delete. */
int store_keys_remove(struct store *s, struct store_lock *lock, const char *id, struct strbuf *err);

#endif
