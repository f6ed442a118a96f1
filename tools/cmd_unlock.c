/* cassbackup unlock: removes stale store locks (lock.h): those of processes gone from this
 * host, and those the store saw no renewal of for the stale period (30 minutes), by the
 * store's own clock (the time it gives a probe this command writes), never this host's.
 * --all removes every lock: only when no cassbackup process works on the store, anywhere. */
#include "cli.h"
#include "lock.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct unlock_counts {
	unsigned held, live_removed;
};

/* "WHAT   exclusive|shared lock of COMMAND (pid N on HOST)", and why it is left. */
static void say_lock(const char *what, const struct lock_info *li)
{
	_cleanup_free_ char *host = cli_escape(li->host), *cmd = cli_escape(li->command);
	printf("%s %s lock of %s (pid %lld on %s)%s\n", what, li->exclusive ? "exclusive" : "shared",
	       cmd ? cmd : "", (long long)li->pid, host ? host : "",
	       li->pending_write ? ", left until it lapses: a write of its failed without an answer" : "");
}

static int show_lock(void *ctx, const struct lock_info *li)
{
	say_lock("held  ", li);
	((struct unlock_counts *)ctx)->held++;
	return 0;
}

/* --all removed a lock that is not stale: its process may be at work, and is told so at its
 * next check (it commits nothing). */
static void show_live_removed(void *ctx, const struct lock_info *li)
{
	say_lock("removed live", li);
	((struct unlock_counts *)ctx)->live_removed++;
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
			       "and those the store saw no renewal of for 30 minutes (by the store's\n"
			       "clock, not this host's). Live locks are listed and kept.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	struct store *s;
	rc = cli_store_open(store, STORE_NO_RECONCILE, &s);
	if (rc)
		return rc;
	unsigned removed = 0;
	struct unlock_counts n = {0};
	int r = store_unlock(store_backend(s), all, &removed, show_lock, show_live_removed, &n);
	unsigned stale = removed - n.live_removed;
	if (r < 0)
		errorf("cannot unlock %s: %s", store,
		       r == -EROFS ? "the store is read-only"
		       : *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
	else if (n.live_removed)
		printf("removed %u stale lock%s and %u live one%s; %u held\n", stale, stale == 1 ? "" : "s",
		       n.live_removed, n.live_removed == 1 ? "" : "s", n.held);
	else
		printf("removed %u stale lock%s; %u held\n", removed, removed == 1 ? "" : "s", n.held);
	store_close(s);
	return r < 0 ? CB_EXIT_FAILED : CB_EXIT_OK;
}
