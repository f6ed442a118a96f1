/* awscred.h: where an S3 client's credentials come from, in the order the AWS SDKs look:
 *
 *   1. given explicitly (s3_key_file, -o s3_key_file): the caller's keys, first when given;
 *   2. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
 *   3. the profile AWS_PROFILE ("default" when unset) of the shared credentials file
 *      (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials) and config file (AWS_CONFIG_FILE,
 *      ~/.aws/config): role_arn with source_profile (STS AssumeRole signed with the source
 *      profile's keys), else static keys, else credential_process (its JSON, Version 1);
 *   4. web identity: AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (STS
 *      AssumeRoleWithWebIdentity: EKS IRSA); the token file is read again at each refresh;
 *   5. container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (http://169.254.170.2)
 *      or _FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN as Authorization
 *      (ECS, EKS Pod Identity);
 *   6. the EC2 instance metadata service with an IMDSv2 token (AWS_EC2_METADATA_SERVICE_ENDPOINT,
 *      default http://169.254.169.254; AWS_EC2_METADATA_DISABLED=true skips it).
 * STS is reached at AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else https://sts.REGION.amazonaws.com.
 *
 * The first source that applies is the one: a source that applies but fails (a profile named
 * by AWS_PROFILE that is not there, an AssumeRole refused) is an error, never a silent step to
 * the next. Temporary credentials are fetched again from the same source REFRESH_MARGIN (5
 * minutes) before they expire; while one thread refreshes, others go on with the keys in hand
 * as long as they are valid, so a mount that runs for months never stalls its readers on a
 * refresh. A refresh that fails keeps the old keys until they expire and is tried again 10
 * seconds later. Nothing here is process-wide: an awscred belongs to one S3 client.
 */
#ifndef CASSBACKUP_AWSCRED_H
#define CASSBACKUP_AWSCRED_H

#include <stdint.h>

struct awscred;

/* The keys to sign one request with; strings owned by the struct (awscred_keys_clear). */
struct awscred_keys {
	char *access_key, *secret_key, *token; /* token NULL: none */
	int64_t expires_ns; /* wall clock; 0: never */
};
void awscred_keys_clear(struct awscred_keys *k); /* wipes and frees; accepts zeroed */

struct awscred_config {
	const char *access_key, *secret_key, *session_token; /* explicit (both keys, or none) */
	const char *explicit_source; /* words for them ("s3_key_file /etc/k"); NULL: "S3 options" */
	const char *region;          /* of STS; NULL: us-east-1 */
	const char *ca_file;         /* added to the CA bundle of STS and HTTPS sources */
};

/* Finds the first source of the chain and gets keys from it. -EACCES with
 * cb_backend_last_error() saying what was tried (or which source failed, and why) when there
 * are none; -ENOMEM. *out is the caller's (awscred_free). */
int awscred_new(const struct awscred_config *cfg, struct awscred **out);
void awscred_free(struct awscred *a); /* accepts NULL */

/* A copy of the current keys, fetched again first when they are within the refresh margin of
 * their expiry. 0; -EACCES (cb_backend_last_error() says why) when they expired and could not
 * be renewed; -ENOMEM. Thread-safe. */
int awscred_get(struct awscred *a, struct awscred_keys *out);

/* Marks the keys in hand as refused by the server (an ExpiredToken): the next awscred_get
 * fetches again, for temporary credentials. Thread-safe. */
void awscred_expire(struct awscred *a);

/* Which source gave the keys, for --verbose and validate-config: "environment
 * (AWS_ACCESS_KEY_ID)", "profile prod (~/.aws/credentials)", "role ARN (profile prod,
 * AssumeRole)", "instance metadata http://...". Valid while a lives. */
const char *awscred_source(const struct awscred *a);

#endif
