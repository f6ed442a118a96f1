/* cassbackup: back up Cassandra snapshots into a store, and work with the backups. */
#include "config.h"
#include "cli.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cancel_requested;

void errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cassbackup: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int open_store(const char *root, int flags, catalog **out)
{
	int r = store_open(root, flags, out);
	if (r == -EMEDIUMTYPE)
		errorf("cannot open store %s: not a cassbackup store (no catalog.db; make one with "
		       "'cassbackup init --store %s')", root, root);
	else if (r < 0)
		errorf("cannot open store %s: %s", root, strerror(-r));
	return r;
}

static void on_signal(int sig)
{
	cancel_requested = sig;
}

void install_cancel_handlers(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

void progress_init(struct progress *p, const char *what, uint64_t total_bytes, uint64_t total_files)
{
	*p = (struct progress){
		.tty = isatty(STDERR_FILENO),
		.what = what,
		.total_bytes = total_bytes,
		.total_files = total_files,
		.start = mono_seconds(),
	};
}

static void progress_draw(struct progress *p, bool force)
{
	double now = mono_seconds();
	if (!p->tty || (!force && now - p->last < 0.2))
		return;
	p->last = now;
	char done[32], total[32], rate[32];
	format_bytes(p->done_bytes, done, sizeof(done));
	format_bytes(p->total_bytes, total, sizeof(total));
	double el = now - p->start;
	format_bytes(el > 0 ? (uint64_t)((double)p->done_bytes / el) : 0, rate, sizeof(rate));
	fprintf(stderr, "\r\033[K%s: %s / %s (%.0f%%), %llu / %llu files, %s/s", p->what, done, total,
		p->total_bytes ? 100.0 * (double)p->done_bytes / (double)p->total_bytes : 100.0,
		(unsigned long long)p->done_files, (unsigned long long)p->total_files, rate);
	fflush(stderr);
}

void progress_add(void *ctx, uint64_t bytes)
{
	struct progress *p = ctx;
	p->done_bytes += bytes;
	progress_draw(p, false);
}

void progress_file_done(struct progress *p)
{
	p->done_files++;
	progress_draw(p, false);
}

void progress_end(struct progress *p)
{
	if (p->tty && p->last > 0) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"store", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *store = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store = optarg; break;
		case 'h': printf("usage: cassbackup init --store DIR\n"); return 0;
		default: return 2;
		}
	}
	if (!store && optind < argc)
		store = argv[optind++];
	if (!store || optind < argc) {
		errorf("usage: cassbackup init --store DIR");
		return 2;
	}
	int r = store_init(store);
	if (r == -EEXIST) {
		errorf("cannot create store %s: directory is not empty", store);
		return 1;
	}
	if (r < 0) {
		errorf("cannot create store %s: %s", store, strerror(-r));
		return 1;
	}
	printf("created store %s\n", store);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cassbackup COMMAND [OPTIONS]\n"
		"\n"
		"commands:\n"
		"  init    --store DIR                      make an empty store\n"
		"  create  --store DIR --data-dir DIR --snapshot TAG [--name NAME] ...\n"
		"                                           back up a node's snapshot\n"
		"  list    --store DIR [--json]             list backups\n"
		"  verify  --store DIR (NAME... | --all)    read backups back and check them\n"
		"  restore --store DIR NAME --data-dir DIR  copy tables into live table directories\n"
		"  load    --store DIR NAME --hosts H1,H2   stream tables with sstableloader\n"
		"  validate-config                          check every path and program the config names\n"
		"\n"
		"\n"
		"--config FILE (anywhere on the line) reads defaults from FILE instead of\n"
		"" CONFIG_DEFAULT_PATH "; flags override it.\n"
		"'cassbackup COMMAND --help' tells more. Browse backups with mount.cassbackup.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	/* --config FILE may stand anywhere; take it out before the command parses its options. */
	const char *cfg = NULL;
	int n = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			cfg = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			cfg = argv[i] + 9;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	argv[argc] = NULL;
	struct strbuf cerr = {0};
	if (config_load(cfg ? cfg : CONFIG_DEFAULT_PATH, cfg != NULL, &cerr) < 0) {
		errorf("%s", cerr.buf);
		sb_free(&cerr);
		return 2;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("cassbackup %s\n", PACKAGE_VERSION);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{"init", cmd_init},
		{"create", cmd_create},
		{"list", cmd_list},
		{"verify", cmd_verify},
		{"restore", cmd_restore},
		{"load", cmd_load},
		{"validate-config", cmd_validate_config},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(cmd, cmds[i].name) == 0) {
			char prog[64];
			snprintf(prog, sizeof(prog), "cassbackup %s", cmd);
			argv[1] = prog;
			return cmds[i].fn(argc - 1, argv + 1);
		}
	}
	errorf("unknown command '%s' (try 'cassbackup --help')", cmd);
	return 2;
}
