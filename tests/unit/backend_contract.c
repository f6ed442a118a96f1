/* The backend contract (catalog/backend.h), run against any store location:
 *   backend_contract /tmp/dir            (a meson unit test)
 *   backend_contract s3://bucket/prefix  (tests/test_s3.py, against S3 servers on loopback)
 * S3 settings come from the environment as cassbackup reads them (AWS_ENDPOINT_URL, ...). */
#include "backend.h"
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static int collect(void *ctx, const char *key, uint64_t size)
{
	struct strbuf *sb = ctx;
	return sb_printf(sb, "%s=%llu;", key, (unsigned long long)size);
}

static void test_small_objects(struct cb_backend *b)
{
	char *d = NULL;
	size_t n = 0;
	uint64_t size = 0;
	CHECK(cb_backend_put(b, "backups/a.json", "alpha", 5, 0) == 0);
	CHECK(cb_backend_put(b, "backups/b c.json", "", 0, 0) == 0); /* a space and an empty body */
	CHECK(cb_backend_get(b, "backups/a.json", 100, &d, &n) == 0 && n == 5 && !memcmp(d, "alpha", 5));
	free(d);
	CHECK(cb_backend_get(b, "backups/b c.json", 100, &d, &n) == 0 && n == 0 && d && !*d);
	free(d);
	CHECK(cb_backend_get(b, "backups/a.json", 3, &d, &n) == -EFBIG && d == NULL);
	CHECK(cb_backend_get(b, "backups/missing.json", 100, &d, &n) == -ENOENT);
	CHECK(cb_backend_stat(b, "backups/a.json", &size) == 0 && size == 5);
	CHECK(cb_backend_stat(b, "backups/missing.json", &size) == -ENOENT);
	CHECK(cb_backend_put(b, "backups/a.json", "replaced", 8, 0) == 0);
	CHECK(cb_backend_stat(b, "backups/a.json", &size) == 0 && size == 8);
	struct strbuf sb = {0};
	CHECK(cb_backend_list(b, "backups/", collect, &sb) == 0);
	CHECK(sb.buf && strstr(sb.buf, "backups/a.json=8;") && strstr(sb.buf, "backups/b c.json=0;"));
	sb_free(&sb);
	CHECK(cb_backend_delete(b, "backups/a.json") == 0);
	CHECK(cb_backend_delete(b, "backups/a.json") == -ENOENT);
	CHECK(cb_backend_delete(b, "backups/b c.json") == 0);
	CHECK(cb_backend_list(b, "backups/", collect, &sb) == 0 && sb.len == 0);
	sb_free(&sb);
}

/* CB_PUT_EXCLUSIVE never replaces: a manifest or a pack, once there, stays as written. */
static void test_exclusive(struct cb_backend *b)
{
	char *d = NULL;
	size_t n = 0;
	uint64_t size = 0;
	CHECK(cb_backend_put(b, "backups/ex.json", "first", 5, CB_PUT_EXCLUSIVE) == 0);
	CHECK(cb_backend_put(b, "backups/ex.json", "second", 6, CB_PUT_EXCLUSIVE) == -EEXIST);
	CHECK(cb_backend_get(b, "backups/ex.json", 100, &d, &n) == 0 && n == 5 && !memcmp(d, "first", 5));
	free(d);
	struct cb_upload *u;
	static char big[(6u << 20) + 7]; /* a multipart upload on S3 */
	CHECK(cb_backend_upload_begin(b, "backups/ex.json", sizeof(big), CB_PUT_EXCLUSIVE, &u) == 0);
	CHECK(cb_upload_write(u, big, sizeof(big)) == 0);
	CHECK(cb_upload_commit(u) == -EEXIST);
	cb_upload_free(u);
	CHECK(cb_backend_stat(b, "backups/ex.json", &size) == 0 && size == 5);
	CHECK(cb_backend_upload_begin(b, "packs/ef/ex.tar.zst", sizeof(big), CB_PUT_EXCLUSIVE, &u) == 0);
	CHECK(cb_upload_write(u, big, sizeof(big)) == 0 && cb_upload_commit(u) == 0);
	cb_upload_free(u);
	CHECK(cb_backend_stat(b, "packs/ef/ex.tar.zst", &size) == 0 && size == sizeof(big));
	CHECK(cb_backend_delete(b, "packs/ef/ex.tar.zst") == 0);
	CHECK(cb_backend_delete(b, "backups/ex.json") == 0);
}

static void test_many_keys(struct cb_backend *b)
{
	/* More than one page of a listing on S3 servers that page at 1000. */
	char key[64];
	int ok = 1;
	for (int i = 0; i < 1005 && ok; i++) {
		snprintf(key, sizeof(key), "locks/%04d.json", i);
		ok = cb_backend_put(b, key, "x", 1, 0) == 0;
	}
	CHECK(ok);
	struct strbuf sb = {0};
	CHECK(cb_backend_list(b, "locks/", collect, &sb) == 0);
	int count = 0;
	for (const char *p = sb.buf; p && (p = strchr(p, ';')); p++)
		count++;
	CHECK(count == 1005);
	sb_free(&sb);
	/* deleted in batches (1,000 a DeleteObjects on S3), with two keys that are not there */
	static char keys[1007][32];
	const char *kp[1007];
	int results[1007];
	for (int i = 0; i < 1007; i++) {
		snprintf(keys[i], sizeof(keys[i]), "locks/%04d.json", i);
		kp[i] = keys[i];
		results[i] = 1;
	}
	CHECK(cb_backend_delete_many(b, kp, 1007, results) == 0);
	int done = 0;
	for (int i = 0; i < 1007; i++)
		done += results[i] == 0;
	CHECK(done == 1007);
	sb.len = 0;
	CHECK(cb_backend_list(b, "locks/", collect, &sb) == 0);
	CHECK(sb.len == 0);
	sb_free(&sb);
	const char *bad[] = {"locks/ok.json", "../escape"};
	CHECK(cb_backend_delete_many(b, bad, 2, results) == -EINVAL);
}

struct found {
	const char *key;
	struct cb_object_info info;
	int n;
};

static int find_info(void *ctx, const char *key, const struct cb_object_info *info)
{
	struct found *f = ctx;
	if (!strcmp(key, f->key)) {
		f->info = *info;
		f->n++;
	}
	return 0;
}

/* The store's modification time (lock.h judges staleness by it): given by stat and list alike
 * (a HEAD says it to the second, a listing may say more), moved on by a rewrite. On loopback
 * servers the store's clock is this host's, which bounds it here. */
static void test_mtime(struct cb_backend *b)
{
	const int64_t s = 1000000000;
	struct cb_object_info i1, i2;
	int64_t before = now_ns();
	CHECK(cb_backend_put(b, "locks/m.json", "one", 3, 0) == 0);
	CHECK(cb_backend_stat_info(b, "locks/m.json", &i1) == 0 && i1.size == 3);
	CHECK(i1.mtime_ns > before - 60 * s && i1.mtime_ns < now_ns() + 60 * s);
	struct found f = {.key = "locks/m.json"};
	CHECK(cb_backend_list_info(b, "locks/", find_info, &f) == 0 && f.n == 1 && f.info.size == 3);
	CHECK(f.info.mtime_ns - i1.mtime_ns <= s && i1.mtime_ns - f.info.mtime_ns <= s);
	struct timespec pause = {1, 200000000}; /* past the next whole second */
	nanosleep(&pause, NULL);
	CHECK(cb_backend_put(b, "locks/m.json", "two!", 4, 0) == 0);
	CHECK(cb_backend_stat_info(b, "locks/m.json", &i2) == 0 && i2.size == 4);
	CHECK(i2.mtime_ns > i1.mtime_ns);
	int64_t listed = f.info.mtime_ns;
	f.n = 0;
	CHECK(cb_backend_list_info(b, "locks/", find_info, &f) == 0 && f.n == 1 && f.info.size == 4);
	CHECK(f.info.mtime_ns > listed);
	CHECK(cb_backend_stat_info(b, "locks/missing.json", &i2) == -ENOENT);
	CHECK(cb_backend_delete(b, "locks/m.json") == 0);
}

static unsigned char *pattern(size_t n)
{
	unsigned char *p = malloc(n);
	for (size_t i = 0; p && i < n; i++)
		p[i] = (unsigned char)((i * 2654435761u) >> 13);
	return p;
}

static void test_large_upload(struct cb_backend *b, size_t total)
{
	unsigned char *data = pattern(total);
	struct cb_upload *u;
	CHECK(cb_backend_upload_begin(b, "packs/ab/ab00.tar.zst", 0, 0, &u) == 0);
	for (size_t off = 0; off < total; off += 777777) {
		size_t n = total - off < 777777 ? total - off : 777777;
		CHECK(cb_upload_write(u, data + off, n) == 0);
	}
	uint64_t size;
	CHECK(cb_backend_stat(b, "packs/ab/ab00.tar.zst", &size) == -ENOENT); /* not yet */
	CHECK(cb_upload_commit(u) == 0);
	cb_upload_free(u);
	CHECK(cb_backend_stat(b, "packs/ab/ab00.tar.zst", &size) == 0 && size == total);
	struct cb_io *io;
	CHECK(cb_backend_open_read(b, "packs/ab/ab00.tar.zst", &io) == 0);
	if (io) {
		unsigned char buf[70000];
		uint64_t offs[] = {0, 5 << 20, (5 << 20) - 100, total - 1000, total - 10};
		for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			if (offs[i] >= total)
				continue;
			ssize_t got = cb_io_pread(io, buf, sizeof(buf), offs[i]);
			size_t want = total - offs[i] < sizeof(buf) ? total - offs[i] : sizeof(buf);
			CHECK(got == (ssize_t)want && !memcmp(buf, data + offs[i], want));
		}
		CHECK(cb_io_pread(io, buf, 10, total) == 0);
		cb_io_close(io);
	}
	/* Abandoned: nothing visible. */
	CHECK(cb_backend_upload_begin(b, "packs/cd/cd00.tar.zst", 0, 0, &u) == 0);
	CHECK(cb_upload_write(u, data, total) == 0);
	cb_upload_free(u);
	CHECK(cb_backend_stat(b, "packs/cd/cd00.tar.zst", &size) == -ENOENT);
	CHECK(cb_backend_delete(b, "packs/ab/ab00.tar.zst") == 0);
	free(data);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* LOCATION: an S3 location, used as it is, or a local directory under which the contract
 * makes a store of its own (backend-contract-XXXXXX, removed after): two runs at once, or a
 * run beside anything else in that directory, must not see each other's objects. */
int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: backend_contract LOCATION\n");
		return 2;
	}
	char own[PATH_MAX];
	const char *loc = argv[1];
	if (!cb_location_is_remote(loc)) {
		snprintf(own, sizeof(own), "%s/backend-contract-XXXXXX", loc);
		if (!mkdtemp(own)) {
			fprintf(stderr, "backend_contract: cannot make a directory under %s: %s\n", loc,
				strerror(errno));
			return 2;
		}
		loc = own;
	}
	char **strings = NULL;
	struct cb_s3_options o = {.part_size = 5u << 20, .parallel = 3, .retries = 3};
	if (cb_s3_options_resolve(&o, NULL, &strings) < 0)
		return 2;
	struct cb_backend *b;
	int r = cb_backend_open(loc, 0, &o, &b);
	if (r < 0) {
		fprintf(stderr, "cannot open %s: %s %s\n", loc, strerror(-r), cb_backend_last_error());
		return 1;
	}
	test_small_objects(b);
	test_exclusive(b);
	test_mtime(b);
	test_many_keys(b);
	test_large_upload(b, (12u << 20) + 12345); /* three parts, the last short */
	test_large_upload(b, 1000);                /* one PUT */
	unsigned removed;
	CHECK(cb_backend_reclaim(b, &removed) == 0);
	struct cb_backend *ro;
	CHECK(cb_backend_open(loc, CB_BACKEND_READONLY, &o, &ro) == 0);
	CHECK(cb_backend_put(ro, "backups/x.json", "x", 1, 0) == -EROFS);
	cb_backend_close(ro);
	cb_backend_close(b);
	for (size_t i = 0; strings && strings[i]; i++)
		free(strings[i]);
	free(strings);
	if (failures) {
		fprintf(stderr, "backend_contract %s: %d checks failed (last backend error: %s)\n",
			loc, failures, cb_backend_last_error());
		return 1;
	}
	printf("backend_contract %s: all checks passed\n", loc);
	if (loc == own)
		nftw(own, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
