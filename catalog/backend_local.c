/* backend_local.c: a store in a local directory.
 *
 * Every object is opened beneath the store's root with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so a symlink planted in a store never leads outside it. Uploads are
 * O_TMPFILE files in tmp/, invisible until committed: fsync, then linked straight to the key
 * (CB_PUT_EXCLUSIVE: link(2) never replaces, so a taken key gives -EEXIST), or, to replace an
 * object, linked under tmp/ and renamed over the key (CB_PUT_REPLACE_ONLY: swapped with it,
 * and the old one removed from tmp/); then the directory is fsynced. So a writer
 * killed at any point leaves either nothing (an unlinked inode the kernel frees), or the whole
 * object under its key, or (replacing only) a named tmp/ file. Without O_TMPFILE (NFS, some
 * FUSE file systems) the upload is a named tmp/ file its writer holds with flock(2), moved to
 * its key with renameat2(RENAME_NOREPLACE) when exclusive. cb_backend_reclaim removes named
 * tmp/ files nobody holds.
 */
#include "backend_i.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DIR_MODE 0700
#define FILE_MODE 0600
#define WRITEBACK_CHUNK (8u << 20) /* start writeback of each 8 MiB written, to pace the disk */

struct local_backend {
	struct cb_backend b;
	int rootfd;
};

static int local_rootfd(struct cb_backend *b) { return ((struct local_backend *)b)->rootfd; }

/* Opens path (relative to dirfd) beneath dirfd, following no symlink at all. */
static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	if (errno != ENOSYS)
		return -errno;
	/* Kernels before 5.6: one component at a time, none a symlink. */
	int cur = dirfd;
	const char *p = path;
	for (const char *slash; (slash = strchr(p, '/')); p = slash + 1) {
		char part[256];
		size_t n = (size_t)(slash - p);
		if (n == 0 || n >= sizeof(part))
			return -EINVAL;
		memcpy(part, p, n);
		part[n] = '\0';
		int next = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		if (cur != dirfd)
			close(cur);
		if (next < 0)
			return -e;
		cur = next;
	}
	int fd2 = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	int e = errno;
	if (cur != dirfd)
		close(cur);
	return fd2 < 0 ? -e : fd2;
}

/* The directory part of key ("" for a top-level key) and its last part. */
static void split_key(const char *key, char *dir, size_t dirlen, const char **base)
{
	const char *slash = strrchr(key, '/');
	if (!slash) {
		snprintf(dir, dirlen, ".");
		*base = key;
		return;
	}
	snprintf(dir, dirlen, "%.*s", (int)(slash - key), key);
	*base = slash + 1;
}

/* Opens directory dir beneath root, creating it and its parents (0700, fsynced) if missing. */
static int open_dir_p(int rootfd, const char *dir)
{
	int fd = open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd != -ENOENT)
		return fd;
	char parent[1025];
	const char *base;
	split_key(dir, parent, sizeof(parent), &base);
	int pfd = open_dir_p(rootfd, parent);
	if (pfd < 0)
		return pfd;
	int r = 0;
	if (mkdirat(pfd, base, DIR_MODE) < 0 && errno != EEXIST)
		r = -errno;
	else if (fchmodat(pfd, base, DIR_MODE, AT_SYMLINK_NOFOLLOW) < 0 && errno != EOPNOTSUPP)
		r = -errno;
	if (r == 0 && fsync(pfd) < 0)
		r = -errno;
	close(pfd);
	return r < 0 ? r : open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY, 0);
}

static int local_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	int fd = open_beneath(local_rootfd(b), key, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EISDIR : 0;
	if (r == 0 && (uint64_t)st.st_size > max)
		r = -EFBIG;
	char *buf = r == 0 ? malloc((size_t)st.st_size + 1) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	ssize_t n = r == 0 ? pread_full(fd, buf, (size_t)st.st_size, 0) : 0;
	close(fd);
	if (r == 0 && n < 0)
		r = (int)n;
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[n] = '\0';
	*data = buf;
	*len = (size_t)n;
	return 0;
}

static int64_t mtime_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* What the store says of a file (struct cb_object_info). Its version: the inode number, its
 * generation and its change time. A file made anew under its name has another inode, or the
 * same number reused with another generation (ext4, XFS, btrfs give one), or another change
 * time where timestamps are fine-grained; on a file system of 1-second timestamps without
 * generations, a file made again in the same second as the one it replaces in the same
 * inode is not told apart. gen: 0 when unknown. Not the device: hosts that share a store
 * (NFS) number it differently, and would each read every manifest again. */
static struct cb_object_info info_of(const struct stat *st, unsigned gen)
{
	struct cb_object_info info = {(uint64_t)st->st_size, mtime_of(st), ""};
	snprintf(info.version, sizeof(info.version), "%llx.%x.%lld.%09ld", (unsigned long long)st->st_ino,
		 gen, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
	return info;
}

/* The generation of the open file fd's inode (FS_IOC_GETVERSION), 0 when the file system has
 * none to give. */
static unsigned generation_of(int fd)
{
	int gen = 0;
	return ioctl(fd, FS_IOC_GETVERSION, &gen) == 0 ? (unsigned)gen : 0;
}

/* The file name in dfd as it is now, its stat and generation from one open (never a mix of
 * a file and the one that replaced it): 0, or -errno (gone meanwhile: -ENOENT). */
static int stat_with_generation(int dfd, const char *name, struct stat *st, unsigned *gen)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fstat(fd, st) < 0 ? -errno : 0;
	*gen = generation_of(fd);
	close(fd);
	return r;
}

/* Only manifests, the commit points a catalog notices replaced, are worth an open each. */
static bool wants_generation(const char *key)
{
	return strncmp(key, "backups/", 8) == 0;
}

static int local_stat(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	bool gen_wanted = wants_generation(key); /* an ioctl needs more than an O_PATH open */
	int fd = open_beneath(local_rootfd(b), key,
			      gen_wanted ? O_RDONLY | O_NONBLOCK | O_NOCTTY : O_RDONLY | O_PATH, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -EISDIR : 0;
	unsigned gen = r == 0 && gen_wanted ? generation_of(fd) : 0;
	close(fd);
	if (r == 0)
		*info = info_of(&st, gen);
	return r;
}

/* Removes the fan-out directory packs/xx once its last pack is gone, so a store that prunes
 * for years keeps no empty directories. Only packs/ is tidied: packs are written and deleted
 * under the store lock (create and copy shared, prune exclusive), so no writer can be about to
 * link a pack into the directory removed here; locks/ and backups/ have no such exclusion.
 * Best effort: a directory that is not empty, or any error, leaves it as it is. */
static void remove_empty_pack_dir(int rootfd, const char *dir)
{
	if (strncmp(dir, "packs/", 6) != 0 || strchr(dir + 6, '/'))
		return;
	int pfd = open_beneath(rootfd, "packs", O_RDONLY | O_DIRECTORY, 0);
	if (pfd < 0)
		return;
	if (unlinkat(pfd, dir + 6, AT_REMOVEDIR) == 0)
		(void)fsync(pfd);
	close(pfd);
}

static int local_del(struct cb_backend *b, const char *key)
{
	char dir[1025];
	const char *base;
	split_key(key, dir, sizeof(dir), &base);
	int dfd = open_beneath(local_rootfd(b), dir, O_RDONLY | O_DIRECTORY, 0);
	if (dfd < 0)
		return dfd;
	int r = unlinkat(dfd, base, 0) < 0 ? -errno : fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	if (r == 0)
		remove_empty_pack_dir(local_rootfd(b), dir);
	return r;
}

struct walk {
	cb_list_info_fn cb;
	void *ctx;
	struct strbuf key;
};

/* A listing that could not read an entry, or the rest of a directory, fails whole: one that
 * skipped it would tell prune that a backup or a pack is not there. That includes EACCES: a
 * user who may read only some of a store (whose entries are its owner's alone, 0700/0600) is
 * refused it, rather than shown part of it as the whole. Names the key (the entry's, or the
 * directory's when readdir failed) in the backend's error; returns r. */
static int walk_failed(const struct walk *w, int r)
{
	cb_backend_set_error("cannot list %s: %s", w->key.buf, strerror(-r));
	return r;
}

/* One entry of the walk, named by w->key: a file goes to the callback, a directory is walked.
 * An entry removed since readdir named it is not there (0), as a later listing would say.
 * 0, the callback's result, or -errno (walk_failed). */
static int walk_dir(int dfd, struct walk *w, int depth);
static int walk_entry(DIR *d, const char *name, struct walk *w, int depth)
{
	struct stat st;
	unsigned gen = 0;
	int r = fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (r == 0 && S_ISREG(st.st_mode) && wants_generation(w->key.buf))
		r = stat_with_generation(dirfd(d), name, &st, &gen);
	if (r == 0 && S_ISREG(st.st_mode)) {
		struct cb_object_info info = info_of(&st, gen);
		return w->cb(w->ctx, w->key.buf, &info);
	}
	if (r == 0 && S_ISDIR(st.st_mode) && depth < 8) { /* no store key is deeper */
		int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0 && sb_puts(&w->key, "/") < 0) {
			close(sub);
			return -ENOMEM;
		}
		if (sub >= 0)
			return walk_dir(sub, w, depth + 1);
		r = -errno;
	}
	return r == -ENOENT ? 0 : r < 0 ? walk_failed(w, r) : 0; /* 0: not a store object's kind */
}

/* Lists dfd (which it closes) recursively; w->key holds the key prefix of dfd's entries. A
 * directory that cannot be read to its end fails the listing (walk_failed). */
static int walk_dir(int dfd, struct walk *w, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return walk_failed(w, -errno);
	}
	size_t keep = w->key.len;
	int r = 0;
	while (r == 0) {
		errno = 0;
		struct dirent *e = readdir(d);
		w->key.len = keep;
		w->key.buf[keep] = '\0';
		if (!e) {
			r = errno ? walk_failed(w, -errno) : 0;
			break;
		}
		if (!name_is_component(e->d_name) || e->d_name[0] == '.' ||
		    (depth == 0 && keep == 0 && !strcmp(e->d_name, "tmp")))
			continue;
		r = sb_puts(&w->key, e->d_name) < 0 ? -ENOMEM : walk_entry(d, e->d_name, w, depth);
	}
	w->key.len = keep;
	w->key.buf[keep] = '\0';
	closedir(d);
	return r;
}

static int local_list(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx)
{
	size_t n = strlen(prefix);
	char dir[1025];
	snprintf(dir, sizeof(dir), "%.*s", n ? (int)n - 1 : 1, n ? prefix : ".");
	int dfd = open_beneath(local_rootfd(b), dir, O_RDONLY | O_DIRECTORY, 0);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return dfd;
	struct walk w = {cb, ctx, {0}};
	int r = sb_puts(&w.key, prefix);
	r = r < 0 ? (close(dfd), r) : walk_dir(dfd, &w, 0);
	sb_free(&w.key);
	return r;
}

static int local_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	int fd = open_beneath(local_rootfd(b), key, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	int r = cb_io_open_fd(fd, out);
	if (r < 0)
		close(fd);
	return r;
}

/* --- uploads ----------------------------------------------------------------------------- */

struct local_upload {
	struct cb_upload u;
	struct local_backend *lb;
	int fd, tmpdir;
	char *key;
	char name[48];   /* tmp/ name: linked at commit (or at once without O_TMPFILE) */
	bool linked;     /* name exists in tmp/ */
	bool exclusive;  /* CB_PUT_EXCLUSIVE */
	bool replace_only; /* CB_PUT_REPLACE_ONLY */
	bool swapped;    /* the tmp/ name holds the object replaced (replace_only) */
	uint64_t synced; /* bytes handed to writeback so far */
};

static int upload_write(struct cb_upload *u, const void *buf, size_t len)
{
	struct local_upload *l = (struct local_upload *)u;
	int r = write_full(l->fd, buf, len);
	if (r < 0)
		return r;
	uint64_t written = u->size + len;
	if (written - l->synced >= WRITEBACK_CHUNK) {
		sync_file_range(l->fd, (off64_t)l->synced, (off64_t)(written - l->synced),
				SYNC_FILE_RANGE_WRITE);
		l->synced = written;
	}
	return 0;
}

/* Links the O_TMPFILE upload to name in dfd: atomic, and never replacing (-EEXIST). */
static int link_tmpfile(struct local_upload *l, int dfd, const char *name)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", l->fd);
	return linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

/* Moves the named tmp/ upload to base in dfd without replacing anything there. */
static int move_noreplace(struct local_upload *l, int dfd, const char *base)
{
	if (renameat2(l->tmpdir, l->name, dfd, base, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(l->tmpdir, l->name, dfd, base, 0) < 0) /* no RENAME_NOREPLACE here */
		return -errno;
	unlinkat(l->tmpdir, l->name, 0);
	return 0;
}

/* Puts the written upload under its key in dfd (see the top of this file). */
static int place(struct local_upload *l, int dfd, const char *base)
{
	int r;
	if (l->exclusive)
		return l->linked ? move_noreplace(l, dfd, base) : link_tmpfile(l, dfd, base);
	if (!l->linked && (r = link_tmpfile(l, l->tmpdir, l->name)) < 0)
		return r;
	l->linked = true;
	if (l->replace_only) {
		if (renameat2(l->tmpdir, l->name, dfd, base, RENAME_EXCHANGE) == 0) {
			l->swapped = true;
			return 0;
		}
		if (errno != EINVAL && errno != ENOSYS) /* ENOENT: the key is gone */
			return -errno;
	}
	return renameat(l->tmpdir, l->name, dfd, base) < 0 ? -errno : 0;
}

static int upload_commit(struct cb_upload *u)
{
	struct local_upload *l = (struct local_upload *)u;
	char dir[1025];
	const char *base;
	split_key(l->key, dir, sizeof(dir), &base);
	if (fsync(l->fd) < 0)
		return -errno;
	int dfd = open_dir_p(l->lb->rootfd, dir);
	if (dfd < 0)
		return dfd;
	int r = place(l, dfd, base);
	if (r == 0) {
		l->linked = l->swapped; /* the name in tmp/, if any, is the key's now, or the old
					 * object's (removed by upload_free) */
		r = fsync(dfd) < 0 ? -errno : fsync(l->tmpdir) < 0 ? -errno : 0;
	}
	close(dfd);
	struct stat st; /* the file written, still open: its inode is not reused meanwhile */
	if (r == 0 && fstat(l->fd, &st) == 0) {
		struct cb_object_info info = info_of(&st, wants_generation(l->key) ? generation_of(l->fd) : 0);
		memcpy(u->version, info.version, CB_VERSION_MAX);
	}
	return r;
}

static void upload_free(struct cb_upload *u)
{
	struct local_upload *l = (struct local_upload *)u;
	if (l->linked)
		unlinkat(l->tmpdir, l->name, 0);
	if (l->fd >= 0)
		close(l->fd);
	if (l->tmpdir >= 0)
		close(l->tmpdir);
	free(l->key);
	free(l);
}

static const struct cb_upload_ops local_upload_ops = {
	.write = upload_write,
	.commit = upload_commit,
	.free = upload_free,
};

/* Without O_TMPFILE (NFS, some FUSE file systems): a named file, locked before it has data. */
static int create_named(struct local_upload *l)
{
	l->fd = openat(l->tmpdir, l->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		       FILE_MODE);
	if (l->fd < 0)
		return -errno;
	l->linked = true;
	return flock(l->fd, LOCK_EX) < 0 ? -errno : 0;
}

static int local_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint,
			      int flags, struct cb_upload **out)
{
	(void)size_hint;
	struct local_upload *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	*l = (struct local_upload){.u.ops = &local_upload_ops, .lb = (struct local_backend *)b,
				   .fd = -1, .tmpdir = -1, .key = strdup(key),
				   .exclusive = (flags & CB_PUT_EXCLUSIVE) != 0,
				   .replace_only = (flags & CB_PUT_REPLACE_ONLY) != 0};
	unsigned char rnd[16];
	char hex[33];
	int r = !l->key ? -ENOMEM : getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd) ? -EIO : 0;
	hex_encode(rnd, sizeof(rnd), hex);
	snprintf(l->name, sizeof(l->name), "%s.upload", hex);
	if (r == 0 && (l->tmpdir = open_dir_p(l->lb->rootfd, "tmp")) < 0)
		r = l->tmpdir;
	if (r == 0) {
		l->fd = openat(l->tmpdir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, FILE_MODE);
		if (l->fd >= 0 && flock(l->fd, LOCK_EX) < 0)
			r = -errno;
		else if (l->fd < 0)
			r = (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) ? create_named(l)
											 : -errno;
	}
	if (r == 0 && fchmod(l->fd, FILE_MODE) < 0)
		r = -errno;
	if (r < 0) {
		upload_free(&l->u);
		return r;
	}
	*out = &l->u;
	return 0;
}

/* tmp/ entries that no live upload holds: left by a process that died between linking and
 * renaming, or (without O_TMPFILE) at any point. A named file younger than a minute with no
 * data may be one a writer has created and not yet locked: left alone. */
static int local_reclaim(struct cb_backend *b, unsigned *removed)
{
	int dfd = open_beneath(local_rootfd(b), "tmp", O_RDONLY | O_DIRECTORY, 0);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return dfd;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		struct stat st, now;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
		    (st.st_size > 0 || time(NULL) - st.st_mtime > 60) &&
		    fstatat(dirfd(d), e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
		    unlinkat(dirfd(d), e->d_name, 0) == 0)
			(*removed)++;
		close(fd);
	}
	closedir(d);
	return 0;
}

static void local_close(struct cb_backend *b)
{
	struct local_backend *lb = (struct local_backend *)b;
	close(lb->rootfd);
	free(b->location);
	free(lb);
}

static const struct cb_backend_ops local_ops = {
	.get = local_get,
	.stat = local_stat,
	.del = local_del,
	.list = local_list,
	.open_read = local_open_read,
	.upload_begin = local_upload_begin,
	.reclaim = local_reclaim,
	.close = local_close,
};

int cb_backend_open_local(const char *path, int flags, struct cb_backend **out)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct local_backend *lb = calloc(1, sizeof(*lb));
	char *loc = strdup(path);
	if (!lb || !loc) {
		free(lb);
		free(loc);
		close(fd);
		return -ENOMEM;
	}
	lb->b = (struct cb_backend){.ops = &local_ops, .location = loc,
				    .readonly = (flags & CB_BACKEND_READONLY) != 0};
	lb->rootfd = fd;
	*out = &lb->b;
	return 0;
}
