/* cassbackup validate-config: check every path and program the configuration names, and say
 * what is wrong with each, before a bad day depends on it. */
#include "cassandra_conf.h"
#include "nodemeta.h"
#include "cli.h"
#include "crypt.h"
#include "manifest.h"
#include "packer.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vctx {
	unsigned problems, checked;
};

enum verdict { V_OK, V_PROBLEM, V_NOTE };

/* One line: "ok|PROBLEM|note  line N  key = value: message", value and message escaped. A note
 * is neither a setting checked nor a problem: something the operator should know. */
static void say(struct vctx *v, enum verdict verdict, int line, const char *key, const char *value,
		const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void say(struct vctx *v, enum verdict verdict, int line, const char *key, const char *value,
		const char *fmt, ...)
{
	static const char *const words[] = {"ok", "PROBLEM", "note"};
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct strbuf out = {0};
	sb_printf(&out, "%-8s line %-3d ", words[verdict], line);
	sb_escape(&out, key);
	sb_puts(&out, " = ");
	sb_escape(&out, value);
	sb_puts(&out, ": ");
	sb_escape(&out, msg);
	sb_puts(&out, "\n");
	fputs(out.buf ? out.buf : "out of memory\n", stdout);
	sb_free(&out);
	if (verdict == V_NOTE)
		return;
	v->checked++;
	v->problems += verdict == V_PROBLEM;
}

static void check_store(struct vctx *v, const char *key, const char *value, int line)
{
	struct store *s;
	struct strbuf why = {0};
	struct store_options o = *cli_store_settings();
	o.flags = STORE_READONLY;
	int r = store_open(value, &o, &s, &why);
	const char *cred = r == 0 ? cb_backend_credentials(store_backend(s)) : NULL;
	if (r == 0 && cred)
		say(v, V_OK, line, key, value, "a cassbackup store; S3 credentials from %s", cred);
	else if (r == 0)
		say(v, V_OK, line, key, value, "a cassbackup store");
	else
		say(v, V_PROBLEM, line, key, value, "%s", why.buf ? why.buf : strerror(-r));
	store_close(s);
	sb_free(&why);
}

static void check_readable_dir(struct vctx *v, const char *key, const char *value, int line)
{
	struct stat st;
	if (stat(value, &st) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		say(v, V_PROBLEM, line, key, value, "not a directory");
	else if (access(value, R_OK | X_OK) < 0)
		say(v, V_PROBLEM, line, key, value, "not readable: %s", strerror(errno));
	else
		say(v, V_OK, line, key, value, "readable directory");
}

/* The nearest existing ancestor of path (path itself excluded: it does not exist) into out. */
static int nearest_existing(const char *path, char *out, size_t n, struct stat *st)
{
	snprintf(out, n, "%s", path);
	for (;;) {
		char *slash = strrchr(out, '/');
		if (!slash)
			snprintf(out, n, ".");
		else if (slash == out)
			out[1] = '\0';
		else
			*slash = '\0';
		if (stat(out, st) == 0)
			return 0;
		if (!slash || slash == out)
			return -errno;
	}
}

/* load_state_dir: a directory we may write, or one load can make (its nearest existing
 * ancestor is a directory we may write). */
static void check_state_dir(struct vctx *v, const char *key, const char *value, int line)
{
	struct stat st;
	char parent[PATH_MAX];
	if (stat(value, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			say(v, V_PROBLEM, line, key, value, "not a directory");
		else if (access(value, W_OK | X_OK) < 0)
			say(v, V_PROBLEM, line, key, value, "not writable: %s", strerror(errno));
		else
			say(v, V_OK, line, key, value, "writable directory");
	} else if (errno != ENOENT) {
		say(v, V_PROBLEM, line, key, value, "%s", strerror(errno));
	} else if (nearest_existing(value, parent, sizeof(parent), &st) < 0 || !S_ISDIR(st.st_mode) ||
		   access(parent, W_OK | X_OK) < 0) {
		say(v, V_PROBLEM, line, key, value, "does not exist, and %s cannot be written to make it", parent);
	} else {
		say(v, V_OK, line, key, value, "does not exist yet; load makes it");
	}
}

static void check_program(struct vctx *v, const char *key, const char *value, int line)
{
	char found[4096];
	if (exec_find(value, found, sizeof(found)) == 0)
		say(v, V_OK, line, key, value, "runs %s", found);
	else
		say(v, V_PROBLEM, line, key, value, "no executable program by that name%s",
		    strchr(value, '/') ? "" : " on PATH");
}

/* How long 'nodetool version' may take: a JVM starting, and a JMX connection that a firewall
 * may leave unanswered. */
#define NODETOOL_PROBE_SECONDS 60

/* nodetool: found, and 'nodetool version' (with the configuration's nodetool_user and
 * nodetool_password_file, as every command runs it) answers. A nodetool that cannot reach
 * Cassandra (node stopped, JMX refused, credentials wrong) exits non-zero: a problem, said with
 * the first line it wrote to stderr (else to stdout, else its exit status). */
static void check_nodetool(struct vctx *v, const char *key, const char *value, int line)
{
	char found[4096], said[256];
	if (exec_find(value, found, sizeof(found)) < 0) {
		check_program(v, key, value, line);
		return;
	}
	struct strv a = {0};
	_cleanup_free_ char *out = NULL, *err = NULL, *version = NULL;
	int s = nodetool_argv(&a, value) ?: strv_push(&a, "version") ?:
		exec_capture(a.v, NODETOOL_PROBE_SECONDS, &out, &err);
	strv_free(&a);
	first_line(err, said, sizeof(said));
	if (!said[0])
		first_line(out, said, sizeof(said));
	if (s == 0 && out && (version = nodetool_parse_version(out)))
		say(v, V_OK, line, key, value, "runs %s: Cassandra %s ('nodetool version')", found, version);
	else if (s == 0)
		say(v, V_PROBLEM, line, key, value, "%s version printed no ReleaseVersion line: not nodetool?",
		    found);
	else if (s == -ETIMEDOUT)
		say(v, V_PROBLEM, line, key, value, "%s version did not finish within %d s (killed)", found,
		    NODETOOL_PROBE_SECONDS);
	else if (s < 0)
		say(v, V_PROBLEM, line, key, value, "cannot run %s version: %s", found, strerror(-s));
	else
		say(v, V_PROBLEM, line, key, value, "%s version failed (exit status %d)%s%s", found, s,
		    said[0] ? ": " : "", said);
}

static void check_password_file(struct vctx *v, const char *key, const char *value, int line)
{
	struct stat st;
	if (stat(value, &st) < 0 || access(value, R_OK) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", strerror(errno));
	else if (st.st_mode & 004)
		say(v, V_PROBLEM, line, key, value, "readable by everyone (chmod o-r)");
	else
		say(v, V_OK, line, key, value, "readable, not by everyone");
	if (!strcmp(key, "sstableloader_password_file"))
		say(v, V_NOTE, line, key, value, "sstableloader receives the password as -pw on its command "
		    "line, visible in ps while it runs (Cassandra's LoaderOptions has no other way)");
}

/* Stats a file that must be a readable regular file; false, having said why, when it is not. */
static bool readable_file(struct vctx *v, const char *key, const char *value, int line,
			  struct stat *st)
{
	if (stat(value, st) < 0 || access(value, R_OK) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", strerror(errno));
	else if (!S_ISREG(st->st_mode))
		say(v, V_PROBLEM, line, key, value, "not a regular file");
	else
		return true;
	return false;
}

/* The S3 key file holds a secret key that opens every backup: only its owner may read it,
 * as ssh asks of a private key. */
static void check_key_file(struct vctx *v, const char *key, const char *value, int line)
{
	struct stat st;
	if (!readable_file(v, key, value, line, &st))
		return;
	if (st.st_mode & 077)
		say(v, V_PROBLEM, line, key, value, "mode %03o lets others than its owner at the secret key "
		    "(chmod 600)", (unsigned)(st.st_mode & 0777));
	else
		say(v, V_OK, line, key, value, "readable by its owner only");
}

/* An encrypted store's key file or passphrase file: read as a store open reads it (its mode,
 * its size), and wiped again. */
static void check_store_key(struct vctx *v, const char *key, const char *value, int line)
{
	struct crypt_secret *s = NULL;
	struct strbuf err = {0};
	bool pass = !strcmp(key, "passphrase_file");
	int r = pass ? crypt_secret_file_read(value, "passphrase file", CRYPT_PASSPHRASE_MIN, &s, &err)
		     : crypt_keyfile_read(value, &s, &err);
	if (r < 0)
		say(v, V_PROBLEM, line, key, value, "%s", err.buf ? err.buf : strerror(-r));
	else
		say(v, V_OK, line, key, value, "%s", "readable by its owner only");
	crypt_secret_free(s);
	sb_free(&err);
}

static void check_readable_file(struct vctx *v, const char *key, const char *value, int line)
{
	struct stat st;
	if (readable_file(v, key, value, line, &st))
		say(v, V_OK, line, key, value, "readable");
}

static void check_endpoint(struct vctx *v, const char *key, const char *value, int line)
{
	bool ok = cb_s3_endpoint_ok(value);
	say(v, ok ? V_OK : V_PROBLEM, line, key, value, "%s",
	    ok ? "URL" : "expected an http:// or https:// URL");
}

/* keep_*: what forget's --keep-* options take. */
static void check_keep(struct vctx *v, const char *key, const char *value, int line)
{
	struct strbuf err = {0};
	if (backup_keep_check(key, value, &err) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", err.buf ? err.buf : "invalid");
	else
		say(v, V_OK, line, key, value, "retention of 'cassbackup backup'");
	sb_free(&err);
}

/* hook_*: the words split as the hook runs them, the program found. */
static void check_hook(struct vctx *v, const char *key, const char *value, int line)
{
	struct strv argv = {0};
	struct strbuf err = {0};
	char found[4096];
	if (config_split_words(value, &argv, &err) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", err.buf ? err.buf : "");
	else if (exec_find(argv.v[0], found, sizeof(found)) < 0)
		say(v, V_PROBLEM, line, key, value, "%s: no executable program by that name%s", argv.v[0],
		    strchr(argv.v[0], '/') ? "" : " on PATH");
	else
		say(v, V_OK, line, key, value, "runs %s with %zu argument%s", found, argv.n - 1,
		    argv.n == 2 ? "" : "s");
	strv_free(&argv);
	sb_free(&err);
}

/* metrics_file: its directory is there and writable (the file is replaced by a rename). */
static void check_metrics_file(struct vctx *v, const char *key, const char *value, int line)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", value);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir] = '\0';
	struct stat st;
	if (stat(dir, &st) < 0)
		say(v, V_PROBLEM, line, key, value, "%s: %s", dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		say(v, V_PROBLEM, line, key, value, "%s: not a directory", dir);
	else if (access(dir, W_OK | X_OK) < 0)
		say(v, V_PROBLEM, line, key, value, "%s: not writable: %s", dir, strerror(errno));
	else
		say(v, V_OK, line, key, value, "%s", strlen(value) > 5 && !strcmp(value + strlen(value) - 5, ".prom")
		    ? "writable directory" : "writable directory; node_exporter reads only files ending in .prom");
}

/* s3_sse, s3_sse_kms_key_id, s3_sse_c_key_file, s3_storage_class: each checked as the S3
 * client checks it (cb_s3_options_check), with the s3_sse it goes with. */
static void check_storage(struct vctx *v, const char *key, const char *value, int line)
{
	struct cb_s3_options t = {0};
	const char *sse = config_get("s3_sse");
	bool sse_ok = sse && (!strcmp(sse, "AES256") || !strcmp(sse, "aws:kms"));
	if (!strcmp(key, "s3_sse"))
		t.sse = value;
	else if (!strcmp(key, "s3_sse_kms_key_id"))
		t = (struct cb_s3_options){.sse = sse_ok ? sse : NULL, .sse_kms_key_id = value};
	else if (!strcmp(key, "s3_sse_c_key_file"))
		t = (struct cb_s3_options){.sse = sse_ok ? sse : NULL, .sse_c_key_file = value};
	else
		t.storage_class = value;
	int r = cb_s3_options_check(&t);
	explicit_bzero(t.sse_c_key, sizeof(t.sse_c_key));
	if (r < 0)
		say(v, V_PROBLEM, line, key, value, "%s", cb_backend_why(r));
	else
		say(v, V_OK, line, key, value, "%s", !strcmp(key, "s3_sse_c_key_file") ? "a 256-bit key"
						    : "sent on every write");
}

/* node, host_id: as create takes --node and --host-id (the store's node keys). */
static void check_node(struct vctx *v, const char *key, const char *value, int line)
{
	char canon[37];
	bool host = !strcmp(key, "host_id");
	bool ok = host ? host_id_canonical(value, canon) == 0 : manifest_node_key_ok(value);
	say(v, ok ? V_OK : V_PROBLEM, line, key, value, "%s",
	    ok ? (host ? "host id" : "node name") : host ? HOST_ID_RULE : NODE_KEY_RULE);
}

/* pack_size, limit_upload, limit_download: sizes as their options take them. */
static void check_size(struct vctx *v, const char *key, const char *value, int line)
{
	uint64_t n, least = !strcmp(key, "pack_size") ? PACK_MIN_SIZE : 0;
	struct strbuf err = {0};
	int r = parse_size(value, &n, &err);
	if (r == 0 && n < least)
		say(v, V_PROBLEM, line, key, value, "must be at least %llu bytes", (unsigned long long)least);
	else if (r < 0)
		say(v, V_PROBLEM, line, key, value, "%s", err.buf ? err.buf : "not a size");
	else
		say(v, V_OK, line, key, value, "%s", least ? "bytes of tar stream per pack"
					       : n ? "bytes per second" : "no limit");
	sb_free(&err);
}

/* name, incremental_name (templates) and their *_period: as the routine job makes names. */
static void check_name(struct vctx *v, const char *key, const char *value, int line)
{
	char made[256];
	struct strbuf err = {0};
	if (backup_name_check(key, value, made, sizeof(made), &err) < 0)
		say(v, V_PROBLEM, line, key, value, "%s", err.buf ? err.buf : "invalid");
	else if (strstr(key, "_period"))
		say(v, V_OK, line, key, value, "one backup name per period");
	else
		say(v, V_OK, line, key, value, "names a backup made now %s", made);
	sb_free(&err);
}

/* The keys whose value is a file or directory of this machine (a program's name alone is
 * looked up on PATH instead). */
static bool is_path_key(const char *key)
{
	static const char *const keys[] = {
		"store", "data_dir", "cassandra_conf", "load_state_dir", "nodetool", "sstableloader",
		"mount_helper", "cqlsh", "nodetool_password_file", "sstableloader_password_file",
		"s3_key_file", "key_file", "to_key_file", "passphrase_file", "s3_ca_file",
		"s3_sse_c_key_file", "metrics_file", "cache_dir",
	};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

/* A relative path is read from the directory a command runs in: by hand the one it was
 * checked from, but / for the timer's service. Said as a note beside the check. */
static void note_relative(struct vctx *v, const char *key, const char *value, int line)
{
	bool program_name = strchr(value, '/') == NULL &&
			    (!strcmp(key, "nodetool") || !strcmp(key, "sstableloader") ||
			     !strcmp(key, "mount_helper") || !strcmp(key, "cqlsh"));
	if (!is_path_key(key) || value[0] == '/' || program_name || strstr(value, "://"))
		return;
	say(v, V_NOTE, line, key, value, "a relative path: read from the directory each command runs "
	    "in ('cassbackup backup' from the timer runs in /); give it from /");
}

static int check(void *ctx, const char *key, const char *value, int line)
{
	struct vctx *v = ctx;
	note_relative(v, key, value, line);
	if (!strcmp(key, "store"))
		check_store(v, key, value, line);
	else if (!strcmp(key, "data_dir") || !strcmp(key, "cassandra_conf"))
		check_readable_dir(v, key, value, line);
	else if (!strcmp(key, "load_state_dir"))
		check_state_dir(v, key, value, line);
	else if (!strcmp(key, "nodetool"))
		check_nodetool(v, key, value, line);
	else if (!strcmp(key, "sstableloader") || !strcmp(key, "mount_helper") || !strcmp(key, "cqlsh"))
		check_program(v, key, value, line);
	else if (!strcmp(key, "cqlsh_option")) {
		const char *why = cqlsh_option_problem(value);
		say(v, why ? V_PROBLEM : V_OK, line, key, value, "%s", why ? why : "passed to cqlsh");
	}
	else if (!strcmp(key, "nodetool_password_file") || !strcmp(key, "sstableloader_password_file"))
		check_password_file(v, key, value, line);
	else if (!strcmp(key, "s3_key_file"))
		check_key_file(v, key, value, line);
	else if (!strcmp(key, "key_file") || !strcmp(key, "to_key_file") || !strcmp(key, "passphrase_file"))
		check_store_key(v, key, value, line);
	else if (!strcmp(key, "s3_ca_file"))
		check_readable_file(v, key, value, line);
	else if (!strcmp(key, "s3_sse") || !strcmp(key, "s3_sse_kms_key_id") ||
		 !strcmp(key, "s3_sse_c_key_file") || !strcmp(key, "s3_storage_class"))
		check_storage(v, key, value, line);
	else if (!strcmp(key, "s3_parallel")) {
		unsigned n;
		bool ok = cli_parse_s3_parallel(value, &n) == 0;
		say(v, ok ? V_OK : V_PROBLEM, line, key, value, "%s",
		    ok ? "parallel transfers" : "expected a number from 1 to 16");
	} else if (!strcmp(key, "s3_endpoint"))
		check_endpoint(v, key, value, line);
	else if (!strncmp(key, "keep_", 5))
		check_keep(v, key, value, line);
	else if (!strncmp(key, "hook_", 5))
		check_hook(v, key, value, line);
	else if (!strcmp(key, "metrics_file"))
		check_metrics_file(v, key, value, line);
	else if (!strcmp(key, "node") || !strcmp(key, "host_id"))
		check_node(v, key, value, line);
	else if (!strcmp(key, "pack_size") || !strcmp(key, "limit_upload") || !strcmp(key, "limit_download"))
		check_size(v, key, value, line);
	else if (!strcmp(key, "name") || !strcmp(key, "name_period") || !strcmp(key, "incremental_name") ||
		 !strcmp(key, "incremental_name_period"))
		check_name(v, key, value, line);
	else if (!strcmp(key, "hosts"))
		say(v, host_list_ok(value) ? V_OK : V_PROBLEM, line, key, value, "%s", host_list_ok(value)
		    ? "host list" : "expected HOST[,HOST...] without spaces or empty entries");
	else
		say(v, V_OK, line, key, value, "set");
	return 0;
}

int cmd_validate_config(int argc, char **argv)
{
	struct cli_option opts[] = {{0}};
	struct cli_command cmd = {
		.name = "validate-config",
		.description = "Checks every path and program in the configuration (" CONFIG_DEFAULT_PATH ",\n"
			       "or the file given with --config FILE) and prints one ok or PROBLEM line\n"
			       "for each entry; exit 1 on any problem.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (!config_path()) {
		errorf("no configuration: %s does not exist (or give --config FILE)", CONFIG_DEFAULT_PATH);
		return CB_EXIT_USAGE;
	}
	struct vctx v = {0};
	config_each(check, &v);
	if (!config_get("store"))
		say(&v, V_PROBLEM, 0, "store", "(unset)", "every command needs a store: set it or pass --store");
	struct strbuf sum = {0};
	sb_escape(&sum, config_path());
	sb_printf(&sum, ": %u settings checked, %u problem(s)\n", v.checked, v.problems);
	fputs(sum.buf ? sum.buf : "out of memory\n", stdout);
	sb_free(&sum);
	return v.problems ? CB_EXIT_FAILED : CB_EXIT_OK;
}
