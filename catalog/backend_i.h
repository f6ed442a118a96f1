/* backend_i.h: what a backend implementation provides (local directory; later S3). */
#ifndef CASSBACKUP_BACKEND_I_H
#define CASSBACKUP_BACKEND_I_H

#include "backend.h"
#include "util.h"

struct cb_backend_ops {
	int (*get)(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len);
	int (*stat)(struct cb_backend *b, const char *key, struct cb_object_info *info);
	int (*del)(struct cb_backend *b, const char *key);
	/* optional: keys already checked; results[] as cb_backend_delete_many's */
	int (*del_many)(struct cb_backend *b, const char *const *keys, size_t n, int *results);
	int (*list)(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx);
	int (*open_read)(struct cb_backend *b, const char *key, struct cb_io **out);
	int (*upload_begin)(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			    struct cb_upload **out);
	int (*reclaim)(struct cb_backend *b, unsigned *removed);
	/* optional: cb_backend_explain_absent */
	void (*explain_absent)(struct cb_backend *b, const char *key, struct strbuf *out);
	void (*close)(struct cb_backend *b);
};

struct cb_backend {
	const struct cb_backend_ops *ops;
	char *location;
	bool readonly;
	const char *credentials; /* which source gave them (awscred_source); NULL: none needed */
};

struct cb_upload_ops {
	int (*write)(struct cb_upload *u, const void *buf, size_t len);
	int (*commit)(struct cb_upload *u);
	void (*free)(struct cb_upload *u); /* aborts when not committed */
};

struct cb_upload {
	const struct cb_upload_ops *ops;
	uint64_t size;
	bool committed;
	int error; /* sticky: once a write fails, every later call returns it */
	/* set by a commit that knows it: the object's version (cb_object_info) as the write
	 * itself told it; "" otherwise. A wrapper's commit copies its inner upload's. */
	char version[CB_VERSION_MAX];
};

/* cb_backend_delete_many through ops->del, one key at a time. */
int cb_backend_delete_each(struct cb_backend *b, const char *const *keys, size_t n, int *results);

int cb_backend_open_local(const char *path, int flags, struct cb_backend **out);

/* backend_wrap.c: wrappers that take over in (closing it with themselves). A backend's call
 * that fails transiently, and may be made again whole, returns -EAGAIN for retry to repeat. */
int cb_backend_limit(struct cb_backend *in, uint64_t up_bps, uint64_t down_bps,
		     struct cb_backend **out);
int cb_backend_retry(struct cb_backend *in, unsigned retries, struct cb_backend **out);
int cb_backend_open_s3(const char *location, int flags, const struct cb_s3_options *o,
		       struct cb_backend **out);

/* backend_crypt.c: the encrypted store's backend over in (taking over in and key): every
 * object but config and keys/ sealed in crypt.h's envelope of chunk-byte chunks. */
struct crypt_key;
int cb_backend_crypt(struct cb_backend *in, struct crypt_key *key, uint32_t chunk,
		     struct cb_backend **out);
/* True for the keys an encrypted store keeps in plaintext: config and keys/. */
bool cb_crypt_key_is_plain(const char *key);

/* Sets this thread's cb_backend_last_error(). */
void cb_backend_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
