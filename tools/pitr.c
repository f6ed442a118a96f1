/* pitr.c: point-in-time restore (pitr.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pitr.h"
#include "cassandra_conf.h"
#include "commitlog.h"
#include "exec.h"
#include "hash.h"
#include "scan.h"
#include "store.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MARKER "# cassbackup-point-in-time: "
#define TMP_PREFIX ".cassbackup-tmp-"

int pitr_parse_time(const char *s, int64_t *ms, struct strbuf *err)
{
	struct tm tm = {0};
	int n = 0, frac = 0, fn = 0;
	/* digits exactly where the shape has them (sscanf alone takes " 5" and "+5" for a field) */
	static const char shape[] = "dddd:dd:dd dd:dd:dd.ddd";
	size_t len = strlen(s);
	bool shaped = len == 19 || len == 23;
	for (size_t i = 0; shaped && i < len; i++)
		shaped = shape[i] == 'd' ? isdigit((unsigned char)s[i]) != 0 : s[i] == shape[i];
	if (!shaped || sscanf(s, "%4d:%2d:%2d %2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19) {
		sb_printf(err, "expected yyyy:MM:dd HH:mm:ss[.SSS] (GMT), as Cassandra's restore_point_in_time");
		return -EINVAL;
	}
	if (s[n] == '.' && sscanf(s + n + 1, "%3d%n", &frac, &fn) == 1 && fn == 3)
		n += 4;
	if (s[n] != 0 || tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59) {
		sb_printf(err, "expected yyyy:MM:dd HH:mm:ss[.SSS] (GMT), as Cassandra's restore_point_in_time");
		return -EINVAL;
	}
	int mday = tm.tm_mday;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != mday) { /* timegm normalises 02:30 to 03:02 */
		sb_printf(err, "no such day");
		return -EINVAL;
	}
	*ms = (int64_t)t * 1000 + frac;
	return 0;
}

static void format_gmt(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t k = strftime(out, n, "%Y:%m:%d %H:%M:%S", &tm);
	snprintf(out + k, n - k, ".%03d", (int)(ms % 1000));
}

/* ---- plan ------------------------------------------------------------------------------- */

/* A full backup of the node made at or before the time. */
struct candidate {
	char name[256], ref[CB_REF_MAX], node[256], node_key[256];
	int64_t created_ns;
};

struct choose {
	struct pitr *p;
	int64_t created_ns;
	bool found, given_found;
	struct candidate *v; /* the first pass: every full backup made at or before the time */
	size_t n;
	bool incrementals; /* the second pass: the chosen full backup's incrementals */
	char base[256];    /* the chosen full backup */
	char node[256];    /* its node's name: p->node_name once the search is done (matching
			    * goes on by what was given, a host id maybe, meanwhile) */
};

static int consider_backup(void *ctx, const struct cb_backup_summary *b)
{
	struct choose *c = ctx;
	if (b->invalid || !b->complete)
		return 0;
	bool this_node = !strcmp(b->node, c->p->node_name) ||
			 !strcasecmp(b->node_key, c->p->node_name); /* a host id: older stores' in capitals */
	if (c->p->backup) {
		if (strcmp(b->name, c->p->backup) == 0 && this_node) {
			c->given_found = true;
			snprintf(c->p->node_name, sizeof(c->p->node_name), "%s", b->node);
			snprintf(c->p->backup_name, sizeof(c->p->backup_name), "%s", b->name);
			snprintf(c->p->backup_ref, sizeof(c->p->backup_ref), "%s", b->ref);
			snprintf(c->p->backup_node, sizeof(c->p->backup_node), "%s", b->node_key);
			c->created_ns = b->created_ns;
		}
		return 0;
	}
	if (!this_node || b->created_ns / 1000000 > c->p->time_ms)
		return 0;
	/* first the full backups before the time (choose_full), then the chosen one's last
	 * incremental before it */
	bool incremental = b->base && *b->base;
	if (incremental != c->incrementals || (incremental && strcmp(b->base, c->base) != 0))
		return 0;
	if (!incremental) {
		struct candidate *v = realloc(c->v, (c->n + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		v[c->n] = (struct candidate){.created_ns = b->created_ns};
		snprintf(v[c->n].name, sizeof(v->name), "%s", b->name);
		snprintf(v[c->n].ref, sizeof(v->ref), "%s", b->ref);
		snprintf(v[c->n].node, sizeof(v->node), "%s", b->node);
		snprintf(v[c->n].node_key, sizeof(v->node_key), "%s", b->node_key);
		c->n++;
		return 0;
	}
	if (!c->found || b->created_ns >= c->created_ns) { /* oldest first: the last one wins */
		snprintf(c->node, sizeof(c->node), "%s", b->node);
		snprintf(c->p->backup_name, sizeof(c->p->backup_name), "%s", b->name);
		snprintf(c->p->backup_ref, sizeof(c->p->backup_ref), "%s", b->ref);
		snprintf(c->p->backup_node, sizeof(c->p->backup_node), "%s", b->node_key);
		c->created_ns = b->created_ns;
		c->found = true;
	}
	return 0;
}

/* The tables of the selection, "ks.table", for -Dcassandra.replayList (which takes only
 * qualified table names). */
static int replay_list(struct pitr *p, const struct manifest *m)
{
	if (selection_is_empty(p->sel))
		return 0;
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t i = 0; i < m->keyspaces[k].ntables; i++) {
			const char *ks = m->keyspaces[k].name, *t = m->keyspaces[k].tables[i].name;
			if (!selection_matches(p->sel, ks, t))
				continue;
			char *s = NULL;
			if (asprintf(&s, "%s.%s", ks, t) < 0 || ptrv_push(&p->replay_list, &p->nreplay, s) < 0) {
				free(s);
				return -ENOMEM;
			}
		}
	return 0;
}

/* Does a backup of scope s hold every table sel selects (every table: none selected; with the
 * system keyspaces for a whole node)? */
static bool scope_covers(const struct manifest_scope *s, const struct selection *sel,
			 bool whole_node)
{
	if (selection_is_empty(sel))
		return s->n == 0 && (s->system || !whole_node);
	for (size_t i = 0; i < sel->n; i++) {
		const struct selection_entry *e = &sel->v[i];
		bool held = s->n == 0 && (s->system || !is_system_keyspace(e->keyspace));
		for (size_t k = 0; !held && k < s->n; k++)
			held = !strcmp(s->v[k].keyspace, e->keyspace) &&
			       (!s->v[k].table || (e->table && !strcmp(s->v[k].table, e->table)));
		if (!held)
			return false;
	}
	return true;
}

/* Does m's tree hold table ks.table? */
static bool tree_holds(const struct manifest *m, const char *ks, const char *table)
{
	for (size_t k = 0; k < m->nkeyspaces; k++)
		for (size_t t = 0; !strcmp(m->keyspaces[k].name, ks) && t < m->keyspaces[k].ntables; t++)
			if (!strcmp(m->keyspaces[k].tables[t].name, table))
				return true;
	return false;
}

/* Does backup m hold every table restored? A manifest that does not record its scope (from
 * before scopes) may hold some tables only: it holds the tables named one by one that its tree
 * holds, never a whole keyspace nor every table. */
static bool backup_covers(const struct manifest *m, const struct selection *sel, bool whole_node)
{
	if (!m->scope_unrecorded)
		return scope_covers(&m->scope, sel, whole_node);
	bool held = !selection_is_empty(sel);
	for (size_t i = 0; held && i < sel->n; i++)
		held = sel->v[i].table && tree_holds(m, sel->v[i].keyspace, sel->v[i].table);
	return held;
}

static int newest_first(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;
	return x->created_ns < y->created_ns ? 1 : x->created_ns > y->created_ns ? -1 : 0;
}

/* The newest candidate whose scope covers the tables restored: a full backup of fewer tables
 * (one keyspace, made since the nightly one) would leave the others out, and the replay
 * from its snapshot on would miss their older writes. 0, or the exit status (said). */
static int choose_full(struct choose *c, struct store *s)
{
	struct pitr *p = c->p;
	if (c->n) /* qsort's base must not be NULL, even for 0 elements */
		qsort(c->v, c->n, sizeof(*c->v), newest_first);
	struct strbuf err = {0}, what = {0};
	int r = 0;
	for (size_t i = 0; r == 0 && !c->found && i < c->n; i++) {
		struct manifest *m = NULL;
		r = store_read_manifest(s, c->v[i].ref, &m, NULL, &err);
		if (r == 0 && backup_covers(m, p->sel, p->whole_node)) {
			const struct candidate *b = &c->v[i];
			snprintf(c->node, sizeof(c->node), "%s", b->node);
			snprintf(p->backup_name, sizeof(p->backup_name), "%s", b->name);
			snprintf(p->backup_ref, sizeof(p->backup_ref), "%s", b->ref);
			snprintf(p->backup_node, sizeof(p->backup_node), "%s", b->node_key);
			c->created_ns = b->created_ns;
			c->found = true;
		} else if (r == 0 && i == 0 && m->scope_unrecorded) {
			sb_puts(&what, "tables it does not record (made by a cassbackup before scopes)");
		} else if (r == 0 && i == 0) {
			sb_scope(&what, &m->scope);
		}
		if (r < 0)
			errorf("cannot read backup %s: %s", c->v[i].name, err.buf ? err.buf : strerror(-r));
		manifest_free(m);
	}
	if (r == 0 && !c->found && c->n) {
		errorf("node %s has no complete full backup of the tables restored made at or before %s "
		       "GMT; the last one, %s, is of %s: restore those with --keyspace or --table, or "
		       "name an older backup of them", p->node_name, p->time, c->v[0].name,
		       what.buf ? what.buf : "");
		r = -ENOENT;
	}
	sb_free(&err);
	sb_free(&what);
	return r == -ENOENT ? CB_EXIT_MISSING : r < 0 ? CB_EXIT_FAILED : 0;
}

static int choose_backup(struct pitr *p, struct store *s)
{
	struct choose c = {.p = p};
	catalog *cat = store_catalog(s);
	int r = catalog_list_backups(cat, consider_backup, &c);
	if (r < 0) {
		char why[512];
		errorf("cannot read catalog of %s: %s", store_location(s), catalog_why(cat, r, why, sizeof(why)));
		free(c.v);
		return CB_EXIT_FAILED;
	}
	int rc = p->backup ? 0 : choose_full(&c, s);
	free(c.v);
	if (rc)
		return rc;
	if (p->backup && !c.given_found)
		return report_no_such_backup(s, store_location(s), p->backup);
	if (p->backup && c.created_ns / 1000000 > p->time_ms) {
		errorf("backup %s was made after %s; a point-in-time restore starts from a backup made before",
		       p->backup, p->time);
		return CB_EXIT_USAGE;
	}
	if (!p->backup && !c.found) {
		errorf("node %s has no complete backup made at or before %s GMT in %s", p->node_name, p->time,
		       store_location(s));
		return CB_EXIT_MISSING;
	}
	if (!p->backup) {
		snprintf(c.base, sizeof(c.base), "%s", p->backup_name);
		c.incrementals = true;
		if ((r = catalog_list_backups(cat, consider_backup, &c)) < 0) {
			char why[512];
			errorf("cannot read catalog of %s: %s", store_location(s),
			       catalog_why(cat, r, why, sizeof(why)));
			return CB_EXIT_FAILED;
		}
	}
	/* given by host id, the node's segments are still under its name (commitlogs/NODE) */
	if (!p->backup)
		snprintf(p->node_name, sizeof(p->node_name), "%s", c.node);
	struct manifest *m = NULL;
	struct strbuf err = {0};
	r = store_read_manifest(s, p->backup_ref, &m, NULL, &err);
	if (r == 0) {
		snprintf(p->host_id, sizeof(p->host_id), "%s", m->host_id ? m->host_id : "");
		r = replay_list(p, m);
	}
	r = r ?: commitlog_window_start(s, m, &p->from, &err);
	if (r < 0) {
		errorf("cannot read backup %s: %s", p->backup_name, err.buf ? err.buf : strerror(-r));
	}
	manifest_free(m);
	sb_free(&err);
	return r < 0 ? CB_EXIT_FAILED : 0;
}

/* Adds m to the chosen, once per segment: a store may hold one segment under two names
 * (archived before names were checked, CommitLog-0-ID.log beside CommitLog-7-ID.log), and a
 * replay of both would apply its mutations twice (counters). The name Cassandra gives it wins. */
static void choose_once(struct commitlog_list *l, const struct commitlog_meta *m)
{
	char canon[64];
	snprintf(canon, sizeof(canon), "CommitLog-%" PRId32 "-%" PRId64 ".log", m->version, m->id);
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].id == m->id && l->v[i].version == m->version) {
			if (!strcmp(m->name, canon))
				l->v[i] = *m;
			return;
		}
	l->v[l->n++] = *m;
}

/* Is segment m the backup's node's? Segments are kept by node name (commitlogs/NODE), which a
 * node that replaced another may have taken over: when both the backup and the segment know
 * their host id, it must be the same. */
static bool same_node(const struct pitr *p, const struct commitlog_meta *m)
{
	return !*p->host_id || !*m->host_id || !strcasecmp(p->host_id, m->host_id); /* older stores: any case */
}

/* The node's segments into *cand: those under commitlogs/<node name>/ of its host id (all read:
 * an unreadable one fails the plan, a replay that misses it loses its writes), and those of its
 * host id under other node names. *other_host counts those under its name that record another
 * host id, in the window. 0, or CB_EXIT_FAILED after one line. */
static int node_segments(struct pitr *p, struct store *s, struct commitlog_list *cand,
			 unsigned *other_host)
{
	struct commitlog_list own = {0}, moved = {0};
	struct strbuf err = {0};
	int r = commitlog_list(store_backend(s), p->node_name, true, &own, &err);
	if (r == 0 && *p->host_id)
		r = commitlog_list_host_elsewhere(store_backend(s), p->node_name, p->host_id, &moved, &err);
	if (r == 0 && moved.bad)
		printf("note: %u commitlog segment%s under other node names cannot be read, so whether %s "
		       "of host id %s is not known: %s\n", moved.bad, moved.bad == 1 ? "" : "s",
		       moved.bad == 1 ? "it is" : "they are", p->host_id, err.buf ? err.buf : "");
	if (r == 0 && !(cand->v = calloc(own.n + moved.n + 1, sizeof(*cand->v))))
		r = -ENOMEM;
	if (r < 0)
		errorf("cannot read the commitlog segments of node %s: %s", p->node_name,
		       err.len ? err.buf : strerror(-r));
	for (size_t i = 0; r == 0 && i < own.n; i++) {
		if (same_node(p, &own.v[i]))
			cand->v[cand->n++] = own.v[i];
		else if ((own.v[i].archived_ms >= p->from.ms || own.v[i].id > p->from.seen_id) &&
			 (own.v[i].id <= p->time_ms || own.v[i].archived_ms <= p->time_ms))
			(*other_host)++; /* in the window by its own times */
	}
	for (size_t i = 0; r == 0 && i < moved.n; i++)
		cand->v[cand->n++] = moved.v[i];
	commitlog_list_free(&own);
	commitlog_list_free(&moved);
	sb_free(&err);
	return r < 0 ? CB_EXIT_FAILED : 0;
}

/* A note when none of the node's segments (cand) was archived after the point in time: the
 * writes made since the newest one's archive, up to the time, are in the segment Cassandra
 * was writing then, which the store does not hold yet. */
static void note_tail_not_archived(const struct pitr *p, const struct commitlog_list *cand)
{
	int64_t newest = INT64_MIN;
	for (size_t i = 0; i < cand->n; i++)
		if (cand->v[i].archived_ms > newest)
			newest = cand->v[i].archived_ms;
	if (newest > p->time_ms)
		return;
	char when[48], at[48];
	format_gmt(p->time_ms, when, sizeof(when));
	if (!cand->n) {
		printf("note: the store holds no commitlog segment of node %s: writes after the backup, up "
		       "to %s, are not replayed (is archive-commitlog set up as its archive_command?)\n",
		       p->node_name, when);
		return;
	}
	format_gmt(newest, at, sizeof(at));
	printf("note: no commitlog segment of node %s archived after %s is in the store yet: writes "
	       "made from %s (the newest one's archive) up to then are in the segment Cassandra was "
	       "writing, and are replayed only by a restore made once it is archived\n",
	       p->node_name, when, at);
}

static int by_id(const void *a, const void *b)
{
	int64_t x = ((const struct commitlog_meta *)a)->id, y = ((const struct commitlog_meta *)b)->id;
	return (x > y) - (x < y);
}

/* When segment m was last written: its mtime, or its archive when earlier (a clock that
 * stepped) or when the mtime was not kept. */
static int64_t finished_ms(const struct commitlog_meta *m)
{
	return m->mtime_ms > 0 && m->mtime_ms < m->archived_ms ? m->mtime_ms : m->archived_ms;
}

/* The chosen segments (p->segments), put in id order, have none missing between two of one
 * run of the node (commitlog_next_gap) before the point in time: a replay would skip the
 * missing ones' writes and apply the later ones. (Segments missing after the segment written
 * at the point hold only writes Cassandra skips.) 0, or CB_EXIT_FAILED after one line. */
static int refuse_a_gap(const struct pitr *p)
{
	struct commitlog_list *l = p->segments;
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), by_id);
	if (p->ignore_gaps)
		return 0;
	ssize_t i = -1;
	do
		i = commitlog_next_gap(l->v, l->n, (size_t)(i + 1));
	while (i >= 0 && finished_ms(&l->v[i]) >= p->time_ms);
	if (i < 0)
		return 0;
	const struct commitlog_meta *a = &l->v[i], *b = &l->v[i + 1];
	bool many = b->id - a->id > 2;
	char ids[64], at[48];
	if (many)
		snprintf(ids, sizeof(ids), "segments %" PRId64 " to %" PRId64 " are", a->id + 1, b->id - 1);
	else
		snprintf(ids, sizeof(ids), "segment %" PRId64 " is", a->id + 1);
	format_gmt(finished_ms(a), at, sizeof(at));
	errorf("commitlog %s missing from the store for node %s, between %s and %s of one run of "
	       "the node: a replay would skip %s writes and apply the later ones; archive %s "
	       "(Cassandra tries a failed archive_command again only at its next start: run "
	       "archive-commitlog on %s), or restore to a point no later than %s (when %s was last "
	       "written), or, for ids no segment was given (a restart with the clock stepped back "
	       "skips one), give --ignore-segment-gaps; nothing was written", ids, p->node_name,
	       a->name, b->name, many ? "their" : "its", many ? "them" : "it", many ? "them" : "it",
	       at, a->name);
	return CB_EXIT_FAILED;
}

/* The segments of the node from the backup's snapshot up to the point in time
 * (commitlog_in_window), and a note for those left out or taken from elsewhere. */
static int choose_segments(struct pitr *p, struct store *s)
{
	struct commitlog_list cand = {0};
	unsigned other_host = 0;
	int rc = node_segments(p, s, &cand, &other_host);
	p->segments = rc ? NULL : calloc(1, sizeof(*p->segments));
	if (rc == 0 && (!p->segments || !(p->segments->v = calloc(cand.n + 1, sizeof(*cand.v))))) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	struct commitlog_window w;
	commitlog_window_of(cand.v, cand.n, &p->from, p->time_ms, &w);
	unsigned taken_elsewhere = 0;
	for (size_t i = 0; rc == 0 && i < cand.n; i++)
		if (commitlog_in_window(&cand.v[i], &w)) {
			choose_once(p->segments, &cand.v[i]);
			taken_elsewhere += strcmp(cand.v[i].node, p->node_name) != 0;
		}
	if (rc == 0 && taken_elsewhere)
		printf("note: %u of the commitlog segments to replay %s archived under another node name "
		       "with host id %s (archive-commitlog given another --node, or the host renamed)\n",
		       taken_elsewhere, taken_elsewhere == 1 ? "was" : "were", p->host_id);
	if (rc == 0)
		note_tail_not_archived(p, &cand);
	if (rc == 0 && other_host)
		printf("note: %u commitlog segment%s under node %s in the window left out: %s another "
		       "host id than the backup's %s (a node that took over the name, or a stale host_id "
		       "in the configuration of archive-commitlog)\n", other_host, other_host == 1 ? "" : "s",
		       p->node_name, other_host == 1 ? "it records" : "they record", p->host_id);
	commitlog_list_free(&cand);
	return rc ?: refuse_a_gap(p);
}

/* path made canonical (realpath), or, when it does not exist yet, its parent's made so with
 * its last component after it (else as given); malloc'd, or NULL. */
static char *canonical(const char *path)
{
	char *r = realpath(path, NULL);
	if (r || errno != ENOENT)
		return r ? r : strdup(path);
	_cleanup_free_ char *copy = strdup(path);
	char *slash = copy ? strrchr(copy, '/') : NULL;
	if (!slash || slash == copy || !slash[1])
		return strdup(path);
	*slash = '\0';
	_cleanup_free_ char *parent = realpath(copy, NULL);
	if (!parent || asprintf(&r, "%s/%s", parent, slash + 1) < 0)
		return strdup(path);
	return r;
}

/* Is a (canonical) dir or below b? */
static bool within(const char *a, const char *b)
{
	size_t n = strlen(b);
	return !strncmp(a, b, n) && (a[n] == '\0' || a[n] == '/' || (n == 1 && b[0] == '/'));
}

/* The node's own directories, which the segments directory must not be: point-in-time-done
 * empties it, and Cassandra would replay its own live segments from it. cassandra.yaml's
 * commitlog, cdc, hints and saved caches directories, the data directories (and anything
 * below them), and, for a cassandra.yaml that names no commitlog_directory, the default
 * beside the data directory. 0, or CB_EXIT_USAGE said. */
static int refuse_node_dirs(const struct pitr *p)
{
	static const char *const keys[] = {"commitlog_directory", "cdc_raw_directory",
					   "hints_directory", "saved_caches_directory"};
	_cleanup_free_ char *path = NULL, *yaml = NULL, *segs = canonical(p->segments_dir);
	struct strv dirs = {0};
	struct strbuf err = {0};
	bool named_commitlog = false, oom = false;
	if (asprintf(&path, "%s/cassandra.yaml", p->cassandra_conf) < 0)
		path = NULL; /* undefined after a failure */
	if (!path || !segs) {
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	if (read_small_file(path, 16u << 20, &yaml, NULL) == 0) {
		for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
			char *v = yaml_scalar(yaml, keys[i]);
			if (v && !*v) { /* '': not set */
				free(v);
				v = NULL;
			}
			named_commitlog |= v && i == 0;
			if (v && strv_push(&dirs, v) < 0) /* pushes a copy */
				oom = true;
			free(v);
		}
		yaml_list(yaml, "data_file_directories", &dirs, &err);
	}
	if (p->data_dir && strv_push(&dirs, p->data_dir) < 0)
		oom = true;
	_cleanup_free_ char *data = p->data_dir ? canonical(p->data_dir) : NULL;
	char *slash = data ? strrchr(data, '/') : NULL;
	if (!named_commitlog && slash && slash != data) { /* $CASSANDRA_HOME/data/commitlog */
		*slash = '\0';
		char *d = NULL;
		if (asprintf(&d, "%s/commitlog", data) < 0)
			d = NULL;
		if (!d || strv_push(&dirs, d) < 0)
			oom = true;
		free(d);
	}
	int rc = oom ? CB_EXIT_FAILED : 0;
	if (oom)
		errorf("out of memory");
	for (size_t i = 0; rc == 0 && i < dirs.n; i++) {
		_cleanup_free_ char *c = *dirs.v[i] ? canonical(dirs.v[i]) : NULL;
		if (c && (!strcmp(segs, c) || within(segs, c) || within(c, segs))) {
			errorf("--segments-dir %s is or holds the node's own %s: Cassandra would replay its "
			       "live files from it and --point-in-time-done would remove them; give a "
			       "directory of its own", p->segments_dir, dirs.v[i]);
			rc = CB_EXIT_USAGE;
		}
	}
	strv_free(&dirs);
	sb_free(&err);
	return rc;
}

/* Cassandra splits restore_command at spaces and restore_directories at commas. */
static int check_dirs(struct pitr *p)
{
	if (!p->segments_dir) { /* beside the data directory, as Cassandra's own commitlog/ */
		_cleanup_free_ char *real = p->data_dir ? realpath(p->data_dir, NULL) : NULL;
		char *d = NULL, *slash = real ? strrchr(real, '/') : NULL;
		if (!slash || slash == real || asprintf(&d, "%.*s/commitlog_restore", (int)(slash - real), real) < 0) {
			errorf("give --segments-dir DIR: the directory to put the commitlog segments in");
			return CB_EXIT_USAGE;
		}
		p->segments_dir = p->segments_dir_owned = d;
	}
	if (p->segments_dir[0] != '/' || strpbrk(p->segments_dir, " ,\t\n\\")) {
		errorf("--segments-dir %s: must be an absolute path without spaces, commas or backslashes "
		       "(Cassandra splits restore_command at spaces, restore_directories at commas)", p->segments_dir);
		return CB_EXIT_USAGE;
	}
	struct stat st;
	const char *why = stat(p->cassandra_conf, &st) < 0 ? strerror(errno)
			  : !S_ISDIR(st.st_mode)           ? "not a directory" : NULL;
	if (why) {
		errorf("--cassandra-conf %s: %s", p->cassandra_conf, why);
		return CB_EXIT_USAGE;
	}
	return refuse_node_dirs(p);
}

/* Is name one of the chosen segments? */
static const struct commitlog_meta *chosen(const struct pitr *p, const char *name)
{
	for (size_t i = 0; i < p->segments->n; i++)
		if (strcmp(p->segments->v[i].name, name) == 0)
			return &p->segments->v[i];
	return NULL;
}

static bool already_there(int dirfd, const struct commitlog_meta *m);

/* Cassandra copies every file of restore_directories: the directory must hold nothing but the
 * chosen segments (from an earlier run: the same bytes) and leftovers of ours. */
static int check_segments_dir(const struct pitr *p)
{
	DIR *d = opendir(p->segments_dir);
	int e0 = d ? 0 : errno;
	if (!d && e0 != ENOENT)
		errorf("--segments-dir %s: %s", p->segments_dir, strerror(e0));
	if (!d)
		return e0 == ENOENT ? 0 : -e0;
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		const struct commitlog_meta *m = chosen(p, e->d_name);
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) || (m && already_there(dirfd(d), m)))
			continue;
		_cleanup_free_ char *shown = cli_escape(e->d_name);
		if (m)
			errorf("--segments-dir %s holds %s, but not the bytes the store holds under that "
			       "name; Cassandra would replay it: give an empty directory", p->segments_dir,
			       shown ? shown : "");
		else
			errorf("--segments-dir %s holds %s, which is not one of the segments to replay; "
			       "Cassandra would replay every file there: give an empty directory",
			       p->segments_dir, shown ? shown : "");
		r = -EEXIST;
	}
	closedir(d);
	return r;
}

int pitr_plan(struct pitr *p, const char *location)
{
	{ /* the node whose backup (by name or the last one) and segments are restored */
		const char *n = p->node ? p->node : config_get("node");
		if (n)
			snprintf(p->node_name, sizeof(p->node_name), "%s", n);
		else if (gethostname(p->node_name, sizeof(p->node_name) - 1) < 0)
			return CB_EXIT_FAILED;
	}
	struct store *s = NULL;
	int rc = check_dirs(p);
	rc = rc ?: cli_store_open(location, STORE_READONLY, &s);
	rc = rc ?: choose_backup(p, s);
	rc = rc ?: choose_segments(p, s);
	store_close(s);
	if (rc == 0 && check_segments_dir(p) < 0)
		rc = CB_EXIT_USAGE;
	if (rc == 0) {
		char snap[64], from[64];
		format_gmt(p->from.ms + COMMITLOG_FLUSH_SLACK_MS, snap, sizeof(snap));
		format_gmt(p->from.ms, from, sizeof(from));
		printf("point in time %s GMT: backup %s of node %s (snapshot by %s GMT), then %zu commitlog "
		       "segment%s archived since %s GMT\n", p->time, p->backup_name, p->node_name, snap,
		       p->segments->n, p->segments->n == 1 ? "" : "s", from);
		/* Cassandra parsed the time with SimpleDateFormat("yyyy:MM:dd HH:mm:ss"), which
		 * reads a prefix, until CASSANDRA-19448 */
		if (strlen(p->time) > 19)
			printf("note: Cassandra reads the milliseconds of restore_point_in_time only "
			       "with CASSANDRA-19448 (2024): a release without it replays up to %.19s.000\n",
			       p->time);
	}
	return rc;
}

/* ---- apply ------------------------------------------------------------------------------ */

/* Writes data into dirfd/name, whole or not at all (a temporary name, fsync, rename), owned
 * like the directory so that Cassandra (restore_command runs as Cassandra) can read it. */
static int write_file_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			 const struct stat *owner)
{
	char tmp[300];
	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s", name);
	unlinkat(dirfd, tmp, 0);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int r = write_full(fd, data, len);
	if (r == 0 && owner && fchown(fd, owner->st_uid, owner->st_gid) < 0 && errno != EPERM)
		r = -errno;
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(dirfd, tmp, 0);
	return r == 0 && fsync(dirfd) < 0 ? -errno : r;
}

/* Is dirfd/name already segment m (an earlier run copied it)? */
static bool already_there(int dirfd, const struct commitlog_meta *m)
{
	int fd = openat(dirfd, m->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	unsigned char sha[32];
	bool same = fstat(fd, &st) == 0 && (uint64_t)st.st_size == m->size &&
		    sha256_fd(fd, m->size, sha, NULL, NULL, NULL) == 0 && memcmp(sha, m->sha256, 32) == 0;
	close(fd);
	return same;
}

/* Removes from the segments directory the temporary files a killed run left (this run's are
 * made after): Cassandra's restore copies every file there, a partial segment too. */
static int remove_leftovers(int dirfd, const char *dir)
{
	DIR *d = fdopendir(fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
	if (!d)
		return -errno;
	int r = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d));)
		if (!strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) &&
		    unlinkat(dirfd, e->d_name, 0) < 0 && errno != ENOENT) {
			r = -errno;
			errorf("cannot remove %s/%s, left by a point-in-time restore that was killed: %s",
			       dir, e->d_name, strerror(-r));
		}
	closedir(d);
	return r;
}

/* Takes the segments directory dir (open as dirfd) for this process, to its end: one
 * point-in-time restore, or its --point-in-time-done, at a time, since one's leftovers and
 * take-back would remove what another's settings name. 0; -EBUSY when another holds it; 0 too
 * where the file system has no locks (ENOLCK, EOPNOTSUPP: an NFS without lockd), said once. */
static int lock_segments_dir(int dirfd, const char *dir)
{
	if (flock(dirfd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK)
		return -EBUSY;
	if (errno != ENOLCK && errno != EOPNOTSUPP)
		return -errno;
	errorf("note: %s cannot be locked (%s): make sure no other point-in-time restore uses it",
	       dir, strerror(errno));
	return 0;
}

/* Copies the chosen segments into the segments directory (made like the data directory's
 * parent, owned as it is). */
static int fetch_segments(struct pitr *p, struct store *s)
{
	struct stat owner;
	const char *ref = p->data_dir ? p->data_dir : p->cassandra_conf;
	if (stat(ref, &owner) < 0)
		return -errno;
	if (mkdir(p->segments_dir, 0750) == 0)
		p->made_segments_dir = true;
	else if (errno != EEXIST)
		return -errno;
	free(p->fetched);
	if (!(p->fetched = calloc(p->segments->n + 1, sizeof(*p->fetched))))
		return -ENOMEM;
	int dirfd = open(p->segments_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), r = 0;
	if (dirfd < 0)
		return -errno;
	/* one restore at a time in a segments directory, to its end: another's leftovers and
	 * take-back would remove what this one's settings name */
	if ((r = lock_segments_dir(dirfd, p->segments_dir)) < 0) {
		close(dirfd);
		p->made_segments_dir = false; /* the other's now, whoever made it */
		return r;
	}
	p->segments_dir_lock = dirfd; /* held until pitr_free */
	/* what another restore left between the plan's look and the lock (said there) */
	if (check_segments_dir(p) < 0)
		return -EEXIST;
	dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (dirfd < 0)
		return -errno;
	if (fchown(dirfd, owner.st_uid, owner.st_gid) < 0 && errno != EPERM)
		r = -errno;
	r = r ?: remove_leftovers(dirfd, p->segments_dir);
	for (size_t i = 0; r == 0 && i < p->segments->n; i++) {
		const struct commitlog_meta *m = &p->segments->v[i];
		if (already_there(dirfd, m))
			continue;
		/* what was there under the name (planned since check_segments_dir) is not ours to
		 * take back */
		bool existed = faccessat(dirfd, m->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
		struct strbuf key = {0}, err = {0};
		void *data = NULL;
		r = commitlog_key(m->node, m->name, &key);
		r = r ?: commitlog_read(store_backend(s), key.buf, m, &data, &err);
		r = r ?: write_file_at(dirfd, m->name, data, m->size, 0640, &owner);
		p->fetched[i] = r == 0 && !existed;
		if (r < 0)
			errorf("cannot copy commitlog segment %s: %s", m->name, err.len ? err.buf : cb_backend_why(r));
		free(data);
		sb_free(&key);
		sb_free(&err);
	}
	close(dirfd);
	return r;
}

/* Appends v as a java.util.Properties value: a backslash is written doubled. */
static int sb_prop_value(struct strbuf *sb, const char *v)
{
	int r = 0;
	for (; *v && r == 0; v++)
		r = *v == '\\' ? sb_puts(sb, "\\\\") : sb_append(sb, v, 1);
	return r;
}

/* The lines of the file before ours that set archive_command: kept, so that the node goes on
 * archiving its segments after the restore. Lines continued with a backslash are kept whole. */
static int keep_archive_command(const char *old, struct strbuf *out)
{
	bool keep = false;
	for (const char *l = old; l && *l;) {
		const char *nl = strchr(l, '\n'), *end = nl ? nl : l + strlen(l);
		const char *k = l;
		while (k < end && (*k == ' ' || *k == '\t'))
			k++;
		bool starts = !strncmp(k, "archive_command", 15) && k + 15 <= end &&
			      (k + 15 == end || strchr("=: \t", k[15]));
		if (keep || starts) {
			if (sb_append(out, l, (size_t)(end - l)) < 0 || sb_puts(out, "\n") < 0)
				return -ENOMEM;
			keep = end > l && end[-1] == '\\';
		}
		l = nl ? nl + 1 : end;
	}
	return 0;
}

static int properties_text(const struct pitr *p, const char *old, struct strbuf *out)
{
	char cp[4096];
	if (exec_find("cp", cp, sizeof(cp)) < 0)
		snprintf(cp, sizeof(cp), "/bin/cp");
	sb_printf(out, "# Written by cassbackup restore --point-in-time: at its next start Cassandra\n"
		  "# copies the commitlog segments of %s into its commitlog directory and\n"
		  "# replays them up to %s GMT, over backup %s.\n"
		  "# Remove these settings once the replay is done, or every restart replays again:\n"
		  "#   cassbackup restore --point-in-time-done --cassandra-conf %s\n"
		  "# puts back the file that was here before (" PITR_SAVED ").\n"
		  MARKER "%s\n", p->segments_dir, p->time, p->backup_name, p->cassandra_conf, p->backup_name);
	int r = keep_archive_command(old, out);
	r = r ?: sb_printf(out, "restore_command=%s -f %%from %%to\nrestore_directories=", cp);
	r = r ?: sb_prop_value(out, p->segments_dir);
	/* mutations carry CQL's write timestamps, in microseconds */
	r = r ?: sb_printf(out, "\nrestore_point_in_time=%s\nprecision=MICROSECONDS\n", p->time);
	return r;
}

/* Is the file at dirfd/name one we wrote? 1, 0, or -errno (-ENOENT: none). Its text into
 * *text when asked. */
static int ours(int dirfd, const char *name, char **text)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	char *buf = NULL;
	int r = fstat(fd, &st) < 0 ? -errno : st.st_size > (1 << 20) ? -EFBIG : 0;
	if (r == 0 && !(buf = calloc(1, (size_t)st.st_size + 1)))
		r = -ENOMEM;
	ssize_t n = r == 0 ? pread_full(fd, buf, (size_t)st.st_size, 0) : 0;
	close(fd);
	if (r == 0 && n < 0)
		r = (int)n;
	if (r < 0) {
		free(buf);
		return r;
	}
	r = strstr(buf, "\n" MARKER) != NULL;
	if (text)
		*text = buf;
	else
		free(buf);
	return r;
}

/* Writes commitlog_archiving.properties, keeping the one that was there (not ours) as
 * PITR_SAVED. A second run replaces its own file and keeps the saved one. */
/* Are a and b (in dirfd) one file? */
static bool same_file_at(int dirfd, const char *a, const char *b)
{
	struct stat sa, sb;
	return fstatat(dirfd, a, &sa, AT_SYMLINK_NOFOLLOW) == 0 &&
	       fstatat(dirfd, b, &sb, AT_SYMLINK_NOFOLLOW) == 0 && sa.st_ino == sb.st_ino &&
	       sa.st_dev == sb.st_dev;
}

/* Keeps the node's own settings file as PITR_SAVED (a second name, the same file): 0, also
 * when it is so already (a run killed between this and writing ours), or -errno. */
static int keep_current(int dirfd)
{
	if (linkat(dirfd, PITR_PROPERTIES, dirfd, PITR_SAVED, 0) == 0)
		return 0;
	int e = errno;
	return e == EEXIST && same_file_at(dirfd, PITR_PROPERTIES, PITR_SAVED) ? 0 : -e;
}

static int write_properties(const struct pitr *p, struct strbuf *err)
{
	int dirfd = open(p->cassandra_conf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	char *old = NULL;
	struct stat owner;
	struct strbuf text = {0};
	int r = fstatat(dirfd, PITR_PROPERTIES, &owner, AT_SYMLINK_NOFOLLOW) < 0 ? fstat(dirfd, &owner) : 0;
	int mine = ours(dirfd, PITR_PROPERTIES, &old);
	int kept = mine == 0 ? keep_current(dirfd) : 0;
	if (kept < 0) {
		r = kept;
		sb_printf(err, "cannot keep the current %s as %s: %s", PITR_PROPERTIES, PITR_SAVED, strerror(-kept));
	} else if (mine < 0 && mine != -ENOENT) {
		r = mine;
	}
	if (r == 0 && mine == 1) { /* our own from an earlier run: take archive_command from the saved */
		free(old);
		old = NULL;
		if ((r = ours(dirfd, PITR_SAVED, &old)) == -ENOENT)
			r = 0;
	}
	r = r < 0 ? r : properties_text(p, old, &text);
	r = r ?: write_file_at(dirfd, PITR_PROPERTIES, text.buf, text.len, owner.st_mode & 0644, &owner);
	free(old);
	sb_free(&text);
	close(dirfd);
	return r;
}

int pitr_fetch(struct pitr *p, const char *location)
{
	if (p->dry_run) {
		for (size_t i = 0; i < p->segments->n; i++)
			printf("would copy commitlog segment %s into %s\n", p->segments->v[i].name, p->segments_dir);
		return CB_EXIT_OK;
	}
	struct store *s = NULL;
	int rc = cli_store_open(location, STORE_READONLY, &s), r;
	if (rc != 0)
		return rc;
	if ((r = fetch_segments(p, s)) == -EBUSY) {
		errorf("--segments-dir %s is in use by another point-in-time restore; run this one once "
		       "it ended (the backup was not restored)", p->segments_dir);
		rc = CB_EXIT_FAILED;
	} else if (r == -EEXIST) { /* check_segments_dir said why */
		rc = CB_EXIT_USAGE;
	} else if (r < 0) {
		errorf("cannot fill --segments-dir %s: %s; the backup was not restored", p->segments_dir,
		       strerror(-r));
		rc = CB_EXIT_FAILED;
	}
	store_close(s);
	if (rc == 0)
		printf("copied %zu commitlog segment%s into %s\n", p->segments->n,
		       p->segments->n == 1 ? "" : "s", p->segments_dir);
	else
		pitr_unfetch(p);
	return rc;
}

void pitr_unfetch(struct pitr *p)
{
	int dirfd = p->dry_run ? -1 : open(p->segments_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return;
	size_t removed = 0;
	for (size_t i = 0; p->fetched && i < p->segments->n; i++)
		if (p->fetched[i] && unlinkat(dirfd, p->segments->v[i].name, 0) == 0)
			removed++;
	close(dirfd);
	bool gone = p->made_segments_dir && rmdir(p->segments_dir) == 0;
	if (removed || gone)
		printf("removed the %zu commitlog segment%s this restore had copied into %s%s\n", removed,
		       removed == 1 ? "" : "s", p->segments_dir, gone ? ", and the directory" : "");
}

int pitr_apply(struct pitr *p)
{
	if (p->dry_run) {
		printf("would write %s/%s; dry run: nothing was written\n", p->cassandra_conf, PITR_PROPERTIES);
		return CB_EXIT_OK;
	}
	struct strbuf err = {0};
	int r = write_properties(p, &err);
	if (r < 0)
		errorf("cannot write %s/%s: %s", p->cassandra_conf, PITR_PROPERTIES, err.len ? err.buf : strerror(-r));
	sb_free(&err);
	if (r < 0)
		return CB_EXIT_FAILED;
	printf("wrote %s/%s: at its next start Cassandra replays them up to %s GMT\n", p->cassandra_conf,
	       PITR_PROPERTIES, p->time);
	if (p->nreplay) {
		printf("to replay only the restored tables, start Cassandra with -Dcassandra.replayList=");
		for (size_t i = 0; i < p->nreplay; i++)
			printf("%s%s", i ? "," : "", p->replay_list[i]);
		printf("\n");
	}
	printf("after the replay, remove these settings, or every restart replays again:\n"
	       "  cassbackup restore --point-in-time-done --cassandra-conf %s\n", p->cassandra_conf);
	return CB_EXIT_OK;
}

void pitr_free(struct pitr *p)
{
	for (size_t i = 0; i < p->nreplay; i++)
		free(p->replay_list[i]);
	free(p->replay_list);
	if (p->segments)
		commitlog_list_free(p->segments);
	free(p->segments);
	free(p->segments_dir_owned);
	free(p->fetched);
	if (p->segments_dir_lock > 0)
		close(p->segments_dir_lock);
}

/* ---- done ------------------------------------------------------------------------------- */

/* The restore_directories line we wrote (text is ours: one directory, no escapes, since
 * check_dirs refused backslashes and commas), malloc'd; NULL when there is none. */
static char *our_segments_dir(const char *text)
{
	const char *k = strstr(text, "\nrestore_directories=");
	if (!k)
		return NULL;
	k += strlen("\nrestore_directories=");
	return strndup(k, strcspn(k, "\n"));
}

/* After the replay the segments directory is of no use (Cassandra copied from it), and a
 * later point-in-time restore wants it empty: its segments (copies of the store's, written
 * before the settings, at written_ns) and our leftovers go, then the directory when empty.
 * Other files stay, and so does a segment written after the settings: not one of ours (a node
 * whose commitlog_directory was pointed there). */
static void remove_segments(const char *dir, int64_t written_ns)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	unsigned n = 0, newer = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int32_t v;
		int64_t id;
		struct stat st;
		bool ours = commitlog_parse_name(e->d_name, &v, &id) == 0 ||
			    !strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX));
		if (!ours || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (st.st_mtim.tv_sec * INT64_C(1000000000) + st.st_mtim.tv_nsec > written_ns)
			newer++;
		else if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	bool gone = rmdir(dir) == 0;
	printf("removed %u commitlog segment%s from %s%s\n", n, n == 1 ? "" : "s", dir,
	       gone ? ", and the directory" : "");
	if (newer)
		errorf("left %u segment file%s in %s written after the point-in-time settings: not "
		       "copies cassbackup made", newer, newer == 1 ? "" : "s", dir);
}

static int undo_properties(const char *conf)
{
	int dirfd = open(conf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		errorf("--cassandra-conf %s: %s", conf, strerror(errno));
		return CB_EXIT_USAGE;
	}
	char *text = NULL;
	struct stat pst;
	int64_t written_ns = fstatat(dirfd, PITR_PROPERTIES, &pst, 0) == 0
				     ? pst.st_mtim.tv_sec * INT64_C(1000000000) + pst.st_mtim.tv_nsec : 0;
	int rc = CB_EXIT_FAILED, mine = ours(dirfd, PITR_PROPERTIES, &text);
	bool saved = faccessat(dirfd, PITR_SAVED, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	_cleanup_free_ char *segments = mine == 1 ? our_segments_dir(text) : NULL;
	free(text);
	int segfd = segments ? open(segments, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	int locked = segfd >= 0 ? lock_segments_dir(segfd, segments) : 0;
	if (locked == -EBUSY) {
		errorf("%s is in use by a point-in-time restore: run --point-in-time-done once it ended",
		       segments);
		close(segfd);
		close(dirfd);
		return CB_EXIT_FAILED;
	}
	if (mine == -ENOENT && !saved) {
		errorf("%s/%s: no point-in-time settings to remove", conf, PITR_PROPERTIES);
	} else if (mine == 0 || (mine == -ENOENT && saved)) {
		errorf("%s/%s: not written by cassbackup restore --point-in-time; left as it is", conf,
		       PITR_PROPERTIES);
	} else if (mine < 0) {
		errorf("cannot read %s/%s: %s", conf, PITR_PROPERTIES, strerror(-mine));
	} else if (saved ? renameat(dirfd, PITR_SAVED, dirfd, PITR_PROPERTIES) < 0
			 : unlinkat(dirfd, PITR_PROPERTIES, 0) < 0) {
		errorf("cannot remove the point-in-time settings from %s/%s: %s", conf, PITR_PROPERTIES, strerror(errno));
	} else {
		fsync(dirfd);
		printf(saved ? "put back the %s/%s from before the point-in-time restore\n"
			     : "removed %s/%s (there was none before the point-in-time restore)\n",
		       conf, PITR_PROPERTIES);
		if (segments)
			remove_segments(segments, written_ns);
		rc = CB_EXIT_OK;
	}
	if (segfd >= 0)
		close(segfd);
	close(dirfd);
	return rc;
}

int cmd_restore_pitr_done(int argc, char **argv)
{
	const char *conf = NULL;
	bool done = false;
	struct cli_option opts[] = {
		{.name = "point-in-time-done", .type = OPT_FLAG, .value = &done,
		 .help = "remove the settings a point-in-time restore wrote"},
		{.name = "cassandra-conf", .type = OPT_STRING, .value = &conf, .arg = "DIR",
		 .help = "Cassandra's configuration directory", .config_key = "cassandra_conf",
		 .flags = OPT_REQUIRED},
		{0},
	};
	struct cli_command cmd = {
		.name = "restore",
		.usage = (const char *const[]){"--point-in-time-done --cassandra-conf DIR", NULL},
		.description = "After Cassandra replayed the commitlog segments of a point-in-time restore:\n"
			       "puts back the commitlog_archiving.properties from before it (or removes the\n"
			       "one it wrote, when there was none), so that a restart does not replay again.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	return undo_properties(conf);
}
