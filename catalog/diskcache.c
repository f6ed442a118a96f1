/* diskcache.c: see diskcache.h. */
#include "diskcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUCKETS 4096
#define NAME_MAX_LEN 96

struct entry {
	char name[NAME_MAX_LEN];
	uint64_t bytes;                    /* size rounded up to 4 KiB */
	int64_t mtime_ns;                  /* at open: the order of the scan */
	struct entry *next;                /* hash chain */
	struct entry *lru_prev, *lru_next; /* most recent at head */
};

struct disk_cache {
	int dfd, lockfd;
	uint64_t max, used;
	pthread_mutex_t mu;
	struct entry *buckets[BUCKETS];
	struct entry *head, *tail;
	unsigned long tmp_seq;
};

static uint64_t rounded(uint64_t n) { return (n + 4095) & ~(uint64_t)4095; }

static unsigned bucket_of(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % BUCKETS;
}

/* The cache's own names only ("f-" or "t-" + 32 hex digits, packread.c), so that no other
 * file is ever taken in, or evicted. */
static bool name_ok(const char *name)
{
	if ((name[0] != 'f' && name[0] != 't') || name[1] != '-' || strlen(name) >= NAME_MAX_LEN)
		return false;
	size_t hex = strspn(name + 2, "0123456789abcdef");
	return hex == 32 && (name[34] == '\0' || (name[0] == 'f' && name[34] == '-' && name[35] &&
						   strspn(name + 35, "0123456789") == strlen(name + 35)));
}

static struct entry *find(struct disk_cache *dc, const char *name)
{
	struct entry *e = dc->buckets[bucket_of(name)];
	while (e && strcmp(e->name, name) != 0)
		e = e->next;
	return e;
}

static void lru_unlink(struct disk_cache *dc, struct entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		dc->head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		dc->tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct disk_cache *dc, struct entry *e)
{
	e->lru_next = dc->head;
	if (dc->head)
		dc->head->lru_prev = e;
	dc->head = e;
	if (!dc->tail)
		dc->tail = e;
}

/* Unlinks e from the index and the directory. Called with mu held. */
static void remove_entry(struct disk_cache *dc, struct entry *e)
{
	struct entry **pp = &dc->buckets[bucket_of(e->name)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	lru_unlink(dc, e);
	dc->used -= e->bytes;
	unlinkat(dc->dfd, e->name, 0);
	free(e);
}

/* Records name (bytes on disk) as most recently used, replacing an entry of that name. Called
 * with mu held. */
static int add_entry(struct disk_cache *dc, const char *name, uint64_t bytes, int64_t mtime_ns)
{
	struct entry *e = find(dc, name);
	if (e) {
		dc->used -= e->bytes;
		lru_unlink(dc, e);
	} else {
		if (!(e = calloc(1, sizeof(*e))))
			return -ENOMEM;
		snprintf(e->name, sizeof(e->name), "%s", name);
		unsigned b = bucket_of(name);
		e->next = dc->buckets[b];
		dc->buckets[b] = e;
	}
	e->bytes = bytes;
	e->mtime_ns = mtime_ns;
	dc->used += bytes;
	lru_push(dc, e);
	return 0;
}

/* Evicts from the cold end until within max. Called with mu held. */
static void shrink(struct disk_cache *dc)
{
	while (dc->used > dc->max && dc->tail)
		remove_entry(dc, dc->tail);
}

static int cmp_mtime(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
	return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* Builds the index from the directory, oldest first so the newest ends at the head; removes
 * temporary files a killed process left. */
static int scan(struct disk_cache *dc)
{
	int fd = dup(dc->dfd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	struct entry **v = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		struct stat st;
		if (!strncmp(de->d_name, ".tmp-", 5)) {
			unlinkat(dc->dfd, de->d_name, 0);
			continue;
		}
		if (!name_ok(de->d_name) || fstatat(dc->dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			struct entry **nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		if (!(v[n] = calloc(1, sizeof(**v)))) {
			r = -ENOMEM;
			break;
		}
		memcpy(v[n]->name, de->d_name, strlen(de->d_name) + 1); /* name_ok: it fits */
		v[n]->bytes = rounded((uint64_t)st.st_size);
		v[n]->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		n++;
	}
	closedir(d);
	if (r == 0 && n)
		qsort(v, n, sizeof(*v), cmp_mtime);
	for (size_t i = 0; i < n; i++) {
		if (r == 0)
			r = add_entry(dc, v[i]->name, v[i]->bytes, v[i]->mtime_ns);
		free(v[i]);
	}
	free(v);
	return r;
}

/* The directory, created 0700 when missing, checked to be the user's own (util.h
 * open_private_dir: another user's could hand it forged frames), made 0700, and locked. */
static int open_dir(struct disk_cache *dc, const char *dir, struct strbuf *err)
{
	dc->dfd = open_private_dir(dir, false, err);
	if (dc->dfd < 0)
		return dc->dfd;
	dc->lockfd = openat(dc->dfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (dc->lockfd < 0 || fchmod(dc->dfd, 0700) < 0) {
		int r = -errno;
		sb_printf(err, "%s: %s", dir, strerror(errno));
		return r;
	}
	if (flock(dc->lockfd, LOCK_EX | LOCK_NB) < 0) {
		int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		sb_printf(err, "%s: %s", dir, r == -EBUSY ? "in use by another mount" : strerror(errno));
		return r;
	}
	return 0;
}

int disk_cache_open(const char *dir, uint64_t max_bytes, struct disk_cache **out,
		    struct strbuf *err)
{
	struct disk_cache *dc = calloc(1, sizeof(*dc));
	if (!dc) {
		sb_puts(err, "out of memory");
		return -ENOMEM;
	}
	dc->dfd = dc->lockfd = -1;
	dc->max = max_bytes;
	pthread_mutex_init(&dc->mu, NULL);
	int r = open_dir(dc, dir, err);
	if (r == 0 && (r = scan(dc)) < 0)
		sb_printf(err, "cannot read %s: %s", dir, strerror(-r));
	if (r < 0) {
		disk_cache_close(dc);
		return r;
	}
	shrink(dc);
	*out = dc;
	return 0;
}

void disk_cache_close(struct disk_cache *dc)
{
	if (!dc)
		return;
	for (struct entry *e = dc->head, *n; e; e = n) {
		n = e->lru_next;
		free(e);
	}
	if (dc->lockfd >= 0)
		close(dc->lockfd);
	if (dc->dfd >= 0)
		close(dc->dfd);
	pthread_mutex_destroy(&dc->mu);
	free(dc);
}

int disk_cache_get(struct disk_cache *dc, const char *name, size_t max, void **data, size_t *len)
{
	if (!name_ok(name))
		return -EINVAL;
	int fd = openat(dc->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : !S_ISREG(st.st_mode) ? -ENOENT
					 : (uint64_t)st.st_size > max ? -EFBIG : 0;
	void *buf = r == 0 ? malloc(st.st_size ? (size_t)st.st_size : 1) : NULL;
	if (r == 0 && !buf)
		r = -ENOMEM;
	if (r == 0) {
		ssize_t n = pread_full(fd, buf, (size_t)st.st_size, 0);
		r = n < 0 ? (int)n : n != st.st_size ? -EIO : 0;
	}
	if (r == 0)
		futimens(fd, NULL); /* recency, for the next mount's order */
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	pthread_mutex_lock(&dc->mu);
	struct entry *e = find(dc, name);
	if (e) {
		lru_unlink(dc, e);
		lru_push(dc, e);
	}
	pthread_mutex_unlock(&dc->mu);
	*data = buf;
	*len = (size_t)st.st_size;
	return 0;
}

int disk_cache_put(struct disk_cache *dc, const char *name, const void *data, size_t len)
{
	if (!name_ok(name))
		return -EINVAL;
	if (rounded(len) > dc->max)
		return 0;
	char tmp[64];
	pthread_mutex_lock(&dc->mu);
	snprintf(tmp, sizeof(tmp), ".tmp-%ld-%lu", (long)getpid(), ++dc->tmp_seq);
	pthread_mutex_unlock(&dc->mu);
	int fd = openat(dc->dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	int r = write_full(fd, data, len);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(dc->dfd, tmp, dc->dfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(dc->dfd, tmp, 0);
		return r;
	}
	pthread_mutex_lock(&dc->mu);
	r = add_entry(dc, name, rounded(len), 0);
	if (r < 0)
		unlinkat(dc->dfd, name, 0); /* not indexed: it must not outlive its accounting */
	shrink(dc);
	pthread_mutex_unlock(&dc->mu);
	return r;
}

void disk_cache_drop(struct disk_cache *dc, const char *name)
{
	if (!name_ok(name))
		return;
	pthread_mutex_lock(&dc->mu);
	struct entry *e = find(dc, name);
	if (e)
		remove_entry(dc, e);
	else
		unlinkat(dc->dfd, name, 0);
	pthread_mutex_unlock(&dc->mu);
}

uint64_t disk_cache_bytes(struct disk_cache *dc)
{
	pthread_mutex_lock(&dc->mu);
	uint64_t n = dc->used;
	pthread_mutex_unlock(&dc->mu);
	return n;
}
