/* cassbackup copy: copy backups from one store to another, deduplicating at the target.
 *
 * plan (options; open the source read-only and the target, take the target's shared lock;
 * the names to copy) -> execute (catalog/copy.h, one backup at a time: each is its own commit,
 * a failure of one does not stop the others; then the commitlog segments their point-in-time
 * restores need, per node) -> report (a line per backup and per node, or JSON).
 */
#include "cli.h"
#include "cluster.h"
#include "packer.h"
#include "copy.h"
#include "lock.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LOCK_WAIT_SECONDS 60
#define MAX_THREADS 256

struct copy_cmd {
	const char *from, *to, *node;
	const char *to_key_file; /* the target's key file (NULL: --key-file's) */
	bool all, dry_run, json;
	bool no_commitlogs;
	bool to_plain; /* an encrypted source may be copied into a plain target */
	uint64_t level, threads, pack_size;
	char *from_shown, *to_shown; /* escaped for messages */
	struct store *src, *dst;
	struct store_lock *lock;
	struct strv names;
	struct progress prog;
};

/* What happened to one backup, for the report. */
struct copy_item {
	const char *name;
	int r;                /* backup_copy's return */
	bool missing;         /* r < 0 because the backup is not in the source (not a 404 of a write) */
	struct copy_stats st;
	char *error;          /* its one line, when r < 0 (owned) */
	double seconds;
};

/* The commitlog segments copied for one node (every node: node NULL, from --all). */
struct segment_item {
	const char *node;    /* a copy_item's st.node, or NULL */
	const char *host_id; /* its st.host_id: a node replaced under its name has backups of
			      * two host ids, and segments of each under other names */
	struct commitlog_start from; /* the union of the windows of its copied backups: the
				      * earliest start, the least id seen */
	int r;
	struct segment_copy_stats st;
	char *error;       /* its one line, when r < 0 (owned) */
};

/* --- plan -------------------------------------------------------------------------------- */

static int add_name(void *ctx, const struct cb_backup_summary *b)
{
	struct copy_cmd *c = ctx;
	if (b->invalid) {
		_cleanup_free_ char *shown = cli_escape(b->name);
		errorf("copy: %s in the catalog of %s: %s, skipping", shown ? shown : "", c->from_shown,
		       b->invalid);
		return 0;
	}
	return strv_push(&c->names, b->ref);
}

/* NAME: every node's backup of it (with --node, that node's); a name the source lacks is
 * kept as it is, for the copy to report as missing in its turn. */
static int names_given(struct copy_cmd *c, const char *name)
{
	catalog *cat = store_catalog(c->src);
	struct node_backups nb = {0};
	int n = node_backups_named(cat, name, &nb);
	node_backups_free(&nb);
	if (n <= 0 && !c->node)
		return strv_push(&c->names, name) < 0 ? CB_EXIT_FAILED : 0;
	return cluster_pick(c->src, c->from_shown, name, c->node, true, &c->names);
}

/* --all: every backup of the source, oldest first. */
static int names_of_source(struct copy_cmd *c)
{
	catalog *cat = store_catalog(c->src);
	int r = catalog_list_backups(cat, add_name, c);
	if (r < 0) {
		char why[256];
		errorf("cannot list backups of %s: %s", c->from_shown, catalog_why(cat, r, why, sizeof(why)));
		return CB_EXIT_FAILED;
	}
	return CB_EXIT_OK;
}

/* Backups of an encrypted store go into a plain one only when --to-plain says so: a target
 * whose config was made to say plain (and its key slots moved away) by someone without the
 * key would otherwise get them in plaintext. And --to-plain promises a plain target. */
/* The option that gave a secret for the target, or NULL: --to-key-file, else --key-file or
 * --passphrase-file (the configuration's key_file or passphrase_file included), which are the
 * target's too except with --to-plain, where they are the source's alone. */
static const char *target_secret_option(const struct copy_cmd *c)
{
	const struct store_options *o = cli_store_settings();
	if (c->to_key_file)
		return "--to-key-file";
	if (c->to_plain)
		return NULL;
	return o->key_file ? "--key-file" : o->passphrase_file ? "--passphrase-file" : NULL;
}

static int check_plaintext_meant(const struct copy_cmd *c)
{
	if (c->to_plain && store_encrypted(c->dst)) {
		errorf("--to-plain: store %s is encrypted (give its key with --to-key-file instead)",
		       c->to_shown);
		return CB_EXIT_USAGE;
	}
	if (store_encrypted(c->dst))
		return 0;
	/* a plain target: a key given for it says it should not be (as create refuses it); a key
	 * given by the options the source shares says so only where the source does not */
	const char *secret = target_secret_option(c);
	if (secret && (c->to_key_file || !store_encrypted(c->src))) {
		errorf("%s: store %s is not encrypted, and copy does not write plaintext when given "
		       "a key for it (give --to-plain if a plain target is meant)", secret, c->to_shown);
		return CB_EXIT_USAGE;
	}
	if (!c->to_plain && store_encrypted(c->src)) {
		errorf("refusing to copy encrypted store %s into %s, a plain store: its backups would be "
		       "stored there in plaintext (give --to-plain if that is meant)", c->from_shown,
		       c->to_shown);
		return CB_EXIT_USAGE;
	}
	return 0;
}

static int open_stores(struct copy_cmd *c)
{
	/* --key-file may be the target's (--to-key-file's default): a plain source takes it */
	int rc = cli_store_open(c->from, STORE_READONLY | STORE_KEY_IF_ENCRYPTED, &c->src);
	if (rc == 0)
		rc = cli_store_open_key(c->to, (c->dry_run ? STORE_READONLY : 0) | STORE_KEY_IF_ENCRYPTED,
					c->to_key_file ? c->to_key_file : cli_store_settings()->key_file,
					&c->dst); /* what it turned out to be: check_plaintext_meant */
	rc = rc ?: check_plaintext_meant(c);
	if (rc == 0 && !c->dry_run &&
	    cli_store_lock(c->dst, c->to, false, "copy", LOCK_WAIT_SECONDS, &c->lock) < 0)
		rc = CB_EXIT_FAILED;
	/* Under the lock, no prune runs: what the target holds is read now, not as it was before
	 * a prune this copy waited for deleted packs (their blobs would be taken as present). */
	struct strbuf err = {0};
	if (rc == 0 && !c->dry_run && store_reconcile(c->dst, RECONCILE_PACKS, NULL, &err) < 0) {
		errorf("cannot read the packs of %s: %s", c->to_shown, err.buf ? err.buf : "out of memory");
		rc = CB_EXIT_FAILED;
	}
	sb_free(&err);
	return rc;
}

/* --- report ------------------------------------------------------------------------------ */

static void report_item_text(const struct copy_cmd *c, const struct copy_item *it)
{
	_cleanup_free_ char *name = cli_escape(it->name);
	if (it->r < 0)
		return; /* said by execute */
	if (it->st.outcome == COPY_PRESENT) {
		printf("%s: already in %s (the same backup); nothing to do\n", name ? name : "", c->to_shown);
		return;
	}
	char sent[32], there[32], pack[32];
	format_bytes(it->st.bytes_sent, sent, sizeof(sent));
	format_bytes(it->st.bytes_present, there, sizeof(there));
	format_bytes(it->st.pack_bytes, pack, sizeof(pack));
	if (it->st.outcome == COPY_PLANNED)
		printf("%s: would send %llu blob%s (%s), %llu blob%s (%s) already in %s\n",
		       name ? name : "", (unsigned long long)it->st.blobs_sent,
		       it->st.blobs_sent == 1 ? "" : "s", sent, (unsigned long long)it->st.blobs_present,
		       it->st.blobs_present == 1 ? "" : "s", there, c->to_shown);
	else
		printf("%s: copied to %s: sent %llu blob%s (%s, pack %s), %llu blob%s (%s) already "
		       "there, in %.1f s\n", name ? name : "", c->to_shown,
		       (unsigned long long)it->st.blobs_sent, it->st.blobs_sent == 1 ? "" : "s", sent,
		       pack, (unsigned long long)it->st.blobs_present,
		       it->st.blobs_present == 1 ? "" : "s", there, it->seconds);
}

static void report_segments_text(const struct copy_cmd *c, const struct segment_item *s)
{
	if (s->r < 0)
		return; /* said by execute */
	_cleanup_free_ char *node = s->node ? cli_escape(s->node) : NULL;
	_cleanup_free_ char *hid = s->host_id && *s->host_id ? cli_escape(s->host_id) : NULL;
	char sent[32], there[32];
	format_bytes(s->st.bytes_sent, sent, sizeof(sent));
	format_bytes(s->st.bytes_present, there, sizeof(there));
	printf("commitlog segments %s%s%s%s%s: %s %llu (%s), %llu (%s) already in %s\n",
	       s->node ? "of node " : "of every node", node ? node : "", hid ? " (host id " : "",
	       hid ? hid : "", hid ? ")" : "", c->dry_run ? "would send" : "sent", (unsigned long long)s->st.sent, sent,
	       (unsigned long long)s->st.present, there, c->to_shown);
}

static const char *outcome_name(const struct copy_item *it)
{
	if (it->r < 0)
		return it->missing ? "missing" : "failed";
	return it->st.outcome == COPY_PRESENT ? "present" : it->st.outcome == COPY_PLANNED ? "planned"
											  : "copied";
}

static void json_item(struct json *j, const struct copy_item *it)
{
	json_object_begin(j);
	json_kv_str(j, "name", it->name);
	json_kv_str(j, "result", outcome_name(it));
	json_kv_u64(j, "files", it->st.files);
	json_kv_u64(j, "bytes", it->st.bytes);
	json_kv_u64(j, "blobs_sent", it->st.blobs_sent);
	json_kv_u64(j, "bytes_sent", it->st.bytes_sent);
	json_kv_u64(j, "blobs_present", it->st.blobs_present);
	json_kv_u64(j, "bytes_present", it->st.bytes_present);
	json_kv_u64(j, "pack_bytes", it->st.pack_bytes);
	json_kv_double(j, "seconds", it->seconds, 3);
	if (it->r < 0)
		json_kv_str(j, "error", it->error ? it->error : "out of memory");
	json_object_end(j);
}

static void json_segments(struct json *j, const struct segment_item *s)
{
	json_object_begin(j);
	json_kv_str(j, "node", s->node); /* null: every node */
	json_kv_str(j, "host_id", s->host_id && *s->host_id ? s->host_id : NULL);
	json_kv_i64(j, "from_ms", s->from.ms);
	json_kv_str(j, "result", s->r < 0 ? "failed" : "copied");
	json_kv_u64(j, "segments_sent", s->st.sent);
	json_kv_u64(j, "bytes_sent", s->st.bytes_sent);
	json_kv_u64(j, "segments_present", s->st.present);
	json_kv_u64(j, "bytes_present", s->st.bytes_present);
	if (s->r < 0)
		json_kv_str(j, "error", s->error ? s->error : "out of memory");
	json_object_end(j);
}

static void report_json(const struct copy_cmd *c, const struct copy_item *items, size_t n,
			const struct segment_item *segs, size_t nsegs, double secs)
{
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	json_object_begin(&j);
	json_kv_str(&j, "from", c->from);
	json_kv_str(&j, "to", c->to);
	json_kv_bool(&j, "dry_run", c->dry_run);
	struct copy_stats t = {0};
	json_key(&j, "backups");
	json_array_begin(&j);
	for (size_t i = 0; i < n; i++) {
		json_item(&j, &items[i]);
		t.blobs_sent += items[i].st.blobs_sent;
		t.bytes_sent += items[i].st.bytes_sent;
		t.blobs_present += items[i].st.blobs_present;
		t.bytes_present += items[i].st.bytes_present;
		t.pack_bytes += items[i].st.pack_bytes;
	}
	json_array_end(&j);
	json_key(&j, "commitlogs");
	json_array_begin(&j);
	for (size_t i = 0; i < nsegs; i++)
		json_segments(&j, &segs[i]);
	json_array_end(&j);
	json_kv_u64(&j, "blobs_sent", t.blobs_sent);
	json_kv_u64(&j, "bytes_sent", t.bytes_sent);
	json_kv_u64(&j, "blobs_present", t.blobs_present);
	json_kv_u64(&j, "bytes_present", t.bytes_present);
	json_kv_u64(&j, "pack_bytes", t.pack_bytes);
	json_kv_double(&j, "seconds", secs, 3);
	json_object_end(&j);
	if (json_error(&j) == 0)
		fputs(out.buf, stdout);
	sb_free(&out);
}

/* --- execute ----------------------------------------------------------------------------- */

static void planned(void *pctx, const struct copy_stats *st)
{
	((struct progress *)pctx)->total_bytes = st->bytes_sent;
}

/* Copies one backup; on failure prints its one line (and keeps it in it->error). */
static void copy_one(struct copy_cmd *c, struct copy_item *it, struct strbuf *err)
{
	struct copy_opts o = {.level = (int)c->level, .threads = (unsigned)c->threads,
			      .pack_size = c->pack_size, .dry_run = c->dry_run, .cancel = &cancel_requested,
			      .progress = progress_add, .planned = planned, .pctx = &c->prog,
			      .lease = c->lock};
	double start = mono_seconds();
	err->len = 0;
	if (err->buf)
		err->buf[0] = '\0';
	it->r = backup_copy(c->src, c->dst, it->name, &o, &it->st, err);
	it->seconds = mono_seconds() - start;
	it->missing = it->r == -ENOENT && !err->len;
	if (it->missing) { /* its manifest is not there (a pack's absence says so) */
		report_no_such_backup(c->src, c->from_shown, it->name);
		it->error = strdup("no such backup");
	} else if (it->r < 0) {
		_cleanup_free_ char *name = cli_escape(it->name);
		errorf("cannot copy backup %s to %s: %s", name ? name : "", c->to_shown,
		       err->len ? err->buf : strerror(-it->r));
		it->error = strdup(err->len ? err->buf : strerror(-it->r));
	}
}

/* The nodes whose segments go, each from the earliest window of its backups copied (or
 * found there already): a point-in-time restore from the target replays from there on. */
static size_t plan_segments(const struct copy_cmd *c, const struct copy_item *items, size_t n,
			    struct segment_item *segs)
{
	if (c->no_commitlogs)
		return 0;
	if (c->all) {
		segs[0] = (struct segment_item){.node = NULL, .from = {INT64_MIN, -1}};
		return 1;
	}
	size_t nsegs = 0;
	for (size_t i = 0; i < n; i++) {
		if (items[i].r < 0 || !*items[i].st.node)
			continue;
		size_t k = 0;
		while (k < nsegs && (strcmp(segs[k].node, items[i].st.node) != 0 ||
				     strcasecmp(segs[k].host_id, items[i].st.host_id) != 0))
			k++;
		if (k == nsegs)
			segs[nsegs++] = (struct segment_item){.node = items[i].st.node,
							      .host_id = items[i].st.host_id,
							      .from = {INT64_MAX, INT64_MAX}};
		const struct commitlog_start *w = &items[i].st.window_start;
		if (w->ms < segs[k].from.ms)
			segs[k].from.ms = w->ms;
		if (w->seen_id < segs[k].from.seen_id)
			segs[k].from.seen_id = w->seen_id;
	}
	return nsegs;
}

/* Copies one node's segments; on failure prints its one line (and keeps it in s->error). */
static void copy_segments(struct copy_cmd *c, struct segment_item *s, struct strbuf *err)
{
	struct copy_opts o = {.level = (int)c->level, .dry_run = c->dry_run, .cancel = &cancel_requested};
	err->len = 0;
	if (err->buf)
		err->buf[0] = '\0';
	s->r = segments_copy(c->src, c->dst, s->node, s->host_id, &s->from, &o, &s->st, err);
	if (s->r < 0) {
		_cleanup_free_ char *node = s->node ? cli_escape(s->node) : NULL;
		errorf("cannot copy the commitlog segments %s%s to %s: %s",
		       s->node ? "of node " : "of every node", node ? node : "", c->to_shown,
		       err->len ? err->buf : strerror(-s->r));
		s->error = strdup(err->len ? err->buf : strerror(-s->r));
	}
}

static int execute(struct copy_cmd *c)
{
	struct copy_item *items = calloc(c->names.n ? c->names.n : 1, sizeof(*items));
	struct segment_item *segs = calloc(c->names.n ? c->names.n : 1, sizeof(*segs));
	if (!items || !segs) {
		free(items);
		free(segs);
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	struct strbuf err = {0};
	double start = mono_seconds();
	int rc = CB_EXIT_OK;
	size_t n = 0;
	for (; n < c->names.n && !cancel_requested; n++) {
		struct copy_item *it = &items[n];
		it->name = c->names.v[n];
		progress_init(&c->prog, "copying", 0, 0);
		copy_one(c, it, &err);
		progress_end(&c->prog);
		if (!c->json)
			report_item_text(c, it);
		if (it->r < 0 && rc != CB_EXIT_FAILED)
			rc = it->missing ? CB_EXIT_MISSING : CB_EXIT_FAILED;
	}
	if (n < c->names.n) { /* said already when the last one was the one interrupted */
		if (n == 0 || items[n - 1].r != -ECANCELED)
			errorf("copy: interrupted");
		rc = CB_EXIT_FAILED;
	}
	size_t nsegs = cancel_requested ? 0 : plan_segments(c, items, n, segs);
	for (size_t i = 0; i < nsegs && !cancel_requested; i++) {
		copy_segments(c, &segs[i], &err);
		if (!c->json)
			report_segments_text(c, &segs[i]);
		if (segs[i].r < 0)
			rc = CB_EXIT_FAILED;
	}
	if (c->json)
		report_json(c, items, n, segs, nsegs, mono_seconds() - start);
	for (size_t i = 0; i < n; i++)
		free(items[i].error);
	for (size_t i = 0; i < nsegs; i++)
		free(segs[i].error);
	free(items);
	free(segs);
	sb_free(&err);
	return rc;
}

static const char copy_description[] =
	"Copies backups from one store to another (a directory or s3://bucket/prefix, either\n"
	"way), deduplicating at the target: contents the target already holds are not sent;\n"
	"the others are read from the source's packs, each checked against its SHA-256, and\n"
	"streamed into new packs of --pack-size at the target (no local copy), then the\n"
	"backup's manifest is written there, byte for byte the source's. The source is only\n"
	"read (it may be read-only); the target's shared lock is held, as by create.\n"
	"A name the target already has: the same backup is left as it is (exit 0), another\n"
	"one is refused (exit 1). Interrupted or failing, a copy leaves no backup at the\n"
	"target; prune removes what it wrote. Each backup is copied on its own: a failure\n"
	"of one is reported and the others go on (exit 1; 3 when a name is not in the source).\n"
	"Then the Cassandra commitlog segments a point-in-time restore from those backups\n"
	"needs go too: of each backup's node, every segment archived since the start of its\n"
	"window (with --all, every segment of the store), each checked against its SHA-256;\n"
	"segments the target holds are not sent, and none is replaced.";

int cmd_copy(int argc, char **argv)
{
	struct copy_cmd c = {.level = 3};
	struct cli_option opts[] = {
		{.name = "from", .short_name = 'f', .type = OPT_STRING, .value = &c.from, .arg = "STORE",
		 .help = "the store to copy from (a directory or s3://bucket/prefix)",
		 .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "to", .short_name = 't', .type = OPT_STRING, .value = &c.to, .arg = "STORE",
		 .help = "the store to copy to", .flags = OPT_REQUIRED},
		{.name = "to-key-file", .type = OPT_STRING, .value = &c.to_key_file, .arg = "FILE",
		 .config_key = "to_key_file",
		 .help = "the key file of an encrypted target store (default: --key-file's)"},
		{.name = "to-plain", .type = OPT_FLAG, .value = &c.to_plain,
		 .help = "the target is a plain store: an encrypted source's backups go there in plaintext"},
		{.name = "all", .type = OPT_FLAG, .value = &c.all, .help = "copy every backup of the source"},
		{.name = "node", .type = OPT_STRING, .value = &c.node, .arg = "NODE",
		 .help = "only this node's backup of each NAME (host id, a prefix of it, node name or address)"},
		{.name = "dry-run", .short_name = 'n', .type = OPT_FLAG, .value = &c.dry_run,
		 .help = "say what would be sent; change nothing"},
		{.name = "level", .short_name = 'l', .type = OPT_U64, .value = &c.level, .arg = "N",
		 .help = "zstd level of the new packs (default 3)", .min = 1, .max = 19},
		{.name = "threads", .short_name = 'j', .type = OPT_U64, .value = &c.threads, .arg = "N",
		 .help = "compression threads (default: all cores)", .max = MAX_THREADS},
		{.name = "pack-size", .type = OPT_SIZE, .value = &c.pack_size, .arg = "SIZE",
		 .help = "bytes of tar stream per new pack (default 512M)", .config_key = "pack_size",
		 .min = PACK_MIN_SIZE},
		{.name = "no-commitlogs", .type = OPT_FLAG, .value = &c.no_commitlogs,
		 .help = "copy no commitlog segments (point-in-time restore from the target then "
			 "replays none)"},
		{.name = "json", .type = OPT_FLAG, .value = &c.json, .help = "print JSON for scripts"},
		{0},
	};
	struct cli_command cmd = {.name = "copy", .operands = "NAME...", .max_operands = -1,
				  .description = copy_description, .options = opts};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (c.all == (first < argc))
		return cli_usage_error(&cmd, c.all ? "give NAME... or --all, not both"
						   : "missing NAME... (or --all)");
	if (c.all && c.node)
		return cli_usage_error(&cmd, CLUSTER_ALL_WITH_NODE);
	const struct cli_option *tk = cli_find_option(&cmd, "to-key-file");
	if (c.to_plain && tk->given && !tk->from_config)
		return cli_usage_error(&cmd, "give --to-plain or --to-key-file, not both");
	if (c.to_plain)
		c.to_key_file = NULL; /* the configuration's to_key_file is not for a plain target */
	c.from_shown = cli_escape(c.from);
	c.to_shown = cli_escape(c.to);
	install_cancel_handlers();
	rc = open_stores(&c);
	for (int i = first; rc == 0 && i < argc; i++)
		rc = names_given(&c, argv[i]);
	if (rc == 0 && c.all)
		rc = names_of_source(&c);
	if (rc == 0)
		rc = execute(&c);
	store_lock_release(c.lock);
	store_close(c.dst);
	store_close(c.src);
	strv_free(&c.names);
	free(c.from_shown);
	free(c.to_shown);
	return rc;
}
