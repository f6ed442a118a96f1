/* commitlog.h: Cassandra commitlog segments in a store, for point-in-time restore.
 *
 * Cassandra hands each commitlog segment it switches out to archive_command (its
 * CommitLogArchiver); `cassbackup archive-commitlog` stores it here, one object a segment:
 *
 *   commitlogs/<node>/<name>.zst     name as Cassandra names it: CommitLog-<version>-<id>.log
 *
 * The object is a zstd skippable frame holding the segment's metadata as JSON (node, host id,
 * name, size, SHA-256, descriptor version and id, archive time, the file's mtime), followed by
 * the segment as one zstd frame with content size and checksum. Plain `zstd -d` skips the
 * metadata and gives the segment's bytes. An object is written with one exclusive put, so it
 * is there whole or not at all, and never replaced.
 *
 * Times: a segment's id is Cassandra's idBase (System.currentTimeMillis() when the node
 * started, or the highest id found plus one) plus a counter, so it is at most the time its
 * first mutation was written; its archive time (this host's clock, the clock Cassandra stamps
 * mutations with) is at least the time of its last. A segment covers [id, archived_ms].
 * On a node that has run for long every id is about its start, so the span reaches back far;
 * the file's birth time would be closer, but is not a bound: a segment copied into the
 * commitlog directory (a disk moved to new hardware) is born at the copy, and Cassandra
 * archives the segments it finds there at startup. It is kept, for the record only.
 */
#ifndef CASSBACKUP_COMMITLOG_H
#define CASSBACKUP_COMMITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "util.h"

#define COMMITLOG_PREFIX "commitlogs/"
/* Larger than any segment Cassandra writes (commitlog_segment_size is at most 2 GiB - 1). */
#define COMMITLOG_MAX_SIZE (UINT64_C(2) << 30)
/* CommitLogDescriptor.VERSION_30: the oldest layout whose header this reads (3.0: 6, 4.0: 7) */
#define COMMITLOG_MIN_VERSION 6

/* The descriptor in a segment's name: CommitLog-<version>-<id>.log (or CommitLog-<id>.log,
 * before Cassandra 1.2, version 0). 0, or -EINVAL when name is not a segment's. */
int commitlog_parse_name(const char *name, int32_t *version, int64_t *id);

/* The descriptor in a segment's header (CommitLogDescriptor.writeHeader, version 3 and
 * later): int32 version, int64 id, uint16 length of the parameters, the parameters (JSON),
 * int32 CRC32 of the version, the id's low and high 32 bits and the parameters' length (each
 * as a big-endian int) and the parameters. Big-endian throughout. 0, or -EBADMSG with one
 * phrase in err (too short, a CRC that does not match). */
int commitlog_parse_header(const void *buf, size_t len, int32_t *version, int64_t *id,
			   struct strbuf *err);

/* What the store keeps with a segment. Strings are NUL-terminated; node and name are
 * name_is_component (checked where read). */
struct commitlog_meta {
	char node[256];
	char host_id[64]; /* "" when unknown */
	char name[256];
	uint64_t size;
	unsigned char sha256[32];
	int32_t version;
	int64_t id;
	int64_t archived_ms; /* when archive-commitlog stored it (this host's clock) */
	int64_t mtime_ms;    /* the segment file's modification time then */
	int64_t created_ms;  /* its birth time (statx), 0 when the file system does not keep one;
			      * not a bound of its span (see above) */
};

/* commitlogs/<node>/<name>.zst; -EINVAL when node or name cannot be one (name must be a
 * segment's). */
int commitlog_key(const char *node, const char *name, struct strbuf *key);

/* Checks a segment before it is stored: name is a segment's, data starts with a header whose
 * version and id are the name's (a header that does not parse is refused: Cassandra would
 * refuse it too). Fills m's version, id, size and sha256. 0 or -EINVAL/-EBADMSG with err. */
int commitlog_describe(const char *name, const void *data, size_t len, struct commitlog_meta *m,
		       struct strbuf *err);

enum commitlog_put_result {
	COMMITLOG_STORED = 0,  /* written now */
	COMMITLOG_PRESENT = 1, /* the store had the same bytes under this name already */
};

/* Stores the segment data (len bytes, described by m: commitlog_describe, then node, host id
 * and times) compressed at zstd level level. COMMITLOG_STORED or COMMITLOG_PRESENT; -EEXIST
 * when the store holds other bytes under this node and name (err says so), or the backend's
 * error (cb_backend_why). Nothing is listed under the key unless the whole object is. */
int commitlog_put(struct cb_backend *b, const struct commitlog_meta *m, const void *data,
		  size_t len, int level, struct strbuf *err);

/* What the store holds under segment m's key (commitlogs/<node>/<name>.zst): COMMITLOG_PRESENT
 * (the same bytes), -ENOENT (nothing), -EEXIST (other bytes, or an object that does not read:
 * err says which), or the backend's error. */
int commitlog_find(struct cb_backend *b, const struct commitlog_meta *m, struct strbuf *err);

/* Reads the metadata of the object at key (commitlogs/<node>/<name>.zst), which must name
 * the same node and segment as the key. -ENOENT, -EBADMSG (err says why), or -errno. */
int commitlog_read_meta(struct cb_backend *b, const char *key, struct commitlog_meta *m,
			struct strbuf *err);

/* Parses a whole stored object (len bytes at obj) read from key (commitlogs/<node>/<name>.zst):
 * its metadata into m, which must name the key's node and segment, and its segment into *data
 * (malloc'd, the caller's), checked against the metadata's size and SHA-256. -EINVAL for a key
 * that is not a segment's; -EBADMSG with err for bytes that are not a whole, intact object. */
int commitlog_parse_object(const char *key, const void *obj, size_t len, struct commitlog_meta *m,
			   void **data, struct strbuf *err);

/* Reads a segment's bytes: *data (malloc'd, the caller's) of m->size bytes. -EBADMSG when the
 * object does not parse (commitlog_parse_object) or holds another segment than m says. */
int commitlog_read(struct cb_backend *b, const char *key, const struct commitlog_meta *m,
		   void **data, struct strbuf *err);

struct commitlog_list {
	struct commitlog_meta *v; /* by node, then id */
	size_t n;
	unsigned bad;             /* objects skipped: their metadata did not read (err says) */
};

/* The keys of every segment object in the store (commitlogs/<node>/<name>.zst with a segment's
 * name), sorted: *keys (each and the array the caller's, ptrv style) and *n. 0 or the
 * listing's -errno. */
int commitlog_keys(struct cb_backend *b, char ***keys, size_t *n);

/* Lists the segments of node (NULL: every node), reading each one's metadata. An object whose
 * metadata cannot be read is counted in bad and named in err ("; "-separated) when strict is
 * false; with strict it fails the call (a decision that deletes must not take "unreadable" for
 * "absent"). */
int commitlog_list(struct cb_backend *b, const char *node, bool strict, struct commitlog_list *out,
		   struct strbuf *err);
void commitlog_list_free(struct commitlog_list *l);

/* The segments that record host id host_id under node names other than node (archive-commitlog
 * run with another --node than create was, or a host renamed since), from the metadata of every
 * segment of the store (as prune reads it). Those whose metadata does not read are counted in
 * out->bad and named in err ("; "-separated): whose they are is not known. 0 with out (by
 * node, then id), or -errno with err. */
int commitlog_list_host_elsewhere(struct cb_backend *b, const char *node, const char *host_id,
				  struct commitlog_list *out, struct strbuf *err);

/* Where the commitlog window of a backup starts, in ms: when the first of its tables was
 * snapshotted (the oldest of its snapshot manifest.json files; without them, Cassandra before
 * 2.2, its newest file), at most its creation time, less COMMITLOG_FLUSH_SLACK_MS for that
 * table's flush. nodetool snapshot flushes the tables
 * one after another, each from a memtable switched when its flush began: a write made after
 * that is in no sstable of the backup, and in a segment archived after it. Mutations the
 * sstables may lack are in the segments archived from then on; a segment from a little
 * earlier is replayed in vain, never missed. The one rule point-in-time restore and
 * retention share. */
#define COMMITLOG_FLUSH_SLACK_MS (10 * 60 * 1000)
struct manifest;
struct store;
int64_t commitlog_backup_start_ms(const struct manifest *m);

/* The greatest id among the segments of node (commitlogs/NODE, their names) that b holds now,
 * or -1 when it holds none, into *seen_id. create --take-snapshot records it before the
 * snapshot (manifest.h commitlog_seen_id): a node's ids only grow (commitlog_first_id_since), so every segment with
 * a greater id was switched out after, the one written while the snapshot was taken among
 * them, whatever the node's clock said when it was archived. A listing that missed some can
 * only make it smaller, which takes more. 0, or -errno (the listing failed). */
int commitlog_seen_id(struct cb_backend *b, const char *node, int64_t *seen_id);

/* Where a backup's commitlog window starts. */
#define COMMITLOG_SEEN_UNKNOWN INT64_MAX /* no commitlog_seen_id recorded: no id bound */
struct commitlog_start {
	int64_t ms;      /* commitlog_backup_start_ms; INT64_MIN: every segment */
	int64_t seen_id; /* its commitlog_seen_id (-1: the store held none), or
			  * COMMITLOG_SEEN_UNKNOWN */
};

/* Where the replay for the backup of manifest m (read from s) starts: an incremental takes
 * in flushed sstables without a flush of its own, so writes still in memtables then are in
 * segments that may have been archived before it, and its window starts where its full
 * backup's does (commitlog_backup_start_ms of that manifest, read from s in either layout, and
 * its commitlog_seen_id). Mutations replayed over sstables that hold them already are
 * harmless (same timestamps). 0 with *from, or -ENOENT (the full backup is not in s) or the
 * read's error, with err. */
int commitlog_window_start(struct store *s, const struct manifest *m, struct commitlog_start *from,
			   struct strbuf *err);

/* Retention: a kept backup needs the segments of its node from the start of its window up to
 * the next backup of the node, the newest one every segment after it. So a segment is due to
 * go when it is in the window of no backup of its node name, nor of its host id under another
 * name (a host renamed since: its older backups' point-in-time restores take it,
 * commitlog_list_host_elsewhere), from the earliest start among them (the earliest snapshot,
 * not the backup made first: an older snapshot may be backed up after a newer one), by
 * commitlog_in_window over its node's segments. A segment of no backup's node or host keeps
 * (nothing tells which backup it would serve: a node name that differs between create and
 * archive-commitlog must not lose them). Sets due[i] for the segments of l that are due, from
 * the catalog of s (which the caller brought up to date from a complete reading of backups/)
 * and the manifests of the backups. 0 or -errno with err. */
int commitlog_retention(struct store *s, const struct commitlog_list *l, bool *due, struct strbuf *err);

/* The least id among the n segments v (one node's) archived at or after from_ms; INT64_MAX
 * when none was. A node's ids only grow (Cassandra's idBase is the clock, or the highest id it
 * found plus one when the clock is behind that), and a segment is archived after the ones made
 * before it: so every segment from that id on was archived after from_ms too, whatever its
 * archive time says (the node's clock stepped back between two archives). */
int64_t commitlog_first_id_since(const struct commitlog_meta *v, size_t n, int64_t from_ms);

/* The window [from, to_ms] (to_ms INT64_MAX: open) over one node's segments. */
struct commitlog_window {
	int64_t from_ms, to_ms;
	int64_t first_id;    /* commitlog_first_id_since(from_ms) */
	int64_t seen_id;     /* the start's: ids above it were switched out after it */
	int64_t spanning_id; /* the segment written at to_ms: the least id above every segment
			      * archived, or last written (mtime), by then (INT64_MAX: none) */
};
void commitlog_window_of(const struct commitlog_meta *v, size_t n, const struct commitlog_start *from,
			 int64_t to_ms, struct commitlog_window *w);

/* Does segment m (of the node of w) hold mutations of the window? It was archived at or after
 * from_ms, or made then or after (its id: a run that started after from_ms), or its id is
 * first_id or later, or above seen_id (a node clock stepped back after
 * the snapshot, before the first archive since: first_id cannot tell then, the id recorded
 * before the snapshot can); and it was made (its id) or archived at or before
 * to_ms, or it is the one written at to_ms (spanning_id: ids ahead of real time, as a node
 * that started with its clock ahead keeps them, say nothing of when it was written). A
 * segment taken in vain costs a replay of mutations Cassandra skips (their time is after the
 * point, or its sstables hold them); one left out loses its writes. */
bool commitlog_in_window(const struct commitlog_meta *m, const struct commitlog_window *w);

/* How far before a segment's last write (by the same clock: a file's coarse timestamp) the
 * next run's first id may be. */
#define COMMITLOG_RUN_START_SLACK_MS 1000
/* More ids than this between two segments is a restart whatever the times say: as many missing
 * segments would be 32 TB of writes, and a restart 17 minutes or more after the run began
 * jumps at least as far. */
#define COMMITLOG_GAP_MAX 1000000

/* In one node's segments v (by id), the first i from `from` on where v[i] and v[i + 1] are of
 * one run of the node with the segments between them missing (a replay of both would skip
 * their writes and apply later ones); -1 when none is found. A segment that began a later run
 * (a restart) follows any id: what the previous run wrote last cannot be told missing. */
ssize_t commitlog_next_gap(const struct commitlog_meta *v, size_t n, size_t from);

#endif
