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
 *     checked against the backup's SHA-256 as they are written (catalog/readback.h),
 *     fsynced, and renamed into place without replacing anything, Data.db last, so Cassandra
 *     never sees a half-copied sstable.
 *     Temporary files that an earlier, killed run left behind are removed first.
 *   - manifest.json and schema.cql stay out of live directories.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backup_files.h"
#include "cli.h"
#include "cluster.h"
#include "exec.h"
#include "hash.h"
#include "packread.h"
#include "pitr.h"
#include "readback.h"
#include "restore_plan.h"
#include "schema_ddl.h"
#include "sstable.h"
#include "store.h"
#include "util.h"
#include "whole_node.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct restore_opts {
	const char *store, *name, *owner, *node;
	const char *from_node; /* --from-node: another node's backup, on purpose */
	struct strv ref;      /* the one node backup of name restored (cluster_pick) */
	struct strv data_dirs, table_dirs;
	struct selection sel;
	bool dry_run, import, refresh, json;
	bool whole_node, set_tokens; /* --whole-node [--set-tokens] */
	bool point_in_time;          /* the tables of a --point-in-time restore: Cassandra loads
				      * them at the start that replays, so no nodetool next */
	const char *cassandra_conf;  /* --cassandra-conf: where --set-tokens writes */
	const char *nodetool; /* --nodetool or the config's nodetool; NULL: "nodetool" */
	bool create_schema;   /* --create-schema: through cqlsh, before anything is copied */
	struct cqlsh_conf cqlsh;
	struct strv cqlsh_options;
	struct store *st;     /* the store, once opened */
	bool have_owner;
	uid_t uid;
	gid_t gid;
};

/* What happened to one table (also what --dry-run would do). */
struct totals {
	size_t tables, files, renamed, present, conflicts, left_out, stale, stale_stages;
	uint64_t bytes;
};

struct plan_table {
	struct cb_table_row t;
	char *target;        /* live table directory, absolute */
	struct strv others;  /* the table's directories in the other data directories (JBOD):
			      * an sstable name taken there is taken */
	int fd;              /* target, opened O_DIRECTORY; every file is created beneath it;
			      * -1 with --whole-node until execute_plan makes the directory */
	struct vlist files;  /* without manifest.json / schema.cql */
	struct unit *units;
	size_t nunits;
	uid_t uid;
	gid_t gid;
	struct totals tot;   /* this table's share */
	char *stage_root;    /* --import: <data dir>/.cassbackup-import-<pid>, removed afterwards */
	char *stage;         /* --import: <stage_root>/<ks>/<table>, what nodetool import is given */
	struct strv command; /* the nodetool command run or to run */
	int nodetool_status; /* its exit status; -1: not run */
};

struct plan {
	struct plan_table *v;
	size_t n;
	size_t system_left;  /* tables of system keyspaces not taken (selection_takes) */
	bool bad;            /* a problem was printed: write nothing */
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
	for (size_t i = 0; r == 0 && i < o->data_dirs.n; i++) {
		struct strbuf kd = {0};
		r = sb_printf(&kd, "%s/%s", o->data_dirs.v[i], ks);
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

/* The last component of path, trailing slashes dropped, into out ("" when it has none or it
 * does not fit): the name a table's directory has in its data directory. */
static void table_dir_name(const char *path, char *out, size_t outlen)
{
	size_t end = strlen(path);
	while (end > 1 && path[end - 1] == '/')
		end--;
	size_t start = end;
	while (start > 0 && path[start - 1] != '/')
		start--;
	if (end - start >= outlen)
		end = start;
	snprintf(out, outlen, "%.*s", (int)(end - start), path + start);
}

/* Are paths a and b one directory (the same inode)? */
static bool same_directory(const char *a, const char *b)
{
	struct stat x, y;
	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Do the n directories in found share one name (<table>-<id>)? Cassandra makes a table's
 * directory in every data directory (JBOD), under the same id; a table dropped and re-created
 * has directories of two ids. */
static bool one_table_id(const struct strbuf *found, size_t n)
{
	if (n == 0 || !found->buf)
		return false;
	const char *first = strrchr(found->buf, '/');
	size_t off = 0;
	for (size_t i = 0; i < n; i++, off += strlen(found->buf + off) + 1) {
		const char *name = strrchr(found->buf + off, '/');
		if (!first || !name || strcmp(name, first) != 0)
			return false;
	}
	return true;
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

/* --whole-node: the table's directory as Cassandra names it (<table>-<id>, the id system_schema
 * gives it) in the data directory that holds it already (an interrupted run), else in the
 * first. 0 or -ENOMEM. */
static int whole_node_target(const struct restore_opts *o, const struct cb_table_row *t, char **target)
{
	struct strbuf dir = {0}, path = {0};
	int r = whole_node_table_dir(t->table, t->table_id, &dir);
	for (size_t i = 0; r == 0 && i < o->data_dirs.n; i++) {
		path.len = 0;
		r = sb_printf(&path, "%s/%s/%s", o->data_dirs.v[i], t->keyspace, dir.buf);
		if (r == 0 && access(path.buf, F_OK) == 0)
			break;
		if (i + 1 == o->data_dirs.n) { /* in none: the first data directory */
			path.len = 0;
			r = sb_printf(&path, "%s/%s/%s", o->data_dirs.v[0], t->keyspace, dir.buf);
		}
	}
	if (r == 0)
		*target = path.buf, path.buf = NULL;
	sb_free(&dir);
	sb_free(&path);
	return r;
}

/* The table's live directory: --table-dir, else the one match in the data dirs, or of a table
 * in several data directories under one id, the one in the first data directory given
 * (Cassandra loads an sstable from any of them). 0 with *target set, 1 when there is none, or
 * several of different ids (said), -ENOMEM. */
static int choose_target(const struct restore_opts *o, const struct cb_table_row *t, char **target,
			 struct strv *others)
{
	*target = NULL;
	if (o->whole_node)
		return whole_node_target(o, t, target);
	struct strbuf key = {0};
	if (sb_printf(&key, "%s.%s=", t->keyspace, t->table) < 0)
		return -ENOMEM;
	for (size_t k = 0; k < o->table_dirs.n; k++)
		if (!strncmp(o->table_dirs.v[k], key.buf, key.len)) {
			free(*target);
			*target = strdup(o->table_dirs.v[k] + key.len);
		}
	bool given = false;
	for (size_t k = 0; k < o->table_dirs.n; k++)
		given |= !strncmp(o->table_dirs.v[k], key.buf, key.len);
	sb_free(&key);
	if (given && !*target)
		return -ENOMEM;
	struct strbuf found = {0};
	size_t n;
	int r = find_table_dirs(o, t->keyspace, t->table, &found, &n);
	bool one = !given && (n == 1 || one_table_id(&found, n));
	if (r == 0 && one && !(*target = strdup(found.buf)))
		r = -ENOMEM;
	/* the others of its id: of the one found, or of the one --table-dir names (by the name it
	 * has in its data directory, a symlink to a directory of another name or not) */
	char base[NAME_MAX + 2] = "";
	for (size_t off = 0; r == 0 && *target && !*base && off < found.len; off += strlen(found.buf + off) + 1)
		if (same_directory(found.buf + off, *target)) /* "t1/.", or the path a symlink names */
			table_dir_name(found.buf + off, base, sizeof(base));
	if (r == 0 && *target && !*base)
		table_dir_name(*target, base, sizeof(base));
	for (size_t off = 0; r == 0 && *base && off < found.len; off += strlen(found.buf + off) + 1) {
		const char *name = strrchr(found.buf + off, '/');
		if (name && !strcmp(name + 1, base) && !same_directory(found.buf + off, *target))
			r = strv_push(others, found.buf + off);
	}
	if (given) {
		sb_free(&found);
		return r;
	}
	if (r == 0 && !one) {
		report_no_target(t, &found, n);
		r = 1;
	}
	sb_free(&found);
	return r;
}

/* Locks target directory fd (flock) for this run, so that two restores never place files in
 * one table at once: each would take the other's files for a killed run's and resume or take
 * them back (a Data.db left without its components). 0 (also where the file system has no
 * such lock), or -EWOULDBLOCK (another run holds it) or -errno. */
static int lock_target(int fd)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	/* a file system without flock for a directory (NFS emulates it with a write lock, which
	 * a descriptor open for reading cannot take): restores there do not take turns */
	return errno == EBADF || errno == ENOLCK || errno == EOPNOTSUPP ? 0 : -errno;
}

static void say_target_taken(const char *target, int r)
{
	if (r == -EWOULDBLOCK)
		errorf("table directory %s: another restore is placing files in it (or another table "
		       "of this one is to go there too); run this one once it has ended", target);
	else
		errorf("table directory %s: cannot lock it: %s", target, strerror(-r));
}

/* Opens the target table directory and locks it (lock_target); nodetool runs elsewhere, so
 * the path becomes absolute. 0, or 1 when it is not a usable directory or another restore
 * holds it (said). */
static int open_target(const struct restore_opts *o, struct plan_table *pt)
{
	char *abs = realpath(pt->target, NULL);
	if (abs) {
		free(pt->target);
		pt->target = abs;
	}
	pt->fd = open(pt->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pt->fd < 0 && errno == ENOENT && o->whole_node) { /* made when the copy starts */
		pt->uid = o->uid;
		pt->gid = o->gid;
		return 0;
	}
	struct stat st;
	if (pt->fd < 0 || fstat(pt->fd, &st) < 0) {
		errorf("table directory %s: %s", pt->target, errno == ENOTDIR ? "not a directory" : strerror(errno));
		return 1;
	}
	int r = lock_target(pt->fd);
	if (r < 0) {
		say_target_taken(pt->target, r);
		return 1;
	}
	pt->uid = o->have_owner ? o->uid : st.st_uid;
	pt->gid = o->have_owner ? o->gid : st.st_gid;
	return 0;
}

/* Every file of the table is, in the catalog, what the backup's manifest says it is: the
 * catalog is a cache (stale, damaged or planted), and the bytes copied are checked against the
 * SHA-256 it gives. 0, or 2 when it disagrees with the store or the manifest cannot be read
 * (said: nothing is restored). */
static int check_against_manifest(const struct restore_opts *o, const struct plan_table *pt)
{
	struct strbuf why = {0};
	int r = files_match_manifest(o->st, o->ref.v[0], pt->t.keyspace, pt->t.table, &pt->files, &why);
	if (r < 0)
		errorf("cannot restore backup %s: %s; nothing was restored", o->name,
		       why.buf ? why.buf : strerror(-r));
	sb_free(&why);
	return r < 0 ? 2 : 0;
}

/* The table's files from the catalog, snapshot metadata left out, every name checked before
 * any is used in a path. 0, 2 when a name is unusable (said), < 0 when the catalog failed. */
static int load_table_files(catalog *cat, const struct restore_opts *o, struct plan_table *pt)
{
	int r = load_files(cat, o->store, pt->t.row, &pt->files);
	if (r < 0)
		return r;
	if ((r = check_against_manifest(o, pt)) != 0) /* all of them, snapshot metadata too */
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

/* Is name in dfd a regular file holding f's bytes (size and SHA-256 as the backup's)? */
static bool same_bytes(int dfd, const char *name, const struct vf *f)
{
	struct stat st;
	unsigned char sha[32];
	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	       (uint64_t)st.st_size == f->size && file_sha(dfd, name, f->size, sha) == 0 &&
	       !memcmp(sha, f->want, 32);
}

/* Does directory dfd hold sstable u, under prefix (NULL: the unit's own names): every file of
 * it with the backup's bytes, but for a Statistics.db or Summary.db, which Cassandra rewrites
 * in place (a restore run again after nodetool import took the sstable with its level reset,
 * or once its index summary was resampled)? Data.db, its digest and the rest decide. */
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
		same = name.buf && (sstable_component_rewritten_in_place(f->name)
					    ? sstable_rewritten_component_there(dfd, name.buf)
					    : same_bytes(dfd, name.buf, f));
	}
	sb_free(&name);
	return same;
}

/* Did a killed restore leave sstable u in dfd, under generation gen (0: its own names): its
 * Data.db missing (placed last), and every other of its names there holding the backup's
 * bytes? Cassandra never reads an sstable without its Data.db, so what is there is ours to
 * complete. */
static bool unit_left_by_a_kill(int dfd, const struct plan_table *pt, const struct unit *u,
				uint64_t gen)
{
	bool data_missing = false, ok = true;
	struct strbuf name = {0};
	for (size_t k = u->first; ok && k < u->first + u->count; k++) {
		const struct vf *f = &pt->files.v[k];
		name.len = 0;
		if ((gen ? sstable_with_generation(f->name, gen, &name) : sb_puts(&name, f->name)) < 0) {
			ok = false;
			break;
		}
		struct stat st;
		bool exists = fstatat(dfd, name.buf, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
		if (strstr(f->name, "-Data.db")) {
			ok = !exists;
			data_missing = true;
		} else if (exists) {
			ok = same_bytes(dfd, name.buf, f);
		}
	}
	sb_free(&name);
	return ok && data_missing;
}

/* Does an earlier unit of pt's plan, in u's directory, resume under generation g? */
static bool gen_claimed(const struct plan_table *pt, const struct unit *u, uint64_t g)
{
	for (const struct unit *o = pt->units; o < u; o++)
		if (o->action == U_RESUME && o->new_gen == g && !strcmp(o->dir, u->dir))
			return true;
	return false;
}

/* Is every file of dfd named with u's identifier under generation g (its version and format,
 * "nb-8-big-") one of u's components under g (nothing a killed restore of another sstable
 * left there)? Another version's sstable of that generation is not ours: it is left to
 * generation_used_by_another. */
static bool gen_holds_only(int dfd, const struct plan_table *pt, const struct unit *u, uint64_t g)
{
	struct strbuf prefix = {0};
	if (sstable_with_generation(pt->files.v[u->first].name, g, &prefix) < 0) {
		sb_free(&prefix);
		return false;
	}
	size_t plen = sstable_prefix_len(prefix.buf);
	DIR *d = plen ? dir_stream(dfd) : NULL;
	if (!d) {
		sb_free(&prefix);
		return false;
	}
	bool only = true;
	struct strbuf name = {0};
	for (struct dirent *e; only && (e = readdir(d));) {
		if (sstable_numeric_generation(e->d_name) != g || strncmp(e->d_name, prefix.buf, plen) != 0)
			continue;
		bool ours = false;
		for (size_t k = u->first; !ours && k < u->first + u->count; k++) {
			name.len = 0;
			ours = sstable_with_generation(pt->files.v[k].name, g, &name) == 0 &&
			       !strcmp(name.buf, e->d_name);
		}
		only = ours;
	}
	sb_free(&name);
	sb_free(&prefix);
	closedir(d);
	return only;
}

/* The generation under which a killed restore left u, renamed (its identifier was taken), in
 * dfd, for the next run to complete instead of copying it once more beside what is left; 0
 * when there is none. Components are placed in the order of the unit, so an sstable with any
 * component placed has its first one that is not the Data.db: that name is what is looked
 * for. A generation holding a file that is not u's, or that an earlier unit of the plan
 * resumes, is not u's. */
static uint64_t unit_renamed_by_a_kill(int dfd, const struct plan_table *pt, const struct unit *u)
{
	const struct vf *first = NULL;
	for (size_t k = u->first; !first && k < u->first + u->count; k++)
		if (!strstr(pt->files.v[k].name, "-Data.db"))
			first = &pt->files.v[k];
	DIR *d = first ? dir_stream(dfd) : NULL;
	if (!d)
		return 0;
	uint64_t found = 0;
	struct strbuf want = {0};
	for (struct dirent *e; !found && (e = readdir(d));) {
		uint64_t g = sstable_numeric_generation(e->d_name);
		want.len = 0;
		if (g && sstable_with_generation(first->name, g, &want) == 0 && !strcmp(want.buf, e->d_name) &&
		    strcmp(want.buf, first->name) && !gen_claimed(pt, u, g) &&
		    unit_left_by_a_kill(dfd, pt, u, g) && gen_holds_only(dfd, pt, u, g))
			found = g;
	}
	sb_free(&want);
	closedir(d);
	return found;
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

/* The table's directory for files in dir ("" or ".<index>") in its other data directory i,
 * symlinks followed (as Cassandra reads through them), or -1. Only read. */
static int open_other_dir(const struct plan_table *pt, size_t i, const char *dir)
{
	int base = open(pt->others.v[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base < 0 || !*dir)
		return base;
	int fd = openat(base, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(base);
	return fd;
}

/* Does a file of directory dfd have numeric generation gen, in any sstable version or format
 * (an "oa-8-big" beside the backup's "nb-8-big"), other than u's names under generation
 * as_gen (0: its own names: what a killed run of ours left there)? */
static bool generation_used_by_another(int dfd, const struct plan_table *pt, const struct unit *u, uint64_t gen,
				       uint64_t as_gen)
{
	DIR *d = dir_stream(dfd);
	bool used = false;
	struct strbuf name = {0};
	for (struct dirent *e; !used && d && (e = readdir(d));) {
		if (sstable_numeric_generation(e->d_name) != gen)
			continue;
		used = true;
		for (size_t k = u->first; used && k < u->first + u->count; k++) {
			name.len = 0;
			const char *ours = pt->files.v[k].name;
			if (as_gen && sstable_with_generation(ours, as_gen, &name) == 0)
				ours = name.buf;
			used = strcmp(e->d_name, ours) != 0;
		}
	}
	sb_free(&name);
	if (d)
		closedir(d);
	return used;
}

/* Is generation gen of u (0: its own, named or numeric) in use in the table's directory of
 * another data directory, by one of u's names under it or by any file of that numeric
 * generation? Cassandra keeps a table's generations unique across its data directories, in
 * every sstable version (a flush there may have taken one since a killed run chose it). */
static bool taken_in_others(const struct plan_table *pt, const struct unit *u, uint64_t gen)
{
	bool taken = false;
	uint64_t numeric = gen ? gen : sstable_numeric_generation(pt->files.v[u->first].name);
	struct strbuf name = {0};
	for (size_t i = 0; !taken && i < pt->others.n; i++) {
		int fd = open_other_dir(pt, i, u->dir);
		for (size_t k = u->first; fd >= 0 && !taken && gen && k < u->first + u->count; k++) {
			struct stat st;
			name.len = 0;
			taken = sstable_with_generation(pt->files.v[k].name, gen, &name) < 0 ||
				fstatat(fd, name.buf, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
		}
		taken = taken || (fd >= 0 && !gen && unit_taken(fd, pt, u)) ||
			(fd >= 0 && numeric && generation_used_by_another(fd, pt, u, numeric, gen));
		if (fd >= 0)
			close(fd);
	}
	sb_free(&name);
	return taken;
}

/* The table's directory of another data directory that holds u with the backup's bytes, under
 * its own identifier or (*as, as unit_found_elsewhere gives it) another one: its path,
 * malloc'd, or NULL. A node that lost one of its disks keeps the sstables of the others. */
static char *unit_in_others(const struct plan_table *pt, const struct unit *u, char **as)
{
	char *found = NULL;
	for (size_t i = 0; !found && i < pt->others.n; i++) {
		int fd = open_other_dir(pt, i, u->dir);
		if (fd < 0)
			continue;
		bool same = unit_taken(fd, pt, u) && unit_same_as(fd, pt, u, NULL);
		if (!same && (*as = unit_found_elsewhere(fd, pt, u)))
			same = true;
		if (same && asprintf(&found, "%s%s%s", pt->others.v[i], *u->dir ? "/" : "", u->dir) < 0)
			found = NULL;
		close(fd);
	}
	return found;
}

struct in_use_ctx {
	const struct plan_table *pt;
	int dfd;
};

/* gen_alloc's question: the largest generation used in dir, in the target, in the table's other
 * data directories, or in the backup. */
static uint64_t generation_in_use(void *ctx, const char *dir)
{
	const struct in_use_ctx *c = ctx;
	uint64_t m = dir_max_generation(c->dfd), b = plan_max_generation(&c->pt->files, dir);
	m = b > m ? b : m;
	for (size_t i = 0; i < c->pt->others.n; i++) {
		int fd = open_other_dir(c->pt, i, dir);
		uint64_t g = fd >= 0 ? dir_max_generation(fd) : 0;
		m = g > m ? g : m;
		if (fd >= 0)
			close(fd);
	}
	return m;
}

/* Opens the target's directory for unit files in dir ("" or ".<index>") without following a
 * symlink: the descriptor, -ENOENT when it does not exist yet (everything is copied), or
 * another -errno (said). */
static int open_unit_dir(const struct plan_table *pt, const char *dir)
{
	if (pt->fd < 0)
		return -ENOENT; /* --whole-node: the table directory is still to be made */
	int fd = *dir ? openat(pt->fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
		      : fcntl(pt->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 && errno != ENOENT)
		errorf("%s/%s: %s; restore writes only into real directories beneath the table directory",
		       pt->target, dir, errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory" : strerror(errno));
	return fd < 0 ? -errno : fd;
}

/* Decides one unit, whose directory is dfd (-1: it does not exist); resume: an sstable a
 * killed restore left there may be completed in place (not when it goes elsewhere: --import
 * stages whole sstables). */
static int plan_unit(struct plan_table *pt, struct unit *u, int dfd, struct gen_alloc *ga, bool resume)
{
	const struct vf *f0 = &pt->files.v[u->first];
	bool sst = sstable_prefix_len(f0->name) > 0;
	bool taken_here = dfd >= 0 && unit_taken(dfd, pt, u);
	bool here = taken_here && unit_same_as(dfd, pt, u, NULL);
	uint64_t numeric = sst ? sstable_numeric_generation(f0->name) : 0;
	bool taken = taken_here || (sst && taken_in_others(pt, u, 0)) ||
		     (numeric && dfd >= 0 && generation_used_by_another(dfd, pt, u, numeric, 0));
	if (sst && dfd >= 0 && !here)
		u->present_as = unit_found_elsewhere(dfd, pt, u);
	if (sst && !here && !u->present_as)
		u->present_in = unit_in_others(pt, u, &u->present_as);
	u->action = plan_decide(sst, taken, here, u->present_as || u->present_in);
	/* what a killed run left is in the target: under its own names (which it took there),
	 * or renamed, as when they were taken in the target or in another data directory; it is
	 * completed, unless another data directory took its generation since: then removed */
	if (u->action == U_RENAME && resume && taken_here && unit_left_by_a_kill(dfd, pt, u, 0)) {
		if (!taken_in_others(pt, u, 0) && !(numeric && generation_used_by_another(dfd, pt, u, numeric, 0)))
			u->action = U_RESUME;
		else
			u->leftover = true, u->leftover_gen = 0;
	}
	uint64_t left = u->action == U_RENAME && !u->leftover && resume && dfd >= 0
				? unit_renamed_by_a_kill(dfd, pt, u) : 0;
	if (left && !taken_in_others(pt, u, left) && !generation_used_by_another(dfd, pt, u, left, left))
		u->action = U_RESUME, u->new_gen = left; /* under new_gen */
	else if (left)
		u->leftover = true, u->leftover_gen = left;
	if (u->action != U_RENAME)
		return 0;
	struct in_use_ctx c = {pt, dfd};
	return gen_alloc_next(ga, u->dir, generation_in_use, &c, &u->new_gen);
}

/* Groups the table's files into units and decides each (resume: as plan_unit). 0, 1 when a
 * target directory is unusable (said), -errno. */
static int plan_units(struct plan_table *pt, bool resume)
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
		r = plan_unit(pt, u, dfd, &ga, resume);
	}
	if (dfd >= 0)
		close(dfd);
	gen_alloc_free(&ga);
	return r;
}

/* Is name a file of pt in dir ("" or ".<index>")? */
static bool plan_has_file(const struct plan_table *pt, const char *dir, const char *name)
{
	for (size_t k = 0; k < pt->files.n; k++)
		if (!strcmp(pt->files.v[k].dir, dir) && !strcmp(pt->files.v[k].name, name))
			return true;
	return false;
}

/* The first sstable component in directory fd (closed here) that is not one of pt's files in
 * dir (pt NULL: any is not), into out as dir/name; false when there is none. */
static bool foreign_in(int fd, const struct plan_table *pt, const char *dir, struct strbuf *out)
{
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool found = false;
	for (struct dirent *e; !found && (e = readdir(d));)
		if (sstable_prefix_len(e->d_name) && !(pt && plan_has_file(pt, dir, e->d_name)))
			found = sb_printf(out, "%s%s%s", dir, *dir ? "/" : "", e->d_name) == 0;
	closedir(d);
	return found;
}

/* Does the table's directory of the same name in a data directory other than the target's
 * hold an sstable component (in it or an index directory of the backup's)? A whole-node
 * restore writes only into the target, so any is another node's (Cassandra makes a table's
 * directory in every data directory and reads sstables from each). where and what say which. */
static bool foreign_in_other_data_dirs(const struct restore_opts *o, const struct plan_table *pt,
				       struct strbuf *where, struct strbuf *what)
{
	const char *name = strrchr(pt->target, '/');
	bool found = false;
	for (size_t i = 0; name && !found && i < o->data_dirs.n; i++) {
		where->len = 0;
		if (sb_printf(where, "%s/%s%s", o->data_dirs.v[i], pt->t.keyspace, name) < 0 ||
		    same_directory(where->buf, pt->target))
			continue;
		int base = open(where->buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		for (size_t u = 0; base >= 0 && !found && u < pt->nunits; u++) {
			const char *dir = pt->units[u].dir;
			if (u && !strcmp(dir, pt->units[u - 1].dir))
				continue;
			int fd = *dir ? openat(base, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
				      : fcntl(base, F_DUPFD_CLOEXEC, 0);
			found = foreign_in(fd, NULL, dir, what);
		}
		if (base >= 0)
			close(base);
	}
	return found;
}

/* --whole-node: a table directory already in the target may hold this backup's sstables (what
 * an interrupted run of it placed, with its bytes), nothing of another's, and the table's
 * directories in the other data directories nothing at all. A node that ran there (Cassandra
 * started once on the new machine) has sstables of its own under the system tables' fixed
 * ids: restored beside them, the two would merge, the newer node's cells (its host id, its
 * tokens) winning. 0, or 3 when another's are there (said). */
static int whole_node_refuse_foreign(const struct restore_opts *o, const struct plan_table *pt)
{
	struct strbuf what = {0}, where = {0};
	bool foreign = false;
	for (size_t i = 0; !foreign && i < pt->nunits; i++) {
		const struct unit *u = &pt->units[i];
		const struct vf *f = &pt->files.v[u->first];
		foreign = (u->action == U_RENAME && /* its name, other bytes */
			   sb_printf(&what, "%s%s%.*s*", f->dir, *f->dir ? "/" : "",
				     (int)sstable_prefix_len(f->name), f->name) == 0) ||
			  ((i == 0 || strcmp(u->dir, pt->units[i - 1].dir)) &&
			   foreign_in(open_unit_dir(pt, u->dir), pt, u->dir, &what));
	}
	if (!foreign && (foreign = foreign_in_other_data_dirs(o, pt, &where, &what)))
		errorf("table directory %s holds %s, an sstable no whole-node restore of this backup "
		       "put there (a node ran there: Cassandra started on this machine?); a whole-node "
		       "restore writes only into empty data directories (move it aside); nothing was "
		       "restored", where.buf ? where.buf : "", what.buf ? what.buf : "");
	else if (foreign)
		errorf("table directory %s holds %s, an sstable that is not this backup's (a node "
		       "ran there: Cassandra started on this machine?); a whole-node restore writes "
		       "only into empty data directories (move it aside); nothing was restored",
		       pt->target, what.buf ? what.buf : "");
	sb_free(&what);
	sb_free(&where);
	return foreign ? 3 : 0;
}

/* Plans one selected table into pt. 0; 1 on a problem that was said, 2 on one that stops
 * everything at once (said), 3 when a --whole-node target is not empty (said); < 0 on a
 * failure. */
static int plan_table(catalog *cat, const struct restore_opts *o, struct plan_table *pt)
{
	int r = load_table_files(cat, o, pt);
	if (r == 0)
		r = choose_target(o, &pt->t, &pt->target, &pt->others);
	if (r == 0)
		r = open_target(o, pt);
	if (r == 0)
		r = plan_units(pt, !o->import);
	if (r == 0 && o->whole_node)
		r = whole_node_refuse_foreign(o, pt);
	return r;
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; p->v && i < p->n; i++) {
		struct plan_table *pt = &p->v[i];
		free(pt->target);
		free(pt->stage_root);
		free(pt->stage);
		strv_free(&pt->command);
		strv_free(&pt->others);
		if (pt->fd >= 0)
			close(pt->fd);
		plan_units_free(pt->units, pt->nunits);
		vlist_free(&pt->files);
	}
	free(p->v);
	*p = (struct plan){0};
}

/* Plans every selected table. 0 (p->bad when a problem was said), or < 0 after saying why. */
static int make_plan(catalog *cat, struct restore_opts *o, const struct tables *ts, struct plan *p)
{
	*p = (struct plan){.v = calloc(ts->n + 1, sizeof(*p->v))};
	if (!p->v) {
		errorf("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < ts->n; i++) {
		const struct cb_table_row *t = &ts->v[i];
		if (o->whole_node ? !selection_matches(&o->sel, t->keyspace, t->table)
				  : !selection_takes(&o->sel, t->keyspace, t->table)) {
			p->system_left += is_system_keyspace(t->keyspace);
			continue;
		}
		struct plan_table *pt = &p->v[p->n++];
		*pt = (struct plan_table){.t = *t, .fd = -1, .nodetool_status = -1};
		int r = plan_table(cat, o, pt);
		if (r < 0) {
			if (r == -ENOMEM)
				errorf("out of memory");
			return r;
		}
		if (r == 2)
			return -EINVAL; /* a name from the store that cannot be used: said, stop at once */
		if (r == 3)
			return -ENOTEMPTY; /* a whole-node target that is not empty: said */
		p->bad |= r > 0; /* go on: tell about every table that has a problem */
	}
	const struct selection_entry *miss = selection_unmatched(&o->sel);
	if (miss) {
		struct strbuf what = {0};
		sb_selection_entry(&what, miss);
		_cleanup_free_ char *name = cli_escape(o->name);
		errorf("%s: not in backup %s", what.buf ? what.buf : "selection", name ? name : "");
		sb_free(&what);
		p->bad = true;
	}
	return 0;
}

/* ---- the plan as text --------------------------------------------------------------------- */

static int final_name(const struct unit *u, const struct vf *f, struct strbuf *out)
{
	out->len = 0;
	if (u->action == U_RENAME || (u->action == U_RESUME && u->new_gen))
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
		printf("  skip    %s: already present%s%.*s%s%s\n", what, u->present_as ? " as " : "",
		       u->present_as ? (int)strlen(u->present_as) - 1 : 0, u->present_as ? u->present_as : "",
		       u->present_in ? " in " : "", u->present_in ? u->present_in : "");
		break;
	case U_CONFLICT:
		printf("  keep    %s: CONFLICT, the target's file of that name holds other bytes; "
		       "left as it is, not restored\n", what);
		break;
	case U_RENAME:
		final_name(u, f0, fin);
		printf("  rename  %s -> %.*s (identifier taken in the table's directories)", what,
		       (int)sstable_prefix_len(fin->buf) - 1, fin->buf);
		if (u->leftover && u->leftover_gen)
			printf(", removing what a killed restore left as generation %llu (taken in another "
			       "data directory since)", (unsigned long long)u->leftover_gen);
		else if (u->leftover)
			printf(", removing what a killed restore left under its own name (taken in another "
			       "data directory since)");
		printf("\n");
		break;
	case U_COPY:
		printf("  copy    %s (%zu files)\n", what, u->count);
		break;
	case U_RESUME:
		final_name(u, f0, fin);
		printf("  resume  %s%s%.*s: an interrupted restore left it without its Data.db; the "
		       "rest copied beside what it placed\n", what, u->new_gen ? " as " : "",
		       u->new_gen ? (int)sstable_prefix_len(fin->buf) - 1 : 0, fin->buf);
		break;
	}
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

/* The directory for files in dir beneath base (the table directory, or the staging directory
 * of --import), made (owned like the table directory) if needed,
 * opened without following symlinks. The descriptor or -errno (why is set). */
static int prepare_dir(const struct plan_table *pt, int base, const char *base_path, const char *dir,
		       struct failure *fail)
{
	if (!*dir)
		return fcntl(base, F_DUPFD_CLOEXEC, 0);
	if (mkdirat(base, dir, 0755) == 0 && fchownat(base, dir, pt->uid, pt->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;
		snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", base_path, dir, strerror(e));
		return -e;
	}
	int fd = openat(base, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", base_path, dir,
			 e == ELOOP ? "a symlink, not followed" : strerror(e));
		return -e;
	}
	return fd;
}

/* Where copy_bytes puts the bytes read: the temporary file, and the progress display. */
struct out {
	int fd;
	struct progress *prog;
};

static int write_out(void *ctx, const void *data, size_t n)
{
	struct out *o = ctx;
	int r = write_full(o->fd, data, n);
	if (r == 0)
		progress_add(o->prog, n);
	return r;
}

/* Reads f's bytes from the packs into fd, checking its SHA-256 on the way (readback.h). */
static int copy_bytes(readback *rb, const struct vf *f, int fd, const char *path, struct progress *prog,
		      struct failure *fail)
{
	struct out out = {fd, prog};
	struct readback_result res;
	int r = readback_pack(rb, &f->loc, f->size, f->want, write_out, &out, &res);
	switch (res.step) {
	case READBACK_SOURCE:
		snprintf(fail->why, sizeof(fail->why), "%s%s%s: cannot read from pack %s: %s", f->dir,
			 *f->dir ? "/" : "", f->name, f->loc.pack_path, pack_cache_strerror(r));
		break;
	case READBACK_DIFFERS:
		snprintf(fail->why, sizeof(fail->why), "%s%s%s: bytes read from pack %s differ from the "
			 "backup's SHA-256", f->dir, *f->dir ? "/" : "", f->name, f->loc.pack_path);
		r = -EIO;
		break;
	case READBACK_SINK:
		snprintf(fail->why, sizeof(fail->why), "%s: %s", path, strerror(-r));
		break;
	case READBACK_CANCELED: /* said by the caller */
	case READBACK_HASH:
	case READBACK_OK:
		break;
	}
	if (r < 0)
		fail->damaged = res.damaged; /* the backup is at fault: a second run stops the same way */
	return r;
}

/* Creates a new temporary file in dfd (O_EXCL, O_NOFOLLOW) under the next name of this run,
 * RESTORE_TEMP_PREFIX "<pid>-<n>" with n counting up from 0: the name is as short whatever the
 * final name (which may have NAME_MAX bytes), and clean_stale_temps knows it by its pid. A name
 * that is taken (left by a killed run that had our pid) is passed over. Returns the descriptor,
 * its name in *name, or -errno. */
static int create_temp(int dfd, struct strbuf *name)
{
	static unsigned long long next;
	for (int tries = 0; tries < 1000; tries++) {
		name->len = 0;
		int r = sb_printf(name, RESTORE_TEMP_PREFIX "%d-%llu", (int)getpid(), next++);
		if (r < 0)
			return r;
		int fd = openat(dfd, name->buf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* Writes f into fd, the temporary file path: bytes checked, mode, owner, mtime, fsync. Closes fd. */
static int copy_out(readback *rb, const struct vf *f, int fd, const char *path,
		    const struct plan_table *pt, struct progress *prog, struct failure *fail)
{
	int r = copy_bytes(rb, f, fd, path, prog, fail);
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

/* The temporary and final names of u's files: fin all made first, tmp as the files are. */
struct unit_names {
	struct strv tmp, fin;
};

static int unit_names(const struct unit *u, const struct plan_table *pt, struct unit_names *n)
{
	struct strbuf fin = {0};
	int r = 0;
	for (size_t k = 0; r == 0 && k < u->count; k++)
		r = final_name(u, &pt->files.v[u->first + k], &fin) ?: strv_push(&n->fin, fin.buf);
	sb_free(&fin);
	return r;
}

/* The inode of dfd/name, or 0. */
static ino_t inode_at(int dfd, const char *name)
{
	struct stat st;
	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_ino : 0;
}

/* Takes back the components of an sstable whose Data.db could not be placed (a file of that
 * name appeared: a flush of the node), so that no sstable is made of another's Data.db and
 * the backup's other files: each that is still the file placed (ino[k], the inode it had when
 * placed, or when a killed run's was found there), never one another process put there. */
static void take_back_unit(int dfd, const struct unit_names *n, const ino_t *ino)
{
	for (size_t k = 0; k < n->fin.n; k++)
		if (ino[k] && !strstr(n->fin.v[k], "-Data.db") && inode_at(dfd, n->fin.v[k]) == ino[k])
			unlinkat(dfd, n->fin.v[k], 0);
}

/* Puts u's temporary files in place, Data.db last: Cassandra finds an sstable by its Data.db.
 * When one cannot be placed because a file of its name appeared, the unit's other components
 * are taken back (take_back_unit), those a killed run placed included. */
static int place_unit(int dfd, const char *dirpath, struct unit_names *n, struct failure *fail)
{
	ino_t *ino = calloc(n->fin.n + 1, sizeof(*ino));
	int r = ino ? 0 : -ENOMEM;
	for (size_t k = 0; r == 0 && k < n->fin.n; k++) /* "": placed by a killed run, checked */
		ino[k] = n->tmp.v[k][0] ? inode_at(dfd, n->tmp.v[k]) : inode_at(dfd, n->fin.v[k]);
	for (int pass = 0; r == 0 && pass < 2; pass++)
		for (size_t k = 0; r == 0 && k < n->fin.n; k++) {
			bool data = strstr(n->fin.v[k], "-Data.db") != NULL;
			if (data != (pass == 1) || !n->tmp.v[k][0]) /* "": there already */
				continue;
			if ((r = rename_noreplace(dfd, n->tmp.v[k], n->fin.v[k])) < 0) {
				snprintf(fail->why, sizeof(fail->why), "%s/%s: %s", dirpath, n->fin.v[k],
					 r == -EEXIST ? "appeared in the target during the restore; left as "
							"it is, and this sstable's other files taken back"
						      : strerror(-r));
				break;
			}
			n->tmp.v[k][0] = '\0'; /* placed: no temporary file to clean up */
		}
	if (r == -EEXIST)
		take_back_unit(dfd, n, ino);
	free(ino);
	if (r == 0 && fsync(dfd) < 0) {
		r = -errno;
		snprintf(fail->why, sizeof(fail->why), "%s: %s", dirpath, strerror(-r));
	}
	return r;
}

/* Restores one unit into dfd: temp files, then renames with Data.db last; on failure no
 * temporary file stays. */
/* Removes what a killed run left of u under u->leftover_gen (plan_unit): components only,
 * never a Data.db (there is none: it is placed last). 0 or -errno (said in fail). */
static int remove_leftover(int dfd, const char *dirpath, const struct plan_table *pt, const struct unit *u,
			   struct failure *fail)
{
	struct strbuf name = {0};
	int r = 0;
	/* last component first: the next run finds a leftover by its first (unit_renamed_by_a_kill),
	 * so a kill in here leaves what is left findable */
	for (size_t k = u->first + u->count; r == 0 && k-- > u->first;) {
		const char *own = pt->files.v[k].name;
		name.len = 0;
		r = u->leftover_gen ? sstable_with_generation(own, u->leftover_gen, &name) : sb_puts(&name, own);
		if (r == 0 && !strstr(name.buf, "-Data.db") && unlinkat(dfd, name.buf, 0) < 0 && errno != ENOENT) {
			r = -errno;
			snprintf(fail->why, sizeof(fail->why), "cannot remove %s/%s, left by a killed restore: %s",
				 dirpath, name.buf, strerror(-r));
		}
	}
	sb_free(&name);
	return r;
}

static int restore_unit(readback *rb, const struct plan_table *pt, const struct unit *u, int dfd,
			const char *dirpath, struct progress *prog, struct failure *fail)
{
	struct unit_names n = {0};
	struct strbuf path = {0}, tmp = {0};
	int r = u->leftover ? remove_leftover(dfd, dirpath, pt, u, fail) : 0;
	r = r ?: unit_names(u, pt, &n);
	for (size_t k = 0; r == 0 && k < u->count; k++) {
		if (u->action == U_RESUME && same_bytes(dfd, n.fin.v[k], &pt->files.v[u->first + k])) {
			r = strv_push(&n.tmp, ""); /* placed by the run that was killed */
			continue;
		}
		int fd = create_temp(dfd, &tmp);
		if (fd < 0) {
			r = fd;
			if (r != -ENOMEM)
				snprintf(fail->why, sizeof(fail->why), "cannot create a temporary file in %s: %s",
					 dirpath, strerror(-r));
			break;
		}
		path.len = 0;
		r = strv_push(&n.tmp, tmp.buf) ?: sb_printf(&path, "%s/%s", dirpath, tmp.buf);
		if (r < 0) {
			close(fd);
			if (n.tmp.n <= k) /* not recorded: removed here */
				unlinkat(dfd, tmp.buf, 0);
			break;
		}
		r = copy_out(rb, &pt->files.v[u->first + k], fd, path.buf, pt, prog, fail);
		progress_file_done(prog);
	}
	if (r == 0)
		r = place_unit(dfd, dirpath, &n, fail);
	for (size_t k = 0; r < 0 && k < n.tmp.n; k++) /* every temporary file this unit made */
		if (n.tmp.v[k][0])
			unlinkat(dfd, n.tmp.v[k], 0);
	if (r == -ENOMEM && !fail->why[0])
		snprintf(fail->why, sizeof(fail->why), "out of memory");
	strv_free(&n.tmp);
	strv_free(&n.fin);
	sb_free(&path);
	sb_free(&tmp);
	return r;
}

static bool unit_writes(const struct unit *u)
{
	return u->action == U_COPY || u->action == U_RENAME || u->action == U_RESUME;
}

/* Is u restored in this mode? --import stages the table's own sstables only: nodetool import
 * reads the files of one directory, not its .<index>/ subdirectories (Cassandra builds the
 * secondary indexes of what it imports), and takes nothing that is not an sstable. */
static bool unit_in_mode(const struct restore_opts *o, const struct plan_table *pt, const struct unit *u)
{
	return !o->import || (!*u->dir && sstable_prefix_len(pt->files.v[u->first].name) > 0);
}

static void count_unit(const struct restore_opts *o, struct plan_table *pt, const struct unit *u)
{
	struct totals *tot = &pt->tot;
	if (!unit_in_mode(o, pt, u)) {
		tot->left_out += u->count;
		return;
	}
	tot->present += u->action == U_PRESENT;
	tot->conflicts += u->action == U_CONFLICT;
	if (!unit_writes(u))
		return;
	tot->files += u->count;
	for (size_t k = 0; k < u->count; k++)
		tot->bytes += pt->files.v[u->first + k].size;
	tot->renamed += u->action == U_RENAME || (u->action == U_RESUME && u->new_gen);
}

/* Where files go: the table directory, or --import's staging directory. */
struct dest {
	int fd;
	const char *path;
};

/* Restores the units [first, end) of one table, whose directory is dir, beneath d. */
static int restore_dir(readback *rb, const struct restore_opts *o, struct plan_table *pt, size_t first,
		       size_t end, const struct dest *d, struct progress *prog, struct failure *fail)
{
	const char *dir = pt->units[first].dir;
	bool work = false;
	for (size_t u = first; u < end; u++)
		work |= unit_writes(&pt->units[u]) && unit_in_mode(o, pt, &pt->units[u]);
	struct strbuf path = {0};
	int r = sb_printf(&path, "%s%s%s", d->path, *dir ? "/" : "", dir);
	int dfd = r == 0 && work ? prepare_dir(pt, d->fd, d->path, dir, fail) : -1;
	if (r == 0 && work && dfd < 0)
		r = dfd;
	for (size_t u = first; r == 0 && u < end; u++) {
		const struct unit *un = &pt->units[u];
		if (unit_writes(un) && unit_in_mode(o, pt, un))
			r = restore_unit(rb, pt, un, dfd, path.buf, prog, fail);
		if (r == 0)
			count_unit(o, pt, un);
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
static void clean_index_dirs(struct plan_table *pt)
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
			clean_stale_temps(sfd, p.buf ? p.buf : e->d_name, &pt->tot.stale);
			sb_free(&p);
			close(sfd);
		}
	}
	if (d)
		closedir(d);
}

/* Restores one table beneath d, directory by directory (units are sorted by directory). */
static int restore_table(readback *rb, const struct restore_opts *o, struct plan_table *pt,
			 const struct dest *d, struct progress *prog, struct failure *fail)
{
	int r = 0;
	for (size_t u = 0; r == 0 && u < pt->nunits;) {
		size_t end = u + 1;
		while (end < pt->nunits && !strcmp(pt->units[end].dir, pt->units[u].dir))
			end++;
		r = restore_dir(rb, o, pt, u, end, d, prog, fail);
		u = end;
	}
	return r;
}

/* ---- --import: staging on the target's file system ---------------------------------------- */

/* Removes name beneath dfd, a file or a whole directory tree, never following a symlink.
 * 0 (also when it is gone already) or the first -errno. */
static int remove_tree_at(int dfd, const char *name)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -errno;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			int q = remove_tree_at(dirfd(d), e->d_name);
			r = r ? r : q;
		}
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}

/* Removes path (absolute) and everything beneath it; says so when it cannot. */
static int remove_tree(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = dfd < 0 ? -errno : remove_tree_at(dfd, slash + 1);
	if (dfd >= 0)
		close(dfd);
	if (r < 0)
		errorf("cannot remove staging directory %s: %s; remove it by hand", path, strerror(-r));
	return r;
}

/* Removes the staging directories that runs of restore --import no longer alive left in the
 * directory holding pt's staging root (killed before they could clean up). One named with
 * this run's pid is such a run's too: this run removes its own after each table, before it
 * comes here again; kept, its sstables would be imported with this run's. */
static void clean_stale_stages(const struct plan_table *pt, size_t *removed)
{
	_cleanup_free_ char *parent = strdup(pt->stage_root);
	char *slash = parent ? strrchr(parent, '/') : NULL;
	if (!slash)
		return;
	*slash = '\0';
	DIR *d = opendir(*parent ? parent : "/");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		pid_t pid;
		if (!plan_import_stage_pid(e->d_name, &pid) ||
		    (pid != getpid() && (kill(pid, 0) == 0 || errno != ESRCH)))
			continue;
		int r = remove_tree_at(dirfd(d), e->d_name);
		if (r == 0)
			(*removed)++;
		else
			errorf("cannot remove %s/%s, left by an interrupted restore --import: %s, ignoring",
			       parent, e->d_name, strerror(-r));
	}
	if (d)
		closedir(d);
}

/* path with its last `up` components cut off, malloc'd ("" for the root), or NULL. */
static char *path_up(const char *path, int up)
{
	char *base = strdup(path);
	for (int i = 0; base && i < up; i++) {
		char *slash = strrchr(base, '/');
		if (slash)
			*slash = '\0';
	}
	return base;
}

static bool same_file_system(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(*a ? a : "/", &sa) == 0 && stat(*b ? b : "/", &sb) == 0 && sa.st_dev == sb.st_dev;
}

/* The directory pt's staging root goes in: the one that holds the target's keyspace directory
 * (the data directory), else the one that holds the table directory, whichever is first on the
 * table directory's own file system, so that Cassandra's import moves the files with rename(2)
 * (the table directory may be a symlink to, or the only directory in, a disk of its own); when
 * neither is (the table directory is a mount of its own), the first, said: import then copies.
 * malloc'd, or NULL. */
static char *stage_parent(const struct plan_table *pt)
{
	for (int up = 2; up >= 1; up--) {
		char *base = path_up(pt->target, up);
		if (!base || same_file_system(base, pt->target))
			return base;
		free(base);
	}
	char *base = path_up(pt->target, 2);
	if (base)
		errorf("warning: table directory %s is a file system of its own: the staging directory for "
		      "nodetool import goes in %s, and Cassandra copies the sstables from there",
		      pt->target, *base ? base : "/");
	return base;
}

/* The staging paths of pt: <parent>/.cassbackup-import-<pid>/<ks>/<table>, parent as
 * stage_parent chooses it (pt->target is absolute and resolved: open_target). The last two
 * components are what Cassandra reads the keyspace and table from. */
static int plan_stage(struct plan_table *pt)
{
	struct strbuf root = {0}, stage = {0};
	_cleanup_free_ char *base = stage_parent(pt);
	int r = base ? sb_printf(&root, "%s/" IMPORT_STAGE_PREFIX "%d", base, (int)getpid()) : -ENOMEM;
	if (r == 0)
		r = sb_printf(&stage, "%s/%s/%s", root.buf, pt->t.keyspace, pt->t.table);
	if (r == 0) {
		pt->stage_root = root.buf;
		pt->stage = stage.buf;
		return 0;
	}
	sb_free(&root);
	sb_free(&stage);
	return -ENOMEM;
}

/* Makes one staging directory level beneath dfd (mode 0700, owned like the table directory, so
 * Cassandra may read, write and search it: its import checks all three) and opens it. Never
 * one that exists: whatever is in it would be imported (-EEXIST). */
static int stage_mkdir(const struct plan_table *pt, int dfd, const char *name)
{
	if (mkdirat(dfd, name, 0700) < 0)
		return -errno;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchown(fd, pt->uid, pt->gid) < 0 || fchmod(fd, 0700) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Makes pt's staging directory; its descriptor, or -errno with why in fail. */
static int stage_create(const struct plan_table *pt, struct failure *fail)
{
	_cleanup_free_ char *parent = strdup(pt->stage_root);
	char *slash = parent ? strrchr(parent, '/') : NULL;
	if (!slash)
		return -ENOMEM;
	*slash = '\0';
	int pfd = open(*parent ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = pfd < 0 ? -errno : stage_mkdir(pt, pfd, slash + 1);
	int kfd = fd < 0 ? fd : stage_mkdir(pt, fd, pt->t.keyspace);
	int tfd = kfd < 0 ? kfd : stage_mkdir(pt, kfd, pt->t.table);
	for (int *p = (int[]){pfd, fd, kfd}, i = 0; i < 3; i++)
		if (p[i] >= 0)
			close(p[i]);
	if (tfd < 0)
		snprintf(fail->why, sizeof(fail->why), "cannot make staging directory %s: %s", pt->stage,
			 strerror(-tfd));
	return tfd;
}

/* Runs pt->command with our stderr as its stdout too when stdout carries JSON. The status. */
static int run_command(const struct restore_opts *o, struct plan_table *pt)
{
	char cmd[4096];
	format_command(pt->command.v, cmd, sizeof(cmd));
	if (!o->json)
		printf("running: %s\n", cmd);
	fflush(stdout);
	int saved = o->json ? dup(STDOUT_FILENO) : -1;
	if (saved >= 0)
		dup2(STDERR_FILENO, STDOUT_FILENO);
	pt->nodetool_status = exec_run(pt->command.v, NULL);
	if (saved >= 0) {
		dup2(saved, STDOUT_FILENO);
		close(saved);
	}
	if (pt->nodetool_status != 0)
		errorf("%s exited with status %d; %s", cmd, pt->nodetool_status,
		       o->import ? "Cassandra imports a directory wholly or not at all; the staging directory "
				   "was removed: run restore --import again once Cassandra is reachable"
				 : "the files are in place, run it again once Cassandra is reachable");
	return pt->nodetool_status;
}

/* --import of one table: stage its sstables, run nodetool import on the staging directory
 * (Cassandra moves them into the table, so they are copied once), remove the staging
 * directory whatever happened. 0, 1 when nodetool failed (said), or < 0. */
static int import_table(readback *rb, const struct restore_opts *o, struct plan_table *pt,
			struct progress *prog, struct failure *fail)
{
	clean_stale_stages(pt, &pt->tot.stale_stages);
	int sfd = stage_create(pt, fail);
	int r = sfd;
	if (sfd >= 0) {
		r = restore_table(rb, o, pt, &(struct dest){sfd, pt->stage}, prog, fail);
		close(sfd);
	} else {
		errorf("%s", fail->why);
	}
	if (r == 0 && !cancel_requested && pt->tot.files)
		r = run_command(o, pt) ? 1 : 0;
	if (remove_tree(pt->stage_root) < 0 && r == 0)
		r = 1;
	if (r == 0 && cancel_requested)
		r = -ECANCELED;
	return r;
}

/* ---- execution ---------------------------------------------------------------------------- */

/* --whole-node: makes the table's directory and its keyspace's (owned as the files will be),
 * and opens it into pt->fd. 0 or -errno (fail->why says which). */
static int make_table_dir(struct plan_table *pt, struct failure *fail)
{
	_cleanup_free_ char *ks = strdup(pt->target);
	char *slash = ks ? strrchr(ks, '/') : NULL;
	if (!slash) {
		snprintf(fail->why, sizeof(fail->why), "out of memory");
		return -ENOMEM;
	}
	*slash = '\0';
	const char *dirs[] = {ks, pt->target};
	for (int k = 0; k < 2; k++)
		if (mkdir(dirs[k], 0755) == 0 ? chown(dirs[k], pt->uid, pt->gid) < 0 : errno != EEXIST) {
			int e = errno;
			snprintf(fail->why, sizeof(fail->why), "%s: %s", dirs[k], strerror(e));
			return -e;
		}
	pt->fd = open(pt->target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int e = pt->fd < 0 ? errno : -lock_target(pt->fd);
	if (e) {
		snprintf(fail->why, sizeof(fail->why), "%s: %s", pt->target,
			 e == ELOOP ? "a symlink, not followed"
			 : e == EWOULDBLOCK ? "another restore is placing files in it (or another table of "
			 "this one is to go there too)" : strerror(e));
		return -e;
	}
	return 0;
}

static int execute_plan(readback *rb, const struct restore_opts *o, struct plan *p, struct totals *tot,
			struct failure *fail)
{
	install_cancel_handlers();
	uint64_t total = 0;
	size_t nfiles = 0;
	for (size_t i = 0; i < p->n; i++)
		for (size_t u = 0; u < p->v[i].nunits; u++) {
			const struct unit *un = &p->v[i].units[u];
			if (unit_writes(un) && unit_in_mode(o, &p->v[i], un))
				for (size_t k = 0; k < un->count; k++, nfiles++)
					total += p->v[i].files.v[un->first + k].size;
		}
	struct progress prog;
	progress_init(&prog, o->import ? "staging" : "restoring", total, nfiles);
	int r = 0, failed = 0;
	for (size_t i = 0; r >= 0 && i < p->n; i++) {
		struct plan_table *pt = &p->v[i];
		if (pt->fd < 0 && (r = make_table_dir(pt, fail)) < 0) {
			errorf("cannot restore %s.%s: %s", pt->t.keyspace, pt->t.table, fail->why);
			break;
		}
		if (o->import) {
			r = import_table(rb, o, pt, &prog, fail);
		} else {
			clean_stale_temps(pt->fd, pt->target, &pt->tot.stale);
			clean_index_dirs(pt);
			r = restore_table(rb, o, pt, &(struct dest){pt->fd, pt->target}, &prog, fail);
		}
		failed |= r > 0;
		tot->tables += r == 0;
	}
	progress_end(&prog);
	for (size_t i = 0; i < p->n; i++) {
		const struct totals *t = &p->v[i].tot;
		tot->files += t->files, tot->bytes += t->bytes, tot->renamed += t->renamed;
		tot->present += t->present, tot->conflicts += t->conflicts, tot->left_out += t->left_out;
		tot->stale += t->stale, tot->stale_stages += t->stale_stages;
	}
	return r < 0 ? r : failed;
}

/* ---- report and nodetool ------------------------------------------------------------------ */

/* Exit status after a copy that stopped, with one line on what to do. */
static int report_failure(const struct restore_opts *o, const struct totals *tot, const struct failure *fail)
{
	char size[32];
	format_bytes(tot->bytes, size, sizeof(size));
	const char *where = o->import ? "staged" : "restored";
	if (cancel_requested) {
		errorf("interrupted by signal %d after %zu files (%s); %s; run the same command again to "
		       "finish", (int)cancel_requested, tot->files, size,
		       o->import ? "the staging directory was removed"
				 : "every sstable is either wholly in place or absent");
		return 128 + (int)cancel_requested;
	}
	/* the verify to run opens the store as this run did */
	const struct store_options *so = cli_store_settings();
	const char *kopt = so->key_file ? " --key-file " : so->passphrase_file ? " --passphrase-file " : "";
	const char *kval = so->key_file ? so->key_file : so->passphrase_file ? so->passphrase_file : "";
	if (fail->damaged)
		errorf("backup %s is damaged (%s); %s %zu files (%s) before stopping, every sstable "
		       "wholly in place or absent; running restore again will stop the same way: check "
		       "the backup with: cassbackup verify --store %s%s%s %s", o->name, fail->why, where,
		       tot->files, size, o->store, kopt, kval, o->name);
	else
		errorf("%s %zu files (%s) before stopping; every sstable is either wholly in place "
		       "or absent; run the same command again to finish", where, tot->files, size);
	return CB_EXIT_FAILED;
}

/* argv of `nodetool [-u U -pwf F] import|refresh KS TABLE [DIR]` into pt->command: import
 * from the staging directory with --import, refresh with --refresh, else the command to run
 * next (an import of the table directory the files went to). */
static int nodetool_cmd(const struct restore_opts *o, struct plan_table *pt)
{
	struct strv *a = &pt->command;
	return nodetool_argv(a, o->nodetool) ?: strv_push(a, o->refresh ? "refresh" : "import") ?:
	       strv_push(a, pt->t.keyspace) ?: strv_push(a, pt->t.table) ?:
	       (o->refresh ? 0 : strv_push(a, o->import ? pt->stage : pt->target));
}

/* After the copy: runs nodetool refresh for each table, or prints the command to run next.
 * (--import ran its nodetool per table already.) 0, or 1 if one failed. */
static int tell_cassandra(const struct restore_opts *o, struct plan *p)
{
	int rc = 0;
	for (size_t i = 0; !o->import && i < p->n; i++) {
		char cmd[4096];
		format_command(p->v[i].command.v, cmd, sizeof(cmd));
		if (o->refresh)
			rc |= run_command(o, &p->v[i]) != 0;
		else if (!o->json && !o->point_in_time)
			printf("next: %s\n", cmd);
	}
	return rc;
}

static void report_done(const struct restore_opts *o, const struct totals *tot, size_t n_tables)
{
	char size[32];
	format_bytes(tot->bytes, size, sizeof(size));
	if (tot->stale && !o->json)
		printf("removed %zu temporary files left by an interrupted restore\n", tot->stale);
	if (tot->stale_stages && !o->json)
		printf("removed %zu staging directories left by an interrupted restore --import\n",
		       tot->stale_stages);
	if (!o->json && o->import)
		printf("imported %s: %zu of %zu tables; %zu files (%s) staged, %zu sstables already "
		       "present\n", o->name, tot->tables, n_tables, tot->files, size, tot->present);
	else if (!o->json)
		printf("restored %s: %zu tables, %zu files, %s; %zu sstables under new generations, "
		       "%zu already present\n", o->name, tot->tables, tot->files, size, tot->renamed,
		       tot->present);
	if (tot->conflicts)
		errorf("%zu files not restored: the target holds other files under their names "
		       "(CONFLICT lines of --dry-run); those live files were left as they are",
		       tot->conflicts);
}

/* ---- the plan and the result as text or JSON ---------------------------------------------- */

static void print_plan(const struct restore_opts *o, const struct plan *p)
{
	struct strbuf fin = {0};
	for (size_t i = 0; i < p->n; i++) {
		const struct plan_table *pt = &p->v[i];
		char cmd[4096];
		format_command(pt->command.v, cmd, sizeof(cmd));
		printf("%s.%s -> %s%s\n", pt->t.keyspace, pt->t.table, pt->target, pt->fd < 0 ? " (a new directory)" : "");
		if (o->import)
			printf("  staged in %s, then: %s\n", pt->stage, cmd);
		for (size_t u = 0; u < pt->nunits; u++) {
			const struct unit *un = &pt->units[u];
			if (unit_in_mode(o, pt, un))
				print_unit(pt, un, &fin);
			else
				printf("  leave   %s%s%s: not imported (%s)\n", un->dir, *un->dir ? "/" : "",
				       pt->files.v[un->first].name,
				       *un->dir ? "Cassandra builds the secondary indexes of what it imports"
						: "not an sstable");
		}
	}
	sb_free(&fin);
}

static void json_table(struct json *j, const struct restore_opts *o, const struct plan_table *pt)
{
	char cmd[4096];
	format_command(pt->command.v, cmd, sizeof(cmd));
	json_object_begin(j);
	json_kv_str(j, "keyspace", pt->t.keyspace);
	json_kv_str(j, "table", pt->t.table);
	json_kv_str(j, "target", pt->target);
	json_kv_str(j, "staging", pt->stage);
	json_kv_u64(j, "files_copied", pt->tot.files);
	json_kv_u64(j, "bytes", pt->tot.bytes);
	json_kv_u64(j, "sstables_skipped", pt->tot.present);
	json_kv_u64(j, "sstables_renamed", pt->tot.renamed);
	json_kv_u64(j, "conflicts", pt->tot.conflicts);
	json_kv_u64(j, "files_left_out", pt->tot.left_out);
	json_key(j, "nodetool");
	if (o->whole_node) { /* Cassandra is stopped: it reads the files when it starts */
		json_null(j);
		json_object_end(j);
		return;
	}
	json_object_begin(j);
	json_key(j, "argv");
	json_array_begin(j);
	for (size_t k = 0; k < pt->command.n; k++)
		json_str(j, pt->command.v[k]);
	json_array_end(j);
	json_kv_str(j, "command", cmd);
	json_kv_bool(j, "ran", pt->nodetool_status >= 0);
	json_key(j, "status");
	if (pt->nodetool_status >= 0)
		json_i64(j, pt->nodetool_status);
	else
		json_null(j);
	json_object_end(j);
	json_object_end(j);
}

/* One JSON document on stdout: what was (or, with --dry-run, would be) done, per table. */
static int print_json(const struct restore_opts *o, const struct plan *p, const struct totals *tot, int rc)
{
	struct strbuf sb = {0};
	struct json j;
	json_init(&j, &sb);
	json_object_begin(&j);
	json_kv_str(&j, "backup", o->name);
	json_kv_str(&j, "store", o->store);
	json_kv_str(&j, "mode", o->import ? "import" : o->refresh ? "refresh" : o->whole_node ? "whole-node" : "copy");
	json_kv_bool(&j, "dry_run", o->dry_run);
	json_kv_i64(&j, "exit_status", rc);
	json_kv_u64(&j, "files_copied", tot->files);
	json_kv_u64(&j, "bytes", tot->bytes);
	json_kv_u64(&j, "stale_temp_files_removed", tot->stale);
	json_kv_u64(&j, "stale_staging_dirs_removed", tot->stale_stages);
	json_key(&j, "tables");
	json_array_begin(&j);
	for (size_t i = 0; i < p->n; i++)
		json_table(&j, o, &p->v[i]);
	json_array_end(&j);
	json_object_end(&j);
	int r = json_error(&j);
	if (r == 0)
		r = json_flush(&j, stdout);
	if (r < 0)
		errorf("cannot write the JSON result: %s", strerror(-r));
	sb_free(&sb);
	return r;
}

/* ---- options ------------------------------------------------------------------------------ */

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
	/* without a group, the user's primary group (by name or by number, as chown USER: takes
	 * it); a number no account has keeps the same number for its group */
	struct passwd *pw = r == 1 ? getpwnam(s) : getpwuid(uid);
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

/* Checks what the option table cannot: CLI_RUN or CB_EXIT_USAGE (said). */
static int check_args(const struct cli_command *cmd, struct restore_opts *o)
{
	if (o->import && o->refresh)
		return cli_usage_error(cmd, "--import and --refresh exclude each other");
	if (o->whole_node && (o->import || o->refresh || o->table_dirs.n || !selection_is_empty(&o->sel)))
		return cli_usage_error(cmd, "--whole-node restores every table of the node into empty data "
				       "directories: it takes no --import, --refresh, --keyspace, --table or --table-dir");
	const struct selection_entry *own = o->whole_node ? NULL : selection_node_local(&o->sel);
	if (own) {
		_cleanup_free_ char *ks = cli_escape(own->keyspace);
		return cli_usage_error(cmd, "keyspace %s: a node's own tables (its identity, tokens and "
				       "schema) go back only with the whole node (--whole-node, Cassandra "
				       "stopped)", ks ? ks : "");
	}
	if (o->from_node && o->node)
		return cli_usage_error(cmd, "give the node once: --node NODE, or --from-node NODE for "
				       "another node's backup");
	if (o->set_tokens && !o->whole_node)
		return cli_usage_error(cmd, "--set-tokens goes with --whole-node");
	if (o->create_schema && o->whole_node)
		return cli_usage_error(cmd, "--whole-node brings the schema back with the system keyspaces; "
				       "--create-schema is for restoring tables into a running cluster");
	for (size_t i = 0; i < o->cqlsh_options.n; i++) {
		const char *why = cqlsh_option_problem(o->cqlsh_options.v[i]);
		if (why)
			return cli_usage_error(cmd, "--cqlsh-option %s: %s", o->cqlsh_options.v[i], why);
	}
	if (o->owner && parse_owner(o, o->owner) < 0)
		return CB_EXIT_USAGE;
	if (o->whole_node && !o->owner) {
		if (whole_node_default_owner(&o->uid, &o->gid) < 0)
			return cli_usage_error(cmd, "--whole-node: no user cassandra on this machine to own the "
					       "restored files; give --owner USER[:GROUP]");
		o->have_owner = true;
	}
	for (size_t i = 0; i < o->table_dirs.n; i++) {
		char *eq = strchr(o->table_dirs.v[i], '='), *dot = strchr(o->table_dirs.v[i], '.');
		if (!eq || !dot || dot > eq)
			return cli_usage_error(cmd, "--table-dir %s: expected KEYSPACE.TABLE=PATH", o->table_dirs.v[i]);
	}
	return CLI_RUN;
}

/* What must hold before anything is read or written: every --data-dir is a Cassandra data
 * directory, and nodetool can be run when it will be. 0 or the exit status (said). */
static int check_environment(const struct restore_opts *o)
{
	for (size_t i = 0; !o->whole_node && i < o->data_dirs.n; i++) {
		struct strbuf why = {0};
		int r = plan_check_data_dir(o->data_dirs.v[i], &why);
		if (r < 0)
			errorf("--data-dir %s: %s; nothing was restored", o->data_dirs.v[i], why.buf ? why.buf : strerror(-r));
		sb_free(&why);
		if (r < 0)
			return CB_EXIT_USAGE;
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
	return r < 0 ? CB_EXIT_USAGE : 0;
}

/* --whole-node, once the backup's tables are known: the backup can bring a node back, every
 * data directory is empty (but for what an interrupted run of this restore left), and no
 * Cassandra answers on this node. 0, or the exit status (said: nothing was restored). */
static int check_whole_node(const struct restore_opts *o, const struct tables *ts)
{
	struct strbuf why = {0};
	_cleanup_free_ char *name = cli_escape(o->name);
	int rc = 0, r = whole_node_check_backup(ts, &why);
	if (r < 0) {
		errorf("cannot restore backup %s as a whole node: %s; nothing was restored",
		       name ? name : "", why.buf ? why.buf : strerror(-r));
		rc = r == -ENOMEM ? CB_EXIT_FAILED : CB_EXIT_USAGE; /* a backup not fit for it */
	}
	for (size_t i = 0; rc == 0 && i < o->data_dirs.n; i++) {
		why.len = 0;
		struct stat st;
		if ((r = whole_node_check_data_dir(o->data_dirs.v[i], ts, &why)) == -ENOENT &&
		    stat(o->data_dirs.v[i], &st) < 0 && errno == ENOENT) {
			errorf("--data-dir %s: %s; make it, empty and owned by the user Cassandra runs "
			       "as, and run again; nothing was restored", o->data_dirs.v[i],
			       why.buf ? why.buf : strerror(-r));
			rc = CB_EXIT_USAGE;
		} else if (r < 0) {
			errorf("--data-dir %s: %s; a whole-node restore writes only into empty data "
			       "directories (move it aside); nothing was restored", o->data_dirs.v[i],
			       why.buf ? why.buf : strerror(-r));
			rc = CB_EXIT_USAGE;
		}
	}
	why.len = 0;
	if (rc == 0 && (r = whole_node_cassandra_answers(o->nodetool, &why)) != 0) {
		if (r > 0)
			errorf("Cassandra is running on this node (%s); stop it before a whole-node "
			       "restore; nothing was restored", why.buf ? why.buf : "nodetool answered");
		else
			errorf("out of memory");
		rc = r > 0 ? CB_EXIT_USAGE : CB_EXIT_FAILED; /* a node to stop: as a directory to empty */
	}
	sb_free(&why);
	return rc;
}

/* After a whole-node restore: the tokens the node had, set in cassandra.yaml (--set-tokens)
 * or printed for the operator to set. 0, or CB_EXIT_FAILED (said). */
static int keep_tokens(const struct restore_opts *o)
{
	struct manifest *m = NULL;
	struct strbuf err = {0}, tokens = {0}, yaml = {0};
	int rc = CB_EXIT_FAILED, r = store_read_manifest(o->st, o->ref.v[0], &m, NULL, &err);
	for (size_t i = 0; r == 0 && i < m->ntokens; i++)
		r = sb_printf(&tokens, "%s%s", i ? " " : "", m->tokens[i]);
	if (r < 0) {
		errorf("cannot read the tokens of backup %s: %s", o->name, err.buf ? err.buf : strerror(-r));
	} else if (!tokens.len) {
		errorf("backup %s recorded no tokens: set initial_token in cassandra.yaml to the node's "
		       "tokens before it starts, with auto_bootstrap: false", o->name);
	} else if (o->set_tokens) {
		const char *conf = o->cassandra_conf ? o->cassandra_conf : "/etc/cassandra";
		r = sb_printf(&yaml, "%s/cassandra.yaml", conf) ?: whole_node_set_tokens(yaml.buf, tokens.buf, &err);
		if (r < 0)
			errorf("--set-tokens: %s", err.buf ? err.buf : strerror(-r));
		else if (!o->json)
			printf("set num_tokens: %zu, initial_token and auto_bootstrap: false in %s (it was "
			       "kept as %s.before-cassbackup)\n", m->ntokens, yaml.buf, yaml.buf);
		rc = r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
	} else if (whole_node_yaml_lines(tokens.buf, &yaml) == 0) {
		if (!o->json)
			printf("before Cassandra starts, set in cassandra.yaml (or run again with --set-tokens):\n%s",
			       yaml.buf);
		rc = CB_EXIT_OK;
	}
	manifest_free(m);
	sb_free(&err);
	sb_free(&tokens);
	sb_free(&yaml);
	return rc;
}

/* Plans the restore: the staging paths and the nodetool command of every table. The exit
 * status when it cannot go on (said), else CLI_RUN. */
static int plan_restore(catalog *cat, struct restore_opts *o, const struct tables *ts, struct plan *p)
{
	int r = make_plan(cat, o, ts, p);
	if (r < 0)
		return r == -ENOTEMPTY ? CB_EXIT_USAGE : CB_EXIT_FAILED; /* a directory to empty */
	for (size_t i = 0; !p->bad && i < p->n; i++)
		if ((o->import && plan_stage(&p->v[i]) < 0) || nodetool_cmd(o, &p->v[i]) < 0) {
			errorf("out of memory");
			return CB_EXIT_FAILED;
		}
	if (p->bad) {
		errorf("nothing was restored");
		return CB_EXIT_FAILED;
	}
	if (o->dry_run)
		for (size_t i = 0; i < p->n; i++)
			for (size_t u = 0; u < p->v[i].nunits; u++)
				count_unit(o, &p->v[i], &p->v[i].units[u]);
	if (p->system_left && !o->json)
		printf("note: %zu table%s of the system keyspaces left out: --whole-node brings a node's "
		       "own back; --keyspace names system_auth, system_distributed or system_traces\n",
		       p->system_left, p->system_left == 1 ? "" : "s");
	return CLI_RUN;
}

/* Which node backup of NAME is restored (into o->ref): --node's or --from-node's, else the
 * only one, else this node's (its host id as nodetool info tells). A backup of another node
 * than this one (host ids differ) is refused without --from-node: its tokens, and so the
 * replicas it holds, are another node's (load streams it to the nodes that own its rows).
 * --whole-node asks nodetool nothing: Cassandra is stopped, the node to bring back is named.
 * 0, or the exit status (said). */
/* --whole-node without --node takes a node's identity and tokens from the only node backup of
 * the name, which is this node's only if the cluster had no other: when the ring it recorded
 * has more nodes (a cluster backup the others have not committed to yet, or lost), says so and
 * returns true. */
static bool refuse_whole_node_of_a_ring(const char *name, const struct node_backup *b)
{
	if (b->nring <= 1)
		return false;
	_cleanup_free_ char *who = node_backup_label(b), *shown = cli_escape(name);
	errorf("backup %s was made in a cluster of %zu nodes and holds only the backup of %s so far: "
	       "a whole-node restore takes that node's identity and tokens, so name it with --node "
	       "(host id, node name or address) to restore it here; nothing was restored",
	       shown ? shown : "", b->nring, who ? who : b->node);
	return true;
}

static int pick_node_backup(catalog *cat, struct restore_opts *o)
{
	_cleanup_free_ char *local = NULL;
	const char *node = o->from_node ? o->from_node : o->node;
	if (!o->whole_node && cluster_local_host_id(o->nodetool, &local) < 0) {
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	struct node_backups l = {0};
	int r = node ? 0 : node_backups_named(cat, o->name, &l); /* how many, or -errno */
	if (r > 1 && !node && local)
		node = local; /* several: this node's, as nodetool tells it */
	if (r == 1 && !node && o->whole_node && refuse_whole_node_of_a_ring(o->name, &l.v[0])) {
		node_backups_free(&l);
		return CB_EXIT_USAGE;
	}
	node_backups_free(&l);
	int rc = cluster_pick(o->st, o->store, o->name, node, false, &o->ref);
	if (rc != 0 || !local || o->from_node)
		return rc;
	struct node_backups picked = {0};
	node_backups_named(cat, o->name, &picked);
	for (size_t i = 0; rc == 0 && i < picked.n; i++) {
		const struct node_backup *b = &picked.v[i];
		if (strcmp(b->ref, o->ref.v[0]) || !*b->host_id || !strcasecmp(b->host_id, local))
			continue;
		_cleanup_free_ char *who = node_backup_label(b);
		errorf("backup %s of %s is another node's than this one (host id %s, as nodetool info "
		       "tells): its tokens and replicas differ; restore it here on purpose with --from-node "
		       "%s, or stream it to the nodes that own its rows with load; nothing was restored",
		       o->name, who ? who : b->node, local, b->host_id);
		rc = CB_EXIT_USAGE;
	}
	node_backups_free(&picked);
	return rc;
}

/* Plans, then copies (or prints the plan), then tells Cassandra. The exit status. */
/* --create-schema: what the target lacks of the selected tables, created through cqlsh from
 * the backup's DDL (schema_ddl.h). 0, the exit code (said), or -1: a dry run that would create
 * tables, whose restore cannot be planned before they exist (said; exit 0). */
static int create_schema(struct restore_opts *o, const struct tables *ts)
{
	_cleanup_free_ struct ddl_table *v = calloc(ts->n + 1, sizeof(*v));
	_cleanup_free_ char *ddl = NULL;
	if (!v) {
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	size_t n = 0;
	for (size_t i = 0; i < ts->n; i++) /* asks selection_matches as make_plan will */
		if (selection_matches(&o->sel, ts->v[i].keyspace, ts->v[i].table))
			v[n++] = (struct ddl_table){ts->v[i].keyspace, ts->v[i].table, ts->v[i].schema_cql};
	int rc = schema_read_backup_ddl(o->st, o->ref.v[0], &ddl);
	o->cqlsh.options = &o->cqlsh_options;
	struct schema_create sc = {.cqlsh = &o->cqlsh, .backup_ddl = ddl, .tables = v, .ntables = n,
				   .dry_run = o->dry_run, .to_stderr = o->json};
	rc = rc ?: schema_create_missing(&sc);
	if (rc == 0 && sc.created && o->dry_run) { /* no directory to plan the new tables into */
		fprintf(o->json ? stderr : stdout,
			"dry run: nothing was created or restored; the tables would be restored next\n");
		return -1;
	}
	return rc;
}

static int restore_backup(struct restore_opts *o)
{
	catalog *cat = NULL;
	readback *rb = NULL;
	struct tables ts = {0};
	struct plan p = {0};
	struct totals tot = {0};
	struct failure fail = {.damaged = false};
	int rc = cli_store_open(o->store, STORE_READONLY, &o->st), r;
	if (rc != 0)
		goto out;
	rc = CB_EXIT_FAILED;
	cat = store_catalog(o->st);
	if (readback_new(o->st, &cancel_requested, &rb) < 0) {
		errorf("cannot open store %s: out of memory", o->store);
		goto out;
	}
	/* the plan is read from one state of the catalog (a reindex beside it may renumber rows) */
	if ((r = catalog_read_begin(cat)) < 0) {
		char why[512];
		errorf("cannot read catalog of %s: %s", o->store, catalog_why(cat, r, why, sizeof(why)));
		goto out;
	}
	if ((rc = pick_node_backup(cat, o)) != 0)
		goto out;
	rc = CB_EXIT_FAILED;
	if ((r = load_tables(o->st, o->store, o->ref.v[0], &ts)) < 0) {
		rc = r == -ENOENT ? CB_EXIT_MISSING : CB_EXIT_FAILED;
		goto out;
	}
	if (o->whole_node && (rc = check_whole_node(o, &ts)) != 0)
		goto out;
	if (o->create_schema && (rc = create_schema(o, &ts)) != 0) {
		rc = rc < 0 ? CB_EXIT_OK : rc;
		goto out;
	}
	if ((rc = plan_restore(cat, o, &ts, &p)) != CLI_RUN)
		goto out;
	catalog_rollback(cat);
	if (o->dry_run) {
		if (!o->json) {
			print_plan(o, &p);
			printf("dry run: nothing was written\n");
		}
		rc = CB_EXIT_OK;
	} else if ((r = execute_plan(rb, o, &p, &tot, &fail)) < 0) {
		rc = report_failure(o, &tot, &fail);
	} else {
		report_done(o, &tot, p.n);
		if (o->whole_node)
			rc = r > 0 || tot.conflicts ? CB_EXIT_FAILED : keep_tokens(o);
		else
			rc = tell_cassandra(o, &p) || r > 0 || tot.conflicts ? CB_EXIT_FAILED : CB_EXIT_OK;
	}
	if (o->json && print_json(o, &p, &tot, rc) < 0)
		rc = CB_EXIT_FAILED;
out:
	if (cat)
		catalog_rollback(cat);
	plan_free(&p);
	tables_free(&ts);
	readback_free(rb);
	store_close(o->st);
	return rc;
}

static const char *const restore_usage[] = {
	"--store DIR --data-dir DIR [--data-dir DIR]... NAME",
	"  [--keyspace KS]... [--table KS.TABLE]... [--table-dir KS.TABLE=PATH]...",
	"  [--dry-run] [--owner USER[:GROUP]] [--import | --refresh] [--nodetool PATH] [--json]",
	"  [--create-schema [--cqlsh PROGRAM] [--cqlsh-host HOST] [--cqlsh-option ARG]...]",
	"--store DIR --data-dir DIR [--data-dir DIR]... --whole-node NAME",
	"  [--owner USER[:GROUP]] [--set-tokens [--cassandra-conf DIR]] [--dry-run] [--json]",
	"--store DIR --data-dir DIR... --point-in-time 'yyyy:MM:dd HH:mm:ss' --cassandra-conf DIR [NAME]",
	"  [--node NAME] [--segments-dir DIR] [--keyspace KS]... [--table KS.TABLE]... [...]",
	"--point-in-time-done --cassandra-conf DIR",
	"--store DIR --conf DIR [--node NODE] [--force] NAME",
	NULL,
};

/* --point-in-time: the backup comes from the time (or is checked against it), the restore runs
 * as without, then the commitlog segments and Cassandra's settings follow (pitr.h). */
static int restore_point_in_time(const struct cli_command *cmd, struct restore_opts *o, struct pitr *p)
{
	struct strbuf err = {0};
	p->cassandra_conf = o->cassandra_conf ? o->cassandra_conf : "/etc/cassandra";
	if (o->json)
		return cli_usage_error(cmd, "--point-in-time does not print JSON");
	if (pitr_parse_time(p->time, &p->time_ms, &err) < 0) {
		int rc = cli_usage_error(cmd, "--point-in-time '%s': %s", p->time, err.buf ? err.buf : "");
		sb_free(&err);
		return rc;
	}
	p->backup = o->name;
	p->node = o->node; /* --node: whose backup and segments (host id or node name) */
	p->data_dir = o->data_dirs.n ? o->data_dirs.v[0] : NULL;
	p->dry_run = o->dry_run;
	p->sel = &o->sel;
	p->whole_node = o->whole_node;
	int rc = pitr_plan(p, o->store) ?: pitr_fetch(p, o->store);
	if (rc != 0)
		return rc;
	o->name = p->backup_name;
	o->node = p->backup_node; /* that node's backup of the name, whatever --node said */
	o->point_in_time = true;
	rc = restore_backup(o);
	if (rc != CB_EXIT_OK) {
		pitr_unfetch(p);
		errorf("the backup was not restored whole; no commitlog replay was set up");
		return rc;
	}
	return pitr_apply(p);
}

int cmd_restore(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--point-in-time-done"))
			return cmd_restore_pitr_done(argc, argv);
		else if (!strcmp(argv[i], "--conf") || !strncmp(argv[i], "--conf=", 7))
			return cmd_restore_conf(argc, argv);
	struct restore_opts o = {0};
	struct pitr pt = {0};
	bool done = false; /* taken by cmd_restore_pitr_done above; here for --help */
	struct cli_option opts[] = {
		{.name = "node", .type = OPT_STRING, .value = &o.node, .arg = "NODE",
		 .help = "the node whose backup NAME to restore, when several nodes have one (host id, "
			 "a prefix of it, node name or address)"},
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "data-dir", .short_name = 'd', .type = OPT_STRINGS, .value = &o.data_dirs, .arg = "DIR",
		 .help = "a data directory of this node (data_file_directories; repeatable)",
		 .config_key = "data_dir", .flags = OPT_REQUIRED},
		{.name = "keyspace", .short_name = 'k', .type = OPT_KEYSPACE, .value = &o.sel, .arg = "KS",
		 .help = "restore only this keyspace (repeatable)"},
		{.name = "table", .short_name = 'T', .type = OPT_TABLE, .value = &o.sel, .arg = "KS.TABLE",
		 .help = "restore only this table (repeatable)"},
		{.name = "table-dir", .type = OPT_STRINGS, .value = &o.table_dirs, .arg = "KS.TABLE=PATH",
		 .help = "the live directory of KS.TABLE, when the data directories hold several"},
		{.name = "dry-run", .short_name = 'n', .type = OPT_FLAG, .value = &o.dry_run,
		 .help = "print the plan, write nothing"},
		{.name = "owner", .type = OPT_STRING, .value = &o.owner, .arg = "USER[:GROUP]",
		 .help = "owner of the files (default: the target table directory's)"},
		{.name = "import", .type = OPT_FLAG, .value = &o.import,
		 .help = "stage each table on the target's file system, run nodetool import on it"},
		{.name = "refresh", .type = OPT_FLAG, .value = &o.refresh,
		 .help = "copy into the table directories, then run nodetool refresh"},
		{.name = "nodetool", .type = OPT_STRING, .value = &o.nodetool, .arg = "PATH",
		 .help = "the nodetool to run", .config_key = "nodetool"},
		{.name = "json", .type = OPT_FLAG, .value = &o.json,
		 .help = "print one JSON document with the result per table"},
		{.name = "from-node", .type = OPT_STRING, .value = &o.from_node, .arg = "NODE",
		 .help = "restore another node's backup here, on purpose (as --node takes it)"},
		{.name = "whole-node", .type = OPT_FLAG, .value = &o.whole_node,
		 .help = "bring the whole node back (Cassandra stopped) into empty data directories"},
		{.name = "set-tokens", .type = OPT_FLAG, .value = &o.set_tokens,
		 .help = "with --whole-node: set num_tokens, initial_token and auto_bootstrap in cassandra.yaml"},
		{.name = "cassandra-conf", .type = OPT_STRING, .value = &o.cassandra_conf, .arg = "DIR",
		 .help = "Cassandra's configuration directory (default /etc/cassandra): where --set-tokens and --point-in-time write",
		 .config_key = "cassandra_conf"},
		{.name = "create-schema", .type = OPT_FLAG, .value = &o.create_schema,
		 .help = "first create, through cqlsh, the keyspaces, types and tables the target lacks"},
		{.name = "cqlsh", .type = OPT_STRING, .value = &o.cqlsh.program, .arg = "PROGRAM",
		 .help = "the cqlsh program (default: cqlsh from PATH)", .config_key = "cqlsh"},
		{.name = "cqlsh-host", .type = OPT_STRING, .value = &o.cqlsh.host, .arg = "HOST",
		 .help = "the host cqlsh connects to (default: cqlsh's, 127.0.0.1)", .config_key = "cqlsh_host"},
		{.name = "cqlsh-option", .type = OPT_STRINGS, .value = &o.cqlsh_options, .arg = "ARG",
		 .help = "an argument for cqlsh, such as --ssl or --cqlshrc=FILE (repeatable)",
		 .config_key = "cqlsh_option"},
		{.name = "point-in-time", .type = OPT_STRING, .value = &pt.time, .arg = "'yyyy:MM:dd HH:mm:ss'",
		 .help = "restore the node as it was then (GMT): a backup, then a commitlog replay"},
		{.name = "node", .type = OPT_STRING, .value = &pt.node, .arg = "NAME",
		 .help = "the node whose backup and segments --point-in-time takes (default: this host)",
		 .config_key = "node"},
		{.name = "segments-dir", .type = OPT_STRING, .value = &pt.segments_dir, .arg = "DIR",
		 .help = "where --point-in-time puts the segments (default: commitlog_restore beside --data-dir)"},
		{.name = "ignore-segment-gaps", .type = OPT_FLAG, .value = &pt.ignore_gaps,
		 .help = "with --point-in-time: go on past ids missing within a run of the node\n"
			 "(the one a restart with the clock stepped back skips)"},
		{.name = "point-in-time-done", .type = OPT_FLAG, .value = &done,
		 .help = "after the replay: remove the settings and segments --point-in-time wrote (alone, with --cassandra-conf)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "restore",
		.usage = restore_usage,
		.operands = "NAME",
		.min_operands = 0,
		.max_operands = 1,
		.description = "Copies the backup's tables into the live <table>-<id> directories of this node\n"
			       "(owner: the target table directory's, or --owner). Without --import or --refresh\n"
			       "it prints the nodetool command to run next. --import copies each table once,\n"
			       "into a staging directory on the target's file system that nodetool import\n"
			       "moves into the table, and removes the staging directory afterwards.\n"
			       "--create-schema first creates, through cqlsh, the keyspaces, types and tables the\n"
			       "target lacks (IF NOT EXISTS; nothing existing is changed) from the backup's\n"
			       "schema.cql (cqlsh DESCRIBE SCHEMA at backup time), else from each table's own.\n"
			       "--whole-node brings a stopped node back onto empty data directories (a\n"
			       "replaced disk, new hardware): every keyspace of the backup, system ones\n"
			       "included, into <keyspace>/<table>-<id> directories it makes, owned by the\n"
			       "cassandra user (or --owner); then it prints the num_tokens, initial_token\n"
			       "and auto_bootstrap lines for cassandra.yaml, or sets them with --set-tokens.\n"

			       "--point-in-time restores the node's last backup made before that time, copies\n"
			       "the commitlog segments archived since into --segments-dir and writes\n"
			       "commitlog_archiving.properties, so that Cassandra replays them up to the time\n"
			       "at its next start; --point-in-time-done removes those settings afterwards.\n"
			       "--conf DIR writes the Cassandra configuration files the backup kept into DIR\n"
			       "(alone, with --store, --node, --force: 'cassbackup restore --conf X --help').",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc == CLI_RUN) {
		o.name = first < argc ? argv[first] : NULL;
		rc = !o.name && !pt.time ? cli_usage_error(&cmd, "missing NAME (or --point-in-time)")
					 : check_args(&cmd, &o);
	}
	if (rc == CLI_RUN)
		rc = check_environment(&o) ?: pt.time ? restore_point_in_time(&cmd, &o, &pt) : restore_backup(&o);
	pitr_free(&pt);
	strv_free(&o.data_dirs);
	strv_free(&o.table_dirs);
	strv_free(&o.cqlsh_options);
	selection_free(&o.sel);
	strv_free(&o.ref);
	return rc;
}
