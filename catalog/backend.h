/* backend.h: where a store's objects live. The one interface through which the catalog library
 * reads and writes a store, so that a local directory and S3-compatible object storage behave
 * the same to everything above.
 *
 * A store is a set of objects named by keys, '/'-separated relative paths whose every part is
 * a name_is_component:
 *   config                       written once by init
 *   backups/NAME.json            a backup's manifest; its presence is the backup's existence
 *   packs/xx/ID.tar.zst          immutable packs
 *   locks/ID.json                who works on the store (rewritten to refresh)
 * Objects appear whole or not at all (put and upload commit are atomic), and are durable once
 * the call returns. A local store keeps everything private: directories 0700, files 0600,
 * whatever the umask.
 */
#ifndef CASSBACKUP_BACKEND_H
#define CASSBACKUP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"

struct cb_backend;
struct cb_upload;

enum cb_backend_flags {
	CB_BACKEND_READONLY = 1 << 0, /* never write: a snapshot, a read-only mount, a DR copy */
};

#define S3_PARALLEL_MAX 16 /* the connections a client keeps (s3.c POOL_MAX) */

/* S3's limits on a multipart upload (and AWS's, which every compatible server follows). */
#define S3_MAX_PARTS 10000
#define S3_MIN_PART_SIZE (UINT64_C(5) << 20)
#define S3_MAX_PART_SIZE (UINT64_C(5) << 30)
#define S3_MAX_OBJECT_SIZE (UINT64_C(5) << 40)

/* The part size for an object of at most size bytes (0: unknown): base (0: 16 MiB), raised to
 * the smallest multiple of 1 MiB that fits the object in S3_MAX_PARTS parts, at least
 * min_part (0: S3_MIN_PART_SIZE). -EFBIG when the object would be over S3_MAX_OBJECT_SIZE or
 * need parts over S3_MAX_PART_SIZE. */
int cb_s3_part_size(uint64_t base, uint64_t min_part, uint64_t size, uint64_t *part);

/* How to reach a store: an S3-compatible one (the strings, parallel, part sizes), and for
 * every kind, local or not, the transfer limits and retries (backend_wrap.c). Strings may be
 * NULL (unset). */
struct cb_s3_options {
	const char *endpoint;      /* "http://127.0.0.1:9000": path-style; NULL: AWS, virtual-hosted */
	const char *region;        /* NULL: us-east-1 */
	const char *access_key, *secret_key, *session_token; /* explicit: first in the chain */
	const char *key_source;    /* words for where they came from ("s3_key_file /k") */
	/* Server-side encryption and storage class of every object written (awscred.h has
	 * where credentials come from when access_key is unset): */
	const char *sse;           /* NULL, "AES256" or "aws:kms" */
	const char *sse_kms_key_id; /* with aws:kms: the KMS key (NULL: the bucket's default) */
	const char *sse_c_key_file; /* SSE-C: a file of 32 raw bytes or their base64 */
	unsigned char sse_c_key[32]; /* its key, read by cb_s3_options_resolve */
	size_t sse_c_key_len;       /* 32 once read */
	const char *storage_class; /* NULL: the bucket's default (STANDARD) */
	const char *ca_file;       /* TLS is always verified; this adds a CA bundle */
	unsigned parallel;         /* requests in flight at most (0: 4; at most S3_PARALLEL_MAX) */
	uint64_t limit_upload;     /* bytes/s over all transfers of the store, 0: unlimited */
	uint64_t limit_download;
	uint64_t part_size;        /* multipart part size at least (0: 16 MiB); larger where an
				    * object would need over S3_MAX_PARTS parts */
	uint64_t min_part_size;    /* the server's smallest part (0: S3's 5 MiB); for test servers
				    * that take smaller ones (CASSBACKUP_S3_MIN_PART_SIZE) */
	unsigned retries;          /* attempts after the first of a transient failure (0: 5) */
};

#define CB_RETRIES_DEFAULT 5

/* Fills the unset fields of o from the environment as the AWS CLI reads it (AWS_ENDPOINT_URL,
 * AWS_REGION / AWS_DEFAULT_REGION), reads key_file when given (lines "access_key = ...",
 * "secret_key = ...", "session_token = ...": the explicit keys, first in the credential chain
 * of awscred.h, which finds the others when the client opens) and o->sse_c_key_file, and
 * checks the SSE and storage-class settings. Strings it sets are owned by *strings, a
 * NULL-terminated array (NULL when it set none): free each, then it. Also, for tests and
 * benchmarks against small servers: CASSBACKUP_S3_PART_SIZE and CASSBACKUP_S3_MIN_PART_SIZE
 * (sizes, parse_size) set part_size and min_part_size when unset. -errno (also in errno) with
 * cb_backend_last_error() naming the setting or file and what is wrong with it. */
int cb_s3_options_resolve(struct cb_s3_options *o, const char *key_file, char ***strings);
/* Whether the environment sets what the configuration key does ("s3_endpoint":
 * AWS_ENDPOINT_URL; "s3_region": AWS_REGION or AWS_DEFAULT_REGION), and so wins over the
 * configuration file, as for the AWS CLI. Every reader of cassbackup.conf(5) asks this (the
 * mount's -o options, given on its line, win over both). */
bool cb_s3_env_overrides(const char *config_key);
/* The endpoint, SSE and storage-class part of cb_s3_options_resolve (reads sse_c_key_file). */
int cb_s3_options_check(struct cb_s3_options *o);
/* Whether url can be an S3 endpoint: http:// or https:// (libcurl would also take file://,
 * ftp:// and others, and read a local file or wait a minute for an answer). */
bool cb_s3_endpoint_ok(const char *url);

/* Opens the store at location: a local directory path (which must exist), or
 * s3://bucket/prefix, as the stack retry(limit(local or S3 backend)) (backend_wrap.c), with
 * the limits and retries of o (NULL: none and the default). -ENOENT, -ENOTDIR, -EINVAL for a
 * malformed location, or -errno; *out is the caller's (cb_backend_close). */
int cb_backend_open(const char *location, int flags, const struct cb_s3_options *o,
		    struct cb_backend **out);

/* Sleeps before retry number attempt (1, 2, ...) of a transient failure: full jitter, up to
 * 100 ms doubling each time, 5 s at most (CASSBACKUP_RETRY_MAX_MS lowers it, for tests). The
 * one backoff of every retry. */
void cb_backoff(unsigned attempt);

/* True when location names object storage (s3://...). */
bool cb_location_is_remote(const char *location);

/* What went wrong in this thread's last failed call, when the backend knows more than an
 * errno says ("PUT backups/n1.json: HTTP 403 AccessDenied"); "" otherwise. */
const char *cb_backend_last_error(void);
/* The words for a failed call's return r: cb_backend_last_error() when it says more, else
 * strerror(-r). */
const char *cb_backend_why(int r);
void cb_backend_close(struct cb_backend *b); /* accepts NULL */

/* The location as given, for messages. */
const char *cb_backend_location(const struct cb_backend *b);
bool cb_backend_readonly(const struct cb_backend *b);
/* Which source gave the credentials of an object-storage backend ("environment
 * (AWS_ACCESS_KEY_ID)", "instance metadata http://..."), for --verbose and validate-config;
 * NULL for a local store. */
const char *cb_backend_credentials(const struct cb_backend *b);

/* True when key is a well-formed key (see above). Every function here refuses others with
 * -EINVAL, so a name from a hostile manifest cannot reach outside the store. */
bool cb_key_valid(const char *key);

/* Reads a whole (small) object: *data (NUL-terminated, the caller's) and *len.
 * -ENOENT when absent, -EFBIG when larger than max. */
int cb_backend_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len);

/* Size of an object; -ENOENT when absent. */
int cb_backend_stat(struct cb_backend *b, const char *key, uint64_t *size);

/* What the store says of an object: its size, and when it was last written by the store's own
 * clock (a local file's st_mtime; S3's Last-Modified, to the second from a HEAD, to the
 * millisecond from a listing on AWS; 0 when the store did not say). Only times of one store
 * are compared with each other (lock.h): never with this host's clock. version is what
 * changes when the object is replaced by another under the same key, whatever its size and
 * whatever the clocks say: its ETag in object storage (cb_version_from_etag), its inode and
 * change time in a directory; "" when the store did not say. */
#define CB_VERSION_MAX 72
struct cb_object_info {
	uint64_t size;
	int64_t mtime_ns;
	char version[CB_VERSION_MAX];
};

/* An S3 ETag (quoted or not, from a header or a listing) as a version: its letters, digits
 * and '-', so that a HEAD's and a listing's of one object compare equal; "" for NULL. */
void cb_version_from_etag(const char *etag, char out[CB_VERSION_MAX]);

/* cb_backend_stat with the modification time. */
int cb_backend_stat_info(struct cb_backend *b, const char *key, struct cb_object_info *info);

enum cb_put_flags {
	/* never replace: -EEXIST when the key exists (a manifest, a pack, the config). Local
	 * stores link the new object to its key (link(2) does not replace); S3 sends
	 * If-None-Match: * and, for servers that may not honour it, checks with a HEAD first. */
	CB_PUT_EXCLUSIVE = 1 << 0,
	/* only replace: -ENOENT when the key is gone (a lock's renewal, whose object another
	 * process may have removed: rewriting it would bring it back unseen). Local stores swap
	 * the new object with the old one (renameat2 RENAME_EXCHANGE, which fails when there is
	 * none; a plain rename where the file system cannot swap); S3 sends a small object with
	 * If-Match on the ETag a HEAD just gave (a plain PUT where the server ignores it). */
	CB_PUT_REPLACE_ONLY = 1 << 1,
};

/* Stores a small object atomically and durably: replacing one of the same key, or with
 * CB_PUT_EXCLUSIVE -EEXIST when one is there. */
int cb_backend_put(struct cb_backend *b, const char *key, const void *data, size_t len, int flags);
/* cb_backend_put, and the version (cb_object_info) of the object it wrote, as the write itself
 * told it (a PUT's ETag; the written file's inode), never from a later look at the key,
 * where another writer's object may be by then: "" when the write did not say. */
int cb_backend_put_version(struct cb_backend *b, const char *key, const void *data, size_t len,
			   int flags, char version[CB_VERSION_MAX]);

/* Removes an object; -ENOENT when it was not there. A local store also removes a pack's
 * packs/xx directory once it is empty. */
int cb_backend_delete(struct cb_backend *b, const char *key);

/* cb_backend_delete for a cleanup after a failure: cb_backend_last_error() still tells the
 * failure, whatever the delete gives. */
int cb_backend_delete_quiet(struct cb_backend *b, const char *key);

/* Removes the objects keys[0..n), in batches where the backend has them (S3 DeleteObjects,
 * 1,000 keys a request). results[i] gets 0 once keys[i] is gone (absent before included) or
 * its -errno. Returns 0 when every key is gone, else the first error. */
int cb_backend_delete_many(struct cb_backend *b, const char *const *keys, size_t n, int *results);

/* Calls cb for every object whose key starts with prefix (a directory, "backups/"), in no
 * particular order, with its size. Objects being uploaded are not listed. cb returns 0 to go on;
 * its non-zero return ends the walk and is returned. */
int cb_backend_list(struct cb_backend *b, const char *prefix,
		    int (*cb)(void *ctx, const char *key, uint64_t size), void *ctx);

/* cb_backend_list with each object's size and modification time. */
typedef int (*cb_list_info_fn)(void *ctx, const char *key, const struct cb_object_info *info);
int cb_backend_list_info(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx);

/* Opens an object for positional reads. */
int cb_backend_open_read(struct cb_backend *b, const char *key, struct cb_io **out);

/* A large object written sequentially (a pack): invisible until cb_upload_commit returns 0,
 * and then whole (with CB_PUT_EXCLUSIVE, commit gives -EEXIST when the key exists).
 * size_hint is the most bytes the caller expects to write (0: unknown): object storage picks
 * its part size from it, and refuses (-EFBIG, before anything is sent) an object larger than
 * it can store. An upload freed before it committed leaves nothing under key; one whose
 * process died leaves a leftover that cb_backend_reclaim removes. */
int cb_backend_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			    struct cb_upload **out);
int cb_upload_write(struct cb_upload *u, const void *buf, size_t len);
uint64_t cb_upload_size(const struct cb_upload *u);
int cb_upload_commit(struct cb_upload *u);
void cb_upload_free(struct cb_upload *u); /* accepts NULL; aborts an uncommitted upload */

/* Appends words on why key is absent when the backend can tell more than "not there" (S3:
 * the bucket does not exist; the stores that do exist next to this prefix), else nothing. */
struct strbuf;
void cb_backend_explain_absent(struct cb_backend *b, const char *key, struct strbuf *out);

/* Removes the leftovers of uploads whose writer is gone. *removed gets their count. */
int cb_backend_reclaim(struct cb_backend *b, unsigned *removed);

#endif
