/* ops.c: FUSE low-level operations. They only translate: the tree and the bytes come from the
 * catalog library. Each operation ends in exactly one fuse_reply_*.
 *
 * Backed-up files never change, so entries, attributes and pages are left to the kernel's
 * caches for long, and so are failed lookups in them (negative entries); only /backups itself
 * is re-read, so a new backup shows up at once.
 *
 * The daemon's state is the session's userdata: each operation starts from fuse_req_userdata().
 */
#include "cbfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#define LONG_TIMEOUT 86400.0 /* immutable parts of the tree */
#define SHORT_TIMEOUT 1.0    /* the root and /backups, which gain entries */
#define REFRESH_SECONDS 2    /* /backups is refreshed from the store at most this often */

void cbfs_vlog(const struct cbfs *fs, const char *fmt, va_list ap)
{
	/* One write per line: worker threads log at the same time. */
	char line[1024];
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	while (n > 0 && line[n - 1] == '\n') /* libfuse's lines (main.c) end in one */
		line[--n] = '\0';
	if (!fs->foreground)
		syslog(LOG_ERR, "%s", line);
	int fd = atomic_load(&fs->log_fd);
	if (fd < 0)
		return;
	line[n] = '\n';
	char out[1100];
	int m = snprintf(out, sizeof(out), "mount.cassbackup: %.*s", n + 1, line);
	if (m > 0 && write(fd, out, (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1) < 0)
		return;
}

void cbfs_log(const struct cbfs *fs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cbfs_vlog(fs, fmt, ap);
	va_end(ap);
}

/* A worker thread's catalog connection and the generation it serves (cbfs.h). */
struct conn {
	catalog *c;
	unsigned gen;
};

static void close_conn(void *p)
{
	struct conn *cn = p;
	if (cn)
		catalog_close(cn->c);
	free(cn);
}

#define WAIT_REOPEN_NS (30 * 1000000000LL)

/* A new connection for cn, to the catalog of the generation it then records (cbfs.h
 * gen_lock). -ESTALE when the file at the catalog's path is not the mount's catalog. */
static int open_conn(struct cbfs *fs, struct conn *cn)
{
	pthread_rwlock_rdlock(&fs->gen_lock);
	cn->gen = atomic_load(&fs->gen);
	int r = store_catalog_connect(fs->store, true, &cn->c);
	pthread_rwlock_unlock(&fs->gen_lock);
	return r;
}

/* This thread's connection to the catalog the mount serves now: opened at the thread's first
 * request, and again after the refresh thread moved the mount to a catalog made anew. */
static int get_conn(struct cbfs *fs, struct conn **out)
{
	struct conn *cn = pthread_getspecific(fs->conn_key);
	if (!cn) {
		if (!(cn = calloc(1, sizeof(*cn))))
			return -ENOMEM;
		int r = -pthread_setspecific(fs->conn_key, cn);
		if (r < 0) {
			free(cn);
			return r;
		}
	}
	if (cn->c && cn->gen == atomic_load(&fs->gen)) {
		*out = cn;
		return 0;
	}
	catalog_close(cn->c);
	cn->c = NULL;
	int r = open_conn(fs, cn);
	if (r == -ESTALE || r == -ENOENT) { /* made anew at its path, or gone: have the refresh
					     * thread move to the one there, made when missing */
		cbfs_refresh(fs, REFRESH_REOPEN, 0, WAIT_REOPEN_NS);
		r = open_conn(fs, cn);
	}
	if (r < 0) { /* not "no such file": what the catalog holds is not known */
		cbfs_log(fs, "cannot open the catalog of %s: %s", fs->location, strerror(-r));
		return r == -ENOMEM ? r : -EIO;
	}
	*out = cn;
	return 0;
}

/* --- inode numbers (cbfs.h) -------------------------------------------------------------- */

static bool special(uint64_t ino)
{
	return CB_INO_KIND(ino) == CB_NODE_SPECIAL && ino >> GEN_SHIFT == 0;
}

/* The kernel's number for catalog node ino of generation gen. */
static uint64_t to_kernel(uint64_t ino, unsigned gen)
{
	return special(ino) ? ino : ino | (uint64_t)gen << GEN_SHIFT;
}

/* The catalog number of the kernel's ino, on this thread's connection: -ESTALE when ino is of
 * another generation (the kernel then looks its path up again). */
static int from_kernel(const struct conn *cn, fuse_ino_t ino, uint64_t *out)
{
	uint64_t g = (uint64_t)ino >> GEN_SHIFT;
	if (special(ino)) {
		*out = ino;
		return 0;
	}
	if (g != cn->gen)
		return -ESTALE;
	*out = (uint64_t)ino & (((uint64_t)1 << GEN_SHIFT) - 1);
	return 0;
}

/* This thread's connection and the catalog number of the kernel's ino. */
static int resolve(struct cbfs *fs, fuse_ino_t ino, struct conn **cn, uint64_t *cat_ino)
{
	int r = get_conn(fs, cn);
	return r < 0 ? r : from_kernel(*cn, ino, cat_ino);
}

/* A node the catalog shows: within the rows inode numbers can carry. */
static bool showable(const struct cb_node *n)
{
	return special(n->ino) || CB_INO_ROW(n->ino) < CBFS_ROW_MAX;
}

/* The daemon's state. */
static struct cbfs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void node_stat(const struct cbfs *fs, const struct cb_node *n, unsigned gen,
		      struct stat *st)
{
	*st = (struct stat){0};
	st->st_ino = to_kernel(n->ino, gen);
	st->st_mode = n->mode;
	st->st_nlink = S_ISDIR(n->mode) ? 2 : 1;
	st->st_uid = n->uid == CB_OWNER_UNSET ? fs->uid : n->uid;
	st->st_gid = n->gid == CB_OWNER_UNSET ? fs->gid : n->gid;
	st->st_size = S_ISDIR(n->mode) ? 4096 : (off_t)n->size;
	st->st_blksize = 128 * 1024;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	int64_t t = n->mtime_ns ? n->mtime_ns : fs->start_ns;
	st->st_mtim.tv_sec = t / 1000000000;
	st->st_mtim.tv_nsec = t % 1000000000;
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
}

static double node_timeout(uint64_t ino)
{
	return special(ino) ? SHORT_TIMEOUT : LONG_TIMEOUT;
}

static void fill_entry(const struct cbfs *fs, const struct cb_node *n, unsigned gen,
		       struct fuse_entry_param *e)
{
	*e = (struct fuse_entry_param){0};
	e->ino = to_kernel(n->ino, gen);
	e->attr_timeout = node_timeout(n->ino);
	/* names that may come to mean another node: a backup forgotten and made again, a
	 * segment pruned and archived again (commitlogs.c gives it another inode) */
	e->entry_timeout = n->kind == CB_NODE_BACKUP || n->kind == CB_NODE_GROUP || cbfs_cl_ino(n->ino)
				   ? SHORT_TIMEOUT : LONG_TIMEOUT;
	node_stat(fs, n, gen, &e->attr);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* The kernel lowers its readahead to what we answer; ask for plenty and raise the bdi's
	 * own limit once the mount is up (cbfs_raise_readahead). */
	conn->max_readahead = 16u << 20;
	/* No splice: every reply's bytes are in memory (decoded frames), written with writev
	 * (fuse_reply_iov); splicing memory would mean a copy into a pipe first. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->max_background < 64)
		conn->max_background = 64;
}

/* Runs once, on the first request after INIT, when the kernel's INIT handling is done. */
static struct cbfs *first_request(fuse_req_t req)
{
	struct cbfs *fs = req_fs(req);
	if (!atomic_exchange(&fs->readahead_done, true))
		cbfs_raise_readahead(fs);
	return fs;
}

/* A directory whose entries cannot change: everything below a backup's directory, and the
 * root; not /backups, /clusters and the directories of node and cluster backups in them. */
static bool immutable_dir(uint64_t ino)
{
	return !catalog_node_mutable(ino) || ino == CB_INO_ROOT;
}

#define LIST_REFRESH_AGE_NS (REFRESH_SECONDS * 1000000000LL)
#define LIST_REFRESH_WAIT_NS 1000000000LL       /* then the listing goes on without it */
#define PACK_REFRESH_AGE_NS 1000000000LL
#define PACK_REFRESH_WAIT_NS (30 * 1000000000LL)

/* /backups and /clusters gain and lose entries: looking in them (or in the directories of
 * node and cluster backups in them) first brings the catalog up to date. */
static void refresh_for(struct cbfs *fs, fuse_ino_t dir)
{
	if (catalog_node_mutable(dir) && dir != CB_INO_ROOT)
		cbfs_refresh(fs, REFRESH_BACKUPS, LIST_REFRESH_AGE_NS, LIST_REFRESH_WAIT_NS);
}

/* A lookup that found nothing: ESTALE when the parent itself is gone (the kernel holds a node
 * of a backup since forgotten), so that the kernel looks its path up again. */
static int missing(catalog *c, uint64_t parent)
{
	struct cb_node p;
	return special(parent) || catalog_node_get(c, parent, &p) == 0 ? -ENOENT : -ESTALE;
}

/* Replies error r (-errno): a catalog that does not read (damaged, a row that does not hold
 * together, another format) is an I/O error to a reader, as the man page says, not
 * "Structure needs cleaning". */
static void reply_error(fuse_req_t req, int r)
{
	fuse_reply_err(req, r == -EUCLEAN || r == -EMEDIUMTYPE || r == -EBADMSG ? EIO : -r);
}

/* /commitlogs and below (commitlogs.c): the same replies, from the tree in memory. */
static void reply_cl_entry(fuse_req_t req, struct cbfs *fs, int r, const struct cb_node *n)
{
	struct fuse_entry_param e;
	if (r < 0) {
		reply_error(req, r);
		return;
	}
	fill_entry(fs, n, 0, &e);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cbfs *fs = first_request(req);
	struct cb_node cl;
	if (parent == CB_INO_ROOT && strcmp(name, "commitlogs") == 0) {
		cbfs_cl_root_node(fs, &cl);
		reply_cl_entry(req, fs, 0, &cl);
		return;
	}
	if (cbfs_cl_ino(parent)) {
		reply_cl_entry(req, fs, cbfs_cl_lookup(fs, parent, name, &cl), &cl);
		return;
	}
	refresh_for(fs, parent);
	struct conn *cn;
	uint64_t dir = CB_INO_BACKUPS;
	struct cb_node n;
	struct fuse_entry_param e;
	int r = resolve(fs, parent, &cn, &dir);
	if (r == 0) {
		if ((r = catalog_node_lookup(cn->c, dir, name, &n)) == 0 && !showable(&n))
			r = -ENOENT;
		if (r == -ENOENT)
			r = missing(cn->c, dir);
	}
	if (r == -ENOENT && immutable_dir(dir)) {
		/* A negative entry (ino 0) the kernel keeps, as passthrough_hp does: the name will
		 * never appear here, so it need not ask again. */
		e = (struct fuse_entry_param){.ino = 0, .entry_timeout = LONG_TIMEOUT};
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0) {
		reply_error(req, r);
		return;
	}
	fill_entry(fs, &n, cn->gen, &e);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct cbfs *fs = first_request(req);
	struct conn *cn;
	uint64_t node = CB_INO_ROOT;
	struct cb_node n;
	struct stat st;
	if (cbfs_cl_ino(ino)) {
		int r = cbfs_cl_get(fs, ino, &n);
		if (r < 0) {
			reply_error(req, r == -ENOENT ? -ESTALE : r);
			return;
		}
		node_stat(fs, &n, 0, &st);
		fuse_reply_attr(req, &st, node_timeout(ino));
		return;
	}
	int r = resolve(fs, ino, &cn, &node);
	if (r == 0)
		r = catalog_node_get(cn->c, node, &n);
	if (r < 0) { /* a node the kernel holds and the catalog lost: forgotten, or rebuilt */
		reply_error(req, r == -ENOENT && !special(node) ? -ESTALE : r);
		return;
	}
	node_stat(fs, &n, cn->gen, &st);
	fuse_reply_attr(req, &st, node_timeout(node));
}

/* Puts l at the head of list *head (fs->open_files or fs->open_dirs). */
static void open_link_add(struct cbfs *fs, struct open_link **head, struct open_link *l)
{
	pthread_mutex_lock(&fs->open_mu);
	l->prev = NULL;
	l->next = *head;
	if (l->next)
		l->next->prev = l;
	*head = l;
	pthread_mutex_unlock(&fs->open_mu);
}

static void open_link_remove(struct cbfs *fs, struct open_link **head, struct open_link *l)
{
	pthread_mutex_lock(&fs->open_mu);
	if (l->prev)
		l->prev->next = l->next;
	else
		*head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->open_mu);
}

/* A directory's listing, taken whole at opendir: one indexed query, then served by offset. */
struct dirlist {
	struct open_link link; /* first: in fs->open_dirs once opened */
	struct cb_node *v;
	size_t n, cap;
	unsigned gen;
};

/* Frees an opened listing (at RELEASEDIR, or at the end for one that never got it). */
static void dirlist_free(struct cbfs *fs, struct dirlist *d)
{
	open_link_remove(fs, &fs->open_dirs, &d->link);
	free(d->v);
	free(d);
}

static int dirlist_add(void *ctx, const struct cb_node *n)
{
	struct dirlist *d = ctx;
	if (!showable(n))
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct cb_node *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = *n;
	return 0;
}

/* A directory's listing is the store's: a backup's or a keyspace's comes from as many tables
 * as the backup's manifest has, a table's holds as many files (each is bound to the manifest
 * when opened: bind_to_store). So a catalog that lost rows (stale, damaged, planted) gives an
 * error, never a backup without one of its tables or files. 0; -ENOENT when the backup was
 * forgotten meanwhile; else -EIO with one line logged (or -ENOMEM). */
static int listing_matches_store(struct cbfs *fs, catalog *c, uint64_t dir)
{
	struct cb_file_ident id;
	size_t n;
	int r = catalog_dir_count(c, dir, &id, &n);
	if (r == -ENOENT)
		return 0; /* nothing below it to count */
	struct strbuf why = {0};
	if (r == 0)
		r = CB_INO_KIND(dir) == CB_NODE_TABLE ? store_check_table_files(fs->store, &id, n, &why)
						      : store_check_backup_tables(fs->store, &id, n, &why);
	if (r < 0 && r != -ENOENT && r != -ENOMEM) {
		cbfs_log(fs, "cannot list %s%s%s%s%s: %s: %s", id.shown, *id.keyspace ? "/" : "",
			 id.keyspace, *id.table ? "/" : "", id.table, fs->location,
			 why.buf ? why.buf : strerror(-r));
		r = -EIO;
	}
	sb_free(&why);
	return r;
}

static int cmp_node_name(const void *a, const void *b)
{
	return strcmp((*(const struct cb_node *const *)a)->name, (*(const struct cb_node *const *)b)->name);
}

/* A listing that names one entry twice (only a damaged or planted catalog gives one: each
 * name is unique in its directory) hides another it lacks: -EIO with one line logged. */
static int listing_names_each_once(struct cbfs *fs, const struct dirlist *d, uint64_t dir)
{
	const void *p;
	int r = first_repeat(d->v, d->n, sizeof(*d->v), cmp_node_name, &p);
	if (r > 0) {
		cbfs_log(fs, "cannot list directory %llu of %s: the catalog names %s twice in it (a "
			 "damaged catalog: 'cassbackup reindex' rebuilds it)", (unsigned long long)dir,
			 fs->location, ((const struct cb_node *)p)->name);
		return -EIO;
	}
	return r;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cbfs *fs = first_request(req);
	refresh_for(fs, ino);
	struct conn *cn;
	uint64_t dir = 0;
	struct dirlist *d = calloc(1, sizeof(*d));
	struct cb_node cl;
	int r = !d ? -ENOMEM : 0;
	if (r == 0 && cbfs_cl_ino(ino)) { /* /commitlogs and below: commitlogs.c */
		dir = ino;
		r = cbfs_cl_list(fs, dir, dirlist_add, d);
	} else if (r == 0 && (r = resolve(fs, ino, &cn, &dir)) == 0) {
		d->gen = cn->gen;
		r = catalog_node_list(cn->c, dir, dirlist_add, d);
		if (r == 0 && !special(dir))
			r = listing_matches_store(fs, cn->c, dir) ?: listing_names_each_once(fs, d, dir);
		if (r == -ENOENT && !special(dir))
			r = -ESTALE;
	}
	if (r == 0 && dir == CB_INO_ROOT) { /* the root: backups, then commitlogs */
		cbfs_cl_root_node(fs, &cl);
		r = dirlist_add(d, &cl);
	}
	if (r < 0) {
		if (d)
			free(d->v);
		free(d);
		reply_error(req, r);
		return;
	}
	fi->fh = (uintptr_t)d;
	/* Everything below a backup's directory is immutable: let the kernel keep the listing. */
	bool immutable = !catalog_node_mutable(dir);
	fi->cache_readdir = immutable;
	fi->keep_cache = immutable;
	open_link_add(fs, &fs->open_dirs, &d->link);
	if (fuse_reply_open(req, fi) == -ENOENT) /* the opendir was interrupted: no RELEASEDIR */
		dirlist_free(fs, d);
}

static void reply_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi, bool plus)
{
	const struct cbfs *fs = req_fs(req);
	struct dirlist *d = (struct dirlist *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	/* Offsets: 1 after ".", 2 after "..", 3 + i after entry i. */
	for (off_t i = off; (size_t)i < d->n + 2; i++) {
		struct fuse_entry_param e = {0};
		const char *name;
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino : 0;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct cb_node *n = &d->v[i - 2];
			name = n->name;
			fill_entry(fs, n, d->gen, &e);
			/* /backups may hold thousands of entries, and `ls` needs only their names: hand
			 * out no node ids there, so the kernel lists them like a plain readdir instead of
			 * instantiating an inode for each (lookups come later, for the one opened). */
			if (plus && (ino == CB_INO_BACKUPS || cbfs_cl_ino(ino)))
				e.ino = 0;
		}
		size_t need = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1)
				   : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	reply_dir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	reply_dir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dirlist_free(req_fs(req), (struct dirlist *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Copies s into out (outlen > 0), escaping bytes a log line must not hold as \xNN: a name may
 * hold a newline, which would otherwise forge a line of its own. */
static void escape(const char *s, char *out, size_t outlen)
{
	size_t j = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && j + 5 < outlen; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			j += (size_t)snprintf(out + j, outlen - j, "\\x%02x", *p);
		else
			out[j++] = (char)*p;
	}
	out[j] = '\0';
}

/* An open file: where its bytes are, and who it is (for checks and messages). */
struct open_file {
	struct open_link link; /* first: in fs->open_files */
	struct cb_file_ident id;
	struct cb_blob_loc loc;
	atomic_bool logged; /* a read failed and said so: the kernel's readahead of the same
			     * failure need not fill the log */
};

static void open_file_add(struct cbfs *fs, struct open_file *of)
{
	open_link_add(fs, &fs->open_files, &of->link);
}

static void open_file_free(struct cbfs *fs, struct open_file *of)
{
	open_link_remove(fs, &fs->open_files, &of->link);
	free(of);
}

/* "backups/<backup>/<keyspace>/<table>/[<.index>/]<file>" of an open file, escaped, for a log
 * line. */
static void file_path(const struct open_file *of, char *out, size_t outlen)
{
	const struct cb_file_ident *f = &of->id;
	char path[PATH_MAX];
	if (*f->keyspace)
		snprintf(path, sizeof(path), "backups/%s/%s/%s/%s%s%s", f->shown, f->keyspace, f->table,
			 f->dir, *f->dir ? "/" : "", f->name);
	else /* one of the node's own files (catalog.h) */
		snprintf(path, sizeof(path), "backups/%s/%s%s%s", f->shown, f->dir, *f->dir ? "/" : "",
			 f->name);
	escape(path, out, outlen);
}

/* Where the content (sha256, size) of loc is read from now: a prune may have moved it to
 * another pack and removed this one. Brings the catalog's packs up to date (unless that began
 * within min_age_ns) and looks it up again: 0 with *moved, or -ENOENT when no pack holds it. */
static int re_resolve_since(struct cbfs *fs, const struct cb_blob_loc *loc, int64_t min_age_ns,
			    struct cb_blob_loc *moved)
{
	struct conn *cn;
	cbfs_refresh(fs, REFRESH_PACKS, min_age_ns, PACK_REFRESH_WAIT_NS);
	int r = get_conn(fs, &cn);
	if (r == 0)
		r = catalog_blob_location(cn->c, loc->sha256, loc->size, moved);
	return r < 0 ? r : r == 0 || !moved->pack_path[0] ? -ENOENT : 0;
}

/* re_resolve_since, at most once a second: for a pack gone under a reader, which a prune
 * (repacking) makes; each read of it would ask again. */
static int re_resolve(struct cbfs *fs, const struct cb_blob_loc *loc, struct cb_blob_loc *moved)
{
	return re_resolve_since(fs, loc, PACK_REFRESH_AGE_NS, moved);
}

static void log_read_error(struct cbfs *fs, struct open_file *of, const struct cb_blob_loc *loc,
			   int r);

/* Where the open file's content is: the pack the catalog names, bound to the content by that
 * pack's own index; or, when that pack is gone (repacked), wherever the content is now. */
static int bind_location(struct cbfs *fs, struct open_file *of, struct strbuf *why)
{
	int r = store_check_location(fs->store, &of->loc, why);
	struct cb_blob_loc moved;
	if (r == -ENOENT && re_resolve(fs, &of->loc, &moved) == 0) {
		why->len = 0;
		of->loc = moved;
		r = store_check_location(fs->store, &of->loc, why);
	}
	return r;
}

/* Whether catalog node `node`, which disagreed with its backup's manifest, is gone once the
 * catalog has caught up with the store's backups/: the backup was forgotten and made again
 * under its name (by a host with a catalog of its own) since the mount last looked. */
static bool gone_after_refresh(struct cbfs *fs, uint64_t node)
{
	cbfs_refresh(fs, REFRESH_BACKUPS, 0, LIST_REFRESH_WAIT_NS);
	struct conn *cn;
	struct cb_node n;
	return get_conn(fs, &cn) == 0 && catalog_node_get(cn->c, node, &n) == -ENOENT;
}

/* Binds the catalog's word on an open file (catalog node `node`) to the store (store.h): its
 * content is what the backup's manifest lists, and its pack lists that content where the
 * catalog reads it. 0; -ENOENT when the backup was forgotten meanwhile; -ESTALE when it was
 * made again under its name (the kernel looks the path up again, and finds the new one);
 * else -EIO (or -ENOMEM) with one line logged: the catalog disagrees with the store, or the
 * store cannot be read, and no byte of the file is served. */
static int bind_to_store(struct cbfs *fs, struct open_file *of, uint64_t node)
{
	struct strbuf why = {0};
	char path[PATH_MAX];
	int r = store_check_file_content(fs->store, &of->id, of->loc.sha256, of->loc.size, &why);
	if (r == -EUCLEAN && gone_after_refresh(fs, node)) {
		sb_free(&why);
		return -ESTALE;
	}
	bool content = r < 0;
	struct cb_blob_loc found;
	/* no pack the catalog knows holds it (one a rebuild could not read, one another host
	 * wrote): the catalog's packs are brought up to date now (an open asks once) and it is
	 * looked up again */
	if (r == 0 && !of->loc.pack_path[0] && of->loc.size &&
	    re_resolve_since(fs, &of->loc, 0, &found) == 0)
		of->loc = found;
	if (r == 0 && of->loc.pack_path[0])
		r = bind_location(fs, of, &why);
	if ((content && r != -ENOENT && r != -ENOMEM) || r == -EUCLEAN) {
		file_path(of, path, sizeof(path));
		cbfs_log(fs, "cannot open %s: %s: %s", path, fs->location, why.buf ? why.buf : strerror(-r));
	} else if (!content && r < 0 && r != -ENOMEM) {
		log_read_error(fs, of, &of->loc, r); /* the pack: missing, damaged, unreadable */
	}
	sb_free(&why);
	return r == 0 || r == -ENOMEM || (content && r == -ENOENT) ? r : -EIO;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cbfs *fs = first_request(req);
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (cbfs_cl_ino(ino)) {
		struct cbfs_cl_file *f = NULL;
		int r = cbfs_cl_open(fs, ino, &f);
		if (r < 0) {
			reply_error(req, r == -ENOENT ? -ESTALE : r);
			return;
		}
		fi->fh = (uintptr_t)f;
		fi->keep_cache = 1;
		if (fuse_reply_open(req, fi) == -ENOENT)
			cbfs_cl_close(fs, f);
		return;
	}
	struct conn *cn;
	uint64_t node = 0;
	struct open_file *of = calloc(1, sizeof(*of));
	int r = of ? resolve(fs, ino, &cn, &node) : -ENOMEM;
	if (r == 0 && CB_INO_KIND(node) != CB_NODE_FILE)
		r = -EISDIR;
	if (r == 0)
		r = catalog_file_blob(cn->c, node, &of->loc) ?: catalog_file_ident(cn->c, node, &of->id);
	if (r == -EUCLEAN) { /* the file is listed, but where its bytes are is damaged */
		cbfs_log(fs, "cannot open inode %llu: %s: %s", (unsigned long long)node,
			 store_catalog_path(fs->store), catalog_errmsg(cn->c));
		r = -EIO;
	} else if (r == -ENOENT) {
		r = -ESTALE; /* a file the kernel holds and the catalog lost */
	} else if (r == 0) {
		r = bind_to_store(fs, of, node);
	}
	if (r < 0) {
		free(of);
		reply_error(req, r);
		return;
	}
	fi->fh = (uintptr_t)of;
	fi->keep_cache = 1; /* the bytes never change */
	open_file_add(fs, of);
	if (fuse_reply_open(req, fi) == -ENOENT) /* the open was interrupted: no RELEASE comes */
		open_file_free(fs, of);
}

/* One line naming the file (backup/keyspace/table/file), the pack and what is wrong with it;
 * once per open file. */
static void log_read_error(struct cbfs *fs, struct open_file *of, const struct cb_blob_loc *loc,
			   int r)
{
	if (atomic_exchange(&of->logged, true))
		return;
	char path[PATH_MAX];
	file_path(of, path, sizeof(path));
	char why[512];
	unsigned unread = loc->pack_path[0] ? 0 : store_packs_unread(fs->store, why);
	if (!loc->pack_path[0] && unread) /* the catalog knows no pack holding these bytes */
		cbfs_log(fs, "cannot read %s: %s: its bytes are in no pack the catalog knows: %u "
			 "pack%s of the store could not be read (%s); the next refresh reads %s again",
			 path, fs->location, unread, unread == 1 ? "" : "s", why,
			 unread == 1 ? "it" : "them");
	else if (!loc->pack_path[0])
		cbfs_log(fs, "cannot read %s: %s: no pack in the store holds its bytes (pack file is "
			 "missing)", path, fs->location);
	else
		cbfs_log(fs, "cannot read %s: %s/%s: %s", path, fs->location, loc->pack_path,
			 pack_cache_strerror(r));
}

/* Replies with [off, off + size) of the file, whose bytes are at loc. Returns true, having
 * replied nothing, when the pack is gone and last is false (the caller looks again). */
static bool reply_range_at(fuse_req_t req, struct cbfs *fs, struct open_file *of,
			   const struct cb_blob_loc *loc, size_t size, off_t off, bool last)
{
	uint64_t at = loc->offset + (uint64_t)off;
	/* Usually the range lies in one or two cached frames: reply straight from them. */
	struct pack_pin pin;
	int r = pack_cache_pin(fs->packs, loc->pack_path, at, size, &pin);
	if (r == 0) {
		/* Written to /dev/fuse straight from the cached frames (writev): fuse_reply_data would
		 * first copy a reply of several segments into a buffer it allocates per request. */
		struct iovec iov[PACK_PIN_MAX];
		for (unsigned i = 0; i < pin.n; i++)
			iov[i] = (struct iovec){.iov_base = (void *)pin.seg[i].data, .iov_len = pin.seg[i].len};
		fuse_reply_iov(req, iov, (int)pin.n);
		pack_cache_unpin(fs->packs, &pin);
		return false;
	}
	char *buf = NULL;
	if (r == -E2BIG) { /* a read across many small frames */
		buf = malloc(size);
		r = buf ? pack_cache_read(fs->packs, loc->pack_path, at, buf, size) : -ENOMEM;
	}
	if (r == -ENOENT && !last) {
		free(buf);
		return true; /* the pack is gone: the caller looks again */
	}
	if (r < 0) {
		log_read_error(fs, of, loc, r);
		fuse_reply_err(req, r == -ENOMEM ? ENOMEM : EIO);
	} else {
		fuse_reply_buf(req, buf, size);
	}
	free(buf);
	return false;
}

/* Replies with [off, off + size) of the file, which lies within it; when its pack is gone,
 * once more from wherever the catalog, refreshed, says its bytes are now, once that pack was
 * bound to the content as at open. */
static void reply_range(fuse_req_t req, struct cbfs *fs, struct open_file *of, size_t size,
			off_t off)
{
	struct cb_blob_loc moved;
	struct strbuf why = {0};
	if (!reply_range_at(req, fs, of, &of->loc, size, off, false))
		return;
	int r = re_resolve(fs, &of->loc, &moved);
	if (r == 0 && strcmp(moved.pack_path, of->loc.pack_path) != 0 &&
	    (r = store_check_location(fs->store, &moved, &why)) < 0) {
		char path[PATH_MAX];
		file_path(of, path, sizeof(path));
		cbfs_log(fs, "cannot read %s: %s: %s", path, fs->location, why.buf ? why.buf : strerror(-r));
		fuse_reply_err(req, EIO);
	} else if (r < 0) { /* no other pack holds the bytes: name the one that went */
		log_read_error(fs, of, &of->loc, -ENOENT);
		fuse_reply_err(req, EIO);
	} else {
		reply_range_at(req, fs, of, &moved, size, off, true);
	}
	sb_free(&why);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	if (cbfs_cl_ino(ino)) {
		struct cbfs *fs = req_fs(req); /* req is gone once replied to */
		struct cbfs_cl_file *f = (struct cbfs_cl_file *)(uintptr_t)fi->fh;
		cbfs_cl_ref(f);
		if (off < 0 || (uint64_t)off >= f->size)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_buf(req, (const char *)f->data + off,
				       size < f->size - (uint64_t)off ? size : (size_t)(f->size - (uint64_t)off));
		cbfs_cl_close(fs, f);
		return;
	}
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
	uint64_t fsize = of->loc.size;
	if (off < 0 || (uint64_t)off >= fsize) { /* at or past the end: no bytes, not an error */
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > fsize - (uint64_t)off)
		size = (size_t)(fsize - (uint64_t)off);
	reply_range(req, req_fs(req), of, size, off);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (cbfs_cl_ino(ino))
		cbfs_cl_close(req_fs(req), (struct cbfs_cl_file *)(uintptr_t)fi->fh);
	else
		open_file_free(req_fs(req), (struct open_file *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

struct xattr_ctx {
	const char *want; /* NULL: collect names */
	struct strbuf out;
	bool found;
};

static int xattr_cb(void *ctx, const char *name, const char *value)
{
	struct xattr_ctx *x = ctx;
	if (!x->want)
		return sb_append(&x->out, name, strlen(name) + 1);
	if (strcmp(name, x->want) != 0)
		return 0;
	x->found = true;
	return sb_append(&x->out, value, strlen(value));
}

static void reply_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct conn *cn;
	uint64_t node = CB_INO_ROOT;
	struct xattr_ctx x = {.want = name};
	int r = 0;
	if (cbfs_cl_ino(ino))
		r = cbfs_cl_xattrs(req_fs(req), ino, xattr_cb, &x);
	else if ((r = resolve(req_fs(req), ino, &cn, &node)) == 0)
		r = catalog_node_xattrs(cn->c, node, xattr_cb, &x);
	if (r == 0 && name && !x.found)
		r = -ENODATA;
	if (r == 0 && size && x.out.len > size)
		r = -ERANGE;
	if (r == -EUCLEAN)
		r = -EIO;
	if (r < 0)
		reply_error(req, r);
	else if (size == 0)
		fuse_reply_xattr(req, x.out.len);
	else
		fuse_reply_buf(req, x.out.buf, x.out.len);
	sb_free(&x.out);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	reply_xattr(req, ino, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr(req, ino, NULL, size);
}

/* df and statfs(2) on the mount: 0 blocks and 0 inodes in total, free and available, as proc,
 * sysfs and other views that hold no space of their own report. The backups take space in the
 * store's file system, which df reports where the store is; reporting it here again, all of it
 * in use because nothing can be written, would read as a full disk to every monitor that alarms
 * on used/total. With a total of 0 there is no percentage to alarm on: df prints "-" (and lists
 * the mount only when asked for it by name or with -a), and checks such as Nagios' check_disk
 * skip file systems without blocks. */
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	const struct statvfs sv = {
		.f_bsize = 4096,
		.f_frsize = 4096,
		.f_namemax = 255,
	};
	fuse_reply_statfs(req, &sv);
}

/* Everything that would change the tree: read-only file system. The mount is also made with
 * MS_RDONLY, so the kernel normally answers these itself. */
static void erofs(fuse_req_t req) { fuse_reply_err(req, EROFS); }
static void op_setattr(fuse_req_t req, fuse_ino_t i, struct stat *a, int s, struct fuse_file_info *f)
{ (void)i; (void)a; (void)s; (void)f; erofs(req); }
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{ (void)p; (void)n; (void)m; (void)d; erofs(req); }
static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{ (void)p; (void)n; (void)m; erofs(req); }
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { (void)p; (void)n; erofs(req); }
static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n)
{ (void)l; (void)p; (void)n; erofs(req); }
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
		      unsigned int f)
{ (void)p; (void)n; (void)np; (void)nn; (void)f; erofs(req); }
static void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n)
{ (void)i; (void)p; (void)n; erofs(req); }
static void op_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o,
		     struct fuse_file_info *f)
{ (void)i; (void)b; (void)s; (void)o; (void)f; erofs(req); }
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *f)
{ (void)p; (void)n; (void)m; (void)f; erofs(req); }
static void op_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f)
{ (void)i; (void)n; (void)v; (void)s; (void)f; erofs(req); }
static void op_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) { (void)i; (void)n; erofs(req); }
static void op_fallocate(fuse_req_t req, fuse_ino_t i, int m, off_t o, off_t l, struct fuse_file_info *f)
{ (void)i; (void)m; (void)o; (void)l; (void)f; erofs(req); }

const struct fuse_lowlevel_ops cbfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.statfs = op_statfs,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.write = op_write,
	.create = op_create,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.fallocate = op_fallocate,
};

int cbfs_init_threads(struct cbfs *fs)
{
	pthread_mutex_init(&fs->open_mu, NULL);
	int r = cbfs_cl_init(fs);
	return r < 0 ? r : -pthread_key_create(&fs->conn_key, close_conn);
}

void cbfs_end_threads(struct cbfs *fs)
{
	close_conn(pthread_getspecific(fs->conn_key));
	pthread_setspecific(fs->conn_key, NULL);
	pthread_key_delete(fs->conn_key);
	while (fs->open_files) /* each the first member of its open_file */
		open_file_free(fs, (struct open_file *)fs->open_files);
	while (fs->open_dirs) /* each the first member of its dirlist */
		dirlist_free(fs, (struct dirlist *)fs->open_dirs);
	cbfs_cl_free(fs);
}
