/* cassbackup forget: removes backups by name or by a retention policy (restic's semantics,
 * catalog/retention.h), per node and set of tables. Forgetting deletes a backup's manifest,
 * its commit point; the bytes it alone used stay in packs until `cassbackup prune` (or
 * --prune) frees them. */
#include "cli.h"
#include "manifest.h"
#include "cluster.h"
#include "lock.h"
#include "retention.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fopts {
	const char *store, *node;
	uint64_t last, hourly, daily, weekly, monthly, yearly;
	struct duration within;
	bool dry_run, prune, json;
};

/* One backup of the store, and what forget decides for it. */
struct fitem {
	char *name, *node;
	char *ref;     /* where its manifest is (store.h) */
	char *key;     /* its node's key: host id, else node name */
	const char *group; /* the node policies group it with: key, or a key of l it joins */
	char *scope;   /* what it was made of (catalog.h); and by it, as restic by paths */
	char *host_id;
	char *previous; /* the backup an incremental follows ("" for a full one) */
	int64_t created_ns;
	int64_t time_ns; /* what retention orders it by: its snapshot's time (manifest_time_ns) */
	unsigned reasons; /* retention_reason bits; 0: remove */
	bool named;       /* to be removed: named on the command line, or kept by no rule */
	bool chosen;      /* its node is the one asked for (or none was) */
	bool grouped;     /* the policy was applied to its node's group */
};

struct flist {
	struct fitem *v;
	size_t n;
};

static int collect(void *ctx, const struct cb_backup_summary *b)
{
	struct flist *l = ctx;
	if (b->invalid)
		return 0;
	struct fitem *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	v[l->n] = (struct fitem){.name = strdup(b->name), .node = strdup(b->node ? b->node : ""),
				 .ref = strdup(b->ref), .key = strdup(b->node_key),
				 .host_id = strdup(b->host_id ? b->host_id : ""),
				 .previous = strdup(b->previous ? b->previous : ""),
				 .scope = strdup(b->scope ? b->scope : ""), .created_ns = b->created_ns,
				 .time_ns = manifest_time_ns(b->created_ns, b->snapshot_ns)};
	char canon[37]; /* a host id an older cassbackup kept in capitals is the same node's */
	if (v[l->n].key && host_id_canonical(v[l->n].key, canon) == 0)
		memcpy(v[l->n].key, canon, sizeof(canon));
	if (!v[l->n].name || !v[l->n].node || !v[l->n].ref || !v[l->n].key || !v[l->n].host_id ||
	    !v[l->n].previous || !v[l->n].scope) {
		l->n++; /* freed with the list */
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

/* A backup made without nodetool is keyed by its node name. When every backup of that node
 * name made with nodetool has one host id, it is that node's and joins its group, so that a
 * policy ages it out with them, rather than keeping it for ever as another node's last
 * backup. A node name seen with several host ids (a host replaced under its name) leaves it
 * in a group of its own, which keeps more. */
static void join_host_groups(struct flist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *one = NULL;
		bool several = false;
		for (size_t k = 0; k < l->n && !*l->v[i].host_id && !several; k++) {
			if (!*l->v[k].host_id || strcmp(l->v[k].node, l->v[i].node) != 0)
				continue;
			several = one && strcmp(one, l->v[k].key) != 0;
			one = l->v[k].key;
		}
		l->v[i].group = one && !several ? one : l->v[i].key;
	}
}

static void flist_free(struct flist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].node);
		free(l->v[i].ref);
		free(l->v[i].key);
		free(l->v[i].host_id);
		free(l->v[i].previous);
		free(l->v[i].scope);
	}
	free(l->v);
}

static int count_of(uint64_t v) { return v > INT32_MAX ? -1 : (int)v; }

static void policy_of(const struct fopts *o, struct retention_policy *p)
{
	*p = (struct retention_policy){
		.last = count_of(o->last), .hourly = count_of(o->hourly), .daily = count_of(o->daily),
		.weekly = count_of(o->weekly), .monthly = count_of(o->monthly),
		.yearly = count_of(o->yearly),
		.within = {.years = (int)o->within.years, .months = (int)o->within.months,
			   .days = (int)o->within.days,
			   .seconds = (int64_t)o->within.hours * 3600 + (int64_t)o->within.minutes * 60 +
				      o->within.seconds},
	};
}

/* Applies the policy to each node's backups (those of --node only, when given), apart for
 * each scope: a backup of one keyspace made on a day must not stand for the day's backup of
 * every table, which the daily rule would then forget. */
static int apply_policy(const struct fopts *o, struct flist *l)
{
	struct retention_policy p;
	policy_of(o, &p);
	struct retention_item *items = calloc(l->n + 1, sizeof(*items));
	size_t *idx = calloc(l->n + 1, sizeof(*idx));
	int r = items && idx ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < l->n; i++) {
		if (!l->v[i].chosen || l->v[i].grouped)
			continue;
		size_t n = 0; /* the group of l->v[i]'s node and scope */
		for (size_t k = i; k < l->n; k++)
			if (l->v[k].chosen && !strcmp(l->v[k].group, l->v[i].group) &&
			    !strcmp(l->v[k].scope, l->v[i].scope)) {
				idx[n] = k;
				items[n++] = (struct retention_item){
					.time_ns = l->v[k].time_ns, .name = l->v[k].name,
					.previous = *l->v[k].previous ? l->v[k].previous : NULL};
			}
		r = retention_apply(items, n, &p, now_ns());
		for (size_t k = 0; r == 0 && k < n; k++) {
			l->v[idx[k]].reasons = items[k].reasons;
			l->v[idx[k]].grouped = true;
			l->v[idx[k]].named = !items[k].reasons;
		}
		memset(items, 0, (l->n + 1) * sizeof(*items));
	}
	free(items);
	free(idx);
	return r;
}

static void reasons_text(unsigned reasons, struct strbuf *sb)
{
	for (unsigned b = 0; b < RETAIN_REASON_COUNT; b++)
		if (reasons & (1u << b))
			sb_printf(sb, "%s%s", sb->len ? ", " : "", retention_reason_name(1u << b));
}

static void report_json(const struct flist *l, bool policy)
{
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	json_array_begin(&j);
	for (size_t i = 0; i < l->n; i++) {
		const struct fitem *f = &l->v[i];
		if (policy ? !f->chosen : !f->named)
			continue;
		char created[64];
		format_time_utc(f->created_ns, created, sizeof(created));
		json_object_begin(&j);
		json_kv_str(&j, "name", f->name);
		json_kv_str(&j, "node", f->node);
		json_kv_str(&j, "created", created);
		format_time_utc(f->time_ns, created, sizeof(created));
		json_kv_str(&j, "dated", created); /* what the policy judged it by */
		json_kv_str(&j, "action", f->named ? "remove" : "keep");
		json_key(&j, "reasons");
		json_array_begin(&j);
		for (unsigned b = 0; b < RETAIN_REASON_COUNT; b++)
			if (f->reasons & (1u << b))
				json_str(&j, retention_reason_name(1u << b));
		json_array_end(&j);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_flush(&j, stdout);
	sb_free(&out);
}

static void report_text(const struct flist *l, bool policy, bool dry_run)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct fitem *f = &l->v[i];
		if (policy ? !f->chosen : !f->named)
			continue;
		char dated[64];
		format_time_utc(f->time_ns, dated, sizeof(dated));
		struct strbuf why = {0};
		reasons_text(f->reasons, &why);
		_cleanup_free_ char *name = cli_escape(f->name), *node = cli_escape(f->node);
		/* the date a policy judges it by (a full backup's: its snapshot's) */
		printf("%-6s %-28s %-16s %s%s%s\n",
		       f->named ? (dry_run ? "would remove" : "remove") : "keep", name ? name : "",
		       node ? node : "", dated, why.len ? "  " : "", why.len ? why.buf : "");
		sb_free(&why);
	}
}

/* Deletes the chosen backups' manifests, then drops them from the catalog. */
static int forget_named(struct store *s, const struct flist *l, unsigned *done)
{
	*done = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (!l->v[i].named)
			continue;
		struct strbuf key = {0};
		int r = store_manifest_key(l->v[i].ref, &key);
		r = r ?: cb_backend_delete(store_backend(s), key.buf);
		if (r < 0 && r != -ENOENT) {
			_cleanup_free_ char *shown = cli_escape(l->v[i].name);
			errorf("cannot forget %s: %s: %s", shown ? shown : "", key.buf ? key.buf : "",
			       *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
			sb_free(&key);
			return r;
		}
		sb_free(&key);
		(*done)++;
	}
	struct strbuf err = {0};
	int r = store_reconcile(s, 0, NULL, &err); /* the catalog follows the manifests */
	if (r < 0)
		errorf("%s", err.buf ? err.buf : "cannot update the catalog");
	sb_free(&err);
	return r;
}

/* Whether f is of the node the user named: host id, a prefix of it (4 characters or more),
 * node name or node key, as cluster.h says. */
static int cmp_ref(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Chooses the backups of the one node --node names, as every command reads --node
 * (node_backup_matches: host id or a prefix of it, node name, address): l's chosen. A --node
 * that names more than one node (two host ids) is refused in one line, CB_EXIT_USAGE, as
 * export and restore refuse it: forget would take every one of them. */
/* Chooses too the backups that join a chosen one's group (join_host_groups: made without
 * nodetool, under the node name of that host id), so that --node KEY ages them out with the
 * node's others, as forget without --node does. */
static void choose_joined(struct flist *l)
{
	for (size_t i = 0; i < l->n; i++)
		for (size_t k = 0; k < l->n && !l->v[i].chosen && !*l->v[i].host_id; k++)
			if (l->v[k].chosen && k != i && !strcmp(l->v[k].group, l->v[i].group))
				l->v[i].chosen = true;
}

static int choose_node(struct store *s, const char *node, struct flist *l)
{
	struct node_backups nl = {0};
	int r = node_backups_all(store_catalog(s), node, &nl), rc = CB_EXIT_OK;
	const char *one = NULL, *other = NULL;
	bool several = r == 0 && node_names_several(&nl, node, &one, &other);
	_cleanup_free_ char *shown = cli_escape(node), *a = cli_escape(one), *b = cli_escape(other);
	if (several) {
		errorf("--node %s names more than one node (host ids %s and %s): give the whole host id; "
		       "nothing forgotten", shown ? shown : "", a ? a : "", b ? b : "");
		rc = CB_EXIT_USAGE;
	}
	char **refs = rc == CB_EXIT_OK && r == 0 && nl.n ? malloc(nl.n * sizeof(*refs)) : NULL;
	if (r == 0 && rc == CB_EXIT_OK && nl.n && !refs)
		r = -ENOMEM;
	for (size_t i = 0; refs && i < nl.n; i++)
		refs[i] = nl.v[i].ref;
	if (refs)
		qsort(refs, nl.n, sizeof(*refs), cmp_ref);
	for (size_t i = 0; r == 0 && rc == CB_EXIT_OK && i < l->n; i++)
		l->v[i].chosen = refs && bsearch(&l->v[i].ref, refs, nl.n, sizeof(*refs), cmp_ref);
	if (r == 0 && rc == CB_EXIT_OK)
		choose_joined(l);
	free(refs);
	node_backups_free(&nl);
	if (r < 0) {
		char why[256];
		errorf("cannot read catalog: %s", catalog_why(store_catalog(s), r, why, sizeof(why)));
		rc = CB_EXIT_FAILED;
	}
	return rc;
}

/* Marks the named backups (every node's of a name, or the chosen node's); an unknown name
 * stops everything before any change. */
static int mark_names(struct store *s, const char *store, struct flist *l, char **names, int n)
{
	for (int k = 0; k < n; k++) {
		bool found = false;
		for (size_t i = 0; i < l->n; i++)
			if (l->v[i].chosen && (!strcmp(l->v[i].name, names[k]) || !strcmp(l->v[i].ref, names[k])))
				found = l->v[i].named = true;
		if (!found)
			return report_no_such_backup(s, store, names[k]);
	}
	return CB_EXIT_OK;
}

/* A backup named to go that an incremental staying follows (its base, or one between): one
 * line naming both, and CB_EXIT_USAGE; nothing is forgotten. */
static int check_followed(const struct flist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct fitem *inc = &l->v[i];
		if (inc->named || !*inc->previous)
			continue;
		for (size_t k = 0; k < l->n; k++) {
			const struct fitem *f = &l->v[k];
			if (!f->named || strcmp(f->key, inc->key) || strcmp(f->name, inc->previous))
				continue;
			_cleanup_free_ char *a = cli_escape(f->name), *b = cli_escape(inc->name),
					    *n = cli_escape(f->node);
			errorf("cannot forget %s of node %s: incremental backup %s is made on it and stays; "
			       "forget %s too; nothing forgotten", a ? a : "", n ? n : "", b ? b : "",
			       b ? b : "");
			return CB_EXIT_USAGE;
		}
	}
	return CB_EXIT_OK;
}

/* A policy decides from every backup, so it is applied only to a complete reading of
 * backups/: a manifest that cannot be read (a failed request, damage) stops forget with one
 * line naming it, nothing forgotten. */
static int read_every_manifest(struct store *s)
{
	struct strbuf err = {0};
	int r = store_reconcile(s, RECONCILE_STRICT, NULL, &err);
	if (r < 0)
		errorf("cannot apply the policy: %s; nothing forgotten",
		       err.buf ? err.buf : strerror(-r));
	sb_free(&err);
	return r;
}

static int forget(struct fopts *o, char **names, int nnames)
{
	struct store *s;
	int rc = cli_store_open(o->store, o->dry_run ? STORE_READONLY : 0, &s);
	if (rc)
		return rc;
	struct flist l = {0};
	struct store_lock *lock = NULL;
	int r = nnames ? 0 : read_every_manifest(s);
	if (r < 0) {
		store_close(s);
		return CB_EXIT_FAILED;
	}
	r = catalog_list_backups(store_catalog(s), collect, &l);
	if (r == 0)
		join_host_groups(&l);
	for (size_t i = 0; r == 0 && i < l.n; i++)
		l.v[i].chosen = !o->node;
	if (r == 0 && o->node)
		rc = choose_node(s, o->node, &l);
	if (r == 0 && rc == CB_EXIT_OK && nnames)
		rc = mark_names(s, o->store, &l, names, nnames) ?: check_followed(&l);
	else if (r == 0 && rc == CB_EXIT_OK)
		r = apply_policy(o, &l);
	if (r == 0 && rc == CB_EXIT_OK && !o->dry_run)
		r = cli_store_lock(s, o->store, false, "forget", 60, &lock);
	unsigned done = 0;
	if (r == 0 && rc == CB_EXIT_OK && !o->dry_run)
		r = forget_named(s, &l, &done);
	store_lock_release(lock);
	if (r == 0 && rc == CB_EXIT_OK) {
		if (o->json)
			report_json(&l, nnames == 0);
		else
			report_text(&l, nnames == 0, o->dry_run);
	} else if (r < 0 && r != -EBUSY && r != -EROFS && rc == CB_EXIT_OK) {
		char why[256];
		errorf("cannot forget: %s", catalog_why(store_catalog(s), r, why, sizeof(why)));
	}
	if (r < 0)
		rc = CB_EXIT_FAILED;
	flist_free(&l);
	store_close(s);
	return rc;
}

/* forget --prune: the prune command, on the same store, after the forget. */
static int run_prune(const struct fopts *o)
{
	char *argv[] = {"prune", "--store", (char *)o->store, NULL};
	fflush(stdout);
	return cmd_prune(3, argv);
}

int cmd_forget(int argc, char **argv)
{
	struct fopts o = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "keep-last", .type = OPT_U64, .value = &o.last, .arg = "N", .max = INT32_MAX,
		 .help = "keep the N newest backups"},
		{.name = "keep-hourly", .type = OPT_U64, .value = &o.hourly, .arg = "N", .max = INT32_MAX,
		 .help = "keep the newest backup of each of the last N hours that have one"},
		{.name = "keep-daily", .type = OPT_U64, .value = &o.daily, .arg = "N", .max = INT32_MAX,
		 .help = "... of each of the last N days"},
		{.name = "keep-weekly", .type = OPT_U64, .value = &o.weekly, .arg = "N", .max = INT32_MAX,
		 .help = "... of each of the last N ISO weeks"},
		{.name = "keep-monthly", .type = OPT_U64, .value = &o.monthly, .arg = "N", .max = INT32_MAX,
		 .help = "... of each of the last N months"},
		{.name = "keep-yearly", .type = OPT_U64, .value = &o.yearly, .arg = "N", .max = INT32_MAX,
		 .help = "... of each of the last N years"},
		{.name = "keep-within", .type = OPT_DURATION, .value = &o.within, .arg = "DURATION",
		 .help = "keep every backup made within DURATION (1y2m3d4h: m is months) of the newest"},
		{.name = "node", .type = OPT_STRING, .value = &o.node, .arg = "NODE",
		 .help = "only this node's backups (host id, a prefix of it, node name)"},
		{.name = "dry-run", .short_name = 'n', .type = OPT_FLAG, .value = &o.dry_run,
		 .help = "say what would be removed, remove nothing"},
		{.name = "prune", .type = OPT_FLAG, .value = &o.prune,
		 .help = "then run 'cassbackup prune', freeing what no backup uses any more"},
		{.name = "json", .type = OPT_FLAG, .value = &o.json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "forget",
		.operands = "[NAME...]",
		.min_operands = 0,
		.max_operands = -1,
		.description =
			"Removes backups: those named (every node's backup of each NAME, or with\n"
			"--node that node's), or those a policy does not keep. A policy is\n"
			"applied to each node's backups (by host id, else node name) separately, and\n"
			"apart for each set of tables they were made of (as restic groups by paths: a\n"
			"one-off backup of one keyspace is the newest of its own), newest first, with restic's rules:\n"
			"calendar periods in local time (ISO weeks), rules ORed and counted on their own,\n"
			"a rule with count left keeps the oldest backup, --keep-within measured from the\n"
			"newest backup; backups dated in the future are always kept. Each backup is\n"
			"printed as kept (with the rules that keep it) or removed. Forgetting removes a\n"
			"backup's manifest; 'cassbackup prune' frees the bytes no backup uses.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	const struct duration *w = &o.within;
	bool policy = o.last || o.hourly || o.daily || o.weekly || o.monthly || o.yearly ||
		      w->years || w->months || w->days || w->hours || w->minutes || w->seconds;
	if (first < argc && policy)
		return cli_usage_error(&cmd, "give backup names or a --keep-* policy, not both");
	if (first == argc && !policy)
		return cli_usage_error(&cmd, "give backup names or a --keep-* policy");
	if (o.prune && o.json)
		return cli_usage_error(&cmd, "--prune goes without --json (run prune --json after)");
	rc = forget(&o, argv + first, argc - first);
	return rc == CB_EXIT_OK && o.prune && !o.dry_run ? run_prune(&o) : rc;
}
