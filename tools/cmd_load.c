/* cassbackup load: stream a backup into a cluster of another topology with sstableloader.
 *
 * The store is mounted (or --mount names a mount) and sstableloader runs once per table on
 *   <mount>/backups/<NAME>/<ks>/<table>
 * whose last two path components are the keyspace and table it loads into. With
 * --target-keyspace, a directory <tmp>/<keyspace>/<target>/<table> of links to the table's files
 * stands in (two tables of one name in two keyspaces of the backup are refused: both would load
 * into <target>.<table>).
 * Secondary-index subdirectories are never streamed: the target cluster rebuilds its indexes.
 *
 * Each table's outcome (started, finished, status, duration, attempts, the loader's last error
 * line) goes to a record, rewritten after every table; a re-run skips tables the record says
 * were loaded unless --force. There is one record per (backup, target hosts, target keyspace),
 * under the state directory (--state-dir, 'load_state_dir', else /var/lib/cassbackup/load):
 *   STATE/[NAME.]KEY.json   the record; KEY = SHA-256 of the backup's identity and the hosts
 *                           (and --target-keyspace, when given)
 *   STATE/[NAME.]KEY.d/     one loader log per table, and mount.log
 * The backup's identity is not its name alone (a name can be reused in another store, or after
 * a backup is forgotten): it is the SHA-256 of name, creation time, node and host id. The hosts
 * count as a set (order and repeats ignored). --status-file FILE names the record instead (its
 * logs in FILE.d/). Nothing is written to the current directory.
 *
 * Three steps: plan (parse, check every program, credential and name, read the catalog and the
 * record; nothing changes yet), execute (mount, run the loaders, stop them on a signal,
 * unmount), report. Whatever happens after the mount (a failed table, INT/TERM/HUP, a closed
 * stdout: SIGPIPE is ignored) the loaders are reaped and the mount and its daemon are gone
 * before we exit.
 */
#include "backup_files.h"
#include "cli.h"
#include "cluster.h"
#include "store.h"
#include "exec.h"
#include "hash.h"
#include "mounter.h"
#include "schema_ddl.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define LOAD_STATE_DIR "/var/lib/cassbackup/load"

enum tstatus { T_PENDING, T_RUNNING, T_OK, T_FAILED, T_SKIPPED, T_INTERRUPTED };
static const char *const status_names[] = {"pending", "running", "ok", "failed", "skipped", "interrupted"};

struct ltable {
	char *keyspace, *table;
	enum tstatus status;
	pid_t pid;
	unsigned attempts;
	int64_t started_ns, finished_ns;
	double next_try; /* monotonic seconds */
	char last_error[512];
	char log[PATH_MAX];
	/* T_SKIPPED: what the record said of the run that loaded it, kept in the record */
	char prev_started[32], prev_finished[32];
	uint64_t prev_ms;
};

struct load_opts {
	const char *store, *name, *hosts, *target_ks, *loader, *mount, *status_file, *state_dir;
	const char *node; /* --node: the node whose backup NAME, when several have one */
	uint64_t throttle, parallel, retries, retry_delay; /* throttle 0: not given */
	struct selection sel;
	struct strv loader_options; /* --loader-option / sstableloader_option: NAME[=VALUE] */
	bool json, force;
	bool create_schema;         /* --create-schema: through cqlsh, before anything streams */
	struct cqlsh_conf cqlsh;
	struct strv cqlsh_options;
};

/* Who the backup is, whatever it is called: see the top of the file. */
struct backup_identity {
	char *node, *host_id;
	int64_t created_ns;
	char id[33]; /* 128 bits of SHA-256, hex */
};

/* What plan_load decided; nothing has changed on disk yet. */
struct load_plan {
	struct ltable *t;
	size_t n;
	size_t system_left;      /* tables of system keyspaces not taken (selection_takes) */
	struct backup_identity who;
	char *hosts_key;         /* the hosts as a set: sorted, no repeats */
	char throttle[24];       /* -t MBITS; "" when not given */
	char loader[PATH_MAX];   /* sstableloader, as exec_find found it */
	char mount_dir[PATH_MAX]; /* --mount, resolved; "" when we mount the store ourselves */
	const char *user;        /* sstableloader_user; with password, or neither */
	char *password;          /* the first line of sstableloader_password_file */
	struct strv loader_args, loader_args_shown; /* the options passed through (shown: no passwords) */
	struct strbuf status_file, log_dir, mount_log;
};

/* What execute_load made and close_source undoes. */
struct load_run {
	struct mounter m;        /* our mount, when not --mount */
	struct strbuf bdir;      /* <mount>/backups/<NAME> */
	struct tmpdir staging;   /* --target-keyspace links (tmpdir.h); path NULL: none */
	size_t running;
};

static const char hidden_password[] = "********";

/* --- the record ------------------------------------------------------------------------------ */

static void iso(int64_t ns, char *buf, size_t n)
{
	if (ns)
		format_time_utc(ns, buf, n);
	else
		snprintf(buf, n, "%s", "");
}

/* The first keys of table t's object as the JSON writer writes them inside the record's
 * "tables" array: {"keyspace": KS, "table": T, "status": STATUS. */
static void table_json_head(struct json *j, const struct ltable *t, const char *status)
{
	json_object_begin(j);
	json_kv_str(j, "keyspace", t->keyspace);
	json_kv_str(j, "table", t->table);
	json_kv_str(j, "status", status);
}

/* A table loaded by an earlier run stays "ok" in the record, with that run's times and
 * attempts, and "loaded_before": true; so every later run skips it too. */
static void table_json(struct json *j, const struct ltable *t)
{
	bool before = t->status == T_SKIPPED;
	char s[64], f[64];
	iso(t->started_ns, s, sizeof(s));
	iso(t->finished_ns, f, sizeof(f));
	table_json_head(j, t, before ? "ok" : status_names[t->status]);
	json_kv_str(j, "started", before ? t->prev_started : s);
	json_kv_str(j, "finished", before ? t->prev_finished : f);
	json_kv_u64(j, "duration_ms", before ? t->prev_ms : t->finished_ns > t->started_ns && t->started_ns
				      ? (uint64_t)(t->finished_ns - t->started_ns) / 1000000 : 0);
	json_kv_u64(j, "attempts", t->attempts);
	json_kv_str(j, "last_error", t->last_error);
	json_kv_str(j, "log", t->log);
	if (before)
		json_kv_bool(j, "loaded_before", true);
	json_object_end(j);
}

/* The record: the backup (name and identity), the target hosts, one object per table. */
static int record_json(const struct load_opts *o, const struct load_plan *p, struct strbuf *sb)
{
	struct json j;
	char created[64];
	iso(p->who.created_ns, created, sizeof(created));
	json_init(&j, sb);
	json_object_begin(&j);
	json_kv_str(&j, "backup", o->name);
	json_kv_str(&j, "backup_id", p->who.id);
	json_kv_str(&j, "created", created);
	json_kv_str(&j, "node", p->who.node);
	json_kv_str(&j, "host_id", p->who.host_id);
	json_kv_str(&j, "hosts", p->hosts_key);
	json_kv_str(&j, "target_keyspace", o->target_ks ? o->target_ks : "");
	json_key(&j, "tables");
	json_array_begin(&j);
	for (size_t i = 0; i < p->n; i++)
		table_json(&j, &p->t[i]);
	json_array_end(&j);
	json_object_end(&j);
	return json_error(&j);
}

/* Writes the record (tmp, fsync, rename), or prints it to stdout. 0 or -errno, said. */
static int write_status(const struct load_opts *o, const struct load_plan *p, bool to_stdout)
{
	_cleanup_(sb_free) struct strbuf j = {0}, tmp = {0};
	int r = record_json(o, p, &j);
	if (r < 0) {
		errorf("cannot write the load record: %s", strerror(-r));
		return r;
	}
	if (to_stdout)
		return fputs(j.buf, stdout) < 0 ? -EIO : 0;
	sb_printf(&tmp, "%s.tmp", p->status_file.buf);
	int fd = tmp.buf ? open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	r = !tmp.buf ? -ENOMEM : fd < 0 ? -errno : write_full(fd, j.buf, j.len);
	if (fd >= 0 && r == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r == 0 && rename(tmp.buf, p->status_file.buf) < 0)
		r = -errno;
	if (r < 0)
		errorf("cannot write status file %s: %s", p->status_file.buf, strerror(-r));
	return r;
}

/* Does text (a record) hold `"key": VALUE` with VALUE as the JSON writer writes it? */
static bool record_has(const char *text, const char *key, const char *value)
{
	_cleanup_(sb_free) struct strbuf want = {0};
	sb_json_str(&want, key);
	sb_puts(&want, ": ");
	sb_json_str(&want, value);
	return want.buf && strstr(text, want.buf) != NULL;
}

/* The end ('}') of the JSON object starting at obj, strings skipped; NULL when cut short. */
static const char *object_end(const char *obj)
{
	bool in_str = false;
	for (const char *c = obj; *c; c++) {
		if (in_str && *c == '\\' && c[1])
			c++;
		else if (*c == '"')
			in_str = !in_str;
		else if (!in_str && *c == '}')
			return c;
	}
	return NULL;
}

/* The value of key in the object [obj, end) the record holds: a string without escapes (the
 * times) or a number, as text into out. */
static void old_field(const char *obj, const char *end, const char *key, char *out, size_t n)
{
	_cleanup_(sb_free) struct strbuf k = {0};
	sb_json_str(&k, key);
	sb_puts(&k, ": ");
	out[0] = '\0';
	const char *v = k.buf ? strstr(obj, k.buf) : NULL;
	if (!v || v >= end)
		return;
	v += k.len;
	bool str = *v == '"';
	size_t len = strcspn(v + str, str ? "\"\\" : ",}");
	if (v + str + len < end)
		snprintf(out, n, "%.*s", (int)len, v + str);
}

/* Marks t loaded before, keeping what the record says of that run (the object at obj). */
static void carry_over(struct ltable *t, const char *obj)
{
	const char *end = object_end(obj);
	char num[32];
	if (!end)
		return; /* a record cut short: load it again */
	old_field(obj, end, "started", t->prev_started, sizeof(t->prev_started));
	old_field(obj, end, "finished", t->prev_finished, sizeof(t->prev_finished));
	old_field(obj, end, "duration_ms", num, sizeof(num));
	t->prev_ms = strtoull(num, NULL, 10);
	old_field(obj, end, "attempts", num, sizeof(num));
	t->attempts = (unsigned)strtoul(num, NULL, 10);
	t->status = T_SKIPPED;
}

/* Tables an earlier run loaded into the same hosts and keyspace: status "ok" in a record of
 * this backup. */
static void mark_done_before(const struct load_opts *o, struct load_plan *p)
{
	_cleanup_free_ char *text = NULL;
	if (read_small_file(p->status_file.buf, 64 << 20, &text, NULL) < 0)
		return;
	/* a record from before target_keyspace was written does not tell which keyspace its
	 * tables went into (a load with --target-keyspace had the same record): none is skipped */
	if (!record_has(text, "backup_id", p->who.id) || !record_has(text, "hosts", p->hosts_key) ||
	    !record_has(text, "target_keyspace", o->target_ks ? o->target_ks : ""))
		return; /* another backup, hosts or keyspace: --status-file named a record of those */
	for (size_t i = 0; i < p->n; i++) {
		_cleanup_(sb_free) struct strbuf sb = {0};
		struct json j;
		json_init(&j, &sb);
		json_array_begin(&j); /* nested as in the record: the object's keys are inline */
		table_json_head(&j, &p->t[i], "ok");
		const char *head = sb.buf ? strchr(sb.buf, '{') : NULL;
		const char *obj = json_error(&j) == 0 && head ? strstr(text, head) : NULL;
		if (obj)
			carry_over(&p->t[i], obj);
	}
}

/* --- plan ----------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* hosts (a list host_list_ok accepts) as a set: sorted, without repeats, comma-separated.
 * Malloc'd; NULL on ENOMEM. */
static char *hosts_as_set(const char *hosts)
{
	_cleanup_free_ char *copy = strdup(hosts);
	_cleanup_free_ char **v = NULL;
	size_t n = 0;
	char *save = NULL;
	if (!copy)
		return NULL;
	for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save))
		if (ptrv_push(&v, &n, h) < 0)
			return NULL;
	qsort(v, n, sizeof(*v), cmp_str);
	struct strbuf sb = {0};
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(v[i], v[i - 1]))
			sb_printf(&sb, "%s%s", sb.len ? "," : "", v[i]);
	return sb.buf;
}

/* sstableloader_user and sstableloader_password_file: both or neither, as sstableloader wants
 * them ("Username and password must both be provided"); the password is read once, here. */
static int plan_credentials(struct load_plan *p)
{
	const char *pwf = config_get("sstableloader_password_file");
	p->user = config_get("sstableloader_user");
	if (!p->user != !pwf) {
		errorf("%s is set but %s is not: sstableloader needs a user and a password together",
		       p->user ? "sstableloader_user" : "sstableloader_password_file",
		       p->user ? "sstableloader_password_file" : "sstableloader_user");
		return CB_EXIT_USAGE;
	}
	if (!pwf)
		return 0;
	int r = read_small_file(pwf, 4096, &p->password, NULL);
	if (r < 0) {
		errorf("sstableloader_password_file %s: %s", pwf, strerror(-r));
		return CB_EXIT_USAGE;
	}
	p->password[strcspn(p->password, "\r\n")] = '\0';
	if (!p->password[0]) {
		errorf("sstableloader_password_file %s: empty first line, expected the password", pwf);
		return CB_EXIT_USAGE;
	}
	return 0;
}

/* The sstableloader options passed through, checked (sstableloader_option) into p->loader_args,
 * and as the log shows them (passwords hidden). 0 or the exit status (said). */
static int plan_loader_options(const struct load_opts *o, struct load_plan *p)
{
	for (size_t i = 0; i < o->loader_options.n; i++) {
		struct strbuf err = {0};
		size_t before = p->loader_args.n;
		int r = sstableloader_option(&p->loader_args, o->loader_options.v[i], &err);
		for (size_t k = before; r == 0 && k < p->loader_args.n; k++) {
			bool secret = k > before && strstr(p->loader_args.v[before], "password");
			r = strv_push(&p->loader_args_shown, secret ? hidden_password : p->loader_args.v[k]);
		}
		if (r < 0) {
			_cleanup_free_ char *shown = cli_escape(err.buf ? err.buf : "");
			if (r == -ENOMEM)
				errorf("out of memory");
			else
				errorf("--loader-option %s", shown ? shown : "");
			sb_free(&err);
			return r == -ENOMEM ? CB_EXIT_FAILED : CB_EXIT_USAGE;
		}
		sb_free(&err);
	}
	return 0;
}

/* The programs and settings a load needs, checked before anything changes: the host list, the
 * loader and the mount helper (found and executable), the credentials. 0 or CB_EXIT_USAGE. */
static int plan_programs(const struct load_opts *o, struct load_plan *p)
{
	if (!host_list_ok(o->hosts)) {
		_cleanup_free_ char *shown = cli_escape(o->hosts);
		errorf("--hosts %s: expected HOST[,HOST...] without spaces or empty entries", shown ? shown : "");
		return CB_EXIT_USAGE;
	}
	if (!(p->hosts_key = hosts_as_set(o->hosts)))
		return errorf("out of memory"), CB_EXIT_FAILED;
	int r = exec_find(o->loader, p->loader, sizeof(p->loader));
	if (r < 0) {
		errorf("cannot run %s: %s (sstableloader: --sstableloader PATH or 'sstableloader =' in "
		       "the configuration)", p->loader, strerror(-r));
		return CB_EXIT_USAGE;
	}
	if (o->mount) {
		if (!realpath(o->mount, p->mount_dir)) {
			errorf("--mount %s: %s", o->mount, strerror(errno));
			return CB_EXIT_USAGE;
		}
	} else {
		char helper[PATH_MAX];
		r = mounter_find_helper(helper, sizeof(helper));
		if (r < 0) {
			errorf("cannot run the mount helper %s: %s (install mount.cassbackup, set 'mount_helper =' "
			       "in the configuration, or give --mount DIR)", helper, strerror(-r));
			return CB_EXIT_USAGE;
		}
	}
	if (o->throttle)
		snprintf(p->throttle, sizeof(p->throttle), "%llu", (unsigned long long)o->throttle);
	return plan_loader_options(o, p) ?: plan_credentials(p);
}

static int copy_identity(void *ctx, const struct cb_backup_summary *b)
{
	struct backup_identity *w = ctx;
	w->created_ns = b->created_ns;
	w->node = strdup(b->node ? b->node : "");
	w->host_id = strdup(b->host_id ? b->host_id : "");
	if (!w->node || !w->host_id)
		return -ENOMEM;
	_cleanup_(sb_free) struct strbuf sb = {0};
	unsigned char sha[32];
	/* NUL-separated: no two different (name, created, node, host id) give the same bytes */
	sb_printf(&sb, "cassbackup backup identity 1%c%s%c%lld%c%s%c%s%c", 0, b->name, 0,
		  (long long)b->created_ns, 0, w->node, 0, w->host_id, 0);
	if (!sb.buf || sha256_buf(sb.buf, sb.len, sha) < 0)
		return -ENOMEM;
	hex_encode(sha, 16, w->id);
	return 0;
}

/* Where the record and logs go: --status-file, else STATE/[NAME.]KEY.json (see the top). */
static int plan_record_path(const struct load_opts *o, struct load_plan *p)
{
	if (o->status_file) {
		sb_puts(&p->status_file, o->status_file);
	} else {
		_cleanup_(sb_free) struct strbuf k = {0};
		unsigned char sha[32];
		char key[33];
		sb_printf(&k, "%s%c%s", p->who.id, 0, p->hosts_key);
		if (o->target_ks) /* without it, the key records of earlier versions have */
			sb_printf(&k, "%c%s", 0, o->target_ks);
		if (!k.buf || sha256_buf(k.buf, k.len, sha) < 0)
			return -ENOMEM;
		hex_encode(sha, 8, key);
		/* the name too when it is plain and short, for a person listing the directory */
		bool plain = strlen(o->name) <= 64 && strspn(o->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM"
			     "NOPQRSTUVWXYZ0123456789_-.") == strlen(o->name) && o->name[0] != '.';
		sb_printf(&p->status_file, "%s/%s%s%s.json", o->state_dir, plain ? o->name : "",
			  plain ? "." : "", key);
	}
	if (!p->status_file.buf)
		return -ENOMEM;
	sb_printf(&p->log_dir, "%.*s.d", (int)(p->status_file.len - (o->status_file ? 0 : 5)),
		  p->status_file.buf);
	sb_printf(&p->mount_log, "%s/mount.log", p->log_dir.buf);
	return p->log_dir.buf && p->mount_log.buf ? 0 : -ENOMEM;
}

/* Appends the selected tables of ts to p. 0 or -ENOMEM. */
static int plan_select(struct load_opts *o, const struct tables *ts, struct load_plan *p)
{
	if (!(p->t = calloc(ts->n + 1, sizeof(*p->t))))
		return -ENOMEM;
	for (size_t i = 0; i < ts->n; i++) {
		const char *ks = ts->v[i].keyspace, *table = ts->v[i].table;
		if (!selection_takes(&o->sel, ks, table)) {
			p->system_left += is_system_keyspace(ks);
			continue;
		}
		if (!name_is_component(ks) || !name_is_component(table)) {
			_cleanup_free_ char *shown = cli_escape(o->name);
			errorf("backup %s: a table with an invalid keyspace or table name, ignoring", shown ? shown : "");
			continue;
		}
		struct ltable *t = &p->t[p->n];
		if (!(t->keyspace = strdup(ks)) || !(t->table = strdup(table))) {
			free(t->keyspace);
			return -ENOMEM;
		}
		p->n++;
	}
	return 0;
}

/* With --target-keyspace, no two selected tables of one name (from two keyspaces): both would
 * load into target.table. 0 or the exit code (said). */
static int plan_check_target(const struct load_opts *o, const struct load_plan *p)
{
	for (size_t i = 0; o->target_ks && i < p->n; i++)
		for (size_t k = i + 1; k < p->n; k++)
			if (!strcmp(p->t[i].table, p->t[k].table)) {
				_cleanup_free_ char *target = cli_escape(o->target_ks);
				errorf("cannot load into keyspace %s: tables %s.%s and %s.%s would both load "
				       "into %s.%s; choose one keyspace with --keyspace", target ? target : "",
				       p->t[i].keyspace, p->t[i].table, p->t[k].keyspace, p->t[k].table,
				       target ? target : "", p->t[k].table);
				return CB_EXIT_FAILED;
			}
	return 0;
}

/* Every --keyspace/--table names something in the backup: else nothing is loaded. */
static int plan_check_selection(const struct load_opts *o)
{
	const struct selection_entry *miss = selection_unmatched(&o->sel);
	if (!miss)
		return 0;
	_cleanup_(sb_free) struct strbuf m = {0};
	_cleanup_free_ char *shown = cli_escape(o->name);
	sb_selection_entry(&m, miss);
	errorf("nothing to load: %s is not in backup %s", m.buf ? m.buf : "", shown ? shown : "");
	return CB_EXIT_FAILED;
}

/* The backup (its identity: CB_EXIT_MISSING when there is none), its tables, the selection,
 * where the record goes and what an earlier run loaded. 0 or the exit code. */
static int plan_tables(struct load_opts *o, struct load_plan *p)
{
	struct store *st;
	struct tables ts = {0};
	char why[512];
	int r = cli_store_open(o->store, STORE_READONLY, &st), rc = CB_EXIT_FAILED;
	if (r != 0)
		return r;
	catalog *cat = store_catalog(st);
	struct strv ref = {0};
	/* one state of the catalog (a reindex beside it may renumber rows) */
	if ((r = catalog_read_begin(cat)) < 0) {
		errorf("cannot read catalog of %s: %s", o->store, catalog_why(cat, r, why, sizeof(why)));
		goto out;
	}
	if ((rc = cluster_pick(st, o->store, o->name, o->node, false, &ref)) != 0)
		goto out;
	rc = CB_EXIT_FAILED;
	r = catalog_get_backup(cat, ref.v[0], copy_identity, &p->who);
	if (r == 0)
		rc = report_no_such_backup(st, o->store, o->name);
	else if (r < 0)
		errorf("cannot read catalog of %s: %s", o->store, catalog_why(cat, r, why, sizeof(why)));
	if (r <= 0 || load_tables(st, o->store, ref.v[0], &ts) < 0) {
		strv_free(&ref);
		goto out;
	}
	strv_free(&ref);
	if (plan_select(o, &ts, p) < 0 || plan_record_path(o, p) < 0) {
		errorf("cannot plan the load of %s: %s", o->name, strerror(ENOMEM));
		goto out;
	}
	if ((rc = plan_check_selection(o)) != 0 || (rc = plan_check_target(o, p)) != 0)
		goto out;
	for (size_t i = 0; i < p->n; i++)
		snprintf(p->t[i].log, sizeof(p->t[i].log), "%s/%s.%s.log", p->log_dir.buf, p->t[i].keyspace,
			 p->t[i].table);
	if (!o->force)
		mark_done_before(o, p);
	rc = 0;
out:
	catalog_rollback(cat);
	tables_free(&ts);
	store_close(st);
	return rc;
}

/* Everything load checks and decides before it changes anything. 0 or the exit code. */
static int plan_load(struct load_opts *o, struct load_plan *p)
{
	if (o->target_ks && !name_is_component(o->target_ks)) {
		_cleanup_free_ char *shown = cli_escape(o->target_ks);
		errorf("--target-keyspace %s: not a keyspace name", shown ? shown : "");
		return CB_EXIT_USAGE;
	}
	int rc = plan_programs(o, p) ?: plan_tables(o, p);
	if (rc == 0 && p->system_left && !o->json)
		printf("note: %zu table%s of the system keyspaces left out: --keyspace names system_auth, "
		       "system_distributed or system_traces\n", p->system_left, p->system_left == 1 ? "" : "s");
	return rc;
}

static void plan_free(struct load_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->t[i].keyspace);
		free(p->t[i].table);
	}
	free(p->t);
	free(p->who.node);
	free(p->who.host_id);
	free(p->hosts_key);
	strv_free(&p->loader_args);
	strv_free(&p->loader_args_shown);
	if (p->password) {
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	sb_free(&p->status_file);
	sb_free(&p->log_dir);
	sb_free(&p->mount_log);
}

/* --- execute -------------------------------------------------------------------------------- */

/* Whether dir is a node backup's directory in the mount (it has the backup's xattrs), and
 * (want != NULL) the one of that node: same host id, or same node name when it has none. */
static bool is_backup_dir(const char *dir, const struct backup_identity *want)
{
	char v[256];
	bool by_id = want && *want->host_id; /* every backup's directory has .node; .host_id if known */
	ssize_t n = getxattr(dir, by_id ? "user.cassbackup.host_id" : "user.cassbackup.node", v, sizeof(v) - 1);
	if (n < 0)
		return false;
	v[n] = '\0';
	return !want || !strcmp(v, by_id ? want->host_id : want->node);
}

/* <mount>/backups/<NAME> of a name several nodes have is a directory of node directories
 * (mount.cassbackup(8)): dir becomes the one of node who. 0, or -ENOENT. */
static int find_node_dir(struct strbuf *dir, const struct backup_identity *who)
{
	DIR *d = opendir(dir->buf);
	struct dirent *e;
	struct strbuf p = {0};
	int r = -ENOENT;
	while (d && r < 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		p.len = 0;
		if (sb_printf(&p, "%s/%s", dir->buf, e->d_name) == 0 && is_backup_dir(p.buf, who)) {
			sb_free(dir);
			*dir = p;
			p = (struct strbuf){0};
			r = 0;
		}
	}
	if (d)
		closedir(d);
	sb_free(&p);
	return r;
}

/* The mount to read from (ours, or --mount), <mount>/backups/<NAME> in it, and the staging
 * directory for --target-keyspace. 0, or -errno after saying why (-EINTR: a signal came). */
static int open_source(const struct load_opts *o, const struct load_plan *p, struct load_run *r)
{
	const char *mnt = p->mount_dir;
	if (!o->mount) {
		char why[700];
		int e = mounter_start(&r->m, o->store, "load", p->mount_log.buf, &cancel_requested, why,
				      sizeof(why));
		if (e < 0) {
			errorf("cannot mount store %s: %s", o->store, why);
			return e;
		}
		mnt = r->m.dir.path;
	}
	sb_printf(&r->bdir, "%s/backups/%s", mnt, o->name);
	struct stat st;
	if (!r->bdir.buf || stat(r->bdir.buf, &st) < 0) {
		errorf("%s/backups/%s: %s (is it a mount of store %s?)", mnt, o->name, strerror(errno), o->store);
		return -ENOENT;
	}
	if (!is_backup_dir(r->bdir.buf, NULL) && find_node_dir(&r->bdir, &p->who) < 0) {
		errorf("%s/backups/%s: no directory of node %s (host id %s) in it (is it a mount of store %s?)",
		       mnt, o->name, p->who.node, p->who.host_id, o->store);
		return -ENOENT;
	}
	if (o->target_ks) {
		int e = tmpdir_make("load-stage", &r->staging);
		if (e < 0) {
			errorf("cannot make a staging directory in %s: %s", tmpdir_root(), strerror(-e));
			return e;
		}
	}
	return 0;
}

/* Unmounts and removes what open_source made; the loaders are all reaped by now. */
static void close_source(struct load_run *r)
{
	tmpdir_remove(&r->staging);
	mounter_stop(&r->m);
	sb_free(&r->bdir);
}

/* Links the files (not the .<index> directories) of table ks.table into
 * <staging>/<ks>/<target>/<table> once; that directory is the loader's source. 0 or -errno. */
static int stage_table(const char *staging, const char *target, const char *src, const char *ks,
		       const char *table, struct strbuf *dst)
{
	sb_printf(dst, "%s/%s", staging, ks);
	if (!dst->buf || (mkdir(dst->buf, 0755) < 0 && errno != EEXIST))
		return dst->buf ? -errno : -ENOMEM;
	sb_printf(dst, "/%s", target);
	if (!dst->buf || (mkdir(dst->buf, 0755) < 0 && errno != EEXIST))
		return dst->buf ? -errno : -ENOMEM;
	sb_printf(dst, "/%s", table);
	if (mkdir(dst->buf, 0755) < 0)
		return errno == EEXIST ? 0 : -errno; /* a retry: linked before */
	DIR *d = opendir(src);
	if (!d)
		return -errno;
	int r = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d));) {
		if (e->d_name[0] == '.') /* ., .., and .<index> directories */
			continue;
		_cleanup_(sb_free) struct strbuf a = {0}, b = {0};
		sb_printf(&a, "%s/%s", src, e->d_name);
		sb_printf(&b, "%s/%s", dst->buf, e->d_name);
		r = !a.buf || !b.buf ? -ENOMEM : symlink(a.buf, b.buf) < 0 ? -errno : 0;
	}
	closedir(d);
	return r;
}

static void table_failed(struct ltable *t, const char *fmt, const char *what, int err)
{
	t->status = T_FAILED;
	t->finished_ns = now_ns();
	snprintf(t->last_error, sizeof(t->last_error), fmt, what, strerror(-err));
}

/* Starts one attempt at table t. On failure t is failed with the reason. */
static void start_table(const struct load_opts *o, const struct load_plan *p, struct load_run *r,
			struct ltable *t)
{
	_cleanup_(sb_free) struct strbuf src = {0};
	sb_printf(&src, "%s/%s/%s", r->bdir.buf, t->keyspace, t->table);
	if (o->target_ks) {
		struct strbuf staged = {0};
		int e = src.buf ? stage_table(r->staging.path, o->target_ks, src.buf, t->keyspace, t->table, &staged) : -ENOMEM;
		sb_free(&src);
		src = staged;
		if (e < 0) {
			table_failed(t, "cannot link the files of %s into a staging directory: %s", t->table, e);
			return;
		}
	}
	struct strv a = {0}, shown = {0};
	const char *throttle = p->throttle[0] ? p->throttle : NULL;
	int e = !src.buf ? -ENOMEM
		: sstableloader_argv(&a, p->loader, o->hosts, throttle, p->user, p->password) ?:
		  strv_append(&a, &p->loader_args) ?: strv_push(&a, src.buf) ?:
		  sstableloader_argv(&shown, p->loader, o->hosts, throttle, p->user,
				     p->password ? hidden_password : NULL) ?:
		  strv_append(&shown, &p->loader_args_shown) ?: strv_push(&shown, src.buf);
	FILE *lf = e == 0 ? fopen(t->log, "ae") : NULL;
	if (lf) {
		char cmd[4096];
		format_command(shown.v, cmd, sizeof(cmd));
		fprintf(lf, "# attempt %u: %s\n", t->attempts + 1, cmd);
		fclose(lf);
	}
	if (e == 0) {
		struct exec_opts eo = {.log_path = t->log, .parent_death_signal = SIGTERM};
		t->pid = exec_spawn(a.v, &eo);
		e = t->pid < 0 ? (int)t->pid : 0;
	}
	strv_free(&a);
	strv_free(&shown);
	if (e < 0) {
		table_failed(t, "cannot start %.300s: %s", p->loader, e);
		return;
	}
	t->attempts++;
	if (!t->started_ns)
		t->started_ns = now_ns();
	t->status = T_RUNNING;
	r->running++;
	if (!o->json)
		fprintf(stderr, "cassbackup: loading %s.%s (attempt %u)\n", t->keyspace, t->table, t->attempts);
}

/* The sstables the last attempt's loader (its log: t->log, each attempt after a "# attempt"
 * line) said it skipped, and the first such line into first. sstableloader exits 0 after
 * "Skipping file NAME: table KS.T doesn't exist" (the target lacks the table), "... because
 * COMPONENT is missing" or "..., error opening it: ..." (SSTableLoader.openSSTables), having
 * streamed none of those. */
static unsigned skipped_sstables(const char *log, char *first, size_t n)
{
	unsigned skipped = 0;
	first[0] = '\0';
	FILE *f = fopen(log, "re");
	char line[1024];
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (!strncmp(line, "# attempt ", 10)) {
			skipped = 0;
			first[0] = '\0';
		} else if (!strncmp(line, "Skipping file ", 14) && !skipped++) {
			snprintf(first, n, "%.300s", line);
		}
	}
	if (f)
		fclose(f);
	return skipped;
}

/* Whether the loader of t, which exited 0, streamed every sstable: when it skipped some, t
 * fails with the reason (no retry: what it skipped for stays), and its record is not "ok", so
 * that a re-run loads it again. */
static bool streamed_all(struct ltable *t)
{
	char first[400];
	unsigned skipped = skipped_sstables(t->log, first, sizeof(first));
	if (!skipped)
		return true;
	snprintf(t->last_error, sizeof(t->last_error), "sstableloader skipped %u sstable%s of it and "
		 "exited 0: %s", skipped, skipped == 1 ? "" : "s", first);
	t->status = T_FAILED;
	t->finished_ns = now_ns();
	return false;
}

/* Records how the loader of t ended (wait status ws): ok, retry later, or failed. */
static void table_exited(const struct load_opts *o, const struct load_plan *p, struct ltable *t, int ws)
{
	int s = exec_status(ws);
	if (s == 0 && streamed_all(t)) {
		t->status = T_OK;
		t->last_error[0] = '\0';
		t->finished_ns = now_ns();
	} else if (s != 0) {
		char line[400];
		last_line(t->log, line, sizeof(line));
		snprintf(t->last_error, sizeof(t->last_error), "exit status %d: %s", s, line);
		if (t->attempts <= o->retries) {
			t->status = T_PENDING;
			t->next_try = mono_seconds() + o->retry_delay;
		} else {
			t->status = T_FAILED;
			t->finished_ns = now_ns();
		}
	}
	if (!o->json)
		fprintf(stderr, "cassbackup: %s.%s: %s\n", t->keyspace, t->table,
			t->status == T_OK ? "loaded" : t->status == T_FAILED ? t->last_error : "failed, will retry");
	write_status(o, p, false);
}

/* Reaps the loaders that have exited, without blocking. */
static void reap_tables(const struct load_opts *o, const struct load_plan *p, struct load_run *r)
{
	for (size_t i = 0; i < p->n; i++) {
		struct ltable *t = &p->t[i];
		int ws;
		if (t->status != T_RUNNING || waitpid(t->pid, &ws, WNOHANG) != t->pid)
			continue;
		r->running--;
		table_exited(o, p, t, ws);
	}
}

/* Stops every running loader (SIGTERM, then reaped): one that had already finished well is
 * ok, the others get status and reason. Tables not started get fail_pending's reason when that
 * is not NULL, else stay pending. */
static void stop_tables(const struct load_plan *p, struct load_run *r, enum tstatus status,
			const char *reason, const char *fail_pending)
{
	for (size_t i = 0; i < p->n; i++) {
		struct ltable *t = &p->t[i];
		if (t->status == T_RUNNING) {
			int ws = 0;
			kill(t->pid, SIGTERM);
			while (waitpid(t->pid, &ws, 0) < 0 && errno == EINTR)
				;
			r->running--;
			if (exec_status(ws) == 0 && !streamed_all(t))
				continue;
			t->status = exec_status(ws) == 0 ? T_OK : status;
			t->finished_ns = now_ns();
			snprintf(t->last_error, sizeof(t->last_error), "%s", t->status == T_OK ? "" : reason);
		} else if (t->status == T_PENDING && fail_pending) {
			t->status = T_FAILED;
			t->finished_ns = now_ns();
			snprintf(t->last_error, sizeof(t->last_error), "%s", fail_pending);
		}
	}
}

/* Starts the pending tables whose retry time has come, up to --parallel running. */
static void start_due(const struct load_opts *o, const struct load_plan *p, struct load_run *r)
{
	double now = mono_seconds();
	for (size_t i = 0; i < p->n && r->running < o->parallel; i++) {
		if (p->t[i].status == T_PENDING && p->t[i].next_try <= now)
			start_table(o, p, r, &p->t[i]);
	}
}

/* How long to wait for a child or a signal: until the next retry is due, or (NULL) forever.
 * Sets *any_pending. */
static struct timespec *next_wait(const struct load_plan *p, struct timespec *ts, bool *any_pending)
{
	double now = mono_seconds(), soonest = 0;
	*any_pending = false;
	for (size_t i = 0; i < p->n; i++) {
		if (p->t[i].status != T_PENDING)
			continue;
		*any_pending = true;
		if (p->t[i].next_try > now && (soonest == 0 || p->t[i].next_try < soonest))
			soonest = p->t[i].next_try;
	}
	if (soonest == 0)
		return NULL;
	double d = soonest - now;
	ts->tv_sec = (time_t)d;
	ts->tv_nsec = (long)((d - (double)ts->tv_sec) * 1e9);
	return ts;
}

static void on_child(int sig)
{
	(void)sig;
}

/* Runs the loaders, --parallel at a time, retrying failures after --retry-delay, until every
 * table is done, INT/TERM/HUP asks to stop, or our mount helper exits. The signals are blocked
 * except inside ppoll, so none can slip in between a check and the wait. */
static void run_loaders(const struct load_opts *o, const struct load_plan *p, struct load_run *r)
{
	struct sigaction sa = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP}, old_sa;
	sigset_t block, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, &old_sa);
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		/* before reaping: a loader that a terminal's Ctrl-C ended too was interrupted */
		if (cancel_requested) {
			stop_tables(p, r, T_INTERRUPTED, "interrupted", NULL);
			break;
		}
		reap_tables(o, p, r);
		if (mounter_exited(&r->m)) {
			errorf("mount.cassbackup stopped unexpectedly (see %s)", p->mount_log.buf);
			stop_tables(p, r, T_FAILED, "the mount helper stopped", "not started: the mount helper stopped");
			break;
		}
		start_due(o, p, r);
		struct timespec ts, *wait;
		bool any_pending;
		wait = next_wait(p, &ts, &any_pending);
		if (r->running == 0 && !any_pending)
			break;
		ppoll(NULL, 0, wait, &old); /* returns on SIGCHLD, a cancel signal, or a due retry */
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	sigaction(SIGCHLD, &old_sa, NULL);
}

/* mkdir -p dir: the directories it makes are mode (whatever the umask). 0 or -errno. */
static int make_dirs(char *dir, mode_t mode)
{
	struct stat st;
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		int r = make_dirs(dir, mode);
		*slash = '/';
		if (r < 0)
			return r;
	}
	if (mkdir(dir, mode) < 0 && errno != EEXIST)
		return -errno;
	return chmod(dir, mode) < 0 ? -errno : 0;
}

/* The state directory (unless --status-file) and the log directory, private to their owner:
 * the logs name hosts and the record tells what was loaded where. 0 or CB_EXIT_USAGE, said. */
static int make_state_dirs(const struct load_opts *o, struct load_plan *p)
{
	int r = 0;
	if (!o->status_file) {
		_cleanup_free_ char *dir = strdup(o->state_dir);
		r = !dir ? -ENOMEM : make_dirs(dir, 0700);
		if (r < 0) {
			_cleanup_free_ char *shown = cli_escape(o->state_dir);
			errorf("cannot make state directory %s: %s (--state-dir DIR or 'load_state_dir =' in "
			       "the configuration)", shown ? shown : "", strerror(-r));
			return CB_EXIT_USAGE;
		}
	}
	if (mkdir(p->log_dir.buf, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		errorf("cannot make log directory %s: %s", p->log_dir.buf, strerror(-r));
		return CB_EXIT_USAGE;
	}
	return 0;
}

/* Mounts, runs the loaders, unmounts. 0 when the loaders ran (the report tells how they did),
 * else the exit code. */
static int execute_load(const struct load_opts *o, struct load_plan *p)
{
	struct load_run r = {0};
	install_cancel_handlers();
	int rc = make_state_dirs(o, p);
	if (rc != 0)
		return rc;
	if (write_status(o, p, false) < 0)
		return CB_EXIT_FAILED;
	if (open_source(o, p, &r) == 0)
		run_loaders(o, p, &r);
	else
		rc = cancel_requested ? 128 + (int)cancel_requested : CB_EXIT_FAILED;
	close_source(&r);
	if (rc == 0)
		write_status(o, p, false);
	return rc;
}

/* --- report --------------------------------------------------------------------------------- */

/* What happened, on stdout (the status file has it all). The exit code: 0 every table loaded,
 * 1 one failed (or stdout could not take the report), 128 + signal when interrupted. */
static int load_report(const struct load_opts *o, const struct load_plan *p)
{
	size_t ok = 0, failed = 0, skipped = 0, stopped = 0, waiting = 0;
	for (size_t i = 0; i < p->n; i++) {
		ok += p->t[i].status == T_OK;
		failed += p->t[i].status == T_FAILED;
		skipped += p->t[i].status == T_SKIPPED;
		stopped += p->t[i].status == T_INTERRUPTED;
		waiting += p->t[i].status == T_PENDING;
	}
	int sig = (int)cancel_requested;
	if (sig)
		errorf("interrupted by signal %d (SIG%s): %zu running sstableloader(s) stopped, %zu table(s) "
		       "not started; a re-run loads what is not loaded yet", sig, sigabbrev_np(sig), stopped, waiting);
	if (o->json) {
		write_status(o, p, true);
	} else {
		for (size_t i = 0; i < p->n; i++) {
			const struct ltable *t = &p->t[i];
			if (t->status == T_FAILED)
				printf("FAILED  %s.%s after %u attempt(s): %s (log %s)\n", t->keyspace, t->table,
				       t->attempts, t->last_error, t->log);
		}
		if (sig)
			printf("load %s into %s: interrupted: %zu loaded, %zu already loaded before (skipped), "
			       "%zu failed, %zu interrupted, %zu not started; status in %s\n", o->name, o->hosts,
			       ok, skipped, failed, stopped, waiting, p->status_file.buf);
		else
			printf("load %s%s%s into %s: %zu loaded, %zu already loaded before (skipped), %zu failed; "
			       "status in %s\n", o->name, o->node ? " of node " : "", o->node ? o->node : "",
			       o->hosts, ok, skipped, failed, p->status_file.buf);
	}
	int rc = sig ? 128 + sig : failed ? CB_EXIT_FAILED : CB_EXIT_OK;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errorf("cannot write the report to standard output: %s; the status is in %s",
		       strerror(errno), p->status_file.buf);
		rc = rc ? rc : CB_EXIT_FAILED;
	}
	return rc;
}

/* Plans, runs and reports the load of one node backup of NAME (o->node's, or the only one).
 * The exit code. */
static int load_one(struct load_opts *o)
{
	struct load_plan p = {0};
	int rc = plan_load(o, &p) ?: execute_load(o, &p);
	if (rc == 0)
		rc = load_report(o, &p);
	plan_free(&p);
	return rc;
}

/* The nodes of the node backups of NAME, by their node key (host id, else node name), into
 * nodes; none when there is no backup of that name (load_one then says so). 0 or the exit
 * code (said). */
static int cluster_nodes(const struct load_opts *o, struct strv *nodes)
{
	struct store *st = NULL;
	int rc = cli_store_open(o->store, STORE_READONLY, &st);
	struct node_backups l = {0};
	int r = rc ? 0 : node_backups_named(store_catalog(st), o->name, &l);
	for (size_t i = 0; r >= 0 && rc == 0 && i < l.n; i++)
		r = strv_push(nodes, l.v[i].node_key);
	if (r < 0 && rc == 0) {
		char why[512];
		errorf("cannot read catalog of %s: %s", o->store, catalog_why(store_catalog(st), r, why, sizeof(why)));
		rc = CB_EXIT_FAILED;
	}
	node_backups_free(&l);
	store_close(st);
	return rc;
}

/* A cluster backup onto another cluster: every node's backup is streamed in turn (each row is
 * on several nodes' backups, once per replica: sstableloader sends each to the nodes that own
 * it now, and Cassandra reconciles the copies by timestamp, so loading every replica is what
 * makes the new cluster whole), each with its own record, so a re-run resumes. The exit code:
 * the worst of the nodes' (a signal stops at once). */
static int load_cluster(struct load_opts *o, const struct strv *nodes)
{
	if (o->status_file) {
		errorf("backup %s has %zu node backups, each loaded with its own record in the state "
		       "directory: --status-file names one; give --node with it", o->name, nodes->n);
		return CB_EXIT_USAGE;
	}
	if (!o->json)
		printf("load %s: %zu node backups, one after the other, each streamed to %s\n", o->name,
		       nodes->n, o->hosts);
	else
		fputs("[", stdout);
	int worst = 0;
	for (size_t i = 0; i < nodes->n && !cancel_requested; i++) {
		o->node = nodes->v[i];
		if (o->json && i)
			fputs(",", stdout);
		int rc = load_one(o);
		if (rc > 128 || rc == CB_EXIT_USAGE)
			return rc;
		worst = rc > worst ? rc : worst;
	}
	if (o->json)
		fputs("]\n", stdout);
	o->node = NULL;
	return cancel_requested ? 128 + (int)cancel_requested : worst;
}

/* --create-schema: what the target cluster lacks of the tables to load (of the node backup
 * --node names, else of the first node backup of NAME: a cluster's nodes share one schema),
 * created through cqlsh (schema_ddl.h) at --cqlsh-host, else the first of --hosts. 0 or the
 * exit code (said). */
static int load_create_schema(struct load_opts *o, const struct strv *nodes)
{
	struct store *st = NULL;
	struct tables ts = {0};
	struct strv ref = {0};
	_cleanup_free_ char *ddl = NULL, *host = NULL;
	_cleanup_free_ struct ddl_table *v = NULL;
	int rc = cli_store_open(o->store, STORE_READONLY, &st);
	const char *node = o->node ? o->node : nodes->n ? nodes->v[0] : NULL;
	rc = rc ?: cluster_pick(st, o->store, o->name, node, false, &ref);
	if (rc == 0 && load_tables(st, o->store, ref.v[0], &ts) < 0)
		rc = CB_EXIT_FAILED;
	if (rc == 0 && (!(v = calloc(ts.n + 1, sizeof(*v))) ||
			(!o->cqlsh.host && !(host = strndup(o->hosts, strcspn(o->hosts, ",")))))) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	size_t n = 0;
	for (size_t i = 0; rc == 0 && i < ts.n; i++)
		if (selection_matches(&o->sel, ts.v[i].keyspace, ts.v[i].table))
			v[n++] = (struct ddl_table){ts.v[i].keyspace, ts.v[i].table, ts.v[i].schema_cql};
	rc = rc ?: schema_read_backup_ddl(st, ref.v[0], &ddl);
	if (rc == 0) {
		if (!o->cqlsh.host)
			o->cqlsh.host = host;
		o->cqlsh.options = &o->cqlsh_options;
		struct schema_create sc = {.cqlsh = &o->cqlsh, .backup_ddl = ddl, .tables = v,
					   .ntables = n, .to_stderr = o->json};
		rc = schema_create_missing(&sc);
		if (o->cqlsh.host == host)
			o->cqlsh.host = NULL;
	}
	tables_free(&ts);
	strv_free(&ref);
	store_close(st);
	return rc;
}

static const char load_description[] =
	"Streams each table of backup NAME to the cluster at HOSTS with sstableloader, from a mount of\n"
	"the store (ours, or --mount DIR). The outcome of each table goes to a record in the state\n"
	"directory, one per backup and target hosts (or to --status-file); a re-run skips the tables\n"
	"it records as loaded unless --force. sstableloader_user and sstableloader_password_file in\n"
	"the configuration give credentials (sstableloader takes the password only as -pw on its\n"
	"command line: the process list shows it while a loader runs).\n"
	"--create-schema first creates, through cqlsh at --cqlsh-host (default: the first of HOSTS),\n"
	"the keyspaces, types and tables the target lacks, from the backup's schema.cql (restore\n"
	"--create-schema does the same).";

int cmd_load(int argc, char **argv)
{
	struct load_opts o = {.loader = "sstableloader", .state_dir = LOAD_STATE_DIR, .parallel = 1,
			      .retries = 2, .retry_delay = 5};
	struct cli_option opts[] = {
		{.name = "node", .type = OPT_STRING, .value = &o.node, .arg = "NODE",
		 .help = "the node whose backup NAME to load, when several nodes have one (host id, a "
			 "prefix of it, node name or address)"},
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "hosts", .type = OPT_STRING, .value = &o.hosts, .arg = "H1,H2",
		 .help = "the target cluster's hosts (sstableloader -d)", .config_key = "hosts",
		 .flags = OPT_REQUIRED},
		{.name = "keyspace", .short_name = 'k', .type = OPT_KEYSPACE, .value = &o.sel, .arg = "KS",
		 .help = "load only this keyspace (repeatable)"},
		{.name = "table", .short_name = 'T', .type = OPT_TABLE, .value = &o.sel, .arg = "KS.TABLE",
		 .help = "load only this table (repeatable)"},
		{.name = "target-keyspace", .type = OPT_STRING, .value = &o.target_ks, .arg = "KS",
		 .help = "load into this keyspace instead of the backed-up one"},
		{.name = "sstableloader", .type = OPT_STRING, .value = &o.loader, .arg = "PATH",
		 .help = "the sstableloader to run (default: sstableloader on PATH)",
		 .config_key = "sstableloader"},
		{.name = "throttle", .type = OPT_U64, .value = &o.throttle, .arg = "MBITS",
		 .help = "sstableloader -t: at most MBITS megabits per second", .min = 1, .max = 1000000},
		{.name = "parallel", .type = OPT_U64, .value = &o.parallel, .arg = "N",
		 .help = "tables loaded at once (default 1)", .min = 1, .max = 64},
		{.name = "retries", .type = OPT_U64, .value = &o.retries, .arg = "N",
		 .help = "attempts after a table's first failure (default 2)", .min = 0, .max = 100},
		{.name = "retry-delay", .type = OPT_U64, .value = &o.retry_delay, .arg = "SECS",
		 .help = "wait before a retry (default 5)", .min = 0, .max = 3600},
		{.name = "loader-option", .type = OPT_STRINGS, .value = &o.loader_options, .arg = "NAME[=VALUE]",
		 .help = "pass --NAME [VALUE] to sstableloader (conf-path=FILE, port=N, truststore=FILE...; repeatable)",
		 .config_key = "sstableloader_option"},
		{.name = "mount", .type = OPT_STRING, .value = &o.mount, .arg = "DIR",
		 .help = "read from this mount of the store instead of mounting it"},
		{.name = "state-dir", .type = OPT_STRING, .value = &o.state_dir, .arg = "DIR",
		 .help = "where load records and logs go (default " LOAD_STATE_DIR ")",
		 .config_key = "load_state_dir"},
		{.name = "status-file", .type = OPT_STRING, .value = &o.status_file, .arg = "FILE",
		 .help = "the record to use instead of one in the state directory (logs in FILE.d)"},
		{.name = "force", .type = OPT_FLAG, .value = &o.force,
		 .help = "load every table again, even those recorded as loaded"},
		{.name = "json", .type = OPT_FLAG, .value = &o.json, .help = "print the record as JSON"},
		{.name = "create-schema", .type = OPT_FLAG, .value = &o.create_schema,
		 .help = "first create, through cqlsh, the keyspaces, types and tables the target lacks"},
		{.name = "cqlsh", .type = OPT_STRING, .value = &o.cqlsh.program, .arg = "PROGRAM",
		 .help = "the cqlsh program (default: cqlsh from PATH)", .config_key = "cqlsh"},
		{.name = "cqlsh-host", .type = OPT_STRING, .value = &o.cqlsh.host, .arg = "HOST",
		 .help = "the host cqlsh connects to (default: the first of --hosts)"},
		{.name = "cqlsh-option", .type = OPT_STRINGS, .value = &o.cqlsh_options, .arg = "ARG",
		 .help = "an argument for cqlsh, such as --ssl or --cqlshrc=FILE (repeatable)",
		 .config_key = "cqlsh_option"},
		{0},
	};
	struct cli_command cmd = {
		.name = "load",
		.operands = "NAME",
		.min_operands = 1,
		.max_operands = 1,
		.description = load_description,
		.options = opts,
	};
	/* A closed stdout (`cassbackup load ... | head`) must not kill us before the cleanup: the
	 * write fails with EPIPE instead and the report says so. */
	signal(SIGPIPE, SIG_IGN);
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	struct strv nodes = {0};
	for (size_t i = 0; rc == CLI_RUN && i < o.cqlsh_options.n; i++) {
		const char *why = cqlsh_option_problem(o.cqlsh_options.v[i]);
		if (why)
			rc = cli_usage_error(&cmd, "--cqlsh-option %s: %s", o.cqlsh_options.v[i], why);
	}
	const struct selection_entry *own = rc == CLI_RUN ? selection_node_local(&o.sel) : NULL;
	if (own) {
		_cleanup_free_ char *ks = cli_escape(own->keyspace);
		rc = cli_usage_error(&cmd, "keyspace %s: a node's own tables (its identity, tokens and "
				     "schema), not to be streamed into another cluster", ks ? ks : "");
	}
	if (rc == CLI_RUN && o.create_schema && o.target_ks)
		rc = cli_usage_error(&cmd, "--create-schema creates the backed-up keyspaces; with "
				     "--target-keyspace, create the target's tables first");
	if (rc == CLI_RUN && !o.mount) /* ours: it cannot be given a typed passphrase */
		cli_no_prompt("load mounts the store for sstableloader and cannot hand that mount a "
			      "typed passphrase: give --passphrase-file FILE or --key-file FILE");
	if (rc == CLI_RUN) {
		o.name = argv[first];
		rc = o.node ? 0 : cluster_nodes(&o, &nodes);
		if (rc == 0 && o.create_schema)
			rc = load_create_schema(&o, &nodes);
		if (rc == 0)
			rc = nodes.n > 1 ? load_cluster(&o, &nodes) : load_one(&o);
	}
	strv_free(&nodes);
	strv_free(&o.cqlsh_options);
	selection_free(&o.sel);
	strv_free(&o.loader_options);
	return rc;
}
