/* nodemeta.h: what a backup keeps of the node besides its sstables (manifest.h node_files):
 * the keyspace DDL cqlsh prints (DESCRIBE SCHEMA) and Cassandra's configuration directory.
 *
 * Read at backup time, into memory (both are small: a schema of thousands of tables is a few
 * MiB), and handed to the backup writer. Neither is ever a reason to fail a backup: whatever
 * cannot be read is one line in *why for the caller to print as a warning.
 */
#ifndef CASSBACKUP_NODEMETA_H
#define CASSBACKUP_NODEMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "exec.h"
#include "util.h"

/* How cqlsh is run: PROGRAM [HOST] [OPTION...] -e STATEMENT. Credentials belong in a cqlshrc
 * file (--cqlsh-option=--cqlshrc=FILE), never in argv, where ps shows them. */
struct cqlsh_conf {
	const char *program; /* NULL: "cqlsh" from PATH */
	const char *host;    /* NULL: cqlsh's default (127.0.0.1) */
	const struct strv *options;
};

/* Why an option passed to cqlsh cannot be (a password in argv), or NULL. */
const char *cqlsh_option_problem(const char *opt);

/* Runs cqlsh with -e statement (or, when file is not NULL, -f file), its output into *out
 * (malloc'd, NUL-terminated; up to 64 MiB: more is -EFBIG). 0 when cqlsh exited 0; else
 * -errno (-ETIMEDOUT: killed after 10 minutes) or the exit status as a positive number, with
 * one line in why (cqlsh's last error line). */
int cqlsh_run(const struct cqlsh_conf *c, const char *statement, const char *file, char **out,
	      struct strbuf *why);

/* One regular file of the configuration directory, read whole. */
struct nodemeta_file {
	char *name;
	char *data;
	size_t size;
	struct stat st;
};

struct nodemeta_conf {
	struct nodemeta_file *files;
	size_t n;
};

/* Reads dir's regular files (symbolic links to regular files followed; subdirectories, other
 * types and files over 16 MiB left out, each named in skipped). 0, or -errno with why saying
 * what could not be read (the directory itself: nothing is kept). */
int nodemeta_read_conf(const char *dir, struct nodemeta_conf *out, struct strbuf *skipped,
		       struct strbuf *why);
void nodemeta_conf_free(struct nodemeta_conf *c);

#endif
