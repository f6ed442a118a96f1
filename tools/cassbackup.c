/* cassbackup: back up Cassandra snapshots into a store, and work with the backups. */
#include "config.h"
#include "cli.h"
#include "crypt.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cmd_init(int argc, char **argv)
{
	const char *store = NULL;
	bool encrypt = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the directory to make a store in (empty or new)", .config_key = "store"},
		{.name = "encrypt", .type = OPT_FLAG, .value = &encrypt,
		 .help = "encrypt the store (AES-256-GCM) with a key that --key-file FILE opens; a "
			 "missing FILE is made"},
		{0},
	};
	struct cli_command cmd = {
		.name = "init",
		.usage = (const char *const[]){"--store DIR", "DIR", NULL},
		.operands = "[DIR]",
		.max_operands = 1,
		.description = "Makes an empty store: DIR/catalog.db, DIR/packs/, DIR/tmp/.\n"
			       "The store may also be given as the one operand; either wins over\n"
			       "store in the configuration. With --encrypt --key-file FILE, every\n"
			       "pack, manifest and lock is sealed with a random master key that a key\n"
			       "slot opened by FILE holds (FILE, when missing, is made: 256 random\n"
			       "bits, mode 600). Keep a copy of FILE apart from the store: without it\n"
			       "no backup in the store can be read.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	if (first < argc) { /* the operand: the store given on the line */
		if (opts[0].given && !opts[0].from_config)
			return cli_usage_error(&cmd, "give the store once, as --store DIR or as DIR");
		store = argv[first];
	}
	if (!store)
		return cli_usage_error(&cmd, "missing --store DIR (or DIR, or 'store' in the configuration)");
	_cleanup_free_ char *shown = cli_escape(store);
	struct strbuf err = {0};
	struct store_options o = *cli_store_settings();
	if (encrypt && !o.key_file && !o.passphrase_file)
		return cli_usage_error(&cmd, "--encrypt needs --key-file FILE (or key_file in the "
				       "configuration, or --passphrase-file FILE)");
	/* a plain store made with a key given would refuse every write with that key */
	if (!encrypt && (o.key_file || o.passphrase_file))
		return cli_usage_error(&cmd, "a key is given (--key-file, --passphrase-file, or key_file "
				       "in the configuration) but not --encrypt: give --encrypt for an "
				       "encrypted store, or no key for a plain one");
	o.encrypt = encrypt;
	bool made_key = false;
	if (encrypt && o.key_file && access(o.key_file, F_OK) < 0 && errno == ENOENT) {
		if (crypt_keyfile_create(o.key_file, &err) < 0) {
			errorf("%s", err.buf ? err.buf : "out of memory");
			sb_free(&err);
			return CB_EXIT_FAILED;
		}
		made_key = true;
	}
	int r = store_init(store, &o, &err);
	_cleanup_free_ char *kshown = made_key ? cli_escape(o.key_file) : NULL;
	if (r < 0) {
		errorf("cannot create store %s: %s", shown ? shown : "", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		/* a key file made for a store that was there already opens nothing: not left behind;
		 * after another failure a key slot may hold the new key, so it is kept */
		if (made_key && r == -EEXIST)
			unlink(o.key_file);
		else if (made_key)
			errorf("the key file %s made for it is kept (a key slot may have been written with "
			       "it); remove it before trying again", kshown ? kshown : "");
		return r == -ENOKEY ? CB_EXIT_USAGE : CB_EXIT_FAILED;
	}
	if (made_key)
		printf("created key file %s: keep a copy apart from the store; without it the backups "
		       "cannot be read\n", kshown ? kshown : "");
	sb_free(&err); /* a note's words may be left in it (a catalog that had no room) */
	printf("created %sstore %s\n", encrypt ? "encrypted " : "", shown ? shown : "");
	return CB_EXIT_OK;
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *args, *summary;
} commands[] = {
	{"init", cmd_init, "--store DIR", "make an empty store"},
	{"create", cmd_create, "--store DIR --data-dir DIR --snapshot TAG [--name NAME] ...",
	 "back up a node's snapshot"},
	{"list", cmd_list, "--store DIR [--node NODE] [--json]", "list cluster backups"},
	{"status", cmd_status, "--store DIR NAME [--json]", "have all nodes of the ring backed up NAME?"},
	{"show", cmd_show, "--store DIR NAME [--node NODE] [--json]", "everything a backup recorded"},
	{"forget", cmd_forget, "--store DIR (NAME... | --keep-* ...) [--dry-run]",
	 "remove backups by name or by a retention policy"},
	{"prune", cmd_prune, "--store DIR [--max-unused PERCENT] [--dry-run] [--json]",
	 "free the space no backup uses"},
	{"unlock", cmd_unlock, "--store DIR [--all]", "remove stale store locks"},
	{"key", cmd_key, "(list | add | remove ID) --store DIR", "the key slots of an encrypted store"},
	{"verify", cmd_verify, "--store DIR (NAME... | --all)", "read backups back and check them"},
	{"restore", cmd_restore, "--store DIR NAME --data-dir DIR", "copy tables into live table directories"},
	{"load", cmd_load, "--store DIR NAME --hosts H1,H2", "stream tables with sstableloader"},
	{"validate-config", cmd_validate_config, "", "check every path and program the config names"},
	{"check", cmd_check, "--store DIR [--read-data | --read-data-subset n/M|P%]", "check that the store is whole"},
	{"copy", cmd_copy, "--from STORE --to STORE (NAME... | --all) [--dry-run] [--json]",
	 "copy backups to another store, sending only what it lacks"},
	{"export", cmd_export, "--store DIR NAME [-o FILE] [--zstd]", "write one backup as a standalone tar"},
	{"reindex", cmd_reindex, "--store DIR [--renumber]", "rebuild catalog.db from the store alone"},
	{"backup", cmd_backup, "[--store DIR] [--node NAME] [--name NAME]",
	 "the routine job: create --take-snapshot, then forget --keep-* --prune (configuration)"},
	{"install-timer", cmd_install_timer, "[--unit-dir DIR]",
	 "write the configuration's schedule into cassbackup-backup.timer (systemd)"},
	{"archive-commitlog", cmd_archive_commitlog, "--store DIR SEGMENT_PATH SEGMENT_NAME",
	 "store one commitlog segment (Cassandra's archive_command)"},
};

static void usage(FILE *f)
{
	fputs("usage: cassbackup COMMAND [OPTIONS]\n"
	      "       cassbackup help COMMAND | --version\n\ncommands:\n", f);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %s %s\n        %s\n", commands[i].name, commands[i].args, commands[i].summary);
	fputs("\n--config FILE (anywhere on the line) reads defaults from FILE instead of\n"
	      CONFIG_DEFAULT_PATH "; flags override it.\n"
	      "'cassbackup help COMMAND' or 'cassbackup COMMAND --help' tells more.\n"
	      "Browse backups with mount.cassbackup.\n"
	      "\nexit status: 0 ok, 1 the work failed, 2 usage or configuration error, "
	      "3 no such store or backup\n", f);
}

static int unknown_command(const char *cmd)
{
	const char *names[ARRAY_SIZE(commands)], *best[1];
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		names[i] = commands[i].name;
	_cleanup_free_ char *shown = cli_escape(cmd);
	if (closest_names(cmd, names, ARRAY_SIZE(names), best, 1))
		errorf("unknown command '%s'; did you mean '%s'? (try 'cassbackup --help')", shown ? shown : "",
		       best[0]);
	else
		errorf("unknown command '%s' (try 'cassbackup --help')", shown ? shown : "");
	return CB_EXIT_USAGE;
}

/* Runs command `name` with argv[0..argc) (argv[0] becomes "cassbackup NAME"). */
static int run_command(const char *name, int argc, char **argv)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(name, commands[i].name) == 0) {
			char prog[64];
			snprintf(prog, sizeof(prog), "cassbackup %s", name);
			argv[0] = prog;
			return commands[i].fn(argc, argv);
		}
	}
	return unknown_command(name);
}

/* How stores in object storage are reached: the environment (as the AWS CLI reads it), then
 * the configuration file. Set once, for every store this process opens. An unreadable key
 * file is a usage error, except to validate-config (report false), which reports it itself. */
static int use_store_settings(bool report)
{
	static char **owned;
	struct cb_s3_options *o = cli_s3_settings();
	/* the environment wins over the file, as for the AWS CLI */
	o->endpoint = cb_s3_env_overrides("s3_endpoint") ? NULL : config_get("s3_endpoint");
	o->region = cb_s3_env_overrides("s3_region") ? NULL : config_get("s3_region");
	o->ca_file = config_get("s3_ca_file");
	o->sse = config_get("s3_sse");
	o->sse_kms_key_id = config_get("s3_sse_kms_key_id");
	o->sse_c_key_file = config_get("s3_sse_c_key_file");
	o->storage_class = config_get("s3_storage_class");
	const char *par = config_get("s3_parallel");
	if (par && cli_parse_s3_parallel(par, &o->parallel) < 0 && report) {
		errorf("s3_parallel = %s: expected a number of requests from 1 to %u", par, S3_PARALLEL_MAX);
		return CB_EXIT_USAGE;
	}
	if (cb_s3_options_resolve(o, config_get("s3_key_file"), &owned) < 0 && report) {
		errorf("%s", cb_backend_why(-errno));
		return CB_EXIT_USAGE;
	}
	cli_store_settings()->cache_dir = config_get("cache_dir");
	return CB_EXIT_OK;
}

int main(int argc, char **argv)
{
	const char *cfg = NULL;
	argc = cli_take_config(argc, argv, &cfg);
	if (argc < 0)
		return CB_EXIT_USAGE;
	if (argc < 2) {
		usage(stderr);
		return CB_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || (!strcmp(cmd, "help") && argc == 2)) {
		usage(stdout);
		return CB_EXIT_OK;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("cassbackup %s\n", PACKAGE_VERSION);
		return CB_EXIT_OK;
	}
	if (!strcmp(cmd, "help")) { /* help CMD is CMD --help */
		if (argc > 3) {
			errorf("usage: cassbackup help COMMAND");
			return CB_EXIT_USAGE;
		}
		char *hargv[] = {NULL, "--help", NULL};
		return run_command(argv[2], 2, hargv);
	}
	struct strbuf cerr = {0};
	if (config_load(cfg ? cfg : CONFIG_DEFAULT_PATH, cfg != NULL, &cerr) < 0) {
		errorf("%s", cerr.buf ? cerr.buf : "out of memory");
		sb_free(&cerr);
		return CB_EXIT_USAGE;
	}
	int r = use_store_settings(strcmp(cmd, "validate-config") != 0);
	if (r != CB_EXIT_OK)
		return r;
	return run_command(cmd, argc - 1, argv + 1);
}
