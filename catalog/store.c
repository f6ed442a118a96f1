/* store.c: see store.h. */
#include "store.h"
#include "store_i.h"
#include "packread.h"
#include "backend_i.h"
#include "crypt.h"
#include "lock.h"
#include "hash.h"
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_KEY "config"
#define CONFIG_MAX 65536

struct store {
	char *location;
	struct store_options opts;
	struct cb_backend *b;
	catalog *cat;
	struct store_config config;
	char *catalog_path;
	char catalog_id[33]; /* the identity of the catalog opened (catalog_identity), under mu */
	dev_t catalog_dev;   /* and its file */
	ino_t catalog_ino;
	unsigned ra_workers; /* read-ahead workers of the pack cache: object storage only */
	pthread_mutex_t mu;  /* guards packs and fc */
	pack_cache *packs;   /* made at need */
	struct filecheck *fc; /* made at need */
	const struct crypt_key *key; /* an encrypted store's: owned by its backend (b) */
	char key_slot[33];           /* the slot that opened it */
	unsigned skipped_manifests;  /* by the reconcile at open: they did not read or parse */
	char *skipped_why;           /* which, and why (NULL: none) */
	char gone_pack[256];         /* store_relocate: the pack the catalog's packs were last
				      * read again for ("": none) */
	struct tmpdir temp_catalog;  /* the private directory of a catalog for this run only
				      * (use_temporary_catalog), removed at close; path NULL: none */
	char *temp_catalog_why;      /* why the usual catalog could not be used */
	bool keeps_reserve;          /* a local store opened to write: RESERVE_KEY kept */
	unsigned packs_unread;       /* by the last reading of packs/ (under mu): packs that */
	char packs_unread_why[512];  /* could not be indexed, and why the first ("": none) */
};

struct cb_backend *store_backend(struct store *s) { return s->b; }
catalog *store_catalog(struct store *s) { return s->cat; }
const struct store_config *store_get_config(const struct store *s) { return &s->config; }
const char *store_location(const struct store *s) { return s->location; }
const char *store_catalog_path(const struct store *s) { return s->catalog_path; }
bool store_encrypted(const struct store *s) { return s->config.crypt_chunk != 0; }
const struct crypt_key *store_key(const struct store *s) { return s->key; }
const char *store_key_slot(const struct store *s) { return s->key_slot; }

int store_ref_split(const char *ref, char name[256], char node_key[65])
{
	const char *slash = strchr(ref, '/');
	size_t n = slash ? (size_t)(slash - ref) : strlen(ref);
	if (n == 0 || n > 250)
		return -EINVAL;
	memcpy(name, ref, n);
	name[n] = '\0';
	if (!name_is_component(name))
		return -EINVAL;
	*node_key = '\0';
	if (!slash)
		return 0;
	if (strlen(slash + 1) > 64 || !manifest_node_key_ok(slash + 1))
		return -EINVAL;
	strcpy(node_key, slash + 1);
	return 0;
}

int store_backup_ref(const char *name, const char *node_key, char ref[CB_REF_MAX])
{
	if (!name_is_component(name) || strlen(name) > 250 || !manifest_node_key_ok(node_key))
		return -EINVAL;
	snprintf(ref, CB_REF_MAX, "%s/%s", name, node_key);
	return 0;
}

struct spelling_ctx {
	const char *name, *node_key;
	char *ref; /* CB_REF_MAX; "" until found */
};

static int note_spelling(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	struct spelling_ctx *c = ctx;
	char ref[CB_REF_MAX], name[256], node[65];
	if (store_manifest_name(key, ref) == 0 && store_ref_split(ref, name, node) == 0 &&
	    !strcmp(name, c->name) && strcmp(node, c->node_key) != 0 &&
	    manifest_node_key_same(node, c->node_key))
		memcpy(c->ref, ref, CB_REF_MAX);
	return 0;
}

int store_backup_ref_other_case(struct store *s, const char *name, const char *node_key,
				char ref[CB_REF_MAX])
{
	char canon[37];
	if (host_id_canonical(node_key, canon) < 0)
		return -ENOENT;
	struct strbuf prefix = {0};
	struct spelling_ctx c = {.name = name, .node_key = node_key, .ref = ref};
	*ref = '\0';
	int r = sb_printf(&prefix, "backups/%s/", name) ?:
		cb_backend_list(s->b, prefix.buf, note_spelling, &c);
	sb_free(&prefix);
	return r < 0 ? r : *ref ? 0 : -ENOENT;
}

int store_manifest_key(const char *ref, struct strbuf *key)
{
	char name[256], node[65];
	if (store_ref_split(ref, name, node) < 0)
		return -EINVAL;
	return sb_printf(key, "backups/%s.json", ref);
}

/* The lease's words (store_lock_check) up to their ", so nothing is committed": not so when
 * the manifest could not be withdrawn. */
static int lapse_len(const char *lease)
{
	const char *cut = strstr(lease, ", so nothing is committed");
	return (int)(cut ? (size_t)(cut - lease) : strlen(lease));
}

/* After a lease lapsed while the manifest at key was written: deletes it again, if it is
 * still the one written (doc): by then another process may have forgotten it and made another
 * backup of that name, which is not ours to delete. */
static void withdraw_manifest(struct store *s, const char *key, const void *doc, size_t len,
			      const char *lease, struct strbuf *err)
{
	char *there = NULL;
	size_t n = 0;
	int d = cb_backend_get(s->b, key, len, &there, &n);
	bool ours = d == 0 && n == len && memcmp(there, doc, len) == 0;
	free(there);
	if (d == -ENOENT || d == -EFBIG || (d == 0 && !ours)) {
		sb_printf(err, "%s (its manifest %s, written meanwhile, is gone or was replaced since)",
			  lease, key);
		return;
	}
	if (d == 0)
		d = cb_backend_delete(s->b, key);
	if (d == 0 || d == -ENOENT)
		sb_printf(err, "%s (its manifest %s, written meanwhile, was withdrawn)", lease, key);
	else
		sb_printf(err, "%.*s, and its manifest %s, written meanwhile, could not be withdrawn "
			  "(%s): a prune may have deleted packs it names; verify the backup before "
			  "relying on it", lapse_len(lease), lease, key, cb_backend_why(d));
}

int store_commit_manifest(struct store *s, struct store_lock *lock, const char *ref,
			  const void *doc, size_t len, char version[CB_VERSION_MAX], struct strbuf *err)
{
	struct strbuf key = {0}, lease = {0};
	uint64_t there;
	int r = store_manifest_key(ref, &key);
	if (r == 0 && cb_backend_stat(s->b, key.buf, &there) == 0)
		r = -EEXIST;
	char written[CB_VERSION_MAX] = "";
	if (r == 0 && (r = cb_backend_put_version(s->b, key.buf, doc, len, CB_PUT_EXCLUSIVE, written)) < 0 &&
	    r != -EEXIST) {
		sb_printf(err, "cannot write %s/%s: %s", s->location, key.buf, cb_backend_why(r));
		if (cb_location_is_remote(s->location) && lock) { /* the PUT may still land */
			store_lock_keep(lock);
			sb_puts(err, "; the lock is left in place until it lapses, so that no prune "
				"deletes what this manifest names should it still be written");
		}
	}
	if (r == 0 && (r = store_lock_check(lock, &lease)) < 0)
		withdraw_manifest(s, key.buf, doc, len, lease.buf ? lease.buf : "the lock lapsed", err);
	if (version) /* as the write told it: "" (unknown), and the next reconcile reads it again */
		memcpy(version, r == 0 ? written : "", r == 0 ? CB_VERSION_MAX : 1);
	sb_free(&key);
	sb_free(&lease);
	return r;
}

int store_manifest_name(const char *key, char ref[CB_REF_MAX])
{
	if (strncmp(key, "backups/", 8) != 0)
		return -EINVAL;
	const char *n = key + 8;
	size_t len = strlen(n);
	char name[256], node[65];
	if (len <= 5 || len - 5 >= CB_REF_MAX || strcmp(n + len - 5, ".json") != 0)
		return -EINVAL;
	memcpy(ref, n, len - 5);
	ref[len - 5] = '\0';
	return store_ref_split(ref, name, node);
}

static const struct cb_s3_options *s3_of(const struct store_options *o)
{
	return o ? o->s3 : NULL;
}

/* --- the cache directory ----------------------------------------------------------------- */

int store_cache_dir(const struct store_options *o, struct strbuf *out)
{
	const char *env = getenv("CASSBACKUP_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
	if (o && o->cache_dir && *o->cache_dir)
		return sb_puts(out, o->cache_dir);
	if (env && *env)
		return sb_puts(out, env);
	if (geteuid() == 0)
		return sb_puts(out, STORE_SYSTEM_CACHE_DIR);
	if (xdg && *xdg == '/')
		return sb_printf(out, "%s/cassbackup", xdg);
	const char *home = getenv("HOME");
	struct passwd *pw = home && *home == '/' ? NULL : getpwuid(geteuid());
	if (!(home && *home == '/') && !(pw && pw->pw_dir && *pw->pw_dir == '/'))
		return -ENOENT;
	return sb_printf(out, "%s/.cache/cassbackup", home && *home == '/' ? home : pw->pw_dir);
}

/* --- init -------------------------------------------------------------------------------- */

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	int empty = 1;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

static int make_local_root(const char *root)
{
	if (mkdir(root, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	int e = dir_is_empty(root);
	return e < 0 ? e : e ? 0 : -EEXIST;
}

static int new_config(struct store_config *c)
{
	unsigned char id[16];
	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return -EIO;
	hex_encode(id, sizeof(id), c->id);
	c->format = CB_FORMAT;
	c->created_ns = now_ns();
	return 0;
}

/* The key file's (else the passphrase file's) secret into *out (the caller's). -ENOKEY when
 * the file cannot be used (err says why: missing, too open, another's, its size), -ENOMEM. */
static int read_secret(const char *key_file, const char *pass_file, struct crypt_secret **out,
		       struct strbuf *err)
{
	int r = key_file ? crypt_keyfile_read(key_file, out, err)
			 : crypt_secret_file_read(pass_file, "passphrase file", CRYPT_PASSPHRASE_MIN, out, err);
	return r < 0 && r != -ENOMEM ? -ENOKEY : r;
}

/* An encrypted store's first key slot, opened by secret (of kind enum crypt_slot_kind), written
 * before config: a store whose config says it is encrypted always has a slot (a crash between
 * leaves a slot and no store: init again finds the directory not empty, as after any failed
 * init). */
static int first_key_slot(struct cb_backend *b, const struct store_config *c, int kind,
			  const struct crypt_secret *secret, struct strbuf *err)
{
	struct crypt_key *key = NULL;
	char id[33];
	int r = crypt_key_new(&key);
	if (r < 0)
		sb_printf(err, "cannot make a key: %s", strerror(-r));
	r = r ?: store_keys_add(b, c->id, c->crypt_chunk, key, kind, secret, id, err);
	crypt_key_free(key);
	return r;
}

/* store_init once o's secret (NULL for a plain store) is read. */
static int init_store(const char *location, const struct store_options *o,
		      const struct crypt_secret *secret, struct strbuf *err)
{
	bool remote = cb_location_is_remote(location);
	int r = remote ? 0 : make_local_root(location);
	if (r == -EEXIST) {
		char config[PATH_MAX];
		snprintf(config, sizeof(config), "%s/%s", location, CONFIG_KEY);
		sb_puts(err, access(config, F_OK) == 0 ? "a store is already there"
						       : "the directory is not empty");
		return r;
	}
	if (r < 0) {
		sb_printf(err, "%s", strerror(-r));
		return r;
	}
	if (!remote)
		chmod(location, 0700);
	struct cb_backend *b;
	r = cb_backend_open(location, 0, s3_of(o), &b);
	if (r < 0) {
		sb_printf(err, "%s", cb_backend_why(r));
		return r;
	}
	struct store_config c = {0};
	struct strbuf doc = {0};
	r = new_config(&c);
	if (r == 0 && secret) {
		c.crypt_chunk = CRYPT_DEFAULT_CHUNK;
		r = first_key_slot(b, &c, o->key_file ? CRYPT_SLOT_FILE : CRYPT_SLOT_PASSPHRASE, secret, err);
	}
	if (r == 0) {
		r = store_config_write(&c, &doc) ?:
		    cb_backend_put(b, CONFIG_KEY, doc.buf, doc.len, CB_PUT_EXCLUSIVE);
		if (r < 0)
			sb_printf(err, "%s", r == -EEXIST ? "a store is already there" : cb_backend_why(r));
	}
	sb_free(&doc);
	cb_backend_close(b);
	if (r < 0 || remote)
		return r;
	struct store *s;
	struct store_options opts = o ? *o : (struct store_options){0};
	opts.flags = 0;
	opts.encrypt = false;
	r = store_open(location, &opts, &s, err); /* creates the local catalog */
	store_close(s);
	return r;
}

int store_init(const char *location, const struct store_options *o, struct strbuf *err)
{
	bool encrypt = o && o->encrypt;
	if (encrypt && !o->key_file && !o->passphrase_file) {
		sb_puts(err, "an encrypted store needs --key-file (or --passphrase-file)");
		return -ENOKEY;
	}
	/* read before anything is made: a key file that cannot be used leaves no directory */
	struct crypt_secret *secret = NULL;
	int r = encrypt ? read_secret(o->key_file, o->passphrase_file, &secret, err) : 0;
	r = r ?: init_store(location, o, secret, err);
	crypt_secret_free(secret);
	return r;
}

/* --- open -------------------------------------------------------------------------------- */

static int read_config(struct store *s, struct strbuf *err)
{
	char *doc;
	size_t len;
	char why[256] = "";
	int r = cb_backend_get(s->b, CONFIG_KEY, CONFIG_MAX, &doc, &len);
	if (r == -ENXIO) { /* no such bucket */
		sb_printf(err, "%s", cb_backend_why(r));
		return r;
	}
	if (r == -ENOENT || r == -EFBIG || r == -EISDIR) {
		sb_printf(err, "not a cassbackup store (no config)");
		if (r == -ENOENT)
			cb_backend_explain_absent(s->b, CONFIG_KEY, err);
		return -EMEDIUMTYPE;
	}
	if (r < 0) {
		sb_printf(err, "cannot read config: %s", cb_backend_why(r));
		return r;
	}
	r = store_config_parse(doc, len, &s->config, why, sizeof(why));
	free(doc);
	if (r == -EPROTONOSUPPORT)
		sb_printf(err, "%s", why);
	else if (r < 0)
		sb_printf(err, "not a cassbackup store (config: %s)", why);
	return r == -EBADMSG ? -EMEDIUMTYPE : r;
}

/* Which copy of the store this is, as 16 hex digits of a SHA-256: a local store by its real
 * path, an S3 one by its endpoint and location. Two stores of one id (a copy made with cp -a
 * or rsync, a replicated bucket) must never share a catalog in the cache: its rows say what
 * one of them holds, and a prune of the other would trust them. */
static int store_place(const struct store *s, const struct store_options *o, char hex[17])
{
	struct strbuf place = {0};
	int r;
	if (cb_location_is_remote(s->location)) {
		const struct cb_s3_options *so = s3_of(o);
		r = sb_printf(&place, "s3\n%s\n%s", so && so->endpoint ? so->endpoint : "", s->location);
	} else {
		char *real = realpath(s->location, NULL);
		r = real ? sb_printf(&place, "local\n%s", real) : -errno;
		free(real);
	}
	unsigned char h[32];
	r = r ?: sha256_buf(place.buf, place.len, h);
	sb_free(&place);
	for (int i = 0; r == 0 && i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return r;
}

/* Makes dir (and its parent) under fd, private: 0 or -errno. */
static int make_private_dirs(int fd, const char *parent, const char *dir)
{
	struct strbuf both = {0};
	int r = mkdirat(fd, parent, 0700) < 0 && errno != EEXIST ? -errno : 0;
	r = r ?: sb_printf(&both, "%s/%s", parent, dir);
	r = r ?: mkdirat(fd, both.buf, 0700) < 0 && errno != EEXIST ? -errno : 0;
	sb_free(&both);
	return r;
}

static bool catalog_place_unusable(int r);

/* Where the catalog lives: beside the store when it is a local, writable one; else in the
 * user's own cache directory, under the store's id and which copy of it this is
 * (CACHE/ID/PLACE/catalog.db: store_place), for a remote store or a read-only or encrypted one.
 * A cache directory that cannot be used (none, not a directory, not this user's own) is
 * -EINVAL with err: a setting to fix. Directories ID and PLACE in it that cannot be made
 * (catalog_place_unusable: something else in their place) leave the path set and their error
 * in *unusable, for a temporary catalog. */
static int pick_catalog_path(struct store *s, const struct store_options *o, int *unusable,
			     struct strbuf *err)
{
	*unusable = 0;
	struct strbuf p = {0};
	int r;
	if (!cb_location_is_remote(s->location) && !store_encrypted(s) && access(s->location, W_OK) == 0) {
		r = sb_printf(&p, "%s/catalog.db", s->location);
	} else {
		char place[17];
		r = store_cache_dir(o, &p);
		if (r == -ENOENT)
			sb_puts(err, "no cache directory for its catalog: set HOME or CASSBACKUP_CACHE_DIR");
		if (r == 0 && (r = store_place(s, o, place)) < 0)
			sb_printf(err, "cannot name its place in the cache: %s", strerror(-r));
		int fd = r < 0 ? r : open_private_dir(p.buf, true, err);
		if (fd >= 0) {
			r = make_private_dirs(fd, s->config.id, place);
			close(fd);
			if (r < 0 && catalog_place_unusable(r))
				*unusable = r, r = 0;
			else if (r < 0)
				sb_printf(err, "cannot create %s/%s/%s: %s", p.buf, s->config.id, place, strerror(-r));
		} else {
			r = fd == -ENOMEM ? fd : -EINVAL;
		}
		r = r ?: sb_printf(&p, "/%s/%s/catalog.db", s->config.id, place);
	}
	if (r < 0) {
		sb_free(&p);
		return r;
	}
	s->catalog_path = p.buf;
	return 0;
}

/* Removes path's -wal and -shm files: those of a catalog that is gone (deleted, or set aside
 * as damaged), which SQLite would otherwise read as the new catalog's. Processes that still
 * hold the old catalog keep theirs through their descriptors. */
static void drop_sidecars(const char *path)
{
	static const char *const ext[] = {"-wal", "-shm", "-journal"};
	for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
		struct strbuf p = {0};
		if (sb_printf(&p, "%s%s", path, ext[i]) == 0)
			unlink(p.buf);
		sb_free(&p);
	}
}

/* Takes the flock of path.lock, on which the creators of the catalog at path and those who set
 * a damaged one aside take turns: its descriptor (closing it lets go), or -errno. */
static int lock_catalog_place(const char *path)
{
	struct strbuf lock = {0};
	int r = sb_printf(&lock, "%s.lock", path);
	int lfd = r < 0 ? r : open(lock.buf, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0 && r == 0)
		r = -errno;
	if (lfd >= 0 && flock(lfd, LOCK_EX) < 0) {
		r = -errno;
		close(lfd);
		lfd = -1;
	}
	sb_free(&lock);
	return lfd >= 0 ? lfd : r;
}

/* Renames the catalog at path to path.SUFFIX under lock_catalog_place, only while path is
 * still the file *was (the one found damaged): another process may have set it aside and
 * made a new one meanwhile. 0 (also when it had done so) or -errno. */
static int set_catalog_aside(const char *path, const char *suffix, const struct stat *was)
{
	struct strbuf aside = {0};
	struct stat st;
	int lfd = lock_catalog_place(path);
	int r = lfd < 0 ? lfd : sb_printf(&aside, "%s.%s", path, suffix);
	if (r == 0 && stat(path, &st) == 0 && st.st_dev == was->st_dev && st.st_ino == was->st_ino &&
	    rename(path, aside.buf) < 0)
		r = -errno;
	if (lfd >= 0)
		close(lfd);
	sb_free(&aside);
	return r;
}

/* Creates an empty catalog at path, atomically: made under a name of its own, then linked into
 * place, so a process that opens the catalog meanwhile never sees a half-made one. Creators
 * take turns on an flock of path.lock, so the sidecars dropped are never a new catalog's.
 * -EEXIST when another process made it first. */
static int create_catalog(const char *path)
{
	struct strbuf tmp = {0};
	catalog *c;
	int r = sb_printf(&tmp, "%s.new-%d", path, (int)getpid());
	int lfd = r < 0 ? r : lock_catalog_place(path);
	if (lfd < 0)
		r = r < 0 ? r : lfd;
	else if (access(path, F_OK) == 0)
		r = -EEXIST;
	if (r == 0 && (r = catalog_open(&c, tmp.buf, CATALOG_CREATE)) == 0) {
		/* the file must hold it all: its WAL stays behind (a disk full at the checkpoint
		 * that closing makes left the file without its tables: "Structure needs cleaning") */
		r = catalog_checkpoint(c);
		catalog_close(c);
	}
	if (r == 0) {
		drop_sidecars(path);
		/* private, whatever the umask (its -wal and -shm files take the same mode) */
		r = chmod(tmp.buf, 0600) < 0 ? -errno : link(tmp.buf, path) < 0 ? -errno : 0;
	}
	if (tmp.buf) { /* and what SQLite made beside it when it failed (a disk full) */
		unlink(tmp.buf);
		drop_sidecars(tmp.buf);
	}
	if (lfd >= 0)
		close(lfd);
	sb_free(&tmp);
	return r;
}

static int open_catalog(struct store *s, struct strbuf *err)
{
	struct stat was;
	bool there = stat(s->catalog_path, &was) == 0;
	int r = catalog_open(&s->cat, s->catalog_path, 0);
	if ((r == -EMEDIUMTYPE || r == -EUCLEAN) && there) { /* damaged, or of another format: */
		char format[64];                             /* it is only a cache */
		bool other = catalog_format_of(s->catalog_path, format, sizeof(format)) == 0;
		r = set_catalog_aside(s->catalog_path, other ? format : "damaged", &was) ?: -ENOENT;
	}
	if (r == -ENOENT) {
		r = create_catalog(s->catalog_path);
		r = (r == 0 || r == -EEXIST) ? catalog_open(&s->cat, s->catalog_path, 0) : r;
	}
	struct stat st;
	if (r == 0 && stat(s->catalog_path, &st) < 0)
		r = -errno;
	if (r < 0) {
		sb_printf(err, "cannot open catalog %s: %s", s->catalog_path, strerror(-r));
		return r;
	}
	pthread_mutex_lock(&s->mu);
	snprintf(s->catalog_id, sizeof(s->catalog_id), "%s", catalog_identity(s->cat));
	s->catalog_dev = st.st_dev;
	s->catalog_ino = st.st_ino;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int store_follow_catalog(struct store *s, struct strbuf *err)
{
	struct stat st;
	char was[33];
	snprintf(was, sizeof(was), "%s", s->catalog_id);
	if (stat(s->catalog_path, &st) == 0 && st.st_dev == s->catalog_dev && st.st_ino == s->catalog_ino) {
		/* the same file; another reader may have renewed its identity (below) */
		int r = catalog_reread_identity(s->cat);
		if (r < 0 || !strcmp(catalog_identity(s->cat), was))
			return r;
		pthread_mutex_lock(&s->mu);
		snprintf(s->catalog_id, sizeof(s->catalog_id), "%s", catalog_identity(s->cat));
		pthread_mutex_unlock(&s->mu);
		return 1;
	}
	catalog *old = s->cat;
	s->cat = NULL;
	int r = tmpdir_remake(&s->temp_catalog);
	if (r < 0)
		sb_printf(err, "cannot make %s again: %s", s->temp_catalog.path, strerror(-r));
	r = r ?: open_catalog(s, err);
	if (r < 0) { /* the one open stays */
		s->cat = old;
		return r;
	}
	catalog_close(old);
	/* another file under the identity we knew: a copy put in place, whose ids may name other
	 * rows than ours did; a new identity tells it apart from now on */
	if (!strcmp(catalog_identity(s->cat), was) && catalog_renew_identity(s->cat) == 0) {
		pthread_mutex_lock(&s->mu);
		snprintf(s->catalog_id, sizeof(s->catalog_id), "%s", catalog_identity(s->cat));
		pthread_mutex_unlock(&s->mu);
	}
	/* moved, whatever the reconcile gives (err says): the caller starts afresh either way */
	store_reconcile(s, RECONCILE_PACKS, NULL, err);
	return 1;
}

/* A key file given for a plain store whose keys/ holds slots: its config was made to say
 * "plain" (a store is never decrypted in place), and we would write plaintext into it. */
static int count_object(void *ctx, const char *key, const struct cb_object_info *info)
{
	(void)key, (void)info;
	++*(unsigned *)ctx;
	return 0;
}

static int refuse_downgrade(struct store *s, struct strbuf *err)
{
	unsigned n = 0;
	int r = cb_backend_list_info(s->b, "keys/", count_object, &n);
	if (r < 0 && r != -ENOENT) {
		sb_printf(err, "cannot list keys/: %s", cb_backend_why(r));
		return r;
	}
	if (n == 0)
		return 0;
	sb_puts(err, "its config says it is not encrypted but keys/ holds key slots: refusing it "
		"(has config been replaced?)");
	return -EBADMSG; /* the store's damage, not a key given wrong */
}

/* An encrypted store: its key from key_file through a slot, and the backend that seals and
 * opens its objects over the one that reaches them. */
static int unlock(struct store *s, const struct store_options *o, struct strbuf *err)
{
	const char *key_file = o ? o->key_file : NULL, *pass_file = o ? o->passphrase_file : NULL;
	const struct crypt_secret *typed = o && !key_file && !pass_file ? o->passphrase : NULL;
	if (!store_encrypted(s)) {
		int flags = o ? o->flags : 0;
		bool writing = !(flags & STORE_READONLY);
		if ((key_file || pass_file) && !(flags & STORE_KEY_IF_ENCRYPTED)) {
			sb_printf(err, "a key is given but its config says it is not encrypted: refusing "
				  "to %s (has the store been replaced? a plain store takes no --key-file "
				  "or --passphrase-file)", writing ? "write to it in plaintext"
								   : "read it as plaintext");
			return -EKEYREJECTED;
		}
		return refuse_downgrade(s, err); /* reading too: what is there may be planted */
	}
	if (!key_file && !pass_file && !typed) {
		sb_puts(err, "the store is encrypted: give --key-file or key_file in the config");
		return -ENOKEY;
	}
	struct crypt_secret *secret = NULL;
	struct crypt_key *key = NULL;
	struct cb_backend *cb;
	int kind = key_file ? CRYPT_SLOT_FILE : CRYPT_SLOT_PASSPHRASE;
	int r = typed ? 0 : read_secret(key_file, pass_file, &secret, err);
	r = r ?: store_keys_unlock(s->b, s->config.id, s->config.crypt_chunk, typed ? typed : secret, kind,
				   &key, s->key_slot, err);
	crypt_secret_free(secret);
	if (r == 0 && (r = cb_backend_crypt(s->b, key, s->config.crypt_chunk, &cb)) < 0)
		sb_printf(err, "%s", strerror(-r));
	if (r < 0) {
		crypt_key_free(key);
		return r;
	}
	s->b = cb;
	s->key = key;
	return 0;
}

/* The reconcile of store_open: the catalog brought up to date with the store. */
static int reconcile_at_open(struct store *s, struct strbuf *err)
{
	struct reconcile_stats st = {0};
	int r = store_reconcile(s, RECONCILE_PACKS, &st, err);
	s->skipped_manifests = st.bad_manifests;
	free(s->skipped_why);
	s->skipped_why = NULL;
	if (st.bad_manifests && st.why.buf && !(s->skipped_why = strdup(st.why.buf)))
		r = -ENOMEM;
	reconcile_stats_free(&st);
	return r;
}

/* Points s at a new catalog in a private temporary directory ($TMPDIR, else /tmp), for this
 * run only and locked by it; why the usual one could not be used goes to
 * store_temporary_catalog. */
static int use_temporary_catalog(struct store *s, const char *why, struct strbuf *err)
{
	struct tmpdir t;
	struct strbuf path = {0};
	int r = tmpdir_make("catalog", &t);
	if (r < 0) {
		sb_printf(err, "; nor can a temporary one be made in %s: %s", tmpdir_root(), strerror(-r));
		return r;
	}
	r = sb_printf(&path, "%s/catalog.db", t.path);
	if (r == 0 && !(s->temp_catalog_why = strdup(why)))
		r = -ENOMEM;
	if (r < 0) {
		tmpdir_remove(&t);
		sb_free(&path);
		return r;
	}
	free(s->catalog_path);
	s->catalog_path = path.buf;
	s->temp_catalog = t;
	return 0;
}

/* Whether error r of opening the catalog file (not of reading the store) is its place's: a
 * full disk, a quota, a read-only or unwritable place, or something else where a directory
 * or the file should be (a cache place replaced by a file, catalog.db by a directory). */
static bool catalog_place_unusable(int r)
{
	return r == -ENOSPC || r == -EDQUOT || r == -EROFS || r == -EACCES || r == -EPERM ||
	       r == -ENOTDIR || r == -EISDIR;
}

/* The catalog opened, and reconciled unless flags say not. The catalog is only a cache: one
 * that cannot be opened where it belongs (catalog_place_unusable), or brought up to date for
 * want of space, gives way to a temporary one, rebuilt from the store, so that a store whose
 * disk filled up, or whose cache was damaged, can still be read, and forgotten and pruned
 * into space. A cache directory that fails its ownership check still stops the command
 * (pick_catalog_path): that one may be planted. */
/* The catalog s opened read as damaged inside (SQLITE_CORRUPT, or a row that does not hold
 * together): it is only a cache, so it is set aside as catalog.db.damaged, unless another
 * process did so first (the path names another file now), and s opens a new one (made empty,
 * or the one that process made). 0 or -errno, said in err (emptied first). */
static int set_aside_damaged(struct store *s, struct strbuf *err)
{
	catalog_close(s->cat);
	s->cat = NULL;
	err->len = 0;
	if (err->buf)
		err->buf[0] = '\0';
	pthread_mutex_lock(&s->mu);
	struct stat was = {.st_dev = s->catalog_dev, .st_ino = s->catalog_ino};
	pthread_mutex_unlock(&s->mu);
	int r = set_catalog_aside(s->catalog_path, "damaged", &was);
	if (r < 0) {
		sb_printf(err, "catalog %s is damaged, and cannot be set aside: %s", s->catalog_path,
			  strerror(-r));
		return r;
	}
	return open_catalog(s, err);
}

static int open_and_reconcile(struct store *s, const struct store_options *o, int flags,
			      struct strbuf *err)
{
	int unusable;
	int r = pick_catalog_path(s, o, &unusable, err);
	if (r < 0)
		return r;
	bool opened = !unusable && (r = open_catalog(s, err)) == 0;
	if (unusable)
		r = unusable;
	if (r == 0 && !(flags & STORE_NO_RECONCILE))
		r = reconcile_at_open(s, err);
	if (opened && r == -EUCLEAN && (r = set_aside_damaged(s, err)) == 0 && !(flags & STORE_NO_RECONCILE))
		r = reconcile_at_open(s, err);
	bool give_way = opened ? r == -ENOSPC || r == -EDQUOT : catalog_place_unusable(r);
	if (!give_way || s->temp_catalog.path)
		return r;
	struct strbuf why = {0};
	sb_printf(&why, "%s: %s", s->catalog_path, strerror(-r));
	catalog_close(s->cat);
	s->cat = NULL;
	err->len = 0;
	if (err->buf)
		err->buf[0] = '\0';
	r = use_temporary_catalog(s, why.buf ? why.buf : strerror(-r), err) ?: open_catalog(s, err);
	if (r == 0 && !(flags & STORE_NO_RECONCILE))
		r = reconcile_at_open(s, err);
	sb_free(&why);
	return r;
}

int store_open(const char *location, const struct store_options *o, struct store **out,
	       struct strbuf *err)
{
	*out = NULL;
	struct store *s = calloc(1, sizeof(*s));
	if (!s || !(s->location = strdup(location))) {
		free(s);
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	s->opts = o ? *o : (struct store_options){0};
	s->opts.cache_dir = NULL; /* the caller's string: used here only */
	s->opts.s3 = NULL;        /* copied by the backend's client: used here only */
	s->ra_workers = !cb_location_is_remote(location) ? 0 : o && o->s3 && o->s3->parallel
						       ? o->s3->parallel : 4;
	pthread_mutex_init(&s->mu, NULL);
	int flags = s->opts.flags;
	int r = cb_backend_open(location, flags & STORE_READONLY ? CB_BACKEND_READONLY : 0, s3_of(o),
				&s->b);
	if (r < 0)
		sb_printf(err, "%s", cb_backend_why(r));
	r = r ?: read_config(s, err) ?: unlock(s, o, err);
	if (r == 0 && !(flags & STORE_NO_CATALOG))
		r = open_and_reconcile(s, o, flags, err);
	if (r < 0) {
		store_close(s);
		return r;
	}
	s->keeps_reserve = !(flags & STORE_READONLY) && !cb_location_is_remote(location);
	*out = s;
	return 0;
}

unsigned store_packs_unread(struct store *s, char why[512])
{
	pthread_mutex_lock(&s->mu);
	unsigned n = s->packs_unread;
	memcpy(why, s->packs_unread_why, 512);
	pthread_mutex_unlock(&s->mu);
	return n;
}

const char *store_skipped_manifests(const struct store *s, unsigned *n)
{
	*n = s->skipped_manifests;
	return s->skipped_why ? s->skipped_why : "";
}

const char *store_temporary_catalog(const struct store *s)
{
	return s->temp_catalog.path ? s->temp_catalog_why : NULL;
}

/* Makes or completes RESERVE_KEY in a local store when its file system has room for it 64
 * times over (lock.h): one stat when it is there. */
static void keep_reserve(const struct store *s)
{
	struct strbuf path = {0};
	struct stat st;
	struct statvfs v;
	if (sb_printf(&path, "%s/" RESERVE_KEY, s->location) < 0 ||
	    (stat(path.buf, &st) == 0 && (uint64_t)st.st_size >= RESERVE_BYTES) ||
	    statvfs(s->location, &v) < 0 || (uint64_t)v.f_bavail * v.f_frsize < 64 * RESERVE_BYTES) {
		sb_free(&path);
		return;
	}
	int fd = open(path.buf, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	/* only a file of its own: never one planted as a link to another (it would grow) */
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
	    posix_fallocate(fd, 0, (off_t)RESERVE_BYTES) != 0)
		unlink(path.buf); /* taken back at once: not worth a message */
	if (fd >= 0)
		close(fd);
	sb_free(&path);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	filecheck_free(s->fc);
	pack_cache_free(s->packs);
	catalog_close(s->cat);
	if (s->keeps_reserve)
		keep_reserve(s);
	tmpdir_remove(&s->temp_catalog);
	cb_backend_close(s->b);
	pthread_mutex_destroy(&s->mu);
	free(s->temp_catalog_why);
	free(s->catalog_path);
	free(s->skipped_why);
	free(s->location);
	free(s);
}

int store_pack_cache(struct store *s, pack_cache **out)
{
	int r = 0;
	pthread_mutex_lock(&s->mu);
	if (!s->packs) {
		size_t bytes = s->opts.read_cache_bytes ? s->opts.read_cache_bytes : STORE_DEFAULT_READ_CACHE;
		r = pack_cache_new(&s->packs, s->b, bytes, s->ra_workers);
	}
	*out = s->packs;
	pthread_mutex_unlock(&s->mu);
	return r;
}

int store_filecheck(struct store *s, struct filecheck **out)
{
	pthread_mutex_lock(&s->mu);
	int r = s->fc ? 0 : filecheck_new(&s->fc);
	*out = s->fc;
	pthread_mutex_unlock(&s->mu);
	return r;
}

int store_catalog_connect(struct store *s, bool small, catalog **out)
{
	int r = catalog_open(out, s->catalog_path, CATALOG_READONLY | (small ? CATALOG_SMALL_CACHE : 0));
	pthread_mutex_lock(&s->mu);
	bool same = r == 0 && !strcmp(catalog_identity(*out), s->catalog_id);
	pthread_mutex_unlock(&s->mu);
	if (r == 0 && !same) {
		catalog_close(*out);
		*out = NULL;
		r = -ESTALE;
	}
	return r;
}

/* --- registration ------------------------------------------------------------------------ */

int store_register_pack(catalog *c, const struct cb_pack_info *p, const struct pack_index *pi,
			int64_t *pack_id)
{
	int r = catalog_add_pack(c, p, pack_id);
	for (size_t i = 0; r == 0 && i < pi->nblobs; i++) {
		int64_t blob;
		r = catalog_add_blob(c, pi->blobs[i].sha256, pi->blobs[i].size, *pack_id,
				     pi->blobs[i].offset, &blob);
	}
	return r;
}

static void attr_of(const struct cb_attr *a, struct cb_dir_attr *d)
{
	*d = (struct cb_dir_attr){a->mode, a->uid, a->gid, a->mtime_ns};
}

/* The row of the directory of table t's i-th file, made (0700, as the file's owner) when the
 * manifest does not list it: the first of t's files in it makes it, the others find it.
 * rows[d] is the row of t->dirs[d]; unlisted[j] that of the directory the j-th file made (0:
 * none). 0 when found, 1 when made, or -errno. */
static int dir_row_of(catalog *c, int64_t table_row, const struct manifest_table *t,
		      const int64_t *rows, const int64_t *unlisted, size_t i, int64_t *out)
{
	const struct manifest_file *f = &t->files[i];
	for (size_t d = 0; d < t->ndirs; d++)
		if (!strcmp(t->dirs[d].name, f->dir))
			return *out = rows[d], 0;
	for (size_t j = 0; j < i; j++)
		if (unlisted[j] && !strcmp(t->files[j].dir, f->dir))
			return *out = unlisted[j], 0;
	struct cb_attr da = {0700, f->attr.uid, f->attr.gid, f->attr.mtime_ns};
	struct cb_dir_attr a;
	attr_of(&da, &a);
	int r = catalog_add_dir(c, table_row, f->dir, &a, out);
	return r < 0 ? r : 1;
}

static int register_table(catalog *c, int64_t backup_id, int64_t ks_row,
			  const struct manifest_table *t)
{
	struct cb_dir_attr a;
	attr_of(&t->attr, &a);
	int64_t row, *dir_rows = calloc(t->ndirs + 1, sizeof(*dir_rows));
	int64_t *unlisted = calloc(t->nfiles + 1, sizeof(*unlisted));
	int r = dir_rows && unlisted ? 0 : -ENOMEM;
	r = r ?: catalog_add_table(c, backup_id, ks_row, t->name, t->id, t->schema_cql, &a, &row);
	for (size_t i = 0; r == 0 && i < t->ndirs; i++) {
		attr_of(&t->dirs[i].attr, &a);
		r = catalog_add_dir(c, row, t->dirs[i].name, &a, &dir_rows[i]);
	}
	for (size_t i = 0; r == 0 && i < t->nfiles; i++) {
		const struct manifest_file *f = &t->files[i];
		int64_t dir_id = 0, blob, id;
		if (*f->dir && (r = dir_row_of(c, row, t, dir_rows, unlisted, i, &dir_id)) == 1) {
			unlisted[i] = dir_id;
			r = 0;
		}
		r = r ?: catalog_add_blob(c, f->sha256, f->size, 0, 0, &blob);
		struct cb_file_info fi = {.backup_id = backup_id, .table_row = row, .dir_id = dir_id,
					  .name = f->name, .size = f->size, .mode = f->attr.mode,
					  .uid = f->attr.uid, .gid = f->attr.gid,
					  .mtime_ns = f->attr.mtime_ns, .blob_id = blob};
		r = r ?: catalog_add_file(c, &fi, &id);
	}
	free(dir_rows);
	free(unlisted);
	return r;
}

/* One of the backup's own files: catalog.h says where they go. */
static int register_node_file(catalog *c, int64_t backup_id, const struct manifest_file *f)
{
	int64_t blob, id;
	int r = catalog_add_blob(c, f->sha256, f->size, 0, 0, &blob);
	struct cb_file_info fi = {.backup_id = backup_id, .table_row = -backup_id,
				  .dir_id = *f->dir ? -1 : 0 /* catalog.h */, .name = f->name, .size = f->size,
				  .mode = f->attr.mode, .uid = f->attr.uid, .gid = f->attr.gid,
				  .mtime_ns = f->attr.mtime_ns, .blob_id = blob};
	return r ?: catalog_add_file(c, &fi, &id);
}

static int join_tokens(const struct manifest *m, struct strbuf *out)
{
	int r = sb_puts(out, "");
	for (size_t i = 0; r == 0 && i < m->ntokens; i++)
		r = sb_printf(out, "%s%s", i ? " " : "", m->tokens[i]);
	return r;
}

/* m's ring as JSON, its host ids canonical (host_id_canonical) where they are host ids. */
static int ring_canonical(const struct manifest *m, struct strbuf *out)
{
	struct manifest_ring_node *v = calloc(m->nring + 1, sizeof(*v));
	char (*ids)[37] = calloc(m->nring + 1, sizeof(*ids));
	int r = v && ids ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < m->nring; i++) {
		v[i] = m->ring[i];
		if (host_id_canonical(m->ring[i].host_id, ids[i]) == 0)
			v[i].host_id = ids[i];
	}
	r = r ?: manifest_ring_write(v, m->nring, out);
	free(v);
	free(ids);
	return r;
}

/* The catalog keeps host ids canonical, so that a node whose id an older cassbackup kept in
 * capitals (as the user gave it) is one node with its backups made since: the cluster view
 * and the commit log match host ids as strings. The node key stays as the store's key
 * spells it, so the row's ref names the manifest's object. */
int store_register_manifest(catalog *c, const struct manifest *m, bool nested,
			    uint64_t manifest_size, const char *manifest_version)
{
	struct strbuf tokens = {0}, ring = {0}, scope = {0};
	char host_id[37];
	int r = join_tokens(m, &tokens) ?: ring_canonical(m, &ring) ?:
		manifest_scope_write(&m->scope, &scope);
	if (!m->host_id || host_id_canonical(m->host_id, host_id) < 0)
		host_id[0] = '\0';
	struct cb_backup_info b = {
		.node_key = manifest_node_key(m), .nested = nested, .rack = m->rack,
		.schema_version = m->schema_version, .ring = ring.buf ? ring.buf : "[]",
		.name = m->name, .cluster = m->cluster, .datacenter = m->datacenter, .node = m->node,
		.host_id = *host_id ? host_id : m->host_id, .snapshot_tag = m->snapshot_tag,
		.created_ns = m->created_ns, .files = m->files, .bytes = m->bytes, .new_bytes = m->new_bytes,
		.stored_bytes = m->stored_bytes, .cassandra_version = m->cassandra_version,
		.tokens = tokens.buf, .root_mode = m->root_attr.mode, .root_uid = m->root_attr.uid,
		.root_gid = m->root_attr.gid, .manifest_size = manifest_size,
		.manifest_version = manifest_version, .snapshot_ns = m->snapshot_ns,
		.base = m->base, .previous = m->previous, .scope = scope.buf, .clears_links = m->clears_links,
	};
	int64_t backup_id;
	r = r ?: catalog_add_backup(c, &b, &backup_id);
	if (r == -EEXIST) /* the node's other backup of the name (take_in) */
		goto out;
	for (size_t k = 0; r == 0 && k < m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &m->keyspaces[k];
		struct cb_dir_attr a;
		attr_of(&ks->attr, &a);
		int64_t ks_row;
		r = catalog_add_keyspace(c, backup_id, ks->name, &a, &ks_row);
		for (size_t t = 0; r == 0 && t < ks->ntables; t++)
			r = register_table(c, backup_id, ks_row, &ks->tables[t]);
	}
	for (size_t i = 0; r == 0 && i < m->nnode_files; i++)
		r = register_node_file(c, backup_id, &m->node_files[i]);
	/* a parsed manifest names each node once (manifest.c checks), so a row taken below the
	 * backup's is not "another backup" (take_in skips those): what was registered of it goes,
	 * and the manifest is one that cannot be taken in */
	if (r == -EEXIST)
		r = catalog_remove_backup(c, backup_id) ?: -EBADMSG;
out:
	sb_free(&tokens);
	sb_free(&ring);
	sb_free(&scope);
	return r;
}

int store_read_manifest(struct store *s, const char *ref, struct manifest **out,
			uint64_t *size, struct strbuf *err)
{
	*out = NULL;
	struct strbuf key = {0};
	char *doc = NULL;
	size_t len = 0;
	char why[512] = "", name[256] = "", node[65] = "";
	int r = store_ref_split(ref, name, node) ?: store_manifest_key(ref, &key) ?:
		cb_backend_get(s->b, key.buf, MANIFEST_MAX, &doc, &len);
	if (r < 0 && r != -ENOENT) {
		const char *what = key.buf ? key.buf : ref, *said = cb_backend_last_error();
		size_t n = strlen(what); /* the backend's words may name the key already */
		if (!strncmp(said, what, n) && !strncmp(said + n, ": ", 2))
			said += n + 2;
		sb_printf(err, "cannot read %s: %s", what, *said ? said : strerror(-r));
	}
	if (r == 0 && (r = manifest_parse(doc, len, out, why, sizeof(why))) < 0)
		sb_printf(err, "%s: %s", key.buf, why);
	if (r == 0 && strcmp((*out)->name, name) != 0) {
		sb_printf(err, "%s: names backup \"%s\"", key.buf, (*out)->name);
		manifest_free(*out);
		*out = NULL;
		r = -EBADMSG;
	}
	if (r == 0 && *node && !manifest_node_key_same(manifest_node_key(*out), node)) {
		sb_printf(err, "%s: describes node %s", key.buf, manifest_node_key(*out));
		manifest_free(*out);
		*out = NULL;
		r = -EBADMSG;
	}
	if (size)
		*size = len;
	free(doc);
	sb_free(&key);
	return r;
}

/* --- reconcile --------------------------------------------------------------------------- */

struct named {
	char *name;
	uint64_t size;
	int64_t id;
	bool seen;
	char version[CB_VERSION_MAX]; /* a manifest's (cb_object_info) */
};

struct namelist {
	struct named *v;
	size_t n, cap;
};

static int namelist_add(struct namelist *l, const char *name, uint64_t size, int64_t id,
			const char *version)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct named *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	char *d = strdup(name);
	if (!d)
		return -ENOMEM;
	struct named *e = &l->v[l->n++];
	*e = (struct named){d, size, id, false, ""};
	snprintf(e->version, sizeof(e->version), "%s", version ? version : "");
	return 0;
}

static void namelist_free(struct namelist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

static struct named *namelist_find(struct namelist *l, const char *name)
{
	struct named key = {.name = (char *)name};
	return l->n ? bsearch(&key, l->v, l->n, sizeof(key), cmp_named) : NULL;
}

/* backups/REF.json -> REF; other keys under backups/ are not backups (check names them). */
static int on_manifest_key(void *ctx, const char *key, const struct cb_object_info *info)
{
	char ref[CB_REF_MAX];
	return store_manifest_name(key, ref) == 0 ? namelist_add(ctx, ref, info->size, 0, info->version) : 0;
}

static int on_catalog_backup(void *ctx, int64_t id, const char *name, uint64_t size, const char *version)
{
	return namelist_add(ctx, name, size, id, version);
}

static int on_pack_key(void *ctx, const char *key, uint64_t size)
{
	size_t n = strlen(key);
	if (n < 8 || strcmp(key + n - 8, ".tar.zst") != 0)
		return 0;
	return namelist_add(ctx, key, size, 0, NULL);
}

static int on_catalog_pack(void *ctx, int64_t id, const char *path, uint64_t size)
{
	return namelist_add(ctx, path, size, id, NULL);
}

static void note(struct reconcile_stats *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct reconcile_stats *st, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sb_printf(&st->why, "%s%s", st->why.len ? "; " : "", line);
}

/* Reads a pack's trailer, verified seek table and index, and registers them; why says why
 * not ("KEY: reason"). */
static int index_pack(struct store *s, const char *key, uint64_t size, char why[512])
{
	struct cb_io *io = NULL;
	struct pack_meta pm = {0};
	char err[512] = "";
	int r = cb_backend_open_read(s->b, key, &io);
	if (r < 0)
		snprintf(err, sizeof(err), "%s", cb_backend_why(r));
	if (r == 0)
		r = pack_meta_read(io, &pm, err, sizeof(err));
	if (r == 0) {
		struct cb_pack_info p = {.path = key, .size = size, .frames = pm.table->frames,
					 .created_ns = now_ns(), .index_offset = pm.trailer.index_offset,
					 .index_size = pm.trailer.index_size};
		memcpy(p.table_sha256, pm.trailer.table_sha256, 32);
		int64_t id;
		r = store_register_pack(s->cat, &p, &pm.index, &id);
	} else {
		/* a failed read: the request's own words (this thread's last) say more */
		const char *said = r == -EREMOTEIO ? cb_backend_last_error() : "";
		snprintf(why, 512, "%s: %s%s%s", key, *err ? err : strerror(-r), *said ? ": " : "", said);
	}
	pack_meta_free(&pm);
	cb_io_close(io);
	return r;
}

/* Drops catalog packs the store no longer has; indexes store packs the catalog lacks. */
static int reconcile_packs(struct store *s, int flags, struct reconcile_stats *st,
			   struct strbuf *err)
{
	struct namelist have = {0}, known = {0};
	int r = cb_backend_list(s->b, "packs/", on_pack_key, &have);
	if (r < 0)
		sb_printf(err, "cannot list packs/: %s", cb_backend_why(r));
	r = r ?: catalog_list_packs(s->cat, on_catalog_pack, &known);
	if (r == 0 && have.n) /* qsort's array may not be NULL, even empty */
		qsort(have.v, have.n, sizeof(*have.v), cmp_named);
	for (size_t i = 0; r == 0 && i < known.n; i++) {
		struct named *h = namelist_find(&have, known.v[i].name);
		/* a pack of another size than the one indexed (truncated, replaced) is not it: its
		 * blobs are not "there" for a create or copy to build on; indexed again below */
		if (h && h->size == known.v[i].size)
			h->seen = true;
		else if ((r = catalog_remove_pack(s->cat, known.v[i].id)) == 0)
			st->packs_removed++;
	}
	unsigned unread = 0;
	char why[512], first[512] = "";
	for (size_t i = 0; r == 0 && i < have.n; i++) {
		if (have.v[i].seen)
			continue;
		int k = index_pack(s, have.v[i].name, have.v[i].size, why);
		if (k < 0 && k != -ENOMEM && k != -EUCLEAN && (flags & RECONCILE_REBUILD)) {
			k = index_pack(s, have.v[i].name, have.v[i].size, why); /* once more */
			if (k < 0 && k != -ENOMEM && k != -EUCLEAN && k != -EBADMSG) {
				sb_printf(err, "%s; the catalog was left as it was", why);
				r = k;
				break;
			}
		}
		if (k == 0)
			st->packs_added++;
		else if (k == -ENOMEM || k == -EUCLEAN)
			r = k;
		if (k == 0 || k == -ENOMEM || k == -EUCLEAN)
			continue;
		note(st, "%s", why); /* not indexed: its blobs stay unknown, check names it */
		st->bad_packs++;
		if (!unread++)
			memcpy(first, why, sizeof(first));
	}
	if (r == 0) {
		pthread_mutex_lock(&s->mu);
		s->packs_unread = unread;
		memcpy(s->packs_unread_why, first, sizeof(first));
		pthread_mutex_unlock(&s->mu);
	}
	namelist_free(&have);
	namelist_free(&known);
	return r;
}

/* Reads backup name's manifest (it was listed) and registers it, replacing the catalog's rows
 * of it (old_id > 0). One that cannot be read is named in st, or, strict, fails the reconcile
 * with err saying why; the catalog keeps the backup's rows unless the manifest was read and
 * does not parse. */
static int take_in(struct store *s, const char *name, const char *version, uint64_t listed,
		   int64_t old_id, int flags, struct reconcile_stats *st, struct strbuf *err)
{
	struct manifest *m;
	uint64_t size;
	struct strbuf why = {0};
	int r = store_read_manifest(s, name, &m, &size, &why);
	if (r < 0 && r != -ENOMEM && (flags & RECONCILE_REBUILD)) { /* once more (store.h) */
		why.len = 0;
		r = store_read_manifest(s, name, &m, &size, &why);
		if (r < 0 && r != -ENOMEM && !(r == -EBADMSG && size == listed)) {
			if (r == -ENOENT)
				sb_printf(&why, "backups/%s.json: listed, then not found", name);
			sb_printf(err, "%s; the catalog was left as it was", why.buf);
			if (r == -EBADMSG) /* fewer bytes than listed: a request cut short */
				sb_printf(err, " (%llu bytes read of %llu listed)", (unsigned long long)size,
					  (unsigned long long)listed);
			sb_free(&why);
			return r;
		}
	}
	if (r == 0) {
		r = (old_id > 0 ? catalog_remove_backup(s->cat, old_id) : 0) ?:
		    store_register_manifest(s->cat, m, strchr(name, '/') != NULL, size, version);
		if (r == 0)
			st->backups_added++;
		if (r == -EBADMSG && (flags & RECONCILE_STRICT)) { /* as one that does not parse */
			sb_printf(err, "backups/%s.json: names one directory or file of a table twice, "
				  "and cannot be taken in", name);
			st->unreadable = true;
		} else if (r == -EBADMSG) {
			note(st, "backups/%s.json: names one directory or file of a table twice, and "
			     "cannot be taken in", name);
			st->bad_manifests++;
			r = 0;
		}
		if (r == -EEXIST) { /* backups/NAME.json and backups/NAME/NODE.json of one node */
			note(st, "backups/%s.json: node %s has another backup %s in the store, ignored",
			     name, manifest_node_key(m), m->name);
			st->bad_manifests++;
			r = 0;
		}
		manifest_free(m);
	} else if (r == -ENOENT && !(flags & RECONCILE_STRICT)) {
		r = 0; /* forgotten between the listing and the read: the next refresh drops it */
	} else if (r != -ENOMEM) {
		if (r == -ENOENT) /* listed, then not there: under an exclusive lock, not a forget */
			sb_printf(&why, "backups/%s.json: listed, then not found", name);
		if (flags & RECONCILE_STRICT) {
			sb_printf(err, "%s", why.buf ? why.buf : name);
			st->unreadable = true;
		} else {
			note(st, "%s", why.buf ? why.buf : name);
			st->bad_manifests++;
			/* one that reads but does not parse is damaged: its backup is gone; one that
			 * could not be read may be there as it was (a failed request) */
			r = r == -EBADMSG && old_id > 0 ? catalog_remove_backup(s->cat, old_id) : 0;
		}
	}
	sb_free(&why);
	return r;
}

/* Drops backups whose manifest went; takes in those whose manifest is new or changed. */
static int reconcile_backups(struct store *s, int flags, struct reconcile_stats *st,
			     struct strbuf *err)
{
	struct namelist have = {0}, known = {0};
	int r = cb_backend_list_info(s->b, "backups/", on_manifest_key, &have);
	if (r < 0)
		sb_printf(err, "cannot list backups/: %s", cb_backend_why(r));
	r = r ?: catalog_backup_names(s->cat, on_catalog_backup, &known);
	if (r == 0 && have.n) /* qsort's array may not be NULL, even empty */
		qsort(have.v, have.n, sizeof(*have.v), cmp_named);
	for (size_t i = 0; r == 0 && i < known.n; i++) {
		struct named *h = namelist_find(&have, known.v[i].name);
		if (h) {
			h->seen = true;
			/* replaced (forgotten and made again under its name): read it again; the size
			 * alone may well be the same */
			if (h->size != known.v[i].size || strcmp(h->version, known.v[i].version))
				r = take_in(s, h->name, h->version, h->size, known.v[i].id, flags, st, err);
		} else if ((r = catalog_remove_backup(s->cat, known.v[i].id)) == 0) {
			st->backups_removed++;
		}
	}
	for (size_t i = 0; r == 0 && i < have.n; i++)
		if (!have.v[i].seen)
			r = take_in(s, have.v[i].name, have.v[i].version, have.v[i].size, 0, flags, st, err);
	namelist_free(&have);
	namelist_free(&known);
	return r;
}

/* backups/ is listed before packs/: a writer puts every pack of a backup before its manifest
 * (the commit point), so each manifest this listing finds has its packs in the later listing of
 * packs/. Packs first, a backup committed between the two listings would be taken in with
 * contents no known pack holds: listed as incomplete, and no incremental would follow it. */
static int reconcile_in_transaction(struct store *s, int flags, struct reconcile_stats *st,
				    struct strbuf *err)
{
	int r = reconcile_backups(s, flags, st, err);
	if (r == 0 && !(flags & RECONCILE_PACKS) && (flags & RECONCILE_PACKS_IF_NEEDED))
		r = catalog_has_unlocated_blobs(s->cat);
	if (r > 0 || (r == 0 && (flags & RECONCILE_PACKS)))
		r = reconcile_packs(s, flags, st, err);
	return r < 0 ? r : 0;
}

/* Ends a reconcile: commits, or rolls back and says why (unless a step already did). */
static int end_reconcile(struct store *s, int r, struct strbuf *err)
{
	if (r == 0)
		r = catalog_commit(s->cat);
	if (r == 0)
		return 0;
	if (!err->len) /* SQLite's words, before the rollback replaces them */
		sb_printf(err, "cannot bring the catalog up to date: %s",
			  r == -EUCLEAN || r == -EIO || r == -EBUSY ? catalog_errmsg(s->cat) : strerror(-r));
	catalog_rollback(s->cat);
	return r;
}

int store_reconcile(struct store *s, int flags, struct reconcile_stats *st, struct strbuf *err)
{
	struct reconcile_stats local = {0};
	int r = catalog_begin(s->cat);
	r = r ?: reconcile_in_transaction(s, flags, st ? st : &local, err);
	reconcile_stats_free(&local);
	return end_reconcile(s, r, err);
}

/* 1 when the catalog reads the content of loc from another pack now (*moved), 0 when not. */
static int located_elsewhere(struct store *s, const struct cb_blob_loc *loc, struct cb_blob_loc *moved)
{
	int r = catalog_blob_location(s->cat, loc->sha256, loc->size, moved);
	return r < 0 ? r : r == 1 && moved->pack_path[0] && strcmp(moved->pack_path, loc->pack_path);
}

int store_relocate(struct store *s, const struct cb_blob_loc *loc, struct cb_blob_loc *moved)
{
	/* the catalog may know already (an earlier relocation read the packs): one listing of
	 * packs/ for a repacked pack, not one for each of its contents */
	int r = located_elsewhere(s, loc, moved);
	if (r == 0 && strcmp(s->gone_pack, loc->pack_path) != 0) {
		/* once per pack gone: the other contents of a pack truly lost are not found again */
		struct strbuf err = {0};
		r = store_reconcile(s, RECONCILE_PACKS, NULL, &err);
		sb_free(&err);
		if (r == 0) /* read again: not to be read again for this pack (a failure may pass) */
			snprintf(s->gone_pack, sizeof(s->gone_pack), "%s", loc->pack_path);
		r = r ?: located_elsewhere(s, loc, moved);
	}
	return r < 0 ? r : r == 1 ? 0 : -ENOENT;
}

int store_rebuild_catalog(struct store *s, bool renumber, struct reconcile_stats *st,
			  struct strbuf *err)
{
	struct reconcile_stats local = {0};
	int r = catalog_begin(s->cat);
	r = r ?: catalog_clear(s->cat, !renumber) ?:
	    reconcile_in_transaction(s, RECONCILE_PACKS | RECONCILE_REBUILD, st ? st : &local, err);
	reconcile_stats_free(&local);
	return end_reconcile(s, r, err);
}

void reconcile_stats_free(struct reconcile_stats *st)
{
	if (st)
		sb_free(&st->why);
}
