/* cassbackup list: the backups in a store. */
#include "cli.h"
#include "cluster.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct list_ctx {
	bool json;
	const char *node; /* --node: only this node's backups */
	struct strbuf out;
	struct json j;
};

void list_node_fields(struct json *j, const struct node_backup *b)
{
	char created[64];
	format_time_utc(b->created_ns, created, sizeof(created));
	json_kv_str(j, "name", b->name);
	json_kv_str(j, "ref", b->ref);
	json_kv_str(j, "node", b->node);
	json_kv_str(j, "host_id", b->host_id);
	json_kv_str(j, "address", b->address);
	json_kv_str(j, "cluster", b->cluster);
	json_kv_str(j, "datacenter", b->datacenter);
	json_kv_str(j, "rack", b->rack);
	json_kv_str(j, "snapshot_tag", b->snapshot_tag);
	json_kv_str(j, "created", created);
	json_kv_i64(j, "created_ns", b->created_ns);
	json_kv_u64(j, "tables", b->tables);
	json_kv_u64(j, "files", b->files);
	json_kv_u64(j, "bytes", b->bytes);
	json_kv_u64(j, "unique_bytes", b->unique_bytes);
	json_kv_u64(j, "new_bytes", b->new_bytes);
	json_kv_u64(j, "stored_bytes", b->stored_bytes);
	json_kv_bool(j, "complete", b->complete);
	json_kv_str(j, "cassandra_version", b->cassandra_version);
	json_kv_str(j, "schema_version", b->schema_version);
	json_kv_bool(j, "incremental", *b->base != '\0');
	json_key(j, "base");
	if (*b->base)
		json_str(j, b->base);
	else
		json_null(j);
	json_key(j, "previous");
	if (*b->previous)
		json_str(j, b->previous);
	else
		json_null(j);
	json_key(j, "scope");
	json_object_begin(j);
	json_kv_bool(j, "system", b->scope.system);
	json_key(j, "select");
	json_array_begin(j);
	for (size_t i = 0; i < b->scope.n; i++) {
		json_object_begin(j);
		json_kv_str(j, "keyspace", b->scope.v[i].keyspace);
		if (b->scope.v[i].table)
			json_kv_str(j, "table", b->scope.v[i].table);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}

static void list_node_json(struct json *j, const struct node_backup *b)
{
	json_object_begin(j);
	list_node_fields(j, b);
	json_object_end(j);
}

/* A ring node as JSON: host id, address, datacenter, rack. */
void list_ring_node_json(struct json *j, const struct manifest_ring_node *x)
{
	json_object_begin(j);
	json_kv_str(j, "host_id", x->host_id);
	json_kv_str(j, "address", x->address);
	json_kv_str(j, "datacenter", x->datacenter);
	json_kv_str(j, "rack", x->rack);
	json_object_end(j);
}

/* One cluster backup: its name, cluster, nodes done and expected (null: no ring recorded), the
 * missing ring nodes, sizes, first and last commit, whether its store is encrypted (each entry
 * says so, the output being an array), and its node backups. */
static void list_json(struct json *j, const struct cluster_backup *g, bool encrypted)
{
	char first[64], last[64];
	format_time_utc(g->first_ns, first, sizeof(first));
	format_time_utc(g->last_ns, last, sizeof(last));
	json_object_begin(j);
	json_kv_str(j, "name", g->name);
	json_kv_str(j, "cluster", g->cluster);
	json_kv_u64(j, "nodes_done", g->done);
	json_key(j, "nodes_expected");
	if (g->nring)
		json_u64(j, g->nring);
	else
		json_null(j);
	json_key(j, "missing");
	json_array_begin(j);
	for (size_t i = 0; i < g->nring; i++)
		if (!g->ring[i].done)
			list_ring_node_json(j, g->ring[i].node);
	json_array_end(j);
	json_kv_u64(j, "bytes", g->bytes);
	json_kv_str(j, "first_created", first);
	json_kv_str(j, "last_created", last);
	json_kv_bool(j, "complete", g->complete);
	json_kv_bool(j, "encrypted", encrypted);
	json_key(j, "nodes");
	json_array_begin(j);
	for (size_t i = 0; i < g->n; i++)
		list_node_json(j, g->v[i]);
	json_array_end(j);
	json_object_end(j);
}

/* One cluster backup's line (and one line naming its missing nodes); names escaped so that
 * none can forge a line. NODE is the node of a cluster backup of one node, else "*". */
static int list_text(struct strbuf *o, const struct cluster_backup *g)
{
	char size[32], uniq[32], first[64], last[64], nodes[48];
	uint64_t tables = 0, files = 0, unique = 0;
	for (size_t i = 0; i < g->n; i++) {
		tables += g->v[i]->tables;
		files += g->v[i]->files;
		unique += g->v[i]->unique_bytes;
	}
	format_bytes(g->bytes, size, sizeof(size));
	format_bytes(unique, uniq, sizeof(uniq));
	format_time_utc(g->first_ns, first, sizeof(first));
	format_time_utc(g->last_ns, last, sizeof(last));
	if (g->nring)
		snprintf(nodes, sizeof(nodes), "%zu/%zu", g->nring - g->missing, g->nring);
	else
		snprintf(nodes, sizeof(nodes), "%zu/?", g->done);
	_cleanup_free_ char *name = cli_escape(g->name), *node = cli_escape(g->n == 1 ? g->v[0]->node : "*");
	if (!name || !node)
		return -ENOMEM;
	int r = sb_printf(o, "%-28s %-16s %-20s %-20s %7s %6llu %7llu %10s %10s  %s\n", name, node,
			  first, last, nodes, (unsigned long long)tables, (unsigned long long)files,
			  size, uniq, !g->complete ? "INCOMPLETE" : g->missing ? "PARTIAL" : "complete");
	for (size_t i = 0; r == 0 && i < g->nring; i++) {
		if (g->ring[i].done)
			continue;
		_cleanup_free_ char *a = cli_escape(g->ring[i].node->address),
				    *h = cli_escape(g->ring[i].node->host_id);
		r = sb_printf(o, "  missing: %s (host id %s)\n", a ? a : "", h ? h : "");
	}
	for (size_t i = 0; r == 0 && i < g->n; i++) {
		const struct node_backup *b = g->v[i];
		if (!*b->base)
			continue;
		_cleanup_free_ char *n = cli_escape(b->node), *bs = cli_escape(b->base),
				    *p = cli_escape(b->previous);
		if (!strcmp(b->base, b->previous))
			r = sb_printf(o, "  incremental (node %s): on full backup %s\n", n ? n : "", bs ? bs : "");
		else
			r = sb_printf(o, "  incremental (node %s): on %s, full backup %s\n", n ? n : "",
				      p ? p : "", bs ? bs : "");
	}
	return r;
}

/* A manifest the store could not read is a backup list cannot show: one warning line, so the
 * operator learns of it here and not when a restore needs it. */
static void warn_skipped_manifests(const struct store *st, const char *store)
{
	unsigned n;
	const char *why = store_skipped_manifests(st, &n);
	if (n == 0)
		return;
	_cleanup_free_ char *shown = cli_escape(store), *what = cli_escape(why);
	errorf("warning: %u manifest(s) of store %s cannot be read and their backups are not "
	       "listed: %s (cassbackup check tells more)", n, shown ? shown : "", what ? what : "");
}

int cmd_list(int argc, char **argv)
{
	const char *store = NULL;
	struct list_ctx l = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &l.node, .arg = "NODE",
		 .help = "only the backups of this node (host id, a prefix of it, node name or address)"},
		{.name = "json", .type = OPT_FLAG, .value = &l.json,
		 .help = "print JSON for scripts (each cluster backup with its node backups)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "list",
		.description = "Lists the cluster backups (the node backups of one cluster and name):\n"
			       "name, node (* for several), first and last commit, NODES: node backups\n"
			       "done / nodes of the ring they recorded (? when none was), tables, files,\n"
			       "size, UNIQUE: the data only they hold, what deleting them would free,\n"
			       "and STATE: complete, PARTIAL when nodes of the ring are missing (named\n"
			       "below it), INCOMPLETE when a pack a node backup needs is missing.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	struct store *st;
	int r = cli_store_open(store, STORE_READONLY, &st);
	if (r != 0)
		return r;
	warn_skipped_manifests(st, store);
	catalog *cat = store_catalog(st);
	json_init(&l.j, &l.out);
	if (l.json)
		json_array_begin(&l.j);
	else
		sb_printf(&l.out, "%-28s %-16s %-20s %-20s %7s %6s %7s %10s %10s  %s\n", "NAME", "NODE",
			  "CREATED", "LAST", "NODES", "TABLES", "FILES", "SIZE", "UNIQUE", "STATE");
	struct node_backups nb = {0};
	struct cluster_backups groups = {0};
	/* grouped whole, then narrowed to --node's backups: the nodes a cluster backup lacks are
	 * counted from all of its node backups */
	r = node_backups_all(cat, NULL, &nb);
	const char *one, *other;
	if (r == 0 && l.node && node_names_several(&nb, l.node, &one, &other)) {
		_cleanup_free_ char *shown = cli_escape(l.node), *a = cli_escape(one), *b = cli_escape(other);
		errorf("--node %s names more than one node (host ids %s and %s): give the whole host id",
		       shown ? shown : "", a ? a : "", b ? b : "");
		node_backups_free(&nb);
		sb_free(&l.out);
		store_close(st);
		return CB_EXIT_USAGE;
	}
	r = r ?: cluster_backups_group(&nb, true, &groups);
	for (size_t i = 0; r == 0 && i < groups.n; i++) {
		struct cluster_backup g = groups.v[i];
		int mine = l.node ? cluster_backup_narrow(&groups.v[i], l.node, &g) : 1;
		r = mine < 0 ? mine : 0;
		if (mine <= 0)
			continue;
		if (l.json)
			list_json(&l.j, &g, store_encrypted(st));
		else
			r = list_text(&l.out, &g);
		if (l.node)
			free(g.v);
	}
	cluster_backups_free(&groups);
	node_backups_free(&nb);
	if (l.json)
		json_array_end(&l.j);
	if (r < 0 || json_error(&l.j) < 0) {
		char why[512];
		_cleanup_free_ char *shown = cli_escape(store);
		errorf("cannot list backups in %s: %s", shown ? shown : "",
		       catalog_why(cat, r < 0 ? r : json_error(&l.j), why, sizeof(why)));
		rc = CB_EXIT_FAILED;
	} else {
		fputs(l.out.buf, stdout);
		if (!l.json && store_encrypted(st))
			printf("(store encrypted: AES-256-GCM)\n");
		rc = CB_EXIT_OK;
	}
	sb_free(&l.out);
	store_close(st);
	return rc;
}
