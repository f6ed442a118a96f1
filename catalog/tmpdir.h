/* tmpdir.h: private temporary directories of one run, swept when their run is gone.
 *
 * A run's directory is $TMPDIR (else /tmp)/cassbackup-KIND-XXXXXX, mode 0700, and flocked for
 * as long as the run uses it (the lock systemd-tmpfiles honours too). Making one first removes
 * this user's directories of that kind whose run is gone: unlocked (a kill -9 drops the lock)
 * and older than a minute (the moment between mkdtemp and flock). A removal stays on the file
 * system of $TMPDIR and never follows a link: a directory with something mounted on it or in
 * it keeps that, and is left. */
#ifndef CASSBACKUP_TMPDIR_H
#define CASSBACKUP_TMPDIR_H

struct tmpdir {
	char *path; /* NULL when none */
	int fd;     /* the directory, flocked; meaningful only with path */
};

/* Where they are made: $TMPDIR when set and not empty, else /tmp. */
const char *tmpdir_root(void);

/* Sweeps the dead runs' directories of kind, then makes and locks t (zeroed or removed
 * before). kind: letters and dashes. 0, or -errno with t left empty. */
int tmpdir_make(const char *kind, struct tmpdir *t);

/* Makes t's directory again and locks it when something removed it under the run (a cleaner
 * of /tmp that ignored the lock); a no-op while it is there. 0 or -errno. */
int tmpdir_remake(struct tmpdir *t);

/* Removes t's tree (as the sweep would: one file system, no link followed), drops the lock
 * and empties t. Safe on an empty t and twice. */
void tmpdir_remove(struct tmpdir *t);

#endif
