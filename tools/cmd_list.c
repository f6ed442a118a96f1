/* cassbackup list: the backups in a store. */
#include "cli.h"
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

static void list_json(struct json *j, const struct cb_backup_summary *b, const char *created)
{
	json_object_begin(j);
	json_kv_str(j, "name", b->name);
	json_kv_str(j, "node", b->node);
	json_kv_str(j, "cluster", b->cluster);
	json_kv_str(j, "datacenter", b->datacenter);
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
	json_kv_str(j, "cassandra_version", b->cassandra_version ? b->cassandra_version : "");
	json_object_end(j);
}

/* One line of the table; names escaped so that none can forge a line. */
static int list_text(struct strbuf *o, const struct cb_backup_summary *b, const char *created)
{
	char size[32], uniq[32];
	format_bytes(b->bytes, size, sizeof(size));
	format_bytes(b->unique_bytes, uniq, sizeof(uniq));
	_cleanup_free_ char *name = cli_escape(b->name), *node = cli_escape(b->node);
	if (!name || !node)
		return -ENOMEM;
	return sb_printf(o, "%-28s %-16s %-20s %6llu %7llu %10s %10s  %s\n", name, node, created,
			 (unsigned long long)b->tables, (unsigned long long)b->files, size, uniq,
			 b->complete ? "complete" : "INCOMPLETE");
}

static int list_one(void *ctx, const struct cb_backup_summary *b)
{
	struct list_ctx *l = ctx;
	if (b->invalid) { /* one damaged row: say so, and list the others */
		errorf("%s, not listed", b->invalid);
		return 0;
	}
	char created[64];
	format_time_utc(b->created_ns, created, sizeof(created));
	if (l->node && strcmp(l->node, b->node ? b->node : "") != 0)
		return 0;
	if (!l->json)
		return list_text(&l->out, b, created);
	list_json(&l->j, b, created);
	return json_error(&l->j);
}

int cmd_list(int argc, char **argv)
{
	const char *store = NULL;
	struct list_ctx l = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &l.node, .arg = "NODE",
		 .help = "only the backups of this node"},
		{.name = "json", .type = OPT_FLAG, .value = &l.json,
		 .help = "print JSON for scripts (adds cluster, datacenter, snapshot tag, new and "
			 "stored bytes)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "list",
		.description = "Lists the backups: name, node, creation time, tables, files, size,\n"
			       "UNIQUE: the data only that backup holds, what deleting it would free,\n"
			       "and STATE: complete, or incomplete when a pack it needs is missing.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	struct store *st;
	int r = cli_store_open(store, STORE_READONLY, &st);
	if (r != 0)
		return r;
	catalog *cat = store_catalog(st);
	json_init(&l.j, &l.out);
	if (l.json)
		json_array_begin(&l.j);
	else
		sb_printf(&l.out, "%-28s %-16s %-20s %6s %7s %10s %10s  %s\n", "NAME", "NODE", "CREATED",
			  "TABLES", "FILES", "SIZE", "UNIQUE", "STATE");
	r = catalog_list_backups(cat, list_one, &l);
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
		rc = CB_EXIT_OK;
	}
	sb_free(&l.out);
	store_close(st);
	return rc;
}
