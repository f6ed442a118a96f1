/* cbfs.h: state of a mount.cassbackup process, shared by main.c and ops.c (internal). */
#ifndef CASSBACKUP_CBFS_H
#define CASSBACKUP_CBFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "catalog.h"
#include "packread.h"

struct cbfs {
	char *store;       /* absolute store path */
	char *catalog_path;
	char *mountpoint;  /* absolute */
	pack_cache *packs;
	uid_t uid;         /* owner shown where the catalog recorded none */
	gid_t gid;
	int64_t start_ns;
	bool foreground;
	unsigned readahead_kb; /* 0: leave the kernel's default */
	pthread_key_t catalog_key;
	pthread_once_t readahead_once;
};

extern struct cbfs cbfs;
extern const struct fuse_lowlevel_ops cbfs_ops;

/* Creates the per-thread catalog key. 0 or -errno. */
int cbfs_init_threads(void);

/* One line to stderr in the foreground, to syslog once daemonized. */
void cbfs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Raises the mount's readahead (bdi read_ahead_kb) to cbfs.readahead_kb where allowed. */
void cbfs_raise_readahead(void);

#endif
