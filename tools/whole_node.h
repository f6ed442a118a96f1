/* whole_node.h: what `restore --whole-node` adds to a restore of tables: a node brought back
 * onto empty data directories (a replaced disk, new hardware) with every keyspace of its
 * backup, system ones included, and the identity it had.
 *
 * Cassandra's own procedure (Operations: "Restoring a node from a snapshot", and the
 * replacement of a node with the same identity): the node is stopped; its data directories
 * are empty; each table's sstables go into <data dir>/<keyspace>/<table>-<id> (the id the
 * table had, which system_schema still names); the node starts with initial_token set to the
 * tokens it had and auto_bootstrap false, so it neither picks new tokens nor streams data it
 * already has. */
#ifndef CASSBACKUP_WHOLE_NODE_H
#define CASSBACKUP_WHOLE_NODE_H

#include <stdbool.h>
#include <sys/types.h>

#include "backup_files.h"
#include "util.h"

/* The keyspace a whole node cannot start without (its tables' definitions). */
#define WHOLE_NODE_SCHEMA_KEYSPACE "system_schema"

/* 0 when the backup's tables ts can bring a whole node back; -EINVAL with the reason in why
 * (no system_schema: the backup was made without --include-system). */
int whole_node_check_backup(const struct tables *ts, struct strbuf *why);

/* Whether data directory path may take a whole-node restore of ts: it exists and holds
 * nothing but lost+found and the keyspace and table directories of ts (so an interrupted
 * restore can be run again, and a directory with anything else in it, a live node's, is
 * left alone). 0, or -errno with the reason (naming the first entry in the way) in why. */
int whole_node_check_data_dir(const char *path, const struct tables *ts, struct strbuf *why);

/* Whether Cassandra answers on this node: runs `nodetool version` (argv from nodetool_argv).
 * 1 when it answered (running: why says what it answered), 0 when it did not (refused, not
 * installed: a stopped or absent node), -ENOMEM. */
int whole_node_cassandra_answers(const char *nodetool, struct strbuf *why);

/* The owner of restored files and directories by default: the user cassandra and its group.
 * 0, or -ENOENT when there is no such user. */
int whole_node_default_owner(uid_t *uid, gid_t *gid);

/* "<table>-<id>", or "<table>" for a table without an id (Cassandra < 2.1), into out. */
int whole_node_table_dir(const char *table, const char *id, struct strbuf *out);

/* The cassandra.yaml lines that make the node keep its tokens: "num_tokens: N\n" (their
 * number: Cassandra refuses another), "initial_token: t1,t2,...\n" and "auto_bootstrap:
 * false\n", from tokens separated by blanks. -EINVAL when tokens is empty (the backup
 * recorded none). */
int whole_node_yaml_lines(const char *tokens, struct strbuf *out);

/* Sets num_tokens, initial_token and auto_bootstrap in the cassandra.yaml at path
 * (whole_node_yaml_lines): replaces the top-level lines of those keys (or appends them),
 * keeping every other line, the file's mode and owner. The file as it was is kept once beside
 * it as <path>.before-cassbackup (a second run does not overwrite it). Written to a temporary
 * file, fsynced, renamed over path. 0 or -errno with the reason in err. */
int whole_node_set_tokens(const char *path, const char *tokens, struct strbuf *err);

#endif
