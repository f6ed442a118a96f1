/* cassbackup backup: the routine job of a node, as its timer runs it (cassbackup-backup.service):
 *
 *   1. cassbackup create --take-snapshot --snapshot NAME --name NAME --node NODE --include-system
 *      (every keyspace: restore --whole-node needs system_schema), NAME made from
 *      the configuration's name template as create makes it (cluster_name_expand: strftime(3)
 *      of the name_period slot in UTC, DEFAULT_NAME by the day without one), so every node of
 *      a cluster names its backup alike and they make one cluster backup; every other setting
 *      from the configuration as create reads it; hooks and metrics as create runs them;
 *   2. when the configuration sets a retention (keep_last, keep_hourly, keep_daily,
 *      keep_weekly, keep_monthly, keep_yearly, keep_within) and the create succeeded:
 *      cassbackup forget --node KEY --keep-...: this node's backups only, so nodes sharing a
 *      store each keep their own (KEY: the host id the backup just made records, else NODE:
 *      a node replaced under its name keeps the old host's backups apart, and NODE alone
 *      would name both); then cassbackup prune --if-idle (its metrics as prune
 *      records them): the last node to finish prunes, not each one that finds another's
 *      create running.
 *
 * With --incremental (cassbackup-incremental.service): cassbackup create --incremental --name NAME
 * --node NODE --include-system, NAME from the incremental_name template and its
 * incremental_name_period (DEFAULT_INC_NAME by the hour without one), on top of the node's last
 * full backup; "nothing new" in backups/ is success. No retention step: the full job's forget
 * keeps the incrementals' bases as long as it keeps them.
 *
 * It runs create, forget and prune in this process, with the argv an operator would type, so what
 * they check, print and exit with is theirs. */
#include "catalog.h"
#include "cli.h"
#include "cluster.h"
#include "conf.h"
#include "exec.h"
#include "store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_NAME "daily-%Y-%m-%d" /* with a name_period of 1d */
#define DEFAULT_INC_NAME "inc-%Y-%m-%dT%H%M" /* with an incremental_name_period of 1h */

/* Where a job's name comes from: a template key, its period key, and their defaults. */
struct name_keys {
	const char *name, *period, *default_name;
	struct duration default_period; /* without a template of the configuration */
};

static const struct name_keys full_names = {"name", "name_period", DEFAULT_NAME, {.days = 1}};
static const struct name_keys inc_names = {"incremental_name", "incremental_name_period", DEFAULT_INC_NAME,
					   {.hours = 1}};

static const char *const keep_keys[] = {
	"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within",
};

/* k->period of the configuration into *period, which keeps its value when there is none.
 * 0, or -EINVAL with why. */
static int configured_period(const struct name_keys *k, struct duration *period, struct strbuf *why)
{
	const char *pv = config_get(k->period);
	return pv ? parse_duration(pv, period, why) : 0;
}

/* template made into a name for now (cluster_name_expand), which must be a backup's name.
 * 0, or -EINVAL with why. */
static int expand_checked(const char *template, const struct duration *period, char *out, size_t n,
			  struct strbuf *why)
{
	int r = cluster_name_expand(template, period, time(NULL), out, n, why);
	if (r == 0 && !backup_name_valid(out)) {
		sb_printf(why, "gives '%s': " BACKUP_NAME_RULE, out);
		r = -EINVAL;
	}
	return r;
}

/* The backup's name for now from template (the configuration's k->name; NULL: k->default_name
 * by k->default_period) and k->period. 0, or -EINVAL with err saying which key and why. */
static int name_for_now(const struct name_keys *k, const char *template, char *out, size_t n,
			struct strbuf *err)
{
	struct duration period = template ? (struct duration){0} : k->default_period;
	struct strbuf why = {0};
	int r = configured_period(k, &period, &why);
	if (r < 0)
		sb_printf(err, "%s = %s: %s", k->period, config_get(k->period), why.buf ? why.buf : "invalid");
	else if ((r = expand_checked(template ? template : k->default_name, &period, out, n, &why)) < 0)
		sb_printf(err, "%s = %s: %s", k->name, template ? template : k->default_name,
			  why.buf ? why.buf : "invalid");
	sb_free(&why);
	return r;
}

/* The backup's name: name_for_now with the configuration's template. 0, or CB_EXIT_USAGE after
 * one line. */
static int make_name(const struct name_keys *k, char *out, size_t n)
{
	struct strbuf err = {0};
	int r = name_for_now(k, config_get(k->name), out, n, &err);
	if (r < 0)
		errorf("%s; nothing was done", err.buf ? err.buf : "invalid name");
	sb_free(&err);
	return r < 0 ? CB_EXIT_USAGE : 0;
}

int backup_name_check(const char *key, const char *value, char *out, size_t n, struct strbuf *err)
{
	const struct name_keys *k = !strncmp(key, "incremental_", 12) ? &inc_names : &full_names;
	struct duration d;
	if (!strcmp(key, k->period))
		return parse_duration(value, &d, err);
	/* a bad period is its own line's problem: this one is judged by the template alone */
	struct strbuf why = {0};
	struct duration period = {0};
	if (configured_period(k, &period, &why) < 0)
		period = (struct duration){0};
	sb_free(&why);
	return expand_checked(value, &period, out, n, err);
}

/* "--keep-daily" for "keep_daily" into buf. */
static const char *option_of(const char *key, char *buf, size_t n)
{
	snprintf(buf, n, "--%s", key);
	for (char *p = buf; *p; p++)
		if (*p == '_')
			*p = '-';
	return buf;
}

int backup_keep_check(const char *key, const char *value, struct strbuf *err)
{
	uint64_t n;
	struct duration d;
	return !strcmp(key, "keep_within") ? parse_duration(value, &d, err)
		: parse_u64(value, 0, INT32_MAX, &n, err);
}

/* The keep_* keys hold what forget's options take: refused here, before a snapshot is taken,
 * rather than by forget after the backup. 0, or CB_EXIT_USAGE after one line. */
static int check_retention(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(keep_keys); i++) {
		const char *v = config_get(keep_keys[i]);
		struct strbuf err = {0};
		int r = v ? backup_keep_check(keep_keys[i], v, &err) : 0;
		if (r < 0)
			errorf("%s = %s: %s; nothing was done", keep_keys[i], v, err.buf ? err.buf : "invalid");
		sb_free(&err);
		if (r < 0)
			return CB_EXIT_USAGE;
	}
	return 0;
}

/* Does the configuration set a retention (a keep_* key)? */
static bool retention_set(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(keep_keys); i++)
		if (config_get(keep_keys[i]))
			return true;
	return false;
}

/* forget's argv for the configured retention, if any (a->n stays 0 when there is none). */
static int forget_argv(struct strv *a, const char *store, const char *node)
{
	for (size_t i = 0; i < ARRAY_SIZE(keep_keys); i++) {
		const char *v = config_get(keep_keys[i]);
		char opt[32];
		if (!v)
			continue;
		int r = (a->n ? 0 : strv_push(a, "forget") ?: strv_push(a, "--store") ?: strv_push(a, store) ?:
			 strv_push(a, "--node") ?: strv_push(a, node)) ?:
			strv_push(a, option_of(keep_keys[i], opt, sizeof(opt))) ?: strv_push(a, v);
		if (r < 0)
			return r;
	}
	return 0;
}

struct made_backup {
	const char *name, *node;
	char key[256]; /* its node key (host id, else node name); "" until found */
};

static int find_made(void *ctx, const struct cb_backup_summary *b)
{
	struct made_backup *m = ctx;
	if (!b->invalid && !strcmp(b->name, m->name) && !strcmp(b->node, m->node))
		snprintf(m->key, sizeof(m->key), "%s", b->node_key);
	return 0;
}

/* The node key (host id, else node name) of backup name of node just made, into key: what
 * forget's --node takes to mean this node only. 0, or the exit code (said). */
static int made_node_key(const char *store, const char *name, const char *node, char key[256])
{
	struct store *s;
	int rc = cli_store_open(store, STORE_READONLY, &s);
	if (rc)
		return rc;
	struct made_backup m = {name, node, ""};
	int r = catalog_list_backups(store_catalog(s), find_made, &m);
	store_close(s);
	if (r < 0 || !m.key[0]) {
		errorf("backup %s of node %s: %s; nothing forgotten", name, node,
		       r < 0 ? strerror(-r) : "not in the store's catalog after its create");
		return CB_EXIT_FAILED;
	}
	snprintf(key, 256, "%s", m.key);
	return 0;
}

/* The prune after the forget: only if no other command holds the store (prune --if-idle).
 * Nodes sharing a store run their jobs in one window: one that finishes while another node's
 * create runs leaves the prune to the last one, instead of waiting and failing its job. */
static int run_prune_if_idle(const char *store)
{
	char *argv[] = {"prune", "--store", (char *)store, "--if-idle", NULL};
	fflush(stdout);
	return cmd_prune(4, argv);
}

static int run_create(const char *store, const char *node, const char *name)
{
	/* every keyspace, system ones included: the routine backup must bring a node back whole
	 * (restore --whole-node needs system_schema) */
	char *argv[] = {"create", "--store", (char *)store, "--take-snapshot", "--snapshot", (char *)name,
			"--name", (char *)name, "--node", (char *)node, "--include-system", NULL};
	return cmd_create((int)ARRAY_SIZE(argv) - 1, argv);
}

/* create --incremental over the same keyspaces as run_create's full backup, on top of the
 * node's last full one (create's default). */
static int run_incremental(const char *store, const char *node, const char *name)
{
	char *argv[] = {"create", "--store", (char *)store, "--incremental", "--name", (char *)name,
			"--node", (char *)node, "--include-system", NULL};
	return cmd_create((int)ARRAY_SIZE(argv) - 1, argv);
}

int cmd_backup(int argc, char **argv)
{
	const char *store = NULL, *node = NULL, *name = NULL;
	bool incremental = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "S",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "node", .type = OPT_STRING, .value = &node, .arg = "NAME",
		 .help = "the node's name (default: this host's name)", .config_key = "node"},
		{.name = "name", .short_name = 'n', .type = OPT_STRING, .value = &name, .arg = "NAME",
		 .help = "the backup's name (default: the name template, else " DEFAULT_NAME ")"},
		{.name = "incremental", .type = OPT_FLAG, .value = &incremental,
		 .help = "the incremental job: create --incremental (name: incremental_name)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "backup",
		.description =
			"The routine job of a node, as cassbackup-backup.timer runs it: 'create\n"
			"--take-snapshot' of a snapshot named as the backup, then, when the configuration\n"
			"sets keep_* keys, 'forget --node NODE --keep-...' of this node's backups and\n"
			"'prune --if-idle' (left to the last node to finish when another node's create\n"
			"holds the store).\n"
			"The name comes from the configuration's name template and name_period, as\n"
			"create makes it (default " DEFAULT_NAME " by the UTC day), so every node of a\n"
			"cluster makes one cluster backup. Everything else comes from the configuration\n"
			"as create and forget read it, hooks and metrics included.\n"
			"With --incremental, as cassbackup-incremental.timer runs it: 'create\n"
			"--incremental' on top of the node's last full backup, named from\n"
			"incremental_name and incremental_name_period (default " DEFAULT_INC_NAME "\n"
			"by the UTC hour); nothing new in backups/ is success; no retention step.\n"
			"Exit status: create's when it failed (nothing is forgotten then), else forget's\n"
			"when it failed, else prune's.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	if (!node)
		node = host;
	char made[256];
	if (!name && (rc = make_name(incremental ? &inc_names : &full_names, made, sizeof(made))) != 0)
		return rc;
	if (incremental)
		return run_incremental(store, node, name ? name : made);
	if (check_retention() != 0)
		return CB_EXIT_USAGE;
	struct strv fa = {0};
	char key[256] = "";
	rc = run_create(store, node, name ? name : made);
	fflush(stdout);
	if (rc == CB_EXIT_OK && retention_set())
		rc = made_node_key(store, name ? name : made, node, key);
	if (rc == CB_EXIT_OK && forget_argv(&fa, store, key) < 0) {
		errorf("out of memory");
		rc = CB_EXIT_FAILED;
	}
	if (rc == CB_EXIT_OK && fa.n)
		rc = cmd_forget((int)fa.n, fa.v);
	if (rc == CB_EXIT_OK && fa.n)
		rc = run_prune_if_idle(store);
	strv_free(&fa);
	return rc;
}
