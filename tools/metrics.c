/* metrics.c: see metrics.h. */
#include "metrics.h"
#include "conf.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What a family's sample of this run is made from. */
enum source {
	SRC_ENDED,     /* every run: when it ended */
	SRC_SUCCESS,   /* a successful run: when it ended (a failed one leaves it as it was) */
	SRC_OK,        /* every run: 1 or 0 */
	SRC_DURATION,  /* every run: seconds */
	SRC_RUNS,      /* counter: +1 */
	SRC_FAILURES,  /* counter: +1 on a failed run, +0 otherwise (so it exists from the first) */
	SRC_LAST,      /* a value the run reported (metrics_set) */
	SRC_TOTAL,     /* counter: + a value the run reported */
};

static const struct family {
	const char *name, *type, *help;
	enum source src;
	enum metrics_value v;
} families[] = {
	{"cassbackup_last_run_timestamp_seconds", "gauge",
	 "When the last run of the operation ended, successful or not.", SRC_ENDED, 0},
	{"cassbackup_last_success_timestamp_seconds", "gauge",
	 "When the last successful run of the operation ended.", SRC_SUCCESS, 0},
	{"cassbackup_last_run_success", "gauge", "1 when the last run succeeded, 0 when it failed.",
	 SRC_OK, 0},
	{"cassbackup_last_run_duration_seconds", "gauge", "How long the last run took.", SRC_DURATION, 0},
	{"cassbackup_runs_total", "counter", "Runs of the operation.", SRC_RUNS, 0},
	{"cassbackup_failures_total", "counter", "Runs of the operation that failed.", SRC_FAILURES, 0},
	{"cassbackup_last_read_bytes", "gauge",
	 "Bytes the last successful run read (create: the snapshot; prune: blobs rewritten; check: "
	 "pack data read).", SRC_LAST, METRIC_READ_BYTES},
	{"cassbackup_last_written_bytes", "gauge", "Bytes the last successful run wrote to the store.",
	 SRC_LAST, METRIC_WRITTEN_BYTES},
	{"cassbackup_last_deduplicated_bytes", "gauge",
	 "Bytes of files the last successful create found in the store already.", SRC_LAST,
	 METRIC_DEDUPLICATED_BYTES},
	{"cassbackup_last_files", "gauge", "Files the last successful create backed up.", SRC_LAST,
	 METRIC_FILES},
	{"cassbackup_last_freed_bytes", "gauge", "Bytes of the store the last successful prune freed.",
	 SRC_LAST, METRIC_FREED_BYTES},
	{"cassbackup_check_problems", "gauge", "Problems the last completed check found.", SRC_LAST,
	 METRIC_PROBLEMS},
	{"cassbackup_read_bytes_total", "counter", "Bytes read by successful runs.", SRC_TOTAL,
	 METRIC_READ_BYTES},
	{"cassbackup_written_bytes_total", "counter", "Bytes written to the store by successful runs.",
	 SRC_TOTAL, METRIC_WRITTEN_BYTES},
	{"cassbackup_deduplicated_bytes_total", "counter",
	 "Bytes of files successful creates found in the store already.", SRC_TOTAL,
	 METRIC_DEDUPLICATED_BYTES},
	{"cassbackup_files_total", "counter", "Files backed up by successful creates.", SRC_TOTAL,
	 METRIC_FILES},
	{"cassbackup_freed_bytes_total", "counter", "Bytes of the store freed by successful prunes.",
	 SRC_TOTAL, METRIC_FREED_BYTES},
};

struct sample {
	char *key; /* name{labels}, as written */
	double value;
};

struct samples {
	struct sample *v;
	size_t n;
};

static void samples_free(struct samples *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].key);
	free(s->v);
	*s = (struct samples){0};
}

static struct sample *samples_find(struct samples *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].key, key))
			return &s->v[i];
	return NULL;
}

/* Sets key to value (a new key goes last). 0 or -ENOMEM. */
static int samples_set(struct samples *s, const char *key, double value)
{
	struct sample *e = samples_find(s, key);
	if (e) {
		e->value = value;
		return 0;
	}
	struct sample *v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	if (!(v[s->n].key = strdup(key)))
		return -ENOMEM;
	v[s->n++].value = value;
	return 0;
}

/* Does key belong to family f (its name, then '{' or the end)? */
static bool key_of(const char *key, const struct family *f)
{
	size_t n = strlen(f->name);
	return !strncmp(key, f->name, n) && (key[n] == '{' || key[n] == '\0');
}

static bool key_known(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(families); i++)
		if (key_of(key, &families[i]))
			return true;
	return false;
}

/* Takes the samples of one line of the file as written before: "name{labels} value". Comments,
 * blank lines, unknown names and lines that do not parse are dropped. */
static int parse_line(struct samples *s, char *l)
{
	l[strcspn(l, "\r")] = '\0';
	char *sp = strrchr(l, ' ');
	if (l[0] == '#' || !sp || sp == l)
		return 0;
	*sp = '\0';
	char *end;
	errno = 0;
	double v = strtod(sp + 1, &end);
	if (errno || *end || end == sp + 1 || !key_known(l))
		return 0;
	return samples_find(s, l) ? 0 : samples_set(s, l, v);
}

/* The samples of the file at path (none when it does not exist). 0 or -errno. */
static int read_samples(const char *path, struct samples *s)
{
	char *text = NULL;
	int r = read_small_file(path, 16 << 20, &text, NULL);
	if (r == -ENOENT)
		return 0;
	for (char *l = text; r == 0 && l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		r = parse_line(s, l);
		l = nl ? nl + 1 : NULL;
	}
	free(text);
	return r;
}

/* A label value in the exposition format: backslash, double quote and newline escaped. */
static int sb_label(struct strbuf *sb, const char *name, const char *value, bool first)
{
	int r = sb_printf(sb, "%s%s=\"", first ? "" : ",", name);
	for (const char *p = value; r == 0 && *p; p++)
		r = *p == '\\' ? sb_puts(sb, "\\\\") : *p == '"' ? sb_puts(sb, "\\\"")
			: *p == '\n' ? sb_puts(sb, "\\n") : sb_append(sb, p, 1);
	return r ?: sb_puts(sb, "\"");
}

/* "{operation=...,store=...[,cluster=...,datacenter=...,node=...,host_id=...]}" */
static int labels_of(const struct metrics_run *run, struct strbuf *sb)
{
	int r = sb_puts(sb, "{") ?: sb_label(sb, "operation", run->operation, true) ?:
		sb_label(sb, "store", run->store ? run->store : "", false);
	const char *const names[] = {"cluster", "datacenter", "node", "host_id"};
	const char *const values[] = {run->cluster, run->datacenter, run->node, run->host_id};
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(names); i++)
		if (values[i] && *values[i])
			r = sb_label(sb, names[i], values[i], false);
	return r ?: sb_puts(sb, "}");
}

/* This run's sample of f into *value: false when the run has none for it. old: the sample
 * as it was (NULL: none). */
static bool sample_of(const struct family *f, const struct metrics_run *run, const struct sample *old,
		      double *value)
{
	double before = old ? old->value : 0;
	switch (f->src) {
	case SRC_ENDED: *value = run->ended; return true;
	case SRC_SUCCESS: *value = run->ended; return run->ok;
	case SRC_OK: *value = run->ok; return true;
	case SRC_DURATION: *value = run->seconds; return true;
	case SRC_RUNS: *value = before + 1; return true;
	case SRC_FAILURES: *value = before + !run->ok; return true;
	case SRC_LAST: *value = (double)run->values[f->v]; return run->has[f->v];
	case SRC_TOTAL: *value = before + (double)run->values[f->v]; return run->has[f->v];
	}
	return false;
}

/* Merges this run into s. 0 or -ENOMEM. */
static int merge_run(struct samples *s, const struct metrics_run *run)
{
	struct strbuf labels = {0}, key = {0};
	int r = labels_of(run, &labels);
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(families); i++) {
		key.len = 0;
		r = sb_printf(&key, "%s%s", families[i].name, labels.buf);
		double v;
		if (r == 0 && sample_of(&families[i], run, samples_find(s, key.buf), &v))
			r = samples_set(s, key.buf, v);
	}
	sb_free(&labels);
	sb_free(&key);
	return r;
}

/* A value as the exposition format takes it: integers as integers; the others are times and
 * durations, kept to the millisecond. */
static int sb_value(struct strbuf *sb, double v)
{
	if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) /* 2^53 */
		return sb_printf(sb, "%.0f", v);
	return sb_printf(sb, "%.3f", v);
}

/* The file's text: each family with samples, HELP and TYPE first, in the table's order. */
static int format_samples(const struct samples *s, struct strbuf *out)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(families); i++) {
		const struct family *f = &families[i];
		bool header = false;
		for (size_t k = 0; r == 0 && k < s->n; k++) {
			if (!key_of(s->v[k].key, f))
				continue;
			if (!header)
				r = sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
			header = true;
			r = r ?: sb_printf(out, "%s ", s->v[k].key) ?: sb_value(out, s->v[k].value) ?:
				sb_puts(out, "\n");
		}
	}
	return r;
}

int replace_file(const char *path, const char *text, size_t len, mode_t mode)
{
	struct strbuf tmp = {0};
	int r = sb_printf(&tmp, "%s.tmp.XXXXXX", path);
	int fd = r < 0 ? -1 : mkostemp(tmp.buf, O_CLOEXEC);
	if (r == 0 && fd < 0)
		r = -errno;
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	r = r ?: write_full(fd, text, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0 && close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp.buf, path) < 0)
		r = -errno;
	if (r < 0 && fd >= 0)
		unlink(tmp.buf);
	sb_free(&tmp);
	return r;
}

int metrics_record(const char *path, const struct metrics_run *run, struct strbuf *err)
{
	struct strbuf lockpath = {0}, text = {0};
	struct samples s = {0};
	int r = sb_printf(&lockpath, "%s.lock", path);
	int lock = r < 0 ? -1 : open(lockpath.buf, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (r == 0 && (lock < 0 || flock(lock, LOCK_EX) < 0)) {
		r = -errno;
		sb_printf(err, "metrics file %s: cannot lock %s: %s", path, lockpath.buf, strerror(-r));
	}
	if (r == 0 && (r = read_samples(path, &s)) < 0)
		sb_printf(err, "metrics file %s: cannot read it: %s", path, strerror(-r));
	if (r == 0 && (r = merge_run(&s, run) ?: format_samples(&s, &text)) < 0)
		sb_printf(err, "metrics file %s: %s", path, strerror(-r));
	/* readable by all: node_exporter runs as another user */
	if (r == 0 && (r = replace_file(path, text.buf ? text.buf : "", text.len, 0644)) < 0)
		sb_printf(err, "metrics file %s: cannot write it: %s", path, strerror(-r));
	if (lock >= 0)
		close(lock); /* releases the lock */
	samples_free(&s);
	sb_free(&lockpath);
	sb_free(&text);
	return r;
}

void metrics_record_configured(struct metrics_run *run)
{
	const char *path = config_get("metrics_file");
	if (!path || !*path)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	run->ended = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
	struct strbuf err = {0};
	if (metrics_record(path, run, &err) < 0)
		errorf("%s, ignoring", err.buf ? err.buf : "metrics file: out of memory");
	sb_free(&err);
}
