/* Unit tests for restore's pure logic: sstable names, generations, the planner's decisions,
 * the names it accepts from a store, temp-file names and the data-directory test. */
#include "restore_plan.h"
#include "sstable.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static void test_sstable_names(void)
{
	size_t s, n;
	struct strbuf out = {0};
	CHECK(sstable_prefix_len("nb-12-big-Data.db") == strlen("nb-12-big-"));
	CHECK(sstable_numeric_generation("nb-12-big-Data.db") == 12);
	CHECK(sstable_with_generation("nb-12-big-Data.db", 4000000000ULL, &out) == 0 &&
	      !strcmp(out.buf, "nb-4000000000-big-Data.db"));
	/* 5.0 BTI and the 4.1+ time-based identifiers */
	const char *uuid = "da-3gy0_111j_2u8ka1z4k2vcw67ubc-bti-Data.db";
	CHECK(sstable_prefix_len(uuid) == strlen("da-3gy0_111j_2u8ka1z4k2vcw67ubc-bti-"));
	CHECK(sstable_generation(uuid, &s, &n) && s == 3 && n == 28);
	CHECK(sstable_numeric_generation(uuid) == 0);
	CHECK(sstable_with_generation(uuid, 7, &out) == 0 && !strcmp(out.buf, "da-7-bti-Data.db"));
	/* 2.x: ks-table-version-generation-Component */
	CHECK(sstable_prefix_len("ks-t-jb-7-Data.db") == strlen("ks-t-jb-7-"));
	CHECK(sstable_numeric_generation("ks-t-jb-7-Data.db") == 7);
	CHECK(sstable_with_generation("ks-t-jb-7-Data.db", 8, &out) == 0 && !strcmp(out.buf, "ks-t-jb-8-Data.db"));
	/* not sstables */
	CHECK(sstable_prefix_len("manifest.json") == 0);
	CHECK(sstable_prefix_len("schema.cql") == 0);
	CHECK(sstable_prefix_len("nb-1-xyz-Data.db") == 0);
	CHECK(sstable_prefix_len("NB-1-big-Data.db") == 0);
	CHECK(sstable_numeric_generation("nb-1234567890123456789-big-Data.db") == 0); /* > 18 digits */
	CHECK(sstable_with_generation("operator-notes.txt", 3, &out) == -EINVAL);
	sb_free(&out);
}

static void test_decide(void)
{
	/* sstables */
	CHECK(plan_decide(true, false, false, false) == U_COPY);
	CHECK(plan_decide(true, true, true, false) == U_PRESENT);
	CHECK(plan_decide(true, false, false, true) == U_PRESENT); /* restored before, renamed */
	CHECK(plan_decide(true, true, false, true) == U_PRESENT);
	CHECK(plan_decide(true, true, false, false) == U_RENAME);
	/* lone files: never renamed, never overwritten, never called present when different */
	CHECK(plan_decide(false, false, false, false) == U_COPY);
	CHECK(plan_decide(false, true, true, false) == U_PRESENT);
	CHECK(plan_decide(false, true, false, false) == U_CONFLICT);
	CHECK(plan_decide(false, true, false, true) == U_CONFLICT);
}

static void add(struct vlist *l, const char *dir, const char *name)
{
	l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = (struct vf){.dir = strdup(dir), .name = strdup(name)};
}

static void free_list(struct vlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].dir);
		free(l->v[i].name);
	}
	free(l->v);
	*l = (struct vlist){0};
}

static void test_group(void)
{
	struct vlist l = {0};
	add(&l, ".i_idx", "nb-2-big-TOC.txt");
	add(&l, "", "nb-2-big-Data.db");
	add(&l, "", "notes.txt");
	add(&l, ".i_idx", "nb-1-big-Data.db");
	add(&l, "", "nb-1-big-TOC.txt");
	add(&l, ".i_idx", "nb-2-big-Data.db");
	add(&l, "", "nb-1-big-Data.db");
	add(&l, "", "nb-10-big-Data.db");
	struct unit *u;
	size_t n;
	CHECK(plan_group_units(&l, &u, &n) == 0);
	CHECK(n == 6);
	if (n == 6) {
		const char *first[] = {"nb-1-big-Data.db", "nb-10-big-Data.db", "nb-2-big-Data.db", "notes.txt",
				       "nb-1-big-Data.db", "nb-2-big-Data.db"};
		const size_t count[] = {2, 1, 1, 1, 1, 2};
		for (size_t i = 0; i < n; i++) {
			CHECK(!strcmp(l.v[u[i].first].name, first[i]));
			CHECK(u[i].count == count[i]);
			CHECK(!strcmp(u[i].dir, i < 4 ? "" : ".i_idx"));
			CHECK(u[i].action == U_COPY);
		}
	}
	CHECK(plan_max_generation(&l, "") == 10 && plan_max_generation(&l, ".i_idx") == 2 &&
	      plan_max_generation(&l, ".none") == 0);
	plan_units_free(u, n);
	free_list(&l);
}

static int asked;
static uint64_t in_use(void *ctx, const char *dir)
{
	(void)ctx;
	asked++;
	return strlen(dir) * 10; /* "" 0, ".i" 20, ... */
}

static void test_gen_alloc(void)
{
	struct gen_alloc ga = {0};
	uint64_t g = 0;
	CHECK(gen_alloc_next(&ga, ".i", in_use, NULL, &g) == 0 && g == 21);
	CHECK(gen_alloc_next(&ga, ".i", in_use, NULL, &g) == 0 && g == 22);
	CHECK(gen_alloc_next(&ga, "", in_use, NULL, &g) == 0 && g == 1);
	CHECK(gen_alloc_next(&ga, ".i", in_use, NULL, &g) == 0 && g == 23);
	CHECK(asked == 2);
	gen_alloc_free(&ga);
	/* many directories, many sstables each: every (dir, generation) handed out once */
	char dir[32];
	int dup = 0;
	for (int d = 0; d < 200; d++) {
		snprintf(dir, sizeof(dir), ".i%d", d);
		uint64_t prev = 0;
		for (int k = 0; k < 150; k++) {
			CHECK(gen_alloc_next(&ga, dir, in_use, NULL, &g) == 0);
			dup += g <= prev || g <= strlen(dir) * 10;
			prev = g;
		}
	}
	CHECK(dup == 0 && ga.n == 200);
	gen_alloc_free(&ga);
}

static void test_names(void)
{
	struct vlist l = {0};
	struct strbuf why = {0};
	add(&l, "", "nb-1-big-Data.db");
	add(&l, ".idx", "nb-1-big-Data.db");
	CHECK(plan_check_names("ks", "t", &l, &why) == 0);
	const char *bad[] = {"", ".", "..", "../escape_ks", "a/b"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK(plan_check_names(bad[i], "t", &l, &why) == -EINVAL);
		CHECK(plan_check_names("ks", bad[i], &l, &why) == -EINVAL);
	}
	why.len = 0;
	CHECK(plan_check_names("ks", "..", &l, &why) == -EINVAL && strstr(why.buf, "table '..'"));
	const char *bad_dirs[] = {".", "..", "../../../escape_idx", "idx", ".a/b"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_dirs); i++) {
		free(l.v[1].dir);
		l.v[1].dir = strdup(bad_dirs[i]);
		CHECK(plan_check_names("ks", "t", &l, &why) == -EINVAL);
	}
	free(l.v[1].dir);
	l.v[1].dir = strdup(".idx");
	free(l.v[1].name);
	l.v[1].name = strdup("../x");
	CHECK(plan_check_names("ks", "t", &l, &why) == -EINVAL);
	name_for_msg("a\nb\\c", &why);
	CHECK(!strcmp(why.buf, "a\\x0ab\\x5cc"));
	sb_free(&why);
	free_list(&l);

	const char *hex = "0123456789abcdef0123456789abcdef";
	char buf[64];
	snprintf(buf, sizeof(buf), "orders-%s", hex);
	CHECK(plan_table_dir_matches(buf, "orders") && plan_table_dir_matches("orders", "orders"));
	CHECK(!plan_table_dir_matches(buf, "order") && !plan_table_dir_matches("orders-0123", "orders"));
	CHECK(plan_is_table_dir_name(buf) && !plan_is_table_dir_name("orders") && !plan_is_table_dir_name(hex));
	snprintf(buf, sizeof(buf), "orders-%.31sA", hex);
	CHECK(!plan_is_table_dir_name(buf));

	pid_t pid = 0;
	CHECK(plan_restore_temp_pid(".cassbackup-restore-4242-nb-1-big-Data.db", &pid) && pid == 4242);
	CHECK(plan_restore_temp_pid(".cassbackup-restore-4243-0", &pid) && pid == 4243);
	CHECK(!plan_restore_temp_pid(".cassbackup-restore--nb-1-big-Data.db", &pid));
	CHECK(!plan_restore_temp_pid(".cassbackup-restore-12x-nb", &pid));
	CHECK(!plan_restore_temp_pid("nb-1-big-Data.db", &pid));
}

static void test_data_dir(void)
{
	char root[] = "/tmp/test_restore_XXXXXX";
	CHECK(mkdtemp(root) != NULL);
	char p[512], q[512];
	struct strbuf why = {0};
	snprintf(p, sizeof(p), "%s/none", root);
	CHECK(plan_check_data_dir(p, &why) == -ENOENT);
	snprintf(p, sizeof(p), "%s/file", root);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	why.len = 0;
	CHECK(plan_check_data_dir(p, &why) == -ENOTDIR && !strcmp(why.buf, "not a directory"));
	snprintf(p, sizeof(p), "%s/data", root);
	mkdir(p, 0755);
	CHECK(plan_check_data_dir(p, &why) == -EINVAL); /* empty */
	snprintf(q, sizeof(q), "%s/data/ks", root);
	mkdir(q, 0755);
	snprintf(q, sizeof(q), "%s/data/ks/t", root); /* no id: not enough */
	mkdir(q, 0755);
	CHECK(plan_check_data_dir(p, &why) == -EINVAL);
	snprintf(q, sizeof(q), "%s/data/ks/t-0123456789abcdef0123456789abcdef", root);
	mkdir(q, 0755);
	CHECK(plan_check_data_dir(p, &why) == 0);
	snprintf(q, sizeof(q), "%s/data/ks", root); /* a keyspace directory */
	CHECK(plan_check_data_dir(q, &why) == -EINVAL);
	CHECK(plan_check_data_dir(root, &why) == -EINVAL); /* the data directory's parent */
	sb_free(&why);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	test_sstable_names();
	test_decide();
	test_group();
	test_gen_alloc();
	test_names();
	test_data_dir();
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
