/* Unit tests of the local store backend (catalog/backend_local.c): atomic puts, private modes,
 * keys that cannot leave the store, symlinks never followed, uploads invisible until committed
 * and gone when their writer dies, listing, deletion, read-only stores. */
#include "backend.h"
#include "s3.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char root[256], outside[256];

static mode_t mode_of(const char *rel)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return lstat(p, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static int count_keys(void *ctx, const char *key, uint64_t size)
{
	(void)key;
	(void)size;
	(*(int *)ctx)++;
	return 0;
}

static int count_dir(const char *rel)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s/%s | wc -l) -eq 0", root, rel);
	return system(cmd) == 0 ? 0 : 1;
}

static void test_put_get(struct cb_backend *b)
{
	umask(0); /* modes must not depend on it */
	CHECK(cb_backend_put(b, "config", "{}", 2, 0) == 0);
	CHECK(cb_backend_put(b, "backups/n1.json", "abc", 3, 0) == 0);
	CHECK(mode_of("config") == 0600 && mode_of("backups") == 0700 && mode_of("tmp") == 0700);
	CHECK(mode_of("backups/n1.json") == 0600);
	char *d;
	size_t n;
	CHECK(cb_backend_get(b, "backups/n1.json", 100, &d, &n) == 0 && n == 3 && !strcmp(d, "abc"));
	free(d);
	CHECK(cb_backend_get(b, "backups/n1.json", 2, &d, &n) == -EFBIG);
	CHECK(cb_backend_get(b, "backups/none.json", 100, &d, &n) == -ENOENT);
	CHECK(cb_backend_put(b, "backups/n1.json", "replaced", 8, 0) == 0);
	uint64_t size = 0;
	CHECK(cb_backend_stat(b, "backups/n1.json", &size) == 0 && size == 8);
	int keys = 0;
	CHECK(cb_backend_list(b, "backups/", count_keys, &keys) == 0 && keys == 1);
	keys = 0;
	CHECK(cb_backend_list(b, "packs/", count_keys, &keys) == 0 && keys == 0);
	CHECK(cb_backend_delete(b, "backups/n1.json") == 0);
	CHECK(cb_backend_delete(b, "backups/n1.json") == -ENOENT);
	umask(022);
}

static void test_bad_keys(struct cb_backend *b)
{
	const char *bad[] = {"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "..",
			     "backups/../../x"};
	char *d;
	size_t n;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!cb_key_valid(bad[i]));
		CHECK(cb_backend_put(b, bad[i], "x", 1, 0) == -EINVAL);
		CHECK(cb_backend_get(b, bad[i], 10, &d, &n) == -EINVAL);
		CHECK(cb_backend_delete(b, bad[i]) == -EINVAL);
	}
	CHECK(cb_backend_list(b, "../", count_keys, NULL) == -EINVAL);
}

static void test_symlinks(struct cb_backend *b)
{
	char p[512], cmd[800];
	snprintf(p, sizeof(p), "%s/packs", root);
	CHECK(symlink(outside, p) == 0);
	snprintf(cmd, sizeof(cmd), "echo secret > %s/x", outside);
	CHECK(system(cmd) == 0);
	char *d = NULL;
	size_t n;
	CHECK(cb_backend_get(b, "packs/x", 100, &d, &n) < 0 && d == NULL);
	CHECK(cb_backend_put(b, "packs/y", "z", 1, 0) < 0);
	snprintf(p, sizeof(p), "%s/y", outside);
	CHECK(access(p, F_OK) < 0); /* nothing written outside the store */
	int keys = 0;
	CHECK(cb_backend_list(b, "", count_keys, &keys) == 0);
	CHECK(keys == 1); /* config only: the symlinked directory is not walked */
	snprintf(p, sizeof(p), "%s/packs", root);
	unlink(p);
}

static void test_uploads(struct cb_backend *b)
{
	struct cb_upload *u;
	CHECK(cb_backend_upload_begin(b, "packs/ab/ab01.tar.zst", 0, 0, &u) == 0);
	CHECK(cb_upload_write(u, "0123456789", 10) == 0 && cb_upload_size(u) == 10);
	uint64_t size;
	CHECK(cb_backend_stat(b, "packs/ab/ab01.tar.zst", &size) == -ENOENT);
	cb_upload_free(u); /* never committed */
	CHECK(cb_backend_stat(b, "packs/ab/ab01.tar.zst", &size) == -ENOENT);
	CHECK(count_dir("tmp") == 0);

	CHECK(cb_backend_upload_begin(b, "packs/ab/ab02.tar.zst", 0, 0, &u) == 0);
	CHECK(cb_upload_write(u, "abc", 3) == 0 && cb_upload_commit(u) == 0);
	CHECK(cb_upload_write(u, "more", 4) < 0);
	cb_upload_free(u);
	CHECK(cb_backend_stat(b, "packs/ab/ab02.tar.zst", &size) == 0 && size == 3);
	CHECK(mode_of("packs/ab") == 0700 && mode_of("packs/ab/ab02.tar.zst") == 0600);

	/* A writer killed mid-upload leaves nothing visible and nothing to reclaim. */
	pid_t pid = fork();
	if (pid == 0) {
		struct cb_upload *k;
		if (cb_backend_upload_begin(b, "packs/cd/cd01.tar.zst", 0, 0, &k) == 0)
			cb_upload_write(k, "partial", 7);
		_exit(0); /* as kill -9 would: no free, no commit */
	}
	int ws;
	waitpid(pid, &ws, 0);
	CHECK(cb_backend_stat(b, "packs/cd/cd01.tar.zst", &size) == -ENOENT);
	unsigned removed = 9;
	CHECK(cb_backend_reclaim(b, &removed) == 0 && removed == 0);
	CHECK(count_dir("tmp") == 0);
}

/* An exclusive upload (a pack, a manifest) goes from an unnamed file straight to its key: no
 * name ever appears in tmp/, so a writer killed at any point leaves nothing there (it used to
 * link under tmp/ and rename, and a kill in between left a file for the next command). And it
 * never replaces what is there. */
static void test_exclusive_uploads(struct cb_backend *b)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s/tmp", root);
	int in = inotify_init1(IN_NONBLOCK);
	CHECK(in >= 0 && inotify_add_watch(in, tmp, IN_CREATE | IN_MOVED_TO) >= 0);
	struct cb_upload *u;
	CHECK(cb_backend_upload_begin(b, "packs/ef/ef01.tar.zst", 0, CB_PUT_EXCLUSIVE, &u) == 0);
	CHECK(cb_upload_write(u, "pack", 4) == 0 && cb_upload_commit(u) == 0);
	cb_upload_free(u);
	CHECK(cb_backend_put(b, "backups/ex.json", "one", 3, CB_PUT_EXCLUSIVE) == 0);
	char ev[4096];
	CHECK(read(in, ev, sizeof(ev)) < 0 && errno == EAGAIN); /* nothing was named in tmp/ */
	close(in);
	uint64_t size;
	CHECK(cb_backend_stat(b, "packs/ef/ef01.tar.zst", &size) == 0 && size == 4);
	CHECK(cb_backend_put(b, "backups/ex.json", "other", 5, CB_PUT_EXCLUSIVE) == -EEXIST);
	CHECK(cb_backend_stat(b, "backups/ex.json", &size) == 0 && size == 3);
	CHECK(mode_of("backups/ex.json") == 0600 && count_dir("tmp") == 0);
	CHECK(cb_backend_delete(b, "backups/ex.json") == 0);
	CHECK(cb_backend_delete(b, "packs/ef/ef01.tar.zst") == 0);
}

/* CB_PUT_REPLACE_ONLY (a lock's renewal): a key that is gone stays gone (-ENOENT), one that
 * is there is replaced; nothing is left in tmp/ either way. */
static void test_replace_only(struct cb_backend *b)
{
	uint64_t size;
	CHECK(cb_backend_put(b, "locks/r.json", "renewed", 7, CB_PUT_REPLACE_ONLY) == -ENOENT);
	CHECK(cb_backend_stat(b, "locks/r.json", &size) == -ENOENT && count_dir("tmp") == 0);
	CHECK(cb_backend_put(b, "locks/r.json", "first", 5, 0) == 0);
	CHECK(cb_backend_put(b, "locks/r.json", "renewed", 7, CB_PUT_REPLACE_ONLY) == 0);
	char *buf = NULL;
	size_t len = 0;
	CHECK(cb_backend_get(b, "locks/r.json", 64, &buf, &len) == 0 && len == 7 && !memcmp(buf, "renewed", 7));
	free(buf);
	CHECK(mode_of("locks/r.json") == 0600 && count_dir("tmp") == 0);
	CHECK(cb_backend_delete(b, "locks/r.json") == 0);
}

/* S3 part sizes: the base size until an object needs more than 10,000 parts, then the
 * smallest multiple of 1 MiB that fits; S3's 5 MiB floor and 5 TiB / 5 GiB ceilings. */
static void test_s3_part_size(void)
{
	const uint64_t MiB = 1u << 20, GiB = MiB << 10;
	uint64_t p = 0;
	CHECK(cb_s3_part_size(0, 0, 0, &p) == 0 && p == 16 * MiB);
	CHECK(cb_s3_part_size(0, 0, 156 * GiB, &p) == 0 && p == 16 * MiB);
	CHECK(cb_s3_part_size(0, 0, 157 * GiB, &p) == 0 && p == 17 * MiB && p * 10000 >= 157 * GiB);
	CHECK(cb_s3_part_size(0, 0, 2048 * GiB, &p) == 0 && p * 10000 >= 2048 * GiB &&
	      (p - MiB) * 10000 < 2048 * GiB && p % MiB == 0);
	CHECK(cb_s3_part_size(MiB, 0, 10, &p) == 0 && p == 5 * MiB);      /* S3's floor */
	CHECK(cb_s3_part_size(MiB, MiB, 10, &p) == 0 && p == MiB);        /* a test server's */
	CHECK(cb_s3_part_size(MiB, MiB, 20 * GiB, &p) == 0 && p == 3 * MiB);
	CHECK(cb_s3_part_size(0, 0, 5ull * 1024 * GiB, &p) == 0 && p <= 5 * GiB);
	CHECK(cb_s3_part_size(0, 0, 5ull * 1024 * GiB + 1, &p) == -EFBIG);
	CHECK(cb_s3_part_size(6 * GiB, 0, 1, &p) == -EFBIG);
}

/* The times S3 gives (Last-Modified, a listing's LastModified), which staleness of locks is
 * judged by: exact, UTC, no locale; anything else is 0 (unknown), never a wrong time. */
static void test_s3_times(void)
{
	const int64_t s = 1000000000;
	CHECK(s3_http_date_ns("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777 * s);
	CHECK(s3_http_date_ns("Tue, 29 Feb 2028 23:59:59 GMT") == 1835481599 * s);
	CHECK(s3_iso8601_ns("1994-11-06T08:49:37.000Z") == 784111777 * s);
	CHECK(s3_iso8601_ns("1994-11-06T08:49:37.25Z") == 784111777 * s + 250000000);
	CHECK(s3_iso8601_ns("1994-11-06T08:49:37Z") == 784111777 * s);
	CHECK(s3_iso8601_ns("1994-11-06T08:49:37.123456789123Z") == 784111777 * s + 123456789);
	/* the same instant with a UTC offset (a credential_process's Expiration) */
	CHECK(s3_iso8601_ns("1994-11-06T10:49:37+02:00") == 784111777 * s);
	CHECK(s3_iso8601_ns("1994-11-06T10:49:37.5+0200") == 784111777 * s + 500000000);
	CHECK(s3_iso8601_ns("1994-11-06T03:49:37-05") == 784111777 * s);
	CHECK(s3_iso8601_ns("1994-11-06T08:49:37+00:00") == 784111777 * s);
	const char *bad_http[] = {"", "06 Nov 1994 08:49:37 GMT", "Sun, 06 Now 1994 08:49:37 GMT",
				  "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 25:49:37 GMT",
				  "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 ovD 1994 08:49:37 GMT"};
	for (size_t i = 0; i < sizeof(bad_http) / sizeof(bad_http[0]); i++)
		CHECK(s3_http_date_ns(bad_http[i]) == 0);
	const char *bad_iso[] = {"", "1994-11-06", "1994-11-06T08:49:37.000", "1994-11-06T08:49:37+2:00",
				 "1994-11-06T08:49:37+24:00", "1994-11-06T08:49:37+02:60", "1994-11-06T08:49:37+02:00Z",
				 "1994-13-06T08:49:37Z", "1994-11-06 08:49:37Z", "x994-11-06T08:49:37Z"};
	for (size_t i = 0; i < sizeof(bad_iso) / sizeof(bad_iso[0]); i++)
		CHECK(s3_iso8601_ns(bad_iso[i]) == 0);
}

static void test_reclaim_named(struct cb_backend *b)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/tmp/dead.upload", root);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	snprintf(p, sizeof(p), "%s/tmp/live.upload", root);
	int live = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(live >= 0 && write(live, "x", 1) == 1);
	pid_t pid = fork(); /* the holder must be another open file description */
	if (pid == 0) {
		int fd2 = open(p, O_RDONLY);
		flock(fd2, LOCK_EX);
		sleep(3);
		_exit(0);
	}
	usleep(300000);
	unsigned removed = 0;
	CHECK(cb_backend_reclaim(b, &removed) == 0 && removed == 1);
	CHECK(access(p, F_OK) == 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(live);
	CHECK(cb_backend_reclaim(b, &removed) == 0 && removed == 1);
}

static void test_readonly(void)
{
	struct cb_backend *ro;
	CHECK(cb_backend_open(root, CB_BACKEND_READONLY, NULL, &ro) == 0);
	CHECK(cb_backend_readonly(ro));
	CHECK(cb_backend_put(ro, "backups/x.json", "x", 1, 0) == -EROFS);
	CHECK(cb_backend_delete(ro, "config") == -EROFS);
	char *d;
	size_t n;
	CHECK(cb_backend_get(ro, "config", 10, &d, &n) == 0);
	free(d);
	cb_backend_close(ro);
}

/* A pack's fan-out directory goes with its last pack, so years of prunes leave no empty
 * directories; packs/ itself, and every other directory, stays. */
static void test_pack_dirs(struct cb_backend *b)
{
	CHECK(cb_backend_put(b, "backups/keep.json", "{}", 2, 0) == 0);
	CHECK(cb_backend_delete(b, "backups/keep.json") == 0);
	CHECK(mode_of("backups") == 0700);
	CHECK(cb_backend_put(b, "packs/cd/one.tar.zst", "1", 1, 0) == 0);
	CHECK(cb_backend_put(b, "packs/cd/two.tar.zst", "2", 1, 0) == 0);
	CHECK(cb_backend_delete(b, "packs/cd/one.tar.zst") == 0);
	CHECK(mode_of("packs/cd") == 0700);
	CHECK(cb_backend_delete(b, "packs/cd/two.tar.zst") == 0);
	CHECK(mode_of("packs/cd") == (mode_t)-1 && mode_of("packs") == 0700);
	CHECK(cb_backend_put(b, "packs/cd/three.tar.zst", "3", 1, 0) == 0); /* made again at need */
	CHECK(cb_backend_delete(b, "packs/cd/three.tar.zst") == 0);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/cb-test-backend-XXXXXX");
	snprintf(outside, sizeof(outside), "/tmp/cb-test-outside-XXXXXX");
	if (!mkdtemp(root) || !mkdtemp(outside))
		return 2;
	struct cb_backend *b;
	CHECK(cb_backend_open("/nonexistent/store", 0, NULL, &b) == -ENOENT);
	CHECK(cb_backend_open(root, 0, NULL, &b) == 0);
	test_put_get(b);
	test_bad_keys(b);
	test_symlinks(b);
	test_uploads(b);
	test_exclusive_uploads(b);
	test_replace_only(b);
	test_s3_part_size();
	test_s3_times();
	test_reclaim_named(b);
	test_pack_dirs(b);
	test_readonly();
	cb_backend_close(b);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", root, outside);
	if (system(cmd) != 0)
		failures++;
	if (failures) {
		fprintf(stderr, "test_backend: %d checks failed\n", failures);
		return 1;
	}
	printf("test_backend: all checks passed\n");
	return 0;
}
