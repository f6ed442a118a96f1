/* mount.cassbackup: presents every backup in a store as a read-only tree
 *
 *   MOUNTPOINT/backups/<name>/<keyspace>/<table>/<files as in the snapshot>
 *
 * Arguments follow the mount(8) helper convention (STORE DIR [-o options]) so that, installed in
 * /sbin, `mount -t cassbackup STORE DIR` and fstab entries of type cassbackup work.
 */
#include "cbfs.h"
#include "config.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cbfs cbfs = {.readahead_once = PTHREAD_ONCE_INIT};

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
		"  -o cache_size=MiB  decoded-frame cache (default 16)\n"
		"  -o threads=N       worker threads (default 2 per core)\n"
		"  -o readahead_kb=N  kernel readahead for the mount (default 4096; 0 keeps the kernel's)\n"
		"  -o allow_other     let other users read (the default when mounted by root)\n"
		"  other -o options go to FUSE; mount(8)'s own (defaults, noauto, nofail, _netdev,\n"
		"  user, x-*, ...) are accepted and ignored. The mount is always read-only.\n");
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

/* Is path a mount point already? From /proc/self/mountinfo, without touching path's fs. */
static bool is_mountpoint(const char *path, char *dev, size_t devlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], majmin[64];
		/* id parent major:minor root mountpoint ... ; octal escapes as \040 */
		if (sscanf(line, "%*s %*s %63s %*s %4095s", majmin, mp) != 2)
			continue;
		char un[PATH_MAX];
		size_t j = 0;
		for (size_t i = 0; mp[i] && j + 1 < sizeof(un); i++) {
			if (mp[i] == '\\' && mp[i + 1] && mp[i + 2] && mp[i + 3]) {
				un[j++] = (char)((mp[i + 1] - '0') * 64 + (mp[i + 2] - '0') * 8 +
						 (mp[i + 3] - '0'));
				i += 3;
			} else {
				un[j++] = mp[i];
			}
		}
		un[j] = '\0';
		if (strcmp(un, path) == 0) {
			found = true; /* the last one is on top */
			if (dev)
				snprintf(dev, devlen, "%s", majmin);
		}
	}
	free(line);
	fclose(f);
	return found;
}

void cbfs_raise_readahead(void)
{
	if (!cbfs.readahead_kb)
		return;
	char dev[64], path[128], val[32];
	if (!is_mountpoint(cbfs.mountpoint, dev, sizeof(dev)))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* not allowed here (not root, or sysfs read-only): keep the default */
	int n = snprintf(val, sizeof(val), "%u", cbfs.readahead_kb);
	if (write(fd, val, (size_t)n) < 0 && cbfs.foreground)
		cbfs_log("cannot raise readahead in %s: %s, ignoring", path, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	const char *store = NULL, *mnt = NULL;
	bool single = false, debug = false, allow_other = getuid() == 0;
	unsigned cache_mib = 16;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned max_threads = ncpu > 1 ? 2 * (unsigned)ncpu : 2;
	struct strbuf fuse_opts = {0};
	cbfs.readahead_kb = 4096;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("mount.cassbackup %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
			return 0;
		} else if (!strcmp(a, "-f")) {
			cbfs.foreground = true;
		} else if (!strcmp(a, "-s")) {
			single = true;
		} else if (!strcmp(a, "-d")) {
			debug = cbfs.foreground = true;
		} else if (!strcmp(a, "-n") || !strcmp(a, "-v")) {
			/* mount(8) helper flags: no mtab, verbose */
		} else if (!strncmp(a, "-o", 2)) {
			const char *list = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!list)
				die("-o needs an argument");
			char *copy = strdup(list), *save = NULL;
			for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
				if (!strncmp(o, "cache_size=", 11))
					cache_mib = parse_uint("cache_size", o + 11, 65536);
				else if (!strncmp(o, "threads=", 8))
					max_threads = parse_uint("threads", o + 8, 256);
				else if (!strncmp(o, "readahead_kb=", 13))
					cbfs.readahead_kb = parse_uint("readahead_kb", o + 13, 1 << 20);
				else if (!strcmp(o, "allow_other"))
					allow_other = true;
				else if (!strcmp(o, "noallow_other"))
					allow_other = false;
				else if (!ignored_option(o))
					sb_printf(&fuse_opts, ",%s", o);
			}
			free(copy);
		} else if (a[0] == '-' && a[1]) {
			die("unknown option %s (see --help)", a);
		} else if (!store) {
			store = a;
		} else if (!mnt) {
			mnt = a;
		} else {
			die("unexpected argument %s (see --help)", a);
		}
	}
	if (!store || !mnt) {
		usage(stderr);
		return 2;
	}

	/* Check everything we can before mounting, and say plainly what is wrong. */
	cbfs.store = realpath(store, NULL);
	if (!cbfs.store)
		die("cannot open store %s: %s", store, strerror(errno));
	catalog *probe;
	int r = store_open(cbfs.store, CATALOG_READONLY, &probe);
	if (r == -EMEDIUMTYPE)
		die("cannot open store %s: not a cassbackup store", store);
	if (r < 0)
		die("cannot open store %s: %s", store, strerror(-r));
	catalog_close(probe);
	struct stat st;
	if (stat(mnt, &st) < 0)
		die("mountpoint %s: %s", mnt, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die("mountpoint %s: not a directory", mnt);
	cbfs.mountpoint = realpath(mnt, NULL);
	if (!cbfs.mountpoint)
		die("mountpoint %s: %s", mnt, strerror(errno));
	if (is_mountpoint(cbfs.mountpoint, NULL, 0))
		die("mountpoint %s: busy: something is already mounted there (fusermount3 -u %s)",
		    mnt, cbfs.mountpoint);

	struct strbuf cat = {0};
	sb_printf(&cat, "%s/catalog.db", cbfs.store);
	cbfs.catalog_path = cat.buf;
	cbfs.uid = getuid();
	cbfs.gid = getgid();
	cbfs.start_ns = now_ns();
	if ((r = cbfs_init_threads()) < 0)
		die("cannot start: %s", strerror(-r));
	/* Decoded frames (~1 MiB) come and go all the time: keep them on the heap and keep the
	 * heap, instead of a fresh zero-filled mmap per frame. Bounded by the cache size. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_ARENA_MAX, 2);
	if ((r = pack_cache_new(&cbfs.packs, cbfs.store, (size_t)cache_mib << 20)) < 0)
		die("cannot start: %s", strerror(-r));

	struct strbuf o = {0};
	sb_printf(&o, "ro,default_permissions,subtype=cassbackup,fsname=");
	for (const char *p = cbfs.store; *p; p++) /* commas would split the option list */
		sb_append(&o, *p == ',' ? "_" : p, 1);
	if (allow_other)
		sb_puts(&o, ",allow_other");
	if (fuse_opts.len)
		sb_puts(&o, fuse_opts.buf);
	char *fargv[] = {argv[0], "-o", o.buf, debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, fargv);

	int rc = 1;
	struct fuse_session *se = fuse_session_new(&args, &cbfs_ops, sizeof(cbfs_ops), NULL);
	if (!se)
		goto err_out1; /* libfuse printed why (e.g. an unknown option) */
	if (fuse_set_signal_handlers(se) != 0)
		goto err_out2;
	if (fuse_session_mount(se, cbfs.mountpoint) != 0) {
		fprintf(stderr, "mount.cassbackup: cannot mount %s on %s\n", store, mnt);
		goto err_out3;
	}
	if (fuse_daemonize(cbfs.foreground) != 0)
		goto err_out4;
	if (single) {
		rc = fuse_session_loop(se);
	} else {
		/* A few workers per core keep decoding busy; each costs a ~1 MiB request buffer,
		 * so they are bounded to keep the daemon's memory small. */
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		if (!cfg)
			goto err_out4;
		fuse_loop_cfg_set_max_threads(cfg, max_threads);
		fuse_loop_cfg_set_idle_threads(cfg, max_threads);
		rc = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	rc = rc == 0 ? 0 : 1;
err_out4:
	fuse_session_unmount(se);
err_out3:
	fuse_remove_signal_handlers(se);
err_out2:
	fuse_session_destroy(se);
err_out1:
	fuse_opt_free_args(&args);
	pack_cache_free(cbfs.packs);
	sb_free(&o);
	sb_free(&fuse_opts);
	sb_free(&cat);
	free(cbfs.mountpoint);
	free(cbfs.store);
	return rc;
}
