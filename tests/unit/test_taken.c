/* Unit tests of the record of links taken from a backups/ directory (tools/taken.c): what a
 * chain may go on from, the records a manifest keeps, the file's round trip, and files it did
 * not write. */
#include "taken.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static struct links_taken state(const char *s)
{
	struct links_taken t;
	CHECK(taken_parse(s, &t) == 0);
	return t;
}

static void test_judge(void)
{
	struct manifest_links marked = {.dir = "/d/ks/t-1/backups", .left = "00000000000000aa 3 s:inc2/n1",
					.found = "00000000000000aa 2 s:inc1/n1"};
	struct manifest_links seen = {.dir = "/d/ks/t-1/backups", .left = "00000000000000aa 2 s:inc1/n1"};
	struct links_taken none = {0}, bad;
	CHECK(taken_record(&marked, 1, "/d/ks/t-1/backups") == &marked);
	CHECK(taken_record(&marked, 1, "/e/ks/t-1/backups") == NULL);
	CHECK(taken_judge(NULL, &none) == TAKEN_NEVER);
	struct links_taken t = state("00000000000000aa 1 s:x/n1");
	CHECK(taken_judge(NULL, &t) == TAKEN_SINCE); /* a directory marked, and no record of it */
	t = state("00000000000000aa 3 s:inc2/n1");
	CHECK(taken_judge(&marked, &t) == TAKEN_AS_LEFT);
	t = state("00000000000000aa 2 s:inc1/n1");
	CHECK(taken_judge(&marked, &t) == TAKEN_AS_FOUND); /* killed between commit and mark */
	CHECK(taken_judge(&seen, &t) == TAKEN_AS_LEFT);
	/* inc3 marked after inc2, then inc3 was forgotten: inc2's own mark is no longer there */
	t = state("00000000000000aa 4 s:inc3/n1");
	CHECK(taken_judge(&marked, &t) == TAKEN_SINCE);
	CHECK(taken_judge(&seen, &t) == TAKEN_SINCE);
	/* the same count, by another backup; another epoch (the file removed and written anew) */
	t = state("00000000000000aa 3 s:other/n1");
	CHECK(taken_judge(&marked, &t) == TAKEN_SINCE);
	t = state("00000000000000bb 3 s:inc2/n1");
	CHECK(taken_judge(&marked, &t) == TAKEN_SINCE);
	CHECK(taken_judge(&marked, &none) == TAKEN_SINCE); /* the file went: links may have too */
	/* a first removal: found the file made ready; removed by hand since, it does not read
	 * as found (another chain may have removed links meanwhile) */
	struct manifest_links first = {.dir = "/d/ks/t-1/backups", .left = "00000000000000cc 1 s:inc1/n1",
				       .found = "00000000000000cc 0 -"};
	t = state("00000000000000cc 0 -");
	CHECK(taken_judge(&first, &t) == TAKEN_AS_FOUND);
	CHECK(taken_judge(&first, &none) == TAKEN_SINCE);
	/* left with no file, made ready since by a backup killed before its commit: nothing
	 * removed */
	struct manifest_links nofile = {.dir = "/d/ks/t-1/backups", .left = "- 0 -"};
	CHECK(taken_judge(&nofile, &none) == TAKEN_AS_LEFT);
	CHECK(taken_judge(&nofile, &t) == TAKEN_AS_LEFT);
	t = state("00000000000000cc 1 s:x/n1");
	CHECK(taken_judge(&nofile, &t) == TAKEN_SINCE);
	CHECK(taken_parse("00000000000000cc 0 s:x", &bad) == -EBADMSG); /* N 0: nobody */
	/* a count that is not plain digits, or one more would wrap */
	CHECK(taken_parse("00000000000000cc -1 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("00000000000000cc +1 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("00000000000000cc 18446744073709551615 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("00000000000000cc 18446744073709551614 s:x", &bad) == 0);
	CHECK(taken_parse("00000000000000cc 99999999999999999999 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("v1 0 -", &bad) == -EBADMSG);
	CHECK(taken_parse("00000000000000aa 0 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("0aa 1 s:x", &bad) == -EBADMSG);
	CHECK(taken_parse("00000000000000aa 1 s:x more", &bad) == -EBADMSG);
	CHECK(taken_parse("v1 4 s:night/n1", &bad) == 0 && bad.n == 4); /* a format 1 file's */
}

static void test_records(void)
{
	char *dirs[] = {"/d/ks/t-1/backups", "/e/ks/t-1/backups"};
	struct links_taken found[2] = {{.n = 0}, state("00000000000000aa 2 s:inc1/n1")};
	struct taken_records r;
	CHECK(taken_records_make(dirs, found, 2, NULL, NULL, &r) == 0 && r.n == 2);
	CHECK(!strcmp(r.v[0].left, "- 0 -") && !r.v[0].found);
	CHECK(!strcmp(r.v[1].left, "00000000000000aa 2 s:inc1/n1") && !r.v[1].found);
	taken_records_free(&r);
	CHECK(taken_records_make(dirs, found, 2, "s:inc2/n1", NULL, &r) == 0);
	/* no file: one is made ready first ("EPOCH 0 -"), the epoch the mark keeps */
	struct links_taken f0 = state(r.v[0].found), l0 = state(r.v[0].left);
	CHECK(f0.n == 0 && !strcmp(f0.by, TAKEN_NOBODY) && strlen(f0.epoch) == 16 && r.readies[0]);
	CHECK(l0.n == 1 && !strcmp(l0.by, "s:inc2/n1") && !strcmp(l0.epoch, f0.epoch));
	CHECK(!r.readies[1]);
	CHECK(!strcmp(r.v[1].left, "00000000000000aa 3 s:inc2/n1"));
	CHECK(!strcmp(r.v[1].found, "00000000000000aa 2 s:inc1/n1"));
	taken_records_free(&r);
	/* only where the backup removes links: the others left as found, not made ready */
	bool removes[2] = {false, true};
	CHECK(taken_records_make(dirs, found, 2, "s:inc2/n1", removes, &r) == 0);
	CHECK(!r.marks[0] && !r.readies[0] && !strcmp(r.v[0].left, "- 0 -") && !r.v[0].found);
	CHECK(r.marks[1] && !strcmp(r.v[1].left, "00000000000000aa 3 s:inc2/n1"));
	taken_records_free(&r);
	char by[TAKEN_BY_MAX];
	CHECK(taken_by("0123abcd", "night/n1", by) == 0 && !strcmp(by, "0123abcd:night/n1"));
	CHECK(taken_by("id", "a b", by) == -ENAMETOOLONG); /* no blank: one word */
	CHECK(taken_records_make(dirs, found, 2, "a b", NULL, &r) == -ENAMETOOLONG);
	taken_records_free(&r);
}

static void write_file(const char *dir, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/" TAKEN_FILE, dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_file(void)
{
	char dir[] = "/tmp/test_taken.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	struct links_taken t, one, two, other;
	CHECK(taken_read(fd, &t) == 0 && t.n == 0 && !*t.by && !*t.epoch);
	/* made ready before the commit, marked after it */
	char *dirs[] = {dir};
	struct taken_records rec;
	const char *failed = NULL;
	CHECK(taken_records_make(dirs, &t, 1, "s:a", NULL, &rec) == 0 && rec.readies[0]);
	CHECK(taken_records_ready(&rec, &failed) == 0);
	CHECK(taken_read(fd, &t) == 0 && t.n == 0 && taken_same(&t, &rec.found[0]));
	CHECK(taken_records_mark(&rec, &failed) == 0);
	CHECK(taken_read(fd, &one) == 0 && one.n == 1 && taken_same(&one, &rec.left[0]));
	taken_records_free(&rec);
	CHECK(taken_mark(dir, &t, &one) == 0); /* made already */
	CHECK(taken_read(fd, &t) == 0 && taken_same(&t, &one));
	CHECK(taken_next(&one, "s:b", &two) == 0 && two.n == 2 && !strcmp(two.epoch, one.epoch));
	CHECK(taken_mark(dir, &one, &two) == 0);
	/* marking from a stale reading (another backup marked since): refused, nothing written */
	CHECK(taken_next(&one, "s:c", &other) == 0);
	CHECK(taken_mark(dir, &one, &other) == -EAGAIN);
	CHECK(taken_read(fd, &t) == 0 && taken_same(&t, &two));
	struct strbuf sb = {0};
	CHECK(taken_format(&two, &sb) == 0);
	struct links_taken back;
	CHECK(taken_parse(sb.buf, &back) == 0 && taken_same(&back, &two));
	sb_free(&sb);
	/* a file of format 1 reads as the state "v1 N CHAIN"; the next mark draws an epoch */
	write_file(dir, "cassbackup-taken 1 3 2 s:night/n1\n");
	CHECK(taken_read(fd, &t) == 0 && t.n == 3 && !strcmp(t.epoch, "v1") && !strcmp(t.by, "s:night/n1"));
	CHECK(taken_next(&t, "s:d", &other) == 0 && other.n == 4 && strlen(other.epoch) == 16);
	const char *bad[] = {"", "cassbackup-taken 2 3 s:b\n", "cassbackup-taken 3 00000000000000aa 3 s:b\n",
			     "cassbackup-taken 1 3 4 s:b\n", "cassbackup-taken 1 0 0 s:b\n",
			     "cassbackup-taken 2 00000000000000aa 3 s:b\nmore\n",
			     "cassbackup-taken 2 00000000000000aa x s:b\n",
			     "cassbackup-taken 2 00000000000000aa 3 s:b", /* no newline: cut short */
			     "cassbackup-taken 2 v1 3 s:b\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(dir, bad[i]);
		CHECK(taken_read(fd, &t) == -EBADMSG && t.n == 0);
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/" TAKEN_FILE, dir);
	unlink(path);
	close(fd);
	rmdir(dir);
}

int main(void)
{
	test_judge();
	test_records();
	test_file();
	if (failures) {
		fprintf(stderr, "test_taken: %d checks failed\n", failures);
		return 1;
	}
	printf("test_taken: all checks passed\n");
	return 0;
}
