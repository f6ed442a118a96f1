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
 */
#include "backup_files.h"
#include "cli.h"
#include "exec.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum tstatus { T_PENDING, T_RUNNING, T_OK, T_FAILED, T_SKIPPED };
static const char *const status_names[] = {"pending", "running", "ok", "failed", "skipped"};

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

static void iso(int64_t ns, char *buf, size_t n)
{
	if (ns)
		format_time_utc(ns, buf, n);
	else
		snprintf(buf, n, "%s", "");
}

static int write_status(const struct load_opts *o, struct ltable *t, size_t n, bool to_stdout)
{
	struct strbuf j = {0};
	sb_puts(&j, "{\"backup\": ");
	sb_json_str(&j, o->name);
	sb_puts(&j, ", \"hosts\": ");
	sb_json_str(&j, o->hosts);
	sb_puts(&j, ", \"tables\": [\n");
	for (size_t i = 0; i < n; i++) {
		char s[64], f[64];
		iso(t[i].started_ns, s, sizeof(s));
		iso(t[i].finished_ns, f, sizeof(f));
		double dur = t[i].finished_ns && t[i].started_ns ? (double)(t[i].finished_ns - t[i].started_ns) / 1e9 : 0;
		/* one table per line: the status file is read back line by line on a re-run */
		sb_puts(&j, "  {\"keyspace\": ");
		sb_json_str(&j, t[i].keyspace);
		sb_puts(&j, ", \"table\": ");
		sb_json_str(&j, t[i].table);
		sb_printf(&j, ", \"status\": \"%s\", \"started\": \"%s\", \"finished\": \"%s\", "
			  "\"duration_s\": %.3f, \"attempts\": %u, \"last_error\": ",
			  status_names[t[i].status], s, f, dur, t[i].attempts);
		sb_json_str(&j, t[i].last_error);
		sb_puts(&j, ", \"log\": ");
		sb_json_str(&j, t[i].log);
		sb_puts(&j, i + 1 < n ? "},\n" : "}\n");
	}
	sb_puts(&j, "]}\n");
	int r = 0;
	if (to_stdout) {
		fputs(j.buf, stdout);
	} else {
		struct strbuf tmp = {0};
		sb_printf(&tmp, "%s.tmp", o->status_file);
		int fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		r = fd < 0 ? -errno : write_full(fd, j.buf, j.len);
		if (fd >= 0 && r == 0 && fsync(fd) < 0)
			r = -errno;
		if (fd >= 0)
			close(fd);
		if (r == 0 && rename(tmp.buf, o->status_file) < 0)
			r = -errno;
		if (r < 0)
			errorf("cannot write status file %s: %s", o->status_file, strerror(-r));
		sb_free(&tmp);
	}
	sb_free(&j);
	return r;
}

/* Tables an earlier run of the same backup and hosts loaded: status "ok" in the status file. */
static void mark_done_before(const struct load_opts *o, struct ltable *t, size_t n)
{
	char *text = NULL;
	if (read_small_file(o->status_file, 64 << 20, &text, NULL) < 0)
		return;
	struct strbuf want = {0};
	sb_puts(&want, "\"hosts\": ");
	sb_json_str(&want, o->hosts);
	bool same = strstr(text, want.buf) != NULL;
	for (char *line = strtok(text, "\n"); same && line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "\"status\": \"ok\""))
			continue;
		for (size_t i = 0; i < n; i++) {
			struct strbuf k = {0};
			sb_puts(&k, "{\"keyspace\": ");
			sb_json_str(&k, t[i].keyspace);
			sb_puts(&k, ", \"table\": ");
			sb_json_str(&k, t[i].table);
			sb_puts(&k, ",");
			if (strstr(line, k.buf))
				t[i].status = T_SKIPPED;
			sb_free(&k);
		}
	}
	sb_free(&want);
	free(text);
}

/* mount.cassbackup: beside us in a build tree, in ../sbin when installed, else on PATH. */
static void find_mount_helper(char *out, size_t n)
{
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (k > 0) {
		self[k] = '\0';
		char *slash = strrchr(self, '/');
		*slash = '\0';
		const char *tries[] = {"../fs/mount.cassbackup", "../sbin/mount.cassbackup", "mount.cassbackup"};
		for (size_t i = 0; i < ARRAY_SIZE(tries); i++) {
			struct strbuf p = {0};
			sb_printf(&p, "%s/%s", self, tries[i]);
			bool ok = p.buf && strlen(p.buf) < n && access(p.buf, X_OK) == 0;
			if (ok)
				snprintf(out, n, "%s", p.buf);
			sb_free(&p);
			if (ok)
				return;
		}
	}
	snprintf(out, n, "mount.cassbackup");
}

static bool is_mounted(const char *dir, dev_t parent_dev)
{
	struct stat st;
	return stat(dir, &st) == 0 && st.st_dev != parent_dev;
}

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

int cmd_load(int argc, char **argv)
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
	struct load_opts o = {.parallel = 1, .retries = 2, .retry_delay = 5};
	bool bad = false;
	int c, rc = 2;
	while ((c = getopt_long(argc, argv, "s:k:T:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': o.store = optarg; break;
		case 'H': o.hosts = optarg; break;
		case 'k': ptrv_push(&o.keyspaces, &o.nkeyspaces, optarg); break;
		case 'T': ptrv_push(&o.tables, &o.ntables, optarg); break;
		case 'K': o.target_ks = optarg; break;
		case 'L': o.loader = optarg; break;
		case 't': parse_count("throttle", optarg, 1, 1000000, &bad); o.throttle = optarg; break;
		case 'p': o.parallel = parse_count("parallel", optarg, 1, 64, &bad); break;
		case 'r': o.retries = parse_count("retries", optarg, 0, 100, &bad); break;
		case 'D': o.retry_delay = parse_count("retry-delay", optarg, 0, 3600, &bad); break;
		case 'm': o.mount = optarg; break;
		case 'S': o.status_file = optarg; break;
		case 'f': o.force = true; break;
		case 'J': o.json = true; break;
		case 'h': load_usage(stdout); rc = 0; goto out_opts;
		default: goto out_opts;
		}
	}
	if (!o.store)
		o.store = config_get("store");
	if (!o.hosts)
		o.hosts = config_get("hosts");
	if (!o.loader)
		o.loader = config_get("sstableloader");
	if (!o.loader)
		o.loader = "sstableloader";
	if (bad || optind + 1 != argc || !o.store || !o.hosts) {
		if (!bad)
			load_usage(stderr);
		goto out_opts;
	}
	o.name = argv[optind];
	struct strbuf sf = {0};
	if (!o.status_file) {
		sb_printf(&sf, "cassbackup-load-%s.json", o.name);
		o.status_file = sf.buf;
	}
	rc = 1;

	catalog *cat = NULL;
	struct tables ts = {0};
	struct ltable *t = NULL;
	size_t n = 0;
	char mnt[PATH_MAX] = "", staging[PATH_MAX] = "";
	pid_t mount_pid = -1;
	if (open_store(o.store, CATALOG_READONLY, &cat) < 0 || load_tables(cat, o.store, o.name, &ts) < 0)
		goto out;
	t = calloc(ts.n + 1, sizeof(*t));
	for (size_t i = 0; i < ts.n; i++) {
		if (table_selected(o.keyspaces, o.nkeyspaces, o.tables, o.ntables, ts.v[i].keyspace, ts.v[i].table))
			t[n++] = (struct ltable){.keyspace = strdup(ts.v[i].keyspace), .table = strdup(ts.v[i].table)};
	}
	if (n == 0) {
		errorf("nothing to load: the selection matches no table of backup %s", o.name);
		goto out;
	}
	if (!o.force)
		mark_done_before(&o, t, n);

	/* The mount to read from. */
	if (o.mount) {
		if (!realpath(o.mount, mnt)) {
			errorf("--mount %s: %s", o.mount, strerror(errno));
			goto out;
		}
	} else {
		snprintf(mnt, sizeof(mnt), "/tmp/cassbackup-load-XXXXXX");
		if (!mkdtemp(mnt)) {
			errorf("cannot make a mount point in /tmp: %s", strerror(errno));
			mnt[0] = '\0';
			goto out;
		}
		struct stat pst;
		stat("/tmp", &pst);
		char helper[PATH_MAX];
		find_mount_helper(helper, sizeof(helper));
		char *margv[] = {helper, (char *)o.store, mnt, "-f", NULL};
		struct strbuf mlog = {0};
		sb_printf(&mlog, "%s.mount.log", o.status_file);
		mount_pid = exec_start(margv, mlog.buf);
		double deadline = mono_seconds() + 15;
		int ws;
		while (!is_mounted(mnt, pst.st_dev)) {
			if (waitpid(mount_pid, &ws, WNOHANG) == mount_pid || mono_seconds() > deadline) {
				char line[512];
				last_line(mlog.buf, line, sizeof(line));
				errorf("cannot mount %s on %s: %s", o.store, mnt, line[0] ? line : "timed out");
				mount_pid = -1;
				sb_free(&mlog);
				goto out;
			}
			usleep(20000);
		}
		sb_free(&mlog);
	}
	struct strbuf bdir = {0};
	sb_printf(&bdir, "%s/backups/%s", mnt, o.name);
	struct stat bst;
	if (stat(bdir.buf, &bst) < 0) {
		errorf("%s: %s (is it a mount of store %s?)", bdir.buf, strerror(errno), o.store);
		sb_free(&bdir);
		goto out;
	}
	if (o.target_ks) {
		snprintf(staging, sizeof(staging), "/tmp/cassbackup-stage-XXXXXX");
		if (!mkdtemp(staging)) {
			errorf("cannot make a staging directory in /tmp: %s", strerror(errno));
			staging[0] = '\0';
			sb_free(&bdir);
			goto out;
		}
	}

	/* Run the loaders, N at a time, retrying failures. */
	install_cancel_handlers();
	write_status(&o, t, n, false);
	size_t running = 0;
	for (;;) {
		if (cancel_requested)
			break;
		bool pending = false;
		for (size_t i = 0; i < n && running < o.parallel; i++) {
			if (t[i].status != T_PENDING)
				continue;
			pending = true;
			if (mono_seconds() < t[i].next_try)
				continue;
			struct strbuf src = {0};
			sb_printf(&src, "%s/%s/%s", bdir.buf, t[i].keyspace, t[i].table);
			if (o.target_ks) { /* <staging>/<target>/<table>: links to the table's files */
				struct strbuf d = {0};
				sb_printf(&d, "%s/%s", staging, o.target_ks);
				mkdir(d.buf, 0755);
				sb_printf(&d, "/%s", t[i].table);
				if (mkdir(d.buf, 0755) == 0) {
					DIR *dd = opendir(src.buf);
					struct dirent *e;
					while (dd && (e = readdir(dd))) {
						if (e->d_name[0] == '.') /* ., .., and .<index> directories */
							continue;
						struct strbuf a = {0}, b = {0};
						sb_printf(&a, "%s/%s", src.buf, e->d_name);
						sb_printf(&b, "%s/%s", d.buf, e->d_name);
						if (symlink(a.buf, b.buf) < 0)
							errorf("cannot link %s: %s", b.buf, strerror(errno));
						sb_free(&a);
						sb_free(&b);
					}
					if (dd)
						closedir(dd);
				}
				sb_free(&src);
				src = d;
			}
			snprintf(t[i].log, sizeof(t[i].log), "%s.d/%s.%s.log", o.status_file, t[i].keyspace, t[i].table);
			struct strbuf logdir = {0};
			sb_printf(&logdir, "%s.d", o.status_file);
			mkdir(logdir.buf, 0755);
			sb_free(&logdir);
			struct strv a = {0};
			strv_push(&a, o.loader);
			strv_push(&a, "-d");
			strv_push(&a, o.hosts);
			if (o.throttle) {
				strv_push(&a, "-t");
				strv_push(&a, o.throttle);
			}
			const char *user = config_get("sstableloader_user");
			const char *pwf = config_get("sstableloader_password_file");
			if (user) {
				strv_push(&a, "-u");
				strv_push(&a, user);
			}
			char *pw = NULL;
			if (pwf && read_small_file(pwf, 4096, &pw, NULL) == 0) {
				pw[strcspn(pw, "\r\n")] = '\0';
				strv_push(&a, "-pw");
				strv_push(&a, pw);
				free(pw);
			}
			strv_push(&a, src.buf);
			FILE *lf = fopen(t[i].log, "ae");
			if (lf) {
				char cmd[4096];
				format_command(a.v, cmd, sizeof(cmd));
				fprintf(lf, "# attempt %u: %s\n", t[i].attempts + 1, pw ? "(command not shown: has a password)" : cmd);
				fclose(lf);
			}
			t[i].pid = exec_start(a.v, t[i].log);
			strv_free(&a);
			sb_free(&src);
			if (t[i].pid < 0) {
				t[i].status = T_FAILED;
				snprintf(t[i].last_error, sizeof(t[i].last_error), "cannot start %s: %s", o.loader,
					 strerror((int)-t[i].pid));
				continue;
			}
			t[i].attempts++;
			if (!t[i].started_ns)
				t[i].started_ns = now_ns();
			t[i].status = T_RUNNING;
			running++;
			if (!o.json)
				fprintf(stderr, "cassbackup: loading %s.%s (attempt %u)\n", t[i].keyspace, t[i].table,
					t[i].attempts);
		}
		if (running == 0) {
			if (!pending)
				break;
			usleep(100000); /* only retries waiting for their delay */
			continue;
		}
		int ws;
		pid_t pid = waitpid(-1, &ws, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			if (t[i].status != T_RUNNING || t[i].pid != pid)
				continue;
			running--;
			int s = exec_status(ws);
			if (s == 0) {
				t[i].status = T_OK;
				t[i].last_error[0] = '\0';
				t[i].finished_ns = now_ns();
			} else {
				char line[400];
				last_line(t[i].log, line, sizeof(line));
				snprintf(t[i].last_error, sizeof(t[i].last_error), "exit status %d: %s", s, line);
				if (t[i].attempts <= o.retries && !cancel_requested) {
					t[i].status = T_PENDING;
					t[i].next_try = mono_seconds() + o.retry_delay;
				} else {
					t[i].status = T_FAILED;
					t[i].finished_ns = now_ns();
				}
			}
			if (!o.json)
				fprintf(stderr, "cassbackup: %s.%s: %s\n", t[i].keyspace, t[i].table,
					t[i].status == T_OK ? "loaded" : t[i].status == T_FAILED ? t[i].last_error
											 : "failed, will retry");
			write_status(&o, t, n, false);
		}
		/* the mount helper ending early is fatal for everything still to come */
		if (pid == mount_pid) {
			errorf("mount.cassbackup stopped unexpectedly");
			mount_pid = -1;
			break;
		}
	}
	if (cancel_requested) {
		for (size_t i = 0; i < n; i++) {
			if (t[i].status == T_RUNNING) {
				kill(t[i].pid, SIGTERM);
				waitpid(t[i].pid, NULL, 0);
				t[i].status = T_FAILED;
				snprintf(t[i].last_error, sizeof(t[i].last_error), "interrupted");
			}
		}
	}
	sb_free(&bdir);
	write_status(&o, t, n, false);
	size_t ok = 0, failed = 0, skipped = 0;
	for (size_t i = 0; i < n; i++) {
		ok += t[i].status == T_OK;
		failed += t[i].status == T_FAILED || t[i].status == T_PENDING;
		skipped += t[i].status == T_SKIPPED;
	}
	if (o.json) {
		write_status(&o, t, n, true);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (t[i].status == T_FAILED || t[i].status == T_PENDING)
				printf("FAILED  %s.%s after %u attempt(s): %s (log %s)\n", t[i].keyspace, t[i].table,
				       t[i].attempts, t[i].last_error, t[i].log);
		}
		printf("load %s into %s: %zu loaded, %zu already loaded before (skipped), %zu failed; "
		       "status in %s\n", o.name, o.hosts, ok, skipped, failed, o.status_file);
	}
	rc = failed || cancel_requested ? 1 : 0;
out:
	if (mount_pid > 0) {
		char *u[] = {"fusermount3", "-u", mnt, NULL};
		if (exec_run(u, "/dev/null") != 0) {
			char *lz[] = {"fusermount3", "-u", "-z", mnt, NULL};
			exec_run(lz, "/dev/null");
		}
		waitpid(mount_pid, NULL, 0);
	}
	if (!o.mount && mnt[0])
		rmdir(mnt);
	if (staging[0]) {
		char *rm[] = {"rm", "-rf", staging, NULL};
		exec_run(rm, NULL);
	}
	for (size_t i = 0; t && i < n; i++) {
		free(t[i].keyspace);
		free(t[i].table);
	}
	free(t);
	tables_free(&ts);
	catalog_close(cat);
	sb_free(&sf);
out_opts:
	free(o.keyspaces);
	free(o.tables);
	return rc;
}
