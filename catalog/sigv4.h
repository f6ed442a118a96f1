/* sigv4.h: AWS Signature Version 4 of an HTTP request, as AWS documents it ("Create a
 * canonical request for Signature Version 4", IAM user guide).
 *
 * Why not curl's CURLOPT_AWS_SIGV4: curl 7.88 (Debian 12) sorts the canonical headers as whole
 * "name:value" lines, so a header whose name is a prefix of another's
 * (x-amz-server-side-encryption and x-amz-server-side-encryption-aws-kms-key-id; the SSE-C
 * customer-key and customer-key-MD5) goes after it, where SigV4 puts it first: every SSE-KMS
 * and SSE-C request was refused with SignatureDoesNotMatch. It also signed an empty header
 * given to remove one ("Expect:") that it then did not send.
 */
#ifndef CASSBACKUP_SIGV4_H
#define CASSBACKUP_SIGV4_H

#include <curl/curl.h>
#include <stdint.h>

struct sigv4_request {
	const char *method;       /* GET PUT ... */
	const char *url;          /* scheme://authority/path?query: path as sent (already
				   * URI-encoded, S3's way: not encoded twice); query
				   * canonical: pairs sorted, names and values URI-encoded */
	const char *payload_hash; /* hex SHA-256 of the body (also sent as x-amz-content-sha256) */
	const char *region, *service;
	const char *access_key, *secret_key;
	int64_t now;              /* seconds since the epoch */
};

/* Appends "Host:", "x-amz-date:" and "Authorization:" to *headers, signing every header in the
 * list ("Name: value" each, none empty) and those. 0, -EINVAL for a URL without a path,
 * -ENOMEM. */
int sigv4_sign(const struct sigv4_request *rq, struct curl_slist **headers);

#endif
