/* cassbackup create: back up one snapshot of a node into a store.
 *
 * This file holds the command: its options, the checks made before anything changes (plan),
 * nodetool (--take-snapshot), the scan of the snapshot, and reporting. What a backup is, how
 * its bytes are deduplicated and how it is committed, is catalog/backup.h's business.
 *
 * Order of work:
 *   1. plan: the data directories known (options, configuration or cassandra.yaml), --tokens
 *      readable, the name free, the catalog readable, nodetool runnable (with --take-snapshot);
 *   2. nodetool snapshot (with --take-snapshot);
 *   3. scan the snapshot, and check every table against its manifest.json: a Data.db listed
 *      there that no data directory holds refuses the backup (nothing is written yet);
 *   4. what the backup records of the node: names, Cassandra version and tokens (nodetool
 *      version / info -T when it can be run; unknown otherwise);
 *   5. the backup writer: every table and file, then the commit;
 *   6. nodetool clearsnapshot (with --take-snapshot), whatever happened since 2.
 * Around them, the configuration's hooks (hooks.h: hook_pre before 1, hook_post or
 * hook_failure after 6) and, once the backup is made or has failed, its metrics (metrics.h).
 */
#include "backup.h"
#include "cassandra_conf.h"
#include "nodemeta.h"
#include "cli.h"
#include "commitlog.h"
#include "cluster.h"
#include "exec.h"
#include "hooks.h"
#include "metrics.h"
#include "incremental.h"
#include "tmpdir.h"
#include "scan.h"
#include "packer.h"
#include "seekable.h"
#include "store.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --threads at most: compression is not what limits a create beyond this (reading and hashing
 * are serial), and the writer's memory budget admits fewer anyway (see seekable.h). */
#define MAX_THREADS 64
#define MIN_FRAME_KIB 64
#define MAX_FRAME_KIB (SEEKABLE_MAX_WRITE_FRAME_SIZE >> 10)
/* --lock-wait: a create waits this long for a prune's exclusive lock to go, rather than fail
 * a nightly backup because a prune happened to run; a prune holds it while it deletes. */
#define DEFAULT_LOCK_WAIT (10 * 60)

/* What the backup records about the node: options, else nodetool, else Cassandra's
 * configuration files, else the host name (node), or unknown (""; no tokens, no ring). */
struct node_meta {
	char *node, *cluster, *datacenter, *rack, *host_id, *schema_version;
	char *version; /* NULL: unknown */
	struct strv tokens; /* none: unknown */
	struct status_node *ring; /* nodetool status */
	size_t nring;
	struct strbuf said; /* what nodetool could not tell, one line each, said when writing */
};

struct create_opts {
	const char *store, *name, *tag;
	const char *node, *cluster, *datacenter, *host_id, *rack;
	const char *cassandra_conf, *nodetool;
	const char *cassandra_version, *tokens_file;
	const char *cqlsh, *cqlsh_host; /* --cqlsh, --cqlsh-host */
	struct strv cqlsh_options;      /* --cqlsh-option */
	bool no_schema, no_conf;
	uint64_t level, threads, frame_kib, pack_size, lock_wait;
	struct duration name_period; /* --name-period: the time slot a name template rounds to */
	char name_buf[256];          /* the name a template made */
	char host_id_buf[37];        /* --host-id as Cassandra spells it (host_id_canonical) */
	bool json, take_snapshot, include_system;
	bool incremental, clear_links; /* --incremental, --clear-incremental-links */
	bool clearing;                 /* clear_links, and no other chain's links (do_create) */
	struct taken_records *links;   /* a full backup's record of backups/, one per table scanned */
	const char *base;              /* --base */
	bool take_over;                /* --take-over: from another chain's links (check_take_over) */
	struct inc_chain chain;        /* what an incremental follows (plan) */
	int64_t snapshot_ns;           /* --take-snapshot: the time before it was taken */
	bool commitlog_seen;           /* commitlog_seen_id (manifest.h) is known: */
	int64_t commitlog_seen_id;
	uint64_t links_removed;        /* --incremental: backups/ links removed after the commit */
	struct strv data_dirs;
	int node_lock;      /* the first data directory, flocked (lock_node); -1 before */
	struct selection sel;
	struct manifest_scope scope; /* what the backup is of (manifest.h): sel, or the tables
				      * its snapshot is in when some selected ones lack it */
	struct strv tokens; /* from --tokens FILE */
	struct store *s;    /* opened by plan, for the whole command */
	bool made;          /* the backup was committed; sum tells what it holds */
	struct backup_summary sum;
	struct node_meta nm; /* read by plan */
	char *schema;        /* cqlsh's DESCRIBE SCHEMA; NULL: not kept (said) */
	struct nodemeta_conf conf; /* the configuration directory's files */
};

static void free_node_meta(struct node_meta *m);

/* What keeps tag from being a snapshot tag, or NULL. nodetool snapshot -t TAG makes
 * <table dir>/snapshots/TAG, and create reads (with --take-snapshot: makes and clears) that
 * directory, so a tag is one path component: never "..", a path, or a name no directory has. */
static const char *tag_problem(const char *tag)
{
	if (!*tag)
		return "empty";
	if (!strcmp(tag, ".") || !strcmp(tag, ".."))
		return "'.' and '..' are not directory names";
	if (strchr(tag, '/'))
		return "contains '/'";
	if (strlen(tag) > NAME_MAX)
		return "longer than 255 bytes (NAME_MAX)";
	return NULL;
}

static const char create_description[] =
	"Backs up <data-dir>/<ks>/<table>-<id>/snapshots/<TAG>/ of every selected table.\n"
	"Data directories: --data-dir (repeatable), else data_dir in the configuration, else\n"
	"data_file_directories in CONF/cassandra.yaml (CONF: --cassandra-conf, default\n"
	"/etc/cassandra). Each table is checked against its snapshot's manifest.json: a Data.db it\n"
	"lists that no data directory holds refuses the backup.\n"
	"NAME defaults to TAG; --node to this host's name; --cluster and --datacenter to\n"
	"cluster_name in CONF/cassandra.yaml and dc in CONF/cassandra-rackdc.properties.\n"
	"The Cassandra version and the node's tokens are recorded: --cassandra-version and\n"
	"--tokens, else 'nodetool version' and 'nodetool info -T' when nodetool can be run,\n"
	"else they are recorded as unknown.\n"
	"--frame-kib: tar stream per zstd frame; smaller frames make random reads through the\n"
	"mount cheaper and compress a little worse. --threads: fewer run when their buffers\n"
	"would pass 128 MiB. Symbolic links below a data directory are not followed; each one\n"
	"skipped is named.\n"
	"--take-snapshot runs 'nodetool snapshot -t TAG' first and, once it is taken, whatever\n"
	"happens, 'nodetool clearsnapshot -t TAG' after, so no hard links are left pinning old\n"
	"sstables. A snapshot nodetool could not take is not cleared: a snapshots/TAG on disk then\n"
	"is not this run's (nodetool refuses a tag that exists) or only part of it; it is named.\n"
	"--incremental (with --name, no --snapshot) takes in the tables' backups/ directories\n"
	"(cassandra.yaml incremental_backups: true) on top of the node's last backup made on its\n"
	"last full one (--base: another full one), then removes the links whose bytes it committed.\n"
	"Every backup also keeps the keyspace DDL, 'cqlsh [--cqlsh-host] [--cqlsh-option...] -e\n"
	"\"DESCRIBE SCHEMA\"' (schema.cql beside the keyspaces; --no-schema: not), and the regular\n"
	"files of CONF (cassandra-conf/; --no-conf: not). Either one that cannot be read is a\n"
	"warning, not a failure. Credentials for cqlsh go in a cqlshrc file\n"
	"(--cqlsh-option=--cqlshrc=FILE): a password is refused on its command line.";

/* A name template (a name with %-conversions) made into the name (cluster_name_expand).
 * 0, or -EINVAL (said). */
static int expand_name(struct create_opts *o)
{
	struct strbuf why = {0};
	int r = cluster_name_expand(o->name, &o->name_period, time(NULL), o->name_buf,
				    sizeof(o->name_buf), &why);
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(o->name);
		errorf("name template '%s' (--name-period, name_period): %s", shown ? shown : "",
		       why.buf ? why.buf : strerror(-r));
	} else {
		o->name = o->name_buf;
	}
	sb_free(&why);
	return r;
}

/* --node as the store takes a node's key (manifest_node_key_ok), --host-id as a host id
 * (host_id_canonical, which it becomes): else one line and CB_EXIT_USAGE, before anything is
 * done (no snapshot taken). */
static int check_node_options(struct cli_command *cmd, struct create_opts *o)
{
	if (o->node && !manifest_node_key_ok(o->node)) {
		_cleanup_free_ char *shown = cli_escape(o->node);
		return cli_usage_error(cmd, "--node '%s': " NODE_KEY_RULE, shown ? shown : "");
	}
	if (o->host_id && host_id_canonical(o->host_id, o->host_id_buf) < 0) {
		_cleanup_free_ char *shown = cli_escape(o->host_id);
		return cli_usage_error(cmd, "--host-id '%s': " HOST_ID_RULE, shown ? shown : "");
	}
	if (o->host_id)
		o->host_id = o->host_id_buf;
	return CLI_RUN;
}

/* What --incremental allows: no snapshot (it reads backups/), a name given. */
static int parse_incremental(struct cli_command *cmd, struct create_opts *o)
{
	if (o->tag)
		return cli_usage_error(cmd, "--incremental reads backups/, not a snapshot: drop --snapshot");
	if (o->take_snapshot || o->clear_links)
		return cli_usage_error(cmd, "--incremental takes no snapshot: drop %s",
				       o->take_snapshot ? "--take-snapshot" : "--clear-incremental-links");
	if (!o->name)
		return cli_usage_error(cmd, "--incremental needs --name NAME (or a name template)");
	if (strchr(o->name, '%') && expand_name(o) < 0)
		return CB_EXIT_USAGE;
	if (!backup_name_valid(o->name)) {
		errorf("backup name '%s': " BACKUP_NAME_RULE, o->name);
		return CB_EXIT_USAGE;
	}
	o->tag = "";
	return CLI_RUN;
}

/* Parses the command line (and the configuration). CLI_RUN or the exit code. */
static int parse_opts(int argc, char **argv, struct create_opts *o)
{
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &o->store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "snapshot", .short_name = 't', .type = OPT_STRING, .value = &o->tag, .arg = "TAG",
		 .help = "the snapshot tag to back up (not with --incremental)"},
		{.name = "incremental", .type = OPT_FLAG, .value = &o->incremental,
		 .help = "take in the tables' backups/ (Cassandra's incremental backups) on top of the "
			 "node's last backup, then remove the links stored"},
		{.name = "base", .type = OPT_STRING, .value = &o->base, .arg = "NAME",
		 .help = "with --incremental: the full backup to follow (default: the node's last)"},
		{.name = "take-over", .type = OPT_FLAG, .value = &o->take_over,
		 .help = "with --incremental: take backups/ links the node's incrementals of other tables "
			 "take in, ending their chain until its next full backup"},
		{.name = "clear-incremental-links", .type = OPT_FLAG, .value = &o->clear_links,
		 .help = "after a full backup, remove backups/ links older than its snapshot whose "
			 "bytes the store holds"},
		{.name = "name", .short_name = 'n', .type = OPT_STRING, .value = &o->name, .arg = "NAME",
		 .help = "the backup's name, or a template: strftime %-conversions of the time slot in "
			 "UTC (default: TAG)", .config_key = "name"},
		{.name = "name-period", .type = OPT_DURATION, .value = &o->name_period, .arg = "DURATION",
		 .help = "round the template's time down to a slot of this length: 1d, 6h, 15min...",
		 .config_key = "name_period"},
		{.name = "data-dir", .short_name = 'd', .type = OPT_STRINGS, .value = &o->data_dirs,
		 .arg = "DIR", .help = "a Cassandra data directory (repeat for each)", .config_key = "data_dir"},
		{.name = "keyspace", .short_name = 'k', .type = OPT_KEYSPACE, .value = &o->sel, .arg = "KS",
		 .help = "back up only this keyspace (repeatable)"},
		{.name = "table", .short_name = 'T', .type = OPT_TABLE, .value = &o->sel, .arg = "KS.TABLE",
		 .help = "back up only this table (repeatable)"},
		{.name = "include-system", .type = OPT_FLAG, .value = &o->include_system,
		 .help = "include the system keyspaces"},
		{.name = "node", .type = OPT_STRING, .value = &o->node, .arg = "NAME", .help = "the node's name",
		 .config_key = "node"},
		{.name = "cluster", .type = OPT_STRING, .value = &o->cluster, .arg = "NAME", .help = "the cluster's name"},
		{.name = "datacenter", .type = OPT_STRING, .value = &o->datacenter, .arg = "NAME",
		 .help = "the node's datacenter"},
		{.name = "host-id", .type = OPT_STRING, .value = &o->host_id, .arg = "UUID",
		 .help = "the node's host id (default: nodetool info)", .config_key = "host_id"},
		{.name = "rack", .type = OPT_STRING, .value = &o->rack, .arg = "NAME",
		 .help = "the node's rack (default: nodetool info)"},
		{.name = "cassandra-version", .type = OPT_STRING, .value = &o->cassandra_version,
		 .arg = "VERSION", .help = "the node's Cassandra version (default: nodetool version)"},
		{.name = "tokens", .type = OPT_STRING, .value = &o->tokens_file, .arg = "FILE",
		 .help = "the node's tokens, blank- or comma-separated (default: nodetool info -T)"},
		{.name = "cassandra-conf", .type = OPT_STRING, .value = &o->cassandra_conf, .arg = "DIR",
		 .help = "Cassandra's configuration directory", .config_key = "cassandra_conf"},
		{.name = "level", .short_name = 'l', .type = OPT_U64, .value = &o->level, .arg = "N",
		 .help = "zstd level (default 3)", .min = 1, .max = 19},
		{.name = "threads", .short_name = 'j', .type = OPT_U64, .value = &o->threads, .arg = "N",
		 .help = "compression threads (default: all cores)", .min = 0, .max = MAX_THREADS},
		{.name = "frame-kib", .type = OPT_U64, .value = &o->frame_kib, .arg = "N",
		 .help = "KiB of tar stream per zstd frame (default 128)", .min = MIN_FRAME_KIB,
		 .max = MAX_FRAME_KIB},
		{.name = "pack-size", .type = OPT_SIZE, .value = &o->pack_size, .arg = "SIZE",
		 .help = "bytes of tar stream per pack (default 512M)", .config_key = "pack_size",
		 .min = PACK_MIN_SIZE},
		{.name = "lock-wait", .type = OPT_U64, .value = &o->lock_wait, .arg = "SECONDS",
		 .help = "wait this long for a prune's exclusive lock to go (default 600)", .max = 86400},
		{.name = "json", .type = OPT_FLAG, .value = &o->json, .help = "print the summary as JSON"},
		{.name = "take-snapshot", .type = OPT_FLAG, .value = &o->take_snapshot,
		 .help = "run nodetool snapshot first and clearsnapshot after"},
		{.name = "nodetool", .type = OPT_STRING, .value = &o->nodetool, .arg = "PATH",
		 .help = "the nodetool program", .config_key = "nodetool"},
		{.name = "cqlsh", .type = OPT_STRING, .value = &o->cqlsh, .arg = "PROGRAM",
		 .help = "the cqlsh program (default: cqlsh from PATH)", .config_key = "cqlsh"},
		{.name = "cqlsh-host", .type = OPT_STRING, .value = &o->cqlsh_host, .arg = "HOST",
		 .help = "the host cqlsh connects to (default: cqlsh's, 127.0.0.1)",
		 .config_key = "cqlsh_host"},
		{.name = "cqlsh-option", .type = OPT_STRINGS, .value = &o->cqlsh_options, .arg = "ARG",
		 .help = "an argument for cqlsh, such as --ssl or --cqlshrc=FILE (repeatable)",
		 .config_key = "cqlsh_option"},
		{.name = "no-schema", .type = OPT_FLAG, .value = &o->no_schema,
		 .help = "do not keep the keyspace DDL (cqlsh DESCRIBE SCHEMA)"},
		{.name = "no-conf", .type = OPT_FLAG, .value = &o->no_conf,
		 .help = "do not keep Cassandra's configuration directory"},
		{0},
	};
	struct cli_command cmd = {.name = "create", .description = create_description, .options = opts};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN || (rc = check_node_options(&cmd, o)) != CLI_RUN)
		return rc;
	if (o->incremental)
		return parse_incremental(&cmd, o);
	if (!o->tag)
		return cli_usage_error(&cmd, "missing --snapshot TAG (or --incremental)");
	if (o->base || o->take_over)
		return cli_usage_error(&cmd, "%s is for --incremental", o->base ? "--base" : "--take-over");
	const char *why = tag_problem(o->tag);
	if (why) {
		_cleanup_free_ char *shown = cli_escape(o->tag);
		return cli_usage_error(&cmd, "--snapshot '%.64s%s': %s; a snapshot tag is one directory name "
				       "(<table>/snapshots/TAG)", shown ? shown : "",
				       shown && strlen(shown) > 64 ? "..." : "", why);
	}
	if (!backup_name_valid(o->tag) && !o->name) {
		errorf("snapshot tag '%s' cannot serve as a backup name; give --name", o->tag);
		return CB_EXIT_USAGE;
	}
	for (size_t i = 0; i < o->cqlsh_options.n; i++)
		if ((why = cqlsh_option_problem(o->cqlsh_options.v[i])))
			return cli_usage_error(&cmd, "--cqlsh-option %s: %s", o->cqlsh_options.v[i], why);
	if (!o->name)
		o->name = o->tag;
	if (strchr(o->name, '%') && expand_name(o) < 0)
		return CB_EXIT_USAGE;
	if (!backup_name_valid(o->name)) {
		errorf("backup name '%s': " BACKUP_NAME_RULE, o->name);
		return CB_EXIT_USAGE;
	}
	return CLI_RUN;
}

static void free_opts(struct create_opts *o)
{
	strv_free(&o->data_dirs);
	strv_free(&o->tokens);
	strv_free(&o->cqlsh_options);
	free(o->schema);
	nodemeta_conf_free(&o->conf);
	free_node_meta(&o->nm);
	selection_free(&o->sel);
	manifest_scope_free(&o->scope);
	if (o->node_lock >= 0)
		close(o->node_lock); /* and its lock */
	store_close(o->s);
}

/* --- plan: what can be checked before anything changes --------------------------------- */

static int read_node_identity(const struct create_opts *o, struct node_meta *m);

/* The store opens (for the rest of the command), its catalog reads, and the name is free.
 * 0, or the exit code. */
static int check_name_free(struct create_opts *o)
{
	int r = cli_store_open(o->store, 0, &o->s);
	if (r != 0)
		return r;
	catalog *cat = store_catalog(o->s);
	const char *node = *o->nm.host_id ? o->nm.host_id : o->nm.node;
	r = catalog_backup_exists(cat, o->name, node);
	if (r < 0) {
		char why[512];
		errorf("cannot read catalog of %s: %s", o->store, catalog_why(cat, r, why, sizeof(why)));
	} else if (r > 0) {
		_cleanup_free_ char *n = cli_escape(node);
		errorf("backup %s of node %s already exists in %s; choose another --name", o->name,
		       n ? n : "", o->store);
	}
	return r != 0 ? CB_EXIT_FAILED : 0;
}

/* Can nodetool be run? 0, or -ENOENT / -EACCES (exec_find) with its name in prog. */
static int find_nodetool(const struct create_opts *o, char *prog, size_t n)
{
	struct strv a = {0};
	char found[PATH_MAX];
	int r = nodetool_argv(&a, o->nodetool);
	if (r == 0) {
		snprintf(prog, n, "%s", a.v[0]);
		r = exec_find(a.v[0], found, sizeof(found));
	}
	strv_free(&a);
	return r;
}

/* nodetool can be run (with --take-snapshot). 0, or the exit code. */
static int check_nodetool(const struct create_opts *o)
{
	char prog[PATH_MAX];
	int r = find_nodetool(o, prog, sizeof(prog));
	if (r == -ENOMEM)
		errorf("out of memory");
	else if (r < 0)
		errorf("cannot run nodetool %s: %s; no snapshot was taken", prog,
		       r == -ENOENT ? "not found (give --nodetool PATH)" : "not an executable file");
	return r < 0 ? CB_EXIT_USAGE : 0;
}

/* CONF/file into *text. 0 or -errno, with path set. */
static int read_conf_file(const struct create_opts *o, const char *file, struct strbuf *path,
			  char **text)
{
	*text = NULL;
	path->len = 0;
	int r = sb_printf(path, "%s/%s", o->cassandra_conf, file);
	return r ?: read_small_file(path->buf, 4 << 20, text, NULL);
}

/* Each data directory without trailing slashes: the paths recorded of backups/ directories
 * (taken.h) are spelled the same way whether "/data" or "/data/" was given. */
static void trim_data_dirs(struct create_opts *o)
{
	for (size_t i = 0; i < o->data_dirs.n; i++) {
		char *d = o->data_dirs.v[i];
		size_t n = strlen(d);
		while (n > 1 && d[n - 1] == '/')
			d[--n] = '\0';
	}
}

/* With no --data-dir (and no data_dir in the configuration): data_file_directories from
 * cassandra.yaml; either way without trailing slashes. 0, or the exit code after one line
 * saying why no data directory is known. */
static int resolve_data_dirs(struct create_opts *o)
{
	if (o->data_dirs.n) {
		trim_data_dirs(o);
		return 0;
	}
	struct strbuf path = {0}, err = {0};
	_cleanup_free_ char *yaml = NULL;
	int r = read_conf_file(o, "cassandra.yaml", &path, &yaml);
	if (r == 0)
		r = yaml_list(yaml, "data_file_directories", &o->data_dirs, &err);
	if (r == -ENOMEM)
		errorf("out of memory");
	else if (r < 0 && err.len)
		errorf("%s, %s", path.buf, err.buf);
	else if (r < 0)
		errorf("no data directory known: cannot read %s: %s; give --data-dir DIR (or data_dir in "
		       "the configuration), or --cassandra-conf DIR", path.buf, strerror(-r));
	else if (o->data_dirs.n == 0)
		errorf("no data directory known: %s sets no data_file_directories (Cassandra then uses "
		       "$CASSANDRA_HOME/data/data); give --data-dir DIR (or data_dir in the configuration)",
		       path.buf);
	sb_free(&path);
	sb_free(&err);
	trim_data_dirs(o);
	return r < 0 || o->data_dirs.n == 0 ? CB_EXIT_USAGE : 0;
}

/* --tokens FILE, read and checked. 0, or the exit code. */
static int load_tokens_file(struct create_opts *o)
{
	if (!o->tokens_file)
		return 0;
	_cleanup_free_ char *text = NULL;
	struct strbuf err = {0};
	int r = read_small_file(o->tokens_file, 16 << 20, &text, NULL);
	if (r < 0)
		errorf("--tokens %s: %s", o->tokens_file, strerror(-r));
	else if ((r = tokens_parse_list(text, &o->tokens, &err)) < 0)
		errorf("--tokens %s: %s", o->tokens_file, r == -ENOMEM ? "out of memory" : err.buf);
	sb_free(&err);
	return r < 0 ? CB_EXIT_USAGE : 0;
}

/* o->scope: what --keyspace, --table and --include-system select. 0 or -ENOMEM (said). */
static int scope_of_selection(struct create_opts *o)
{
	manifest_scope_free(&o->scope);
	int r = 0;
	for (size_t i = 0; r == 0 && i < o->sel.n; i++)
		r = manifest_scope_add(&o->scope, o->sel.v[i].keyspace, o->sel.v[i].table);
	o->scope.system = o->sel.n == 0 && o->include_system;
	if (r < 0)
		errorf("out of memory");
	return r;
}

/* o->scope: the tables of the scan, when the snapshot is missing from some selected tables
 * that hold data (an incremental builds on this backup only for the tables it holds), else
 * the selection. 0 or -ENOMEM (said). */
static int scope_of_scan(struct create_opts *o, const struct scan_result *scan)
{
	if (scan->nuntagged == 0)
		return scope_of_selection(o);
	manifest_scope_free(&o->scope);
	int r = 0;
	for (size_t i = 0; r == 0 && i < scan->ntables; i++)
		r = manifest_scope_add(&o->scope, scan->tables[i].keyspace, scan->tables[i].table);
	if (r < 0)
		errorf("out of memory");
	return r;
}

struct host_ids {
	const char *node;
	char one[64]; /* the first host id seen, "" none */
	bool several;
};

static int note_host_id(void *ctx, const struct cb_backup_summary *b)
{
	struct host_ids *h = ctx;
	if (!b->host_id || !*b->host_id || strcmp(b->node, h->node))
		return 0;
	if (!*h->one)
		snprintf(h->one, sizeof(h->one), "%s", b->host_id);
	else if (strcasecmp(h->one, b->host_id))
		h->several = true;
	return 0;
}

/* With nodetool silent (Cassandra stopped: the links of its drain's flush wait in backups/),
 * the node's host id is not known, and its chain, keyed by it, was not found ("no complete
 * full backup"). The one host id the backups of its node name record is taken, said, and
 * recorded in this backup, so that the chain goes on through it. 0, or the exit code (said):
 * a name whose backups record several (a host replaced under its name) needs --host-id. */
static int host_id_from_backups(struct create_opts *o)
{
	if (*o->nm.host_id)
		return 0;
	struct host_ids h = {.node = o->nm.node};
	int r = catalog_list_backups(store_catalog(o->s), note_host_id, &h);
	char *copy = NULL;
	if (r == 0 && *h.one && !h.several && !(copy = strdup(h.one)))
		r = -ENOMEM;
	if (r < 0) {
		char why[256];
		errorf("cannot read the catalog: %s; no backup was made",
		       catalog_why(store_catalog(o->s), r, why, sizeof(why)));
		return CB_EXIT_FAILED;
	}
	if (h.several) {
		errorf("node %s's host id is not known (nodetool did not answer), and its backups record "
		       "several (a host replaced under its name): give --host-id; no backup was made",
		       o->nm.node);
		return CB_EXIT_USAGE;
	}
	if (copy) {
		free(o->nm.host_id);
		o->nm.host_id = copy;
		if (sb_printf(&o->nm.said, "node %s's host id taken from its backups, which all record "
			      "it: %s\n", o->nm.node, copy) < 0)
			return CB_EXIT_FAILED;
	}
	return 0;
}

/* incremental_backups is on, and the backup to follow is known. 0, or the exit code. */
static int check_incremental(struct create_opts *o)
{
	struct strbuf err = {0};
	int r = incremental_enabled(o->cassandra_conf, &err);
	if (r == 0 && (r = scope_of_selection(o)) < 0)
		return CB_EXIT_FAILED;
	if (r == 0 && (r = host_id_from_backups(o)) != 0)
		return r;
	if (r == 0) {
		const char *node = *o->nm.host_id ? o->nm.host_id : o->nm.node;
		r = incremental_chain(o->s, node, o->base, &o->scope, &o->chain, &err);
	}
	if (r < 0)
		errorf("%s; no backup was made", err.buf ? err.buf : strerror(-r));
	sb_free(&err);
	return r == -EPERM || r == -EINVAL ? CB_EXIT_USAGE : r == -ENOENT ? CB_EXIT_MISSING
		: r < 0 ? CB_EXIT_FAILED : 0;
}

/* A chain of the node's incrementals that takes in links this backup would take
 * (incremental_other_chain, skip_covered as there): 1, with its newest incremental's name, its
 * scope (other: the caller frees it) and both scopes in words (theirs, ours); 0 when none;
 * -errno. */
static int newest_other_chain(struct create_opts *o, bool skip_covered, char name[256],
			      struct manifest_scope *other, struct strbuf *theirs, struct strbuf *ours)
{
	const char *node = *o->nm.host_id ? o->nm.host_id : o->nm.node;
	int r = incremental_other_chain(store_catalog(o->s), node, &o->scope, skip_covered, name,
					other);
	if (r > 0 && (sb_scope(theirs, other) < 0 || sb_scope(ours, &o->scope) < 0)) {
		manifest_scope_free(other);
		r = -ENOMEM;
	}
	return r;
}

/* An incremental that would take backups/ links another chain of the node's incrementals, of
 * other tables, takes in (a hand-made one of one table beside the timer's of every table) is
 * refused unless --take-over: that chain's next incremental would lack them, and is refused
 * until its next full backup. One of every table that chain is of goes on: it holds whatever
 * theirs would, and their chain ends there (a timer's after its scope grew, --include-system
 * added). 0, or the exit code (said). */
static int check_take_over(struct create_opts *o)
{
	char name[256];
	struct manifest_scope other;
	struct strbuf theirs = {0}, ours = {0};
	int r = o->take_over ? 0 : newest_other_chain(o, true, name, &other, &theirs, &ours);
	if (r < 0) {
		errorf("cannot read the catalog: %s; no backup was made", strerror(-r));
		return CB_EXIT_FAILED;
	}
	bool refused = r > 0;
	if (refused)
		errorf("the node's incrementals of %s (their newest, %s) take in backups/ links of "
		       "tables this one is of too: one of %s would take them, and theirs would be "
		       "refused until their next full backup; make it of their tables, or give "
		       "--take-over; no backup was made", theirs.buf, name, ours.buf);
	if (r > 0)
		manifest_scope_free(&other);
	sb_free(&theirs);
	sb_free(&ours);
	return refused ? CB_EXIT_USAGE : 0;
}

/* One create of a node at a time, full or incremental, from choosing what it follows to its
 * last removal of a backups/ link: an hourly incremental started while the nightly full backup
 * runs would follow the previous full backup and take links the new one's chain then lacks,
 * and two incrementals of one chain would each miss what the other took. An exclusive flock
 * of the first data directory (no file written there), waited for up to --lock-wait seconds.
 * 0, or the exit code (said). */
static int lock_node(struct create_opts *o)
{
	const char *dir = o->data_dirs.v[0];
	o->node_lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (o->node_lock < 0) {
		errorf("data directory %s: %s", dir, strerror(errno));
		return CB_EXIT_FAILED;
	}
	double until = mono_seconds() + (double)o->lock_wait;
	bool said = false;
	while (flock(o->node_lock, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			errorf("cannot lock data directory %s: %s", dir, strerror(errno));
			return CB_EXIT_FAILED;
		}
		if (cancel_requested)
			return 128 + (int)cancel_requested;
		if (mono_seconds() >= until) {
			errorf("another cassbackup create of this node (data directory %s) is still "
			       "running after %llu s; nothing was done", dir,
			       (unsigned long long)o->lock_wait);
			return CB_EXIT_FAILED;
		}
		if (!said)
			errorf("waiting for another cassbackup create of this node (data directory %s) "
			       "to end, up to %llu s", dir, (unsigned long long)o->lock_wait);
		said = true;
		usleep(100 * 1000);
	}
	return 0;
}

/* The catalog brought up to date with the store once the node's lock is held: what this
 * create follows (the chain's tip, another chain's removals) is chosen from it, and the
 * create that held the lock before may have committed since the store opened, into another
 * catalog (another cache directory) or not into this one (its registration failed). 0, or the
 * exit code (said). */
static int refresh_catalog(struct create_opts *o)
{
	struct strbuf err = {0};
	int r = store_reconcile(o->s, RECONCILE_PACKS_IF_NEEDED, NULL, &err);
	if (r < 0)
		errorf("%s: %s; no backup was made", o->store, err.buf ? err.buf : strerror(-r));
	sb_free(&err);
	return r < 0 ? CB_EXIT_FAILED : 0;
}

/* Everything checked before anything changes. 0, or the exit code. */
static int plan(struct create_opts *o)
{
	int rc = resolve_data_dirs(o);
	rc = rc ?: load_tokens_file(o);
	rc = rc ?: read_node_identity(o, &o->nm);
	rc = rc ?: check_name_free(o);
	rc = rc ?: lock_node(o);
	rc = rc ?: refresh_catalog(o);
	if (rc == 0 && o->take_snapshot)
		rc = check_nodetool(o);
	if (rc == 0 && o->incremental)
		rc = check_incremental(o) ?: check_take_over(o);
	return rc;
}

/* --- execute ---------------------------------------------------------------------------- */

/* Runs "nodetool ARG..." (credentials from the configuration), its stdout and stderr going to
 * *out. Returns its exit status (0 ok), or -errno. */
static int nodetool_output(const struct create_opts *o, const char *const *args, char **out)
{
	*out = NULL;
	struct strv a = {0};
	int r = nodetool_argv(&a, o->nodetool);
	for (size_t i = 0; r == 0 && args[i]; i++)
		r = strv_push(&a, args[i]);
	struct strbuf path = {0};
	r = r ?: sb_printf(&path, "%s/cassbackup-nodetool-XXXXXX", tmpdir_root());
	int fd = r < 0 ? r : mkostemp(path.buf, O_CLOEXEC);
	if (r == 0 && fd < 0)
		r = -errno;
	if (r == 0) {
		close(fd);
		r = exec_run(a.v, path.buf);
		int rr = read_small_file(path.buf, 4 << 20, out, NULL);
		unlink(path.buf);
		r = r != 0 ? r : rr;
	}
	sb_free(&path);
	strv_free(&a);
	return r;
}

/* Says that nodetool ARG failed and what is therefore unknown. */
/* Says (into m->said, printed once the backup is being made: a snapshot that cannot be taken
 * is then the one thing said) that nodetool ARG failed and what is therefore unknown. */
static void report_nodetool_failed(struct node_meta *m, const char *what, int status,
				   const char *output, const char *unknown)
{
	char last[256] = "";
	for (const char *p = output; p && *p; p += strcspn(p, "\n"), p += *p == '\n') {
		size_t n = strcspn(p, "\r\n");
		if (n && strspn(p, " \t") < n)
			snprintf(last, sizeof(last), "%.*s", (int)n, p);
	}
	_cleanup_free_ char *shown = cli_escape(last);
	if (status == -EBADMSG)
		sb_printf(&m->said, "nodetool %s printed no ReleaseVersion line; %s recorded as unknown\n",
			  what, unknown);
	else if (status < 0)
		sb_printf(&m->said, "nodetool %s: %s; %s recorded as unknown\n", what, strerror(-status),
			  unknown);
	else
		sb_printf(&m->said, "nodetool %s failed (exit status %d%s%s); %s recorded as unknown\n",
			  what, status, shown && *shown ? ": " : "", shown ? shown : "", unknown);
}

/* Runs nodetool ARGS when it can be run; its output into *out, else says what failed and
 * what is therefore unknown. 0 when it ran and succeeded. */
static int nodetool_query(const struct create_opts *o, struct node_meta *m, bool can,
			  const char *const *args, const char *what, const char *unknown, char **out)
{
	*out = NULL;
	if (!can)
		return -ENOENT;
	int s = nodetool_output(o, args, out);
	if (s != 0)
		report_nodetool_failed(m, what, s, *out, unknown);
	return s;
}

/* What nodetool tells of the node (version, info -T, status, describecluster); nothing when
 * it cannot be run, what a failing query would have told unknown (a node that does not answer
 * info is not asked for more). 0 or -ENOMEM. */
static int read_nodetool(const struct create_opts *o, struct node_meta *m)
{
	char prog[PATH_MAX] = "nodetool";
	int found = find_nodetool(o, prog, sizeof(prog));
	bool can = found == 0;
	_cleanup_free_ char *out = NULL, *info = NULL, *status = NULL, *desc = NULL;
	int r = 0;
	/* a nodetool named (a typo in --nodetool) is said; none on PATH and none named is a
	 * host without Cassandra's tools (a copied data directory), whose unknowns are expected */
	if (o->nodetool && (found == -ENOENT || found == -EACCES)) {
		_cleanup_free_ char *shown = cli_escape(prog);
		sb_printf(&m->said, "nodetool %s: %s; the node's host id, datacenter, rack, tokens, ring and "
			  "cluster are recorded as unknown (give --nodetool PATH)\n", shown ? shown : "",
			  found == -ENOENT ? "not found" : "not an executable file");
	}
	if (!o->cassandra_version &&
	    nodetool_query(o, m, can, (const char *const[]){"version", NULL}, "version",
			   "the Cassandra version is", &out) == 0 &&
	    !(m->version = nodetool_parse_version(out)))
		report_nodetool_failed(m, "version", -EBADMSG, out, "the Cassandra version is");
	if (nodetool_query(o, m, can, (const char *const[]){"info", "-T", NULL}, "info -T",
			   "the node's host id, datacenter, rack, tokens, ring and schema version are",
			   &info) != 0)
		return 0;
	r = nodetool_parse_info(info, &m->host_id, &m->datacenter, &m->rack);
	if (r == 0 && !o->tokens_file)
		r = nodetool_parse_tokens(info, &m->tokens);
	if (r == 0 && nodetool_query(o, m, can, (const char *const[]){"status", NULL}, "status",
				     "the ring is", &status) == 0)
		r = nodetool_parse_status(status, &m->ring, &m->nring);
	const char *address = NULL;
	for (size_t i = 0; m->host_id && i < m->nring; i++)
		if (!strcmp(m->ring[i].host_id, m->host_id))
			address = m->ring[i].address;
	if (r == 0 && nodetool_query(o, m, can, (const char *const[]){"describecluster", NULL},
				     "describecluster", "the cluster's name and schema version are",
				     &desc) == 0)
		r = nodetool_parse_describecluster(desc, address, &m->cluster, &m->schema_version);
	return r;
}

/* *field = opt when given (it overrides what nodetool said), else what it has, else the
 * configuration's value (fallback, owned), else "". */
static int settle(char **field, const char *opt, char *fallback)
{
	if (opt) {
		free(*field);
		*field = strdup(opt);
	}
	if (!*field) {
		*field = fallback;
		fallback = NULL;
	}
	free(fallback);
	if (!*field)
		*field = strdup("");
	return *field ? 0 : -ENOMEM;
}

/* What the node's configuration and the options say of it, filling what m lacks: cluster
 * (cassandra.yaml), datacenter and rack (cassandra-rackdc.properties), host id (option), node
 * (option, else this host's name). 0 or -ENOMEM. */
static int read_node_names(const struct create_opts *o, struct node_meta *m)
{
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	struct strbuf path = {0};
	_cleanup_free_ char *yaml = NULL, *props = NULL;
	read_conf_file(o, "cassandra.yaml", &path, &yaml);
	read_conf_file(o, "cassandra-rackdc.properties", &path, &props);
	sb_free(&path);
	return settle(&m->cluster, o->cluster, yaml ? yaml_scalar(yaml, "cluster_name") : NULL) ?:
	       settle(&m->datacenter, o->datacenter, props ? properties_value(props, "dc") : NULL) ?:
	       settle(&m->rack, o->rack, props ? properties_value(props, "rack") : NULL) ?:
	       settle(&m->host_id, o->host_id, NULL) ?: settle(&m->node, o->node, strdup(host)) ?:
	       settle(&m->schema_version, NULL, NULL);
}

/* What the backup records about the node: nodetool's word, the options over it, the
 * configuration where both are silent. 0, or the exit code (out of memory). */
static int read_node_identity(const struct create_opts *o, struct node_meta *m)
{
	int r = read_nodetool(o, m);
	for (size_t i = 0; r == 0 && i < o->tokens.n; i++)
		r = strv_push(&m->tokens, o->tokens.v[i]);
	if (r == 0 && o->cassandra_version) {
		free(m->version);
		r = (m->version = strdup(o->cassandra_version)) ? 0 : -ENOMEM;
	}
	if ((r = r ?: read_node_names(o, m)) < 0) {
		errorf("out of memory");
		return CB_EXIT_FAILED;
	}
	return 0;
}

static void free_node_meta(struct node_meta *m)
{
	free(m->node);
	free(m->cluster);
	free(m->datacenter);
	free(m->rack);
	free(m->host_id);
	free(m->schema_version);
	free(m->version);
	strv_free(&m->tokens);
	status_nodes_free(m->ring, m->nring);
	sb_free(&m->said);
	*m = (struct node_meta){0};
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

static uint64_t table_bytes(const struct scan_table *t)
{
	uint64_t n = 0;
	for (size_t k = 0; k < t->nfiles; k++)
		n += (uint64_t)t->files[k].st.st_size;
	return n;
}

/* Hands one scanned table, its index directories and its files to the writer. */
static int add_table(backup_writer *w, const struct scan_table *t,
		     const struct taken_records *links, struct progress *prog)
{
	struct backup_table bt = {
		.bytes = table_bytes(t),
		.keyspace = t->keyspace,
		.table = t->table,
		.table_id = t->table_id,
		.dirname = t->dirname,
		.schema_cql = t->schema_cql,
		.links = links->v,
		.nlinks = links->n,
		.emptied_ms = t->emptied_ms,
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

/* "warning: snapshot T is not in 2 table(s) that hold data (ks.a, ks.b): ..." */
static void report_untagged(const struct scan_result *scan)
{
	if (scan->nuntagged == 0)
		return;
	struct strbuf l = {0};
	for (size_t i = 0; i < scan->nuntagged && i < 5; i++) {
		sb_puts(&l, i ? ", " : "");
		sb_escape(&l, scan->untagged[i]);
	}
	errorf("warning: the snapshot is not in %zu selected table(s) that hold data (%s%s): this "
	       "backup lacks them, and an incremental builds on it only for the tables it holds",
	       scan->nuntagged, l.buf ? l.buf : "", scan->nuntagged > 5 ? ", ..." : "");
	sb_free(&l);
}

static void report_scan(const struct scan_result *scan)
{
	for (size_t i = 0; i < scan->nskipped; i++) {
		_cleanup_free_ char *shown = cli_escape(scan->skipped[i]);
		errorf("skipping %s: a symbolic link, not followed", shown ? shown : "");
	}
	for (size_t i = 0; i < scan->nmounts; i++) {
		_cleanup_free_ char *shown = cli_escape(scan->mounts[i]);
		errorf("skipping %s: a mount point (Cassandra's hard links never cross one), "
		       "not crossed", shown ? shown : "");
	}
	for (size_t i = 0; i < scan->nothers; i++) {
		_cleanup_free_ char *shown = cli_escape(scan->others[i]);
		errorf("skipping %s: neither a file nor an index directory (Cassandra writes none "
		       "such there), left out", shown ? shown : "");
	}
	for (size_t i = 0; i < scan->ntables; i++) {
		const struct scan_table *t = &scan->tables[i];
		if (!t->before_emptied)
			continue;
		char when[64];
		format_time_utc(t->emptied_ms * 1000000, when, sizeof(when));
		_cleanup_free_ char *shown = cli_escape(t->dirname);
		errorf("skipping %llu file(s) of %s/backups flushed before the table was dropped or "
		       "truncated at %s: data it no longer has; left for you to remove",
		       (unsigned long long)t->before_emptied, shown ? shown : "", when);
	}
	for (size_t i = 0; i < scan->nsuperseded; i++) {
		_cleanup_free_ char *shown = cli_escape(scan->superseded[i]);
		errorf("skipping %s: a dropped table's, not the live one's; its links are left for "
		       "you to remove", shown ? shown : "");
	}
	report_untagged(scan);
}

/* "table KS.T: manifest.json lists N Data.db file(s) that no data directory holds (searched:
 * D1, D2): F1, F2, ...; backup refused". */
static void report_incomplete(const struct create_opts *o, const struct scan_table *t,
			      const struct strv *missing)
{
	struct strbuf l = {0};
	sb_puts(&l, "table ");
	sb_escape(&l, t->keyspace);
	sb_puts(&l, ".");
	sb_escape(&l, t->table);
	sb_printf(&l, ": snapshot %s is incomplete: manifest.json lists %zu Data.db file(s) that no "
		  "data directory holds (searched: ", o->tag, missing->n);
	for (size_t i = 0; i < o->data_dirs.n; i++) {
		sb_puts(&l, i ? ", " : "");
		sb_escape(&l, o->data_dirs.v[i]);
	}
	sb_puts(&l, "): ");
	for (size_t i = 0; i < missing->n && i < 10; i++) {
		sb_puts(&l, i ? ", " : "");
		sb_escape(&l, missing->v[i]);
	}
	if (missing->n > 10)
		sb_printf(&l, ", ... (%zu in all)", missing->n);
	errorf("%s; backup refused (is a data directory missing?)", l.buf ? l.buf : "out of memory");
	sb_free(&l);
}

/* Every table against its manifest.json: true when all it lists was found (said otherwise). */
static bool check_complete(const struct create_opts *o, const struct scan_result *scan)
{
	bool complete = true;
	for (size_t i = 0; i < scan->ntables; i++) {
		const struct scan_table *t = &scan->tables[i];
		struct strv missing = {0};
		int r = scan_table_missing(t, &missing);
		if (r == -EINVAL) {
			_cleanup_free_ char *ks = cli_escape(t->keyspace), *tb = cli_escape(t->table);
			errorf("table %s.%s: its manifest.json has no \"files\" list, so the snapshot "
			       "cannot be checked complete; backup refused", ks ? ks : "", tb ? tb : "");
		} else if (r < 0) {
			errorf("out of memory");
		} else if (missing.n) {
			report_incomplete(o, t, &missing);
		}
		complete = complete && r == 0 && missing.n == 0;
		strv_free(&missing);
	}
	return complete;
}

static void report_reclaimed(const struct create_opts *o, const backup_writer *w)
{
	unsigned n;
	int r = backup_writer_reclaimed(w, &n);
	if (r < 0)
		errorf("cannot clean %s/tmp: %s, ignoring", o->store, strerror(-r));
	else if (n)
		errorf("removed %u unfinished pack(s) left in %s/tmp by an interrupted backup", n, o->store);
}

static void report_json(const struct create_opts *o, const struct node_meta *nm,
			const struct backup_summary *s, double secs)
{
	struct strbuf out = {0};
	struct json j;
	json_init(&j, &out);
	json_object_begin(&j);
	json_kv_str(&j, "name", o->name);
	json_kv_u64(&j, "tables", s->tables);
	json_kv_u64(&j, "files", s->files);
	json_kv_u64(&j, "bytes", s->bytes);
	json_kv_u64(&j, "new_bytes", s->new_bytes);
	json_kv_u64(&j, "stored_bytes", s->stored_bytes);
	json_kv_u64(&j, "packs", s->packs);
	json_kv_double(&j, "seconds", secs, 3);
	json_kv_str(&j, "cassandra_version", nm->version);
	if (o->incremental) {
		json_kv_str(&j, "base", o->chain.base);
		json_kv_str(&j, "previous", o->chain.previous);
		json_kv_u64(&j, "links_removed", o->links_removed);
	}
	json_key(&j, "tokens");
	json_array_begin(&j);
	for (size_t i = 0; i < nm->tokens.n; i++)
		json_str(&j, nm->tokens.v[i]);
	json_array_end(&j);
	json_object_end(&j);
	if (json_error(&j) < 0)
		errorf("backup %s was made, but its summary could not be written: out of memory", o->name);
	else
		fputs(out.buf, stdout);
	sb_free(&out);
}

static void report_done(const struct create_opts *o, const struct node_meta *nm,
			const struct backup_summary *s, double secs)
{
	if (o->json) {
		report_json(o, nm, s, secs);
		return;
	}
	char total[32], fresh[32], stored[32], rate[32];
	format_bytes(s->bytes, total, sizeof(total));
	format_bytes(s->new_bytes, fresh, sizeof(fresh));
	format_bytes(s->stored_bytes, stored, sizeof(stored));
	format_bytes(secs > 0 ? (uint64_t)((double)s->bytes / secs) : 0, rate, sizeof(rate));
	printf("backup %s: %llu tables, %llu files, %s; %s new, %s written to %s in %zu pack%s; "
	       "%.1f s (%s/s)\n", o->name, (unsigned long long)s->tables, (unsigned long long)s->files,
	       total, fresh, stored, o->store, s->packs, s->packs == 1 ? "" : "s", secs, rate);
}

/* --- the command ------------------------------------------------------------------------ */

struct sized {
	uint64_t bytes;
	size_t index;
};

static int cmp_sized(const void *a, const void *b)
{
	const struct sized *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/* The scan's tables by their bytes, smallest first (ties in scan order); NULL: no memory. */
static size_t *tables_by_size(const struct scan_result *scan)
{
	struct sized *s = malloc((scan->ntables + 1) * sizeof(*s));
	size_t *v = malloc((scan->ntables + 1) * sizeof(*v));
	if (s && v) {
		for (size_t i = 0; i < scan->ntables; i++)
			s[i] = (struct sized){table_bytes(&scan->tables[i]), i};
		qsort(s, scan->ntables, sizeof(*s), cmp_sized);
		for (size_t i = 0; i < scan->ntables; i++)
			v[i] = s[i].index;
	} else {
		free(v);
		v = NULL;
	}
	free(s);
	return v;
}

/* The writer's progress context: the progress (first, as progress_add takes it) and what
 * the lock's waiting message names. */
struct create_progress {
	struct progress prog;
	const struct create_opts *o;
};

static void lock_waiting(void *ctx, const struct lock_info *h)
{
	const struct create_progress *cp = ctx;
	_cleanup_free_ char *store = cli_escape(cp->o->store), *host = cli_escape(h->host),
			    *what = cli_escape(h->command);
	errorf("store %s is locked by %s (pid %lld on %s, %s); waiting up to %llu s for it to go",
	       store ? store : "", what ? what : "", (long long)h->pid, host ? host : "",
	       h->exclusive ? "exclusive" : "shared", (unsigned long long)cp->o->lock_wait);
}

/* The node's own files read before (read_node_files) into the backup. 0 or -errno (said). */
static int add_node_files(const struct create_opts *o, backup_writer *w)
{
	int r = 0;
	if (o->schema) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		struct backup_file f = {.name = MANIFEST_SCHEMA_FILE, .size = strlen(o->schema),
					.attr = {0600, 0, 0, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec},
					.source = "cqlsh DESCRIBE SCHEMA"};
		r = backup_writer_add_node_file(w, "", &f, o->schema);
	}
	for (size_t i = 0; r == 0 && i < o->conf.n; i++) {
		const struct nodemeta_file *c = &o->conf.files[i];
		struct strbuf src = {0};
		sb_printf(&src, "%s/%s", o->cassandra_conf, c->name);
		struct backup_file f = {.name = c->name, .size = c->size, .attr = attr_of(&c->st),
					.source = src.buf ? src.buf : c->name};
		r = backup_writer_add_node_file(w, MANIFEST_CONF_DIR, &f, c->data);
		sb_free(&src);
	}
	if (r < 0 && r != -ECANCELED)
		errorf("%s", backup_writer_errmsg(w));
	return r;
}

/* Writes and commits the scanned snapshot, or with --incremental the plan (previous's tree and
 * the new files of backups/). 0 or -errno (the failure already said). */
static int write_backup(const struct create_opts *o, const struct node_meta *nm,
			const struct scan_result *scan, const inc_plan *ip, struct backup_summary *sum)
{
	_cleanup_free_ struct manifest_ring_node *ring = calloc(nm->nring + 1, sizeof(*ring));
	if (!ring) {
		errorf("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < nm->nring; i++)
		ring[i] = (struct manifest_ring_node){nm->ring[i].host_id, nm->ring[i].address,
						      nm->ring[i].datacenter, nm->ring[i].rack};
	struct backup_meta meta = {.name = o->name, .cluster = nm->cluster,
				   .datacenter = nm->datacenter, .node = nm->node,
				   .host_id = nm->host_id, .snapshot_tag = o->tag,
				   .rack = nm->rack, .schema_version = nm->schema_version,
				   .ring = ring, .nring = nm->nring,
				   .cassandra_version = nm->version,
				   .tokens = (const char *const *)nm->tokens.v, .ntokens = nm->tokens.n,
				   .root_attr = attr_of(&scan->root_st)};
	if (ip) {
		meta.base = o->chain.base;
		meta.previous = o->chain.previous;
	} else {
		meta.snapshot_ns = scan->snapshot_ns;
		meta.commitlog_seen = o->commitlog_seen;
		meta.commitlog_seen_id = o->commitlog_seen_id;
	}
	meta.scope = &o->scope;
	meta.clears_links = o->clearing;
	struct create_progress cp = {.o = o};
	struct progress *prog = &cp.prog;
	struct inc_counts ic = {0};
	if (ip)
		incremental_counts(ip, &ic);
	progress_init(prog, "backing up", ip ? ic.bytes : scan->bytes, ip ? ic.files : scan->nfiles);
	struct backup_writer_opts wo = {.level = (int)o->level, .threads = (unsigned)o->threads,
					.frame_size = (size_t)o->frame_kib << 10,
					.pack_size = o->pack_size,
					.cancel = &cancel_requested, .progress = progress_add,
					.pctx = &cp, .lock_wait_seconds = (int)o->lock_wait,
					.lock_waiting = lock_waiting};
	backup_writer *w;
	struct strbuf err = {0};
	int r = backup_writer_begin(o->s, &meta, &wo, &w, &err);
	if (r < 0)
		errorf("%s%s", err.buf, r == -EEXIST ? "; choose another --name" : "");
	else
		report_reclaimed(o, w);
	if (r == 0 && ip && (r = incremental_write(w, ip, &err)) < 0 && r != -ECANCELED)
		errorf("%s", err.buf ? err.buf : strerror(-r));
	/* small tables first: they share packs, the big ones then get packs of their own */
	_cleanup_free_ size_t *order = r == 0 && !ip ? tables_by_size(scan) : NULL;
	if (r == 0 && !ip && !order) {
		errorf("out of memory");
		r = -ENOMEM;
	}
	r = r ?: add_node_files(o, w);
	for (size_t i = 0; r == 0 && !ip && i < scan->ntables; i++)
		r = add_table(w, &scan->tables[order[i]], &o->links[order[i]], prog);
	progress_end(prog);
	if (r == 0 && (r = backup_writer_commit(w, sum)) < 0 && r != -ECANCELED)
		errorf("%s", backup_writer_errmsg(w));
	backup_writer_free(w);
	sb_free(&err);
	return r;
}

static int interrupted(void)
{
	errorf("interrupted by signal %d; no backup was made (packs it finished stay in the store, "
	       "unused, until 'cassbackup prune')", (int)cancel_requested);
	return 128 + (int)cancel_requested;
}

/* The node's names, version and tokens, then the backup (its summary into *sum). 0 or the
 * exit code. */
static int record_and_write(const struct create_opts *o, const struct scan_result *scan, double t0,
			    struct backup_summary *sum)
{
	for (const char *p = o->nm.said.buf; p && *p; p += strcspn(p, "\n") + 1)
		errorf("%.*s", (int)strcspn(p, "\n"), p);
	int r = cancel_requested ? -ECANCELED : write_backup(o, &o->nm, scan, NULL, sum);
	if (r == 0)
		report_done(o, &o->nm, sum, mono_seconds() - t0);
	return r == 0 ? CB_EXIT_OK : cancel_requested ? interrupted() : CB_EXIT_FAILED;
}

static void report_link_left(void *ctx, const char *path, int err)
{
	(void)ctx;
	_cleanup_free_ char *shown = cli_escape(path);
	if (err == -ESTALE)
		errorf("%s changed since it was read: left in place", shown ? shown : "");
	else if (err == -EILSEQ)
		errorf("%s holds other bytes than the backup has under that name: left in place",
		       shown ? shown : "");
	else if (err == -ENODATA)
		errorf("%s: its bytes are in no pack of the store (cassbackup check): left in place",
		       shown ? shown : "");
	else if (err != -ENOENT)
		errorf("cannot remove %s: %s; its bytes are in the store, ignoring", shown ? shown : "",
		       strerror(-err));
}

/* When table t's snapshot was taken: the mtime of its manifest.json (Cassandra writes it once
 * the snapshot's links are made), or -1 without one. */
static int64_t table_snapshot_time(const struct scan_table *t)
{
	for (size_t k = 0; k < t->nfiles; k++)
		if (t->files[k].dir < 0 && !strcmp(t->files[k].name, "manifest.json"))
			return attr_of(&t->files[k].st).mtime_ns;
	return -1;
}

/* When the snapshot was taken: the time before nodetool snapshot ran (--take-snapshot), else
 * the oldest mtime of its manifest.json files, which Cassandra writes once the snapshot's
 * links are made. -1 when it cannot be told (no manifest.json: Cassandra before 2.2). */
static int64_t snapshot_time(const struct create_opts *o, const struct scan_result *scan)
{
	if (o->snapshot_ns)
		return o->snapshot_ns;
	int64_t t = -1;
	for (size_t i = 0; i < scan->ntables; i++) {
		int64_t m = table_snapshot_time(&scan->tables[i]);
		if (m < 0)
			return -1;
		t = t < 0 || m < t ? m : t;
	}
	return t;
}

/* Are the links the node's incrementals' to take in, the newest being of other tables than
 * this backup (sharing some)? The next one builds on its own full backup, whose chain would
 * lack those cleared. Says so. */
static bool links_of_other_chain(struct create_opts *o)
{
	char name[256];
	struct manifest_scope other;
	struct strbuf theirs = {0}, ours = {0};
	int r = newest_other_chain(o, false, name, &other, &theirs, &ours);
	if (r < 0) {
		errorf("cannot read the catalog: %s; backups/ links left in place", strerror(-r));
	} else if (r > 0) {
		errorf("backups/ links left in place: the node's incrementals (the newest, %s) are of %s, "
		       "this backup of %s, and those incrementals still take them in", name, theirs.buf,
		       ours.buf);
		manifest_scope_free(&other);
	}
	sb_free(&theirs);
	sb_free(&ours);
	return r != 0;
}

/* Can --clear-incremental-links tell which links are older than the snapshot? Says so when
 * not: then it marks and removes nothing. */
static bool may_clear(const struct create_opts *o, const struct scan_result *snap)
{
	if (snapshot_time(o, snap) >= 0)
		return true;
	errorf("cannot tell when snapshot %s was taken (a table without manifest.json): backups/ "
	       "links left in place", o->tag);
	return false;
}

/* This backup's name in backups/ directories (taken.h), into by. 0, or -ENAMETOOLONG. */
static int own_name_in_backups(const struct create_opts *o, char by[TAKEN_BY_MAX])
{
	char ref[CB_REF_MAX];
	const char *node = *o->nm.host_id ? o->nm.host_id : o->nm.node;
	return store_backup_ref(o->name, node, ref) ?: taken_by(store_get_config(o->s)->id, ref, by);
}

/* A mark written this long before a snapshot's manifest.json counts as made after the
 * snapshot began, when the file system cannot tell when its directory was made: Cassandra
 * writes that file once its links are made, which takes a while. */
#define SNAPSHOT_SLACK_NS (60 * 1000000000LL)

/* When the snapshot directory holding f was made (statx birth time), or -1. */
static int64_t dir_birth_ns(const struct scan_file *f)
{
	struct strbuf dir = {0};
	struct statx stx;
	const char *slash = strrchr(f->src, '/');
	int r = slash ? sb_printf(&dir, "%.*s", (int)(slash - f->src), f->src) : -EINVAL;
	int64_t ns = -1;
	if (r == 0 && statx(AT_FDCWD, dir.buf, AT_SYMLINK_NOFOLLOW, STATX_BTIME, &stx) == 0 &&
	    (stx.stx_mask & STATX_BTIME))
		ns = (int64_t)stx.stx_btime.tv_sec * 1000000000 + stx.stx_btime.tv_nsec;
	sb_free(&dir);
	return ns;
}

/* When table t's snapshot began, at the earliest: when its directories were made (the
 * earliest, one per data directory), else its manifest.json's time less SNAPSHOT_SLACK_NS;
 * -1 when neither can be told. */
static int64_t table_snapshot_start(const struct scan_table *t)
{
	int64_t start = -1;
	const char *seen = NULL; /* the data directory of the last one looked at */
	for (size_t k = 0; k < t->nfiles; k++) {
		const struct scan_file *f = &t->files[k];
		if (f->dir >= 0 || f->data_dir == seen)
			continue;
		seen = f->data_dir;
		int64_t b = dir_birth_ns(f);
		if (b < 0)
			return (b = table_snapshot_time(t)) < 0 ? -1 : b - SNAPSHOT_SLACK_NS;
		start = start < 0 || b < start ? b : start;
	}
	return start;
}

/* Why a full backup may not record backups/ directory d of t: with --snapshot of a snapshot
 * taken earlier, a mark written after it began, or when it began cannot be told (no
 * manifest.json), a backup removed links there since, maybe flushed after the snapshot,
 * which a chain on this backup would lack; or the file cannot be read. NULL when it may. With
 * --take-snapshot the node's lock (lock_node) kept other creates out. */
static const char *unrecordable(const struct create_opts *o, const struct scan_table *t, size_t d,
				char *why, size_t len)
{
	const struct links_taken *lt = &t->backups_taken[d];
	int64_t snapped = table_snapshot_start(t);
	if (lt->read_err)
		snprintf(why, len, "cannot read " TAKEN_FILE " there (%s)", taken_strerror(lt->read_err));
	else if (o->take_snapshot || !lt->n)
		return NULL;
	else if (snapped < 0)
		snprintf(why, len, "links were removed there (the last removal by %s) and when "
			 "snapshot %s was taken cannot be told", lt->by, o->tag);
	else if (lt->marked_ns > snapped)
		snprintf(why, len, "links were removed there after snapshot %s was taken (the last "
			 "removal by %s)", o->tag, lt->by);
	else
		return NULL;
	return why;
}

/* The backups/ directories of t a full backup records (into dirs and found; their count):
 * not those unrecordable, said in one line each (with no record of a directory that was
 * marked, incrementals on this backup are refused for the table). */
static size_t recordable_dirs(const struct create_opts *o, const struct scan_table *t,
			      char **dirs, struct links_taken *found)
{
	size_t n = 0;
	char why[600];
	for (size_t d = 0; d < t->nbackups_dirs; d++) {
		if (unrecordable(o, t, d, why, sizeof(why))) {
			errorf("warning: table %s.%s: %s: %s: incrementals on this backup are refused for "
			       "the table; a fresh snapshot (--take-snapshot) makes a base",
			       t->keyspace, t->table, t->backups_dirs[d], why);
			continue;
		}
		dirs[n] = t->backups_dirs[d];
		found[n++] = t->backups_taken[d];
	}
	return n;
}

/* A full backup's record of the backups/ directories of its tables (taken.h): as it finds
 * them, or, when it clears links, marked by it once committed. 0, or -ENOMEM (said). */
static int record_full_links(struct create_opts *o, const struct scan_result *snap)
{
	char by[TAKEN_BY_MAX];
	if (o->clearing && own_name_in_backups(o, by) < 0) {
		errorf("backup name too long to record in backups/; backups/ links left in place");
		o->clearing = false;
	}
	o->links = calloc(snap->ntables + 1, sizeof(*o->links));
	int r = o->links ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < snap->ntables; i++) {
		const struct scan_table *t = &snap->tables[i];
		char **dirs = calloc(t->nbackups_dirs + 1, sizeof(*dirs));
		struct links_taken *found = calloc(t->nbackups_dirs + 1, sizeof(*found));
		r = dirs && found ? 0 : -ENOMEM;
		size_t n = r == 0 ? recordable_dirs(o, t, dirs, found) : 0;
		r = r ?: taken_records_make(dirs, found, n, o->clearing ? by : NULL, NULL, &o->links[i]);
		free(dirs);
		free(found);
	}
	if (r < 0)
		errorf("out of memory");
	return r;
}

static void free_full_links(struct create_opts *o, const struct scan_result *snap)
{
	for (size_t i = 0; o->links && i < snap->ntables; i++)
		taken_records_free(&o->links[i]);
	free(o->links);
	o->links = NULL;
}

/* Runs step over the records of the snapshot's tables when this backup clears links
 * (taken.h): taken_records_ready before the commit, taken_records_mark once committed (then
 * incrementals on older full backups of these tables are refused). 0, or -errno (said: the
 * links stay). */
static int clearing_step(const struct create_opts *o, const struct scan_result *snap,
			 int (*step)(const struct taken_records *, const char **))
{
	for (size_t i = 0; i < snap->ntables; i++) {
		const char *dir = NULL;
		int r = step(&o->links[i], &dir);
		if (r < 0) {
			errorf("cannot record in %s/" TAKEN_FILE " that this backup clears its links: "
			       "%s; backups/ links left in place", dir, taken_strerror(r));
			return r;
		}
	}
	return 0;
}

/* The backups/ directories this full backup marked (o->links; *n of them), or NULL (out of
 * memory). The strings are o->links'. */
static char **marked_dirs(const struct create_opts *o, const struct scan_result *snap, size_t *n)
{
	size_t all = 0;
	for (size_t i = 0; i < snap->ntables; i++)
		all += o->links[i].n;
	char **v = calloc(all + 1, sizeof(*v));
	*n = 0;
	for (size_t i = 0; v && i < snap->ntables; i++)
		for (size_t d = 0; d < o->links[i].n; d++)
			if (o->links[i].marks[d])
				v[(*n)++] = o->links[i].v[d].dir;
	return v;
}

static int lock_own_removals(struct create_opts *o, struct store_lock **lk);

/* --clear-incremental-links, the full backup committed and marked (under lock_own_removals):
 * the backups/ links older
 * than its snapshot whose bytes the store holds go from the directories it marked
 * (incremental_clear_links). Failing here leaves links in place and the backup made: said,
 * not fatal. */
static void clear_links(struct create_opts *o, const struct scan_result *snap)
{
	int64_t when = snapshot_time(o, snap); /* known: may_clear */
	struct scan_result links;
	struct strbuf err = {0};
	struct scan_opts so = {.data_dirs = o->data_dirs.v, .ndata_dirs = o->data_dirs.n,
			       .sel = &o->sel, .include_system = o->include_system, .backups = true};
	if (scan_snapshot(&so, &links, &err) < 0) {
		errorf("%s: backups/ links left in place", err.buf ? err.buf : "cannot scan backups/");
		sb_free(&err);
		return;
	}
	sb_free(&err);
	uint64_t removed = 0, kept = 0;
	struct links_cleared c = {.snap = snap, .links = &links, .snapshot_ns = when};
	char **marked = marked_dirs(o, snap, &c.nmarked);
	c.marked = marked;
	if (!marked)
		errorf("out of memory; backups/ links left in place");
	else
		incremental_clear_links(store_catalog(o->s), &c, &removed, &kept, report_link_left,
					NULL);
	if (marked && !o->json)
		printf("backups/: %llu link(s) older than the snapshot with their bytes in the store "
		       "removed, %llu left\n", (unsigned long long)removed, (unsigned long long)kept);
	free(marked);
	scan_result_free(&links);
}

/* The keyspace DDL, as cqlsh prints it, into o->schema; what keeps it from being kept is one
 * warning line. */
static void read_schema(struct create_opts *o)
{
	struct cqlsh_conf c = {.program = o->cqlsh, .host = o->cqlsh_host, .options = &o->cqlsh_options};
	struct strbuf why = {0};
	int r = cqlsh_run(&c, "DESCRIBE SCHEMA", NULL, &o->schema, &why);
	if (r == 0 && !strstr(o->schema, "CREATE KEYSPACE")) {
		sb_printf(&why, "cqlsh printed no CREATE KEYSPACE for DESCRIBE SCHEMA");
		free(o->schema);
		o->schema = NULL;
	}
	if (!o->schema)
		errorf("warning: the keyspace DDL is not kept in this backup: %s (--no-schema: do not "
		       "try)", why.len ? why.buf : strerror(r < 0 ? -r : EIO));
	sb_free(&why);
}

/* The configuration directory's files into o->conf; what keeps them from being kept (or a
 * subdirectory left out) is one warning line. */
static void read_conf_dir(struct create_opts *o)
{
	struct strbuf skipped = {0}, why = {0};
	int r = nodemeta_read_conf(o->cassandra_conf, &o->conf, &skipped, &why);
	if (r < 0)
		errorf("warning: Cassandra's configuration is not kept in this backup: %s "
		       "(--cassandra-conf DIR, or --no-conf)", why.buf);
	else if (skipped.len)
		errorf("warning: %s: not kept (only the regular files of %s are)", skipped.buf,
		       o->cassandra_conf);
	sb_free(&skipped);
	sb_free(&why);
}

static void read_node_files(struct create_opts *o)
{
	if (!o->no_schema)
		read_schema(o);
	if (!o->no_conf)
		read_conf_dir(o);
}

/* Scans, checks the snapshot is complete, and backs it up. 0 or the exit code. */
static int do_create(struct create_opts *o)
{
	double t0 = mono_seconds();
	struct scan_result scan;
	struct strbuf err = {0};
	struct scan_opts so = {.data_dirs = o->data_dirs.v, .ndata_dirs = o->data_dirs.n,
			       .tag = o->tag, .sel = &o->sel, .include_system = o->include_system};
	int r = scan_snapshot(&so, &scan, &err);
	if (r < 0) {
		errorf("%s", err.buf);
		sb_free(&err);
		return cancel_requested ? 128 + (int)cancel_requested : CB_EXIT_FAILED;
	}
	sb_free(&err);
	report_scan(&scan);
	if (scope_of_scan(o, &scan) < 0) {
		scan_result_free(&scan);
		return CB_EXIT_FAILED;
	}
	bool complete = check_complete(o, &scan);
	/* decided before the manifest, which says so: incrementals on older full backups of
	 * these tables lack the links cleared (incremental_chain, taken.h) */
	o->clearing = complete && o->clear_links && !links_of_other_chain(o) && may_clear(o, &scan);
	complete = complete && record_full_links(o, &scan) == 0;
	if (complete && o->clearing && clearing_step(o, &scan, taken_records_ready) < 0) {
		o->clearing = false; /* recorded again as found, marking nothing */
		free_full_links(o, &scan);
		complete = record_full_links(o, &scan) == 0;
	}
	if (complete)
		read_node_files(o);
	int rc = complete ? record_and_write(o, &scan, t0, &o->sum) : CB_EXIT_FAILED;
	o->made = rc == 0;
	/* committed first, then marked, then cleared: a kill between them removed nothing */
	struct store_lock *lk = NULL;
	if (rc == 0 && o->clearing && lock_own_removals(o, &lk) == CB_EXIT_OK &&
	    clearing_step(o, &scan, taken_records_mark) == 0)
		clear_links(o, &scan);
	store_lock_release(lk);
	free_full_links(o, &scan);
	scan_result_free(&scan);
	return rc;
}

/* The incremental's own lines: what it follows, what it took in and removed. */
static void report_incremental(const struct create_opts *o, const struct inc_counts *c,
			       uint64_t removed)
{
	if (o->json)
		return;
	printf("incremental %s on %s (base %s): %llu new file(s) from backups/, %llu removed there",
	       o->name, o->chain.previous, o->chain.base, (unsigned long long)c->files,
	       (unsigned long long)removed);
	if (c->renamed)
		printf("; %llu sstable(s) renamed to a fresh generation", (unsigned long long)c->renamed);
	if (c->incomplete)
		printf("; %llu sstable(s) still being linked, left for the next one",
		       (unsigned long long)c->incomplete);
	if (c->before_emptied)
		printf("; %llu file(s) flushed before their table was truncated or dropped (as %s "
		       "recorded) left out, and in place", (unsigned long long)c->before_emptied,
		       o->chain.previous);
	printf("\n");
}

/* Takes a shared lock of the store for removing backups/ links (no prune deletes a pack
 * meanwhile) and checks it, and that the backup at ref, whose bytes the links' removal leans
 * on, is still in the store: one forgotten meanwhile (while this run was paused) holds nothing
 * a prune would keep. 0 with *lk held (the caller releases it), or the exit code, said. */
static int lock_for_removals(struct create_opts *o, const char *ref, struct store_lock **lk)
{
	struct strbuf err = {0}, key = {0};
	struct create_progress cp = {.o = o};
	uint64_t size;
	*lk = NULL;
	int r = store_lock_take(store_backend(o->s), false, "create --incremental", (int)o->lock_wait,
				lock_waiting, &cp, lk, NULL);
	if (r == -EROFS)
		r = 0; /* nothing can change there: nor can a link's bytes go */
	if (r < 0)
		errorf("cannot lock the store to remove backups/ links: %s; links left in place",
		       r == -EBUSY ? "another process holds it (cassbackup unlock --list)" : strerror(-r));
	else if ((r = store_lock_check(*lk, &err)) < 0)
		errorf("%s; backups/ links left in place", err.buf);
	else if ((r = store_manifest_key(ref, &key)) == 0 &&
		 (r = cb_backend_stat(store_backend(o->s), key.buf, &size)) < 0)
		errorf("%s: %s; backups/ links left in place", key.buf, r == -ENOENT
		       ? "forgotten meanwhile (by another process), so it holds their bytes no more"
		       : cb_backend_why(r));
	if (r < 0) {
		store_lock_release(*lk);
		*lk = NULL;
	}
	sb_free(&err);
	sb_free(&key);
	return r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}

/* lock_for_removals for the links this run's backup holds. */
static int lock_own_removals(struct create_opts *o, struct store_lock **lk)
{
	char ref[CB_REF_MAX];
	const char *node = *o->nm.host_id ? o->nm.host_id : o->nm.node;
	*lk = NULL;
	if (store_backup_ref(o->name, node, ref) < 0) {
		errorf("backup name too long to name its manifest; backups/ links left in place");
		return CB_EXIT_FAILED;
	}
	return lock_for_removals(o, ref, lk);
}

/* Nothing new: the links whose bytes previous holds are removed all the same (under
 * lock_for_removals). 0 or the exit code. */
static int remove_held_links(struct create_opts *o, const inc_plan *ip, uint64_t *removed)
{
	struct store_lock *lk;
	int rc = lock_for_removals(o, o->chain.previous_ref, &lk);
	if (rc == CB_EXIT_OK)
		incremental_remove_links(store_catalog(o->s), ip, removed, report_link_left, NULL);
	store_lock_release(lk);
	return rc;
}

/* Scans backups/ and plans the incremental on previous, with what it records of the
 * backups/ directories. 0, or -errno with err set (nothing left to free). */
static int plan_incremental(struct create_opts *o, struct scan_result *scan, inc_plan **ip,
			    struct strbuf *err)
{
	struct scan_opts so = {.data_dirs = o->data_dirs.v, .ndata_dirs = o->data_dirs.n,
			       .sel = &o->sel, .include_system = o->include_system, .backups = true};
	char by[TAKEN_BY_MAX];
	*ip = NULL;
	int r = scan_snapshot(&so, scan, err);
	if (r < 0)
		return r;
	report_scan(scan);
	r = incremental_plan(o->s, &o->chain, scan, ip, err);
	if (r == 0 && (r = own_name_in_backups(o, by)) < 0)
		sb_puts(err, "backup name too long to record in backups/");
	r = r ?: incremental_record_links(*ip, scan, by, err);
	if (r < 0) {
		incremental_plan_free(*ip);
		*ip = NULL;
		scan_result_free(scan);
	}
	return r;
}

/* --incremental: scans backups/, plans the tree on top of previous, writes and commits it,
 * marks the backups/ directories, then removes the links it stored. 0 or the exit code. */
static int do_incremental(struct create_opts *o)
{
	double t0 = mono_seconds();
	struct scan_result scan;
	struct strbuf err = {0};
	inc_plan *ip;
	int r = plan_incremental(o, &scan, &ip, &err);
	if (r < 0) {
		errorf("%s; no backup was made", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return cancel_requested ? 128 + (int)cancel_requested
		       : r == -EXDEV ? CB_EXIT_MISSING : CB_EXIT_FAILED;
	}
	sb_free(&err);
	struct inc_counts c;
	incremental_counts(ip, &c);
	int rc = CB_EXIT_OK;
	if (c.files == 0) {
		/* what backups/ holds, previous holds (committed): those links go all the same,
		 * where previous removed links itself */
		uint64_t removed = 0, left = 0;
		if (incremental_settle_held(ip, &left, &err) < 0) {
			errorf("%s; links left in place", err.buf);
			rc = CB_EXIT_FAILED;
		} else {
			rc = remove_held_links(o, ip, &removed);
		}
		if (rc == 0 && !o->json) {
			printf("nothing new in backups/ since %s; no backup was made; %llu link(s) it "
			       "holds removed", o->chain.previous, (unsigned long long)removed);
			if (left)
				printf(", %llu left for the next incremental that takes something in",
				       (unsigned long long)left);
			if (c.incomplete) /* an sstable whose TOC.txt names a component not linked */
				printf("; %llu sstable(s) still being linked, left for the next one",
				       (unsigned long long)c.incomplete);
			if (c.before_emptied)
				printf("; %llu file(s) flushed before their table was truncated or "
				       "dropped (as %s recorded) left out, and in place",
				       (unsigned long long)c.before_emptied, o->chain.previous);
			printf("\n");
		}
	} else {
		for (const char *p = o->nm.said.buf; p && *p; p += strcspn(p, "\n") + 1)
			errorf("%.*s", (int)strcspn(p, "\n"), p);
		read_node_files(o);
		r = cancel_requested ? -ECANCELED : 0;
		if (r == 0 && (r = incremental_ready_links(ip, &err)) < 0)
			errorf("%s; no backup was made", err.buf);
		r = r ?: write_backup(o, &o->nm, &scan, ip, &o->sum);
		uint64_t removed = 0;
		/* Only now, the manifest written: under a shared lock of the store, and while the
		 * backup is still there (lock_own_removals), backups/ marked (taken.h), then each
		 * link removed holds bytes a committed backup has. A kill before the marks removes
		 * nothing and leaves the directories as the manifest says it found them; one during
		 * the removals leaves links whose bytes are committed (the next incremental holds
		 * them). */
		struct store_lock *lk = NULL;
		bool locked = r == 0 && lock_own_removals(o, &lk) == CB_EXIT_OK; /* else said */
		bool marked = locked && incremental_mark_links(ip, &err) == 0;
		if (locked && !marked) /* made, but a run that could not say so removes nothing */
			errorf("%s; backups/ links left in place", err.buf);
		if (marked)
			incremental_remove_links(store_catalog(o->s), ip, &removed, report_link_left, NULL);
		store_lock_release(lk);
		o->links_removed = removed;
		if (r == 0) {
			report_incremental(o, &c, removed);
			report_done(o, &o->nm, &o->sum, mono_seconds() - t0);
		}
		rc = marked ? CB_EXIT_OK : r == 0 ? CB_EXIT_FAILED
		     : cancel_requested ? interrupted() : CB_EXIT_FAILED;
		o->made = r == 0;
	}
	incremental_plan_free(ip);
	scan_result_free(&scan);
	sb_free(&err);
	return rc;
}

/* How many table directories of the data directories hold snapshots/<TAG>; the first one's
 * path goes to first (for messages: what is on disk, not what nodetool said). */
static size_t snapshot_dirs_on_disk(const struct create_opts *o, struct strbuf *first)
{
	size_t n = 0;
	for (size_t i = 0; i < o->data_dirs.n; i++) {
		DIR *d = opendir(o->data_dirs.v[i]);
		struct dirent *ks;
		while (d && (ks = readdir(d))) {
			if (ks->d_name[0] == '.')
				continue;
			int kfd = openat(dirfd(d), ks->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			DIR *kd = kfd < 0 ? NULL : fdopendir(kfd);
			if (kfd >= 0 && !kd)
				close(kfd);
			struct dirent *t;
			while (kd && (t = readdir(kd))) {
				struct strbuf rel = {0};
				struct stat st;
				if (t->d_name[0] != '.' && sb_printf(&rel, "%s/snapshots/%s", t->d_name, o->tag) == 0 &&
				    fstatat(dirfd(kd), rel.buf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
				    n++ == 0)
					sb_printf(first, "%s/%s/%s", o->data_dirs.v[i], ks->d_name, rel.buf);
				sb_free(&rel);
			}
			if (kd)
				closedir(kd);
		}
		if (d)
			closedir(d);
	}
	return n;
}

/* Runs nodetool with argv, its output captured: nodetool's own lines do not mix with ours (nor
 * with --json on stdout). It runs in a process group of its own and is not interrupted: a
 * Ctrl-C is noticed once it is done (a snapshot it made is then cleared as after any failure).
 * Returns its exit status or -errno; what it said that matters (the first line of its stderr,
 * else of its stdout) goes to said. */
static int run_nodetool(struct strv *a, char *said, size_t n)
{
	_cleanup_free_ char *out = NULL, *err = NULL;
	int s = exec_capture(a->v, 0, &out, &err);
	first_line(err, said, n);
	if (!said[0])
		first_line(out, said, n);
	if (s < 0 && !said[0])
		snprintf(said, n, "%s", strerror(-s));
	return s;
}

/* "exit status N: what it said" into buf. */
static const char *nodetool_failure(int status, const char *said, char *buf, size_t n)
{
	_cleanup_free_ char *shown = cli_escape(said);
	if (status < 0)
		snprintf(buf, n, "%s", shown ? shown : strerror(-status));
	else
		snprintf(buf, n, "exit status %d%s%s", status, shown && *shown ? ": " : "", shown ? shown : "");
	return buf;
}

/* nodetool snapshot -t TAG, for what --keyspace/--table select: -kt KS.T,... when only tables
 * are named, else the keyspaces named (the scan then takes only the selected tables). 0, or
 * -EIO/-ENOMEM after one line saying the snapshot could not be taken. When it failed, the
 * snapshots/TAG directories on disk (if any) are not ours to clear: nodetool refuses a tag
 * that exists (an earlier snapshot, the operator's), and only a snapshot failing part way
 * leaves some of its own; they are named, not removed. */
static int take_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	struct strbuf kt = {0};
	bool only_tables = o->sel.n > 0;
	for (size_t i = 0; i < o->sel.n; i++)
		only_tables = only_tables && o->sel.v[i].table;
	int r = nodetool_argv(&a, o->nodetool);
	r = r ?: strv_push(&a, "snapshot") ?: strv_push(&a, "-t") ?: strv_push(&a, o->tag);
	for (size_t i = 0; r == 0 && only_tables && i < o->sel.n; i++)
		r = sb_printf(&kt, "%s%s.%s", i ? "," : "", o->sel.v[i].keyspace, o->sel.v[i].table);
	if (r == 0 && only_tables)
		r = strv_push(&a, "-kt") ?: strv_push(&a, kt.buf);
	for (size_t i = 0; r == 0 && !only_tables && i < o->sel.n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i; k++)
			seen = seen || !strcmp(o->sel.v[k].keyspace, o->sel.v[i].keyspace);
		r = seen ? 0 : strv_push(&a, o->sel.v[i].keyspace);
	}
	sb_free(&kt);
	if (r < 0) {
		strv_free(&a);
		errorf("out of memory; no snapshot was taken, no backup was made");
		return r;
	}
	char cmd[2048], said[512], why[600];
	format_command(a.v, cmd, sizeof(cmd));
	int s = run_nodetool(&a, said, sizeof(said));
	strv_free(&a);
	if (s == 0)
		return 0;
	struct strbuf first = {0};
	size_t n = snapshot_dirs_on_disk(o, &first);
	_cleanup_free_ char *where = cli_escape(first.buf ? first.buf : "");
	if (n == 0)
		errorf("snapshot %s could not be taken: %s failed (%s); no backup was made", o->tag, cmd,
		       nodetool_failure(s, said, why, sizeof(why)));
	else
		errorf("snapshot %s could not be taken: %s failed (%s); no backup was made; snapshots/%s "
		       "is on disk in %zu table director%s (%s%s), left as it is: an earlier snapshot of that "
		       "name or part of this one (clear it with 'nodetool clearsnapshot -t %s' if no one "
		       "needs it)", o->tag, cmd, nodetool_failure(s, said, why, sizeof(why)), o->tag, n,
		       n == 1 ? "y" : "ies", where ? where : "", n > 1 ? ", ..." : "", o->tag);
	sb_free(&first);
	return -EIO;
}

/* nodetool clearsnapshot -t TAG, after a snapshot was taken; a failure says the snapshot is
 * left and where. */
static void clear_snapshot(const struct create_opts *o)
{
	struct strv a = {0};
	if (nodetool_argv(&a, o->nodetool) ?: strv_push(&a, "clearsnapshot") ?: strv_push(&a, "-t") ?:
	    strv_push(&a, o->tag)) {
		strv_free(&a);
		errorf("out of memory: snapshot %s is still on disk and pins its sstables; clear it with "
		       "'nodetool clearsnapshot -t %s'", o->tag, o->tag);
		return;
	}
	char cmd[2048], said[512], why[600];
	format_command(a.v, cmd, sizeof(cmd));
	int s = run_nodetool(&a, said, sizeof(said));
	strv_free(&a);
	if (s == 0)
		return;
	struct strbuf first = {0};
	size_t n = snapshot_dirs_on_disk(o, &first);
	_cleanup_free_ char *where = cli_escape(first.buf ? first.buf : "");
	if (n)
		errorf("%s failed (%s): snapshot %s is still on disk (snapshots/%s in %zu table "
		       "director%s: %s%s) and pins its sstables; clear it with 'nodetool clearsnapshot -t %s'",
		       cmd, nodetool_failure(s, said, why, sizeof(why)), o->tag, o->tag, n,
		       n == 1 ? "y" : "ies", where ? where : "", n > 1 ? ", ..." : "", o->tag);
	else
		errorf("%s failed (%s); no snapshots/%s is left on disk, ignoring", cmd,
		       nodetool_failure(s, said, why, sizeof(why)), o->tag);
	sb_free(&first);
}

/* What hooks and metrics call this run: "create" for a full backup, "incremental" for
 * --incremental (an incremental's success is not a full backup's). */
static const char *create_operation(const struct create_opts *o)
{
	return o->incremental ? "incremental" : "create";
}

/* This run in the configuration's metrics_file (metrics.h), labelled with what the node's
 * configuration and the options say of it (read_node_names, not nodetool's word), so a failed
 * run, even one that never reached nodetool, is counted in the same series as a successful one.
 * operation: create_operation. ok: the run succeeded (an incremental with nothing new made
 * no backup and succeeded); the figures are of a backup made. */
static void record_metrics(const struct create_opts *o, bool ok, double secs)
{
	struct node_meta nm = {0};
	read_node_names(o, &nm);
	struct metrics_run run = {.operation = create_operation(o), .store = o->store,
				  .cluster = nm.cluster, .datacenter = nm.datacenter, .node = nm.node,
				  .host_id = nm.host_id, .ok = ok, .seconds = secs};
	if (o->made) {
		metrics_set(&run, METRIC_READ_BYTES, o->sum.bytes);
		metrics_set(&run, METRIC_WRITTEN_BYTES, o->sum.stored_bytes);
		metrics_set(&run, METRIC_DEDUPLICATED_BYTES, o->sum.bytes - o->sum.new_bytes);
		metrics_set(&run, METRIC_FILES, o->sum.files);
	}
	metrics_record_configured(&run);
	free_node_meta(&nm);
}


/* With --take-snapshot, before the snapshot: the greatest id of this node's commitlog segments
 * in the store (commitlog_seen_id), so its point-in-time window takes every segment switched
 * out since, whatever the node's clock says when they are archived. Of a snapshot taken
 * before create ran, segments archived in between may have lower ids than what the store
 * holds now: nothing is recorded then. A listing that fails records nothing either: the
 * window then goes by archive times alone, as for backups made before. */
static void note_commitlog_seen(struct create_opts *o)
{
	o->commitlog_seen = commitlog_seen_id(store_backend(o->s), o->nm.node, &o->commitlog_seen_id) == 0;
}
/* The backup: plan, snapshot, create, clear the snapshot. 0 or the exit code. */
static int run_create(struct create_opts *o)
{
	int r = plan(o);
	if (r != 0)
		return r;
	install_cancel_handlers();
	if (o->incremental)
		return do_incremental(o);
	if (!o->take_snapshot)
		return do_create(o);
	note_commitlog_seen(o);
	o->snapshot_ns = now_ns();
	if (take_snapshot(o) < 0) /* not taken: nothing of ours to clear (it said what is on disk) */
		return CB_EXIT_FAILED;
	/* once taken, the snapshot is cleared whatever happens */
	r = do_create(o);
	clear_snapshot(o);
	if (r == 0 && cancel_requested)
		r = 128 + (int)cancel_requested;
	return r;
}

int cmd_create(int argc, char **argv)
{
	struct create_opts o = {.level = 3, .frame_kib = SEEKABLE_DEFAULT_FRAME_SIZE >> 10,
				.cassandra_conf = "/etc/cassandra", .lock_wait = DEFAULT_LOCK_WAIT,
				.node_lock = -1};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	o.threads = ncpu <= 0 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (uint64_t)ncpu;
	int r = parse_opts(argc, argv, &o);
	if (r != CLI_RUN) {
		free_opts(&o);
		return r;
	}
	double t0 = mono_seconds();
	const char *operation = create_operation(&o);
	struct hook_env env = {.operation = operation, .backup = o.name, .snapshot = o.tag, .store = o.store};
	const char *failed = "create";
	if (hook_run("hook_pre", &env, "; no backup was made") != 0) {
		failed = "hook_pre";
		r = CB_EXIT_FAILED;
	} else {
		r = run_create(&o);
	}
	record_metrics(&o, r == 0, mono_seconds() - t0);
	if (r == 0) {
		env.result = "success";
		if (!o.made) /* an incremental with nothing new: no backup has the name */
			env.backup = "";
		const char *said = o.made ? "; the backup was made" : "; no backup was made (nothing new)";
		if (hook_run("hook_post", &env, said) != 0) {
			failed = "hook_post";
			r = CB_EXIT_FAILED;
		}
	}
	if (r != 0) {
		env = (struct hook_env){.operation = operation, .backup = o.name, .snapshot = o.tag,
					.store = o.store, .result = "failure", .failed = failed,
					.exit_status = r};
		hook_run("hook_failure", &env, "");
	}
	free_opts(&o);
	return r;
}
