/* cassbackup unlock: removes stale store locks (lock.h): those of processes gone from this
 * host, and those nobody refreshed for 30 minutes. --all removes every lock: only when no
 * cassbackup process works on the store, anywhere. */
#include "cli.h"
#include "lock.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct shown {
	int64_t now;
	unsigned live;
};

static int show_lock(void *ctx, const struct lock_info *li)
{
	struct shown *s = ctx;
	if (lock_is_stale(li, s->now))
		return 0;
	_cleanup_free_ char *host = cli_escape(li->host), *cmd = cli_escape(li->command);
	printf("held   %s lock of %s (pid %lld on %s)\n", li->exclusive ? "exclusive" : "shared",
	       cmd ? cmd : "", (long long)li->pid, host ? host : "");
	s->live++;
	return 0;
}

int cmd_unlock(int argc, char **argv)
{
	const char *store = NULL;
	bool all = false;
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "all", .type = OPT_FLAG, .value = &all,
		 .help = "remove every lock, live ones too (only when nothing works on the store)"},
		{0},
	};
	struct cli_command cmd = {
		.name = "unlock",
		.description = "Removes stale locks: those of processes that are gone from this host,\n"
			       "and those not refreshed for 30 minutes. Live locks are listed and kept.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	struct strbuf err = {0};
	struct store *s;
	int r = store_open_full(store, STORE_NO_RECONCILE, &s, &err);
	if (r < 0) {
		_cleanup_free_ char *shown = cli_escape(store);
		errorf("cannot open store %s: %s", shown ? shown : "", err.buf ? err.buf : strerror(-r));
		sb_free(&err);
		return exit_code_for(r);
	}
	unsigned removed = 0;
	r = store_unlock(store_backend(s), all, &removed);
	struct shown sh = {now_ns(), 0};
	if (r == 0)
		r = store_lock_list(store_backend(s), show_lock, &sh);
	if (r < 0)
		errorf("cannot unlock %s: %s", store,
		       *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
	else
		printf("removed %u stale lock%s; %u held\n", removed, removed == 1 ? "" : "s", sh.live);
	store_close(s);
	sb_free(&err);
	return r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}
