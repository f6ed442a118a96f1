/* cassbackup prune: free the space of packs that no backup uses any more.
 *
 * plan (options; catalog/prune.h locks the store, reconciles its catalog and decides per pack:
 * delete, repack or keep) -> execute (prune_run, unless --dry-run) -> report (what each pack
 * gets, then bytes freed, rewritten and kept, as text or JSON).
 */
#include "cli.h"
#include "metrics.h"
#include "packer.h"
#include "store.h"
#include "prune.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LOCK_WAIT 60

struct prune_cmd {
	const char *store;
	const char *max_unused_arg;
	unsigned max_unused;
	bool dry_run, json, if_idle;
	bool left_to_another; /* --if-idle found the store in use: nothing was done */
	uint64_t lock_wait, pack_size;
	char *shown; /* the store, escaped for messages */
	struct metrics_run run; /* what the metrics file gets (metrics.h) */
};

/* --max-unused: a percentage, "5" or "5%". */
static int parse_percent(const struct cli_command *cmd, struct prune_cmd *c)
{
	c->max_unused = PRUNE_DEFAULT_MAX_UNUSED;
	if (!c->max_unused_arg)
		return CLI_RUN;
	char buf[32];
	size_t n = strlen(c->max_unused_arg);
	if (n > 0 && n < sizeof(buf) && c->max_unused_arg[n - 1] == '%')
		n--;
	snprintf(buf, sizeof(buf), "%.*s", (int)(n < sizeof(buf) ? n : 0), c->max_unused_arg);
	struct strbuf err = {0};
	uint64_t v;
	int r = parse_u64(buf, 0, 100, &v, &err);
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(c->max_unused_arg);
		cli_usage_error(cmd, "--max-unused %s: %s (a percentage, 0 to 100)", shown ? shown : "",
				err.buf ? err.buf : "invalid");
	}
	sb_free(&err);
	c->max_unused = (unsigned)v;
	return r < 0 ? CB_EXIT_USAGE : CLI_RUN;
}

static void lock_waiting(void *ctx, const struct lock_info *h)
{
	const struct prune_cmd *c = ctx;
	_cleanup_free_ char *host = cli_escape(h->host), *what = cli_escape(h->command);
	errorf("store %s is locked by %s (pid %lld on %s, %s); waiting up to %llu s for it to go",
	       c->shown ? c->shown : "", what ? what : "", (long long)h->pid, host ? host : "",
	       h->exclusive ? "exclusive" : "shared", (unsigned long long)c->lock_wait);
}

/* --- report ------------------------------------------------------------------------------ */

static const char *action_name(enum prune_action a)
{
	return a == PRUNE_DELETE ? "delete" : a == PRUNE_REPACK ? "repack" : "keep";
}

/* "12.5%", with "<0.1%" and ">99.9%" where rounding would say 0 or 100 of what is not. */
static void unused_share(const struct prune_pack *k, char *out, size_t n)
{
	uint64_t unused = k->blob_bytes - k->used_bytes;
	double pct = k->blob_bytes ? (double)(unused * 100.0L / k->blob_bytes) : 0;
	if (unused && pct < 0.1)
		snprintf(out, n, "<0.1%%");
	else if (k->used_bytes && pct > 99.9)
		snprintf(out, n, ">99.9%%");
	else
		snprintf(out, n, "%.1f%%", pct);
}

/* Totals as done (or, in a dry run, as planned). */
struct totals {
	unsigned packs_after, deleted, repacked, written;
	uint64_t freed, rewritten, written_bytes, kept;
};

static void totals_of(const struct prune_cmd *c, const struct prune_stats *st, struct totals *t)
{
	if (c->dry_run) {
		*t = (struct totals){.deleted = st->delete_packs, .repacked = st->repack_packs,
				     .rewritten = st->repack_used_bytes, .freed = st->freed_estimate};
		t->packs_after = st->keep_packs + (st->repack_packs ? 1 : 0);
	} else {
		*t = (struct totals){.deleted = st->packs_deleted, .repacked = st->packs_repacked,
				     .written = st->packs_written, .rewritten = st->bytes_rewritten,
				     .written_bytes = st->bytes_written};
		t->freed = st->bytes_removed > st->bytes_written ? st->bytes_removed - st->bytes_written : 0;
		t->packs_after = st->packs - st->packs_deleted - st->packs_repacked + st->packs_written;
	}
	uint64_t after = st->bytes + t->written_bytes - (c->dry_run ? 0 : st->bytes_removed);
	t->kept = c->dry_run ? st->bytes - st->freed_estimate : after;
}

/* The unused blob bytes of the packs still there, when an --if-idle prune stopped before its
 * plan was carried out: a repacked pack's blobs are all copies now. */
static uint64_t unused_left(const prune *p)
{
	size_t n;
	const struct prune_pack *k = prune_packs(p, &n);
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		if (!k[i].gone)
			sum += k[i].copied ? k[i].blob_bytes : k[i].blob_bytes - k[i].used_bytes;
	return sum;
}

/* key: v, or null when the store was not looked at (an --if-idle prune that found it in use
 * at its start): what was there is unknown, not 0. */
static void json_kv_seen(struct json *j, const struct prune_stats *st, const char *key, uint64_t v)
{
	json_key(j, key);
	if (st->planned)
		json_u64(j, v);
	else
		json_null(j);
}

static void report_json(const struct prune_cmd *c, const prune *p, double secs, const char *error)
{
	const struct prune_stats *st = prune_get_stats(p);
	struct totals t;
	totals_of(c, st, &t);
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	json_object_begin(&j);
	json_kv_str(&j, "store", c->store);
	json_kv_bool(&j, "dry_run", c->dry_run);
	json_kv_u64(&j, "max_unused_percent", c->max_unused);
	json_key(&j, "packs");
	json_object_begin(&j);
	json_kv_seen(&j, st, "before", st->packs);
	json_kv_u64(&j, "deleted", t.deleted);
	json_kv_u64(&j, "repacked", t.repacked);
	json_kv_u64(&j, "written", t.written);
	json_kv_seen(&j, st, "after", t.packs_after);
	json_kv_seen(&j, st, "unreadable", st->bad_packs);
	json_kv_u64(&j, "in_use_again", st->packs_in_use);
	json_object_end(&j);
	json_key(&j, "bytes");
	json_object_begin(&j);
	json_kv_seen(&j, st, "before", st->bytes);
	json_kv_u64(&j, "freed", t.freed);
	json_kv_u64(&j, "rewritten", t.rewritten);
	json_kv_u64(&j, "written", t.written_bytes);
	json_kv_seen(&j, st, "kept", t.kept);
	json_kv_seen(&j, st, "unused_kept", *st->busy_skipped_for ? unused_left(p) : st->keep_unused_bytes);
	json_object_end(&j);
	json_key(&j, "commitlog_segments");
	json_object_begin(&j);
	json_kv_seen(&j, st, "before", st->segments);
	json_kv_seen(&j, st, "due", st->delete_segments);
	json_kv_u64(&j, "deleted", st->segments_deleted);
	json_kv_seen(&j, st, "unreadable", st->bad_segments);
	json_object_end(&j);
	json_kv_u64(&j, "upload_leftovers_removed", st->leftovers);
	json_key(&j, "not_pruned_store_in_use_by");
	if (*st->busy_skipped_for)
		json_str(&j, st->busy_skipped_for);
	else
		json_null(&j);
	json_key(&j, "leftovers_not_looked_for");
	if (*st->sweep_skipped_for) /* the holder of the store, when nothing else was due */
		json_str(&j, st->sweep_skipped_for);
	else
		json_null(&j);
	json_kv_u64(&j, "delete_phases", st->delete_phases);
	json_key(&j, "actions");
	json_array_begin(&j);
	size_t n;
	const struct prune_pack *k = prune_packs(p, &n);
	for (size_t i = 0; i < n; i++) {
		if (k[i].action == PRUNE_KEEP)
			continue;
		json_object_begin(&j);
		json_kv_str(&j, "pack", k[i].path);
		json_kv_str(&j, "action", action_name(k[i].action));
		json_kv_u64(&j, "size", k[i].size);
		json_kv_u64(&j, "used_bytes", k[i].used_bytes);
		json_kv_u64(&j, "unused_bytes", k[i].blob_bytes - k[i].used_bytes);
		json_kv_bool(&j, "done", k[i].gone);
		json_kv_bool(&j, "in_use_again", k[i].in_use && !k[i].gone);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_key(&j, "seconds");
	json_i64(&j, (int64_t)(secs * 1000) / 1000); /* whole seconds */
	if (error)
		json_kv_str(&j, "error", error);
	json_object_end(&j);
	if (json_error(&j) == 0)
		fputs(out.buf, stdout);
	sb_free(&out);
}

static void report_plan_text(const struct prune_cmd *c, const prune *p)
{
	const struct prune_stats *st = prune_get_stats(p);
	char size[32], b1[32], pct[16];
	format_bytes(st->bytes, size, sizeof(size));
	printf("store %s: %u pack%s, %s\n", c->shown ? c->shown : "", st->packs,
	       st->packs == 1 ? "" : "s", size);
	size_t n;
	const struct prune_pack *k = prune_packs(p, &n);
	for (size_t i = 0; i < n; i++) {
		if (k[i].action == PRUNE_KEEP)
			continue;
		format_bytes(k[i].size, b1, sizeof(b1));
		unused_share(&k[i], pct, sizeof(pct));
		if (k[i].action == PRUNE_DELETE)
			printf("  %s %s  %s: no backup uses it\n", c->dry_run ? "would delete" : "delete",
			       k[i].path, b1);
		else
			printf("  %s %s  %s: %s unused\n", c->dry_run ? "would repack" : "repack",
			       k[i].path, b1, pct);
	}
	if (st->delete_segments)
		printf("  %s %u commitlog segment%s of %u: no kept backup needs %s\n",
		       c->dry_run ? "would delete" : "delete", st->delete_segments,
		       st->delete_segments == 1 ? "" : "s", st->segments, st->delete_segments == 1 ? "it" : "them");
	if (st->bad_segments)
		printf("  %u commitlog segment%s cannot be read and %s left alone\n", st->bad_segments,
		       st->bad_segments == 1 ? "" : "s", st->bad_segments == 1 ? "is" : "are");
	if (st->bad_packs)
		printf("  %u pack%s in packs/ cannot be read and %s left alone ('cassbackup check' "
		       "names them)\n", st->bad_packs, st->bad_packs == 1 ? "" : "s",
		       st->bad_packs == 1 ? "is" : "are");
}

/* What became of the commitlog segments due and the upload leftovers of dead writers. */
static void report_sweep(const struct prune_stats *st)
{
	if (st->segments_deleted)
		printf("deleted %u commitlog segment%s no kept backup needs\n", st->segments_deleted,
		       st->segments_deleted == 1 ? "" : "s");
	if (st->leftovers)
		printf("removed %u upload leftover%s\n", st->leftovers, st->leftovers == 1 ? "" : "s");
	if (*st->sweep_skipped_for)
		printf("upload leftovers not looked for: the store is in use by %s; the next prune "
		       "looks\n", st->sweep_skipped_for);
}

/* An --if-idle prune that found the store in use, at its start or on its way. */
static void report_stop(const prune *p, const struct totals *t)
{
	const struct prune_stats *st = prune_get_stats(p);
	char unused[32];
	format_bytes(unused_left(p), unused, sizeof(unused));
	if (!t->deleted && !t->repacked && !t->written)
		printf("not pruned (--if-idle): the store is in use by %s; a prune when it is not "
		       "(the backup job of the last node to finish) frees what is due\n", st->busy_skipped_for);
	else
		printf("stopped (--if-idle) after deleting %u pack%s and writing %u: the store is in use "
		       "by %s; %s unused is left for a prune when it is not\n", t->deleted,
		       t->deleted == 1 ? "" : "s", t->written, st->busy_skipped_for, unused);
	report_sweep(st);
}

/* The outcome; after a failure (failed), only what was done before it, if anything. */
static void report_text(const struct prune_cmd *c, const prune *p, double secs, bool failed)
{
	const struct prune_stats *st = prune_get_stats(p);
	struct totals t;
	totals_of(c, st, &t);
	if (failed && !t.deleted && !t.repacked && !t.written)
		return;
	char freed[32], rewritten[32], kept[32], unused[32];
	format_bytes(t.freed, freed, sizeof(freed));
	format_bytes(t.rewritten, rewritten, sizeof(rewritten));
	format_bytes(t.kept, kept, sizeof(kept));
	format_bytes(st->keep_unused_bytes, unused, sizeof(unused));
	if (c->dry_run) {
		printf("would delete %u pack%s and repack %u (rewriting %s): would free about %s, "
		       "keep about %s in %u pack%s (%s unused)\n", t.deleted, t.deleted == 1 ? "" : "s",
		       t.repacked, rewritten, freed, kept, t.packs_after, t.packs_after == 1 ? "" : "s",
		       unused);
		return;
	}
	if (*st->busy_skipped_for && !failed) {
		report_stop(p, &t);
		return;
	}
	if (!t.deleted && !t.repacked && !failed) {
		printf("%s: kept %s in %u pack%s (%s unused)\n",
		       st->segments_deleted ? "no pack to prune" : "nothing to prune", kept, t.packs_after,
		       t.packs_after == 1 ? "" : "s", unused);
		report_sweep(st);
		return;
	}
	printf("deleted %u pack%s, repacked %u into %u: freed %s, rewrote %s, kept %s in %u pack%s "
	       "(%s unused) in %.1f s\n", t.deleted, t.deleted == 1 ? "" : "s", t.repacked, t.written,
	       freed, rewritten, kept, t.packs_after, t.packs_after == 1 ? "" : "s", unused, secs);
	if (st->packs_in_use)
		printf("kept %u pack%s planned to go: backups made meanwhile use %s\n",
		       st->packs_in_use, st->packs_in_use == 1 ? "" : "s",
		       st->packs_in_use == 1 ? "it" : "them");
	report_sweep(st);
}

/* --- execute ----------------------------------------------------------------------------- */

/* A finished prune's figures for the metrics file. */
static void count_done(struct prune_cmd *c, const struct prune_stats *st)
{
	struct totals t;
	totals_of(c, st, &t);
	c->run.ok = true;
	metrics_set(&c->run, METRIC_READ_BYTES, st->bytes_rewritten);
	metrics_set(&c->run, METRIC_WRITTEN_BYTES, st->bytes_written);
	metrics_set(&c->run, METRIC_FREED_BYTES, t.freed);
}

static int execute(struct prune_cmd *c)
{
	struct progress prog;
	progress_init(&prog, "repacking", 0, 0);
	struct prune_opts o = {.max_unused = c->max_unused, .dry_run = c->dry_run, .if_idle = c->if_idle,
			       .lock_wait_seconds = (int)c->lock_wait, .lock_waiting = lock_waiting,
			       .lock_ctx = c, .progress = progress_add, .pctx = &prog,
			       .cancel = &cancel_requested, .pack_size = c->pack_size};
	struct strbuf err = {0};
	double start = mono_seconds();
	prune *p;
	struct store *s;
	/* opened as its catalog is: the prune reconciles it itself, under its lock */
	int r = cli_store_open(c->store, STORE_NO_RECONCILE, &s);
	if (r != 0)
		return r;
	r = prune_begin(s, &o, &p, &err);
	if (r < 0) {
		errorf("prune: %s", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		store_close(s);
		return exit_code_for(r);
	}
	const struct prune_stats *st = prune_get_stats(p);
	if (!c->json && !*st->busy_skipped_for) /* --if-idle: none was made, the store in use */
		report_plan_text(c, p);
	prog.total_bytes = st->repack_used_bytes;
	r = prune_run(p, &err);
	progress_end(&prog);
	if (st->leftovers_err)
		errorf("prune: cannot look for upload leftovers in %s: %s, ignoring", c->shown,
		       strerror(-st->leftovers_err));
	if (r < 0)
		errorf("prune: %s", err.buf ? err.buf : strerror(-r));
	c->left_to_another = r == 0 && *st->busy_skipped_for;
	if (r == 0)
		count_done(c, st);
	if (c->json)
		report_json(c, p, mono_seconds() - start, r < 0 ? (err.buf ? err.buf : strerror(-r)) : NULL);
	else
		report_text(c, p, mono_seconds() - start, r < 0);
	sb_free(&err);
	prune_free(p);
	store_close(s);
	return r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}

int cmd_prune(int argc, char **argv)
{
	struct prune_cmd c = {.lock_wait = DEFAULT_LOCK_WAIT};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &c.store, .arg = "S",
		 .help = "the store (a directory or s3://bucket/prefix)", .config_key = "store",
		 .flags = OPT_REQUIRED},
		{.name = "max-unused", .type = OPT_STRING, .value = &c.max_unused_arg, .arg = "PERCENT",
		 .help = "unused share of the store to tolerate (0-100, default 5)"},
		{.name = "dry-run", .short_name = 'n', .type = OPT_FLAG, .value = &c.dry_run,
		 .help = "say what would be done; change nothing"},
		{.name = "lock-wait", .type = OPT_U64, .value = &c.lock_wait, .arg = "SECONDS",
		 .help = "wait this long for other commands' locks to go (default 60)", .max = 86400},
		{.name = "pack-size", .type = OPT_SIZE, .value = &c.pack_size, .arg = "SIZE",
		 .help = "bytes of tar stream per new pack (default 512M)", .config_key = "pack_size",
		 .min = PACK_MIN_SIZE},
		{.name = "if-idle", .type = OPT_FLAG, .value = &c.if_idle,
		 .help = "only if no other command holds the store now; else do nothing, exit 0"},
		{.name = "json", .type = OPT_FLAG, .value = &c.json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "prune",
		.description =
			"Frees the space no backup uses any more (after backups/NAME.json went, as\n"
			"forget does): deletes packs that hold no blob of a remaining backup, repacks\n"
			"packs, the most unused first, until at most --max-unused percent of the store\n"
			"is unused (copies the used blobs into a new pack, then deletes the old one),\n"
			"and removes what interrupted creates left (upload leftovers, packs no\n"
			"manifest references). Plans and repacks under a shared lock, beside creates;\n"
			"deletes under the exclusive lock, judging each pack again first. Killed at any\n"
			"point, it loses no blob of a remaining backup; run it again to finish. Exit 1\n"
			"when it could not finish.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc == CLI_RUN)
		rc = parse_percent(&cmd, &c);
	if (rc != CLI_RUN)
		return rc;
	c.shown = cli_escape(c.store);
	install_cancel_handlers();
	double t0 = mono_seconds();
	c.run = (struct metrics_run){.operation = "prune", .store = c.store};
	rc = execute(&c);
	c.run.seconds = mono_seconds() - t0;
	/* a dry run changes nothing, and --if-idle that found the store in use did nothing:
	 * neither is a prune's run (the time of the last one stays: CassbackupNoRecentPrune) */
	if (!c.dry_run && !c.left_to_another)
		metrics_record_configured(&c.run);
	free(c.shown);
	return rc;
}
