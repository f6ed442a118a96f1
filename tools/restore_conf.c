/* restore_conf.c: cassbackup restore NAME --conf DIR: the Cassandra configuration files a
 * backup kept (manifest.h node_files, MANIFEST_CONF_DIR) written back into DIR.
 *
 * The manifest is the truth: its files, their SHA-256, mode and owner; the catalog only says
 * where the bytes are. Each file is written beside its target under a temporary name, checked
 * (readback), given its recorded mode and owner, synced, then put in place: linked, which
 * fails rather than replace a file, or renamed over it with --force. Existing files are looked
 * for first, so a refusal writes nothing. A kill leaves at most one temporary
 * .cassbackup-tmp-<random>, never a file of partial contents under a real name. A temporary
 * name is never one of the backup's files, and nothing already in DIR is removed but what
 * --force replaces: a file there named like a temporary one is the operator's.
 */
#include "cli.h"
#include "cluster.h"
#include "manifest.h"
#include "readback.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

struct conf_opts {
	const char *store, *node, *dir;
	bool force;
};

static int write_out(void *ctx, const void *data, size_t len)
{
	int fd = *(int *)ctx;
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes f's bytes (read from the store, checked) to dfd/tmp with f's mode and owner. 0, or
 * the exit code (said). */
static int write_tmp(struct store *st, readback *rb, int dfd, const char *dir, const char *tmp,
		     const struct manifest_file *f)
{
	struct cb_blob_loc loc;
	catalog *cat = store_catalog(st);
	int r = catalog_blob_location(cat, f->sha256, f->size, &loc);
	if (r <= 0 || !loc.pack_path[0]) {
		errorf("cannot restore %s/%s: no pack of the store holds its bytes%s", dir, f->name,
		       r < 0 ? " (the catalog cannot be read)" : "");
		return CB_EXIT_FAILED;
	}
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		errorf("cannot create %s/%s: %s", dir, tmp, strerror(errno));
		return CB_EXIT_FAILED;
	}
	/* its mtime as recorded (none before 1970: left as written) */
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	if (f->attr.mtime_ns >= 0)
		ts[1] = (struct timespec){f->attr.mtime_ns / 1000000000, f->attr.mtime_ns % 1000000000};
	struct readback_result res;
	r = readback_pack(rb, &loc, f->size, f->sha256, write_out, &fd, &res);
	if (r < 0)
		errorf("cannot restore %s/%s: %s", dir, f->name, *res.why ? res.why : strerror(-r));
	else if (fchown(fd, f->attr.uid, f->attr.gid) < 0 || fchmod(fd, f->attr.mode & 07777) < 0 ||
		 futimens(fd, ts) < 0 || fsync(fd) < 0)
		errorf("cannot restore %s/%s: %s", dir, f->name, strerror(r = -errno));
	if (close(fd) < 0 && r == 0)
		errorf("cannot restore %s/%s: %s", dir, f->name, strerror(r = -errno));
	if (r < 0)
		unlinkat(dfd, tmp, 0);
	return r < 0 ? CB_EXIT_FAILED : 0;
}

/* A temporary name for one file, into buf: random, so that it names nothing in the directory
 * (openat's O_EXCL makes sure) and none of m's files. 0, or -errno. */
static int tmp_name(const struct manifest *m, char *buf, size_t n)
{
	for (;;) {
		unsigned char rnd[8];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return errno ? -errno : -EIO;
		snprintf(buf, n, ".cassbackup-tmp-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
			 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
		if (!manifest_node_file(m, MANIFEST_CONF_DIR, buf))
			return 0;
	}
}

/* The directory dir, made (0755, as a package makes /etc/cassandra) when it alone is missing:
 * a lost configuration directory is what this restore is for. Its descriptor, or -errno with
 * one line said. */
static int open_conf_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		goto out;
	if (mkdir(dir, 0755) == 0) {
		if (chmod(dir, 0755) < 0) /* whatever the umask */
			goto out;
		printf("made %s\n", dir);
	} else if (errno != EEXIST) { /* EEXIST: another made it, or a symlink to nothing */
		goto out;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
out:;
	int r = fd >= 0 ? fd : -errno;
	struct stat st;
	if (r == -ENOENT && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
		errorf("--conf %s: a symlink to nothing (make the directory it names)", dir);
	else if (r < 0)
		errorf("--conf %s: %s", dir, strerror(-r));
	return r;
}

/* Puts every configuration file of m into o->dir. 0 or the exit code (said). */
static int restore_files(const struct conf_opts *o, struct store *st, const struct manifest *m)
{
	size_t n = 0, exists = 0;
	for (size_t i = 0; i < m->nnode_files; i++)
		n += !strcmp(m->node_files[i].dir, MANIFEST_CONF_DIR);
	if (n == 0) {
		errorf("backup %s kept no configuration files (made with --no-conf, or its "
		       "configuration directory could not be read)", m->name);
		return CB_EXIT_FAILED;
	}
	int dfd = open_conf_dir(o->dir);
	if (dfd < 0)
		return CB_EXIT_USAGE;
	int rc = 0;
	const char *first = NULL;
	for (size_t i = 0; i < m->nnode_files; i++) {
		const struct manifest_file *f = &m->node_files[i];
		struct stat sb;
		if (!strcmp(f->dir, MANIFEST_CONF_DIR) &&
		    fstatat(dfd, f->name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !exists++)
			first = f->name;
	}
	if (exists && !o->force) {
		errorf("--conf %s: %zu of the backup's %zu configuration files exist there (%s%s); "
		       "nothing written (--force replaces them)", o->dir, exists, n, first,
		       exists > 1 ? ", ..." : "");
		rc = CB_EXIT_FAILED;
	}
	readback *rb = NULL;
	if (rc == 0 && readback_new(st, NULL, &rb) < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	for (size_t i = 0; rc == 0 && i < m->nnode_files; i++) {
		const struct manifest_file *f = &m->node_files[i];
		if (strcmp(f->dir, MANIFEST_CONF_DIR))
			continue;
		char tmp[64];
		if (tmp_name(m, tmp, sizeof(tmp)) < 0) {
			errorf("cannot restore %s/%s: no random name: %s", o->dir, f->name, strerror(errno));
			rc = CB_EXIT_FAILED;
			break;
		}
		rc = write_tmp(st, rb, dfd, o->dir, tmp, f);
		if (rc != 0)
			break; /* write_tmp removed its temporary file */
		int r = o->force ? renameat(dfd, tmp, dfd, f->name) : linkat(dfd, tmp, dfd, f->name, 0);
		int err = errno;
		if (r < 0 || !o->force)
			unlinkat(dfd, tmp, 0); /* linked (or not put in place): the name goes */
		if (r < 0) {
			errorf("cannot restore %s/%s: %s%s", o->dir, f->name, strerror(err),
			       err == EEXIST ? " (made meanwhile; --force replaces it)" : "");
			rc = CB_EXIT_FAILED;
		}
		if (rc == 0)
			printf("restored %s/%s\n", o->dir, f->name);
	}
	if (rc == 0 && fsync(dfd) < 0) {
		errorf("cannot sync %s: %s", o->dir, strerror(errno));
		rc = CB_EXIT_FAILED;
	}
	readback_free(rb);
	close(dfd);
	return rc;
}

int cmd_restore_conf(int argc, char **argv)
{
	struct conf_opts o = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &o.node, .arg = "NODE",
		 .help = "the node whose backup NAME to take, when several nodes have one"},
		{.name = "conf", .type = OPT_STRING, .value = &o.dir, .arg = "DIR",
		 .help = "write the backup's Cassandra configuration files into DIR", .flags = OPT_REQUIRED},
		{.name = "force", .type = OPT_FLAG, .value = &o.force,
		 .help = "replace files of DIR that the backup has too"},
		{0},
	};
	static const char *const usage[] = {"--store DIR --conf DIR [--node NODE] [--force] NAME", NULL};
	struct cli_command cmd = {
		.name = "restore",
		.usage = usage,
		.operands = "NAME",
		.min_operands = 1,
		.max_operands = 1,
		.description = "--conf DIR writes the Cassandra configuration files the backup kept\n"
			       "(its cassandra-conf/) into DIR, with the mode and owner they had, each checked\n"
			       "against its SHA-256; a file DIR has already is refused (nothing is written)\n"
			       "unless --force.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (argc - first != 1)
		return cli_usage_error(&cmd, argc - first ? "too many operands" : "missing NAME");
	const char *name = argv[first];
	struct store *st = NULL;
	struct node_backups nb = {0};
	struct strv refs = {0};
	struct manifest *m = NULL;
	struct strbuf err = {0};
	rc = cluster_open_named(o.store, name, &st, &nb);
	if (rc == 0)
		rc = cluster_pick(st, o.store, name, o.node, false, &refs);
	if (rc == 0 && store_read_manifest(st, refs.v[0], &m, NULL, &err) < 0) {
		errorf("cannot read backup %s: %s", refs.v[0], err.buf ? err.buf : "");
		rc = CB_EXIT_FAILED;
	}
	if (rc == 0)
		rc = restore_files(&o, st, m);
	manifest_free(m);
	sb_free(&err);
	strv_free(&refs);
	node_backups_free(&nb);
	store_close(st);
	return rc;
}
