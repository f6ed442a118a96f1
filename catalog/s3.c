/* s3.c: see s3.h. */
#include "s3.h"
#include "awscred.h"
#include "backend_i.h"
#include "sigv4.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 16
#define DEFAULT_PARALLEL 4
#define DEFAULT_PART (UINT64_C(16) << 20)
#define DEFAULT_RETRIES 5
#define STALL_SECONDS 30

/* STALL_SECONDS; in a test build (-Dtest_hooks=true), CASSBACKUP_TEST_STALL_SECONDS (1 to 30),
 * so that a test holding a request sees it given up on in a second. */
static long stall_seconds(void)
{
#ifdef CASSBACKUP_TEST_HOOKS
	const char *v = getenv("CASSBACKUP_TEST_STALL_SECONDS");
	long n = v ? strtol(v, NULL, 10) : 0;
	if (n >= 1 && n <= STALL_SECONDS)
		return n;
#endif
	return STALL_SECONDS;
}
#define ERROR_BODY_MAX 65536

/* A request other than a POST that, past stall_seconds(), has moved fewer bytes either way
 * than this many a second since it started is given up on (and retried): curl's own floor, 1
 * byte a second, lets a server or link that dribbles its bytes hold a reader for hours,
 * whatever length the answer claims. A POST is left to that floor: CompleteMultipartUpload
 * answers after as long as S3 takes, with a space now and then. 16 KiB/s is far below any
 * link a store is used over. */
#define MIN_BYTES_PER_SECOND 16384

/* MIN_BYTES_PER_SECOND; in a test build, CASSBACKUP_TEST_MIN_BYTES_PER_SECOND (higher only),
 * so that a test sees a dribbling answer given up on in a second. */
static uint64_t min_bytes_per_second(void)
{
#ifdef CASSBACKUP_TEST_HOOKS
	const char *v = getenv("CASSBACKUP_TEST_MIN_BYTES_PER_SECOND");
	unsigned long long n = v ? strtoull(v, NULL, 10) : 0;
	if (n > MIN_BYTES_PER_SECOND && n < (1ull << 40))
		return n;
#endif
	return MIN_BYTES_PER_SECOND;
}

struct s3_client {
	char *base;      /* URL up to and including the bucket, no trailing '/' */
	char *prefix;    /* key prefix in the bucket: "" or "a/b/" */
	char *region;    /* what requests are signed for */
	char *ca_file;
	struct awscred *cred;
	struct curl_slist *put_headers;  /* SSE, storage class, SSE-C: what every PUT and multipart
					  * create sends */
	struct curl_slist *ssec_headers; /* SSE-C: what every GET, HEAD and part upload sends */
	unsigned parallel, retries;
	uint64_t part_size, min_part_size;
	pthread_mutex_t mu;
	CURL *pool[POOL_MAX];
	unsigned npool;
};

const char *s3_client_credentials(const struct s3_client *c) { return awscred_source(c->cred); }

unsigned s3_client_parallel(const struct s3_client *c) { return c->parallel; }
unsigned s3_client_retries(const struct s3_client *c) { return c->retries; }
const char *s3_client_prefix(const struct s3_client *c) { return c->prefix; }
int s3_client_part_size(const struct s3_client *c, uint64_t size, uint64_t *part)
{
	return cb_s3_part_size(c->part_size, c->min_part_size, size, part);
}

int cb_s3_part_size(uint64_t base, uint64_t min_part, uint64_t size, uint64_t *part)
{
	const uint64_t mib = UINT64_C(1) << 20;
	uint64_t p = base ? base : DEFAULT_PART;
	uint64_t floor = min_part ? min_part : S3_MIN_PART_SIZE;
	if (size > S3_MAX_OBJECT_SIZE)
		return -EFBIG;
	uint64_t need = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS; /* the smallest that fits */
	need = (need + mib - 1) / mib * mib;
	if (p < need)
		p = need;
	if (p < floor)
		p = floor;
	if (p > S3_MAX_PART_SIZE)
		return -EFBIG;
	*part = p;
	return 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void slist_wipe_free(struct curl_slist *l)
{
	for (struct curl_slist *i = l; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

/* Appends "name: value" to *l. 0 or -ENOMEM (*l unchanged). */
static int header_add(struct curl_slist **l, const char *name, const char *value)
{
	struct strbuf h = {0};
	struct curl_slist *n = sb_printf(&h, "%s: %s", name, value) < 0 ? NULL
								      : curl_slist_append(*l, h.buf);
	if (h.buf)
		explicit_bzero(h.buf, h.len);
	sb_free(&h);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

/* The headers of o's server-side encryption and storage class: on writes (put) and, for
 * SSE-C, on reads too (ssec). */
static int storage_headers(const struct cb_s3_options *o, struct curl_slist **put,
			   struct curl_slist **ssec)
{
	int r = 0;
	if (o->sse)
		r = header_add(put, "x-amz-server-side-encryption", o->sse);
	if (!r && o->sse_kms_key_id)
		r = header_add(put, "x-amz-server-side-encryption-aws-kms-key-id", o->sse_kms_key_id);
	if (!r && o->storage_class)
		r = header_add(put, "x-amz-storage-class", o->storage_class);
	if (!r && o->sse_c_key_len == 32) {
		char key[64], md5b[32];
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;
		EVP_EncodeBlock((unsigned char *)key, o->sse_c_key, 32);
		if (!EVP_Digest(o->sse_c_key, 32, md, &mdlen, EVP_md5(), NULL))
			r = -EIO;
		EVP_EncodeBlock((unsigned char *)md5b, md, 16);
		const char *names[3] = {"x-amz-server-side-encryption-customer-algorithm",
					"x-amz-server-side-encryption-customer-key",
					"x-amz-server-side-encryption-customer-key-MD5"};
		const char *values[3] = {"AES256", key, md5b};
		for (int i = 0; !r && i < 3; i++)
			r = header_add(put, names[i], values[i]) ?: header_add(ssec, names[i], values[i]);
		explicit_bzero(key, sizeof(key));
	}
	return r;
}

int s3_client_new(const struct cb_s3_options *o, const char *bucket, const char *prefix,
		  struct s3_client **out)
{
	*out = NULL;
	int r = cb_curl_load();
	if (r < 0)
		return r;
	struct s3_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	const char *region = o->region && *o->region ? o->region : "us-east-1";
	struct awscred_config ac = {.access_key = o->access_key, .secret_key = o->secret_key,
				    .session_token = o->session_token,
				    .explicit_source = o->key_source, .region = region,
				    .ca_file = o->ca_file};
	r = awscred_new(&ac, &c->cred);
	if (r < 0) {
		free(c);
		return r;
	}
	struct strbuf base = {0};
	if (o->endpoint && *o->endpoint) {
		size_t n = strlen(o->endpoint);
		while (n && o->endpoint[n - 1] == '/')
			n--;
		r = sb_printf(&base, "%.*s/%s", (int)n, o->endpoint, bucket);
	} else {
		r = sb_printf(&base, "https://%s.s3.%s.amazonaws.com", bucket, region);
	}
	r = r ?: storage_headers(o, &c->put_headers, &c->ssec_headers);
	c->base = base.buf;
	c->region = strdup(region);
	c->prefix = strdup(prefix);
	c->ca_file = dup_or_null(o->ca_file);
	c->parallel = o->parallel ? o->parallel : DEFAULT_PARALLEL;
	c->retries = o->retries ? o->retries : DEFAULT_RETRIES;
	c->part_size = o->part_size ? o->part_size : DEFAULT_PART;
	c->min_part_size = o->min_part_size;
	pthread_mutex_init(&c->mu, NULL);
	if (r || !c->prefix || !c->region || (o->ca_file && !c->ca_file)) {
		s3_client_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	pthread_mutex_destroy(&c->mu);
	free(c->base);
	free(c->prefix);
	free(c->region);
	awscred_free(c->cred);
	slist_wipe_free(c->put_headers); /* they may hold the SSE-C key */
	slist_wipe_free(c->ssec_headers);
	free(c->ca_file);
	free(c);
}

/* A handle from the pool (its connections stay open between requests), or a new one. */
static CURL *handle_take(struct s3_client *c)
{
	pthread_mutex_lock(&c->mu);
	CURL *h = c->npool ? c->pool[--c->npool] : NULL;
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_reset(h);
	return h ? h : curl_easy_init();
}

static void handle_give(struct s3_client *c, CURL *h)
{
	pthread_mutex_lock(&c->mu);
	if (c->npool < POOL_MAX) {
		c->pool[c->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_cleanup(h);
}

int s3_uri_encode(struct strbuf *sb, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			     *p == '~' || (keep_slash && *p == '/');
		char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
		int r = plain ? sb_append(sb, p, 1) : sb_append(sb, enc, 3);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --- one transfer ------------------------------------------------------------------------ */

struct xfer {
	struct s3_client *c;
	CURL *h;
	const struct s3_req *rq;
	struct s3_resp *rs;
	size_t sent;      /* of rq->body */
	size_t received;  /* into rq->dst */
	bool overflow;
	uint64_t cr_start, cr_end; /* Content-Range */
	bool has_cr;
	bool headers_done; /* the empty line that ends the final answer's headers was seen */
	int cred_error;    /* no credentials to sign with (awscred_get's return) */
	struct timespec start; /* of this attempt (CLOCK_MONOTONIC) */
	bool too_slow;     /* on_progress gave it up (MIN_BYTES_PER_SECOND) */
	char key_id[48];   /* the access key id signed with (not a secret: for messages) */
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 300) { /* an error document: kept (bounded) for its <Code> */
		if (x->rs->body.len + n > ERROR_BODY_MAX)
			return n;
		return sb_append(&x->rs->body, ptr, n) < 0 ? 0 : n;
	}
	if (x->rq->dst) {
		if (x->received + n > x->rq->range_len) {
			x->overflow = true;
			return 0; /* more than asked: abort, retried as a bad answer */
		}
		memcpy((char *)x->rq->dst + x->received, ptr, n);
		x->received += n;
		return n;
	}
	if (x->rs->body.len + n > x->rq->max_body) {
		x->overflow = true;
		return 0;
	}
	return sb_append(&x->rs->body, ptr, n) < 0 ? 0 : n;
}

static size_t on_upload(char *buf, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb, left = x->rq->body_len - x->sent;
	if (n > left)
		n = left;
	memcpy(buf, (const char *)x->rq->body + x->sent, n);
	x->sent += n;
	return n;
}

/* Header lines: ETag, Content-Length, Content-Range, Last-Modified. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nitems;
	char line[512];
	if (n >= sizeof(line))
		return n;
	memcpy(line, buf, n);
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (!strncmp(line, "HTTP/", 5))
		x->headers_done = false; /* a new answer (after a 100 Continue) */
	else if (!*line)
		x->headers_done = true;
	char *v = strchr(line, ':');
	if (!v)
		return n;
	*v++ = '\0';
	v += strspn(v, " \t");
	if (!strcasecmp(line, "etag"))
		snprintf(x->rs->etag, sizeof(x->rs->etag), "%s", v);
	else if (!strcasecmp(line, "content-length"))
		x->rs->length = strtoull(v, NULL, 10);
	else if (!strcasecmp(line, "last-modified"))
		x->rs->last_modified_ns = s3_http_date_ns(v);
	else if (!strcasecmp(line, "content-range"))
		x->has_cr = sscanf(v, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &x->cr_start,
				   &x->cr_end, &x->rs->total) == 3;
	return n;
}

static int build_url(struct s3_client *c, const struct s3_req *rq, struct strbuf *url)
{
	int r = sb_puts(url, c->base) ?: sb_puts(url, "/");
	if (!r && rq->key)
		r = s3_uri_encode(url, c->prefix, true) ?: s3_uri_encode(url, rq->key, true);
	if (!r && rq->query)
		r = sb_printf(url, "?%s", rq->query);
	return r;
}

static void payload_hash(const struct s3_req *rq, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(rq->body ? rq->body : (const void *)"", rq->body ? rq->body_len : 0, md);
	hex_encode(md, sizeof(md), out);
}

/* The storage headers a request carries: SSE, storage class and SSE-C where an object is
 * created (a PUT of a whole object, CreateMultipartUpload); SSE-C alone where its bytes are
 * read or sent in parts (GET, HEAD, UploadPart). Nothing on listings, deletes and completes. */
static const struct curl_slist *storage_of(const struct s3_client *c, const struct s3_req *rq)
{
	if (!rq->key)
		return NULL;
	if ((!strcmp(rq->method, "PUT") && !rq->query) ||
	    (!strcmp(rq->method, "POST") && rq->query && !strcmp(rq->query, "uploads=")))
		return c->put_headers;
	if ((!strcmp(rq->method, "PUT") && rq->query && !strncmp(rq->query, "partNumber=", 11)) ||
	    ((!strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD")) && !rq->query))
		return c->ssec_headers;
	return NULL;
}

/* Every header of a request but those sigv4_sign adds (Host, x-amz-date, Authorization). */
static struct curl_slist *build_headers(struct s3_client *c, const struct s3_req *rq,
					const struct awscred_keys *k, const char *hash)
{
	char h[128];
	snprintf(h, sizeof(h), "x-amz-content-sha256: %s", hash);
	/* No "Expect:" to turn 100-continue off: that would be a header curl does not send;
	 * perform() has curl send the body without waiting for the 100 instead. */
	struct curl_slist *l = curl_slist_append(NULL, h);
	if (l && k->token) {
		struct strbuf t = {0};
		l = sb_printf(&t, "x-amz-security-token: %s", k->token) < 0 ? (curl_slist_free_all(l), NULL)
									      : curl_slist_append(l, t.buf);
		sb_free(&t);
	}
	for (const struct curl_slist *i = storage_of(c, rq); l && i; i = i->next)
		l = curl_slist_append(l, i->data);
	if (l && rq->range_len) {
		snprintf(h, sizeof(h), "Range: bytes=%" PRIu64 "-%" PRIu64, rq->range_off,
			 rq->range_off + rq->range_len - 1);
		l = curl_slist_append(l, h);
	}
	if (l && rq->content_md5) {
		snprintf(h, sizeof(h), "Content-MD5: %s", rq->content_md5);
		l = curl_slist_append(l, h);
	}
	if (l && rq->if_none_match)
		l = curl_slist_append(l, "If-None-Match: *");
	if (l && rq->if_match) {
		snprintf(h, sizeof(h), "If-Match: \"%s\"", rq->if_match);
		l = curl_slist_append(l, h);
	}
	if (l && rq->body && !strcmp(rq->method, "POST"))
		l = curl_slist_append(l, "Content-Type: application/xml");
	return l;
}

static void set_method(CURL *h, const struct s3_req *rq, struct xfer *x)
{
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(rq->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
	} else if (!strcmp(rq->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	} else if (strcmp(rq->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	}
}

/* Gives up an attempt slower than MIN_BYTES_PER_SECOND (above). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)ultotal;
	struct xfer *x = ud;
	if (!strcmp(x->rq->method, "POST"))
		return 0;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t ms = (int64_t)(now.tv_sec - x->start.tv_sec) * 1000 +
		     (now.tv_nsec - x->start.tv_nsec) / 1000000 - (int64_t)stall_seconds() * 1000;
	uint64_t moved = (uint64_t)(dlnow > 0 ? dlnow : 0) + (uint64_t)(ulnow > 0 ? ulnow : 0);
	x->too_slow = ms > 0 && moved < (uint64_t)ms * min_bytes_per_second() / 1000;
	return x->too_slow;
}

/* One attempt. Returns the curl result; rs->status the HTTP status. */
static CURLcode perform(struct s3_client *c, CURL *h, const struct s3_req *rq, struct s3_resp *rs,
			struct xfer *x)
{
	struct strbuf url = {0};
	struct awscred_keys k = {0};
	int kr = awscred_get(c->cred, &k);
	if (kr < 0) {
		x->cred_error = kr;
		return kr == -ENOMEM ? CURLE_OUT_OF_MEMORY : CURLE_LOGIN_DENIED;
	}
	char hash[65];
	payload_hash(rq, hash);
	snprintf(x->key_id, sizeof(x->key_id), "%s", k.access_key);
	struct curl_slist *hdr = build_headers(c, rq, &k, hash);
	struct sigv4_request sr = {.method = rq->method, .payload_hash = hash, .region = c->region,
				   .service = "s3", .access_key = k.access_key,
				   .secret_key = k.secret_key, .now = (int64_t)time(NULL)};
	if (!hdr || build_url(c, rq, &url) < 0 || (sr.url = url.buf, sigv4_sign(&sr, &hdr) < 0)) {
		slist_wipe_free(hdr);
		sb_free(&url);
		awscred_keys_clear(&k);
		return CURLE_OUT_OF_MEMORY;
	}
	curl_easy_setopt(h, CURLOPT_URL, url.buf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L); /* send the body at once */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_seconds());
	clock_gettime(CLOCK_MONOTONIC, &x->start);
	x->too_slow = false;
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	set_method(h, rq, x);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL); /* the list is wiped below */
	slist_wipe_free(hdr);
	awscred_keys_clear(&k);
	sb_free(&url);
	return cc;
}

/* S3's error code from an error body ("SlowDown", "NoSuchKey"), or "". */
static void error_code(const struct s3_resp *rs, char *out, size_t n)
{
	char *code = rs->body.len ? s3_xml_text(rs->body.buf, rs->body.buf + rs->body.len, "Code")
				  : NULL;
	snprintf(out, n, "%s", code ? code : "");
	free(code);
}

/* A ranged answer that is not exactly what was asked (wrong Content-Range, short body). */
static bool range_wrong(const struct s3_req *rq, const struct xfer *x, const struct s3_resp *rs)
{
	if (!rq->range_len)
		return false;
	if (rs->status != 206 || !x->has_cr || x->cr_start != rq->range_off)
		return true;
	uint64_t got = x->cr_end - x->cr_start + 1;
	/* The object may end inside the range: then the server sends up to its end. */
	bool at_end = x->cr_end + 1 == rs->total;
	return x->received != got || (got != rq->range_len && !at_end) || got > rq->range_len;
}

enum verdict { DONE, RETRY, FAIL };

static enum verdict judge(CURLcode cc, const struct s3_req *rq, const struct xfer *x,
			  const struct s3_resp *rs, char *why, size_t n)
{
	char code[64];
	if (x->cred_error) {
		snprintf(why, n, "%s", cb_backend_last_error());
		return FAIL;
	}
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
		long os = 0;
		curl_easy_getinfo(x->h, CURLINFO_OS_ERRNO, &os);
		snprintf(why, n, "cannot connect to %s: %s", x->c->base,
			 cc == CURLE_COULDNT_RESOLVE_HOST ? "host name not found"
			 : os ? strerror((int)os) : curl_easy_strerror(cc));
		return RETRY;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && x->too_slow) {
		snprintf(why, n, "too slow: under %llu bytes a second",
			 (unsigned long long)min_bytes_per_second());
		return RETRY;
	}
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && x->overflow)) {
		snprintf(why, n, "%s", curl_easy_strerror(cc));
		return cc == CURLE_OUT_OF_MEMORY ? FAIL : RETRY;
	}
	if (x->overflow) {
		snprintf(why, n, "HTTP %ld with more data than asked for", rs->status);
		return rq->range_len ? RETRY : FAIL;
	}
	error_code(rs, code, sizeof(code));
	if (rs->status >= 200 && rs->status < 300) {
		/* curl takes a connection closed inside the header block for a whole answer, and
		 * a line cut there for a header ("ETag: \"12"): not an answer to build on. */
		if (!x->headers_done) {
			snprintf(why, n, "HTTP %ld cut inside its headers", rs->status);
			return RETRY;
		}
		if (range_wrong(rq, x, rs)) {
			snprintf(why, n, "HTTP %ld with a wrong Content-Range or length", rs->status);
			return RETRY;
		}
		if (rq->query && !strcmp(rq->query, "delete=")) /* DeleteObjects: <Error> per key, */
			return DONE;                              /* read by the caller */
		if (!strcmp(rq->method, "POST") && !strcmp(code, "InternalError")) {
			snprintf(why, n, "HTTP %ld InternalError", rs->status);
			return RETRY; /* CompleteMultipartUpload may fail inside a 200 */
		}
		return *code && !strcmp(rq->method, "POST") ? FAIL : DONE;
	}
	snprintf(why, n, "HTTP %ld%s%s", rs->status, *code ? " " : "", code);
	if (!strcmp(code, "ExpiredToken") || !strcmp(code, "TokenRefreshRequired"))
		return RETRY; /* s3_request has the credentials fetched again first */
	if (rs->status == 429 || rs->status == 500 || rs->status == 502 || rs->status == 503 ||
	    rs->status == 504 || !strcmp(code, "RequestTimeout") || !strcmp(code, "SlowDown") ||
	    !strcmp(code, "ConditionalRequestConflict")) /* AWS: a conditional write raced; retry */
		return RETRY;
	return FAIL;
}

static int errno_of(const struct s3_resp *rs)
{
	char code[64];
	error_code(rs, code, sizeof(code));
	if (!strcmp(code, "NoSuchBucket"))
		return -ENXIO; /* not an absent object: nothing is there at all */
	switch (rs->status) {
	case 404: return -ENOENT;
	case 403: return -EACCES;
	case 401: return -EACCES;
	case 416: return -EINVAL;
	case 412: return -EEXIST; /* If-None-Match: the key is taken; If-Match: replaced */
	default: return -EIO;
	}
}

static bool token_expired(const struct s3_resp *rs)
{
	char code[64];
	error_code(rs, code, sizeof(code));
	return !strcmp(code, "ExpiredToken") || !strcmp(code, "TokenRefreshRequired");
}

/* Words for a refusal, naming what was refused, where a code says more than "HTTP 403". */
static void refusal_words(struct s3_client *c, const struct s3_resp *rs, const char *method,
			  const char *key_id, char *why, size_t n)
{
	char code[64];
	error_code(rs, code, sizeof(code));
	char refused_key[96], status[80];
	snprintf(status, sizeof(status), "HTTP %ld %s", rs->status, code);
	snprintf(refused_key, sizeof(refused_key), "S3 refused the access key %s", key_id);
	/* a HEAD's answer has no body, so no code: its 403 is a refusal all the same */
	bool bare_403 = !*code && rs->status == 403;
	if (bare_403)
		snprintf(status, sizeof(status), "HTTP 403 to a %s", method);
	const char *what = !strcmp(code, "InvalidAccessKeyId") ? refused_key
			   : !strcmp(code, "SignatureDoesNotMatch") ? "S3 refused the signature (the "
								     "secret key does not match the access key)"
			   : !strcmp(code, "AccessDenied") || bare_403 ? "access denied"
			   : !strcmp(code, "NoSuchBucket") ? "no such bucket"
			   : !strcmp(code, "InvalidToken") || !strcmp(code, "ExpiredToken")
				   ? "S3 refused the session token" : NULL;
	if (!what)
		return;
	char *bucket = !strcmp(code, "NoSuchBucket") && rs->body.len
			       ? s3_xml_text(rs->body.buf, rs->body.buf + rs->body.len, "BucketName") : NULL;
	if (bucket)
		snprintf(why, n, "bucket %s does not exist (NoSuchBucket) at %s", bucket, c->base);
	else if (!strcmp(code, "NoSuchBucket"))
		snprintf(why, n, "the bucket of %s does not exist (NoSuchBucket)", c->base);
	else
		snprintf(why, n, "%s (%s; credentials from %s; endpoint %s)", what, status,
			 awscred_source(c->cred), c->base);
	free(bucket);
}

int s3_request(struct s3_client *c, const struct s3_req *rq, struct s3_resp *rs)
{
	memset(rs, 0, sizeof(*rs));
	CURL *h = handle_take(c);
	if (!h)
		return -ENOMEM;
	char why[512] = "";
	enum verdict v = FAIL;
	int cred_error = 0;
	char key_id[sizeof(((struct xfer *)0)->key_id)] = "";
	for (unsigned attempt = 0; attempt <= (rq->once ? 0 : c->retries); attempt++) {
		if (attempt)
			cb_backoff(attempt);
		sb_free(&rs->body);
		memset(rs, 0, sizeof(*rs));
		struct xfer x = {.c = c, .h = h, .rq = rq, .rs = rs};
		CURLcode cc = perform(c, h, rq, rs, &x);
		if (rq->dst)
			rs->length = x.received;
		v = judge(cc, rq, &x, rs, why, sizeof(why));
		cred_error = x.cred_error;
		memcpy(key_id, x.key_id, sizeof(key_id));
		rs->too_large = x.overflow && !rq->dst;
		if (v == RETRY && rs->status >= 400 && token_expired(rs))
			awscred_expire(c->cred); /* fetch the credentials again before the retry */
		if (v != RETRY)
			break;
	}
	handle_give(c, h);
	if (v == DONE)
		return 0;
	if (cred_error) /* no keys to sign with: awscred said why */
		return cred_error;
	if (rs->status >= 400)
		refusal_words(c, rs, rq->method, key_id, why, sizeof(why));
	cb_backend_set_error("%s %s%s: %s", rq->method, c->prefix, rq->key ? rq->key : "", why);
	if (rs->too_large)
		return -EFBIG;
	if (v == RETRY && rq->once) /* one attempt asked for, and it may succeed again */
		return -EAGAIN;
	return rs->status ? errno_of(rs) : -EIO;
}

/* --- times ------------------------------------------------------------------------------- */

/* Seconds since the epoch of a UTC calendar time, or -1 when a field is out of range. No
 * locale, no TZ: timegm with its checks. */
static int64_t utc_seconds(int year, int mon, int day, int h, int m, int sec)
{
	if (year < 1970 || year > 9999 || mon < 1 || mon > 12 || day < 1 || day > 31 || h < 0 ||
	    h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60)
		return -1;
	struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day, .tm_hour = h,
			.tm_min = m, .tm_sec = sec};
	time_t t = timegm(&tm);
	return t == (time_t)-1 ? -1 : (int64_t)t;
}

int64_t s3_http_date_ns(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4] = "";
	int day, year, h, m, sec, n = 0;
	const char *comma = strchr(s, ',');
	if (!comma || sscanf(comma + 1, " %d %3s %d %d:%d:%d GMT%n", &day, mon, &year, &h, &m, &sec,
			     &n) != 6 || n == 0 || strlen(mon) != 3)
		return 0;
	const char *at = strstr(months, mon);
	if (!at || (at - months) % 3)
		return 0;
	int64_t t = utc_seconds(year, (int)(at - months) / 3 + 1, day, h, m, sec);
	return t < 0 ? 0 : t * 1000000000;
}

/* A UTC offset as ISO 8601 writes it, "+HH:MM", "-HH:MM", "+HHMM" or "+HH", in seconds. */
static int utc_offset(const char *p, int64_t *seconds)
{
	int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0, h = 0, m = 0, n = 0;
	if (!sign)
		return -EINVAL;
	p++;
	if (!((sscanf(p, "%2d:%2d%n", &h, &m, &n) == 2 && n == 5) ||
	      (sscanf(p, "%2d%2d%n", &h, &m, &n) == 2 && n == 4) ||
	      (m = 0, sscanf(p, "%2d%n", &h, &n) == 1 && n == 2)) || p[n] || h > 23 || m > 59 ||
	    h < 0 || m < 0)
		return -EINVAL;
	*seconds = sign * (h * 3600 + m * 60);
	return 0;
}

int64_t s3_iso8601_ns(const char *s)
{
	int year, mon, day, h, m, sec, n = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &h, &m, &sec, &n) != 6 || n != 19)
		return 0;
	int64_t t = utc_seconds(year, mon, day, h, m, sec), frac = 0, scale = 1000000000;
	const char *p = s + n;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
	}
	int64_t offset = 0; /* seconds east of UTC: "+02:00" is 2 hours ahead */
	if (t < 0 || (strcmp(p, "Z") && utc_offset(p, &offset) < 0))
		return 0;
	return (t - offset) * 1000000000 + frac;
}

/* --- XML --------------------------------------------------------------------------------- */

bool s3_xml_next(const char **pos, const char *end, const char *tag, const char **start,
		 size_t *len)
{
	char open[80], close[80];
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	size_t ol = strlen(open), cl = strlen(close);
	const char *p = *pos;
	const char *a = p ? memmem(p, (size_t)(end - p), open, ol) : NULL;
	if (!a)
		return false;
	a += ol;
	const char *b = memmem(a, (size_t)(end - a), close, cl);
	if (!b)
		return false;
	*start = a;
	*len = (size_t)(b - a);
	*pos = b + cl;
	return true;
}

static int decode_entity(const char *p, const char *end, char *out, size_t *used)
{
	static const struct { const char *name; char c; } ents[] = {
		{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''},
	};
	for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
		size_t n = strlen(ents[i].name);
		if ((size_t)(end - p) >= n && !memcmp(p, ents[i].name, n)) {
			*out = ents[i].c;
			*used = n;
			return 0;
		}
	}
	/* &#NN; / &#xNN;: only single bytes (keys are ours: plain bytes) */
	if (end - p > 3 && p[1] == '#') {
		char *e;
		bool hexa = p[2] == 'x';
		unsigned long v = strtoul(p + 2 + hexa, &e, hexa ? 16 : 10);
		if (e < end && *e == ';' && v > 0 && v < 256) {
			*out = (char)v;
			*used = (size_t)(e - p) + 1;
			return 0;
		}
	}
	return -EBADMSG;
}

char *s3_xml_text(const char *p, const char *end, const char *tag)
{
	const char *s;
	size_t n;
	if (!s3_xml_next(&p, end, tag, &s, &n))
		return NULL;
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (const char *q = s; q < s + n;) {
		size_t used = 1;
		if (*q == '&') {
			if (decode_entity(q, s + n, o, &used) < 0) {
				free(out);
				return NULL;
			}
		} else {
			*o = *q;
		}
		o++;
		q += used;
	}
	*o = '\0';
	return out;
}

/* --- options from the environment -------------------------------------------------------- */

/* *field = a copy of v, recorded in the NULL-terminated array *strings. */
static int take(char ***strings, size_t *n, const char *v, const char **field)
{
	char *d = strdup(v);
	char **p = d ? realloc(*strings, (*n + 2) * sizeof(*p)) : NULL;
	if (!p) {
		free(d);
		return -ENOMEM;
	}
	p[(*n)++] = d;
	p[*n] = NULL;
	*strings = p;
	*field = d;
	return 0;
}

/* "key = value" lines of the key file: access_key, secret_key, session_token. */
static int key_file_read(const char *path, char *vals[3])
{
	static const char *const names[3] = {"access_key", "secret_key", "session_token"};
	char *text = NULL;
	int r = read_small_file(path, 1 << 16, &text, NULL);
	for (char *l = text, *next; r == 0 && l; l = next) {
		next = strchr(l, '\n');
		if (next)
			*next++ = '\0';
		char *s = l + strspn(l, " \t"), *eq = strchr(s, '=');
		s[strcspn(s, "\r")] = '\0';
		if (!eq || *s == '#' || *s == ';')
			continue;
		char *ke = eq, *v = eq + 1 + strspn(eq + 1, " \t"), *ve = v + strlen(v);
		while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t'))
			ke--;
		*ke = '\0';
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';
		for (int i = 0; i < 3; i++)
			if (!strcmp(s, names[i]) && !vals[i] && !(vals[i] = strdup(v)))
				r = -ENOMEM;
	}
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
	return r;
}

static int from_key_file(struct cb_s3_options *o, const char *path, char ***strings, size_t *n)
{
	char *vals[3] = {NULL, NULL, NULL};
	struct strbuf src = {0};
	int r = key_file_read(path, vals);
	if (r < 0 && r != -ENOMEM)
		cb_backend_set_error("cannot read s3_key_file %s: %s", path, strerror(-r));
	else if (r == 0 && (!vals[0] || !vals[1])) {
		cb_backend_set_error("s3_key_file %s has no %s line", path,
				     !vals[0] ? "access_key" : "secret_key");
		r = -EINVAL;
	}
	r = r ?: sb_printf(&src, "s3_key_file %s", path) ?: take(strings, n, src.buf, &o->key_source) ?:
	    take(strings, n, vals[0], &o->access_key) ?: take(strings, n, vals[1], &o->secret_key) ?:
	    (vals[2] ? take(strings, n, vals[2], &o->session_token) : 0);
	for (int i = 0; i < 3; i++) {
		if (vals[i])
			explicit_bzero(vals[i], strlen(vals[i]));
		free(vals[i]);
	}
	sb_free(&src);
	return r;
}

/* The SSE-C key: 32 bytes, raw or in base64 (one line). */
static int sse_c_key_read(struct cb_s3_options *o)
{
	char *text = NULL;
	size_t len = 0;
	int r = read_small_file(o->sse_c_key_file, 4096, &text, &len);
	if (r < 0) {
		cb_backend_set_error("s3_sse_c_key_file %s: %s", o->sse_c_key_file, strerror(-r));
		return r;
	}
	if (len == 32) {
		memcpy(o->sse_c_key, text, 32);
	} else {
		unsigned char dec[64];
		while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			len--;
		int n = len == 44 ? EVP_DecodeBlock(dec, (unsigned char *)text, 44) : -1;
		if (n != 33 || text[43] != '=' || text[42] == '=') { /* 32 bytes + one pad byte */
			cb_backend_set_error("s3_sse_c_key_file %s: not a 256-bit key (32 bytes, raw or "
					     "in base64)", o->sse_c_key_file);
			r = -EINVAL;
		} else {
			memcpy(o->sse_c_key, dec, 32);
		}
		explicit_bzero(dec, sizeof(dec));
	}
	o->sse_c_key_len = r == 0 ? 32 : 0;
	explicit_bzero(text, len);
	free(text);
	return r;
}

/* The storage classes whose objects a GET reads at once; GLACIER and DEEP_ARCHIVE need a
 * restore first, which a mount cannot wait for. */
static const char *const readable_classes[] = {
	"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
};

static int storage_check(const struct cb_s3_options *o)
{
	if (o->sse && strcmp(o->sse, "AES256") && strcmp(o->sse, "aws:kms")) {
		cb_backend_set_error("s3_sse = %s: expected AES256 or aws:kms", o->sse);
		return -EINVAL;
	}
	if (o->sse_kms_key_id && (!o->sse || strcmp(o->sse, "aws:kms"))) {
		cb_backend_set_error("s3_sse_kms_key_id = %s: needs s3_sse = aws:kms", o->sse_kms_key_id);
		return -EINVAL;
	}
	if (o->sse && o->sse_c_key_file) {
		cb_backend_set_error("s3_sse = %s and s3_sse_c_key_file: S3 takes one kind of "
				     "server-side encryption per object", o->sse);
		return -EINVAL;
	}
	if (!o->storage_class)
		return 0;
	for (size_t i = 0; i < sizeof(readable_classes) / sizeof(*readable_classes); i++)
		if (!strcmp(o->storage_class, readable_classes[i]))
			return 0;
	bool restore = !strcmp(o->storage_class, "GLACIER") || !strcmp(o->storage_class, "DEEP_ARCHIVE");
	cb_backend_set_error("s3_storage_class = %s: %s", o->storage_class,
			     restore ? "objects of this class need a restore before they can be read; "
				       "use GLACIER_IR, STANDARD_IA or INTELLIGENT_TIERING"
				     : "expected STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING "
				       "or GLACIER_IR");
	return -EINVAL;
}

bool cb_s3_endpoint_ok(const char *url)
{
	return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8);
}

int cb_s3_options_check(struct cb_s3_options *o)
{
	if (o->endpoint && *o->endpoint && !cb_s3_endpoint_ok(o->endpoint)) {
		cb_backend_set_error("S3 endpoint %s (s3_endpoint, AWS_ENDPOINT_URL): expected an "
				     "http:// or https:// URL", o->endpoint);
		return -EINVAL;
	}
	int r = storage_check(o);
	if (r == 0 && o->sse_c_key_file && o->sse_c_key_len != 32)
		r = sse_c_key_read(o);
	return r;
}

/* *out = the size in the environment variable name, when set and *out is unset. */
static int size_from_env(const char *name, uint64_t *out)
{
	const char *v = getenv(name);
	if (*out || !v || !*v)
		return 0;
	struct strbuf err = {0};
	int r = parse_size(v, out, &err);
	sb_free(&err);
	if (r < 0)
		errno = EINVAL;
	return r < 0 ? -EINVAL : 0;
}

bool cb_s3_env_overrides(const char *config_key)
{
	static const char *const by_key[][3] = {
		{"s3_endpoint", "AWS_ENDPOINT_URL", NULL},
		{"s3_region", "AWS_REGION", "AWS_DEFAULT_REGION"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(by_key); i++) {
		if (strcmp(by_key[i][0], config_key))
			continue;
		for (size_t k = 1; k < 3 && by_key[i][k]; k++) {
			const char *v = getenv(by_key[i][k]);
			if (v && *v)
				return true;
		}
	}
	return false;
}

int cb_s3_options_resolve(struct cb_s3_options *o, const char *key_file, char ***strings)
{
	size_t n = 0;
	*strings = NULL;
	const char *v;
	int r = 0;
	if (!o->endpoint && (v = getenv("AWS_ENDPOINT_URL")) && *v)
		r = take(strings, &n, v, &o->endpoint);
	if (!r && !o->region && (((v = getenv("AWS_REGION")) && *v) || ((v = getenv("AWS_DEFAULT_REGION")) && *v)))
		r = take(strings, &n, v, &o->region);
	if (!r && (r = size_from_env("CASSBACKUP_S3_PART_SIZE", &o->part_size) ?:
		   size_from_env("CASSBACKUP_S3_MIN_PART_SIZE", &o->min_part_size)) < 0)
		cb_backend_set_error("CASSBACKUP_S3_PART_SIZE or CASSBACKUP_S3_MIN_PART_SIZE: not a size");
	if (!r && key_file && !(o->access_key && o->secret_key))
		r = from_key_file(o, key_file, strings, &n);
	r = r ?: cb_s3_options_check(o);
	if (r < 0)
		errno = -r;
	return r;
}
