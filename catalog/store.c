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
#include <time.h>
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

int store_reclaim_tmp(const char *root, unsigned *reclaimed)
{
	*reclaimed = 0;
	_cleanup_free_ char *tmp = path_join(root, "tmp");
	if (!tmp)
		return -ENOMEM;
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		/* A live writer holds the lock; a dead one's file is free to take. A writer locks
		 * its file just after creating it, so an empty, new file may be one in that instant:
		 * leave those alone (a writer never writes before it holds the lock). */
		/* Once locked, the name must still be this file: a writer that finished meanwhile
		 * has renamed it into packs/ (and the name is gone, or another's). */
		struct stat st, now;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
		    (st.st_size > 0 || time(NULL) - st.st_mtime > 60) &&
		    fstatat(dfd, e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino &&
		    now.st_dev == st.st_dev) {
			if (unlinkat(dfd, e->d_name, 0) == 0)
				(*reclaimed)++;
			else if (errno != ENOENT && r == 0)
				r = -errno;
		}
		close(fd);
	}
	closedir(d);
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
	int fd = open(tmp.buf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		int r = -errno;
		if (fd >= 0) {
			close(fd);
			unlink(tmp.buf);
		}
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
