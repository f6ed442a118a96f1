/* taken.h: who last removed links from a table's backups/ directory.
 *
 * Cassandra hard-links each flushed sstable into <table>/backups/ once, and the backup that
 * takes a link in removes it (an incremental, or a full backup made with
 * --clear-incremental-links). An incremental is whole only if no link flushed since its
 * previous backup went meanwhile: no backup of another chain (another full backup, another
 * store) and no backup since forgotten removed one. The store cannot tell (a backup that
 * removed links can be forgotten, copied elsewhere, or dated by a wrong clock), so the
 * directory tells: TAKEN_FILE in each backups/ directory says which backup made the last
 * removal there, and how many there were.
 *
 *   cassbackup-taken 2 EPOCH N BY
 *
 * EPOCH: 16 hex digits drawn when the file is first written (a file removed by hand and
 * written again never meets an old state by chance); N: removals so far; BY: "<store id>:<ref>"
 * of the backup that made the last one. Its *state* is "EPOCH N BY"; "EPOCH 0 -" for a file
 * made ready before a first removal; "- 0 -" when there is no file. Each backup records, per
 * backups/ directory of its tables, the state it left there (manifest links "left") and,
 * where it removes links, the state it found ("found": never "- 0 -", since a file is made
 * ready first, so that a file removed by hand never reads as found). Its manifest is
 * committed, then the file is moved from found to left, then the links go: a kill between
 * them leaves found, and nothing removed. The next incremental of the chain goes on only
 * when each directory is as its previous backup left it or found it (left with no file: or
 * made ready since; a directory it has no record of: never marked); anything else means
 * links went that the chain lacks. A file of format 1 (cassbackup-taken 1 N M CHAIN) reads
 * as the state "v1 N CHAIN".
 */
#ifndef CASSBACKUP_TAKEN_H
#define CASSBACKUP_TAKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"
#include "util.h"

#define TAKEN_FILE ".cassbackup-taken"
#define TAKEN_BY_MAX 400
#define TAKEN_NOBODY "-" /* BY of a file made ready, N 0 */

struct links_taken {
	char epoch[17];         /* "" when there is no file (n 0) */
	uint64_t n;
	char by[TAKEN_BY_MAX];  /* "" when there is no file */
	int64_t marked_ns;      /* taken_read: the file's mtime, when the last mark was written
				 * (not part of the state) */
	int read_err;           /* scan.c: -errno when the file could not be read (not part of
				 * the state, which is then n 0) */
};

/* Reads TAKEN_FILE in directory dirfd (a backups/ directory): 0 (n 0 when there is none),
 * -EBADMSG when it is not one this program wrote, or -errno. */
int taken_read(int dirfd, struct links_taken *t);

/* The name of backup ref of the store of id store_id in the file, into by. */
int taken_by(const char *store_id, const char *ref, char by[TAKEN_BY_MAX]);

/* Was t read from a file of format 1 (an older cassbackup's)? */
bool taken_is_format1(const struct links_taken *t);

/* Who made the last removal t names, in words, into sb: "backup REF" (of the store of id
 * store_id), "backup REF of store ID", or, for a file of format 1, the chain of its full
 * backup. */
int taken_describe_by(const struct links_taken *t, const char *store_id, struct strbuf *sb);

/* The state as a manifest records it ("EPOCH N BY", "- 0 -"), and back (-EBADMSG). */
int taken_format(const struct links_taken *t, struct strbuf *out);
int taken_parse(const char *s, struct links_taken *t);
bool taken_same(const struct links_taken *a, const struct links_taken *b);

/* The state after backup `by` removes links from a directory in state was. */
int taken_next(const struct links_taken *was, const char *by, struct links_taken *now);

/* How a backups/ directory stands against the backup an incremental follows. */
enum taken_verdict {
	TAKEN_AS_LEFT,      /* as that backup left it */
	TAKEN_AS_FOUND,     /* as that backup found it: committed, killed before it marked */
	TAKEN_NEVER,        /* no record of it, and never marked */
	TAKEN_SINCE,        /* links were removed there since */
};

/* The record of dir among links (a table's, in the manifest of the backup followed; n of
 * them), or NULL. */
const struct manifest_links *taken_record(const struct manifest_links *links, size_t n,
					  const char *dir);

/* The verdict for directory dir, now in state now, against rec (taken_record; NULL: none). */
enum taken_verdict taken_judge(const struct manifest_links *rec, const struct links_taken *now);

/* Moves dir's TAKEN_FILE from was to now (replaced atomically and durably), under an
 * exclusive flock of dir. 0 (also when it says now already), -EAGAIN when it says neither
 * (another backup marked it meanwhile), or -errno. */
int taken_mark(const char *dir, const struct links_taken *was, const struct links_taken *now);

/* What a failure of taken_read or taken_mark means, in words (static). */
const char *taken_strerror(int err);

/* A table's record of its backups/ directories for its backup's manifest, and the marks to
 * make once that is committed. */
struct taken_records {
	struct manifest_links *v; /* the manifest's entries */
	struct links_taken *found, *left;
	bool *marks;              /* found -> left, by this backup */
	bool *readies;            /* no file -> found (ready, N 0), before the commit */
	size_t n;
};

/* The record of directories dirs, in states found (n of each): each left as found, or, when
 * by is not NULL and removes[i] (NULL: every one) says the backup removes links there, moved
 * on by it (taken_next). 0 or -errno; freed with taken_records_free either way. */
int taken_records_make(char *const *dirs, const struct links_taken *found, size_t n,
		       const char *by, const bool *removes, struct taken_records *out);
void taken_records_free(struct taken_records *r);

/* Before the commit: makes ready the files of r's directories that had none (a state
 * that cannot come back once the file is removed). 0, or the first failure's -errno, its
 * directory into *dir (taken_mark). */
int taken_records_ready(const struct taken_records *r, const char **dir);

/* After the commit: makes the marks of r. 0, or the first failure's -errno, its directory
 * into *dir (taken_mark). */
int taken_records_mark(const struct taken_records *r, const char **dir);

#endif
