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
	struct links_taken none = {0};
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
	struct links_taken bad;
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
	CHECK(taken_records_make(dirs, found, 2, NULL, &r) == 0 && r.n == 2);
	CHECK(!strcmp(r.v[0].left, "- 0 -") && !r.v[0].found);
	CHECK(!strcmp(r.v[1].left, "00000000000000aa 2 s:inc1/n1") && !r.v[1].found);
	taken_records_free(&r);
	CHECK(taken_records_make(dirs, found, 2, "s:inc2/n1", &r) == 0);
	CHECK(r.v[0].found && !strcmp(r.v[0].found, "- 0 -"));
	struct links_taken l0 = state(r.v[0].left);
	CHECK(l0.n == 1 && !strcmp(l0.by, "s:inc2/n1") && strlen(l0.epoch) == 16);
	CHECK(!strcmp(r.v[1].left, "00000000000000aa 3 s:inc2/n1"));
	CHECK(!strcmp(r.v[1].found, "00000000000000aa 2 s:inc1/n1"));
	taken_records_free(&r);
	char by[TAKEN_BY_MAX];
	CHECK(taken_by("0123abcd", "night/n1", by) == 0 && !strcmp(by, "0123abcd:night/n1"));
	CHECK(taken_by("id", "a b", by) == -ENAMETOOLONG); /* no blank: one word */
	CHECK(taken_records_make(dirs, found, 2, "a b", &r) == -ENAMETOOLONG);
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
	CHECK(taken_next(&t, "s:a", &one) == 0 && one.n == 1 && strlen(one.epoch) == 16);
	CHECK(taken_mark(dir, &t, &one) == 0);
	CHECK(taken_read(fd, &t) == 0 && taken_same(&t, &one));
	CHECK(taken_mark(dir, &(struct links_taken){0}, &one) == 0); /* made already */
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
