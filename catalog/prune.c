/* prune.c: see prune.h. */
#include "prune.h"
#include "backend.h"
#include "catalog.h"
#include "commitlog.h"
#include "pack.h"
#include "packer.h"
#include "packread.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct prune {
	struct prune_opts o;
	const char *location;
	struct store *store; /* the caller's */
	struct store_lock *lock;
	bool exclusive;        /* lock is the exclusive one (the delete phase) */
	struct prune_pack *packs; /* the plan, by catalog id (ascending) */
	size_t npacks, cap;
	uint64_t copied_bytes; /* of repacked packs not deleted yet */
	struct prune_stats st;
};

static const char *catalog_reason(catalog *c, int r)
{
	return r == -EUCLEAN || r == -EIO || r == -EBUSY ? catalog_errmsg(c) : strerror(-r);
}

/* --- locks ------------------------------------------------------------------------------ */

/* "COMMAND (pid N on HOST, shared|exclusive)" of holder, into busy (n bytes). */
static void describe_holder(const struct lock_info *holder, char *busy, size_t n)
{
	snprintf(busy, n, "%s (pid %lld on %s, %s)", holder->command, (long long)holder->pid,
		 holder->host, holder->exclusive ? "exclusive" : "shared");
}

static void say_locked(prune *p, const struct lock_info *holder, struct strbuf *err)
{
	if (p->o.if_idle) /* not a failure: prune_begin and prune_run take it for a skip */
		describe_holder(holder, p->st.busy_skipped_for, sizeof(p->st.busy_skipped_for));
	if (holder->pending_write)
		sb_printf(err, "store %s is locked by %s (pid %lld on %s), left until it lapses: a write "
			  "of its failed without an answer and may still land; try again later",
			  p->location, holder->command, (long long)holder->pid, holder->host);
	else
		sb_printf(err, "store %s is locked by %s (pid %lld on %s, %s); try again later, or "
			  "'cassbackup unlock' if that process is gone", p->location, holder->command,
			  (long long)holder->pid, holder->host, holder->exclusive ? "exclusive" : "shared");
}

static int find_other_prune(void *ctx, const struct lock_info *li)
{
	if (li->stale || li->probe || strcmp(li->command, "prune") != 0)
		return 0;
	*(struct lock_info *)ctx = *li;
	return 1;
}

/* Prunes run one at a time: two would copy the same blobs, and one would read packs the
 * other deleted. Looked for after this prune's own lock is written, so of two that race at
 * least one sees the other and backs off; and a prune holds a lock from its first until it
 * ends (switch_lock keeps the old one while it waits for the next), so one that starts while
 * another waits for the exclusive lock sees it too. */
static int alone(prune *p, struct lock_info *other, struct strbuf *err)
{
	int r = store_lock_list(store_backend(p->store), p->lock, find_other_prune, other);
	if (r == 1) {
		say_locked(p, other, err);
		return -EBUSY;
	}
	if (r < 0)
		sb_printf(err, "cannot list the locks of %s: %s", p->location, cb_backend_why(r));
	return r;
}

/* Takes a lock of the kind exclusive says, waiting o.lock_wait_seconds, and then releases the
 * one held: while it waits, the held one stays, so that another prune that starts meanwhile
 * sees this one at work and backs off (alone). 0, or -errno with the held lock kept:
 * -ETIMEDOUT (err says why) when the held one lapsed or was removed meanwhile ('unlock
 * --all'), for then another prune may have planned beside this one. */
static int switch_lock(prune *p, bool exclusive, int wait_seconds, struct lock_info *holder,
		       struct strbuf *err)
{
	struct store_lock *l = NULL;
	int r = p->lock ? store_lock_take_over(p->lock, exclusive, wait_seconds, p->o.lock_waiting,
					       p->o.lock_ctx, &l, holder)
			: store_lock_take(store_backend(p->store), exclusive, "prune", wait_seconds,
					  p->o.lock_waiting, p->o.lock_ctx, &l, holder);
	if (r < 0)
		return r;
	if ((r = store_lock_check(p->lock, err)) < 0) {
		store_lock_release(l);
		return r;
	}
	store_lock_release(p->lock);
	p->lock = l;
	p->exclusive = exclusive;
	return 0;
}

/* Takes the shared lock (planning, repacking: what a create may do beside it) or the
 * exclusive one (deleting) in place of the one held (switch_lock). When the shared lock meets
 * another prune's, -EBUSY with that lock in *other (when not NULL). */
static int take_lock_seeing(prune *p, bool exclusive, struct lock_info *other, struct strbuf *err)
{
	struct lock_info holder = {0};
	int r = switch_lock(p, exclusive, p->o.lock_wait_seconds, &holder, err);
	if (r == -EBUSY)
		say_locked(p, &holder, err);
	else if (r == -EROFS)
		sb_printf(err, "store %s is read-only", p->location);
	else if (r < 0 && r != -ETIMEDOUT) /* that one said by store_lock_check */
		sb_printf(err, "cannot lock store %s: %s", p->location, cb_backend_why(r));
	struct lock_info seen = {0};
	return r < 0 || exclusive ? r : alone(p, other ? other : &seen, err);
}

static int take_lock(prune *p, bool exclusive, struct strbuf *err)
{
	return take_lock_seeing(p, exclusive, NULL, err);
}

#define START_RETRIES 4 /* waits of 0.5, 1, 2 and 4 s */

/* The first shared lock. Two prunes that start together (the backup jobs of nodes that finish
 * at once) each see the other, and each would back off: nobody would prune. So the one whose
 * lock key sorts first lets go and tries again, a few times, while the other backs off at
 * once; a prune that runs on stays in the way and ends it as before. Each try writes its lock
 * before it looks, so two prunes never both go on. */
static int take_first_lock(prune *p, struct strbuf *err)
{
	for (unsigned t = 0; ; t++) {
		struct lock_info other = {0};
		int r = take_lock_seeing(p, false, &other, err);
		if (r != -EBUSY || !p->lock || t == START_RETRIES ||
		    strcmp(store_lock_key(p->lock), other.key) > 0)
			return r;
		store_lock_release(p->lock);
		p->lock = NULL;
		err->len = 0;
		if (err->buf)
			err->buf[0] = '\0';
		p->st.busy_skipped_for[0] = '\0';
		usleep(500000u << t);
	}
}

/* --- plan -------------------------------------------------------------------------------- */

/* A pack no remaining backup reads from goes; the others stay unless select_repacks picks
 * them. */
static enum prune_action decide(const struct prune_pack *k)
{
	return k->used == 0 ? PRUNE_DELETE : PRUNE_KEEP;
}

static uint64_t unused_bytes(const struct prune_pack *k) { return k->blob_bytes - k->used_bytes; }

/* The share of the pack's stored (compressed) bytes its unused blobs take, estimated from
 * their uncompressed share. */
static long double unused_stored(const struct prune_pack *k)
{
	return k->blob_bytes ? (long double)k->size * unused_bytes(k) / k->blob_bytes : 0;
}

/* Most unused share first: unused_a / blob_a > unused_b / blob_b, cross-multiplied. */
static int by_unused_share(const void *a, const void *b)
{
	const struct prune_pack *x = *(struct prune_pack *const *)a, *y = *(struct prune_pack *const *)b;
	long double l = (long double)unused_bytes(x) * y->blob_bytes;
	long double r = (long double)unused_bytes(y) * x->blob_bytes;
	return l > r ? -1 : l < r ? 1 : 0;
}

/* restic's --max-unused: the store may keep unused bytes up to max_unused percent of its size;
 * packs are repacked, the largest unused share first, until the unused bytes of the packs that
 * stay are within that. (A threshold per pack rewrote a whole pack for each few percent it
 * lost: 2.5 GiB rewritten in 30 days to keep an 860 MiB store, bench/store_bench.py.) Bytes
 * as stored, the unused ones estimated per pack. */
static int select_repacks(prune *p)
{
	long double size = 0, unused = 0;
	size_t n = 0;
	for (size_t i = 0; i < p->npacks; i++) {
		const struct prune_pack *k = &p->packs[i];
		if (k->action == PRUNE_DELETE)
			continue;
		size += k->size;
		unused += unused_stored(k);
		n += unused_bytes(k) > 0;
	}
	if (p->o.max_unused >= 100 || n == 0)
		return 0;
	struct prune_pack **cand = malloc(n * sizeof(*cand));
	if (!cand)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < p->npacks; i++)
		if (p->packs[i].action != PRUNE_DELETE && unused_bytes(&p->packs[i]) > 0)
			cand[n++] = &p->packs[i];
	qsort(cand, n, sizeof(*cand), by_unused_share);
	/* a repack takes its unused bytes out of both the store and its unused share */
	for (size_t i = 0; i < n && unused * 100 > size * p->o.max_unused; i++) {
		cand[i]->action = PRUNE_REPACK;
		unused -= unused_stored(cand[i]);
		size -= unused_stored(cand[i]);
	}
	free(cand);
	return 0;
}

static int add_pack(void *ctx, const struct cb_pack_usage *u)
{
	prune *p = ctx;
	if (p->npacks == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct prune_pack *v = realloc(p->packs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->packs = v;
		p->cap = cap;
	}
	struct prune_pack *k = &p->packs[p->npacks];
	*k = (struct prune_pack){.id = u->id, .path = strdup(u->path), .size = u->size,
				 .blobs = u->blobs, .blob_bytes = u->blob_bytes, .used = u->used,
				 .used_bytes = u->used_bytes};
	if (!k->path)
		return -ENOMEM;
	k->action = decide(k);
	p->npacks++;
	return 0;
}

static void count_plan(prune *p)
{
	struct prune_stats *st = &p->st;
	for (size_t i = 0; i < p->npacks; i++) {
		const struct prune_pack *k = &p->packs[i];
		uint64_t unused = unused_bytes(k);
		st->packs++;
		st->bytes += k->size;
		switch (k->action) {
		case PRUNE_DELETE:
			st->delete_packs++;
			st->delete_bytes += k->size;
			st->freed_estimate += k->size;
			break;
		case PRUNE_REPACK:
			st->repack_packs++;
			st->repack_bytes += k->size;
			st->repack_used_bytes += k->used_bytes;
			st->freed_estimate += (uint64_t)((long double)k->size * unused / k->blob_bytes);
			break;
		case PRUNE_KEEP:
			st->keep_packs++;
			st->keep_bytes += k->size;
			st->keep_unused_bytes += unused;
			break;
		}
	}
}

/* The commitlog segments in the store and which of them are due (commitlog_retention): *l
 * and *due are the caller's (commitlog_list_free, free). */
static int segments_due(prune *p, struct commitlog_list *l, bool **due, struct strbuf *err)
{
	int r = commitlog_list(store_backend(p->store), NULL, false, l, err);
	if (r < 0)
		return r;
	*due = calloc(l->n ? l->n : 1, sizeof(**due));
	if (!*due) {
		commitlog_list_free(l);
		return -ENOMEM;
	}
	r = commitlog_retention(p->store, l, *due, err);
	if (r < 0) {
		free(*due);
		*due = NULL;
		commitlog_list_free(l);
	}
	return r;
}

static int plan_segments(prune *p, struct strbuf *err)
{
	struct commitlog_list l;
	bool *due;
	struct strbuf why = {0};
	int r = segments_due(p, &l, &due, &why);
	if (r < 0) {
		sb_printf(err, "commitlog segments of %s: %s", p->location, why.buf ? why.buf : strerror(-r));
		sb_free(&why);
		return r;
	}
	sb_free(&why);
	p->st.segments = (unsigned)l.n;
	p->st.bad_segments = l.bad;
	for (size_t i = 0; i < l.n; i++)
		p->st.delete_segments += due[i];
	free(due);
	commitlog_list_free(&l);
	return 0;
}

static int make_plan(prune *p, struct strbuf *err)
{
	catalog *c = store_catalog(p->store);
	int r = catalog_pack_usage(c, add_pack, p);
	if (r < 0) {
		sb_printf(err, "cannot read the catalog of %s: %s", p->location, catalog_reason(c, r));
		return r;
	}
	if ((r = select_repacks(p)) < 0) {
		sb_puts(err, "out of memory");
		return r;
	}
	count_plan(p);
	return plan_segments(p, err);
}

/* Under the lock, the catalog is brought up to date from a complete reading of backups/ and
 * packs/: a manifest that cannot be read, for whatever reason, stops the prune, since the blobs
 * of its backup would look unused (RECONCILE_STRICT). */
static int reconcile_strict(prune *p, struct strbuf *err)
{
	struct reconcile_stats rst = {0};
	struct strbuf why = {0};
	int r = store_reconcile(p->store, RECONCILE_PACKS | RECONCILE_STRICT, &rst, &why);
	if (r < 0 && !rst.unreadable)
		sb_printf(err, "%s", why.buf ? why.buf : strerror(-r));
	else if (r < 0)
		sb_printf(err, "cannot read all of %s/backups (%s); prune would take the data of a "
			  "backup it cannot read for unused: fix or remove it first", p->location,
			  why.buf ? why.buf : strerror(-r));
	p->st.bad_packs = rst.bad_packs;
	reconcile_stats_free(&rst);
	sb_free(&why);
	return r;
}

/* With if_idle, a lock in the way (say_locked named its holder) ends the prune where it is,
 * as a success: true, *r 0, err emptied, no lock held. What was done stays (a repack's new
 * packs: the old ones go at a later prune). */
static bool skipped_for_another(prune *p, int *r, struct strbuf *err)
{
	if (*r != -EBUSY || !p->o.if_idle || !*p->st.busy_skipped_for)
		return false;
	store_lock_release(p->lock);
	p->lock = NULL;
	p->exclusive = false;
	err->len = 0;
	if (err->buf)
		err->buf[0] = '\0';
	*r = 0;
	return true;
}

static int open_and_plan(prune *p, struct strbuf *err)
{
	int r = take_first_lock(p, err) ?: reconcile_strict(p, err) ?: make_plan(p, err);
	p->st.planned = r == 0;
	return r;
}

int prune_begin(struct store *s, const struct prune_opts *o, prune **out, struct strbuf *err)
{
	*out = NULL;
	prune *p = calloc(1, sizeof(*p));
	if (!p) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	p->store = s;
	p->location = store_location(s);
	p->o = *o;
	if (p->o.max_unused > 100)
		p->o.max_unused = 100;
	if (p->o.if_idle)
		p->o.lock_wait_seconds = 0; /* a lock in the way is a skip, never a wait */
	int r = open_and_plan(p, err);
	if (skipped_for_another(p, &r, err)) { /* nothing planned: prune_run does nothing */
		*out = p;
		return 0;
	}
	if (r < 0) {
		if (r == -ENOMEM && !err->len)
			sb_puts(err, "out of memory");
		prune_free(p);
		return r;
	}
	*out = p;
	return 0;
}

const struct prune_pack *prune_packs(const prune *p, size_t *n)
{
	*n = p->npacks;
	return p->packs;
}

const struct prune_stats *prune_get_stats(const prune *p)
{
	return &p->st;
}

void prune_free(prune *p)
{
	if (!p)
		return;
	store_lock_release(p->lock);
	for (size_t i = 0; i < p->npacks; i++)
		free(p->packs[i].path);
	free(p->packs);
	free(p);
}

/* --- delete, under the exclusive lock ------------------------------------------------------ */

/* Counts the packs k[0..n), deleted from the store: the summary tells what was freed even when
 * the catalog cannot be told. */
static void count_deleted(prune *p, struct prune_pack **k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		k[i]->gone = true;
		p->st.bytes_removed += k[i]->size;
		if (k[i]->action == PRUNE_DELETE) {
			p->st.packs_deleted++;
		} else {
			p->st.packs_repacked++;
			p->copied_bytes -= k[i]->size;
		}
	}
}

/* Drops the deleted packs k[0..n) from the catalog, in one transaction, and counts them. */
static int forget_deleted(prune *p, struct prune_pack **k, size_t n, struct strbuf *err)
{
	count_deleted(p, k, n);
	catalog *c = store_catalog(p->store);
	int r = catalog_begin(c);
#ifdef CASSBACKUP_TEST_HOOKS
	if (r == 0 && getenv("CASSBACKUP_TEST_PRUNE_CATALOG_FULL")) /* the catalog's disk filled */
		r = -ENOSPC;
#endif
	for (size_t i = 0; i < n && r == 0; i++)
		r = catalog_remove_pack(c, k[i]->id);
	r = r ?: catalog_commit(c);
	if (r < 0) {
		catalog_rollback(c);
		sb_printf(err, "deleted %zu pack%s of %s, but cannot drop them from the catalog (the "
			  "next open will): %s", n, n == 1 ? "" : "s", p->location, catalog_reason(c, r));
	}
	return r;
}

/* A planned pack is deleted now when it is due (unused from the start, or repacked) and, by
 * the catalog as the exclusive lock found the store, still no backup reads from it. */
static bool due(const struct prune_pack *k)
{
	return !k->gone && (k->action == PRUNE_DELETE || (k->action == PRUNE_REPACK && k->copied));
}

/* Clears in_use of the due packs no backup reads from by the catalog now. The catalog is
 * walked by id, as the plan was made. */
struct recheck {
	prune *p;
	size_t i;
};

static int recheck_pack(void *ctx, const struct cb_pack_usage *u)
{
	struct recheck *rc = ctx;
	prune *p = rc->p;
	while (rc->i < p->npacks && p->packs[rc->i].id < u->id)
		rc->i++;
	struct prune_pack *k = rc->i < p->npacks ? &p->packs[rc->i] : NULL;
	if (k && k->id == u->id && due(k))
		k->in_use = u->used > 0;
	return 0;
}

/* Judges the due packs again: in_use when a backup made since the plan reads from one (it
 * deduplicated against its blobs) or the catalog lacks it now (gone meanwhile). Those stay,
 * for a later prune. */
static int recheck(prune *p, struct strbuf *err)
{
	for (size_t i = 0; i < p->npacks; i++)
		p->packs[i].in_use = due(&p->packs[i]);
	catalog *c = store_catalog(p->store);
	struct recheck rc = {.p = p};
	int r = catalog_pack_usage(c, recheck_pack, &rc);
	if (r < 0) {
		sb_printf(err, "cannot read the catalog of %s: %s", p->location, catalog_reason(c, r));
		return r;
	}
	p->st.packs_in_use = 0;
	for (size_t i = 0; i < p->npacks; i++)
		p->st.packs_in_use += due(&p->packs[i]) && p->packs[i].in_use;
	return 0;
}

/* A delete request that failed may have reached the store all the same (no answer, a timeout,
 * a reset) and land later: the lock stays in place until it lapses (store_lock_keep), as
 * after a manifest write whose outcome is unknown, so no create takes the store meanwhile
 * and names a pack that is then deleted under it. Said in err. */
static void keep_lock_after_failed_delete(prune *p, struct strbuf *err)
{
	if (!cb_location_is_remote(p->location))
		return;
	store_lock_keep(p->lock);
	sb_puts(err, "; the lock is left in place until it lapses, so that no backup is made on "
		"what this delete may still remove");
}

/* Deletes the due packs no backup uses, PRUNE_BATCH at a time (one DeleteObjects on S3):
 * from the store, then from the catalog. A pack the catalog lacks now (gone meanwhile) counts
 * as used, so it is left alone. */
#define PRUNE_BATCH 1000
static int delete_due(prune *p, struct strbuf *err)
{
	struct prune_pack *k[PRUNE_BATCH];
	const char *keys[PRUNE_BATCH];
	int results[PRUNE_BATCH];
	for (size_t i = 0; i < p->npacks;) {
		size_t n = 0;
		for (; i < p->npacks && n < PRUNE_BATCH; i++)
			if (due(&p->packs[i]) && !p->packs[i].in_use) {
				k[n] = &p->packs[i];
				keys[n++] = p->packs[i].path;
			}
		if (n == 0)
			break;
		if (p->o.cancel && *p->o.cancel) {
			sb_puts(err, "interrupted");
			return -ECANCELED;
		}
		int r = store_lock_check(p->lock, err); /* the lease, held all along */
		if (r < 0)
			return r;
		r = cb_backend_delete_many(store_backend(p->store), keys, n, results);
		size_t gone = 0;
		for (size_t j = 0; j < n; j++)
			if (results[j] == 0 || results[j] == -ENOENT)
				k[gone++] = k[j];
		int rc = forget_deleted(p, k, gone, err);
		if (r < 0) {
			for (size_t j = 0; j < n; j++)
				if (results[j] < 0 && results[j] != -ENOENT) {
					sb_printf(err, "cannot delete %s/%s: %s", p->location, keys[j],
						  cb_backend_why(results[j]));
					break;
				}
			keep_lock_after_failed_delete(p, err);
			return r;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Deletes the segments due now, from the catalog just read again under the exclusive lock,
 * PRUNE_BATCH at a time, each batch only while the lease holds. */
static int delete_segments(prune *p, struct strbuf *err)
{
	struct commitlog_list l;
	bool *due;
	struct strbuf why = {0};
	int r = segments_due(p, &l, &due, &why);
	if (r < 0) {
		sb_printf(err, "commitlog segments of %s: %s", p->location, why.buf ? why.buf : strerror(-r));
		sb_free(&why);
		return r;
	}
	sb_free(&why);
	char *keys[PRUNE_BATCH];
	int results[PRUNE_BATCH];
	for (size_t i = 0; r == 0 && i < l.n;) {
		size_t n = 0;
		for (; r == 0 && i < l.n && n < PRUNE_BATCH; i++) {
			struct strbuf key = {0};
			if (due[i] && (r = commitlog_key(l.v[i].node, l.v[i].name, &key)) == 0)
				keys[n++] = key.buf;
		}
		if (r == 0 && p->o.cancel && *p->o.cancel) {
			sb_puts(err, "interrupted");
			r = -ECANCELED;
		}
		bool sent = false;
		if (r == 0 && n && (r = store_lock_check(p->lock, err)) == 0) {
			r = cb_backend_delete_many(store_backend(p->store), (const char *const *)keys, n, results);
			sent = true;
		}
		for (size_t j = 0; j < n; j++) {
			if (sent && (results[j] == 0 || results[j] == -ENOENT))
				p->st.segments_deleted++;
			else if (sent && !err->len)
				sb_printf(err, "cannot delete %s/%s: %s", p->location, keys[j], cb_backend_why(results[j]));
			free(keys[j]);
		}
		if (sent && r < 0)
			keep_lock_after_failed_delete(p, err);
	}
	free(due);
	commitlog_list_free(&l);
	return r;
}

/* The delete phase: the shared lease checked (a prune whose lease lapsed commits nothing
 * more), then the exclusive lock, so no create or copy runs; the catalog read again from a
 * complete reading of the store, which holds every backup made since the plan; the due packs
 * no backup reads from deleted; the upload leftovers of dead writers removed (on S3 only the
 * exclusive lock makes aborting multipart uploads safe). Then, when more is to be repacked,
 * the shared lock again. */
static int delete_phase(prune *p, bool more, struct strbuf *err)
{
	int r = store_lock_check(p->lock, err) ?: take_lock(p, true, err);
	if (r < 0)
		return r;
	p->st.delete_phases++;
	r = reconcile_strict(p, err) ?: recheck(p, err) ?: delete_due(p, err);
	if (r == 0 && !more)
		r = delete_segments(p, err);
	if (r < 0)
		return r;
	if (!p->st.reclaimed) {
		p->st.leftovers_err = cb_backend_reclaim(store_backend(p->store), &p->st.leftovers);
		p->st.reclaimed = true;
	}
	return more ? take_lock(p, false, err) : 0;
}

/* --- repack ------------------------------------------------------------------------------ */

/* A used blob of a pack being repacked, and the member it becomes. */
struct live {
	unsigned char sha256[32];
	uint64_t size, offset;
	char *member;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
};

struct live_list {
	struct live *v;
	size_t n, cap;
};

static void live_list_free(struct live_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].member);
	free(l->v);
	*l = (struct live_list){0};
}

static int add_live(void *ctx, const struct cb_live_blob *b)
{
	struct live_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct live *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct live *x = &l->v[l->n];
	*x = (struct live){.size = b->size, .offset = b->offset, .mode = b->mode, .uid = b->uid,
			   .gid = b->gid, .mtime_ns = b->mtime_ns};
	memcpy(x->sha256, b->sha256, 32);
	struct strbuf m = {0};
	int r = b->keyspace ? sb_printf(&m, "%s/%s%s%s/%s%s%s", b->keyspace, b->table,
					*b->table_id ? "-" : "", b->table_id, b->dir,
					*b->dir ? "/" : "", b->name)
			    : sb_printf(&m, "%s%s%s", b->dir, *b->dir ? "/" : "", b->name);
	if (r < 0)
		return r;
	x->member = m.buf;
	l->n++;
	return 0;
}

/* The new packs being written, and the packs copied into them. */
struct repack {
	prune *p;
	pack_cache *pc;
	struct strbuf *err;
	packer *pk;
	int64_t created_ns;
};

/* Repacked packs waiting for the delete phase may hold this many times the pack size: the
 * space a repack needs beyond the store's is bounded, and creates wait for deletes only. */
#define PRUNE_COPIED_PACKS 8

/* The packer's word that a new pack is in the store: registered and made the current location
 * of its blobs, in one transaction (then the packs they were copied from hold them unused);
 * then, when the copied packs waiting reach PRUNE_COPIED_PACKS pack sizes, a delete phase. */
static int pack_committed(void *ctx, const char *key, const struct pack_info *info,
			  const struct pack_index *pi)
{
	struct repack *rp = ctx;
	catalog *c = store_catalog(rp->p->store);
	struct cb_pack_info cp = {.path = key, .size = info->compressed, .frames = info->frames,
				  .created_ns = rp->created_ns, .index_offset = info->index_offset,
				  .index_size = info->index_size};
	memcpy(cp.table_sha256, info->table_sha256, 32);
	int64_t id;
	int r = catalog_begin(c);
	if (r == 0 && (r = store_register_pack(c, &cp, pi, &id) ?: catalog_prefer_pack(c, id) ?:
			   catalog_commit(c)) < 0)
		catalog_rollback(c);
	if (r < 0) {
		sb_printf(rp->err, "wrote %s/%s, but cannot register it in the catalog: %s",
			  rp->p->location, key, catalog_reason(c, r));
		return r;
	}
	rp->p->st.packs_written++;
	rp->p->st.bytes_written += info->compressed;
	uint64_t target = rp->p->o.pack_size ? rp->p->o.pack_size : PACK_DEFAULT_SIZE;
	if (rp->p->copied_bytes >= PRUNE_COPIED_PACKS * target)
		return delete_phase(rp->p, true, rp->err);
	return 0;
}

struct blob_reader {
	pack_cache *pc;
	const struct prune_pack *from;
	const struct live *b;
	const struct prune_opts *o;
	bool read_failed; /* the source pack failed, not the new pack's writing */
};

static int read_blob(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct blob_reader *br = ctx;
	if (br->o->cancel && *br->o->cancel)
		return -ECANCELED;
	int r = pack_cache_read(br->pc, br->from->path, br->b->offset + off, buf, len);
	br->read_failed = r < 0;
	if (r == 0 && br->o->progress)
		br->o->progress(br->o->pctx, len);
	return r;
}

/* Copies one blob into the new packs, checking that its bytes are the ones it names. */
static int copy_blob(struct repack *rp, const struct prune_pack *from, const struct live *b)
{
	struct pack_member m = {.path = b->member, .size = b->size, .mode = b->mode,
				.uid = b->uid, .gid = b->gid, .mtime_ns = b->mtime_ns};
	struct blob_reader br = {rp->pc, from, b, &rp->p->o, false};
	unsigned char sha[32];
	int r = packer_add_reader(rp->pk, &m, read_blob, &br, sha, NULL);
	char hex[65];
	hex_encode(b->sha256, 32, hex);
	if (r == 0 && memcmp(sha, b->sha256, 32) != 0) {
		sb_printf(rp->err, "blob %s in %s/%s does not match its SHA-256; that pack is kept "
			  "('cassbackup check --read-data' tells more)", hex, rp->p->location, from->path);
		return -EBADMSG;
	}
	if (r < 0 && rp->err->len)
		return r; /* a commit said why (registering, deleting) */
	if (r == -ECANCELED)
		sb_puts(rp->err, "interrupted");
	else if (r < 0 && *packer_errmsg(rp->pk))
		sb_printf(rp->err, "%s", packer_errmsg(rp->pk));
	else if (r < 0 && br.read_failed)
		sb_printf(rp->err, "cannot copy blob %s (%s) from %s/%s: %s", hex, b->member,
			  rp->p->location, from->path, r == -ENOMEM ? strerror(-r) : pack_cache_strerror(r));
	else if (r < 0)
		sb_printf(rp->err, "cannot write a new pack in %s (copying blob %s, %s): %s",
			  rp->p->location, hex, b->member, strerror(-r));
	if (r == 0)
		rp->p->st.bytes_rewritten += b->size;
	return r;
}

static int repack_one(struct repack *rp, struct prune_pack *k, struct live_list *live)
{
	prune *p = rp->p;
	catalog *c = store_catalog(p->store);
	/* the blobs used now: under the shared lock, backups may have come or gone since the
	 * plan; the delete phase judges the pack again from the catalog as it is then */
	int r = catalog_pack_live_blobs(c, k->id, add_live, live);
	if (r < 0) {
		sb_printf(rp->err, "cannot read the catalog of %s: %s", p->location, catalog_reason(c, r));
		return r;
	}
	for (size_t i = 0; r == 0 && i < live->n; i++)
		r = copy_blob(rp, k, &live->v[i]);
	if (r == 0) { /* due once the pack its last blob went into is committed */
		k->copied = true;
		p->copied_bytes += k->size;
	}
	return r;
}

static int repack_all(prune *p, struct strbuf *err)
{
	struct repack rp = {.p = p, .err = err, .created_ns = now_ns()};
	int r = store_pack_cache(p->store, &rp.pc);
	if (r < 0) {
		sb_printf(err, "cannot read packs of %s: %s", p->location, strerror(-r));
		return r;
	}
	struct packer_opts po = {.backend = store_backend(p->store), .target = p->o.pack_size,
				 .level = p->o.level, .threads = p->o.threads,
				 .frame_size = p->o.frame_size, .committed = pack_committed, .ctx = &rp};
	r = packer_new(&po, &rp.pk);
	for (size_t i = 0; r == 0 && i < p->npacks; i++) {
		if (p->packs[i].action != PRUNE_REPACK)
			continue;
		struct live_list live = {0};
		r = repack_one(&rp, &p->packs[i], &live);
		live_list_free(&live);
	}
	if (r == 0 && p->o.cancel && *p->o.cancel)
		r = -ECANCELED;
	if (r == 0 && (r = packer_finish(rp.pk)) < 0 && !err->len)
		sb_printf(err, "%s", packer_errmsg(rp.pk));
	if (r == -ECANCELED && !err->len)
		sb_puts(err, "interrupted");
	if (r == -ENOMEM && !err->len)
		sb_puts(err, "out of memory");
	packer_free(rp.pk); /* aborts a pack not committed */
	return r;
}

/* Does the plan delete anything: packs (deleted, or repacked and then deleted) or segments? */
static bool deletes_planned(const prune *p)
{
	return p->st.delete_packs || p->st.repack_packs || p->st.delete_segments;
}

/* Trades the shared lock for the exclusive one if no other command holds the store now,
 * without waiting: 0 (held), 1 with the holder described in busy (n bytes; the shared lock
 * still held then), or -errno with err. */
static int exclusive_if_free(prune *p, char *busy, size_t n, struct strbuf *err)
{
	int r = store_lock_check(p->lock, err);
	if (r < 0)
		return r;
	struct lock_info holder = {0};
	r = switch_lock(p, true, 0, &holder, err);
	if (r == -EBUSY) {
		describe_holder(&holder, busy, n);
		return 1;
	}
	if (r < 0 && r != -ETIMEDOUT)
		sb_printf(err, "cannot lock store %s: %s", p->location, cb_backend_why(r));
	return r;
}

/* With nothing to delete, the exclusive lock serves only the sweep of upload leftovers: it is
 * tried once, not waited for. Another node's create can hold the store for hours, and a
 * routine prune after a forget that kept everything failed after its wait (the backup job
 * then failed for a backup it had made); the sweep waits for the next prune. */
static int sweep_when_free(prune *p, struct strbuf *err)
{
	int r = exclusive_if_free(p, p->st.sweep_skipped_for, sizeof(p->st.sweep_skipped_for), err);
	if (r != 0)
		return r < 0 ? r : 0;
	p->st.delete_phases++;
	p->st.leftovers_err = cb_backend_reclaim(store_backend(p->store), &p->st.leftovers);
	p->st.reclaimed = true;
	return 0;
}

/* Repacks under the shared lock (in delete phases when the copied packs pile up), then ends
 * with a delete phase: also after a repack that failed on a pack (what was planned to go and
 * what was copied still goes), not after an interruption or a lapsed lease. With nothing to
 * delete, only the sweep (sweep_when_free); with if_idle, nothing while the store is in use. */
int prune_run(prune *p, struct strbuf *err)
{
	if (p->o.dry_run || *p->st.busy_skipped_for)
		return 0;
	if (!deletes_planned(p))
		return sweep_when_free(p, err);
	if (p->o.if_idle) { /* the store idle now: it goes on as any prune, under a shared lock */
		int q = exclusive_if_free(p, p->st.busy_skipped_for, sizeof(p->st.busy_skipped_for), err);
		if (q != 0)
			return q < 0 ? q : 0;
		if ((q = take_lock(p, false, err)) < 0)
			return skipped_for_another(p, &q, err) ? 0 : q;
	}
	int r = repack_all(p, err);
	if (skipped_for_another(p, &r, err)) /* a delete phase met a lock (if_idle) */
		return 0;
	if (r == -ECANCELED || r == -ETIMEDOUT || (r < 0 && p->exclusive))
		return r;
	struct strbuf then = {0};
	int d = delete_phase(p, false, r < 0 ? &then : err);
	if (r == 0 && skipped_for_another(p, &d, err))
		d = 0;
	if (d < 0 && r < 0)
		sb_printf(err, "; then %s", then.buf ? then.buf : strerror(-d));
	sb_free(&then);
	if (r < 0 || d < 0) /* a failure, not a stop: a lock met on the way is no excuse */
		p->st.busy_skipped_for[0] = '\0';
	return r < 0 ? r : d;
}
