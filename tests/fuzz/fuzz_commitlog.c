/* libFuzzer target: an archived commitlog segment object (commitlogs/NODE/SEGMENT.zst) as read
 * from a store: its metadata frame, its segment frame, and the segment's Cassandra header. */
#include "commitlog.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define KEY "commitlogs/node1/CommitLog-7-1700000000000.log.zst"

/* A segment frame may legitimately claim up to 2 GiB; the fuzzer's memory is smaller. The
 * segment's frame follows the skippable frames (metadata, its checksum). */
static int too_big_to_decode(const unsigned char *data, size_t size)
{
	size_t at = 0;
	while (size - at >= 8 && (data[at] & 0xf0) == 0x50 && data[at + 1] == 0x2a &&
	       data[at + 2] == 0x4d && data[at + 3] == 0x18) {
		size_t len = (size_t)data[at + 4] | (size_t)data[at + 5] << 8 |
			     (size_t)data[at + 6] << 16 | (size_t)data[at + 7] << 24;
		if (len > size - at - 8)
			return 0;
		at += 8 + len;
	}
	unsigned long long cs = ZSTD_getFrameContentSize(data + at, size - at);
	return cs != ZSTD_CONTENTSIZE_ERROR && cs != ZSTD_CONTENTSIZE_UNKNOWN && cs > (64u << 20);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	int32_t version;
	int64_t id;
	struct strbuf err = {0};
	commitlog_parse_header(data, size, &version, &id, &err); /* a segment's own header */
	sb_free(&err);
	if (too_big_to_decode(data, size))
		return 0;
	struct commitlog_meta m;
	void *seg = NULL;
	int r = commitlog_parse_object(KEY, data, size, &m, &seg, &err);
	if (r == 0) {
		if (strcmp(m.node, "node1") || strcmp(m.name, "CommitLog-7-1700000000000.log") ||
		    m.id != 1700000000000)
			abort();
		struct strbuf why = {0};
		commitlog_parse_header(seg, m.size, &version, &id, &why);
		sb_free(&why);
		free(seg);
	} else if (seg || !err.len) {
		abort(); /* a failure hands out nothing and says why */
	}
	sb_free(&err);
	return 0;
}
