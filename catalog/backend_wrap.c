/* backend_wrap.c: backends over a backend (restic's backend/limiter and backend/retry): each
 * hands every call to the one below it and adds one thing. The store stacks them once, over a
 * local directory as over S3: retry(limit(the store's own backend)).
 *
 * limit: one byte rate up and one down over every transfer of the process's store together:
 *        objects read (after they arrive), ranged reads (before they are asked for), uploads
 *        (as they are written; an upload buffers at most its parts in flight ahead of that).
 * retry: a call that failed with -EAGAIN (a backend's word for "transient: the same call may
 *        succeed", e.g. an S3 answer 503 SlowDown, a reset) is made again, after cb_backoff,
 *        up to `retries` times; then -EIO, with the last failure's words. Calls that cannot
 *        be repeated whole (a listing that handed out pages, an upload's parts) are retried
 *        step by step inside the backend, with the same cb_backoff. */
#include "backend_i.h"
#include "ratelimit.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wrap {
	struct cb_backend b;
	struct cb_backend *inner;
	/* limit */
	struct rate_limit up, down;
	/* retry */
	unsigned retries;
};

static struct cb_backend *inner(struct cb_backend *b) { return ((struct wrap *)b)->inner; }
static struct wrap *wrap_of(struct cb_backend *b) { return (struct wrap *)b; }

static unsigned backoff_max_ms = 5000;
static pthread_once_t backoff_once = PTHREAD_ONCE_INIT;

/* CASSBACKUP_RETRY_MAX_MS (whole milliseconds, 1 to 5000), for tests only: the suite's fault
 * tests exhaust retries many times, and the longest sleep is no part of what they check. */
static void backoff_read_env(void)
{
	const char *v = getenv("CASSBACKUP_RETRY_MAX_MS");
	char *end;
	long n = v && *v ? strtol(v, &end, 10) : 0;
	if (n >= 1 && n <= 5000 && *end == '\0')
		backoff_max_ms = (unsigned)n;
}

void cb_backoff(unsigned attempt)
{
	pthread_once(&backoff_once, backoff_read_env);
	unsigned cap_ms = 100u << (attempt < 6 ? attempt : 6);
	if (cap_ms > backoff_max_ms)
		cap_ms = backoff_max_ms;
	unsigned ms = (unsigned)random_below(cap_ms + 1);
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Calls that pass straight through (each wrapper's own take their place where it has one). */
static int pass_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	return inner(b)->ops->get(inner(b), key, max, data, len);
}

static int pass_stat(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	return inner(b)->ops->stat(inner(b), key, info);
}

static int pass_del(struct cb_backend *b, const char *key)
{
	return inner(b)->ops->del(inner(b), key);
}

static int pass_del_many(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	struct cb_backend *i = inner(b);
	return i->ops->del_many ? i->ops->del_many(i, keys, n, results)
				: cb_backend_delete_each(i, keys, n, results);
}

static int pass_list(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx)
{
	return inner(b)->ops->list(inner(b), prefix, cb, ctx);
}

static int pass_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	return inner(b)->ops->open_read(inner(b), key, out);
}

static int pass_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			     struct cb_upload **out)
{
	return inner(b)->ops->upload_begin(inner(b), key, size_hint, flags, out);
}

static int pass_reclaim(struct cb_backend *b, unsigned *removed)
{
	return inner(b)->ops->reclaim(inner(b), removed);
}

static void pass_explain_absent(struct cb_backend *b, const char *key, struct strbuf *out)
{
	cb_backend_explain_absent(inner(b), key, out);
}

static void wrap_close(struct cb_backend *b)
{
	struct wrap *w = wrap_of(b);
	cb_backend_close(w->inner);
	rate_limit_destroy(&w->up);
	rate_limit_destroy(&w->down);
	free(b->location);
	free(w);
}

static int new_wrap(struct cb_backend *in, const struct cb_backend_ops *ops, struct wrap **out)
{
	struct wrap *w = calloc(1, sizeof(*w));
	char *loc = strdup(in->location);
	if (!w || !loc) {
		free(w);
		free(loc);
		return -ENOMEM;
	}
	w->b = (struct cb_backend){.ops = ops, .location = loc, .readonly = in->readonly,
				   .credentials = in->credentials};
	w->inner = in;
	rate_limit_init(&w->up, 0);
	rate_limit_init(&w->down, 0);
	*out = w;
	return 0;
}

/* --- limit ------------------------------------------------------------------------------- */

static int limit_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	int r = pass_get(b, key, max, data, len);
	if (r == 0)
		rate_limit_take(&wrap_of(b)->down, *len);
	return r;
}

/* A ranged reader whose reads take their bytes from the limit first. */
struct limited_io {
	struct cb_io io;
	struct cb_io *in;
	struct rate_limit *down;
};

static ssize_t limited_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct limited_io *l = (struct limited_io *)io;
	rate_limit_take(l->down, len);
	return cb_io_pread(l->in, buf, len, off);
}

static void limited_close(struct cb_io *io)
{
	struct limited_io *l = (struct limited_io *)io;
	cb_io_close(l->in);
	free(l);
}

static void limited_done(struct cb_io *io, uint64_t off, size_t len)
{
	cb_io_done(((struct limited_io *)io)->in, off, len);
}

static const struct cb_io_ops limited_io_ops = {.pread = limited_pread, .close = limited_close,
						.done = limited_done};

static int limit_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	struct cb_io *in;
	int r = pass_open_read(b, key, &in);
	if (r < 0)
		return r;
	struct limited_io *l = calloc(1, sizeof(*l));
	if (!l) {
		cb_io_close(in);
		return -ENOMEM;
	}
	*l = (struct limited_io){.io = {.ops = &limited_io_ops, .size = in->size}, .in = in,
				 .down = &wrap_of(b)->down};
	*out = &l->io;
	return 0;
}

/* An upload whose writes take their bytes from the limit first. */
struct limited_upload {
	struct cb_upload u;
	struct cb_upload *in;
	struct rate_limit *up;
};

static int limited_write(struct cb_upload *u, const void *buf, size_t len)
{
	struct limited_upload *l = (struct limited_upload *)u;
	rate_limit_take(l->up, len);
	return cb_upload_write(l->in, buf, len);
}

static int limited_commit(struct cb_upload *u)
{
	struct cb_upload *in = ((struct limited_upload *)u)->in;
	int r = cb_upload_commit(in);
	memcpy(u->version, in->version, CB_VERSION_MAX);
	return r;
}

static void limited_free(struct cb_upload *u)
{
	struct limited_upload *l = (struct limited_upload *)u;
	cb_upload_free(l->in);
	free(l);
}

static const struct cb_upload_ops limited_upload_ops = {
	.write = limited_write, .commit = limited_commit, .free = limited_free,
};

static int limit_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			      struct cb_upload **out)
{
	struct cb_upload *in;
	int r = pass_upload_begin(b, key, size_hint, flags, &in);
	if (r < 0)
		return r;
	struct limited_upload *l = calloc(1, sizeof(*l));
	if (!l) {
		cb_upload_free(in);
		return -ENOMEM;
	}
	*l = (struct limited_upload){.u = {.ops = &limited_upload_ops}, .in = in, .up = &wrap_of(b)->up};
	*out = &l->u;
	return 0;
}

static const struct cb_backend_ops limit_ops = {
	.get = limit_get, .stat = pass_stat, .del = pass_del, .del_many = pass_del_many,
	.list = pass_list, .open_read = limit_open_read, .upload_begin = limit_upload_begin,
	.reclaim = pass_reclaim, .explain_absent = pass_explain_absent, .close = wrap_close,
};

int cb_backend_limit(struct cb_backend *in, uint64_t up_bps, uint64_t down_bps,
		     struct cb_backend **out)
{
	struct wrap *w;
	int r = new_wrap(in, &limit_ops, &w);
	if (r < 0)
		return r;
	rate_limit_init(&w->up, up_bps);
	rate_limit_init(&w->down, down_bps);
	*out = &w->b;
	return 0;
}

/* --- retry ------------------------------------------------------------------------------- */

/* After the last attempt: a transient failure is a failure. */
static int given_up(int r)
{
	return r == -EAGAIN ? -EIO : r;
}

#define RETRY(b, call)                                                                            \
	do {                                                                                      \
		int r_ = (call);                                                                  \
		for (unsigned a_ = 1; r_ == -EAGAIN && a_ <= wrap_of(b)->retries; a_++) {         \
			cb_backoff(a_);                                                           \
			r_ = (call);                                                              \
		}                                                                                 \
		return given_up(r_);                                                              \
	} while (0)

static int retry_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	RETRY(b, pass_get(b, key, max, data, len));
}

static int retry_stat(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	RETRY(b, pass_stat(b, key, info));
}

static int retry_del(struct cb_backend *b, const char *key)
{
	RETRY(b, pass_del(b, key));
}

/* A ranged reader whose reads are made again while they fail transiently. */
struct retry_io {
	struct cb_io io;
	struct cb_io *in;
	unsigned retries;
};

static ssize_t retry_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct retry_io *t = (struct retry_io *)io;
	ssize_t n = cb_io_pread(t->in, buf, len, off);
	for (unsigned a = 1; n == -EAGAIN && a <= t->retries; a++) {
		cb_backoff(a);
		n = cb_io_pread(t->in, buf, len, off);
	}
	return n == -EAGAIN ? -EIO : n;
}

static void retry_io_close(struct cb_io *io)
{
	struct retry_io *t = (struct retry_io *)io;
	cb_io_close(t->in);
	free(t);
}

static void retry_done(struct cb_io *io, uint64_t off, size_t len)
{
	cb_io_done(((struct retry_io *)io)->in, off, len);
}

static const struct cb_io_ops retry_io_ops = {.pread = retry_pread, .close = retry_io_close,
					      .done = retry_done};

static int retry_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	struct cb_io *in = NULL;
	int r = pass_open_read(b, key, &in);
	for (unsigned a = 1; r == -EAGAIN && a <= wrap_of(b)->retries; a++) {
		cb_backoff(a);
		r = pass_open_read(b, key, &in);
	}
	if (r < 0)
		return given_up(r);
	struct retry_io *t = calloc(1, sizeof(*t));
	if (!t) {
		cb_io_close(in);
		return -ENOMEM;
	}
	*t = (struct retry_io){.io = {.ops = &retry_io_ops, .size = in->size}, .in = in,
			       .retries = wrap_of(b)->retries};
	*out = &t->io;
	return 0;
}

static const struct cb_backend_ops retry_ops = {
	.get = retry_get, .stat = retry_stat, .del = retry_del, .del_many = pass_del_many,
	.list = pass_list, .open_read = retry_open_read, .upload_begin = pass_upload_begin,
	.reclaim = pass_reclaim, .explain_absent = pass_explain_absent, .close = wrap_close,
};

int cb_backend_retry(struct cb_backend *in, unsigned retries, struct cb_backend **out)
{
	struct wrap *w;
	int r = new_wrap(in, &retry_ops, &w);
	if (r < 0)
		return r;
	w->retries = retries;
	*out = &w->b;
	return 0;
}
