/* cluster.h: node backups and cluster backups, as list, status, show and the commands that take
 * a NAME see them.
 *
 * A backup is one node's (its ref, store.h: "NAME/NODE", or "NAME" in the older layout). A
 * cluster backup is the node backups that share a cluster and a name. The nodes it should have
 * are the union of the rings its node backups recorded (nodetool status as each node saw it); a
 * ring node is done when a node backup of it is there (same host id; without a host id, same
 * address). With no ring recorded, the nodes expected are unknown.
 *
 * A node is named on the command line (--node N) by its host id, a unique prefix of it (at
 * least 4 characters), its node name, or its address.
 */
#ifndef CASSBACKUP_CLUSTER_H
#define CASSBACKUP_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "catalog.h"
#include "exec.h"
#include "manifest.h"

/* One node backup, copied out of the catalog. Strings are never NULL. */
struct node_backup {
	char *ref, *name, *node, *node_key, *host_id, *cluster, *datacenter, *rack;
	char *address; /* of its node, from the ring it recorded ("" when unknown) */
	char *snapshot_tag, *cassandra_version, *schema_version, *tokens;
	char *base, *previous; /* an incremental's full backup and the one it follows; "" if full */
	int64_t created_ns;
	uint64_t tables, files, bytes, unique_bytes, new_bytes, stored_bytes;
	bool complete;
	struct manifest_ring_node *ring;
	size_t nring;
	struct manifest_scope scope; /* what it was made of (empty for a damaged row) */
};

struct node_backups {
	struct node_backup *v;
	size_t n;
};
void node_backups_free(struct node_backups *l);

/* Every node backup of the catalog, oldest first (invalid rows reported and left out), or only
 * those of node (NULL: all). 0, or a catalog error (-errno). */
int node_backups_all(catalog *cat, const char *node, struct node_backups *out);
/* The node backups called name (or whose ref is name), by node key. Their number or -errno. */
int node_backups_named(catalog *cat, const char *name, struct node_backups *out);

/* Whether node backup b is of the node the user named (see above). */
bool node_backup_matches(const struct node_backup *b, const char *node);

/* Does node (as --node gives it) name more than one node among l's backups that it matches:
 * two host ids (a node name that is also a prefix of another node's host id)? Then *a and *b
 * get two of them (owned by l). Spellings of one host id in other cases are one node. */
bool node_names_several(const struct node_backups *l, const char *node, const char **a, const char **b);

/* A cluster backup: node backups of one (cluster, name); the ring they recorded, merged. */
struct ring_entry {
	const struct manifest_ring_node *node; /* owned by one of the node backups */
	const struct node_backup *done;        /* its backup, NULL when missing */
};
struct cluster_backup {
	const char *name, *cluster;
	const struct node_backup **v; /* in the order of the list they came from */
	size_t n;
	struct ring_entry *ring; /* the union of the rings recorded, by datacenter and address */
	size_t nring;
	size_t missing;          /* ring nodes without a backup */
	size_t done;             /* node backups of the cluster backup (n, unless narrowed) */
	int64_t first_ns, last_ns;
	uint64_t bytes;
	bool complete;           /* every node backup's bytes are in packs */
};
struct cluster_backups {
	struct cluster_backup *v;
	size_t n;
};
/* Groups l (which must outlive the groups) by (cluster, name), or by name only when not
 * by_cluster, in order of first commit. */
int cluster_backups_group(const struct node_backups *l, bool by_cluster, struct cluster_backups *out);
void cluster_backups_free(struct cluster_backups *g);
/* g narrowed to node's backups (node_backup_matches) into *out: those, their bytes, first and
 * last commit and completeness; g's ring and missing nodes kept (what the cluster backup lacks
 * is counted from all of its node backups). 1 (out->v the caller's), 0 when none is node's,
 * or -ENOMEM. */
int cluster_backup_narrow(const struct cluster_backup *g, const char *node, struct cluster_backup *out);

/* The usage error of --all with --node (copy, verify): --node picks a node's backup of each
 * NAME given; it does not narrow --all. */
#define CLUSTER_ALL_WITH_NODE "give NAME... with --node, not --all (cassbackup list --node NODE " \
			      "lists that node's backups)"

/* The node backups of NAME that a command acts on, as refs into refs: with node, that node's
 * one; else all of them when all, else the only one (a name with several says so in one line,
 * listing them, and that --node picks one). Prints its own error line. 0, or the exit code
 * (CB_EXIT_MISSING when there is none; CB_EXIT_FAILED when its manifest could not be read).
 * st: the store open for the command, store: its location as given. */
struct store;
int cluster_pick(struct store *st, const char *store, const char *name, const char *node, bool all,
		 struct strv *refs);

/* JSON of list and show (cmd_list.c): a node backup's fields (into an open object), a ring
 * node as an object. */
struct json;
void list_node_fields(struct json *j, const struct node_backup *b);
void list_ring_node_json(struct json *j, const struct manifest_ring_node *x);

/* How the node backup ref is called in what a command prints, appended to out: its name when
 * it is the only node backup of that name, else its ref ("NAME/NODE"). 0 or -ENOMEM. */
int cluster_shown(catalog *cat, const char *ref, struct strv *out);

/* Opens store read-only into *st (the caller closes it, also on failure) and reads the node
 * backups of name into nb. 0, or the exit code (said; CB_EXIT_MISSING when there is none). */
struct store;
int cluster_open_named(const char *store, const char *name, struct store **st,
		       struct node_backups *nb);

/* "NODE (ADDRESS, host id HOSTID)" for messages, escaped, malloc'd. */
char *node_backup_label(const struct node_backup *b);

/* This node's host id as `nodetool info` tells it (argv from nodetool_argv), malloc'd into
 * *host_id; NULL when nodetool cannot be run or does not answer (a stopped node, another
 * machine). 0 or -ENOMEM. */
int cluster_local_host_id(const char *nodetool, char **host_id);

/* The name a template makes (config name, create --name with %-conversions, backup): strftime(3)
 * of `now` in UTC rounded down to the start of its slot of length period (counted from the
 * epoch; a zero period: no rounding), so that the timers of several nodes that start minutes
 * apart make one name, and with it one cluster backup. Into out (n bytes). 0, or -EINVAL with
 * the reason in why (a period of months or years, which are no fixed length; a conversion
 * strftime does not know; a template that makes no name or one over 255 bytes). */
struct duration;
int cluster_name_expand(const char *template, const struct duration *period, time_t now, char *out,
			size_t n, struct strbuf *why);

#endif
