/* Unit tests of commitlog segment names, headers and windows (catalog/commitlog.c). Headers are
 * made here as CommitLogDescriptor.writeHeader makes them, the CRC by zlib (an implementation
 * other than the one under test). */
#include "commitlog.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"

static size_t put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
	return (size_t)n;
}

static uLong crc_int(uLong crc, uint32_t v)
{
	unsigned char b[4];
	put_be(b, v, 4);
	return crc32(crc, b, 4);
}

/* A header for version, id, params into out; its length. */
static size_t header(unsigned char *out, int32_t version, int64_t id, const char *params)
{
	size_t plen = strlen(params), n = 0;
	n += put_be(out + n, (uint32_t)version, 4);
	n += put_be(out + n, (uint64_t)id, 8);
	n += put_be(out + n, plen, 2);
	memcpy(out + n, params, plen);
	n += plen;
	uLong crc = crc_int(crc_int(crc_int(crc32(0, NULL, 0), (uint32_t)version), (uint32_t)id),
			    (uint32_t)((uint64_t)id >> 32));
	crc = crc32(crc_int(crc, (uint32_t)plen), (const Bytef *)params, (uInt)plen);
	return n + put_be(out + n, crc, 4);
}

static void test_names(void)
{
	int32_t v;
	int64_t id;
	CHECK(commitlog_parse_name("CommitLog-7-1733350000123.log", &v, &id) == 0 && v == 7 && id == 1733350000123);
	CHECK(commitlog_parse_name("CommitLog-1733350000123.log", &v, &id) == 0 && v == 0 && id == 1733350000123);
	const char *bad[] = {"CommitLog-7-.log", "CommitLog--5.log", "CommitLog-7-12x.log", "CommitLog-7-12.log.zst",
			     "commitlog-7-12.log", "CommitLog-7-12-CDC.idx", "CommitLog-7-99999999999999999999.log",
			     "CommitLog-99999999999-1.log", "CommitLog-.log", "CommitLog-7-1-2.log", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(commitlog_parse_name(bad[i], &v, &id) == -EINVAL);
	struct strbuf key = {0};
	CHECK(commitlog_key("n1", "CommitLog-7-5.log", &key) == 0 && !strcmp(key.buf, "commitlogs/n1/CommitLog-7-5.log.zst"));
	sb_free(&key);
	CHECK(commitlog_key("..", "CommitLog-7-5.log", &key) == -EINVAL);
	CHECK(commitlog_key("a/b", "CommitLog-7-5.log", &key) == -EINVAL);
	CHECK(commitlog_key(".hidden", "CommitLog-7-5.log", &key) == -EINVAL);
	CHECK(commitlog_key("n1", "x.log", &key) == -EINVAL);
	sb_free(&key);
}

static void test_headers(void)
{
	unsigned char buf[4096] = {0};
	int32_t v;
	int64_t id;
	struct strbuf err = {0};
	/* an id with both halves set, parameters as Cassandra writes a compressed segment's */
	const char *params = "{\"compressionClass\":\"LZ4Compressor\",\"compressionParameters\":{}}";
	size_t n = header(buf, 7, INT64_C(0x0000019393a1b2c3), params);
	CHECK(commitlog_parse_header(buf, sizeof(buf), &v, &id, &err) == 0 && v == 7 &&
	      id == INT64_C(0x0000019393a1b2c3));
	CHECK(commitlog_parse_header(buf, n, &v, &id, &err) == 0);
	CHECK(commitlog_parse_header(buf, n - 1, &v, &id, &err) == -EBADMSG); /* cut short */
	buf[20] ^= 1;                                                           /* a parameter byte */
	CHECK(commitlog_parse_header(buf, sizeof(buf), &v, &id, &err) == -EBADMSG && strstr(err.buf, "CRC"));
	buf[20] ^= 1;
	buf[5] ^= 0x10; /* the id */
	CHECK(commitlog_parse_header(buf, sizeof(buf), &v, &id, &err) == -EBADMSG);
	sb_free(&err);

	/* describe: the header must be the name's, and of Cassandra 3.0 or later */
	struct commitlog_meta m;
	n = header(buf, 7, 42, "{}");
	CHECK(commitlog_describe("CommitLog-7-42.log", buf, sizeof(buf), &m, &err) == 0 && m.id == 42 &&
	      m.version == 7 && m.size == sizeof(buf));
	CHECK(commitlog_describe("CommitLog-7-43.log", buf, sizeof(buf), &m, &err) == -EBADMSG);
	CHECK(commitlog_describe("CommitLog-6-42.log", buf, sizeof(buf), &m, &err) == -EBADMSG);
	CHECK(commitlog_describe("segment.log", buf, sizeof(buf), &m, &err) == -EINVAL);
	n = header(buf, 5, 42, "{}");
	CHECK(commitlog_describe("CommitLog-5-42.log", buf, sizeof(buf), &m, &err) == -EBADMSG);
	(void)n;
	sb_free(&err);
}

/* Is m in the window [from, to] of the node whose segments are v[0..n)? */
static bool in(const struct commitlog_meta *m, const struct commitlog_meta *v, size_t n, int64_t from,
	       int64_t to)
{
	struct commitlog_window w;
	struct commitlog_start start = {from, COMMITLOG_SEEN_UNKNOWN};
	commitlog_window_of(v, n, &start, to, &w);
	return commitlog_in_window(m, &w);
}

/* The same, from a backup that recorded seen_id before its snapshot. */
static bool in_seen(const struct commitlog_meta *m, const struct commitlog_meta *v, size_t n,
		    int64_t from, int64_t seen_id)
{
	struct commitlog_window w;
	struct commitlog_start start = {from, seen_id};
	commitlog_window_of(v, n, &start, INT64_MAX, &w);
	return commitlog_in_window(m, &w);
}

/* A clock stepped back an hour after the snapshot at 10,000,000 ms, before the segment written
 * during it (id 5002) was archived: its archive time says 40 minutes before the snapshot, and
 * the next segment's (5003, clock right again) id cannot take it in. The id the backup saw
 * before its snapshot (5001, archived two hours before) does. */
static void test_window_clock_stepped_back_before_the_first_archive(void)
{
	const int64_t snap = 10000000, min = 60000;
	struct commitlog_meta v[] = {{.id = 5001, .archived_ms = snap - 120 * min},
				     {.id = 5002, .archived_ms = snap - 40 * min},
				     {.id = 5003, .archived_ms = snap + 30 * min}};
	const int64_t from = snap - COMMITLOG_FLUSH_SLACK_MS;
	CHECK(!in(&v[1], v, 3, from, INT64_MAX)); /* by archive times alone: lost */
	CHECK(in_seen(&v[1], v, 3, from, 5001) && in_seen(&v[2], v, 3, from, 5001));
	CHECK(!in_seen(&v[0], v, 3, from, 5001)); /* flushed into the snapshot's sstables */
	CHECK(in_seen(&v[0], v, 3, from, -1));    /* none seen: every segment is after */
	CHECK(!in_seen(&v[0], v, 3, from, COMMITLOG_SEEN_UNKNOWN));
}

static void test_window(void)
{
	/* a segment spans [id, archived_ms] */
	struct commitlog_meta m = {.id = 1000, .archived_ms = 2000};
	CHECK(in(&m, &m, 1, 1500, 3000));       /* reaches over the window's start */
	CHECK(in(&m, &m, 1, 0, 1000));          /* starts at its end */
	CHECK(in(&m, &m, 1, 2000, INT64_MAX));
	CHECK(!in(&m, &m, 1, 2001, 3000));      /* archived before the window */
	/* made after the point in time, and archived after it, with one written at the point */
	struct commitlog_meta two[] = {{.id = 900, .archived_ms = 1100}, {.id = 1000, .archived_ms = 1200}};
	CHECK(in(&two[0], two, 2, 0, 999));     /* written at the point: archived first after it */
	CHECK(!in(&two[1], two, 2, 0, 999));
	/* the file's birth time is no bound: a segment copied in is born at the copy */
	m.created_ms = 1500;
	CHECK(in(&m, &m, 1, 0, 1499));
	/* ids ahead of the time (the node started with its clock ahead): one archived before the
	 * point is in, and the one written at the point (the first archived after it) too */
	struct commitlog_meta ahead[] = {{.id = 9000, .archived_ms = 2000}, {.id = 9001, .archived_ms = 2600},
					 {.id = 9002, .archived_ms = 3200}};
	CHECK(in(&ahead[0], ahead, 3, 1500, 2500));
	CHECK(in(&ahead[1], ahead, 3, 1500, 2500));
	CHECK(!in(&ahead[2], ahead, 3, 1500, 2500));
	/* the same, with the segment before the one written at the point archived late (its first
	 * archive failed; Cassandra archived it again at a restart an hour later): the one written
	 * at the point is the next after it by id, not the least id archived after the point */
	const int64_t t = 10000000, min = 60000;
	struct commitlog_meta late[] = {
		{.id = t + 86400000, .archived_ms = t - 30 * min, .mtime_ms = t - 31 * min},
		{.id = t + 86400001, .archived_ms = t + 60 * min, .mtime_ms = t - 10 * min},
		{.id = t + 86400002, .archived_ms = t + 1 * min, .mtime_ms = t + 1 * min - 500},
		{.id = t + 86400003, .archived_ms = t + 120 * min, .mtime_ms = t + 120 * min - 500}};
	for (int i = 0; i < 3; i++)
		CHECK(in(&late[i], late, 4, t - 60 * min, t));
	CHECK(!in(&late[3], late, 4, t - 60 * min, t));
}

static void test_first_id_since(void)
{
	/* the clock stepped back between two archives: s2, made after s1, seems archived before
	 * the window; ids tell */
	struct commitlog_meta v[] = {
		{.id = 100, .archived_ms = 500},  /* before the window */
		{.id = 101, .archived_ms = 1100}, /* s1: in it */
		{.id = 102, .archived_ms = 900},  /* s2: archived after s1, by a clock set back */
	};
	CHECK(commitlog_first_id_since(v, 3, 1000) == 101);
	CHECK(!in(&v[0], v, 3, 1000, INT64_MAX));
	CHECK(in(&v[1], v, 3, 1000, INT64_MAX));
	CHECK(in(&v[2], v, 3, 1000, INT64_MAX));
	CHECK(commitlog_first_id_since(v, 3, 2000) == INT64_MAX);
	CHECK(commitlog_first_id_since(v, 0, 0) == INT64_MAX);
}

/* A stored object, whole and damaged: every damage is -EBADMSG with a reason and no bytes. */
static void test_objects(void)
{
	char root[] = "/tmp/cb-test-commitlog-XXXXXX";
	struct cb_backend *b = NULL;
	CHECK(mkdtemp(root) != NULL && cb_backend_open(root, 0, NULL, &b) == 0);
	if (!b)
		return;
	unsigned char seg[4096] = {0};
	size_t n = header(seg, 7, 42, "{}");
	for (size_t i = n; i < sizeof(seg); i++)
		seg[i] = (unsigned char)(i * 7);
	struct commitlog_meta m = {.archived_ms = 1000};
	struct strbuf err = {0}, key = {0};
	CHECK(commitlog_describe("CommitLog-7-42.log", seg, sizeof(seg), &m, &err) == 0);
	snprintf(m.node, sizeof(m.node), "n1");
	CHECK(commitlog_put(b, &m, seg, sizeof(seg), 3, &err) == COMMITLOG_STORED);
	CHECK(commitlog_key("n1", "CommitLog-7-42.log", &key) == 0);
	char *obj = NULL;
	size_t len = 0;
	CHECK(cb_backend_get(b, key.buf, 1 << 20, &obj, &len) == 0);
	void *data = NULL;
	struct commitlog_meta got;
	CHECK(commitlog_parse_object(key.buf, obj, len, &got, &data, &err) == 0 && data &&
	      got.size == sizeof(seg) && !memcmp(data, seg, sizeof(seg)));
	free(data);
	/* the same object under another segment's key names another segment */
	data = NULL;
	CHECK(commitlog_parse_object("commitlogs/n1/CommitLog-7-43.log.zst", obj, len, &got, &data,
				     &err) == -EBADMSG && !data);
	CHECK(commitlog_parse_object("packs/ab/x.tar.zst", obj, len, &got, &data, &err) == -EINVAL);
	for (size_t at = 0; at < len; at += len / 97 + 1) { /* a bit flipped anywhere */
		obj[at] ^= 0x10;
		sb_free(&err);
		data = NULL;
		CHECK(commitlog_parse_object(key.buf, obj, len, &got, &data, &err) == -EBADMSG && !data &&
		      err.len > 0);
		obj[at] ^= 0x10;
	}
	for (size_t cut = 0; cut < len; cut += len / 31 + 1) { /* cut short anywhere */
		data = NULL;
		CHECK(commitlog_parse_object(key.buf, obj, cut, &got, &data, &err) == -EBADMSG && !data);
	}
	/* read against metadata of other bytes (an object replaced since its metadata was read) */
	struct commitlog_meta other = m;
	other.sha256[0] ^= 1;
	data = NULL;
	CHECK(commitlog_read(b, key.buf, &m, &data, &err) == 0 && data && !memcmp(data, seg, sizeof(seg)));
	free(data);
	data = NULL;
	CHECK(commitlog_read(b, key.buf, &other, &data, &err) == -EBADMSG && !data);
	free(obj);
	sb_free(&err);
	sb_free(&key);
	cb_backend_close(b);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	test_names();
	test_headers();
	test_window();
	test_window_clock_stepped_back_before_the_first_archive();
	test_first_id_since();
	test_objects();
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures != 0;
}
