/* cassbackup validate-config: check every path and program the configuration names, and say
 * what is wrong with each, before a bad day depends on it. */
#include "cli.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vctx {
	unsigned problems, checked;
};

static void say(struct vctx *v, bool ok, int line, const char *key, const char *value, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void say(struct vctx *v, bool ok, int line, const char *key, const char *value, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	_cleanup_free_ char *shown = cli_escape(value), *why = cli_escape(msg);
	printf("%-8s line %-3d %s = %s: %s\n", ok ? "ok" : "PROBLEM", line, key, shown ? shown : "",
	       why ? why : "");
	v->checked++;
	v->problems += !ok;
}

static int check(void *ctx, const char *key, const char *value, int line)
{
	struct vctx *v = ctx;
	struct stat st;
	char found[4096];
	if (!strcmp(key, "store")) {
		catalog *c;
		int r = open_store_quiet(value, CATALOG_READONLY, &c);
		catalog_close(c);
		char why[512];
		if (r == 0)
			say(v, true, line, key, value, "a cassbackup store");
		else
			say(v, false, line, key, value, "%s", store_open_why(value, r, why, sizeof(why)));
	} else if (!strcmp(key, "data_dir") || !strcmp(key, "cassandra_conf")) {
		if (stat(value, &st) < 0)
			say(v, false, line, key, value, "%s", strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			say(v, false, line, key, value, "not a directory");
		else if (access(value, R_OK | X_OK) < 0)
			say(v, false, line, key, value, "not readable: %s", strerror(errno));
		else
			say(v, true, line, key, value, "readable directory");
	} else if (!strcmp(key, "nodetool") || !strcmp(key, "sstableloader")) {
		if (exec_find(value, found, sizeof(found)) == 0)
			say(v, true, line, key, value, "runs %s", found);
		else
			say(v, false, line, key, value, "no executable program by that name%s",
			    strchr(value, '/') ? "" : " on PATH");
	} else if (!strcmp(key, "nodetool_password_file") || !strcmp(key, "sstableloader_password_file")) {
		if (stat(value, &st) < 0 || access(value, R_OK) < 0)
			say(v, false, line, key, value, "%s", strerror(errno));
		else if (st.st_mode & 004)
			say(v, false, line, key, value, "readable by everyone (chmod o-r)");
		else
			say(v, true, line, key, value, "readable, not by everyone");
	} else if (!strcmp(key, "hosts")) {
		bool ok = *value && !strchr(value, ' ') && value[strlen(value) - 1] != ',' && value[0] != ',' &&
			  !strstr(value, ",,");
		say(v, ok, line, key, value, ok ? "host list" : "expected HOST[,HOST...] without spaces");
	} else {
		say(v, true, line, key, value, "set");
	}
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
		say(&v, false, 0, "store", "(unset)", "every command needs a store: set it or pass --store");
	_cleanup_free_ char *shown = cli_escape(config_path());
	printf("%s: %u settings checked, %u problem(s)\n", shown ? shown : "", v.checked, v.problems);
	return v.problems ? CB_EXIT_FAILED : CB_EXIT_OK;
}
