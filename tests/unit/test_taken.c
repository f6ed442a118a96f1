/* Unit tests of the record of links taken from a backups/ directory (tools/taken.c): what a
 * chain may go on from, the file's round trip, and files it did not write. */
#include "taken.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void test_allows(void)
{
	const char *a = "s1:night/n1", *b = "s1:one/n1";
	struct links_taken none = {0}, by_a = {.n = 3, .m = 2}, by_b = {.n = 3, .m = 3};
	snprintf(by_a.chain, sizeof(by_a.chain), "%s", a);
	snprintf(by_b.chain, sizeof(by_b.chain), "%s", b);
	CHECK(taken_allows(&none, 0, a));
	CHECK(!taken_allows(&none, 1, a)); /* the file went: links may have gone with it */
	CHECK(taken_allows(&by_a, 3, b)); /* nothing since what b recorded */
	CHECK(taken_allows(&by_a, 1, a)); /* a's own since 2 */
	CHECK(taken_allows(&by_a, 2, a));
	CHECK(!taken_allows(&by_a, 0, a)); /* removal 1 was another's */
	CHECK(!taken_allows(&by_a, 2, b));
	CHECK(!taken_allows(&by_b, 1, b)); /* b took over at 3: 2 was another's */
	CHECK(taken_allows(&by_b, 2, b));
	CHECK(!taken_allows(&by_a, 4, a)); /* a count that went back */
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
	struct links_taken t, now, again;
	CHECK(taken_read(fd, &t) == 0 && t.n == 0 && !*t.chain);
	char chain[TAKEN_CHAIN_MAX];
	CHECK(taken_chain("0123abcd", "night/n1", chain) == 0 && !strcmp(chain, "0123abcd:night/n1"));
	CHECK(taken_chain("id", "a b", chain) == -ENAMETOOLONG); /* no blank: one word */
	CHECK(taken_mark(dir, &t, "s:a", &now) == 0 && now.n == 1 && now.m == 1);
	CHECK(taken_read(fd, &again) == 0 && again.n == 1 && again.m == 1 && !strcmp(again.chain, "s:a"));
	CHECK(taken_mark(dir, &again, "s:a", &now) == 0 && now.n == 2 && now.m == 1);
	CHECK(taken_mark(dir, &now, "s:b", &again) == 0 && again.n == 3 && again.m == 3);
	CHECK(taken_read(fd, &t) == 0 && t.n == 3 && t.m == 3 && !strcmp(t.chain, "s:b"));
	/* marking from a stale reading (another backup marked since): refused, nothing written */
	CHECK(taken_mark(dir, &now, "s:a", &again) == -EAGAIN);
	CHECK(taken_read(fd, &t) == 0 && t.n == 3 && !strcmp(t.chain, "s:b"));
	const char *bad[] = {"", "cassbackup-taken 1 3 3\n", "cassbackup-taken 2 3 3 s:b\n",
			     "cassbackup-taken 1 3 4 s:b\n", "cassbackup-taken 1 0 0 s:b\n",
			     "cassbackup-taken 1 3 3 s:b\nmore\n", "cassbackup-taken 1 x 3 s:b\n"};
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
	test_allows();
	test_file();
	if (failures) {
		fprintf(stderr, "test_taken: %d checks failed\n", failures);
		return 1;
	}
	printf("test_taken: all checks passed\n");
	return 0;
}
