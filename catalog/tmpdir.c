/* tmpdir.c: see tmpdir.h. */
#include "tmpdir.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMPDIR_GRACE_SECONDS 60
#define TMPDIR_MAX_DEPTH 16 /* deeper than any tree a run makes */

const char *tmpdir_root(void)
{
	const char *tmp = getenv("TMPDIR");
	return tmp && *tmp ? tmp : "/tmp";
}

/* name under dirfd, never followed, with its cached attributes only: a FUSE mount whose
 * daemon is stopped cannot hang the caller. 0 or -errno. */
static int peek(int dirfd, const char *name, struct statx *sx)
{
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
		  STATX_TYPE | STATX_MODE | STATX_UID | STATX_MTIME, sx) < 0)
		return -errno;
	return 0;
}

/* Removes the entries of directory dfd (closed here) on device dev, then name under parent;
 * a directory something is mounted on (mounted_at) and what holds it stay. */
static void remove_tree_at(int parent, const char *name, int dfd, dev_t dev, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		struct statx sx;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || peek(dirfd(d), e->d_name, &sx) < 0)
			continue;
		if (!S_ISDIR(sx.stx_mode)) {
			unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		if (mounted_at(dirfd(d), e->d_name, dev) || depth >= TMPDIR_MAX_DEPTH)
			continue;
		int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			remove_tree_at(dirfd(d), e->d_name, sub, dev, depth + 1);
	}
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

/* Is entry name under tmpfd (on device dev) a directory of this user's, made by a run (0700),
 * older than the grace? */
static bool sweepable(int tmpfd, const char *name, dev_t dev)
{
	struct statx sx;
	return peek(tmpfd, name, &sx) == 0 && S_ISDIR(sx.stx_mode) && !mounted_at(tmpfd, name, dev) &&
	       sx.stx_uid == geteuid() && !(sx.stx_mode & 077) &&
	       time(NULL) - sx.stx_mtime.tv_sec > TMPDIR_GRACE_SECONDS;
}

/* Removes the directories of prefix under tmp whose runs are gone (see tmpdir.h). */
static void sweep(const char *tmp, const char *prefix)
{
	int tmpfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat tst;
	if (tmpfd < 0 || fstat(tmpfd, &tst) < 0) {
		if (tmpfd >= 0)
			close(tmpfd);
		return;
	}
	int listfd = dup(tmpfd);
	DIR *d = listfd < 0 ? NULL : fdopendir(listfd);
	if (!d && listfd >= 0)
		close(listfd);
	for (struct dirent *e; d && (e = readdir(d));) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || !sweepable(tmpfd, e->d_name, tst.st_dev))
			continue;
		int dfd = openat(tmpfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (dfd >= 0 && fstat(dfd, &st) == 0 && st.st_dev == tst.st_dev &&
		    flock(dfd, LOCK_EX | LOCK_NB) == 0)
			remove_tree_at(tmpfd, e->d_name, dfd, tst.st_dev, 0); /* closing dfd unlocks */
		else if (dfd >= 0)
			close(dfd);
	}
	if (d)
		closedir(d);
	close(tmpfd);
}

/* Opens directory path and locks it for this run: its descriptor, or -errno. */
static int lock_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int tmpdir_make(const char *kind, struct tmpdir *t)
{
	*t = (struct tmpdir){.fd = -1};
	const char *tmp = tmpdir_root();
	char prefix[64];
	int n = snprintf(prefix, sizeof(prefix), "cassbackup-%s-", kind);
	if (n < 0 || (size_t)n >= sizeof(prefix))
		return -EINVAL;
	sweep(tmp, prefix);
	char *path = NULL;
	if (asprintf(&path, "%s/%sXXXXXX", tmp, prefix) < 0)
		return -ENOMEM;
	if (!mkdtemp(path)) {
		int e = errno;
		free(path);
		return -e;
	}
	int fd = lock_dir(path);
	if (fd < 0) {
		rmdir(path);
		free(path);
		return fd;
	}
	*t = (struct tmpdir){.path = path, .fd = fd};
	return 0;
}

int tmpdir_remake(struct tmpdir *t)
{
	if (!t->path || access(t->path, F_OK) == 0 || errno != ENOENT)
		return 0;
	if (mkdir(t->path, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = lock_dir(t->path);
	if (fd < 0)
		return fd;
	close(t->fd);
	t->fd = fd;
	return 0;
}

void tmpdir_remove(struct tmpdir *t)
{
	if (!t->path)
		return;
	struct stat st;
	int dfd = fstat(t->fd, &st) < 0 ? -1 : dup(t->fd);
	if (dfd >= 0)
		remove_tree_at(AT_FDCWD, t->path, dfd, st.st_dev, 0);
	close(t->fd);
	free(t->path);
	*t = (struct tmpdir){.fd = -1};
}
