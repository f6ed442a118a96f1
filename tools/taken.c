/* taken.c: see taken.h. */
#include "taken.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAKEN_MAGIC "cassbackup-taken "
#define TAKEN_MAX 512
#define EPOCH_V1 "v1" /* the epoch a file of format 1 reads with */

/* One word of printable bytes, shorter than max. */
static bool word_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return n > 0 && n < max;
}

static bool epoch_ok(const char *s)
{
	return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
}

/* A count: decimal digits, below UINT64_MAX (one more must not wrap), into *n. */
static bool count_ok(const char *s, uint64_t *n)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || strspn(s, "0123456789") != strlen(s) || *end || errno || v >= UINT64_MAX)
		return false;
	*n = v;
	return true;
}

/* "EPOCH N BY", whole (a format 1 file's epoch, EPOCH_V1, only when v1 is true). */
static int parse_state(const char *s, bool v1, struct links_taken *t)
{
	char epoch[TAKEN_BY_MAX], count[24], by[TAKEN_BY_MAX];
	uint64_t n = 0;
	int used = 0;
	*t = (struct links_taken){0};
	if (sscanf(s, "%399s %23s %399s%n", epoch, count, by, &used) != 3 || used == 0 ||
	    s[used] != '\0' || !count_ok(count, &n) || !word_ok(by, TAKEN_BY_MAX) ||
	    (n == 0 && (strcmp(by, TAKEN_NOBODY) != 0 || !epoch_ok(epoch))) ||
	    !(epoch_ok(epoch) || (v1 && !strcmp(epoch, EPOCH_V1))))
		return -EBADMSG;
	memcpy(t->epoch, epoch, strlen(epoch) + 1); /* checked: 16 bytes at most */
	t->n = n;
	snprintf(t->by, sizeof(t->by), "%s", by);
	return 0;
}

/* A format 1 file's "N M CHAIN", whole: the state "v1 N CHAIN". */
static int parse_format1(const char *s, struct links_taken *t)
{
	char chain[TAKEN_BY_MAX], cn[24], cm[24];
	uint64_t n = 0, m = 0;
	int used = 0;
	*t = (struct links_taken){0};
	if (sscanf(s, "%23s %23s %399s%n", cn, cm, chain, &used) != 3 || used == 0 ||
	    s[used] != '\0' || !count_ok(cn, &n) || !count_ok(cm, &m) ||
	    !word_ok(chain, TAKEN_BY_MAX) || n == 0 || m == 0 || m > n)
		return -EBADMSG;
	*t = (struct links_taken){.epoch = EPOCH_V1, .n = n};
	snprintf(t->by, sizeof(t->by), "%s", chain);
	return 0;
}

/* The file's one line, "cassbackup-taken F FIELDS\n". */
static int parse_file(char *buf, struct links_taken *t)
{
	size_t len = strlen(buf);
	if (strncmp(buf, TAKEN_MAGIC, strlen(TAKEN_MAGIC)) != 0 || len < strlen(TAKEN_MAGIC) + 3 ||
	    buf[len - 1] != '\n' || memchr(buf, '\n', len - 1))
		return -EBADMSG;
	buf[len - 1] = '\0';
	const char *f = buf + strlen(TAKEN_MAGIC);
	return !strncmp(f, "2 ", 2) ? parse_state(f + 2, false, t)
	       : !strncmp(f, "1 ", 2) ? parse_format1(f + 2, t) : -EBADMSG;
}

int taken_read(int dirfd, struct links_taken *t)
{
	*t = (struct links_taken){0};
	int fd = openat(dirfd, TAKEN_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	char buf[TAKEN_MAX + 1];
	struct stat st;
	ssize_t n = read(fd, buf, TAKEN_MAX);
	int r = n < 0 ? -errno : n == TAKEN_MAX || memchr(buf, '\0', (size_t)n) ? -EBADMSG : 0;
	if (r == 0 && fstat(fd, &st) < 0)
		r = -errno;
	close(fd);
	if (r == 0) {
		buf[n] = '\0';
		r = parse_file(buf, t);
		t->marked_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	}
	if (r < 0)
		*t = (struct links_taken){0};
	return r;
}

int taken_by(const char *store_id, const char *ref, char by[TAKEN_BY_MAX])
{
	int n = snprintf(by, TAKEN_BY_MAX, "%s:%s", store_id, ref);
	return n > 0 && n < TAKEN_BY_MAX && word_ok(by, TAKEN_BY_MAX) ? 0 : -ENAMETOOLONG;
}

int taken_format(const struct links_taken *t, struct strbuf *out)
{
	return *t->epoch ? sb_printf(out, "%s %" PRIu64 " %s", t->epoch, t->n, t->by)
			 : sb_puts(out, "- 0 -");
}

int taken_parse(const char *s, struct links_taken *t)
{
	if (!strcmp(s, "- 0 -")) {
		*t = (struct links_taken){0};
		return 0;
	}
	return parse_state(s, true, t);
}

bool taken_same(const struct links_taken *a, const struct links_taken *b)
{
	return a->n == b->n && !strcmp(a->epoch, b->epoch) && !strcmp(a->by, b->by);
}

int taken_next(const struct links_taken *was, const char *by, struct links_taken *now)
{
	if (!word_ok(by, TAKEN_BY_MAX))
		return -ENAMETOOLONG;
	*now = (struct links_taken){.n = was->n + 1};
	if (epoch_ok(was->epoch))
		snprintf(now->epoch, sizeof(now->epoch), "%s", was->epoch);
	else /* a first file, or one of format 1 */
		snprintf(now->epoch, sizeof(now->epoch), "%016" PRIx64, random_below(UINT64_MAX));
	snprintf(now->by, sizeof(now->by), "%s", by);
	return 0;
}

bool taken_is_format1(const struct links_taken *t)
{
	return !strcmp(t->epoch, EPOCH_V1);
}

int taken_describe_by(const struct links_taken *t, const char *store_id, struct strbuf *sb)
{
	const char *colon = strchr(t->by, ':');
	size_t idlen = colon ? (size_t)(colon - t->by) : 0;
	if (taken_is_format1(t))
		return sb_printf(sb, "the chain of full backup %s (a file an older cassbackup wrote)",
				 colon ? colon + 1 : t->by);
	if (colon && strlen(store_id) == idlen && !strncmp(t->by, store_id, idlen))
		return sb_printf(sb, "backup %s", colon + 1);
	return sb_printf(sb, "backup %s of store %.*s", colon ? colon + 1 : t->by, (int)idlen, t->by);
}

const struct manifest_links *taken_record(const struct manifest_links *links, size_t n,
					  const char *dir)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(links[i].dir, dir))
			return &links[i];
	return NULL;
}

enum taken_verdict taken_judge(const struct manifest_links *rec, const struct links_taken *now)
{
	struct links_taken left, found;
	if (!rec)
		return now->n == 0 ? TAKEN_NEVER : TAKEN_SINCE;
	if (taken_parse(rec->left, &left) == 0 &&
	    (taken_same(&left, now) || (!*left.epoch && now->n == 0 && *now->epoch)))
		return TAKEN_AS_LEFT; /* as left, or left with no file and made ready since */
	if (rec->found && taken_parse(rec->found, &found) == 0 && taken_same(&found, now))
		return TAKEN_AS_FOUND;
	return TAKEN_SINCE;
}

/* What the file in dirfd says against was and now: 0 was, 1 now, -EAGAIN another, -errno. */
static int says(int dirfd, const struct links_taken *was, const struct links_taken *now)
{
	struct links_taken t;
	int r = taken_read(dirfd, &t);
	return r < 0 ? r : taken_same(&t, was) ? 0 : taken_same(&t, now) ? 1 : -EAGAIN;
}

static int write_state(const char *dir, const struct links_taken *now);

const char *taken_strerror(int err)
{
	switch (err) {
	case -EAGAIN: return "another backup took links there meanwhile";
	case -EBADMSG: return "not a file cassbackup wrote (remove it, then make a full backup: the "
			      "chain starts again there)";
	default: return strerror(-err);
	}
}

int taken_mark(const char *dir, const struct links_taken *was, const struct links_taken *now)
{
	/* under an exclusive lock of the directory, and only from the state the caller checked:
	 * two backups marking at once must not both count one removal */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = dfd < 0 ? -errno : flock(dfd, LOCK_EX) < 0 ? -errno : says(dfd, was, now);
	r = r == 0 ? write_state(dir, now) : r == 1 ? 0 : r;
	if (dfd >= 0)
		close(dfd); /* and the lock with it */
	return r;
}

/* Writes now into dir's TAKEN_FILE: a temporary file, synced, renamed over it, the directory
 * synced. */
static int write_state(const char *dir, const struct links_taken *now)
{
	struct strbuf path = {0}, tmp = {0}, doc = {0};
	int r = sb_printf(&path, "%s/%s", dir, TAKEN_FILE) ?:
		/* one name, under the caller's flock: a run killed here leaves one file, which the
		 * next mark writes over, not one per run */
		sb_printf(&tmp, "%s/%s.tmp", dir, TAKEN_FILE) ?:
		sb_printf(&doc, TAKEN_MAGIC "2 %s %" PRIu64 " %s\n", now->epoch, now->n, now->by);
	/* 0644: any create may read it, whoever runs it (only one that can write there marks) */
	int fd = r < 0 ? -1 : open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (r == 0 && fd < 0)
		r = -errno;
	if (r == 0 && write(fd, doc.buf, doc.len) != (ssize_t)doc.len)
		r = errno ? -errno : -EIO;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0 && close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp.buf, path.buf) < 0)
		r = -errno;
	if (r < 0 && tmp.buf)
		unlink(tmp.buf);
	r = r ?: fsync_dir(dir);
	sb_free(&path);
	sb_free(&tmp);
	sb_free(&doc);
	return r;
}

/* Entry i of r: dir, and the states as strings. */
static int record_one(struct taken_records *r, size_t i, const char *dir)
{
	struct strbuf left = {0}, found = {0};
	int e = taken_format(&r->left[i], &left) ?:
		(r->marks[i] ? taken_format(&r->found[i], &found) : 0);
	r->v[i].dir = strdup(dir);
	r->v[i].left = left.buf;
	r->v[i].found = found.buf;
	return e ?: r->v[i].dir && r->v[i].left && (!r->marks[i] || r->v[i].found) ? 0 : -ENOMEM;
}

/* The state of a file made ready for a first mark: "EPOCH 0 -". */
static void ready_state(struct links_taken *t)
{
	*t = (struct links_taken){.n = 0, .by = TAKEN_NOBODY};
	snprintf(t->epoch, sizeof(t->epoch), "%016" PRIx64, random_below(UINT64_MAX));
}

int taken_records_make(char *const *dirs, const struct links_taken *found, size_t n,
		       const char *by, const bool *removes, struct taken_records *out)
{
	*out = (struct taken_records){0};
	if (!n)
		return 0;
	out->v = calloc(n, sizeof(*out->v));
	out->found = calloc(n, sizeof(*out->found));
	out->left = calloc(n, sizeof(*out->left));
	out->marks = calloc(n, sizeof(*out->marks));
	out->readies = calloc(n, sizeof(*out->readies));
	if (!out->v || !out->found || !out->left || !out->marks || !out->readies)
		return -ENOMEM;
	out->n = n;
	int r = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		out->found[i] = found[i];
		out->marks[i] = by && (!removes || removes[i]);
		/* a directory with no file: one is made ready first, so that a file removed by
		 * hand since never reads as what this backup found */
		out->readies[i] = out->marks[i] && !*found[i].epoch;
		if (out->readies[i])
			ready_state(&out->found[i]);
		r = out->marks[i] ? taken_next(&out->found[i], by, &out->left[i])
				  : (out->left[i] = found[i], 0);
		r = r ?: record_one(out, i, dirs[i]);
	}
	return r;
}

int taken_records_ready(const struct taken_records *r, const char **dir)
{
	static const struct links_taken none;
	for (size_t i = 0; i < r->n; i++) {
		int e = r->readies[i] ? taken_mark(r->v[i].dir, &none, &r->found[i]) : 0;
		if (e < 0) {
			*dir = r->v[i].dir;
			return e;
		}
	}
	return 0;
}

void taken_records_free(struct taken_records *r)
{
	manifest_links_free(r->v, r->n);
	free(r->found);
	free(r->left);
	free(r->marks);
	free(r->readies);
	*r = (struct taken_records){0};
}

int taken_records_mark(const struct taken_records *r, const char **dir)
{
	for (size_t i = 0; i < r->n; i++) {
		int e = r->marks[i] ? taken_mark(r->v[i].dir, &r->found[i], &r->left[i]) : 0;
		if (e < 0) {
			*dir = r->v[i].dir;
			return e;
		}
	}
	return 0;
}
