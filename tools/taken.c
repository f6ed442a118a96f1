/* taken.c: see taken.h. */
#include "taken.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define TAKEN_MAGIC "cassbackup-taken 1 "
#define TAKEN_MAX 512

static bool chain_ok(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return n > 0 && n < TAKEN_CHAIN_MAX;
}

/* "cassbackup-taken 1 N M CHAIN\n" */
static int parse(const char *buf, struct links_taken *t)
{
	if (strncmp(buf, TAKEN_MAGIC, strlen(TAKEN_MAGIC)) != 0)
		return -EBADMSG;
	int used = 0;
	char chain[TAKEN_CHAIN_MAX];
	if (sscanf(buf + strlen(TAKEN_MAGIC), "%" SCNu64 " %" SCNu64 " %399s\n%n", &t->n, &t->m,
		   chain, &used) != 3 || used == 0 || buf[strlen(TAKEN_MAGIC) + (size_t)used] != '\0' ||
	    !chain_ok(chain) || t->n == 0 || t->m == 0 || t->m > t->n)
		return -EBADMSG;
	snprintf(t->chain, sizeof(t->chain), "%s", chain);
	return 0;
}

int taken_read(int dirfd, struct links_taken *t)
{
	*t = (struct links_taken){0};
	int fd = openat(dirfd, TAKEN_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	char buf[TAKEN_MAX + 1];
	ssize_t n = read(fd, buf, TAKEN_MAX);
	int r = n < 0 ? -errno : n == TAKEN_MAX ? -EBADMSG : 0;
	close(fd);
	if (r == 0) {
		buf[n] = '\0';
		r = parse(buf, t);
	}
	if (r < 0)
		*t = (struct links_taken){0};
	return r;
}

int taken_chain(const char *store_id, const char *base_ref, char chain[TAKEN_CHAIN_MAX])
{
	int n = snprintf(chain, TAKEN_CHAIN_MAX, "%s:%s", store_id, base_ref);
	return n > 0 && n < TAKEN_CHAIN_MAX && chain_ok(chain) ? 0 : -ENAMETOOLONG;
}

bool taken_allows(const struct links_taken *t, uint64_t recorded, const char *chain)
{
	if (t->n == recorded)
		return true;
	/* every removal from m on was chain's, and none by another came between recorded and m */
	return t->n > recorded && !strcmp(t->chain, chain) && t->m <= recorded + 1;
}

/* Is the file in dirfd still what was says (nothing marked since it was read)? 0, -EAGAIN
 * when another backup marked meanwhile, or -errno. */
static int still(int dirfd, const struct links_taken *was)
{
	struct links_taken t;
	int r = taken_read(dirfd, &t);
	if (r == 0 && (t.n != was->n || t.m != was->m || strcmp(t.chain, was->chain) != 0))
		r = -EAGAIN;
	return r;
}

static int write_marked(const char *dir, const char *chain, const struct links_taken *now);

int taken_mark(const char *dir, const struct links_taken *was, const char *chain,
	       struct links_taken *now)
{
	/* under an exclusive lock of the directory, and only while the file says what the caller
	 * checked: two backups marking at once must not both count one removal */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = dfd < 0 ? -errno : flock(dfd, LOCK_EX) < 0 ? -errno : still(dfd, was);
	*now = (struct links_taken){.n = was->n + 1};
	now->m = strcmp(was->chain, chain) == 0 && was->n ? was->m : now->n;
	snprintf(now->chain, sizeof(now->chain), "%s", chain);
	r = r ?: write_marked(dir, chain, now);
	if (dfd >= 0)
		close(dfd); /* and the lock with it */
	return r;
}

/* Writes now into dir's TAKEN_FILE: a temporary file, synced, renamed over it, the directory
 * synced. */
static int write_marked(const char *dir, const char *chain, const struct links_taken *now)
{
	struct strbuf path = {0}, tmp = {0}, doc = {0};
	int r = sb_printf(&path, "%s/%s", dir, TAKEN_FILE) ?:
		/* one name, under the caller's flock: a run killed here leaves one file, which the
		 * next mark writes over, not one per run */
		sb_printf(&tmp, "%s/%s.tmp", dir, TAKEN_FILE) ?:
		sb_printf(&doc, TAKEN_MAGIC "%" PRIu64 " %" PRIu64 " %s\n", now->n, now->m, chain);
	int fd = r < 0 ? -1 : open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
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
