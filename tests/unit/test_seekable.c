/* Unit tests for the seekable zstd writer/reader and the frame cache. */
#include "io.h"
#include "packread.h"
#include "seekable.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "pack.h"
#include "packread.h"
#include "sink.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Half compressible text, half random, so frames differ in ratio. */
static unsigned char *make_data(size_t n)
{
	unsigned char *d = malloc(n);
	for (size_t i = 0; i < n; i++)
		d[i] = (i / 65536) % 2 ? (unsigned char)rnd() : (unsigned char)("cassandra"[i % 9]);
	return d;
}

static int pack_trailer(void *ctx, const void *table, size_t len, struct strbuf *extra)
{
	unsigned char sha[32];
	(void)ctx;
	return pack_trailer_frame(table, len, 0, 0, sha, extra);
}

/* Writes data with cuts at the given offsets into a new temp file; returns its path. With
 * as_pack, the stream ends as a pack's does (pack.h: a trailer before the seek table), so the
 * frame cache reads it. */
static char *write_stream_as(const unsigned char *d, size_t n, const size_t *cuts, size_t ncuts,
			     unsigned threads, size_t frame, uint32_t *frames, bool as_pack)
{
	struct test_sink sk;
	CHECK(test_sink_open(&sk) == 0);
	seekable_writer *w;
	CHECK(seekable_writer_new(&w, sk.u, 3, threads, frame) == 0);
	size_t pos = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : n;
		while (pos < end) { /* uneven write sizes */
			size_t k = 1 + rnd() % 70000;
			if (k > end - pos)
				k = end - pos;
			CHECK(seekable_writer_write(w, d + pos, k) == 0);
			pos += k;
		}
		CHECK(seekable_writer_offset(w) == pos);
		CHECK(seekable_writer_cut(w) == 0);
	}
	uint64_t csize;
	CHECK(seekable_writer_finish(w, as_pack ? pack_trailer : NULL, NULL, &csize, frames) == 0);
	seekable_writer_free(w);
	CHECK(test_sink_close(&sk, 1) == 0);
	struct stat st;
	CHECK(stat(sk.path, &st) == 0 && (uint64_t)st.st_size == csize);
	return strdup(sk.path);
}

static char *write_stream(const unsigned char *d, size_t n, const size_t *cuts, size_t ncuts,
			  unsigned threads, size_t frame, uint32_t *frames)
{
	return write_stream_as(d, n, cuts, ncuts, threads, frame, frames, false);
}

static void test_round_trip(unsigned threads)
{
	size_t n = (5u << 20) + 12345;
	unsigned char *d = make_data(n);
	size_t cuts[] = {100, 4096, 1u << 20, (1u << 20) + 1, 3000000};
	uint32_t frames;
	char *path = write_stream_as(d, n, cuts, 5, threads, 1u << 20, &frames, true);

	struct cb_io *io;
	struct seek_table *t;
	CHECK(cb_io_open_file(path, &io) == 0);
	struct pack_trailer tr;
	CHECK(seek_table_read(io, &t) == -EINVAL); /* frames do not reach the table: a trailer */
	CHECK(pack_table_read(io, &t, &tr) == 0);
	CHECK(t->frames == frames);
	CHECK(t->doff[t->frames] == n);
	/* every cut starts a frame */
	for (size_t c = 0; c < 5; c++)
		CHECK(t->doff[seek_table_frame_at(t, cuts[c])] == cuts[c]);
	for (uint32_t i = 0; i < t->frames; i++)
		CHECK(seek_table_frame_size(t, i) <= (1u << 20) && seek_table_frame_size(t, i) > 0);

	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	unsigned char *buf = malloc(n);
	CHECK(seekable_read(io, t, dctx, 0, buf, n) == 0 && memcmp(buf, d, n) == 0);
	for (int k = 0; k < 300; k++) {
		uint64_t off = rnd() % n;
		size_t len = (size_t)(rnd() % (n - off) % (3u << 20)) + 0;
		memset(buf, 0, len);
		CHECK(seekable_read(io, t, dctx, off, buf, len) == 0);
		CHECK(memcmp(buf, d + off, len) == 0);
	}
	CHECK(seekable_read(io, t, dctx, n - 1, buf, 2) == -EINVAL);

	/* the same through the cache, from several threads, with a cache smaller than the data */
	pack_cache *pc;
	struct cb_backend *tb;
	char *dir = strdup(path), *base = strrchr(dir, '/');
	*base++ = '\0';
	CHECK(test_cache_open(dir, 2u << 20, &tb, &pc) == 0);
	for (int k = 0; k < 200; k++) {
		uint64_t off = rnd() % n;
		size_t len = (size_t)(rnd() % (n - off) % (2u << 20));
		CHECK(pack_cache_read(pc, base, off, buf, len) == 0);
		CHECK(memcmp(buf, d + off, len) == 0);
	}
	/* each failure has its own code: beyond the stream, no pack, no seek table */
	CHECK(pack_cache_read(pc, base, n, buf, 1) == -ERANGE);
	CHECK(pack_cache_read(pc, "no-such-pack", 0, buf, 1) == -ENOENT);
	char junk[4096];
	snprintf(junk, sizeof(junk), "%s/junk-pack", dir);
	FILE *jf = fopen(junk, "w");
	CHECK(jf && fputs("not a seekable zstd stream, long enough for a footer", jf) >= 0);
	fclose(jf);
	CHECK(pack_cache_read(pc, "junk-pack", 0, buf, 1) == -EBADMSG);
	unlink(junk);
	struct pack_cache_stats st;
	pack_cache_get_stats(pc, &st);
	CHECK(st.bytes <= (2u << 20) + (1u << 20));
	CHECK(st.evictions > 0 && st.hits > 0);
	test_cache_close(tb, pc);
	free(dir);

	free(buf);
	ZSTD_freeDCtx(dctx);
	seek_table_free(t);
	cb_io_close(io);
	test_sink_remove(path);
	free(path);
	free(d);
}

struct thread_arg {
	pack_cache *pc;
	struct cb_backend *tb;
	const char *name;
	const unsigned char *d;
	size_t n;
	int bad;
};

static void *reader_thread(void *p)
{
	struct thread_arg *a = p;
	unsigned char *buf = malloc(1u << 20);
	uint64_t s = (uint64_t)(uintptr_t)p;
	for (int k = 0; k < 400; k++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = (s >> 16) % a->n;
		size_t len = (size_t)((s >> 40) % (1u << 20));
		if (len > a->n - off)
			len = a->n - off;
		if (pack_cache_read(a->pc, a->name, off, buf, len) != 0 || memcmp(buf, a->d + off, len))
			a->bad++;
	}
	free(buf);
	return NULL;
}

static void test_concurrent_cache(void)
{
	size_t n = 8u << 20;
	unsigned char *d = make_data(n);
	uint32_t frames;
	char *path = write_stream_as(d, n, NULL, 0, 2, 256u << 10, &frames, true);
	char *dir = strdup(path), *base = strrchr(dir, '/');
	*base++ = '\0';
	pack_cache *pc;
	struct cb_backend *tb;
	CHECK(test_cache_open(dir, 1u << 20, &tb, &pc) == 0);
	pthread_t th[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){.pc = pc, .name = base, .d = d, .n = n};
		pthread_create(&th[i], NULL, reader_thread, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(args[i].bad == 0);
	}
	test_cache_close(tb, pc);
	test_sink_remove(path);
	free(path);
	free(dir);
	free(d);
}

static void test_corruption(void)
{
	size_t n = 3u << 20;
	unsigned char *d = make_data(n);
	uint32_t frames;
	char *path = write_stream(d, n, NULL, 0, 0, 1u << 20, &frames);
	CHECK(frames == 3);
	struct cb_io *io;
	struct seek_table *t;
	CHECK(cb_io_open_file(path, &io) == 0);
	CHECK(seek_table_read(io, &t) == 0);
	uint64_t mid = t->coff[1] + (t->coff[2] - t->coff[1]) / 2;
	cb_io_close(io);

	int fd = open(path, O_RDWR);
	unsigned char b;
	CHECK(pread(fd, &b, 1, (off_t)mid) == 1);
	b ^= 0x10;
	CHECK(pwrite(fd, &b, 1, (off_t)mid) == 1);
	CHECK(cb_io_open_file(path, &io) == 0);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	unsigned char *buf = malloc(n);
	/* frame 1 is bad: -EIO, never wrong bytes; frames 0 and 2 still read */
	CHECK(seekable_read(io, t, dctx, (1u << 20) + 10, buf, 100) == -EIO);
	CHECK(seekable_read(io, t, dctx, 0, buf, 1u << 20) == 0 && memcmp(buf, d, 1u << 20) == 0);
	CHECK(seekable_read(io, t, dctx, 2u << 20, buf, 1u << 20) == 0 &&
	      memcmp(buf, d + (2u << 20), 1u << 20) == 0);
	cb_io_close(io);

	/* a truncated file has no seek table */
	CHECK(ftruncate(fd, (off_t)t->coff[3] + 5) == 0);
	CHECK(cb_io_open_file(path, &io) == 0);
	struct seek_table *t2 = NULL;
	CHECK(seek_table_read(io, &t2) == -EINVAL && t2 == NULL);
	cb_io_close(io);
	/* nor does a file that is not seekable zstd at all */
	CHECK(ftruncate(fd, 0) == 0 && write(fd, "hello, not zstd at all.", 23) == 23);
	CHECK(cb_io_open_file(path, &io) == 0);
	CHECK(seek_table_read(io, &t2) == -EINVAL);
	cb_io_close(io);
	close(fd);

	free(buf);
	ZSTD_freeDCtx(dctx);
	seek_table_free(t);
	test_sink_remove(path);
	free(path);
	free(d);
}

static void test_empty_stream(void)
{
	uint32_t frames;
	char *path = write_stream(NULL, 0, NULL, 0, 2, 1u << 20, &frames);
	CHECK(frames == 0);
	struct cb_io *io;
	struct seek_table *t;
	CHECK(cb_io_open_file(path, &io) == 0);
	CHECK(io->size == 17);
	CHECK(seek_table_read(io, &t) == 0 && t->frames == 0 && t->doff[0] == 0);
	seek_table_free(t);
	cb_io_close(io);
	test_sink_remove(path);
	free(path);
}

int main(void)
{
	test_round_trip(0);
	test_round_trip(2);
	test_concurrent_cache();
	test_corruption();
	test_empty_stream();
	if (failures) {
		fprintf(stderr, "test_seekable: %d checks failed\n", failures);
		return 1;
	}
	printf("test_seekable: all checks passed\n");
	return 0;
}
