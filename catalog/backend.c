/* backend.c: the backend interface's checks and dispatch; see backend.h. */
#include "backend_i.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cb_key_valid(const char *key)
{
	if (!key || !*key || strlen(key) > 1024)
		return false;
	for (const char *p = key;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		char part[256];
		if (n == 0 || n >= sizeof(part))
			return false;
		memcpy(part, p, n);
		part[n] = '\0';
		if (!name_is_component(part))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

/* A prefix is "" (everything) or a key followed by '/'. */
static bool prefix_valid(const char *prefix)
{
	size_t n = strlen(prefix);
	if (n == 0)
		return true;
	if (prefix[n - 1] != '/' || n > 1024)
		return false;
	char k[1025];
	memcpy(k, prefix, n - 1);
	k[n - 1] = '\0';
	return cb_key_valid(k);
}

static __thread char last_error[512];

const char *cb_backend_last_error(void) { return last_error; }

/* Every call starts with no error: a failure is told by the call that failed, never by an
 * earlier one that another caller handled (an expected 404). */
static void clear_error(void)
{
	last_error[0] = '\0';
}

void cb_backend_set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *cb_backend_why(int r)
{
	return *cb_backend_last_error() ? cb_backend_last_error() : strerror(-r);
}

bool cb_location_is_remote(const char *location)
{
	return location && strncmp(location, "s3://", 5) == 0;
}

int cb_backend_open(const char *location, int flags, const struct cb_s3_options *o,
		    struct cb_backend **out)
{
	*out = NULL;
	last_error[0] = '\0';
	if (!location || !*location)
		return -EINVAL;
	struct cb_s3_options none = {0};
	if (!o)
		o = &none;
	struct cb_backend *real, *limited;
	int r = cb_location_is_remote(location) ? cb_backend_open_s3(location, flags, o, &real)
						: cb_backend_open_local(location, flags, &real);
	if (r < 0)
		return r;
	if ((r = cb_backend_limit(real, o->limit_upload, o->limit_download, &limited)) < 0) {
		cb_backend_close(real);
		return r;
	}
	if ((r = cb_backend_retry(limited, o->retries ? o->retries : CB_RETRIES_DEFAULT, out)) < 0)
		cb_backend_close(limited);
	return r;
}

void cb_backend_close(struct cb_backend *b)
{
	if (b)
		b->ops->close(b);
}

const char *cb_backend_location(const struct cb_backend *b) { return b->location; }
bool cb_backend_readonly(const struct cb_backend *b) { return b->readonly; }
const char *cb_backend_credentials(const struct cb_backend *b) { return b->credentials; }

void cb_backend_explain_absent(struct cb_backend *b, const char *key, struct strbuf *out)
{
	if (b->ops->explain_absent)
		b->ops->explain_absent(b, key, out);
}

int cb_backend_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	clear_error();
	*data = NULL;
	*len = 0;
	return cb_key_valid(key) ? b->ops->get(b, key, max, data, len) : -EINVAL;
}

void cb_version_from_etag(const char *etag, char out[CB_VERSION_MAX])
{
	size_t n = 0;
	for (const char *p = etag ? etag : ""; *p && n < CB_VERSION_MAX - 1; p++)
		if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-')
			out[n++] = *p;
	out[n] = '\0';
}

int cb_backend_stat_info(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	clear_error();
	*info = (struct cb_object_info){0};
	return cb_key_valid(key) ? b->ops->stat(b, key, info) : -EINVAL;
}

int cb_backend_stat(struct cb_backend *b, const char *key, uint64_t *size)
{
	struct cb_object_info info;
	int r = cb_backend_stat_info(b, key, &info);
	if (r == 0)
		*size = info.size;
	return r;
}

int cb_backend_put_version(struct cb_backend *b, const char *key, const void *data, size_t len,
			   int flags, char version[CB_VERSION_MAX])
{
	struct cb_upload *u;
	if (version)
		*version = '\0';
	int r = cb_backend_upload_begin(b, key, len, flags, &u);
	if (r < 0)
		return r;
	r = cb_upload_write(u, data, len);
	if (r == 0)
		r = cb_upload_commit(u);
	if (r == 0 && version)
		memcpy(version, u->version, CB_VERSION_MAX);
	cb_upload_free(u);
	return r;
}

int cb_backend_put(struct cb_backend *b, const char *key, const void *data, size_t len, int flags)
{
	return cb_backend_put_version(b, key, data, len, flags, NULL);
}

int cb_backend_delete(struct cb_backend *b, const char *key)
{
	clear_error();
	if (b->readonly)
		return -EROFS;
	return cb_key_valid(key) ? b->ops->del(b, key) : -EINVAL;
}

int cb_backend_delete_quiet(struct cb_backend *b, const char *key)
{
	char kept[sizeof(last_error)];
	memcpy(kept, last_error, sizeof(kept));
	int r = cb_backend_delete(b, key);
	memcpy(last_error, kept, sizeof(kept));
	return r;
}

/* One key at a time, for backends without batches and as their fallback. */
int cb_backend_delete_each(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	int first = 0;
	for (size_t i = 0; i < n; i++) {
		results[i] = b->ops->del(b, keys[i]);
		if (results[i] == -ENOENT)
			results[i] = 0;
		if (results[i] < 0 && !first)
			first = results[i];
	}
	return first;
}

int cb_backend_delete_many(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	clear_error();
	if (b->readonly)
		return -EROFS;
	for (size_t i = 0; i < n; i++)
		if (!cb_key_valid(keys[i]))
			return -EINVAL;
	return b->ops->del_many ? b->ops->del_many(b, keys, n, results)
				: cb_backend_delete_each(b, keys, n, results);
}

int cb_backend_list_info(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx)
{
	clear_error();
	return prefix_valid(prefix) ? b->ops->list(b, prefix, cb, ctx) : -EINVAL;
}

struct sizes_only {
	int (*cb)(void *ctx, const char *key, uint64_t size);
	void *ctx;
};

static int size_of(void *ctx, const char *key, const struct cb_object_info *info)
{
	struct sizes_only *s = ctx;
	return s->cb(s->ctx, key, info->size);
}

int cb_backend_list(struct cb_backend *b, const char *prefix,
		    int (*cb)(void *ctx, const char *key, uint64_t size), void *ctx)
{
	struct sizes_only s = {cb, ctx};
	return cb_backend_list_info(b, prefix, size_of, &s);
}

int cb_backend_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	clear_error();
	*out = NULL;
	return cb_key_valid(key) ? b->ops->open_read(b, key, out) : -EINVAL;
}

int cb_backend_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			    struct cb_upload **out)
{
	clear_error();
	*out = NULL;
	if (b->readonly)
		return -EROFS;
	return cb_key_valid(key) ? b->ops->upload_begin(b, key, size_hint, flags, out) : -EINVAL;
}

int cb_upload_write(struct cb_upload *u, const void *buf, size_t len)
{
	clear_error();
	if (u->error)
		return u->error;
	if (u->committed)
		return -EINVAL;
	int r = len ? u->ops->write(u, buf, len) : 0;
	if (r < 0)
		u->error = r;
	else
		u->size += len;
	return r;
}

uint64_t cb_upload_size(const struct cb_upload *u) { return u->size; }

int cb_upload_commit(struct cb_upload *u)
{
	clear_error();
	if (u->error)
		return u->error;
	int r = u->ops->commit(u);
	if (r < 0)
		u->error = r;
	else
		u->committed = true;
	return r;
}

void cb_upload_free(struct cb_upload *u)
{
	if (u)
		u->ops->free(u);
}

int cb_backend_reclaim(struct cb_backend *b, unsigned *removed)
{
	clear_error();
	*removed = 0;
	return b->readonly ? 0 : b->ops->reclaim(b, removed);
}
