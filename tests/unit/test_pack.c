/* Unit tests for writing packs (pack.c) and reading them back (packread.c, and libarchive as
 * stock tar readers see them): data at the offsets the writer reported, names as bytes, hard
 * links, empty members, sticky errors, and the writer's frame and memory limits. */
#include "pack.h"
#include "packread.h"
#include "seekable.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "check.h"
#include "packread.h"
#include "sink.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static unsigned char rnd8(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned char)rng_state;
}

struct member {
	const char *path;
	size_t size;
	const char *link; /* hard link to this earlier member */
	bool from_fd;
	unsigned char *data;
	uint64_t off;
};

static struct member members[] = {
	{"ks/t-0123/nb-1-big-Data.db", 300000, NULL, true, NULL, 0},
	{"ks/t-0123/nb-1-big-Index.db", 70000, NULL, false, NULL, 0},
	{"ks/t-0123/caf\xe9-Data.db", 5000, NULL, false, NULL, 0},          /* not UTF-8 */
	{"ks/t-0123/.idx_\xc3\xbc/nb-1-big-Data.db", 1, NULL, true, NULL, 0}, /* UTF-8 dir */
	{"ks/t-0123/empty", 0, NULL, false, NULL, 0},
	{"ks/t-0123/copy-of-\xe9", 70000, "ks/t-0123/nb-1-big-Index.db", false, NULL, 0},
};
#define NMEMBERS (sizeof(members) / sizeof(members[0]))

static int temp_fd(char *path)
{
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	return fd;
}

/* Writes every member into a new pack; its path goes to path (at least 128 bytes); returns its
 * frames. */
static uint32_t write_pack(char *path, unsigned threads)
{
	struct test_sink sk;
	CHECK(test_sink_open(&sk) == 0);
	pack_writer *w;
	CHECK(pack_writer_new(&w, sk.u, 3, threads, 64u << 10) == 0);
	struct pack_blob blobs[NMEMBERS];
	struct pack_index pi = {blobs, 0};
	for (size_t i = 0; i < NMEMBERS; i++) {
		struct member *m = &members[i];
		struct pack_member pm = {.path = m->path, .size = m->size, .mode = 0640, .uid = 1,
					 .gid = 2, .mtime_ns = 1700000000123456789ll};
		if (m->link) {
			CHECK(pack_writer_add_hardlink(w, &pm, m->link) == 0);
			continue;
		}
		if (!m->from_fd) {
			CHECK(pack_writer_add_buffer(w, &pm, m->data, &m->off) == 0);
			sha256_buf(m->data, m->size, blobs[pi.nblobs].sha256);
			blobs[pi.nblobs].size = m->size;
			blobs[pi.nblobs++].offset = m->off;
			continue;
		}
		char src[] = "/tmp/cb-pack-src-XXXXXX";
		int sfd = temp_fd(src);
		CHECK(write_full(sfd, m->data, m->size) == 0);
		unsigned char sha[32], want[32];
		CHECK(pack_writer_add_fd(w, &pm, sfd, sha, &m->off, NULL, NULL, NULL) == 0);
		CHECK(sha256_buf(m->data, m->size, want) == 0 && memcmp(sha, want, 32) == 0);
		memcpy(blobs[pi.nblobs].sha256, sha, 32);
		blobs[pi.nblobs].size = m->size;
		blobs[pi.nblobs++].offset = m->off;
		close(sfd);
		unlink(src);
	}
	struct pack_info info;
	CHECK(pack_writer_finish(w, &pi, &info) == 0);
	pack_writer_free(w);
	CHECK(test_sink_close(&sk, 1) == 0);
	struct stat st;
	CHECK(stat(sk.path, &st) == 0 && (uint64_t)st.st_size == info.compressed);
	snprintf(path, 128, "%s", sk.path);
	return info.frames;
}

/* Every member's bytes at the offset the writer reported, through the frame cache. */
static void check_offsets(const char *path)
{
	char *dir = strdup(path), *base = strrchr(dir, '/');
	*base++ = '\0';
	pack_cache *pc;
	struct cb_backend *tb;
	CHECK(test_cache_open(dir, 1u << 20, &tb, &pc) == 0);
	unsigned char *buf = malloc(300000);
	for (size_t i = 0; i < NMEMBERS; i++) {
		const struct member *m = &members[i];
		if (m->link || m->size == 0)
			continue;
		CHECK(pack_cache_read(pc, base, m->off, buf, m->size) == 0);
		CHECK(memcmp(buf, m->data, m->size) == 0);
		CHECK(m->off % 512 == 0); /* data starts on a tar block */
	}
	free(buf);
	test_cache_close(tb, pc);
	free(dir);
}

/* What a tar reader sees: every name byte for byte, sizes, modes, the hard link. */
static void check_tar(const char *path)
{
	struct archive *a = archive_read_new();
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	CHECK(archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK);
	struct archive_entry *e;
	size_t i = 0;
	unsigned char *buf = malloc(300001);
	int r;
	/* ARCHIVE_WARN: a UTF-8 name that the C locale cannot show; the bytes are given as they are */
	while (i < NMEMBERS &&
	       ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)) {
		const struct member *m = &members[i++];
		CHECK(strcmp(archive_entry_pathname(e), m->path) == 0);
		CHECK((archive_entry_perm(e) & 07777) == 0640);
		CHECK(archive_entry_mtime(e) == 1700000000 && archive_entry_mtime_nsec(e) == 123456789);
		if (m->link) {
			CHECK(archive_entry_hardlink(e) && strcmp(archive_entry_hardlink(e), m->link) == 0);
			continue;
		}
		CHECK(archive_entry_size(e) == (la_int64_t)m->size);
		la_ssize_t n = archive_read_data(a, buf, 300001);
		CHECK(n == (la_ssize_t)m->size && memcmp(buf, m->data, m->size) == 0);
	}
	CHECK(i == NMEMBERS);
	CHECK(archive_read_next_header(a, &e) == ARCHIVE_OK);
	CHECK(strcmp(archive_entry_pathname(e), PACK_INDEX_MEMBER) == 0);
	CHECK(archive_read_next_header(a, &e) == ARCHIVE_EOF);
	free(buf);
	archive_read_free(a);
}

/* The index member lists every blob, each at a frame start. */
static void check_index(const char *path)
{
	struct cb_io *io;
	struct seek_table *t;
	struct pack_trailer tr;
	struct pack_index pi;
	char err[256];
	CHECK(cb_io_open_file(path, &io) == 0);
	CHECK(pack_table_read(io, &t, &tr) == 0);
	CHECK(pack_index_read(io, t, &tr, &pi, err, sizeof(err)) == 0);
	size_t want = 0;
	for (size_t i = 0; i < NMEMBERS; i++)
		want += !members[i].link;
	CHECK(pi.nblobs == want);
	for (size_t i = 0, k = 0; i < NMEMBERS && k < pi.nblobs; i++) {
		if (members[i].link)
			continue;
		CHECK(pi.blobs[k].offset == members[i].off && pi.blobs[k].size == members[i].size);
		k++;
	}
	pack_index_free(&pi);
	seek_table_free(t);
	cb_io_close(io);
}

/* Reads every member through a fresh cache: 1 when all bytes are right, 0 when a read failed,
 * -1 when a read returned wrong bytes (what must never happen). */
static int read_all(const char *dir, const char *base)
{
	pack_cache *pc;
	struct cb_backend *tb;
	if (test_cache_open(dir, 1u << 20, &tb, &pc) < 0)
		return 0;
	unsigned char *buf = malloc(300000);
	int verdict = 1;
	for (size_t i = 0; i < NMEMBERS && verdict >= 0; i++) {
		const struct member *m = &members[i];
		if (m->link || m->size == 0)
			continue;
		if (pack_cache_read(pc, base, m->off, buf, m->size) < 0)
			verdict = 0;
		else if (memcmp(buf, m->data, m->size) != 0)
			verdict = -1;
	}
	free(buf);
	test_cache_close(tb, pc);
	return verdict;
}

/* Flips every bit of the seek table and the trailer, one at a time: reads give the right bytes
 * or an error, never wrong bytes (issue 7: a flipped table used to map reads to the wrong
 * frames, each of which passed its own checksum). */
static void test_seek_table_bit_flips(void)
{
	char path[128];
	write_pack(path, 1);
	char *dir = strdup(path), *base = strrchr(dir, '/');
	*base++ = '\0';
	int fd = open(path, O_RDWR);
	struct stat st;
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	struct cb_io *io;
	uint64_t tsize = 0;
	CHECK(cb_io_open_file(path, &io) == 0 && seek_table_size(io, &tsize) == 0);
	cb_io_close(io);
	off_t from = st.st_size - (off_t)tsize - PACK_TRAILER_SIZE;
	unsigned flips = 0, wrong = 0, refused = 0;
	for (off_t at = from; at < st.st_size; at++) {
		for (int bit = 0; bit < 8; bit++) {
			unsigned char c;
			CHECK(pread(fd, &c, 1, at) == 1);
			unsigned char f = c ^ (unsigned char)(1u << bit);
			CHECK(pwrite(fd, &f, 1, at) == 1);
			int v = read_all(dir, base);
			wrong += v < 0;
			refused += v == 0;
			flips++;
			CHECK(pwrite(fd, &c, 1, at) == 1);
		}
	}
	printf("test_pack: %u single-bit flips of the seek table and trailer: %u refused, %u read "
	       "right, %u gave wrong bytes\n", flips, refused, flips - refused - wrong, wrong);
	CHECK(wrong == 0);
	CHECK(refused > 0);
	CHECK(read_all(dir, base) == 1);
	close(fd);
	test_sink_remove(path);
	free(dir);
}

static void test_round_trip(unsigned threads)
{
	char path[128];
	uint32_t frames = write_pack(path, threads);
	CHECK(frames > 300000 / (64u << 10)); /* 64 KiB frames, and a cut at every member */
	check_offsets(path);
	check_index(path);
	check_tar(path);
	test_sink_remove(path);
}

static void test_errors(void)
{
	struct test_sink sk;
	CHECK(test_sink_open(&sk) == 0);
	pack_writer *w = NULL;
	CHECK(pack_writer_new(&w, sk.u, 3, 1, SEEKABLE_MAX_WRITE_FRAME_SIZE + 1) == -EINVAL && !w);
	CHECK(pack_writer_new(&w, sk.u, 3, 1, SEEKABLE_MAX_WRITE_FRAME_SIZE) == 0);
	/* a source shorter than announced: -ESTALE, and the pack is unusable from then on */
	char src[] = "/tmp/cb-pack-src-XXXXXX";
	int sfd = temp_fd(src);
	CHECK(write_full(sfd, "short", 5) == 0);
	struct pack_member pm = {.path = "x", .size = 6, .mode = 0644};
	unsigned char sha[32];
	uint64_t off;
	CHECK(pack_writer_add_fd(w, &pm, sfd, sha, &off, NULL, NULL, NULL) == -ESTALE);
	pm.size = 5;
	CHECK(pack_writer_add_buffer(w, &pm, "short", &off) < 0);
	struct pack_index none = {0};
	struct pack_info info;
	CHECK(pack_writer_finish(w, &none, &info) < 0);
	pack_writer_free(w);
	close(sfd);
	unlink(src);
	test_sink_close(&sk, 0);
	test_sink_remove(sk.dir);
}

/* How many of the file's pages are in the page cache. */
static size_t cached_pages(int fd, size_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t n = (size + (size_t)page - 1) / (size_t)page, cached = 0;
	void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	unsigned char *vec = malloc(n);
	CHECK(map != MAP_FAILED && vec && mincore(map, size, vec) == 0);
	for (size_t i = 0; vec && i < n; i++)
		cached += vec[i] & 1;
	if (map != MAP_FAILED)
		munmap(map, size);
	free(vec);
	return cached;
}

/* Sources read with O_DIRECT: every size around a block and a read chunk (1 MiB) comes back
 * byte for byte, also one still dirty in the page cache; a source of another size than
 * announced is refused; and a source on disk is read without filling the page cache. */
static void test_sources_of_every_size(void)
{
	static const size_t sizes[] = {0, 1, 4095, 4096, 4097, (1u << 20) - 1, 1u << 20,
				       (1u << 20) + 1, (3u << 20) + 123};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	size_t most = (3u << 20) + 123;
	unsigned char *data = malloc(most + 1), *back = malloc(most + 1);
	for (size_t i = 0; i <= most; i++)
		data[i] = rnd8();
	struct test_sink sk;
	CHECK(test_sink_open(&sk) == 0);
	pack_writer *w;
	CHECK(pack_writer_new(&w, sk.u, 3, 2, 64u << 10) == 0);
	uint64_t offs[N];
	struct statfs fs;
	bool on_disk = statfs("/tmp", &fs) == 0 && fs.f_type != TMPFS_MAGIC;
	for (size_t i = 0; i < N; i++) {
		char src[] = "/tmp/cb-pack-src-XXXXXX", name[32];
		int sfd = temp_fd(src);
		CHECK(write_full(sfd, data, sizes[i]) == 0);
		if (i % 2) { /* on disk, out of the page cache; the others still dirty in it */
			CHECK(fsync(sfd) == 0);
			CHECK(posix_fadvise(sfd, 0, 0, POSIX_FADV_DONTNEED) == 0);
		}
		snprintf(name, sizeof(name), "f%zu", i);
		struct pack_member pm = {.path = name, .size = sizes[i], .mode = 0644};
		unsigned char sha[32], want[32];
		CHECK(pack_writer_add_fd(w, &pm, sfd, sha, &offs[i], NULL, NULL, NULL) == 0);
		CHECK(sha256_buf(data, sizes[i], want) == 0 && memcmp(sha, want, 32) == 0);
		if (i % 2 && on_disk && sizes[i])
			CHECK(cached_pages(sfd, sizes[i]) == 0);
		close(sfd);
		unlink(src);
	}
	struct pack_index none = {0};
	struct pack_info info;
	CHECK(pack_writer_finish(w, &none, &info) == 0);
	pack_writer_free(w);
	CHECK(test_sink_close(&sk, 1) == 0);
	pack_cache *pc;
	struct cb_backend *tb;
	CHECK(test_cache_open(sk.dir, 1u << 20, &tb, &pc) == 0);
	for (size_t i = 0; i < N; i++) {
		memset(back, 0, sizes[i]);
		CHECK(sizes[i] == 0 || pack_cache_read(pc, "stream", offs[i], back, sizes[i]) == 0);
		CHECK(memcmp(back, data, sizes[i]) == 0);
	}
	test_cache_close(tb, pc);
	test_sink_remove(sk.dir);
	/* one byte more or less than announced, on either side of a chunk: -ESTALE */
	static const struct { size_t have, announced; } off_by_one[] = {
		{4097, 4096}, {4095, 4096}, {(1u << 20) + 1, 1u << 20}, {1u << 20, (1u << 20) + 1}};
	for (size_t i = 0; i < sizeof(off_by_one) / sizeof(off_by_one[0]); i++) {
		CHECK(test_sink_open(&sk) == 0);
		CHECK(pack_writer_new(&w, sk.u, 3, 1, 64u << 10) == 0);
		char src[] = "/tmp/cb-pack-src-XXXXXX";
		int sfd = temp_fd(src);
		CHECK(write_full(sfd, data, off_by_one[i].have) == 0);
		struct pack_member pm = {.path = "x", .size = off_by_one[i].announced, .mode = 0644};
		unsigned char sha[32];
		uint64_t off;
		CHECK(pack_writer_add_fd(w, &pm, sfd, sha, &off, NULL, NULL, NULL) == -ESTALE);
		pack_writer_free(w);
		close(sfd);
		unlink(src);
		test_sink_close(&sk, 0);
		test_sink_remove(sk.dir);
	}
	free(data);
	free(back);
}

/* The writer's memory budget bounds its threads, whatever is asked for. */
static void test_memory_budget(void)
{
	static const struct {
		int level;
		size_t frame;
		unsigned want, min, max;
	} cases[] = {
		{3, 1u << 20, 2, 2, 2},                          /* the default on this machine */
		{3, SEEKABLE_MAX_WRITE_FRAME_SIZE, 64, 1, 14},   /* ~9 MiB per worker */
		{19, SEEKABLE_MAX_WRITE_FRAME_SIZE, 64, 1, 1},   /* ~50 MiB zstd context each */
		{3, 64u << 10, 64, 64, 64},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seekable_writer *w;
		struct test_sink sk;
		CHECK(test_sink_open(&sk) == 0);
		CHECK(seekable_writer_new(&w, sk.u, cases[i].level, cases[i].want, cases[i].frame) == 0);
		unsigned t = seekable_writer_threads(w);
		if (t < cases[i].min || t > cases[i].max) {
			fprintf(stderr, "case %zu: %u threads\n", i, t);
			CHECK(!"threads within the budget");
		}
		seekable_writer_free(w);
		test_sink_close(&sk, 0);
		test_sink_remove(sk.dir);
	}
}

int main(void)
{
	setlocale(LC_ALL, "C"); /* names are bytes in any locale; C is the strictest */
	for (size_t i = 0; i < NMEMBERS; i++) {
		if (members[i].link)
			continue;
		members[i].data = malloc(members[i].size + 1);
		for (size_t k = 0; k < members[i].size; k++)
			members[i].data[k] = i % 2 ? (unsigned char)"cassandra"[k % 9] : rnd8();
	}
	test_round_trip(0);
	test_round_trip(3);
	test_errors();
	test_seek_table_bit_flips();
	test_memory_budget();
	test_sources_of_every_size();
	for (size_t i = 0; i < NMEMBERS; i++)
		free(members[i].data);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	else
		printf("test_pack: all checks passed\n");
	return failures ? 1 : 0;
}
