/* exec.h: running the Cassandra tools (nodetool, sstableloader). */
#ifndef CASSBACKUP_EXEC_H
#define CASSBACKUP_EXEC_H

#include <sys/types.h>

/* Runs argv (argv[0] looked up in PATH) with our stdin/stdout/stderr, or with stdout and stderr
 * appended to log_path when it is not NULL. Returns the exit status, 128 + signal number when
 * the program was killed, 127 when it could not be run, or -errno when fork failed. */
int exec_run(char *const argv[], const char *log_path);

/* Starts argv as exec_run would, without waiting: returns the pid or -errno. */
pid_t exec_start(char *const argv[], const char *log_path);

/* Finds prog as execvp would (a name with '/' as is, else each $PATH entry) and checks that it
 * is an executable regular file, so a command can refuse before it changes anything. The path
 * found goes to out. 0, -ENOENT (not found) or -EACCES (found, not executable). */
int exec_find(const char *prog, char *out, size_t n);

/* Exit status of a waitpid() status as exec_run returns it. */
int exec_status(int wstatus);

/* The last non-empty line of a (log) file, into buf. */
void last_line(const char *path, char *buf, size_t n);

/* "a b 'c d'": argv as a shell would need it typed, for messages. */
void format_command(char *const argv[], char *buf, size_t n);

/* A growing NULL-terminated argv; strings are copied. */
struct strv {
	char **v;
	size_t n;
};
int strv_push(struct strv *a, const char *s);
void strv_free(struct strv *a);

/* nodetool's argv up to the subcommand: the program (--nodetool, else config, else
 * "nodetool") and -u/-pwf from the config's nodetool_user / nodetool_password_file. */
int nodetool_argv(struct strv *a, const char *nodetool);

#endif
