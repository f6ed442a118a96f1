/* cassbackup show NAME: everything the node backups of NAME recorded. */
#include "cli.h"
#include "cluster.h"
#include "manifest.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct table_size {
	uint64_t files, bytes;
};

static int add_file(void *ctx, const struct cb_file_row *f)
{
	struct table_size *t = ctx;
	t->files++;
	t->bytes += f->size;
	return 0;
}

/* What a backup kept of the node besides its tables (manifest.h node_files). */
struct node_kept {
	bool schema;
	uint64_t conf_files, conf_bytes;
};

static int add_node_file(void *ctx, const struct cb_file_row *f)
{
	struct node_kept *k = ctx;
	if (!*f->dir && !strcmp(f->name, MANIFEST_SCHEMA_FILE))
		k->schema = true;
	else if (!strcmp(f->dir, MANIFEST_CONF_DIR)) {
		k->conf_files++;
		k->conf_bytes += f->size;
	}
	return 0;
}

struct show {
	catalog *cat;
	struct json *j;
	struct strbuf *out;
	bool json;
};

static int show_table(void *ctx, const struct cb_table_row *t)
{
	struct show *s = ctx;
	struct table_size sz = {0};
	/* a second statement on the catalog while the tables' one steps: files are per table */
	int r = catalog_table_files(s->cat, t->row, add_file, &sz);
	if (r < 0)
		return r;
	if (s->json) {
		json_object_begin(s->j);
		json_kv_str(s->j, "keyspace", t->keyspace);
		json_kv_str(s->j, "table", t->table);
		json_kv_str(s->j, "id", t->table_id);
		json_kv_u64(s->j, "files", sz.files);
		json_kv_u64(s->j, "bytes", sz.bytes);
		json_object_end(s->j);
		return json_error(s->j);
	}
	char size[32];
	format_bytes(sz.bytes, size, sizeof(size));
	_cleanup_free_ char *k = cli_escape(t->keyspace), *n = cli_escape(t->table);
	return sb_printf(s->out, "    %s.%s%s%s: %llu files, %s\n", k ? k : "", n ? n : "",
			 *t->table_id ? " " : "", t->table_id, (unsigned long long)sz.files, size);
}

static int show_text_head(struct strbuf *o, const struct node_backup *b)
{
	char created[64];
	format_time_utc(b->created_ns, created, sizeof(created));
	const char *rows[][2] = {
		{"ref", b->ref}, {"node", b->node}, {"host id", b->host_id}, {"address", b->address},
		{"cluster", b->cluster}, {"datacenter", b->datacenter}, {"rack", b->rack},
		{"release version", b->cassandra_version}, {"schema version", b->schema_version},
		{"snapshot tag", b->snapshot_tag}, {"created", created}, {"tokens", b->tokens},
	};
	_cleanup_free_ char *name = cli_escape(b->name);
	int r = sb_printf(o, "backup %s\n", name ? name : "");
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(rows); i++) {
		_cleanup_free_ char *v = cli_escape(rows[i][1]);
		r = sb_printf(o, "  %-16s %s\n", rows[i][0], v && *v ? v : "(unknown)");
	}
	struct strbuf scope = {0};
	r = r ?: sb_scope(&scope, &b->scope);
	r = r ?: sb_printf(o, "  %-16s %s\n", "tables of", scope.buf ? scope.buf : "");
	sb_free(&scope);
	if (r == 0 && *b->base) {
		_cleanup_free_ char *bs = cli_escape(b->base), *p = cli_escape(b->previous);
		r = sb_printf(o, "  %-16s on %s, full backup %s: its tree is that full backup with the "
			      "incrementals up to this one applied\n", "incremental", p ? p : "", bs ? bs : "");
	}
	char size[32];
	format_bytes(b->bytes, size, sizeof(size));
	r = r ?: sb_printf(o, "  %-16s %llu tables, %llu files, %s%s\n", "size",
			   (unsigned long long)b->tables, (unsigned long long)b->files, size,
			   b->complete ? "" : " (INCOMPLETE: a pack it needs is missing)");
	r = r ?: sb_printf(o, "  ring (%zu nodes, as this node saw it):\n", b->nring);
	for (size_t i = 0; r == 0 && i < b->nring; i++) {
		const struct manifest_ring_node *x = &b->ring[i];
		_cleanup_free_ char *a = cli_escape(x->address), *h = cli_escape(x->host_id),
				    *dc = cli_escape(x->datacenter), *rk = cli_escape(x->rack);
		r = sb_printf(o, "    %-16s %-36s %s/%s\n", a ? a : "", h ? h : "", dc ? dc : "", rk ? rk : "");
	}
	return r;
}

static int show_node_kept(struct show *s, int64_t id)
{
	struct node_kept k = {0};
	int r = catalog_node_files(s->cat, id, add_node_file, &k);
	if (r < 0)
		return r;
	if (s->json) {
		json_kv_bool(s->j, "schema", k.schema);
		json_kv_u64(s->j, "conf_files", k.conf_files);
		return json_error(s->j);
	}
	char size[32];
	format_bytes(k.conf_bytes, size, sizeof(size));
	r = sb_printf(s->out, "  %-16s %s\n", "schema",
		      k.schema ? MANIFEST_SCHEMA_FILE " (cqlsh DESCRIBE SCHEMA)"
			       : "none: this backup has no keyspace DDL, only each table's schema.cql");
	if (k.conf_files)
		return r ?: sb_printf(s->out, "  %-16s " MANIFEST_CONF_DIR "/: %llu files, %s\n",
				      "configuration", (unsigned long long)k.conf_files, size);
	return r ?: sb_printf(s->out, "  %-16s none kept\n", "configuration");
}

static int show_one(struct show *s, const struct node_backup *b, int64_t id)
{
	int r = 0;
	if (s->json) {
		json_object_begin(s->j);
		list_node_fields(s->j, b);
		json_key(s->j, "tokens");
		json_array_begin(s->j);
		for (const char *p = b->tokens; *p; p += strspn(p, " ")) {
			size_t n = strcspn(p, " ");
			if (!n)
				break;
			_cleanup_free_ char *t = strndup(p, n);
			json_str(s->j, t);
			p += n;
		}
		json_array_end(s->j);
		json_key(s->j, "ring");
		json_array_begin(s->j);
		for (size_t i = 0; i < b->nring; i++)
			list_ring_node_json(s->j, &b->ring[i]);
		json_array_end(s->j);
		r = show_node_kept(s, id);
		json_key(s->j, "tables");
		json_array_begin(s->j);
	} else {
		r = show_text_head(s->out, b) ?: show_node_kept(s, id) ?: sb_puts(s->out, "  tables:\n");
	}
	r = r ?: catalog_backup_tables(s->cat, id, show_table, s);
	if (s->json) {
		json_array_end(s->j);
		json_object_end(s->j);
	}
	return r;
}

static int on_id(void *ctx, const struct cb_backup_summary *b)
{
	*(int64_t *)ctx = b->id;
	return 0;
}

int cmd_show(int argc, char **argv)
{
	const char *store = NULL, *node = NULL;
	bool json = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &node, .arg = "NODE",
		 .help = "only this node's backup (host id, a prefix of it, node name or address)"},
		{.name = "json", .type = OPT_FLAG, .value = &json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "show",
		.operands = "NAME",
		.min_operands = 1,
		.max_operands = 1,
		.description = "Shows everything the node backups of NAME recorded: node, host id,\n"
			       "address, cluster, datacenter, rack, release and schema versions, snapshot\n"
			       "tag, tokens, the ring the node saw, whether it kept the keyspace DDL\n"
			       "(schema.cql) and the configuration directory, and every table with its size.",
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
	rc = cluster_open_named(store, name, &st, &nb);
	struct strv refs = {0};
	catalog *cat = st ? store_catalog(st) : NULL;
	if (rc == 0)
		rc = cluster_pick(st, store, name, node, true, &refs);
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	struct show s = {.cat = cat, .j = &j, .out = &out, .json = json};
	if (json && rc == 0)
		json_array_begin(&j);
	int r = 0;
	for (size_t i = 0; rc == 0 && r == 0 && i < nb.n; i++) {
		bool picked = false;
		for (size_t k = 0; k < refs.n; k++)
			picked = picked || !strcmp(refs.v[k], nb.v[i].ref);
		int64_t id = 0;
		if (picked && (r = catalog_get_backup(cat, nb.v[i].ref, on_id, &id)) >= 0)
			r = show_one(&s, &nb.v[i], id);
	}
	if (json && rc == 0)
		json_array_end(&j);
	if (rc == 0 && (r < 0 || json_error(&j) < 0)) {
		char why[512];
		_cleanup_free_ char *n = cli_escape(name);
		errorf("cannot show backup %s: %s", n ? n : "",
		       catalog_why(cat, r < 0 ? r : json_error(&j), why, sizeof(why)));
		rc = CB_EXIT_FAILED;
	} else if (rc == 0) {
		fputs(out.buf ? out.buf : "", stdout);
	}
	sb_free(&out);
	strv_free(&refs);
	node_backups_free(&nb);
	store_close(st);
	return rc;
}
