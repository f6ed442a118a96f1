/* Unit tests for the store layout (store.c): init, open, the tmp pack lock, reclaiming what
 * dead writers left (whatever its size or age), commit and release. */
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int tmp_count(void)
{
	int n = 0;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "ls -A %s/s/tmp | wc -l", root);
	FILE *f = popen(cmd, "r");
	CHECK(f && fscanf(f, "%d", &n) == 1);
	pclose(f);
	return n;
}

static void test_init_and_open(void)
{
	catalog *c = (catalog *)1;
	CHECK(store_open(at("nope"), 0, &c) == -ENOENT && c == NULL);
	CHECK(mkdir(at("plain"), 0755) == 0);
	CHECK(store_open(at("plain"), 0, &c) == -EMEDIUMTYPE && c == NULL);
	CHECK(store_init(at("plain")) == 0); /* an existing empty directory may become a store */
	CHECK(store_open(at("plain"), 0, &c) == 0 && c != NULL);
	catalog_close(c);
	CHECK(store_init(at("plain")) == -EEXIST);
	CHECK(store_init(at("s")) == 0);
	CHECK(exists(at("s/packs")) && exists(at("s/tmp")) && exists(at("s/catalog.db")));
	int fd = open(at("s/catalog.db"), O_RDONLY);
	CHECK(fd >= 0);
	close(fd);
}

/* A writer's tmp file is locked from the moment it has a name; reclaim leaves it alone. */
static void test_lock(void)
{
	struct store_tmp t;
	CHECK(store_tmp_create(at("s"), &t) == 0);
	CHECK(t.fd >= 0 && exists(t.path) && strncmp(t.relpath, "packs/", 6) == 0);
	int other = open(t.path, O_RDONLY);
	CHECK(flock(other, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK);
	close(other);
	unsigned n = 99;
	CHECK(store_reclaim_tmp(at("s"), &n) == 0 && n == 0 && exists(t.path));
	store_tmp_release(&t, false); /* not committed: removed */
	CHECK(t.path == NULL && tmp_count() == 0);
}

/* Writers that died, with an empty and a written tmp file, and at once (a zero-byte file from a
 * backup that was deduplicating when killed is reclaimed without waiting). */
static void test_reclaim_dead_writers(void)
{
	for (int k = 0; k < 2; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct store_tmp t;
			if (store_tmp_create(at("s"), &t) < 0)
				_exit(1);
			if (k == 1 && write_full(t.fd, "some bytes", 10) < 0)
				_exit(1);
			_exit(0); /* dies holding it, as kill -9 would */
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK(tmp_count() == 2);
	/* a live writer's file next to them */
	struct store_tmp live;
	CHECK(store_tmp_create(at("s"), &live) == 0);
	unsigned n = 0;
	CHECK(store_reclaim_tmp(at("s"), &n) == 0 && n == 2);
	CHECK(tmp_count() == 1 && exists(live.path));
	store_tmp_release(&live, false);
	CHECK(tmp_count() == 0);
}

static void test_commit_and_release(void)
{
	struct store_tmp t;
	CHECK(store_tmp_create(at("s"), &t) == 0);
	CHECK(write_full(t.fd, "pack", 4) == 0);
	CHECK(store_tmp_commit(at("s"), &t) == 0);
	CHECK(t.renamed && !exists(t.path) && exists(t.final));
	unsigned n = 0; /* the lock moved with the file: reclaim sees nothing in tmp/ */
	CHECK(store_reclaim_tmp(at("s"), &n) == 0 && n == 0);
	char *final = strdup(t.final);
	store_tmp_release(&t, true);
	CHECK(exists(final));
	/* committed to packs/ but not registered: release removes it from there */
	CHECK(store_tmp_create(at("s"), &t) == 0);
	CHECK(store_tmp_commit(at("s"), &t) == 0);
	char *final2 = strdup(t.final);
	store_tmp_release(&t, false);
	CHECK(!exists(final2) && exists(final));
	free(final);
	free(final2);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/cb-store-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	test_init_and_open();
	test_lock();
	test_reclaim_dead_writers();
	test_commit_and_release();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK(system(cmd) == 0);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
