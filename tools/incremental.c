/* incremental.c: see incremental.h. */
#include "incremental.h"

#include "cassandra_conf.h"
#include "cli.h"
#include "hash.h"
#include "scan.h"
#include "sstable.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- is it on ------------------------------------------------------------------------------ */

int incremental_enabled(const char *conf_dir, struct strbuf *err)
{
	struct strbuf path = {0};
	_cleanup_free_ char *yaml = NULL;
	int r = sb_printf(&path, "%s/cassandra.yaml", conf_dir);
	r = r ?: read_small_file(path.buf, 4 << 20, &yaml, NULL);
	if (r < 0) {
		sb_printf(err, "cannot read %s: %s; incremental backups need to know that "
			  "incremental_backups is on (give --cassandra-conf DIR)", path.buf, strerror(-r));
	} else {
		_cleanup_free_ char *v = yaml_scalar(yaml, "incremental_backups");
		if (!v || strcmp(v, "true") != 0) {
			sb_printf(err, "incremental_backups is %s in %s: Cassandra makes no backups/ "
				  "links to take in; set incremental_backups: true (and restart the node), "
				  "or make a full backup", v ? v : "not set (off)", path.buf);
			r = -EPERM;
		}
	}
	sb_free(&path);
	return r;
}

/* --- what it follows ----------------------------------------------------------------------- */

/* A full backup of the node that could be the base. */
struct candidate {
	char name[256], ref[CB_REF_MAX];
	int64_t created_ns;
	bool incremental, complete;
};

struct chain_ctx {
	const char *node_key, *base_name;
	struct inc_chain *ch;
	struct candidate *v; /* base_name's, else every complete full backup of the node */
	size_t n;
};

static int note_candidate(void *ctx, const struct cb_backup_summary *b)
{
	struct chain_ctx *c = ctx;
	if (b->invalid || !manifest_node_key_same(b->node_key, c->node_key))
		return 0;
	bool incremental = b->base && *b->base;
	if (c->base_name ? strcmp(b->name, c->base_name) != 0 : incremental || !b->complete)
		return 0;
	struct candidate *v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->v = v;
	v[c->n] = (struct candidate){.created_ns = b->created_ns, .incremental = incremental,
				     .complete = b->complete};
	snprintf(v[c->n].name, sizeof(v->name), "%s", b->name);
	snprintf(v[c->n].ref, sizeof(v->ref), "%s", b->ref);
	c->n++;
	return 0;
}

static int newest_first(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;
	return x->created_ns < y->created_ns ? 1 : x->created_ns > y->created_ns ? -1 : 0;
}

/* An incremental of the chain, for choosing its tip. */
struct link {
	char name[256], ref[CB_REF_MAX], previous[256];
	int64_t created_ns;
};

struct links_ctx {
	const char *node_key, *base;
	struct link *v;
	size_t n;
};

static int note_chain(void *ctx, const struct cb_backup_summary *b)
{
	struct links_ctx *c = ctx;
	/* an incomplete incremental (a pack lost) holds names whose bytes the store may not have:
	 * never one to build on, nor to judge links by */
	if (b->invalid || !b->complete || !manifest_node_key_same(b->node_key, c->node_key) || !b->base ||
	    strcmp(b->base, c->base) != 0)
		return 0;
	struct link *v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->v = v;
	v[c->n] = (struct link){.created_ns = b->created_ns};
	snprintf(v[c->n].name, sizeof(v->name), "%s", b->name);
	snprintf(v[c->n].ref, sizeof(v->ref), "%s", b->ref);
	snprintf(v[c->n].previous, sizeof(v->previous), "%s", b->previous ? b->previous : "");
	c->n++;
	return 0;
}

/* previous: the chain's tip, the incremental on base no other one follows (by the names they
 * record, not by their dates: a clock set back must not make a run skip the one before it),
 * the newest of them when two ran at once; base itself when there is none. */
static int choose_previous(catalog *cat, const char *node_key, struct inc_chain *ch)
{
	struct links_ctx c = {.node_key = node_key, .base = ch->base};
	int r = catalog_list_backups(cat, note_chain, &c);
	const struct link *tip = NULL;
	for (size_t i = 0; r == 0 && i < c.n; i++) {
		bool followed = false;
		for (size_t k = 0; !followed && k < c.n; k++)
			followed = k != i && !strcmp(c.v[k].previous, c.v[i].name);
		if (!followed && (!tip || c.v[i].created_ns > tip->created_ns))
			tip = &c.v[i];
	}
	if (tip) {
		snprintf(ch->previous, sizeof(ch->previous), "%s", tip->name);
		snprintf(ch->previous_ref, sizeof(ch->previous_ref), "%s", tip->ref);
	}
	free(c.v);
	return r;
}

bool incremental_scopes_overlap(const struct manifest_scope *a, const struct manifest_scope *b)
{
	if (a->n == 0 || b->n == 0) {
		const struct manifest_scope *all = a->n == 0 ? a : b, *other = a->n == 0 ? b : a;
		bool some = other->n == 0;
		for (size_t i = 0; !some && i < other->n; i++)
			some = all->system || !is_system_keyspace(other->v[i].keyspace);
		return some;
	}
	for (size_t i = 0; i < a->n; i++)
		for (size_t k = 0; k < b->n; k++)
			if (!strcmp(a->v[i].keyspace, b->v[k].keyspace) &&
			    (!a->v[i].table || !b->v[k].table || !strcmp(a->v[i].table, b->v[k].table)))
				return true;
	return false;
}

/* Does entry e of a listed scope hold table (ks, table) (table NULL: the whole keyspace)? */
static bool entry_holds(const struct manifest_scope_entry *e, const char *ks, const char *table)
{
	return !strcmp(e->keyspace, ks) && (!e->table || (table && !strcmp(e->table, table)));
}

bool incremental_scope_covers(const struct manifest_scope *a, const struct manifest_scope *b)
{
	if (a->n == 0) { /* every table: the system ones only with a->system */
		if (b->n == 0)
			return a->system || !b->system;
		for (size_t i = 0; i < b->n; i++)
			if (!a->system && is_system_keyspace(b->v[i].keyspace))
				return false;
		return true;
	}
	if (b->n == 0)
		return false;
	for (size_t i = 0; i < b->n; i++) {
		bool held = false;
		for (size_t k = 0; !held && k < a->n; k++)
			held = entry_holds(&a->v[k], b->v[i].keyspace, b->v[i].table);
		if (!held)
			return false;
	}
	return true;
}

/* A backup of the node made after the base that removed backups/ links this chain never took
 * in, sharing tables with it: an incremental on another base (another chain), or another full
 * backup made with --clear-incremental-links. */
struct consumer_ctx {
	const char *node_key, *base;
	const struct manifest_scope *scope;
	int64_t after;
	char name[256];
	bool incremental;
	struct manifest_scope other; /* its scope */
};

static int note_consumer(void *ctx, const struct cb_backup_summary *b)
{
	struct consumer_ctx *c = ctx;
	bool incremental = b->base && *b->base;
	if (*c->name || b->invalid || !manifest_node_key_same(b->node_key, c->node_key) ||
	    b->created_ns <= c->after || (incremental ? !strcmp(b->base, c->base)
						      : !b->clears_links || !strcmp(b->name, c->base)))
		return 0;
	struct manifest_scope other;
	int r = manifest_scope_read(b->scope, &other);
	if (r < 0)
		return r == -ENOMEM ? r : 0; /* a damaged row: check names it */
	if (incremental_scopes_overlap(&other, c->scope)) {
		snprintf(c->name, sizeof(c->name), "%s", b->name);
		c->incremental = incremental;
		c->other = other;
	} else {
		manifest_scope_free(&other);
	}
	return 0;
}

/* 0 when no other chain's incremental sharing tables was made since base; else -ENOENT
 * (-EINVAL for a base named), err says which. */
static int check_no_other_chain(catalog *cat, const char *node_key, const char *base_name,
				const struct candidate *base, const struct manifest_scope *scope,
				struct strbuf *err)
{
	struct consumer_ctx c = {.node_key = node_key, .base = base->name, .scope = scope,
				 .after = base->created_ns};
	char why[512];
	int r = catalog_list_backups(cat, note_consumer, &c);
	if (r < 0 && r != -ENOMEM)
		sb_printf(err, "cannot read the catalog: %s", catalog_why(cat, r, why, sizeof(why)));
	if (r == 0 && *c.name) {
		sb_printf(err, "%s %s (of ", c.incremental ? "incremental" : "full backup", c.name);
		sb_scope(err, &c.other);
		sb_printf(err, c.incremental ? ", on another full backup) was made after %s and took in "
			  "and removed backups/ links of tables this one is of too: on %s it would lack "
			  "their data; make a full backup of these tables first"
			  : ", --clear-incremental-links) was made after %s and removed backups/ links of "
			  "tables this one is of too: on %s it would lack their data; make a full backup "
			  "of these tables first", base->name, base->name);
		r = base_name ? -EINVAL : -ENOENT;
	}
	if (r == -ENOMEM && !err->len)
		sb_puts(err, "out of memory");
	manifest_scope_free(&c.other);
	return r;
}

/* The node's chains: each full backup incrementals were made on, with the newest of them. */
struct tip {
	struct candidate base;
	char name[256]; /* its newest incremental */
	int64_t created_ns;
	char *scope;
};

struct tips_ctx {
	const char *node_key;
	struct candidate *fulls; /* every full backup of the node, for the bases' dates */
	size_t nfulls;
	struct tip *v;
	size_t n;
};

static struct tip *tip_of(struct tips_ctx *c, const char *base)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].base.name, base))
			return &c->v[i];
	struct tip *v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	c->v = v;
	v[c->n] = (struct tip){0};
	snprintf(v[c->n].base.name, sizeof(v->base.name), "%s", base);
	return &v[c->n++];
}

static int note_tip(void *ctx, const struct cb_backup_summary *b)
{
	struct tips_ctx *c = ctx;
	if (b->invalid || !manifest_node_key_same(b->node_key, c->node_key))
		return 0;
	if (!b->base || !*b->base) {
		struct candidate *f = realloc(c->fulls, (c->nfulls + 1) * sizeof(*f));
		if (!f)
			return -ENOMEM;
		c->fulls = f;
		f[c->nfulls] = (struct candidate){.created_ns = b->created_ns};
		snprintf(f[c->nfulls].name, sizeof(f->name), "%s", b->name);
		c->nfulls++;
		return 0;
	}
	struct tip *t = tip_of(c, b->base);
	char *scope = t ? strdup(b->scope) : NULL;
	if (!scope)
		return -ENOMEM;
	if (*t->name && t->created_ns > b->created_ns) {
		free(scope);
		return 0;
	}
	free(t->scope);
	t->scope = scope;
	t->created_ns = b->created_ns;
	snprintf(t->name, sizeof(t->name), "%s", b->name);
	return 0;
}

/* The chain on t's base goes on: its base is there, and no backup since removed links of its
 * tables that it never took in (check_no_other_chain). 1, 0, or -errno. */
static int chain_goes_on(catalog *cat, const char *node_key, const struct tips_ctx *c,
			 struct tip *t, const struct manifest_scope *its)
{
	for (size_t i = 0; i < c->nfulls; i++)
		if (!strcmp(c->fulls[i].name, t->base.name))
			t->base.created_ns = c->fulls[i].created_ns;
	struct strbuf why = {0};
	int r = t->base.created_ns ? check_no_other_chain(cat, node_key, NULL, &t->base, its, &why) : -ENOENT;
	sb_free(&why);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

/* Is t's chain one that an incremental of scope takes links from: of other tables sharing
 * some, not all of them scope's when skip_covered, and going on? 1 (*its: its scope), 0,
 * -errno. */
static int takes_from(catalog *cat, const char *node_key, const struct tips_ctx *c, struct tip *t,
		      const struct manifest_scope *scope, bool skip_covered, struct manifest_scope *its)
{
	int r = manifest_scope_read(t->scope, its);
	if (r < 0)
		return r == -ENOMEM ? r : 0; /* a damaged row: check names it */
	if (manifest_scope_equal(its, scope) || !incremental_scopes_overlap(its, scope) ||
	    (skip_covered && incremental_scope_covers(scope, its)))
		r = 0;
	else
		r = chain_goes_on(cat, node_key, c, t, its);
	if (r <= 0)
		manifest_scope_free(its);
	return r;
}

int incremental_other_chain(catalog *cat, const char *node_key, const struct manifest_scope *scope,
			    bool skip_covered, char name[256], struct manifest_scope *other)
{
	struct tips_ctx c = {.node_key = node_key};
	*other = (struct manifest_scope){0};
	int r = catalog_list_backups(cat, note_tip, &c);
	const struct tip *found = NULL;
	for (size_t i = 0; r == 0 && i < c.n; i++) {
		struct manifest_scope its;
		if (found && c.v[i].created_ns <= found->created_ns)
			continue;
		if ((r = takes_from(cat, node_key, &c, &c.v[i], scope, skip_covered, &its)) > 0) {
			manifest_scope_free(other);
			*other = its;
			found = &c.v[i];
			r = 0;
		}
	}
	if (r == 0 && found)
		snprintf(name, 256, "%s", found->name);
	if (r < 0 || !found)
		manifest_scope_free(other);
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i].scope);
	free(c.v);
	free(c.fulls);
	return r < 0 ? r : found != NULL;
}

/* Does candidate b hold scope? 1, 0 (*other: its scope; *unrecorded: its manifest does not
 * say which tables it holds, so it holds no scope for sure), or -errno (err says why). */
static int same_scope(struct store *s, const struct candidate *b, const struct manifest_scope *scope,
		      struct manifest_scope *other, bool *unrecorded, struct strbuf *err)
{
	struct manifest *m = NULL;
	int r = store_read_manifest(s, b->ref, &m, NULL, err);
	if (r == -ENOENT)
		sb_printf(err, "backup %s is gone from the store", b->name);
	*unrecorded = r == 0 && m->scope_unrecorded;
	if (r == 0 && !(r = !*unrecorded && manifest_scope_equal(&m->scope, scope)))
		r = manifest_scope_copy(other, &m->scope);
	manifest_free(m);
	return r == -ENOMEM ? (sb_puts(err, "out of memory"), r) : r;
}

/* Why no candidate serves as base (newest: the scope of the newest candidate, unrecorded
 * when its manifest does not say): into err; -ENOENT or -EINVAL. */
static int no_base(const struct chain_ctx *c, const struct manifest_scope *scope,
		   const struct manifest_scope *newest, bool unrecorded, struct strbuf *err)
{
	const struct candidate *b = c->n ? &c->v[0] : NULL;
	if (!b) {
		if (c->base_name)
			sb_printf(err, "--base %s: node %s has no backup of that name", c->base_name,
				  c->node_key);
		else
			sb_printf(err, "node %s has no complete full backup to make an incremental on; "
				  "make a full one first", c->node_key);
		return -ENOENT;
	}
	if (b->incremental || !b->complete) {
		sb_printf(err, b->incremental ? "--base %s: an incremental backup; --base names a full backup"
			  : "--base %s: an incomplete backup (some of its bytes are in no pack: "
			  "cassbackup check names them); make a full backup", b->name);
		return -EINVAL;
	}
	if (unrecorded) {
		sb_printf(err, c->base_name ? "--base %s" : "the node's last full backup, %s,", b->name);
		sb_puts(err, " was made by a cassbackup that did not record which tables it is of (it "
			"may hold some only): no incremental builds on it; make a full backup");
		return c->base_name ? -EINVAL : -ENOENT;
	}
	if (c->base_name)
		sb_printf(err, "--base %s is a backup of ", b->name);
	else
		sb_printf(err, "node %s has no full backup of the tables this incremental is of; "
			  "the last one, %s, is of ", c->node_key, b->name);
	sb_scope(err, newest);
	sb_puts(err, ", this incremental of ");
	sb_scope(err, scope);
	sb_puts(err, " (on it, it would lack their older data): give the --keyspace, --table and "
		"--include-system the full backup was made with, or make a full backup of these");
	return c->base_name ? -EINVAL : -ENOENT;
}

int incremental_chain(struct store *s, const char *node_key, const char *base_name,
		      const struct manifest_scope *scope, struct inc_chain *ch, struct strbuf *err)
{
	*ch = (struct inc_chain){0};
	struct chain_ctx c = {.node_key = node_key, .base_name = base_name, .ch = ch};
	struct manifest_scope newest = {0};
	char why[512];
	catalog *cat = store_catalog(s);
	int r = catalog_list_backups(cat, note_candidate, &c);
	if (r < 0)
		sb_printf(err, "cannot read the catalog: %s", catalog_why(cat, r, why, sizeof(why)));
	if (r == 0 && c.n)
		qsort(c.v, c.n, sizeof(*c.v), newest_first);
	const struct candidate *base = NULL;
	bool usable = r == 0 && c.n && !c.v[0].incremental && c.v[0].complete;
	bool newest_unrecorded = false;
	for (size_t i = 0; usable && !base && r == 0 && i < c.n; i++) {
		struct manifest_scope other = {0};
		bool unrecorded;
		r = same_scope(s, &c.v[i], scope, &other, &unrecorded, err);
		if (r == 1) {
			base = &c.v[i];
			r = 0;
		}
		if (i == 0) { /* for the message */
			newest = other;
			newest_unrecorded = unrecorded;
		} else {
			manifest_scope_free(&other);
		}
	}
	if (r == 0 && !base)
		r = no_base(&c, scope, &newest, newest_unrecorded, err);
	if (r == 0)
		r = check_no_other_chain(cat, node_key, base_name, base, scope, err);
	if (r == 0) {
		snprintf(ch->base, sizeof(ch->base), "%s", base->name);
		snprintf(ch->previous, sizeof(ch->previous), "%s", base->name);
		snprintf(ch->previous_ref, sizeof(ch->previous_ref), "%s", base->ref);
		if ((r = choose_previous(cat, node_key, ch)) < 0)
			sb_printf(err, "cannot read the catalog: %s", catalog_why(cat, r, why, sizeof(why)));
	}
	manifest_scope_free(&newest);
	free(c.v);
	return r == -ENOMEM && !err->len ? (sb_puts(err, "out of memory"), r) : r;
}

/* --- the tree ------------------------------------------------------------------------------ */

struct inc_file {
	char *dir;  /* "" or ".<index>" */
	char *name; /* as the backup records it (renamed, for a colliding sstable) */
	uint64_t size;
	struct backup_attr a;
	unsigned char sha[32];        /* inherited */
	const struct scan_file *src;  /* NULL: inherited from previous */
};

struct inc_dir {
	char *name;
	struct backup_attr a;
};

struct inc_table {
	char *keyspace, *table, *table_id, *dirname, *schema_cql;
	struct backup_attr ka, ta;
	const struct taken_records *links; /* what the backup records of its backups/ (taken.h) */
	int64_t emptied_ms; /* previous's, then the scan's (manifest_table.emptied_ms) */
	struct inc_dir *dirs;
	size_t ndirs;
	struct inc_file *files;
	size_t nfiles, cap;
};

/* A link of backups/ whose sstable previous holds already (same name, size and mtime): its
 * bytes are committed if they hash to what previous recorded. */
struct inc_held {
	const struct scan_file *src;
	unsigned char sha[32];
};

/* A backups/ directory scanned, as it stands against previous (taken.h). */
struct inc_links_dir {
	const char *dir;                   /* the scan's */
	const struct manifest_links *rec;  /* previous's record of it, or NULL */
	enum taken_verdict verdict;
};

struct inc_plan {
	struct manifest_links *prev_links; /* previous's records of backups/ directories */
	size_t nprev_links;
	struct inc_table *tables;
	size_t ntables;
	struct inc_links_dir *dirs;
	size_t ndirs;
	struct taken_records *records; /* one per scanned table */
	size_t nrecords;
	struct inc_held *held;
	size_t nheld;
	struct inc_counts counts;
	int64_t previous_ns; /* when previous was made */
};

static struct backup_attr attr_of(const struct stat *st)
{
	return (struct backup_attr){st->st_mode & 07777, st->st_uid, st->st_gid,
				    (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec};
}

static struct inc_table *find_table(inc_plan *p, const char *ks, const char *table)
{
	for (size_t i = 0; i < p->ntables; i++)
		if (!strcmp(p->tables[i].keyspace, ks) && !strcmp(p->tables[i].table, table))
			return &p->tables[i];
	return NULL;
}

static struct inc_table *add_table(inc_plan *p, const char *ks, const char *table,
				   const char *id, const char *dirname, const char *schema_cql,
				   struct backup_attr ka, struct backup_attr ta)
{
	struct inc_table n = {.keyspace = strdup(ks), .table = strdup(table), .table_id = strdup(id),
			      .dirname = strdup(dirname), .schema_cql = schema_cql ? strdup(schema_cql) : NULL,
			      .ka = ka, .ta = ta, .emptied_ms = -1};
	bool copied = n.keyspace && n.table && n.table_id && n.dirname && (!schema_cql || n.schema_cql);
	struct inc_table *v = copied ? realloc(p->tables, (p->ntables + 1) * sizeof(*v)) : NULL;
	if (!v) {
		free(n.keyspace);
		free(n.table);
		free(n.table_id);
		free(n.dirname);
		free(n.schema_cql);
		return NULL;
	}
	p->tables = v;
	v[p->ntables] = n;
	return &v[p->ntables++];
}

static int add_dir(struct inc_table *t, const char *name, struct backup_attr a)
{
	for (size_t i = 0; i < t->ndirs; i++)
		if (!strcmp(t->dirs[i].name, name))
			return 0;
	struct inc_dir *v = realloc(t->dirs, (t->ndirs + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->dirs = v;
	v[t->ndirs] = (struct inc_dir){.name = strdup(name), .a = a};
	return v[t->ndirs++].name ? 0 : -ENOMEM;
}

static struct inc_file *add_file(struct inc_table *t, const char *dir, const char *name)
{
	if (t->nfiles == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct inc_file *v = realloc(t->files, cap * sizeof(*v));
		if (!v)
			return NULL;
		t->files = v;
		t->cap = cap;
	}
	struct inc_file *f = &t->files[t->nfiles];
	*f = (struct inc_file){.dir = strdup(dir), .name = strdup(name)};
	if (!f->dir || !f->name) {
		free(f->dir);
		free(f->name);
		return NULL;
	}
	t->nfiles++;
	return f;
}

static const struct inc_file *find_file(const struct inc_table *t, const char *dir,
					const char *name)
{
	for (size_t i = 0; i < t->nfiles; i++)
		if (!strcmp(t->files[i].dir, dir) && !strcmp(t->files[i].name, name))
			return &t->files[i];
	return NULL;
}

static struct backup_attr attr_from(const struct cb_attr *a)
{
	return (struct backup_attr){a->mode, a->uid, a->gid, a->mtime_ns};
}

/* Previous's tree, from its manifest (checked as it was parsed). */
static int load_table(inc_plan *p, const struct manifest_keyspace *ks,
		      const struct manifest_table *mt)
{
	struct strbuf dirname = {0};
	int r = sb_printf(&dirname, "%s%s%s", mt->name, *mt->id ? "-" : "", mt->id);
	struct inc_table *t = r < 0 ? NULL : add_table(p, ks->name, mt->name, mt->id, dirname.buf,
						       mt->schema_cql, attr_from(&ks->attr),
						       attr_from(&mt->attr));
	sb_free(&dirname);
	if (!t)
		return -ENOMEM;
	for (size_t d = 0; d < mt->ndirs; d++)
		if ((r = add_dir(t, mt->dirs[d].name, attr_from(&mt->dirs[d].attr))) < 0)
			return r;
	for (size_t k = 0; k < mt->nfiles; k++) {
		const struct manifest_file *mf = &mt->files[k];
		struct inc_file *f = add_file(t, mf->dir, mf->name);
		if (!f)
			return -ENOMEM;
		f->size = mf->size;
		f->a = attr_from(&mf->attr);
		memcpy(f->sha, mf->sha256, 32);
		p->counts.inherited++;
	}
	t->emptied_ms = mt->emptied_ms;
	return 0;
}

/* previous's records of backups/ directories (taken.h), copied into the plan. */
static int copy_links(inc_plan *p, const struct manifest *m)
{
	size_t n = 0;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t i = 0; i < m->keyspaces[k].ntables; i++)
			n += m->keyspaces[k].tables[i].nlinks;
	if (!(p->prev_links = calloc(n + 1, sizeof(*p->prev_links))))
		return -ENOMEM;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t i = 0; i < m->keyspaces[k].ntables; i++) {
			const struct manifest_table *mt = &m->keyspaces[k].tables[i];
			for (size_t l = 0; l < mt->nlinks; l++) {
				const struct manifest_links *from = &mt->links[l];
				struct manifest_links *to = &p->prev_links[p->nprev_links++];
				to->dir = strdup(from->dir);
				to->left = strdup(from->left);
				to->found = from->found ? strdup(from->found) : NULL;
				if (!to->dir || !to->left || (from->found && !to->found))
					return -ENOMEM; /* freed with the plan */
			}
		}
	return 0;
}

static int load_previous(struct store *s, const struct inc_chain *ch, inc_plan *p,
			 struct strbuf *err)
{
	struct manifest *m = NULL;
	int r = store_read_manifest(s, ch->previous_ref, &m, NULL, err);
	if (r == -ENOENT)
		sb_printf(err, "backup %s is gone from the store", ch->previous);
	if (r == 0)
		p->previous_ns = m->created_ns;
	for (size_t k = 0; r == 0 && k < m->nkeyspaces; k++)
		for (size_t i = 0; r == 0 && i < m->keyspaces[k].ntables; i++)
			r = load_table(p, &m->keyspaces[k], &m->keyspaces[k].tables[i]);
	r = r ?: copy_links(p, m);
	if (r == -ENOMEM)
		sb_puts(err, "out of memory");
	manifest_free(m);
	return r;
}

/* The scanned files of one sstable (same directory, same prefix), or one lone file. */
struct unit {
	const struct scan_table *t;
	size_t first, count;
};

static size_t unit_end(const struct scan_table *t, size_t i)
{
	const struct scan_file *f = &t->files[i];
	size_t pl = sstable_prefix_len(f->name), k = i + 1;
	while (pl && k < t->nfiles && t->files[k].dir == f->dir &&
	       sstable_prefix_len(t->files[k].name) == pl && !strncmp(t->files[k].name, f->name, pl))
		k++;
	return k;
}

struct toc_ctx {
	const struct unit *u;
	size_t pl;
	bool complete;
};

static int toc_component(void *ctx, const char *comp)
{
	struct toc_ctx *c = ctx;
	const struct scan_table *t = c->u->t;
	bool found = false;
	for (size_t i = c->u->first; !found && i < c->u->first + c->u->count; i++)
		found = !strcmp(t->files[i].name + c->pl, comp);
	c->complete = c->complete && found;
	return 0;
}

/* Has Cassandra linked every component of the sstable? A lone file always counts as whole. */
static int unit_complete(const struct unit *u, bool *complete)
{
	const struct scan_file *f0 = &u->t->files[u->first];
	size_t pl = sstable_prefix_len(f0->name);
	*complete = pl == 0;
	for (size_t i = u->first; pl && i < u->first + u->count; i++) {
		const struct scan_file *f = &u->t->files[i];
		if (strcmp(f->name + pl, "TOC.txt") != 0)
			continue;
		_cleanup_free_ char *toc = NULL;
		size_t len = 0;
		int r = scan_read_small(f, 1 << 20, &toc, &len);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return r;
		struct toc_ctx c = {.u = u, .pl = pl, .complete = true};
		r = toc_each(toc, len, toc_component, &c);
		*complete = r == 0 && c.complete;
		return r == -EINVAL ? 0 : r; /* not a TOC Cassandra wrote (whole): not complete */
	}
	return 0;
}

static const char *dir_name(const struct scan_table *t, const struct scan_file *f)
{
	return f->dir < 0 ? "" : t->dirs[f->dir].name;
}

/* The tree's inherited file named prefix (plen bytes) + f's component, of f's size and mtime,
 * or NULL: the file that holds f's bytes, as far as a name, size and mtime tell. */
static const struct inc_file *held_as(const struct inc_table *it, const struct unit *u,
				      const struct scan_file *f, const char *prefix, size_t plen)
{
	struct strbuf name = {0};
	const struct inc_file *have = NULL;
	if (sb_printf(&name, "%.*s%s", (int)plen, prefix, f->name + sstable_prefix_len(f->name)) == 0)
		have = find_file(it, dir_name(u->t, f), name.buf);
	sb_free(&name);
	bool same = have && !have->src && have->size == (uint64_t)f->st.st_size &&
		    have->a.mtime_ns == attr_of(&f->st).mtime_ns;
	return same ? have : NULL;
}

static bool unit_held_as(const struct inc_table *it, const struct unit *u, const char *prefix,
			 size_t plen)
{
	for (size_t i = u->first; i < u->first + u->count; i++)
		if (!held_as(it, u, &u->t->files[i], prefix, plen))
			return false;
	return true;
}

/* The sstable prefix under which the tree holds every file of the unit: another generation,
 * which an incremental gave the unit when the tree held its names with other bytes (state 2
 * below); the run was then killed before it removed the links. NULL when there is none. */
static const char *renamed_holder(const struct inc_table *it, const struct unit *u, size_t *plen)
{
	const struct scan_file *f0 = &u->t->files[u->first];
	size_t pl = sstable_prefix_len(f0->name);
	for (size_t i = 0; pl && i < it->nfiles; i++) {
		const struct inc_file *c = &it->files[i];
		size_t cpl = sstable_prefix_len(c->name);
		if (cpl && !c->src && c->size == (uint64_t)f0->st.st_size &&
		    c->a.mtime_ns == attr_of(&f0->st).mtime_ns && !strcmp(c->name + cpl, f0->name + pl) &&
		    !strcmp(c->dir, dir_name(u->t, f0)) && unit_held_as(it, u, c->name, cpl)) {
			*plen = cpl;
			return c->name;
		}
	}
	return NULL;
}

/* Where the unit stands against the tree: 0 new, 1 held already (every file by name, size and
 * mtime), 2 some of its names in the tree but not all held (other bytes under a name, or a
 * component the tree lacks beside ones it holds): taken whole under a fresh generation, since
 * a name twice in a table is a manifest that does not read back. */
static int unit_state(const struct inc_table *it, const struct unit *u)
{
	bool all_held = true, named = false;
	for (size_t i = u->first; i < u->first + u->count; i++) {
		const struct scan_file *f = &u->t->files[i];
		const struct inc_file *have = it ? find_file(it, dir_name(u->t, f), f->name) : NULL;
		all_held = all_held && have && held_as(it, u, f, f->name, sstable_prefix_len(f->name));
		named = named || have;
	}
	return all_held ? 1 : named ? 2 : 0;
}

/* The largest numeric generation in directory dir of the tree and of the scanned table. */
static uint64_t max_generation(const struct inc_table *it, const struct scan_table *t,
			       const char *dir)
{
	uint64_t m = 0;
	for (size_t i = 0; it && i < it->nfiles; i++)
		if (!strcmp(it->files[i].dir, dir)) {
			uint64_t g = sstable_numeric_generation(it->files[i].name);
			m = g > m ? g : m;
		}
	for (size_t i = 0; i < t->nfiles; i++)
		if (!strcmp(dir_name(t, &t->files[i]), dir)) {
			uint64_t g = sstable_numeric_generation(t->files[i].name);
			m = g > m ? g : m;
		}
	return m;
}

/* Adds a unit's files to the tree, under a fresh generation when gen > 0. */
static int take_unit(inc_plan *p, struct inc_table *it, const struct unit *u, uint64_t gen)
{
	for (size_t i = u->first; i < u->first + u->count; i++) {
		const struct scan_file *f = &u->t->files[i];
		struct strbuf name = {0};
		int r = gen ? sstable_with_generation(f->name, gen, &name) : sb_puts(&name, f->name);
		struct inc_file *nf = r == 0 ? add_file(it, dir_name(u->t, f), name.buf) : NULL;
		sb_free(&name);
		if (!nf)
			return r < 0 ? r : -ENOMEM;
		nf->src = f;
		nf->size = (uint64_t)f->st.st_size;
		nf->a = attr_of(&f->st);
		p->counts.files++;
		p->counts.bytes += nf->size;
	}
	return 0;
}

static void free_files(struct inc_table *t)
{
	for (size_t k = 0; k < t->nfiles; k++) {
		free(t->files[k].dir);
		free(t->files[k].name);
	}
	for (size_t d = 0; d < t->ndirs; d++)
		free(t->dirs[d].name);
	free(t->files);
	free(t->dirs);
	t->files = NULL;
	t->dirs = NULL;
	t->nfiles = t->cap = t->ndirs = 0;
}

/* The table was emptied since previous (dropped and made again under another id or its own,
 * or truncated): the backup shows it as the node has it, made of what was flushed since. */
static int reset_table(inc_plan *p, struct inc_table *it, const struct scan_table *t)
{
	p->counts.inherited -= it->nfiles;
	free_files(it);
	free(it->dirname);
	free(it->schema_cql);
	it->schema_cql = NULL;
	free(it->table_id);
	it->table_id = strdup(t->table_id);
	it->dirname = strdup(t->dirname);
	it->ka = attr_of(&t->ks_st);
	it->ta = attr_of(&t->table_st);
	return it->table_id && it->dirname ? 0 : -ENOMEM;
}

/* Notes the unit's files as held by the tree's files of prefix (plen bytes), or of their own
 * names when prefix is NULL: removed once they hash to those files' SHA-256. */
static int note_held(inc_plan *p, const struct inc_table *it, const struct unit *u,
		     const char *prefix, size_t plen)
{
	struct inc_held *v = realloc(p->held, (p->nheld + u->count) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->held = v;
	for (size_t i = u->first; i < u->first + u->count; i++) {
		const struct scan_file *f = &u->t->files[i];
		const struct inc_file *h = prefix ? held_as(it, u, f, prefix, plen)
					 : held_as(it, u, f, f->name, sstable_prefix_len(f->name));
		v[p->nheld].src = f;
		memcpy(v[p->nheld++].sha, h->sha, 32); /* held: checked by the caller */
	}
	p->counts.held += u->count;
	return 0;
}

/* Was the table emptied since previous (a drop or truncate snapshot newer than it)? By the
 * snapshot previous recorded seeing (the node's clock against itself: a clock stepped since
 * cannot make an older one look new), else, for a manifest that does not say, by previous's
 * date. */
static bool emptied_since(const inc_plan *p, const struct inc_table *it, const struct scan_table *t)
{
	return it->emptied_ms >= 0 ? t->emptied_ms > it->emptied_ms
				   : t->emptied_ms > p->previous_ns / 1000000;
}

static int merge_files(inc_plan *p, const struct scan_table *t);

static int merge_table(inc_plan *p, const struct scan_table *t)
{
	int r = merge_files(p, t);
	struct inc_table *it = find_table(p, t->keyspace, t->table);
	/* the newest seen, by this backup or before: a snapshot cleared since, or one in a
	 * directory not looked at, must not make an older one look new again */
	if (r == 0 && it && !strcmp(it->table_id, t->table_id) && t->emptied_ms > it->emptied_ms)
		it->emptied_ms = t->emptied_ms;
	return r;
}

/* Was every file of unit u flushed by recorded_ms (an emptying of the table that previous
 * recorded: a truncate or drop whose snapshot may have been cleared since, so that the scan no
 * longer sees it)? Such files are data the table no longer has. */
static bool flushed_by(const struct unit *u, int64_t recorded_ms)
{
	if (recorded_ms <= 0)
		return false;
	for (size_t k = u->first; k < u->first + u->count; k++) {
		const struct timespec *m = &u->t->files[k].st.st_mtim;
		if ((int64_t)m->tv_sec * 1000 + m->tv_nsec / 1000000 > recorded_ms)
			return false;
	}
	return true;
}

/* previous's tree of the table, and the files of backups/ it lacks. */
static int merge_files(inc_plan *p, const struct scan_table *t)
{
	struct inc_table *it = find_table(p, t->keyspace, t->table);
	/* the newest emptying of this table (its id) that previous recorded */
	int64_t recorded = it && !strcmp(it->table_id, t->table_id) ? it->emptied_ms : -1;
	int r;
	/* emptied since previous: made again under another id, or under its own, or truncated
	 * (emptied_since): previous's files are data it no longer has */
	bool again = it && (strcmp(it->table_id, t->table_id) != 0 || emptied_since(p, it, t));
	if (again && (r = reset_table(p, it, t)) < 0)
		return r;
	for (size_t i = 0; i < t->nfiles;) {
		struct unit u = {.t = t, .first = i, .count = unit_end(t, i) - i};
		i += u.count;
		/* Held first, whole or not: a run killed among its removals leaves part of an
		 * sstable's links, each holding bytes the backup it made has (removal checks them
		 * against it); taken as still being linked, they would stay for good. */
		int state = unit_state(it, &u);
		if (state == 1 && it) { /* held needs a tree: it is never NULL here */
			if ((r = note_held(p, it, &u, NULL, 0)) < 0)
				return r;
			continue;
		}
		/* Taken under a fresh generation by a run killed before its removals (whole, or
		 * the links it left): held under that generation, never taken twice. */
		size_t plen = 0;
		const char *as = state == 2 ? renamed_holder(it, &u, &plen) : NULL;
		if (as) {
			if ((r = note_held(p, it, &u, as, plen)) < 0)
				return r;
			continue;
		}
		if (flushed_by(&u, recorded)) { /* left out, and in place */
			p->counts.before_emptied += u.count;
			continue;
		}
		bool complete;
		r = unit_complete(&u, &complete);
		if (r < 0)
			return r;
		if (!complete) {
			p->counts.incomplete++;
			continue;
		}
		if (!it && !(it = add_table(p, t->keyspace, t->table, t->table_id, t->dirname,
					    t->schema_cql, attr_of(&t->ks_st), attr_of(&t->table_st))))
			return -ENOMEM;
		for (size_t d = 0; d < t->ndirs; d++)
			if ((r = add_dir(it, t->dirs[d].name, attr_of(&t->dirs[d].st))) < 0)
				return r;
		uint64_t gen = 0;
		if (state == 2) {
			const char *dir = dir_name(t, &t->files[u.first]);
			gen = max_generation(it, t, dir) + 1;
			p->counts.renamed++;
		}
		if ((r = take_unit(p, it, &u, gen)) < 0)
			return r;
	}
	return 0;
}

/* previous's record of backups/ directory dir, or NULL. */
static const struct manifest_links *previous_record(const inc_plan *p, const char *dir)
{
	return taken_record(p->prev_links, p->nprev_links, dir);
}

/* previous's record of another directory in state now (the same directory under another
 * path: a data directory given another way, through a symbolic link), or NULL. */
static const struct manifest_links *recorded_elsewhere(const inc_plan *p,
							const struct links_taken *now)
{
	for (size_t i = 0; now->n && i < p->nprev_links; i++)
		if (taken_judge(&p->prev_links[i], now) == TAKEN_AS_LEFT)
			return &p->prev_links[i];
	return NULL;
}

/* Why an incremental may not go on from directory ld of table t (in state now), into err. */
static void say_refused(const inc_plan *p, const struct scan_table *t, const struct inc_links_dir *ld,
			const struct links_taken *now, const struct inc_chain *ch,
			const char *store_id, struct strbuf *err)
{
	const struct manifest_links *other = ld->rec ? NULL : recorded_elsewhere(p, now);
	sb_puts(err, "table ");
	sb_escape(err, t->keyspace);
	sb_puts(err, ".");
	sb_escape(err, t->table);
	if (other) {
		sb_printf(err, ": its backups/ (%s) is as %s recorded it under another path, %s: give "
			  "the data directories as that backup was given them", ld->dir, ch->previous,
			  other->dir);
		return;
	}
	if (now->n == 0) {
		sb_printf(err, ": %s/" TAKEN_FILE " is gone since %s (removed by hand?): links removed "
			  "from it meanwhile cannot be told", ld->dir, ch->previous);
	} else if (!ld->rec && taken_is_format1(now)) {
		sb_printf(err, ": its backups/ (%s) holds the record of an older cassbackup, which %s "
			  "does not follow", ld->dir, ch->previous);
	} else {
		sb_printf(err, ": links were removed from its backups/ (%s) since %s, by ", ld->dir,
			  ch->previous);
		taken_describe_by(now, store_id, err);
	}
	sb_printf(err, ": on %s this incremental would lack them; make a full backup of these "
		  "tables first", ch->base);
}

/* Were links removed from t's backups/ directory d since previous (taken.h)? Notes how it
 * stands in the plan; 0, or -EXDEV with err saying which table and directory, and by whom. */
static int check_dir(inc_plan *p, const struct scan_table *t, size_t d, const struct inc_chain *ch,
		     const char *store_id, struct strbuf *err)
{
	const struct links_taken *now = &t->backups_taken[d];
	struct inc_links_dir *ld = &p->dirs[p->ndirs++];
	*ld = (struct inc_links_dir){.dir = t->backups_dirs[d],
				     .rec = previous_record(p, t->backups_dirs[d])};
	ld->verdict = taken_judge(ld->rec, now);
	if (ld->verdict != TAKEN_SINCE)
		return 0;
	say_refused(p, t, ld, now, ch, store_id, err);
	return -EXDEV;
}

static int check_taken(inc_plan *p, const struct scan_result *scan, const struct inc_chain *ch,
		       const char *store_id, struct strbuf *err)
{
	size_t n = 0;
	for (size_t i = 0; i < scan->ntables; i++)
		n += scan->tables[i].nbackups_dirs;
	if (!(p->dirs = calloc(n + 1, sizeof(*p->dirs)))) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	int r = 0;
	for (size_t i = 0; r == 0 && i < scan->ntables; i++)
		for (size_t d = 0; r == 0 && d < scan->tables[i].nbackups_dirs; d++)
			r = check_dir(p, &scan->tables[i], d, ch, store_id, err);
	return r;
}

int incremental_plan(struct store *s, const struct inc_chain *ch, const struct scan_result *scan,
		     inc_plan **out, struct strbuf *err)
{
	inc_plan *p = calloc(1, sizeof(*p));
	*out = NULL;
	if (!p) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	int r = load_previous(s, ch, p, err);
	for (size_t i = 0; r == 0 && i < scan->ntables; i++)
		if ((r = merge_table(p, &scan->tables[i])) < 0)
			sb_printf(err, "cannot read %s/backups: %s", scan->tables[i].dirname, strerror(-r));
	if (r == 0)
		r = check_taken(p, scan, ch, store_get_config(s)->id, err);
	if (r < 0) {
		incremental_plan_free(p);
		return r;
	}
	*out = p;
	return 0;
}

void incremental_counts(const inc_plan *p, struct inc_counts *c)
{
	*c = p->counts;
}

/* Which backups/ directories of t (removes[d]) hold links this backup removes: those it
 * takes in (it's files read from t) and those previous holds. */
static void note_removals(const inc_plan *p, const struct inc_table *it, const struct scan_table *t,
			  bool *removes)
{
	for (size_t d = 0; d < t->nbackups_dirs; d++) {
		for (size_t k = 0; !removes[d] && k < it->nfiles; k++)
			removes[d] = it->files[k].src && scan_file_below(it->files[k].src, t->backups_dirs[d]);
		for (size_t h = 0; !removes[d] && h < p->nheld; h++)
			removes[d] = scan_file_below(p->held[h].src, t->backups_dirs[d]);
	}
}

int incremental_record_links(inc_plan *p, const struct scan_result *scan, const char *by,
			    struct strbuf *err)
{
	if (scan->ntables && !(p->records = calloc(scan->ntables, sizeof(*p->records)))) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < scan->ntables; i++) {
		const struct scan_table *t = &scan->tables[i];
		struct inc_table *it = find_table(p, t->keyspace, t->table);
		if (!it || strcmp(it->table_id, t->table_id) != 0)
			continue; /* not in the backup: none of its links go */
		p->nrecords = i + 1;
		bool *removes = calloc(t->nbackups_dirs + 1, sizeof(*removes));
		int r = removes ? 0 : -ENOMEM;
		if (r == 0)
			note_removals(p, it, t, removes);
		r = r ?: taken_records_make(t->backups_dirs, t->backups_taken, t->nbackups_dirs, by,
					    removes, &p->records[i]);
		free(removes);
		if (r < 0) {
			sb_printf(err, "%s", r == -ENOMEM ? "out of memory" : "backup name too long "
				  "to record in backups/");
			return r;
		}
		it->links = &p->records[i];
	}
	return 0;
}

/* Runs step (taken_records_ready or _mark) over the plan's records; err says what failed. */
static int each_record(const inc_plan *p, int (*step)(const struct taken_records *, const char **),
		       struct strbuf *err)
{
	for (size_t i = 0; i < p->nrecords; i++) {
		const char *dir = NULL;
		int r = step(&p->records[i], &dir);
		if (r < 0) {
			sb_printf(err, "cannot record in %s/" TAKEN_FILE " that this backup takes its "
				  "links: %s", dir, taken_strerror(r));
			return r;
		}
	}
	return 0;
}

int incremental_ready_links(const inc_plan *p, struct strbuf *err)
{
	return each_record(p, taken_records_ready, err);
}

int incremental_mark_links(const inc_plan *p, struct strbuf *err)
{
	return each_record(p, taken_records_mark, err);
}

/* The backups/ directory of table t that f is in, as the plan has it, or NULL. */
static const struct inc_links_dir *dir_of(const inc_plan *p, const struct scan_file *f)
{
	for (size_t i = 0; i < p->ndirs; i++)
		if (scan_file_below(f, p->dirs[i].dir))
			return &p->dirs[i];
	return NULL;
}

/* Nothing new: may the links previous holds in directory ld go? Only where previous removed
 * links itself (its record says what it found): it marked the directory, or, killed before,
 * its mark is made now; elsewhere a removal would be one no manifest records. 1, 0, or
 * -errno. */
static int settle_dir(const struct inc_links_dir *ld)
{
	if (!ld || !ld->rec || !ld->rec->found)
		return 0;
	if (ld->verdict == TAKEN_AS_LEFT)
		return 1;
	struct links_taken found, left;
	if (ld->verdict != TAKEN_AS_FOUND || taken_parse(ld->rec->found, &found) < 0 ||
	    taken_parse(ld->rec->left, &left) < 0)
		return 0;
	int r = taken_mark(ld->dir, &found, &left);
	return r < 0 ? r : 1;
}

int incremental_settle_held(inc_plan *p, uint64_t *left, struct strbuf *err)
{
	int *go = calloc(p->ndirs + 1, sizeof(*go)); /* per directory: 0 not settled, 1 go, 2 stay */
	size_t kept = 0;
	int r = go ? 0 : -ENOMEM;
	if (!go)
		sb_puts(err, "out of memory");
	*left = 0;
	for (size_t i = 0; r == 0 && i < p->nheld; i++) {
		const struct inc_links_dir *ld = dir_of(p, p->held[i].src);
		int *g = ld ? &go[ld - p->dirs] : NULL;
		if (g && !*g && (r = settle_dir(ld)) >= 0)
			*g = r == 1 ? 1 : 2;
		if (r < 0) {
			sb_printf(err, "cannot record in %s/" TAKEN_FILE " that the previous backup "
				  "took its links: %s", ld->dir, taken_strerror(r));
			break;
		}
		if (g && *g == 1)
			p->held[kept++] = p->held[i];
		else
			(*left)++;
	}
	free(go);
	if (r == 0)
		p->nheld = kept;
	return r < 0 ? r : 0;
}

void incremental_plan_free(inc_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->ntables; i++) {
		struct inc_table *t = &p->tables[i];
		free_files(t);
		free(t->keyspace);
		free(t->table);
		free(t->table_id);
		free(t->dirname);
		free(t->schema_cql);
	}
	for (size_t i = 0; i < p->nrecords; i++)
		taken_records_free(&p->records[i]);
	free(p->records);
	free(p->dirs);
	manifest_links_free(p->prev_links, p->nprev_links);
	free(p->tables);
	free(p->held);
	free(p);
}

/* --- writing -------------------------------------------------------------------------------- */

/* Reads one new file into the backup: the file opened must be the file scanned. */
static int write_new(backup_writer *w, unsigned ti, unsigned di, const struct inc_file *f,
		     struct strbuf *err)
{
	int fd = scan_open_file(f->src);
	if (fd < 0) {
		sb_printf(err, "cannot read %s: %s", f->src->src, strerror(-fd));
		return fd;
	}
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && (st.st_ino != f->src->st.st_ino || st.st_dev != f->src->st.st_dev ||
		       st.st_size != f->src->st.st_size ||
		       attr_of(&st).mtime_ns != attr_of(&f->src->st).mtime_ns)) {
		sb_printf(err, "cannot back up %s: the file changed while it was being read", f->src->src);
		r = -ESTALE;
	}
	struct backup_file bf = {.name = f->name, .size = f->size, .attr = f->a, .source = f->src->src};
	if (r == 0 && (r = backup_writer_add_file(w, ti, di, &bf, fd)) < 0)
		sb_puts(err, backup_writer_errmsg(w));
	close(fd);
	return r;
}

static int dir_index(const struct inc_table *t, const char *dir, unsigned *di)
{
	if (!*dir) {
		*di = BACKUP_TABLE_DIR;
		return 0;
	}
	for (size_t d = 0; d < t->ndirs; d++)
		if (!strcmp(t->dirs[d].name, dir)) {
			*di = (unsigned)d;
			return 0;
		}
	return -EINVAL;
}

int incremental_write(backup_writer *w, const inc_plan *p, struct strbuf *err)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < p->ntables; i++) {
		const struct inc_table *t = &p->tables[i];
		uint64_t bytes = 0;
		for (size_t k = 0; k < t->nfiles; k++)
			bytes += t->files[k].src ? t->files[k].size : 0;
		struct backup_table bt = {.keyspace = t->keyspace, .table = t->table,
					  .table_id = t->table_id, .dirname = t->dirname,
					  .schema_cql = t->schema_cql, .keyspace_attr = t->ka,
					  .table_attr = t->ta, .bytes = bytes,
					  .links = t->links ? t->links->v : NULL,
					  .nlinks = t->links ? t->links->n : 0,
					  .emptied_ms = t->emptied_ms};
		unsigned ti, di;
		r = backup_writer_add_table(w, &bt, &ti);
		for (size_t d = 0; r == 0 && d < t->ndirs; d++)
			r = backup_writer_add_dir(w, ti, t->dirs[d].name, &t->dirs[d].a, &di);
		if (r < 0) {
			sb_puts(err, backup_writer_errmsg(w));
			return r;
		}
		for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
			const struct inc_file *f = &t->files[k];
			if ((r = dir_index(t, f->dir, &di)) < 0) {
				sb_printf(err, "file %s/%s: no such directory", f->dir, f->name);
				break;
			}
			if (f->src) {
				r = write_new(w, ti, di, f, err);
			} else {
				struct strbuf src = {0};
				sb_printf(&src, "%s/%s/%s%s%s", t->keyspace, t->table, f->dir,
					  *f->dir ? "/" : "", f->name);
				struct backup_file bf = {.name = f->name, .size = f->size, .attr = f->a,
							 .source = src.buf ? src.buf : f->name};
				if ((r = backup_writer_add_stored(w, ti, di, &bf, f->sha)) < 0)
					sb_puts(err, backup_writer_errmsg(w));
				sb_free(&src);
			}
		}
	}
	return r;
}

/* Does f (still the file scanned) hold the bytes sha names? 1, 0, or -errno. */
static int holds(const struct scan_file *f, const unsigned char sha[32])
{
	int fd = scan_open_file(f);
	if (fd < 0)
		return fd;
	struct stat st;
	unsigned char got[32];
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && (st.st_ino != f->st.st_ino || st.st_dev != f->st.st_dev))
		r = -ESTALE;
	r = r ?: sha256_fd(fd, (uint64_t)f->st.st_size, got, NULL, NULL, NULL);
	close(fd);
	return r < 0 ? r : memcmp(got, sha, 32) == 0;
}

/* Is a blob of sha and size in a pack of the store (its catalog, reconciled when the store was
 * opened)? 0, -ENODATA when not, or -errno. */
static int in_store(catalog *cat, const unsigned char sha[32], uint64_t size)
{
	int64_t id;
	int r = catalog_find_blob(cat, sha, size, &id);
	return r < 0 ? r : r == 1 ? 0 : -ENODATA;
}

int incremental_remove_links(catalog *cat, const inc_plan *p, uint64_t *removed,
			     void (*report)(void *ctx, const char *path, int err), void *ctx)
{
	int first = 0;
	*removed = 0;
	for (size_t i = 0; i < p->nheld; i++) {
		const struct scan_file *f = p->held[i].src;
		int r = in_store(cat, p->held[i].sha, (uint64_t)f->st.st_size);
		r = r ?: holds(f, p->held[i].sha);
		if (r == 1 && (r = scan_remove_file(f, &f->st)) == 0) {
			(*removed)++;
			continue;
		}
		r = r == 0 ? -EILSEQ : r; /* other bytes than previous holds: left */
		if (report)
			report(ctx, p->held[i].src->src, r);
		if (!first && r != -ENOENT)
			first = r;
	}
	for (size_t i = 0; i < p->ntables; i++)
		for (size_t k = 0; k < p->tables[i].nfiles; k++) {
			const struct inc_file *f = &p->tables[i].files[k];
			if (!f->src)
				continue;
			int r = scan_remove_file(f->src, &f->src->st);
			if (r == 0) {
				(*removed)++;
				continue;
			}
			if (report)
				report(ctx, f->src->src, r);
			if (!first && r != -ENOENT)
				first = r;
		}
	return first;
}

/* --- a full backup clears backups/ --------------------------------------------------------- */

/* Does a backup of the store hold f's bytes? Surely when f is the inode of a file the snapshot
 * backed up (Cassandra linked the same sstable into snapshots/ and backups/); else by its
 * SHA-256, read now, used by a backup the catalog knows. 1, 0, or -errno. */
static int bytes_held(catalog *cat, const struct scan_result *snap, const struct scan_file *f)
{
	for (size_t i = 0; i < snap->ntables; i++)
		for (size_t k = 0; k < snap->tables[i].nfiles; k++) {
			const struct stat *s = &snap->tables[i].files[k].st;
			if (s->st_ino == f->st.st_ino && s->st_dev == f->st.st_dev)
				return 1;
		}
	int fd = scan_open_file(f);
	if (fd < 0)
		return fd;
	unsigned char sha[32];
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && (st.st_ino != f->st.st_ino || st.st_dev != f->st.st_dev))
		r = -ESTALE;
	r = r ?: sha256_fd(fd, (uint64_t)f->st.st_size, sha, NULL, NULL, NULL);
	close(fd);
	int64_t id; /* used by a backup: a blob in a pack no backup uses is prune's to delete */
	return r < 0 ? r : catalog_find_used_blob(cat, sha, (uint64_t)f->st.st_size, &id);
}

/* Is f in one of the directories c marked? */
static bool in_marked(const struct links_cleared *c, const struct scan_file *f)
{
	for (size_t i = 0; i < c->nmarked; i++)
		if (scan_file_below(f, c->marked[i]))
			return true;
	return false;
}

int incremental_clear_links(catalog *cat, const struct links_cleared *c, uint64_t *removed,
			    uint64_t *kept, void (*report)(void *ctx, const char *path, int err),
			    void *ctx)
{
	int first = 0;
	*removed = *kept = 0;
	for (size_t i = 0; i < c->links->ntables; i++)
		for (size_t k = 0; k < c->links->tables[i].nfiles; k++) {
			const struct scan_file *f = &c->links->tables[i].files[k];
			/* flushed since (the next incremental's), or where no mark records this
			 * removal: left */
			if (attr_of(&f->st).mtime_ns >= c->snapshot_ns || !in_marked(c, f)) {
				(*kept)++;
				continue;
			}
			int r = bytes_held(cat, c->snap, f);
			if (r == 0) {
				(*kept)++;
				continue;
			}
			if (r == 1)
				r = scan_remove_file(f, &f->st);
			if (r == 0) {
				(*removed)++;
				continue;
			}
			(*kept)++;
			if (report)
				report(ctx, f->src, r);
			if (!first && r != -ENOENT)
				first = r;
		}
	return first;
}
