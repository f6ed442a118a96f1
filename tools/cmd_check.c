/* cassbackup check: is the store whole?
 *
 * plan (options; the store opened as it is, under a shared lock) -> execute (the walk of
 * catalog/storecheck.h: the catalog brought up to date, every pack, with --read-data or
 * --read-data-subset the data of the chosen packs, every manifest, the catalog against the
 * store, stale locks and unused bytes; its findings kept as they come) -> report: the
 * information, then one line per problem, naming the object and the reason, then a summary.
 * Exit 1 when there is any problem.
 *
 * --read-data-subset n/M reads part n of M (the M runs 1/M .. M/M read every pack once), P% that
 * share of the packs (at least one), chosen at random for each run: see storecheck_select.
 */
#include "cli.h"
#include "metrics.h"
#include "lock.h"
#include "store.h"
#include "storecheck.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct check {
	const char *store;
	bool json;
	struct storecheck_subset sub;
	struct store *s;
	struct store_lock *lock;
	struct strv problems, info;
	bool oom;
	bool completed; /* the walk completed: st and problems are whole */
	struct storecheck_stats st;
};

/* "n/M" (1 <= n <= M) or "P%" (0 < P <= 100, decimals allowed). */
static int parse_subset(const char *arg, struct storecheck_subset *s)
{
	const char *slash = strchr(arg, '/');
	struct strbuf err = {0};
	int r = -EINVAL;
	if (slash) {
		_cleanup_free_ char *n = strndup(arg, (size_t)(slash - arg));
		if (n && parse_u64(n, 1, UINT32_MAX, &s->n, &err) == 0 &&
		    parse_u64(slash + 1, 1, UINT32_MAX, &s->m, &err) == 0 && s->n <= s->m) {
			s->kind = STORECHECK_READ_NTH;
			r = 0;
		}
	} else {
		size_t len = strlen(arg), digits = strspn(arg, "0123456789.");
		char *end = NULL;
		double p = len > 1 && digits == len - 1 && arg[len - 1] == '%' ? strtod(arg, &end) : 0;
		if (end == arg + len - 1 && p > 0 && p <= 100) {
			s->kind = STORECHECK_READ_SHARE;
			s->share = p / 100;
			s->seed = random_below(UINT64_MAX);
			r = 0;
		}
	}
	sb_free(&err);
	return r;
}

/* A finding of the walk, kept for the report. */
static int on_finding(void *ctx, enum storecheck_finding kind, const char *line)
{
	struct check *c = ctx;
	return strv_push(kind == STORECHECK_PROBLEM ? &c->problems : &c->info, line);
}

/* ---- report --------------------------------------------------------------------------------- */

static void report_json(struct check *c)
{
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	json_object_begin(&j);
	json_key(&j, "problems");
	json_array_begin(&j);
	for (size_t i = 0; i < c->problems.n; i++)
		json_str(&j, c->problems.v[i]);
	json_array_end(&j);
	json_key(&j, "info");
	json_array_begin(&j);
	for (size_t i = 0; i < c->info.n; i++)
		json_str(&j, c->info.v[i]);
	json_array_end(&j);
	json_key(&j, "summary");
	json_object_begin(&j);
	json_kv_u64(&j, "backups", c->st.backups);
	json_kv_u64(&j, "packs", c->st.packs);
	json_kv_u64(&j, "blobs", c->st.blobs);
	json_kv_u64(&j, "bytes", c->st.bytes);
	json_kv_u64(&j, "packs_read", c->st.packs_read);
	json_kv_u64(&j, "bytes_read", c->st.bytes_read);
	json_kv_u64(&j, "unused_blobs", c->st.unused_blobs);
	json_kv_u64(&j, "unused_bytes", c->st.unused_bytes);
	json_kv_u64(&j, "stale_locks", c->st.stale_locks);
	json_kv_u64(&j, "commitlog_segments", c->st.segments);
	json_kv_u64(&j, "commitlog_segments_read", c->st.segments_read);
	json_kv_u64(&j, "problems", c->problems.n);
	json_kv_bool(&j, "encrypted", store_encrypted(c->s));
	json_object_end(&j);
	json_object_end(&j);
	sb_puts(&out, "\n");
	if (json_error(&j) < 0)
		c->oom = true;
	else
		fputs(out.buf, stdout);
	sb_free(&out);
}

static void print_lines(const char *prefix, const struct strv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		struct strbuf o = {0};
		sb_puts(&o, prefix);
		sb_escape(&o, v->v[i]);
		sb_puts(&o, "\n");
		fputs(o.buf ? o.buf : "out of memory\n", stdout);
		sb_free(&o);
	}
}

/* "info    ..." lines, "PROBLEM ..." lines, then one summary line. */
static void report_text(struct check *c)
{
	print_lines("info    ", &c->info);
	print_lines("PROBLEM ", &c->problems);
	char size[32], got[32];
	format_bytes(c->st.blob_bytes, size, sizeof(size));
	format_bytes(c->st.bytes_read, got, sizeof(got));
	printf("%zu backup%s, %zu pack%s (%zu blobs, %s)", c->st.backups, c->st.backups == 1 ? "" : "s",
	       c->st.packs, c->st.packs == 1 ? "" : "s", c->st.blobs, size);
	if (c->st.segments)
		printf(", %zu commitlog segment%s", c->st.segments, c->st.segments == 1 ? "" : "s");
	printf(" checked");
	if (c->sub.kind != STORECHECK_READ_NONE && c->st.segments)
		printf("; data of %zu pack%s and %zu segment%s read (%s)", c->st.packs_read,
		       c->st.packs_read == 1 ? "" : "s", c->st.segments_read,
		       c->st.segments_read == 1 ? "" : "s", got);
	else if (c->sub.kind != STORECHECK_READ_NONE)
		printf("; data of %zu pack%s read (%s)", c->st.packs_read, c->st.packs_read == 1 ? "" : "s", got);
	if (c->problems.n)
		printf(": %zu problem%s\n", c->problems.n, c->problems.n == 1 ? "" : "s");
	else
		printf(": no problems\n");
}

/* ---- plan and execute ----------------------------------------------------------------------- */

/* Opens the store as it is (reconciling is part of the check) and takes a shared lock. */
static int plan(struct check *c)
{
	int rc = cli_store_open(c->store, STORE_NO_RECONCILE, &c->s);
	if (rc)
		return rc;
	if (store_encrypted(c->s)) {
		char line[160];
		snprintf(line, sizeof(line), "store is encrypted (AES-256-GCM, chunks of %u bytes); the key "
			 "given opens key slot %s", (unsigned)store_get_config(c->s)->crypt_chunk,
			 store_key_slot(c->s));
		if (strv_push(&c->info, line) < 0)
			c->oom = true;
	}
	return cli_store_lock(c->s, c->store, false, "check", 0, &c->lock) < 0 ? CB_EXIT_FAILED
										: CLI_RUN;
}

static int execute(struct check *c)
{
	struct strbuf err = {0};
	struct storecheck_opts o = {.read = c->sub, .lock = c->lock, .cancel = &cancel_requested,
				    .finding = on_finding, .ctx = c};
	int r = storecheck_run(c->s, &o, &c->st, &err);
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(c->store);
		errorf("cannot check store %s: %s", shown ? shown : "", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return CB_EXIT_FAILED;
	}
	c->completed = true;
	if (c->json)
		report_json(c);
	else
		report_text(c);
	return c->problems.n ? CB_EXIT_FAILED : CB_EXIT_OK;
}

/* This run in the configuration's metrics_file: a check that found problems failed; the
 * problems are counted when the walk completed. */
static void record_metrics(struct check *c, int rc, double secs)
{
	struct metrics_run run = {.operation = "check", .store = c->store, .ok = rc == CB_EXIT_OK,
				  .seconds = secs};
	if (c->completed)
		metrics_set(&run, METRIC_PROBLEMS, c->problems.n);
	if (rc == CB_EXIT_OK)
		metrics_set(&run, METRIC_READ_BYTES, c->st.bytes_read);
	metrics_record_configured(&run);
}

static void check_free(struct check *c)
{
	store_lock_release(c->lock);
	store_close(c->s);
	strv_free(&c->problems);
	strv_free(&c->info);
}

int cmd_check(int argc, char **argv)
{
	struct check c = {0};
	bool read_all = false;
	const char *subset = NULL;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &c.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "read-data", .type = OPT_FLAG, .value = &read_all,
		 .help = "also decode every pack and check every blob's SHA-256"},
		{.name = "read-data-subset", .type = OPT_STRING, .value = &subset, .arg = "n/M|P%",
		 .help = "read only the packs of part n of M, or P% of the packs (deterministic)"},
		{.name = "json", .type = OPT_FLAG, .value = &c.json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {
		.name = "check",
		.description = "Checks that the store is whole: every manifest parses, every file's bytes are in\n"
			       "some pack's index, every pack's trailer, seek table and index verify, and the\n"
			       "catalog agrees with the store; with --read-data, every blob is decoded and its\n"
			       "SHA-256 checked. Stale locks and unused bytes are reported as information.\n"
			       "Exit 1 when there is any problem, each on one line naming the object.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (read_all && subset)
		return cli_usage_error(&cmd, "give --read-data or --read-data-subset, not both");
	if (subset && parse_subset(subset, &c.sub) < 0) {
		_cleanup_free_ char *shown = cli_escape(subset);
		return cli_usage_error(&cmd, "--read-data-subset %s: expected n/M (1 <= n <= M) or P%% "
				       "(0 < P <= 100)", shown ? shown : "");
	}
	if (read_all)
		c.sub.kind = STORECHECK_READ_ALL;
	install_cancel_handlers();
	double t0 = mono_seconds();
	rc = plan(&c);
	if (rc == CLI_RUN)
		rc = execute(&c);
	record_metrics(&c, rc, mono_seconds() - t0);
	check_free(&c);
	return rc;
}

