/* cbfs.h: state of a mount.cassbackup process, shared by the files of fs/ (internal).
 *
 * One struct cbfs per process, made by main() and handed to the FUSE session as its userdata:
 * operations reach it through fuse_req_userdata(req), never through a global.
 *
 * Threads and the catalog. The store (struct store) is opened after the daemon has forked
 * (SQLite's locks do not survive a fork), and its own catalog connection belongs to the
 * refresh thread (refresh.c), the only one that writes the catalog: it brings it up to date
 * with the store when asked (a listing of /backups, a pack found gone), listing backups/ only
 * unless packs are needed. Each FUSE worker reads through a read-only connection of its own
 * (struct conn), opened from the store so that it is to the same catalog.
 *
 * Inode numbers. A node's number is its catalog number (catalog.h CB_INO: row id and kind)
 * with the mount's catalog generation in bits GEN_SHIFT and up. Within one catalog a row id
 * names one node for good (a rebuild in place, `cassbackup reindex`, keeps each node's id, so
 * a walk from a working directory inside a backup goes on; a node that is not the same gets
 * an id never used before), so a number the kernel holds names the same node, or none, for
 * the catalog's life. Only a catalog file made anew at its path
 * (deleted, set aside as damaged) starts ids over: the refresh thread then moves the mount to
 * it and bumps the generation, and every number of an older generation is answered with
 * ESTALE, which makes the kernel look its path up again, instead of naming another file.
 */
#ifndef CASSBACKUP_CBFS_H
#define CASSBACKUP_CBFS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>

#include "catalog.h"
#include "packread.h"
#include "store.h"

#define GEN_SHIFT 48
#define GEN_MAX 0xffffu
/* Catalog rows whose number would reach the generation bits are not shown. */
#define CBFS_ROW_MAX CB_ROW_MAX
_Static_assert(CB_ROW_MAX <= (int64_t)1 << (GEN_SHIFT - 4),
	       "row numbers reach the generation bits");

enum refresh_what {
	REFRESH_BACKUPS = 1 << 0, /* backups/: new and forgotten backups */
	REFRESH_PACKS = 1 << 1,   /* packs/ too: packs pruned, repacked or new */
	REFRESH_REOPEN = 1 << 2,  /* a worker found the catalog file made anew: move to it */
};

/* A handle the kernel holds (fi->fh), in one of the lists below until its release. */
struct open_link {
	struct open_link *prev, *next;
};

struct cbfs {
	char *location;    /* the store: absolute when local */
	char *mountpoint;  /* absolute */
	struct store_options sopts;
	struct store *store;     /* from after the fork; its catalog is the refresh thread's */
	pack_cache *packs;       /* the store's */
	uid_t uid;         /* owner shown where the catalog recorded none */
	gid_t gid;
	int64_t start_ns;
	bool foreground;
	atomic_int log_fd;       /* where cbfs_log writes its lines too: stderr in the foreground,
				  * the pipe to the waiting mount command in a daemon until its mount
				  * answers (main.c), then -1 */
	unsigned readahead_kb;   /* 0: leave the kernel's default */
	pthread_key_t conn_key;  /* each worker thread's struct conn */
	atomic_bool readahead_done;
	atomic_uint gen;         /* the catalog generation of inode numbers handed out now */
	/* A worker's new connection and the generation it serves are taken together (read), and
	 * the refresh thread moves to a new catalog and bumps the generation together (write):
	 * a connection to the new catalog never serves the old generation's numbers. */
	pthread_rwlock_t gen_lock;

	/* ops.c: the files and directories open now (fi->fh of each), so those whose RELEASE or
	 * RELEASEDIR never comes (the kernel drops it when the mount goes away under an open one)
	 * are freed at the end */
	pthread_mutex_t open_mu;
	struct open_link *open_files; /* each the first member of a struct open_file */
	struct open_link *open_dirs;  /* each the first member of a struct dirlist */

	/* refresh.c: requests and their completion, under mu */
	pthread_mutex_t mu;
	pthread_cond_t asked_cv, done_cv;
	pthread_t refresher;
	bool refresher_started, stopping;
	uint64_t asked, done;    /* requests taken and served (sequence numbers) */
	int pending;             /* enum refresh_what asked since the last refresh began */
	int64_t refreshed_ns[3]; /* when a refresh of backups, packs, a reopen last began */

	struct cbfs_cl *cl;      /* commitlogs.c: the /commitlogs tree */
};

/* commitlogs.c: /commitlogs/<node>/<segment>, the store's commitlog segments as plain files.
 * Its nodes are special (no generation bits): /commitlogs is CBFS_CL_ROOT, the others have
 * rows from 2^40 up. The functions return 0 or -errno (-ENOENT, -ENOTDIR, -EIO logged). */
#define CBFS_CL_ROOT CB_INO(CB_NODE_SPECIAL, 3) /* the catalog has rows 0-2: /, /backups, /clusters */
struct cbfs_cl_file {
	void *data;    /* the segment's bytes, checked against its SHA-256 */
	uint64_t size;
	/* the open file's and each read's in progress: a reply's bytes are still read (by a
	 * checker such as AddressSanitizer) after the kernel took them and may have sent RELEASE */
	atomic_uint refs;
	struct cbfs_cl_file *prev, *next; /* open ones, freed by cbfs_cl_free when no RELEASE came */
};
int cbfs_cl_init(struct cbfs *fs);
void cbfs_cl_free(struct cbfs *fs);
bool cbfs_cl_ino(uint64_t ino); /* one of the tree's */
void cbfs_cl_root_node(const struct cbfs *fs, struct cb_node *out);
int cbfs_cl_get(struct cbfs *fs, uint64_t ino, struct cb_node *out);
int cbfs_cl_lookup(struct cbfs *fs, uint64_t parent, const char *name, struct cb_node *out);
int cbfs_cl_list(struct cbfs *fs, uint64_t dir, int (*cb)(void *ctx, const struct cb_node *n), void *ctx);
/* A segment's extended attributes (user.cassbackup.node, host_id, sha256, archived,
 * commitlog_id, commitlog_version): cb(name, value) for each; directories have none. */
int cbfs_cl_xattrs(struct cbfs *fs, uint64_t ino, int (*cb)(void *ctx, const char *name, const char *value),
		   void *ctx);
/* Reads and decodes the segment whole: *out is the caller's (cbfs_cl_close). */
int cbfs_cl_open(struct cbfs *fs, uint64_t ino, struct cbfs_cl_file **out);
/* A reference for a read in progress; cbfs_cl_close drops one, the last frees the file. */
void cbfs_cl_ref(struct cbfs_cl_file *f);
void cbfs_cl_close(struct cbfs *fs, struct cbfs_cl_file *f); /* accepts NULL */

/* refresh.c: starts and stops the refresh thread. 0 or -errno. */
int cbfs_refresh_start(struct cbfs *fs);
void cbfs_refresh_stop(struct cbfs *fs);

/* Asks for the catalog to be brought up to date (what), unless that was begun within
 * min_age_ns, and waits for it at most wait_ns: a slow store delays a listing by that much,
 * then the listing is served from the catalog as it is, while the refresh goes on. */
void cbfs_refresh(struct cbfs *fs, int what, int64_t min_age_ns, int64_t wait_ns);

extern const struct fuse_lowlevel_ops cbfs_ops;

/* Creates the per-thread connection key and the list of open files. 0 or -errno. */
int cbfs_init_threads(struct cbfs *fs);
/* Closes the calling thread's connection, deletes the key and frees the files left open. No
 * operation may run any more. */
void cbfs_end_threads(struct cbfs *fs);

/* One line to stderr in the foreground, to syslog when daemonized (and to the mount command
 * too until the daemon's mount answers, so that mount(8) shows why it failed). */
void cbfs_vlog(const struct cbfs *fs, const char *fmt, va_list ap);
void cbfs_log(const struct cbfs *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* readahead.c: is path a mount point (the topmost mount there) per /proc/self/mountinfo,
 * without touching path's file system? dev gets its "major:minor" when dev is not NULL. */
bool cbfs_is_mountpoint(const char *path, char *dev, size_t devlen);

/* readahead.c: raises the mount's readahead (bdi read_ahead_kb) to fs->readahead_kb where
 * allowed; quietly keeps the kernel's where not (not root, sysfs read-only). */
void cbfs_raise_readahead(const struct cbfs *fs);

/* mountpoint.c: may the mount go on path (absolute, an existing directory)? Not when
 * something is mounted there, not when it holds anything (unless nonempty: files there would
 * be hidden, and a mount over a live directory looks like data lost), and never inside a
 * Cassandra data directory (a table directory, or a directory holding system_schema/), where
 * a backup's tree would be taken for live data. 0, or -errno with one line in why. */
int cbfs_check_mountpoint(const char *path, bool nonempty, struct strbuf *why);

#endif
