/* s3.h: a small S3 client on libcurl: SigV4 signing (sigv4.h), connection reuse,
 * retries, and the few XML fields the store needs. Internal to the catalog library; the store
 * uses it through backend_s3.c.
 *
 * Every request is retried with exponential backoff and full jitter (100 ms doubling, at most
 * 5 s between attempts) on connection failures, resets, stalls (no byte for 30 s), short
 * bodies, HTTP 429/500/502/503/504 and S3's RequestTimeout, and ExpiredToken once the
 * credentials were fetched again (awscred_expire); a ranged read also when the
 * server's Content-Range or length is not what was asked (or, asked for once, gives -EAGAIN
 * on such a failure). A request that still fails returns -EIO (or -ENOENT for 404, -EACCES
 * for 403, -EEXIST for 412) and leaves one line in cb_backend_last_error() naming the
 * operation, the key and the status (a missing bucket: -ENXIO, whatever the call). Credentials never appear in that line. The backoff
 * between attempts is cb_backoff, the one of every retry.
 */
#ifndef CASSBACKUP_S3_H
#define CASSBACKUP_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "util.h"

struct s3_client;

/* Loads libcurl and curl_global_init()s it, once per process (thread-safe): 0, or -ELIBACC
 * with cb_backend_last_error() naming the library and why (curl_lib.c). */
int cb_curl_load(void);

/* bucket and prefix ("" or "a/b/", ending in '/') as parsed from s3://bucket/prefix. */
int s3_client_new(const struct cb_s3_options *o, const char *bucket, const char *prefix,
		  struct s3_client **out);
void s3_client_free(struct s3_client *c);
/* Which source gave the client's credentials (awscred_source); valid while c lives. */
const char *s3_client_credentials(const struct s3_client *c);
unsigned s3_client_parallel(const struct s3_client *c);
unsigned s3_client_retries(const struct s3_client *c); /* attempts after the first */
const char *s3_client_prefix(const struct s3_client *c); /* "" or "a/b/" */
/* The part size for an upload of at most size bytes (0: unknown): cb_s3_part_size with the
 * client's settings. */
int s3_client_part_size(const struct s3_client *c, uint64_t size, uint64_t *part);

struct s3_req {
	const char *method;  /* GET PUT HEAD DELETE POST */
	const char *key;     /* below the prefix; NULL for a bucket-level request */
	const char *query;   /* canonical: parameters sorted, values URI-encoded; NULL: none */
	const char *content_md5; /* Content-MD5 header (base64), which DeleteObjects requires */
	bool if_none_match;      /* If-None-Match: * (create only; 412 gives -EEXIST) */
	const char *if_match;    /* If-Match: this ETag, quoted (replace only; 412 gives -EEXIST,
				  * a key that is gone -ENOENT); NULL: none */
	const void *body;
	size_t body_len;
	uint64_t range_off, range_len; /* range_len > 0: GET of exactly these bytes (206) */
	void *dst;                     /* with a range: the bytes go here (range_len of room) */
	size_t max_body;               /* other responses: refuse bodies larger than this */
	bool once;                     /* one attempt: a transient failure gives -EAGAIN, for the
					* caller to retry (backend_wrap.c) or try another way */
};

struct s3_resp {
	long status;
	struct strbuf body;   /* response body unless dst was given; the caller frees it */
	char etag[130];
	uint64_t length;      /* Content-Length of the object (HEAD), or bytes received */
	uint64_t total;       /* from Content-Range: the object's size */
	int64_t last_modified_ns; /* Last-Modified (HEAD, GET), by the server's clock; 0: none */
	bool too_large;       /* the body was over max_body (the call returned -EFBIG) */
};

/* Performs rq with retries. 0 on a 2xx answer; *rs is filled either way (free rs->body). */
int s3_request(struct s3_client *c, const struct s3_req *rq, struct s3_resp *rs);

/* Appends s URI-encoded as SigV4 wants it (unreserved characters kept; '/' kept when
 * keep_slash). */
int s3_uri_encode(struct strbuf *sb, const char *s, bool keep_slash);

/* The times S3 gives, as ns since the epoch; 0 when s is not one. An HTTP date (RFC 9110's
 * IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT": Last-Modified), and an ISO 8601 time
 * ("2009-10-12T17:50:30.000Z": a listing's LastModified; any fraction of a second; a UTC
 * offset, "+02:00", as a credential_process may write its Expiration). */
int64_t s3_http_date_ns(const char *s);
int64_t s3_iso8601_ns(const char *s);

/* XML: finds the next <tag>...</tag> at or after *pos within [*pos, end); its content in
 * [*start, *start + *len). Advances *pos past it. false when there is none. */
bool s3_xml_next(const char **pos, const char *end, const char *tag, const char **start,
		 size_t *len);
/* The text of the first <tag> in [p, end), entities decoded, NUL-terminated, malloc'd; NULL
 * when absent or out of memory. */
char *s3_xml_text(const char *p, const char *end, const char *tag);

#endif
