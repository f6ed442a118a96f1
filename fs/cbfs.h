/* cbfs.h: state of a mount.cassbackup process, shared by the files of fs/ (internal).
 *
 * One struct cbfs per process, made by main() and handed to the FUSE session as its userdata:
 * operations reach it through fuse_req_userdata(req), never through a global.
 */
#ifndef CASSBACKUP_CBFS_H
#define CASSBACKUP_CBFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "catalog.h"
#include "packread.h"

struct cbfs {
	char *store;       /* absolute store path */
	char *mountpoint;  /* absolute */
	pack_cache *packs;
	uid_t uid;         /* owner shown where the catalog recorded none */
	gid_t gid;
	int64_t start_ns;
	bool foreground;
	unsigned readahead_kb;   /* 0: leave the kernel's default */
	pthread_key_t catalog_key; /* each worker thread's own catalog connection */
	atomic_bool readahead_done;
	/* The catalog is brought up to date with the store (new and forgotten backups, pruned
	 * and new packs) through this handle, under refresh_mu, at most every REFRESH_SECONDS
	 * when /backups is listed or looked in, and at once when a pack a file needs is gone. */
	struct store *refresh;
	pthread_mutex_t refresh_mu;
	int64_t refreshed_ns;
};

#define REFRESH_SECONDS 2

/* Reconciles the catalog with the store if the last time was more than min_age_ns ago. */
void cbfs_refresh(struct cbfs *fs, int64_t min_age_ns);

extern const struct fuse_lowlevel_ops cbfs_ops;

/* Creates the per-thread catalog key. 0 or -errno. */
int cbfs_init_threads(struct cbfs *fs);
/* Closes the calling thread's catalog (the main thread's, in single-threaded mode) and deletes
 * the key. No operation may run any more. */
void cbfs_end_threads(struct cbfs *fs);

/* One line to stderr in the foreground, to syslog once daemonized. */
void cbfs_log(const struct cbfs *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* readahead.c: is path a mount point (the topmost mount there) per /proc/self/mountinfo,
 * without touching path's file system? dev gets its "major:minor" when dev is not NULL. */
bool cbfs_is_mountpoint(const char *path, char *dev, size_t devlen);

/* readahead.c: raises the mount's readahead (bdi read_ahead_kb) to fs->readahead_kb where
 * allowed; quietly keeps the kernel's where not (not root, sysfs read-only). */
void cbfs_raise_readahead(const struct cbfs *fs);

#endif
