/* cli.h: the one CLI layer every cassbackup subcommand uses.
 *
 * - exit codes (enum cb_exit), the same in every subcommand;
 * - an option table each subcommand declares once (struct cli_option, struct cli_command):
 *   cli_parse() parses argv with it, falls back to the configuration file per option
 *   (config_key), generates --help and the usage line from it, and handles --help/-h;
 *   --config FILE is taken out of the command line before any command runs (cli_take_config);
 * - one parser each for numbers (with a range), sizes and durations;
 * - one JSON writer on a strbuf;
 * - one --keyspace/--table selection type;
 * - one way to show a name (from a store or a user) in human output: cli_escape();
 * - the closest existing names when a backup name is unknown;
 * - messages: errorf, cli_store_open (catalog_why: catalog.h); progress on a TTY; cancel handlers.
 *
 * Nothing here calls exit(); functions that print say so.
 */
#ifndef CASSBACKUP_CLI_H
#define CASSBACKUP_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.h"
#include "conf.h"
#include "exec.h"
#include "util.h"

/* ---- exit codes ------------------------------------------------------------------------- */

enum cb_exit {
	CB_EXIT_OK = 0,      /* the work was done (verify: and everything checked out) */
	CB_EXIT_FAILED = 1,  /* the work failed (or verify found a problem) */
	CB_EXIT_USAGE = 2,   /* usage or configuration error: nothing was done */
	CB_EXIT_MISSING = 3, /* no such store or backup */
};

/* The exit code for a failure of cli_store_open() or a backup lookup: CB_EXIT_MISSING for a
 * store or backup that is not there (-ENOENT, -ENOTDIR, -EMEDIUMTYPE), CB_EXIT_USAGE for a
 * key that is missing, unusable or wrong (-ENOKEY, -EKEYREJECTED), else CB_EXIT_FAILED. */
int exit_code_for(int r);

/* ---- messages --------------------------------------------------------------------------- */

/* Prints "cassbackup: <message>" and a newline to stderr. */
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* How this process opens stores: S3 settings (from the environment and the configuration,
 * set up by main before a command runs, the transfer limits by cli_parse) and the cache
 * directory. The one place they are kept; the catalog library keeps none. */
struct store_options;
struct cb_s3_options;
struct store_options *cli_store_settings(void);
struct cb_s3_options *cli_s3_settings(void);

/* Opens the store at location with this process's settings and flags (store.h enum
 * store_flags), or prints one line saying why not ("cannot open store X: not a cassbackup
 * store (no config)"; permission problems name the user). 0, or the exit code to return. */
struct store;
struct store_lock;
int cli_store_open(const char *location, int flags, struct store **out);
/* cli_store_open with another key file than --key-file's (copy's --to-key-file). */
int cli_store_open_key(const char *location, int flags, const char *key_file, struct store **out);
/* No passphrase prompt this run (for a command that hands the store to another process, which
 * a typed passphrase cannot reach); why: the end of the line said for an encrypted store. */
void cli_no_prompt(const char *why);

/* Takes the store's lock for command (exclusive or shared), waiting up to wait_seconds and
 * saying once whom it waits for, or prints one line naming who holds it. A read-only store
 * cannot change, so needs no lock: *out is NULL then. 0 or -errno. */
int cli_store_lock(struct store *s, const char *location, bool exclusive, const char *command,
		   int wait_seconds, struct store_lock **out);

/* Says, in one line, that path of backup name (both as shown) has its bytes in no pack the
 * catalog knows: packs that could not be read (store_packs_unread), else a pack missing. */
void say_no_pack_holds(struct store *st, const char *name, const char *path);
/* Those words alone ("its bytes are in no pack ..."), appended to out. 0 or -ENOMEM. */
int no_pack_holds_words(struct store *st, struct strbuf *out);
/* Prints "backup NAME: no such backup in STORE" and, when the store has names close to NAME
 * (edit distance), "; closest: A, B, C". Returns CB_EXIT_MISSING. But when the store has a
 * manifest of NAME that could not be read (store_skipped_manifests: damaged, unreadable),
 * prints that it cannot be read, naming the manifest and why, and returns CB_EXIT_FAILED. */
int report_no_such_backup(struct store *st, const char *store, const char *name);

/* When the store has a manifest of backup NAME (any node's) that could not be read: says so in
 * one line, naming it and why, and returns CB_EXIT_FAILED; else 0, silently. */
int report_unreadable_backup(struct store *st, const char *store, const char *name);

/* The names among cand[0..n) closest to name by edit distance (Levenshtein), at most max of
 * them, best first (ties in cand order), each within max(2, strlen(name) / 3) edits and not
 * name itself. out gets pointers into cand; returns how many. */
size_t closest_names(const char *name, const char *const *cand, size_t n, const char **out,
		     size_t max);
size_t edit_distance(const char *a, const char *b);

/* Appends s for human output: backslash and control bytes (newline, tab, ESC, DEL, ...) become
 * \\, \n, \t, \xNN, so a name cannot forge or break a line; other bytes (UTF-8 or not) are
 * shown as they are. JSON output uses sb_json_str / the JSON writer instead. */
int sb_escape(struct strbuf *sb, const char *s);
/* The same as a malloc'd string (the caller frees; NULL on ENOMEM). */
char *cli_escape(const char *s);

/* ---- number, size and duration parsers -------------------------------------------------- */
/* Each returns 0, or -EINVAL (not of the form) / -ERANGE (outside the range), and on error
 * writes one phrase into err saying what is wrong with s (the caller names the option). */

/* A decimal integer in [min, max]. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, struct strbuf *err);

/* parse_size(): see util.h */

/* A duration as restic writes them: numbers with units, largest first or in any order, e.g.
 * "7d", "2h", "1y2m", "1y5m7d2h", "30min", "90s". Units: y (years), m (months, as in restic),
 * w (weeks), d (days), h (hours), min (minutes), s (seconds). */
struct duration {
	uint32_t years, months, days, hours, minutes, seconds; /* weeks are added to days */
};
int parse_duration(const char *s, struct duration *out, struct strbuf *err);

/* ---- --keyspace / --table selection ----------------------------------------------------- */

struct selection_entry {
	char *keyspace; /* owned */
	char *table;    /* owned; NULL for a --keyspace entry */
	bool hit;       /* selection_matches() matched it at least once */
};

struct selection {
	struct selection_entry *v; /* in the order given */
	size_t n;
};

/* Adds --keyspace KS. -EINVAL (err says why) when KS is not one name component; -ENOMEM. */
int selection_add_keyspace(struct selection *s, const char *ks, struct strbuf *err);
/* Adds --table KS.TABLE (split at the first '.'). -EINVAL when not of that form. */
int selection_add_table(struct selection *s, const char *ks_table, struct strbuf *err);
/* Nothing named: every table matches. */
bool selection_is_empty(const struct selection *s);
/* Is ks.table selected (named by keyspace or by table, or nothing named)? Records which
 * entries matched, for selection_unmatched(). */
bool selection_matches(struct selection *s, const char *ks, const char *table);
/* What restore and load take of a backup: the tables s names, or with nothing named every table
 * outside Cassandra's system keyspaces (backups hold those for restore --whole-node; copied into
 * a live node they would bring back another time's roles, schema or the node's own identity).
 * Records matches as selection_matches() does. */
bool selection_takes(struct selection *s, const char *ks, const char *table);
/* The first entry naming a keyspace of a node's own (is_node_local_keyspace), or NULL. */
const struct selection_entry *selection_node_local(const struct selection *s);
/* The first entry no selection_matches() call matched, or NULL. */
const struct selection_entry *selection_unmatched(const struct selection *s);
/* "keyspace KS" or "table KS.TABLE" (escaped for human output) into sb. */
int sb_selection_entry(struct strbuf *sb, const struct selection_entry *e);
void selection_free(struct selection *s);
/* What a backup of scope s was made of (manifest.h), for human output: "every table", "every
 * table and the system keyspaces", "keyspace ks, table k2.t and table k2.u". */
struct manifest_scope;
int sb_scope(struct strbuf *sb, const struct manifest_scope *s);

/* ---- JSON writer -------------------------------------------------------------------------- */
/* Writes JSON into a strbuf. Values in an object follow json_key(). The top-level container's
 * elements go one per line ("[\n  {...},\n  {...}\n]"); nested values are written inline.
 * Errors (ENOMEM, misuse) are remembered: check json_error() once at the end. */
#define JSON_MAX_DEPTH 16
struct json {
	struct strbuf *sb;
	int depth;
	bool nonempty[JSON_MAX_DEPTH + 1]; /* per open container: something written already */
	bool after_key;
	int err;
};
void json_init(struct json *j, struct strbuf *sb);
void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j); /* after the top-level one, a newline */
void json_key(struct json *j, const char *key);
void json_str(struct json *j, const char *s); /* NULL writes null */
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
void json_double(struct json *j, double v, int decimals); /* fixed point; NaN/inf write null */
void json_kv_str(struct json *j, const char *key, const char *s);
void json_kv_u64(struct json *j, const char *key, uint64_t v);
void json_kv_i64(struct json *j, const char *key, int64_t v);
void json_kv_bool(struct json *j, const char *key, bool v);
void json_kv_double(struct json *j, const char *key, double v, int decimals);
int json_error(const struct json *j); /* 0 or the first negative errno */
/* Writes what the strbuf holds to f and empties it (for output that streams). */
int json_flush(struct json *j, FILE *f);

/* ---- option table ------------------------------------------------------------------------- */

enum cli_opt_type {
	OPT_FLAG,     /* bool *value; no argument */
	OPT_STRING,   /* const char **value; the last one given wins */
	OPT_STRINGS,  /* struct strv *value (exec.h; strings copied, strv_free); repeatable */
	OPT_U64,      /* uint64_t *value; decimal in [min, max] */
	OPT_SIZE,     /* uint64_t *value; bytes, parse_size(), in [min, max] when max != 0 */
	OPT_DURATION, /* struct duration *value */
	OPT_KEYSPACE, /* struct selection *value: selection_add_keyspace */
	OPT_TABLE,    /* struct selection *value: selection_add_table */
};

#define OPT_REQUIRED 1u /* missing on the line and in the configuration: usage error */

struct cli_option {
	const char *name;       /* long name without "--"; NULL ends the table */
	char short_name;        /* 0: none */
	enum cli_opt_type type;
	void *value;            /* where the value goes; its type follows `type` */
	const char *arg;        /* the argument's name in help ("DIR", "N"); NULL for OPT_FLAG */
	const char *help;       /* one line for --help */
	const char *config_key; /* configuration key used when the option is not on the line */
	uint64_t min, max;      /* OPT_U64 / OPT_SIZE range (max 0: no upper limit) */
	unsigned flags;         /* OPT_REQUIRED */
	bool given;             /* set by cli_parse: on the line or from the configuration */
	bool from_config;       /* set by cli_parse: given by the configuration, not on the line */
};

struct cli_command {
	const char *name;          /* "verify": the program is "cassbackup verify" */
	const char *const *usage;  /* usage lines after "cassbackup NAME ", NULL-terminated; NULL:
				      generated from the table and `operands` */
	const char *operands;      /* operands in the generated usage: "NAME..." (NULL: none) */
	int min_operands, max_operands; /* max -1: any number */
	const char *description;   /* printed after the usage in --help; may hold newlines */
	struct cli_option *options; /* ends with {0}; --help and --config are added */
};

#define CLI_RUN (-1)
/* The option of cmd's table named name (without "--"), or NULL: after cli_parse, its given
 * and from_config say where its value came from. */
const struct cli_option *cli_find_option(const struct cli_command *cmd, const char *name);

/* Parses argv[1..argc) (argv[0] is ignored) with cmd's table, then fills options not given
 * from the configuration (config_key), checks required options and the operand count.
 * Returns CLI_RUN, with the operands (in order) in argv[*first .. argc); or an exit code the
 * command returns at once: CB_EXIT_OK after --help was printed, CB_EXIT_USAGE after one line
 * saying what is wrong (naming the option, or the config file and line) was printed.
 * argv is permuted: operands are moved to the end.
 * Commands that move a backup's bytes to or from a store (create, copy, restore, verify,
 * check, export, load, prune) also get --limit-upload RATE and --limit-download RATE (config
 * limit_upload, limit_download: bytes/s, 0 for none), which cli_parse hands to the S3 client
 * of every store the process opens (cli_s3_settings); with CASSBACKUP_DEBUG set in the
 * environment it says on stderr what the client got. Every command gets --key-file FILE
 * (config key_file), the key file of an encrypted store, handed to every store it opens. */
int cli_parse(struct cli_command *cmd, int argc, char **argv, int *first);

/* Prints cmd's help (usage, description, options, exit codes) to f. */
void cli_help(const struct cli_command *cmd, FILE *f);

/* Prints "cassbackup NAME: <message> (see 'cassbackup NAME --help')" to stderr; returns
 * CB_EXIT_USAGE. For usage errors the table cannot express (options that exclude each other). */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Removes "--config FILE" / "--config=FILE" from anywhere in argv (before "--") and sets *path
 * to FILE (the last one wins; NULL when absent). Returns argc after removal, or -1 when
 * --config has no value (a message was printed). */
int cli_take_config(int argc, char **argv, const char **path);

/* ---- cancellation and progress ------------------------------------------------------------ */

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

/* ---- subcommands -------------------------------------------------------------------------- */

int cmd_init(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_unlock(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_validate_config(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_backup(int argc, char **argv);
/* A keep_* configuration value as forget's option takes it (cmd_backup.c): 0, or -EINVAL /
 * -ERANGE with err saying why. */
int backup_keep_check(const char *key, const char *value, struct strbuf *err);
/* Can s name a backup (BACKUP_NAME_RULE)? */
bool backup_name_valid(const char *s);
#define BACKUP_NAME_RULE "use letters, digits and . _ : @ + - (not first), at most 200"

/* A name, name_period, incremental_name or incremental_name_period value as the routine job
 * takes it (cmd_backup.c): 0 (for a template, out holds the name it gives now), or -errno with
 * err saying why. */
int backup_name_check(const char *key, const char *value, char *out, size_t n, struct strbuf *err);
int cmd_install_timer(int argc, char **argv);
int cmd_archive_commitlog(int argc, char **argv);

/* s3_parallel (configuration): requests in flight at most, 1 to S3_PARALLEL_MAX; -EINVAL. */
int cli_parse_s3_parallel(const char *s, unsigned *out);

#endif
