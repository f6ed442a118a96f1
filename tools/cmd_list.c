/* cassbackup list: the backups in a store. */
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

struct list_ctx {
	bool json;
	unsigned n;
	struct strbuf out;
};

static int list_one(void *ctx, const struct cb_backup_summary *b)
{
	struct list_ctx *l = ctx;
	struct strbuf *o = &l->out;
	if (b->invalid) { /* one damaged row: say so, and list the others */
		errorf("%s, not listed", b->invalid);
		return 0;
	}
	char created[64];
	format_time_utc(b->created_ns, created, sizeof(created));
	int r;
	if (l->json) {
		r = sb_puts(o, l->n ? ",\n  {\"name\": " : "\n  {\"name\": ");
		r |= sb_json_str(o, b->name);
		r |= sb_puts(o, ", \"node\": ");
		r |= sb_json_str(o, b->node);
		r |= sb_puts(o, ", \"cluster\": ");
		r |= sb_json_str(o, b->cluster);
		r |= sb_puts(o, ", \"datacenter\": ");
		r |= sb_json_str(o, b->datacenter);
		r |= sb_puts(o, ", \"snapshot_tag\": ");
		r |= sb_json_str(o, b->snapshot_tag);
		r |= sb_printf(o, ", \"created\": \"%s\", \"created_ns\": %lld, \"tables\": %llu, "
			       "\"files\": %llu, \"bytes\": %llu, \"unique_bytes\": %llu, "
			       "\"new_bytes\": %llu, \"stored_bytes\": %llu}",
			       created, (long long)b->created_ns, (unsigned long long)b->tables,
			       (unsigned long long)b->files, (unsigned long long)b->bytes,
			       (unsigned long long)b->unique_bytes, (unsigned long long)b->new_bytes,
			       (unsigned long long)b->stored_bytes);
	} else {
		char size[32], uniq[32];
		format_bytes(b->bytes, size, sizeof(size));
		format_bytes(b->unique_bytes, uniq, sizeof(uniq));
		r = sb_printf(o, "%-28s %-16s %-20s %6llu %7llu %10s %10s\n", b->name, b->node, created,
			      (unsigned long long)b->tables, (unsigned long long)b->files, size, uniq);
	}
	l->n++;
	return r ? -ENOMEM : 0;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *store = NULL;
	struct list_ctx l = {0};
	int c;
	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store = optarg; break;
		case 'J': l.json = true; break;
		case 'h':
			printf("usage: cassbackup list --store DIR [--json]\n"
			       "UNIQUE is the data only that backup holds: what deleting it would free.\n");
			return 0;
		default: return 2;
		}
	}
	if (!store)
		store = config_get("store");
	if (!store || optind < argc) {
		errorf("usage: cassbackup list --store DIR [--json]");
		return 2;
	}
	catalog *cat;
	if (open_store(store, CATALOG_READONLY, &cat) < 0)
		return 1;
	if (!l.json)
		sb_printf(&l.out, "%-28s %-16s %-20s %6s %7s %10s %10s\n", "NAME", "NODE", "CREATED",
			  "TABLES", "FILES", "SIZE", "UNIQUE");
	else
		sb_puts(&l.out, "[");
	int r = catalog_list_backups(cat, list_one, &l);
	if (r < 0) {
		errorf("cannot list backups in %s: %s", store, catalog_errmsg(cat));
		catalog_close(cat);
		sb_free(&l.out);
		return 1;
	}
	if (l.json)
		sb_puts(&l.out, l.n ? "\n]\n" : "]\n");
	fputs(l.out.buf, stdout);
	sb_free(&l.out);
	catalog_close(cat);
	return 0;
}
