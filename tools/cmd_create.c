/* cassbackup create: back up one snapshot of a node into a store.
 *
 * This file holds the command: its options, the checks made before anything changes (plan),
 * nodetool (--take-snapshot), the scan of the snapshot, and reporting. What a backup is, how
 * its bytes are deduplicated and how it is committed, is catalog/backup.h's business.
 *
 * Order of work:
 *   1. plan: the name is free, the catalog readable, nodetool runnable (with --take-snapshot);
 *   2. nodetool snapshot (with --take-snapshot);
 *   3. scan the snapshot (nothing is written yet);
 *   4. the backup writer: every table and file, then the commit;
 *   5. nodetool clearsnapshot (with --take-snapshot), whatever happened since 2.
 */
#include "backup.h"
#include "cli.h"
#include "exec.h"
#include "scan.h"
#include "seekable.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --threads at most: compression is not what limits a create beyond this (reading and hashing
 * are serial), and the writer's memory budget admits fewer anyway (see seekable.h). */
#define MAX_THREADS 64
#define MIN_FRAME_KIB 64
#define MAX_FRAME_KIB (SEEKABLE_MAX_WRITE_FRAME_SIZE >> 10)

struct create_opts {
	const char *store;
	const char *name;
	const char *node, *cluster, *datacenter, *host_id;
	const char *cassandra_conf;
	int level;
	unsigned threads;
	unsigned frame_kib;
	bool json;
	bool take_snapshot;
	const char *nodetool;
	struct scan_opts scan;
};

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 200 || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-") == n;
}

/* Reads "key: value" (cassandra.yaml) or "key=value" (cassandra-rackdc.properties) from a
 * config file; quotes around the value are dropped. NULL when absent. */
static char *conf_value(const char *path, const char *key, char sep)
{
	char *text = NULL;
	if (read_small_file(path, 4 << 20, &text, NULL) < 0)
		return NULL;
	char *res = NULL;
	size_t klen = strlen(key);
	for (char *line = strtok(text, "\n"); line && !res; line = strtok(NULL, "\n")) {
		line += strspn(line, " \t");
		if (strncmp(line, key, klen) != 0)
			continue;
		char *p = line + klen;
		p += strspn(p, " \t");
		if (*p != sep)
			continue;
		p++;
		p += strspn(p, " \t");
		size_t len = strcspn(p, "#\r");
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len >= 2 && (p[0] == '\'' || p[0] == '"') && p[len - 1] == p[0]) {
			p++;
			len -= 2;
		}
		res = strndup(p, len);
	}
	free(text);
	return res;
}

static void create_usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup create --store DIR --data-dir DIR [--data-dir DIR ...] --snapshot TAG\n"
		"                         [--name NAME] [--keyspace KS ...] [--table KS.TABLE ...]\n"
		"                         [--include-system] [--node NAME] [--cluster NAME]\n"
		"                         [--datacenter NAME] [--host-id UUID] [--cassandra-conf DIR]\n"
		"                         [--level N] [--threads N] [--frame-kib N] [--json]\n"
		"                         [--take-snapshot [--nodetool PATH]]\n"
		"\n"
		"Backs up <data-dir>/<ks>/<table>-<id>/snapshots/<TAG>/ of every selected table.\n"
		"NAME defaults to TAG; --node to this host's name; --cluster and --datacenter to\n"
		"cluster_name in DIR/cassandra.yaml and dc in DIR/cassandra-rackdc.properties\n"
		"(DIR: --cassandra-conf, default /etc/cassandra). --level: zstd level (1-19, default 3);\n"
		"--threads: compression threads (0-64, default: all cores; fewer run when their buffers\n"
		"would pass 128 MiB). --frame-kib: tar stream per zstd frame (64-4096, default 1024);\n"
		"smaller frames make random reads through the mount cheaper and compress a little worse.\n"
		"Symbolic links below a data directory are not followed; each one skipped is named.\n"
		"--take-snapshot runs 'nodetool snapshot -t TAG [KS...]' first and, whatever happens,\n"
		"'nodetool clearsnapshot -t TAG' after, so no hard links are left pinning old sstables.\n");
}

/* A whole decimal number from min to max, or one line saying what is wrong. */
static int parse_number(const char *opt, const char *arg, long min, long max, const char *what,
			long *out)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		errorf("%s %s: expected %s from %ld to %ld", opt, arg, what, min, max);
		return 2;
	}
	*out = v;
	return 0;
}

static int parse_opt(int c, struct create_opts *o)
{
	long v;
	int r = 0;
	switch (c) {
	case 's': o->store = optarg; break;
	case 'n': o->name = optarg; break;
	case 'd': r = ptrv_push(&o->scan.data_dirs, &o->scan.ndata_dirs, optarg); break;
	case 't': o->scan.tag = optarg; break;
	case 'k': r = ptrv_push(&o->scan.keyspaces, &o->scan.nkeyspaces, optarg); break;
	case 'T': r = ptrv_push(&o->scan.tables, &o->scan.ntables, optarg); break;
	case 'S': o->scan.include_system = true; break;
	case 'N': o->node = optarg; break;
	case 'C': o->cluster = optarg; break;
	case 'D': o->datacenter = optarg; break;
	case 'H': o->host_id = optarg; break;
	case 'c': o->cassandra_conf = optarg; break;
	case 'J': o->json = true; break;
	case 'P': o->take_snapshot = true; break;
	case 'X': o->nodetool = optarg; break;
	case 'l':
		if (parse_number("--level", optarg, 1, 19, "a zstd level", &v))
			return 2;
		o->level = (int)v;
		break;
	case 'j':
		if (parse_number("--threads", optarg, 0, MAX_THREADS, "a number", &v))
			return 2;
		o->threads = (unsigned)v;
		break;
	case 'F':
		if (parse_number("--frame-kib", optarg, MIN_FRAME_KIB, MAX_FRAME_KIB, "KiB", &v))
			return 2;
		o->frame_kib = (unsigned)v;
		break;
	case 'h': create_usage(stdout); exit(0);
	default: return 2;
	}
	if (r < 0) {
		errorf("out of memory");
		return 1;
	}
	return 0;
}

/* Defaults from the config file, and what the options must say together. */
static int check_opts(struct create_opts *o)
{
	if (!o->store)
		o->store = config_get("store");
	if (!o->scan.ndata_dirs)
		config_get_all("data_dir", &o->scan.data_dirs, &o->scan.ndata_dirs);
	if (!o->cassandra_conf)
		o->cassandra_conf = config_get("cassandra_conf");
	if (!o->cassandra_conf)
		o->cassandra_conf = "/etc/cassandra";
	if (!o->store || !o->scan.ndata_dirs || !o->scan.tag) {
		errorf("create needs --store, --data-dir and --snapshot (see 'cassbackup create --help')");
		return 2;
	}
	if (!valid_name(o->scan.tag) && !o->name) {
		errorf("snapshot tag '%s' cannot serve as a backup name; give --name", o->scan.tag);
		return 2;
	}
	if (!o->name)
		o->name = o->scan.tag;
	if (!valid_name(o->name)) {
		errorf("backup name '%s': use letters, digits and . _ : @ + - (not first), at most 200",
		       o->name);
		return 2;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct create_opts *o)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"name", required_argument, NULL, 'n'},
		{"data-dir", required_argument, NULL, 'd'},
		{"snapshot", required_argument, NULL, 't'},
		{"keyspace", required_argument, NULL, 'k'},
		{"table", required_argument, NULL, 'T'},
		{"include-system", no_argument, NULL, 'S'},
		{"node", required_argument, NULL, 'N'},
		{"cluster", required_argument, NULL, 'C'},
		{"datacenter", required_argument, NULL, 'D'},
		{"host-id", required_argument, NULL, 'H'},
		{"cassandra-conf", required_argument, NULL, 'c'},
		{"level", required_argument, NULL, 'l'},
		{"threads", required_argument, NULL, 'j'},
		{"frame-kib", required_argument, NULL, 'F'},
		{"json", no_argument, NULL, 'J'},
		{"take-snapshot", no_argument, NULL, 'P'},
		{"nodetool", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c, r;
	while ((c = getopt_long(argc, argv, "s:n:d:t:k:T:hj:l:", opts, NULL)) != -1)
		if ((r = parse_opt(c, o)) != 0)
			return r;
	if (optind < argc) {
		errorf("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	return check_opts(o);
}

static void free_opts(struct create_opts *o)
{
	free(o->scan.data_dirs);
	free(o->scan.keyspaces);
	free(o->scan.tables);
}

/* --- plan: what can be checked before anything changes --------------------------------- */

/* The store opens, its catalog reads, and the name is free. 0, or the exit status. */
static int check_name_free(const struct create_opts *o)
{
	catalog *cat;
	if (open_store(o->store, CATALOG_READONLY, &cat) < 0)
		return 1;
	int r = catalog_backup_exists(cat, o->name);
	if (r < 0)
		errorf("cannot read catalog of %s: %s", o->store, catalog_errmsg(cat));
	else if (r > 0)
		errorf("backup %s already exists in %s; choose another --name", o->name, o->store);
	catalog_close(cat);
	return r != 0 ? 1 : 0;
}

/* nodetool can be run (with --take-snapshot). 0, or the exit status. */
static int check_nodetool(const struct create_opts *o)
{
	struct strv a = {0};
	char found[PATH_MAX];
	int r = nodetool_argv(&a, o->nodetool);
	if (r < 0) {
		errorf("out of memory");
		return 1;
	}
	r = exec_find(a.v[0], found, sizeof(found));
	if (r < 0)
		errorf("cannot run nodetool %s: %s; no snapshot was taken", a.v[0],
		       r == -ENOENT ? "not found (give --nodetool PATH)" : "not an executable file");
	strv_free(&a);
	return r < 0 ? 2 : 0;
}

/* --- execute ---------------------------------------------------------------------------- */

/* What the backup records about the node: options, else cassandra.yaml and
 * cassandra-rackdc.properties, else the host name (node) or nothing. */
struct node_meta {
	char *node, *cluster, *datacenter;
};

static int read_node_meta(const struct create_opts *o, struct node_meta *m)
{
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	struct strbuf path = {0};
	int r = sb_printf(&path, "%s/cassandra.yaml", o->cassandra_conf);
	m->cluster = o->cluster ? strdup(o->cluster) : conf_value(path.buf, "cluster_name", ':');
	path.len = 0;
	r = r ?: sb_printf(&path, "%s/cassandra-rackdc.properties", o->cassandra_conf);
	m->datacenter = o->datacenter ? strdup(o->datacenter) : conf_value(path.buf, "dc", '=');
	sb_free(&path);
	m->node = strdup(o->node ? o->node : host);
	if (!m->cluster)
		m->cluster = strdup("");
	if (!m->datacenter)
		m->datacenter = strdup("");
	return r < 0 || !m->node || !m->cluster || !m->datacenter ? -ENOMEM : 0;
}

static void free_node_meta(struct node_meta *m)
{
	free(m->node);
	free(m->cluster);
	free(m->datacenter);
}

static struct backup_attr attr_of(const struct stat *st)
{
	return (struct backup_attr){
		.mode = st->st_mode & 07777,
		.uid = st->st_uid,
		.gid = st->st_gid,
		.mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
	};
}

/* Backs up one scanned file: the file opened is the file scanned, or it changed meanwhile. */
static int add_scanned_file(backup_writer *w, unsigned table, unsigned dir,
			    const struct scan_file *f)
{
	int fd = scan_open_file(f);
	if (fd < 0) {
		errorf("cannot read %s: %s", f->src, strerror(-fd));
		return fd;
	}
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	if (r == 0 && (st.st_size != f->st.st_size || st.st_ino != f->st.st_ino ||
		       st.st_dev != f->st.st_dev || !S_ISREG(st.st_mode))) {
		errorf("cannot back up %s: the file changed while it was being read", f->src);
		r = -ESTALE;
	} else if (r < 0) {
		errorf("cannot read %s: %s", f->src, strerror(-r));
	}
	struct backup_file bf = {.name = f->name, .size = (uint64_t)st.st_size, .attr = attr_of(&st),
				 .source = f->src};
	if (r == 0 && (r = backup_writer_add_file(w, table, dir, &bf, fd)) < 0 && r != -ECANCELED)
		errorf("%s", backup_writer_errmsg(w));
	close(fd);
	return r;
}

/* Hands one scanned table, its index directories and its files to the writer. */
static int add_table(backup_writer *w, const struct scan_table *t, struct progress *prog)
{
	struct backup_table bt = {
		.keyspace = t->keyspace,
		.table = t->table,
		.table_id = t->table_id,
		.dirname = t->dirname,
		.schema_cql = t->schema_cql,
		.keyspace_attr = attr_of(&t->ks_st),
		.table_attr = attr_of(&t->table_st),
	};
	unsigned ti, di;
	int r = backup_writer_add_table(w, &bt, &ti);
	for (size_t d = 0; r == 0 && d < t->ndirs; d++) {
		struct backup_attr a = attr_of(&t->dirs[d].st);
		r = backup_writer_add_dir(w, ti, t->dirs[d].name, &a, &di);
		if (r == 0 && di != d)
			r = -EINVAL;
	}
	if (r < 0) {
		errorf("%s", backup_writer_errmsg(w));
		return r;
	}
	for (size_t k = 0; r == 0 && k < t->nfiles; k++) {
		const struct scan_file *f = &t->files[k];
		r = add_scanned_file(w, ti, f->dir < 0 ? BACKUP_TABLE_DIR : (unsigned)f->dir, f);
		if (r == 0)
			progress_file_done(prog);
	}
	return r;
}

/* --- report ----------------------------------------------------------------------------- */

static void report_scan(const struct scan_result *scan)
{
	for (size_t i = 0; i < scan->nskipped; i++)
		fprintf(stderr, "cassbackup: skipping %s: a symbolic link, not followed\n",
			scan->skipped[i]);
}

static void report_reclaimed(const struct create_opts *o, const backup_writer *w)
{
	unsigned n;
	int r = backup_writer_reclaimed(w, &n);
	if (r < 0)
		errorf("cannot clean %s/tmp: %s, ignoring", o->store, strerror(-r));
	else if (n)
		fprintf(stderr, "cassbackup: removed %u unfinished pack(s) left in %s/tmp by an "
			"interrupted backup\n", n, o->store);
}

static void report_done(const struct create_opts *o, const struct backup_summary *s, double secs)
{
	char total[32], fresh[32], stored[32], rate[32];
	format_bytes(s->bytes, total, sizeof(total));
	format_bytes(s->new_bytes, fresh, sizeof(fresh));
	format_bytes(s->stored_bytes, stored, sizeof(stored));
	format_bytes(secs > 0 ? (uint64_t)((double)s->bytes / secs) : 0, rate, sizeof(rate));
	if (!o->json) {
		printf("backup %s: %llu tables, %llu files, %s; %s new, %s written to %s; %.1f s "
		       "(%s/s)\n", o->name, (unsigned long long)s->tables,
		       (unsigned long long)s->files, total, fresh, stored, o->store, secs, rate);
		return;
	}
	struct strbuf j = {0};
	sb_puts(&j, "{\"name\": ");
	sb_json_str(&j, o->name);
	sb_printf(&j, ", \"tables\": %llu, \"files\": %llu, \"bytes\": %llu, \"new_bytes\": %llu, "
		  "\"stored_bytes\": %llu, \"seconds\": %.3f}\n", (unsigned long long)s->tables,
		  (unsigned long long)s->files, (unsigned long long)s->bytes,
		  (unsigned long long)s->new_bytes, (unsigned long long)s->stored_bytes, secs);
	fputs(j.buf ? j.buf : "", stdout);
	sb_free(&j);
}

/* --- the command ------------------------------------------------------------------------ */

/* Writes and commits the scanned snapshot. 0 or -errno (the failure already said). */
static int write_backup(const struct create_opts *o, const struct scan_result *scan,
			struct backup_summary *sum)
{
	struct node_meta nm = {0};
	if (read_node_meta(o, &nm) < 0) {
		free_node_meta(&nm);
		errorf("out of memory");
		return -ENOMEM;
	}
	struct backup_meta meta = {.name = o->name, .cluster = nm.cluster, .datacenter = nm.datacenter,
				   .node = nm.node, .host_id = o->host_id,
				   .snapshot_tag = o->scan.tag};
	struct progress prog;
	progress_init(&prog, "backing up", scan->bytes, scan->nfiles);
	struct backup_writer_opts wo = {.level = o->level, .threads = o->threads,
					.frame_size = (size_t)o->frame_kib << 10,
					.cancel = &cancel_requested, .progress = progress_add,
					.pctx = &prog};
	backup_writer *w;
	struct strbuf err = {0};
	int r = backup_writer_begin(o->store, &meta, &wo, &w, &err);
	if (r < 0)
		errorf("%s%s", err.buf, r == -EEXIST ? "; choose another --name" : "");
	else
		report_reclaimed(o, w);
	for (size_t i = 0; r == 0 && i < scan->ntables; i++)
		r = add_table(w, &scan->tables[i], &prog);
	progress_end(&prog);
	if (r == 0 && (r = backup_writer_commit(w, sum)) < 0 && r != -ECANCELED)
		errorf("%s", backup_writer_errmsg(w));
	backup_writer_free(w);
	free_node_meta(&nm);
	sb_free(&err);
	return r;
}

/* Scans and backs up; 0 or the exit status. */
static int do_create(const struct create_opts *o)
{
	double t0 = mono_seconds();
	struct scan_result scan;
	struct strbuf err = {0};
	int r = scan_snapshot(&o->scan, &scan, &err);
	if (r < 0) {
		errorf("%s", err.buf);
		sb_free(&err);
		return cancel_requested ? 128 + (int)cancel_requested : 1;
	}
	sb_free(&err);
	report_scan(&scan);
	struct backup_summary sum;
	r = write_backup(o, &scan, &sum);
	scan_result_free(&scan);
	if (r == 0) {
		report_done(o, &sum, mono_seconds() - t0);
		return 0;
	}
	if (!cancel_requested)
		return 1;
	errorf("interrupted by signal %d; no backup was made, nothing changed", (int)cancel_requested);
	return 128 + (int)cancel_requested;
}

/* nodetool snapshot -t TAG [KS...] or [-kt KS.T,...]. */
static int take_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	int r = nodetool_argv(&a, o->nodetool);
	r = r ?: strv_push(&a, "snapshot") ?: strv_push(&a, "-t") ?: strv_push(&a, o->scan.tag);
	if (r == 0 && o->scan.ntables) {
		struct strbuf kt = {0};
		for (size_t i = 0; i < o->scan.ntables; i++)
			sb_printf(&kt, "%s%s", i ? "," : "", o->scan.tables[i]);
		r = strv_push(&a, "-kt") ?: strv_push(&a, kt.buf);
		sb_free(&kt);
	}
	for (size_t i = 0; r == 0 && !o->scan.ntables && i < o->scan.nkeyspaces; i++)
		r = strv_push(&a, o->scan.keyspaces[i]);
	if (r < 0) {
		strv_free(&a);
		return r;
	}
	char cmd[2048];
	format_command(a.v, cmd, sizeof(cmd));
	int s = exec_run(a.v, NULL);
	if (s != 0)
		errorf("%s failed (exit status %d); no backup was made", cmd, s);
	strv_free(&a);
	return s == 0 ? 0 : -EIO;
}

static void clear_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	if (nodetool_argv(&a, o->nodetool) ?: strv_push(&a, "clearsnapshot") ?: strv_push(&a, "-t") ?:
	    strv_push(&a, o->scan.tag)) {
		strv_free(&a);
		return;
	}
	char cmd[2048];
	format_command(a.v, cmd, sizeof(cmd));
	int s = exec_run(a.v, NULL);
	if (s != 0)
		errorf("%s failed (exit status %d): snapshot %s is still on disk and pins its sstables; "
		       "clear it by hand", cmd, s, o->scan.tag);
	strv_free(&a);
}

int cmd_create(int argc, char **argv)
{
	struct create_opts o = {.level = 3, .frame_kib = SEEKABLE_DEFAULT_FRAME_SIZE >> 10};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	o.threads = ncpu <= 0 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (unsigned)ncpu;
	int r = parse_opts(argc, argv, &o);
	if (r == 0)
		r = check_name_free(&o);
	if (r == 0 && o.take_snapshot)
		r = check_nodetool(&o);
	if (r == 0) {
		install_cancel_handlers();
		if (!o.take_snapshot) {
			r = do_create(&o);
		} else {
			/* once taken, the snapshot is cleared whatever happens */
			r = take_snapshot(&o) < 0 ? 1 : do_create(&o);
			clear_snapshot(&o);
			if (r == 0 && cancel_requested)
				r = 128 + (int)cancel_requested;
		}
	}
	free_opts(&o);
	return r;
}
