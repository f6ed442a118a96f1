/* backend_s3.c: a store in S3-compatible object storage, s3://bucket/prefix.
 *
 * Small objects are single PUTs (atomic by S3's semantics). Large ones stream into a multipart
 * upload while they are written, in parts whose size is chosen per upload from the caller's
 * size hint so that no object needs more than S3_MAX_PARTS parts (s3_client_part_size; an
 * object over S3's 5 TiB is refused before anything is sent). Parts go out on threads of
 * their own, up to s3_client_parallel() at once but never more than UPLOAD_MEMORY bytes of
 * them, so memory stays bounded whatever the object's size. An exclusive upload
 * (CB_PUT_EXCLUSIVE) is refused when its key exists: with If-None-Match: * on the PUT or the
 * CompleteMultipartUpload (412: -EEXIST), after a HEAD for servers that ignore the header.
 * Nothing is visible under the key until
 * CompleteMultipartUpload succeeds; a failed or abandoned upload is aborted, and uploads left
 * by a killed writer are aborted by cb_backend_reclaim (which prune calls holding the store's
 * exclusive lock, so no live upload can be among them).
 */
#include "backend_i.h"
#include "s3.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX_BODY (16u << 20)
#define UPLOAD_MEMORY (UINT64_C(128) << 20) /* parts in flight, at most (one at least) */

struct s3_backend {
	struct cb_backend b;
	struct s3_client *c;
	atomic_bool list_v1; /* ListObjectsV2 did not work here: s3_list uses v1 */
	/* Parts in flight over all of this store's uploads (create commits one pack while it
	 * writes the next): at most s3_client_parallel() at once, as s3_parallel says. */
	pthread_mutex_t parts_mu;
	pthread_cond_t parts_cv;
	unsigned parts_inflight;
};

/* Takes one of the store's part slots, waiting while all are in flight. */
static void part_slot_take(struct s3_backend *sb)
{
	pthread_mutex_lock(&sb->parts_mu);
	while (sb->parts_inflight >= s3_client_parallel(sb->c))
		pthread_cond_wait(&sb->parts_cv, &sb->parts_mu);
	sb->parts_inflight++;
	pthread_mutex_unlock(&sb->parts_mu);
}

static void part_slot_give(struct s3_backend *sb)
{
	pthread_mutex_lock(&sb->parts_mu);
	sb->parts_inflight--;
	pthread_cond_broadcast(&sb->parts_cv);
	pthread_mutex_unlock(&sb->parts_mu);
}

static struct s3_client *client(struct cb_backend *b) { return ((struct s3_backend *)b)->c; }

/* get, stat, del and ranged reads make one attempt: a transient failure is -EAGAIN, which the
 * retry wrapper (backend_wrap.c) repeats. What an upload's commit calls itself is retried in
 * place (retried()). */

static int s3_get(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	struct s3_req rq = {.method = "GET", .key = key, .max_body = max, .once = true};
	struct s3_resp rs;
	int r = s3_request(client(b), &rq, &rs);
	if (r < 0) {
		sb_free(&rs.body);
		return r;
	}
	if (!rs.body.buf && sb_puts(&rs.body, "") < 0)
		return -ENOMEM;
	*data = rs.body.buf;
	*len = rs.body.len;
	return 0;
}

static int s3_stat(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	struct s3_req rq = {.method = "HEAD", .key = key, .once = true};
	struct s3_resp rs;
	int r = s3_request(client(b), &rq, &rs);
	sb_free(&rs.body);
	if (r == 0) {
		*info = (struct cb_object_info){rs.length, rs.last_modified_ns, ""};
		cb_version_from_etag(rs.etag, info->version);
	}
	return r;
}

/* s3_stat with its transient failures retried in place. */
static int stat_retried(struct cb_backend *b, const char *key, struct cb_object_info *info)
{
	int r = s3_stat(b, key, info);
	for (unsigned a = 1; r == -EAGAIN && a <= s3_client_retries(client(b)); a++) {
		cb_backoff(a);
		r = s3_stat(b, key, info);
	}
	return r == -EAGAIN ? -EIO : r;
}

/* s3_get with its transient failures retried in place. */
static int get_retried(struct cb_backend *b, const char *key, size_t max, char **data, size_t *len)
{
	int r = s3_get(b, key, max, data, len);
	for (unsigned a = 1; r == -EAGAIN && a <= s3_client_retries(client(b)); a++) {
		cb_backoff(a);
		r = s3_get(b, key, max, data, len);
	}
	return r == -EAGAIN ? -EIO : r;
}

static int s3_del(struct cb_backend *b, const char *key)
{
	struct cb_object_info info;
	int r = s3_stat(b, key, &info); /* S3 answers 204 for absent keys too */
	if (r < 0)
		return r;
	struct s3_req rq = {.method = "DELETE", .key = key, .once = true};
	struct s3_resp rs;
	r = s3_request(client(b), &rq, &rs);
	sb_free(&rs.body);
	return r;
}

/* --- DeleteObjects ----------------------------------------------------------------------- */

#define DELETE_BATCH 1000 /* S3's most keys per DeleteObjects */

/* Appends s with XML's five special characters escaped. */
static int xml_escape(struct strbuf *sb, const char *s)
{
	int r = 0;
	for (; *s && !r; s++) {
		switch (*s) {
		case '&': r = sb_puts(sb, "&amp;"); break;
		case '<': r = sb_puts(sb, "&lt;"); break;
		case '>': r = sb_puts(sb, "&gt;"); break;
		case '"': r = sb_puts(sb, "&quot;"); break;
		case '\'': r = sb_puts(sb, "&apos;"); break;
		default: r = sb_append(sb, s, 1);
		}
	}
	return r;
}

/* <Delete> of keys[0..n) in quiet mode: the answer lists only the keys that failed. */
static int delete_body(struct s3_client *c, const char *const *keys, size_t n, struct strbuf *body)
{
	int r = sb_puts(body, "<Delete><Quiet>true</Quiet>");
	for (size_t i = 0; i < n && !r; i++)
		r = sb_puts(body, "<Object><Key>") ?: xml_escape(body, s3_client_prefix(c)) ?:
		    xml_escape(body, keys[i]) ?: sb_puts(body, "</Key></Object>");
	return r ?: sb_puts(body, "</Delete>");
}

static int content_md5(const struct strbuf *body, char out[32])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!EVP_Digest(body->buf, body->len, md, &len, EVP_md5(), NULL) || len != 16)
		return -EIO;
	EVP_EncodeBlock((unsigned char *)out, md, 16); /* 24 characters and a NUL */
	return 0;
}

/* Marks the keys an answer's <Error> elements name; -EIO for any error code but NoSuchKey. */
static void delete_errors(struct s3_client *c, const struct strbuf *ans, const char *const *keys,
			  size_t n, int *results)
{
	const char *pos = ans->buf, *end = ans->buf + ans->len, *s;
	size_t len, plen = strlen(s3_client_prefix(c));
	while (pos && s3_xml_next(&pos, end, "Error", &s, &len)) {
		char *key = s3_xml_text(s, s + len, "Key"), *code = s3_xml_text(s, s + len, "Code");
		for (size_t i = 0; key && strlen(key) > plen && i < n; i++)
			if (!strcmp(keys[i], key + plen) && (!code || strcmp(code, "NoSuchKey"))) {
				results[i] = code && !strcmp(code, "AccessDenied") ? -EACCES : -EIO;
				cb_backend_set_error("DeleteObjects %s: %s", keys[i], code ? code : "error");
			}
		free(key);
		free(code);
	}
}

/* One DeleteObjects request for keys[0..n) (n <= DELETE_BATCH); a server without it gets
 * the keys one by one. */
static int delete_batch(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	struct s3_client *c = client(b);
	struct strbuf body = {0};
	char md5[32];
	int r = delete_body(c, keys, n, &body) ?: content_md5(&body, md5);
	struct s3_req rq = {.method = "POST", .query = "delete=", .body = body.buf,
			    .body_len = body.len, .content_md5 = md5, .max_body = LIST_MAX_BODY};
	struct s3_resp rs = {0};
	r = r ?: s3_request(c, &rq, &rs);
	if (r == -EIO && (rs.status == 501 || rs.status == 405 || rs.status == 400)) {
		sb_free(&rs.body);
		sb_free(&body);
		return cb_backend_delete_each(b, keys, n, results);
	}
	/* A 404 of the request itself (no such bucket, a gateway's) says nothing of the keys:
	 * none is taken for gone */
	for (size_t i = 0; i < n; i++)
		results[i] = r == -ENOENT ? -EIO : r;
	if (r == 0)
		delete_errors(c, &rs.body, keys, n, results);
	sb_free(&rs.body);
	sb_free(&body);
	for (size_t i = 0; i < n; i++)
		if (results[i] < 0 && results[i] != -ENOENT)
			return results[i];
	return 0;
}

static int s3_del_many(struct cb_backend *b, const char *const *keys, size_t n, int *results)
{
	int first = 0;
	for (size_t i = 0; i < n; i += DELETE_BATCH) {
		size_t m = n - i < DELETE_BATCH ? n - i : DELETE_BATCH;
		int r = delete_batch(b, keys + i, m, results + i);
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

/* --- listing ----------------------------------------------------------------------------- */

/* One <Contents> entry: its key relative to the store, if it is a store key, size and
 * LastModified. *last gets the full key (where a v1 listing goes on). */
static int list_entry(const char *s, size_t n, size_t strip, char **last, cb_list_info_fn cb,
		      void *ctx)
{
	char *key = s3_xml_text(s, s + n, "Key"), *size = s3_xml_text(s, s + n, "Size");
	char *modified = s3_xml_text(s, s + n, "LastModified"), *etag = s3_xml_text(s, s + n, "ETag");
	int r = 0;
	if (!key || !size) {
		r = -EBADMSG;
	} else if (strlen(key) > strip && cb_key_valid(key + strip)) {
		struct cb_object_info info = {strtoull(size, NULL, 10),
					      modified ? s3_iso8601_ns(modified) : 0, ""};
		cb_version_from_etag(etag, info.version);
		r = cb(ctx, key + strip, &info);
	}
	free(size);
	free(modified);
	free(etag);
	if (key) {
		free(*last);
		*last = key;
	}
	return r;
}

/* Where a listing is: the full prefix, the last key seen, v2's next token. */
struct listing {
	struct s3_backend *sb;
	struct strbuf full, query;
	char *last, *token;
	bool more;
};

/* The canonical query of the next page (parameters sorted, as SigV4 wants them). */
static int page_query(struct listing *l, bool v2)
{
	struct strbuf *q = &l->query;
	q->len = 0;
	if (q->buf)
		q->buf[0] = '\0';
	int r = 0;
	if (v2 && l->token)
		r = sb_puts(q, "continuation-token=") ?: s3_uri_encode(q, l->token, false) ?:
		    sb_puts(q, "&");
	if (v2)
		r = r ?: sb_puts(q, "list-type=2&");
	else if (l->last)
		r = sb_puts(q, "marker=") ?: s3_uri_encode(q, l->last, false) ?: sb_puts(q, "&");
	return r ?: sb_puts(q, "prefix=") ?: s3_uri_encode(q, l->full.buf, false);
}

/* Reads one page's entries and where the next page starts. -EAGAIN: this v2 answer is not
 * usable (see s3_list); nothing of it was passed to cb. */
static int page_parse(struct listing *l, const struct s3_resp *rs, bool v2, cb_list_info_fn cb,
		      void *ctx)
{
	const char *pos = rs->body.buf, *end = rs->body.buf + rs->body.len, *s;
	size_t n;
	/* an answer that is no listing (an empty 200 a gateway made) is never "no objects" */
	if (!pos || !memmem(pos, rs->body.len, "<ListBucketResult", 17)) {
		if (!v2)
			cb_backend_set_error("the listing of %s was answered with no ListBucketResult "
					     "(%zu bytes)", l->full.buf, rs->body.len);
		return v2 ? -EAGAIN : -EBADMSG;
	}
	char *trunc = pos ? s3_xml_text(pos, end, "IsTruncated") : NULL;
	char *count = v2 && pos ? s3_xml_text(pos, end, "KeyCount") : NULL;
	char *token = v2 && pos ? s3_xml_text(pos, end, "NextContinuationToken") : NULL;
	bool truncated = trunc && !strcmp(trunc, "true");
	int r = v2 && (!count || (truncated && !token)) ? -EAGAIN : 0;
	char *before = l->last ? strdup(l->last) : NULL;
	while (r == 0 && pos && s3_xml_next(&pos, end, "Contents", &s, &n))
		r = list_entry(s, n, strlen(s3_client_prefix(l->sb->c)), &l->last, cb, ctx);
	/* v1 truncated with no new key would loop for ever: treat as the end. */
	l->more = r == 0 && truncated && l->last && (v2 || !before || strcmp(before, l->last));
	free(l->token);
	l->token = token;
	free(before);
	free(trunc);
	free(count);
	return r;
}

/* ListObjectsV2 paged by continuation-token where the server has it, else ListObjects (v1)
 * paged by marker, which every S3 implementation has. A v2 page is asked for once, without
 * retries; when that fails, or its answer lacks KeyCount (a server that ignored list-type=2),
 * or a truncated answer lacks NextContinuationToken, this client lists with v1 from then on,
 * going on after the last key seen. s3rver is such a server: its v2 answers 500 to every
 * listing longer than a page, because it makes its tokens with DES, which OpenSSL 3 dropped
 * (s3rver#814). A transient failure at AWS costs only the switch to v1, which AWS serves too. */
static int s3_list(struct cb_backend *b, const char *prefix, cb_list_info_fn cb, void *ctx)
{
	struct listing l = {.sb = (struct s3_backend *)b, .more = true};
	int r = sb_puts(&l.full, s3_client_prefix(l.sb->c)) ?: sb_puts(&l.full, prefix);
	while (r == 0 && l.more) {
		bool v2 = !atomic_load(&l.sb->list_v1);
		struct s3_resp rs = {0};
		r = page_query(&l, v2);
		struct s3_req rq = {.method = "GET", .query = l.query.buf, .max_body = LIST_MAX_BODY,
				    .once = v2};
		r = r ?: s3_request(l.sb->c, &rq, &rs);
		if (v2 && r == -EIO)
			r = -EAGAIN;
		r = r ?: page_parse(&l, &rs, v2, cb, ctx);
		sb_free(&rs.body);
		if (r == -EAGAIN && v2) {
			atomic_store(&l.sb->list_v1, true);
			r = 0;
		}
	}
	free(l.last);
	free(l.token);
	sb_free(&l.full);
	sb_free(&l.query);
	return r;
}

/* --- ranged reads ------------------------------------------------------------------------ */

struct s3_io {
	struct cb_io io;
	struct s3_client *c;
	char *key;
};

static ssize_t s3_pread(struct cb_io *io, void *buf, size_t len, uint64_t off)
{
	struct s3_io *s = (struct s3_io *)io;
	if (off >= io->size || len == 0)
		return 0;
	if (len > io->size - off)
		len = (size_t)(io->size - off);
	struct s3_req rq = {.method = "GET", .key = s->key, .range_off = off, .range_len = len, .dst = buf,
			    .once = true};
	struct s3_resp rs;
	int r = s3_request(s->c, &rq, &rs);
	sb_free(&rs.body);
	if (r < 0)
		return r == -ENOENT || r == -EAGAIN ? r : -EIO;
	return (ssize_t)rs.length;
}

static void s3_io_close(struct cb_io *io)
{
	struct s3_io *s = (struct s3_io *)io;
	free(s->key);
	free(s);
}

static const struct cb_io_ops s3_io_ops = {.pread = s3_pread, .close = s3_io_close};

static int s3_open_read(struct cb_backend *b, const char *key, struct cb_io **out)
{
	struct cb_object_info info;
	int r = s3_stat(b, key, &info);
	if (r < 0)
		return r;
	struct s3_io *s = calloc(1, sizeof(*s));
	if (!s || !(s->key = strdup(key))) {
		free(s);
		return -ENOMEM;
	}
	s->io.ops = &s3_io_ops;
	s->io.size = info.size;
	s->c = client(b);
	*out = &s->io;
	return 0;
}

/* --- multipart uploads ------------------------------------------------------------------- */

struct part_job {
	struct s3_upload *up;
	unsigned number;
	char *buf;
	size_t len;
	pthread_t thread;
};

struct s3_upload {
	struct cb_upload u;
	struct s3_client *c;
	struct cb_backend *b;
	char *key;
	size_t part;         /* bytes per part */
	unsigned max_inflight;
	bool exclusive;
	bool replace_only; /* CB_PUT_REPLACE_ONLY */
	char *upload_id; /* NULL until the first part goes out */
	char *buf;       /* the part being filled */
	size_t len;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned inflight;
	int err;             /* first part failure */
	char errmsg[512];    /* its words (set on the part's thread, told on the caller's) */
	char **etags;        /* by part number - 1 */
	struct part_job **jobs;
	unsigned njobs, cap;
};

static int id_query(struct strbuf *q, const char *before, const char *id)
{
	return sb_puts(q, before) ?: sb_puts(q, "uploadId=") ?: s3_uri_encode(q, id, false);
}

static void *part_thread(void *arg)
{
	struct part_job *j = arg;
	struct s3_upload *up = j->up;
	struct strbuf q = {0};
	char before[48];
	snprintf(before, sizeof(before), "partNumber=%u&", j->number);
	struct s3_resp rs = {0};
	int r = id_query(&q, before, up->upload_id);
	struct s3_req rq = {.method = "PUT", .key = up->key, .query = q.buf, .body = j->buf,
			    .body_len = j->len};
	r = r ?: s3_request(up->c, &rq, &rs);
	if (r == 0 && !rs.etag[0]) { /* CompleteMultipartUpload needs every part's ETag */
		cb_backend_set_error("PUT %s%s part %u: HTTP %ld without an ETag", s3_client_prefix(up->c),
				     up->key, j->number, rs.status);
		r = -EIO;
	}
	char *etag = r == 0 ? strdup(rs.etag) : NULL;
	sb_free(&rs.body);
	sb_free(&q);
	free(j->buf);
	j->buf = NULL;
	pthread_mutex_lock(&up->mu);
	if (r == 0 && !etag)
		r = -ENOMEM;
	if (r < 0 && !up->err) {
		up->err = r;
		snprintf(up->errmsg, sizeof(up->errmsg), "%s", cb_backend_last_error());
	}
	up->etags[j->number - 1] = etag;
	up->inflight--;
	pthread_cond_broadcast(&up->cv);
	pthread_mutex_unlock(&up->mu);
	part_slot_give((struct s3_backend *)up->b);
	return NULL;
}

static int start_multipart(struct s3_upload *up)
{
	struct s3_req rq = {.method = "POST", .key = up->key, .query = "uploads=", .max_body = 65536};
	struct s3_resp rs;
	int r = s3_request(up->c, &rq, &rs);
	if (r == 0) {
		up->upload_id = s3_xml_text(rs.body.buf, rs.body.buf + rs.body.len, "UploadId");
		if (!up->upload_id)
			r = -EIO;
	}
	sb_free(&rs.body);
	return r;
}

static int grow_jobs(struct s3_upload *up)
{
	if (up->njobs < up->cap)
		return 0;
	unsigned cap = up->cap ? 2 * up->cap : 16;
	struct part_job **j = realloc(up->jobs, cap * sizeof(*j));
	if (j)
		up->jobs = j;
	char **e = j ? realloc(up->etags, cap * sizeof(*e)) : NULL;
	if (e) {
		up->etags = e;
		memset(e + up->cap, 0, (cap - up->cap) * sizeof(*e));
		up->cap = cap;
	}
	return e ? 0 : -ENOMEM;
}

/* A part's failure, told in the caller's thread (its words were set on the part's). */
static int part_failed(struct s3_upload *up, int r)
{
	if (r < 0 && r == up->err && up->errmsg[0])
		cb_backend_set_error("%s", up->errmsg);
	return r;
}

/* Hands the filled buffer to a part thread, waiting while this upload has max_inflight parts
 * in flight, and while the store has `parallel` over all its uploads. */
static int send_part(struct s3_upload *up)
{
	int r = up->upload_id ? 0 : start_multipart(up);
	struct part_job *j = r == 0 ? calloc(1, sizeof(*j)) : NULL;
	if (r == 0 && (!j || grow_jobs(up) < 0))
		r = -ENOMEM;
	if (r < 0) {
		free(j);
		return r;
	}
	pthread_mutex_lock(&up->mu);
	while (up->inflight >= up->max_inflight && !up->err)
		pthread_cond_wait(&up->cv, &up->mu);
	pthread_mutex_unlock(&up->mu);
	/* only this thread adds parts to up: its count can only have fallen meanwhile */
	part_slot_take((struct s3_backend *)up->b);
	pthread_mutex_lock(&up->mu);
	r = up->err;
	if (r == 0 && up->njobs >= S3_MAX_PARTS) {
		cb_backend_set_error("PUT %s%s: more than %u parts of %zu bytes (the object is larger "
				     "than the upload was sized for)", s3_client_prefix(up->c), up->key,
				     S3_MAX_PARTS, up->part);
		r = -EFBIG;
	}
	if (r == 0) {
		*j = (struct part_job){.up = up, .number = up->njobs + 1, .buf = up->buf, .len = up->len};
		if (pthread_create(&j->thread, NULL, part_thread, j) != 0) {
			r = -EAGAIN;
		} else {
			up->jobs[up->njobs++] = j;
			up->inflight++;
			up->buf = NULL;
			up->len = 0;
		}
	}
	pthread_mutex_unlock(&up->mu);
	if (r < 0) { /* no part thread took the slot (it gives it back when done) */
		part_slot_give((struct s3_backend *)up->b);
		free(j);
	}
	return part_failed(up, r);
}

static int upload_write(struct cb_upload *u, const void *data, size_t len)
{
	struct s3_upload *up = (struct s3_upload *)u;
	size_t part = up->part;
	while (len) {
		if (!up->buf && !(up->buf = malloc(part)))
			return -ENOMEM;
		size_t n = part - up->len < len ? part - up->len : len;
		memcpy(up->buf + up->len, data, n);
		up->len += n;
		data = (const char *)data + n;
		len -= n;
		if (up->len == part) {
			int r = send_part(up);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static void join_parts(struct s3_upload *up)
{
	for (unsigned i = 0; i < up->njobs; i++) {
		if (up->jobs[i]) {
			pthread_join(up->jobs[i]->thread, NULL);
			free(up->jobs[i]);
			up->jobs[i] = NULL;
		}
	}
}

static int complete_multipart(struct s3_upload *up)
{
	struct strbuf body = {0}, q = {0};
	int r = sb_puts(&body, "<CompleteMultipartUpload>");
	for (unsigned i = 0; !r && i < up->njobs; i++)
		r = sb_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
			      up->etags[i]);
	r = r ?: sb_puts(&body, "</CompleteMultipartUpload>") ?: id_query(&q, "", up->upload_id);
	struct s3_req rq = {.method = "POST", .key = up->key, .query = q.buf, .body = body.buf,
			    .body_len = body.len, .max_body = 65536, .if_none_match = up->exclusive};
	struct s3_resp rs = {0};
	r = r ?: s3_request(up->c, &rq, &rs);
	sb_free(&rs.body);
	sb_free(&body);
	sb_free(&q);
	return r;
}

/* An exclusive write may only go where nothing is: a HEAD first, for servers that ignore
 * If-None-Match (the header still closes the race where the server honours it). */
static int check_free(struct s3_upload *up)
{
	struct cb_object_info info;
	if (!up->exclusive)
		return 0;
	int r = stat_retried(up->b, up->key, &info);
	return r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
}

/* After a 412 on a write that was retried, the object there may be our own first attempt's:
 * 0 when it holds exactly data, else -EEXIST. */
static int ours_after_all(struct s3_upload *up, const void *data, size_t len)
{
	char *there = NULL; /* get_retried sets it only on success */
	size_t n;
	int r = get_retried(up->b, up->key, len + 1, &there, &n);
	r = r == 0 && n == len && memcmp(there, data, len) == 0 ? 0 : -EEXIST;
	free(there);
	return r;
}

/* A small write that may only replace what is there (a lock's renewal): a HEAD for its ETag,
 * then a PUT with If-Match on it, so that a removal between the two gives -ENOENT where the
 * server honours the header (one that ignores it takes a plain PUT; one that refuses it, 501,
 * gets a plain PUT). After a 412 the object there may be our own first attempt's. */
static int replace_put(struct s3_upload *up)
{
	struct cb_object_info info;
	int r = stat_retried(up->b, up->key, &info);
	if (r < 0)
		return r; /* -ENOENT: gone */
	struct s3_req rq = {.method = "PUT", .key = up->key, .body = up->buf ? up->buf : "",
			    .body_len = up->len, .if_match = *info.version ? info.version : NULL};
	struct s3_resp rs = {0};
	r = s3_request(up->c, &rq, &rs);
	sb_free(&rs.body);
	if (r < 0 && rq.if_match && rs.status == 501) {
		rq.if_match = NULL;
		rs = (struct s3_resp){0};
		r = s3_request(up->c, &rq, &rs);
		sb_free(&rs.body);
	}
	if (r == 0)
		cb_version_from_etag(rs.etag, up->u.version);
	else if (r == -EEXIST) /* replaced or removed since the HEAD, unless by our own first try */
		r = ours_after_all(up, rq.body, rq.body_len) == 0 ? 0 : -ENOENT;
	return r;
}

static int upload_commit(struct cb_upload *u)
{
	struct s3_upload *up = (struct s3_upload *)u;
	if (up->replace_only && !up->upload_id)
		return replace_put(up);
	int r = check_free(up);
	if (r == 0 && !up->upload_id) { /* small: one PUT */
		struct s3_req rq = {.method = "PUT", .key = up->key, .body = up->buf ? up->buf : "",
				    .body_len = up->len, .if_none_match = up->exclusive};
		struct s3_resp rs;
		r = s3_request(up->c, &rq, &rs);
		sb_free(&rs.body);
		if (r == 0) /* the PUT's own answer; after a 412, not known */
			cb_version_from_etag(rs.etag, u->version);
		if (r == -EEXIST)
			r = ours_after_all(up, rq.body, rq.body_len);
		return r;
	}
	if (r == 0)
		r = up->len ? send_part(up) : 0;
	join_parts(up);
	if (r == 0)
		r = part_failed(up, up->err);
	return r ?: complete_multipart(up);
}

static void abort_multipart(struct s3_client *c, const char *key, const char *id)
{
	struct strbuf q = {0};
	if (id_query(&q, "", id) == 0) {
		struct s3_req rq = {.method = "DELETE", .key = key, .query = q.buf};
		struct s3_resp rs;
		s3_request(c, &rq, &rs);
		sb_free(&rs.body);
	}
	sb_free(&q);
}

static void upload_free(struct cb_upload *u)
{
	struct s3_upload *up = (struct s3_upload *)u;
	join_parts(up);
	if (up->upload_id && !u->committed)
		abort_multipart(up->c, up->key, up->upload_id);
	for (unsigned i = 0; up->etags && i < up->cap; i++)
		free(up->etags[i]);
	free(up->etags);
	free(up->jobs);
	free(up->buf);
	free(up->upload_id);
	free(up->key);
	pthread_mutex_destroy(&up->mu);
	pthread_cond_destroy(&up->cv);
	free(up);
}

static const struct cb_upload_ops s3_upload_ops = {
	.write = upload_write,
	.commit = upload_commit,
	.free = upload_free,
};

static int s3_upload_begin(struct cb_backend *b, const char *key, uint64_t size_hint, int flags,
			   struct cb_upload **out)
{
	uint64_t part;
	if (s3_client_part_size(client(b), size_hint, &part) < 0) {
		cb_backend_set_error("PUT %s%s: an object of %llu bytes is more than S3 can store "
				     "(5 TiB in 10,000 parts of at most 5 GiB)", s3_client_prefix(client(b)),
				     key, (unsigned long long)size_hint);
		return -EFBIG;
	}
	struct s3_upload *up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	up->u.ops = &s3_upload_ops;
	up->c = client(b);
	up->b = b;
	up->part = (size_t)part;
	up->exclusive = flags & CB_PUT_EXCLUSIVE;
	up->replace_only = flags & CB_PUT_REPLACE_ONLY;
	uint64_t fit = UPLOAD_MEMORY / part;
	up->max_inflight = fit < 1 ? 1 : fit < s3_client_parallel(up->c) ? (unsigned)fit
					   : s3_client_parallel(up->c);
	pthread_mutex_init(&up->mu, NULL);
	pthread_cond_init(&up->cv, NULL);
	if (!(up->key = strdup(key))) {
		upload_free(&up->u);
		return -ENOMEM;
	}
	*out = &up->u;
	return 0;
}

/* --- leftovers --------------------------------------------------------------------------- */

/* Aborts the multipart uploads under the store's prefix + sub ("packs/", "backups/": only
 * what the store writes; another program's uploads under the prefix are not ours to end),
 * page by page (ListMultipartUploads answers at most 1,000 a page). A server without it
 * (501/405) has nothing to reclaim that we can see. */
static int reclaim_under(struct s3_client *c, const char *sub, unsigned *removed)
{
	char *key_marker = NULL, *id_marker = NULL;
	size_t plen = strlen(s3_client_prefix(c));
	int r = 0;
	bool more = true;
	while (r == 0 && more) {
		struct strbuf q = {0}, full = {0};
		r = sb_puts(&full, s3_client_prefix(c)) ?: sb_puts(&full, sub);
		if (r == 0 && key_marker)
			r = sb_puts(&q, "key-marker=") ?: s3_uri_encode(&q, key_marker, false) ?: sb_puts(&q, "&");
		r = r ?: sb_puts(&q, "prefix=") ?: s3_uri_encode(&q, full.buf, false);
		if (r == 0 && id_marker)
			r = sb_puts(&q, "&upload-id-marker=") ?: s3_uri_encode(&q, id_marker, false);
		r = r ?: sb_puts(&q, "&uploads=");
		struct s3_req rq = {.method = "GET", .query = q.buf, .max_body = LIST_MAX_BODY};
		struct s3_resp rs = {0};
		r = r ?: s3_request(c, &rq, &rs);
		if (r == -EIO && (rs.status == 501 || rs.status == 405))
			r = 0;
		const char *pos = rs.body.buf, *end = rs.body.buf + rs.body.len, *st;
		size_t n;
		while (r == 0 && pos && s3_xml_next(&pos, end, "Upload", &st, &n)) {
			char *key = s3_xml_text(st, st + n, "Key"), *id = s3_xml_text(st, st + n, "UploadId");
			if (key && id && strlen(key) > plen && !strncmp(key + plen, sub, strlen(sub)) &&
			    cb_key_valid(key + plen)) {
				abort_multipart(c, key + plen, id);
				(*removed)++;
			}
			free(key);
			free(id);
		}
		char *trunc = rs.body.buf ? s3_xml_text(rs.body.buf, end, "IsTruncated") : NULL;
		char *nk = rs.body.buf ? s3_xml_text(rs.body.buf, end, "NextKeyMarker") : NULL;
		char *ni = rs.body.buf ? s3_xml_text(rs.body.buf, end, "NextUploadIdMarker") : NULL;
		/* a page that does not move the markers on would be asked for ever: the end */
		bool moved = nk && *nk && (!key_marker || strcmp(nk, key_marker) ||
					   (ni && (!id_marker || strcmp(ni, id_marker))));
		free(key_marker);
		free(id_marker);
		key_marker = nk;
		id_marker = ni;
		more = r == 0 && trunc && !strcmp(trunc, "true") && moved;
		free(trunc);
		sb_free(&rs.body);
		sb_free(&q);
		sb_free(&full);
	}
	free(key_marker);
	free(id_marker);
	return r == -ENOENT ? 0 : r;
}

static int s3_reclaim(struct cb_backend *b, unsigned *removed)
{
	return reclaim_under(client(b), "packs/", removed) ?: reclaim_under(client(b), "backups/", removed);
}

/* --- what is there instead --------------------------------------------------------------- */

#define NEARBY_MAX 8 /* store prefixes looked at */

/* One bucket-level ListObjectsV2 page (no retries of its own beyond the client's): prefix p,
 * with delimiter '/' when delim. The body in rs (the caller frees it). */
static int list_raw(struct s3_client *c, const char *p, bool delim, struct s3_resp *rs)
{
	struct strbuf q = {0};
	int r = (delim ? sb_puts(&q, "delimiter=%2F&") : 0) ?:
		sb_puts(&q, "list-type=2&max-keys=1000&prefix=") ?: s3_uri_encode(&q, p, false);
	struct s3_req rq = {.method = "GET", .query = q.buf, .max_body = LIST_MAX_BODY};
	r = r ?: s3_request(c, &rq, rs);
	sb_free(&q);
	return r;
}

/* True when the bucket holds the key exactly. */
static bool raw_exists(struct s3_client *c, const char *key)
{
	struct s3_resp rs = {0};
	bool found = false;
	if (list_raw(c, key, false, &rs) == 0) {
		const char *pos = rs.body.buf, *end = rs.body.buf + rs.body.len, *s;
		size_t n;
		while (!found && pos && s3_xml_next(&pos, end, "Key", &s, &n))
			found = n == strlen(key) && !memcmp(s, key, n);
	}
	sb_free(&rs.body);
	return found;
}

/* Appends the stores (prefixes with a config) among the sub-prefixes of p. */
static void stores_under(struct s3_backend *sb, const char *p, struct strbuf *found, unsigned *looked)
{
	struct s3_resp rs = {0};
	if (list_raw(sb->c, p, true, &rs) == 0) {
		const char *pos = rs.body.buf, *end = rs.body.buf + rs.body.len, *s;
		size_t n;
		while (*looked < NEARBY_MAX && pos && s3_xml_next(&pos, end, "CommonPrefixes", &s, &n)) {
			char *cp = s3_xml_text(s, s + n, "Prefix");
			struct strbuf key = {0};
			(*looked)++;
			if (cp && strcmp(cp, s3_client_prefix(sb->c)) && sb_printf(&key, "%sconfig", cp) == 0 &&
			    raw_exists(sb->c, key.buf)) {
				size_t l = strlen(cp);
				cp[l - 1] = '\0'; /* the trailing '/' */
				const char *loc = sb->b.location, *slash = strchr(loc + 5, '/');
				int bl = slash ? (int)(slash - loc) : (int)strlen(loc);
				sb_printf(found, "%s%.*s/%s", found->len ? ", " : "", bl, loc, cp);
			}
			sb_free(&key);
			free(cp);
		}
	}
	sb_free(&rs.body);
}

/* A store's config that is not there: the stores beside and below its prefix, if any. */
static void s3_explain_absent(struct cb_backend *b, const char *key, struct strbuf *out)
{
	struct s3_backend *sb = (struct s3_backend *)b;
	const char *prefix = s3_client_prefix(sb->c);
	if (strcmp(key, "config"))
		return;
	struct strbuf found = {0}, parent = {0};
	unsigned looked = 0;
	stores_under(sb, prefix, &found, &looked);
	size_t l = strlen(prefix);
	if (l) { /* "a/b/" -> "a/" ; "a/" -> "" */
		size_t i = l - 1;
		while (i && prefix[i - 1] != '/')
			i--;
		if (sb_append(&parent, prefix, i) == 0 && sb_puts(&parent, "") == 0)
			stores_under(sb, parent.buf, &found, &looked);
	}
	if (found.len)
		sb_printf(out, "; the stores beside or below it: %s", found.buf);
	else
		sb_printf(out, "; no store beside or below it either");
	sb_free(&found);
	sb_free(&parent);
}

static void s3_close(struct cb_backend *b)
{
	struct s3_backend *sb = (struct s3_backend *)b;
	s3_client_free(sb->c);
	pthread_cond_destroy(&sb->parts_cv);
	pthread_mutex_destroy(&sb->parts_mu);
	free(b->location);
	free(sb);
}

static const struct cb_backend_ops s3_ops = {
	.get = s3_get,
	.stat = s3_stat,
	.del = s3_del,
	.del_many = s3_del_many,
	.list = s3_list,
	.open_read = s3_open_read,
	.upload_begin = s3_upload_begin,
	.reclaim = s3_reclaim,
	.explain_absent = s3_explain_absent,
	.close = s3_close,
};

/* s3://bucket[/prefix]: bucket names as S3 allows them (3-63 of [a-z0-9.-]); the prefix made
 * of valid key parts (no empty one, no "." or ".."). -EINVAL with the reason in the backend's
 * error. */
static int parse_location(const char *loc, char *bucket, size_t blen, struct strbuf *prefix)
{
	const char *p = loc + 5, *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (n < 3 || n > 63 || n >= blen || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-") < n) {
		cb_backend_set_error("not s3://BUCKET[/PREFIX]: '%.*s' is no bucket name (3 to 63 of "
				     "a-z 0-9 . -)", (int)(n > 63 ? 63 : n), p);
		return -EINVAL;
	}
	memcpy(bucket, p, n);
	bucket[n] = '\0';
	if (!slash)
		return 0;
	char path[1024];
	snprintf(path, sizeof(path), "%s", slash + 1);
	size_t l = strlen(path);
	while (l && path[l - 1] == '/')
		path[--l] = '\0';
	if (!l)
		return 0;
	if (!cb_key_valid(path)) {
		cb_backend_set_error("not s3://BUCKET[/PREFIX]: prefix '%s' has an empty, '.' or '..' "
				     "part, or a character a key cannot hold", path);
		return -EINVAL;
	}
	return sb_printf(prefix, "%s/", path);
}

int cb_backend_open_s3(const char *location, int flags, const struct cb_s3_options *o,
		       struct cb_backend **out)
{
	char bucket[64];
	struct strbuf prefix = {0};
	int r = parse_location(location, bucket, sizeof(bucket), &prefix);
	if (r < 0) {
		sb_free(&prefix);
		return r;
	}
	struct s3_backend *sb = calloc(1, sizeof(*sb));
	char *loc = strdup(location);
	r = !sb || !loc ? -ENOMEM : s3_client_new(o, bucket, prefix.buf ? prefix.buf : "", &sb->c);
	sb_free(&prefix);
	if (r < 0) {
		free(sb);
		free(loc);
		return r;
	}
	pthread_mutex_init(&sb->parts_mu, NULL);
	pthread_cond_init(&sb->parts_cv, NULL);
	sb->b = (struct cb_backend){.ops = &s3_ops, .location = loc,
				    .readonly = (flags & CB_BACKEND_READONLY) != 0,
				    .credentials = s3_client_credentials(sb->c)};
	*out = &sb->b;
	return 0;
}
