/* mounter.h: one way for a command to read a store through the filesystem. Finds and starts
 * mount.cassbackup on a private mount point, waits until the mount is there, and takes it down
 * again (unmount, reap, remove the mount point).
 *
 * The helper is $CASSBACKUP_MOUNT_HELPER when set and not empty (for one run, or a test suite
 * using its build tree), else the configuration's mount_helper (an installation elsewhere),
 * else the installed SBINDIR/mount.cassbackup (meson's prefix/sbindir): never a guess relative
 * to our own path.
 * It runs in a process group of its own (a terminal's Ctrl-C reaches the command, which then
 * stops the helper in order) and gets SIGTERM if the command dies, even by SIGKILL: libfuse
 * then unmounts as it exits, so no mount or daemon outlives the command.
 */
#ifndef CASSBACKUP_MOUNTER_H
#define CASSBACKUP_MOUNTER_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tmpdir.h"

/* The mount helper to run, into out (also when it is not usable, for the message). 0 when it
 * is an executable file, -ENOENT or -EACCES when not. */
int mounter_find_helper(char *out, size_t n);

struct mounter {
	char helper[PATH_MAX]; /* the program started */
	struct tmpdir dir;     /* the mount point, $TMPDIR/cassbackup-TAG-XXXXXX (tmpdir.h: the
				* next one made sweeps it after a kill); path NULL: none */
	pid_t pid;             /* the helper; 0 once reaped */
};

/* Mounts store read-only on a new directory $TMPDIR/cassbackup-TAG-XXXXXX with the helper, whose
 * output is appended to log_path, and waits until the mount is there, the helper exits,
 * *cancel becomes non-zero or 15 s pass. m may be zeroed or used before.
 * 0, or -errno with why set to one line and everything it made undone: -ENOENT/-EACCES (no
 * usable helper), a fork error, -EIO (the helper exited: its last line, else its status),
 * -EINTR (*cancel), -ETIMEDOUT. */
int mounter_start(struct mounter *m, const char *store, const char *tag, const char *log_path,
		  const volatile sig_atomic_t *cancel, char *why, size_t whylen);

/* Has the helper exited? Reaps it if so (a command waiting for its own children calls this
 * rather than waitpid(-1, ...)). False for a mounter that never started. */
bool mounter_exited(struct mounter *m);

/* Unmounts (lazily if a file is still open under it), reaps the helper and removes the mount
 * point. Safe on a zeroed mounter, after a failed mounter_start, and twice. */
void mounter_stop(struct mounter *m);

#endif
