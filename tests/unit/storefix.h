/* storefix.h: the unit tests' stores: a store in a temporary directory, backups written by the
 * store's own writer (backup.h, so real packs: seekable tar.zst with their index and trailer),
 * where a content's bytes are, and damage done to a pack as a disk would do it. */
#ifndef CASSBACKUP_TEST_STOREFIX_H
#define CASSBACKUP_TEST_STOREFIX_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "hash.h"
#include "io.h"
#include "packread.h"
#include "seekable.h"
#include "store.h"
#include "util.h"

/* Makes a temporary directory (root: 64 bytes) and an empty store at root/s; 0 or -1. */
static inline int fix_store(char *root)
{
	snprintf(root, 64, "/tmp/cb-test-fix-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	char s[128];
	snprintf(s, sizeof(s), "%s/s", root);
	struct strbuf err = {0};
	int r = store_init(s, NULL, &err);
	if (r < 0)
		fprintf(stderr, "store_init %s: %s\n", s, err.buf ? err.buf : "");
	sb_free(&err);
	return r < 0 ? -1 : 0;
}

static inline void fix_remove(const char *root)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", root);
}

struct fix_file {
	const char *name;
	const void *data;
	size_t size;
};

/* Writes backup name of table shop.orders with files f[0 .. n) into the store at dir, frames
 * of 64 KiB. 0, or -errno (said on stderr). */
static inline int fix_backup(const char *dir, const char *name, const struct fix_file *f, size_t n)
{
	struct backup_meta meta = {.name = name, .node = "n1", .cluster = "c", .snapshot_tag = "t",
				   .root_attr = {0750, 0, 0, 1}};
	struct backup_writer_opts opts = {.level = 3, .frame_size = 64u << 10};
	struct backup_table t = {.keyspace = "shop", .table = "orders",
				 .table_id = "0123456789abcdef0123456789abcdef",
				 .dirname = "orders-0123456789abcdef0123456789abcdef",
				 .keyspace_attr = {0755, 0, 0, 1}, .table_attr = {0755, 0, 0, 1}};
	struct strbuf err = {0};
	struct store *s = NULL;
	backup_writer *w = NULL;
	unsigned ti;
	struct backup_summary sum;
	int r = store_open(dir, NULL, &s, &err) ?: backup_writer_begin(s, &meta, &opts, &w, &err);
	r = r ?: backup_writer_add_table(w, &t, &ti);
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct backup_file bf = {.name = f[i].name, .size = f[i].size, .attr = {0644, 0, 0, 1},
					 .source = f[i].name};
		r = backup_writer_add_buffer(w, ti, BACKUP_TABLE_DIR, &bf, f[i].data);
	}
	r = r ?: backup_writer_commit(w, &sum);
	if (r < 0)
		fprintf(stderr, "backup %s: %s\n", name,
			w && *backup_writer_errmsg(w) ? backup_writer_errmsg(w) : err.buf ? err.buf : "");
	backup_writer_free(w);
	store_close(s);
	sb_free(&err);
	return r;
}

/* Where the store's catalog reads the content of (data, size) from; 0 or -1. */
static inline int fix_locate(struct store *s, const void *data, size_t size, unsigned char sha[32],
			     struct cb_blob_loc *loc)
{
	if (sha256_buf(data, size, sha) < 0)
		return -1;
	return catalog_blob_location(store_catalog(s), sha, size, loc) == 1 && loc->pack_id ? 0 : -1;
}

/* The file of the pack loc reads from, in the store at dir (a static buffer). */
static inline const char *fix_pack_file(const char *dir, const struct cb_blob_loc *loc)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, loc->pack_path);
	return path;
}

/* Flips one byte in the middle of the compressed frame that holds offset off of the tar stream
 * of the pack at path, as a bad disk would: the frame's checksum no longer matches. 0 or -1. */
static inline int fix_damage_frame(const char *path, uint64_t off)
{
	struct cb_io *io = NULL;
	struct seek_table *t = NULL;
	if (cb_io_open_file(path, &io) < 0)
		return -1;
	struct pack_trailer tr;
	int r = pack_table_read(io, &t, &tr);
	cb_io_close(io);
	if (r < 0)
		return -1;
	uint32_t f = seek_table_frame_at(t, off);
	uint64_t at = t->coff[f] + (t->coff[f + 1] - t->coff[f]) / 2;
	seek_table_free(t);
	chmod(path, 0600); /* packs are written read-only */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	unsigned char b;
	r = fd >= 0 && pread(fd, &b, 1, (off_t)at) == 1 ? 0 : -1;
	b ^= 0x5a;
	if (r == 0 && pwrite(fd, &b, 1, (off_t)at) != 1)
		r = -1;
	if (fd >= 0)
		close(fd);
	return r;
}

/* n bytes that do not compress, the same for the same seed. */
static inline void fix_noise(unsigned char *d, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		d[i] = (unsigned char)(x >> 7);
	}
}

#endif
