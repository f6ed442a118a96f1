/* killat.so: an LD_PRELOAD shim for tests that kills this process (SIGKILL) at its Nth removal
 * of a file in a directory named "backups" or below one (an incremental backup's link):
 * CASSBACKUP_TEST_KILL_AT_UNLINK=N, with CASSBACKUP_TEST_KILL_AFTER=1 after the Nth removal is
 * done, else before it. So a test lands a kill -9 at an exact point among the removals that
 * create --incremental makes after its commit, on a loaded machine as on a quiet one. Other
 * removals (a store's temporary files) pass through uncounted.
 * And CASSBACKUP_TEST_FAIL_PACK_LINK=N fails (EIO) the Nth linkat(2) into a directory below
 * "packs": the Nth commit of a pack into a local store.
 * And CASSBACKUP_TEST_STOP_AT_MANIFEST=1 stops the process (SIGSTOP) just before it renames or
 * links a file into backups/: a create's or copy's commit in a local store, after its lease
 * was checked and before its manifest lands (a pause there, as a suspended VM makes one);
 * =after stops it just after the manifest landed.
 * And CASSBACKUP_TEST_EIO_NAME=NAME fails with EIO every openat(2) and fstatat(2) of a path
 * whose last component is NAME, and CASSBACKUP_TEST_EIO_READDIR=NAME every readdir(3) of a
 * directory of that name: a damaged file or directory, as a failing disk gives it, at every
 * try.
 * And CASSBACKUP_TEST_STOP_AT_OPEN=NAME stops the process (SIGSTOP) once, just before its
 * first open(2) or openat(2) of a path whose last component is NAME: a pause at a known point
 * of a command (restore opens each target table directory after reading that table's files
 * from the catalog), for another command to run there.
 * And CASSBACKUP_TEST_STOP_AT_UNLINK=NAME stops the process (SIGSTOP) once, just before its
 * first unlinkat(2) of a path whose last component is NAME: a pause between what a command
 * checked and what it deletes (key remove's slot), for another command to run there.
 * Every NAME here is a shell pattern (fnmatch(3)): "*.json" is the first lock a prune lets go.
 * And CASSBACKUP_TEST_STOP_AT_RENAME=NAME stops the process (SIGSTOP) once, just before its
 * first renameat2(2) or linkat(2) to a name that is NAME: restore's placing of an sstable's Data.db, for a
 * file of that name to appear first (a flush of the node).
 * And CASSBACKUP_TEST_STOP_AT_FLOCK=1 stops the process (SIGSTOP) once, just before its first
 * flock(2): a point-in-time restore between its look at the segments directory and its lock.
 * And CASSBACKUP_TEST_STOP_AT_FSTAT=NAME stops the process (SIGSTOP) once, at its Nth fstat(2)
 * (CASSBACKUP_TEST_STOP_AT_FSTAT_NTH=N, default 1) of an open file whose name is NAME: the file
 * is open, so what it reads is what the file held then, whatever another command does to its
 * name meanwhile (key remove's look at its own slot, the unlock's being the first).
 * And CASSBACKUP_TEST_STOP_AT_SETSID=1 stops the process (SIGSTOP) just before setsid(2): in
 * mount.cassbackup without -f, the daemon just after its fork, before it opens the store,
 * while the parent waits for its word. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether path has a component "backups" (not "/var/backups-x", not "mybackups"). */
static int has_backups_component(const char *path)
{
	for (const char *p = strstr(path, "backups"); p; p = strstr(p + 1, "backups"))
		if ((p == path || p[-1] == '/') && (p[7] == '/' || p[7] == '\0'))
			return 1;
	return 0;
}

/* Whether the directory dirfd (or the path's own directories) is backups/ or below it. The
 * store's own backups/ (a local store's manifests) would count too, but create removes no
 * manifest. */
static int in_backups(int dirfd, const char *path)
{
	char dir[PATH_MAX + 1] = "";
	if (path[0] != '/' && dirfd != AT_FDCWD) {
		char link[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		ssize_t n = readlink(link, dir, PATH_MAX);
		dir[n > 0 ? n : 0] = '\0';
	}
	return has_backups_component(dir) || has_backups_component(path);
}

static long removed; /* removals in backups/ done so far */

/* Kills when this is the point asked for: before the Nth removal, or after it. */
static void maybe_kill(int after_done)
{
	const char *at = getenv("CASSBACKUP_TEST_KILL_AT_UNLINK");
	const char *after = getenv("CASSBACKUP_TEST_KILL_AFTER");
	int want_after = after && strcmp(after, "1") == 0;
	if (at && want_after == after_done && (after_done ? removed : removed + 1) == strtol(at, NULL, 10))
		raise(SIGKILL);
}

static int last_is(const char *variable, const char *path);

static void maybe_stop_at_unlink(const char *path)
{
	static int stopped;
	if (!stopped && last_is("CASSBACKUP_TEST_STOP_AT_UNLINK", path)) {
		stopped = 1;
		raise(SIGSTOP);
	}
}

int unlinkat(int dirfd, const char *path, int flags)
{
	static int (*real)(int, const char *, int);
	if (!real && !(real = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "unlinkat")))
		abort();
	maybe_stop_at_unlink(path);
	int ours = !(flags & AT_REMOVEDIR) && in_backups(dirfd, path);
	if (ours)
		maybe_kill(0);
	int r = real(dirfd, path, flags);
	if (ours && r == 0) {
		removed++;
		maybe_kill(1);
	}
	return r;
}

/* Whether directory dirfd is "packs" or below it. */
static int in_packs(int dirfd)
{
	char dir[PATH_MAX + 1], link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	ssize_t n = dirfd == AT_FDCWD ? -1 : readlink(link, dir, PATH_MAX);
	dir[n > 0 ? n : 0] = '\0';
	return strstr(dir, "/packs/") != NULL;
}

/* Stops here when asked to (when: "1" before the call, "after" after it succeeded), for a
 * name that lands in backups/. */
static void maybe_stop(int newdirfd, const char *newpath, const char *when)
{
	const char *stop = getenv("CASSBACKUP_TEST_STOP_AT_MANIFEST");
	if (stop && strcmp(stop, when) == 0 && in_backups(newdirfd, newpath))
		raise(SIGSTOP);
}

static void maybe_stop_at_rename(const char *newpath)
{
	static int stopped;
	if (!stopped && last_is("CASSBACKUP_TEST_STOP_AT_RENAME", newpath)) {
		stopped = 1;
		raise(SIGSTOP);
	}
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags)
{
	static int (*real)(int, const char *, int, const char *, unsigned);
	if (!real && !(real = (int (*)(int, const char *, int, const char *, unsigned))dlsym(RTLD_NEXT, "renameat2")))
		abort();
	maybe_stop(newdirfd, newpath, "1");
	maybe_stop_at_rename(newpath);
	int r = real(olddirfd, oldpath, newdirfd, newpath, flags);
	if (r == 0)
		maybe_stop(newdirfd, newpath, "after");
	return r;
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
	static int (*real)(int, const char *, int, const char *, int);
	static long links; /* into packs/ so far */
	if (!real && !(real = (int (*)(int, const char *, int, const char *, int))dlsym(RTLD_NEXT, "linkat")))
		abort();
	const char *fail = getenv("CASSBACKUP_TEST_FAIL_PACK_LINK");
	if (fail && in_packs(newdirfd) && __atomic_add_fetch(&links, 1, __ATOMIC_SEQ_CST) == strtol(fail, NULL, 10)) {
		errno = EIO;
		return -1;
	}
	maybe_stop(newdirfd, newpath, "1");
	maybe_stop_at_rename(newpath);
	int r = real(olddirfd, oldpath, newdirfd, newpath, flags);
	if (r == 0)
		maybe_stop(newdirfd, newpath, "after");
	return r;
}

/* Whether path's last component is the value of the variable (CASSBACKUP_TEST_EIO_*). */
static int last_is(const char *variable, const char *path)
{
	const char *name = getenv(variable);
	if (!name || !*name || !path)
		return 0;
	const char *last = strrchr(path, '/');
	return fnmatch(name, last ? last + 1 : path, 0) == 0;
}

/* The mode argument of open(2) and openat(2): there with O_CREAT or O_TMPFILE only. */
#define MODE_ARG(flags, mode)                                                                \
	do {                                                                                 \
		if ((flags) & (O_CREAT | O_TMPFILE)) {                                       \
			va_list ap;                                                          \
			va_start(ap, flags);                                                 \
			mode = va_arg(ap, mode_t);                                           \
			va_end(ap);                                                          \
		}                                                                            \
	} while (0)

static void maybe_stop_at_open(const char *path)
{
	static int stopped;
	if (!stopped && last_is("CASSBACKUP_TEST_STOP_AT_OPEN", path)) {
		stopped = 1;
		raise(SIGSTOP);
	}
}

int open(const char *path, int flags, ...)
{
	static int (*real)(const char *, int, ...);
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	maybe_stop_at_open(path);
	if (!real)
		real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	return real(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	static int (*real)(int, const char *, int, ...);
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	maybe_stop_at_open(path);
	if (last_is("CASSBACKUP_TEST_EIO_NAME", path)) {
		errno = EIO;
		return -1;
	}
	if (!real)
		real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
	return real(dirfd, path, flags, mode);
}

/* Stops at the Nth fstat of an open file named CASSBACKUP_TEST_STOP_AT_FSTAT. */
static void maybe_stop_at_fstat(int fd)
{
	static long seen;
	const char *nth = getenv("CASSBACKUP_TEST_STOP_AT_FSTAT_NTH");
	char link[64], path[PATH_MAX + 1];
	if (!getenv("CASSBACKUP_TEST_STOP_AT_FSTAT"))
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, PATH_MAX);
	path[n > 0 ? n : 0] = '\0';
	if (n > 0 && last_is("CASSBACKUP_TEST_STOP_AT_FSTAT", path) && ++seen == (nth ? strtol(nth, NULL, 10) : 1))
		raise(SIGSTOP);
}

int flock(int fd, int op)
{
	static int (*real)(int, int);
	static int stopped;
	const char *want = getenv("CASSBACKUP_TEST_STOP_AT_FLOCK");
	if (!stopped && want && strcmp(want, "1") == 0) {
		stopped = 1;
		raise(SIGSTOP);
	}
	if (!real)
		real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
	return real(fd, op);
}

int fstat(int fd, struct stat *st)
{
	static int (*real)(int, struct stat *);
	maybe_stop_at_fstat(fd);
	if (!real)
		real = (int (*)(int, struct stat *))dlsym(RTLD_NEXT, "fstat");
	return real(fd, st);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	static int (*real)(int, const char *, struct stat *, int);
	if (last_is("CASSBACKUP_TEST_EIO_NAME", path)) {
		errno = EIO;
		return -1;
	}
	if (!real)
		real = (int (*)(int, const char *, struct stat *, int))dlsym(RTLD_NEXT, "fstatat");
	return real(dirfd, path, st, flags);
}

struct dirent *readdir(DIR *d)
{
	static struct dirent *(*real)(DIR *);
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd(d));
	ssize_t n = getenv("CASSBACKUP_TEST_EIO_READDIR") ? readlink(link, path, sizeof(path) - 1) : -1;
	if (n > 0) {
		path[n] = '\0';
		if (last_is("CASSBACKUP_TEST_EIO_READDIR", path)) {
			errno = EIO;
			return NULL;
		}
	}
	if (!real)
		real = (struct dirent * (*)(DIR *)) dlsym(RTLD_NEXT, "readdir");
	return real(d);
}

pid_t setsid(void)
{
	static pid_t (*real)(void);
	const char *v = getenv("CASSBACKUP_TEST_STOP_AT_SETSID");
	if (v && *v == '1')
		raise(SIGSTOP);
	if (!real)
		real = (pid_t (*)(void))dlsym(RTLD_NEXT, "setsid");
	return real();
}
