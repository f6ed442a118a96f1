/* cassbackup load: stream a backup into a cluster of another topology with sstableloader.
 *
 * The store is mounted (or --mount names a mount) and sstableloader runs once per table on
 *   <mount>/backups/<NAME>/<ks>/<table>
 * whose last two path components are the keyspace and table it loads into. With
 * --target-keyspace, a directory <tmp>/<target>/<table> of links to the table's files stands in.
 * Secondary-index subdirectories are never streamed: the target cluster rebuilds its indexes.
 *
 * Each table's outcome (started, finished, status, duration, attempts, the loader's last error
 * line) goes to a status file, rewritten after every table; a re-run skips tables already
 * loaded unless --force. Loader output goes to one log file per table beside it.
 *
 * Three steps: plan (parse, check every program, credential and name, read the catalog; nothing
 * changes yet), execute (mount, run the loaders, stop them on a signal, unmount), report.
 * Whatever happens after the mount (a failed table, INT/TERM/HUP, a closed stdout: SIGPIPE is
 * ignored) the loaders are reaped and the mount and its daemon are gone before we exit.
 */
#include "backup_files.h"
#include "cli.h"
#include "exec.h"
#include "mounter.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
};

struct load_opts {
	const char *store, *name, *hosts, *target_ks, *loader, *throttle, *mount, *status_file;
	char **keyspaces, **tables;
	size_t nkeyspaces, ntables;
	unsigned parallel, retries, retry_delay;
	bool json, force;
};

/* What plan_load decided; nothing has changed on disk yet. */
struct load_plan {
	struct ltable *t;
	size_t n;
	char loader[PATH_MAX];   /* sstableloader, as exec_find found it */
	char mount_dir[PATH_MAX]; /* --mount, resolved; "" when we mount the store ourselves */
	const char *user;        /* sstableloader_user; with password, or neither */
	char *password;          /* the first line of sstableloader_password_file */
	struct strbuf status_file, log_dir;
};

/* What execute_load made and close_source undoes. */
struct load_run {
	struct mounter m;        /* our mount, when not --mount */
	struct strbuf bdir;      /* <mount>/backups/<NAME> */
	char staging[PATH_MAX];  /* --target-keyspace links; "" when none */
	size_t running;
};

static const char hidden_password[] = "********";

/* --- status file ---------------------------------------------------------------------------- */

static void iso(int64_t ns, char *buf, size_t n)
{
	if (ns)
		format_time_utc(ns, buf, n);
	else
		snprintf(buf, n, "%s", "");
}

/* One table per line: the status file is read back line by line on a re-run. */
static void status_json(const struct load_opts *o, const struct load_plan *p, struct strbuf *j)
{
	sb_puts(j, "{\"backup\": ");
	sb_json_str(j, o->name);
	sb_puts(j, ", \"hosts\": ");
	sb_json_str(j, o->hosts);
	sb_puts(j, ", \"tables\": [\n");
	for (size_t i = 0; i < p->n; i++) {
		const struct ltable *t = &p->t[i];
		char s[64], f[64];
		iso(t->started_ns, s, sizeof(s));
		iso(t->finished_ns, f, sizeof(f));
		double dur = t->finished_ns && t->started_ns ? (double)(t->finished_ns - t->started_ns) / 1e9 : 0;
		sb_puts(j, "  {\"keyspace\": ");
		sb_json_str(j, t->keyspace);
		sb_puts(j, ", \"table\": ");
		sb_json_str(j, t->table);
		sb_printf(j, ", \"status\": \"%s\", \"started\": \"%s\", \"finished\": \"%s\", "
			  "\"duration_s\": %.3f, \"attempts\": %u, \"last_error\": ",
			  status_names[t->status], s, f, dur, t->attempts);
		sb_json_str(j, t->last_error);
		sb_puts(j, ", \"log\": ");
		sb_json_str(j, t->log);
		sb_puts(j, i + 1 < p->n ? "},\n" : "}\n");
	}
	sb_puts(j, "]}\n");
}

/* Writes the status file (tmp, fsync, rename), or prints it to stdout. 0 or -errno, said. */
static int write_status(const struct load_opts *o, const struct load_plan *p, bool to_stdout)
{
	_cleanup_(sb_free) struct strbuf j = {0}, tmp = {0};
	status_json(o, p, &j);
	if (!j.buf)
		return -ENOMEM;
	if (to_stdout)
		return fputs(j.buf, stdout) < 0 ? -EIO : 0;
	sb_printf(&tmp, "%s.tmp", p->status_file.buf);
	int fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r = fd < 0 ? -errno : write_full(fd, j.buf, j.len);
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

/* Tables an earlier run of the same backup and hosts loaded: status "ok" in the status file. */
static void mark_done_before(const struct load_opts *o, struct load_plan *p)
{
	_cleanup_free_ char *text = NULL;
	if (read_small_file(p->status_file.buf, 64 << 20, &text, NULL) < 0)
		return;
	_cleanup_(sb_free) struct strbuf want = {0};
	sb_puts(&want, "\"hosts\": ");
	sb_json_str(&want, o->hosts);
	bool same = want.buf && strstr(text, want.buf) != NULL;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); same && line; line = strtok_r(NULL, "\n", &save)) {
		if (!strstr(line, "\"status\": \"ok\""))
			continue;
		for (size_t i = 0; i < p->n; i++) {
			_cleanup_(sb_free) struct strbuf k = {0};
			sb_puts(&k, "{\"keyspace\": ");
			sb_json_str(&k, p->t[i].keyspace);
			sb_puts(&k, ", \"table\": ");
			sb_json_str(&k, p->t[i].table);
			sb_puts(&k, ",");
			if (k.buf && strstr(line, k.buf))
				p->t[i].status = T_SKIPPED;
		}
	}
}

/* --- options -------------------------------------------------------------------------------- */

static void load_usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup load --store DIR NAME --hosts H1,H2 [--keyspace KS ...] [--table KS.T ...]\n"
		"         [--target-keyspace KS] [--sstableloader PATH] [--throttle MBITS] [--parallel N]\n"
		"         [--retries N] [--retry-delay SECS] [--mount DIR] [--status-file PATH] [--force]\n"
		"         [--json]\n"
		"Streams each table of backup NAME to the cluster at HOSTS with sstableloader, from a\n"
		"mount of the store. Status goes to --status-file (default ./cassbackup-load-NAME.json);\n"
		"tables it records as loaded are skipped on a re-run unless --force.\n");
}

static unsigned parse_count(const char *opt, const char *v, unsigned lo, unsigned hi, bool *bad)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || !*v || n < (long)lo || n > (long)hi) {
		errorf("--%s %s: expected a number from %u to %u", opt, v, lo, hi);
		*bad = true;
	}
	return (unsigned)n;
}

/* Fills o from argv and the configuration. True to go on; false with *rc the exit code. */
static bool parse_load_args(int argc, char **argv, struct load_opts *o, int *rc)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"hosts", required_argument, NULL, 'H'},
		{"keyspace", required_argument, NULL, 'k'},
		{"table", required_argument, NULL, 'T'},
		{"target-keyspace", required_argument, NULL, 'K'},
		{"sstableloader", required_argument, NULL, 'L'},
		{"throttle", required_argument, NULL, 't'},
		{"parallel", required_argument, NULL, 'p'},
		{"retries", required_argument, NULL, 'r'},
		{"retry-delay", required_argument, NULL, 'D'},
		{"mount", required_argument, NULL, 'm'},
		{"status-file", required_argument, NULL, 'S'},
		{"force", no_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	*o = (struct load_opts){.parallel = 1, .retries = 2, .retry_delay = 5};
	*rc = 2;
	bool bad = false;
	int c;
	while ((c = getopt_long(argc, argv, "s:k:T:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': o->store = optarg; break;
		case 'H': o->hosts = optarg; break;
		case 'k':
		case 'T':
			if (ptrv_push(c == 'k' ? &o->keyspaces : &o->tables, c == 'k' ? &o->nkeyspaces : &o->ntables,
				      optarg) < 0) {
				errorf("--%s %s: %s", c == 'k' ? "keyspace" : "table", optarg, strerror(ENOMEM));
				bad = true;
			}
			break;
		case 'K': o->target_ks = optarg; break;
		case 'L': o->loader = optarg; break;
		case 't': parse_count("throttle", optarg, 1, 1000000, &bad); o->throttle = optarg; break;
		case 'p': o->parallel = parse_count("parallel", optarg, 1, 64, &bad); break;
		case 'r': o->retries = parse_count("retries", optarg, 0, 100, &bad); break;
		case 'D': o->retry_delay = parse_count("retry-delay", optarg, 0, 3600, &bad); break;
		case 'm': o->mount = optarg; break;
		case 'S': o->status_file = optarg; break;
		case 'f': o->force = true; break;
		case 'J': o->json = true; break;
		case 'h': load_usage(stdout); *rc = 0; return false;
		default: return false;
		}
	}
	if (!o->store)
		o->store = config_get("store");
	if (!o->hosts)
		o->hosts = config_get("hosts");
	if (!o->loader)
		o->loader = config_get("sstableloader");
	if (!o->loader)
		o->loader = "sstableloader";
	if (bad || optind + 1 != argc || !o->store || !o->hosts) {
		if (!bad)
			load_usage(stderr);
		return false;
	}
	o->name = argv[optind];
	if (o->target_ks && !name_is_component(o->target_ks)) {
		errorf("--target-keyspace %s: not a keyspace name", o->target_ks);
		return false;
	}
	return true;
}

/* --- plan ----------------------------------------------------------------------------------- */

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
		return 2;
	}
	if (!pwf)
		return 0;
	int r = read_small_file(pwf, 4096, &p->password, NULL);
	if (r < 0) {
		errorf("sstableloader_password_file %s: %s", pwf, strerror(-r));
		return 2;
	}
	p->password[strcspn(p->password, "\r\n")] = '\0';
	if (!p->password[0]) {
		errorf("sstableloader_password_file %s: empty first line, expected the password", pwf);
		return 2;
	}
	return 0;
}

/* The programs and settings a load needs, checked before anything changes. 0 or exit code 2. */
static int plan_programs(const struct load_opts *o, struct load_plan *p)
{
	if (!host_list_ok(o->hosts)) {
		errorf("--hosts %s: expected HOST[,HOST...] without spaces or empty entries", o->hosts);
		return 2;
	}
	int r = exec_find(o->loader, p->loader, sizeof(p->loader));
	if (r < 0) {
		errorf("cannot run %s: %s (sstableloader: --sstableloader PATH or 'sstableloader =' in "
		       "the configuration)", p->loader, strerror(-r));
		return 2;
	}
	if (o->mount) {
		if (!realpath(o->mount, p->mount_dir)) {
			errorf("--mount %s: %s", o->mount, strerror(errno));
			return 2;
		}
	} else {
		char helper[PATH_MAX];
		r = mounter_find_helper(helper, sizeof(helper));
		if (r < 0) {
			errorf("cannot run the mount helper %s: %s (install mount.cassbackup, set "
			       "CASSBACKUP_MOUNT_HELPER, or give --mount DIR)", helper, strerror(-r));
			return 2;
		}
	}
	return plan_credentials(p);
}

/* Appends the selected tables of ts to p. 0 or -ENOMEM. */
static int plan_select(const struct load_opts *o, const struct tables *ts, struct load_plan *p)
{
	if (!(p->t = calloc(ts->n + 1, sizeof(*p->t))))
		return -ENOMEM;
	for (size_t i = 0; i < ts->n; i++) {
		const char *ks = ts->v[i].keyspace, *table = ts->v[i].table;
		if (!table_selected(o->keyspaces, o->nkeyspaces, o->tables, o->ntables, ks, table))
			continue;
		if (!name_is_component(ks) || !name_is_component(table)) {
			errorf("backup %s: a table with an invalid keyspace or table name, ignoring", o->name);
			continue;
		}
		struct ltable *t = &p->t[p->n];
		if (!(t->keyspace = strdup(ks)) || !(t->table = strdup(table))) {
			free(t->keyspace);
			return -ENOMEM;
		}
		p->n++;
		snprintf(t->log, sizeof(t->log), "%s/%s.%s.log", p->log_dir.buf, ks, table);
	}
	return 0;
}

/* The backup's tables, the selection, and what an earlier run loaded. 0 or exit code 1. */
static int plan_tables(const struct load_opts *o, struct load_plan *p)
{
	catalog *cat = NULL;
	struct tables ts = {0};
	int rc = 1;
	if (open_store(o->store, CATALOG_READONLY, &cat) < 0 || load_tables(cat, o->store, o->name, &ts) < 0)
		goto out;
	if (plan_select(o, &ts, p) < 0) {
		errorf("cannot plan the load of %s: %s", o->name, strerror(ENOMEM));
		goto out;
	}
	if (p->n == 0) {
		errorf("nothing to load: the selection matches no table of backup %s", o->name);
		goto out;
	}
	if (!o->force)
		mark_done_before(o, p);
	rc = 0;
out:
	tables_free(&ts);
	catalog_close(cat);
	return rc;
}

/* Everything load checks and decides before it changes anything. 0 or the exit code. */
static int plan_load(const struct load_opts *o, struct load_plan *p)
{
	if (o->status_file)
		sb_puts(&p->status_file, o->status_file);
	else
		sb_printf(&p->status_file, "cassbackup-load-%s.json", o->name);
	sb_printf(&p->log_dir, "%s.d", p->status_file.buf);
	if (!p->status_file.buf || !p->log_dir.buf) {
		errorf("cannot plan the load of %s: %s", o->name, strerror(ENOMEM));
		return 1;
	}
	return plan_programs(o, p) ?: plan_tables(o, p);
}

static void plan_free(struct load_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->t[i].keyspace);
		free(p->t[i].table);
	}
	free(p->t);
	if (p->password) {
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	sb_free(&p->status_file);
	sb_free(&p->log_dir);
}

/* --- execute -------------------------------------------------------------------------------- */

/* The mount to read from (ours, or --mount), <mount>/backups/<NAME> in it, and the staging
 * directory for --target-keyspace. 0, or -errno after saying why (-EINTR: a signal came). */
static int open_source(const struct load_opts *o, const struct load_plan *p, struct load_run *r)
{
	const char *mnt = p->mount_dir;
	if (!o->mount) {
		_cleanup_(sb_free) struct strbuf mlog = {0};
		char why[700];
		sb_printf(&mlog, "%s.mount.log", p->status_file.buf);
		int e = mounter_start(&r->m, o->store, "load", mlog.buf ? mlog.buf : "/dev/null",
				      &cancel_requested, why, sizeof(why));
		if (e < 0) {
			errorf("cannot mount store %s: %s", o->store, why);
			return e;
		}
		mnt = r->m.dir;
	}
	sb_printf(&r->bdir, "%s/backups/%s", mnt, o->name);
	struct stat st;
	if (!r->bdir.buf || stat(r->bdir.buf, &st) < 0) {
		errorf("%s/backups/%s: %s (is it a mount of store %s?)", mnt, o->name, strerror(errno), o->store);
		return -ENOENT;
	}
	if (o->target_ks) {
		snprintf(r->staging, sizeof(r->staging), "/tmp/cassbackup-stage-XXXXXX");
		if (!mkdtemp(r->staging)) {
			int e = -errno;
			errorf("cannot make a staging directory in /tmp: %s", strerror(-e));
			r->staging[0] = '\0';
			return e;
		}
	}
	return 0;
}

/* Unmounts and removes what open_source made; the loaders are all reaped by now. */
static void close_source(struct load_run *r)
{
	if (r->staging[0]) {
		char *rm[] = {"rm", "-rf", r->staging, NULL};
		exec_run(rm, NULL);
	}
	mounter_stop(&r->m);
	sb_free(&r->bdir);
}

/* Links the table's files (not its .<index> directories) into <staging>/<target>/<table>
 * once; that directory is the loader's source. 0 or -errno. */
static int stage_table(const char *staging, const char *target, const char *src, const char *table,
		       struct strbuf *dst)
{
	sb_printf(dst, "%s/%s", staging, target);
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
		int e = src.buf ? stage_table(r->staging, o->target_ks, src.buf, t->table, &staged) : -ENOMEM;
		sb_free(&src);
		src = staged;
		if (e < 0) {
			table_failed(t, "cannot link the files of %s into a staging directory: %s", t->table, e);
			return;
		}
	}
	struct strv a = {0}, shown = {0};
	int e = !src.buf ? -ENOMEM
		: sstableloader_argv(&a, p->loader, o->hosts, o->throttle, p->user, p->password) ?:
		  strv_push(&a, src.buf) ?:
		  sstableloader_argv(&shown, p->loader, o->hosts, o->throttle, p->user,
				     p->password ? hidden_password : NULL) ?:
		  strv_push(&shown, src.buf);
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

/* Records how the loader of t ended (wait status ws): ok, retry later, or failed. */
static void table_exited(const struct load_opts *o, const struct load_plan *p, struct ltable *t, int ws)
{
	int s = exec_status(ws);
	if (s == 0) {
		t->status = T_OK;
		t->last_error[0] = '\0';
		t->finished_ns = now_ns();
	} else {
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
			errorf("mount.cassbackup stopped unexpectedly (see %s.mount.log)", p->status_file.buf);
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

/* Mounts, runs the loaders, unmounts. 0 when the loaders ran (the report tells how they did),
 * else the exit code. */
static int execute_load(const struct load_opts *o, struct load_plan *p)
{
	struct load_run r = {0};
	install_cancel_handlers();
	if (mkdir(p->log_dir.buf, 0755) < 0 && errno != EEXIST) {
		errorf("cannot make log directory %s: %s", p->log_dir.buf, strerror(errno));
		return 1;
	}
	if (write_status(o, p, false) < 0)
		return 1;
	int rc = 0;
	if (open_source(o, p, &r) == 0)
		run_loaders(o, p, &r);
	else
		rc = cancel_requested ? 128 + (int)cancel_requested : 1;
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
			printf("load %s into %s: %zu loaded, %zu already loaded before (skipped), %zu failed; "
			       "status in %s\n", o->name, o->hosts, ok, skipped, failed, p->status_file.buf);
	}
	int rc = sig ? 128 + sig : failed ? 1 : 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errorf("cannot write the report to standard output: %s; the status is in %s",
		       strerror(errno), p->status_file.buf);
		rc = rc ? rc : 1;
	}
	return rc;
}

int cmd_load(int argc, char **argv)
{
	struct load_opts o;
	struct load_plan p = {0};
	int rc;
	/* A closed stdout (`cassbackup load ... | head`) must not kill us before the cleanup: the
	 * write fails with EPIPE instead and the report says so. */
	signal(SIGPIPE, SIG_IGN);
	if (parse_load_args(argc, argv, &o, &rc)) {
		rc = plan_load(&o, &p) ?: execute_load(&o, &p);
		if (rc == 0)
			rc = load_report(&o, &p);
	}
	plan_free(&p);
	free(o.keyspaces);
	free(o.tables);
	return rc;
}
