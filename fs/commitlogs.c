/* commitlogs.c: the mount's /commitlogs/<node>/<segment>: the commitlog segments the store
 * holds (catalog/commitlog.h), each as its plain bytes.
 *
 * Segments are not in the catalog: this tree is a table in memory, filled from listings of
 * commitlogs/ (at most every CL_REFRESH_NS, when /commitlogs or a node's directory is looked
 * in, and when a name is not found there), the metadata of a segment read when it is first
 * looked up. Inode numbers are special ones (cbfs.h; no generation bits) from CL_ROW_BASE up,
 * handed out once per node and per segment and never reused while mounted; a segment pruned
 * meanwhile stays in the table, marked gone. Opening a segment reads and decodes it whole
 * (a segment is at most tens of MiB), checked against its SHA-256.
 */
#include "cbfs.h"
#include "commitlog.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CL_ROW_BASE ((int64_t)1 << 40)
#define CL_REFRESH_NS 2000000000LL

struct cl_entry {
	uint64_t ino, parent;
	char name[256];
	bool dir, gone, meta_read;
	/* a segment found gone (not in a complete listing, or its object missing): should its
	 * name come back, that is another object, under an inode of its own, for the kernel may
	 * keep the pages it read of this one; this entry is then retired, never found again */
	bool dead, retired;
	struct commitlog_meta meta; /* files, once meta_read */
};

struct cbfs_cl {
	pthread_mutex_t mu;
	struct cbfs_cl_file *open; /* files open now */
	struct cl_entry *v;
	size_t n, cap;
	int64_t listed_ns; /* when commitlogs/ was last listed (monotonic) */
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool cbfs_cl_ino(uint64_t ino)
{
	return ino == CBFS_CL_ROOT ||
	       (CB_INO_KIND(ino) == CB_NODE_SPECIAL && CB_INO_ROW(ino) >= CL_ROW_BASE && ino >> GEN_SHIFT == 0);
}

int cbfs_cl_init(struct cbfs *fs)
{
	fs->cl = calloc(1, sizeof(*fs->cl));
	if (!fs->cl)
		return -ENOMEM;
	pthread_mutex_init(&fs->cl->mu, NULL);
	return 0;
}

void cbfs_cl_free(struct cbfs *fs)
{
	if (!fs->cl)
		return;
	while (fs->cl->open) { /* no operation runs any more: whatever their references */
		atomic_store(&fs->cl->open->refs, 1);
		cbfs_cl_close(fs, fs->cl->open);
	}
	pthread_mutex_destroy(&fs->cl->mu);
	free(fs->cl->v);
	free(fs->cl);
	fs->cl = NULL;
}

static struct cl_entry *find_child(struct cbfs_cl *t, uint64_t parent, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].parent == parent && !t->v[i].retired && strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	return NULL;
}

static struct cl_entry *find_ino(struct cbfs_cl *t, uint64_t ino)
{
	if (ino < CB_INO(CB_NODE_SPECIAL, CL_ROW_BASE))
		return NULL;
	size_t i = (size_t)(CB_INO_ROW(ino) - CL_ROW_BASE);
	return i < t->n ? &t->v[i] : NULL;
}

/* The child name of parent, added (not gone) when new, or when it is a segment that was
 * found gone (dead) and is listed again. */
static struct cl_entry *add(struct cbfs_cl *t, uint64_t parent, const char *name, bool dir)
{
	struct cl_entry *e = find_child(t, parent, name);
	if (e && e->dead)
		e->retired = true;
	else if (e) {
		e->gone = false;
		return e;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct cl_entry *v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		t->v = v;
		t->cap = cap;
	}
	e = &t->v[t->n];
	*e = (struct cl_entry){.ino = CB_INO(CB_NODE_SPECIAL, CL_ROW_BASE + (int64_t)t->n), .parent = parent,
			       .dir = dir};
	snprintf(e->name, sizeof(e->name), "%s", name);
	t->n++;
	return e;
}

static int take_key(void *ctx, const char *key, uint64_t size)
{
	(void)size;
	struct cbfs_cl *t = ctx;
	const char *n = key + strlen(COMMITLOG_PREFIX), *slash = strchr(n, '/');
	size_t len = strlen(key);
	if (!slash || len < 4 || strcmp(key + len - 4, ".zst") != 0)
		return 0;
	char node[256], name[256];
	if ((size_t)(slash - n) >= sizeof(node) || (size_t)(key + len - 4 - slash - 1) >= sizeof(name))
		return 0;
	snprintf(node, sizeof(node), "%.*s", (int)(slash - n), n);
	snprintf(name, sizeof(name), "%.*s", (int)(key + len - 4 - slash - 1), slash + 1);
	struct strbuf k = {0};
	bool ok = commitlog_key(node, name, &k) == 0 && strcmp(k.buf, key) == 0; /* names checked */
	sb_free(&k);
	if (!ok)
		return 0;
	struct cl_entry *d = add(t, CBFS_CL_ROOT, node, true);
	if (!d)
		return -ENOMEM;
	uint64_t dino = d->ino; /* add may move the table */
	return add(t, dino, name, false) ? 0 : -ENOMEM;
}

enum refresh_when {
	WHEN_STALE,  /* not listed within CL_REFRESH_NS */
	WHEN_MISSED, /* a name not found: not listed within CL_REFRESH_NS / 4 (a burst of misses) */
	WHEN_ALWAYS, /* a directory listed (opendir): shows what the store holds now */
};

/* Lists commitlogs/ again as when says: an entry not listed now is gone. Under t->mu. */
static int refresh(struct cbfs *fs, struct cbfs_cl *t, enum refresh_when when)
{
	int64_t now = mono_ns();
	if (t->listed_ns && ((when == WHEN_STALE && now - t->listed_ns < CL_REFRESH_NS) ||
			     (when == WHEN_MISSED && now - t->listed_ns < CL_REFRESH_NS / 4)))
		return 0;
	for (size_t i = 0; i < t->n; i++)
		t->v[i].gone = true;
	int r = cb_backend_list(store_backend(fs->store), COMMITLOG_PREFIX, take_key, t);
	if (r < 0) {
		for (size_t i = 0; i < t->n; i++)
			t->v[i].gone = false;
		cbfs_log(fs, "cannot list %s/%s: %s", fs->location, COMMITLOG_PREFIX, cb_backend_why(r));
		return r;
	}
	for (size_t i = 0; i < t->n; i++) { /* a node directory is there while a segment is */
		if (!t->v[i].dir && !t->v[i].gone) {
			struct cl_entry *d = find_ino(t, t->v[i].parent);
			if (d)
				d->gone = false;
		}
		if (!t->v[i].dir && t->v[i].gone)
			t->v[i].dead = true;
	}
	t->listed_ns = now;
	return 0;
}

/* Reads a segment's metadata once. Under t->mu. */
static int read_meta(struct cbfs *fs, struct cbfs_cl *t, struct cl_entry *e)
{
	if (e->dir || e->meta_read)
		return 0;
	struct cl_entry *d = find_ino(t, e->parent);
	struct strbuf key = {0}, why = {0};
	int r = d ? commitlog_key(d->name, e->name, &key) : -ENOENT;
	r = r ?: commitlog_read_meta(store_backend(fs->store), key.buf, &e->meta, &why);
	if (r < 0 && r != -ENOENT)
		cbfs_log(fs, "cannot read %s/%s: %s", fs->location, key.buf ? key.buf : "",
			 why.len ? why.buf : cb_backend_why(r));
	if (r == 0)
		e->meta_read = true;
	else if (r == -ENOENT)
		e->gone = e->dead = true;
	sb_free(&key);
	sb_free(&why);
	return r == -EBADMSG ? -EIO : r;
}

static void to_node(const struct cbfs *fs, const struct cl_entry *e, struct cb_node *n)
{
	*n = (struct cb_node){.ino = e ? e->ino : CBFS_CL_ROOT, .kind = CB_NODE_SPECIAL,
			      .uid = CB_OWNER_UNSET, .gid = CB_OWNER_UNSET};
	snprintf(n->name, sizeof(n->name), "%s", e ? e->name : "commitlogs");
	if (!e || e->dir) {
		n->mode = S_IFDIR | 0555;
		n->mtime_ns = fs->start_ns;
		return;
	}
	n->mode = S_IFREG | 0444;
	n->size = e->meta.size;
	n->mtime_ns = e->meta_read ? e->meta.archived_ms * 1000000 : fs->start_ns;
}

void cbfs_cl_root_node(const struct cbfs *fs, struct cb_node *out)
{
	to_node(fs, NULL, out);
}

int cbfs_cl_get(struct cbfs *fs, uint64_t ino, struct cb_node *out)
{
	if (ino == CBFS_CL_ROOT) {
		to_node(fs, NULL, out);
		return 0;
	}
	struct cbfs_cl *t = fs->cl;
	pthread_mutex_lock(&t->mu);
	struct cl_entry *e = find_ino(t, ino);
	int r = !e ? -ENOENT : read_meta(fs, t, e);
	if (r == 0)
		to_node(fs, e, out);
	pthread_mutex_unlock(&t->mu);
	return r;
}

int cbfs_cl_lookup(struct cbfs *fs, uint64_t parent, const char *name, struct cb_node *out)
{
	struct cbfs_cl *t = fs->cl;
	pthread_mutex_lock(&t->mu);
	struct cl_entry *p = find_ino(t, parent);
	int r = parent != CBFS_CL_ROOT && (!p || !p->dir) ? -ENOTDIR : refresh(fs, t, WHEN_STALE);
	struct cl_entry *e = r == 0 ? find_child(t, parent, name) : NULL;
	if (r == 0 && (!e || e->gone) && (r = refresh(fs, t, WHEN_MISSED)) == 0) /* new since the listing? */
		e = find_child(t, parent, name);
	if (r == 0 && (!e || e->gone))
		r = -ENOENT;
	r = r ?: read_meta(fs, t, e);
	if (r == 0 && e->gone)
		r = -ENOENT;
	if (r == 0)
		to_node(fs, e, out);
	pthread_mutex_unlock(&t->mu);
	return r;
}

int cbfs_cl_list(struct cbfs *fs, uint64_t dir, int (*cb)(void *ctx, const struct cb_node *n), void *ctx)
{
	struct cbfs_cl *t = fs->cl;
	pthread_mutex_lock(&t->mu);
	struct cl_entry *p = find_ino(t, dir);
	int r = dir != CBFS_CL_ROOT && (!p || !p->dir) ? -ENOTDIR : refresh(fs, t, WHEN_ALWAYS);
	for (size_t i = 0; r == 0 && i < t->n; i++) {
		if (t->v[i].parent != dir || t->v[i].gone)
			continue;
		struct cb_node n;
		to_node(fs, &t->v[i], &n); /* a file's size is read at its lookup (readdirplus: none) */
		r = cb(ctx, &n);
	}
	pthread_mutex_unlock(&t->mu);
	return r;
}

int cbfs_cl_open(struct cbfs *fs, uint64_t ino, struct cbfs_cl_file **out)
{
	struct cbfs_cl *t = fs->cl;
	struct commitlog_meta m;
	struct strbuf key = {0}, why = {0};
	pthread_mutex_lock(&t->mu);
	struct cl_entry *e = find_ino(t, ino), *d = e ? find_ino(t, e->parent) : NULL;
	/* dead: pruned; what may be under its name now is another segment, another inode's */
	int r = !e || e->dead ? -ENOENT : e->dir ? -EISDIR : read_meta(fs, t, e);
	if (r == 0) {
		m = e->meta;
		r = d ? commitlog_key(d->name, e->name, &key) : -ENOENT;
	}
	pthread_mutex_unlock(&t->mu);
	struct cbfs_cl_file *f = r == 0 ? calloc(1, sizeof(*f)) : NULL;
	if (r == 0 && !f)
		r = -ENOMEM;
	if (r == 0 && (r = commitlog_read(store_backend(fs->store), key.buf, &m, &f->data, &why)) < 0 &&
	    r != -ENOENT && r != -ENOMEM) {
		cbfs_log(fs, "cannot read %s/%s: %s", fs->location, key.buf, why.len ? why.buf : cb_backend_why(r));
		r = -EIO;
	}
	if (r == 0) {
		f->size = m.size;
		atomic_init(&f->refs, 1);
		pthread_mutex_lock(&t->mu);
		f->next = t->open;
		if (f->next)
			f->next->prev = f;
		t->open = f;
		pthread_mutex_unlock(&t->mu);
		*out = f;
	} else {
		free(f);
	}
	sb_free(&key);
	sb_free(&why);
	return r;
}

int cbfs_cl_xattrs(struct cbfs *fs, uint64_t ino, int (*cb)(void *ctx, const char *name, const char *value),
		   void *ctx)
{
	struct cbfs_cl *t = fs->cl;
	struct commitlog_meta m;
	pthread_mutex_lock(&t->mu);
	struct cl_entry *e = ino == CBFS_CL_ROOT ? NULL : find_ino(t, ino);
	int r = ino == CBFS_CL_ROOT ? 0 : !e ? -ENOENT : read_meta(fs, t, e);
	bool file = r == 0 && e && !e->dir;
	if (file)
		m = e->meta;
	pthread_mutex_unlock(&t->mu);
	if (!file)
		return r;
	char sha[65], archived[80], id[24], version[16];
	hex_encode(m.sha256, 32, sha);
	format_time_utc(m.archived_ms * 1000000, archived, sizeof(archived));
	snprintf(id, sizeof(id), "%" PRId64, m.id);
	snprintf(version, sizeof(version), "%" PRId32, m.version);
	r = cb(ctx, "user.cassbackup.node", m.node);
	r = r ?: cb(ctx, "user.cassbackup.sha256", sha);
	r = r ?: cb(ctx, "user.cassbackup.archived", archived);
	r = r ?: cb(ctx, "user.cassbackup.commitlog_id", id);
	r = r ?: cb(ctx, "user.cassbackup.commitlog_version", version);
	return r || !*m.host_id ? r : cb(ctx, "user.cassbackup.host_id", m.host_id);
}

void cbfs_cl_ref(struct cbfs_cl_file *f)
{
	atomic_fetch_add(&f->refs, 1);
}

void cbfs_cl_close(struct cbfs *fs, struct cbfs_cl_file *f)
{
	if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
		return;
	pthread_mutex_lock(&fs->cl->mu);
	if (f->prev)
		f->prev->next = f->next;
	else
		fs->cl->open = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&fs->cl->mu);
	free(f->data);
	free(f);
}
