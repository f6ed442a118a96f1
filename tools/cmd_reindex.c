/* cassbackup reindex: rebuilds catalog.db from the store alone.
 *
 * The catalog is a cache of backups/ and of the packs' indexes. Under a shared lock, reindex
 * empties it and reads every manifest and every pack's index again, in place and in one
 * transaction (store_rebuild_catalog): a running mount or command reading the catalog sees
 * the old rows or the new. Each node keeps its row id (a mount's inode number) where the old
 * row was the same node, so walks inside a backup go on; with --renumber none does. (A
 * catalog that does not open at all is set aside and made anew by the store's open.) Then it
 * says what it found, and names every manifest and pack it could not take in.
 */
#include "cli.h"
#include "lock.h"
#include "packread.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct reindex {
	const char *store;
	struct store *s;
	struct store_lock *lock;
	struct reconcile_stats st;
	struct strv known; /* what the new catalog holds: backup names, then pack keys */
	size_t backups, packs;
	bool renumber;
};

/* Opens the store as its catalog is, takes a shared lock. */
static int plan(struct reindex *x)
{
	int rc = cli_store_open(x->store, STORE_NO_RECONCILE, &x->s);
	if (rc)
		return rc;
	return cli_store_lock(x->s, x->store, false, "reindex", 0, &x->lock) < 0 ? CB_EXIT_FAILED
										    : CLI_RUN;
}

static int on_backup(void *ctx, int64_t id, const char *name, uint64_t size, const char *version)
{
	(void)id;
	(void)size;
	(void)version;
	return strv_push(ctx, name);
}

static int on_pack(void *ctx, int64_t id, const char *path, uint64_t size)
{
	(void)id;
	(void)size;
	return strv_push(ctx, path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is s among v (sorted)? */
static bool known(const struct strv *v, const char *s)
{
	return v->n && bsearch(&s, v->v, v->n, sizeof(*v->v), cmp_str);
}

/* Why pack key could not be indexed, into why. */
/* Why pack key could not be indexed, into why; or true when it reads now (written while the
 * catalog was rebuilt). */
static bool pack_why(struct reindex *x, const char *key, char *why, size_t n)
{
	struct cb_io *io = NULL;
	struct pack_meta pm = {0};
	int r = cb_backend_open_read(store_backend(x->s), key, &io);
	bool reads = r == 0 && pack_meta_read(io, &pm, why, n) == 0;
	if (r < 0)
		snprintf(why, n, "%s", *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r));
	pack_meta_free(&pm);
	cb_io_close(io);
	return reads;
}

struct unindexed {
	struct reindex *x;
	unsigned n;
};

/* A manifest or pack in the store that the new catalog lacks: named, with why; one that reads
 * now was written while the catalog was rebuilt (a create or copy beside reindex): no failure,
 * the next command's reconcile takes it in. */
static int on_store_key(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	struct unindexed *u = ctx;
	struct reindex *x = u->x;
	char why[768] = "";
	bool reads;
	size_t n = strlen(key);
	if (!strncmp(key, "packs/", 6)) {
		if (n < 8 || strcmp(key + n - 8, ".tar.zst") || known(&x->known, key))
			return 0;
		int k = snprintf(why, sizeof(why), "%s: ", key);
		reads = pack_why(x, key, why + k, sizeof(why) - (size_t)k);
	} else {
		struct strbuf err = {0};
		struct manifest *m = NULL;
		char name[CB_REF_MAX];
		if (store_manifest_name(key, name) < 0 || known(&x->known, name))
			return 0;
		int r = store_read_manifest(x->s, name, &m, NULL, &err); /* err names the key */
		reads = r == 0;
		snprintf(why, sizeof(why), "%s", err.buf ? err.buf : strerror(-r));
		manifest_free(m);
		sb_free(&err);
	}
	_cleanup_free_ char *k = cli_escape(key), *w = cli_escape(why);
	if (reads) {
		printf("note: %s: written while the catalog was rebuilt; the next command takes it in\n",
		       k ? k : "");
		return 0;
	}
	printf("not indexed: %s\n", w ? w : "");
	u->n++;
	return 0;
}

static int execute(struct reindex *x)
{
	struct strbuf err = {0};
	catalog *cat = store_catalog(x->s);
	_cleanup_free_ char *shown = cli_escape(x->store);
	struct unindexed u = {x, 0};
	int r = store_rebuild_catalog(x->s, x->renumber, &x->st, &err);
	if (r == 0 && (r = catalog_backup_names(cat, on_backup, &x->known)) == 0)
		x->backups = x->known.n;
	if (r == 0 && (r = catalog_list_packs(cat, on_pack, &x->known)) == 0)
		x->packs = x->known.n - x->backups;
	if (r == 0) {
		printf("reindexed %s: %zu backup%s, %zu pack%s\n", shown ? shown : "", x->backups,
		       x->backups == 1 ? "" : "s", x->packs, x->packs == 1 ? "" : "s");
		fflush(stdout);
		if (x->known.n)
			qsort(x->known.v, x->known.n, sizeof(*x->known.v), cmp_str);
		r = cb_backend_list(store_backend(x->s), "backups/", on_store_key, &u) ?:
		    cb_backend_list(store_backend(x->s), "packs/", on_store_key, &u);
	}
	if (r < 0) {
		char why[512];
		errorf("cannot reindex %s: %s", shown ? shown : "",
		       err.buf ? err.buf : catalog_why(cat, r, why, sizeof(why)));
		sb_free(&err);
		return CB_EXIT_FAILED;
	}
	if (u.n)
		printf("%u manifest(s) or pack(s) could not be indexed ('cassbackup check' checks the "
		       "whole store)\n", u.n);
	return u.n ? CB_EXIT_FAILED : CB_EXIT_OK;
}

int cmd_reindex(int argc, char **argv)
{
	struct reindex x = {0};
	struct cli_option opts[] = {
		{.name = "store", .short_name = 's', .type = OPT_STRING, .value = &x.store, .arg = "DIR",
		 .help = "the store", .config_key = "store", .flags = OPT_REQUIRED},
		{.name = "renumber", .type = OPT_FLAG, .value = &x.renumber,
		 .help = "give every file and directory a new number (inode): running mounts look\n"
			 "every path up again"},
		{0},
	};
	struct cli_command cmd = {
		.name = "reindex",
		.description = "Rebuilds the catalog (catalog.db) from the store alone: every manifest in\n"
			       "backups/ and every pack's index. Names each manifest or pack it cannot take in\n"
			       "(exit 1 then). A running mount goes on: it sees the rebuilt catalog at once.",
		.options = opts,
	};
	int first, rc = cli_parse(&cmd, argc, argv, &first);
	if (rc != CLI_RUN)
		return rc;
	rc = plan(&x);
	if (rc == CLI_RUN)
		rc = execute(&x);
	store_lock_release(x.lock);
	store_close(x.s);
	reconcile_stats_free(&x.st);
	strv_free(&x.known);
	return rc;
}
