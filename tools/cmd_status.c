/* cassbackup status NAME: has every node of the ring committed its backup NAME? */
#include "cli.h"
#include "cluster.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* --- status ------------------------------------------------------------------------------ */

/* The node backups of g whose bytes are not all in packs (list says INCOMPLETE): committed,
 * but not restorable whole. */
static size_t count_incomplete(const struct cluster_backups *g)
{
	size_t n = 0;
	for (size_t i = 0; i < g->n; i++)
		for (size_t k = 0; k < g->v[i].n; k++)
			n += !g->v[i].v[k]->complete;
	return n;
}

/* Is node backup b of other tables than first (their scopes, the system keyspaces aside: a
 * node's own are its alone)? */
static bool of_other_tables(const struct node_backup *first, const struct node_backup *b)
{
	struct manifest_scope x = first->scope, y = b->scope;
	x.system = y.system = false;
	return !manifest_scope_equal(&x, &y);
}

/* The node backups of g made of other tables than its first one (create --table on some
 * nodes only): a table some nodes lack is not whole in this backup, whatever committed. */
static size_t count_other_tables(const struct cluster_backups *g)
{
	size_t n = 0;
	const struct node_backup *first = g->n && g->v[0].n ? g->v[0].v[0] : NULL;
	for (size_t i = 0; first && i < g->n; i++)
		for (size_t k = 0; k < g->v[i].n; k++)
			n += of_other_tables(first, g->v[i].v[k]);
	return n;
}

static void status_json(struct json *j, const char *name, const struct cluster_backups *g,
			size_t done, size_t expected, bool ok)
{
	json_object_begin(j);
	json_kv_str(j, "name", name);
	json_kv_bool(j, "complete", ok);
	json_kv_u64(j, "nodes_done", done);
	json_kv_u64(j, "nodes_incomplete", count_incomplete(g));
	json_kv_u64(j, "nodes_of_other_tables", count_other_tables(g));
	json_key(j, "nodes_expected");
	if (expected)
		json_u64(j, expected);
	else
		json_null(j);
	json_key(j, "missing");
	json_array_begin(j);
	for (size_t i = 0; i < g->n; i++)
		for (size_t k = 0; k < g->v[i].nring; k++)
			if (!g->v[i].ring[k].done)
				list_ring_node_json(j, g->v[i].ring[k].node);
	json_array_end(j);
	json_key(j, "nodes");
	json_array_begin(j);
	for (size_t i = 0; i < g->n; i++)
		for (size_t k = 0; k < g->v[i].n; k++) {
			json_object_begin(j);
			list_node_fields(j, g->v[i].v[k]);
			json_object_end(j);
		}
	json_array_end(j);
	json_object_end(j);
}

static int status_text(struct strbuf *o, const char *name, const struct cluster_backups *g,
		       size_t done, size_t expected)
{
	_cleanup_free_ char *n = cli_escape(name);
	int r;
	if (expected)
		r = sb_printf(o, "%s: %zu of %zu nodes committed\n", n ? n : "", done, expected);
	else
		r = sb_printf(o, "%s: %zu node backup%s; no ring recorded, so the nodes expected are "
			      "unknown\n", n ? n : "", done, done == 1 ? "" : "s");
	for (size_t i = 0; r == 0 && i < g->n; i++)
		for (size_t k = 0; r == 0 && k < g->v[i].nring; k++) {
			const struct ring_entry *e = &g->v[i].ring[k];
			_cleanup_free_ char *a = cli_escape(e->node->address), *h = cli_escape(e->node->host_id),
					    *dc = cli_escape(e->node->datacenter);
			const char *state = !e->done ? "MISSING" : e->done->complete ? "done" : "INCOMPLETE";
			r = sb_printf(o, "  %-10s %-16s %-36s %s\n", state, a ? a : "", h ? h : "", dc ? dc : "");
		}
	size_t incomplete = count_incomplete(g);
	for (size_t i = 0; r == 0 && !expected && i < g->n; i++)
		for (size_t k = 0; r == 0 && k < g->v[i].n; k++) {
			_cleanup_free_ char *who = g->v[i].v[k]->complete ? NULL : node_backup_label(g->v[i].v[k]);
			if (who)
				r = sb_printf(o, "  %-10s %s\n", "INCOMPLETE", who);
		}
	if (r == 0 && incomplete)
		r = sb_printf(o, "%zu node backup%s INCOMPLETE: committed, but not every file's bytes are "
			      "in a pack the store holds, so it cannot be restored whole ('cassbackup check' "
			      "says what is missing)\n", incomplete, incomplete == 1 ? " is" : "s are");
	const struct node_backup *first = g->n && g->v[0].n ? g->v[0].v[0] : NULL;
	for (size_t i = 0; r == 0 && first && i < g->n; i++)
		for (size_t k = 0; r == 0 && k < g->v[i].n; k++) {
			_cleanup_free_ char *who = of_other_tables(first, g->v[i].v[k])
							   ? node_backup_label(g->v[i].v[k]) : NULL;
			if (who)
				r = sb_printf(o, "  %-10s %s\n", "TABLES", who);
		}
	size_t other = count_other_tables(g);
	if (r == 0 && other) {
		_cleanup_free_ char *f = node_backup_label(first);
		r = sb_printf(o, "%zu node backup%s of other tables than %s's ('cassbackup show' lists "
			      "each one's): a table only some nodes hold is not whole in this backup\n",
			      other, other == 1 ? " is" : "s are", f ? f : "");
	}
	return r;
}

int cmd_status(int argc, char **argv)
{
	const char *store = NULL;
	bool json = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "json", .type = OPT_FLAG, .value = &json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "status",
		.operands = "NAME",
		.min_operands = 1,
		.max_operands = 1,
		.description = "Says whether every node of the ring the node backups of NAME recorded\n"
			       "(the union of their rings) has committed its backup NAME, naming each\n"
			       "node missing (address and host id), each node backup that is\n"
			       "INCOMPLETE, and each of other tables than the first node's (TABLES).\n"
			       "Exit status: 0 when all have, all are complete and of the same tables,\n"
			       "1 when not, 3 when there is no backup NAME.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (argc - first != 1)
		return cli_usage_error(&cmd, argc - first ? "too many operands" : "missing NAME");
	const char *name = argv[first];
	struct store *st = NULL;
	struct node_backups nb = {0};
	struct cluster_backups g = {0};
	rc = cluster_open_named(store, name, &st, &nb);
	/* by name only: one ring node is counted once, done when any of its backups of the name
	 * is there (a node that gave another --cluster is not both done and missing) */
	if (rc == 0 && cluster_backups_group(&nb, false, &g) < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	if (rc == 0) {
		size_t done = 0, expected = 0, missing = 0;
		for (size_t i = 0; i < g.n; i++) {
			expected += g.v[i].nring;
			missing += g.v[i].missing;
		}
		done = expected ? expected - missing : nb.n;
		struct strbuf out = {0};
		struct json j;
		json_init(&j, &out);
		int r = 0;
		bool whole = missing == 0 && count_incomplete(&g) == 0 && count_other_tables(&g) == 0;
		if (json)
			status_json(&j, name, &g, done, expected, whole);
		else
			r = status_text(&out, name, &g, done, expected);
		if (r < 0 || json_error(&j) < 0) {
			errorf("out of memory");
			rc = CB_EXIT_FAILED;
		} else {
			fputs(out.buf ? out.buf : "", stdout);
			rc = whole ? CB_EXIT_OK : CB_EXIT_FAILED;
		}
		sb_free(&out);
	}
	cluster_backups_free(&g);
	node_backups_free(&nb);
	store_close(st);
	return rc;
}

