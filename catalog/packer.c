/* packer.c: see packer.h. */
#include "packer.h"

#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A member's tar header (pax: name, sizes, times) takes at most this many bytes of stream. */
#define MEMBER_OVERHEAD 4096
/* Beyond its members, a pack holds its index (about 150 bytes a blob, PACKER_MAX_BLOBS at
 * most) and its trailer and seek table (12 bytes a frame). */
#define PACK_EXTRA (UINT64_C(64) << 20)

/* A closed pack being committed on a thread of its own (packer_opts.commit_behind). */
struct behind {
	bool running;
	pthread_t thread;
	struct cb_backend *backend;
	struct cb_upload *u;
	struct strbuf key;
	struct pack_blob *blobs; /* its index */
	size_t nblobs;
	struct pack_info info;
	int r;                   /* the commit's outcome, with msg */
	char msg[512];
};

struct packer {
	struct packer_opts o;
	struct behind behind;
	uint64_t target;
	/* the pack being written */
	pack_writer *w;
	struct cb_upload *u;
	struct strbuf key;
	struct pack_blob *blobs; /* its index */
	size_t nblobs, cap;
	size_t *slots;           /* open addressing over blobs by content: index + 1, 0 empty */
	size_t nslots;
	void *names;             /* tsearch tree of its member names (owned) */
	size_t members;
	unsigned seq;            /* its number */
	struct packer_stats st;
	int err;                 /* sticky */
	bool err_behind;         /* it was a commit behind's */
	char msg[512];
};

__attribute__((format(printf, 3, 4))) static int fail(packer *p, int r, const char *fmt, ...)
{
	if (p->err)
		return p->err;
	p->err = r;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
	return r;
}

int packer_new(const struct packer_opts *o, packer **out)
{
	packer *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->o = *o;
	p->target = o->target ? o->target : PACK_DEFAULT_SIZE;
	p->seq = 1;
	*out = p;
	return 0;
}

unsigned packer_seq(const packer *p) { return p->seq; }
const char *packer_errmsg(const packer *p) { return p ? p->msg : ""; }
bool packer_failed_behind(const packer *p) { return p && p->err_behind; }

void packer_get_stats(const packer *p, struct packer_stats *st)
{
	*st = p->st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }
static int join_behind(packer *p);

/* Forgets the pack being written (after its commit, or aborting it). */
static void drop_pack(packer *p)
{
	pack_writer_free(p->w);
	cb_upload_free(p->u); /* aborts it unless committed */
	p->w = NULL;
	p->u = NULL;
	sb_free(&p->key);
	free(p->blobs);
	free(p->slots);
	p->blobs = NULL;
	p->slots = NULL;
	p->nblobs = p->cap = p->nslots = p->members = 0;
	tdestroy(p->names, free);
	p->names = NULL;
}

void packer_free(packer *p)
{
	if (!p)
		return;
	join_behind(p);
	drop_pack(p);
	free(p);
}

/* The most bytes a pack whose first member has first_size bytes can take in the store: what
 * object storage sizes its parts by. */
static uint64_t size_bound(const packer *p, uint64_t first_size)
{
	uint64_t stream = (first_size + MEMBER_OVERHEAD > p->target ? first_size + MEMBER_OVERHEAD
								    : p->target) + PACK_EXTRA;
	return stream + stream / 128; /* zstd never grows incompressible input by that much */
}

static int open_pack(packer *p, uint64_t first_size)
{
	int r = pack_key_new(&p->key);
	if (r == 0 && (r = cb_backend_upload_begin(p->o.backend, p->key.buf, size_bound(p, first_size),
						   CB_PUT_EXCLUSIVE, &p->u)) < 0)
		return fail(p, r, "cannot start pack %s in %s: %s", p->key.buf,
			    cb_backend_location(p->o.backend), cb_backend_why(r));
	if (r == 0 && (r = pack_writer_new(&p->w, p->u, p->o.level ? p->o.level : 3, p->o.threads,
					   p->o.frame_size)) < 0)
		return fail(p, r, "cannot start pack %s: %s", p->key.buf, strerror(-r));
	return r < 0 ? fail(p, r, "%s", strerror(-r)) : 0;
}

/* Commits upload u of pack key: 0, or -errno with its one line in msg. Runs on the caller's
 * thread or a commit's own: the backend's reason is read on the thread that failed. */
static int commit_upload(struct cb_backend *backend, struct cb_upload *u, const char *key,
			 char *msg, size_t msglen)
{
	int r = cb_upload_commit(u);
	if (r < 0)
		snprintf(msg, msglen, "cannot write pack %s/%s: %s", cb_backend_location(backend),
			 key, cb_backend_why(r));
	return r;
}

/* A committed pack: to the caller, and into the stats. */
static int hand_over(packer *p, const char *key, const struct pack_info *info,
		     const struct pack_index *pi)
{
	int r = p->o.committed ? p->o.committed(p->o.ctx, key, info, pi) : 0;
	if (r < 0)
		return fail(p, r, "%s", strerror(-r)); /* the callback may have said more */
	p->st.packs++;
	p->st.bytes += info->compressed;
	for (size_t i = 0; i < pi->nblobs; i++)
		p->st.blob_bytes += pi->blobs[i].size;
	return 0;
}

static void *commit_behind_thread(void *arg)
{
	struct behind *b = arg;
	b->r = commit_upload(b->backend, b->u, b->key.buf, b->msg, sizeof(b->msg));
	return NULL;
}

/* Waits for the commit behind, if one runs, and hands its pack over: 0, or the packer's
 * error. */
static int join_behind(packer *p)
{
	struct behind *b = &p->behind;
	if (!b->running)
		return 0;
	pthread_join(b->thread, NULL);
	b->running = false;
	int r = 0;
	if (b->r < 0 && !p->err) {
		r = fail(p, b->r, "%s", b->msg);
		p->err_behind = true;
	} else if (b->r < 0) {
		r = p->err;
	}
	struct pack_index pi = {b->blobs, b->nblobs};
	if (r == 0)
		r = hand_over(p, b->key.buf, &b->info, &pi);
	cb_upload_free(b->u); /* aborts it unless committed */
	sb_free(&b->key);
	free(b->blobs);
	*b = (struct behind){0};
	return r;
}

/* Moves the finished pack (its upload, key and index) to a commit on a thread of its own;
 * false when no thread could be made (the caller commits it itself). */
static bool start_behind(packer *p, const struct pack_info *info)
{
	struct behind *b = &p->behind;
	*b = (struct behind){.backend = p->o.backend, .u = p->u, .key = p->key, .blobs = p->blobs,
			     .nblobs = p->nblobs, .info = *info};
	if (pthread_create(&b->thread, NULL, commit_behind_thread, b) != 0) {
		*b = (struct behind){0};
		return false;
	}
	b->running = true;
	p->u = NULL;
	p->key = (struct strbuf){0};
	p->blobs = NULL;
	return true;
}

/* Ends the pack being written: index, trailer, seek table; commits its upload (or has it
 * committed behind, see packer.h); hands it to the caller. */
static int close_pack(packer *p)
{
	if (!p->w)
		return 0;
	struct pack_index pi = {p->blobs, p->nblobs};
	struct pack_info info;
	int r = pack_writer_finish(p->w, &pi, &info);
	if (r < 0)
		return fail(p, r, "cannot write pack %s: %s", p->key.buf,
			    pack_writer_errmsg(p->w) ? pack_writer_errmsg(p->w) : strerror(-r));
	if ((r = join_behind(p)) < 0)
		return r;
	if (!p->o.commit_behind || !start_behind(p, &info)) {
		char msg[sizeof(p->msg)];
		if ((r = commit_upload(p->o.backend, p->u, p->key.buf, msg, sizeof(msg))) < 0)
			return fail(p, r, "%s", msg);
		if ((r = hand_over(p, p->key.buf, &info, &pi)) < 0)
			return r;
	}
	drop_pack(p);
	p->seq++;
	return 0;
}

/* Makes sure the next member (m) goes into a pack with room for it (see packer.h). */
static int make_room(packer *p, const struct pack_member *m)
{
	if (p->err)
		return p->err;
	if (p->w && p->members) {
		uint64_t at = pack_writer_offset(p->w);
		bool full = at + m->size + MEMBER_OVERHEAD > p->target || p->nblobs >= PACKER_MAX_BLOBS;
		if ((full || tfind(m->path, &p->names, cmp_str)) && close_pack(p) < 0)
			return p->err;
	}
	return p->w ? 0 : open_pack(p, m->size);
}

/* --- the index: every content once ------------------------------------------------------ */

static size_t slot_of(const unsigned char sha[32], uint64_t size, size_t nslots)
{
	uint64_t h;
	memcpy(&h, sha, sizeof(h));
	return (size_t)(h ^ size * 0x9E3779B97F4A7C15ull) & (nslots - 1);
}

/* Is (sha, size) indexed in this pack already? */
static bool indexed(const packer *p, const unsigned char sha[32], uint64_t size)
{
	for (size_t i = p->nslots ? slot_of(sha, size, p->nslots) : 0; p->nslots && p->slots[i];
	     i = (i + 1) & (p->nslots - 1)) {
		const struct pack_blob *b = &p->blobs[p->slots[i] - 1];
		if (b->size == size && !memcmp(b->sha256, sha, 32))
			return true;
	}
	return false;
}

static int grow_slots(packer *p)
{
	size_t n = p->nslots ? 2 * p->nslots : 1024;
	size_t *s = calloc(n, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t k = 0; k < p->nblobs; k++) {
		size_t i = slot_of(p->blobs[k].sha256, p->blobs[k].size, n);
		while (s[i])
			i = (i + 1) & (n - 1);
		s[i] = k + 1;
	}
	free(p->slots);
	p->slots = s;
	p->nslots = n;
	return 0;
}

/* Records the member just written (its name, and its content in the index unless there). */
static int note_member(packer *p, const struct pack_member *m, const unsigned char sha[32],
		       uint64_t off)
{
	char *name = strdup(m->path);
	if (!name || !tsearch(name, &p->names, cmp_str)) {
		free(name);
		return fail(p, -ENOMEM, "out of memory");
	}
	p->members++;
	if (indexed(p, sha, m->size))
		return 0;
	if (p->nblobs == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;
		struct pack_blob *v = realloc(p->blobs, cap * sizeof(*v));
		if (!v)
			return fail(p, -ENOMEM, "out of memory");
		p->blobs = v;
		p->cap = cap;
	}
	if (2 * (p->nblobs + 1) > p->nslots && grow_slots(p) < 0)
		return fail(p, -ENOMEM, "out of memory");
	struct pack_blob *b = &p->blobs[p->nblobs++];
	memcpy(b->sha256, sha, 32);
	b->size = m->size;
	b->offset = off;
	size_t i = slot_of(sha, m->size, p->nslots);
	while (p->slots[i])
		i = (i + 1) & (p->nslots - 1);
	p->slots[i] = p->nblobs;
	return 0;
}

/* --- adding members ---------------------------------------------------------------------- */

/* After a member was written (r its outcome): note it, or fail the packer. A failure of the
 * pack being written (libarchive or the store said why) gets the packer's message; one of the
 * member's source (a file that changed or could not be read, a pack that could not be read, a
 * cancel) is the caller's to say: the packer is spent either way, its pack aborted at
 * packer_free. */
static int added(packer *p, int r, const struct pack_member *m, const unsigned char sha[32],
		 uint64_t off, unsigned *seq)
{
	if (r == 0) {
		if (seq)
			*seq = p->seq;
		return note_member(p, m, sha, off);
	}
	const char *la = pack_writer_errmsg(p->w);
	if (!la || r == -ESTALE || r == -ECANCELED)
		return p->err = r;
	return fail(p, r, "cannot write pack %s: %s", p->key.buf, la);
}

int packer_add_fd(packer *p, const struct pack_member *m, int fd, unsigned char sha256[32],
		  const volatile sig_atomic_t *cancel, progress_fn progress, void *pctx,
		  unsigned *seq)
{
	uint64_t off;
	int r = make_room(p, m) ?: pack_writer_add_fd(p->w, m, fd, sha256, &off, cancel, progress, pctx);
	return p->err ? p->err : added(p, r, m, sha256, off, seq);
}

int packer_add_buffer(packer *p, const struct pack_member *m, const void *data,
		      const unsigned char sha256[32], unsigned *seq)
{
	uint64_t off;
	int r = make_room(p, m) ?: pack_writer_add_buffer(p->w, m, data, &off);
	return p->err ? p->err : added(p, r, m, sha256, off, seq);
}

int packer_add_reader(packer *p, const struct pack_member *m,
		      int (*read)(void *ctx, uint64_t off, void *buf, size_t len), void *ctx,
		      unsigned char sha256[32], unsigned *seq)
{
	uint64_t off;
	int r = make_room(p, m) ?: pack_writer_add_reader(p->w, m, read, ctx, sha256, &off);
	return p->err ? p->err : added(p, r, m, sha256, off, seq);
}

int packer_add_link(packer *p, const struct pack_member *m, const char *target)
{
	if (p->err)
		return p->err;
	if (!p->w)
		return -EINVAL; /* no pack holds the target now */
	int r = pack_writer_add_hardlink(p->w, m, target);
	if (r < 0)
		return fail(p, r, "cannot write pack %s: %s", p->key.buf, strerror(-r));
	char *name = strdup(m->path);
	if (!name || !tsearch(name, &p->names, cmp_str)) {
		free(name);
		return fail(p, -ENOMEM, "out of memory");
	}
	return 0;
}

int packer_cut(packer *p)
{
	return p->err ? p->err : p->members ? close_pack(p) : 0;
}

int packer_finish(packer *p)
{
	int r = packer_cut(p);
	int behind = join_behind(p);
	return r ? r : behind;
}
