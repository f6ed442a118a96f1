/* s3.c: see s3.h. */
#include "s3.h"
#include "backend_i.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
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
#define ERROR_BODY_MAX 65536

struct s3_client {
	char *base;      /* URL up to and including the bucket, no trailing '/' */
	char *prefix;    /* key prefix in the bucket: "" or "a/b/" */
	char *sigv4;     /* "aws:amz:REGION:s3" */
	char *access_key, *secret_key, *token_header, *ca_file;
	unsigned parallel, retries;
	uint64_t part_size, min_part_size;
	pthread_mutex_t mu;
	CURL *pool[POOL_MAX];
	unsigned npool;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

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

int s3_client_new(const struct cb_s3_options *o, const char *bucket, const char *prefix,
		  struct s3_client **out)
{
	pthread_once(&curl_once, curl_init_once);
	*out = NULL;
	if (!o->access_key || !o->secret_key) {
		cb_backend_set_error("no S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
				     "AWS_PROFILE, or s3_key_file)");
		return -EACCES;
	}
	struct s3_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	const char *region = o->region && *o->region ? o->region : "us-east-1";
	struct strbuf base = {0}, sig = {0}, tok = {0};
	int r = 0;
	if (o->endpoint && *o->endpoint) {
		size_t n = strlen(o->endpoint);
		while (n && o->endpoint[n - 1] == '/')
			n--;
		r = sb_printf(&base, "%.*s/%s", (int)n, o->endpoint, bucket);
	} else {
		r = sb_printf(&base, "https://%s.s3.%s.amazonaws.com", bucket, region);
	}
	r = r ?: sb_printf(&sig, "aws:amz:%s:s3", region);
	if (!r && o->session_token)
		r = sb_printf(&tok, "x-amz-security-token: %s", o->session_token);
	c->base = base.buf;
	c->sigv4 = sig.buf;
	c->token_header = tok.buf;
	c->prefix = strdup(prefix);
	c->access_key = dup_or_null(o->access_key);
	c->secret_key = dup_or_null(o->secret_key);
	c->ca_file = dup_or_null(o->ca_file);
	c->parallel = o->parallel ? o->parallel : DEFAULT_PARALLEL;
	c->retries = o->retries ? o->retries : DEFAULT_RETRIES;
	c->part_size = o->part_size ? o->part_size : DEFAULT_PART;
	c->min_part_size = o->min_part_size;
	pthread_mutex_init(&c->mu, NULL);
	if (r || !c->prefix || !c->access_key || !c->secret_key || (o->ca_file && !c->ca_file)) {
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
	free(c->sigv4);
	if (c->secret_key)
		explicit_bzero(c->secret_key, strlen(c->secret_key));
	free(c->access_key);
	free(c->secret_key);
	free(c->token_header);
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

static struct curl_slist *build_headers(struct s3_client *c, const struct s3_req *rq)
{
	char h[128], hash[65];
	payload_hash(rq, hash);
	snprintf(h, sizeof(h), "x-amz-content-sha256: %s", hash);
	struct curl_slist *l = curl_slist_append(NULL, h);
	l = l ? curl_slist_append(l, "Expect:") : NULL;
	if (l && c->token_header)
		l = curl_slist_append(l, c->token_header);
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

/* One attempt. Returns the curl result; rs->status the HTTP status. */
static CURLcode perform(struct s3_client *c, CURL *h, const struct s3_req *rq, struct s3_resp *rs,
			struct xfer *x)
{
	struct strbuf url = {0};
	struct curl_slist *hdr = build_headers(c, rq);
	if (!hdr || build_url(c, rq, &url) < 0) {
		curl_slist_free_all(hdr);
		sb_free(&url);
		return CURLE_OUT_OF_MEMORY;
	}
	curl_easy_setopt(h, CURLOPT_URL, url.buf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, c->access_key);
	curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)STALL_SECONDS);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	set_method(h, rq, x);
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
	curl_slist_free_all(hdr);
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
	if (rs->status == 429 || rs->status == 500 || rs->status == 502 || rs->status == 503 ||
	    rs->status == 504 || !strcmp(code, "RequestTimeout") || !strcmp(code, "SlowDown") ||
	    !strcmp(code, "ConditionalRequestConflict")) /* AWS: a conditional write raced; retry */
		return RETRY;
	return FAIL;
}

static int errno_of(const struct s3_resp *rs)
{
	switch (rs->status) {
	case 404: return -ENOENT;
	case 403: return -EACCES;
	case 416: return -EINVAL;
	case 412: return -EEXIST; /* If-None-Match: the key is taken */
	default: return -EIO;
	}
}

int s3_request(struct s3_client *c, const struct s3_req *rq, struct s3_resp *rs)
{
	memset(rs, 0, sizeof(*rs));
	CURL *h = handle_take(c);
	if (!h)
		return -ENOMEM;
	char why[160] = "";
	enum verdict v = FAIL;
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
		rs->too_large = x.overflow && !rq->dst;
		if (v != RETRY)
			break;
	}
	handle_give(c, h);
	if (v == DONE)
		return 0;
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
	if (t < 0 || (strcmp(p, "Z") && strcmp(p, "+00:00")))
		return 0;
	return t * 1000000000 + frac;
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

/* "key = value" lines of an INI section (or of the whole file when section is NULL). */
static int ini_read(const char *path, const char *section, const char *keys[], char *vals[],
		    size_t nkeys)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[1024], want[300] = "";
	bool in = section == NULL;
	if (section)
		snprintf(want, sizeof(want), "[%s]", section);
	while (fgets(line, sizeof(line), f)) {
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "\r\n")] = '\0';
		if (*s == '[') {
			char *e = s + strlen(s);
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				*--e = '\0';
			in = section && !strcmp(s, want);
			continue;
		}
		char *eq = strchr(s, '=');
		if (!in || !eq || *s == '#' || *s == ';')
			continue;
		char *k = s, *ke = eq;
		while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
			ke--;
		*ke = '\0';
		char *v = eq + 1 + strspn(eq + 1, " \t");
		char *ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';
		for (size_t i = 0; i < nkeys; i++)
			if (!strcmp(k, keys[i]) && !vals[i])
				vals[i] = strdup(v);
	}
	fclose(f);
	return 0;
}

static int from_file(struct cb_s3_options *o, const char *path, const char *section,
		     const char *const names[3], char ***strings, size_t *n)
{
	const char *keys[3] = {names[0], names[1], names[2]};
	char *vals[3] = {NULL, NULL, NULL};
	int r = ini_read(path, section, keys, vals, 3);
	if (r == 0 && vals[0] && vals[1])
		r = take(strings, n, vals[0], &o->access_key) ?: take(strings, n, vals[1], &o->secret_key) ?:
		    (vals[2] ? take(strings, n, vals[2], &o->session_token) : 0);
	for (int i = 0; i < 3; i++) {
		if (vals[i])
			explicit_bzero(vals[i], strlen(vals[i]));
		free(vals[i]);
	}
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
	if (!r)
		r = size_from_env("CASSBACKUP_S3_PART_SIZE", &o->part_size) ?:
		    size_from_env("CASSBACKUP_S3_MIN_PART_SIZE", &o->min_part_size);
	if (r || (o->access_key && o->secret_key))
		return r;
	const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
	if (ak && *ak && sk && *sk) {
		r = take(strings, &n, ak, &o->access_key) ?: take(strings, &n, sk, &o->secret_key);
		if (!r && (v = getenv("AWS_SESSION_TOKEN")) && *v)
			r = take(strings, &n, v, &o->session_token);
		return r;
	}
	static const char *const aws_names[3] = {"aws_access_key_id", "aws_secret_access_key",
						 "aws_session_token"};
	static const char *const our_names[3] = {"access_key", "secret_key", "session_token"};
	const char *profile = getenv("AWS_PROFILE");
	const char *cred = getenv("AWS_SHARED_CREDENTIALS_FILE");
	struct strbuf path = {0};
	if (!cred && getenv("HOME") && sb_printf(&path, "%s/.aws/credentials", getenv("HOME")) == 0)
		cred = path.buf;
	if (cred && from_file(o, cred, profile && *profile ? profile : "default", aws_names,
			      strings, &n) == -ENOMEM)
		r = -ENOMEM;
	sb_free(&path);
	if (!r && !o->access_key && key_file)
		r = from_file(o, key_file, NULL, our_names, strings, &n);
	return r;
}
