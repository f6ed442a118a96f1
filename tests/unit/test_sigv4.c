/* Unit tests for catalog/sigv4.c: the examples of AWS's S3 documentation ("Signature
 * Calculations for the Authorization Header: Transferring Payload in a Single Chunk"), signed
 * to the very signature AWS gives, and header names that are prefixes of others sorted as
 * SigV4 sorts them. */
#include "sigv4.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "check.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define MAY_24_2013 1369353600

/* The Authorization line sigv4_sign added to l, or NULL. */
static const char *authorization(const struct curl_slist *l)
{
	for (; l; l = l->next)
		if (!strncmp(l->data, "Authorization: ", 15))
			return l->data + 15;
	return NULL;
}

int main(void)
{
	/* GET Object, with a Range */
	struct curl_slist *l = curl_slist_append(NULL, "Range: bytes=0-9");
	l = curl_slist_append(l, "x-amz-content-sha256: " EMPTY_SHA);
	struct sigv4_request rq = {.method = "GET", .url = "https://examplebucket.s3.amazonaws.com/test.txt",
				   .payload_hash = EMPTY_SHA, .region = "us-east-1", .service = "s3",
				   .access_key = AK, .secret_key = SK, .now = MAY_24_2013};
	CHECK(sigv4_sign(&rq, &l) == 0);
	const char *a = authorization(l);
	CHECK(a && !strcmp(a, "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
			       "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
			       "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
	curl_slist_free_all(l);

	/* PUT Object, with a storage class (and a Date header) */
	const char *body_sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
	l = curl_slist_append(NULL, "Date: Fri, 24 May 2013 00:00:00 GMT");
	l = curl_slist_append(l, "x-amz-storage-class: REDUCED_REDUNDANCY");
	l = curl_slist_append(l, "x-amz-content-sha256: 44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	rq = (struct sigv4_request){.method = "PUT", .url = "https://examplebucket.s3.amazonaws.com/test%24file.text",
				    .payload_hash = body_sha, .region = "us-east-1", .service = "s3",
				    .access_key = AK, .secret_key = SK, .now = MAY_24_2013};
	CHECK(sigv4_sign(&rq, &l) == 0);
	a = authorization(l);
	CHECK(a && strstr(a, "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
			      "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"));
	curl_slist_free_all(l);

	/* GET Bucket lifecycle: a query parameter without a value */
	l = curl_slist_append(NULL, "x-amz-content-sha256: " EMPTY_SHA);
	rq = (struct sigv4_request){.method = "GET", .url = "https://examplebucket.s3.amazonaws.com/?lifecycle=",
				    .payload_hash = EMPTY_SHA, .region = "us-east-1", .service = "s3",
				    .access_key = AK, .secret_key = SK, .now = MAY_24_2013};
	CHECK(sigv4_sign(&rq, &l) == 0);
	a = authorization(l);
	CHECK(a && strstr(a, "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"));
	curl_slist_free_all(l);

	/* a name that is a prefix of another goes first (curl 7.88 put it after) */
	l = curl_slist_append(NULL, "x-amz-server-side-encryption-aws-kms-key-id: k1");
	l = curl_slist_append(l, "x-amz-server-side-encryption: aws:kms");
	l = curl_slist_append(l, "Expect:"); /* empty: not sent, so not signed */
	rq.url = "http://127.0.0.1:9000/b/k";
	CHECK(sigv4_sign(&rq, &l) == 0);
	a = authorization(l);
	CHECK(a && strstr(a, "SignedHeaders=host;x-amz-date;x-amz-server-side-encryption;"
			      "x-amz-server-side-encryption-aws-kms-key-id, "));
	bool host = false;
	for (struct curl_slist *i = l; i; i = i->next)
		host |= !strcmp(i->data, "Host: 127.0.0.1:9000");
	CHECK(host);
	curl_slist_free_all(l);
	rq.url = "http://nopath";
	l = NULL;
	CHECK(sigv4_sign(&rq, &l) == -EINVAL);
	curl_slist_free_all(l);
	return failures ? 1 : 0;
}
