/* backup_files.c: see backup_files.h. */
#include "backup_files.h"
#include "cli.h"
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int collect_file(void *ctx, const struct cb_file_row *fr)
{
	struct vlist *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct vf *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct vf *f = &l->v[l->n];
	*f = (struct vf){.size = fr->size, .loc = fr->loc, .mode = fr->mode, .mtime_ns = fr->mtime_ns};
	memcpy(f->want, fr->loc.sha256, 32);
	f->dir = strdup(fr->dir);
	f->name = strdup(fr->name);
	l->n++; /* freed with the list, also when half copied */
	return f->dir && f->name ? 0 : -ENOMEM;
}

void vlist_free(struct vlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].dir);
		free(l->v[i].name);
		free(l->v[i].path);
		free(l->v[i].small);
		data_sums_final(&l->v[i].sums);
	}
	free(l->v);
	*l = (struct vlist){0};
}

static int collect_table(void *ctx, const struct cb_table_row *t)
{
	struct tables *ts = ctx;
	struct cb_table_row *v = realloc(ts->v, (ts->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	ts->v = v;
	struct cb_table_row *c = &v[ts->n++]; /* freed with the list, also when half copied */
	*c = (struct cb_table_row){
		.row = t->row,
		.keyspace = strdup(t->keyspace),
		.table = strdup(t->table),
		.table_id = strdup(t->table_id),
		.schema_cql = t->schema_cql ? strdup(t->schema_cql) : NULL,
	};
	return c->keyspace && c->table && c->table_id && (c->schema_cql || !t->schema_cql) ? 0 : -ENOMEM;
}

void tables_free(struct tables *ts)
{
	for (size_t i = 0; i < ts->n; i++) {
		free((char *)ts->v[i].keyspace);
		free((char *)ts->v[i].table);
		free((char *)ts->v[i].table_id);
		free((char *)ts->v[i].schema_cql);
	}
	free(ts->v);
	*ts = (struct tables){0}; /* freed twice is harmless */
}

static int summary_id(void *ctx, const struct cb_backup_summary *b)
{
	*(int64_t *)ctx = b->id;
	return 0;
}

/* The ident naming backup `name` (its ref) for the store's checks, keyspace ks, table t. */
static struct cb_file_ident ident_of(const char *name, const char *ks, const char *t)
{
	struct cb_file_ident id = {0};
	char node[65];
	snprintf(id.backup, sizeof(id.backup), "%s", name);
	if (store_ref_split(name, id.shown, node) < 0) /* shown: the name, as the user gave it */
		snprintf(id.shown, sizeof(id.shown), "%s", name);
	snprintf(id.keyspace, sizeof(id.keyspace), "%s", ks);
	snprintf(id.table, sizeof(id.table), "%s", t);
	return id;
}

static int cmp_table_name(const void *a, const void *b)
{
	const struct cb_table_row *x = *(const struct cb_table_row *const *)a;
	const struct cb_table_row *y = *(const struct cb_table_row *const *)b;
	return strcmp(x->keyspace, y->keyspace) ?: strcmp(x->table, y->table);
}

/* The catalog's tables of backup `name` are the manifest's: each named once, as many, each
 * with its id (a restore --whole-node makes its directory by it). */
static int tables_match_manifest(struct store *s, const char *name, const struct tables *ts,
				 struct strbuf *why)
{
	const void *p; /* a table named twice: only a damaged or planted catalog does that */
	int r = first_repeat(ts->v, ts->n, sizeof(*ts->v), cmp_table_name, &p);
	const struct cb_table_row *twice = p;
	if (r > 0) {
		sb_printf(why, "the catalog lists table %s.%s twice (a damaged catalog: 'cassbackup "
			  "reindex' rebuilds it)", twice->keyspace, twice->table);
		return -EUCLEAN;
	}
	for (size_t i = 0; r == 0 && i < ts->n; i++) {
		struct cb_file_ident t = ident_of(name, ts->v[i].keyspace, ts->v[i].table);
		r = store_check_table_id(s, &t, ts->v[i].table_id, why);
	}
	struct cb_file_ident id = ident_of(name, "", "");
	return r < 0 ? r : store_check_backup_tables(s, &id, ts->n, why);
}

int load_tables(struct store *s, const char *store, const char *name, struct tables *ts)
{
	catalog *cat = store_catalog(s);
	*ts = (struct tables){0};
	int r = catalog_get_backup(cat, name, summary_id, &ts->backup_id);
	if (r == 0) {
		report_no_such_backup(s, store, name);
		return -ENOENT;
	}
	char why[512];
	if (r > 0)
		r = catalog_backup_tables(cat, ts->backup_id, collect_table, ts);
	if (r < 0) {
		errorf("cannot read catalog of %s: %s", store, catalog_why(cat, r, why, sizeof(why)));
		tables_free(ts);
		return r;
	}
	struct strbuf mis = {0};
	if ((r = tables_match_manifest(s, name, ts, &mis)) < 0) {
		errorf("cannot read backup %s of %s: %s", ident_of(name, "", "").shown, store,
		       mis.buf ? mis.buf : strerror(-r));
		tables_free(ts);
	}
	sb_free(&mis);
	return r;
}

int load_files(catalog *cat, const char *store, int64_t table_row, struct vlist *l)
{
	*l = (struct vlist){0};
	int r = catalog_table_files(cat, table_row, collect_file, l);
	if (r < 0) {
		char why[512];
		errorf("cannot read catalog of %s: %s", store, catalog_why(cat, r, why, sizeof(why)));
		vlist_free(l);
	}
	return r;
}


static int cmp_file_name(const void *a, const void *b)
{
	const struct vf *x = *(const struct vf *const *)a, *y = *(const struct vf *const *)b;
	return strcmp(x->dir, y->dir) ?: strcmp(x->name, y->name);
}

int files_match_manifest(struct store *s, const char *name, const char *ks, const char *table,
			 const struct vlist *l, struct strbuf *why)
{
	struct cb_file_ident id = ident_of(name, ks, table);
	const void *p; /* a file named twice: only a damaged or planted catalog does that */
	int r = first_repeat(l->v, l->n, sizeof(*l->v), cmp_file_name, &p);
	const struct vf *twice = p;
	if (r > 0) {
		sb_printf(why, "the catalog lists %s/%s/%s%s%s twice (a damaged catalog: 'cassbackup "
			  "reindex' rebuilds it)", ks, table, twice->dir, *twice->dir ? "/" : "",
			  twice->name);
		return -EUCLEAN;
	}
	for (size_t i = 0; r == 0 && i < l->n; i++) {
		const struct vf *f = &l->v[i];
		snprintf(id.dir, sizeof(id.dir), "%s", f->dir);
		snprintf(id.name, sizeof(id.name), "%s", f->name);
		r = store_check_file_content(s, &id, f->want, f->size, why);
	}
	*id.dir = *id.name = '\0';
	return r ?: store_check_table_files(s, &id, l->n, why);
}
