/* incremental.h: `cassbackup create --incremental`: Cassandra's incremental backups taken into
 * the store.
 *
 * With incremental_backups: true, Cassandra hard-links every sstable it flushes or streams in
 * (never a compaction's output) into <table dir>/backups/ (index sstables into
 * backups/.<index>/), and nothing removes them. An incremental backup is made on top of the
 * node's last backup (its *previous*: the last incremental of the node's last full backup, or
 * that full backup, its *base*): its tree is previous's tree plus the sstables of backups/
 * that previous lacks, an sstable whose name previous holds with other bytes renamed to a
 * fresh generation (as restore renames). So a mount, a restore or an export of it gives the
 * state at that incremental, and it reads nothing of its base.
 *
 * After the commit and the marks of the backups/ directories it removes links from (taken.h),
 * the links whose bytes it holds are removed, each only if it is still the file read (inode,
 * size, mtime): those it took in (hashed as they were read), and those previous held already
 * (the same sstable by name, size and mtime, left by a run killed between its commit and its
 * removals, or linked before the base's snapshot), hashed again and held against previous's
 * SHA-256 first. So the directory stops growing, and no link whose bytes are not in a
 * committed backup is ever removed: the commit comes first; a kill before the marks removes
 * nothing, one among the removals leaves links whose bytes are committed, for the next
 * incremental to remove. With nothing new no backup is made, and held links go only where
 * previous removed links itself (incremental_settle_held). An sstable
 * whose TOC.txt is missing, or lists a component not linked yet, is still being linked by
 * Cassandra (Tracker.maybeIncrementallyBackup -> SSTableReader.createLinks links the
 * components of the sstable's set, those TOC.txt lists, one by one in no set order): it is
 * left for the next incremental.
 */
#ifndef CASSBACKUP_INCREMENTAL_H
#define CASSBACKUP_INCREMENTAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backup.h"
#include "catalog.h"
#include "scan.h"
#include "taken.h"
#include "util.h"

/* Is incremental_backups on in CONF/cassandra.yaml? 0 when it is; -EPERM when it is off or
 * not set (Cassandra's default is off), -errno when the file cannot be read; err says which
 * in one line. */
int incremental_enabled(const char *conf_dir, struct strbuf *err);

/* What an incremental backup follows. */
struct inc_chain {
	char base[256];     /* the node's full backup */
	char previous[256]; /* base, or the last incremental made on it */
	char previous_ref[320]; /* where previous's manifest is (store.h) */
};

/* Chooses base and previous (the last backup of the node made on base, else base): base is
 * base_name, else the node's newest complete full backup; its scope (manifest.h, read from
 * its manifest) must be scope, since an incremental on a backup of fewer tables would lack the
 * older data of the others. Without base_name, the newest full backup of that scope. 0,
 * -ENOENT (no full backup of the node, none of that scope, or base_name is none of its
 * backups), -EINVAL (base_name is an incremental, incomplete, or of another scope), or -errno;
 * err says why in one line. */
struct store;
int incremental_chain(struct store *s, const char *node_key, const char *base_name,
		      const struct manifest_scope *scope, struct inc_chain *ch, struct strbuf *err);

/* Could incrementals of scopes a and b take in links of one table (do they share a table)? */
bool incremental_scopes_overlap(const struct manifest_scope *a, const struct manifest_scope *b);
/* Is every table of scope b one of scope a? */
bool incremental_scope_covers(const struct manifest_scope *a, const struct manifest_scope *b);

/* Does a chain of the node's incrementals take in links a backup of scope would take: one of
 * other tables sharing some (not all of them scope's, with skip_covered) that goes on (no
 * backup since its base removed links of its tables that it never took in)? 1 with the
 * newest such chain's newest incremental (name) and its scope (other; the caller frees it),
 * 0, or -errno. */
int incremental_other_chain(catalog *cat, const char *node_key, const struct manifest_scope *scope,
			    bool skip_covered, char name[256], struct manifest_scope *other);

typedef struct inc_plan inc_plan;

/* The incremental's tree: previous's (read from its manifest in store s) and the complete
 * sstables of scan (a scan of backups/) that previous lacks, renamed where previous holds
 * their names with other bytes. 0 or -errno with err set. */
struct store;
int incremental_plan(struct store *s, const struct inc_chain *ch, const struct scan_result *scan,
		     inc_plan **out, struct strbuf *err);
void incremental_plan_free(inc_plan *p); /* accepts NULL */

/* What the incremental records of the backups/ directories of scan's tables (taken.h): each
 * as found, and those of tables with links (in the backup) moved on by backup `by`
 * (taken_by), the marks made after the commit by incremental_mark_links. scan is kept until
 * the plan is freed. 0 or -errno with err set. */
int incremental_record_links(inc_plan *p, const struct scan_result *scan, const char *by,
			     struct strbuf *err);

/* Before the commit: the files of the directories marked that had none made ready
 * (taken_records_ready). 0 or -errno (err says which directory: no backup may be made). */
int incremental_ready_links(const inc_plan *p, struct strbuf *err);

/* After the commit, before any link is removed: the marks recorded. 0 or -errno (err says
 * which directory: no link may be removed then). */
int incremental_mark_links(const inc_plan *p, struct strbuf *err);

/* Nothing new (no backup made): keeps, among the links previous holds, those in directories
 * previous removed links from itself (its mark, if a kill kept it from making it, is made
 * now): removing them needs no record of its own. *left counts the others (a removal there
 * would be one no manifest records), left for the next incremental that takes something in.
 * 0 or -errno (err says which directory). */
int incremental_settle_held(inc_plan *p, uint64_t *left, struct strbuf *err);

struct inc_counts {
	uint64_t files, bytes; /* taken in from backups/ */
	uint64_t inherited;    /* files of previous */
	uint64_t held;         /* backups/ files previous holds already (removed once hashed) */
	uint64_t incomplete;   /* sstables still being linked, left for the next time */
	uint64_t renamed;      /* sstables renamed to a fresh generation */
	uint64_t before_emptied; /* backups/ files flushed before an emptying of their table that
				  * previous recorded (its snapshot cleared since): left in place */
};
void incremental_counts(const inc_plan *p, struct inc_counts *c);

/* Hands the plan's tables, directories and files to the writer (the new files read from
 * backups/, each checked to be the file scanned). 0 or -errno (the writer's message, or err). */
int incremental_write(backup_writer *w, const inc_plan *p, struct strbuf *err);

/* After the commit only: removes the links whose bytes the backup holds (see above), each
 * only if it is still the file that was read. *removed counts them; each link left (changed, or a failure)
 * is handed to report with its path and -errno (-ESTALE: it changed since it was read;
 * -EILSEQ: other bytes than the backup holds under its name; -ENODATA: a link the backup
 * followed holds whose bytes are in no pack of cat's store, so it stays). 0, or the first -errno. */
int incremental_remove_links(catalog *cat, const inc_plan *p, uint64_t *removed,
			     void (*report)(void *ctx, const char *path, int err), void *ctx);

/* `create --clear-incremental-links`, after a full backup of snapshot snap (c->snap) was
 * committed and marked the backups/ directories c->marked (taken.h): removes each link of
 * c->links (a scan of backups/) in those directories written before the snapshot was taken
 * (mtime before c->snapshot_ns; its ctime cannot tell, as the snapshot's own hard link to it
 * moved it) whose bytes the store holds: the inode of a file the snapshot backed up, else a
 * content the catalog knows (hashed now). Each one removed only while it is the file looked
 * at. *removed and *kept count them; a link that could not be judged or removed goes to
 * report. 0, or the first -errno. */
struct links_cleared {
	const struct scan_result *snap, *links;
	char *const *marked;
	size_t nmarked;
	int64_t snapshot_ns;
};
int incremental_clear_links(catalog *cat, const struct links_cleared *c, uint64_t *removed,
			    uint64_t *kept, void (*report)(void *ctx, const char *path, int err),
			    void *ctx);

#endif
