/* hooks.h: programs the configuration runs around create (hook_pre, hook_post, hook_failure).
 *
 * Each value is a program and its arguments (config_split_words: no shell). It runs with
 * stdin from /dev/null and its stdout and stderr on cassbackup's stderr (so --json output stays
 * JSON), in cassbackup's environment plus:
 *   CASSBACKUP_HOOK       hook_pre, hook_post or hook_failure
 *   CASSBACKUP_OPERATION  create
 *   CASSBACKUP_BACKUP     the backup's name
 *   CASSBACKUP_SNAPSHOT   the snapshot tag
 *   CASSBACKUP_STORE      the store
 *   CASSBACKUP_CONFIG     the configuration file read (when one was)
 *   CASSBACKUP_RESULT     success or failure (hook_post and hook_failure)
 *   CASSBACKUP_EXIT_STATUS  what cassbackup create exits with (hook_failure)
 *   CASSBACKUP_FAILED     what failed: hook_pre, create or hook_post (hook_failure)
 * Order: hook_pre; the backup unless hook_pre failed; then hook_post when the backup was made,
 * and hook_failure when anything failed (a failing hook_post too). No time limit is set: the
 * service's TimeoutStartSec is the place for one. */
#ifndef CASSBACKUP_HOOKS_H
#define CASSBACKUP_HOOKS_H

struct hook_env {
	const char *operation, *backup, *snapshot, *store;
	const char *result;  /* NULL: not set (hook_pre) */
	const char *failed;  /* NULL: not set */
	int exit_status;     /* set when failed is */
};

/* Runs the program of configuration key `key` (a hook_* key) with env as above, waiting for it.
 * 0 when none is configured or it exited 0; else 1 after one line naming the hook, its
 * program and why ("hook_pre /x/pre failed: exit status 3"), with what (", no backup was
 * made") appended to it. */
int hook_run(const char *key, const struct hook_env *env, const char *what);

#endif
