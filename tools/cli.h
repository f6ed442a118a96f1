/* cli.h: what the cassbackup subcommands share. */
#ifndef CASSBACKUP_CLI_H
#define CASSBACKUP_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "conf.h"

/* Prints "cassbackup: <message>" and a newline to stderr. */
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Opens a store's catalog or prints why not ("cannot open store X: reason"). */
int open_store(const char *root, int flags, catalog **out);

/* Set by SIGINT/SIGTERM/SIGHUP once install_cancel_handlers() ran. */
extern volatile sig_atomic_t cancel_requested;
void install_cancel_handlers(void);

/* A progress line on stderr, only when stderr is a terminal; quiet otherwise. */
struct progress {
	bool tty;
	const char *what;
	uint64_t total_bytes, done_bytes;
	uint64_t total_files, done_files;
	double start, last;
};
void progress_init(struct progress *p, const char *what, uint64_t total_bytes, uint64_t total_files);
void progress_add(void *p, uint64_t bytes); /* progress_fn */
void progress_file_done(struct progress *p);
void progress_end(struct progress *p);

int cmd_init(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_validate_config(int argc, char **argv);

#endif
