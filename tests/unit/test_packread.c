/* Unit tests for how the frame cache fetches (packread.c): runs of missing neighbouring frames
 * in one positional read, the disk cache (reads with the pack gone, damaged copies fetched
 * again), and the disk cache's own bound and order (diskcache.c). */
#include "diskcache.h"
#include "packread.h"
#include "seekable.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "pack.h"
#include "sink.h"

#define FRAME (64u << 10)
#define SIZE (3u << 20)
#define FRAMES (SIZE / FRAME)

static int pack_trailer(void *ctx, const void *table, size_t len, struct strbuf *extra)
{
	unsigned char sha[32];
	(void)ctx;
	return pack_trailer_frame(table, len, 0, 0, sha, extra);
}

/* A pack of d (SIZE bytes, FRAMES frames) at dir/pack; dir (64 bytes) is made here. */
static void write_pack(const unsigned char *d, char *dir)
{
	struct test_sink sk;
	CHECK(test_sink_open(&sk) == 0);
	seekable_writer *w;
	CHECK(seekable_writer_new(&w, sk.u, 3, 0, FRAME) == 0);
	CHECK(seekable_writer_write(w, d, SIZE) == 0);
	uint64_t csize;
	uint32_t frames;
	CHECK(seekable_writer_finish(w, pack_trailer, NULL, &csize, &frames) == 0 && frames == FRAMES);
	seekable_writer_free(w);
	CHECK(test_sink_close(&sk, 1) == 0);
	snprintf(dir, 64, "%s", sk.dir);
}

static struct pack_cache_stats read_all(const char *dir, const char *disk, const unsigned char *d,
					uint32_t first_alone)
{
	pack_cache *pc;
	struct cb_backend *tb;
	struct pack_cache_stats st = {0};
	struct strbuf err = {0};
	unsigned char *buf = malloc(SIZE);
	CHECK(test_cache_open(dir, 64u << 20, &tb, &pc) == 0);
	if (disk)
		CHECK(pack_cache_use_disk(pc, disk, 64u << 20, &err) == 0);
	if (first_alone < FRAMES) /* one frame first: the rest is two runs around it */
		CHECK(pack_cache_read(pc, "stream", (uint64_t)first_alone * FRAME, buf, 10) == 0);
	CHECK(pack_cache_read(pc, "stream", 0, buf, SIZE) == 0 && memcmp(buf, d, SIZE) == 0);
	pack_cache_get_stats(pc, &st);
	test_cache_close(tb, pc);
	sb_free(&err);
	free(buf);
	return st;
}

static void test_runs(const unsigned char *d, const char *dir)
{
	struct pack_cache_stats st = read_all(dir, NULL, d, FRAMES);
	CHECK(st.fetches == 1 && st.misses == FRAMES); /* 48 frames, one read */
	st = read_all(dir, NULL, d, 5);
	CHECK(st.fetches == 3); /* frame 5, then frames 0-4 and 6-47 */
}

/* Names of the frame files in the disk cache dir. */
static unsigned frame_files(const char *disk, char names[][64], unsigned max)
{
	DIR *dd = opendir(disk);
	unsigned n = 0;
	struct dirent *e;
	while (dd && (e = readdir(dd)))
		if (!strncmp(e->d_name, "f-", 2) && n < max)
			snprintf(names[n++], 64, "%.63s", e->d_name);
	if (dd)
		closedir(dd);
	return n;
}

static void test_disk(const unsigned char *d, const char *dir)
{
	char disk[128], pack[128], moved[128];
	snprintf(disk, sizeof(disk), "%s/disk", dir);
	snprintf(pack, sizeof(pack), "%s/stream", dir);
	snprintf(moved, sizeof(moved), "%s/elsewhere", dir);
	struct pack_cache_stats st = read_all(dir, disk, d, FRAMES);
	CHECK(st.fetches == 1 && st.disk_hits == 0);
	struct stat sb;
	CHECK(stat(disk, &sb) == 0 && (sb.st_mode & 0777) == 0700);

	/* the pack gone: everything from the disk cache */
	CHECK(rename(pack, moved) == 0);
	st = read_all(dir, disk, d, FRAMES);
	CHECK(st.fetches == 0 && st.disk_hits == FRAMES);
	CHECK(rename(moved, pack) == 0);

	/* a damaged copy is fetched again, and only it */
	char names[FRAMES + 1][64], path[256];
	CHECK(frame_files(disk, names, FRAMES + 1) == FRAMES);
	snprintf(path, sizeof(path), "%s/%s", disk, names[7]);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	FILE *f = fopen(path, "r+");
	CHECK(f && fseek(f, sb.st_size / 2, SEEK_SET) == 0);
	int c = fgetc(f);
	CHECK(fseek(f, sb.st_size / 2, SEEK_SET) == 0 && fputc(c ^ 0x40, f) != EOF);
	fclose(f);
	st = read_all(dir, disk, d, FRAMES);
	CHECK(st.fetches == 1 && st.fetched_bytes == (uint64_t)sb.st_size && st.disk_hits == FRAMES - 1);
	st = read_all(dir, disk, d, FRAMES); /* whole again */
	CHECK(st.fetches == 0 && st.disk_hits == FRAMES);
}

/* Names as packread.c makes them: "f-" or "t-" and 32 hex digits (the cache takes no other). */
#define NA "f-0000000000000000000000000000000a"
#define NB "f-0000000000000000000000000000000b"
#define NC "f-0000000000000000000000000000000c"
#define ND "f-0000000000000000000000000000000d-7"
#define NBIG "t-0000000000000000000000000000000f"

static void test_disk_cache_order(const char *dir)
{
	char disk[128];
	snprintf(disk, sizeof(disk), "%s/lru", dir);
	struct disk_cache *dc, *other;
	struct strbuf err = {0};
	CHECK(disk_cache_open(disk, 3 * 4096, &dc, &err) == 0);
	CHECK(disk_cache_open(disk, 3 * 4096, &other, &err) == -EBUSY); /* one mount at a time */
	char small[100] = "x", big[5 * 4096] = "y";
	CHECK(disk_cache_put(dc, NA, small, sizeof(small)) == 0);
	CHECK(disk_cache_put(dc, NB, small, sizeof(small)) == 0);
	CHECK(disk_cache_put(dc, NC, small, sizeof(small)) == 0);
	void *data;
	size_t len;
	CHECK(disk_cache_get(dc, NA, 4096, &data, &len) == 0 && len == sizeof(small));
	free(data);
	CHECK(disk_cache_put(dc, ND, small, sizeof(small)) == 0); /* b was least recently used */
	CHECK(disk_cache_get(dc, NB, 4096, &data, &len) == -ENOENT);
	CHECK(disk_cache_bytes(dc) == 3 * 4096);
	CHECK(disk_cache_put(dc, NBIG, big, sizeof(big)) == 0); /* larger than the cache: not kept */
	CHECK(disk_cache_get(dc, NBIG, sizeof(big), &data, &len) == -ENOENT);
	CHECK(disk_cache_get(dc, NA, 10, &data, &len) == -EFBIG);
	CHECK(disk_cache_put(dc, "../x", small, 1) == -EINVAL && disk_cache_put(dc, ".lock", small, 1) == -EINVAL);
	CHECK(disk_cache_put(dc, "notes.txt", small, 1) == -EINVAL); /* only the cache's own names */
	disk_cache_close(dc);
	/* reopened smaller: the least recently used go first (a, then c, d, by mtime) */
	CHECK(disk_cache_open(disk, 4096, &dc, &err) == 0);
	CHECK(disk_cache_bytes(dc) == 4096);
	disk_cache_close(dc);
	sb_free(&err);
}

int main(void)
{
	unsigned char *d = malloc(SIZE);
	for (size_t i = 0; i < SIZE; i++) /* compressible, and different in every frame */
		d[i] = (unsigned char)((i / 7) ^ (i >> 16));
	char dir[64];
	write_pack(d, dir);
	test_runs(d, dir);
	test_disk(d, dir);
	test_disk_cache_order(dir);
	test_sink_remove(dir);
	free(d);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
