/* readback.c: see readback.h. */
#include "readback.h"
#include "hash.h"
#include "packread.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct readback {
	struct store *s;
	pack_cache *pc; /* the store's */
	const volatile sig_atomic_t *cancel;
	sha256_ctx *h;
	unsigned char *buf; /* READBACK_CHUNK bytes */
};

int readback_new(struct store *s, const volatile sig_atomic_t *cancel, readback **out)
{
	*out = NULL;
	readback *rb = calloc(1, sizeof(*rb));
	if (!rb)
		return -ENOMEM;
	rb->cancel = cancel;
	rb->s = s;
	int r = store_pack_cache(s, &rb->pc);
	if (r == 0)
		r = sha256_new(&rb->h);
	if (r == 0 && !(rb->buf = malloc(READBACK_CHUNK)))
		r = -ENOMEM;
	if (r < 0) {
		readback_free(rb);
		return r;
	}
	*out = rb;
	return 0;
}

void readback_free(readback *rb)
{
	if (!rb)
		return;
	sha256_free(rb->h);
	free(rb->buf);
	free(rb);
}

/* Where the bytes come from: a pack (key, the content's offset in its tar stream) or a file. */
struct source {
	const char *key;
	uint64_t offset;
	int fd;
};

/* Bytes [off, off + n) of the content into rb->buf: 0 or -errno. */
static int source_read(readback *rb, const struct source *src, uint64_t off, size_t n)
{
	if (src->key)
		return pack_cache_read(rb->pc, src->key, src->offset + off, rb->buf, n);
	ssize_t k = pread_full(src->fd, rb->buf, n, (off_t)off);
	return k < 0 ? (int)k : (size_t)k != n ? -ESTALE : 0;
}

/* A pack error that says the backup is at fault (see readback.h). */
static bool pack_damaged(int r)
{
	return r == -ENOENT || r == -EIO || r == -EBADMSG || r == -ERANGE;
}

static int stop(struct readback_result *res, enum readback_step step, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int stop(struct readback_result *res, enum readback_step step, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->why, sizeof(res->why), fmt, ap);
	va_end(ap);
	res->step = step;
	return r;
}

static int run(readback *rb, const struct source *src, uint64_t size, const unsigned char want[32],
	       readback_sink sink, void *ctx, struct readback_result *res)
{
	*res = (struct readback_result){.step = READBACK_OK};
	int r = 0;
	for (uint64_t off = 0; r == 0 && off < size;) {
		size_t n = size - off < READBACK_CHUNK ? (size_t)(size - off) : READBACK_CHUNK;
		if (rb->cancel && *rb->cancel)
			r = stop(res, READBACK_CANCELED, -ECANCELED, "interrupted");
		else if ((r = source_read(rb, src, off, n)) < 0 && src->key)
			r = stop(res, READBACK_SOURCE, r, "%s: %s", src->key, pack_cache_strerror(r));
		else if (r < 0)
			r = stop(res, READBACK_SOURCE, r, "%s", r == -ESTALE ? "the file shrank while it was read"
									: strerror(-r));
		else if ((r = sha256_update(rb->h, rb->buf, n)) < 0)
			r = stop(res, READBACK_HASH, r, "cannot hash: %s", strerror(-r));
		else if (sink && (r = sink(ctx, rb->buf, n)) < 0)
			r = stop(res, READBACK_SINK, r, "%s", strerror(-r));
		else {
			off += n;
			res->bytes += n;
		}
	}
	/* always final: it leaves the context fresh for the next content */
	int h = sha256_final(rb->h, res->sha256);
	if (r == 0 && h < 0)
		r = stop(res, READBACK_HASH, h, "cannot hash: %s", strerror(-h));
	if (r == 0 && memcmp(res->sha256, want, 32) != 0) {
		if (src->key)
			r = stop(res, READBACK_DIFFERS, READBACK_EDIFFERS,
				 "its bytes in %s differ from the SHA-256 recorded at backup time", src->key);
		else
			r = stop(res, READBACK_DIFFERS, READBACK_EDIFFERS,
				 "its bytes differ from the SHA-256 recorded at backup time");
	}
	if (r < 0 && res->step != READBACK_DIFFERS)
		memset(res->sha256, 0, sizeof(res->sha256));
	res->damaged = src->key && (res->step == READBACK_DIFFERS ||
				    (res->step == READBACK_SOURCE && pack_damaged(r)));
	return r;
}

int readback_pack(readback *rb, const struct cb_blob_loc *loc, uint64_t size,
		  const unsigned char want[32], readback_sink sink, void *ctx,
		  struct readback_result *res)
{
	struct source src = {.key = loc->pack_path, .offset = loc->offset, .fd = -1};
	int r = run(rb, &src, size, want, sink, ctx, res);
	/* the pack gone before a byte of it was read: a prune repacked the content meanwhile,
	 * so it is read from where it is now (a pack gone midway stays an error: the sink has
	 * had bytes) */
	struct cb_blob_loc moved;
	bool gone = r == -ENOENT && res->step == READBACK_SOURCE;
	if (gone && store_relocate(rb->s, loc, &moved) == 0) {
		if (res->bytes == 0) {
			src = (struct source){.key = moved.pack_path, .offset = moved.offset, .fd = -1};
			return run(rb, &src, size, want, sink, ctx, res);
		}
		/* midway: the sink has had bytes; the backup is whole, and a second run reads the
		 * content from its new pack */
		res->damaged = false;
		snprintf(res->why, sizeof(res->why), "%.200s was repacked by a prune while it was "
			 "read (the content is in %.200s now): run again", loc->pack_path, moved.pack_path);
	}
	return r;
}

int readback_fd(readback *rb, int fd, uint64_t size, const unsigned char want[32],
		readback_sink sink, void *ctx, struct readback_result *res)
{
	struct source src = {.fd = fd};
	return run(rb, &src, size, want, sink, ctx, res);
}
