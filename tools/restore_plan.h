/* restore_plan.h: the decisions of `cassbackup restore` that need no store and no target, so
 * that they can be tested on their own: which files form one sstable, what to do with each,
 * which fresh generation a colliding sstable gets, which names may be used at all, and what a
 * Cassandra data directory looks like.
 *
 * Nothing here prints; functions return 0 or a negative errno, reasons go to a strbuf.
 */
#ifndef CASSBACKUP_RESTORE_PLAN_H
#define CASSBACKUP_RESTORE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backup_files.h"
#include "util.h"

/* What restore does with one sstable (or one lone file) of a table. */
enum unit_action {
	U_COPY,     /* its names are free in the target: copy */
	U_RENAME,   /* an sstable whose identifier is taken by other bytes: copy under new_gen */
	U_PRESENT,  /* the same bytes are in the target already (as present_as, or its own name) */
	U_CONFLICT, /* a lone file whose name is taken by other bytes: left alone, not restored */
	U_RESUME,   /* an sstable a killed restore left without its Data.db (placed last), every
		     * component there holding the backup's bytes: the others copied beside them;
		     * under its own names, or under new_gen when that run renamed it */
};

/* One sstable (all its components) or one lone file of a table. */
struct unit {
	const char *dir;     /* "" or ".<index>", points into the table's file list */
	size_t first, count; /* its files in the table's vlist */
	enum unit_action action;
	uint64_t new_gen;    /* U_RENAME; U_RESUME of a renamed sstable (else 0) */
	char *present_as;    /* U_PRESENT under another identifier: that identifier ("nb-7-big-") */
	char *present_in;    /* U_PRESENT in the table's directory of another data directory */
	bool leftover;       /* U_RENAME: what a killed run left of it in the target, under
			      * leftover_gen (0: its own names), is removed first: that generation
			      * was taken in another data directory since */
	uint64_t leftover_gen;
};

/* The action for a unit from what the target holds: is_sstable (a lone file otherwise), taken
 * (one of its names exists in the target), same_here (every one of its names holds the
 * backup's bytes), same_elsewhere (another identifier in that directory holds its bytes). */
enum unit_action plan_decide(bool is_sstable, bool taken, bool same_here, bool same_elsewhere);

/* Sorts files by directory and name, then groups them into units: the components of one
 * sstable (same directory, same prefix) together, every lone file alone. *units is malloc'd;
 * each unit starts as U_COPY. */
int plan_group_units(struct vlist *files, struct unit **units, size_t *nunits);
void plan_units_free(struct unit *units, size_t nunits);

/* Fresh generations, one counter per target directory, without bound on the number of
 * directories or sstables. The first request for a directory asks in_use(ctx, dir) for the
 * largest generation that directory already has a use for (in the target and in the backup);
 * the counter starts above it and only grows. */
struct gen_alloc {
	struct gen_dir {
		char *dir;
		uint64_t next;
	} *v;
	size_t n;
};
int gen_alloc_next(struct gen_alloc *ga, const char *dir,
		   uint64_t (*in_use)(void *ctx, const char *dir), void *ctx, uint64_t *gen);
void gen_alloc_free(struct gen_alloc *ga);

/* The largest numeric generation of the files in dir (0 when none). */
uint64_t plan_max_generation(const struct vlist *files, const char *dir);

/* Checks every name a table brings from a store before any of them is used in a path:
 * keyspace, table and file names are single path components (name_is_component), a file's
 * directory is "" or a component starting with '.'. -EINVAL with the first offender in why. */
int plan_check_names(const char *keyspace, const char *table, const struct vlist *files,
		     struct strbuf *why);

/* s as it may be shown on one line: bytes below 0x20, 0x7f and '\\' as \xNN. */
void name_for_msg(const char *s, struct strbuf *out);

/* Is entry a live directory name of table: "<table>-<32 lower-case hex>" or "<table>"? */
bool plan_table_dir_matches(const char *entry, const char *table);
/* Is entry "<something>-<32 lower-case hex>", the name Cassandra gives a table directory? */
bool plan_is_table_dir_name(const char *entry);

/* The prefix of restore's temporary files: ".cassbackup-restore-<pid>-<n>", n counting the
 * run's temporary files, so the name fits in NAME_MAX whatever the final name's length.
 * (Before, the final name followed the pid; such names are still recognized, to be cleaned.) */
#define RESTORE_TEMP_PREFIX ".cassbackup-restore-"
/* For a name made by restore as a temporary file (either form), the pid of the run that made it. */
bool plan_restore_temp_pid(const char *name, pid_t *pid);

/* The staging directory of `restore --import`, made in a data directory:
 * ".cassbackup-import-<pid>/<keyspace>/<table>/". A name Cassandra never takes for a keyspace. */
#define IMPORT_STAGE_PREFIX ".cassbackup-import-"
/* For a name ".cassbackup-import-<pid>" (nothing after the pid), the pid of the run that made it. */
bool plan_import_stage_pid(const char *name, pid_t *pid);

/* Is path a Cassandra data directory (data_file_directories), the place restore looks for
 * <keyspace>/<table>-<id>/? It must be a directory holding at least one keyspace directory
 * that holds a <table>-<32 hex> directory; every node that ever started has those at least
 * for its system keyspaces, and a keyspace directory, a table directory, the parent of the
 * data directory or a cassbackup mount has none. -ENOENT, -ENOTDIR or -EINVAL with the reason
 * in why. */
int plan_check_data_dir(const char *path, struct strbuf *why);

#endif
