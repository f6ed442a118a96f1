/* exec.h: running the Cassandra tools (nodetool, sstableloader). */
#ifndef CASSBACKUP_EXEC_H
#define CASSBACKUP_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* Runs argv (argv[0] looked up in PATH) with our stdin/stdout/stderr, or with stdout and stderr
 * appended to log_path when it is not NULL. Returns the exit status, 128 + signal number when
 * the program was killed, 127 when it could not be run, or -errno when fork failed. */
int exec_run(char *const argv[], const char *log_path);

/* Starts argv as exec_run would, without waiting: returns the pid (> 0) or -errno when fork
 * failed. A program that cannot be run exits 127 after saying why (in the log). */
pid_t exec_start(char *const argv[], const char *log_path);

/* How exec_spawn starts a program; a zeroed struct starts it as exec_start does. */
struct exec_opts {
	const char *log_path;     /* stdout and stderr appended here, stdin /dev/null; NULL: ours */
	bool own_group;           /* in a process group of its own: a terminal's Ctrl-C reaches
				   * only us, and we decide when it stops */
	int parent_death_signal;  /* sent to it when we die, even by SIGKILL; 0: none */
	const int *capture;       /* {stdout, stderr}: descriptors its stdout and stderr go to,
				   * stdin /dev/null (instead of log_path); NULL: none */
};

/* Starts argv (argv[0] looked up in PATH). The program inherits only stdin, stdout and stderr,
 * an empty signal mask and default signal dispositions for the signals cassbackup handles or
 * ignores (INT, TERM, HUP, PIPE, CHLD), whatever the caller has blocked or installed.
 * Returns the pid (> 0) or -errno when fork failed. */
pid_t exec_spawn(char *const argv[], const struct exec_opts *o);

/* Finds prog as execvp would (a name with '/' as is, else each $PATH entry) and checks that it
 * is an executable regular file, so a command can refuse before it changes anything. The path
 * found goes to out. 0, -ENOENT (not found) or -EACCES (found, not executable). */
int exec_find(const char *prog, char *out, size_t n);

/* Runs argv (argv[0] looked up in PATH) with stdin from /dev/null and its stdout and stderr
 * captured, each up to 64 KiB (the rest is read and dropped), in a process group of its own.
 * After timeout_s seconds (0: no limit) the group is killed and -ETIMEDOUT returned. Returns
 * the exit status as exec_run does (127: could not be run, the reason on its stderr), or
 * -errno. *out and *err (either may be NULL: not wanted) get malloc'd, NUL-terminated text,
 * or NULL, which the caller frees. */
int exec_capture(char *const argv[], unsigned timeout_s, char **out, char **err);
/* As exec_capture, for an output that must be whole: up to max_out bytes of stdout, and
 * -EFBIG (after the program ended or was killed) when it wrote more. */
int exec_capture_whole(char *const argv[], unsigned timeout_s, size_t max_out, char **out, char **err);

/* The first line of text that is not blank, without its end of line, into buf ("" if none). */
void first_line(const char *text, char *buf, size_t n);

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
int strv_append(struct strv *a, const struct strv *more); /* every string of more, copied */
void strv_free(struct strv *a);

/* Is hosts a host list as sstableloader -d takes it: HOST[,HOST...], no host empty, printable
 * ASCII without spaces? */
bool host_list_ok(const char *hosts);

/* sstableloader's argv up to the directory: loader -d HOSTS [-t MBITS] [-u USER -pw PASSWORD].
 * Cassandra's sstableloader (3.x to 5.0, tools/LoaderOptions.java) takes the password only as
 * -pw/--password on its command line: -f/--conf-path reads only throughput, ports and
 * encryption options from a cassandra.yaml, and no environment variable is read. So the
 * password is visible in the process list while the loader runs. user and password: both or
 * neither (sstableloader refuses one without the other). 0 or -ENOMEM. */
int sstableloader_argv(struct strv *a, const char *loader, const char *hosts, const char *throttle,
		       const char *user, const char *password);

/* One sstableloader option passed through by load (--loader-option, sstableloader_option):
 * NAME or NAME=VALUE, NAME one of sstableloader's own long or short names (with or without
 * leading dashes: conf-path, f, ssl-storage-port, ts, ...), appended to a as "--long [VALUE]".
 * The options load sets itself (nodes, throttle, username, password, target-keyspace) and
 * names sstableloader does not know are refused: -EINVAL with the reason in err. */
int sstableloader_option(struct strv *a, const char *spec, struct strbuf *err);

/* nodetool's argv up to the subcommand: the program (--nodetool, else config, else
 * "nodetool") and -u/-pwf from the config's nodetool_user / nodetool_password_file. */
int nodetool_argv(struct strv *a, const char *nodetool);

#endif
