/* cassbackup export: one backup as a standalone tar in the data-dir layout,
 *
 *     <keyspace>/<table>-<id>/[.<index>/]<file>
 *
 * that stock `tar -x` restores with no cassbackup: modes, owners and mtimes as backed up, names
 * as the bytes they are (pax headers written under C.UTF-8, a name that is not UTF-8 under
 * hdrcharset=BINARY, as pack.c writes them), whichever packs the blobs are in.
 *
 * plan (the backup, its manifest, the selection, and the pack every chosen file is read from:
 * all before a byte is written) -> execute (a pax tar, zstd-compressed with --zstd, to stdout
 * or to a temporary file of its own beside FILE, fsynced and renamed to FILE only when complete:
 * never a half-written FILE; or straight into FILE when that is a device or a FIFO, as tar -f
 * writes) -> report (one line on stderr: what was written).
 *
 * Every file's bytes are checked against the SHA-256 recorded at backup time as they are
 * written (catalog/readback.h); a mismatch or a read error fails the export.
 */
#include "cli.h"
#include "cluster.h"
#include "lock.h"
#include "packread.h"
#include "readback.h"
#include "store.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One tar member: a directory or a file, in the order written. */
struct entry {
	char *path;
	bool dir;
	const struct cb_attr *attr;
	const struct manifest_file *f; /* files */
	struct cb_blob_loc loc;        /* files: where the bytes are read from */
};

struct export {
	const char *store, *name, *output, *node;
	struct strv ref; /* the one node backup of name exported (cluster_pick) */
	bool zstd;
	struct selection sel;
	struct store *s;
	struct store_lock *lock;
	struct manifest *m;
	struct entry *v;
	size_t n, cap;
	uint64_t files, bytes;
	/* execute */
	struct archive *a;
	locale_t utf8;
	char *file;    /* the file renamed to: FILE, or what FILE, a symlink, names */
	char *tmp;     /* <file's directory>/.cassbackup-export-XXXXXX, ours alone, while it is not
			* renamed to file (a name of its own length: FILE's may be NAME_MAX long) */
	int fd;
	bool own_fd;   /* fd is FILE's itself (a device or FIFO), closed at the end */
	readback *rb;
};

/* ---- plan ------------------------------------------------------------------------------------ */

static int add_entry(struct export *x, bool dir, const struct cb_attr *attr,
		     const struct manifest_file *f, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int add_entry(struct export *x, bool dir, const struct cb_attr *attr,
		     const struct manifest_file *f, const char *fmt, ...)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 256;
		struct entry *v = realloc(x->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	struct entry *e = &x->v[x->n];
	*e = (struct entry){.dir = dir, .attr = attr, .f = f};
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&e->path, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	x->n++;
	return 0;
}

/* Where f's bytes are: 0, or -ENOENT (said: no pack holds them), or -errno (said). */
static int locate(struct export *x, const char *path, const struct manifest_file *f,
		  struct cb_blob_loc *loc)
{
	catalog *cat = store_catalog(x->s);
	char why[512];
	int r = catalog_blob_location(cat, f->sha256, f->size, loc);
	_cleanup_free_ char *shown = cli_escape(path), *name = cli_escape(x->name);
	if (r < 0)
		errorf("backup %s: %s: %s", name ? name : "", shown ? shown : "",
		       catalog_why(cat, r, why, sizeof(why)));
	else if (r == 0 || loc->pack_id == 0)
		say_no_pack_holds(x->s, name ? name : "", shown ? shown : "");
	return r < 0 ? r : r == 0 || loc->pack_id == 0 ? -ENOENT : 0;
}

/* The members of one table: its directory, its index directories, its files. */
static int plan_table(struct export *x, const struct manifest_keyspace *ks,
		      const struct manifest_table *t)
{
	struct strbuf dir = {0};
	int r = sb_printf(&dir, "%s/%s%s%s", ks->name, t->name, *t->id ? "-" : "", t->id) ?:
		add_entry(x, true, &t->attr, NULL, "%s", dir.buf);
	for (size_t i = 0; r == 0 && i < t->ndirs; i++)
		r = add_entry(x, true, &t->dirs[i].attr, NULL, "%s/%s", dir.buf, t->dirs[i].name);
	for (size_t i = 0; r == 0 && i < t->nfiles; i++) {
		const struct manifest_file *f = &t->files[i];
		r = add_entry(x, false, &f->attr, f, "%s/%s%s%s", dir.buf, f->dir, *f->dir ? "/" : "",
			      f->name);
		if (r == 0) {
			r = locate(x, x->v[x->n - 1].path, f, &x->v[x->n - 1].loc);
			x->files++;
			x->bytes += f->size;
		}
	}
	sb_free(&dir);
	return r;
}

/* Every member, in order; fails (said) when a selection matches nothing or bytes are missing. */
static int plan_members(struct export *x)
{
	int r = 0;
	for (size_t k = 0; r == 0 && k < x->m->nkeyspaces; k++) {
		const struct manifest_keyspace *ks = &x->m->keyspaces[k];
		bool any = false;
		for (size_t t = 0; r == 0 && t < ks->ntables; t++) {
			if (!selection_matches(&x->sel, ks->name, ks->tables[t].name))
				continue;
			if (!any && (r = add_entry(x, true, &ks->attr, NULL, "%s", ks->name)) < 0)
				break;
			any = true;
			r = plan_table(x, ks, &ks->tables[t]);
		}
	}
	if (r == -ENOMEM)
		errorf("out of memory");
	const struct selection_entry *miss = r == 0 ? selection_unmatched(&x->sel) : NULL;
	if (miss) {
		struct strbuf m = {0};
		_cleanup_free_ char *name = cli_escape(x->name);
		sb_selection_entry(&m, miss);
		errorf("%s: not in backup %s", m.buf ? m.buf : "", name ? name : "");
		sb_free(&m);
		r = -ENOENT;
	}
	return r;
}

/* The store, the backup (exit 3 when there is none), a shared lock, the manifest, the members. */
static int plan(struct export *x)
{
	struct strbuf err = {0};
	_cleanup_free_ char *shown = cli_escape(x->store);
	int r = cli_store_open(x->store, 0, &x->s);
	if (r)
		return r;
	r = cluster_pick(x->s, x->store, x->name, x->node, false, &x->ref);
	if (r != 0)
		return r;
	if (cli_store_lock(x->s, x->store, false, "export", 0, &x->lock) < 0)
		return CB_EXIT_FAILED;
	r = store_read_manifest(x->s, x->ref.v[0], &x->m, NULL, &err);
	if (r == -ENOENT) /* forgotten a moment ago */
		return report_no_such_backup(x->s, x->store, x->name);
	if (r < 0) {
		errorf("cannot read backup: %s", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return CB_EXIT_FAILED;
	}
	return plan_members(x) < 0 ? CB_EXIT_FAILED : CLI_RUN;
}

/* ---- execute ---------------------------------------------------------------------------------- */

static int archive_fail(struct export *x, const char *what)
{
	const char *s = archive_error_string(x->a);
	int e = archive_errno(x->a);
	/* libarchive's words for a failed write(2) are "Write error": the errno says why */
	if (e > 0 && (!s || !strcmp(s, "Write error")))
		errorf("cannot write %s: %s", what, strerror(e));
	else
		errorf("cannot write %s: %s", what, s ? s : strerror(EIO));
	return e > 0 ? -e : -EIO;
}

static const char *output_name(const struct export *x)
{
	return x->output ? x->output : "standard output";
}

static int open_archive(struct export *x)
{
	x->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	x->a = archive_write_new();
	if (!x->a) {
		errorf("out of memory");
		return -ENOMEM;
	}
	if (archive_write_set_format_pax(x->a) != ARCHIVE_OK ||
	    (x->zstd && archive_write_add_filter_zstd(x->a) != ARCHIVE_OK) ||
	    /* no padding after the end: a zstd stream must end with its last frame */
	    archive_write_set_bytes_in_last_block(x->a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(x->a, x->fd) != ARCHIVE_OK)
		return archive_fail(x, output_name(x));
	return 0;
}

static int write_header(struct export *x, const struct entry *e)
{
	struct archive_entry *ae = archive_entry_new();
	if (!ae)
		return -ENOMEM;
	archive_entry_set_pathname(ae, e->path);
	archive_entry_set_filetype(ae, e->dir ? AE_IFDIR : AE_IFREG);
	archive_entry_set_perm(ae, e->attr->mode & 07777);
	archive_entry_set_size(ae, e->dir ? 0 : (la_int64_t)e->f->size);
	archive_entry_set_uid(ae, e->attr->uid);
	archive_entry_set_gid(ae, e->attr->gid);
	archive_entry_set_mtime(ae, e->attr->mtime_ns / 1000000000, e->attr->mtime_ns % 1000000000);
	locale_t caller = x->utf8 ? uselocale(x->utf8) : (locale_t)0;
	int r = archive_write_header(x->a, ae);
	if (caller)
		uselocale(caller);
	archive_entry_free(ae);
	/* WARN: a name that is not UTF-8, written as its bytes (hdrcharset=BINARY) */
	return r == ARCHIVE_OK || r == ARCHIVE_WARN ? 0 : archive_fail(x, output_name(x));
}

static int write_data(void *ctx, const void *data, size_t n)
{
	struct export *x = ctx;
	return archive_write_data(x->a, data, n) == (la_ssize_t)n ? 0 : archive_fail(x, output_name(x));
}

/* Copies a file's bytes from its pack into the archive, checking them against its SHA-256. */
static int write_file(struct export *x, const struct entry *e)
{
	_cleanup_free_ char *shown = cli_escape(e->path);
	struct readback_result res;
	int r = readback_pack(x->rb, &e->loc, e->f->size, e->f->sha256, write_data, x, &res);
	switch (res.step) {
	case READBACK_SOURCE:
		errorf("%s: cannot read %s: %s", shown ? shown : "", e->loc.pack_path,
		       pack_cache_strerror(r));
		break;
	case READBACK_DIFFERS:
	case READBACK_HASH:
		errorf("%s: its bytes in %s differ from the SHA-256 recorded at backup time",
		       shown ? shown : "", e->loc.pack_path);
		r = -EIO;
		break;
	case READBACK_CANCELED:
		errorf("interrupted");
		break;
	case READBACK_SINK: /* said */
	case READBACK_OK:
		break;
	}
	return r;
}

/* FILE when it is a device or a FIFO (a tape, /dev/null, a pipe to another program): written
 * as it is, never replaced. 1 when it is one and open, 0 when FILE is a regular file or
 * missing, or < 0 (said). */
static int open_output_special(struct export *x)
{
	struct stat st;
	if (stat(x->output, &st) < 0 || S_ISREG(st.st_mode))
		return 0;
	_cleanup_free_ char *shown = cli_escape(x->output);
	if (S_ISDIR(st.st_mode)) {
		errorf("cannot write %s: it is a directory (-o names the tar file)", shown ? shown : "");
		return -EISDIR;
	}
	x->fd = open(x->output, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (x->fd < 0) {
		int r = -errno;
		errorf("cannot write %s: %s", shown ? shown : "", strerror(-r));
		return r;
	}
	x->own_fd = true;
	if (isatty(x->fd)) {
		errorf("refusing to write a tar to a terminal (%s)", shown ? shown : "");
		return -ENOTTY; /* closed by export_free */
	}
	return 1;
}

/* The file FILE names, into x->file: FILE; or, when FILE is a symlink (/dev/stdout to a file,
 * a link kept by the operator), the file it names, so that the link stays a link and the
 * bytes land where it points (as tar -f writes through it). 0 or < 0 (said). */
static int resolve_output(struct export *x)
{
	struct stat st;
	if (lstat(x->output, &st) < 0 || !S_ISLNK(st.st_mode))
		return (x->file = strdup(x->output)) ? 0 : -ENOMEM;
	if ((x->file = realpath(x->output, NULL)))
		return 0;
	int r = -errno;
	_cleanup_free_ char *shown = cli_escape(x->output);
	if (r == -ENOENT)
		errorf("cannot write %s: it is a symlink to nothing (make the file it names, or give "
		       "that file)", shown ? shown : "");
	else
		errorf("cannot write %s: a symlink that cannot be followed: %s", shown ? shown : "",
		       strerror(-r));
	return r;
}

/* The temporary file gets the protection of the regular file it will replace: its owner,
 * group and mode where this process may give them (root), as a tar written over FILE in place
 * would keep them. Where it may not, the file stays the exporter's, with the owner's part of
 * the mode only (as cp -p drops what it cannot give): the old mode's group and others bits
 * were granted to the old group, not to the exporter's. A new FILE stays 0600: it holds every
 * row of the backup, system_auth's too. 0 or < 0 (said). */
static int keep_protection(struct export *x)
{
	struct stat st;
	if (stat(x->file, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	mode_t mode = st.st_mode & 07777;
	/* owner first: a chown clears the set-id bits the mode then puts back */
	bool other_owner = st.st_uid != geteuid() || st.st_gid != getegid();
	if (other_owner && fchown(x->fd, st.st_uid, st.st_gid) < 0) {
		if (errno != EPERM)
			goto fail;
		mode &= 0700;
	}
	if (fchmod(x->fd, mode) == 0)
		return 0;
fail:;
	int r = -errno;
	_cleanup_free_ char *shown = cli_escape(x->tmp);
	errorf("cannot give %s the mode and owner of the file it replaces: %s", shown ? shown : "",
	       strerror(-r));
	return r;
}

/* The output: a new temporary file beside the file (renamed to it when complete; another
 * export to the same FILE has its own), FILE itself when it is a device or a FIFO, or
 * standard output. */
static int open_output(struct export *x)
{
	if (!x->output) {
		x->fd = STDOUT_FILENO;
		return 0;
	}
	int r = open_output_special(x);
	if (r != 0)
		return r < 0 ? r : 0;
	if ((r = resolve_output(x)) < 0)
		return r;
	const char *slash = strrchr(x->file, '/');
	if (asprintf(&x->tmp, "%.*s.cassbackup-export-XXXXXX", slash ? (int)(slash - x->file + 1) : 0,
		     x->file) < 0) {
		x->tmp = NULL;
		return -ENOMEM;
	}
	x->fd = mkostemp(x->tmp, O_CLOEXEC); /* O_EXCL, mode 0600 */
	if (x->fd < 0) {
		r = -errno;
		_cleanup_free_ char *shown = cli_escape(x->tmp);
		errorf("cannot create %s: %s", shown ? shown : "", strerror(-r));
		free(x->tmp);
		x->tmp = NULL;
		return r;
	}
	return keep_protection(x);
}

/* Makes the temporary file durable and renames it to the file. */
static int commit_output(struct export *x)
{
	_cleanup_free_ char *shown = cli_escape(x->output);
	_cleanup_free_ char *dir = strdup(x->file);
	int r = fsync(x->fd) < 0 ? -errno : 0;
	if (close(x->fd) < 0 && r == 0)
		r = -errno;
	x->fd = -1;
	if (r == 0 && rename(x->tmp, x->file) < 0)
		r = -errno;
	if (r == 0 && dir)
		fsync_dir(dirname(dir));
	if (r < 0)
		errorf("cannot write %s: %s", shown ? shown : "", strerror(-r));
	if (r == 0) { /* nothing left to remove */
		free(x->tmp);
		x->tmp = NULL;
	}
	return r;
}

static int execute(struct export *x)
{
	unsigned long long size = 0;
	int r = open_output(x);
	if (r == 0 && (r = readback_new(x->s, &cancel_requested, &x->rb)) < 0)
		errorf("cannot start: %s", strerror(-r));
	r = r ?: open_archive(x);
	for (size_t i = 0; r == 0 && i < x->n; i++) {
		r = write_header(x, &x->v[i]);
		if (r == 0 && !x->v[i].dir)
			r = write_file(x, &x->v[i]);
	}
	if (r == 0 && archive_write_close(x->a) != ARCHIVE_OK)
		r = archive_fail(x, output_name(x));
	if (r == 0 && x->tmp) {
		struct stat st;
		size = fstat(x->fd, &st) == 0 ? (unsigned long long)st.st_size : 0;
		r = commit_output(x);
	}
	if (r == 0 && x->own_fd) {
		size = (unsigned long long)archive_filter_bytes(x->a, -1);
		r = close(x->fd) < 0 ? -errno : 0;
		x->own_fd = false;
		if (r < 0) {
			_cleanup_free_ char *shown = cli_escape(x->output);
			errorf("cannot write %s: %s", shown ? shown : "", strerror(-r));
		}
	}
	if (r < 0)
		return CB_EXIT_FAILED;
	char bytes[32];
	format_bytes(x->bytes, bytes, sizeof(bytes));
	_cleanup_free_ char *name = cli_escape(x->name), *out = cli_escape(output_name(x));
	if (x->output)
		fprintf(stderr, "exported backup %s to %s: %llu files, %s (%llu bytes written)\n",
			name ? name : "", out ? out : "", (unsigned long long)x->files, bytes, size);
	return CB_EXIT_OK;
}

static void export_free(struct export *x)
{
	if (x->a)
		archive_write_free(x->a); /* closes nothing: the fd is ours */
	if (x->fd >= 0 && (x->tmp || x->own_fd))
		close(x->fd);
	if (x->tmp)
		unlink(x->tmp); /* an export that did not complete leaves no file (of its own) */
	free(x->tmp);
	free(x->file);
	if (x->utf8)
		freelocale(x->utf8);
	readback_free(x->rb);
	for (size_t i = 0; i < x->n; i++)
		free(x->v[i].path);
	free(x->v);
	manifest_free(x->m);
	store_lock_release(x->lock);
	store_close(x->s);
	selection_free(&x->sel);
	strv_free(&x->ref);
}

int cmd_export(int argc, char **argv)
{
	struct export x = {.fd = -1};
	struct cli_option opts[] = {
		{.name = "node", .type = OPT_STRING, .value = &x.node, .arg = "NODE",
		 .help = "the node whose backup NAME to export, when several nodes have one (host id, "
			 "a prefix of it, node name or address)"},
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &x.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "keyspace", .type = OPT_KEYSPACE, .value = &x.sel, .arg = "KS",
		 .help = "export only this keyspace (repeatable)"},
		{.name = "table", .type = OPT_TABLE, .value = &x.sel, .arg = "KS.TABLE",
		 .help = "export only this table (repeatable)"},
		{.name = "output", .short_name = 'o', .type = OPT_STRING, .value = &x.output, .arg = "FILE",
		 .help = "write to FILE (through a temporary file beside it, renamed when complete) instead of standard output"},
		{.name = "zstd", .type = OPT_FLAG, .value = &x.zstd, .help = "compress the tar with zstd"},
		{0},
	};
	struct cli_command cmd = {
		.name = "export",
		.operands = "NAME",
		.min_operands = 1,
		.max_operands = 1,
		.description = "Writes one backup as a standalone tar in the data-dir layout\n"
			       "(<keyspace>/<table>-<id>/[.<index>/]<file>) that stock 'tar -x' restores,\n"
			       "with the snapshot's modes, owners and mtimes. Every file is checked against\n"
			       "its SHA-256 as it is written.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN) {
		selection_free(&x.sel);
		return rc;
	}
	x.name = argv[first];
	if (x.output && !strcmp(x.output, "-"))
		x.output = NULL;
	if (!x.output && isatty(STDOUT_FILENO))
		rc = cli_usage_error(&cmd, "refusing to write a tar to a terminal; use -o FILE or a pipe");
	if (rc == CLI_RUN) {
		install_cancel_handlers();
		rc = plan(&x);
	}
	if (rc == CLI_RUN)
		rc = execute(&x);
	export_free(&x);
	return rc;
}
