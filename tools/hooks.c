/* hooks.c: see hooks.h. */
#include "hooks.h"
#include "cli.h"
#include "conf.h"
#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const env_names[] = {
	"CASSBACKUP_HOOK", "CASSBACKUP_OPERATION", "CASSBACKUP_BACKUP", "CASSBACKUP_SNAPSHOT",
	"CASSBACKUP_STORE", "CASSBACKUP_CONFIG", "CASSBACKUP_RESULT", "CASSBACKUP_EXIT_STATUS",
	"CASSBACKUP_FAILED",
};

/* Sets (or, for NULL, unsets) the variables of env_names in our environment, which the hook
 * inherits: cassbackup runs no other thread while a hook runs. 0 or -errno. */
static int set_env(const char *key, const struct hook_env *e)
{
	char status[16];
	snprintf(status, sizeof(status), "%d", e->exit_status);
	const char *const values[] = {key, e->operation, e->backup, e->snapshot, e->store,
				      config_path(), e->result, e->failed ? status : NULL, e->failed};
	for (size_t i = 0; i < ARRAY_SIZE(env_names); i++)
		if (values[i] ? setenv(env_names[i], values[i], 1) < 0 : unsetenv(env_names[i]) < 0)
			return -errno;
	return 0;
}

static void clear_env(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(env_names); i++)
		unsetenv(env_names[i]);
}

/* Starts argv with its stdout on our stderr and waits: 0 with its waitpid() status in *ws,
 * or -errno when it could not be started or waited for. */
static int run_waiting(char *const argv[], int *ws)
{
	pid_t pid = exec_spawn(argv, &(struct exec_opts){.capture = (int[]){STDERR_FILENO, STDERR_FILENO},
							 .parent_death_signal = SIGTERM});
	if (pid < 0)
		return pid;
	while (waitpid(pid, ws, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int hook_run(const char *key, const struct hook_env *env, const char *what)
{
	const char *value = config_get(key);
	if (!value)
		return 0;
	struct strv argv = {0};
	struct strbuf err = {0};
	char found[4096], cmd[1024];
	int ws = 0;
	int r = config_split_words(value, &argv, &err);
	if (r < 0) {
		errorf("%s = %s: %s%s", key, value, err.buf ? err.buf : "", what);
	} else if ((r = exec_find(argv.v[0], found, sizeof(found))) < 0) {
		_cleanup_free_ char *shown = cli_escape(argv.v[0]);
		errorf("%s %s: %s%s", key, shown ? shown : "", r == -ENOENT ? "not found" :
		       "not an executable file", what);
	} else if ((r = set_env(key, env)) < 0 || (r = run_waiting(argv.v, &ws)) < 0) {
		format_command(argv.v, cmd, sizeof(cmd));
		errorf("%s %s: cannot run it: %s%s", key, cmd, strerror(-r), what);
	} else if ((r = exec_status(ws)) != 0) {
		/* The wait status itself, not exec_status's 128 + N: a hook may exit 130 on its own. */
		format_command(argv.v, cmd, sizeof(cmd));
		if (WIFSIGNALED(ws))
			errorf("%s %s failed: killed by signal %d%s", key, cmd, WTERMSIG(ws), what);
		else
			errorf("%s %s failed: exit status %d%s", key, cmd, r, what);
	}
	clear_env();
	strv_free(&argv);
	sb_free(&err);
	return r == 0 ? 0 : 1;
}
