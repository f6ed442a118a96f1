/* store.c: see store.h. */
#include "store.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static char *path_join(const char *a, const char *b)
{
	struct strbuf sb = {0};
	if (sb_printf(&sb, "%s/%s", a, b) < 0)
		return NULL;
	return sb.buf;
}

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

int store_init(const char *root)
{
	if (mkdir(root, 0755) < 0) {
		if (errno != EEXIST)
			return -errno;
		int e = dir_is_empty(root);
		if (e < 0)
			return e;
		if (!e)
			return -EEXIST;
	}
	_cleanup_free_ char *packs = path_join(root, "packs");
	_cleanup_free_ char *tmp = path_join(root, "tmp");
	_cleanup_free_ char *db = path_join(root, "catalog.db");
	if (!packs || !tmp || !db)
		return -ENOMEM;
	if (mkdir(packs, 0755) < 0 || mkdir(tmp, 0700) < 0)
		return -errno;
	catalog *c;
	int r = catalog_open(&c, db, CATALOG_CREATE);
	if (r < 0)
		return r;
	catalog_close(c);
	return fsync_dir(root);
}

int store_open(const char *root, int catalog_flags, catalog **out)
{
	*out = NULL;
	struct stat st;
	if (stat(root, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	_cleanup_free_ char *db = path_join(root, "catalog.db");
	if (!db)
		return -ENOMEM;
	if (stat(db, &st) < 0)
		return errno == ENOENT ? -EMEDIUMTYPE : -errno;
	return catalog_open(out, db, catalog_flags & ~CATALOG_CREATE);
}

/* The tmp/ directory, opened to hold its flock. Writers hold it shared while they create and
 * lock a new tmp file; the reclaimer holds it exclusively while it looks. So the reclaimer never
 * sees a file in the instant between its creation and its lock: any tmp file it can lock is
 * one whose writer is gone, whatever its size or age. */
static int open_tmpdir(const char *root)
{
	_cleanup_free_ char *tmp = path_join(root, "tmp");
	if (!tmp)
		return -ENOMEM;
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 ? -errno : dfd;
}

static int flock_retry(int fd, int op)
{
	while (flock(fd, op) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* Removes name if this process can lock it and the name still is the file locked: a writer
 * that finished meanwhile has renamed it into packs/ (the name is gone, or another's).
 * 1 when removed, 0 when held or gone, or -errno. */
static int reclaim_one(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 0 : -errno;
	struct stat st, now;
	int r = 0;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
	    fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino &&
	    now.st_dev == st.st_dev) {
		if (unlinkat(dfd, name, 0) == 0)
			r = 1;
		else if (errno != ENOENT)
			r = -errno;
	}
	close(fd);
	return r;
}

int store_reclaim_tmp(const char *root, unsigned *reclaimed)
{
	*reclaimed = 0;
	int dfd = open_tmpdir(root);
	if (dfd < 0)
		return dfd == -ENOENT ? 0 : dfd;
	int r = flock_retry(dfd, LOCK_EX);
	DIR *d = r < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		r = r < 0 ? r : -errno;
		close(dfd);
		return r;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int k = reclaim_one(dfd, e->d_name);
		if (k > 0)
			(*reclaimed)++;
		else if (k < 0 && r == 0)
			r = k;
	}
	closedir(d); /* closes dfd, dropping its lock */
	return r;
}

int store_tmp_create(const char *root, struct store_tmp *t)
{
	*t = (struct store_tmp){.fd = -1};
	unsigned char id[16];
	char hex[33];
	if (getrandom(id, sizeof(id), 0) != sizeof(id))
		return -EIO;
	hex_encode(id, sizeof(id), hex);
	struct strbuf tmp = {0}, rel = {0}, fin = {0};
	if (sb_printf(&tmp, "%s/tmp/%s.tar.zst.tmp", root, hex) < 0 ||
	    sb_printf(&rel, "packs/%.2s/%s.tar.zst", hex, hex) < 0 ||
	    sb_printf(&fin, "%s/%s", root, rel.buf) < 0) {
		sb_free(&tmp);
		sb_free(&rel);
		sb_free(&fin);
		return -ENOMEM;
	}
	int dfd = open_tmpdir(root);
	int r = dfd < 0 ? dfd : flock_retry(dfd, LOCK_SH);
	int fd = -1;
	if (r == 0) {
		fd = openat(dfd, strrchr(tmp.buf, '/') + 1, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		r = fd < 0 ? -errno : flock_retry(fd, LOCK_EX);
		if (r < 0 && fd >= 0) {
			close(fd);
			unlink(tmp.buf);
		}
	}
	if (dfd >= 0)
		close(dfd); /* drops the shared lock: the file is ours now */
	if (r < 0) {
		sb_free(&tmp);
		sb_free(&rel);
		sb_free(&fin);
		return r;
	}
	t->fd = fd;
	t->path = tmp.buf;
	t->relpath = rel.buf;
	t->final = fin.buf;
	return 0;
}

int store_tmp_commit(const char *root, struct store_tmp *t)
{
	if (fsync(t->fd) < 0)
		return -errno;
	_cleanup_free_ char *dir = strdup(t->final);
	_cleanup_free_ char *packs = path_join(root, "packs");
	_cleanup_free_ char *tmpdir = path_join(root, "tmp");
	if (!dir || !packs || !tmpdir)
		return -ENOMEM;
	*strrchr(dir, '/') = '\0';
	if (mkdir(dir, 0755) < 0) {
		if (errno != EEXIST)
			return -errno;
	} else {
		int r = fsync_dir(packs);
		if (r < 0)
			return r;
	}
	if (rename(t->path, t->final) < 0)
		return -errno;
	t->renamed = true;
	int r = fsync_dir(dir);
	return r < 0 ? r : fsync_dir(tmpdir);
}

void store_tmp_release(struct store_tmp *t, bool committed)
{
	if (t->path && !committed)
		unlink(t->renamed ? t->final : t->path);
	if (t->fd >= 0)
		close(t->fd);
	free(t->path);
	free(t->relpath);
	free(t->final);
	*t = (struct store_tmp){.fd = -1};
}
