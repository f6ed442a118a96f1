/* backend_crypt.c: an encrypted store's backend, over the store's own stack
 * (crypt(retry(limit(local or S3)))): every object but `config` and `keys/` is sealed in
 * crypt.h's envelope on its way down and opened on its way up, so everything above it (packs,
 * their indexes and seek tables, manifests, locks, commitlog segments, and copy, export,
 * check, the mount) reads and writes plaintext and knows nothing of keys.
 *
 * Sizes above are the plaintext's (a listing's and a stat's computed from the sealed size:
 * crypt_plain_size). A ranged read fetches the sealed chunks that cover it, one read below,
 * and authenticates each: a read of a frame costs the frame and at most a chunk more on each
 * side. An object that fails authentication anywhere a read touches is -EBADMSG, never
 * bytes: for whole objects (a manifest that does not parse) and for ranged reads, which the
 * pack reader takes for damaged pack data (pack_read_error: restore says the backup is
 * damaged, not to try again; the mount gives EIO), where a failing read below stays -EIO.
 * cb_backend_last_error() names the object. */
#include "backend_i.h"
#include "crypt.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct crypt_backend {
	struct cb_backend b;
	struct cb_backend *inner;
	struct crypt_key *key; /* the store's; freed with the backend */
	uint32_t chunk;
};

static struct crypt_backend *cb_of(struct cb_backend *b) { return (struct crypt_backend *)b; }

/* config and the key slots stay readable without the key: they are how it is found. */
bool cb_crypt_key_is_plain(const char *key)
{
	return !strcmp(key, "config") || !strncmp(key, "keys/", 5);
}

static int auth_failed(const char *key, int r)
{
	if (r == -EBADMSG)
		cb_backend_set_error("%s: fails authentication: damaged, or sealed with another key", key);
	return r;
}

static int crypt_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	struct crypt_backend *c = cb_of(b);
	if (cb_crypt_key_is_plain(key))
		return c->inner->ops->get(c->inner, key, max, data, len);
	uint64_t smax = max > (UINT64_C(1) << 48) ? UINT64_MAX : crypt_sealed_size(max, c->chunk);
	char *sealed;
	size_t slen;
	int r = c->inner->ops->get(c->inner, key, smax > SIZE_MAX ? SIZE_MAX : (size_t)smax, &sealed, &slen);
	if (r < 0)
		return r;
	r = auth_failed(key, crypt_open_buf(c->key, key, c->chunk, sealed, slen, data, len));
	free(sealed);
	if (r == 0 && *len > max) {
		free(*data);
		r = -EFBIG;
	}
	return r;
}

static int crypt_stat(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	struct crypt_backend *c = cb_of(b);
	int r = c->inner->ops->stat(c->inner, key, info);
	if (r < 0 || cb_crypt_key_is_plain(key))
		return r;
	return auth_failed(key, crypt_plain_size(info->size, c->chunk, &info->size));
}

static int crypt_del(struct cb_backend *b, const char *key)
{
	return cb_of(b)->inner->ops->del(cb_of(b)->inner, key);
}

static int crypt_del_many(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	struct cb_backend *i = cb_of(b)->inner;
	return i->ops->del_many ? i->ops->del_many(i, keys, n, results)
				: cb_backend_delete_each(i, keys, n, results);
}

struct list_ctx {
	cb_list_info_fn cb;
	void *ctx;
	uint32_t chunk;
};

/* An object whose size no plaintext seals to is listed with size 0: reading it fails. */
static int list_one(void *ctx, const char *key, const struct cb_object_info *info)
{
	struct list_ctx *l = ctx;
	struct cb_object_info pi = *info;
	if (!cb_crypt_key_is_plain(key) && crypt_plain_size(info->size, l->chunk, &pi.size) < 0)
		pi.size = 0;
	return l->cb(l->ctx, key, &pi);
}

static int crypt_list(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx)
{
	struct crypt_backend *c = cb_of(b);
	struct list_ctx l = {cb, ctx, c->chunk};
	return c->inner->ops->list(c->inner, prefix, list_one, &l);
}

/* --- ranged reads ------------------------------------------------------------------------- */

struct crypt_io {
	struct cb_io io;       /* size: the plaintext's */
	struct cb_io *in;
	struct crypt_obj *obj;
	uint64_t nchunks;
	uint32_t chunk;
	char key[];
};

/* This thread's buffer of at least n bytes for sealed chunks read (kept between reads: a
 * frame's worth is read at a time, and a fresh buffer of that size would be mapped and
 * faulted in at every read). NULL when out of memory. */
struct scratch {
	size_t cap;
	unsigned char buf[];
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_init(void)
{
	pthread_key_create(&scratch_key, free); /* freed when its thread ends */
}

static unsigned char *scratch(size_t n)
{
	pthread_once(&scratch_once, scratch_init);
	struct scratch *s = pthread_getspecific(scratch_key);
	if (s && s->cap >= n)
		return s->buf;
	size_t cap = n < (1u << 20) ? 1u << 20 : n;
	struct scratch *bigger = malloc(sizeof(*bigger) + cap);
	if (!bigger)
		return NULL;
	bigger->cap = cap;
	/* the old buffer goes only once the new one is kept: never a freed one left registered */
	if (pthread_setspecific(scratch_key, bigger) != 0) {
		free(bigger);
		return NULL;
	}
	free(s);
	return bigger->buf;
}

static ssize_t cio_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct crypt_io *x = (struct crypt_io *)io;
	if (off >= io->size || len == 0)
		return 0;
	if (len > io->size - off)
		len = (size_t)(io->size - off);
	uint64_t whole = (uint64_t)x->chunk + CRYPT_TAG;
	uint64_t first = off / x->chunk, last = (off + len - 1) / x->chunk;
	uint64_t at = CRYPT_HEADER + first * whole, end = CRYPT_HEADER + (last + 1) * whole;
	if (end > x->in->size)
		end = x->in->size;
	size_t slen = (size_t)(end - at);
	unsigned char *sealed = scratch(slen), *part = NULL;
	void *c = crypt_ctx_new(x->obj);
	ssize_t r = sealed && c ? 0 : -ENOMEM;
	if (r == 0) {
		ssize_t n = cb_io_pread(x->in, sealed, slen, at);
		r = n < 0 ? n : (size_t)n != slen ? -EIO : 0;
	}
	/* chunks wholly inside [off, off + len) open straight into buf; the partial ones at
	 * either end into part, then their share is copied */
	unsigned char *dst = buf;
	for (uint64_t i = first; r == 0 && i <= last; i++) {
		uint64_t cstart = i * x->chunk, cend = cstart + x->chunk;
		const unsigned char *src = sealed + (i - first) * whole;
		size_t n = i == last ? (size_t)(sealed + slen - src) : (size_t)whole;
		size_t plain = n - CRYPT_TAG;
		bool inside = cstart >= off && cstart + plain <= off + len;
		if (!inside && !part && !(part = malloc(x->chunk)))
			r = -ENOMEM;
		r = r ?: crypt_obj_open_one(x->obj, c, i, x->nchunks, src, n, inside ? dst : part);
		if (r == 0 && !inside) {
			uint64_t from = off > cstart ? off : cstart, to = off + len < cend ? off + len : cend;
			if (to > cstart + plain)
				r = -EIO; /* the object is shorter than its size said */
			else
				memcpy(dst, part + (from - cstart), (size_t)(to - from));
			dst += r == 0 ? (size_t)(to - from) : 0;
		} else if (r == 0) {
			dst += plain;
		}
	}
	auth_failed(x->key, (int)r);
	crypt_ctx_free(c);
	free(part);
	return r < 0 ? r : (ssize_t)len;
}

static void cio_close(struct cb_io *io)
{
	struct crypt_io *x = (struct crypt_io *)io;
	cb_io_close(x->in);
	crypt_obj_free(x->obj);
	free(x);
}

/* Only the chunks wholly inside [off, off + len): one shared with the next frame is read
 * again at once. */
static void cio_done(struct cb_io *io, uint64_t off, size_t len)
{
	struct crypt_io *x = (struct crypt_io *)io;
	uint64_t whole = (uint64_t)x->chunk + CRYPT_TAG;
	uint64_t first = (off + x->chunk - 1) / x->chunk, end = (off + len) / x->chunk;
	if (off + len >= io->size)
		end = x->nchunks; /* the object's end: its last chunk too */
	if (end > first)
		cb_io_done(x->in, CRYPT_HEADER + first * whole, (size_t)((end - first) * whole));
}

static const struct cb_io_ops crypt_io_ops = {.pread = cio_pread, .close = cio_close, .done = cio_done};

static int crypt_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	struct crypt_backend *c = cb_of(b);
	if (cb_crypt_key_is_plain(key))
		return c->inner->ops->open_read(c->inner, key, out);
	struct cb_io *in;
	int r = c->inner->ops->open_read(c->inner, key, &in);
	if (r < 0)
		return r;
	struct crypt_io *x = calloc(1, sizeof(*x) + strlen(key) + 1);
	unsigned char hdr[CRYPT_HEADER];
	uint64_t plain = 0;
	r = x ? 0 : -ENOMEM;
	r = r ?: auth_failed(key, crypt_plain_size(in->size, c->chunk, &plain));
	if (r == 0) {
		ssize_t n = cb_io_pread(in, hdr, sizeof(hdr), 0);
		r = n < 0 ? (int)n : n != sizeof(hdr) ? -EIO : 0;
	}
	r = r ?: auth_failed(key, crypt_obj_load(c->key, key, c->chunk, hdr, &x->obj));
	if (r < 0) {
		cb_io_close(in);
		if (x)
			crypt_obj_free(x->obj);
		free(x);
		return r;
	}
	x->io = (struct cb_io){.ops = &crypt_io_ops, .size = plain};
	x->in = in;
	x->chunk = c->chunk;
	x->nchunks = crypt_nchunks(plain, c->chunk);
	strcpy(x->key, key);
	*out = &x->io;
	return 0;
}

/* --- uploads ------------------------------------------------------------------------------ */

/* Plaintext is kept until UPLOAD_CHUNKS chunks are full and more follows (only then is the
 * last of them known not to be the object's last), sealed together and handed down in one
 * write; commit seals what is left, its last chunk marked final. */
#define UPLOAD_CHUNKS 16u

struct crypt_upload {
	struct cb_upload u;
	struct cb_upload *in;
	struct crypt_obj *obj;
	uint32_t chunk;
	uint64_t idx;    /* the number of the first chunk in buf */
	size_t fill;     /* plaintext bytes in buf */
	bool header_out;
	unsigned char *buf;  /* UPLOAD_CHUNKS chunks of plaintext */
	unsigned char *out;  /* their sealed bytes */
};

static int put_header(struct crypt_upload *x)
{
	if (x->header_out)
		return 0;
	x->header_out = true;
	return cb_upload_write(x->in, crypt_obj_header(x->obj), CRYPT_HEADER);
}

/* Seals the fill bytes at src, chunk after chunk (final: the last of them is the object's
 * last) and writes them. */
static int seal_from(struct crypt_upload *x, const unsigned char *src, size_t fill, bool final)
{
	int r = put_header(x);
	size_t at = 0, o = 0;
	do {
		size_t n = fill - at < x->chunk ? fill - at : x->chunk;
		bool last = at + n == fill;
		r = r ?: crypt_obj_seal(x->obj, x->idx++, final && last, src + at, n, x->out + o);
		at += n;
		o += n + CRYPT_TAG;
	} while (r == 0 && at < fill);
	return r ?: cb_upload_write(x->in, x->out, o);
}

static int seal_out(struct crypt_upload *x, bool final)
{
	int r = seal_from(x, x->buf, x->fill, final);
	x->fill = 0;
	return r;
}

static int cup_write(struct cb_upload *u, const void *buf, size_t len)
{
	struct crypt_upload *x = (struct crypt_upload *)u;
	const unsigned char *p = buf;
	size_t cap = (size_t)x->chunk * UPLOAD_CHUNKS;
	int r = 0;
	while (r == 0 && len) {
		if (x->fill == cap)
			r = seal_out(x, false); /* more follows: none of them is the last */
		if (r == 0 && x->fill == 0 && len > cap) { /* whole batches, straight from buf */
			r = seal_from(x, p, cap, false);
			p += cap;
			len -= cap;
			continue;
		}
		size_t n = cap - x->fill < len ? cap - x->fill : len;
		memcpy(x->buf + x->fill, p, n);
		x->fill += n;
		p += n;
		len -= n;
	}
	return r;
}

static int cup_commit(struct cb_upload *u)
{
	struct crypt_upload *x = (struct crypt_upload *)u;
	int r = seal_out(x, true) ?: cb_upload_commit(x->in);
	memcpy(u->version, x->in->version, CB_VERSION_MAX);
	return r;
}

static void cup_free(struct cb_upload *u)
{
	struct crypt_upload *x = (struct crypt_upload *)u;
	cb_upload_free(x->in);
	crypt_obj_free(x->obj);
	free(x->buf);
	free(x->out);
	free(x);
}

static const struct cb_upload_ops crypt_upload_ops = {
	.write = cup_write, .commit = cup_commit, .free = cup_free,
};

static int crypt_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			      struct cb_upload **out)
{
	struct crypt_backend *c = cb_of(b);
	if (cb_crypt_key_is_plain(key))
		return c->inner->ops->upload_begin(c->inner, key, size_hint, flags, out);
	struct crypt_upload *x = calloc(1, sizeof(*x));
	int r = x ? 0 : -ENOMEM;
	if (r == 0) {
		x->chunk = c->chunk;
		x->buf = malloc((size_t)c->chunk * UPLOAD_CHUNKS);
		x->out = malloc(((size_t)c->chunk + CRYPT_TAG) * UPLOAD_CHUNKS);
		r = x->buf && x->out ? 0 : -ENOMEM;
	}
	r = r ?: crypt_obj_new(c->key, key, c->chunk, &x->obj);
	r = r ?: c->inner->ops->upload_begin(c->inner, key,
					     size_hint ? crypt_sealed_size(size_hint, c->chunk) : 0,
					     flags, &x->in);
	if (r < 0) {
		if (x)
			cup_free(&x->u);
		return r;
	}
	x->u.ops = &crypt_upload_ops;
	*out = &x->u;
	return 0;
}

static int crypt_reclaim(struct cb_backend *b, unsigned *removed)
{
	return cb_of(b)->inner->ops->reclaim(cb_of(b)->inner, removed);
}

static void crypt_explain_absent(struct cb_backend *b, const char *key, struct strbuf *out)
{
	cb_backend_explain_absent(cb_of(b)->inner, key, out);
}

static void crypt_close(struct cb_backend *b)
{
	struct crypt_backend *c = cb_of(b);
	cb_backend_close(c->inner);
	crypt_key_free(c->key);
	free(b->location);
	free(c);
}

static const struct cb_backend_ops crypt_ops = {
	.get = crypt_get, .stat = crypt_stat, .del = crypt_del, .del_many = crypt_del_many,
	.list = crypt_list, .open_read = crypt_open_read, .upload_begin = crypt_upload_begin,
	.reclaim = crypt_reclaim, .explain_absent = crypt_explain_absent, .close = crypt_close,
};

int cb_backend_crypt(struct cb_backend *in, struct crypt_key *key, uint32_t chunk,
		     struct cb_backend **out)
{
	if (chunk < CRYPT_MIN_CHUNK || chunk > CRYPT_MAX_CHUNK)
		return -EINVAL;
	struct crypt_backend *c = calloc(1, sizeof(*c));
	char *loc = strdup(in->location);
	if (!c || !loc) {
		free(c);
		free(loc);
		return -ENOMEM;
	}
	c->b = (struct cb_backend){.ops = &crypt_ops, .location = loc, .readonly = in->readonly,
				   .credentials = in->credentials};
	c->inner = in;
	c->key = key;
	c->chunk = chunk;
	*out = &c->b;
	return 0;
}
