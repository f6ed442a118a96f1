/* mount.cassbackup: presents every backup in a store as a read-only tree
 *
 *   MOUNTPOINT/backups/<name>/<keyspace>/<table>/<files as in the snapshot>
 *
 * Arguments follow the mount(8) helper convention (STORE DIR [-o options]) so that, installed in
 * /sbin, `mount -t cassbackup STORE DIR` and fstab entries of type cassbackup work.
 */
#include "cbfs.h"
#include "config.h"
#include "conf.h"
#include "diskcache.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DISK_CACHE_DEFAULT (1ull << 30)
#define CACHE_UNSET UINT_MAX

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mount.cassbackup: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mount.cassbackup STORE MOUNTPOINT [-f] [-s] [-d] [-o OPTION[,OPTION...]]\n"
		"\n"
		"  -f                 stay in the foreground\n"
		"  -s                 single-threaded\n"
		"  -d                 FUSE debug output (implies -f)\n"
		"  -o cache_size=MiB  decoded-frame cache (default 16; 64 for object storage)\n"
		"  -o threads=N       worker threads (default 2 per core)\n"
		"  -o readahead_kb=N  kernel readahead for the mount (default 4096; 0 keeps the kernel's)\n"
		"  -o cache_dir=DIR   keep frames fetched from the store in DIR too, across mounts (for\n"
		"                     object storage; default: none)\n"
		"  -o disk_cache_size=SIZE  at most this much in cache_dir (K, M, G, T; default 1G)\n"
		"  -o s3_endpoint=URL, s3_region=REGION, s3_key_file=FILE, s3_ca_file=FILE\n"
		"                     how to reach an s3:// store, as in cassbackup.conf(5) (for fstab,\n"
		"                     where there is no environment; a key file given comes first,\n"
		"                     then the AWS credential chain)\n"
		"  -o s3_sse=AES256|aws:kms, s3_sse_kms_key_id=ID, s3_sse_c_key_file=FILE,\n"
		"     s3_storage_class=CLASS  server-side encryption and storage class of what is\n"
		"                     written; the SSE-C key is sent on every read\n"
		"  -o limit_download=RATE  bytes/s from object storage over all requests (K, M, G)\n"
		"  -o s3_parallel=N   parallel transfers from object storage (default 4)\n"
		"  -o key_file=FILE   the key file of an encrypted store (mode 600)\n"
		"  -o passphrase_file=FILE  or its passphrase, from FILE (mode 600)\n"
		"  -o config=FILE     read these settings from FILE (cassbackup.conf(5)) instead of\n"
		"                     /etc/cassbackup.conf, when it exists; -o options override it\n"
		"  -o allow_other     let other users read (the default when mounted by root)\n"
		"  -o nofail          a store that does not exist is not an error (exit 0)\n"
		"  -o nonempty        mount over a directory that holds files (hiding them)\n"
		"  other -o options go to FUSE; mount(8)'s own (defaults, noauto, _netdev, user,\n"
		"  x-*, ...) are accepted and ignored. The mount is always read-only.\n");
}

/* mount(8) and fstab options that mean nothing to a FUSE mount. */
static bool ignored_option(const char *o)
{
	static const char *const names[] = {"defaults", "auto", "noauto", "nofail", "_netdev",
					    "user", "users", "nouser", "owner", "group", "rw",
					    "ro", "loop", "noallow_other"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(o, names[i]) == 0)
			return true;
	return strncmp(o, "x-", 2) == 0 || strncmp(o, "comment=", 8) == 0;
}

static unsigned parse_uint(const char *opt, const char *v, unsigned max)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (!*v || *end || n > max)
		die("-o %s: expected a number from 0 to %u", opt, max);
	return (unsigned)n;
}

static uint64_t parse_size_opt(const char *opt, const char *v)
{
	uint64_t n;
	struct strbuf err = {0};
	if (parse_size(v, &n, &err) < 0 || n == 0)
		die("-o %s=%s: %s", opt, v, err.buf ? err.buf : "must be more than 0");
	return n;
}

/* What the command line asks for. */
struct options {
	const char *store, *mnt;
	bool single, debug, foreground, allow_other, nofail, nonempty;
	unsigned cache_mib, max_threads, readahead_kb;
	char *cache_dir;          /* -o cache_dir: the disk cache; NULL: none */
	bool cache_dir_shared;    /* cache_dir is config_cache_dir's: another mount of the host may
				   * hold it, and then this one goes on without a disk cache */
	char *config_cache_dir;   /* cassbackup.conf's cache_dir (absolute): where the catalog
				   * lives, as for every command; and the disk cache of a plain
				   * store without -o cache_dir. NULL: not set */
	uint64_t disk_cache_size; /* 0: not given */
	char *s3_endpoint, *s3_region, *s3_ca_file, *s3_key_file; /* NULL: not given */
	char *s3_sse, *s3_sse_kms_key_id, *s3_sse_c_key_file, *s3_storage_class;
	char *key_file;           /* an encrypted store's key file; NULL: not given */
	char *passphrase_file;    /* or its passphrase's */
	uint64_t limit_download;  /* bytes/s, 0: none */
	unsigned s3_parallel;     /* 0: the client's default */
	struct strbuf fuse_opts; /* ",opt,opt" passed on to FUSE */
};

/* -o s3_*= and limit_download=: true when s is one of them. */
static bool parse_s3_o(struct options *o, char *s)
{
	static const struct {
		const char *name;
		size_t off;
	} strs[] = {
		{"s3_endpoint=", offsetof(struct options, s3_endpoint)},
		{"s3_region=", offsetof(struct options, s3_region)},
		{"s3_ca_file=", offsetof(struct options, s3_ca_file)},
		{"s3_key_file=", offsetof(struct options, s3_key_file)},
		{"s3_sse=", offsetof(struct options, s3_sse)},
		{"s3_sse_kms_key_id=", offsetof(struct options, s3_sse_kms_key_id)},
		{"s3_sse_c_key_file=", offsetof(struct options, s3_sse_c_key_file)},
		{"s3_storage_class=", offsetof(struct options, s3_storage_class)},
		{"key_file=", offsetof(struct options, key_file)},
		{"passphrase_file=", offsetof(struct options, passphrase_file)},
	};
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
		size_t n = strlen(strs[i].name);
		if (!strncmp(s, strs[i].name, n)) {
			if (!s[n])
				die("-o %.*s: needs a value", (int)n - 1, s);
			char **field = (char **)((char *)o + strs[i].off);
			free(*field);
			if (!(*field = strdup(s + n)))
				die("out of memory");
			return true;
		}
	}
	if (strncmp(s, "limit_download=", 15))
		return false;
	struct strbuf err = {0};
	if (parse_size(s + 15, &o->limit_download, &err) < 0)
		die("-o %s: %s", s, err.buf ? err.buf : "out of memory");
	return true;
}

/* One -o option: ours, mount(8)'s (ignored), or FUSE's (passed on). */
static void parse_one(struct options *o, char *s)
{
	if (parse_s3_o(o, s) || !strncmp(s, "config=", 7)) /* config=: read before (use_config) */
		return;
	if (!strncmp(s, "cache_size=", 11))
			o->cache_mib = parse_uint("cache_size", s + 11, 65536);
		else if (!strncmp(s, "s3_parallel=", 12))
			o->s3_parallel = parse_uint("s3_parallel", s + 12, S3_PARALLEL_MAX);
		else if (!strncmp(s, "threads=", 8))
			o->max_threads = parse_uint("threads", s + 8, 256);
		else if (!strncmp(s, "readahead_kb=", 13))
			o->readahead_kb = parse_uint("readahead_kb", s + 13, 1 << 20);
		else if (!strncmp(s, "cache_dir=", 10) && s[10]) {
			free(o->cache_dir);
			if (!(o->cache_dir = strdup(s + 10)))
				die("out of memory");
		} else if (!strncmp(s, "disk_cache_size=", 16))
			o->disk_cache_size = parse_size_opt("disk_cache_size", s + 16);
		else if (!strcmp(s, "allow_other"))
			o->allow_other = true;
		else if (!strcmp(s, "noallow_other"))
			o->allow_other = false;
		else if (!strcmp(s, "nofail"))
			o->nofail = true;
		else if (!strcmp(s, "nonempty"))
			o->nonempty = true;
	else if (!ignored_option(s) && sb_printf(&o->fuse_opts, ",%s", s) < 0)
		die("out of memory");
}

/* One -o list. */
static void parse_o(struct options *o, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		die("out of memory");
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
		parse_one(o, s);
	free(copy);
}

/* The keys of cassbackup.conf(5) that say how to reach an s3:// store and cache what it reads:
 * the same as the -o options of those names. */
static const char *const config_keys[] = {
	"s3_endpoint", "s3_region", "s3_ca_file", "s3_key_file", "s3_sse", "s3_sse_kms_key_id",
	"s3_sse_c_key_file", "s3_storage_class", "limit_download", "s3_parallel", "cache_dir",
	"key_file", "passphrase_file",
};

/* -o config=FILE in argv, or NULL. */
static const char *config_option(int argc, char **argv)
{
	const char *found = NULL;
	for (int i = 1; i < argc; i++) {
		const char *list = NULL;
		if (!strncmp(argv[i], "-o", 2))
			list = argv[i][2] ? argv[i] + 2 : i + 1 < argc ? argv[i + 1] : "";
		for (const char *p = list; p && (p = strstr(p, "config=")); p += 7)
			if (p == list || p[-1] == ',')
				found = p + 7;
	}
	return found;
}

/* The configuration's cache_dir, made absolute (the daemon works from /). */
static void config_cache_dir(struct options *o, const char *dir)
{
	char cwd[PATH_MAX];
	struct strbuf abs = {0};
	if (*dir != '/' && !getcwd(cwd, sizeof(cwd)))
		die("cache_dir %s: %s", dir, strerror(errno));
	if (sb_printf(&abs, "%s%s%s", *dir == '/' ? "" : cwd, *dir == '/' ? "" : "/", dir) < 0)
		die("out of memory");
	free(o->config_cache_dir);
	o->config_cache_dir = abs.buf;
}

/* The configuration's settings (cassbackup.conf(5): -o config=FILE, else /etc/cassbackup.conf
 * when it exists), as -o options taken before those on the line, which override them, so a
 * mount reaches a store as every cassbackup command does (an fstab entry needs no -o for them). */
static void use_config(struct options *o, const char *named)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%.*s", (int)(named ? strcspn(named, ",") : strlen(CONFIG_DEFAULT_PATH)),
		 named ? named : CONFIG_DEFAULT_PATH);
	struct strbuf err = {0};
	if (config_load(path, named != NULL, &err) < 0)
		die("%s", err.buf ? err.buf : "cannot read the configuration");
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
		const char *v = config_get(config_keys[i]);
		if (cb_s3_env_overrides(config_keys[i]))
			continue; /* as for every cassbackup command (the CLI checked this store) */
		if (v && !strcmp(config_keys[i], "cache_dir")) {
			config_cache_dir(o, v);
			continue;
		}
		struct strbuf opt = {0};
		if (v && sb_printf(&opt, "%s=%s", config_keys[i], v) < 0)
			die("out of memory");
		if (v)
			parse_one(o, opt.buf);
		sb_free(&opt);
	}
}

/* Fills o from argv. -1 to go on and mount, else the exit code (--help, --version, usage). */
static int parse_args(int argc, char **argv, struct options *o)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	*o = (struct options){
		.allow_other = getuid() == 0,
		.cache_mib = CACHE_UNSET,
		.max_threads = ncpu > 1 ? 2 * (unsigned)ncpu : 2,
		.readahead_kb = 4096,
	};
	use_config(o, config_option(argc, argv));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("mount.cassbackup %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
			return 0;
		} else if (!strcmp(a, "-f")) {
			o->foreground = true;
		} else if (!strcmp(a, "-s")) {
			o->single = true;
		} else if (!strcmp(a, "-d")) {
			o->debug = o->foreground = true;
		} else if (!strcmp(a, "-n") || !strcmp(a, "-v")) {
			/* mount(8) helper flags: no mtab, verbose */
		} else if (!strncmp(a, "-o", 2)) {
			const char *list = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!list)
				die("-o needs an argument");
			parse_o(o, list);
		} else if (a[0] == '-' && a[1]) {
			die("unknown option %s (see --help)", a);
		} else if (!o->store) {
			o->store = a;
		} else if (!o->mnt) {
			o->mnt = a;
		} else {
			die("unexpected argument %s (see --help)", a);
		}
	}
	if (!o->store || !o->mnt) {
		usage(stderr);
		return 2;
	}
	if (o->disk_cache_size && !o->cache_dir && !o->config_cache_dir)
		die("-o disk_cache_size: needs -o cache_dir=DIR");
	if (o->cache_mib == CACHE_UNSET) /* room for read-ahead over round trips to the store */
		o->cache_mib = cb_location_is_remote(o->store) ? 64 : 16;
	return -1;
}

/* Checks everything we can before mounting, and says plainly what is wrong; fills fs's paths.
 * The store is opened (its catalog brought up to date) and closed again: the daemon opens it
 * anew after the fork, since SQLite's locks do not survive one. */
static void check_store_and_mountpoint(struct cbfs *fs, struct options *o)
{
	fs->location = cb_location_is_remote(o->store) ? strdup(o->store) : realpath(o->store, NULL);
	if (!fs->location && errno == ENOENT && o->nofail) {
		/* mount(8) leaves nofail to helpers: a store that is not there is no error */
		fprintf(stderr, "mount.cassbackup: cannot open store %s: %s, ignoring (nofail)\n",
			o->store, strerror(ENOENT));
		exit(0);
	}
	if (!fs->location)
		die("cannot open store %s: %s", o->store, strerror(errno));
	struct strbuf err = {0};
	struct store *s;
	int r = store_open(fs->location, &fs->sopts, &s, &err);
	if (r == -ENOKEY && !o->key_file && !o->passphrase_file)
		die("store %s is encrypted: give -o key_file=FILE or key_file in the config", o->store);
	if (r < 0)
		die("cannot open store %s: %s", o->store, err.buf ? err.buf : strerror(-r));
	bool encrypted = store_encrypted(s);
	store_close(s);
	/* the disk cache keeps frames as the store handed them: decrypted; so an encrypted
	 * store's mount has none, and the configuration's cache_dir only holds its catalog */
	if (encrypted && o->cache_dir)
		die("-o cache_dir: not available for an encrypted store (it would keep decrypted frames "
		    "on disk)");
	if (!encrypted && !o->cache_dir && o->config_cache_dir) {
		if (!(o->cache_dir = strdup(o->config_cache_dir)))
			die("out of memory");
		o->cache_dir_shared = true;
	}
	struct stat st;
	if (stat(o->mnt, &st) < 0)
		die("mountpoint %s: %s", o->mnt, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die("mountpoint %s: not a directory", o->mnt);
	fs->mountpoint = realpath(o->mnt, NULL);
	if (!fs->mountpoint)
		die("mountpoint %s: %s", o->mnt, strerror(errno));
	if (cbfs_check_mountpoint(fs->mountpoint, o->nonempty, &err) < 0)
		die("mountpoint %s: %s", o->mnt, err.buf ? err.buf : "out of memory");
	sb_free(&err);
}

/* The -o list for FUSE: always read-only, named after the store. */
static void fuse_option_list(const struct cbfs *fs, const struct options *o, struct strbuf *out)
{
	int r = sb_puts(out, "ro,default_permissions,subtype=cassbackup,fsname=");
	for (const char *p = fs->location; *p; p++) /* commas would split the option list */
		r |= sb_append(out, *p == ',' ? "_" : p, 1);
	if (o->allow_other)
		r |= sb_puts(out, ",allow_other");
	if (o->fuse_opts.len)
		r |= sb_puts(out, o->fuse_opts.buf);
	if (r)
		die("out of memory");
}

/* Serves requests until unmounted. 0 or 1. */
static int serve(struct fuse_session *se, const struct options *o)
{
	if (o->single)
		return fuse_session_loop(se) == 0 ? 0 : 1;
	/* A few workers per core keep decoding busy; each costs a request buffer, a decompression
	 * context and a catalog connection, so they are bounded to keep the daemon's memory small. */
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		return 1;
	fuse_loop_cfg_set_max_threads(cfg, o->max_threads);
	fuse_loop_cfg_set_idle_threads(cfg, o->max_threads);
	int rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc == 0 ? 0 : 1;
}

/* Keeps the heap from growing under load (README: memory). Decoded frames live outside it (see
 * packread.c); what is left is small and short-lived, so two arenas serve every worker thread
 * (glibc would otherwise make one per thread, each keeping its own free memory). */
static void tune_malloc(void)
{
	mallopt(M_ARENA_MAX, 2);
}

/* -o cache_dir: checked (created 0700 when missing) before the daemon leaves its directory,
 * and opened again by it. */
static uint64_t disk_cache_size(const struct options *o)
{
	return o->disk_cache_size ? o->disk_cache_size : DISK_CACHE_DEFAULT;
}

/* The configuration's cache_dir, held by another mount: this one goes on without a disk
 * cache (it is only a cache), said. */
static void share_given_way(struct options *o, void (*say)(void *ctx, const char *line), void *ctx)
{
	char line[PATH_MAX + 160];
	snprintf(line, sizeof(line), "note: cache_dir %s (from the configuration) is in use by another "
		 "mount; this mount keeps no disk cache", o->cache_dir);
	say(ctx, line);
	free(o->cache_dir);
	o->cache_dir = NULL;
}

static void say_to_stderr(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "mount.cassbackup: %s\n", line);
}

static void check_disk_cache(struct options *o)
{
	if (!o->cache_dir)
		return;
	struct disk_cache *dc;
	struct strbuf err = {0};
	int r = disk_cache_open(o->cache_dir, disk_cache_size(o), &dc, &err);
	if (r == -EBUSY && o->cache_dir_shared)
		share_given_way(o, say_to_stderr, NULL);
	else if (r < 0)
		die("-o cache_dir=%s: %s", o->cache_dir, err.buf ? err.buf : "out of memory");
	else
		disk_cache_close(dc);
	sb_free(&err);
}

/* Object storage is reached as the AWS CLI would, except where -o says otherwise. The options
 * and the strings they point to live as long as the process. */
static void use_s3_settings(struct options *o, struct cbfs *fs)
{
	if (o->s3_ca_file) { /* read at each connection, after the daemon went to / */
		char *abs = realpath(o->s3_ca_file, NULL);
		if (!abs)
			die("-o s3_ca_file=%s: %s", o->s3_ca_file, strerror(errno));
		free(o->s3_ca_file);
		o->s3_ca_file = abs;
	}
	static struct cb_s3_options s3;
	static char **s3_strings;
	s3.endpoint = o->s3_endpoint;
	s3.region = o->s3_region;
	s3.ca_file = o->s3_ca_file;
	s3.limit_download = o->limit_download;
	s3.parallel = o->s3_parallel;
	s3.sse = o->s3_sse;
	s3.sse_kms_key_id = o->s3_sse_kms_key_id;
	s3.sse_c_key_file = o->s3_sse_c_key_file; /* read now, before the daemon goes to / */
	s3.storage_class = o->s3_storage_class;
	if (cb_s3_options_resolve(&s3, o->s3_key_file, &s3_strings) < 0)
		die("-o: %s", cb_backend_why(-errno));
	fs->sopts.s3 = &s3;
	if (o->key_file) { /* read again by the daemon, after it went to / */
		char *abs = realpath(o->key_file, NULL);
		if (!abs)
			die("-o key_file=%s: %s", o->key_file, strerror(errno));
		free(o->key_file);
		o->key_file = abs;
		fs->sopts.key_file = o->key_file;
	}
	if (o->passphrase_file) {
		char *abs = realpath(o->passphrase_file, NULL);
		if (!abs)
			die("-o passphrase_file=%s: %s", o->passphrase_file, strerror(errno));
		free(o->passphrase_file);
		o->passphrase_file = abs;
		fs->sopts.passphrase_file = o->passphrase_file;
	}
}

/* After the fork: the store, its pack cache (and disk cache), the refresh thread. Failures are
 * logged (cbfs_log: to the waiting mount command too). 0 or -1. */
static void say_in_log(void *ctx, const char *line)
{
	cbfs_log(ctx, "%s", line);
}

static int open_in_daemon(struct cbfs *fs, struct options *o)
{
	struct strbuf err = {0};
	int r = store_open(fs->location, &fs->sopts, &fs->store, &err);
	if (r == 0 && store_temporary_catalog(fs->store))
		cbfs_log(fs, "%s: catalog %s; this mount keeps a temporary one, read from the store "
			 "(%s)", fs->location, store_temporary_catalog(fs->store),
			 store_catalog_path(fs->store));
	if (r == 0 && (r = store_pack_cache(fs->store, &fs->packs)) < 0)
		sb_puts(&err, "out of memory");
	if (r == 0 && o->cache_dir &&
	    (r = pack_cache_use_disk(fs->packs, o->cache_dir, disk_cache_size(o), &err)) == -EBUSY &&
	    o->cache_dir_shared) { /* taken since check_disk_cache */
		sb_free(&err);
		share_given_way(o, say_in_log, fs);
		r = 0;
	}
	if (r == 0 && (r = cbfs_refresh_start(fs)) < 0)
		sb_printf(&err, "cannot start: %s", strerror(-r));
	if (r < 0)
		cbfs_log(fs, "cannot open store %s: %s", fs->location, err.buf ? err.buf : strerror(-r));
	sb_free(&err);
	return r < 0 ? -1 : 0;
}

/* --- the daemon: started by a parent that waits for its word ----------------------------- */

/* The word the daemon ends its lines to the parent with once its mount answers. Log lines are
 * text, so it cannot be in one. */
#define READY_WORD '\0'

/* The daemon a waiting parent stops when the parent is told to stop: the daemon is in a
 * session of its own, so Ctrl-C or a caller's timeout reach only the parent. Until it has
 * mounted, the daemon keeps the default action of SIGTERM: it ends at once, and no mount is
 * left behind (the store is opened before the mount is made). */
static volatile pid_t waited_daemon;

static void stop_waiting(int sig)
{
	(void)sig;
	static const char msg[] = "mount.cassbackup: interrupted before the mount answered; "
				  "the daemon is told to stop\n";
	kill(waited_daemon, SIGTERM);
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	_exit(1);
}

/* In the parent: SIGTERM, SIGINT and SIGHUP stop the daemon and end the wait, exit 1. */
static void stop_daemon_on_signals(pid_t daemon)
{
	waited_daemon = daemon;
	struct sigaction sa = {.sa_handler = stop_waiting};
	sigemptyset(&sa.sa_mask);
	const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* The parent's wait: the daemon's log lines (the pipe fd) are copied to the parent's stderr
 * until READY_WORD, mounted (exit 0), or the pipe's end: it failed (exit 1, once it ended).
 * Only the daemon holds the pipe (O_CLOEXEC: not the programs it runs, which may outlive it),
 * and the caller's stdout and stderr are held by the parent alone. */
static void wait_for_daemon(pid_t pid, int fd)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		char *word = memchr(buf, READY_WORD, (size_t)n);
		if (write(STDERR_FILENO, buf, word ? (size_t)(word - buf) : (size_t)n) < 0)
			errno = 0; /* the caller's stderr gone: the exit status still tells */
		if (word)
			_exit(0);
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	_exit(1);
}

/* fuse_daemonize's work, except that the parent waits for the daemon's word: the parent's exit
 * status is the mount's (mount(8), fstab and systemd read it), where fuse_daemonize's parent
 * exits 0 before the store is opened or the kernel's INIT is answered. The daemon's stdin,
 * stdout and stderr are /dev/null; its log lines go to the parent through a pipe
 * (fs->log_fd) until it has mounted. In the parent: does not return. In the daemon: 0, or -1. */
static int daemon_fork(struct cbfs *fs)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "mount.cassbackup: cannot start: %s\n", strerror(errno));
		return -1;
	}
	/* held from the fork until the parent's handlers are in place: none is lost between */
	sigset_t stops, was;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGHUP);
	sigprocmask(SIG_BLOCK, &stops, &was);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &was, NULL);
		fprintf(stderr, "mount.cassbackup: cannot start: %s\n", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		stop_daemon_on_signals(pid);
		sigprocmask(SIG_SETMASK, &was, NULL);
		close(p[1]);
		wait_for_daemon(pid, p[0]);
	}
	sigprocmask(SIG_SETMASK, &was, NULL);
	close(p[0]);
	atomic_store(&fs->log_fd, p[1]);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (setsid() < 0 || chdir("/") < 0 || nul < 0 || dup2(nul, STDIN_FILENO) < 0 ||
	    dup2(nul, STDOUT_FILENO) < 0 || dup2(nul, STDERR_FILENO) < 0) {
		cbfs_log(fs, "cannot start: %s", strerror(errno));
		return -1;
	}
	close(nul);
	return 0;
}

/* libfuse's messages (a refused INIT, an option it does not take) go where ours go: once
 * daemonized its stderr is /dev/null. */
static const struct cbfs *libfuse_log_fs;

static void libfuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	cbfs_vlog(libfuse_log_fs, fmt, ap);
}

struct readiness {
	struct cbfs *fs;
	struct fuse_session *se;
	dev_t under;   /* the mountpoint's device before the mount */
};

/* Is the mount answering: its root is ours (FUSE_ROOT_ID on another device than the directory
 * mounted over), so the kernel's INIT was answered? A stat through the mount waits for that;
 * once a failed INIT ended the session, the directory under it answers instead. */
static int mount_answers(const struct readiness *r)
{
	struct stat st;
	if (stat(r->fs->mountpoint, &st) < 0)
		return -errno;
	return st.st_dev != r->under && st.st_ino == 1 ? 0 : -ENOTCONN;
}

/* The daemon's last step of starting, on a thread of its own while the workers serve: once the
 * mount answers, READY_WORD to the parent (which exits 0), and log lines go to syslog alone;
 * else the session ends (the parent exits 1 when the daemon has). The pipe is not closed: a
 * line another thread writes meanwhile goes into it, never into a file that took its number. */
static void *await_serving(void *arg)
{
	struct readiness *r = arg;
	int e = mount_answers(r);
	if (e == 0) {
		int fd = atomic_exchange(&r->fs->log_fd, -1);
		char word = READY_WORD;
		if (fd >= 0 && write(fd, &word, 1) != 1)
			cbfs_log(r->fs, "cannot tell the mount command it is mounted: %s", strerror(errno));
	} else {
		cbfs_log(r->fs, "the mount on %s does not answer: %s", r->fs->mountpoint, strerror(-e));
		fuse_session_exit(r->se);
		mount_answers(r); /* a request, so that a worker sees the session end */
	}
	free(r);
	return NULL;
}

/* Starts await_serving in a daemon (in the foreground, nothing waits), into *t (joined or
 * detached by end_await_serving). 0, 1 when none was started (the foreground), or -1. */
static int start_await_serving(struct cbfs *fs, struct fuse_session *se, dev_t under, pthread_t *t)
{
	if (fs->foreground)
		return 1;
	struct readiness *r = malloc(sizeof(*r));
	if (r)
		*r = (struct readiness){.fs = fs, .se = se, .under = under};
	if (!r || pthread_create(t, NULL, await_serving, r) != 0) {
		cbfs_log(fs, "cannot start: %s", strerror(r ? EAGAIN : ENOMEM));
		free(r);
		return -1;
	}
	return 0;
}

#define AWAIT_JOIN_SECONDS 10

/* After the session: a mount that never answered (the parent still waits for our word) has
 * its await_serving say why before the process ends, and end using the session before it goes
 * (its stat returns once the session is over; bounded all the same: a stat the kernel holds
 * for an INIT never answered). One that answered is done: detached. */
static void end_await_serving(struct cbfs *fs, pthread_t t)
{
	if (atomic_load(&fs->log_fd) < 0) {
		pthread_detach(t);
		return;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += AWAIT_JOIN_SECONDS;
	if (pthread_timedjoin_np(t, NULL, &until) != 0)
		pthread_detach(t);
}

static void free_options(struct options *o)
{
	sb_free(&o->fuse_opts);
	free(o->cache_dir);
	free(o->config_cache_dir);
	free(o->s3_endpoint);
	free(o->s3_region);
	free(o->s3_ca_file);
	free(o->s3_key_file);
	free(o->s3_sse);
	free(o->s3_sse_kms_key_id);
	free(o->s3_sse_c_key_file);
	free(o->s3_storage_class);
	free(o->key_file);
	free(o->passphrase_file);
}

int main(int argc, char **argv)
{
	struct options o;
	int rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct cbfs fs = {
		.uid = getuid(),
		.gid = getgid(),
		.start_ns = now_ns(),
		.foreground = o.foreground,
		.log_fd = STDERR_FILENO,
		.readahead_kb = o.readahead_kb,
		.gen = 1,
		.sopts = {.flags = STORE_READONLY, .read_cache_bytes = (size_t)o.cache_mib << 20},
	};
	fs.sopts.cache_dir = o.config_cache_dir;
	use_s3_settings(&o, &fs);
	check_store_and_mountpoint(&fs, &o);
	check_disk_cache(&o);
	int r = cbfs_init_threads(&fs);
	if (r < 0)
		die("cannot start: %s", strerror(-r));
	tune_malloc();

	struct strbuf fo = {0};
	fuse_option_list(&fs, &o, &fo);
	char *fargv[] = {argv[0], "-o", fo.buf, o.debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(o.debug ? 4 : 3, fargv);

	rc = 1;
	struct fuse_session *se = fuse_session_new(&args, &cbfs_ops, sizeof(cbfs_ops), &fs);
	if (!se)
		goto err_out1; /* libfuse printed why (e.g. an unknown option) */
	struct stat under;
	if (stat(fs.mountpoint, &under) < 0) {
		fprintf(stderr, "mount.cassbackup: mountpoint %s: %s\n", o.mnt, strerror(errno));
		goto err_out2;
	}
	if (!fs.foreground) {
		if (daemon_fork(&fs) != 0)
			goto err_out2;
		libfuse_log_fs = &fs;
		fuse_set_log_func(libfuse_log);
	}
	/* From here on, this is the process that serves: what holds locks or threads is made
	 * now (SQLite's locks and threads do not survive the fork). The store first: one that
	 * does not answer leaves no mount behind, and a signal meanwhile ends the process (the
	 * signal handlers come with the mount). */
	if (open_in_daemon(&fs, &o) != 0)
		goto err_out3;
	if (fuse_set_signal_handlers(se) != 0)
		goto err_out3;
	if (fuse_session_mount(se, fs.mountpoint) != 0) {
		cbfs_log(&fs, "cannot mount %s on %s", o.store, o.mnt);
		goto err_out4;
	}
	pthread_t awaiter;
	int started = start_await_serving(&fs, se, under.st_dev, &awaiter);
	if (started >= 0)
		rc = serve(se, &o);
	fuse_session_unmount(se);
	if (started == 0)
		end_await_serving(&fs, awaiter);
err_out4:
	fuse_remove_signal_handlers(se);
err_out3:
	cbfs_refresh_stop(&fs);
err_out2:
	fuse_session_destroy(se);
err_out1:
	cbfs_end_threads(&fs);
	fuse_opt_free_args(&args);
	store_close(fs.store); /* its pack cache too */
	sb_free(&fo);
	free_options(&o);
	free(fs.mountpoint);
	free(fs.location);
	return rc;
}
