/* cassbackup restore: copy a backup's tables into a node's own live table directories.
 *
 * Safe to run twice, and it says what it did:
 *   - Everything is checked and planned first; if anything is wrong (a data directory that is
 *     not one, no runnable nodetool for --import/--refresh, a name in the store that is not a
 *     single path component, a table with no place or several places to go), nothing is written.
 *   - An sstable already in the target with the same bytes (under any generation) is skipped,
 *     so a second run copies nothing. One whose identifier is taken by other bytes is restored
 *     under a fresh generation (counted per target directory), all its components renamed
 *     together. A lone non-sstable file whose name is taken by other bytes is a conflict: the
 *     live file is left as it is and the run ends with status 1.
 *   - Files are created only beneath the target table directory (openat from its descriptor,
 *     O_NOFOLLOW, index directories never followed through symlinks), under temporary names,
 *     checked against the backup's SHA-256 as they are written, fsynced, and renamed into place
 *     without replacing anything, Data.db last, so Cassandra never sees a half-copied sstable.
 *     Temporary files that an earlier, killed run left behind are removed first.
 *   - manifest.json and schema.cql stay out of live directories.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backup_files.h"
#include "cli.h"
#include "exec.h"
#include "hash.h"
#include "packread.h"
#include "restore_plan.h"
#include "sstable.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)

struct restore_opts {
	const char *store, *name;
	char **data_dirs, **keyspaces, **tables, **table_dirs;
	size_t ndata_dirs, nkeyspaces, ntables, ntable_dirs;
	bool dry_run, import, refresh;
	const char *nodetool; /* --nodetool, or NULL: nodetool_argv takes the config's */
	bool have_owner;
	uid_t uid;
	gid_t gid;
};

struct plan_table {
	struct cb_table_row t;
	char *target;        /* live table directory, absolute */
	int fd;              /* target, opened O_DIRECTORY; every file is created beneath it */
	struct vlist files;  /* without manifest.json / schema.cql */
	struct unit *units;
	size_t nunits;
	uid_t uid;
	gid_t gid;
};

struct plan {
	struct plan_table *v;
	size_t n;
	bool bad;            /* a problem was printed: write nothing */
};

struct totals {
	size_t tables, files, renamed, present, conflicts, stale;
	uint64_t bytes;
};

/* Why the copy stopped; damaged when the backup itself is at fault (pack missing or corrupt). */
struct failure {
	char why[1024];
	bool damaged;
};

/* ---- planning: where each table goes ---------------------------------------------------- */

/* The live directories of ks.table in the data dirs, NUL-separated into found. */
static int find_table_dirs(const struct restore_opts *o, const char *ks, const char *table,
			   struct strbuf *found, size_t *n)
{
	*n = 0;
	int r = 0;
	for (size_t i = 0; r == 0 && i < o->ndata_dirs; i++) {
		struct strbuf kd = {0};
		r = sb_printf(&kd, "%s/%s", o->data_dirs[i], ks);
		DIR *d = r == 0 ? opendir(kd.buf) : NULL;
		struct dirent *e;
		while (r == 0 && d && (e = readdir(d))) {
			struct stat st;
			if (!plan_table_dir_matches(e->d_name, table) ||
			    fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
				continue;
			r = sb_printf(found, "%s/%s", kd.buf, e->d_name) ?: sb_append(found, "", 1);
			(*n)++;
		}
		if (d)
			closedir(d);
		sb_free(&kd);
	}
	return r;
}

/* Says why ks.table has no single place to go. */
static void report_no_target(const struct cb_table_row *t, const struct strbuf *found, size_t n)
{
	if (n == 0) {
		errorf("table %s.%s: no table directory for it in the data directories; create "
		       "the table first (e.g. cqlsh -f schema.cql), then run restore again. "
		       "Its schema.cql from the backup:", t->keyspace, t->table);
		fprintf(stderr, "%s", t->schema_cql ? t->schema_cql : "(not in the backup)\n");
		return;
	}
	struct strbuf msg = {0};
	for (size_t off = 0; off < found->len; off += strlen(found->buf + off) + 1)
		sb_printf(&msg, "%s%s", off ? ", " : "", found->buf + off);
	errorf("table %s.%s: %zu table directories (%s); was it dropped and re-created? "
	       "Choose one with --table-dir %s.%s=PATH", t->keyspace, t->table, n, msg.buf ? msg.buf : "",
	       t->keyspace, t->table);
	sb_free(&msg);
}

/* The table's live directory: --table-dir, else the one match in the data dirs. 0 with
 * *target set, 1 when there is none or several (said), -ENOMEM. */
static int choose_target(const struct restore_opts *o, const struct cb_table_row *t, char **target)
{
	*target = NULL;
	struct strbuf key = {0};
	if (sb_printf(&key, "%s.%s=", t->keyspace, t->table) < 0)
		return -ENOMEM;
	for (size_t k = 0; k < o->ntable_dirs; k++)
		if (!strncmp(o->table_dirs[k], key.buf, key.len)) {
			free(*target);
			*target = strdup(o->table_dirs[k] + key.len);
		}
	bool given = false;
	for (size_t k = 0; k < o->ntable_dirs; k++)
		given |= !strncmp(o->table_dirs[k], key.buf, key.len);
	sb_free(&key);
	if (given)
		return *target ? 0 : -ENOMEM;
	struct strbuf found = {0};
	size_t n;
	int r = find_table_dirs(o, t->keyspace, t->table, &found, &n);
	if (r == 0 && n == 1 && !(*target = strdup(found.buf)))
		r = -ENOMEM;
	if (r == 0 && n != 1) {
		report_no_target(t, &found, n);
		r = 1;
	}
	sb_free(&found);
	return r;
}

/* Opens the target table directory; nodetool runs elsewhere, so the path becomes absolute.
 * 0, or 1 when it is not a usable directory (said). */
static int open_target(const struct restore_opts *o, struct plan_table *pt)
{
	char *abs = realpath(pt->target, NULL);
	if (abs) {
		free(pt->target);
		pt->target = abs;
	}
	pt->fd = open(pt->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (pt->fd < 0 || fstat(pt->fd, &st) < 0) {
		errorf("table directory %s: %s", pt->target, errno == ENOTDIR ? "not a directory" : strerror(errno));
		return 1;
	}
	pt->uid = o->have_owner ? o->uid : st.st_uid;
	pt->gid = o->have_owner ? o->gid : st.st_gid;
	return 0;
}

/* The table's files from the catalog, snapshot metadata left out, every name checked before
 * any is used in a path. 0, 2 when a name is unusable (said), < 0 when the catalog failed. */
static int load_table_files(catalog *cat, const struct restore_opts *o, struct plan_table *pt)
{
	int r = load_files(cat, o->store, pt->t.row, &pt->files);
	if (r < 0)
		return r;
	size_t k = 0;
	for (size_t j = 0; j < pt->files.n; j++) {
		struct vf *f = &pt->files.v[j];
		if (!*f->dir && (!strcmp(f->name, "manifest.json") || !strcmp(f->name, "schema.cql"))) {
			free(f->dir);
			free(f->name);
			continue;
		}
		pt->files.v[k++] = *f;
	}
	pt->files.n = k;
	struct strbuf why = {0};
	if (plan_check_names(pt->t.keyspace, pt->t.table, &pt->files, &why) < 0) {
		errorf("cannot restore backup %s: %s in the store's catalog (damaged or tampered with); "
		       "nothing was restored", o->name, why.buf ? why.buf : "a name");
		r = 2;
	}
	sb_free(&why);
	return r;
}

/* ---- planning: what happens to each sstable --------------------------------------------- */

/* A directory stream of its own (own offset) over the directory dfd, or NULL. */
static DIR *dir_stream(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	return d;
}

static int file_sha(int dfd, const char *name, uint64_t size, unsigned char sha[32])
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = sha256_fd(fd, size, sha, &cancel_requested, NULL, NULL);
	close(fd);
	return r;
}

/* Does directory dfd hold every file of u, with the backup's bytes, under prefix (NULL: the
 * unit's own names)? */
static bool unit_same_as(int dfd, const struct plan_table *pt, const struct unit *u, const char *prefix)
{
	bool same = true;
	struct strbuf name = {0};
	for (size_t k = u->first; same && k < u->first + u->count; k++) {
		const struct vf *f = &pt->files.v[k];
		name.len = 0;
		if (prefix)
			sb_printf(&name, "%s%s", prefix, f->name + sstable_prefix_len(f->name));
		else
			sb_puts(&name, f->name);
		struct stat st;
		unsigned char sha[32];
		same = name.buf && fstatat(dfd, name.buf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		       (uint64_t)st.st_size == f->size && file_sha(dfd, name.buf, f->size, sha) == 0 &&
		       !memcmp(sha, f->want, 32);
	}
	sb_free(&name);
	return same;
}

/* Is any of u's names in use in directory dfd? */
static bool unit_taken(int dfd, const struct plan_table *pt, const struct unit *u)
{
	for (size_t k = u->first; k < u->first + u->count; k++) {
		struct stat st;
		if (fstatat(dfd, pt->files.v[k].name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
			return true;
	}
	return false;
}

/* Another identifier in dfd under which the same sstable is (restored before under a new
 * generation), malloc'd, or NULL. */
static char *unit_found_elsewhere(int dfd, const struct plan_table *pt, const struct unit *u)
{
	const char *own = pt->files.v[u->first].name;
	size_t pl = sstable_prefix_len(own);
	DIR *d = dir_stream(dfd);
	if (!d)
		return NULL;
	char *found = NULL;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		size_t el = sstable_prefix_len(e->d_name);
		if (!el || strcmp(e->d_name + el, "Data.db") || (el == pl && !strncmp(e->d_name, own, pl)))
			continue;
		char *other = strndup(e->d_name, el);
		if (other && unit_same_as(dfd, pt, u, other))
			found = other;
		else
			free(other);
	}
	closedir(d);
	return found;
}

/* The largest numeric generation in directory dfd (0 if none). */
static uint64_t dir_max_generation(int dfd)
{
	uint64_t m = 0;
	DIR *d = dir_stream(dfd);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		uint64_t g = sstable_numeric_generation(e->d_name);
		if (g > m)
			m = g;
	}
	if (d)
		closedir(d);
	return m;
}

struct in_use_ctx {
	const struct plan_table *pt;
	int dfd;
};

/* gen_alloc's question: the largest generation used in dir, in the target or in the backup. */
static uint64_t generation_in_use(void *ctx, const char *dir)
{
	const struct in_use_ctx *c = ctx;
	uint64_t a = dir_max_generation(c->dfd), b = plan_max_generation(&c->pt->files, dir);
	return a > b ? a : b;
}

/* Opens the target's directory for unit files in dir ("" or ".<index>") without following a
 * symlink: the descriptor, -ENOENT when it does not exist yet (everything is copied), or
 * another -errno (said). */
static int open_unit_dir(const struct plan_table *pt, const char *dir)
{
	int fd = *dir ? openat(pt->fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
		      : fcntl(pt->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 && errno != ENOENT)
		errorf("%s/%s: %s; restore writes only into real directories beneath the table directory",
		       pt->target, dir, errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory" : strerror(errno));
	return fd < 0 ? -errno : fd;
}

/* Decides one unit, whose directory is dfd (-1: it does not exist). */
static int plan_unit(struct plan_table *pt, struct unit *u, int dfd, struct gen_alloc *ga)
{
	const struct vf *f0 = &pt->files.v[u->first];
	bool sst = sstable_prefix_len(f0->name) > 0;
	bool taken = dfd >= 0 && unit_taken(dfd, pt, u);
	bool here = taken && unit_same_as(dfd, pt, u, NULL);
	if (sst && dfd >= 0 && !here)
		u->present_as = unit_found_elsewhere(dfd, pt, u);
	u->action = plan_decide(sst, taken, here, u->present_as != NULL);
	if (u->action != U_RENAME)
		return 0;
	struct in_use_ctx c = {pt, dfd};
	return gen_alloc_next(ga, u->dir, generation_in_use, &c, &u->new_gen);
}

/* Groups the table's files into units and decides each. 0, 1 when a target directory is
 * unusable (said), -errno. */
static int plan_units(struct plan_table *pt)
{
	int r = plan_group_units(&pt->files, &pt->units, &pt->nunits);
	struct gen_alloc ga = {0};
	int dfd = -1;
	const char *open_dir = NULL;
	for (size_t i = 0; r == 0 && i < pt->nunits; i++) {
		struct unit *u = &pt->units[i];
		if (!open_dir || strcmp(open_dir, u->dir)) {
			if (dfd >= 0)
				close(dfd);
			dfd = open_unit_dir(pt, u->dir);
			open_dir = u->dir;
			if (dfd < 0 && dfd != -ENOENT) {
				r = 1;
				break;
			}
		}
		r = plan_unit(pt, u, dfd, &ga);
	}
	if (dfd >= 0)
		close(dfd);
	gen_alloc_free(&ga);
	return r;
}

/* Plans one selected table into pt. 0; 1 on a problem that was said, 2 on one that stops
 * everything at once (said); < 0 on a failure. */
static int plan_table(catalog *cat, const struct restore_opts *o, struct plan_table *pt)
{
	int r = load_table_files(cat, o, pt);
	if (r == 0)
		r = choose_target(o, &pt->t, &pt->target);
	if (r == 0)
		r = open_target(o, pt);
	if (r == 0)
		r = plan_units(pt);
	return r;
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; p->v && i < p->n; i++) {
		struct plan_table *pt = &p->v[i];
		free(pt->target);
		if (pt->fd >= 0)
			close(pt->fd);
		plan_units_free(pt->units, pt->nunits);
		vlist_free(&pt->files);
	}
	free(p->v);
	*p = (struct plan){0};
}

/* Plans every selected table. 0 (p->bad when a problem was said), or < 0 after saying why. */
static int make_plan(catalog *cat, const struct restore_opts *o, const struct tables *ts, struct plan *p)
{
	*p = (struct plan){.v = calloc(ts->n + 1, sizeof(*p->v))};
	if (!p->v) {
		errorf("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < ts->n; i++) {
		const struct cb_table_row *t = &ts->v[i];
		if (!table_selected(o->keyspaces, o->nkeyspaces, o->tables, o->ntables, t->keyspace, t->table))
			continue;
		struct plan_table *pt = &p->v[p->n++];
		*pt = (struct plan_table){.t = *t, .fd = -1};
		int r = plan_table(cat, o, pt);
		if (r < 0) {
			if (r == -ENOMEM)
				errorf("out of memory");
			return r;
		}
		if (r == 2)
			return -EINVAL; /* a name from the store that cannot be used: said, stop at once */
		p->bad |= r > 0; /* go on: tell about every table that has a problem */
	}
	if (p->n == 0 && o->nkeyspaces + o->ntables) {
		errorf("%s %s: not in backup %s", o->nkeyspaces ? "keyspace" : "table",
		       o->nkeyspaces ? o->keyspaces[0] : o->tables[0], o->name);
		p->bad = true;
	}
	return 0;
}

/* ---- the plan as text --------------------------------------------------------------------- */

static int final_name(const struct unit *u, const struct vf *f, struct strbuf *out)
{
	out->len = 0;
	if (u->action == U_RENAME)
		return sstable_with_generation(f->name, u->new_gen, out);
	return sb_puts(out, f->name);
}

static void print_unit(const struct plan_table *pt, const struct unit *u, struct strbuf *fin)
{
	const struct vf *f0 = &pt->files.v[u->first];
	size_t pl = sstable_prefix_len(f0->name);
	char what[600];
	snprintf(what, sizeof(what), "%s%s%.*s", u->dir, *u->dir ? "/" : "",
		 pl ? (int)pl - 1 : (int)strlen(f0->name), f0->name);
	switch (u->action) {
	case U_PRESENT:
		printf("  skip    %s: already present%s%.*s\n", what, u->present_as ? " as " : "",
		       u->present_as ? (int)strlen(u->present_as) - 1 : 0, u->present_as ? u->present_as : "");
		break;
	case U_CONFLICT:
		printf("  keep    %s: CONFLICT, the target's file of that name holds other bytes; "
		       "left as it is, not restored\n", what);
		break;
	case U_RENAME:
		final_name(u, f0, fin);
		printf("  rename  %s -> %.*s (identifier taken in the target)\n", what,
		       (int)sstable_prefix_len(fin->buf) - 1, fin->buf);
		break;
	case U_COPY:
		printf("  copy    %s (%zu files)\n", what, u->count);
		break;
	}
}

static void print_plan(const struct plan *p)
{
	struct strbuf fin = {0};
	for (size_t i = 0; i < p->n; i++) {
		const struct plan_table *pt = &p->v[i];
		printf("%s.%s -> %s\n", pt->t.keyspace, pt->t.table, pt->target);
		for (size_t u = 0; u < pt->nunits; u++)
			print_unit(pt, &pt->units[u], &fin);
	}
	sb_free(&fin);
}

/* ---- execution ---------------------------------------------------------------------------- */

/* Removes the temporary files that runs of restore no longer alive left in dfd (killed
 * mid-copy); the count goes to *removed. */
static void clean_stale_temps(int dfd, const char *path, size_t *removed)
{
	DIR *d = dir_stream(dfd);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t pid;
		if (!plan_restore_temp_pid(e->d_name, &pid) || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0)
			(*removed)++;
		else
			errorf("cannot remove %s/%s, left by an interrupted restore: %s, ignoring", path,
			       e->d_name, strerror(errno));
	}
	closedir(d);
}

/* The target directory for files in dir, made (owned like the table directory) if needed,
 * opened without following symlinks. The descriptor or -errno (why is set). */
static int prepare_dir(const struct plan_table *pt, const char *dir, struct failure *fail)
{
	if (!*dir)
		return fcntl(pt->fd, F_DUPFD_CLOEXEC, 0);
	if (mkdirat(pt->fd, dir, 0755) == 0 && fchownat(pt->fd, dir, pt->uid, pt->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;
		snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", pt->target, dir, strerror(e));
		return -e;
	}
	int fd = openat(pt->fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", pt->target, dir,
			 e == ELOOP ? "a symlink, not followed" : strerror(e));
		return -e;
	}
	return fd;
}

/* Reads f's bytes from the packs into fd, checking its SHA-256 on the way. */
static int copy_bytes(pack_cache *pc, const struct vf *f, int fd, const char *path, struct progress *prog,
		      struct failure *fail)
{
	_cleanup_free_ char *buf = malloc(CHUNK);
	sha256_ctx *h = NULL;
	int r = buf ? sha256_new(&h) : -ENOMEM;
	for (uint64_t off = 0; r == 0 && off < f->size;) {
		size_t n = f->size - off < CHUNK ? (size_t)(f->size - off) : CHUNK;
		if (cancel_requested)
			r = -ECANCELED;
		else if ((r = pack_cache_read(pc, f->loc.pack_id, f->loc.pack_path, f->loc.offset + off, buf, n)) < 0) {
			snprintf(fail->why, sizeof(fail->why), "%s%s%s: cannot read from pack %s: %s", f->dir,
				 *f->dir ? "/" : "", f->name, f->loc.pack_path,
				 pack_cache_strerror(r));
			fail->damaged = r == -ENOENT || r == -EIO || r == -EBADMSG || r == -ERANGE;
		} else if ((r = sha256_update(h, buf, n)) == 0 && (r = write_full(fd, buf, n)) < 0) {
			snprintf(fail->why, sizeof(fail->why), "%s: %s", path, strerror(-r));
		} else {
			off += n;
			progress_add(prog, n);
		}
	}
	unsigned char sha[32];
	if (r == 0 && (r = sha256_final(h, sha)) == 0 && memcmp(sha, f->want, 32) != 0) {
		snprintf(fail->why, sizeof(fail->why), "%s%s%s: bytes read from pack %s differ from the "
			 "backup's SHA-256", f->dir, *f->dir ? "/" : "", f->name, f->loc.pack_path);
		fail->damaged = true;
		r = -EIO;
	}
	sha256_free(h);
	return r;
}

/* Writes f as tmp in dfd: bytes checked, mode, owner, mtime, fsync. */
static int copy_out(pack_cache *pc, const struct vf *f, int dfd, const char *tmp, const char *path,
		    const struct plan_table *pt, struct progress *prog, struct failure *fail)
{
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(fail->why, sizeof(fail->why), "%s: %s", path, strerror(e));
		return -e;
	}
	int r = copy_bytes(pc, f, fd, path, prog, fail);
	struct timespec ts[2] = {{.tv_sec = f->mtime_ns / 1000000000, .tv_nsec = f->mtime_ns % 1000000000},
				 {.tv_sec = f->mtime_ns / 1000000000, .tv_nsec = f->mtime_ns % 1000000000}};
	if (r == 0 && (fchmod(fd, f->mode & 07777) < 0 || fchown(fd, pt->uid, pt->gid) < 0 ||
		       futimens(fd, ts) < 0 || fsync(fd) < 0)) {
		r = -errno;
		snprintf(fail->why, sizeof(fail->why), "%s: %s", path, strerror(-r));
	}
	close(fd);
	return r;
}

/* Renames tmp to fin in dfd unless fin exists: a live file is never replaced. */
static int rename_noreplace(int dfd, const char *tmp, const char *fin)
{
	if (renameat2(dfd, tmp, dfd, fin, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(dfd, tmp, dfd, fin, 0) < 0) /* file systems without RENAME_NOREPLACE */
		return -errno;
	unlinkat(dfd, tmp, 0);
	return 0;
}

/* The temporary and final names of u's files. */
struct unit_names {
	struct strv tmp, fin;
};

static int unit_names(const struct unit *u, const struct plan_table *pt, struct unit_names *n)
{
	struct strbuf fin = {0}, tmp = {0};
	int r = 0;
	for (size_t k = 0; r == 0 && k < u->count; k++) {
		tmp.len = 0;
		r = final_name(u, &pt->files.v[u->first + k], &fin) ?:
		    sb_printf(&tmp, RESTORE_TEMP_PREFIX "%d-%s", (int)getpid(), fin.buf) ?:
		    strv_push(&n->fin, fin.buf) ?: strv_push(&n->tmp, tmp.buf);
	}
	sb_free(&fin);
	sb_free(&tmp);
	return r;
}

/* Puts u's temporary files in place, Data.db last: Cassandra finds an sstable by its Data.db. */
static int place_unit(int dfd, const char *dirpath, struct unit_names *n, struct failure *fail)
{
	int r = 0;
	for (int pass = 0; r == 0 && pass < 2; pass++)
		for (size_t k = 0; r == 0 && k < n->fin.n; k++) {
			bool data = strstr(n->fin.v[k], "-Data.db") != NULL;
			if (data != (pass == 1))
				continue;
			if ((r = rename_noreplace(dfd, n->tmp.v[k], n->fin.v[k])) < 0) {
				snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", dirpath, n->fin.v[k],
					 r == -EEXIST ? "appeared in the target during the restore; left as it is"
						      : strerror(-r));
				break;
			}
			n->tmp.v[k][0] = '\0'; /* placed: nothing to clean up */
		}
	if (r == 0 && fsync(dfd) < 0) {
		r = -errno;
		snprintf(fail->why, sizeof(fail->why), "%s: %s", dirpath, strerror(-r));
	}
	return r;
}

/* Restores one unit into dfd: temp files, then renames with Data.db last; on failure no
 * temporary file stays. */
static int restore_unit(pack_cache *pc, const struct plan_table *pt, const struct unit *u, int dfd,
			const char *dirpath, struct progress *prog, struct failure *fail)
{
	struct unit_names n = {0};
	struct strbuf path = {0};
	int r = unit_names(u, pt, &n);
	size_t written = 0;
	for (size_t k = 0; r == 0 && k < u->count; k++) {
		path.len = 0;
		r = sb_printf(&path, "%s/%s", dirpath, n.tmp.v[k]);
		if (r == 0)
			r = copy_out(pc, &pt->files.v[u->first + k], dfd, n.tmp.v[k], path.buf, pt, prog, fail);
		written = k + 1;
		progress_file_done(prog);
	}
	if (r == 0)
		r = place_unit(dfd, dirpath, &n, fail);
	for (size_t k = 0; r < 0 && k < written && k < n.tmp.n; k++)
		if (n.tmp.v[k][0])
			unlinkat(dfd, n.tmp.v[k], 0);
	if (r == -ENOMEM && !fail->why[0])
		snprintf(fail->why, sizeof(fail->why), "out of memory");
	strv_free(&n.tmp);
	strv_free(&n.fin);
	sb_free(&path);
	return r;
}

static void count_unit(const struct plan_table *pt, const struct unit *u, struct totals *tot)
{
	tot->present += u->action == U_PRESENT;
	tot->conflicts += u->action == U_CONFLICT;
	if (u->action != U_COPY && u->action != U_RENAME)
		return;
	tot->files += u->count;
	for (size_t k = 0; k < u->count; k++)
		tot->bytes += pt->files.v[u->first + k].size;
	tot->renamed += u->action == U_RENAME;
}

/* Restores the units of one table whose directory is dir. */
static int restore_dir(pack_cache *pc, const struct plan_table *pt, size_t first, size_t end,
		       struct progress *prog, struct totals *tot, struct failure *fail)
{
	const char *dir = pt->units[first].dir;
	bool work = false;
	for (size_t u = first; u < end; u++)
		work |= pt->units[u].action == U_COPY || pt->units[u].action == U_RENAME;
	struct strbuf path = {0};
	int r = sb_printf(&path, "%s%s%s", pt->target, *dir ? "/" : "", dir);
	int dfd = r == 0 && work ? prepare_dir(pt, dir, fail) : -1;
	if (r == 0 && work && dfd < 0)
		r = dfd;
	for (size_t u = first; r == 0 && u < end; u++) {
		const struct unit *un = &pt->units[u];
		if (un->action == U_COPY || un->action == U_RENAME)
			r = restore_unit(pc, pt, un, dfd, path.buf, prog, fail);
		if (r == 0)
			count_unit(pt, un, tot);
	}
	if (dfd >= 0)
		close(dfd);
	if (r < 0 && r != -ECANCELED)
		errorf("cannot restore %s.%s into %s: %s", pt->t.keyspace, pt->t.table, path.buf,
		       fail->why[0] ? fail->why : strerror(-r));
	sb_free(&path);
	return r;
}

/* Removes stale temporary files from the table's index directories. */
static void clean_index_dirs(const struct plan_table *pt, struct totals *tot)
{
	DIR *d = dir_stream(pt->fd);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] != '.' || !name_is_component(e->d_name) || e->d_name[1] == '\0')
			continue;
		int sfd = openat(pt->fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd >= 0) {
			struct strbuf p = {0};
			sb_printf(&p, "%s/%s", pt->target, e->d_name);
			clean_stale_temps(sfd, p.buf ? p.buf : e->d_name, &tot->stale);
			sb_free(&p);
			close(sfd);
		}
	}
	if (d)
		closedir(d);
}

/* Restores one table, directory by directory (units are sorted by directory). */
static int restore_table(pack_cache *pc, const struct plan_table *pt, struct progress *prog,
			 struct totals *tot, struct failure *fail)
{
	clean_stale_temps(pt->fd, pt->target, &tot->stale);
	clean_index_dirs(pt, tot);
	int r = 0;
	for (size_t u = 0; r == 0 && u < pt->nunits;) {
		size_t end = u + 1;
		while (end < pt->nunits && !strcmp(pt->units[end].dir, pt->units[u].dir))
			end++;
		r = restore_dir(pc, pt, u, end, prog, tot, fail);
		u = end;
	}
	return r;
}

static int execute_plan(pack_cache *pc, const struct plan *p, struct totals *tot, struct failure *fail)
{
	install_cancel_handlers();
	uint64_t total = 0;
	size_t nfiles = 0;
	for (size_t i = 0; i < p->n; i++)
		for (size_t u = 0; u < p->v[i].nunits; u++)
			if (p->v[i].units[u].action == U_COPY || p->v[i].units[u].action == U_RENAME)
				for (size_t k = 0; k < p->v[i].units[u].count; k++, nfiles++)
					total += p->v[i].files.v[p->v[i].units[u].first + k].size;
	struct progress prog;
	progress_init(&prog, "restoring", total, nfiles);
	int r = 0;
	for (size_t i = 0; r == 0 && i < p->n; i++)
		if ((r = restore_table(pc, &p->v[i], &prog, tot, fail)) == 0)
			tot->tables++;
	progress_end(&prog);
	return r;
}

/* ---- report and nodetool ------------------------------------------------------------------ */

/* Exit status after a copy that stopped, with one line on what to do. */
static int report_failure(const struct restore_opts *o, const struct totals *tot, const struct failure *fail)
{
	char size[32];
	format_bytes(tot->bytes, size, sizeof(size));
	if (cancel_requested) {
		errorf("interrupted by signal %d after %zu files (%s); every sstable is either wholly in "
		       "place or absent; run the same command again to finish", (int)cancel_requested,
		       tot->files, size);
		return 128 + (int)cancel_requested;
	}
	if (fail->damaged)
		errorf("backup %s is damaged (%s); restored %zu files (%s) before stopping, every sstable "
		       "wholly in place or absent; running restore again will stop the same way: check "
		       "the backup with: cassbackup verify --store %s %s", o->name, fail->why, tot->files,
		       size, o->store, o->name);
	else
		errorf("restored %zu files (%s) before stopping; every sstable is either wholly in place "
		       "or absent; run the same command again to finish", tot->files, size);
	return 1;
}

/* argv of `nodetool [-u U -pwf F] import|refresh KS TABLE [DIR]`. */
static int nodetool_cmd(const struct restore_opts *o, const struct plan_table *pt, struct strv *a)
{
	return nodetool_argv(a, o->nodetool) ?: strv_push(a, o->refresh ? "refresh" : "import") ?:
	       strv_push(a, pt->t.keyspace) ?: strv_push(a, pt->t.table) ?:
	       (o->refresh ? 0 : strv_push(a, pt->target));
}

/* Runs nodetool import/refresh for each table, or prints the command. 0, or 1 if one failed. */
static int tell_cassandra(const struct restore_opts *o, const struct plan *p)
{
	int rc = 0;
	for (size_t i = 0; i < p->n; i++) {
		struct strv a = {0};
		char cmd[4096];
		if (nodetool_cmd(o, &p->v[i], &a) < 0) {
			errorf("out of memory");
			strv_free(&a);
			return 1;
		}
		format_command(a.v, cmd, sizeof(cmd));
		if (!o->import && !o->refresh) {
			printf("next: %s\n", cmd);
		} else {
			printf("running: %s\n", cmd);
			int s = exec_run(a.v, NULL);
			if (s != 0) {
				errorf("%s exited with status %d; the files are in place, run it again once "
				       "Cassandra is reachable", cmd, s);
				rc = 1;
			}
		}
		strv_free(&a);
	}
	return rc;
}

static void report_done(const struct restore_opts *o, const struct totals *tot)
{
	char size[32];
	format_bytes(tot->bytes, size, sizeof(size));
	if (tot->stale)
		printf("removed %zu temporary files left by an interrupted restore\n", tot->stale);
	printf("restored %s: %zu tables, %zu files, %s; %zu sstables under new generations, "
	       "%zu already present\n", o->name, tot->tables, tot->files, size, tot->renamed, tot->present);
	if (tot->conflicts)
		errorf("%zu files not restored: the target holds other files under their names "
		       "(CONFLICT lines of --dry-run); those live files were left as they are",
		       tot->conflicts);
}

/* ---- options ------------------------------------------------------------------------------ */

static void restore_usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup restore --store DIR NAME --data-dir DIR [--data-dir DIR ...]\n"
		"         [--keyspace KS ...] [--table KS.TABLE ...] [--table-dir KS.TABLE=PATH ...]\n"
		"         [--dry-run] [--owner USER[:GROUP]] [--import | --refresh] [--nodetool PATH]\n"
		"Copies the backup's tables into the live <table>-<id> directories of this node.\n"
		"Owner defaults to the owner of each target table directory. Without --import or\n"
		"--refresh it prints the nodetool command to run next.\n");
}

static int parse_id(const char *s, bool group, unsigned *id)
{
	if (group) {
		struct group *gr = getgrnam(s);
		if (gr) {
			*id = gr->gr_gid;
			return 0;
		}
	} else {
		struct passwd *pw = getpwnam(s);
		if (pw) {
			*id = pw->pw_uid;
			return 1; /* a user name: its group too */
		}
	}
	char *end;
	long n = strtol(s, &end, 10);
	if (!*s || *end || n < 0 || n > (long)UINT32_MAX - 1)
		return -EINVAL;
	*id = (unsigned)n;
	return 0;
}

static int parse_owner(struct restore_opts *o, const char *spec)
{
	_cleanup_free_ char *s = strdup(spec);
	if (!s) {
		errorf("out of memory");
		return -ENOMEM;
	}
	char *colon = strchr(s, ':');
	if (colon)
		*colon++ = '\0';
	unsigned uid, gid;
	int r = parse_id(s, false, &uid);
	if (r < 0) {
		errorf("--owner %s: no such user", spec);
		return r;
	}
	struct passwd *pw = r == 1 ? getpwnam(s) : NULL;
	o->uid = uid;
	o->gid = pw ? pw->pw_gid : uid;
	if (colon && *colon) {
		if (parse_id(colon, true, &gid) < 0) {
			errorf("--owner %s: no such group", spec);
			return -EINVAL;
		}
		o->gid = gid;
	}
	o->have_owner = true;
	return 0;
}

/* Parses argv into o: -1 to go on, else the exit status (usage said). */
static int parse_args(int argc, char **argv, struct restore_opts *o)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},      {"data-dir", required_argument, NULL, 'd'},
		{"keyspace", required_argument, NULL, 'k'},   {"table", required_argument, NULL, 'T'},
		{"table-dir", required_argument, NULL, 'D'},  {"dry-run", no_argument, NULL, 'n'},
		{"owner", required_argument, NULL, 'o'},      {"import", no_argument, NULL, 'I'},
		{"refresh", no_argument, NULL, 'R'},          {"nodetool", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},             {0},
	};
	const char *owner = NULL;
	int c, r = 0;
	while (r == 0 && (c = getopt_long(argc, argv, "s:d:k:T:nh", opts, NULL)) != -1) {
		switch (c) {
		case 's': o->store = optarg; break;
		case 'd': r = ptrv_push(&o->data_dirs, &o->ndata_dirs, optarg); break;
		case 'k': r = ptrv_push(&o->keyspaces, &o->nkeyspaces, optarg); break;
		case 'T': r = ptrv_push(&o->tables, &o->ntables, optarg); break;
		case 'D': r = ptrv_push(&o->table_dirs, &o->ntable_dirs, optarg); break;
		case 'n': o->dry_run = true; break;
		case 'o': owner = optarg; break;
		case 'I': o->import = true; break;
		case 'R': o->refresh = true; break;
		case 'N': o->nodetool = optarg; break;
		case 'h': restore_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (r < 0) {
		errorf("out of memory");
		return 1;
	}
	if (!o->store)
		o->store = config_get("store");
	if (!o->ndata_dirs)
		config_get_all("data_dir", &o->data_dirs, &o->ndata_dirs);
	if (optind + 1 != argc || !o->store || !o->ndata_dirs || (o->import && o->refresh)) {
		restore_usage(stderr);
		return 2;
	}
	o->name = argv[optind];
	if (owner && parse_owner(o, owner) < 0)
		return 2;
	for (size_t i = 0; i < o->ntable_dirs; i++) {
		char *eq = strchr(o->table_dirs[i], '='), *dot = strchr(o->table_dirs[i], '.');
		if (!eq || !dot || dot > eq) {
			errorf("--table-dir %s: expected KEYSPACE.TABLE=PATH", o->table_dirs[i]);
			return 2;
		}
	}
	return -1;
}

/* What must hold before anything is read or written: every --data-dir is a Cassandra data
 * directory, and nodetool can be run when it will be. 0 or the exit status (said). */
static int check_environment(const struct restore_opts *o)
{
	for (size_t i = 0; i < o->ndata_dirs; i++) {
		struct strbuf why = {0};
		int r = plan_check_data_dir(o->data_dirs[i], &why);
		if (r < 0)
			errorf("--data-dir %s: %s; nothing was restored", o->data_dirs[i], why.buf ? why.buf : strerror(-r));
		sb_free(&why);
		if (r < 0)
			return 2;
	}
	if (!o->import && !o->refresh)
		return 0;
	struct strv a = {0};
	char path[4096];
	int r = nodetool_argv(&a, o->nodetool);
	if (r == 0 && (r = exec_find(a.v[0], path, sizeof(path))) < 0)
		errorf("cannot run %s for --%s: %s; nothing was restored", a.v[0], o->import ? "import" : "refresh",
		       r == -ENOENT ? "no such program (give its path with --nodetool or nodetool = in the config)"
				    : "not an executable file");
	else if (r < 0)
		errorf("out of memory");
	strv_free(&a);
	return r < 0 ? 2 : 0;
}

/* Plans, then copies (or prints the plan), then tells Cassandra. The exit status. */
static int restore_backup(const struct restore_opts *o)
{
	catalog *cat = NULL;
	pack_cache *pc = NULL;
	struct tables ts = {0};
	struct plan p = {0};
	struct totals tot = {0};
	struct failure fail = {.damaged = false};
	int rc = 1;
	if (open_store(o->store, CATALOG_READONLY, &cat) < 0)
		goto out;
	if (pack_cache_new(&pc, o->store, 8u << 20) < 0) {
		errorf("cannot open store %s: out of memory", o->store);
		goto out;
	}
	if (load_tables(cat, o->store, o->name, &ts) < 0) {
		ts = (struct tables){0}; /* load_tables freed it */
		goto out;
	}
	if (make_plan(cat, o, &ts, &p) < 0)
		goto out;
	if (p.bad) {
		errorf("nothing was restored");
		goto out;
	}
	if (o->dry_run) {
		print_plan(&p);
		printf("dry run: nothing was written\n");
		rc = 0;
		goto out;
	}
	if (execute_plan(pc, &p, &tot, &fail) < 0) {
		rc = report_failure(o, &tot, &fail);
		goto out;
	}
	report_done(o, &tot);
	rc = tell_cassandra(o, &p) || tot.conflicts ? 1 : 0;
out:
	plan_free(&p);
	tables_free(&ts);
	pack_cache_free(pc);
	catalog_close(cat);
	return rc;
}

int cmd_restore(int argc, char **argv)
{
	struct restore_opts o = {0};
	int rc = parse_args(argc, argv, &o);
	if (rc < 0)
		rc = check_environment(&o);
	if (rc == 0 && o.name)
		rc = restore_backup(&o);
	free(o.data_dirs);
	free(o.keyspaces);
	free(o.tables);
	free(o.table_dirs);
	return rc;
}
