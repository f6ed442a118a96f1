/* scan.c: see scan.h. */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

static const char *const system_keyspaces[] = {
	"system", "system_schema", "system_auth", "system_distributed", "system_traces",
	"system_views", "system_virtual_schema",
};

bool is_system_keyspace(const char *ks)
{
	for (size_t i = 0; i < ARRAY_SIZE(system_keyspaces); i++)
		if (strcmp(ks, system_keyspaces[i]) == 0)
			return true;
	return false;
}

/* Files in a snapshot directory that are never backed up. */
static bool excluded(const char *name)
{
	return fnmatch("*_txn_*.log", name, 0) == 0 || strncmp(name, "tmp-", 4) == 0 ||
	       strncmp(name, "tmplink-", 8) == 0;
}

/* Splits "<table>-<32 hex>" into table and id; other names are id-less tables. */
static void split_table_dir(const char *name, char **table, char **id)
{
	size_t n = strlen(name);
	if (n > 33 && name[n - 33] == '-' && strspn(name + n - 32, "0123456789abcdef") == 32) {
		*table = strndup(name, n - 33);
		*id = strdup(name + n - 32);
	} else {
		*table = strdup(name);
		*id = strdup("");
	}
}

struct names { char **v; size_t n; };

static int names_add_unique(struct names *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return 0;
	char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	if (!(s->v[s->n] = strdup(name)))
		return -ENOMEM;
	s->n++;
	return 0;
}

static void names_free(struct names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct ctx {
	const struct scan_opts *o;
	struct scan_result *res;
	struct strbuf *err;
	struct names tags;   /* other tags seen, for the error message */
	bool *filter_hit;    /* per --keyspace then per --table: matched something */
};

static bool wanted(struct ctx *c, const char *ks, const char *table)
{
	const struct scan_opts *o = c->o;
	bool any_filter = o->nkeyspaces || o->ntables, hit = false;
	for (size_t i = 0; i < o->nkeyspaces; i++) {
		if (strcmp(o->keyspaces[i], ks) == 0) {
			c->filter_hit[i] = true;
			hit = true;
		}
	}
	for (size_t i = 0; i < o->ntables; i++) {
		const char *dot = strchr(o->tables[i], '.');
		if (dot && (size_t)(dot - o->tables[i]) == strlen(ks) &&
		    strncmp(o->tables[i], ks, strlen(ks)) == 0 && strcmp(dot + 1, table) == 0) {
			c->filter_hit[o->nkeyspaces + i] = true;
			hit = true;
		}
	}
	if (any_filter)
		return hit; /* an explicit request includes system keyspaces too */
	return c->o->include_system || !is_system_keyspace(ks);
}

static struct scan_table *find_or_add_table(struct ctx *c, const char *ks, const char *table,
					    const char *id, const char *dirname, int *r)
{
	struct scan_result *res = c->res;
	for (size_t i = 0; i < res->ntables; i++) {
		struct scan_table *t = &res->tables[i];
		if (strcmp(t->keyspace, ks) || strcmp(t->table, table))
			continue;
		if (strcmp(t->table_id, id) != 0) {
			sb_printf(c->err, "table %s.%s: snapshot found in two table directories with "
				  "different ids (%s and %s); was the table dropped and re-created?",
				  ks, table, t->dirname, dirname);
			*r = -EINVAL;
			return NULL;
		}
		return t;
	}
	struct scan_table *v = realloc(res->tables, (res->ntables + 1) * sizeof(*v));
	if (!v) {
		*r = -ENOMEM;
		return NULL;
	}
	res->tables = v;
	struct scan_table *t = &v[res->ntables++];
	*t = (struct scan_table){0};
	t->keyspace = strdup(ks);
	t->table = strdup(table);
	t->table_id = strdup(id);
	t->dirname = strdup(dirname);
	if (!t->keyspace || !t->table || !t->table_id || !t->dirname) {
		*r = -ENOMEM;
		return NULL;
	}
	return t;
}

static bool same_contents(const char *a, const char *b)
{
	char *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	bool same = read_small_file(a, 1 << 20, &x, &xl) == 0 && read_small_file(b, 1 << 20, &y, &yl) == 0 &&
		    xl == yl && memcmp(x, y, xl) == 0;
	free(x);
	free(y);
	return same;
}

static int add_file(struct ctx *c, struct scan_table *t, const char *path, const char *name, int dir,
		    const struct stat *st)
{
	for (size_t i = 0; i < t->nfiles; i++) {
		if (t->files[i].dir != dir || strcmp(t->files[i].name, name) != 0)
			continue;
		/* Snapshot metadata written in more than one data directory: one copy is enough;
		 * if they differ, the first is kept. Two sstable components of one name are an
		 * error: one of them would be lost. */
		if (dir < 0 && (!strcmp(name, "manifest.json") || !strcmp(name, "schema.cql"))) {
			if (!same_contents(t->files[i].src, path))
				fprintf(stderr, "cassbackup: table %s.%s: %s differs between %s and %s; "
					"keeping the first, ignoring\n", t->keyspace, t->table, name,
					t->files[i].src, path);
			return 0;
		}
		sb_printf(c->err, "table %s.%s: %s is in two data directories (%s and %s)",
			  t->keyspace, t->table, name, t->files[i].src, path);
		return -EEXIST;
	}
	struct scan_file *v = realloc(t->files, (t->nfiles + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->files = v;
	struct scan_file *f = &v[t->nfiles++];
	*f = (struct scan_file){.dir = dir, .st = *st};
	f->name = strdup(name);
	f->src = strdup(path);
	if (!f->name || !f->src)
		return -ENOMEM;
	c->res->nfiles++;
	c->res->bytes += (uint64_t)st->st_size;
	if (dir < 0 && strcmp(name, "schema.cql") == 0 && !t->schema_cql) {
		int r = read_small_file(path, 1 << 20, &t->schema_cql, NULL);
		if (r < 0) {
			sb_printf(c->err, "cannot read %s: %s", path, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int find_dir(struct scan_table *t, const char *name, const struct stat *st)
{
	for (size_t i = 0; i < t->ndirs; i++)
		if (strcmp(t->dirs[i].name, name) == 0)
			return (int)i;
	struct scan_dir *v = realloc(t->dirs, (t->ndirs + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->dirs = v;
	v[t->ndirs] = (struct scan_dir){.name = strdup(name), .st = *st};
	if (!v[t->ndirs].name)
		return -ENOMEM;
	return (int)t->ndirs++;
}

/* Adds the regular files of dir (a snapshot dir, or an index subdirectory when idx >= 0). */
static int scan_files(struct ctx *c, struct scan_table *t, const char *dir, int idx)
{
	DIR *d = opendir(dir);
	if (!d) {
		int r = -errno;
		sb_printf(c->err, "cannot read %s: %s", dir, strerror(errno));
		return r;
	}
	struct dirent *e;
	int r = 0;
	struct strbuf p = {0};
	while (r == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || excluded(e->d_name))
			continue;
		p.len = 0;
		if ((r = sb_printf(&p, "%s/%s", dir, e->d_name)) < 0)
			break;
		struct stat st;
		if (lstat(p.buf, &st) < 0) {
			r = -errno;
			sb_printf(c->err, "cannot read %s: %s", p.buf, strerror(errno));
			break;
		}
		if (S_ISREG(st.st_mode)) {
			r = add_file(c, t, p.buf, e->d_name, idx, &st);
		} else if (S_ISDIR(st.st_mode) && idx < 0 && e->d_name[0] == '.') {
			int di = find_dir(t, e->d_name, &st);
			r = di < 0 ? di : scan_files(c, t, p.buf, di);
		}
		/* Anything else (symlinks, other directories) is not part of a snapshot. */
	}
	sb_free(&p);
	closedir(d);
	return r;
}

static int note_tags(struct ctx *c, const char *snapdir)
{
	DIR *d = opendir(snapdir);
	if (!d)
		return 0;
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d)))
		if (e->d_name[0] != '.')
			r = names_add_unique(&c->tags, e->d_name);
	closedir(d);
	return r;
}

static int scan_keyspace(struct ctx *c, const char *datadir, const char *ks, const struct stat *ks_st)
{
	struct strbuf ksdir = {0}, p = {0};
	int r = sb_printf(&ksdir, "%s/%s", datadir, ks);
	if (r < 0)
		return r;
	DIR *d = opendir(ksdir.buf);
	if (!d) {
		r = -errno;
		sb_printf(c->err, "cannot read %s: %s", ksdir.buf, strerror(errno));
		sb_free(&ksdir);
		return r;
	}
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		_cleanup_free_ char *table = NULL;
		_cleanup_free_ char *id = NULL;
		split_table_dir(e->d_name, &table, &id);
		if (!table || !id) {
			r = -ENOMEM;
			break;
		}
		struct stat tst, sst;
		p.len = 0;
		if ((r = sb_printf(&p, "%s/%s", ksdir.buf, e->d_name)) < 0)
			break;
		if (stat(p.buf, &tst) < 0 || !S_ISDIR(tst.st_mode) || !wanted(c, ks, table))
			continue;
		if ((r = sb_puts(&p, "/snapshots")) < 0)
			break;
		size_t snapdir_len = p.len;
		if ((r = sb_printf(&p, "/%s", c->o->tag)) < 0)
			break;
		if (stat(p.buf, &sst) < 0 || !S_ISDIR(sst.st_mode)) {
			p.buf[snapdir_len] = '\0';
			r = note_tags(c, p.buf);
			continue;
		}
		struct scan_table *t = find_or_add_table(c, ks, table, id, e->d_name, &r);
		if (!t)
			break;
		if (t->nfiles == 0 && t->ndirs == 0) {
			t->ks_st = *ks_st;
			t->table_st = tst;
		}
		r = scan_files(c, t, p.buf, -1);
	}
	closedir(d);
	sb_free(&p);
	sb_free(&ksdir);
	return r;
}

static int cmp_file(const void *a, const void *b)
{
	const struct scan_file *x = a, *y = b;
	if (x->dir != y->dir)
		return x->dir < y->dir ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_table(const void *a, const void *b)
{
	const struct scan_table *x = a, *y = b;
	int r = strcmp(x->keyspace, y->keyspace);
	return r ? r : strcmp(x->table, y->table);
}

int scan_snapshot(const struct scan_opts *o, struct scan_result *res, struct strbuf *err)
{
	*res = (struct scan_result){0};
	struct ctx c = {.o = o, .res = res, .err = err};
	c.filter_hit = calloc(o->nkeyspaces + o->ntables + 1, sizeof(bool));
	if (!c.filter_hit)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; r == 0 && i < o->ntables; i++) {
		if (!strchr(o->tables[i], '.')) {
			sb_printf(err, "--table %s: expected KEYSPACE.TABLE", o->tables[i]);
			r = -EINVAL;
		}
	}
	for (size_t i = 0; r == 0 && i < o->ndata_dirs; i++) {
		const char *dd = o->data_dirs[i];
		DIR *d = opendir(dd);
		if (!d) {
			r = -errno;
			sb_printf(err, "data directory %s: %s", dd, strerror(errno));
			break;
		}
		struct dirent *e;
		struct strbuf p = {0};
		while (r == 0 && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			struct stat st;
			p.len = 0;
			if ((r = sb_printf(&p, "%s/%s", dd, e->d_name)) < 0)
				break;
			if (stat(p.buf, &st) == 0 && S_ISDIR(st.st_mode))
				r = scan_keyspace(&c, dd, e->d_name, &st);
		}
		sb_free(&p);
		closedir(d);
	}
	for (size_t i = 0; r == 0 && i < o->nkeyspaces + o->ntables; i++) {
		if (!c.filter_hit[i]) {
			if (i < o->nkeyspaces)
				sb_printf(err, "keyspace %s: not found in the data directories", o->keyspaces[i]);
			else
				sb_printf(err, "table %s: not found in the data directories",
					  o->tables[i - o->nkeyspaces]);
			r = -ENOENT;
		}
	}
	if (r == 0 && res->ntables == 0) {
		r = -ENOENT;
		if (c.tags.n) {
			qsort(c.tags.v, c.tags.n, sizeof(char *), cmp_str);
			sb_printf(err, "snapshot %s: not found in the selected tables; snapshots present: ",
				  o->tag);
			for (size_t i = 0; i < c.tags.n && i < 20; i++)
				sb_printf(err, "%s%s", i ? ", " : "", c.tags.v[i]);
			if (c.tags.n > 20)
				sb_printf(err, ", ... (%zu in all)", c.tags.n);
		} else {
			sb_printf(err, "snapshot %s: not found; the selected tables have no snapshots "
				  "(take one with 'nodetool snapshot -t %s')", o->tag, o->tag);
		}
	}
	if (r == 0) {
		qsort(res->tables, res->ntables, sizeof(*res->tables), cmp_table);
		for (size_t i = 0; i < res->ntables; i++)
			qsort(res->tables[i].files, res->tables[i].nfiles, sizeof(struct scan_file),
			      cmp_file);
	}
	names_free(&c.tags);
	free(c.filter_hit);
	if (r < 0) {
		if (err->len == 0)
			sb_printf(err, "scanning data directories: %s", strerror(-r));
		scan_result_free(res);
	}
	return r;
}

void scan_result_free(struct scan_result *res)
{
	for (size_t i = 0; i < res->ntables; i++) {
		struct scan_table *t = &res->tables[i];
		for (size_t j = 0; j < t->nfiles; j++) {
			free(t->files[j].name);
			free(t->files[j].src);
		}
		for (size_t j = 0; j < t->ndirs; j++)
			free(t->dirs[j].name);
		free(t->files);
		free(t->dirs);
		free(t->keyspace);
		free(t->table);
		free(t->table_id);
		free(t->dirname);
		free(t->schema_cql);
	}
	free(res->tables);
	*res = (struct scan_result){0};
}
