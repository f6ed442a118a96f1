/* Unit tests for the store (format 2): init and open (not a store, another format, private
 * modes), backups written by the backup writer, and the catalog as a cache of the store:
 * reconciled with backups/ and packs/ on open, rebuilt from the store alone. */
#include "backup.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char root[64];

static char *at(const char *rel)
{
	static char buf[4][256];
	static int k;
	char *b = buf[k++ % 4];
	snprintf(b, 256, "%s/%s", root, rel);
	return b;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(text, f) >= 0);
	if (f)
		fclose(f);
}

static void test_init_and_open(void)
{
	struct strbuf err = {0};
	struct store *s = NULL;
	CHECK(store_open(at("nope"), NULL, &s, &err) == -ENOENT && !s);
	CHECK(mkdir(at("plain"), 0755) == 0);
	err.len = 0;
	CHECK(store_open(at("plain"), NULL, &s, &err) == -EMEDIUMTYPE);
	CHECK(err.buf && strstr(err.buf, "not a cassbackup store"));
	put_file(at("plain/x"), "x");
	CHECK(store_init(at("plain"), NULL, &err) == -EEXIST); /* not empty */
	umask(0);
	CHECK(store_init(at("s"), NULL, &err) == 0);
	umask(022);
	CHECK(mode_of(at("s")) == 0700 && mode_of(at("s/config")) == 0600);
	CHECK(mode_of(at("s/catalog.db")) != (mode_t)-1);
	CHECK(store_init(at("s"), NULL, &err) == -EEXIST);
	CHECK(store_open(at("s"), NULL, &s, &err) == 0 && s);
	CHECK(strlen(store_get_config(s)->id) == 32);
	store_close(s);

	/* another format, a config that is not one */
	CHECK(mkdir(at("other"), 0700) == 0);
	put_file(at("other/config"), "{\"store\": \"cassbackup\", \"format\": 3, \"id\": "
				     "\"0123456789abcdef0123456789abcdef\", \"created_ns\": 1}");
	err.len = 0;
	CHECK(store_open(at("other"), NULL, &s, &err) == -EPROTONOSUPPORT);
	CHECK(err.buf && strstr(err.buf, "format 3"));
	put_file(at("other/config"), "PK\x03\x04 not json");
	CHECK(store_open(at("other"), NULL, &s, &err) == -EMEDIUMTYPE);
	sb_free(&err);
}

/* One backup: a table with two files, one of which repeats the other's bytes. */
static void make_backup(const char *name, const char *data)
{
	struct backup_meta meta = {.name = name, .node = "n1", .cluster = "c", .snapshot_tag = "t",
				   .root_attr = {0750, 1, 2, 3}};
	struct backup_writer_opts opts = {.level = 3, .frame_size = 64u << 10};
	struct strbuf err = {0};
	backup_writer *w;
	struct store *s = NULL;
	int r = store_open(at("s"), NULL, &s, &err) ?: backup_writer_begin(s, &meta, &opts, &w, &err);
	CHECK(r == 0);
	if (r < 0) {
		fprintf(stderr, "begin: %s\n", err.buf);
		sb_free(&err);
		store_close(s);
		return;
	}
	struct backup_table t = {.keyspace = "shop", .table = "orders",
				 .table_id = "0123456789abcdef0123456789abcdef",
				 .dirname = "orders-0123456789abcdef0123456789abcdef",
				 .keyspace_attr = {0755, 1, 2, 3}, .table_attr = {0755, 1, 2, 3}};
	unsigned ti;
	CHECK(backup_writer_add_table(w, &t, &ti) == 0);
	struct backup_file f1 = {.name = "nb-1-big-Data.db", .size = strlen(data),
				 .attr = {0644, 1, 2, 3}, .source = "mem"};
	struct backup_file f2 = f1;
	f2.name = "nb-1-big-Digest.crc32";
	CHECK(backup_writer_add_buffer(w, ti, BACKUP_TABLE_DIR, &f1, data) == 0);
	CHECK(backup_writer_add_buffer(w, ti, BACKUP_TABLE_DIR, &f2, data) == 0);
	struct backup_summary sum;
	CHECK(backup_writer_commit(w, &sum) == 0);
	CHECK(sum.files == 2);
	backup_writer_free(w);
	store_close(s);
	sb_free(&err);
}

struct seen {
	char names[400];
	unsigned n, complete;
};

static int collect(void *ctx, const struct cb_backup_summary *b)
{
	struct seen *s = ctx;
	size_t len = strlen(s->names);
	snprintf(s->names + len, sizeof(s->names) - len, "%s%s", len ? "," : "", b->name);
	s->n++;
	s->complete += b->complete;
	return 0;
}

static struct seen listing(void)
{
	struct seen s = {{0}, 0, 0};
	struct store *st;
	struct strbuf err = {0};
	struct store_options o = {.flags = STORE_READONLY};
	CHECK(store_open(at("s"), &o, &st, &err) == 0);
	if (st)
		CHECK(catalog_list_backups(store_catalog(st), collect, &s) == 0);
	store_close(st);
	sb_free(&err);
	return s;
}

static void test_catalog_is_a_cache(void)
{
	make_backup("day1", "first day's bytes");
	make_backup("day2", "first day's bytes"); /* all deduplicated: no pack of its own */
	make_backup("day3", "new bytes on day three");
	CHECK(mode_of(at("s/backups/day1/n1.json")) == 0600);
	struct seen s = listing();
	CHECK(s.n == 3 && s.complete == 3 && !strcmp(s.names, "day1,day2,day3"));

	/* the catalog deleted: rebuilt from the store alone */
	CHECK(unlink(at("s/catalog.db")) == 0);
	unlink(at("s/catalog.db-wal"));
	unlink(at("s/catalog.db-shm"));
	s = listing();
	CHECK(s.n == 3 && s.complete == 3 && !strcmp(s.names, "day1,day2,day3"));

	/* a manifest removed (forget): the backup goes from the catalog on the next open */
	CHECK(unlink(at("s/backups/day2/n1.json")) == 0);
	s = listing();
	CHECK(s.n == 2 && !strcmp(s.names, "day1,day3"));

	/* a manifest that does not parse is skipped, not fatal */
	put_file(at("s/backups/broken.json"), "{\"format\": 2");
	s = listing();
	CHECK(s.n == 2);
	unlink(at("s/backups/broken.json"));

	/* a pack gone: the backups needing it are listed as incomplete */
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "for p in %s/s/packs/*/*.tar.zst; do "
		 "zstd -dc $p 2>/dev/null | grep -q 'new bytes' && rm $p; done", root);
	CHECK(system(cmd) >= 0);
	s = listing();
	CHECK(s.n == 2 && s.complete == 1);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/cb-test-store-XXXXXX");
	if (!mkdtemp(root))
		return 2;
	test_init_and_open();
	test_catalog_is_a_cache();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		failures++;
	if (failures) {
		fprintf(stderr, "test_store: %d checks failed\n", failures);
		return 1;
	}
	printf("test_store: all checks passed\n");
	return 0;
}
