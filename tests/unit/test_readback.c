/* Unit tests for reading a file of a backup back from the store (readback.c), on real packs
 * written by the store's writer: a file read back right (in chunks, in order, to the sink), a
 * damaged frame, bytes that differ from the expected SHA-256, a missing pack, a location beyond
 * the pack, a sink that fails, a cancel, and a copy on disk. */
#include "readback.h"
#include "packread.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "storefix.h"

#define BIG ((5u << 20) / 2) /* 2.5 MiB: 3 chunks, 40 frames of 64 KiB */
#define SMALL 5000

static unsigned char big[BIG], other[BIG], small[SMALL];
static const char zero[1];

/* A sink that keeps what it is given, checking that it comes in order in bounded chunks. */
struct got {
	unsigned char *buf;
	size_t cap, len;
	unsigned chunks;
	bool oversized;
	int fail_at; /* the chunk (1-based) to fail with -ENOSPC; 0: none */
};

static int keep(void *ctx, const void *data, size_t n)
{
	struct got *g = ctx;
	g->chunks++;
	if (g->fail_at && (int)g->chunks == g->fail_at)
		return -ENOSPC;
	g->oversized |= n == 0 || n > READBACK_CHUNK || g->len + n > g->cap;
	if (!g->oversized)
		memcpy(g->buf + g->len, data, n);
	g->len += n;
	return 0;
}

static char root[64], dir[128];

/* A store holding one backup with the big file, another of the same size, a small one and an
 * empty one. */
static void make_store(void)
{
	CHECK(fix_store(root) == 0);
	snprintf(dir, sizeof(dir), "%s/s", root);
	struct fix_file f[] = {
		{"nb-1-big-Data.db", big, BIG},
		{"nb-1-big-Index.db", other, BIG},
		{"nb-1-big-Digest.crc32", small, SMALL},
		{"nb-1-big-Filter.db", zero, 0},
	};
	CHECK(fix_backup(dir, "day1", f, 4) == 0);
}

static struct store *open_store(void)
{
	struct store *s = NULL;
	struct strbuf err = {0};
	int r = store_open(dir, NULL, &s, &err);
	CHECK(r == 0);
	if (r < 0)
		fprintf(stderr, "store_open: %s\n", err.buf ? err.buf : "");
	sb_free(&err);
	return s;
}

/* Every content read back whole, in order, in chunks of at most READBACK_CHUNK, and the same
 * readback reused from one content to the next. */
static void test_read_back_right(void)
{
	make_store();
	struct store *s = open_store();
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0 && rb);
	const struct {
		const void *data;
		size_t size;
		unsigned chunks;
	} c[] = {{big, BIG, 3}, {small, SMALL, 1}, {zero, 0, 0}, {other, BIG, 3}};
	for (size_t i = 0; rb && i < ARRAY_SIZE(c); i++) {
		unsigned char sha[32];
		struct cb_blob_loc loc;
		CHECK(fix_locate(s, c[i].data, c[i].size, sha, &loc) == 0);
		struct got g = {.buf = malloc(BIG), .cap = BIG};
		struct readback_result res;
		CHECK(readback_pack(rb, &loc, c[i].size, sha, keep, &g, &res) == 0);
		CHECK(res.step == READBACK_OK && !res.damaged && !res.why[0]);
		CHECK(res.bytes == c[i].size && g.len == c[i].size && g.chunks == c[i].chunks);
		CHECK(!g.oversized && (c[i].size == 0 || !memcmp(g.buf, c[i].data, c[i].size)));
		CHECK(!memcmp(res.sha256, sha, 32));
		/* no sink: checked all the same */
		CHECK(readback_pack(rb, &loc, c[i].size, sha, NULL, NULL, &res) == 0);
		CHECK(res.step == READBACK_OK && res.bytes == c[i].size);
		free(g.buf);
	}
	readback_free(rb);
	readback_free(NULL);
	store_close(s);
	fix_remove(root);
}

/* The catalog pointing at other bytes of the same size (a stale or planted row): read whole,
 * handed to the sink, and refused by their SHA-256; the next read is not upset by it. */
static void test_bytes_differ(void)
{
	make_store();
	struct store *s = open_store();
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	unsigned char want[32], sha_other[32];
	struct cb_blob_loc loc_big, loc_other;
	CHECK(fix_locate(s, big, BIG, want, &loc_big) == 0);
	CHECK(fix_locate(s, other, BIG, sha_other, &loc_other) == 0);
	struct got g = {.buf = malloc(BIG), .cap = BIG};
	struct readback_result res;
	int r = readback_pack(rb, &loc_other, BIG, want, keep, &g, &res);
	CHECK(r == READBACK_EDIFFERS && r == -EILSEQ);
	CHECK(res.step == READBACK_DIFFERS && res.damaged);
	CHECK(res.bytes == BIG && g.len == BIG && !memcmp(g.buf, other, BIG));
	CHECK(!memcmp(res.sha256, sha_other, 32));
	CHECK(strstr(res.why, loc_other.pack_path) && strstr(res.why, "differ from the SHA-256"));
	/* the hash starts afresh: the right content reads back right */
	CHECK(readback_pack(rb, &loc_big, BIG, want, NULL, NULL, &res) == 0 && res.step == READBACK_OK);
	free(g.buf);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* One frame of the big file damaged on disk: its checksum fails the read there, with the pack
 * named; the chunks before it were handed out, and a content in other frames reads right. */
static void test_damaged_frame(void)
{
	make_store();
	unsigned char sha[32], sha_small[32];
	struct cb_blob_loc loc, loc_small;
	struct store *s = open_store();
	CHECK(fix_locate(s, big, BIG, sha, &loc) == 0);
	CHECK(fix_locate(s, small, SMALL, sha_small, &loc_small) == 0);
	store_close(s);
	/* in the second chunk: 1 MiB + 300 KiB into the file */
	CHECK(fix_damage_frame(fix_pack_file(dir, &loc), loc.offset + (1u << 20) + (300u << 10)) == 0);

	s = open_store(); /* a pack cache that never saw the frame whole */
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	struct got g = {.buf = malloc(BIG), .cap = BIG};
	struct readback_result res;
	CHECK(readback_pack(rb, &loc, BIG, sha, keep, &g, &res) == -EIO);
	CHECK(res.step == READBACK_SOURCE && res.damaged);
	CHECK(g.len == READBACK_CHUNK && res.bytes == READBACK_CHUNK);
	CHECK(!memcmp(g.buf, big, READBACK_CHUNK));
	CHECK(strstr(res.why, loc.pack_path) && strstr(res.why, pack_cache_strerror(-EIO)));
	/* damage stays where it is */
	CHECK(readback_pack(rb, &loc_small, SMALL, sha_small, NULL, NULL, &res) == 0);
	free(g.buf);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* The pack gone after the catalog located the bytes in it (a prune, a lost disk). */
static void test_missing_pack(void)
{
	make_store();
	struct store *s = open_store();
	unsigned char sha[32];
	struct cb_blob_loc loc;
	CHECK(fix_locate(s, small, SMALL, sha, &loc) == 0);
	CHECK(unlink(fix_pack_file(dir, &loc)) == 0);
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	struct got g = {.buf = malloc(SMALL), .cap = SMALL};
	struct readback_result res;
	CHECK(readback_pack(rb, &loc, SMALL, sha, keep, &g, &res) == -ENOENT);
	CHECK(res.step == READBACK_SOURCE && res.damaged && g.len == 0 && res.bytes == 0);
	CHECK(strstr(res.why, loc.pack_path) && strstr(res.why, "pack file is missing"));
	free(g.buf);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* A location past the end of its pack's stream (a catalog and a pack that disagree). */
static void test_beyond_the_pack(void)
{
	make_store();
	struct store *s = open_store();
	unsigned char sha[32];
	struct cb_blob_loc loc;
	CHECK(fix_locate(s, small, SMALL, sha, &loc) == 0);
	loc.offset += 1ull << 40;
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	struct readback_result res;
	CHECK(readback_pack(rb, &loc, SMALL, sha, NULL, NULL, &res) == -ERANGE);
	CHECK(res.step == READBACK_SOURCE && res.damaged && strstr(res.why, loc.pack_path));
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* A sink that fails stops the read with its code: not the backup's fault. */
static void test_sink_fails(void)
{
	make_store();
	struct store *s = open_store();
	unsigned char sha[32];
	struct cb_blob_loc loc;
	CHECK(fix_locate(s, big, BIG, sha, &loc) == 0);
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	struct got g = {.buf = malloc(BIG), .cap = BIG, .fail_at = 2};
	struct readback_result res;
	CHECK(readback_pack(rb, &loc, BIG, sha, keep, &g, &res) == -ENOSPC);
	CHECK(res.step == READBACK_SINK && !res.damaged && res.bytes == READBACK_CHUNK);
	CHECK(g.chunks == 2);
	free(g.buf);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* A cancel stops before the next chunk. */
static void test_cancel(void)
{
	make_store();
	struct store *s = open_store();
	unsigned char sha[32];
	struct cb_blob_loc loc;
	CHECK(fix_locate(s, big, BIG, sha, &loc) == 0);
	volatile sig_atomic_t cancel = 1;
	readback *rb = NULL;
	CHECK(readback_new(s, &cancel, &rb) == 0);
	struct readback_result res;
	CHECK(readback_pack(rb, &loc, BIG, sha, NULL, NULL, &res) == -ECANCELED);
	CHECK(res.step == READBACK_CANCELED && !res.damaged && res.bytes == 0);
	cancel = 0;
	CHECK(readback_pack(rb, &loc, BIG, sha, NULL, NULL, &res) == 0);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* A copy on disk (a restored file): right, other bytes, shorter than it should be; a file's
 * faults are never the backup's. */
static void test_copy_on_disk(void)
{
	make_store();
	struct store *s = open_store();
	readback *rb = NULL;
	CHECK(readback_new(s, NULL, &rb) == 0);
	char path[160];
	snprintf(path, sizeof(path), "%s/copy", root);
	FILE *f = fopen(path, "w");
	CHECK(f && fwrite(big, 1, BIG, f) == BIG);
	if (f)
		fclose(f);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	unsigned char sha[32], sha_other[32];
	sha256_buf(big, BIG, sha);
	sha256_buf(other, BIG, sha_other);
	struct got g = {.buf = malloc(BIG), .cap = BIG};
	struct readback_result res;
	CHECK(readback_fd(rb, fd, BIG, sha, keep, &g, &res) == 0);
	CHECK(res.step == READBACK_OK && g.len == BIG && !memcmp(g.buf, big, BIG));
	CHECK(readback_fd(rb, fd, BIG, sha_other, NULL, NULL, &res) == READBACK_EDIFFERS);
	CHECK(res.step == READBACK_DIFFERS && !res.damaged && !memcmp(res.sha256, sha, 32));
	CHECK(readback_fd(rb, fd, BIG + 1, sha, NULL, NULL, &res) == -ESTALE);
	CHECK(res.step == READBACK_SOURCE && !res.damaged);
	CHECK(!strcmp(res.why, "the file shrank while it was read"));
	if (fd >= 0)
		close(fd);
	free(g.buf);
	readback_free(rb);
	store_close(s);
	fix_remove(root);
}

/* The store reads a backup's manifest once to check what the catalog says of its files: the
 * digest it makes is kept under the ref it was read by (NAME/NODE), so the next file's check
 * is a lookup. Once keyed by the manifest's name instead, every file read the whole manifest
 * again: a restore of 5000 files of a 3 MB manifest ran for minutes. The second check answers
 * from the digest; and with the manifest gone (forgotten), the third says so. */
static void test_manifest_read_once(void)
{
	make_store();
	struct store *s = open_store();
	struct cb_file_ident f = {.backup = "day1/n1", .keyspace = "shop", .table = "orders"};
	unsigned char sha[32];
	struct strbuf err = {0};
	snprintf(f.name, sizeof(f.name), "nb-1-big-Digest.crc32");
	CHECK(sha256_buf(small, SMALL, sha) == 0);
	CHECK(store_check_file_content(s, &f, sha, SMALL, &err) == 0);
	snprintf(f.name, sizeof(f.name), "nb-1-big-Data.db");
	CHECK(sha256_buf(big, BIG, sha) == 0);
	int r = store_check_file_content(s, &f, sha, BIG, &err);
	CHECK(r == 0 && store_check_manifest_reads(s) == 1);
	if (r < 0)
		fprintf(stderr, "second check: %s\n", err.buf ? err.buf : strerror(-r));
	char path[256];
	snprintf(path, sizeof(path), "%s/backups/day1/n1.json", dir);
	CHECK(unlink(path) == 0);
	CHECK(store_check_file_content(s, &f, sha, BIG, &err) == -ENOENT);
	sb_free(&err);
	store_close(s);
	fix_remove(root);
}

int main(void)
{
	fix_noise(big, BIG, 1);
	fix_noise(other, BIG, 2);
	fix_noise(small, SMALL, 3);
	test_read_back_right();
	test_bytes_differ();
	test_damaged_frame();
	test_missing_pack();
	test_beyond_the_pack();
	test_sink_fails();
	test_cancel();
	test_copy_on_disk();
	test_manifest_read_once();
	if (failures) {
		fprintf(stderr, "test_readback: %d checks failed\n", failures);
		return 1;
	}
	printf("test_readback: all checks passed\n");
	return 0;
}
