/* sigv4.c: see sigv4.h. */
#include "sigv4.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct hdr {
	char *name;        /* lower case */
	const char *value; /* trimmed; into the list's string */
	size_t vlen;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned len = 32;
	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

/* The canonical headers ("name:value\n" each, by name) and the signed-header list of l. */
static int canonical_headers(const struct curl_slist *l, struct strbuf *canon, struct strbuf *names)
{
	size_t n = 0;
	for (const struct curl_slist *i = l; i; i = i->next)
		n++;
	struct hdr *h = calloc(n ? n : 1, sizeof(*h));
	int r = h ? 0 : -ENOMEM;
	size_t k = 0;
	for (const struct curl_slist *i = l; !r && i; i = i->next) {
		const char *colon = strchr(i->data, ':');
		if (!colon)
			continue;
		const char *v = colon + 1 + strspn(colon + 1, " \t");
		size_t vl = strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		if (!vl)
			continue; /* curl does not send a header given empty */
		if (!(h[k].name = strndup(i->data, (size_t)(colon - i->data)))) {
			r = -ENOMEM;
			break;
		}
		for (char *c = h[k].name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		h[k].value = v;
		h[k++].vlen = vl;
	}
	if (!r)
		qsort(h, k, sizeof(*h), by_name);
	for (size_t i = 0; !r && i < k; i++)
		r = sb_printf(canon, "%s:%.*s\n", h[i].name, (int)h[i].vlen, h[i].value) ?:
		    sb_printf(names, "%s%s", i ? ";" : "", h[i].name);
	for (size_t i = 0; h && i < n; i++)
		free(h[i].name);
	free(h);
	return r;
}

static int append(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

int sigv4_sign(const struct sigv4_request *rq, struct curl_slist **headers)
{
	const char *auth = strstr(rq->url, "://");
	auth = auth ? auth + 3 : rq->url;
	const char *path = strchr(auth, '/');
	if (!path)
		return -EINVAL;
	const char *q = strchr(path, '?');
	size_t plen = q ? (size_t)(q - path) : strlen(path);
	char date[17], day[9];
	struct tm tm;
	time_t t = (time_t)rq->now;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
	memcpy(day, date, 8);
	day[8] = '\0';
	struct strbuf line = {0}, canon = {0}, names = {0}, creq = {0}, sts = {0}, scope = {0};
	int r = sb_printf(&line, "Host: %.*s", (int)(path - auth), auth) ?: append(headers, line.buf);
	line.len = 0;
	r = r ?: sb_printf(&line, "x-amz-date: %s", date) ?: append(headers, line.buf);
	r = r ?: canonical_headers(*headers, &canon, &names);
	r = r ?: sb_printf(&creq, "%s\n%.*s\n%s\n%s\n%s\n%s", rq->method, (int)plen, path,
			   q ? q + 1 : "", canon.buf, names.buf, rq->payload_hash);
	unsigned char md[32], k1[32], k2[32], k3[32], k4[32], sig[32];
	char hex[65], sighex[65];
	if (!r) {
		SHA256((const unsigned char *)creq.buf, creq.len, md);
		hex_encode(md, 32, hex);
		r = sb_printf(&scope, "%s/%s/%s/aws4_request", day, rq->region, rq->service) ?:
		    sb_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, scope.buf, hex);
	}
	struct strbuf key = {0};
	r = r ?: sb_printf(&key, "AWS4%s", rq->secret_key);
	if (!r) {
		hmac(key.buf, key.len, day, k1);
		hmac(k1, 32, rq->region, k2);
		hmac(k2, 32, rq->service, k3);
		hmac(k3, 32, "aws4_request", k4);
		hmac(k4, 32, sts.buf, sig);
		hex_encode(sig, 32, sighex);
		line.len = 0;
		r = sb_printf(&line, "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
			      "Signature=%s", rq->access_key, scope.buf, names.buf, sighex) ?:
		    append(headers, line.buf);
	}
	if (key.buf)
		explicit_bzero(key.buf, key.len);
	explicit_bzero(k1, sizeof(k1));
	explicit_bzero(k4, sizeof(k4));
	sb_free(&key);
	sb_free(&line);
	sb_free(&canon);
	sb_free(&names);
	sb_free(&creq);
	sb_free(&sts);
	sb_free(&scope);
	return r;
}
