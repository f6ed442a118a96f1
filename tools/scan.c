/* scan.c: see scan.h. */
#include "scan.h"
#include "sstable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

/* Files in a snapshot directory that are never backed up. */
static bool excluded(const char *name)
{
	return fnmatch("*_txn_*.log", name, 0) == 0 || strncmp(name, "tmp-", 4) == 0 ||
	       strncmp(name, "tmplink-", 8) == 0 || strncmp(name, TAKEN_FILE, strlen(TAKEN_FILE)) == 0;
}

/* Splits "<table>-<32 hex>" into table and id; other names are id-less tables. */
static void split_table_dir(const char *name, char **table, char **id)
{
	size_t n = strlen(name);
	if (n > 33 && name[n - 33] == '-' && strspn(name + n - 32, "0123456789abcdef") == 32) {
		*table = strndup(name, n - 33);
		*id = strdup(name + n - 32);
	} else {
		*table = strdup(name);
		*id = strdup("");
	}
}

struct names { char **v; size_t n; };

static int names_add_unique(struct names *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return 0;
	char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	if (!(s->v[s->n] = strdup(name)))
		return -ENOMEM;
	s->n++;
	return 0;
}

static void names_free(struct names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct ctx {
	const struct scan_opts *o;
	struct scan_result *res;
	struct strbuf *err;
	struct names tags;   /* other tags seen, for the error message */
	struct names untagged; /* "<ks>/<table>" of a directory with live sstables, no snapshot */
};

static bool wanted(struct ctx *c, const char *ks, const char *table)
{
	if (!selection_is_empty(c->o->sel))
		return selection_matches(c->o->sel, ks, table); /* a named system table is wanted */
	return c->o->include_system || !is_system_keyspace(ks);
}

static struct scan_table *find_or_add_table(struct ctx *c, const char *ks, const char *table,
					    const char *id, const char *dirname, int *r)
{
	struct scan_result *res = c->res;
	for (size_t i = 0; i < res->ntables; i++) {
		struct scan_table *t = &res->tables[i];
		if (strcmp(t->keyspace, ks) || strcmp(t->table, table))
			continue;
		if (strcmp(t->table_id, id) != 0) {
			sb_printf(c->err, "table %s.%s: %s found in two table directories with "
				  "different ids (%s and %s); was the table dropped and re-created?%s",
				  ks, table, c->o->backups ? "backups/" : "snapshot", t->dirname, dirname,
				  c->o->backups ? " move the dropped one's backups/ out of the data directory" : "");
			*r = -EINVAL;
			return NULL;
		}
		return t;
	}
	struct scan_table *v = realloc(res->tables, (res->ntables + 1) * sizeof(*v));
	if (!v) {
		*r = -ENOMEM;
		return NULL;
	}
	res->tables = v;
	struct scan_table *t = &v[res->ntables++];
	*t = (struct scan_table){0};
	t->keyspace = strdup(ks);
	t->table = strdup(table);
	t->table_id = strdup(id);
	t->dirname = strdup(dirname);
	if (!t->keyspace || !t->table || !t->table_id || !t->dirname) {
		*r = -ENOMEM;
		return NULL;
	}
	return t;
}

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

/* Reads a whole small file from fd (closed here) into a NUL-terminated buffer. */
static int read_fd_small(int fd, size_t max, char **out, size_t *len)
{
	*out = NULL;
	if (fd < 0)
		return fd;
	struct strbuf sb = {0};
	char buf[8192];
	ssize_t n;
	int r = sb_puts(&sb, "");
	while (r == 0 && (n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0)
			r = errno == EINTR ? 0 : -errno;
		else if (sb.len + (size_t)n > max)
			r = -EFBIG;
		else
			r = sb_append(&sb, buf, (size_t)n);
	}
	close(fd);
	if (r < 0) {
		sb_free(&sb);
		return r;
	}
	*out = sb.buf;
	if (len)
		*len = sb.len;
	return 0;
}

bool scan_file_below(const struct scan_file *f, const char *dir)
{
	size_t n = strlen(f->data_dir);
	if (strncmp(dir, f->data_dir, n) != 0 || dir[n] != '/')
		return false;
	const char *below = dir + n + 1;
	size_t m = strlen(below);
	return !strncmp(f->rel, below, m) && f->rel[m] == '/';
}

int scan_open_file(const struct scan_file *f)
{
	int dfd = open(f->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	_cleanup_free_ char *rel = strdup(f->rel);
	if (!rel) {
		close(dfd);
		return -ENOMEM;
	}
	char *p = rel, *slash;
	while ((slash = strchr(p, '/'))) {
		*slash = '\0';
		int fd = openat(dfd, p, DIR_FLAGS);
		int e = errno;
		close(dfd);
		if (fd < 0)
			return -e;
		dfd = fd;
		p = slash + 1;
	}
	int fd = openat(dfd, p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int e = errno;
	close(dfd);
	return fd < 0 ? -e : fd;
}

/* The directory holding a scanned file, opened as scan_open_file walks; *leaf points into
 * *rel (the caller frees *rel). The fd or -errno. */
static int open_parent(const struct scan_file *f, char **rel, const char **leaf)
{
	int dfd = open(f->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (!(*rel = strdup(f->rel))) {
		close(dfd);
		return -ENOMEM;
	}
	char *p = *rel, *slash;
	while ((slash = strchr(p, '/'))) {
		*slash = '\0';
		int fd = openat(dfd, p, DIR_FLAGS);
		int e = errno;
		close(dfd);
		if (fd < 0)
			return -e;
		dfd = fd;
		p = slash + 1;
	}
	*leaf = p;
	return dfd;
}

int scan_remove_file(const struct scan_file *f, const struct stat *was)
{
	_cleanup_free_ char *rel = NULL;
	const char *leaf = NULL;
	int dfd = open_parent(f, &rel, &leaf);
	if (dfd < 0)
		return dfd;
	struct stat st;
	int r = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (r == 0 && (!S_ISREG(st.st_mode) || st.st_ino != was->st_ino || st.st_dev != was->st_dev ||
		       st.st_size != was->st_size || st.st_mtim.tv_sec != was->st_mtim.tv_sec ||
		       st.st_mtim.tv_nsec != was->st_mtim.tv_nsec))
		r = -ESTALE;
	if (r == 0 && unlinkat(dfd, leaf, 0) < 0)
		r = -errno;
	close(dfd);
	return r;
}

int scan_read_small(const struct scan_file *f, size_t max, char **out, size_t *len)
{
	return read_fd_small(scan_open_file(f), max, out, len);
}

static bool same_contents(const struct scan_file *a, const struct scan_file *b)
{
	char *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	bool same = read_fd_small(scan_open_file(a), 1 << 20, &x, &xl) == 0 &&
		    read_fd_small(scan_open_file(b), 1 << 20, &y, &yl) == 0 && xl == yl &&
		    memcmp(x, y, xl) == 0;
	free(x);
	free(y);
	return same;
}

/* Adds a copy of path to the list v of n. 0 or -ENOMEM. */
static int note_path(char ***v, size_t *n, const char *path)
{
	char *p = strdup(path);
	if (!p || ptrv_push(v, n, p) < 0) {
		free(p);
		return -ENOMEM;
	}
	return 0;
}

/* Notes a symlink that is not followed. */
static int skip_link(struct ctx *c, const char *path)
{
	return note_path(&c->res->skipped, &c->res->nskipped, path);
}

/* Notes an entry that is neither a file nor an index directory, left out (scan.h). */
static int skip_other(struct ctx *c, const char *path)
{
	return note_path(&c->res->others, &c->res->nothers, path);
}

/* Notes a directory on another file system than its parent's, not crossed (scan.h). */
static int skip_mount(struct ctx *c, const char *path)
{
	return note_path(&c->res->mounts, &c->res->nmounts, path);
}

/* Where a directory being scanned is: its fd and its path (for messages and scan_file.src). */
struct place {
	int fd;
	const char *path;
	const char *data_dir;
};

static int add_file(struct ctx *c, struct scan_table *t, const struct place *dir, const char *path,
		    const char *name, int idx, const struct stat *st)
{
	for (size_t i = 0; i < t->nfiles; i++) {
		if (t->files[i].dir != idx || strcmp(t->files[i].name, name) != 0)
			continue;
		/* Snapshot metadata written in more than one data directory: one copy is enough;
		 * if they differ, the first is kept. Two sstable components of one name are an
		 * error: one of them would be lost. */
		if (idx < 0 && (!strcmp(name, "manifest.json") || !strcmp(name, "schema.cql"))) {
			struct scan_file other = {.data_dir = dir->data_dir,
						  .rel = path + strlen(dir->data_dir) + 1};
			if (!same_contents(&t->files[i], &other))
				fprintf(stderr, "cassbackup: table %s.%s: %s differs between %s and %s; "
					"keeping the first, ignoring\n", t->keyspace, t->table, name,
					t->files[i].src, path);
			return 0;
		}
		sb_printf(c->err, "table %s.%s: %s is in two data directories (%s and %s)",
			  t->keyspace, t->table, name, t->files[i].src, path);
		return -EEXIST;
	}
	struct scan_file *v = realloc(t->files, (t->nfiles + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->files = v;
	struct scan_file *f = &v[t->nfiles++];
	*f = (struct scan_file){.dir = idx, .st = *st, .data_dir = dir->data_dir};
	f->name = strdup(name);
	f->src = strdup(path);
	if (!f->name || !f->src)
		return -ENOMEM;
	f->rel = f->src + strlen(dir->data_dir) + 1;
	c->res->nfiles++;
	c->res->bytes += (uint64_t)st->st_size;
	char **keep = NULL;
	if (idx < 0 && strcmp(name, "schema.cql") == 0)
		keep = &t->schema_cql;
	else if (idx < 0 && strcmp(name, "manifest.json") == 0)
		keep = &t->manifest;
	if (keep && !*keep) {
		int fd = openat(dir->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		int r = read_fd_small(fd < 0 ? -errno : fd, 16 << 20, keep,
				      keep == &t->manifest ? &t->manifest_len : NULL);
		if (r < 0) {
			sb_printf(c->err, "cannot read %s: %s", path, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int find_dir(struct scan_table *t, const char *name, const struct stat *st)
{
	for (size_t i = 0; i < t->ndirs; i++)
		if (strcmp(t->dirs[i].name, name) == 0)
			return (int)i;
	struct scan_dir *v = realloc(t->dirs, (t->ndirs + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->dirs = v;
	v[t->ndirs] = (struct scan_dir){.name = strdup(name), .st = *st};
	if (!v[t->ndirs].name)
		return -ENOMEM;
	return (int)t->ndirs++;
}

/* Opens name in parent as a directory without following a symlink: *child gets its fd and
 * path (path_buf holds it). 0, 1 when name is a symlink (noted, skipped), or -errno with
 * c->err set. */
static int open_place(struct ctx *c, const struct place *parent, const char *name,
		      struct place *child, struct strbuf *path_buf)
{
	path_buf->len = 0;
	int r = sb_printf(path_buf, "%s/%s", parent->path, name);
	if (r < 0)
		return r;
	int fd = openat(parent->fd, name, DIR_FLAGS);
	if (fd < 0) {
		r = -errno;
		struct stat st;
		if ((r == -ELOOP || r == -ENOTDIR) &&
		    fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			return skip_link(c, path_buf->buf) ?: 1;
		sb_printf(c->err, "cannot read %s: %s", path_buf->buf, strerror(-r));
		return r;
	}
	*child = (struct place){.fd = fd, .path = path_buf->buf, .data_dir = parent->data_dir};
	return 0;
}

/* --- a table dropped and made again (incremental backups only) ---------------------------- */

/* Slack for a drop snapshot's time (named before the flush it makes: ColumnFamilyStore
 * snapshot() flushes, then links) against the times of files, when telling a dropped table's
 * directory (is_dropped_dir). A file of backups/ is from before a drop when it is no newer
 * than the snapshot's name or is one of its files (the flush's are linked there too); from
 * before a truncate when no newer than its name: truncateBlocking flushes, then takes
 * truncatedAt, then names its snapshot, and a flush after the name is data the truncate kept
 * (discardSSTables drops only sstables no newer than truncatedAt). */
#define DROP_SLACK_MS 60000

/* Calls fn for each entry of directory parent/name (NULL: parent itself) but . and ..; stops
 * at the first true it returns, and returns it. false when the directory cannot be read. */
static bool any_entry(int parent, const char *name, bool (*fn)(int dfd, const char *entry, void *ctx),
		      void *ctx)
{
	int fd = openat(parent, name ? name : ".", DIR_FLAGS);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			found = fn(dirfd(d), e->d_name, ctx);
	closedir(d);
	return found;
}

/* For the newest snapshot named "<prefix><millis>-<name>". */
struct marker {
	const char *prefix;
	int64_t newest;
	char name[NAME_MAX + 1]; /* its directory's name */
};

static bool note_marker(int dfd, const char *entry, void *ctx)
{
	(void)dfd;
	struct marker *m = ctx;
	size_t pl = strlen(m->prefix);
	char *end;
	if (strncmp(entry, m->prefix, pl) != 0)
		return false;
	errno = 0;
	long long ms = strtoll(entry + pl, &end, 10);
	if (!errno && end != entry + pl && *end == '-' && ms > m->newest) {
		m->newest = ms;
		snprintf(m->name, sizeof(m->name), "%s", entry);
	}
	return false;
}

/* The time (ms) of the newest snapshot named prefix<millis>-... in table directory tfd, 0 for
 * none. Cassandra takes "dropped-<millis>-<name>" when a table or its keyspace is dropped and
 * "truncated-<millis>-<table>" when it is truncated (auto_snapshot; ColumnFamilyStore's
 * SNAPSHOT_DROP_PREFIX and SNAPSHOT_TRUNCATE_PREFIX). */
static int64_t last_snapshot_ms(int tfd, const char *prefix)
{
	struct marker m = {prefix, 0, ""};
	any_entry(tfd, "snapshots", note_marker, &m);
	return m.newest;
}

static bool is_live_data(int dfd, const char *entry, void *ctx)
{
	(void)ctx;
	struct stat st;
	size_t n = strlen(entry);
	return n > 8 && strcmp(entry + n - 8, "-Data.db") == 0 &&
	       fstatat(dfd, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static int64_t mtime_ms(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static bool is_newer(int dfd, const char *entry, void *ctx)
{
	const int64_t *ms = ctx;
	struct stat st;
	return fstatat(dfd, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	       mtime_ms(&st) > *ms;
}

/* Notes the file entry of a drop snapshot's directory (dfd) in t->dropped. */
static bool note_dropped_file(int dfd, const char *entry, void *ctx)
{
	struct scan_table *t = ctx;
	struct stat st;
	if (fstatat(dfd, entry, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return false;
	struct scan_inode *v = realloc(t->dropped, (t->ndropped + 1) * sizeof(*v));
	if (!v)
		return true; /* stops: the rest counts as flushed after (taken in, never lost) */
	t->dropped = v;
	v[t->ndropped++] = (struct scan_inode){st.st_dev, st.st_ino};
	return false;
}

/* When the table in directory tfd last lost all its sstables: its newest drop or truncate
 * snapshot (ms), 0 for none; until when a file of backups/ was flushed before it (the
 * snapshot's name: a truncate's is taken after its flush); and the files of the drop
 * snapshot, which links its own flush's too (named before it). */
static void note_emptied(int tfd, struct scan_table *t)
{
	struct marker d = {"dropped-", 0, ""};
	any_entry(tfd, "snapshots", note_marker, &d);
	int64_t tr = last_snapshot_ms(tfd, "truncated-");
	int64_t at = d.newest > tr ? d.newest : tr;
	if (at > t->emptied_ms)
		t->emptied_ms = at;
	if (at > t->emptied_until_ms)
		t->emptied_until_ms = at;
	char path[NAME_MAX + 16];
	snprintf(path, sizeof(path), "snapshots/%s", d.name);
	if (d.newest)
		any_entry(tfd, path, note_dropped_file, t);
}

/* Was f (a file of backups/) flushed before the table was last emptied? */
static bool before_emptied(const struct scan_table *t, const struct stat *st)
{
	if (!t->emptied_ms)
		return false;
	if (mtime_ms(st) <= t->emptied_until_ms)
		return true;
	for (size_t i = 0; i < t->ndropped; i++)
		if (t->dropped[i].dev == st->st_dev && t->dropped[i].ino == st->st_ino)
			return true;
	return false;
}

/* Whether table directory dirname (in ksfd) is a dropped table's leftover: it holds Cassandra's
 * drop snapshot, no live sstable (a drop deletes them), and nothing in backups/ flushed after
 * that drop (which a table made again under the same id, CREATE TABLE ... WITH ID, would
 * have). */
static bool is_dropped_dir(int ksfd, const char *dirname)
{
	int fd = openat(ksfd, dirname, DIR_FLAGS);
	if (fd < 0)
		return false;
	int64_t drop_ms = last_snapshot_ms(fd, "dropped-");
	int64_t after = drop_ms + DROP_SLACK_MS;
	bool dropped = drop_ms > 0 && !any_entry(fd, NULL, is_live_data, NULL) &&
		       !any_entry(fd, "backups", is_newer, &after);
	close(fd);
	return dropped;
}

static bool has_live_sstable(int ksfd, const char *dirname)
{
	return any_entry(ksfd, dirname, is_live_data, NULL);
}

/* The directory of the same table beside dirname that makes dirname a dropped table's
 * leftover, or NULL (*r: 0 or -errno, c->err said why). Only a sure case counts: dirname is a
 * dropped one (is_dropped_dir) and the other holds live sstables. Any other pair of
 * directories of one table is left to the scan, which refuses it: a guess could take a
 * dropped table's sstables for the live table's. */
static char *superseded_by(struct ctx *c, const struct place *ksdir, const char *dirname,
			   const char *table, const char *id, int *r)
{
	int fd = openat(ksdir->fd, ".", DIR_FLAGS); /* not dup: its offset is the caller's */
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	*r = 0;
	if (!d) {
		*r = -errno;
		sb_printf(c->err, "cannot read %s: %s", ksdir->path, strerror(-*r));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char *by = NULL;
	bool dropped = false, judged = false;
	struct dirent *e;
	while (!by && *r == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, dirname) == 0)
			continue;
		_cleanup_free_ char *other = NULL;
		_cleanup_free_ char *other_id = NULL;
		split_table_dir(e->d_name, &other, &other_id);
		if (!other || !other_id) {
			*r = -ENOMEM;
			break;
		}
		if (strcmp(other, table) != 0 || strcmp(other_id, id) == 0)
			continue;
		if (!judged) { /* only when the table has another directory */
			dropped = is_dropped_dir(ksdir->fd, dirname);
			judged = true;
		}
		if (dropped && has_live_sstable(ksdir->fd, e->d_name) && !(by = strdup(e->d_name)))
			*r = -ENOMEM;
	}
	closedir(d);
	if (*r == -ENOMEM)
		sb_puts(c->err, "out of memory");
	return by;
}

/* Adds the regular files of an opened snapshot dir, or of an index subdirectory when
 * idx >= 0. Closes dir->fd. */
static int scan_files(struct ctx *c, struct scan_table *t, const struct place *dir, int idx)
{
	DIR *d = fdopendir(dir->fd);
	if (!d) {
		int r = -errno;
		sb_printf(c->err, "cannot read %s: %s", dir->path, strerror(-r));
		close(dir->fd);
		return r;
	}
	struct dirent *e;
	struct stat dst;
	int r = fstat(dirfd(d), &dst) < 0 ? -errno : 0;
	if (r < 0)
		sb_printf(c->err, "cannot read %s: %s", dir->path, strerror(-r));
	struct strbuf p = {0};
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || excluded(e->d_name))
			continue;
		p.len = 0;
		if ((r = sb_printf(&p, "%s/%s", dir->path, e->d_name)) < 0)
			break;
		struct stat st;
		if (fstatat(dir->fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			sb_printf(c->err, "cannot read %s: %s", p.buf, strerror(errno));
			break;
		}
		if (S_ISREG(st.st_mode) && c->o->backups && before_emptied(t, &st)) {
			t->before_emptied++; /* data the table no longer has: left alone */
		} else if (S_ISREG(st.st_mode)) {
			r = add_file(c, t, dir, p.buf, e->d_name, idx, &st);
		} else if (S_ISLNK(st.st_mode)) {
			r = skip_link(c, p.buf);
		} else if (S_ISDIR(st.st_mode) && idx < 0 && e->d_name[0] == '.' &&
			   mounted_at(dir->fd, e->d_name, dst.st_dev)) {
			r = skip_mount(c, p.buf);
		} else if (S_ISDIR(st.st_mode) && idx < 0 && e->d_name[0] == '.') {
			struct place sub = {0};
			struct strbuf sp = {0};
			int di = find_dir(t, e->d_name, &st);
			r = di < 0 ? di : open_place(c, dir, e->d_name, &sub, &sp);
			if (r == 0)
				r = scan_files(c, t, &sub, di);
			r = r > 0 ? 0 : r;
			sb_free(&sp);
		} else {
			r = skip_other(c, p.buf); /* no part of a snapshot: said, left out */
		}
	}
	sb_free(&p);
	closedir(d);
	return r;
}

static int note_tags(struct ctx *c, const struct place *snapshots)
{
	int fd = dup(snapshots->fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d)))
		if (e->d_name[0] != '.')
			r = names_add_unique(&c->tags, e->d_name);
	closedir(d);
	return r;
}

/* Notes the backups/ directory of table t in tdir, if it has one: its path and what its
 * TAKEN_FILE says. */
static int note_backups_dir(struct ctx *c, struct scan_table *t, const struct place *tdir)
{
	int fd = openat(tdir->fd, "backups", DIR_FLAGS);
	if (fd < 0)
		return 0; /* none (or a symlink: the scan of backups/ notes it) */
	struct links_taken lt;
	int r = taken_read(fd, &lt);
	close(fd);
	if (r < 0 && r != -ENOMEM && !c->o->backups) {
		/* a full backup is made all the same, recording nothing of that directory (its
		 * caller says so); the incrementals, which read it to go on, stop on it */
		lt = (struct links_taken){.read_err = r};
		r = 0;
	}
	struct strbuf path = {0};
	struct links_taken *v = r < 0 ? NULL : realloc(t->backups_taken,
						     (t->nbackups_dirs + 1) * sizeof(*v));
	if (r == 0 && !v)
		r = -ENOMEM;
	if (v) {
		t->backups_taken = v;
		v[t->nbackups_dirs] = lt; /* counted by the push below */
	}
	if (r == 0 && (r = sb_printf(&path, "%s/backups", tdir->path)) == 0 &&
	    (r = ptrv_push(&t->backups_dirs, &t->nbackups_dirs, path.buf)) == 0)
		path.buf = NULL;
	sb_free(&path);
	if (r < 0)
		sb_printf(c->err, "cannot read %s/backups/" TAKEN_FILE ": %s", tdir->path,
			  taken_strerror(r));
	return r;
}

/* The snapshot directory snaps/<tag>, if there is one, into table t. */
static int scan_tag(struct ctx *c, const char *ks, const char *table, const char *id,
		    const char *dirname, const struct place *snaps, const struct stat *ks_st,
		    const struct stat *table_st)
{
	struct stat st;
	if (fstatat(snaps->fd, c->o->tag, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)))
		return note_tags(c, snaps);
	struct place snap;
	struct strbuf path = {0};
	int r = open_place(c, snaps, c->o->tag, &snap, &path);
	struct stat sst;
	if (r == 0 && fstat(snap.fd, &sst) == 0) { /* the directory, the tag a link or not */
		int64_t t = (int64_t)sst.st_mtim.tv_sec * 1000000000 + sst.st_mtim.tv_nsec;
		c->res->snapshot_ns = t > c->res->snapshot_ns ? t : c->res->snapshot_ns;
	}
	if (r == 0) {
		struct scan_table *t = find_or_add_table(c, ks, table, id, dirname, &r);
		if (t && t->nfiles == 0 && t->ndirs == 0) {
			t->ks_st = *ks_st;
			t->table_st = *table_st;
		}
		if (t)
			r = scan_files(c, t, &snap, -1);
		else
			close(snap.fd);
	}
	sb_free(&path);
	return r;
}

static int open_table_dir(const char *dd, const char *ks, const char *dirname, int *fd);

/* Notes in t when the table was last emptied (note_emptied), from its directories in every
 * data directory, before any of its backups/ files is looked at: a truncate's snapshot is in
 * the data directories that held its sstables, not always in those its flushes go to. */
static void note_emptied_everywhere(struct ctx *c, const char *ks, const char *dirname,
				    struct scan_table *t)
{
	for (size_t d = 0; d < c->o->ndata_dirs; d++) {
		int fd;
		if (open_table_dir(c->o->data_dirs[d], ks, dirname, &fd) > 0) {
			note_emptied(fd, t);
			close(fd);
		}
	}
	t->emptied_noted = true;
}

/* The backups/ directory of one table directory (opened as tdir), if it has one. */
static int scan_backups_dir(struct ctx *c, const char *ks, const char *table, const char *id,
			    const char *dirname, const struct place *tdir, const struct stat *ks_st)
{
	struct stat tst, st;
	if (fstat(tdir->fd, &tst) < 0 || fstatat(tdir->fd, "backups", &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)))
		return 0; /* nothing flushed since incremental backups were turned on */
	struct place b;
	struct strbuf path = {0};
	if (S_ISDIR(st.st_mode) && mounted_at(tdir->fd, "backups", tst.st_dev)) {
		int r = sb_printf(&path, "%s/backups", tdir->path) ?: skip_mount(c, path.buf);
		sb_free(&path);
		return r;
	}
	int r = open_place(c, tdir, "backups", &b, &path);
	if (r == 0) {
		struct scan_table *t = find_or_add_table(c, ks, table, id, dirname, &r);
		if (t && t->nfiles == 0 && t->ndirs == 0) {
			t->ks_st = *ks_st;
			t->table_st = tst;
		}
		if (t && !t->emptied_noted)
			note_emptied_everywhere(c, ks, dirname, t);
		if (t && (r = note_backups_dir(c, t, tdir)) < 0)
			close(b.fd);
		else if (t)
			r = scan_files(c, t, &b, -1);
		else
			close(b.fd);
	}
	sb_free(&path);
	return r > 0 ? 0 : r;
}

/* Notes table ks.table when its directory tdir holds live sstables and no snapshot of the
 * tag (a table may hold it in another data directory: scan_snapshot sorts that out). */
static int note_if_untagged(struct ctx *c, const char *ks, const char *table,
			    const struct place *tdir)
{
	struct stat st;
	struct strbuf path = {0};
	int r = sb_printf(&path, "snapshots/%s", c->o->tag);
	bool tagged = r == 0 && fstatat(tdir->fd, path.buf, &st, AT_SYMLINK_NOFOLLOW) == 0;
	path.len = 0;
	if (r == 0 && !tagged && any_entry(tdir->fd, NULL, is_live_data, NULL) &&
	    (r = sb_printf(&path, "%s/%s", ks, table)) == 0)
		r = names_add_unique(&c->untagged, path.buf);
	sb_free(&path);
	return r;
}

/* The snapshot of one table directory (opened as tdir), if it has one. */
static int scan_table_dir(struct ctx *c, const char *ks, const char *table, const char *id,
			  const char *dirname, const struct place *tdir, const struct stat *ks_st)
{
	struct stat tst, st;
	if (c->o->backups)
		return scan_backups_dir(c, ks, table, id, dirname, tdir, ks_st);
	int r = note_if_untagged(c, ks, table, tdir);
	if (r < 0)
		return r;
	if (fstat(tdir->fd, &tst) < 0 || fstatat(tdir->fd, "snapshots", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* no snapshots at all */
	struct place snaps;
	struct strbuf path = {0};
	r = open_place(c, tdir, "snapshots", &snaps, &path);
	if (r == 0) {
		r = scan_tag(c, ks, table, id, dirname, &snaps, ks_st, &tst);
		close(snaps.fd);
	}
	sb_free(&path);
	return r > 0 ? 0 : r;
}

static bool has_backups(int ksfd, const char *dirname)
{
	struct stat st;
	char path[PATH_MAX];
	return (size_t)snprintf(path, sizeof(path), "%s/backups", dirname) < sizeof(path) &&
	       fstatat(ksfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Notes a dropped table's backups/ left alone: "<path>/backups (now <dir>)". */
static int note_superseded(struct ctx *c, const char *path, const char *by)
{
	struct scan_result *res = c->res;
	struct strbuf note = {0};
	if (sb_printf(&note, "%s/backups (now %s)", path, by) < 0 ||
	    ptrv_push(&res->superseded, &res->nsuperseded, note.buf) < 0) {
		sb_free(&note);
		sb_puts(c->err, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int scan_keyspace(struct ctx *c, const struct place *ksdir, const char *ks,
			 const struct stat *ks_st)
{
	int fd = dup(ksdir->fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int r = -errno;
		sb_printf(c->err, "cannot read %s: %s", ksdir->path, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	struct dirent *e;
	struct strbuf p = {0};
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		_cleanup_free_ char *table = NULL;
		_cleanup_free_ char *id = NULL;
		split_table_dir(e->d_name, &table, &id);
		if (!table || !id) {
			r = -ENOMEM;
			break;
		}
		struct stat st;
		if (fstatat(ksdir->fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) || !wanted(c, ks, table))
			continue;
		if (c->o->backups) {
			_cleanup_free_ char *by = superseded_by(c, ksdir, e->d_name, table, id, &r);
			p.len = 0;
			if (by && has_backups(ksdir->fd, e->d_name) &&
			    (r = sb_printf(&p, "%s/%s", ksdir->path, e->d_name)) >= 0)
				r = note_superseded(c, p.buf, by);
			if (by || r < 0)
				continue;
		}
		struct place tdir;
		r = open_place(c, ksdir, e->d_name, &tdir, &p);
		if (r == 0) {
			r = scan_table_dir(c, ks, table, id, e->d_name, &tdir, ks_st);
			close(tdir.fd);
		}
		r = r > 0 ? 0 : r; /* a symlink, noted */
	}
	closedir(d);
	sb_free(&p);
	return r > 0 ? 0 : r;
}

/* The keyspaces of one data directory. */
static int scan_data_dir(struct ctx *c, const char *dd)
{
	struct place top = {.fd = open(dd, O_RDONLY | O_DIRECTORY | O_CLOEXEC), .path = dd,
			    .data_dir = dd};
	int fd = top.fd < 0 ? -1 : dup(top.fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int r = -errno;
		sb_printf(c->err, "data directory %s: %s", dd, strerror(-r));
		if (fd >= 0)
			close(fd);
		if (top.fd >= 0)
			close(top.fd);
		return r;
	}
	struct dirent *e;
	struct strbuf p = {0};
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(top.fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !(S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)))
			continue;
		struct place ks;
		r = open_place(c, &top, e->d_name, &ks, &p);
		if (r == 0) {
			if (fstat(ks.fd, &st) == 0)
				r = scan_keyspace(c, &ks, e->d_name, &st);
			close(ks.fd);
		}
		r = r > 0 ? 0 : r; /* a symlink, noted */
	}
	closedir(d);
	close(top.fd);
	sb_free(&p);
	return r > 0 ? 0 : r;
}

/* Opens directory dirname of keyspace ks in data directory dd, each component with
 * O_NOFOLLOW, as the scan walked to it: 1 (*fd), 0 when it has none there (or a symbolic link, not followed), or
 * -errno. */
static int open_table_dir(const char *dd, const char *keyspace, const char *dirname, int *fd)
{
	int top = open(dd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ks = top < 0 ? -1 : openat(top, keyspace, DIR_FLAGS);
	*fd = ks < 0 ? -1 : openat(ks, dirname, DIR_FLAGS);
	int r = *fd >= 0 ? 1 : errno == ENOENT || errno == ELOOP || errno == ENOTDIR ? 0 : -errno;
	if (ks >= 0)
		close(ks);
	if (top >= 0)
		close(top);
	return r;
}

/* A full backup: the backups/ directories of each table in every data directory, those
 * without the snapshot too (a table's flushes go to any of them), and its newest drop or
 * truncate snapshot. */
static int note_table_dirs(struct ctx *c)
{
	int r = 0;
	struct strbuf path = {0};
	for (size_t i = 0; r == 0 && i < c->res->ntables; i++) {
		struct scan_table *t = &c->res->tables[i];
		for (size_t d = 0; r == 0 && d < c->o->ndata_dirs; d++) {
			path.len = 0;
			struct place tdir = {.data_dir = c->o->data_dirs[d]};
			if ((r = open_table_dir(c->o->data_dirs[d], t->keyspace, t->dirname,
						&tdir.fd)) <= 0)
				continue; /* not in this data directory, or an error */
			r = sb_printf(&path, "%s/%s/%s", c->o->data_dirs[d], t->keyspace, t->dirname);
			tdir.path = path.buf;
			if (r == 0)
				note_emptied(tdir.fd, t);
			r = r ?: note_backups_dir(c, t, &tdir);
			close(tdir.fd);
		}
		if (r < 0 && !c->err->len)
			sb_printf(c->err, "cannot read the directories of table %s.%s: %s", t->keyspace,
				  t->table, strerror(-r));
	}
	sb_free(&path);
	return r;
}

static int cmp_file(const void *a, const void *b)
{
	const struct scan_file *x = a, *y = b;
	if (x->dir != y->dir)
		return x->dir < y->dir ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_table(const void *a, const void *b)
{
	const struct scan_table *x = a, *y = b;
	int r = strcmp(x->keyspace, y->keyspace);
	return r ? r : strcmp(x->table, y->table);
}

/* The one-line reason the scan found no table, into err. */
static void explain_nothing(struct ctx *c)
{
	const struct scan_opts *o = c->o;
	struct scan_result *res = c->res;
	if (c->tags.n) {
		qsort(c->tags.v, c->tags.n, sizeof(char *), cmp_str);
		sb_printf(c->err, "snapshot %s: not found in the selected tables; snapshots present: ",
			  o->tag);
		for (size_t i = 0; i < c->tags.n && i < 20; i++)
			sb_printf(c->err, "%s%s", i ? ", " : "", c->tags.v[i]);
		if (c->tags.n > 20)
			sb_printf(c->err, ", ... (%zu in all)", c->tags.n);
	} else if (res->nskipped) {
		sb_printf(c->err, "snapshot %s: not found; symbolic links are not followed, and "
			  "%zu were skipped (%s%s)", o->tag, res->nskipped, res->skipped[0],
			  res->nskipped > 1 ? ", ..." : "");
	} else {
		sb_printf(c->err, "snapshot %s: not found; the selected tables have no snapshots "
			  "(take one with 'nodetool snapshot -t %s')", o->tag, o->tag);
	}
}

/* The noted tables the snapshot is in no data directory of, into res->untagged, sorted. */
static int list_untagged(struct ctx *c)
{
	struct scan_result *res = c->res;
	if (c->untagged.n) /* qsort's base must not be NULL, even for 0 elements */
		qsort(c->untagged.v, c->untagged.n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < c->untagged.n; i++) {
		char *slash = strchr(c->untagged.v[i], '/');
		*slash = '\0';
		bool found = false;
		for (size_t k = 0; !found && k < res->ntables; k++)
			found = !strcmp(res->tables[k].keyspace, c->untagged.v[i]) &&
				!strcmp(res->tables[k].table, slash + 1);
		*slash = '.';
		if (found)
			continue;
		char *name = strdup(c->untagged.v[i]);
		if (!name || ptrv_push(&res->untagged, &res->nuntagged, name) < 0) {
			free(name);
			sb_puts(c->err, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

int scan_snapshot(const struct scan_opts *o, struct scan_result *res, struct strbuf *err)
{
	*res = (struct scan_result){0};
	struct ctx c = {.o = o, .res = res, .err = err};
	int r = 0;
	if (o->ndata_dirs && stat(o->data_dirs[0], &res->root_st) < 0) {
		r = -errno;
		sb_printf(err, "data directory %s: %s", o->data_dirs[0], strerror(-r));
	}
	for (size_t i = 0; r == 0 && i < o->ndata_dirs; i++)
		r = scan_data_dir(&c, o->data_dirs[i]);
	const struct selection_entry *miss = r == 0 ? selection_unmatched(o->sel) : NULL;
	if (miss) {
		sb_selection_entry(err, miss);
		sb_puts(err, ": not found in the data directories");
		r = -ENOENT;
	}
	if (r == 0 && res->ntables == 0 && !o->backups) {
		explain_nothing(&c);
		r = -ENOENT;
	}
	if (r == 0 && !o->backups)
		r = note_table_dirs(&c);
	if (r == 0 && res->ntables) { /* qsort's base must not be NULL, even for 0 elements */
		qsort(res->tables, res->ntables, sizeof(*res->tables), cmp_table);
		for (size_t i = 0; i < res->ntables; i++)
			if (res->tables[i].nfiles)
				qsort(res->tables[i].files, res->tables[i].nfiles,
				      sizeof(struct scan_file), cmp_file);
	}
	r = r ?: list_untagged(&c);
	names_free(&c.tags);
	names_free(&c.untagged);
	if (r < 0) {
		if (err->len == 0)
			sb_printf(err, "scanning data directories: %s", strerror(-r));
		scan_result_free(res);
	}
	return r;
}

struct missing_ctx {
	const struct scan_table *t;
	struct strv *missing;
};

static bool scanned(const struct scan_table *t, const char *dir, size_t dlen, const char *name)
{
	int idx = -1;
	for (size_t i = 0; dlen && i < t->ndirs; i++)
		if (strlen(t->dirs[i].name) == dlen && !strncmp(t->dirs[i].name, dir, dlen))
			idx = (int)i;
	if (dlen && idx < 0)
		return false;
	for (size_t i = 0; i < t->nfiles; i++)
		if (t->files[i].dir == idx && !strcmp(t->files[i].name, name))
			return true;
	return false;
}

static int note_missing(void *ctx, const char *file)
{
	struct missing_ctx *m = ctx;
	const char *slash = strrchr(file, '/');
	size_t dlen = slash ? (size_t)(slash - file) : 0;
	if (scanned(m->t, file, dlen, slash ? slash + 1 : file))
		return 0;
	return strv_push(m->missing, file);
}

int scan_table_missing(const struct scan_table *t, struct strv *missing)
{
	if (!t->manifest)
		return 0;
	struct missing_ctx m = {.t = t, .missing = missing};
	return manifest_files_each(t->manifest, t->manifest_len, note_missing, &m);
}

void scan_result_free(struct scan_result *res)
{
	for (size_t i = 0; i < res->ntables; i++) {
		struct scan_table *t = &res->tables[i];
		for (size_t j = 0; j < t->nfiles; j++) {
			free(t->files[j].name);
			free(t->files[j].src);
		}
		for (size_t j = 0; j < t->ndirs; j++)
			free(t->dirs[j].name);
		free(t->files);
		free(t->dirs);
		free(t->keyspace);
		free(t->table);
		free(t->table_id);
		free(t->dirname);
		free(t->schema_cql);
		free(t->manifest);
		for (size_t j = 0; j < t->nbackups_dirs; j++)
			free(t->backups_dirs[j]);
		free(t->backups_dirs);
		free(t->backups_taken);
		free(t->dropped);
	}
	free(res->tables);
	for (size_t i = 0; i < res->nskipped; i++)
		free(res->skipped[i]);
	for (size_t i = 0; i < res->nmounts; i++)
		free(res->mounts[i]);
	free(res->mounts);
	for (size_t i = 0; i < res->nothers; i++)
		free(res->others[i]);
	free(res->others);
	for (size_t i = 0; i < res->nsuperseded; i++)
		free(res->superseded[i]);
	free(res->superseded);
	free(res->skipped);
	for (size_t i = 0; i < res->nuntagged; i++)
		free(res->untagged[i]);
	free(res->untagged);
	*res = (struct scan_result){0};
}
