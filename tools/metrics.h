/* metrics.h: what create, prune and check did, for Prometheus, through node_exporter's textfile
 * collector (--collector.textfile.directory): metrics_file = PATH in the configuration, PATH
 * ending in .prom in that directory.
 *
 * The file holds the text exposition format (version 0.0.4) and belongs to cassbackup: each run
 * reads it, replaces the samples of its own operation and labels, adds to its counters, keeps
 * every other sample (a prune leaves create's metrics as they were), and puts the result in
 * place atomically (a temporary file in the same directory, then rename, as node_exporter's
 * documentation asks), under a lock (PATH.lock) so that a create and a prune finishing together
 * both count. Samples of metric names it does not know are dropped.
 *
 * Labels: operation ("create": a full backup, "incremental": create --incremental, "prune",
 * "check") and store; a create's also cluster, datacenter,
 * node and host_id (when known): what its backup records, the same on a failed run. */
#ifndef CASSBACKUP_METRICS_H
#define CASSBACKUP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* A figure of a successful run (metrics_run.values); each is written as a gauge of the last
 * successful run and, where it adds up, a counter across runs. */
enum metrics_value {
	METRIC_READ_BYTES,         /* create: of the snapshot; prune: rewritten; check: data read */
	METRIC_WRITTEN_BYTES,      /* to the store */
	METRIC_DEDUPLICATED_BYTES, /* create: of files the store held already */
	METRIC_FILES,              /* create: files backed up */
	METRIC_FREED_BYTES,        /* prune */
	METRIC_PROBLEMS,           /* check: problems found (also on a failed check) */
	METRIC_NVALUES,
};

struct metrics_run {
	const char *operation; /* "create", "incremental", "prune", "check" */
	const char *store;
	const char *cluster, *datacenter, *node, *host_id; /* create only; NULL or "" when unknown */
	bool ok;
	double ended;   /* wall clock, seconds since the epoch */
	double seconds; /* how long it ran */
	bool has[METRIC_NVALUES];
	uint64_t values[METRIC_NVALUES];
};

/* Records run in the file at path as above. 0, or -errno with err saying what failed (the
 * file as it was is left in place). */
int metrics_record(const char *path, const struct metrics_run *run, struct strbuf *err);

/* metrics_record into the configuration's metrics_file, if any, with the wall clock now as
 * run->ended; a failure is said in one line ("..., ignoring"): a backup is not failed for
 * its metrics. */
void metrics_record_configured(struct metrics_run *run);

/* Puts text in place of the file at path atomically: a temporary file beside it (path.tmp.XXXXXX,
 * mode mode, fsync'd), then rename. Also used by install-timer. 0 or -errno (nothing changed;
 * the temporary file is removed). */
int replace_file(const char *path, const char *text, size_t len, mode_t mode);

/* Sets value v of run. */
static inline void metrics_set(struct metrics_run *run, enum metrics_value v, uint64_t x)
{
	run->has[v] = true;
	run->values[v] = x;
}

#endif
