/* pitr.h: point-in-time restore for `cassbackup restore --point-in-time` (cmd_restore.c).
 *
 * A point-in-time restore is the last backup of the node taken at or before the time (restored
 * by the usual restore), then the commitlog segments stored since that backup's snapshot
 * (commitlog.h) copied into a directory of their own, and Cassandra's
 * commitlog_archiving.properties set so that, at its next start, Cassandra copies them into its
 * commitlog directory (restore_directories, restore_command) and replays their mutations up to
 * the time (restore_point_in_time, precision). Those settings must go after the replay, or
 * every restart replays again: cmd_restore_pitr_done puts back the file that was there before.
 */
#ifndef CASSBACKUP_PITR_H
#define CASSBACKUP_PITR_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "commitlog.h"

#define PITR_PROPERTIES "commitlog_archiving.properties"
#define PITR_SAVED PITR_PROPERTIES ".before-point-in-time"

/* Parses a point in time as Cassandra's restore_point_in_time reads it: "yyyy:MM:dd HH:mm:ss"
 * in GMT, optionally ".SSS": milliseconds since the epoch into *ms. -EINVAL with one phrase in
 * err. */
int pitr_parse_time(const char *s, int64_t *ms, struct strbuf *err);

struct pitr {
	const char *time;          /* as given */
	int64_t time_ms;
	const char *node;          /* NULL: the configuration's node, else the host name */
	const char *backup;        /* NULL: the last backup of the node at or before time_ms */
	const char *cassandra_conf; /* where commitlog_archiving.properties goes */
	const char *segments_dir;  /* NULL: commitlog_restore beside the first data directory */
	const char *data_dir;      /* the first --data-dir */
	bool dry_run;
	bool ignore_gaps;          /* go on past segments missing within a run (refuse_a_gap) */
	struct selection *sel;     /* the tables restored: -Dcassandra.replayList when named */
	bool whole_node;           /* restore --whole-node: a backup with the system keyspaces */
	/* filled by pitr_plan */
	char node_name[256];
	char backup_name[256];
	char backup_ref[512];  /* its key below backups/ (store.h), for its manifest */
	char backup_node[256]; /* its node as restore --node takes it (host id, else node name) */
	char host_id[64];      /* its node's host id, "" when unknown: the segments' must match */
	struct commitlog_start from; /* the backup's window start (snapshot, at the latest) */
	char **replay_list;        /* "ks.table", for a selection */
	size_t nreplay;
	struct commitlog_list *segments;
	char *segments_dir_owned;  /* the default segments_dir */
	bool *fetched;             /* per segment: this run wrote it into segments_dir */
	bool made_segments_dir;    /* this run made segments_dir */
	int segments_dir_lock;     /* > 0: segments_dir, open and flock'ed by this run */
};

/* Chooses the backup and the segments (the store at location, read-only) and checks the
 * directories. 0, or the exit status after one line saying why. */
int pitr_plan(struct pitr *p, const char *location);

/* Before the backup is restored: copies the segments into the segments directory, each read
 * whole and checked, so that a segment that cannot be had stops the restore before it writes
 * anything in the node. The exit status. */
int pitr_fetch(struct pitr *p, const char *location);

/* Takes back what pitr_fetch wrote (the backup could not be restored): the segments this run
 * copied, and the segments directory when this run made it and it is empty then; what earlier
 * runs copied stays (their settings may name it). */
void pitr_unfetch(struct pitr *p);

/* After the backup was restored: writes commitlog_archiving.properties (the previous one kept
 * beside it), then says what to do next. The exit status. */
int pitr_apply(struct pitr *p);

void pitr_free(struct pitr *p);

/* `cassbackup restore --point-in-time-done --cassandra-conf DIR`: puts back the
 * commitlog_archiving.properties that was there before (or removes the one written, when there
 * was none), then removes the segments from the segments directory the file named (and the
 * directory when empty). The exit status. */
int cmd_restore_pitr_done(int argc, char **argv);
/* restore --conf DIR (restore_conf.c): the backup's configuration files back into DIR. */
int cmd_restore_conf(int argc, char **argv);

#endif
