/* sstable.h: what cassbackup knows of Cassandra's on-disk names and checksums.
 *
 * Component files are named <version>-<generation>-<big|bti>-<Component> (3.0 to 5.0; the
 * generation is a number or, from 4.1, a 28-character time-based id) or, in 2.x,
 * <ks>-<table>-<version>-<generation>-<Component>. Components never contain '-'.
 * The digest of Data.db is in Digest.crc32 (CRC32, decimal), Digest.adler32 (Adler-32, decimal)
 * or Digest.sha1 (2.1: an Adler-32 in decimal; 2.0: sha1sum's "<40 hex>  <file>").
 */
#ifndef CASSBACKUP_SSTABLE_H
#define CASSBACKUP_SSTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* For a component file name, the length of its sstable prefix ("nb-1-big-"); 0 when the name
 * is not an sstable component (manifest.json, schema.cql, ...). */
size_t sstable_prefix_len(const char *name);

/* The generation field of a prefix: start and length within name. false if none. */
bool sstable_generation(const char *name, size_t *start, size_t *len);

/* name with its generation replaced by gen, into out. */
int sstable_with_generation(const char *name, uint64_t gen, struct strbuf *out);

/* A numeric generation, or 0 when the generation is not a number (time-based ids). */
uint64_t sstable_numeric_generation(const char *name);

/* Is name an sstable's Statistics.db? Cassandra rewrites it in place
 * (MetadataSerializer.rewriteSSTableMetadata: nodetool import resets its level and repair
 * state, incremental repair marks it repaired). */
bool sstable_is_statistics(const char *name);

/* Is name a component Cassandra rewrites in place, so that the same sstable may hold other
 * bytes there than its backup: Statistics.db (above), or Summary.db (its index summary
 * resampled: SSTableReader.cloneWithNewSummarySamplingLevel saves it again)? */
bool sstable_component_rewritten_in_place(const char *name);

/* Does name in directory dfd (AT_FDCWD: a path) stand for such a component Cassandra rewrote:
 * a regular file, not a symlink, and not empty (a rewrite never empties one: an empty one is
 * damage)? Its bytes are not compared. */
bool sstable_rewritten_component_there(int dfd, const char *name);

enum digest_kind { DIGEST_NONE, DIGEST_CRC32, DIGEST_ADLER32, DIGEST_SHA1 };

/* The expected digest of Data.db from the contents of a Digest.* file of the given name. */
struct digest {
	enum digest_kind kind;
	uint32_t value;          /* CRC32 or Adler-32 */
	unsigned char sha1[20];  /* DIGEST_SHA1 */
};
/* Parses; -EINVAL with a reason in err when the contents make no sense. */
int digest_parse(const char *file_name, const char *contents, size_t len, struct digest *d,
		 struct strbuf *err);
/* The Digest.* kind a file name is, or DIGEST_NONE. */
enum digest_kind digest_kind_of(const char *name);

/* Streaming checksums of a Data.db. */
struct data_sums {
	uint32_t crc32, adler32;
	unsigned char sha1[20];
	void *sha1_ctx;
};
int data_sums_init(struct data_sums *s, bool want_sha1);
void data_sums_update(struct data_sums *s, const void *buf, size_t len);
void data_sums_final(struct data_sums *s);

/* Calls cb for each component line of a TOC.txt (trimmed, empty lines skipped). */
int toc_each(const char *contents, size_t len, int (*cb)(void *ctx, const char *component), void *ctx);

/* Calls cb for each string in the "files" array of a snapshot manifest.json (any of the 4.0
 * json-simple, 4.1 or 5.0 Jackson styles). -EINVAL when there is no such array. */
int manifest_files_each(const char *json, size_t len, int (*cb)(void *ctx, const char *file), void *ctx);

#endif
