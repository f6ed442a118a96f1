/* cluster.c: see cluster.h. */
#include "cluster.h"

#include "cassandra_conf.h"
#include "cli.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *dup_s(const char *s)
{
	return strdup(s ? s : "");
}

static void node_backup_free(struct node_backup *b)
{
	char *s[] = {b->ref, b->name, b->node, b->node_key, b->host_id, b->cluster, b->datacenter,
		     b->rack, b->address, b->snapshot_tag, b->cassandra_version, b->schema_version,
		     b->tokens, b->base, b->previous};
	for (size_t i = 0; i < ARRAY_SIZE(s); i++)
		free(s[i]);
	manifest_ring_free(b->ring, b->nring);
	manifest_scope_free(&b->scope);
}

void node_backups_free(struct node_backups *l)
{
	for (size_t i = 0; i < l->n; i++)
		node_backup_free(&l->v[i]);
	free(l->v);
	*l = (struct node_backups){0};
}

/* A copy of summary s into b. A ring that does not parse (a damaged catalog) is left empty. */
static int copy_summary(const struct cb_backup_summary *s, struct node_backup *b)
{
	*b = (struct node_backup){
		.ref = dup_s(s->ref), .name = dup_s(s->name), .node = dup_s(s->node),
		.node_key = dup_s(s->node_key), .host_id = dup_s(s->host_id),
		.cluster = dup_s(s->cluster), .datacenter = dup_s(s->datacenter), .rack = dup_s(s->rack),
		.snapshot_tag = dup_s(s->snapshot_tag), .cassandra_version = dup_s(s->cassandra_version),
		.schema_version = dup_s(s->schema_version), .tokens = dup_s(s->tokens),
		.base = dup_s(s->base), .previous = dup_s(s->previous),
		.created_ns = s->created_ns, .tables = s->tables, .files = s->files, .bytes = s->bytes,
		.unique_bytes = s->unique_bytes, .new_bytes = s->new_bytes,
		.stored_bytes = s->stored_bytes, .complete = s->complete,
	};
	char why[256];
	if (manifest_ring_parse(s->ring && *s->ring ? s->ring : "[]", &b->ring, &b->nring, why,
				sizeof(why)) == -ENOMEM ||
	    (s->scope && manifest_scope_read(s->scope, &b->scope) == -ENOMEM))
		return -ENOMEM;
	const char *addr = "";
	for (size_t i = 0; i < b->nring; i++)
		if (*b->host_id && !strcmp(b->ring[i].host_id, b->host_id))
			addr = b->ring[i].address;
	b->address = strdup(addr);
	bool ok = b->ref && b->name && b->node && b->node_key && b->host_id && b->cluster &&
		  b->datacenter && b->rack && b->address && b->snapshot_tag && b->cassandra_version &&
		  b->schema_version && b->tokens && b->base && b->previous;
	return ok ? 0 : -ENOMEM;
}

static int push(struct node_backups *l, const struct cb_backup_summary *s)
{
	struct node_backup *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	int r = copy_summary(s, &v[l->n]);
	l->n++; /* freed with the list, also when half copied */
	return r;
}

struct collect {
	struct node_backups *l;
	const char *node;
};

static int on_summary(void *ctx, const struct cb_backup_summary *s)
{
	struct collect *c = ctx;
	if (s->invalid) {
		errorf("%s, not listed", s->invalid);
		return 0;
	}
	int r = push(c->l, s);
	if (r == 0 && c->node && !node_backup_matches(&c->l->v[c->l->n - 1], c->node))
		node_backup_free(&c->l->v[--c->l->n]);
	return r;
}

int node_backups_all(catalog *cat, const char *node, struct node_backups *out)
{
	struct collect c = {out, node};
	return catalog_list_backups(cat, on_summary, &c);
}

static int on_named(void *ctx, const struct cb_backup_summary *s)
{
	return push(ctx, s);
}

int node_backups_named(catalog *cat, const char *name, struct node_backups *out)
{
	return catalog_find_backups(cat, name, on_named, out);
}

bool node_backup_matches(const struct node_backup *b, const char *node)
{
	size_t n = strlen(node);
	return !strcasecmp(b->host_id, node) || !strcmp(b->node, node) || !strcmp(b->node_key, node) ||
	       (*b->address && !strcmp(b->address, node)) ||
	       (n >= 4 && !strncasecmp(b->host_id, node, n)); /* host ids: in either case */
}

int cluster_backup_narrow(const struct cluster_backup *g, const char *node, struct cluster_backup *out)
{
	*out = *g;
	out->v = calloc(g->n, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = 0;
	out->bytes = 0;
	out->complete = true;
	for (size_t i = 0; i < g->n; i++) {
		const struct node_backup *b = g->v[i];
		if (!node_backup_matches(b, node))
			continue;
		out->first_ns = out->n == 0 || b->created_ns < out->first_ns ? b->created_ns : out->first_ns;
		out->last_ns = out->n == 0 || b->created_ns > out->last_ns ? b->created_ns : out->last_ns;
		out->v[out->n++] = b;
		out->bytes += b->bytes;
		out->complete = out->complete && b->complete;
	}
	if (out->n == 0) {
		free(out->v);
		out->v = NULL;
	}
	return out->n > 0;
}

char *node_backup_label(const struct node_backup *b)
{
	struct strbuf s = {0};
	sb_escape(&s, b->node);
	if (*b->address || *b->host_id) {
		sb_puts(&s, " (");
		if (*b->address) {
			sb_escape(&s, b->address);
			sb_puts(&s, *b->host_id ? ", " : "");
		}
		if (*b->host_id) {
			sb_puts(&s, "host id ");
			sb_escape(&s, b->host_id);
		}
		sb_puts(&s, ")");
	}
	return s.buf ? s.buf : strdup("");
}

/* --- grouping ---------------------------------------------------------------------------- */

static bool same_node(const struct manifest_ring_node *a, const struct manifest_ring_node *b)
{
	if (*a->host_id && *b->host_id)
		return !strcmp(a->host_id, b->host_id);
	return *a->address && !strcmp(a->address, b->address);
}

static const struct node_backup *backup_of(const struct cluster_backup *g,
					   const struct manifest_ring_node *x)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct node_backup *b = g->v[i];
		if (*x->host_id ? !strcmp(x->host_id, b->host_id)
				: (*x->address && !strcmp(x->address, b->address)))
			return b;
	}
	return NULL;
}

static int cmp_ring(const void *a, const void *b)
{
	const struct ring_entry *x = a, *y = b;
	return strcmp(x->node->datacenter, y->node->datacenter) ?:
	       strcmp(x->node->address, y->node->address) ?: strcmp(x->node->host_id, y->node->host_id);
}

/* The union of the rings g's node backups recorded, each node marked done or missing. */
static int merge_rings(struct cluster_backup *g)
{
	size_t cap = 0;
	for (size_t i = 0; i < g->n; i++)
		cap += g->v[i]->nring;
	g->ring = calloc(cap + 1, sizeof(*g->ring));
	if (!g->ring)
		return -ENOMEM;
	for (size_t i = 0; i < g->n; i++)
		for (size_t k = 0; k < g->v[i]->nring; k++) {
			const struct manifest_ring_node *x = &g->v[i]->ring[k];
			bool seen = false;
			for (size_t j = 0; j < g->nring && !seen; j++)
				seen = same_node(g->ring[j].node, x);
			if (!seen)
				g->ring[g->nring++] = (struct ring_entry){x, NULL};
		}
	if (g->nring)
		qsort(g->ring, g->nring, sizeof(*g->ring), cmp_ring);
	for (size_t j = 0; j < g->nring; j++)
		if (!(g->ring[j].done = backup_of(g, g->ring[j].node)))
			g->missing++;
	return 0;
}

static struct cluster_backup *group_of(struct cluster_backups *out, const struct node_backup *b,
				       bool by_cluster)
{
	for (size_t i = 0; i < out->n; i++)
		if (!strcmp(out->v[i].name, b->name) && (!by_cluster || !strcmp(out->v[i].cluster, b->cluster)))
			return &out->v[i];
	struct cluster_backup *v = realloc(out->v, (out->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	out->v = v;
	v[out->n] = (struct cluster_backup){.name = b->name, .cluster = b->cluster,
					    .first_ns = b->created_ns, .last_ns = b->created_ns,
					    .complete = true};
	return &v[out->n++];
}

int cluster_backups_group(const struct node_backups *l, bool by_cluster, struct cluster_backups *out)
{
	*out = (struct cluster_backups){0};
	for (size_t i = 0; i < l->n; i++) {
		const struct node_backup *b = &l->v[i];
		struct cluster_backup *g = group_of(out, b, by_cluster);
		const struct node_backup **v = g ? realloc(g->v, (g->n + 1) * sizeof(*v)) : NULL;
		if (!v)
			return -ENOMEM;
		g->v = v;
		v[g->n++] = b;
		g->done = g->n;
		g->bytes += b->bytes;
		g->complete = g->complete && b->complete;
		g->first_ns = b->created_ns < g->first_ns ? b->created_ns : g->first_ns;
		g->last_ns = b->created_ns > g->last_ns ? b->created_ns : g->last_ns;
	}
	for (size_t i = 0; i < out->n; i++)
		if (merge_rings(&out->v[i]) < 0)
			return -ENOMEM;
	return 0;
}

void cluster_backups_free(struct cluster_backups *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->v[i].v);
		free(g->v[i].ring);
	}
	free(g->v);
	*g = (struct cluster_backups){0};
}

/* --- picking ----------------------------------------------------------------------------- */

/* Are the backups of l --node matches all of one node, under two spellings of its host id? */
bool node_names_several(const struct node_backups *l, const char *node, const char **a, const char **b)
{
	*a = *b = NULL;
	for (size_t i = 0; i < l->n; i++) {
		const char *id = l->v[i].host_id;
		if (!*id || !node_backup_matches(&l->v[i], node))
			continue;
		if (!*a)
			*a = id;
		else if (strcasecmp(*a, id) != 0) /* older stores: a host id in capitals */
			*b = id;
		if (*b)
			return true;
	}
	return false;
}

static bool one_node_twice(const struct node_backups *l, const char *node)
{
	const char *first = NULL;
	for (size_t i = 0; i < l->n; i++) {
		if (!node_backup_matches(&l->v[i], node))
			continue;
		if (first && !manifest_node_key_same(first, l->v[i].node_key))
			return false;
		first = l->v[i].node_key;
	}
	return true;
}

/* "backup NAME has N node backups: a (...), b (...)" + tail, as one error line. */
static void say_several(const char *name, const struct node_backups *l, const char *tail)
{
	struct strbuf m = {0};
	sb_puts(&m, "backup ");
	sb_escape(&m, name);
	sb_printf(&m, " has %zu node backup%s: ", l->n, l->n == 1 ? "" : "s");
	for (size_t i = 0; i < l->n; i++) {
		_cleanup_free_ char *label = node_backup_label(&l->v[i]);
		sb_printf(&m, "%s%s", i ? ", " : "", label ? label : "");
	}
	sb_puts(&m, tail);
	errorf("%s", m.buf ? m.buf : "out of memory");
	sb_free(&m);
}

static int push_ref(struct strv *refs, const char *ref)
{
	if (strv_push(refs, ref) == 0)
		return 0;
	errorf("out of memory");
	return CB_EXIT_FAILED;
}

int cluster_pick(struct store *st, const char *store, const char *name, const char *node, bool all,
		 struct strv *refs)
{
	catalog *cat = store_catalog(st);
	struct node_backups l = {0};
	int r = node_backups_named(cat, name, &l), rc = 0;
	if (r < 0) {
		char why[512];
		_cleanup_free_ char *shown = cli_escape(store);
		errorf("cannot read catalog of %s: %s", shown ? shown : "", catalog_why(cat, r, why, sizeof(why)));
		node_backups_free(&l);
		return CB_EXIT_FAILED;
	}
	if (l.n == 0) {
		node_backups_free(&l);
		return report_no_such_backup(st, store, name);
	}
	size_t matched = 0, at = 0;
	for (size_t i = 0; node && i < l.n; i++)
		if (node_backup_matches(&l.v[i], node)) {
			matched++;
			at = i;
		}
	struct strbuf tail = {0};
	/* a node backup of name that could not be read: every node's is not known, nor whether
	 * --node's is that one */
	if ((!node || matched == 0) && (rc = report_unreadable_backup(st, store, name)) != 0) {
		node_backups_free(&l);
		return rc;
	}
	if (node && matched == 0) {
		sb_puts(&tail, "; none is of --node ");
		sb_escape(&tail, node);
		say_several(name, &l, tail.buf ? tail.buf : "");
		rc = CB_EXIT_MISSING;
	} else if (node && matched > 1) {
		sb_puts(&tail, "; --node ");
		sb_escape(&tail, node);
		sb_puts(&tail, one_node_twice(&l, node) ? " names one node's backups under two spellings of "
			"its host id (an older cassbackup's): give one by its ref, NAME/NODE"
			: " names more than one of them: give the whole host id");
		say_several(name, &l, tail.buf ? tail.buf : "");
		rc = CB_EXIT_USAGE;
	} else if (node) {
		rc = push_ref(refs, l.v[at].ref);
	} else if (l.n > 1 && !all) {
		say_several(name, &l, "; choose one with --node (host id, node name or address)");
		rc = CB_EXIT_USAGE;
	} else {
		for (size_t i = 0; rc == 0 && i < l.n; i++)
			rc = push_ref(refs, l.v[i].ref);
	}
	sb_free(&tail);
	node_backups_free(&l);
	return rc;
}

int cluster_shown(catalog *cat, const char *ref, struct strv *out)
{
	char name[256], node[65];
	if (store_ref_split(ref, name, node) < 0)
		return strv_push(out, ref);
	struct node_backups l = {0};
	int n = node_backups_named(cat, name, &l);
	node_backups_free(&l);
	return strv_push(out, n == 1 ? name : ref);
}

int cluster_open_named(const char *store, const char *name, struct store **st,
		      struct node_backups *nb)
{
	int r = cli_store_open(store, STORE_READONLY, st);
	if (r != 0)
		return r;
	catalog *cat = store_catalog(*st);
	r = node_backups_named(cat, name, nb);
	if (r < 0) {
		char why[512];
		_cleanup_free_ char *shown = cli_escape(store);
		errorf("cannot read catalog of %s: %s", shown ? shown : "", catalog_why(cat, r, why, sizeof(why)));
		return CB_EXIT_FAILED;
	}
	return r == 0 ? report_no_such_backup(*st, store, name) : 0;
}

/* The first %-conversion of template that strftime(3) does not know ("%41", "%Q"), as its
 * length from '%' to the character that ends it; 0 when every one is known. glibc leaves an
 * unknown one in place, padded to its width, so it would make a name nobody asked for. */
static size_t unknown_conversion(const char *template, const char **at)
{
	static const char known[] = "aAbBcCdDeFgGhHIjklmMnprRsStTuUVwWxXyYzZ+%";
	for (const char *p = template; (p = strchr(p, '%')); ) {
		const char *q = p + 1;
		q += strspn(q, "_-0^#");
		q += strspn(q, "0123456789");
		if (*q == 'E' || *q == 'O')
			q++;
		if (!*q || !strchr(known, *q)) {
			*at = p;
			return (size_t)(q - p) + (*q ? 1 : 0);
		}
		p = q + 1;
	}
	return 0;
}

int cluster_name_expand(const char *template, const struct duration *period, time_t now, char *out,
			size_t n, struct strbuf *why)
{
	const char *at;
	size_t bad = unknown_conversion(template, &at);
	if (bad) {
		sb_printf(why, "'%.*s' is no strftime conversion (write %%%% for a %%)", (int)bad, at);
		return -EINVAL;
	}
	if (period->years || period->months) {
		sb_puts(why, "months and years are not slots of fixed length; use days, hours or minutes");
		return -EINVAL;
	}
	int64_t p = (int64_t)period->days * 86400 + (int64_t)period->hours * 3600 +
		    (int64_t)period->minutes * 60 + (int64_t)period->seconds;
	if (p > 0)
		now -= (time_t)(((int64_t)now % p + p) % p);
	struct tm tm;
	size_t len = gmtime_r(&now, &tm) ? strftime(out, n, template, &tm) : 0;
	if (len == 0 || len >= n - 1 || len > 255) {
		sb_puts(why, "makes no name (empty, or over 255 bytes)");
		return -EINVAL;
	}
	return 0;
}

int cluster_local_host_id(const char *nodetool, char **host_id)
{
	*host_id = NULL;
	struct strv a = {0};
	char path[4096], *out = NULL, *dc = NULL, *rack = NULL;
	int r = nodetool_argv(&a, nodetool) ?: strv_push(&a, "info");
	if (r == 0 && exec_find(a.v[0], path, sizeof(path)) == 0 &&
	    exec_capture(a.v, 60, &out, NULL) == 0 && out)
		nodetool_parse_info(out, host_id, &dc, &rack);
	strv_free(&a);
	free(out);
	free(dc);
	free(rack);
	return r;
}
